//! Crash safety of `charlm train`: SIGKILL at random moments, resume, and
//! the final model is byte-identical to an uninterrupted run with the same
//! seed. After every kill, whatever files the run folder holds are whole
//! (written atomically), never torn.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use charlm_runtime::Model;
use charlm_trainer::checkpoint::Checkpoint;
use rand_core::RngCore;

const BIN: &str = env!("CARGO_BIN_EXE_charlm");

fn args(corpus: &Path, out: &Path) -> Vec<String> {
    let mut a: Vec<String> = [
        "train",
        "--hidden",
        "20",
        "--layers",
        "2",
        "--cell",
        "lstm",
        "--batch",
        "4",
        "--seq-len",
        "24",
        "--epochs",
        "3",
        "--checkpoint-every",
        "2",
        // held-out scores between epoch ends too, competing for best.clm
        "--eval-every",
        "7",
        "--quiet",
        "--seed",
        "11",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend([
        "--corpus".into(),
        corpus.display().to_string(),
        "--out".into(),
        out.display().to_string(),
    ]);
    a
}

/// Every file left in the run folder is complete: the models (if any) load,
/// and no temporary file is mistaken for a real one.
fn assert_whole(dir: &Path) {
    for f in ["model.clm", "best.clm"] {
        if let Ok(bytes) = std::fs::read(dir.join(f)) {
            Model::from_bytes(&bytes)
                .unwrap_or_else(|e| panic!("a killed run left a torn {f}: {e}"));
        }
    }
}

#[test]
fn sigkill_at_random_moments_then_resume_gives_the_same_model() {
    let tmp = tempfile::tempdir().unwrap();
    let text: String = std::str::from_utf8(&charlm_trainer::corpus::BUNDLED[..12_000])
        .unwrap()
        .into();
    let corpus = tmp.path().join("corpus.txt");
    std::fs::write(&corpus, text).unwrap();

    let full = tmp.path().join("full");
    let started = Instant::now();
    let o = Command::new(BIN)
        .args(args(&corpus, &full))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let reference = std::fs::read(full.join("model.clm")).unwrap();
    let best = std::fs::read(full.join("best.clm")).unwrap();
    let duration = started.elapsed();

    // Kill points spread over the run, fractions of its measured duration
    // drawn from a fixed seed (a rerun lands near the same steps, not on
    // them: the machine's speed decides); each round kills the resumed
    // process again.
    let mut rng = charlm_runtime::SeededRng::new(2026);
    let dir = tmp.path().join("killed");
    let mut kills = 0;
    let mut resumed_kills = 0;
    let mut resume = false;
    let mut done = false;
    for _ in 0..5 {
        let mut cmd = Command::new(BIN);
        if resume {
            cmd.args(["train", "--resume", dir.to_str().unwrap(), "--quiet"]);
        } else {
            cmd.args(args(&corpus, &dir));
        }
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let wait = duration.mul_f64((rng.next_u32() % 1000) as f64 / 1000.0 * 0.3);
        std::thread::sleep(wait.max(Duration::from_millis(20)));
        let finished = child.try_wait().unwrap().is_some();
        if !finished {
            child.kill().unwrap(); // SIGKILL: no chance to clean up
            kills += 1;
            resumed_kills += usize::from(resume);
        }
        let status = child.wait().unwrap();
        // Killed, or (a round that came too late) finished well.
        assert!(
            finished == status.success(),
            "round ended with {status:?} (killed: {})",
            !finished
        );
        assert_whole(&dir);
        if dir.join("checkpoint.bin").exists() {
            resume = true;
        } else {
            // Killed before the first checkpoint: the folder may exist
            // without a run; start again from scratch.
            let _ = std::fs::remove_dir_all(&dir);
            resume = false;
        }
        if finished {
            done = true;
            break;
        }
    }
    assert!(
        kills > 0,
        "no kill landed: the run finished before every kill point"
    );
    assert!(
        resumed_kills > 0,
        "no resumed run was killed: every kill came before the first checkpoint"
    );
    if !done {
        // Finish the run.
        let o = if resume {
            Command::new(BIN)
                .args(["train", "--resume", dir.to_str().unwrap(), "--quiet"])
                .output()
                .unwrap()
        } else {
            Command::new(BIN)
                .args(args(&corpus, &dir))
                .output()
                .unwrap()
        };
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    for (f, reference) in [("model.clm", reference), ("best.clm", best)] {
        let model = std::fs::read(dir.join(f)).unwrap();
        assert!(
            model == reference,
            "after {kills} SIGKILLs and resumes {f} differs from the uninterrupted run's"
        );
    }
}

#[test]
fn a_checkpoint_with_non_finite_values_is_refused() {
    use charlm_trainer::checkpoint::Checkpoint;
    let tmp = tempfile::tempdir().unwrap();
    let text: String = std::str::from_utf8(&charlm_trainer::corpus::BUNDLED[..6_000])
        .unwrap()
        .into();
    let corpus = tmp.path().join("corpus.txt");
    std::fs::write(&corpus, text).unwrap();
    let dir = tmp.path().join("run");
    let o = Command::new(BIN)
        .args(args(&corpus, &dir))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut ck = Checkpoint::load(&dir).unwrap();
    ck.params[3] = f32::NAN;
    std::fs::write(dir.join("checkpoint.bin"), ck.to_bytes()).unwrap();
    let Err(err) = Checkpoint::load(&dir) else {
        panic!("a NaN parameter must be refused")
    };
    let err = err.to_string();
    assert!(err.contains("non-finite"), "{err}");
    let o = Command::new(BIN)
        .args(["train", "--resume", dir.to_str().unwrap(), "--quiet"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("non-finite"));
}

/// `export --safetensors` writes two files that belong together. SIGTERM
/// at random moments of an export that replaces one pair with another must
/// leave either pair whole, never the new tensors beside the old
/// vocabulary, and no hidden temporary file or kept link beside them: a
/// stop signal waits while files are staged or being renamed
/// (`checkpoint::defer_stops_while_writing`), then acts.
#[cfg(unix)]
#[test]
fn sigterm_at_random_moments_of_an_export_leaves_a_whole_pair_and_nothing_else() {
    use std::os::unix::process::ExitStatusExt;
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
    let models = [
        fixtures.join("shakespeare-lstm128.clm"),
        fixtures.join("gru1.clm"),
    ];
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("o.safetensors");
    let export = |model: &Path| {
        let mut c = Command::new(BIN);
        c.arg("export")
            .arg(model)
            .arg("--safetensors")
            .arg(&out)
            .arg("--force")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    };
    let pair = || {
        let vocab = tmp.path().join("o.vocab.json");
        (std::fs::read(&out).unwrap(), std::fs::read(vocab).unwrap())
    };
    let names = || -> Vec<String> {
        std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    };
    // Each model's pair, written uninterrupted, and the longer time taken.
    let mut whole = Vec::new();
    let mut duration = Duration::ZERO;
    for m in &models {
        let started = Instant::now();
        assert!(export(m).status().unwrap().success());
        duration = duration.max(started.elapsed());
        whole.push(pair());
    }
    let mut rng = charlm_runtime::SeededRng::new(2027);
    let (mut stopped, mut finished) = (0, 0);
    for round in 0..200 {
        let mut child = export(&models[round % 2]).spawn().unwrap();
        // Up to twice the measured time: a loaded machine's exports vary.
        let wait = duration.mul_f64((rng.next_u32() % 1000) as f64 / 500.0);
        std::thread::sleep(wait);
        // SAFETY: kill(2) on our own child, not yet waited for.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let status = child.wait().unwrap();
        match status.signal() {
            Some(libc::SIGTERM) => stopped += 1,
            _ if status.success() => finished += 1,
            _ => panic!("round {round} ended with {status:?}"),
        }
        let names = names();
        assert!(
            names.iter().all(|n| !n.starts_with('.')),
            "round {round} ({status:?}) left {names:?}"
        );
        assert!(
            whole.contains(&pair()),
            "round {round} ({status:?}) left a pair that mixes two exports"
        );
    }
    assert!(
        stopped > 0 && finished > 0,
        "the signals did not spread over the exports: {stopped} stopped, {finished} finished"
    );
    // SIGKILL leaves what it leaves; the next export of the pair removes it.
    let mut killed = 0;
    for round in 0..40 {
        let mut child = export(&models[round % 2]).spawn().unwrap();
        std::thread::sleep(duration.mul_f64((rng.next_u32() % 1000) as f64 / 1000.0));
        child.kill().unwrap();
        killed += usize::from(!child.wait().unwrap().success());
    }
    assert!(killed > 0, "no SIGKILL landed before an export ended");
    assert!(export(&models[0]).status().unwrap().success());
    let names = names();
    assert!(
        names.iter().all(|n| !n.starts_with('.')),
        "an export after {killed} SIGKILLs left {names:?}"
    );
    assert!(whole[0] == pair());
}

/// A file system that fails to sync a folder (an I/O error) after a file
/// was renamed into it: the rename may not outlive a crash, so `train` and
/// `export` stop with one line naming the file, and what was there before
/// stays usable. One that cannot sync folders at all (EINVAL, as some
/// network file systems say) is no error. The failure comes from a small
/// preloaded library that answers `fsync` on a folder with the error
/// number in `FAIL_FOLDER_SYNC`.
#[cfg(target_os = "linux")]
#[test]
fn a_folder_that_fails_to_sync_stops_the_command_and_one_that_cannot_does_not() {
    let tmp = tempfile::tempdir().unwrap();
    let shim = preload(
        tmp.path(),
        "fail_folder_sync",
        r#"#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <sys/stat.h>
int fsync(int fd) {
    const char *code = getenv("FAIL_FOLDER_SYNC");
    struct stat st;
    if (code && fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
        errno = atoi(code);
        return -1;
    }
    int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    return real(fd);
}
"#,
    );
    let corpus = tmp.path().join("c.txt");
    std::fs::write(&corpus, &charlm_trainer::corpus::BUNDLED[..3000]).unwrap();
    let run = |errno: Option<i32>, args: &[&str]| {
        let mut cmd = Command::new(BIN);
        cmd.args(args).current_dir(tmp.path());
        if let Some(errno) = errno {
            cmd.env("LD_PRELOAD", &shim)
                .env("FAIL_FOLDER_SYNC", errno.to_string());
        }
        cmd.output().unwrap()
    };
    let train = |errno, out: &str, more: &[&str]| {
        let mut args = vec!["train", "--corpus", "c.txt", "--hidden", "8"];
        args.extend(["--batch", "2", "--seq-len", "8", "--quiet", "--out", out]);
        args.extend(more);
        run(errno, &args)
    };
    let one_line_error = |o: &std::process::Output, names: &str| {
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        let expected = format!("charlm: error: cannot write {names}: syncing its folder: ");
        assert!(
            err.starts_with(&expected) && err.lines().count() == 1,
            "{err}"
        );
    };

    // Cannot sync folders: the run is written as usual.
    let o = train(Some(libc::EINVAL), "a", &["--epochs", "1"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let model = std::fs::read(tmp.path().join("a/model.clm")).unwrap();
    Model::from_bytes(&model).unwrap();

    // Fails to: a new run stops before it trains, and leaves no folder.
    let o = train(Some(libc::EIO), "b", &["--epochs", "1"]);
    one_line_error(&o, "b");
    assert!(!tmp.path().join("b").exists());

    // Without --out: runs/ made for the run is synced into its folder too;
    // failing, nothing is left.
    let fresh = tmp.path().join("fresh");
    std::fs::create_dir(&fresh).unwrap();
    let corpus_path = corpus.to_str().unwrap();
    let o = Command::new(BIN)
        .args(["train", "--corpus", corpus_path, "--hidden", "8", "--quiet"])
        .current_dir(&fresh)
        .env("LD_PRELOAD", &shim)
        .env("FAIL_FOLDER_SYNC", libc::EIO.to_string())
        .output()
        .unwrap();
    one_line_error(&o, "runs");
    assert_eq!(std::fs::read_dir(&fresh).unwrap().count(), 0);

    // A resumed run stops at its first save; its folder still resumes.
    let o = run(
        Some(libc::EIO),
        &["train", "--resume", "a", "--epochs", "2"],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    let name = ["checkpoint.bin", "model.clm", "best.clm", "metrics.csv"]
        .into_iter()
        .find(|f| err.contains(&format!("cannot write a/{f}:")))
        .unwrap_or_else(|| panic!("{err}"));
    one_line_error(&o, &format!("a/{name}"));
    let o = run(
        None,
        &["train", "--resume", "a", "--epochs", "2", "--quiet"],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // `export`: one file, and a pair (tensors and vocabulary). What was
    // renamed into place is whole; only its durability is in doubt.
    let o = run(Some(libc::EIO), &["export", "a", "--out", "m.clm"]);
    one_line_error(&o, "m.clm");
    Model::from_bytes(&std::fs::read(tmp.path().join("m.clm")).unwrap()).unwrap();
    let o = run(Some(libc::EIO), &["export", "a", "--safetensors", "m.st"]);
    one_line_error(&o, "m.st");
    let pair = |dir: &str| {
        ["m.st", "m.vocab.json"].map(|f| std::fs::read(tmp.path().join(dir).join(f)).unwrap())
    };
    let failed = pair(".");
    std::fs::create_dir(tmp.path().join("ok")).unwrap();
    let o = run(
        Some(libc::EINVAL),
        &["export", "a", "--safetensors", "ok/m.st"],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(failed, pair("ok"));
}

/// Builds `source` (C) as a library to preload, `dir/name.so`.
fn preload(dir: &Path, name: &str, source: &str) -> std::path::PathBuf {
    let c = dir.join(format!("{name}.c"));
    let so = dir.join(format!("{name}.so"));
    std::fs::write(&c, source).unwrap();
    let built = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&so)
        .arg(&c)
        .arg("-ldl")
        .status()
        .expect("a C compiler (cc) builds the preloaded library");
    assert!(built.success());
    so
}

/// What a run leaves that must not depend on where it was killed: the
/// models, the samples, the plot, and metrics.csv but for the columns that
/// time it.
fn run_files(dir: &Path) -> Vec<(&'static str, Vec<u8>)> {
    [
        "model.clm",
        "best.clm",
        "samples.txt",
        "loss.svg",
        "metrics.csv",
    ]
    .into_iter()
    .map(|f| {
        let bytes = std::fs::read(dir.join(f)).unwrap_or_default();
        let bytes = match f {
            "metrics.csv" => String::from_utf8(bytes)
                .unwrap()
                .lines()
                .map(|l| l.split(',').take(5).collect::<Vec<_>>().join(",") + "\n")
                .collect::<String>()
                .into_bytes(),
            _ => bytes,
        };
        (f, bytes)
    })
    .collect()
}

/// SIGKILL right after (and right before) each of a run's renames — every
/// file it puts in place, checkpoints and all — then `--resume`: the run
/// folder ends as the uninterrupted run's, every file of it. The run ends
/// at --max-steps inside its second epoch, at a step --checkpoint-every
/// also falls on, and --eval-every scores between epoch ends.
#[test]
fn a_kill_at_any_rename_then_resume_gives_the_uninterrupted_run_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let shim = kill_at_rename(tmp.path());
    let corpus = tmp.path().join("c.txt");
    std::fs::write(&corpus, &charlm_trainer::corpus::BUNDLED[..4000]).unwrap();
    let corpus = corpus.to_str().unwrap().to_owned();
    let train = |out: &Path, kill: Option<(usize, bool)>| {
        let mut cmd = Command::new(BIN);
        cmd.args([
            "train", "--corpus", &corpus, "--hidden", "8", "--batch", "4",
        ])
        .args(["--seq-len", "16", "--epochs", "2", "--max-steps", "90"])
        .args(["--eval-every", "7", "--checkpoint-every", "3"])
        .args(["--sample-chars", "20", "--seed", "3", "--quiet", "--out"])
        .arg(out);
        if let Some((n, before)) = kill {
            cmd.env("LD_PRELOAD", &shim)
                .env("KILL_AT_RENAME", n.to_string());
            if before {
                cmd.env("KILL_BEFORE", "1");
            }
        }
        cmd.output().unwrap()
    };
    let full = tmp.path().join("full");
    let o = train(&full, None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let want = run_files(&full);
    for before in [false, true] {
        let mut kills = 0;
        for n in 1.. {
            let dir = tmp.path().join(format!("k{n}-{before}"));
            let o = train(&dir, Some((n, before)));
            if o.status.success() {
                break; // the run has fewer renames than n
            }
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(o.status.signal(), Some(libc::SIGKILL), "{o:?}");
            kills += 1;
            assert_whole(&dir);
            if !dir.join("checkpoint.bin").exists() {
                continue; // killed before the first checkpoint: nothing to resume
            }
            // best.clm is never ahead of the checkpoint (a resume that ends
            // sooner, a lower --max-steps, would keep it).
            if let Ok(best) = std::fs::read(dir.join("best.clm")) {
                let at = charlm_runtime::format::ModelFile::decode(&best)
                    .unwrap()
                    .body
                    .meta
                    .steps;
                let ck = Checkpoint::load(&dir).unwrap().progress.steps;
                assert!(
                    at <= ck,
                    "kill at rename {n} (before: {before}): best.clm of step {at}, checkpoint of {ck}"
                );
            }
            let o = Command::new(BIN)
                .args(["train", "--quiet", "--sample-chars", "20", "--resume"])
                .arg(&dir)
                .output()
                .unwrap();
            assert!(
                o.status.success(),
                "kill at rename {n} (before: {before}): {o:?}"
            );
            for ((f, got), (_, want)) in run_files(&dir).iter().zip(&want) {
                let show = |b: &[u8]| match f.ends_with(".clm") {
                    true => format!("{} bytes", b.len()),
                    false => String::from_utf8_lossy(b).into_owned(),
                };
                assert!(
                    got == want,
                    "kill at rename {n} (before: {before}), then --resume: {f} differs:\n{}\n--- the uninterrupted run's:\n{}",
                    show(got),
                    show(want)
                );
            }
            std::fs::remove_dir_all(&dir).unwrap();
        }
        assert!(kills > 20, "only {kills} renames");
    }
}

/// A library to preload that raises $KILL_SIGNAL (else SIGKILL) in the
/// process at its $KILL_AT_RENAME-th rename, once the rename is done (or,
/// with $KILL_BEFORE set, just before it), and writes the number of
/// renames to the file $RENAME_COUNT when the process exits.
fn kill_at_rename(dir: &Path) -> std::path::PathBuf {
    preload(
        dir,
        "kill_at_rename",
        r#"#define _GNU_SOURCE
#include <dlfcn.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
static int renames;
int rename(const char *from, const char *to) {
    int (*real)(const char *, const char *) =
        (int (*)(const char *, const char *))dlsym(RTLD_NEXT, "rename");
    const char *at = getenv("KILL_AT_RENAME");
    const char *sig = getenv("KILL_SIGNAL");
    int mine = ++renames == (at ? atoi(at) : 0);
    if (mine && getenv("KILL_BEFORE")) raise(sig ? atoi(sig) : SIGKILL);
    int r = real(from, to);
    if (mine) raise(sig ? atoi(sig) : SIGKILL);
    return r;
}
__attribute__((destructor)) static void count(void) {
    const char *path = getenv("RENAME_COUNT");
    FILE *f = path ? fopen(path, "w") : NULL;
    if (f) {
        fprintf(f, "%d", renames);
        fclose(f);
    }
}
"#,
    )
}

/// SIGTERM at each rename of a run that --patience ends: before its last
/// step is taken the run stops (status 143), and `--resume` then ends as
/// the uninterrupted run; once it is taken, the run writes its models and
/// ends with status 0, as the uninterrupted run (but for samples the
/// signal cut short).
#[test]
fn sigterm_at_any_rename_of_a_run_that_patience_ends() {
    let tmp = tempfile::tempdir().unwrap();
    let shim = kill_at_rename(tmp.path());
    let corpus = tmp.path().join("c.txt");
    std::fs::write(&corpus, &charlm_trainer::corpus::BUNDLED[..4000]).unwrap();
    let corpus = corpus.to_str().unwrap().to_owned();
    let train = |out: &Path, env: (&str, String)| {
        let mut cmd = Command::new(BIN);
        cmd.args([
            "train", "--corpus", &corpus, "--hidden", "32", "--batch", "4",
        ])
        .args(["--seq-len", "16", "--epochs", "20", "--eval-every", "10"])
        .args(["--patience", "2", "--lr", "0.03", "--checkpoint-every", "3"])
        .args(["--sample-chars", "20", "--seed", "3", "--quiet", "--out"])
        .arg(out)
        .env("LD_PRELOAD", &shim)
        .env("KILL_SIGNAL", libc::SIGTERM.to_string())
        .env(env.0, env.1);
        cmd.output().unwrap()
    };
    let full = tmp.path().join("full");
    let count = tmp.path().join("count");
    let o = train(&full, ("RENAME_COUNT", count.display().to_string()));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let steps = Checkpoint::load(&full).unwrap().progress.steps;
    let ended = Checkpoint::load(&full).unwrap().config.epochs;
    assert!(steps < ended * 59, "--patience did not end the run");
    let renames: usize = std::fs::read_to_string(&count).unwrap().parse().unwrap();
    let want = run_files(&full);
    let mut stopped = 0;
    for n in 1..=renames {
        let dir = tmp.path().join(format!("t{n}"));
        let o = train(&dir, ("KILL_AT_RENAME", n.to_string()));
        let code = o.status.code();
        if code == Some(143) {
            stopped += 1;
            let left = Checkpoint::load(&dir).unwrap().progress.steps;
            assert!(
                left < steps,
                "SIGTERM at rename {n}: stopped (143) after the last step, {left}, without writing the models"
            );
            let o = Command::new(BIN)
                .args(["train", "--quiet", "--sample-chars", "20", "--resume"])
                .arg(&dir)
                .output()
                .unwrap();
            assert!(o.status.success(), "SIGTERM at rename {n}: {o:?}");
        } else {
            assert_eq!(code, Some(0), "SIGTERM at rename {n}: {o:?}");
        }
        for ((f, got), (_, want)) in run_files(&dir).iter().zip(&want) {
            // (a signal cuts the last samples short: samples.txt may stay
            // an earlier evaluation's, as its first line says)
            let cut = code == Some(0) && *f == "samples.txt";
            assert!(got == want || cut, "SIGTERM at rename {n}: {f} differs");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
    assert!(
        stopped > 20,
        "only {stopped} of {renames} SIGTERMs stopped the run"
    );
}
