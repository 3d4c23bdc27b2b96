//! The `.clm` file format: one definition, used by the runtime to read and by
//! the trainer (feature `alloc`) to write.
//!
//! A file is `postcard(ModelFile)` followed by the CRC-32 (ISO-HDLC, as in zip
//! and PNG) of every byte before it, little-endian. `ModelFile` is a
//! [`Header`] (magic `b"CHLM"` and a format version) and a [`Body`]. All
//! tensor data is borrowed straight out of the input bytes, so a model in
//! flash is never copied.
//!
//! Weight layout (PyTorch names and gate orders: LSTM `i,f,g,o`, GRU `r,z,n`;
//! `G` = gates, `H` = hidden, `V` = vocabulary size including padding and
//! `<eos>`):
//!
//! | tensor            | shape        | meaning                                   |
//! |-------------------|--------------|-------------------------------------------|
//! | layer 0 `w_ih`    | `[V, G*H]`   | input table: row `t` = column `t` of `W_ih` (a one-hot input is a row lookup) |
//! | layer l>0 `w_ih`  | `[G*H, H]`   | input-to-hidden                           |
//! | `w_hh`            | `[G*H, H]`   | hidden-to-hidden                          |
//! | `b_ih`, `b_hh`    | `[G*H, 1]`   | the two PyTorch biases, kept apart (GRU's `n` gate needs `b_hn` inside the reset product) |
//! | `out_w`           | `[V, H]`     | output projection                         |
//! | `out_b`           | `[V, 1]`     | output bias                               |
//!
//! Data is row-major. Every tensor may be little-endian IEEE binary16
//! ([`DType::F16`]). The weight matrices (`w_ih`, `w_hh`, `out_w`) may instead
//! all be 8-bit ([`DType::I8`]): `rows * cols` signed bytes, then one f16
//! scale per row; element `(r, c)` stands for `q[r][c] * scale[r]`, and a
//! product with a row is computed on the integers (times the hidden state
//! quantized to Q14) and scaled once (see [`crate::cell`]); such a model's
//! hidden size is at most [`MAX_HIDDEN_I8`]. Biases stay f16. Files with i8
//! weights are format version 3 (version 2 had i8 with f32 activations and
//! is refused); files with f16 weights only are written as version 1, which
//! every earlier runtime reads.

use serde::{Deserialize, Serialize};

use crate::error::{Error, TensorName};

/// The four bytes every `.clm` file starts with.
pub const MAGIC: [u8; 4] = *b"CHLM";
/// The newest format version this crate reads: 3, whose i8 weights run
/// with quantized activations (see [`crate::cell`]). Version 1 (f16) is
/// read too; version 2's i8 files computed with f32 activations and are
/// refused ([`Error::DTypeTooNew`]: export them again). Files are written
/// with the oldest version that holds them ([`Header::for_weights`]).
pub const VERSION: u16 = 3;
/// Most layers the format describes.
pub const MAX_LAYERS: usize = 4;
/// Largest hidden size the format describes (a workspace may allow less).
pub const MAX_HIDDEN: usize = 4096;
/// Largest hidden size of a model with i8 weights: every dot product's
/// integer sum, at most `127 * 2^14 * 1024 < 2^31` (weights are
/// `-127..=127`: -128 is refused), then fits an i32.
pub const MAX_HIDDEN_I8: usize = 1024;
/// Largest vocabulary (ids including padding and `<eos>`) the format describes.
pub const MAX_VOCAB: usize = 1024;

const CRC32: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// CRC-32 (ISO-HDLC) of `bytes`, the checksum every `.clm` file ends with.
pub fn crc32(bytes: &[u8]) -> u32 {
    CRC32.checksum(bytes)
}

/// Recurrent cell type.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CellKind {
    /// Long short-term memory, gates `i, f, g, o`.
    Lstm,
    /// Gated recurrent unit, gates `r, z, n`.
    Gru,
}

impl CellKind {
    /// Number of gate blocks stacked in each weight matrix.
    pub const fn gates(self) -> usize {
        match self {
            CellKind::Lstm => 4,
            CellKind::Gru => 3,
        }
    }

    /// Lower-case name, as on the command line.
    pub const fn name(self) -> &'static str {
        match self {
            CellKind::Lstm => "lstm",
            CellKind::Gru => "gru",
        }
    }
}

