//! Clock or pizza (science.md §5–§6): how far position-2 attention is from uniform,
//! gradient symmetricity, the pizza signature in the correct logit, and the label
//! rule that combines them with the outcome.
//!
//! Why attention comes first: when position-2 attention is uniform (li2024 under
//! weight decay, or attention rate 0), the MLP sees E_a + E_b and the gradients with
//! respect to positions 0 and 1 are equal whatever the model computes, so gradient
//! symmetricity is 1 by construction and says nothing about clock or pizza.

use crate::analysis::forward::{self, AttentionPattern};
use crate::analysis::measures;
use crate::config::AnalysisConfig;
use crate::engine::model_file::Model;
use crate::engine::reference::Params64;
use crate::engine::weights::{Mat, ModelWeights};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::f64::consts::PI;

/// Position-2 attention statistics of one head over all p² inputs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeadAttention {
    /// Mean total-variation distance from uniform, ½·Σ_j |A_j − 1/3| (0 to 2/3).
    pub tv_from_uniform: f64,
    /// Mean total-variation distance from the head's mean pattern over inputs: 0 when
    /// attention is constant (the same for every input).
    pub variation: f64,
    /// Mean entropy in nats (ln 3 ≈ 1.0986 when uniform).
    pub entropy: f64,
    /// Frobenius norm of W_Q,h·W_K,hᵀ (the head's d × d bilinear score form).
    pub qk_norm: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttentionSummary {
    pub heads: Vec<HeadAttention>,
    /// Of the least uniform head: the largest `tv_from_uniform` …
    pub tv_from_uniform: f64,
    /// … the largest `variation` …
    pub variation: f64,
    /// … and the smallest `entropy`.
    pub entropy: f64,
    /// sqrt(Σ_h qk_norm_h²).
    pub qk_norm: f64,
    /// Every head's variation ≤ `constant_attention_max_variation`: attention does
    /// not depend on the input (the clock-and-pizza paper's constant attention).
    pub constant: bool,
    /// Every head's tv_from_uniform ≤ `uniform_attention_max_tv`: gradient
    /// symmetricity is 1 by construction.
    pub uniform: bool,
}

/// Frobenius norm of `W_Q,h · W_K,hᵀ` per head, from the d_head × d_head Gram
/// matrices: ‖Q Kᵀ‖² = tr(QᵀQ · KᵀK).
pub fn qk_norms(w: &ModelWeights) -> Vec<f64> {
    let (d, dh) = (w.width(), w.d_head());
    let gram = |m: &Mat, h: usize| {
        let mut g = vec![0.0; dh * dh];
        for r in 0..d {
            let row = &m.row(r)[h * dh..(h + 1) * dh];
            for i in 0..dh {
                for j in 0..dh {
                    g[i * dh + j] += row[i] as f64 * row[j] as f64;
                }
            }
        }
        g
    };
    (0..w.heads)
        .map(|h| {
            let (gq, gk) = (gram(&w.w_q, h), gram(&w.w_k, h));
            gq.iter().zip(&gk).map(|(a, b)| a * b).sum::<f64>().sqrt()
        })
        .collect()
}

/// Attention statistics of `pattern` (see [`AttentionSummary`]).
pub fn attention_summary(
    pattern: &AttentionPattern,
    qk: &[f64],
    cfg: &AnalysisConfig,
) -> AttentionSummary {
    let n = pattern.p * pattern.p;
    let heads: Vec<HeadAttention> = (0..pattern.heads)
        .map(|h| {
            let mut mean = [0.0; 3];
            let (mut tv, mut entropy) = (0.0, 0.0);
            for i in 0..n {
                let a = pattern.get(i, h);
                for j in 0..3 {
                    mean[j] += a[j] / n as f64;
                    tv += 0.5 * (a[j] - 1.0 / 3.0).abs() / n as f64;
                    if a[j] > 0.0 {
                        entropy -= a[j] * a[j].ln() / n as f64;
                    }
                }
            }
            let variation = (0..n)
                .map(|i| {
                    let a = pattern.get(i, h);
                    0.5 * (0..3).map(|j| (a[j] - mean[j]).abs()).sum::<f64>()
                })
                .sum::<f64>()
                / n as f64;
            HeadAttention {
                tv_from_uniform: tv,
                variation,
                entropy,
                qk_norm: qk[h],
            }
        })
        .collect();
    let max = |f: fn(&HeadAttention) -> f64| heads.iter().map(f).fold(0.0, f64::max);
    AttentionSummary {
        tv_from_uniform: max(|h| h.tv_from_uniform),
        variation: max(|h| h.variation),
        entropy: heads
            .iter()
            .map(|h| h.entropy)
            .fold(f64::INFINITY, f64::min),
        qk_norm: qk.iter().map(|x| x * x).sum::<f64>().sqrt(),
        constant: heads
            .iter()
            .all(|h| h.variation <= cfg.constant_attention_max_variation),
        uniform: heads
            .iter()
            .all(|h| h.tv_from_uniform <= cfg.uniform_attention_max_tv),
        heads,
    }
}

