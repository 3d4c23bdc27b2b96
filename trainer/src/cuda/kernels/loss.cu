// Softmax cross-entropy over the logits of every position, with the loss
// mask (target 0 = padding, not counted) and, optionally, the gradient of the
// mean loss written over the logits. One warp per row.
//
// As trainer/src/cpu/mod.rs (Cpu::softmax_loss): over classes first..V
// (first = 0 in training, as PyTorch's CrossEntropyLoss over V outputs;
// first = 1 for held-out scores, the distribution the runtime samples from),
// nats = max + ln(sum exp(x - max)) - x[target]; gradient
// exp(x - max) / sum * inv, minus inv at the target, zero below `first` and
// on padded rows. *inv = 1 / (positions counted in the batch), read from
// device memory (it changes every batch; a captured CUDA graph replays as is).

#define WARP 32

__device__ __forceinline__ float warp_max(float x) {
    for (int o = WARP / 2; o > 0; o /= 2) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
    return x;
}

__device__ __forceinline__ float warp_sum(float x) {
    for (int o = WARP / 2; o > 0; o /= 2) x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}

extern "C" __global__ void softmax_xent(float* __restrict__ logits, const unsigned short* __restrict__ targets,
                                        float* __restrict__ row_nats, int rows, int vocab, int first,
                                        const float* __restrict__ inv_p, int grad) {
    int row = blockIdx.x * (blockDim.x / WARP) + threadIdx.x / WARP;
    int lane = threadIdx.x % WARP;
    if (row >= rows) return;
    float* x = logits + (size_t)row * vocab;
    int target = targets[row];
    if (target == 0) {
        if (grad) {
            for (int j = lane; j < vocab; j += WARP) x[j] = 0.0f;
        }
        if (lane == 0) row_nats[row] = 0.0f;
        return;
    }
    float m = __int_as_float(0xff800000);  // -infinity (no math.h under NVRTC)
    for (int j = first + lane; j < vocab; j += WARP) m = fmaxf(m, x[j]);
    m = warp_max(m);
    float s = 0.0f;
    for (int j = first + lane; j < vocab; j += WARP) s += expf(x[j] - m);
    s = warp_sum(s);
    float xt = x[target];
    if (lane == 0) row_nats[row] = (m + logf(s)) - xt;
    // every lane has read x[target] before anyone overwrites it
    __syncwarp();
    if (grad) {
        float inv = *inv_p;
        for (int j = lane; j < vocab; j += WARP) {
            float g = j < first ? 0.0f : expf(x[j] - m) / s * inv;
            if (j == target) g -= inv;
            x[j] = g;
        }
    }
}

// acc[0] += sum of x[0..n] in f64, in one block with a fixed reduction tree:
// the same bits on every run. Launch with 256 threads, one block.
extern "C" __global__ void sum_f64(const float* __restrict__ x, int n, double* __restrict__ acc) {
    __shared__ double part[256];
    double s = 0.0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) s += (double)x[i];
    part[threadIdx.x] = s;
    __syncthreads();
    for (unsigned w = blockDim.x / 2; w > 0; w /= 2) {
        if (threadIdx.x < w) part[threadIdx.x] += part[threadIdx.x + w];
        __syncthreads();
    }
    if (threadIdx.x == 0) acc[0] += part[0];
}
