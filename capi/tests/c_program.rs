//! The C interface from C: `include/charlm.h` is what cbindgen makes of
//! `src/lib.rs`, and `c/generate.c`, compiled with the system's C compiler
//! against `libcharlm.a`, prints exactly what `charlm generate` prints (the
//! committed golden text of the firmware's cases, and the host generator on
//! every test model, f16 and i8, greedy and sampled), and reports errors.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use charlm_runtime::{Model, Sampler};
use charlm_trainer::sample::{generate, host_workspace};

fn manifest() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> PathBuf {
    manifest().join("../tests/fixtures").join(name)
}

#[test]
fn header_is_current() {
    let config = cbindgen::Config::from_file(manifest().join("cbindgen.toml")).unwrap();
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(manifest())
        .with_config(config)
        .generate()
        .expect("cbindgen reads src/lib.rs")
        .write(&mut generated);
    let path = manifest().join("include/charlm.h");
    if std::env::var_os("CHARLM_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "capi/include/charlm.h is out of date: rerun with CHARLM_BLESS=1 and review the diff"
    );
}

/// The static library, built once here as a C project would build it
/// (`cargo build --release`, with the i8 cells for the i8 models), in a
/// target folder of its own: a test run builds the crate's rlib, not its
/// static library.
fn library() -> &'static Path {
    static LIBRARY: OnceLock<PathBuf> = OnceLock::new();
    LIBRARY.get_or_init(|| {
        // target/<profile>/deps/c_program-<hash> -> target/capi-c
        let exe = std::env::current_exe().unwrap();
        let target = exe.ancestors().nth(3).unwrap().join("capi-c");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let o = Command::new(&cargo)
            .args(["build", "--quiet", "--release", "-p", "charlm-c"])
            .args(["--features", "int8", "--target-dir"])
            .arg(&target)
            .current_dir(manifest())
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "cargo build -p charlm-c failed:\n{}",
            String::from_utf8_lossy(&o.stderr)
        );
        target.join("release/libcharlm.a")
    })
}

/// `sources` compiled with the system's C compiler, strictly, and linked
/// against the library into `out`.
fn compile(sources: &[PathBuf], out: &Path) {
    let flags = ["-std=c99", "-pedantic", "-O2"];
    build(("CC", "cc"), &flags, sources, Made::Program, out);
}

/// What [`build`] makes.
enum Made {
    /// An object file (`-c`).
    Object,
    /// A program linked against the library.
    Program,
}

