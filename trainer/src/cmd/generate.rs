//! `charlm generate`: run a model on the host, exactly as the firmware does.

use std::io::Write;
use std::path::PathBuf;

use charlm_runtime::{Error, Model, Sampler};
use charlm_trainer::error::{CliError, read_file};
use charlm_trainer::sample::{Batch, generate_batch, host_workspace};

/// The lesson's prompts, used when none is given.
pub const DEFAULT_PROMPTS: [&str; 5] = [
    "Today ",
    "On Sunday ",
    "Moscow, ",
    "President ",
    "Little red riding hood ",
];

#[derive(clap::Args)]
pub struct Args {
    /// Model file (.clm), or a run folder (its model.clm).
    #[arg(long, short)]
    model: PathBuf,
    /// Text to continue; repeat for several. Characters the model does not
    /// know are dropped. Default: the lesson's five prompts.
    #[arg(long, short)]
    prompt: Vec<String>,
    /// 0 picks the most likely character (greedy); above 0 samples with that temperature.
    #[arg(long, short, default_value_t = 0.0, allow_negative_numbers = true)]
    temperature: f32,
    /// Sample only from the K most likely characters (0: all). Ignored when greedy.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    top_k: u16,
    /// Then only from the fewest most likely characters whose probabilities
    /// reach P (nucleus sampling; 1: all). Ignored when greedy.
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    top_p: f32,
    /// Seed of the random generator; text number k (counting across prompts) uses seed + k.
    #[arg(long, short, default_value_t = 0)]
    seed: u64,
    /// Stop after this many generated characters (or at <eos>).
    #[arg(long, default_value_t = 300, allow_negative_numbers = true)]
    max_chars: usize,
    /// Texts per prompt.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    count: u32,
    /// End a text where its generated part first contains this string,
    /// which is left out (repeat for several; \n, \t and \\ are a line
    /// break, a tab and a backslash). "\n\n" ends it at a blank line.
    #[arg(long, value_parser = unescape)]
    stop: Vec<String>,
}

/// `--stop`'s value with `\n`, `\t` and `\\` replaced; any other escape,
/// and an empty string, is refused.
fn unescape(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        out.push(match chars.next() {
            Some('n') => '\n',
            Some('t') => '\t',
            Some('\\') => '\\',
            other => {
                let other = other.map_or(String::new(), String::from);
                return Err(format!("unknown escape \\{other} (use \\n, \\t or \\\\)"));
            }
        });
    }
    if out.is_empty() {
        return Err("an empty stop string would end every text at once".into());
    }
    Ok(out)
}

/// `generated` up to the first place where one of `stops` begins.
fn cut<'a>(generated: &'a str, stops: &[String]) -> &'a str {
    let end = stops
        .iter()
        .filter_map(|s| generated.find(s.as_str()))
        .min()
        .unwrap_or(generated.len());
    &generated[..end]
}

pub fn run(args: Args) -> Result<(), CliError> {
    let sampler = Sampler::new(args.temperature, args.top_k, args.top_p).map_err(|e| {
        let flag = match e {
            Error::BadTopP => format!("--top-p {}", args.top_p),
            _ => format!("--temperature {}", args.temperature),
        };
        CliError::invalid(format!("{flag}: {e}"))
    })?;
    let path = super::model_path(args.model)?;
    let bytes = read_file(&path)?;
    let model = Model::from_bytes(&bytes).map_err(|source| CliError::Model {
        path: path.clone(),
        source,
    })?;
    let mut ws = host_workspace();
    ws.check(&model).map_err(|source| CliError::Model {
        path: path.clone(),
        source,
    })?;
    let prompts: Vec<String> = if args.prompt.is_empty() {
        DEFAULT_PROMPTS.iter().map(|p| p.to_string()).collect()
    } else {
        args.prompt
    };
    let batch = Batch {
        prompts: &prompts,
        sampler,
        seed: args.seed,
        count: args.count,
        max_chars: args.max_chars,
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let write_err = |source| CliError::Write {
        path: "standard output".into(),
        source,
    };
    generate_batch(&model, &mut ws, &batch, |sample| {
        if sample.dropped > 0 {
            eprintln!(
                "charlm: note: dropped {} character(s) of a prompt that the vocabulary lacks",
                sample.dropped
            );
        }
        writeln!(
            out,
            "{}{}",
            sample.prompt,
            cut(&sample.generated, &args.stop)
        )
        .map_err(write_err)
    })?;
    out.flush().map_err(write_err)
}
