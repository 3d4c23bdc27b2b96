//! The Cortex-M4F dot-product kernel: hardware f16 conversion (`VCVTB`,
//! `VCVTT`) and the FPU's non-fused multiply-accumulate (`VMLA.F32`).
//!
//! # Why it gives the runtime's bits
//!
//! The runtime's order ([`charlm_runtime::kernel`]): element `i` of a row
//! is converted to f32, multiplied by `x[i]` (rounded), and added (rounded)
//! into lane `i % 8`, in increasing `i`; then the fixed reduction tree.
//!
//! * `VCVTB.F32.F16` / `VCVTT.F32.F16` convert the bottom / top half of a
//!   32-bit register exactly: every finite half, subnormals included, is an
//!   f32 (FPSCR.AHP only changes how exponent 31, inf/NaN, is read, and the
//!   loader rejects those).
//! * `VMLA.F32 Sd, Sn, Sm` is ARMv7's *non-fused* multiply-accumulate: the
//!   architecture defines it as `FPMul` (rounded) followed by `FPAdd`
//!   (rounded), i.e. exactly `d = d + n * m` in two IEEE operations (the
//!   fused one is `VFMA`, which we never use).
//! * One row's lanes live in eight registers; chunk `k` (elements `8k..8k+8`)
//!   goes into lanes 0..8 in that order, so each lane sees its elements in
//!   increasing `i`. The `n % 8` tail, the reduction and every row that is
//!   not a plain `2 * x.len()`-byte row are done in Rust with the runtime's
//!   own helpers, or by [`Portable`] itself.
//! * Both need round-to-nearest and no flush-to-zero (FPSCR.RMode = 0,
//!   FZ = 0), the reset state, which the whole runtime relies on anyway;
//!   [`self_test`] checks it.
//!
//! The firmware runs [`self_test`] at start-up (random rows and vectors at
//! every alignment, and every finite half through the conversion) and the
//! QEMU parity test compares whole texts with the host's, so a wrong
//! instruction here shows up twice.
//!
//! # Cost
//!
//! Two rows share each load of `x`: per 8 elements of a row pair that is one
//! `VLDM` of `x`, one `VLDM` per row (8 halves), 16 conversions, 16 `VMLA`s
//! and the loop's `subs`/`bne`. The loop is unrolled twice, so the
//! `subs`/`bne` pair is paid once per 32: 36 instructions per 16
//! multiply-accumulates.
//! Rows that are not 4-byte aligned (the `.clm` format does not align
//! tensors) load with `LDR`, which tolerates any alignment on ARMv7-M,
//! and `VMOV` into the FPU: 47 instructions per 16.

use core::arch::asm;

use charlm_runtime::kernel::{Kernel, Portable, f16_to_f32, reduce};

/// [`Kernel`] for Cortex-M4F (and M7/M33: any ARMv7E-M/ARMv8-M FPU with
/// half-precision conversion). Same bits as [`Portable`], about five times
/// fewer instructions.
#[derive(Clone, Copy, Debug, Default)]
pub struct CortexM4F;

impl Kernel for CortexM4F {
    #[inline]
    fn dot1(&self, row: &[u8], x: &[f32]) -> f32 {
        dot_one(row, x)
    }

    #[inline]
    fn dot3(&self, rows: [&[u8]; 3], x: &[f32]) -> [f32; 3] {
        let [a, b, c] = rows;
        let [da, db] = dot_two([a, b], x);
        [da, db, dot_one(c, x)]
    }

    #[inline]
    fn dot4(&self, rows: [&[u8]; 4], x: &[f32]) -> [f32; 4] {
        let chunks = x.len() / 8;
        if chunks > 0 && x.len().is_multiple_of(8) && rows.iter().all(|r| plain(r, x) && word_aligned(r)) {
            let mut out = [0.0f32; 4];
            four_aligned_reduced(&mut out, rows, x, chunks);
            return out;
        }
        let [a, b, c, d] = rows;
        let [da, db] = dot_two([a, b], x);
        let [dc, dd] = dot_two([c, d], x);
        [da, db, dc, dd]
    }

