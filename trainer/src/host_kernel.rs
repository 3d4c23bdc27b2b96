//! The host's kernel: AVX2 with hardware f16 conversion (F16C) when the CPU
//! has them, checked at run time, else [`Wide`], 8 lanes in two 128-bit
//! registers (SSE2 on any x86-64, NEON on AArch64: Apple silicon, a
//! Raspberry Pi). Both follow the runtime's one documented order (element i
//! in lane i % 8, multiply then add, each rounded; the fixed reduction
//! tree), their `expf`/`tanhf` are libm's bit for bit (`crate::host_math`),
//! and i8 rows give the exact integer sums (`vpmovsxbw` + `vpmaddwd`, or
//! their 128-bit forms), so the text never depends on which one ran — tests
//! compare them with the runtime's portable kernel bit for bit.

use charlm_runtime::kernel::{Kernel, Portable};
use wide::{f32x8, i8x16, i16x16, i32x8};

/// The `Kernel` methods that are `R` rows of a kernel's `rows::<R>` (f16)
/// and `rows_q::<R>` (i8).
macro_rules! row_products {
    () => {
        #[inline]
        fn dot1(&self, row: &[u8], x: &[f32]) -> f32 {
            self.rows::<1>([row], x)[0]
        }

        #[inline]
        fn dot3(&self, rows: [&[u8]; 3], x: &[f32]) -> [f32; 3] {
            self.rows::<3>(rows, x)
        }

        #[inline]
        fn dot4(&self, rows: [&[u8]; 4], x: &[f32]) -> [f32; 4] {
            self.rows::<4>(rows, x)
        }

        #[inline]
        fn dot8(&self, rows: [&[u8]; 8], x: &[f32]) -> [f32; 8] {
            self.rows::<8>(rows, x)
        }

        #[inline]
        fn dotq1(&self, row: &[u8], xq: &[i16]) -> i32 {
            self.rows_q::<1>([row], xq)[0]
        }

        #[inline]
        fn dotq3(&self, rows: [&[u8]; 3], xq: &[i16]) -> [i32; 3] {
            self.rows_q::<3>(rows, xq)
        }

        #[inline]
        fn dotq4(&self, rows: [&[u8]; 4], xq: &[i16]) -> [i32; 4] {
            self.rows_q::<4>(rows, xq)
        }

        #[inline]
        fn dotq8(&self, rows: [&[u8]; 8], xq: &[i16]) -> [i32; 8] {
            self.rows_q::<8>(rows, xq)
        }
    };
}

/// The fastest kernel this CPU supports.
#[derive(Clone, Copy, Debug)]
pub enum HostKernel {
    /// 8 lanes in two 128-bit registers (SSE2, NEON), any CPU.
    Wide(Wide),
    /// 8-wide AVX2 with F16C conversion (x86-64 since 2013).
    #[cfg(target_arch = "x86_64")]
    Avx2(Avx2),
}

impl HostKernel {
    /// Picks AVX2+F16C when the CPU has them, else [`Wide`].
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        if let Some(k) = Avx2::detect() {
            return HostKernel::Avx2(k);
        }
        HostKernel::Wide(Wide)
    }

    /// Name for logs and benchmarks.
    pub fn name(&self) -> &'static str {
        match self {
            HostKernel::Wide(k) => k.name(),
            #[cfg(target_arch = "x86_64")]
            HostKernel::Avx2(_) => "avx2+f16c",
        }
    }
}

impl Kernel for HostKernel {
    const LANE_ACTIVATIONS: bool = true;

    #[inline]
    fn dot1(&self, row: &[u8], x: &[f32]) -> f32 {
        match self {
            HostKernel::Wide(k) => k.dot1(row, x),
            #[cfg(target_arch = "x86_64")]
            HostKernel::Avx2(k) => k.dot1(row, x),
        }
    }

    #[inline]
    fn dot3(&self, rows: [&[u8]; 3], x: &[f32]) -> [f32; 3] {
        match self {
            HostKernel::Wide(k) => k.dot3(rows, x),
            #[cfg(target_arch = "x86_64")]
            HostKernel::Avx2(k) => k.dot3(rows, x),
        }
    }

    #[inline]
    fn dot4(&self, rows: [&[u8]; 4], x: &[f32]) -> [f32; 4] {
        match self {
            HostKernel::Wide(k) => k.dot4(rows, x),
            #[cfg(target_arch = "x86_64")]
            HostKernel::Avx2(k) => k.dot4(rows, x),
        }
    }

