// charlm's CUDA simulator: the subset of the CUDA driver API and of cuBLAS
// that cudarc calls for charlm's CUDA backend, implemented on the CPU, with
// the backend's own kernel sources compiled in as C++.
//
// Device memory is host memory (a "device pointer" is a host address), every
// call completes before it returns, and a launch runs the kernel once per
// simulated thread. Kernels that synchronise (__syncthreads, __syncwarp,
// warp shuffles) run each thread of a block on its own fiber and switch at
// every barrier; the others run as a plain loop, and a barrier reached in a
// plain kernel aborts with the kernel's name (add it to COOPERATIVE below).
//
// Checks a real GPU would not make, so that a bug fails loudly here:
// * fresh allocations are filled with 0xFF bytes (NaN as f32), so a read of
//   memory nobody wrote poisons the result;
// * memcpy, memset and cuBLAS operands must lie inside one live allocation;
// * a barrier that not every live thread of its warp or block reaches is a
//   deadlock and aborts; a shuffle from a lane that has exited aborts.
//
// CHARLM_CUDA_SIM_TRACE=1 prints every call to stderr.
// CHARLM_CUDA_SIM_ORDER=reverse runs blocks, warps and threads last to first
// (default: first to last). Threads never overlap here, so a missing barrier
// can go unnoticed in one order; a kernel whose result depends on the order
// has a race, and the CUDA tests run both.

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <setjmp.h>
#include <ucontext.h>

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <utility>
#include <vector>

// ---- what a kernel source sees --------------------------------------------

struct sim_dim3 {
    unsigned x, y, z;
};
sim_dim3 threadIdx, blockIdx, blockDim, gridDim;

// The kernels' own hooks for the simulator (see cells.cu).
#define CHARLM_CUDA_SIM 1
void sim_grid_barrier();
float* sim_dynamic_smem();

enum Scope { SCOPE_WARP, SCOPE_BLOCK, SCOPE_GRID };
void sim_barrier(Scope scope);
void sim_shuffle_store(uint64_t bits);
uint64_t sim_shuffle_load(int lane_mask);

#define __global__
#define __device__
#define __forceinline__ inline
#define __restrict__ __restrict
#define __shared__ static

static inline void __syncthreads() { sim_barrier(SCOPE_BLOCK); }
static inline void __syncwarp(unsigned mask = 0xffffffffu) {
    (void)mask;
    sim_barrier(SCOPE_WARP);
}
template <typename T>
static inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask) {
    (void)mask;
    static_assert(sizeof(T) <= 8, "shuffle of a value wider than 64 bits");
    uint64_t b = 0;
    memcpy(&b, &v, sizeof v);
    sim_shuffle_store(b);
    uint64_t r = sim_shuffle_load(lane_mask);
    T out;
    memcpy(&out, &r, sizeof out);
    return out;
}
static inline float __int_as_float(int i) {
    float f;
    memcpy(&f, &i, sizeof f);
    return f;
}

#include "cells.cu"
#include "layers.cu"
#include "loss.cu"
#include "optim.cu"

#undef __global__
#undef __device__
#undef __forceinline__
#undef __restrict__
#undef __shared__

// ---- kernel registry ------------------------------------------------------

template <typename... A, size_t... I>
static void call_with(void (*f)(A...), void** p, std::index_sequence<I...>) {
    f(*static_cast<A*>(p[I])...);
}
template <typename... A>
static void call(void (*f)(A...), void** p) {
    call_with(f, p, std::index_sequence_for<A...>{});
}
// The byte size of each parameter (a capture copies the arguments).
template <typename... A>
static std::vector<size_t> sizes_of(void (*)(A...)) {
    return {sizeof(A)...};
}

// How a kernel's threads must run.
enum Mode {
    PLAIN_LOOP,  // no barriers: one thread after another
    BLOCKWISE,   // block barriers or warp shuffles: a block's threads on fibers, one block after another
    WHOLE_GRID,  // grid barriers: every thread of the grid on fibers at once (a cooperative launch)
};

struct Kernel {
    const char* name;
    void (*thread)(void** params);
    Mode mode;
    std::vector<size_t> (*sizes)();
};

#define KERNEL(k, mode) {#k, [](void** p) { call(k, p); }, mode, [] { return sizes_of(k); }}
#define PLAIN(k) KERNEL(k, PLAIN_LOOP)
#define COOPERATIVE(k) KERNEL(k, BLOCKWISE)
#define GRID(k) KERNEL(k, WHOLE_GRID)

static const Kernel KERNELS[] = {
    PLAIN(lstm_forward),     PLAIN(lstm_backward),  PLAIN(gru_forward),          PLAIN(gru_backward),
    PLAIN(embed_forward),    PLAIN(add_bias),       PLAIN(dropout_forward),      PLAIN(mul_inplace),
    PLAIN(table_backward),   COOPERATIVE(softmax_xent), COOPERATIVE(sum_f64),    COOPERATIVE(sumsq_partials),
    PLAIN(clip_coef),        PLAIN(guard),          PLAIN(adam_step),            PLAIN(rmsprop_step),
    GRID(lstm_forward_seq),  GRID(lstm_backward_seq), GRID(gru_forward_seq),     GRID(gru_backward_seq),
};

// ---- diagnostics -----------------------------------------------------------

static bool trace_on() {
    static int on = -1;
    if (on < 0) {
        const char* v = getenv("CHARLM_CUDA_SIM_TRACE");
        on = v && *v && strcmp(v, "0") != 0;
    }
    return on;
}
#define TRACE(...)                                   \
    do {                                             \
        if (trace_on()) {                            \
            fprintf(stderr, "cuda-sim: " __VA_ARGS__); \
            fputc('\n', stderr);                     \
        }                                            \
    } while (0)

