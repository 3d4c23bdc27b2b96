//! Writes the firmware benchmark model, `charlm_tests::FIRMWARE_BENCH`: a
//! synthetic 1-layer LSTM, hidden 128, 84 ids (82 symbols), f16, about 240 KB:
//! `cargo run -p charlm-tests --bin make-bench-model -- OUT.clm`.
//!
//! It stands in for a trained model of the size the firmware issue measures
//! (docs/BENCHMARKS.md): speed and memory depend on the shape, not on the
//! weights. Deterministic (seeded PCG32), so it is rebuilt, not committed.

use charlm_tests::{FIRMWARE_BENCH, Weights};

/// The `meta.corpus` string of the benchmark model.
pub const CORPUS: &str = "synthetic benchmark (seeded PCG32)";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::env::args()
        .nth(1)
        .ok_or("usage: make-bench-model OUT.clm")?;
    let bytes = Weights::synthesize(&FIRMWARE_BENCH).encode(FIRMWARE_BENCH.symbols, CORPUS);
    std::fs::write(&out, &bytes)?;
    println!(
        "wrote {out} ({} bytes): LSTM, 1 layer, hidden 128, 84 ids",
        bytes.len()
    );
    Ok(())
}
