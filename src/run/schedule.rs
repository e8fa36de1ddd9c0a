//! The sweep runner: trains every cell that is not already done, each exactly once.
//!
//! Cells are taken from one queue by `jobs` worker threads. A worker checks the
//! cell's verified status, takes its lock (so another `bitgrok run` sharing the
//! artifacts never trains it at the same time), checks again under the lock, and
//! trains it, resuming from the cell's checkpoint when there is one. A cell locked
//! by another process is put back and waited for: when that process finishes it,
//! it counts as done here; when that process dies, its lock vanishes with it and
//! this run trains the cell from its last checkpoint.

use crate::config::{AnalysisConfig, CellConfig};
use crate::engine::train::{self, Checkpoint, Progress, TrainHooks};
use crate::engine::weights::ModelWeights;
use crate::store::{self, Artifacts, CellStatus};
use anyhow::{Context, Result};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::VecDeque;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One cell to train: its key, resolved config and a short label for display.
#[derive(Clone, Debug)]
pub struct CellJob {
    pub key: String,
    pub config: CellConfig,
    pub analysis: AnalysisConfig,
    /// The axis values, e.g. `precision=fp32 modulus=113 seed=0`.
    pub label: String,
    /// The canonical config as TOML, stored as cell.toml.
    pub canonical_toml: String,
}

/// How a run behaves.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Cells trained at once.
    pub jobs: usize,
    /// Matmul threads per cell.
    pub threads: usize,
    /// Retrain cells even when done.
    pub force: bool,
    /// Stop at the first failed cell.
    pub fail_fast: bool,
}

/// The jobs of a sweep's cells, in grid order.
pub fn jobs(cells: &[crate::sweep::grid::Cell]) -> Vec<CellJob> {
    cells
        .iter()
        .map(|c| CellJob {
            key: crate::key::cell_key(&c.config),
            config: c.config.clone(),
            analysis: c.analysis.clone(),
            label: c
                .axes
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" "),
            canonical_toml: crate::key::cell_toml(&c.config),
        })
        .collect()
}

