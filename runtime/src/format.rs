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
//! Data is row-major, little-endian IEEE binary16.

use serde::{Deserialize, Serialize};

use crate::error::{Error, TensorName};

/// The four bytes every `.clm` file starts with.
pub const MAGIC: [u8; 4] = *b"CHLM";
/// The format version this crate reads and writes.
pub const VERSION: u16 = 1;
/// Most layers the format describes.
pub const MAX_LAYERS: usize = 4;
/// Largest hidden size the format describes (a workspace may allow less).
pub const MAX_HIDDEN: usize = 4096;
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
    /// Bits per character on held-out data after rounding to f16.
    pub val_bpc_f16: Option<f32>,
}

/// Magic and version, read before anything else.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Always [`MAGIC`].
    pub magic: [u8; 4],
    /// Always [`VERSION`] for files this crate writes.
    pub version: u16,
}

impl Header {
    /// The header of files this crate writes.
    pub const CURRENT: Header = Header {
        magic: MAGIC,
        version: VERSION,
    };
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
        if header.version != VERSION {
            return Err(Error::UnsupportedVersion {
                found: header.version,
            });
        }
        let (content, stored) = bytes
            .split_last_chunk::<4>()
            .ok_or(Error::Truncated { len: bytes.len() })?;
        let stored = u32::from_le_bytes(*stored);
        if verify {
            let computed = crc32(content);
            if stored != computed {
                return Err(Error::ChecksumMismatch { stored, computed });
            }
        }
        let (file, rest) =
            postcard::take_from_bytes::<ModelFile<'a>>(content).map_err(Error::Malformed)?;
        if !rest.is_empty() {
            return Err(Error::TrailingBytes { count: rest.len() });
        }
        file.body.validate()?;
        Ok(file)
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
            let DType::F16 = t.dtype;
            let len = expected[0] as usize * expected[1] as usize * 2;
            if t.data.len() != len {
                return Err(Error::DataLength {
                    tensor: name,
                    expected: len,
                    found: t.data.len(),
                });
            }
            // Inf and NaN halves (exponent all ones) are rejected: they mean a
            // broken export, and the runtime's exact f16 decoding relies on it.
            if t.data
                .as_chunks::<2>()
                .0
                .iter()
                .any(|&[_, hi]| hi & 0x7c == 0x7c)
            {
                return Err(Error::NonFinite { tensor: name });
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
