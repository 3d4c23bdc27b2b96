//! The interface the training loop drives. The CPU backend is the reference;
//! a CUDA backend implements the same trait and is tested against it.

use crate::batch::Batch;
use crate::cpu::{Classes, Cpu, Dropout, Loss};
use crate::error::CliError;
use crate::params::Layout;

/// Something that computes losses and gradients for one architecture.
pub trait Backend: Send {
    /// For messages: which device, how many threads.
    fn describe(&self) -> String;
    /// Loss of `batch` and the gradient of its mean, written into `grads`.
    fn loss_and_grad(&mut self, params: &[f32], batch: &Batch, grads: &mut [f32], dropout: Option<Dropout>) -> Loss;
    /// Loss only (held-out data).
    fn loss(&mut self, params: &[f32], batch: &Batch, classes: Classes) -> Loss;
    /// The state carried between windows of running text (for checkpoints).
    fn carried_state(&self) -> (usize, Vec<Vec<f32>>);
    /// Restores a carried state.
    fn set_carried_state(&mut self, rows: usize, state: Vec<Vec<f32>>);
}

impl Backend for Cpu<f32> {
    fn describe(&self) -> String {
        format!("cpu ({} threads)", rayon::current_num_threads())
    }
    fn loss_and_grad(&mut self, params: &[f32], batch: &Batch, grads: &mut [f32], dropout: Option<Dropout>) -> Loss {
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

/// Where to train.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
pub enum Device {
    /// CUDA when this build has it and a driver is present, else the CPU.
    Auto,
    /// The CPU backend.
    Cpu,
    /// An NVIDIA GPU.
    Cuda,
}

/// A backend for `layout` on `device`.
pub fn select(device: Device, layout: &Layout) -> Result<Box<dyn Backend>, CliError> {
    match device {
        Device::Auto | Device::Cpu => Ok(Box::new(Cpu::<f32>::new(layout.clone()))),
        Device::Cuda => Err(CliError::invalid("--device cuda: this build of charlm has no CUDA backend; use --device cpu")),
    }
}