impl RunOptions {
    /// `jobs` cells at once (default: one per core) with the cores divided between them.
    pub fn with_jobs(jobs: Option<usize>, threads: Option<usize>) -> RunOptions {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let jobs = jobs.unwrap_or(cores).max(1);
        let threads = threads.unwrap_or((cores / jobs).max(1)).max(1);
        RunOptions {
            jobs,
            threads,
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
}

/// Set by Ctrl-C: training checkpoints and stops.
pub static STOP: AtomicBool = AtomicBool::new(false);

/// Route SIGINT and SIGTERM to [`STOP`] (a second signal kills as usual).
pub fn install_stop_handler() {
    extern "C" fn on_signal(sig: libc::c_int) {
        STOP.store(true, Ordering::SeqCst);
        // SAFETY: restoring the default disposition is async-signal-safe.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
    // SAFETY: installing a handler that only stores an atomic and resets itself.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
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
    cells: &[CellJob],
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
            CellStatus::Done(_) if !opts.force => report.cached.push(cell.key.clone()),
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
    std::thread::scope(|s| {
        for _ in 0..opts.jobs.max(1) {
            s.spawn(|| loop {
                if stop.load(Ordering::SeqCst) || abort.load(Ordering::SeqCst) {
                    return;
                }
                let Some((i, waited)) = queue.lock().unwrap().pop_front() else {
                    return;
                };
                if waited {
                    std::thread::sleep(Duration::from_millis(200));
                }
                let cell = &cells[i];
                let outcome = run_cell(cell, artifacts, opts, stop, &progress);
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
                            cell.label
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
                Err(e) => eprintln!("warning: analysis of {} failed: {e:#}", short(&cell.key)),
            }
        }
    }
    Ok(report)
}

/// The first 12 hex digits of a key, as shown in tables and messages.
pub fn short(key: &str) -> &str {
    &key[..key.len().min(12)]
}

fn run_cell(
    cell: &CellJob,
    artifacts: &Artifacts,
    opts: &RunOptions,
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
        Err(e) => return Outcome::Failed(format!("{e:#}")),
    };
    // Another process may have finished the cell between the check and the lock.
    if !opts.force {
        if let CellStatus::Done(_) = artifacts.status(&cell.key) {
            return Outcome::Cached;
        }
    }
    // The failure is recorded while the lock is still held, so it can never land
    // on top of another process's finished cell.
    match train_locked(cell, artifacts, opts, stop, progress) {
        Ok(()) => Outcome::Trained,
        Err(_) if stop.load(Ordering::SeqCst) => Outcome::Interrupted,
        Err(e) => {
            let msg = format!("{e:#}");
            if let Err(w) = record_failure(cell, artifacts, opts, &msg) {
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

fn train_locked(
    cell: &CellJob,
    artifacts: &Artifacts,
    opts: &RunOptions,
    stop: &AtomicBool,
    progress: &Reporter,
) -> Result<()> {
    let dir = artifacts.cell_dir(&cell.key);
    store::remove_temporaries(&dir)?;
    let manifest_path = dir.join(store::MANIFEST);
    if manifest_path.exists() {
        // A failed, corrupt or forced cell: its manifest no longer holds.
        std::fs::remove_file(&manifest_path)?;
    }
    store::write_atomic(&dir.join("cell.toml"), cell.canonical_toml.as_bytes())?;
    let checkpoint_path = dir.join(store::CHECKPOINT);
    let resume = if opts.force {
        None
    } else {
        load_checkpoint(&checkpoint_path, progress)
    };
    let started = store::now_secs();
    let mut log = Vec::new();
    let bar = progress.cell_started(cell, resume.as_ref().map(|c| c.step).unwrap_or(0));
    let mut on_checkpoint = |c: &Checkpoint| store::write_atomic(&checkpoint_path, &c.to_bytes()?);
    let mut on_progress = |p: &Progress| {
        progress.cell_progress(&bar, cell, p);
        if let Some(acc) = p.test_acc {
            log.push(format!(
                "step {} train_loss {:.6} test_acc {acc:.4}",
                p.step, p.train_loss
            ));
        }
    };
    let mut on_snapshot =
        |step: u64, w: &ModelWeights| store::write_snapshot(&dir, &cell.key, step, w);
    let hooks = TrainHooks {
        threads: opts.threads,
        resume,
        on_checkpoint: &mut on_checkpoint,
        on_progress: &mut on_progress,
        on_snapshot: &mut on_snapshot,
        stop,
    };
    let output = train::train_cell(&cell.config, hooks);
    bar.finish_and_clear();
    let output = output?;
    let snapshots: Vec<String> = train::snapshot_steps(&cell.config)
        .into_iter()
        .map(store::snapshot_file)
        .collect();
    store::save_trained_cell(
        &dir,
        &cell.key,
        &output,
        started,
        opts.threads,
        &log,
        &snapshots,
    )?;
    let _ = std::fs::remove_file(&checkpoint_path);
    Ok(())
}

/// Analyse a done cell under its analysis settings unless a verified analysis is
/// already stored; returns whether it computed one. The analysis folder
/// `analysis/<analysis key>/` is built under a temporary name and renamed into
/// place, with its own manifest of checksums.
pub fn ensure_analysis(cell: &CellJob, artifacts: &Artifacts) -> Result<bool> {
    let dir = artifacts.analysis_dir(&cell.key, &crate::key::analysis_key(&cell.analysis));
    if store::verify_manifest_dir(&dir).is_ok() {
        return Ok(false);
    }
    let cell_dir = artifacts.cell_dir(&cell.key);
    let mut sig = crate::analysis::analyze_cell(&cell_dir, &cell.analysis)?;
    let progress =
        crate::analysis::progress::cell_progress(&cell_dir, &cell.config, &mut sig, &cell.analysis)
            .with_context(|| format!("progress measures of {}", cell_dir.display()))?;
    store::write_dir_atomic(&dir, |tmp| {
        crate::analysis::write_tables(&sig, tmp)?;
        match &progress {
            Some(rows) => crate::analysis::progress::write_progress(rows, tmp),
            None => Ok(()),
        }
    })?;
    Ok(true)
}

/// A checkpoint to resume from, or `None` (a corrupt one is reported and ignored).
fn load_checkpoint(path: &std::path::Path, progress: &Reporter) -> Option<Checkpoint> {
    let bytes = std::fs::read(path).ok()?;
    match Checkpoint::from_bytes(&bytes) {
        Ok(c) => Some(c),
        Err(e) => {
            progress.line(&format!(
                "warning: ignoring unreadable checkpoint {}: {e:#}",
                path.display()
            ));
            None
        }
    }
}

fn record_failure(
    cell: &CellJob,
    artifacts: &Artifacts,
    opts: &RunOptions,
    error: &str,
) -> Result<()> {
    let dir = artifacts.cell_dir(&cell.key);
    store::write_atomic(
        &dir.join("train.log"),
        format!("error: {error}\n").as_bytes(),
    )?;
    let manifest = store::Manifest {
        status: "failed".into(),
        error: Some(error.to_string()),
        ..store::new_manifest(&cell.key, store::now_secs(), opts.threads)
    };
    store::write_atomic(
        &dir.join(store::MANIFEST),
        serde_json::to_string_pretty(&manifest)?.as_bytes(),
    )
    .context("writing the failure manifest")
}

/// Progress display: indicatif bars on a terminal (an overall bar over the steps of
/// all cells to train, whose rate gives the ETA, and one bar per running cell),
/// plain periodic lines otherwise.
struct Reporter {
    multi: Option<MultiProgress>,
    overall: ProgressBar,
    started: Instant,
    last_line: Mutex<Instant>,
    /// Per running cell: the last step reported, to advance the overall bar.
    seen: Mutex<std::collections::HashMap<String, u64>>,
    cells: usize,
    settled: Mutex<usize>,
}

impl Reporter {
    fn new(cells: usize, total_steps: u64) -> Reporter {
        let multi = std::io::stderr().is_terminal().then(MultiProgress::new);
        let overall = match &multi {
            Some(m) => m.add(ProgressBar::new(total_steps)),
            None => ProgressBar::with_draw_target(Some(total_steps), ProgressDrawTarget::hidden()),
        };
        overall.set_style(
            ProgressStyle::with_template(
                "{prefix:>8} [{bar:30}] {msg}  {elapsed} elapsed  ETA {eta}",
            )
            .unwrap()
            .progress_chars("=> "),
        );
        overall.set_prefix("sweep");
        overall.set_message(format!("0/{cells} cells"));
        Reporter {
            multi,
            overall,
            started: Instant::now(),
            last_line: Mutex::new(Instant::now() - Duration::from_secs(60)),
            seen: Mutex::new(Default::default()),
            cells,
            settled: Mutex::new(0),
        }
    }

    fn line(&self, msg: &str) {
        match &self.multi {
            Some(m) => {
                let _ = m.println(msg);
            }
            None => eprintln!("{msg}"),
        }
    }

    fn advance(&self, cell: &CellJob, step: u64) {
        let mut seen = self.seen.lock().unwrap();
        let last = seen.entry(cell.key.clone()).or_insert(0);
        self.overall.inc(step.saturating_sub(*last));
        *last = step.max(*last);
    }

    fn cell_started(&self, cell: &CellJob, step: u64) -> ProgressBar {
        self.advance(cell, step);
        let bar = match &self.multi {
            Some(m) => m.add(ProgressBar::new(cell.config.train.steps)),
            None => ProgressBar::hidden(),
        };
        bar.set_style(
            ProgressStyle::with_template("{prefix:>8} [{bar:30}] {pos}/{len} {msg}")
                .unwrap()
                .progress_chars("=> "),
        );
        bar.set_prefix(cell.key[..8].to_string());
        bar.set_position(step);
        bar.set_message(cell.label.clone());
        if self.multi.is_none() {
            eprintln!(
                "training {} [{}] from step {step}",
                short(&cell.key),
                cell.label
            );
        }
        bar
    }

    fn cell_progress(&self, bar: &ProgressBar, cell: &CellJob, p: &Progress) {
        self.advance(cell, p.step);
        bar.set_position(p.step);
        let acc = p
            .test_acc
            .map(|a| format!(" test_acc {a:.3}"))
            .unwrap_or_default();
        bar.set_message(format!("{} loss {:.4}{acc}", cell.label, p.train_loss));
        if self.multi.is_none() {
            let mut last = self.last_line.lock().unwrap();
            if last.elapsed() >= Duration::from_secs(10) {
                *last = Instant::now();
                eprintln!(
                    "  {} step {}/{} loss {:.4}{acc} ({:.0}s elapsed)",
                    short(&cell.key),
                    p.step,
                    p.steps,
                    p.train_loss,
                    self.started.elapsed().as_secs_f64()
                );
            }
        }
    }

    /// A cell is done, failed or was found done by another process.
    fn cell_settled(&self, cell: &CellJob) {
        self.advance(cell, cell.config.train.steps);
        let mut n = self.settled.lock().unwrap();
        *n += 1;
        self.overall
            .set_message(format!("{}/{} cells", *n, self.cells));
        if self.multi.is_none() {
            eprintln!(
                "[{}/{}] {} [{}] settled ({:.1}s elapsed)",
                *n,
                self.cells,
                short(&cell.key),
                cell.label,
                self.started.elapsed().as_secs_f64()
            );
        }
    }

    fn finish(&self) {
        self.overall.finish_and_clear();
    }
}
