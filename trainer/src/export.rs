//! f32 parameters to a `.clm` file, through the runtime's own format types.
//!
//! Each f32 is rounded to the nearest f16 (ties to even, `half`), or, for
//! the weight matrices of an i8 export, quantized row by row
//! ([`to_i8_rows`]). The parameter layout already stores layer 0's input
//! weights as the runtime's `[V, G*H]` table, so every tensor is written as
//! it is; vectors become `[n, 1]`.

use charlm_runtime::TensorName;
use charlm_runtime::format::{
    Arch, Body, DType, Header, LayerRecord, MAX_HIDDEN_I8, Meta, ModelFile, Tensor, VocabRecord,
};

use crate::error::CliError;
use crate::params::{Layout, transpose};
use crate::vocab::Vocab;

/// What the file records about where the model came from.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Provenance {
    /// Corpus name.
    pub corpus: String,
    /// Optimizer steps.
    pub steps: u64,
    /// Training bits per character (f32 weights).
    pub train_bpc: Option<f32>,
    /// Held-out bits per character (f32 weights).
    pub val_bpc: Option<f32>,
    /// Held-out bits per character after rounding to f16 (through the runtime).
    pub val_bpc_f16: Option<f32>,
}

/// Little-endian f16 bytes of `x`, or the index of a value too large for f16.
pub fn to_f16_bytes(x: &[f32]) -> Result<Vec<u8>, usize> {
    let mut out = Vec::with_capacity(x.len() * 2);
    for (i, &v) in x.iter().enumerate() {
        let h = half::f16::from_f32(v);
        if !h.is_finite() {
            return Err(i);
        }
        out.extend_from_slice(&h.to_le_bytes());
    }
    Ok(out)
}

/// Symmetric 8-bit quantization of a row-major matrix of `cols` columns,
/// row by row: the row's scale `s` is `max |w| / 127` rounded to f16, and
/// each element becomes `q = round(w / s)` (ties to even, within -127..=127;
/// a row of zeros, or one so small that `s` rounds to 0, becomes zeros).
/// Returns the `.clm` data of a [`DType::I8`] tensor: every row's bytes,
/// then every row's scale; or the index of a value whose scale does not
/// fit in f16.
pub fn to_i8_rows(x: &[f32], cols: usize) -> Result<Vec<u8>, usize> {
    let rows = x.len() / cols.max(1);
    let mut q = Vec::with_capacity(rows * cols + 2 * rows);
    let mut scales = Vec::with_capacity(2 * rows);
    for (r, row) in x.chunks(cols.max(1)).enumerate() {
        let (at, max) = row
            .iter()
            .map(|v| v.abs())
            .enumerate()
            .fold(
                (0, 0.0f32),
                |m, (i, v)| if v > m.1 || v.is_nan() { (i, v) } else { m },
            );
        let s = half::f16::from_f32(max / 127.0);
        if !s.is_finite() || !max.is_finite() {
            return Err(r * cols + at);
        }
        let sf = s.to_f32();
        q.extend(row.iter().map(|&v| {
            let level = if sf > 0.0 {
                (v / sf).round_ties_even().clamp(-127.0, 127.0)
            } else {
                0.0
            };
            level as i8 as u8
        }));
        scales.extend_from_slice(&s.to_le_bytes());
    }
    q.extend_from_slice(&scales);
    Ok(q)
}

/// The type and `.clm` bytes of tensor `name` holding `values` (`cols` per
/// row): `weights` for a weight matrix, f16 for a bias; or the index of a
/// value that does not fit.
fn encode_values(
    name: TensorName,
    values: &[f32],
    cols: usize,
    weights: DType,
) -> Result<(DType, Vec<u8>), usize> {
    match (name.is_matrix(), weights) {
        (true, DType::I8) => to_i8_rows(values, cols).map(|b| (DType::I8, b)),
        _ => to_f16_bytes(values).map(|b| (DType::F16, b)),
    }
}

