//! `charlm generate`: run a model on the host, exactly as the firmware does.

use std::io::Write;
use std::path::PathBuf;

use charlm_runtime::{Error, Model, Sampler};
use charlm_trainer::errln;
use charlm_trainer::error::CliError;
use charlm_trainer::sample::{
    Batch, SampleError, TextSink, generate_batch_each, host_workspace, readable, split_prompt,
};

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
    #[arg(long, short, default_value_t = 0.0, value_parser = super::finite::<f32>, allow_hyphen_values = true)]
    temperature: f32,
    /// Sample only from the K most likely characters (0: all). Ignored when greedy.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true, value_parser = super::whole::<u16>)]
    top_k: u16,
    /// Then only from the fewest most likely characters whose probabilities
    /// reach P (nucleus sampling; 1: all). Ignored when greedy.
    #[arg(long, default_value_t = 1.0, value_parser = super::finite::<f32>, allow_hyphen_values = true)]
    top_p: f32,
    /// Seed of the random generator; text number k (counting across prompts) uses seed + k.
    #[arg(long, short, default_value_t = 0, allow_negative_numbers = true, value_parser = super::whole::<u64>)]
    seed: u64,
    /// Stop after this many generated characters (or at <eos>).
    #[arg(long, default_value_t = 300, allow_negative_numbers = true, value_parser = super::whole::<usize>)]
    max_chars: usize,
    /// Texts per prompt.
    #[arg(long, default_value_t = 1, value_parser = super::one_to(u32::MAX), allow_negative_numbers = true)]
    count: u32,
    /// End a text where its generated part first contains this string,
    /// which is left out (repeat for several; \n, \t and \\ are a line
    /// break, a tab and a backslash). "\n\n" ends it at a blank line.
    #[arg(long, value_parser = unescape)]
    stop: Vec<String>,
    /// Write each text as one line of JSON, {"prompt":...,"seed":...,"generated":...}
    /// (compact; the prompt as the model read it), for texts that
    /// hold line breaks, or for programs.
    #[arg(long)]
    json: bool,
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

/// Writes each text to `out` as it is generated: the prompt, the
/// characters, a line break. A text ends as soon as its generated part
/// contains one of `stops`, which is left out; characters that may be the
/// start of a stop string are held back until they cannot be.
struct Streamed<'s, W: Write> {
    out: W,
    stops: &'s [String],
    /// Generated characters not written yet: at most the longest stop
    /// string's length, less one.
    pending: String,
    /// `--json`: the next text's seed (texts count up from `--seed`).
    json: Option<u64>,
}

impl<W: Write> Streamed<'_, W> {
    fn raw(&mut self, s: &str) -> Result<(), CliError> {
        self.out
            .write_all(s.as_bytes())
            .map_err(|source| CliError::Write {
                path: "standard output".into(),
                source,
            })
    }

    /// Text of the text: as it is, or escaped inside a JSON string.
    fn write(&mut self, s: &str) -> Result<(), CliError> {
        if self.json.is_none() {
            return self.raw(s);
        }
        let quoted = serde_json::to_string(s).unwrap_or_default();
        self.raw(&quoted[1..quoted.len() - 1])
    }

    /// How many bytes at the end of `pending` begin one of the stop
    /// strings (without completing it).
    fn held(&self) -> usize {
        let p = &self.pending;
        p.char_indices()
            .map(|(i, _)| &p[i..])
            .find(|tail| {
                self.stops
                    .iter()
                    .any(|s| s.len() > tail.len() && s.starts_with(tail))
            })
            .map_or(0, str::len)
    }
}

impl<W: Write> TextSink for Streamed<'_, W> {
    type Error = CliError;

    fn begin(&mut self, prompt: &str, _dropped: usize) -> Result<(), CliError> {
        self.pending.clear();
        match self.json {
            None => self.write(prompt),
            Some(seed) => {
                self.json = Some(seed.wrapping_add(1));
                let prompt = serde_json::to_string(prompt).unwrap_or_default();
                self.raw(&format!(
                    "{{\"prompt\":{prompt},\"seed\":{seed},\"generated\":\""
                ))
            }
        }
    }

    fn char(&mut self, c: char) -> Result<bool, CliError> {
        self.pending.push(c);
        if let Some(at) = self
            .stops
            .iter()
            .filter_map(|s| self.pending.find(s.as_str()))
            .min()
        {
            self.pending.truncate(at);
            return Ok(false);
        }
        let ready = self.pending.len() - self.held();
        let done: String = self.pending.drain(..ready).collect();
        self.write(&done)?;
        Ok(true)
    }

    fn end(&mut self) -> Result<(), CliError> {
        let rest = std::mem::take(&mut self.pending);
        self.write(&rest)?;
        self.raw(if self.json.is_some() { "\"}\n" } else { "\n" })
    }
}

