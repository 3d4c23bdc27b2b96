//! The forward pass: fixed-buffer state, LSTM and GRU cells and the output
//! projection.
//!
//! # Numerics (the same bits on every platform)
//!
//! * Weights are IEEE f16, converted exactly to f32. All arithmetic is f32
//!   with separate multiplies and adds (no fused multiply-add); `libm`
//!   supplies `expf` and `tanhf`, so every target runs the same software.
//! * Dot products follow the one order documented in [`crate::kernel`]
//!   (8 interleaved lanes, a fixed reduction tree), whichever [`Kernel`] runs them.
//! * i8 weight matrices (cargo feature `int8`, format version 3): the
//!   vector a matrix multiplies (a hidden state, every element in
//!   `[-1, 1]`) is first quantized to Q14 by [`quantize`],
//!   `xq = clamp(trunc(x * 2^14 + copysign(0.5, x)), -2^14, 2^14)`, the sum
//!   rounded to f32 (round half away from zero but for two inputs: see
//!   [`quantize`]). A dot product is the exact integer sum
//!   `sum(q[i] * xq[i])`: at most `127 * 2^14 * 1024 < 2^31` for the
//!   largest hidden size an i8 model may have
//!   ([`crate::format::MAX_HIDDEN_I8`]). It becomes f32 (rounded), times
//!   `2^-14` (exact), times the row's scale (rounded): the `dot(...)` terms
//!   below are `(f32(dot_q) * 2^-14) * scale[r]`. Integer sums have no
//!   order, so a kernel may add them as it likes (`SMLAD` pairs on a
//!   Cortex-M4F). An input-table entry is `q * scale[token]`. Biases are
//!   f16 either way.
//! * Gate pre-activation for row `r`: `(a_r + b_ih[r]) + (dot(w_hh[r], h) + b_hh[r])`
//!   where `a_r` is the input table entry (layer 0) or `dot(w_ih[r], x)`.
//!   `sigmoid(x) = 1 / (1 + expf(-x))`.
//!   LSTM: `c = f*c + i*g`, `h = o * tanhf(c)`.
//!   GRU: `n = tanhf((a_n + b_in) + r * (dot_n + b_hn))`, `h = (1-z)*n + z*h`.
//! * Logits: `dot(out_w[v], h) + out_b[v]`, for ids 1.. (padding gets -inf).

use crate::error::{Capacity, Error};
use crate::format::{CellKind, DType, MAX_LAYERS};
use crate::kernel::{Kernel, f16_to_f32};
use crate::model::{LayerWeights, Mat, Model};

/// The fixed buffers a model runs in: the recurrent state and the logits.
///
/// `H`, `L` and `V` are capacities (hidden size, layers, vocabulary size
/// including padding and `<eos>`); any model within them runs. Size:
/// `4 * ((2L + 1) * H + V)` bytes, and with feature `int8` `2 * L * H`
/// more for the quantized hidden states.
#[derive(Clone, Debug)]
pub struct Workspace<const H: usize, const L: usize, const V: usize> {
    /// `[L][H]` hidden state of each layer.
    h: [[f32; H]; L],
    /// `[L][H]` LSTM cell state (unused by GRU).
    c: [[f32; H]; L],
    /// `[H]` the new hidden state of the layer being computed.
    hn: [f32; H],
    /// `[L][H]` each layer's hidden state quantized to Q14 (i8 models).
    #[cfg(feature = "int8")]
    hq: [[i16; H]; L],
    /// `[V]` logits of the next character.
    logits: [f32; V],
}

/// Bytes of RAM of a [`Workspace`] sized exactly to a model with `hidden`
/// units, `layers` layers and `vocab` ids: what
/// `size_of::<Workspace<hidden, layers, vocab>>()` is in a build with the i8
/// cells (cargo feature `int8`; `int8_cells`) or without them.
pub const fn workspace_bytes(
    hidden: usize,
    layers: usize,
    vocab: usize,
    int8_cells: bool,
) -> usize {
    let states = (2 * layers + 1)
        .saturating_mul(hidden)
        .saturating_add(vocab);
    let quantized = if int8_cells {
        layers.saturating_mul(hidden).saturating_mul(2)
    } else {
        0
    };
    // f32 arrays, then i16 ones, padded to the struct's 4-byte alignment
    states
        .saturating_mul(4)
        .saturating_add(quantized)
        .div_ceil(4)
        .saturating_mul(4)
}

impl<const H: usize, const L: usize, const V: usize> Default for Workspace<H, L, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const H: usize, const L: usize, const V: usize> Workspace<H, L, V> {
    /// An empty workspace; `const`, so it can live in a `static`.
    pub const fn new() -> Self {
        const {
            assert!(H > 0, "hidden capacity must be positive");
            assert!(L > 0 && L <= MAX_LAYERS, "layer capacity must be 1 to 4");
            assert!(V >= 3, "vocabulary capacity must be at least 3");
        }
        Workspace {
            h: [[0.0; H]; L],
            c: [[0.0; H]; L],
            hn: [0.0; H],
            #[cfg(feature = "int8")]
            hq: [[0; H]; L],
            logits: [0.0; V],
        }
    }

