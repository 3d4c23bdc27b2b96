//! The CUDA backend, end to end, on the CPU stand-in for the CUDA driver and
//! cuBLAS (`cuda-sim/`): the real Rust side and the real kernel sources
//! (compiled as C++ for the host; NVRTC still compiles them for the GPU),
//! checked against the CPU reference. What only a GPU can show (timing,
//! races, asynchronous hazards) is `scripts/gpu-check.sh`'s job.
#![cfg(feature = "cuda")]

use std::process::{Command, Output};

mod common;
use common::have_nvrtc;

/// `charlm` with the simulator first on the library path.
fn charlm(args: &[&str]) -> Output {
    let path = match std::env::var("LD_LIBRARY_PATH") {
        Ok(p) if !p.is_empty() => format!("{}:{p}", charlm_cuda_sim::LIB_DIR),
        _ => charlm_cuda_sim::LIB_DIR.to_string(),
    };
    Command::new(env!("CARGO_BIN_EXE_charlm"))
        .args(args)
        .env("LD_LIBRARY_PATH", path)
        .output()
        .expect("running charlm")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn parity_with_the_cpu_reference_on_the_simulator() {
    if !have_nvrtc() {
        return;
    }
    // 16: every warp and block partly idle; 37: no size a multiple of 8 or 32.
    for hidden in ["16", "37"] {
        let o = charlm(&["bench", "parity", "--device", "cuda", "--steps", "30", "--hidden", hidden]);
        let out = text(&o);
        assert!(o.status.success(), "hidden {hidden}:\n{out}");
        assert!(out.contains("charlm CUDA simulator"), "not the simulator:\n{out}");
        assert!(out.contains("parity: all 18 checks passed"), "hidden {hidden}:\n{out}");
    }
}
