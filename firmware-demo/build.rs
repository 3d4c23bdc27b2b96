//! Build script of the firmware demo:
//!
//! * puts the memory map (QEMU's mps2-an386, also the mps2-an385 of the
//!   Cortex-M3 build, `thumbv7m-none-eabi`; with `board-stm32f4` the
//!   STM32F407VG's; for `thumbv6m-none-eabi` the nRF51822's of QEMU's
//!   `microbit`, a Cortex-M0; for `riscv32imc-unknown-none-elf` QEMU's
//!   `virt` laid out as a microcontroller; all in `boards/`) where
//!   cortex-m-rt's or riscv-rt's `link.x` finds it as `memory.x`
//!   (deliberately not in this folder, which the linker searches first);
//! * embeds the model: `CHARLM_MODEL` (absolute, or relative to this folder;
//!   default `../tests/fixtures/shakespeare-lstm128.clm`, on the Cortex-M0
//!   its i8 version, as the f16 one and the program do not fit in the
//!   micro:bit's 256 KiB of flash together), sizes the workspace to it and
//!   places its bytes in flash so that the big weight matrices start on a
//!   4-byte boundary (the Cortex-M4F kernel loads them a word at a time);
//! * turns `cases.tsv` into Rust constants.
//!
//! A model that does not decode still builds: the firmware validates it at
//! start-up, prints the error and exits non-zero, as the issue asks.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use charlm_runtime::format::ModelFile;

/// The model embedded when `CHARLM_MODEL` is not set.
const DEFAULT_MODEL: &str = "../tests/fixtures/shakespeare-lstm128.clm";
/// The same on the Cortex-M0 (`thumbv6m-none-eabi`, 256 KiB of flash).
const DEFAULT_MODEL_M0: &str = "../tests/fixtures/shakespeare-lstm128-i8.clm";

/// Whether this build is for the Cortex-M0 board (QEMU's `microbit`).
fn cortex_m0() -> bool {
    env::var("TARGET").is_ok_and(|t| t == "thumbv6m-none-eabi")
}

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));

    memory_map(&manifest, &out);
    model(&manifest, &out);
    cases(&manifest, &out);
}

fn memory_map(manifest: &Path, out: &Path) {
    let file = if env::var_os("CARGO_FEATURE_BOARD_STM32F4").is_some() {
        "boards/stm32f407vg-memory.x"
    } else if cortex_m0() {
        "boards/microbit-memory.x"
    } else if env::var("CARGO_CFG_TARGET_ARCH").is_ok_and(|a| a == "riscv32") {
        "boards/qemu-virt-rv32-memory.x"
    } else {
        "boards/mps2-an386-memory.x"
    };
    let src = manifest.join(file);
    fs::copy(&src, out.join("memory.x")).unwrap_or_else(|e| panic!("copying {}: {e}", src.display()));
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed={file}");
}

fn model(manifest: &Path, out: &Path) {
    println!("cargo:rerun-if-env-changed=CHARLM_MODEL");
    let default = if cortex_m0() { DEFAULT_MODEL_M0 } else { DEFAULT_MODEL };
    let given = env::var("CHARLM_MODEL").unwrap_or_else(|_| default.to_string());
    let path = manifest.join(&given);
    println!("cargo:rerun-if-changed={}", path.display());
    let bytes = fs::read(&path).unwrap_or_else(|e| panic!("CHARLM_MODEL={given}: cannot read {}: {e}", path.display()));

    // Capacities of the workspace: exactly the model's, or the smallest
    // legal ones when the model is broken (the firmware then refuses it).
    let (hidden, layers, vocab, (pad, aligned, macs)) = match ModelFile::decode(&bytes) {
        Ok(file) => {
            let a = file.body.arch;
            (a.hidden as usize, a.layers as usize, a.vocab as usize, best_padding(&bytes, &file))
        }
        Err(e) => {
            println!("cargo:warning=CHARLM_MODEL={given} is not a valid model ({e}); the firmware will refuse it at start-up");
            (1, 1, 3, (0, 0, 0))
        }
    };
    let mut padded = vec![0u8; pad];
    padded.extend_from_slice(&bytes);
    let blob = out.join("model-padded.bin");
    fs::write(&blob, &padded).expect("writing the padded model");

    let mut rs = String::new();
    writeln!(rs, "/// `CHARLM_MODEL` as given at build time (or the default).\npub const SOURCE: &str = {given:?};").unwrap();
    writeln!(rs, "/// Workspace capacities: the embedded model's own sizes.").unwrap();
    writeln!(rs, "pub const HIDDEN: usize = {hidden};\npub const LAYERS: usize = {layers};\npub const VOCAB: usize = {vocab};").unwrap();
    writeln!(rs, "/// Bytes in front of the model that align its largest matrices to 4 bytes.\npub const PAD: usize = {pad};").unwrap();
    writeln!(rs, "/// Multiply-accumulates per character on word-aligned rows, and in all.\npub const ALIGNED_MACS: usize = {aligned};\npub const DOT_MACS: usize = {macs};").unwrap();
    writeln!(rs, "/// The model, `PAD` bytes into a word-aligned array in flash.").unwrap();
    writeln!(
        rs,
        "pub static PADDED: Aligned<[u8; {}]> = Aligned(*include_bytes!({:?}));",
        padded.len(),
        blob.display().to_string()
    )
    .unwrap();
    fs::write(out.join("model.rs"), rs).expect("writing model.rs");
}

