//! Where a training step's GPU time goes: events recorded on the stream at
//! the boundaries of its phases (`charlm bench gpu --profile N`).
//!
//! Each mark names the work queued since the previous one; after the
//! profiled steps, the time between consecutive events is added to the
//! phase of the later one. The gap before a step's first mark is the GPU
//! waiting for the host to queue that step ("host: between steps"), so a
//! host-bound configuration shows up as well. Recording events costs a few
//! microseconds per mark: the figures describe shares, the unprofiled run
//! measures speed.

use std::sync::Arc;

use cudarc::driver::{CudaEvent, CudaStream, sys};

use super::CudaError;

/// Events of the steps profiled so far and the totals folded from them.
pub struct Profile {
    /// `(phase, event)` in stream order, the first a start without a phase.
    marks: Vec<(&'static str, CudaEvent)>,
    /// Milliseconds per phase, in the order phases first appeared.
    totals: Vec<(&'static str, f64)>,
}

/// Marks kept before they are folded into the totals (a sync each time).
const FOLD_AT: usize = 4096;

impl Profile {
    /// Starts profiling at the current end of `stream`.
    pub fn start(stream: &Arc<CudaStream>) -> Result<Profile, CudaError> {
        let mut p = Profile {
            marks: Vec::new(),
            totals: Vec::new(),
        };
        p.mark(stream, "")?;
        Ok(p)
    }

    /// Ends phase `phase` at the current end of `stream`.
    pub fn mark(&mut self, stream: &Arc<CudaStream>, phase: &'static str) -> Result<(), CudaError> {
        let event = stream.record_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT))?;
        self.marks.push((phase, event));
        if self.marks.len() >= FOLD_AT {
            self.fold()?;
        }
        Ok(())
    }

    /// Waits for the marks so far and adds their intervals to the totals;
    /// the last mark stays as the start of what follows.
    fn fold(&mut self) -> Result<(), CudaError> {
        for pair in self.marks.windows(2) {
            let ms = pair[0].1.elapsed_ms(&pair[1].1)? as f64;
            let phase = pair[1].0;
            match self.totals.iter_mut().find(|(p, _)| *p == phase) {
                Some((_, t)) => *t += ms,
                None => self.totals.push((phase, ms)),
            }
        }
        let last = self.marks.pop();
        self.marks.clear();
        self.marks.extend(last);
        Ok(())
    }

    /// Milliseconds per phase over everything profiled, in first-seen order.
    pub fn finish(mut self) -> Result<Vec<(&'static str, f64)>, CudaError> {
        self.fold()?;
        Ok(self.totals)
    }
}
