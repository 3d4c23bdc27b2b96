//! `charlm eval`: held-out bits per character of a model file, computed by
//! the runtime (so the number includes the rounding to f16).

use std::path::PathBuf;

use charlm_runtime::Model;
use charlm_trainer::batch::eval_streams;
use charlm_trainer::checkpoint::{self, Checkpoint};
use charlm_trainer::corpus::{Field, Layout, Spec};
use charlm_trainer::error::CliError;
use charlm_trainer::eval::{EvalData, runtime_loss};
use charlm_trainer::export::parameters;
use charlm_trainer::import::never_ends;
use charlm_trainer::sample::host_workspace;
use charlm_trainer::vocab::Vocab;
use charlm_trainer::{errln, outln};

use super::train::TextLayout;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Model file (.clm), or a run folder (its model.clm).
    #[arg(long, short)]
    model: PathBuf,
    /// Text to score (a text file, or AG News CSV with --field). Default:
    /// for a run folder, the run's own held-out data (as it split it); for a
    /// model file, the held-out part of the bundled Tiny Shakespeare (as
    /// `charlm train` splits it).
    #[arg(long)]
    corpus: Option<PathBuf>,
    /// Read --corpus as AG News CSV and score this field.
    #[arg(long, value_enum)]
    field: Option<Field>,
    /// How a text corpus is cut: running text (default) or one sample per line.
    #[arg(long, value_enum)]
    layout: Option<TextLayout>,
    /// Score only the part `charlm train --val-frac X` holds out (default:
    /// the whole --corpus; 0.05 for the bundled corpus; for a run folder,
    /// the run's own split; refused for a run trained with --val).
    #[arg(long, value_parser = super::finite::<f64>, allow_hyphen_values = true)]
    val_frac: Option<f64>,
}

pub fn run(args: Args) -> Result<(), CliError> {
    // A run folder and nothing to say what to score: its own held-out data.
    let run = (args.model.join(checkpoint::FILE).is_file()
        && args.corpus.is_none()
        && args.field.is_none()
        && args.layout.is_none())
    .then(|| Checkpoint::load(&args.model))
    .transpose()?;
    let (path, bytes) = super::read_model(args.model.clone())?;
    let model_err = |source| CliError::Model {
        path: path.clone(),
        source,
    };
    let model = Model::from_bytes(&bytes).map_err(model_err)?;
    host_workspace().check(&model).map_err(model_err)?;
    let ends = !parameters(&bytes).is_ok_and(|(layout, params, _)| never_ends(&layout, &params));
    if args.field.is_some() && args.corpus.is_none() {
        return Err(CliError::invalid(
            "--field reads an AG News CSV given with --corpus (the bundled corpus is plain text)",
        ));
    }
    if args.field.is_some() && args.layout == Some(TextLayout::Running) {
        return Err(CliError::invalid(
            "--field reads AG News rows, one sample each: --layout running does not apply (leave it out)",
        ));
    }
    if let Some(ck) = run {
        return score(&model, ends, &run_held_out(&args, &ck)?);
    }
    let layout = match (args.field, args.layout) {
        (Some(_), _) | (None, Some(TextLayout::Lines)) => Layout::Samples,
        _ => Layout::Running,
    };
    let spec = Spec {
        path: args.corpus.clone(),
        field: args.field,
        layout,
    };
    let corpus = spec.load()?;
    for q in &corpus.notes {
        errln!("charlm: note: {q}");
    }
    // (A model charlm trained names its corpus and has taken steps; an
    // imported one names its source file.)
    let trained_on = model.meta().corpus;
    if args.corpus.is_none() && model.meta().steps > 0 && trained_on != corpus.name {
        errln!(
            "charlm: note: no --corpus: scoring the bundled Tiny Shakespeare, but this model was trained on {trained_on}"
        );
    }
    let name = corpus.name.clone();
    let frac = args.val_frac.or(if args.corpus.is_none() {
        Some(0.05)
    } else {
        None
    });
    let frac = frac.map(checked_val_frac).transpose()?;
    let texts = match frac {
        Some(f) => {
            let val = corpus.split(f).val;
            if val.is_empty() {
                return Err(CliError::invalid(format!(
                    "{name}: --val-frac {f} holds out nothing of so short a corpus (leave --val-frac out to score all of it)"
                )));
            }
            val
        }
        None => corpus.texts,
    };
    score(
        &model,
        ends,
        &Held {
            name,
            texts,
            layout,
        },
    )
}

/// `--val-frac`'s value where it is allowed.
fn checked_val_frac(f: f64) -> Result<f64, CliError> {
    match f > 0.0 && f <= 0.5 {
        true => Ok(f),
        false => Err(CliError::invalid(format!(
            "--val-frac {f}: must be above 0 and at most 0.5"
        ))),
    }
}

