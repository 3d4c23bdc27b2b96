//! The forward pass: fixed-buffer state, the dot-product kernel, LSTM and GRU
//! cells and the output projection.
//!
//! # Numerics (the same bits on every platform)
//!
//! * Weights are IEEE f16, converted exactly to f32. All arithmetic is f32
//!   with separate multiplies and adds (no fused multiply-add); `libm`
//!   supplies `expf` and `tanhf`, so every target runs the same software.
//! * A dot product over `n` elements accumulates element `i` into lane
//!   `i % 8` (in increasing `i`), then reduces the lanes as
//!   `((l0+l4) + (l2+l6)) + ((l1+l5) + (l3+l7))`. A SIMD host computes
//!   exactly that order in vector registers; a Cortex-M runs it in scalar code.
//! * The f16 -> f32 conversion in the dot product is a shift and a mask:
//!   the half's bits placed in an f32 give the value times 2^-112 (for every
//!   finite half, subnormals included), so hidden vectors are stored times
//!   2^112 and the product `(w * 2^-112) * (x * 2^112)` is exactly the
//!   rounded `w * x`. Scaling by a power of two is exact while |x| < 2^16,
//!   and hidden states stay within [-1, 1]. The loader rejects inf/NaN halves.
//! * Gate pre-activation for row `r`: `(a_r + b_ih[r]) + (dot(w_hh[r], h) + b_hh[r])`
//!   where `a_r` is the input table entry (layer 0) or `dot(w_ih[r], x)`.
//!   `sigmoid(x) = 1 / (1 + expf(-x))`.
//!   LSTM: `c = f*c + i*g`, `h = o * tanhf(c)`.
//!   GRU: `n = tanhf((a_n + b_in) + r * (dot_n + b_hn))`, `h = (1-z)*n + z*h`.
//! * Logits: `dot(out_w[v], h) + out_b[v]`, for ids 1.. (padding gets -inf).

use crate::error::{Capacity, Error};
use crate::format::{CellKind, MAX_LAYERS};
use crate::model::{LayerWeights, Model};

/// 2^112: hidden states are stored times this factor (see the module docs).
const SCALE: f32 = f32::from_bits((127 + 112) << 23);
/// 2^-112, the inverse of [`SCALE`] (exact).
const UNSCALE: f32 = f32::from_bits((127 - 112) << 23);

