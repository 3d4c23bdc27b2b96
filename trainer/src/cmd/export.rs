//! `charlm export`: a model file from a run folder's checkpoint (for a run
//! that is still going or that stopped before its end, or in i8; or from a
//! checkpoint file copied out of its folder), or an existing f16 model file
//! quantized to i8.

use std::path::{Path, PathBuf};

use charlm_runtime::format::DType;
use charlm_trainer::checkpoint::{Checkpoint, Staged, write_atomic};
use charlm_trainer::error::CliError;
use charlm_trainer::export::{from_checkpoint, quantize_file};
use charlm_trainer::outln;

use super::Weights;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Run folder (written by `charlm train`; its checkpoint.bin is read),
    /// a checkpoint file copied out of one, or an f16 model file (.clm) to
    /// quantize with --weights i8.
    run: PathBuf,
    /// Model file to write (default: RUN/model-step<N>.clm, N the steps
    /// taken, with -i8 before .clm for i8 weights; for a model file,
    /// NAME-i8.clm beside it).
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// Replace the --out file if it exists.
    #[arg(long)]
    force: bool,
    /// Type of the weight matrices: f16, or i8 with a scale per row (about
    /// half the size; needs a runtime with cargo feature int8). Biases stay
    /// f16. Default: f16 from a run folder; a model file as it is.
    #[arg(long, value_enum)]
    weights: Option<Weights>,
    /// Write the model as C source to this file instead of a .clm (a
    /// word-aligned array for firmware built with the C library, capi/; a
    /// model file is embedded as it is, or quantized with --weights i8).
    #[arg(long, value_name = "FILE.c", conflicts_with = "out")]
    c_source: Option<PathBuf>,
    /// Write the model as PyTorch tensors to this safetensors file instead of a .clm
    /// (`rnn.` an nn.LSTM/nn.GRU, `out.` an nn.Linear, float32), and its vocabulary
    /// beside it (m.safetensors: m.vocab.json): what `charlm import` reads back. A run's
    /// tensors are its f32 parameters as trained; with --weights i8 its i8
    /// model's values (`q * s`), as for an i8 model file.
    #[arg(long, value_name = "FILE.safetensors", conflicts_with_all = ["out", "c_source"])]
    safetensors: Option<PathBuf>,
    /// Name of the C object with --c-source (and of NAME_len; default
    /// charlm_model).
    #[arg(long, value_name = "NAME", requires = "c_source")]
    c_name: Option<String>,
}

impl Args {
    /// The file read: a model file, a checkpoint file, or a run folder's
    /// checkpoint.
    fn input(&self) -> PathBuf {
        match self.run.is_dir() {
            true => self.run.join(charlm_trainer::checkpoint::FILE),
            false => self.run.clone(),
        }
    }

    /// Whether the input is a model file (else a run's checkpoint, in its
    /// folder or copied out of it).
    fn model_file(&self) -> bool {
        self.run.is_file() && !Checkpoint::is_file(&self.run)
    }
}

pub fn run(args: Args) -> Result<(), CliError> {
    charlm_trainer::checkpoint::defer_stops_while_writing();
    let weights = args.weights.map_or(DType::F16, Weights::dtype);
    if let Some(out) = &args.c_source {
        return c_source(&args, out, weights);
    }
    // (clap's `requires` is not checked beside --out or --safetensors,
    // which --c-source conflicts with)
    if args.c_name.is_some() {
        return Err(CliError::invalid(
            "--c-name names the C object of --c-source: give --c-source FILE.c too, or leave --c-name out",
        ));
    }
    if let Some(out) = &args.safetensors {
        return safetensors(&args, out, weights);
    }
    if args.model_file() {
        return quantize(&args, weights);
    }
    let snap = from_checkpoint(&args.run, weights)?;
    let p = &snap.progress;
    let suffix = if weights == DType::I8 { "-i8" } else { "" };
    let out = args.out.clone().unwrap_or_else(|| {
        let name = format!("model-step{}{suffix}.clm", p.steps);
        match args.run.is_dir() {
            true => args.run.join(name),
            false => args.run.with_file_name(name),
        }
    });
    super::not_an_input(&out, &[&args.input()])?;
    write_new(&out, &snap.bytes, args.force)?;
    let a = snap.arch;
    let bpc = |x: Option<f32>| x.map_or_else(|| "-".to_string(), |v| format!("{v:.3}"));
    let stage = if p.done {
        "the finished run".to_string()
    } else {
        // `epoch` counts finished epochs; `batch` is the next one's position.
        format!(
            "epoch {} of {}",
            (p.epoch + 1).min(snap.epochs),
            snap.epochs
        )
    };
    // A checkpoint between evaluations has no held-out score for its
    // weights (nor has a run without held-out data).
    let held_out = match p.val_bpc {
        Some(v) => format!("held-out {v:.3} bpc (f32)"),
        None => format!("held-out not scored at step {}", p.steps),
    };
    outln!(
        "wrote {} ({} bytes, {weights} weights): {} {}x{}, step {} ({stage}), train {} bpc, {held_out}",
        out.display(),
        snap.bytes.len(),
        a.cell.name().to_uppercase(),
        a.layers,
        a.hidden,
        p.steps,
        bpc(p.train_bpc),
    );
    hint(&out);
    Ok(())
}

