//! A runnable model ([`Model`]: effective weights plus the settings that change its
//! function beyond them) and the self-describing model file.
//!
//! Format 2 (`model.safetensors`, metadata `format = bitgrok-model-2`) holds the
//! effective weights only, under TransformerLens names, and records in its metadata
//! everything needed to run them (see [`metadata`]). The latent fp32 weights of a
//! quantized cell live in `latent.safetensors`. Format 1 (cells trained before)
//! stored the latent weights beside the effective ones under `latent.` names and no
//! description; such cells are read with the description of their `cell.toml`.
//!
//! Reading a file is strict: without metadata the architecture, the activation
//! quantizer's bits and the attention rate (and, below rate 1, the uniform
//! weighting) must be given, never guessed; a tensor bitgrok does not model is
//! refused unless it is all zeros (TransformerLens's biases, li2024's
//! `pos_embed.W_pos`) or one of TransformerLens's buffers; TransformerLens 4.x
//! bridge names are refused with how to save the names bitgrok reads.

use crate::config::{
    Arch, AttentionMix, CellConfig, QuantConfig, QuantMatrices, QuantScale, UniformAttention,
};
use crate::engine::weights::{
    is_transformer_lens_buffer, read_safetensors, to_safetensors_bytes, ModelWeights, NamedTensors,
    LATENT_PREFIX, PARAMS,
};
use anyhow::{anyhow, bail, Context, Result};
use std::collections::BTreeMap;
use std::path::Path;

/// Value of the `format` metadata entry of a format-2 model file.
pub const MODEL_FORMAT: &str = "bitgrok-model-2";
pub const MODEL_FILE: &str = "model.safetensors";
pub const LATENT_FILE: &str = "latent.safetensors";

/// A model ready to run: what the forward pass (training's and analysis's) needs.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    /// Effective weights (quantized where the precision quantizes).
    pub weights: ModelWeights,
    /// Bits of the per-token activation quantizer (0: off).
    pub act_bits: u32,
    /// Floor of the activation quantizer's scale (`quant.eps`).
    pub act_eps: f64,
    /// `model.attention_rate` and `model.uniform_attention`: attention is
    /// `rate·softmax + uniform part`.
    pub attention: AttentionMix,
    /// Which projection matrices the precision quantized (`quant.matrices`; all six
    /// in a file that does not say): what the quantization statistics describe.
    pub quantized: QuantMatrices,
}

impl Model {
    /// Weights run without activation quantization.
    pub fn plain(weights: ModelWeights) -> Model {
        Model {
            weights,
            act_bits: 0,
            act_eps: QuantConfig::default().eps,
            attention: AttentionMix::SOFTMAX,
            quantized: QuantMatrices::All,
        }
    }
    /// The effective weights of a cell, run as the cell was trained.
    pub fn of_cell(cfg: &CellConfig, weights: ModelWeights) -> Model {
        Model {
            weights,
            act_bits: cfg.quant.act_bits,
            act_eps: cfg.quant.eps,
            attention: cfg.model.attention_mix(),
            quantized: cfg.quant.matrices,
        }
    }
}

/// Attention scores are multiplied by this: 1/sqrt(d_model) for li2024, 1/sqrt(d_head)
/// for nanda2023 (science.md §2, [`Arch::attention_scale_dim`]).
pub fn attention_scale(arch: Arch, d_model: usize, heads: usize) -> f64 {
    1.0 / (arch.attention_scale_dim(d_model, heads) as f64).sqrt()
}

/// "bidirectional" (li2024) or "causal" (nanda2023), in TransformerLens's words.
pub fn attention_direction(arch: Arch) -> &'static str {
    if arch.is_causal() {
        "causal"
    } else {
        "bidirectional"
    }
}