/// Encodes a model file (with checksum) whose weight matrices are of type
/// `weights` (biases are f16 either way).
pub fn export(
    layout: &Layout,
    params: &[f32],
    vocab: &Vocab,
    prov: &Provenance,
    weights: DType,
) -> Result<Vec<u8>, CliError> {
    assert_eq!(params.len(), layout.len);
    assert_eq!(vocab.size(), layout.arch.vocab as usize);
    let mut data = Vec::with_capacity(layout.slots.len());
    for (slot, name) in layout.slots.iter().zip(layout.arch.tensor_names()) {
        let values = &params[slot.range.clone()];
        let encoded = encode_values(name, values, slot.shape[1], weights).map_err(|i| {
            CliError::invalid(format!(
                "cannot export: {}[{i}] = {} does not fit in f16 (training diverged; try a lower --lr or --clip)",
                slot.name,
                values[i]
            ))
        })?;
        data.push(encoded);
    }
    let tensors = layout
        .slots
        .iter()
        .zip(&data)
        .map(|(slot, (dtype, bytes))| {
            let [r, c] = slot.shape;
            Tensor {
                dtype: *dtype,
                shape: [r as u32, c as u32],
                data: bytes,
            }
        });
    let symbols = vocab.symbols_string();
    let vocab = VocabRecord {
        symbols: symbols.as_bytes(),
        pad: 0,
        eos: vocab.eos(),
    };
    let meta = Meta {
        corpus: &prov.corpus,
        steps: prov.steps,
        train_bpc: prov.train_bpc,
        val_bpc: prov.val_bpc,
        val_bpc_f16: prov.val_bpc_f16,
    };
    encode(layout.arch, vocab, tensors.collect(), meta, weights)
}

/// Encodes a model file (with checksum) from its tensors in file order
/// (per layer `w_ih`, `w_hh`, `b_ih`, `b_hh`, then `out_w`, `out_b`).
fn encode(
    arch: Arch,
    vocab: VocabRecord<'_>,
    tensors: Vec<Tensor<'_>>,
    meta: Meta<'_>,
    weights: DType,
) -> Result<Vec<u8>, CliError> {
    if weights == DType::I8 && arch.hidden as usize > MAX_HIDDEN_I8 {
        return Err(CliError::invalid(format!(
            "i8 weights are for hidden sizes up to {MAX_HIDDEN_I8}; this model has {} (keep it f16)",
            arch.hidden
        )));
    }
    let n = tensors.len();
    let layers = tensors
        .chunks_exact(4)
        .take(arch.layers as usize)
        .map(|t| LayerRecord {
            w_ih: t[0],
            w_hh: t[1],
            b_ih: t[2],
            b_hh: t[3],
        })
        .collect();
    let file = ModelFile {
        header: Header::for_weights(weights),
        body: Body {
            arch,
            vocab,
            layers,
            out_w: tensors[n - 2],
            out_b: tensors[n - 1],
            meta,
        },
    };
    file.encode()
        .map_err(|e| CliError::invalid(format!("cannot encode the model: {e}")))
}

/// The f16 model file `bytes` with its weight matrices quantized to i8 by
/// [`to_i8_rows`] (from their f16 values; [`from_checkpoint`] quantizes the
/// f32 parameters instead, which rounds once rather than twice). The file's
/// held-out score of the f16 weights is left out, as it no longer applies.
pub fn quantize_file(bytes: &[u8]) -> Result<Vec<u8>, CliError> {
    let invalid = |what: String| CliError::invalid(what);
    let file = ModelFile::decode(bytes).map_err(|e| invalid(format!("not a valid model: {e}")))?;
    let body = &file.body;
    if body.weights() != DType::F16 {
        return Err(invalid(format!(
            "the model's weights are already {}",
            body.weights()
        )));
    }
    // Every tensor goes through f32 (exact for f16); the matrices come
    // back as i8, the biases as the same f16 bits.
    let mut data = Vec::new();
    for (name, t) in body.tensors() {
        let values = tensor_values(t);
        // Validated f16 values are finite, so their scales are too.
        let encoded = encode_values(name, &values, t.shape[1] as usize, DType::I8)
            .map_err(|i| invalid(format!("{name}[{i}] cannot be quantized")))?;
        data.push(encoded);
    }
    let tensors = body
        .tensors()
        .zip(&data)
        .map(|((_, t), (dtype, bytes))| Tensor {
            dtype: *dtype,
            shape: t.shape,
            data: bytes,
        })
        .collect();
    let meta = Meta {
        val_bpc_f16: None,
        ..body.meta
    };
    encode(body.arch, body.vocab, tensors, meta, DType::I8)
}

