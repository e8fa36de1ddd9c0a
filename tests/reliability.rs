//! Reliability under crashes, concurrency and careless input (issue classes of
//! README "Guarantees"): each test drives the `bitgrok` binary.

mod common;

use common::{bitgrok, cell_dirs, text, tiny_sweep as sweep};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn run(sweep: &Path, art: &Path) -> Output {
    bitgrok(&[
        "run",
        s(sweep),
        "--artifacts",
        s(art),
        "--jobs",
        "1",
        "--threads",
        "1",
    ])
}

fn spawn_run(sweep: &Path, art: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_bitgrok"))
        .args([
            "run",
            s(sweep),
            "--artifacts",
            s(art),
            "--jobs",
            "1",
            "--threads",
            "1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Wait (at most a minute) until `path` exists.
fn wait_for(path: &Path) {
    let start = Instant::now();
    while !path.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The first cell folder that appears under `art`.
fn first_cell(art: &Path) -> PathBuf {
    let start = Instant::now();
    loop {
        if let Some(d) = cell_dirs(art).into_iter().next() {
            return d;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "no cell folder");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn interrupt(child: Child) -> Output {
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    child.wait_with_output().unwrap()
}

/// Every file under `dir` (relative path -> bytes), skipping what legitimately
/// differs between two runs of the same cells: manifests of cells (times, host),
/// locks, and `train_seconds` in cells.csv (dropped from the bytes).
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for e in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let e = e.unwrap();
        if !e.file_type().is_file() {
            continue;
        }
        let rel = e
            .path()
            .strip_prefix(dir)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let parts: Vec<&str> = rel.split('/').collect();
        let name = *parts.last().unwrap();
        if name == "lock" || (parts.len() == 3 && name == "manifest.json") {
            continue;
        }
        // The HTML report shows wall-clock seconds; the tables it is drawn from are
        // compared instead.
        let report = parts[0] == "sweeps"
            && (name == "report.html" || matches!(parts.get(2), Some(&"figures" | &"cells")));
        if report {
            continue;
        }
        let mut bytes = std::fs::read(e.path()).unwrap();
        if name == "cells.csv" {
            bytes = drop_column(&bytes, "train_seconds");
        }
        out.push((rel, bytes));
    }
    out
}

fn drop_column(csv: &[u8], column: &str) -> Vec<u8> {
    let text = String::from_utf8(csv.to_vec()).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let i = header.iter().position(|c| *c == column).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        let mut cells: Vec<&str> = line.split(',').collect();
        cells.remove(i);
        out += &cells.join(",");
        out += "\n";
    }
    out.into_bytes()
}

/// The `files` table of a cell manifest.
fn manifest_files(cell: &Path) -> serde_json::Value {
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cell.join("manifest.json")).unwrap()).unwrap();
    m["files"].clone()
}

fn assert_same_artifacts(a: &Path, b: &Path) {
    let (fa, fb) = (files(a), files(b));
    let names = |f: &[(String, Vec<u8>)]| f.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(&fa), names(&fb), "different files");
    for ((name, x), (_, y)) in fa.iter().zip(&fb) {
        assert!(x == y, "{name} differs");
    }
    for (ca, cb) in cell_dirs(a).iter().zip(cell_dirs(b)) {
        assert_eq!(manifest_files(ca), manifest_files(&cb));
    }
}

#[test]
fn plan_and_status_agree_while_another_process_trains() {
    let t = tempfile::tempdir().unwrap();
    let sw = sweep(
        t.path(),
        "busy",
        "[train]\nsteps = 500000\neval_every = 100\ncheckpoint_every = 500000\n",
    );
    let art = t.path().join("art");
    let child = spawn_run(&sw, &art);
    wait_for(&first_cell(&art).join("cell.toml"));
    for cmd in ["plan", "status"] {
        let out = bitgrok(&[cmd, s(&sw), "--artifacts", s(&art)]);
        let stdout = text(&out.stdout);
        assert!(stdout.contains("  running"), "{cmd}:\n{stdout}");
        assert!(
            stdout.contains("total: 1 cell, 0 done, 1 running"),
            "{cmd}:\n{stdout}"
        );
    }
    let out = interrupt(child);
    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
    for cmd in ["plan", "status"] {
        let stdout = text(&bitgrok(&[cmd, s(&sw), "--artifacts", s(&art)]).stdout);
        assert!(stdout.contains("1 partial"), "{cmd}:\n{stdout}");
    }
}

