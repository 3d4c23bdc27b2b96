//! `charlm bench parity` and `charlm bench gpu`: the checks
//! `scripts/gpu-check.sh` runs on a GPU machine (which has no Rust
//! toolchain, so they live in the binary).
//!
//! * parity: the tested device against the CPU reference, one step from the
//!   same weights and batch (loss and every gradient tensor, see
//!   [`super::parity`] for the tolerances), for LSTM and GRU, 1 and 2 (and LSTM 4)
//!   layers, with padding, with carried state and with dropout; then loss
//!   curves of 200 optimizer steps within 1%. `--device cpu` tests the CPU
//!   against itself (what CI can run).
//! * gpu: training characters per second on the configurations of the
//!   issue, on exactly the batches `scripts/torch_train_gpu.py` builds.

use std::time::Instant;

use charlm_runtime::format::{Arch, CellKind};

use super::parity::{self, CURVE_REL, HostStepper, LOSS_TOL, Stepper, curve, curve_gap, one_step};
use crate::batch::{Batch, line_batches as title_batches};
use crate::corpus::BUNDLED;
use crate::cpu::{Classes, Cpu, Dropout};
use crate::error::CliError;
use crate::optim::{Kind, Optimizer};
use crate::outln;
use crate::params::Layout;
use crate::train::{Device, backend::select};
use crate::vocab::Vocab;

/// Arguments of `charlm bench parity`.
#[derive(clap::Args, Debug)]
pub struct ParityArgs {
    /// Device under test (compared with the CPU reference): cuda, cuda:N, cpu, or auto (a GPU where a driver is present, else the CPU).
    #[arg(long, default_value = "cuda")]
    pub device: Device,
    /// Optimizer steps of each loss-curve comparison.
    #[arg(long, default_value_t = 200)]
    pub steps: usize,
    /// Hidden units of the test models.
    #[arg(long, default_value_t = 64)]
    pub hidden: u16,
    /// Sequences per batch (a device picks its kernels' plan by batch and
    /// hidden size: a larger batch checks other plans).
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
}

/// Arguments of `charlm bench gpu`.
#[derive(clap::Args, Debug)]
pub struct SpeedArgs {
    /// Device: cuda, cuda:N (parameters and optimizer stay on the GPU), cpu, or auto (a GPU where a driver is present, else the CPU).
    #[arg(long, default_value = "cuda")]
    pub device: Device,
    /// Configurations (comma-separated): titles8, titles64, text256, big, or all.
    #[arg(long, default_value = "all")]
    pub config: String,
    /// Seconds of timed training per configuration (after 5 warm-up steps).
    #[arg(long, default_value_t = 10.0, value_parser = crate::error::finite::<f64>, allow_hyphen_values = true)]
    pub seconds: f64,
    /// After the timed run, this many more steps with the GPU time of each
    /// phase recorded (events between phases), printed as a table.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub profile: usize,
}

/// A speed configuration of the issue: `(name, layers, hidden, data)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpeedConfig {
    /// Name on the command line and in the table.
    pub name: &'static str,
    /// Layers.
    pub layers: u8,
    /// Hidden units.
    pub hidden: u16,
    /// Sequences per batch.
    pub batch: usize,
    /// `None`: lines of the corpus (titles-like); `Some(T)`: running text in windows of T.
    pub window: Option<usize>,
}

/// The configurations (LSTM, RMSprop lr 1e-3, as the CPU bench).
pub const SPEED_CONFIGS: [SpeedConfig; 4] = [
    SpeedConfig {
        name: "titles8",
        layers: 1,
        hidden: 128,
        batch: 8,
        window: None,
    },
    SpeedConfig {
        name: "titles64",
        layers: 1,
        hidden: 128,
        batch: 64,
        window: None,
    },
    SpeedConfig {
        name: "text256",
        layers: 1,
        hidden: 256,
        batch: 64,
        window: Some(100),
    },
    SpeedConfig {
        name: "big",
        layers: 2,
        hidden: 512,
        batch: 128,
        window: Some(128),
    },
];

