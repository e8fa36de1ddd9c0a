//! The sweep runner: trains every cell that is not already done, each exactly once.
//!
//! Cells are taken from one queue by `jobs` worker threads. A worker checks the
//! cell's verified status, takes its lock (so another `bitgrok run` sharing the
//! artifacts never trains it at the same time), checks again under the lock, and
//! trains it, resuming from the cell's checkpoint when there is one. A cell locked
//! by another process is put back and waited for: when that process finishes it,
//! it counts as done here; when that process dies, its lock vanishes with it and
//! this run trains the cell from its last checkpoint.

use crate::engine::train::{self, Checkpoint, Progress, TrainHooks};
use crate::engine::weights::ModelWeights;
use crate::run::progress::Reporter;
use crate::store::{self, Artifacts, CellStatus};
use crate::sweep::cell::{short, Cell};
use anyhow::{bail, Result};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// How a run behaves.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Cells trained at once.
    pub jobs: usize,
    /// Matmul threads per cell.
    pub threads: usize,
    /// Whether a cell takes the cores of workers that found no cell left (when the
    /// threads were not set by hand).
    pub lend_idle_cores: bool,
    /// Retrain cells even when done.
    pub force: bool,
    /// Stop at the first failed cell.
    pub fail_fast: bool,
}

impl RunOptions {
    /// `jobs` cells at once (default: one per core) with the cores divided between them.
    pub fn with_jobs(jobs: Option<usize>, threads: Option<usize>) -> RunOptions {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let jobs = jobs.unwrap_or(cores).max(1);
        RunOptions {
            jobs,
            threads: threads.unwrap_or((cores / jobs).max(1)),
            lend_idle_cores: threads.is_none(),
            force: false,
            fail_fast: false,
        }
    }
}

/// What a run did.
#[derive(Debug, Default)]
pub struct RunReport {
    /// Keys trained (or resumed) to completion by this run.
    pub trained: Vec<String>,
    /// Keys found done and verified.
    pub cached: Vec<String>,
    /// Keys whose signature was computed by this run (after training, or for a done
    /// cell under new analysis settings).
    pub analysed: Vec<String>,
    /// Keys whose training failed, with the error.
    pub failed: Vec<(String, String)>,
    /// Keys left unfinished because the run was stopped.
    pub interrupted: Vec<String>,
    /// Keys whose analysis failed, with the error.
    pub analysis_failed: Vec<(String, String)>,
}

/// Set by the first SIGINT or SIGTERM: training checkpoints and stops.
pub fn stop_flag() -> &'static Arc<AtomicBool> {
    static STOP: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    STOP.get_or_init(|| Arc::new(AtomicBool::new(false)))
}

/// Route SIGINT and SIGTERM to [`stop_flag`]; a second signal exits at once (130).
pub fn install_stop_handler() -> Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    use signal_hook::flag;
    for sig in [SIGINT, SIGTERM] {
        // Registered first, so it sees the flag before the second handler sets it.
        flag::register_conditional_shutdown(sig, 130, Arc::clone(stop_flag()))?;
        flag::register(sig, Arc::clone(stop_flag()))?;
    }
    Ok(())
}

/// The cores of workers that found no cell left to take, shared among the cells
/// still training: the last cells of a run (or a run of fewer cells than jobs) use
/// every core. Threads never change a cell's bits.
#[derive(Default)]
struct IdleCores {
    idle: AtomicUsize,
    training: AtomicUsize,
}

impl IdleCores {
    /// Threads each training cell may take beyond its own.
    fn share(&self) -> usize {
        self.idle.load(Ordering::SeqCst) / self.training.load(Ordering::SeqCst).max(1)
    }
}

enum Outcome {
    Trained,
    Cached,
    /// Another process holds the lock: try again later.
    Busy,
    Failed(String),
    Interrupted,
}