/// The fixed buffers a model runs in: the recurrent state and the logits.
///
/// `H`, `L` and `V` are capacities (hidden size, layers, vocabulary size
/// including padding and `<eos>`); any model within them runs. Size:
/// `4 * ((2L + 1) * H + V)` bytes.
#[derive(Clone, Debug)]
pub struct Workspace<const H: usize, const L: usize, const V: usize> {
    /// `[L][H]` hidden state of each layer, times 2^112.
    h: [[f32; H]; L],
    /// `[L][H]` LSTM cell state (unused by GRU).
    c: [[f32; H]; L],
    /// `[H]` the new hidden state of the layer being computed, times 2^112.
    hn: [f32; H],
    /// `[V]` logits of the next character.
    logits: [f32; V],
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
        Workspace { h: [[0.0; H]; L], c: [[0.0; H]; L], hn: [0.0; H], logits: [0.0; V] }
    }

    /// Checks that `model` fits these buffers.
    pub fn check(&self, model: &Model<'_>) -> Result<(), Error> {
        let arch = model.arch();
        let fits = [
            (Capacity::Hidden, arch.hidden as usize, H),
            (Capacity::Layers, arch.layers as usize, L),
            (Capacity::Vocab, arch.vocab as usize, V),
        ];
        for (what, needed, capacity) in fits {
            if needed > capacity {
                return Err(Error::TooLarge { what, needed, capacity });
            }
        }
        Ok(())
    }

    /// Zeroes the recurrent state (a new text starts).
    pub fn reset(&mut self) {
        self.h = [[0.0; H]; L];
        self.c = [[0.0; H]; L];
    }

    /// Logits of the current step, ids `0..model vocab` (id 0 is `-inf`).
    pub(crate) fn logits(&self, vocab: usize) -> &[f32] {
        self.logits.get(..vocab).unwrap_or(&self.logits)
    }

    pub(crate) fn logits_mut(&mut self, vocab: usize) -> &mut [f32] {
        let all = self.logits.len();
        self.logits.get_mut(..vocab.min(all)).unwrap_or(&mut [])
    }

    /// Runs one time step on input `token` and leaves the logits of the next
    /// character in the workspace. The caller has run [`Self::check`].
    pub(crate) fn step(&mut self, model: &Model<'_>, token: u16) {
        let n = model.hidden();
        let cell = model.cell();
        for (l, w) in model.layers.iter().enumerate() {
            let Some((below, this)) = self.h.split_at_mut_checked(l) else { return };
            let (Some(h), Some(c)) = (this.first_mut(), self.c.get_mut(l)) else { return };
            let (Some(h), Some(c), Some(hn)) = (h.get_mut(..n), c.get_mut(..n), self.hn.get_mut(..n))
            else {
                return;
            };
            let input = match below.last() {
                None => Input::Table(table_row(w.w_ih, cell.gates() * n, token)),
                Some(x) => Input::Hidden(x.get(..n).unwrap_or(&[])),
            };
            match cell {
                CellKind::Lstm => lstm_layer(w, input, h, c, hn),
                CellKind::Gru => gru_layer(w, input, h, hn),
            }
            h.copy_from_slice(hn);
        }
        let top = self.h.get(model.layers.len().wrapping_sub(1)).map_or(&[][..], |h| h.get(..n).unwrap_or(&[]));
        let vocab = model.vocab().size();
        let logits = self.logits.get_mut(..vocab).unwrap_or(&mut []);
        output_layer(model.out_w, model.out_b, top, logits);
    }
}

/// Where a layer's input comes from.
enum Input<'x> {
    /// Layer 0: the row of the input table for the token (`G*H` halves).
    Table(&'x [u8]),
    /// Later layers: the new hidden state of the layer below (times 2^112).
    Hidden(&'x [f32]),
}

/// Row `token` of layer 0's input table (`width` halves per row).
fn table_row(table: &[u8], width: usize, token: u16) -> &[u8] {
    let start = token as usize * width * 2;
    table.get(start..start + width * 2).unwrap_or(&[])
}

/// Splits `data` into `G` consecutive blocks of `len` bytes (empty if short).
#[inline(always)]
fn blocks<const G: usize>(data: &[u8], len: usize) -> [&[u8]; G] {
    core::array::from_fn(|g| data.get(g * len..(g + 1) * len).unwrap_or(&[]))
}

/// Exact value of a little-endian f16.
#[inline(always)]
fn half(b: [u8; 2]) -> f32 {
    half::f16::from_le_bytes(b).to_f32()
}

/// Bits of a half placed in an f32: the value times 2^-112 for finite halves.
#[inline(always)]
fn half_scaled(b: [u8; 2]) -> f32 {
    let h = u16::from_le_bytes(b) as u32;
    f32::from_bits(((h & 0x8000) << 16) | ((h & 0x7fff) << 13))
}

/// Reduces the 8 lanes in the documented order.
#[inline(always)]
fn reduce(a: [f32; 8]) -> f32 {
    ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]))
}

/// `R` dot products of f16 rows with one f32 vector `x` stored times 2^112.
/// Rows shorter than `x` contribute only their elements (never happens for a
/// validated model). Computing several rows at once gives a superscalar host
/// independent accumulators; each row's order is still the documented one.
#[inline(always)]
fn dot<const R: usize>(rows: [&[u8]; R], x: &[f32]) -> [f32; R] {
    let mut acc = [[0.0f32; 8]; R];
    let (xc, xt) = x.as_chunks::<8>();
    let wc: [(&[[u8; 16]], &[u8]); R] = rows.map(|r| r.as_chunks::<16>());
    for (k, xk) in xc.iter().enumerate() {
        for (a, (w, _)) in acc.iter_mut().zip(&wc) {
            if let Some(wk) = w.get(k) {
                for lane in 0..8 {
                    let wl = half_scaled([wk[2 * lane], wk[2 * lane + 1]]);
                    a[lane] += wl * xk[lane];
                }
            }
        }
    }
    // The last n % 8 elements continue in lanes 0.. (element i in lane i % 8).
    for (a, (_, tail)) in acc.iter_mut().zip(&wc) {
        for ((al, wl), xl) in a.iter_mut().zip(tail.as_chunks::<2>().0).zip(xt) {
            *al += half_scaled(*wl) * *xl;
        }
    }
    acc.map(reduce)
}