/// Parses `--config`.
pub fn speed_configs(list: &str) -> Result<Vec<SpeedConfig>, CliError> {
    if list == "all" {
        return Ok(SPEED_CONFIGS.to_vec());
    }
    list.split(',')
        .map(|name| {
            SPEED_CONFIGS
                .iter()
                .find(|c| c.name == name.trim())
                .copied()
                .ok_or_else(|| {
                    CliError::invalid(format!(
                        "--config {name}: not one of titles8, titles64, text256, big, all"
                    ))
                })
        })
        .collect()
}

/// Every window of running text of the bundled corpus, in order.
pub fn stream_batches(vocab: &Vocab, text: &str, rows: usize, steps: usize) -> Vec<Batch> {
    crate::batch::stream_batches(vocab, text, rows, steps)
        .expect("the bundled corpus is long enough")
}

fn bundled() -> Result<(String, Vocab), CliError> {
    let text = std::str::from_utf8(BUNDLED)
        .map_err(|_| CliError::invalid("bundled corpus is not UTF-8"))?
        .to_string();
    let vocab = Vocab::fit([text.as_str()])?;
    Ok((text, vocab))
}

/// A whole-step runner on `device` for `layout`, starting from `params` with a
/// fresh `kind` optimizer: on CUDA parameters and optimizer stay on the
/// device ([`super::Cuda::train_step`]); on the CPU it is the train loop's path.
pub fn stepper(
    device: Device,
    layout: &Layout,
    params: Vec<f32>,
    kind: Kind,
) -> Result<Box<dyn Stepper>, CliError> {
    let opt = Optimizer::new(kind, layout.len);
    match device {
        Device::Cpu => Ok(Box::new(HostStepper::new(
            Box::new(Cpu::<f32>::new(layout.clone())),
            params,
            opt,
        ))),
        #[cfg(feature = "cuda")]
        Device::Cuda(n) => {
            let err = |e: super::CudaError| CliError::invalid(format!("--device cuda:{n}: {e}"));
            let mut c = super::Cuda::new(layout.clone(), n).map_err(err)?;
            crate::train::Resident::load(&mut c, &params, &opt)?;
            Ok(Box::new(OnDevice(c, false)))
        }
        // `auto` with a usable GPU times what `charlm train` runs there: the
        // whole step on the device (else the CPU, as `select` says why).
        #[cfg(feature = "cuda")]
        Device::Auto if super::driver_present() => match super::Cuda::new(layout.clone(), 0) {
            Ok(mut c) => {
                crate::train::Resident::load(&mut c, &params, &opt)?;
                Ok(Box::new(OnDevice(c, false)))
            }
            Err(e @ super::CudaError::Config(_)) => {
                Err(CliError::invalid(format!("--device auto: {e}")))
            }
            Err(_) => Ok(Box::new(HostStepper::new(
                select(Device::Auto, layout)?,
                params,
                opt,
            ))),
        },
        other => {
            let b = select(other, layout)?;
            Ok(Box::new(HostStepper::new(b, params, opt)))
        }
    }
}

/// The CUDA backend driving whole steps on the device, through the
/// `train::Resident` interface `charlm train` uses (the flag: a queued step
/// failed).
#[cfg(feature = "cuda")]
struct OnDevice(super::Cuda, bool);

#[cfg(feature = "cuda")]
impl Stepper for OnDevice {
    fn step(&mut self, batch: &Batch, dropout: Option<Dropout>, clip: f32, lr: f32) -> f64 {
        self.queue(batch, dropout, clip, lr);
        self.finish() / batch.chars().max(1) as f64
    }
    fn queue(&mut self, batch: &Batch, dropout: Option<Dropout>, clip: f32, lr: f32) {
        if let Err(e) = crate::train::Resident::step(&mut self.0, batch, dropout, clip, lr) {
            crate::errln!("charlm: error: {e}");
            self.1 = true;
        }
    }
    fn profile_start(&mut self) -> Result<bool, CliError> {
        self.0.profile_start().map_err(super::backend::cli)?;
        Ok(true)
    }
    fn profile_finish(&mut self) -> Result<Vec<(&'static str, f64)>, CliError> {
        let phases = self.0.profile_finish().map_err(super::backend::cli)?;
        Ok(phases.unwrap_or_default())
    }
    fn graph_counts(&self) -> Option<(u64, u64)> {
        Some(self.0.graph_counts())
    }
    fn finish(&mut self) -> f64 {
        let failed = std::mem::take(&mut self.1);
        match crate::train::Resident::settle(&mut self.0) {
            Ok(crate::train::Settled::Nats(n)) if !failed => n,
            Ok(_) => f64::NAN,
            Err(e) => {
                crate::errln!("charlm: error: {e}");
                f64::NAN
            }
        }
    }
}

