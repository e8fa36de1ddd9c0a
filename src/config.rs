//! The resolved configuration of one cell: every setting that defines a training run,
//! with the defaults of `shared/science.md`. Sweep files (see `spec`) override these
//! fields by their dotted names (`train.lr`, `quant.binary_scale`, ...).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Weight precision of the six projection matrices (science.md §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Precision {
    Fp32,
    Ternary,
    Binary,
    /// Symmetric absmax k-bit integer grid, `k` in 2..=8.
    Int(u8),
}

/// The precision names a sweep file may use.
pub const PRECISION_NAMES: &[&str] = &[
    "fp32", "ternary", "binary", "int8", "int7", "int6", "int5", "int4", "int3", "int2",
];

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Precision::Fp32 => write!(f, "fp32"),
            Precision::Ternary => write!(f, "ternary"),
            Precision::Binary => write!(f, "binary"),
            Precision::Int(k) => write!(f, "int{k}"),
        }
    }
}

impl FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let p = match s {
            "fp32" => Precision::Fp32,
            "ternary" => Precision::Ternary,
            "binary" => Precision::Binary,
            _ => match s.strip_prefix("int").and_then(|k| k.parse::<u8>().ok()) {
                Some(k) if (2..=8).contains(&k) && s == format!("int{k}") => Precision::Int(k),
                _ => {
                    return Err(format!(
                        "unknown precision \"{s}\" (allowed: {})",
                        PRECISION_NAMES.join(", ")
                    ))
                }
            },
        };
        Ok(p)
    }
}

impl Serialize for Precision {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Precision {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Model architecture (science.md §2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// The seed study's released model: no positional embedding, bidirectional
    /// attention scaled by 1/sqrt(d_model), no MLP biases, final RMSNorm.
    Li2024,
    /// Nanda et al. 2023: learned positional embedding, causal mask, scale
    /// 1/sqrt(d_head), MLP biases, no final norm.
    Nanda2023,
}

/// What each architecture is (science.md §2), written once: the training pass, the
/// f64 reference, the weights and the model files all ask these. Each is an
/// exhaustive match, so a new architecture must answer every one.
impl Arch {
    /// Every architecture, in the order messages list them.
    pub const ALL: [Arch; 2] = [Arch::Li2024, Arch::Nanda2023];

    /// A learned positional embedding `W_pos`. Without one, `[a, b, =]` and
    /// `[b, a, =]` are the same input.
    pub fn has_positional_embedding(self) -> bool {
        match self {
            Arch::Li2024 => false,
            Arch::Nanda2023 => true,
        }
    }
    /// A causal mask (position i sees positions ≤ i) instead of bidirectional
    /// attention. The read-out position sees all three either way.
    pub fn is_causal(self) -> bool {
        match self {
            Arch::Li2024 => false,
            Arch::Nanda2023 => true,
        }
    }
    /// MLP biases `b_in`, `b_out`.
    pub fn has_mlp_biases(self) -> bool {
        match self {
            Arch::Li2024 => false,
            Arch::Nanda2023 => true,
        }
    }
    /// A final RMSNorm with learned gain before the unembedding.
    pub fn has_final_norm(self) -> bool {
        match self {
            Arch::Li2024 => true,
            Arch::Nanda2023 => false,
        }
    }
    /// Attention scores are divided by the square root of this: d_model (li2024)
    /// or d_head (nanda2023).
    pub fn attention_scale_dim(self, d_model: usize, heads: usize) -> usize {
        match self {
            Arch::Li2024 => d_model,
            Arch::Nanda2023 => d_model / heads,
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Arch::Li2024 => "li2024",
            Arch::Nanda2023 => "nanda2023",
        })
    }
}

/// The names [`fmt::Display`] writes, read back (`--arch` flags, model metadata).
impl FromStr for Arch {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Arch::ALL
            .into_iter()
            .find(|a| a.to_string() == s)
            .ok_or_else(|| {
                let names: Vec<String> = Arch::ALL.iter().map(|a| a.to_string()).collect();
                format!(
                    "unknown architecture \"{s}\" (allowed: {})",
                    names.join(", ")
                )
            })
    }
}

