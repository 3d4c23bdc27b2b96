//! Optimizers and gradient clipping, with PyTorch's update rules (so the
//! parity fixture can check them step by step).
//!
//! * Adam: `torch.optim.Adam` (betas 0.9, 0.999, eps 1e-8, bias-corrected).
//! * RMSprop: PyTorch's rule (`v = a*v + (1-a)*g^2`, `p -= lr*g/(sqrt(v)+eps)`)
//!   with the lesson's Keras defaults `rho = 0.9`, `eps = 1e-7` instead of
//!   PyTorch's 0.99 and 1e-8: the lesson trains with Keras' RMSprop, and its
//!   shorter averaging window is what the lesson's learning rate 1e-3 was
//!   tuned with. (Keras adds eps inside the root on some versions; the
//!   difference is below 1e-3 relative once `v` exceeds 1e-4.)
//! * Clipping: `torch.nn.utils.clip_grad_norm_` (global 2-norm, coefficient
//!   `max / (norm + 1e-6)` applied when below 1).

use serde::{Deserialize, Serialize};

/// Which update rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
pub enum Kind {
    /// Adam (PyTorch defaults).
    Adam,
    /// RMSprop (rho 0.9, eps 1e-7: the lesson's Keras defaults).
    Rmsprop,
}

impl Kind {
    /// Name as on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Adam => "adam",
            Kind::Rmsprop => "rmsprop",
        }
    }
}

/// Adam's decay rates and epsilon.
pub const ADAM_BETAS: (f32, f32) = (0.9, 0.999);
/// Adam's epsilon.
pub const ADAM_EPS: f32 = 1e-8;
/// RMSprop's decay rate (Keras `rho`, PyTorch `alpha`).
pub const RMSPROP_RHO: f32 = 0.9;
/// RMSprop's epsilon (Keras' default).
pub const RMSPROP_EPS: f32 = 1e-7;

/// An optimizer and its state (saved in checkpoints).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Optimizer {
    /// Update rule.
    pub kind: Kind,
    /// Steps taken.
    pub steps: u64,
    /// Adam: first moment. RMSprop: unused.
    pub m: Vec<f32>,
    /// Second moment (squared-gradient average).
    pub v: Vec<f32>,
}

impl Optimizer {
    /// A fresh optimizer for `n` parameters.
    pub fn new(kind: Kind, n: usize) -> Self {
        let m = if kind == Kind::Adam {
            vec![0.0; n]
        } else {
            Vec::new()
        };
        Optimizer {
            kind,
            steps: 0,
            m,
            v: vec![0.0; n],
        }
    }

    /// One update of `params` with `grads` at learning rate `lr`.
    pub fn step(&mut self, params: &mut [f32], grads: &[f32], lr: f32) {
        assert_eq!(params.len(), grads.len());
        assert_eq!(params.len(), self.v.len());
        self.steps += 1;
        match self.kind {
            Kind::Adam => {
                let (b1, b2) = ADAM_BETAS;
                let t = self.steps as i32;
                // Scalars as PyTorch computes them (Python floats), then f32.
                let bc1 = 1.0 - (b1 as f64).powi(t);
                let bc2 = 1.0 - (b2 as f64).powi(t);
                let step_size = (lr as f64 / bc1) as f32;
                let bc2_sqrt = bc2.sqrt() as f32;
                let w = 1.0 - b1;
                for (((p, &g), m), v) in params
                    .iter_mut()
                    .zip(grads)
                    .zip(&mut self.m)
                    .zip(&mut self.v)
                {
                    *m += w * (g - *m);
                    *v = *v * b2 + g * g * (1.0 - b2);
                    let denom = v.sqrt() / bc2_sqrt + ADAM_EPS;
                    *p -= step_size * (*m / denom);
                }
            }
            Kind::Rmsprop => {
                for ((p, &g), v) in params.iter_mut().zip(grads).zip(&mut self.v) {
                    *v = *v * RMSPROP_RHO + g * g * (1.0 - RMSPROP_RHO);
                    *p -= lr * (g / (v.sqrt() + RMSPROP_EPS));
                }
            }
        }
    }
}

/// The L2 norm of all gradients together (inf or NaN if any gradient is).
pub fn grad_norm(grads: &[f32]) -> f32 {
    grads
        .iter()
        .map(|&g| g as f64 * g as f64)
        .sum::<f64>()
        .sqrt() as f32
}

/// Scales `grads` so their global 2-norm is at most `max_norm` (as
/// `clip_grad_norm_`); returns the norm before clipping.
pub fn clip_grad_norm(grads: &mut [f32], max_norm: f32) -> f32 {
    let norm = grad_norm(grads);
    let coef = max_norm / (norm + 1e-6);
    if coef < 1.0 {
        for g in grads.iter_mut() {
            *g *= coef;
        }
    }
    norm
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adam_first_step_moves_by_lr() {
        // With bias correction, Adam's first step is lr * sign(g) (up to eps).
        let mut o = Optimizer::new(Kind::Adam, 2);
        let mut p = [1.0f32, 1.0];
        o.step(&mut p, &[0.5, -2.0], 0.01);
        assert!(
            (p[0] - 0.99).abs() < 1e-6 && (p[1] - 1.01).abs() < 1e-6,
            "{p:?}"
        );
    }

    #[test]
    fn clipping_scales_to_the_max_norm() {
        let mut g = [3.0f32, 4.0];
        assert_eq!(clip_grad_norm(&mut g, 1.0), 5.0);
        assert!((g[0] - 0.6).abs() < 1e-6 && (g[1] - 0.8).abs() < 1e-6);
        let mut g = [0.3f32, 0.4];
        clip_grad_norm(&mut g, 1.0);
        assert_eq!(g, [0.3, 0.4]);
    }
}
