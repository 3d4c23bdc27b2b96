//! `charlm info`: what is in a model file, and whether it is intact.

use std::path::PathBuf;

use charlm_runtime::cell::workspace_bytes;
use charlm_runtime::format::{DType, ModelFile};
use charlm_runtime::{Error, Model};
use charlm_trainer::error::CliError;
use charlm_trainer::outln;
use charlm_trainer::sample::host_workspace;

#[derive(clap::Args)]
pub struct Args {
    /// Model file (.clm), or a run folder (its model.clm).
    file: PathBuf,
}

pub fn run(args: Args) -> Result<(), CliError> {
    let (path, bytes) = super::read_model(args.file)?;
    let model_err = |source| CliError::Model {
        path: path.clone(),
        source,
    };
    // Describe even a file whose checksum fails, then report the failure.
    let file = ModelFile::decode_ignoring_checksum(&bytes).map_err(model_err)?;
    let (stored, computed) = ModelFile::checksums(&bytes).unwrap_or_default();
    let body = &file.body;
    let arch = body.arch;
    let symbols = std::str::from_utf8(body.vocab.symbols).unwrap_or("");
    let weight_bytes: usize = body.tensors().map(|(_, t)| t.data.len()).sum();
    outln!(
        "file        {} ({} bytes, format version {})",
        path.display(),
        bytes.len(),
        file.header.version
    );
    outln!(
        "network     {}, {} layer{}, hidden {}",
        arch.cell.name().to_uppercase(),
        arch.layers,
        if arch.layers == 1 { "" } else { "s" },
        arch.hidden
    );
    let weights = match body.weights() {
        DType::F16 => "f16",
        DType::I8 => "i8 matrices with a scale per row, f16 biases",
    };
    outln!(
        "parameters  {} ({weights}, {:.1} KiB of weights)",
        arch.param_count(),
        weight_bytes as f64 / 1024.0
    );
    outln!(
        "compute     {} multiply-accumulates per character",
        arch.macs_per_char()
    );
    // What a device needs: the file in flash (read in place), and the
    // state in RAM, as a firmware sizes its workspace to the model.
    let (h, l, v) = (
        arch.hidden as usize,
        arch.layers as usize,
        arch.vocab as usize,
    );
    let ram = match body.weights() {
        DType::F16 => format!(
            "{} bytes ({} in a build with the i8 cells too)",
            workspace_bytes(h, l, v, false),
            workspace_bytes(h, l, v, true)
        ),
        DType::I8 => format!("{} bytes", workspace_bytes(h, l, v, true)),
    };
    outln!(
        "memory      flash: the file ({} bytes); RAM: the state, {ram}",
        bytes.len()
    );
    outln!(
        "vocabulary  {} ids: padding, {}, <eos>",
        arch.vocab,
        crate::out::count(symbols.chars().count() as u64, "symbol", "symbols")
    );
    outln!("symbols     {:?}", symbols);
    let m = &body.meta;
    let bpc = |x: Option<f32>| x.map_or_else(|| "-".to_string(), |v| format!("{v:.4}"));
    outln!(
        "corpus      {}",
        if m.corpus.is_empty() { "-" } else { m.corpus }
    );
    outln!("steps       {}", m.steps);
    outln!(
        "bits/char   train {}, held-out {} (f32), {} ({})",
        bpc(m.train_bpc),
        bpc(m.val_bpc),
        bpc(m.val_bpc_f16),
        body.weights()
    );
    let fits = Model::from_bytes(&bytes).and_then(|m| host_workspace().check(&m));
    if stored == computed {
        outln!("checksum    ok ({stored:08x})");
    } else {
        outln!("checksum    MISMATCH (stored {stored:08x}, computed {computed:08x})");
        return Err(model_err(Error::ChecksumMismatch { stored, computed }));
    }
    fits.map_err(model_err)
}