    #[inline]
    fn dot8(&self, rows: [&[u8]; 8], x: &[f32]) -> [f32; 8] {
        match self {
            HostKernel::Wide(k) => k.dot8(rows, x),
            #[cfg(target_arch = "x86_64")]
            HostKernel::Avx2(k) => k.dot8(rows, x),
        }
    }

    #[inline]
    fn dot8_block(&self, block: &[u8], x: &[f32]) -> [f32; 8] {
        match self {
            HostKernel::Wide(k) => k.dot8_block(block, x),
            #[cfg(target_arch = "x86_64")]
            HostKernel::Avx2(k) => k.dot8_block(block, x),
        }
    }

    #[inline]
    fn halves8(&self, v: &[u8], start: usize) -> [f32; 8] {
        match self {
            HostKernel::Wide(k) => k.halves8(v, start),
            #[cfg(target_arch = "x86_64")]
            HostKernel::Avx2(k) => k.halves8(v, start),
        }
    }

    #[inline]
    fn dotq1(&self, row: &[u8], xq: &[i16]) -> i32 {
        match self {
            HostKernel::Wide(k) => k.dotq1(row, xq),
            #[cfg(target_arch = "x86_64")]
            HostKernel::Avx2(k) => k.dotq1(row, xq),
        }
    }

    #[inline]
    fn dotq3(&self, rows: [&[u8]; 3], xq: &[i16]) -> [i32; 3] {
        match self {
            HostKernel::Wide(k) => k.dotq3(rows, xq),
            #[cfg(target_arch = "x86_64")]
            HostKernel::Avx2(k) => k.dotq3(rows, xq),
        }
    }

    #[inline]
    fn dotq4(&self, rows: [&[u8]; 4], xq: &[i16]) -> [i32; 4] {
        match self {
            HostKernel::Wide(k) => k.dotq4(rows, xq),
            #[cfg(target_arch = "x86_64")]
            HostKernel::Avx2(k) => k.dotq4(rows, xq),
        }
    }

    #[inline]
    fn dotq8(&self, rows: [&[u8]; 8], xq: &[i16]) -> [i32; 8] {
        match self {
            HostKernel::Wide(k) => k.dotq8(rows, xq),
            #[cfg(target_arch = "x86_64")]
            HostKernel::Avx2(k) => k.dotq8(rows, xq),
        }
    }

    #[inline]
    fn expf8(&self, x: [f32; 8]) -> [f32; 8] {
        match self {
            HostKernel::Wide(k) => k.expf8(x),
            #[cfg(target_arch = "x86_64")]
            HostKernel::Avx2(k) => k.expf8(x),
        }
    }

    #[inline]
    fn tanhf8(&self, x: [f32; 8]) -> [f32; 8] {
        match self {
            HostKernel::Wide(k) => k.tanhf8(x),
            #[cfg(target_arch = "x86_64")]
            HostKernel::Avx2(k) => k.tanhf8(x),
        }
    }

    #[inline(always)]
    fn scope<R>(&self, step: impl FnOnce() -> R) -> R {
        match self {
            HostKernel::Wide(_) => step(),
            // SAFETY: an `Avx2` exists only where the CPU has AVX2 and F16C.
            #[cfg(target_arch = "x86_64")]
            HostKernel::Avx2(_) => unsafe { in_avx2(step) },
        }
    }
}

/// Calls `step`, the runtime's whole time step, from code compiled for AVX2
/// and F16C: the step is inlined down to the cells (see
/// `charlm_runtime::kernel::Kernel::scope`), so the activations' lanes, the
/// cell updates and the bookkeeping between the dot products are compiled
/// for AVX2 too (about 6-8% more characters per second at LSTM hidden 128,
/// docs/BENCHMARKS.md). No FMA is enabled, and the compiler never fuses a
/// multiply and an add on its own: the bits stay the portable kernel's.
///
/// # Safety
/// The CPU must support AVX2 and F16C.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,f16c")]
#[inline]
unsafe fn in_avx2<R>(step: impl FnOnce() -> R) -> R {
    step()
}

/// Proof that the CPU has AVX2 and F16C: only [`Avx2::detect`] makes one.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy, Debug)]
pub struct Avx2 {
    _checked: (),
}

#[cfg(target_arch = "x86_64")]
impl Avx2 {
    /// `Some` when the CPU supports AVX2 and F16C.
    pub fn detect() -> Option<Self> {
        (is_x86_feature_detected!("avx2") && is_x86_feature_detected!("f16c"))
            .then_some(Avx2 { _checked: () })
    }