/// Shape of the network.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arch {
    /// Cell type.
    pub cell: CellKind,
    /// Stacked recurrent layers, 1 to [`MAX_LAYERS`].
    pub layers: u8,
    /// Hidden units per layer.
    pub hidden: u16,
    /// Vocabulary size: padding (id 0), the symbols, and `<eos>` (last id).
    pub vocab: u16,
}

impl Arch {
    /// Expected shape of every tensor, in file order.
    pub fn shape_of(&self, name: TensorName) -> [u32; 2] {
        let (g, h, v) = (
            self.cell.gates() as u32,
            self.hidden as u32,
            self.vocab as u32,
        );
        match name {
            TensorName::WIh(0) => [v, g * h],
            TensorName::WIh(_) | TensorName::WHh(_) => [g * h, h],
            TensorName::BIh(_) | TensorName::BHh(_) => [g * h, 1],
            TensorName::OutW => [v, h],
            TensorName::OutB => [v, 1],
        }
    }

    /// Every tensor's name in file order: per layer `w_ih`, `w_hh`, `b_ih`,
    /// `b_hh`, then `out_w`, `out_b`.
    pub fn tensor_names(&self) -> impl Iterator<Item = TensorName> + use<> {
        (0..self.layers)
            .flat_map(|l| {
                [
                    TensorName::WIh(l),
                    TensorName::WHh(l),
                    TensorName::BIh(l),
                    TensorName::BHh(l),
                ]
            })
            .chain([TensorName::OutW, TensorName::OutB])
    }

    /// Number of parameters (all tensors, padding row included).
    pub fn param_count(&self) -> usize {
        let mut n = 0;
        for l in 0..self.layers {
            for name in [
                TensorName::WIh(l),
                TensorName::WHh(l),
                TensorName::BIh(l),
                TensorName::BHh(l),
            ] {
                let [r, c] = self.shape_of(name);
                n += r as usize * c as usize;
            }
        }
        n + (self.vocab as usize) * (self.hidden as usize + 1)
    }

    /// Weight multiply-accumulates per generated character (the dot products;
    /// layer 0's input is a table lookup and costs none).
    pub fn macs_per_char(&self) -> usize {
        let (g, h, v, l) = (
            self.cell.gates(),
            self.hidden as usize,
            self.vocab as usize,
            self.layers as usize,
        );
        g * h * h * (2 * l - 1) + (v - 1) * h
    }
}

/// The vocabulary as stored: the symbols of ids `1..eos` as one UTF-8 string.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct VocabRecord<'a> {
    /// UTF-8 bytes of the symbols of ids 1, 2, ... in order (one `char` each).
    #[serde(borrow)]
    pub symbols: &'a [u8],
    /// Padding id (always 0).
    pub pad: u16,
    /// End-of-sequence id (always the last id).
    pub eos: u16,
}

/// Element type of a tensor.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    /// IEEE binary16, little-endian.
    F16,
    /// Signed bytes with one f16 scale per row (weight matrices only;
    /// format version 3): `rows * cols` bytes, then `rows` little-endian
    /// f16 scales.
    I8,
}

impl DType {
    /// Lower-case name, as on the command line.
    pub const fn name(self) -> &'static str {
        match self {
            DType::F16 => "f16",
            DType::I8 => "i8",
        }
    }

    /// Bytes of a `[rows, cols]` tensor of this type.
    pub const fn data_len(self, shape: [u32; 2]) -> usize {
        let (r, c) = (shape[0] as usize, shape[1] as usize);
        match self {
            DType::F16 => 2 * r * c,
            DType::I8 => r * c + 2 * r,
        }
    }

    /// The cargo feature of `charlm-runtime` that runs weight matrices of
    /// this type.
    pub const fn feature(self) -> &'static str {
        match self {
            DType::F16 => "f16",
            DType::I8 => "int8",
        }
    }

    /// Whether this build of the runtime runs weight matrices of this type
    /// (its cargo feature, [`Self::feature`], is on).
    pub const fn enabled(self) -> bool {
        match self {
            DType::F16 => cfg!(feature = "f16"),
            DType::I8 => cfg!(feature = "int8"),
        }
    }

    /// The oldest format version that has this type.
    pub const fn min_version(self) -> u16 {
        match self {
            DType::F16 => 1,
            DType::I8 => 3,
        }
    }
}

impl core::fmt::Display for DType {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// One tensor: type, shape and raw little-endian bytes.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tensor<'a> {
    /// Element type.
    pub dtype: DType,
    /// `[rows, cols]`; vectors are `[n, 1]`.
    pub shape: [u32; 2],
    /// Row-major element bytes.
    #[serde(borrow)]
    pub data: &'a [u8],
}

