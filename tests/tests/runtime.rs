//! Behaviour of the runtime's public API: loading and rejecting files,
//! workspace capacity, samplers and the streaming generator.

use charlm_runtime::format::{Body, DType, ModelFile};
use charlm_runtime::{
    Capacity, Error, Generator, Model, Sampler, SeededRng, Stop, Temperature, TensorName, Workspace,
};
use charlm_tests::{SPECS, Weights, model_path};
use rand_core::RngCore;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(model_path(name)).unwrap()
}

/// Decodes `bytes`, lets `edit` change the body, and re-encodes with a valid checksum.
fn edited<'a>(bytes: &'a [u8], edit: impl FnOnce(&mut Body<'a>)) -> Vec<u8> {
    let mut file = ModelFile::decode(bytes).unwrap();
    edit(&mut file.body);
    file.encode().unwrap()
}

#[test]
fn fixtures_load_and_describe_themselves() {
    let bytes = fixture("gru1");
    let model = Model::from_bytes(&bytes).unwrap();
    assert_eq!(model.hidden(), 20);
    assert_eq!(model.vocab().size(), SPECS[1].symbols.chars().count() + 2);
    assert_eq!(model.vocab().id_of(' '), Some(1));
    assert_eq!(
        model.vocab().id_of('€'),
        Some(
            model
                .vocab()
                .symbols()
                .chars()
                .position(|c| c == '€')
                .unwrap() as u16
                + 1
        )
    );
    assert_eq!(
        model.vocab().symbol(model.vocab().id_of('ß').unwrap()),
        Some('ß')
    );
    assert_eq!(model.vocab().symbol(0), None);
    assert_eq!(model.vocab().symbol(model.vocab().eos()), None);
    assert_eq!(model.vocab().id_of('#'), None);
}

#[test]
fn structural_damage_is_a_typed_error() {
    let good = fixture("lstm2");
    assert!(matches!(
        Model::from_bytes(&[]),
        Err(Error::Truncated { len: 0 })
    ));
    assert!(matches!(
        Model::from_bytes(&good[..6]),
        Err(Error::Truncated { .. }) | Err(Error::ChecksumMismatch { .. })
    ));
    let mut bad = good.clone();
    bad[0] = b'X';
    assert_eq!(Model::from_bytes(&bad).unwrap_err(), Error::BadMagic);
    let mut bad = good.clone();
    bad[4] = 9;
    assert_eq!(
        Model::from_bytes(&bad).unwrap_err(),
        Error::UnsupportedVersion { found: 9 }
    );
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x10;
    assert!(matches!(
        Model::from_bytes(&bad),
        Err(Error::ChecksumMismatch { .. })
    ));
    // Truncation anywhere past the header is caught (checksum or decoding).
    for cut in [9, 100, good.len() - 1] {
        assert!(
            Model::from_bytes(&good[..cut]).is_err(),
            "cut at {cut} accepted"
        );
    }
    // One cut inside its weights is named as cut short, not by its
    // checksum (which is also wrong): the same words on every platform.
    let err = Model::from_bytes(&good[..good.len() / 2]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "model file does not decode: it ends too early (truncated?)"
    );
}

#[test]
fn inconsistent_contents_are_rejected_even_with_a_valid_checksum() {
    let good = fixture("lstm2");
    let cases: Vec<(Vec<u8>, Error)> = vec![
        (
            edited(&good, |b| b.arch.layers = 3),
            Error::LayerCountMismatch { arch: 3, found: 2 },
        ),
        (
            edited(&good, |b| b.arch.layers = 0),
            Error::LayersOutOfRange { layers: 0 },
        ),
        (
            edited(&good, |b| b.arch.hidden = 0),
            Error::HiddenOutOfRange { hidden: 0 },
        ),
        (
            edited(&good, |b| b.layers[1].w_hh.shape = [108, 26]),
            Error::ShapeMismatch {
                tensor: TensorName::WHh(1),
                expected: [108, 27],
                found: [108, 26],
            },
        ),
        (
            edited(&good, |b| b.out_b.data = &b.out_b.data[2..]),
            Error::DataLength {
                tensor: TensorName::OutB,
                expected: 78,
                found: 76,
            },
        ),
        (
            edited(&good, |b| b.vocab.eos = 5),
            Error::BadSpecialIds { pad: 0, eos: 5 },
        ),
        (
            edited(&good, |b| {
                b.vocab.symbols = b" etaoinshrdlucmfwypvbgkqjxzTOAS.,'-!!"
            }),
            Error::DuplicateSymbol { symbol: '!' },
        ),
        (
            edited(&good, |b| {
                b.vocab.symbols = b"etaoinshrdlucmfwypvbgkqjxzTOAS.,'-!?"
            }),
            Error::VocabSizeMismatch {
                symbols: 36,
                vocab: 39,
            },
        ),
        (
            edited(&good, |b| {
                b.vocab.symbols = b" etaoinshrdlucmfwypvbgkqjxzTOAS.,'-!\xff"
            }),
            Error::VocabNotUtf8 { offset: 36 },
        ),
    ];
    for (bytes, expected) in cases {
        assert_eq!(Model::from_bytes(&bytes).unwrap_err(), expected);
    }
    // An f16 infinity in a weight.
    let mut data = ModelFile::decode(&good).unwrap().body.layers[0]
        .w_hh
        .data
        .to_vec();
    data[1] = 0x7c;
    let inf = edited(&good, |b| b.layers[0].w_hh.data = &data);
    assert_eq!(
        Model::from_bytes(&inf).unwrap_err(),
        Error::NonFinite {
            tensor: TensorName::WHh(0)
        }
    );
}

