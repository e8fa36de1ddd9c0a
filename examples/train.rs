//! Train one cell and print its curves.
//!
//! cargo run --release --example train -- [precision] [p] [width] [steps] [threads] [arch]
//! defaults: fp32 113 128 10000 2 li2024, the other settings at their defaults.

use bitgrok::config::{Arch, CellConfig};
use bitgrok::engine::train::{train_cell, TrainHooks};
use std::sync::atomic::AtomicBool;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.to_string());
    let mut cfg = CellConfig {
        precision: arg(0, "fp32").parse().map_err(anyhow::Error::msg)?,
        modulus: arg(1, "113").parse()?,
        width: arg(2, "128").parse()?,
        ..Default::default()
    };
    cfg.train.steps = arg(3, "10000").parse()?;
    let threads: usize = arg(4, "2").parse()?;
    cfg.model.arch = match arg(5, "li2024").as_str() {
        "li2024" => Arch::Li2024,
        "nanda2023" => Arch::Nanda2023,
        other => anyhow::bail!("unknown arch {other:?} (allowed: li2024, nanda2023)"),
    };
    let stop = AtomicBool::new(false);
    let out = train_cell(
        &cfg,
        TrainHooks {
            threads,
            more_threads: &|| 0,
            resume: None,
            on_checkpoint: &mut |_| Ok(()),
            on_progress: &mut |p| {
                if let Some(acc) = p.test_acc {
                    println!(
                        "step {:>6}  train loss {:.4}  test acc {:.3}",
                        p.step, p.train_loss, acc
                    );
                }
            },
            on_snapshot: &mut |_, _| Ok(()),
            stop: &stop,
        },
    )?;
    let last = out.curves.last().unwrap();
    println!(
        "final: train loss {:.4} acc {:.3}, test loss {:.4} acc {:.3}; {:.1} s",
        last.train_loss, last.train_acc, last.test_loss, last.test_acc, out.seconds
    );
    Ok(())
}
