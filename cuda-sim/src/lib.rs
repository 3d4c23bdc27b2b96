//! A CPU stand-in for the parts of the CUDA driver API and cuBLAS that
//! charlm's CUDA backend calls, built as a shared library named
//! `libcuda.so.1` (and `libcublas.so.12`) in [`LIB_DIR`].
//!
//! cudarc loads every CUDA library at run time, so a process whose
//! `LD_LIBRARY_PATH` starts with [`LIB_DIR`] runs the real backend —
//! buffers, launches, cuBLAS argument conventions, the training step — with
//! the kernels of `trainer/src/cuda/kernels/*.cu` compiled as C++ for the
//! host and executed one simulated thread at a time (`__syncthreads` and
//! warp shuffles run on cooperative fibers). NVRTC itself is the real one:
//! it compiles the same sources for the GPU, and the image is then ignored.
//!
//! What this proves: the Rust side and the kernels compute what the CPU
//! reference computes (`charlm bench parity --device cuda` passes here),
//! and page-locked memory is not reused or freed before its copy was waited
//! for (checked). What it cannot: real-hardware timing, or races between
//! concurrent threads (simulated threads never overlap; every call
//! completes before it returns). Those need `scripts/gpu-check.sh` on a GPU.
//! See `sim/sim.cpp`.

/// Folder holding `libcuda.so.1` and `libcublas.so.12` (the simulator).
pub const LIB_DIR: &str = concat!(env!("OUT_DIR"), "/lib");
