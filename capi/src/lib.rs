//! charlm's runtime behind a C interface: `libcharlm.a` and
//! `include/charlm.h`, for firmware written in C (or anything that links C).
//!
//! Two calls do the work: `charlm_model_info` checks a model's bytes and
//! describes it, `charlm_generate` runs a prompt through it and streams the
//! text, one character at a time, to a function the caller gives. Both read
//! the model in place (it may live in flash); nothing is allocated. The
//! state lives in one workspace inside the library, a `static` sized at
//! build time (`CHARLM_MAX_HIDDEN`, `CHARLM_MAX_LAYERS`, `CHARLM_MAX_VOCAB`;
//! see `build.rs`), so one text is generated at a time: a call made while
//! another runs (from an interrupt, or another thread) returns
//! `CHARLM_ERR_BUSY`.
//!
//! A call prints exactly what `charlm generate --model M --prompt P
//! --temperature T --seed S --max-chars N [--top-k K --top-p P]` prints on
//! the host, without its newline: the same runtime, the same numerics, the
//! same bits (`tests/c_program.rs` compiles a C program against the library
//! and compares). On a Cortex-M4F or M7 (`thumbv7em-none-eabihf`) the dot
//! products run on the firmware demo's `VCVTB`/`VMLA` kernel, on hosts
//! (Linux, macOS, Windows) on `charlm generate`'s kernel (AVX2 where the
//! CPU has it, else 128-bit SIMD: SSE2, NEON), on other bare-metal targets
//! on the runtime's portable one.
//!
//! Every pointer argument is checked for NULL; lengths are the caller's
//! word. No function panics: on bare metal, a build with feature `no-panic`
//! links only when no panic path is left (`.ci/run` checks it).
// Bare metal is `no_std`; a hosted build links std, whose panic machinery a
// no_std static library could not leave out there (it is never used).
#![cfg_attr(target_os = "none", no_std)]
#![deny(missing_docs)]
#![allow(non_camel_case_types)]

use core::cell::UnsafeCell;
use core::ffi::{c_char, c_int, c_void};
use core::sync::atomic::{AtomicBool, Ordering};

use charlm_runtime::format::{CellKind, DType};
use charlm_runtime::{Error, Generator, Model, Sampler, SeededRng, Workspace};

// The capacities `build.rs` read from the environment.
include!(concat!(env!("OUT_DIR"), "/capacity.rs"));

// The Cortex-M4F kernel of the firmware demo, the same file: `VCVTB`/`VCVTT`
// and the non-fused `VMLA`, the runtime's bits. Only for `thumbv7em-*-eabihf`
// (build.rs sets `charlm_m4f`): its i8 products use DSP instructions that
// other hard-float ARM targets (Cortex-M33 without the DSP extension, Linux
// on ARMv7-A) may lack.
#[cfg(charlm_m4f)]
#[allow(dead_code)]
// (formatted as in the firmware demo, outside the workspace's cargo fmt)
#[rustfmt::skip]
#[path = "../../firmware-demo/src/kernel_m4f.rs"]
mod kernel_m4f;

// On hosts, `charlm generate`'s kernel, the same files: AVX2 and F16C when
// the CPU has them (checked at run time), else 128-bit SIMD (SSE2, NEON),
// with libm's `expf`/`tanhf` eight lanes at a time, bit for bit. (Left out
// of this crate's unit tests, which would rerun the files' own exhaustive
// tests.)
#[cfg(all(not(target_os = "none"), not(charlm_m4f), not(test)))]
#[allow(dead_code)]
#[path = "../../trainer/src/host_kernel.rs"]
mod host_kernel;
#[cfg(all(not(target_os = "none"), not(charlm_m4f), not(test)))]
#[allow(dead_code)]
#[path = "../../trainer/src/host_math.rs"]
mod host_math;

/// The fastest kernel for this target; every one gives the same bits.
#[cfg(charlm_m4f)]
fn kernel() -> kernel_m4f::CortexM4F {
    kernel_m4f::CortexM4F
}
#[cfg(all(not(target_os = "none"), not(charlm_m4f), not(test)))]
fn kernel() -> host_kernel::HostKernel {
    host_kernel::HostKernel::detect()
}
#[cfg(not(any(charlm_m4f, all(not(target_os = "none"), not(test)))))]
fn kernel() -> charlm_runtime::Portable {
    charlm_runtime::Portable
}

