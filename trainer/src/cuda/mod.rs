//! The CUDA backend: the CPU reference's computation (`crate::cpu`) on an
//! NVIDIA GPU, through cudarc with every library loaded at run time (the
//! build needs no CUDA; a machine without a driver gets a typed error, never
//! a panic).
//!
//! Same layout, same masking, same dropout masks (the kernels compute the
//! CPU's SplitMix64 draws), same optimizer rules. Per batch:
//! 1. layer 0's input pre-activations are a gather of input-table rows
//!    (`embed_forward`); layers above are one cuBLAS product over all
//!    `T*B` rows, plus the bias;
//! 2. the recurrence, in one of two forms (`CHARLM_CUDA_RECURRENCE`): one
//!    cooperative launch per layer and pass whose blocks keep their slice
//!    of `W_hh` in shared memory and meet at a grid barrier after each time
//!    step (`*_seq` kernels, planned by `SeqPlan`), or per time step one
//!    cuBLAS product `h_{t-1} W_hh^T` and one fused pointwise cell kernel;
//! 3. the output projection over all rows (one product), then one fused
//!    kernel for softmax, masked cross-entropy and its gradient; the loss is
//!    reduced on the device in f64;
//! 4. backwards, the mirror image (a sequence kernel, or per step one fused
//!    cell kernel and one product through `W_hh`), then weight gradients as single products over
//!    all rows, bias gradients as `x^T 1`, and the input table's gradient as
//!    a deterministic gather by id (no atomics);
//! 5. with [`Cuda::train_step`], gradient-norm clipping and Adam/RMSprop on
//!    the device too, so parameters never leave it; the loss is read back
//!    only when asked for ([`Cuda::take_nats`]). Such steps are captured as
//!    CUDA graphs and replayed (`CHARLM_CUDA_GRAPHS`, see `backend.rs`).
//!
//! Kernel sources are `kernels/*.cu`, compiled by NVRTC once per process for
//! the device's architecture ([`nvrtc`]).
//!
//! Not done yet: a choice of recurrence form, and of graphs or none,
//! measured on a GPU rather than guessed (see docs/GPU.md). `charlm bench gpu --profile N` ([`profile`]) shows where a
//! step's GPU time goes.

#[cfg(feature = "cuda")]
mod backend;
pub mod check;
#[cfg(feature = "cuda")]
mod dev;
#[cfg(feature = "cuda")]
pub mod nvrtc;
pub mod parity;
#[cfg(feature = "cuda")]
pub mod profile;

#[cfg(feature = "cuda")]
pub use backend::{Cuda, positions_by_id};

/// Why the CUDA backend is not available, or what failed on the device.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CudaError {
    /// Built without the `cuda` feature.
    #[error("this build of charlm has no CUDA backend (built without the `cuda` feature)")]
    NotBuilt,
    /// libcuda cannot be loaded.
    #[error("no NVIDIA driver found (libcuda.so.1 cannot be loaded)")]
    NoDriver,
    /// The driver sees no GPU.
    #[error("the NVIDIA driver reports no GPU")]
    NoDevice,
    /// `cuda:N` beyond the GPUs present.
    #[error("cuda:{ordinal}: no such GPU ({count} found, numbered from 0)")]
    NoSuchDevice {
        /// Asked for.
        ordinal: usize,
        /// Present.
        count: usize,
    },
    /// libnvrtc cannot be loaded.
    #[error(
        "NVRTC cannot be loaded (no libnvrtc.so or libnvrtc.so.12 on the library path): add the folder holding it to LD_LIBRARY_PATH (`bash scripts/install-nvrtc.sh` installs one and prints its folder); where there is only libnvrtc.so.13 (CUDA 13 without its development files), link libnvrtc.so to it"
    )]
    NoNvrtc,
    /// libcublas cannot be loaded.
    #[error(
        "cuBLAS cannot be loaded (no libcublas.so or libcublas.so.12 on the library path): add the folder holding it to LD_LIBRARY_PATH; where there is only libcublas.so.13 (CUDA 13 without its development files), link libcublas.so to it"
    )]
    NoCublas,
    /// A kernel source failed to compile.
    #[error("NVRTC failed on {file}: {log}")]
    Nvrtc {
        /// Source file.
        file: String,
        /// NVRTC's log.
        log: String,
    },
    /// A driver call failed.
    #[error("CUDA driver: {0}")]
    Driver(String),
    /// The driver refused a cooperative launch as such (not supported or
    /// not permitted here, or a grid too large for it): `auto` then runs the
    /// recurrence stepwise.
    #[error("the CUDA driver refused a cooperative launch: {0}")]
    CooperativeRefused(String),
    /// A setting of the CUDA backend is invalid.
    #[error("{0}")]
    Config(String),
    /// A cuBLAS call failed.
    #[error("cuBLAS: {0}")]
    Blas(String),
    /// A CUDA library that loaded lacks a function charlm calls (cudarc
    /// looks each up at its first call).
    #[error(
        "{0}: the CUDA library loaded under that name is older than CUDA 12 or another library (check what LD_LIBRARY_PATH finds first)"
    )]
    MissingSymbol(String),
}

