//! Progress measures over training (science.md §7, Nanda et al. 2023): the same
//! measures as the final signature, taken on every stored snapshot of a cell, plus
//! the restricted and excluded loss on the key frequencies of the *final* model,
//! and the phase boundaries read from them.
//!
//! Phase rule (ours, documented in README "Progress measures"), with `L = ln p`
//! (the loss of a uniform guess):
//! - memorisation ends at `step_memorised` (first evaluation with train accuracy
//!   at or above the threshold);
//! - circuit formation starts at `step_circuit_start`: the first snapshot at or after
//!   the end of memorisation whose excluded loss (final key frequencies removed,
//!   train pairs) is at least L/2, i.e. the training fit has moved onto the final
//!   key frequencies;
//! - cleanup starts at `step_cleanup_start`: the first snapshot at or after the
//!   circuit start whose test loss is at most L/2;
//! - cleanup ends at `step_cleanup_end`: the first snapshot at or after the cleanup
//!   start from which the total sum of squared weights stays within 10 % of its
//!   final value.
//!
//! The rule reads the snapshots against the final model's key frequencies, so it
//! applies only to a model that ends generalised: a model that lost its
//! generalisation (absmax int2 does) has no phase boundaries.

use super::fourier::FourierBasis;
use super::{
    check_analysable, clock_pizza, forward, key_frequencies, measures, mechanism, neuron_table,
    Outcome, Signature, TrainSplit,
};
use crate::config::{AnalysisConfig, CellConfig};
use crate::engine::model_file::Model;
use crate::engine::reference::Depth;
use crate::engine::weights::ModelWeights;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The progress measures of one snapshot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProgressRow {
    pub step: u64,
    pub train_loss: f64,
    pub test_loss: f64,
    pub test_acc: f64,
    /// Loss on the test pairs with only the final key frequencies' cos/sin(k(a+b))
    /// components of the logits kept.
    pub restricted_loss: f64,
    /// Loss on the train pairs with those components removed.
    pub excluded_loss: f64,
    /// Gini coefficient of the embedding's per-frequency norms.
    pub gini: f64,
    /// Key frequencies of this snapshot (frequencies owning clustered neurons).
    pub n_key_frequencies: usize,
    /// Share of the embedding's non-constant energy on the final key frequencies.
    pub final_keys_embedding_energy: f64,
    /// Clustered neurons of this snapshot whose frequency is a final key frequency.
    pub final_keys_neurons: usize,
    /// Sum of squares of every parameter of the effective weights.
    pub weight_sq_sum: f64,
    /// Mean fraction of exact zeros in the quantized matrices (the signature's
    /// `zero_fraction_mean`): how much of a grid's weights rounds to zero.
    pub zero_fraction_mean: f64,
    /// Position-2 attention's distance from uniform, of the least uniform head (the
    /// signature's `attention.tv_from_uniform`).
    pub attention_tv: f64,
    /// sqrt(Σ_h ‖W_Q,h·W_K,hᵀ‖²): what weight decay shrinks on the way to uniform
    /// attention.
    pub qk_norm: f64,
    /// ‖E_=‖ over the median number token's norm (the signature's `eq_norm_ratio`):
    /// the size of the only source of li2024's read-out query.
    pub eq_norm_ratio: f64,
    /// Spread of the read-out scores over the keys that occur, largest head (the
    /// signature's `score_spread`).
    pub score_spread: f64,
    /// All-pairs loss with position-2 attention made uniform, minus as trained (the
    /// signature's `ablation_loss_increase`): when routing starts to matter.
    pub ablation_loss_increase: f64,
    /// d ln(train loss) / d ln(score scale) (the signature's `score_elasticity`): below
    /// 0, training's loss gradient pulls the read-out scores apart.
    pub score_elasticity: f64,
    /// d ln(train loss) / d ln ‖E_=‖ (the signature's `eq_elasticity`): below 0, the
    /// loss gradient pulls the `=` embedding up.
    pub eq_elasticity: f64,
    pub gradient_symmetricity: f64,
}

/// Phase boundaries of one cell (see the module doc); `None` when not reached or
/// when the cell has no snapshots.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Phases {
    pub step_circuit_start: Option<u64>,
    pub step_cleanup_start: Option<u64>,
    pub step_cleanup_end: Option<u64>,
}

/// Total sum of squared parameters.
pub fn weight_sq_sum(w: &ModelWeights) -> f64 {
    w.to_named()
        .iter()
        .flat_map(|(_, _, v)| v.iter())
        .map(|&x| x as f64 * x as f64)
        .sum()
}

