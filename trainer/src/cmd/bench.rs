//! `charlm bench`: `train` times the CPU backend on the configurations the
//! PyTorch script `bench/torch_train_cpu.py` runs (same data, same batches,
//! same model, same optimizer); `parity` and `gpu` are the CUDA backend's
//! checks (trainer/src/cuda/check.rs, run by scripts/gpu-check.sh).

use std::time::Instant;

use charlm_runtime::format::{Arch, CellKind};
use charlm_trainer::batch::{Batch, line_batches as title_batches, stream_batches};
use charlm_trainer::corpus::BUNDLED;
use charlm_trainer::cpu::Cpu;
use charlm_trainer::error::CliError;
use charlm_trainer::optim::{Kind, Optimizer};
use charlm_trainer::outln;
use charlm_trainer::params::Layout;
use charlm_trainer::vocab::Vocab;

#[derive(clap::Subcommand, Debug)]
pub enum Bench {
    /// Training speed (forward, backward, RMSprop step) in characters per second.
    Train(TrainArgs),
    /// A device against the CPU reference: one step's loss and gradients, 200-step loss curves (scripts/gpu-check.sh).
    Parity(charlm_trainer::cuda::check::ParityArgs),
    /// Training speed on a GPU (parameters and optimizer on the device) for the CUDA issue's configurations.
    Gpu(charlm_trainer::cuda::check::SpeedArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Config {
    /// Titles-like samples (lines of the bundled corpus), LSTM hidden 128, batch 8: the lesson.
    Titles8,
    /// The same at batch 64.
    Titles64,
    /// Running text, LSTM hidden 256, batch 64, windows of 100.
    Text256,
    /// All three.
    All,
}

#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// Which configuration.
    #[arg(long, value_enum, default_value = "all")]
    config: Config,
    /// Seconds of timed training per configuration (after warm-up steps).
    #[arg(long, default_value_t = 10.0, value_parser = super::finite::<f64>, allow_hyphen_values = true)]
    seconds: f64,
    /// Worker threads (default: one per core).
    #[arg(long, value_parser = super::whole::<usize>, allow_negative_numbers = true)]
    pub threads: Option<usize>,
}

fn measure(name: &str, hidden: u16, batches: &[Batch], vocab: &Vocab, seconds: f64) -> f64 {
    let layout = Layout::new(Arch {
        cell: CellKind::Lstm,
        layers: 1,
        hidden,
        vocab: vocab.size() as u16,
    });
    let mut params = layout.init(0);
    let mut grads = vec![0.0; layout.len];
    let mut opt = Optimizer::new(Kind::Rmsprop, layout.len);
    let mut cpu = Cpu::<f32>::new(layout);
    let mut step = |i: usize| {
        let b = &batches[i % batches.len()];
        let loss = cpu.loss_and_grad(&params, b, &mut grads, None);
        opt.step(&mut params, &grads, 1e-3);
        loss.count
    };
    for i in 0..5 {
        step(i);
    }
    let start = Instant::now();
    let (mut chars, mut i) = (0usize, 5usize);
    while start.elapsed().as_secs_f64() < seconds {
        chars += step(i);
        i += 1;
    }
    let rate = chars as f64 / start.elapsed().as_secs_f64();
    outln!(
        "{name:<10} {rate:>10.0} chars/s  ({} steps, {chars} chars)",
        i - 5
    );
    rate
}

pub fn run(bench: Bench) -> Result<(), CliError> {
    let args = match bench {
        Bench::Train(args) => args,
        Bench::Parity(args) => return charlm_trainer::cuda::check::parity(args),
        Bench::Gpu(args) => return charlm_trainer::cuda::check::speed(args),
    };
    if !(args.seconds > 0.0 && args.seconds <= 3600.0) {
        return Err(CliError::invalid(format!(
            "--seconds {:?}: must be above 0 and at most 3600",
            args.seconds
        )));
    }
    let text = std::str::from_utf8(BUNDLED)
        .map_err(|_| CliError::invalid("bundled corpus is not UTF-8"))?;
    let vocab = Vocab::fit([text])?;
    outln!(
        "charlm bench train: CPU backend, {} threads, RMSprop lr 1e-3, 1-layer LSTM",
        rayon::current_num_threads()
    );
    let all = args.config == Config::All;
    if all || args.config == Config::Titles8 {
        measure(
            "titles8",
            128,
            &title_batches(&vocab, text, 8),
            &vocab,
            args.seconds,
        );
    }
    if all || args.config == Config::Titles64 {
        measure(
            "titles64",
            128,
            &title_batches(&vocab, text, 64),
            &vocab,
            args.seconds,
        );
    }
    if all || args.config == Config::Text256 {
        let batches = stream_batches(&vocab, text, 64, 100).expect("corpus is long enough");
        measure("text256", 256, &batches, &vocab, args.seconds);
    }
    Ok(())
}
