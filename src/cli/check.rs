//! `check`: validate sweep files, printing every problem of every file.

use super::{CliError, CmdResult};
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// One or more sweep files.
    #[arg(value_name = "SWEEP.toml", required = true)]
    pub sweeps: Vec<PathBuf>,
}

pub fn check(args: &CheckArgs) -> CmdResult {
    let mut failed = 0;
    for path in &args.sweeps {
        match crate::sweep::load(path) {
            Ok(sweep) => {
                let most = sweep
                    .cells
                    .iter()
                    .map(|c| c.config.memory_estimate_bytes())
                    .max()
                    .unwrap_or(0);
                println!(
                    "ok: {} ({}), the largest needs about {} to train",
                    path.display(),
                    crate::text::count(sweep.cells.len(), "cell"),
                    crate::text::bytes(most)
                )
            }
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
        Ok(())
    } else {
        eprintln!(
            "{failed} of {} failed",
            crate::text::count(args.sweeps.len(), "sweep file")
        );
        Err(CliError::Reported(1))
    }
}