/// A file with a valid checksum whose content the decoder refuses is
/// described in the file's terms, not the decoder library's.
#[test]
fn contents_that_do_not_decode_are_described_in_the_files_terms() {
    let good = fixture("gru1");
    // `at`: which byte, set to what; the checksum fixed up.
    for (at, value, needle) in [
        (
            5,
            127,
            "a field holds a value no model has (an unknown cell or weight type?)",
        ),
        (7, 128, "a count or length is not a valid number"),
    ] {
        let mut bad = good[..good.len() - 4].to_vec();
        bad[at] = value;
        let crc = charlm_runtime::format::crc32(&bad);
        bad.extend_from_slice(&crc.to_le_bytes());
        let e = Model::from_bytes(&bad).unwrap_err();
        assert!(
            matches!(e, Error::Malformed(_)),
            "byte {at} = {value}: {e:?}"
        );
        assert_eq!(
            e.to_string(),
            format!("model file does not decode: {needle}")
        );
    }
}

#[test]
fn errors_read_as_one_line() {
    let e = Error::ShapeMismatch {
        tensor: TensorName::WIh(0),
        expected: [39, 108],
        found: [1, 2],
    };
    assert_eq!(
        e.to_string(),
        "tensor layer 0 w_ih has shape 1x2, expected 39x108"
    );
    assert!(
        !Error::ChecksumMismatch {
            stored: 1,
            computed: 2
        }
        .to_string()
        .contains('\n')
    );
}

#[test]
fn a_model_larger_than_the_workspace_is_refused_at_bind_time() {
    let bytes = fixture("lstm2");
    let model = Model::from_bytes(&bytes).unwrap();
    let mut small = Workspace::<16, 2, 64>::new();
    let err = Generator::new(&model, &mut small, Sampler::Greedy, SeededRng::new(1))
        .err()
        .unwrap();
    assert_eq!(
        err,
        Error::TooLarge {
            what: Capacity::Hidden,
            needed: 27,
            capacity: 16
        }
    );
    let mut shallow = Workspace::<32, 1, 64>::new();
    assert_eq!(
        shallow.check(&model),
        Err(Error::TooLarge {
            what: Capacity::Layers,
            needed: 2,
            capacity: 1
        })
    );
    let mut narrow = Workspace::<32, 2, 16>::new();
    assert_eq!(
        narrow.check(&model),
        Err(Error::TooLarge {
            what: Capacity::Vocab,
            needed: 39,
            capacity: 16
        })
    );
    // Exactly fitting works and gives the same text as the big host workspace.
    let mut exact = Workspace::<27, 2, 39>::new();
    let a: String = {
        let mut g = Generator::new(
            &model,
            &mut exact,
            Sampler::from_temperature(1.0).unwrap(),
            SeededRng::new(3),
        )
        .unwrap();
        g.feed("the ");
        g.by_ref().take(50).collect()
    };
    let mut big = charlm_trainer::sample::host_workspace();
    let b: String = {
        let mut g = Generator::new(
            &model,
            &mut *big,
            Sampler::from_temperature(1.0).unwrap(),
            SeededRng::new(3),
        )
        .unwrap();
        g.feed("the ");
        g.by_ref().take(50).collect()
    };
    assert_eq!(a, b);
    let _ = (&mut small, &mut shallow, &mut narrow);
}

#[test]
fn temperatures_are_validated() {
    assert_eq!(Sampler::from_temperature(0.0), Ok(Sampler::Greedy));
    for bad in [-0.5, f32::NAN, f32::INFINITY, -1e-30] {
        assert_eq!(
            Sampler::from_temperature(bad),
            Err(Error::BadTemperature),
            "{bad}"
        );
    }
    assert!(Temperature::new(1e-30).is_ok());
}

#[test]
fn greedy_takes_the_first_maximum_and_never_padding() {
    let mut rng = SeededRng::new(0);
    let mut logits = [100.0, 1.0, 3.0, 3.0, -2.0];
    assert_eq!(Sampler::Greedy.sample(&mut logits, &mut rng), 2);
}

