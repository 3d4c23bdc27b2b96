// The recurrent cells, in two forms that share their arithmetic:
//
// * step kernels (lstm_forward, ...): one launch per time step, one thread
//   per (sequence, unit); the product h_{t-1} W_hh^T (forward) and dg W_hh
//   (backward) run in cuBLAS between these launches;
// * sequence kernels (lstm_forward_seq, ...): one cooperative launch for all
//   time steps. Block k owns units [k*U, k*U + U) and keeps the part of W_hh
//   those units need in shared memory for the whole sequence; after each
//   step the blocks meet at a grid-wide barrier, so the recurrence costs one
//   barrier per step instead of two launches and a cuBLAS call.
//
// Layouts, row-major, one row per sequence of the batch (B rows):
//   xg, hg, gates, dg, dhg: [B, G*H], gate k of unit j at column k*H + j
//   c, h, tanh_c, hn, dh:   [B, H]
//   w_hh:                   [G*H, H] (PyTorch's weight_hh)
// Equations, gate orders and the order of every floating-point operation of
// the pointwise part are those of the CPU reference (trainer/src/cpu/mod.rs:
// lstm_forward, lstm_backward, gru_forward, gru_backward), which follows
// PyTorch: LSTM gates i,f,g,o; GRU gates r,z,n. The module is compiled with
// --fmad=false so that a*b+c is rounded twice here as it is on the CPU; only
// expf/tanhf and the summation order of the products differ from the CPU.

__device__ __forceinline__ float sigmoid_f(float x) { return 1.0f / (1.0f + expf(-x)); }

// ---- the pointwise cells, shared by both forms ---------------------------------

// LSTM forward: i,f,o = sigmoid(.), g = tanh(.), c = f*c' + i*g,
// h = o*tanh(c), from the four pre-activations. gt points at gate i of this
// unit in its gates row (gate k at gt[k*h]).
__device__ __forceinline__ void lstm_point(float pi, float pf, float pg, float po, float c_prev, float* gt, int h,
                                           float* c_out, float* tanh_c, float* h_out) {
    float i = sigmoid_f(pi);
    float f = sigmoid_f(pf);
    float g = tanhf(pg);
    float o = sigmoid_f(po);
    float c = f * c_prev + i * g;
    float tc = tanhf(c);
    gt[0] = i;
    gt[h] = f;
    gt[2 * h] = g;
    gt[3 * h] = o;
    *c_out = c;
    *tanh_c = tc;
    *h_out = o * tc;
}

// LSTM backward: d is the gradient at this step's output (from above plus
// from the step after), dc_in the cell-state gradient from the step after.
// Writes the four gate gradients at dg[k*h]; returns the cell-state gradient
// for the step before.
__device__ __forceinline__ float lstm_back_point(float d, float dc_in, const float* gt, int h, float c_prev, float tc,
                                                 float* dg) {
    float i = gt[0], f = gt[h], g = gt[2 * h], o = gt[3 * h];
    float dct = dc_in + d * o * (1.0f - tc * tc);
    dg[0] = dct * g * i * (1.0f - i);
    dg[h] = dct * c_prev * f * (1.0f - f);
    dg[2 * h] = dct * i * (1.0f - g * g);
    dg[3 * h] = d * tc * o * (1.0f - o);
    return dct * f;
}

// GRU forward: r,z = sigmoid(.), n = tanh(x_n + r*hn) with hn = W_hn h + b_hn,
// h = (1-z)*n + z*h'. Returns h.
__device__ __forceinline__ float gru_point(float pr, float pz, float xn, float hn, float h_prev, float* gt, int h) {
    float rr = sigmoid_f(pr);
    float z = sigmoid_f(pz);
    float n = tanhf(xn + rr * hn);
    gt[0] = rr;
    gt[h] = z;
    gt[2 * h] = n;
    return (1.0f - z) * n + z * h_prev;
}

// GRU backward: d as for the LSTM. Input-side gradients dx = [dr, dz, dn],
// hidden-side dhh = [dr, dz, dn*r]; returns d*z, the direct part of the
// gradient for the step before (the caller adds dhg W_hh).
__device__ __forceinline__ float gru_back_point(float d, const float* gt, int h, float h_prev, float hn, float* dx,
                                                float* dhh) {
    float rr = gt[0], z = gt[h], n = gt[2 * h];
    float dan = d * (1.0f - z) * (1.0f - n * n);
    float dar = dan * hn * rr * (1.0f - rr);
    float daz = d * (h_prev - n) * z * (1.0f - z);
    dx[0] = dar;
    dx[h] = daz;
    dx[2 * h] = dan;
    dhh[0] = dar;
    dhh[h] = daz;
    dhh[2 * h] = dan * rr;
    return d * z;
}

