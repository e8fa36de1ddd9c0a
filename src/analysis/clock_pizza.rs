//! Clock or pizza (science.md §5–§6): how far position-2 attention is from uniform
//! and gradient symmetricity (Zhong et al.); the logit patterns, neuron forms and
//! labels are in [`super::mechanism`] and [`super::labels`].
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

/// The correct class's logit per input, `out[a·p + b]`.
pub fn correct_logits(logits: &[f32], p: usize) -> Vec<f64> {
    (0..p * p)
        .map(|i| logits[i * p + (i / p + i % p) % p] as f64)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