#[test]
fn sampling_follows_the_distribution_and_skips_padding() {
    let t = Sampler::from_temperature(1.0).unwrap();
    let mut rng = SeededRng::new(99);
    let base = [50.0f32, 0.0, (3.0f32).ln(), f32::NEG_INFINITY];
    let mut counts = [0u32; 4];
    for _ in 0..40_000 {
        let mut logits = base;
        counts[t.sample(&mut logits, &mut rng) as usize] += 1;
    }
    assert_eq!(counts[0], 0, "padding sampled");
    assert_eq!(counts[3], 0, "zero-probability id sampled");
    let p2 = counts[2] as f64 / 40_000.0;
    assert!((p2 - 0.75).abs() < 0.01, "P(id 2) = {p2}, expected 0.75");
}

#[test]
fn tiny_temperatures_fall_back_to_greedy_instead_of_nan() {
    let t = Sampler::from_temperature(1e-38).unwrap();
    let mut rng = SeededRng::new(1);
    let mut logits = [0.0f32, 1.0, 2.0, 1.5];
    assert_eq!(t.sample(&mut logits, &mut rng), 2);
    // Both 3.5 / T and 4.0 / T overflow to +inf: the larger logit still
    // wins, here and at a subnormal temperature.
    for t in [1e-38, 1e-40] {
        let t = Sampler::from_temperature(t).unwrap();
        let mut logits = [0.0f32, 3.5, 4.0, f32::NEG_INFINITY];
        assert_eq!(t.sample(&mut logits, &mut rng), 2, "{t:?}");
    }
}

#[test]
fn one_draw_per_sampled_character_and_none_for_greedy() {
    let bytes = fixture("gru1");
    let model = Model::from_bytes(&bytes).unwrap();
    let mut ws = charlm_trainer::sample::host_workspace();
    let mut g = Generator::new(
        &model,
        &mut *ws,
        Sampler::from_temperature(0.8).unwrap(),
        SeededRng::new(5),
    )
    .unwrap();
    g.feed("die ");
    let n = g.by_ref().take(30).count();
    // one draw per character, and one for an <eos> that ended it sooner
    let draws = if n < 30 { n + 1 } else { n };
    let mut reference = SeededRng::new(5);
    for _ in 0..draws {
        reference.next_u32();
    }
    assert_eq!(g.rng_mut().next_u32(), reference.next_u32());
    g.reset();
    g.set_sampler(Sampler::Greedy);
    g.feed("die ");
    let _ = g.by_ref().take(30).count();
    let mut fresh = SeededRng::new(5);
    for _ in 0..draws + 1 {
        fresh.next_u32();
    }
    assert_eq!(g.rng_mut().next_u32(), fresh.next_u32());
}

#[test]
fn prompts_drop_unknown_characters_and_count_them() {
    let bytes = fixture("lstm2");
    let model = Model::from_bytes(&bytes).unwrap();
    let mut ws = charlm_trainer::sample::host_workspace();
    let mut g = Generator::new(&model, &mut *ws, Sampler::Greedy, SeededRng::new(0)).unwrap();
    let fed = g.feed("Über die Straße");
    assert_eq!((fed.fed, fed.dropped), (13, 2));
    // Dropping is the same as never having typed them.
    let a: String = g.by_ref().take(40).collect();
    g.reset();
    g.feed("ber die Strae");
    let b: String = g.by_ref().take(40).collect();
    assert_eq!(a, b);
}

#[test]
fn generation_stops_at_the_limit_at_eos_and_before_any_prompt() {
    let bytes = fixture("lstm2");
    let model = Model::from_bytes(&bytes).unwrap();
    let mut ws = charlm_trainer::sample::host_workspace();
    let mut g = Generator::new(&model, &mut *ws, Sampler::Greedy, SeededRng::new(0))
        .unwrap()
        .with_limit(5);
    assert_eq!(g.next_char(), None);
    assert_eq!(g.stop(), Some(Stop::NothingFed));
    g.feed("a");
    let text: String = g.by_ref().collect();
    assert_eq!(text.chars().count(), 5);
    assert_eq!(g.stop(), Some(Stop::Limit));
    // Feeding an id starts the count again, as feeding a character does.
    for round in 0..2 {
        assert!(g.feed_id(model.vocab().id_of('a').unwrap()));
        let text: String = g.by_ref().collect();
        assert_eq!(text.chars().count(), 5, "round {round}");
        assert_eq!(g.stop(), Some(Stop::Limit));
    }
    // The committed greedy golden text for "the " ends at <eos> well before 80 characters.
    g.reset();
    let mut g = g.with_limit(1000);
    g.feed("the ");
    let text: String = g.by_ref().collect();
    assert!(text.chars().count() < 80);
    assert_eq!(g.stop(), Some(Stop::Eos));
}

