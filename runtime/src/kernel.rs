//! The one hot loop: dot products of f16 weight rows with an f32 vector.
//!
//! The order of operations is fixed (see [`crate::cell`]): element `i` is
//! multiplied (rounded) and added (rounded) into lane `i % 8`, in increasing
//! `i`; the lanes are then reduced as `((l0+l4) + (l2+l6)) + ((l1+l5) + (l3+l7))`.
//! No fused multiply-add. Any implementation that follows that order gives
//! the same bits, so a platform may plug in its own [`Kernel`] (SIMD with
//! hardware f16 conversion on a host, `VCVTB` + `VMLA` on a Cortex-M4F)
//! without changing a single generated character. [`Portable`] is the
//! reference every other kernel is tested against.
//!
//! Rows are little-endian f16 bytes, `2 * x.len()` long (guaranteed for a
//! validated model). With cargo feature `int8`, the `dotq*` methods take
//! rows of `xq.len()` signed bytes and activations quantized to i16 (see
//! [`crate::cell`]) and return the exact integer sum: integer addition has
//! no order, so a kernel may add in any order it likes (wrapping, though
//! the cells keep every sum in range). A shorter row never makes a kernel
//! panic or read past its end, but what it gives is unspecified: kernels
//! may then differ (the portable multi-row products stop every row at the
//! shortest one).

/// Dot products in the documented order, and the activations' `expf` and
/// `tanhf`. Implementations must give the same bits as [`Portable`] (and
/// libm) for every input.
///
/// The multi-row methods let a kernel run independent accumulator chains
/// (an LSTM unit needs 4 gate rows, a GRU unit 3, the output layer many);
/// by default they use the portable code.
pub trait Kernel {
    /// `dot(row, x)`.
    fn dot1(&self, row: &[u8], x: &[f32]) -> f32 {
        Portable.dot1(row, x)
    }

    /// Three dot products with one vector.
    fn dot3(&self, rows: [&[u8]; 3], x: &[f32]) -> [f32; 3] {
        Portable.dot3(rows, x)
    }

    /// Four dot products with one vector.
    fn dot4(&self, rows: [&[u8]; 4], x: &[f32]) -> [f32; 4] {
        Portable.dot4(rows, x)
    }

    /// Eight dot products with one vector (the cells use it with
    /// [`Kernel::LANE_ACTIVATIONS`]: one gate's rows of 8 units).
    fn dot8(&self, rows: [&[u8]; 8], x: &[f32]) -> [f32; 8] {
        let [a, b, c, d, e, f, g, h] = rows;
        let (lo, hi) = (self.dot4([a, b, c, d], x), self.dot4([e, f, g, h], x));
        [lo[0], lo[1], lo[2], lo[3], hi[0], hi[1], hi[2], hi[3]]
    }

    /// [`Kernel::dot8`] of 8 consecutive rows of `x.len()` halves each, the
    /// first `16 * x.len()` bytes of `block` (which may hold more): a
    /// gate's rows for 8 units, or 8 rows of the output layer, so that a
    /// kernel can skip slicing the rows one by one.
    fn dot8_block(&self, block: &[u8], x: &[f32]) -> [f32; 8] {
        self.dot8(split8(block, 2 * x.len()), x)
    }

    /// Halves `start..start + 8` of `v` as f32 (0 past the end): the cells'
    /// biases and input-table values for 8 units at a time.
    fn halves8(&self, v: &[u8], start: usize) -> [f32; 8] {
        let mut out = [0.0f32; 8];
        let src = v.get(start * 2..).unwrap_or(&[]);
        for (o, b) in out.iter_mut().zip(src.as_chunks::<2>().0) {
            *o = f16_to_f32(*b);
        }
        out
    }

    /// `sum(row[i] * xq[i])` of a row of signed bytes and quantized
    /// activations, exact (wrapping).
    #[cfg(feature = "int8")]
    fn dotq1(&self, row: &[u8], xq: &[i16]) -> i32 {
        Portable.dotq1(row, xq)
    }

    /// [`Kernel::dotq1`] of three rows.
    #[cfg(feature = "int8")]
    fn dotq3(&self, rows: [&[u8]; 3], xq: &[i16]) -> [i32; 3] {
        Portable.dotq3(rows, xq)
    }

    /// [`Kernel::dotq1`] of four rows.
    #[cfg(feature = "int8")]
    fn dotq4(&self, rows: [&[u8]; 4], xq: &[i16]) -> [i32; 4] {
        Portable.dotq4(rows, xq)
    }

