//! The CPU backend: the reference implementation of the forward pass, the
//! masked cross-entropy and backpropagation through time.
//!
//! Data is time-major: row `t*B + b` of a `[T*B, X]` buffer is sequence `b`
//! at step `t`. Per-position buffers that only the running positions need
//! (input and gate pre-activations, gates, gradients, logits) are *packed*:
//! the padding after each sample is left out, step by step (see
//! `rows::LiveRows`; `P` rows in all). The hidden and cell states stay
//! time-major. Per layer the work is
//! 1. input pre-activations for all running positions at once: layer 0
//!    gathers rows of its input table (a one-hot input times a matrix is a
//!    row lookup, no multiplications); later layers do one `[P, H] x
//!    [H, G*H]` product;
//! 2. the recurrence, step by step: `h_{t-1} W_hh^T` and the cell, for the
//!    rows still running. The batch is cut into row groups that run through
//!    time independently (no synchronisation per step) on rayon;
//! 3. backwards, the mirror image, and then the weight gradients as single
//!    products over all `P` packed rows.
//!
//! The output projection, softmax and loss also run over all packed rows at
//! once.
//!
//! Reproducibility: every split that changes an order of summation (GEMM
//! blocks, reduction chunks) depends only on the shapes, never on the number
//! of threads; row groups follow the thread count but do not change any
//! row's arithmetic. So a seed gives the same bits on any core count.

pub mod gemm;
pub mod kernel;
pub mod real;
mod rows;

use charlm_runtime::format::CellKind;
use multiversion::multiversion;
use rayon::prelude::*;

use crate::batch::Batch;
use crate::params::Layout;
use crate::rng::Rng;
use gemm::{Mat, gemm};
pub use real::Real;
use rows::LiveRows;

/// Loss of a batch: the sum of nats over the counted positions.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Loss {
    /// Sum of `-ln p(target)`.
    pub nats: f64,
    /// Positions counted (targets that are not padding).
    pub count: usize,
}

impl Loss {
    /// Mean nats per character.
    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.nats / self.count as f64
        }
    }

    /// Bits per character.
    pub fn bpc(&self) -> f64 {
        self.mean() / std::f64::consts::LN_2
    }

    /// Adds another batch's loss.
    pub fn add(&mut self, other: Loss) {
        self.nats += other.nats;
        self.count += other.count;
    }
}

/// Dropout between layers (PyTorch `nn.LSTM(dropout=p)`: on the output of
/// every layer but the last), with masks drawn from `seed`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Dropout {
    /// Probability of zeroing a unit.
    pub p: f32,
    /// Seed of this step's masks.
    pub seed: u64,
}

/// Which classes the softmax runs over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Classes {
    /// All `V` ids, padding included, as PyTorch's `CrossEntropyLoss` over
    /// `V` outputs does (training).
    All,
    /// Ids `1..V`: the distribution the runtime samples from (held-out scores).
    NoPadding,
}

/// Per-layer activations kept for the backward pass.
#[derive(Default)]
struct LayerCache<T> {
    /// `[P, G*H]` input pre-activations `W_ih x + b_ih` (packed rows).
    xg: Vec<T>,
    /// `[P, G*H]` activated gates (LSTM `i,f,g,o`; GRU `r,z,n`), packed.
    gates: Vec<T>,
    /// `[(T+1)*B, H]` hidden states; the first `B` rows are the initial state.
    h: Vec<T>,
    /// `[(T+1)*B, H]` LSTM cell states, initial state first.
    c: Vec<T>,
    /// `[P, H]` LSTM: `tanh(c)`; GRU: `W_hn h + b_hn` (packed).
    aux: Vec<T>,
    /// `[T*B, H]` dropout mask applied to this layer's output (or empty).
    mask: Vec<T>,
    /// `[T*B, H]` this layer's output after dropout (the next layer's input).
    dropped: Vec<T>,
    /// `W_hh^T` (`[H, G*H]`) packed for the forward step's product.
    w_hh_t: kernel::Packed<T>,
    /// `W_hh` (`[G*H, H]`) packed for the backward step's product.
    w_hh: kernel::Packed<T>,
}

/// The CPU backend for one architecture. Holds scratch buffers (grown as
/// needed) and the recurrent state carried between windows of running text.
pub struct Cpu<T> {
    layout: Layout,
    cache: Vec<LayerCache<T>>,
    /// The running rows of the batch in hand (see [`LiveRows`]).
    live: LiveRows,
    /// `[P]` input ids and targets of the running positions.
    ids: Vec<u16>,
    targets: Vec<u16>,
    /// `[P, H]` the top layer's output at the running positions.
    top: Vec<T>,
    /// `[P, *]` scratch for packed copies of time-major buffers.
    packed: Vec<T>,
    /// `[P, V]` logits, then their gradient.
    logits: Vec<T>,
    /// `[P, G*H]` gradient of the gate pre-activations (LSTM; GRU input side).
    dxg: Vec<T>,
    /// `[P, G*H]` GRU: gradient of the hidden-side pre-activations.
    dhg: Vec<T>,
    /// `[P, H]` gradient arriving at the current layer's output.
    dh: Vec<T>,
    /// `[P, H]` gradient for the layer below.
    dx: Vec<T>,
    /// `[layer]` -> final `(h, c)` of the last batch, `[B, H]` each.
    carry: Vec<(Vec<T>, Vec<T>)>,
    carry_rows: usize,
}