    /// Checks that `model` fits these buffers.
    pub fn check(&self, model: &Model<'_>) -> Result<(), Error> {
        Self::fits(model)
    }

    /// Checks that `model` fits buffers of these capacities, without a
    /// workspace at hand (one may be too large for the stack).
    pub fn fits(model: &Model<'_>) -> Result<(), Error> {
        let arch = model.arch();
        let fits = [
            (Capacity::Hidden, arch.hidden as usize, H),
            (Capacity::Layers, arch.layers as usize, L),
            (Capacity::Vocab, arch.vocab as usize, V),
        ];
        for (what, needed, capacity) in fits {
            if needed > capacity {
                return Err(Error::TooLarge {
                    what,
                    needed,
                    capacity,
                });
            }
        }
        Ok(())
    }

    /// Zeroes the recurrent state (a new text starts).
    pub fn reset(&mut self) {
        self.h = [[0.0; H]; L];
        self.c = [[0.0; H]; L];
        #[cfg(feature = "int8")]
        {
            self.hq = [[0; H]; L];
        }
    }

    /// Logits of the current step, ids `0..model vocab` (id 0 is `-inf`).
    pub(crate) fn logits(&self, vocab: usize) -> &[f32] {
        self.logits.get(..vocab).unwrap_or(&self.logits)
    }

    pub(crate) fn logits_mut(&mut self, vocab: usize) -> &mut [f32] {
        let all = self.logits.len();
        self.logits.get_mut(..vocab.min(all)).unwrap_or(&mut [])
    }

    /// Runs one time step on input `token` with kernel `k` and, with
    /// `logits`, leaves the logits of the next character in the workspace
    /// (without, the output layer is skipped and the logits are left stale:
    /// for a prompt's characters but its last). The caller has run
    /// [`Self::check`]; out-of-range sizes cannot panic, they compute nothing.
    pub(crate) fn step<K: Kernel>(&mut self, k: &K, model: &Model<'_>, token: u16, logits: bool) {
        #[cfg(not(target_os = "none"))]
        k.scope(
            #[inline(always)]
            || self.step_in_scope(k, model, token, logits),
        );
        // Bare metal: no scope, no forced inlining (a smaller firmware).
        #[cfg(target_os = "none")]
        self.step_in_scope(k, model, token, logits);
    }

    /// [`Self::step`] inside the kernel's [`Kernel::scope`]. On hosted
    /// targets the layer and cell functions below are inlined into it
    /// (`cfg_attr(not(target_os = "none"), inline(always))`), so a host
    /// kernel's scope compiles the whole step for its instruction set; on
    /// bare metal they stay calls, which keeps the firmware small (inlined,
    /// the Cortex-M4F demo's code grew from 31.9 KB to 42.0 KB).
    #[inline(always)]
    fn step_in_scope<K: Kernel>(&mut self, k: &K, model: &Model<'_>, token: u16, logits: bool) {
        match model.weights {
            #[cfg(feature = "f16")]
            DType::F16 => self.step_with::<K, F16>(k, model, token, logits),
            #[cfg(feature = "int8")]
            DType::I8 => self.step_with::<K, I8>(k, model, token, logits),
            // `Model::from_bytes` refuses a type whose feature is off, so
            // these cells are left out of the build.
            #[allow(unreachable_patterns)]
            _ => {}
        }
    }

    /// [`Self::step_in_scope`] for weight matrices of type `W`.
    #[inline(always)]
    fn step_with<K: Kernel, W: Weights>(
        &mut self,
        k: &K,
        model: &Model<'_>,
        token: u16,
        logits: bool,
    ) {
        let n = model.hidden();
        let cell = model.cell();
        #[cfg(feature = "int8")]
        let hq: &mut [[i16; H]] = &mut self.hq;
        #[cfg(not(feature = "int8"))]
        let hq: &mut [[i16; H]] = &mut [];
        for (l, w) in model.layers.iter().enumerate() {
            let (Some(h), Some(c), Some(hn)) = (
                self.h.get(l).and_then(|h| h.get(..n)),
                self.c.get_mut(l).and_then(|c| c.get_mut(..n)),
                self.hn.get_mut(..n),
            ) else {
                return;
            };
            // What the matrices multiply: this layer's state and (above
            // layer 0) the new state of the layer below, as W takes them.
            let (Some(hx), below) = (
                W::dot_input(&self.h, hq, l, n),
                l.checked_sub(1)
                    .and_then(|b| W::dot_input(&self.h, hq, b, n)),
            ) else {
                return;
            };
            let input = match below {
                None => Input::Table(
                    table_row::<W>(w.w_ih.data, cell.gates() * n, token),
                    if W::SCALED {
                        half_at(w.w_ih.scales, token as usize)
                    } else {
                        1.0
                    },
                ),
                Some(x) => Input::Hidden(x),
            };
            match cell {
                CellKind::Lstm => lstm_layer::<K, W>(k, w, input, hx, c, hn),
                CellKind::Gru => gru_layer::<K, W>(k, w, input, hx, h, hn),
            }
            if let Some(h) = self.h.get_mut(l).and_then(|h| h.get_mut(..n)) {
                h.copy_from_slice(hn);
            }
            W::keep(hq.get_mut(l).and_then(|q| q.get_mut(..n)), hn);
        }
        if !logits {
            return;
        }
        let top = model.layers.len().wrapping_sub(1);
        let top = W::dot_input(&self.h, hq, top, n).unwrap_or(&[]);
        let vocab = model.vocab().size();
        let logits = self.logits.get_mut(..vocab).unwrap_or(&mut []);
        output_layer::<K, W>(k, model.out_w, model.out_b, top, logits);
    }

