//! charlm's inference runtime: runs character-level LSTM and GRU models from
//! `.clm` files on anything from a Cortex-M0+ to a server.
//!
//! `#![no_std]`, no allocation, no `unsafe`. A [`Model`] is a validated view
//! of the file's bytes (weights stay in flash); a [`Workspace`] holds all
//! mutable state in fixed arrays sized by const generics; a [`Generator`]
//! streams characters, greedily or with a temperature (and, with cargo
//! feature `truncation`, top-k and top-p). Weight matrices are f16 (cargo
//! feature `f16`, on by default) or i8 with a scale per row (cargo feature
//! `int8`, format version 3, integer products); a build runs the types it has. Every
//! platform produces the same characters bit for bit: see [`cell`] for the
//! numerics.
//!
//! Read in order: [`format`] -> [`model`] -> [`kernel`] -> [`cell`] -> [`sampler`] -> [`generator`].
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
// With neither weight type (features `f16`, `int8`) the format can be read
// but every model is refused, and the cells are never called.
#![cfg_attr(not(any(feature = "f16", feature = "int8")), allow(unused))]

#[cfg(feature = "alloc")]
extern crate alloc;

pub mod cell;
pub mod error;
pub mod format;
pub mod generator;
pub mod kernel;
pub mod model;
pub mod sampler;

pub use cell::Workspace;
pub use error::{Capacity, Error, TensorName};
pub use format::{Arch, CellKind, VERSION};
pub use generator::{Fed, Generator, Stop};
pub use kernel::{Kernel, Portable};
pub use model::{Model, Vocab};
#[cfg(feature = "truncation")]
pub use sampler::Truncation;
pub use sampler::{Sampler, Temperature};

/// Whether this build has the i8 cells (cargo feature `int8`), which add
/// each layer's quantized hidden state to a [`Workspace`]
/// ([`cell::workspace_bytes`]).
pub const INT8_CELLS: bool = cfg!(feature = "int8");

/// The small seeded generator golden outputs are defined with: PCG-XSH-RR
/// 64/32 (`rand_pcg`), value-stable across releases and platforms.
pub use rand_pcg::Pcg32;

/// `Pcg32` seeded the way every charlm tool seeds it.
pub struct SeededRng;

impl SeededRng {
    /// The generator for `seed`, on one fixed stream. The seed is mixed
    /// first (SplitMix64's finalizer, a bijection of `u64`): PCG32 takes its
    /// seed as its state almost as it is, so consecutive seeds (`--count`'s
    /// texts use seed, seed + 1, ...) would start on states a fixed
    /// multiple apart, and their first draws would be spread more evenly
    /// than independent ones.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(seed: u64) -> Pcg32 {
        Pcg32::new(mix(seed), 0x0a02_bdbf_7bb3_c0a7)
    }
}

/// SplitMix64's output function: every bit of `z` reaches every bit of the
/// result.
const fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
