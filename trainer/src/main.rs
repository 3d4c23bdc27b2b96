//! `charlm`: train character-level language models and run them.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;

use charlm_trainer::error::CliError;
use charlm_trainer::{errln, out};

/// Tiny character-level language models: train on a GPU or CPU, run anywhere.
#[derive(Parser)]
#[command(name = "charlm", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate text from a model (the host simulator of the firmware).
    Generate(cmd::generate::Args),
    /// Describe a model file: architecture, size, vocabulary, provenance, checksum.
    Info(cmd::info::Args),
    /// Train a model on a corpus (default: the bundled Tiny Shakespeare); writes a run folder with model.clm.
    Train(Box<cmd::train::Args>),
    /// Held-out bits per character of a model, through the runtime (its f16 or i8 weights).
    Eval(cmd::eval::Args),
    /// Write a model from a run's checkpoint or a model file: a .clm (f16 or i8), C source, or PyTorch tensors.
    Export(cmd::export::Args),
    /// Convert a model trained with PyTorch or Keras (safetensors weights, JSON vocabulary) to a .clm file.
    Import(cmd::import::Args),
    /// Benchmarks: training speed on CPU (train) and GPU (gpu), a device against the CPU reference (parity).
    #[command(subcommand)]
    Bench(cmd::bench::Bench),
}

fn main() -> ExitCode {
    quiet_on_closed_pipe();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            if !e.use_stderr() {
                // --help and --version: shown, or the reason they are not.
                use std::io::Write;
                return match e.print().and_then(|()| std::io::stdout().flush()) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        errln!("charlm: error: cannot write standard output: {e}");
                        ExitCode::from(2)
                    }
                };
            }
            if e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                // `charlm` or `charlm bench` alone: the help, which lists
                // the subcommands, on standard error.
                let _ = e.print();
                return ExitCode::from(2);
            }
            errln!("charlm: error: {}", one_line(&e.to_string()));
            return ExitCode::from(2);
        }
    };
    let trains = matches!(cli.command, Command::Train(_));
    // A CUDA library that lacks a function charlm calls makes cudarc panic
    // at that call: where the backend is opened that is an error of its own
    // (`cuda::guarded`), anywhere later one line and exit status 2 as well,
    // and the panic itself is never shown.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if charlm_trainer::cuda::missing_symbol(info.payload()).is_none() {
            default_hook(info);
        }
    }));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(cli.command)))
        .unwrap_or_else(
            |payload| match charlm_trainer::cuda::missing_symbol(&*payload) {
                Some(message) => Err(CliError::invalid(
                    charlm_trainer::cuda::CudaError::MissingSymbol(message).to_string(),
                )),
                None => std::panic::resume_unwind(payload),
            },
        );
    // A command that could not write its standard output has failed,
    // whatever else it did (a training run still wrote its run folder).
    let result = result.and_then(|()| match out::failure() {
        Some(e) => Err(CliError::invalid(format!(
            "cannot write standard output: {e}{}",
            if trains {
                " (the run itself finished: its folder holds model.clm)"
            } else {
                ""
            }
        ))),
        None => Ok(()),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::Interrupted(signal)) => {
            ExitCode::from(u8::try_from(128 + signal).unwrap_or(130))
        }
        Err(e) => {
            errln!("charlm: error: {e}");
            ExitCode::from(2)
        }
    }
}

/// Runs the command.
fn run(command: Command) -> Result<(), CliError> {
    match command {
        Command::Generate(args) => cmd::generate::run(args),
        Command::Info(args) => cmd::info::run(args),
        Command::Eval(args) => cmd::eval::run(args),
        Command::Export(args) => cmd::export::run(args),
        Command::Import(args) => cmd::import::run(args),
        // The commands that train run on the CPU backend's worker threads.
        Command::Train(args) => {
            cmd::pool(args.threads).and_then(|p| p.install(|| cmd::train::run(*args)))
        }
        Command::Bench(b) => {
            let threads = match &b {
                cmd::bench::Bench::Train(a) => a.threads,
                _ => None,
            };
            cmd::pool(threads).and_then(|p| p.install(|| cmd::bench::run(b)))
        }
    }
}

/// Restores SIGPIPE's default action, as other command-line programs have
/// it: `charlm info M | head -3` ends quietly when `head` has read enough.
/// Rust starts programs with SIGPIPE ignored, and then `println!` panics on
/// the closed pipe.
fn quiet_on_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: called first thing in `main`, before any other thread exists;
    // SIG_DFL is a valid action for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// clap's message without its usage block and tips, on one line.
fn one_line(message: &str) -> String {
    let lines: Vec<&str> = message
        .lines()
        .take_while(|l| !l.starts_with("Usage:"))
        .map(str::trim)
        .collect();
    // clap's "tip: a similar argument exists: '--temperature'" is kept
    // (a typo's fix); its other tips and pointers to --help are not.
    let text = lines
        .iter()
        .filter(|l| {
            !l.is_empty() && !l.starts_with("tip:") && !l.starts_with("For more information")
        })
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    let similar = lines
        .iter()
        .filter_map(|l| l.strip_prefix("tip: "))
        .filter(|t| t.contains("similar"))
        .map(|t| format!("; {t}"))
        .collect::<String>();
    format!("{}{similar}", text.trim_start_matches("error: "))
}
