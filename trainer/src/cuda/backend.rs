//! [`Cuda`]: the CPU reference's forward pass, masked cross-entropy,
//! backpropagation through time and optimizer step, on the device. Names and
//! order follow `crate::cpu::Cpu` so the two read side by side.

use std::collections::{HashMap, HashSet};

use charlm_runtime::format::CellKind;

use super::CudaError;
use super::dev::{Buf, Dev, Graph, NORM_BLOCKS, P, SEQ_BLOCKS, SeqPlan};
use crate::batch::Batch;
use crate::cpu::{Classes, Dropout, Loss};
use crate::errln;
use crate::optim::{self, Kind, Optimizer};
use crate::params::Layout;

/// The profile's name for the gap before a step's first work: the GPU
/// waiting for the host (see `profile.rs`).
const PHASE_IDLE: &str = "host: between steps";

/// Per-layer activations kept for the backward pass (as `cpu::LayerCache`).
struct LayerBufs {
    /// `[T*B, G*H]` input pre-activations `W_ih x + b_ih`.
    xg: Buf<f32>,
    /// `[T*B, G*H]` activated gates.
    gates: Buf<f32>,
    /// `[(T+1)*B, H]` hidden states, initial state first.
    h: Buf<f32>,
    /// `[(T+1)*B, H]` LSTM cell states (GRU: unused).
    c: Buf<f32>,
    /// `[T*B, H]` LSTM `tanh(c)`; GRU `W_hn h + b_hn`.
    aux: Buf<f32>,
    /// `[T*B, H]` dropout mask of this layer's output (layers below the top).
    mask: Buf<f32>,
    /// `[T*B, H]` this layer's output after dropout.
    dropped: Buf<f32>,
    /// Whether the last forward pass applied dropout here.
    dropout_on: bool,
}

/// Activation buffers for up to `n` rows (`T*B`) and `b` sequences.
struct Acts {
    n: usize,
    b: usize,
    layers: Vec<LayerBufs>,
    /// `[T*B, V]` logits, then their gradient.
    logits: Buf<f32>,
    /// `[T*B]` nats per position.
    row_nats: Buf<f32>,
    /// `[T*B, G*H]` gate pre-activation gradients (GRU: input side).
    dxg: Buf<f32>,
    /// `[T*B, G*H]` GRU hidden-side gradients.
    dhg: Buf<f32>,
    /// `[T*B, H]` gradient at the current layer's output.
    dh: Buf<f32>,
    /// `[T*B, H]` gradient for the layer below.
    dx: Buf<f32>,
    /// `[B, G*H]` one step's `h W_hh^T`.
    hg: Buf<f32>,
    /// `[B, H]` gradient from the step after through `W_hh`.
    dh_next: Buf<f32>,
    /// `[B, H]` LSTM cell-state gradient from the step after.
    dc: Buf<f32>,
    /// `[T*B]` ones, for bias gradients as `x^T 1`.
    ones: Buf<f32>,
    /// `[T*B]` input ids.
    ids: Buf<u16>,
    /// `[T*B]` target ids.
    targets: Buf<u16>,
    /// `[V + 1]` where each id's positions start in `tab_rows`.
    tab_off: Buf<i32>,
    /// `[T*B]` positions sorted by input id.
    tab_rows: Buf<i32>,
}

/// How the recurrence runs: `CHARLM_CUDA_RECURRENCE` = `auto` (the default),
/// `persistent` or `stepwise`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recurrence {
    /// Sequence kernels where they are expected to win: when a plan fits
    /// that stages both directions (each step's inputs from other blocks
    /// copied into shared memory, which needs a small batch), as at the
    /// lesson's sizes, where launch latency rather than arithmetic bounds
    /// the stepwise form.
    Auto,
    /// Sequence kernels whenever a plan fits the GPU.
    Persistent,
    /// Per step one cuBLAS product and one cell kernel.
    Stepwise,
}

/// The value of the backend's setting `name` (None: unset); a value that
/// is not UTF-8 text is no value it takes.
fn setting(name: &str) -> Result<Option<String>, CudaError> {
    match std::env::var(name) {
        Ok(v) => Ok(Some(v)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(v)) => Err(CudaError::Config(format!(
            "{name}={}: not UTF-8 text",
            v.to_string_lossy()
        ))),
    }
}

impl Recurrence {
    /// From `CHARLM_CUDA_RECURRENCE` (unset: auto).
    pub fn from_env() -> Result<Self, CudaError> {
        match setting("CHARLM_CUDA_RECURRENCE")?.as_deref() {
            None | Some("") | Some("auto") => Ok(Recurrence::Auto),
            Some("persistent") => Ok(Recurrence::Persistent),
            Some("stepwise") => Ok(Recurrence::Stepwise),
            Some(other) => Err(CudaError::Config(format!(
                "CHARLM_CUDA_RECURRENCE={other}: use auto, persistent or stepwise"
            ))),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Recurrence::Auto => "auto",
            Recurrence::Persistent => "persistent",
            Recurrence::Stepwise => "stepwise",
        }
    }
}

/// `CHARLM_CUDA_GRAPHS` = `on` (the default) or `off`: whether
/// [`Cuda::train_step`] captures whole steps as CUDA graphs and launches
/// those (see [`Graphs`]).
fn graphs_from_env() -> Result<bool, CudaError> {
    match setting("CHARLM_CUDA_GRAPHS")?.as_deref() {
        None | Some("") | Some("on") => Ok(true),
        Some("off") => Ok(false),
        Some(other) => Err(CudaError::Config(format!(
            "CHARLM_CUDA_GRAPHS={other}: use on or off"
        ))),
    }
}

/// What makes two training steps the same graph: their shape and every
/// setting that is a kernel argument or decides which kernels run. What
/// changes from step to step beyond this is in [`StepArgs`] or in the
/// uploaded batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct StepKey {
    steps: usize,
    rows: usize,
    carry: bool,
    /// Dropout's probability (bits; 0 without dropout).
    dropout: u32,
    /// The clipping norm (bits; 0 without clipping).
    clip: u32,
    /// Whether the sequence kernels are still allowed (see `Dev::seq_ran`).
    seq_refused: bool,
}