/// Text to score: its name in the report, the texts, their layout.
struct Held {
    name: String,
    texts: Vec<String>,
    layout: Layout,
}

/// A run's own held-out data, as the run split it: its `--val` file, or the
/// part `--val-frac` held out of its corpus (this command's `--val-frac`
/// where given).
fn run_held_out(args: &Args, ck: &Checkpoint) -> Result<Held, CliError> {
    let cfg = &ck.config;
    let corpus = cfg.corpus.load()?;
    let (corpus_name, layout) = (corpus.name.clone(), corpus.layout);
    let dir = args.model.display();
    if corpus.crc != ck.corpus_crc {
        return Err(CliError::invalid(format!(
            "{}: the corpus differs from the one the run in {dir} was trained on; give --corpus to score it",
            corpus.name
        )));
    }
    let frac = match args.val_frac {
        Some(f) if cfg.val.is_some() => {
            return Err(CliError::invalid(format!(
                "--val-frac {f}: the run in {dir} held out its --val file, not a part of its corpus (leave --val-frac out to score that file, or give --corpus)"
            )));
        }
        Some(f) => checked_val_frac(f)?,
        None => cfg.val_frac,
    };
    let name = match &cfg.val {
        Some(val) => {
            let spec = Spec {
                path: Some(val.clone()),
                ..cfg.corpus.clone()
            };
            format!("{} (the run's --val)", spec.name())
        }
        None if args.val_frac.is_some() => format!("the held-out {frac} of {corpus_name}"),
        None => format!("the held-out {frac} of {corpus_name} (the run's split)"),
    };
    let split = cfg.corpus.split(corpus, cfg.val.as_deref(), frac)?.0;
    if let (Some(want), Some(crc)) = (ck.val_crc, split.val_crc)
        && want != crc
    {
        return Err(CliError::invalid(format!(
            "{name}: the held-out file differs from the one the run in {dir} was scored on; give --corpus to score it"
        )));
    }
    let texts = split.val;
    if texts.is_empty() {
        return Err(CliError::invalid(format!(
            "{dir}: the run holds nothing out of {corpus_name} to score; give --corpus"
        )));
    }
    Ok(Held {
        name,
        texts,
        layout,
    })
}

/// Scores `held` through the runtime and reports it; `ends`: whether the
/// model ends texts (one imported without `<eos>` does not).
fn score(model: &Model<'_>, ends: bool, held: &Held) -> Result<(), CliError> {
    let Held {
        name,
        texts,
        layout,
    } = held;
    let vocab = Vocab::from_symbols(model.vocab().symbols().chars().collect());
    let mut dropped = 0;
    let mut ids: Vec<Vec<u16>> = texts
        .iter()
        .map(|t| {
            let (ids, d) = vocab.encode(t);
            dropped += d;
            ids
        })
        .filter(|s| !s.is_empty())
        .collect();
    let data = match layout {
        Layout::Samples if ends => EvalData::Samples(ids),
        Layout::Samples => {
            errln!(
                "charlm: note: the model never ends a text (its source had no <eos>): each sample's end is not scored"
            );
            EvalData::Unended(ids)
        }
        Layout::Running => {
            let text = ids.pop().unwrap_or_default();
            if text.len() < 2 {
                return Err(CliError::invalid(format!(
                    "{name}: fewer than 2 characters the model knows"
                )));
            }
            EvalData::Running(text)
        }
    };
    if data.count() == 0 {
        return Err(CliError::invalid(match data {
            EvalData::Unended(_) => format!(
                "{name}: nothing to score (samples of one character, and the model predicts no end)"
            ),
            _ => format!("{name}: nothing to score (no character the model knows)"),
        }));
    }
    let loss = runtime_loss(model, &data);
    let how = match &data {
        EvalData::Samples(s) => crate::out::count(s.len() as u64, "sample", "samples"),
        EvalData::Unended(s) => format!(
            "{}, their ends not scored",
            crate::out::count(s.len() as u64, "sample", "samples")
        ),
        EvalData::Running(t) => {
            let (s, l) = eval_streams(t.len());
            format!(
                "running text, {} of {l}",
                crate::out::count(s as u64, "stream", "streams")
            )
        }
    };
    outln!(
        "{:.4} bits per character on {name}: {}; {how}; {} weights through the runtime",
        loss.bpc(),
        crate::out::count(loss.count as u64, "character", "characters"),
        model.weights()
    );
    if dropped > 0 {
        errln!(
            "charlm: note: dropped {} not in the model's vocabulary",
            crate::out::count(dropped as u64, "character", "characters")
        );
    }
    Ok(())
}