/// Pointer to a buffer that row-group tasks share; each touches only its rows.
#[derive(Clone, Copy)]
struct Shared<T>(*mut T, usize);
// SAFETY: tasks write disjoint rows (see `Shared::rows`).
unsafe impl<T> Send for Shared<T> {}
unsafe impl<T> Sync for Shared<T> {}

impl<T> Shared<T> {
    fn new(v: &mut [T]) -> Self {
        Shared(v.as_mut_ptr(), v.len())
    }

    /// Elements `start..start + len`.
    ///
    /// # Safety
    /// No two live slices obtained from the same buffer may overlap when one
    /// of them is written.
    #[allow(clippy::mut_from_ref)]
    unsafe fn slice(&self, start: usize, len: usize) -> &mut [T] {
        assert!(start + len <= self.1, "shared slice out of bounds");
        // SAFETY: in bounds (asserted); disjointness is the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.0.add(start), len) }
    }
}

/// Rows per tile of the step product kernel.
const TILE_ROWS: usize = 4;

/// Row groups that run through time independently: one per worker thread,
/// at least one tile of 4 sequences each (the product kernel's tile height).
/// Bigger groups let the kernel reuse each block of `W_hh` across more rows.
///
/// Rows are sorted longest first and the recurrence skips rows that have
/// ended, so equal numbers of rows would give the first group the most work
/// (on titles at batch 64, 62% of the recurrence went to the first of two
/// workers). Groups are therefore cut at tile boundaries so that each gets
/// about the same number of tile-steps: a tile costs a step when any of its
/// rows is still running (`active`, one entry per step, as from
/// [`LiveRows::live`]). The grouping never changes a result: every row's
/// arithmetic is the same in any group (the step product sums each element
/// over `k` in order).
fn row_groups(b: usize, active: &[usize]) -> Vec<(usize, usize)> {
    balanced_groups(b, active, rayon::current_num_threads())
}

fn balanced_groups(b: usize, active: &[usize], threads: usize) -> Vec<(usize, usize)> {
    let tiles = b.div_ceil(TILE_ROWS);
    let groups = (b / TILE_ROWS).clamp(1, threads.max(1));
    // work[i]: the steps at which tile i has a running row.
    let mut work = vec![0usize; tiles];
    for &live in active {
        for w in &mut work[..live.min(b).div_ceil(TILE_ROWS)] {
            *w += 1;
        }
    }
    let total: usize = work.iter().sum();
    let mut cuts = vec![0usize];
    let mut done = 0usize;
    for (i, &w) in work.iter().enumerate() {
        // Groups started so far; cut before tile i when that leaves the
        // group closer to its share than taking tile i would, the group is
        // not empty, and enough tiles are left for the groups after it.
        let g = cuts.len();
        if g < groups && i > cuts[g - 1] && tiles - i >= groups - g {
            let share = total * g / groups;
            if done >= share || (share - done) * 2 < w {
                cuts.push(i);
            }
        }
        done += w;
    }
    cuts.push(tiles);
    cuts.windows(2)
        .map(|c| (c[0] * TILE_ROWS, (c[1] * TILE_ROWS).min(b)))
        .collect()
}

fn grow<T: Real>(v: &mut Vec<T>, len: usize) {
    if v.len() < len {
        v.resize(len, T::ZERO);
    }
}

impl<T: Real> Cpu<T> {
    /// A backend for models with this layout.
    pub fn new(layout: Layout) -> Self {
        let layers = layout.arch.layers as usize;
        Cpu {
            cache: (0..layers).map(|_| LayerCache::default()).collect(),
            carry: vec![(Vec::new(), Vec::new()); layers],
            carry_rows: 0,
            layout,
            live: LiveRows::default(),
            ids: Vec::new(),
            targets: Vec::new(),
            top: Vec::new(),
            packed: Vec::new(),
            logits: Vec::new(),
            dxg: Vec::new(),
            dhg: Vec::new(),
            dh: Vec::new(),
            dx: Vec::new(),
        }
    }

    /// The parameter layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The carried state, `[layer][h | c]` each `[B, H]` (for checkpoints).
    pub fn carried_state(&self) -> (usize, Vec<Vec<T>>) {
        let mut out = Vec::new();
        for (h, c) in &self.carry {
            out.push(h.clone());
            out.push(c.clone());
        }
        (self.carry_rows, out)
    }

    /// Restores a state saved by [`Self::carried_state`].
    pub fn set_carried_state(&mut self, rows: usize, state: Vec<Vec<T>>) {
        let mut it = state.into_iter();
        for slot in self.carry.iter_mut() {
            slot.0 = it.next().unwrap_or_default();
            slot.1 = it.next().unwrap_or_default();
        }
        self.carry_rows = rows;
    }

