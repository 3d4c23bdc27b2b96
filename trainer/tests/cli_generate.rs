//! `charlm generate` and `charlm info` as a user runs them: the golden texts
//! byte for byte through the binary, and bad input -> one line, status 2.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn charlm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_charlm"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("run charlm")
}

/// Asserts a clean refusal: status 2, exactly one stderr line containing
/// `needle`, no panic.
fn assert_refused(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "status for {needle:?}; stderr: {stderr}"
    );
    assert_eq!(
        stderr.lines().count(),
        1,
        "expected one line, got: {stderr}"
    );
    assert!(
        stderr.contains(needle),
        "stderr {stderr:?} does not mention {needle:?}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn binary_reproduces_every_golden_file() {
    let cases = std::fs::read_to_string(root().join("tests/golden/cases.tsv"))
        .expect("tests/golden/cases.tsv");
    let mut n = 0;
    for line in cases.lines() {
        let mut fields = line.split('\t');
        let file = fields.next().unwrap();
        let args: Vec<&str> = fields.collect();
        let out = charlm(&args);
        assert!(
            out.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let expected = std::fs::read(root().join("tests/golden").join(file)).unwrap();
        assert!(
            out.stdout == expected,
            "charlm {} differs from tests/golden/{file}",
            args.join(" ")
        );
        n += 1;
    }
    // 6 models (3 f16, their 3 i8 versions) at 4 temperatures.
    assert_eq!(n, 24, "expected 24 golden cases");
}

#[test]
fn generate_refuses_bad_input_with_one_line() {
    let dir = std::env::temp_dir().join(format!("charlm-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = std::fs::read(root().join("tests/fixtures/lstm2.clm")).unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p.display().to_string()
    };
    let truncated = write("truncated.clm", &good[..good.len() / 2]);
    let mut flipped = good.clone();
    flipped[good.len() / 3] ^= 0x04;
    let corrupted = write("corrupted.clm", &flipped);
    let text = write("text.clm", b"this is not a model at all");
    let empty = write("empty.clm", b"");
    let model = "tests/fixtures/lstm2.clm";

    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["generate", "--model", "no/such/file.clm"],
            "no/such/file.clm",
        ),
        (
            vec!["generate", "--model", &truncated],
            "truncated.clm: model file does not decode: it ends too early (truncated?)",
        ),
        (
            vec!["generate", "--model", &corrupted],
            "corrupted.clm: model file is corrupted: checksum",
        ),
        (vec!["generate", "--model", &text], "not a charlm model"),
        (vec!["generate", "--model", &empty], "too short"),
        (
            vec!["generate", "--model", model, "--temperature", "-1"],
            "temperature",
        ),
        (
            vec!["generate", "--model", model, "--temperature", "NaN"],
            "temperature",
        ),
        // Negative, but so small that f32 rounds it to -0 (greedy).
        (
            vec!["generate", "--model", model, "-t", "-1e-46"],
            "invalid value '-1e-46' for '--temperature <TEMPERATURE>': is too small (it rounds to 0)",
        ),
        (
            vec!["generate", "--model", model, "-t", "-1e-45"],
            "--temperature -1e-45: temperature must be 0 (greedy) or a finite number above 0",
        ),
        (
            vec!["generate", "--model", model, "--temperature", "warm"],
            "temperature",
        ),
        (
            vec!["generate", "--model", model, "-t", "1", "--top-p", "0"],
            "--top-p 0: top-p must be above 0 and at most 1",
        ),
        (
            vec!["generate", "--model", model, "-t", "1", "--top-p", "1.5"],
            "--top-p",
        ),
        (
            vec!["generate", "--model", model, "-t", "1", "--top-k", "-2"],
            "--top-k",
        ),
        (
            vec!["generate", "--model", model, "-t", "1", "--top-k", "70000"],
            "--top-k",
        ),
        (
            vec!["generate", "--model", model, "--prompt", "###"],
            "no character",
        ),
        (vec!["generate", "--model", model, "--count", "0"], "count"),
        (
            vec!["generate", "--model", model, "--stop", "\\q"],
            "unknown escape \\q",
        ),
        (
            vec!["generate", "--model", model, "--stop", ""],
            "empty stop string",
        ),
        (
            vec!["generate", "--model", model, "--max-chars", "-3"],
            "max-chars",
        ),
        (vec!["generate"], "--model"),
        (vec!["info", &corrupted], "checksum"),
        (vec!["info", "no/such/file.clm"], "no/such/file.clm"),
        (vec!["info", &text], "not a charlm model"),
        (vec!["frobnicate"], "frobnicate"),
    ];
    for (args, needle) in cases {
        let out = charlm(&args);
        assert_refused(&out, needle);
        if args[0] == "generate" {
            assert!(
                out.stdout.is_empty(),
                "charlm {args:?} printed text before failing"
            );
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_model_too_large_for_the_host_workspace_is_refused() {
    // Hidden 1100 exceeds the host workspace (1024) but is a valid file.
    use charlm_runtime::format::ModelFile;
    let zeros = vec![0u8; 3 * 1100 * 1100 * 2];
    let good = std::fs::read(root().join("tests/fixtures/gru1.clm")).unwrap();
    let file = ModelFile::decode(&good).unwrap();
    let mut body = file.body.clone();
    let h = 1100u32;
    let v = body.arch.vocab as u32;
    body.arch.hidden = h as u16;
    body.layers[0].w_ih.shape = [v, 3 * h];
    body.layers[0].w_ih.data = &zeros[..(v * 3 * h * 2) as usize];
    body.layers[0].w_hh.shape = [3 * h, h];
    body.layers[0].w_hh.data = &zeros;
    body.layers[0].b_ih.shape = [3 * h, 1];
    body.layers[0].b_ih.data = &zeros[..(3 * h * 2) as usize];
    body.layers[0].b_hh = body.layers[0].b_ih;
    body.out_w.shape = [v, h];
    body.out_w.data = &zeros[..(v * h * 2) as usize];
    let big = ModelFile {
        header: file.header,
        body,
    }
    .encode()
    .unwrap();
    let path = std::env::temp_dir().join(format!("charlm-big-{}.clm", std::process::id()));
    std::fs::write(&path, big).unwrap();
    let out = charlm(&["generate", "--model", path.to_str().unwrap()]);
    assert_refused(&out, "too large");
    std::fs::remove_file(path).ok();
}

#[test]
fn info_describes_a_model() {
    let out = charlm(&["info", "tests/fixtures/gru1.clm"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/gru1.clm");
    let size = std::fs::metadata(fixture).unwrap().len();
    // The state a device keeps in RAM: h, c and the new h (f32, hidden 20,
    // 1 layer) and the 36 logits, plus each layer's i16 copy of h where the
    // i8 cells are built in.
    let (f16_ram, both_ram) = (4 * ((2 + 1) * 20 + 36), 4 * ((2 + 1) * 20 + 36) + 2 * 20);
    let memory = format!(
        "flash: the file ({size} bytes); RAM: the state, {f16_ram} bytes ({both_ram} in a build with the i8 cells too)"
    );
    for needle in [
        "GRU, 1 layer, hidden 20",
        "checksum    ok",
        "36 ids",
        "€",
        "parameters",
        &memory,
    ] {
        assert!(
            text.contains(needle),
            "info output lacks {needle:?}:\n{text}"
        );
    }
}

/// A model read through a pipe (`/dev/stdin`, `<(cat m.clm)`) is read once,
/// so the commands see all of it: the same text and description as from
/// the file.
#[cfg(unix)]
#[test]
fn a_model_can_come_through_a_pipe() {
    use std::io::Write;
    let model = root().join("tests/fixtures/gru1.clm");
    let bytes = std::fs::read(&model).unwrap();
    let piped = |args: &[&str]| -> Output {
        let mut child = Command::new(env!("CARGO_BIN_EXE_charlm"))
            .args(args)
            .current_dir(root())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run charlm");
        child.stdin.take().unwrap().write_all(&bytes).unwrap();
        child.wait_with_output().unwrap()
    };
    let sampling = [
        "--prompt",
        "Über",
        "--temperature",
        "0.8",
        "--seed",
        "3",
        "--max-chars",
        "60",
    ];
    let from_file = charlm(
        &[
            &["generate", "--model", model.to_str().unwrap()][..],
            &sampling,
        ]
        .concat(),
    );
    let from_pipe = piped(&[&["generate", "--model", "/dev/stdin"][..], &sampling].concat());
    assert!(
        from_pipe.status.success(),
        "{}",
        String::from_utf8_lossy(&from_pipe.stderr)
    );
    assert!(!from_file.stdout.is_empty());
    assert_eq!(from_pipe.stdout, from_file.stdout);
    let info = piped(&["info", "/dev/stdin"]);
    assert!(
        info.status.success(),
        "{}",
        String::from_utf8_lossy(&info.stderr)
    );
    assert!(String::from_utf8_lossy(&info.stdout).contains("checksum    ok"));
}

#[test]
fn generate_warns_about_dropped_characters_but_succeeds() {
    let out = charlm(&[
        "generate",
        "--model",
        "tests/fixtures/lstm2.clm",
        "--prompt",
        "Ünder",
        "--max-chars",
        "5",
        "--count",
        "3",
    ]);
    assert!(out.status.success());
    // Once for the prompt, not once per text, naming what it lacks.
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "charlm: note: prompt \"Ünder\": the vocabulary lacks \"Ü\"; it runs as \"nder\"\n"
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("nder"));
}

/// Runs `charlm args` with its standard output closed before it writes:
/// the status and standard error.
#[cfg(unix)]
fn with_closed_stdout(args: &[&str]) -> (std::process::ExitStatus, String) {
    use std::io::Read;
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_charlm"))
        .args(args)
        .current_dir(root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run charlm");
    drop(child.stdout.take());
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("piped stderr")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    (child.wait().expect("wait for charlm"), stderr)
}

#[test]
#[cfg(unix)]
fn a_reader_that_stops_early_ends_charlm_quietly() {
    // As `charlm info M | head -3`: SIGPIPE ends the program, as it ends
    // other command-line programs; no panic, no error line.
    use std::os::unix::process::ExitStatusExt;
    let model = "tests/fixtures/gru1.clm";
    for args in [
        // More text than a pipe's buffer: the write fails whatever the timing.
        vec![
            "generate",
            "--model",
            model,
            "--temperature",
            "1",
            "--count",
            "2000",
        ],
        vec!["info", model],
    ] {
        let (status, stderr) = with_closed_stdout(&args);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(!stderr.contains("error"), "{args:?}: {stderr}");
        // `info` may have written everything before the pipe closed.
        assert!(
            status.signal() == Some(13) || (args[0] == "info" && status.success()),
            "{args:?}: {status:?} {stderr}"
        );
    }
}

#[test]
fn stop_strings_cut_each_text_where_its_generated_part_first_holds_one() {
    let model = "tests/fixtures/shakespeare-lstm128.clm";
    let run = |seed: &str, extra: &[&str]| {
        let mut args = vec![
            "generate",
            "--model",
            model,
            "--prompt",
            "ROMEO:",
            "-t",
            "0.8",
            "--seed",
            seed,
            "--max-chars",
            "400",
        ];
        args.extend(extra);
        let out = charlm(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let mut cut_somewhere = 0;
    for seed in ["1", "2", "3", "4"] {
        let full = run(seed, &[]);
        let generated = full
            .strip_prefix("ROMEO:")
            .unwrap()
            .strip_suffix('\n')
            .unwrap();
        // Where the generated part first has a blank line, and first has "the".
        let blank = generated.find("\n\n");
        let word = generated.find("the");
        let first = [blank, word].into_iter().flatten().min();
        cut_somewhere += usize::from(first.is_some());
        let expect = |end: Option<usize>| {
            format!("ROMEO:{}\n", &generated[..end.unwrap_or(generated.len())])
        };
        assert_eq!(
            run(seed, &["--stop", "\\n\\n"]),
            expect(blank),
            "seed {seed}"
        );
        assert_eq!(
            run(seed, &["--stop", "\\n\\n", "--stop", "the"]),
            expect(first),
            "seed {seed}"
        );
        // A stop string the text never holds changes nothing.
        assert_eq!(run(seed, &["--stop", "\\t"]), full, "seed {seed}");
    }
    assert!(
        cut_somewhere > 0,
        "no text held a stop string: the test shows nothing"
    );
}

#[test]
fn every_prompt_is_checked_before_any_text_is_written() {
    // "Today" is readable, "ZZZ" is not: nothing is written, not the first
    // text and then an error.
    let out = charlm(&[
        "generate",
        "--model",
        "tests/fixtures/lstm2.clm",
        "-p",
        "today",
        "-p",
        "ZZZ",
        "--max-chars",
        "5",
    ]);
    assert_refused(
        &out,
        "prompt \"ZZZ\" has no character in the model's vocabulary",
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
}

#[test]
fn without_prompts_a_model_of_another_script_starts_from_its_first_character() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = tmp.path().join("digits.txt");
    std::fs::write(&corpus, "3141592653\n2718281828\n1414213562\n".repeat(30)).unwrap();
    let run = tmp.path().join("run");
    let trained = charlm(&[
        "train",
        "--corpus",
        corpus.to_str().unwrap(),
        "--layout",
        "lines",
        "--hidden",
        "8",
        "--max-steps",
        "2",
        "--quiet",
        "--out",
        run.to_str().unwrap(),
    ]);
    assert!(
        trained.status.success(),
        "{}",
        String::from_utf8_lossy(&trained.stderr)
    );
    let model = run.join("model.clm");
    let out = charlm(&[
        "generate",
        "--model",
        model.to_str().unwrap(),
        "--max-chars",
        "3",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("the default prompts have no character of this model"),
        "{stderr}"
    );
    let first = charlm(&["info", model.to_str().unwrap()]);
    let symbols = String::from_utf8_lossy(&first.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("symbols     \""))
        .and_then(|s| s.chars().next())
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with(symbols),
        "{stdout:?} does not start with {symbols:?}"
    );
}

#[test]
fn json_lines_hold_each_text_and_the_seed_that_reproduces_it() {
    let model = "tests/fixtures/shakespeare-lstm128.clm";
    let common = ["--temperature", "0.9", "--max-chars", "80"];
    let mut args = vec!["generate", "--model", model, "-p", "ROMEO:", "-p", "To be"];
    args.extend(["--count", "2", "--seed", "5", "--json"]);
    args.extend(common);
    let out = charlm(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    let mut newlines = 0;
    for (k, line) in lines.iter().enumerate() {
        let (prompt, seed) = (
            line["prompt"].as_str().unwrap(),
            line["seed"].as_u64().unwrap(),
        );
        assert_eq!((prompt, seed), (["ROMEO:", "To be"][k / 2], 5 + k as u64));
        let generated = line["generated"].as_str().unwrap();
        newlines += generated.matches('\n').count();
        let seed = seed.to_string();
        let mut one = vec!["generate", "--model", model, "-p", prompt, "--seed", &seed];
        one.extend(common);
        let plain = charlm(&one);
        assert_eq!(
            String::from_utf8(plain.stdout).unwrap(),
            format!("{prompt}{generated}\n")
        );
    }
    assert!(
        newlines > 0,
        "no text held a line break: the test shows little"
    );
}
