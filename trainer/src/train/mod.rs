//! The training loop: corpus -> vocabulary -> batches -> backend steps ->
//! checkpoints, metrics, samples -> `model.clm`.
//!
//! A run lives in one folder: `checkpoint.bin` (resumable, atomic),
//! `model.clm`, `metrics.csv`, `loss.svg`, `samples.txt`. Everything random
//! (initialisation, shuffles, window offsets, dropout masks) is derived from
//! the seed and the position (epoch, step), so a run that is stopped and
//! resumed computes exactly what an uninterrupted run computes.

pub mod backend;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use charlm_runtime::format::{Arch, CellKind, DType, ModelFile};
use charlm_runtime::{Model, Sampler};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::batch::{Batch, SampleBatcher, StreamBatcher, eval_sample_batches, eval_stream_batches};
use crate::checkpoint::{self, Best, Checkpoint, Progress, write_atomic};
use crate::corpus::{self, Layout as TextLayout, Spec};
use crate::cpu::{Classes, Dropout, Loss};
use crate::error::CliError;
use crate::eval::{EvalData, runtime_loss};
use crate::export::{Provenance, export};
use crate::metrics::{self, Row};
use crate::optim::{self, Optimizer, clip_grad_norm, grad_norm};
use crate::params::Layout;
use crate::rng::Rng;
use crate::sample::{Sample, SampleError, TextSink, generate_each, host_workspace, split_prompt};
use crate::vocab::Vocab;
use crate::{errln, outln};
pub use backend::{Backend, Device, Resident, Settled};

/// Largest hidden size the host tools run (the host workspace's capacity).
pub const MAX_HIDDEN: usize = 1024;
/// The model of the lowest held-out score, in the run folder.
pub const BEST_FILE: &str = "best.clm";
/// Longest sample (characters) of a samples corpus: a batch holds every
/// step of its longest sample, so longer text belongs in running-text mode.
pub const MAX_SAMPLE: usize = 10_000;

/// Everything that defines a run (saved in its checkpoint).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// Training text.
    pub corpus: Spec,
    /// Held-out text from another file (same format), instead of `val_frac`.
    pub val: Option<PathBuf>,
    /// Fraction of the corpus held out when `val` is `None`.
    pub val_frac: f64,
    /// Cell type.
    pub cell: CellKind,
    /// Stacked layers.
    pub layers: u8,
    /// Hidden units per layer.
    pub hidden: u16,
    /// Dropout between layers.
    pub dropout: f32,
    /// Sequences per batch.
    pub batch: usize,
    /// Window length for running text.
    pub seq_len: usize,
    /// Epochs.
    pub epochs: u64,
    /// Stop after this many optimizer steps in total.
    pub max_steps: Option<u64>,
    /// Update rule.
    pub optimizer: optim::Kind,
    /// Learning rate.
    pub lr: f32,
    /// Learning rate factor applied after every epoch.
    pub lr_decay: f32,
    /// Gradient-norm clipping threshold (0 = off).
    pub clip: f32,
    /// Seed of everything random.
    pub seed: u64,
    /// Type of the weight matrices of the model files the run writes
    /// (`model.clm`, and the model the samples come from). It is not part
    /// of training, so a resumed run may change it; a checkpoint stores it
    /// after everything else (version 2, see [`crate::checkpoint`]).
    #[serde(skip, default = "f16")]
    pub weights: DType,
    /// Stop once this many held-out evaluations in a row (one per epoch,
    /// and one every `eval_every` steps) have not beaten the best score.
    /// Like `weights` it is stored after everything else (version 3), and a
    /// resumed run may change it.
    #[serde(skip)]
    pub patience: Option<u64>,
    /// Also score the held-out data every this many optimizer steps (whose
    /// count is a multiple of it); those scores compete for best.clm and
    /// count for `patience` like an epoch's. Stored after everything else
    /// (version 4); a resumed run may change it.
    #[serde(skip)]
    pub eval_every: Option<u64>,
}

/// The weight type of checkpoints older than the `weights` setting.
fn f16() -> DType {
    DType::F16
}

impl Config {
    /// Rejects sizes that make no sense, naming the flag.
    pub fn validate(&self) -> Result<(), CliError> {
        let check = |ok: bool, msg: String| {
            if ok {
                Ok(())
            } else {
                Err(CliError::invalid(msg))
            }
        };
        check(
            (1..=4).contains(&self.layers),
            format!("--layers {}: must be 1 to 4", self.layers),
        )?;
        check(
            (1..=MAX_HIDDEN).contains(&(self.hidden as usize)),
            format!("--hidden {}: must be 1 to {MAX_HIDDEN}", self.hidden),
        )?;
        check(
            (1..=4096).contains(&self.batch),
            format!("--batch {}: must be 1 to 4096", self.batch),
        )?;
        check(
            (1..=100_000).contains(&self.seq_len),
            format!("--seq-len {}: must be 1 to 100000", self.seq_len),
        )?;
        check(
            (1..=100_000).contains(&self.epochs),
            format!("--epochs {}: must be 1 to 100000", self.epochs),
        )?;
        check(
            self.max_steps != Some(0),
            "--max-steps 0: must be at least 1".into(),
        )?;
        check(
            self.lr.is_finite() && self.lr > 0.0 && self.lr < 10.0,
            format!("--lr {}: must be above 0 and below 10", self.lr),
        )?;
        check(
            self.lr_decay.is_finite() && self.lr_decay > 0.0 && self.lr_decay <= 1.0,
            format!("--lr-decay {}: must be in (0, 1]", self.lr_decay),
        )?;
        check(
            self.clip.is_finite() && self.clip >= 0.0,
            format!("--clip {}: must be 0 (off) or positive", self.clip),
        )?;
        check(
            (0.0..0.95).contains(&self.dropout),
            format!("--dropout {}: must be in [0, 0.95)", self.dropout),
        )?;
        check(
            (0.0..=0.5).contains(&self.val_frac),
            format!("--val-frac {}: must be 0 to 0.5", self.val_frac),
        )?;
        check(
            self.patience.is_none_or(|p| (1..=100_000).contains(&p)),
            format!(
                "--patience {}: must be 1 to 100000",
                self.patience.unwrap_or(0)
            ),
        )?;
        check(
            self.eval_every != Some(0),
            "--eval-every 0: must be at least 1".into(),
        )?;
        Ok(())
    }

    /// The network this configuration trains, for a vocabulary of `vocab` ids.
    pub fn arch(&self, vocab: usize) -> Arch {
        Arch {
            cell: self.cell,
            layers: self.layers,
            hidden: self.hidden,
            vocab: vocab as u16,
        }
    }
}

/// How a run is carried out (not part of its identity).
#[derive(Clone, Debug)]
pub struct Options {
    /// The run folder.
    pub out: PathBuf,
    /// Continue the run in `out` from its checkpoint.
    pub resume: bool,
    /// Device.
    pub device: Device,
    /// Write a checkpoint every this many steps (and at every epoch end).
    pub checkpoint_every: u64,
    /// Sample prompts (`None`: defaults for the corpus).
    pub prompts: Option<Vec<String>>,
    /// Characters per sample.
    pub sample_chars: Option<usize>,
    /// Print progress and samples.
    pub verbose: bool,
    /// `out` was made for this run by the caller (`charlm train`'s
    /// `runs/<time>`): removed again if the run writes nothing into it. (A
    /// folder the run makes itself is treated so anyway.)
    pub new_folder: bool,
    /// Test hook: behave as if Ctrl-C came after this many steps in total.
    pub stop_after: Option<u64>,
    /// Start a new run from these parameters and vocabulary (a model's,
    /// `--init`) instead of a random initialisation and the corpus's
    /// characters. The configuration's architecture must be the model's.
    pub init: Option<Init>,
}

/// Where a run initialised from a model starts.
#[derive(Clone, Debug)]
pub struct Init {
    /// The model file, for the log.
    pub source: String,
    /// Its parameters in [`Layout`] order.
    pub params: Vec<f32>,
    /// Its vocabulary.
    pub vocab: Vocab,
}

/// Where a run is and which signal asked it to stop: the phase
/// ([`PREPARING`], [`TRAINING`], [`FINISHING`]) in the low byte, the first
/// stop signal above it (0 while none has come). One word, so that the
/// handlers and the loop agree on the phase a signal came in: before
/// training starts the run ends without writing anything; during training
/// it saves after the step; once the loop is over a signal no longer stops
/// anything (the run writes its models and ends). Set by the handlers
/// [`install_stop_signals`] registers and by [`enter`].
static RUN_STATE: AtomicUsize = AtomicUsize::new(PREPARING);
/// Reading the corpus, building batches, starting the backend.
pub const PREPARING: usize = 0;
/// In the training loop.
pub const TRAINING: usize = 1;
/// The last step is taken.
pub const FINISHING: usize = 2;

/// The first stop signal of this run (0 while none has come).
pub fn stop_signal() -> usize {
    RUN_STATE.load(Ordering::SeqCst) >> 8
}

/// Moves the run to `phase`, keeping any stop signal; into [`TRAINING`]
/// only if none has come yet (else `Err` with it: a stop that came while
/// the run was preparing ends it before its first step).
fn enter(phase: usize) -> Result<(), usize> {
    RUN_STATE
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |s| {
            (phase != TRAINING || s >> 8 == 0).then_some((s & !0xff) | phase)
        })
        .map(drop)
        .map_err(|s| s >> 8)
}

