//! Batches: ids laid out time-major (`[T][B]`), post-padded with id 0, and
//! targets where 0 means "no loss here" (padding is masked out exactly).
//!
//! Two ways to cut a corpus:
//! * [`SampleBatcher`]: independent samples (titles, lines). Input = the
//!   sample, target = the sample shifted by one with `<eos>` last. Samples of
//!   similar length share a batch (length bucketing), so padding stays small;
//!   the order is shuffled with the seed.
//! * [`StreamBatcher`]: running text. The text is split into `B` contiguous
//!   streams and each batch is the next window of `seq_len` characters of
//!   every stream; the recurrent state carries from one window to the next
//!   (truncated backpropagation through time). Targets are the next character.

use crate::rng::Rng;

/// `steps` time steps of `rows` sequences.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    /// Time steps `T`.
    pub steps: usize,
    /// Sequences `B`.
    pub rows: usize,
    /// `[T][B]` input ids (0 after a sequence ends).
    pub inputs: Vec<u16>,
    /// `[T][B]` target ids; 0 = padding, excluded from the loss.
    pub targets: Vec<u16>,
    /// Start from the final state of the previous batch instead of zeros.
    pub carry: bool,
}

impl Batch {
    /// Positions that count in the loss.
    pub fn chars(&self) -> usize {
        self.targets.iter().filter(|&&t| t != 0).count()
    }

    /// A batch of independent samples (each non-empty), post-padded, longest
    /// first (so the rows still running at any step are a prefix, which the
    /// backends use to skip ended rows; row order does not change the loss).
    pub fn from_samples(samples: &[&[u16]], eos: u16) -> Batch {
        let mut sorted = samples.to_vec();
        sorted.sort_by_key(|s| std::cmp::Reverse(s.len()));
        let samples = &sorted[..];
        let rows = samples.len();
        let steps = samples.iter().map(|s| s.len()).max().unwrap_or(0);
        let mut inputs = vec![0u16; steps * rows];
        let mut targets = vec![0u16; steps * rows];
        for (b, s) in samples.iter().enumerate() {
            for (t, &id) in s.iter().enumerate() {
                inputs[t * rows + b] = id;
                targets[t * rows + b] = s.get(t + 1).copied().unwrap_or(eos);
            }
        }
        Batch {
            steps,
            rows,
            inputs,
            targets,
            carry: false,
        }
    }
}

/// Independent samples, bucketed by length and shuffled per epoch.
#[derive(Clone, Debug)]
pub struct SampleBatcher {
    samples: Vec<Vec<u16>>,
    rows: usize,
    eos: u16,
}

/// Samples per sorting pool, in batches: big enough that neighbours in a
/// pool have similar lengths, small enough that batch order stays random.
const POOL_BATCHES: usize = 32;

impl SampleBatcher {
    /// `samples` are encoded and non-empty; `rows` is the batch size.
    pub fn new(samples: Vec<Vec<u16>>, rows: usize, eos: u16) -> Self {
        SampleBatcher { samples, rows, eos }
    }

    /// The batches of `epoch`, as lists of sample indices: shuffle, sort
    /// pools of `32 * rows` samples by length, cut, shuffle the batches.
    pub fn plan(&self, seed: u64, epoch: u64) -> Vec<Vec<u32>> {
        let mut rng = Rng::derive(seed, 0x5348_5546 ^ epoch);
        let mut order: Vec<u32> = (0..self.samples.len() as u32).collect();
        rng.shuffle(&mut order);
        let mut batches = Vec::new();
        for pool in order.chunks_mut(self.rows * POOL_BATCHES) {
            pool.sort_by_key(|&i| self.samples[i as usize].len());
            batches.extend(pool.chunks(self.rows).map(|c| c.to_vec()));
        }
        rng.shuffle(&mut batches);
        batches
    }

    /// The batch made of these samples.
    pub fn batch(&self, indices: &[u32]) -> Batch {
        let s: Vec<&[u16]> = indices
            .iter()
            .map(|&i| self.samples[i as usize].as_slice())
            .collect();
        Batch::from_samples(&s, self.eos)
    }

    /// Batches per epoch.
    pub fn len(&self) -> usize {
        self.samples.len().div_ceil(self.rows)
    }

