//! Running a sweep's missing cells as one Slurm job array.
//!
//! `bitgrok submit` freezes the list of cells still to train into a submission
//! folder under the artifacts directory (`submissions/<id>/cells.json`, each entry
//! with its full resolved config, so later edits of the sweep file change nothing
//! for the submitted job), writes `job.sbatch` for one array over them, and hands
//! it to `sbatch`. Array task `i` runs `bitgrok run-cell --submission DIR --index i`,
//! which trains entry `i` through the same runner as local runs: the same locks,
//! atomic writes, checkpoints and failure records, so requeued or preempted tasks
//! resume and a cell done meanwhile by someone else is skipped.

use crate::store;
pub use crate::sweep::spec::SlurmOptions;
use crate::sweep::Cell;
use anyhow::{bail, Context, Result};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The folder holding all submissions of an artifacts directory.
pub fn submissions_dir(artifacts: &store::Artifacts) -> PathBuf {
    artifacts.root.join("submissions")
}

/// Write a submission folder (cells.json and job.sbatch) for `cells`; returns its path.
/// `exe` is the bitgrok binary the tasks run.
pub fn prepare(
    sweep_name: &str,
    cells: &[Cell],
    artifacts: &store::Artifacts,
    opts: &SlurmOptions,
    exe: &Path,
) -> Result<PathBuf> {
    if cells.is_empty() {
        bail!("nothing to submit: every cell of the sweep is done");
    }
    let root = std::fs::canonicalize(&artifacts.root)
        .with_context(|| format!("resolving {}", artifacts.root.display()))?;
    let id = format!("{sweep_name}-{}-{}", store::now_secs(), std::process::id());
    let dir = root.join("submissions").join(&id);
    std::fs::create_dir_all(dir.join("logs"))?;
    store::write_atomic(
        &dir.join("cells.json"),
        serde_json::to_string_pretty(cells)?.as_bytes(),
    )?;
    let script = sbatch_script(&id, cells.len(), opts, exe, &root, &dir);
    store::write_atomic(&dir.join("job.sbatch"), script.as_bytes())?;
    Ok(dir)
}