    /// [`Kernel::dotq1`] of eight rows.
    #[cfg(feature = "int8")]
    fn dotq8(&self, rows: [&[u8]; 8], xq: &[i16]) -> [i32; 8] {
        let [a, b, c, d, e, f, g, h] = rows;
        let (lo, hi) = (self.dotq4([a, b, c, d], xq), self.dotq4([e, f, g, h], xq));
        [lo[0], lo[1], lo[2], lo[3], hi[0], hi[1], hi[2], hi[3]]
    }

    /// [`Kernel::dotq8`] of 8 consecutive rows of `xq.len()` signed bytes
    /// (as [`Kernel::dot8_block`]).
    #[cfg(feature = "int8")]
    fn dotq8_block(&self, block: &[u8], xq: &[i16]) -> [i32; 8] {
        self.dotq8(split8(block, xq.len()), xq)
    }

    /// Signed bytes `start..start + 8` of `v` as f32 (0 past the end): the
    /// i8 input table's values for 8 units at a time (unscaled).
    #[cfg(feature = "int8")]
    fn bytes8(&self, v: &[u8], start: usize) -> [f32; 8] {
        let mut out = [0.0f32; 8];
        for (o, b) in out.iter_mut().zip(v.get(start..).unwrap_or(&[])) {
            *o = f32::from(*b as i8);
        }
        out
    }

    /// Whether the cells should run their nonlinearities 8 units at a time
    /// through [`Kernel::expf8`] and [`Kernel::tanhf8`] (a kernel that
    /// vectorizes them), or one unit at a time with libm (the default: the
    /// smallest code).
    const LANE_ACTIVATIONS: bool = false;

    /// `libm::expf` of each lane (the cells call it for 8 units at a time
    /// when [`Kernel::LANE_ACTIVATIONS`] is set). A kernel may compute it
    /// another way only if every input gives libm's bits.
    fn expf8(&self, x: [f32; 8]) -> [f32; 8] {
        x.map(libm::expf)
    }

    /// `libm::tanhf` of each lane; the same rule as [`Kernel::expf8`].
    fn tanhf8(&self, x: [f32; 8]) -> [f32; 8] {
        x.map(libm::tanhf)
    }

    /// Runs `step` (one whole time step: every layer's cells and the output
    /// layer) and returns what it returns. The default just calls it. A host
    /// kernel may call it from a function compiled for its instruction set:
    /// on hosted targets the step is inlined down to the cells, so their
    /// arithmetic and bookkeeping are then compiled for it too, not only the
    /// dot products. The results must be the same bits.
    #[inline(always)]
    fn scope<R>(&self, step: impl FnOnce() -> R) -> R {
        step()
    }
}

/// The 8 rows of `row` bytes each at the start of `block` (empty past its end).
#[inline(always)]
pub fn split8(block: &[u8], row: usize) -> [&[u8]; 8] {
    core::array::from_fn(|l| block.get(l * row..(l + 1) * row).unwrap_or(&[]))
}

/// The reference kernel: plain Rust on every target. A host compiler
/// vectorizes it; a Cortex-M runs it in scalar code; both give the same bits.
#[derive(Clone, Copy, Debug, Default)]
pub struct Portable;

/// 2^112: a half's bits shifted into an f32 give its value times 2^-112.
const SCALE: f32 = f32::from_bits((127 + 112) << 23);

/// Exact f16 -> f32 for finite halves, branch-free so it vectorizes: the
/// half's sign and magnitude bits placed in an f32 are the value times
/// 2^-112 (subnormal halves included), and multiplying by 2^112 is exact.
/// The loader rejects inf/NaN halves, the one case this does not cover.
#[inline(always)]
pub fn f16_to_f32(b: [u8; 2]) -> f32 {
    let h = u16::from_le_bytes(b) as u32;
    f32::from_bits(((h & 0x8000) << 16) | ((h & 0x7fff) << 13)) * SCALE
}

/// Reduces the 8 lanes in the documented order.
#[inline(always)]
pub fn reduce(a: [f32; 8]) -> f32 {
    ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]))
}

/// Multiply-adds 8 halves with 8 floats into 8 lanes.
#[inline(always)]
fn mac8(acc: &mut [f32; 8], w: &[u8; 16], x: &[f32; 8]) {
    let mut wf = [0.0f32; 8];
    for (l, wf) in wf.iter_mut().enumerate() {
        *wf = f16_to_f32([w[2 * l], w[2 * l + 1]]);
    }
    for l in 0..8 {
        acc[l] += wf[l] * x[l];
    }
}