#[test]
fn logits_are_there_only_while_they_belong_to_the_last_character_run() {
    let bytes = fixture("lstm2");
    let model = Model::from_bytes(&bytes).unwrap();
    let mut ws = charlm_trainer::sample::host_workspace();
    let hot = Sampler::Temperature(Temperature::new(1.5).unwrap());
    let mut g = Generator::new(&model, &mut *ws, hot, SeededRng::new(3)).unwrap();
    assert!(g.logits().is_none(), "before anything is fed");
    let mut ends = 0;
    for _ in 0..20 {
        g.feed("the ");
        assert!(g.logits().is_some());
        while g.by_ref().take(1).next().is_some() {
            assert!(g.logits().is_some());
        }
        if g.stop() == Some(Stop::Eos) {
            // The draw that chose <eos> worked in the logits' place.
            assert!(g.logits().is_none());
            ends += 1;
        }
        g.reset();
        assert!(g.logits().is_none(), "after reset");
    }
    assert!(ends > 0, "no text ended at <eos>");
}

#[test]
fn reset_and_continue() {
    let bytes = fixture("gru1");
    let model = Model::from_bytes(&bytes).unwrap();
    let mut ws = charlm_trainer::sample::host_workspace();
    let mut g = Generator::new(&model, &mut *ws, Sampler::Greedy, SeededRng::new(0)).unwrap();
    g.feed("die ");
    let first: String = g.by_ref().take(10).collect();
    // Continuing with more text carries the state: feeding the generated
    // text in one go after a reset lands in the same place.
    g.feed("und ");
    let cont: String = g.by_ref().take(10).collect();
    g.reset();
    g.feed(&format!("die {first}und "));
    let again: String = g.by_ref().take(10).collect();
    assert_eq!(cont, again);
}

#[test]
fn every_weight_bit_matters() {
    // Flip the lowest mantissa bit of one hidden-to-hidden weight: the logits
    // must change (the golden tests then catch any change in the text).
    let spec = &SPECS[0];
    let weights = Weights::synthesize(spec);
    let good = weights.encode(spec.symbols, "x");
    let mut data = ModelFile::decode(&good).unwrap().body.layers[1]
        .w_hh
        .data
        .to_vec();
    data[10] ^= 1;
    let flipped = edited(&good, |b| b.layers[1].w_hh.data = &data);
    let logits = |bytes: &[u8]| -> Vec<u32> {
        let model = Model::from_bytes(bytes).unwrap();
        let mut ws = charlm_trainer::sample::host_workspace();
        let mut g = Generator::new(&model, &mut *ws, Sampler::Greedy, SeededRng::new(0)).unwrap();
        g.feed("the rain in spain");
        g.logits().unwrap().iter().map(|x| x.to_bits()).collect()
    };
    assert_ne!(logits(&good), logits(&flipped));
}

#[test]
fn a_prompt_fed_at_once_leaves_what_it_leaves_fed_a_character_at_a_time() {
    // `feed` skips the output layer for every character but the last; the
    // state, the logits and what follows must not show it.
    for name in ["lstm2", "gru1"] {
        let bytes = fixture(name);
        let model = Model::from_bytes(&bytes).unwrap();
        let prompt = if name == "gru1" {
            "über die zeit"
        } else {
            "to be, or not"
        };
        let run = |whole: bool| {
            let mut ws = Workspace::<32, 2, 64>::new();
            let sampler = Sampler::Temperature(Temperature::new(0.9).unwrap());
            let mut g = Generator::new(&model, &mut ws, sampler, SeededRng::new(5)).unwrap();
            if whole {
                assert_eq!(g.feed(prompt).fed, prompt.chars().count());
            } else {
                // feed_id always runs the whole step, output layer included.
                for c in prompt.chars() {
                    assert!(g.feed_id(model.vocab().id_of(c).unwrap()));
                }
            }
            let logits: Vec<u32> = g.logits().unwrap().iter().map(|x| x.to_bits()).collect();
            let text: String = std::iter::from_fn(|| g.next_char()).take(40).collect();
            (logits, text)
        };
        let (whole, one_by_one) = (run(true), run(false));
        assert_eq!(whole.0, one_by_one.0, "{name}: logits after the prompt");
        assert_eq!(whole.1, one_by_one.1, "{name}: text after the prompt");
        assert!(whole.1.chars().count() > 5, "{name}: {:?}", whole.1);
    }
}

#[test]
fn truncations_are_validated() {
    use charlm_runtime::Truncation;
    for bad in [0.0, -0.1, 1.0001, f32::NAN, f32::INFINITY] {
        assert_eq!(Sampler::new(0.8, 0, bad), Err(Error::BadTopP), "{bad}");
        assert_eq!(Truncation::new(5, bad), Err(Error::BadTopP), "{bad}");
    }
    let t = Temperature::new(0.8).unwrap();
    // Greedy whatever the truncation; none at all is a plain draw.
    assert_eq!(Sampler::new(0.0, 3, 0.5), Ok(Sampler::Greedy));
    assert_eq!(Sampler::new(0.8, 0, 1.0), Ok(Sampler::Temperature(t)));
    let cut = Truncation::new(3, 0.5).unwrap();
    assert_eq!((cut.top_k(), cut.top_p()), (3, 0.5));
    assert_eq!(Sampler::new(0.8, 3, 0.5), Ok(Sampler::Truncated(t, cut)));
    assert_eq!(Sampler::new(-1.0, 3, 0.5), Err(Error::BadTemperature));
}

