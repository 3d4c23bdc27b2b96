//! Resumable checkpoints, written atomically, and the atomic file write that
//! every output of a run goes through.
//!
//! A checkpoint file is `b"CHLMCKPT"`, postcard of [`Checkpoint`], then
//! what later versions added, each appended after what came before:
//! version 2 the run's weight type (`config.weights`; version 1's runs write
//! f16), version 3 `config.patience` and `progress.best` (absent before:
//! no early stop, no best model yet), version 4 `config.eval_every`
//! (absent before: held-out scores at epoch ends only), version 5
//! `progress.interval` (absent before: the metrics row after a resumed
//! checkpoint counted only the steps after it), version 6 `val_crc` (absent
//! before: a changed `--val` file went unnoticed), version 7 `samples`, the
//! run's `--prompt` and `--sample-chars` (absent before: a resume without
//! them went back to the defaults); then the CRC-32 of
//! everything before it. Appending keeps older files readable without a second copy of the
//! structs. It holds everything a run needs to
//! continue as if it had never stopped: configuration, vocabulary,
//! parameters, optimizer state, position in the data, the recurrent state
//! carried between windows, running loss sums and the metrics so far.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering::SeqCst};

use serde::{Deserialize, Serialize};

use charlm_runtime::format::DType;

use crate::error::CliError;
use crate::metrics::Row;
use crate::optim::Optimizer;
use crate::train::Config;

const MAGIC: &[u8; 8] = b"CHLMCKPT";

/// Whether `bytes` begin as a checkpoint file does (to tell a user who
/// gives one where a model belongs what it is).
pub fn looks_like_checkpoint(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}
/// Why a checkpoint with a valid checksum is refused when its content does
/// not decode (in the file's terms, not the decoder's).
const UNDECODABLE: &str = "its content does not decode (a layout this charlm does not know)";

/// Version of the checkpoint layout (1: no weight type, f16; 2: no
/// patience, no best model; 3: no evaluations between epoch ends; 4: no
/// sums of the metrics row in progress; 5: no checksum of the `--val` file).
pub const VERSION: u32 = 7;
/// File name inside a run folder.
pub const FILE: &str = "checkpoint.bin";

/// Where training stands.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Current epoch (0-based); equals the configured epochs when done.
    pub epoch: u64,
    /// Next batch within the epoch.
    pub batch: u64,
    /// Optimizer steps taken.
    pub steps: u64,
    /// Loss sum and count of the current epoch.
    pub epoch_nats: f64,
    /// Positions in `epoch_nats`.
    pub epoch_count: u64,
    /// Training bits per character of the last finished epoch.
    pub train_bpc: Option<f32>,
    /// Held-out bits per character after the last finished epoch (f32).
    pub val_bpc: Option<f32>,
    /// Seconds spent training (all sessions).
    pub seconds: f64,
    /// Characters trained on (all sessions).
    pub chars: u64,
    /// Training finished (final export done).
    pub done: bool,
    /// The lowest held-out score so far, whose model is `best.clm`
    /// (stored after the struct: version 3, see the module docs).
    #[serde(skip)]
    pub best: Option<Best>,
    /// The sums of the metrics row in progress (stored after the struct:
    /// version 5), so that a resumed run writes the rows an uninterrupted
    /// one would.
    #[serde(skip)]
    pub interval: Interval,
}

impl Progress {
    /// Training bits per character of the epoch so far (what a run that
    /// ends here records).
    pub fn epoch_bpc(&self) -> f32 {
        (self.epoch_nats / self.epoch_count.max(1) as f64 / std::f64::consts::LN_2) as f32
    }
}

/// Loss, positions and seconds of the steps since the last metrics row.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// Loss summed over the positions (nats).
    pub nats: f64,
    /// Positions in `nats`.
    pub count: u64,
    /// Seconds those steps took.
    pub seconds: f64,
}

/// The held-out evaluation with the lowest score so far.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Best {
    /// Optimizer steps taken when it was scored.
    pub steps: u64,
    /// Epochs trained then (only whole epochs are compared).
    pub epoch: u64,
    /// Held-out bits per character (f32 weights on the backend).
    pub val_bpc: f32,
    /// Held-out evaluations since then, none of them lower.
    pub since: u64,
}

