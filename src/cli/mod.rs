//! The `bitgrok` command line: the clap types, one file and one function per
//! command, and exit codes decided in one place ([`CliError::exit_code`]).
//!
//! Exit codes: 0 success; 1 a failure the command reports (invalid sweep file, failed
//! cells, differences found by `diff`); 2 usage errors and unexpected errors; 130
//! after Ctrl-C. A new command is a new file here, one variant of [`Command`] and
//! one arm of [`run`].

mod aggregate;
mod analyze;
mod bench;
mod check;
mod diff;
mod export;
mod gc;
mod plan;
mod report;
mod run;
mod submit;

use crate::store::Artifacts;
use crate::sweep::{self, SpecError, Sweep};
use anyhow::bail;
use clap::{Args, Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `--version`: the release and the version numbers that decide what a stored
/// cell or analysis means, so a published table's provenance names them.
fn version_line() -> &'static str {
    let line = format!(
        "{} (engine version {}, analysis version {}, store format {})",
        env!("CARGO_PKG_VERSION"),
        crate::key::ENGINE_VERSION,
        crate::key::ANALYSIS_VERSION,
        crate::store::STORE_FORMAT
    );
    Box::leak(line.into_boxed_str())
}

#[derive(Debug, Parser)]
#[command(
    name = "bitgrok",
    version = version_line(),
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
    /// List the cells of a sweep: key prefix, axis values and state (done, running,
    /// queued, partial, failed, missing).
    Plan(plan::PlanArgs),
    /// Validate sweep files and print every problem; exits non-zero if any file fails.
    Check(check::CheckArgs),
    /// Train every cell of a sweep that is not done, analyse it, and write the
    /// sweep's tables under ARTIFACTS/sweeps/NAME/.
    Run(run::RunArgs),
    /// Show each cell's state: done, running (locked by a process, here or on the
    /// cluster), queued (in a pending Slurm job), partial (with steps done), failed,
    /// missing.
    Status(plan::StatusArgs),
    /// Compute the learned-algorithm signature of a trained cell (by key or key
    /// prefix) or of any safetensors file with TransformerLens names.
    Analyze(analyze::AnalyzeArgs),
    /// Write the sweep's tables (cells, frequencies, compare, summary, progress
    /// CSVs) and its HTML report from the stored cells, without training.
    Aggregate(aggregate::AggregateArgs),
    /// Compare two CSV tables or two folders of them; exit 1 when anything changed
    /// beyond tolerance.
    Diff(diff::DiffArgs),
    /// Time full training steps (forward, backward, quantization, optimizer) for one
    /// configuration and print the median milliseconds per step and peak memory.
    Bench(bench::BenchArgs),
    /// List what no sweep file references (cells, analyses, tables, finished Slurm
    /// submissions) and leftovers; `--delete` removes them.
    Gc(gc::GcArgs),
    /// Submit a sweep's missing cells to Slurm as one job array.
    Submit(submit::SubmitArgs),
    /// Write a trained cell's model in another tool's format.
    Export(export::ExportArgs),
    /// Train one cell of a Slurm submission (what each array task runs).
    RunCell(submit::RunCellArgs),
    /// Write the sweep's HTML report (report.html, figures/*.svg, cells/*.html) from
    /// the stored cells, without training.
    Report(report::ReportArgs),
}

/// Parse the command line and run it.
pub fn main() -> ExitCode {
    // Output piped into `head` and closed early ends the process quietly, as other
    // command-line tools do, instead of a panic on the next print.
    // SAFETY: restoring a signal's default disposition at start-up, before any thread
    // exists, is what `signal` is for.
    #[cfg(unix)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // `bitgrok help --help` asks for help on help: give the top-level help, as
    // `bitgrok help` does (clap would take `--help` for a command name).
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.len() == 3 && args[1] == "help" && (args[2] == "--help" || args[2] == "-h") {
        args.truncate(2);
    }
    run(Cli::parse_from(args))
}

pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Plan(args) => plan::plan(&args),
        Command::Check(args) => check::check(&args),
        Command::Run(args) => run::run(&args),
        Command::Status(args) => plan::status(&args),
        Command::Analyze(args) => analyze::analyze(&args),
        Command::Aggregate(args) => aggregate::aggregate(&args),
        Command::Diff(args) => diff::diff(&args),
        Command::Bench(args) => bench::bench(&args),
        Command::Gc(args) => gc::gc(&args),
        Command::Submit(args) => submit::submit(&args),
        Command::RunCell(args) => submit::run_cell(&args),
        Command::Export(args) => export::export(&args),
        Command::Report(args) => report::report(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            e.report();
            ExitCode::from(e.exit_code())
        }
    }
}

/// Why a command did not succeed.
#[derive(Debug)]
pub enum CliError {
    /// Invalid sweep files: every problem is printed; exit 1.
    Sweep(SpecError),
    /// A failure the command has already explained (failed cells, differences
    /// found by `diff`, an interrupted run): exit with this code.
    Reported(u8),
    /// A usage or unexpected error: printed as `error: ...`; exit 2.
    Other(anyhow::Error),
}

/// What every command returns.
pub type CmdResult = Result<(), CliError>;

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Sweep(_) => 1,
            CliError::Reported(code) => *code,
            CliError::Other(_) => 2,
        }
    }

    fn report(&self) {
        match self {
            CliError::Sweep(e) => eprintln!("{e}"),
            CliError::Reported(_) => {}
            CliError::Other(e) => eprintln!("error: {e:#}"),
        }
    }
}

impl From<anyhow::Error> for CliError {
    fn from(e: anyhow::Error) -> Self {
        CliError::Other(e)
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        CliError::Other(e.into())
    }
}

impl From<SpecError> for CliError {
    fn from(e: SpecError) -> Self {
        CliError::Sweep(e)
    }
}

/// The artifacts directory, for every command that reads or writes artifacts.
#[derive(Debug, Args)]
pub struct ArtifactsArg {
    /// Artifacts directory (trained cells live in DIR/cells/<key>/).
    #[arg(long, value_name = "DIR", default_value = "artifacts")]
    pub artifacts: PathBuf,
}

impl ArtifactsArg {
    /// The artifacts folder; an error when the path exists and is not a folder.
    fn open(&self) -> anyhow::Result<Artifacts> {
        let p = &self.artifacts;
        if p.exists() && !p.is_dir() {
            bail!("--artifacts {}: is not a directory", p.display());
        }
        Ok(Artifacts::new(p))
    }
}

/// Load a sweep file (parse, expand, validate).
fn load_sweep(path: &Path) -> Result<Sweep, CliError> {
    Ok(sweep::load(path)?)
}

/// Load a sweep file and open the artifacts folder for it: cells the folder holds
/// under their legacy keys are moved to their keys first ([`Artifacts::adopt_legacy`]).
fn load_sweep_in(path: &Path, artifacts: &ArtifactsArg) -> Result<(Sweep, Artifacts), CliError> {
    let sweep = load_sweep(path)?;
    let artifacts = artifacts.open()?;
    if artifacts.cells_dir().is_dir() {
        artifacts.adopt_legacy_cells(sweep.cells.iter().map(|c| &c.config))?;
    }
    Ok((sweep, artifacts))
}

/// A `usize` flag that must be at least 1 (`--jobs`, `--threads`).
fn at_least_one() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::<usize>::new().range(1..)
}
