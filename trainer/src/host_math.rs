//! `libm`'s `expf`, `expm1f` and `tanhf`, eight lanes at a time with AVX2,
//! giving exactly libm's bits.
//!
//! The runtime's numerics contract names libm (the same software on every
//! target, so the same bits). These are libm 0.2's algorithms (FreeBSD's
//! `e_expf.c`, `s_expm1f.c`, `s_tanhf.c`) transcribed operation by operation
//! into vector code: every branch is computed in every lane and the lanes
//! pick their branch with masks, all in f32 with separate multiplies and
//! adds (no FMA), so each lane rounds exactly as the scalar code does.
//! Inputs outside the ranges transcribed here (NaN, overflow, deep
//! underflow) are rare in a network's gates; those lanes are recomputed with
//! the scalar libm function. The tests compare all 2^32 inputs of each
//! function with libm.

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;

// expf's constants: the bits of libm's literals
const LN2_HI: f32 = f32::from_bits(0x3f31_7200);
const LN2_LO: f32 = f32::from_bits(0x35bf_be8e);
const INV_LN2: f32 = f32::from_bits(0x3fb8_aa3b);
const P1: f32 = f32::from_bits(0x3e2a_aa8f);
const P2: f32 = f32::from_bits(0xbb35_5215);
// expm1f's (its ln 2 is split differently)
const M_LN2_HI: f32 = f32::from_bits(0x3f31_7180);
const M_LN2_LO: f32 = f32::from_bits(0x3717_f7d1);
const Q1: f32 = f32::from_bits(0xbd08_8868);
const Q2: f32 = f32::from_bits(0x3acf_3010);

#[inline(always)]
fn splat(x: f32) -> __m256 {
    // SAFETY: AVX is enabled in every function of this module that calls it.
    unsafe { _mm256_set1_ps(x) }
}

#[inline(always)]
fn splati(x: i32) -> __m256i {
    // SAFETY: as `splat`.
    unsafe { _mm256_set1_epi32(x) }
}

/// `mask ? a : b`, lane by lane (mask lanes all ones or all zeros).
#[inline(always)]
unsafe fn pick(mask: __m256i, a: __m256, b: __m256) -> __m256 {
    unsafe { _mm256_blendv_ps(b, a, _mm256_castsi256_ps(mask)) }
}

/// Lanes of `v` where `fallback` is set, recomputed with the scalar `f`.
#[inline(always)]
unsafe fn patch(v: __m256, x: [f32; 8], fallback: __m256i, f: fn(f32) -> f32) -> [f32; 8] {
    let mut out = [0.0f32; 8];
    unsafe { _mm256_storeu_ps(out.as_mut_ptr(), v) };
    let mask = unsafe { _mm256_movemask_ps(_mm256_castsi256_ps(fallback)) };
    if mask != 0 {
        for (i, (o, x)) in out.iter_mut().zip(x).enumerate() {
            if mask & (1 << i) != 0 {
                *o = f(x);
            }
        }
    }
    out
}

/// `2^k` for `k` in -126..=127, from its bits.
#[inline(always)]
unsafe fn pow2(k: __m256i) -> __m256 {
    unsafe { _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k, splati(0x7f)), 23)) }
}

