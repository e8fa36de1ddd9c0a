//! The tables' columns: number formats, and one function per table turning the
//! rows read by [`super::read_sweep`] into CSV bytes (see the parent's module doc).

use super::{csv_bytes, Row, Status};
use crate::analysis::labels::Label;
use crate::analysis::progress::Phases;
use crate::analysis::progress::ProgressRow;
use crate::analysis::{FrequencyRow, Signature};
use anyhow::{Context, Result};
use std::collections::{HashMap, HashSet};

// ---- Number formats -------------------------------------------------------------

pub(super) fn special(x: f64) -> Option<String> {
    if x.is_nan() {
        Some("NaN".into())
    } else if x.is_infinite() {
        Some(if x > 0.0 { "inf" } else { "-inf" }.into())
    } else {
        None
    }
}

/// Accuracies, fractions, ratios and their differences: 4 decimals.
pub fn fmt_fraction(x: f64) -> String {
    if let Some(s) = special(x) {
        return s;
    }
    let s = format!("{x:.4}");
    if s == "-0.0000" {
        "0.0000".into()
    } else {
        s
    }
}

/// Losses and norms: scientific with 4 significant digits.
pub fn fmt_magnitude(x: f64) -> String {
    if let Some(s) = special(x) {
        return s;
    }
    let x = if x == 0.0 { 0.0 } else { x };
    format!("{x:.3e}")
}

pub(super) fn fmt_median_of_integers(x: f64) -> String {
    // Medians of integers are integers or halves, which `{}` prints exactly.
    let x = if x == 0.0 { 0.0 } else { x };
    format!("{x}")
}

pub(super) fn opt<T>(x: Option<T>, f: impl Fn(T) -> String) -> String {
    x.map(f).unwrap_or_default()
}

pub(super) fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.into()
}

// ---- Tables ---------------------------------------------------------------------