/// Compiles `sources` into `out` with the header on the include path,
/// warnings as errors and `flags`, by the compiler `$VAR` (else
/// `default`).
fn build(
    (var, default): (&str, &str),
    flags: &[&str],
    sources: &[PathBuf],
    what: Made,
    out: &Path,
) {
    let compiler = std::env::var(var).unwrap_or_else(|_| default.into());
    let mut cmd = Command::new(&compiler);
    cmd.args(flags)
        .args(["-Wall", "-Wextra", "-Werror", "-I"])
        .arg(manifest().join("include"))
        .args(sources);
    match what {
        Made::Object => cmd.arg("-c"),
        // what `rustc --print native-static-libs` lists for a hosted build
        Made::Program => cmd.arg(library()).args([
            "-lgcc_s",
            "-lutil",
            "-lrt",
            "-lpthread",
            "-lm",
            "-ldl",
            "-lc",
        ]),
    };
    let o = cmd
        .arg("-o")
        .arg(out)
        .output()
        .unwrap_or_else(|e| panic!("cannot run the compiler {compiler:?}: {e}"));
    assert!(
        o.status.success(),
        "{compiler} {flags:?} {sources:?}:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// `c/generate.c`, compiled once.
fn program() -> &'static Path {
    static PROGRAM: OnceLock<PathBuf> = OnceLock::new();
    PROGRAM.get_or_init(|| {
        let out = library().with_file_name("charlm-c-generate");
        compile(&[manifest().join("c/generate.c")], &out);
        out
    })
}

fn run(args: &[&str]) -> Output {
    Command::new(program()).args(args).output().unwrap()
}

fn stdout_of(args: &[&str]) -> String {
    let o = run(args);
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn the_firmware_cases_give_the_golden_text() {
    let model = fixture("shakespeare-lstm128.clm");
    let cases = std::fs::read_to_string(manifest().join("../firmware-demo/cases.tsv")).unwrap();
    let mut printed = String::new();
    for line in cases
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let f: Vec<&str> = line.split('\t').collect();
        let mut args = vec![model.to_str().unwrap(), f[0], f[1], f[2], f[3]];
        if f.len() == 6 {
            args.extend([f[4], f[5]]);
        }
        printed.push_str(&stdout_of(&args));
    }
    let golden =
        std::fs::read_to_string(manifest().join("../firmware-demo/golden/shakespeare-lstm128.txt"))
            .unwrap();
    assert_eq!(printed, golden);
}

#[test]
fn every_test_model_gives_the_host_text() {
    let mut ws = host_workspace();
    let mut compared = 0;
    for name in [
        "gru1.clm",
        "gru1-i8.clm",
        "lstm2.clm",
        "lstm2-i8.clm",
        "shakespeare-lstm128-i8.clm",
    ] {
        let path = fixture(name);
        let bytes = std::fs::read(&path).unwrap();
        let model = Model::from_bytes(&bytes).unwrap();
        // Prompts from the model's own symbols, one with a character it lacks.
        let symbols: Vec<char> = (1..model.vocab().eos())
            .filter_map(|id| model.vocab().symbol(id))
            .collect();
        let prompts = [
            symbols.iter().take(3).collect::<String>(),
            format!("{}\u{2603}{}", symbols[symbols.len() - 1], symbols[0]),
        ];
        let samplers: [(&str, &str, &str); 4] = [
            ("0", "0", "1"),
            ("0.8", "0", "1"),
            ("1.3", "5", "1"),
            ("1", "0", "0.6"),
        ];
        for prompt in &prompts {
            for (seed, (t, k, p)) in samplers.iter().enumerate() {
                let sampler =
                    Sampler::new(t.parse().unwrap(), k.parse().unwrap(), p.parse().unwrap())
                        .unwrap();
                let want = generate(&model, &mut ws, prompt, sampler, seed as u64, 60).unwrap();
                let seed = seed.to_string();
                let got = stdout_of(&[path.to_str().unwrap(), prompt, t, &seed, "60", k, p]);
                assert_eq!(
                    got,
                    format!("{}\n", want.text()),
                    "{name}, prompt {prompt:?}, T {t}, k {k}, p {p}"
                );
                compared += 1;
            }
        }
    }
    assert_eq!(compared, 40);
}

#[test]
fn the_c_program_describes_a_model() {
    let out = stdout_of(&["--info", fixture("lstm2.clm").to_str().unwrap()]);
    let model_bytes = std::fs::read(fixture("lstm2.clm")).unwrap();
    let model = Model::from_bytes(&model_bytes).unwrap();
    let a = model.arch();
    let ws = charlm_runtime::cell::workspace_bytes(
        a.hidden as usize,
        a.layers as usize,
        a.vocab as usize,
        // an f16 model: a build with f16 alone
        false,
    );
    assert_eq!(
        out,
        format!(
            "LSTM 2 layer(s) hidden {} vocab {} f16, {} MAC/char, workspace {ws} bytes; fits 4x256/256: yes\n",
            a.hidden,
            a.vocab,
            a.macs_per_char()
        )
    );
}

#[test]
fn errors_are_reported_in_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let good = std::fs::read(fixture("gru1.clm")).unwrap();
    let mut damaged = good.clone();
    let mid = damaged.len() / 2;
    damaged[mid] ^= 0x40;
    let damaged_path = tmp.path().join("damaged.clm");
    std::fs::write(&damaged_path, damaged).unwrap();
    let gru = fixture("gru1.clm");
    let gru = gru.to_str().unwrap();
    let cases: [(Vec<&str>, &str); 12] = [
        (
            vec![damaged_path.to_str().unwrap(), "ab", "0", "1", "10"],
            "not a usable charlm model",
        ),
        (
            vec![gru, "\u{2603}\u{2603}", "0", "1", "10"],
            "has no character the model knows",
        ),
        (
            vec![gru, "ein", "-1", "1", "10"],
            "a parameter is out of range",
        ),
        (
            vec![gru, "ein", "0.8", "1", "10", "0", "1.5"],
            "a parameter is out of range",
        ),
        // Arguments the command line refuses, refused here too (before:
        // read as 0, or wrapped around).
        (
            vec![gru, "ein", "warm", "1", "10"],
            "TEMPERATURE warm: must be a finite number",
        ),
        (
            vec![gru, "ein", "0.8", "-1", "10"],
            "SEED -1: must be a whole number",
        ),
        (
            vec![gru, "ein", "0.8", "1", "4294967296"],
            "MAX_CHARS 4294967296: must be a whole number from 0 to 2147483647",
        ),
        (
            vec![gru, "ein", "0.8", "1", "10", "70000", "1"],
            "TOP_K 70000: must be a whole number from 0 to 65535",
        ),
        (
            vec![gru, "ein", "0", "1", "10", "0", "1.5"],
            "TOP_P 1.5: must be above 0 and at most 1",
        ),
        (
            vec![gru, "ein", "0", "1", "10", "0", "nan"],
            "TOP_P nan: must be a finite number",
        ),
        (
            vec![gru, "ein", "0x1p-1", "1", "10"],
            "TEMPERATURE 0x1p-1: must be a finite number",
        ),
        (
            vec![gru, "ein", " 0.8", "1", "10"],
            "TEMPERATURE  0.8: must be a finite number",
        ),
    ];
    for (args, needle) in cases {
        let o = run(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            o.stdout.is_empty(),
            "{args:?}: printed {:?}",
            String::from_utf8_lossy(&o.stdout)
        );
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.starts_with("charlm: ") && err.contains(needle),
            "{args:?}: {err}"
        );
    }
    // A leading '+' reads as the command line reads it.
    assert_eq!(
        stdout_of(&[gru, "ein", "0.8", "+5", "+20", "+3", "0.9"]),
        stdout_of(&[gru, "ein", "0.8", "5", "20", "3", "0.9"])
    );
    // A standard output that cannot be written.
    #[cfg(target_os = "linux")]
    {
        let o = Command::new(program())
            .args([gru, "ein", "0", "1", "10"])
            .stdout(std::fs::File::create("/dev/full").unwrap())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(
            err.starts_with("charlm: cannot write standard output") && err.lines().count() == 1,
            "{err}"
        );
    }
}

