//! `charlm import`: a character-level LSTM or GRU trained elsewhere (PyTorch,
//! Keras) as charlm's parameters, ready for [`crate::export::export`].
//!
//! The weights come in a safetensors file (what `safetensors.torch.save_file`
//! and `safetensors.numpy.save_file` write), the vocabulary as a JSON list
//! with one entry per id of the source model: a one-character string, or
//! `"<pad>"`, or `"<eos>"`; or as a JSON object from those entries to their
//! ids (Keras's `tokenizer.word_index`, a PyTorch script's `stoi`), where
//! id 0 may be left out and is then padding. The model must be what charlm runs: one-hot (or
//! embedded) characters into 1-4 stacked LSTM or GRU layers of one hidden
//! size, then one linear layer to the vocabulary. Anything else in the file
//! is refused by name rather than left out, so an import never quietly
//! computes another function.
//!
//! Names and layouts:
//!
//! | source | recurrent layer `k` | output | input |
//! |---|---|---|---|
//! | PyTorch `nn.LSTM`/`nn.GRU` | `weight_ih_lk`, `weight_hh_lk`, `bias_ih_lk`, `bias_hh_lk` (modules in their names' natural order) | `nn.Linear`: `[V, H]` weight, `[V]` bias | one-hot, or an `nn.Embedding` `[V, E]` |
//! | Keras `LSTM`/`GRU` | `kernel` `[I, G*H]`, `recurrent_kernel` `[H, G*H]`, `bias` | `Dense`: `[H, V]` kernel, `[V]` bias | one-hot, or an `Embedding` `[V, E]` |
//!
//! PyTorch's gate orders are charlm's (LSTM `i,f,g,o`, GRU `r,z,n`). Keras's
//! LSTM has the same order and one bias (it becomes `b_ih`, `b_hh` is
//! zero); its GRU orders `z,r,h` (reordered here) and, with
//! `reset_after=True` (the default since TensorFlow 2), keeps the input
//! and recurrent biases apart as a `[2, G*H]` bias, which is PyTorch's
//! formula. A Keras GRU with `reset_after=False` computes another function
//! and is refused. Keras's layers are ordered by their names' natural
//! order (`lstm`, `lstm_1`, `lstm_2`: Keras's own naming).
//!
//! Activations cannot be read from weights: the defaults (sigmoid gates,
//! tanh) are assumed, which is what both frameworks' LSTM and GRU use
//! unless told otherwise (Keras before 2.3 defaulted to `hard_sigmoid`;
//! such a model computes another function). The output layer's activation
//! (Keras's `softmax`) does not matter: charlm samples from the logits, and
//! never padding (the source's softmax gave padding's logit a share, which
//! training pushes towards zero).
//!
//! An embedding is folded into layer 0's input table (`E W_ih^T`, one row
//! per id, summed in f64 and rounded once): a one-hot input times a matrix
//! is a row lookup, so the runtime needs no embedding step. The ids are
//! renumbered to charlm's order (padding 0, the symbols in the list's
//! order, `<eos>` last); a source without padding gets a zero row for it
//! (never fed, never predicted), one without `<eos>` a zero row whose
//! logit is -65504 (f16's lowest), so that texts end at `--max-chars`: it
//! is never drawn greedily nor at temperatures up to 1,000 (its weight,
//! about `exp(-65504 / T)` of the others', underflows or falls below the
//! draw's resolution of 2^-24; at far higher temperatures, where every
//! character is about as likely as any other, it can be drawn too).

use std::collections::{BTreeMap, BTreeSet};

use charlm_runtime::format::{Arch, CellKind, MAX_HIDDEN, MAX_LAYERS, MAX_VOCAB};
use safetensors::{Dtype, SafeTensors};

use crate::error::CliError;
use crate::params::{Layout, transpose};
use crate::vocab::Vocab;

/// Whose names and layouts the weights follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framework {
    /// `nn.LSTM` / `nn.GRU`, `nn.Linear`, `nn.Embedding`.
    PyTorch,
    /// Keras `LSTM` / `GRU`, `Dense`, `Embedding`.
    Keras,
}

impl std::fmt::Display for Framework {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Framework::PyTorch => "PyTorch",
            Framework::Keras => "Keras",
        })
    }
}

/// A model read from another framework, in charlm's layout.
#[derive(Debug)]
pub struct Imported {
    /// Whose file it was.
    pub framework: Framework,
    /// charlm's tensors for the architecture.
    pub layout: Layout,
    /// The parameters, each already rounded to the nearest f16 (from the
    /// source's own precision, once).
    pub params: Vec<f32>,
    /// The same with the weight matrices as the source has them (to f32):
    /// what i8 weights are quantized from, as `charlm export --weights i8`
    /// quantizes a run's f32 parameters (biases as in `params`).
    pub matrices_f32: Vec<f32>,
    /// The renumbered vocabulary.
    pub vocab: Vocab,
    /// Width of the embedding folded into the input table, if there was one.
    pub embedding: Option<usize>,
    /// The source had no padding id (charlm's id 0 was added).
    pub pad_added: bool,
    /// The source had no `<eos>` (charlm's is never predicted).
    pub eos_added: bool,
}

/// The logit of an `<eos>` the source model did not have: f16's lowest, so
/// that it is never drawn at any temperature a text is sampled at (see the
/// module docs for the limit).
pub const ABSENT_EOS_LOGIT: f32 = -65504.0;

/// Whether a model's parameters (in `layout`'s order) never end a text:
/// its `<eos>` (the last id) is the one [`import`] adds to a source model
/// that had none, a zero row of the output layer with the bias
/// [`ABSENT_EOS_LOGIT`].
pub fn never_ends(layout: &Layout, params: &[f32]) -> bool {
    let h = usize::from(layout.arch.hidden);
    let row = &params[layout.out_w.end - h..layout.out_w.end];
    params[layout.out_b.end - 1] == ABSENT_EOS_LOGIT && row.iter().all(|&w| w == 0.0)
}

/// Makes the `<eos>` of a model that [`never_ends`] one that training can
/// learn: its bias becomes the lowest of the other characters' (softmax's
/// gradient cannot move a logit of -65504 back into range at any useful
/// learning rate).
pub fn learnable_end(layout: &Layout, params: &mut [f32]) {
    let b = layout.out_b.clone();
    // (id 0, padding, is never predicted)
    let lowest = params[b.start + 1..b.end - 1]
        .iter()
        .fold(f32::INFINITY, |m, &x| m.min(x));
    params[b.end - 1] = if lowest.is_finite() { lowest } else { 0.0 };
}

/// One tensor of the file, as f64.
#[derive(Clone)]
struct Tensor {
    shape: Vec<usize>,
    data: Vec<f64>,
}

impl Tensor {
    fn shape_text(&self) -> String {
        format!("{:?}", self.shape)
    }

    /// Element `[r, c]` of a matrix.
    fn at(&self, r: usize, c: usize) -> f64 {
        self.data[r * self.shape[1] + c]
    }

    /// The transpose of a matrix.
    fn transposed(&self) -> Tensor {
        let (r, c) = (self.shape[0], self.shape[1]);
        Tensor {
            shape: vec![c, r],
            data: transpose(&self.data, r, c),
        }
    }
}

/// The file's tensors by name (Keras's `:0` suffixes dropped), and which
/// have been given a place.
struct Tensors {
    all: BTreeMap<String, Tensor>,
    used: BTreeSet<String>,
}

impl Tensors {
    fn read(bytes: &[u8]) -> Result<Tensors, CliError> {
        let st = SafeTensors::deserialize(bytes).map_err(|e| {
            // What PyTorch users save by habit is named as such.
            let how = "save the weights with safetensors.torch.save_file(model.state_dict(), F) or safetensors.numpy.save_file";
            CliError::invalid(if bytes.starts_with(b"PK\x03\x04") {
                format!("a zip archive, as torch.save writes, not a safetensors file: {how}")
            } else if bytes.first() == Some(&0x80) && bytes.get(1).is_some_and(|v| (2..=5).contains(v)) {
                format!("a Python pickle (torch.save's older format, or a whole pickled model), not a safetensors file: {how}")
            } else {
                format!("not a safetensors file ({e}): {how}")
            })
        })?;
        let mut all = BTreeMap::new();
        for (name, view) in st.tensors() {
            let raw = view.data();
            let data: Vec<f64> = match view.dtype() {
                Dtype::F64 => raw
                    .chunks_exact(8)
                    .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")))
                    .collect(),
                Dtype::F32 => raw
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")) as f64)
                    .collect(),
                Dtype::F16 => raw
                    .chunks_exact(2)
                    .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f64())
                    .collect(),
                Dtype::BF16 => raw
                    .chunks_exact(2)
                    .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f64())
                    .collect(),
                other => {
                    return Err(CliError::invalid(format!(
                        "tensor {name} holds {other:?}: weights must be floating point (f64, f32, f16 or bf16)"
                    )));
                }
            };
            let shape = view.shape().to_vec();
            if !(1..=2).contains(&shape.len()) {
                return Err(CliError::invalid(format!(
                    "tensor {name} has shape {shape:?}: an LSTM/GRU, embedding or linear layer has vectors and matrices only"
                )));
            }
            // A value charlm cannot hold, named where the file has it.
            if let Some((i, &v)) = data
                .iter()
                .enumerate()
                .find(|(_, v)| !f16_nearest(**v).is_finite())
            {
                let at = match shape[..] {
                    [_, cols] => format!("[{}, {}]", i / cols, i % cols),
                    _ => format!("[{i}]"),
                };
                return Err(CliError::invalid(if v.is_finite() {
                    format!("tensor {name}{at} = {v} does not fit in f16 (largest magnitude 65504)")
                } else {
                    format!(
                        "tensor {name}{at} = {v}: the weights hold a value that is not a finite number"
                    )
                }));
            }
            let key = name.strip_suffix(":0").unwrap_or(&name).to_string();
            all.insert(key, Tensor { shape, data });
        }
        // Tied weights saved once (`safetensors.torch.save_model`) keep one
        // of their names (the first in order: `decoder.weight` before
        // `encoder.weight`, `head` before `tok_emb`); the file's metadata
        // maps each dropped name to the kept one. The dropped names are
        // given back, so the tensor serves both places.
        if let Ok((_, meta)) = SafeTensors::read_metadata(bytes) {
            for (dropped, kept) in meta.metadata().iter().flatten() {
                let same_kind = dropped.rsplit('.').next() == kept.rsplit('.').next();
                if same_kind
                    && !all.contains_key(dropped)
                    && let Some(t) = all.get(kept)
                {
                    all.insert(dropped.clone(), t.clone());
                }
            }
        }
        Ok(Tensors {
            all,
            used: BTreeSet::new(),
        })
    }

    /// Tensor `name`, marked as used.
    fn take(&mut self, name: &str) -> Option<&Tensor> {
        let t = self.all.get(name)?;
        self.used.insert(name.to_string());
        Some(t)
    }

    /// Tensor `name`, which must exist.
    fn need(&mut self, name: &str) -> Result<&Tensor, CliError> {
        self.take(name)
            .ok_or_else(|| CliError::invalid(format!("tensor {name} is missing")))
    }

    /// Tensor `name`, which must exist and be a matrix.
    fn need_matrix(&mut self, name: &str) -> Result<&Tensor, CliError> {
        let t = self.need(name)?;
        if t.shape.len() != 2 {
            return Err(CliError::invalid(format!(
                "tensor {name} has shape {}, expected a matrix",
                t.shape_text()
            )));
        }
        Ok(t)
    }

    /// Names of the tensors not yet used, with `shape`.
    fn unused_of_shape(&self, shape: &[usize]) -> Vec<String> {
        self.all
            .iter()
            .filter(|(n, t)| !self.used.contains(*n) && t.shape == shape)
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Refuses a file with tensors that have no place in the model.
    fn all_used(&self) -> Result<(), CliError> {
        match self.all.iter().find(|(n, _)| !self.used.contains(*n)) {
            None => Ok(()),
            Some((name, t)) => Err(CliError::invalid(format!(
                "tensor {name} {} has no place in a charlm model (one-hot or embedded characters, 1-{MAX_LAYERS} LSTM or GRU layers, one linear output layer)",
                t.shape_text()
            ))),
        }
    }
}

