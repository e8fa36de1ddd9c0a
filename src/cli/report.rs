//! `bitgrok report`: the sweep's HTML report and figures from the stored cells.

use crate::store::Artifacts;
use crate::sweep::{grid, spec::Sweep};
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The sweep file.
    #[arg(value_name = "SWEEP.toml")]
    pub sweep: PathBuf,
    #[command(flatten)]
    pub artifacts: super::ArtifactsArg,
}

pub fn report(args: &ReportArgs) -> Result<ExitCode> {
    let sweep = match crate::sweep::spec::load(&args.sweep) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    write(&sweep, &grid::expand(&sweep), &args.artifacts.open())?;
    Ok(ExitCode::SUCCESS)
}

/// Write ARTIFACTS/sweeps/NAME/report.html, figures/ and cells/ (also the last step
/// of `run` and `aggregate`).
pub fn write(sweep: &Sweep, cells: &[grid::Cell], artifacts: &Artifacts) -> Result<()> {
    let out = artifacts.root.join("sweeps").join(&sweep.name);
    let summary = crate::report::html::write_report(&artifacts.root, sweep, cells, &out)?;
    eprintln!("report: {summary}");
    Ok(())
}