/// Train every cell in `cells` that is not done (all of them with `force`), then
/// analyse every done cell under its analysis settings. Cells that share a key
/// (they differ only in analysis settings or `train.checkpoint_every`) are trained
/// once.
pub fn run(
    cells: &[Cell],
    artifacts: &Artifacts,
    opts: &RunOptions,
    stop: &AtomicBool,
) -> Result<RunReport> {
    let mut report = RunReport::default();
    let mut todo = VecDeque::new();
    let mut seen = std::collections::HashSet::new();
    for (i, cell) in cells.iter().enumerate() {
        if !seen.insert(&cell.key) {
            continue;
        }
        match artifacts.status(&cell.key) {
            CellStatus::Done(_) if !opts.force => {
                tidy_done_cell(artifacts, &cell.key);
                report.cached.push(cell.key.clone())
            }
            CellStatus::Corrupt(why) => {
                eprintln!(
                    "warning: cell {} counts as missing and will be retrained: {why}",
                    cell.key
                );
                todo.push_back((i, false));
            }
            _ => todo.push_back((i, false)),
        }
    }
    let total_steps = todo.iter().map(|&(i, _)| cells[i].config.train.steps).sum();
    let progress = Reporter::new(todo.len(), total_steps);
    let queue = Mutex::new(todo);
    let report = Mutex::new(report);
    let abort = AtomicBool::new(false);
    let cores = IdleCores::default();
    let more_threads = || match opts.lend_idle_cores {
        true => cores.share(),
        false => 0,
    };
    std::thread::scope(|s| {
        for _ in 0..opts.jobs.max(1) {
            s.spawn(|| loop {
                if stop.load(Ordering::SeqCst) || abort.load(Ordering::SeqCst) {
                    return;
                }
                let Some((i, waited)) = queue.lock().unwrap().pop_front() else {
                    cores.idle.fetch_add(opts.threads, Ordering::SeqCst);
                    return;
                };
                if waited {
                    std::thread::sleep(Duration::from_millis(200));
                }
                let cell = &cells[i];
                cores.training.fetch_add(1, Ordering::SeqCst);
                let outcome = run_cell(cell, artifacts, opts, &more_threads, stop, &progress);
                cores.training.fetch_sub(1, Ordering::SeqCst);
                if !matches!(outcome, Outcome::Busy | Outcome::Interrupted) {
                    progress.cell_settled(cell);
                }
                let mut r = report.lock().unwrap();
                match outcome {
                    Outcome::Trained => r.trained.push(cell.key.clone()),
                    Outcome::Cached => r.cached.push(cell.key.clone()),
                    Outcome::Busy => queue.lock().unwrap().push_back((i, true)),
                    Outcome::Interrupted => r.interrupted.push(cell.key.clone()),
                    Outcome::Failed(e) => {
                        progress.line(&format!(
                            "FAILED {} [{}]: {e}",
                            short(&cell.key),
                            cell.label()
                        ));
                        r.failed.push((cell.key.clone(), e));
                        if opts.fail_fast {
                            abort.store(true, Ordering::SeqCst);
                        }
                    }
                }
            });
        }
    });
    progress.finish();
    let mut report = report.into_inner().unwrap();
    // Cells never reached (a stop or --fail-fast) are unfinished too.
    for key in seen {
        let settled = report.trained.contains(key)
            || report.cached.contains(key)
            || report.failed.iter().any(|(f, _)| f == key);
        if !settled && !report.interrupted.contains(key) {
            report.interrupted.push(key.clone());
        }
    }
    if !stop.load(Ordering::SeqCst) {
        for cell in cells {
            let done = report.trained.contains(&cell.key) || report.cached.contains(&cell.key);
            if !done {
                continue;
            }
            match ensure_analysis(cell, artifacts) {
                Ok(true) => report.analysed.push(cell.key.clone()),
                Ok(false) => {}
                Err(e) => {
                    eprintln!("analysis of {} failed: {e:#}", short(&cell.key));
                    report
                        .analysis_failed
                        .push((cell.key.clone(), format!("{e:#}")));
                }
            }
        }
    }
    Ok(report)
}

fn run_cell(
    cell: &Cell,
    artifacts: &Artifacts,
    opts: &RunOptions,
    more_threads: &(dyn Fn() -> usize + Sync),
    stop: &AtomicBool,
    progress: &Reporter,
) -> Outcome {
    if !opts.force {
        match artifacts.status(&cell.key) {
            CellStatus::Done(_) => return Outcome::Cached,
            CellStatus::Corrupt(why) => progress.line(&format!(
                "warning: retraining cell {}: {why}",
                short(&cell.key)
            )),
            _ => {}
        }
    }
    let lock = match artifacts.try_lock(&cell.key) {
        Ok(Some(lock)) => lock,
        Ok(None) => return Outcome::Busy,
        Err(e) => {
            // The lock cannot even be opened, so no process can hold it: recording
            // the failure cannot land on another process's work.
            let msg = format!("{e:#}");
            let _ = artifacts.record_failure(&cell.key, opts.threads, &msg);
            return Outcome::Failed(msg);
        }
    };
    // Another process may have finished the cell between the check and the lock.
    if !opts.force {
        if let CellStatus::Done(_) = artifacts.status(&cell.key) {
            return Outcome::Cached;
        }
    }
    // The failure is recorded while the lock is still held, so it can never land
    // on top of another process's finished cell.
    match train_locked(cell, artifacts, opts, more_threads, stop, progress) {
        Ok(()) => Outcome::Trained,
        // Only the trainer's own stop is an interruption: any other error, a failed
        // checkpoint write after Ctrl-C included, is a failure with its message.
        Err(e) if is_interrupted(&e) => Outcome::Interrupted,
        Err(e) => {
            let msg = format!("{e:#}");
            if let Err(w) = artifacts.record_failure(&cell.key, opts.threads, &msg) {
                progress.line(&format!(
                    "warning: could not record the failure of {}: {w:#}",
                    cell.key
                ));
            }
            drop(lock);
            Outcome::Failed(msg)
        }
    }
}

/// Whether training ended because a stop was requested (the trainer's
/// [`train::Interrupted`], after its checkpoint was written).
fn is_interrupted(e: &anyhow::Error) -> bool {
    e.downcast_ref::<train::Interrupted>().is_some()
}