/// `libm::expf` of each lane.
///
/// # Safety
/// The CPU must have AVX2.
#[target_feature(enable = "avx2")]
pub unsafe fn expf8(x: [f32; 8]) -> [f32; 8] {
    unsafe {
        let xv = _mm256_loadu_ps(x.as_ptr());
        let bits = _mm256_castps_si256(xv);
        let hx = _mm256_and_si256(bits, splati(0x7fff_ffff));
        let neg = _mm256_srai_epi32(bits, 31); // all ones where x < 0
        // transcribed: 2^-14 < |x| < 87.33655 (no overflow, underflow or scaling steps)
        let tiny = _mm256_cmpgt_epi32(splati(0x3900_0001), hx); // |x| <= 2^-14: 1 + x
        let big = _mm256_cmpgt_epi32(hx, splati(0x42ae_ac4f));
        // argument reduction: k and x = hi - lo
        let far = _mm256_cmpgt_epi32(hx, splati(0x3f85_1592)); // |x| > 1.5 ln2
        let near = _mm256_andnot_si256(far, _mm256_cmpgt_epi32(hx, splati(0x3eb1_7218))); // 0.5 ln2 < |x| <= 1.5 ln2
        let half = _mm256_or_ps(splat(0.5), _mm256_and_ps(xv, splat(-0.0))); // HALF[sign]
        let k_far = _mm256_cvttps_epi32(_mm256_add_ps(_mm256_mul_ps(splat(INV_LN2), xv), half));
        let k_near = _mm256_sub_epi32(
            splati(1),
            _mm256_add_epi32(
                _mm256_and_si256(neg, splati(1)),
                _mm256_and_si256(neg, splati(1)),
            ),
        );
        let k = _mm256_or_si256(_mm256_and_si256(far, k_far), _mm256_and_si256(near, k_near));
        let reduced = _mm256_or_si256(far, near);
        let kf = _mm256_cvtepi32_ps(k);
        let hi_r = _mm256_sub_ps(xv, _mm256_mul_ps(kf, splat(LN2_HI)));
        let lo_r = _mm256_mul_ps(kf, splat(LN2_LO));
        let hi = pick(reduced, hi_r, xv);
        let lo = pick(reduced, lo_r, splat(0.0));
        let r = pick(reduced, _mm256_sub_ps(hi_r, lo_r), xv);
        // r is now in the primary range
        let rr = _mm256_mul_ps(r, r);
        let c = _mm256_sub_ps(
            r,
            _mm256_mul_ps(rr, _mm256_add_ps(splat(P1), _mm256_mul_ps(rr, splat(P2)))),
        );
        let q = _mm256_div_ps(_mm256_mul_ps(r, c), _mm256_sub_ps(splat(2.0), c));
        let y = _mm256_add_ps(splat(1.0), _mm256_add_ps(_mm256_sub_ps(q, lo), hi));
        // scalbnf(y, k) is one multiply by 2^k for these k (2^0 = 1 leaves y as it is)
        let scaled = _mm256_mul_ps(y, pow2(k));
        let v = pick(tiny, _mm256_add_ps(splat(1.0), xv), scaled);
        patch(v, x, big, libm::expf)
    }
}

/// `libm::expm1f` of each lane.
///
/// # Safety
/// The CPU must have AVX2.
#[target_feature(enable = "avx2")]
pub unsafe fn expm1f8(x: [f32; 8]) -> [f32; 8] {
    unsafe {
        let xv = _mm256_loadu_ps(x.as_ptr());
        let (v, fallback) = expm1f_core(xv);
        patch(v, x, fallback, libm::expm1f)
    }
}