/// `[model]`: shape settings other than the width, which is a grid axis.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    pub arch: Arch,
    pub heads: usize,
    /// d_mlp = mlp_ratio * width.
    pub mlp_ratio: usize,
    /// Attention = rate·softmax(scores) + (1 − rate)·uniform over the positions a query
    /// may attend to (Zhong et al.): 1 is the standard transformer, 0 constant
    /// attention (their pizza-learning "Model B"). Absent in configs written before
    /// the setting existed, which trained with 1.
    #[serde(default = "one")]
    pub attention_rate: f64,
    /// How the uniform part of that mix is weighted ([`UniformAttention`]). Absent in
    /// configs written before the setting existed, which trained with `mean`.
    #[serde(default)]
    pub uniform_attention: UniformAttention,
    /// How the initial weights are scaled ([`InitScheme`]). Absent in configs
    /// written before the setting existed, which used `fan-in`.
    #[serde(default)]
    pub init: InitScheme,
    /// Factor on the `=` token's initial embedding `E_=`, applied after its Gaussian
    /// draw so every other initial weight is the seed's as at 1. In li2024 `E_=` is
    /// the read-out position's only query source, so 0 starts a model with uniform
    /// attention (an intervention on the routing present at initialisation). Absent
    /// in configs written before the setting existed, which used 1.
    #[serde(default = "one")]
    pub eq_init_scale: f64,
}

fn one() -> f64 {
    1.0
}

/// How `model.attention_rate` weights the uniform part of the attention.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UniformAttention {
    /// `rate·softmax + (1 − rate)/n` over the n positions a query sees: every row of
    /// the pattern sums to 1.
    #[default]
    Mean,
    /// `rate·softmax + (1 − rate)` at each of them, as Zhong et al.'s code
    /// (`normalized*attn_coeff + (1-attn_coeff)`): rows sum to n − (n − 1)·rate, so
    /// rate 0 sums the values instead of averaging them.
    Sum,
}

impl UniformAttention {
    /// Every weighting, in the order messages list them.
    pub const ALL: [UniformAttention; 2] = [UniformAttention::Mean, UniformAttention::Sum];
    /// The name sweep files, metadata and flags use.
    pub fn name(self) -> &'static str {
        match self {
            UniformAttention::Mean => "mean",
            UniformAttention::Sum => "sum",
        }
    }
}

impl FromStr for UniformAttention {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        UniformAttention::ALL
            .into_iter()
            .find(|u| u.name() == s)
            .ok_or_else(|| format!("unknown uniform attention \"{s}\" (allowed: mean, sum)"))
    }
}

/// The attention a model computes: `rate·softmax + uniform part` (Zhong et al.).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttentionMix {
    pub rate: f64,
    pub uniform: UniformAttention,
}

impl AttentionMix {
    /// The standard transformer: softmax attention only.
    pub const SOFTMAX: AttentionMix = AttentionMix {
        rate: 1.0,
        uniform: UniformAttention::Mean,
    };
    /// Rate 0 with the same uniform weighting: attention that ignores the queries.
    pub fn uniform_only(self) -> AttentionMix {
        AttentionMix { rate: 0.0, ..self }
    }
    /// The weight each seen position gets on top of `rate·softmax` when a query sees
    /// `visible` positions.
    pub fn uniform_weight(self, visible: usize) -> f64 {
        match self.uniform {
            UniformAttention::Mean => (1.0 - self.rate) * (1.0 / visible as f64),
            UniformAttention::Sum => 1.0 - self.rate,
        }
    }
    /// [`Self::uniform_weight`] in f32 for the training kernels, at the read-out
    /// position (which sees all three positions in every architecture).
    pub fn uniform_weight_f32(self) -> f32 {
        let rate = self.rate as f32;
        match self.uniform {
            UniformAttention::Mean => (1.0 - rate) * (1.0 / 3.0),
            UniformAttention::Sum => 1.0 - rate,
        }
    }
}

/// How the initial Gaussian weights are scaled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InitScheme {
    /// Std `1/sqrt(fan_in)` for every matrix (science.md §2).
    #[default]
    FanIn,
    /// Zhong et al.'s code: as `fan-in` except W_in `1/sqrt(d_mlp)`, W_out
    /// `1/sqrt(d_model)` and W_U `1/sqrt(p + 1)` (their fan-out for these three).
    Zhong2023,
}