[[noreturn]] static void die(const char* what, const char* detail) {
    fprintf(stderr, "cuda-sim: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    abort();
}

// Position `i` of `n` in the run order (CHARLM_CUDA_SIM_ORDER: forward,
// the default, or reverse; anything else stops the test that set it).
static unsigned order(unsigned i, unsigned n) {
    static int reverse = -1;
    if (reverse < 0) {
        const char* v = getenv("CHARLM_CUDA_SIM_ORDER");
        if (v && *v && strcmp(v, "forward") != 0 && strcmp(v, "reverse") != 0)
            die("CHARLM_CUDA_SIM_ORDER must be forward or reverse, not", v);
        reverse = v && strcmp(v, "reverse") == 0;
    }
    return reverse ? n - 1 - i : i;
}

// ---- fibers for cooperative kernels ----------------------------------------
//
// One fiber per simulated thread, kept for the whole process: a fiber parks
// after each thread it runs and is resumed for the next. A fiber starts once
// through makecontext; after that every switch is _setjmp/_longjmp between
// stacks, which, unlike swapcontext, makes no system call.

enum FiberState { RUNNABLE, AT_WARP_BARRIER, AT_BLOCK_BARRIER, AT_GRID_BARRIER, DONE };

struct Fiber {
    jmp_buf at;  // where the fiber continues
    char* stack;
    FiberState state;
    sim_dim3 block, thread;  // its indices in the current launch
};

static const size_t FIBER_STACK = 16 * 1024;
static std::vector<Fiber> g_fibers;
static jmp_buf g_scheduler;
static unsigned g_current;     // fiber running now
static unsigned g_fiber_count;  // fibers of the launch being run
static unsigned g_block_size;   // threads per block
static bool g_in_fibers = false;
static const Kernel* g_kernel;
static void** g_params;
static std::vector<uint64_t> g_slots;           // one shuffle slot per fiber
static std::vector<std::vector<float>> g_smem;  // dynamic shared memory per block of the launch
static unsigned g_smem_bytes;

static void set_thread_index(unsigned linear_block, unsigned t) {
    blockIdx.x = linear_block % gridDim.x;
    blockIdx.y = (linear_block / gridDim.x) % gridDim.y;
    blockIdx.z = linear_block / (gridDim.x * gridDim.y);
    threadIdx.x = t % blockDim.x;
    threadIdx.y = (t / blockDim.x) % blockDim.y;
    threadIdx.z = t / (blockDim.x * blockDim.y);
}

static void park(unsigned me) {
    if (!_setjmp(g_fibers[me].at)) _longjmp(g_scheduler, 1);
}

static void fiber_entry(int me) {
    for (;;) {
        park((unsigned)me);  // resumed with a thread to run
        g_kernel->thread(g_params);
        g_fibers[(unsigned)me].state = DONE;
    }
}

void sim_barrier(Scope scope) {
    if (!g_in_fibers) die("a barrier or shuffle in a kernel registered as PLAIN", g_kernel->name);
    if (scope == SCOPE_GRID && g_kernel->mode != WHOLE_GRID) die("a grid barrier in a kernel not registered as GRID", g_kernel->name);
    g_fibers[g_current].state = scope == SCOPE_WARP ? AT_WARP_BARRIER : scope == SCOPE_BLOCK ? AT_BLOCK_BARRIER : AT_GRID_BARRIER;
    park(g_current);
}

void sim_grid_barrier() { sim_barrier(SCOPE_GRID); }

float* sim_dynamic_smem() {
    if (!g_in_fibers || g_smem_bytes == 0) die("dynamic shared memory that the launch did not ask for", g_kernel->name);
    return g_smem[g_current / g_block_size].data();
}

void sim_shuffle_store(uint64_t bits) {
    if (!g_in_fibers) die("a shuffle in a kernel registered as PLAIN", g_kernel->name);
    g_slots[g_current] = bits;
    sim_barrier(SCOPE_WARP);
}

uint64_t sim_shuffle_load(int lane_mask) {
    unsigned t = g_current % g_block_size, block_start = g_current - t;
    unsigned src_t = (t & ~31u) | ((t ^ (unsigned)lane_mask) & 31u);
    unsigned src = block_start + src_t;
    if (src_t >= g_block_size || g_fibers[src].state == DONE) die("shuffle from a lane that has exited", g_kernel->name);
    uint64_t v = g_slots[src];
    sim_barrier(SCOPE_WARP);  // nobody overwrites a slot before every lane has read
    return v;
}

static void resume(unsigned i) {
    g_current = i;
    blockIdx = g_fibers[i].block;
    threadIdx = g_fibers[i].thread;
    if (!_setjmp(g_scheduler)) _longjmp(g_fibers[i].at, 1);
}

static void grow_fibers(unsigned n) {
    size_t old = g_fibers.size();
    if (old >= n) return;
    g_fibers.resize(n);
    g_slots.resize(n);
    for (size_t i = old; i < n; ++i) {
        Fiber& f = g_fibers[i];
        f.stack = static_cast<char*>(malloc(FIBER_STACK));
        if (!f.stack) die("out of memory for fiber stacks", nullptr);
        ucontext_t start, here;
        getcontext(&start);
        start.uc_stack.ss_sp = f.stack;
        start.uc_stack.ss_size = FIBER_STACK;
        start.uc_link = nullptr;  // fiber_entry never returns
        makecontext(&start, (void (*)())fiber_entry, 1, (int)i);
        // runs the fiber up to its first park, which jumps back here
        if (!_setjmp(g_scheduler)) swapcontext(&here, &start);
    }
}

// Releases every group [start, start + size) whose live fibers all wait at
// `at`; true if any did.
static bool release(unsigned size, FiberState at) {
    bool released = false;
    for (unsigned start = 0; start < g_fiber_count; start += size) {
        unsigned end = start + size < g_fiber_count ? start + size : g_fiber_count;
        bool live = false, all = true;
        for (unsigned i = start; i < end; ++i) {
            if (g_fibers[i].state == DONE) continue;
            live = true;
            if (g_fibers[i].state != at) all = false;
        }
        if (!live || !all) continue;
        for (unsigned i = start; i < end; ++i)
            if (g_fibers[i].state == at) g_fibers[i].state = RUNNABLE;
        released = true;
    }
    return released;
}

// Runs `blocks` blocks (linear indices from first_block) of the current
// kernel together, one fiber per thread.
static void run_on_fibers(unsigned first_block, unsigned blocks, unsigned block_size) {
    unsigned n = blocks * block_size;
    grow_fibers(n);
    g_fiber_count = n;
    g_block_size = block_size;
    for (unsigned i = 0; i < n; ++i) {
        set_thread_index(first_block + i / block_size, i % block_size);
        g_fibers[i].block = blockIdx;
        g_fibers[i].thread = threadIdx;
        g_fibers[i].state = RUNNABLE;
    }
    g_in_fibers = true;
    // a warp's lanes within one block: block_size is a multiple of 32 or the block is one partial warp
    unsigned warp = block_size % 32 == 0 ? 32 : block_size;
    for (;;) {
        // Warp by warp, and each warp through its warp barriers (shuffles)
        // at once while its 32 stacks are in cache, until it reaches a block
        // or grid barrier or ends.
        for (unsigned wi = 0; wi < n / warp; ++wi) {
            unsigned w = order(wi, n / warp) * warp;
            for (;;) {
                bool at_warp = false, other = false;
                for (unsigned li = 0; li < warp; ++li) {
                    unsigned i = w + order(li, warp);
                    if (g_fibers[i].state == RUNNABLE) resume(i);
                    FiberState st = g_fibers[i].state;
                    at_warp |= st == AT_WARP_BARRIER;
                    other |= st == AT_BLOCK_BARRIER || st == AT_GRID_BARRIER;
                }
                if (!at_warp || other) break;
                for (unsigned i = w; i < w + warp; ++i)
                    if (g_fibers[i].state == AT_WARP_BARRIER) g_fibers[i].state = RUNNABLE;
            }
        }
        // every fiber now waits at a barrier or is done
        bool any_live = false;
        for (unsigned i = 0; i < n && !any_live; ++i) any_live = g_fibers[i].state != DONE;
        if (!any_live) break;
        bool released = release(n, AT_GRID_BARRIER) | release(block_size, AT_BLOCK_BARRIER) | release(warp, AT_WARP_BARRIER);
        if (!released) die("deadlock: threads wait at barriers that not every live thread reaches", g_kernel->name);
    }
    g_in_fibers = false;
}

// ---- driver types ------------------------------------------------------------

typedef int CUresult;
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;
typedef void* CUcontext;
typedef void* CUmodule;
typedef const Kernel* CUfunction;
typedef void* CUstream;
typedef void* CUevent;

enum {
    CUDA_SUCCESS = 0,
    CUDA_ERROR_INVALID_VALUE = 1,
    CUDA_ERROR_OUT_OF_MEMORY = 2,
    CUDA_ERROR_INVALID_DEVICE = 101,
    CUDA_ERROR_INVALID_HANDLE = 400,
    CUDA_ERROR_ILLEGAL_STATE = 401,
    CUDA_ERROR_NOT_FOUND = 500,
    CUDA_ERROR_LAUNCH_FAILED = 719,
    CUDA_ERROR_NOT_SUPPORTED = 801,
    CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED = 900,
    CUDA_ERROR_STREAM_CAPTURE_INVALIDATED = 901,
};

static int g_context_token;  // the one context's handle points here
static int g_module_token;   // every module's handle points here

// live allocations: start -> size
static std::map<uintptr_t, size_t> g_allocs;

static void check_range(const void* p, size_t bytes, const char* what) {
    uintptr_t a = reinterpret_cast<uintptr_t>(p);
    auto it = g_allocs.upper_bound(a);
    if (it == g_allocs.begin()) goto bad;
    --it;
    if (a >= it->first && a + bytes <= it->first + it->second) return;
bad:
    char msg[160];
    snprintf(msg, sizeof msg, "%s: %zu bytes at %#lx are not inside one live allocation", what, bytes,
             (unsigned long)a);
    die("out of bounds", msg);
}

static void* dptr(CUdeviceptr p) { return reinterpret_cast<void*>(static_cast<uintptr_t>(p)); }

extern "C" {

CUresult cuInit(unsigned flags) {
    TRACE("cuInit(%u)", flags);
    return CUDA_SUCCESS;
}

// NVRTC itself opens libcuda.so.1 and asks for the driver's private export
// tables; the simulator has none, which NVRTC accepts.
CUresult cuGetExportTable(const void** table, const void* id) {
    (void)id;
    *table = nullptr;
    return CUDA_ERROR_NOT_SUPPORTED;
}

CUresult cuDriverGetVersion(int* v) {
    *v = 12080;
    return CUDA_SUCCESS;
}

CUresult cuDeviceGetCount(int* n) {
    *n = 1;
    return CUDA_SUCCESS;
}

CUresult cuDeviceGet(CUdevice* d, int ordinal) {
    if (ordinal != 0) return CUDA_ERROR_INVALID_DEVICE;
    *d = 0;
    return CUDA_SUCCESS;
}

CUresult cuDeviceGetName(char* name, int len, CUdevice) {
    snprintf(name, (size_t)len, "charlm CUDA simulator (CPU)");
    return CUDA_SUCCESS;
}

// Shared memory a block may have: without opting in (48 KiB, as every GPU
// since Volta) and at most after cuFuncSetAttribute (227 KiB, as an H100).
// CHARLM_CUDA_SIM_SMEM_PER_BLOCK narrows both, CHARLM_CUDA_SIM_SMEM_OPTIN
// the second alone (tests of other plans).
static int env_int(const char* name, int fallback) {
    const char* e = getenv(name);
    if (!e || !*e) return fallback;
    char* end = nullptr;
    long v = strtol(e, &end, 10);
    if (*end || v < 1 || v > (1 << 30)) die(name, "must be a number of bytes from 1 to 2^30");
    return int(v);
}
static int smem_per_block() { return env_int("CHARLM_CUDA_SIM_SMEM_PER_BLOCK", 49152); }
static int smem_optin() {
    int per_block = smem_per_block();
    int optin = env_int("CHARLM_CUDA_SIM_SMEM_OPTIN", getenv("CHARLM_CUDA_SIM_SMEM_PER_BLOCK") ? per_block : 232448);
    return optin > per_block ? optin : per_block;
}

CUresult cuDeviceGetAttribute(int* v, int attribute, CUdevice) {
    switch (attribute) {
        case 75: *v = 8; break;    // compute capability major: kernels are compiled for sm_80
        case 76: *v = 0; break;    // minor
        case 16: *v = 132; break;  // multiprocessors (as an H100 SXM)
        case 95: *v = 1; break;    // cooperative launch
        case 8: *v = smem_per_block(); break;  // shared memory per block
        case 97: *v = smem_optin(); break;      // the same after opting in
        // memory pools: yes, as on an H100, so cudarc allocates and frees
        // with cuMemAllocAsync/cuMemFreeAsync (no synchronisation before a
        // free); CHARLM_CUDA_SIM_MEMPOOLS=0 for cuMemAlloc/cuMemFree
        case 115: *v = env_int("CHARLM_CUDA_SIM_MEMPOOLS", 1); break;
        case 1: *v = 1024; break;  // max threads per block
        default: *v = 0; break;
    }
    return CUDA_SUCCESS;
}

CUresult cuDeviceTotalMem_v2(size_t* bytes, CUdevice) {
    *bytes = (size_t)16 << 30;
    return CUDA_SUCCESS;
}

CUresult cuMemGetInfo_v2(size_t* free_bytes, size_t* total) {
    *free_bytes = (size_t)16 << 30;
    *total = (size_t)16 << 30;
    return CUDA_SUCCESS;
}

CUresult cuDevicePrimaryCtxRetain(CUcontext* ctx, CUdevice) {
    TRACE("cuDevicePrimaryCtxRetain");
    *ctx = &g_context_token;
    return CUDA_SUCCESS;
}
CUresult cuDevicePrimaryCtxRelease_v2(CUdevice) { return CUDA_SUCCESS; }
CUresult cuDevicePrimaryCtxRelease(CUdevice) { return CUDA_SUCCESS; }
CUresult cuCtxSetCurrent(CUcontext) { return CUDA_SUCCESS; }
CUresult cuCtxGetCurrent(CUcontext* ctx) {
    *ctx = &g_context_token;
    return CUDA_SUCCESS;
}
CUresult cuCtxPushCurrent_v2(CUcontext) { return CUDA_SUCCESS; }
CUresult cuCtxPopCurrent_v2(CUcontext* ctx) {
    if (ctx) *ctx = &g_context_token;
    return CUDA_SUCCESS;
}
CUresult cuCtxGetDevice(CUdevice* d) {
    *d = 0;
    return CUDA_SUCCESS;
}

CUresult cuGetErrorString(CUresult e, const char** s) {
    switch (e) {
        case CUDA_SUCCESS: *s = "no error"; break;
        case CUDA_ERROR_INVALID_VALUE: *s = "invalid argument"; break;
        case CUDA_ERROR_OUT_OF_MEMORY: *s = "out of memory"; break;
        case CUDA_ERROR_INVALID_DEVICE: *s = "invalid device ordinal"; break;
        case CUDA_ERROR_INVALID_HANDLE: *s = "invalid resource handle"; break;
        case CUDA_ERROR_NOT_FOUND: *s = "named symbol not found"; break;
        case CUDA_ERROR_NOT_SUPPORTED: *s = "operation not supported"; break;
        case CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED: *s = "operation not permitted when stream is capturing"; break;
        case CUDA_ERROR_STREAM_CAPTURE_INVALIDATED: *s = "operation failed due to a previous error during capture"; break;
        default: *s = "unknown error"; break;
    }
    return CUDA_SUCCESS;
}
CUresult cuGetErrorName(CUresult e, const char** s) {
    switch (e) {
        case CUDA_SUCCESS: *s = "CUDA_SUCCESS"; break;
        case CUDA_ERROR_INVALID_VALUE: *s = "CUDA_ERROR_INVALID_VALUE"; break;
        case CUDA_ERROR_OUT_OF_MEMORY: *s = "CUDA_ERROR_OUT_OF_MEMORY"; break;
        case CUDA_ERROR_INVALID_DEVICE: *s = "CUDA_ERROR_INVALID_DEVICE"; break;
        case CUDA_ERROR_INVALID_HANDLE: *s = "CUDA_ERROR_INVALID_HANDLE"; break;
        case CUDA_ERROR_NOT_FOUND: *s = "CUDA_ERROR_NOT_FOUND"; break;
        case CUDA_ERROR_NOT_SUPPORTED: *s = "CUDA_ERROR_NOT_SUPPORTED"; break;
        case CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED: *s = "CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED"; break;
        case CUDA_ERROR_STREAM_CAPTURE_INVALIDATED: *s = "CUDA_ERROR_STREAM_CAPTURE_INVALIDATED"; break;
        default: *s = "CUDA_ERROR_UNKNOWN"; break;
    }
    return CUDA_SUCCESS;
}

// ---- stream capture ----------------------------------------------------------
//
// Between cuStreamBeginCapture and cuStreamEndCapture, the work queued on the
// stream is recorded, not run: kernel launches (with copies of their
// arguments), device-to-device copies, memsets and cuBLAS products (with
// their scalars). cuGraphLaunch runs the record, in order; its copies and
// products check their ranges again then, so a graph that outlives the
// memory it was captured with aborts. As on a GPU, the legacy default stream
// cannot be captured. What a capture cannot hold (copies from or to the
// host, waits, allocation, freeing) a GPU refuses; here it aborts, naming
// the call, since charlm must never try it.
// CHARLM_CUDA_SIM_NO_GRAPHS=1: every call made during a capture fails and
// invalidates it, as with a driver that cannot capture some of the work;
// =cooperative: only cooperative launches do, with CUDA_ERROR_NOT_SUPPORTED
// (what a refused cooperative launch outside a capture says too); =launch:
// captures succeed, but launching a graph fails with CUDA_ERROR_NOT_SUPPORTED.

typedef std::function<CUresult()> Op;
struct SimGraph {
    std::vector<Op> ops;
};
typedef SimGraph* CUgraph;
typedef SimGraph* CUgraphExec;
static SimGraph* g_capture;  // the graph being recorded, if any
static bool g_capture_invalid;

static void not_in_capture(const char* call) {
    if (g_capture) die("called during a stream capture (a GPU refuses it)", call);
}

static bool no_graphs_is(const char* what) {
    const char* v = getenv("CHARLM_CUDA_SIM_NO_GRAPHS");
    return v && strcmp(v, what) == 0;
}
static bool capture_refused(bool cooperative) {
    return no_graphs_is("1") || (cooperative && no_graphs_is("cooperative"));
}

// During a capture: records `op` (or fails, see above), sets `*result` and
// returns true. Otherwise false: the caller runs the work.
static bool captured(const char* call, Op op, CUresult* result, bool cooperative = false) {
    if (!g_capture) return false;
    TRACE("captured: %s", call);
    if (g_capture_invalid) {
        *result = CUDA_ERROR_STREAM_CAPTURE_INVALIDATED;
    } else if (capture_refused(cooperative)) {
        g_capture_invalid = true;
        *result = cooperative ? CUDA_ERROR_NOT_SUPPORTED : CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
    } else {
        g_capture->ops.push_back(std::move(op));
        *result = CUDA_SUCCESS;
    }
    return true;
}

// Stream work: recorded during a capture, else run now.
static CUresult queued(const char* call, const Op& op) {
    CUresult r;
    return captured(call, op, &r) ? r : op();
}

CUresult cuStreamBeginCapture_v2(CUstream s, int) {
    if (!s) return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;  // the legacy default stream
    if (g_capture) return CUDA_ERROR_ILLEGAL_STATE;
    g_capture = new SimGraph;
    g_capture_invalid = false;
    return CUDA_SUCCESS;
}
CUresult cuStreamEndCapture(CUstream, CUgraph* g) {
    if (!g_capture) return CUDA_ERROR_ILLEGAL_STATE;
    SimGraph* graph = g_capture;
    g_capture = nullptr;
    if (g_capture_invalid) {
        delete graph;
        *g = nullptr;
        return CUDA_ERROR_STREAM_CAPTURE_INVALIDATED;
    }
    TRACE("capture ended: %zu calls", graph->ops.size());
    *g = graph;
    return CUDA_SUCCESS;
}
CUresult cuStreamIsCapturing(CUstream, int* status) {
    *status = !g_capture ? 0 : g_capture_invalid ? 2 : 1;
    return CUDA_SUCCESS;
}
CUresult cuGraphInstantiateWithFlags(CUgraphExec* e, CUgraph g, unsigned long long) {
    if (!g) return CUDA_ERROR_INVALID_VALUE;
    *e = new SimGraph(*g);
    return CUDA_SUCCESS;
}
CUresult cuGraphLaunch(CUgraphExec e, CUstream) {
    not_in_capture("cuGraphLaunch");
    if (!e) return CUDA_ERROR_INVALID_VALUE;
    if (no_graphs_is("launch")) return CUDA_ERROR_NOT_SUPPORTED;
    TRACE("graph launch: %zu calls", e->ops.size());
    for (const Op& op : e->ops) {
        CUresult r = op();
        if (r != CUDA_SUCCESS) return r;
    }
    return CUDA_SUCCESS;
}
CUresult cuGraphUpload(CUgraphExec e, CUstream) { return e ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE; }
CUresult cuGraphExecDestroy(CUgraphExec e) {
    not_in_capture("cuGraphExecDestroy");
    delete e;
    return CUDA_SUCCESS;
}
CUresult cuGraphDestroy(CUgraph g) {
    not_in_capture("cuGraphDestroy");
    delete g;
    return CUDA_SUCCESS;
}

// ---- memory ----------------------------------------------------------------

CUresult cuMemAlloc_v2(CUdeviceptr* p, size_t bytes) {
    not_in_capture("cuMemAlloc");
    if (bytes == 0) return CUDA_ERROR_INVALID_VALUE;
    void* m = aligned_alloc(256, (bytes + 255) / 256 * 256);
    if (!m) return CUDA_ERROR_OUT_OF_MEMORY;
    memset(m, 0xff, bytes);  // NaN as f32: reading unwritten memory shows
    g_allocs[reinterpret_cast<uintptr_t>(m)] = bytes;
    *p = reinterpret_cast<uintptr_t>(m);
    TRACE("cuMemAlloc(%zu) = %#llx", bytes, *p);
    return CUDA_SUCCESS;
}
CUresult cuMemAllocAsync(CUdeviceptr* p, size_t bytes, CUstream) { return cuMemAlloc_v2(p, bytes); }

// Freed memory is poisoned (NaN again) and kept out of use for a while
// rather than handed back at once, so that a stale device address (a CUDA
// graph replayed after its buffers were replaced) points at no live
// allocation: copies and products through it abort, kernels read NaN.
static std::deque<std::pair<void*, size_t>> g_graveyard;
static size_t g_graveyard_bytes;

CUresult cuMemFree_v2(CUdeviceptr p) {
    not_in_capture("cuMemFree");
    auto it = g_allocs.find(static_cast<uintptr_t>(p));
    if (it == g_allocs.end()) die("cuMemFree of a pointer that is not a live allocation", nullptr);
    memset(dptr(p), 0xff, it->second);
    g_graveyard.emplace_back(dptr(p), it->second);
    g_graveyard_bytes += it->second;
    g_allocs.erase(it);
    while (g_graveyard_bytes > (256u << 20)) {
        free(g_graveyard.front().first);
        g_graveyard_bytes -= g_graveyard.front().second;
        g_graveyard.pop_front();
    }
    return CUDA_SUCCESS;
}
CUresult cuMemFreeAsync(CUdeviceptr p, CUstream) { return cuMemFree_v2(p); }

// Page-locked host memory. On a GPU an asynchronous copy from it runs when
// the stream reaches it, so the host may write such memory again only after
// waiting for that copy: an event recorded after it, a stream or context
// synchronisation, or a copy to pageable memory (which returns complete).
// Here every copy runs at once, but the rule is checked: copies from
// page-locked memory are numbered, waits advance `g_waited`, and a copy from
// an allocation whose previous copy was never waited for aborts (the host
// has rewritten memory a GPU might not have read yet), as does freeing it.
static std::map<uintptr_t, size_t> g_pinned;                   // start -> size
static std::map<uintptr_t, unsigned long long> g_pinned_last;  // start -> number of its last copy
static unsigned long long g_pinned_copies, g_waited;

static void waited_for_all() { g_waited = g_pinned_copies; }

CUresult cuCtxSynchronize() {
    not_in_capture("cuCtxSynchronize");
    waited_for_all();
    return CUDA_SUCCESS;
}

// CHARLM_CUDA_SIM_NO_PINNED=1: a driver that refuses page-locked memory
// (the backend must then upload from pageable memory).
CUresult cuMemHostAlloc(void** p, size_t bytes, unsigned) {
    not_in_capture("cuMemHostAlloc");
    if (bytes == 0) return CUDA_ERROR_INVALID_VALUE;
    if (env_int("CHARLM_CUDA_SIM_NO_PINNED", 0)) return CUDA_ERROR_NOT_SUPPORTED;
    void* m = aligned_alloc(4096, (bytes + 4095) / 4096 * 4096);
    if (!m) return CUDA_ERROR_OUT_OF_MEMORY;
    memset(m, 0xff, bytes);
    g_pinned[reinterpret_cast<uintptr_t>(m)] = bytes;
    *p = m;
    return CUDA_SUCCESS;
}
CUresult cuMemAllocHost_v2(void** p, size_t bytes) { return cuMemHostAlloc(p, bytes, 0); }

CUresult cuMemFreeHost(void* p) {
    not_in_capture("cuMemFreeHost");
    uintptr_t a = reinterpret_cast<uintptr_t>(p);
    if (!g_pinned.count(a)) die("cuMemFreeHost of a pointer that is not page-locked memory", nullptr);
    if (g_pinned_last[a] > g_waited) die("page-locked memory freed before the copy from it was waited for", nullptr);
    g_pinned.erase(a);
    g_pinned_last.erase(a);
    free(p);
    return CUDA_SUCCESS;
}

CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void* src, size_t bytes) {
    not_in_capture("cuMemcpyHtoD");
    check_range(dptr(dst), bytes, "copy to device");
    memcpy(dptr(dst), src, bytes);
    return CUDA_SUCCESS;
}
// The page-locked allocation holding `p`, if any (its start).
static const uintptr_t* pinned_at(const void* p, size_t bytes) {
    uintptr_t a = reinterpret_cast<uintptr_t>(p);
    auto it = g_pinned.upper_bound(a);
    if (it == g_pinned.begin() || (--it, a >= it->first + it->second)) return nullptr;
    if (a + bytes > it->first + it->second) die("copy beyond the end of page-locked memory", nullptr);
    return &it->first;
}

CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void* src, size_t bytes, CUstream) {
    not_in_capture("cuMemcpyHtoDAsync");
    if (const uintptr_t* start = pinned_at(src, bytes)) {
        if (g_pinned_last[*start] > g_waited)
            die("page-locked memory reused before the copy from it was waited for", nullptr);
        g_pinned_last[*start] = ++g_pinned_copies;
    }
    return cuMemcpyHtoD_v2(dst, src, bytes);
}
CUresult cuMemcpyDtoH_v2(void* dst, CUdeviceptr src, size_t bytes) {
    not_in_capture("cuMemcpyDtoH");
    check_range(dptr(src), bytes, "copy from device");
    memcpy(dst, dptr(src), bytes);
    waited_for_all();
    return CUDA_SUCCESS;
}
CUresult cuMemcpyDtoHAsync_v2(void* dst, CUdeviceptr src, size_t bytes, CUstream) {
    not_in_capture("cuMemcpyDtoHAsync");
    // into pageable memory it returns complete, as the synchronous copy;
    // into page-locked memory it is only queued: no wait
    if (!pinned_at(dst, bytes)) return cuMemcpyDtoH_v2(dst, src, bytes);
    check_range(dptr(src), bytes, "copy from device");
    memcpy(dst, dptr(src), bytes);
    return CUDA_SUCCESS;
}
static CUresult dtod(CUdeviceptr dst, CUdeviceptr src, size_t bytes) {
    check_range(dptr(src), bytes, "device copy source");
    check_range(dptr(dst), bytes, "device copy destination");
    memmove(dptr(dst), dptr(src), bytes);
    return CUDA_SUCCESS;
}
CUresult cuMemcpyDtoD_v2(CUdeviceptr dst, CUdeviceptr src, size_t bytes) {
    not_in_capture("cuMemcpyDtoD");
    return dtod(dst, src, bytes);
}
CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr dst, CUdeviceptr src, size_t bytes, CUstream) {
    return queued("cuMemcpyDtoDAsync", [=] { return dtod(dst, src, bytes); });
}
static CUresult set8(CUdeviceptr dst, unsigned char v, size_t n) {
    check_range(dptr(dst), n, "memset");
    memset(dptr(dst), v, n);
    return CUDA_SUCCESS;
}
CUresult cuMemsetD8_v2(CUdeviceptr dst, unsigned char v, size_t n) {
    not_in_capture("cuMemsetD8");
    return set8(dst, v, n);
}
CUresult cuMemsetD8Async(CUdeviceptr dst, unsigned char v, size_t n, CUstream) {
    return queued("cuMemsetD8Async", [=] { return set8(dst, v, n); });
}
static CUresult set32(CUdeviceptr dst, unsigned v, size_t n) {
    check_range(dptr(dst), n * 4, "memset");
    unsigned* d = static_cast<unsigned*>(dptr(dst));
    for (size_t i = 0; i < n; ++i) d[i] = v;
    return CUDA_SUCCESS;
}
CUresult cuMemsetD32_v2(CUdeviceptr dst, unsigned v, size_t n) {
    not_in_capture("cuMemsetD32");
    return set32(dst, v, n);
}
CUresult cuMemsetD32Async(CUdeviceptr dst, unsigned v, size_t n, CUstream) {
    return queued("cuMemsetD32Async", [=] { return set32(dst, v, n); });
}

