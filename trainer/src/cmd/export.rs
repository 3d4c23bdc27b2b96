//! `charlm export`: a model file from a run folder's checkpoint, for a run
//! that is still going or that stopped before its end.

use std::path::PathBuf;

use charlm_trainer::checkpoint::write_atomic;
use charlm_trainer::error::CliError;
use charlm_trainer::export::from_checkpoint;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Run folder (written by `charlm train`; its checkpoint.bin is read).
    run: PathBuf,
    /// Model file to write (default: RUN/model-step<N>.clm, N the steps taken).
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// Replace the --out file if it exists.
    #[arg(long)]
    force: bool,
}

pub fn run(args: Args) -> Result<(), CliError> {
    let snap = from_checkpoint(&args.run)?;
    let p = &snap.progress;
    let out = args
        .out
        .unwrap_or_else(|| args.run.join(format!("model-step{}.clm", p.steps)));
    if !args.force && out.exists() {
        return Err(CliError::invalid(format!(
            "{} exists (--force replaces it)",
            out.display()
        )));
    }
    write_atomic(&out, &snap.bytes)?;
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
    println!(
        "wrote {} ({} bytes): {} {}x{}, step {} ({stage}), train {} bpc, held-out {} bpc (f32)",
        out.display(),
        snap.bytes.len(),
        a.cell.name().to_uppercase(),
        a.layers,
        a.hidden,
        p.steps,
        bpc(p.train_bpc),
        bpc(p.val_bpc),
    );
    println!(
        "try: charlm generate --model {} --temperature 0.8",
        out.display()
    );
    Ok(())
}
