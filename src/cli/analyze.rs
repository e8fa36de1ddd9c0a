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
    /// metadata (needed when --attention-rate is below 1).
    #[arg(long, value_name = "U", value_parser = <UniformAttention as std::str::FromStr>::from_str)]
    pub uniform_attention: Option<UniformAttention>,
    /// The training split of a file's model (a cell's split.csv): train/test losses
    /// and accuracies, and restricted (excluded) loss on the test (train) pairs.
    #[arg(long, value_name = "split.csv")]
    pub split: Option<PathBuf>,
    /// The training curves of a file's model (a cell's curves.csv): the outcome
    /// steps and the final train/test figures.
    #[arg(long, value_name = "curves.csv")]
    pub curves: Option<PathBuf>,
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
        let split = args
            .split
            .as_deref()
            .map(crate::analysis::read_train_split_file)
            .transpose()?;
        let curves = args.curves.as_deref().map(store::read_curves).transpose()?;
        let sig = crate::analysis::analyze(&model, curves.as_deref(), split.as_ref(), &cfg)?;
        if let Some(note) = without_training_record(split.is_some(), curves.is_some()) {
            eprintln!("note: {}: {note}", target.display());
        }
        store::write_dir_atomic(&out, |tmp| crate::analysis::write_tables(&sig, tmp))?;
        (sig, out)
    } else {
        if args.split.is_some() || args.curves.is_some() {
            return Err(anyhow::anyhow!(
                "--split and --curves are for a file target; a cell's own are used"
            )
            .into());
        }
        let artifacts = args.artifacts.open()?;
        let key = artifacts.resolve_key(&args.target)?;
        let dir = artifacts.cell_dir(&key);
        // Under the cell's lock, as every write into a cell folder.
        let _lock = artifacts.lock_waiting(&key)?;
        let analysis = crate::analysis::analyze_cell(&dir, &cfg)?;
        let out = args
            .out
            .clone()
            .unwrap_or_else(|| artifacts.analysis_dir(&key, &analysis_key(&cfg)));
        store::write_dir_atomic(&out, |tmp| analysis.write(tmp))?;
        (analysis.signature, out)
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

/// What the signature of a file analysed without its split or curves cannot say
/// (`None` with both).
pub fn without_training_record(split: bool, curves: bool) -> Option<String> {
    let mut parts = Vec::new();
    if !split && !curves {
        parts.push(
            "without --split its final train/test loss and accuracy are empty, and \
             restricted and excluded loss (and their ratios) are computed over all p² \
             pairs instead of the test and the train pairs",
        );
    } else if !split {
        parts.push(
            "without --split restricted and excluded loss (and their ratios) are computed \
             over all p² pairs instead of the test and the train pairs",
        );
    }
    if !curves {
        parts.push(
            "without --curves step_memorised, step_generalised and grokking_gap are empty, \
             and grokked only says whether the final accuracy reaches the threshold",
        );
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}