/// The weights of one recurrent layer (see the module table for shapes).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerRecord<'a> {
    /// Layer 0: `[V, G*H]` input table; later layers: `[G*H, H]`.
    #[serde(borrow)]
    pub w_ih: Tensor<'a>,
    /// `[G*H, H]` hidden-to-hidden.
    #[serde(borrow)]
    pub w_hh: Tensor<'a>,
    /// `[G*H, 1]` input bias.
    #[serde(borrow)]
    pub b_ih: Tensor<'a>,
    /// `[G*H, 1]` hidden bias.
    #[serde(borrow)]
    pub b_hh: Tensor<'a>,
}

/// Where the model came from and how good it was.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Default)]
pub struct Meta<'a> {
    /// Name of the training corpus.
    #[serde(borrow)]
    pub corpus: &'a str,
    /// Optimizer steps taken.
    pub steps: u64,
    /// Bits per character on the training data (f32 weights).
    pub train_bpc: Option<f32>,
    /// Bits per character on held-out data (f32 weights).
    pub val_bpc: Option<f32>,
    /// Bits per character on held-out data with the file's f16 weights,
    /// through the runtime (`charlm train` writes it; i8 files leave it out).
    pub val_bpc_f16: Option<f32>,
}

/// Magic and version, read before anything else.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Always [`MAGIC`].
    pub magic: [u8; 4],
    /// Format version: 1 (f16 weights), 2 (i8 weights with f32 activations,
    /// no longer run) or 3 (i8 weights with integer products).
    pub version: u16,
}

impl Header {
    /// The header of a file whose weight matrices are of type `weights`:
    /// the oldest version that holds them, so that f16 models stay readable
    /// by runtimes that predate i8.
    pub const fn for_weights(weights: DType) -> Header {
        Header {
            magic: MAGIC,
            version: weights.min_version(),
        }
    }
}

/// Everything after the header.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Body<'a> {
    /// Network shape.
    pub arch: Arch,
    /// Symbols.
    #[serde(borrow)]
    pub vocab: VocabRecord<'a>,
    /// Recurrent layers, bottom first.
    #[serde(borrow)]
    pub layers: heapless::Vec<LayerRecord<'a>, MAX_LAYERS>,
    /// `[V, H]` output projection.
    #[serde(borrow)]
    pub out_w: Tensor<'a>,
    /// `[V, 1]` output bias.
    #[serde(borrow)]
    pub out_b: Tensor<'a>,
    /// Provenance.
    #[serde(borrow)]
    pub meta: Meta<'a>,
}

/// A whole `.clm` file (without its trailing checksum).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ModelFile<'a> {
    /// Magic and version.
    pub header: Header,
    /// Architecture, vocabulary, weights, metadata.
    #[serde(borrow)]
    pub body: Body<'a>,
}

/// Shortest possible file: magic, a one-byte version and the checksum.
const MIN_LEN: usize = 4 + 1 + 4;

