//! The workspace's capacities, from the environment at build time:
//! `CHARLM_MAX_HIDDEN` (default 256), `CHARLM_MAX_LAYERS` (default 4) and
//! `CHARLM_MAX_VOCAB` (ids, default 256). Every model within them runs;
//! the workspace takes `4 * ((2L + 1) * H + V)` bytes of RAM (plus `2 * L *
//! H` with feature `int8`), about 10 KiB with the defaults. Size them to
//! the models a product ships (`charlm info MODEL` prints a model's needs).

use std::env;
use std::fs;
use std::path::PathBuf;

fn capacity(name: &str, default: usize, range: std::ops::RangeInclusive<usize>) -> usize {
    println!("cargo:rerun-if-env-changed={name}");
    let Ok(text) = env::var(name) else {
        return default;
    };
    match text.trim().parse::<usize>() {
        Ok(v) if range.contains(&v) => v,
        _ => panic!(
            "{name}={text}: must be a whole number from {} to {}",
            range.start(),
            range.end()
        ),
    }
}

fn main() {
    use charlm_runtime::format::{MAX_HIDDEN, MAX_LAYERS, MAX_VOCAB};
    // The Cortex-M4F kernel (VCVTB, VMLA, and SMLAD/SXTB16 for i8) is for
    // ARMv7E-M with an FPU: the target says so only by its name.
    println!("cargo::rustc-check-cfg=cfg(charlm_m4f)");
    let target = env::var("TARGET").unwrap_or_default();
    if target.starts_with("thumbv7em-") && target.ends_with("eabihf") {
        println!("cargo::rustc-cfg=charlm_m4f");
    }
    let hidden = capacity("CHARLM_MAX_HIDDEN", 256, 1..=MAX_HIDDEN);
    let layers = capacity("CHARLM_MAX_LAYERS", 4, 1..=MAX_LAYERS);
    let vocab = capacity("CHARLM_MAX_VOCAB", 256, 3..=MAX_VOCAB);
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let code = format!(
        "/// Hidden units the workspace holds (`CHARLM_MAX_HIDDEN`).\npub const MAX_HIDDEN: usize = {hidden};\n\
         /// Layers the workspace holds (`CHARLM_MAX_LAYERS`).\npub const MAX_LAYERS: usize = {layers};\n\
         /// Vocabulary ids the workspace holds (`CHARLM_MAX_VOCAB`).\npub const MAX_VOCAB: usize = {vocab};\n"
    );
    fs::write(out.join("capacity.rs"), code).expect("writing capacity.rs");
}