/// The progress measures of every snapshot, given the final signature (for its key
/// frequencies) and the cell's split. Each measure is computed by the function the
/// signature uses for it, so the final snapshot's row equals the signature; the
/// reference pass stops at the neurons (what the measures need), which changes no
/// value.
pub fn progress_rows(
    snapshots: &[(u64, Model)],
    final_sig: &Signature,
    split: &TrainSplit,
    cfg: &AnalysisConfig,
) -> Result<Vec<ProgressRow>> {
    let keys = &final_sig.neurons.key_frequencies;
    let p = final_sig.modulus;
    let (train, test) = super::split_pairs(p, split)?;
    let all = measures::all_pairs(p);
    let basis = FourierBasis::new(p);
    let finite = |x: f64| if x.is_finite() { x } else { f64::NAN };
    snapshots
        .iter()
        .map(|(step, m)| {
            check_analysable(m, cfg)
                .with_context(|| format!("analysing the snapshot of step {step}"))?;
            if m.weights.modulus() != p {
                bail!(
                    "the snapshot of step {step} has modulus {}, the cell {p}",
                    m.weights.modulus()
                );
            }
            let fwd = forward::forward_all(m, Depth::Hidden);
            let (all_pairs_loss, _) = measures::full_loss(&fwd.logits, p, &all);
            let query = mechanism::query_path(&m.weights);
            let (train_loss, _) = measures::full_loss(&fwd.logits, p, &train);
            let (test_loss, test_acc) = measures::full_loss(&fwd.logits, p, &test);
            let spectrum =
                measures::embedding_spectrum(&basis, &m.weights.w_e, cfg.energy_coverage);
            let neurons = neuron_table(&fwd, &basis, cfg);
            let (_, snapshot_keys) = key_frequencies(&neurons, basis.max_frequency());
            let elasticities = mechanism::elasticities(m, &train);
            let attention = clock_pizza::attention_summary(
                &fwd.attention,
                &clock_pizza::qk_norms(&m.weights),
                cfg,
            );
            let nonconstant: f64 = spectrum.norms[1..].iter().map(|n| n * n).sum();
            let on_keys: f64 = keys.iter().map(|&k| spectrum.norms[k].powi(2)).sum();
            Ok(ProgressRow {
                step: *step,
                train_loss: finite(train_loss),
                test_loss: finite(test_loss),
                test_acc: finite(test_acc),
                restricted_loss: measures::restricted_loss(&fwd.logits, p, keys, &test),
                excluded_loss: measures::excluded_loss(&fwd.logits, p, keys, &train),
                gini: spectrum.gini,
                n_key_frequencies: snapshot_keys.len(),
                final_keys_embedding_energy: if nonconstant > 0.0 {
                    on_keys / nonconstant
                } else {
                    0.0
                },
                final_keys_neurons: neurons
                    .iter()
                    .filter(|r| r.clustered && r.best_frequency.is_some_and(|k| keys.contains(&k)))
                    .count(),
                weight_sq_sum: weight_sq_sum(&m.weights),
                zero_fraction_mean: super::zero_fraction_mean(&super::quantization_stats(m))
                    .unwrap_or(f64::NAN),
                attention_tv: attention.tv_from_uniform,
                qk_norm: attention.qk_norm,
                eq_norm_ratio: query.eq_norm_ratio,
                score_spread: query.score_spread,
                ablation_loss_increase: mechanism::attention_ablation(m, all_pairs_loss)
                    .loss_increase,
                score_elasticity: elasticities.score,
                eq_elasticity: elasticities.eq,
                gradient_symmetricity: clock_pizza::gradient_symmetricity(m, cfg).0,
            })
        })
        .collect()
}

/// The progress of a trained cell folder from its snapshots, or `None` when its
/// config stores none; sets `sig.phases` from them.
pub fn cell_progress(
    dir: &Path,
    cell: &CellConfig,
    sig: &mut Signature,
    cfg: &AnalysisConfig,
) -> Result<Option<Vec<ProgressRow>>> {
    if cell.train.snapshot_every == 0 {
        return Ok(None);
    }
    let snapshots: Vec<(u64, Model)> = crate::store::read_snapshots(dir, cell)?
        .into_iter()
        .map(|(step, w)| (step, Model::of_cell(cell, w)))
        .collect();
    let split = super::read_train_split(dir)?;
    let rows = progress_rows(&snapshots, sig, &split, cfg)?;
    sig.phases = Some(phases(&rows, cell.modulus, &sig.outcome));
    Ok(Some(rows))
}

