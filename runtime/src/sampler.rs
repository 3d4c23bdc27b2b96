//! Choosing the next character from the logits.
//!
//! Greedy takes the first id with the largest logit. Temperature sampling
//! divides the logits by `T`, subtracts their maximum, exponentiates with
//! `libm::expf`, sums in id order, draws one `u32` from the RNG and maps its
//! top 24 bits to `u` in `[0, 1)`, and returns the first id whose cumulative
//! weight exceeds `u * total` (the last id with non-zero weight if rounding
//! leaves none). Padding (id 0) has weight zero and is never returned.

use rand_core::RngCore;

use crate::error::Error;

/// A temperature: a finite number above zero.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Temperature(f32);

impl Temperature {
    /// Checks `t` (finite, above zero).
    pub fn new(t: f32) -> Result<Self, Error> {
        if t.is_finite() && t > 0.0 {
            Ok(Temperature(t))
        } else {
            Err(Error::BadTemperature)
        }
    }

    /// The value.
    pub fn get(self) -> f32 {
        self.0
    }
}

/// How the next character is chosen.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Sampler {
    /// The most likely character (argmax); uses no randomness.
    Greedy,
    /// A draw from `softmax(logits / T)`: one `u32` from the RNG per character.
    Temperature(Temperature),
}

impl Sampler {
    /// The command line's convention: `0` is greedy, anything else a temperature.
    pub fn from_temperature(t: f32) -> Result<Self, Error> {
        if t == 0.0 {
            Ok(Sampler::Greedy)
        } else {
            Temperature::new(t).map(Sampler::Temperature)
        }
    }

    /// Picks an id from `logits` (index = id; id 0 is padding and skipped).
    /// May overwrite `logits` with sampling weights.
    pub fn sample<R: RngCore + ?Sized>(&self, logits: &mut [f32], rng: &mut R) -> u16 {
        match self {
            Sampler::Greedy => argmax(logits),
            Sampler::Temperature(t) => draw(logits, t.0, rng),
        }
    }
}

/// First id >= 1 with the largest logit.
fn argmax(logits: &[f32]) -> u16 {
    let mut best = (1u16, f32::NEG_INFINITY);
    for (id, &l) in (1u16..).zip(logits.iter().skip(1)) {
        if l > best.1 {
            best = (id, l);
        }
    }
    best.0
}

fn draw<R: RngCore + ?Sized>(logits: &mut [f32], t: f32, rng: &mut R) -> u16 {
    let weights = logits.get_mut(1..).unwrap_or(&mut []);
    let mut max = f32::NEG_INFINITY;
    for w in weights.iter_mut() {
        *w /= t;
        max = max.max(*w);
    }
    if !max.is_finite() {
        // T so small that logits / T overflowed: the limit T -> 0 is greedy.
        return argmax(logits);
    }
    let mut total = 0.0f32;
    for w in weights.iter_mut() {
        *w = libm::expf(*w - max);
        total += *w;
    }
    let u = (rng.next_u32() >> 8) as f32 * (1.0 / (1u32 << 24) as f32);
    let target = u * total;
    let mut cumulative = 0.0f32;
    let mut last = 1u16;
    for (id, &w) in (1u16..).zip(weights.iter()) {
        cumulative += w;
        if w > 0.0 {
            last = id;
        }
        if target < cumulative {
            return id;
        }
    }
    last
}
