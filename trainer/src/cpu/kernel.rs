//! Small dense products for the recurrent step, and fast f32 activations.
//!
//! The per-step product `h_{t-1} W_hh^T` has only as many rows as a row
//! group (4 to 32 sequences). `matrixmultiply` packs both operands on every
//! call, and packing the whole `[G*H, H]` weight for a handful of rows costs
//! as much as the product. [`small_gemm`] instead reads `B` in place: it
//! keeps a 4 x 16 tile of `C` in registers and walks `k`, so each element of
//! `C` is a plain sequential sum over `k` (the same bits however the rows
//! are grouped). On x86-64 with AVX2 and FMA (checked at run time) each
//! element is a fused multiply-add per `k`; with AVX-512F a tile is up to 8
//! rows by 32 to 128 columns in 16-lane registers (wider for fewer rows),
//! the same fused sums, so the same bits as AVX2 (tested). On AArch64 the
//! 4 x 16 tile is 16 NEON registers and each step one `fmla`: again the
//! same fused sums and bits (tested under `qemu-aarch64` in CI). Elsewhere
//! it is portable code with separate multiplies and adds. (Bit for bit
//! means for numbers: an invalid operation's NaN is x86's default NaN on
//! x86 and Arm's on AArch64; training stops at a non-finite loss anyway.)

/// Columns per panel of a packed right-hand operand.
pub const NR: usize = 16;
/// Rows of the register tile.
const MR: usize = 4;

/// A `q x p` right-hand operand stored as panels of [`NR`] columns: panel
/// `j` holds columns `NR*j..NR*j+NR` as `q` consecutive rows of `NR`
/// (the last panel zero-padded). Packed once per batch, read every step.
#[derive(Clone, Debug, Default)]
pub struct Packed<T> {
    /// Rows.
    pub q: usize,
    /// Columns.
    pub p: usize,
    /// `ceil(p / NR) * q * NR` elements.
    pub data: Vec<T>,
}

impl<T: Copy + Default + Send> Packed<T> {
    /// Packs the matrix whose element `(k, n)` is `at(k, n)`, one panel per
    /// rayon task (packing `W_hh` once per batch and layer was a serial 4%
    /// of two-thread training).
    pub fn pack(&mut self, q: usize, p: usize, at: impl Fn(usize, usize) -> T + Sync) {
        use rayon::prelude::*;
        self.q = q;
        self.p = p;
        self.data.clear();
        self.data.resize(p.div_ceil(NR) * q * NR, T::default());
        self.data
            .par_chunks_mut((q * NR).max(1))
            .enumerate()
            .for_each(|(j, panel)| {
                let cols = NR.min(p - j * NR);
                for (k, row) in panel.chunks_exact_mut(NR).enumerate() {
                    for (l, x) in row[..cols].iter_mut().enumerate() {
                        *x = at(k, j * NR + l);
                    }
                }
            });
    }
}