/// Ctrl-C makes training write its checkpoint; when that write fails, the run says
/// so with the error's message (the cell is `failed`, not merely unfinished).
#[test]
fn a_checkpoint_that_cannot_be_written_after_ctrl_c_is_reported_with_its_error() {
    let t = tempfile::tempdir().unwrap();
    let sw = sweep(
        t.path(),
        "stopped",
        "[train]\nsteps = 500000\neval_every = 100\ncheckpoint_every = 500000\n",
    );
    let art = t.path().join("art");
    let child = spawn_run(&sw, &art);
    let cell = first_cell(&art);
    wait_for(&cell.join("cell.toml"));
    // A folder where the checkpoint goes: its write (a rename onto it) fails.
    std::fs::create_dir_all(cell.join("checkpoint.safetensors").join("x")).unwrap();
    let out = interrupt(child);
    let stderr = text(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("FAILED"), "{stderr}");
    assert!(stderr.contains("checkpoint"), "{stderr}");
    let stdout = text(&bitgrok(&["plan", s(&sw), "--artifacts", s(&art)]).stdout);
    assert!(stdout.contains("1 failed"), "{stdout}");
}

#[test]
fn a_damaged_checkpoint_is_named_and_training_resumes_from_a_good_state() {
    let t = tempfile::tempdir().unwrap();
    let sw = sweep(
        t.path(),
        "ck",
        "precision = \"ternary\"\n[train]\nsteps = 1000\neval_every = 50\ncheckpoint_every = 50\n",
    );
    let clean = t.path().join("clean");
    assert!(run(&sw, &clean).status.success());
    for damage_both in [false, true] {
        let art = t.path().join(format!("damaged-{damage_both}"));
        // Killed while both checkpoints exist (not between replacing one and
        // writing the other).
        let mut child = spawn_run(&sw, &art);
        let cell = first_cell(&art);
        wait_for(&cell.join("checkpoint.previous.safetensors"));
        loop {
            child.kill().unwrap();
            child.wait().unwrap();
            if cell.join("checkpoint.safetensors").exists() {
                break;
            }
            child = spawn_run(&sw, &art);
            wait_for(&cell.join("checkpoint.safetensors"));
        }
        let mut names = vec!["checkpoint.safetensors"];
        if damage_both {
            names.push("checkpoint.previous.safetensors");
        }
        for name in &names {
            let path = cell.join(name);
            let mut bytes = std::fs::read(&path).unwrap();
            let n = bytes.len();
            bytes[n - 5] ^= 0x10; // one bit of a tensor
            std::fs::write(&path, bytes).unwrap();
        }
        let out = run(&sw, &art);
        let err = text(&out.stderr);
        assert!(out.status.success(), "{err}");
        for name in &names {
            assert!(
                err.contains(&format!("damaged checkpoint {}", cell.join(name).display())),
                "{err}"
            );
        }
        let expected = if damage_both {
            "from scratch"
        } else {
            "resuming"
        };
        assert!(err.contains(expected), "{err}");
        assert_same_artifacts(&clean, &art);
    }
}