/// One recurrent layer in PyTorch's layout (`[G*H, I]`, `[G*H, H]`,
/// `[G*H]`, `[G*H]`), gates in charlm's order.
struct Layer {
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Vec<f64>,
    b_hh: Vec<f64>,
}

/// The model in PyTorch's layout with the source's ids.
struct Source {
    cell: CellKind,
    hidden: usize,
    layers: Vec<Layer>,
    /// `[V, E]`.
    embedding: Option<Tensor>,
    /// `[V, H]`.
    out_w: Tensor,
    /// `[V]`.
    out_b: Vec<f64>,
}

/// The vocabulary list: which source id is padding, which `<eos>`, and the
/// symbols with their source ids in list order ([`read_vocabulary`]).
pub struct SourceVocab {
    pad: Option<usize>,
    eos: Option<usize>,
    symbols: Vec<(char, usize)>,
    len: usize,
}

/// The vocabulary's two JSON forms: a list in id order, or an object from
/// entry to id (Keras's `tokenizer.word_index`, a PyTorch script's `stoi`).
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum VocabJson {
    List(Vec<String>),
    // u64, not usize: an id beyond a 32-bit usize is still "beyond" (below).
    Map(BTreeMap<String, u64>),
}

/// The first key a JSON object repeats, if any (read from the text, as a
/// parsed object keeps only one of them).
struct NoRepeats(Option<String>);

impl<'de> serde::Deserialize<'de> for NoRepeats {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Keys;
        impl<'de> serde::de::Visitor<'de> for Keys {
            type Value = NoRepeats;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<NoRepeats, A::Error> {
                let mut seen = BTreeSet::new();
                let mut repeated = None;
                while let Some((k, _)) = map.next_entry::<String, serde::de::IgnoredAny>()? {
                    if !seen.insert(k.clone()) && repeated.is_none() {
                        repeated = Some(k);
                    }
                }
                Ok(NoRepeats(repeated))
            }
        }
        d.deserialize_map(Keys)
    }
}

/// The entries in id order. In the object form id 0 may be left out: it
/// is then padding (Keras's tokenizer reserves it so).
fn vocab_list(json: &str) -> Result<Vec<String>, CliError> {
    const FORMS: &str = "the vocabulary must be a JSON list of strings, one per id (a character, \"<pad>\" or \"<eos>\"), or an object from those strings to their ids";
    let mut value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| CliError::invalid(format!("{FORMS}: {e}")))?;
    if value.is_object() {
        // A key given twice (a JSON object's later value silently wins).
        let keys: NoRepeats =
            serde_json::from_str(json).map_err(|e| CliError::invalid(format!("{FORMS}: {e}")))?;
        if let Some(k) = keys.0 {
            return Err(CliError::invalid(format!(
                "vocabulary: {k:?} is given twice"
            )));
        }
    }
    // An id written as a float that is whole (1.0, as Python's json.dump
    // of a float writes it) is that whole number.
    if let serde_json::Value::Object(map) = &mut value {
        for id in map.values_mut() {
            if let Some(f) = id
                .as_f64()
                .filter(|f| f.fract() == 0.0 && (0.0..1e15).contains(f))
            {
                *id = serde_json::Value::from(f as u64);
            }
        }
    }
    // Which part does not fit, in words (serde's own message for an
    // untagged enum names only the enum).
    let misfit = match &value {
        serde_json::Value::Array(list) => list
            .iter()
            .position(|v| !v.is_string())
            .map(|i| format!("entry {i} is {}, not a string", list[i])),
        serde_json::Value::Object(map) => {
            map.iter()
                .find(|(_, id)| id.as_u64().is_none())
                .map(
                    |(k, id)| match id.as_f64().filter(|f| f.fract() == 0.0 && *f >= 0.0) {
                        // A whole number too large for the conversion above.
                        Some(_) => format!(
                            "the id of {k:?} is {id}, beyond the {MAX_VOCAB} ids a model holds"
                        ),
                        None => format!("the id of {k:?} is {id}, not a whole number from 0"),
                    },
                )
        }
        other => Some(format!("it is {}", kind(other))),
    };
    if let Some(why) = misfit {
        return Err(CliError::invalid(format!("{FORMS}: {why}")));
    }
    let parsed: VocabJson =
        serde_json::from_value(value).map_err(|e| CliError::invalid(format!("{FORMS}: {e}")))?;
    let map = match parsed {
        VocabJson::List(list) => return Ok(list),
        VocabJson::Map(map) => map,
    };
    let last = map.values().max().copied();
    if let Some(id) = last.filter(|&id| id >= MAX_VOCAB as u64) {
        return Err(CliError::invalid(format!(
            "vocabulary: id {id} is beyond the {MAX_VOCAB} ids a model holds"
        )));
    }
    // Every id is now below MAX_VOCAB, so fits a usize.
    let mut list: Vec<Option<String>> = vec![None; last.map_or(0, |id| id as usize + 1)];
    for (entry, id) in &map {
        let id = *id as usize;
        if let Some(first) = list[id].replace(entry.clone()) {
            return Err(CliError::invalid(format!(
                "vocabulary: id {id} is both {first:?} and {entry:?}"
            )));
        }
    }
    list.into_iter()
        .enumerate()
        .map(|(id, e)| match (id, e) {
            (_, Some(e)) => Ok(e),
            (0, None) => Ok("<pad>".to_string()),
            (id, None) => Err(CliError::invalid(format!(
                "vocabulary: no entry has id {id}"
            ))),
        })
        .collect()
}

/// A JSON value's kind, for messages.
fn kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Reads a vocabulary in either JSON form (see [`import`]).
pub fn read_vocabulary(json: &str) -> Result<SourceVocab, CliError> {
    // A byte-order mark (some Windows editors write one) is not JSON.
    let list = vocab_list(json.strip_prefix('\u{feff}').unwrap_or(json))?;
    let mut v = SourceVocab {
        pad: None,
        eos: None,
        symbols: Vec::new(),
        len: list.len(),
    };
    let mut seen = BTreeMap::new();
    for (id, entry) in list.iter().enumerate() {
        let special = match entry.as_str() {
            "<pad>" => Some(&mut v.pad),
            "<eos>" => Some(&mut v.eos),
            _ => None,
        };
        if let Some(slot) = special {
            if let Some(first) = slot.replace(id) {
                return Err(CliError::invalid(format!(
                    "vocabulary: {entry} at ids {first} and {id}"
                )));
            }
            continue;
        }
        let mut chars = entry.chars();
        let (Some(c), None) = (chars.next(), chars.next()) else {
            return Err(CliError::invalid(format!(
                "vocabulary: id {id} is {entry:?}, neither one character nor \"<pad>\" or \"<eos>\""
            )));
        };
        if let Some(first) = seen.insert(c, id) {
            return Err(CliError::invalid(format!(
                "vocabulary: {entry:?} at ids {first} and {id}"
            )));
        }
        v.symbols.push((c, id));
    }
    if v.symbols.is_empty() {
        return Err(CliError::invalid("vocabulary: no characters"));
    }
    if v.symbols.len() + 2 > MAX_VOCAB {
        return Err(CliError::invalid(format!(
            "vocabulary: {} characters; a model holds at most {}",
            v.symbols.len(),
            MAX_VOCAB - 2
        )));
    }
    Ok(v)
}

/// Gates per cell from a stacked dimension `g*h`.
fn cell_of(gh: usize, hidden: usize, what: &str) -> Result<CellKind, CliError> {
    match gh.checked_div(hidden) {
        Some(4) if gh == 4 * hidden => Ok(CellKind::Lstm),
        Some(3) if gh == 3 * hidden => Ok(CellKind::Gru),
        _ => Err(CliError::invalid(format!(
            "{what}: {gh} rows for hidden size {hidden} is neither an LSTM (4 gates) nor a GRU (3)"
        ))),
    }
}

fn vector(t: &Tensor, n: usize, name: &str) -> Result<Vec<f64>, CliError> {
    if t.shape != [n] {
        return Err(CliError::invalid(format!(
            "tensor {name} has shape {}, expected [{n}]",
            t.shape_text()
        )));
    }
    Ok(t.data.clone())
}

fn matrix(t: &Tensor, rows: usize, cols: usize, name: &str) -> Result<Tensor, CliError> {
    if t.shape != [rows, cols] {
        return Err(CliError::invalid(format!(
            "tensor {name} has shape {}, expected [{rows}, {cols}]",
            t.shape_text()
        )));
    }
    Ok(Tensor {
        shape: t.shape.clone(),
        data: t.data.clone(),
    })
}

/// `name` split as `(prefix, k)` when it is `prefix + stem + k`.
fn layer_of<'a>(name: &'a str, stem: &str) -> Option<(&'a str, usize)> {
    let at = name.rfind(stem)?;
    let k = name[at + stem.len()..].parse().ok()?;
    Some((&name[..at], k))
}

