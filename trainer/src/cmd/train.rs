//! `charlm train`: corpus in, run folder with `model.clm` out.

use std::path::{Path, PathBuf};

use charlm_runtime::format::{CellKind, DType};
use charlm_trainer::checkpoint::{self, Checkpoint};
use charlm_trainer::corpus::{Field, Layout, Spec};
use charlm_trainer::errln;
use charlm_trainer::error::CliError;
use charlm_trainer::export::parameters;
use charlm_trainer::import::{learnable_end, never_ends};
use charlm_trainer::optim;
use charlm_trainer::train::{self, Config, Device, Init, Options};

use super::Weights;

/// Defaults, tuned so that `charlm train` with no arguments trains the
/// bundled Shakespeare in a few minutes on a 2-core machine.
pub mod defaults {
    /// Cell.
    pub const CELL: &str = "lstm";
    /// Layers.
    pub const LAYERS: u8 = 1;
    /// Hidden units.
    pub const HIDDEN: u16 = 256;
    /// Sequences per batch (small batches: more steps in a short run).
    pub const BATCH: usize = 16;
    /// Window of running text.
    pub const SEQ_LEN: usize = 100;
    /// Epochs.
    pub const EPOCHS: u64 = 5;
    /// Learning-rate factor per epoch.
    pub const LR_DECAY: f32 = 0.9;
    /// Gradient-norm clipping threshold.
    pub const CLIP: f32 = 5.0;
    /// Learning rate for Adam.
    pub const LR_ADAM: f32 = 3e-3;
    /// Learning rate for RMSprop (Keras' default, the lesson's).
    pub const LR_RMSPROP: f32 = 1e-3;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TextLayout {
    /// One continuous text (train cuts it into --seq-len windows and carries the state across; eval scores it in streams).
    Running,
    /// One sample per line, each ending in <eos>.
    Lines,
}

#[derive(clap::Args, Debug)]
#[command(allow_negative_numbers = true)]
pub struct Args {
    /// Training text: a text file, or AG News CSV with --field. Default: the bundled Tiny Shakespeare.
    #[arg(long)]
    corpus: Option<PathBuf>,
    /// Read --corpus as AG News CSV (class,title,description) and train on this field.
    #[arg(long, value_enum)]
    field: Option<Field>,
    /// How a text corpus is cut: running text (default) or one sample per line.
    #[arg(long, value_enum)]
    layout: Option<TextLayout>,
    /// Held-out data from another file (same format as --corpus).
    #[arg(long, conflicts_with = "val_frac")]
    val: Option<PathBuf>,
    /// Fraction of the corpus held out (deterministic: the end of running text, every 1/x-th sample).
    #[arg(long, value_parser = super::finite::<f64>, allow_hyphen_values = true)]
    val_frac: Option<f64>,
    /// Run folder (created; must not hold another run). Default: runs/<UTC time>.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Passes over the training data (default 5).
    #[arg(long, value_parser = super::whole::<u64>, allow_negative_numbers = true)]
    epochs: Option<u64>,
    /// Stop after this many optimizer steps in total (before --epochs ends).
    #[arg(long, value_parser = super::whole::<u64>, allow_negative_numbers = true)]
    max_steps: Option<u64>,
    /// Stop early once the held-out score has not improved for this many
    /// epochs in a row (evaluations, with --eval-every; default: train every
    /// epoch). Either way, the model of the lowest held-out score so far is
    /// kept as best.clm.
    #[arg(long, value_parser = super::whole::<u64>, allow_negative_numbers = true)]
    patience: Option<u64>,
    /// Also score the held-out data every N optimizer steps, not only at
    /// each epoch's end: those scores compete for best.clm and count for
    /// --patience too (for corpora whose epochs are long).
    #[arg(long, value_name = "N", value_parser = super::whole::<u64>, allow_negative_numbers = true)]
    eval_every: Option<u64>,
    /// Sequences per batch (default 16).
    #[arg(long, value_parser = super::whole::<usize>, allow_negative_numbers = true)]
    batch: Option<usize>,
    /// Recurrent cell (default lstm).
    #[arg(long, value_parser = ["lstm", "gru"])]
    cell: Option<String>,
    /// Stacked recurrent layers, 1 to 4 (default 1).
    #[arg(long, value_parser = super::one_to::<u8>(4), allow_negative_numbers = true)]
    layers: Option<u8>,
    /// Hidden units per layer (default 256).
    #[arg(long, value_parser = super::one_to::<u16>(train::MAX_HIDDEN as u16), allow_negative_numbers = true)]
    hidden: Option<u16>,
    /// Dropout between layers (default 0).
    #[arg(long, value_parser = super::finite::<f32>, allow_hyphen_values = true)]
    dropout: Option<f32>,
    /// Characters per window of running text, the lesson's num_chars (default 100).
    #[arg(long, value_parser = super::whole::<usize>, allow_negative_numbers = true)]
    seq_len: Option<usize>,
    /// Update rule: adam, or rmsprop (rho 0.9, eps 1e-7: the lesson's Keras defaults).
    #[arg(long, value_enum)]
    optimizer: Option<optim::Kind>,
    /// Learning rate (default 3e-3 for adam, 1e-3 for rmsprop).
    #[arg(long, value_parser = super::finite::<f32>, allow_hyphen_values = true)]
    lr: Option<f32>,
    /// Multiply the learning rate by this after every epoch (default 0.9).
    #[arg(long, value_parser = super::finite::<f32>, allow_hyphen_values = true)]
    lr_decay: Option<f32>,
    /// Clip the gradient's global norm to this (0 = off; default 5). A
    /// non-finite loss or gradient stops the run either way, keeping the last checkpoint.
    #[arg(long, visible_alias = "max-grad-norm", value_parser = super::finite::<f32>, allow_hyphen_values = true)]
    clip: Option<f32>,
    /// Seed of everything random: the same seed gives the same model.clm, bit for bit (default 1).
    #[arg(long, allow_negative_numbers = true, value_parser = super::whole::<u64>)]
    seed: Option<u64>,
    /// Where to train: auto (a GPU when a driver is present, else the CPU), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: Device,
    /// Continue the run in this folder from its checkpoint.
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Start from this model's weights and vocabulary instead of random ones (fine-tuning: a
    /// .clm or a run folder, e.g. one `charlm import` wrote). Its architecture is the run's;
    /// characters of the corpus the model lacks are dropped.
    #[arg(long, value_name = "MODEL", conflicts_with = "resume")]
    init: Option<PathBuf>,
    /// Worker threads (default: one per core).
    #[arg(long, value_parser = super::whole::<usize>, allow_negative_numbers = true)]
    pub threads: Option<usize>,
    /// Write a checkpoint every this many steps (and after every epoch).
    #[arg(long, default_value_t = 200, value_parser = super::one_to(u64::MAX), allow_negative_numbers = true)]
    checkpoint_every: u64,
    /// Prompt for the samples shown after each epoch (repeat for several).
    #[arg(long)]
    prompt: Vec<String>,
    /// Characters per sample (0: the run shows and saves no samples).
    #[arg(long, value_parser = super::between(0, train::MAX_SAMPLE_CHARS), allow_negative_numbers = true)]
    sample_chars: Option<usize>,
    /// Weight type of model.clm (and of the model the samples come from):
    /// f16 (default), or i8 with a scale per row, about half the size. A
    /// resumed run keeps its type unless this is given.
    #[arg(long, value_enum)]
    weights: Option<Weights>,
    /// Print only errors.
    #[arg(long, short)]
    quiet: bool,
}

/// `runs/YYYYmmdd-HHMMSS` in UTC, with `-2`, `-3`, ... added when a run of
/// the same second has taken that name; and whether this process made
/// `runs/` too (removed with the run's folder if the run is refused).
fn default_out() -> (PathBuf, bool) {
    let base = utc_run_name();
    let made_runs = match std::fs::create_dir(RUNS) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
        // The run says why when it creates its folder.
        Err(_) => return (base, false),
    };
    let out = std::iter::once(base.clone())
        .chain((2..).map(|n| PathBuf::from(format!("{}-{n}", base.display()))))
        // Creating the folder claims the name: two runs started in the same
        // second cannot both get it. Any failure but "exists" ends the
        // search; the run then reports it.
        .find(|p| match std::fs::create_dir(p) {
            Ok(()) => true,
            Err(e) => e.kind() != std::io::ErrorKind::AlreadyExists,
        })
        .unwrap_or(base);
    (out, made_runs)
}