    /// `R` dot products of f16 rows.
    #[inline]
    fn rows<const R: usize>(&self, rows: [&[u8]; R], x: &[f32]) -> [f32; R] {
        if rows.iter().any(|r| r.len() < 2 * x.len()) {
            // Only a damaged model could get here; the portable kernel copes.
            let mut out = [0.0; R];
            for (o, r) in out.iter_mut().zip(rows) {
                *o = Portable.dot1(r, x);
            }
            return out;
        }
        // Eight rows over whole chunks: reduced together in registers.
        if let (true, Ok(eight)) = (x.len().is_multiple_of(8), <[&[u8]; 8]>::try_from(&rows[..])) {
            // SAFETY: as below; x.len() is a multiple of 8.
            let out = unsafe { avx2_rows8(eight.map(<[u8]>::as_ptr), x) };
            return std::array::from_fn(|i| out[i]);
        }
        // SAFETY: `self` exists only if the CPU has AVX2 and F16C (see
        // `detect`), and every row holds at least 2 * x.len() bytes.
        unsafe { avx2_rows::<R>(rows, x) }
    }

    /// `R` integer dot products of i8 rows with Q14 activations.
    #[inline]
    fn rows_q<const R: usize>(&self, rows: [&[u8]; R], xq: &[i16]) -> [i32; R] {
        if rows.iter().any(|r| r.len() < xq.len()) {
            // Only a damaged model could get here; the portable kernel copes.
            return rows.map(|r| Portable.dotq1(r, xq));
        }
        // SAFETY: the CPU has AVX2 (see `detect`), and every row holds at
        // least xq.len() bytes.
        unsafe { avx2_rows_q::<R>(rows, xq) }
    }

    /// [`Kernel::dot8_block`].
    #[inline]
    fn block8(&self, block: &[u8], x: &[f32]) -> [f32; 8] {
        let row = 2 * x.len();
        if !x.len().is_multiple_of(8) || block.len() < 8 * row {
            return self.rows::<8>(charlm_runtime::kernel::split8(block, row), x);
        }
        let p = block.as_ptr();
        // SAFETY: the CPU has AVX2 and F16C (see `detect`); x.len() is a
        // multiple of 8 and row l starts at byte l * row of a block that
        // holds 8 rows of 2 * x.len() bytes.
        unsafe { avx2_rows8(std::array::from_fn(|l| p.add(l * row)), x) }
    }
}

#[cfg(target_arch = "x86_64")]
impl Kernel for Avx2 {
    const LANE_ACTIVATIONS: bool = true;

    row_products!();

    #[inline]
    fn dot8_block(&self, block: &[u8], x: &[f32]) -> [f32; 8] {
        self.block8(block, x)
    }

    #[inline]
    fn halves8(&self, v: &[u8], start: usize) -> [f32; 8] {
        match start
            .checked_mul(2)
            .and_then(|b| v.get(b..)?.first_chunk::<16>())
        {
            // SAFETY: the CPU has F16C (see `detect`).
            Some(b) => unsafe { f16c_halves8(b) },
            None => Portable.halves8(v, start),
        }
    }

    #[inline]
    fn expf8(&self, x: [f32; 8]) -> [f32; 8] {
        // SAFETY: `Avx2` exists only where the CPU has AVX2 (see `detect`).
        unsafe { crate::host_math::avx2::expf8(x) }
    }

    #[inline]
    fn tanhf8(&self, x: [f32; 8]) -> [f32; 8] {
        // SAFETY: as `expf8`.
        unsafe { crate::host_math::avx2::tanhf8(x) }
    }
}

/// Eight halves at `p` as f32 (F16C).
///
/// # Safety
/// The CPU must support AVX2 and F16C, and `p` must have 16 readable bytes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,f16c")]
#[inline]
unsafe fn load8(p: *const u8) -> std::arch::x86_64::__m256 {
    use std::arch::x86_64::*;
    // SAFETY: the caller's.
    unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p.cast())) }
}

