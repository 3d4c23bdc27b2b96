//! The one error type the command line reports: one line, exit status 2.

use std::path::PathBuf;

/// Something the user gave us that we cannot work with, or an I/O failure.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A model file the runtime rejects.
    #[error("{path}: {source}")]
    Model {
        path: PathBuf,
        source: charlm_runtime::Error,
    },
    /// Any other invalid input, already phrased for the user.
    #[error("{0}")]
    Invalid(String),
    /// Stopped by this signal (SIGINT for Ctrl-C, SIGTERM, SIGHUP) after
    /// saving its work, which the command has already said: exit status
    /// 128 + the signal's number (130 for Ctrl-C), as for a program that
    /// signal ended, so that `charlm train ... && next` does not go on.
    #[error("interrupted")]
    Interrupted(usize),
}

impl CliError {
    /// Shorthand for [`CliError::Invalid`].
    pub fn invalid(msg: impl Into<String>) -> Self {
        CliError::Invalid(msg.into())
    }
}

/// Reads a whole file, naming it on failure.
pub fn read_file(path: &std::path::Path) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|source| CliError::Read {
        path: path.to_owned(),
        source,
    })
}

/// A judge of a file's first bytes for [`read_file_at_most`]: `Ok(true)`
/// to read on, `Ok(false)` to stop there, an error to refuse the file.
pub type HeadCheck<'a> = dyn Fn(&[u8]) -> Result<bool, CliError> + 'a;

/// Reads a whole file of at most `max` bytes (`what` names the kind, for
/// the message), refusing a larger one without reading more than `max + 1`
/// bytes of it: a device or pipe that never ends (`/dev/zero`) or a huge
/// file given by mistake is one line, not the machine's memory. `head`, if
/// given, sees the first bytes (up to 64 KiB) before the rest is read: it
/// may refuse the file from them, or (`Ok(false)`) have them returned as
/// all there is to read, for a caller that can tell from them what the
/// file is not.
pub fn read_file_at_most(
    path: &std::path::Path,
    max: u64,
    what: &str,
    head: Option<&HeadCheck<'_>>,
) -> Result<Vec<u8>, CliError> {
    use std::io::Read;
    let read_err = |source| CliError::Read {
        path: path.to_owned(),
        source,
    };
    let too_large = || {
        CliError::invalid(format!(
            "{}: larger than {max} bytes, the most {what} can be",
            path.display()
        ))
    };
    let mut file = std::fs::File::open(path).map_err(read_err)?;
    if file.metadata().is_ok_and(|m| m.is_file() && m.len() > max) {
        return Err(too_large());
    }
    let limit = max.saturating_add(1);
    let mut bytes = Vec::new();
    let first = (64 * 1024).min(limit);
    (&mut file)
        .take(first)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    let read_on = match head {
        Some(check) => check(&bytes)?,
        None => true,
    };
    if read_on {
        file.take(limit - bytes.len() as u64)
            .read_to_end(&mut bytes)
            .map_err(read_err)?;
    }
    if bytes.len() as u64 > max {
        return Err(too_large());
    }
    Ok(bytes)
}

/// The most parameters a model can have: an LSTM (four gates) of the
/// format's most layers and hidden units over its most ids.
pub const MAX_PARAMS: u64 = {
    use charlm_runtime::format::{MAX_HIDDEN, MAX_LAYERS, MAX_VOCAB};
    let (h, l, v) = (MAX_HIDDEN as u64, MAX_LAYERS as u64, MAX_VOCAB as u64);
    let g = 4 * h;
    v * g + l * h * g + (l - 1) * h * g + 2 * l * g + v * h + v
};

/// The most bytes a `.clm` file can hold: [`MAX_PARAMS`] in f16, and a
/// mebibyte for its vocabulary, provenance and framing.
pub const MAX_MODEL_FILE: u64 = 2 * MAX_PARAMS + (1 << 20);

/// A real-valued flag's value parser: a number the flag's type holds as a
/// finite value, judged in the words given (`1e39` is too large for a
/// 32-bit flag, rather than shown later as `inf`). The flag's own range is
/// checked where it is used. Flags with it take values that begin with a
/// hyphen (`-t -inf`, `--lr -1e-3`), so such a value reaches it.
pub fn finite<T>(s: &str) -> Result<T, String>
where
    T: std::str::FromStr + Into<f64> + Copy,
{
    let v: T = s.parse().map_err(|_| "must be a number".to_string())?;
    let word = s.trim_start_matches(['+', '-']).to_ascii_lowercase();
    // A number that is not zero but rounds to it (`-t -1e-46`, which
    // would otherwise read as 0, greedy, and escape the sign's check).
    let mantissa = word.split('e').next().unwrap_or("");
    if v.into() == 0.0 && mantissa.contains(|c: char| ('1'..='9').contains(&c)) {
        return Err("is too small (it rounds to 0)".into());
    }
    if v.into().is_finite() {
        Ok(v)
    } else if word.starts_with("inf") || word == "nan" {
        Err("must be a finite number".into())
    } else {
        Err("is too large".into())
    }
}