    /// True when there are no samples.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Characters that count in the loss per epoch (samples plus `<eos>`).
    pub fn chars(&self) -> usize {
        self.samples.iter().map(|s| s.len()).sum()
    }
}

/// Running text as `rows` streams of windows of `steps` characters.
#[derive(Clone, Debug)]
pub struct StreamBatcher {
    ids: Vec<u16>,
    rows: usize,
    steps: usize,
}

impl StreamBatcher {
    /// `None` when the text is too short for one window per stream.
    pub fn new(ids: Vec<u16>, rows: usize, steps: usize) -> Option<Self> {
        let b = StreamBatcher { ids, rows, steps };
        (b.geometry(0).1 > 0).then_some(b)
    }

    /// The epoch's starting offset (a seeded shift below `steps`, so windows
    /// are cut differently each epoch), stream length and window count.
    fn geometry(&self, offset: usize) -> (usize, usize) {
        let usable = self.ids.len().saturating_sub(1 + offset);
        let stream = usable / self.rows;
        (stream, stream / self.steps)
    }

    /// Offset of the first stream in `epoch` (0 in epoch 0).
    pub fn offset(&self, seed: u64, epoch: u64) -> usize {
        if epoch == 0 {
            return 0;
        }
        let o = Rng::derive(seed, 0x5354_524d ^ epoch).below(self.steps as u64) as usize;
        if self.geometry(o).1 == self.len() {
            o
        } else {
            0
        }
    }

    /// Windows per epoch.
    pub fn len(&self) -> usize {
        self.geometry(0).1
    }

    /// Always false: construction guarantees one window.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Window `k` of the epoch that starts at `offset`.
    pub fn batch(&self, offset: usize, k: usize) -> Batch {
        let (stream, _) = self.geometry(offset);
        let (rows, steps) = (self.rows, self.steps);
        let mut inputs = vec![0u16; steps * rows];
        let mut targets = vec![0u16; steps * rows];
        for b in 0..rows {
            let start = offset + b * stream + k * steps;
            for t in 0..steps {
                inputs[t * rows + b] = self.ids[start + t];
                targets[t * rows + b] = self.ids[start + t + 1];
            }
        }
        Batch {
            steps,
            rows,
            inputs,
            targets,
            carry: k > 0,
        }
    }
}

/// How held-out running text is scored, the same by the trainer (f32) and by
/// `charlm eval` (the runtime, f16): `S = clamp((n - 1) / 1000, 1, 16)`
/// contiguous streams of `L = (n - 1) / S` predictions; stream `s` starts
/// from zero state at character `s * L` and predicts characters
/// `s*L + 1 ..= s*L + L`. Returns `(S, L)`.
pub fn eval_streams(n: usize) -> (usize, usize) {
    let p = n.saturating_sub(1);
    let s = (p / 1000).clamp(1, 16);
    (s, p / s)
}

/// Held-out running text as evaluation batches: the [`eval_streams`]
/// streams in windows of `steps` (the last window may be shorter).
pub fn eval_stream_batches(ids: &[u16], steps: usize) -> Vec<Batch> {
    let (rows, len) = eval_streams(ids.len());
    let mut out = Vec::new();
    let mut k = 0;
    while k < len {
        let t_len = steps.min(len - k);
        let mut inputs = vec![0u16; t_len * rows];
        let mut targets = vec![0u16; t_len * rows];
        for b in 0..rows {
            for t in 0..t_len {
                let at = b * len + k + t;
                inputs[t * rows + b] = ids[at];
                targets[t * rows + b] = ids[at + 1];
            }
        }
        out.push(Batch {
            steps: t_len,
            rows,
            inputs,
            targets,
            carry: k > 0,
        });
        k += t_len;
    }
    out
}

/// Held-out samples as evaluation batches (sorted by length, `rows` each).
pub fn eval_sample_batches(samples: &[Vec<u16>], rows: usize, eos: u16) -> Vec<Batch> {
    let mut sorted: Vec<&[u16]> = samples
        .iter()
        .filter(|s| !s.is_empty())
        .map(|s| s.as_slice())
        .collect();
    sorted.sort_by_key(|s| s.len());
    sorted
        .chunks(rows)
        .map(|c| Batch::from_samples(c, eos))
        .collect()
}

