//! `plan` and `status`: one row per cell with its state, from the same
//! `run::slurm::cell_state`, so the two commands always agree.

use super::{load_sweep_in, ArtifactsArg, CmdResult};
use crate::run::slurm;
use crate::store::{self, nearest, Artifacts, CellState, CellStatus};
use crate::sweep::cell::{columns, short, Cell};
use crate::sweep::{grid, Sweep};
use clap::Args;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The sweep file, e.g. sweeps/paper.toml.
    #[arg(value_name = "SWEEP.toml")]
    pub sweep: PathBuf,
    /// For each cell not done, name the nearest stored cell and the settings that differ.
    #[arg(long)]
    pub explain: bool,
    /// Estimate the training time of the cells not done, from a few steps of each
    /// kind of cell timed now on this machine (about a second per kind).
    #[arg(long)]
    pub estimate: bool,
    #[command(flatten)]
    pub artifacts: ArtifactsArg,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The sweep file.
    #[arg(value_name = "SWEEP.toml")]
    pub sweep: PathBuf,
    #[command(flatten)]
    pub artifacts: ArtifactsArg,
}

pub fn plan(args: &PlanArgs) -> CmdResult {
    let (sweep, artifacts) = load_sweep_in(&args.sweep, &args.artifacts)?;
    let stored = if args.explain {
        nearest::stored_configs(&artifacts)
    } else {
        Vec::new()
    };
    let mut explanations = Vec::new();
    println!("sweep {} ({})", sweep.name, args.sweep.display());
    if !sweep.description.is_empty() {
        println!("{}", sweep.description);
    }
    let most = sweep
        .cells
        .iter()
        .map(|c| c.config.memory_estimate_bytes())
        .max()
        .unwrap_or(0);
    println!(
        "memory: the largest cell needs about {} to train{}",
        crate::text::bytes(most),
        crate::config::available_memory_bytes()
            .map(|a| format!(" ({} available)", crate::text::bytes(a)))
            .unwrap_or_default()
    );
    print_cells(&sweep, &artifacts, &[], |cell, state, _| {
        if args.explain && state != CellState::Done {
            explanations.push(explain(cell, &stored));
        }
        Vec::new()
    });
    for e in explanations {
        println!("{e}");
    }
    if args.estimate {
        println!("{}", estimate(&sweep, &artifacts));
    }
    Ok(())
}

/// Steps timed per kind of cell for `--estimate` (after two untimed ones).
const ESTIMATE_STEPS: usize = 5;

/// "time: …": the steps left to train (a partial cell from its checkpoint), each
/// kind of cell (its settings but seed, step count and optimiser constants, which do
/// not change a step's cost) timed for a few steps on one thread, as `run` trains
/// it by default (one job per core).
fn estimate(sweep: &Sweep, artifacts: &Artifacts) -> String {
    let queued = slurm::queued_keys(artifacts);
    let mut seen = std::collections::HashSet::new();
    let mut kinds: BTreeMap<String, (crate::config::CellConfig, u64)> = BTreeMap::new();
    let mut cells = 0;
    for cell in &sweep.cells {
        if !seen.insert(&cell.key) {
            continue;
        }
        let (state, _) = slurm::cell_state(artifacts, &cell.key, &queued);
        let done_steps = match state {
            CellState::Done | CellState::Unanalysed => continue,
            CellState::Running | CellState::Partial => {
                let path = artifacts.cell_dir(&cell.key).join(store::CHECKPOINT);
                crate::engine::train::checkpoint_step(&path).unwrap_or(0)
            }
            _ => 0,
        };
        cells += 1;
        let mut kind = cell.config.clone();
        kind.seed = 0;
        kind.train.steps = 1;
        kind.train.lr = 1e-3;
        kind.train.weight_decay = 1.0;
        kind.train.warmup_steps = 0;
        kind.train.checkpoint_every = 1;
        let left = cell.config.train.steps.saturating_sub(done_steps);
        kinds.entry(format!("{kind:?}")).or_insert((kind, 0)).1 += left;
    }
    if cells == 0 {
        return "time: every cell is done".into();
    }
    let mut seconds = 0.0;
    let mut steps = 0;
    for (cfg, left) in kinds.values() {
        let r = crate::engine::bench::bench(cfg, 2, ESTIMATE_STEPS, 1);
        seconds += r.median_ms / 1e3 * *left as f64;
        steps += left;
    }
    let cores = crate::run::schedule::RunOptions::with_jobs(None, None).jobs;
    let wall = seconds / cores.min(cells) as f64;
    format!(
        "time: {} to train ({} steps), about {} of CPU time at the step times measured \
         now ({} of each of {} of cell, one thread); about {} with `run`'s default {} \
         (training only, not analysis)",
        crate::text::count(cells, "cell"),
        steps,
        duration(seconds),
        crate::text::count(ESTIMATE_STEPS, "step"),
        crate::text::count(kinds.len(), "kind"),
        duration(wall),
        crate::text::count(cores.min(cells), "job"),
    )
}