    #[cfg(feature = "int8")]
    #[inline]
    fn dotq1(&self, row: &[u8], xq: &[i16]) -> i32 {
        dotq_one(row, xq)
    }

    #[cfg(feature = "int8")]
    #[inline]
    fn dotq3(&self, rows: [&[u8]; 3], xq: &[i16]) -> [i32; 3] {
        let [a, b, c] = rows;
        let [da, db] = dotq_two([a, b], xq);
        [da, db, dotq_one(c, xq)]
    }

    #[cfg(feature = "int8")]
    #[inline]
    fn dotq4(&self, rows: [&[u8]; 4], xq: &[i16]) -> [i32; 4] {
        let [a, b, c, d] = rows;
        let [da, db] = dotq_two([a, b], xq);
        let [dc, dd] = dotq_two([c, d], xq);
        [da, db, dc, dd]
    }
}

/// A row the assembly can take: exactly two bytes per element of `x`.
#[inline(always)]
fn plain(row: &[u8], x: &[f32]) -> bool {
    row.len() == 2 * x.len()
}

#[inline(always)]
fn word_aligned(row: &[u8]) -> bool {
    (row.as_ptr() as usize).is_multiple_of(4)
}

/// The `n % 8` last elements, in lanes `0..n % 8`, then the reduction tree.
#[inline(always)]
fn finish(mut acc: [f32; 8], row: &[u8], x: &[f32]) -> f32 {
    let done = x.len() / 8 * 8;
    let (Some(w), Some(x)) = (row.get(2 * done..), x.get(done..)) else { return reduce(acc) };
    for ((a, w), x) in acc.iter_mut().zip(w.as_chunks::<2>().0).zip(x) {
        *a += f16_to_f32(*w) * *x;
    }
    reduce(acc)
}

fn dot_one(row: &[u8], x: &[f32]) -> f32 {
    if !plain(row, x) {
        return Portable.dot1(row, x);
    }
    let mut acc = [0.0f32; 8];
    let chunks = x.len() / 8;
    if chunks > 0 {
        if word_aligned(row) {
            one_aligned(&mut acc, row, x, chunks);
        } else {
            one_unaligned(&mut acc, row, x, chunks);
        }
    }
    finish(acc, row, x)
}

fn dot_two(rows: [&[u8]; 2], x: &[f32]) -> [f32; 2] {
    let [r0, r1] = rows;
    if !plain(r0, x) || !plain(r1, x) {
        return [dot_one(r0, x), dot_one(r1, x)];
    }
    let mut acc = [[0.0f32; 8]; 2];
    let chunks = x.len() / 8;
    if chunks > 0 {
        if word_aligned(r0) && word_aligned(r1) {
            two_aligned(&mut acc, rows, x, chunks);
        } else {
            two_unaligned(&mut acc, rows, x, chunks);
        }
    }
    let [a0, a1] = acc;
    [finish(a0, r0, x), finish(a1, r1, x)]
}

/// `asm!` with every FPU register (s0-s31) declared clobbered and no stack
/// use: each block below loads its lanes, `x` and weights into fixed FPU
/// registers, so all of them are declared once here rather than per block.
macro_rules! asm_fpu {
    ($($args:tt)*) => {
        asm!(
            $($args)*,
            out("s0") _, out("s1") _, out("s2") _, out("s3") _,
            out("s4") _, out("s5") _, out("s6") _, out("s7") _,
            out("s8") _, out("s9") _, out("s10") _, out("s11") _,
            out("s12") _, out("s13") _, out("s14") _, out("s15") _,
            out("s16") _, out("s17") _, out("s18") _, out("s19") _,
            out("s20") _, out("s21") _, out("s22") _, out("s23") _,
            out("s24") _, out("s25") _, out("s26") _, out("s27") _,
            out("s28") _, out("s29") _, out("s30") _, out("s31") _,
            options(nostack),
        )
    };
}

// The loop bodies. Registers: lanes of row 0 in s0-s7, of row 1 in s8-s15,
// eight elements of x in s16-s23, eight halves of one row in s24-s27,
// converted weights in s28-s31.