/// Gradient symmetricity (Zhong et al.) and the number of triples it averaged: all
/// p³ triples when there are at most `cfg.symmetricity_triples`, else that many
/// drawn from a ChaCha8 stream seeded by `cfg.symmetricity_seed`.
pub fn gradient_symmetricity(m: &Model, cfg: &AnalysisConfig) -> (f64, usize) {
    let w = Params64::from_weights(&m.weights);
    let p = w.modulus();
    let triples: Vec<(usize, usize, usize)> = if p * p * p <= cfg.symmetricity_triples {
        (0..p * p * p)
            .map(|i| (i / (p * p), i / p % p, i % p))
            .collect()
    } else {
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.symmetricity_seed);
        (0..cfg.symmetricity_triples)
            .map(|_| {
                (
                    rng.gen_range(0..p),
                    rng.gen_range(0..p),
                    rng.gen_range(0..p),
                )
            })
            .collect()
    };
    // Batches of triples, collected in order: the mean does not depend on threads.
    let read_out = forward::read_out(m, &w);
    let pairs: Vec<(Vec<f64>, Vec<f64>)> = triples
        .par_chunks(forward::BATCH)
        .flat_map_iter(|batch| forward::logit_input_gradients(&read_out, batch))
        .collect();
    (measures::mean_cosine(&pairs), triples.len())
}

/// How much of the correct logit's variation the pizza's a − b dependence explains.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DifferenceProfile {
    /// Share of the correct logit's variance over all pairs explained by
    /// (a − b) mod p (between-group variance over total). None when it is constant.
    pub difference_share: Option<f64>,
    /// Share explained by the least-squares fit `c + Σ_k w_k·|cos(πk(a−b)/p)|` over the
    /// key frequencies (the pizza's profile; at most `difference_share`). None when
    /// the logit is constant or there are no key frequencies.
    pub pizza_fit: Option<f64>,
}

/// [`DifferenceProfile`] of a correct-logit grid `correct[a·p + b]`.
pub fn difference_profile(correct: &[f64], p: usize, keys: &[usize]) -> DifferenceProfile {
    let n = (p * p) as f64;
    let mean = correct.iter().sum::<f64>() / n;
    let total: f64 = correct.iter().map(|x| (x - mean).powi(2)).sum();
    if total <= 0.0 || !total.is_finite() {
        return DifferenceProfile {
            difference_share: None,
            pizza_fit: None,
        };
    }
    // Mean over each group a − b ≡ d (p pairs each).
    let mut group = vec![0.0; p];
    for a in 0..p {
        for b in 0..p {
            group[(a + p - b) % p] += (correct[a * p + b] - mean) / p as f64;
        }
    }
    let between = p as f64 * group.iter().map(|g| g * g).sum::<f64>();
    DifferenceProfile {
        difference_share: Some(between / total),
        pizza_fit: (!keys.is_empty()).then(|| {
            let features: Vec<Vec<f64>> = keys
                .iter()
                .map(|&k| {
                    (0..p)
                        .map(|d| (PI * (k * d) as f64 / p as f64).cos().abs())
                        .collect()
                })
                .collect();
            p as f64 * explained_by_fit(&group, &features) / total
        }),
    }
}