/// The metadata of a format-2 model file of cell `key` trained with `cfg`.
pub fn metadata(cfg: &CellConfig, key: &str) -> BTreeMap<String, String> {
    let (p, d, h) = (cfg.modulus, cfg.width, cfg.model.heads);
    let q = &cfg.quant;
    let arch = cfg.model.arch;
    let entries: Vec<(&str, String)> = vec![
        ("format", MODEL_FORMAT.into()),
        ("bitgrok.version", env!("CARGO_PKG_VERSION").into()),
        ("bitgrok.key", key.into()),
        ("arch", arch.to_string()),
        ("precision", cfg.precision.to_string()),
        ("quant.binary_scale", q.binary_scale.to_string()),
        ("quant.ternary_center", q.ternary_center.to_string()),
        ("quant.eps", format!("{:?}", q.eps)),
        ("quant.act_bits", q.act_bits.to_string()),
        (
            "model.attention_rate",
            format!("{:?}", cfg.model.attention_rate),
        ),
        ("modulus", p.to_string()),
        ("d_vocab", (p + 1).to_string()),
        ("d_vocab_out", p.to_string()),
        ("n_ctx", "3".into()),
        ("eq_token", p.to_string()),
        ("readout_position", "2".into()),
        (
            "attention.scale",
            format!("{:?}", attention_scale(arch, d, h)),
        ),
        ("attention.direction", attention_direction(arch).into()),
        (
            "normalization",
            if arch.has_final_norm() {
                "final_rms"
            } else {
                "none"
            }
            .into(),
        ),
        ("normalization.eps", "0.0".into()),
        ("d_model", d.to_string()),
        ("n_heads", h.to_string()),
        ("d_head", cfg.d_head().to_string()),
        ("d_mlp", cfg.d_mlp().to_string()),
        ("act_fn", "relu".into()),
    ];
    let mut meta: BTreeMap<String, String> = entries
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    // Written only when not the default, so files of cells trained before the
    // setting existed stay byte for byte the same.
    if cfg.model.uniform_attention != UniformAttention::Mean {
        meta.insert(
            "model.uniform_attention".into(),
            cfg.model.uniform_attention.name().into(),
        );
    }
    if q.scale != QuantScale::PerStep {
        meta.insert("quant.scale".into(), q.scale.name().into());
    }
    if q.matrices != QuantMatrices::All {
        meta.insert("quant.matrices".into(), q.matrices.name().into());
    }
    meta
}

/// The bytes of `model.safetensors` (effective weights and metadata) and, for a
/// quantized precision, of `latent.safetensors` (the fp32 weights the optimizer
/// updated; written even where they equal the effective ones, so the store knows
/// which files a cell has from its config).
pub fn cell_model_files(
    cfg: &CellConfig,
    key: &str,
    effective: &ModelWeights,
    latent: &ModelWeights,
) -> Result<Vec<(&'static str, Vec<u8>)>> {
    let meta = metadata(cfg, key);
    let mut files = vec![(
        MODEL_FILE,
        to_safetensors_bytes(&effective.to_named(), &meta)?,
    )];
    if cfg.precision != crate::config::Precision::Fp32 {
        let mut lmeta = meta;
        lmeta.insert("format".into(), format!("{MODEL_FORMAT}-latent"));
        files.push((
            LATENT_FILE,
            to_safetensors_bytes(&latent.to_named(), &lmeta)?,
        ));
    }
    Ok(files)
}

/// What the user says about a file (command-line flags); metadata wins where it
/// exists, and a flag that contradicts it is an error.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Described {
    pub arch: Option<Arch>,
    pub act_bits: Option<u32>,
    pub act_eps: Option<f64>,
    pub attention_rate: Option<f64>,
    pub uniform_attention: Option<UniformAttention>,
}

/// A model read from a file, and how.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadedModel {
    pub model: Model,
    /// True when the file's own metadata described it.
    pub self_described: bool,
    /// Tensors read but not used: zero tensors, buffers, format-1 latent weights.
    pub skipped: Vec<String>,
}

fn meta_get<'a>(meta: &'a BTreeMap<String, String>, k: &str, what: &str) -> Result<&'a str> {
    meta.get(k)
        .map(String::as_str)
        .ok_or_else(|| anyhow!("{what}: metadata lacks \"{k}\""))
}