    /// Hidden state of layer `layer`, first `hidden` units, for tests and inspection.
    pub fn hidden_state(&self, layer: usize, hidden: usize) -> &[f32] {
        self.h
            .get(layer)
            .and_then(|h| h.get(..hidden))
            .unwrap_or(&[])
    }
}

/// How a model's weight matrices are stored. The cells are compiled once
/// for each type a build runs: [`F16`] with feature `f16` (it also reads
/// the f16 biases and scales of every model), [`I8`] with feature `int8`.
trait Weights: 'static {
    /// Bytes per element.
    const BYTES: usize;
    /// Whether a row's products and values are multiplied by its scale.
    const SCALED: bool;
    /// The elements of the vectors the matrices multiply.
    type X: Copy;
    /// Layer `l`'s hidden state (`n` units) as the matrices take it: the
    /// f32 state `f`, or its quantized copy `q`.
    fn dot_input<'a, const H: usize>(
        f: &'a [[f32; H]],
        q: &'a [[i16; H]],
        l: usize,
        n: usize,
    ) -> Option<&'a [Self::X]>;
    /// Keeps what [`Weights::dot_input`] reads of a layer's new state `h`
    /// in `q` (that layer's quantized copy, `None` without feature `int8`).
    fn keep(q: Option<&mut [i16]>, h: &[f32]);
    fn dot1<K: Kernel>(k: &K, row: &[u8], x: &[Self::X]) -> f32;
    fn dot3<K: Kernel>(k: &K, rows: [&[u8]; 3], x: &[Self::X]) -> [f32; 3];
    fn dot4<K: Kernel>(k: &K, rows: [&[u8]; 4], x: &[Self::X]) -> [f32; 4];
    fn dot8<K: Kernel>(k: &K, rows: [&[u8]; LANES], x: &[Self::X]) -> [f32; LANES];
    fn dot8_block<K: Kernel>(k: &K, block: &[u8], x: &[Self::X]) -> [f32; LANES];
    /// Elements `start..start + 8` of `v` (0 past the end), unscaled.
    fn values8<K: Kernel>(k: &K, v: &[u8], start: usize) -> [f32; LANES];
    /// The elements of `v`, unscaled.
    fn values(v: &[u8]) -> impl Iterator<Item = f32>;
}

/// f16 weights: the kernel's plain methods, on the f32 state.
struct F16;

impl Weights for F16 {
    const BYTES: usize = 2;
    const SCALED: bool = false;
    type X = f32;
    #[inline(always)]
    fn dot_input<'a, const H: usize>(
        f: &'a [[f32; H]],
        _: &'a [[i16; H]],
        l: usize,
        n: usize,
    ) -> Option<&'a [f32]> {
        f.get(l)?.get(..n)
    }
    #[inline(always)]
    fn keep(_: Option<&mut [i16]>, _: &[f32]) {}
    #[inline(always)]
    fn dot1<K: Kernel>(k: &K, row: &[u8], x: &[f32]) -> f32 {
        k.dot1(row, x)
    }
    #[inline(always)]
    fn dot3<K: Kernel>(k: &K, rows: [&[u8]; 3], x: &[f32]) -> [f32; 3] {
        k.dot3(rows, x)
    }
    #[inline(always)]
    fn dot4<K: Kernel>(k: &K, rows: [&[u8]; 4], x: &[f32]) -> [f32; 4] {
        k.dot4(rows, x)
    }
    #[inline(always)]
    fn dot8<K: Kernel>(k: &K, rows: [&[u8]; LANES], x: &[f32]) -> [f32; LANES] {
        k.dot8(rows, x)
    }
    #[inline(always)]
    fn dot8_block<K: Kernel>(k: &K, block: &[u8], x: &[f32]) -> [f32; LANES] {
        k.dot8_block(block, x)
    }
    #[inline(always)]
    fn values8<K: Kernel>(k: &K, v: &[u8], start: usize) -> [f32; LANES] {
        k.halves8(v, start)
    }
    #[inline(always)]
    fn values(v: &[u8]) -> impl Iterator<Item = f32> {
        v.as_chunks::<2>().0.iter().map(|b| f16_to_f32(*b))
    }
}

