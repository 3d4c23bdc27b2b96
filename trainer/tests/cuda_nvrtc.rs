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

#[test]
fn compiled_kernels_are_kept_on_disk_and_checked_before_reuse() {
    use charlm_trainer::cuda::nvrtc::{LAYERS, Origin, load_or_compile};
    if !have_nvrtc() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = Some(dir.path());
    let files = || -> Vec<std::path::PathBuf> {
        let mut f: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        f.sort();
        f
    };
    // first use: compiled and kept (one file, no temporary left)
    let (first, origin) = load_or_compile(&LAYERS, "sm_80", d).unwrap();
    assert_eq!(origin, Origin::Compiled);
    let kept = files();
    assert_eq!(kept.len(), 1, "{kept:?}");
    // then read back, the same bytes
    let (again, origin) = load_or_compile(&LAYERS, "sm_80", d).unwrap();
    assert_eq!(origin, Origin::Disk);
    assert_eq!(again, first);
    // and marked used (the folder keeps the images used last)
    let day = std::time::Duration::from_secs(86_400);
    std::fs::File::options()
        .append(true)
        .open(&kept[0])
        .unwrap()
        .set_modified(std::time::SystemTime::now() - day)
        .unwrap();
    assert_eq!(
        load_or_compile(&LAYERS, "sm_80", d).unwrap().1,
        Origin::Disk
    );
    let used = std::fs::metadata(&kept[0]).unwrap().modified().unwrap();
    assert!(used.elapsed().unwrap_or_default() < day / 2, "{used:?}");
    // another architecture is another image
    let (other, origin) = load_or_compile(&LAYERS, "sm_90", d).unwrap();
    assert_eq!(origin, Origin::Compiled);
    assert_ne!(other, first);
    assert_eq!(files().len(), 2);
    // a damaged file (one byte of the machine code flipped) is recompiled
    // and replaced, never loaded
    let mut bytes = std::fs::read(&kept[0]).unwrap();
    let at = bytes.len() - 16; // the machine code comes last, then the CRC
    bytes[at] ^= 0x40;
    std::fs::write(&kept[0], &bytes).unwrap();
    let (fixed, origin) = load_or_compile(&LAYERS, "sm_80", d).unwrap();
    assert_eq!(origin, Origin::Compiled);
    assert_eq!(fixed, first);
    assert_eq!(
        load_or_compile(&LAYERS, "sm_80", d).unwrap().1,
        Origin::Disk
    );
    // so is a cut-off one
    let len = std::fs::metadata(&kept[0]).unwrap().len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&kept[0])
        .unwrap();
    f.set_len(len / 3).unwrap();
    assert_eq!(
        load_or_compile(&LAYERS, "sm_80", d).unwrap().1,
        Origin::Compiled
    );
    // a file under the right name made from another source is not trusted
    let name = kept[0].file_name().unwrap().to_string_lossy().into_owned();
    let loss_file = dir.path().join("elsewhere");
    std::fs::create_dir(&loss_file).unwrap();
    load_or_compile(
        &charlm_trainer::cuda::nvrtc::LOSS,
        "sm_80",
        Some(&loss_file),
    )
    .unwrap();
    let loss_kept = std::fs::read_dir(&loss_file)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::copy(&loss_kept, &kept[0]).unwrap();
    let (cubin, origin) = load_or_compile(&LAYERS, "sm_80", d).unwrap();
    assert_eq!((cubin == first, origin), (true, Origin::Compiled), "{name}");
    // a folder that cannot be made costs only the compilation
    let blocked = dir.path().join("a-file");
    std::fs::write(&blocked, b"").unwrap();
    let (cubin, origin) =
        load_or_compile(&LAYERS, "sm_80", Some(&blocked.join("kernels"))).unwrap();
    assert_eq!((cubin == first, origin), (true, Origin::Compiled));
    assert!(
        files()
            .iter()
            .all(|f| !f.to_string_lossy().ends_with(".tmp"))
    );
}
