//! Matrix products through `matrixmultiply`, split over rayon in blocks of
//! rows or columns. Every element is computed by the same arithmetic
//! however the product is split, so the results never depend on the
//! machine's core count.

use rayon::prelude::*;

use super::real::Real;

/// A read-only matrix view: `rows x cols`, element `(r, c)` at `r*rs + c*cs`.
#[derive(Clone, Copy, Debug)]
pub struct Mat<'a, T> {
    data: &'a [T],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a, T: Real> Mat<'a, T> {
    /// Row-major `rows x cols` at the start of `data`.
    pub fn new(data: &'a [T], rows: usize, cols: usize) -> Self {
        assert!(
            data.len() >= rows * cols,
            "matrix {rows}x{cols} needs {} elements, has {}",
            rows * cols,
            data.len()
        );
        Mat {
            data,
            rows,
            cols,
            rs: cols,
            cs: 1,
        }
    }

    /// The transpose (a view; nothing moves).
    pub fn t(self) -> Self {
        Mat {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
        }
    }

    /// Rows `r0..r1`.
    fn rows(self, r0: usize, r1: usize) -> Self {
        Mat {
            data: &self.data[(r0 * self.rs).min(self.data.len())..],
            rows: r1 - r0,
            ..self
        }
    }

    /// Columns `c0..c1`.
    fn cols(self, c0: usize, c1: usize) -> Self {
        Mat {
            data: &self.data[(c0 * self.cs).min(self.data.len())..],
            cols: c1 - c0,
            ..self
        }
    }
}

/// Raw pointer that may cross threads: every task writes a disjoint block.
#[derive(Clone, Copy)]
struct Out<T>(*mut T);
// SAFETY: used only to hand disjoint output blocks to rayon tasks.
unsafe impl<T> Send for Out<T> {}
unsafe impl<T> Sync for Out<T> {}

/// Work (multiply-adds) below which a product is not split.
const GRAIN: usize = 1 << 20;

/// `c = a b` (`accumulate`: `c += a b`), `c` row-major `a.rows x b.cols`.
///
/// Split into at most 4 blocks (each block packs its own copy of the shared
/// operand, so more blocks cost more packing), each at least `GRAIN` work,
/// and no more blocks than rayon has threads. Every element is the same
/// sum over `k` in the same order in any block (`matrixmultiply` blocks
/// `k` the same way whatever the rows and columns), so the split changes
/// no bit (tested).
pub fn gemm<T: Real>(a: Mat<'_, T>, b: Mat<'_, T>, c: &mut [T], accumulate: bool) {
    let work = a.rows * a.cols * b.cols;
    let blocks = (work / GRAIN)
        .clamp(1, 4)
        .min(rayon::current_num_threads().max(1));
    gemm_in_blocks(a, b, c, accumulate, blocks)
}

