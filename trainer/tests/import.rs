//! `charlm import` on models that PyTorch and Keras made: the imported
//! model's logits, through the runtime, against the framework's own.
//!
//! The fixtures in tests/fixtures/import/ were written by
//! `tests/reference/import_models.py` (PyTorch 2.15 and Keras 3.15 on
//! PyTorch); our code computed none of their numbers. Their weights are
//! values f16 holds, so an import changes nothing but the one rounding it
//! documents (an embedding folded into the input table, rounded to f16).
//!
//! Tolerances:
//! - against float32 or float64 logits of the same weights (PyTorch's of
//!   the folded model, Keras's of the LSTM): 2e-5 + 2e-5|x|. The runtime
//!   sums in float32; a pre-activation here has up to 50 terms, each sum
//!   within 50 roundings of 2^-24 times the sum of |terms| (a few units),
//!   and two layers over 64 steps pass those errors on, where
//!   tests/tests/torch_logits.rs holds 1-layer models over 40 steps to
//!   4e-6. Keras's own float32 sums, in other orders, fall within the same
//!   bound. Observed: 4.8e-6 (PyTorch, folded), 3.7e-8 (Keras LSTM);
//! - against logits of the weights before the fold (PyTorch's embedding
//!   model, Keras's): 2e-3. Each folded table entry moved by at most half
//!   an f16 ulp, 2^-12 of its size (below 2): at most 5e-4 on the one
//!   table row a step adds to a pre-activation, which a gate passes on at
//!   most unchanged. Observed: 2.8e-5 (PyTorch), 1.5e-5 (Keras).
//!
//! A wrong gate order, a missing bias, a transposed matrix or a wrong id
//! gives errors far above each of these.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use charlm_runtime::{Generator, Model, Sampler, SeededRng};

#[path = "common/tensors.rs"]
mod tensors;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/import")
}

fn charlm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_charlm"))
        .args(args)
        .output()
        .expect("run charlm")
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("JSON")
}

/// Imports fixture `name` (with `extra` arguments) into `dir`; returns the
/// model bytes and what the command printed.
fn import(name: &str, dir: &Path, extra: &[&str]) -> (Vec<u8>, String) {
    let out = dir.join(format!("{name}.clm"));
    let weights = fixtures().join(format!("{name}.safetensors"));
    let vocab = fixtures().join(format!("{name}.vocab.json"));
    let mut args = vec![
        "import",
        weights.to_str().unwrap(),
        "--vocab",
        vocab.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let o = charlm(&args);
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "charlm import {name}: {}{stdout}",
        String::from_utf8_lossy(&o.stderr)
    );
    (std::fs::read(&out).expect("the imported model"), stdout)
}

/// The largest error of the runtime's logits on the fixture's text against
/// `reference` (per step, per source id), after asserting each within
/// `abs + rel * |x|`.
///
/// Where both sides run the same f16-valued weights in f32 (the folded
/// models, keras-lstm), they differ only in summation order and in the
/// activations' last bits: 1e-6 + 1e-6 |x| (observed 2026-12-07, printed by
/// each test: at most 1.2e-7). Against a model with its embedding unfolded,
/// the bound is that of the fold's f16 rounding (2^-11 of each table entry
/// through the network): 2e-3 (observed: 1.5e-5 and 2.8e-5).
fn compare(name: &str, model: &[u8], reference: &str, abs: f64, rel: f64) -> f64 {
    let expected = json(&fixtures().join(format!("{name}.logits.json")));
    let vocab: Vec<String> =
        serde_json::from_value(json(&fixtures().join(format!("{name}.vocab.json")))).unwrap();
    let model = Model::from_bytes(model).expect("a valid model");
    // Source id -> charlm id (padding has no logit in the runtime).
    let ids: Vec<Option<u16>> = vocab
        .iter()
        .map(|s| match s.as_str() {
            "<pad>" => None,
            "<eos>" => Some(model.vocab().eos()),
            c => Some(
                model
                    .vocab()
                    .id_of(c.chars().next().unwrap())
                    .expect("a known character"),
            ),
        })
        .collect();
    let mut ws = charlm_trainer::sample::host_workspace();
    let mut g = Generator::new(&model, &mut ws, Sampler::Greedy, SeededRng::new(0)).unwrap();
    let text = expected["text"].as_str().unwrap();
    let steps = expected[reference].as_array().unwrap();
    assert_eq!(text.chars().count(), steps.len());
    let mut worst = 0.0f64;
    for (t, (c, step)) in text.chars().zip(steps).enumerate() {
        assert!(g.feed_id(model.vocab().id_of(c).unwrap()));
        let theirs: Vec<f64> = step
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(theirs.len(), vocab.len());
        for (s, (&id, &x)) in ids.iter().zip(&theirs).enumerate() {
            let Some(id) = id else { continue };
            let ours = g.logits().unwrap()[id as usize] as f64;
            let err = (ours - x).abs();
            worst = worst.max(err);
            assert!(
                err <= abs + rel * x.abs(),
                "{name} ({reference}) step {t} ({c:?}) source id {s} ({:?}): runtime {ours} vs {x}",
                vocab[s]
            );
        }
    }
    eprintln!("{name} against {reference}: largest |runtime - reference| = {worst:.3e}");
    worst
}

