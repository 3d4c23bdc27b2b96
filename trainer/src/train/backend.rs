//! The interface the training loop drives. The CPU backend is the reference;
//! a CUDA backend implements the same trait and is tested against it.

use crate::batch::Batch;
use crate::cpu::{Classes, Cpu, Dropout, Loss};
use crate::error::CliError;
use crate::optim::Optimizer;
use crate::params::Layout;

/// Something that computes losses and gradients for one architecture.
pub trait Backend: Send {
    /// For messages: which device, how many threads.
    fn describe(&self) -> String;
    /// Loss of `batch` and the gradient of its mean, written into `grads`.
    fn loss_and_grad(
        &mut self,
        params: &[f32],
        batch: &Batch,
        grads: &mut [f32],
        dropout: Option<Dropout>,
    ) -> Loss;
    /// Loss only (held-out data).
    fn loss(&mut self, params: &[f32], batch: &Batch, classes: Classes) -> Loss;
    /// The state carried between windows of running text (for checkpoints).
    fn carried_state(&self) -> (usize, Vec<Vec<f32>>);
    /// Restores a carried state.
    fn set_carried_state(&mut self, rows: usize, state: Vec<Vec<f32>>);
    /// Whole optimizer steps with parameters and optimizer state kept on the
    /// device, when this backend has them (CUDA); `None` (the CPU): the loop
    /// drives [`Backend::loss_and_grad`] and the host's optimizer.
    fn resident(&mut self) -> Option<&mut dyn Resident> {
        None
    }
}

/// Training with the parameters and optimizer state on the device: the host
/// queues steps and reads back only at its own sync points (log lines,
/// checkpoints, the end of an epoch).
pub trait Resident {
    /// Puts parameters and optimizer state on the device (and clears the
    /// divergence guard).
    fn load(&mut self, params: &[f32], opt: &Optimizer) -> Result<(), CliError>;
    /// Queues one step: forward, loss, backward, clipping (0 = off), update
    /// at `lr`. A step whose loss or gradient is not finite does not update,
    /// nor does any after it; [`Resident::settle`] reports it.
    fn step(
        &mut self,
        batch: &Batch,
        dropout: Option<Dropout>,
        clip: f32,
        lr: f32,
    ) -> Result<(), CliError>;
    /// Waits for the queued steps: the nats they summed, or which step
    /// diverged.
    fn settle(&mut self) -> Result<Settled, CliError>;
    /// Copies parameters and optimizer state back (for checkpoints, held-out
    /// scores and samples).
    fn store(&mut self, params: &mut [f32], opt: &mut Optimizer) -> Result<(), CliError>;
}

/// What [`Resident::settle`] found.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Settled {
    /// Every step was finite; their summed nats.
    Nats(f64),
    /// The first step (the optimizer's count before it) whose loss or
    /// gradient was not finite; the parameters are those from before it.
    Diverged {
        /// "loss" or "gradient".
        what: &'static str,
        /// Steps taken before it.
        step: u64,
    },
}

impl Backend for Cpu<f32> {
    fn describe(&self) -> String {
        let threads = rayon::current_num_threads() as u64;
        format!("cpu ({})", crate::out::count(threads, "thread", "threads"))
    }
    fn loss_and_grad(
        &mut self,
        params: &[f32],
        batch: &Batch,
        grads: &mut [f32],
        dropout: Option<Dropout>,
    ) -> Loss {
        Cpu::loss_and_grad(self, params, batch, grads, dropout)
    }
    fn loss(&mut self, params: &[f32], batch: &Batch, classes: Classes) -> Loss {
        Cpu::loss(self, params, batch, classes)
    }
    fn carried_state(&self) -> (usize, Vec<Vec<f32>>) {
        Cpu::carried_state(self)
    }
    fn set_carried_state(&mut self, rows: usize, state: Vec<Vec<f32>>) {
        Cpu::set_carried_state(self, rows, state)
    }
}

/// Where to train: `auto`, `cpu`, `cuda` or `cuda:N` (GPU number N).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Device {
    /// CUDA (GPU 0) when this build has it and a driver is present, else the CPU.
    Auto,
    /// The CPU backend.
    Cpu,
    /// An NVIDIA GPU, by number.
    Cuda(usize),
}

impl std::str::FromStr for Device {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Device::Auto),
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Device::Cuda)
                .ok_or_else(|| format!("'{s}' is not a device: use auto, cpu, cuda or cuda:N")),
        }
    }
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Device::Auto => f.write_str("auto"),
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// The CPU backend chosen by `--device auto`, with the reason in its description.
struct AutoCpu(Cpu<f32>, String);

impl Backend for AutoCpu {
    fn describe(&self) -> String {
        format!("{} (--device auto: {})", self.0.describe(), self.1)
    }
    fn loss_and_grad(
        &mut self,
        params: &[f32],
        batch: &Batch,
        grads: &mut [f32],
        dropout: Option<Dropout>,
    ) -> Loss {
        self.0.loss_and_grad(params, batch, grads, dropout)
    }
    fn loss(&mut self, params: &[f32], batch: &Batch, classes: Classes) -> Loss {
        self.0.loss(params, batch, classes)
    }
    fn carried_state(&self) -> (usize, Vec<Vec<f32>>) {
        self.0.carried_state()
    }
    fn set_carried_state(&mut self, rows: usize, state: Vec<Vec<f32>>) {
        self.0.set_carried_state(rows, state)
    }
}

/// A backend for `layout` on `device`. `cuda` without a usable GPU is an
/// error (one line); `auto` falls back to the CPU and says why in
/// [`Backend::describe`].
pub fn select(device: Device, layout: &Layout) -> Result<Box<dyn Backend>, CliError> {
    use crate::cuda;
    match device {
        Device::Cpu => Ok(Box::new(Cpu::<f32>::new(layout.clone()))),
        Device::Cuda(n) => cuda::open_backend(layout, n).map_err(|e| match e {
            // A setting of the user's: to be fixed, whatever the device.
            cuda::CudaError::Config(_) => CliError::invalid(format!("--device cuda:{n}: {e}")),
            _ => CliError::invalid(format!("--device cuda:{n}: {e}; use --device cpu or auto")),
        }),
        Device::Auto => {
            let why = if !cuda::BUILT {
                "this build has no CUDA backend".to_string()
            } else if !cuda::driver_present() {
                "no NVIDIA driver found".to_string()
            } else {
                match cuda::open_backend(layout, 0) {
                    Ok(b) => return Ok(b),
                    // A bad CHARLM_CUDA_* setting is the user's to fix, not
                    // a reason to train on the CPU unasked.
                    Err(e @ cuda::CudaError::Config(_)) => {
                        return Err(CliError::invalid(format!("--device auto: {e}")));
                    }
                    Err(e) => format!("CUDA unusable: {e}"),
                }
            };
            Ok(Box::new(AutoCpu(Cpu::<f32>::new(layout.clone()), why)))
        }
    }
}
