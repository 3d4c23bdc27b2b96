// Whole-batch kernels around the recurrence: the first layer's input as a
// gather, biases, dropout, and the gradient of the first layer's input table.
// Rows are time-major (row t*B + b is sequence b at step t), as in
// trainer/src/cpu/mod.rs.

// xg[r, :] = table[ids[r], :] + bias: a one-hot input times a matrix is a
// row lookup, so layer 0 needs no multiplications. One thread per element.
extern "C" __global__ void embed_forward(const unsigned short* __restrict__ ids, const float* __restrict__ table,
                                         const float* __restrict__ bias, float* __restrict__ xg, int rows,
                                         int width) {
    size_t k = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= (size_t)rows * width) return;
    int r = (int)(k / width);
    int j = (int)(k - (size_t)r * width);
    xg[k] = table[(size_t)ids[r] * width + j] + bias[j];
}

// x[r, :] += bias.
extern "C" __global__ void add_bias(float* __restrict__ x, const float* __restrict__ bias, int rows, int width) {
    size_t k = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= (size_t)rows * width) return;
    int j = (int)(k % width);
    x[k] += bias[j];
}

// SplitMix64's output number `i` (0-based) of the generator that
// trainer/src/rng.rs's Rng::derive(seed, stream) returns, with
// s0 = seed ^ stream * 0xd1b54a32d192ed03 (derive draws one number itself,
// so draw i sees the state s0 + (i + 2) * golden). The generator is a
// counter, so every thread computes its own draw: the masks are the CPU's,
// bit for bit.
__device__ __forceinline__ unsigned long long splitmix_draw(unsigned long long s0, unsigned long long i) {
    unsigned long long z = s0 + (i + 2ull) * 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

// mask[i] = 0 with probability p, else scale = 1/(1-p); out = x * mask.
// Uniforms as Rng::next_f32: the top 24 bits times 2^-24. The generator
// state *s0 changes every step, so it is read from device memory (the step's
// arguments, uploaded before the step: a captured CUDA graph replays as is).
extern "C" __global__ void dropout_forward(const float* __restrict__ x, float* __restrict__ mask,
                                           float* __restrict__ out, int n,
                                           const unsigned long long* __restrict__ s0, float p, float scale) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float u = (float)(splitmix_draw(*s0, (unsigned long long)i) >> 40) * (1.0f / 16777216.0f);
    float m = u < p ? 0.0f : scale;
    mask[i] = m;
    out[i] = x[i] * m;
}

// x *= m, elementwise (the dropout mask on the way back).
extern "C" __global__ void mul_inplace(float* __restrict__ x, const float* __restrict__ m, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] *= m[i];
}

// Gradient of layer 0's input table: row `id` collects dxg of every position
// whose input is id. The positions of each id come sorted (rows[offsets[id]
// .. offsets[id+1]], increasing), so each sum is taken in row order like the
// CPU's scatter-add, without atomics: deterministic. One thread per
// (id, column); ids with no positions get zeros.
extern "C" __global__ void table_backward(const int* __restrict__ offsets, const int* __restrict__ rows,
                                          const float* __restrict__ dxg, float* __restrict__ out, int vocab,
                                          int width) {
    size_t k = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= (size_t)vocab * width) return;
    int id = (int)(k / width);
    int j = (int)(k - (size_t)id * width);
    float acc = 0.0f;
    for (int q = offsets[id]; q < offsets[id + 1]; ++q) {
        acc += dxg[(size_t)rows[q] * width + j];
    }
    out[k] = acc;
}