#[test]
fn a_model_exported_as_c_source_runs_from_its_array_at_the_best_offset() {
    let tmp = tempfile::tempdir().unwrap();
    for name in ["shakespeare-lstm128.clm", "gru1-i8.clm", "lstm2.clm"] {
        let bytes = std::fs::read(fixture(name)).unwrap();
        let source = charlm_trainer::export::c_source(&bytes, name, "charlm_model").unwrap();
        let model_c = tmp.path().join(format!("{name}.c"));
        std::fs::write(&model_c, source).unwrap();
        // As C, and as C++ (a sketch may include it), linked to a C main
        // that declares the two names extern.
        let exe = tmp.path().join(format!("{name}.exe"));
        compile(&[manifest().join("c/embedded.c"), model_c.clone()], &exe);
        let model_o = tmp.path().join(format!("{name}.o"));
        let cxx = ["-x", "c++", "-std=c++11", "-pedantic"];
        build(("CXX", "c++"), &cxx, &[model_c], Made::Object, &model_o);
        let exe_cxx = tmp.path().join(format!("{name}-cxx.exe"));
        compile(&[manifest().join("c/embedded.c"), model_o], &exe_cxx);
        for exe in [exe, exe_cxx] {
            let run = |args: &[&str]| {
                let o = Command::new(&exe).args(args).output().unwrap();
                assert!(
                    o.status.success(),
                    "{name} {args:?}: {}",
                    String::from_utf8_lossy(&o.stderr)
                );
                String::from_utf8(o.stdout).unwrap()
            };
            // The array is word-aligned, and the file starts where the most
            // rows land on words.
            let file = charlm_runtime::format::ModelFile::decode(&bytes).unwrap();
            let best = charlm_runtime::format::row_alignment(&bytes, &file);
            assert_eq!(run(&["--offset"]), format!("{}\n", best.pad), "{name}");
            // The compiled-in bytes are the model: the host's text.
            let model = Model::from_bytes(&bytes).unwrap();
            let prompt: String = (1..4).filter_map(|id| model.vocab().symbol(id)).collect();
            let mut ws = host_workspace();
            for (t, seed) in [("0", 0u64), ("0.9", 7)] {
                let sampler = Sampler::from_temperature(t.parse().unwrap()).unwrap();
                let want = generate(&model, &mut ws, &prompt, sampler, seed, 50).unwrap();
                assert_eq!(
                    run(&[&prompt, t, &seed.to_string(), "50"]),
                    format!("{}\n", want.text()),
                    "{name}"
                );
            }
        }
    }
}

/// Older firmware toolchains compile C90: the header must too (no `//`
/// comments, nothing after `#endif`), and included twice.
#[test]
fn the_header_compiles_as_c90() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("use.c");
    std::fs::write(
        &src,
        "#include \"charlm.h\"\n#include \"charlm.h\"\nint status(void) { return CHARLM_OK; }\n",
    )
    .unwrap();
    let flags = ["-std=c89", "-pedantic"];
    let obj = tmp.path().join("use.o");
    build(("CC", "cc"), &flags, &[src], Made::Object, &obj);
}

#[test]
fn the_header_works_from_cpp_too() {
    // Arduino sketches and much firmware are C++: the header must compile
    // there (included twice) and declare the functions `extern "C"`
    // (unmangled names).
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("use.cpp");
    std::fs::write(
        &src,
        r#"
        #include "charlm.h"
        #include "charlm.h"
        static int out(void *, const char *, size_t) { return 0; }
        int run(const uint8_t *model, size_t len) {
            charlm_params p = {};
            p.sampler = CHARLM_GREEDY;
            p.max_chars = 10;
            charlm_info info;
            if (charlm_model_info(model, len, &info) != CHARLM_OK) return -1;
            return charlm_generate(model, len, "a", 1, &p, out, nullptr);
        }
        "#,
    )
    .unwrap();
    let obj = tmp.path().join("use.o");
    let flags = ["-std=c++11", "-pedantic"];
    build(("CXX", "c++"), &flags, &[src], Made::Object, &obj);
    let nm = Command::new("nm")
        .arg("-u")
        .arg(&obj)
        .output()
        .expect("nm (binutils)");
    let undefined = String::from_utf8_lossy(&nm.stdout);
    for f in ["charlm_generate", "charlm_model_info"] {
        assert!(
            undefined
                .lines()
                .any(|l| l.split_whitespace().last() == Some(f)),
            "{f} is not referenced by its C name from C++:\n{undefined}"
        );
    }
}
