//! The CUDA backend, end to end, on the CPU stand-in for the CUDA driver and
//! cuBLAS (`cuda-sim/`): the real Rust side and the real kernel sources
//! (compiled as C++ for the host; NVRTC still compiles them for the GPU),
//! checked against the CPU reference. What only a GPU can show (timing,
//! races, asynchronous hazards) is `scripts/gpu-check.sh`'s job.
#![cfg(feature = "cuda")]

use std::process::{Command, Output};

mod common;
use common::{ci, have_nvrtc};

/// The library path with the simulator first.
fn sim_path() -> String {
    match std::env::var("LD_LIBRARY_PATH") {
        Ok(p) if !p.is_empty() => format!("{}:{p}", charlm_cuda_sim::LIB_DIR),
        _ => charlm_cuda_sim::LIB_DIR.to_string(),
    }
}

/// One folder of compiled kernels for every run of this binary's tests: the
/// first run compiles (seconds per process), the rest read it back.
fn kernel_cache() -> String {
    format!("{}/kernels", env!("CARGO_TARGET_TMPDIR"))
}

/// `charlm` on the simulator, with the recurrence `auto`, `persistent`
/// (one cooperative launch per layer and pass) or `stepwise`, and more
/// environment.
fn charlm_env(recurrence: &str, env: &[(&str, &str)], args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_charlm"))
        .args(args)
        .env("LD_LIBRARY_PATH", sim_path())
        .env("CHARLM_KERNEL_CACHE", kernel_cache())
        .env("CHARLM_CUDA_RECURRENCE", recurrence)
        .envs(env.iter().copied())
        .output()
        .expect("running charlm")
}

/// `charlm` on the simulator with the stepwise recurrence, the quicker one
/// to simulate (the sequence kernels run every thread of the grid as a
/// fiber); the parity test covers both.
fn charlm(args: &[&str]) -> Output {
    charlm_env("stepwise", &[], args)
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn parity_with_the_cpu_reference_on_the_simulator() {
    if !have_nvrtc() {
        return;
    }
    // stepwise, 16: every warp and block partly idle; persistent, 37: no
    // size a multiple of 8 or 32, and plans (trainer/src/cuda/dev.rs,
    // SeqPlan) that depend on the shared memory a block may have, without
    // and after opting in: 48 KiB: 19 blocks of 2 units (the last with 1),
    // each step's inputs staged in shared memory both ways; 1 KiB: 37
    // blocks of 1 unit, nothing staged (every input read from L2); 4 KiB
    // raised to 48 KiB by opting in: staged both ways, the backward kernel
    // beyond the default (a launch without the raise fails). Fewer steps for these: the sequence kernels are slow to
    // simulate. Threads run first to last, and again last to first: a
    // kernel with a race (a missing barrier) gives different results in one
    // of the two orders.
    // At these sizes the plan computes each product alone (tile 1); one
    // case forces the 2 x 2 tiles of larger batches (ragged in the last
    // block: 8 rows, 4 and 1 columns). The 4 x 4 tiles take about 4 minutes
    // to simulate at this size (80 shuffles per product round), so they run
    // by hand: CHARLM_CUDA_SEQ_TILE=4 with the opt-in case's settings.
    // The reverse-order persistent case spreads the units over all
    // multiprocessors (CHARLM_CUDA_SEQ_BLOCKS=all: 37 blocks of 1 unit).
    let cases = [
        ("stepwise", "16", "30", "49152", "49152", "", "", "forward"),
        ("persistent", "37", "4", "49152", "49152", "", "", "forward"),
        ("persistent", "37", "2", "1024", "1024", "", "", "forward"),
        ("persistent", "37", "2", "4096", "49152", "2", "", "forward"),
        ("stepwise", "16", "5", "49152", "49152", "", "", "reverse"),
        (
            "persistent",
            "37",
            "2",
            "49152",
            "49152",
            "",
            "all",
            "reverse",
        ),
    ];
    for (recurrence, hidden, steps, smem, optin, tile, blocks, order) in cases {
        let env = [
            ("CHARLM_CUDA_SIM_SMEM_PER_BLOCK", smem),
            ("CHARLM_CUDA_SIM_SMEM_OPTIN", optin),
            ("CHARLM_CUDA_SEQ_TILE", tile),
            ("CHARLM_CUDA_SEQ_BLOCKS", blocks),
            ("CHARLM_CUDA_SIM_ORDER", order),
        ];
        let o = charlm_env(
            recurrence,
            &env,
            &[
                "bench", "parity", "--device", "cuda", "--steps", steps, "--hidden", hidden,
            ],
        );
        let out = text(&o);
        let case = format!(
            "{recurrence}, hidden {hidden}, {smem} bytes of shared memory ({optin} opting in), tile '{tile}', blocks '{blocks}', {order} order"
        );
        assert!(o.status.success(), "{case}:\n{out}");
        // the device line names the NVRTC that compiled the kernels
        let device = after(&out, "charlm CUDA simulator (CPU), sm_80, NVRTC ")
            .and_then(|rest| rest.split_once(", recurrence "))
            .map(|(version, form)| {
                (
                    version.to_string(),
                    form.split([')', ';', ',']).next().unwrap_or(""),
                )
            });
        assert!(
            matches!(&device, Some((v, form)) if v.split('.').all(|n| n.parse::<u32>().is_ok()) && *form == recurrence),
            "not the simulator with an NVRTC version and the {recurrence} recurrence:\n{out}"
        );
        // and the settings that change the plan
        for (var, value) in [
            ("CHARLM_CUDA_SEQ_TILE", tile),
            ("CHARLM_CUDA_SEQ_BLOCKS", blocks),
        ] {
            let named = out.contains(&format!("; {var}={value}"));
            assert_eq!(
                named,
                !value.is_empty(),
                "{case}: {var} in the device line:\n{out}"
            );
        }
        assert!(
            out.contains("parity: all 22 checks passed"),
            "{case}:\n{out}"
        );
    }
}

/// `train_bpc` and `val_bpc` of every row of a run's metrics.csv.
/// The text after the first occurrence of `needle` in `hay`.
fn after<'a>(hay: &'a str, needle: &str) -> Option<&'a str> {
    hay.find(needle).map(|i| &hay[i + needle.len()..])
}

