//! The firmware under QEMU says exactly what the host says.
//!
//! Builds firmware-demo/ (`cargo build --release` there, its own target
//! directory), runs it on QEMU's Cortex-M4F board (and on its Cortex-M0
//! micro:bit, Cortex-M3 mps2-an385 and a RISC-V RV32IMC core on `virt`,
//! cores without an FPU) with the runner of firmware-demo/.cargo/config.toml,
//! and compares its standard output byte
//! for byte with the host's text for the same model and the cases of
//! firmware-demo/cases.tsv (through `charlm_trainer::sample::generate`, the
//! function `charlm generate` prints), and for the default model also with
//! the committed firmware-demo/golden/shakespeare-lstm128.txt (written by `charlm
//! generate` itself: firmware-demo/make-golden.sh).
//!
//! With CI=true a missing qemu-system-arm (or qemu-system-riscv32) fails
//! the test; elsewhere the tests skip with a loud message. Firmware builds share one target
//! directory, so the tests take turns.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use charlm_runtime::{Model, Sampler};
use charlm_trainer::sample::{generate, host_workspace};

/// One firmware build and run at a time.
static FIRMWARE: Mutex<()> = Mutex::new(());

/// The longest a firmware run may take under QEMU (the benchmark model
/// needs about 5 s on a developer machine).
const QEMU_TIMEOUT: Duration = Duration::from_secs(300);

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn firmware_dir() -> PathBuf {
    root().join("firmware-demo")
}

/// The default model's committed golden text (written by `charlm
/// generate`: firmware-demo/make-golden.sh).
const GOLDEN: &str = "firmware-demo/golden/shakespeare-lstm128.txt";

fn golden() -> String {
    std::fs::read_to_string(root().join(GOLDEN)).expect(GOLDEN)
}

/// One line of cases.tsv.
struct Case {
    prompt: String,
    temperature: f32,
    seed: u64,
    max_chars: usize,
    top_k: u16,
    top_p: f32,
}

/// Parses firmware-demo/cases.tsv exactly as firmware-demo/build.rs does.
fn cases() -> Vec<Case> {
    let text =
        std::fs::read_to_string(firmware_dir().join("cases.tsv")).expect("firmware-demo/cases.tsv");
    let cases: Vec<Case> = text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            assert!(f.len() == 4 || f.len() == 6, "cases.tsv line {line:?}");
            Case {
                prompt: f[0].to_string(),
                temperature: f[1].parse().expect("temperature"),
                seed: f[2].parse().expect("seed"),
                max_chars: f[3].parse().expect("max_chars"),
                top_k: f.get(4).map_or(0, |k| k.parse().expect("top_k")),
                top_p: f.get(5).map_or(1.0, |p| p.parse().expect("top_p")),
            }
        })
        .collect();
    assert!(
        cases.len() >= 5,
        "cases.tsv should exercise greedy and several temperatures"
    );
    assert!(
        cases.iter().any(|c| c.temperature > 0.0 && c.top_k > 0)
            && cases.iter().any(|c| c.temperature > 0.0 && c.top_p < 1.0),
        "cases.tsv should exercise top-k and top-p"
    );
    cases
}

/// What `charlm generate --model M --prompt P --temperature T --seed S
/// --max-chars N` prints for every case, concatenated.
fn host_text(model_bytes: &[u8]) -> String {
    host_text_of(model_bytes, true)
}

/// [`host_text`], without the top-k/top-p cases unless `truncation` (a
/// firmware built without that feature leaves them out).
fn host_text_of(model_bytes: &[u8], truncation: bool) -> String {
    let model = Model::from_bytes(model_bytes).expect("a valid model");
    let mut ws = host_workspace();
    let mut out = String::new();
    for c in cases() {
        if !truncation && (c.top_k != 0 || c.top_p != 1.0) {
            continue;
        }
        let sampler = Sampler::new(c.temperature, c.top_k, c.top_p).expect("sampler");
        let sample = generate(&model, &mut ws, &c.prompt, sampler, c.seed, c.max_chars)
            .expect("host generation");
        out.push_str(&sample.text());
        out.push('\n');
    }
    out
}

