//! The `bitgrok` command line. Each subcommand is one variant of [`Command`] with its
//! own argument struct and one function.
//!
//! Exit codes: 0 success; 1 a failure the command reports (invalid sweep file, failed
//! cells, differences found by `diff`); 2 usage errors and unexpected errors.

use crate::config::AnalysisConfig;
use crate::key::{analysis_key, SHORT_KEY_LEN};
use crate::report::diff::{self, DiffFormat, DiffOptions};
use crate::run::schedule::{self, short, CellJob, RunOptions};
use crate::run::slurm::{self, SlurmOptions};
use crate::store::{self, Artifacts, CellStatus};
use crate::sweep::grid;
use crate::sweep::spec::{self, Sweep};
use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "bitgrok",
    version,
    about = "Declarative sweeps that train one-layer transformers on modular addition \
             at fp32, ternary, binary and k-bit weight precision and compare the \
             algorithms they learn."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the cells of a sweep: key prefix, axis values and cache status
    /// (done / partial / failed / missing).
    Plan(PlanArgs),
    /// Validate sweep files and print every problem; exits non-zero if any file fails.
    Check(CheckArgs),
    /// Train every cell of a sweep that is not done, analyse it, and write the
    /// sweep's tables under ARTIFACTS/sweeps/NAME/.
    Run(RunArgs),
    /// Show each cell's state: done, partial (with steps done), running (locked by a
    /// process, here or on the cluster), queued (in a pending Slurm job), failed, missing.
    Status(StatusArgs),
    /// Compute the learned-algorithm signature of a trained cell (by key or key
    /// prefix) or of any safetensors file with TransformerLens names.
    Analyze(AnalyzeArgs),
    /// Write the sweep's tables (cells, frequencies, compare, summary) from the
    /// stored cells, without training.
    Aggregate(AggregateArgs),
    /// Compare two CSV tables or two folders of them; exit 1 when anything changed
    /// beyond tolerance.
    Diff(DiffArgs),
    /// Time full training steps (forward, backward, quantization, optimizer) for one
    /// configuration and print the median milliseconds per step and peak memory.
    Bench(BenchArgs),
    /// Remove cells that no sweep under the sweeps folder references, and leftover
    /// temporary files; prints what it frees.
    Gc(GcArgs),
    /// Submit a sweep's missing cells to Slurm as one job array.
    Submit(SubmitArgs),
    /// Train one cell of a Slurm submission (what each array task runs).
    RunCell(RunCellArgs),
}

/// The artifacts directory, for every command that reads or writes artifacts.
#[derive(Debug, Args)]
pub struct ArtifactsArg {
    /// Artifacts directory (trained cells live in DIR/cells/<key>/).
    #[arg(long, value_name = "DIR", default_value = "artifacts")]
    pub artifacts: PathBuf,
}

impl ArtifactsArg {
    fn open(&self) -> Artifacts {
        Artifacts::new(&self.artifacts)
    }
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The sweep file, e.g. sweeps/paper.toml.
    #[arg(value_name = "SWEEP.toml")]
    pub sweep: PathBuf,
    /// For each cell not done, name the nearest stored cell and the settings that differ.
    #[arg(long)]
    pub explain: bool,
    #[command(flatten)]
    pub artifacts: ArtifactsArg,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// One or more sweep files.
    #[arg(value_name = "SWEEP.toml", required = true)]
    pub sweeps: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The sweep file.
    #[arg(value_name = "SWEEP.toml")]
    pub sweep: PathBuf,
    /// Cells trained at once [default: one per core].
    #[arg(long, short = 'j')]
    pub jobs: Option<usize>,
    /// Matmul threads per cell [default: cores / jobs].
    #[arg(long)]
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

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The sweep file.
    #[arg(value_name = "SWEEP.toml")]
    pub sweep: PathBuf,
    #[command(flatten)]
    pub artifacts: ArtifactsArg,
}