/// Converts the halves in s24-s27 and accumulates them times s16-s23 into
/// lanes s0-s7.
macro_rules! mac8_row0 {
    () => {
        concat!(
            "vcvtb.f32.f16 s28, s24\n", "vmla.f32 s0, s28, s16\n",
            "vcvtt.f32.f16 s29, s24\n", "vmla.f32 s1, s29, s17\n",
            "vcvtb.f32.f16 s30, s25\n", "vmla.f32 s2, s30, s18\n",
            "vcvtt.f32.f16 s31, s25\n", "vmla.f32 s3, s31, s19\n",
            "vcvtb.f32.f16 s28, s26\n", "vmla.f32 s4, s28, s20\n",
            "vcvtt.f32.f16 s29, s26\n", "vmla.f32 s5, s29, s21\n",
            "vcvtb.f32.f16 s30, s27\n", "vmla.f32 s6, s30, s22\n",
            "vcvtt.f32.f16 s31, s27\n", "vmla.f32 s7, s31, s23\n",
        )
    };
}

/// The same into lanes s8-s15 (the second row).
macro_rules! mac8_row1 {
    () => {
        concat!(
            "vcvtb.f32.f16 s28, s24\n", "vmla.f32 s8, s28, s16\n",
            "vcvtt.f32.f16 s29, s24\n", "vmla.f32 s9, s29, s17\n",
            "vcvtb.f32.f16 s30, s25\n", "vmla.f32 s10, s30, s18\n",
            "vcvtt.f32.f16 s31, s25\n", "vmla.f32 s11, s31, s19\n",
            "vcvtb.f32.f16 s28, s26\n", "vmla.f32 s12, s28, s20\n",
            "vcvtt.f32.f16 s29, s26\n", "vmla.f32 s13, s29, s21\n",
            "vcvtb.f32.f16 s30, s27\n", "vmla.f32 s14, s30, s22\n",
            "vcvtt.f32.f16 s31, s27\n", "vmla.f32 s15, s31, s23\n",
        )
    };
}

/// The loop over `{n}` chunks of two word-aligned rows `{w0}`, `{w1}`,
/// lanes in s0-s15, unrolled twice; `$l` is a fresh local label number.
macro_rules! pair_loop_aligned {
    ($l:literal) => {
        concat!(
            "lsrs {pairs}, {n}, #1\n",
            "beq ", $l, "1f\n",
            $l, "0:\n",
            "vldmia {x}!, {{s16-s23}}\n",
            "vldmia {w0}!, {{s24-s27}}\n",
            mac8_row0!(),
            "vldmia {w1}!, {{s24-s27}}\n",
            mac8_row1!(),
            "vldmia {x}!, {{s16-s23}}\n",
            "vldmia {w0}!, {{s24-s27}}\n",
            mac8_row0!(),
            "vldmia {w1}!, {{s24-s27}}\n",
            mac8_row1!(),
            "subs {pairs}, {pairs}, #1\n",
            "bne ", $l, "0b\n",
            $l, "1:\n",
            "tst {n}, #1\n",
            "beq ", $l, "2f\n",
            "vldmia {x}!, {{s16-s23}}\n",
            "vldmia {w0}!, {{s24-s27}}\n",
            mac8_row0!(),
            "vldmia {w1}!, {{s24-s27}}\n",
            mac8_row1!(),
            $l, "2:\n",
        )
    };
}

/// Loads 16 bytes at any alignment into s24-s27 and advances the pointer.
macro_rules! load_unaligned {
    ($w:literal) => {
        concat!(
            "ldr {t0}, [{", $w, "}], #4\n",
            "ldr {t1}, [{", $w, "}], #4\n",
            "ldr {t2}, [{", $w, "}], #4\n",
            "ldr {t3}, [{", $w, "}], #4\n",
            "vmov s24, s25, {t0}, {t1}\n",
            "vmov s26, s27, {t2}, {t3}\n",
        )
    };
}

// Every block below reads `16 * chunks` bytes of each row and `8 * chunks`
// floats of `x` (the callers check both lengths), reads and writes the
// accumulators through `acc`, and declares every FPU register it touches.