/// Write `progress.csv` (one row per snapshot) into `dir`.
pub fn write_progress(rows: &[ProgressRow], dir: &Path) -> Result<()> {
    super::write_csv(&dir.join(crate::store::PROGRESS), rows)
}

/// Phase boundaries from the progress rows (ascending by step) and the final
/// model's outcome (see the module doc): none unless it ends generalised and has a
/// step at which memorisation ended.
pub fn phases(rows: &[ProgressRow], modulus: usize, outcome: &Outcome) -> Phases {
    let half = (modulus as f64).ln() / 2.0;
    let Some(memorised) = outcome.step_memorised.filter(|_| outcome.generalised) else {
        return Phases::default();
    };
    let circuit = rows
        .iter()
        .find(|r| r.step >= memorised && r.excluded_loss >= half)
        .map(|r| r.step);
    let cleanup_start = circuit.and_then(|c| {
        rows.iter()
            .find(|r| r.step >= c && r.test_loss <= half)
            .map(|r| r.step)
    });
    let cleanup_end = cleanup_start.and_then(|s| {
        let last = rows.last()?.weight_sq_sum;
        let within = |r: &ProgressRow| (r.weight_sq_sum - last).abs() <= 0.1 * last;
        let from = rows.iter().rposition(|r| !within(r)).map_or(0, |i| i + 1);
        rows.get(from).map(|r| r.step.max(s))
    });
    Phases {
        step_circuit_start: circuit,
        step_cleanup_start: cleanup_start,
        step_cleanup_end: cleanup_end,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(step: u64, test_loss: f64, excluded_loss: f64, weight_sq_sum: f64) -> ProgressRow {
        ProgressRow {
            step,
            train_loss: 0.0,
            test_loss,
            test_acc: 0.0,
            restricted_loss: 0.0,
            excluded_loss,
            gini: 0.0,
            n_key_frequencies: 0,
            final_keys_embedding_energy: 0.0,
            final_keys_neurons: 0,
            weight_sq_sum,
            zero_fraction_mean: 0.0,
            attention_tv: 0.0,
            qk_norm: 0.0,
            eq_norm_ratio: 0.0,
            score_spread: 0.0,
            ablation_loss_increase: 0.0,
            score_elasticity: 0.0,
            eq_elasticity: 0.0,
            gradient_symmetricity: 0.0,
        }
    }

    fn outcome(step_memorised: Option<u64>, generalised: bool) -> Outcome {
        Outcome {
            source: crate::analysis::OutcomeSource::Curves,
            final_train_loss: None,
            final_train_acc: None,
            final_test_loss: None,
            final_test_acc: None,
            all_pairs_loss: 0.0,
            all_pairs_acc: 0.0,
            generalised,
            grokked: generalised,
            step_memorised,
            step_generalised: None,
            grokking_gap: None,
        }
    }

    #[test]
    fn phases_follow_the_documented_rule() {
        // ln 7 / 2 ≈ 0.973.
        let rows = [
            row(0, 2.0, 2.0, 50.0),
            row(10, 3.0, 0.1, 60.0), // memorised: fit not on the key frequencies
            row(20, 3.0, 1.5, 40.0), // excluded loss ≥ L/2: circuit formation
            row(30, 0.5, 2.0, 30.0), // test loss ≤ L/2: cleanup starts
            row(40, 0.1, 2.0, 21.0), // within 10 % of the final norm from here on
            row(50, 0.05, 2.0, 20.0), //
        ];
        let ph = phases(&rows, 7, &outcome(Some(10), true));
        assert_eq!(ph.step_circuit_start, Some(20));
        assert_eq!(ph.step_cleanup_start, Some(30));
        assert_eq!(ph.step_cleanup_end, Some(40));
        assert_eq!(phases(&rows, 7, &outcome(None, true)), Phases::default());
        // A model that does not end generalised has no phases, whatever its rows.
        assert_eq!(
            phases(&rows, 7, &outcome(Some(10), false)),
            Phases::default()
        );
        // Excluded loss never rises: no circuit, no cleanup.
        let flat: Vec<_> = rows
            .iter()
            .map(|r| ProgressRow {
                excluded_loss: 0.1,
                ..r.clone()
            })
            .collect();
        assert_eq!(
            phases(&flat, 7, &outcome(Some(10), true)),
            Phases::default()
        );
    }
}
