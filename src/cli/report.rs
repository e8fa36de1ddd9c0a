//! `bitgrok report`: the sweep's HTML report and figures from the stored cells.

use super::CmdResult;
use crate::report::aggregate::SweepRows;
use crate::store::Artifacts;
use crate::sweep::Sweep;
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The sweep file.
    #[arg(value_name = "SWEEP.toml")]
    pub sweep: PathBuf,
    #[command(flatten)]
    pub artifacts: super::ArtifactsArg,
}

pub fn report(args: &ReportArgs) -> CmdResult {
    let (sweep, artifacts) = super::load_sweep_in(&args.sweep, &args.artifacts)?;
    let read = crate::report::aggregate::read_sweep_of(&artifacts.root, &sweep)?;
    write(&sweep, &artifacts, &read)?;
    Ok(())
}

/// Write ARTIFACTS/sweeps/NAME/report.html, figures/ and cells/ (also the last step
/// of `run` and `aggregate`, from the read their tables were written from).
pub fn write(sweep: &Sweep, artifacts: &Artifacts, read: &SweepRows) -> Result<()> {
    let out = artifacts.root.join("sweeps").join(&sweep.name);
    let summary = crate::report::html::write_report(&artifacts.root, sweep, read, &out)?;
    eprintln!("report: {summary}");
    Ok(())
}