/// The padding in front of a word-aligned copy of `bytes` that puts the most
/// weight rows on 4-byte boundaries (the runtime computes it, for
/// `charlm export --c-source` too); with the MACs on them, and all.
fn best_padding(bytes: &[u8], file: &ModelFile<'_>) -> (usize, usize, usize) {
    let a = charlm_runtime::format::row_alignment(bytes, file);
    (a.pad, a.aligned_macs, a.macs)
}

/// `cases.tsv`: `prompt<TAB>temperature<TAB>seed<TAB>max_chars`, optionally
/// followed by `<TAB>top_k<TAB>top_p`, per line; `#` starts a comment line. tests/tests/firmware_qemu.rs reads the same file.
fn cases(manifest: &Path, out: &Path) {
    println!("cargo:rerun-if-changed=cases.tsv");
    let text = fs::read_to_string(manifest.join("cases.tsv")).expect("reading cases.tsv");
    let mut rs = String::from("/// The demo's cases, from `cases.tsv`.\npub const CASES: &[Case] = &[\n");
    for (n, line) in text.lines().enumerate() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        let (prompt, temperature, seed, max_chars, top_k, top_p) = match fields[..] {
            [p, t, s, m] => (p, t, s, m, "0", "1"),
            [p, t, s, m, k, tp] => (p, t, s, m, k, tp),
            _ => panic!("cases.tsv line {}: expected 4 or 6 tab-separated fields, got {}", n + 1, fields.len()),
        };
        let k: u16 = top_k.parse().unwrap_or_else(|e| panic!("cases.tsv line {}: top_k: {e}", n + 1));
        let p: f32 = top_p.parse().unwrap_or_else(|e| panic!("cases.tsv line {}: top_p: {e}", n + 1));
        // Without the `truncation` feature the runtime cannot sample these.
        if (k != 0 || p != 1.0) && env::var_os("CARGO_FEATURE_TRUNCATION").is_none() {
            continue;
        }
        let t: f32 = temperature.parse().unwrap_or_else(|e| panic!("cases.tsv line {}: temperature: {e}", n + 1));
        let seed: u64 = seed.parse().unwrap_or_else(|e| panic!("cases.tsv line {}: seed: {e}", n + 1));
        let max: usize = max_chars.parse().unwrap_or_else(|e| panic!("cases.tsv line {}: max_chars: {e}", n + 1));
        // The temperature as bits: exactly the f32 that `charlm generate
        // --temperature {temperature}` parses.
        writeln!(
            rs,
            "    Case {{ prompt: {prompt:?}, temperature: f32::from_bits({:#010x}), temperature_text: {temperature:?}, seed: {seed}, max_chars: {max}, top_k: {k}, top_p: f32::from_bits({:#010x}), top_p_text: {top_p:?} }},",
            t.to_bits(),
            p.to_bits()
        )
        .unwrap();
    }
    rs.push_str("];\n");
    fs::write(out.join("cases.rs"), rs).expect("writing cases.rs");
}