fn metrics(run: &std::path::Path) -> Vec<(f64, f64)> {
    let text = std::fs::read_to_string(run.join("metrics.csv")).expect("metrics.csv");
    let mut lines = text.lines();
    let head: Vec<&str> = lines.next().expect("header").split(',').collect();
    let col = |name: &str| head.iter().position(|h| *h == name).expect("column");
    let (t, v) = (col("train_bpc"), col("val_bpc"));
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (
                f[t].parse().expect("train_bpc"),
                f[v].parse().unwrap_or(f64::NAN),
            )
        })
        .collect()
}

#[test]
fn train_on_cuda_follows_the_cpu_and_resumes_exactly() {
    if !have_nvrtc() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let args = |device: &str, steps: &str, out: &std::path::Path| -> Vec<String> {
        [
            "train",
            "--device",
            device,
            "--cell",
            "gru",
            "--layers",
            "2",
            "--hidden",
            "20",
            "--batch",
            "6",
            "--seq-len",
            "24",
            "--dropout",
            "0.1",
            "--clip",
            "1",
            "--max-steps",
            steps,
            "--out",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([out.display().to_string()])
        .collect()
    };
    let run = |a: Vec<String>| {
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let o = charlm(&a);
        assert!(o.status.success(), "charlm {}:\n{}", a.join(" "), text(&o));
        text(&o)
    };
    let (cpu, cuda, split) = (
        dir.path().join("cpu"),
        dir.path().join("cuda"),
        dir.path().join("split"),
    );
    run(args("cpu", "120", &cpu));
    let out = run(args("auto", "120", &cuda));
    assert!(
        out.contains("device cuda:0 (charlm CUDA simulator"),
        "--device auto did not pick the GPU:\n{out}"
    );

    // The same run on both devices: every logged loss within 1%, the
    // bound the CUDA issue sets for loss curves. One step's parity is held
    // far tighter (`bench parity`, loss within 1e-5); over 120 Adam steps
    // the products' other summation orders compound, and the bound is for
    // the curve, not for bits.
    let (a, b) = (metrics(&cpu), metrics(&cuda));
    assert_eq!(a.len(), b.len());
    assert!(!a.is_empty());
    for ((ta, va), (tb, vb)) in a.iter().zip(&b) {
        assert!(
            (ta - tb).abs() <= 0.01 * ta,
            "train bpc {tb} on CUDA, {ta} on the CPU"
        );
        assert!(
            (va - vb).abs() <= 0.01 * va || (va.is_nan() && vb.is_nan()),
            "held-out bpc {vb} on CUDA, {va} on the CPU"
        );
    }

    // Stopped at step 50 and resumed: the same model, byte for byte, as
    // without the stop (parameters, optimizer state and carried state all
    // went through the checkpoint and back to the device).
    run(args("cuda", "50", &split));
    run(vec![
        "train".into(),
        "--resume".into(),
        split.display().to_string(),
        "--max-steps".into(),
        "120".into(),
    ]);
    let whole = std::fs::read(cuda.join("model.clm")).unwrap();
    assert!(
        whole == std::fs::read(split.join("model.clm")).unwrap(),
        "resumed model differs"
    );

    // The GPU-trained model runs on the runtime.
    let g = charlm(&[
        "generate",
        "--model",
        &cuda.join("model.clm").display().to_string(),
        "--max-chars",
        "40",
    ]);
    assert!(g.status.success() && !g.stdout.is_empty(), "{}", text(&g));
}

#[test]
fn steps_replayed_as_cuda_graphs_train_the_same_model_bit_for_bit() {
    if !have_nvrtc() {
        return;
    }
    // Titles of several lengths (padded batches whose buffers grow, so
    // graphs must be forgotten and captured again) with Adam and clipping, and
    // running text with carried state, two layers and dropout on the
    // sequence kernels: the same run kernel by kernel and as graphs.
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("titles.txt");
    // Mostly two short lengths, and every 40th line longer than all before:
    // graphs of the short shapes are captured early, and a held-out score
    // (longer batches) reallocates their buffers before more steps come.
    let titles: String = (0..400)
        .map(|i| {
            let n = if i % 40 == 17 {
                3 + 3 * i / 40
            } else {
                1 + i % 2
            };
            format!("{}\n", "ab c".repeat(n))
        })
        .collect();
    std::fs::write(&corpus, titles).unwrap();
    let corpus = corpus.display().to_string();
    let cases: [(&str, Vec<&str>); 2] = [
        (
            "stepwise",
            vec![
                "--corpus",
                &corpus,
                "--layout",
                "lines",
                "--hidden",
                "10",
                "--batch",
                "3",
                "--clip",
                "0.5",
                "--max-steps",
                "60",
                "--prompt",
                "ab c",
            ],
        ),
        (
            "persistent",
            vec![
                "--layers",
                "2",
                "--dropout",
                "0.2",
                "--hidden",
                "9",
                "--batch",
                "3",
                "--seq-len",
                "12",
                "--optimizer",
                "rmsprop",
                "--max-steps",
                "8",
            ],
        ),
    ];
    for (recurrence, flags) in cases {
        let mut models = Vec::new();
        for graphs in ["off", "on"] {
            let out = dir.path().join(format!("{recurrence}-{graphs}"));
            let out_s = out.display().to_string();
            let mut args = vec!["train", "--device", "cuda", "--out", &out_s];
            args.extend(&flags);
            let env = [
                ("CHARLM_CUDA_GRAPHS", graphs),
                ("CHARLM_CUDA_SIM_TRACE", "1"),
            ];
            let o = charlm_env(recurrence, &env, &args);
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(
                o.status.success(),
                "{recurrence}, graphs {graphs}:\n{}",
                text(&o)
            );
            assert!(
                String::from_utf8_lossy(&o.stdout).contains(&format!("graphs {graphs})")),
                "the device line names the setting:\n{}",
                text(&o)
            );
            let (captures, launches) = (
                err.matches("cuda-sim: capture ended").count(),
                err.matches("cuda-sim: graph launch").count(),
            );
            if graphs == "on" {
                // each captured graph is launched at once, and replayed later
                assert!(
                    captures >= 1 && launches > captures,
                    "{recurrence}: {captures} captures, {launches} graph launches"
                );
            } else {
                assert_eq!((captures, launches), (0, 0), "{recurrence}");
            }
            assert!(!err.contains("note:"), "{err}");
            let losses: Vec<_> = metrics(&out)
                .into_iter()
                .map(|(t, v)| (t.to_bits(), v.to_bits()))
                .collect();
            models.push((std::fs::read(out.join("model.clm")).unwrap(), losses));
        }
        assert!(
            models[0] == models[1],
            "{recurrence}: graphs changed the model or the losses"
        );
    }
}

#[test]
fn a_refused_graph_capture_runs_the_step_kernel_by_kernel() {
    // A driver that cannot capture the work (CHARLM_CUDA_SIM_NO_GRAPHS=1:
    // every call during a capture fails) or cannot launch what it captured
    // (=launch): one note, then the CPU's results.
    // One that cannot capture cooperative launches (=cooperative): the
    // failed capture must not be taken for a refused cooperative launch,
    // which would switch the sequence kernels off. Curves of 8 steps: a
    // shape's second step is the first one captured.
    let note = "capturing a training step as a CUDA graph failed";
    let args = [
        "bench", "parity", "--device", "cuda", "--steps", "8", "--hidden", "8",
    ];
    let env = [("CHARLM_CUDA_SIM_NO_GRAPHS", "1")];
    if parity_with_one_note("stepwise", &env, &args, note).is_none() {
        return;
    }
    // Captured, but the graph's first launch refused (=launch).
    let env = [("CHARLM_CUDA_SIM_NO_GRAPHS", "launch")];
    parity_with_one_note("stepwise", &env, &args, note);
    let env = [("CHARLM_CUDA_SIM_NO_GRAPHS", "cooperative")];
    let o = charlm_env("auto", &env, &args);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.matches(note).count(), 1, "{err}");
    assert!(
        !err.contains("the recurrence runs a step at a time"),
        "{err}"
    );
}