    /// Loss of `batch` (forward only), carrying state like training does.
    pub fn loss(&mut self, params: &[T], batch: &Batch, classes: Classes) -> Loss {
        self.forward(params, batch, None);
        self.softmax_loss(batch, classes, false)
    }

    /// Loss of `batch` and the gradient of its mean with respect to every
    /// parameter, written into `grads` (same layout as `params`).
    pub fn loss_and_grad(
        &mut self,
        params: &[T],
        batch: &Batch,
        grads: &mut [T],
        dropout: Option<Dropout>,
    ) -> Loss {
        assert_eq!(params.len(), self.layout.len);
        assert_eq!(grads.len(), self.layout.len);
        self.forward(params, batch, dropout);
        let loss = self.softmax_loss(batch, Classes::All, true);
        self.backward(params, batch, grads);
        loss
    }

    fn forward(&mut self, params: &[T], batch: &Batch, dropout: Option<Dropout>) {
        let arch = self.layout.arch;
        let (tt, b) = (batch.steps, batch.rows);
        let (h, v, g) = (arch.hidden as usize, arch.vocab as usize, arch.cell.gates());
        let (gh, n) = (g * h, tt * b);
        let layers = arch.layers as usize;
        let carry = batch.carry && self.carry_rows == b;
        self.live = LiveRows::of(batch);
        let live = &self.live;
        let np = live.total();
        live.pack(&batch.inputs, 1, &mut self.ids);
        live.pack(&batch.targets, 1, &mut self.targets);
        for l in 0..layers {
            let [w_ih, w_hh, b_ih, b_hh] = self.layout.layers[l].clone();
            let (below, rest) = self.cache.split_at_mut(l);
            let cache = &mut rest[0];
            grow(&mut cache.xg, np * gh);
            grow(&mut cache.gates, np * gh);
            grow(&mut cache.h, (n + b) * h);
            grow(&mut cache.aux, np * h);
            if arch.cell == CellKind::Lstm {
                grow(&mut cache.c, (n + b) * h);
            }
            // 1. input pre-activations for all running positions
            let xg = &mut cache.xg[..np * gh];
            let bias = &params[b_ih];
            if l == 0 {
                let table = &params[w_ih];
                xg.par_chunks_mut(gh)
                    .zip(live.packed(&batch.inputs, 1, &self.ids).par_iter())
                    .for_each(|(row, &id)| {
                        let t = &table[id as usize * gh..(id as usize + 1) * gh];
                        for ((o, &w), &bb) in row.iter_mut().zip(t).zip(bias) {
                            *o = w + bb;
                        }
                    });
            } else {
                let x = live.pack(below[l - 1].layer_output(n, b, h), h, &mut self.packed);
                gemm(
                    Mat::new(x, np, h),
                    Mat::new(&params[w_ih], gh, h).t(),
                    xg,
                    false,
                );
                xg.par_chunks_mut(gh).for_each(|row| {
                    for (o, &bb) in row.iter_mut().zip(bias) {
                        *o += bb;
                    }
                });
            }
            // initial state
            let (h0, c0) = (&mut cache.h[..b * h], &mut cache.c);
            if carry {
                h0.copy_from_slice(&self.carry[l].0);
                if arch.cell == CellKind::Lstm {
                    c0[..b * h].copy_from_slice(&self.carry[l].1);
                }
            } else {
                h0.fill(T::ZERO);
                if arch.cell == CellKind::Lstm {
                    c0[..b * h].fill(T::ZERO);
                }
            }
            // 2. the recurrence, per row group
            let w = &params[w_hh];
            cache.w_hh_t.pack(h, gh, |k, n| w[n * h + k]);
            let wt = &cache.w_hh_t;
            let bh = &params[b_hh];
            let (xg_s, gates_s, h_s, aux_s) = (
                Shared::new(&mut cache.xg),
                Shared::new(&mut cache.gates),
                Shared::new(&mut cache.h),
                Shared::new(&mut cache.aux),
            );
            let c_s = Shared::new(&mut cache.c);
            let (live_rows, active) = (live, live.live());
            row_groups(b, active).into_par_iter().for_each(|(r0, r1)| {
                let rows = r1 - r0;
                let mut hg = vec![T::ZERO; rows * gh];
                #[allow(clippy::needless_range_loop)]
                for t in 0..tt {
                    // Rows whose sequence has ended (post-padding, rows sorted
                    // by length) are skipped: their state is zeroed and never read.
                    let live = active[t].saturating_sub(r0).min(rows);
                    // Packed row of (t, r0) in xg, gates and aux (where the
                    // step's rows end if all of this group's have ended).
                    let p = live_rows.start(t) + r0.min(active[t]);
                    // SAFETY: this task only touches rows r0..r1 of step t
                    // (and reads rows r0..r1 of step t-1, written by itself).
                    let (hprev, hout, xg, gates, aux) = unsafe {
                        (
                            &*h_s.slice((t * b + r0) * h, live * h),
                            h_s.slice(((t + 1) * b + r0) * h, rows * h),
                            &*xg_s.slice(p * gh, live * gh),
                            gates_s.slice(p * gh, live * gh),
                            aux_s.slice(p * h, live * h),
                        )
                    };
                    let (hout, hdead) = hout.split_at_mut(live * h);
                    hdead.fill(T::ZERO);
                    if live == 0 {
                        if arch.cell == CellKind::Lstm {
                            // SAFETY: as above.
                            unsafe { c_s.slice(((t + 1) * b + r0) * h, rows * h) }.fill(T::ZERO);
                        }
                        continue;
                    }
                    T::small_gemm(live, hprev, wt, &mut hg, false);
                    match arch.cell {
                        CellKind::Lstm => {
                            // SAFETY: as above.
                            let (cprev, cout) = unsafe {
                                (
                                    &*c_s.slice((t * b + r0) * h, live * h),
                                    c_s.slice(((t + 1) * b + r0) * h, rows * h),
                                )
                            };
                            let (cout, cdead) = cout.split_at_mut(live * h);
                            cdead.fill(T::ZERO);
                            lstm_forward(
                                h,
                                xg,
                                &hg[..live * gh],
                                bh,
                                gates,
                                cprev,
                                cout,
                                aux,
                                hout,
                            );
                        }
                        CellKind::Gru => {
                            gru_forward(h, xg, &hg[..live * gh], bh, gates, hprev, aux, hout)
                        }
                    }
                }
            });
            // remember the final state for the next window
            let last = &cache.h[tt * b * h..(tt + 1) * b * h];
            self.carry[l].0.clear();
            self.carry[l]
                .0
                .extend_from_slice(if tt > 0 { last } else { &cache.h[..b * h] });
            if arch.cell == CellKind::Lstm {
                self.carry[l].1.clear();
                self.carry[l]
                    .1
                    .extend_from_slice(&cache.c[tt * b * h..(tt + 1) * b * h]);
            }
            // dropout on the output of every layer but the last
            cache.mask.clear();
            cache.dropped.clear();
            if let Some(d) = dropout.filter(|d| d.p > 0.0 && l + 1 < layers) {
                let mut rng = Rng::derive(d.seed, l as u64);
                let scale = T::from_f64(1.0 / (1.0 - d.p as f64));
                cache
                    .mask
                    .extend((0..n * h).map(|_| if rng.next_f32() < d.p { T::ZERO } else { scale }));
                let out = &cache.h[b * h..(n + b) * h];
                cache
                    .dropped
                    .extend(out.iter().zip(&cache.mask).map(|(&x, &m)| x * m));
            }
        }
        self.carry_rows = b;
        // output projection over all running positions
        let top = live.pack(
            self.cache[layers - 1].layer_output(n, b, h),
            h,
            &mut self.top,
        );
        grow(&mut self.logits, np * v);
        let logits = &mut self.logits[..np * v];
        gemm(
            Mat::new(top, np, h),
            Mat::new(&params[self.layout.out_w.clone()], v, h).t(),
            logits,
            false,
        );
        let ob = &params[self.layout.out_b.clone()];
        logits.par_chunks_mut(v).for_each(|row| {
            for (o, &bb) in row.iter_mut().zip(ob) {
                *o += bb;
            }
        });
    }

