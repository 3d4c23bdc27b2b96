//! Speed, flash and RAM: a clock for time, linker symbols for flash and
//! static RAM, a painted stack for the stack's high-water mark.
//!
//! The clock. On a Cortex-M it is SysTick. Under QEMU with `-icount
//! shift=0` every guest instruction advances virtual time by 1 ns, and
//! SysTick (on the core clock, 25 MHz on mps2-an386, 16 MHz on the
//! micro:bit) ticks once per 40 ns, i.e. once per 40 instructions (62.5 on
//! the micro:bit). On RISC-V it is the `minstret` counter, which QEMU with
//! `-icount` advances once per instruction. We trust neither constant:
//! [`Calibration::measure`] times the architecture's delay loop (two
//! instructions an iteration: `subs`/`bne`, `addi`/`bne`) for two lengths
//! and takes the difference, so the report's figures are in instructions
//! whatever the clock. On a real board SysTick counts core clock cycles and
//! the report says cycles.

use core::num::NonZeroU64;

#[cfg(target_arch = "arm")]
use cortex_m::peripheral::SYST;
#[cfg(target_arch = "arm")]
use cortex_m::peripheral::syst::SystClkSource;

/// What one tick of the clock counts, after calibration.
#[cfg(not(feature = "board-stm32f4"))]
pub const UNIT: &str = "instruction";
/// What one tick of the clock counts, after calibration.
#[cfg(feature = "board-stm32f4")]
pub const UNIT: &str = "cycle";

/// The report's name for the calibration line.
#[cfg(target_arch = "arm")]
pub const CLOCK_CALIBRATION: &str = "SysTick calibration";
/// The report's name for the calibration line.
#[cfg(target_arch = "riscv32")]
pub const CLOCK_CALIBRATION: &str = "minstret calibration";

/// A reading of the clock.
#[cfg(target_arch = "arm")]
pub type Lap = u32;
/// A reading of the clock.
#[cfg(target_arch = "riscv32")]
pub type Lap = u64;

/// SysTick's reload value: the full 24 bits.
#[cfg(target_arch = "arm")]
const RELOAD: u32 = 0x00ff_ffff;

/// A free-running SysTick read as a down-counter. Intervals must stay below
/// 2^24 ticks (671 million instructions under QEMU): one model step is far
/// below that.
#[cfg(target_arch = "arm")]
pub struct Stopwatch {
    _syst: SYST,
}

#[cfg(target_arch = "arm")]
impl Stopwatch {
    /// Takes SysTick and starts it on the core clock, no interrupt.
    pub fn start() -> Stopwatch {
        let Some(p) = cortex_m::Peripherals::take() else {
            // Only `main` calls this, once; without SysTick we cannot measure.
            return Stopwatch { _syst: steal_syst() };
        };
        let mut syst = p.SYST;
        syst.set_clock_source(SystClkSource::Core);
        syst.set_reload(RELOAD);
        syst.clear_current();
        syst.disable_interrupt();
        syst.enable_counter();
        Stopwatch { _syst: syst }
    }

    /// The counter now.
    #[inline(always)]
    pub fn lap(&self) -> Lap {
        SYST::get_current()
    }

    /// Ticks since `lap` returned `since`.
    #[inline(always)]
    pub fn lap_since(&self, since: Lap) -> u64 {
        (since.wrapping_sub(SYST::get_current()) & RELOAD) as u64
    }
}

#[cfg(target_arch = "arm")]
#[allow(unsafe_code)]
fn steal_syst() -> SYST {
    // SAFETY: reached only if the peripherals were taken before, which this
    // program never does; SysTick is then used by nobody else.
    unsafe { cortex_m::Peripherals::steal() }.SYST
}

/// The machine-mode instruction counter, `minstret` (64 bits, read as
/// `minstreth`/`minstret`/`minstreth` until the high half holds still).
#[cfg(target_arch = "riscv32")]
pub struct Stopwatch;

#[cfg(target_arch = "riscv32")]
impl Stopwatch {
    /// The counter runs from reset: nothing to start.
    pub fn start() -> Stopwatch {
        Stopwatch
    }

    /// The counter now.
    #[inline(always)]
    pub fn lap(&self) -> Lap {
        riscv::register::minstret::read64()
    }

    /// Ticks since `lap` returned `since`.
    #[inline(always)]
    pub fn lap_since(&self, since: Lap) -> u64 {
        self.lap().wrapping_sub(since)
    }
}

/// The delay loop: `n + 1` iterations of `subs`/`bne` (cortex-m's
/// `asm::delay`). Returns the instructions each unit of `n` adds.
#[cfg(target_arch = "arm")]
fn delay(n: u32) -> u64 {
    cortex_m::asm::delay(n);
    2
}

