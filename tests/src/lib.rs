//! Shared pieces of charlm's golden-output tests: the synthetic fixture
//! models, the cases their golden texts cover, and where those files live.
//!
//! The fixtures are *synthetic*: weights drawn from a seeded PCG32, scaled so
//! that greedy and sampled text is varied rather than one repeated
//! character. `cargo run -p charlm-tests --bin make-fixtures` rewrites them
//! and their golden outputs; nothing else does.

use std::path::PathBuf;

use charlm_runtime::format::{
    Arch, Body, CellKind, DType, Header, LayerRecord, Meta, ModelFile, Tensor, VocabRecord,
};
use charlm_runtime::{SeededRng, TensorName};
use charlm_trainer::sample::{Batch, HostWorkspace, Sample, SampleError, generate_batch};
use rand_core::RngCore;

/// A synthetic model to build.
pub struct Spec {
    /// File stem under `tests/fixtures/`.
    pub name: &'static str,
    /// Cell type.
    pub cell: CellKind,
    /// Layers.
    pub layers: u8,
    /// Hidden size (deliberately not always a multiple of 8).
    pub hidden: u16,
    /// Symbols of ids 1.. in order.
    pub symbols: &'static str,
    /// Seed of the weight generator.
    pub seed: u64,
}

/// The fixtures: a 2-layer LSTM with hidden 27 (exercises the dot product's
/// tail lanes) and a 1-layer GRU with a German/French vocabulary.
pub const SPECS: [Spec; 2] = [
    Spec {
        name: "lstm2",
        cell: CellKind::Lstm,
        layers: 2,
        hidden: 27,
        symbols: " etaoinshrdlucmfwypvbgkqjxzTOAS.,'-!?",
        seed: 20261127,
    },
    Spec {
        name: "gru1",
        cell: CellKind::Gru,
        layers: 1,
        hidden: 20,
        symbols: " enrisatdhulgcmoäöüßéÄÖÜ€bfkwzpv.,",
        seed: 4711,
    },
];

/// Models trained by `charlm train` and committed as they came out (see
/// tests/fixtures/README.md for the exact command). Their golden outputs
/// are rewritten by make-fixtures; the models themselves never are.
pub const TRAINED: [&str; 1] = ["shakespeare-lstm128"];

/// i8 versions of the models above (`charlm export MODEL.clm --weights i8`,
/// i.e. `charlm_trainer::export::quantize_file`), each `(i8 model, f16
/// model it is made from)`: written by make-fixtures, with golden outputs.
/// The 2-layer LSTM's hidden size 27 takes the i8 dot products through
/// their tail lanes too.
pub const QUANTIZED: [(&str, &str); 3] = [
    ("lstm2-i8", "lstm2"),
    ("gru1-i8", "gru1"),
    ("shakespeare-lstm128-i8", "shakespeare-lstm128"),
];

/// Every model with golden outputs: the synthetic ones, the trained ones,
/// then the i8 ones.
pub fn golden_models() -> Vec<&'static str> {
    SPECS
        .iter()
        .map(|s| s.name)
        .chain(TRAINED)
        .chain(QUANTIZED.iter().map(|q| q.0))
        .collect()
}

/// Prompts of the golden cases (unknown characters are dropped).
pub const PROMPTS: [&str; 3] = ["the ", "Über die Straße ", "a"];
/// Temperatures of the golden cases; 0 is greedy.
pub const TEMPERATURES: [f32; 4] = [0.0, 0.5, 1.0, 1.5];
/// Seed of the first text in each golden file.
pub const SEED: u64 = 7;
/// Texts per prompt (seeds SEED, SEED+1, ...).
pub const COUNT: u32 = 3;
/// Length limit of each golden text.
pub const MAX_CHARS: usize = 80;

/// The repository's `tests/` folder.
pub fn tests_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Path of a fixture model.
pub fn model_path(name: &str) -> PathBuf {
    tests_dir().join("fixtures").join(format!("{name}.clm"))
}

/// Path of a golden output: `charlm generate` stdout for one model and temperature.
pub fn golden_path(name: &str, temperature: f32) -> PathBuf {
    tests_dir()
        .join("golden")
        .join(format!("{name}_t{temperature:.1}.txt"))
}

/// The `charlm generate` arguments that reproduce a golden file.
pub fn generate_args(name: &str, temperature: f32) -> Vec<String> {
    let mut args = vec![
        "generate".to_string(),
        "--model".into(),
        model_path(name).display().to_string(),
        "--temperature".into(),
        temperature.to_string(),
        "--seed".into(),
        SEED.to_string(),
        "--count".into(),
        COUNT.to_string(),
        "--max-chars".into(),
        MAX_CHARS.to_string(),
    ];
    for p in PROMPTS {
        args.push("--prompt".into());
        args.push(p.into());
    }
    args
}

