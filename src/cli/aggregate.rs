//! `aggregate`: write a sweep's tables and report from the stored cells, without
//! training.

use super::{load_sweep_in, ArtifactsArg, CmdResult};
use crate::store::Artifacts;
use crate::sweep::Sweep;
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct AggregateArgs {
    /// The sweep file.
    #[arg(value_name = "SWEEP.toml")]
    pub sweep: PathBuf,
    #[command(flatten)]
    pub artifacts: ArtifactsArg,
}

pub fn aggregate(args: &AggregateArgs) -> CmdResult {
    let (sweep, artifacts) = load_sweep_in(&args.sweep, &args.artifacts)?;
    write_tables(&sweep, &artifacts)?;
    Ok(())
}

/// Write the sweep's tables under ARTIFACTS/sweeps/NAME/.
pub fn write_tables(sweep: &Sweep, artifacts: &Artifacts) -> Result<()> {
    let out = artifacts.root.join("sweeps").join(&sweep.name);
    let report = crate::report::aggregate::aggregate_sweep(&artifacts.root, sweep, &out)?;
    eprintln!("tables: {} ({report})", out.display());
    super::report::write(sweep, artifacts)
}
