//! The device: context, stream, cuBLAS handle, loaded kernels; device memory
//! as bounds-checked ranges; one typed launcher per kernel that checks every
//! range against the shape before the `unsafe` launch.
//!
//! Why ranges rather than cudarc's `CudaView`s: the recurrence reads rows of
//! step `t` and writes rows of step `t + 1` of the same buffer, which Rust's
//! one-`&mut`-per-allocation rule cannot express with views. Memory is still
//! allocated and freed by cudarc's safe `CudaSlice` (RAII); a [`P`] is a
//! checked window into one, and every launcher asserts that each window is
//! long enough for the shape it is given. Everything runs on one stream, in
//! order, so no event tracking is needed (it is switched off: it would cost
//! two event records per kernel argument). The stream is one of charlm's own,
//! not the legacy default stream, which cannot be captured into a CUDA graph
//! ([`Dev::begin_capture`]).

use std::cell::{Cell, RefCell};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use cudarc::cublas::{CudaBlas, sys as blas_sys};
use cudarc::driver::{
    CudaContext, CudaEvent, CudaFunction, CudaGraph, CudaSlice, CudaStream, DevicePtr, DeviceRepr,
    LaunchConfig, PinnedHostSlice, PushKernelArg, ValidAsZeroBits, result as drv,
};
use cudarc::nvrtc::Ptx;

use super::CudaError;
use super::nvrtc::{self, Source};
use super::profile::Profile;
use crate::errln;

/// A device allocation of `len` elements of `T`.
pub struct Buf<T> {
    _mem: CudaSlice<T>,
    ptr: u64,
    len: usize,
}

/// A window `[ptr, ptr + len)` into a [`Buf`], checked when it was cut.
#[derive(Debug)]
pub struct P<T> {
    ptr: u64,
    len: usize,
    _t: PhantomData<T>,
}

impl<T> Clone for P<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for P<T> {}

impl<T> Buf<T> {
    /// The whole buffer.
    pub fn all(&self) -> P<T> {
        P {
            ptr: self.ptr,
            len: self.len,
            _t: PhantomData,
        }
    }

    /// Elements `off..off + len`.
    pub fn at(&self, off: usize, len: usize) -> P<T> {
        self.all().sub(off, len)
    }
}

impl<T> P<T> {
    /// Elements `off..off + len` of this window.
    pub fn sub(self, off: usize, len: usize) -> P<T> {
        assert!(
            off + len <= self.len,
            "device range {off}..{} outside a window of {}",
            off + len,
            self.len
        );
        P {
            ptr: self.ptr + (off * std::mem::size_of::<T>()) as u64,
            len,
            _t: PhantomData,
        }
    }

    /// The same bytes as elements of `U` (whole elements, aligned).
    pub fn view<U>(self) -> P<U> {
        let bytes = self.len * std::mem::size_of::<T>();
        let size = std::mem::size_of::<U>();
        assert!(
            bytes.is_multiple_of(size) && self.ptr.is_multiple_of(std::mem::align_of::<U>() as u64),
            "a device range of {bytes} bytes at {:#x} viewed as elements of {size} bytes",
            self.ptr
        );
        P {
            ptr: self.ptr,
            len: bytes / size,
            _t: PhantomData,
        }
    }

    /// Asserts room for `n` elements (what a kernel will touch).
    fn need(self, n: usize, what: &str) -> u64 {
        assert!(
            self.len >= n,
            "{what}: needs {n} elements, the range has {}",
            self.len
        );
        self.ptr
    }
}

/// The loaded kernels.
struct Kernels {
    lstm_forward: CudaFunction,
    lstm_backward: CudaFunction,
    gru_forward: CudaFunction,
    gru_backward: CudaFunction,
    lstm_forward_seq: CudaFunction,
    lstm_backward_seq: CudaFunction,
    gru_forward_seq: CudaFunction,
    gru_backward_seq: CudaFunction,
    embed_forward: CudaFunction,
    add_bias: CudaFunction,
    dropout_forward: CudaFunction,
    mul_inplace: CudaFunction,
    table_backward: CudaFunction,
    softmax_xent: CudaFunction,
    sum_f64: CudaFunction,
    sumsq_partials: CudaFunction,
    clip_coef: CudaFunction,
    guard: CudaFunction,
    adam_step: CudaFunction,
    rmsprop_step: CudaFunction,
}

/// Threads per block of the elementwise kernels.
const THREADS: u32 = 256;
/// Blocks of the gradient-norm reduction (a fixed number: the same sums on
/// every run).
pub const NORM_BLOCKS: usize = 240;

/// Threads per block of the sequence kernels (a multiple of 32).
const SEQ_THREADS: u32 = 256;
/// About this many blocks share a layer's units by default: fewer make each
/// step's grid barrier cheaper, more spread the products over more
/// multiprocessors (`CHARLM_CUDA_SEQ_BLOCKS` aims at another number).
pub const SEQ_BLOCKS: usize = 32;

/// How the sequence kernels (`*_seq` in kernels/cells.cu) split one layer:
/// `units` hidden units per block, `blocks` blocks, and how each direction's
/// kernel runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeqPlan {
    /// Hidden units per block (the last block may have fewer).
    pub units: usize,
    /// Blocks: `ceil(h / units)`.
    pub blocks: usize,
    /// The forward kernel.
    pub fwd: SeqSide,
    /// The backward kernel.
    pub bwd: SeqSide,
}

/// One direction's sequence kernel in a [`SeqPlan`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeqSide {
    /// Whether each step's inputs from other blocks (`h_{t-1}` forward, the
    /// step's gate gradients backward) are copied into shared memory before
    /// the products read them: one round trip to L2 per step instead of one
    /// per product term.
    pub staged: bool,
    /// Each thread computes a `tile` x `tile` block of a step's products
    /// (4, 2 or 1; see [`seq_tile`]).
    pub tile: u8,
    /// Dynamic shared memory per block, bytes.
    smem: usize,
}

impl SeqSide {
    /// Needs `base` bytes of shared memory, `stage` more to stage its
    /// inputs (staged when that fits in `smem`), and computes a `rows` x
    /// `cols` product per step.
    fn new(base: usize, stage: usize, smem: usize, rows: usize, cols: usize) -> SeqSide {
        let staged = base + stage <= smem;
        SeqSide {
            staged,
            tile: seq_tile(rows, cols),
            smem: base + if staged { stage } else { 0 },
        }
    }
}

/// The tile of a sequence kernel's per-step product, `rows` x `cols`
/// outputs per block: the largest of 4, 2 and 1 that leaves at most 4 threads
/// per tile (a larger tile loads each value from shared memory for more
/// products; more threads per tile combine more partial sums).
pub fn seq_tile(rows: usize, cols: usize) -> u8 {
    let want = SEQ_THREADS as usize / 4;
    let tiles = |t: usize| rows.div_ceil(t) * cols.div_ceil(t);
    if tiles(4) >= want {
        4
    } else if tiles(2) >= want {
        2
    } else {
        1
    }
}