// ---- streams and events: everything is already complete ---------------------

CUresult cuStreamCreate(CUstream* s, unsigned) {
    *s = &g_context_token;
    return CUDA_SUCCESS;
}
CUresult cuStreamDestroy_v2(CUstream) { return CUDA_SUCCESS; }
CUresult cuStreamSynchronize(CUstream) {
    not_in_capture("cuStreamSynchronize");
    waited_for_all();
    return CUDA_SUCCESS;
}
CUresult cuStreamQuery(CUstream) {
    not_in_capture("cuStreamQuery");
    waited_for_all();
    return CUDA_SUCCESS;
}
CUresult cuStreamWaitEvent(CUstream, CUevent, unsigned) {
    not_in_capture("cuStreamWaitEvent");
    return CUDA_SUCCESS;
}
// Events: work is complete when the call that queues it returns, so a
// recorded event's time is the host clock at cuEventRecord. As on a GPU,
// cuEventElapsedTime refuses events created with CU_EVENT_DISABLE_TIMING
// (cudarc's default) and events never recorded.
struct SimEvent {
    bool timing;
    bool recorded;
    struct timespec at;
    unsigned long long copies;  // page-locked copies queued before its record
};
CUresult cuEventCreate(CUevent* e, unsigned flags) {
    *e = new SimEvent{(flags & 0x2) == 0, false, {}, 0};
    return CUDA_SUCCESS;
}
CUresult cuEventDestroy_v2(CUevent e) {
    delete static_cast<SimEvent*>(e);
    return CUDA_SUCCESS;
}
CUresult cuEventRecord(CUevent e, CUstream) {
    not_in_capture("cuEventRecord");
    SimEvent* ev = static_cast<SimEvent*>(e);
    ev->recorded = true;
    ev->copies = g_pinned_copies;
    clock_gettime(CLOCK_MONOTONIC, &ev->at);
    return CUDA_SUCCESS;
}
CUresult cuEventElapsedTime(float* ms, CUevent start, CUevent end) {
    const SimEvent* a = static_cast<const SimEvent*>(start);
    const SimEvent* b = static_cast<const SimEvent*>(end);
    if (!a || !b || !a->timing || !b->timing || !a->recorded || !b->recorded) return CUDA_ERROR_INVALID_HANDLE;
    *ms = (float)((double)(b->at.tv_sec - a->at.tv_sec) * 1e3 + (double)(b->at.tv_nsec - a->at.tv_nsec) * 1e-6);
    return CUDA_SUCCESS;
}
static void waited_for(CUevent e) {
    const SimEvent* ev = static_cast<const SimEvent*>(e);
    if (ev && ev->recorded && ev->copies > g_waited) g_waited = ev->copies;
}
CUresult cuEventSynchronize(CUevent e) {
    not_in_capture("cuEventSynchronize");
    waited_for(e);
    return CUDA_SUCCESS;
}
CUresult cuEventQuery(CUevent e) {
    not_in_capture("cuEventQuery");
    waited_for(e);
    return CUDA_SUCCESS;
}