/// Whole training steps as CUDA graphs. A step is hundreds of kernel
/// launches stepwise and about 25 with the sequence kernels; a graph is
/// one launch, so the host's cost per step no longer grows with them.
///
/// A step's shape runs kernel by kernel the first time it comes (so that
/// every library has done its lazy set-up outside a capture), is captured
/// and launched as a graph the second time, and is replayed from then on.
/// Everything that differs between steps of one shape is in device memory
/// that the host rewrites before each step: the batch, [`StepArgs`]. A
/// graph holds device addresses, so all graphs are forgotten whenever a
/// buffer they use is allocated again (a longer batch, another number of
/// sequences, another optimizer state). When the driver refuses a capture,
/// one note goes to stderr and the run goes on kernel by kernel.
struct Graphs {
    on: bool,
    seen: HashSet<StepKey>,
    ready: HashMap<StepKey, Graph>,
    captured: u64,
    replayed: u64,
}

/// At most this many graphs are kept (titles of every length up to a few
/// hundred characters); beyond it, all are forgotten and captured again.
const MAX_GRAPHS: usize = 512;

impl Graphs {
    fn forget(&mut self) {
        self.seen.clear();
        self.ready.clear();
    }

    fn refuse(&mut self, e: CudaError) {
        static SAID: std::sync::Once = std::sync::Once::new();
        SAID.call_once(|| {
            errln!(
                "charlm: note: capturing a training step as a CUDA graph failed ({e}); steps are launched kernel by kernel instead (CHARLM_CUDA_GRAPHS=off chooses that from the start)"
            )
        });
        self.on = false;
        self.forget();
    }
}

/// The scalars of a step that change from step to step. They are uploaded
/// with the batch, and the kernels read them from device memory, so that a
/// step captured as a CUDA graph can be replayed as it is. On the device:
/// ten 32-bit words, `inv` (f32), `step` (i32), `sc` (2 x f32), then the
/// seeds (3 x u64, 8-byte aligned).
#[derive(Clone, Copy, Debug, Default)]
struct StepArgs {
    /// 1 / (positions counted in the batch): the mean's factor.
    inv: f32,
    /// The optimizer's step count before this step (the guard's record).
    step: i32,
    /// Adam: step size and the square root of the second bias correction;
    /// RMSprop: the learning rate.
    sc: [f32; 2],
    /// Dropout: the generator state of each layer below the top.
    seeds: [u64; 3],
}

const ARGS_WORDS: usize = 10;
/// Where each field starts among the words.
const ARG_INV: usize = 0;
const ARG_STEP: usize = 1;
const ARG_SC: usize = 2;
const ARG_SEEDS: usize = 4;

impl StepArgs {
    /// The batch's factor and `dropout`'s seeds for a model of `layers`.
    fn new(batch: &Batch, dropout: Option<Dropout>, layers: usize) -> Self {
        let count = batch.chars();
        let mut a = StepArgs {
            inv: if count == 0 {
                0.0
            } else {
                (1.0 / count as f64) as f32
            },
            ..StepArgs::default()
        };
        if let Some(d) = dropout {
            for (l, seed) in a.seeds.iter_mut().enumerate().take(layers - 1) {
                // Rng::derive(d.seed, l): the state before its first draw.
                *seed = d.seed ^ (l as u64).wrapping_mul(0xd1b5_4a32_d192_ed03);
            }
        }
        a
    }

    fn words(&self) -> [u32; ARGS_WORDS] {
        let mut w = [0u32; ARGS_WORDS];
        w[ARG_INV] = self.inv.to_bits();
        w[ARG_STEP] = self.step as u32;
        w[ARG_SC] = self.sc[0].to_bits();
        w[ARG_SC + 1] = self.sc[1].to_bits();
        for (l, seed) in self.seeds.iter().enumerate() {
            w[ARG_SEEDS + 2 * l] = *seed as u32;
            w[ARG_SEEDS + 2 * l + 1] = (*seed >> 32) as u32;
        }
        w
    }

    /// `inv` among `args`, the device copy of [`StepArgs::words`].
    fn inv(args: &Buf<u32>) -> P<f32> {
        args.at(ARG_INV, 1).view()
    }
    /// `step` among `args`.
    fn step(args: &Buf<u32>) -> P<i32> {
        args.at(ARG_STEP, 1).view()
    }
    /// `sc` among `args`.
    fn sc(args: &Buf<u32>) -> P<f32> {
        args.at(ARG_SC, 2).view()
    }
    /// Layer `l`'s dropout seed among `args`.
    fn seed(args: &Buf<u32>, l: usize) -> P<u64> {
        args.at(ARG_SEEDS + 2 * l, 2).view()
    }
}

/// `CHARLM_CUDA_SEQ_TILE` = 1, 2 or 4: the sequence kernels' product tile
/// in both directions instead of the plan's choice (for tests and for
/// timing one against another; unset: the plan's).
fn tile_from_env() -> Result<Option<u8>, CudaError> {
    match setting("CHARLM_CUDA_SEQ_TILE")?.as_deref() {
        None | Some("") => Ok(None),
        Some("1") => Ok(Some(1)),
        Some("2") => Ok(Some(2)),
        Some("4") => Ok(Some(4)),
        Some(other) => Err(CudaError::Config(format!(
            "CHARLM_CUDA_SEQ_TILE={other}: use 1, 2 or 4 (or leave it unset)"
        ))),
    }
}

/// How many blocks the sequence kernels' plan aims to spread a layer's
/// units over: `CHARLM_CUDA_SEQ_BLOCKS` = a number, or `all` (one per
/// multiprocessor); unset, [`SEQ_BLOCKS`]. For timing one spread against
/// another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Spread {
    Default,
    All,
    Blocks(usize),
}

impl Spread {
    fn from_env() -> Result<Self, CudaError> {
        match setting("CHARLM_CUDA_SEQ_BLOCKS")?.as_deref() {
            None | Some("") => Ok(Spread::Default),
            Some("all") => Ok(Spread::All),
            Some(n) => match n.parse::<usize>() {
                Ok(n) if (1..=4096).contains(&n) => Ok(Spread::Blocks(n)),
                _ => Err(CudaError::Config(format!(
                    "CHARLM_CUDA_SEQ_BLOCKS={n}: use a number of blocks from 1 to 4096, or all (or leave it unset)"
                ))),
            },
        }
    }

    /// Blocks to aim at on a GPU with `sms` multiprocessors.
    fn aim(self, sms: usize) -> usize {
        match self {
            Spread::Default => SEQ_BLOCKS,
            Spread::All => sms,
            Spread::Blocks(n) => n,
        }
    }
}