/// How often each id comes out of `n` draws from `logits`.
fn draws(sampler: Sampler, logits: &[f32], n: usize) -> Vec<usize> {
    let mut rng = SeededRng::new(11);
    let mut seen = vec![0usize; logits.len()];
    for _ in 0..n {
        let mut l = logits.to_vec();
        seen[sampler.sample(&mut l, &mut rng) as usize] += 1;
    }
    seen
}

#[test]
fn top_k_keeps_the_k_most_likely_ids_and_their_odds() {
    // ids 2 and 4 tie for the largest logit; id 3 is next, 1 below it.
    let logits = [9.0, 1.0, 3.0, 2.0, 3.0, 0.5];
    let s = |k| Sampler::new(1.0, k, 1.0).unwrap();
    // k = 1: the first of the tied ids, like greedy.
    assert_eq!(draws(s(1), &logits, 200), [0, 0, 200, 0, 0, 0]);
    // k = 2: only the tied pair, about evenly.
    let two = draws(s(2), &logits, 4000);
    assert_eq!((two[1], two[3], two[5]), (0, 0, 0), "{two:?}");
    assert!((1800..=2200).contains(&two[2]), "{two:?}");
    // k = 3: id 3 joins with weight e^-1 against 1 + 1.
    let three = draws(s(3), &logits, 20_000);
    assert_eq!((three[1], three[5]), (0, 0), "{three:?}");
    let p3 = (-1.0f64).exp() / (2.0 + (-1.0f64).exp());
    let got = three[3] as f64 / 20_000.0;
    assert!((got - p3).abs() < 0.01, "{got} vs {p3}");
    // k at least the vocabulary: the plain draw, draw for draw.
    let plain = Sampler::new(1.0, 0, 1.0).unwrap();
    assert_eq!(draws(s(5), &logits, 500), draws(plain, &logits, 500));
    assert_eq!(draws(s(200), &logits, 500), draws(plain, &logits, 500));
}

#[test]
fn top_p_keeps_the_fewest_most_likely_ids_that_reach_p() {
    // Probabilities 0.5, 0.3, 0.15, 0.05 for ids 1..=4 (padding has none).
    let logits = [0.0, 0.5f32.ln(), 0.3f32.ln(), 0.15f32.ln(), 0.05f32.ln()];
    let s = |p| Sampler::new(1.0, 0, p).unwrap();
    // 0.5 alone does not reach 0.7; with 0.3 it does.
    let seen = draws(s(0.7), &logits, 10_000);
    assert_eq!((seen[3], seen[4]), (0, 0), "{seen:?}");
    let got = seen[1] as f64 / 10_000.0;
    assert!((got - 0.5 / 0.8).abs() < 0.02, "{got}");
    // A mass the first id reaches alone: always that id.
    assert_eq!(draws(s(0.4), &logits, 300), [0, 300, 0, 0, 0]);
    // Reaching p exactly is enough: of two equal weights (1 and 1, p times
    // their sum is exactly 1) the first, lower id stays alone.
    assert_eq!(draws(s(0.5), &[0.0, 2.0, 2.0], 300), [0, 300, 0]);
    // 0.95 needs the first three.
    let seen = draws(s(0.95), &logits, 10_000);
    assert_eq!(seen[4], 0, "{seen:?}");
    assert!(seen[3] > 0, "{seen:?}");
    // Top-k first, then top-p among what is left: of 0.5 and 0.3, 0.5 is
    // 62.5%, short of 0.7, so both stay.
    let both = Sampler::new(1.0, 2, 0.7).unwrap();
    let seen = draws(both, &logits, 2000);
    assert!(
        seen[1] > 0 && seen[2] > 0 && seen[3] == 0 && seen[4] == 0,
        "{seen:?}"
    );
    let both = Sampler::new(1.0, 2, 0.6).unwrap();
    assert_eq!(draws(both, &logits, 300), [0, 300, 0, 0, 0]);
}