/// The folder that holds the runs `charlm train` names itself.
const RUNS: &str = "runs";

/// `runs/YYYYmmdd-HHMMSS` in UTC.
fn utc_run_name() -> PathBuf {
    // "2026-12-07T15:24:34Z": its digits, the date's and the time's. (A
    // clock before 1970 or after 9999 has no such stamp: it names the run
    // as at 1970's start.)
    use std::fmt::Write;
    let now = std::time::SystemTime::now().max(std::time::UNIX_EPOCH);
    let mut stamp = String::new();
    if write!(stamp, "{}", humantime::format_rfc3339_seconds(now)).is_err() {
        stamp = "1970-01-01T00:00:00Z".into();
    }
    let digits: String = stamp.chars().filter(char::is_ascii_digit).collect();
    let (date, time) = digits.split_at(8.min(digits.len()));
    PathBuf::from(format!("runs/{date}-{time}"))
}

fn config(a: &Args) -> Config {
    let optimizer = a.optimizer.unwrap_or(optim::Kind::Adam);
    let field = a.field;
    let layout = match (field, a.layout) {
        (Some(_), _) | (None, Some(TextLayout::Lines)) => Layout::Samples,
        _ => Layout::Running,
    };
    Config {
        // Absolute, so that the checkpoint names the files wherever the run
        // is resumed from (their file names alone go into the model).
        corpus: Spec {
            path: a.corpus.as_deref().map(absolute),
            field,
            layout,
        },
        val: a.val.as_deref().map(absolute),
        val_frac: a.val_frac.unwrap_or(0.05),
        cell: match a.cell.as_deref().unwrap_or(defaults::CELL) {
            "gru" => CellKind::Gru,
            _ => CellKind::Lstm,
        },
        layers: a.layers.unwrap_or(defaults::LAYERS),
        hidden: a.hidden.unwrap_or(defaults::HIDDEN),
        dropout: a.dropout.unwrap_or(0.0),
        batch: a.batch.unwrap_or(defaults::BATCH),
        seq_len: a.seq_len.unwrap_or(defaults::SEQ_LEN),
        epochs: a.epochs.unwrap_or(defaults::EPOCHS),
        max_steps: a.max_steps,
        optimizer,
        lr: a.lr.unwrap_or(match optimizer {
            optim::Kind::Adam => defaults::LR_ADAM,
            optim::Kind::Rmsprop => defaults::LR_RMSPROP,
        }),
        lr_decay: a.lr_decay.unwrap_or(defaults::LR_DECAY),
        clip: a.clip.unwrap_or(defaults::CLIP),
        seed: a.seed.unwrap_or(1),
        weights: a.weights.unwrap_or(Weights::F16).dtype(),
        patience: a.patience,
        eval_every: a.eval_every,
    }
}