impl ModelConfig {
    /// The attention this model computes.
    pub fn attention_mix(&self) -> AttentionMix {
        AttentionMix {
            rate: self.attention_rate,
            uniform: self.uniform_attention,
        }
    }
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            arch: Arch::Li2024,
            heads: 4,
            mlp_ratio: 4,
            attention_rate: 1.0,
            uniform_attention: UniformAttention::Mean,
            init: InitScheme::FanIn,
            eq_init_scale: 1.0,
        }
    }
}

/// `[quant]`: options of the quantizers (science.md §3). Defaults are the published
/// formulas; the seed study's released code uses `binary_scale = false` and
/// `ternary_center = true`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuantConfig {
    /// Binary: multiply sign(W - mean W) by beta = mean|W| (BitNet). false gives ±1.
    pub binary_scale: bool,
    /// Ternary: subtract mean(W) before the absmean quantizer (seed study's code).
    pub ternary_center: bool,
    /// The epsilon added to the absmean scale gamma.
    pub eps: f64,
    /// Per-token absmax activation quantization to this many bits at the inputs
    /// of the quantized matrices; 0 = off.
    pub act_bits: u32,
    /// What the quantized levels are multiplied by ([`QuantScale`]). Absent in
    /// configs written before the setting existed, which used `per-step`.
    #[serde(default)]
    pub scale: QuantScale,
    /// Which of the six projection matrices are quantized ([`QuantMatrices`]).
    /// Absent in configs written before the setting existed: `all`.
    #[serde(default)]
    pub matrices: QuantMatrices,
}

impl Default for QuantConfig {
    fn default() -> Self {
        QuantConfig {
            binary_scale: true,
            ternary_center: false,
            eps: 1e-5,
            act_bits: 0,
            scale: QuantScale::PerStep,
            matrices: QuantMatrices::All,
        }
    }
}

/// What a quantized matrix's levels (±1; −1, 0, 1; −m … m) are multiplied by. The
/// levels are always the precision's rule applied to the current latent weights.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum QuantScale {
    /// The precision's scale of the current latent weights, recomputed every step:
    /// γ (ternary), β = mean|W| (binary with `binary_scale`), s = max|W|/m (int-k).
    #[default]
    PerStep,
    /// None: the effective weights are the levels themselves, {−1, 0, 1} (ternary)
    /// or the integers −m … m (int-k). Binary's is `quant.binary_scale = false`.
    None,
    /// The same scale computed once from the initial weights and held constant: a
    /// fixed magnitude per matrix, neither learned nor decayed (binary: c·sign(W −
    /// mean W), c the initial mean|W|).
    Initial,
}

/// Which of the six projection matrices a quantized precision quantizes; the others
/// stay fp32.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum QuantMatrices {
    /// W_Q, W_K, W_V, W_O, W_in, W_out.
    #[default]
    All,
    /// W_Q and W_K only: the attention scores.
    Qk,
    /// Every one but W_Q and W_K.
    AllButQk,
}

impl QuantMatrices {
    /// The name sweep files and model metadata use.
    pub fn name(self) -> &'static str {
        match self {
            QuantMatrices::All => "all",
            QuantMatrices::Qk => "qk",
            QuantMatrices::AllButQk => "all-but-qk",
        }
    }
}

impl QuantScale {
    /// The name sweep files and model metadata use.
    pub fn name(self) -> &'static str {
        match self {
            QuantScale::PerStep => "per-step",
            QuantScale::None => "none",
            QuantScale::Initial => "initial",
        }
    }
}