/// Fraction bits of the quantized hidden states: `1.0` is `2^Q_BITS`.
pub const Q_BITS: u32 = 14;

/// `x` in Q14: `trunc(f32(x * 2^14 + copysign(0.5, x)))`, clamped to
/// `[-2^14, 2^14]` (a hidden state never leaves `[-1, 1]`; NaN gives 0).
/// `x * 2^14` is exact; the sum is rounded to f32 (nearest, ties to even)
/// before it is truncated. That is `x * 2^14` rounded half away from zero
/// for every f32 but `x = ±(2^-15 - 2^-39)` (`x * 2^14` just under one
/// half), where the sum rounds up to ±1. Every platform does the same two
/// f32 operations and gets the same integer. What the i8 cells (feature
/// `int8`) multiply their weights with.
#[inline(always)]
pub fn quantize(x: f32) -> i16 {
    const ONE: i32 = 1 << Q_BITS;
    let v = x * ONE as f32;
    let half = if v < 0.0 { -0.5 } else { 0.5 };
    ((v + half) as i32).clamp(-ONE, ONE) as i16
}

/// `f32(dot) * 2^-14`: an integer dot product of Q14 activations as a
/// value (the row's scale still to come).
#[cfg(feature = "int8")]
#[inline(always)]
fn dequantize(d: i32) -> f32 {
    const UNIT: f32 = 1.0 / (1u32 << Q_BITS) as f32;
    d as f32 * UNIT
}

/// i8 weights with a scale per row: the kernel's integer `dotq*` methods
/// on the quantized state.
#[cfg(feature = "int8")]
struct I8;

#[cfg(feature = "int8")]
impl Weights for I8 {
    const BYTES: usize = 1;
    const SCALED: bool = true;
    type X = i16;
    #[inline(always)]
    fn dot_input<'a, const H: usize>(
        _: &'a [[f32; H]],
        q: &'a [[i16; H]],
        l: usize,
        n: usize,
    ) -> Option<&'a [i16]> {
        q.get(l)?.get(..n)
    }
    #[inline(always)]
    fn keep(q: Option<&mut [i16]>, h: &[f32]) {
        for (q, h) in q.unwrap_or(&mut []).iter_mut().zip(h) {
            *q = quantize(*h);
        }
    }
    #[inline(always)]
    fn dot1<K: Kernel>(k: &K, row: &[u8], x: &[i16]) -> f32 {
        dequantize(k.dotq1(row, x))
    }
    #[inline(always)]
    fn dot3<K: Kernel>(k: &K, rows: [&[u8]; 3], x: &[i16]) -> [f32; 3] {
        k.dotq3(rows, x).map(dequantize)
    }
    #[inline(always)]
    fn dot4<K: Kernel>(k: &K, rows: [&[u8]; 4], x: &[i16]) -> [f32; 4] {
        k.dotq4(rows, x).map(dequantize)
    }
    #[inline(always)]
    fn dot8<K: Kernel>(k: &K, rows: [&[u8]; LANES], x: &[i16]) -> [f32; LANES] {
        k.dotq8(rows, x).map(dequantize)
    }
    #[inline(always)]
    fn dot8_block<K: Kernel>(k: &K, block: &[u8], x: &[i16]) -> [f32; LANES] {
        k.dotq8_block(block, x).map(dequantize)
    }
    #[inline(always)]
    fn values8<K: Kernel>(k: &K, v: &[u8], start: usize) -> [f32; LANES] {
        k.bytes8(v, start)
    }
    #[inline(always)]
    fn values(v: &[u8]) -> impl Iterator<Item = f32> {
        v.iter().map(|b| f32::from(*b as i8))
    }
}

/// `d * s` for scaled weights; `d` itself (no operation) for f16.
#[inline(always)]
fn scaled<W: Weights>(d: f32, s: f32) -> f32 {
    if W::SCALED { d * s } else { d }
}

/// [`scaled`], lane by lane.
#[inline(always)]
fn scaled_n<W: Weights, const N: usize>(d: [f32; N], s: [f32; N]) -> [f32; N] {
    if W::SCALED {
        core::array::from_fn(|i| d[i] * s[i])
    } else {
        d
    }
}

/// Half number `i` of `v` as f32 (0 if out of range): a row's scale.
#[inline(always)]
fn half_at(v: &[u8], i: usize) -> f32 {
    v.get(2 * i..)
        .and_then(|b| b.first_chunk::<2>())
        .map_or(0.0, |b| f16_to_f32(*b))
}