/// Benchmark batches: consecutive non-empty lines of `text`, `rows` at a time
/// in file order, post-padded (as `charlm bench` and the PyTorch scripts build them).
pub fn line_batches(vocab: &crate::vocab::Vocab, text: &str, rows: usize) -> Vec<Batch> {
    let lines: Vec<Vec<u16>> = text
        .split('\n')
        .filter(|l| !l.trim().is_empty())
        .map(|l| vocab.encode(l).0)
        .collect();
    lines
        .chunks_exact(rows)
        .map(|c| {
            let refs: Vec<&[u16]> = c.iter().map(|s| s.as_slice()).collect();
            Batch::from_samples(&refs, vocab.eos())
        })
        .collect()
}

/// Benchmark batches: every window of running text, in order (state carries
/// from one to the next). `None` if the text is too short for `rows` streams.
pub fn stream_batches(
    vocab: &crate::vocab::Vocab,
    text: &str,
    rows: usize,
    steps: usize,
) -> Option<Vec<Batch>> {
    let s = StreamBatcher::new(vocab.encode(text).0, rows, steps)?;
    Some((0..s.len()).map(|k| s.batch(0, k)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_post_padded_and_end_in_eos() {
        let b = Batch::from_samples(&[&[1, 2, 3], &[4]], 9);
        assert_eq!((b.steps, b.rows), (3, 2));
        assert_eq!(b.inputs, [1, 4, 2, 0, 3, 0]);
        assert_eq!(b.targets, [2, 9, 3, 0, 9, 0]);
        assert_eq!(b.chars(), 4);
    }

    #[test]
    fn bucketing_keeps_padding_small_and_is_seeded() {
        let samples: Vec<Vec<u16>> = (0..1000).map(|i| vec![1; 1 + (i * 7919) % 50]).collect();
        let batcher = SampleBatcher::new(samples, 8, 2);
        let plan = batcher.plan(1, 0);
        assert_eq!(plan, batcher.plan(1, 0));
        assert_ne!(plan, batcher.plan(1, 1));
        assert_ne!(plan, batcher.plan(2, 0));
        let mut seen: Vec<u32> = plan.iter().flatten().copied().collect();
        seen.sort();
        assert_eq!(seen, (0..1000).collect::<Vec<_>>());
        let (mut real, mut total) = (0, 0);
        for p in &plan {
            let b = batcher.batch(p);
            real += b.chars();
            total += b.steps * b.rows;
        }
        assert_eq!(real, batcher.chars());
        assert!(
            (total - real) * 10 < real,
            "padding {} of {}",
            total - real,
            total
        );
    }

    #[test]
    fn streams_carry_state_through_consecutive_windows() {
        let ids: Vec<u16> = (1..=25).collect();
        let s = StreamBatcher::new(ids, 2, 3).unwrap();
        // usable 24, stream 12, 4 windows
        assert_eq!(s.len(), 4);
        let b0 = s.batch(0, 0);
        assert_eq!(b0.inputs, [1, 13, 2, 14, 3, 15]);
        assert_eq!(b0.targets, [2, 14, 3, 15, 4, 16]);
        assert!(!b0.carry);
        let b1 = s.batch(0, 1);
        assert_eq!(b1.inputs, [4, 16, 5, 17, 6, 18]);
        assert!(b1.carry);
        assert!(StreamBatcher::new(vec![1; 6], 2, 3).is_none());
    }

    #[test]
    fn eval_streams_cover_the_text() {
        let ids: Vec<u16> = (0..5001).map(|i| (i % 7 + 1) as u16).collect();
        assert_eq!(eval_streams(5001), (5, 1000));
        let batches = eval_stream_batches(&ids, 300);
        assert_eq!(
            batches.iter().map(|b| b.steps).collect::<Vec<_>>(),
            [300, 300, 300, 100]
        );
        assert_eq!(batches.iter().map(|b| b.chars()).sum::<usize>(), 5000);
        assert_eq!(batches[3].targets[99 * 5 + 4], ids[5000]);
    }
}
