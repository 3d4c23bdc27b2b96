//! Measuring without a cycle counter: SysTick for time, linker symbols for
//! flash and static RAM, a painted stack for the stack's high-water mark.
//!
//! Under QEMU with `-icount shift=0` every guest instruction advances
//! virtual time by 1 ns, and SysTick (on the core clock, 25 MHz on
//! mps2-an386, 16 MHz on the micro:bit) ticks once per 40 ns, i.e. once per
//! 40 instructions (62.5 on the micro:bit). We do
//! not trust that constant: [`Calibration::measure`] times
//! `cortex_m::asm::delay(n)`, a two-instruction loop (`subs`, `bne`) that
//! runs n+1 times, for two values of n and takes the difference, so the
//! report's figures are in instructions whatever the clock. On a real board
//! SysTick counts core clock cycles and the report says cycles.

use core::num::NonZeroU64;

use cortex_m::peripheral::SYST;
use cortex_m::peripheral::syst::SystClkSource;

/// What one SysTick tick counts.
#[cfg(not(feature = "board-stm32f4"))]
pub const UNIT: &str = "instruction";
/// What one SysTick tick counts.
#[cfg(feature = "board-stm32f4")]
pub const UNIT: &str = "cycle";

/// SysTick's reload value: the full 24 bits.
const RELOAD: u32 = 0x00ff_ffff;

/// A free-running SysTick read as a down-counter. Intervals must stay below
/// 2^24 ticks (671 million instructions under QEMU): one model step is far
/// below that.
pub struct Stopwatch {
    _syst: SYST,
}

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
    pub fn lap(&self) -> u32 {
        SYST::get_current()
    }

    /// Ticks since `lap` returned `since`.
    #[inline(always)]
    pub fn lap_since(&self, since: u32) -> u64 {
        (since.wrapping_sub(SYST::get_current()) & RELOAD) as u64
    }
}

#[allow(unsafe_code)]
fn steal_syst() -> SYST {
    // SAFETY: reached only if the peripherals were taken before, which this
    // program never does; SysTick is then used by nobody else.
    unsafe { cortex_m::Peripherals::steal() }.SYST
}

/// How many instructions (cycles on hardware) one tick is.
pub struct Calibration {
    /// Extra loop iterations of the longer delay.
    pub iterations: u64,
    /// Extra ticks they took.
    pub ticks: NonZeroU64,
}

impl Calibration {
    /// Times `asm::delay` for 100 000 and 1 100 000 iterations.
    pub fn measure(sw: &mut Stopwatch) -> Calibration {
        let time = |n: u32| {
            let t = sw.lap();
            cortex_m::asm::delay(n);
            sw.lap_since(t)
        };
        let short = time(100_000);
        let long = time(1_100_000);
        let ticks = NonZeroU64::new(long.saturating_sub(short)).unwrap_or(NonZeroU64::MIN);
        Calibration { iterations: 1_000_000, ticks }
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
        // Each loop iteration is two instructions (`subs`, `bne`).
        #[cfg(not(feature = "board-stm32f4"))]
        let per_iteration = 2;
        // On hardware SysTick runs on the core clock: a tick is a cycle.
        #[cfg(feature = "board-stm32f4")]
        let per_iteration = 0;
        if per_iteration == 0 {
            return ticks;
        }
        ticks * per_iteration * self.iterations / self.ticks
    }
}

/// The word the free stack is painted with.
const PAINT: u32 = 0xC0FF_EE55;

// Declaring them is all the unsafety: only their addresses are taken.
#[allow(unsafe_code)]
unsafe extern "C" {
    /// cortex-m-rt's linker script symbols (addresses only, never read).
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
    let top = cortex_m::register::msp::read().saturating_sub(64) & !3;
    let mut p = bottom;
    while p < top {
        // SAFETY: [bottom, top) lies between the end of .bss/.uninit and
        // below the live stack: no Rust object lives there.
        unsafe { core::ptr::write_volatile(p as *mut u32, PAINT) };
        p += 4;
    }
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
            flash: addr!(__sidata) + data - addr!(__vector_table),
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
