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

/// Write the sweep's tables and report under ARTIFACTS/sweeps/NAME/, both from one
/// read of the store.
pub fn write_tables(sweep: &Sweep, artifacts: &Artifacts) -> Result<()> {
    let out = artifacts.root.join("sweeps").join(&sweep.name);
    let read = crate::report::aggregate::read_sweep_of(&artifacts.root, sweep)?;
    let report = crate::report::aggregate::write_tables(&read, &out)?;
    eprintln!("tables: {} ({report})", out.display());
    super::report::write(sweep, artifacts, &read)
}
