//! Comparing a backend with the CPU reference: one step's loss and every
//! gradient tensor within `abs + rel * |ref|`, and loss curves of many
//! optimizer steps. Plain code over the `Backend` trait (and a small
//! [`Stepper`] trait for whole optimizer steps), so it is tested here
//! CPU-against-CPU and runs CUDA-against-CPU on a GPU machine
//! (`charlm bench parity --device cuda`, `scripts/gpu-check.sh`).

use crate::batch::Batch;
use crate::cpu::{Dropout, Loss};
use crate::error::CliError;
use crate::optim::{Optimizer, clip_grad_norm};
use crate::params::Layout;
use crate::train::Backend;

/// `|got - want| <= abs + rel * |want|`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tolerance {
    /// Absolute part.
    pub abs: f64,
    /// Relative part.
    pub rel: f64,
}

impl Tolerance {
    /// Whether `got` is close enough to `want` (NaN never is).
    pub fn allows(&self, got: f64, want: f64) -> bool {
        (got - want).abs() <= self.abs + self.rel * want.abs()
    }
}

/// Tolerance of the mean loss of one step. Both sides sum the same f32
/// per-position losses in f64; they differ by the exp/log/tanh
/// implementations (a few ulp in f32) and by product summation order, which
/// moves a mean of about 4 nats by far less than 1e-5 relative.
pub const LOSS_TOL: Tolerance = Tolerance {
    abs: 1e-6,
    rel: 1e-5,
};

/// Relative part of the gradient tolerance: a few ulp of difference in
/// exp/tanh (CUDA's against the CPU's approximations) grow through the
/// backward recurrence over up to ~100 steps; 1e-3 leaves room for that.
pub const GRAD_REL: f64 = 1e-3;
/// Absolute part of the gradient tolerance, as a fraction of the largest
/// |gradient| of the same tensor: weight gradients are f32 sums over up to
/// a few thousand positions taken in a different order (cuBLAS against the
/// CPU's blocked products); the worst-case rounding of such a sum is about
/// n * 2^-24 ~ 1e-4 of its largest terms, and elements that cancel to
/// nearly zero can only be judged against that scale, not their own size.
pub const GRAD_ABS_OF_MAX: f64 = 1e-4;

/// How one tensor compares.
#[derive(Clone, Debug, PartialEq)]
pub struct SlotReport {
    /// PyTorch name.
    pub name: String,
    /// Largest |got - want|.
    pub max_err: f64,
    /// Largest |want| (the scale of the tensor).
    pub max_ref: f64,
    /// Largest error over the allowed error (<= 1 passes).
    pub worst: f64,
    /// Index of that element within the tensor.
    pub worst_at: usize,
    /// Elements outside the tolerance.
    pub failures: usize,
}

/// Compares two gradients tensor by tensor with the gradient tolerance.
pub fn compare_grads(layout: &Layout, want: &[f32], got: &[f32]) -> Vec<SlotReport> {
    assert_eq!(want.len(), layout.len);
    assert_eq!(got.len(), layout.len);
    layout
        .slots
        .iter()
        .map(|s| {
            let (w, g) = (&want[s.range.clone()], &got[s.range.clone()]);
            let max_ref = w.iter().fold(0.0f64, |m, &x| m.max((x as f64).abs()));
            let tol = Tolerance {
                abs: GRAD_ABS_OF_MAX * max_ref + 1e-12,
                rel: GRAD_REL,
            };
            let mut r = SlotReport {
                name: s.name.clone(),
                max_err: 0.0,
                max_ref,
                worst: 0.0,
                worst_at: 0,
                failures: 0,
            };
            for (i, (&a, &b)) in w.iter().zip(g).enumerate() {
                let (a, b) = (a as f64, b as f64);
                let err = (b - a).abs();
                let ratio = if err.is_nan() {
                    f64::INFINITY
                } else {
                    err / (tol.abs + tol.rel * a.abs())
                };
                if !tol.allows(b, a) {
                    r.failures += 1;
                }
                r.max_err = r
                    .max_err
                    .max(if err.is_nan() { f64::INFINITY } else { err });
                if ratio > r.worst {
                    r.worst = ratio;
                    r.worst_at = i;
                }
            }
            r
        })
        .collect()
}

/// One step of two backends from the same parameters and batch.
#[derive(Clone, Debug)]
pub struct StepReport {
    /// Reference mean loss.
    pub want: f64,
    /// Tested mean loss.
    pub got: f64,
    /// Per tensor.
    pub slots: Vec<SlotReport>,
}

impl StepReport {
    /// Loss and every gradient within tolerance.
    pub fn passed(&self) -> bool {
        LOSS_TOL.allows(self.got, self.want) && self.slots.iter().all(|s| s.failures == 0)
    }
}

