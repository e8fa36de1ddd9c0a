//! The commands around a sweep run: --only, plan --explain, gc, analyze, diff, submit.

use std::path::Path;

mod common;
use common::{bitgrok, text, tiny_sweep as write_sweep};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn cell_keys(artifacts: &Path) -> Vec<String> {
    let mut keys: Vec<String> = std::fs::read_dir(artifacts.join("cells"))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    keys.sort();
    keys
}

#[test]
fn only_trains_the_selected_cells_and_rejects_unknown_axes() {
    let t = tempfile::tempdir().unwrap();
    let sweep =
        write_sweep(t.path(), "only", "[grid]\nprecision = [\"fp32\", \"binary\"]\nseed = [0, 1]\n[train]\nsteps = 20\neval_every = 10\n");
    let art = t.path().join("art");
    let out = bitgrok(&[
        "run",
        s(&sweep),
        "--artifacts",
        s(&art),
        "--only",
        "precision=binary,seed=1",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(cell_keys(&art).len(), 1);
    let plan = text(&bitgrok(&["plan", s(&sweep), "--artifacts", s(&art)]).stdout);
    let done: Vec<&str> = plan.lines().filter(|l| l.ends_with(" done")).collect();
    assert_eq!(done.len(), 1, "{plan}");
    assert!(
        done[0].contains(" binary ") && done[0].contains(" 1 "),
        "{plan}"
    );
    let bad = bitgrok(&[
        "run",
        s(&sweep),
        "--artifacts",
        s(&art),
        "--only",
        "precison=binary",
    ]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        text(&bad.stderr).contains("precison is not an axis"),
        "{}",
        text(&bad.stderr)
    );
}

#[test]
fn plan_explain_names_the_nearest_cell_and_what_differs() {
    let t = tempfile::tempdir().unwrap();
    let art = t.path().join("art");
    let old = write_sweep(
        t.path(),
        "old",
        "[train]\nsteps = 20\neval_every = 10\nlr = 1e-3\n",
    );
    assert!(bitgrok(&["run", s(&old), "--artifacts", s(&art)])
        .status
        .success());
    let new = write_sweep(
        t.path(),
        "new",
        "[train]\nsteps = 20\neval_every = 10\nlr = 3e-3\n",
    );
    let out = text(&bitgrok(&["plan", s(&new), "--artifacts", s(&art), "--explain"]).stdout);
    let key = &cell_keys(&art)[0][..12];
    assert!(
        out.contains(&format!(
            "nearest stored cell {key} differs in train.lr (0.001 -> 0.003)"
        )),
        "{out}"
    );
}

#[test]
fn gc_removes_only_unreferenced_cells_and_dry_run_removes_nothing() {
    let t = tempfile::tempdir().unwrap();
    let sweeps = t.path().join("sweeps");
    std::fs::create_dir_all(&sweeps).unwrap();
    let art = t.path().join("art");
    let keep = write_sweep(&sweeps, "keep", "[train]\nsteps = 20\neval_every = 10\n");
    let gone = write_sweep(
        t.path(),
        "gone",
        "seed = 7\n[train]\nsteps = 20\neval_every = 10\n",
    );
    for sweep in [&keep, &gone] {
        assert!(bitgrok(&["run", s(sweep), "--artifacts", s(&art)])
            .status
            .success());
    }
    let before = cell_keys(&art);
    assert_eq!(before.len(), 2);
    let dry = bitgrok(&[
        "gc",
        "--dry-run",
        "--sweeps",
        s(&sweeps),
        "--artifacts",
        s(&art),
    ]);
    assert!(dry.status.success(), "{}", text(&dry.stderr));
    assert!(
        text(&dry.stdout).contains("would remove"),
        "{}",
        text(&dry.stdout)
    );
    assert_eq!(cell_keys(&art), before);
    // Without --delete gc only lists: a cell of a sweep file kept elsewhere survives.
    let listed = bitgrok(&["gc", "--sweeps", s(&sweeps), "--artifacts", s(&art)]);
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    assert!(
        text(&listed.stdout).contains("--delete"),
        "{}",
        text(&listed.stdout)
    );
    assert_eq!(cell_keys(&art), before);
    let out = bitgrok(&[
        "gc",
        "--delete",
        "--sweeps",
        s(&sweeps),
        "--artifacts",
        s(&art),
    ]);
    assert!(out.status.success());
    let after = cell_keys(&art);
    assert_eq!(after.len(), 1);
    let plan = text(&bitgrok(&["plan", s(&keep), "--artifacts", s(&art)]).stdout);
    assert!(plan.contains("1 done"), "the referenced cell stays: {plan}");
    // A broken sweep file stops gc from deleting anything.
    std::fs::write(sweeps.join("broken.toml"), "name = \"b\"\nmodulus = 2\n").unwrap();
    let refused = bitgrok(&[
        "gc",
        "--delete",
        "--sweeps",
        s(&sweeps),
        "--artifacts",
        s(&art),
    ]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        text(&refused.stderr).contains("broken.toml"),
        "{}",
        text(&refused.stderr)
    );
}

#[test]
fn analyze_reads_a_cell_by_key_prefix_and_a_model_file() {
    let t = tempfile::tempdir().unwrap();
    let art = t.path().join("art");
    let sweep = write_sweep(
        t.path(),
        "an",
        "precision = \"ternary\"\n[train]\nsteps = 30\neval_every = 10\n",
    );
    assert!(bitgrok(&["run", s(&sweep), "--artifacts", s(&art)])
        .status
        .success());
    let key = cell_keys(&art)[0].clone();
    let out = bitgrok(&["analyze", &key[..8], "--artifacts", s(&art)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("label "),
        "{}",
        text(&out.stdout)
    );
    let stored: Vec<_> = std::fs::read_dir(art.join("cells").join(&key).join("analysis"))
        .unwrap()
        .collect();
    assert_eq!(stored.len(), 1, "same settings, same analysis folder");
    let cell = art.join("cells").join(&key);
    let model = cell.join("model.safetensors");
    let out_dir = t.path().join("external");
    let out = bitgrok(&["analyze", s(&model), "--out", s(&out_dir)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Without the cell's split and curves it says what it cannot give ...
    assert!(
        text(&out.stderr).contains("without --split")
            && text(&out.stderr).contains("without --curves"),
        "{}",
        text(&out.stderr)
    );
    // ... and with them the file's signature is the cell's own.
    let with = t.path().join("with-split");
    let out = bitgrok(&[
        "analyze",
        s(&model),
        "--out",
        s(&with),
        "--split",
        s(&cell.join("split.csv")),
        "--curves",
        s(&cell.join("curves.csv")),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        !text(&out.stderr).contains("note:"),
        "{}",
        text(&out.stderr)
    );
    let stored = std::fs::read_dir(cell.join("analysis"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    // The same signature, but for the initial weights' query path, which a model
    // file cannot give (its seed is not in it).
    let read = |dir: &std::path::Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(dir.join("signature.json")).unwrap()).unwrap()
    };
    let (mut from_file, mut from_cell) = (read(&with), read(&stored));
    assert!(from_file["algorithm"]["query_init"].is_null());
    assert!(
        from_cell["algorithm"]["query_init"]["score_spread"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    from_file["algorithm"]["query_init"] = serde_json::Value::Null;
    from_cell["algorithm"]["query_init"] = serde_json::Value::Null;
    assert_eq!(from_file, from_cell);
    let refused = bitgrok(&[
        "analyze",
        &key[..8],
        "--artifacts",
        s(&art),
        "--split",
        "x.csv",
    ]);
    assert_eq!(refused.status.code(), Some(2));
    for f in [
        "signature.json",
        "frequencies.csv",
        "neurons.csv",
        "manifest.json",
    ] {
        assert!(out_dir.join(f).is_file(), "missing {f}");
    }
    // Bare relative names, in and out: the output folder sits in the current folder.
    std::fs::copy(&model, t.path().join("m.safetensors")).unwrap();
    for args in [vec!["m.safetensors"], vec!["m.safetensors", "--out", "rel"]] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_bitgrok"))
            .arg("analyze")
            .args(&args)
            .current_dir(t.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    }
    assert!(t.path().join("m.analysis/signature.json").is_file());
    assert!(t.path().join("rel/signature.json").is_file());
    let missing = bitgrok(&["analyze", "ffffffff", "--artifacts", s(&art)]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        text(&missing.stderr).contains("no cell"),
        "{}",
        text(&missing.stderr)
    );
}

#[test]
fn diff_exit_status_follows_the_changes() {
    let t = tempfile::tempdir().unwrap();
    let (a, b) = (t.path().join("a.csv"), t.path().join("b.csv"));
    std::fs::write(
        &a,
        "precision,acc,label\nfp32,0.5000,clock\nbinary,0.2500,pizza\n",
    )
    .unwrap();
    std::fs::write(
        &b,
        "precision,acc,label\nbinary,0.2500,pizza\nfp32,0.5000,clock\n",
    )
    .unwrap();
    let same = bitgrok(&["diff", s(&a), s(&b)]);
    assert_eq!(same.status.code(), Some(0), "{}", text(&same.stdout));
    std::fs::write(
        &b,
        "precision,acc,label\nfp32,0.6000,clock\nbinary,0.2500,pizza\n",
    )
    .unwrap();
    let changed = bitgrok(&["diff", s(&a), s(&b), "--format", "markdown"]);
    assert_eq!(changed.status.code(), Some(1));
    let out = text(&changed.stdout);
    assert!(
        out.contains("| b.csv | precision=fp32 | acc | 0.5000 | 0.6000 | +0.1 |"),
        "{out}"
    );
    let tolerated = bitgrok(&["diff", s(&a), s(&b), "--tol", "acc=0.2"]);
    assert_eq!(tolerated.status.code(), Some(0));
    let missing = bitgrok(&["diff", s(&a), s(&t.path().join("nope.csv"))]);
    assert_eq!(missing.status.code(), Some(2));
}

#[test]
fn submit_dry_run_freezes_missing_cells_into_a_job_array() {
    let t = tempfile::tempdir().unwrap();
    let art = t.path().join("art");
    let sweep = write_sweep(
        t.path(),
        "sub",
        "[grid]\nprecision = [\"fp32\", \"ternary\", \"binary\"]\n[train]\nsteps = 20\neval_every = 10\n\
         [slurm]\nthrottle = 2\npartition = \"cpu\"\n",
    );
    assert!(bitgrok(&[
        "run",
        s(&sweep),
        "--artifacts",
        s(&art),
        "--only",
        "precision=fp32"
    ])
    .status
    .success());
    let out = bitgrok(&[
        "submit",
        s(&sweep),
        "--artifacts",
        s(&art),
        "--dry-run",
        "--time",
        "00:05:00",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("2 cells to train"), "{stdout}");
    for line in [
        "#SBATCH --array=0-1%2",
        "#SBATCH --partition=cpu",
        "#SBATCH --time=00:05:00",
    ] {
        assert!(
            stdout.lines().any(|l| l == line),
            "missing {line}:\n{stdout}"
        );
    }
    let subs: Vec<_> = std::fs::read_dir(art.join("submissions"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let cells: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(subs[0].join("cells.json")).unwrap())
            .unwrap();
    let precisions: Vec<&str> = cells
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["config"]["precision"].as_str().unwrap())
        .collect();
    assert_eq!(precisions, ["ternary", "binary"]);
    // run-cell trains an entry of the submission like a local run.
    let out = bitgrok(&[
        "run-cell",
        "--submission",
        s(&subs[0]),
        "--index",
        "1",
        "--artifacts",
        s(&art),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let plan = text(&bitgrok(&["plan", s(&sweep), "--artifacts", s(&art)]).stdout);
    assert!(plan.contains("2 done"), "{plan}");
    let bad = write_sweep(t.path(), "badslurm", "[slurm]\nthrotle = 2\n");
    let out = bitgrok(&["check", s(&bad)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("slurm") && text(&out.stderr).contains("throttle"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn only_compares_values_as_the_grid_does_and_must_match_a_cell() {
    let t = tempfile::tempdir().unwrap();
    let sweep = write_sweep(
        t.path(),
        "lr",
        "[grid]\n\"train.lr\" = [1e-3, 3e-3]\n[train]\nsteps = 20\neval_every = 10\n",
    );
    let art = t.path().join("art");
    let out = bitgrok(&[
        "run",
        s(&sweep),
        "--artifacts",
        s(&art),
        "--only",
        "train.lr=0.001",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(cell_keys(&art).len(), 1);
    let out = bitgrok(&[
        "run",
        s(&sweep),
        "--artifacts",
        s(&art),
        "--only",
        "train.lr=1e-3",
    ]);
    assert!(
        text(&out.stderr).contains("1 cell selected of 2"),
        "{}",
        text(&out.stderr)
    );
    let none = bitgrok(&[
        "run",
        s(&sweep),
        "--artifacts",
        s(&art),
        "--only",
        "train.lr=2e-3",
    ]);
    assert_eq!(none.status.code(), Some(2));
    assert!(
        text(&none.stderr).contains("matches none"),
        "{}",
        text(&none.stderr)
    );
}

#[test]
fn cells_differing_only_in_analysis_settings_train_once() {
    let t = tempfile::tempdir().unwrap();
    let sweep = write_sweep(
        t.path(),
        "fve",
        "[grid]\n\"analysis.fve_threshold\" = [0.8, 0.9]\n[train]\nsteps = 20\neval_every = 10\n",
    );
    let art = t.path().join("art");
    let out = bitgrok(&["run", s(&sweep), "--artifacts", s(&art), "--force"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("trained 1,"),
        "{}",
        text(&out.stderr)
    );
    let key = &cell_keys(&art)[0];
    let analyses = std::fs::read_dir(art.join("cells").join(key).join("analysis"))
        .unwrap()
        .count();
    assert_eq!(analyses, 2, "one analysis per analysis setting");
    let cells = std::fs::read_to_string(art.join("sweeps/fve/cells.csv")).unwrap();
    assert_eq!(
        cells.lines().filter(|l| l.contains(",done,")).count(),
        2,
        "{cells}"
    );
}

#[test]
fn gc_without_sweep_files_removes_nothing() {
    let t = tempfile::tempdir().unwrap();
    let art = t.path().join("art");
    let sweep = write_sweep(t.path(), "g", "[train]\nsteps = 20\neval_every = 10\n");
    assert!(bitgrok(&["run", s(&sweep), "--artifacts", s(&art)])
        .status
        .success());
    let empty = t.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = bitgrok(&["gc", "--sweeps", s(&empty), "--artifacts", s(&art)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no sweep files"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(cell_keys(&art).len(), 1);
}
