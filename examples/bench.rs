//! Median milliseconds per full training step for one cell.
//!
//! cargo run --release --example bench -- [precision] [p] [width] [steps] [threads] [arch]
//! defaults: fp32 113 128 30 2 li2024 (the seed study's cell; 5 warm-up steps).

use bitgrok::bench::bench;
use bitgrok::config::{Arch, CellConfig};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.to_string());
    let mut cfg = CellConfig {
        precision: arg(0, "fp32").parse().map_err(anyhow::Error::msg)?,
        modulus: arg(1, "113").parse()?,
        width: arg(2, "128").parse()?,
        ..Default::default()
    };
    let steps: usize = arg(3, "30").parse()?;
    let threads: usize = arg(4, "2").parse()?;
    cfg.model.arch = match arg(5, "li2024").as_str() {
        "li2024" => Arch::Li2024,
        "nanda2023" => Arch::Nanda2023,
        other => anyhow::bail!("unknown arch {other:?} (allowed: li2024, nanda2023)"),
    };
    bitgrok::model::validate(&cfg)?;
    let report = bench(&cfg, 5, steps, threads);
    println!(
        "{} p={} width={} {}: {report}",
        cfg.precision, cfg.modulus, cfg.width, cfg.model.arch
    );
    Ok(())
}