/// The CUDA backend for one architecture.
pub struct Cuda {
    /// Declared first, so dropped first: before the kernels' modules and
    /// the buffers they use go.
    graphs: Graphs,
    dev: Dev,
    recurrence: Recurrence,
    /// `CHARLM_CUDA_SEQ_TILE`, when set.
    tile: Option<u8>,
    /// `CHARLM_CUDA_SEQ_BLOCKS`.
    spread: Spread,
    /// The sequence kernels' grid barrier (two words).
    bar: Buf<u32>,
    layout: Layout,
    /// Parameters, flat, in `layout`'s order.
    params: Buf<f32>,
    /// Gradient, same layout.
    grads: Buf<f32>,
    /// Optimizer state (allocated by [`Cuda::set_optimizer`]).
    opt: Option<DeviceOptimizer>,
    norm_partials: Buf<f64>,
    /// `[coefficient, norm]` of the last clipping.
    coef: Buf<f32>,
    /// Nats accumulated since the last [`Cuda::take_nats`].
    nats: Buf<f64>,
    /// The divergence guard's `[what, step]` (see `Dev::guard`).
    status: Buf<i32>,
    acts: Option<Acts>,
    /// `[layer]` -> final `(h, c)` of the last batch, `[B, H]` each.
    carry: Vec<(Buf<f32>, Buf<f32>)>,
    carry_rows: usize,
    /// Whether the batch being run starts from the carried state (decided
    /// by [`Cuda::stage`]).
    carry_now: bool,
    /// The step's [`StepArgs`] on the device.
    args: Buf<u32>,
}

struct DeviceOptimizer {
    kind: Kind,
    steps: u64,
    m: Buf<f32>,
    v: Buf<f32>,
}

/// Positions of every input id, for the input table's gradient: `offsets`
/// (`vocab + 1` entries) and the positions themselves, grouped by id and
/// increasing within each id (a counting sort).
pub fn positions_by_id(ids: &[u16], vocab: usize) -> (Vec<i32>, Vec<i32>) {
    let mut offsets = vec![0i32; vocab + 1];
    for &id in ids {
        assert!(
            (id as usize) < vocab,
            "input id {id} outside a vocabulary of {vocab}"
        );
        offsets[id as usize + 1] += 1;
    }
    for i in 0..vocab {
        offsets[i + 1] += offsets[i];
    }
    let mut next: Vec<i32> = offsets[..vocab].to_vec();
    let mut rows = vec![0i32; ids.len()];
    for (r, &id) in ids.iter().enumerate() {
        let slot = &mut next[id as usize];
        rows[*slot as usize] = r as i32;
        *slot += 1;
    }
    (offsets, rows)
}

impl Cuda {
    /// A backend for models with this layout on GPU `ordinal`.
    pub fn new(layout: Layout, ordinal: usize) -> Result<Self, CudaError> {
        if !super::driver_present() {
            return Err(CudaError::NoDriver);
        }
        // The settings first: with a driver present, a value they do not
        // take is an error whatever else is missing.
        let recurrence = Recurrence::from_env()?;
        let tile = tile_from_env()?;
        let spread = Spread::from_env()?;
        let graphs = graphs_from_env()?;
        // cudarc panics on a missing library; check both before any call.
        if !super::nvrtc::available() {
            return Err(CudaError::NoNvrtc);
        }
        // SAFETY: only tries to dlopen the library's candidate names.
        if !unsafe { cudarc::cublas::sys::is_culib_present() } {
            return Err(CudaError::NoCublas);
        }
        let dev = super::guarded(|| Dev::open(ordinal))?;
        let layers = layout.arch.layers as usize;
        Ok(Cuda {
            recurrence,
            tile,
            spread,
            bar: dev.alloc(2)?,
            params: dev.alloc(layout.len)?,
            grads: dev.alloc(layout.len)?,
            opt: None,
            norm_partials: dev.alloc(NORM_BLOCKS)?,
            coef: dev.alloc(2)?,
            nats: dev.alloc(1)?,
            status: dev.alloc(2)?,
            acts: None,
            carry: (0..layers)
                .map(|_| Ok((dev.alloc(0)?, dev.alloc(0)?)))
                .collect::<Result<_, CudaError>>()?,
            carry_rows: 0,
            carry_now: false,
            args: dev.alloc(ARGS_WORDS)?,
            graphs: Graphs {
                on: graphs,
                seen: HashSet::new(),
                ready: HashMap::new(),
                captured: 0,
                replayed: 0,
            },
            layout,
            dev,
        })
    }

    /// "cuda:0 (NVIDIA H100 80GB HBM3, sm_90, NVRTC 12.9, recurrence auto,
    /// graphs on)",
    /// followed by the plan settings from the environment, if any
    /// ("; CHARLM_CUDA_SEQ_TILE=2").
    pub fn describe(&self) -> String {
        let nvrtc = match super::nvrtc::version() {
            Ok((major, minor)) => format!("NVRTC {major}.{minor}"),
            Err(_) => "NVRTC ?".into(),
        };
        let mut settings = String::new();
        if let Some(t) = self.tile {
            settings += &format!("; CHARLM_CUDA_SEQ_TILE={t}");
        }
        match self.spread {
            Spread::Default => {}
            Spread::All => settings += "; CHARLM_CUDA_SEQ_BLOCKS=all",
            Spread::Blocks(n) => settings += &format!("; CHARLM_CUDA_SEQ_BLOCKS={n}"),
        }
        format!(
            "cuda:{} ({}, {}, {nvrtc}, recurrence {}, graphs {}{settings})",
            self.dev.ordinal,
            self.dev.name,
            self.dev.arch,
            self.recurrence.name(),
            if self.graphs.on { "on" } else { "off" }
        )
    }

    /// Copies parameters to the device.
    pub fn set_params(&mut self, params: &[f32]) -> Result<(), CudaError> {
        assert_eq!(params.len(), self.layout.len, "parameter count");
        self.dev.upload(params, self.params.all())
    }

    /// Copies the device's parameters back.
    pub fn get_params(&self, params: &mut [f32]) -> Result<(), CudaError> {
        assert_eq!(params.len(), self.layout.len, "parameter count");
        self.dev.download(self.params.all(), params)
    }

    /// Copies the last gradient back.
    pub fn get_grads(&self, grads: &mut [f32]) -> Result<(), CudaError> {
        assert_eq!(grads.len(), self.layout.len, "parameter count");
        self.dev.download(self.grads.all(), grads)
    }