/// `charlm export MODEL.clm --weights i8`.
fn quantize(args: &Args, weights: DType) -> Result<(), CliError> {
    let path = &args.run;
    let (_, bytes) = super::read_model(path.to_path_buf())?;
    if weights != DType::I8 {
        // What the file is decides the advice (an i8 model is not made f16).
        let is_i8 = charlm_runtime::format::ModelFile::decode(&bytes)
            .is_ok_and(|f| f.body.weights() == DType::I8);
        return Err(CliError::invalid(if is_i8 && args.weights.is_none() {
            format!(
                "{} is an i8 model already: give --c-source FILE.c or --safetensors FILE to convert it (f16 weights come from its run folder's checkpoint: charlm export RUN)",
                path.display()
            )
        } else if is_i8 {
            format!(
                "{} is an i8 model: an i8 model cannot become f16 again (f16 weights come from its run folder's checkpoint: charlm export RUN)",
                path.display()
            )
        } else {
            format!(
                "{} is a model file: give --weights i8 to quantize it, or --c-source FILE.c or --safetensors FILE to convert it (f16 comes from a run folder's checkpoint)",
                path.display()
            )
        }));
    }
    let quantized = quantized(path, &bytes)?;
    let out = args.out.clone().unwrap_or_else(|| {
        let stem = path.file_stem().unwrap_or_default().to_string_lossy();
        path.with_file_name(format!("{stem}-i8.clm"))
    });
    super::not_an_input(&out, &[&args.input()])?;
    write_new(&out, &quantized, args.force)?;
    outln!(
        "wrote {} ({} bytes, i8 weights; {} had {} bytes)",
        out.display(),
        quantized.len(),
        path.display(),
        bytes.len()
    );
    hint(&out);
    Ok(())
}

/// `charlm export (RUN | MODEL.clm) --c-source FILE.c`.
fn c_source(args: &Args, out: &Path, weights: DType) -> Result<(), CliError> {
    let (bytes, what) = model_bytes(args, weights)?;
    let name = args.c_name.as_deref().unwrap_or("charlm_model");
    let text = charlm_trainer::export::c_source(&bytes, &what, name)?;
    super::not_an_input(out, &[&args.input()])?;
    write_new(out, text.as_bytes(), args.force)?;
    outln!(
        "wrote {} ({} bytes of model as `{}` and `{}_len`, for capi/include/charlm.h)",
        out.display(),
        bytes.len(),
        name,
        name
    );
    Ok(())
}

/// `charlm export (RUN | MODEL.clm) --safetensors FILE`: a model file's
/// values (i8 as `q * s`; `--weights i8` quantizes an f16 file first), or
/// a run's f32 parameters as its checkpoint holds them (unrounded).
fn safetensors(args: &Args, out: &Path, weights: DType) -> Result<(), CliError> {
    // A model file's values (an i8 one's as `q * s`), or a run's f32
    // parameters as trained; `--weights i8` of a run: its i8 model's.
    let (layout, params, vocab, what) = if args.model_file() || weights == DType::I8 {
        let (bytes, what) = model_bytes(args, weights)?;
        let (layout, params, vocab) = charlm_trainer::export::parameters(&bytes)?;
        (layout, params, vocab, what)
    } else {
        let (ck, layout, vocab) = charlm_trainer::export::checkpoint(&args.run)?;
        let what = format!(
            "{}, step {}, f32 as trained",
            args.run.display(),
            ck.progress.steps
        );
        (layout, ck.params, vocab, what)
    };
    let (tensors, vocab) = charlm_trainer::export::safetensors(&layout, &params, &vocab)?;
    let vocab_path = out.with_extension("vocab.json");
    // Both files or neither: refuse before writing the first, and stage
    // both before either replaces what is there.
    super::not_an_input(out, &[&args.input()])?;
    super::not_an_input(&vocab_path, &[&args.input()])?;
    refuse_existing(&[out, &vocab_path], args.force)?;
    write_pair([(out, &tensors), (&vocab_path, vocab.as_bytes())])?;
    outln!(
        "wrote {} (PyTorch tensors of {what}: rnn. an nn.{}, out. an nn.Linear, float32) and {}",
        out.display(),
        layout.arch.cell.name().to_uppercase(),
        vocab_path.display()
    );
    Ok(())
}