/// Where a layer's input comes from.
enum Input<'x, X> {
    /// Layer 0: the row of the input table for the token (`G*H`
    /// elements) and, for scaled weights, the row's scale.
    Table(&'x [u8], f32),
    /// Later layers: the new hidden state of the layer below (as the
    /// weight type takes it).
    Hidden(&'x [X]),
}

/// Row `token` of layer 0's input table (`width` elements per row).
#[cfg_attr(not(target_os = "none"), inline(always))]
fn table_row<W: Weights>(table: &[u8], width: usize, token: u16) -> &[u8] {
    let start = token as usize * width * W::BYTES;
    table.get(start..start + width * W::BYTES).unwrap_or(&[])
}

/// Splits `data` into `G` consecutive blocks of `len` bytes (empty if short).
#[inline(always)]
fn blocks<const G: usize>(data: &[u8], len: usize) -> [&[u8]; G] {
    core::array::from_fn(|g| data.get(g * len..(g + 1) * len).unwrap_or(&[]))
}

/// Iterates the rows (`cols` elements each) of `G` stacked gate blocks of a
/// `[G*H, cols]` matrix, one `[row; G]` per hidden unit.
#[cfg_attr(not(target_os = "none"), inline(always))]
fn gate_rows<W: Weights, const G: usize>(
    w: &[u8],
    h: usize,
    cols: usize,
) -> impl Iterator<Item = [&[u8]; G]> {
    let row = cols * W::BYTES;
    let mut its = blocks::<G>(w, h * row).map(|b| b.chunks(row.max(1)));
    (0..h).map(move |_| its.each_mut().map(|it| it.next().unwrap_or(&[])))
}

/// Iterates `G` stacked blocks of `h` elements of type `W` (f16 for biases
/// and scales), one `[value; G]` per unit, unscaled.
#[cfg_attr(not(target_os = "none"), inline(always))]
fn gate_values<W: Weights, const G: usize>(v: &[u8], h: usize) -> impl Iterator<Item = [f32; G]> {
    let mut its = blocks::<G>(v, h * W::BYTES).map(W::values);
    (0..h).map(move |_| its.each_mut().map(|it| it.next().unwrap_or(0.0)))
}

/// Dispatches a layer's gate rows to `dot3` (GRU) or `dot4` (LSTM) of [`Weights`] `W`.
trait GateDot<const G: usize> {
    fn dot_gates<W: Weights>(&self, rows: [&[u8]; G], x: &[W::X]) -> [f32; G];
}

impl<K: Kernel> GateDot<3> for K {
    #[inline(always)]
    fn dot_gates<W: Weights>(&self, rows: [&[u8]; 3], x: &[W::X]) -> [f32; 3] {
        W::dot3(self, rows, x)
    }
}

impl<K: Kernel> GateDot<4> for K {
    #[inline(always)]
    fn dot_gates<W: Weights>(&self, rows: [&[u8]; 4], x: &[W::X]) -> [f32; 4] {
        W::dot4(self, rows, x)
    }
}

/// Pre-activation parts of `G` gates for every unit: `(a + b_ih, dot_hh + b_hh)`.
#[cfg_attr(not(target_os = "none"), inline(always))]
fn gate_inputs<'w, K: GateDot<G>, W: Weights, const G: usize>(
    k: &'w K,
    w: &LayerWeights<'w>,
    input: Input<'w, W::X>,
    h: &'w [W::X],
) -> impl Iterator<Item = ([f32; G], [f32; G])> + 'w {
    let n = h.len();
    let (mut table, mut x) = match input {
        Input::Table(row, s) => (Some((gate_values::<W, G>(row, n), s)), None),
        Input::Hidden(x) => (None, Some((gate_rows::<W, G>(w.w_ih.data, n, x.len()), x))),
    };
    // The rows' scales (none for f16).
    let mut scales_ih = W::SCALED.then(|| gate_values::<F16, G>(w.w_ih.scales, n));
    let mut scales_hh = W::SCALED.then(|| gate_values::<F16, G>(w.w_hh.scales, n));
    gate_rows::<W, G>(w.w_hh.data, n, n)
        .zip(gate_values::<F16, G>(w.b_ih, n))
        .zip(gate_values::<F16, G>(w.b_hh, n))
        .map(move |((rows_hh, b_ih), b_hh)| {
            let a = match (&mut table, &mut x) {
                (Some((t, s)), _) => t.next().unwrap_or([0.0; G]).map(|v| scaled::<W>(v, *s)),
                (None, Some((rows, x))) => {
                    let d = rows.next().map_or([0.0; G], |r| k.dot_gates::<W>(r, x));
                    let s = scales_ih.as_mut().and_then(Iterator::next);
                    scaled_n::<W, G>(d, s.unwrap_or([0.0; G]))
                }
                (None, None) => [0.0; G],
            };
            let hh = k.dot_gates::<W>(rows_hh, h);
            let s = scales_hh.as_mut().and_then(Iterator::next);
            let hh = scaled_n::<W, G>(hh, s.unwrap_or([0.0; G]));
            (
                core::array::from_fn(|g| a[g] + b_ih[g]),
                core::array::from_fn(|g| hh[g] + b_hh[g]),
            )
        })
}

/// With [`Kernel::LANE_ACTIVATIONS`], units go through the nonlinearities 8
/// at a time ([`Kernel::expf8`], [`Kernel::tanhf8`]); a last, partial group
/// fills its spare lanes with zeros and drops their results. Each lane
/// computes what the one-unit path does, operation for operation.
const LANES: usize = 8;