/// The floating-point mode the numerics are defined in: round to nearest
/// (ties to even), no flush-to-zero, no denormals-are-zero. A caller may
/// run in another: a C program linked with `gcc -ffast-math` starts with
/// FTZ and DAZ set, and an RTOS may set FZ for its threads. Each call that
/// computes runs in the default mode ([`fp::DefaultMode`]) and gives the
/// caller's mode back when it returns.
mod fp {
    #[cfg(all(
        not(miri),
        any(
            target_arch = "x86_64",
            all(target_arch = "x86", target_feature = "sse")
        )
    ))]
    pub(crate) mod reg {
        pub type Value = u32;
        /// MXCSR with every exception masked, round to nearest, FTZ (15)
        /// and DAZ (6) off; the sticky flags (0-5) kept.
        pub fn normal(v: Value) -> Value {
            v & 0x3f | 0x1f80
        }
        pub fn get() -> Value {
            let mut v: Value = 0;
            // SAFETY: STMXCSR stores 4 bytes at a valid, aligned address.
            unsafe {
                core::arch::asm!("stmxcsr [{}]", in(reg) &raw mut v, options(nostack, preserves_flags));
            }
            v
        }
        pub fn set(v: Value) {
            // SAFETY: LDMXCSR of a value read from MXCSR or `normal` of one
            // (no reserved bit set).
            unsafe {
                core::arch::asm!("ldmxcsr [{}]", in(reg) &raw const v, options(nostack, preserves_flags, readonly));
            }
        }
    }
    #[cfg(all(not(miri), target_arch = "aarch64"))]
    pub(crate) mod reg {
        pub type Value = u64;
        /// FPCR: round to nearest, FZ/FZ16/DN/AHP off, no traps (its flags
        /// are in FPSR).
        pub fn normal(_: Value) -> Value {
            0
        }
        pub fn get() -> Value {
            let v: Value;
            // SAFETY: reading FPCR is allowed at every exception level.
            unsafe {
                core::arch::asm!("mrs {}, fpcr", out(reg) v, options(nomem, nostack, preserves_flags))
            };
            v
        }
        pub fn set(v: Value) {
            // SAFETY: a value read from FPCR, or zero.
            unsafe {
                core::arch::asm!("msr fpcr, {}", in(reg) v, options(nomem, nostack, preserves_flags))
            };
        }
    }
    #[cfg(all(not(miri), target_arch = "arm", target_abi = "eabihf"))]
    pub(crate) mod reg {
        pub type Value = u32;
        /// FPSCR with its control bits clear: AHP (26: IEEE halves), DN
        /// (25), FZ (24), RMode (22-23: to nearest); flags kept.
        pub fn normal(v: Value) -> Value {
            v & !(0b11111 << 22)
        }
        pub fn get() -> Value {
            let v: Value;
            // SAFETY: VMRS FPSCR (hard-float ABI: the FPU is on).
            unsafe {
                core::arch::asm!("vmrs {}, fpscr", out(reg) v, options(nomem, nostack, preserves_flags))
            };
            v
        }
        pub fn set(v: Value) {
            // SAFETY: a value read from FPSCR, or `normal` of one.
            unsafe { core::arch::asm!("vmsr fpscr, {}", in(reg) v, options(nomem, nostack)) };
        }
    }
    #[cfg(any(
        miri,
        not(any(
            target_arch = "x86_64",
            all(target_arch = "x86", target_feature = "sse"),
            target_arch = "aarch64",
            all(target_arch = "arm", target_abi = "eabihf")
        ))
    ))]
    pub(crate) mod reg {
        // Software floating point (Cortex-M0/M3, RISC-V without F), or a
        // mode this library does not set (x87, RISC-V's F extension): the
        // compiler's routines have no mode, or the caller keeps its own.
        // Miri (the tests under `cargo miri test`) runs no assembly.
        pub type Value = ();
        pub fn normal(_: Value) -> Value {}
        pub fn get() -> Value {}
        pub fn set(_: Value) {}
    }

    /// The default mode while it lives; the caller's again when dropped.
    pub struct DefaultMode {
        caller: Option<reg::Value>,
    }

    impl DefaultMode {
        /// Sets the default mode, if it is not the mode already.
        // Where there is no mode, `reg::Value` is `()`.
        #[allow(clippy::let_unit_value, clippy::unit_cmp)]
        pub fn enter() -> Self {
            let caller = reg::get();
            let normal = reg::normal(caller);
            if normal == caller {
                return DefaultMode { caller: None };
            }
            reg::set(normal);
            DefaultMode {
                caller: Some(caller),
            }
        }
    }

    impl Drop for DefaultMode {
        fn drop(&mut self) {
            if let Some(v) = self.caller {
                reg::set(v);
            }
        }
    }
}

/// Success.
pub const CHARLM_OK: i32 = 0;
/// A pointer the call needs is NULL.
pub const CHARLM_ERR_NULL: i32 = -1;
/// The model's bytes are not a usable model (truncated, damaged, another
/// format version, or inconsistent; `charlm info FILE` on a host says
/// which). The length given must be the file's exact size: bytes after it
/// (a flash sector's padding) make it unusable too.
pub const CHARLM_ERR_MODEL: i32 = -2;
/// The model is larger than this build's workspace (`CHARLM_MAX_*`).
pub const CHARLM_ERR_TOO_LARGE: i32 = -3;
/// The model's weight type is left out of this build (feature `f16` or
/// `int8`).
pub const CHARLM_ERR_WEIGHT_TYPE: i32 = -4;
/// A parameter is out of range: an unknown sampler, a `max_chars` above
/// `INT32_MAX`; with `CHARLM_SAMPLE`, a temperature that is not finite and
/// above 0, a `top_p` outside (0, 1], or top-k / top-p in a build without
/// them (feature `truncation`). `CHARLM_GREEDY` reads none of temperature,
/// `top_k` and `top_p`. (`top_k` itself has no upper limit: one above the
/// vocabulary keeps every character.)
pub const CHARLM_ERR_PARAMS: i32 = -5;
/// The prompt is not UTF-8, or has no character the model knows.
pub const CHARLM_ERR_PROMPT: i32 = -6;
/// Another call is using the workspace.
pub const CHARLM_ERR_BUSY: i32 = -7;
/// `charlm_self_test` failed: the Cortex-M4F kernel disagrees with the
/// portable one.
pub const CHARLM_ERR_SELF_TEST: i32 = -8;
/// `charlm_generate_loaded` without a model loaded by `charlm_load_model`.
pub const CHARLM_ERR_NO_MODEL: i32 = -9;

/// Pick the most likely character (no randomness).
pub const CHARLM_GREEDY: u32 = 0;
/// Draw from `softmax(logits / temperature)`, over the `top_k` most likely
/// characters and then the nucleus of mass `top_p` among them.
pub const CHARLM_SAMPLE: u32 = 1;

/// An LSTM (PyTorch's gate order i, f, g, o).
pub const CHARLM_LSTM: u32 = 0;
/// A GRU (r, z, n).
pub const CHARLM_GRU: u32 = 1;

/// IEEE half-precision weight matrices.
pub const CHARLM_F16: u32 = 0;
/// Signed 8-bit weight matrices with an f16 scale per row.
pub const CHARLM_I8: u32 = 1;

