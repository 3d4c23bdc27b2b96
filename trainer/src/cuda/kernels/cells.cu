// Pointwise kernels of the recurrent cells: one launch per time step, one
// thread per (sequence, unit). The product h_{t-1} W_hh^T (forward) and
// dg W_hh (backward) run in cuBLAS between these launches.
//
// Layouts, row-major, one row per sequence of the batch (B rows):
//   xg, hg, gates, dg, dhg: [B, G*H], gate k of unit j at column k*H + j
//   c, h, tanh_c, hn, dh:   [B, H]
// Equations, gate orders and the order of every floating-point operation are
// those of the CPU reference (trainer/src/cpu/mod.rs: lstm_forward,
// lstm_backward, gru_forward, gru_backward), which follows PyTorch:
// LSTM gates i,f,g,o; GRU gates r,z,n. The module is compiled with
// --fmad=false so that a*b+c is rounded twice here as it is on the CPU; only
// expf/tanhf differ from the CPU's own approximations (a few ulp).

__device__ __forceinline__ float sigmoid_f(float x) { return 1.0f / (1.0f + expf(-x)); }

// LSTM forward step: i,f,o = sigmoid(.), g = tanh(.), c = f*c' + i*g,
// h = o*tanh(c). Pre-activations are xg + (hg + b_hh).
extern "C" __global__ void lstm_forward(const float* __restrict__ xg, const float* __restrict__ hg,
                                        const float* __restrict__ b_hh, float* __restrict__ gates,
                                        const float* __restrict__ c_prev, float* __restrict__ c_out,
                                        float* __restrict__ tanh_c, float* __restrict__ h_out, int rows, int h) {
    int k = blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= rows * h) return;
    int r = k / h;
    int j = k - r * h;
    size_t row = (size_t)r * 4 * h;
    const float* x = xg + row;
    const float* hh = hg + row;
    float i = sigmoid_f(x[j] + (hh[j] + b_hh[j]));
    float f = sigmoid_f(x[h + j] + (hh[h + j] + b_hh[h + j]));
    float g = tanhf(x[2 * h + j] + (hh[2 * h + j] + b_hh[2 * h + j]));
    float o = sigmoid_f(x[3 * h + j] + (hh[3 * h + j] + b_hh[3 * h + j]));
    float c = f * c_prev[k] + i * g;
    float tc = tanhf(c);
    float* gt = gates + row;
    gt[j] = i;
    gt[h + j] = f;
    gt[2 * h + j] = g;
    gt[3 * h + j] = o;
    c_out[k] = c;
    tanh_c[k] = tc;
    h_out[k] = o * tc;
}

// LSTM backward step. dh is the gradient arriving at this step's output from
// above, dh_next the one from the step after (through W_hh); dc carries the
// cell-state gradient from the step after and leaves holding the one for the
// step before. Writes the gate pre-activation gradients dg.
extern "C" __global__ void lstm_backward(const float* __restrict__ dh, const float* __restrict__ dh_next,
                                         float* __restrict__ dc, const float* __restrict__ gates,
                                         const float* __restrict__ c_prev, const float* __restrict__ tanh_c,
                                         float* __restrict__ dg, int rows, int h) {
    int k = blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= rows * h) return;
    int r = k / h;
    int j = k - r * h;
    size_t row = (size_t)r * 4 * h;
    const float* gt = gates + row;
    float i = gt[j], f = gt[h + j], g = gt[2 * h + j], o = gt[3 * h + j];
    float tc = tanh_c[k];
    float d = dh[k] + dh_next[k];
    float dct = dc[k] + d * o * (1.0f - tc * tc);
    float* out = dg + row;
    out[j] = dct * g * i * (1.0f - i);
    out[h + j] = dct * c_prev[k] * f * (1.0f - f);
    out[2 * h + j] = dct * i * (1.0f - g * g);
    out[3 * h + j] = d * tc * o * (1.0f - o);
    dc[k] = dct * f;
}

// GRU forward step: r,z = sigmoid(.), n = tanh(x_n + r*(W_hn h + b_hn)),
// h = (1-z)*n + z*h'. hn keeps W_hn h + b_hn for the backward pass.
extern "C" __global__ void gru_forward(const float* __restrict__ xg, const float* __restrict__ hg,
                                       const float* __restrict__ b_hh, float* __restrict__ gates,
                                       const float* __restrict__ h_prev, float* __restrict__ hn,
                                       float* __restrict__ h_out, int rows, int h) {
    int k = blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= rows * h) return;
    int r = k / h;
    int j = k - r * h;
    size_t row = (size_t)r * 3 * h;
    const float* x = xg + row;
    const float* hh = hg + row;
    float rr = sigmoid_f(x[j] + (hh[j] + b_hh[j]));
    float z = sigmoid_f(x[h + j] + (hh[h + j] + b_hh[h + j]));
    float hnj = hh[2 * h + j] + b_hh[2 * h + j];
    float n = tanhf(x[2 * h + j] + rr * hnj);
    float* gt = gates + row;
    gt[j] = rr;
    gt[h + j] = z;
    gt[2 * h + j] = n;
    hn[k] = hnj;
    h_out[k] = (1.0f - z) * n + z * h_prev[k];
}

// GRU backward step. On entry dh_prev holds the gradient from the step after
// (dh_next); it leaves holding d*z, to which the caller adds dhg W_hh.
// Input-side gradients dxg = [dr, dz, dn], hidden-side dhg = [dr, dz, dn*r].
extern "C" __global__ void gru_backward(const float* __restrict__ dh, float* __restrict__ dh_prev,
                                        const float* __restrict__ gates, const float* __restrict__ h_prev,
                                        const float* __restrict__ hn, float* __restrict__ dxg,
                                        float* __restrict__ dhg, int rows, int h) {
    int k = blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= rows * h) return;
    int r = k / h;
    int j = k - r * h;
    size_t row = (size_t)r * 3 * h;
    const float* gt = gates + row;
    float rr = gt[j], z = gt[h + j], n = gt[2 * h + j];
    float d = dh[k] + dh_prev[k];
    float dan = d * (1.0f - z) * (1.0f - n * n);
    float dar = dan * hn[k] * rr * (1.0f - rr);
    float daz = d * (h_prev[k] - n) * z * (1.0f - z);
    float* dx = dxg + row;
    float* dhh = dhg + row;
    dx[j] = dar;
    dx[h + j] = daz;
    dx[2 * h + j] = dan;
    dhh[j] = dar;
    dhh[h + j] = daz;
    dhh[2 * h + j] = dan * rr;
    dh_prev[k] = d * z;
}