impl<'a> ModelFile<'a> {
    /// Decodes and fully validates a `.clm` file. Every way a file can be
    /// wrong is a distinct [`Error`]; nothing here panics or allocates.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, Error> {
        Self::decode_inner(bytes, true)
    }

    /// Like [`Self::decode`] but without comparing the checksum, for tools
    /// that describe a damaged file (`charlm info`). Use [`Self::decode`] to run a model.
    pub fn decode_ignoring_checksum(bytes: &'a [u8]) -> Result<Self, Error> {
        Self::decode_inner(bytes, false)
    }

    /// Stored and computed checksum of a file at least 4 bytes long.
    pub fn checksums(bytes: &[u8]) -> Option<(u32, u32)> {
        let (content, stored) = bytes.split_last_chunk::<4>()?;
        Some((u32::from_le_bytes(*stored), crc32(content)))
    }

    fn decode_inner(bytes: &'a [u8], verify: bool) -> Result<Self, Error> {
        if bytes.len() < MIN_LEN {
            return Err(Error::Truncated { len: bytes.len() });
        }
        if bytes.get(..4) != Some(&MAGIC[..]) {
            return Err(Error::BadMagic);
        }
        let (header, _) = postcard::take_from_bytes::<Header>(bytes).map_err(Error::Malformed)?;
        if header.version == 0 || header.version > VERSION {
            return Err(Error::UnsupportedVersion {
                found: header.version,
            });
        }
        let (content, stored) = bytes
            .split_last_chunk::<4>()
            .ok_or(Error::Truncated { len: bytes.len() })?;
        let stored = u32::from_le_bytes(*stored);
        // A wrong checksum is reported last: a file that does not decode
        // either, most often one cut short, is named by what is wrong with
        // it, the same message on every platform, from every caller. (Not
        // by decoding again: a recursive call doubled the firmware's stack.)
        let mismatch = if verify {
            Some(crc32(content)).filter(|&computed| computed != stored)
        } else {
            None
        };
        let (file, rest) =
            postcard::take_from_bytes::<ModelFile<'a>>(content).map_err(Error::Malformed)?;
        if !rest.is_empty() {
            return Err(Error::TrailingBytes { count: rest.len() });
        }
        file.body.validate()?;
        let weights = file.body.weights();
        if header.version < weights.min_version() {
            return Err(Error::DTypeTooNew {
                dtype: weights,
                version: header.version,
            });
        }
        match mismatch {
            Some(computed) => Err(Error::ChecksumMismatch { stored, computed }),
            None => Ok(file),
        }
    }

    /// Encodes the file and appends its checksum.
    #[cfg(feature = "alloc")]
    pub fn encode(&self) -> Result<alloc::vec::Vec<u8>, postcard::Error> {
        let mut bytes = postcard::to_allocvec(self)?;
        let crc = crc32(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        Ok(bytes)
    }
}

/// Where a copy of a model file's bytes should start, relative to a 4-byte
/// boundary, for the dot products to read word-aligned rows (the
/// Cortex-M4F kernel's fast path): see [`row_alignment`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowAlignment {
    /// Bytes (0 to 3) to put in front of the file in a word-aligned array.
    pub pad: usize,
    /// Weight multiply-accumulates per character on word-aligned rows then.
    pub aligned_macs: usize,
    /// Weight multiply-accumulates per character in dot products, in all
    /// (layer 0's input matrix is a table lookup, not a dot product).
    pub macs: usize,
}

/// The padding in front of a word-aligned copy of `bytes` (whose decoded
/// form is `file`) that puts the most weight rows used in dot products on
/// 4-byte boundaries, counted in multiply-accumulates per character (the
/// smallest such padding on a tie).
pub fn row_alignment(bytes: &[u8], file: &ModelFile<'_>) -> RowAlignment {
    let base = bytes.as_ptr() as usize;
    let mut aligned = [0usize; 4];
    let mut macs = 0usize;
    for (name, t) in file.body.tensors() {
        let dot_rows = match name {
            TensorName::WIh(0) | TensorName::BIh(_) | TensorName::BHh(_) | TensorName::OutB => {
                false
            }
            TensorName::WIh(_) | TensorName::WHh(_) | TensorName::OutW => true,
        };
        if !dot_rows {
            continue;
        }
        let offset = (t.data.as_ptr() as usize).wrapping_sub(base);
        let (rows, cols) = (t.shape[0] as usize, t.shape[1] as usize);
        let row_bytes = match t.dtype {
            DType::F16 => 2 * cols,
            DType::I8 => cols,
        };
        // The output layer skips row 0 (padding is never a prediction).
        let first = usize::from(name == TensorName::OutW);
        macs = macs.saturating_add(rows.saturating_sub(first).saturating_mul(cols));
        for (pad, sum) in aligned.iter_mut().enumerate() {
            let on_words = (first..rows)
                .filter(|r| (pad + offset + r * row_bytes).is_multiple_of(4))
                .count();
            *sum = sum.saturating_add(on_words.saturating_mul(cols));
        }
    }
    let mut best = 0;
    for pad in 1..4 {
        if aligned[pad] > aligned[best] {
            best = pad;
        }
    }
    RowAlignment {
        pad: best,
        aligned_macs: aligned[best],
        macs,
    }
}

impl<'a> Body<'a> {
    /// Every tensor with its name, in file order.
    pub fn tensors(&self) -> impl Iterator<Item = (TensorName, &Tensor<'a>)> {
        let layers = self.layers.iter().zip(0u8..).flat_map(|(l, i)| {
            [
                (TensorName::WIh(i), &l.w_ih),
                (TensorName::WHh(i), &l.w_hh),
                (TensorName::BIh(i), &l.b_ih),
                (TensorName::BHh(i), &l.b_hh),
            ]
        });
        layers.chain([
            (TensorName::OutW, &self.out_w),
            (TensorName::OutB, &self.out_b),
        ])
    }