/// One row, word-aligned: lanes `+=` `chunks` chunks of `row * x`.
#[allow(unsafe_code)]
fn one_aligned(acc: &mut [f32; 8], row: &[u8], x: &[f32], chunks: usize) {
    debug_assert!(row.len() >= 16 * chunks && x.len() >= 8 * chunks && chunks > 0 && word_aligned(row));
    // SAFETY: `row` holds 16*chunks bytes at a 4-byte-aligned address and `x`
    // 8*chunks f32 (aligned by type); `acc` is 8 writable f32. The loop
    // runs `chunks` >= 1 times; all clobbered registers are declared.
    unsafe {
        asm_fpu!(
            "vldm {acc}, {{s0-s7}}",
            "2:",
            "vldmia {x}!, {{s16-s23}}",
            "vldmia {w}!, {{s24-s27}}",
            mac8_row0!(),
            "subs {n}, {n}, #1",
            "bne 2b",
            "vstm {acc}, {{s0-s7}}",
            acc = in(reg) acc.as_mut_ptr(),
            x = inout(reg) x.as_ptr() => _,
            w = inout(reg) row.as_ptr() => _,
            n = inout(reg) chunks => _
        );
    }
}

/// One row at any alignment.
#[allow(unsafe_code)]
fn one_unaligned(acc: &mut [f32; 8], row: &[u8], x: &[f32], chunks: usize) {
    debug_assert!(row.len() >= 16 * chunks && x.len() >= 8 * chunks && chunks > 0);
    // SAFETY: as in `one_aligned`; `LDR` accepts any address on ARMv7-M
    // (unaligned access is enabled out of reset: CCR.UNALIGN_TRP = 0).
    unsafe {
        asm_fpu!(
            "vldm {acc}, {{s0-s7}}",
            "2:",
            "vldmia {x}!, {{s16-s23}}",
            load_unaligned!("w"),
            mac8_row0!(),
            "subs {n}, {n}, #1",
            "bne 2b",
            "vstm {acc}, {{s0-s7}}",
            acc = in(reg) acc.as_mut_ptr(),
            x = inout(reg) x.as_ptr() => _,
            w = inout(reg) row.as_ptr() => _,
            n = inout(reg) chunks => _,
            t0 = out(reg) _, t1 = out(reg) _, t2 = out(reg) _, t3 = out(reg) _
        );
    }
}

/// Two word-aligned rows sharing each load of `x`.
#[allow(unsafe_code)]
fn two_aligned(acc: &mut [[f32; 8]; 2], rows: [&[u8]; 2], x: &[f32], chunks: usize) {
    debug_assert!(rows.iter().all(|r| r.len() >= 16 * chunks && word_aligned(r)) && x.len() >= 8 * chunks && chunks > 0);
    // SAFETY: as in `one_aligned`, for two rows; `acc` is 16 contiguous f32.
    unsafe {
        asm_fpu!(
            "vldm {acc}, {{s0-s15}}",
            pair_loop_aligned!("3"),
            "vstm {acc}, {{s0-s15}}",
            acc = in(reg) acc.as_mut_ptr(),
            x = inout(reg) x.as_ptr() => _,
            w0 = inout(reg) rows[0].as_ptr() => _,
            w1 = inout(reg) rows[1].as_ptr() => _,
            n = in(reg) chunks,
            pairs = out(reg) _
        );
    }
}

/// Zeros to load the lanes from (one `VLDM`).
static ZEROS: [f32; 16] = [0.0; 16];

/// The reduction tree of lanes s0-s7 into s16 and of s8-s15 into s17:
/// `((l0+l4) + (l2+l6)) + ((l1+l5) + (l3+l7))`.
macro_rules! reduce_pair {
    () => {
        concat!(
            "vadd.f32 s16, s0, s4\n",
            "vadd.f32 s18, s2, s6\n",
            "vadd.f32 s19, s1, s5\n",
            "vadd.f32 s20, s3, s7\n",
            "vadd.f32 s16, s16, s18\n",
            "vadd.f32 s19, s19, s20\n",
            "vadd.f32 s16, s16, s19\n",
            "vadd.f32 s17, s8, s12\n",
            "vadd.f32 s21, s10, s14\n",
            "vadd.f32 s22, s9, s13\n",
            "vadd.f32 s23, s11, s15\n",
            "vadd.f32 s17, s17, s21\n",
            "vadd.f32 s22, s22, s23\n",
            "vadd.f32 s17, s17, s22\n",
        )
    };
}