/// Squared norm of the least-squares projection of `y` (centred) onto the span of
/// the constant and `features` (each centred first).
fn explained_by_fit(y: &[f64], features: &[Vec<f64>]) -> f64 {
    let m = y.len() as f64;
    let cols: Vec<Vec<f64>> = features
        .iter()
        .map(|f| {
            let mu = f.iter().sum::<f64>() / m;
            f.iter().map(|v| v - mu).collect()
        })
        .collect();
    let k = cols.len();
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    // Normal equations (G + ridge) β = Xᵀy, solved by Gaussian elimination.
    let trace: f64 = (0..k).map(|i| dot(&cols[i], &cols[i])).sum();
    let mut g: Vec<Vec<f64>> = (0..k)
        .map(|i| {
            let mut row: Vec<f64> = (0..k).map(|j| dot(&cols[i], &cols[j])).collect();
            row[i] += 1e-12 * trace.max(1e-300);
            row.push(dot(&cols[i], y));
            row
        })
        .collect();
    for c in 0..k {
        let pivot = (c..k)
            .max_by(|&a, &b| g[a][c].abs().total_cmp(&g[b][c].abs()))
            .expect("non-empty");
        g.swap(c, pivot);
        if g[c][c].abs() < 1e-300 {
            continue;
        }
        let pivot_row = g[c].clone();
        for (r, row) in g.iter_mut().enumerate() {
            if r != c {
                let f = row[c] / pivot_row[c];
                for (x, p) in row[c..].iter_mut().zip(&pivot_row[c..]) {
                    *x -= f * p;
                }
            }
        }
    }
    let beta: Vec<f64> = (0..k)
        .map(|i| {
            if g[i][i] == 0.0 {
                0.0
            } else {
                g[i][k] / g[i][i]
            }
        })
        .collect();
    let fit: Vec<f64> = (0..y.len())
        .map(|t| (0..k).map(|i| beta[i] * cols[i][t]).sum())
        .collect();
    // The fit of a least-squares projection is at most y itself.
    dot(&fit, &fit).min(dot(y, y))
}

/// The correct class's logit per input, `out[a·p + b]`.
pub fn correct_logits(logits: &[f32], p: usize) -> Vec<f64> {
    (0..p * p)
        .map(|i| logits[i * p + (i / p + i % p) % p] as f64)
        .collect()
}

/// Every label [`algorithm_label`] gives, in the order the summary table counts them.
pub const LABELS: [&str; 6] = [
    "clock",
    "pizza",
    "uniform-attention",
    "mixed",
    "no-fourier",
    "not-generalised",
];

/// What the label rule reads.
#[derive(Clone, Debug, PartialEq)]
pub struct LabelInputs {
    pub generalised: bool,
    pub n_key_frequencies: usize,
    pub logits_explained: f64,
    pub uniform_attention: bool,
    pub symmetricity: f64,
    pub distance_irrelevance: Option<f64>,
    /// The share of the correct logit's variance explained by a − b, in the logits
    /// the model outputs (after any final norm).
    pub difference_share: Option<f64>,
}