// ---- modules and launches ------------------------------------------------------

CUresult cuModuleLoadData(CUmodule* m, const void* image) {
    if (!image) return CUDA_ERROR_INVALID_VALUE;
    *m = &g_module_token;  // the image (NVRTC's cubin) is not run: the kernels are compiled in
    return CUDA_SUCCESS;
}
CUresult cuModuleUnload(CUmodule) { return CUDA_SUCCESS; }

CUresult cuModuleGetFunction(CUfunction* f, CUmodule, const char* name) {
    for (const Kernel& k : KERNELS) {
        if (strcmp(k.name, name) == 0) {
            *f = &k;
            return CUDA_SUCCESS;
        }
    }
    TRACE("cuModuleGetFunction: no kernel %s", name);
    return CUDA_ERROR_NOT_FOUND;
}

// CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES of each kernel that set it:
// a launch asking for more dynamic shared memory than the device gives
// without opting in must have raised it first, as on a GPU.
static std::map<CUfunction, int> g_max_dynamic_smem;

static int dynamic_smem_limit(CUfunction f) {
    auto it = g_max_dynamic_smem.find(f);
    return it == g_max_dynamic_smem.end() ? smem_per_block() : it->second;
}

CUresult cuFuncSetAttribute(CUfunction f, int attribute, int value) {
    if (!f) return CUDA_ERROR_INVALID_VALUE;
    if (attribute != 8) return CUDA_ERROR_NOT_SUPPORTED;
    if (value < 0 || value > smem_optin()) return CUDA_ERROR_INVALID_VALUE;
    g_max_dynamic_smem[f] = value;
    return CUDA_SUCCESS;
}