/// The sbatch script for one job array over `n` cells.
pub fn sbatch_script(
    id: &str,
    n: usize,
    opts: &SlurmOptions,
    exe: &Path,
    artifacts: &Path,
    dir: &Path,
) -> String {
    let mut s = String::from("#!/bin/bash\n");
    let throttle = if opts.throttle > 0 {
        format!("%{}", opts.throttle)
    } else {
        String::new()
    };
    s += &format!("#SBATCH --job-name=bitgrok-{id}\n");
    s += &format!("#SBATCH --array=0-{}{throttle}\n", n - 1);
    s += &format!("#SBATCH --output={}/logs/%A_%a.out\n", dir.display());
    s += "#SBATCH --requeue\n";
    let cpus = opts.cpus_per_task.max(1);
    s += &format!("#SBATCH --cpus-per-task={cpus}\n");
    for (flag, value) in [
        ("time", &opts.time),
        ("partition", &opts.partition),
        ("mem", &opts.mem),
    ] {
        if !value.is_empty() {
            s += &format!("#SBATCH --{flag}={value}\n");
        }
    }
    for extra in &opts.extra {
        s += &format!("#SBATCH {extra}\n");
    }
    s += &format!(
        "exec {} run-cell --artifacts {} --submission {} --index \"$SLURM_ARRAY_TASK_ID\" --threads {cpus}\n",
        shell_quote(&exe.display().to_string()),
        shell_quote(&artifacts.display().to_string()),
        shell_quote(&dir.display().to_string()),
    );
    s
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Submit a prepared folder's script with sbatch; returns the job id.
pub fn sbatch(dir: &Path) -> Result<String> {
    let out = Command::new("sbatch")
        .arg("--parsable")
        .arg(dir.join("job.sbatch"))
        .output()
        .context("running sbatch (is Slurm installed and SLURM_CONF set?)")?;
    if !out.status.success() {
        bail!(
            "sbatch failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let id = String::from_utf8_lossy(&out.stdout)
        .trim()
        .split(';')
        .next()
        .unwrap_or("")
        .to_string();
    store::write_atomic(&dir.join("job_id"), id.as_bytes())?;
    Ok(id)
}

/// Entry `index` of a submission folder.
pub fn submitted_cell(dir: &Path, index: usize) -> Result<Cell> {
    let path = dir.join("cells.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut cells: Vec<Cell> =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    if index >= cells.len() {
        bail!(
            "{} has {} cells; there is no index {index}",
            path.display(),
            cells.len()
        );
    }
    Ok(cells.swap_remove(index))
}

/// Ids of the Slurm jobs still pending or running (empty when squeue is not available).
pub fn live_jobs() -> BTreeSet<String> {
    let Ok(out) = Command::new("squeue").args(["-h", "-o", "%F"]).output() else {
        return BTreeSet::new();
    };
    if !out.status.success() {
        return BTreeSet::new();
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().to_string())
        .collect()
}

/// Keys of cells in submissions whose array job Slurm still lists as pending or
/// running (empty when squeue is not available).
pub fn queued_keys(artifacts: &store::Artifacts) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    let live = live_jobs();
    if live.is_empty() {
        return keys;
    }
    let Ok(entries) = std::fs::read_dir(submissions_dir(artifacts)) else {
        return keys;
    };
    for e in entries.flatten() {
        let job = std::fs::read_to_string(e.path().join("job_id")).unwrap_or_default();
        if !live.contains(job.trim()) {
            continue;
        }
        if let Ok(text) = std::fs::read_to_string(e.path().join("cells.json")) {
            if let Ok(cells) = serde_json::from_str::<Vec<Cell>>(&text) {
                keys.extend(cells.into_iter().map(|c| c.key));
            }
        }
    }
    keys
}

/// A cell's state for `plan` and `status`: the store's (with `running` for a locked
/// cell), and `queued` for a cell not started that a live Slurm job will train.
pub fn cell_state(
    artifacts: &store::Artifacts,
    key: &str,
    queued: &BTreeSet<String>,
) -> (store::CellState, store::CellStatus) {
    let (state, status) = artifacts.state(key);
    match state {
        store::CellState::Missing if queued.contains(key) => (store::CellState::Queued, status),
        s => (s, status),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_has_the_array_throttle_and_options() {
        let opts = SlurmOptions {
            throttle: 4,
            time: "01:00:00".into(),
            partition: "gpu".into(),
            cpus_per_task: 2,
            mem: "2G".into(),
            extra: vec!["--qos=low".into()],
        };
        let s = sbatch_script(
            "smoke-1",
            12,
            &opts,
            Path::new("/bin/bitgrok"),
            Path::new("/a"),
            Path::new("/a/submissions/x"),
        );
        for line in [
            "#SBATCH --array=0-11%4",
            "#SBATCH --cpus-per-task=2",
            "#SBATCH --time=01:00:00",
            "#SBATCH --partition=gpu",
            "#SBATCH --mem=2G",
            "#SBATCH --qos=low",
            "#SBATCH --requeue",
        ] {
            assert!(s.lines().any(|l| l == line), "missing {line} in\n{s}");
        }
        assert!(s.contains("run-cell --artifacts '/a' --submission '/a/submissions/x' --index \"$SLURM_ARRAY_TASK_ID\" --threads 2"), "{s}");
        let plain = sbatch_script(
            "s",
            3,
            &SlurmOptions::default(),
            Path::new("/b"),
            Path::new("/a"),
            Path::new("/d"),
        );
        assert!(
            plain.contains("--array=0-2\n") && !plain.contains("--partition"),
            "{plain}"
        );
    }
}