    /// Softmax cross-entropy of every counted position; with `grad`, leaves
    /// the gradient of the mean loss in `self.logits`.
    fn softmax_loss(&mut self, batch: &Batch, classes: Classes, grad: bool) -> Loss {
        let v = self.layout.arch.vocab as usize;
        let np = self.live.total();
        let count = batch.chars();
        let inv = if count == 0 {
            T::ZERO
        } else {
            T::from_f64(1.0 / count as f64)
        };
        let first = match classes {
            Classes::All => 0,
            Classes::NoPadding => 1,
        };
        const ROWS: usize = 256;
        let targets = self.live.packed(&batch.targets, 1, &self.targets);
        let partial: Vec<f64> = self.logits[..np * v]
            .par_chunks_mut(ROWS * v)
            .zip(targets.par_chunks(ROWS))
            .map(|(chunk, targets)| {
                let mut nats = 0.0f64;
                for (row, &target) in chunk.chunks_mut(v).zip(targets) {
                    if target == 0 {
                        if grad {
                            row.fill(T::ZERO);
                        }
                        continue;
                    }
                    let logit = row[target as usize];
                    let live = &mut row[first..];
                    let max = live.iter().fold(live[0], |m, &x| m.max(x));
                    let mut sum = T::ZERO;
                    if grad {
                        // Each exponential once: kept in place for the gradient.
                        for x in live.iter_mut() {
                            *x = (*x - max).exp();
                            sum += *x;
                        }
                    } else {
                        for &x in live.iter() {
                            sum += (x - max).exp();
                        }
                    }
                    let lse = max + sum.ln();
                    nats += (lse - logit).to_f64();
                    if grad {
                        let live = &mut row[first..];
                        for x in live.iter_mut() {
                            *x = *x / sum * inv;
                        }
                        row[..first].fill(T::ZERO);
                        row[target as usize] -= inv;
                    }
                }
                nats
            })
            .collect();
        Loss {
            nats: partial.iter().sum(),
            count,
        }
    }

