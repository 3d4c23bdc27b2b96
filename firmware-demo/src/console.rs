//! Semihosting standard output (the texts) and standard error (everything
//! else). QEMU and probe-rs map `:tt` opened for writing to the host's
//! stdout and opened for appending to its stderr.

use crate::platform::semihosting::hio::{self, HostStream};

/// The two host streams; output to a stream that failed to open is dropped.
pub struct Console {
    out: Option<HostStream>,
    /// Standard error, for messages and the report.
    pub err: Sink,
}

/// A `core::fmt::Write` target that ignores a missing stream.
pub struct Sink(Option<HostStream>);

impl Console {
    /// Opens both streams.
    pub fn open() -> Console {
        Console { out: hio::hstdout().ok(), err: Sink(hio::hstderr().ok()) }
    }

    /// Writes generated text to standard output, at once.
    pub fn out_str(&mut self, s: &str) {
        if let Some(out) = &mut self.out {
            let _ = out.write_all(s.as_bytes());
        }
    }
}

impl core::fmt::Write for Sink {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        match &mut self.0 {
            Some(err) => err.write_all(s.as_bytes()).map_err(|()| core::fmt::Error),
            None => Ok(()),
        }
    }
}
