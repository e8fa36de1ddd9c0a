//! Helpers shared by the tests that drive the `bitgrok` binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Run the binary with `args` and wait for it.
pub fn bitgrok(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bitgrok"))
        .args(args)
        .output()
        .expect("bitgrok runs")
}

/// A sweep file `dir/NAME.toml` of tiny cells (p = 11, width 16) with `body` after
/// those settings: the fixture the command tests share.
pub fn tiny_sweep(dir: &Path, name: &str, body: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!("name = \"{name}\"\nmodulus = 11\nwidth = 16\n{body}"),
    )
    .unwrap();
    path
}

/// `bitgrok run SWEEP --artifacts ARTIFACTS`, which must succeed.
pub fn run_sweep(sweep: &Path, artifacts: &Path) {
    let out = bitgrok(&[
        "run",
        sweep.to_str().unwrap(),
        "--artifacts",
        artifacts.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The cell folders under `artifacts/cells`, sorted (none when there is no such folder).
pub fn cell_dirs(artifacts: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(artifacts.join("cells"))
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    dirs.sort();
    dirs
}

/// Weights at each snapshot step.
pub type Snapshots = Vec<(u64, bitgrok::engine::weights::ModelWeights)>;

/// Train one thread, collecting the snapshots and checkpoints; after `stop_at`
/// updates (when given) ask training to stop, which writes a checkpoint and fails
/// with `Interrupted`.
pub fn train_until(
    cfg: &bitgrok::config::CellConfig,
    resume: Option<bitgrok::engine::train::Checkpoint>,
    stop_at: Option<u64>,
) -> (
    anyhow::Result<bitgrok::engine::train::TrainOutput>,
    Snapshots,
    Vec<bitgrok::engine::train::Checkpoint>,
) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let stop = AtomicBool::new(false);
    let mut snaps = Vec::new();
    let mut checkpoints = Vec::new();
    let out = bitgrok::engine::train::train_cell(
        cfg,
        bitgrok::engine::train::TrainHooks {
            threads: 1,
            more_threads: &|| 0,
            resume,
            on_checkpoint: &mut |c| {
                checkpoints.push(c.clone());
                Ok(())
            },
            on_progress: &mut |p| {
                if Some(p.step) == stop_at {
                    stop.store(true, Ordering::SeqCst);
                }
            },
            on_snapshot: &mut |step, w| {
                snaps.push((step, w.clone()));
                Ok(())
            },
            stop: &stop,
        },
    );
    (out, snaps, checkpoints)
}

/// Train a cell with no checkpoints, progress or snapshots.
pub fn train_quietly(
    cfg: &bitgrok::config::CellConfig,
    threads: usize,
) -> anyhow::Result<bitgrok::engine::train::TrainOutput> {
    let stop = std::sync::atomic::AtomicBool::new(false);
    bitgrok::engine::train::train_cell(
        cfg,
        bitgrok::engine::train::TrainHooks {
            threads,
            more_threads: &|| 0,
            resume: None,
            on_checkpoint: &mut |_| Ok(()),
            on_progress: &mut |_| {},
            on_snapshot: &mut |_, _| Ok(()),
            stop: &stop,
        },
    )
}
