//! `bitgrok export KEY-PREFIX --format transformer-lens OUT/`: a trained cell's model
//! in TransformerLens's form (see [`crate::engine::export`]).

use crate::engine::export;
use crate::store::read_cell_model;
use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// model.safetensors (state dict for `load_state_dict(strict=True)`),
    /// config.tl3.json, config.tl4.json, usage.json and logits.safetensors.
    TransformerLens,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// A cell key or unique key prefix.
    pub key: String,
    #[arg(long, value_enum)]
    pub format: ExportFormat,
    /// Output folder (created; files in it are replaced).
    pub out: PathBuf,
    #[command(flatten)]
    pub artifacts: super::ArtifactsArg,
}

pub fn export(args: &ExportArgs) -> super::CmdResult {
    Ok(write_export(args)?)
}

fn write_export(args: &ExportArgs) -> Result<()> {
    let artifacts = args.artifacts.open()?;
    let key = artifacts.resolve_key(&args.key)?;
    let (cfg, model) = read_cell_model(&artifacts.cell_dir(&key))?;
    let ExportFormat::TransformerLens = args.format;
    let meta = crate::engine::model_file::metadata(&cfg, &key);
    // The loader's check: bitgrok's own all-pairs loss and accuracy of this model.
    let p = model.weights.modulus();
    let all = crate::analysis::measures::all_pairs(p);
    let logits = crate::analysis::forward::logits(&model);
    let (loss, accuracy) = crate::analysis::measures::full_loss(&logits, p, &all);
    let max_abs_logit = logits
        .iter()
        .fold(0.0f64, |m, &v| m.max(f64::from(v.abs())));
    let check = export::Check {
        loss,
        accuracy,
        max_abs_logit,
    };
    let files = [
        (
            "model.safetensors",
            export::state_dict_bytes(&export::state_dict(&model.weights), &meta)?,
        ),
        (
            "config.tl3.json",
            (serde_json::to_string_pretty(&export::config(&model, 3))? + "\n").into_bytes(),
        ),
        (
            "config.tl4.json",
            (serde_json::to_string_pretty(&export::config(&model, 4))? + "\n").into_bytes(),
        ),
        (
            "logits.safetensors",
            export::state_dict_bytes(&export::logits_tensors(&logits, p), &Default::default())?,
        ),
        (
            "usage.json",
            (serde_json::to_string_pretty(&export::usage(&model, check))? + "\n").into_bytes(),
        ),
    ];
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    for (name, bytes) in files {
        crate::store::write_atomic(&args.out.join(name), &bytes)?;
    }
    if model.act_bits > 0 || model.attention.rate < 1.0 {
        eprintln!(
            "note: this cell's function needs forward hooks in TransformerLens (usage.json \
             \"hooks\"); scripts/load_transformer_lens.py applies them"
        );
    }
    println!("wrote {}", args.out.display());
    Ok(())
}
