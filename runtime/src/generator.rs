//! Streaming text generation: feed a prompt, pull characters one at a time.

use rand_core::RngCore;

use crate::cell::Workspace;
use crate::error::Error;
use crate::kernel::{Kernel, Portable};
use crate::model::Model;
use crate::sampler::Sampler;

/// Why generation stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// The model produced `<eos>`.
    Eos,
    /// The length limit was reached.
    Limit,
    /// Nothing has been fed yet, so there is no distribution to sample from.
    NothingFed,
}

/// What [`Generator::feed`] did with a prompt.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fed {
    /// Characters run through the model.
    pub fed: usize,
    /// Characters dropped because the vocabulary lacks them.
    pub dropped: usize,
}

/// Runs a [`Model`] in a [`Workspace`]: feed text, then pull characters.
///
/// ```
/// # fn demo(bytes: &[u8]) -> Result<(), charlm_runtime::Error> {
/// use charlm_runtime::{Generator, Model, Sampler, SeededRng, Workspace};
/// let model = Model::from_bytes(bytes)?;
/// let mut ws = Workspace::<256, 4, 256>::new();
/// let mut g = Generator::new(&model, &mut ws, Sampler::Greedy, SeededRng::new(42))?;
/// g.feed("Today ");
/// for c in g.by_ref().take(40) { /* print c */ let _ = c; }
/// # Ok(()) }
/// ```
pub struct Generator<'g, 'a, R, const H: usize, const L: usize, const V: usize, K = Portable> {
    model: &'g Model<'a>,
    kernel: K,
    ws: &'g mut Workspace<H, L, V>,
    sampler: Sampler,
    rng: R,
    limit: usize,
    produced: usize,
    primed: bool,
    /// The workspace's logits are those of the last character run (a draw
    /// with a temperature works in their place and uses them up).
    fresh: bool,
    stop: Option<Stop>,
}

impl<'g, 'a, R: RngCore, const H: usize, const L: usize, const V: usize>
    Generator<'g, 'a, R, H, L, V>
{
    /// Binds `model` to `ws` (an error if it does not fit) and resets the
    /// state; dot products run on the [`Portable`] kernel.
    pub fn new(
        model: &'g Model<'a>,
        ws: &'g mut Workspace<H, L, V>,
        sampler: Sampler,
        rng: R,
    ) -> Result<Self, Error> {
        Self::with_kernel(model, ws, sampler, rng, Portable)
    }
}

impl<'g, 'a, R: RngCore, const H: usize, const L: usize, const V: usize, K: Kernel>
    Generator<'g, 'a, R, H, L, V, K>
{
    /// Like [`Generator::new`], with a platform [`Kernel`] for the dot
    /// products (same bits as [`Portable`], faster).
    pub fn with_kernel(
        model: &'g Model<'a>,
        ws: &'g mut Workspace<H, L, V>,
        sampler: Sampler,
        rng: R,
        kernel: K,
    ) -> Result<Self, Error> {
        ws.check(model)?;
        ws.reset();
        Ok(Generator {
            model,
            kernel,
            ws,
            sampler,
            rng,
            limit: usize::MAX,
            produced: 0,
            primed: false,
            fresh: false,
            stop: None,
        })
    }

    /// Stops after `max_chars` generated characters (the prompt does not count).
    pub fn with_limit(mut self, max_chars: usize) -> Self {
        self.limit = max_chars;
        self
    }

    /// Changes the sampler from the next character on.
    pub fn set_sampler(&mut self, sampler: Sampler) {
        self.sampler = sampler;
    }

    /// Forgets everything fed and generated: the next text starts fresh.
    pub fn reset(&mut self) {
        self.ws.reset();
        self.produced = 0;
        self.primed = false;
        self.fresh = false;
        self.stop = None;
    }

    /// Runs `text` through the model, dropping characters outside the
    /// vocabulary. Continues from the current state; feeding after `<eos>`
    /// or the limit resumes generation.
    pub fn feed(&mut self, text: &str) -> Fed {
        let mut fed = Fed::default();
        // Only the last known character's logits are ever read: the ones
        // before it skip the output layer (one character behind, to know
        // which is last).
        let mut pending = None;
        for c in text.chars() {
            match self.model.vocab().id_of(c) {
                Some(id) => {
                    if let Some(before) = pending.replace(id) {
                        self.ws.step(&self.kernel, self.model, before, false);
                    }
                    fed.fed += 1;
                }
                None => fed.dropped += 1,
            }
        }
        if let Some(last) = pending {
            self.ws.step(&self.kernel, self.model, last, true);
        }
        if fed.fed > 0 {
            self.primed = true;
            self.fresh = true;
            self.stop = None;
            self.produced = 0;
        }
        fed
    }

    /// Runs one id (a symbol id, `1..eos`) through the model, as `feed` does
    /// for a character (the count toward [`Self::with_limit`] starts again
    /// too). Ids out of range are ignored and return `false`.
    pub fn feed_id(&mut self, id: u16) -> bool {
        if id == 0 || id >= self.model.vocab().eos() {
            return false;
        }
        self.ws.step(&self.kernel, self.model, id, true);
        self.primed = true;
        self.fresh = true;
        self.stop = None;
        self.produced = 0;
        true
    }

    /// Logits of the next character, indexed by id (id 0, padding, is
    /// `-inf`). `None` before anything is fed (after [`Self::new`] or
    /// [`Self::reset`]) and after [`Self::next_char`] drew `<eos>` with a
    /// temperature: the draw works in the logits' place.
    pub fn logits(&self) -> Option<&[f32]> {
        self.fresh
            .then(|| self.ws.logits(self.model.vocab().size()))
    }

    /// The next character, or `None` when generation has stopped (see [`Self::stop`]).
    pub fn next_char(&mut self) -> Option<char> {
        if self.stop.is_some() {
            return None;
        }
        if !self.primed {
            self.stop = Some(Stop::NothingFed);
            return None;
        }
        if self.produced >= self.limit {
            self.stop = Some(Stop::Limit);
            return None;
        }
        let vocab = self.model.vocab();
        let id = self
            .sampler
            .sample(self.ws.logits_mut(vocab.size()), &mut self.rng);
        self.fresh = false;
        let Some(c) = vocab.symbol(id) else {
            self.stop = Some(Stop::Eos);
            return None;
        };
        self.ws.step(&self.kernel, self.model, id, true);
        self.fresh = true;
        self.produced += 1;
        Some(c)
    }

    /// Why the last [`Self::next_char`] returned `None`, if it did.
    pub fn stop(&self) -> Option<Stop> {
        self.stop
    }

    /// Characters generated since the last prompt.
    pub fn produced(&self) -> usize {
        self.produced
    }

    /// The random number generator (to reseed it between texts).
    pub fn rng_mut(&mut self) -> &mut R {
        &mut self.rng
    }

    /// The model being run.
    pub fn model(&self) -> &'g Model<'a> {
        self.model
    }
}

impl<R: RngCore, const H: usize, const L: usize, const V: usize, K: Kernel> Iterator
    for Generator<'_, '_, R, H, L, V, K>
{
    type Item = char;

    fn next(&mut self) -> Option<char> {
        self.next_char()
    }
}
