//! Every CUDA kernel source compiles with NVRTC for sm_80 (A100) and sm_90
//! (H100), with an empty log (no warnings), and defines exactly the kernels
//! the Rust side launches. Needs libnvrtc (no GPU): `bash
//! scripts/install-nvrtc.sh` prints the folder to put on LD_LIBRARY_PATH.
//! Under CI=true a missing libnvrtc fails the test; elsewhere it is skipped
//! with a loud message. With `CHARLM_NVRTC_EXPECT=13.0` (say) it also
//! checks that this is the NVRTC release loaded (.ci/run compiles with 12.9
//! and 13.0).
#![cfg(feature = "cuda")]

use charlm_trainer::cuda::CudaError;
use charlm_trainer::cuda::nvrtc::{self, SOURCES, Source};

mod common;
use common::have_nvrtc;

const ARCHS: [&str; 2] = ["sm_80", "sm_90"];

/// Names of the `extern "C" __global__` functions in a source.
fn declared(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("extern \"C\" __global__ void ") {
        rest = &rest[at + "extern \"C\" __global__ void ".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        out.push(name);
    }
    out
}

#[test]
fn every_kernel_compiles_cleanly_for_sm80_and_sm90() {
    if !have_nvrtc() {
        return;
    }
    let (major, minor) = nvrtc::version().expect("nvrtc version");
    eprintln!("NVRTC {major}.{minor}");
    // CI runs this test a second time with another release first on the
    // library path; this proves that release is the one loaded.
    if let Ok(want) = std::env::var("CHARLM_NVRTC_EXPECT") {
        assert_eq!(
            format!("{major}.{minor}"),
            want,
            "CHARLM_NVRTC_EXPECT: another NVRTC release was loaded"
        );
    }
    for src in SOURCES {
        let mut names = declared(src.code);
        names.sort();
        let mut wanted: Vec<String> = src.kernels.iter().map(|s| s.to_string()).collect();
        wanted.sort();
        assert_eq!(
            names, wanted,
            "{}: kernels in the file vs. kernels the Rust side launches",
            src.name
        );
        for arch in ARCHS {
            let c = nvrtc::compile(src, arch)
                .unwrap_or_else(|e| panic!("{} for {arch}: {e}", src.name));
            assert!(
                c.log.is_empty(),
                "{} for {arch}: NVRTC warned:\n{}",
                src.name,
                c.log
            );
            assert!(
                !c.cubin.is_empty(),
                "{} for {arch}: no machine code",
                src.name
            );
            // an ELF image for the asked architecture
            assert_eq!(
                &c.cubin[..4],
                b"\x7fELF",
                "{} for {arch}: not an ELF cubin",
                src.name
            );
            let target = format!(".target {arch}");
            assert!(
                c.ptx.contains(&target),
                "{} for {arch}: PTX lacks {target}",
                src.name
            );
            for k in src.kernels {
                assert!(
                    c.ptx.contains(&format!(".entry {k}(")),
                    "{} for {arch}: no entry {k}",
                    src.name
                );
            }
        }
    }
}

#[test]
fn a_compile_error_carries_nvrtcs_log() {
    if !have_nvrtc() {
        return;
    }
    static BROKEN: Source = Source {
        name: "broken.cu",
        code: "extern \"C\" __global__ void k(float* x) { x[0] = undefined_name; }\n",
        kernels: &["k"],
    };
    match nvrtc::compile(&BROKEN, "sm_80") {
        Err(CudaError::Nvrtc { file, log }) => {
            assert_eq!(file, "broken.cu");
            assert!(log.contains("undefined_name"), "log: {log}");
        }
        other => panic!("expected a compile error, got {other:?}"),
    }
    // and the error's one-line message names the file
    let e = nvrtc::compile(&BROKEN, "sm_90").unwrap_err().to_string();
    assert!(e.starts_with("NVRTC failed on broken.cu"), "{e}");
}

#[test]
fn a_warning_shows_up_in_the_log() {
    // proves the clean-log assertion above can fail
    if !have_nvrtc() {
        return;
    }
    static WARNS: Source = Source {
        name: "warns.cu",
        code: "extern \"C\" __global__ void k(float* x) { int unused = 3; x[0] = 1.0f; }\n",
        kernels: &["k"],
    };
    let c = nvrtc::compile(&WARNS, "sm_80").expect("compiles");
    assert!(
        c.log.contains("unused"),
        "expected a warning, log: {:?}",
        c.log
    );
}