/// The golden text of a model at a temperature, computed through the library.
pub fn golden_text(model_bytes: &[u8], temperature: f32) -> Result<String, SampleError> {
    let model = charlm_runtime::Model::from_bytes(model_bytes)?;
    let mut ws: Box<HostWorkspace> = charlm_trainer::sample::host_workspace();
    let prompts: Vec<String> = PROMPTS.iter().map(|p| p.to_string()).collect();
    let batch = Batch {
        prompts: &prompts,
        sampler: charlm_runtime::Sampler::from_temperature(temperature)?,
        seed: SEED,
        count: COUNT,
        max_chars: MAX_CHARS,
    };
    let mut out = String::new();
    generate_batch(&model, &mut ws, &batch, |s: &Sample| {
        out.push_str(&s.text());
        out.push('\n');
        Ok::<(), SampleError>(())
    })?;
    Ok(out)
}

/// Synthetic weights of a spec, as f16 bit patterns per tensor in file order.
pub struct Weights {
    /// Architecture.
    pub arch: Arch,
    /// `(name, shape, f16 values)` in file order.
    pub tensors: Vec<(TensorName, [u32; 2], Vec<half::f16>)>,
}

impl Weights {
    /// Draws the weights of `spec`: uniform in `[-s, s]` with `s` chosen per
    /// tensor so that gates saturate sometimes and logits spread over a few nats.
    pub fn synthesize(spec: &Spec) -> Weights {
        let vocab = spec.symbols.chars().count() as u16 + 2;
        let arch = Arch {
            cell: spec.cell,
            layers: spec.layers,
            hidden: spec.hidden,
            vocab,
        };
        // (PCG32 on the seed as it is, as `SeededRng` seeded it before it
        // mixed the seed: the committed fixtures' weights)
        let mut rng = charlm_runtime::Pcg32::new(spec.seed, 0x0a02_bdbf_7bb3_c0a7);
        let mut uniform = |scale: f32| {
            let u = (rng.next_u32() >> 8) as f32 / (1u32 << 24) as f32;
            half::f16::from_f32((2.0 * u - 1.0) * scale)
        };
        let h = spec.hidden as f32;
        let mut tensors = Vec::new();
        let mut names = Vec::new();
        for l in 0..spec.layers {
            names.extend([
                TensorName::WIh(l),
                TensorName::WHh(l),
                TensorName::BIh(l),
                TensorName::BHh(l),
            ]);
        }
        names.extend([TensorName::OutW, TensorName::OutB]);
        for name in names {
            let shape = arch.shape_of(name);
            let scale = match name {
                TensorName::WIh(0) => 1.5,
                TensorName::WIh(_) | TensorName::WHh(_) => 2.5 / h.sqrt(),
                TensorName::BIh(_) | TensorName::BHh(_) => 0.3,
                TensorName::OutW => 6.0 / h.sqrt(),
                TensorName::OutB => 0.5,
            };
            let values = (0..shape[0] * shape[1]).map(|_| uniform(scale)).collect();
            tensors.push((name, shape, values));
        }
        Weights { arch, tensors }
    }

    /// Little-endian bytes of every tensor, in file order.
    pub fn bytes(&self) -> Vec<Vec<u8>> {
        self.tensors
            .iter()
            .map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect())
            .collect()
    }

    /// The `.clm` file of these weights.
    pub fn encode(&self, symbols: &str, corpus: &str) -> Vec<u8> {
        let data = self.bytes();
        let t = |i: usize| Tensor {
            dtype: DType::F16,
            shape: self.tensors[i].1,
            data: &data[i],
        };
        let layers = (0..self.arch.layers as usize)
            .map(|l| LayerRecord {
                w_ih: t(4 * l),
                w_hh: t(4 * l + 1),
                b_ih: t(4 * l + 2),
                b_hh: t(4 * l + 3),
            })
            .collect::<heapless::Vec<_, 4>>();
        let n = data.len();
        let file = ModelFile {
            header: Header::for_weights(DType::F16),
            body: Body {
                arch: self.arch,
                vocab: VocabRecord {
                    symbols: symbols.as_bytes(),
                    pad: 0,
                    eos: self.arch.vocab - 1,
                },
                layers,
                out_w: t(n - 2),
                out_b: t(n - 1),
                meta: Meta {
                    corpus,
                    steps: 0,
                    ..Meta::default()
                },
            },
        };
        file.encode().expect("encoding a valid model")
    }

    /// The weights in PyTorch's layout and names, as JSON for
    /// `tests/reference/torch_forward.py` (layer 0's table becomes
    /// `weight_ih_l0` = its transpose).
    pub fn torch_json(&self, symbols: &str) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        for (name, shape, values) in &self.tensors {
            let f: Vec<f32> = values.iter().map(|x| x.to_f32()).collect();
            let (key, rows, cols, vals) = match name {
                TensorName::WIh(0) => {
                    // [V, G*H] table -> [G*H, V]
                    let (v, gh) = (shape[0] as usize, shape[1] as usize);
                    let t: Vec<f32> = (0..gh)
                        .flat_map(|r| (0..v).map(move |c| (r, c)))
                        .map(|(r, c)| f[c * gh + r])
                        .collect();
                    ("weight_ih_l0".to_string(), gh, v, t)
                }
                TensorName::WIh(l) => (
                    format!("weight_ih_l{l}"),
                    shape[0] as usize,
                    shape[1] as usize,
                    f,
                ),
                TensorName::WHh(l) => (
                    format!("weight_hh_l{l}"),
                    shape[0] as usize,
                    shape[1] as usize,
                    f,
                ),
                TensorName::BIh(l) => (format!("bias_ih_l{l}"), shape[0] as usize, 0, f),
                TensorName::BHh(l) => (format!("bias_hh_l{l}"), shape[0] as usize, 0, f),
                TensorName::OutW => (
                    "out.weight".to_string(),
                    shape[0] as usize,
                    shape[1] as usize,
                    f,
                ),
                TensorName::OutB => ("out.bias".to_string(), shape[0] as usize, 0, f),
            };
            let value = if cols == 0 {
                serde_json::json!(vals)
            } else {
                serde_json::json!(vals.chunks(cols).map(|r| r.to_vec()).collect::<Vec<_>>())
            };
            let _ = rows;
            map.insert(key, value);
        }
        serde_json::json!({
            "cell": self.arch.cell.name(),
            "layers": self.arch.layers,
            "hidden": self.arch.hidden,
            "vocab": self.arch.vocab,
            "symbols": symbols,
            "input_ids": reference_input(self.arch.vocab),
            "state_dict": map,
        })
    }
}