/// `sigmoid(x) = 1 / (1 + expf(-x))`, lane by lane.
#[inline(always)]
fn sigmoid8<K: Kernel>(k: &K, x: [f32; LANES]) -> [f32; LANES] {
    k.expf8(x.map(|x| -x)).map(|e| 1.0 / (1.0 + e))
}

/// Row `r` (`cols` elements) of a row-major matrix (empty if out of range).
#[inline(always)]
fn row<W: Weights>(w: &[u8], r: usize, cols: usize) -> &[u8] {
    w.get(r * cols * W::BYTES..(r + 1) * cols * W::BYTES)
        .unwrap_or(&[])
}

/// Rows `first + j0 ..= first + j0 + LANES - 1` of a gate block of `n` rows
/// (lanes past `n` repeat row `first + j0`).
#[inline(always)]
fn rows8<W: Weights>(m: &[u8], first: usize, n: usize, j0: usize, cols: usize) -> [&[u8]; LANES] {
    core::array::from_fn(|l| row::<W>(m, first + if j0 + l < n { j0 + l } else { j0 }, cols))
}

/// The gate pre-activations of units `j0..j0 + LANES` (of `n`), gate-major:
/// `(a + b_ih) + (dot_hh + b_hh)`, as the one-unit path adds them. Lanes
/// past `n` repeat unit `j0` and are to be dropped.
#[inline(always)]
fn gate_block<K: Kernel, W: Weights, const G: usize>(
    k: &K,
    w: &LayerWeights<'_>,
    input: &Input<'_, W::X>,
    h: &[W::X],
    j0: usize,
) -> ([[f32; LANES]; G], [[f32; LANES]; G]) {
    let n = h.len();
    // Units j0..j0 + 8 of gate g: one block of 8 consecutive rows, or (a
    // last, partial group) rows sliced one by one; then their scales.
    let dot = |m: &Mat<'_>, g: usize, x: &[W::X]| {
        let (start, len) = (
            (g * n + j0) * x.len() * W::BYTES,
            LANES * x.len() * W::BYTES,
        );
        let d = match m.data.get(start..start + len) {
            Some(block) if j0 + LANES <= n => W::dot8_block(k, block, x),
            _ => W::dot8(k, rows8::<W>(m.data, g * n, n, j0, x.len()), x),
        };
        let s = if W::SCALED {
            k.halves8(m.scales, g * n + j0)
        } else {
            [0.0; LANES]
        };
        scaled_n::<W, LANES>(d, s)
    };
    let mut a_part = [[0.0f32; LANES]; G];
    let mut h_part = [[0.0f32; LANES]; G];
    for (g, (ap, hp)) in a_part.iter_mut().zip(h_part.iter_mut()).enumerate() {
        let a = match input {
            Input::Table(t, s) => W::values8(k, t, g * n + j0).map(|v| scaled::<W>(v, *s)),
            Input::Hidden(x) => dot(&w.w_ih, g, x),
        };
        let hh = dot(&w.w_hh, g, h);
        let (b_ih, b_hh) = (k.halves8(w.b_ih, g * n + j0), k.halves8(w.b_hh, g * n + j0));
        *ap = core::array::from_fn(|l| a[l] + b_ih[l]);
        *hp = core::array::from_fn(|l| hh[l] + b_hh[l]);
    }
    (a_part, h_part)
}

#[cfg_attr(not(target_os = "none"), inline(always))]
fn lstm_lanes<K: Kernel, W: Weights>(
    k: &K,
    w: &LayerWeights<'_>,
    input: Input<'_, W::X>,
    h: &[W::X],
    c: &mut [f32],
    hn: &mut [f32],
) {
    for (j, (c, hn)) in c.chunks_mut(LANES).zip(hn.chunks_mut(LANES)).enumerate() {
        let (a, b) = gate_block::<K, W, 4>(k, w, &input, h, j * LANES);
        let pre: [[f32; LANES]; 4] =
            core::array::from_fn(|g| core::array::from_fn(|l| a[g][l] + b[g][l]));
        let [pi, pf, pg, po] = pre;
        let (i, f, g, o) = (
            sigmoid8(k, pi),
            sigmoid8(k, pf),
            k.tanhf8(pg),
            sigmoid8(k, po),
        );
        let mut c_old = [0.0f32; LANES];
        for (co, c) in c_old.iter_mut().zip(c.iter()) {
            *co = *c;
        }
        let c_new: [f32; LANES] = core::array::from_fn(|l| f[l] * c_old[l] + i[l] * g[l]);
        let tc = k.tanhf8(c_new);
        for ((((c, hn), cn), tc), o) in c.iter_mut().zip(hn.iter_mut()).zip(c_new).zip(tc).zip(o) {
            *c = cn;
            *hn = o * tc;
        }
    }
}