/// Four complete dot products of word-aligned rows whose length is a
/// multiple of 8 (no tail): rows 0 and 1, then rows 2 and 3, each pair
/// sharing the loads of `x`, reduced in registers.
#[allow(unsafe_code)]
fn four_aligned_reduced(out: &mut [f32; 4], rows: [&[u8]; 4], x: &[f32], chunks: usize) {
    debug_assert!(rows.iter().all(|r| r.len() == 16 * chunks && word_aligned(r)) && x.len() == 8 * chunks && chunks > 0);
    let [r0, r1, r2, r3] = rows;
    // SAFETY: as in `two_aligned`, twice; `ZEROS` is 16 f32 and `out` 4
    // writable f32, the first `vstmia` advancing it by two.
    unsafe {
        asm_fpu!(
            "vldm {zeros}, {{s0-s15}}",
            pair_loop_aligned!("4"),
            reduce_pair!(),
            "vstmia {out}!, {{s16-s17}}",
            "vldm {zeros}, {{s0-s15}}",
            "mov {x}, {x0}",
            "mov {w0}, {w2}",
            "mov {w1}, {w3}",
            pair_loop_aligned!("5"),
            reduce_pair!(),
            "vstm {out}, {{s16-s17}}",
            out = inout(reg) out.as_mut_ptr() => _,
            zeros = in(reg) ZEROS.as_ptr(),
            x = inout(reg) x.as_ptr() => _,
            x0 = in(reg) x.as_ptr(),
            w0 = inout(reg) r0.as_ptr() => _,
            w1 = inout(reg) r1.as_ptr() => _,
            w2 = in(reg) r2.as_ptr(),
            w3 = in(reg) r3.as_ptr(),
            n = in(reg) chunks,
            pairs = out(reg) _
        );
    }
}

/// Two rows at any alignment.
#[allow(unsafe_code)]
fn two_unaligned(acc: &mut [[f32; 8]; 2], rows: [&[u8]; 2], x: &[f32], chunks: usize) {
    debug_assert!(rows.iter().all(|r| r.len() >= 16 * chunks) && x.len() >= 8 * chunks && chunks > 0);
    // SAFETY: as in `two_aligned` and `one_unaligned`.
    unsafe {
        asm_fpu!(
            "vldm {acc}, {{s0-s15}}",
            "2:",
            "vldmia {x}!, {{s16-s23}}",
            load_unaligned!("w0"),
            mac8_row0!(),
            load_unaligned!("w1"),
            mac8_row1!(),
            "subs {n}, {n}, #1",
            "bne 2b",
            "vstm {acc}, {{s0-s15}}",
            acc = in(reg) acc.as_mut_ptr(),
            x = inout(reg) x.as_ptr() => _,
            w0 = inout(reg) rows[0].as_ptr() => _,
            w1 = inout(reg) rows[1].as_ptr() => _,
            n = inout(reg) chunks => _,
            t0 = out(reg) _, t1 = out(reg) _, t2 = out(reg) _, t3 = out(reg) _
        );
    }
}

// Rows of signed bytes (cargo feature `int8`) times the quantized hidden
// state (i16, Q14): exact integer sums, so the DSP extension's dual 16-bit
// multiply-accumulate does the work, two products per `SMLAD`. Per 4
// elements: `SXTB16` sign-extends bytes 0 and 2 of a weight word into two
// halfwords, `SXTB16 ..., ROR #8` bytes 1 and 3; the four activations, two
// words (x0, x1) and (x2, x3), are regrouped by `PKHBT`/`PKHTB` into
// (x0, x2) and (x1, x3) to match, once for both rows of a pair. Per 4
// elements of a row pair: 2 `LDR`s of x, 2 packs, 2 `LDR`s of weights (any
// alignment), 4 extensions, 4 `SMLAD`s: 14 instructions for 8
// multiply-accumulates, against 61 for 16 with f32 activations; the loop
// takes 8 elements per round (30 instructions for 16). The sums
// never overflow (see `charlm_runtime::cell`), and `SMLAD` wraps as the
// portable `wrapping_add` does anyway.