    /// The type of the weight matrices (that of `out_w`; [`Self::validate`]
    /// checks that the others agree).
    pub fn weights(&self) -> DType {
        self.out_w.dtype
    }

    /// Checks the architecture, the vocabulary and every tensor against each other.
    pub fn validate(&self) -> Result<(), Error> {
        let arch = &self.arch;
        if arch.layers == 0 || arch.layers as usize > MAX_LAYERS {
            return Err(Error::LayersOutOfRange {
                layers: arch.layers,
            });
        }
        if arch.layers as usize != self.layers.len() {
            return Err(Error::LayerCountMismatch {
                arch: arch.layers,
                found: self.layers.len(),
            });
        }
        if arch.hidden == 0 || arch.hidden as usize > MAX_HIDDEN {
            return Err(Error::HiddenOutOfRange {
                hidden: arch.hidden,
            });
        }
        // At least one symbol besides padding and <eos>.
        if self.weights() == DType::I8 && arch.hidden as usize > MAX_HIDDEN_I8 {
            return Err(Error::HiddenTooLargeForI8 {
                hidden: arch.hidden,
            });
        }
        if arch.vocab < 3 || arch.vocab as usize > MAX_VOCAB {
            return Err(Error::VocabOutOfRange { vocab: arch.vocab });
        }
        self.validate_vocab()?;
        for (name, t) in self.tensors() {
            let expected = arch.shape_of(name);
            if t.shape != expected {
                return Err(Error::ShapeMismatch {
                    tensor: name,
                    expected,
                    found: t.shape,
                });
            }
            let dtype = if name.is_matrix() {
                self.weights()
            } else {
                DType::F16
            };
            if t.dtype != dtype {
                return Err(Error::MixedDTypes {
                    tensor: name,
                    dtype: t.dtype,
                });
            }
            let len = t.dtype.data_len(expected);
            if t.data.len() != len {
                return Err(Error::DataLength {
                    tensor: name,
                    expected: len,
                    found: t.data.len(),
                });
            }
            // Inf and NaN halves (exponent all ones) are rejected: they mean a
            // broken export, and the runtime's exact f16 decoding relies on it.
            // (Of an i8 tensor, the halves are its scales, after the bytes.)
            let halves = match t.dtype {
                DType::F16 => t.data,
                DType::I8 => t.data.get(len - 2 * expected[0] as usize..).unwrap_or(&[]),
            };
            if halves
                .as_chunks::<2>()
                .0
                .iter()
                .any(|&[_, hi]| hi & 0x7c == 0x7c)
            {
                return Err(Error::NonFinite { tensor: name });
            }
            // i8 weights are -127..=127: the bound on an integer dot
            // product's sum (MAX_HIDDEN_I8) counts on it, and the exporter
            // never writes -128.
            let values = t.data.get(..len - halves.len()).unwrap_or(&[]);
            // A plain loop: `contains` is core's memchr, 264 bytes more
            // code on the Cortex-M0.
            #[allow(clippy::manual_contains)]
            let minus_128 = t.dtype == DType::I8 && values.iter().any(|&b| b == 0x80);
            if minus_128 {
                return Err(Error::WeightOutOfRange { tensor: name });
            }
        }
        Ok(())
    }

    fn validate_vocab(&self) -> Result<(), Error> {
        let v = &self.vocab;
        let text = core::str::from_utf8(v.symbols).map_err(|e| Error::VocabNotUtf8 {
            offset: e.valid_up_to(),
        })?;
        let count = text.chars().count();
        if count + 2 != self.arch.vocab as usize {
            return Err(Error::VocabSizeMismatch {
                symbols: count,
                vocab: self.arch.vocab,
            });
        }
        if v.pad != 0 || v.eos != self.arch.vocab - 1 {
            return Err(Error::BadSpecialIds {
                pad: v.pad,
                eos: v.eos,
            });
        }
        // Symbols are distinct: O(n^2) over at most MAX_VOCAB chars, no heap.
        // (`chars().any` rather than `str::contains`, whose substring
        // searcher carries panic paths into firmware.)
        for (i, a) in text.char_indices() {
            if text
                .get(i + a.len_utf8()..)
                .is_some_and(|rest| rest.chars().any(|b| b == a))
            {
                return Err(Error::DuplicateSymbol { symbol: a });
            }
        }
        Ok(())
    }
}