/// Runs `loss_and_grad` on both backends and compares.
pub fn one_step(
    reference: &mut dyn Backend,
    tested: &mut dyn Backend,
    layout: &Layout,
    params: &[f32],
    batch: &Batch,
    dropout: Option<Dropout>,
) -> StepReport {
    let mut gw = vec![0.0f32; layout.len];
    let mut gg = vec![0.0f32; layout.len];
    let lw = reference.loss_and_grad(params, batch, &mut gw, dropout);
    let lg = tested.loss_and_grad(params, batch, &mut gg, dropout);
    StepReport {
        want: lw.mean(),
        got: lg.mean(),
        slots: compare_grads(layout, &gw, &gg),
    }
}

/// Something that takes whole optimizer steps and reports each step's mean
/// loss: the CPU path (host parameters and optimizer) or a device that keeps
/// parameters and optimizer state to itself.
pub trait Stepper {
    /// One step; the batch's mean loss before the update.
    fn step(&mut self, batch: &Batch, dropout: Option<Dropout>, clip: f32, lr: f32) -> f64;
    /// One step whose loss is only added to a running sum (a device need not
    /// wait for it).
    fn queue(&mut self, batch: &Batch, dropout: Option<Dropout>, clip: f32, lr: f32) {
        let mean = self.step(batch, dropout, clip, lr);
        self.add_pending(mean * batch.chars() as f64);
    }
    /// Nats of the steps queued since the last call, once they have finished.
    fn finish(&mut self) -> f64;
    /// Adds to the running sum of [`Stepper::queue`] (host steppers).
    fn add_pending(&mut self, _nats: f64) {}
    /// Starts timing the phases of the steps that follow; false where the
    /// stepper cannot (only the CUDA backend records phases).
    fn profile_start(&mut self) -> Result<bool, CliError> {
        Ok(false)
    }
    /// Milliseconds per phase since [`Stepper::profile_start`], in step order.
    fn profile_finish(&mut self) -> Result<Vec<(&'static str, f64)>, CliError> {
        Ok(Vec::new())
    }
    /// Steps captured as CUDA graphs and replays of them so far (`None`
    /// where steps are not run as graphs).
    fn graph_counts(&self) -> Option<(u64, u64)> {
        None
    }
}

/// A [`Backend`] with host parameters and a host optimizer (the train loop's path).
pub struct HostStepper {
    /// The backend.
    pub backend: Box<dyn Backend>,
    /// Parameters.
    pub params: Vec<f32>,
    /// Optimizer.
    pub opt: Optimizer,
    grads: Vec<f32>,
    pending: f64,
}

impl HostStepper {
    /// From initial parameters and a fresh optimizer.
    pub fn new(backend: Box<dyn Backend>, params: Vec<f32>, opt: Optimizer) -> Self {
        let grads = vec![0.0; params.len()];
        HostStepper {
            backend,
            params,
            opt,
            grads,
            pending: 0.0,
        }
    }
}

impl Stepper for HostStepper {
    fn step(&mut self, batch: &Batch, dropout: Option<Dropout>, clip: f32, lr: f32) -> f64 {
        let loss: Loss = self
            .backend
            .loss_and_grad(&self.params, batch, &mut self.grads, dropout);
        if clip > 0.0 {
            clip_grad_norm(&mut self.grads, clip);
        }
        self.opt.step(&mut self.params, &self.grads, lr);
        loss.mean()
    }
    fn add_pending(&mut self, nats: f64) {
        self.pending += nats;
    }
    fn finish(&mut self) -> f64 {
        std::mem::take(&mut self.pending)
    }
}

/// Mean losses of `steps` optimizer steps over `batches` (cycled).
pub fn curve(
    s: &mut dyn Stepper,
    batches: &[Batch],
    steps: usize,
    dropout: Option<f32>,
    clip: f32,
    lr: f32,
) -> Vec<f64> {
    (0..steps)
        .map(|i| {
            let d = dropout.map(|p| Dropout {
                p,
                seed: 0x5eed ^ i as u64,
            });
            s.step(&batches[i % batches.len()], d, clip, lr)
        })
        .collect()
}

/// Window over which loss curves are averaged before comparing.
pub const CURVE_WINDOW: usize = 10;
/// Largest relative difference of two windowed loss curves.
pub const CURVE_REL: f64 = 0.01;