/// A model file made from a run's checkpoint (see [`from_checkpoint`]).
#[derive(Debug)]
pub struct Snapshot {
    /// The `.clm` bytes.
    pub bytes: Vec<u8>,
    /// What they hold.
    pub arch: charlm_runtime::format::Arch,
    /// Where the run stood: steps, epoch, losses, whether it had finished.
    pub progress: crate::checkpoint::Progress,
    /// The epochs the run was set to train.
    pub epochs: u64,
}

/// The model in the checkpoint of run folder `dir`, as `charlm train`
/// would export it at that point: a run still going or one stopped before
/// its end gets a model file too, with weight matrices of type `weights`.
/// Its training score is the one a run ending at that step records (the
/// mean over the epoch so far); its held-out score is the run's only where
/// the run scored these weights (the checkpoint was written right after an
/// evaluation), and the score after rounding to f16 is left out: both need
/// the corpus (`charlm eval` computes them).
pub fn from_checkpoint(dir: &std::path::Path, weights: DType) -> Result<Snapshot, CliError> {
    let (mut ck, layout, vocab) = checkpoint(dir)?;
    let p = &mut ck.progress;
    if p.epoch_count > 0 {
        p.train_bpc = Some(p.epoch_bpc());
    }
    let scored_now = ck
        .metrics
        .iter()
        .rev()
        .find(|r| r.val_bpc.is_some())
        .is_some_and(|r| r.step == p.steps);
    if !scored_now {
        p.val_bpc = None;
    }
    let prov = Provenance {
        corpus: ck.config.corpus.name(),
        steps: ck.progress.steps,
        train_bpc: ck.progress.train_bpc,
        val_bpc: ck.progress.val_bpc,
        val_bpc_f16: None,
    };
    Ok(Snapshot {
        bytes: export(&layout, &ck.params, &vocab, &prov, weights)?,
        arch: layout.arch,
        progress: ck.progress,
        epochs: ck.config.epochs,
    })
}

/// The checkpoint of run folder `dir`, checked, with its layout and
/// vocabulary.
pub fn checkpoint(
    dir: &std::path::Path,
) -> Result<(crate::checkpoint::Checkpoint, Layout, Vocab), CliError> {
    let ck = crate::checkpoint::Checkpoint::load_any(dir)?;
    ck.config.validate()?;
    let vocab = Vocab::from_symbols(ck.vocab.chars().collect());
    let layout = Layout::new(ck.config.arch(vocab.size()));
    ck.fits(&layout)?;
    Ok((ck, layout, vocab))
}

/// C's keywords (C23, which holds C99's and C11's) and the standard
/// headers' names that C23 makes keywords: none can name an object.
const C_KEYWORDS: [&str; 55] = [
    "alignas",
    "alignof",
    "auto",
    "bool",
    "break",
    "case",
    "char",
    "const",
    "constexpr",
    "continue",
    "default",
    "do",
    "double",
    "else",
    "enum",
    "extern",
    "false",
    "float",
    "for",
    "goto",
    "if",
    "inline",
    "int",
    "long",
    "nullptr",
    "register",
    "restrict",
    "return",
    "short",
    "signed",
    "sizeof",
    "static",
    "static_assert",
    "struct",
    "switch",
    "thread_local",
    "true",
    "typedef",
    "typeof",
    "typeof_unqual",
    "union",
    "unsigned",
    "void",
    "volatile",
    "while",
    "_Alignas",
    "_Alignof",
    "_Atomic",
    "_BitInt",
    "_Bool",
    "_Complex",
    "_Generic",
    "_Imaginary",
    "_Noreturn",
    "_Static_assert",
];

