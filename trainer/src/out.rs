//! The command line's standard output and standard error, without panics.
//!
//! `println!` panics when standard output cannot be written (`charlm info
//! M > /dev/full`), which would end a command with a backtrace and exit
//! status 101, and a training run midway. [`outln!`] writes a line and, on
//! failure, keeps the first error and goes on: a run still writes its run
//! folder (the output that matters), and `main` reports the error in one
//! line with exit status 2 when the command is done ([`failure`]).
//! [`errln!`] does the same for standard error, where nothing can be
//! reported any more and the error is only dropped.

use std::fmt;
use std::io::Write;
use std::sync::OnceLock;

static FAILED: OnceLock<String> = OnceLock::new();

/// Writes one line to standard output; the first failure is kept for
/// [`failure`] and later lines are not attempted.
pub fn line(args: fmt::Arguments<'_>) {
    if FAILED.get().is_some() {
        return;
    }
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.write_all(b"\n")) {
        let _ = FAILED.set(e.to_string());
    }
}

/// Writes one line to standard error, ignoring failure.
pub fn err_line(args: fmt::Arguments<'_>) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_fmt(args).and_then(|()| err.write_all(b"\n"));
}

/// Why standard output could not be written, if it could not.
pub fn failure() -> Option<&'static str> {
    FAILED.get().map(String::as_str)
}

/// `println!` that does not panic: see the module's documentation.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::out::line(format_args!($($arg)*))
    };
}

/// `eprintln!` that does not panic.
#[macro_export]
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::out::err_line(format_args!($($arg)*))
    };
}

/// `n` and the noun that goes with it: `count(1, "step", "steps")` is
/// "1 step", `count(3, ...)` "3 steps".
pub fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_take_the_singular_only_for_one() {
        assert_eq!(super::count(1, "step", "steps"), "1 step");
        assert_eq!(super::count(0, "step", "steps"), "0 steps");
        assert_eq!(super::count(2, "layer", "layers"), "2 layers");
    }
}