/// Runs the test `name` of this file again in a child process whose
/// library path starts with the simulator (the dynamic loader reads
/// LD_LIBRARY_PATH only at start-up). True in the child.
fn inside_the_simulator(name: &str) -> bool {
    if std::env::var_os("CHARLM_TEST_IN_CUDA_SIM").is_some() {
        return true;
    }
    let o = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads", "1"])
        .env("CHARLM_TEST_IN_CUDA_SIM", "1")
        .env("LD_LIBRARY_PATH", sim_path())
        .env("CHARLM_KERNEL_CACHE", kernel_cache())
        .output()
        .expect("running this test binary again");
    let out = text(&o);
    assert!(
        o.status.success() && out.contains("1 passed"),
        "{name} in the simulator:\n{out}"
    );
    false
}

#[test]
fn a_non_finite_step_leaves_the_parameters_alone() {
    if !have_nvrtc() || !inside_the_simulator("a_non_finite_step_leaves_the_parameters_alone") {
        return;
    }
    use charlm_runtime::format::{Arch, CellKind};
    use charlm_trainer::cuda::Cuda;
    use charlm_trainer::optim::{Kind, Optimizer};
    use charlm_trainer::params::Layout;
    use charlm_trainer::train::{Resident, Settled};

    let text = "to be or not to be, that is the question; ".repeat(8);
    let vocab = charlm_trainer::vocab::Vocab::fit([text.as_str()]).unwrap();
    let batches = charlm_trainer::batch::stream_batches(&vocab, &text, 2, 16).unwrap();
    let layout = Layout::new(Arch {
        cell: CellKind::Lstm,
        layers: 1,
        hidden: 8,
        vocab: vocab.size() as u16,
    });
    let good = layout.init(3);
    for (kind, clip) in [(Kind::Adam, 0.0), (Kind::Rmsprop, 1.0)] {
        let mut cuda = Cuda::new(layout.clone(), 0).unwrap();
        let mut opt = Optimizer::new(kind, layout.len);

        // Finite steps move the parameters and report their loss.
        cuda.load(&good, &opt).unwrap();
        cuda.step(&batches[0], None, clip, 1e-2).unwrap();
        cuda.step(&batches[1], None, clip, 1e-2).unwrap();
        let Settled::Nats(nats) = cuda.settle().unwrap() else {
            panic!("finite steps reported as diverged")
        };
        assert!(nats.is_finite() && nats > 0.0);
        let mut moved = vec![0.0; layout.len];
        cuda.store(&mut moved, &mut opt).unwrap();
        assert_ne!(moved, good);
        assert_eq!(opt.steps, 2);

        // A NaN weight: the loss of the next step is not finite; neither it
        // nor any later step touches the parameters.
        let mut poisoned = moved.clone();
        poisoned[layout.len / 2] = f32::NAN;
        cuda.load(&poisoned, &opt).unwrap();
        for b in &batches[2..5] {
            cuda.step(b, None, clip, 1e-2).unwrap();
        }
        assert_eq!(
            cuda.settle().unwrap(),
            Settled::Diverged {
                what: "loss",
                step: 2
            }
        );
        let mut after = vec![0.0; layout.len];
        cuda.store(&mut after, &mut opt).unwrap();
        let same = after
            .iter()
            .zip(&poisoned)
            .all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(same, "{kind:?}: a diverged step changed the parameters");
    }
}

