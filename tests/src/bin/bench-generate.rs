//! Host generation speed: greedy characters per second on one core for a
//! 1-layer LSTM (f16, 82 symbols + padding + `<eos>` = 84 ids) at hidden 128
//! and 256 and a GRU at 128, then the two LSTMs with i8 weights (the same
//! models quantized), through the runtime exactly as `charlm generate`
//! runs it.
//!
//!     cargo run --release -p charlm-tests --bin bench-generate [SECONDS]
//!
//! Compare with `python3 bench/torch_generate.py` on the same machine; see
//! docs/BENCHMARKS.md. Weights are synthetic (speed does not depend on them).

use std::time::{Duration, Instant};

use charlm_runtime::{CellKind, Generator, Kernel, Model, Portable, Sampler, SeededRng};
use charlm_tests::{Spec, Weights};
use charlm_trainer::host_kernel::{HostKernel, Wide};

/// 82 printable symbols, like an AG News title vocabulary.
const SYMBOLS: &str =
    " etaoinsrhldcumfpgwybvkTSACMIxBPRNDEFHjLGOWUqz0K12-:J;,.V35&'(Y)49678#Q$Z/X%!?\"@+";

fn main() {
    let seconds: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    println!("kernel     config                           chars/s   ns/char   MAC/char   GMAC/s");
    let host = HostKernel::detect();
    for (cell, hidden, i8) in [
        (CellKind::Lstm, 128u16, false),
        (CellKind::Lstm, 256, false),
        (CellKind::Gru, 128, false),
        (CellKind::Lstm, 128, true),
        (CellKind::Lstm, 256, true),
    ] {
        let spec = Spec {
            name: "bench",
            cell,
            layers: 1,
            hidden,
            symbols: SYMBOLS,
            seed: 1,
        };
        let mut bytes = Weights::synthesize(&spec).encode(SYMBOLS, "synthetic");
        if i8 {
            bytes = charlm_trainer::export::quantize_file(&bytes).expect("quantizing");
        }
        let model = Model::from_bytes(&bytes).expect("valid model");
        // Alternate the kernels so that machine drift hits both alike.
        let host_only = std::env::var_os("CHARLM_BENCH_HOST_ONLY").is_some();
        let wide = HostKernel::Wide(Wide);
        for round in 0..2 {
            let mut rates = vec![(host.name(), run(&model, host, seconds / 4.0))];
            if !host_only && !matches!(host, HostKernel::Wide(_)) {
                rates.push((wide.name(), run(&model, wide, seconds / 4.0)));
            }
            if !host_only {
                rates.push(("portable", run(&model, Portable, seconds / 4.0)));
            }
            if round == 1 {
                for (name, rate) in rates {
                    let macs = model.arch().macs_per_char();
                    println!(
                        "{:<10} {:<5} 1 layer hidden {:<4} {:<3} {:>11.0} {:>9.0} {:>10} {:>8.2}",
                        name,
                        cell.name(),
                        hidden,
                        model.weights().name(),
                        rate,
                        1e9 / rate,
                        macs,
                        rate * macs as f64 / 1e9
                    );
                }
            }
        }
    }
}

/// Greedy characters per second for `seconds`, restarting from a prompt at
/// `<eos>` or every 1000 characters (a prompt character costs what a generated one does).
fn run<K: Kernel>(model: &Model<'_>, kernel: K, seconds: f64) -> f64 {
    let mut ws = charlm_trainer::sample::host_workspace();
    let mut g = Generator::with_kernel(model, &mut ws, Sampler::Greedy, SeededRng::new(0), kernel)
        .expect("fits");
    let mut chars = 0u64;
    let budget = Duration::from_secs_f64(seconds);
    let start = Instant::now();
    while start.elapsed() < budget {
        g.reset();
        g.feed("The ");
        chars += 4;
        for _ in 0..1000 {
            if g.next_char().is_none() {
                break;
            }
            chars += 1;
        }
    }
    chars as f64 / start.elapsed().as_secs_f64()
}
