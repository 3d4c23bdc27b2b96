//! `libm`'s `expf`, `expm1f` and `tanhf`, eight lanes at a time, giving
//! exactly libm's bits: with AVX2 on x86-64 ([`avx2`]), and in two 128-bit
//! registers on every host ([`wide`]: SSE2 on x86-64, NEON on AArch64,
//! through the `wide` crate; plain arrays where it has no SIMD).
//!
//! The runtime's numerics contract names libm (the same software on every
//! target, so the same bits). These are libm 0.2's algorithms (FreeBSD's
//! `e_expf.c`, `s_expm1f.c`, `s_tanhf.c`) transcribed operation by operation
//! into vector code, once, over the [`Lanes`] operations that both
//! instruction sets provide: every branch is computed in every lane and the
//! lanes pick their branch with masks, all in f32 with separate multiplies
//! and adds (no FMA), so each lane rounds exactly as the scalar code does.
//! Inputs outside the ranges transcribed here (NaN, overflow, deep
//! underflow) are rare in a network's gates; those lanes are recomputed with
//! the scalar libm function. The tests compare all 2^32 inputs of each
//! function with libm, on each instruction set.

use core::ops::{Add, Div, Mul, Sub};

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

/// Eight f32 lanes (`Self`) and their bits as i32 lanes (`I`): the
/// operations the transcriptions use, each one instruction (or two, on
/// 128-bit registers) with IEEE rounding. Masks are lanes of all ones or
/// all zeros. The functions generic over it are `unsafe`: the CPU must
/// have the instructions `V`'s operations use (AVX2 for [`avx2`]'s; any
/// CPU for [`wide`]'s).
trait Lanes:
    Copy + Add<Output = Self> + Sub<Output = Self> + Mul<Output = Self> + Div<Output = Self>
{
    type I: Copy;
    fn load(x: [f32; 8]) -> Self;
    fn store(self) -> [f32; 8];
    fn splat(x: f32) -> Self;
    fn splati(x: i32) -> Self::I;
    fn bits(self) -> Self::I;
    fn from_bits(i: Self::I) -> Self;
    fn and(a: Self::I, b: Self::I) -> Self::I;
    fn or(a: Self::I, b: Self::I) -> Self::I;
    fn xor(a: Self::I, b: Self::I) -> Self::I;
    /// `!a & b`.
    fn andnot(a: Self::I, b: Self::I) -> Self::I;
    fn add_i(a: Self::I, b: Self::I) -> Self::I;
    fn sub_i(a: Self::I, b: Self::I) -> Self::I;
    /// Signed `a > b`.
    fn gt(a: Self::I, b: Self::I) -> Self::I;
    fn eq(a: Self::I, b: Self::I) -> Self::I;
    /// Ordered `a < b` (false for NaN).
    fn lt(a: Self, b: Self) -> Self::I;
    /// All ones where the lane is negative (arithmetic shift by 31).
    fn sign_mask(a: Self::I) -> Self::I;
    /// `a << 23`.
    fn shl23(a: Self::I) -> Self::I;
    /// Truncation toward zero (lanes out of range are never used).
    fn trunc(self) -> Self::I;
    fn to_float(i: Self::I) -> Self;
    /// `mask ? a : b`.
    fn pick(mask: Self::I, a: Self, b: Self) -> Self;
    fn pick_i(mask: Self::I, a: Self::I, b: Self::I) -> Self::I;
    /// Bit `i` set where lane `i` of the mask is.
    fn lane_bits(mask: Self::I) -> u32;
}