/// expm1f without the fallback: the lanes it leaves to the scalar code are
/// set in the returned mask (NaN and x > 80).
#[inline(always)]
unsafe fn expm1f_core(xv: __m256) -> (__m256, __m256i) {
    unsafe {
        let bits = _mm256_castps_si256(xv);
        let hx = _mm256_and_si256(bits, splati(0x7fff_ffff));
        let neg = _mm256_srai_epi32(bits, 31);
        let pos = _mm256_xor_si256(neg, splati(-1));
        let nan = _mm256_cmpgt_epi32(hx, splati(0x7f80_0000));
        let fallback = _mm256_or_si256(
            nan,
            _mm256_and_si256(pos, _mm256_cmpgt_epi32(hx, splati(0x42a0_0000))),
        );
        // x <= -27 ln2: -1
        let minus_one = _mm256_and_si256(neg, _mm256_cmpgt_epi32(hx, splati(0x4195_b843)));
        // |x| < 2^-25: x
        let tiny = _mm256_cmpgt_epi32(splati(0x3300_0000), hx);
        // argument reduction
        let reduced = _mm256_cmpgt_epi32(hx, splati(0x3eb1_7218)); // |x| > 0.5 ln2
        let near = _mm256_and_si256(reduced, _mm256_cmpgt_epi32(splati(0x3f85_1592), hx)); // and < 1.5 ln2
        let half = _mm256_or_ps(splat(0.5), _mm256_and_ps(xv, splat(-0.0)));
        let k_far = _mm256_cvttps_epi32(_mm256_add_ps(_mm256_mul_ps(splat(INV_LN2), xv), half));
        let k_near = _mm256_or_si256(neg, splati(1)); // -1 or 1
        let k = _mm256_and_si256(reduced, _mm256_blendv_epi8(k_far, k_near, near));
        // k = +-1 gives the same hi and lo as the near branch's x -+ LN2_HI, +-LN2_LO
        let t = _mm256_cvtepi32_ps(k);
        let hi = _mm256_sub_ps(xv, _mm256_mul_ps(t, splat(M_LN2_HI)));
        let lo = _mm256_mul_ps(t, splat(M_LN2_LO));
        let xr_red = _mm256_sub_ps(hi, lo);
        let c_red = _mm256_sub_ps(_mm256_sub_ps(hi, xr_red), lo);
        let r = pick(reduced, xr_red, xv);
        let c = pick(reduced, c_red, splat(0.0));
        // primary range
        let hfx = _mm256_mul_ps(splat(0.5), r);
        let hxs = _mm256_mul_ps(r, hfx);
        let r1 = _mm256_add_ps(
            splat(1.0),
            _mm256_mul_ps(hxs, _mm256_add_ps(splat(Q1), _mm256_mul_ps(hxs, splat(Q2)))),
        );
        let tt = _mm256_sub_ps(splat(3.0), _mm256_mul_ps(r1, hfx));
        let e0 = _mm256_mul_ps(
            hxs,
            _mm256_div_ps(
                _mm256_sub_ps(r1, tt),
                _mm256_sub_ps(splat(6.0), _mm256_mul_ps(r, tt)),
            ),
        );
        // k == 0
        let v_k0 = _mm256_sub_ps(r, _mm256_sub_ps(_mm256_mul_ps(r, e0), hxs));
        let e = _mm256_sub_ps(
            _mm256_sub_ps(_mm256_mul_ps(r, _mm256_sub_ps(e0, c)), c),
            hxs,
        );
        // k == -1
        let v_km1 = _mm256_sub_ps(_mm256_mul_ps(splat(0.5), _mm256_sub_ps(r, e)), splat(0.5));
        // k == 1
        let v_k1_lo = _mm256_mul_ps(splat(-2.0), _mm256_sub_ps(e, _mm256_add_ps(r, splat(0.5))));
        let v_k1_hi = _mm256_add_ps(splat(1.0), _mm256_mul_ps(splat(2.0), _mm256_sub_ps(r, e)));
        let below = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_LT_OQ>(r, splat(-0.25)));
        let v_k1 = pick(below, v_k1_lo, v_k1_hi);
        // other k: 2^k and 2^-k (k <= 116 here, so both are normal for 2 <= k < 23)
        let twopk = pow2(k);
        let v_kneg = _mm256_sub_ps(
            _mm256_mul_ps(_mm256_add_ps(_mm256_sub_ps(r, e), splat(1.0)), twopk),
            splat(1.0),
        );
        let uf = pow2(_mm256_sub_epi32(splati(0), k));
        let v_k22 = _mm256_mul_ps(
            _mm256_add_ps(_mm256_sub_ps(r, e), _mm256_sub_ps(splat(1.0), uf)),
            twopk,
        );
        let v_k56 = _mm256_mul_ps(
            _mm256_add_ps(_mm256_sub_ps(r, _mm256_add_ps(e, uf)), splat(1.0)),
            twopk,
        );
        // k > 56 (57..=116): as k <= -2
        let is = |n: i32| _mm256_cmpeq_epi32(k, splati(n));
        let k_le_m2 = _mm256_cmpgt_epi32(splati(-1), k);
        let k_gt_56 = _mm256_cmpgt_epi32(k, splati(56));
        let k_lt_23 = _mm256_cmpgt_epi32(splati(23), k);
        let mut v = v_k56;
        v = pick(k_lt_23, v_k22, v);
        v = pick(_mm256_or_si256(k_le_m2, k_gt_56), v_kneg, v);
        v = pick(is(1), v_k1, v);
        v = pick(is(-1), v_km1, v);
        v = pick(is(0), v_k0, v);
        v = pick(tiny, xv, v);
        v = pick(minus_one, splat(-1.0), v);
        (v, fallback)
    }
}