/// `R` dot products of f16 rows, 8 lanes in one AVX register per row.
///
/// # Safety
/// The CPU must support AVX2 and F16C, and every row must hold at least
/// `2 * x.len()` bytes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,f16c")]
unsafe fn avx2_rows<const R: usize>(rows: [&[u8]; R], x: &[f32]) -> [f32; R] {
    use std::arch::x86_64::*;
    let (xc, xt) = x.as_chunks::<8>();
    let mut acc = [_mm256_setzero_ps(); R];
    for (k, xk) in xc.iter().enumerate() {
        // SAFETY: xk is 8 floats; each row has 16 bytes at offset 16 * k
        // because k < x.len() / 8 and the row holds 2 * x.len() bytes.
        let xv = unsafe { _mm256_loadu_ps(xk.as_ptr()) };
        for (a, row) in acc.iter_mut().zip(rows) {
            let w = unsafe { load8(row.as_ptr().add(16 * k)) };
            // Multiply, round, add, round: exactly the portable order.
            *a = _mm256_add_ps(*a, _mm256_mul_ps(w, xv));
        }
    }
    let mut out = [0.0f32; R];
    for ((o, a), row) in out.iter_mut().zip(acc).zip(rows) {
        let mut lanes = [0.0f32; 8];
        // SAFETY: lanes is 8 floats.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), a) };
        let tail = row.get(16 * xc.len()..).unwrap_or(&[]);
        for ((l, w), x) in lanes.iter_mut().zip(tail.as_chunks::<2>().0).zip(xt) {
            *l += charlm_runtime::kernel::f16_to_f32(*w) * x;
        }
        *o = charlm_runtime::kernel::reduce(lanes);
    }
    out
}

/// `R` integer dot products of i8 rows with i16 activations, 16 elements
/// at a time: `vpmovsxbw` widens the weights, `vpmaddwd` multiplies and
/// adds neighbouring pairs into eight i32 lanes. The sums wrap as the
/// portable `wrapping_add` does, and integer addition has no order: the
/// same i32 as [`Portable`].
///
/// # Safety
/// The CPU must support AVX2, and every row must hold at least `xq.len()`
/// bytes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn avx2_rows_q<const R: usize>(rows: [&[u8]; R], xq: &[i16]) -> [i32; R] {
    use std::arch::x86_64::*;
    let (xc, xt) = xq.as_chunks::<16>();
    let mut acc = [_mm256_setzero_si256(); R];
    for (k, xk) in xc.iter().enumerate() {
        // SAFETY: xk is 16 i16; each row has 16 bytes at offset 16 * k
        // because k < xq.len() / 16 and the row holds xq.len() bytes.
        let xv = unsafe { _mm256_loadu_si256(xk.as_ptr().cast()) };
        for (a, row) in acc.iter_mut().zip(rows) {
            let w = unsafe { _mm_loadu_si128(row.as_ptr().add(16 * k).cast()) };
            *a = _mm256_add_epi32(*a, _mm256_madd_epi16(_mm256_cvtepi8_epi16(w), xv));
        }
    }
    // Each row's eight lanes summed: for eight rows, three rounds of
    // `vphaddd` and one cross-half add give all eight sums in one register.
    let mut out = [0i32; R];
    if let Ok(a) = <[__m256i; 8]>::try_from(&acc[..]) {
        let h = |p, q| _mm256_hadd_epi32(p, q);
        // [r0 r1 r2 r3 | r0 r1 r2 r3] halves of rows 0-3, then of rows 4-7
        let lo = h(h(a[0], a[1]), h(a[2], a[3]));
        let hi = h(h(a[4], a[5]), h(a[6], a[7]));
        let sums = _mm256_add_epi32(
            _mm256_permute2x128_si256::<0x20>(lo, hi),
            _mm256_permute2x128_si256::<0x31>(lo, hi),
        );
        // SAFETY: out is 8 i32 when R is 8.
        unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), sums) };
    } else {
        for (o, a) in out.iter_mut().zip(acc) {
            let mut lanes = [0i32; 8];
            // SAFETY: lanes is 8 i32.
            unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast(), a) };
            *o = lanes.iter().fold(0i32, |s, &l| s.wrapping_add(l));
        }
    }
    if !xt.is_empty() {
        for (o, row) in out.iter_mut().zip(rows) {
            let tail = row.get(16 * xc.len()..).unwrap_or(&[]);
            *o = tail.iter().zip(xt).fold(*o, |s, (&w, &x)| {
                s.wrapping_add(i32::from(w as i8) * i32::from(x))
            });
        }
    }
    out
}