    /// Puts an optimizer's state (and its step count) on the device.
    pub fn set_optimizer(&mut self, opt: &Optimizer) -> Result<(), CudaError> {
        let n = self.layout.len;
        assert_eq!(opt.v.len(), n, "optimizer state size");
        let m = self.dev.alloc(if opt.kind == Kind::Adam { n } else { 0 })?;
        let v = self.dev.alloc(n)?;
        if opt.kind == Kind::Adam {
            assert_eq!(opt.m.len(), n, "Adam first moment size");
            self.dev.upload(&opt.m, m.all())?;
        }
        self.dev.upload(&opt.v, v.all())?;
        self.opt = Some(DeviceOptimizer {
            kind: opt.kind,
            steps: opt.steps,
            m,
            v,
        });
        self.graphs.forget();
        self.dev.zero(self.status.all())
    }

    /// Copies the device's optimizer state back into `opt` (for checkpoints).
    pub fn get_optimizer(&self, opt: &mut Optimizer) -> Result<(), CudaError> {
        let Some(d) = &self.opt else { return Ok(()) };
        opt.kind = d.kind;
        opt.steps = d.steps;
        opt.v.resize(self.layout.len, 0.0);
        self.dev.download(d.v.all(), &mut opt.v)?;
        if d.kind == Kind::Adam {
            opt.m.resize(self.layout.len, 0.0);
            self.dev.download(d.m.all(), &mut opt.m)?;
        } else {
            opt.m.clear();
        }
        Ok(())
    }

    /// Loss of `batch` (forward only), carrying state like training does.
    pub fn try_loss(
        &mut self,
        params: &[f32],
        batch: &Batch,
        classes: Classes,
    ) -> Result<Loss, CudaError> {
        self.set_params(params)?;
        self.dev.zero(self.nats.all())?;
        let args = StepArgs::new(batch, None, self.layout.arch.layers as usize);
        self.stage(batch, args, false)?;
        self.forward(batch, None, classes, false)?;
        Ok(Loss {
            nats: self.take_nats()?,
            count: batch.chars(),
        })
    }

    /// Loss of `batch` and the gradient of its mean, written into `grads`.
    pub fn try_loss_and_grad(
        &mut self,
        params: &[f32],
        batch: &Batch,
        grads: &mut [f32],
        dropout: Option<Dropout>,
    ) -> Result<Loss, CudaError> {
        self.set_params(params)?;
        self.dev.zero(self.nats.all())?;
        let args = StepArgs::new(batch, dropout, self.layout.arch.layers as usize);
        self.stage(batch, args, true)?;
        self.forward(batch, dropout, Classes::All, true)?;
        self.backward(batch)?;
        self.get_grads(grads)?;
        Ok(Loss {
            nats: self.take_nats()?,
            count: batch.chars(),
        })
    }

    /// One whole training step on the device's own parameters and optimizer
    /// state ([`Cuda::set_params`], [`Cuda::set_optimizer`] first): forward,
    /// loss, backward, clipping to `clip` (0 = off), update at `lr`. Only
    /// queues work: nothing is read back (see [`Cuda::take_nats`]). The
    /// first step whose loss or gradient norm is not finite leaves the
    /// parameters alone, as do all after it ([`Cuda::diverged`] says which).
    pub fn train_step(
        &mut self,
        batch: &Batch,
        dropout: Option<Dropout>,
        clip: f32,
        lr: f32,
    ) -> Result<(), CudaError> {
        let layers = self.layout.arch.layers as usize;
        let d = self
            .opt
            .as_mut()
            .expect("train_step needs set_optimizer first");
        let mut args = StepArgs::new(batch, dropout, layers);
        args.step = i32::try_from(d.steps).unwrap_or(i32::MAX);
        d.steps += 1;
        args.sc = match d.kind {
            Kind::Adam => {
                // The scalars exactly as optim::Optimizer::step computes them.
                let (b1, b2) = optim::ADAM_BETAS;
                let t = d.steps as i32;
                let bc1 = 1.0 - (b1 as f64).powi(t);
                let bc2 = 1.0 - (b2 as f64).powi(t);
                [(lr as f64 / bc1) as f32, bc2.sqrt() as f32]
            }
            Kind::Rmsprop => [lr, 0.0],
        };
        self.dev.mark(PHASE_IDLE)?;
        self.stage(batch, args, true)?;
        if !self.graphs.on || self.dev.profiling() || batch.steps == 0 {
            return self.step_body(batch, dropout, clip);
        }
        let key = StepKey {
            steps: batch.steps,
            rows: batch.rows,
            carry: self.carry_now,
            dropout: dropout
                .filter(|d| d.p > 0.0 && layers > 1)
                .map_or(0, |d| d.p.to_bits()),
            clip: if clip > 0.0 { clip.to_bits() } else { 0 },
            seq_refused: self.dev.seq_refused(),
        };
        if let Some(g) = self.graphs.ready.get(&key) {
            self.graphs.replayed += 1;
            return self.dev.replay(g);
        }
        if self.graphs.seen.insert(key) {
            // the first step of this shape: kernel by kernel
            return self.step_body(batch, dropout, clip);
        }
        let captured = match self.dev.begin_capture() {
            Ok(()) => {
                let body = self.step_body(batch, dropout, clip);
                let graph = self.dev.end_capture();
                body.and(graph)
            }
            Err(e) => Err(e),
        };
        // A new graph's first launch can still be refused (a graph whose
        // nodes the driver cannot run as captured).
        match captured.and_then(|g| self.dev.replay(&g).map(|()| g)) {
            Ok(g) => {
                if self.graphs.ready.len() >= MAX_GRAPHS {
                    self.graphs.forget();
                }
                self.graphs.ready.insert(key, g);
                self.graphs.captured += 1;
                Ok(())
            }
            Err(e) => {
                // Nothing of the step ran: run it without a graph, where a
                // real error shows as such.
                self.graphs.refuse(e);
                self.step_body(batch, dropout, clip)
            }
        }
    }

    /// Steps captured as CUDA graphs and replays of them so far.
    pub fn graph_counts(&self) -> (u64, u64) {
        (self.graphs.captured, self.graphs.replayed)
    }