#[test]
fn a_missing_gpu_number_or_a_bad_setting_is_one_line_and_status_2() {
    if !have_nvrtc() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let out_s = out.display().to_string();
    /// (CHARLM_CUDA_RECURRENCE, other settings, arguments, the error wanted)
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a [&'a str], &'a str);
    let cases: [Case; 7] = [
        (
            "auto",
            &[],
            &["--device", "cuda:1"],
            "cuda:1: no such GPU (1 found, numbered from 0)",
        ),
        (
            "bogus",
            &[],
            &["--device", "cuda"],
            "CHARLM_CUDA_RECURRENCE=bogus: use auto, persistent or stepwise",
        ),
        (
            "auto",
            &[("CHARLM_CUDA_SEQ_TILE", "3")],
            &["--device", "cuda"],
            "CHARLM_CUDA_SEQ_TILE=3: use 1, 2 or 4 (or leave it unset)",
        ),
        (
            "auto",
            &[("CHARLM_CUDA_SEQ_BLOCKS", "0")],
            &["--device", "cuda"],
            "CHARLM_CUDA_SEQ_BLOCKS=0: use a number of blocks from 1 to 4096, or all",
        ),
        (
            "auto",
            &[("CHARLM_CUDA_SEQ_BLOCKS", "most")],
            &["--device", "cuda"],
            "CHARLM_CUDA_SEQ_BLOCKS=most: use a number of blocks",
        ),
        (
            "auto",
            &[("CHARLM_CUDA_GRAPHS", "yes")],
            &["--device", "cuda"],
            "CHARLM_CUDA_GRAPHS=yes: use on or off",
        ),
        // Not a reason to train on the CPU unasked.
        (
            "auto",
            &[("CHARLM_CUDA_SEQ_TILE", "3")],
            &["--device", "auto"],
            "--device auto: CHARLM_CUDA_SEQ_TILE=3: use 1, 2 or 4",
        ),
    ];
    for (recurrence, env, device, wanted) in cases {
        let mut args = vec!["train", "--max-steps", "2", "--out", &out_s];
        args.extend_from_slice(device);
        let o = charlm_env(recurrence, env, &args);
        refused(&o, &format!("{device:?}"), wanted, &out);
        // A setting is to be fixed, not avoided by another device.
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(
            err.contains("use --device cpu"),
            wanted.starts_with("cuda:1"),
            "{device:?}: {err}"
        );
    }
}