fn pytorch(t: &mut Tensors) -> Result<Source, CliError> {
    let names: Vec<String> = t.all.keys().cloned().collect();
    if let Some(n) = names.iter().find(|n| n.ends_with("_reverse")) {
        return Err(CliError::invalid(format!(
            "tensor {n}: a bidirectional RNN reads the text backwards too, so it cannot generate one character after another"
        )));
    }
    if let Some(n) = names.iter().find(|n| n.contains("weight_hr_l")) {
        return Err(CliError::invalid(format!(
            "tensor {n}: an LSTM with proj_size is not one charlm runs"
        )));
    }
    // Recurrent modules (a prefix each, `rnn.` of `rnn.weight_hh_l0`): one
    // `nn.LSTM(num_layers=2)`, or `lstm1`, `lstm2` stacked by hand. A
    // layer is known by either of its matrices (the other is then named
    // missing). An `nn.LSTMCell`/`nn.GRUCell` (`cell.weight_hh`, no `_l0`)
    // is a module of one layer.
    let mut modules = BTreeMap::<String, BTreeSet<usize>>::new();
    let mut cells = BTreeSet::<String>::new();
    for n in &names {
        let layer = layer_of(n, "weight_hh_l").or_else(|| layer_of(n, "weight_ih_l"));
        if let Some((p, k)) = layer {
            modules.entry(p.to_string()).or_default().insert(k);
        } else if let Some(p) = n
            .strip_suffix("weight_hh")
            .or_else(|| n.strip_suffix("weight_ih"))
        {
            cells.insert(p.to_string());
            modules.entry(p.to_string()).or_default().insert(0);
        }
    }
    if let Some(p) = cells.iter().find(|p| modules[*p].len() > 1) {
        return Err(CliError::invalid(format!(
            "{p}weight_hh and {p}weight_hh_l*: one module is either a cell or a stack of layers"
        )));
    }
    // Layer 0's input: the characters (one-hot or embedded), which tells
    // the first module where its width is not the hidden size.
    let reads_characters = |t: &Tensors, p: &str| {
        let l0 = |s: &str| {
            if cells.contains(p) {
                format!("{p}{s}")
            } else {
                format!("{p}{s}_l0")
            }
        };
        let (ih, hh) = (t.all.get(&l0("weight_ih")), t.all.get(&l0("weight_hh")));
        matches!((ih, hh), (Some(ih), Some(hh)) if ih.shape.len() == 2 && hh.shape.len() == 2 && ih.shape[1] != hh.shape[1])
    };
    let prefixes: Vec<String> = modules.keys().cloned().collect();
    let first = prefixes.iter().position(|p| reads_characters(t, p));
    let order = stack_order(
        &prefixes,
        first,
        "nn.LSTM(num_layers=N) or modules numbered in order (rnn1, rnn2)",
    )?;
    let modules: Vec<(String, BTreeSet<usize>)> = order
        .into_iter()
        .map(|p| {
            let ks = modules[&p].clone();
            (p, ks)
        })
        .collect();
    let total: usize = modules.iter().map(|(_, ks)| ks.len()).sum();
    if total > MAX_LAYERS {
        return Err(CliError::invalid(format!(
            "{total} recurrent layers: charlm runs 1 to {MAX_LAYERS}"
        )));
    }
    let Some((first, _)) = modules.first() else {
        return Err(CliError::invalid("no recurrent layer"));
    };
    let l0 = if cells.contains(first) {
        format!("{first}weight_hh")
    } else {
        format!("{first}weight_hh_l0")
    };
    let w_hh0 = t.need_matrix(&l0)?;
    let (gh, hidden) = (w_hh0.shape[0], w_hh0.shape[1]);
    let cell = cell_of(gh, hidden, &l0)?;
    let mut layers = Vec::new();
    let mut input = 0;
    for (prefix, ks) in &modules {
        if ks.iter().copied().ne(0..ks.len()) {
            return Err(CliError::invalid(format!(
                "layers {ks:?} of {prefix}weight_hh_l*: a module's layers are numbered 0, 1, ... in a row"
            )));
        }
        // PyTorch's `bias=False` drops every bias of a module; one that
        // has some but not all was saved incompletely.
        let cell_module = cells.contains(prefix);
        let name = |s: &str, k: usize| {
            if cell_module {
                format!("{prefix}{s}")
            } else {
                format!("{prefix}{s}_l{k}")
            }
        };
        let biases = (0..ks.len()).flat_map(|k| [name("bias_ih", k), name("bias_hh", k)]);
        let (present, absent): (Vec<String>, Vec<String>) =
            biases.partition(|b| t.all.contains_key(b));
        if let (Some(have), Some(lack)) = (present.first(), absent.first()) {
            return Err(CliError::invalid(format!(
                "tensor {lack} is missing ({have} is there: a module has all its biases or, with bias=False, none)"
            )));
        }
        for k in 0..ks.len() {
            let name = |s: &str| name(s, k);
            let w_ih = t.need_matrix(&name("weight_ih"))?;
            let width = if layers.is_empty() {
                w_ih.shape[1]
            } else {
                hidden
            };
            if layers.is_empty() {
                input = width;
            }
            let w_ih = matrix(w_ih, gh, width, &name("weight_ih"))?;
            let w_hh = matrix(t.need(&name("weight_hh"))?, gh, hidden, &name("weight_hh"))?;
            let bias = |t: &mut Tensors, s: &str| match t.take(&name(s)) {
                Some(b) => vector(b, gh, &name(s)),
                None => Ok(vec![0.0; gh]),
            };
            let b_ih = bias(t, "bias_ih")?;
            let b_hh = bias(t, "bias_hh")?;
            layers.push(Layer {
                w_ih,
                w_hh,
                b_ih,
                b_hh,
            });
        }
    }
    head(t, cell, hidden, layers, input, false)
}

/// A name without its numbers (each run of digits, with a `_` or `-`
/// before it), and the numbers with where they stood in what is left.
fn numbered(name: &str) -> (String, BTreeMap<usize, u64>) {
    let (mut text, mut numbers) = (String::new(), BTreeMap::new());
    let mut chars = name.chars().peekable();
    while let Some(c) = chars.next() {
        let digit_follows = chars.peek().is_some_and(char::is_ascii_digit);
        if c.is_ascii_digit() || ((c == '_' || c == '-') && digit_follows) {
            let mut n = c.to_digit(10).map_or(0, u64::from);
            while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
                n = n.saturating_mul(10).saturating_add(u64::from(d));
                chars.next();
            }
            numbers.insert(text.len(), n);
        } else {
            text.push(c);
        }
    }
    (text, numbers)
}

/// The order in which separately built recurrent modules (their name
/// prefixes) are stacked, where it can be told: from their names where
/// they differ only in numbers (`rnn1`, `rnn2`; `lstm`, `lstm2`; Keras's
/// `lstm`, `lstm_1`), a name without the number first; else from their
/// shapes where two modules are stacked and one of them (`first`) reads
/// the characters. Anything else (`lstm_top`, `lstm_bottom` of one width)
/// is refused rather than guessed: the file's names are its only record
/// of the order. `how` says how to save them so that it can be told.
fn stack_order(
    prefixes: &[String],
    first: Option<usize>,
    how: &str,
) -> Result<Vec<String>, CliError> {
    if prefixes.len() <= 1 {
        return Ok(prefixes.to_vec());
    }
    let keys: Vec<(String, BTreeMap<usize, u64>)> = prefixes.iter().map(|p| numbered(p)).collect();
    let places: BTreeSet<usize> = keys.iter().flat_map(|(_, n)| n.keys().copied()).collect();
    let by_name = keys.iter().all(|(text, _)| *text == keys[0].0).then(|| {
        // Each module's numbers, -1 where it has none.
        let rank = |n: &BTreeMap<usize, u64>| -> Vec<i128> {
            places
                .iter()
                .map(|at| n.get(at).map_or(-1, |&v| i128::from(v)))
                .collect()
        };
        let mut order: Vec<usize> = (0..prefixes.len()).collect();
        order.sort_by_key(|&i| rank(&keys[i].1));
        let distinct = order
            .windows(2)
            .all(|w| rank(&keys[w[0]].1) != rank(&keys[w[1]].1));
        distinct.then_some(order)
    });
    let order = match (by_name.flatten(), first) {
        (Some(order), Some(f)) if order[0] != f => {
            return Err(CliError::invalid(format!(
                "recurrent layers {}: their names put {} first, but {} is the one that reads the characters",
                prefixes.join(", "),
                prefixes[order[0]],
                prefixes[f]
            )));
        }
        (Some(order), _) => order,
        (None, Some(f)) if prefixes.len() == 2 => vec![f, 1 - f],
        (None, _) => {
            return Err(CliError::invalid(format!(
                "recurrent layers {}: their order cannot be told from their names (nor from their shapes): save them as {how}",
                prefixes.join(", ")
            )));
        }
    };
    Ok(order.into_iter().map(|i| prefixes[i].clone()).collect())
}

/// Keras's `[I, G*H]` blocks `z, r, h` to rows `r, z, n` (GRU), or the
/// transpose as it is (LSTM: `i, f, c, o` is charlm's order).
fn keras_rows(kernel: &Tensor, cell: CellKind, hidden: usize) -> Tensor {
    let t = kernel.transposed();
    if cell == CellKind::Lstm {
        return t;
    }
    let cols = t.shape[1];
    let block = |g: usize| &t.data[g * hidden * cols..(g + 1) * hidden * cols];
    let data = [block(1), block(0), block(2)].concat();
    Tensor {
        shape: t.shape.clone(),
        data,
    }
}

/// The same reordering for a `[G*H]` bias.
fn keras_bias(b: &[f64], cell: CellKind, hidden: usize) -> Vec<f64> {
    if cell == CellKind::Lstm {
        return b.to_vec();
    }
    let block = |g: usize| &b[g * hidden..(g + 1) * hidden];
    [block(1), block(0), block(2)].concat()
}