/// How to generate one text.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct charlm_params {
    /// `CHARLM_GREEDY` or `CHARLM_SAMPLE`.
    pub sampler: u32,
    /// With `CHARLM_SAMPLE`: above 0 (1 leaves the model's probabilities
    /// as they are; lower is more conservative).
    pub temperature: f32,
    /// With `CHARLM_SAMPLE`: only the `top_k` most likely characters (0:
    /// all).
    pub top_k: u16,
    /// With `CHARLM_SAMPLE`: then only the fewest most likely whose
    /// probabilities reach `top_p` (1: all).
    pub top_p: f32,
    /// Seed of the random number generator (PCG32): the same seed gives the
    /// same text.
    pub seed: u64,
    /// Characters to generate at most, 0 to `INT32_MAX` (the text also
    /// ends at `<eos>`; 0 runs and writes the prompt only).
    pub max_chars: u32,
}

/// What a model is (see `charlm_model_info`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct charlm_info {
    /// `CHARLM_LSTM` or `CHARLM_GRU`.
    pub cell: u32,
    /// Recurrent layers, 1 to 4.
    pub layers: u32,
    /// Hidden units per layer.
    pub hidden: u32,
    /// Ids: padding, the symbols, `<eos>`.
    pub vocab: u32,
    /// `CHARLM_F16` or `CHARLM_I8`.
    pub weights: u32,
    /// Weight multiply-accumulates per generated character.
    pub macs_per_char: u32,
    /// Bytes of RAM a workspace sized exactly to this model needs, in a
    /// build with this model's weight type alone (a build with both types,
    /// as hosted builds always are, adds `2 * layers * hidden` for an f16
    /// model). This library's workspace is sized to its `CHARLM_MAX_*`
    /// capacities instead.
    pub workspace_bytes: u32,
}

/// Receives generated text: `len` bytes of UTF-8 at `text` (one whole
/// character per call; not NUL-terminated, so not a C string), and the
/// `ctx` given to `charlm_generate`. Returns 0 to go on, or any other value
/// to end the text there (an output buffer that is full, a button
/// pressed): the call then returns the characters generated so far. It
/// must return: leaving it by `longjmp` (or a C++ exception) skips the
/// library's own return and leaves it busy for good.
pub type charlm_write_fn =
    Option<unsafe extern "C" fn(ctx: *mut c_void, text: *const c_char, len: usize) -> c_int>;

/// The workspace, sized to this build's capacities.
type Ws = Workspace<MAX_HIDDEN, MAX_LAYERS, MAX_VOCAB>;

/// The one workspace, and whether a call holds it.
struct Slot {
    busy: AtomicBool,
    ws: UnsafeCell<Ws>,
}

/// The model of `charlm_load_model`, over bytes the caller keeps; reached
/// only through `Slot::hold`. (A static of its own: its initial value is
/// not all zeros, and beside the workspace it would move the workspace
/// from `.bss` into `.data`, a copy in flash.)
struct Loaded(UnsafeCell<Option<Model<'static>>>);

// SAFETY: reached only through `Slot::hold`, one caller at a time.
unsafe impl Sync for Loaded {}

static LOADED: Loaded = Loaded(UnsafeCell::new(None));

// SAFETY: `ws` is only reached through `Slot::hold`, which hands it (and
// `LOADED`) to one caller at a time.
unsafe impl Sync for Slot {}

static SLOT: Slot = Slot {
    busy: AtomicBool::new(false),
    ws: UnsafeCell::new(Ws::new()),
};

impl Slot {
    /// Runs `f` on the workspace and the loaded model, or returns
    /// `CHARLM_ERR_BUSY` while another call holds them.
    fn hold(&self, f: impl FnOnce(&mut Ws, &mut Option<Model<'static>>) -> i32) -> i32 {
        if !self.take() {
            return CHARLM_ERR_BUSY;
        }
        let mode = fp::DefaultMode::enter();
        // SAFETY: `take` succeeded, so no other reference to either exists
        // until `busy` is cleared below.
        let status = f(unsafe { &mut *self.ws.get() }, unsafe {
            &mut *LOADED.0.get()
        });
        drop(mode);
        self.busy.store(false, Ordering::Release);
        status
    }

    #[cfg(target_has_atomic = "8")]
    fn take(&self) -> bool {
        self.busy
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// ARMv6-M (Cortex-M0/M0+) has no compare-and-swap: the load and the
    /// store run with interrupts masked (PRIMASK, restored as it was), so
    /// an interrupt cannot slip in between them on a single core.
    #[cfg(all(not(target_has_atomic = "8"), target_arch = "arm"))]
    fn take(&self) -> bool {
        cortex_m::interrupt::free(|_| self.take_unguarded())
    }

    /// RISC-V without the A extension (riscv32imc): the same, with
    /// machine-mode interrupts masked (`mstatus.MIE`, restored as it was).
    /// The library runs in machine mode there, as bare-metal RISC-V
    /// firmware does.
    #[cfg(all(
        not(target_has_atomic = "8"),
        target_arch = "riscv32",
        target_os = "none"
    ))]
    fn take(&self) -> bool {
        riscv::interrupt::free(|| self.take_unguarded())
    }

    /// Other cores without compare-and-swap: a load and a store, which an
    /// interrupt between the two can defeat. Do not call charlm from an
    /// interrupt there.
    #[cfg(all(
        not(target_has_atomic = "8"),
        not(target_arch = "arm"),
        not(all(target_arch = "riscv32", target_os = "none"))
    ))]
    fn take(&self) -> bool {
        self.take_unguarded()
    }

    #[cfg(not(target_has_atomic = "8"))]
    fn take_unguarded(&self) -> bool {
        if self.busy.load(Ordering::Acquire) {
            return false;
        }
        self.busy.store(true, Ordering::Release);
        true
    }
}

/// The status of a runtime error.
fn status_of(e: &Error) -> i32 {
    match e {
        Error::TooLarge { .. } => CHARLM_ERR_TOO_LARGE,
        Error::DTypeDisabled { .. } => CHARLM_ERR_WEIGHT_TYPE,
        Error::BadTemperature | Error::BadTopP => CHARLM_ERR_PARAMS,
        _ => CHARLM_ERR_MODEL,
    }
}