/// `[train]`: optimizer, data split and schedule (science.md §1, §4).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    pub steps: u64,
    pub lr: f64,
    pub weight_decay: f64,
    pub betas: [f64; 2],
    pub eps: f64,
    /// Linear learning-rate warmup over this many steps; 0 = none.
    pub warmup_steps: u64,
    /// Fraction of the p² pairs in the training set.
    pub train_fraction: f64,
    /// Evaluate train and test loss/accuracy every this many steps (and at 0 and the end).
    pub eval_every: u64,
    /// Write a resumable checkpoint every this many steps. Does not change results,
    /// so it is not part of the cell key.
    pub checkpoint_every: u64,
    /// Grokfast-EMA gradient filter (off by default).
    pub grokfast: bool,
    pub grokfast_alpha: f64,
    pub grokfast_lambda: f64,
    /// Store the effective weights every this many steps (and at step 0 and the
    /// end) under `snapshots/`, for the progress measures; 0 = off. Part of the cell
    /// key when non-zero, so a sweep asking for snapshots never gets a cell without.
    pub snapshot_every: u64,
    /// Record how AdamW moves the `=` embedding, summed over windows of this many
    /// updates, in `eq_update.csv`; 0 = off. Only reads the optimizer's state (the
    /// weights are the same bits) but part of the cell key when non-zero, as
    /// snapshots are, so a sweep asking for the record never gets a cell without.
    pub eq_update_every: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            steps: 10_000,
            lr: 1e-3,
            weight_decay: 1.0,
            betas: [0.9, 0.98],
            eps: 1e-8,
            warmup_steps: 0,
            train_fraction: 0.3,
            eval_every: 100,
            checkpoint_every: 1000,
            grokfast: false,
            grokfast_alpha: 0.98,
            grokfast_lambda: 2.0,
            snapshot_every: 0,
            eq_update_every: 0,
        }
    }
}

/// Everything that defines one trained model. `seed` seeds both the train/test
/// split and the initialisation (through separate derived streams).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CellConfig {
    pub precision: Precision,
    pub modulus: usize,
    /// d_model.
    pub width: usize,
    pub seed: u64,
    pub model: ModelConfig,
    pub quant: QuantConfig,
    pub train: TrainConfig,
}

impl Default for CellConfig {
    fn default() -> Self {
        CellConfig {
            precision: Precision::Fp32,
            modulus: 113,
            width: 128,
            seed: 0,
            model: ModelConfig::default(),
            quant: QuantConfig::default(),
            train: TrainConfig::default(),
        }
    }
}

/// The quantizer options, each with the precisions that read it: cells that differ
/// in these and the precision alone are one model at different precisions
/// (`compare.csv` pairs them), and a cell of a precision that does not read one
/// never depends on it ([`CellConfig::trained_form`]). Each entry: the setting,
/// whether a precision reads it, and how to reset it to the default.
#[allow(clippy::type_complexity)]
pub const QUANTIZER_SETTINGS: &[(
    &str,
    fn(Precision) -> bool,
    fn(&mut QuantConfig, &QuantConfig),
)] = &[
    (
        "quant.binary_scale",
        |p| p == Precision::Binary,
        |q, d| q.binary_scale = d.binary_scale,
    ),
    (
        "quant.ternary_center",
        |p| p == Precision::Ternary,
        |q, d| q.ternary_center = d.ternary_center,
    ),
    (
        "quant.scale",
        |p| p != Precision::Fp32,
        |q, d| q.scale = d.scale,
    ),
    (
        "quant.matrices",
        |p| p != Precision::Fp32,
        |q, d| q.matrices = d.matrices,
    ),
];

impl CellConfig {
    /// This config with every setting its training cannot read reset to the default:
    /// `quant.binary_scale` unless the precision is binary, `quant.ternary_center`
    /// unless ternary, `quant.eps` unless ternary or with activation quantization,
    /// `quant.scale` and `quant.matrices` at fp32, the Grokfast constants without Grokfast, `model.uniform_attention` at
    /// attention rate 1 (the uniform part is 0 either way). Configs with equal
    /// trained forms train the same model; the cell key hashes this form.
    pub fn trained_form(&self) -> CellConfig {
        let (d, mut out) = (CellConfig::default(), self.clone());
        for &(_, reads, reset) in QUANTIZER_SETTINGS {
            if !reads(self.precision) {
                reset(&mut out.quant, &d.quant);
            }
        }
        if self.precision != Precision::Ternary && self.quant.act_bits == 0 {
            out.quant.eps = d.quant.eps;
        }
        if !self.train.grokfast {
            out.train.grokfast_alpha = d.train.grokfast_alpha;
            out.train.grokfast_lambda = d.train.grokfast_lambda;
        }
        if self.model.attention_rate == 1.0 {
            out.model.uniform_attention = d.model.uniform_attention;
        }
        out
    }

