//! `gc`: list (and with `--delete`, remove) what no sweep file references.

use super::{ArtifactsArg, CmdResult};
use crate::store::gc::{self, Keep};
use crate::text::bytes as human_bytes;
use anyhow::{anyhow, Context};
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct GcArgs {
    /// Folder of sweep files whose cells, analyses and tables are kept.
    #[arg(long, value_name = "DIR", default_value = "sweeps")]
    pub sweeps: PathBuf,
    /// Remove what is listed; without it gc only lists.
    #[arg(long)]
    pub delete: bool,
    /// Only list (the default; kept for scripts written for earlier versions).
    #[arg(long, conflicts_with = "delete")]
    pub dry_run: bool,
    #[command(flatten)]
    pub artifacts: ArtifactsArg,
}

pub fn gc(args: &GcArgs) -> CmdResult {
    let artifacts = args.artifacts.open()?;
    let mut keep = Keep {
        live_jobs: crate::run::slurm::live_jobs(),
        ..Keep::default()
    };
    let mut files = 0;
    for entry in std::fs::read_dir(&args.sweeps)
        .with_context(|| format!("reading {}", args.sweeps.display()))?
    {
        let path = entry.context("reading the sweeps folder")?.path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let sweep = match crate::sweep::load(&path) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{e}");
                return Err(anyhow!(
                    "{} is invalid; gc removes nothing until every sweep file parses",
                    path.display()
                )
                .into());
            }
        };
        files += 1;
        // A cell still under its legacy key is the sweep's, not garbage.
        if artifacts.cells_dir().is_dir() {
            artifacts.adopt_legacy_cells(sweep.cells.iter().map(|c| &c.config))?;
        }
        keep.sweeps.insert(sweep.name.clone());
        for cell in &sweep.cells {
            keep.analyses
                .insert((cell.key.clone(), cell.analysis_key()));
            keep.cells.insert(cell.key.clone());
        }
    }
    if files == 0 {
        return Err(anyhow!(
            "no sweep files in {}; gc keeps only what sweep files reference, so it \
             removes nothing without them",
            args.sweeps.display()
        )
        .into());
    }
    let report = gc::collect(&artifacts, &keep, args.delete)?;
    let verb = if args.delete {
        "removed"
    } else {
        "would remove"
    };
    for f in &report.found {
        println!(
            "{verb} {} ({}; {})",
            f.path.display(),
            human_bytes(f.bytes),
            f.why
        );
    }
    for p in &report.busy {
        eprintln!("skipping {}: a process is working on it", p.display());
    }
    println!(
        "{files} sweep files reference {} cells; {verb} {} entries, {}",
        keep.cells.len(),
        report.found.len(),
        human_bytes(report.bytes())
    );
    if !args.delete && !report.found.is_empty() {
        println!("nothing was removed; run `bitgrok gc --delete` to remove the entries above");
    }
    Ok(())
}
