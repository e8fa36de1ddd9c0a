//! `bench`: time full training steps of one configuration.

use super::{at_least_one, load_sweep, CmdResult};
use crate::run::schedule::RunOptions;
use anyhow::anyhow;
use clap::Args;
use std::path::PathBuf;

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
    #[arg(long, value_parser = at_least_one())]
    pub threads: Option<usize>,
    /// Also time each phase of a step (quantize, forward, backward, optimizer) and print
    /// the floor: the products that grow with the batch at the measured gemm rate.
    #[arg(long)]
    pub breakdown: bool,
}

pub fn bench(args: &BenchArgs) -> CmdResult {
    let mut cfg = match &args.sweep {
        Some(path) => {
            let sweep = load_sweep(path)?;
            sweep
                .cells
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
    cfg.checked()?;
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
    if args.breakdown {
        let b = crate::engine::bench::breakdown(&cfg, args.warmup, args.iters, threads);
        println!("{b}");
        let floor = crate::engine::bench::floor(&cfg, report.examples, args.iters, threads);
        println!("{floor}");
        println!(
            "the step (median {:.2} ms) is {:.2}× its floor",
            report.median_ms,
            report.median_ms / floor.ms()
        );
    }
    Ok(())
}
