//! Every way loading a model or starting a generator can fail.

use core::fmt;

/// Names a tensor of a model, for error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TensorName {
    /// Input weights (layer 0: input table) of a layer.
    WIh(u8),
    /// Hidden-to-hidden weights of a layer.
    WHh(u8),
    /// Input bias of a layer.
    BIh(u8),
    /// Hidden bias of a layer.
    BHh(u8),
    /// Output projection.
    OutW,
    /// Output bias.
    OutB,
}

impl TensorName {
    /// A weight matrix (`w_ih`, `w_hh`, `out_w`: the tensors that may be
    /// i8), not a bias.
    pub const fn is_matrix(self) -> bool {
        matches!(
            self,
            TensorName::WIh(_) | TensorName::WHh(_) | TensorName::OutW
        )
    }
}

impl fmt::Display for TensorName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TensorName::WIh(l) => write!(f, "layer {l} w_ih"),
            TensorName::WHh(l) => write!(f, "layer {l} w_hh"),
            TensorName::BIh(l) => write!(f, "layer {l} b_ih"),
            TensorName::BHh(l) => write!(f, "layer {l} b_hh"),
            TensorName::OutW => f.write_str("out_w"),
            TensorName::OutB => f.write_str("out_b"),
        }
    }
}

/// Which capacity of a [`Workspace`](crate::Workspace) a model exceeds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Capacity {
    /// Hidden units per layer.
    Hidden,
    /// Number of layers.
    Layers,
    /// Vocabulary size.
    Vocab,
}

impl fmt::Display for Capacity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Capacity::Hidden => "hidden size",
            Capacity::Layers => "layer count",
            Capacity::Vocab => "vocabulary size",
        })
    }
}