/// `len` bytes at `ptr` (an empty slice for length 0, whatever the pointer).
///
/// # Safety
/// Unless `len` is 0, `ptr` is non-null and points to `len` readable bytes
/// that stay unchanged for `'a`.
unsafe fn bytes<'a>(ptr: *const u8, len: usize) -> &'a [u8] {
    if len == 0 {
        &[]
    } else {
        // SAFETY: the caller's promise.
        unsafe { core::slice::from_raw_parts(ptr, len) }
    }
}

/// The validated model in the `len` bytes at `ptr`, or its status.
///
/// # Safety
/// As for `bytes`, when `ptr` is not NULL.
unsafe fn model_at<'a>(ptr: *const u8, len: usize) -> Result<Model<'a>, i32> {
    if ptr.is_null() {
        return Err(CHARLM_ERR_NULL);
    }
    // SAFETY: the caller's promise.
    Model::from_bytes(unsafe { bytes(ptr, len) }).map_err(|e| status_of(&e))
}

/// The sampler `p` asks for.
fn sampler(p: &charlm_params) -> Result<Sampler, i32> {
    let bad = |_| CHARLM_ERR_PARAMS;
    match p.sampler {
        CHARLM_GREEDY => Ok(Sampler::Greedy),
        #[cfg(feature = "truncation")]
        CHARLM_SAMPLE => {
            // above 0 here: the command line's convention below reads 0 as greedy
            charlm_runtime::Temperature::new(p.temperature).map_err(bad)?;
            Sampler::new(p.temperature, p.top_k, p.top_p).map_err(bad)
        }
        #[cfg(not(feature = "truncation"))]
        CHARLM_SAMPLE if p.top_k == 0 && p.top_p == 1.0 => {
            charlm_runtime::Temperature::new(p.temperature)
                .map(Sampler::Temperature)
                .map_err(bad)
        }
        _ => Err(CHARLM_ERR_PARAMS),
    }
}

/// Checks that `model_len` bytes at `model` are a model this build can run
/// and, when `info` is not NULL, describes it there.
///
/// Returns `CHARLM_OK`, or `CHARLM_ERR_NULL`, `CHARLM_ERR_MODEL`,
/// `CHARLM_ERR_TOO_LARGE` or `CHARLM_ERR_WEIGHT_TYPE`; `info` is filled
/// in for a model that is only too large for this build.
///
/// # Safety
/// `model` points to `model_len` readable bytes; `info` is NULL or points to
/// a writable `charlm_info`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn charlm_model_info(
    model: *const u8,
    model_len: usize,
    info: *mut charlm_info,
) -> i32 {
    let _mode = fp::DefaultMode::enter();
    // SAFETY: the caller's promise.
    let m = match unsafe { model_at(model, model_len) } {
        Ok(m) => m,
        Err(status) => return status,
    };
    let a = m.arch();
    if !info.is_null() {
        let (h, l, v) = (a.hidden as usize, a.layers as usize, a.vocab as usize);
        let d = charlm_info {
            cell: match a.cell {
                CellKind::Lstm => CHARLM_LSTM,
                CellKind::Gru => CHARLM_GRU,
            },
            layers: a.layers.into(),
            hidden: a.hidden.into(),
            vocab: a.vocab.into(),
            weights: match m.weights() {
                DType::F16 => CHARLM_F16,
                DType::I8 => CHARLM_I8,
            },
            macs_per_char: u32::try_from(a.macs_per_char()).unwrap_or(u32::MAX),
            workspace_bytes: u32::try_from(charlm_runtime::cell::workspace_bytes(
                h,
                l,
                v,
                m.weights() == DType::I8,
            ))
            .unwrap_or(u32::MAX),
        };
        // SAFETY: the caller's promise.
        unsafe { info.write(d) };
    }
    Ws::fits(&m).map_or_else(|e| status_of(&e), |()| CHARLM_OK)
}

/// What to generate: a prompt checked to be UTF-8, a sampler, the rest of
/// the parameters and where the text goes.
struct Request<'p> {
    prompt: &'p str,
    sampler: Sampler,
    params: charlm_params,
    write: unsafe extern "C" fn(ctx: *mut c_void, text: *const c_char, len: usize) -> c_int,
    ctx: *mut c_void,
}

impl Request<'_> {
    /// Checks the arguments every generating call shares.
    ///
    /// # Safety
    /// As for `charlm_generate`'s `prompt`, `params`, `write` and `ctx`.
    unsafe fn new(
        prompt: *const c_char,
        prompt_len: usize,
        params: *const charlm_params,
        write: charlm_write_fn,
        ctx: *mut c_void,
    ) -> Result<Self, i32> {
        let Some(write) = write else {
            return Err(CHARLM_ERR_NULL);
        };
        if params.is_null() || (prompt.is_null() && prompt_len > 0) {
            return Err(CHARLM_ERR_NULL);
        }
        // SAFETY: the caller's promise.
        let (params, prompt) = unsafe { (*params, bytes(prompt.cast(), prompt_len)) };
        let prompt = core::str::from_utf8(prompt).map_err(|_| CHARLM_ERR_PROMPT)?;
        // The count returned must fit the return value.
        if i32::try_from(params.max_chars).is_err() {
            return Err(CHARLM_ERR_PARAMS);
        }
        Ok(Request {
            prompt,
            sampler: sampler(&params)?,
            params,
            write,
            ctx,
        })
    }

    /// Feeds the prompt to `m` in `ws`, writes its known characters, then
    /// generates; the number of characters generated, or a status.
    fn run(&self, m: &Model<'_>, ws: &mut Ws) -> i32 {
        let limit = usize::try_from(self.params.max_chars).unwrap_or(usize::MAX);
        let seed = SeededRng::new(self.params.seed);
        let mut g = match Generator::with_kernel(m, ws, self.sampler, seed, kernel()) {
            Ok(g) => g.with_limit(limit),
            Err(e) => return status_of(&e),
        };
        if g.feed(self.prompt).fed == 0 {
            return CHARLM_ERR_PROMPT;
        }
        // One whole character to the caller; true when it asks to stop.
        let stop = |c: char| {
            let mut buf = [0u8; 4];
            let s = c.encode_utf8(&mut buf);
            // SAFETY: the caller's promise; `s` is `s.len()` readable bytes.
            unsafe { (self.write)(self.ctx, s.as_ptr().cast(), s.len()) != 0 }
        };
        let vocab = m.vocab();
        let mut known = self.prompt.chars().filter(|&c| vocab.id_of(c).is_some());
        if known.any(stop) {
            return 0;
        }
        // At most `max_chars`, which `Request::new` checked fits an i32.
        let mut generated = 0i32;
        for c in g.by_ref() {
            generated = generated.saturating_add(1);
            if stop(c) {
                break;
            }
        }
        generated
    }
}