/// Whether `name` is declared by a header the C source includes
/// (`<stddef.h>`, `<stdint.h>`) or by `charlm.h`, or reserved for them:
/// POSIX reserves `_t` for types (`size_t`, `uint8_t`), the headers' macros
/// are `NULL`, `offsetof`, `unreachable` and upper-case names ending in
/// `_MAX`, `_MIN`, `_C` or `_WIDTH` (`SIZE_MAX`, `INT8_C`); the C
/// library's own names are its functions and types (`charlm_generate`) and
/// its `CHARLM_` macros.
fn clashes_with_headers(name: &str) -> bool {
    const CAPI: [&str; 11] = [
        "charlm_capacity",
        "charlm_generate",
        "charlm_generate_loaded",
        "charlm_info",
        "charlm_load_model",
        "charlm_model_info",
        "charlm_params",
        "charlm_self_test",
        "charlm_status_text",
        "charlm_unload_model",
        "charlm_write_fn",
    ];
    let macro_like = name
        .chars()
        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        && ["_MAX", "_MIN", "_C", "_WIDTH"]
            .iter()
            .any(|s| name.ends_with(s));
    name.ends_with("_t")
        || matches!(name, "NULL" | "offsetof" | "unreachable")
        || CAPI.contains(&name)
        || name.starts_with("CHARLM_")
        || macro_like
}

/// Whether `name` can name a C object (and the `NAME_len` beside it): an
/// identifier, not a keyword, not one the C standard reserves for the
/// implementation (`__x`, `_X`), and not one the included headers declare.
pub fn is_c_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    let reserved = name.starts_with("__")
        || (name.starts_with('_') && name[1..].starts_with(|c: char| c.is_ascii_uppercase()));
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 60
        && !reserved
        && !C_KEYWORDS.contains(&name)
        && !clashes_with_headers(name)
}