// ---- step kernels ------------------------------------------------------------------

// LSTM forward step. Pre-activations are xg + (hg + b_hh).
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
    lstm_point(x[j] + (hh[j] + b_hh[j]), x[h + j] + (hh[h + j] + b_hh[h + j]),
               x[2 * h + j] + (hh[2 * h + j] + b_hh[2 * h + j]), x[3 * h + j] + (hh[3 * h + j] + b_hh[3 * h + j]),
               c_prev[k], gates + row + j, h, c_out + k, tanh_c + k, h_out + k);
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
    dc[k] = lstm_back_point(dh[k] + dh_next[k], dc[k], gates + row + j, h, c_prev[k], tanh_c[k], dg + row + j);
}

// GRU forward step. hn keeps W_hn h + b_hn for the backward pass.
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
    float hnj = hh[2 * h + j] + b_hh[2 * h + j];
    hn[k] = hnj;
    h_out[k] = gru_point(x[j] + (hh[j] + b_hh[j]), x[h + j] + (hh[h + j] + b_hh[h + j]), x[2 * h + j], hnj, h_prev[k],
                         gates + row + j, h);
}

// GRU backward step. On entry dh_prev holds the gradient from the step after
// (dh_next); it leaves holding d*z, to which the caller adds dhg W_hh.
extern "C" __global__ void gru_backward(const float* __restrict__ dh, float* __restrict__ dh_prev,
                                        const float* __restrict__ gates, const float* __restrict__ h_prev,
                                        const float* __restrict__ hn, float* __restrict__ dxg,
                                        float* __restrict__ dhg, int rows, int h) {
    int k = blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= rows * h) return;
    int r = k / h;
    int j = k - r * h;
    size_t row = (size_t)r * 3 * h;
    dh_prev[k] = gru_back_point(dh[k] + dh_prev[k], gates + row + j, h, h_prev[k], hn[k], dxg + row + j, dhg + row + j);
}

// ---- sequence kernels ----------------------------------------------------------------
//
// Launched cooperatively (every block resident at once) with blockDim.x a
// multiple of 32, ceil(H / U) blocks, and the dynamic shared memory, the
// staging and the product tile that trainer/src/cuda/dev.rs (SeqPlan)
// computes. `bar` is two zeroed words that
// the grid barrier leaves zeroed-count behind it, ready for the next launch.
// Values that other blocks wrote during this launch are read with ld.cg
// (L2, never a stale L1 line).
//
// The CPU simulator (cuda-sim/) supplies its own barrier, shared memory and
// loads under CHARLM_CUDA_SIM; everything else it runs as written.

#ifdef CHARLM_CUDA_SIM
void sim_grid_barrier();
float* sim_dynamic_smem();
#define grid_barrier(bar) sim_grid_barrier()
#define dynamic_smem() sim_dynamic_smem()
#define load_cg(p) (*(p))
#else
__device__ __forceinline__ float* dynamic_smem() {
    extern __shared__ float charlm_smem[];
    return charlm_smem;
}

__device__ __forceinline__ float load_cg(const float* p) { return __ldcg(p); }

// Every thread of the grid waits here until all have arrived; what any of
// them wrote before is visible to all after. bar[0] counts arrivals, bar[1]
// is the generation, which the last block to arrive advances. A wait of
// more than 10 s by the GPU's clock (a step takes microseconds, and even
// under compute-sanitizer milliseconds) means a block is not running at
// all: the kernel traps, and the host gets an error instead of a hung GPU.
__device__ __forceinline__ unsigned long long global_ns() {
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}

__device__ void grid_barrier(unsigned* bar) {
    __syncthreads();
    if (threadIdx.x == 0) {
        volatile unsigned* gen = bar + 1;
        unsigned seen = *gen;
        __threadfence();
        if (atomicAdd(bar, 1u) == gridDim.x - 1) {
            atomicExch(bar, 0u);
            __threadfence();
            atomicAdd(bar + 1, 1u);
        } else {
            const unsigned long long start = global_ns();
            while (*gen == seen) {
                if (global_ns() - start > 10000000000ull) {
                    // the trap alone reads as "unspecified launch failure"
                    printf("charlm: grid barrier timeout: block %u of %u waited 10 s at generation %u "
                           "(%u arrived)\n",
                           blockIdx.x, gridDim.x, seen, *(volatile unsigned*)bar);
                    __trap();
                }
            }
        }
        __threadfence();
    }
    __syncthreads();
}
#endif

