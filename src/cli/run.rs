//! `run`: train, analyse and tabulate a sweep (or the cells `--only` selects).

use super::aggregate::write_tables;
use super::{at_least_one, load_sweep_in, ArtifactsArg, CliError, CmdResult};
use crate::run::schedule::{self, RunOptions};
use crate::sweep::cell::{columns, short, Cell};
use crate::sweep::{grid, settings};
use crate::text::count;
use anyhow::{anyhow, bail, Result};
use clap::Args;
use std::path::PathBuf;
use std::sync::atomic::Ordering;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The sweep file.
    #[arg(value_name = "SWEEP.toml")]
    pub sweep: PathBuf,
    /// Cells trained at once [default: one per core].
    #[arg(long, short = 'j', value_parser = at_least_one())]
    pub jobs: Option<usize>,
    /// Matmul threads per cell [default: cores / jobs, and a cell also takes the cores
    /// of workers that found no cell left].
    #[arg(long, value_parser = at_least_one())]
    pub threads: Option<usize>,
    /// Retrain the selected cells even when done.
    #[arg(long)]
    pub force: bool,
    /// Stop at the first failed cell instead of going on with the others.
    #[arg(long)]
    pub fail_fast: bool,
    /// Only cells whose axis values match, e.g. `precision=binary,seed=0`; repeat the
    /// flag for alternatives.
    #[arg(long, value_name = "AXIS=VALUE,...")]
    pub only: Vec<String>,
    #[command(flatten)]
    pub artifacts: ArtifactsArg,
}

/// Fail before any work when the cells to train, `jobs` at a time, would need more
/// memory than this machine has available, naming the estimate.
fn refuse_cells_too_large(
    chosen: &[Cell],
    artifacts: &crate::store::Artifacts,
    jobs: usize,
    force: bool,
) -> Result<()> {
    let Some(available) = crate::config::available_memory_bytes() else {
        return Ok(());
    };
    let mut need: Vec<(u64, &Cell)> = chosen
        .iter()
        .filter(|c| force || artifacts.status(&c.key).state() != crate::store::CellState::Done)
        .map(|c| (c.config.memory_estimate_bytes(), c))
        .collect();
    need.sort_by_key(|(n, _)| std::cmp::Reverse(*n));
    let at_once: u64 = need.iter().take(jobs).map(|(n, _)| n).sum();
    if let Some(&(largest, cell)) = need.first() {
        if at_once > available {
            bail!(
                "cell {} needs about {} to train ({} for the {} largest trained at once), \
                 more than the {} this machine has available: use fewer --jobs or a \
                 smaller modulus, width or mlp_ratio",
                short(&cell.key),
                crate::text::bytes(largest),
                crate::text::bytes(at_once),
                jobs.min(need.len()),
                crate::text::bytes(available)
            );
        }
    }
    Ok(())
}

pub fn run(args: &RunArgs) -> CmdResult {
    let (sweep, artifacts) = load_sweep_in(&args.sweep, &args.artifacts)?;
    let cells = &sweep.cells;
    let filters = parse_filters(&args.only, &columns(&grid::axis_names(&sweep), cells))?;
    let chosen: Vec<Cell> = cells
        .iter()
        .filter(|c| selected(c, &filters))
        .cloned()
        .collect();
    if chosen.is_empty() {
        return Err(anyhow!(
            "--only {} matches none of the {} cells",
            args.only.join(" --only "),
            cells.len()
        )
        .into());
    }
    let mut opts = RunOptions::with_jobs(args.jobs, args.threads);
    refuse_cells_too_large(&chosen, &artifacts, opts.jobs, args.force)?;
    opts.force = args.force;
    opts.fail_fast = args.fail_fast;
    schedule::install_stop_handler()?;
    let stop = schedule::stop_flag();
    eprintln!(
        "sweep {}: {} selected of {}; {} x {}",
        sweep.name,
        count(chosen.len(), "cell"),
        cells.len(),
        count(opts.jobs, "job"),
        count(opts.threads, "thread")
    );
    let report = schedule::run(&chosen, &artifacts, &opts, stop)?;
    eprintln!(
        "trained {}, already done {}, analysed {}, failed {}, unfinished {}",
        report.trained.len(),
        report.cached.len(),
        report.analysed.len(),
        report.failed.len(),
        report.interrupted.len()
    );
    if stop.load(Ordering::SeqCst) {
        eprintln!("stopped: checkpoints are saved; run the same command again to resume");
        return Err(CliError::Reported(130));
    }
    write_tables(&sweep, &artifacts)?;
    if report.failed.is_empty()
        && report.interrupted.is_empty()
        && report.analysis_failed.is_empty()
    {
        return Ok(());
    }
    for (key, error) in &report.failed {
        eprintln!(
            "failed: {} ({error}); log: {}",
            short(key),
            artifacts
                .cell_dir(key)
                .join(crate::store::TRAIN_LOG)
                .display()
        );
    }
    for (key, error) in &report.analysis_failed {
        eprintln!("analysis failed: {} ({error})", short(key));
    }
    Err(CliError::Reported(1))
}

/// Parse `--only` filters: each is a conjunction of `axis=value`; a cell matches
/// when any filter matches (or there are none).
fn parse_filters(only: &[String], columns: &[String]) -> Result<Vec<Vec<(String, String)>>> {
    only.iter()
        .map(|f| {
            f.split(',')
                .map(|kv| {
                    let (k, v) = kv.split_once('=').ok_or_else(|| {
                        anyhow!("--only {f}: expected AXIS=VALUE pairs separated by commas")
                    })?;
                    let k = k.trim().to_string();
                    if !columns.contains(&k) {
                        bail!(
                            "--only {f}: {k} is not an axis of this sweep (axes: {})",
                            columns.join(", ")
                        );
                    }
                    Ok((k.clone(), canonical_value(&k, v.trim())))
                })
                .collect()
        })
        .collect()
}

/// A value as the grid spells it, so `1e-3` matches an axis value written `0.001`.
fn canonical_value(setting: &str, text: &str) -> String {
    let Ok(table) = toml::from_str::<toml::Table>(&format!("v = {text}")) else {
        return text.to_string();
    };
    match (
        table["v"].clone(),
        settings::setting(setting).map(|s| &s.kind),
    ) {
        (toml::Value::Integer(i), Some(settings::Kind::Float)) => {
            settings::value_text(&toml::Value::Float(i as f64))
        }
        (v, _) => settings::value_text(&v),
    }
}

fn selected(cell: &Cell, filters: &[Vec<(String, String)>]) -> bool {
    filters.is_empty()
        || filters
            .iter()
            .any(|f| f.iter().all(|(k, v)| cell.axis_value(k) == v))
}