CUresult cuFuncGetAttribute(int* v, int attribute, CUfunction f) {
    if (!f) return CUDA_ERROR_INVALID_VALUE;
    switch (attribute) {
        case 0: *v = 1024; break;  // max threads per block
        case 1: *v = 0; break;     // static shared memory: the kernels declare none
        case 8: *v = dynamic_smem_limit(f); break;
        default: *v = 0; break;
    }
    return CUDA_SUCCESS;
}

static CUresult launch(CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                       unsigned shared_bytes, void** params, void** extra, bool cooperative) {
    if (!f || extra || gx * gy * gz == 0 || bx * by * bz == 0 || bx * by * bz > 1024) return CUDA_ERROR_INVALID_VALUE;
    int smem_limit = dynamic_smem_limit(f);
    if (shared_bytes > (unsigned)smem_limit) {
        TRACE("launch of %s with %u bytes of dynamic shared memory, over its limit of %d", f->name, shared_bytes,
              smem_limit);
        return CUDA_ERROR_INVALID_VALUE;
    }
    TRACE("%s %s <<<(%u,%u,%u), (%u,%u,%u), %u>>>", cooperative ? "cooperative launch" : "launch", f->name, gx, gy,
          gz, bx, by, bz, shared_bytes);
    if (f->mode == WHOLE_GRID && !cooperative) die("a kernel with grid barriers launched without cuLaunchCooperativeKernel", f->name);
    unsigned threads = bx * by * bz, blocks = gx * gy * gz;
    if (f->mode == WHOLE_GRID && blocks > 132) return 720;  // CUDA_ERROR_COOPERATIVE_LAUNCH_TOO_LARGE: more blocks than the GPU holds
    if (g_capture) {
        // the arguments as they are now, in storage aligned for any type
        std::vector<size_t> sizes = f->sizes();
        auto saved = std::make_shared<std::vector<std::vector<max_align_t>>>();
        for (size_t i = 0; i < sizes.size(); ++i) {
            saved->emplace_back((sizes[i] + sizeof(max_align_t) - 1) / sizeof(max_align_t));
            memcpy(saved->back().data(), params[i], sizes[i]);
        }
        CUresult r;
        captured(
            f->name,
            [=] {
                std::vector<void*> p;
                for (auto& a : *saved) p.push_back(a.data());
                return launch(f, gx, gy, gz, bx, by, bz, shared_bytes, p.data(), nullptr, cooperative);
            },
            &r, cooperative);
        return r;
    }
    g_kernel = f;
    g_params = params;
    gridDim = {gx, gy, gz};
    blockDim = {bx, by, bz};
    g_smem_bytes = shared_bytes;
    // fresh shared memory is NaN, as fresh device memory
    unsigned held = f->mode == WHOLE_GRID ? blocks : 1;
    g_smem.assign(held, std::vector<float>((shared_bytes + 3) / 4, __int_as_float(-1)));
    if (f->mode == WHOLE_GRID) {
        run_on_fibers(0, blocks, threads);
        return CUDA_SUCCESS;
    }
    for (unsigned bi = 0; bi < blocks; ++bi) {
        unsigned b = order(bi, blocks);
        if (f->mode == BLOCKWISE) {
            for (auto& w : g_smem[0]) w = __int_as_float(-1);
            run_on_fibers(b, 1, threads);
        } else {
            for (unsigned ti = 0; ti < threads; ++ti) {
                set_thread_index(b, order(ti, threads));
                f->thread(params);
            }
        }
    }
    return CUDA_SUCCESS;
}