fn keras(t: &mut Tensors) -> Result<Source, CliError> {
    if let Some(n) = t
        .all
        .keys()
        .find(|n| n.contains("backward_") || n.contains("bidirectional"))
    {
        return Err(CliError::invalid(format!(
            "tensor {n}: a Bidirectional layer reads the text backwards too, so it cannot generate one character after another"
        )));
    }
    let prefixes: Vec<String> = t
        .all
        .keys()
        .filter_map(|n| n.strip_suffix("recurrent_kernel").map(str::to_string))
        .collect();
    if prefixes.is_empty() || prefixes.len() > MAX_LAYERS {
        return Err(CliError::invalid(format!(
            "{} recurrent layers: charlm runs 1 to {MAX_LAYERS}",
            prefixes.len()
        )));
    }
    // Layer 0 reads the characters: its kernel is not `hidden` rows tall.
    let reads_characters = |p: &str| {
        let (k, rk) = (
            t.all.get(&format!("{p}kernel")),
            t.all.get(&format!("{p}recurrent_kernel")),
        );
        matches!((k, rk), (Some(k), Some(rk)) if k.shape.len() == 2 && rk.shape.len() == 2 && k.shape[0] != rk.shape[0])
    };
    let first = prefixes.iter().position(|p| reads_characters(p));
    let prefixes = stack_order(
        &prefixes,
        first,
        "layers named in order, as Keras names them by default (lstm, lstm_1, ...)",
    )?;
    let first = &prefixes[0];
    let rk = t.need_matrix(&format!("{first}recurrent_kernel"))?;
    let (hidden, gh) = (rk.shape[0], rk.shape[1]);
    let cell = cell_of(gh, hidden, &format!("{first}recurrent_kernel"))?;
    let mut layers = Vec::new();
    let mut input = 0;
    for (k, p) in prefixes.iter().enumerate() {
        let kernel = t.need_matrix(&format!("{p}kernel"))?;
        let width = if k == 0 { kernel.shape[0] } else { hidden };
        if k == 0 {
            input = width;
        }
        let kernel = matrix(kernel, width, gh, &format!("{p}kernel"))?;
        let recurrent = matrix(
            t.need(&format!("{p}recurrent_kernel"))?,
            hidden,
            gh,
            &format!("{p}recurrent_kernel"),
        )?;
        let (b_ih, b_hh) = match t.take(&format!("{p}bias")) {
            None => (vec![0.0; gh], vec![0.0; gh]),
            Some(b) if cell == CellKind::Gru && b.shape == [gh] => {
                return Err(CliError::invalid(format!(
                    "tensor {p}bias has shape [{gh}]: a Keras GRU with reset_after=False applies the reset gate before the product, another function than charlm's (and PyTorch's); rebuild it with reset_after=True, the default since TensorFlow 2"
                )));
            }
            Some(b) if cell == CellKind::Gru => {
                let b = matrix(b, 2, gh, &format!("{p}bias"))?;
                (b.data[..gh].to_vec(), b.data[gh..].to_vec())
            }
            Some(b) => (vector(b, gh, &format!("{p}bias"))?, vec![0.0; gh]),
        };
        layers.push(Layer {
            w_ih: keras_rows(&kernel, cell, hidden),
            w_hh: keras_rows(&recurrent, cell, hidden),
            b_ih: keras_bias(&b_ih, cell, hidden),
            b_hh: keras_bias(&b_hh, cell, hidden),
        });
    }
    head(t, cell, hidden, layers, input, true)
}

/// The model around `layers`: the input embedding (when layer 0 is
/// `input` wide and that is not the vocabulary, which the output layer's
/// size tells) and the output layer, from the tensors left: `[V, H]` +
/// `[V]` (PyTorch) or `[H, V]` + `[V]` (Keras, `keras`).
fn head(
    t: &mut Tensors,
    cell: CellKind,
    hidden: usize,
    layers: Vec<Layer>,
    input: usize,
    keras: bool,
) -> Result<Source, CliError> {
    // The output weight: the one matrix left with a side of `hidden` that
    // is not the embedding (which, as wide as the hidden size, only its
    // name tells: `embed`, `tok_emb`, `wte`, PyTorch's example's `encoder`).
    let is_embedding = |n: &str| {
        let n = n.to_ascii_lowercase();
        ["emb", "tok", "wte", "encoder", "lookup"]
            .iter()
            .any(|k| n.contains(k))
    };
    let candidates: Vec<String> = t
        .all
        .iter()
        .filter(|(n, w)| {
            !t.used.contains(*n)
                && w.shape.len() == 2
                && (if keras { w.shape[0] } else { w.shape[1] }) == hidden
                && !(is_embedding(n) && w.shape[1] == input)
        })
        .map(|(n, _)| n.clone())
        .collect();
    // Tied weights (`decoder.weight = encoder.weight`): the file holds
    // the shared matrix once, as the embedding (safetensors' save_model
    // keeps one name), and it is the output layer's weight as well.
    let tied = (candidates.is_empty() && !keras && input == hidden)
        .then(|| {
            t.all.iter().find(|(n, w)| {
                !t.used.contains(*n)
                    && is_embedding(n)
                    && w.shape.len() == 2
                    && w.shape[1] == hidden
            })
        })
        .flatten()
        .map(|(n, _)| n.clone());
    if let Some(name) = tied {
        let w = t.need(&name)?;
        let shared = matrix(w, w.shape[0], hidden, &name)?;
        let vocab = shared.shape[0];
        // (its layer's bias is under another name than the matrix kept)
        let out_b = lone_bias(t, vocab)?;
        return Ok(Source {
            cell,
            hidden,
            layers,
            embedding: Some(matrix(&shared, vocab, hidden, &name)?),
            out_w: shared,
            out_b,
        });
    }
    let [name] = &candidates[..] else {
        return Err(CliError::invalid(if candidates.is_empty() {
            format!(
                "no output layer: expected a {} matrix left after the recurrent layers",
                if keras {
                    "[hidden, vocabulary] Dense kernel"
                } else {
                    "[vocabulary, hidden] nn.Linear weight"
                }
            )
        } else {
            format!(
                "more than one output layer could be {}: charlm runs one linear layer after the recurrent ones",
                candidates.join(", ")
            )
        }));
    };
    let name = name.clone();
    let w = t.need(&name)?;
    let out_w = if keras {
        w.transposed()
    } else {
        matrix(w, w.shape[0], hidden, &name)?
    };
    let vocab = out_w.shape[0];
    // Its bias: the one of its own layer (`out.weight`: `out.bias`; a
    // layer built with bias=False has none), never another vector that
    // happens to be as long.
    let own_bias = name
        .strip_suffix("weight")
        .or_else(|| name.strip_suffix("kernel"))
        .map(|layer| format!("{layer}bias"));
    let out_b = match own_bias {
        Some(b) => match t.take(&b) {
            Some(bt) => vector(bt, vocab, &b)?,
            None => vec![0.0; vocab],
        },
        None => lone_bias(t, vocab)?,
    };
    // The input: an embedding `[V, E]` where the file has one (E may
    // equal V), else one-hot characters, which needs layer 0 to be `V`
    // wide.
    let found = t.unused_of_shape(&[vocab, input]);
    let embedding = match &found[..] {
        [] if input == vocab => None,
        [] => {
            return Err(CliError::invalid(format!(
                "layer 0 takes {input} inputs and the output layer has {vocab} ids, and no [{vocab}, {input}] embedding is in the file"
            )));
        }
        [e] => {
            let e = e.clone();
            let e = t.need(&e)?;
            Some(Tensor {
                shape: e.shape.clone(),
                data: e.data.clone(),
            })
        }
        more => {
            return Err(CliError::invalid(format!(
                "more than one embedding could be {}",
                more.join(", ")
            )));
        }
    };
    Ok(Source {
        cell,
        hidden,
        layers,
        embedding,
        out_w,
        out_b,
    })
}

/// The output bias where the output weight's name does not tell its
/// layer's: the one `[vocab]` vector left, if any (zeros where none is).
fn lone_bias(t: &mut Tensors, vocab: usize) -> Result<Vec<f64>, CliError> {
    match &t.unused_of_shape(&[vocab])[..] {
        [] => Ok(vec![0.0; vocab]),
        [b] => {
            let b = b.clone();
            Ok(t.need(&b)?.data.clone())
        }
        more => Err(CliError::invalid(format!(
            "more than one output bias could be {}",
            more.join(", ")
        ))),
    }
}

/// `v` rounded to the nearest f16 (ties to even). `half`'s own
/// `f16::from_f64` drops the low 32 bits of the f64 first, so a value just
/// past a tie (an f32 such as -0.066802986, 0xbd88d001) rounds the wrong
/// way. Here `v` goes to f32 rounded to odd (toward zero, the last bit set
/// when inexact), which keeps the information the f32 -> f16 rounding
/// needs (13 bits more than f16's), then to f16 by `f16::from_f32`.
fn f16_nearest(v: f64) -> half::f16 {
    let mut f = v as f32;
    if f.is_finite() && f64::from(f) != v {
        if f64::from(f).abs() > v.abs() {
            // one step toward zero (f != 0 here: |f| > |v| >= 0)
            f = f32::from_bits(f.to_bits() - 1);
        }
        f = f32::from_bits(f.to_bits() | 1);
    }
    half::f16::from_f32(f)
}

/// Rounds `v` (element `i` of tensor `what`) to the nearest f16, as f32.
fn to_f16(v: f64, what: &str, i: usize) -> Result<f32, CliError> {
    if !v.is_finite() {
        return Err(CliError::invalid(format!(
            "{what}[{i}] = {v}: the weights hold a value that is not a finite number"
        )));
    }
    let h = f16_nearest(v);
    if !h.is_finite() {
        return Err(CliError::invalid(format!(
            "{what}[{i}] = {v} does not fit in f16 (largest magnitude 65504)"
        )));
    }
    Ok(h.to_f32())
}

/// Reads `weights` (safetensors) and `vocab_json` into charlm's layout.
pub fn import(weights: &[u8], vocab_json: &str) -> Result<Imported, CliError> {
    import_with(weights, &read_vocabulary(vocab_json)?)
}

