//! The `bitgrok` binary: plan and check output and exit codes.

use bitgrok::key;
use bitgrok::sweep::grid;
use std::path::Path;
use std::process::{Command, Output};

fn bitgrok(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bitgrok"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("bitgrok runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn check_shipped_sweeps_succeeds() {
    let out = bitgrok(&["check", "sweeps/paper.toml", "sweeps/smoke.toml"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("ok: sweeps/paper.toml (15 cells)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("ok: sweeps/smoke.toml (6 cells)"),
        "{stdout}"
    );
}

#[test]
fn check_reports_every_problem_of_every_file_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let bad1 = dir.path().join("bad1.toml");
    let bad2 = dir.path().join("bad2.toml");
    std::fs::write(&bad1, "name = \"b\"\n[train]\nstepz = 1\nlr = -1\n").unwrap();
    std::fs::write(&bad2, "name = \"c\"\n[grid]\nmodulus = [2]\n").unwrap();
    let out = bitgrok(&[
        "check",
        bad1.to_str().unwrap(),
        "sweeps/smoke.toml",
        bad2.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{}:3:1: train.stepz: unknown setting",
            bad1.display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{}:4:1: train.lr: -1.0 is not allowed",
            bad1.display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{}:3:12: grid.modulus: 2 is too small",
            bad2.display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("2 of 3 sweep files failed"), "{stderr}");
    assert!(text(&out.stdout).contains("ok: sweeps/smoke.toml"));
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(bitgrok(&["check"]).status.code(), Some(2));
    assert_eq!(bitgrok(&["frobnicate"]).status.code(), Some(2));
}

#[test]
fn help_lists_the_commands() {
    let out = bitgrok(&["--help"]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    assert!(help.contains("plan") && help.contains("check"), "{help}");
    let plan = text(&bitgrok(&["plan", "--help"]).stdout);
    assert!(
        plan.contains("--artifacts <DIR>") && plan.contains("[default: artifacts]"),
        "{plan}"
    );
}

/// Published tables record `--version` in their provenance, so it must name the
/// versions that decide what a stored cell and its analysis mean.
#[test]
fn version_names_the_engine_analysis_and_store_versions() {
    let out = bitgrok(&["--version"]);
    assert!(out.status.success());
    let line = text(&out.stdout);
    assert!(
        line.starts_with(&format!("bitgrok {} (", env!("CARGO_PKG_VERSION"))),
        "{line}"
    );
    for (name, number) in [
        ("engine version", bitgrok::key::ENGINE_VERSION),
        ("analysis version", bitgrok::key::ANALYSIS_VERSION),
        ("store format", bitgrok::store::STORE_FORMAT),
    ] {
        assert!(line.contains(&format!("{name} {number}")), "{name}: {line}");
    }
}

/// The smoke sweep and its cells' keys, in grid order.
fn smoke() -> (bitgrok::sweep::Sweep, Vec<String>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let sweep = bitgrok::sweep::load(&root.join("sweeps/smoke.toml")).unwrap();
    let keys = grid::expand(&sweep)
        .iter()
        .map(|c| key::cell_key(&c.config))
        .collect();
    (sweep, keys)
}

#[test]
fn plan_shows_each_cell_with_its_cache_status() {
    let (_, keys) = smoke();
    let artifacts = tempfile::tempdir().unwrap();
    let cells = artifacts.path().join("cells");
    // Cell 0 done, cell 1 partial (directory without a done manifest), others missing.
    std::fs::create_dir_all(cells.join(&keys[0])).unwrap();
    // A done manifest lists (and checks) every file of a trained cell.
    let mut manifest = bitgrok::store::new_manifest(&keys[0], 0, 1);
    for name in bitgrok::store::CELL_FILES {
        let path = cells.join(&keys[0]).join(name);
        std::fs::write(&path, name).unwrap();
        let sum = bitgrok::store::hash_file(&path).unwrap();
        manifest.files.insert(name.to_string(), sum);
    }
    std::fs::write(
        cells.join(&keys[0]).join("manifest.json"),
        serde_json::to_string(&manifest).unwrap(),
    )
    .unwrap();
    std::fs::create_dir_all(cells.join(&keys[1])).unwrap();
    std::fs::write(cells.join(&keys[1]).join("cell.toml"), "").unwrap();

    let out = bitgrok(&[
        "plan",
        "sweeps/smoke.toml",
        "--artifacts",
        artifacts.path().to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    let header = lines
        .iter()
        .position(|l| l.starts_with("key "))
        .expect("a header row");
    assert_eq!(
        lines[header].split_whitespace().collect::<Vec<_>>(),
        ["key", "precision", "seed", "status"]
    );
    let rows: Vec<Vec<&str>> = lines[header + 1..header + 7]
        .iter()
        .map(|l| l.split_whitespace().collect())
        .collect();
    let expected = [
        ("fp32", "0", "done"),
        ("fp32", "1", "partial"),
        ("ternary", "0", "missing"),
        ("ternary", "1", "missing"),
        ("binary", "0", "missing"),
        ("binary", "1", "missing"),
    ];
    for (i, (row, (p, s, status))) in rows.iter().zip(expected).enumerate() {
        assert_eq!(row[0], &keys[i][..12]);
        assert_eq!(&row[1..], [p, s, status], "{stdout}");
    }
    assert_eq!(
        lines[header + 7],
        "total: 6 cells, 1 done, 1 partial, 0 failed, 4 missing"
    );
}

/// `plan --estimate` counts the steps left of the cells not done (a partial cell
/// without a checkpoint from step 0) and times each kind of cell once.
#[test]
fn plan_estimates_the_training_time_of_the_cells_not_done() {
    let (sweep, keys) = smoke();
    let steps = sweep.cells[0].config.train.steps;
    let artifacts = tempfile::tempdir().unwrap();
    let art = artifacts.path().to_str().unwrap();
    let estimate = |art: &str| {
        let out = bitgrok(&[
            "plan",
            "sweeps/smoke.toml",
            "--artifacts",
            art,
            "--estimate",
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout).lines().last().unwrap().to_string()
    };
    let line = estimate(art);
    assert!(
        line.starts_with(&format!(
            "time: 6 cells to train ({} steps), about ",
            6 * steps
        )),
        "{line}"
    );
    // Seeds share a kind: the three precisions are timed.
    assert!(
        line.contains("5 steps of each of 3 kinds of cell"),
        "{line}"
    );
    // A partial cell counts its steps from its checkpoint, here none: still all.
    std::fs::create_dir_all(artifacts.path().join("cells").join(&keys[1])).unwrap();
    assert!(estimate(art).contains(&format!("({} steps)", 6 * steps)));
}

#[test]
fn plan_of_a_bad_file_fails_with_its_problems() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "name = \"b\"\nwidth = 30\n").unwrap();
    let out = bitgrok(&["plan", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("width: width 30 is not divisible by model.heads = 4"));
}

#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    use std::process::Stdio;
    // Like `bitgrok plan … | head -0`: the reader is gone before the first line.
    let tmp = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_bitgrok"))
        .args(["plan", "sweeps/paper.toml", "--artifacts"])
        .arg(tmp.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = text(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
}