/// `charlm bench parity`.
pub fn parity(args: ParityArgs) -> Result<(), CliError> {
    let ranges = [
        ("--hidden", usize::from(args.hidden), 1, 1024, ""),
        ("--steps", args.steps, 1, 100_000, ""),
        (
            "--batch",
            args.batch,
            2,
            256,
            " (the checks need padded batches: samples of different lengths)",
        ),
    ];
    if let Some((flag, v, lo, hi, why)) = ranges
        .into_iter()
        .find(|&(_, v, lo, hi, _)| !(lo..=hi).contains(&v))
    {
        return Err(CliError::invalid(format!(
            "{flag} {v}: must be {lo} to {hi}{why}"
        )));
    }
    let (text, vocab) = bundled()?;
    let v = vocab.size() as u16;
    let titles = title_batches(&vocab, &text, args.batch);
    let windows = stream_batches(&vocab, &text, args.batch, 32);
    // padded samples of different lengths (a batch of titles with padding)
    let padded = titles
        .iter()
        .find(|b| b.chars() < b.steps * b.rows)
        .expect("a batch with padding");
    let probe = select(
        args.device,
        &Layout::new(Arch {
            cell: CellKind::Lstm,
            layers: 1,
            hidden: 4,
            vocab: v,
        }),
    )?;
    outln!(
        "charlm bench parity: {} against the CPU reference, batch {}, hidden {}",
        probe.describe(),
        args.batch,
        args.hidden
    );
    outln!(
        "tolerances: loss {:e} + {:e}*|ref|; gradients {:e}*max|ref| of the tensor + {:e}*|ref|; curves: {}-step means within {}%",
        LOSS_TOL.abs,
        LOSS_TOL.rel,
        parity::GRAD_ABS_OF_MAX,
        parity::GRAD_REL,
        parity::CURVE_WINDOW,
        CURVE_REL * 100.0
    );
    drop(probe);
    let mut failed = Vec::new();
    let mut checks = 0;
    // 1 and 2 layers of both cells, and the LSTM at the most layers there are (4)
    let stacks = [
        (CellKind::Lstm, 1u8),
        (CellKind::Lstm, 2),
        (CellKind::Lstm, 4),
        (CellKind::Gru, 1),
        (CellKind::Gru, 2),
    ];
    for (cell, layers) in stacks {
        let layout = Layout::new(Arch {
            cell,
            layers,
            hidden: args.hidden,
            vocab: v,
        });
        let params = layout.init(11);
        let label = format!("{} {layers}x{}", cell.name(), args.hidden);
        let mut reference = Cpu::<f32>::new(layout.clone());
        let mut tested = select(args.device, &layout)?;
        let mut run = |what: &str, r: parity::StepReport| {
            checks += 1;
            let worst = r
                .slots
                .iter()
                .max_by(|a, b| a.worst.total_cmp(&b.worst))
                .expect("slots");
            let ok = r.passed();
            outln!(
                "{} {label:<10} {what:<22} loss {:.6} vs {:.6}  worst gradient {:.3} of tolerance ({}[{}])",
                if ok { "PASS" } else { "FAIL" },
                r.got,
                r.want,
                worst.worst,
                worst.name,
                worst.worst_at
            );
            for s in r.slots.iter().filter(|s| s.failures > 0) {
                outln!(
                    "       {}: {} elements off, max error {:e} (scale {:e})",
                    s.name,
                    s.failures,
                    s.max_err,
                    s.max_ref
                );
            }
            if !ok {
                failed.push(format!("{label} {what}"));
            }
        };
        run(
            "padded batch",
            one_step(
                &mut reference,
                tested.as_mut(),
                &layout,
                &params,
                padded,
                None,
            ),
        );
        // running text: the second window starts from the carried state
        one_step(
            &mut reference,
            tested.as_mut(),
            &layout,
            &params,
            &windows[0],
            None,
        );
        run(
            "carried state",
            one_step(
                &mut reference,
                tested.as_mut(),
                &layout,
                &params,
                &windows[1],
                None,
            ),
        );
        if layers > 1 {
            let d = Some(Dropout { p: 0.25, seed: 77 });
            run(
                "dropout 0.25",
                one_step(&mut reference, tested.as_mut(), &layout, &params, padded, d),
            );
        }
        // held-out scoring (softmax without the padding class)
        checks += 1;
        // (from zero state: a titles batch does not carry)
        let want = reference.loss(&params, padded, Classes::NoPadding).mean();
        let got = tested.loss(&params, padded, Classes::NoPadding).mean();
        let ok = LOSS_TOL.allows(got, want);
        outln!(
            "{} {label:<10} {:<22} loss {got:.6} vs {want:.6}",
            if ok { "PASS" } else { "FAIL" },
            "held-out loss"
        );
        if !ok {
            failed.push(format!("{label} held-out loss"));
        }
    }
    // loss curves: whole optimizer steps (on CUDA: on the device)
    for (cell, layers, kind, dropout) in [
        (CellKind::Lstm, 2u8, Kind::Adam, Some(0.1f32)),
        (CellKind::Gru, 1, Kind::Rmsprop, None),
        (CellKind::Lstm, 1, Kind::Rmsprop, None),
        (CellKind::Gru, 2, Kind::Adam, None),
    ] {
        checks += 1;
        let layout = Layout::new(Arch {
            cell,
            layers,
            hidden: args.hidden,
            vocab: v,
        });
        let params = layout.init(5);
        let lr = if kind == Kind::Adam { 3e-3 } else { 1e-3 };
        let t0 = Instant::now();
        let want = curve(
            stepper(Device::Cpu, &layout, params.clone(), kind)?.as_mut(),
            &titles,
            args.steps,
            dropout,
            5.0,
            lr,
        );
        let t_cpu = t0.elapsed().as_secs_f64();
        let t0 = Instant::now();
        let got = curve(
            stepper(args.device, &layout, params, kind)?.as_mut(),
            &titles,
            args.steps,
            dropout,
            5.0,
            lr,
        );
        let t_dev = t0.elapsed().as_secs_f64();
        let gap = curve_gap(&want, &got);
        let ok = gap <= CURVE_REL;
        let label = format!("{} {layers}x{}", cell.name(), args.hidden);
        outln!(
            "{} {label:<10} {:<22} {} steps {}: loss {:.4} -> {:.4} (ref {:.4} -> {:.4}), largest gap {:.3}%  [{t_cpu:.1} s cpu, {t_dev:.1} s tested]",
            if ok { "PASS" } else { "FAIL" },
            "loss curve",
            args.steps,
            kind.name(),
            got[0],
            got[got.len() - 1],
            want[0],
            want[want.len() - 1],
            gap * 100.0
        );
        if !ok {
            failed.push(format!("{label} loss curve"));
        }
    }
    if failed.is_empty() {
        outln!("parity: all {checks} checks passed");
        Ok(())
    } else {
        Err(CliError::invalid(format!(
            "parity failed in {} of {checks} checks: {}",
            failed.len(),
            failed.join(", ")
        )))
    }
}