/// The f16 model file `bytes` (read from `path`) quantized to i8, or one
/// line naming the file.
fn quantized(path: &Path, bytes: &[u8]) -> Result<Vec<u8>, CliError> {
    quantize_file(bytes)
        .map_err(|e| CliError::invalid(format!("{}: {}", path.display(), e.to_string().trim())))
}

/// The model file of a run folder (its checkpoint) or a model file, as
/// `--weights` asks, and how to name it.
fn model_bytes(args: &Args, weights: DType) -> Result<(Vec<u8>, String), CliError> {
    let path = &args.run;
    if args.model_file() {
        let (_, bytes) = super::read_model(path.to_path_buf())?;
        let stored = charlm_runtime::Model::from_bytes(&bytes).map(|m| m.weights());
        if args.weights == Some(Weights::F16) && stored == Ok(DType::I8) {
            return Err(CliError::invalid(format!(
                "{}: an i8 model cannot become f16 again (export the run folder it came from with --weights f16, or leave --weights out)",
                path.display()
            )));
        }
        return Ok(match weights {
            DType::I8 => (
                quantized(path, &bytes)?,
                format!("{}, quantized to i8", path.display()),
            ),
            DType::F16 => (bytes, path.display().to_string()),
        });
    }
    let snap = from_checkpoint(path, weights)?;
    Ok((
        snap.bytes,
        format!(
            "{}, step {}, {weights} weights",
            path.display(),
            snap.progress.steps
        ),
    ))
}

/// Writes `bytes` to `out` atomically, refusing to replace a file without `force`.
pub(super) fn write_new(out: &Path, bytes: &[u8], force: bool) -> Result<(), CliError> {
    refuse_existing(&[out], force)?;
    write_atomic(out, bytes)
}

/// One line naming the first of `paths` that exists, unless `force`; a
/// path that is a folder (or anything but a file), or a run's checkpoint
/// (the run could not resume), even then.
fn refuse_existing(paths: &[&Path], force: bool) -> Result<(), CliError> {
    if let Some(p) = paths.iter().find(|p| p.exists() && !p.is_file()) {
        return Err(CliError::invalid(format!(
            "{} exists and is not a file",
            p.display()
        )));
    }
    if let Some(p) = paths.iter().find(|p| Checkpoint::is_file(p)) {
        return Err(CliError::invalid(format!(
            "{} is a training checkpoint, which --force does not replace (its run could not resume); choose another --out",
            p.display()
        )));
    }
    // (a symbolic link counts, even one whose target is gone: replacing it
    // would be replacing something the user made)
    match paths
        .iter()
        .find(|p| !force && p.symlink_metadata().is_ok())
    {
        Some(p) => Err(CliError::invalid(format!(
            "{} exists (--force replaces it)",
            p.display()
        ))),
        None => Ok(()),
    }
}

/// Writes two files as one: each is written in full beside its place
/// first (durably, [`Staged`]), and only then are both renamed into place,
/// so that a failure while writing (a full disk) leaves the old files as
/// they were and no new one; a second rename that fails after the first
/// puts the first file back ([`Staged::commit_pair`]).
fn write_pair(files: [(&Path, &[u8]); 2]) -> Result<(), CliError> {
    let [a, b] = files;
    let (a, b) = (Staged::write(a.0, a.1)?, Staged::write(b.0, b.1)?);
    Staged::commit_pair(a, b)
}

/// The next command to try on a model just written.
pub(super) fn hint(out: &Path) {
    outln!(
        "try: charlm generate --model {} --temperature 0.8",
        out.display()
    );
}