/// The model file `bytes` as source that compiles as C99 and as C++11, for
/// a firmware built with the C library (capi/): `const uint8_t *const NAME` and `const size_t
/// NAME_len`, the file's bytes placed in a word-aligned array after the
/// padding that puts the most weight rows on 4-byte boundaries (the
/// Cortex-M4F kernel's fast path; [`charlm_runtime::format::row_alignment`]).
/// `source` names the file in the comment at the top.
pub fn c_source(bytes: &[u8], source: &str, name: &str) -> Result<String, CliError> {
    use std::fmt::Write as _;

    if !is_c_identifier(name) {
        return Err(CliError::invalid(format!(
            "--c-name {name:?}: not a name a C object can have (letters, digits and _, not starting with a digit, at most 60, no keyword, no __x or _X, and none that <stdint.h>, <stddef.h> or charlm.h declare, such as size_t, uint8_t, NULL, SIZE_MAX or charlm_generate)"
        )));
    }
    let file = ModelFile::decode(bytes).map_err(|e| CliError::invalid(format!("{source}: {e}")))?;
    // (named inside a comment, which "*/" would end)
    let source = source.replace("*/", "* /");
    let a = file.body.arch;
    let align = charlm_runtime::format::row_alignment(bytes, &file);
    let (stored, _) = ModelFile::checksums(bytes).unwrap_or_default();
    let header = [
        "/* A charlm model as C source, written by `charlm export --c-source`; do not edit."
            .to_string(),
        " *".into(),
        format!(
            " * from     {source} ({} bytes, format version {}, checksum {stored:08x})",
            bytes.len(),
            file.header.version
        ),
        format!(
            " * network  {}, {}, hidden {}, {} ids, {} weights",
            a.cell.name().to_uppercase(),
            crate::out::count(a.layers as u64, "layer", "layers"),
            a.hidden,
            a.vocab,
            file.body.weights()
        ),
        format!(
            " * layout   the file's bytes start {} into a word-aligned array, which",
            crate::out::count(align.pad as u64, "byte", "bytes")
        ),
        format!(
            " *          puts {} of the {} weight multiply-accumulates per character on",
            align.aligned_macs, align.macs
        ),
        " *          word-aligned rows (the Cortex-M4F kernel's fast path)".into(),
        " *".into(),
        " * Use it with capi/include/charlm.h:".into(),
        format!(" *   extern const uint8_t *const {name};"),
        format!(" *   extern const size_t {name}_len;"),
        format!(
            " *   charlm_generate({name}, {name}_len, prompt, strlen(prompt), &params, write, ctx);"
        ),
        " *".into(),
        " * It compiles as C99 or as C++11 (the names keep C linkage), so it can".into(),
        " * be a .c file of the firmware or be included from a C++ sketch.".into(),
        " */".into(),
        "#include <stddef.h>".into(),
        "#include <stdint.h>".into(),
        String::new(),
        // C++ gives a namespace-scope const object internal linkage unless
        // it was declared extern first; extern "C" keeps the names unmangled.
        "#ifdef __cplusplus".into(),
        "extern \"C\" {".into(),
        "#endif".into(),
        format!("extern const uint8_t *const {name};"),
        format!("extern const size_t {name}_len;"),
        "#ifdef __cplusplus".into(),
        "}".into(),
        "#endif".into(),
        String::new(),
    ];
    let mut c = header.join("\n");
    c.push('\n');
    let total = align.pad + bytes.len();
    // `bytes` first: a plain brace initializer sets it in C and C++ alike;
    // `word` only gives the array its alignment.
    let _ = writeln!(
        c,
        "static const union {{\n    uint8_t bytes[{total}];\n    uint32_t word;\n}} {name}_words = {{{{"
    );
    let padded = std::iter::repeat_n(0u8, align.pad).chain(bytes.iter().copied());
    let all: Vec<u8> = padded.collect();
    for line in all.chunks(16) {
        let row: Vec<String> = line.iter().map(|b| format!("0x{b:02x}")).collect();
        let _ = writeln!(c, "    {},", row.join(", "));
    }
    let _ = writeln!(
        c,
        "}}}};\n\nconst uint8_t *const {name} = {name}_words.bytes + {};\nconst size_t {name}_len = {};",
        align.pad,
        bytes.len()
    );
    Ok(c)
}

/// The f32 values of a file's tensor: f16 as they are, i8 rows times their
/// scale (`q * s`, exact in f32).
fn tensor_values(t: &Tensor<'_>) -> Vec<f32> {
    let f16 = |b: &[u8; 2]| half::f16::from_le_bytes(*b).to_f32();
    match t.dtype {
        DType::F16 => t.data.as_chunks::<2>().0.iter().map(f16).collect(),
        DType::I8 => {
            let [rows, cols] = [t.shape[0] as usize, t.shape[1] as usize];
            let (q, scales) = t.data.split_at(rows * cols);
            let scales: Vec<f32> = scales.as_chunks::<2>().0.iter().map(f16).collect();
            q.iter()
                .enumerate()
                .map(|(i, &b)| f32::from(b as i8) * scales[i / cols.max(1)])
                .collect()
        }
    }
}

