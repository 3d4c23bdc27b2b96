//! Writes small models to fuzz/seeds/ for the fuzzers' seed corpora:
//! `cargo run -p charlm-tests --bin make-fuzz-seeds`. Small models let the
//! load-and-generate fuzzer run tens of thousands of cases per second.
//! Each is written twice: with f16 weights and with i8 weights.

use charlm_runtime::CellKind;
use charlm_tests::{Spec, Weights, tests_dir};

fn main() -> std::io::Result<()> {
    let dir = tests_dir().join("../fuzz/seeds");
    std::fs::create_dir_all(&dir)?;
    let specs = [
        Spec {
            name: "tiny-lstm1",
            cell: CellKind::Lstm,
            layers: 1,
            hidden: 3,
            symbols: "ab ",
            seed: 1,
        },
        Spec {
            name: "tiny-lstm2",
            cell: CellKind::Lstm,
            layers: 2,
            hidden: 9,
            symbols: "xyz.ä€",
            seed: 2,
        },
        Spec {
            name: "tiny-gru1",
            cell: CellKind::Gru,
            layers: 1,
            hidden: 5,
            symbols: "halo ",
            seed: 3,
        },
        Spec {
            name: "tiny-gru3",
            cell: CellKind::Gru,
            layers: 3,
            hidden: 4,
            symbols: "ßü ",
            seed: 4,
        },
    ];
    for spec in &specs {
        let bytes = Weights::synthesize(spec).encode(spec.symbols, "fuzz seed");
        std::fs::write(dir.join(format!("{}.clm", spec.name)), &bytes)?;
        println!("{}: {} bytes", spec.name, bytes.len());
        // The same model with i8 weights, so that the fuzzers reach the i8
        // cells with inputs small enough for long runs.
        let i8 = charlm_trainer::export::quantize_file(&bytes).map_err(std::io::Error::other)?;
        std::fs::write(dir.join(format!("{}-i8.clm", spec.name)), &i8)?;
        println!("{}-i8: {} bytes", spec.name, i8.len());
    }
    Ok(())
}