    /// The work of [`Cuda::train_step`] after [`Cuda::stage`]: what a CUDA
    /// graph of the step holds.
    fn step_body(
        &mut self,
        batch: &Batch,
        dropout: Option<Dropout>,
        clip: f32,
    ) -> Result<(), CudaError> {
        self.forward(batch, dropout, Classes::All, true)?;
        self.backward(batch)?;
        let n = self.layout.len;
        // The norm is needed for the guard even without clipping.
        let max_norm = if clip > 0.0 { clip } else { f32::INFINITY };
        self.dev.clip_coef(
            n,
            self.grads.all(),
            self.norm_partials.all(),
            max_norm,
            self.coef.all(),
        )?;
        let coef = (clip > 0.0).then(|| self.coef.all());
        let step = StepArgs::step(&self.args);
        let sc = StepArgs::sc(&self.args);
        self.dev
            .guard(self.nats.all(), self.coef.all(), self.status.all(), step)?;
        let status = self.status.all();
        self.dev.mark("gradient norm, clip, guard")?;
        let d = self.opt.as_ref().expect("checked by train_step");
        match d.kind {
            Kind::Adam => {
                let (b1, b2) = optim::ADAM_BETAS;
                self.dev.adam_step(
                    n,
                    self.params.all(),
                    self.grads.all(),
                    d.m.all(),
                    d.v.all(),
                    coef,
                    status,
                    sc,
                    1.0 - b1,
                    b2,
                    1.0 - b2,
                    optim::ADAM_EPS,
                )?;
            }
            Kind::Rmsprop => {
                self.dev.rmsprop_step(
                    n,
                    self.params.all(),
                    self.grads.all(),
                    d.v.all(),
                    coef,
                    status,
                    sc,
                    optim::RMSPROP_RHO,
                    1.0 - optim::RMSPROP_RHO,
                    optim::RMSPROP_EPS,
                )?;
            }
        }
        self.dev.mark("optimizer")
    }

    /// Starts timing the phases of the steps that follow (see
    /// `charlm bench gpu --profile`).
    pub fn profile_start(&self) -> Result<(), CudaError> {
        self.dev.profile_start()
    }

    /// Waits for the profiled steps; milliseconds per phase over all of
    /// them, in step order (`None` if no profile ran).
    pub fn profile_finish(&self) -> Result<Option<Vec<(&'static str, f64)>>, CudaError> {
        self.dev.profile_finish()
    }

    /// Waits for the queued work and returns the nats summed since the last
    /// call (then starts a new sum).
    pub fn take_nats(&mut self) -> Result<f64, CudaError> {
        let mut x = [0.0f64];
        self.dev.download(self.nats.all(), &mut x)?;
        self.dev.zero(self.nats.all())?;
        Ok(x[0])
    }

    /// Waits for the queued work; `Some((what, step))` when a step of
    /// [`Cuda::train_step`] was not finite: `what` is "loss" or "gradient",
    /// `step` the optimizer's step count before it.
    pub fn diverged(&self) -> Result<Option<(&'static str, u64)>, CudaError> {
        let mut s = [0i32; 2];
        self.dev.download(self.status.all(), &mut s)?;
        Ok(match s[0] {
            0 => None,
            1 => Some(("loss", s[1] as u64)),
            _ => Some(("gradient", s[1] as u64)),
        })
    }

    /// The carried state, `[layer][h | c]` each `[B, H]` (GRU: `c` empty).
    pub fn try_carried_state(&self) -> Result<(usize, Vec<Vec<f32>>), CudaError> {
        let h = self.layout.arch.hidden as usize;
        let lstm = self.layout.arch.cell == CellKind::Lstm;
        let mut out = Vec::new();
        for (hb, cb) in &self.carry {
            let n = if self.carry_rows > 0 {
                self.carry_rows * h
            } else {
                0
            };
            let mut hv = vec![0.0; n];
            self.dev.download(hb.at(0, n), &mut hv)?;
            let mut cv = vec![0.0; if lstm { n } else { 0 }];
            self.dev.download(cb.at(0, cv.len()), &mut cv)?;
            out.push(hv);
            out.push(cv);
        }
        Ok((self.carry_rows, out))
    }

    /// Restores a state saved by [`Cuda::try_carried_state`] (or the CPU
    /// backend's); a state of the wrong size is dropped (the next window
    /// starts from zeros).
    pub fn try_set_carried_state(
        &mut self,
        rows: usize,
        state: Vec<Vec<f32>>,
    ) -> Result<(), CudaError> {
        let h = self.layout.arch.hidden as usize;
        let lstm = self.layout.arch.cell == CellKind::Lstm;
        let layers = self.carry.len();
        let fits = state.len() == 2 * layers
            && state
                .chunks(2)
                .all(|p| p[0].len() == rows * h && p[1].len() == if lstm { rows * h } else { 0 });
        self.graphs.forget(); // the carried state's buffers change
        if rows == 0 || !fits {
            self.carry_rows = 0;
            return Ok(());
        }
        for (l, pair) in state.chunks(2).enumerate() {
            let hb = self.dev.alloc(rows * h)?;
            let cb = self.dev.alloc(if lstm { rows * h } else { 0 })?;
            self.dev.upload(&pair[0], hb.all())?;
            self.dev.upload(&pair[1], cb.all())?;
            self.carry[l] = (hb, cb);
        }
        self.carry_rows = rows;
        Ok(())
    }

    /// The sequence kernels' plan for batches of `rows` sequences, when they
    /// are to be used.
    fn seq_plan(&self, rows: usize) -> Option<SeqPlan> {
        let arch = self.layout.arch;
        let h = arch.hidden as usize;
        if self.recurrence == Recurrence::Stepwise
            || !self.dev.cooperative
            || self.dev.seq_refused()
        {
            return None;
        }
        let Some(mut plan) = SeqPlan::new(
            arch.cell.gates(),
            h,
            rows,
            self.dev.sms,
            self.dev.seq_smem,
            self.spread.aim(self.dev.sms),
        ) else {
            if self.recurrence == Recurrence::Persistent {
                // Asked for by name: say it is not what runs.
                static SAID: std::sync::Once = std::sync::Once::new();
                SAID.call_once(|| {
                    errln!(
                        "charlm: note: CHARLM_CUDA_RECURRENCE=persistent: no sequence-kernel plan fits batches of {rows} sequences at hidden {h} in the shared memory this GPU gives a block ({} B); those run a step at a time",
                        self.dev.seq_smem
                    )
                });
            }
            return None;
        };
        if let Some(t) = self.tile {
            (plan.fwd.tile, plan.bwd.tile) = (t, t);
        }
        (plan.staged() || self.recurrence == Recurrence::Persistent).then_some(plan)
    }

