//! `submit` and `run-cell`: a sweep's missing cells as one Slurm job array, and
//! what each array task runs.

use super::{at_least_one, load_sweep_in, ArtifactsArg, CliError, CmdResult};
use crate::run::schedule::{self, RunOptions};
use crate::run::slurm::{self, SlurmOptions};
use crate::store::CellStatus;
use crate::sweep::Cell;
use anyhow::Context;
use clap::Args;
use std::collections::BTreeSet;
use std::path::PathBuf;

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
    #[arg(long, default_value_t = 1, value_parser = at_least_one())]
    pub threads: usize,
    #[command(flatten)]
    pub artifacts: ArtifactsArg,
}

pub fn submit(args: &SubmitArgs) -> CmdResult {
    let (sweep, artifacts) = load_sweep_in(&args.sweep, &args.artifacts)?;
    // Each key once, and none that is done, running, or waiting in an earlier job.
    let queued = slurm::queued_keys(&artifacts);
    let mut seen = BTreeSet::new();
    let todo: Vec<Cell> = sweep
        .cells
        .iter()
        .filter(|j| seen.insert(j.key.clone()))
        .filter(|j| {
            !matches!(artifacts.status(&j.key), CellStatus::Done(_))
                && !artifacts.is_locked(&j.key)
                && !queued.contains(&j.key)
        })
        .cloned()
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
        return Ok(());
    }
    std::fs::create_dir_all(&artifacts.root)?;
    let exe = std::env::current_exe().context("locating the bitgrok binary")?;
    let dir = slurm::prepare(&sweep.name, &todo, &artifacts, &opts, &exe)?;
    println!(
        "{} to train; submission {}",
        crate::text::count(todo.len(), "cell"),
        dir.display()
    );
    if args.dry_run {
        print!("{}", std::fs::read_to_string(dir.join("job.sbatch"))?);
        return Ok(());
    }
    let id = slurm::sbatch(&dir)?;
    println!("submitted job {id}");
    Ok(())
}

pub fn run_cell(args: &RunCellArgs) -> CmdResult {
    let cell = slurm::submitted_cell(&args.submission, args.index)?;
    let artifacts = args.artifacts.open()?;
    let opts = RunOptions {
        jobs: 1,
        threads: args.threads,
        // The task's CPUs, as Slurm gave them.
        lend_idle_cores: false,
        force: false,
        fail_fast: true,
    };
    schedule::install_stop_handler()?;
    let report = schedule::run(&[cell], &artifacts, &opts, schedule::stop_flag())?;
    if let Some((key, error)) = report.failed.first() {
        eprintln!("failed: {key}: {error}");
        return Err(CliError::Reported(1));
    }
    if !report.interrupted.is_empty() {
        return Err(CliError::Reported(130));
    }
    Ok(())
}
