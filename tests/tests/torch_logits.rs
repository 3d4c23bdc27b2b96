//! The runtime's logits against PyTorch's. The reference numbers were
//! written by `tests/reference/torch_forward.py` (torch.nn.LSTM / nn.GRU +
//! nn.Linear in float64 on the fixture's exact f16 weights); our code did
//! not compute them.
//!
//! Tolerance: |ours - torch| <= 4e-6 + 4e-6 * |torch|. The runtime computes in
//! float32: a dot product of length n <= 27 plus two biases accumulates at
//! most about (n + 2) roundings of 2^-24 relative to the sum of |terms| (a
//! few units here, so ~1e-6 per pre-activation), libm's expf/tanhf are within
//! 1 ulp, and the 40-step recurrence passes errors through gates that do not
//! amplify them. Observed worst case: 5.8e-7 (GRU), 3.1e-7 (LSTM). A wrong
//! gate order, a missing bias, a transposed matrix or a dropped f16 bit gives
//! errors from 1e-3 up.

use charlm_runtime::{Generator, Model, Sampler, SeededRng};
use charlm_tests::{SPECS, model_path, tests_dir};

#[test]
fn runtime_logits_match_pytorch() {
    for spec in &SPECS {
        let bytes = std::fs::read(model_path(spec.name)).unwrap();
        let path = tests_dir()
            .join("fixtures")
            .join(format!("{}.torch_logits.json", spec.name));
        let reference: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("reference logits"))
                .unwrap();
        let ids: Vec<u16> = reference["input_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u16)
            .collect();
        let steps = reference["logits"].as_array().unwrap();
        assert_eq!(ids.len(), steps.len());

        let model = Model::from_bytes(&bytes).unwrap();
        let mut ws = charlm_trainer::sample::host_workspace();
        let mut g = Generator::new(&model, &mut ws, Sampler::Greedy, SeededRng::new(0)).unwrap();
        let mut worst = 0.0f64;
        for (t, (&id, expected)) in ids.iter().zip(steps).enumerate() {
            assert!(g.feed_id(id));
            let expected: Vec<f64> = expected
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            let logits = g.logits().unwrap();
            assert_eq!(expected.len(), logits.len());
            // Id 0 (padding) is never produced; the runtime does not compute its logit.
            for (v, (&ours, &theirs)) in logits.iter().zip(&expected).enumerate().skip(1) {
                let err = (ours as f64 - theirs).abs();
                worst = worst.max(err);
                assert!(
                    err <= 4e-6 + 4e-6 * theirs.abs(),
                    "{} step {t} id {v}: runtime {ours} vs PyTorch {theirs}",
                    spec.name
                );
            }
        }
        eprintln!("{}: largest |runtime - PyTorch| = {worst:.3e}", spec.name);
    }
}