/// `charlm bench gpu`: prints `RESULT <config> <chars/s>` lines.
pub fn speed(args: SpeedArgs) -> Result<(), CliError> {
    if !(args.seconds > 0.0 && args.seconds <= 3600.0) {
        return Err(CliError::invalid(format!(
            "--seconds {:?}: must be above 0 and at most 3600",
            args.seconds
        )));
    }
    let configs = speed_configs(&args.config)?;
    let (text, vocab) = bundled()?;
    let v = vocab.size() as u16;
    let mut described = false;
    for c in configs {
        let layout = Layout::new(Arch {
            cell: CellKind::Lstm,
            layers: c.layers,
            hidden: c.hidden,
            vocab: v,
        });
        let batches = match c.window {
            None => title_batches(&vocab, &text, c.batch),
            Some(t) => stream_batches(&vocab, &text, c.batch, t),
        };
        if !described {
            outln!(
                "charlm bench gpu: {}",
                select(args.device, &layout)?.describe()
            );
            described = true;
        }
        let mut s = stepper(args.device, &layout, layout.init(0), Kind::Rmsprop)?;
        for (i, b) in batches.iter().cycle().take(5).enumerate() {
            let loss = s.step(b, None, 0.0, 1e-3);
            if !loss.is_finite() {
                return Err(CliError::invalid(format!(
                    "{}: warm-up step {i} gave loss {loss}",
                    c.name
                )));
            }
        }
        // Steps are queued without reading the loss back (on CUDA); the
        // clock stops after everything queued has finished.
        let start = Instant::now();
        let (mut chars, mut i) = (0usize, 5usize);
        // (at least one step, however short --seconds is)
        while i == 5 || start.elapsed().as_secs_f64() < args.seconds {
            let b = &batches[i % batches.len()];
            s.queue(b, None, 0.0, 1e-3);
            chars += b.chars();
            i += 1;
        }
        let nats = s.finish();
        let rate = chars as f64 / start.elapsed().as_secs_f64();
        if !nats.is_finite() {
            return Err(CliError::invalid(format!(
                "{}: the timed steps gave loss {nats}",
                c.name
            )));
        }
        outln!(
            "RESULT {} {rate:.0} chars/s ({} steps, {} x {}, batch {}, mean loss {:.3})",
            c.name,
            i - 5,
            crate::out::count(c.layers as u64, "layer", "layers"),
            c.hidden,
            c.batch,
            nats / chars.max(1) as f64
        );
        if let Some((captured, replayed)) = s.graph_counts() {
            outln!(
                "GRAPHS {}: {captured} step shapes captured as CUDA graphs, {replayed} steps replayed from them",
                c.name
            );
        }
        if args.profile > 0 {
            profile(s.as_mut(), c.name, &batches, i, args.profile)?;
        }
    }
    Ok(())
}