/// Four elements of x (advanced by 8 bytes) paired up as (x0, x2) in
/// `{xa}` and (x1, x3) in `{t}`; `{xb}` is free afterwards.
#[cfg(feature = "int8")]
macro_rules! quad_x {
    () => {
        concat!(
            "ldr {xa}, [{x}], #4\n",
            "ldr {xb}, [{x}], #4\n",
            "pkhtb {t}, {xb}, {xa}, asr #16\n",
            "pkhbt {xa}, {xa}, {xb}, lsl #16\n",
        )
    };
}

/// `{$acc}` += four bytes at `{$w}` (advanced by 4) times the quad in
/// `{xa}`/`{t}`.
#[cfg(feature = "int8")]
macro_rules! quad_row {
    ($w:literal, $acc:literal) => {
        concat!(
            "ldr {xb}, [{", $w, "}], #4\n",
            "sxtb16 {e}, {xb}\n",
            "smlad {", $acc, "}, {e}, {xa}, {", $acc, "}\n",
            "sxtb16 {e}, {xb}, ror #8\n",
            "smlad {", $acc, "}, {e}, {t}, {", $acc, "}\n",
        )
    };
}

/// The elements from `done` on, in Rust (out of line: the tail is short
/// or absent, and one copy keeps the code small).
#[cfg(feature = "int8")]
#[inline(never)]
fn finish_q(acc: i32, row: &[u8], xq: &[i16], done: usize) -> i32 {
    let (Some(w), Some(x)) = (row.get(done..), xq.get(done..)) else { return acc };
    w.iter().zip(x).fold(acc, |a, (&w, &x)| a.wrapping_add(i32::from(w as i8) * i32::from(x)))
}

#[cfg(feature = "int8")]
#[inline(never)]
fn dotq_one(row: &[u8], xq: &[i16]) -> i32 {
    if row.len() != xq.len() {
        return Portable.dotq1(row, xq);
    }
    let octs = xq.len() / 8;
    let acc = if octs > 0 { one_q(row, xq, octs) } else { 0 };
    if 8 * octs < xq.len() { finish_q(acc, row, xq, 8 * octs) } else { acc }
}

#[cfg(feature = "int8")]
fn dotq_two(rows: [&[u8]; 2], xq: &[i16]) -> [i32; 2] {
    let [r0, r1] = rows;
    if r0.len() != xq.len() || r1.len() != xq.len() {
        return [dotq_one(r0, xq), dotq_one(r1, xq)];
    }
    let octs = xq.len() / 8;
    let [a0, a1] = if octs > 0 { two_q(rows, xq, octs) } else { [0, 0] };
    if 8 * octs < xq.len() {
        [finish_q(a0, r0, xq, 8 * octs), finish_q(a1, r1, xq, 8 * octs)]
    } else {
        [a0, a1]
    }
}

/// One i8 row's sum over `octs` groups of 8 elements.
#[cfg(feature = "int8")]
#[allow(unsafe_code)]
fn one_q(row: &[u8], xq: &[i16], octs: usize) -> i32 {
    debug_assert!(row.len() >= 8 * octs && xq.len() >= 8 * octs && octs > 0);
    let mut acc = 0i32;
    // SAFETY: `row` holds 8*octs bytes and `xq` 8*octs halfwords, read
    // with `LDR`, which takes any address on ARMv7-M (UNALIGN_TRP is off
    // out of reset and the firmware never sets it). The loop runs `octs`
    // >= 1 times; every register it writes is declared; it reads memory
    // only and changes the flags, which `asm!` assumes by default.
    unsafe {
        asm!(
            "2:",
            quad_x!(),
            quad_row!("w0", "a0"),
            quad_x!(),
            quad_row!("w0", "a0"),
            "subs {n}, {n}, #1",
            "bne 2b",
            a0 = inout(reg) acc,
            x = inout(reg) xq.as_ptr() => _,
            w0 = inout(reg) row.as_ptr() => _,
            n = inout(reg) octs => _,
            xa = out(reg) _, xb = out(reg) _, t = out(reg) _, e = out(reg) _,
            options(nostack, readonly),
        );
    }
    acc
}

