//! Builds sim/sim.cpp, which includes the CUDA kernel sources, into one
//! shared library and links it under the names cudarc looks for.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let kernels = root.join("../trainer/src/cuda/kernels");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("lib");
    std::fs::create_dir_all(&out).unwrap();
    println!("cargo:rerun-if-changed=sim");
    println!("cargo:rerun-if-changed={}", kernels.display());
    for e in std::fs::read_dir(&kernels).unwrap() {
        println!("cargo:rerun-if-changed={}", e.unwrap().path().display());
    }
    let compiler = cc::Build::new().cpp(true).get_compiler();
    let so = out.join("libcharlm_cuda_sim.so");
    let status = Command::new(compiler.path())
        .args([
            "-std=c++17",
            "-O2",
            "-g",
            "-fPIC",
            "-shared",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-U_FORTIFY_SOURCE",
        ])
        .args([
            "-Wno-unused-parameter",
            "-fno-fast-math",
            "-ffp-contract=off",
        ])
        .arg("-I")
        .arg(&kernels)
        .arg(root.join("sim/sim.cpp"))
        .arg("-o")
        .arg(&so)
        .status()
        .expect("running the C++ compiler");
    assert!(status.success(), "compiling the CUDA simulator failed");
    for name in [
        "libcuda.so",
        "libcuda.so.1",
        "libcublas.so",
        "libcublas.so.12",
    ] {
        let link = out.join(name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink("libcharlm_cuda_sim.so", &link).unwrap();
    }
}