    /// Buffers for `n` rows of `b` sequences, grown when needed.
    fn ensure(&mut self, n: usize, b: usize) -> Result<(), CudaError> {
        if self.acts.as_ref().is_some_and(|a| a.n >= n && a.b >= b) {
            return Ok(());
        }
        let (old_n, old_b) = self.acts.as_ref().map_or((0, 0), |a| (a.n, a.b));
        // Grow with headroom so batches of varying length settle quickly.
        let n = if n > old_n {
            n.max(old_n + old_n / 2)
        } else {
            old_n
        };
        let b = b.max(old_b);
        self.acts = None; // free before allocating the larger set
        self.graphs.forget(); // their addresses are gone
        let arch = self.layout.arch;
        let (h, v, g) = (arch.hidden as usize, arch.vocab as usize, arch.cell.gates());
        let gh = g * h;
        let layers = arch.layers as usize;
        let lstm = arch.cell == CellKind::Lstm;
        let dev = &self.dev;
        let mut lb = Vec::new();
        for l in 0..layers {
            let below_top = l + 1 < layers;
            lb.push(LayerBufs {
                xg: dev.alloc(n * gh)?,
                gates: dev.alloc(n * gh)?,
                h: dev.alloc((n + b) * h)?,
                c: dev.alloc(if lstm { (n + b) * h } else { 0 })?,
                aux: dev.alloc(n * h)?,
                mask: dev.alloc(if below_top { n * h } else { 0 })?,
                dropped: dev.alloc(if below_top { n * h } else { 0 })?,
                dropout_on: false,
            });
        }
        let ones = dev.alloc(n)?;
        dev.upload(&vec![1.0f32; n], ones.all())?;
        self.acts = Some(Acts {
            n,
            b,
            layers: lb,
            logits: dev.alloc(n * v)?,
            row_nats: dev.alloc(n)?,
            dxg: dev.alloc(n * gh)?,
            dhg: dev.alloc(if lstm { 0 } else { n * gh })?,
            dh: dev.alloc(n * h)?,
            dx: dev.alloc(n * h)?,
            hg: dev.alloc(b * gh)?,
            dh_next: dev.alloc(b * h)?,
            dc: dev.alloc(b * h)?,
            ones,
            ids: dev.alloc(n)?,
            targets: dev.alloc(n)?,
            tab_off: dev.alloc(v + 1)?,
            tab_rows: dev.alloc(n)?,
        });
        Ok(())
    }

    /// What a step needs before its kernels run: buffers for the batch
    /// (allocated when it is larger than any before), the carried state's
    /// buffers, and, queued, the batch (with `grad`, each input id's
    /// positions too) and the step's arguments.
    fn stage(&mut self, batch: &Batch, args: StepArgs, grad: bool) -> Result<(), CudaError> {
        let arch = self.layout.arch;
        let (tt, b) = (batch.steps, batch.rows);
        let (h, v, n) = (arch.hidden as usize, arch.vocab as usize, tt * b);
        assert_eq!(batch.inputs.len(), n, "batch inputs");
        assert_eq!(batch.targets.len(), n, "batch targets");
        self.ensure(n, b)?;
        self.carry_now = batch.carry && self.carry_rows == b;
        if self.carry_rows != b {
            self.graphs.forget();
            for slot in self.carry.iter_mut() {
                *slot = (
                    self.dev.alloc(b * h)?,
                    self.dev.alloc(if arch.cell == CellKind::Lstm {
                        b * h
                    } else {
                        0
                    })?,
                );
            }
            self.carry_rows = b;
        }
        let dev = &self.dev;
        let acts = self.acts.as_ref().expect("allocated by ensure");
        dev.upload_async(&batch.inputs, acts.ids.all())?;
        dev.upload_async(&batch.targets, acts.targets.all())?;
        dev.upload_async(&args.words(), self.args.all())?;
        if grad && n > 0 {
            let (offsets, rows) = positions_by_id(&batch.inputs, v);
            dev.upload_async(&offsets, acts.tab_off.all())?;
            dev.upload_async(&rows, acts.tab_rows.all())?;
        }
        Ok(())
    }

