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
