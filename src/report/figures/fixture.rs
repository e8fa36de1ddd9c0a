//! Synthetic rows and views for the figures' tests.

use super::*;
use crate::analysis::forward::tests::random_model;
use crate::analysis::mechanism::LogitPattern;
use crate::analysis::progress::ProgressRow;
use crate::analysis::{analyze, CurvePoint};
use crate::config::Arch;
use crate::engine::model_file::Model;

/// `n` analysed cells (status done, one key frequency 1 with clock and pizza
/// scores that differ per cell, label pizza), edited by `edit(i, sig)`.
pub fn rows(n: usize, edit: impl Fn(usize, &mut Signature)) -> Vec<Row> {
    let w = random_model(Arch::Li2024, 7, 8, 2, 16, 1);
    let base = analyze(&Model::plain(w), None, None, &AnalysisConfig::default()).unwrap();
    (0..n)
        .map(|i| {
            let mut sig = base.clone();
            sig.neurons.key_frequencies = vec![1];
            sig.algorithm.logit_patterns = vec![LogitPattern {
                frequency: 1,
                clock: 0.5 + 0.01 * i as f64,
                pizza: 0.9 - 0.01 * i as f64,
            }];
            sig.algorithm.label = crate::analysis::labels::Label::Pizza;
            edit(i, &mut sig);
            Row {
                ids: vec![i.to_string()],
                key: format!("{i:064}"),
                status: Status::Done,
                seconds: None,
                error: None,
                sig: Some(sig),
                progress: Vec::new(),
                eq_update: Vec::new(),
            }
        })
        .collect()
}

/// Snapshots every 100 steps to `steps`, the losses falling.
pub fn progress(steps: u64) -> Vec<ProgressRow> {
    (0..=steps / 100)
        .map(|i| {
            let t = i as f64 + 1.0;
            ProgressRow {
                step: i * 100,
                train_loss: 1.0 / t,
                test_loss: 2.0 / t,
                test_acc: 1.0 - 1.0 / t,
                restricted_loss: 1.0 / t,
                excluded_loss: t,
                gini: 0.1 * t.ln(),
                n_key_frequencies: 1,
                final_keys_embedding_energy: 0.5,
                final_keys_neurons: 3,
                weight_sq_sum: 100.0 / t,
                zero_fraction_mean: 0.0,
                attention_tv: 0.01,
                qk_norm: 1.0,
                eq_norm_ratio: 1.0 / t,
                score_spread: 0.5 / t,
                ablation_loss_increase: 0.0,
                score_elasticity: 0.0,
                eq_elasticity: 0.0,
                gradient_symmetricity: 0.5,
            }
        })
        .collect()
}

/// The view of `rows`, cell i of setting `settings[i % len]`, named by its
/// setting and seed i, with curves of 11 evaluations.
pub fn view<'a>(rows: &'a [Row], settings: &[&str]) -> SweepView<'a> {
    let cells: Vec<CellView> = rows
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let setting = settings[i % settings.len()].to_string();
            CellView {
                row,
                precision: setting.split(',').next().unwrap().to_string(),
                name: format!("{setting}, seed={i}"),
                setting,
                curves: Some(
                    (0..=10)
                        .map(|s| CurvePoint {
                            step: s * 100,
                            train_loss: 1.0 / (s + 1) as f64,
                            test_loss: 2.0 / (s + 1) as f64,
                            train_acc: 0.1 * s as f64,
                            test_acc: 0.05 * s as f64,
                        })
                        .collect(),
                ),
            }
        })
        .collect();
    let mut precisions: Vec<String> = Vec::new();
    let mut settings_seen: Vec<String> = Vec::new();
    for c in &cells {
        if !precisions.contains(&c.precision) {
            precisions.push(c.precision.clone());
        }
        if !settings_seen.contains(&c.setting) {
            settings_seen.push(c.setting.clone());
        }
    }
    SweepView {
        cells,
        precisions,
        settings: settings_seen,
        analysis: AnalysisConfig::default(),
    }
}