/// A model file's parameters in the trainer's layout (f16 exactly, i8 as
/// `q * s`), with its vocabulary: where `charlm train --init` starts from.
pub fn parameters(bytes: &[u8]) -> Result<(Layout, Vec<f32>, Vocab), CliError> {
    let file = ModelFile::decode(bytes)
        .map_err(|e| CliError::invalid(format!("not a valid model: {e}")))?;
    let body = &file.body;
    let layout = Layout::new(body.arch);
    let mut params = Vec::with_capacity(layout.len);
    for (slot, (_, t)) in layout.slots.iter().zip(body.tensors()) {
        let values = tensor_values(t);
        debug_assert_eq!(values.len(), slot.range.len());
        params.extend(values);
    }
    let symbols = std::str::from_utf8(body.vocab.symbols)
        .map_err(|_| CliError::invalid("the vocabulary is not UTF-8"))?;
    let vocab = Vocab::from_symbols(symbols.chars().collect());
    if params.len() != layout.len || vocab.size() != body.arch.vocab as usize {
        return Err(CliError::invalid(
            "the model's tensors do not fit its architecture",
        ));
    }
    Ok((layout, params, vocab))
}

/// A model's parameters (in the trainer's layout) as PyTorch's tensors
/// (`rnn.` an `nn.LSTM` or `nn.GRU` with `num_layers` = the model's layers,
/// `out.` an `nn.Linear(hidden, vocabulary)`, float32; layer 0's input
/// table becomes `rnn.weight_ih_l0`, its transpose) in a safetensors file,
/// and the vocabulary as a JSON list (`"<pad>"`, the symbols, `"<eos>"`):
/// what `charlm import` reads back.
pub fn safetensors(
    layout: &Layout,
    params: &[f32],
    vocab: &Vocab,
) -> Result<(Vec<u8>, String), CliError> {
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for slot in &layout.slots {
        let values = &params[slot.range.clone()];
        let [rows, cols] = slot.shape;
        let (shape, values): (Vec<usize>, Vec<f32>) = if slot.name == "weight_ih_l0" {
            (vec![cols, rows], transpose(values, rows, cols))
        } else if cols == 1 {
            (vec![rows], values.to_vec())
        } else {
            (vec![rows, cols], values.to_vec())
        };
        let key = if slot.name.starts_with("out.") {
            slot.name.clone()
        } else {
            format!("rnn.{}", slot.name)
        };
        let data = values.iter().flat_map(|x| x.to_le_bytes()).collect();
        tensors.push((key, shape, data));
    }
    let views = tensors
        .iter()
        .map(|(n, shape, data)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data)
                .map(|v| (n.clone(), v))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CliError::invalid(format!("cannot lay out the tensors: {e}")))?;
    let metadata = std::collections::HashMap::from([
        ("format".to_string(), "pt".to_string()),
        ("cell".to_string(), layout.arch.cell.name().to_string()),
        (
            "written_by".to_string(),
            format!("charlm {}", env!("CARGO_PKG_VERSION")),
        ),
    ]);
    let st = safetensors::tensor::serialize(views, Some(metadata))
        .map(sorted_header)
        .map_err(|e| CliError::invalid(format!("cannot write safetensors: {e}")))?;
    let vocab: Vec<String> = std::iter::once("<pad>".to_string())
        .chain(vocab.symbols().iter().map(|c| c.to_string()))
        .chain(std::iter::once("<eos>".to_string()))
        .collect();
    let json = serde_json::to_string(&vocab).expect("a list of strings");
    Ok((st, json))
}

/// A safetensors file with its JSON header's keys in sorted order, so that
/// the same model gives the same bytes (the library writes its metadata
/// from a `HashMap`, whose order changes from run to run). The header keeps
/// its length (the same keys and values, reordered), so the tensors' offsets
/// hold; a header that cannot be reordered so is left as it is.
fn sorted_header(mut st: Vec<u8>) -> Vec<u8> {
    let Some(n) = st
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()) as usize)
        .filter(|&n| st.len() >= 8 + n)
    else {
        return st;
    };
    let sorted = serde_json::from_slice::<serde_json::Value>(&st[8..8 + n])
        .ok()
        .and_then(|v| serde_json::to_string(&v).ok());
    if let Some(text) = sorted.filter(|t| t.len() <= n) {
        st[8..8 + text.len()].copy_from_slice(text.as_bytes());
        st[8 + text.len()..8 + n].fill(b' ');
    }
    st
}