/// `o` is a refusal: status 2, one line on stderr holding `wanted`, and no
/// run folder at `out`.
fn refused(o: &Output, case: &str, wanted: &str, out: &std::path::Path) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{case}: {}", text(o));
    assert_eq!(err.lines().count(), 1, "{case}: {err}");
    assert!(err.contains(wanted), "{case}: {err}");
    assert!(!out.exists(), "{case}: a run folder was created");
}

/// A small parity run with the simulator set up by `env`: all checks must
/// pass, and stderr must say `note` exactly once. Returns `None` (the test
/// is skipped) without NVRTC.
fn parity_with_one_note(
    recurrence: &str,
    env: &[(&str, &str)],
    args: &[&str],
    note: &str,
) -> Option<()> {
    if !have_nvrtc() {
        return None;
    }
    let o = charlm_env(recurrence, env, args);
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        out.contains("parity: all") && out.contains("checks passed"),
        "{out}"
    );
    assert_eq!(err.matches(note).count(), 1, "{err}");
    Some(())
}

const PARITY_SMALL: [&str; 8] = [
    "bench", "parity", "--device", "cuda", "--steps", "2", "--hidden", "8",
];

#[test]
fn without_page_locked_memory_batches_go_up_from_pageable_memory() {
    // A driver that refuses page-locked memory (CHARLM_CUDA_SIM_NO_PINNED):
    // the backend says so once and still computes what the CPU does.
    let env = [("CHARLM_CUDA_SIM_NO_PINNED", "1")];
    parity_with_one_note(
        "stepwise",
        &env,
        &PARITY_SMALL,
        "refused page-locked host memory",
    );
}