    pub fn d_head(&self) -> usize {
        self.width / self.model.heads
    }
    pub fn d_mlp(&self) -> usize {
        self.width * self.model.mlp_ratio
    }

    /// About how many bytes training this cell holds at its peak, from its shapes:
    /// 5 MiB of program, 3.5 × 4 bytes per (input pair, MLP neuron) over all p²
    /// pairs (activations; evaluation runs the test pairs too) and 7 × 4 bytes per
    /// parameter (weights, latent weights, gradients, two Adam moments, Grokfast).
    /// Fitted to `bitgrok bench`'s peak RSS at p = 31–227, width 64–512 (within 15 %
    /// there, on training pairs), then taken over all pairs: an upper estimate.
    pub fn memory_estimate_bytes(&self) -> u64 {
        let (p, d, m) = (self.modulus as u64, self.width as u64, self.d_mlp() as u64);
        let params = (p + 1) * d + 3 * d + 4 * d * d + 2 * d * m + m + d + d * p;
        let activations = p * p * m;
        (5 << 20) + (14 * activations) + 28 * params
    }
}

/// Bytes of memory this machine can give a new process now (`MemAvailable`), None
/// where the system does not say.
pub fn available_memory_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// `[analysis]`: thresholds of the learned-algorithm signatures (science.md §5).
/// Not part of the training key: changing these re-analyses, never retrains.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnalysisConfig {
    /// A neuron belongs to its best frequency when that frequency explains at least
    /// this fraction of its variance.
    pub fve_threshold: f64,
    /// Embedding spectrum: count frequencies covering this share of non-constant energy.
    pub energy_coverage: f64,
    /// Accuracy that counts as memorised (train) or generalised (test).
    pub accuracy_threshold: f64,
    /// Number of fixed random (a, b, c) triples for gradient symmetricity; all p³
    /// triples when p³ is at most this.
    pub symmetricity_triples: usize,
    pub symmetricity_seed: u64,
    /// A neuron whose activation's standard deviation over all p² inputs is at most
    /// this is dead (belongs to no frequency).
    pub dead_neuron_std: f64,
    /// Position-2 attention counts as uniform (gradient symmetricity 1 by
    /// construction) when every head's mean total-variation distance from uniform is
    /// at most this.
    pub uniform_attention_max_tv: f64,
    /// Attention counts as constant when every head's mean total-variation distance
    /// from its mean pattern is at most this.
    pub constant_attention_max_variation: f64,
    /// Label `no-fourier` when the key frequencies explain less than this share of
    /// the logits.
    pub fourier_min_logits_explained: f64,
    /// Routing is `content-dependent` when replacing position-2 attention by uniform
    /// raises the all-pairs loss by at least this many nats (planted clock: +0.11,
    /// from 2e-6; planted pizzas and attention-rate-0 models: 0).
    pub routing_min_loss_increase: f64,
    /// A key frequency's logit pattern is `clock` (`pizza`) when its clock (pizza)
    /// score leads the other by at least this (a perfect clock or pizza leads by
    /// 0.20).
    pub pattern_min_margin: f64,
    /// … and only when that leading score is at least this: a frequency whose
    /// isolated logits match neither pattern (scores ≤ 0) is `undecided`.
    pub pattern_min_score: f64,
    /// Neurons are `degree-1` when their mean degree-1 share is at least this many
    /// times their degree-2 share (and ≥ 0.5), `degree-2` the other way round.
    pub neuron_form_dominance: f64,
}

impl Default for AnalysisConfig {
    fn default() -> Self {
        AnalysisConfig {
            fve_threshold: 0.85,
            energy_coverage: 0.9,
            accuracy_threshold: 0.99,
            symmetricity_triples: 1000,
            symmetricity_seed: 0,
            dead_neuron_std: 1e-6,
            uniform_attention_max_tv: 0.01,
            constant_attention_max_variation: 0.01,
            fourier_min_logits_explained: 0.5,
            routing_min_loss_increase: 0.05,
            pattern_min_margin: 0.05,
            pattern_min_score: 0.0,
            neuron_form_dominance: 2.0,
        }
    }
}

mod rules;
pub use rules::{limits, Violation};