    fn backward(&mut self, params: &[T], batch: &Batch, grads: &mut [T]) {
        let arch = self.layout.arch;
        let (tt, b) = (batch.steps, batch.rows);
        let (h, v, g) = (arch.hidden as usize, arch.vocab as usize, arch.cell.gates());
        let (gh, n) = (g * h, tt * b);
        let layers = arch.layers as usize;
        let live = &self.live;
        let np = live.total();
        // output layer
        let dlogits = &self.logits[..np * v];
        let top = live.packed(self.cache[layers - 1].layer_output(n, b, h), h, &self.top);
        let (ow, ob) = (self.layout.out_w.clone(), self.layout.out_b.clone());
        gemm(
            Mat::new(dlogits, np, v).t(),
            Mat::new(top, np, h),
            &mut grads[ow.clone()],
            false,
        );
        col_sums(dlogits, v, &mut grads[ob]);
        grow(&mut self.dh, np * h);
        grow(&mut self.dx, np * h);
        grow(&mut self.dxg, np * gh);
        if arch.cell == CellKind::Gru {
            grow(&mut self.dhg, np * gh);
        }
        gemm(
            Mat::new(dlogits, np, v),
            Mat::new(&params[ow], v, h),
            &mut self.dh[..np * h],
            false,
        );
        for l in (0..layers).rev() {
            let [w_ih, w_hh, b_ih, b_hh] = self.layout.layers[l].clone();
            let cache = &self.cache[l];
            if !cache.mask.is_empty() {
                // The mask is time-major; dh is packed.
                for (t, &rows) in live.live().iter().enumerate() {
                    let d = &mut self.dh[live.start(t) * h..(live.start(t) + rows) * h];
                    for (d, &m) in d.iter_mut().zip(&cache.mask[t * b * h..]) {
                        *d *= m;
                    }
                }
            }
            let wp = &params[w_hh.clone()];
            let mut packed = std::mem::take(&mut self.cache[l].w_hh);
            packed.pack(gh, h, |k, n| wp[k * h + n]);
            let w = &packed;
            let cache = &self.cache[l];
            let (dh_s, dxg_s, dhg_s) = (
                Shared::new(&mut self.dh),
                Shared::new(&mut self.dxg),
                Shared::new(&mut self.dhg),
            );
            let (live_rows, active) = (live, live.live());
            row_groups(b, active).into_par_iter().for_each(|(r0, r1)| {
                let rows = r1 - r0;
                let mut dh_next = vec![T::ZERO; rows * h];
                let mut dc_next = vec![T::ZERO; rows * h];
                for t in (0..tt).rev() {
                    fn at<T>(
                        buf: &[T],
                        width: usize,
                        step: usize,
                        b: usize,
                        r0: usize,
                        live: usize,
                    ) -> &[T] {
                        &buf[(step * b + r0) * width..(step * b + r0 + live) * width]
                    }
                    // Ended rows have no packed position and no gradient.
                    let live = active[t].saturating_sub(r0).min(rows);
                    if live == 0 {
                        continue;
                    }
                    // Packed row of (t, r0) in dh, dxg, dhg, gates and aux.
                    let p = live_rows.start(t) + r0;
                    // SAFETY: this task only touches rows r0..r1 of each step.
                    let (dh, dxg) =
                        unsafe { (dh_s.slice(p * h, live * h), dxg_s.slice(p * gh, live * gh)) };
                    let (dh_next, dc_next) = (&mut dh_next[..live * h], &mut dc_next[..live * h]);
                    for (d, &x) in dh.iter_mut().zip(dh_next.iter()) {
                        *d += x;
                    }
                    let gates = &cache.gates[p * gh..(p + live) * gh];
                    let aux = &cache.aux[p * h..(p + live) * h];
                    match arch.cell {
                        CellKind::Lstm => {
                            lstm_backward(
                                h,
                                dh,
                                dc_next,
                                gates,
                                at(&cache.c, h, t, b, r0, live),
                                aux,
                                dxg,
                            );
                            T::small_gemm(live, dxg, w, dh_next, false);
                        }
                        CellKind::Gru => {
                            // SAFETY: as above.
                            let dhg = unsafe { dhg_s.slice(p * gh, live * gh) };
                            gru_backward(
                                h,
                                dh,
                                gates,
                                at(&cache.h, h, t, b, r0, live),
                                aux,
                                dxg,
                                dhg,
                                dh_next,
                            );
                            T::small_gemm(live, dhg, w, dh_next, true);
                        }
                    }
                }
            });
            self.cache[l].w_hh = packed;
            let cache = &self.cache[l];
            // weight gradients over all running positions at once
            let dxg = &self.dxg[..np * gh];
            let dhg = if arch.cell == CellKind::Gru {
                &self.dhg[..np * gh]
            } else {
                dxg
            };
            // Step t's previous state is block t of h.
            let hprev = live.pack(&cache.h[..n * h], h, &mut self.packed);
            gemm(
                Mat::new(dhg, np, gh).t(),
                Mat::new(hprev, np, h),
                &mut grads[w_hh],
                false,
            );
            col_sums(dhg, gh, &mut grads[b_hh.clone()]);
            if arch.cell == CellKind::Lstm {
                // LSTM: both biases enter the same pre-activation.
                let (lo, hi) = grads.split_at_mut(b_hh.start);
                lo[b_ih].copy_from_slice(&hi[..gh]);
            } else {
                col_sums(dxg, gh, &mut grads[b_ih]);
            }
            if l == 0 {
                let ids = live.packed(&batch.inputs, 1, &self.ids);
                table_grad(dxg, ids, gh, &mut grads[w_ih]);
            } else {
                let x = live.pack(self.cache[l - 1].layer_output(n, b, h), h, &mut self.packed);
                gemm(
                    Mat::new(dxg, np, gh).t(),
                    Mat::new(x, np, h),
                    &mut grads[w_ih.clone()],
                    false,
                );
                gemm(
                    Mat::new(dxg, np, gh),
                    Mat::new(&params[w_ih], gh, h),
                    &mut self.dx[..np * h],
                    false,
                );
                std::mem::swap(&mut self.dh, &mut self.dx);
            }
        }
    }
}