#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    /// A cell key or unique key prefix, or a .safetensors file.
    pub target: String,
    /// Take the analysis settings from this sweep file's [analysis] table
    /// [default: the documented defaults].
    #[arg(long, value_name = "SWEEP.toml")]
    pub sweep: Option<PathBuf>,
    /// Output folder for a file target [default: FILE's folder/<file stem>.analysis].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// The `model.attention_rate` a file target was trained with (a cell's comes from
    /// its cell.toml).
    #[arg(long, value_name = "R", default_value_t = 1.0)]
    pub attention_rate: f64,
    #[command(flatten)]
    pub artifacts: ArtifactsArg,
}

#[derive(Debug, Args)]
pub struct AggregateArgs {
    /// The sweep file.
    #[arg(value_name = "SWEEP.toml")]
    pub sweep: PathBuf,
    #[command(flatten)]
    pub artifacts: ArtifactsArg,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Format {
    Text,
    Markdown,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// Old CSV file or folder of CSV files.
    pub old: PathBuf,
    /// New CSV file or folder of CSV files.
    pub new: PathBuf,
    /// Identity columns matching rows [default: the shortest leading run of columns
    /// that tells every row apart].
    #[arg(long, value_delimiter = ',')]
    pub key: Vec<String>,
    /// Relative tolerance for float cells.
    #[arg(long, default_value_t = 1e-3)]
    pub rtol: f64,
    /// Absolute tolerance for float cells.
    #[arg(long, default_value_t = 1e-6)]
    pub atol: f64,
    /// Absolute tolerance for one column, replacing rtol/atol there, e.g. `test_acc=0.01`.
    #[arg(long, value_name = "COLUMN=TOL")]
    pub tol: Vec<String>,
    /// Columns to leave out, e.g. wall-clock timings (comma-separated or repeated).
    #[arg(long, value_delimiter = ',', value_name = "COLUMN")]
    pub ignore: Vec<String>,
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Take the configuration from this sweep's first cell (other flags override it).
    #[arg(long, value_name = "SWEEP.toml")]
    pub sweep: Option<PathBuf>,
    /// fp32, ternary, binary, int8, ...
    #[arg(long)]
    pub precision: Option<String>,
    #[arg(long)]
    pub modulus: Option<usize>,
    #[arg(long)]
    pub width: Option<usize>,
    /// Untimed steps before measuring.
    #[arg(long, default_value_t = 5)]
    pub warmup: usize,
    /// Timed steps.
    #[arg(long, default_value_t = 30)]
    pub iters: usize,
    /// Matmul threads [default: all cores].
    #[arg(long)]
    pub threads: Option<usize>,
}

#[derive(Debug, Args)]
pub struct GcArgs {
    /// Folder of sweep files whose cells are kept.
    #[arg(long, value_name = "DIR", default_value = "sweeps")]
    pub sweeps: PathBuf,
    /// Print what would be removed without removing it.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub artifacts: ArtifactsArg,
}

#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// The sweep file.
    #[arg(value_name = "SWEEP.toml")]
    pub sweep: PathBuf,
    /// Write the submission and print the sbatch script without submitting.
    #[arg(long)]
    pub dry_run: bool,
    /// At most this many array tasks at once.
    #[arg(long)]
    pub throttle: Option<usize>,
    /// Time limit per task, e.g. 02:00:00.
    #[arg(long)]
    pub time: Option<String>,
    #[arg(long)]
    pub partition: Option<String>,
    /// CPUs per task (also the matmul threads of each task).
    #[arg(long)]
    pub cpus_per_task: Option<usize>,
    /// Memory per task, e.g. 2G.
    #[arg(long)]
    pub mem: Option<String>,
    /// Extra sbatch option, e.g. --sbatch-arg=--qos=low (repeatable).
    #[arg(long, value_name = "OPTION", allow_hyphen_values = true)]
    pub sbatch_arg: Vec<String>,
    #[command(flatten)]
    pub artifacts: ArtifactsArg,
}

#[derive(Debug, Args)]
pub struct RunCellArgs {
    /// Submission folder written by `bitgrok submit`.
    #[arg(long, value_name = "DIR")]
    pub submission: PathBuf,
    /// Entry of the submission (the array task id).
    #[arg(long)]
    pub index: usize,
    /// Matmul threads.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    #[command(flatten)]
    pub artifacts: ArtifactsArg,
}