// Row stride of a weight slice in shared memory: odd, so that the threads
// of a warp, reading consecutive rows at the same column, hit 32 different
// banks.
__device__ __forceinline__ int odd_stride(int len) { return len | 1; }

// out(r, q) = sum_k a(r, k) * b(q, k) for r < rows, q < cols: the block's
// share of one step's product. Each thread computes a T x T tile of
// outputs, so that a value it loads from shared memory serves T products
// instead of one; `lanes` consecutive threads (a power of two dividing 32)
// split each tile's k range and combine by a shuffle tree. Every thread of
// the block runs the same number of rounds, so the shuffles always have the
// whole warp. Ragged edges read a valid row or column again and drop the
// result.
template <int T, typename A, typename B, typename Put>
__device__ __forceinline__ void tiled_products(int rows, int cols, int len, A a, B b, Put put) {
    int tr = (rows + T - 1) / T, tq = (cols + T - 1) / T, total = tr * tq;
    int lanes = blockDim.x / total;
    lanes = lanes >= 32 ? 32 : lanes >= 16 ? 16 : lanes >= 8 ? 8 : lanes >= 4 ? 4 : lanes >= 2 ? 2 : 1;
    int lane = threadIdx.x % lanes, group = threadIdx.x / lanes, groups = blockDim.x / lanes;
    int rounds = (total + groups - 1) / groups;
    for (int round = 0; round < rounds; ++round) {
        int t = round * groups + group;
        int r0 = (t / tq) * T, q0 = (t % tq) * T;
        int ri[T], qi[T];
        for (int i = 0; i < T; ++i) {
            ri[i] = r0 + i < rows ? r0 + i : rows - 1;
            qi[i] = q0 + i < cols ? q0 + i : cols - 1;
        }
        float acc[T][T];
        for (int i = 0; i < T; ++i)
            for (int j = 0; j < T; ++j) acc[i][j] = 0.0f;
        if (t < total) {
            for (int k = lane; k < len; k += lanes) {
                float av[T], bv[T];
                for (int i = 0; i < T; ++i) av[i] = a(ri[i], k);
                for (int j = 0; j < T; ++j) bv[j] = b(qi[j], k);
                for (int i = 0; i < T; ++i)
                    for (int j = 0; j < T; ++j) acc[i][j] += av[i] * bv[j];
            }
        }
        for (int i = 0; i < T; ++i)
            for (int j = 0; j < T; ++j)
                for (int m = lanes / 2; m > 0; m /= 2) acc[i][j] += __shfl_xor_sync(0xffffffffu, acc[i][j], m);
        if (t < total && lane == 0) {
            for (int i = 0; i < T; ++i)
                for (int j = 0; j < T; ++j)
                    if (r0 + i < rows && q0 + j < cols) put(r0 + i, q0 + j, acc[i][j]);
        }
    }
}

// Tiles of `tile` x `tile` (4, 2 or 1; the host's SeqPlan chooses).
template <typename A, typename B, typename Put>
__device__ __forceinline__ void products(int rows, int cols, int len, int tile, A a, B b, Put put) {
    if (rows <= 0 || cols <= 0) return;
    if (tile == 4) {
        tiled_products<4>(rows, cols, len, a, b, put);
    } else if (tile == 2) {
        tiled_products<2>(rows, cols, len, a, b, put);
    } else {
        tiled_products<1>(rows, cols, len, a, b, put);
    }
}

// Copies `rows` rows of `len` floats that other blocks wrote (through L2)
// into shared memory rows of `stride` floats (odd, as the weights'), so that
// the products read each one from there instead of from L2, once per use.
__device__ __forceinline__ void stage_rows(float* __restrict__ dst, const float* src, int rows, int len, int stride) {
    for (int i = threadIdx.x; i < rows * len; i += blockDim.x) {
        int r = i / len;
        dst[r * stride + (i - r * len)] = load_cg(src + i);
    }
    __syncthreads();
}

