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