fn train_locked(
    cell: &Cell,
    artifacts: &Artifacts,
    opts: &RunOptions,
    more_threads: &(dyn Fn() -> usize + Sync),
    stop: &AtomicBool,
    progress: &Reporter,
) -> Result<()> {
    let dir = artifacts.cell_dir(&cell.key);
    store::remove_temporaries(&dir)?;
    for (from, to) in store::move_aside_directories(&dir)? {
        progress.line(&format!(
            "warning: {} is a directory where a file belongs; moved it to {} and rebuilding",
            from.display(),
            to.display()
        ));
    }
    let manifest_path = dir.join(store::MANIFEST);
    if manifest_path.exists() {
        // A failed, corrupt or forced cell: its manifest no longer holds.
        std::fs::remove_file(&manifest_path)?;
    } else if dir.join(store::MODEL_FILE).exists() {
        progress.line(&format!(
            "warning: {} has final weights but no manifest.json; training the cell again",
            dir.display()
        ));
    }
    store::write_atomic(
        &dir.join(store::CELL_TOML),
        cell.canonical_toml().as_bytes(),
    )?;
    let resume = if opts.force {
        None
    } else {
        store::load_checkpoint(&dir, |m| progress.line(m))
    };
    let started = store::now_secs();
    let bar = progress.cell_started(cell, resume.as_ref().map(|c| c.step).unwrap_or(0));
    let mut on_checkpoint = |c: &Checkpoint| store::save_checkpoint(&dir, c);
    let mut on_progress = |p: &Progress| progress.cell_progress(&bar, cell, p);
    let mut on_snapshot =
        |step: u64, w: &ModelWeights| store::write_snapshot(&dir, &cell.key, step, w);
    let hooks = TrainHooks {
        threads: opts.threads,
        more_threads,
        resume,
        on_checkpoint: &mut on_checkpoint,
        on_progress: &mut on_progress,
        on_snapshot: &mut on_snapshot,
        stop,
    };
    let output = train::train_cell(&cell.config, hooks);
    bar.finish_and_clear();
    let output = output?;
    store::save_trained_cell(&dir, &cell.key, &output, started, output.max_threads)?;
    for name in [store::CHECKPOINT, store::PREVIOUS_CHECKPOINT] {
        let _ = std::fs::remove_file(dir.join(name));
    }
    Ok(())
}

/// Analyse a done cell under its analysis settings unless a verified analysis is
/// already stored; returns whether it computed one. The analysis folder
/// `analysis/<analysis key>/` is built under a temporary name and renamed into
/// place, with its own manifest of checksums, while holding the cell's lock (so
/// `gc` and other runners never see it half made).
pub fn ensure_analysis(cell: &Cell, artifacts: &Artifacts) -> Result<bool> {
    let dir = artifacts.analysis_dir(&cell.key, &cell.analysis_key());
    let files = store::analysis_files(&cell.config);
    if store::verify_manifest_dir(&dir, &files).is_ok() {
        return Ok(false);
    }
    let _lock = artifacts.lock_waiting(&cell.key)?;
    // Every analysis is written under the lock: temporaries here are leftovers.
    store::remove_temporaries(&artifacts.cell_dir(&cell.key))?;
    match store::verify_manifest_dir(&dir, &files) {
        Ok(()) => return Ok(false),
        Err(why) if dir.exists() => {
            eprintln!(
                "warning: analysis {} is damaged ({why}); recomputing it",
                dir.display()
            )
        }
        Err(_) => {}
    }
    if !matches!(artifacts.status(&cell.key), CellStatus::Done(_)) {
        bail!("cell {} is no longer done", short(&cell.key));
    }
    let cell_dir = artifacts.cell_dir(&cell.key);
    let analysis = crate::analysis::analyze_cell(&cell_dir, &cell.analysis)?;
    store::write_dir_atomic(&dir, |tmp| analysis.write(tmp))?;
    Ok(true)
}

/// Remove what a run killed just after finishing a cell left in it (checkpoints,
/// temporaries), if no process holds the cell.
fn tidy_done_cell(artifacts: &Artifacts, key: &str) {
    let dir = artifacts.cell_dir(key);
    let leftovers = [store::CHECKPOINT, store::PREVIOUS_CHECKPOINT]
        .iter()
        .any(|n| dir.join(n).exists())
        || std::fs::read_dir(&dir).is_ok_and(|d| {
            d.flatten()
                .any(|e| store::gc::is_temporary(&e.file_name().to_string_lossy()))
        });
    if !leftovers {
        return;
    }
    if let Ok(Some(_lock)) = artifacts.try_lock(key) {
        if matches!(artifacts.status(key), CellStatus::Done(_)) {
            let _ = store::remove_temporaries(&dir);
            for n in [store::CHECKPOINT, store::PREVIOUS_CHECKPOINT] {
                let _ = std::fs::remove_file(dir.join(n));
            }
        }
    }
}
