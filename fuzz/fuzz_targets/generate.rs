//! Load and generate with arbitrary model bytes, prompt, temperature and
//! seed, in a small fixed workspace. The model's checksum is recomputed
//! first, so mutations reach the structural checks and the forward pass
//! instead of stopping at the CRC. Models with i8 weights run too (the
//! runtime is built with feature int8; the seeds include the i8 fixtures).
//!
//! The same text is generated a second time through the cells' 8-lane path
//! (a kernel with `LANE_ACTIVATIONS`, as the host's), which must give the
//! same characters: the two paths are required to compute the same bits.
//!
//! Input layout (so that seeds can be made from the fixtures, see seeds.sh):
//! `[temperature: f32 LE][seed: u64 LE][max_chars: u8][prompt_len: u8][prompt][model]`.
#![no_main]

use charlm_runtime::format::crc32;
use charlm_runtime::{Generator, Kernel, Model, Sampler, SeededRng, Workspace};
use libfuzzer_sys::fuzz_target;

/// The portable kernel with the 8-lane activation path switched on.
struct Lanes;

impl Kernel for Lanes {
    const LANE_ACTIVATIONS: bool = true;
}

/// The text `Generator` makes with kernel `k` (prompt included).
fn text<K: Kernel>(model: &Model<'_>, sampler: Sampler, seed: u64, prompt: &str, max_chars: usize, k: K) -> Option<String> {
    let mut ws = Workspace::<48, 4, 128>::new();
    let g = Generator::with_kernel(model, &mut ws, sampler, SeededRng::new(seed), k).ok()?;
    let mut g = g.with_limit(max_chars);
    let fed = g.feed(prompt);
    assert_eq!(fed.fed + fed.dropped, prompt.chars().count());
    let mut out = String::new();
    while let Some(c) = g.next_char() {
        assert!(model.vocab().id_of(c).is_some());
        out.push(c);
    }
    assert!(out.chars().count() <= max_chars);
    Some(out)
}

fuzz_target!(|data: &[u8]| {
    let Some((head, rest)) = data.split_first_chunk::<14>() else { return };
    let temperature = f32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    let seed = u64::from_le_bytes([head[4], head[5], head[6], head[7], head[8], head[9], head[10], head[11]]);
    let max_chars = head[12] as usize;
    let prompt_len = (head[13] as usize).min(rest.len());
    let (prompt, model) = rest.split_at(prompt_len);
    let prompt = String::from_utf8_lossy(prompt);

    let mut bytes = model.to_vec();
    if bytes.len() >= 4 {
        let n = bytes.len() - 4;
        let crc = crc32(&bytes[..n]);
        bytes[n..].copy_from_slice(&crc.to_le_bytes());
    }
    let Ok(model) = Model::from_bytes(&bytes) else { return };
    let Ok(sampler) = Sampler::from_temperature(temperature) else { return };
    let Some(one) = text(&model, sampler, seed, &prompt, max_chars, charlm_runtime::Portable) else { return };
    let lanes = text(&model, sampler, seed, &prompt, max_chars, Lanes);
    assert_eq!(lanes.as_deref(), Some(one.as_str()), "the 8-lane path generated other text");
});