/// Eight dot products over whole 8-element chunks, reduced together: the
/// documented tree `((l0+l4) + (l2+l6)) + ((l1+l5) + (l3+l7))` for all eight
/// rows at once, as three rounds of vector adds (halves, then pairs, then
/// neighbours) instead of eight trips through memory and scalar adds.
///
/// # Safety
/// The CPU must support AVX2 and F16C, `x.len()` must be a multiple of 8,
/// and every row pointer must have `2 * x.len()` readable bytes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,f16c")]
unsafe fn avx2_rows8(ptrs: [*const u8; 8], x: &[f32]) -> [f32; 8] {
    use std::arch::x86_64::*;
    let mut a = [_mm256_setzero_ps(); 8];
    for (k, xk) in x.as_chunks::<8>().0.iter().enumerate() {
        // SAFETY: xk is 8 floats; each row has 16 bytes at offset 16 * k
        // because k < x.len() / 8 and the row holds 2 * x.len() bytes.
        let xv = unsafe { _mm256_loadu_ps(xk.as_ptr()) };
        for (a, p) in a.iter_mut().zip(ptrs) {
            let w = unsafe { load8(p.add(16 * k)) };
            *a = _mm256_add_ps(*a, _mm256_mul_ps(w, xv));
        }
    }
    // s_r = [l0+l4, l1+l5, l2+l6, l3+l7]; v[i] = [s_i | s_{i+4}]
    let v: [__m256; 4] = std::array::from_fn(|i| {
        _mm256_add_ps(
            _mm256_permute2f128_ps::<0x20>(a[i], a[i + 4]),
            _mm256_permute2f128_ps::<0x31>(a[i], a[i + 4]),
        )
    });
    // y_r = [(l0+l4)+(l2+l6), (l1+l5)+(l3+l7)], two rows per 128-bit half:
    // w01 = [y0 y1 | y4 y5], w23 = [y2 y3 | y6 y7]
    let pairs = |p: __m256, q: __m256| {
        let (p, q) = (_mm256_castps_pd(p), _mm256_castps_pd(q));
        _mm256_add_ps(
            _mm256_castpd_ps(_mm256_unpacklo_pd(p, q)),
            _mm256_castpd_ps(_mm256_unpackhi_pd(p, q)),
        )
    };
    let (w01, w23) = (pairs(v[0], v[1]), pairs(v[2], v[3]));
    // out_r = y_r[0] + y_r[1], in row order 0..8
    let sum = _mm256_add_ps(
        _mm256_shuffle_ps::<0b10_00_10_00>(w01, w23),
        _mm256_shuffle_ps::<0b11_01_11_01>(w01, w23),
    );
    let mut out = [0.0f32; 8];
    // SAFETY: out is 8 floats.
    unsafe { _mm256_storeu_ps(out.as_mut_ptr(), sum) };
    out
}

/// Eight halves to f32 with the F16C instruction (exact for finite halves,
/// the only ones a validated model holds: the same bits as
/// `charlm_runtime::kernel::f16_to_f32`).
///
/// # Safety
/// The CPU must support F16C and AVX.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,f16c")]
unsafe fn f16c_halves8(b: &[u8; 16]) -> [f32; 8] {
    use std::arch::x86_64::*;
    let mut out = [0.0f32; 8];
    // SAFETY: b is 16 bytes; out is 8 floats.
    unsafe {
        _mm256_storeu_ps(
            out.as_mut_ptr(),
            _mm256_cvtph_ps(_mm_loadu_si128(b.as_ptr().cast())),
        )
    };
    out
}

/// 8 lanes in two 128-bit registers through the `wide` crate: SSE2 on any
/// x86-64, NEON on AArch64 (plain arrays on a target it has no SIMD for,
/// see [`WIDE_SIMD`]).
/// The same operations as [`Avx2`] in the same order; the f16 conversion is
/// the runtime's integer one (`charlm_runtime::kernel::f16_to_f32`), eight
/// halves at a time, except on AArch64, where it is the hardware's.
#[derive(Clone, Copy, Debug, Default)]
pub struct Wide;

/// Whether `wide` uses SIMD registers on this target (SSE2, NEON on
/// AArch64, WebAssembly's SIMD). Elsewhere (32-bit ARM without NEON,
/// RISC-V, ...) its vectors are arrays: the products still gain (the i8
/// ones most), but the branch-free activations run slower than libm's own
/// scalar functions, which then compute them (the same bits).
const WIDE_SIMD: bool = cfg!(any(
    target_feature = "sse2",
    target_feature = "simd128",
    all(target_arch = "aarch64", target_feature = "neon")
));

