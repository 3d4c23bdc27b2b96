//! Which positions of a batch hold a running sequence, and the packed order
//! in which the CPU backend stores and multiplies only those.

use crate::batch::Batch;

/// The running rows of each time step and where they sit once the padding
/// is left out.
///
/// Samples are post-padded and [`Batch::from_samples`] puts longer samples
/// first, so the rows still running at step `t` are a prefix `0..live[t]`
/// (rows of running text are always all live). Packed, step `t`'s running
/// rows are rows `start(t)..start(t) + live[t]`, steps in order (PyTorch's
/// `PackedSequence` order). Per-position buffers that the backend owns are
/// packed, and products "over all positions" run over packed rows, so
/// padding costs no arithmetic. On titles at batch 64 about a third of the
/// positions are padding.
///
/// A row counts as running at step `t` while its input or its target there
/// is not padding (id 0), or any later row of the step is: a padded
/// position carries no loss, so leaving out a suffix of them changes no
/// result.
#[derive(Clone, Debug, Default)]
pub(crate) struct LiveRows {
    rows: usize,
    live: Vec<usize>,
    start: Vec<usize>,
}

impl LiveRows {
    pub(crate) fn of(batch: &Batch) -> Self {
        let b = batch.rows;
        let last = |s: &[u16]| s.iter().rposition(|&id| id != 0).map_or(0, |i| i + 1);
        let live: Vec<usize> = (0..batch.steps)
            .map(|t| {
                let at = t * b..(t + 1) * b;
                last(&batch.inputs[at.clone()]).max(last(&batch.targets[at]))
            })
            .collect();
        let mut start = Vec::with_capacity(live.len() + 1);
        let mut sum = 0;
        start.push(0);
        for &l in &live {
            sum += l;
            start.push(sum);
        }
        LiveRows {
            rows: b,
            live,
            start,
        }
    }

    /// Running rows per step (`live[t]`: rows `0..live[t]` of step `t`).
    pub(crate) fn live(&self) -> &[usize] {
        &self.live
    }

    /// Packed row of step `t`'s row 0.
    pub(crate) fn start(&self, t: usize) -> usize {
        self.start[t]
    }

    /// Running positions in all (packed rows).
    pub(crate) fn total(&self) -> usize {
        self.start.last().copied().unwrap_or(0)
    }

    /// No position is padding: packed and time-major orders are the same.
    pub(crate) fn is_full(&self) -> bool {
        self.total() == self.rows * self.live.len()
    }

    /// The running rows of a time-major `[T*B, width]` buffer, packed:
    /// `src` itself when no position is padding, else a copy in `scratch`.
    pub(crate) fn pack<'a, U: Copy>(
        &self,
        src: &'a [U],
        width: usize,
        scratch: &'a mut Vec<U>,
    ) -> &'a [U] {
        if self.is_full() {
            return &src[..self.total() * width];
        }
        scratch.clear();
        for (t, &l) in self.live.iter().enumerate() {
            let s = t * self.rows * width;
            scratch.extend_from_slice(&src[s..s + l * width]);
        }
        scratch
    }

    /// What [`LiveRows::pack`] returned for `src`, without copying again
    /// (`packed` is the scratch it was given).
    pub(crate) fn packed<'a, U>(&self, src: &'a [U], width: usize, packed: &'a [U]) -> &'a [U] {
        let len = self.total() * width;
        if self.is_full() {
            &src[..len]
        } else {
            &packed[..len]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch() -> Batch {
        // Three samples of lengths 4, 2 and 1, eos = 9.
        Batch::from_samples(&[&[1, 2], &[3, 4, 5, 6], &[7]], 9)
    }

    #[test]
    fn packed_rows_are_each_steps_running_prefix_in_step_order() {
        let b = batch();
        let rows = LiveRows::of(&b);
        assert_eq!(rows.live(), &[3, 2, 1, 1]);
        assert_eq!((rows.start(0), rows.start(2), rows.total()), (0, 5, 7));
        assert!(!rows.is_full());
        let mut scratch = Vec::new();
        let ids = rows.pack(&b.inputs, 1, &mut scratch).to_vec();
        assert_eq!(ids, [3, 1, 7, 4, 2, 5, 6]);
        // Every running position keeps its target; only padding is left out.
        let targets = rows.pack(&b.targets, 1, &mut scratch).to_vec();
        assert_eq!(targets, [4, 2, 9, 5, 9, 6, 9]);
        assert_eq!(targets.len(), b.chars());
        // Width > 1 moves whole rows.
        let wide: Vec<u32> = (0..b.steps * b.rows * 2).map(|x| x as u32).collect();
        let p = rows.pack(&wide, 2, &mut Vec::new()).to_vec();
        assert_eq!(p, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 13, 18, 19]);
    }

    #[test]
    fn a_target_past_the_last_input_keeps_its_row_running() {
        let mut b = batch();
        // Step 1, row 2 (padding in the input) gets a target.
        b.targets[b.rows + 2] = 5;
        let rows = LiveRows::of(&b);
        assert_eq!(rows.live(), &[3, 3, 1, 1]);
    }

    #[test]
    fn a_full_batch_packs_to_itself() {
        let b = Batch::from_samples(&[&[1, 2], &[3, 4]], 9);
        let rows = LiveRows::of(&b);
        assert!(rows.is_full());
        let mut scratch = Vec::new();
        let p = rows.pack(&b.inputs, 1, &mut scratch);
        assert_eq!(p.as_ptr(), b.inputs.as_ptr());
        assert!(scratch.is_empty());
    }
}