#[test]
fn a_pytorch_gru_with_an_embedding_runs_as_pytorch_computes_it() {
    let dir = tempfile::tempdir().unwrap();
    let (model, said) = import("torch-gru-embed", dir.path(), &[]);
    assert!(
        said.contains("imported a PyTorch GRU: 2 layers, hidden 24")
            && said.contains("its 8-wide embedding folded into the input table"),
        "{said}"
    );
    compare("torch-gru-embed", &model, "folded_logits", 1e-6, 1e-6);
    compare("torch-gru-embed", &model, "logits", 2e-3, 0.0);
}

#[test]
fn the_lessons_keras_lstm_runs_as_keras_computes_it() {
    let dir = tempfile::tempdir().unwrap();
    let (model, said) = import("keras-lstm", dir.path(), &[]);
    assert!(
        said.contains("imported a Keras LSTM: 1 layer, hidden 32"),
        "{said}"
    );
    compare("keras-lstm", &model, "logits", 1e-6, 1e-6);
    // It generates, and `charlm info` says where it came from.
    let path = dir.path().join("keras-lstm.clm");
    let info = charlm(&["info", path.to_str().unwrap()]);
    assert!(
        String::from_utf8_lossy(&info.stdout)
            .contains("imported from keras-lstm.safetensors (Keras)"),
        "{}",
        String::from_utf8_lossy(&info.stdout)
    );
    let g = charlm(&[
        "generate",
        "--model",
        path.to_str().unwrap(),
        "--prompt",
        "the ",
        "--max-chars",
        "20",
    ]);
    assert!(g.status.success() && g.stdout.starts_with(b"the "), "{g:?}");
}

#[test]
fn a_keras_gru_with_an_embedding_runs_as_keras_computes_it() {
    // Keras's GRU orders its gates z, r, h and keeps two bias rows; two
    // layers, ordered by their names.
    let dir = tempfile::tempdir().unwrap();
    let (model, said) = import("keras-gru-embed", dir.path(), &[]);
    assert!(
        said.contains("imported a Keras GRU: 2 layers, hidden 16"),
        "{said}"
    );
    // Against the folded model Keras computed (the table f16(E W)), as
    // closely as for PyTorch; against the unfolded one, within the fold's
    // rounding, as for PyTorch.
    compare("keras-gru-embed", &model, "folded_logits", 1e-6, 1e-6);
    compare("keras-gru-embed", &model, "logits", 2e-3, 0.0);
}

#[test]
fn an_i8_import_is_an_i8_model() {
    let dir = tempfile::tempdir().unwrap();
    let (f16, _) = import("keras-lstm", dir.path(), &[]);
    std::fs::remove_file(dir.path().join("keras-lstm.clm")).unwrap();
    let (i8, said) = import("keras-lstm", dir.path(), &["--weights", "i8"]);
    assert!(said.contains("i8 weights"), "{said}");
    let m = Model::from_bytes(&i8).unwrap();
    assert_eq!(m.weights(), charlm_runtime::format::DType::I8);
    assert!(
        i8.len() < f16.len() * 3 / 4,
        "{} vs {}",
        i8.len(),
        f16.len()
    );
}

/// Status 2, one line on stderr containing `needle`, nothing on stdout.
fn assert_refused(o: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains(needle), "wanted {needle:?}: {stderr}");
    assert!(o.stdout.is_empty());
}