/// Iterates the rows (`cols` halves each) of `G` stacked gate blocks of a
/// `[G*H, cols]` matrix, one `[row; G]` per hidden unit.
fn gate_rows<const G: usize>(w: &[u8], h: usize, cols: usize) -> impl Iterator<Item = [&[u8]; G]> {
    let row = cols * 2;
    let mut its = blocks::<G>(w, h * row).map(|b| b.chunks(row.max(1)));
    (0..h).map(move |_| its.each_mut().map(|it| it.next().unwrap_or(&[])))
}

/// Iterates `G` stacked blocks of `h` halves, one `[value; G]` per unit.
fn gate_values<const G: usize>(v: &[u8], h: usize) -> impl Iterator<Item = [f32; G]> {
    let mut its = blocks::<G>(v, h * 2).map(|b| b.as_chunks::<2>().0.iter());
    (0..h).map(move |_| its.each_mut().map(|it| it.next().map_or(0.0, |b| half(*b))))
}

/// Pre-activation parts of `G` gates for every unit: `(a + b_ih, dot_hh + b_hh)`.
fn gate_inputs<'w, const G: usize>(
    w: &LayerWeights<'w>,
    input: Input<'w>,
    h: &'w [f32],
) -> impl Iterator<Item = ([f32; G], [f32; G])> + 'w {
    let n = h.len();
    let (table, x) = match input {
        Input::Table(row) => (Some(gate_values::<G>(row, n)), None),
        Input::Hidden(x) => (None, Some((gate_rows::<G>(w.w_ih, n, x.len()), x))),
    };
    let mut table = table;
    let mut x = x;
    gate_rows::<G>(w.w_hh, n, n).zip(gate_values::<G>(w.b_ih, n)).zip(gate_values::<G>(w.b_hh, n)).map(
        move |((rows_hh, b_ih), b_hh)| {
            let a = match (&mut table, &mut x) {
                (Some(t), _) => t.next().unwrap_or([0.0; G]),
                (None, Some((rows, x))) => rows.next().map_or([0.0; G], |r| dot(r, x)),
                (None, None) => [0.0; G],
            };
            let hh = dot(rows_hh, h);
            (core::array::from_fn(|g| a[g] + b_ih[g]), core::array::from_fn(|g| hh[g] + b_hh[g]))
        },
    )
}

#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + libm::expf(-x))
}

fn lstm_layer(w: &LayerWeights<'_>, input: Input<'_>, h: &[f32], c: &mut [f32], hn: &mut [f32]) {
    for (((a, b), c), hn) in gate_inputs::<4>(w, input, h).zip(c.iter_mut()).zip(hn.iter_mut()) {
        let i = sigmoid(a[0] + b[0]);
        let f = sigmoid(a[1] + b[1]);
        let g = libm::tanhf(a[2] + b[2]);
        let o = sigmoid(a[3] + b[3]);
        *c = f * *c + i * g;
        *hn = (o * libm::tanhf(*c)) * SCALE;
    }
}

fn gru_layer(w: &LayerWeights<'_>, input: Input<'_>, h: &[f32], hn: &mut [f32]) {
    for (((a, b), hp), hn) in gate_inputs::<3>(w, input, h).zip(h.iter()).zip(hn.iter_mut()) {
        let r = sigmoid(a[0] + b[0]);
        let z = sigmoid(a[1] + b[1]);
        let n = libm::tanhf(a[2] + r * b[2]);
        *hn = ((1.0 - z) * n + z * (*hp * UNSCALE)) * SCALE;
    }
}

