//! Golden outputs through the library: the runtime must reproduce every
//! committed text byte for byte. (The same files are checked through the
//! `charlm generate` binary in trainer/tests/cli_generate.rs, and under QEMU
//! by the firmware test.)

use charlm_tests::{
    SPECS, TEMPERATURES, digest_path, golden_models, golden_path, golden_text, logits_digest,
    model_path,
};

#[test]
fn library_reproduces_every_golden_file() {
    for name in golden_models() {
        let bytes = std::fs::read(model_path(name)).expect("fixture model");
        for t in TEMPERATURES {
            let path = golden_path(name, t);
            let expected = std::fs::read_to_string(&path).expect("golden file");
            let actual = golden_text(&bytes, t).expect("generation");
            assert_eq!(
                actual,
                expected,
                "{} differs from the runtime's output",
                path.display()
            );
        }
    }
}

#[test]
fn golden_fixtures_are_what_the_fixture_tool_builds() {
    // Guards against a hand-edited fixture: the committed model must be the
    // deterministic output of `make-fixtures`.
    for spec in &SPECS {
        let committed = std::fs::read(model_path(spec.name)).expect("fixture model");
        let built = charlm_tests::Weights::synthesize(spec)
            .encode(spec.symbols, "synthetic (seeded PCG32)");
        assert!(
            committed == built,
            "{} is not what make-fixtures builds",
            spec.name
        );
    }
    for (name, from) in charlm_tests::QUANTIZED {
        let committed = std::fs::read(model_path(name)).expect("fixture model");
        let base = std::fs::read(model_path(from)).expect("fixture model");
        let built = charlm_trainer::export::quantize_file(&base).expect("quantizing");
        assert!(
            committed == built,
            "{name} is not what make-fixtures builds"
        );
    }
}

#[test]
fn sampled_golden_texts_differ_between_seeds_and_temperatures() {
    // The golden cases must exercise the sampler, not repeat one text.
    for name in golden_models() {
        let bytes = std::fs::read(model_path(name)).unwrap();
        let texts: Vec<String> = TEMPERATURES
            .iter()
            .map(|&t| golden_text(&bytes, t).unwrap())
            .collect();
        for (i, a) in texts.iter().enumerate() {
            for b in &texts[i + 1..] {
                assert_ne!(a, b, "{name}: two temperatures gave the same text");
            }
        }
        let model = charlm_runtime::Model::from_bytes(&bytes).unwrap();
        let mut ws = charlm_trainer::sample::host_workspace();
        let t1 = charlm_runtime::Sampler::from_temperature(1.0).unwrap();
        let a = charlm_trainer::sample::generate(&model, &mut ws, "a", t1, 7, 80).unwrap();
        let b = charlm_trainer::sample::generate(&model, &mut ws, "a", t1, 8, 80).unwrap();
        assert_ne!(a, b, "{name}: seeds 7 and 8 gave the same text at T=1");
    }
}

#[test]
fn logits_are_bit_for_bit_the_committed_digest() {
    for name in golden_models() {
        let bytes = std::fs::read(model_path(name)).unwrap();
        let expected = std::fs::read_to_string(digest_path(name)).expect("digest file");
        let actual = logits_digest(&bytes).unwrap();
        if actual != expected {
            let first = actual.lines().zip(expected.lines()).find(|(a, b)| a != b);
            panic!(
                "{name}: logits differ from {} first at {first:?}",
                digest_path(name).display()
            );
        }
    }
}