/// The id sequence the PyTorch reference runs: every symbol id once, then a
/// pseudo-random walk, 40 steps in all (never padding or `<eos>`).
pub fn reference_input(vocab: u16) -> Vec<u16> {
    let symbols = vocab - 2;
    (0..40u16)
        .map(|i| {
            if i < symbols {
                i + 1
            } else {
                (i * 7 + 3) % symbols + 1
            }
        })
        .collect()
}

/// The firmware benchmark model (docs/BENCHMARKS.md): a 1-layer LSTM,
/// hidden 128, 84 ids, f16 — the shape the firmware issue measures. Written
/// by `cargo run -p charlm-tests --bin make-bench-model -- OUT.clm` and by
/// the QEMU parity test; never committed (about 240 KB, deterministic).
pub const FIRMWARE_BENCH: Spec = Spec {
    name: "bench-lstm128",
    cell: CellKind::Lstm,
    layers: 1,
    hidden: 128,
    symbols: " etaoinsrhldcumfpgwybvkxjqzETAOINSRHLDCUMFPGWYBVKXJQZ0123456789.,;:'\"!?-()&/$%#@*+",
    seed: 128_084,
};

/// The ids the logits digest runs: every symbol once (so every row of the
/// input table is used), then 40 pseudo-random symbols.
pub fn digest_input(vocab: u16) -> Vec<u16> {
    let symbols = vocab - 2;
    (1..=symbols)
        .chain((0..40u16).map(|i| (i * 7 + 3) % symbols + 1))
        .collect()
}

/// The logits (ids `0..V`, as bits) after each id of [`digest_input`],
/// computed with `kernel`.
pub fn digest_logits<K: charlm_runtime::Kernel>(
    model: &charlm_runtime::Model<'_>,
    kernel: K,
) -> Result<Vec<Vec<u32>>, charlm_runtime::Error> {
    let mut ws = charlm_trainer::sample::host_workspace();
    let mut g = charlm_runtime::Generator::with_kernel(
        model,
        &mut ws,
        charlm_runtime::Sampler::Greedy,
        SeededRng::new(0),
        kernel,
    )?;
    Ok(digest_input(model.arch().vocab)
        .into_iter()
        .map(|id| {
            // A digest of nothing would compare equal to any other.
            assert!(g.feed_id(id), "id {id} refused");
            let logits = g.logits().expect("logits after a feed");
            assert_eq!(logits.len(), usize::from(model.arch().vocab));
            logits.iter().map(|x| x.to_bits()).collect()
        })
        .collect())
}

/// Path of a model's logits digest: one line per step of [`digest_input`],
/// the CRC-32 of that step's logits as little-endian f32 bits.
pub fn digest_path(name: &str) -> PathBuf {
    tests_dir()
        .join("golden")
        .join(format!("{name}.logits.txt"))
}

/// The logits digest of a model (see [`digest_path`]). Every weight takes
/// part in some step, so changing any one weight bit almost surely changes
/// a line: a far finer check than the texts, which a small change may leave alone.
pub fn logits_digest(model_bytes: &[u8]) -> Result<String, charlm_runtime::Error> {
    let model = charlm_runtime::Model::from_bytes(model_bytes)?;
    let kernel = charlm_trainer::host_kernel::HostKernel::detect();
    let ids = digest_input(model.arch().vocab);
    let mut out = String::new();
    for (step, (id, logits)) in ids.iter().zip(digest_logits(&model, kernel)?).enumerate() {
        let bytes: Vec<u8> = logits
            .iter()
            .skip(1)
            .flat_map(|x| x.to_le_bytes())
            .collect();
        out.push_str(&format!(
            "{step:3} id {id:3} crc {:08x}\n",
            charlm_runtime::format::crc32(&bytes)
        ));
    }
    Ok(out)
}

/// Whether this is a CI run (`CI=true` or `CI=1`): there a check that
/// cannot run fails instead of being skipped.
pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}
