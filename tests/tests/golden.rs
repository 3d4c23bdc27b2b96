//! Golden outputs through the library: the runtime must reproduce every
//! committed text byte for byte. (The same files are checked through the
//! `charlm generate` binary in trainer/tests/golden_cli.rs, and under QEMU
//! by the firmware test.)

use charlm_tests::{SPECS, TEMPERATURES, golden_path, golden_text, model_path};

#[test]
fn library_reproduces_every_golden_file() {
    for spec in &SPECS {
        let bytes = std::fs::read(model_path(spec.name)).expect("fixture model");
        for t in TEMPERATURES {
            let path = golden_path(spec.name, t);
            let expected = std::fs::read_to_string(&path).expect("golden file");
            let actual = golden_text(&bytes, t).expect("generation");
            assert_eq!(actual, expected, "{} differs from the runtime's output", path.display());
        }
    }
}

#[test]
fn golden_fixtures_are_what_the_fixture_tool_builds() {
    // Guards against a hand-edited fixture: the committed model must be the
    // deterministic output of `make-fixtures`.
    for spec in &SPECS {
        let committed = std::fs::read(model_path(spec.name)).expect("fixture model");
        let built = charlm_tests::Weights::synthesize(spec).encode(spec.symbols, "synthetic (seeded PCG32)");
        assert!(committed == built, "{} is not what make-fixtures builds", spec.name);
    }
}

#[test]
fn sampled_golden_texts_differ_between_seeds_and_temperatures() {
    // The golden cases must exercise the sampler, not repeat one text.
    for spec in &SPECS {
        let bytes = std::fs::read(model_path(spec.name)).unwrap();
        let texts: Vec<String> = TEMPERATURES.iter().map(|&t| golden_text(&bytes, t).unwrap()).collect();
        for (i, a) in texts.iter().enumerate() {
            for b in &texts[i + 1..] {
                assert_ne!(a, b, "{}: two temperatures gave the same text", spec.name);
            }
        }
        let lines: Vec<&str> = texts[2].lines().collect();
        assert_ne!(lines[0], lines[1], "{}: seeds 7 and 8 gave the same text at T=1", spec.name);
    }
}