impl<T: Real> LayerCache<T> {
    /// `[T*B, H]` output of the layer as the next one sees it (after dropout).
    fn layer_output(&self, n: usize, b: usize, h: usize) -> &[T] {
        if self.dropped.is_empty() {
            &self.h[b * h..(n + b) * h]
        } else {
            &self.dropped[..n * h]
        }
    }
}

/// Rows per block of a column sum.
const SUM_ROWS: usize = 256;

/// `out[j] = sum over rows of m[row][j]`: blocks of 256 rows are summed in
/// parallel (each block reads contiguous memory), then the block sums are
/// added in block order. Fixed blocks, so the same bits on any core count.
fn col_sums<T: Real>(m: &[T], width: usize, out: &mut [T]) {
    let partial: Vec<Vec<T>> = m
        .par_chunks(SUM_ROWS * width)
        .map(|block| {
            let mut acc = vec![T::ZERO; width];
            for row in block.chunks_exact(width) {
                for (a, &x) in acc.iter_mut().zip(row) {
                    *a += x;
                }
            }
            acc
        })
        .collect();
    out.fill(T::ZERO);
    for p in &partial {
        for (o, &x) in out.iter_mut().zip(p) {
            *o += x;
        }
    }
}

/// Gradient of layer 0's input table: row `id` collects the gate gradients
/// of every position whose input is `id`, in position order (a scatter-add,
/// no multiplications). Positions are grouped by id first, so each table
/// row is summed by one task reading whole rows.
fn table_grad<T: Real>(dxg: &[T], ids: &[u16], gh: usize, out: &mut [T]) {
    let vocab = out.len() / gh;
    let mut by_id: Vec<Vec<u32>> = vec![Vec::new(); vocab];
    for (pos, &id) in ids.iter().enumerate() {
        by_id[id as usize].push(pos as u32);
    }
    out.par_chunks_mut(gh)
        .zip(by_id.par_iter())
        .for_each(|(row, positions)| {
            row.fill(T::ZERO);
            for &pos in positions {
                let src = &dxg[pos as usize * gh..(pos as usize + 1) * gh];
                for (o, &x) in row.iter_mut().zip(src) {
                    *o += x;
                }
            }
        });
}

/// `G` consecutive blocks of exactly `h` elements.
#[inline(always)]
fn gates<const G: usize, T>(x: &[T], h: usize) -> [&[T]; G] {
    std::array::from_fn(|g| &x[g * h..(g + 1) * h])
}

/// `G` consecutive mutable blocks of exactly `h` elements.
#[inline(always)]
fn gates_mut<const G: usize, T>(x: &mut [T], h: usize) -> [&mut [T]; G] {
    let mut rest = &mut x[..G * h];
    std::array::from_fn(|_| {
        let (a, b) = std::mem::take(&mut rest).split_at_mut(h);
        rest = b;
        a
    })
}

// The four cells below are compiled twice, as written and with AVX2 and FMA
// enabled (`multiversion` picks one at run time): the same IEEE operations
// in the same order either way (Rust never fuses a multiply and an add on
// its own), only eight lanes wide instead of four. Not with AVX-512: its
// 16 lanes leave a loop over fewer than 16 units all scalar, and hidden
// sizes 8-15 trained 20-30% slower that way (measured; 6% faster at 128).