#[cfg_attr(not(target_os = "none"), inline(always))]
fn gru_lanes<K: Kernel, W: Weights>(
    k: &K,
    w: &LayerWeights<'_>,
    input: Input<'_, W::X>,
    hx: &[W::X],
    h: &[f32],
    hn: &mut [f32],
) {
    for (j, (hp, hn)) in h.chunks(LANES).zip(hn.chunks_mut(LANES)).enumerate() {
        let (a, b) = gate_block::<K, W, 3>(k, w, &input, hx, j * LANES);
        let r = sigmoid8(k, core::array::from_fn(|l| a[0][l] + b[0][l]));
        let z = sigmoid8(k, core::array::from_fn(|l| a[1][l] + b[1][l]));
        let n = k.tanhf8(core::array::from_fn(|l| a[2][l] + r[l] * b[2][l]));
        for (((hn, z), n), hp) in hn.iter_mut().zip(z).zip(n).zip(hp) {
            *hn = (1.0 - z) * n + z * *hp;
        }
    }
}

#[cfg_attr(not(target_os = "none"), inline(always))]
fn lstm_layer<K: Kernel, W: Weights>(
    k: &K,
    w: &LayerWeights<'_>,
    input: Input<'_, W::X>,
    h: &[W::X],
    c: &mut [f32],
    hn: &mut [f32],
) {
    if K::LANE_ACTIVATIONS {
        lstm_lanes::<K, W>(k, w, input, h, c, hn)
    } else {
        lstm_units::<K, W>(k, w, input, h, c, hn)
    }
}

#[cfg_attr(not(target_os = "none"), inline(always))]
fn gru_layer<K: Kernel, W: Weights>(
    k: &K,
    w: &LayerWeights<'_>,
    input: Input<'_, W::X>,
    hx: &[W::X],
    h: &[f32],
    hn: &mut [f32],
) {
    if K::LANE_ACTIVATIONS {
        gru_lanes::<K, W>(k, w, input, hx, h, hn)
    } else {
        gru_units::<K, W>(k, w, input, hx, h, hn)
    }
}

/// One unit at a time with libm (kernels without [`Kernel::LANE_ACTIVATIONS`]:
/// the smallest code, for microcontrollers).
#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + libm::expf(-x))
}

#[cfg_attr(not(target_os = "none"), inline(always))]
fn lstm_units<K: Kernel, W: Weights>(
    k: &K,
    w: &LayerWeights<'_>,
    input: Input<'_, W::X>,
    h: &[W::X],
    c: &mut [f32],
    hn: &mut [f32],
) {
    for (((a, b), c), hn) in gate_inputs::<K, W, 4>(k, w, input, h)
        .zip(c.iter_mut())
        .zip(hn.iter_mut())
    {
        let i = sigmoid(a[0] + b[0]);
        let f = sigmoid(a[1] + b[1]);
        let g = libm::tanhf(a[2] + b[2]);
        let o = sigmoid(a[3] + b[3]);
        *c = f * *c + i * g;
        *hn = o * libm::tanhf(*c);
    }
}

#[cfg_attr(not(target_os = "none"), inline(always))]
fn gru_units<K: Kernel, W: Weights>(
    k: &K,
    w: &LayerWeights<'_>,
    input: Input<'_, W::X>,
    hx: &[W::X],
    h: &[f32],
    hn: &mut [f32],
) {
    for (((a, b), hp), hn) in gate_inputs::<K, W, 3>(k, w, input, hx)
        .zip(h.iter())
        .zip(hn.iter_mut())
    {
        let r = sigmoid(a[0] + b[0]);
        let z = sigmoid(a[1] + b[1]);
        let n = libm::tanhf(a[2] + r * b[2]);
        *hn = (1.0 - z) * n + z * *hp;
    }
}