// Forward, G gates: per step, hgs[r][q*un + jj] = h_{t-1}[r] . W_hh[q*H + u0 + jj]
// for this block's un units, then the cell. With `staged`, h_{t-1} is first
// copied into shared memory (when the plan had room for it).
template <int G>
__device__ __forceinline__ void forward_seq(const float* __restrict__ w_hh, const float* __restrict__ b_hh,
                                            const float* __restrict__ xg, float* __restrict__ gates,
                                            float* __restrict__ h, float* __restrict__ c, float* __restrict__ aux,
                                            unsigned* __restrict__ bar, int steps, int rows, int hd, int units,
                                            int staged, int tile) {
    float* sm = dynamic_smem();
    int u0 = blockIdx.x * units;
    int un = hd - u0 < units ? hd - u0 : units;
    int gu = G * un;
    int s = odd_stride(hd);
    float* w = sm;                        // [G*units][s]: row q*un + jj is W_hh row q*H + u0 + jj
    float* hgs = sm + G * units * s;      // [rows][G*units]
    float* hst = hgs + rows * G * units;  // [rows][s]: h_{t-1}, when staged
    for (int i = threadIdx.x; i < gu * hd; i += blockDim.x) {
        int lr = i / hd, k = i - lr * hd;
        int q = lr / un, jj = lr - q * un;
        w[lr * s + k] = w_hh[(size_t)(q * hd + u0 + jj) * hd + k];
    }
    __syncthreads();
    size_t bh = (size_t)rows * hd;
    for (int t = 0; t < steps; ++t) {
        const float* hp = h + t * bh;
        auto weight = [&](int q, int k) { return w[q * s + k]; };
        auto put = [&](int r, int q, float v) { hgs[r * gu + q] = v; };
        if (staged) {
            stage_rows(hst, hp, rows, hd, s);
            products(rows, gu, hd, tile, [&](int r, int k) { return hst[r * s + k]; }, weight, put);
        } else {
            products(
                rows, gu, hd, tile, [&](int r, int k) { return load_cg(hp + (size_t)r * hd + k); }, weight, put);
        }
        __syncthreads();
        // c and h of step t at (r, j) were written by this same thread at
        // step t - 1 (o maps to (r, j) the same way every step), so plain
        // loads see them; other blocks' values are only read through load_cg.
        for (int o = threadIdx.x; o < rows * un; o += blockDim.x) {
            int r = o / un, jj = o - r * un, j = u0 + jj;
            size_t k = (size_t)r * hd + j;
            size_t row = ((size_t)t * rows + r) * G * hd;
            const float* x = xg + row;
            const float* hh = hgs + r * gu;
            if (G == 4) {
                lstm_point(x[j] + (hh[jj] + b_hh[j]), x[hd + j] + (hh[un + jj] + b_hh[hd + j]),
                           x[2 * hd + j] + (hh[2 * un + jj] + b_hh[2 * hd + j]),
                           x[3 * hd + j] + (hh[3 * un + jj] + b_hh[3 * hd + j]), c[t * bh + k], gates + row + j, hd,
                           c + (t + 1) * bh + k, aux + t * bh + k, h + (t + 1) * bh + k);
            } else {
                float hnj = hh[2 * un + jj] + b_hh[2 * hd + j];
                aux[t * bh + k] = hnj;
                h[(t + 1) * bh + k] = gru_point(x[j] + (hh[jj] + b_hh[j]), x[hd + j] + (hh[un + jj] + b_hh[hd + j]),
                                                x[2 * hd + j], hnj, h[t * bh + k], gates + row + j, hd);
            }
        }
        if (t + 1 < steps) grid_barrier(bar);
    }
}

// All steps of an LSTM layer's forward pass: h and c hold the initial state
// in their first B rows; writes gates, c, tanh_c and h for steps 1..T.
extern "C" __global__ void lstm_forward_seq(const float* __restrict__ w_hh, const float* __restrict__ b_hh,
                                            const float* __restrict__ xg, float* __restrict__ gates,
                                            float* __restrict__ h, float* __restrict__ c, float* __restrict__ tanh_c,
                                            unsigned* __restrict__ bar, int steps, int rows, int hd, int units,
                                            int staged, int tile) {
    forward_seq<4>(w_hh, b_hh, xg, gates, h, c, tanh_c, bar, steps, rows, hd, units, staged, tile);
}

// All steps of a GRU layer's forward pass (hn as gru_forward's).
extern "C" __global__ void gru_forward_seq(const float* __restrict__ w_hh, const float* __restrict__ b_hh,
                                           const float* __restrict__ xg, float* __restrict__ gates,
                                           float* __restrict__ h, float* __restrict__ hn, unsigned* __restrict__ bar,
                                           int steps, int rows, int hd, int units, int staged, int tile) {
    forward_seq<3>(w_hh, b_hh, xg, gates, h, nullptr, hn, bar, steps, rows, hd, units, staged, tile);
}

