//! The parameters of a model: one flat allocation sliced into named tensors
//! by one table, with PyTorch's names, shapes, gate orders and initialisation.
//!
//! Per layer `l` (`G` = 4 gates `i,f,g,o` for LSTM, 3 gates `r,z,n` for GRU,
//! `H` hidden, `V` vocabulary):
//!
//! | tensor          | shape      | note                                                  |
//! |-----------------|------------|-------------------------------------------------------|
//! | `weight_ih_l0`  | `[V, G*H]` | stored transposed: row `t` is the input table row of id `t` (PyTorch's `[G*H, V]` column `t`) |
//! | `weight_ih_l{l}`| `[G*H, H]` | layers above the first                                |
//! | `weight_hh_l{l}`| `[G*H, H]` |                                                       |
//! | `bias_ih_l{l}`  | `[G*H]`    |                                                       |
//! | `bias_hh_l{l}`  | `[G*H]`    |                                                       |
//! | `out.weight`    | `[V, H]`   | `nn.Linear(H, V)`                                     |
//! | `out.bias`      | `[V]`      |                                                       |
//!
//! Everything is initialised `U(-1/sqrt(H), 1/sqrt(H))`, which is what
//! PyTorch does for `nn.LSTM`/`nn.GRU` and, with `fan_in = H`, for both
//! tensors of `nn.Linear(H, V)`.

use std::ops::Range;

use charlm_runtime::format::{Arch, CellKind};

use crate::rng::Rng;

/// The transpose of a row-major `rows` x `cols` matrix (PyTorch's
/// `weight_ih_l0` is the transpose of the stored input table).
pub fn transpose<T: Copy>(values: &[T], rows: usize, cols: usize) -> Vec<T> {
    (0..cols)
        .flat_map(|j| (0..rows).map(move |i| values[i * cols + j]))
        .collect()
}

/// One tensor of the flat parameter vector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slot {
    /// PyTorch name (`weight_ih_l0` is stored transposed, see the module docs).
    pub name: String,
    /// Rows and columns as stored (vectors are `[n, 1]`).
    pub shape: [usize; 2],
    /// Where it lives in the flat vector.
    pub range: Range<usize>,
}

/// Where every tensor of a model lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// The architecture.
    pub arch: Arch,
    /// `[layer]` -> `weight_ih`, `weight_hh`, `bias_ih`, `bias_hh`.
    pub layers: Vec<[Range<usize>; 4]>,
    /// `out.weight`.
    pub out_w: Range<usize>,
    /// `out.bias`.
    pub out_b: Range<usize>,
    /// All tensors in order, with names.
    pub slots: Vec<Slot>,
    /// Total number of parameters.
    pub len: usize,
}

impl Layout {
    /// The table for `arch`.
    pub fn new(arch: Arch) -> Self {
        let (g, h, v) = (arch.cell.gates(), arch.hidden as usize, arch.vocab as usize);
        let mut slots = Vec::new();
        let mut at = 0;
        let mut push = |name: String, shape: [usize; 2]| {
            let r = at..at + shape[0] * shape[1];
            at = r.end;
            slots.push(Slot {
                name,
                shape,
                range: r.clone(),
            });
            r
        };
        let mut layers = Vec::new();
        for l in 0..arch.layers as usize {
            let w_ih = if l == 0 {
                push("weight_ih_l0".into(), [v, g * h])
            } else {
                push(format!("weight_ih_l{l}"), [g * h, h])
            };
            let w_hh = push(format!("weight_hh_l{l}"), [g * h, h]);
            let b_ih = push(format!("bias_ih_l{l}"), [g * h, 1]);
            let b_hh = push(format!("bias_hh_l{l}"), [g * h, 1]);
            layers.push([w_ih, w_hh, b_ih, b_hh]);
        }
        let out_w = push("out.weight".into(), [v, h]);
        let out_b = push("out.bias".into(), [v, 1]);
        Layout {
            arch,
            layers,
            out_w,
            out_b,
            slots,
            len: at,
        }
    }

    /// Gates per cell.
    pub fn gates(&self) -> usize {
        self.arch.cell.gates()
    }

    /// PyTorch's initialisation, drawn from `seed` in slot order.
    pub fn init(&self, seed: u64) -> Vec<f32> {
        let k = 1.0 / (self.arch.hidden as f32).sqrt();
        let mut rng = Rng::derive(seed, 0x494e_4954);
        (0..self.len).map(|_| rng.uniform(-k, k)).collect()
    }

    /// The slot called `name`.
    pub fn slot(&self, name: &str) -> Option<&Slot> {
        self.slots.iter().find(|s| s.name == name)
    }
}

/// Parses `lstm` / `gru`.
pub fn cell_from_name(name: &str) -> Option<CellKind> {
    match name {
        "lstm" => Some(CellKind::Lstm),
        "gru" => Some(CellKind::Gru),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_the_runtime_parameter_count() {
        for cell in [CellKind::Lstm, CellKind::Gru] {
            let arch = Arch {
                cell,
                layers: 3,
                hidden: 16,
                vocab: 11,
            };
            let l = Layout::new(arch);
            assert_eq!(l.len, arch.param_count());
            assert_eq!(l.slots.len(), 3 * 4 + 2);
            assert_eq!(
                l.slot("weight_ih_l0").unwrap().shape,
                [11, cell.gates() * 16]
            );
            assert_eq!(
                l.slot("weight_ih_l2").unwrap().shape,
                [cell.gates() * 16, 16]
            );
            let p = l.init(3);
            let k = 0.25;
            assert!(p.iter().all(|&x| (-k..k).contains(&x)));
            assert_eq!(p, l.init(3));
        }
    }
}
