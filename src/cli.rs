//! The `bitgrok` command line. Each subcommand is one variant of [`Command`] with its
//! own argument struct and one function.

use crate::grid;
use crate::key::{cell_key, SHORT_KEY_LEN};
use crate::spec;
use crate::store::{cell_status, CellStatus};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
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
    /// (done / partial / missing).
    Plan(PlanArgs),
    /// Validate sweep files and print every problem; exits non-zero if any file fails.
    Check(CheckArgs),
}

/// The artifacts directory, for every command that reads or writes artifacts.
#[derive(Debug, Args)]
pub struct ArtifactsArg {
    /// Artifacts directory (trained cells live in DIR/cells/<key>/).
    #[arg(long, value_name = "DIR", default_value = "artifacts")]
    pub artifacts: PathBuf,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The sweep file, e.g. sweeps/paper.toml.
    #[arg(value_name = "SWEEP.toml")]
    pub sweep: PathBuf,
    #[command(flatten)]
    pub artifacts: ArtifactsArg,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// One or more sweep files.
    #[arg(value_name = "SWEEP.toml", required = true)]
    pub sweeps: Vec<PathBuf>,
}

/// Parse the command line and run it.
pub fn main() -> ExitCode {
    run(Cli::parse())
}

pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Plan(args) => plan(&args),
        Command::Check(args) => check(&args),
    }
}

fn plan(args: &PlanArgs) -> ExitCode {
    let sweep = match spec::load(&args.sweep) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let cells = grid::expand(&sweep);
    let mut columns: Vec<String> = grid::axis_names(&sweep);
    for c in &cells {
        for (k, _) in &c.axes {
            if !columns.contains(k) {
                columns.push(k.clone());
            }
        }
    }
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut header = vec!["key".to_string()];
    header.extend(columns.iter().cloned());
    header.push("status".to_string());
    rows.push(header);
    let (mut done, mut partial, mut missing) = (0, 0, 0);
    for c in &cells {
        let key = cell_key(&c.config);
        let status = cell_status(&args.artifacts.artifacts, &key);
        match status {
            CellStatus::Done => done += 1,
            CellStatus::Partial => partial += 1,
            CellStatus::Missing => missing += 1,
        }
        let mut row = vec![key[..SHORT_KEY_LEN].to_string()];
        for col in &columns {
            let v = c
                .axes
                .iter()
                .find(|(k, _)| k == col)
                .map(|(_, v)| v.as_str());
            row.push(v.unwrap_or("-").to_string());
        }
        row.push(status.to_string());
        rows.push(row);
    }
    println!("sweep {} ({})", sweep.name, args.sweep.display());
    if !sweep.description.is_empty() {
        println!("{}", sweep.description);
    }
    print!("{}", table(&rows));
    println!(
        "total: {} cells, {done} done, {partial} partial, {missing} missing",
        cells.len()
    );
    ExitCode::SUCCESS
}

/// Left-aligned columns separated by two spaces.
fn table(rows: &[Vec<String>]) -> String {
    let n = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let widths: Vec<usize> = (0..n)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
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

fn check(args: &CheckArgs) -> ExitCode {
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
                eprintln!(
                    "{}: {} problem{}",
                    path.display(),
                    e.problems.len(),
                    if e.problems.len() == 1 { "" } else { "s" }
                );
            }
        }
    }
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        eprintln!("{failed} of {} sweep files failed", args.sweeps.len());
        ExitCode::FAILURE
    }
}