/// The label (README, "Labels"), in this order:
/// `not-generalised` (test accuracy below `accuracy_threshold`); `no-fourier` (no key
/// frequency, or the key frequencies explain less than `fourier_min_logits_explained`
/// of the logits); `pizza` (a − b explains ≥ `pizza_min_difference_share` of the
/// correct logit's variance, or, with attention that is
/// not uniform, gradient symmetricity ≥ `pizza_min_symmetricity` and distance
/// irrelevance < `clock_min_distance_irrelevance`); `uniform-attention` (uniform
/// attention: symmetric by construction, the clock test does not apply); `clock`
/// (symmetricity ≤ `clock_max_symmetricity` and distance irrelevance ≥
/// `clock_min_distance_irrelevance`); `mixed` otherwise.
pub fn algorithm_label(x: &LabelInputs, cfg: &AnalysisConfig) -> &'static str {
    let di = x.distance_irrelevance.unwrap_or(0.0);
    if !x.generalised {
        "not-generalised"
    } else if x.n_key_frequencies == 0 || x.logits_explained < cfg.fourier_min_logits_explained {
        "no-fourier"
    } else if x
        .difference_share
        .is_some_and(|f| f >= cfg.pizza_min_difference_share)
        || (!x.uniform_attention
            && x.symmetricity >= cfg.pizza_min_symmetricity
            && di < cfg.clock_min_distance_irrelevance)
    {
        "pizza"
    } else if x.uniform_attention {
        "uniform-attention"
    } else if x.symmetricity <= cfg.clock_max_symmetricity
        && di >= cfg.clock_min_distance_irrelevance
    {
        "clock"
    } else {
        "mixed"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pizza_profile_is_found_and_a_sum_only_logit_has_none() {
        let p = 23;
        let keys = [3, 7];
        let pizza: Vec<f64> = (0..p * p)
            .map(|i| {
                let d = (i / p + p - i % p) % p;
                keys.iter()
                    .map(|&k| (PI * (k * d) as f64 / p as f64).cos().abs())
                    .sum::<f64>()
            })
            .collect();
        let prof = difference_profile(&pizza, p, &keys);
        assert!((prof.difference_share.unwrap() - 1.0).abs() < 1e-9);
        assert!((prof.pizza_fit.unwrap() - 1.0).abs() < 1e-6);
        // A function of a + b only: nothing depends on a − b.
        let clock: Vec<f64> = (0..p * p)
            .map(|i| (2.0 * PI * (3 * ((i / p + i % p) % p)) as f64 / p as f64).cos())
            .collect();
        let prof = difference_profile(&clock, p, &keys);
        assert!(prof.difference_share.unwrap() < 1e-9);
        assert!(prof.pizza_fit.unwrap() < 1e-9);
        // Half the variance on the profile, half on a+b.
        let mixed: Vec<f64> = pizza.iter().zip(&clock).map(|(a, b)| a + b).collect();
        let share = difference_profile(&mixed, p, &keys).pizza_fit.unwrap();
        assert!(share > 0.2 && share < 0.8, "{share}");
        assert_eq!(
            difference_profile(&vec![1.0; p * p], p, &keys).pizza_fit,
            None
        );
    }

    #[test]
    fn uniform_pattern_has_zero_distance_and_full_entropy() {
        let p = 5;
        let mut weights = vec![1.0 / 3.0; p * p * 2 * 3];
        let uniform = AttentionPattern {
            p,
            heads: 2,
            weights: weights.clone(),
        };
        let cfg = AnalysisConfig::default();
        let s = attention_summary(&uniform, &[1.0, 2.0], &cfg);
        assert!(s.tv_from_uniform < 1e-12 && s.variation < 1e-12);
        assert!((s.entropy - 3f64.ln()).abs() < 1e-12);
        assert!(s.uniform && s.constant);
        assert!((s.qk_norm - 5f64.sqrt()).abs() < 1e-12);
        // Head 1 attends only to position 0 for even inputs: not uniform, not constant.
        for i in (0..p * p).step_by(2) {
            weights[(p * p + i) * 3..(p * p + i + 1) * 3].copy_from_slice(&[1.0, 0.0, 0.0]);
        }
        let s = attention_summary(
            &AttentionPattern {
                p,
                heads: 2,
                weights,
            },
            &[1.0, 2.0],
            &cfg,
        );
        // 13 of 25 inputs at distance 2/3 from uniform.
        assert!((s.heads[1].tv_from_uniform - 13.0 / 25.0 * 2.0 / 3.0).abs() < 1e-12);
        assert!(s.heads[0].tv_from_uniform < 1e-12);
        assert!(!s.uniform && !s.constant && s.heads[1].variation > 0.1);
    }

    #[test]
    fn label_rule_keeps_failure_modes_apart() {
        let cfg = AnalysisConfig::default();
        let clock = LabelInputs {
            generalised: true,
            n_key_frequencies: 3,
            logits_explained: 0.9,
            uniform_attention: false,
            symmetricity: 0.4,
            distance_irrelevance: Some(0.9),
            difference_share: Some(0.01),
        };
        assert_eq!(algorithm_label(&clock, &cfg), "clock");
        let with = |f: &dyn Fn(&mut LabelInputs)| {
            let mut x = clock.clone();
            f(&mut x);
            algorithm_label(&x, &cfg)
        };
        assert_eq!(with(&|x| x.generalised = false), "not-generalised");
        assert_eq!(with(&|x| x.n_key_frequencies = 0), "no-fourier");
        assert_eq!(with(&|x| x.logits_explained = 0.01), "no-fourier");
        assert_eq!(with(&|x| x.difference_share = Some(0.9)), "pizza");
        assert_eq!(
            with(&|x| {
                x.uniform_attention = true;
                x.symmetricity = 1.0;
            }),
            "uniform-attention"
        );
        assert_eq!(with(&|x| x.symmetricity = 0.95), "mixed");
    }
}