#[test]
fn truncated_text_from_a_model() {
    // Whole-model checks: no truncation in effect gives the plain draw's
    // text, and a nucleus too small for a second id gives the greedy text.
    for name in ["lstm2", "gru1"] {
        let bytes = fixture(name);
        let model = Model::from_bytes(&bytes).unwrap();
        let text = |sampler: Sampler| -> String {
            let mut ws = Workspace::<32, 2, 64>::new();
            let mut g = Generator::new(&model, &mut ws, sampler, SeededRng::new(3)).unwrap();
            g.feed("the ");
            std::iter::from_fn(|| g.next_char()).take(60).collect()
        };
        let plain = text(Sampler::new(1.2, 0, 1.0).unwrap());
        let all_k = text(Sampler::new(1.2, model.vocab().size() as u16, 1.0).unwrap());
        assert_eq!(plain, all_k, "{name}");
        let greedy = text(Sampler::Greedy);
        let tiny_p = text(Sampler::new(1.2, 0, 1e-6).unwrap());
        assert_eq!(greedy, tiny_p, "{name}");
        let top1 = text(Sampler::new(1.2, 1, 1.0).unwrap());
        assert_eq!(greedy, top1, "{name}");
        assert_ne!(plain, greedy, "{name}: the fixture should not be that sure");
    }
}

#[test]
fn i8_weights_are_validated() {
    let good = fixture("lstm2-i8");
    let f16 = fixture("lstm2");
    let model = Model::from_bytes(&good).unwrap();
    assert_eq!(model.weights(), DType::I8);
    assert_eq!(Model::from_bytes(&f16).unwrap().weights(), DType::F16);
    // i8 files are version 3, f16 files stay version 1 (older runtimes read them).
    assert_eq!(ModelFile::decode(&good).unwrap().header.version, 3);
    assert_eq!(ModelFile::decode(&f16).unwrap().header.version, 1);
    let file = ModelFile::decode(&good).unwrap();
    let f16_file = ModelFile::decode(&f16).unwrap();
    // w_hh of layer 1: [108, 27] -> 108 * 27 bytes, then 108 scales.
    let w_hh = file.body.layers[1].w_hh;
    assert_eq!(w_hh.data.len(), 108 * 27 + 2 * 108);
    let mut inf_scale = w_hh.data.to_vec();
    inf_scale[108 * 27 + 1] = 0x7c;
    let mut minus_128 = w_hh.data.to_vec();
    minus_128[108 * 27 - 1] = 0x80;
    let f16_bias = f16_file.body.layers[0].b_ih;
    let cases: Vec<(Vec<u8>, Error)> = vec![
        // A bias in i8 (with the length an i8 [108, 1] would have).
        (
            edited(&good, |b| {
                b.layers[0].b_ih.dtype = DType::I8;
                b.layers[0].b_ih.data = &w_hh.data[..108 + 216];
            }),
            Error::MixedDTypes {
                tensor: TensorName::BIh(0),
                dtype: DType::I8,
            },
        ),
        // One matrix f16 among i8 ones.
        (
            edited(&good, |b| b.layers[0].w_hh = f16_file.body.layers[0].w_hh),
            Error::MixedDTypes {
                tensor: TensorName::WHh(0),
                dtype: DType::F16,
            },
        ),
        // One matrix i8 in an f16 model (out_w decides the type).
        (
            edited(&f16, |b| b.layers[1].w_hh = w_hh),
            Error::MixedDTypes {
                tensor: TensorName::WHh(1),
                dtype: DType::I8,
            },
        ),
        // Scales missing.
        (
            edited(&good, |b| b.layers[1].w_hh.data = &w_hh.data[..108 * 27]),
            Error::DataLength {
                tensor: TensorName::WHh(1),
                expected: 108 * 27 + 216,
                found: 108 * 27,
            },
        ),
        // An infinite scale (the bytes themselves are any i8).
        (
            edited(&good, |b| b.layers[1].w_hh.data = &inf_scale),
            Error::NonFinite {
                tensor: TensorName::WHh(1),
            },
        ),
        // -128, which would let a dot product's sum reach 2^31 at hidden
        // 1024; 0x80 among the scales is a half like any other.
        (
            edited(&good, |b| b.layers[1].w_hh.data = &minus_128),
            Error::WeightOutOfRange {
                tensor: TensorName::WHh(1),
            },
        ),
    ];
    for (bytes, expected) in cases {
        assert_eq!(Model::from_bytes(&bytes).unwrap_err(), expected);
    }
    // The bias case shows that an i8 bias is refused for its type, not its length.
    assert_eq!(f16_bias.data.len(), 216);
    // Version 1 cannot hold i8, and version 2's i8 (f32 activations) is
    // refused with a hint; versions after 3 are unknown.
    let mut old = ModelFile::decode(&good).unwrap();
    for version in [1, 2] {
        old.header.version = version;
        let err = Model::from_bytes(&old.encode().unwrap()).unwrap_err();
        assert_eq!(
            err,
            Error::DTypeTooNew {
                dtype: DType::I8,
                version
            }
        );
        assert_eq!(
            err.to_string().contains("export the model again"),
            version == 2,
            "{err}"
        );
    }
    old.header.version = 4;
    assert_eq!(
        Model::from_bytes(&old.encode().unwrap()).unwrap_err(),
        Error::UnsupportedVersion { found: 4 }
    );
    // An f16 model written as version 2 or 3 is fine (a reader takes 1 to 3).
    let mut f16_later = ModelFile::decode(&f16).unwrap();
    for version in [2, 3] {
        f16_later.header.version = version;
        assert!(Model::from_bytes(&f16_later.encode().unwrap()).is_ok());
    }
    // i8 weights are for hidden sizes up to 1024 (their sums fit an i32).
    let mut wide = ModelFile::decode(&good).unwrap();
    wide.body.arch.hidden = 1025;
    assert_eq!(
        Model::from_bytes(&wide.encode().unwrap()).unwrap_err(),
        Error::HiddenTooLargeForI8 { hidden: 1025 }
    );
}