/// `logits[v] = dot(out_w[v], h) + out_b[v]` for ids 1..; padding gets -inf.
#[cfg_attr(not(target_os = "none"), inline(always))]
fn output_layer<K: Kernel, W: Weights>(
    k: &K,
    out_w: Mat<'_>,
    out_b: &[u8],
    h: &[W::X],
    logits: &mut [f32],
) {
    let row = h.len() * W::BYTES;
    let Some((pad, rest)) = logits.split_first_mut() else {
        return;
    };
    *pad = f32::NEG_INFINITY;
    // Kernels that work 8 units at a time take the rows 8 at a time too:
    // rows 1 + 8i .. 9 + 8i (row 0 is the padding id's) as one block.
    let (octs, rest) = if K::LANE_ACTIVATIONS {
        rest.as_chunks_mut::<8>()
    } else {
        (&mut [][..], rest)
    };
    for (i, oct) in octs.iter_mut().enumerate() {
        let d = W::dot8_block(k, out_w.data.get((1 + 8 * i) * row..).unwrap_or(&[]), h);
        let s = if W::SCALED {
            k.halves8(out_w.scales, 1 + 8 * i)
        } else {
            [0.0; LANES]
        };
        let d = scaled_n::<W, LANES>(d, s);
        let b = k.halves8(out_b, 1 + 8 * i);
        for ((l, d), b) in oct.iter_mut().zip(d).zip(b) {
            *l = d + b;
        }
    }
    // The rest: pairs rows and biases by hand (`zip` over `chunks` asks for
    // the length, a division the compiler cannot prove non-zero: a panic path).
    // Each row with its bias and (scaled weights) its scale.
    let mut biases = out_b.as_chunks::<2>().0.iter();
    let mut scales = out_w.scales.as_chunks::<2>().0.iter();
    let mut rows = out_w
        .data
        .chunks(row.max(1))
        .map(move |w| {
            let b = biases.next().map_or(0.0, |b| f16_to_f32(*b));
            let s = if W::SCALED {
                scales.next().map_or(0.0, |s| f16_to_f32(*s))
            } else {
                0.0
            };
            (w, b, s)
        })
        .skip(1 + 8 * octs.len());
    let (quads, single) = rest.as_chunks_mut::<4>();
    for quad in quads.iter_mut() {
        let mut next = || rows.next().unwrap_or((&[], 0.0, 0.0));
        let [r0, r1, r2, r3] = [next(), next(), next(), next()];
        let d = W::dot4(k, [r0.0, r1.0, r2.0, r3.0], h);
        let d = scaled_n::<W, 4>(d, [r0.2, r1.2, r2.2, r3.2]);
        let b = [r0.1, r1.1, r2.1, r3.1];
        *quad = [d[0] + b[0], d[1] + b[1], d[2] + b[2], d[3] + b[3]];
    }
    for l in single.iter_mut() {
        let (w, b, s) = rows.next().unwrap_or((&[], 0.0, 0.0));
        *l = scaled::<W>(W::dot1(k, w, h), s) + b;
    }
}

// Built with and without the i8 cells (`cargo test -p charlm-runtime`,
// with and without `--features int8`).
#[cfg(test)]
mod size_tests {
    use super::*;

    #[test]
    fn workspace_bytes_is_the_size_of_the_workspace() {
        fn check<const H: usize, const L: usize, const V: usize>() {
            assert_eq!(
                workspace_bytes(H, L, V, cfg!(feature = "int8")),
                core::mem::size_of::<Workspace<H, L, V>>(),
                "Workspace<{H}, {L}, {V}>"
            );
        }
        check::<20, 1, 36>();
        check::<21, 1, 36>(); // an odd number of i16s: 2 bytes of padding
        check::<7, 3, 3>();
        check::<128, 1, 84>();
        check::<256, 4, 256>();
        check::<1023, 2, 1000>();
    }
}

#[cfg(all(test, feature = "int8"))]
mod tests {
    use super::*;
    use rand_core::RngCore;

    /// Round half away from zero of `x * 2^14` in f64, clamped.
    fn q14(x: f64) -> i16 {
        let v = x * 16384.0;
        let r = if v < 0.0 {
            -((-v + 0.5).floor())
        } else {
            (v + 0.5).floor()
        };
        r.clamp(-16384.0, 16384.0) as i16
    }

    #[test]
    fn quantize_rounds_half_away_from_zero_and_clamps() {
        let lsb = 1.0 / 16384.0;
        let cases: [(f32, i16); 12] = [
            (0.0, 0),
            (-0.0, 0),
            (1.0, 16384),
            (-1.0, -16384),
            (0.5 * lsb, 1),
            (-0.5 * lsb, -1),
            (1.5 * lsb, 2),
            (0.49 * lsb, 0),
            (2.0, 16384),
            (f32::NEG_INFINITY, -16384),
            (f32::INFINITY, 16384),
            (f32::NAN, 0),
        ];
        for (x, want) in cases {
            assert_eq!(quantize(x), want, "{x}");
        }
        // The two inputs where the f32 sum rounds up across the half, as
        // documented, and their neighbours, which follow the f64 rule.
        let just_under = f32::from_bits(0x37ff_ffff);
        assert_eq!(f64::from(just_under), 2f64.powi(-15) - 2f64.powi(-39));
        for sign in [1.0f32, -1.0] {
            let x = sign * just_under;
            assert_eq!(quantize(x), sign as i16, "{x:e}");
            assert_eq!(q14(f64::from(x)), 0);
            for y in [f32::from_bits(0x37ff_fffe), f32::from_bits(0x3800_0000)] {
                let y = sign * y;
                assert_eq!(quantize(y), q14(f64::from(y)), "{y:e}");
            }
        }
        // Every f32 in [-1, 1] the state can hold, sampled: the f64 rule.
        let mut rng = crate::SeededRng::new(14);
        for _ in 0..1_000_000 {
            let x = f32::from_bits(rng.next_u32() & 0xbf80_0000 | rng.next_u32() & 0x007f_ffff);
            let x = if x.abs() <= 1.0 { x } else { x / 2.0 };
            if x.abs() != just_under {
                assert_eq!(quantize(x), q14(f64::from(x)), "{x:e}");
            }
        }
    }
}