/// `qemu` (a QEMU system emulator) on PATH, or `None` after a loud
/// message (a failure in CI).
fn qemu_or_skip(test: &str, qemu: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(qemu))
        .find(|p| p.is_file());
    if found.is_none() {
        assert!(
            !charlm_tests::ci(),
            "CI=true but {qemu} is not installed: firmware-demo/ci.sh installs it"
        );
        let package = qemu.replace("riscv32", "misc");
        eprintln!();
        eprintln!("!!!!!!!! SKIPPED {test}: {qemu} is not installed !!!!!!!!");
        eprintln!("!!!!!!!! (apt-get install {package}, or run firmware-demo/ci.sh) !!!!!!!!");
        eprintln!();
    }
    found
}

/// qemu-system-arm's presence (see [`qemu_or_skip`]), then this test's
/// turn at the firmware's target directory.
fn firmware_turn(test: &str) -> Option<std::sync::MutexGuard<'static, ()>> {
    firmware_turn_on(test, "qemu-system-arm")
}

/// [`firmware_turn`] for a test that needs the QEMU `qemu`.
fn firmware_turn_on(test: &str, qemu: &str) -> Option<std::sync::MutexGuard<'static, ()>> {
    qemu_or_skip(test, qemu)?;
    Some(FIRMWARE.lock().unwrap_or_else(|e| e.into_inner()))
}

/// The firmware's output.
struct Run {
    status: Option<i32>,
    stdout: Vec<u8>,
    stderr: String,
}

/// The Cortex-M4F: QEMU's mps2-an386, the firmware's default target.
const M4F: &str = "thumbv7em-none-eabihf";
/// A Cortex-M0 without an FPU: QEMU's BBC micro:bit.
const M0: &str = "thumbv6m-none-eabi";
/// A Cortex-M3, no FPU either: QEMU's mps2-an385.
const M3: &str = "thumbv7m-none-eabi";
/// A RISC-V core without an FPU or atomics (RV32IMC, the ESP32-C3's
/// instruction set): QEMU's `virt`, its F, D and A extensions switched off.
const RV32: &str = "riscv32imc-unknown-none-elf";

/// Builds the firmware for the Cortex-M4F with `CHARLM_MODEL` (or its
/// default) and runs it: see [`build_and_run_on`].
fn build_and_run(model: Option<&Path>, product: Option<&str>) -> Run {
    build_and_run_on(M4F, model, product)
}

/// Builds the firmware for `target` with `CHARLM_MODEL` (or its default)
/// and runs it with that target's runner: the default build, or with
/// `product` a product build (no diagnostics) with only those features
/// (`--no-default-features --features product`).
fn build_and_run_on(target: &str, model: Option<&Path>, product: Option<&str>) -> Run {
    build_and_run_env(target, model, product, &[])
}

