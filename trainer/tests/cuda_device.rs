//! `--device` on a machine without a GPU (every CI and development machine
//! here): `cuda` is one clear line and exit status 2, never a panic; `auto`
//! says there is no driver and trains on the CPU. On a machine that has an
//! NVIDIA driver these expectations do not hold, and the tests say so and
//! check nothing.

use std::path::Path;
use std::process::{Command, Output};

use charlm_trainer::cuda;
use charlm_trainer::train::Device;

fn charlm(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_charlm"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("runs charlm")
}

fn corpus(dir: &Path) {
    let text: String = (0..40)
        .map(|i| format!("line {i} of a small corpus, with some words.\n"))
        .collect();
    std::fs::write(dir.join("small.txt"), text).unwrap();
}

/// Why CUDA is unusable here, as the messages say it.
fn reason() -> &'static str {
    if cuda::BUILT {
        "no NVIDIA driver"
    } else {
        "no CUDA backend"
    }
}

fn no_driver() -> bool {
    if cuda::driver_present() {
        eprintln!(
            "*** SKIPPED: this machine has an NVIDIA driver; the no-GPU behaviour cannot be checked here"
        );
        return false;
    }
    true
}

const SMALL: [&str; 12] = [
    "--corpus",
    "small.txt",
    "--hidden",
    "8",
    "--batch",
    "2",
    "--seq-len",
    "16",
    "--max-steps",
    "2",
    "--sample-chars",
    "5",
];

/// Exit status 2, exactly one line on stderr starting with `prefix`, nothing on stdout, no panic.
fn one_line_error(out: &Output, prefix: &str) -> String {
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err:?}");
    assert!(err.starts_with(prefix), "{err:?}");
    assert!(
        out.stdout.is_empty(),
        "stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    err
}

#[test]
fn device_names_parse() {
    assert_eq!("auto".parse::<Device>(), Ok(Device::Auto));
    assert_eq!("cpu".parse::<Device>(), Ok(Device::Cpu));
    assert_eq!("cuda".parse::<Device>(), Ok(Device::Cuda(0)));
    assert_eq!("cuda:3".parse::<Device>(), Ok(Device::Cuda(3)));
    for bad in ["gpu", "cuda:", "cuda:x", "cuda:-1", "CUDA"] {
        assert!(bad.parse::<Device>().is_err(), "{bad}");
    }
    assert_eq!(Device::Cuda(2).to_string(), "cuda:2");
    assert_eq!("cuda:2".parse::<Device>().unwrap().to_string(), "cuda:2");
}

#[test]
fn a_bad_device_name_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = charlm(&["train", "--device", "gpu"], dir.path());
    let err = one_line_error(&out, "charlm: error: ");
    assert!(err.contains("auto, cpu, cuda or cuda:N"), "{err}");
}

#[test]
fn cuda_without_a_gpu_is_one_line_and_status_2() {
    if !no_driver() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    corpus(dir.path());
    for (device, shown) in [("cuda", "cuda:0"), ("cuda:1", "cuda:1")] {
        let mut args = vec!["train", "--device", device, "--out", "run"];
        args.extend(SMALL);
        let out = charlm(&args, dir.path());
        let err = one_line_error(&out, &format!("charlm: error: --device {shown}: "));
        assert!(err.contains(reason()), "{err}");
        assert!(
            !dir.path().join("run").exists(),
            "nothing written for a run that could not start"
        );
    }
    for sub in ["parity", "gpu"] {
        let out = charlm(&["bench", sub, "--device", "cuda"], dir.path());
        let err = one_line_error(&out, "charlm: error: --device cuda:0: ");
        assert!(err.contains(reason()), "{err}");
    }
}

#[test]
fn auto_without_a_driver_says_so_and_trains_on_the_cpu() {
    if !no_driver() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    corpus(dir.path());
    let mut args = vec!["train", "--device", "auto", "--out", "run"];
    args.extend(SMALL);
    let out = charlm(&args, dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{}",
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    let header = stdout.lines().next().unwrap_or("");
    assert!(
        header.contains("device cpu (") && header.contains(&format!("--device auto: {}", reason())),
        "{header}"
    );
    assert!(dir.path().join("run/model.clm").exists());
}