/// Parse the command line and run it.
pub fn main() -> ExitCode {
    run(Cli::parse())
}

pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Plan(args) => plan(&args),
        Command::Check(args) => check(&args),
        Command::Run(args) => run_sweep(&args),
        Command::Status(args) => status(&args),
        Command::Analyze(args) => analyze(&args),
        Command::Aggregate(args) => aggregate(&args),
        Command::Diff(args) => diff_cmd(&args),
        Command::Bench(args) => bench(&args),
        Command::Gc(args) => gc(&args),
        Command::Submit(args) => submit(&args),
        Command::RunCell(args) => run_cell(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Load a sweep, or print its problems and fail with exit code 1.
fn load_sweep(path: &Path) -> Result<std::result::Result<Sweep, ExitCode>> {
    match spec::load(path) {
        Ok(s) => Ok(Ok(s)),
        Err(e) => {
            eprintln!("{e}");
            Ok(Err(ExitCode::FAILURE))
        }
    }
}

macro_rules! sweep_or_exit {
    ($path:expr) => {
        match load_sweep($path)? {
            Ok(s) => s,
            Err(code) => return Ok(code),
        }
    };
}

/// The display columns of a sweep's cells: its axes, then any other setting a
/// `[[cells]]` entry names.
fn columns(sweep: &Sweep, cells: &[grid::Cell]) -> Vec<String> {
    let mut columns = grid::axis_names(sweep);
    for c in cells {
        for (k, _) in &c.axes {
            if !columns.contains(k) {
                columns.push(k.clone());
            }
        }
    }
    columns
}

fn axis_value<'a>(cell: &'a grid::Cell, col: &str) -> &'a str {
    cell.axes
        .iter()
        .find(|(k, _)| k == col)
        .map(|(_, v)| v.as_str())
        .unwrap_or("-")
}