/// The signals that stop a run after saving: Ctrl-C (SIGINT), SIGTERM
/// (`kill`, `docker stop`, a batch scheduler's preemption) and, on Unix,
/// SIGHUP (the terminal closed) and SIGPIPE (the reader of standard output
/// went away: `charlm train | head`; rather than die by the signal's
/// default action with nothing saved, the run stops as for a hangup, and
/// what it prints from then on is lost).
#[cfg(unix)]
const STOP_SIGNALS: [i32; 4] = [
    signal_hook::consts::SIGINT,
    signal_hook::consts::SIGTERM,
    signal_hook::consts::SIGHUP,
    signal_hook::consts::SIGPIPE,
];
#[cfg(not(unix))]
const STOP_SIGNALS: [i32; 2] = [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM];

/// A second Ctrl-C counts only this long after the first: some launchers
/// deliver one request twice within microseconds (GNU `timeout` signals
/// the child and then its process group), and a person pressing twice
/// takes longer.
#[cfg(unix)]
const REPEAT_MS: u64 = 100;

/// Installs the stop handlers (once per process). The first stop signal
/// is kept in [`RUN_STATE`] and, with `announce` and standard error on a terminal,
/// says at once that the run stops after its step. A second Ctrl-C, at
/// least [`REPEAT_MS`] later, while the run is still finishing its step or
/// writing its checkpoint, ends the process as SIGINT does by default (the
/// last checkpoint written stays whole: it is replaced by a rename);
/// SIGTERM and SIGHUP never do (a supervisor that will not wait sends
/// SIGKILL). A signal ignored when the run starts (SIGHUP under `nohup`,
/// SIGINT in a background job) stays ignored.
pub fn install_stop_signals(announce: bool) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        for sig in STOP_SIGNALS.into_iter().filter(|&s| !ignored(s)) {
            register_stop(sig, announce);
        }
    });
}

/// When the first Ctrl-C came (milliseconds of the monotonic clock, 0 for
/// none yet).
#[cfg(unix)]
static FIRST_CTRL_C_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The monotonic clock in milliseconds (at least 1); clock_gettime is
/// async-signal-safe.
#[cfg(unix)]
fn monotonic_ms() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the time into `t`.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    (t.tv_sec as u64 * 1000 + t.tv_nsec as u64 / 1_000_000).max(1)
}

#[cfg(unix)]
fn register_stop(sig: i32, announce: bool) {
    let ctrl_c = sig == signal_hook::consts::SIGINT;
    // Made here, as the handler may not allocate; announced only to a
    // terminal (written to a pipe whose reader is gone, as `| tee` is after
    // Ctrl-C, it would raise SIGPIPE and end the run unsaved).
    // SAFETY: isatty only inspects the descriptor.
    let lines = (announce && unsafe { libc::isatty(2) } == 1).then(|| {
        let again = if ctrl_c {
            "; Ctrl-C again quits at once"
        } else {
            ""
        };
        let name = signal_name(sig as usize);
        [
            format!("\ncharlm: {name}: stopping after this step to save a checkpoint{again}\n"),
            format!("\ncharlm: {name}: training is over; the run is writing its models{again}\n"),
        ]
    });
    // Before the first step the run has written nothing, and its reading
    // (a corpus on a pipe that never ends, /dev/zero, a huge file) may not
    // come back soon: the handler ends the process itself, with this line
    // on standard output (as the run's other lines) unless --quiet.
    let prepared = announce.then(|| stopped_while_preparing(sig as usize) + "\n");
    // SAFETY: the action calls only async-signal-safe functions
    // (clock_gettime, write, rmdir, _exit, and emulate_default_handler's
    // sigaction, sigprocmask and raise) and atomics, on data it owns or
    // that is never freed ([`CLAIMED`]).
    let _ = unsafe {
        signal_hook::low_level::register(sig, move || {
            if ctrl_c {
                let now = monotonic_ms();
                match FIRST_CTRL_C_MS.compare_exchange(0, now, Ordering::SeqCst, Ordering::SeqCst) {
                    Err(first) if now >= first + REPEAT_MS => {
                        let _ = signal_hook::low_level::emulate_default_handler(sig);
                    }
                    _ => {}
                }
            }
            // The first signal is kept, with the phase it came in.
            let first = RUN_STATE.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |s| {
                (s >> 8 == 0).then_some(s | (sig as usize) << 8)
            });
            if first.is_ok_and(|state| state & 0xff == PREPARING) {
                if let Some(line) = &prepared {
                    let _ = libc::write(1, line.as_ptr().cast(), line.len());
                }
                for dir in &CLAIMED {
                    let dir = dir.load(Ordering::SeqCst);
                    if !dir.is_null() {
                        let _ = libc::rmdir(dir);
                    }
                }
                libc::_exit(128 + sig);
            }
            if let (Ok(state), Some(lines)) = (first, &lines) {
                let line = &lines[(state & 0xff).saturating_sub(TRAINING).min(lines.len() - 1)];
                let _ = libc::write(2, line.as_ptr().cast(), line.len());
            }
        })
    };
}

/// The folders `charlm train` made for a new run before it started it
/// (`runs/<time>`, and `runs/` where it made that too), in the order the
/// stop handler removes them (leaked C strings; null where there is none).
#[cfg(unix)]
static CLAIMED: [std::sync::atomic::AtomicPtr<libc::c_char>; 2] = [
    std::sync::atomic::AtomicPtr::new(std::ptr::null_mut()),
    std::sync::atomic::AtomicPtr::new(std::ptr::null_mut()),
];

/// Names the empty folder the command made for this run (and, with
/// `parent_too`, the one above it, made for it as well): a stop signal
/// before the first step removes them.
pub fn claimed_folder(dir: &Path, parent_too: bool) {
    #[cfg(unix)]
    {
        let parent = dir.parent().filter(|_| parent_too);
        for (slot, dir) in CLAIMED.iter().zip([Some(dir), parent]) {
            let c = dir.and_then(|d| {
                std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(d.as_os_str())).ok()
            });
            if let Some(c) = c {
                slot.store(c.into_raw(), Ordering::SeqCst);
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (dir, parent_too);
}

/// What a run stopped before its first step says.
fn stopped_while_preparing(signal: usize) -> String {
    format!(
        "interrupted by {} while preparing to train: nothing written",
        signal_name(signal)
    )
}

#[cfg(not(unix))]
fn register_stop(sig: i32, _: bool) {
    // SAFETY: the action only updates an atomic.
    let _ = unsafe {
        signal_hook::low_level::register(sig, move || {
            let _ = RUN_STATE.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |s| {
                (s >> 8 == 0).then_some(s | (sig as usize) << 8)
            });
        })
    };
}

/// Whether `sig` is ignored now, as `nohup` leaves SIGHUP and a shell
/// leaves SIGINT for a job it starts in the background.
#[cfg(unix)]
pub(crate) fn ignored(sig: i32) -> bool {
    // SAFETY: sigaction(2) with no new action only reads the current one
    // into `old`, a zeroed sigaction.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(sig, std::ptr::null(), &mut old) == 0 && old.sa_sigaction == libc::SIG_IGN
    }
}

#[cfg(not(unix))]
pub(crate) fn ignored(_: i32) -> bool {
    false
}

/// The name of a stop signal, for messages ("SIGTERM").
pub fn signal_name(sig: usize) -> &'static str {
    i32::try_from(sig)
        .ok()
        .and_then(signal_hook::low_level::signal_name)
        .unwrap_or("a signal")
}

/// One generated text of the samples shown after an epoch.
#[derive(Clone, Debug, PartialEq)]
pub struct SampleRecord {
    /// Prompt as given.
    pub prompt: String,
    /// 0 = greedy (as `charlm generate --temperature`).
    pub temperature: f32,
    /// Seed (as `charlm generate --seed`).
    pub seed: u64,
    /// Length limit (as `charlm generate --max-chars`).
    pub max_chars: usize,
    /// Prompt and continuation, as `charlm generate` prints it.
    pub text: String,
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// All epochs (or `max_steps`) done; `model.clm` written.
    Finished,
    /// Stopped by this signal (Ctrl-C's SIGINT, SIGTERM, SIGHUP) or the
    /// test hook (0); the checkpoint holds the state.
    Interrupted(usize),
}

/// What a run produced.
#[derive(Clone, Debug)]
pub struct Summary {
    /// How it ended.
    pub outcome: Outcome,
    /// Steps taken in total.
    pub steps: u64,
    /// Provenance recorded in `model.clm` (when finished).
    pub provenance: Option<Provenance>,
    /// The samples shown last.
    pub samples: Vec<SampleRecord>,
    /// Training characters per second in this session.
    pub chars_per_s: f64,
    /// The lowest held-out score so far, whose model is `best.clm`.
    pub best: Option<Best>,
}

/// The temperatures the lesson samples with.
pub const TEMPERATURES: [f32; 4] = [0.3, 0.8, 1.0, 1.3];

/// Training data ready for the loop.
enum Train {
    Samples(SampleBatcher),
    Stream(StreamBatcher),
}

impl Train {
    fn len(&self) -> usize {
        match self {
            Train::Samples(b) => b.len(),
            Train::Stream(b) => b.len(),
        }
    }
}