/// One LSTM step for `rows = hout.len() / h` sequences (PyTorch's equations):
/// `i,f,o = sigmoid(.)`, `g = tanh(.)`, `c = f*c' + i*g`, `h = o*tanh(c)`.
/// (Slices are cut to exact lengths first so the loops run without bounds
/// checks and vectorise.)
#[allow(clippy::too_many_arguments)]
#[multiversion(targets("x86_64+avx2+fma"))]
pub(crate) fn lstm_forward<T: Real>(
    h: usize,
    xg: &[T],
    hg: &[T],
    b_hh: &[T],
    gates_out: &mut [T],
    cprev: &[T],
    cout: &mut [T],
    tanh_c: &mut [T],
    hout: &mut [T],
) {
    let gh = 4 * h;
    let [bi, bf, bg, bo] = gates::<4, T>(b_hh, h);
    for r in 0..hout.len() / h {
        let [xi, xf, xgg, xo] = gates::<4, T>(&xg[r * gh..], h);
        let [hi, hf, hgg, ho] = gates::<4, T>(&hg[r * gh..], h);
        let [gi, gf, gg, go] = gates_mut::<4, T>(&mut gates_out[r * gh..], h);
        let cp = &cprev[r * h..(r + 1) * h];
        let co = &mut cout[r * h..(r + 1) * h];
        let tc = &mut tanh_c[r * h..(r + 1) * h];
        let ho_ = &mut hout[r * h..(r + 1) * h];
        for j in 0..h {
            let i = (xi[j] + (hi[j] + bi[j])).sigmoid();
            let f = (xf[j] + (hf[j] + bf[j])).sigmoid();
            let g = (xgg[j] + (hgg[j] + bg[j])).tanh();
            let o = (xo[j] + (ho[j] + bo[j])).sigmoid();
            let c = f * cp[j] + i * g;
            let t = c.tanh();
            gi[j] = i;
            gf[j] = f;
            gg[j] = g;
            go[j] = o;
            co[j] = c;
            tc[j] = t;
            ho_[j] = o * t;
        }
    }
}

/// Backward of one LSTM step: from `dh` (total gradient at this step's
/// output) and `dc` (gradient at its cell state from the step after; updated
/// to the step before) to the gate pre-activation gradients `dg`.
#[multiversion(targets("x86_64+avx2+fma"))]
pub(crate) fn lstm_backward<T: Real>(
    h: usize,
    dh: &[T],
    dc: &mut [T],
    gates_in: &[T],
    cprev: &[T],
    tanh_c: &[T],
    dg: &mut [T],
) {
    let gh = 4 * h;
    for r in 0..dh.len() / h {
        let [i_, f_, g_, o_] = gates::<4, T>(&gates_in[r * gh..], h);
        let [di, df, dgg, do_] = gates_mut::<4, T>(&mut dg[r * gh..], h);
        let (dhr, dcr) = (&dh[r * h..(r + 1) * h], &mut dc[r * h..(r + 1) * h]);
        let (cp, tcr) = (&cprev[r * h..(r + 1) * h], &tanh_c[r * h..(r + 1) * h]);
        for j in 0..h {
            let (i, f, g, o) = (i_[j], f_[j], g_[j], o_[j]);
            let tc = tcr[j];
            let d = dhr[j];
            let dct = dcr[j] + d * o * (T::ONE - tc * tc);
            di[j] = dct * g * i * (T::ONE - i);
            df[j] = dct * cp[j] * f * (T::ONE - f);
            dgg[j] = dct * i * (T::ONE - g * g);
            do_[j] = d * tc * o * (T::ONE - o);
            dcr[j] = dct * f;
        }
    }
}

/// One GRU step (PyTorch's equations): `r,z = sigmoid(.)`,
/// `n = tanh(x_n + b_in + r*(W_hn h + b_hn))`, `h = (1-z)*n + z*h'`.
/// `hn` keeps `W_hn h + b_hn` for the backward pass.
#[allow(clippy::too_many_arguments)]
#[multiversion(targets("x86_64+avx2+fma"))]
pub(crate) fn gru_forward<T: Real>(
    h: usize,
    xg: &[T],
    hg: &[T],
    b_hh: &[T],
    gates_out: &mut [T],
    hprev: &[T],
    hn: &mut [T],
    hout: &mut [T],
) {
    let gh = 3 * h;
    let [br, bz, bn] = gates::<3, T>(b_hh, h);
    for r in 0..hout.len() / h {
        let [xr, xz, xn] = gates::<3, T>(&xg[r * gh..], h);
        let [hr, hz, hnn] = gates::<3, T>(&hg[r * gh..], h);
        let [gr, gz, gn] = gates_mut::<3, T>(&mut gates_out[r * gh..], h);
        let (hp, hnr, ho) = (
            &hprev[r * h..(r + 1) * h],
            &mut hn[r * h..(r + 1) * h],
            &mut hout[r * h..(r + 1) * h],
        );
        for j in 0..h {
            let rr = (xr[j] + (hr[j] + br[j])).sigmoid();
            let z = (xz[j] + (hz[j] + bz[j])).sigmoid();
            let hnj = hnn[j] + bn[j];
            let nn = (xn[j] + rr * hnj).tanh();
            gr[j] = rr;
            gz[j] = z;
            gn[j] = nn;
            hnr[j] = hnj;
            ho[j] = (T::ONE - z) * nn + z * hp[j];
        }
    }
}

