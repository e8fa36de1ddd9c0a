//! The signature's types: what `signature.json` holds, and the per-frequency and
//! per-neuron rows of its CSV tables.

use super::*;

/// The training pairs `(a, b)` of a cell; every other pair is test.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct TrainSplit {
    pub train: Vec<(usize, usize)>,
}

/// Where the outcome figures come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeSource {
    /// The last point of the training curves (timings from the whole curve).
    Curves,
    /// The final weights evaluated on the given train/test split.
    WeightsSplit,
    /// The final weights on all p² pairs (train and test figures absent).
    WeightsAllPairs,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub source: OutcomeSource,
    pub final_train_loss: Option<f64>,
    pub final_train_acc: Option<f64>,
    pub final_test_loss: Option<f64>,
    pub final_test_acc: Option<f64>,
    /// The final weights on all p² pairs (always computed).
    pub all_pairs_loss: f64,
    pub all_pairs_acc: f64,
    /// Final test accuracy (all-pairs accuracy when there is no test set) ≥ threshold.
    pub generalised: bool,
    /// Test accuracy reached the threshold at an evaluated step later than train
    /// accuracy did (curves only: step_generalised > step_memorised), whether or not
    /// it stayed there; without curves equal to `generalised`.
    pub grokked: bool,
    /// First evaluated step with train accuracy ≥ threshold (curves only).
    pub step_memorised: Option<u64>,
    /// First evaluated step with test accuracy ≥ threshold (curves only).
    pub step_generalised: Option<u64>,
    /// step_generalised − step_memorised.
    pub grokking_gap: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingSummary {
    /// Norm of `W_E[0..p]` per frequency `0..=⌊p/2⌋` (index = frequency, 0 = constant).
    pub norm_by_frequency: Vec<f64>,
    /// Gini coefficient of the norms of frequencies 1..=⌊p/2⌋.
    pub gini: f64,
    /// Fewest frequencies covering `energy_coverage` of the non-constant energy.
    pub frequencies_for_coverage: usize,
    pub energy_coverage: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeyFrequency {
    pub frequency: usize,
    pub neurons: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NeuronSummary {
    pub neurons: usize,
    /// Frequencies that own at least one clustered neuron, ascending.
    pub key_frequencies: Vec<usize>,
    pub neurons_per_key_frequency: Vec<KeyFrequency>,
    pub clustered: usize,
    /// Clustered neurons over all neurons.
    pub fraction_clustered: f64,
    pub dead: usize,
    /// Mean best-frequency FVE over live neurons.
    pub mean_fve: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogitSummary {
    /// Fraction of the class-centred logits' squared norm on the key frequencies'
    /// `cos(2πk(a+b−c)/p)` directions.
    pub explained_by_key_frequencies: f64,
    /// Full loss on all p² pairs.
    pub full_loss_all_pairs: f64,
    /// Which pairs the restricted loss uses: "test" (with a split) or "all_pairs".
    pub restricted_pairs: String,
    /// Full loss on the restricted loss's pairs.
    pub full_loss_restricted_pairs: f64,
    pub restricted_loss: f64,
    /// restricted_loss / full_loss_restricted_pairs (None when not finite).
    pub restricted_ratio: Option<f64>,
    /// Which pairs the excluded loss uses: "train" (with a split) or "all_pairs".
    pub excluded_pairs: String,
    /// Full loss on the excluded loss's pairs.
    pub full_loss_excluded_pairs: f64,
    pub excluded_loss: f64,
    /// excluded_loss / full_loss_excluded_pairs (None when not finite).
    pub excluded_ratio: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlgorithmSummary {
    /// The attention rate the model was trained and analysed with.
    pub attention_rate: f64,
    /// Position-2 attention statistics.
    pub attention: clock_pizza::AttentionSummary,
    /// Where the position-2 query comes from.
    pub query: mechanism::QueryPath,
    /// The same at initialisation: the cell's initial weights as its quantizer sees
    /// them (None for a model file, whose initial weights are unknown). Tells routing
    /// present from the start apart from routing that training built.
    #[serde(default)]
    pub query_init: Option<mechanism::QueryPath>,
    /// The all-pairs loss with position-2 attention replaced by uniform.
    pub ablation: mechanism::AttentionAblation,
    /// The same with `x_=` cut from its other routes (residual stream, own value).
    /// Absent in signatures of analysis versions before 8.
    #[serde(default)]
    pub eq_routes: Option<mechanism::EqRouteAblation>,
    /// d ln L / d ln (score scale) on the pairs of the excluded loss (train pairs
    /// when known): whether the loss rewards sharper read-out attention. Absent in
    /// signatures of analysis versions before 9.
    #[serde(default)]
    pub score_elasticity: Option<f64>,
    /// d ln L / d ln ‖E_=‖ on the same pairs (E_= scaled on every route): whether the
    /// loss pulls the `=` embedding up or down. Absent before analysis version 10.
    #[serde(default)]
    pub eq_elasticity: Option<f64>,
    /// Mean cosine of d logit_c / d x₀ and d logit_c / d x₁ over fixed triples.
    pub gradient_symmetricity: f64,
    /// How many (a, b, c) triples that mean is over.
    pub symmetricity_triples: usize,
    /// On the correct logit (Zhong et al.'s paper). None when it is constant.
    pub distance_irrelevance: Option<f64>,
    /// On the largest wrong logit (what Zhong et al.'s released tables hold).
    pub distance_irrelevance_max_wrong: Option<f64>,
    /// Zhong et al.'s clock and pizza scores per key frequency.
    pub logit_patterns: Vec<mechanism::LogitPattern>,
    /// The clustered neurons' degree-1 and degree-2 shares (None without any).
    pub neuron_form: Option<mechanism::NeuronFormSummary>,
    /// Diagnostic, not read by any label: the share of the correct logit's variance
    /// explained by a − b (≈ 1 − distance irrelevance²).
    pub difference_share: Option<f64>,
    /// The same for `(x2 ⊙ g)·W_U`, before the final RMSNorm (li2024 only).
    pub difference_share_pre_norm: Option<f64>,
    /// What the final RMSNorm divides by (li2024 only).
    pub norm_split: Option<mechanism::NormSplit>,
    /// Attention routing, from the ablation.
    pub routing: labels::Routing,
    /// The logit pattern over the key frequencies.
    pub pattern: labels::Pattern,
    /// The clustered neurons' form.
    pub neuron_form_label: labels::Form,
    /// See [`labels::summary_label`].
    pub label: labels::Label,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MatrixStats {
    /// TransformerLens name.
    pub name: String,
    /// Fraction of entries exactly 0.
    pub zero_fraction: f64,
    /// Number of distinct values, counted up to `DISTINCT_VALUES_CAP` (256).
    pub distinct_values: usize,
    /// True when there are more than `DISTINCT_VALUES_CAP` distinct values.
    pub distinct_values_over_cap: bool,
    /// max |W|: the scale of int-k and unscaled binary grids.
    pub max_abs: f64,
    /// mean |W|: the scale of ternary (absmean) and scaled binary.
    pub mean_abs: f64,
}

/// One row of frequencies.csv.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FrequencyRow {
    pub frequency: usize,
    pub embedding_norm: f64,
    /// Share of the non-constant embedding energy (0 for frequency 0).
    pub embedding_energy_fraction: f64,
    pub neurons: usize,
    pub key: bool,
    /// Share of the class-centred logits on `cos(2πk(a+b−c)/p)`.
    pub logits_explained: f64,
    /// Zhong et al.'s clock and pizza scores and their verdict (key frequencies only).
    pub clock_score: Option<f64>,
    pub pizza_score: Option<f64>,
    pub pattern: Option<labels::Pattern>,
}

/// One row of neurons.csv.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NeuronRow {
    pub neuron: usize,
    pub best_frequency: Option<usize>,
    pub fve: f64,
    pub clustered: bool,
    pub dead: bool,
    pub mean: f64,
    pub std: f64,
    /// Form of the pre-activation at the best frequency (clustered neurons only).
    pub degree1: Option<f64>,
    pub degree2: Option<f64>,
    pub phase_a: Option<f64>,
    pub phase_b: Option<f64>,
}

/// The learned-algorithm signature of one model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Signature {
    pub analysis_version: u32,
    pub arch: Arch,
    pub modulus: usize,
    pub width: usize,
    pub heads: usize,
    pub d_mlp: usize,
    pub outcome: Outcome,
    pub embedding: EmbeddingSummary,
    pub neurons: NeuronSummary,
    pub logits: LogitSummary,
    pub algorithm: AlgorithmSummary,
    pub quantization: Vec<MatrixStats>,
    pub frequency_table: Vec<FrequencyRow>,
    pub neuron_table: Vec<NeuronRow>,
    /// Phase boundaries over training, for cells with snapshots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phases: Option<progress::Phases>,
}