struct Data {
    name: String,
    crc: u32,
    /// The `--val` file's checksum, if the run has one.
    val_crc: Option<u32>,
    vocab: Vocab,
    train: Train,
    val: Option<EvalData>,
    val_batches: Vec<Batch>,
    layout: TextLayout,
    /// Held-out characters dropped as the vocabulary lacks them.
    val_dropped: usize,
    /// Held-out text was there, and the vocabulary lacks every character
    /// of it.
    val_unknown_only: bool,
}

/// What a resumed run or `--init` fixes before the data is read.
struct Given {
    /// The vocabulary the data is encoded with.
    vocab: Vocab,
    /// The checksum the corpus must have (a resumed run's).
    corpus_crc: Option<u32>,
    /// The checksum the `--val` file must have (a resumed run's, where
    /// its checkpoint recorded one).
    val_crc: Option<u32>,
    /// Whose vocabulary, for messages ("the run's", "--init m.clm's").
    source: String,
}

fn prepare(cfg: &Config, given: Option<Given>, note: &dyn Fn(&str)) -> Result<Data, CliError> {
    // A resumed run's data file that is gone may have moved.
    let resumed = given.as_ref().is_some_and(|g| g.corpus_crc.is_some());
    let moved = |what: &'static str, flag: &'static str| {
        move |e: CliError| match e {
            CliError::Read { path, source }
                if resumed && source.kind() == std::io::ErrorKind::NotFound =>
            {
                CliError::invalid(format!(
                    "cannot read {}, the run's {what}: {source}; if it moved, give it again with {flag} FILE",
                    path.display()
                ))
            }
            e => e,
        }
    };
    let corpus = cfg.corpus.load().map_err(moved("corpus", "--corpus"))?;
    let (name, crc, layout) = (corpus.name.clone(), corpus.crc, corpus.layout);
    if let Some(want) = given
        .as_ref()
        .and_then(|g| g.corpus_crc)
        .filter(|&c| c != crc)
    {
        return Err(CliError::invalid(format!(
            "{name}: the corpus differs from the one this run was trained on (checksum {crc:08x}, expected {want:08x})"
        )));
    }
    for q in &corpus.notes {
        note(q);
    }
    // (The corpus is read: a file not found now is the --val file.)
    let (split, val_notes) = cfg
        .corpus
        .split(corpus, cfg.val.as_deref(), cfg.val_frac)
        .map_err(moved("held-out file", "--val"))?;
    if let (Some(want), Some(crc), Some(val)) = (
        given.as_ref().and_then(|g| g.val_crc),
        split.val_crc,
        &cfg.val,
    ) && want != crc
    {
        return Err(CliError::invalid(format!(
            "--val {}: the held-out file differs from the one this run was scored on (checksum {crc:08x}, expected {want:08x})",
            corpus::from_here(val).display()
        )));
    }
    for q in &val_notes {
        note(q);
    }
    let (vocab, source) = match given {
        Some(g) => (g.vocab, Some(g.source)),
        None => (Vocab::fit(split.train.iter().map(|s| s.as_str()))?, None),
    };
    // The ids of the texts that keep any character, which texts those are
    // (their indices), and how many characters the vocabulary lacks.
    let encode = |texts: &[String]| -> (Vec<Vec<u16>>, Vec<usize>, usize) {
        let (mut all, mut kept, mut dropped) = (Vec::new(), Vec::new(), 0);
        for (i, t) in texts.iter().enumerate() {
            let (ids, d) = vocab.encode(t);
            dropped += d;
            if !ids.is_empty() {
                all.push(ids);
                kept.push(i);
            }
        }
        (all, kept, dropped)
    };
    let (train_ids, kept, dropped) = encode(&split.train);
    if let Some(source) = source.filter(|_| dropped > 0 && train_ids.is_empty()) {
        return Err(CliError::invalid(format!(
            "{name}: none of its characters is in {source} vocabulary ({}, e.g. {:?})",
            crate::out::count(vocab.symbols().len() as u64, "symbol", "symbols"),
            vocab.symbols().iter().take(12).collect::<String>()
        )));
    }
    if dropped > 0 {
        note(&format!(
            "dropped {} the vocabulary lacks",
            crate::out::count(dropped as u64, "training character", "training characters")
        ));
    }
    let (val_ids, val_kept, val_dropped) = encode(&split.val);
    // Held-out samples are scored in batches as long as their longest, as
    // training samples are: the same limit.
    if layout == TextLayout::Samples
        && let Some((s, &i)) = val_ids
            .iter()
            .zip(&val_kept)
            .find(|(s, _)| s.len() > MAX_SAMPLE)
    {
        let from = match &cfg.val {
            Some(path) => format!("--val {}", corpus::from_here(path).display()),
            None => format!("the part of {name} --val-frac holds out"),
        };
        let start: String = split.val[i].chars().take(20).collect();
        return Err(CliError::invalid(format!(
            "{from}: the held-out sample that begins {start:?} has {} characters; samples are limited to {MAX_SAMPLE}",
            s.len()
        )));
    }
    let val_unknown_only = val_dropped > 0 && val_ids.iter().all(|s| s.is_empty());
    let train = match layout {
        TextLayout::Samples => {
            if train_ids.is_empty() {
                return Err(CliError::invalid(format!("{name}: no training samples")));
            }
            if let Some((s, &i)) = train_ids
                .iter()
                .zip(&kept)
                .find(|(s, _)| s.len() > MAX_SAMPLE)
            {
                let hint = if cfg.corpus.field.is_some() {
                    "one CSV field is one sample: is its quoting broken?"
                } else {
                    "train long text as running text: leave out --layout lines"
                };
                return Err(CliError::invalid(format!(
                    "{name}: the sample on line {} has {} characters; samples are limited to {MAX_SAMPLE} ({hint})",
                    split.train_lines[i],
                    s.len()
                )));
            }
            Train::Samples(SampleBatcher::new(train_ids, cfg.batch, vocab.eos()))
        }
        TextLayout::Running => {
            let ids = train_ids.into_iter().next().unwrap_or_default();
            let n = ids.len();
            Train::Stream(
                StreamBatcher::new(ids, cfg.batch, cfg.seq_len).ok_or_else(|| {
                    CliError::invalid(format!(
                        "{name}: {} too few for --batch {} streams of --seq-len {} \
                     (need at least {}); lower --batch or --seq-len",
                        crate::out::count(
                            n as u64,
                            "training character is",
                            "training characters are"
                        ),
                        cfg.batch,
                        cfg.seq_len,
                        cfg.batch * cfg.seq_len + 1
                    ))
                })?,
            )
        }
    };
    let (val, val_batches) = match layout {
        TextLayout::Samples if !val_ids.is_empty() => {
            let b = eval_sample_batches(&val_ids, 64, vocab.eos());
            (Some(EvalData::Samples(val_ids)), b)
        }
        TextLayout::Running => match val_ids.into_iter().next().filter(|ids| ids.len() >= 2) {
            Some(ids) => {
                let b = eval_stream_batches(&ids, 256);
                (Some(EvalData::Running(ids)), b)
            }
            None => (None, vec![]),
        },
        _ => (None, vec![]),
    };
    // (with none left, the run says so where it says it has no held-out
    // data)
    if val_dropped > 0 && val.is_some() {
        note(&format!(
            "dropped {} the vocabulary lacks",
            crate::out::count(
                val_dropped as u64,
                "held-out character",
                "held-out characters"
            )
        ));
    }
    Ok(Data {
        name,
        crc,
        val_crc: split.val_crc,
        vocab,
        train,
        val,
        val_batches,
        layout,
        val_dropped,
        val_unknown_only,
    })
}

/// The error that ends a run whose step `step` had a non-finite `what`
/// ("loss" or "gradient"); nothing from that step reached the parameters.
fn diverged(step: u64, what: &str, out: &Path) -> CliError {
    CliError::invalid(format!(
        "training diverged at step {step} ({what} is not finite); the last checkpoint in {} is kept; \
         try a lower --lr or --clip",
        out.display()
    ))
}

/// With device-resident training, waits for the queued steps and books
/// their nats (into the epoch's sum and the metrics row's) and the time
/// waited (into the run's, the row's and this session's training seconds).
/// Does nothing on the CPU.
fn settle(
    backend: &mut dyn Backend,
    progress: &mut Progress,
    (row, session_s): (&mut checkpoint::Interval, &mut f64),
    out: &Path,
) -> Result<(), CliError> {
    let Some(r) = backend.resident() else {
        return Ok(());
    };
    let t = Instant::now();
    let settled = r.settle()?;
    let waited = t.elapsed().as_secs_f64();
    match settled {
        Settled::Nats(nats) => {
            progress.epoch_nats += nats;
            row.nats += nats;
            progress.seconds += waited;
            row.seconds += waited;
            *session_s += waited;
            Ok(())
        }
        Settled::Diverged { what, step } => Err(diverged(step, what, out)),
    }
}

/// With device-resident training, refreshes the host's parameters and
/// optimizer state from the device. Does nothing on the CPU.
fn store(
    backend: &mut dyn Backend,
    params: &mut [f32],
    opt: &mut Optimizer,
) -> Result<(), CliError> {
    match backend.resident() {
        Some(r) => r.store(params, opt),
        None => Ok(()),
    }
}

/// Held-out loss with f32 weights on the backend (softmax without padding,
/// like the runtime), from zero state.
fn val_loss(backend: &mut dyn Backend, params: &[f32], batches: &[Batch]) -> Option<Loss> {
    if batches.is_empty() {
        return None;
    }
    let mut total = Loss::default();
    for b in batches {
        total.add(backend.loss(params, b, Classes::NoPadding));
    }
    Some(total)
}

