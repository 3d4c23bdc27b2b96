//! Properties of the `.clm` format: damage is always a typed error, and
//! encoding round-trips for any architecture.

use charlm_runtime::format::{DType, ModelFile};
use charlm_runtime::{CellKind, Generator, Model, Sampler, SeededRng};
use charlm_tests::{Spec, Weights, model_path};
use proptest::prelude::*;

#[test]
fn every_single_byte_change_is_rejected() {
    // CRC-32 detects every error burst of up to 32 bits, so every changed
    // byte must be caught (by the structure checks or by the checksum).
    for name in ["gru1", "gru1-i8"] {
        let good = std::fs::read(model_path(name)).unwrap();
        let mut bad = good.clone();
        for i in 0..good.len() {
            for flip in [0x01u8, 0x80, 0xff, 0x5a] {
                bad[i] = good[i] ^ flip;
                assert!(
                    Model::from_bytes(&bad).is_err(),
                    "{name}: byte {i} ^ {flip:#04x} accepted"
                );
            }
            bad[i] = good[i];
        }
    }
}

#[test]
fn every_truncation_and_extension_is_rejected() {
    let good = std::fs::read(model_path("gru1")).unwrap();
    for len in 0..good.len() {
        assert!(
            Model::from_bytes(&good[..len]).is_err(),
            "truncation to {len} bytes accepted"
        );
    }
    let mut longer = good.clone();
    longer.push(0);
    assert!(
        Model::from_bytes(&longer).is_err(),
        "a trailing byte was accepted"
    );
}

fn arb_symbols() -> impl Strategy<Value = String> {
    // Distinct characters from ASCII, Latin-1 and beyond (ä ö ü ß é €, CJK, emoji).
    let pool: Vec<char> = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,;:!?'\"-\näöüßéÄÖÜ€漢字🙂"
        .chars()
        .collect();
    proptest::sample::subsequence(pool.clone(), 1..pool.len())
        .prop_shuffle()
        .prop_map(|v| v.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn encode_decode_round_trips_and_runs(
        lstm in any::<bool>(),
        layers in 1u8..=4,
        hidden in 1u16..=40,
        symbols in arb_symbols(),
        seed in any::<u64>(),
        temperature in prop_oneof![Just(0.0f32), 0.05f32..3.0],
        i8 in any::<bool>(),
    ) {
        let cell = if lstm { CellKind::Lstm } else { CellKind::Gru };
        let symbols: &'static str = Box::leak(symbols.into_boxed_str());
        let spec = Spec { name: "prop", cell, layers, hidden, symbols, seed };
        let weights = Weights::synthesize(&spec);
        let bytes = weights.encode(symbols, "property test");
        let file = ModelFile::decode(&bytes).expect("decodes");
        prop_assert_eq!(file.body.arch, weights.arch);
        prop_assert_eq!(file.body.vocab.symbols, symbols.as_bytes());
        prop_assert_eq!(file.body.tensors().count(), weights.tensors.len());
        for ((_, t), (_, shape, values)) in file.body.tensors().zip(&weights.tensors) {
            prop_assert_eq!(t.shape, *shape);
            let expected: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            prop_assert_eq!(t.data, &expected[..]);
        }
        prop_assert_eq!(file.encode().unwrap(), bytes.clone());
        // The same model with i8 weights: every matrix is rows * cols bytes
        // and rows scales, and it round-trips and runs too.
        drop(file);
        let bytes = if i8 {
            let q = charlm_trainer::export::quantize_file(&bytes).expect("quantizes");
            {
                let file = ModelFile::decode(&q).expect("decodes");
                prop_assert_eq!((file.header.version, file.body.weights()), (3, DType::I8));
                for (_, t) in file.body.tensors() {
                    prop_assert_eq!(t.data.len(), t.dtype.data_len(t.shape));
                }
                prop_assert_eq!(file.encode().unwrap(), q.clone());
            }
            q
        } else {
            bytes
        };

        let model = Model::from_bytes(&bytes).expect("valid");
        let mut ws = charlm_trainer::sample::host_workspace();
        let sampler = Sampler::from_temperature(temperature).unwrap();
        let mut g = Generator::new(&model, &mut *ws, sampler, SeededRng::new(seed)).unwrap().with_limit(50);
        let first = symbols.chars().next().unwrap();
        prop_assert_eq!(g.feed(&first.to_string()).fed, 1);
        let text: String = g.by_ref().collect();
        prop_assert!(text.chars().count() <= 50);
        prop_assert!(text.chars().all(|c| symbols.contains(c)));
    }
}