/// Generates one text: runs the `prompt_len` bytes of UTF-8 at `prompt`
/// through the model (characters it does not know are skipped), then
/// generates up to `params->max_chars` characters, ending early at
/// `<eos>`. `write` receives the prompt's known characters, then each
/// generated one as it is produced (with `ctx`), and may end the text by
/// returning nonzero. A character is 1 to 4
/// bytes: a buffer that collects the whole text needs up to 4 bytes per
/// prompt character and per `max_chars`. The calls to `write` less the
/// value returned are the prompt characters the model ran; the prompt's
/// characters less those are the ones it skipped. An empty prompt, or one
/// with no character the model knows, is `CHARLM_ERR_PROMPT`: a text
/// starts from at least one.
///
/// The call computes, and checks its parameters, in round-to-nearest
/// without flush-to-zero and with floating-point exceptions masked,
/// whatever the caller's floating-point mode (`-ffast-math` sets
/// flush-to-zero), and gives the caller's mode back when it returns;
/// `write` runs in the call's mode.
///
/// Each call validates the model first, checksum and every weight
/// included. To validate once and generate many texts, use
/// `charlm_load_model` and `charlm_generate_loaded`.
///
/// Returns the number of characters generated (0 or more), or
/// `CHARLM_ERR_NULL`, `CHARLM_ERR_MODEL`, `CHARLM_ERR_TOO_LARGE`,
/// `CHARLM_ERR_WEIGHT_TYPE`, `CHARLM_ERR_PARAMS`, `CHARLM_ERR_PROMPT`
/// or `CHARLM_ERR_BUSY`; on an error `write` is not called.
///
/// # Safety
/// `model` points to `model_len` readable bytes, `prompt` to `prompt_len`,
/// `params` to a `charlm_params`; `write` is safe to call with `ctx` and a
/// pointer to that many bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn charlm_generate(
    model: *const u8,
    model_len: usize,
    prompt: *const c_char,
    prompt_len: usize,
    params: *const charlm_params,
    write: charlm_write_fn,
    ctx: *mut c_void,
) -> i32 {
    let _mode = fp::DefaultMode::enter();
    // The model first: with it and the prompt both wrong, the model is
    // what to fix.
    // SAFETY: the caller's promise.
    let m = match unsafe { model_at(model, model_len) } {
        Ok(m) => m,
        Err(status) => return status,
    };
    // SAFETY: the caller's promise.
    let request = match unsafe { Request::new(prompt, prompt_len, params, write, ctx) } {
        Ok(r) => r,
        Err(status) => return status,
    };
    SLOT.hold(|ws, _| request.run(&m, ws))
}

/// Validates the `model_len` bytes at `model` once and keeps the model for
/// `charlm_generate_loaded`, replacing any model loaded before. A model
/// that fails validation leaves none loaded; a NULL `model`
/// (`CHARLM_ERR_NULL`) or a call while another is generating
/// (`CHARLM_ERR_BUSY`) leaves the loaded model as it was.
///
/// Returns `CHARLM_OK`, or `CHARLM_ERR_NULL`, `CHARLM_ERR_MODEL`,
/// `CHARLM_ERR_TOO_LARGE`, `CHARLM_ERR_WEIGHT_TYPE` or `CHARLM_ERR_BUSY`.
///
/// # Safety
/// `model` points to `model_len` readable bytes that stay readable and
/// unchanged until the next `charlm_load_model` or `charlm_unload_model`
/// (a model in flash, or a buffer the program keeps).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn charlm_load_model(model: *const u8, model_len: usize) -> i32 {
    let _mode = fp::DefaultMode::enter();
    // (a NULL leaves the loaded model as it is)
    if model.is_null() {
        return CHARLM_ERR_NULL;
    }
    // SAFETY: the caller's promise, for as long as the model stays loaded.
    let m: Result<Model<'static>, i32> = unsafe { model_at(model, model_len) };
    SLOT.hold(|ws, loaded| {
        match m.and_then(|m| ws.check(&m).map(|()| m).map_err(|e| status_of(&e))) {
            Ok(m) => {
                *loaded = Some(m);
                CHARLM_OK
            }
            Err(status) => {
                *loaded = None;
                status
            }
        }
    })
}

/// Forgets the loaded model (its bytes may then change or go). Returns
/// `CHARLM_OK`, or `CHARLM_ERR_BUSY` while a text is being generated.
#[unsafe(no_mangle)]
pub extern "C" fn charlm_unload_model() -> i32 {
    SLOT.hold(|_, loaded| {
        *loaded = None;
        CHARLM_OK
    })
}

/// `charlm_generate` on the model of `charlm_load_model`, without
/// validating it again.
///
/// Returns what `charlm_generate` returns, or `CHARLM_ERR_NO_MODEL` when
/// none is loaded.
///
/// # Safety
/// As for `charlm_generate`'s `prompt`, `params`, `write` and `ctx`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn charlm_generate_loaded(
    prompt: *const c_char,
    prompt_len: usize,
    params: *const charlm_params,
    write: charlm_write_fn,
    ctx: *mut c_void,
) -> i32 {
    let _mode = fp::DefaultMode::enter();
    // SAFETY: the caller's promise.
    let request = match unsafe { Request::new(prompt, prompt_len, params, write, ctx) } {
        Ok(r) => r,
        Err(status) => return status,
    };
    SLOT.hold(|ws, loaded| match loaded {
        Some(m) => request.run(m, ws),
        None => CHARLM_ERR_NO_MODEL,
    })
}