/// Backward of one GRU step: input-side gradients `dxg = [dr, dz, dn]`,
/// hidden-side `dhg = [dr, dz, dn*r]`, and `dh_prev = dh*z` (the caller
/// adds `dhg W_hh`).
#[allow(clippy::too_many_arguments)]
#[multiversion(targets("x86_64+avx2+fma"))]
pub(crate) fn gru_backward<T: Real>(
    h: usize,
    dh: &[T],
    gates_in: &[T],
    hprev: &[T],
    hn: &[T],
    dxg: &mut [T],
    dhg: &mut [T],
    dh_prev: &mut [T],
) {
    let gh = 3 * h;
    for r in 0..dh.len() / h {
        let [r_, z_, n_] = gates::<3, T>(&gates_in[r * gh..], h);
        let [dxr, dxz, dxn] = gates_mut::<3, T>(&mut dxg[r * gh..], h);
        let [dhr, dhz, dhn] = gates_mut::<3, T>(&mut dhg[r * gh..], h);
        let (d_, hp, hnr) = (
            &dh[r * h..(r + 1) * h],
            &hprev[r * h..(r + 1) * h],
            &hn[r * h..(r + 1) * h],
        );
        let dp = &mut dh_prev[r * h..(r + 1) * h];
        for j in 0..h {
            let (rr, z, nn) = (r_[j], z_[j], n_[j]);
            let d = d_[j];
            let dan = d * (T::ONE - z) * (T::ONE - nn * nn);
            let dar = dan * hnr[j] * rr * (T::ONE - rr);
            let daz = d * (hp[j] - nn) * z * (T::ONE - z);
            dxr[j] = dar;
            dxz[j] = daz;
            dxn[j] = dan;
            dhr[j] = dar;
            dhz[j] = daz;
            dhn[j] = dan * rr;
            dp[j] = d * z;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{TILE_ROWS, balanced_groups};

    /// `active` (rows still running per step) for rows of these lengths,
    /// longest first, as `LiveRows::live` gives it for a batch.
    fn active_of(lengths: &[usize]) -> Vec<usize> {
        let steps = lengths.first().copied().unwrap_or(0);
        (0..steps)
            .map(|t| lengths.iter().filter(|&&l| l > t).count())
            .collect()
    }

    /// Tile-steps the recurrence runs for rows `r0..r1`.
    fn cost(active: &[usize], (r0, r1): (usize, usize)) -> usize {
        let tiles = |a: usize| a.saturating_sub(r0).min(r1 - r0).div_ceil(TILE_ROWS);
        active.iter().map(|&a| tiles(a)).sum()
    }

    /// Row lengths, longest first: flat (running text), falling evenly
    /// (titles), steep, and a deterministic pseudo-random mix.
    fn profiles(b: usize) -> Vec<Vec<usize>> {
        let mut x = 0x2545_f491_u64 ^ b as u64;
        let mut random: Vec<usize> = (0..b)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x % 120) as usize
            })
            .collect();
        random.sort_unstable_by(|a, b| b.cmp(a));
        vec![
            vec![100; b],
            (0..b).map(|r| 100 - 60 * r / b).collect(),
            (0..b).map(|r| if r < b / 5 { 120 } else { 8 }).collect(),
            random,
            vec![0; b],
        ]
    }

    #[test]
    fn groups_cover_the_batch_in_whole_tiles_and_share_the_work() {
        for b in 1..=70 {
            for threads in 1..=4 {
                for lengths in profiles(b) {
                    let active = active_of(&lengths);
                    let groups = balanced_groups(b, &active, threads);
                    let want = (b / TILE_ROWS).clamp(1, threads);
                    let case = format!("b {b}, {threads} threads, lengths {lengths:?}: {groups:?}");
                    assert!(groups.len() <= want, "{case}");
                    assert_eq!(groups.first().map(|g| g.0), Some(0), "{case}");
                    assert_eq!(groups.last().map(|g| g.1), Some(b), "{case}");
                    for (g, next) in groups.iter().zip(groups.iter().skip(1)) {
                        assert_eq!(g.1, next.0, "{case}");
                    }
                    for &(r0, r1) in &groups {
                        assert!(r0 < r1 && r0 % TILE_ROWS == 0, "{case}");
                    }
                    // Each group within one tile's work of an even share.
                    let total = cost(&active, (0, b));
                    let tile_max = active.len();
                    let worst = groups.iter().map(|&g| cost(&active, g)).max();
                    assert!(
                        worst.unwrap_or(0) <= total.div_ceil(want) + tile_max,
                        "{case}"
                    );
                    // Where there is work enough, every worker gets some.
                    if lengths.iter().filter(|&&l| l > 0).count() >= want * TILE_ROWS {
                        assert_eq!(groups.len(), want, "{case}");
                    }
                }
            }
        }
    }

    #[test]
    fn equal_lengths_split_evenly_and_falling_lengths_give_the_first_group_fewer_rows() {
        assert_eq!(balanced_groups(64, &[64; 100], 2), [(0, 32), (32, 64)]);
        assert_eq!(balanced_groups(8, &[8; 100], 2), [(0, 4), (4, 8)]);
        assert_eq!(balanced_groups(64, &[64; 100], 1), [(0, 64)]);
        // Titles at batch 64: the longest rows are twice the shortest.
        let lengths: Vec<usize> = (0..64).map(|r| 100 - 50 * r / 64).collect();
        let active = active_of(&lengths);
        let groups = balanced_groups(64, &active, 2);
        assert_eq!(groups.len(), 2);
        assert!(groups[0].1 < 32, "{groups:?}");
        let (a, b) = (cost(&active, groups[0]), cost(&active, groups[1]));
        assert!(a.abs_diff(b) <= 100, "{a} against {b} tile-steps");
    }
}
