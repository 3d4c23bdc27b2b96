//! Choosing the next character from the logits.
//!
//! Greedy takes the first id with the largest logit. Temperature sampling
//! divides the logits by `T`, subtracts their maximum, exponentiates with
//! `libm::expf`, sums in id order, draws one `u32` from the RNG and maps its
//! top 24 bits to `u` in `[0, 1)`, and returns the first id whose cumulative
//! weight exceeds `u * total` (the last id with non-zero weight if rounding
//! leaves none). Padding (id 0) has weight zero and is never returned.
//!
//! Truncated sampling (`Sampler::Truncated`, cargo feature `truncation`)
//! first gives weight zero to all but the most likely ids, then draws the
//! same way. Ids are ranked by
//! weight, equal weights by lower id first: top-k keeps the first `k`;
//! top-p then keeps the fewest first ids whose weights, added in rank order,
//! reach `p` times the sum of the weights left (in id order). Every step is
//! a fixed sequence of f32 operations, so the text is the same bit for bit
//! on every platform. Allocation-free: ranks are marked in the weights' own
//! sign bits (`O(V * kept)` integer comparisons).

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

/// Which of the most likely characters a truncated draw keeps.
#[cfg(feature = "truncation")]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Truncation {
    top_k: u16,
    top_p: f32,
}

#[cfg(feature = "truncation")]
impl Truncation {
    /// Keep the `top_k` most likely ids (`0`: no limit), then the nucleus
    /// of mass `top_p` among them (`1`: all; must be in `(0, 1]`).
    pub fn new(top_k: u16, top_p: f32) -> Result<Self, Error> {
        if top_p > 0.0 && top_p <= 1.0 {
            Ok(Truncation { top_k, top_p })
        } else {
            Err(Error::BadTopP)
        }
    }

    /// The `k` of top-k (`0`: no limit).
    pub fn top_k(self) -> u16 {
        self.top_k
    }

    /// The `p` of top-p (`1`: no limit).
    pub fn top_p(self) -> f32 {
        self.top_p
    }

    /// Keeps every id.
    fn is_none(self) -> bool {
        self.top_k == 0 && self.top_p == 1.0
    }
}

/// How the next character is chosen.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Sampler {
    /// The most likely character (argmax); uses no randomness.
    Greedy,
    /// A draw from `softmax(logits / T)`: one `u32` from the RNG per character.
    Temperature(Temperature),
    /// A draw from `softmax(logits / T)` over the most likely ids only
    /// (top-k, then top-p; see the module docs): one `u32` per character.
    #[cfg(feature = "truncation")]
    Truncated(Temperature, Truncation),
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

    /// The command line's convention with top-k and top-p: temperature `0`
    /// is greedy (whatever the truncation: the most likely id is always
    /// kept); `top_k` 0 and `top_p` 1 leave a plain temperature draw.
    #[cfg(feature = "truncation")]
    pub fn new(t: f32, top_k: u16, top_p: f32) -> Result<Self, Error> {
        let cut = Truncation::new(top_k, top_p)?;
        Ok(match Self::from_temperature(t)? {
            Sampler::Temperature(t) if !cut.is_none() => Sampler::Truncated(t, cut),
            plain => plain,
        })
    }

    /// Picks an id from `logits` (index = id; id 0 is padding and skipped).
    /// May overwrite `logits` with sampling weights.
    pub fn sample<R: RngCore + ?Sized>(&self, logits: &mut [f32], rng: &mut R) -> u16 {
        match self {
            Sampler::Greedy => argmax(logits),
            Sampler::Temperature(t) => draw(
                logits,
                t.0,
                #[cfg(feature = "truncation")]
                None,
                rng,
            ),
            #[cfg(feature = "truncation")]
            Sampler::Truncated(t, cut) => draw(logits, t.0, Some(*cut), rng),
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

fn draw<R: RngCore + ?Sized>(
    logits: &mut [f32],
    t: f32,
    #[cfg(feature = "truncation")] cut: Option<Truncation>,
    rng: &mut R,
) -> u16 {
    let weights = logits.get_mut(1..).unwrap_or(&mut []);
    // The largest logit (and the first id that has it) is found as the
    // logits are divided: `x / t` is monotonic, so `top / t` is the largest
    // quotient, bit for bit.
    let mut top = (1u16, f32::NEG_INFINITY);
    for (id, w) in (1u16..).zip(weights.iter_mut()) {
        if *w > top.1 {
            top = (id, *w);
        }
        *w /= t;
    }
    let max = top.1 / t;
    if !max.is_finite() {
        // T so small that the largest logit / T overflows: the limit T -> 0
        // is greedy, the largest logit before dividing (several may have
        // overflowed to +inf alike).
        return top.0;
    }
    let mut total = 0.0f32;
    for w in weights.iter_mut() {
        *w = libm::expf(*w - max);
        total += *w;
    }
    #[cfg(feature = "truncation")]
    if let Some(cut) = cut {
        if cut.top_k > 0 {
            keep_first(weights, cut.top_k as usize, f32::INFINITY);
        }
        if cut.top_p < 1.0 {
            keep_first(weights, usize::MAX, cut.top_p * sum(weights));
        }
        total = sum(weights);
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

/// Keeps the ids ranked first (largest weight, then lowest id): `k` of
/// them, or fewer once their weights, added in rank order, reach `mass`;
/// every other weight becomes zero. Weights are finite and at least zero,
/// so their bit patterns, read as `i32`, order as their values do; an id is
/// marked as kept by setting its sign bit (a kept zero is -0.0), which
/// makes its pattern negative and takes it out of the next search. One
/// integer comparison per id and search.
/// The weights added in id order.
#[cfg(feature = "truncation")]
fn sum(weights: &[f32]) -> f32 {
    let mut total = 0.0f32;
    for w in weights {
        total += *w;
    }
    total
}

#[cfg(feature = "truncation")]
#[inline(never)]
fn keep_first(weights: &mut [f32], k: usize, mass: f32) {
    let mut kept = 0usize;
    let mut sum = 0.0f32;
    while kept < k {
        let mut best = (usize::MAX, -1i32);
        for (i, w) in weights.iter().enumerate() {
            let bits = w.to_bits() as i32;
            if bits > best.1 {
                best = (i, bits);
            }
        }
        // None left unmarked: every id is kept.
        let Some(slot) = weights.get_mut(best.0) else {
            break;
        };
        let w = *slot;
        *slot = -w;
        kept += 1;
        sum += w;
        if sum >= mass {
            break;
        }
    }
    for w in weights.iter_mut() {
        *w = if w.is_sign_negative() { -*w } else { 0.0 };
    }
}