/// A short English description of a status (a static, NUL-terminated
/// string): "ok (characters generated)" for a count above 0, as
/// `charlm_generate` returns, and "unknown status" for a negative value
/// that is none of them.
#[unsafe(no_mangle)]
pub extern "C" fn charlm_status_text(status: i32) -> *const c_char {
    let text: &'static core::ffi::CStr = match status {
        CHARLM_OK => c"ok",
        CHARLM_ERR_NULL => c"a required pointer is NULL",
        CHARLM_ERR_MODEL => {
            c"not a usable charlm model (truncated, damaged, another format version, or a length that is not the file's exact size)"
        }
        CHARLM_ERR_TOO_LARGE => {
            c"the model is larger than this build's workspace (CHARLM_MAX_HIDDEN, _LAYERS, _VOCAB)"
        }
        CHARLM_ERR_WEIGHT_TYPE => {
            c"this build leaves out the model's weight type (cargo feature f16 or int8)"
        }
        CHARLM_ERR_PARAMS => {
            c"a parameter is out of range (sampler, temperature, top_p, max_chars; top_k / top_p in a build without them)"
        }
        CHARLM_ERR_PROMPT => c"the prompt is not UTF-8 or has no character the model knows",
        CHARLM_ERR_BUSY => c"another call is generating",
        CHARLM_ERR_NO_MODEL => c"no model is loaded (charlm_load_model)",
        CHARLM_ERR_SELF_TEST => c"self-test failed: the kernel disagrees with the portable one",
        s if s > 0 => c"ok (characters generated)",
        _ => c"unknown status",
    };
    text.as_ptr()
}

/// Checks, on the device, what the text being the same bits as on the
/// host rests on: on a Cortex-M4F, that the `VCVTB`/`VMLA` kernel gives the
/// portable kernel's bits on random rows and on every finite half, in the
/// floating-point mode every call sets (see `charlm_generate`). Elsewhere
/// there is nothing to check. Returns `CHARLM_OK` or
/// `CHARLM_ERR_SELF_TEST`. Call it once at start-up: it converts every
/// finite half, so it is not instant.
#[unsafe(no_mangle)]
pub extern "C" fn charlm_self_test() -> i32 {
    #[cfg(charlm_m4f)]
    {
        let _mode = fp::DefaultMode::enter();
        if kernel_m4f::self_test().is_err() {
            return CHARLM_ERR_SELF_TEST;
        }
    }
    CHARLM_OK
}

/// The workspace's capacities in this build: hidden units, layers and
/// vocabulary (ids); each pointer may be NULL.
///
/// # Safety
/// Each pointer is NULL or points to a writable `uint32_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn charlm_capacity(hidden: *mut u32, layers: *mut u32, vocab: *mut u32) {
    for (p, v) in [
        (hidden, MAX_HIDDEN),
        (layers, MAX_LAYERS),
        (vocab, MAX_VOCAB),
    ] {
        if !p.is_null() {
            // SAFETY: the caller's promise; the capacities fit (build.rs).
            unsafe { p.write(v as u32) };
        }
    }
}

#[cfg(all(target_os = "none", not(feature = "no-panic")))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    // Unreachable in practice: the no-panic build proves that no panic path
    // survives optimisation.
    loop {
        core::hint::spin_loop();
    }
}

