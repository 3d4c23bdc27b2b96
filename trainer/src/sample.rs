//! Text generation on the host, through the runtime. `charlm generate`, the
//! samples printed during training and the golden tests all call this, so
//! they print the same text for the same model, prompt, sampler and seed.

use crate::error::CliError;
use crate::host_kernel::HostKernel;
use charlm_runtime::{Error, Generator, Model, Sampler, SeededRng, Workspace};

/// Workspace capacities of the host tools: every model the format allows
/// up to hidden 1024 (the trainer's limit).
pub type HostWorkspace = Workspace<1024, 4, { charlm_runtime::format::MAX_VOCAB }>;

/// A new host workspace on the heap (it is about 40 KiB).
pub fn host_workspace() -> Box<HostWorkspace> {
    Box::new(HostWorkspace::new())
}

/// One generated text: the prompt as the model saw it, then the continuation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    /// Prompt characters the model knows, in order.
    pub prompt: String,
    /// Generated characters (without `<eos>`).
    pub generated: String,
    /// Prompt characters dropped because the vocabulary lacks them.
    pub dropped: usize,
}

impl Sample {
    /// Prompt and continuation, as the lesson prints them.
    pub fn text(&self) -> String {
        format!("{}{}", self.prompt, self.generated)
    }
}

/// Why a text could not be generated.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SampleError {
    /// The model does not fit the host workspace.
    #[error(transparent)]
    Runtime(#[from] Error),
    /// Every prompt character was outside the vocabulary.
    #[error("prompt {0:?} has no character the model knows")]
    EmptyPrompt(String),
}

/// Generates one text from `prompt`: the RNG is seeded with `seed`, the text
/// ends at `<eos>` or after `max_chars` characters.
pub fn generate(
    model: &Model<'_>,
    ws: &mut HostWorkspace,
    prompt: &str,
    sampler: Sampler,
    seed: u64,
    max_chars: usize,
) -> Result<Sample, SampleError> {
    let kernel = HostKernel::detect();
    let mut g = Generator::with_kernel(model, ws, sampler, SeededRng::new(seed), kernel)?
        .with_limit(max_chars);
    let fed = g.feed(prompt);
    if fed.fed == 0 {
        return Err(SampleError::EmptyPrompt(prompt.to_owned()));
    }
    let vocab = model.vocab();
    let known: String = prompt
        .chars()
        .filter(|&c| vocab.id_of(c).is_some())
        .collect();
    let generated: String = g.by_ref().collect();
    Ok(Sample {
        prompt: known,
        generated,
        dropped: fed.dropped,
    })
}

/// A batch of texts as `charlm generate` produces them: every prompt `count`
/// times; text number k (counting across prompts, in order) uses seed `seed + k`.
#[derive(Clone, Debug)]
pub struct Batch<'p> {
    /// Prompts, in order.
    pub prompts: &'p [String],
    /// Greedy or a temperature.
    pub sampler: Sampler,
    /// Seed of the first text.
    pub seed: u64,
    /// Texts per prompt.
    pub count: u32,
    /// Length limit per text.
    pub max_chars: usize,
}

/// Generates every text of `batch` in order, handing each to `emit` as soon
/// as it is complete.
pub fn generate_batch<E: From<SampleError>>(
    model: &Model<'_>,
    ws: &mut HostWorkspace,
    batch: &Batch<'_>,
    mut emit: impl FnMut(&Sample) -> Result<(), E>,
) -> Result<(), E> {
    let mut seed = batch.seed;
    for prompt in batch.prompts {
        for _ in 0..batch.count {
            let sample = generate(model, ws, prompt, batch.sampler, seed, batch.max_chars)?;
            emit(&sample)?;
            seed = seed.wrapping_add(1);
        }
    }
    Ok(())
}

impl From<SampleError> for CliError {
    fn from(e: SampleError) -> Self {
        match e {
            SampleError::Runtime(e) => CliError::invalid(e.to_string()),
            SampleError::EmptyPrompt(p) => CliError::invalid(format!(
                "prompt {p:?} has no character in the model's vocabulary"
            )),
        }
    }
}
