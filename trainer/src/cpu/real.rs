//! The float type the CPU backend computes in: `f32` for training, `f64` for
//! the finite-difference gradient check (same code, so the check proves the
//! code that trains).

use std::fmt::Debug;
use std::ops::{Add, AddAssign, Div, Mul, MulAssign, Neg, Sub, SubAssign};

/// `f32` or `f64`.
pub trait Real:
    Copy
    + Default
    + Debug
    + PartialOrd
    + Send
    + Sync
    + 'static
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
{
    /// 0.
    const ZERO: Self;
    /// 1.
    const ONE: Self;
    /// Converts (rounding to nearest).
    fn from_f64(x: f64) -> Self;
    /// Converts (exactly).
    fn to_f64(self) -> f64;
    /// `e^x`.
    fn exp(self) -> Self;
    /// Natural logarithm.
    fn ln(self) -> Self;
    /// Hyperbolic tangent.
    fn tanh(self) -> Self;
    /// Larger of two (NaN-ignoring).
    fn max(self, other: Self) -> Self;
    /// `C = A B + beta C` through `matrixmultiply` (strides in elements).
    ///
    /// # Safety
    /// The pointers and strides must describe valid `m x k`, `k x n` and
    /// `m x n` matrices, the last not aliasing the others.
    #[allow(clippy::too_many_arguments)]
    unsafe fn gemm(
        m: usize,
        k: usize,
        n: usize,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        beta: Self,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    );

    /// `1 / (1 + e^-x)`.
    #[inline(always)]
    fn sigmoid(self) -> Self {
        Self::ONE / (Self::ONE + (-self).exp())
    }

    /// `c (+)= a b` for a few rows (`a` `m x q` row-major, `b` packed):
    /// the recurrent step's product. Each element is a sequential sum over `k`.
    fn small_gemm(
        m: usize,
        a: &[Self],
        b: &super::kernel::Packed<Self>,
        c: &mut [Self],
        accumulate: bool,
    ) {
        let (q, p, nr) = (b.q, b.p, super::kernel::NR);
        for i in 0..m {
            for n in 0..p {
                let panel = &b.data[(n / nr) * q * nr..];
                let mut acc = Self::ZERO;
                for k in 0..q {
                    acc += a[i * q + k] * panel[k * nr + n % nr];
                }
                if accumulate {
                    c[i * p + n] += acc
                } else {
                    c[i * p + n] = acc
                }
            }
        }
    }

    /// One LSTM step (see [`super::lstm_forward`]).
    #[allow(clippy::too_many_arguments)]
    fn lstm_forward(
        h: usize,
        xg: &[Self],
        hg: &[Self],
        b_hh: &[Self],
        gates: &mut [Self],
        cprev: &[Self],
        cout: &mut [Self],
        tanh_c: &mut [Self],
        hout: &mut [Self],
    ) {
        super::lstm_forward(h, xg, hg, b_hh, gates, cprev, cout, tanh_c, hout)
    }
    /// Backward of one LSTM step (see [`super::lstm_backward`]).
    fn lstm_backward(
        h: usize,
        dh: &[Self],
        dc: &mut [Self],
        gates: &[Self],
        cprev: &[Self],
        tanh_c: &[Self],
        dg: &mut [Self],
    ) {
        super::lstm_backward(h, dh, dc, gates, cprev, tanh_c, dg)
    }
    /// One GRU step (see [`super::gru_forward`]).
    #[allow(clippy::too_many_arguments)]
    fn gru_forward(
        h: usize,
        xg: &[Self],
        hg: &[Self],
        b_hh: &[Self],
        gates: &mut [Self],
        hprev: &[Self],
        hn: &mut [Self],
        hout: &mut [Self],
    ) {
        super::gru_forward(h, xg, hg, b_hh, gates, hprev, hn, hout)
    }
    /// Backward of one GRU step (see [`super::gru_backward`]).
    #[allow(clippy::too_many_arguments)]
    fn gru_backward(
        h: usize,
        dh: &[Self],
        gates: &[Self],
        hprev: &[Self],
        hn: &[Self],
        dxg: &mut [Self],
        dhg: &mut [Self],
        dh_prev: &mut [Self],
    ) {
        super::gru_backward(h, dh, gates, hprev, hn, dxg, dhg, dh_prev)
    }
}

