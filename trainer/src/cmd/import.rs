//! `charlm import`: a model trained with PyTorch or Keras (weights in a
//! safetensors file, its vocabulary in JSON) to a `.clm` file.

use std::path::PathBuf;

use charlm_runtime::format::DType;
use charlm_trainer::error::{CliError, MAX_PARAMS, read_file_at_most};
use charlm_trainer::export::{Provenance, export};
use charlm_trainer::import::{import_with, read_vocabulary};
use charlm_trainer::{errln, outln};

use super::Weights;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The model's weights as safetensors (PyTorch: `safetensors.torch.save_file(model.state_dict(), F)`;
    /// Keras: `safetensors.numpy.save_file({getattr(w, "path", w.name): w.numpy() for w in model.weights}, F)`).
    /// One-hot or embedded characters, 1-4 LSTM or GRU layers, one linear output layer.
    #[arg(value_name = "WEIGHTS.safetensors")]
    source: PathBuf,
    /// The vocabulary as JSON: a list with one entry per id of the model (the character, or
    /// "<pad>" or "<eos>"), or an object from those entries to their ids (Keras's
    /// tokenizer.word_index; id 0 left out is padding).
    #[arg(long, value_name = "FILE.json")]
    vocab: PathBuf,
    /// Model file to write (default: WEIGHTS.clm beside the weights).
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// Replace the --out file if it exists.
    #[arg(long)]
    force: bool,
    /// Type of the weight matrices: f16, or i8 with a scale per row.
    #[arg(long, value_enum, default_value_t = Weights::F16)]
    weights: Weights,
}

pub fn run(args: Args) -> Result<(), CliError> {
    charlm_trainer::checkpoint::defer_stops_while_writing();
    // Weights of the largest model in f64, with room for the header; a
    // vocabulary of the most ids, however it is spelled.
    let weights_max = 8 * MAX_PARAMS + (16 << 20);
    // A safetensors file begins with its header's length and the header's
    // opening brace: a file that does not is judged by its first bytes
    // (the parser names what is wrong).
    let head = |b: &[u8]| {
        Ok(match b.get(..8) {
            Some(h) => {
                let len = u64::from_le_bytes(h.try_into().unwrap_or_default());
                let brace = b[8..].iter().find(|c| !c.is_ascii_whitespace());
                (2..=100 << 20).contains(&len) && brace.is_none_or(|&c| c == b'{')
            }
            None => true,
        })
    };
    let bytes = read_file_at_most(&args.source, weights_max, "a model's weights", Some(&head))?;
    let vocab_bytes = read_file_at_most(&args.vocab, 16 << 20, "a vocabulary file", None)?;
    let vocab = std::str::from_utf8(&vocab_bytes)
        .map_err(|_| CliError::invalid(format!("{}: not UTF-8 text", args.vocab.display())))?;
    let vocab = read_vocabulary(vocab)
        .map_err(|e| CliError::invalid(format!("{}: {e}", args.vocab.display())))?;
    let m = import_with(&bytes, &vocab)
        .map_err(|e| CliError::invalid(format!("{}: {e}", args.source.display())))?;
    let weights = args.weights.dtype();
    let file_name = args
        .source
        .file_name()
        .unwrap_or_default()
        .to_string_lossy();
    let prov = Provenance {
        corpus: format!("imported from {file_name} ({})", m.framework),
        ..Provenance::default()
    };
    let params = match weights {
        DType::I8 => &m.matrices_f32,
        DType::F16 => &m.params,
    };
    let model = export(&m.layout, params, &m.vocab, &prov, weights)?;
    // The runtime's own validation, before anything is written, and room
    // for it in the host tools' workspace (generate, eval, train --init).
    let model_err = |source| CliError::Model {
        path: args.source.clone(),
        source,
    };
    let runnable = charlm_runtime::Model::from_bytes(&model).map_err(model_err)?;
    charlm_trainer::sample::host_workspace()
        .check(&runnable)
        .map_err(model_err)?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| args.source.with_extension("clm"));
    super::not_an_input(&out, &[&args.source, &args.vocab])?;
    super::export::write_new(&out, &model, args.force)?;
    let a = m.layout.arch;
    let input = match m.embedding {
        Some(e) => format!("; its {e}-wide embedding folded into the input table"),
        None => String::new(),
    };
    outln!(
        "imported a {} {}: {}, hidden {}, {} ids (padding, {} characters, <eos>){input}",
        m.framework,
        a.cell.name().to_uppercase(),
        crate::out::count(a.layers as u64, "layer", "layers"),
        a.hidden,
        a.vocab,
        m.vocab.symbols().len()
    );
    if m.pad_added {
        errln!(
            "charlm: note: the vocabulary has no \"<pad>\": id 0 was added (never fed, never predicted)"
        );
    }
    if m.eos_added {
        errln!(
            "charlm: note: the vocabulary has no \"<eos>\": one was added that is never predicted (greedily or at temperatures up to 1,000), so texts end at --max-chars (eval of line samples leaves their ends out; train --init on line samples learns it)"
        );
    }
    outln!(
        "wrote {} ({} bytes, {weights} weights)",
        out.display(),
        model.len()
    );
    super::export::hint(&out);
    Ok(())
}