fn meta_parse<T: std::str::FromStr>(
    meta: &BTreeMap<String, String>,
    k: &str,
    what: &str,
) -> Result<T> {
    let v = meta_get(meta, k, what)?;
    v.parse()
        .map_err(|_| anyhow!("{what}: metadata \"{k}\" = {v:?} is not valid"))
}

/// " (missing: --a, --b)" for the flags of a file without metadata not given.
fn missing_flags(given: &Described) -> String {
    let missing: Vec<&str> = [
        ("--arch", given.arch.is_none()),
        ("--act-bits", given.act_bits.is_none()),
        ("--attention-rate", given.attention_rate.is_none()),
    ]
    .into_iter()
    .filter_map(|(flag, absent)| absent.then_some(flag))
    .collect();
    format!(" (missing: {})", missing.join(", "))
}

/// Names TransformerLens 4.x's `TransformerBridge.state_dict()` gives the parameters
/// bitgrok models (its `nn.Linear` layout; `tl_parameters()` gives the names
/// bitgrok reads).
const BRIDGE_NAMES: &[&str] = &[
    "embed.weight",
    "pos_embed.weight",
    "blocks.0.attn.q.weight",
    "blocks.0.attn.k.weight",
    "blocks.0.attn.v.weight",
    "blocks.0.attn.o.weight",
    "blocks.0.mlp.in.weight",
    "blocks.0.mlp.out.weight",
    "ln_final.weight",
    "unembed.weight",
];

/// A file saved from a 4.x bridge's `state_dict()` is refused with how to save one
/// bitgrok reads.
fn refuse_bridge_names(tensors: &NamedTensors, what: &str) -> Result<()> {
    let found: Vec<&str> = BRIDGE_NAMES
        .iter()
        .copied()
        .filter(|n| tensors.contains_key(*n))
        .collect();
    if !found.is_empty() {
        bail!(
            "{what} has TransformerLens 4.x bridge names ({}), as `bridge.state_dict()` \
             saves them; bitgrok reads TransformerLens's parameter names (embed.W_E, \
             blocks.0.attn.W_Q, ...): save `bridge.tl_parameters()` instead, e.g. \
             safetensors.torch.save_file({{k: v.contiguous() for k, v in \
             bridge.tl_parameters().items()}}, PATH)",
            found.join(", ")
        );
    }
    Ok(())
}