/// A run's `--prompt` and `--sample-chars` (`None`: not given, the
/// defaults for its corpus).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SampleSettings {
    /// The prompts.
    pub prompts: Option<Vec<String>>,
    /// Characters per sample.
    pub chars: Option<usize>,
}

/// Everything needed to resume a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Layout version.
    pub version: u32,
    /// The run's configuration.
    pub config: Config,
    /// CRC-32 of the corpus file (to refuse a different corpus on resume).
    pub corpus_crc: u32,
    /// CRC-32 of the `--val` file, if the run has one (stored after the
    /// struct: version 6).
    #[serde(skip)]
    pub val_crc: Option<u32>,
    /// The samples the run shows and saves, as its command asked (stored
    /// after the struct: version 7).
    #[serde(skip)]
    pub samples: SampleSettings,
    /// Symbols of ids `1..eos`.
    pub vocab: String,
    /// Parameters (see [`crate::params::Layout`]).
    pub params: Vec<f32>,
    /// Optimizer and its moments.
    pub optimizer: Optimizer,
    /// Position.
    pub progress: Progress,
    /// Rows and `[layer][h | c]` state carried between windows of running text.
    pub carry: (usize, Vec<Vec<f32>>),
    /// Metrics rows so far.
    pub metrics: Vec<Row>,
}

/// Why a folder that holds nothing but a run's lock (and what a cut save
/// left) has no checkpoint: its run is still starting, or ended before its
/// first save (a second Ctrl-C during it, a kill). Empty for any other
/// folder.
fn before_first_checkpoint(dir: &Path) -> &'static str {
    let lock = crate::train::LOCK_FILE;
    let temporary = format!(".{FILE}.tmp");
    let only_a_start = std::fs::read_dir(dir).is_ok_and(|entries| {
        let mut names = entries.map(|e| e.map(|e| e.file_name()));
        names.all(|n| n.is_ok_and(|n| n == lock || n.to_string_lossy().starts_with(&temporary)))
    });
    if !only_a_start || !dir.join(lock).is_file() {
        return "";
    }
    let free = std::fs::File::open(dir.join(lock)).is_ok_and(|f| f.try_lock_shared().is_ok());
    match free {
        true => "; the run there ended before its first checkpoint: start it again with --out",
        false => "; the run there has not written its first checkpoint yet",
    }
}