#[test]
fn settings_names_and_grids_are_bounded_before_any_work() {
    let t = tempfile::tempdir().unwrap();
    let huge = sweep(t.path(), "huge", "[model]\nheads = 4\n");
    let bad = sweep(t.path(), "bounds", "[train]\nsteps = 1000000000000\n");
    std::fs::write(&huge, {
        let values = |n: usize| (0..n).map(|i| i.to_string()).collect::<Vec<_>>().join(", ");
        format!(
            "name = \"huge\"\n[grid]\nseed = [{}]\n\"analysis.symmetricity_seed\" = [{}]\n\
             \"train.warmup_steps\" = [{}]\n",
            values(1000),
            values(1000),
            values(1000)
        )
    })
    .unwrap();
    let long = t.path().join("long.toml");
    std::fs::write(
        &long,
        format!("name = \"{}\"\nmodulus = 1000000000\n", "n".repeat(300)),
    )
    .unwrap();
    let start = Instant::now();
    let out = bitgrok(&["check", s(&huge), s(&bad), s(&long)]);
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "check took {:?}",
        start.elapsed()
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    for needle in [
        "1000000000 cells is too many (allowed: at most 100000",
        "train.steps: 1000000000000 is too large",
        "modulus: 1000000000 is too large",
        "name: is 300 characters long (allowed: at most 100",
    ] {
        assert!(err.contains(needle), "missing `{needle}` in\n{err}");
    }
}

#[test]
fn input_errors_name_the_culprit() {
    let t = tempfile::tempdir().unwrap();
    let sw = sweep(t.path(), "inputs", "[train]\nsteps = 20\neval_every = 10\n");
    for flag in ["--jobs", "--threads"] {
        let out = bitgrok(&["run", s(&sw), flag, "0"]);
        assert_eq!(out.status.code(), Some(2));
        assert!(text(&out.stderr).contains(flag), "{}", text(&out.stderr));
    }
    let file = t.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    for cmd in ["plan", "status"] {
        let out = bitgrok(&[cmd, s(&sw), "--artifacts", s(&file)]);
        assert_eq!(out.status.code(), Some(2), "{cmd}");
        assert!(
            text(&out.stderr).contains("is not a directory"),
            "{}",
            text(&out.stderr)
        );
    }
    let slurm = sweep(
        t.path(),
        "slurm",
        "[slurm]\ntime = \"01:00:00\"\nthrottle = \"eight\"\n",
    );
    let out = bitgrok(&["check", s(&slurm)]);
    assert_eq!(out.status.code(), Some(1));
    let expected = format!(
        "{}:6:1: slurm.throttle: expected an integer >= 0",
        slurm.display()
    );
    assert!(
        text(&out.stderr).contains(&expected),
        "{}",
        text(&out.stderr)
    );
    let (old, new) = (t.path().join("old.csv"), t.path().join("new.csv"));
    std::fs::write(&old, "a,b\n1,2\n").unwrap();
    std::fs::write(&new, b"a,b\n1,\xff\n").unwrap();
    let out = bitgrok(&["diff", s(&old), s(&new)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains(s(&new)), "{}", text(&out.stderr));
}

#[test]
fn leftovers_are_cleaned_and_misplaced_folders_rebuilt_with_warnings() {
    let t = tempfile::tempdir().unwrap();
    let sw = sweep(
        t.path(),
        "mend",
        "[grid]\nprecision = [\"fp32\", \"binary\", \"ternary\"]\n[train]\nsteps = 100\neval_every = 50\n",
    );
    let clean = t.path().join("clean");
    assert!(run(&sw, &clean).status.success());
    let art = t.path().join("art");
    assert!(run(&sw, &art).status.success());
    // A temporary left by a kill while the tables were written, an hour ago.
    // Also in the report's figures/ and cells/ folders.
    let tables = art.join("sweeps/mend");
    let tmp = tables.join(".summary.csv.4242.tmp");
    let nested = [
        tables.join("figures/.curves.svg.4242.tmp"),
        tables.join("cells/.abc.html.4242.tmp"),
    ];
    let hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    for f in std::iter::once(&tmp).chain(&nested) {
        std::fs::write(f, "half a file").unwrap();
        std::fs::File::options()
            .write(true)
            .open(f)
            .unwrap()
            .set_modified(hour_ago)
            .unwrap();
    }
    // Folders where files belong, a deleted manifest, a damaged analysis.
    let cells = cell_dirs(&art);
    for (cell, name) in cells.iter().zip(["manifest.json", "model.safetensors"]) {
        std::fs::remove_file(cell.join(name)).unwrap();
        std::fs::create_dir_all(cell.join(name).join("inside")).unwrap();
    }
    std::fs::remove_file(cells[2].join("manifest.json")).unwrap();
    let clean_cells = cell_dirs(&clean);
    let analysis = std::fs::read_dir(clean_cells[0].join("analysis")).unwrap();
    let akey = analysis.flatten().next().unwrap().file_name();
    let signature = cells[0].join("analysis").join(&akey).join("signature.json");
    let out = run(&sw, &art);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!tmp.exists(), "stale temporary kept");
    for f in &nested {
        assert!(!f.exists(), "stale temporary kept: {}", f.display());
    }
    assert!(
        err.contains(&format!("removing {}", tmp.display())),
        "{err}"
    );
    for (cell, name) in cells.iter().zip(["manifest.json", "model.safetensors"]) {
        let path = cell.join(name);
        assert!(
            err.contains(&format!(
                "{} is a directory where a file belongs",
                path.display()
            )),
            "{err}"
        );
    }
    assert!(
        err.contains("has final weights but no manifest.json"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_dir(&cells[1])
            .unwrap()
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("model.safetensors.aside-")
            })
            .count(),
        1,
        "the misplaced folder is kept aside, not deleted"
    );
    // Now the analysis: damaged, recomputed with a warning naming it.
    std::fs::write(&signature, "{}").unwrap();
    let out = run(&sw, &art);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "analysis {} is damaged",
            signature.parent().unwrap().display()
        )),
        "{err}"
    );
    for cell in &cells {
        for e in std::fs::read_dir(cell).unwrap().flatten() {
            if e.file_name().to_string_lossy().contains(".aside-") {
                std::fs::remove_dir_all(e.path()).unwrap();
            }
        }
    }
    assert_same_artifacts(&clean, &art);
}