#[test]
fn bad_input_is_one_line_and_status_2_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let weights = fixtures().join("keras-lstm.safetensors");
    let w = weights.to_str().unwrap();
    let out = dir.path().join("m.clm");
    let o = out.to_str().unwrap();
    let vocab = |text: &str| {
        let p = dir.path().join("v.json");
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };

    let short = vocab(r#"["<pad>", "a", "<eos>"]"#);
    assert_refused(
        &charlm(&["import", w, "--vocab", &short, "--out", o]),
        "the model has 38 ids and the vocabulary lists 3",
    );
    assert!(!out.exists());
    let other = fixtures().join("torch-gru-embed.vocab.json");
    // The PyTorch model's vocabulary has as many ids but another order: it
    // is accepted (a vocabulary cannot be checked against weights beyond
    // its size), so refuse only what is checkable.
    assert!(
        charlm(&["import", w, "--vocab", other.to_str().unwrap(), "--out", o])
            .status
            .success()
    );
    let before = std::fs::read(&out).unwrap();
    assert_refused(
        &charlm(&["import", w, "--vocab", other.to_str().unwrap(), "--out", o]),
        "exists (--force replaces it)",
    );
    assert_eq!(
        std::fs::read(&out).unwrap(),
        before,
        "the existing file changed"
    );
    let not_json = vocab("abc");
    assert_refused(
        &charlm(&["import", w, "--vocab", &not_json, "--out", o, "--force"]),
        "JSON list of strings",
    );
    let garbage = dir.path().join("g.safetensors");
    std::fs::write(&garbage, b"\x02\x00\x00\x00\x00\x00\x00\x00{}").unwrap();
    let good = fixtures().join("keras-lstm.vocab.json");
    assert_refused(
        &charlm(&[
            "import",
            garbage.to_str().unwrap(),
            "--vocab",
            good.to_str().unwrap(),
            "--out",
            o,
            "--force",
        ]),
        "no recurrent layer",
    );
    assert_refused(
        &charlm(&[
            "import",
            "/nonexistent.safetensors",
            "--vocab",
            good.to_str().unwrap(),
        ]),
        "cannot read /nonexistent.safetensors",
    );
    assert_eq!(
        std::fs::read(&out).unwrap(),
        before,
        "a refused import changed the file"
    );
}