#[test]
fn a_refused_cooperative_launch_runs_auto_stepwise_and_fails_forced_persistent() {
    // The device says it takes cooperative launches, but each is refused
    // (CHARLM_CUDA_SIM_NO_COOPERATIVE). `auto` notes it once and runs the
    // recurrence a step at a time, with the CPU's results; a forced
    // `persistent` reports the refusal instead of hiding it.
    let env = [("CHARLM_CUDA_SIM_NO_COOPERATIVE", "1")];
    if parity_with_one_note("auto", &env, &PARITY_SMALL, "refused a cooperative launch").is_none() {
        return;
    }
    let o = charlm_env("persistent", &env, &PARITY_SMALL);
    assert_ne!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("refused a cooperative launch") && !text(&o).contains("note:"),
        "{}",
        text(&o)
    );
}

#[test]
fn a_forced_persistent_recurrence_that_no_plan_fits_says_it_runs_stepwise() {
    // One byte of shared memory per block, even after opting in: no
    // sequence-kernel plan fits, so `persistent` (which uses them whenever
    // one does) runs a step at a time, and says so once.
    let env = [
        ("CHARLM_CUDA_SIM_SMEM_PER_BLOCK", "1"),
        ("CHARLM_CUDA_SIM_SMEM_OPTIN", "1"),
    ];
    let note = "CHARLM_CUDA_RECURRENCE=persistent: no sequence-kernel plan fits batches of 8 sequences at hidden 8";
    parity_with_one_note("persistent", &env, &PARITY_SMALL, note);
}

/// True when the system's library cache lists `lib` (then a test of its
/// absence cannot be run here).
fn system_has(lib: &str) -> bool {
    ["/sbin/ldconfig", "ldconfig"].iter().any(|l| {
        Command::new(l)
            .arg("-p")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(lib))
    })
}