/// Two i8 rows' sums over `octs` groups of 8 elements, sharing each quad of x.
#[cfg(feature = "int8")]
#[allow(unsafe_code)]
fn two_q(rows: [&[u8]; 2], xq: &[i16], octs: usize) -> [i32; 2] {
    debug_assert!(rows.iter().all(|r| r.len() >= 8 * octs) && xq.len() >= 8 * octs && octs > 0);
    let (mut a0, mut a1) = (0i32, 0i32);
    // SAFETY: as in `one_q`, for two rows.
    unsafe {
        asm!(
            "2:",
            quad_x!(),
            quad_row!("w0", "a0"),
            quad_row!("w1", "a1"),
            quad_x!(),
            quad_row!("w0", "a0"),
            quad_row!("w1", "a1"),
            "subs {n}, {n}, #1",
            "bne 2b",
            a0 = inout(reg) a0,
            a1 = inout(reg) a1,
            x = inout(reg) xq.as_ptr() => _,
            w0 = inout(reg) rows[0].as_ptr() => _,
            w1 = inout(reg) rows[1].as_ptr() => _,
            n = inout(reg) octs => _,
            xa = out(reg) _, xb = out(reg) _, t = out(reg) _, e = out(reg) _,
            options(nostack, readonly),
        );
    }
    [a0, a1]
}

/// What [`self_test`] checked.
pub struct SelfTest {
    /// Dot products compared with [`Portable`] (all bit-identical if `Ok`).
    pub dots: u32,
    /// Finite halves converted and compared.
    pub halves: u32,
}

/// Why [`self_test`] failed.
pub enum SelfTestError {
    /// FPSCR is not in the reset state the numerics need.
    Fpscr(u32),
    /// A dot product differed from [`Portable`].
    Mismatch {
        /// Elements in the vector.
        n: usize,
        /// Byte offset of the rows from a word boundary.
        offset: usize,
        /// Portable's bits.
        want: u32,
        /// This kernel's bits.
        got: u32,
    },
}