/// Flags that say something the rest of the command line makes impossible
/// are refused, rather than ignored.
fn check_combinations(a: &Args) -> Result<(), CliError> {
    if a.field.is_some() && a.layout == Some(TextLayout::Running) {
        return Err(CliError::invalid(
            "--field reads AG News rows, one sample each: --layout running does not apply (leave it out)",
        ));
    }
    let samples = a.field.is_some() || a.layout == Some(TextLayout::Lines);
    if samples && a.seq_len.is_some() {
        return Err(CliError::invalid(
            "--seq-len cuts running text into windows; samples (--field, --layout lines) are whole: leave it out",
        ));
    }
    Ok(())
}

/// `path` made absolute against the current folder (as it is, if that fails).
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Whether `given` (on --resume) names the file a run recorded as `stored`:
/// the same file once links are resolved; or, where `stored` is a relative
/// path that does not resolve from here (a run started elsewhere by an
/// older charlm), the file given now stands in for it.
fn same_file(given: &Path, stored: &Path) -> bool {
    match (std::fs::canonicalize(given), std::fs::canonicalize(stored)) {
        (Ok(a), Ok(b)) => a == b,
        (Ok(_), Err(_)) => stored.is_relative(),
        _ => given == stored,
    }
}

/// Flags that define the model or its data may not change on --resume.
fn check_resume(a: &Args, ck: &Checkpoint) -> Result<(), CliError> {
    let val_crc = ck.val_crc;
    let ck = &ck.config;
    let given = config(a);
    let mut diffs = Vec::new();
    let mut cmp = |flag: &str, set: bool, same: bool| {
        if set && !same {
            diffs.push(flag.to_string());
        }
    };
    cmp("--cell", a.cell.is_some(), given.cell == ck.cell);
    cmp("--layers", a.layers.is_some(), given.layers == ck.layers);
    cmp("--hidden", a.hidden.is_some(), given.hidden == ck.hidden);
    cmp("--batch", a.batch.is_some(), given.batch == ck.batch);
    cmp(
        "--seq-len",
        a.seq_len.is_some(),
        given.seq_len == ck.seq_len,
    );
    cmp(
        "--optimizer",
        a.optimizer.is_some(),
        given.optimizer == ck.optimizer,
    );
    cmp("--lr", a.lr.is_some(), given.lr == ck.lr);
    cmp(
        "--lr-decay",
        a.lr_decay.is_some(),
        given.lr_decay == ck.lr_decay,
    );
    cmp("--clip", a.clip.is_some(), given.clip == ck.clip);
    cmp(
        "--dropout",
        a.dropout.is_some(),
        given.dropout == ck.dropout,
    );
    cmp("--seed", a.seed.is_some(), given.seed == ck.seed);
    // The corpus may be named by another path: its checksum, which the
    // checkpoint holds, decides.
    cmp(
        "--corpus",
        a.corpus.is_some() && ck.corpus.path.is_none(),
        false,
    );
    cmp(
        "--field",
        a.field.is_some(),
        given.corpus.field == ck.corpus.field,
    );
    cmp(
        "--layout",
        a.layout.is_some(),
        given.corpus.layout == ck.corpus.layout,
    );
    // So may the --val file where the checkpoint holds its checksum (it
    // decides when the data is read); before that, its path decides.
    cmp(
        "--val",
        a.val.is_some(),
        match (&given.val, &ck.val) {
            (Some(_), Some(_)) if val_crc.is_some() => true,
            (Some(g), Some(s)) => same_file(g, s),
            _ => false,
        },
    );
    cmp(
        "--val-frac",
        a.val_frac.is_some(),
        given.val_frac == ck.val_frac,
    );
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(CliError::invalid(format!(
            "{} {} from the run's (a resumed run keeps its settings but for --epochs, --max-steps, --patience, --eval-every and --weights); \
             leave {} out to resume, or start a new run with another --out",
            diffs.join(", "),
            if diffs.len() == 1 {
                "differs"
            } else {
                "differ"
            },
            if diffs.len() == 1 { "it" } else { "them" },
        )))
    }
}