// Backward, G gates, steps T-1 down to 0: the cell for this block's units
// (their gradient from the step after is kept in shared memory), a grid
// barrier, then that gradient for the next step down, dhh_t . W_hh[:, u0 + jj]
// over all G*H gate rows (plus d*z for the GRU). With `staged`, that step's
// gate gradients are first copied into shared memory.
template <int G>
__device__ __forceinline__ void backward_seq(const float* __restrict__ w_hh, const float* __restrict__ dh,
                                             const float* __restrict__ gates, const float* __restrict__ state,
                                             const float* __restrict__ aux, float* __restrict__ dxg,
                                             float* __restrict__ dhg, unsigned* __restrict__ bar, int steps, int rows,
                                             int hd, int units, int staged, int tile) {
    float* sm = dynamic_smem();
    int u0 = blockIdx.x * units;
    int un = hd - u0 < units ? hd - u0 : units;
    int gh = G * hd;
    int s = odd_stride(gh);
    float* wt = sm;                     // [units][s]: wt[jj*s + gr] = W_hh[gr][u0 + jj]
    float* dnext = wt + units * s;      // [rows][units]: gradient from the step after
    float* carry = dnext + rows * units;  // [rows][units]: LSTM dc; GRU d*z
    float* dst = carry + rows * units;    // [rows][s]: the step's gate gradients, when staged
    for (int i = threadIdx.x; i < gh * un; i += blockDim.x) {
        int gr = i / un, jj = i - gr * un;
        wt[jj * s + gr] = w_hh[(size_t)gr * hd + u0 + jj];
    }
    for (int i = threadIdx.x; i < rows * units; i += blockDim.x) {
        dnext[i] = 0.0f;
        carry[i] = 0.0f;
    }
    __syncthreads();
    size_t bh = (size_t)rows * hd;
    for (int t = steps - 1; t >= 0; --t) {
        for (int o = threadIdx.x; o < rows * un; o += blockDim.x) {
            int r = o / un, jj = o - r * un, j = u0 + jj;
            size_t k = (size_t)r * hd + j;
            size_t row = ((size_t)t * rows + r) * gh;
            int m = r * units + jj;
            float d = dh[t * bh + k] + dnext[m];
            if (G == 4) {
                // state = c: c_prev of step t is row t; aux = tanh(c)
                carry[m] = lstm_back_point(d, carry[m], gates + row + j, hd, state[t * bh + k], aux[t * bh + k],
                                           dxg + row + j);
            } else {
                // state = h: h_prev of step t is row t; aux = hn
                carry[m] = gru_back_point(d, gates + row + j, hd, state[t * bh + k], aux[t * bh + k], dxg + row + j,
                                          dhg + row + j);
            }
        }
        if (t == 0) break;  // every block stops at the same step
        grid_barrier(bar);
        const float* src = (G == 4 ? dxg : dhg) + (size_t)t * rows * gh;
        auto put = [&](int r, int jj, float v) {
            int m = r * units + jj;
            dnext[m] = G == 4 ? v : v + carry[m];
        };
        auto weight = [&](int jj, int gr) { return wt[jj * s + gr]; };
        if (staged) {
            stage_rows(dst, src, rows, gh, s);
            products(rows, un, gh, tile, [&](int r, int gr) { return dst[r * s + gr]; }, weight, put);
        } else {
            products(
                rows, un, gh, tile, [&](int r, int gr) { return load_cg(src + (size_t)r * gh + gr); }, weight, put);
        }
        __syncthreads();
    }
}

// All steps of an LSTM layer's backward pass: dh is the gradient from above
// at every step, c the cell states (initial first), tanh_c as saved
// forward; writes the gate gradients dg of every step.
extern "C" __global__ void lstm_backward_seq(const float* __restrict__ w_hh, const float* __restrict__ dh,
                                             const float* __restrict__ gates, const float* __restrict__ c,
                                             const float* __restrict__ tanh_c, float* __restrict__ dg,
                                             unsigned* __restrict__ bar, int steps, int rows, int hd, int units,
                                             int staged, int tile) {
    backward_seq<4>(w_hh, dh, gates, c, tanh_c, dg, nullptr, bar, steps, rows, hd, units, staged, tile);
}

// All steps of a GRU layer's backward pass: h the hidden states (initial
// first), hn as saved forward; writes dxg and dhg of every step.
extern "C" __global__ void gru_backward_seq(const float* __restrict__ w_hh, const float* __restrict__ dh,
                                            const float* __restrict__ gates, const float* __restrict__ h,
                                            const float* __restrict__ hn, float* __restrict__ dxg,
                                            float* __restrict__ dhg, unsigned* __restrict__ bar, int steps, int rows,
                                            int hd, int units, int staged, int tile) {
    backward_seq<3>(w_hh, dh, gates, h, hn, dxg, dhg, bar, steps, rows, hd, units, staged, tile);
}