/// Lanes of `v` where `fallback` is set, recomputed with the scalar `f`.
#[inline(always)]
fn patch<V: Lanes>(v: V, x: [f32; 8], fallback: V::I, f: fn(f32) -> f32) -> [f32; 8] {
    let mut out = v.store();
    let mask = V::lane_bits(fallback);
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
fn pow2<V: Lanes>(k: V::I) -> V {
    V::from_bits(V::shl23(V::add_i(k, V::splati(0x7f))))
}

/// `HALF[sign]` of libm: 0.5 with the sign of each lane of `xv`.
#[inline(always)]
fn signed_half<V: Lanes>(xv: V) -> V {
    let sign = V::and(xv.bits(), V::splat(-0.0).bits());
    V::from_bits(V::or(V::splat(0.5).bits(), sign))
}

/// `libm::expf` of each lane.
#[inline(always)]
unsafe fn expf<V: Lanes>(x: [f32; 8]) -> [f32; 8] {
    let s = V::splat;
    let i = V::splati;
    let xv = V::load(x);
    let bits = xv.bits();
    let hx = V::and(bits, i(0x7fff_ffff));
    let neg = V::sign_mask(bits); // all ones where x < 0
    // transcribed: 2^-14 < |x| < 87.33655 (no overflow, underflow or scaling steps)
    let tiny = V::gt(i(0x3900_0001), hx); // |x| <= 2^-14: 1 + x
    let big = V::gt(hx, i(0x42ae_ac4f));
    // argument reduction: k and x = hi - lo
    let far = V::gt(hx, i(0x3f85_1592)); // |x| > 1.5 ln2
    let near = V::andnot(far, V::gt(hx, i(0x3eb1_7218))); // 0.5 ln2 < |x| <= 1.5 ln2
    let k_far = (s(INV_LN2) * xv + signed_half(xv)).trunc();
    let one = V::and(neg, i(1));
    let k_near = V::sub_i(i(1), V::add_i(one, one));
    let k = V::or(V::and(far, k_far), V::and(near, k_near));
    let reduced = V::or(far, near);
    let kf = V::to_float(k);
    let hi_r = xv - kf * s(LN2_HI);
    let lo_r = kf * s(LN2_LO);
    let hi = V::pick(reduced, hi_r, xv);
    let lo = V::pick(reduced, lo_r, s(0.0));
    let r = V::pick(reduced, hi_r - lo_r, xv);
    // r is now in the primary range
    let rr = r * r;
    let c = r - rr * (s(P1) + rr * s(P2));
    let q = (r * c) / (s(2.0) - c);
    let y = s(1.0) + ((q - lo) + hi);
    // scalbnf(y, k) is one multiply by 2^k for these k (2^0 = 1 leaves y as it is)
    let scaled = y * pow2::<V>(k);
    let v = V::pick(tiny, s(1.0) + xv, scaled);
    patch(v, x, big, libm::expf)
}

/// `libm::expm1f` of each lane.
#[inline(always)]
unsafe fn expm1f<V: Lanes>(x: [f32; 8]) -> [f32; 8] {
    // SAFETY: the caller's.
    let (v, fallback) = unsafe { expm1f_core(V::load(x)) };
    patch(v, x, fallback, libm::expm1f)
}

/// expm1f without the fallback: the lanes it leaves to the scalar code are
/// set in the returned mask (NaN and x > 80).
#[inline(always)]
unsafe fn expm1f_core<V: Lanes>(xv: V) -> (V, V::I) {
    let s = V::splat;
    let i = V::splati;
    let bits = xv.bits();
    let hx = V::and(bits, i(0x7fff_ffff));
    let neg = V::sign_mask(bits);
    let pos = V::xor(neg, i(-1));
    let nan = V::gt(hx, i(0x7f80_0000));
    let fallback = V::or(nan, V::and(pos, V::gt(hx, i(0x42a0_0000))));
    // x <= -27 ln2: -1
    let minus_one = V::and(neg, V::gt(hx, i(0x4195_b843)));
    // |x| < 2^-25: x
    let tiny = V::gt(i(0x3300_0000), hx);
    // argument reduction
    let reduced = V::gt(hx, i(0x3eb1_7218)); // |x| > 0.5 ln2
    let near = V::and(reduced, V::gt(i(0x3f85_1592), hx)); // and < 1.5 ln2
    let k_far = (s(INV_LN2) * xv + signed_half(xv)).trunc();
    let k_near = V::or(neg, i(1)); // -1 or 1
    let k = V::and(reduced, V::pick_i(near, k_near, k_far));
    // k = +-1 gives the same hi and lo as the near branch's x -+ LN2_HI, +-LN2_LO
    let t = V::to_float(k);
    let hi = xv - t * s(M_LN2_HI);
    let lo = t * s(M_LN2_LO);
    let xr_red = hi - lo;
    let c_red = (hi - xr_red) - lo;
    let r = V::pick(reduced, xr_red, xv);
    let c = V::pick(reduced, c_red, s(0.0));
    // primary range
    let hfx = s(0.5) * r;
    let hxs = r * hfx;
    let r1 = s(1.0) + hxs * (s(Q1) + hxs * s(Q2));
    let tt = s(3.0) - r1 * hfx;
    let e0 = hxs * ((r1 - tt) / (s(6.0) - r * tt));
    // k == 0
    let v_k0 = r - (r * e0 - hxs);
    let e = (r * (e0 - c) - c) - hxs;
    // k == -1
    let v_km1 = s(0.5) * (r - e) - s(0.5);
    // k == 1
    let v_k1_lo = s(-2.0) * (e - (r + s(0.5)));
    let v_k1_hi = s(1.0) + s(2.0) * (r - e);
    let v_k1 = V::pick(V::lt(r, s(-0.25)), v_k1_lo, v_k1_hi);
    // other k: 2^k and 2^-k (k <= 116 here, so both are normal for 2 <= k < 23)
    let twopk = pow2::<V>(k);
    let v_kneg = ((r - e) + s(1.0)) * twopk - s(1.0);
    let uf = pow2::<V>(V::sub_i(i(0), k));
    let v_k22 = ((r - e) + (s(1.0) - uf)) * twopk;
    let v_k56 = ((r - (e + uf)) + s(1.0)) * twopk;
    // k > 56 (57..=116): as k <= -2
    let is = |n: i32| V::eq(k, i(n));
    let k_le_m2 = V::gt(i(-1), k);
    let k_gt_56 = V::gt(k, i(56));
    let k_lt_23 = V::gt(i(23), k);
    let mut v = v_k56;
    v = V::pick(k_lt_23, v_k22, v);
    v = V::pick(V::or(k_le_m2, k_gt_56), v_kneg, v);
    v = V::pick(is(1), v_k1, v);
    v = V::pick(is(-1), v_km1, v);
    v = V::pick(is(0), v_k0, v);
    v = V::pick(tiny, xv, v);
    v = V::pick(minus_one, s(-1.0), v);
    (v, fallback)
}

/// `libm::tanhf` of each lane.
#[inline(always)]
unsafe fn tanhf<V: Lanes>(x: [f32; 8]) -> [f32; 8] {
    let s = V::splat;
    let i = V::splati;
    let xv = V::load(x);
    let bits = xv.bits();
    let w = V::and(bits, i(0x7fff_ffff));
    let sign = V::and(bits, i(i32::MIN));
    let ax = V::from_bits(w);
    let nan = V::gt(w, i(0x7f80_0000));
    let over10 = V::gt(w, i(0x4120_0000)); // |x| > 10 (inf too): 1 + 0/x = 1
    let upper = V::gt(w, i(0x3f0c_9f54)); // |x| > log(3)/2
    let middle = V::gt(w, i(0x3e82_c578)); // |x| > log(5/3)/2
    let normal = V::gt(w, i(0x007f_ffff)); // |x| >= 2^-126
    // one expm1f per lane: of 2|x| above log(5/3)/2, of -2|x| below
    let arg = V::pick(middle, s(2.0) * ax, s(-2.0) * ax);
    // SAFETY: the caller's.
    let (t, em_fallback) = unsafe { expm1f_core(arg) };
    let t2 = t + s(2.0);
    // One division for the three branches: 2/(t+2) above, t/(t+2)
    // below; (-t)/(t+2) is exactly -(t/(t+2)) (negation is exact).
    let q = V::pick(upper, s(2.0), t) / t2;
    let v_upper = s(1.0) - q;
    let v_middle = q;
    let v_lower = V::from_bits(V::xor(q.bits(), i(i32::MIN)));
    let mut v = ax; // subnormal or zero: |x|
    v = V::pick(normal, v_lower, v);
    v = V::pick(middle, v_middle, v);
    v = V::pick(upper, v_upper, v);
    v = V::pick(over10, s(1.0), v);
    v = V::from_bits(V::xor(v.bits(), sign));
    // expm1f's own fallback lanes are only reached through NaN here (2|x| <= 20)
    let fallback = V::or(nan, V::andnot(over10, em_fallback));
    patch(v, x, fallback, libm::tanhf)
}

/// The functions in 256-bit AVX2 registers.
#[cfg(target_arch = "x86_64")]
pub mod avx2 {
    use std::arch::x86_64::*;

    /// Eight lanes in one AVX register. Its operations run AVX2
    /// instructions: they are sound only on a CPU that has them, which the
    /// unsafe generic functions that use them require of their callers,
    /// the entry points below (`#[target_feature(enable = "avx2")]`, so
    /// that the operations are inlined as single instructions).
    #[derive(Clone, Copy)]
    pub(super) struct Avx(__m256);

    macro_rules! avx_op {
        ($trait:ident, $f:ident, $intrinsic:ident) => {
            impl core::ops::$trait for Avx {
                type Output = Avx;
                #[inline(always)]
                fn $f(self, b: Avx) -> Avx {
                    // SAFETY: the CPU has AVX (see `Avx`).
                    Avx(unsafe { $intrinsic(self.0, b.0) })
                }
            }
        };
    }
    avx_op!(Add, add, _mm256_add_ps);
    avx_op!(Sub, sub, _mm256_sub_ps);
    avx_op!(Mul, mul, _mm256_mul_ps);
    avx_op!(Div, div, _mm256_div_ps);

    // SAFETY (every block below): the CPU has AVX2 (see `Avx`); the loads
    // and stores touch 8 f32 arrays.
    impl super::Lanes for Avx {
        type I = __m256i;
        #[inline(always)]
        fn load(x: [f32; 8]) -> Self {
            Avx(unsafe { _mm256_loadu_ps(x.as_ptr()) })
        }
        #[inline(always)]
        fn store(self) -> [f32; 8] {
            let mut out = [0.0f32; 8];
            unsafe { _mm256_storeu_ps(out.as_mut_ptr(), self.0) };
            out
        }
        #[inline(always)]
        fn splat(x: f32) -> Self {
            Avx(unsafe { _mm256_set1_ps(x) })
        }
        #[inline(always)]
        fn splati(x: i32) -> __m256i {
            unsafe { _mm256_set1_epi32(x) }
        }
        #[inline(always)]
        fn bits(self) -> __m256i {
            unsafe { _mm256_castps_si256(self.0) }
        }
        #[inline(always)]
        fn from_bits(i: __m256i) -> Self {
            Avx(unsafe { _mm256_castsi256_ps(i) })
        }
        #[inline(always)]
        fn and(a: __m256i, b: __m256i) -> __m256i {
            unsafe { _mm256_and_si256(a, b) }
        }
        #[inline(always)]
        fn or(a: __m256i, b: __m256i) -> __m256i {
            unsafe { _mm256_or_si256(a, b) }
        }
        #[inline(always)]
        fn xor(a: __m256i, b: __m256i) -> __m256i {
            unsafe { _mm256_xor_si256(a, b) }
        }
        #[inline(always)]
        fn andnot(a: __m256i, b: __m256i) -> __m256i {
            unsafe { _mm256_andnot_si256(a, b) }
        }
        #[inline(always)]
        fn add_i(a: __m256i, b: __m256i) -> __m256i {
            unsafe { _mm256_add_epi32(a, b) }
        }
        #[inline(always)]
        fn sub_i(a: __m256i, b: __m256i) -> __m256i {
            unsafe { _mm256_sub_epi32(a, b) }
        }
        #[inline(always)]
        fn gt(a: __m256i, b: __m256i) -> __m256i {
            unsafe { _mm256_cmpgt_epi32(a, b) }
        }
        #[inline(always)]
        fn eq(a: __m256i, b: __m256i) -> __m256i {
            unsafe { _mm256_cmpeq_epi32(a, b) }
        }
        #[inline(always)]
        fn lt(a: Self, b: Self) -> __m256i {
            unsafe { _mm256_castps_si256(_mm256_cmp_ps::<_CMP_LT_OQ>(a.0, b.0)) }
        }
        #[inline(always)]
        fn sign_mask(a: __m256i) -> __m256i {
            unsafe { _mm256_srai_epi32::<31>(a) }
        }
        #[inline(always)]
        fn shl23(a: __m256i) -> __m256i {
            unsafe { _mm256_slli_epi32::<23>(a) }
        }
        #[inline(always)]
        fn trunc(self) -> __m256i {
            unsafe { _mm256_cvttps_epi32(self.0) }
        }
        #[inline(always)]
        fn to_float(i: __m256i) -> Self {
            Avx(unsafe { _mm256_cvtepi32_ps(i) })
        }
        #[inline(always)]
        fn pick(mask: __m256i, a: Self, b: Self) -> Self {
            Avx(unsafe { _mm256_blendv_ps(b.0, a.0, _mm256_castsi256_ps(mask)) })
        }
        #[inline(always)]
        fn pick_i(mask: __m256i, a: __m256i, b: __m256i) -> __m256i {
            unsafe { _mm256_blendv_epi8(b, a, mask) }
        }
        #[inline(always)]
        fn lane_bits(mask: __m256i) -> u32 {
            unsafe { _mm256_movemask_ps(_mm256_castsi256_ps(mask)) as u32 }
        }
    }

    /// `libm::expf` of each lane.
    ///
    /// # Safety
    /// The CPU must have AVX2.
    #[target_feature(enable = "avx2")]
    pub unsafe fn expf8(x: [f32; 8]) -> [f32; 8] {
        // SAFETY: the caller's: the CPU has AVX2.
        unsafe { super::expf::<Avx>(x) }
    }

    /// `libm::expm1f` of each lane.
    ///
    /// # Safety
    /// The CPU must have AVX2.
    #[target_feature(enable = "avx2")]
    pub unsafe fn expm1f8(x: [f32; 8]) -> [f32; 8] {
        // SAFETY: the caller's: the CPU has AVX2.
        unsafe { super::expm1f::<Avx>(x) }
    }

    /// `libm::tanhf` of each lane.
    ///
    /// # Safety
    /// The CPU must have AVX2.
    #[target_feature(enable = "avx2")]
    pub unsafe fn tanhf8(x: [f32; 8]) -> [f32; 8] {
        // SAFETY: the caller's: the CPU has AVX2.
        unsafe { super::tanhf::<Avx>(x) }
    }
}

/// The functions in two 128-bit registers (the `wide` crate's `f32x8`:
/// SSE2 on x86-64, NEON on AArch64, arrays elsewhere), safe on any CPU.
pub mod wide {
    use ::wide::{bytemuck::cast, f32x8, i32x8};

    impl super::Lanes for f32x8 {
        type I = i32x8;
        #[inline(always)]
        fn load(x: [f32; 8]) -> Self {
            f32x8::new(x)
        }
        #[inline(always)]
        fn store(self) -> [f32; 8] {
            self.to_array()
        }
        #[inline(always)]
        fn splat(x: f32) -> Self {
            f32x8::splat(x)
        }
        #[inline(always)]
        fn splati(x: i32) -> i32x8 {
            i32x8::splat(x)
        }
        #[inline(always)]
        fn bits(self) -> i32x8 {
            cast(self)
        }
        #[inline(always)]
        fn from_bits(i: i32x8) -> Self {
            cast(i)
        }
        #[inline(always)]
        fn and(a: i32x8, b: i32x8) -> i32x8 {
            a & b
        }
        #[inline(always)]
        fn or(a: i32x8, b: i32x8) -> i32x8 {
            a | b
        }
        #[inline(always)]
        fn xor(a: i32x8, b: i32x8) -> i32x8 {
            a ^ b
        }
        #[inline(always)]
        fn andnot(a: i32x8, b: i32x8) -> i32x8 {
            !a & b
        }
        #[inline(always)]
        fn add_i(a: i32x8, b: i32x8) -> i32x8 {
            a + b
        }
        #[inline(always)]
        fn sub_i(a: i32x8, b: i32x8) -> i32x8 {
            a - b
        }
        #[inline(always)]
        fn gt(a: i32x8, b: i32x8) -> i32x8 {
            a.simd_gt(b)
        }
        #[inline(always)]
        fn eq(a: i32x8, b: i32x8) -> i32x8 {
            a.simd_eq(b)
        }
        #[inline(always)]
        fn lt(a: Self, b: Self) -> i32x8 {
            cast(a.simd_lt(b))
        }
        #[inline(always)]
        fn sign_mask(a: i32x8) -> i32x8 {
            a >> 31
        }
        #[inline(always)]
        fn shl23(a: i32x8) -> i32x8 {
            a << 23
        }
        #[inline(always)]
        fn trunc(self) -> i32x8 {
            self.fast_trunc_int()
        }
        #[inline(always)]
        fn to_float(i: i32x8) -> Self {
            i.round_float()
        }
        #[inline(always)]
        fn pick(mask: i32x8, a: Self, b: Self) -> Self {
            cast(mask.select(cast::<f32x8, i32x8>(a), cast(b)))
        }
        #[inline(always)]
        fn pick_i(mask: i32x8, a: i32x8, b: i32x8) -> i32x8 {
            mask.select(a, b)
        }
        #[inline(always)]
        fn lane_bits(mask: i32x8) -> u32 {
            mask.to_bitmask()
        }
    }

    /// `libm::expf` of each lane.
    #[inline]
    pub fn expf8(x: [f32; 8]) -> [f32; 8] {
        // SAFETY: wide's operations run on every CPU.
        unsafe { super::expf::<f32x8>(x) }
    }

    /// `libm::expm1f` of each lane.
    #[inline]
    pub fn expm1f8(x: [f32; 8]) -> [f32; 8] {
        // SAFETY: wide's operations run on every CPU.
        unsafe { super::expm1f::<f32x8>(x) }
    }

    /// `libm::tanhf` of each lane.
    #[inline]
    pub fn tanhf8(x: [f32; 8]) -> [f32; 8] {
        // SAFETY: wide's operations run on every CPU.
        unsafe { super::tanhf::<f32x8>(x) }
    }
}

#[cfg(test)]
mod tests {
    use rayon::prelude::*;

    /// The bit patterns where the transcriptions change branch (the
    /// constants they compare `|x|` with), and the specials' neighbours.
    const CUTS: [u32; 14] = [
        0x0000_0000,
        0x007f_ffff,
        0x3300_0000,
        0x3900_0001,
        0x3e82_c578,
        0x3eb1_7218,
        0x3f0c_9f54,
        0x3f85_1592,
        0x4120_0000,
        0x4195_b843,
        0x42a0_0000,
        0x42ae_ac4f,
        0x42b1_7218,
        0x7f80_0000,
    ];

    /// Every f32 bit pattern through `vector` and `scalar`: the same bits
    /// (NaN results only need to be NaN). Under an emulator (`.ci/run`
    /// runs these for AArch64 under `qemu-aarch64`),
    /// `CHARLM_EXHAUSTIVE_STRIDE=S` checks one block of 8 in S^2 instead,
    /// at an offset that moves with the upper 16 bits (so every sign,
    /// exponent and upper half is visited), and all inputs within 4096 of
    /// each of [`CUTS`], of either sign.
    fn exhaustive(
        name: &str,
        vector: impl Fn([f32; 8]) -> [f32; 8] + Sync,
        scalar: fn(f32) -> f32,
    ) {
        let stride = std::env::var("CHARLM_EXHAUSTIVE_STRIDE")
            .map(|s| {
                s.parse::<u32>()
                    .expect("CHARLM_EXHAUSTIVE_STRIDE: a number")
            })
            .unwrap_or(1)
            .max(1);
        let every = 8 * stride * stride;
        if stride > 1 {
            eprintln!(
                "{name}: one input in {} (CHARLM_EXHAUSTIVE_STRIDE={stride}), and around the branch cuts",
                stride * stride
            );
        }
        let shown = std::sync::atomic::AtomicU32::new(0);
        let check = |first: u32| {
            let x: [f32; 8] = std::array::from_fn(|i| f32::from_bits(first.wrapping_add(i as u32)));
            let mut bad = 0u64;
            for (g, x) in vector(x).iter().zip(x) {
                let want = scalar(x);
                if g.to_bits() != want.to_bits() && !(g.is_nan() && want.is_nan()) {
                    if shown.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < 3 {
                        eprintln!(
                            "{name}({x:e} = {:#010x}): {g:e} ({:#010x}), libm {want:e} ({:#010x})",
                            x.to_bits(),
                            g.to_bits(),
                            want.to_bits()
                        );
                    }
                    bad += 1;
                }
            }
            bad
        };
        let grid: u64 = (0u32..1 << 16)
            .into_par_iter()
            .map(|hi| {
                let offset = 8 * (hi % (stride * stride));
                (offset..1 << 16)
                    .step_by(every as usize)
                    .map(|lo| check(hi << 16 | lo))
                    .sum::<u64>()
            })
            .sum();
        let cuts: u64 = if stride > 1 {
            CUTS.iter()
                .flat_map(|&c| [c, c | 1 << 31])
                .flat_map(|c| (0..1024u32).map(move |i| c.wrapping_sub(4096).wrapping_add(8 * i)))
                .map(check)
                .sum()
        } else {
            0
        };
        let bad = grid + cuts;
        assert_eq!(bad, 0, "{name}: {bad} inputs differ from libm");
    }

    /// The AVX2 function `f` through [`exhaustive`], where the CPU has AVX2.
    #[cfg(target_arch = "x86_64")]
    fn exhaustive_avx2(name: &str, f: unsafe fn([f32; 8]) -> [f32; 8], scalar: fn(f32) -> f32) {
        if !is_x86_feature_detected!("avx2") {
            // Loud, and a failure on CI (an x86-64 machine with AVX2).
            crate::host_kernel::tests::avx2_missing();
            eprintln!("*** SKIPPED: {name} not checked");
            return;
        }
        // SAFETY: AVX2 checked above.
        exhaustive(name, |x| unsafe { f(x) }, scalar);
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn avx2_expf8_is_libm_for_every_input() {
        exhaustive_avx2("avx2 expf8", super::avx2::expf8, libm::expf);
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn avx2_expm1f8_is_libm_for_every_input() {
        exhaustive_avx2("avx2 expm1f8", super::avx2::expm1f8, libm::expm1f);
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn avx2_tanhf8_is_libm_for_every_input() {
        exhaustive_avx2("avx2 tanhf8", super::avx2::tanhf8, libm::tanhf);
    }

    #[test]
    fn wide_expf8_is_libm_for_every_input() {
        exhaustive("wide expf8", super::wide::expf8, libm::expf);
    }

    #[test]
    fn wide_expm1f8_is_libm_for_every_input() {
        exhaustive("wide expm1f8", super::wide::expm1f8, libm::expm1f);
    }

    #[test]
    fn wide_tanhf8_is_libm_for_every_input() {
        exhaustive("wide tanhf8", super::wide::tanhf8, libm::tanhf);
    }
}