/// The portable kernel through the cells' 8-lane path (what the host's
/// AVX2 kernel takes), without any instruction set of its own.
struct PortableLanes;

impl charlm_runtime::Kernel for PortableLanes {
    const LANE_ACTIVATIONS: bool = true;
}

#[test]
fn one_unit_and_eight_lane_cells_give_the_same_logits_for_every_weight_type() {
    // The firmware runs the one-unit path, the host the 8-lane one (with
    // AVX2 where the CPU has it, else 128-bit SIMD): all must agree bit for
    // bit.
    for name in charlm_tests::golden_models() {
        let bytes = fixture(name);
        let model = Model::from_bytes(&bytes).unwrap();
        let units = charlm_tests::digest_logits(&model, charlm_runtime::Portable).unwrap();
        assert_eq!(
            units,
            charlm_tests::digest_logits(&model, PortableLanes).unwrap(),
            "{name}: lanes"
        );
        use charlm_trainer::host_kernel::{HostKernel, Wide};
        let host = HostKernel::detect();
        // On CI (x86-64 with AVX2) the host's kernel must be the AVX2 one,
        // not the 128-bit one again.
        assert!(
            !(charlm_tests::ci()
                && cfg!(target_arch = "x86_64")
                && matches!(host, HostKernel::Wide(_))),
            "CI=true but no AVX2+F16C kernel here"
        );
        for kernel in [host, HostKernel::Wide(Wide)] {
            assert_eq!(
                units,
                charlm_tests::digest_logits(&model, kernel).unwrap(),
                "{name}: {}",
                kernel.name()
            );
        }
    }
}

#[test]
fn i8_weights_cost_little_against_the_f16_model_they_come_from() {
    // The trained fixture and its i8 version on the start of the bundled
    // corpus's held-out part: quantization must not cost more than 1% of
    // the bits per character (the end of the corpus is its held-out part).
    let corpus = std::str::from_utf8(charlm_trainer::corpus::BUNDLED).unwrap();
    let tail: Vec<char> = corpus.chars().rev().take(4000).collect();
    let bpc = |name: &str| {
        let bytes = fixture(name);
        let model = Model::from_bytes(&bytes).unwrap();
        let ids = tail
            .iter()
            .rev()
            .filter_map(|&c| model.vocab().id_of(c))
            .collect();
        let data = charlm_trainer::eval::EvalData::Running(ids);
        charlm_trainer::eval::runtime_loss(&model, &data).bpc()
    };
    let (f16, i8) = (bpc("shakespeare-lstm128"), bpc("shakespeare-lstm128-i8"));
    eprintln!("held-out prefix: f16 {f16:.4} bpc, i8 {i8:.4} bpc");
    assert!(f16 > 1.0 && f16 < 4.0, "the f16 model scores {f16}");
    assert!((i8 - f16).abs() < 0.01 * f16, "i8 {i8} against f16 {f16}");
}

/// `eval`'s bits per character, computed here without its code: each
/// character's logits from the generator, a log-softmax in f64, the next
/// character (or `<eos>` after the last) as the target, nats over ln 2.
#[test]
fn eval_scores_a_sample_as_its_log_probabilities_say() {
    let bytes = fixture("shakespeare-lstm128");
    let model = Model::from_bytes(&bytes).unwrap();
    let text = "To be, or not to be, that is the question:";
    let ids: Vec<u16> = text
        .chars()
        .filter_map(|c| model.vocab().id_of(c))
        .collect();
    assert_eq!(ids.len(), text.chars().count());
    let mut ws = charlm_trainer::sample::host_workspace();
    let mut g = Generator::new(&model, &mut ws, Sampler::Greedy, SeededRng::new(0)).unwrap();
    let mut nats = 0.0f64;
    for (i, &id) in ids.iter().enumerate() {
        assert!(g.feed_id(id));
        let logits: Vec<f64> = g.logits().unwrap().iter().map(|&x| f64::from(x)).collect();
        let top = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let log_sum = top + logits.iter().map(|x| (x - top).exp()).sum::<f64>().ln();
        let target = ids.get(i + 1).copied().unwrap_or(model.vocab().eos());
        nats += log_sum - logits[usize::from(target)];
    }
    let want = nats / ids.len() as f64 / std::f64::consts::LN_2;
    let data = charlm_trainer::eval::EvalData::Samples(vec![ids]);
    let got = charlm_trainer::eval::runtime_loss(&model, &data).bpc();
    eprintln!("{text:?}: {got:.6} bits per character, {want:.6} computed here");
    assert!(
        (got - want).abs() <= 1e-9 * want,
        "eval {got} against {want}"
    );
    // A trained model knows this line far better than chance (log2 of its
    // 60-odd symbols is about 6 bits).
    assert!(want < 4.0, "{want}");
}