CUresult cuLaunchKernel(CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                        unsigned shared_bytes, CUstream, void** params, void** extra) {
    return launch(f, gx, gy, gz, bx, by, bz, shared_bytes, params, extra, false);
}

// CHARLM_CUDA_SIM_NO_COOPERATIVE=1: the device says it takes cooperative
// launches, but each one is refused (as a sandbox between a program and the
// driver might): `auto` must then run the recurrence a step at a time.
CUresult cuLaunchCooperativeKernel(CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                                  unsigned bz, unsigned shared_bytes, CUstream, void** params) {
    if (env_int("CHARLM_CUDA_SIM_NO_COOPERATIVE", 0)) return CUDA_ERROR_NOT_SUPPORTED;
    return launch(f, gx, gy, gz, bx, by, bz, shared_bytes, params, nullptr, true);
}

// ---- cuBLAS ------------------------------------------------------------------------

typedef int cublasStatus_t;
typedef void* cublasHandle_t;
enum { CUBLAS_STATUS_SUCCESS = 0, CUBLAS_STATUS_INVALID_VALUE = 7, CUBLAS_STATUS_EXECUTION_FAILED = 13 };

// During a capture: records a product (its scalars copied) and returns true
// with `*status` set; otherwise false.
static bool blas_captured(const char* call, std::function<cublasStatus_t()> product, cublasStatus_t* status) {
    CUresult r;
    if (!captured(call, [=] { return product() == CUBLAS_STATUS_SUCCESS ? CUDA_SUCCESS : CUDA_ERROR_LAUNCH_FAILED; }, &r))
        return false;
    *status = r == CUDA_SUCCESS ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_EXECUTION_FAILED;
    return true;
}
enum { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 };