/// `libm::tanhf` of each lane.
///
/// # Safety
/// The CPU must have AVX2.
#[target_feature(enable = "avx2")]
pub unsafe fn tanhf8(x: [f32; 8]) -> [f32; 8] {
    unsafe {
        let xv = _mm256_loadu_ps(x.as_ptr());
        let bits = _mm256_castps_si256(xv);
        let w = _mm256_and_si256(bits, splati(0x7fff_ffff));
        let sign = _mm256_and_si256(bits, splati(i32::MIN));
        let ax = _mm256_castsi256_ps(w);
        let nan = _mm256_cmpgt_epi32(w, splati(0x7f80_0000));
        let over10 = _mm256_cmpgt_epi32(w, splati(0x4120_0000)); // |x| > 10 (inf too): 1 + 0/x = 1
        let upper = _mm256_cmpgt_epi32(w, splati(0x3f0c_9f54)); // |x| > log(3)/2
        let middle = _mm256_cmpgt_epi32(w, splati(0x3e82_c578)); // |x| > log(5/3)/2
        let normal = _mm256_cmpgt_epi32(w, splati(0x007f_ffff)); // |x| >= 2^-126
        // one expm1f per lane: of 2|x| above log(5/3)/2, of -2|x| below
        let two = _mm256_mul_ps(splat(2.0), ax);
        let arg = pick(middle, two, _mm256_mul_ps(splat(-2.0), ax));
        let (t, em_fallback) = expm1f_core(arg);
        let t2 = _mm256_add_ps(t, splat(2.0));
        // One division for the three branches: 2/(t+2) above, t/(t+2)
        // below; (-t)/(t+2) is exactly -(t/(t+2)) (negation is exact).
        let q = _mm256_div_ps(pick(upper, splat(2.0), t), t2);
        let v_upper = _mm256_sub_ps(splat(1.0), q);
        let v_middle = q;
        let v_lower = _mm256_xor_ps(q, splat(-0.0));
        let mut v = ax; // subnormal or zero: |x|
        v = pick(normal, v_lower, v);
        v = pick(middle, v_middle, v);
        v = pick(upper, v_upper, v);
        v = pick(over10, splat(1.0), v);
        v = _mm256_xor_ps(v, _mm256_castsi256_ps(sign));
        // expm1f's own fallback lanes are only reached through NaN here (2|x| <= 20)
        let fallback = _mm256_or_si256(nan, _mm256_andnot_si256(over10, em_fallback));
        patch(v, x, fallback, libm::tanhf)
    }
}

#[cfg(test)]
mod tests {
    use rayon::prelude::*;

    /// Every f32 bit pattern through `vector` and `scalar`: the same bits
    /// (NaN results only need to be NaN).
    fn exhaustive(name: &str, vector: unsafe fn([f32; 8]) -> [f32; 8], scalar: fn(f32) -> f32) {
        if !(is_x86_feature_detected!("avx2")) {
            // Loud, and a failure on CI (an x86-64 machine with AVX2).
            crate::host_kernel::tests::kernel_under_test();
            eprintln!("*** SKIPPED: {name} not checked");
            return;
        }
        let bad: u64 = (0u32..1 << 16)
            .into_par_iter()
            .map(|hi| {
                let mut bad = 0u64;
                for lo in (0u32..1 << 16).step_by(8) {
                    let x: [f32; 8] = std::array::from_fn(|i| f32::from_bits(hi << 16 | (lo + i as u32)));
                    // SAFETY: AVX2 checked above.
                    let got = unsafe { vector(x) };
                    for (g, x) in got.iter().zip(x) {
                        let want = scalar(x);
                        if g.to_bits() != want.to_bits() && !(g.is_nan() && want.is_nan()) {
                            if bad < 3 {
                                eprintln!("{name}({x:e} = {:#010x}): {g:e} ({:#010x}), libm {want:e} ({:#010x})", x.to_bits(), g.to_bits(), want.to_bits());
                            }
                            bad += 1;
                        }
                    }
                }
                bad
            })
            .sum();
        assert_eq!(bad, 0, "{name}: {bad} inputs differ from libm");
    }

    #[test]
    fn expf8_is_libm_for_every_input() {
        exhaustive("expf8", super::expf8, libm::expf);
    }

    #[test]
    fn expm1f8_is_libm_for_every_input() {
        exhaustive("expm1f8", super::expm1f8, libm::expm1f);
    }

    #[test]
    fn tanhf8_is_libm_for_every_input() {
        exhaustive("tanhf8", super::tanhf8, libm::tanhf);
    }
}