/// The delay loop: `1 + n / 2` iterations of `addi`/`bne` (riscv's
/// `asm::delay`). Returns the instructions each unit of `n` adds.
#[cfg(target_arch = "riscv32")]
fn delay(n: u32) -> u64 {
    riscv::asm::delay(n);
    1
}

/// How many instructions (cycles on hardware) one tick is.
pub struct Calibration {
    /// Extra instructions of the longer delay.
    pub instructions: u64,
    /// Extra ticks they took.
    pub ticks: NonZeroU64,
}

impl Calibration {
    /// Times the delay loop for 100 000 and 1 100 000 units.
    pub fn measure(sw: &mut Stopwatch) -> Calibration {
        let mut per_unit = 0;
        let mut time = |n: u32| {
            let t = sw.lap();
            per_unit = delay(n);
            sw.lap_since(t)
        };
        let short = time(100_000);
        let long = time(1_100_000);
        let ticks = NonZeroU64::new(long.saturating_sub(short)).unwrap_or(NonZeroU64::MIN);
        Calibration { instructions: 1_000_000 * per_unit, ticks }
    }

    /// Units (instructions, or cycles on hardware) per tick, times 100.
    pub fn per_tick_x100(&self) -> u64 {
        self.units(100 * self.ticks.get()) / self.ticks
    }

    /// Converts ticks to units.
    pub fn to_units(&self, ticks: u64) -> u64 {
        self.units(ticks)
    }

    fn units(&self, ticks: u64) -> u64 {
        // On hardware SysTick runs on the core clock: a tick is a cycle.
        if cfg!(feature = "board-stm32f4") {
            return ticks;
        }
        ticks * self.instructions / self.ticks
    }
}

/// The word the free stack is painted with.
const PAINT: u32 = 0xC0FF_EE55;

// Declaring them is all the unsafety: only their addresses are taken.
#[allow(unsafe_code)]
unsafe extern "C" {
    /// The start-up crates' linker script symbols (addresses only, never
    /// read): cortex-m-rt and riscv-rt name them alike, but for where flash
    /// begins (the vector table, or the start-up code).
    #[cfg(target_arch = "arm")]
    static __vector_table: u32;
    static __stext: u32;
    static __etext: u32;
    static __srodata: u32;
    static __erodata: u32;
    static __sdata: u32;
    static __edata: u32;
    static __sidata: u32;
    static __sbss: u32;
    static __ebss: u32;
    static __sheap: u32;
    static _stack_start: u32;
}

macro_rules! addr {
    ($sym:ident) => {
        (&raw const $sym) as usize as u32
    };
}

/// Paints the free stack, from the end of static RAM to a little below the
/// current stack pointer. Call first thing in `main`.
#[allow(unsafe_code)]
pub fn paint_stack() {
    let bottom = addr!(__sheap);
    let top = stack_pointer().saturating_sub(64) & !3;
    let mut p = bottom;
    while p < top {
        // SAFETY: [bottom, top) lies between the end of .bss/.uninit and
        // below the live stack: no Rust object lives there.
        unsafe { core::ptr::write_volatile(p as *mut u32, PAINT) };
        p += 4;
    }
}

/// Where flash begins: the vector table.
#[cfg(target_arch = "arm")]
fn flash_start() -> u32 {
    addr!(__vector_table)
}

/// Where flash begins: the start-up code.
#[cfg(target_arch = "riscv32")]
fn flash_start() -> u32 {
    addr!(__stext)
}

/// The stack pointer now.
#[cfg(target_arch = "arm")]
fn stack_pointer() -> u32 {
    cortex_m::register::msp::read()
}

/// The stack pointer now, near enough: the address of a local.
#[cfg(target_arch = "riscv32")]
fn stack_pointer() -> u32 {
    let here = 0u32;
    core::hint::black_box(&here) as *const u32 as usize as u32
}

/// Flash and RAM as the linker laid them out, and the stack as used so far.
pub struct Memory {
    /// All flash: vector table, code, read-only data, the `.data` image.
    pub flash: u32,
    /// `.text`.
    pub text: u32,
    /// `.rodata` (the embedded model included).
    pub rodata: u32,
    /// `.data` (its initial values also occupy flash).
    pub data: u32,
    /// `.bss`.
    pub bss: u32,
    /// Deepest stack use seen: from the stack's top to the lowest word that
    /// no longer holds the paint.
    pub stack_used: u32,
    /// Size of the painted region plus what was in use when painting.
    pub stack_size: u32,
}