/// A model file that cannot be used, or a request the runtime refuses.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Error {
    /// Fewer bytes than the smallest possible file.
    Truncated {
        /// Bytes given.
        len: usize,
    },
    /// The file does not start with `CHLM`.
    BadMagic,
    /// A format version this runtime does not read.
    UnsupportedVersion {
        /// Version found in the file.
        found: u16,
    },
    /// The trailing CRC-32 does not match the content: the file is damaged.
    ChecksumMismatch {
        /// Checksum stored in the file.
        stored: u32,
        /// Checksum of the content.
        computed: u32,
    },
    /// The content does not decode as a model (with a valid checksum: written
    /// by an incompatible tool).
    Malformed(postcard::Error),
    /// Bytes left over between the model and its checksum.
    TrailingBytes {
        /// How many.
        count: usize,
    },
    /// Layer count outside 1..=4.
    LayersOutOfRange {
        /// Declared layers.
        layers: u8,
    },
    /// The architecture and the stored layers disagree.
    LayerCountMismatch {
        /// Layers the architecture declares.
        arch: u8,
        /// Layers stored.
        found: usize,
    },
    /// Hidden size zero or above the format's limit.
    HiddenOutOfRange {
        /// Declared hidden size.
        hidden: u16,
    },
    /// Vocabulary below 3 ids or above the format's limit.
    VocabOutOfRange {
        /// Declared vocabulary size.
        vocab: u16,
    },
    /// The vocabulary is not valid UTF-8.
    VocabNotUtf8 {
        /// Byte offset of the first invalid sequence.
        offset: usize,
    },
    /// A symbol appears twice in the vocabulary.
    DuplicateSymbol {
        /// The repeated symbol.
        symbol: char,
    },
    /// Symbol count does not match the architecture's vocabulary size.
    VocabSizeMismatch {
        /// Symbols stored.
        symbols: usize,
        /// Vocabulary size declared (symbols + padding + `<eos>`).
        vocab: u16,
    },
    /// Padding is not id 0 or `<eos>` is not the last id.
    BadSpecialIds {
        /// Stored padding id.
        pad: u16,
        /// Stored `<eos>` id.
        eos: u16,
    },
    /// A tensor's shape does not fit the architecture.
    ShapeMismatch {
        /// Which tensor.
        tensor: TensorName,
        /// Shape the architecture implies.
        expected: [u32; 2],
        /// Shape stored.
        found: [u32; 2],
    },
    /// A tensor's byte length does not match its shape.
    DataLength {
        /// Which tensor.
        tensor: TensorName,
        /// Bytes the shape implies.
        expected: usize,
        /// Bytes stored.
        found: usize,
    },
    /// A tensor holds an infinity or NaN.
    NonFinite {
        /// Which tensor.
        tensor: TensorName,
    },
    /// An i8 tensor holds -128 (weights are -127 to 127).
    WeightOutOfRange {
        /// Which tensor.
        tensor: TensorName,
    },
    /// A tensor's element type is not allowed where it is: biases are f16,
    /// and a model's weight matrices all have one type (that of `out_w`).
    MixedDTypes {
        /// Which tensor.
        tensor: TensorName,
        /// Its type.
        dtype: crate::format::DType,
    },
    /// The file's version does not hold its weights' type (i8 needs
    /// version 3; version 2's i8 files computed another way).
    DTypeTooNew {
        /// The weights' type.
        dtype: crate::format::DType,
        /// The file's version.
        version: u16,
    },
    /// A model with i8 weights whose hidden size exceeds
    /// [`crate::format::MAX_HIDDEN_I8`].
    HiddenTooLargeForI8 {
        /// The hidden size.
        hidden: u16,
    },
    /// The model's weights are of a type this build of the runtime leaves
    /// out (f16 needs cargo feature `f16`, i8 cargo feature `int8`).
    DTypeDisabled {
        /// The weights' type.
        dtype: crate::format::DType,
    },
    /// The model is larger than the workspace it is to run in.
    TooLarge {
        /// Which capacity.
        what: Capacity,
        /// What the model needs.
        needed: usize,
        /// What the workspace holds.
        capacity: usize,
    },
    /// A temperature that is not a finite number above zero.
    BadTemperature,
    /// A top-p (nucleus) mass outside `(0, 1]`.
    BadTopP,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated { len } => write!(f, "file too short to be a model ({len} bytes)"),
            Error::BadMagic => f.write_str("not a charlm model (missing CHLM magic)"),
            Error::UnsupportedVersion { found } => {
                write!(
                    f,
                    "unsupported format version {found} (this build reads versions 1 to {})",
                    crate::VERSION
                )
            }
            Error::ChecksumMismatch { stored, computed } => write!(
                f,
                "model file is corrupted: checksum {computed:08x} does not match stored {stored:08x}"
            ),
            Error::Malformed(postcard::Error::DeserializeUnexpectedEnd) => {
                write!(
                    f,
                    "model file does not decode: it ends too early (truncated?)"
                )
            }
            Error::Malformed(e) => {
                use postcard::Error as P;
                // In the file's own terms, not the decoder's.
                let what = match e {
                    P::DeserializeBadVarint => "a count or length is not a valid number",
                    P::DeserializeBadBool => "a yes/no field is neither 0 nor 1",
                    P::DeserializeBadChar | P::DeserializeBadUtf8 => "a text field is not UTF-8",
                    P::DeserializeBadOption => "an optional field's marker is neither 0 nor 1",
                    P::DeserializeBadEnum | P::SerdeDeCustom => {
                        "a field holds a value no model has (an unknown cell or weight type?)"
                    }
                    _ => "its layout is not a model's",
                };
                write!(f, "model file does not decode: {what}")
            }
            Error::TrailingBytes { count } => write!(f, "{count} unexpected bytes after the model"),
            Error::LayersOutOfRange { layers } => write!(f, "{layers} layers (must be 1 to 4)"),
            Error::LayerCountMismatch { arch, found } => {
                write!(
                    f,
                    "the architecture's layer count is {arch} but the file stores {found}"
                )
            }
            Error::HiddenOutOfRange { hidden } => {
                write!(
                    f,
                    "hidden size {hidden} (must be 1 to {})",
                    crate::format::MAX_HIDDEN
                )
            }
            Error::VocabOutOfRange { vocab } => {
                write!(
                    f,
                    "vocabulary size {vocab} (must be 3 to {})",
                    crate::format::MAX_VOCAB
                )
            }
            Error::VocabNotUtf8 { offset } => write!(f, "vocabulary is not UTF-8 (byte {offset})"),
            // Not `{symbol:?}`: char's Debug escaping carries panic paths into firmware.
            Error::DuplicateSymbol { symbol } => {
                write!(
                    f,
                    "vocabulary lists '{symbol}' (U+{:04X}) twice",
                    u32::from(*symbol)
                )
            }
            Error::VocabSizeMismatch { symbols, vocab } => write!(
                f,
                "vocabulary has {symbols} symbols but the architecture declares {vocab} ids"
            ),
            Error::BadSpecialIds { pad, eos } => {
                write!(f, "padding id {pad} / <eos> id {eos} are not 0 / last")
            }
            Error::ShapeMismatch {
                tensor,
                expected,
                found,
            } => write!(
                f,
                "tensor {tensor} has shape {}x{}, expected {}x{}",
                found[0], found[1], expected[0], expected[1]
            ),
            Error::DataLength {
                tensor,
                expected,
                found,
            } => {
                write!(
                    f,
                    "tensor {tensor} holds {found} bytes, expected {expected}"
                )
            }
            Error::NonFinite { tensor } => write!(f, "tensor {tensor} contains inf or NaN"),
            Error::WeightOutOfRange { tensor } => {
                write!(
                    f,
                    "tensor {tensor} holds the i8 value -128 (weights are -127 to 127)"
                )
            }
            Error::MixedDTypes { tensor, dtype } => write!(
                f,
                "tensor {tensor} is {dtype}, but biases must be f16 and all weight matrices the type of out_w"
            ),
            Error::DTypeTooNew { dtype, version } => {
                write!(
                    f,
                    "{dtype} weights need format version {} (the file says version {version})",
                    dtype.min_version()
                )?;
                if *version == 2 {
                    f.write_str(
                        "; version 2 computed i8 models another way: export the model again",
                    )?;
                }
                Ok(())
            }
            Error::HiddenTooLargeForI8 { hidden } => write!(
                f,
                "hidden size {hidden} is too large for i8 weights (at most {})",
                crate::format::MAX_HIDDEN_I8
            ),
            Error::DTypeDisabled { dtype } => write!(
                f,
                "this build of the runtime cannot run {dtype} weights (cargo feature {} of charlm-runtime)",
                dtype.feature()
            ),
            Error::TooLarge {
                what,
                needed,
                capacity,
            } => write!(
                f,
                "model too large for this runtime: {what} {needed} exceeds capacity {capacity}"
            ),
            Error::BadTemperature => {
                f.write_str("temperature must be 0 (greedy) or a finite number above 0")
            }
            Error::BadTopP => f.write_str("top-p must be above 0 and at most 1"),
        }
    }
}

impl core::error::Error for Error {}