/// A resumed run's `--epochs` may be raised, not lowered (`--max-steps`
/// ends a run sooner), and its `--max-steps` may not be below the steps it
/// has taken: either would be ignored, and the run's last lines would name
/// a limit it never stopped at.
fn check_limits(a: &Args, ck: &Checkpoint) -> Result<(), CliError> {
    if let Some(n) = a.epochs.filter(|&n| n < ck.config.epochs) {
        return Err(CliError::invalid(format!(
            "--epochs {n}: the run is set to {} epochs, and a resumed run's --epochs may only be raised (--max-steps N ends it sooner)",
            ck.config.epochs
        )));
    }
    if let Some(m) = a.max_steps.filter(|&m| m < ck.progress.steps) {
        return Err(CliError::invalid(format!(
            "--max-steps {m}: the run has taken {} steps already",
            ck.progress.steps
        )));
    }
    Ok(())
}

/// `--init MODEL`: its parameters and vocabulary, its architecture put
/// into `cfg`; an architecture flag that says otherwise is an error.
fn initial(args: &Args, path: &Path, cfg: &mut Config) -> Result<Init, CliError> {
    let (path, bytes) = super::read_model(path.to_path_buf())?;
    let (layout, params, vocab) = parameters(&bytes)
        .map_err(|e| CliError::invalid(format!("--init {}: {e}", path.display())))?;
    let a = layout.arch;
    if usize::from(a.hidden) > train::MAX_HIDDEN {
        return Err(CliError::invalid(format!(
            "--init {}: hidden {} is above the {} charlm trains",
            path.display(),
            a.hidden,
            train::MAX_HIDDEN
        )));
    }
    let differs = [
        ("--cell", args.cell.is_some() && cfg.cell != a.cell),
        ("--layers", args.layers.is_some() && cfg.layers != a.layers),
        ("--hidden", args.hidden.is_some() && cfg.hidden != a.hidden),
    ];
    if let Some((flag, _)) = differs.iter().find(|(_, d)| *d) {
        return Err(CliError::invalid(format!(
            "{flag}: the --init model {} is {} {}x{}; leave out the architecture flags to train it",
            path.display(),
            a.cell.name().to_uppercase(),
            a.layers,
            a.hidden
        )));
    }
    (cfg.cell, cfg.layers, cfg.hidden) = (a.cell, a.layers, a.hidden);
    let mut params = params;
    if cfg.corpus.layout == Layout::Samples && never_ends(&layout, &params) {
        // Samples end in <eos>, which such a model gives probability 0.
        learnable_end(&layout, &mut params);
        errln!(
            "charlm: note: --init {} never ends a text (its source had no <eos>): its <eos> starts from the lowest output bias and is learned from the samples",
            path.display()
        );
    }
    Ok(Init {
        source: path.display().to_string(),
        params,
        vocab,
    })
}