/// One column of cells.csv computed from a signature: its name and its text.
type SignatureColumn = (&'static str, fn(&Signature) -> String);

/// The signature's columns of cells.csv, in order (between `key, status` and
/// `train_seconds, error`): the one list of what cells.csv holds.
pub(super) const SIGNATURE_COLUMNS: &[SignatureColumn] = &[
    ("final_train_loss", |s| {
        opt(s.outcome.final_train_loss, fmt_magnitude)
    }),
    ("final_test_loss", |s| {
        opt(s.outcome.final_test_loss, fmt_magnitude)
    }),
    ("final_train_acc", |s| {
        opt(s.outcome.final_train_acc, fmt_fraction)
    }),
    ("final_test_acc", |s| {
        opt(s.outcome.final_test_acc, fmt_fraction)
    }),
    ("grokked", |s| yes_no(s.outcome.grokked)),
    ("step_memorised", |s| {
        opt(s.outcome.step_memorised, |v| v.to_string())
    }),
    ("step_generalised", |s| {
        opt(s.outcome.step_generalised, |v| v.to_string())
    }),
    ("grokking_gap", |s| {
        opt(s.outcome.grokking_gap, |v| v.to_string())
    }),
    ("step_circuit_start", |s| {
        opt(phase(s, |p| p.step_circuit_start), |v| v.to_string())
    }),
    ("step_cleanup_start", |s| {
        opt(phase(s, |p| p.step_cleanup_start), |v| v.to_string())
    }),
    ("step_cleanup_end", |s| {
        opt(phase(s, |p| p.step_cleanup_end), |v| v.to_string())
    }),
    ("gini", |s| fmt_fraction(s.embedding.gini)),
    ("frequencies_for_coverage", |s| {
        s.embedding.frequencies_for_coverage.to_string()
    }),
    ("n_key_frequencies", |s| {
        s.neurons.key_frequencies.len().to_string()
    }),
    ("key_frequencies", |s| {
        key_frequency_list(&s.neurons.key_frequencies)
    }),
    ("fraction_clustered", |s| {
        fmt_fraction(s.neurons.fraction_clustered)
    }),
    ("dead_neurons", |s| s.neurons.dead.to_string()),
    ("logits_explained", |s| {
        fmt_fraction(s.logits.explained_by_key_frequencies)
    }),
    ("restricted_loss", |s| {
        fmt_magnitude(s.logits.restricted_loss)
    }),
    ("restricted_ratio", |s| {
        opt(s.logits.restricted_ratio, fmt_fraction)
    }),
    ("excluded_loss", |s| fmt_magnitude(s.logits.excluded_loss)),
    ("excluded_ratio", |s| {
        opt(s.logits.excluded_ratio, fmt_fraction)
    }),
    ("gradient_symmetricity", |s| {
        fmt_fraction(s.algorithm.gradient_symmetricity)
    }),
    ("distance_irrelevance", |s| {
        opt(s.algorithm.distance_irrelevance, fmt_fraction)
    }),
    ("distance_irrelevance_max_wrong", |s| {
        opt(s.algorithm.distance_irrelevance_max_wrong, fmt_fraction)
    }),
    ("clock_score", |s| {
        opt(mean_pattern(s, |x| x.clock), fmt_fraction)
    }),
    ("pizza_score", |s| {
        opt(mean_pattern(s, |x| x.pizza), fmt_fraction)
    }),
    ("pattern_per_frequency", |s| {
        s.frequency_table
            .iter()
            .filter_map(|f| f.pattern.map(|p| format!("{}:{}", f.frequency, p)))
            .collect::<Vec<_>>()
            .join(";")
    }),
    ("attention_tv", |s| {
        fmt_fraction(s.algorithm.attention.tv_from_uniform)
    }),
    ("attention_tv_per_head", |s| {
        per_head(s, |h| fmt_fraction(h.tv_from_uniform))
    }),
    ("attention_variation", |s| {
        fmt_fraction(s.algorithm.attention.variation)
    }),
    ("attention_entropy", |s| {
        fmt_fraction(s.algorithm.attention.entropy)
    }),
    ("qk_norm", |s| fmt_magnitude(s.algorithm.attention.qk_norm)),
    ("qk_norm_per_head", |s| {
        per_head(s, |h| fmt_magnitude(h.qk_norm))
    }),
    ("eq_norm_ratio", |s| {
        fmt_magnitude(s.algorithm.query.eq_norm_ratio)
    }),
    ("query_norm_per_head", |s| {
        join(
            s.algorithm
                .query
                .heads
                .iter()
                .map(|h| fmt_magnitude(h.query_norm)),
        )
    }),
    ("score_spread", |s| {
        fmt_magnitude(s.algorithm.query.score_spread)
    }),
    ("score_spread_per_head", |s| {
        join(
            s.algorithm
                .query
                .heads
                .iter()
                .map(|h| fmt_magnitude(h.score_spread)),
        )
    }),
    ("score_spread_init", |s| {
        opt(
            s.algorithm.query_init.as_ref().map(|q| q.score_spread),
            fmt_magnitude,
        )
    }),
    ("ablation_loss_increase", |s| {
        fmt_magnitude(s.algorithm.ablation.loss_increase)
    }),
    ("ablation_acc", |s| {
        fmt_fraction(s.algorithm.ablation.accuracy_uniform)
    }),
    ("eq_residual_loss_increase", |s| {
        opt(
            s.algorithm
                .eq_routes
                .as_ref()
                .map(|e| e.residual_loss_increase),
            fmt_magnitude,
        )
    }),
    ("eq_value_loss_increase", |s| {
        opt(
            s.algorithm
                .eq_routes
                .as_ref()
                .map(|e| e.value_loss_increase),
            fmt_magnitude,
        )
    }),
    ("score_elasticity", |s| {
        opt(s.algorithm.score_elasticity, fmt_magnitude)
    }),
    ("eq_elasticity", |s| {
        opt(s.algorithm.eq_elasticity, fmt_magnitude)
    }),
    ("degree1_share", |s| {
        opt(
            s.algorithm.neuron_form.as_ref().map(|f| f.degree1_mean),
            fmt_fraction,
        )
    }),
    ("degree2_share", |s| {
        opt(
            s.algorithm.neuron_form.as_ref().map(|f| f.degree2_mean),
            fmt_fraction,
        )
    }),
    ("phase_alignment", |s| {
        opt(
            s.algorithm.neuron_form.as_ref().map(|f| f.phase_alignment),
            fmt_fraction,
        )
    }),
    ("difference_share", |s| {
        opt(s.algorithm.difference_share, fmt_fraction)
    }),
    ("difference_share_pre_norm", |s| {
        opt(s.algorithm.difference_share_pre_norm, fmt_fraction)
    }),
    ("x2_norm_cv", |s| {
        opt(
            s.algorithm.norm_split.as_ref().map(|n| n.x2_norm_cv),
            fmt_fraction,
        )
    }),
    ("x2_norm_difference_share", |s| {
        opt(
            s.algorithm
                .norm_split
                .as_ref()
                .and_then(|n| n.x2_norm_difference_share),
            fmt_fraction,
        )
    }),
    ("routing", |s| s.algorithm.routing.to_string()),
    ("logit_pattern", |s| s.algorithm.pattern.to_string()),
    ("neuron_form", |s| s.algorithm.neuron_form_label.to_string()),
    ("label", |s| s.algorithm.label.to_string()),
    ("zero_fraction_mean", |s| {
        opt(
            crate::analysis::zero_fraction_mean(&s.quantization),
            fmt_fraction,
        )
    }),
    ("distinct_values_max", |s| {
        distinct_values_max(&s.quantization)
    }),
];

/// Every column of cells.csv after the identity columns.
pub fn cell_columns() -> Vec<&'static str> {
    ["key", "status"]
        .into_iter()
        .chain(SIGNATURE_COLUMNS.iter().map(|(name, _)| *name))
        .chain(["train_seconds", "error"])
        .collect()
}