    fn forward(
        &mut self,
        batch: &Batch,
        dropout: Option<Dropout>,
        classes: Classes,
        grad: bool,
    ) -> Result<(), CudaError> {
        let arch = self.layout.arch;
        let (tt, b) = (batch.steps, batch.rows);
        let (h, v, g) = (arch.hidden as usize, arch.vocab as usize, arch.cell.gates());
        let (gh, n) = (g * h, tt * b);
        let layers = arch.layers as usize;
        let plan = self.seq_plan(b);
        let fall_back = self.recurrence == Recurrence::Auto;
        let carry = self.carry_now;
        let dev = &self.dev;
        let acts = self.acts.as_mut().expect("allocated by stage");
        let params = self.params.all();
        for l in 0..layers {
            let [w_ih, w_hh, b_ih, b_hh] = self.layout.layers[l].clone();
            let w_ih = params.sub(w_ih.start, w_ih.len());
            let w_hh = params.sub(w_hh.start, w_hh.len());
            let b_ih = params.sub(b_ih.start, b_ih.len());
            let b_hh = params.sub(b_hh.start, b_hh.len());
            let (below, rest) = acts.layers.split_at_mut(l);
            let c = &mut rest[0];
            // 1. input pre-activations for all steps
            if l == 0 {
                dev.embed_forward(n, gh, v, acts.ids.all(), w_ih, b_ih, c.xg.all())?;
            } else {
                let x = below[l - 1].output(n, b, h);
                // xg[N, GH] = x[N, H] W_ih^T (W_ih stored [GH, H]); see Dev::gemm for the row-major swap.
                dev.gemm(n, gh, h, x, false, w_ih, true, 0.0, c.xg.all())?;
                dev.add_bias(n, gh, c.xg.all(), b_ih)?;
            }
            dev.mark("forward: batch upload, input projection")?;
            // initial state
            let lstm = arch.cell == CellKind::Lstm;
            if carry {
                dev.copy(self.carry[l].0.at(0, b * h), c.h.at(0, b * h))?;
                if lstm {
                    dev.copy(self.carry[l].1.at(0, b * h), c.c.at(0, b * h))?;
                }
            } else {
                dev.zero(c.h.at(0, b * h))?;
                if lstm {
                    dev.zero(c.c.at(0, b * h))?;
                }
            }
            // 2. the recurrence: one cooperative launch, or two launches per step
            let seq = match plan.filter(|_| tt > 0) {
                Some(p) => dev.seq_ran(
                    dev.forward_seq(
                        p,
                        tt,
                        b,
                        h,
                        w_hh,
                        b_hh,
                        c.xg.all(),
                        c.gates.all(),
                        c.h.all(),
                        lstm.then(|| c.c.all()),
                        c.aux.all(),
                        self.bar.all(),
                    ),
                    fall_back,
                )?,
                None => false,
            };
            if !seq {
                for t in 0..tt {
                    let hprev = c.h.at(t * b * h, b * h);
                    let hout = c.h.at((t + 1) * b * h, b * h);
                    let xg = c.xg.at(t * b * gh, b * gh);
                    let gates = c.gates.at(t * b * gh, b * gh);
                    let aux = c.aux.at(t * b * h, b * h);
                    let hg = acts.hg.at(0, b * gh);
                    // hg[B, GH] = h_{t-1}[B, H] W_hh^T (W_hh stored [GH, H]); row-major swap in Dev::gemm.
                    dev.gemm(b, gh, h, hprev, false, w_hh, true, 0.0, hg)?;
                    if lstm {
                        let cprev = c.c.at(t * b * h, b * h);
                        let cout = c.c.at((t + 1) * b * h, b * h);
                        dev.lstm_forward(b, h, xg, hg, b_hh, gates, cprev, cout, aux, hout)?;
                    } else {
                        dev.gru_forward(b, h, xg, hg, b_hh, gates, hprev, aux, hout)?;
                    }
                }
            }
            dev.mark("forward: recurrence")?;
            // remember the final state for the next window
            dev.copy(c.h.at(tt * b * h, b * h), self.carry[l].0.at(0, b * h))?;
            if lstm {
                dev.copy(c.c.at(tt * b * h, b * h), self.carry[l].1.at(0, b * h))?;
            }
            // dropout on the output of every layer but the last
            c.dropout_on = false;
            if let Some(d) = dropout.filter(|d| d.p > 0.0 && l + 1 < layers) {
                let s0 = StepArgs::seed(&self.args, l);
                let scale = (1.0 / (1.0 - d.p as f64)) as f32;
                dev.dropout_forward(
                    n * h,
                    c.h.at(b * h, n * h),
                    c.mask.all(),
                    c.dropped.all(),
                    s0,
                    d.p,
                    scale,
                )?;
                c.dropout_on = true;
            }
            dev.mark("forward: state copies, dropout")?;
        }
        // output projection over all rows
        let top = acts.layers[layers - 1].output(n, b, h);
        let ow = params.sub(self.layout.out_w.start, self.layout.out_w.len());
        let ob = params.sub(self.layout.out_b.start, self.layout.out_b.len());
        // logits[N, V] = top[N, H] out_w^T (out_w stored [V, H]); row-major swap in Dev::gemm.
        dev.gemm(n, v, h, top, false, ow, true, 0.0, acts.logits.all())?;
        dev.add_bias(n, v, acts.logits.all(), ob)?;
        // softmax, masked cross-entropy and (with grad) its gradient
        let inv = StepArgs::inv(&self.args);
        let first = match classes {
            Classes::All => 0,
            Classes::NoPadding => 1,
        };
        if n > 0 {
            dev.softmax_xent(
                n,
                v,
                acts.logits.all(),
                acts.targets.all(),
                acts.row_nats.all(),
                first,
                inv,
                grad,
            )?;
            dev.sum_f64(n, acts.row_nats.all(), self.nats.all())?;
        }
        dev.mark("forward: output layer, softmax, loss")
    }

    fn backward(&mut self, batch: &Batch) -> Result<(), CudaError> {
        let arch = self.layout.arch;
        let (tt, b) = (batch.steps, batch.rows);
        let (h, v, g) = (arch.hidden as usize, arch.vocab as usize, arch.cell.gates());
        let (gh, n) = (g * h, tt * b);
        let layers = arch.layers as usize;
        let lstm = arch.cell == CellKind::Lstm;
        let plan = self.seq_plan(b);
        let fall_back = self.recurrence == Recurrence::Auto;
        let dev = &self.dev;
        let acts = self.acts.as_mut().expect("forward ran");
        let params = self.params.all();
        let grads = self.grads.all();
        let slot = |r: &std::ops::Range<usize>, p: P<f32>| p.sub(r.start, r.len());
        dev.zero(grads)?;
        if n == 0 {
            return Ok(());
        }
        // output layer
        let dlogits = acts.logits.at(0, n * v);
        let top = acts.layers[layers - 1].output(n, b, h);
        // d out_w[V, H] = dlogits^T top: dlogits stored [N, V] (transposed operand); row-major swap in Dev::gemm.
        dev.gemm(
            v,
            h,
            n,
            dlogits,
            true,
            top,
            false,
            0.0,
            slot(&self.layout.out_w, grads),
        )?;
        dev.col_sums(
            dlogits,
            n,
            v,
            acts.ones.all(),
            slot(&self.layout.out_b, grads),
        )?;
        // dh[N, H] = dlogits[N, V] out_w[V, H]; row-major swap in Dev::gemm.
        dev.gemm(
            n,
            h,
            v,
            dlogits,
            false,
            slot(&self.layout.out_w, params),
            false,
            0.0,
            acts.dh.all(),
        )?;
        dev.mark("backward: output layer")?;
        for l in (0..layers).rev() {
            let [w_ih, w_hh, b_ih, b_hh] = self.layout.layers[l].clone();
            let c = &acts.layers[l];
            if c.dropout_on {
                dev.mul_inplace(n * h, acts.dh.all(), c.mask.all())?;
            }
            let w = slot(&w_hh, params);
            // LSTM: the cell states; GRU: the hidden states
            let state = if lstm { c.c.all() } else { c.h.all() };
            let seq = match plan {
                Some(p) => dev.seq_ran(
                    dev.backward_seq(
                        p,
                        tt,
                        b,
                        h,
                        w,
                        acts.dh.at(0, n * h),
                        c.gates.all(),
                        state,
                        c.aux.all(),
                        acts.dxg.all(),
                        (!lstm).then(|| acts.dhg.all()),
                        self.bar.all(),
                    ),
                    fall_back,
                )?,
                None => false,
            };
            if !seq {
                dev.zero(acts.dh_next.at(0, b * h))?;
                dev.zero(acts.dc.at(0, b * h))?;
                for t in (0..tt).rev() {
                    let dh = acts.dh.at(t * b * h, b * h);
                    let dxg = acts.dxg.at(t * b * gh, b * gh);
                    let gates = c.gates.at(t * b * gh, b * gh);
                    let aux = c.aux.at(t * b * h, b * h);
                    let dh_next = acts.dh_next.at(0, b * h);
                    if lstm {
                        dev.lstm_backward(
                            b,
                            h,
                            dh,
                            dh_next,
                            acts.dc.at(0, b * h),
                            gates,
                            c.c.at(t * b * h, b * h),
                            aux,
                            dxg,
                        )?;
                        if t > 0 {
                            // dh_next[B, H] = dg[B, GH] W_hh[GH, H]; row-major swap in Dev::gemm.
                            dev.gemm(b, h, gh, dxg, false, w, false, 0.0, dh_next)?;
                        }
                    } else {
                        let dhg = acts.dhg.at(t * b * gh, b * gh);
                        dev.gru_backward(
                            b,
                            h,
                            dh,
                            dh_next,
                            gates,
                            c.h.at(t * b * h, b * h),
                            aux,
                            dxg,
                            dhg,
                        )?;
                        if t > 0 {
                            // dh_next[B, H] += dhg[B, GH] W_hh[GH, H] (beta 1: the kernel left d*z there); row-major swap in Dev::gemm.
                            dev.gemm(b, h, gh, dhg, false, w, false, 1.0, dh_next)?;
                        }
                    }
                }
            }
            dev.mark("backward: recurrence")?;
            // weight gradients over all rows at once
            let dxg = acts.dxg.at(0, n * gh);
            let dhg = if lstm { dxg } else { acts.dhg.at(0, n * gh) };
            let hprev = c.h.at(0, n * h);
            // d W_hh[GH, H] = dhg^T h_prev: dhg stored [N, GH] (transposed operand); row-major swap in Dev::gemm.
            dev.gemm(gh, h, n, dhg, true, hprev, false, 0.0, slot(&w_hh, grads))?;
            dev.col_sums(dhg, n, gh, acts.ones.all(), slot(&b_hh, grads))?;
            dev.col_sums(dxg, n, gh, acts.ones.all(), slot(&b_ih, grads))?;
            if l == 0 {
                dev.table_backward(
                    v,
                    gh,
                    n,
                    acts.tab_off.all(),
                    acts.tab_rows.all(),
                    dxg,
                    slot(&w_ih, grads),
                )?;
            } else {
                let x = acts.layers[l - 1].output(n, b, h);
                // d W_ih[GH, H] = dxg^T x: dxg stored [N, GH] (transposed operand); row-major swap in Dev::gemm.
                dev.gemm(gh, h, n, dxg, true, x, false, 0.0, slot(&w_ih, grads))?;
                // dx[N, H] = dxg[N, GH] W_ih[GH, H]; row-major swap in Dev::gemm.
                dev.gemm(
                    n,
                    h,
                    gh,
                    dxg,
                    false,
                    slot(&w_ih, params),
                    false,
                    0.0,
                    acts.dx.all(),
                )?;
                std::mem::swap(&mut acts.dh, &mut acts.dx);
            }
            dev.mark("backward: weight gradients, input gradient")?;
        }
        Ok(())
    }
}