pub fn run(args: Args) -> Result<(), CliError> {
    let sampler = Sampler::new(args.temperature, args.top_k, args.top_p).map_err(|e| {
        // (a number of many digits, as -1e-45 is, in scientific notation)
        let shown = |v: f32| match v.to_string() {
            d if d.len() > 12 => format!("{v:e}"),
            d => d,
        };
        let flag = match e {
            Error::BadTopP => format!("--top-p {}", shown(args.top_p)),
            _ => format!("--temperature {}", shown(args.temperature)),
        };
        CliError::invalid(format!("{flag}: {e}"))
    })?;
    let (path, bytes) = super::read_model(args.model)?;
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
        // The lesson's prompts the model can read; a model of another
        // script starts from its vocabulary's first character (in a model
        // charlm trained, its most frequent).
        let mut usable: Vec<String> = DEFAULT_PROMPTS
            .iter()
            .filter(|p| readable(&model, p))
            .map(|p| p.to_string())
            .collect();
        if usable.is_empty() {
            let first = model.vocab().symbol(1).unwrap_or(' ').to_string();
            errln!(
                "charlm: note: the default prompts have no character of this model: starting from {first:?}, the first character of its vocabulary (--prompt to choose)"
            );
            usable.push(first);
        }
        usable
    } else {
        // Every prompt is checked before any text is written.
        if let Some(p) = args.prompt.iter().find(|p| !readable(&model, p)) {
            return Err(SampleError::EmptyPrompt(p.clone()).into());
        }
        args.prompt
    };
    // Once per prompt, not per text.
    for p in &prompts {
        let (lacks, runs) = split_prompt(p, |c| model.vocab().id_of(c).is_some());
        if !lacks.is_empty() {
            errln!(
                "charlm: note: prompt {p:?}: the vocabulary lacks {lacks:?}; it runs as {runs:?}"
            );
        }
    }
    let batch = Batch {
        prompts: &prompts,
        sampler,
        seed: args.seed,
        count: args.count,
        max_chars: args.max_chars,
    };
    let mut out = Streamed {
        out: std::io::stdout().lock(),
        stops: &args.stop,
        pending: String::new(),
        json: args.json.then_some(args.seed),
    };
    generate_batch_each(&model, &mut ws, &batch, &mut out)?;
    out.out.flush().map_err(|source| CliError::Write {
        path: "standard output".into(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `Streamed` writes for one text of `chars`, and how many of
    /// them it took before it ended the text.
    fn stream(chars: &str, stops: &[&str]) -> (String, usize) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut s = Streamed {
            out: Vec::new(),
            stops: &stops,
            pending: String::new(),
            json: None,
        };
        s.begin("P:", 0).unwrap();
        let mut taken = 0;
        for c in chars.chars() {
            taken += 1;
            if !s.char(c).unwrap() {
                break;
            }
        }
        s.end().unwrap();
        (String::from_utf8(s.out).unwrap(), taken)
    }

    #[test]
    fn a_text_ends_where_it_first_holds_a_stop_string() {
        // Ends at the stop string, taking no character after it.
        assert_eq!(stream("ab\n\ncd", &["\n\n"]), ("P:ab\n".into(), 4));
        // A partial match is written once it fails ("\nc" is no "\n\n").
        assert_eq!(stream("a\nc\n", &["\n\n"]), ("P:a\nc\n\n".into(), 4));
        // No stop string: the whole text.
        assert_eq!(stream("abc", &[]), ("P:abc\n".into(), 3));
        // The text first holds "b" (after 2 characters), before "abc" is
        // complete: it ends there, cut where "b" begins.
        assert_eq!(stream("abcd", &["abc", "b"]), ("P:a\n".into(), 2));
        // Several characters long and multi-byte.
        assert_eq!(stream("xÜbeRy", &["Übe"]), ("P:x\n".into(), 4));
        assert_eq!(stream("xÜbÜberz", &["Über"]), ("P:xÜb\n".into(), 7));
    }

    #[test]
    fn only_what_may_begin_a_stop_string_is_held_back() {
        let stops = ["the".to_string()];
        let mut s = Streamed {
            out: Vec::new(),
            stops: &stops,
            pending: String::new(),
            json: None,
        };
        s.begin("", 0).unwrap();
        for c in "oh t".chars() {
            assert!(s.char(c).unwrap());
        }
        // "oh " is out; "t" may begin "the".
        assert_eq!(
            (String::from_utf8_lossy(&s.out).as_ref(), s.pending.as_str()),
            ("oh ", "t")
        );
        assert!(s.char('o').unwrap());
        assert_eq!(String::from_utf8_lossy(&s.out), "oh to");
    }
}