/// `logits[v] = dot(out_w[v], h) + out_b[v]` for ids 1..; padding gets -inf.
fn output_layer(out_w: &[u8], out_b: &[u8], h: &[f32], logits: &mut [f32]) {
    let row = h.len() * 2;
    let mut rows = out_w.chunks(row.max(1)).zip(out_b.as_chunks::<2>().0).skip(1);
    let Some((pad, rest)) = logits.split_first_mut() else { return };
    *pad = f32::NEG_INFINITY;
    let out = rest.as_chunks_mut::<4>();
    for quad in out.0.iter_mut() {
        let mut next = || rows.next().unwrap_or((&[], &[0, 0]));
        let [r0, r1, r2, r3] = [next(), next(), next(), next()];
        let d = dot([r0.0, r1.0, r2.0, r3.0], h);
        *quad = [d[0] + half(*r0.1), d[1] + half(*r1.1), d[2] + half(*r2.1), d[3] + half(*r3.1)];
    }
    for l in out.1.iter_mut() {
        let (w, b) = rows.next().unwrap_or((&[], &[0, 0]));
        *l = dot([w], h)[0] + half(*b);
    }
}

impl<const H: usize, const L: usize, const V: usize> Workspace<H, L, V> {
    /// Hidden state of layer `l` (unscaled), for tests and inspection.
    pub fn hidden_state(&self, layer: usize, hidden: usize) -> impl Iterator<Item = f32> + '_ {
        self.h.get(layer).into_iter().flat_map(move |h| h.iter().take(hidden).map(|x| x * UNSCALE))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::RngCore;

    /// The documented order, written the plain way: proper f16 conversion,
    /// unscaled x, lane i % 8, the fixed reduction tree.
    fn reference_dot(row: &[half::f16], x: &[f32]) -> f32 {
        let mut lanes = [0.0f32; 8];
        for (i, (w, x)) in row.iter().zip(x).enumerate() {
            lanes[i % 8] += w.to_f32() * x;
        }
        ((lanes[0] + lanes[4]) + (lanes[2] + lanes[6])) + ((lanes[1] + lanes[5]) + (lanes[3] + lanes[7]))
    }

    fn random_half(rng: &mut crate::Pcg32) -> half::f16 {
        loop {
            // Every finite bit pattern, subnormals and zeros included.
            let h = half::f16::from_bits(rng.next_u32() as u16);
            if h.is_finite() {
                return h;
            }
        }
    }

    #[test]
    fn scaled_kernel_equals_the_documented_order_bit_for_bit() {
        let mut rng = crate::SeededRng::new(11);
        for n in 1..=70 {
            let x: Vec<f32> = (0..n).map(|_| (rng.next_u32() as f32 / u32::MAX as f32) * 2.0 - 1.0).collect();
            let xs: Vec<f32> = x.iter().map(|v| v * SCALE).collect();
            let rows: Vec<Vec<half::f16>> = (0..4).map(|_| (0..n).map(|_| random_half(&mut rng)).collect()).collect();
            let bytes: Vec<Vec<u8>> = rows.iter().map(|r| r.iter().flat_map(|h| h.to_le_bytes()).collect()).collect();
            let got = dot::<4>([&bytes[0], &bytes[1], &bytes[2], &bytes[3]], &xs);
            for r in 0..4 {
                let want = reference_dot(&rows[r], &x);
                assert_eq!(got[r].to_bits(), want.to_bits(), "n={n} row={r}: {} vs {want}", got[r]);
            }
            let single = dot::<1>([&bytes[0]], &xs);
            assert_eq!(single[0].to_bits(), got[0].to_bits());
        }
    }

    #[test]
    fn scaled_conversion_is_exact_for_every_finite_half() {
        for bits in 0..=u16::MAX {
            let h = half::f16::from_bits(bits);
            if h.is_finite() {
                assert_eq!((half_scaled(bits.to_le_bytes()) * SCALE).to_bits(), h.to_f32().to_bits(), "{bits:#06x}");
            }
        }
    }
}
