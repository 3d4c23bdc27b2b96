//! `charlm eval` against PyTorch: the held-out bits per character of the
//! fixture models on `tests/fixtures/eval/` (samples of lines, AG News
//! titles, running text; with characters outside the vocabulary, an empty
//! line, a whitespace-only one, CRLF, a byte order mark, a CSV header, an
//! empty title and a title over two lines), as written by
//! `tests/reference/torch_eval.py` (torch.nn.LSTM / nn.GRU + nn.Linear in
//! float64 on the exported weights; our code did not compute them).
//!
//! Tolerance: |printed - torch| <= 5e-5 + 1e-5 * torch. `eval` prints 4
//! decimals (half a unit: 5e-5); the runtime computes in f32 over at most a
//! few thousand predictions, a relative error of a few 1e-6 in the mean
//! (observed: at most 1.9e-5 relative including the rounding). A wrong
//! definition moves it much further: scoring the padding id too moved one
//! model by 1e-3, leaving out `<eos>` or the first character by more. The
//! counts (characters, samples or streams, characters dropped) must be
//! equal.

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_charlm");

/// The number after the last space of `text` before `end`.
fn number_before(text: &str, end: &str) -> Option<f64> {
    let head = &text[..text.find(end)?];
    head.rsplit(' ').next()?.parse().ok()
}

#[test]
fn eval_gives_pytorchs_bits_per_character_and_counts() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
    let reference: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures.join("eval/torch_eval.json")).unwrap(),
    )
    .unwrap();
    let cases = reference["cases"].as_array().unwrap();
    assert!(cases.len() >= 8, "{} cases", cases.len());
    for case in cases {
        let model = fixtures.join(case["model"].as_str().unwrap());
        let corpus = fixtures.join("eval").join(case["corpus"].as_str().unwrap());
        let args: Vec<&str> = (case["args"].as_array().unwrap().iter())
            .map(|a| a.as_str().unwrap())
            .collect();
        let what = format!("{} on {} {args:?}", case["model"], case["corpus"]);
        let o = Command::new(BIN)
            .arg("eval")
            .arg("--model")
            .arg(&model)
            .arg("--corpus")
            .arg(&corpus)
            .args(&args)
            .output()
            .unwrap();
        let (out, err) = (
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
        );
        assert!(o.status.success(), "{what}: {err}");
        let bpc = number_before(&out, " bits per character").unwrap();
        let torch = case["bpc"].as_f64().unwrap();
        assert!(
            (bpc - torch).abs() <= 5e-5 + 1e-5 * torch,
            "{what}: charlm {bpc}, PyTorch {torch}"
        );
        let units = if args.is_empty() {
            number_before(&out, " streams of")
        } else {
            number_before(&out, " samples;")
        };
        let counts = (
            number_before(&out, " characters;"),
            units,
            number_before(&err, " characters not in"),
        );
        let expected = ["characters", "samples_or_streams", "dropped"].map(|k| case[k].as_f64());
        assert_eq!(
            counts,
            (expected[0], expected[1], expected[2]),
            "{what}: (characters, samples or streams, dropped):\n{out}{err}"
        );
    }
}