fn gemm_in_blocks<T: Real>(
    a: Mat<'_, T>,
    b: Mat<'_, T>,
    c: &mut [T],
    accumulate: bool,
    chunks: usize,
) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(k, b.rows, "inner dimensions differ");
    assert!(c.len() >= m * n, "output too small");
    if m == 0 || n == 0 {
        return;
    }
    let beta = if accumulate { T::ONE } else { T::ZERO };
    if k == 0 {
        if !accumulate {
            c[..m * n].fill(T::ZERO);
        }
        return;
    }
    let out = Out(c.as_mut_ptr());
    let run = |a: Mat<'_, T>, b: Mat<'_, T>, r0: usize, c0: usize| {
        // Capture the whole `Out` (which is Sync), not its raw pointer field.
        #[allow(clippy::redundant_locals)]
        let out = out;
        // SAFETY: a and b are in bounds (checked by `Mat::new` and the
        // slicing above), the block (r0.., c0..) of c is in bounds and no
        // other task writes it.
        unsafe {
            T::gemm(
                a.rows,
                a.cols,
                b.cols,
                a.data.as_ptr(),
                a.rs as isize,
                a.cs as isize,
                b.data.as_ptr(),
                b.rs as isize,
                b.cs as isize,
                beta,
                out.0.add(r0 * n + c0),
                n as isize,
                1,
            )
        }
    };
    if chunks <= 1 {
        run(a, b, 0, 0);
    } else if m >= 64 {
        let rows = m.div_ceil(chunks).next_multiple_of(16);
        (0..m.div_ceil(rows)).into_par_iter().for_each(|i| {
            let (r0, r1) = (i * rows, ((i + 1) * rows).min(m));
            run(a.rows(r0, r1), b, r0, 0);
        });
    } else {
        // Few rows: split the columns instead.
        let cols = n.div_ceil(chunks).next_multiple_of(16);
        (0..n.div_ceil(cols)).into_par_iter().for_each(|i| {
            let (c0, c1) = (i * cols, ((i + 1) * cols).min(n));
            run(a, b.cols(c0, c1), 0, c0);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f64], b: &[f64], m: usize, k: usize, n: usize) -> Vec<f64> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        c
    }

    #[test]
    fn splitting_a_product_changes_no_bit() {
        // Values that round: the sums depend on their order.
        let mut x = 0x9e37_79b9_u32;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x as f32 / u32::MAX as f32) * 2.0 - 1.0
        };
        // Row splits (m >= 64) and column splits, plain and transposed A.
        for &(m, k, n) in &[
            (200, 300, 70),
            (40, 600, 300),
            (1024, 900, 130),
            (67, 1000, 33),
        ] {
            let a: Vec<f32> = (0..m * k).map(|_| next()).collect();
            let b: Vec<f32> = (0..k * n).map(|_| next()).collect();
            let c0: Vec<f32> = (0..m * n).map(|_| next()).collect();
            for transposed in [false, true] {
                let am = if transposed {
                    Mat::new(&a, k, m).t()
                } else {
                    Mat::new(&a, m, k)
                };
                let bm = Mat::new(&b, k, n);
                let mut one = c0.clone();
                gemm_in_blocks(am, bm, &mut one, true, 1);
                // The data is sensitive to order: the reverse order of the
                // sum over k gives other bits somewhere.
                let reversed = (0..m * n).any(|e| {
                    let (i, j) = (e / n, e % n);
                    let at = |p: usize| {
                        if transposed {
                            a[p * m + i]
                        } else {
                            a[i * k + p]
                        }
                    };
                    let sum = (0..k).rev().fold(0.0f32, |s, p| s + at(p) * b[p * n + j]);
                    (c0[e] + sum).to_bits() != one[e].to_bits()
                });
                assert!(reversed, "{m}x{k}x{n}: no element depends on the order");
                for blocks in 2..=4 {
                    let mut split = c0.clone();
                    gemm_in_blocks(am, bm, &mut split, true, blocks);
                    let differ = one
                        .iter()
                        .zip(&split)
                        .filter(|(x, y)| x.to_bits() != y.to_bits())
                        .count();
                    assert_eq!(
                        differ, 0,
                        "{m}x{k}x{n}, transposed {transposed}, {blocks} blocks"
                    );
                }
            }
        }
    }

    #[test]
    fn products_and_transposes_match_a_naive_product() {
        for &(m, k, n) in &[(3, 5, 7), (200, 64, 40), (8, 128, 512), (1, 1, 1)] {
            let a: Vec<f64> = (0..m * k).map(|i| ((i * 7 % 13) as f64) - 6.0).collect();
            let b: Vec<f64> = (0..k * n).map(|i| ((i * 5 % 11) as f64) - 5.0).collect();
            let want = naive(&a, &b, m, k, n);
            let mut c = vec![0.0; m * n];
            gemm(Mat::new(&a, m, k), Mat::new(&b, k, n), &mut c, false);
            assert_eq!(c, want);
            // A^T stored as k x m, transposed back.
            let at: Vec<f64> = (0..k * m).map(|i| a[(i % m) * k + i / m]).collect();
            let mut c2 = vec![1.0; m * n];
            gemm(Mat::new(&at, k, m).t(), Mat::new(&b, k, n), &mut c2, true);
            assert_eq!(c2, want.iter().map(|x| x + 1.0).collect::<Vec<_>>());
        }
    }
}