static int g_blas_token;

cublasStatus_t cublasCreate_v2(cublasHandle_t* h) {
    *h = &g_blas_token;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy_v2(cublasHandle_t) { return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasSetStream_v2(cublasHandle_t, CUstream) { return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasSetMathMode(cublasHandle_t, int) { return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasSetWorkspace_v2(cublasHandle_t, void*, size_t) { return CUBLAS_STATUS_SUCCESS; }

// Column-major C[m, n] = alpha op(A)[m, k] op(B)[k, n] + beta C, f32
// accumulation; with beta == 0, C is not read (as cuBLAS).
cublasStatus_t cublasSgemm_v2(cublasHandle_t h, int ta, int tb, int m, int n, int k, const float* alpha, const float* a,
                              int lda, const float* b, int ldb, const float* beta, float* c, int ldc) {
    if (m < 0 || n < 0 || k < 0 || (ta != CUBLAS_OP_N && ta != CUBLAS_OP_T) || (tb != CUBLAS_OP_N && tb != CUBLAS_OP_T))
        return CUBLAS_STATUS_INVALID_VALUE;
    int a_rows = ta == CUBLAS_OP_N ? m : k, a_cols = ta == CUBLAS_OP_N ? k : m;
    int b_rows = tb == CUBLAS_OP_N ? k : n, b_cols = tb == CUBLAS_OP_N ? n : k;
    if (lda < (a_rows > 1 ? a_rows : 1) || ldb < (b_rows > 1 ? b_rows : 1) || ldc < (m > 1 ? m : 1))
        return CUBLAS_STATUS_INVALID_VALUE;
    TRACE("sgemm %c%c m=%d n=%d k=%d lda=%d ldb=%d ldc=%d beta=%g", ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k, lda, ldb,
          ldc, (double)*beta);
    if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
    if (k > 0) {
        check_range(a, ((size_t)(a_cols - 1) * lda + a_rows) * 4, "sgemm A");
        check_range(b, ((size_t)(b_cols - 1) * ldb + b_rows) * 4, "sgemm B");
    }
    check_range(c, ((size_t)(n - 1) * ldc + m) * 4, "sgemm C");
    cublasStatus_t status;
    float al = *alpha, be = *beta;
    auto product = [=] { return cublasSgemm_v2(h, ta, tb, m, n, k, &al, a, lda, b, ldb, &be, c, ldc); };
    if (blas_captured("cublasSgemm", product, &status)) return status;
    for (int j = 0; j < n; ++j) {
        for (int i = 0; i < m; ++i) {
            float acc = 0.0f;
            for (int l = 0; l < k; ++l) {
                float x = ta == CUBLAS_OP_N ? a[i + (size_t)l * lda] : a[l + (size_t)i * lda];
                float y = tb == CUBLAS_OP_N ? b[l + (size_t)j * ldb] : b[j + (size_t)l * ldb];
                acc += x * y;
            }
            float* out = &c[i + (size_t)j * ldc];
            *out = *beta == 0.0f ? *alpha * acc : *alpha * acc + *beta * *out;
        }
    }
    return CUBLAS_STATUS_SUCCESS;
}

// y = alpha op(A) x + beta y, A column-major [m, n].
cublasStatus_t cublasSgemv_v2(cublasHandle_t h, int trans, int m, int n, const float* alpha, const float* a, int lda,
                              const float* x, int incx, const float* beta, float* y, int incy) {
    if (m < 0 || n < 0 || lda < (m > 1 ? m : 1) || incx <= 0 || incy <= 0 ||
        (trans != CUBLAS_OP_N && trans != CUBLAS_OP_T))
        return CUBLAS_STATUS_INVALID_VALUE;
    TRACE("sgemv %c m=%d n=%d lda=%d", trans ? 'T' : 'N', m, n, lda);
    if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
    int out_len = trans == CUBLAS_OP_N ? m : n, in_len = trans == CUBLAS_OP_N ? n : m;
    check_range(a, ((size_t)(n - 1) * lda + m) * 4, "sgemv A");
    check_range(x, ((size_t)(in_len - 1) * incx + 1) * 4, "sgemv x");
    check_range(y, ((size_t)(out_len - 1) * incy + 1) * 4, "sgemv y");
    cublasStatus_t status;
    float al = *alpha, be = *beta;
    auto product = [=] { return cublasSgemv_v2(h, trans, m, n, &al, a, lda, x, incx, &be, y, incy); };
    if (blas_captured("cublasSgemv", product, &status)) return status;
    for (int o = 0; o < out_len; ++o) {
        float acc = 0.0f;
        for (int i = 0; i < in_len; ++i) {
            float av = trans == CUBLAS_OP_N ? a[o + (size_t)i * lda] : a[i + (size_t)o * lda];
            acc += av * x[(size_t)i * incx];
        }
        float* out = &y[(size_t)o * incy];
        *out = *beta == 0.0f ? *alpha * acc : *alpha * acc + *beta * *out;
    }
    return CUBLAS_STATUS_SUCCESS;
}

}  // extern "C"