/// [`build_and_run_on`] with the C library's workspace capacities
/// (`CHARLM_MAX_HIDDEN`, `_LAYERS`, `_VOCAB`) as given in `capacities`
/// (the library's defaults otherwise).
fn build_and_run_env(
    target: &str,
    model: Option<&Path>,
    product: Option<&str>,
    capacities: &[(&str, &str)],
) -> Run {
    let dir = firmware_dir();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .current_dir(&dir)
        .args(["build", "--release", "--target", target]);
    if let Some(features) = product {
        build.args(["--no-default-features", "--features", features]);
    }
    // The firmware has its own target directory and target; none of the
    // outer build's settings apply.
    for var in [
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
    ] {
        build.env_remove(var);
    }
    match model {
        Some(m) => build.env("CHARLM_MODEL", m),
        None => build.env_remove("CHARLM_MODEL"),
    };
    for var in ["CHARLM_MAX_HIDDEN", "CHARLM_MAX_LAYERS", "CHARLM_MAX_VOCAB"] {
        match capacities.iter().find(|(k, _)| *k == var) {
            Some((k, v)) => build.env(k, v),
            None => build.env_remove(var),
        };
    }
    let out = build.output().expect("run cargo build in firmware-demo/");
    assert!(
        out.status.success(),
        "cargo build --release --target {target} {product:?} in firmware-demo/ failed (is the {target} target installed? firmware-demo/ci.sh adds it):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let elf = dir.join(format!("target/{target}/release/charlm-firmware-demo"));

    // The runner line of the target's section of
    // firmware-demo/.cargo/config.toml, so the test runs exactly what
    // `cargo run --release --target {target}` runs.
    let config = std::fs::read_to_string(dir.join(".cargo/config.toml"))
        .expect("firmware-demo/.cargo/config.toml");
    let section = format!("[target.{target}]");
    let runner = config
        .lines()
        .map(str::trim)
        .skip_while(|l| *l != section)
        .skip(1)
        .take_while(|l| !l.starts_with('['))
        .find_map(|l| l.strip_prefix("runner = \"")?.strip_suffix('"'))
        .unwrap_or_else(|| {
            panic!("a runner line under {section} in firmware-demo/.cargo/config.toml")
        });
    let mut words = runner.split_whitespace();
    let mut qemu = Command::new(words.next().expect("runner program"));
    qemu.args(words)
        .arg(&elf)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = qemu.spawn().expect("start QEMU");
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let out_reader = std::thread::spawn(move || {
        let mut b = Vec::new();
        stdout.read_to_end(&mut b).map(|_| b)
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        stderr.read_to_string(&mut s).map(|_| s)
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for qemu") {
            break status;
        }
        if start.elapsed() > QEMU_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the firmware ran longer than {QEMU_TIMEOUT:?} under QEMU");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Run {
        status: status.code(),
        stdout: out_reader
            .join()
            .expect("stdout reader")
            .expect("read stdout"),
        stderr: err_reader
            .join()
            .expect("stderr reader")
            .expect("read stderr"),
    }
}

/// [`build_and_run`] (the default build, for the Cortex-M4F) of a model
/// given as bytes: written to a temporary file named after `tag`, removed
/// after the run.
fn build_and_run_bytes(bytes: &[u8], tag: &str) -> Run {
    let path = std::env::temp_dir().join(format!("charlm-{tag}-{}.clm", std::process::id()));
    std::fs::write(&path, bytes).expect("write the model");
    let run = build_and_run(Some(&path), None);
    std::fs::remove_file(&path).ok();
    run
}

/// Asserts a successful run whose text is `expected`, naming the first
/// difference, and a report (with the self-test where `diagnostics`).
fn assert_text(run: &Run, expected: &str, what: &str, diagnostics: bool) {
    assert_eq!(
        run.status,
        Some(0),
        "the firmware failed under QEMU:\n{}",
        run.stderr
    );
    let got = String::from_utf8_lossy(&run.stdout);
    if run.stdout != expected.as_bytes() {
        let line = got
            .lines()
            .zip(expected.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(got.lines().count().min(expected.lines().count()));
        panic!(
            "firmware text differs from {what} (first at line {}):\n--- firmware\n{got}\n--- {what}\n{expected}\n--- firmware stderr\n{}",
            line + 1,
            run.stderr
        );
    }
    let mut needles = vec![
        "instructions per character",
        "static RAM",
        "stack high-water mark",
    ];
    if diagnostics {
        needles.push("kernel self-test");
    }
    for needle in needles {
        assert!(
            run.stderr.contains(needle),
            "the report lacks {needle:?}:\n{}",
            run.stderr
        );
    }
    // docs/FIRMWARE.md promises every build a stack of under STACK_BUDGET
    // bytes (a recursive call in the decoder once took 1.3 KiB more,
    // unnoticed for a session).
    let stack: Option<usize> = run
        .stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix("stack high-water mark"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok());
    assert!(
        stack.is_some_and(|b| b < STACK_BUDGET),
        "stack high-water mark {stack:?} bytes, the budget is under {STACK_BUDGET}:\n{}",
        run.stderr
    );
}

/// The stack every firmware run stays under (docs/FIRMWARE.md).
const STACK_BUDGET: usize = 4096;

#[test]
fn firmware_matches_host_and_golden_for_the_default_model() {
    let Some(_turn) = firmware_turn("firmware_matches_host_and_golden_for_the_default_model")
    else {
        return;
    };
    let model = std::fs::read(root().join("tests/fixtures/shakespeare-lstm128.clm"))
        .expect("default model");
    let golden = golden();
    let host = host_text(&model);
    assert_eq!(host, golden, "the host no longer reproduces {GOLDEN}");
    let run = build_and_run(None, None);
    assert_text(
        &run,
        &golden,
        &format!("charlm generate and {GOLDEN}"),
        true,
    );
}

#[test]
fn firmware_matches_host_for_the_benchmark_model() {
    // Hidden 128: the kernel's word-aligned four-row path, its unaligned
    // path (this model's output matrix is not word-aligned), no tail.
    let Some(_turn) = firmware_turn("firmware_matches_host_for_the_benchmark_model") else {
        return;
    };
    let bytes = charlm_tests::Weights::synthesize(&charlm_tests::FIRMWARE_BENCH).encode(
        charlm_tests::FIRMWARE_BENCH.symbols,
        "synthetic benchmark (seeded PCG32)",
    );
    let run = build_and_run_bytes(&bytes, "bench");
    assert_text(&run, &host_text(&bytes), "charlm generate", true);
}

#[test]
fn firmware_matches_host_for_an_i8_model() {
    // The trained fixture's i8 version: the runtime's i8 cells on the
    // Cortex-M4F (built with the demo's default feature int8).
    let Some(_turn) = firmware_turn("firmware_matches_host_for_an_i8_model") else {
        return;
    };
    let path = root().join("tests/fixtures/shakespeare-lstm128-i8.clm");
    let bytes = std::fs::read(&path).expect("i8 fixture");
    let run = build_and_run(Some(&path), None);
    assert_text(&run, &host_text(&bytes), "charlm generate", true);
}

#[test]
fn firmware_matches_host_for_a_gru_a_two_layer_lstm_and_an_i8_gru() {
    // The other cell and stacked layers on the target: the GRU fixture
    // (hidden 20: 3-gate products, odd rows, multi-byte UTF-8 symbols,
    // prompts mostly of characters it lacks), its i8 version, and the
    // 2-layer LSTM (hidden 27: a tail in every row, few aligned rows).
    let Some(_turn) =
        firmware_turn("firmware_matches_host_for_a_gru_a_two_layer_lstm_and_an_i8_gru")
    else {
        return;
    };
    for name in ["gru1.clm", "gru1-i8.clm", "lstm2.clm"] {
        let path = root().join("tests/fixtures").join(name);
        let bytes = std::fs::read(&path).expect("fixture");
        let run = build_and_run(Some(&path), None);
        assert_text(
            &run,
            &host_text(&bytes),
            &format!("charlm generate ({name})"),
            true,
        );
    }
}

#[test]
fn on_a_cortex_m0_without_an_fpu_the_firmware_matches_the_host() {
    // thumbv6m-none-eabi on QEMU's micro:bit: every f32 operation in
    // software (compiler-builtins), the portable kernel, 256 KiB of flash,
    // 16 KiB of RAM. The default model there is the lesson-sized LSTM's i8
    // version (the i8 cells' integer products); the f16 cells run on the GRU
    // and the 2-layer LSTM. The text must be the host's, bit for bit.
    let Some(_turn) = firmware_turn("on_a_cortex_m0_without_an_fpu_the_firmware_matches_the_host")
    else {
        return;
    };
    let i8_model = std::fs::read(root().join("tests/fixtures/shakespeare-lstm128-i8.clm"))
        .expect("i8 fixture");
    let run = build_and_run_on(M0, None, None);
    assert_text(
        &run,
        &host_text(&i8_model),
        "charlm generate (shakespeare-lstm128-i8.clm)",
        true,
    );
    assert!(
        run.stderr.contains("portable kernel only on this target"),
        "not the Cortex-M0 build:\n{}",
        run.stderr
    );
    for name in ["gru1.clm", "lstm2.clm"] {
        let path = root().join("tests/fixtures").join(name);
        let bytes = std::fs::read(&path).expect("fixture");
        let run = build_and_run_on(M0, Some(&path), None);
        assert_text(
            &run,
            &host_text(&bytes),
            &format!("charlm generate ({name})"),
            true,
        );
    }

    // Through the C interface (its busy flag taken with interrupts masked
    // there), with a workspace sized for this model: 16 KiB of RAM hold
    // it, the firmware's own and the stack.
    let c_api = Some("c-api,int8,truncation");
    let fits = [
        ("CHARLM_MAX_HIDDEN", "128"),
        ("CHARLM_MAX_LAYERS", "1"),
        ("CHARLM_MAX_VOCAB", "128"),
    ];
    let run = build_and_run_env(M0, None, c_api, &fits);
    assert_text(
        &run,
        &host_text(&i8_model),
        "charlm generate (shakespeare-lstm128-i8.clm, through the C interface)",
        false,
    );
    // With the library's default workspace (12 KiB with `int8`) the stack has no room
    // left and runs over the statics: the firmware must say so and fail,
    // whatever else went wrong first.
    let run = build_and_run_env(M0, None, c_api, &[]);
    assert_ne!(
        run.status,
        Some(0),
        "an overflowing stack went unnoticed:\n{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("the stack outgrew"),
        "no word of the overflow:\n{}",
        run.stderr
    );
}

#[test]
fn on_a_cortex_m3_without_an_fpu_the_default_model_prints_the_golden_text() {
    // The bundled f16 LSTM (hidden 128), every f32 operation and f16
    // conversion in software on ARMv7-M (room for it in the mps2-an385's
    // 4 MiB, unlike the micro:bit's 256 KiB): the committed golden text.
    let Some(_turn) =
        firmware_turn("on_a_cortex_m3_without_an_fpu_the_default_model_prints_the_golden_text")
    else {
        return;
    };
    let golden = golden();
    let run = build_and_run_on(M3, None, None);
    assert_text(&run, &golden, GOLDEN, true);
    assert!(
        run.stderr.contains("portable kernel only on this target"),
        "not the Cortex-M3 build:\n{}",
        run.stderr
    );
}

#[test]
fn on_a_risc_v_core_without_an_fpu_the_firmware_matches_the_golden_text_and_the_host() {
    // riscv32imc on QEMU's `virt` (F, D and A off): the portable kernel,
    // every f32 operation and f16 conversion in compiler-builtins' software
    // routines, and another compiler back end than ARM's. The bundled f16
    // LSTM must print the golden text; its i8 version and the f16 GRU the
    // host's text; and the C interface (its busy flag a plain load and
    // store on a core without atomics) the golden text again.
    let Some(_turn) = firmware_turn_on(
        "on_a_risc_v_core_without_an_fpu_the_firmware_matches_the_golden_text_and_the_host",
        "qemu-system-riscv32",
    ) else {
        return;
    };
    let golden = golden();
    let run = build_and_run_on(RV32, None, None);
    assert_text(&run, &golden, GOLDEN, true);
    assert!(
        run.stderr.contains("portable kernel only on this target")
            && run.stderr.contains("minstret calibration"),
        "not the RISC-V build:\n{}",
        run.stderr
    );
    for name in ["shakespeare-lstm128-i8.clm", "gru1.clm"] {
        let path = root().join("tests/fixtures").join(name);
        let bytes = std::fs::read(&path).expect("fixture");
        let run = build_and_run_on(RV32, Some(&path), None);
        assert_text(
            &run,
            &host_text(&bytes),
            &format!("charlm generate ({name})"),
            true,
        );
    }
    let fits = [
        ("CHARLM_MAX_HIDDEN", "128"),
        ("CHARLM_MAX_LAYERS", "1"),
        ("CHARLM_MAX_VOCAB", "128"),
    ];
    let run = build_and_run_env(RV32, None, Some("c-api,f16,int8,truncation"), &fits);
    assert_text(&run, &golden, GOLDEN, false);
}

#[test]
fn a_model_imported_from_keras_runs_on_the_firmware_as_on_the_host() {
    // The lesson's architecture made by Keras (tests/fixtures/import/,
    // written by tests/reference/import_models.py), through `charlm
    // import`'s code, on the Cortex-M4F.
    let Some(_turn) =
        firmware_turn("a_model_imported_from_keras_runs_on_the_firmware_as_on_the_host")
    else {
        return;
    };
    let dir = root().join("tests/fixtures/import");
    let weights = std::fs::read(dir.join("keras-lstm.safetensors")).expect("fixture");
    let vocab = std::fs::read_to_string(dir.join("keras-lstm.vocab.json")).expect("fixture");
    let m = charlm_trainer::import::import(&weights, &vocab).expect("import");
    let bytes = charlm_trainer::export::export(
        &m.layout,
        &m.params,
        &m.vocab,
        &charlm_trainer::export::Provenance::default(),
        charlm_runtime::format::DType::F16,
    )
    .expect("export");
    let run = build_and_run_bytes(&bytes, "keras");
    assert_text(
        &run,
        &host_text(&bytes),
        "charlm generate (keras-lstm, imported)",
        true,
    );
}

#[test]
fn the_c_interface_on_the_firmware_matches_the_golden_text_and_the_host() {
    // Feature `c-api`: every text through `charlm_load_model` and
    // `charlm_generate_loaded` (capi/), as a C firmware would make it, with
    // the library's Cortex-M4F kernel, for the default model (the golden
    // text) and an i8 GRU (the host).
    let Some(_turn) =
        firmware_turn("the_c_interface_on_the_firmware_matches_the_golden_text_and_the_host")
    else {
        return;
    };
    let features = Some("c-api,f16,int8,truncation");
    let golden = golden();
    let run = build_and_run(None, features);
    assert_text(&run, &golden, GOLDEN, false);
    // The library's own floating-point mode, whatever the caller's FPSCR.
    assert!(
        run.stderr
            .contains("charlm_self_test passes under the caller's FPSCR.AHP"),
        "{}",
        run.stderr
    );
    let path = root().join("tests/fixtures/gru1-i8.clm");
    let bytes = std::fs::read(&path).expect("fixture");
    let run = build_and_run(Some(&path), features);
    assert_text(
        &run,
        &host_text(&bytes),
        "charlm generate (gru1-i8.clm)",
        false,
    );
}

#[test]
fn an_i8_only_product_build_runs_i8_models_and_refuses_f16_ones() {
    // `--no-default-features --features int8`: the runtime without its f16
    // cells, the product build of a device that ships i8 models.
    let Some(_turn) = firmware_turn("an_i8_only_product_build_runs_i8_models_and_refuses_f16_ones")
    else {
        return;
    };
    let i8_path = root().join("tests/fixtures/shakespeare-lstm128-i8.clm");
    let bytes = std::fs::read(&i8_path).expect("i8 fixture");
    let run = build_and_run(Some(&i8_path), Some("int8"));
    assert_text(&run, &host_text_of(&bytes, false), "charlm generate", false);
    assert!(
        !run.stderr.contains("kernel self-test"),
        "a product build ran the diagnostics:\n{}",
        run.stderr
    );

    let f16_path = root().join("tests/fixtures/shakespeare-lstm128.clm");
    let run = build_and_run(Some(&f16_path), Some("int8"));
    assert_ne!(run.status, Some(0), "an f16 model ran:\n{}", run.stderr);
    assert!(
        run.stderr
            .contains("cannot run f16 weights (cargo feature f16 of charlm-runtime)"),
        "no clear message:\n{}",
        run.stderr
    );
    assert!(run.stdout.is_empty(), "text printed from a refused model");
}

#[test]
fn firmware_refuses_a_corrupted_model_with_a_message_and_a_failure_status() {
    let Some(_turn) =
        firmware_turn("firmware_refuses_a_corrupted_model_with_a_message_and_a_failure_status")
    else {
        return;
    };
    let mut bytes = std::fs::read(root().join("tests/fixtures/lstm2.clm")).expect("fixture");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    let run = build_and_run_bytes(&bytes, "corrupted");
    assert_ne!(
        run.status,
        Some(0),
        "a corrupted model ran:\n{}",
        run.stderr
    );
    assert!(
        // The runtime's message (the file name holds "corrupted" too).
        run.stderr.contains("model file is corrupted: checksum"),
        "no error message:\n{}",
        run.stderr
    );
    assert!(run.stdout.is_empty(), "text printed from a corrupted model");
}

#[test]
fn a_case_whose_prompt_the_model_cannot_read_fails_alone() {
    // The GRU fixture with `a` renamed `α`: the case whose prompt is "a"
    // has no character the model knows. On the host that is one failed
    // `charlm generate`; the firmware reports it, runs the other cases
    // (the host's texts, in order) and fails at the end.
    let Some(_turn) = firmware_turn("a_case_whose_prompt_the_model_cannot_read_fails_alone") else {
        return;
    };
    let original = std::fs::read(root().join("tests/fixtures/gru1.clm")).expect("fixture");
    let symbols = Model::from_bytes(&original)
        .expect("fixture")
        .vocab()
        .symbols()
        .chars()
        .map(|c| if c == 'a' { 'α' } else { c })
        .collect::<String>();
    let mut file = charlm_runtime::format::ModelFile::decode(&original).expect("fixture");
    file.body.vocab.symbols = symbols.as_bytes();
    let bytes = file.encode().expect("encode");
    let model = Model::from_bytes(&bytes).expect("a valid model");
    let mut ws = host_workspace();
    let (mut expected, mut failing) = (String::new(), Vec::new());
    for (k, c) in cases().iter().enumerate() {
        let sampler = Sampler::new(c.temperature, c.top_k, c.top_p).expect("sampler");
        match generate(&model, &mut ws, &c.prompt, sampler, c.seed, c.max_chars) {
            Ok(sample) => expected += &(sample.text() + "\n"),
            Err(_) => failing.push(k + 1),
        }
    }
    assert!(
        !failing.is_empty() && failing.len() < cases().len(),
        "cases failing on the host: {failing:?}"
    );
    let run = build_and_run_bytes(&bytes, "no-a");
    assert_eq!(run.status, Some(1), "{}", run.stderr);
    assert_eq!(
        String::from_utf8_lossy(&run.stdout),
        expected,
        "{}",
        run.stderr
    );
    for k in failing {
        let line =
            format!("charlm: case {k}: the prompt has no character in the model's vocabulary");
        assert!(run.stderr.contains(&line), "{line}\n{}", run.stderr);
    }
}
