//! Garbage collection of an artifacts folder. It finds what no sweep file
//! references (cells, analyses, tables of sweeps no file defines, finished Slurm
//! submissions) and what is never wanted (leftover temporaries, checkpoints of done
//! cells). It removes only when asked (`delete`), and touches a cell folder only
//! while holding that cell's lock, so it never races a runner.

use crate::store::{self, Artifacts, CellStatus};
use anyhow::{Context, Result};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A temporary file younger than this may belong to a write in progress.
pub const STALE_AFTER: Duration = Duration::from_secs(600);

/// What the sweep files reference.
#[derive(Debug, Default)]
pub struct Keep {
    /// Cell keys.
    pub cells: BTreeSet<String>,
    /// (cell key, analysis key).
    pub analyses: BTreeSet<(String, String)>,
    /// Sweep names (folders under `sweeps/`).
    pub sweeps: BTreeSet<String>,
    /// Slurm job ids still pending or running.
    pub live_jobs: BTreeSet<String>,
}

/// One thing gc found: its path, size and why it may go.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub path: PathBuf,
    pub bytes: u64,
    pub why: &'static str,
}

/// What gc found (and removed, with `delete`), and what it skipped.
#[derive(Debug, Default)]
pub struct Report {
    pub found: Vec<Found>,
    /// Cells left alone because a process was training them.
    pub busy: Vec<PathBuf>,
}

impl Report {
    pub fn bytes(&self) -> u64 {
        self.found.iter().map(|f| f.bytes).sum()
    }
}

/// Find (and with `delete`, remove) everything that `keep` does not reference.
pub fn collect(artifacts: &Artifacts, keep: &Keep, delete: bool) -> Result<Report> {
    let mut report = Report::default();
    let remove = |found: Found, report: &mut Report| -> Result<()> {
        if delete {
            let p = &found.path;
            let r = if p.is_dir() {
                std::fs::remove_dir_all(p)
            } else {
                std::fs::remove_file(p)
            };
            r.with_context(|| format!("removing {}", p.display()))?;
        }
        report.found.push(found);
        Ok(())
    };
    for key in sorted_names(&artifacts.cells_dir()) {
        let path = artifacts.cell_dir(&key);
        // Held while gc looks inside, so no run writes the cell meanwhile.
        let Some(_lock) = artifacts.try_lock(&key)? else {
            report.busy.push(path);
            continue;
        };
        if !keep.cells.contains(&key) {
            let bytes = store::dir_size(&path);
            remove(
                found(path, bytes, "no sweep file references this cell"),
                &mut report,
            )?;
            continue;
        }
        for akey in sorted_names(&path.join("analysis")) {
            let a = path.join("analysis").join(&akey);
            let why = if is_temporary(&akey) {
                "leftover temporary"
            } else if keep.analyses.contains(&(key.clone(), akey)) {
                continue;
            } else {
                "no sweep file uses these analysis settings"
            };
            remove(found(a.clone(), store::dir_size(&a), why), &mut report)?;
        }
        for name in sorted_names(&path) {
            if is_temporary(&name) {
                let p = path.join(&name);
                remove(
                    found(p.clone(), store::dir_size(&p), "leftover temporary"),
                    &mut report,
                )?;
            }
        }
        if matches!(artifacts.status(&key), CellStatus::Done(_)) {
            for name in [store::CHECKPOINT, store::PREVIOUS_CHECKPOINT] {
                let p = path.join(name);
                if p.is_file() {
                    let bytes = store::dir_size(&p);
                    remove(
                        found(p, bytes, "checkpoint of a finished cell"),
                        &mut report,
                    )?;
                }
            }
        }
    }
    let sweeps = artifacts.root.join("sweeps");
    for name in sorted_names(&sweeps) {
        let p = sweeps.join(&name);
        if is_temporary(&name) {
            remove(
                found(p.clone(), store::dir_size(&p), "leftover temporary"),
                &mut report,
            )?;
        } else if !keep.sweeps.contains(&name) {
            let bytes = store::dir_size(&p);
            remove(
                found(p, bytes, "tables of a sweep no sweep file defines"),
                &mut report,
            )?;
        } else {
            for f in stale_sweep_temporaries(&p) {
                remove(
                    found(f.clone(), store::dir_size(&f), "leftover temporary"),
                    &mut report,
                )?;
            }
        }
    }
    let submissions = artifacts.root.join("submissions");
    for id in sorted_names(&submissions) {
        let p = submissions.join(&id);
        let job = std::fs::read_to_string(p.join("job_id")).unwrap_or_default();
        if !keep.live_jobs.contains(job.trim()) {
            let bytes = store::dir_size(&p);
            remove(
                found(p, bytes, "Slurm submission with no pending or running job"),
                &mut report,
            )?;
        }
    }
    Ok(report)
}

fn found(path: PathBuf, bytes: u64, why: &'static str) -> Found {
    Found { path, bytes, why }
}

/// Entry names of a folder, sorted (none when it does not exist).
fn sorted_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The name pattern of every temporary bitgrok writes (`.NAME.….tmp`).
pub fn is_temporary(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(".tmp")
}

/// Stale temporaries of a sweep's output folder `dir`: in it and in the report's
/// `figures/` and `cells/` folders under it.
pub fn stale_sweep_temporaries(dir: &Path) -> Vec<PathBuf> {
    [dir.to_path_buf(), dir.join("figures"), dir.join("cells")]
        .iter()
        .flat_map(|d| stale_temporaries(d))
        .collect()
}

/// Temporaries in `dir` that no write in progress owns: left by an exited process
/// of this host, or older than [`STALE_AFTER`].
pub fn stale_temporaries(dir: &Path) -> Vec<PathBuf> {
    sorted_names(dir)
        .into_iter()
        .filter(|n| is_temporary(n))
        .filter(|n| {
            store::atomic::temporary_of_dead_process(n)
                || dir
                    .join(n)
                    .symlink_metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t.elapsed().unwrap_or_default() >= STALE_AFTER)
        })
        .map(|n| dir.join(n))
        .collect()
}