/// `--profile`: `steps` more steps (cycling through `batches` from `next`)
/// with their phases timed, then one line per phase: time per step and share.
fn profile(
    s: &mut dyn Stepper,
    name: &str,
    batches: &[Batch],
    next: usize,
    steps: usize,
) -> Result<(), CliError> {
    if !s.profile_start()? {
        outln!("PROFILE {name}: only the CUDA backend records phases");
        return Ok(());
    }
    for b in batches
        .iter()
        .cycle()
        .skip(next % batches.len())
        .take(steps)
    {
        s.queue(b, None, 0.0, 1e-3);
    }
    let nats = s.finish();
    let phases = s.profile_finish()?;
    if !nats.is_finite() {
        return Err(CliError::invalid(format!(
            "{name}: the profiled steps gave loss {nats}"
        )));
    }
    let total: f64 = phases.iter().map(|p| p.1).sum();
    outln!(
        "PROFILE {name}: {steps} steps, {:.1} us of GPU time per step (events between phases)",
        1e3 * total / steps as f64
    );
    for (phase, ms) in phases {
        outln!(
            "  {phase:<48} {:>10.1} us {:>5.1}%",
            1e3 * ms / steps as f64,
            100.0 * ms / total.max(f64::MIN_POSITIVE)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speed_config_lists_parse_and_reject_unknown_names() {
        assert_eq!(speed_configs("all").unwrap().len(), 4);
        let two = speed_configs("titles8, big").unwrap();
        assert_eq!(
            two.iter().map(|c| c.name).collect::<Vec<_>>(),
            ["titles8", "big"]
        );
        assert!(speed_configs("titles9").is_err());
    }

    #[test]
    fn title_batches_are_padded_and_running_text_carries() {
        let (text, vocab) = bundled().unwrap();
        let t = title_batches(&vocab, &text, 8);
        assert!(t.iter().all(|b| b.rows == 8 && !b.carry));
        assert!(
            t.iter().any(|b| b.chars() < b.steps * b.rows),
            "some batch has padding"
        );
        let w = stream_batches(&vocab, &text, 8, 32);
        assert!(!w[0].carry && w[1].carry && w[1].steps == 32);
    }
}
