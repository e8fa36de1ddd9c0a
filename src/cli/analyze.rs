//! `analyze`: the learned-algorithm signature of a stored cell or of a weights file.

use super::{load_sweep, ArtifactsArg, CmdResult};
use crate::config::{AnalysisConfig, Arch, UniformAttention};
use crate::key::analysis_key;
use crate::store;
use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    /// A cell key or unique key prefix, or a .safetensors file.
    pub target: String,
    /// Take the analysis settings from this sweep file's [analysis] table
    /// [default: the documented defaults].
    #[arg(long, value_name = "SWEEP.toml")]
    pub sweep: Option<PathBuf>,
    /// Output folder for a file target [default: FILE's folder/<file stem>.analysis].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Architecture of a file without bitgrok metadata (li2024 or nanda2023).
    #[arg(long, value_parser = <Arch as std::str::FromStr>::from_str)]
    pub arch: Option<crate::config::Arch>,
    /// Activation-quantizer bits of a file without bitgrok metadata [default: 0, off].
    #[arg(long, value_name = "BITS")]
    pub act_bits: Option<u32>,
    /// The `model.attention_rate` of a file without bitgrok metadata [default: 1]
    /// (a cell's comes from its model file or cell.toml).
    #[arg(long, value_name = "R")]
    pub attention_rate: Option<f64>,
    /// The `model.uniform_attention` (mean or sum) of a file without bitgrok
    /// metadata [default: mean].
    #[arg(long, value_name = "U", value_parser = <UniformAttention as std::str::FromStr>::from_str)]
    pub uniform_attention: Option<UniformAttention>,
    #[command(flatten)]
    pub artifacts: ArtifactsArg,
}

pub fn analyze(args: &AnalyzeArgs) -> CmdResult {
    let cfg = match &args.sweep {
        Some(path) => load_sweep(path)?
            .cells
            .first()
            .map(|c| c.analysis.clone())
            .unwrap_or_default(),
        None => AnalysisConfig::default(),
    };
    let target = Path::new(&args.target);
    let (sig, out) = if target.is_file() {
        let out = args.out.clone().unwrap_or_else(|| {
            let stem = target
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            target.with_file_name(format!("{stem}.analysis"))
        });
        let given = crate::engine::model_file::Described {
            arch: args.arch,
            act_bits: args.act_bits,
            act_eps: None,
            attention_rate: args.attention_rate,
            uniform_attention: args.uniform_attention,
        };
        let model = crate::engine::model_file::read_model_file(target, &given)?.model;
        let sig = crate::analysis::analyze(&model, None, None, &cfg)?;
        store::write_dir_atomic(&out, |tmp| crate::analysis::write_tables(&sig, tmp))?;
        (sig, out)
    } else {
        let artifacts = args.artifacts.open()?;
        let key = artifacts.resolve_key(&args.target)?;
        let dir = artifacts.cell_dir(&key);
        // Under the cell's lock, as every write into a cell folder.
        let _lock = crate::run::schedule::lock_waiting(&artifacts, &key)?;
        let sig = crate::analysis::analyze_cell(&dir, &cfg)?;
        let out = args
            .out
            .clone()
            .unwrap_or_else(|| artifacts.analysis_dir(&key, &analysis_key(&cfg)));
        store::write_dir_atomic(&out, |tmp| crate::analysis::write_tables(&sig, tmp))?;
        (sig, out)
    };
    println!(
        "arch {}  label {}  key frequencies {:?}  logits explained {:.4}  gradient symmetricity {:.4}",
        sig.arch,
        sig.algorithm.label,
        sig.neurons.key_frequencies,
        sig.logits.explained_by_key_frequencies,
        sig.algorithm.gradient_symmetricity
    );
    println!("wrote {}", out.display());
    Ok(())
}