impl Real for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    #[inline(always)]
    fn from_f64(x: f64) -> Self {
        x as f32
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self as f64
    }
    /// A vectorisable approximation (about 2 ulp), see [`super::kernel::exp_f32`].
    #[inline(always)]
    fn exp(self) -> Self {
        super::kernel::exp_f32(self)
    }
    #[inline(always)]
    fn ln(self) -> Self {
        f32::ln(self)
    }
    /// `(1 - e^-2|x|) / (1 + e^-2|x|)` with the sign of `x`, and an odd
    /// polynomial below 0.1 where that quotient would cancel; branch-free so
    /// loops vectorise. Error below 2e-7 absolute.
    #[inline(always)]
    fn tanh(self) -> Self {
        let a = self.abs();
        let e = super::kernel::exp_f32(-2.0 * a);
        let big = ((1.0 - e) / (1.0 + e)).copysign(self);
        let x2 = self * self;
        let small = self * (1.0 + x2 * (-1.0 / 3.0 + x2 * (2.0 / 15.0 - x2 * (17.0 / 315.0))));
        if a < 0.1 { small } else { big }
    }
    #[inline(always)]
    fn max(self, other: Self) -> Self {
        f32::max(self, other)
    }
    unsafe fn gemm(
        m: usize,
        k: usize,
        n: usize,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        beta: Self,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    ) {
        // SAFETY: forwarded from the caller's contract.
        unsafe { matrixmultiply::sgemm(m, k, n, 1.0, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc) }
    }
    fn small_gemm(
        m: usize,
        a: &[Self],
        b: &super::kernel::Packed<Self>,
        c: &mut [Self],
        accumulate: bool,
    ) {
        super::kernel::small_gemm(m, a, b, c, accumulate)
    }

    // The cells compiled again with AVX2 enabled where the CPU has it: the
    // same IEEE operations in the same order (Rust never fuses a multiply
    // and an add on its own), only eight lanes wide instead of four.
    #[allow(clippy::too_many_arguments)]
    fn lstm_forward(
        h: usize,
        xg: &[Self],
        hg: &[Self],
        b_hh: &[Self],
        gates: &mut [Self],
        cprev: &[Self],
        cout: &mut [Self],
        tanh_c: &mut [Self],
        hout: &mut [Self],
    ) {
        #[cfg(target_arch = "x86_64")]
        if super::kernel::has_avx2_fma() {
            // SAFETY: the CPU has AVX2 and FMA.
            return unsafe {
                wide::lstm_forward(h, xg, hg, b_hh, gates, cprev, cout, tanh_c, hout)
            };
        }
        super::lstm_forward(h, xg, hg, b_hh, gates, cprev, cout, tanh_c, hout)
    }
    fn lstm_backward(
        h: usize,
        dh: &[Self],
        dc: &mut [Self],
        gates: &[Self],
        cprev: &[Self],
        tanh_c: &[Self],
        dg: &mut [Self],
    ) {
        #[cfg(target_arch = "x86_64")]
        if super::kernel::has_avx2_fma() {
            // SAFETY: the CPU has AVX2 and FMA.
            return unsafe { wide::lstm_backward(h, dh, dc, gates, cprev, tanh_c, dg) };
        }
        super::lstm_backward(h, dh, dc, gates, cprev, tanh_c, dg)
    }
    #[allow(clippy::too_many_arguments)]
    fn gru_forward(
        h: usize,
        xg: &[Self],
        hg: &[Self],
        b_hh: &[Self],
        gates: &mut [Self],
        hprev: &[Self],
        hn: &mut [Self],
        hout: &mut [Self],
    ) {
        #[cfg(target_arch = "x86_64")]
        if super::kernel::has_avx2_fma() {
            // SAFETY: the CPU has AVX2 and FMA.
            return unsafe { wide::gru_forward(h, xg, hg, b_hh, gates, hprev, hn, hout) };
        }
        super::gru_forward(h, xg, hg, b_hh, gates, hprev, hn, hout)
    }
    #[allow(clippy::too_many_arguments)]
    fn gru_backward(
        h: usize,
        dh: &[Self],
        gates: &[Self],
        hprev: &[Self],
        hn: &[Self],
        dxg: &mut [Self],
        dhg: &mut [Self],
        dh_prev: &mut [Self],
    ) {
        #[cfg(target_arch = "x86_64")]
        if super::kernel::has_avx2_fma() {
            // SAFETY: the CPU has AVX2 and FMA.
            return unsafe { wide::gru_backward(h, dh, gates, hprev, hn, dxg, dhg, dh_prev) };
        }
        super::gru_backward(h, dh, gates, hprev, hn, dxg, dhg, dh_prev)
    }
}

impl Real for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    #[inline(always)]
    fn from_f64(x: f64) -> Self {
        x
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn exp(self) -> Self {
        f64::exp(self)
    }
    #[inline(always)]
    fn ln(self) -> Self {
        f64::ln(self)
    }
    #[inline(always)]
    fn tanh(self) -> Self {
        f64::tanh(self)
    }
    #[inline(always)]
    fn max(self, other: Self) -> Self {
        f64::max(self, other)
    }
    unsafe fn gemm(
        m: usize,
        k: usize,
        n: usize,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        beta: Self,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    ) {
        // SAFETY: forwarded from the caller's contract.
        unsafe { matrixmultiply::dgemm(m, k, n, 1.0, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc) }
    }
}

/// The f32 cells compiled with AVX2 and FMA enabled.
#[cfg(target_arch = "x86_64")]
mod wide {
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn lstm_forward(
        h: usize,
        xg: &[f32],
        hg: &[f32],
        b_hh: &[f32],
        gates: &mut [f32],
        cprev: &[f32],
        cout: &mut [f32],
        tanh_c: &mut [f32],
        hout: &mut [f32],
    ) {
        super::super::lstm_forward(h, xg, hg, b_hh, gates, cprev, cout, tanh_c, hout)
    }
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn lstm_backward(
        h: usize,
        dh: &[f32],
        dc: &mut [f32],
        gates: &[f32],
        cprev: &[f32],
        tanh_c: &[f32],
        dg: &mut [f32],
    ) {
        super::super::lstm_backward(h, dh, dc, gates, cprev, tanh_c, dg)
    }
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn gru_forward(
        h: usize,
        xg: &[f32],
        hg: &[f32],
        b_hh: &[f32],
        gates: &mut [f32],
        hprev: &[f32],
        hn: &mut [f32],
        hout: &mut [f32],
    ) {
        super::super::gru_forward(h, xg, hg, b_hh, gates, hprev, hn, hout)
    }
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn gru_backward(
        h: usize,
        dh: &[f32],
        gates: &[f32],
        hprev: &[f32],
        hn: &[f32],
        dxg: &mut [f32],
        dhg: &mut [f32],
        dh_prev: &mut [f32],
    ) {
        super::super::gru_backward(h, dh, gates, hprev, hn, dxg, dhg, dh_prev)
    }
}