#[test]
fn a_missing_nvrtc_or_cublas_is_one_line_and_status_2() {
    if !have_nvrtc() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // the simulator's driver alone, without its cuBLAS
    let driver = dir.path().join("driver");
    std::fs::create_dir(&driver).unwrap();
    let sim = std::path::Path::new(charlm_cuda_sim::LIB_DIR);
    std::os::unix::fs::symlink(sim.join("libcuda.so.1"), driver.join("libcuda.so.1")).unwrap();
    let driver_s = driver.display().to_string();
    // the NVRTC folder(s) this test found, from its own library path
    let with_nvrtc = format!(
        "{driver_s}:{}",
        std::env::var("LD_LIBRARY_PATH").unwrap_or_default()
    );
    let out = dir.path().join("run");
    let out_s = out.display().to_string();
    let cases = [
        (
            "libnvrtc",
            driver_s.as_str(),
            "NVRTC cannot be loaded (no libnvrtc.so",
        ),
        (
            "libcublas",
            with_nvrtc.as_str(),
            "cuBLAS cannot be loaded (no libcublas.so",
        ),
    ];
    let mut ran = 0;
    for (lib, path, wanted) in cases {
        if system_has(&format!("{lib}.so")) {
            eprintln!("*** SKIPPED the case without {lib}: the system's library cache has one");
            continue;
        }
        ran += 1;
        let o = Command::new(env!("CARGO_BIN_EXE_charlm"))
            .args([
                "train",
                "--device",
                "cuda",
                "--max-steps",
                "2",
                "--out",
                &out_s,
            ])
            .env("LD_LIBRARY_PATH", path)
            .output()
            .expect("running charlm");
        refused(&o, &format!("without {lib}"), wanted, &out);
    }
    // CI's machine has neither library in its cache (.ci/run takes NVRTC
    // from a wheel, and cuBLAS comes from nowhere): both cases run there.
    assert!(
        !ci() || ran == 2,
        "CI=true but only {ran} of the 2 cases ran"
    );
}

#[test]
fn bench_gpu_profile_times_every_phase_of_a_step() {
    if !have_nvrtc() {
        return;
    }
    // `auto` finds the (simulated) GPU and times the same on-device step;
    // a --seconds too short for one step still times one.
    for (device, seconds) in [("cuda", "0.01"), ("auto", "1e-9")] {
        let o = charlm(&[
            "bench",
            "gpu",
            "--device",
            device,
            "--config",
            "titles8",
            "--seconds",
            seconds,
            "--profile",
            "2",
        ]);
        let t = text(&o);
        assert!(o.status.success(), "{t}");
        assert!(t.contains("GRAPHS titles8: "), "{device}: {t}");
        assert!(!t.contains("RESULT titles8 0 chars/s"), "{device}: {t}");
        let table: Vec<&str> = t
            .lines()
            .skip_while(|l| !l.starts_with("PROFILE titles8: 2 steps"))
            .skip(1)
            .take_while(|l| l.starts_with("  "))
            .collect();
        // every phase of a 1-layer LSTM step, once, in step order
        let phases = [
            "host: between steps",
            "forward: batch upload, input projection",
            "forward: recurrence",
            "forward: state copies, dropout",
            "forward: output layer, softmax, loss",
            "backward: output layer",
            "backward: recurrence",
            "backward: weight gradients, input gradient",
            "gradient norm, clip, guard",
            "optimizer",
        ];
        let names: Vec<&str> = table
            .iter()
            .map(|l| l.split("  ").find(|s| !s.is_empty()).unwrap_or("").trim())
            .collect();
        assert_eq!(names, phases, "{t}");
        let share: f64 = table
            .iter()
            .map(|l| {
                let pct = l.split_whitespace().last().unwrap_or("");
                pct.trim_end_matches('%').parse::<f64>().expect("a share")
            })
            .sum();
        assert!(
            (share - 100.0).abs() < 0.6,
            "shares add up to {share}%: {t}"
        );
    }
}