impl Checkpoint {
    /// Encodes with magic and checksum.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend(postcard::to_stdvec(self).expect("checkpoint encodes"));
        let tail = (
            self.config.weights,
            self.config.patience,
            &self.progress.best,
            self.config.eval_every,
            self.progress.interval,
            self.val_crc,
            &self.samples,
        );
        out.extend(postcard::to_stdvec(&tail).expect("the appended fields encode"));
        let crc = charlm_runtime::format::crc32(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes and checks a checkpoint file's bytes.
    pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<Self, CliError> {
        let bad = |why: &str| {
            CliError::invalid(format!(
                "{}: not a usable checkpoint: {why}",
                path.display()
            ))
        };
        if !bytes.starts_with(&MAGIC[..bytes.len().min(MAGIC.len())]) {
            return Err(bad("wrong magic"));
        }
        if bytes.len() < MAGIC.len() + 4 {
            return Err(bad(&format!(
                "{} bytes, too short to hold one (cut short?)",
                bytes.len()
            )));
        }
        let (content, crc) = bytes.split_at(bytes.len() - 4);
        if charlm_runtime::format::crc32(content)
            != u32::from_le_bytes(crc.try_into().expect("4 bytes"))
        {
            return Err(bad("checksum mismatch (damaged file)"));
        }
        let (mut ck, rest): (Checkpoint, _) =
            postcard::take_from_bytes(&content[MAGIC.len()..]).map_err(|_| bad(UNDECODABLE))?;
        if !(1..=VERSION).contains(&ck.version) {
            return Err(bad(&format!(
                "version {} (this charlm reads 1 to {VERSION})",
                ck.version
            )));
        }
        let damaged = |_: postcard::Error| bad(UNDECODABLE);
        let (weights, rest) = match ck.version {
            1 => (DType::F16, rest),
            _ => postcard::take_from_bytes(rest).map_err(damaged)?,
        };
        let ((patience, best), rest) = match ck.version {
            1 | 2 => ((None, None), rest),
            _ => postcard::take_from_bytes(rest).map_err(damaged)?,
        };
        let (eval_every, rest) = match ck.version {
            1..=3 => (None, rest),
            _ => postcard::take_from_bytes(rest).map_err(damaged)?,
        };
        let (interval, rest) = match ck.version {
            1..=4 => (Interval::default(), rest),
            _ => postcard::take_from_bytes(rest).map_err(damaged)?,
        };
        let (val_crc, rest) = match ck.version {
            1..=5 => (None, rest),
            _ => postcard::take_from_bytes(rest).map_err(damaged)?,
        };
        let (samples, rest) = match ck.version {
            1..=6 => (SampleSettings::default(), rest),
            _ => postcard::take_from_bytes(rest).map_err(damaged)?,
        };
        if !rest.is_empty() {
            return Err(bad("bytes after the end"));
        }
        (ck.config.weights, ck.config.patience, ck.progress.best) = (weights, patience, best);
        ck.config.eval_every = eval_every;
        ck.progress.interval = interval;
        ck.val_crc = val_crc;
        ck.samples = samples;
        // A checkpoint is only written from finite values; anything else is damage.
        let finite = |v: &[f32]| v.iter().all(|x| x.is_finite());
        if !finite(&ck.params)
            || !finite(&ck.optimizer.m)
            || !finite(&ck.optimizer.v)
            || !ck.carry.1.iter().all(|s| finite(s))
        {
            return Err(bad("it holds non-finite values (inf or NaN)"));
        }
        Ok(ck)
    }

    /// Checks that the parameters and optimizer state hold what `layout`
    /// (the checkpoint's own architecture) needs.
    pub fn fits(&self, layout: &crate::params::Layout) -> Result<(), CliError> {
        if self.params.len() != layout.len || self.optimizer.v.len() != layout.len {
            return Err(CliError::invalid(
                "the checkpoint's parameters do not match its architecture",
            ));
        }
        Ok(())
    }

    /// Reads `dir/checkpoint.bin`.
    pub fn load(dir: &Path) -> Result<Self, CliError> {
        // A folder that is not there is named itself (not its checkpoint).
        if let Err(source) = std::fs::metadata(dir) {
            return Err(CliError::Read {
                path: dir.to_path_buf(),
                source,
            });
        }
        if dir.is_file() {
            return Err(CliError::invalid(format!(
                "{}: a file, where a run folder (one holding {FILE}) belongs",
                dir.display()
            )));
        }
        if dir.is_dir() && !dir.join(FILE).exists() {
            return Err(CliError::invalid(format!(
                "{}: not a run folder (it holds no {FILE}){}",
                dir.display(),
                before_first_checkpoint(dir)
            )));
        }
        let path = dir.join(FILE);
        let bytes = std::fs::read(&path).map_err(|source| CliError::Read {
            path: path.clone(),
            source,
        })?;
        Self::from_bytes(&path, &bytes)
    }

    /// A checkpoint file under any name (one copied out of its run folder),
    /// or a run folder's: what `charlm export` reads.
    pub fn load_any(path: &Path) -> Result<Self, CliError> {
        if !path.is_file() {
            return Self::load(path);
        }
        let bytes = std::fs::read(path).map_err(|source| CliError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(path, &bytes)
    }

    /// Whether `path` is a file that begins as a checkpoint.
    pub fn is_file(path: &Path) -> bool {
        use std::io::Read;
        let mut head = [0u8; MAGIC.len()];
        path.is_file()
            && std::fs::File::open(path).is_ok_and(|mut f| f.read_exact(&mut head).is_ok())
            && looks_like_checkpoint(&head)
    }

    /// Writes `dir/checkpoint.bin` atomically.
    pub fn save(&self, dir: &Path) -> Result<(), CliError> {
        write_atomic(&dir.join(FILE), &self.to_bytes())
    }
}

/// Writes `bytes` to a temporary file beside `path`, syncs it, and renames
/// it over `path`: readers see the old file or the new one, never half of one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    let staged = Staged::write(path, bytes)?;
    staged.commit()
}

/// How many [`Hold`]s this process has now: staged files not yet in place
/// or removed, and pairs being committed.
static HELD: AtomicUsize = AtomicUsize::new(0);
/// A stop signal that came while something was held (0: none).
static DEFERRED: AtomicI32 = AtomicI32::new(0);

/// For the commands that write files but do not train (`export`, `import`;
/// a training run stops at a step's end instead): a stop signal (Ctrl-C,
/// SIGTERM, SIGHUP) that comes while a file is staged or a pair is being
/// committed waits until that is done, so that no hidden temporary file is
/// left beside the output and a pair never mixes an old file with a new
/// one; it then ends the process as it would have at once. At any other
/// time it ends the process at once, as by default. A signal ignored now
/// (`nohup`) stays ignored.
pub fn defer_stops_while_writing() {
    #[cfg(unix)]
    for sig in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        if crate::train::ignored(sig) {
            continue;
        }
        // SAFETY: the action uses atomics and emulate_default_handler
        // (sigaction, sigprocmask and raise), all async-signal-safe.
        let _ = unsafe {
            signal_hook::low_level::register(sig, move || {
                // Kept first, then HELD read: of this and Hold's drop (which
                // lowers HELD, then reads DEFERRED) at least one sees the
                // other's write and ends the process.
                DEFERRED.store(sig, SeqCst);
                if HELD.load(SeqCst) == 0 {
                    let _ = signal_hook::low_level::emulate_default_handler(sig);
                }
            })
        };
    }
}