/// The model in `tensors`/`meta` (the content of `what`), strictly (module doc).
pub fn model_from_tensors(
    tensors: &NamedTensors,
    meta: &BTreeMap<String, String>,
    given: &Described,
    what: &str,
) -> Result<LoadedModel> {
    let self_described = meta.get("format").map(String::as_str) == Some(MODEL_FORMAT);
    if let Some(f) = meta.get("format").filter(|_| !self_described) {
        bail!("{what}: model format {f:?} is not one bitgrok reads ({MODEL_FORMAT})");
    }
    let quantized = match meta.get("quant.matrices").filter(|_| self_described) {
        Some(m) => [
            QuantMatrices::All,
            QuantMatrices::Qk,
            QuantMatrices::AllButQk,
        ]
        .into_iter()
        .find(|q| q.name() == m)
        .ok_or_else(|| {
            anyhow!("{what}: metadata quant.matrices = {m:?} is not all, qk or all-but-qk")
        })?,
        None => QuantMatrices::All,
    };
    let (arch, act_bits, act_eps, attention) = if self_described {
        let arch: Arch = meta_get(meta, "arch", what)?
            .parse()
            .map_err(|e| anyhow::anyhow!("{what}: {e} in metadata"))?;
        let act_bits: u32 = meta_parse(meta, "quant.act_bits", what)?;
        let act_eps: f64 = meta_parse(meta, "quant.eps", what)?;
        // Format-2 files written before the setting existed trained at rate 1.
        let attention_rate: f64 = match meta.get("model.attention_rate") {
            Some(_) => meta_parse(meta, "model.attention_rate", what)?,
            None => 1.0,
        };
        // ... and with the uniform part averaged.
        let uniform: UniformAttention = match meta.get("model.uniform_attention") {
            Some(_) => meta_parse(meta, "model.uniform_attention", what)?,
            None => UniformAttention::Mean,
        };
        for (flag, said, has) in [
            (
                "--arch",
                given.arch.map(|a| a.to_string()),
                arch.to_string(),
            ),
            (
                "--act-bits",
                given.act_bits.map(|b| b.to_string()),
                act_bits.to_string(),
            ),
            (
                "--attention-rate",
                given.attention_rate.map(|r| format!("{r:?}")),
                format!("{attention_rate:?}"),
            ),
            (
                "--uniform-attention",
                given.uniform_attention.map(|u| u.name().to_string()),
                uniform.name().to_string(),
            ),
        ] {
            if let Some(said) = said.filter(|s| *s != has) {
                bail!("{what}: {flag} {said} contradicts the file's metadata ({has})");
            }
        }
        let mix = AttentionMix {
            rate: attention_rate,
            uniform,
        };
        (arch, act_bits, act_eps, mix)
    } else {
        refuse_bridge_names(tensors, what)?;
        // Nothing is guessed: a wrong guess analyses a different function.
        let (Some(arch), Some(act_bits), Some(rate)) =
            (given.arch, given.act_bits, given.attention_rate)
        else {
            bail!(
                "{what} has no bitgrok metadata (format {MODEL_FORMAT}; e.g. it was saved by \
                 TransformerLens or by bitgrok before format 2), so how it runs must be \
                 given: --arch (li2024 or nanda2023), --act-bits (the activation \
                 quantizer's bits, 0 for none) and --attention-rate (1 for plain softmax \
                 attention){}",
                missing_flags(given)
            );
        };
        let uniform = match given.uniform_attention {
            Some(u) => u,
            None if rate < 1.0 => bail!(
                "{what} has no bitgrok metadata and --attention-rate {rate:?} mixes in \
                 uniform attention: give --uniform-attention (mean or sum) too"
            ),
            None => UniformAttention::Mean,
        };
        (
            arch,
            act_bits,
            given.act_eps.unwrap_or(QuantConfig::default().eps),
            AttentionMix { rate, uniform },
        )
    };
    // A format-1 bitgrok file: its latent weights sit beside the effective ones.
    let format1 = !self_described && meta.contains_key("bitgrok.key");
    let mut skipped = Vec::new();
    let mut unmodelled = Vec::new();
    let mut names: Vec<&String> = tensors.keys().collect();
    names.sort();
    for name in names {
        if PARAMS.iter().any(|p| p.name == name && p.present(arch)) {
            continue;
        }
        let zero = tensors[name].1.iter().all(|&v| v == 0.0);
        if is_transformer_lens_buffer(name) || (format1 && name.starts_with(LATENT_PREFIX)) || zero
        {
            skipped.push(name.clone());
        } else {
            unmodelled.push(name.as_str());
        }
    }
    if !unmodelled.is_empty() {
        bail!(
            "{what}: non-zero tensors that a {arch} model does not have: {} (bitgrok would \
             silently analyse a different function)",
            unmodelled.join(", ")
        );
    }
    let weights = ModelWeights::from_named(tensors, "", arch)
        .with_context(|| format!("reading model weights from {what}"))?;
    if self_described {
        let d = weights.dims();
        for (k, has) in [
            ("modulus", d.modulus),
            ("d_model", d.d_model),
            ("n_heads", d.heads),
            ("d_mlp", d.d_mlp),
        ] {
            let said: usize = meta_parse(meta, k, what)?;
            if said != has {
                bail!("{what}: metadata {k} = {said} but the tensors give {has}");
            }
        }
    }
    Ok(LoadedModel {
        model: Model {
            weights,
            act_bits,
            act_eps,
            attention,
            quantized,
        },
        self_described,
        skipped,
    })
}

/// Read a model file strictly (module doc).
pub fn read_model_file(path: &Path, given: &Described) -> Result<LoadedModel> {
    let (tensors, meta) = read_safetensors(path)?;
    model_from_tensors(&tensors, &meta, given, &path.display().to_string())
}