/// With `--features no-panic` every panic path ends in a call to a function
/// that does not exist, so a final link fails unless none is left.
#[cfg(all(target_os = "none", feature = "no-panic"))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    unsafe extern "C" {
        fn charlm_c_has_a_reachable_panic() -> !;
    }
    // SAFETY: never called when the link succeeds.
    unsafe { charlm_c_has_a_reachable_panic() }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODEL: &[u8] = include_bytes!("../../tests/fixtures/gru1.clm");

    /// The library has one workspace, and the tests run in parallel: each
    /// takes this first (a second call meanwhile would be busy).
    fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
        static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
        LOCK.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn params(max_chars: u32) -> charlm_params {
        charlm_params {
            sampler: CHARLM_SAMPLE,
            temperature: 0.9,
            top_k: 0,
            top_p: 1.0,
            seed: 3,
            max_chars,
        }
    }

    unsafe extern "C" fn collect(ctx: *mut c_void, text: *const c_char, len: usize) -> c_int {
        // SAFETY: `ctx` is the `Vec<u8>` the tests pass, `text` `len` bytes.
        unsafe {
            let out = &mut *ctx.cast::<Vec<u8>>();
            out.extend_from_slice(core::slice::from_raw_parts(text.cast::<u8>(), len));
        }
        0
    }

    fn generate(model: &[u8], prompt: &str, p: &charlm_params) -> (i32, String) {
        generate_bytes(model, prompt.as_bytes(), p)
    }

    /// `generate` with a prompt of any bytes.
    fn generate_bytes(model: &[u8], prompt: &[u8], p: &charlm_params) -> (i32, String) {
        let mut out = Vec::new();
        let n = unsafe {
            charlm_generate(
                model.as_ptr(),
                model.len(),
                prompt.as_ptr().cast(),
                prompt.len(),
                p,
                Some(collect),
                (&raw mut out).cast(),
            )
        };
        (n, String::from_utf8(out).unwrap())
    }

    /// Tries to generate again from inside the callback: the result goes
    /// into the `i32` behind `ctx`.
    unsafe extern "C" fn reenter(ctx: *mut c_void, _: *const c_char, _: usize) -> c_int {
        let p = params(5);
        let prompt = "ein";
        // SAFETY: `ctx` is the tests' `i32`.
        unsafe {
            *ctx.cast::<i32>() = charlm_generate(
                MODEL.as_ptr(),
                MODEL.len(),
                prompt.as_ptr().cast(),
                prompt.len(),
                &p,
                Some(collect_nothing),
                core::ptr::null_mut(),
            );
        }
        0
    }

    unsafe extern "C" fn collect_nothing(_: *mut c_void, _: *const c_char, _: usize) -> c_int {
        0
    }

    /// A caller in `-ffast-math` mode (x86: MXCSR's flush-to-zero and
    /// denormals-are-zero) gets the same text as in the default mode, and
    /// its mode back. (Not under Miri, which runs no assembly.)
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    #[test]
    fn a_caller_that_flushes_denormals_gets_the_same_text_and_its_mode_back() {
        use charlm_runtime::format::ModelFile;
        let _one = one_at_a_time();
        // The output layer's weights made subnormal halves (sign and
        // mantissa kept) and its biases zero: DAZ would read every weight
        // as 0 and every logit would tie.
        let body = ModelFile::decode(MODEL).unwrap().body;
        let out_w: Vec<u8> = (body.out_w.data.as_chunks::<2>().0.iter())
            .flat_map(|&b| (u16::from_le_bytes(b) & 0x83ff).to_le_bytes())
            .collect();
        let out_b = vec![0u8; body.out_b.data.len()];
        let mut file = ModelFile::decode(MODEL).unwrap();
        file.body.out_w.data = &out_w;
        file.body.out_b.data = &out_b;
        let model = file.encode().unwrap();
        let mut p = params(40);
        p.sampler = CHARLM_GREEDY;
        let expected = generate(&model, "ein ", &p);
        let caller = fp::reg::get();
        let fast_math = caller | 1 << 15 | 1 << 6;
        fp::reg::set(fast_math);
        let got = generate(&model, "ein ", &p);
        let after = fp::reg::get();
        fp::reg::set(caller);
        assert_eq!(
            after & !0x3f,
            fast_math & !0x3f,
            "the caller's mode was not restored"
        );
        assert_eq!(got, expected);
    }

    #[test]
    fn a_text_counts_its_generated_characters_and_repeats_with_its_seed() {
        let _one = one_at_a_time();
        let (n, text) = generate(MODEL, "ein ", &params(40));
        assert!(n > 0);
        assert_eq!(text.chars().count(), "ein ".chars().count() + n as usize);
        assert_eq!(generate(MODEL, "ein ", &params(40)), (n, text.clone()));
        let mut other = params(40);
        other.seed = 4;
        assert_ne!(generate(MODEL, "ein ", &other).1, text);
        // greedy ignores the seed
        let mut g = params(40);
        g.sampler = CHARLM_GREEDY;
        let greedy = generate(MODEL, "ein ", &g);
        g.seed = 99;
        assert_eq!(generate(MODEL, "ein ", &g), greedy);
    }

    /// One call to `write` per character: the calls less the value
    /// returned are the prompt characters the model ran, and the rest of
    /// the prompt is what it skipped (as charlm.h tells the caller).
    #[test]
    fn the_prompt_characters_skipped_can_be_counted_from_the_calls() {
        let _one = one_at_a_time();
        let prompt = "eXin\u{1F600} Zq";
        let model = charlm_runtime::Model::from_bytes(MODEL).unwrap();
        let vocab = model.vocab();
        let ran: String = prompt
            .chars()
            .filter(|&c| vocab.id_of(c).is_some())
            .collect();
        assert!(ran.chars().count() < prompt.chars().count() && !ran.is_empty());
        let (n, text) = generate(MODEL, prompt, &params(10));
        assert!(n > 0);
        assert!(text.starts_with(&ran), "{text:?}");
        // Count the calls themselves.
        unsafe extern "C" fn count(ctx: *mut c_void, _: *const c_char, _: usize) -> c_int {
            // SAFETY: `ctx` is the `usize` below.
            unsafe { *ctx.cast::<usize>() += 1 };
            0
        }
        let mut calls = 0usize;
        let returned = unsafe {
            charlm_generate(
                MODEL.as_ptr(),
                MODEL.len(),
                prompt.as_ptr().cast(),
                prompt.len(),
                &params(10),
                Some(count),
                (&raw mut calls).cast(),
            )
        };
        assert_eq!(returned, n);
        assert_eq!(calls - n as usize, ran.chars().count());
        assert_eq!(calls, text.chars().count());
    }

    /// Ends the text after the number of calls in the `usize` behind
    /// `ctx` (counting down).
    unsafe extern "C" fn stop_after(ctx: *mut c_void, _: *const c_char, _: usize) -> c_int {
        // SAFETY: `ctx` is the tests' `usize`.
        let left = unsafe { &mut *ctx.cast::<usize>() };
        *left = left.saturating_sub(1);
        c_int::from(*left == 0)
    }

    /// `write` returning nonzero ends the text at once: the call returns
    /// the characters generated so far (0 while the prompt is written), and
    /// the next call is free to run.
    #[test]
    fn the_writer_can_end_a_text_early() {
        let _one = one_at_a_time();
        let (full, text) = generate(MODEL, "ein ", &params(40));
        assert!(full > 10, "{full}");
        let prompt_chars = "ein ".chars().count();
        for (calls, expected) in [(1, 0), (prompt_chars, 0), (prompt_chars + 3, 3)] {
            let mut left = calls;
            let n = unsafe {
                charlm_generate(
                    MODEL.as_ptr(),
                    MODEL.len(),
                    c"ein ".as_ptr(),
                    4,
                    &params(40),
                    Some(stop_after),
                    (&raw mut left).cast(),
                )
            };
            assert_eq!((n, left), (expected, 0), "stopped after {calls} calls");
        }
        assert_eq!(generate(MODEL, "ein ", &params(40)), (full, text));
    }

    #[test]
    fn a_call_from_inside_a_call_is_busy_and_the_workspace_is_free_after() {
        let _one = one_at_a_time();
        let p = params(3);
        let prompt = "ein";
        let mut nested = 1i32;
        let n = unsafe {
            charlm_generate(
                MODEL.as_ptr(),
                MODEL.len(),
                prompt.as_ptr().cast(),
                prompt.len(),
                &p,
                Some(reenter),
                (&raw mut nested).cast(),
            )
        };
        assert!(n >= 0, "{n}");
        assert_eq!(nested, CHARLM_ERR_BUSY);
        assert!(generate(MODEL, "ein", &params(3)).0 >= 0);
    }

    #[test]
    fn bad_arguments_are_statuses() {
        let _one = one_at_a_time();
        let p = params(5);
        let null = unsafe {
            charlm_generate(
                core::ptr::null(),
                0,
                c"ein".as_ptr(),
                3,
                &p,
                Some(collect_nothing),
                core::ptr::null_mut(),
            )
        };
        assert_eq!(null, CHARLM_ERR_NULL);
        let no_writer = unsafe {
            charlm_generate(
                MODEL.as_ptr(),
                MODEL.len(),
                c"ein".as_ptr(),
                3,
                &p,
                None,
                core::ptr::null_mut(),
            )
        };
        assert_eq!(no_writer, CHARLM_ERR_NULL);
        let not_utf8 = [0xffu8, 0xfe];
        assert_eq!(
            generate_bytes(MODEL, &not_utf8, &p),
            (CHARLM_ERR_PROMPT, String::new())
        );
        assert_eq!(generate(MODEL, "", &p).0, CHARLM_ERR_PROMPT);
        assert_eq!(generate(&MODEL[..100], "ein", &p).0, CHARLM_ERR_MODEL);
        // (a max_chars whose count the return value could not hold)
        for (sampler, temperature, top_p, max_chars) in [
            (2, 1.0, 1.0, 5),
            (CHARLM_SAMPLE, 0.0, 1.0, 5),
            (CHARLM_SAMPLE, f32::NAN, 1.0, 5),
            (CHARLM_SAMPLE, 1.0, 0.0, 5),
            (CHARLM_GREEDY, 1.0, 1.0, 1 << 31),
        ] {
            let q = charlm_params {
                sampler,
                temperature,
                top_p,
                max_chars,
                ..params(5)
            };
            assert_eq!(
                generate(MODEL, "ein", &q),
                (CHARLM_ERR_PARAMS, String::new())
            );
        }
        // nothing is written on an error
        assert_eq!(generate(&MODEL[..100], "ein", &p).1, "");
        // a damaged model is named before a bad prompt
        assert_eq!(
            generate_bytes(&MODEL[..100], &not_utf8, &p).0,
            CHARLM_ERR_MODEL
        );
    }

    fn generate_loaded(prompt: &str, p: &charlm_params) -> (i32, String) {
        let mut out = Vec::new();
        let n = unsafe {
            charlm_generate_loaded(
                prompt.as_ptr().cast(),
                prompt.len(),
                p,
                Some(collect),
                (&raw mut out).cast(),
            )
        };
        (n, String::from_utf8(out).unwrap())
    }

    #[test]
    fn a_loaded_model_gives_the_texts_of_the_model_passed_each_time() {
        let _one = one_at_a_time();
        assert_eq!(charlm_unload_model(), CHARLM_OK);
        assert_eq!(generate_loaded("ein", &params(5)).0, CHARLM_ERR_NO_MODEL);
        assert_eq!(
            unsafe { charlm_load_model(MODEL.as_ptr(), MODEL.len()) },
            CHARLM_OK
        );
        let mut greedy = params(30);
        greedy.sampler = CHARLM_GREEDY;
        for p in [params(30), greedy] {
            for prompt in ["ein ", "über"] {
                let loaded = generate_loaded(prompt, &p);
                assert!(loaded.0 > 0, "{loaded:?}");
                assert_eq!(loaded, generate(MODEL, prompt, &p));
            }
        }
        // arguments are still checked
        let mut bad = params(5);
        bad.temperature = -1.0;
        assert_eq!(
            generate_loaded("ein", &bad),
            (CHARLM_ERR_PARAMS, String::new())
        );
        // a model that fails to load leaves none loaded
        assert_eq!(
            unsafe { charlm_load_model(MODEL.as_ptr(), 100) },
            CHARLM_ERR_MODEL
        );
        assert_eq!(generate_loaded("ein", &params(5)).0, CHARLM_ERR_NO_MODEL);
        assert_eq!(
            unsafe { charlm_load_model(core::ptr::null(), 0) },
            CHARLM_ERR_NULL
        );
    }

    #[test]
    fn info_describes_the_model_and_null_is_refused() {
        let mut info = charlm_info::default();
        assert_eq!(
            unsafe { charlm_model_info(MODEL.as_ptr(), MODEL.len(), &mut info) },
            CHARLM_OK
        );
        assert_eq!(
            (
                info.cell,
                info.layers,
                info.hidden,
                info.vocab,
                info.weights
            ),
            (CHARLM_GRU, 1, 20, 36, CHARLM_F16)
        );
        assert_eq!(info.macs_per_char, 1900);
        assert_eq!(
            unsafe { charlm_model_info(MODEL.as_ptr(), MODEL.len(), core::ptr::null_mut()) },
            CHARLM_OK
        );
        assert_eq!(
            unsafe { charlm_model_info(core::ptr::null(), 0, &mut info) },
            CHARLM_ERR_NULL
        );
    }

    #[test]
    fn every_status_has_its_own_text() {
        let all = [
            CHARLM_OK,
            CHARLM_ERR_NULL,
            CHARLM_ERR_MODEL,
            CHARLM_ERR_TOO_LARGE,
            CHARLM_ERR_WEIGHT_TYPE,
            CHARLM_ERR_PARAMS,
            CHARLM_ERR_PROMPT,
            CHARLM_ERR_BUSY,
            CHARLM_ERR_SELF_TEST,
            CHARLM_ERR_NO_MODEL,
            -10,
        ];
        let texts: std::collections::HashSet<_> = all
            .iter()
            .map(|&s| unsafe { core::ffi::CStr::from_ptr(charlm_status_text(s)) })
            .collect();
        assert_eq!(texts.len(), all.len());
        // A count is no error; an unknown negative value is unknown.
        let text = |s| unsafe { core::ffi::CStr::from_ptr(charlm_status_text(s)) };
        assert_eq!(text(7), c"ok (characters generated)");
        assert_eq!(text(i32::MIN), c"unknown status");
    }
}