/// `c (+)= a b`: `a` is `m x q` row-major, `b` packed `q x p`, `c` is
/// `m x p` row-major.
pub fn small_gemm(m: usize, a: &[f32], b: &Packed<f32>, c: &mut [f32], accumulate: bool) {
    let (q, p) = (b.q, b.p);
    assert!(
        a.len() >= m * q && c.len() >= m * p,
        "small_gemm: operand too short"
    );
    #[cfg(target_arch = "x86_64")]
    if has_avx512() {
        // SAFETY: the CPU has AVX-512F (checked above).
        unsafe { small_gemm_avx512(m, a, b, c, accumulate) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU has AVX2 and FMA (checked above).
        unsafe { small_gemm_avx2(m, a, b, c, accumulate) };
        return;
    }
    #[cfg(target_arch = "aarch64")]
    small_gemm_neon(m, a, b, c, accumulate);
    #[cfg(not(target_arch = "aarch64"))]
    small_gemm_impl(m, a, b, c, accumulate);
}

/// `c (+)= a b` by tiles of [`MR`] rows and one panel: `tile(h, rows,
/// panel)` computes the `h` rows (`rows` holds `h` rows of `q`) by the
/// panel's [`NR`] columns. Each kernel calls it with its own tile, inlined.
#[inline(always)]
fn by_tiles(
    m: usize,
    a: &[f32],
    b: &Packed<f32>,
    c: &mut [f32],
    accumulate: bool,
    tile: impl Fn(usize, &[f32], &[f32]) -> [[f32; NR]; MR],
) {
    let (q, p) = (b.q, b.p);
    if q == 0 {
        // Empty sums (the AVX-512 kernel's answer too).
        if !accumulate {
            c[..m * p].fill(0.0);
        }
        return;
    }
    for (j, panel) in b.data.chunks_exact(q * NR).enumerate() {
        let p0 = j * NR;
        let w = NR.min(p - p0);
        let mut m0 = 0;
        while m0 < m {
            let h = MR.min(m - m0);
            let acc = tile(h, &a[m0 * q..(m0 + h) * q], panel);
            for (r, acc_r) in acc.iter().enumerate().take(h) {
                let out = &mut c[(m0 + r) * p + p0..(m0 + r) * p + p0 + w];
                if accumulate {
                    for (o, &x) in out.iter_mut().zip(acc_r) {
                        *o += x;
                    }
                } else {
                    out.copy_from_slice(&acc_r[..w]);
                }
            }
            m0 += MR;
        }
    }
}

/// True when the CPU has AVX2 and FMA (checked once).
#[cfg(target_arch = "x86_64")]
pub fn has_avx2_fma() -> bool {
    use std::sync::OnceLock;
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
}

/// True when the CPU has AVX-512F with the Ice Lake / Zen 4 extensions
/// (checked once; VBMI2 stands for them). Skylake-SP/X, whose 512-bit
/// units lower the clock for the code around them too, keeps the AVX2
/// path, as `multiversion` does for the optimizer.
#[cfg(target_arch = "x86_64")]
pub fn has_avx512() -> bool {
    use std::sync::OnceLock;
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512vbmi2")
            && is_x86_feature_detected!("fma")
    })
}

/// [`small_gemm_avx2`] with 16-lane registers: a panel row is one
/// register. Rows go 8 at a time (the last group has `h` < 8), and each
/// tile of `h` rows spans enough panels to keep at least 8 sums in flight
/// (2 panels for 4-8 rows, 4 for 2-3, 8 for one row), the latency of a
/// fused multiply-add times the units that issue them. Each element is
/// still one fused multiply-add per `k`, in order, from zero: the bits are
/// `small_gemm_avx2`'s.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
fn small_gemm_avx512(m: usize, a: &[f32], b: &Packed<f32>, c: &mut [f32], accumulate: bool) {
    let q = b.q;
    let mut m0 = 0;
    while m0 < m {
        let h = 8.min(m - m0);
        let rows = &a[m0 * q..(m0 + h) * q];
        let c = &mut c[m0 * b.p..(m0 + h) * b.p];
        match h {
            8 => rows_avx512::<8, 2>(rows, b, c, accumulate),
            7 => rows_avx512::<7, 2>(rows, b, c, accumulate),
            6 => rows_avx512::<6, 2>(rows, b, c, accumulate),
            5 => rows_avx512::<5, 2>(rows, b, c, accumulate),
            4 => rows_avx512::<4, 2>(rows, b, c, accumulate),
            3 => rows_avx512::<3, 4>(rows, b, c, accumulate),
            2 => rows_avx512::<2, 4>(rows, b, c, accumulate),
            _ => rows_avx512::<1, 8>(rows, b, c, accumulate),
        }
        m0 += 8;
    }
}