impl Memory {
    /// Reads the layout and scans the painted stack.
    #[allow(unsafe_code)]
    pub fn now() -> Memory {
        let bottom = addr!(__sheap);
        let top = addr!(_stack_start);
        let mut p = bottom;
        // SAFETY: reads words of the painted region, below the live stack.
        while p < top && unsafe { core::ptr::read_volatile(p as *const u32) } == PAINT {
            p += 4;
        }
        let data = addr!(__edata) - addr!(__sdata);
        Memory {
            flash: addr!(__sidata) + data - flash_start(),
            text: addr!(__etext) - addr!(__stext),
            rodata: addr!(__erodata) - addr!(__srodata),
            data,
            bss: addr!(__ebss) - addr!(__sbss),
            stack_used: top - p,
            stack_size: top - bottom,
        }
    }
}

impl Memory {
    /// Whether the stack reached the end of static RAM: no paint is left,
    /// so it may well have gone further, over the statics.
    pub fn stack_overflowed(&self) -> bool {
        self.stack_used >= self.stack_size
    }
}

/// Row length of the kernel micro-benchmark.
pub const KERNEL_BENCH_N: usize = 128;

/// Instructions (cycles on hardware) per MAC of the kernels alone, times 100.
pub struct KernelSpeed {
    /// The kernel generation runs on (Cortex-M4F unless only the portable one exists).
    pub m4f_x100: u64,
    /// The runtime's portable kernel.
    pub portable_x100: u64,
}

/// Times `dot4` over four word-aligned rows of [`KERNEL_BENCH_N`] halves
/// (taken from `weights`, any bytes do) with both kernels, 16 times each.
pub fn kernel_speed(sw: &Stopwatch, cal: &Calibration, weights: &[u8]) -> KernelSpeed {
    use charlm_runtime::kernel::{Kernel, Portable};
    const N: usize = KERNEL_BENCH_N;
    const REPS: u64 = 16;
    let x = [0.5f32; N];
    let rows: [&[u8]; 4] = core::array::from_fn(|r| weights.get(r * 2 * N..(r + 1) * 2 * N).unwrap_or(&[]));
    let mut sink = 0.0f32;
    let mut time = |k: &dyn Fn() -> [f32; 4]| {
        let t = sw.lap();
        for _ in 0..REPS {
            sink += core::hint::black_box(k())[0];
        }
        sw.lap_since(t)
    };
    let m4f = time(&|| crate::KERNEL.dot4(core::hint::black_box(rows), &x));
    let portable = time(&|| Portable.dot4(core::hint::black_box(rows), &x));
    core::hint::black_box(sink);
    let macs = REPS * 4 * N as u64;
    KernelSpeed { m4f_x100: cal.to_units(m4f) * 100 / macs, portable_x100: cal.to_units(portable) * 100 / macs }
}

/// A kernel that adds the SysTick ticks spent in each dot product to a
/// counter, to split a model step into dot products and everything else.
/// Reading SysTick costs a few instructions per call (about 1% of a step).
pub struct Timed<'s, K> {
    inner: K,
    sw: &'s Stopwatch,
    ticks: core::cell::Cell<u64>,
}

impl<'s, K: charlm_runtime::Kernel> Timed<'s, K> {
    /// Wraps `inner`.
    pub fn new(inner: K, sw: &'s Stopwatch) -> Self {
        Timed { inner, sw, ticks: core::cell::Cell::new(0) }
    }

    /// Ticks spent in dot products so far.
    pub fn ticks(&self) -> u64 {
        self.ticks.get()
    }

    #[inline(always)]
    fn time<T>(&self, f: impl FnOnce() -> T) -> T {
        let t = self.sw.lap();
        let r = f();
        self.ticks.set(self.ticks.get() + self.sw.lap_since(t));
        r
    }
}

impl<K: charlm_runtime::Kernel> charlm_runtime::Kernel for &Timed<'_, K> {
    fn dot1(&self, row: &[u8], x: &[f32]) -> f32 {
        self.time(|| self.inner.dot1(row, x))
    }

    fn dot3(&self, rows: [&[u8]; 3], x: &[f32]) -> [f32; 3] {
        self.time(|| self.inner.dot3(rows, x))
    }

    fn dot4(&self, rows: [&[u8]; 4], x: &[f32]) -> [f32; 4] {
        self.time(|| self.inner.dot4(rows, x))
    }

    #[cfg(feature = "int8")]
    fn dotq1(&self, row: &[u8], xq: &[i16]) -> i32 {
        self.time(|| self.inner.dotq1(row, xq))
    }

    #[cfg(feature = "int8")]
    fn dotq3(&self, rows: [&[u8]; 3], xq: &[i16]) -> [i32; 3] {
        self.time(|| self.inner.dotq3(rows, xq))
    }

    #[cfg(feature = "int8")]
    fn dotq4(&self, rows: [&[u8]; 4], xq: &[i16]) -> [i32; 4] {
        self.time(|| self.inner.dotq4(rows, xq))
    }
}