pub(super) fn header(cols: &[String], rest: &[&str]) -> Vec<String> {
    cols.iter()
        .cloned()
        .chain(rest.iter().map(|s| s.to_string()))
        .collect()
}

fn join(items: impl Iterator<Item = String>) -> String {
    items.collect::<Vec<_>>().join(";")
}

fn per_head(
    s: &Signature,
    f: fn(&crate::analysis::clock_pizza::HeadAttention) -> String,
) -> String {
    join(s.algorithm.attention.heads.iter().map(f))
}

/// Mean over the key frequencies of one of Zhong et al.'s scores.
pub fn mean_pattern(
    s: &Signature,
    f: fn(&crate::analysis::mechanism::LogitPattern) -> f64,
) -> Option<f64> {
    let v = &s.algorithm.logit_patterns;
    (!v.is_empty()).then(|| v.iter().map(f).sum::<f64>() / v.len() as f64)
}

fn distinct_values_max(q: &[crate::analysis::MatrixStats]) -> String {
    if q.is_empty() {
        String::new()
    } else if q.iter().any(|m| m.distinct_values_over_cap) {
        format!(">{}", crate::analysis::DISTINCT_VALUES_CAP)
    } else {
        q.iter()
            .map(|m| m.distinct_values)
            .max()
            .unwrap_or(0)
            .to_string()
    }
}

/// A phase boundary of a signature (none without snapshots).
pub(super) fn phase(s: &Signature, f: fn(&Phases) -> Option<u64>) -> Option<u64> {
    s.phases.as_ref().and_then(f)
}

pub(super) fn key_frequency_list(keys: &[usize]) -> String {
    let mut k = keys.to_vec();
    k.sort_unstable();
    k.iter()
        .map(|k| k.to_string())
        .collect::<Vec<_>>()
        .join(";")
}

pub(super) fn cells_table(cols: &[String], rows: &[Row]) -> Result<Vec<u8>> {
    let n_sig = SIGNATURE_COLUMNS.len();
    let out: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut v = r.ids.clone();
            v.push(r.key.clone());
            v.push(r.status.word().into());
            match &r.sig {
                Some(s) => v.extend(SIGNATURE_COLUMNS.iter().map(|(_, f)| f(s))),
                None => v.extend(std::iter::repeat_n(String::new(), n_sig)),
            }
            v.push(opt(r.seconds, |s| format!("{s:.1}")));
            // One line, so a long error does not break the table's layout.
            v.push(opt(r.error.as_deref(), |e| {
                e.split_whitespace().collect::<Vec<_>>().join(" ")
            }));
            v
        })
        .collect();
    csv_bytes(&header(cols, &cell_columns()), &out)
}