/// "45 s", "12 min", "3.2 h".
fn duration(seconds: f64) -> String {
    if seconds < 90.0 {
        format!("{seconds:.0} s")
    } else if seconds < 5400.0 {
        format!("{:.0} min", seconds / 60.0)
    } else {
        format!("{:.1} h", seconds / 3600.0)
    }
}

pub fn status(args: &StatusArgs) -> CmdResult {
    let (sweep, artifacts) = load_sweep_in(&args.sweep, &args.artifacts)?;
    print_cells(&sweep, &artifacts, &["steps"], |cell, state, status| {
        let steps = match (state, status) {
            (_, CellStatus::Done(m)) => m.steps.to_string(),
            (CellState::Failed, _) => "-".to_string(),
            (CellState::Running | CellState::Partial, _) => checkpoint_step(&artifacts, &cell.key),
            _ => "0".to_string(),
        };
        vec![format!("{steps}/{}", cell.config.train.steps)]
    });
    Ok(())
}

/// Print one row per cell (key prefix, display columns, state, then the `extra`
/// columns that `describe` fills) and a total line counting the states (running
/// and queued only when there are any).
fn print_cells(
    sweep: &Sweep,
    artifacts: &Artifacts,
    extra: &[&str],
    mut describe: impl FnMut(&Cell, CellState, &CellStatus) -> Vec<String>,
) {
    let queued = slurm::queued_keys(artifacts);
    let columns = columns(&grid::axis_names(sweep), &sweep.cells);
    let mut header = vec!["key".to_string()];
    header.extend(columns.iter().cloned());
    header.push("status".to_string());
    header.extend(extra.iter().map(|e| e.to_string()));
    let mut rows = vec![header];
    let mut counts: BTreeMap<CellState, usize> = BTreeMap::new();
    for cell in &sweep.cells {
        let (state, status) = slurm::cell_state(artifacts, &cell.key, &queued);
        *counts.entry(state).or_default() += 1;
        let mut row = vec![cell.short_key().to_string()];
        row.extend(columns.iter().map(|col| cell.axis_value(col).to_string()));
        row.push(state.word().to_string());
        row.extend(describe(cell, state, &status));
        rows.push(row);
    }
    print!("{}", crate::report::table::render(&rows));
    let totals: Vec<String> = CellState::ALL
        .iter()
        .filter(|s| match s {
            CellState::Unanalysed => false,
            CellState::Running | CellState::Queued => counts.contains_key(s),
            _ => true,
        })
        .map(|s| format!("{} {s}", counts.get(s).copied().unwrap_or(0)))
        .collect();
    println!(
        "total: {}, {}",
        crate::text::count(sweep.cells.len(), "cell"),
        totals.join(", ")
    );
}

/// The step of a cell's checkpoint, read from the checkpoint's header only.
fn checkpoint_step(artifacts: &Artifacts, key: &str) -> String {
    let path = artifacts.cell_dir(key).join(store::CHECKPOINT);
    crate::engine::train::checkpoint_step(&path)
        .map(|s| s.to_string())
        .unwrap_or_else(|_| "0".to_string())
}

/// "cell K [label]: nearest stored cell N differs in a (x -> y), ...".
fn explain(cell: &Cell, stored: &[(String, BTreeMap<String, String>)]) -> String {
    let (me, label) = (cell.short_key(), cell.label());
    match nearest::nearest(&cell.config, stored) {
        None => format!("{me} [{label}]: no stored cell to compare with"),
        Some((k, diffs)) if diffs.is_empty() => format!(
            "{me} [{label}]: stored cell {} has the same settings under another engine version",
            short(k)
        ),
        Some((k, diffs)) => format!(
            "{me} [{label}]: nearest stored cell {} differs in {}",
            short(k),
            diffs.join(", ")
        ),
    }
}