#[test]
fn gc_lists_by_default_and_deletes_only_when_asked() {
    let t = tempfile::tempdir().unwrap();
    let sweeps = t.path().join("sweeps");
    let keep = sweep(&sweeps, "keep", "[train]\nsteps = 20\neval_every = 10\n");
    let mine = sweep(
        &t.path().join("elsewhere"),
        "mine",
        "seed = 7\n[train]\nsteps = 20\neval_every = 10\n",
    );
    let art = t.path().join("art");
    for sw in [&keep, &mine] {
        assert!(run(sw, &art).status.success());
    }
    let submission = art.join("submissions/mine-1-1");
    std::fs::create_dir_all(submission.join("logs")).unwrap();
    std::fs::write(submission.join("job_id"), "987654").unwrap();
    let gc = |extra: &[&str]| {
        let mut args = vec!["gc", "--sweeps", s(&sweeps), "--artifacts", s(&art)];
        args.extend_from_slice(extra);
        let out = bitgrok(&args);
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    let listed = gc(&[]);
    for needle in [
        "would remove",
        "no sweep file references this cell",
        "tables of a sweep no sweep file defines",
        "Slurm submission",
        "bitgrok gc --delete",
    ] {
        assert!(listed.contains(needle), "missing `{needle}` in\n{listed}");
    }
    assert_eq!(
        cell_dirs(&art).len(),
        2,
        "gc without --delete removed a cell"
    );
    assert!(art.join("sweeps/mine/cells.csv").is_file() && submission.is_dir());
    let removed = gc(&["--delete"]);
    assert!(removed.contains("removed"), "{removed}");
    assert_eq!(cell_dirs(&art).len(), 1);
    assert!(!art.join("sweeps/mine").exists() && !submission.exists());
    assert!(art.join("sweeps/keep/cells.csv").is_file());
    let plan = text(&bitgrok(&["plan", s(&keep), "--artifacts", s(&art)]).stdout);
    assert!(plan.contains("1 done"), "{plan}");
}

/// A small deterministic generator for the kill instants; the seed is printed so a
/// failure can be replayed.
fn next(state: &mut u64) -> u64 {
    *state = state
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *state >> 33
}

#[test]
fn random_kills_resume_to_the_same_files_and_tables() {
    let t = tempfile::tempdir().unwrap();
    let sw = sweep(
        t.path(),
        "crash",
        "[grid]\nprecision = [\"fp32\", \"binary\"]\n[train]\nsteps = 600\neval_every = 50\ncheckpoint_every = 50\n",
    );
    let clean = t.path().join("clean");
    let start = Instant::now();
    assert!(run(&sw, &clean).status.success());
    let full = start.elapsed().as_millis() as u64;
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("crash test seed {seed}, uninterrupted run {full} ms");
    for round in 0..1 {
        let art = t.path().join(format!("killed-{round}"));
        for _ in 0..5 {
            let child = spawn_run(&sw, &art);
            let mut child = child;
            std::thread::sleep(Duration::from_millis(next(&mut seed) % full.max(1)));
            let _ = child.kill();
            child.wait().unwrap();
        }
        let out = run(&sw, &art);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_same_artifacts(&clean, &art);
    }
}

#[test]
fn gc_and_status_in_a_loop_while_runners_work() {
    let t = tempfile::tempdir().unwrap();
    let sweeps = t.path().join("sweeps");
    let sw = sweep(
        &sweeps,
        "busy",
        "[grid]\nprecision = [\"fp32\", \"binary\", \"ternary\"]\nseed = [0, 1]\n[train]\nsteps = 200\neval_every = 50\n",
    );
    let art = t.path().join("art");
    let mut runners: Vec<Child> = (0..3).map(|_| spawn_run(&sw, &art)).collect();
    let mut rounds = 0;
    while runners.iter_mut().any(|c| c.try_wait().unwrap().is_none()) {
        let gc = bitgrok(&[
            "gc",
            "--delete",
            "--sweeps",
            s(&sweeps),
            "--artifacts",
            s(&art),
        ]);
        assert!(gc.status.success(), "{}", text(&gc.stderr));
        let status = bitgrok(&["status", s(&sw), "--artifacts", s(&art)]);
        assert!(status.status.success(), "{}", text(&status.stderr));
        rounds += 1;
        // Leave the runners most of the (possibly few) cores.
        std::thread::sleep(Duration::from_millis(200));
    }
    for c in runners {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(
            !text(&out.stderr).contains("analysis of"),
            "{}",
            text(&out.stderr)
        );
    }
    assert!(rounds > 0);
    let out = bitgrok(&["aggregate", s(&sw), "--artifacts", s(&art)]);
    assert!(out.status.success());
    let cells = std::fs::read_to_string(art.join("sweeps/busy/cells.csv")).unwrap();
    assert_eq!(
        cells.lines().filter(|l| l.contains(",done,")).count(),
        6,
        "{cells}"
    );
}

/// A cell too large for the machine is refused before anything starts, naming the
/// estimate; `check` and `plan` show it.
#[test]
fn a_cell_larger_than_the_machine_is_refused_before_it_starts() {
    let t = tempfile::tempdir().unwrap();
    let sw = t.path().join("huge.toml");
    std::fs::write(
        &sw,
        "name = \"huge\"\nmodulus = 1024\nwidth = 2048\n[model]\nmlp_ratio = 16\n[train]\nsteps = 100\n",
    )
    .unwrap();
    let check = bitgrok(&["check", s(&sw)]);
    assert!(check.status.success(), "{}", text(&check.stderr));
    assert!(
        text(&check.stdout).contains("the largest needs about"),
        "{}",
        text(&check.stdout)
    );
    let art = t.path().join("art");
    let out = run(&sw, &art);
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("needs about") && err.contains("GiB"), "{err}");
    assert!(cell_dirs(&art).is_empty(), "a cell was started");
    let plan = bitgrok(&["plan", s(&sw), "--artifacts", s(&art)]);
    assert!(text(&plan.stdout).contains("memory: the largest cell needs about"));
}