/// A library that loads under a CUDA library's name but lacks a function
/// charlm calls (an NVRTC link made to the wrong file, a driver too old, a
/// stray file of that name) makes cudarc panic at that call: `--device
/// cuda` is one line and status 2 naming the function, and `auto` trains on
/// the CPU, saying why.
#[test]
fn a_cuda_library_lacking_a_function_is_one_line_and_auto_trains_on_the_cpu() {
    if !have_nvrtc() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sim = std::path::Path::new(charlm_cuda_sim::LIB_DIR);
    // NVRTC's builtins library (no nvrtcVersion) as libnvrtc.so, beside
    // the simulator's driver and cuBLAS.
    let builtins = std::env::var("LD_LIBRARY_PATH")
        .unwrap_or_default()
        .split(':')
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flatten()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("libnvrtc-builtins.so"))
        })
        .expect("NVRTC's folder holds its builtins library");
    let wrong_nvrtc = dir.path().join("nvrtc");
    std::fs::create_dir(&wrong_nvrtc).unwrap();
    std::os::unix::fs::symlink(&builtins, wrong_nvrtc.join("libnvrtc.so")).unwrap();
    // The C library's libm as the driver (no cuInit).
    let libm = [
        "/lib/x86_64-linux-gnu/libm.so.6",
        "/usr/lib64/libm.so.6",
        "/lib64/libm.so.6",
    ]
    .into_iter()
    .map(std::path::Path::new)
    .find(|p| p.exists());
    let wrong_driver = dir.path().join("driver");
    std::fs::create_dir(&wrong_driver).unwrap();
    let cases = [
        (
            format!("{}:{}", wrong_nvrtc.display(), sim.display()),
            "Missing symbol nvrtcVersion",
        ),
        (
            format!("{}:{}", wrong_driver.display(), sim_path()),
            "Missing symbol cu",
        ),
    ];
    let out = dir.path().join("run");
    let out_s = out.display().to_string();
    for (i, (path, wanted)) in cases.iter().enumerate() {
        if i == 1 {
            let Some(libm) = libm else {
                eprintln!("*** SKIPPED the driver case: no libm.so.6 found");
                continue;
            };
            for name in ["libcuda.so", "libcuda.so.1"] {
                std::os::unix::fs::symlink(libm, wrong_driver.join(name)).unwrap();
            }
        }
        let run = |device: &str| {
            let o = Command::new(env!("CARGO_BIN_EXE_charlm"))
                .args([
                    "train",
                    "--device",
                    device,
                    "--max-steps",
                    "2",
                    "--hidden",
                    "8",
                ])
                .args(["--sample-chars", "0", "--out", &out_s])
                .env("LD_LIBRARY_PATH", path)
                .env("CHARLM_KERNEL_CACHE", "off")
                .output()
                .expect("running charlm");
            let _ = std::fs::remove_dir_all(&out);
            o
        };
        let o = run("cuda");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{wanted}: {err}");
        assert_eq!(err.lines().count(), 1, "{wanted}: {err}");
        assert!(err.contains(wanted) && !err.contains("panicked"), "{err}");
        let o = run("auto");
        let all = text(&o);
        assert!(o.status.success(), "{wanted}: {all}");
        assert!(
            all.contains("device cpu") && all.contains(wanted) && !all.contains("panicked"),
            "{wanted}: {all}"
        );
    }
}

/// Where a driver is present, a value the backend's settings do not take is
/// one line and status 2 with `--device auto` too: also when NVRTC is
/// missing (the settings are read first), and for a value that is not
/// UTF-8 text (not taken for an unset one).
#[test]
fn a_bad_setting_is_refused_before_a_missing_library_and_when_not_utf8() {
    if !have_nvrtc() {
        return;
    }
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let out_s = out.display().to_string();
    let not_utf8 = std::ffi::OsStr::from_bytes(b"of\xff");
    let cases: [(&str, &std::ffi::OsStr, String, &str); 3] = [
        (
            "CHARLM_CUDA_GRAPHS",
            "bogus".as_ref(),
            charlm_cuda_sim::LIB_DIR.to_string(),
            "--device auto: CHARLM_CUDA_GRAPHS=bogus: use on or off",
        ),
        (
            "CHARLM_CUDA_GRAPHS",
            not_utf8,
            sim_path(),
            "--device auto: CHARLM_CUDA_GRAPHS=of\u{fffd}: not UTF-8 text",
        ),
        (
            "CHARLM_CUDA_SEQ_BLOCKS",
            not_utf8,
            sim_path(),
            "--device auto: CHARLM_CUDA_SEQ_BLOCKS=of\u{fffd}: not UTF-8 text",
        ),
    ];
    for (name, value, path, wanted) in cases {
        let o = Command::new(env!("CARGO_BIN_EXE_charlm"))
            .args([
                "train",
                "--device",
                "auto",
                "--max-steps",
                "2",
                "--out",
                &out_s,
            ])
            .env("LD_LIBRARY_PATH", path)
            .env("CHARLM_KERNEL_CACHE", "off")
            .env(name, value)
            .output()
            .expect("running charlm");
        refused(&o, wanted, wanted, &out);
    }
}