pub fn run(args: Args) -> Result<(), CliError> {
    if args.prompt.iter().any(|p| p.is_empty()) {
        return Err(CliError::invalid("--prompt must not be empty"));
    }
    check_combinations(&args)?;
    let mut weights = args.weights.map(Weights::dtype);
    let mut made_runs = false;
    let (out, resume) = match (&args.resume, &args.out) {
        (Some(dir), Some(out)) if dir != out => {
            return Err(CliError::invalid(
                "--resume DIR continues the run in DIR; leave out --out",
            ));
        }
        (Some(dir), _) => {
            // A run still training there: say so, rather than whatever its
            // files look like midway (train::run takes the lock for good).
            if dir.join(train::LOCK_FILE).is_file() {
                drop(train::lock_run(dir)?);
            }
            let ck = Checkpoint::load(dir)?;
            check_resume(&args, &ck)?;
            check_limits(&args, &ck)?;
            weights = weights.or(Some(ck.config.weights));
            (dir.clone(), true)
        }
        (None, Some(out)) => (out.clone(), false),
        (None, None) => {
            let out;
            (out, made_runs) = default_out();
            (out, false)
        }
    };
    // The run folder default_out made for this run: removed again if the
    // command fails before the run takes it (remove_dir removes only an
    // empty folder), by a stop signal before the first step, and by the run
    // if it fails having written nothing into it.
    let claimed = !resume && args.out.is_none();
    if claimed {
        train::claimed_folder(&out, made_runs);
    }
    // A runs/ made now: its entry durable too (the run syncs its own).
    let runs_synced = match made_runs {
        true => checkpoint::sync_folder(Path::new(RUNS)).map_err(|source| CliError::Write {
            path: RUNS.into(),
            source,
        }),
        false => Ok(()),
    };
    let result = runs_synced.and_then(|()| train_in(&args, out.clone(), resume, weights, claimed));
    if result.is_err() && claimed {
        let _ = std::fs::remove_dir(&out);
        if made_runs {
            let _ = std::fs::remove_dir(RUNS);
        }
    }
    result
}

/// The rest of `charlm train`, once the run folder is known.
fn train_in(
    args: &Args,
    out: PathBuf,
    resume: bool,
    weights: Option<DType>,
    new_folder: bool,
) -> Result<(), CliError> {
    let mut cfg = config(args);
    let init = match &args.init {
        Some(path) => Some(initial(args, path, &mut cfg)?),
        None => None,
    };
    if !resume && cfg.dropout > 0.0 && cfg.layers == 1 {
        let fix = if args.init.is_some() {
            "the --init model has 1 layer: leave --dropout out"
        } else {
            "add --layers 2, or leave it out"
        };
        return Err(CliError::invalid(format!(
            "--dropout {}: dropout acts between layers, and a 1-layer model has none ({fix})",
            cfg.dropout
        )));
    }
    let mut cfg_for_run = cfg;
    if resume {
        // Only --epochs, --max-steps and --weights may change; run() merges
        // them.
        cfg_for_run.epochs = args.epochs.unwrap_or(0);
    }
    if let Some(w) = weights {
        cfg_for_run.weights = w;
    }
    let opts = Options {
        out,
        resume,
        device: args.device,
        checkpoint_every: args.checkpoint_every,
        prompts: (!args.prompt.is_empty()).then(|| args.prompt.clone()),
        sample_chars: args.sample_chars,
        verbose: !args.quiet,
        new_folder,
        stop_after: None,
        init,
    };
    if let (Some(val), Some(corpus)) = (&args.val, &args.corpus)
        && !resume
        && std::fs::canonicalize(val).ok() == std::fs::canonicalize(corpus).ok()
        && val.exists()
    {
        errln!(
            "charlm: note: --val {} is the --corpus file: its held-out scores are on the training text",
            val.display()
        );
    }
    train::install_stop_signals(!args.quiet);
    train::run(cfg_for_run, &opts).and_then(|s| match s.outcome {
        train::Outcome::Finished => Ok(()),
        train::Outcome::Interrupted(signal) => Err(CliError::Interrupted(signal)),
    })
}