#[cfg(test)]
mod tests {
    use super::*;
    use charlm_runtime::Model;
    use charlm_runtime::format::{Arch, CellKind};

    /// A vocabulary of `text`, the layout of a model over it and its
    /// initial parameters.
    fn small(text: &str, cell: CellKind, hidden: u16, seed: u64) -> (Vocab, Layout, Vec<f32>) {
        let vocab = Vocab::fit([text]).unwrap();
        let arch = Arch {
            cell,
            layers: 2,
            hidden,
            vocab: vocab.size() as u16,
        };
        let layout = Layout::new(arch);
        let params = layout.init(seed);
        (vocab, layout, params)
    }

    #[test]
    fn the_runtime_accepts_an_export_and_sees_the_same_weights() {
        let (vocab, layout, params) = small("hello, wörld", CellKind::Gru, 8, 1);
        let arch = layout.arch;
        let prov = Provenance {
            corpus: "x".into(),
            steps: 7,
            val_bpc: Some(2.5),
            ..Default::default()
        };
        let bytes = export(&layout, &params, &vocab, &prov, DType::F16).unwrap();
        let model = Model::from_bytes(&bytes).unwrap();
        assert_eq!(*model.arch(), arch);
        assert_eq!(model.vocab().symbols(), vocab.symbols_string());
        assert_eq!(model.meta().steps, 7);
        assert_eq!(model.meta().val_bpc, Some(2.5));
        let file = ModelFile::decode(&bytes).unwrap();
        // Layer 0's table row 3 is what the layout stores there, rounded.
        let g = 3 * 8;
        let row3 = &file.body.layers[0].w_ih.data[3 * g * 2..4 * g * 2];
        let want: Vec<u8> = params[3 * g..4 * g]
            .iter()
            .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
            .collect();
        assert_eq!(row3, want);
    }

    /// The same model gives the same safetensors bytes every time, and
    /// the library still reads them (the header reordered in place).
    #[test]
    fn safetensors_exports_are_reproducible() {
        let (vocab, layout, params) = small("hello, wörld", CellKind::Lstm, 8, 1);
        let (first, json) = safetensors(&layout, &params, &vocab).unwrap();
        for _ in 0..8 {
            let again = safetensors(&layout, &params, &vocab).unwrap().0;
            assert!(again == first, "a second export of the same model differs");
        }
        let st = safetensors::SafeTensors::deserialize(&first).unwrap();
        assert_eq!(st.len(), layout.slots.len());
        let back = crate::import::import(&first, &json).unwrap();
        assert_eq!(back.layout.arch, layout.arch);
    }