/// While one is alive, a stop signal waits (see
/// [`defer_stops_while_writing`]); when the last is dropped, a signal that
/// came meanwhile takes effect.
struct Hold;

impl Hold {
    fn new() -> Hold {
        HELD.fetch_add(1, SeqCst);
        Hold
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        if HELD.fetch_sub(1, SeqCst) == 1 {
            let sig = DEFERRED.load(SeqCst);
            #[cfg(unix)]
            if sig != 0 {
                let _ = signal_hook::low_level::emulate_default_handler(sig);
            }
            #[cfg(not(unix))]
            let _ = sig;
        }
    }
}

/// Removes from `dir` what writers of the files `of` accepts left when
/// they were killed (SIGKILL, a power cut) before they could clean up: a
/// [`Staged`] temporary (`.NAME.tmpPID`) or the link a pair's commit keeps
/// (`.NAME.oldPID`), of a process that is gone. Files of a live process,
/// this one included, stay: they may be in use.
pub fn remove_leftovers(dir: &Path, of: impl Fn(&str) -> bool) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix('.')) else {
            continue;
        };
        let gone = |(file, pid): (&str, &str)| {
            of(file) && pid.parse::<u32>().is_ok_and(|pid| !process_alive(pid))
        };
        if [".tmp", ".old"]
            .iter()
            .any(|mark| rest.rsplit_once(mark).is_some_and(gone))
        {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// The folder a file is in (`.` for a bare name).
fn folder_of(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Syncs the folder that holds `path`, so that a file renamed into it
/// stays there after a crash. Where that cannot be done at all (a platform
/// that cannot open a folder, a file system that cannot sync one) there is
/// nothing more to do; any other failure (an I/O error) is one: the file is
/// in place but may not outlive a crash.
pub fn sync_folder(path: &Path) -> std::io::Result<()> {
    let Ok(folder) = File::open(folder_of(path)) else {
        return Ok(());
    };
    match folder.sync_all() {
        Err(e) if cannot_sync_folders(&e) => Ok(()),
        result => {
            result.map_err(|e| std::io::Error::new(e.kind(), format!("syncing its folder: {e}")))
        }
    }
}

/// Whether `e`, from syncing a folder, says the file system cannot do that
/// (rather than that it failed to).
fn cannot_sync_folders(e: &std::io::Error) -> bool {
    #[cfg(unix)]
    if let Some(code) = e.raw_os_error() {
        return [libc::EINVAL, libc::ENOTSUP, libc::EOPNOTSUPP, libc::EBADF].contains(&code);
    }
    e.kind() == std::io::ErrorKind::Unsupported
}

/// Whether a process `pid` exists.
#[cfg(unix)]
fn process_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    // SAFETY: kill with signal 0 sends nothing; it only checks the pid.
    unsafe {
        libc::kill(pid, 0) == 0
            || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }
}

#[cfg(not(unix))]
fn process_alive(_: u32) -> bool {
    true
}

/// A file's new contents written in full and synced beside it (a hidden
/// temporary file in the same folder), not yet in its place: [`commit`]
/// renames it there; dropped uncommitted, it is removed.
///
/// [`commit`]: Staged::commit
pub struct Staged {
    path: PathBuf,
    tmp: PathBuf,
    /// Declared last: dropped after the temporary file is removed.
    _hold: Hold,
}

impl Staged {
    /// Writes and syncs `bytes` beside `path`.
    pub fn write(path: &Path, bytes: &[u8]) -> Result<Staged, CliError> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let staged = Staged {
            path: path.to_owned(),
            tmp: path.with_file_name(format!(".{name}.tmp{}", std::process::id())),
            _hold: Hold::new(),
        };
        remove_leftovers(folder_of(path), |file| file == name);
        let result = (|| {
            let mut f = File::create(&staged.tmp)?;
            f.write_all(bytes)?;
            f.sync_all()
        })();
        // On failure `staged` is dropped, which removes what was written.
        result.map_err(|source| staged.error(source))?;
        Ok(staged)
    }

    /// Renames the file into its place and makes the rename durable.
    pub fn commit(mut self) -> Result<(), CliError> {
        self.rename()?;
        sync_folder(&self.path).map_err(|source| self.error(source))
    }

    /// Renames the file into its place (not yet durable: [`sync_folder`]).
    fn rename(&mut self) -> Result<(), CliError> {
        std::fs::rename(&self.tmp, &self.path).map_err(|source| self.error(source))?;
        // Renamed: nothing left for `drop` to remove.
        self.tmp = PathBuf::new();
        Ok(())
    }

    /// Commits two staged files that belong together (a model and its
    /// vocabulary): both in place, or, if the second cannot be renamed into
    /// its place after the first was, the first put back as it was (the old
    /// file restored from a hard link kept until then, or the new one
    /// removed where there was none), so that a pair never mixes an old
    /// file with a new one.
    pub fn commit_pair(mut first: Staged, mut second: Staged) -> Result<(), CliError> {
        // Until the pair is whole again, old or new, and the link is gone.
        let _hold = Hold::new();
        let path = first.path.clone();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let keep = path.with_file_name(format!(".{name}.old{}", std::process::id()));
        let _ = std::fs::remove_file(&keep);
        let kept = match std::fs::hard_link(&path, &keep) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            // A file system without hard links: a copy does as well.
            Err(_) => {
                if let Err(source) = std::fs::copy(&path, &keep) {
                    let _ = std::fs::remove_file(&keep);
                    return Err(first.error(source));
                }
                true
            }
        };
        let result = first.rename().and_then(|()| {
            second.rename().inspect_err(|_| {
                let _ = if kept {
                    std::fs::rename(&keep, &path)
                } else {
                    std::fs::remove_file(&path)
                };
            })
        });
        let _ = std::fs::remove_file(&keep);
        result?;
        // Both in place: now make that durable.
        sync_folder(&first.path).map_err(|source| first.error(source))?;
        if folder_of(&second.path) != folder_of(&first.path) {
            sync_folder(&second.path).map_err(|source| second.error(source))?;
        }
        Ok(())
    }

    fn error(&self, source: std::io::Error) -> CliError {
        CliError::Write {
            path: self.path.clone(),
            source,
        }
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corpus::{Layout, Spec};
    use crate::optim::{Kind, Optimizer};
    use charlm_runtime::format::CellKind;

    #[test]
    fn a_folder_with_only_a_lock_tells_whether_its_run_goes_on() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        assert_eq!(before_first_checkpoint(dir), "");
        let lock = dir.join(crate::train::LOCK_FILE);
        std::fs::write(&lock, b"").unwrap();
        std::fs::write(dir.join(format!(".{FILE}.tmp123")), b"").unwrap();
        assert!(before_first_checkpoint(dir).contains("ended before its first checkpoint"));
        let held = std::fs::File::open(&lock).unwrap();
        held.lock().unwrap();
        assert!(before_first_checkpoint(dir).contains("has not written its first checkpoint yet"));
        held.unlock().unwrap();
        // Anything else there (a finished run whose checkpoint is gone):
        // no guess.
        std::fs::write(dir.join("best.clm"), b"").unwrap();
        assert_eq!(before_first_checkpoint(dir), "");
    }

    fn checkpoint(weights: DType) -> Checkpoint {
        Checkpoint {
            version: VERSION,
            config: Config {
                corpus: Spec {
                    path: None,
                    field: None,
                    layout: Layout::Running,
                },
                val: None,
                val_frac: 0.05,
                cell: CellKind::Gru,
                layers: 1,
                hidden: 2,
                dropout: 0.0,
                batch: 1,
                seq_len: 4,
                epochs: 1,
                max_steps: None,
                optimizer: Kind::Adam,
                lr: 3e-3,
                lr_decay: 0.9,
                clip: 5.0,
                seed: 7,
                weights,
                patience: None,
                eval_every: None,
            },
            corpus_crc: 0x1234_5678,
            val_crc: None,
            samples: SampleSettings::default(),
            vocab: "ab".into(),
            params: vec![0.5, -0.25, 1.0],
            optimizer: Optimizer::new(Kind::Adam, 3),
            progress: Progress::default(),
            carry: (1, vec![vec![0.0, 1.0]]),
            metrics: Vec::new(),
        }
    }

    fn read(bytes: &[u8]) -> Result<Checkpoint, CliError> {
        Checkpoint::from_bytes(Path::new("checkpoint.bin"), bytes)
    }

    /// `content` with its CRC appended.
    fn sealed(mut content: Vec<u8>) -> Vec<u8> {
        let crc = charlm_runtime::format::crc32(&content);
        content.extend_from_slice(&crc.to_le_bytes());
        content
    }

    /// The names in `dir`, sorted.
    fn names_in(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_staged_file_is_in_place_only_once_committed_and_gone_if_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a.bin"), tmp.path().join("b.bin"));
        std::fs::write(&a, b"old").unwrap();
        let names = || names_in(tmp.path());
        // Staged, not committed: the old file stays, and dropping the
        // staged one leaves no trace.
        let staged = Staged::write(&a, b"new").unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), b"old");
        assert_eq!(names().len(), 2);
        drop(staged);
        assert_eq!(names(), ["a.bin"]);
        // A second file that cannot be written: the first is not
        // committed either (export's pair).
        let first = Staged::write(&a, b"new").unwrap();
        assert!(Staged::write(&tmp.path().join("missing/b.bin"), b"x").is_err());
        drop(first);
        assert_eq!(names(), ["a.bin"]);
        assert_eq!(std::fs::read(&a).unwrap(), b"old");
        // Committed: in place, and nothing else left.
        Staged::write(&a, b"new").unwrap().commit().unwrap();
        Staged::write(&b, b"bee").unwrap().commit().unwrap();
        assert_eq!(names(), ["a.bin", "b.bin"]);
        assert_eq!(std::fs::read(&a).unwrap(), b"new");
    }

    /// Writing a file removes what a killed writer of the same name left
    /// (its temporary, a pair's kept link), and nothing that may be in use.
    #[cfg(unix)]
    #[test]
    fn writing_a_file_removes_what_a_gone_writer_of_it_left() {
        let tmp = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let gone = child.id();
        child.wait().unwrap();
        let alive = std::os::unix::process::parent_id();
        let own = std::process::id();
        let left = [format!(".a.bin.tmp{gone}"), format!(".a.bin.old{gone}")];
        let kept = [
            format!(".a.bin.tmp{alive}"),
            format!(".a.bin.old{own}"),
            format!(".b.bin.tmp{gone}"),
            format!(".a.bin.tmp{gone}x"),
            ".a.bin.tmp".to_string(),
        ];
        for n in left.iter().chain(&kept) {
            std::fs::write(tmp.path().join(n), b"x").unwrap();
        }
        write_atomic(&tmp.path().join("a.bin"), b"new").unwrap();
        let mut expected: Vec<String> = kept.to_vec();
        expected.push("a.bin".into());
        expected.sort();
        assert_eq!(names_in(tmp.path()), expected);
    }

    /// A pair is replaced whole or not at all, even when the second file
    /// cannot take its place after the first has.
    #[test]
    fn a_pair_whose_second_file_cannot_be_placed_leaves_the_first_as_it_was() {
        let tmp = tempfile::tempdir().unwrap();
        let names = || names_in(tmp.path());
        let (a, b) = (tmp.path().join("a.bin"), tmp.path().join("b"));
        // `b` is a folder with something in it: no file is renamed over it.
        std::fs::create_dir(&b).unwrap();
        std::fs::write(b.join("x"), b"x").unwrap();
        // With an old first file: it is put back.
        std::fs::write(&a, b"old").unwrap();
        let pair = (
            Staged::write(&a, b"new").unwrap(),
            Staged::write(&b, b"bee").unwrap(),
        );
        assert!(Staged::commit_pair(pair.0, pair.1).is_err());
        assert_eq!(names(), ["a.bin", "b"]);
        assert_eq!(std::fs::read(&a).unwrap(), b"old");
        // Without one: the new first file does not stay alone.
        std::fs::remove_file(&a).unwrap();
        let pair = (
            Staged::write(&a, b"new").unwrap(),
            Staged::write(&b, b"bee").unwrap(),
        );
        assert!(Staged::commit_pair(pair.0, pair.1).is_err());
        assert_eq!(names(), ["b"]);
        // Both placeable: both new, nothing else left.
        std::fs::remove_dir_all(&b).unwrap();
        std::fs::write(&a, b"old").unwrap();
        let pair = (
            Staged::write(&a, b"new").unwrap(),
            Staged::write(&b, b"bee").unwrap(),
        );
        Staged::commit_pair(pair.0, pair.1).unwrap();
        assert_eq!(names(), ["a.bin", "b"]);
        assert_eq!(std::fs::read(&a).unwrap(), b"new");
        assert_eq!(std::fs::read(&b).unwrap(), b"bee");
    }

    /// Each kind of damage is named as what it is: another file, a file
    /// cut short (even inside the magic), content that does not decode.
    #[test]
    fn damage_is_named_as_what_it_is() {
        let bytes = checkpoint(DType::F16).to_bytes();
        let why = |b: &[u8]| read(b).unwrap_err().to_string();
        for cut in [0, 3, 8, 10, MAGIC.len() + 3] {
            assert!(
                why(&bytes[..cut]).ends_with("too short to hold one (cut short?)"),
                "{cut}: {}",
                why(&bytes[..cut])
            );
        }
        assert!(why(b"CHLMXXXXwhatever").ends_with("wrong magic"));
        assert!(why(&bytes[..bytes.len() - 1]).contains("checksum mismatch"));
        // A valid checksum over content that is no checkpoint.
        let mut junk = MAGIC.to_vec();
        junk.extend([0xff; 12]);
        let e = why(&sealed(junk));
        assert!(e.ends_with(UNDECODABLE), "{e}");
    }

    #[test]
    fn the_appended_fields_survive_a_round_trip() {
        for weights in [DType::F16, DType::I8] {
            let ck = checkpoint(weights);
            assert_eq!(read(&ck.to_bytes()).unwrap(), ck);
        }
        let ck = with_every_field();
        assert_eq!(read(&ck.to_bytes()).unwrap(), ck);
    }

    /// A checkpoint whose appended fields all differ from their defaults.
    fn with_every_field() -> Checkpoint {
        let mut ck = checkpoint(DType::I8);
        ck.config.patience = Some(4);
        ck.config.eval_every = Some(250);
        ck.progress.best = Some(Best {
            steps: 12,
            epoch: 2,
            val_bpc: 3.25,
            since: 1,
        });
        ck.val_crc = Some(0x9abc_def0);
        ck.samples = SampleSettings {
            prompts: Some(vec!["ROMEO:".into(), "日本".into()]),
            chars: Some(77),
        };
        ck.progress.interval = Interval {
            nats: 12.5,
            count: 40,
            seconds: 0.25,
        };
        ck
    }

    /// A checkpoint file as `version` wrote it: the magic, postcard of the
    /// struct, the fields each version up to it appended, the CRC.
    fn file_of(ck: &Checkpoint, version: u32) -> Vec<u8> {
        let mut ck = ck.clone();
        ck.version = version;
        let mut content = MAGIC.to_vec();
        content.extend(postcard::to_stdvec(&ck).unwrap());
        if version >= 2 {
            content.extend(postcard::to_stdvec(&ck.config.weights).unwrap());
        }
        if version >= 3 {
            let v3 = (ck.config.patience, &ck.progress.best);
            content.extend(postcard::to_stdvec(&v3).unwrap());
        }
        if version >= 4 {
            content.extend(postcard::to_stdvec(&ck.config.eval_every).unwrap());
        }
        if version >= 5 {
            content.extend(postcard::to_stdvec(&ck.progress.interval).unwrap());
        }
        if version >= 6 {
            content.extend(postcard::to_stdvec(&ck.val_crc).unwrap());
        }
        if version >= 7 {
            content.extend(postcard::to_stdvec(&ck.samples).unwrap());
        }
        sealed(content)
    }

    #[test]
    fn every_older_version_is_read_with_what_it_lacked_at_its_default() {
        let ck = with_every_field();
        // The writer appends exactly the layout described above.
        assert_eq!(ck.to_bytes(), file_of(&ck, VERSION));
        for version in 1..=VERSION {
            let mut expected = ck.clone();
            expected.version = version;
            if version < 2 {
                expected.config.weights = DType::F16;
            }
            if version < 3 {
                (expected.config.patience, expected.progress.best) = (None, None);
            }
            if version < 4 {
                expected.config.eval_every = None;
            }
            if version < 5 {
                expected.progress.interval = Interval::default();
            }
            if version < 6 {
                expected.val_crc = None;
            }
            if version < 7 {
                expected.samples = SampleSettings::default();
            }
            assert_eq!(
                read(&file_of(&ck, version)).unwrap(),
                expected,
                "version {version}"
            );
            // A file may not carry a later version's fields ...
            if version < VERSION {
                let mut longer = file_of(&ck, version + 1);
                // (the version number is the struct's first byte)
                longer[MAGIC.len()] = version as u8;
                let longer = sealed(longer[..longer.len() - 4].to_vec());
                let err = read(&longer).unwrap_err().to_string();
                assert!(
                    err.contains("bytes after the end"),
                    "version {version}: {err}"
                );
            }
            // ... and must have its own.
            if version > 1 {
                let mut shorter = file_of(&ck, version - 1);
                shorter[MAGIC.len()] = version as u8;
                let shorter = sealed(shorter[..shorter.len() - 4].to_vec());
                let err = read(&shorter).unwrap_err().to_string();
                assert!(
                    err.contains("not a usable checkpoint"),
                    "version {version}: {err}"
                );
            }
        }
    }

    #[test]
    fn an_unknown_version_is_refused() {
        let mut ck = checkpoint(DType::F16);
        ck.version = VERSION + 1;
        let err = read(&ck.to_bytes()).unwrap_err().to_string();
        assert!(
            err.contains(&format!(
                "version {} (this charlm reads 1 to {VERSION})",
                VERSION + 1
            )),
            "{err}"
        );
    }
}