impl SeqPlan {
    /// A plan for `g` gates, `h` hidden units and `rows` sequences on a GPU
    /// with `sms` multiprocessors and `smem` bytes of shared memory per block
    /// (after opting in): about `aim` blocks ([`SEQ_BLOCKS`] by default;
    /// at most one per multiprocessor), more when that stages more (or when
    /// a block's slice of `W_hh` would not fit), never more blocks than
    /// multiprocessors, so that a cooperative launch always fits. `None`
    /// when no split fits.
    pub fn new(
        g: usize,
        h: usize,
        rows: usize,
        sms: usize,
        smem: usize,
        aim: usize,
    ) -> Option<SeqPlan> {
        if h == 0 || rows == 0 {
            return None;
        }
        // one step's inputs from other blocks, as staged: forward h_{t-1},
        // backward the [rows, g*h] gate gradients (with the weights' stride)
        let (fwd_stage, bwd_stage) = (4 * rows * (h | 1), 4 * rows * ((g * h) | 1));
        let mut best: Option<SeqPlan> = None;
        for units in (1..=h.div_ceil(aim.clamp(1, sms.max(1)))).rev() {
            let blocks = h.div_ceil(units);
            if blocks > sms {
                break;
            }
            // floats, as kernels/cells.cu lays them out: forward the W_hh
            // rows (odd stride) and one step's products, plus h_{t-1} when
            // staged; backward the W_hh columns (odd stride) and two
            // [rows, units] carries, plus one step's [rows, g*h] gate
            // gradients when staged (staged rows with the weights' stride)
            let fwd = 4 * (g * units * (h | 1) + rows * g * units);
            let bwd = 4 * (units * ((g * h) | 1) + 2 * rows * units);
            if fwd > smem || bwd > smem {
                continue;
            }
            let plan = SeqPlan {
                units,
                blocks,
                fwd: SeqSide::new(fwd, fwd_stage, smem, rows, g * units),
                bwd: SeqSide::new(bwd, bwd_stage, smem, rows, units),
            };
            // fewer blocks only where they stage as much
            if best.is_none_or(|b| plan.stages() > b.stages()) {
                best = Some(plan);
            }
        }
        best
    }

    /// How many of the two directions are staged.
    fn stages(&self) -> u8 {
        self.fwd.staged as u8 + self.bwd.staged as u8
    }

    /// Both directions staged.
    pub fn staged(&self) -> bool {
        self.stages() == 2
    }

    fn config(&self, smem: usize) -> LaunchConfig {
        LaunchConfig {
            grid_dim: (self.blocks as u32, 1, 1),
            block_dim: (SEQ_THREADS, 1, 1),
            shared_mem_bytes: smem as u32,
        }
    }
}