#[test]
fn export_to_safetensors_and_import_back_is_the_same_model() {
    // `charlm export M --safetensors` writes what PyTorch loads (the names
    // `charlm import` reads, checked against PyTorch and Keras above);
    // importing it gives the same architecture, vocabulary and every
    // tensor's bits.
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
    for name in ["gru1", "lstm2", "shakespeare-lstm128"] {
        let model = root.join(format!("{name}.clm"));
        let st = dir.path().join(format!("{name}.safetensors"));
        let vocab = dir.path().join(format!("{name}.vocab.json"));
        let back = dir.path().join(format!("{name}-back.clm"));
        let o = charlm(&[
            "export",
            model.to_str().unwrap(),
            "--safetensors",
            st.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let o = charlm(&[
            "import",
            st.to_str().unwrap(),
            "--vocab",
            vocab.to_str().unwrap(),
            "--out",
            back.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        tensors::assert_same_model(&model, &back);
        // Both files or neither: a second export is refused whole.
        std::fs::remove_file(&st).unwrap();
        let o = charlm(&[
            "export",
            model.to_str().unwrap(),
            "--safetensors",
            st.to_str().unwrap(),
        ]);
        assert_refused(&o, "vocab.json exists (--force replaces it)");
        assert!(!st.exists(), "half an export was written");
    }
}

#[test]
fn a_run_exports_its_f32_parameters_and_they_import_to_its_model() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("c.txt");
    std::fs::write(
        &corpus,
        "the quick brown fox jumps over the lazy dog. ".repeat(40),
    )
    .unwrap();
    let run = dir.path().join("run");
    let o = charlm(&[
        "train",
        "--corpus",
        corpus.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
        "--device",
        "cpu",
        "--hidden",
        "8",
        "--batch",
        "2",
        "--seq-len",
        "16",
        "--max-steps",
        "3",
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let st = dir.path().join("run.safetensors");
    let o = charlm(&[
        "export",
        run.to_str().unwrap(),
        "--safetensors",
        st.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The values as trained: f32, most of them between two f16s.
    let bytes = std::fs::read(&st).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let w = file.tensor("rnn.weight_hh_l0").unwrap();
    let off_f16 = w
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .filter(|&x| half::f16::from_f32(x).to_f32() != x)
        .count();
    assert!(
        off_f16 > 0,
        "the run's parameters were rounded before export"
    );
    // Imported, they round to the model the run wrote.
    let back = dir.path().join("back.clm");
    let o = charlm(&[
        "import",
        st.to_str().unwrap(),
        "--vocab",
        dir.path().join("run.vocab.json").to_str().unwrap(),
        "--out",
        back.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    tensors::assert_same_model(&run.join("model.clm"), &back);
    // As i8, they quantize as the run's own i8 export quantizes its f32
    // parameters (not from the f16 rounding, which moves some across a
    // level).
    let (back_i8, run_i8) = (
        dir.path().join("back-i8.clm"),
        dir.path().join("run-i8.clm"),
    );
    let vocab = dir.path().join("run.vocab.json");
    let (st, vocab) = (st.to_str().unwrap(), vocab.to_str().unwrap());
    let o = charlm(&[
        "import",
        st,
        "--vocab",
        vocab,
        "--weights",
        "i8",
        "--out",
        back_i8.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = charlm(&[
        "export",
        run.to_str().unwrap(),
        "--weights",
        "i8",
        "--out",
        run_i8.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    tensors::assert_same_model(&run_i8, &back_i8);
}

/// A model whose source had no `<eos>` never ends a text. Scoring line
/// samples leaves their ends out (before, each end scored about 65,000
/// nats), and fine-tuning it on line samples makes its `<eos>` learnable
/// (before, its bias of -65504 barely moved and the loss stayed in the
/// thousands of bits).
#[test]
fn a_model_without_eos_scores_and_learns_line_samples() {
    use safetensors::{Dtype, tensor::TensorView};
    let dir = tempfile::tempdir().unwrap();
    let path = |f: &str| dir.path().join(f).to_str().unwrap().to_string();
    // A GRU, hidden 8, over "a", "b", "c", " " (no padding, no <eos>),
    // with small deterministic weights.
    let (g, h, v) = (3, 8, 4);
    let values = |n: usize, k: usize| -> Vec<u8> {
        (0..n)
            .flat_map(|i| (((i * 7 + k * 13) % 17) as f32 / 17.0 - 0.5).to_le_bytes())
            .collect()
    };
    let specs = [
        ("rnn.weight_ih_l0", vec![g * h, v]),
        ("rnn.weight_hh_l0", vec![g * h, h]),
        ("rnn.bias_ih_l0", vec![g * h]),
        ("rnn.bias_hh_l0", vec![g * h]),
        ("out.weight", vec![v, h]),
        ("out.bias", vec![v]),
    ];
    let bytes: Vec<Vec<u8>> = specs
        .iter()
        .enumerate()
        .map(|(k, (_, s))| values(s.iter().product(), k))
        .collect();
    let views: Vec<(&str, TensorView<'_>)> = specs
        .iter()
        .zip(&bytes)
        .map(|((n, s), b)| (*n, TensorView::new(Dtype::F32, s.clone(), b).unwrap()))
        .collect();
    std::fs::write(
        path("n.safetensors"),
        safetensors::tensor::serialize(views, None).unwrap(),
    )
    .unwrap();
    std::fs::write(path("n.vocab.json"), r#"["a", "b", "c", " "]"#).unwrap();
    let o = charlm(&[
        "import",
        &path("n.safetensors"),
        "--vocab",
        &path("n.vocab.json"),
        "--out",
        &path("n.clm"),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Both notes go to stderr as every command's notes do; stdout says
    // what was written.
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    for what in ["<pad>", "<eos>"] {
        let note = format!("charlm: note: the vocabulary has no \"{what}\"");
        assert!(err.lines().any(|l| l.starts_with(&note)), "{err}");
        assert!(!out.contains("note:"), "{out}");
    }
    let bpc = |o: &Output| -> f64 {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let out = String::from_utf8_lossy(&o.stdout);
        out.split(' ').next().unwrap().parse().unwrap()
    };

    // One sample scored as a line is its characters 2.. exactly as running
    // text scores them.
    std::fs::write(path("one.txt"), "abc ab ba ca").unwrap();
    let eval = |layout: &str| {
        let m = path("n.clm");
        let c = path("one.txt");
        charlm(&["eval", "--model", &m, "--corpus", &c, "--layout", layout])
    };
    let line = eval("lines");
    assert!(
        String::from_utf8_lossy(&line.stderr).contains("never ends a text"),
        "{}",
        String::from_utf8_lossy(&line.stderr)
    );
    let line = bpc(&line);
    assert_eq!(line, bpc(&eval("running")));
    assert!(line < 4.0, "{line}");
    // Samples of one character: nothing to predict, and it says why.
    std::fs::write(path("one.txt"), "a\nb\nc\n").unwrap();
    let o = eval("lines");
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("samples of one character, and the model predicts no end"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // Fine-tuned on line samples, it learns where they end.
    let lines: String = (0..400)
        .map(|i| ["ab ca\n", "ba\n", "cab c\n", "a b\n"][i % 4])
        .collect();
    std::fs::write(path("lines.txt"), lines).unwrap();
    let o = charlm(&[
        "train",
        "--init",
        &path("n.clm"),
        "--corpus",
        &path("lines.txt"),
        "--layout",
        "lines",
        "--epochs",
        "5",
        "--sample-chars",
        "0",
        "--out",
        &path("run"),
    ]);
    let said = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{said}");
    assert!(
        said.contains("its <eos> starts from the lowest output bias"),
        "{said}"
    );
    let m = path("run/model.clm");
    let tuned = bpc(&charlm(&[
        "eval",
        "--model",
        &m,
        "--corpus",
        &path("lines.txt"),
        "--layout",
        "lines",
    ]));
    // (uniform over its 5 symbols would be log2 5 = 2.32 bits)
    assert!(tuned < 2.0, "{tuned}");
}