/// One column of frequencies.csv: its name and its text from the cell's key and
/// the key frequency's row of the signature.
type FrequencyColumn = (&'static str, fn(&str, &FrequencyRow) -> String);

/// The columns of frequencies.csv after the identity columns, in order.
pub const FREQUENCY_COLUMNS: &[FrequencyColumn] = &[
    ("frequency", |_, f| f.frequency.to_string()),
    ("key", |key, _| key.to_string()),
    ("embedding_norm", |_, f| fmt_magnitude(f.embedding_norm)),
    ("embedding_energy_fraction", |_, f| {
        fmt_fraction(f.embedding_energy_fraction)
    }),
    ("neurons", |_, f| f.neurons.to_string()),
    ("logits_explained", |_, f| fmt_fraction(f.logits_explained)),
    ("clock_score", |_, f| opt(f.clock_score, fmt_fraction)),
    ("pizza_score", |_, f| opt(f.pizza_score, fmt_fraction)),
    ("pattern", |_, f| opt(f.pattern, |p| p.to_string())),
];

pub(super) fn frequencies_table(cols: &[String], rows: &[Row]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for r in rows {
        let Some(s) = &r.sig else { continue };
        let mut keys = s.neurons.key_frequencies.clone();
        keys.sort_unstable();
        for k in keys {
            let f = s
                .frequency_table
                .iter()
                .find(|f| f.frequency == k)
                .with_context(|| {
                    format!(
                        "signature of cell {} has key frequency {k} but no frequency_table row for it",
                        r.key
                    )
                })?;
            let mut v = r.ids.clone();
            v.extend(FREQUENCY_COLUMNS.iter().map(|(_, get)| get(&r.key, f)));
            out.push(v);
        }
    }
    csv_bytes(&header(cols, &names(FREQUENCY_COLUMNS)), &out)
}

/// The names of a column table, in order.
pub(super) fn names<T>(columns: &[(&'static str, T)]) -> Vec<&'static str> {
    columns.iter().map(|(name, _)| *name).collect()
}

/// Jaccard overlap |A ∩ B| / |A ∪ B|; None when both are empty.
pub fn jaccard(a: &[usize], b: &[usize]) -> Option<f64> {
    let a: HashSet<_> = a.iter().collect();
    let b: HashSet<_> = b.iter().collect();
    let union = a.union(&b).count();
    (union > 0).then(|| a.intersection(&b).count() as f64 / union as f64)
}

/// Values in first-appearance order with the indices of the items holding them.
pub(super) fn groups_by<K: PartialEq + Eq + std::hash::Hash + Clone>(
    keys: impl Iterator<Item = K>,
) -> Vec<(K, Vec<usize>)> {
    let mut order: Vec<(K, Vec<usize>)> = Vec::new();
    let mut at: HashMap<K, usize> = HashMap::new();
    for (i, k) in keys.enumerate() {
        match at.get(&k) {
            Some(&g) => order[g].1.push(i),
            None => {
                at.insert(k.clone(), order.len());
                order.push((k, vec![i]));
            }
        }
    }
    order
}

/// One column of progress.csv: its name and its text from the cell's key and one
/// snapshot's progress measures.
type ProgressColumn = (&'static str, fn(&str, &ProgressRow) -> String);

/// The columns of progress.csv after the identity columns, in order.
pub const PROGRESS_COLUMNS: &[ProgressColumn] = &[
    ("key", |key, _| key.to_string()),
    ("step", |_, p| p.step.to_string()),
    ("train_loss", |_, p| fmt_magnitude(p.train_loss)),
    ("test_loss", |_, p| fmt_magnitude(p.test_loss)),
    ("test_acc", |_, p| fmt_fraction(p.test_acc)),
    ("restricted_loss", |_, p| fmt_magnitude(p.restricted_loss)),
    ("excluded_loss", |_, p| fmt_magnitude(p.excluded_loss)),
    ("gini", |_, p| fmt_fraction(p.gini)),
    ("n_key_frequencies", |_, p| p.n_key_frequencies.to_string()),
    ("final_keys_embedding_energy", |_, p| {
        fmt_fraction(p.final_keys_embedding_energy)
    }),
    ("final_keys_neurons", |_, p| {
        p.final_keys_neurons.to_string()
    }),
    ("weight_sq_sum", |_, p| fmt_magnitude(p.weight_sq_sum)),
    ("zero_fraction_mean", |_, p| {
        fmt_fraction(p.zero_fraction_mean)
    }),
    ("attention_tv", |_, p| fmt_fraction(p.attention_tv)),
    ("qk_norm", |_, p| fmt_magnitude(p.qk_norm)),
    ("eq_norm_ratio", |_, p| fmt_magnitude(p.eq_norm_ratio)),
    ("score_spread", |_, p| fmt_magnitude(p.score_spread)),
    ("ablation_loss_increase", |_, p| {
        fmt_magnitude(p.ablation_loss_increase)
    }),
    ("score_elasticity", |_, p| fmt_magnitude(p.score_elasticity)),
    ("eq_elasticity", |_, p| fmt_magnitude(p.eq_elasticity)),
    ("gradient_symmetricity", |_, p| {
        fmt_fraction(p.gradient_symmetricity)
    }),
];

/// `progress.csv`: one row per (cell, snapshot), grid order then step.
pub(super) fn progress_table(cols: &[String], rows: &[Row]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for r in rows {
        for p in &r.progress {
            let mut v = r.ids.clone();
            v.extend(PROGRESS_COLUMNS.iter().map(|(_, get)| get(&r.key, p)));
            out.push(v);
        }
    }
    csv_bytes(&header(cols, &names(PROGRESS_COLUMNS)), &out)
}

/// The columns of eq_update.csv after the identity columns: the cell's key, then the
/// cell file's columns (`engine::eq_update::columns`).
pub fn eq_update_columns() -> Vec<&'static str> {
    std::iter::once("key")
        .chain(crate::engine::eq_update::columns())
        .collect()
}

/// `eq_update.csv`: one row per (cell, window of updates), grid order then step.
/// Norms and parts in scientific notation, cosines to 4 decimals.
pub(super) fn eq_update_table(cols: &[String], rows: &[Row]) -> Result<Vec<u8>> {
    use crate::engine::eq_update::COSINES;
    let mut out = Vec::new();
    for r in rows {
        for w in &r.eq_update {
            let mut v = r.ids.clone();
            v.extend([r.key.clone(), w.step.to_string(), w.updates.to_string()]);
            v.extend(w.values.iter().enumerate().map(|(i, &x)| {
                if COSINES.contains(&i) {
                    fmt_fraction(x)
                } else {
                    fmt_magnitude(x)
                }
            }));
            out.push(v);
        }
    }
    csv_bytes(&header(cols, &eq_update_columns()), &out)
}

/// The numbers summarised per group: name, whether integer-valued, and getter.
pub type Getter = fn(&Signature) -> Option<f64>;
pub const SUMMARY_NUMBERS: &[(&str, bool, Getter)] = &[
    ("test_acc", false, |s| s.outcome.final_test_acc),
    ("n_key_frequencies", true, |s| {
        Some(s.neurons.key_frequencies.len() as f64)
    }),
    ("logits_explained", false, |s| {
        Some(s.logits.explained_by_key_frequencies)
    }),
    ("restricted_ratio", false, |s| s.logits.restricted_ratio),
    ("excluded_ratio", false, |s| s.logits.excluded_ratio),
    ("step_memorised", true, |s| {
        s.outcome.step_memorised.map(|v| v as f64)
    }),
    ("step_generalised", true, |s| {
        s.outcome.step_generalised.map(|v| v as f64)
    }),
    ("gradient_symmetricity", false, |s| {
        Some(s.algorithm.gradient_symmetricity)
    }),
    ("distance_irrelevance", false, |s| {
        s.algorithm.distance_irrelevance
    }),
    ("attention_tv", false, |s| {
        Some(s.algorithm.attention.tv_from_uniform)
    }),
    ("distance_irrelevance_max_wrong", false, |s| {
        s.algorithm.distance_irrelevance_max_wrong
    }),
    ("clock_score", false, |s| mean_pattern(s, |x| x.clock)),
    ("pizza_score", false, |s| mean_pattern(s, |x| x.pizza)),
    ("ablation_loss_increase", false, |s| {
        Some(s.algorithm.ablation.loss_increase)
    }),
    ("eq_residual_loss_increase", false, |s| {
        s.algorithm
            .eq_routes
            .as_ref()
            .map(|e| e.residual_loss_increase)
    }),
    ("eq_value_loss_increase", false, |s| {
        s.algorithm
            .eq_routes
            .as_ref()
            .map(|e| e.value_loss_increase)
    }),
    ("score_elasticity", false, |s| s.algorithm.score_elasticity),
    ("eq_elasticity", false, |s| s.algorithm.eq_elasticity),
    ("score_spread", false, |s| {
        Some(s.algorithm.query.score_spread)
    }),
    ("eq_norm_ratio", false, |s| {
        Some(s.algorithm.query.eq_norm_ratio)
    }),
    ("score_spread_init", false, |s| {
        s.algorithm.query_init.as_ref().map(|q| q.score_spread)
    }),
    ("degree1_share", false, |s| {
        s.algorithm.neuron_form.as_ref().map(|f| f.degree1_mean)
    }),
    ("degree2_share", false, |s| {
        s.algorithm.neuron_form.as_ref().map(|f| f.degree2_mean)
    }),
    ("difference_share", false, |s| s.algorithm.difference_share),
    ("difference_share_pre_norm", false, |s| {
        s.algorithm.difference_share_pre_norm
    }),
    ("gini", false, |s| Some(s.embedding.gini)),
];

/// Median of values (NaN-free), the mean of the middle two for an even count.
pub fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len();
    Some(if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    })
}

/// Every column of summary.csv after the identity columns (but `seed`).
pub fn summary_columns() -> Vec<String> {
    let mut v: Vec<String> = ["cells", "done", "analysed", "grokked_share"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for (name, _, _) in SUMMARY_NUMBERS {
        for stat in ["median", "min", "max"] {
            v.push(format!("{name}_{stat}"));
        }
    }
    for label in Label::ALL {
        v.push(format!("{}_share", label.word().replace('-', "_")));
    }
    v
}

pub(super) fn summary_table(cols: &[String], rows: &[Row]) -> Result<Vec<u8>> {
    // Seeds are what a summary summarises over: every other identity column splits.
    let by: Vec<usize> = (0..cols.len()).filter(|&i| cols[i] != "seed").collect();
    let mut h: Vec<String> = by.iter().map(|&i| cols[i].clone()).collect();
    h.extend(summary_columns());

    let mut out = Vec::new();
    let groups = groups_by(
        rows.iter()
            .map(|r| by.iter().map(|&i| r.ids[i].clone()).collect::<Vec<_>>()),
    );
    for (gid, members) in groups {
        let members: Vec<&Row> = members.iter().map(|&i| &rows[i]).collect();
        let sigs: Vec<&Signature> = members.iter().filter_map(|r| r.sig.as_ref()).collect();
        let done = members
            .iter()
            .filter(|r| matches!(r.status, Status::Done | Status::Unanalysed))
            .count();
        let share = |f: &dyn Fn(&Signature) -> bool| {
            opt(
                (!sigs.is_empty())
                    .then(|| sigs.iter().filter(|s| f(s)).count() as f64 / sigs.len() as f64),
                fmt_fraction,
            )
        };
        let mut v = gid;
        v.push(members.len().to_string());
        v.push(done.to_string());
        v.push(sigs.len().to_string());
        v.push(share(&|s| s.outcome.grokked));
        for (_, integer, get) in SUMMARY_NUMBERS {
            let mut xs: Vec<f64> = sigs
                .iter()
                .filter_map(|s| get(s))
                .filter(|x| !x.is_nan())
                .collect();
            let med = median(&mut xs);
            let (lo, hi) = (xs.first().copied(), xs.last().copied());
            if *integer {
                v.push(opt(med, fmt_median_of_integers));
                v.push(opt(lo, |x| format!("{}", x as i64)));
                v.push(opt(hi, |x| format!("{}", x as i64)));
            } else {
                v.push(opt(med, fmt_fraction));
                v.push(opt(lo, fmt_fraction));
                v.push(opt(hi, fmt_fraction));
            }
        }
        for &label in Label::ALL {
            v.push(share(&|s| s.algorithm.label == label));
        }
        out.push(v);
    }
    csv_bytes(&h, &out)
}