impl LayerBufs {
    /// `[T*B, H]` output of the layer as the next one sees it (after dropout).
    fn output(&self, n: usize, b: usize, h: usize) -> P<f32> {
        if self.dropout_on {
            self.dropped.at(0, n * h)
        } else {
            self.h.at(b * h, n * h)
        }
    }
}

/// Device errors inside the `Backend` trait (whose methods return plain
/// values) end the process with one line: they mean the GPU failed or ran
/// out of memory mid-run, and there is nothing sensible to continue with.
fn fatal<T>(r: Result<T, CudaError>) -> T {
    match r {
        Ok(x) => x,
        Err(e) => {
            errln!("charlm: error: CUDA backend: {e}");
            std::process::exit(2);
        }
    }
}

impl crate::train::Backend for Cuda {
    fn describe(&self) -> String {
        Cuda::describe(self)
    }
    fn loss_and_grad(
        &mut self,
        params: &[f32],
        batch: &Batch,
        grads: &mut [f32],
        dropout: Option<Dropout>,
    ) -> Loss {
        fatal(self.try_loss_and_grad(params, batch, grads, dropout))
    }
    fn loss(&mut self, params: &[f32], batch: &Batch, classes: Classes) -> Loss {
        fatal(self.try_loss(params, batch, classes))
    }
    fn carried_state(&self) -> (usize, Vec<Vec<f32>>) {
        fatal(self.try_carried_state())
    }
    fn set_carried_state(&mut self, rows: usize, state: Vec<Vec<f32>>) {
        fatal(self.try_set_carried_state(rows, state))
    }
    fn resident(&mut self) -> Option<&mut dyn crate::train::Resident> {
        Some(self)
    }
}

/// A device error as the command line reports it (one line, status 2).
pub(super) fn cli(e: CudaError) -> crate::error::CliError {
    crate::error::CliError::invalid(format!("CUDA backend: {e}"))
}

impl crate::train::Resident for Cuda {
    fn load(&mut self, params: &[f32], opt: &Optimizer) -> Result<(), crate::error::CliError> {
        self.set_params(params).map_err(cli)?;
        self.set_optimizer(opt).map_err(cli)?;
        self.dev.zero(self.nats.all()).map_err(cli)
    }
    fn step(
        &mut self,
        batch: &Batch,
        dropout: Option<Dropout>,
        clip: f32,
        lr: f32,
    ) -> Result<(), crate::error::CliError> {
        self.train_step(batch, dropout, clip, lr).map_err(cli)
    }
    fn settle(&mut self) -> Result<crate::train::Settled, crate::error::CliError> {
        let nats = self.take_nats().map_err(cli)?;
        Ok(match self.diverged().map_err(cli)? {
            Some((what, step)) => crate::train::Settled::Diverged { what, step },
            None => crate::train::Settled::Nats(nats),
        })
    }
    fn store(
        &mut self,
        params: &mut [f32],
        opt: &mut Optimizer,
    ) -> Result<(), crate::error::CliError> {
        self.get_params(params).map_err(cli)?;
        self.get_optimizer(opt).map_err(cli)
    }
}

#[cfg(test)]
mod tests {
    use super::positions_by_id;

    #[test]
    fn positions_are_grouped_by_id_in_row_order() {
        let ids = [3u16, 1, 3, 0, 1, 3];
        let (off, rows) = positions_by_id(&ids, 5);
        assert_eq!(off, vec![0, 1, 3, 3, 6, 6]);
        assert_eq!(rows, vec![3, 1, 4, 0, 2, 5]);
        // every position appears once, under its own id
        for id in 0..5 {
            for &r in &rows[off[id] as usize..off[id + 1] as usize] {
                assert_eq!(ids[r as usize] as usize, id);
            }
        }
    }
}