/// Eight little-endian halves as f32, exactly (finite halves: the only ones
/// a validated model holds).
#[cfg(not(all(
    target_arch = "aarch64",
    target_endian = "little",
    target_feature = "neon"
)))]
#[inline(always)]
fn wide_halves(b: &[u8; 16]) -> f32x8 {
    use wide::{bytemuck::cast, u16x8};
    /// 2^112: a half's sign and magnitude bits placed in an f32 are its
    /// value times 2^-112 (subnormal halves included).
    const HALF_SCALE: f32 = f32::from_bits((127 + 112) << 23);
    let h = i32x8::from_u16x8(u16x8::new(std::array::from_fn(|i| {
        u16::from_le_bytes([b[2 * i], b[2 * i + 1]])
    })));
    let bits = ((h & i32x8::splat(0x8000)) << 16) | ((h & i32x8::splat(0x7fff)) << 13);
    cast::<i32x8, f32x8>(bits) * f32x8::splat(HALF_SCALE)
}

/// [`wide_halves`] on AArch64: one load and the hardware's conversion,
/// `fcvtl`/`fcvtl2` (`wide` has none, and its integer route compiles to
/// byte loads there). Exact for finite halves whatever the FPCR holds:
/// conversions ignore FZ16, and AHP changes only what exponent 31 means.
#[cfg(all(
    target_arch = "aarch64",
    target_endian = "little",
    target_feature = "neon"
))]
#[inline(always)]
fn wide_halves(b: &[u8; 16]) -> f32x8 {
    use std::arch::aarch64::*;
    let mut out = [0.0f32; 8];
    // SAFETY: NEON is enabled (cfg); the load reads the 16 bytes of `b`
    // (`ld1` needs no alignment), the stores write the 8 floats of `out`,
    // and `fcvtl` touches only the registers named.
    unsafe {
        let h = vld1q_u16(b.as_ptr().cast());
        let (lo, hi): (float32x4_t, float32x4_t);
        core::arch::asm!(
            "fcvtl {lo:v}.4s, {h:v}.4h",
            "fcvtl2 {hi:v}.4s, {h:v}.8h",
            h = in(vreg) h,
            lo = out(vreg) lo,
            hi = out(vreg) hi,
            options(pure, nomem, nostack, preserves_flags),
        );
        vst1q_f32(out.as_mut_ptr(), lo);
        vst1q_f32(out.as_mut_ptr().add(4), hi);
    }
    f32x8::new(out)
}

impl Wide {
    /// Name for logs and benchmarks: the instruction set `wide` uses here.
    pub fn name(&self) -> &'static str {
        if cfg!(target_feature = "sse2") {
            "sse2"
        } else if cfg!(all(target_arch = "aarch64", target_feature = "neon")) {
            "neon"
        } else if WIDE_SIMD {
            "simd128"
        } else {
            "scalar"
        }
    }

    /// `R` dot products of f16 rows.
    #[inline]
    fn rows<const R: usize>(&self, rows: [&[u8]; R], x: &[f32]) -> [f32; R] {
        if rows.iter().any(|r| r.len() < 2 * x.len()) {
            // Only a damaged model could get here; the portable kernel copes.
            return rows.map(|r| Portable.dot1(r, x));
        }
        let (xc, xt) = x.as_chunks::<8>();
        let chunks = rows.map(|r| r.as_chunks::<16>().0);
        let mut acc = [f32x8::ZERO; R];
        for (k, xk) in xc.iter().enumerate() {
            let xv = f32x8::new(*xk);
            for (a, row) in acc.iter_mut().zip(chunks) {
                // Multiply, round, add, round: exactly the portable order.
                *a += wide_halves(&row[k]) * xv;
            }
        }
        let mut out = [0.0f32; R];
        for ((o, a), row) in out.iter_mut().zip(acc).zip(rows) {
            let mut lanes = a.to_array();
            let tail = row.get(16 * xc.len()..).unwrap_or(&[]);
            for ((l, w), x) in lanes.iter_mut().zip(tail.as_chunks::<2>().0).zip(xt) {
                *l += charlm_runtime::kernel::f16_to_f32(*w) * x;
            }
            *o = charlm_runtime::kernel::reduce(lanes);
        }
        out
    }

    /// `R` integer dot products of i8 rows with Q14 activations, 16 elements
    /// at a time: the weights widened to i16, multiplied and added in
    /// neighbouring pairs into eight i32 lanes (`pmaddwd` on SSE2). Integer
    /// addition wraps and has no order: the same i32 as [`Portable`].
    #[inline]
    fn rows_q<const R: usize>(&self, rows: [&[u8]; R], xq: &[i16]) -> [i32; R] {
        if rows.iter().any(|r| r.len() < xq.len()) {
            // Only a damaged model could get here; the portable kernel copes.
            return rows.map(|r| Portable.dotq1(r, xq));
        }
        let (xc, xt) = xq.as_chunks::<16>();
        let chunks = rows.map(|r| r.as_chunks::<16>().0);
        let mut acc = [i32x8::ZERO; R];
        for (k, xk) in xc.iter().enumerate() {
            let xv = i16x16::new(*xk);
            for (a, row) in acc.iter_mut().zip(chunks) {
                let w = i16x16::from_i8x16(i8x16::new(row[k].map(|b| b as i8)));
                *a += w.dot(xv);
            }
        }
        let mut out = [0i32; R];
        for ((o, a), row) in out.iter_mut().zip(acc).zip(rows) {
            let tail = row.get(16 * xc.len()..).unwrap_or(&[]);
            let lanes = a.to_array().iter().fold(0i32, |s, &l| s.wrapping_add(l));
            *o = tail.iter().zip(xt).fold(lanes, |s, (&w, &x)| {
                s.wrapping_add(i32::from(w as i8) * i32::from(x))
            });
        }
        out
    }
}