/// The last `n % 8` elements continue in lanes 0.. (element i in lane i % 8).
#[inline(always)]
fn mac_tail(acc: &mut [f32; 8], w: &[u8], x: &[f32]) {
    for ((a, w), x) in acc.iter_mut().zip(w.as_chunks::<2>().0).zip(x) {
        *a += f16_to_f32(*w) * *x;
    }
}

/// `sum(row[i] * xq[i])` of each row: exact, wrapping (in range for the
/// cells' quantized activations), so any order gives the same result and
/// the compiler may vectorize it freely.
#[cfg(feature = "int8")]
#[inline(always)]
fn rows_q<const R: usize>(rows: [&[u8]; R], xq: &[i16]) -> [i32; R] {
    rows.map(|row| {
        row.iter().zip(xq).fold(0i32, |acc, (&w, &x)| {
            acc.wrapping_add(i32::from(w as i8) * i32::from(x))
        })
    })
}

/// Defines `$name(rows: [&[u8]; N], x) -> [f32; N]` for rows of `$bytes`
/// bytes per 8 elements, multiplied in by `$mac` and `$tail`. Computing
/// several rows in one pass gives independent accumulator chains (each
/// row's order is unchanged); the lock-step iterators keep the loop free of
/// bounds checks so that it vectorizes.
macro_rules! portable_rows {
    ($name:ident, $n:literal, $bytes:literal, $mac:ident, $tail:ident, $($r:ident),+) => {
        #[inline(always)]
        fn $name(rows: [&[u8]; $n], x: &[f32]) -> [f32; $n] {
            let mut acc = [[0.0f32; 8]; $n];
            let (xc, xt) = x.as_chunks::<8>();
            let [$($r),+] = rows.map(|r| r.as_chunks::<$bytes>());
            let mut lanes = xc.iter();
            $(let mut $r = ($r.0.iter(), $r.1);)+
            loop {
                let Some(xk) = lanes.next() else { break };
                #[allow(unused_parens)]
                let ($(Some($r)),+) = ($($r.0.next()),+) else { break };
                let mut a = acc.iter_mut();
                $(if let Some(a) = a.next() { $mac(a, $r, xk); })+
            }
            let mut a = acc.iter_mut();
            $(if let Some(a) = a.next() { $tail(a, $r.1, xt); })+
            acc.map(reduce)
        }
    };
}

portable_rows!(rows1, 1, 16, mac8, mac_tail, r0);
portable_rows!(rows3, 3, 16, mac8, mac_tail, r0, r1, r2);
portable_rows!(rows4, 4, 16, mac8, mac_tail, r0, r1, r2, r3);

impl Kernel for Portable {
    #[inline(always)]
    fn dot1(&self, row: &[u8], x: &[f32]) -> f32 {
        rows1([row], x)[0]
    }

    #[inline(always)]
    fn dot3(&self, rows: [&[u8]; 3], x: &[f32]) -> [f32; 3] {
        rows3(rows, x)
    }

    #[inline(always)]
    fn dot4(&self, rows: [&[u8]; 4], x: &[f32]) -> [f32; 4] {
        rows4(rows, x)
    }

    #[cfg(feature = "int8")]
    #[inline(always)]
    fn dotq1(&self, row: &[u8], xq: &[i16]) -> i32 {
        rows_q([row], xq)[0]
    }

    #[cfg(feature = "int8")]
    #[inline(always)]
    fn dotq3(&self, rows: [&[u8]; 3], xq: &[i16]) -> [i32; 3] {
        rows_q(rows, xq)
    }

    #[cfg(feature = "int8")]
    #[inline(always)]
    fn dotq4(&self, rows: [&[u8]; 4], xq: &[i16]) -> [i32; 4] {
        rows_q(rows, xq)
    }
}

/// The documented order written the plain way (one element at a time,
/// conversion by the `half` crate), for testing kernels against.
pub fn reference_dot(row: &[u8], x: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    for (i, (w, x)) in row.as_chunks::<2>().0.iter().zip(x).enumerate() {
        lanes[i % 8] += half::f16::from_le_bytes(*w).to_f32() * x;
    }
    reduce(lanes)
}