/// Largest relative difference between the two curves' means over windows
/// of [`CURVE_WINDOW`] steps (single steps are noisy; two runs that drift
/// apart show it in every window after the drift). NaN counts as infinite.
pub fn curve_gap(want: &[f64], got: &[f64]) -> f64 {
    assert_eq!(want.len(), got.len());
    want.chunks(CURVE_WINDOW)
        .zip(got.chunks(CURVE_WINDOW))
        .map(|(w, g)| {
            let (mw, mg) = (
                w.iter().sum::<f64>() / w.len() as f64,
                g.iter().sum::<f64>() / g.len() as f64,
            );
            let gap = (mg - mw).abs() / mw.abs().max(1e-12);
            if gap.is_nan() { f64::INFINITY } else { gap }
        })
        .fold(0.0, f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::{Classes, Cpu};
    use crate::optim::Kind;
    use charlm_runtime::format::{Arch, CellKind};

    fn batch() -> Batch {
        let s: [&[u16]; 3] = [&[1, 2, 3, 4, 2], &[3, 1], &[4, 4, 2, 1]];
        Batch::from_samples(&s, 5)
    }

    /// The CPU backend with a wrong gradient in one place (what a broken kernel does).
    struct Broken(Cpu<f32>, usize);
    impl Backend for Broken {
        fn describe(&self) -> String {
            "broken".into()
        }
        fn loss_and_grad(
            &mut self,
            p: &[f32],
            b: &Batch,
            g: &mut [f32],
            d: Option<Dropout>,
        ) -> Loss {
            let l = self.0.loss_and_grad(p, b, g, d);
            g[self.1] += 1e-2;
            l
        }
        fn loss(&mut self, p: &[f32], b: &Batch, c: Classes) -> Loss {
            self.0.loss(p, b, c)
        }
        fn carried_state(&self) -> (usize, Vec<Vec<f32>>) {
            self.0.carried_state()
        }
        fn set_carried_state(&mut self, r: usize, s: Vec<Vec<f32>>) {
            self.0.set_carried_state(r, s)
        }
    }

    #[test]
    fn identical_backends_pass_and_a_wrong_gradient_fails_in_its_tensor() {
        for cell in [CellKind::Lstm, CellKind::Gru] {
            let layout = Layout::new(Arch {
                cell,
                layers: 2,
                hidden: 8,
                vocab: 6,
            });
            let params = layout.init(4);
            let d = Some(Dropout { p: 0.3, seed: 9 });
            let r = one_step(
                &mut Cpu::<f32>::new(layout.clone()),
                &mut Cpu::<f32>::new(layout.clone()),
                &layout,
                &params,
                &batch(),
                d,
            );
            assert!(r.passed(), "{r:?}");
            assert!(r.want > 0.0 && r.want == r.got);
            let at = layout.slot("weight_hh_l1").unwrap().range.start + 3;
            let r = one_step(
                &mut Cpu::<f32>::new(layout.clone()),
                &mut Broken(Cpu::new(layout.clone()), at),
                &layout,
                &params,
                &batch(),
                d,
            );
            assert!(!r.passed());
            let bad: Vec<&str> = r
                .slots
                .iter()
                .filter(|s| s.failures > 0)
                .map(|s| s.name.as_str())
                .collect();
            assert_eq!(bad, ["weight_hh_l1"]);
            assert_eq!(
                r.slots
                    .iter()
                    .find(|s| s.name == "weight_hh_l1")
                    .unwrap()
                    .worst_at,
                3
            );
        }
    }

    #[test]
    fn tolerance_is_symmetric_in_sign_and_rejects_nan() {
        let t = Tolerance { abs: 0.1, rel: 0.0 };
        assert!(t.allows(1.05, 1.0) && t.allows(0.95, 1.0));
        assert!(!t.allows(1.2, 1.0) && !t.allows(0.8, 1.0));
        assert!(!t.allows(f64::NAN, 1.0));
    }

    #[test]
    fn curves_of_the_same_training_agree_and_a_slower_one_does_not() {
        let layout = Layout::new(Arch {
            cell: CellKind::Gru,
            layers: 1,
            hidden: 8,
            vocab: 6,
        });
        let mk = |lr_scale: f32| {
            let s = HostStepper::new(
                Box::new(Cpu::<f32>::new(layout.clone())),
                layout.init(1),
                Optimizer::new(Kind::Adam, layout.len),
            );
            (s, lr_scale)
        };
        let batches = [batch()];
        let (mut a, _) = mk(1.0);
        let (mut b, _) = mk(1.0);
        let ca = curve(&mut a, &batches, 40, None, 1.0, 1e-2);
        let cb = curve(&mut b, &batches, 40, None, 1.0, 1e-2);
        assert_eq!(curve_gap(&ca, &cb), 0.0);
        assert!(
            ca[39] < ca[0],
            "training lowers the loss: {} -> {}",
            ca[0],
            ca[39]
        );
        let (mut c, _) = mk(1.0);
        let cc = curve(&mut c, &batches, 40, None, 1.0, 1e-3);
        assert!(curve_gap(&ca, &cc) > CURVE_REL, "{}", curve_gap(&ca, &cc));
        assert_eq!(curve_gap(&[1.0, f64::NAN], &[1.0, 1.0]), f64::INFINITY);
    }
}