/// Compares this kernel with [`Portable`] on the target: random rows (every
/// finite half pattern is possible, subnormals included) against random
/// vectors with tiny, subnormal and zero elements, lengths 1 to 40, at all
/// four byte offsets, through `dot1`, `dot3` and `dot4` (and, with feature
/// `int8`, the same bytes as i8 rows times the vector quantized, at both
/// halfword offsets, through `dotq1`, `dotq3` and `dotq4`); then every
/// finite half through the conversion.
pub fn self_test() -> Result<SelfTest, SelfTestError> {
    use charlm_runtime::SeededRng;

    let fpscr = cortex_m::register::fpscr::read().bits();
    // RMode (bits 22-23) round to nearest, FZ (24) off, AHP (26) IEEE.
    if fpscr & (0b11 << 22 | 1 << 24 | 1 << 26) != 0 {
        return Err(SelfTestError::Fpscr(fpscr));
    }
    let mut rng = SeededRng::new(0x004d_3446);
    let mut buf = [0u8; 4 * 80 + 4];
    let mut x = [0.0f32; 40];
    let mut dots = 0;
    let check = |want: f32, got: f32, n: usize, offset: usize| {
        if want.to_bits() == got.to_bits() {
            Ok(())
        } else {
            Err(SelfTestError::Mismatch { n, offset, want: want.to_bits(), got: got.to_bits() })
        }
    };
    for n in 1..=40 {
        for offset in 0..4 {
            // Halves at the rows' own (possibly odd) offsets, all finite.
            if let Some(rows) = buf.get_mut(offset..offset + 4 * 2 * n) {
                for pair in rows.as_chunks_mut::<2>().0 {
                    *pair = finite_half(&mut rng);
                }
            }
            for v in x.iter_mut().take(n) {
                *v = random_x(&mut rng);
            }
            let x = x.get(..n).unwrap_or(&[]);
            let rows: [&[u8]; 4] =
                core::array::from_fn(|r| buf.get(offset + r * 2 * n..offset + (r + 1) * 2 * n).unwrap_or(&[]));
            let want = Portable.dot4(rows, x);
            let got4 = CortexM4F.dot4(rows, x);
            let [a, b, c, _] = rows;
            let got3 = CortexM4F.dot3([a, b, c], x);
            for r in 0..4 {
                check(want[r], got4[r], n, offset)?;
                check(want[r], CortexM4F.dot1(rows[r], x), n, offset)?;
            }
            for r in 0..3 {
                check(want[r], got3[r], n, offset)?;
            }
            dots += 11;
            // The same bytes as rows of n signed bytes, times x quantized
            // (at the two offsets of a halfword; the extremes every 7th n).
            #[cfg(feature = "int8")]
            for q_offset in 0..2 {
                let mut xq = [0i16; 41];
                for (q, v) in xq.iter_mut().skip(q_offset).zip(x) {
                    *q = if n % 7 == 0 { -16384 } else { charlm_runtime::cell::quantize(*v) };
                }
                let xq = xq.get(q_offset..q_offset + n).unwrap_or(&[]);
                let rows: [&[u8]; 4] =
                    core::array::from_fn(|r| buf.get(offset + r * n..offset + (r + 1) * n).unwrap_or(&[]));
                let want = Portable.dotq4(rows, xq);
                let got4 = CortexM4F.dotq4(rows, xq);
                let got3 = CortexM4F.dotq3([rows[0], rows[1], rows[2]], xq);
                let check = |want: i32, got: i32| check(f32::from_bits(want as u32), f32::from_bits(got as u32), n, offset);
                for r in 0..4 {
                    check(want[r], got4[r])?;
                    check(want[r], CortexM4F.dotq1(rows[r], xq))?;
                }
                for r in 0..3 {
                    check(want[r], got3[r])?;
                }
                dots += 11;
            }
        }
    }
    // Every finite half, 8 at a time, times a vector of ones and powers of
    // two: a conversion error anywhere shows in the sum.
    let ones = [1.0f32, 0.5, 0.25, 2.0, 1.0, 4.0, 0.125, 1.0];
    let mut halves = 0;
    let mut row = [0u8; 16];
    let mut bits = 0u32;
    while bits <= 0xffff {
        for pair in row.as_chunks_mut::<2>().0 {
            // Skip inf/NaN (exponent 31): the loader rejects them.
            while bits <= 0xffff && (bits >> 10) & 0x1f == 0x1f {
                bits += 1;
            }
            *pair = (bits as u16).to_le_bytes();
            halves += u32::from(bits <= 0xffff);
            bits += 1;
        }
        check(Portable.dot1(&row, &ones), CortexM4F.dot1(&row, &ones), 8, 0)?;
        dots += 1;
    }
    Ok(SelfTest { dots, halves })
}

fn finite_half(rng: &mut charlm_runtime::Pcg32) -> [u8; 2] {
    use rand_core::RngCore;
    loop {
        let h = rng.next_u32() as u16;
        if (h >> 10) & 0x1f != 0x1f {
            return h.to_le_bytes();
        }
    }
}

/// Mostly hidden-state-like values in [-1, 1], sometimes zero, tiny or subnormal.
fn random_x(rng: &mut charlm_runtime::Pcg32) -> f32 {
    use rand_core::RngCore;
    let r = rng.next_u32();
    match r % 8 {
        0 => 0.0,
        1 => f32::from_bits(rng.next_u32() & 0x807f_ffff), // subnormal or zero
        2 => f32::from_bits(rng.next_u32() & 0x8fff_ffff), // tiny normal
        _ => ((rng.next_u32() >> 8) as f32 / (1u32 << 24) as f32) * 2.0 - 1.0,
    }
}