/// The prompts samples start from.
fn default_prompts(corpus_name: &str, layout: TextLayout) -> Vec<String> {
    let shakespeare = corpus_name == corpus::BUNDLED_NAME;
    let list: &[&str] = match (shakespeare, layout) {
        // A speaker's name and a line break start a speech.
        (true, TextLayout::Running) => &["ROMEO:\n", "KING HENRY:\n", "To be"],
        // Each line is a sample there, and a speaker's name is a whole
        // line: start where lines go on.
        (true, TextLayout::Samples) => &["To be", "What ", "I will "],
        (false, _) => &["Today ", "On Sunday ", "Moscow, "],
    };
    list.iter().map(|s| s.to_string()).collect()
}

/// What a run stopped by `signal` (0: `stop_after`) at `steps` says.
fn interrupted(signal: usize, steps: u64, out: &Path) -> String {
    let by = match signal {
        0 => String::new(),
        s => format!(" by {}", signal_name(s)),
    };
    format!(
        "interrupted{by} at step {steps}: checkpoint saved; continue with: charlm train --resume {0}, or write its model with: charlm export {0}",
        out.display()
    )
}

/// The longest sample `--sample-chars` asks for (`charlm generate` writes
/// longer texts).
pub const MAX_SAMPLE_CHARS: usize = 100_000;

/// Greedy text from every prompt, then one text per lesson temperature;
/// `None` where a stop signal came while they were written (the run then
/// stops without them).
pub fn make_samples(
    model: &Model<'_>,
    prompts: &[String],
    seed: u64,
    max_chars: usize,
) -> Option<Vec<SampleRecord>> {
    /// Keeps a text until a stop signal comes.
    struct Watch(Sample, bool);
    impl TextSink for Watch {
        type Error = SampleError;
        fn begin(&mut self, prompt: &str, _: usize) -> Result<(), Self::Error> {
            self.0.prompt = prompt.to_string();
            Ok(())
        }
        fn char(&mut self, c: char) -> Result<bool, Self::Error> {
            self.0.generated.push(c);
            self.1 = stop_signal() != 0;
            Ok(!self.1)
        }
        fn end(&mut self) -> Result<(), Self::Error> {
            Ok(())
        }
    }
    let mut ws = host_workspace();
    let usable: Vec<&String> = prompts
        .iter()
        .filter(|p| crate::sample::readable(model, p))
        .collect();
    let greedy = usable.iter().map(|&p| (p, 0.0));
    let warm = TEMPERATURES
        .iter()
        .enumerate()
        .filter_map(|(i, &t)| Some((*usable.get(i % usable.len().max(1))?, t)));
    let mut out = Vec::new();
    for (prompt, temperature) in greedy.chain(warm) {
        let Ok(sampler) = Sampler::from_temperature(temperature) else {
            continue;
        };
        let mut text = Watch(Sample::default(), false);
        let made = generate_each(model, &mut ws, prompt, sampler, seed, max_chars, &mut text);
        if text.1 {
            return None;
        }
        if made.is_ok() {
            out.push(SampleRecord {
                prompt: prompt.to_string(),
                temperature,
                seed,
                max_chars,
                text: text.0.text(),
            });
        }
    }
    Some(out)
}

fn samples_text(records: &[SampleRecord], epoch: f64, steps: u64) -> String {
    let mut s = format!(
        "# samples after epoch {epoch:.2} (step {steps}); each reproduces with\n\
         #   charlm generate --model model.clm --prompt P --temperature T --seed S --max-chars N\n\
         # (P is quoted with escapes: \"ROMEO:\\n\" ends in a line break, which bash writes $'ROMEO:\\n')\n"
    );
    for r in records {
        s.push_str(&format!(
            "--- prompt {:?}, temperature {}, seed {}, max-chars {}\n{}\n",
            r.prompt, r.temperature, r.seed, r.max_chars, r.text
        ));
    }
    s
}

fn print_samples(records: &[SampleRecord]) {
    for r in records {
        let label = if r.temperature == 0.0 {
            "greedy".to_string()
        } else {
            format!("T={}", r.temperature)
        };
        let mut lines = r.text.lines();
        outln!("  {label:<7} {}", lines.next().unwrap_or(""));
        for l in lines {
            outln!("          {l}");
        }
    }
}

/// Records in `path` (best.clm) its held-out score through the runtime,
/// and returns it, where the file holds f16 weights (the score a file
/// records; an earlier part of a resumed run may have written i8). Stamping
/// a stamped file again writes the same bytes, so a run that is killed here
/// and resumed ends as if it had not been.
fn stamp_best(path: &Path, val: &EvalData) -> Result<Option<f32>, CliError> {
    let bytes = crate::error::read_file(path)?;
    let model_err = |source| CliError::Model {
        path: path.to_owned(),
        source,
    };
    let model = Model::from_bytes(&bytes).map_err(model_err)?;
    if model.weights() != DType::F16 {
        return Ok(None);
    }
    let v = runtime_loss(&model, val).bpc() as f32;
    let mut file = ModelFile::decode(&bytes).map_err(model_err)?;
    file.body.meta.val_bpc_f16 = Some(v);
    let stamped = file
        .encode()
        .map_err(|e| CliError::invalid(format!("cannot encode the model: {e}")))?;
    write_atomic(path, &stamped)?;
    Ok(Some(v))
}

/// Compares the held-out score `v` of an evaluation that competes with the
/// best so far: a lower one becomes the best (true: best.clm is to be
/// written), any other counts against the patience. Says how `v` stands,
/// for the evaluation's line.
fn compete(
    best: &mut Option<Best>,
    v: f32,
    steps: u64,
    epochs: u64,
    steps_per_epoch: u64,
) -> (String, bool) {
    match best {
        Some(b) if v >= b.val_bpc => {
            b.since += 1;
            let line = format!(
                "{v:.3} bpc (best {:.3} {})",
                b.val_bpc,
                when(b, steps_per_epoch)
            );
            (line, false)
        }
        _ => {
            *best = Some(Best {
                steps,
                epoch: epochs,
                val_bpc: v,
                since: 0,
            });
            (format!("{v:.3} bpc (best so far)"), true)
        }
    }
}

/// When the best score was reached: "after epoch 3, step 120" at an
/// epoch's end, else "at step 250, epoch 2.08".
fn when(b: &Best, steps_per_epoch: u64) -> String {
    if b.steps == b.epoch * steps_per_epoch {
        format!("after epoch {}, step {}", b.epoch, b.steps)
    } else {
        format!(
            "at step {}, epoch {:.2}",
            b.steps,
            b.steps as f64 / steps_per_epoch.max(1) as f64
        )
    }
}

/// The files a run writes in its folder besides those of [`RUN_FILES`].
pub const OTHER_FILES: [&str; 3] = ["metrics.csv", "loss.svg", "samples.txt"];
/// The files that say a folder holds a run.
pub const RUN_FILES: [&str; 3] = [checkpoint::FILE, "model.clm", BEST_FILE];

/// Refuses a folder that holds another run, or a file a run would write
/// over (a user's own `metrics.csv` in `--out .`).
fn check_out(out: &Path) -> Result<(), CliError> {
    // A run's checkpoint: --resume continues it. (A model.clm or best.clm
    // without one is not a run --resume could continue.)
    if out.join(checkpoint::FILE).exists() {
        return Err(CliError::invalid(format!(
            "{} already holds a run ({}); continue it with --resume {} or choose another --out",
            out.display(),
            checkpoint::FILE,
            out.display()
        )));
    }
    for f in RUN_FILES.into_iter().chain(OTHER_FILES) {
        if out.join(f).exists() {
            return Err(CliError::invalid(format!(
                "--out {}: holds {f}, which a run would write over; choose another --out",
                out.display()
            )));
        }
    }
    if out.exists() && !out.is_dir() {
        return Err(CliError::invalid(format!(
            "--out {}: exists and is not a folder",
            out.display()
        )));
    }
    Ok(())
}

/// Refuses a checkpoint that is not the run of the folder it was found in
/// (one copied in from another run's folder): its metrics rows and the
/// folder's `metrics.csv` must agree, or resuming would write that other
/// run over this folder's models and metrics. A `metrics.csv` that is gone
/// or unreadable is no evidence either way (the checkpoint writes its own).
fn check_metrics(out: &Path, rows: &[Row]) -> Result<(), CliError> {
    let Ok(file) = std::fs::read_to_string(out.join("metrics.csv")) else {
        return Ok(());
    };
    match metrics::disagreement(&file, rows) {
        None => Ok(()),
        Some(line) => Err(CliError::invalid(format!(
            "{}: {f} and metrics.csv are from different runs (line {line} of metrics.csv differs): was {f} copied from another run's folder? To continue its run here, move metrics.csv away first",
            out.display(),
            f = checkpoint::FILE
        ))),
    }
}

/// The lock file a run holds in its folder while it trains.
pub const LOCK_FILE: &str = ".charlm-train.lock";