/// [`import`] with the vocabulary already read ([`read_vocabulary`]), so
/// that a caller can tell the vocabulary's errors from the weights'.
pub fn import_with(weights: &[u8], sv: &SourceVocab) -> Result<Imported, CliError> {
    let mut t = Tensors::read(weights)?;
    let has = |end: &str| t.all.keys().any(|n| n.contains(end));
    let framework = match (
        has("weight_hh") || has("weight_ih"),
        has("recurrent_kernel"),
    ) {
        (true, false) => Framework::PyTorch,
        (false, true) => Framework::Keras,
        (true, true) => {
            return Err(CliError::invalid(
                "both PyTorch (weight_hh_l*) and Keras (recurrent_kernel) names: one model per file",
            ));
        }
        (false, false) => {
            return Err(CliError::invalid(
                "no recurrent layer: expected PyTorch nn.LSTM/nn.GRU tensors (weight_hh_l0, ...) or Keras LSTM/GRU ones (.../recurrent_kernel)",
            ));
        }
    };
    let src = match framework {
        Framework::PyTorch => pytorch(&mut t)?,
        Framework::Keras => keras(&mut t)?,
    };
    t.all_used()?;
    let vt = src.out_w.shape[0];
    if vt != sv.len {
        return Err(CliError::invalid(format!(
            "the model has {vt} ids and the vocabulary lists {}",
            sv.len
        )));
    }
    if src.hidden == 0 || src.hidden > MAX_HIDDEN {
        return Err(CliError::invalid(format!(
            "hidden size {}: charlm runs 1 to {MAX_HIDDEN}",
            src.hidden
        )));
    }

    // charlm's id k comes from source id `from[k]` (none: added).
    let from: Vec<Option<usize>> = std::iter::once(sv.pad)
        .chain(sv.symbols.iter().map(|&(_, id)| Some(id)))
        .chain(std::iter::once(sv.eos))
        .collect();
    let v = from.len();
    let arch = Arch {
        cell: src.cell,
        layers: src.layers.len() as u8,
        hidden: src.hidden as u16,
        vocab: v as u16,
    };
    let layout = Layout::new(arch);
    let mut params = vec![0.0f32; layout.len];
    let mut matrices_f32 = vec![0.0f32; layout.len];
    let gh = src.cell.gates() * src.hidden;

    // Every value is rounded from the source's precision (f64 here) to f16
    // once; `export` then finds each exactly representable. Matrices are
    // kept as f32 too, for i8.
    let mut put = |range: std::ops::Range<usize>, values: &[f64], what: &str, matrix: bool| {
        let both = params[range.clone()]
            .iter_mut()
            .zip(&mut matrices_f32[range]);
        for (i, ((p, e), &x)) in both.zip(values).enumerate() {
            *p = to_f16(x, what, i)?;
            *e = if matrix { x as f32 } else { *p };
        }
        Ok::<(), CliError>(())
    };

    // Layer 0's input table: row k is the input weights' column of the
    // source id (one-hot), or the embedding row times them.
    let l0 = &src.layers[0];
    let mut table = vec![0.0f64; v * gh];
    for (k, s) in from.iter().enumerate() {
        let Some(s) = *s else { continue };
        let row = &mut table[k * gh..(k + 1) * gh];
        match &src.embedding {
            None => {
                for (j, r) in row.iter_mut().enumerate() {
                    *r = l0.w_ih.at(j, s);
                }
            }
            Some(e) => {
                let width = e.shape[1];
                let emb = &e.data[s * width..(s + 1) * width];
                for (j, r) in row.iter_mut().enumerate() {
                    let w = &l0.w_ih.data[j * width..(j + 1) * width];
                    *r = emb.iter().zip(w).map(|(a, b)| a * b).sum();
                }
            }
        }
    }
    // A table entry f16 cannot hold, named by the source's id and gate
    // row (with an embedding, a product the file does not hold itself).
    if let Some(i) = table.iter().position(|&x| !f16_nearest(x).is_finite()) {
        let (k, j) = (i / gh, i % gh);
        let s = from[k].unwrap_or_default();
        return Err(CliError::invalid(format!(
            "layer 0's input for source id {s}, gate row {j}, is {}{}: it does not fit in f16 (largest magnitude 65504)",
            table[i],
            if src.embedding.is_some() {
                " (its embedding row times weight_ih_l0, which charlm folds into one table)"
            } else {
                ""
            }
        )));
    }
    for (l, (layer, ranges)) in src.layers.iter().zip(&layout.layers).enumerate() {
        if l == 0 {
            put(ranges[0].clone(), &table, "layer 0's input table", true)?;
        } else {
            put(
                ranges[0].clone(),
                &layer.w_ih.data,
                &format!("weight_ih_l{l}"),
                true,
            )?;
        }
        put(
            ranges[1].clone(),
            &layer.w_hh.data,
            &format!("weight_hh_l{l}"),
            true,
        )?;
        put(
            ranges[2].clone(),
            &layer.b_ih,
            &format!("bias_ih_l{l}"),
            false,
        )?;
        put(
            ranges[3].clone(),
            &layer.b_hh,
            &format!("bias_hh_l{l}"),
            false,
        )?;
    }
    let h = src.hidden;
    let mut out_w = vec![0.0f64; v * h];
    let mut out_b = vec![0.0f64; v];
    for (k, s) in from.iter().enumerate() {
        match *s {
            Some(s) => {
                out_w[k * h..(k + 1) * h].copy_from_slice(&src.out_w.data[s * h..(s + 1) * h]);
                out_b[k] = src.out_b[s];
            }
            None if k == v - 1 => out_b[k] = ABSENT_EOS_LOGIT as f64,
            None => {}
        }
    }
    put(layout.out_w.clone(), &out_w, "the output weight", true)?;
    put(layout.out_b.clone(), &out_b, "the output bias", false)?;

    let vocab = Vocab::from_symbols(sv.symbols.iter().map(|&(c, _)| c).collect());
    Ok(Imported {
        framework,
        layout,
        params,
        matrices_f32,
        vocab,
        embedding: src.embedding.as_ref().map(|e| e.shape[1]),
        pad_added: sv.pad.is_none(),
        eos_added: sv.eos.is_none(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use safetensors::tensor::TensorView;

    /// A tensor to write: name, shape, f32 values.
    type Spec = (String, Vec<usize>, Vec<f32>);

    /// The nearest f16 by brute force: the f16 neighbours of `v` and the
    /// exact distances to them (f64 subtraction of nearby values is exact).
    fn nearest_by_distance(v: f64) -> half::f16 {
        let guess = half::f16::from_f64(v);
        let bits = guess.to_bits();
        let mut best = guess;
        for b in [bits.wrapping_sub(1), bits, bits.wrapping_add(1)] {
            let c = half::f16::from_bits(b);
            if !c.is_finite() {
                continue;
            }
            let (d, e) = ((c.to_f64() - v).abs(), (best.to_f64() - v).abs());
            if d < e || (d == e && b & 1 == 0) {
                best = c;
            }
        }
        best
    }

    #[test]
    fn values_round_to_the_nearest_f16() {
        // The value half::f16::from_f64 rounds the wrong way (just past a tie).
        let v = f64::from(f32::from_bits(0xbd88_d001));
        assert_eq!(f16_nearest(v).to_bits(), 0xac47);
        assert_eq!(half::f16::from_f32(v as f32).to_bits(), 0xac47);
        let mut rng = crate::rng::Rng::new(7);
        for i in 0..200_000 {
            // f32 values (the usual source) and f64 ones, in f16's range
            let x = f32::from_bits((rng.next_u64() >> 32) as u32 & 0x8fff_ffff | 0x3000_0000);
            let v = if i % 2 == 0 {
                f64::from(x)
            } else {
                f64::from(x) * (1.0 + (rng.next_u64() >> 32) as f64 * 2f64.powi(-60))
            };
            let want = nearest_by_distance(v);
            assert_eq!(f16_nearest(v).to_bits(), want.to_bits(), "{v:e}");
            if i % 2 == 0 {
                assert_eq!(half::f16::from_f32(x).to_bits(), want.to_bits(), "{v:e}");
            }
        }
    }

    fn file(tensors: &[Spec]) -> Vec<u8> {
        file_with(tensors, &[])
    }

    /// A safetensors file of `tensors` whose metadata holds `meta`.
    fn file_with(tensors: &[Spec], meta: &[(&str, &str)]) -> Vec<u8> {
        let bytes: Vec<Vec<u8>> = tensors
            .iter()
            .map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect())
            .collect();
        let views: Vec<(String, TensorView<'_>)> = tensors
            .iter()
            .zip(&bytes)
            .map(|((n, s, _), b)| {
                (
                    n.clone(),
                    TensorView::new(Dtype::F32, s.clone(), b).unwrap(),
                )
            })
            .collect();
        let meta = (!meta.is_empty()).then(|| {
            meta.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        });
        safetensors::tensor::serialize(views, meta).unwrap()
    }

    /// Values that f16 holds exactly and whose products and short sums
    /// f32 and f64 hold exactly too (multiples of 1/64 in -2..2).
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut r = crate::rng::Rng::new(seed);
        (0..n)
            .map(|_| ((r.next_u64() % 256) as f32 - 128.0) / 64.0)
            .collect()
    }

    fn t(name: &str, shape: &[usize], v: Vec<f32>) -> Spec {
        (name.to_string(), shape.to_vec(), v)
    }

    /// A PyTorch model (`rnn.` + `out.`) with `g` gates, one-hot input of
    /// `v` ids.
    fn torch_model(g: usize, h: usize, v: usize, layers: usize) -> Vec<Spec> {
        let mut m = Vec::new();
        for l in 0..layers {
            let i = if l == 0 { v } else { h };
            let s = 10 * l as u64;
            m.push(t(
                &format!("rnn.weight_ih_l{l}"),
                &[g * h, i],
                values(g * h * i, s + 1),
            ));
            m.push(t(
                &format!("rnn.weight_hh_l{l}"),
                &[g * h, h],
                values(g * h * h, s + 2),
            ));
            m.push(t(
                &format!("rnn.bias_ih_l{l}"),
                &[g * h],
                values(g * h, s + 3),
            ));
            m.push(t(
                &format!("rnn.bias_hh_l{l}"),
                &[g * h],
                values(g * h, s + 4),
            ));
        }
        m.push(t("out.weight", &[v, h], values(v * h, 98)));
        m.push(t("out.bias", &[v], values(v, 99)));
        m
    }

    const VOCAB: &str = r#"["<pad>", "a", "b", "c", "<eos>"]"#;

    fn get<'a>(m: &'a [Spec], name: &str) -> &'a Spec {
        m.iter().find(|s| s.0 == name).unwrap()
    }

    fn transpose(s: &Spec) -> Vec<f32> {
        let (r, c) = (s.1[0], s.1[1]);
        (0..c)
            .flat_map(|j| (0..r).map(move |i| (i, j)))
            .map(|(i, j)| s.2[i * c + j])
            .collect()
    }

    #[test]
    fn a_pytorch_lstm_is_laid_out_as_charlm_trains_it() {
        let m = torch_model(4, 3, 5, 2);
        let got = import(&file(&m), VOCAB).unwrap();
        assert_eq!(got.framework, Framework::PyTorch);
        // The same vocabulary file saved with a byte-order mark.
        let bom = import(&file(&m), &format!("\u{feff}{VOCAB}")).unwrap();
        assert_eq!(bom.vocab.symbols_string(), got.vocab.symbols_string());
        let a = got.layout.arch;
        assert_eq!(
            (a.cell, a.layers, a.hidden, a.vocab),
            (CellKind::Lstm, 2, 3, 5)
        );
        let slot = |n: &str| &got.params[got.layout.slot(n).unwrap().range.clone()];
        // Layer 0's table is the transpose of PyTorch's [G*H, V].
        assert_eq!(slot("weight_ih_l0"), transpose(get(&m, "rnn.weight_ih_l0")));
        for n in [
            "weight_ih_l1",
            "weight_hh_l0",
            "weight_hh_l1",
            "bias_ih_l1",
            "bias_hh_l0",
        ] {
            assert_eq!(slot(n), get(&m, &format!("rnn.{n}")).2, "{n}");
        }
        assert_eq!(slot("out.weight"), get(&m, "out.weight").2);
        assert_eq!(slot("out.bias"), get(&m, "out.bias").2);
        assert_eq!(got.vocab.symbols(), ['a', 'b', 'c']);
        assert!(!got.pad_added && !got.eos_added);
    }

    #[test]
    fn ids_are_renumbered_to_padding_symbols_eos() {
        // The same model with its ids in another order: source id s of the
        // shuffled model is id order[s] of the plain one.
        let plain = torch_model(3, 2, 5, 1);
        let order = [4usize, 1, 0, 2, 3]; // <eos>, b, <pad>, c, a
        let shuffled_vocab = r#"["<eos>", "b", "<pad>", "c", "a"]"#;
        let permute_rows = |s: &Spec, cols: usize| -> Vec<f32> {
            order
                .iter()
                .flat_map(|&k| s.2[k * cols..(k + 1) * cols].to_vec())
                .collect()
        };
        let mut shuffled = plain.clone();
        for s in shuffled.iter_mut() {
            s.2 = match s.0.as_str() {
                // columns of [G*H, V]
                "rnn.weight_ih_l0" => {
                    let (r, c) = (s.1[0], s.1[1]);
                    (0..r)
                        .flat_map(|i| order.iter().map(move |&k| (i, k)))
                        .map(|(i, k)| s.2[i * c + k])
                        .collect()
                }
                "out.weight" => permute_rows(s, 2),
                "out.bias" => permute_rows(s, 1),
                _ => s.2.clone(),
            };
        }
        // The shuffled list's characters come in the order b, c, a.
        let a = import(&file(&plain), r#"["<pad>", "b", "c", "a", "<eos>"]"#).unwrap();
        let b = import(&file(&shuffled), shuffled_vocab).unwrap();
        assert_eq!(b.vocab.symbols(), ['b', 'c', 'a']);
        // plain's ids 1, 2, 3 are b, c, a as well: the same parameters.
        assert_eq!(a.params, b.params);
    }

    #[test]
    fn modules_stacked_by_hand_are_one_stack_in_name_order() {
        // nn.LSTM(num_layers=2) as `rnn.`, and as `lstm1.` + `lstm2.`
        // (each a one-layer module: its layer is `_l0`).
        let m = torch_model(4, 2, 5, 2);
        let split: Vec<Spec> = m
            .iter()
            .map(|(n, s, v)| {
                let n = if n.starts_with("out.") {
                    n.clone()
                } else if n.ends_with("_l0") {
                    n.replace("rnn.", "lstm1.")
                } else {
                    n.replace("rnn.", "lstm2.").replace("_l1", "_l0")
                };
                (n, s.clone(), v.clone())
            })
            .collect();
        assert!(split.iter().any(|s| s.0 == "lstm2.weight_hh_l0"));
        let a = import(&file(&m), VOCAB).unwrap();
        let b = import(&file(&split), VOCAB).unwrap();
        assert_eq!(b.layout.arch.layers, 2);
        assert_eq!(a.params, b.params);
        let mut renamed = split.clone();
        for s in renamed.iter_mut() {
            s.0 = s.0.replace("lstm2.", "lstm10.").replace("lstm1.", "lstm2.");
        }
        // lstm10 after lstm2 (natural order), not before it.
        assert_eq!(import(&file(&renamed), VOCAB).unwrap().params, a.params);
        // `lstm` then `lstm2`: the name without a number first (a plain
        // sort puts `lstm2.` before `lstm.`).
        let mut bare = split.clone();
        for s in bare.iter_mut() {
            s.0 = s.0.replace("lstm1.", "lstm.");
        }
        assert_eq!(import(&file(&bare), VOCAB).unwrap().params, a.params);
        // An nn.LSTMCell's tensors (no `_l0`) are a layer too.
        let cell: Vec<Spec> = split
            .iter()
            .map(|(n, s, v)| {
                (
                    n.replace("lstm1.", "cell.")
                        .replace("cell.weight_ih_l0", "cell.weight_ih")
                        .replace("cell.weight_hh_l0", "cell.weight_hh")
                        .replace("cell.bias_ih_l0", "cell.bias_ih")
                        .replace("cell.bias_hh_l0", "cell.bias_hh"),
                    s.clone(),
                    v.clone(),
                )
            })
            .collect();
        assert!(cell.iter().any(|s| s.0 == "cell.weight_hh"));
        assert_eq!(import(&file(&cell), VOCAB).unwrap().params, a.params);
    }

    #[test]
    fn the_order_of_stacked_modules_comes_from_their_numbers_or_is_refused() {
        let order = |names: &[&str], first: Option<usize>| {
            let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
            stack_order(&names, first, "numbered").map_err(|e| e.to_string())
        };
        assert_eq!(
            order(&["lstm2.", "lstm."], None).unwrap(),
            ["lstm.", "lstm2."]
        );
        assert_eq!(
            order(
                &["seq/lstm_1/cell/", "seq/lstm/cell/", "seq/lstm_2/cell/"],
                None
            )
            .unwrap(),
            ["seq/lstm/cell/", "seq/lstm_1/cell/", "seq/lstm_2/cell/"]
        );
        assert_eq!(
            order(&["layers.1.rnn.", "layers.0.rnn."], Some(1)).unwrap(),
            ["layers.0.rnn.", "layers.1.rnn."]
        );
        // Names that do not say: two modules, one reading the characters.
        assert_eq!(
            order(&["top.", "bottom."], Some(1)).unwrap(),
            ["bottom.", "top."]
        );
        let why = order(&["top.", "bottom."], None).unwrap_err();
        assert!(
            why.contains("their order cannot be told from their names"),
            "{why}"
        );
        assert!(order(&["a.", "b.", "c."], Some(0)).is_err());
        assert!(order(&["lstm_1.", "lstm-1."], None).is_err());
        // Names that contradict the shapes.
        let why = order(&["rnn1.", "rnn2."], Some(1)).unwrap_err();
        assert!(
            why.contains("their names put rnn1. first, but rnn2."),
            "{why}"
        );
    }

    #[test]
    fn biases_come_whole_and_from_their_own_layer() {
        let m = torch_model(4, 2, 5, 2);
        // bias=False: no bias anywhere in the module, zeros.
        let unbiased: Vec<Spec> = m
            .iter()
            .filter(|s| !s.0.starts_with("rnn.bias"))
            .cloned()
            .collect();
        assert!(import(&file(&unbiased), VOCAB).is_ok());
        // Some but not all: a file saved incompletely.
        let partial: Vec<Spec> = m
            .iter()
            .filter(|s| s.0 != "rnn.bias_hh_l1")
            .cloned()
            .collect();
        let why = refusal(&partial, VOCAB);
        assert!(why.contains("tensor rnn.bias_hh_l1 is missing"), "{why}");
        // A layer's missing matrix is named, whichever it is.
        for gone in ["rnn.weight_hh_l1", "rnn.weight_ih_l1"] {
            let lacking: Vec<Spec> = m.iter().filter(|s| s.0 != gone).cloned().collect();
            let why = refusal(&lacking, VOCAB);
            assert!(why.contains(&format!("tensor {gone} is missing")), "{why}");
        }
        // Linear(bias=False) and a [V] buffer beside it: not the bias.
        let mut buffer: Vec<Spec> = m.iter().filter(|s| s.0 != "out.bias").cloned().collect();
        buffer.push(t("char_counts", &[5], values(5, 7)));
        let why = refusal(&buffer, VOCAB);
        assert!(why.contains("tensor char_counts [5] has no place"), "{why}");
    }

    /// Tied weights saved once (`safetensors.torch.save_model`): the
    /// embedding is the output layer's weight too.
    #[test]
    fn tied_weights_are_the_embedding_and_the_output_layer() {
        let (g, h, v) = (4, 2, 5);
        let mut m = torch_model(g, h, v, 1);
        // layer 0 reads an H-wide embedding: [G*H, H]
        for s in m.iter_mut().filter(|s| s.0 == "rnn.weight_ih_l0") {
            s.1 = vec![g * h, h];
            s.2 = values(g * h * h, 1);
        }
        let out = get(&m, "out.weight").clone();
        let mut untied = m.clone();
        untied.push(t("encoder.weight", &[v, h], out.2.clone()));
        let tied: Vec<Spec> = untied
            .iter()
            .filter(|s| s.0 != "out.weight")
            .cloned()
            .collect();
        let a = import(&file(&untied), VOCAB).unwrap();
        let b = import(&file(&tied), VOCAB).unwrap();
        assert_eq!(b.embedding, Some(h));
        assert_eq!(a.params, b.params);
    }

    /// Tied weights as `safetensors.torch.save_model` really saves them:
    /// under the name that comes first (here the output layer's), the
    /// other named in the metadata; at any hidden size, the one equal to
    /// the vocabulary's included.
    #[test]
    fn tied_weights_kept_under_the_output_layers_name_are_the_embedding_too() {
        for (g, h, v) in [(4, 2, 5), (3, 5, 5)] {
            let mut m = torch_model(g, h, v, 1);
            for s in m.iter_mut().filter(|s| s.0 == "rnn.weight_ih_l0") {
                s.1 = vec![g * h, h];
                s.2 = values(g * h * h, 1);
            }
            // PyTorch's example's names: `decoder` sorts before `encoder`.
            for s in m.iter_mut() {
                s.0 = s.0.replace("out.", "decoder.");
            }
            let mut untied = m.clone();
            let out = get(&m, "decoder.weight").clone();
            untied.push(t("encoder.weight", &[v, h], out.2));
            let meta = [("encoder.weight", "decoder.weight"), ("format", "pt")];
            let a = import(&file(&untied), VOCAB).unwrap();
            let b = import(&file_with(&m, &meta), VOCAB).unwrap();
            assert_eq!(b.embedding, Some(h), "hidden {h}");
            assert_eq!(a.params, b.params, "hidden {h}");
            // Without the metadata the file is another model, or none.
            let c = import(&file(&m), VOCAB).ok().map(|c| c.params);
            assert!(c.as_ref() != Some(&a.params), "hidden {h}");
        }
    }

    #[test]
    fn an_embedding_as_wide_as_the_vocabulary_is_an_embedding() {
        let m = torch_model(3, 2, 5, 1);
        let mut e = m.clone();
        e.push(t("embed.weight", &[5, 5], values(25, 8)));
        let got = import(&file(&e), VOCAB).unwrap();
        assert_eq!(got.embedding, Some(5));
        assert_ne!(got.params, import(&file(&m), VOCAB).unwrap().params);
    }

    #[test]
    fn the_vocabulary_may_be_an_object_from_entries_to_ids() {
        // Keras's tokenizer.word_index: id 0 left out (padding).
        let m = torch_model(4, 2, 5, 1);
        let list = import(&file(&m), VOCAB).unwrap();
        let map = import(&file(&m), r#"{"b": 2, "<eos>": 4, "a": 1, "c": 3}"#).unwrap();
        assert_eq!(list.params, map.params);
        assert_eq!(map.vocab.symbols(), ['a', 'b', 'c']);
        assert!(!map.pad_added);
        assert!(refusal(&m, r#"{"a": 1, "b": 1}"#).contains("id 1 is both"));
        assert!(refusal(&m, r#"{"a": 1, "b": 3}"#).contains("no entry has id 2"));
        // (named as written, on 32-bit targets too)
        let why = refusal(&m, r#"{"a": 18446744073709551615}"#);
        assert!(why.contains("id 18446744073709551615 is beyond"), "{why}");
        for big in ["18446744073709551616", "1e20"] {
            let why = refusal(&m, &format!(r#"{{"a": {big}}}"#));
            assert!(why.contains("beyond the 1024 ids"), "{why}");
        }
        // The last id a model holds, and the first it does not.
        let ids: Vec<String> = (1..1024).map(|i| format!(r#""k{i}": {i}"#)).collect();
        assert_eq!(
            vocab_list(&format!("{{{}}}", ids.join(","))).unwrap().len(),
            1024
        );
        let why = refusal(&m, r#"{"a": 1024}"#);
        assert!(why.contains("id 1024 is beyond the 1024 ids"), "{why}");
        // Whole ids written as floats are those ids; a key twice is named.
        let floats = import(&file(&m), r#"{"b": 2.0, "<eos>": 4, "a": 1.0, "c": 3}"#).unwrap();
        assert_eq!(floats.params, list.params);
        assert!(refusal(&m, r#"{"a": 1.5}"#).contains("not a whole number"));
        let why = refusal(&m, r#"{"a": 1, "b": 2, "a": 3, "c": 4}"#);
        assert!(why.contains("\"a\" is given twice"), "{why}");
    }

    #[test]
    fn missing_padding_and_eos_are_added_and_eos_is_never_predicted() {
        let m = torch_model(4, 2, 3, 1);
        let got = import(&file(&m), r#"["x", "y", "z"]"#).unwrap();
        assert!(got.pad_added && got.eos_added);
        assert_eq!(got.layout.arch.vocab, 5);
        let out_b = &got.params[got.layout.out_b.clone()];
        assert_eq!(out_b[0], 0.0);
        assert_eq!(&out_b[1..4], &get(&m, "out.bias").2[..]);
        assert_eq!(out_b[4], ABSENT_EOS_LOGIT);
        let table = &got.params[got.layout.layers[0][0].clone()];
        assert!(table[..8].iter().all(|&x| x == 0.0), "padding's input row");
        assert!(
            table[4 * 8..].iter().all(|&x| x == 0.0),
            "<eos>'s input row"
        );
    }

    #[test]
    fn an_embedding_is_folded_into_the_input_table() {
        // Embedding [V, E] then weight_ih_l0 [G*H, E] is the one-hot model
        // whose weight_ih_l0 is (E W^T)^T.
        let (g, h, v, e) = (3, 2, 5, 4);
        let mut with_emb = torch_model(g, h, e, 1);
        with_emb.retain(|s| !s.0.starts_with("out."));
        with_emb.push(t("out.weight", &[v, h], values(v * h, 98)));
        with_emb.push(t("out.bias", &[v], values(v, 99)));
        let emb = t("embed.weight", &[v, e], values(v * e, 7));
        let w = get(&with_emb, "rnn.weight_ih_l0").2.clone();
        let folded: Vec<f32> = (0..g * h)
            .flat_map(|j| (0..v).map(move |k| (j, k)))
            .map(|(j, k)| (0..e).map(|x| emb.2[k * e + x] * w[j * e + x]).sum())
            .collect();
        with_emb.push(emb);
        let mut one_hot = with_emb.clone();
        one_hot.retain(|s| s.0 != "embed.weight");
        for s in one_hot.iter_mut().filter(|s| s.0 == "rnn.weight_ih_l0") {
            s.1 = vec![g * h, v];
            s.2 = folded.clone();
        }
        let a = import(&file(&with_emb), VOCAB).unwrap();
        let b = import(&file(&one_hot), VOCAB).unwrap();
        assert_eq!(a.embedding, Some(e));
        assert_eq!(b.embedding, None);
        assert_eq!(a.params, b.params);
    }

    /// The Keras form of a PyTorch-layout model: kernels transposed, GRU
    /// gates `r,z,n` -> `z,r,h`, biases as Keras keeps them.
    fn keras_of(m: &[Spec], g: usize, h: usize, layers: usize, names: &[&str]) -> Vec<Spec> {
        let gru = g == 3;
        let swap = |v: &[f32], block: usize| -> Vec<f32> {
            if !gru {
                return v.to_vec();
            }
            let b = |i: usize| &v[i * block..(i + 1) * block];
            [b(1), b(0), b(2)].concat()
        };
        let mut k = Vec::new();
        for (l, name) in names.iter().enumerate().take(layers) {
            let p = format!("{name}/{}_cell/", if gru { "gru" } else { "lstm" });
            for (src, dst) in [("weight_ih", "kernel"), ("weight_hh", "recurrent_kernel")] {
                let s = get(m, &format!("rnn.{src}_l{l}"));
                let rows = swap(&s.2, h * s.1[1]);
                let spec = (s.0.clone(), s.1.clone(), rows);
                k.push(t(
                    &format!("{p}{dst}:0"),
                    &[s.1[1], s.1[0]],
                    transpose(&spec),
                ));
            }
            let bi = swap(&get(m, &format!("rnn.bias_ih_l{l}")).2, h);
            let bh = swap(&get(m, &format!("rnn.bias_hh_l{l}")).2, h);
            if gru {
                k.push(t(&format!("{p}bias:0"), &[2, g * h], [bi, bh].concat()));
            } else {
                let sum = bi.iter().zip(&bh).map(|(a, b)| a + b).collect();
                k.push(t(&format!("{p}bias:0"), &[g * h], sum));
            }
        }
        let w = get(m, "out.weight");
        k.push(t("dense/kernel:0", &[w.1[1], w.1[0]], transpose(w)));
        k.push(t("dense/bias:0", &[w.1[0]], get(m, "out.bias").2.clone()));
        k
    }

    #[test]
    fn a_keras_gru_is_the_pytorch_gru_with_its_gates_reordered() {
        let (g, h, v) = (3, 2, 5);
        let m = torch_model(g, h, v, 2);
        // Keras orders layers by name: "gru" before "gru_1" (and not "gru_10").
        let k = keras_of(&m, g, h, 2, &["gru", "gru_1"]);
        let a = import(&file(&m), VOCAB).unwrap();
        let b = import(&file(&k), VOCAB).unwrap();
        assert_eq!(b.framework, Framework::Keras);
        assert_eq!(b.layout.arch.cell, CellKind::Gru);
        assert_eq!(a.params, b.params);
        let mut late = keras_of(&m, g, h, 2, &["gru_2", "gru_10"]);
        late.reverse();
        assert_eq!(import(&file(&late), VOCAB).unwrap().params, a.params);
    }

    #[test]
    fn a_keras_lstm_keeps_its_order_and_its_one_bias() {
        let (g, h, v) = (4, 3, 5);
        let mut m = torch_model(g, h, v, 1);
        for s in m.iter_mut().filter(|s| s.0 == "rnn.bias_hh_l0") {
            s.2.iter_mut().for_each(|x| *x = 0.0);
        }
        let k = keras_of(&m, g, h, 1, &["lstm"]);
        assert_eq!(
            import(&file(&k), VOCAB).unwrap().params,
            import(&file(&m), VOCAB).unwrap().params
        );
    }

    fn refusal(tensors: &[Spec], vocab: &str) -> String {
        import(&file(tensors), vocab).unwrap_err().to_string()
    }

    #[test]
    fn what_charlm_cannot_run_is_refused_by_name() {
        let m = torch_model(4, 2, 5, 1);
        let mut extra = m.clone();
        extra.push(t("head.0.weight", &[3, 3], values(9, 5)));
        assert!(refusal(&extra, VOCAB).contains("tensor head.0.weight [3, 3] has no place"));
        let mut two_heads = m.clone();
        two_heads.push(t("head.weight", &[5, 2], values(10, 5)));
        assert!(
            refusal(&two_heads, VOCAB)
                .contains("more than one output layer could be head.weight, out.weight")
        );

        let mut bi = m.clone();
        bi.push(t("rnn.weight_hh_l0_reverse", &[8, 2], values(16, 5)));
        assert!(refusal(&bi, VOCAB).contains("bidirectional"));
        let keras_bi: Vec<Spec> = keras_of(&m, 4, 2, 1, &["bidirectional/forward_lstm"]);
        assert!(
            refusal(&keras_bi, VOCAB).contains("a Bidirectional layer reads the text backwards")
        );
        // What torch.save writes is named.
        for (bytes, what) in [
            (
                &b"PK\x03\x04rest"[..],
                "a zip archive, as torch.save writes",
            ),
            (&b"\x80\x02rest"[..], "a Python pickle"),
        ] {
            let why = import(bytes, VOCAB).unwrap_err().to_string();
            assert!(
                why.contains(what) && why.contains("safetensors.torch.save_file"),
                "{why}"
            );
        }

        let mut proj = m.clone();
        proj.push(t("rnn.weight_hr_l0", &[1, 2], values(2, 5)));
        assert!(refusal(&proj, VOCAB).contains("proj_size"));

        let g3 = torch_model(3, 2, 5, 1);
        let mut old_gru = keras_of(&g3, 3, 2, 1, &["gru"]);
        for s in old_gru.iter_mut().filter(|s| s.0 == "gru/gru_cell/bias:0") {
            s.1 = vec![6];
            s.2.truncate(6);
        }
        assert!(refusal(&old_gru, VOCAB).contains("reset_after=False"));

        let mut five = m.clone();
        for s in five.iter_mut().filter(|s| s.0 == "rnn.weight_hh_l0") {
            s.1 = vec![10, 2];
            s.2 = values(20, 3);
        }
        assert!(refusal(&five, VOCAB).contains("neither an LSTM (4 gates) nor a GRU (3)"));

        // Named as the file has them: rnn.weight_hh_l0 is [8, 2].
        let mut huge = m.clone();
        huge[1].2[3] = 1e6;
        let why = refusal(&huge, VOCAB);
        assert!(
            why.contains("tensor rnn.weight_hh_l0[1, 1] = 1000000 does not fit in f16"),
            "{why}"
        );
        // A folded product too large: named by source id and gate row.
        let (g, h) = (4, 2);
        let mut folded = m.clone();
        for s in folded.iter_mut().filter(|s| s.0 == "rnn.weight_ih_l0") {
            s.1 = vec![g * h, h];
            s.2 = values(g * h * h, 1);
            s.2[3 * h] = 300.0;
        }
        let mut e = values(5 * h, 2);
        e[2 * h] = 300.0;
        e[2 * h + 1] = 0.0;
        folded.push(t("embed.weight", &[5, h], e));
        let why = refusal(&folded, VOCAB);
        assert!(
            why.contains("layer 0's input for source id 2, gate row 3, is 90000")
                && why.contains("its embedding row times weight_ih_l0"),
            "{why}"
        );
        for (v, shown) in [(f32::NAN, "NaN"), (f32::NEG_INFINITY, "-inf")] {
            let mut bad = m.clone();
            bad[1].2[3] = v;
            let why = refusal(&bad, VOCAB);
            assert!(
                why.contains(&format!("tensor rnn.weight_hh_l0[1, 1] = {shown}: the weights hold a value that is not a finite number")),
                "{why}"
            );
        }
        let mut bias = m.clone();
        bias[2].2[5] = f32::NAN;
        assert!(refusal(&bias, VOCAB).contains("tensor rnn.bias_ih_l0[5] = NaN"));

        assert!(
            refusal(&m, r#"["<pad>", "a", "b", "<eos>"]"#)
                .contains("the model has 5 ids and the vocabulary lists 4")
        );
        assert!(refusal(&m, r#"["<pad>", "a", "ab", "c", "<eos>"]"#).contains("id 2 is \"ab\""));
        assert!(refusal(&m, r#"["<pad>", "a", "a", "c", "<eos>"]"#).contains("at ids 1 and 2"));
        assert!(
            refusal(&m, r#"["<eos>", "a", "b", "c", "<eos>"]"#).contains("<eos> at ids 0 and 4")
        );
        assert!(refusal(&m, r#"{"a": "x"}"#).contains("JSON list of strings"));
        assert!(
            refusal(&[t("dense/kernel", &[2, 5], values(10, 1))], VOCAB)
                .contains("no recurrent layer")
        );
        assert!(
            import(b"not safetensors", VOCAB)
                .unwrap_err()
                .to_string()
                .contains("not a safetensors file")
        );
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;
    use safetensors::tensor::TensorView;

    /// Names of both frameworks' tensors, right and nearly right.
    const NAMES: &[&str] = &[
        "rnn.weight_ih_l0",
        "rnn.weight_hh_l0",
        "rnn.bias_ih_l0",
        "rnn.bias_hh_l0",
        "rnn.weight_ih_l1",
        "rnn.weight_hh_l1",
        "rnn.weight_hh_l3",
        "rnn.weight_hh_l0_reverse",
        "lstm2.weight_hh_l0",
        "lstm2.weight_ih_l0",
        "out.weight",
        "out.bias",
        "embed.weight",
        "lstm/lstm_cell/kernel",
        "lstm/lstm_cell/recurrent_kernel",
        "lstm/lstm_cell/bias",
        "gru_1/gru_cell/kernel:0",
        "gru_1/gru_cell/recurrent_kernel:0",
        "gru_1/gru_cell/bias:0",
        "dense/kernel",
        "dense/bias",
        "embedding/embeddings",
    ];

    /// A well-formed model's tensors (names and shapes) of either framework.
    fn model_shapes(
        keras: bool,
        g: usize,
        h: usize,
        v: usize,
        layers: usize,
        e: Option<usize>,
    ) -> Vec<(String, Vec<usize>)> {
        let mut m = Vec::new();
        let input = e.unwrap_or(v);
        if let Some(e) = e {
            let name = if keras {
                "embedding/embeddings"
            } else {
                "embed.weight"
            };
            m.push((name.to_string(), vec![v, e]));
        }
        for l in 0..layers {
            let i = if l == 0 { input } else { h };
            if keras {
                let p = if l == 0 {
                    "rnn/cell/".to_string()
                } else {
                    format!("rnn_{l}/cell/")
                };
                m.push((format!("{p}kernel"), vec![i, g * h]));
                m.push((format!("{p}recurrent_kernel"), vec![h, g * h]));
                m.push((
                    format!("{p}bias"),
                    if g == 3 { vec![2, g * h] } else { vec![g * h] },
                ));
            } else {
                m.push((format!("rnn.weight_ih_l{l}"), vec![g * h, i]));
                m.push((format!("rnn.weight_hh_l{l}"), vec![g * h, h]));
                m.push((format!("rnn.bias_ih_l{l}"), vec![g * h]));
                m.push((format!("rnn.bias_hh_l{l}"), vec![g * h]));
            }
        }
        if keras {
            m.push(("dense/kernel".to_string(), vec![h, v]));
            m.push(("dense/bias".to_string(), vec![v]));
        } else {
            m.push(("out.weight".to_string(), vec![v, h]));
            m.push(("out.bias".to_string(), vec![v]));
        }
        m
    }

    /// One change to a model's tensors: drop one, change a dimension of
    /// one, or add one of [`NAMES`].
    #[derive(Clone, Debug)]
    enum Change {
        Drop(usize),
        Resize(usize, usize, bool),
        Add(usize, Vec<usize>),
    }

    fn change() -> impl Strategy<Value = Change> {
        let dim = prop::sample::select(vec![0usize, 1, 2, 3, 4, 6, 8, 12]);
        prop_oneof![
            any::<usize>().prop_map(Change::Drop),
            (any::<usize>(), any::<usize>(), any::<bool>())
                .prop_map(|(t, d, up)| Change::Resize(t, d, up)),
            (0..NAMES.len(), prop::collection::vec(dim, 1..=3))
                .prop_map(|(n, s)| Change::Add(n, s)),
        ]
    }

    fn entry() -> impl Strategy<Value = String> {
        prop::sample::select(vec!["<pad>", "<eos>", "a", "b", "c", "d", "é", "ab", ""])
            .prop_map(str::to_string)
    }

    /// Whatever tensors and vocabulary come, an import is a model the
    /// runtime accepts or an error: never a panic. Both outcomes must be
    /// common among the cases (a generator that made only broken files, or
    /// only good ones, would test one side).
    #[test]
    fn any_file_imports_or_is_refused() {
        let cases = 2000;
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
            cases,
            ..ProptestConfig::default()
        });
        let args = (
            any::<bool>(),
            3usize..=4,
            1usize..=5,
            2usize..=7,
            1usize..=3,
            prop::option::of(1usize..=4),
            prop::collection::vec(change(), 0..3),
            prop::collection::vec(entry(), 0..8),
            any::<bool>(),
            any::<bool>(),
            any::<u64>(),
        );
        // Cases that imported and exported a model the runtime loads.
        let loaded = std::cell::Cell::new(0u32);
        let outcome = runner.run(
            &args,
            |(keras, g, h, v, layers, e, changes, vocab, plain_vocab, map, seed)| {
                let mut shapes = model_shapes(keras, g, h, v, layers, e);
                for c in changes {
                    match c {
                        Change::Drop(i) if !shapes.is_empty() => {
                            shapes.remove(i % shapes.len());
                        }
                        Change::Resize(i, d, up) if !shapes.is_empty() => {
                            let n = shapes.len();
                            let s = &mut shapes[i % n].1;
                            let d = d % s.len();
                            s[d] = if up { s[d] + 1 } else { s[d].saturating_sub(1) };
                        }
                        Change::Add(n, s) if !shapes.iter().any(|(m, _)| m == NAMES[n]) => {
                            shapes.push((NAMES[n].to_string(), s));
                        }
                        _ => {}
                    }
                }
                // A vocabulary that fits the model (padding, symbols, <eos>),
                // or the random one.
                let vocab: Vec<String> = if plain_vocab {
                    std::iter::once("<pad>".to_string())
                        .chain(
                            (1..v.saturating_sub(1))
                                .map(|i| char::from(b'a' + i as u8).to_string()),
                        )
                        .chain(std::iter::once("<eos>".to_string()))
                        .collect()
                } else {
                    vocab
                };
                let data: Vec<(String, Vec<usize>, Vec<u8>)> = shapes
                    .into_iter()
                    .enumerate()
                    .map(|(i, (n, shape))| {
                        let count: usize = shape.iter().product();
                        let mut r = crate::rng::Rng::new(seed ^ i as u64);
                        let bytes = (0..count)
                            .flat_map(|_| {
                                (((r.next_u64() % 512) as f32 - 256.0) / 128.0).to_le_bytes()
                            })
                            .collect();
                        (n, shape, bytes)
                    })
                    .collect();
                let views: Vec<(String, TensorView<'_>)> = data
                    .iter()
                    .map(|(n, s, b)| {
                        (
                            n.clone(),
                            TensorView::new(Dtype::F32, s.clone(), b).unwrap(),
                        )
                    })
                    .collect();
                let file = safetensors::tensor::serialize(views, None).unwrap();
                let json = if map {
                    let m: BTreeMap<&String, usize> =
                        vocab.iter().enumerate().map(|(i, e)| (e, i)).collect();
                    serde_json::to_string(&m).unwrap()
                } else {
                    serde_json::to_string(&vocab).unwrap()
                };
                if let Ok(m) = import(&file, &json) {
                    let bytes = crate::export::export(
                        &m.layout,
                        &m.params,
                        &m.vocab,
                        &crate::export::Provenance::default(),
                        charlm_runtime::format::DType::F16,
                    );
                    // export can still refuse (the runtime's own limits), but
                    // what it writes must load.
                    if let Ok(bytes) = bytes {
                        prop_assert!(charlm_runtime::Model::from_bytes(&bytes).is_ok());
                        loaded.set(loaded.get() + 1);
                    }
                }
                Ok(())
            },
        );
        if let Err(e) = outcome {
            panic!("{e}");
        }
        let loaded = loaded.get();
        assert!(
            (cases / 10..=cases - cases / 10).contains(&loaded),
            "{loaded} of {cases} cases made a model the runtime loads: the generator must make both good and broken files"
        );
    }
}