#[test]
fn the_fuzzers_seed_models_are_valid() {
    // A seed that fails validation only ever exercises the loader's error
    // paths; one of these once repeated a symbol ("hallo ").
    let dir = charlm_tests::tests_dir().join("../fuzz/seeds");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let model = Model::from_bytes(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let i8 = path.to_string_lossy().ends_with("-i8.clm");
        assert_eq!(model.weights() == DType::I8, i8, "{}", path.display());
        seen += 1;
    }
    assert_eq!(seen, 8, "4 seed models, each in f16 and i8");
}

/// An RNG whose every draw is the largest: the one that lands furthest
/// along the cumulative weights (the only draw that can reach the last id
/// when the others' weights leave it almost nothing).
struct LastDraw;

impl RngCore for LastDraw {
    fn next_u32(&mut self) -> u32 {
        u32::MAX
    }
    fn next_u64(&mut self) -> u64 {
        u64::MAX
    }
    fn fill_bytes(&mut self, dst: &mut [u8]) {
        dst.fill(0xff);
    }
}

/// `charlm import` gives a model without `<eos>` one whose logit is f16's
/// lowest, -65504, as the last id; the docs promise it is never drawn
/// greedily nor at temperatures up to 1,000 (far above, where every weight
/// is about equal, it is).
#[test]
fn an_end_of_logit_minus_65504_is_drawn_only_far_above_temperature_1000() {
    let eos = 65;
    for spread in [1.0f32, 10.0, 40.0] {
        let base: Vec<f32> = (0..=eos)
            .map(|i| match i {
                _ if i == eos => -65504.0,
                _ => ((i * 37 % 23) as f32 / 11.0 - 1.0) * spread,
            })
            .collect();
        for t in [0.0f32, 0.5, 1.0, 10.0, 100.0, 1000.0] {
            for draw in [u32::MAX, u32::MAX - (1 << 8), 0] {
                struct Fixed(u32);
                impl RngCore for Fixed {
                    fn next_u32(&mut self) -> u32 {
                        self.0
                    }
                    fn next_u64(&mut self) -> u64 {
                        self.0 as u64
                    }
                    fn fill_bytes(&mut self, dst: &mut [u8]) {
                        dst.fill(0);
                    }
                }
                let mut logits = base.clone();
                let id = Sampler::from_temperature(t)
                    .unwrap()
                    .sample(&mut logits, &mut Fixed(draw));
                assert_ne!(id as usize, eos, "T = {t}, spread {spread}, draw {draw:#x}");
            }
        }
        // Far above, it is as likely as the rest: the last draw takes it.
        let mut logits = base.clone();
        let id = Sampler::from_temperature(1e7)
            .unwrap()
            .sample(&mut logits, &mut LastDraw);
        assert_eq!(id as usize, eos, "spread {spread}");
    }
}

/// The texts of one `--count` batch use consecutive seeds; their draws must
/// look independent. With 66 equally likely ids, the first draws of seeds
/// 0, 1, 2, ... give counts whose chi-square statistic lies within four
/// standard deviations of its mean (65 ± 4 × 11.4). Before the seed was
/// mixed, PCG32 started consecutive seeds on states a fixed multiple apart,
/// and the counts came out far too even (chi-square 20.7 and 11.1 for the
/// first two bases; now 65.5, 83.3 and 57.1).
#[test]
fn consecutive_seeds_draw_as_independent_seeds_would() {
    let ids = 66;
    let n = 660_000u64;
    for base in [0u64, 1_000_000_007, u64::MAX / 2] {
        let mut counts = vec![0u64; ids + 1];
        for k in 0..n {
            let mut logits = vec![0.0f32; ids + 1];
            let mut rng = SeededRng::new(base.wrapping_add(k));
            let id = Sampler::from_temperature(1.0)
                .unwrap()
                .sample(&mut logits, &mut rng);
            counts[id as usize] += 1;
        }
        let e = n as f64 / ids as f64;
        let chi2: f64 = counts[1..]
            .iter()
            .map(|&c| (c as f64 - e).powi(2) / e)
            .sum();
        let (mean, sd) = (65.0, (2.0f64 * 65.0).sqrt());
        assert!(
            (chi2 - mean).abs() < 4.0 * sd,
            "seeds {base}..: chi-square {chi2:.1} (expected {mean} ± {sd:.1})"
        );
    }
}
