//! Held-out bits per character through the runtime: the model (f16 or i8) exactly as
//! `charlm generate` and the firmware run it. The predicted distribution is
//! the runtime's: softmax over ids `1..V` (padding has probability zero).

use charlm_runtime::{Generator, Model, Sampler, SeededRng};
use rayon::prelude::*;

use crate::batch::eval_streams;
use crate::cpu::Loss;
use crate::host_kernel::HostKernel;
use crate::sample::{HostWorkspace, host_workspace};

/// Held-out data as ids of the model's vocabulary.
#[derive(Clone, Debug)]
pub enum EvalData {
    /// Independent samples: each predicts its characters 2.. and `<eos>`.
    Samples(Vec<Vec<u16>>),
    /// Independent samples for a model that never ends a text (imported
    /// from one without `<eos>`): each predicts its characters 2.. only.
    Unended(Vec<Vec<u16>>),
    /// Running text, scored in the streams of [`eval_streams`].
    Running(Vec<u16>),
}

impl EvalData {
    /// Positions scored.
    pub fn count(&self) -> usize {
        match self {
            EvalData::Samples(s) => s.iter().map(|s| s.len()).sum(),
            EvalData::Unended(s) => s.iter().map(|s| s.len().saturating_sub(1)).sum(),
            EvalData::Running(ids) => {
                let (s, l) = eval_streams(ids.len());
                s * l
            }
        }
    }
}

/// `-ln p(target)` from the runtime's logits (index = id, id 0 is `-inf`).
fn nats(logits: &[f32], target: u16) -> f64 {
    let live = &logits[1..];
    let max = live.iter().fold(f64::NEG_INFINITY, |m, &x| m.max(x as f64));
    let sum: f64 = live.iter().map(|&x| (x as f64 - max).exp()).sum();
    max + sum.ln() - logits[target as usize] as f64
}

/// Scores one sequence: feeds `ids[i]` and scores `targets(i)`.
fn score(
    model: &Model<'_>,
    kernel: HostKernel,
    ws: &mut HostWorkspace,
    ids: &[u16],
    target: impl Fn(usize) -> u16,
) -> f64 {
    let Ok(mut g) = Generator::with_kernel(model, ws, Sampler::Greedy, SeededRng::new(0), kernel)
    else {
        return f64::NAN;
    };
    let mut total = 0.0;
    for (i, &id) in ids.iter().enumerate() {
        g.feed_id(id);
        total += g.logits().map_or(f64::NAN, |l| nats(l, target(i)));
    }
    total
}

/// Held-out loss of `model` on `data` (sequences spread over rayon in a fixed
/// order; the sum is taken in sequence order).
pub fn runtime_loss(model: &Model<'_>, data: &EvalData) -> Loss {
    let eos = model.vocab().eos();
    // The host's fastest kernel: the portable kernel's bits (tested), about
    // ten times its speed where the CPU has AVX2 and F16C.
    let kernel = HostKernel::detect();
    let parts: Vec<f64> = match data {
        EvalData::Samples(samples) | EvalData::Unended(samples) => {
            let ends = matches!(data, EvalData::Samples(_));
            samples
                .par_chunks(64)
                .map(|chunk| {
                    let mut ws = host_workspace();
                    chunk
                        .iter()
                        .map(|s| {
                            // Without an end to predict, the last character
                            // is a target only, not fed.
                            let fed = if ends {
                                s
                            } else {
                                &s[..s.len().saturating_sub(1)]
                            };
                            score(model, kernel, &mut ws, fed, |i| {
                                s.get(i + 1).copied().unwrap_or(eos)
                            })
                        })
                        .sum()
                })
                .collect()
        }
        EvalData::Running(ids) => {
            let (streams, len) = eval_streams(ids.len());
            (0..streams)
                .into_par_iter()
                .map(|s| {
                    let mut ws = host_workspace();
                    let part = &ids[s * len..s * len + len + 1];
                    score(model, kernel, &mut ws, &part[..len], |i| part[i + 1])
                })
                .collect()
        }
    };
    Loss {
        nats: parts.iter().sum(),
        count: data.count(),
    }
}