    #[test]
    fn every_name_the_c_header_declares_is_refused_as_a_c_name() {
        let header = include_str!("../../capi/include/charlm.h");
        let mut names: Vec<&str> = header
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("charlm_") || w.starts_with("CHARLM_"))
            .collect();
        names.sort_unstable();
        names.dedup();
        assert!(names.len() > 20, "{names:?}");
        for name in names {
            assert!(!is_c_identifier(name), "{name} is accepted");
        }
        assert!(is_c_identifier("charlm_model"));
    }

    #[test]
    fn i8_rows_take_each_rows_largest_magnitude_to_127() {
        // Row 0: max |w| = 2.54, scale 0.02 (in f16: 0.0200043), so -2.54
        // is -127 and 1.0 is round(49.99) = 50; row 1 is zeros.
        let x = [1.0, -2.54, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0];
        let out = to_i8_rows(&x, 4).unwrap();
        assert_eq!(out.len(), 8 + 4);
        let s0 = half::f16::from_f32(2.54 / 127.0);
        assert_eq!(&out[8..10], s0.to_le_bytes());
        assert_eq!(&out[10..12], [0, 0]);
        let q: Vec<i8> = out[..8].iter().map(|&b| b as i8).collect();
        assert_eq!(q, [50, -127, 25, 0, 0, 0, 0, 0]);
        // Ties go to even: 0.5 / 0.5 * 2.5 = 2.5 -> 2, 3.5 -> 4.
        let t = to_i8_rows(&[63.5, 1.25, 1.75], 3).unwrap();
        assert_eq!(&t[..3], [127, 2, 4].map(|v: i8| v as u8));
        // Values a scale cannot describe are an error naming the element.
        assert_eq!(to_i8_rows(&[1.0, 2.0, 3.0, f32::NAN], 2), Err(3));
        assert_eq!(to_i8_rows(&[f32::INFINITY, 1.0], 2), Err(0));
        assert_eq!(to_i8_rows(&[1.0, -1e9], 2), Err(1));
    }

    #[test]
    fn i8_rows_err_by_at_most_half_a_step_and_the_runtime_reads_them() {
        let (vocab, layout, params) = small("quantize me, bitte", CellKind::Lstm, 12, 5);
        for slot in &layout.slots {
            let [rows, cols] = slot.shape;
            let w = &params[slot.range.clone()];
            let q = to_i8_rows(w, cols).unwrap();
            for (r, row) in w.chunks(cols).enumerate() {
                let s =
                    half::f16::from_le_bytes([q[rows * cols + 2 * r], q[rows * cols + 2 * r + 1]])
                        .to_f32();
                for (c, &v) in row.iter().enumerate() {
                    let back = (q[r * cols + c] as i8) as f32 * s;
                    assert!(
                        (back - v).abs() <= 0.5 * s * 1.001,
                        "{}[{r}][{c}]: {v} came back as {back}",
                        slot.name
                    );
                }
            }
        }
        let bytes = export(&layout, &params, &vocab, &Provenance::default(), DType::I8).unwrap();
        let model = Model::from_bytes(&bytes).unwrap();
        assert_eq!(model.weights(), DType::I8);
        let file = ModelFile::decode(&bytes).unwrap();
        assert_eq!(file.header.version, 3);
        assert_eq!(file.body.layers[1].b_hh.dtype, DType::F16);
        // Quantizing the f16 export of the same parameters gives an i8 file
        // of the same shape (values may differ by a step: double rounding).
        let f16 = export(&layout, &params, &vocab, &Provenance::default(), DType::F16).unwrap();
        let again = quantize_file(&f16).unwrap();
        assert_eq!(again.len(), bytes.len());
        let (direct, twice) = (
            ModelFile::decode(&bytes).unwrap().body,
            ModelFile::decode(&again).unwrap().body,
        );
        for (a, b) in direct.layers.iter().zip(&twice.layers) {
            for (x, y) in [(&a.w_ih, &b.w_ih), (&a.w_hh, &b.w_hh)] {
                // The quantized values (the bytes before the rows' f16
                // scales) within one step of each other, most of them equal.
                let n = (x.shape[0] * x.shape[1]) as usize;
                assert_eq!((x.shape, x.data.len()), (y.shape, y.data.len()));
                let mut equal = 0;
                for (&p, &q) in x.data[..n].iter().zip(&y.data[..n]) {
                    let d = (i16::from(p as i8) - i16::from(q as i8)).abs();
                    assert!(d <= 1, "{} against {}", p as i8, q as i8);
                    equal += usize::from(d == 0);
                }
                assert!(equal * 10 > n * 9, "{equal} of {n} equal");
            }
        }
        assert!(
            quantize_file(&again).is_err(),
            "an i8 model is not quantized twice"
        );
    }

    #[test]
    fn values_beyond_f16_are_an_error() {
        assert_eq!(to_f16_bytes(&[1.0, 70000.0]), Err(1));
        assert_eq!(to_f16_bytes(&[65504.0]).unwrap(), [0xff, 0x7b]);
    }
}
