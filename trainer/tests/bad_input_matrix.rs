//! The bad-input matrix: every subcommand with missing, empty, binary,
//! huge-line, wrong-format and wrong-architecture inputs and out-of-range
//! options. Each case must exit with status 2, print exactly one stderr line
//! that names the problem, never panic, and create or change no output file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_charlm");

/// Every file under `dir` with its contents (a symbolic link: where it
/// points), to prove nothing changed.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_symlink() {
                let to = std::fs::read_link(&p).unwrap();
                out.insert(p.clone(), to.into_os_string().into_encoded_bytes());
            } else if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[test]
fn every_subcommand_refuses_bad_input_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let write = |name: &str, bytes: &[u8]| {
        std::fs::write(d.join(name), bytes).unwrap();
        d.join(name).display().to_string()
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let model_bytes = std::fs::read(root.join("tests/fixtures/gru1.clm")).unwrap();
    let model = write("model.clm", &model_bytes);
    let model_i8 = write(
        "model-i8.clm",
        &std::fs::read(root.join("tests/fixtures/lstm2-i8.clm")).unwrap(),
    );
    let c_out = d.join("model.c").display().to_string();
    let dangling = d.join("dangling.clm");
    std::os::unix::fs::symlink(d.join("gone"), &dangling).unwrap();
    let dangling = dangling.display().to_string();
    let empty = write("empty.txt", b"");
    let gzipped = write("news.csv.gz", b"\x1f\x8b\x08\x00\x00\x00\x00\x00");
    let binary = write(
        "binary.bin",
        &[0xff, 0xfe, 0x00, 0x9c, 0x80, 0x81, b'C', b'H', 0xc3, 0x28],
    );
    // binary.bin by way of the folder above.
    let binary_up = format!("../{}/binary.bin", d.file_name().unwrap().to_str().unwrap());
    let binary_up_named = format!("error: {binary_up}: ");
    let text = write(
        "text.txt",
        "To be, or not to be: that is the question.\n"
            .repeat(200)
            .as_bytes(),
    );
    let huge_line = write("huge.txt", "a".repeat(300_000).as_bytes());
    // Sample 4 (after an empty line) is on line 5; the CSV's third row on
    // line 4 (a quoted field runs over a line break).
    let long_sample = write(
        "long.txt",
        format!("one\n\ntwo\nthree\n{}\nsix\n", "b".repeat(10_001)).as_bytes(),
    );
    // --val-frac 0.25 holds out sample 4, of characters the others have.
    let long_held = write(
        "long-held.txt",
        format!("one\ntwo\nthree\n{}\nsix\n", "e".repeat(10_001)).as_bytes(),
    );
    let long_csv = write(
        "long.csv",
        format!("1,t,d\n2,\"multi\nline\",x\n3,{},d\n", "c".repeat(10_001)).as_bytes(),
    );
    let csv_no_desc = write(
        "titles.csv",
        b"3,\"Wall St. Bears Claw Back\"\n3,\"Carlyle Looks Toward\"\n",
    );
    let bad_csv = write("bad.csv", b"1,\"unterminated quote,desc\n2,a,b\n");
    let mut truncated = model_bytes.clone();
    truncated.truncate(model_bytes.len() / 2);
    let truncated = write("truncated.clm", &truncated);
    let mut flipped = model_bytes.clone();
    flipped[100] ^= 0x20;
    let corrupted = write("corrupted.clm", &flipped);
    let vocab_json = write("vocab.json", br#"["<pad>", "a", "<eos>"]"#);
    let keras = write(
        "keras.safetensors",
        &std::fs::read(root.join("tests/fixtures/import/keras-lstm.safetensors")).unwrap(),
    );
    // The same weights under a name whose default output is itself.
    let keras_clm = write(
        "weights.clm",
        &std::fs::read(root.join("tests/fixtures/import/keras-lstm.safetensors")).unwrap(),
    );
    let keras_vocab = write(
        "keras.vocab.json",
        &std::fs::read(root.join("tests/fixtures/import/keras-lstm.vocab.json")).unwrap(),
    );

    // A finished run folder, to show that another run cannot overwrite it
    // and that resuming it with another architecture is refused.
    let run = d.join("run");
    let o = Command::new(BIN)
        .args([
            "train",
            "--corpus",
            &text,
            "--out",
            run.to_str().unwrap(),
            "--hidden",
            "8",
            "--batch",
            "2",
        ])
        .args([
            "--seq-len",
            "16",
            "--epochs",
            "1",
            "--max-steps",
            "3",
            "--quiet",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let run_s = run.display().to_string();
    let new_out = d.join("new-run").display().to_string();
    let checkpoint = run.join("checkpoint.bin").display().to_string();
    // A folder where `export --safetensors st.safetensors` puts its vocabulary.
    std::fs::create_dir(d.join("st.vocab.json")).unwrap();
    let st = d.join("st.safetensors").display().to_string();
    // A folder with a user's own file of a name a run writes.
    std::fs::create_dir(d.join("notes")).unwrap();
    std::fs::write(d.join("notes/metrics.csv"), "my numbers\n").unwrap();
    let notes = d.join("notes").display().to_string();
    // What a run stopped before its first checkpoint leaves: its lock.
    std::fs::create_dir(d.join("unsaved")).unwrap();
    std::fs::write(d.join("unsaved/.charlm-train.lock"), "").unwrap();
    let unsaved = d.join("unsaved").display().to_string();
    // A PyTorch GRU wider than the host tools run (hidden 1100, f16
    // tensors: 7 MB), which the format itself would allow.
    let wide = {
        let (h, v) = (1100usize, 3usize);
        let shapes = [
            ("rnn.weight_ih_l0", vec![3 * h, v]),
            ("rnn.weight_hh_l0", vec![3 * h, h]),
            ("rnn.bias_ih_l0", vec![3 * h]),
            ("rnn.bias_hh_l0", vec![3 * h]),
            ("out.weight", vec![v, h]),
            ("out.bias", vec![v]),
        ];
        let data: Vec<(String, Vec<usize>, Vec<u8>)> = shapes
            .iter()
            .map(|(n, s)| {
                (
                    n.to_string(),
                    s.clone(),
                    vec![0u8; 2 * s.iter().product::<usize>()],
                )
            })
            .collect();
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = data
            .iter()
            .map(|(n, s, b)| {
                let view =
                    safetensors::tensor::TensorView::new(safetensors::Dtype::F16, s.clone(), b);
                (n.clone(), view.unwrap())
            })
            .collect();
        write(
            "wide.safetensors",
            &safetensors::serialize(views, None).unwrap(),
        )
    };

    let cases: Vec<(Vec<&str>, &str)> = vec![
        // generate
        (vec!["generate", "--model", "missing.clm"], "missing.clm"),
        (vec!["generate", "--model", &empty], "too short"),
        (vec!["generate", "--model", &binary], "not a charlm model"),
        (vec!["generate", "--model", &text], "not a charlm model"),
        (
            vec!["generate", "--model", &truncated],
            "truncated.clm: model file does not decode: it ends too early (truncated?)",
        ),
        (
            vec!["generate", "--model", &corrupted],
            "corrupted.clm: model file is corrupted: checksum",
        ),
        (
            vec!["generate", "--model", &model, "--temperature", "-0.5"],
            "temperature",
        ),
        (
            vec!["generate", "--model", &model, "--temperature", "inf"],
            "invalid value 'inf' for '--temperature <TEMPERATURE>': must be a finite number",
        ),
        // A value that begins with a hyphen is the flag's value, not a flag.
        (
            vec!["generate", "--model", &model, "-t", "-inf"],
            "invalid value '-inf' for '--temperature <TEMPERATURE>': must be a finite number",
        ),
        // Named as given, not as the 32-bit value it would become (inf).
        (
            vec!["generate", "--model", &model, "-t", "1e39"],
            "invalid value '1e39' for '--temperature <TEMPERATURE>': is too large",
        ),
        (
            vec!["train", "--lr", "1e39"],
            "invalid value '1e39' for '--lr <LR>': is too large",
        ),
        (
            vec!["train", "--val-frac", "-NaN"],
            "invalid value '-NaN' for '--val-frac <VAL_FRAC>': must be a finite number",
        ),
        (
            vec!["generate", "--model", &model, "--prompt", "@@@"],
            "no character",
        ),
        (
            vec!["generate", "--model", &model, "--count", "0"],
            "invalid value '0' for '--count <COUNT>': must be 1 to 4294967295",
        ),
        (
            vec!["generate", "--model", &model, "--count", "4294967296"],
            "invalid value '4294967296' for '--count <COUNT>': must be 1 to 4294967295",
        ),
        // info
        (vec!["info", "missing.clm"], "missing.clm"),
        (vec!["info", &empty], "too short"),
        (vec!["info", &binary], "not a charlm model"),
        (vec!["info", &corrupted], "checksum"),
        // A file cut short is named so by every command.
        (
            vec!["info", &truncated],
            "truncated.clm: model file does not decode: it ends too early (truncated?)",
        ),
        (
            vec!["eval", "--model", &truncated, "--corpus", &text],
            "truncated.clm: model file does not decode: it ends too early (truncated?)",
        ),
        // eval
        (
            vec!["eval", "--model", "missing.clm", "--corpus", &text],
            "missing.clm",
        ),
        (
            vec!["eval", "--model", &binary, "--corpus", &text],
            "not a charlm model",
        ),
        (
            vec!["eval", "--model", &model, "--corpus", "missing.txt"],
            "missing.txt",
        ),
        (vec!["eval", "--model", &model, "--corpus", &empty], "empty"),
        (
            vec!["eval", "--model", &model, "--corpus", &gzipped],
            "gzip-compressed: decompress it first",
        ),
        (
            vec!["train", "--corpus", &model, "--out", &new_out],
            "a charlm model or checkpoint, not a text",
        ),
        (
            vec!["eval", "--model", &model, "--field", "title"],
            "--field reads an AG News CSV given with --corpus",
        ),
        (
            vec!["eval", "--model", &model, "--corpus", &binary],
            "UTF-8",
        ),
        (
            vec![
                "eval",
                "--model",
                &model,
                "--corpus",
                &csv_no_desc,
                "--field",
                "description",
            ],
            "description",
        ),
        // train: inputs
        // (a file given relative is named as given, though the run keeps
        // its absolute path)
        (
            vec!["train", "--corpus", "missing.txt", "--out", &new_out],
            "error: cannot read missing.txt: ",
        ),
        (
            vec!["train", "--corpus", &empty, "--out", &new_out],
            "the corpus is empty",
        ),
        (
            vec!["train", "--corpus", "empty.txt", "--out", &new_out],
            "error: empty.txt: the corpus is empty",
        ),
        (
            vec![
                "train",
                "--corpus",
                &text,
                "--val",
                "empty.txt",
                "--out",
                &new_out,
            ],
            "error: empty.txt: the held-out file is empty",
        ),
        (
            vec!["train", "--corpus", &binary_up, "--out", &new_out],
            &binary_up_named,
        ),
        (
            vec!["train", "--corpus", &binary, "--out", &new_out],
            "UTF-8",
        ),
        (
            vec![
                "train", "--corpus", &huge_line, "--layout", "lines", "--out", &new_out,
            ],
            "characters",
        ),
        (
            vec![
                "train",
                "--corpus",
                &long_sample,
                "--layout",
                "lines",
                "--val-frac",
                "0",
                "--out",
                &new_out,
            ],
            "long.txt: the sample on line 5 has 10001 characters; samples are limited to 10000 (train long text as running text",
        ),
        // held-out samples have the same limit (before: batches as long as
        // the longest, hundreds of megabytes)
        (
            vec![
                "train",
                "--corpus",
                &text,
                "--layout",
                "lines",
                "--val",
                &long_sample,
                "--out",
                &new_out,
            ],
            "long.txt: the held-out sample that begins \"bbbbbbbbbbbbbbbbbbbb\" has 10001 characters; samples are limited to 10000",
        ),
        (
            vec![
                "train",
                "--corpus",
                &long_held,
                "--layout",
                "lines",
                "--val-frac",
                "0.25",
                "--out",
                &new_out,
            ],
            "the part of long-held.txt --val-frac holds out: the held-out sample that begins \"eeee",
        ),
        (
            vec![
                "train",
                "--corpus",
                &long_csv,
                "--field",
                "title",
                "--val-frac",
                "0",
                "--out",
                &new_out,
            ],
            "long.csv:title: the sample on line 4 has 10001 characters; samples are limited to 10000 (one CSV field is one sample",
        ),
        (
            vec![
                "train",
                "--corpus",
                &csv_no_desc,
                "--field",
                "description",
                "--out",
                &new_out,
            ],
            "description",
        ),
        (
            vec![
                "train", "--corpus", &bad_csv, "--field", "title", "--out", &new_out,
            ],
            "bad.csv",
        ),
        (
            vec![
                "train",
                "--corpus",
                &text,
                "--val",
                "missing.txt",
                "--out",
                &new_out,
            ],
            "missing.txt",
        ),
        // train: out-of-range options
        (
            vec![
                "train",
                "--corpus",
                &text,
                "--threads",
                "0",
                "--out",
                &new_out,
            ],
            "--threads 0: must be 1 to 1024",
        ),
        (
            vec!["bench", "train", "--threads", "1025", "--seconds", "0.1"],
            "--threads 1025: must be 1 to 1024",
        ),
        (
            vec![
                "train", "--corpus", &text, "--hidden", "0", "--out", &new_out,
            ],
            "'--hidden <HIDDEN>': must be 1 to 1024",
        ),
        (
            vec![
                "train", "--corpus", &text, "--hidden", "70000", "--out", &new_out,
            ],
            "'--hidden <HIDDEN>': must be 1 to 1024",
        ),
        (
            vec![
                "train", "--corpus", &text, "--layers", "5", "--out", &new_out,
            ],
            "'--layers <LAYERS>': must be 1 to 4",
        ),
        (
            vec![
                "train", "--corpus", &text, "--batch", "0", "--out", &new_out,
            ],
            "--batch 0: must be 1 to 4096",
        ),
        (
            vec![
                "train",
                "--corpus",
                &text,
                "--seq-len",
                "0",
                "--out",
                &new_out,
            ],
            "--seq-len",
        ),
        (
            vec![
                "train",
                "--corpus",
                &text,
                "--val-frac",
                "2",
                "--out",
                &new_out,
            ],
            "--val-frac",
        ),
        (
            vec!["train", "--corpus", &text, "--lr", "-1", "--out", &new_out],
            "--lr",
        ),
        (
            vec![
                "train", "--corpus", &text, "--cell", "rnn", "--out", &new_out,
            ],
            "rnn",
        ),
        (
            vec![
                "train",
                "--corpus",
                &text,
                "--optimizer",
                "sgd",
                "--out",
                &new_out,
            ],
            "sgd",
        ),
        // train: flags the rest of the command line makes meaningless
        (
            vec![
                "train",
                "--corpus",
                &csv_no_desc,
                "--field",
                "title",
                "--layout",
                "running",
                "--out",
                &new_out,
            ],
            "--layout running does not apply",
        ),
        (
            vec![
                "train",
                "--corpus",
                &text,
                "--layout",
                "lines",
                "--seq-len",
                "50",
                "--out",
                &new_out,
            ],
            "--seq-len cuts running text",
        ),
        (
            vec![
                "train",
                "--corpus",
                &text,
                "--dropout",
                "0.2",
                "--out",
                &new_out,
            ],
            "a 1-layer model has none",
        ),
        (
            vec![
                "train",
                "--corpus",
                &text,
                "--checkpoint-every",
                "0",
                "--out",
                &new_out,
            ],
            "--checkpoint-every",
        ),
        (
            vec![
                "eval",
                "--model",
                &model,
                "--corpus",
                &csv_no_desc,
                "--field",
                "title",
                "--layout",
                "running",
            ],
            "--layout running does not apply",
        ),
        // train: run folders
        (
            vec!["train", "--corpus", &text, "--out", &run_s],
            "already holds a run (checkpoint.bin)",
        ),
        (
            vec!["train", "--resume", &run_s, "--hidden", "16"],
            "--hidden differs from the run's",
        ),
        (
            vec!["train", "--resume", &unsaved],
            "not a run folder (it holds no checkpoint.bin); the run there ended before its first checkpoint: start it again with --out",
        ),
        // A run folder that is not there is named itself.
        (
            vec!["train", "--resume", "missing-run"],
            "cannot read missing-run: No such file",
        ),
        (
            vec!["export", "missing.clm", "--weights", "i8"],
            "cannot read missing.clm: No such file",
        ),
        (
            vec!["train", "--corpus", &text, "--out", &notes],
            "holds metrics.csv, which a run would write over",
        ),
        // a symbolic link whose target is gone is still something there
        (
            vec!["export", &model, "--weights", "i8", "--out", &dangling],
            "dangling.clm exists (--force replaces it)",
        ),
        // an i8 model asked for as f16 (before, silently written as i8)
        (
            vec![
                "export",
                &model_i8,
                "--weights",
                "f16",
                "--c-source",
                &c_out,
            ],
            "an i8 model cannot become f16 again",
        ),
        (
            vec![
                "export",
                &model_i8,
                "--weights",
                "f16",
                "--safetensors",
                &c_out,
            ],
            "an i8 model cannot become f16 again",
        ),
        (
            vec!["export", &model_i8],
            "model-i8.clm is an i8 model already: give --c-source FILE.c or --safetensors FILE",
        ),
        (
            vec!["export", &model_i8, "--weights", "f16"],
            "model-i8.clm is an i8 model: an i8 model cannot become f16 again",
        ),
        // --c-name without --c-source (clap's `requires` lets it through
        // beside --out and --safetensors)
        (
            vec![
                "export",
                &model,
                "--weights",
                "i8",
                "--c-name",
                "m",
                "-o",
                &dangling,
            ],
            "--c-name names the C object of --c-source",
        ),
        (
            vec!["export", &model, "--c-name", "m", "--safetensors", &st],
            "--c-name names the C object of --c-source",
        ),
        // neither file of the pair is written when one cannot be
        (
            vec!["export", &model, "--safetensors", &st, "--force"],
            "st.vocab.json exists and is not a file",
        ),
        // a run's own checkpoint as the output, even with --force
        (
            vec!["export", &run_s, "--out", &checkpoint, "--force"],
            "the output would replace the input",
        ),
        (
            vec!["export", &run_s, "--c-source", &checkpoint, "--force"],
            "the output would replace the input",
        ),
        (
            vec!["export", &run_s, "--safetensors", &checkpoint, "--force"],
            "the output would replace the input",
        ),
        // another run's checkpoint as the output, even with --force
        (
            vec![
                "export",
                &model,
                "--weights",
                "i8",
                "--force",
                "--out",
                &checkpoint,
            ],
            "is a training checkpoint, which --force does not replace (its run could not resume)",
        ),
        // a checkpoint where a model belongs
        (
            vec!["info", &checkpoint],
            "is a training checkpoint, not a model",
        ),
        (
            vec!["generate", "--model", &checkpoint],
            "is a training checkpoint, not a model",
        ),
        (
            vec![
                "export",
                &checkpoint,
                "--weights",
                "f16",
                "--force",
                "--out",
                &checkpoint,
            ],
            "the output would replace the input",
        ),
        (
            vec![
                "train",
                "--corpus",
                &text,
                "--init",
                &checkpoint,
                "--out",
                &new_out,
            ],
            "is a training checkpoint, not a model",
        ),
        (
            vec![
                "train",
                "--corpus",
                &text,
                "--init",
                "missing.clm",
                "--out",
                &new_out,
            ],
            "missing.clm",
        ),
        (
            vec![
                "train", "--corpus", &text, "--init", &corrupted, "--out", &new_out,
            ],
            "corrupted.clm: not a valid model: model file is corrupted",
        ),
        (
            vec![
                "train", "--corpus", &text, "--init", &model, "--layers", "3", "--out", &new_out,
            ],
            "--layers: the --init model",
        ),
        // import (the weights' default output, WEIGHTS.clm, is never created)
        (
            vec!["import", "missing.safetensors", "--vocab", &vocab_json],
            "missing.safetensors",
        ),
        (
            vec!["import", &empty, "--vocab", &vocab_json],
            "not a safetensors file",
        ),
        (
            vec!["import", &binary, "--vocab", &vocab_json],
            "not a safetensors file",
        ),
        (
            vec!["import", &model, "--vocab", &vocab_json],
            "not a safetensors file",
        ),
        (vec!["import", &keras, "--vocab", &binary], "not UTF-8"),
        (
            vec!["import", &keras, "--vocab", &empty],
            "JSON list of strings",
        ),
        (
            vec!["import", &keras, "--vocab", &huge_line],
            "JSON list of strings",
        ),
        (
            vec!["import", &keras, "--vocab", &vocab_json],
            "the model has 38 ids and the vocabulary lists 3",
        ),
        (vec!["import", &keras], "--vocab"),
        // An output that is an input, even with --force.
        (
            vec!["import", &keras_clm, "--vocab", &keras_vocab, "--force"],
            "weights.clm: the output would replace the input",
        ),
        (
            vec![
                "import",
                &keras,
                "--vocab",
                &keras_vocab,
                "--out",
                &keras_vocab,
                "--force",
            ],
            "keras.vocab.json: the output would replace the input",
        ),
        (
            vec![
                "export",
                &model,
                "--weights",
                "i8",
                "--out",
                &model,
                "--force",
            ],
            "the output would replace the input",
        ),
        (
            vec!["import", &wide, "--vocab", &vocab_json],
            "hidden size 1100 exceeds capacity 1024",
        ),
        // bench
        (vec!["bench", "train", "--frobnicate"], "frobnicate"),
        (
            vec!["bench", "train", "--seconds", "-1"],
            "--seconds -1.0: must be above 0 and at most 3600",
        ),
        (
            vec!["bench", "parity", "--device", "cpu", "--batch", "1"],
            "--batch 1: must be 2 to 256 (the checks need padded batches",
        ),
        (
            vec!["bench", "parity", "--device", "cpu", "--hidden", "0"],
            "--hidden 0: must be 1 to 1024",
        ),
        (
            vec!["bench", "parity", "--device", "cpu", "--steps", "0"],
            "--steps 0: must be 1 to 100000",
        ),
        // the command line itself
        (vec!["frobnicate"], "frobnicate"),
    ];

    let before = snapshot(d);
    for (args, needle) in &cases {
        let o = Command::new(BIN)
            .args(args)
            .current_dir(d)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(
            o.status.code(),
            Some(2),
            "charlm {args:?}: status {:?}, stderr {stderr}",
            o.status
        );
        assert_eq!(
            stderr.lines().count(),
            1,
            "charlm {args:?}: not one line:\n{stderr}"
        );
        assert!(
            stderr.contains(needle),
            "charlm {args:?}: {stderr:?} does not name {needle:?}"
        );
        assert!(
            !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
            "{stderr}"
        );
        assert_eq!(
            snapshot(d),
            before,
            "charlm {args:?} created or changed a file"
        );
    }
}

#[test]
fn a_standard_output_that_cannot_be_written_is_one_line_and_status_2() {
    // /dev/full fails every write with ENOSPC. `println!` would panic
    // (status 101, a backtrace) and stop a training run midway; charlm
    // finishes the command's work, then says so in one line.
    if !Path::new("/dev/full").exists() {
        eprintln!("no /dev/full here: not checked");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let model = root.join("tests/fixtures/gru1.clm");
    let model = model.to_str().unwrap();
    let keras = root.join("tests/fixtures/import/keras-lstm.safetensors");
    let keras_vocab = root.join("tests/fixtures/import/keras-lstm.vocab.json");
    let text = d.join("text.txt");
    std::fs::write(
        &text,
        "To be, or not to be: that is the question.\n".repeat(100),
    )
    .unwrap();
    let text = text.to_str().unwrap();
    let run = d.join("run");
    let imported = d.join("imported.clm");
    let exported = d.join("gru1-i8.clm");
    let cases: Vec<Vec<&str>> = vec![
        vec!["--help"],
        vec!["train", "--help"],
        vec!["--version"],
        vec!["info", model],
        vec!["eval", "--model", model, "--corpus", text],
        vec![
            "export",
            model,
            "--weights",
            "i8",
            "--out",
            exported.to_str().unwrap(),
        ],
        vec![
            "import",
            keras.to_str().unwrap(),
            "--vocab",
            keras_vocab.to_str().unwrap(),
            "--out",
            imported.to_str().unwrap(),
        ],
        vec![
            "bench", "parity", "--device", "cpu", "--steps", "1", "--hidden", "8",
        ],
        vec![
            "train",
            "--corpus",
            text,
            "--out",
            run.to_str().unwrap(),
            "--hidden",
            "8",
            "--batch",
            "2",
            "--seq-len",
            "16",
            "--max-steps",
            "3",
            "--device",
            "cpu",
        ],
    ];
    for args in &cases {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let o = Command::new(BIN).args(args).stdout(full).output().unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(
            o.status.code(),
            Some(2),
            "charlm {args:?}: {:?}\n{stderr}",
            o.status
        );
        let last = stderr.lines().last().unwrap_or("");
        assert!(
            last.starts_with("charlm: error: cannot write standard output"),
            "charlm {args:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "charlm {args:?}: {stderr}");
        // A training run says that only its output was lost.
        assert_eq!(
            last.ends_with("(the run itself finished: its folder holds model.clm)"),
            args[0] == "train" && args[1] != "--help",
            "charlm {args:?}: {stderr}"
        );
    }
    // The work itself was done.
    for f in ["model.clm", "checkpoint.bin", "metrics.csv"] {
        assert!(run.join(f).is_file(), "the run has no {f}");
    }
    assert!(imported.is_file() && exported.is_file());
}

#[test]
fn charlm_alone_prints_its_help_and_status_2() {
    for args in [&[][..], &["bench"][..]] {
        let o = Command::new(BIN).args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "charlm {args:?}: {stderr}");
        assert!(
            stderr.contains("Usage: charlm"),
            "charlm {args:?}: {stderr}"
        );
        assert!(stderr.contains("Commands:"), "charlm {args:?}: {stderr}");
    }
}

/// Inputs that never end (`/dev/zero`, `/dev/urandom`) or are far too large
/// are refused from their first bytes or their size, in one line: before,
/// each was read whole first (a device until memory ran out). The runs are
/// held to 4 GiB of address space, so that a reader that reads on fails
/// here rather than taking the machine's memory.
#[cfg(target_os = "linux")]
#[test]
fn endless_or_huge_inputs_are_refused_without_reading_them() {
    use std::os::unix::process::CommandExt;
    let tmp = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let fixture = |p: &str| root.join(p).to_str().unwrap().to_string();
    let model = fixture("tests/fixtures/gru1.clm");
    let keras = fixture("tests/fixtures/import/keras-lstm.safetensors");
    let vocab = fixture("tests/fixtures/import/keras-lstm.vocab.json");
    // One byte more than a model file can hold, sparse, beginning as one.
    let huge = tmp.path().join("huge.clm");
    let f = std::fs::File::create(&huge).unwrap();
    std::io::Write::write_all(&mut &f, &charlm_runtime::format::MAGIC).unwrap();
    f.set_len(charlm_trainer::error::MAX_MODEL_FILE + 1)
        .unwrap();
    let huge = huge.to_str().unwrap().to_string();
    let out = tmp.path().join("out").to_str().unwrap().to_string();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["info", "/dev/zero"], "/dev/zero: not a charlm model"),
        (
            vec!["generate", "--model", "/dev/urandom"],
            "/dev/urandom: not a charlm model",
        ),
        (vec!["info", &huge], "the most a model file can be"),
        (
            vec!["export", &huge, "--weights", "i8"],
            "the most a model file can be",
        ),
        (
            vec!["train", "--corpus", "/dev/zero", "--out", &out],
            "/dev/zero: a NUL byte at offset 0",
        ),
        (
            vec!["eval", "--model", &model, "--corpus", "/dev/zero"],
            "/dev/zero: a NUL byte at offset 0",
        ),
        (
            vec!["import", "/dev/zero", "--vocab", &vocab, "--out", &out],
            "/dev/zero: not a safetensors file",
        ),
        (
            vec!["import", &keras, "--vocab", "/dev/zero", "--out", &out],
            "the most a vocabulary file can be",
        ),
    ];
    for (args, needle) in cases {
        let mut cmd = Command::new(BIN);
        cmd.args(&args);
        // SAFETY: setrlimit(2) between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                let limit = libc::rlimit {
                    rlim_cur: 4 << 30,
                    rlim_max: 4 << 30,
                };
                libc::setrlimit(libc::RLIMIT_AS, &limit);
                Ok(())
            });
        }
        let o = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(
            o.status.code(),
            Some(2),
            "charlm {args:?}: {:?} {stderr}",
            o.status
        );
        assert_eq!(stderr.lines().count(), 1, "charlm {args:?}: {stderr}");
        assert!(
            stderr.contains(needle),
            "charlm {args:?}: {stderr:?} does not name {needle:?}"
        );
    }
    assert!(!Path::new(&out).exists());
}