/// Takes the run folder for this process: a second `charlm train` (or
/// `--resume`) on the same folder would write the same checkpoint and
/// models. The lock is the operating system's on an open file, so it ends
/// with the process, however it ends (a killed run leaves no stale lock).
pub fn lock_run(out: &Path) -> Result<std::fs::File, CliError> {
    let path = out.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| CliError::Write {
            path: path.clone(),
            source,
        })?;
    // A lock just given up can stay held for a moment: a process being
    // started elsewhere in the program (fork, then exec) holds a copy of
    // every descriptor until its exec. So a busy lock is tried again for a
    // fifth of a second before another run is blamed.
    for attempt in 0.. {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if attempt < 20 => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(std::fs::TryLockError::WouldBlock) => break,
            Err(std::fs::TryLockError::Error(source)) => {
                return Err(CliError::Write { path, source });
            }
        }
    }
    Err(CliError::invalid(format!(
        "{}: another charlm train is running in this folder",
        out.display()
    )))
}

/// Makes the run folder (and the folders above it) where there is none:
/// true if this process made it, false if it was there (or another process
/// made it first).
fn make_folder(out: &Path) -> Result<bool, CliError> {
    let fail = |source| CliError::Write {
        path: out.to_path_buf(),
        source,
    };
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(fail)?;
    }
    match std::fs::create_dir(out) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && out.is_dir() => Ok(false),
        Err(source) => Err(fail(source)),
    }
}

/// A run folder made for this run, removed again if the run ends before
/// its first checkpoint (its first save failed, e.g. on a full disk): it
/// could not be resumed, and it would stand in the way of the same `--out`.
/// What such a run wrote first (its lock; `best.clm`, which comes before
/// the checkpoint that records it) goes with it. Dropped while the run
/// still holds the lock, so no other run is using the folder; a folder
/// holding a checkpoint or anything the run does not write is left alone.
struct RemoveIfUnused<'a>(Option<&'a Path>);