fn plan(args: &PlanArgs) -> Result<ExitCode> {
    let sweep = sweep_or_exit!(&args.sweep);
    let cells = grid::expand(&sweep);
    let artifacts = args.artifacts.open();
    let stored = if args.explain {
        stored_configs(&artifacts)
    } else {
        Vec::new()
    };
    let mut explanations = Vec::new();
    println!("sweep {} ({})", sweep.name, args.sweep.display());
    if !sweep.description.is_empty() {
        println!("{}", sweep.description);
    }
    print_cells(
        &sweep,
        &cells,
        &["status"],
        &["done", "partial", "failed", "missing"],
        |job| {
            let status = artifacts.status(&job.key);
            if args.explain && !matches!(status, CellStatus::Done(_)) {
                explanations.push(explain(job, &stored));
            }
            vec![status.word().to_string()]
        },
    );
    for e in explanations {
        println!("{e}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Print one row per cell (key prefix, display columns, then the `extra` columns
/// that `describe` fills, the first being the state) and a total line counting
/// the states named in `words`.
fn print_cells(
    sweep: &Sweep,
    cells: &[grid::Cell],
    extra: &[&str],
    words: &[&str],
    mut describe: impl FnMut(&CellJob) -> Vec<String>,
) {
    let columns = columns(sweep, cells);
    let mut header = vec!["key".to_string()];
    header.extend(columns.iter().cloned());
    header.extend(extra.iter().map(|e| e.to_string()));
    let mut rows = vec![header];
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for (c, job) in cells.iter().zip(schedule::jobs(cells)) {
        let described = describe(&job);
        *counts.entry(described[0].clone()).or_default() += 1;
        let mut row = vec![job.key[..SHORT_KEY_LEN].to_string()];
        row.extend(columns.iter().map(|col| axis_value(c, col).to_string()));
        row.extend(described);
        rows.push(row);
    }
    print!("{}", table(&rows));
    println!(
        "total: {} cells, {}",
        cells.len(),
        count_words(&counts, words)
    );
}

fn count_words(counts: &BTreeMap<String, usize>, words: &[&str]) -> String {
    words
        .iter()
        .map(|w| format!("{} {w}", counts.get(*w).copied().unwrap_or(0)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every stored cell's key and flattened config (dotted name -> value text).
fn stored_configs(artifacts: &Artifacts) -> Vec<(String, BTreeMap<String, String>)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(artifacts.cells_dir()) else {
        return out;
    };
    for e in entries.flatten() {
        let key = e.file_name().to_string_lossy().into_owned();
        if !matches!(artifacts.status_with(&key, false), CellStatus::Done(_)) {
            continue;
        }
        if let Ok(text) = std::fs::read_to_string(e.path().join("cell.toml")) {
            if let Ok(value) = text.parse::<toml::Table>() {
                out.push((key, flatten(&toml::Value::Table(value))));
            }
        }
    }
    out.sort();
    out
}

fn flatten(v: &toml::Value) -> BTreeMap<String, String> {
    fn walk(prefix: &str, v: &toml::Value, out: &mut BTreeMap<String, String>) {
        match v {
            toml::Value::Table(t) => {
                for (k, v) in t {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, v, out);
                }
            }
            other => {
                out.insert(prefix.to_string(), spec::value_text(other));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk("", v, &mut out);
    out.remove("train.checkpoint_every");
    out
}

/// "cell K: nearest stored cell N differs in a (x -> y), ...".
fn explain(job: &CellJob, stored: &[(String, BTreeMap<String, String>)]) -> String {
    let mine = flatten(&toml::Value::try_from(&job.config).expect("config serialises"));
    let nearest = stored
        .iter()
        .map(|(k, theirs)| {
            let diffs: Vec<String> = mine
                .iter()
                .filter(|(name, v)| theirs.get(*name) != Some(v))
                .map(|(name, v)| {
                    format!(
                        "{name} ({} -> {v})",
                        theirs.get(name).map(String::as_str).unwrap_or("unset")
                    )
                })
                .collect();
            (diffs.len(), k, diffs)
        })
        .min_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    match nearest {
        None => format!(
            "{} [{}]: no stored cell to compare with",
            short(&job.key),
            job.label
        ),
        Some((0, k, _)) => format!(
            "{} [{}]: stored cell {} has the same settings under another engine version",
            short(&job.key),
            job.label,
            short(k)
        ),
        Some((_, k, diffs)) => {
            format!(
                "{} [{}]: nearest stored cell {} differs in {}",
                short(&job.key),
                job.label,
                short(k),
                diffs.join(", ")
            )
        }
    }
}

/// Left-aligned columns separated by two spaces.
fn table(rows: &[Vec<String>]) -> String {
    let n = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let widths: Vec<usize> = (0..n)
        .map(|i| {
            rows.iter()
                .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let cells: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out += cells.join("  ").trim_end();
        out += "\n";
    }
    out
}

fn check(args: &CheckArgs) -> Result<ExitCode> {
    let mut failed = 0;
    for path in &args.sweeps {
        match spec::load(path) {
            Ok(sweep) => println!(
                "ok: {} ({} cells)",
                path.display(),
                grid::expand(&sweep).len()
            ),
            Err(e) => {
                failed += 1;
                eprintln!("{e}");
                let n = e.problems.len();
                eprintln!(
                    "{}: {n} problem{}",
                    path.display(),
                    if n == 1 { "" } else { "s" }
                );
            }
        }
    }
    if failed == 0 {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("{failed} of {} sweep files failed", args.sweeps.len());
        Ok(ExitCode::FAILURE)
    }
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
    match (table["v"].clone(), spec::setting(setting).map(|s| &s.kind)) {
        (toml::Value::Integer(i), Some(spec::Kind::Float)) => {
            spec::value_text(&toml::Value::Float(i as f64))
        }
        (v, _) => spec::value_text(&v),
    }
}

fn selected(cell: &grid::Cell, filters: &[Vec<(String, String)>]) -> bool {
    filters.is_empty()
        || filters
            .iter()
            .any(|f| f.iter().all(|(k, v)| axis_value(cell, k) == v))
}

fn run_sweep(args: &RunArgs) -> Result<ExitCode> {
    let sweep = sweep_or_exit!(&args.sweep);
    let cells = grid::expand(&sweep);
    let filters = parse_filters(&args.only, &columns(&sweep, &cells))?;
    let chosen: Vec<grid::Cell> = cells
        .iter()
        .filter(|c| selected(c, &filters))
        .cloned()
        .collect();
    if chosen.is_empty() {
        bail!(
            "--only {} matches none of the {} cells",
            args.only.join(" --only "),
            cells.len()
        );
    }
    let jobs = schedule::jobs(&chosen);
    let artifacts = args.artifacts.open();
    let mut opts = RunOptions::with_jobs(args.jobs, args.threads);
    opts.force = args.force;
    opts.fail_fast = args.fail_fast;
    schedule::install_stop_handler();
    eprintln!(
        "sweep {}: {} cells selected of {}; {} jobs x {} threads",
        sweep.name,
        jobs.len(),
        cells.len(),
        opts.jobs,
        opts.threads
    );
    let report = schedule::run(&jobs, &artifacts, &opts, &schedule::STOP)?;
    eprintln!(
        "trained {}, already done {}, analysed {}, failed {}, unfinished {}",
        report.trained.len(),
        report.cached.len(),
        report.analysed.len(),
        report.failed.len(),
        report.interrupted.len()
    );
    if schedule::STOP.load(std::sync::atomic::Ordering::SeqCst) {
        eprintln!("stopped: checkpoints are saved; run the same command again to resume");
        return Ok(ExitCode::from(130));
    }
    write_tables(&sweep, &cells, &artifacts)?;
    if report.failed.is_empty() && report.interrupted.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    for (key, error) in &report.failed {
        eprintln!(
            "failed: {} ({error}); log: {}",
            short(key),
            artifacts.cell_dir(key).join("train.log").display()
        );
    }
    Ok(ExitCode::FAILURE)
}

fn status(args: &StatusArgs) -> Result<ExitCode> {
    let sweep = sweep_or_exit!(&args.sweep);
    let cells = grid::expand(&sweep);
    let artifacts = args.artifacts.open();
    let queued = slurm::queued_keys(&artifacts);
    print_cells(
        &sweep,
        &cells,
        &["state", "steps"],
        &["done", "running", "queued", "partial", "failed", "missing"],
        |job| {
            let locked = || artifacts.is_locked(&job.key);
            let (state, steps) = match artifacts.status(&job.key) {
                CellStatus::Done(m) => ("done", m.steps.to_string()),
                CellStatus::Failed(_) | CellStatus::Partial if locked() => {
                    ("running", checkpoint_step(&artifacts, &job.key))
                }
                CellStatus::Failed(_) => ("failed", "-".to_string()),
                CellStatus::Partial => ("partial", checkpoint_step(&artifacts, &job.key)),
                _ if locked() => ("running", "0".to_string()),
                _ if queued.contains(&job.key) => ("queued", "0".to_string()),
                _ => ("missing", "0".to_string()),
            };
            vec![
                state.to_string(),
                format!("{steps}/{}", job.config.train.steps),
            ]
        },
    );
    Ok(ExitCode::SUCCESS)
}

/// The step of a cell's checkpoint, read from the checkpoint's header only.
fn checkpoint_step(artifacts: &Artifacts, key: &str) -> String {
    let path = artifacts.cell_dir(key).join(store::CHECKPOINT);
    crate::engine::train::checkpoint_step(&path)
        .map(|s| s.to_string())
        .unwrap_or_else(|_| "0".to_string())
}

fn analysis_settings(
    sweep: Option<&Path>,
) -> Result<std::result::Result<AnalysisConfig, ExitCode>> {
    let Some(path) = sweep else {
        return Ok(Ok(AnalysisConfig::default()));
    };
    let sweep = match load_sweep(path)? {
        Ok(s) => s,
        Err(code) => return Ok(Err(code)),
    };
    Ok(Ok(grid::expand(&sweep)
        .first()
        .map(|c| c.analysis.clone())
        .unwrap_or_default()))
}

fn analyze(args: &AnalyzeArgs) -> Result<ExitCode> {
    let cfg = match analysis_settings(args.sweep.as_deref())? {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let target = Path::new(&args.target);
    let (sig, out) = if target.is_file() {
        let out = args.out.clone().unwrap_or_else(|| {
            let stem = target
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            target.with_file_name(format!("{stem}.analysis"))
        });
        let sig = crate::analysis::analyze(
            &crate::engine::weights::ModelWeights::from_named(
                &crate::engine::weights::read_safetensors(target)?.0,
                "",
            )
            .with_context(|| format!("reading model weights from {}", target.display()))?,
            args.attention_rate,
            None,
            None,
            &cfg,
        )?;
        store::write_dir_atomic(&out, |tmp| crate::analysis::write_tables(&sig, tmp))?;
        (sig, out)
    } else {
        let artifacts = args.artifacts.open();
        let key = resolve_key(&artifacts, &args.target)?;
        let dir = artifacts.cell_dir(&key);
        let sig = crate::analysis::analyze_cell(&dir, &cfg)?;
        let out = args
            .out
            .clone()
            .unwrap_or_else(|| artifacts.analysis_dir(&key, &analysis_key(&cfg)));
        store::write_dir_atomic(&out, |tmp| crate::analysis::write_tables(&sig, tmp))?;
        (sig, out)
    };
    println!(
        "label {}  key frequencies {:?}  logits explained {:.4}  gradient symmetricity {:.4}",
        sig.algorithm.label,
        sig.neurons.key_frequencies,
        sig.logits.explained_by_key_frequencies,
        sig.algorithm.gradient_symmetricity
    );
    println!("wrote {}", out.display());
    Ok(ExitCode::SUCCESS)
}

/// The full key of the one done cell whose key starts with `prefix`.
fn resolve_key(artifacts: &Artifacts, prefix: &str) -> Result<String> {
    if prefix.len() < 4 || !prefix.chars().all(|c| c.is_ascii_hexdigit()) {
        bail!("{prefix} is neither a file nor a cell key prefix (at least 4 hex digits)");
    }
    let mut found: Vec<String> = std::fs::read_dir(artifacts.cells_dir())
        .with_context(|| format!("reading {}", artifacts.cells_dir().display()))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|k| k.starts_with(prefix))
        .collect();
    found.sort();
    match found.len() {
        0 => bail!(
            "no cell in {} has a key starting with {prefix}",
            artifacts.cells_dir().display()
        ),
        1 => {
            let key = found.remove(0);
            match artifacts.status(&key) {
                CellStatus::Done(_) => Ok(key),
                other => bail!("cell {key} is {}, not done", other.word()),
            }
        }
        _ => bail!("key prefix {prefix} is ambiguous: {}", found.join(", ")),
    }
}

fn aggregate(args: &AggregateArgs) -> Result<ExitCode> {
    let sweep = sweep_or_exit!(&args.sweep);
    let cells = grid::expand(&sweep);
    write_tables(&sweep, &cells, &args.artifacts.open())?;
    Ok(ExitCode::SUCCESS)
}

/// Write the sweep's tables under ARTIFACTS/sweeps/NAME/.
fn write_tables(sweep: &Sweep, cells: &[grid::Cell], artifacts: &Artifacts) -> Result<()> {
    let out = artifacts.root.join("sweeps").join(&sweep.name);
    let report = crate::report::aggregate::aggregate_sweep(&artifacts.root, sweep, cells, &out)?;
    eprintln!("tables: {} ({report})", out.display());
    Ok(())
}

fn diff_cmd(args: &DiffArgs) -> Result<ExitCode> {
    let mut column_tol = BTreeMap::new();
    for t in &args.tol {
        let (col, tol) = t
            .split_once('=')
            .ok_or_else(|| anyhow!("--tol {t}: expected COLUMN=TOLERANCE"))?;
        let tol: f64 = tol
            .parse()
            .map_err(|_| anyhow!("--tol {t}: {tol} is not a number"))?;
        column_tol.insert(col.to_string(), tol);
    }
    let opts = DiffOptions {
        key_columns: args.key.clone(),
        rtol: args.rtol,
        atol: args.atol,
        column_tol,
        ignore: args.ignore.iter().cloned().collect(),
    };
    let changes = diff::diff_paths(&args.old, &args.new, &opts)?;
    let format = match args.format {
        Format::Text => DiffFormat::Text,
        Format::Markdown => DiffFormat::Markdown,
    };
    print!("{}", diff::render(&changes, format));
    Ok(if changes.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn bench(args: &BenchArgs) -> Result<ExitCode> {
    let mut cfg = match &args.sweep {
        Some(path) => {
            let sweep = sweep_or_exit!(path);
            grid::expand(&sweep)
                .first()
                .map(|c| c.config.clone())
                .unwrap_or_default()
        }
        None => crate::config::CellConfig::default(),
    };
    if let Some(p) = &args.precision {
        cfg.precision = p.parse().map_err(|e: String| anyhow!("--precision: {e}"))?;
    }
    if let Some(m) = args.modulus {
        cfg.modulus = m;
    }
    if let Some(w) = args.width {
        cfg.width = w;
    }
    let problems = spec::check_cell(&cfg, &AnalysisConfig::default());
    if let Some(v) = problems.first() {
        bail!("{}: {}", v.keys.join(", "), v.message);
    }
    let threads = args
        .threads
        .unwrap_or_else(|| RunOptions::with_jobs(Some(1), None).threads);
    let report = crate::engine::bench::bench(&cfg, args.warmup, args.iters, threads);
    println!(
        "{} p={} width={} heads={} d_mlp={} train pairs={} threads={}",
        cfg.precision,
        cfg.modulus,
        cfg.width,
        cfg.model.heads,
        cfg.d_mlp(),
        report.train_pairs,
        threads
    );
    println!("{report}");
    Ok(ExitCode::SUCCESS)
}

fn gc(args: &GcArgs) -> Result<ExitCode> {
    let artifacts = args.artifacts.open();
    let mut keep: BTreeSet<String> = BTreeSet::new();
    let mut keep_analysis: BTreeSet<(String, String)> = BTreeSet::new();
    let mut sweeps = 0;
    for entry in std::fs::read_dir(&args.sweeps)
        .with_context(|| format!("reading {}", args.sweeps.display()))?
    {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let sweep = match spec::load(&path) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{e}");
                bail!(
                    "{} is invalid; gc removes nothing until every sweep file parses",
                    path.display()
                );
            }
        };
        sweeps += 1;
        for job in schedule::jobs(&grid::expand(&sweep)) {
            keep_analysis.insert((job.key.clone(), analysis_key(&job.analysis)));
            keep.insert(job.key);
        }
    }
    if sweeps == 0 {
        bail!(
            "no sweep files in {}; gc keeps only cells that sweep files reference, so it \
             removes nothing without them",
            args.sweeps.display()
        );
    }
    let mut freed = 0u64;
    let mut removed = 0usize;
    let verb = if args.dry_run {
        "would remove"
    } else {
        "removed"
    };
    if let Ok(entries) = std::fs::read_dir(artifacts.cells_dir()) {
        for e in entries.flatten() {
            let key = e.file_name().to_string_lossy().into_owned();
            let path = e.path();
            if !keep.contains(&key) {
                // Held while the folder goes, so no run starts the cell meanwhile.
                let Some(_lock) = artifacts.try_lock(&key)? else {
                    eprintln!("skipping {}: a process is training it", path.display());
                    continue;
                };
                let size = store::dir_size(&path);
                if !args.dry_run {
                    std::fs::remove_dir_all(&path)
                        .with_context(|| format!("removing {}", path.display()))?;
                }
                println!("{verb} {} ({})", path.display(), human_bytes(size));
                freed += size;
                removed += 1;
                continue;
            }
            if let Ok(analyses) = std::fs::read_dir(path.join("analysis")) {
                for a in analyses.flatten() {
                    let akey = a.file_name().to_string_lossy().into_owned();
                    if akey.starts_with('.') || keep_analysis.contains(&(key.clone(), akey)) {
                        continue;
                    }
                    let size = store::dir_size(&a.path());
                    if !args.dry_run {
                        std::fs::remove_dir_all(a.path())?;
                    }
                    println!("{verb} {} ({})", a.path().display(), human_bytes(size));
                    freed += size;
                    removed += 1;
                }
            }
            if !args.dry_run {
                if let Some(_lock) = artifacts.try_lock(&key)? {
                    freed += store::remove_temporaries(&path)?;
                    // A checkpoint left by a run killed just after finishing the cell.
                    let checkpoint = path.join(store::CHECKPOINT);
                    if checkpoint.exists() && matches!(artifacts.status(&key), CellStatus::Done(_))
                    {
                        freed += checkpoint.metadata().map(|m| m.len()).unwrap_or(0);
                        std::fs::remove_file(&checkpoint)?;
                    }
                }
            }
        }
    }
    println!(
        "{} sweep files reference {} cells; {verb} {removed} entries, {} freed",
        sweeps,
        keep.len(),
        human_bytes(freed)
    );
    Ok(ExitCode::SUCCESS)
}

fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

fn submit(args: &SubmitArgs) -> Result<ExitCode> {
    let sweep = sweep_or_exit!(&args.sweep);
    let artifacts = args.artifacts.open();
    let cells = grid::expand(&sweep);
    // Each key once, and none that is done, running, or waiting in an earlier job.
    let queued = slurm::queued_keys(&artifacts);
    let mut seen = BTreeSet::new();
    let todo: Vec<CellJob> = schedule::jobs(&cells)
        .into_iter()
        .filter(|j| seen.insert(j.key.clone()))
        .filter(|j| {
            !matches!(artifacts.status(&j.key), CellStatus::Done(_))
                && !artifacts.is_locked(&j.key)
                && !queued.contains(&j.key)
        })
        .collect();
    let mut opts: SlurmOptions = sweep.slurm.clone();
    if let Some(t) = args.throttle {
        opts.throttle = t;
    }
    for (field, flag) in [
        (&mut opts.time, &args.time),
        (&mut opts.partition, &args.partition),
        (&mut opts.mem, &args.mem),
    ] {
        if let Some(v) = flag {
            *field = v.clone();
        }
    }
    if let Some(c) = args.cpus_per_task {
        opts.cpus_per_task = c;
    }
    opts.extra.extend(args.sbatch_arg.iter().cloned());
    if todo.is_empty() {
        println!(
            "nothing to submit: every cell of {} is done, running or queued",
            sweep.name
        );
        return Ok(ExitCode::SUCCESS);
    }
    std::fs::create_dir_all(&artifacts.root)?;
    let exe = std::env::current_exe().context("locating the bitgrok binary")?;
    let dir = slurm::prepare(&sweep.name, &todo, &artifacts, &opts, &exe)?;
    println!(
        "{} cells to train; submission {}",
        todo.len(),
        dir.display()
    );
    if args.dry_run {
        print!("{}", std::fs::read_to_string(dir.join("job.sbatch"))?);
        return Ok(ExitCode::SUCCESS);
    }
    let id = slurm::sbatch(&dir)?;
    println!("submitted job {id}");
    Ok(ExitCode::SUCCESS)
}

fn run_cell(args: &RunCellArgs) -> Result<ExitCode> {
    let cell = slurm::submitted_cell(&args.submission, args.index)?;
    let artifacts = args.artifacts.open();
    let opts = RunOptions {
        jobs: 1,
        threads: args.threads.max(1),
        force: false,
        fail_fast: true,
    };
    schedule::install_stop_handler();
    let report = schedule::run(&[cell.job()], &artifacts, &opts, &schedule::STOP)?;
    if let Some((key, error)) = report.failed.first() {
        eprintln!("failed: {key}: {error}");
        return Ok(ExitCode::FAILURE);
    }
    if !report.interrupted.is_empty() {
        return Ok(ExitCode::from(130));
    }
    Ok(ExitCode::SUCCESS)
}