/// `c (+)= a b` for `R` rows: tiles of `P` panels, then the panels left
/// over one at a time.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
fn rows_avx512<const R: usize, const P: usize>(
    rows: &[f32],
    b: &Packed<f32>,
    c: &mut [f32],
    accumulate: bool,
) {
    let (q, p) = (b.q, b.p);
    let panels = p.div_ceil(NR);
    let panel = |j: usize| &b.data[j * q * NR..(j + 1) * q * NR];
    let mut j = 0;
    while j + P <= panels {
        let pans = std::array::from_fn(|i| panel(j + i));
        tile_avx512::<R, P>(q, rows, pans, c, p, j * NR, accumulate);
        j += P;
    }
    while j < panels {
        tile_avx512::<R, 1>(q, rows, [panel(j)], c, p, j * NR, accumulate);
        j += 1;
    }
}

/// One `R x 16P` tile: `rows` holds `R` rows of `q`, each panel is
/// `q x 16`; the result goes to (or is added to) columns `p0..` of the
/// `R` rows of `c` (`p` wide), a partial last panel through a mask.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
#[inline]
fn tile_avx512<const R: usize, const P: usize>(
    q: usize,
    rows: &[f32],
    panels: [&[f32]; P],
    c: &mut [f32],
    p: usize,
    p0: usize,
    accumulate: bool,
) {
    use std::arch::x86_64::*;
    assert!(rows.len() >= R * q && panels.iter().all(|b| b.len() >= q * NR));
    assert!(c.len() >= R * p && p0 + (P - 1) * NR < p);
    let mut acc = [[_mm512_setzero_ps(); P]; R];
    let ap = rows.as_ptr();
    let bp = panels.map(<[f32]>::as_ptr);
    for k in 0..q {
        // SAFETY: k < q, so k*NR + 16 <= each panel's length and
        // r*q + k < rows.len() (asserted).
        unsafe {
            let bk: [__m512; P] = std::array::from_fn(|i| _mm512_loadu_ps(bp[i].add(k * NR)));
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let av = _mm512_set1_ps(*ap.add(r * q + k));
                for (a, b) in acc_r.iter_mut().zip(bk) {
                    *a = _mm512_fmadd_ps(av, b, *a);
                }
            }
        }
    }
    for (r, acc_r) in acc.iter().enumerate() {
        for (i, &a) in acc_r.iter().enumerate() {
            let col = p0 + i * NR;
            let w = NR.min(p - col);
            let mask: __mmask16 = if w == NR { !0 } else { (1 << w) - 1 };
            // SAFETY: columns col..col + w of row r are in `c` (asserted:
            // col < p, and c holds R rows of p); the mask keeps every
            // access inside them.
            unsafe {
                let o = c.as_mut_ptr().add(r * p + col);
                let v = if accumulate {
                    _mm512_add_ps(_mm512_maskz_loadu_ps(mask, o), a)
                } else {
                    a
                };
                _mm512_mask_storeu_ps(o, mask, v);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn small_gemm_avx2(m: usize, a: &[f32], b: &Packed<f32>, c: &mut [f32], accumulate: bool) {
    let q = b.q;
    by_tiles(m, a, b, c, accumulate, |h, rows, panel| match h {
        4 => tile_avx2::<4>(q, rows, panel),
        3 => tile_avx2::<3>(q, rows, panel),
        2 => tile_avx2::<2>(q, rows, panel),
        _ => tile_avx2::<1>(q, rows, panel),
    });
}

/// One `R x 16` tile: `rows` holds `R` rows of `q`, `panel` is `q x 16`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn tile_avx2<const R: usize>(q: usize, rows: &[f32], panel: &[f32]) -> [[f32; NR]; MR] {
    use std::arch::x86_64::*;
    assert!(rows.len() >= R * q && panel.len() >= q * NR && R <= MR);
    let mut acc = [[_mm256_setzero_ps(); 2]; R];
    let (ap, bp) = (rows.as_ptr(), panel.as_ptr());
    for k in 0..q {
        // SAFETY: k < q, so k*NR + 16 <= panel.len() and r*q + k < rows.len() (asserted).
        unsafe {
            let b0 = _mm256_loadu_ps(bp.add(k * NR));
            let b1 = _mm256_loadu_ps(bp.add(k * NR + 8));
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let av = _mm256_set1_ps(*ap.add(r * q + k));
                acc_r[0] = _mm256_fmadd_ps(av, b0, acc_r[0]);
                acc_r[1] = _mm256_fmadd_ps(av, b1, acc_r[1]);
            }
        }
    }
    let mut out = [[0.0f32; NR]; MR];
    for (o, acc_r) in out.iter_mut().zip(&acc) {
        // SAFETY: each row of `out` has 16 floats.
        unsafe {
            _mm256_storeu_ps(o.as_mut_ptr(), acc_r[0]);
            _mm256_storeu_ps(o.as_mut_ptr().add(8), acc_r[1]);
        }
    }
    out
}

/// The per-step product on AArch64: the same 4 x 16 tiles in NEON
/// registers (four per tile row), one fused multiply-add (`fmla`) per `k`,
/// in order, from zero: the bits of the x86-64 AVX2 and AVX-512 kernels.
#[cfg(target_arch = "aarch64")]
fn small_gemm_neon(m: usize, a: &[f32], b: &Packed<f32>, c: &mut [f32], accumulate: bool) {
    let q = b.q;
    by_tiles(m, a, b, c, accumulate, |h, rows, panel| match h {
        4 => tile_neon::<4>(q, rows, panel),
        3 => tile_neon::<3>(q, rows, panel),
        2 => tile_neon::<2>(q, rows, panel),
        _ => tile_neon::<1>(q, rows, panel),
    });
}

/// One `R x 16` tile with NEON: `rows` holds `R` rows of `q`, `panel` is
/// `q x 16`.
#[cfg(target_arch = "aarch64")]
#[inline(always)]
fn tile_neon<const R: usize>(q: usize, rows: &[f32], panel: &[f32]) -> [[f32; NR]; MR] {
    use std::arch::aarch64::*;
    assert!(rows.len() >= R * q && panel.len() >= q * NR && R <= MR);
    // SAFETY (every block): NEON is part of the AArch64 hosts' baseline;
    // the loads and stores touch 16 floats of `bk` and of each row of `out`.
    let mut acc = [[unsafe { vdupq_n_f32(0.0) }; 4]; R];
    for (k, bk) in panel.chunks_exact(NR).take(q).enumerate() {
        let bk: [float32x4_t; 4] =
            std::array::from_fn(|i| unsafe { vld1q_f32(bk.as_ptr().add(4 * i)) });
        for (r, acc_r) in acc.iter_mut().enumerate() {
            // r * q + k < R * q <= rows.len() (asserted).
            let av = unsafe { vdupq_n_f32(*rows.as_ptr().add(r * q + k)) };
            for (acc, b) in acc_r.iter_mut().zip(bk) {
                *acc = unsafe { vfmaq_f32(*acc, av, b) };
            }
        }
    }
    let mut out = [[0.0f32; NR]; MR];
    for (o, acc_r) in out.iter_mut().zip(&acc) {
        for (i, v) in acc_r.iter().enumerate() {
            unsafe { vst1q_f32(o.as_mut_ptr().add(4 * i), *v) };
        }
    }
    out
}

/// The portable kernel: the same tiles with separate multiplies and adds.
#[cfg_attr(target_arch = "aarch64", allow(dead_code))]
fn small_gemm_impl(m: usize, a: &[f32], b: &Packed<f32>, c: &mut [f32], accumulate: bool) {
    let q = b.q;
    by_tiles(m, a, b, c, accumulate, |h, rows, panel| {
        let mut acc = [[0.0f32; NR]; MR];
        for (k, bk) in panel.chunks_exact(NR).enumerate() {
            for (r, acc_r) in acc.iter_mut().enumerate().take(h) {
                let av = rows[r * q + k];
                for l in 0..NR {
                    acc_r[l] += av * bk[l];
                }
            }
        }
        acc
    });
}

/// `e^x` in f32, accurate to about 2 ulp, written so that loops over it
/// vectorise (no branches, no table). Inputs are clamped to `[-87, 88]`.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Clamp by selects (NaN-free inputs; f32::clamp adds NaN handling that
    // keeps loops from vectorising).
    let x = if x < -87.0 { -87.0 } else { x };
    let x = if x > 88.0 { 88.0 } else { x };
    // n = round(x / ln 2) by the 1.5 * 2^23 trick: the sum's low mantissa
    // bits then hold n itself, which gives 2^n without a float-to-int
    // conversion.
    const SHIFTER: f32 = 12_582_912.0;
    let t = x * LOG2E + SHIFTER;
    let n = t - SHIFTER;
    let r = x - n * LN2_HI - n * LN2_LO;
    // e^r on [-ln2/2, ln2/2]: Cephes' degree-5 polynomial.
    let mut y = 1.987_569_1e-4f32;
    y = y * r + 1.398_199_9e-3;
    y = y * r + 8.333_452e-3;
    y = y * r + 4.166_579_6e-2;
    y = y * r + 1.666_666_5e-1;
    y = y * r + 0.5;
    let e = y * (r * r) + r + 1.0;
    let scale = f32::from_bits(t.to_bits().wrapping_sub(0x4b40_0000).wrapping_add(127) << 23);
    e * scale
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_gemm_matches_a_sequential_sum() {
        for &(m, q, p) in &[
            (1, 1, 1),
            (4, 16, 16),
            (5, 7, 33),
            (8, 128, 512),
            (3, 20, 5),
            (3, 0, 5),
        ] {
            let a: Vec<f32> = (0..m * q)
                .map(|i| ((i * 7 % 13) as f32) * 0.25 - 1.5)
                .collect();
            let b: Vec<f32> = (0..q * p)
                .map(|i| ((i * 5 % 11) as f32) * 0.5 - 2.5)
                .collect();
            let mut c = vec![1.0f32; m * p];
            let mut packed = Packed::default();
            packed.pack(q, p, |k, n| b[k * p + n]);
            small_gemm(m, &a, &packed, &mut c, true);
            for i in 0..m {
                for j in 0..p {
                    // Small integers and quarters: every order gives exact results.
                    let want: f32 = 1.0 + (0..q).map(|k| a[i * q + k] * b[k * p + j]).sum::<f32>();
                    assert_eq!(c[i * p + j], want, "({i},{j}) of {m}x{q}x{p}");
                }
            }
        }
    }

    /// The portable kernel on every target: each element the sum over `k`
    /// in order, from zero, a separate multiply and add per step (bit for
    /// bit; the operands' full precision makes any other order or a fused
    /// step show).
    #[test]
    fn the_portable_kernel_sums_in_order_unfused() {
        let mut rng = charlm_runtime::SeededRng::new(11);
        let mut uniform = || {
            use rand_core::RngCore;
            (rng.next_u32() >> 8) as f32 / (1 << 23) as f32 - 1.0
        };
        for (m, q, p) in [(1, 1, 1), (4, 16, 16), (5, 7, 33), (9, 130, 70), (3, 0, 5)] {
            let a: Vec<f32> = (0..m * q).map(|_| uniform()).collect();
            let b: Vec<f32> = (0..q * p).map(|_| uniform()).collect();
            let c0: Vec<f32> = (0..m * p).map(|_| uniform()).collect();
            let mut packed = Packed::default();
            packed.pack(q, p, |k, n| b[k * p + n]);
            for accumulate in [false, true] {
                let mut c = c0.clone();
                small_gemm_impl(m, &a, &packed, &mut c, accumulate);
                for i in 0..m {
                    for j in 0..p {
                        let sum = (0..q).fold(0.0f32, |s, k| s + a[i * q + k] * b[k * p + j]);
                        let want = if accumulate { c0[i * p + j] + sum } else { sum };
                        assert_eq!(
                            c[i * p + j].to_bits(),
                            want.to_bits(),
                            "({i},{j}) of {m}x{q}x{p}"
                        );
                    }
                }
            }
        }
    }

    /// Each element of `a b` as the vector kernels define it: one fused
    /// multiply-add per `k`, in order, from zero.
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    fn fused_sums(m: usize, q: usize, p: usize, a: &[f32], b: &[f32]) -> Vec<f32> {
        let mut c = vec![0.0f32; m * p];
        for i in 0..m {
            for j in 0..p {
                c[i * p + j] = (0..q).fold(0.0, |s, k| a[i * q + k].mul_add(b[k * p + j], s));
            }
        }
        c
    }

    /// Runs `kernel(m, a, b, c, accumulate)` on random operands of every
    /// row count of a tile (1-8, and more than one group of 8), whole
    /// groups of 1, 2, 4 or 8 panels and the panels left over, a partial
    /// last panel; each result must be [`fused_sums`] (added to `c` or
    /// not), bit for bit.
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    fn gives_the_fused_sums(
        name: &str,
        kernel: impl Fn(usize, &[f32], &Packed<f32>, &mut [f32], bool),
    ) {
        let mut rng = charlm_runtime::SeededRng::new(7);
        let mut uniform = || {
            use rand_core::RngCore;
            (rng.next_u32() >> 8) as f32 / (1 << 23) as f32 - 1.0
        };
        for m in [1, 2, 3, 4, 5, 7, 8, 9, 12, 13, 16, 21] {
            for (q, p) in [
                (1, 1),
                (3, 16),
                (17, 31),
                (32, 33),
                (64, 48),
                (128, 512),
                (9, 70),
                (5, 140),
                (0, 5),
            ] {
                let a: Vec<f32> = (0..m * q).map(|_| uniform()).collect();
                let b: Vec<f32> = (0..q * p).map(|_| uniform()).collect();
                let c0: Vec<f32> = (0..m * p).map(|_| uniform()).collect();
                let mut packed = Packed::default();
                packed.pack(q, p, |k, n| b[k * p + n]);
                let sums = fused_sums(m, q, p, &a, &b);
                for accumulate in [false, true] {
                    let mut c = c0.clone();
                    kernel(m, &a, &packed, &mut c, accumulate);
                    let want: Vec<f32> = if accumulate {
                        c0.iter().zip(&sums).map(|(c, w)| c + w).collect()
                    } else {
                        sums.clone()
                    };
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&c), bits(&want), "{name} {m}x{q}x{p} {accumulate}");
                }
            }
        }
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn the_avx512_and_avx2_kernels_give_the_same_bits() {
        if !(has_avx512() && has_avx2_fma()) {
            eprintln!(
                "\n*** SKIPPED: no AVX-512 (F and VBMI2) here: its kernel is not compared.\n"
            );
            return;
        }
        // SAFETY (both): the CPU has AVX-512F, AVX2 and FMA (checked above).
        gives_the_fused_sums("avx512", |m, a, b, c, acc| unsafe {
            small_gemm_avx512(m, a, b, c, acc)
        });
        gives_the_fused_sums("avx2", |m, a, b, c, acc| unsafe {
            small_gemm_avx2(m, a, b, c, acc)
        });
    }

    /// AArch64 (run under `qemu-aarch64` in CI): NEON's fused sums are the
    /// x86-64 kernels' bits.
    #[test]
    #[cfg(target_arch = "aarch64")]
    fn the_neon_kernel_gives_the_fused_sums() {
        gives_the_fused_sums("neon", small_gemm_neon);
    }

    #[test]
    fn exp_is_accurate() {
        let mut worst = 0.0f64;
        let mut x = -80.0f32;
        while x < 80.0 {
            let want = (x as f64).exp();
            let rel = ((exp_f32(x) as f64 - want) / want).abs();
            worst = worst.max(rel);
            x += 0.0137;
        }
        assert!(worst < 4e-7, "worst relative error {worst:e}");
        assert_eq!(exp_f32(0.0), 1.0);
        assert!(exp_f32(-1000.0) > 0.0 && exp_f32(1000.0).is_finite());
    }
}
