//! A validated, zero-copy view of a `.clm` model.

use crate::error::Error;
use crate::format::{Arch, Body, CellKind, DType, MAX_LAYERS, Meta, ModelFile, Tensor};

/// The symbols of a model: id 0 is padding, ids `1..eos` are characters,
/// `eos` is the last id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Vocab<'a> {
    symbols: &'a str,
    size: u16,
}

impl<'a> Vocab<'a> {
    /// Number of ids, padding and `<eos>` included.
    pub fn size(&self) -> usize {
        self.size as usize
    }

    /// The `<eos>` id (the last one).
    pub fn eos(&self) -> u16 {
        self.size - 1
    }

    /// The characters of ids `1..eos`, in id order.
    pub fn symbols(&self) -> &'a str {
        self.symbols
    }

    /// Id of a character, if it is in the vocabulary.
    pub fn id_of(&self, c: char) -> Option<u16> {
        self.symbols
            .chars()
            .position(|s| s == c)
            .map(|i| i as u16 + 1)
    }

    /// Character of an id; `None` for padding, `<eos>` and ids out of range.
    pub fn symbol(&self, id: u16) -> Option<char> {
        self.symbols.chars().nth((id as usize).checked_sub(1)?)
    }
}

/// A weight matrix: its elements (f16 or i8, the model's weight type) and,
/// for i8, one f16 scale per row (empty for f16).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Mat<'a> {
    pub data: &'a [u8],
    pub scales: &'a [u8],
}

impl<'a> Mat<'a> {
    fn of(t: &Tensor<'a>) -> Self {
        let split = match t.dtype {
            DType::F16 => t.data.len(),
            DType::I8 => t.shape[0] as usize * t.shape[1] as usize,
        };
        let (data, scales) = t.data.split_at_checked(split).unwrap_or((t.data, &[]));
        Mat { data, scales }
    }
}

/// Weights of one layer (see [`crate::format`]); biases are f16.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LayerWeights<'a> {
    pub w_ih: Mat<'a>,
    pub w_hh: Mat<'a>,
    pub b_ih: &'a [u8],
    pub b_hh: &'a [u8],
}

/// A model ready to run: validated once, weights borrowed from the input bytes.
#[derive(Clone, Debug)]
pub struct Model<'a> {
    arch: Arch,
    vocab: Vocab<'a>,
    meta: Meta<'a>,
    pub(crate) layers: heapless::Vec<LayerWeights<'a>, MAX_LAYERS>,
    pub(crate) out_w: Mat<'a>,
    pub(crate) out_b: &'a [u8],
    pub(crate) weights: DType,
    file_len: usize,
}

impl<'a> Model<'a> {
    /// Decodes and validates `bytes` (magic, version, checksum, shapes,
    /// vocabulary, finite weights). Never panics, never allocates; the weights
    /// stay where they are (flash, a memory map, a `Vec`). A model with f16
    /// weight matrices needs cargo feature `f16` (on by default), one with
    /// i8 weights cargo feature `int8` ([`Error::DTypeDisabled`] without).
    #[inline(never)]
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Self, Error> {
        let file = ModelFile::decode(bytes)?;
        let weights = file.body.weights();
        if !weights.enabled() {
            return Err(Error::DTypeDisabled { dtype: weights });
        }
        Ok(Self::from_body(&file.body, bytes.len()))
    }

    fn from_body(body: &Body<'a>, file_len: usize) -> Self {
        // A loop of `push`es rather than `collect`: both Vecs hold
        // MAX_LAYERS, but `collect` into a heapless Vec keeps a panic path.
        let mut layers = heapless::Vec::new();
        for l in &body.layers {
            let _ = layers.push(LayerWeights {
                w_ih: Mat::of(&l.w_ih),
                w_hh: Mat::of(&l.w_hh),
                b_ih: l.b_ih.data,
                b_hh: l.b_hh.data,
            });
        }
        // Validated: the symbols are UTF-8, so this never takes the fallback.
        let symbols = core::str::from_utf8(body.vocab.symbols).unwrap_or_default();
        Model {
            arch: body.arch,
            vocab: Vocab {
                symbols,
                size: body.arch.vocab,
            },
            meta: body.meta,
            layers,
            out_w: Mat::of(&body.out_w),
            out_b: body.out_b.data,
            weights: body.weights(),
            file_len,
        }
    }

    /// Network shape.
    pub fn arch(&self) -> &Arch {
        &self.arch
    }

    /// Cell type.
    pub fn cell(&self) -> CellKind {
        self.arch.cell
    }

    /// Hidden units per layer.
    pub fn hidden(&self) -> usize {
        self.arch.hidden as usize
    }

    /// The vocabulary.
    pub fn vocab(&self) -> &Vocab<'a> {
        &self.vocab
    }

    /// Training provenance.
    pub fn meta(&self) -> &Meta<'a> {
        &self.meta
    }

    /// Type of the weight matrices (biases are always f16).
    pub fn weights(&self) -> DType {
        self.weights
    }

    /// Size of the file in bytes.
    pub fn file_len(&self) -> usize {
        self.file_len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same trained fixture in both weight types.
    const F16_MODEL: &[u8] = include_bytes!("../../tests/fixtures/lstm2.clm");
    const I8_MODEL: &[u8] = include_bytes!("../../tests/fixtures/lstm2-i8.clm");

    /// Run under each feature set (.ci/run does): the default, `int8` alone,
    /// both, and neither.
    #[test]
    fn a_model_loads_exactly_when_its_weight_type_is_built_in() {
        for (bytes, dtype, built_in) in [
            (F16_MODEL, DType::F16, cfg!(feature = "f16")),
            (I8_MODEL, DType::I8, cfg!(feature = "int8")),
        ] {
            match Model::from_bytes(bytes) {
                Ok(m) => {
                    assert!(built_in, "{dtype} ran without its feature");
                    assert_eq!(m.weights(), dtype);
                }
                Err(e) => {
                    assert!(!built_in, "{dtype}: {e}");
                    assert_eq!(e, Error::DTypeDisabled { dtype });
                }
            }
        }
    }
}
