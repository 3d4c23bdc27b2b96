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
#[derive(Clone, Debug, Default, PartialEq, Eq)]
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

/// Where [`generate_each`] and [`generate_batch_each`] put a text while it
/// is generated, one character at a time, so that a caller can write it
/// out at once and end it early.
pub trait TextSink {
    /// What the sink's own failures are (and a [`SampleError`]).
    type Error: From<SampleError>;
    /// A text begins: the prompt as the model saw it (the characters it
    /// knows) and how many prompt characters were dropped.
    fn begin(&mut self, prompt: &str, dropped: usize) -> Result<(), Self::Error>;
    /// One generated character; `false` ends the text here.
    fn char(&mut self, c: char) -> Result<bool, Self::Error>;
    /// The text has ended: at `<eos>`, at the length limit, or where
    /// [`TextSink::char`] said so.
    fn end(&mut self) -> Result<(), Self::Error>;
}

/// A prompt as a vocabulary reads it: the characters it lacks (each once,
/// in order) and the prompt without them, as it runs.
pub fn split_prompt(prompt: &str, known: impl Fn(char) -> bool) -> (String, String) {
    let (mut lacks, mut runs) = (String::new(), String::new());
    for c in prompt.chars() {
        match known(c) {
            true => runs.push(c),
            false if !lacks.contains(c) => lacks.push(c),
            false => {}
        }
    }
    (lacks, runs)
}

/// Whether `prompt` has a character `model` knows (a text can start from it).
pub fn readable(model: &Model<'_>, prompt: &str) -> bool {
    prompt.chars().any(|c| model.vocab().id_of(c).is_some())
}

/// Generates one text from `prompt` into `sink`: the RNG is seeded with
/// `seed`, the text ends at `<eos>`, after `max_chars` characters, or where
/// the sink ends it.
pub fn generate_each<S: TextSink>(
    model: &Model<'_>,
    ws: &mut HostWorkspace,
    prompt: &str,
    sampler: Sampler,
    seed: u64,
    max_chars: usize,
    sink: &mut S,
) -> Result<(), S::Error> {
    let kernel = HostKernel::detect();
    let mut g = Generator::with_kernel(model, ws, sampler, SeededRng::new(seed), kernel)
        .map_err(SampleError::from)?
        .with_limit(max_chars);
    let fed = g.feed(prompt);
    if fed.fed == 0 {
        return Err(SampleError::EmptyPrompt(prompt.to_owned()).into());
    }
    let vocab = model.vocab();
    let known: String = prompt
        .chars()
        .filter(|&c| vocab.id_of(c).is_some())
        .collect();
    sink.begin(&known, fed.dropped)?;
    for c in g {
        if !sink.char(c)? {
            break;
        }
    }
    sink.end()
}

/// A [`TextSink`] that keeps the whole text.
#[derive(Default)]
struct Collect {
    sample: Option<Sample>,
}

impl TextSink for Collect {
    type Error = SampleError;

    fn begin(&mut self, prompt: &str, dropped: usize) -> Result<(), SampleError> {
        self.sample = Some(Sample {
            prompt: prompt.to_owned(),
            generated: String::new(),
            dropped,
        });
        Ok(())
    }

    fn char(&mut self, c: char) -> Result<bool, SampleError> {
        if let Some(s) = &mut self.sample {
            s.generated.push(c);
        }
        Ok(true)
    }

    fn end(&mut self) -> Result<(), SampleError> {
        Ok(())
    }
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
    let mut sink = Collect::default();
    generate_each(model, ws, prompt, sampler, seed, max_chars, &mut sink)?;
    Ok(sink
        .sample
        .expect("generate_each begins every text it returns Ok for"))
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

/// Generates every text of `batch` in order into `sink`, as it comes.
pub fn generate_batch_each<S: TextSink>(
    model: &Model<'_>,
    ws: &mut HostWorkspace,
    batch: &Batch<'_>,
    sink: &mut S,
) -> Result<(), S::Error> {
    let mut seed = batch.seed;
    for prompt in batch.prompts {
        for _ in 0..batch.count {
            generate_each(
                model,
                ws,
                prompt,
                batch.sampler,
                seed,
                batch.max_chars,
                sink,
            )?;
            seed = seed.wrapping_add(1);
        }
    }
    Ok(())
}

/// Generates every text of `batch` in order, handing each to `emit` as soon
/// as it is complete.
pub fn generate_batch<E: From<SampleError>>(
    model: &Model<'_>,
    ws: &mut HostWorkspace,
    batch: &Batch<'_>,
    emit: impl FnMut(&Sample) -> Result<(), E>,
) -> Result<(), E> {
    /// Collects each text and hands it on when it ends.
    struct Emit<F, E> {
        collect: Collect,
        emit: F,
        error: std::marker::PhantomData<E>,
    }
    impl<F: FnMut(&Sample) -> Result<(), E>, E: From<SampleError>> TextSink for Emit<F, E> {
        type Error = E;
        fn begin(&mut self, prompt: &str, dropped: usize) -> Result<(), E> {
            Ok(self.collect.begin(prompt, dropped)?)
        }
        fn char(&mut self, c: char) -> Result<bool, E> {
            Ok(self.collect.char(c)?)
        }
        fn end(&mut self) -> Result<(), E> {
            match self.collect.sample.take() {
                Some(sample) => (self.emit)(&sample),
                None => Ok(()),
            }
        }
    }
    let mut sink = Emit {
        collect: Collect::default(),
        emit,
        error: std::marker::PhantomData,
    };
    generate_batch_each(model, ws, batch, &mut sink)
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
