//! `bitgrok run` end to end on tiny cells: caching, resume after SIGKILL, corrupt
//! artifacts, concurrent runs, failure records.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

mod common;
use common::{bitgrok, cell_dirs, text};
use std::time::{Duration, Instant};

/// A sweep of tiny cells in `dir`: p = 11, width 16, `steps` steps per cell.
fn sweep(dir: &Path, name: &str, precisions: &[&str], seeds: &[u64], steps: u64) -> PathBuf {
    let p: Vec<String> = precisions.iter().map(|p| format!("\"{p}\"")).collect();
    let s: Vec<String> = seeds.iter().map(|s| s.to_string()).collect();
    let body = format!(
        "[grid]\nprecision = [{}]\nseed = [{}]\n\
         [train]\nsteps = {steps}\neval_every = 50\ncheckpoint_every = 50\n",
        p.join(", "),
        s.join(", ")
    );
    common::tiny_sweep(dir, name, &body)
}

fn run(sweep: &Path, artifacts: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "run",
        sweep.to_str().unwrap(),
        "--artifacts",
        artifacts.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    bitgrok(&args)
}

/// The count after `word` in the run's summary line, e.g. "trained 2, ...".
fn count(out: &Output, word: &str) -> usize {
    let err = text(&out.stderr);
    let line = err
        .lines()
        .find(|l| l.starts_with("trained "))
        .unwrap_or_else(|| panic!("no summary in\n{err}"));
    let after = line
        .split(&format!("{word} "))
        .nth(1)
        .unwrap_or_else(|| panic!("no {word} in {line}"));
    after
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// `bitgrok run` on one thread as a child process, stderr piped.
fn spawn_run(sweep: &Path, artifacts: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_bitgrok"))
        .args([
            "run",
            sweep.to_str().unwrap(),
            "--artifacts",
            artifacts.to_str().unwrap(),
        ])
        .args(["--jobs", "1", "--threads", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Wait (at most a minute) until the first cell folder holds `file`; returns its path.
fn wait_for(artifacts: &Path, file: &str) -> PathBuf {
    let start = Instant::now();
    loop {
        if let Some(path) = cell_dirs(artifacts)
            .first()
            .map(|d| d.join(file))
            .filter(|p| p.exists())
        {
            return path;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no {file} appeared"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_finished_sweep_is_never_trained_again() {
    let t = tempfile::tempdir().unwrap();
    let s = sweep(t.path(), "cache", &["fp32", "ternary"], &[0], 100);
    let art = t.path().join("art");
    let first = run(&s, &art, &["--jobs", "2"]);
    assert!(first.status.success(), "{}", text(&first.stderr));
    assert_eq!(count(&first, "trained"), 2);
    let dirs = cell_dirs(&art);
    assert_eq!(dirs.len(), 2);
    for d in &dirs {
        for f in [
            "manifest.json",
            "cell.toml",
            "curves.csv",
            "split.csv",
            "init.safetensors",
            "model.safetensors",
        ] {
            assert!(d.join(f).is_file(), "{} lacks {f}", d.display());
        }
        assert!(
            !d.join("checkpoint.safetensors").exists(),
            "a done cell keeps no checkpoint"
        );
        // Quantized cells also store the latent weights the optimizer updated, in
        // their own file; model.safetensors holds the effective weights only.
        let quantized = std::fs::read_to_string(d.join("cell.toml"))
            .unwrap()
            .contains("precision = \"ternary\"");
        let model = text(&std::fs::read(d.join("model.safetensors")).unwrap());
        assert!(model.contains("\"blocks.0.attn.W_Q\""));
        assert!(!model.contains("latent."));
        assert_eq!(d.join("latent.safetensors").is_file(), quantized);
        assert!(
            d.join("analysis").read_dir().unwrap().count() == 1,
            "one analysis folder"
        );
    }
    let model = std::fs::read(dirs[0].join("model.safetensors")).unwrap();
    let mtime = std::fs::metadata(dirs[0].join("manifest.json"))
        .unwrap()
        .modified()
        .unwrap();
    let second = run(&s, &art, &[]);
    assert!(second.status.success(), "{}", text(&second.stderr));
    assert_eq!(
        (count(&second, "trained"), count(&second, "already done")),
        (0, 2)
    );
    assert_eq!(
        std::fs::read(dirs[0].join("model.safetensors")).unwrap(),
        model
    );
    assert_eq!(
        std::fs::metadata(dirs[0].join("manifest.json"))
            .unwrap()
            .modified()
            .unwrap(),
        mtime
    );
    for table in [
        "cells.csv",
        "frequencies.csv",
        "compare.csv",
        "overlap.csv",
        "summary.csv",
    ] {
        assert!(
            art.join("sweeps/cache").join(table).is_file(),
            "missing table {table}"
        );
    }
}

#[test]
fn a_killed_run_resumes_to_the_same_bits() {
    let t = tempfile::tempdir().unwrap();
    let s = sweep(t.path(), "resume", &["ternary"], &[3], 20_000);
    // Uninterrupted reference.
    let clean = t.path().join("clean");
    let out = run(&s, &clean, &["--jobs", "1", "--threads", "1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Killed with SIGKILL once a checkpoint exists, then resumed.
    let art = t.path().join("killed");
    let mut child = spawn_run(&s, &art);
    let checkpoint = wait_for(&art, "checkpoint.safetensors");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let dir = checkpoint.parent().unwrap().to_path_buf();
    assert!(
        !dir.join("manifest.json").exists(),
        "killed before finishing: the cell must not be done yet"
    );
    let resumed = run(&s, &art, &["--jobs", "1", "--threads", "1"]);
    assert!(resumed.status.success(), "{}", text(&resumed.stderr));
    let err = text(&resumed.stderr);
    assert!(
        err.contains("from step") && !err.contains("from step 0\n"),
        "did not resume:\n{err}"
    );
    let clean_dir = &cell_dirs(&clean)[0];
    for f in [
        "model.safetensors",
        "curves.csv",
        "init.safetensors",
        "split.csv",
    ] {
        assert_eq!(
            std::fs::read(dir.join(f)).unwrap(),
            std::fs::read(clean_dir.join(f)).unwrap(),
            "{f} differs after resume"
        );
    }
}

#[test]
fn a_corrupt_file_is_detected_and_the_cell_rebuilt() {
    let t = tempfile::tempdir().unwrap();
    let s = sweep(t.path(), "corrupt", &["binary"], &[0], 100);
    let art = t.path().join("art");
    assert!(run(&s, &art, &[]).status.success());
    let dir = &cell_dirs(&art)[0];
    let model = dir.join("model.safetensors");
    let good = std::fs::read(&model).unwrap();
    let mut bad = good.clone();
    let n = bad.len();
    bad[n - 3] ^= 0x40;
    std::fs::write(&model, &bad).unwrap();
    let out = run(&s, &art, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("model.safetensors") && err.contains("checksum"),
        "no warning naming the file:\n{err}"
    );
    assert_eq!(count(&out, "trained"), 1);
    assert_eq!(
        std::fs::read(&model).unwrap(),
        good,
        "rebuilt cell has the same bits"
    );
    // A truncated file too.
    std::fs::write(dir.join("curves.csv"), b"step").unwrap();
    let out = run(&s, &art, &[]);
    assert!(
        text(&out.stderr).contains("curves.csv"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(count(&out, "trained"), 1);
}

#[test]
fn concurrent_runs_train_each_cell_once() {
    let t = tempfile::tempdir().unwrap();
    let s = sweep(
        t.path(),
        "shared",
        &["fp32", "ternary", "binary"],
        &[0, 1],
        300,
    );
    let art = t.path().join("art");
    let (a, b) = (spawn_run(&s, &art), spawn_run(&s, &art));
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(
        a.status.success() && b.status.success(),
        "{}\n{}",
        text(&a.stderr),
        text(&b.stderr)
    );
    assert_eq!(
        count(&a, "trained") + count(&b, "trained"),
        6,
        "{}\n{}",
        text(&a.stderr),
        text(&b.stderr)
    );
    assert_eq!(cell_dirs(&art).len(), 6);
    let status = bitgrok(&[
        "status",
        s.to_str().unwrap(),
        "--artifacts",
        art.to_str().unwrap(),
    ]);
    assert!(
        text(&status.stdout).contains("total: 6 cells, 6 done"),
        "{}",
        text(&status.stdout)
    );
}

#[test]
fn a_failing_cell_is_recorded_and_the_others_go_on() {
    let t = tempfile::tempdir().unwrap();
    let s = sweep(t.path(), "fail", &["fp32", "binary"], &[0], 50);
    let art = t.path().join("art");
    // Make the fp32 cell fail on every run: a folder stands where its lock file goes.
    // (A folder where a cell file goes is moved aside and the cell rebuilt.)
    let plan = bitgrok(&[
        "plan",
        s.to_str().unwrap(),
        "--artifacts",
        art.to_str().unwrap(),
    ]);
    let stdout = text(&plan.stdout);
    let prefix = stdout
        .lines()
        .find(|l| l.contains(" fp32 "))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let out = run(&s, &art, &[]);
    assert!(out.status.success());
    let fp32_dir = cell_dirs(&art)
        .into_iter()
        .find(|d| {
            d.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with(&prefix)
        })
        .unwrap();
    std::fs::remove_dir_all(&fp32_dir).unwrap();
    std::fs::create_dir_all(fp32_dir.join("lock/blocker")).unwrap();
    let out = run(&s, &art, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains(&format!("failed: {prefix}")), "{err}");
    assert_eq!(count(&out, "failed"), 1);
    assert_eq!(count(&out, "already done"), 1);
    let manifest = std::fs::read_to_string(fp32_dir.join("manifest.json")).unwrap();
    assert!(
        manifest.contains("\"status\": \"failed\"") && manifest.contains("\"error\""),
        "{manifest}"
    );
    assert!(fp32_dir.join("train.log").is_file());
    let status = bitgrok(&[
        "status",
        s.to_str().unwrap(),
        "--artifacts",
        art.to_str().unwrap(),
    ]);
    assert!(
        text(&status.stdout).contains("1 failed"),
        "{}",
        text(&status.stdout)
    );
    let cells = std::fs::read_to_string(art.join("sweeps/fail/cells.csv")).unwrap();
    assert!(
        cells.contains(",failed,"),
        "a failed cell keeps its row:\n{cells}"
    );
    // Once the cause is gone, the failed cell is retrained.
    std::fs::remove_dir_all(fp32_dir.join("lock")).unwrap();
    let out = run(&s, &art, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(count(&out, "trained"), 1);
}

#[test]
fn ctrl_c_stops_after_writing_a_checkpoint() {
    let t = tempfile::tempdir().unwrap();
    // Checkpoints are never due during this run: the only one is written on stop.
    let s = t.path().join("interrupt.toml");
    std::fs::write(
        &s,
        "name = \"interrupt\"\nmodulus = 11\nwidth = 16\n[train]\nsteps = 500000\neval_every = 100\ncheckpoint_every = 500000\n",
    )
    .unwrap();
    let art = t.path().join("art");
    let child = spawn_run(&s, &art);
    wait_for(&art, "cell.toml");
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
    let dir = &cell_dirs(&art)[0];
    assert!(!dir.join("manifest.json").exists());
    assert!(
        dir.join("checkpoint.safetensors").is_file(),
        "no checkpoint written on stop"
    );
    assert!(
        text(&out.stderr).contains("resume"),
        "{}",
        text(&out.stderr)
    );
    let status = bitgrok(&[
        "status",
        s.to_str().unwrap(),
        "--artifacts",
        art.to_str().unwrap(),
    ]);
    assert!(
        text(&status.stdout).contains("1 partial"),
        "{}",
        text(&status.stdout)
    );
}

#[test]
fn cells_under_legacy_keys_are_adopted_not_retrained() {
    let tmp = tempfile::tempdir().unwrap();
    // fp32 cells that set the binary quantizer's scale, which fp32 does not read:
    // their legacy key (the config as written) differs from their key.
    let path = tmp.path().join("legacy.toml");
    std::fs::write(
        &path,
        "name = \"legacy\"\nmodulus = 11\nwidth = 16\n[grid]\nseed = [0, 1]\n[quant]\n\
         binary_scale = false\n[train]\nsteps = 100\neval_every = 50\n",
    )
    .unwrap();
    let art = tmp.path().join("art");
    assert!(run(&path, &art, &[]).status.success());
    let sweep = bitgrok::sweep::load(&path).unwrap();
    // Put the stored cells where a store written before the rule holds them.
    let mut moved = vec![];
    for c in &sweep.cells {
        let legacy = bitgrok::key::legacy_cell_key(&c.config);
        assert_ne!(legacy, c.key);
        let cells = art.join("cells");
        std::fs::rename(cells.join(&c.key), cells.join(&legacy)).unwrap();
        moved.push((c.key.clone(), legacy));
    }
    let out = run(&path, &art, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(count(&out, "trained"), 0, "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("adopted from its legacy key"));
    for (key, legacy) in moved {
        let dir = art.join("cells").join(&key);
        assert!(dir.join("model.safetensors").is_file());
        assert!(!art.join("cells").join(&legacy).exists());
        let from = std::fs::read_to_string(dir.join("adopted_from")).unwrap();
        assert_eq!(from.trim(), legacy);
    }
    // ... and are done where plan looks for them.
    let plan = bitgrok(&[
        "plan",
        path.to_str().unwrap(),
        "--artifacts",
        art.to_str().unwrap(),
    ]);
    assert!(
        text(&plan.stdout).contains("total: 2 cells, 2 done"),
        "{}",
        text(&plan.stdout)
    );
}

/// A worker that finds no cell left lends its core to the cells still training (the
/// manifest records the most threads a cell took); threads set by hand stay as set.
#[test]
fn idle_workers_lend_their_cores_unless_threads_are_set() {
    let dir = tempfile::tempdir().unwrap();
    let sweep = sweep(dir.path(), "lend", &["fp32"], &[0], 300);
    let artifacts = dir.path().join("artifacts");
    let threads = |extra: &[&str]| {
        let out = run(&sweep, &artifacts, extra);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let dirs = cell_dirs(&artifacts);
        let manifest = std::fs::read_to_string(dirs[0].join("manifest.json")).unwrap();
        let value: serde_json::Value = serde_json::from_str(&manifest).unwrap();
        value["threads"].as_u64().unwrap()
    };
    assert_eq!(threads(&["--jobs", "2"]), 2, "one cell, two jobs");
    assert_eq!(threads(&["--jobs", "2", "--threads", "1", "--force"]), 1);
}