fn elementwise(n: usize) -> LaunchConfig {
    let blocks = n.div_ceil(THREADS as usize).max(1);
    assert!(
        blocks <= i32::MAX as usize,
        "launch of {n} threads is too large"
    );
    LaunchConfig {
        grid_dim: (blocks as u32, 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

fn int(x: usize) -> i32 {
    i32::try_from(x).expect("size fits the kernels' int")
}

/// The column-major cuBLAS arguments of a row-major product (see [`Dev::gemm`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct GemmArgs {
    /// Transpose flag of cuBLAS's first operand (our `b`).
    trans_first: bool,
    /// Transpose flag of cuBLAS's second operand (our `a`).
    trans_second: bool,
    m: usize,
    n: usize,
    k: usize,
    ld_first: usize,
    ld_second: usize,
    ldc: usize,
}

impl GemmArgs {
    /// Row-major `c[m, n] = op(a)[m, k] op(b)[k, n]` as the column-major
    /// `c^T[n, m] = op(b)^T op(a)^T`: cuBLAS's first operand is `b` (stored
    /// `[k, n]`, or `[n, k]` when `tb`; its leading dimension is that row
    /// length), its second is `a` (stored `[m, k]`, or `[k, m]` when `ta`),
    /// and `c` has leading dimension `n`.
    fn row_major(m: usize, n: usize, k: usize, ta: bool, tb: bool) -> Self {
        GemmArgs {
            trans_first: tb,
            trans_second: ta,
            m: n,
            n: m,
            k,
            ld_first: if tb { k } else { n },
            ld_second: if ta { m } else { k },
            ldc: n,
        }
    }
}

/// Page-locked slots of [`Dev::upload_async`]: the host may queue this many
/// uploads (a training step makes five) before it waits for the oldest
/// one's copy to have run.
const STAGES: usize = 16;

/// One page-locked staging buffer and the event recorded after the copy
/// that last read it.
struct Stage {
    done: CudaEvent,
    mem: PinnedHostSlice<u8>,
}

impl Drop for Stage {
    fn drop(&mut self) {
        // The memory is freed next: the copy reading it must have run.
        let _ = self.done.synchronize();
    }
}

/// The ring of [`Stage`]s (allocated and grown on demand) and the next slot.
struct Staging {
    slots: [Option<Stage>; STAGES],
    next: usize,
    /// False once the driver refused page-locked memory: uploads then go
    /// from pageable memory ([`Dev::upload`]).
    pinned: bool,
}

/// GPU `ordinal`'s context, kept for the rest of the process. cudarc
/// releases a device's primary context when its last handle drops, and
/// making it again costs tens to hundreds of milliseconds (much more under
/// compute-sanitizer); `bench parity`, which opens a backend per model it
/// checks, would pay that each time.
fn context(ordinal: usize) -> Result<Arc<CudaContext>, CudaError> {
    static HELD: Mutex<Vec<(usize, Arc<CudaContext>)>> = Mutex::new(Vec::new());
    let mut held = HELD.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((_, ctx)) = held.iter().find(|(o, _)| *o == ordinal) {
        return Ok(ctx.clone());
    }
    let ctx = CudaContext::new(ordinal)?;
    held.push((ordinal, ctx.clone()));
    Ok(ctx)
}

/// One GPU: context, stream, cuBLAS, kernels.
pub struct Dev {
    /// The stream everything runs on (it holds the context).
    stream: Arc<CudaStream>,
    blas: CudaBlas,
    k: Kernels,
    /// Device name, e.g. "NVIDIA H100 80GB HBM3".
    pub name: String,
    /// `sm_XY`.
    pub arch: String,
    /// Ordinal.
    pub ordinal: usize,
    /// Multiprocessors.
    pub sms: usize,
    /// Whether the device takes cooperative launches.
    pub cooperative: bool,
    /// Dynamic shared memory a sequence kernel's block may use, bytes (all
    /// a block can have, after opting in where the device allows it).
    pub seq_smem: usize,
    /// Phase events while a profile runs ([`Dev::profile_start`]).
    prof: RefCell<Option<Profile>>,
    /// Page-locked memory for [`Dev::upload_async`].
    staging: RefCell<Staging>,
    /// cuBLAS's workspace (set explicitly, so that captured products use
    /// this memory rather than memory cuBLAS allocates per capture).
    _blas_workspace: Buf<u8>,
    /// True between [`Dev::begin_capture`] and [`Dev::end_capture`].
    capturing: Cell<bool>,
}

/// cuBLAS's workspace: what NVIDIA recommends for Hopper, more than enough
/// for the products of these models on older GPUs.
const BLAS_WORKSPACE: usize = 32 << 20;

/// A step captured as a CUDA graph, ready to be launched again.
pub struct Graph(CudaGraph);

// SAFETY: CUDA graph objects may be used from any thread as long as no two
// calls on one graph overlap; a `Graph` is owned by one backend and used
// only through its `&mut self` methods, one call at a time.
unsafe impl Send for Graph {}

/// Set when the driver has refused a cooperative launch (see
/// [`Dev::seq_ran`]): no more sequence kernels in this process (a process
/// trains on one GPU, and `bench parity` opens several backends on it).
static SEQ_REFUSED: AtomicBool = AtomicBool::new(false);

impl Dev {
    /// Opens GPU `ordinal` and loads the kernels (compiled by NVRTC once per process).
    pub fn open(ordinal: usize) -> Result<Dev, CudaError> {
        let count = super::device_count()?;
        if ordinal >= count {
            return Err(CudaError::NoSuchDevice { ordinal, count });
        }
        let ctx = context(ordinal)?;
        // SAFETY: one stream does all the work, in order (see the module docs).
        unsafe { ctx.disable_event_tracking() };
        let (major, minor) = ctx.compute_capability()?;
        let arch = format!("sm_{major}{minor}");
        let name = ctx.name()?;
        use cudarc::driver::sys::CUdevice_attribute as A;
        let sms = ctx
            .attribute(A::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)?
            .max(0) as usize;
        let cooperative = ctx.attribute(A::CU_DEVICE_ATTRIBUTE_COOPERATIVE_LAUNCH)? == 1;
        let smem_per_block = ctx
            .attribute(A::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK)?
            .max(0) as usize;
        let smem_optin = ctx
            .attribute(A::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)?
            .max(0) as usize;
        let stream = ctx.new_stream()?;
        let blas = CudaBlas::new(stream.clone())?;
        // Plain FP32 products (no TF32): the CPU reference computes in f32.
        // SAFETY: a live handle.
        unsafe {
            blas_sys::cublasSetMathMode(*blas.handle(), blas_sys::cublasMath_t::CUBLAS_DEFAULT_MATH)
        }
        .result()?;
        let blas_workspace = {
            let mem = stream.alloc_zeros::<u8>(BLAS_WORKSPACE)?;
            let ptr = {
                let (ptr, _record) = mem.device_ptr(&stream);
                ptr
            };
            Buf {
                _mem: mem,
                ptr,
                len: BLAS_WORKSPACE,
            }
        };
        // SAFETY: a live handle; the workspace lives as long as the handle
        // (both are fields of the `Dev`, the handle declared first, so it
        // is destroyed first).
        unsafe {
            blas_sys::cublasSetWorkspace_v2(
                *blas.handle(),
                blas_workspace.ptr as *mut std::ffi::c_void,
                BLAS_WORKSPACE,
            )
        }
        .result()?;
        let load = |src: &'static Source| -> Result<_, CudaError> {
            let image = nvrtc::cached(src, &arch)?;
            Ok(ctx.load_module(Ptx::from_binary(image.to_vec()))?)
        };
        let (cells, layers, loss, optim) = (
            load(&nvrtc::CELLS)?,
            load(&nvrtc::LAYERS)?,
            load(&nvrtc::LOSS)?,
            load(&nvrtc::OPTIM)?,
        );
        let k = Kernels {
            lstm_forward: cells.load_function("lstm_forward")?,
            lstm_backward: cells.load_function("lstm_backward")?,
            gru_forward: cells.load_function("gru_forward")?,
            gru_backward: cells.load_function("gru_backward")?,
            lstm_forward_seq: cells.load_function("lstm_forward_seq")?,
            lstm_backward_seq: cells.load_function("lstm_backward_seq")?,
            gru_forward_seq: cells.load_function("gru_forward_seq")?,
            gru_backward_seq: cells.load_function("gru_backward_seq")?,
            embed_forward: layers.load_function("embed_forward")?,
            add_bias: layers.load_function("add_bias")?,
            dropout_forward: layers.load_function("dropout_forward")?,
            mul_inplace: layers.load_function("mul_inplace")?,
            table_backward: layers.load_function("table_backward")?,
            softmax_xent: loss.load_function("softmax_xent")?,
            sum_f64: loss.load_function("sum_f64")?,
            sumsq_partials: optim.load_function("sumsq_partials")?,
            clip_coef: optim.load_function("clip_coef")?,
            guard: optim.load_function("guard")?,
            adam_step: optim.load_function("adam_step")?,
            rmsprop_step: optim.load_function("rmsprop_step")?,
        };
        // The sequence kernels may use all the shared memory a block can
        // have: beyond the default (48 KiB) only after raising each one's
        // limit. A device or driver that refuses keeps them at the default.
        let mut seq_smem = smem_per_block;
        if smem_optin > smem_per_block {
            use cudarc::driver::sys::CUfunction_attribute as F;
            // What a block may take dynamically: the opt-in limit less the
            // kernel's static shared memory (none today).
            let raise = |f: &CudaFunction| -> Result<usize, CudaError> {
                let room = smem_optin.saturating_sub(f.shared_size_bytes()?.max(0) as usize);
                let room = i32::try_from(room).unwrap_or(i32::MAX);
                f.set_attribute(F::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, room)?;
                Ok(room as usize)
            };
            let seq = [
                &k.lstm_forward_seq,
                &k.lstm_backward_seq,
                &k.gru_forward_seq,
                &k.gru_backward_seq,
            ];
            if let Ok(rooms) = seq.iter().map(|f| raise(f)).collect::<Result<Vec<_>, _>>() {
                seq_smem = rooms.into_iter().min().unwrap_or(smem_per_block);
            }
        }
        Ok(Dev {
            sms,
            cooperative,
            seq_smem,
            stream,
            blas,
            k,
            name,
            arch,
            ordinal,
            prof: RefCell::new(None),
            staging: RefCell::new(Staging {
                slots: [const { None }; STAGES],
                next: 0,
                pinned: true,
            }),
            _blas_workspace: blas_workspace,
            capturing: Cell::new(false),
        })
    }

    /// From now on the stream's work is recorded, not run, until
    /// [`Dev::end_capture`] makes it a graph. Between the two, nothing may
    /// wait for the stream, copy from or to the host, or allocate.
    pub fn begin_capture(&self) -> Result<(), CudaError> {
        use cudarc::driver::sys::CUstreamCaptureMode as Mode;
        self.stream
            .begin_capture(Mode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)?;
        self.capturing.set(true);
        Ok(())
    }

    /// Ends a capture: the recorded work as a graph ready to launch, or the
    /// driver's error (a capture that something inside invalidated, or a
    /// graph it cannot instantiate).
    pub fn end_capture(&self) -> Result<Graph, CudaError> {
        self.capturing.set(false);
        let flags = cudarc::driver::sys::CUgraphInstantiate_flags(0);
        match self.stream.end_capture(flags)? {
            Some(g) => Ok(Graph(g)),
            None => Err(CudaError::Driver("stream capture produced no graph".into())),
        }
    }

    /// Queues a captured graph: all its work, in the captured order.
    pub fn replay(&self, graph: &Graph) -> Result<(), CudaError> {
        graph.0.launch()?;
        Ok(())
    }

    /// Starts timing phases: from now on every [`Dev::mark`] records an event.
    pub fn profile_start(&self) -> Result<(), CudaError> {
        self.bind()?;
        *self.prof.borrow_mut() = Some(Profile::start(&self.stream)?);
        Ok(())
    }

    /// Ends phase `phase` (the work queued since the previous mark); nothing
    /// unless a profile runs.
    pub fn mark(&self, phase: &'static str) -> Result<(), CudaError> {
        match self.prof.borrow_mut().as_mut() {
            Some(p) => p.mark(&self.stream, phase),
            None => Ok(()),
        }
    }

    /// Whether a profile runs (its events cannot be part of a graph).
    pub fn profiling(&self) -> bool {
        self.prof.borrow().is_some()
    }

    /// Stops timing phases: milliseconds per phase, in first-seen order
    /// (`None` if no profile ran).
    pub fn profile_finish(&self) -> Result<Option<Vec<(&'static str, f64)>>, CudaError> {
        match self.prof.borrow_mut().take() {
            Some(p) => Ok(Some(p.finish()?)),
            None => Ok(None),
        }
    }

    /// Makes the context current on this thread (raw driver and cuBLAS calls need it).
    fn bind(&self) -> Result<(), CudaError> {
        self.stream.context().bind_to_thread()?;
        Ok(())
    }

    /// A zeroed buffer of `len` elements (at least one is allocated).
    pub fn alloc<T: DeviceRepr + ValidAsZeroBits>(&self, len: usize) -> Result<Buf<T>, CudaError> {
        let mem = self.stream.alloc_zeros::<T>(len.max(1))?;
        let ptr = {
            let (ptr, _record) = mem.device_ptr(&self.stream);
            ptr
        };
        Ok(Buf {
            _mem: mem,
            ptr,
            len,
        })
    }

    /// Host to device (returns once `src` may be reused).
    pub fn upload<T>(&self, src: &[T], dst: P<T>) -> Result<(), CudaError> {
        let d = dst.need(src.len(), "upload");
        if src.is_empty() {
            return Ok(());
        }
        self.bind()?;
        // SAFETY: `dst` has room for `src` (checked); a pageable source is
        // staged by the driver before the call returns.
        unsafe { drv::memcpy_htod_async(d, src, self.stream.cu_stream()) }?;
        Ok(())
    }

    /// Host to device without waiting for the stream: `src` is copied into
    /// page-locked memory and the device copy is queued from there. (A copy
    /// from pageable memory may make the driver wait for all queued work
    /// first, which would stall the host every step.) Each call takes the
    /// next of [`STAGES`] slots and first waits for the copy that last read
    /// that slot, so the host never rewrites memory a queued copy has yet
    /// to read. Where the driver refuses page-locked memory, this says so
    /// once on stderr and uploads as [`Dev::upload`] does.
    pub fn upload_async<T: DeviceRepr>(&self, src: &[T], dst: P<T>) -> Result<(), CudaError> {
        let d = dst.need(src.len(), "upload");
        let bytes = std::mem::size_of_val(src);
        if bytes == 0 {
            return Ok(());
        }
        self.bind()?;
        let mut ring = self.staging.borrow_mut();
        if !ring.pinned {
            drop(ring);
            return self.upload(src, dst);
        }
        let i = ring.next;
        ring.next = (i + 1) % STAGES;
        let slot = &mut ring.slots[i];
        if let Some(stage) = slot {
            stage.done.synchronize()?;
            if stage.mem.len() < bytes {
                *slot = None;
            }
        }
        let stage = match slot {
            Some(stage) => stage,
            None => {
                let ctx = self.stream.context();
                // SAFETY: the memory is written below before any copy reads it.
                let mem = match unsafe {
                    ctx.alloc_pinned::<u8>(bytes.next_power_of_two().max(4096))
                } {
                    Ok(mem) => mem,
                    Err(e) => {
                        static SAID: std::sync::Once = std::sync::Once::new();
                        SAID.call_once(|| {
                            errln!(
                                "charlm: note: the CUDA driver refused page-locked host memory ({}); batches go up from pageable memory, which may stall each step",
                                CudaError::from(e)
                            )
                        });
                        ring.pinned = false;
                        drop(ring);
                        return self.upload(src, dst);
                    }
                };
                slot.insert(Stage {
                    done: ctx.new_event(None)?,
                    mem,
                })
            }
        };
        // cudarc's own event on this memory is never recorded (event
        // tracking is off), so this does not wait; `done` did above.
        let buf = &mut stage.mem.as_mut_slice()?[..bytes];
        // SAFETY: `src` is `bytes` bytes of plain data (DeviceRepr).
        buf.copy_from_slice(unsafe {
            std::slice::from_raw_parts(src.as_ptr().cast::<u8>(), bytes)
        });
        // SAFETY: `dst` has room for `src` (checked); `buf` stays untouched
        // until `done`, recorded next, has completed.
        unsafe { drv::memcpy_htod_async(d, buf, self.stream.cu_stream()) }?;
        stage.done.record(&self.stream)?;
        Ok(())
    }

    /// Device to host; waits for the stream.
    pub fn download<T>(&self, src: P<T>, dst: &mut [T]) -> Result<(), CudaError> {
        let s = src.need(dst.len(), "download");
        if dst.is_empty() {
            return Ok(());
        }
        self.bind()?;
        // SAFETY: `src` holds `dst.len()` elements (checked).
        unsafe { drv::memcpy_dtoh_async(dst, s, self.stream.cu_stream()) }?;
        self.sync()
    }

    /// `dst = src` on the device.
    pub fn copy<T>(&self, src: P<T>, dst: P<T>) -> Result<(), CudaError> {
        let d = dst.need(src.len, "copy");
        if src.len > 0 {
            self.bind()?;
            // SAFETY: both ranges hold src.len elements.
            unsafe {
                drv::memcpy_dtod_async(
                    d,
                    src.ptr,
                    src.len * std::mem::size_of::<T>(),
                    self.stream.cu_stream(),
                )
            }?;
        }
        Ok(())
    }

    /// Zeroes a range.
    pub fn zero<T>(&self, dst: P<T>) -> Result<(), CudaError> {
        if dst.len > 0 {
            self.bind()?;
            // SAFETY: the range is inside its allocation.
            unsafe {
                drv::memset_d8_async(
                    dst.ptr,
                    0,
                    dst.len * std::mem::size_of::<T>(),
                    self.stream.cu_stream(),
                )
            }?;
        }
        Ok(())
    }

    /// Waits for everything queued.
    pub fn sync(&self) -> Result<(), CudaError> {
        self.stream.synchronize()?;
        Ok(())
    }

    /// Row-major `c[m, n] = op(a) op(b) + beta c`, `op(a)` `[m, k]` (`a` stored
    /// `[k, m]` when `ta`), `op(b)` `[k, n]` (`b` stored `[n, k]` when `tb`).
    ///
    /// The operand swap: cuBLAS is column-major, and a row-major `[r, c]`
    /// matrix is the column-major `[c, r]` matrix with the same bytes (its
    /// transpose). So we ask cuBLAS for `c^T = op(b)^T op(a)^T`: first operand
    /// `b` with its own transpose flag (leading dimension = its stored row
    /// length), second operand `a` likewise, result `[n, m]` column-major with
    /// leading dimension `n`, which is `c` row-major.
    #[allow(clippy::too_many_arguments)]
    pub fn gemm(
        &self,
        m: usize,
        n: usize,
        k: usize,
        a: P<f32>,
        ta: bool,
        b: P<f32>,
        tb: bool,
        beta: f32,
        c: P<f32>,
    ) -> Result<(), CudaError> {
        let cp = c.need(m * n, "gemm c");
        if m == 0 || n == 0 {
            return Ok(());
        }
        if k == 0 {
            // cuBLAS would scale c by beta; do the same without relying on it.
            if beta == 0.0 {
                self.zero(c.sub(0, m * n))?;
            }
            return Ok(());
        }
        let ap = a.need(m * k, "gemm a");
        let bp = b.need(k * n, "gemm b");
        let g = GemmArgs::row_major(m, n, k, ta, tb);
        use blas_sys::cublasOperation_t::{CUBLAS_OP_N, CUBLAS_OP_T};
        let op = |t: bool| if t { CUBLAS_OP_T } else { CUBLAS_OP_N };
        let alpha = 1.0f32;
        self.bind()?;
        // SAFETY: the three ranges hold the elements the shapes need
        // (checked above); alpha and beta are host scalars (default pointer mode).
        unsafe {
            cudarc::cublas::result::sgemm(
                *self.blas.handle(),
                op(g.trans_first),
                op(g.trans_second),
                int(g.m),
                int(g.n),
                int(g.k),
                &alpha,
                bp as *const f32,
                int(g.ld_first),
                ap as *const f32,
                int(g.ld_second),
                &beta,
                cp as *mut f32,
                int(g.ldc),
            )
        }?;
        Ok(())
    }

    /// `out[j] = sum over rows of x[r, j]` (a bias gradient), as `x^T ones`.
    ///
    /// The operand swap: row-major `x[rows, width]` is column-major
    /// `[width, rows]` with leading dimension `width`, so the untransposed
    /// cuBLAS gemv of it with a vector of `rows` ones gives the column sums.
    pub fn col_sums(
        &self,
        x: P<f32>,
        rows: usize,
        width: usize,
        ones: P<f32>,
        out: P<f32>,
    ) -> Result<(), CudaError> {
        let op = out.need(width, "col_sums out");
        if width == 0 {
            return Ok(());
        }
        if rows == 0 {
            return self.zero(out.sub(0, width));
        }
        let xp = x.need(rows * width, "col_sums x");
        let onep = ones.need(rows, "col_sums ones");
        let (alpha, beta) = (1.0f32, 0.0f32);
        self.bind()?;
        // SAFETY: ranges checked above; host scalars.
        unsafe {
            cudarc::cublas::result::sgemv(
                *self.blas.handle(),
                blas_sys::cublasOperation_t::CUBLAS_OP_N,
                int(width),
                int(rows),
                &alpha,
                xp as *const f32,
                int(width),
                onep as *const f32,
                1,
                &beta,
                op as *mut f32,
                1,
            )
        }?;
        Ok(())
    }

    fn launch(
        &self,
        f: &CudaFunction,
        cfg: LaunchConfig,
        args: &[&dyn Arg],
    ) -> Result<(), CudaError> {
        let mut b = self.stream.launch_builder(f);
        for a in args {
            a.push(&mut b);
        }
        // SAFETY: every launcher below checks its ranges against its shape
        // before calling this, and passes the arguments in the order and
        // types of the kernel's signature in kernels/*.cu.
        unsafe { b.launch(cfg) }?;
        Ok(())
    }

    /// Launches a sequence kernel cooperatively, forward or `backward`: the
    /// pointer arguments, then the barrier (zeroed first), steps, rows,
    /// hidden size, units per block, whether inputs are staged and the
    /// product tile, as every `*_seq` kernel takes them; the grid, shared
    /// memory, staging and tile as `plan` has them for that direction.
    #[allow(clippy::too_many_arguments)]
    fn launch_seq(
        &self,
        f: &CudaFunction,
        plan: SeqPlan,
        backward: bool,
        ptrs: &[u64],
        steps: usize,
        rows: usize,
        h: usize,
        bar: P<u32>,
    ) -> Result<(), CudaError> {
        let side = if backward { plan.bwd } else { plan.fwd };
        let br = self.reset_barrier(bar)?;
        let args = [
            int(steps),
            int(rows),
            int(h),
            int(plan.units),
            side.staged as i32,
            side.tile as i32,
        ];
        let mut b = self.stream.launch_builder(f);
        for p in ptrs {
            b.arg(p);
        }
        b.arg(&br);
        for a in &args {
            b.arg(a);
        }
        // SAFETY: as `launch`; the launchers check every range against the
        // shape, and the grid and shared memory come from the SeqPlan the
        // kernels index by.
        unsafe { b.launch_cooperative(plan.config(side.smem)) }.map_err(|e| {
            use cudarc::driver::sys::CUresult as R;
            let refused = matches!(
                e.0,
                R::CUDA_ERROR_NOT_SUPPORTED
                    | R::CUDA_ERROR_NOT_PERMITTED
                    | R::CUDA_ERROR_COOPERATIVE_LAUNCH_TOO_LARGE
            );
            let e = CudaError::from(e);
            if refused {
                CudaError::CooperativeRefused(e.to_string())
            } else {
                e
            }
        })?;
        Ok(())
    }

    /// What a sequence kernel's launch came to: `Ok(true)` when it ran;
    /// `Ok(false)` when the driver refused the cooperative launch and
    /// `fall_back` (the `auto` recurrence) allows running the steps one by
    /// one instead: then one note goes to stderr and no later batch tries
    /// the sequence kernels on this device. A refusal is possible where the
    /// device says it takes cooperative launches but a sandbox between
    /// charlm and the driver does not pass them on. Forced with
    /// `CHARLM_CUDA_RECURRENCE=persistent`, a refusal stays an error.
    pub fn seq_ran(
        &self,
        launched: Result<(), CudaError>,
        fall_back: bool,
    ) -> Result<bool, CudaError> {
        match launched {
            Ok(()) => Ok(true),
            // Refused inside a graph capture: the capture fails as a whole
            // and the step runs again without one, where this is decided.
            Err(e) if self.capturing.get() => Err(e),
            Err(e @ CudaError::CooperativeRefused(_)) if fall_back => {
                if !SEQ_REFUSED.swap(true, Ordering::Relaxed) {
                    errln!(
                        "charlm: note: {e}; the recurrence runs a step at a time instead (CHARLM_CUDA_RECURRENCE=stepwise chooses that from the start)"
                    );
                }
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Whether a cooperative launch has been refused in this process.
    pub fn seq_refused(&self) -> bool {
        SEQ_REFUSED.load(Ordering::Relaxed)
    }

    /// All `steps` forward steps of a layer over `rows` sequences in one
    /// cooperative launch, an LSTM's when `cs` (its cell states) is given,
    /// else a GRU's: `hs` (and `cs`) hold `steps + 1` blocks of rows, the
    /// initial state first; `aux` receives the LSTM's `tanh(c)` or the GRU's
    /// `hn` (as [`Dev::gru_forward`]'s); `bar` is the grid barrier's two words.
    #[allow(clippy::too_many_arguments)]
    pub fn forward_seq(
        &self,
        plan: SeqPlan,
        steps: usize,
        rows: usize,
        h: usize,
        w_hh: P<f32>,
        b_hh: P<f32>,
        xg: P<f32>,
        gates: P<f32>,
        hs: P<f32>,
        cs: Option<P<f32>>,
        aux: P<f32>,
        bar: P<u32>,
    ) -> Result<(), CudaError> {
        let gn = if cs.is_some() { 4 } else { 3 };
        let (n, g) = (steps * rows * h, steps * rows * gn * h);
        let mut ptrs = vec![
            w_hh.need(gn * h * h, "w_hh"),
            b_hh.need(gn * h, "b_hh"),
            xg.need(g, "xg"),
            gates.need(g, "gates"),
            hs.need(n + rows * h, "h"),
        ];
        let f = match cs {
            Some(cs) => {
                ptrs.push(cs.need(n + rows * h, "c"));
                &self.k.lstm_forward_seq
            }
            None => &self.k.gru_forward_seq,
        };
        ptrs.push(aux.need(n, "aux"));
        self.launch_seq(f, plan, false, &ptrs, steps, rows, h, bar)
    }

    /// All backward steps of a layer in one cooperative launch, a GRU's when
    /// `dhg` (its hidden-side gate gradients, laid out as `dxg`) is given,
    /// else an LSTM's: `dh` the gradient from above at every step; `state`
    /// the LSTM's cell states or the GRU's hidden states (initial first) and
    /// `aux` the forward's; writes the gate gradients `dxg` of every step.
    #[allow(clippy::too_many_arguments)]
    pub fn backward_seq(
        &self,
        plan: SeqPlan,
        steps: usize,
        rows: usize,
        h: usize,
        w_hh: P<f32>,
        dh: P<f32>,
        gates: P<f32>,
        state: P<f32>,
        aux: P<f32>,
        dxg: P<f32>,
        dhg: Option<P<f32>>,
        bar: P<u32>,
    ) -> Result<(), CudaError> {
        let gn = if dhg.is_some() { 3 } else { 4 };
        let (n, g) = (steps * rows * h, steps * rows * gn * h);
        let mut ptrs = vec![
            w_hh.need(gn * h * h, "w_hh"),
            dh.need(n, "dh"),
            gates.need(g, "gates"),
            state.need(n + rows * h, "state"),
            aux.need(n, "aux"),
            dxg.need(g, "dxg"),
        ];
        let f = match dhg {
            Some(dhg) => {
                ptrs.push(dhg.need(g, "dhg"));
                &self.k.gru_backward_seq
            }
            None => &self.k.lstm_backward_seq,
        };
        self.launch_seq(f, plan, true, &ptrs, steps, rows, h, bar)
    }

    /// Zeroes the grid barrier's words before a sequence launch (a launch
    /// leaves them zeroed, but one cut short by an error would not).
    fn reset_barrier(&self, bar: P<u32>) -> Result<u64, CudaError> {
        let p = bar.need(2, "barrier");
        self.zero(bar.sub(0, 2))?;
        Ok(p)
    }

    /// Launches a per-step cell kernel (kernels/cells.cu) over `rows * h`
    /// units: its pointer arguments, each checked to hold the elements given
    /// with it, then `rows` and `h`, as every one of them takes them.
    fn launch_cell<const N: usize>(
        &self,
        f: &CudaFunction,
        rows: usize,
        h: usize,
        ptrs: [(P<f32>, usize, &str); N],
    ) -> Result<(), CudaError> {
        let d = ptrs.map(|(p, n, what)| p.need(n, what));
        let (r, hh) = (int(rows), int(h));
        let mut args: Vec<&dyn Arg> = d.iter().map(|p| p as &dyn Arg).collect();
        args.extend([&r as &dyn Arg, &hh]);
        self.launch(f, elementwise(rows * h), &args)
    }

    /// LSTM forward step for `rows` sequences (see kernels/cells.cu).
    #[allow(clippy::too_many_arguments)]
    pub fn lstm_forward(
        &self,
        rows: usize,
        h: usize,
        xg: P<f32>,
        hg: P<f32>,
        b_hh: P<f32>,
        gates: P<f32>,
        c_prev: P<f32>,
        c_out: P<f32>,
        tanh_c: P<f32>,
        h_out: P<f32>,
    ) -> Result<(), CudaError> {
        let (n, g) = (rows * h, rows * 4 * h);
        self.launch_cell(
            &self.k.lstm_forward,
            rows,
            h,
            [
                (xg, g, "xg"),
                (hg, g, "hg"),
                (b_hh, 4 * h, "b_hh"),
                (gates, g, "gates"),
                (c_prev, n, "c_prev"),
                (c_out, n, "c_out"),
                (tanh_c, n, "tanh_c"),
                (h_out, n, "h_out"),
            ],
        )
    }

    /// LSTM backward step (see kernels/cells.cu).
    #[allow(clippy::too_many_arguments)]
    pub fn lstm_backward(
        &self,
        rows: usize,
        h: usize,
        dh: P<f32>,
        dh_next: P<f32>,
        dc: P<f32>,
        gates: P<f32>,
        c_prev: P<f32>,
        tanh_c: P<f32>,
        dg: P<f32>,
    ) -> Result<(), CudaError> {
        let (n, g) = (rows * h, rows * 4 * h);
        self.launch_cell(
            &self.k.lstm_backward,
            rows,
            h,
            [
                (dh, n, "dh"),
                (dh_next, n, "dh_next"),
                (dc, n, "dc"),
                (gates, g, "gates"),
                (c_prev, n, "c_prev"),
                (tanh_c, n, "tanh_c"),
                (dg, g, "dg"),
            ],
        )
    }

    /// GRU forward step (see kernels/cells.cu).
    #[allow(clippy::too_many_arguments)]
    pub fn gru_forward(
        &self,
        rows: usize,
        h: usize,
        xg: P<f32>,
        hg: P<f32>,
        b_hh: P<f32>,
        gates: P<f32>,
        h_prev: P<f32>,
        hn: P<f32>,
        h_out: P<f32>,
    ) -> Result<(), CudaError> {
        let (n, g) = (rows * h, rows * 3 * h);
        self.launch_cell(
            &self.k.gru_forward,
            rows,
            h,
            [
                (xg, g, "xg"),
                (hg, g, "hg"),
                (b_hh, 3 * h, "b_hh"),
                (gates, g, "gates"),
                (h_prev, n, "h_prev"),
                (hn, n, "hn"),
                (h_out, n, "h_out"),
            ],
        )
    }

    /// GRU backward step (see kernels/cells.cu).
    #[allow(clippy::too_many_arguments)]
    pub fn gru_backward(
        &self,
        rows: usize,
        h: usize,
        dh: P<f32>,
        dh_prev: P<f32>,
        gates: P<f32>,
        h_prev: P<f32>,
        hn: P<f32>,
        dxg: P<f32>,
        dhg: P<f32>,
    ) -> Result<(), CudaError> {
        let (n, g) = (rows * h, rows * 3 * h);
        self.launch_cell(
            &self.k.gru_backward,
            rows,
            h,
            [
                (dh, n, "dh"),
                (dh_prev, n, "dh_prev"),
                (gates, g, "gates"),
                (h_prev, n, "h_prev"),
                (hn, n, "hn"),
                (dxg, g, "dxg"),
                (dhg, g, "dhg"),
            ],
        )
    }

    /// `xg[r] = table[ids[r]] + bias` for `rows` rows of `width`.
    #[allow(clippy::too_many_arguments)]
    pub fn embed_forward(
        &self,
        rows: usize,
        width: usize,
        vocab: usize,
        ids: P<u16>,
        table: P<f32>,
        bias: P<f32>,
        xg: P<f32>,
    ) -> Result<(), CudaError> {
        let p = [
            ids.need(rows, "ids"),
            table.need(vocab * width, "table"),
            bias.need(width, "bias"),
            xg.need(rows * width, "xg"),
        ];
        let (r, w) = (int(rows), int(width));
        self.launch(
            &self.k.embed_forward,
            elementwise(rows * width),
            &[&p[0], &p[1], &p[2], &p[3], &r, &w],
        )
    }

    /// `x[r] += bias`.
    pub fn add_bias(
        &self,
        rows: usize,
        width: usize,
        x: P<f32>,
        bias: P<f32>,
    ) -> Result<(), CudaError> {
        let p = [x.need(rows * width, "x"), bias.need(width, "bias")];
        let (r, w) = (int(rows), int(width));
        self.launch(
            &self.k.add_bias,
            elementwise(rows * width),
            &[&p[0], &p[1], &r, &w],
        )
    }

    /// Dropout masks from the CPU's generator state `s0[0]` (on the device:
    /// it changes every step), and `out = x * mask`.
    #[allow(clippy::too_many_arguments)]
    pub fn dropout_forward(
        &self,
        n: usize,
        x: P<f32>,
        mask: P<f32>,
        out: P<f32>,
        s0: P<u64>,
        p: f32,
        scale: f32,
    ) -> Result<(), CudaError> {
        let q = [x.need(n, "x"), mask.need(n, "mask"), out.need(n, "out")];
        let s0 = s0.need(1, "s0");
        let nn = int(n);
        self.launch(
            &self.k.dropout_forward,
            elementwise(n),
            &[&q[0], &q[1], &q[2], &nn, &s0, &p, &scale],
        )
    }

    /// `x *= m`.
    pub fn mul_inplace(&self, n: usize, x: P<f32>, m: P<f32>) -> Result<(), CudaError> {
        let q = [x.need(n, "x"), m.need(n, "m")];
        let nn = int(n);
        self.launch(&self.k.mul_inplace, elementwise(n), &[&q[0], &q[1], &nn])
    }

    /// Gradient of layer 0's input table from the positions of each id
    /// (`offsets[vocab + 1]`, `rows[n]`, as [`super::backend::positions_by_id`] builds them).
    #[allow(clippy::too_many_arguments)]
    pub fn table_backward(
        &self,
        vocab: usize,
        width: usize,
        n: usize,
        offsets: P<i32>,
        rows: P<i32>,
        dxg: P<f32>,
        out: P<f32>,
    ) -> Result<(), CudaError> {
        let p = [offsets.need(vocab + 1, "offsets"), rows.need(n, "rows")];
        let q = [dxg.need(n * width, "dxg"), out.need(vocab * width, "out")];
        let (v, w) = (int(vocab), int(width));
        self.launch(
            &self.k.table_backward,
            elementwise(vocab * width),
            &[&p[0], &p[1], &q[0], &q[1], &v, &w],
        )
    }

    /// Softmax cross-entropy per row (nats into `row_nats`); with `grad`, the
    /// gradient of the mean over the logits, `inv[0]` being 1 / (positions
    /// counted).
    #[allow(clippy::too_many_arguments)]
    pub fn softmax_xent(
        &self,
        rows: usize,
        vocab: usize,
        logits: P<f32>,
        targets: P<u16>,
        row_nats: P<f32>,
        first: usize,
        inv: P<f32>,
        grad: bool,
    ) -> Result<(), CudaError> {
        let p = [
            logits.need(rows * vocab, "logits"),
            row_nats.need(rows, "row_nats"),
            inv.need(1, "inv"),
        ];
        let t = targets.need(rows, "targets");
        let (r, v, f, g) = (int(rows), int(vocab), int(first), grad as i32);
        // 8 warps per block, one row per warp
        let blocks = rows.div_ceil(8).max(1) as u32;
        let cfg = LaunchConfig {
            grid_dim: (blocks, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        self.launch(
            &self.k.softmax_xent,
            cfg,
            &[&p[0], &t, &p[1], &r, &v, &f, &p[2], &g],
        )
    }

    /// `acc[0] += sum x[..n]` in f64 (one block, fixed order).
    pub fn sum_f64(&self, n: usize, x: P<f32>, acc: P<f64>) -> Result<(), CudaError> {
        let p = x.need(n, "x");
        let a = acc.need(1, "acc");
        let nn = int(n);
        let cfg = LaunchConfig {
            grid_dim: (1, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        self.launch(&self.k.sum_f64, cfg, &[&p, &nn, &a])
    }

    /// `coef[0..2] = (clipping coefficient, norm)` of the gradient `g[..n]`.
    pub fn clip_coef(
        &self,
        n: usize,
        g: P<f32>,
        partials: P<f64>,
        max_norm: f32,
        coef: P<f32>,
    ) -> Result<(), CudaError> {
        let gp = g.need(n, "g");
        let pp = partials.need(NORM_BLOCKS, "partials");
        let cp = coef.need(2, "coef");
        let nn = int(n);
        let cfg = LaunchConfig {
            grid_dim: (NORM_BLOCKS as u32, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        self.launch(&self.k.sumsq_partials, cfg, &[&gp, &nn, &pp])?;
        let parts = NORM_BLOCKS as i32;
        let one = LaunchConfig {
            grid_dim: (1, 1, 1),
            block_dim: (1, 1, 1),
            shared_mem_bytes: 0,
        };
        self.launch(&self.k.clip_coef, one, &[&pp, &parts, &max_norm, &cp])
    }

    /// The divergence guard: `status = [0, _]` becomes `[1 | 2, step]` at the
    /// first step whose summed `nats[0]` (1) or gradient norm `coef[1]` (2)
    /// is not finite (`step[0]`, on the device: it changes every step).
    pub fn guard(
        &self,
        nats: P<f64>,
        coef: P<f32>,
        status: P<i32>,
        step: P<i32>,
    ) -> Result<(), CudaError> {
        let (n, c, s) = (
            nats.need(1, "nats"),
            coef.need(2, "coef"),
            status.need(2, "status"),
        );
        let step = step.need(1, "step");
        let one = LaunchConfig {
            grid_dim: (1, 1, 1),
            block_dim: (1, 1, 1),
            shared_mem_bytes: 0,
        };
        self.launch(&self.k.guard, one, &[&n, &c, &s, &step])
    }

    /// One Adam update of `p[..n]` (scalars as in `optim::Optimizer::step`;
    /// `sc` = step size and the square root of the second bias correction,
    /// on the device); none once `status[0]` is set (see [`Dev::guard`]).
    #[allow(clippy::too_many_arguments)]
    pub fn adam_step(
        &self,
        n: usize,
        p: P<f32>,
        g: P<f32>,
        m: P<f32>,
        v: P<f32>,
        coef: Option<P<f32>>,
        status: P<i32>,
        sc: P<f32>,
        one_minus_b1: f32,
        b2: f32,
        one_minus_b2: f32,
        eps: f32,
    ) -> Result<(), CudaError> {
        let q = [
            p.need(n, "p"),
            g.need(n, "g"),
            m.need(n, "m"),
            v.need(n, "v"),
        ];
        let (c, clip) = match coef {
            Some(c) => (c.need(1, "coef"), 1i32),
            None => (q[1], 0i32),
        };
        let st = status.need(1, "status");
        let sc = sc.need(2, "sc");
        let nn = int(n);
        self.launch(
            &self.k.adam_step,
            elementwise(n),
            &[
                &q[0],
                &q[1],
                &q[2],
                &q[3],
                &c,
                &clip,
                &st,
                &nn,
                &sc,
                &one_minus_b1,
                &b2,
                &one_minus_b2,
                &eps,
            ],
        )
    }

    /// One RMSprop update of `p[..n]` at learning rate `sc[0]` (on the
    /// device); none once `status[0]` is set.
    #[allow(clippy::too_many_arguments)]
    pub fn rmsprop_step(
        &self,
        n: usize,
        p: P<f32>,
        g: P<f32>,
        v: P<f32>,
        coef: Option<P<f32>>,
        status: P<i32>,
        sc: P<f32>,
        rho: f32,
        one_minus_rho: f32,
        eps: f32,
    ) -> Result<(), CudaError> {
        let q = [p.need(n, "p"), g.need(n, "g"), v.need(n, "v")];
        let (c, clip) = match coef {
            Some(c) => (c.need(1, "coef"), 1i32),
            None => (q[1], 0i32),
        };
        let st = status.need(1, "status");
        let sc = sc.need(1, "sc");
        let nn = int(n);
        self.launch(
            &self.k.rmsprop_step,
            elementwise(n),
            &[
                &q[0],
                &q[1],
                &q[2],
                &c,
                &clip,
                &st,
                &nn,
                &sc,
                &rho,
                &one_minus_rho,
                &eps,
            ],
        )
    }
}

/// A kernel argument (pushed by reference, so it must outlive the launch call).
trait Arg {
    fn push<'a>(&'a self, b: &mut cudarc::driver::LaunchArgs<'a>);
}

impl<T: DeviceRepr> Arg for T {
    fn push<'a>(&'a self, b: &mut cudarc::driver::LaunchArgs<'a>) {
        b.arg(self);
    }
}

#[cfg(test)]
mod tests {
    use super::{GemmArgs, SEQ_BLOCKS, SeqPlan};

    #[test]
    fn sequence_plans_cover_every_unit_and_fit_shared_memory() {
        const DEFAULT: usize = 48 * 1024;
        const H100: usize = 227 * 1024;
        for smem in [DEFAULT, H100] {
            for g in [3, 4] {
                for h in [1, 7, 16, 37, 64, 128, 200, 256, 512, 1024] {
                    for rows in [1, 8, 64, 128] {
                        let Some(p) = SeqPlan::new(g, h, rows, 132, smem, SEQ_BLOCKS) else {
                            // up to the largest layer (512 units, 128
                            // sequences) there is a plan
                            assert!(h > 512, "no plan for g {g} h {h} rows {rows}");
                            continue;
                        };
                        assert!(p.units >= 1 && p.blocks <= 132);
                        assert!(
                            p.blocks * p.units >= h && (p.blocks - 1) * p.units < h,
                            "{p:?} for h {h}"
                        );
                        assert!(p.fwd.smem <= smem && p.bwd.smem <= smem, "{p:?}");
                    }
                }
            }
        }
        let plan = |g, h, rows, sms, smem| {
            SeqPlan::new(g, h, rows, sms, smem, SEQ_BLOCKS)
                .map(|p| (p.units, p.blocks, p.fwd.staged, p.bwd.staged))
        };
        // the lesson's size: 32 blocks of 4 units, staged both ways
        assert_eq!(plan(4, 128, 8, 132, DEFAULT), Some((4, 32, true, true)));
        // batch 64: a step's gate gradients (128 KiB) need more than the
        // default shared memory; an H100's opt-in has room
        assert_eq!(plan(4, 128, 64, 132, DEFAULT), Some((4, 32, true, false)));
        assert_eq!(plan(4, 128, 64, 132, H100), Some((4, 32, true, true)));
        // running text at hidden 256, batch 64: 256 KiB of gate gradients
        // fit no block
        assert_eq!(plan(4, 256, 64, 132, H100), Some((8, 32, true, false)));
        // less shared memory: more blocks where that stages more, then unstaged
        assert_eq!(plan(4, 37, 8, 132, 4096), Some((2, 19, true, false)));
        assert_eq!(plan(4, 37, 8, 132, 2048), Some((1, 37, true, false)));
        assert_eq!(plan(4, 37, 8, 132, 1024), Some((1, 37, false, false)));
        // a GPU with fewer multiprocessors than the default aim: one block
        // on each; too small for any split that fits shared memory: none
        assert_eq!(plan(4, 128, 8, 16, DEFAULT), Some((8, 16, true, true)));
        assert_eq!(plan(4, 512, 8, 4, DEFAULT), None);
        // spread over all 132 multiprocessors: the fewest units per block
        // that fit, however many blocks the default aims at
        let spread = |g, h, rows| {
            SeqPlan::new(g, h, rows, 132, H100, 132).map(|p| (p.units, p.blocks, p.fwd.staged))
        };
        assert_eq!(spread(4, 512, 128), Some((4, 128, false)));
        assert_eq!(spread(4, 256, 64), Some((2, 128, true)));
        assert_eq!(spread(3, 100, 8), Some((1, 100, true)));
        // an aim beyond the multiprocessors is held to them, and 0 to 1
        let aim = |a| SeqPlan::new(4, 512, 8, 132, H100, a).map(|p| p.blocks);
        assert_eq!(aim(1000), Some(128));
        assert_eq!(aim(0), aim(1));
    }

    #[test]
    fn product_tiles_grow_with_the_outputs_per_block() {
        use super::seq_tile;
        // the sizes, 32 blocks: forward rows x 4*units, backward rows x units
        assert_eq!((seq_tile(8, 16), seq_tile(8, 4)), (1, 1)); // titles, batch 8
        assert_eq!((seq_tile(64, 16), seq_tile(64, 4)), (4, 2)); // titles, batch 64
        assert_eq!((seq_tile(64, 32), seq_tile(64, 8)), (4, 2)); // text, hidden 256
        assert_eq!((seq_tile(128, 64), seq_tile(128, 16)), (4, 4)); // 2 x 512, batch 128
        assert_eq!(seq_tile(1, 1), 1);
        // plans carry them
        let p = SeqPlan::new(4, 128, 64, 132, 227 * 1024, SEQ_BLOCKS).unwrap();
        assert_eq!((p.fwd.tile, p.bwd.tile), (4, 2));
    }

    /// Column-major `C = op(A) op(B)` as the cuBLAS documentation defines it.
    #[allow(clippy::too_many_arguments)]
    fn col_major_sgemm(
        ta: bool,
        tb: bool,
        m: usize,
        n: usize,
        k: usize,
        a: &[f64],
        lda: usize,
        b: &[f64],
        ldb: usize,
        c: &mut [f64],
        ldc: usize,
    ) {
        assert!(lda >= if ta { k } else { m } && ldb >= if tb { n } else { k } && ldc >= m);
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0;
                for p in 0..k {
                    let x = if ta { a[p + i * lda] } else { a[i + p * lda] };
                    let y = if tb { b[j + p * ldb] } else { b[p + j * ldb] };
                    s += x * y;
                }
                c[i + j * ldc] = s;
            }
        }
    }

    #[test]
    fn the_row_major_swap_computes_the_row_major_product() {
        let (m, n, k) = (3, 5, 4);
        // op(a)[i][p] and op(b)[p][j] as plain row-major matrices
        let opa: Vec<f64> = (0..m * k).map(|x| (x * 7 % 11) as f64 - 5.0).collect();
        let opb: Vec<f64> = (0..k * n).map(|x| (x * 5 % 13) as f64 - 6.0).collect();
        let mut want = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                want[i * n + j] = (0..k).map(|p| opa[i * k + p] * opb[p * n + j]).sum();
            }
        }
        let transpose = |x: &[f64], r: usize, c: usize| -> Vec<f64> {
            (0..r * c).map(|q| x[(q % r) * c + q / r]).collect()
        };
        for ta in [false, true] {
            for tb in [false, true] {
                // how the operands are stored
                let a = if ta {
                    transpose(&opa, m, k)
                } else {
                    opa.clone()
                };
                let b = if tb {
                    transpose(&opb, k, n)
                } else {
                    opb.clone()
                };
                let g = GemmArgs::row_major(m, n, k, ta, tb);
                let mut c = vec![f64::NAN; m * n];
                col_major_sgemm(
                    g.trans_first,
                    g.trans_second,
                    g.m,
                    g.n,
                    g.k,
                    &b,
                    g.ld_first,
                    &a,
                    g.ld_second,
                    &mut c,
                    g.ldc,
                );
                assert_eq!(c, want, "ta {ta} tb {tb}");
            }
        }
    }
}