/// cudarc's panic message for a function a loaded library lacks, if
/// `payload` is one.
pub fn missing_symbol(payload: &(dyn std::any::Any + Send)) -> Option<String> {
    let message = match payload.downcast_ref::<String>() {
        Some(s) => s.as_str(),
        None => *payload.downcast_ref::<&str>()?,
    };
    message
        .starts_with("Missing symbol ")
        .then(|| message.to_string())
}

/// Runs `f`, which makes cudarc's first calls into the CUDA libraries, with
/// cudarc's panic for a function a library lacks turned into
/// [`CudaError::MissingSymbol`] (`--device auto` then trains on the CPU).
/// The program's panic hook keeps such a panic quiet (`main`).
pub fn guarded<T>(f: impl FnOnce() -> Result<T, CudaError>) -> Result<T, CudaError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(payload) => match missing_symbol(&*payload) {
            Some(message) => Err(CudaError::MissingSymbol(message)),
            None => std::panic::resume_unwind(payload),
        },
    }
}

#[cfg(feature = "cuda")]
impl From<cudarc::driver::DriverError> for CudaError {
    fn from(e: cudarc::driver::DriverError) -> Self {
        let name = e
            .error_string()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        CudaError::Driver(if name.is_empty() {
            format!("{:?}", e.0)
        } else {
            format!("{:?} ({name})", e.0)
        })
    }
}

#[cfg(feature = "cuda")]
impl From<cudarc::cublas::result::CublasError> for CudaError {
    fn from(e: cudarc::cublas::result::CublasError) -> Self {
        CudaError::Blas(format!("{:?}", e.0))
    }
}

/// True when this build has the CUDA backend.
pub const BUILT: bool = cfg!(feature = "cuda");

/// True when the NVIDIA driver library can be loaded (checked without
/// touching the driver, so it never panics).
pub fn driver_present() -> bool {
    #[cfg(feature = "cuda")]
    {
        // SAFETY: only tries to dlopen the library's candidate names.
        unsafe { cudarc::driver::sys::is_culib_present() }
    }
    #[cfg(not(feature = "cuda"))]
    {
        false
    }
}

/// Number of GPUs the driver sees.
pub fn device_count() -> Result<usize, CudaError> {
    #[cfg(feature = "cuda")]
    {
        if !driver_present() {
            return Err(CudaError::NoDriver);
        }
        let n = guarded(|| Ok(cudarc::driver::CudaContext::device_count()?))?;
        if n <= 0 {
            Err(CudaError::NoDevice)
        } else {
            Ok(n as usize)
        }
    }
    #[cfg(not(feature = "cuda"))]
    {
        Err(CudaError::NotBuilt)
    }
}

/// The CUDA backend for `layout` on GPU `ordinal`, boxed as a
/// [`crate::train::Backend`].
pub fn open_backend(
    layout: &crate::params::Layout,
    ordinal: usize,
) -> Result<Box<dyn crate::train::Backend>, CudaError> {
    #[cfg(feature = "cuda")]
    {
        Ok(Box::new(Cuda::new(layout.clone(), ordinal)?))
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = (layout, ordinal);
        Err(CudaError::NotBuilt)
    }
}
