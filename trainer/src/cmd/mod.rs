//! One module per subcommand: its arguments and what it does.
//!
//! The argument structs' doc comments are the command-line help that clap
//! prints, so they spell `<eos>`, `<N>` and `<UTC time>` as a user reads them,
//! not as rustdoc's HTML.
#![allow(rustdoc::invalid_html_tags)]

pub mod bench;
pub mod eval;
pub mod export;
pub mod generate;
pub mod import;
pub mod info;
pub mod train;

use std::path::{Path, PathBuf};

use charlm_runtime::format::DType;
use charlm_trainer::error::{CliError, MAX_MODEL_FILE, read_file_at_most};

/// `--weights` of `train` and `export`: the type of a model file's weight
/// matrices.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Weights {
    /// IEEE half precision (the default).
    F16,
    /// Signed bytes with one f16 scale per row (format version 3).
    I8,
}

impl Weights {
    /// The format's type.
    pub fn dtype(self) -> DType {
        match self {
            Weights::F16 => DType::F16,
            Weights::I8 => DType::I8,
        }
    }
}

pub use charlm_trainer::error::finite;

/// A size flag's value parser: a whole number from 1 to `max`, whatever
/// the type could hold (`--hidden 70000` is out of charlm's range, not of
/// u16's).
pub fn one_to<T>(max: T) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static
where
    T: std::str::FromStr + PartialOrd + From<u8> + std::fmt::Display + Copy + Send + Sync + 'static,
{
    between(T::from(1), max)
}

/// A whole number from `min` to `max`.
pub fn between<T>(
    min: T,
    max: T,
) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy + Send + Sync + 'static,
{
    move |s: &str| match s.parse::<i128>() {
        Ok(_) => s
            .parse::<T>()
            .ok()
            .filter(|t| *t >= min && *t <= max)
            .ok_or_else(|| format!("must be {min} to {max}")),
        Err(_) => Err(format!("must be a whole number, {min} to {max}")),
    }
}

/// A count or seed flag's value parser where the command checks the range
/// itself, if it has one: the reason in the user's words (Rust's parser
/// says "invalid digit found in string" of `8.5` and of `-1`).
pub fn whole<T: std::str::FromStr>(s: &str) -> Result<T, String> {
    s.parse::<T>().map_err(|_| {
        match s.parse::<i128>() {
            Ok(_) if s.starts_with('-') => "must not be negative",
            Ok(_) => "is too large",
            Err(_) => "must be a whole number",
        }
        .to_string()
    })
}

/// Refuses an output file that is one of the command's inputs (even with
/// `--force`, which is for replacing an earlier output): `import s.clm`
/// would write `s.clm` over its own weights.
pub fn not_an_input(out: &Path, inputs: &[&Path]) -> Result<(), CliError> {
    let Ok(target) = std::fs::canonicalize(out) else {
        return Ok(()); // no file there yet
    };
    match inputs
        .iter()
        .find(|i| std::fs::canonicalize(i).is_ok_and(|i| i == target))
    {
        Some(i) => Err(CliError::invalid(format!(
            "{}: the output would replace the input {} itself; choose another --out",
            out.display(),
            i.display()
        ))),
        None => Ok(()),
    }
}

/// The model file a command was given, and its bytes: a run folder stands
/// for its `model.clm`. A folder without one is one line (naming `charlm
/// export` when the folder holds a checkpoint of an unfinished run), and so
/// is a training checkpoint given as a model. The file is read once, so a
/// model can come through a pipe (`<(cat m.clm)`, `/dev/stdin`).
pub fn read_model(path: PathBuf) -> Result<(PathBuf, Vec<u8>), CliError> {
    let path = model_path(path)?;
    // A file that does not begin as a model is judged by its first bytes
    // (the decoder names what is wrong), however long it is.
    let head = |b: &[u8]| {
        if charlm_trainer::checkpoint::looks_like_checkpoint(b) {
            return Err(checkpoint_given(&path));
        }
        Ok(b.starts_with(&charlm_runtime::format::MAGIC))
    };
    let bytes = read_file_at_most(&path, MAX_MODEL_FILE, "a model file", Some(&head))?;
    Ok((path, bytes))
}

/// A run folder's `model.clm`, or `path` itself when it is no folder.
fn model_path(path: PathBuf) -> Result<PathBuf, CliError> {
    if !path.is_dir() {
        return Ok(path);
    }
    let file = path.join("model.clm");
    if file.is_file() {
        return Ok(file);
    }
    let hint = if path.join(charlm_trainer::checkpoint::FILE).is_file() {
        format!(
            " (its run has not finished: `charlm export {}` writes a model from its checkpoint)",
            path.display()
        )
    } else {
        String::new()
    };
    Err(CliError::invalid(format!(
        "{} is a folder without model.clm{hint}",
        path.display()
    )))
}

/// The error for a training checkpoint given as a model.
fn checkpoint_given(path: &Path) -> CliError {
    // Its run folder where it has its own name there, else the file.
    let run = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let from = match path.file_name() == Some(charlm_trainer::checkpoint::FILE.as_ref()) {
        true => run,
        false => path,
    };
    CliError::invalid(format!(
        "{} is a training checkpoint, not a model: `charlm export {}` writes a model from it",
        path.display(),
        from.display()
    ))
}

/// The worker threads that `train` and the benchmarks run on: `threads`
/// of them (1 to 1024), or one per core. The command itself then runs on
/// one of them ([`rayon::ThreadPool::install`]), so the CPU backend's
/// parallel loops start on a worker instead of being handed to the pool
/// from outside and waited for, a wake-up and a sleep between two threads
/// at each of the dozens of loops in every training step.
pub fn pool(threads: Option<usize>) -> Result<rayon::ThreadPool, CliError> {
    if let Some(n) = threads
        && !(1..=1024).contains(&n)
    {
        return Err(CliError::invalid(format!(
            "--threads {n}: must be 1 to 1024"
        )));
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads.unwrap_or(0))
        // as much stack as the main thread has
        .stack_size(8 << 20)
        .thread_name(|i| format!("charlm-worker-{i}"))
        .build()
        .map_err(|e| CliError::invalid(format!("cannot start the worker threads: {e}")))
}
