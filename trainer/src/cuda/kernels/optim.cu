// Gradient-norm clipping and the optimizers, on the device, with the update
// rules of trainer/src/optim.rs (PyTorch's Adam; RMSprop with the lesson's
// Keras rho/eps). Scalars that PyTorch computes in Python floats (Adam's bias
// corrections) are computed on the host. Those that change from step to step
// (the step number, the learning rate, Adam's step size and bias correction)
// are read from device memory, where the host uploads them before each step,
// so that a captured CUDA graph of the step can be replayed as it is.
// Compiled with --fmad=false, so each line rounds as the CPU's does.

// partials[block] = sum of g[i]^2 over a fixed grid-stride set of i, in f64,
// reduced by a fixed tree. Launch with 256 threads per block.
extern "C" __global__ void sumsq_partials(const float* __restrict__ g, int n, double* __restrict__ partials) {
    __shared__ double part[256];
    double s = 0.0;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        double x = (double)g[i];
        s += x * x;
    }
    part[threadIdx.x] = s;
    __syncthreads();
    for (unsigned w = blockDim.x / 2; w > 0; w /= 2) {
        if (threadIdx.x < w) part[threadIdx.x] += part[threadIdx.x + w];
        __syncthreads();
    }
    if (threadIdx.x == 0) partials[blockIdx.x] = part[0];
}

// out[0] = clipping coefficient min(1, max_norm / (norm + 1e-6)) (as
// torch.nn.utils.clip_grad_norm_), out[1] = the norm. One thread.
extern "C" __global__ void clip_coef(const double* __restrict__ partials, int parts, float max_norm,
                                     float* __restrict__ out) {
    if (blockIdx.x != 0 || threadIdx.x != 0) return;
    double s = 0.0;
    for (int i = 0; i < parts; ++i) s += partials[i];
    float norm = (float)sqrt(s);
    float c = max_norm / (norm + 1e-6f);
    out[0] = c < 1.0f ? c : 1.0f;
    out[1] = norm;
}

// The divergence guard of a step (status[0] = 0 while every step was
// finite): nats is the loss summed since it was last read, coef[1] this
// step's gradient norm. The first non-finite one sets status = {1 (loss) or
// 2 (gradient), step}; the optimizer kernels then leave the parameters as
// they were before that step. x - x == 0 exactly when x is finite. One thread.
extern "C" __global__ void guard(const double* __restrict__ nats, const float* __restrict__ coef,
                                 int* __restrict__ status, const int* __restrict__ step) {
    if (blockIdx.x != 0 || threadIdx.x != 0 || status[0] != 0) return;
    double l = nats[0];
    float g = coef[1];
    if (!(l - l == 0.0)) {
        status[0] = 1;
        status[1] = *step;
    } else if (!(g - g == 0.0f)) {
        status[0] = 2;
        status[1] = *step;
    }
}

// Adam: m += (1-b1)(g - m); v = v*b2 + g*g*(1-b2);
// p -= step_size * m / (sqrt(v)/sqrt(bc2) + eps), sc = {step_size,
// sqrt(bc2)}. With clip != 0 the
// gradient is first scaled by coef[0] when that is below 1. Nothing changes
// once the guard has seen a non-finite step.
extern "C" __global__ void adam_step(float* __restrict__ p, const float* __restrict__ grad, float* __restrict__ m,
                                     float* __restrict__ v, const float* __restrict__ coef, int clip,
                                     const int* __restrict__ status, int n, const float* __restrict__ sc,
                                     float one_minus_b1, float b2, float one_minus_b2, float eps) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n || status[0] != 0) return;
    float step_size = sc[0], bc2_sqrt = sc[1];
    float g = grad[i];
    if (clip) {
        float c = coef[0];
        if (c < 1.0f) g = g * c;
    }
    float mi = m[i];
    mi += one_minus_b1 * (g - mi);
    float vi = v[i] * b2 + g * g * one_minus_b2;
    float denom = sqrtf(vi) / bc2_sqrt + eps;
    p[i] -= step_size * (mi / denom);
    m[i] = mi;
    v[i] = vi;
}

// RMSprop: v = v*rho + g*g*(1-rho); p -= lr * g / (sqrt(v) + eps), lr = sc[0].
extern "C" __global__ void rmsprop_step(float* __restrict__ p, const float* __restrict__ grad,
                                        float* __restrict__ v, const float* __restrict__ coef, int clip,
                                        const int* __restrict__ status, int n, const float* __restrict__ sc,
                                        float rho, float one_minus_rho, float eps) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n || status[0] != 0) return;
    float lr = sc[0];
    float g = grad[i];
    if (clip) {
        float c = coef[0];
        if (c < 1.0f) g = g * c;
    }
    float vi = v[i] * rho + g * g * one_minus_rho;
    p[i] -= lr * (g / (sqrtf(vi) + eps));
    v[i] = vi;
}
