//! The samplers on arbitrary logits (NaN, infinities and subnormals
//! included), temperatures, top-k, top-p and seeds: a draw must return,
//! never panic, never pick padding (id 0) or an id past the logits, and
//! give the same id again from the same logits and seed. The truncated
//! sampler keeps its ranks in the weights' sign bits, which is what this
//! target presses on; `generate` does not reach it.
//!
//! Input layout: `[temperature: f32 LE][top_k: u16 LE][top_p: f32 LE]
//! [seed: u64 LE][logits: f32 LE ...]` (at least 2 logits; logit 0 is the
//! padding id's and is set to -inf, as the runtime does).
#![no_main]

use charlm_runtime::{Sampler, SeededRng};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((head, rest)) = data.split_first_chunk::<18>() else { return };
    let f32_at = |i: usize| f32::from_le_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
    let (temperature, top_p) = (f32_at(0), f32_at(6));
    let top_k = u16::from_le_bytes([head[4], head[5]]);
    let seed = u64::from_le_bytes([head[10], head[11], head[12], head[13], head[14], head[15], head[16], head[17]]);
    let mut logits: Vec<f32> = rest.as_chunks::<4>().0.iter().map(|b| f32::from_le_bytes(*b)).collect();
    if logits.len() < 2 || logits.len() > 1024 {
        return;
    }
    logits[0] = f32::NEG_INFINITY;
    let Ok(sampler) = Sampler::new(temperature, top_k, top_p) else { return };
    let draw = || {
        let mut scratch = logits.clone();
        sampler.sample(&mut scratch, &mut SeededRng::new(seed))
    };
    let id = draw();
    assert!(id >= 1 && (id as usize) < logits.len(), "id {id} of {} logits", logits.len());
    assert_eq!(draw(), id, "the same logits and seed gave another id");
    // With finite logits / T, top-1 gives an id of the largest weight
    // (weights are the sampler's: expf(l / T - max / T)).
    let best = logits.iter().skip(1).fold(f32::NEG_INFINITY, |m, &l| m.max(l));
    let t = temperature;
    let finite = logits.iter().skip(1).all(|l| (l / t).is_finite());
    if finite && top_k == 1 && t > 0.0 {
        assert_eq!(
            libm::expf(logits[id as usize] / t - best / t),
            libm::expf(best / t - best / t),
            "top-1 drew id {id}, whose weight is not the largest"
        );
    }
});