impl Drop for RemoveIfUnused<'_> {
    fn drop(&mut self) {
        let Some(dir) = self.0 else {
            return;
        };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let Ok(names) = entries
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<Vec<_>, _>>()
        else {
            return;
        };
        let ours = |n: &std::ffi::OsString| {
            n != checkpoint::FILE
                && (n == LOCK_FILE || RUN_FILES.iter().chain(&OTHER_FILES).any(|f| n == f))
        };
        if !names.iter().all(ours) {
            return;
        }
        // The lock last: while it is there, no other run takes the folder.
        let (lock, files): (Vec<_>, Vec<_>) = names.iter().partition(|&n| n == LOCK_FILE);
        if files
            .into_iter()
            .chain(lock)
            .all(|n| std::fs::remove_file(dir.join(n)).is_ok())
        {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// Trains (or resumes) a run. When resuming, the checkpoint's configuration
/// is used, with four settings from `cfg`: `epochs` (the larger),
/// `max_steps` and `patience` (where set) and `weights`.
pub fn run(cfg: Config, opts: &Options) -> Result<Summary, CliError> {
    RUN_STATE.store(PREPARING, Ordering::SeqCst);
    let verbose = opts.verbose;
    let say = |s: &str| {
        if verbose {
            outln!("{s}");
        }
    };
    // Notes go to standard error, as the other commands' do.
    let note = |s: &str| {
        if verbose {
            errln!("charlm: note: {s}");
        }
    };
    let resumed = if opts.resume {
        let ck = Checkpoint::load(&opts.out)?;
        check_metrics(&opts.out, &ck.metrics)?;
        Some(ck)
    } else {
        None
    };
    // The samples asked for: this command's --prompt and --sample-chars,
    // else (resumed) the run's own, so that a resume writes the samples
    // the uninterrupted run would.
    let sampling = {
        let run = resumed
            .as_ref()
            .map(|ck| ck.samples.clone())
            .unwrap_or_default();
        checkpoint::SampleSettings {
            prompts: opts.prompts.clone().or(run.prompts),
            chars: opts.sample_chars.or(run.chars),
        }
    };
    let cfg = match &resumed {
        Some(ck) => {
            let mut c = ck.config.clone();
            c.epochs = cfg.epochs.max(c.epochs);
            if cfg.max_steps.is_some() {
                c.max_steps = cfg.max_steps;
            }
            if cfg.patience.is_some() {
                c.patience = cfg.patience;
            }
            if cfg.eval_every.is_some() {
                c.eval_every = cfg.eval_every;
            }
            c.weights = cfg.weights;
            // The data's files as given now (the command checked that they
            // are the run's: the corpus by its checksum below, --val by
            // the file it names), for a run that moved or is resumed from
            // another folder than the one it started in.
            if cfg.corpus.path.is_some() {
                c.corpus.path = cfg.corpus.path.clone();
            }
            if cfg.val.is_some() {
                c.val = cfg.val.clone();
            }
            c
        }
        None => {
            check_out(&opts.out)?;
            cfg
        }
    };
    cfg.validate()?;
    let given = match (&resumed, &opts.init) {
        (Some(ck), _) => Some(Given {
            vocab: Vocab::from_symbols(ck.vocab.chars().collect()),
            corpus_crc: Some(ck.corpus_crc),
            val_crc: ck.val_crc,
            source: "the run's".to_string(),
        }),
        (None, Some(init)) => Some(Given {
            vocab: init.vocab.clone(),
            corpus_crc: None,
            val_crc: None,
            source: format!("--init {}'s", init.source),
        }),
        (None, None) => None,
    };
    let data = prepare(&cfg, given, &note)?;
    if data.val.is_none() {
        // Asked for, and none came out: too little data to hold some out,
        // or none of it in the vocabulary.
        let dropped = crate::out::count(data.val_dropped as u64, "character", "characters");
        let asked = match &cfg.val {
            Some(path) => Some(format!(
                "--val {} has none to score{}",
                corpus::from_here(path).display(),
                match (data.val_unknown_only, data.val_dropped) {
                    (true, _) => " (every character of it is one the vocabulary lacks)".into(),
                    (false, 0) => String::new(),
                    (false, _) =>
                        format!(" (too little once {dropped} the vocabulary lacks are dropped)"),
                }
            )),
            None if cfg.val_frac > 0.0 => Some(format!(
                "--val-frac {} of {} leaves {}",
                cfg.val_frac,
                data.name,
                match (data.val_unknown_only, data.val_dropped) {
                    (true, _) =>
                        "none the vocabulary knows (every held-out character is one it lacks)"
                            .into(),
                    (false, 0) => "none (too little data)".to_string(),
                    (false, _) =>
                        format!("too little once {dropped} the vocabulary lacks are dropped"),
                }
            )),
            None => None,
        };
        let needs = [
            ("--patience", cfg.patience),
            ("--eval-every", cfg.eval_every),
        ];
        if let Some((flag, Some(n))) = needs.into_iter().find(|(_, v)| v.is_some()) {
            return Err(CliError::invalid(match &asked {
                Some(why) => format!("{flag} {n}: needs held-out data, and {why}"),
                None => format!("{flag} {n}: needs held-out data (--val-frac above 0, or --val)"),
            }));
        }
        if let Some(why) = asked {
            note(&format!(
                "no held-out data: {why}; the run has no held-out scores and no best.clm"
            ));
        }
    }
    let layout = Layout::new(cfg.arch(data.vocab.size()));
    let mut backend = backend::select(opts.device, &layout)?;
    let mut eval_backend = backend::select(opts.device, &layout)?;
    // The --eval-every the checkpoint was written under (a resumed run may
    // change it).
    let saved_eval_every = resumed.as_ref().and_then(|ck| ck.config.eval_every);
    let (mut params, mut opt, mut progress, mut rows) = match resumed {
        Some(ck) => {
            ck.fits(&layout)?;
            backend.set_carried_state(ck.carry.0, ck.carry.1);
            (ck.params, ck.optimizer, ck.progress, ck.metrics)
        }
        None => {
            let params = match &opts.init {
                Some(init) if init.params.len() == layout.len => {
                    say(&format!("initialised from {}", init.source));
                    init.params.clone()
                }
                Some(init) => {
                    return Err(CliError::invalid(format!(
                        "{}: its parameters do not fit this run's architecture",
                        init.source
                    )));
                }
                None => layout.init(cfg.seed),
            };
            (
                params,
                Optimizer::new(cfg.optimizer, layout.len),
                Progress::default(),
                Vec::new(),
            )
        }
    };
    // A stop signal that came while the run prepared (reading the corpus,
    // starting the backend) ends it here, before anything is written.
    // (On Unix the handler has ended the process already.)
    if let Err(signal) = enter(TRAINING) {
        say(&stopped_while_preparing(signal));
        return Err(CliError::Interrupted(signal));
    }
    let made = make_folder(&opts.out)?;
    let _lock = lock_run(&opts.out)?;
    // Declared after the lock, so dropped (and the folder looked at) while
    // the lock is still held.
    let _unused = RemoveIfUnused((made || opts.new_folder).then_some(opts.out.as_path()));
    if made || opts.new_folder {
        // The new folder's own entry, durable before the files in it are.
        checkpoint::sync_folder(&opts.out).map_err(|source| CliError::Write {
            path: opts.out.clone(),
            source,
        })?;
    }
    // What a killed run left (temporaries as large as a checkpoint); the
    // lock is held, so no other run writes them (`charlm export` may, and
    // a live process's files stay).
    checkpoint::remove_leftovers(&opts.out, |file| {
        RUN_FILES.contains(&file) || OTHER_FILES.contains(&file)
    });
    // On CUDA the parameters and optimizer state live on the device; the host
    // copies are refreshed at checkpoints and at the end of each epoch.
    let resident = backend.resident().is_some();
    if let Some(r) = backend.resident() {
        r.load(&params, &opt)?;
    }

    let steps_per_epoch = data.train.len() as u64;
    let arch = layout.arch;
    say(&format!(
        "charlm train: {} {}x{} on {} ({} ids), {} params, {} batch{}/epoch of {}, {} lr {:e}, device {}",
        arch.cell.name().to_uppercase(),
        arch.layers,
        arch.hidden,
        data.name,
        arch.vocab,
        layout.len,
        steps_per_epoch,
        if steps_per_epoch == 1 { "" } else { "es" },
        match data.layout {
            TextLayout::Running => format!(
                "{} of {}",
                crate::out::count(cfg.batch as u64, "window", "windows"),
                cfg.seq_len
            ),
            // the last batch of an epoch may be smaller
            TextLayout::Samples => format!(
                "up to {}",
                crate::out::count(cfg.batch as u64, "sample", "samples")
            ),
        },
        cfg.optimizer.name(),
        cfg.lr,
        backend.describe()
    ));
    say(&format!("run folder: {}", opts.out.display()));
    // Early stopping: the best held-out score is `patience` evaluations old.
    let patience_spent = |p: &Progress| {
        cfg.patience
            .zip(p.best.as_ref())
            .is_some_and(|(n, b)| b.since >= n)
    };
    if patience_spent(&progress)
        && let (Some(n), Some(b)) = (cfg.patience, &progress.best)
    {
        // (its own --patience ended it, or a lower one given on resume)
        let unit = match cfg.eval_every {
            Some(_) => ("evaluation", "evaluations"),
            None => ("epoch", "epochs"),
        };
        say(&format!(
            "this run stops here: no lower held-out score in {} since its best (--patience {n}); raise --patience to train further",
            crate::out::count(b.since, unit.0, unit.1)
        ));
    } else if let Some(m) = cfg
        .max_steps
        .filter(|&m| progress.steps >= m && progress.epoch < cfg.epochs)
    {
        say(&format!(
            "this run is at its --max-steps {m} (step {}); raise --max-steps to train further",
            progress.steps
        ));
    } else if progress.done && progress.epoch >= cfg.epochs {
        // (a higher --max-steps alone cannot go past the last epoch)
        say("this run is already finished; raise --epochs to train further");
    }

    let mut prompts = sampling
        .prompts
        .clone()
        .unwrap_or_else(|| default_prompts(&data.name, data.layout));
    // The characters of each prompt the corpus has (what samples run).
    let known = |p: &str| split_prompt(p, |c| data.vocab.id(c).is_some());
    let given = sampling.prompts.is_some();
    if sampling.chars != Some(0) && prompts.iter().any(|p| !known(p).1.is_empty()) {
        for p in &prompts {
            let (lacks, runs) = known(p);
            let flag = if given {
                "--prompt"
            } else {
                "the samples' prompt"
            };
            if runs.is_empty() && given {
                note(&format!(
                    "--prompt {p:?} has no character of the corpus: no samples start from it"
                ));
            } else if !runs.is_empty() && !lacks.is_empty() {
                note(&format!(
                    "{flag} {p:?}: the corpus lacks {lacks:?}; samples run it as {runs:?}"
                ));
            }
        }
    }
    if prompts.iter().all(|p| known(p).1.is_empty()) {
        // Samples start from a prompt the model can read: a corpus in
        // another script than the default prompts' starts from its most
        // frequent character (the vocabulary's first); prompts the user
        // chose are theirs, and the run says it has none to show.
        match (&sampling.prompts, data.vocab.symbols().first()) {
            (None, Some(&c)) => prompts = vec![c.to_string()],
            _ => note(
                "no --prompt has a character of the corpus: the run shows and saves no samples",
            ),
        }
    }
    let sample_chars = sampling.chars.unwrap_or(match data.layout {
        TextLayout::Running => 200,
        TextLayout::Samples => 100,
    });
    let mut grads = vec![0.0f32; layout.len];
    let mut last_samples = Vec::new();
    let session_start = Instant::now();
    let mut session_chars = 0u64;
    let mut session_train_s = 0.0f64;
    let log_every = (steps_per_epoch / 10).clamp(1, 100);
    // The sums of the metrics row in progress (a resumed run's from its
    // checkpoint, so that it writes the rows an uninterrupted run would).
    let mut row_sums = progress.interval;
    let tty = verbose && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut outcome = Outcome::Finished;
    let limit_reached = |steps: u64| cfg.max_steps.is_some_and(|m| steps >= m);
    // Held-out evaluations that compete for best.clm and count for
    // --patience: every epoch's end, and with --eval-every every step count
    // that is a multiple of it (wherever a run stops and resumes, the same
    // steps).
    let eval_point = |steps: u64| cfg.eval_every.is_some_and(|n| steps.is_multiple_of(n));
    // A run that --max-steps ended inside an epoch (not at an evaluation
    // of --eval-every's, as the checkpoint's run counted them) scored its
    // weights there and may have written a row for that step alone (its
    // sums then still in progress): a run that goes on from it drops both,
    // as one that ran straight through has neither.
    let trains_on =
        progress.epoch < cfg.epochs && !limit_reached(progress.steps) && !patience_spent(&progress);
    if let Some(last) = rows.last_mut()
        && trains_on
        && last.step == progress.steps
        && progress.batch > 0
        && !saved_eval_every.is_some_and(|n| progress.steps.is_multiple_of(n))
    {
        last.val_bpc = None;
        if row_sums.count > 0 {
            rows.pop();
        }
    }
    // The metrics row of the step just taken, from the sums since the last
    // row (held-out score added when it is scored).
    let row_now = |progress: &Progress, sums: &checkpoint::Interval, lr: f32| Row {
        step: progress.steps,
        epoch: progress.epoch as f64 + progress.batch as f64 / steps_per_epoch as f64,
        lr,
        train_bpc: (sums.nats / sums.count.max(1) as f64) / std::f64::consts::LN_2,
        val_bpc: None,
        chars_per_s: sums.count as f64 / sums.seconds.max(1e-9),
        seconds: progress.seconds,
    };
    // The step whose evaluation (score, metrics.csv, samples) ran in this
    // session, if any.
    let mut evaluated_at = None;
    let patience_unit = if cfg.eval_every.is_some() {
        ("evaluation", "evaluations")
    } else {
        ("epoch", "epochs")
    };
    let save = |params: &Vec<f32>,
                opt: &Optimizer,
                progress: &Progress,
                rows: &[Row],
                backend: &dyn Backend,
                interval: checkpoint::Interval| {
        Checkpoint {
            version: checkpoint::VERSION,
            config: cfg.clone(),
            corpus_crc: data.crc,
            val_crc: data.val_crc,
            samples: sampling.clone(),
            vocab: data.vocab.symbols_string(),
            params: params.clone(),
            optimizer: opt.clone(),
            progress: Progress {
                interval,
                ..progress.clone()
            },
            carry: backend.carried_state(),
            metrics: rows.to_vec(),
        }
        .save(&opts.out)
    };

    // What a model file written now records of the run (the f16 score
    // through the runtime is added where there is one).
    let provenance = |progress: &Progress| Provenance {
        corpus: data.name.clone(),
        steps: progress.steps,
        train_bpc: progress.train_bpc,
        val_bpc: progress.val_bpc,
        val_bpc_f16: None,
    };
    // The model file of `params` as they stand, of the run's weight type.
    let model_now = |params: &[f32], progress: &Progress| {
        export(
            &layout,
            params,
            &data.vocab,
            &provenance(progress),
            cfg.weights,
        )
    };
    // A checkpoint whose own weights are the best: a run killed after it
    // and before best.clm was written leaves best.clm behind it (or none),
    // and it is written now, as the evaluation wrote it.
    if let Some(b) = &progress.best
        && b.steps == progress.steps
    {
        let path = opts.out.join(BEST_FILE);
        let steps_on_disk = std::fs::read(&path)
            .ok()
            .and_then(|bytes| ModelFile::decode(&bytes).ok().map(|f| f.body.meta.steps));
        if steps_on_disk != Some(b.steps) {
            let bytes = model_now(&params, &progress)?;
            write_atomic(&path, &bytes)?;
        }
    }

    'epochs: while progress.epoch < cfg.epochs
        && !limit_reached(progress.steps)
        && !patience_spent(&progress)
    {
        let epoch = progress.epoch;
        let lr = cfg.lr * cfg.lr_decay.powi(epoch as i32);
        let plan = match &data.train {
            Train::Samples(b) => Some(b.plan(cfg.seed, epoch)),
            Train::Stream(_) => None,
        };
        let offset = match &data.train {
            Train::Stream(b) => b.offset(cfg.seed, epoch),
            Train::Samples(_) => 0,
        };
        let bar = if tty {
            let bar = ProgressBar::new(steps_per_epoch);
            bar.set_style(
                ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ({eta})")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            bar.set_prefix(format!("epoch {}/{}", epoch + 1, cfg.epochs));
            // Resumed inside the epoch (or going on after an evaluation of
            // --eval-every's): the steps already taken are no progress of
            // this bar's, or its estimate would count them as made in no
            // time. The estimator records them with the tick, then forgets
            // their rate.
            if progress.batch > 0 {
                bar.set_position(progress.batch);
                bar.tick();
                bar.reset_eta();
            }
            bar
        } else {
            ProgressBar::hidden()
        };
        while progress.batch < steps_per_epoch {
            let k = progress.batch as usize;
            let batch = match (&data.train, &plan) {
                (Train::Samples(b), Some(p)) => b.batch(&p[k]),
                (Train::Stream(b), _) => b.batch(offset, k),
                _ => unreachable!("samples always have a plan"),
            };
            // A finished run resumed to train further is no longer finished
            // (its checkpoints from here on say so: `charlm export`).
            progress.done = false;
            let t0 = Instant::now();
            let dropout = (cfg.dropout > 0.0).then(|| Dropout {
                p: cfg.dropout,
                seed: Rng::derive(cfg.seed, 0x4452_4f50 ^ progress.steps).next_u64(),
            });
            let loss = if resident {
                let r = backend.resident().expect("checked at the start");
                r.step(&batch, dropout, cfg.clip, lr)
                    .inspect_err(|_| bar.finish_and_clear())?;
                // its nats arrive with the next settle()
                Loss {
                    nats: 0.0,
                    count: batch.chars(),
                }
            } else {
                let loss = backend.loss_and_grad(&params, &batch, &mut grads, dropout);
                // A non-finite loss or gradient stops the run before it reaches the
                // parameters: the last checkpoint (written atomically, from finite
                // values) stays the last good state to resume from.
                let norm = if cfg.clip > 0.0 {
                    clip_grad_norm(&mut grads, cfg.clip)
                } else {
                    grad_norm(&grads)
                };
                if !loss.nats.is_finite() || !norm.is_finite() {
                    bar.finish_and_clear();
                    let what = if loss.nats.is_finite() {
                        "gradient"
                    } else {
                        "loss"
                    };
                    return Err(diverged(progress.steps, what, &opts.out));
                }
                opt.step(&mut params, &grads, lr);
                loss
            };
            let dt = t0.elapsed().as_secs_f64();
            progress.steps += 1;
            progress.batch += 1;
            progress.epoch_nats += loss.nats;
            progress.epoch_count += loss.count as u64;
            progress.seconds += dt;
            progress.chars += loss.count as u64;
            session_chars += loss.count as u64;
            session_train_s += dt;
            row_sums.nats += loss.nats;
            row_sums.count += loss.count as u64;
            row_sums.seconds += dt;
            let regular = progress.steps % log_every == 0
                || progress.batch == steps_per_epoch
                || eval_point(progress.steps);
            if regular || limit_reached(progress.steps) {
                let sums = (&mut row_sums, &mut session_train_s);
                settle(backend.as_mut(), &mut progress, sums, &opts.out)
                    .inspect_err(|_| bar.finish_and_clear())?;
                let row = row_now(&progress, &row_sums, lr);
                bar.set_message(format!(
                    "{:.3} bpc, {:.1}k chars/s",
                    row.train_bpc,
                    row.chars_per_s / 1e3
                ));
                if verbose && !tty && progress.steps % (log_every * 5) == 0 {
                    outln!(
                        "  step {} (epoch {:.2}): {:.3} bpc, {:.1}k chars/s",
                        row.step,
                        row.epoch,
                        row.train_bpc,
                        row.chars_per_s / 1e3
                    );
                }
                rows.push(row);
                // A row only for --max-steps' end keeps its sums as the row
                // in progress (no step follows it in this run): a run
                // continued with a higher --max-steps drops the row and goes
                // on with them, so that it writes the rows of one that ran
                // straight through.
                if regular {
                    row_sums = checkpoint::Interval::default();
                }
            }
            bar.set_position(progress.batch);
            // No checkpoint is written at a step scored next (one that
            // --eval-every scores, an epoch's last, --max-steps') until it
            // is scored (below the loop), so that a run resumed from any
            // checkpoint never skips an evaluation; Ctrl-C there stops once
            // the step is scored (at --max-steps', the run then finishes).
            let pending_eval = eval_point(progress.steps);
            let scored_next =
                pending_eval || progress.batch == steps_per_epoch || limit_reached(progress.steps);
            let signal = stop_signal();
            let stop_now = !scored_next
                && (signal != 0 || opts.stop_after.is_some_and(|s| progress.steps >= s));
            if stop_now {
                bar.finish_and_clear();
                let sums = (&mut row_sums, &mut session_train_s);
                settle(backend.as_mut(), &mut progress, sums, &opts.out)?;
                store(backend.as_mut(), &mut params, &mut opt)?;
                save(&params, &opt, &progress, &rows, backend.as_ref(), row_sums)?;
                metrics::write(&opts.out, &rows)?;
                say(&interrupted(signal, progress.steps, &opts.out));
                outcome = Outcome::Interrupted(signal);
                break 'epochs;
            }
            if progress.steps % opts.checkpoint_every.max(1) == 0 && !scored_next {
                let sums = (&mut row_sums, &mut session_train_s);
                settle(backend.as_mut(), &mut progress, sums, &opts.out)
                    .inspect_err(|_| bar.finish_and_clear())?;
                store(backend.as_mut(), &mut params, &mut opt)?;
                save(&params, &opt, &progress, &rows, backend.as_ref(), row_sums)?;
            }
            // The step budget's end, or an evaluation of --eval-every's
            // (scored below; the epoch then goes on where it was).
            if limit_reached(progress.steps) || pending_eval {
                break;
            }
        }
        bar.finish_and_clear();
        // The last step is taken: a stop signal from here on lets the run
        // write its models and end (its announcement says so).
        // (`finishing` is this run's own record of it: the process-wide
        // phase is the signal handler's, and tests run several runs at once)
        let mut finishing = limit_reached(progress.steps)
            || (progress.batch >= steps_per_epoch && progress.epoch + 1 >= cfg.epochs);
        if finishing {
            let _ = enter(FINISHING);
        }
        // End of an epoch, of the step budget or at an evaluation of
        // --eval-every's: score, sample, save.
        let sums = (&mut row_sums, &mut session_train_s);
        settle(backend.as_mut(), &mut progress, sums, &opts.out)?;
        store(backend.as_mut(), &mut params, &mut opt)?;
        progress.train_bpc = Some(progress.epoch_bpc());
        let val = val_loss(eval_backend.as_mut(), &params, &data.val_batches);
        progress.val_bpc = val.map(|l| l.bpc() as f32);
        if let Some(last) = rows.last_mut() {
            last.val_bpc = val.map(|l| l.bpc());
        }
        evaluated_at = Some(progress.steps);
        let fraction = progress.batch as f64 / steps_per_epoch as f64;
        // Only whole epochs (and --eval-every's steps) compete for best.clm
        // and count for --patience: a --max-steps end elsewhere inside an
        // epoch is scored, and the epoch is scored again at its end if the
        // run is resumed.
        let whole_epoch = progress.batch >= steps_per_epoch;
        let competes = whole_epoch || eval_point(progress.steps);
        if whole_epoch {
            progress.epoch += 1;
            progress.batch = 0;
            progress.epoch_nats = 0.0;
            progress.epoch_count = 0;
        }
        // The model as it stands: the samples come from it, and it is
        // best.clm when its held-out score is the lowest so far.
        let bytes = model_now(&params, &progress)?;
        let model = Model::from_bytes(&bytes).map_err(|source| CliError::Model {
            path: "model".into(),
            source,
        })?;
        let epoch_label = epoch as f64 + fraction;
        // A new best is written to best.clm once the checkpoint that
        // records it is (below): a run killed between the two finds
        // best.clm behind its checkpoint and writes it again on resume.
        let (held_out, new_best) = match progress.val_bpc {
            None => ("-".to_string(), false),
            Some(v) if !competes => (format!("{v:.3} bpc"), false),
            Some(v) => compete(
                &mut progress.best,
                v,
                progress.steps,
                progress.epoch,
                steps_per_epoch,
            ),
        };
        // A run --patience ends here is finishing: a stop signal from here
        // on lets it write its models.
        if patience_spent(&progress) {
            finishing = true;
            let _ = enter(FINISHING);
        }
        // An evaluation of --eval-every's inside an epoch, where the run goes
        // on: one line, no samples.
        let interim = !whole_epoch && !limit_reached(progress.steps) && !patience_spent(&progress);
        if interim {
            say(&format!(
                "  step {} (epoch {epoch_label:.2}): held-out {held_out}",
                progress.steps
            ));
        } else {
            say(&format!(
                "epoch {}/{}: train {:.3} bpc, held-out {held_out}, step {}, {:.0} s, {:.1}k chars/s",
                if whole_epoch {
                    format!("{}", epoch + 1)
                } else {
                    format!("{epoch_label:.2}")
                },
                cfg.epochs,
                progress.train_bpc.unwrap_or(f32::NAN),
                progress.steps,
                progress.seconds,
                session_chars as f64 / session_train_s.max(1e-9) / 1e3
            ));
        }
        // The checkpoint first: samples can take a while (a stop signal
        // cuts them short), and a run whose first save fails must not
        // have written anything else.
        save(&params, &opt, &progress, &rows, backend.as_ref(), row_sums)?;
        if new_best {
            write_atomic(&opts.out.join(BEST_FILE), &bytes)?;
        }
        metrics::write(&opts.out, &rows)?;
        if !interim && sample_chars > 0 {
            match make_samples(&model, &prompts, cfg.seed, sample_chars) {
                Some(samples) => {
                    last_samples = samples;
                    if verbose {
                        print_samples(&last_samples);
                    }
                    write_atomic(
                        &opts.out.join("samples.txt"),
                        samples_text(&last_samples, epoch_label, progress.steps).as_bytes(),
                    )?;
                }
                // Cut short by a stop signal, with the checkpoint written:
                // the run stops here, unless it is finishing (then it
                // writes its models and ends).
                None if !finishing => {
                    let signal = stop_signal();
                    say(&interrupted(signal, progress.steps, &opts.out));
                    outcome = Outcome::Interrupted(signal);
                    break 'epochs;
                }
                None => {}
            }
        }
        if let (true, Some(n), Some(b)) = (patience_spent(&progress), cfg.patience, &progress.best)
        {
            say(&format!(
                "stopping early: no lower held-out score in {} since the best, {:.3} bpc {} ({})",
                crate::out::count(n, patience_unit.0, patience_unit.1),
                b.val_bpc,
                when(b, steps_per_epoch),
                opts.out.join(BEST_FILE).display()
            ));
        }
        // A stop signal that came during a step --eval-every scores (with
        // `--eval-every 1`, every step), or while the run scored it: the
        // checkpoint written above holds everything, so the run stops here
        // unless it is finishing anyway.
        let signal = stop_signal();
        if (signal != 0 || opts.stop_after.is_some_and(|s| progress.steps >= s)) && !finishing {
            say(&interrupted(signal, progress.steps, &opts.out));
            outcome = Outcome::Interrupted(signal);
            break 'epochs;
        }
    }

    if outcome == Outcome::Finished
        && progress.epoch < cfg.epochs
        && let Some(m) = cfg.max_steps.filter(|&m| progress.steps >= m)
    {
        // (at an epoch's end, no step of the next one is taken)
        let (at, epoch) = match progress.batch {
            0 => ("after", progress.epoch),
            _ => ("in", progress.epoch + 1),
        };
        say(&format!(
            "stopped at --max-steps {m}, {at} epoch {epoch} of {} (charlm train --resume {} --max-steps N trains on)",
            cfg.epochs,
            opts.out.display()
        ));
    }
    let _ = enter(FINISHING);
    let mut summary = Summary {
        outcome: outcome.clone(),
        steps: progress.steps,
        provenance: None,
        samples: last_samples,
        chars_per_s: session_chars as f64 / session_train_s.max(1e-9),
        best: progress.best.clone(),
    };
    if let Outcome::Interrupted(_) = outcome {
        return Ok(summary);
    }
    // A run resumed with nothing left to train ends at its checkpoint's
    // step, which this session did not evaluate. What that evaluation
    // writes, and the first session may not have written, is written now,
    // as a run that ends there straight through writes it: after a stop
    // between evaluations resumed with a --max-steps or --patience that
    // ends it there, the step's metrics row, training score and held-out
    // score; after a kill that came between the last checkpoint and
    // metrics.csv or samples.txt, those files.
    let resumed_end = evaluated_at != Some(progress.steps);
    if resumed_end {
        if progress.epoch_count > 0 {
            progress.train_bpc = Some(progress.epoch_bpc());
        }
        if rows.last().map(|r| r.step) != Some(progress.steps) && row_sums.count > 0 {
            let lr = cfg.lr * cfg.lr_decay.powi(progress.epoch as i32);
            rows.push(row_now(&progress, &row_sums, lr));
        }
        let scored = rows.iter().rev().find_map(|r| r.val_bpc.map(|_| r.step));
        if scored != Some(progress.steps) && !data.val_batches.is_empty() {
            let val = val_loss(eval_backend.as_mut(), &params, &data.val_batches);
            progress.val_bpc = val.map(|l| l.bpc() as f32);
            if let Some(last) = rows.last_mut().filter(|r| r.step == progress.steps) {
                last.val_bpc = val.map(|l| l.bpc());
            }
        }
        metrics::write(&opts.out, &rows)?;
    }
    // Final export: held-out score of the f16 model through the runtime.
    let mut prov = provenance(&progress);
    // The held-out score of the exported weights through the runtime, and
    // their size.
    let score = |weights: DType, val: &EvalData| -> Result<(f32, usize), CliError> {
        let bytes = export(&layout, &params, &data.vocab, &prov, weights)?;
        let model = Model::from_bytes(&bytes).map_err(|source| CliError::Model {
            path: "model".into(),
            source,
        })?;
        Ok((runtime_loss(&model, val).bpc() as f32, bytes.len()))
    };
    // Both types are scored: the one written, and the other as a hint.
    let mut scores = None;
    if let Some(val) = &data.val {
        let f16 = score(DType::F16, val)?;
        let i8 = score(DType::I8, val)?;
        prov.val_bpc_f16 = Some(f16.0);
        scores = Some((f16, i8));
    }
    // The file records the f16 score only when it holds f16 weights.
    let file_prov = Provenance {
        val_bpc_f16: prov.val_bpc_f16.filter(|_| cfg.weights == DType::F16),
        ..prov.clone()
    };
    let bytes = export(&layout, &params, &data.vocab, &file_prov, cfg.weights)?;
    let model_path = opts.out.join("model.clm");
    write_atomic(&model_path, &bytes)?;
    if resumed_end && sample_chars > 0 {
        let model = Model::from_bytes(&bytes).map_err(|source| CliError::Model {
            path: model_path.clone(),
            source,
        })?;
        // (cut short by a stop signal: the run is finishing; it keeps the
        // samples file it had)
        if let Some(samples) = make_samples(&model, &prompts, cfg.seed, sample_chars) {
            if verbose {
                print_samples(&samples);
            }
            let epoch = progress.epoch as f64 + progress.batch as f64 / steps_per_epoch as f64;
            write_atomic(
                &opts.out.join("samples.txt"),
                samples_text(&samples, epoch, progress.steps).as_bytes(),
            )?;
            summary.samples = samples;
        }
    }
    // best.clm was written without its score through the runtime (a pass
    // over the held-out data for every new best would cost more than the
    // evaluation itself): it gets it now, as model.clm has (f16 files).
    // When the best is the final model, model.clm is best.clm.
    let best_path = opts.out.join(BEST_FILE);
    let best_f16 = match (&progress.best, &data.val) {
        (Some(b), _) if b.steps == progress.steps => {
            write_atomic(&best_path, &bytes)?;
            file_prov.val_bpc_f16
        }
        (Some(_), Some(val)) => stamp_best(&best_path, val)?,
        _ => None,
    };
    progress.done = true;
    save(&params, &opt, &progress, &rows, backend.as_ref(), row_sums)?;
    let written = scores.map(|(f16, i8)| if cfg.weights == DType::I8 { i8 } else { f16 });
    say(&format!(
        "wrote {} ({} bytes, {} weights): {}, train {} bpc, held-out {} bpc (f32), {} bpc ({}, through the runtime), {:.0} s {}",
        model_path.display(),
        bytes.len(),
        cfg.weights,
        crate::out::count(progress.steps, "step", "steps"),
        prov.train_bpc.map_or("-".into(), |v| format!("{v:.3}")),
        prov.val_bpc.map_or("-".into(), |v| format!("{v:.3}")),
        written.map_or("-".into(), |(v, _)| format!("{v:.3}")),
        cfg.weights,
        session_start.elapsed().as_secs_f64(),
        // A resumed run's earlier sessions are not counted.
        if opts.resume {
            "this session"
        } else {
            "in all"
        }
    ));
    if let Some((f16, i8)) = scores {
        let (other, (bpc, size)) = match cfg.weights {
            DType::F16 => (DType::I8, i8),
            DType::I8 => (DType::F16, f16),
        };
        say(&format!(
            "with {other} weights: held-out {bpc:.3} bpc, {size} bytes (charlm export {} --weights {other})",
            opts.out.display()
        ));
    }
    // After an early stop (or a late rise) the best model is the one to
    // try; not after a --max-steps end inside an epoch that scored lower
    // still (such an end is scored but does not compete for best.clm).
    let try_path = match &progress.best {
        Some(b) if b.steps != progress.steps => {
            let path = opts.out.join(BEST_FILE);
            let final_lower = prov.val_bpc.is_some_and(|v| v < b.val_bpc);
            say(&format!(
                "best held-out score: {:.3} bpc (f32){} {}: {}",
                b.val_bpc,
                best_f16.map_or(String::new(), |v| format!(
                    ", {v:.3} bpc (f16, through the runtime)"
                )),
                when(b, steps_per_epoch),
                path.display()
            ));
            if final_lower { model_path } else { path }
        }
        _ => model_path,
    };
    say(&format!(
        "try: charlm generate --model {} --temperature 0.8",
        try_path.display()
    ));
    summary.provenance = Some(prov);
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_prompts_for_bundled_lines_are_known_and_no_whole_line() {
        let text = std::str::from_utf8(corpus::BUNDLED).unwrap();
        let lines: std::collections::HashSet<&str> = text.lines().collect();
        let prompts = default_prompts(corpus::BUNDLED_NAME, TextLayout::Samples);
        assert_eq!(prompts.len(), 3);
        for p in &prompts {
            // Every character is one a line can hold, and the model is not
            // asked to go on from a whole line (it would just end it).
            assert!(p.chars().all(|c| c != '\n' && text.contains(c)), "{p:?}");
            assert!(!lines.contains(p.trim_end()), "{p:?} is a whole line");
        }
        // Running text keeps its speech openers, line break included.
        let running = default_prompts(corpus::BUNDLED_NAME, TextLayout::Running);
        assert!(running.iter().any(|p| p.ends_with(":\n")), "{running:?}");
    }
}