/// The integer dot product of a row of signed bytes and quantized
/// activations, in i64 (so that a test sees an overflow instead of a wrap).
pub fn reference_dotq(row: &[u8], xq: &[i16]) -> i64 {
    row.iter()
        .zip(xq)
        .map(|(&w, &x)| i64::from(w as i8) * i64::from(x))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::RngCore;

    fn random_row(rng: &mut crate::Pcg32, n: usize) -> Vec<u8> {
        (0..n)
            .flat_map(|_| {
                loop {
                    // Every finite bit pattern, subnormals and zeros included.
                    let h = half::f16::from_bits(rng.next_u32() as u16);
                    if h.is_finite() {
                        break h.to_le_bytes();
                    }
                }
            })
            .collect()
    }

    #[test]
    fn portable_kernel_follows_the_documented_order_bit_for_bit() {
        let mut rng = crate::SeededRng::new(11);
        for n in 1..=70 {
            let x: Vec<f32> = (0..n)
                .map(|_| (rng.next_u32() as f32 / u32::MAX as f32) * 2.0 - 1.0)
                .collect();
            let rows: Vec<Vec<u8>> = (0..4).map(|_| random_row(&mut rng, n)).collect();
            let want: Vec<u32> = rows
                .iter()
                .map(|r| reference_dot(r, &x).to_bits())
                .collect();
            let four = Portable.dot4([&rows[0], &rows[1], &rows[2], &rows[3]], &x);
            assert_eq!(four.map(f32::to_bits).to_vec(), want, "dot4, n={n}");
            let three = Portable.dot3([&rows[1], &rows[2], &rows[3]], &x);
            assert_eq!(three.map(f32::to_bits).to_vec(), want[1..], "dot3, n={n}");
            assert_eq!(
                Portable.dot1(&rows[0], &x).to_bits(),
                want[0],
                "dot1, n={n}"
            );
        }
    }

    #[cfg(feature = "int8")]
    #[test]
    fn portable_integer_rows_are_the_exact_sums() {
        let mut rng = crate::SeededRng::new(12);
        for n in (1..=70).chain([1024]) {
            // Random values, and the extremes: every product at its largest.
            let extreme = n == 1024;
            let xq: Vec<i16> = (0..n)
                .map(|_| {
                    if extreme {
                        -16384
                    } else {
                        rng.next_u32() as i16
                    }
                })
                .collect();
            let rows: Vec<Vec<u8>> = (0..4)
                .map(|_| {
                    (0..n)
                        .map(|_| if extreme { 0x81 } else { rng.next_u32() as u8 })
                        .collect()
                })
                .collect();
            let want: Vec<i64> = rows.iter().map(|r| reference_dotq(r, &xq)).collect();
            let r: [&[u8]; 4] = core::array::from_fn(|i| &rows[i][..]);
            let got = |v: &[i32]| v.iter().map(|&d| i64::from(d)).collect::<Vec<_>>();
            assert_eq!(got(&Portable.dotq4(r, &xq)), want, "dotq4, n={n}");
            assert_eq!(
                got(&Portable.dotq3([r[1], r[2], r[3]], &xq)),
                want[1..],
                "dotq3, n={n}"
            );
            assert_eq!(
                i64::from(Portable.dotq1(r[0], &xq)),
                want[0],
                "dotq1, n={n}"
            );
            let block: Vec<u8> = (0..8).flat_map(|i| rows[i % 4].clone()).collect();
            let eight = Portable.dotq8_block(&block, &xq);
            for (l, d) in eight.iter().enumerate() {
                assert_eq!(i64::from(*d), want[l % 4], "dotq8_block lane {l}, n={n}");
            }
        }
        // Every byte value converts exactly, -128 included.
        let all: Vec<u8> = (0..=255).collect();
        let v = Portable.bytes8(&all, 0x7c);
        assert_eq!(
            v,
            [124.0, 125.0, 126.0, 127.0, -128.0, -127.0, -126.0, -125.0]
        );
        assert_eq!(
            Portable.bytes8(&all, 252),
            [-4.0, -3.0, -2.0, -1.0, 0.0, 0.0, 0.0, 0.0]
        );
    }

    #[test]
    fn conversion_is_exact_for_every_finite_half() {
        for bits in 0..=u16::MAX {
            let h = half::f16::from_bits(bits);
            if h.is_finite() {
                assert_eq!(
                    f16_to_f32(bits.to_le_bytes()).to_bits(),
                    h.to_f32().to_bits(),
                    "{bits:#06x}"
                );
            }
        }
    }
}