impl Kernel for Wide {
    const LANE_ACTIVATIONS: bool = true;

    row_products!();

    #[inline]
    fn halves8(&self, v: &[u8], start: usize) -> [f32; 8] {
        match start
            .checked_mul(2)
            .and_then(|b| v.get(b..)?.first_chunk::<16>())
        {
            Some(b) => wide_halves(b).to_array(),
            None => Portable.halves8(v, start),
        }
    }

    #[inline]
    fn expf8(&self, x: [f32; 8]) -> [f32; 8] {
        if WIDE_SIMD {
            crate::host_math::wide::expf8(x)
        } else {
            x.map(libm::expf)
        }
    }

    #[inline]
    fn tanhf8(&self, x: [f32; 8]) -> [f32; 8] {
        if WIDE_SIMD {
            crate::host_math::wide::tanhf8(x)
        } else {
            x.map(libm::tanhf)
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rand_core::RngCore;

    /// Where the CPU lacks AVX2 and F16C: CI (an x86-64 machine with them)
    /// fails, elsewhere the tests say loudly that they skip that kernel.
    pub(crate) fn avx2_missing() {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
        assert!(
            !(ci && cfg!(target_arch = "x86_64")),
            "CI=true but no AVX2+F16C kernel here"
        );
        eprintln!("\n*** SKIPPED: no AVX2+F16C here: only the 128-bit kernel is tested.\n");
    }

    /// The kernels these tests compare with the portable one: [`Wide`]
    /// always, and AVX2 where the CPU has it.
    pub(crate) fn kernels_under_test() -> Vec<HostKernel> {
        #[cfg(target_arch = "x86_64")]
        let avx2 = Avx2::detect().map(HostKernel::Avx2);
        #[cfg(not(target_arch = "x86_64"))]
        let avx2 = None;
        if avx2.is_none() {
            avx2_missing();
        }
        std::iter::once(HostKernel::Wide(Wide))
            .chain(avx2)
            .collect()
    }

    #[test]
    fn host_kernel_equals_portable_bit_for_bit() {
        for k in kernels_under_test() {
            eprintln!("kernel under test: {}", k.name());
            equals_portable(k);
        }
    }

    fn equals_portable(k: HostKernel) {
        let mut rng = charlm_runtime::SeededRng::new(3);
        let mut xs = charlm_runtime::SeededRng::new(5);
        let mut half = || loop {
            let h = half::f16::from_bits(rng.next_u32() as u16);
            if h.is_finite() {
                break h;
            }
        };
        for n in 1..=70usize {
            let rows: Vec<Vec<u8>> = (0..8)
                .map(|_| (0..n).flat_map(|_| half().to_le_bytes()).collect())
                .collect();
            // Full-precision activations: products of two halves would be
            // exact in f32, and a fused multiply-add would then pass.
            let x: Vec<f32> = (0..n)
                .map(|_| (xs.next_u32() >> 8) as f32 / (1 << 23) as f32 - 1.0)
                .collect();
            let r4 = [&rows[0][..], &rows[1], &rows[2], &rows[3]];
            assert_eq!(
                k.dot4(r4, &x).map(f32::to_bits),
                Portable.dot4(r4, &x).map(f32::to_bits),
                "n={n}"
            );
            let r8: [&[u8]; 8] = std::array::from_fn(|i| &rows[i][..]);
            assert_eq!(
                k.dot8(r8, &x).map(f32::to_bits),
                Portable.dot8(r8, &x).map(f32::to_bits),
                "n={n}"
            );
            let r3 = [&rows[0][..], &rows[1], &rows[2]];
            assert_eq!(
                k.dot3(r3, &x).map(f32::to_bits),
                Portable.dot3(r3, &x).map(f32::to_bits),
                "n={n}"
            );
            assert_eq!(
                k.dot1(&rows[3], &x).to_bits(),
                Portable.dot1(&rows[3], &x).to_bits(),
                "n={n}"
            );
            // The 8 rows as one block (n not a multiple of 8: the fallback),
            // alone and followed by more rows.
            let block = rows.concat();
            let longer = [&block[..], &rows[0][..]].concat();
            for block in [&block, &longer] {
                assert_eq!(
                    k.dot8_block(block, &x).map(f32::to_bits),
                    Portable.dot8(r8, &x).map(f32::to_bits),
                    "n={n}, block of {} bytes",
                    block.len()
                );
            }
            // Eight halves from every start, including ones that run past the end.
            for start in 0..=n + 1 {
                assert_eq!(
                    k.halves8(&rows[5], start).map(f32::to_bits),
                    Portable.halves8(&rows[5], start).map(f32::to_bits),
                    "n={n}, halves from {start}"
                );
            }
        }
    }

    #[test]
    fn host_kernel_gives_the_exact_integer_sums_of_i8_rows() {
        // Lengths with and without a tail of the 16-element chunks, up to
        // the largest hidden size of an i8 model; all eight rows, fewer,
        // and a block.
        for k in kernels_under_test() {
            integer_sums(k);
        }
    }

    fn integer_sums(k: HostKernel) {
        let mut rng = charlm_runtime::SeededRng::new(4);
        for n in (1..=70usize).chain([128, 1024]) {
            let rows: Vec<Vec<u8>> = (0..8)
                .map(|_| (0..n).map(|_| rng.next_u32() as u8).collect())
                .collect();
            let xq: Vec<i16> = (0..n)
                .map(|_| ((rng.next_u32() % (2 * 16384 + 1)) as i32 - 16384) as i16)
                .collect();
            let r: [&[u8]; 8] = std::array::from_fn(|i| &rows[i][..]);
            let want: Vec<i64> = rows
                .iter()
                .map(|row| charlm_runtime::kernel::reference_dotq(row, &xq))
                .collect();
            let got = |v: &[i32]| v.iter().map(|&d| i64::from(d)).collect::<Vec<_>>();
            let sums = k.scope(|| {
                (
                    k.dotq8(r, &xq),
                    k.dotq4([r[0], r[1], r[2], r[3]], &xq),
                    k.dotq3([r[0], r[1], r[2]], &xq),
                    k.dotq1(r[5], &xq),
                    k.dotq8_block(&rows.concat(), &xq),
                )
            });
            assert_eq!(got(&sums.0), want, "dotq8, n={n}");
            assert_eq!(got(&sums.1), want[..4], "dotq4, n={n}");
            assert_eq!(got(&sums.2), want[..3], "dotq3, n={n}");
            assert_eq!(i64::from(sums.3), want[5], "dotq1, n={n}");
            assert_eq!(got(&sums.4), want, "dotq8_block, n={n}");
        }
    }

    #[test]
    fn halves8_converts_every_finite_half_exactly() {
        for k in kernels_under_test() {
            halves_exact(k);
        }
    }

    fn halves_exact(k: HostKernel) {
        let finite: Vec<u16> = (0..=u16::MAX)
            .filter(|&b| half::f16::from_bits(b).is_finite())
            .collect();
        for chunk in finite.chunks(8) {
            let bytes: Vec<u8> = chunk.iter().flat_map(|b| b.to_le_bytes()).collect();
            let want: Vec<u32> = chunk
                .iter()
                .map(|&b| half::f16::from_bits(b).to_f32().to_bits())
                .collect();
            let got = k.halves8(&bytes, 0).map(f32::to_bits);
            assert_eq!(got[..chunk.len()], want[..], "halves {chunk:#06x?}");
        }
    }
}
