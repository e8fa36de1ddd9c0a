//! How a model computes, level by level (science.md §6): where the position-2 query
//! comes from, what attention contributes (an ablation), what the final norm
//! removes, and what form the MLP neurons take.
//!
//! - Query path: in both architectures the read-out position's query is
//!   `q_h = x_= W_Q,h` with `x_= = E_=` (+ `W_pos[2]` in nanda2023), so attention is
//!   uniform exactly when `q_h · k_h(t)` is the same for every real key. The norm of
//!   `W_Q,h W_K,hᵀ` over all of R^d says little: the spread of the scores over the
//!   keys that occur does.
//! - Neuron form (McCracken et al. 2025, arXiv 2505.18266): a neuron of frequency f
//!   whose pre-activation is `c + α_a cos(wa + φ_a) + α_b cos(wb + φ_b)` (w = 2πf/p) is
//!   degree-1: a ReLU of a sum. What products `cos/sin(wa)·cos/sin(wb)` add on top is
//!   its degree-2 part. Both are fractions of the pre-activation's variance over all
//!   p² inputs; the nine functions are orthogonal there, so the fractions add.

use crate::analysis::forward::ForwardPass;
use crate::analysis::measures;
use crate::engine::model_file::{attention_scale, Model};
use crate::engine::weights::ModelWeights;
use serde::{Deserialize, Serialize};
use std::f64::consts::PI;

/// The read-out query of one head.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeadQuery {
    /// ‖x_= W_Q,h‖.
    pub query_norm: f64,
    /// Standard deviation of the scaled scores `q_h · k_h` over the keys that occur at
    /// positions 0 and 1 (every number token there), in nats: near 0, softmax sees the
    /// same score for every input.
    pub score_spread: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QueryPath {
    /// ‖E_=‖ over the median norm of the number tokens' embeddings.
    pub eq_norm_ratio: f64,
    pub heads: Vec<HeadQuery>,
    /// The largest head's `score_spread`.
    pub score_spread: f64,
}

/// [`QueryPath`] of weights `w` (effective weights; activation quantization left out).
pub fn query_path(w: &ModelWeights) -> QueryPath {
    let (p, d, dh) = (w.modulus(), w.width(), w.d_head());
    let scale = attention_scale(w.arch, d, w.heads);
    let row = |t: usize| -> Vec<f64> { w.w_e.row(t).iter().map(|&v| v as f64).collect() };
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    let mut token_norms: Vec<f64> = (0..p).map(|t| norm(&row(t))).collect();
    token_norms.sort_by(f64::total_cmp);
    let median = if p % 2 == 1 {
        token_norms[p / 2]
    } else {
        0.5 * (token_norms[p / 2 - 1] + token_norms[p / 2])
    };
    let pos = |j: usize, x: &mut [f64]| {
        if let Some(wp) = &w.w_pos {
            x.iter_mut()
                .zip(wp.row(j))
                .for_each(|(a, &b)| *a += b as f64);
        }
    };
    let mut query_in = row(p);
    pos(2, &mut query_in);
    // Key inputs at positions 0 and 1: every number token.
    let keys: Vec<Vec<f64>> = (0..2)
        .flat_map(|j| {
            (0..p).map(move |t| {
                let mut x = row(t);
                pos(j, &mut x);
                x
            })
        })
        .collect();
    let project = |x: &[f64], m: &crate::engine::weights::Mat, h: usize| -> Vec<f64> {
        (0..dh)
            .map(|c| {
                (0..d)
                    .map(|r| x[r] * m.get(r, h * dh + c) as f64)
                    .sum::<f64>()
            })
            .collect()
    };
    let heads: Vec<HeadQuery> = (0..w.heads)
        .map(|h| {
            let q = project(&query_in, &w.w_q, h);
            let scores: Vec<f64> = keys
                .iter()
                .map(|x| {
                    let k = project(x, &w.w_k, h);
                    scale * q.iter().zip(&k).map(|(a, b)| a * b).sum::<f64>()
                })
                .collect();
            HeadQuery {
                query_norm: norm(&q),
                score_spread: measures::population_std(&scores),
            }
        })
        .collect();
    QueryPath {
        eq_norm_ratio: if median > 0.0 {
            norm(&row(p)) / median
        } else {
            f64::NAN
        },
        score_spread: heads.iter().map(|h| h.score_spread).fold(0.0, f64::max),
        heads,
    }
}

/// What position-2 attention contributes: the all-pairs loss with attention replaced
/// by uniform (attention rate 0), minus the loss as trained.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttentionAblation {
    pub loss_uniform: f64,
    pub accuracy_uniform: f64,
    /// `loss_uniform − all-pairs loss`: ≈ 0 when attention does no routing the model
    /// needs.
    pub loss_increase: f64,
}

/// [`AttentionAblation`] of `m`, whose all-pairs loss as trained is `loss`.
pub fn attention_ablation(m: &Model, loss: f64) -> AttentionAblation {
    let p = m.weights.modulus();
    let uniform = Model {
        attention: m.attention.uniform_only(),
        ..m.clone()
    };
    let logits = crate::analysis::forward::logits(&uniform);
    let all = measures::all_pairs(p);
    let (l, acc) = measures::full_loss(&logits, p, &all);
    AttentionAblation {
        loss_uniform: l,
        accuracy_uniform: acc,
        loss_increase: l - loss,
    }
}

/// How the loss on `pairs` answers two rescalings, each as the elasticity
/// d ln L / d ln s at s = 1. Weight decay shrinks both scaled quantities whatever
/// their sign.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Elasticities {
    /// Every attention score multiplied by s (W_Q scaled, which scales the query and
    /// nothing else): below 0 the loss gradient pulls the read-out scores apart,
    /// above 0 together. Exactly 0 when every score is 0.
    pub score: f64,
    /// E_= → s·E_= on every route it takes (the query, position 2's own key and
    /// value, the residual stream): below 0 the loss gradient pulls E_= up, above 0
    /// down, so an E_= that shrinks while this is below 0 shrinks against it.
    pub eq: f64,
}

/// [`Elasticities`] of `m` on `pairs`: central differences (s = e^{±1e-5}) on the f64
/// reference pass around one unscaled loss; NaN when that loss is 0.
pub fn elasticities(m: &Model, pairs: &[(usize, usize)]) -> Elasticities {
    use crate::engine::reference::Params64;
    const STEP: f64 = 1e-5;
    let w = Params64::from_weights(&m.weights);
    let loss = precise_loss(m, &w, pairs);
    let p = m.weights.modulus();
    let elasticity = |scale: &dyn Fn(&mut Params64, f64)| {
        if loss.is_nan() || loss <= 0.0 {
            return f64::NAN;
        }
        let loss_at = |s: f64| {
            let mut scaled = w.clone();
            scale(&mut scaled, s);
            precise_loss(m, &scaled, pairs)
        };
        (loss_at(STEP.exp()) - loss_at((-STEP).exp())) / (2.0 * STEP) / loss
    };
    Elasticities {
        score: elasticity(&|w, s| w.w_q.data.iter_mut().for_each(|x| *x *= s)),
        eq: elasticity(&|w, s| w.w_e.row_mut(p).iter_mut().for_each(|x| *x *= s)),
    }
}

/// Mean cross-entropy on `pairs` from the f64 reference read-out of `w` (with `m`'s
/// activation and attention settings), each pair's loss as ln(1 + Σ_{c≠y} e^{z_c −
/// z_y}) where the label's logit is the largest: a converged model's loss is about
/// 1e-7, and [`elasticities`] differences two of them.
fn precise_loss(
    m: &Model,
    w: &crate::engine::reference::Params64,
    pairs: &[(usize, usize)],
) -> f64 {
    use crate::analysis::forward::{read_out, BATCH};
    use crate::engine::reference::Depth;
    use rayon::prelude::*;
    let p = m.weights.modulus();
    let read_out = read_out(m, w);
    let total: f64 = pairs
        .par_chunks(BATCH)
        .map(|chunk| {
            let logits = read_out.position_two(chunk, Depth::Logits).rows.logits;
            chunk
                .iter()
                .zip(logits.chunks(p))
                .map(|(&(a, b), z)| {
                    let y = (a + b) % p;
                    let max = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    if z[y] >= max {
                        let rest: f64 = (0..p)
                            .filter(|&c| c != y)
                            .map(|c| (z[c] - z[y]).exp())
                            .sum();
                        rest.ln_1p()
                    } else {
                        max + z.iter().map(|v| (v - max).exp()).sum::<f64>().ln() - z[y]
                    }
                })
                .sum::<f64>()
        })
        .collect::<Vec<_>>()
        .iter()
        .sum();
    total / pairs.len() as f64
}

/// What the read-out position's own input `x_=` (`E_=`, + `W_pos[2]` in nanda2023)
/// contributes besides the query (whose removal [`AttentionAblation`] measures):
/// the all-pairs loss with `x_=` cut from the residual stream at position 2 (the
/// MLP's input and the read-out) or from its own value, minus the loss as is. A path
/// ablation on the f64 reference pass; the attention pattern stays the model's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EqRouteAblation {
    /// ≈ 0 when `x_=` is no bias the MLP or the read-out needs.
    pub residual_loss_increase: f64,
    pub value_loss_increase: f64,
}

/// [`EqRouteAblation`] of `m`.
pub fn eq_route_ablation(m: &Model) -> EqRouteAblation {
    use crate::engine::reference::{Depth, EqRoutes, Params64};
    use rayon::prelude::*;
    let w = Params64::from_weights(&m.weights);
    let read_out = crate::analysis::forward::read_out(m, &w);
    let p = m.weights.modulus();
    let pairs = measures::all_pairs(p);
    let loss = |routes: EqRoutes| -> f64 {
        let logits: Vec<f64> = pairs
            .par_chunks(crate::analysis::forward::BATCH)
            .map(|chunk| {
                read_out
                    .position_two_routed(chunk, Depth::Logits, routes)
                    .rows
                    .logits
            })
            .collect::<Vec<_>>()
            .concat();
        measures::loss_and_accuracy(p, &pairs, |a, b, out| {
            out.copy_from_slice(&logits[(a * p + b) * p..(a * p + b + 1) * p])
        })
        .0
    };
    let base = loss(EqRoutes::ALL);
    EqRouteAblation {
        residual_loss_increase: loss(EqRoutes {
            residual: false,
            value: true,
        }) - base,
        value_loss_increase: loss(EqRoutes {
            residual: true,
            value: false,
        }) - base,
    }
}

/// What the final RMSNorm divides by: the norm of `x2` over the p² inputs (li2024).
/// The pre-norm correct logit is ‖x2‖ times the post-norm one over sqrt(d); this
/// says how much of the pre-norm dependence on a − b sits in the norm, which the
/// model's output never sees.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NormSplit {
    /// Standard deviation over mean of ‖x2‖.
    pub x2_norm_cv: f64,
    /// Share of the variance of ‖x2‖ explained by a − b (None when ‖x2‖ is constant).
    pub x2_norm_difference_share: Option<f64>,
}

/// [`NormSplit`] of the per-input norms `norms[a·p + b]`.
pub fn norm_split(norms: &[f64], p: usize) -> NormSplit {
    let mean = norms.iter().sum::<f64>() / norms.len() as f64;
    NormSplit {
        x2_norm_cv: measures::population_std(norms) / mean,
        x2_norm_difference_share: difference_share(norms, p),
    }
}

/// Share of the variance of `grid[a·p + b]` over all pairs explained by (a − b) mod p
/// (between-group variance of the groups a − b ≡ d over the total); None when the
/// grid is constant.
pub fn difference_share(grid: &[f64], p: usize) -> Option<f64> {
    let n = (p * p) as f64;
    let mean = grid.iter().sum::<f64>() / n;
    let total: f64 = grid.iter().map(|x| (x - mean).powi(2)).sum();
    if total <= 0.0 || !total.is_finite() {
        return None;
    }
    let mut group = vec![0.0; p];
    for a in 0..p {
        for b in 0..p {
            group[(a + p - b) % p] += (grid[a * p + b] - mean) / p as f64;
        }
    }
    Some(p as f64 * group.iter().map(|g| g * g).sum::<f64>() / total)
}

/// One neuron's degree-1 / degree-2 decomposition at its frequency.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct NeuronForm {
    /// Share of the pre-activation's variance explained by
    /// `α_a cos(wa + φ_a) + α_b cos(wb + φ_b)`.
    pub degree1: f64,
    /// Share the four products of `cos/sin(wa)` and `cos/sin(wb)` add.
    pub degree2: f64,
    /// φ_a and φ_b in radians, (−π, π].
    pub phase_a: f64,
    pub phase_b: f64,
    /// α_b / α_a (0 when α_a is 0).
    pub amplitude_ratio: f64,
}

/// [`NeuronForm`] of a pre-activation grid `h[a·p + b]` at frequency `f`; None when the
/// grid is constant.
pub fn neuron_form(h: &[f64], p: usize, f: usize) -> Option<NeuronForm> {
    let n = (p * p) as f64;
    let mean = h.iter().sum::<f64>() / n;
    let total: f64 = h.iter().map(|x| (x - mean).powi(2)).sum();
    if total <= 0.0 || !total.is_finite() {
        return None;
    }
    let (cos, sin): (Vec<f64>, Vec<f64>) = (0..p)
        .map(|x| {
            let t = 2.0 * PI * (f * x % p) as f64 / p as f64;
            (t.cos(), t.sin())
        })
        .unzip();
    // Coefficients on ca, sa, cb, sb, ca·cb, ca·sb, sa·cb, sa·sb (unnormalised sums).
    let mut dot = [0.0f64; 8];
    for a in 0..p {
        for b in 0..p {
            let y = h[a * p + b] - mean;
            let (ca, sa, cb, sb) = (cos[a], sin[a], cos[b], sin[b]);
            for (d, v) in dot
                .iter_mut()
                .zip([ca, sa, cb, sb, ca * cb, ca * sb, sa * cb, sa * sb])
            {
                *d += y * v;
            }
        }
    }
    // Squared norms of the basis functions over the grid: p²/2 for degree 1 and p²/4
    // for products, when 2f ≢ 0 (mod p).
    let norms = [
        n / 2.0,
        n / 2.0,
        n / 2.0,
        n / 2.0,
        n / 4.0,
        n / 4.0,
        n / 4.0,
        n / 4.0,
    ];
    let energy: Vec<f64> = dot.iter().zip(norms).map(|(d, m)| d * d / m).collect();
    let degree1 = energy[..4].iter().sum::<f64>() / total;
    let degree2 = energy[4..].iter().sum::<f64>() / total;
    // y ≈ α cos(wa + φ) = α cos φ·cos wa − α sin φ·sin wa.
    let (ca, sa, cb, sb) = (dot[0] / norms[0], dot[1] / norms[1], dot[2], dot[3]);
    let (cb, sb) = (cb / norms[2], sb / norms[3]);
    let amp_a = ca.hypot(sa);
    Some(NeuronForm {
        degree1: degree1.min(1.0),
        degree2: degree2.min(1.0),
        phase_a: (-sa).atan2(ca),
        phase_b: (-sb).atan2(cb),
        amplitude_ratio: if amp_a > 0.0 {
            cb.hypot(sb) / amp_a
        } else {
            0.0
        },
    })
}

/// The neurons' form over the clustered neurons.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NeuronFormSummary {
    /// How many neurons the means are over (the clustered ones).
    pub neurons: usize,
    /// Mean degree-1 share of the pre-activation variance.
    pub degree1_mean: f64,
    /// Mean share the degree-2 products add.
    pub degree2_mean: f64,
    /// |mean of exp(i(φ_a − φ_b))|: 1 when every neuron reads a and b in the same
    /// phase (as under uniform attention, by construction), ≈ 0 when the phase
    /// differences spread evenly.
    pub phase_alignment: f64,
}

/// Every neuron's form at its best frequency (clustered neurons only; None for the
/// others), and the summary over them.
pub fn neuron_forms(
    fwd: &ForwardPass,
    best: &[(bool, Option<usize>)],
) -> (Vec<Option<NeuronForm>>, Option<NeuronFormSummary>) {
    use rayon::prelude::*;
    let n = fwd.p * fwd.p;
    let forms: Vec<Option<NeuronForm>> = fwd
        .pre_activations
        .par_chunks(n)
        .zip(best.par_iter())
        .map(|(grid, &(clustered, f))| match (clustered, f) {
            (true, Some(f)) => neuron_form(grid, fwd.p, f),
            _ => None,
        })
        .collect();
    let live: Vec<&NeuronForm> = forms.iter().flatten().collect();
    let summary = (!live.is_empty()).then(|| {
        let k = live.len() as f64;
        let (re, im) = live.iter().fold((0.0, 0.0), |(re, im), f| {
            let d = f.phase_a - f.phase_b;
            (re + d.cos(), im + d.sin())
        });
        NeuronFormSummary {
            neurons: live.len(),
            degree1_mean: live.iter().map(|f| f.degree1).sum::<f64>() / k,
            degree2_mean: live.iter().map(|f| f.degree2).sum::<f64>() / k,
            phase_alignment: (re / k).hypot(im / k),
        }
    });
    (forms, summary)
}

/// Zhong et al.'s logit-pattern test for one key frequency (their notebook's "Logit
/// FVE", arXiv 2306.17844 §4): the model is run with its number embeddings kept to
/// that frequency (each column of `W_E[0..p]` projected onto the constant, cos and
/// sin of `f`; `E_=` unchanged), and its logits over all p³ (a, b, c) are compared
/// with each pattern by `2ρ − 1`, ρ their correlation (the explained-variance score
/// of the two standardised arrays, as Zhong et al. compute it): 1 for a perfect
/// match, 0.80 for the other pattern of a perfect clock or pizza.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogitPattern {
    pub frequency: usize,
    /// Against `cos(w(a+b−c))`.
    pub clock: f64,
    /// Against `|cos(w(a−b)/2)|·cos(w(a+b−c))`.
    pub pizza: f64,
}

/// [`LogitPattern`] per key frequency of `m`.
pub fn logit_patterns(m: &Model, keys: &[usize]) -> Vec<LogitPattern> {
    let p = m.weights.modulus();
    keys.iter()
        .map(|&f| {
            let mut iso = m.clone();
            isolate_frequency(&mut iso.weights, f);
            let logits = crate::analysis::forward::logits(&iso);
            let w = 2.0 * PI * f as f64 / p as f64;
            let trig = |k: usize| (w * (k % p) as f64).cos();
            let half = |d: usize| (PI * (f * d % p) as f64 / p as f64).cos().abs();
            let clock: Vec<f64> = (0..p * p * p)
                .map(|i| {
                    let (a, b, c) = (i / (p * p), i / p % p, i % p);
                    trig(a + b + p - c)
                })
                .collect();
            let pizza: Vec<f64> = (0..p * p * p)
                .map(|i| {
                    let (a, b) = (i / (p * p), i / p % p);
                    half((a + p - b) % p) * clock[i]
                })
                .collect();
            let y: Vec<f64> = logits.iter().map(|&v| v as f64).collect();
            LogitPattern {
                frequency: f,
                clock: 2.0 * correlation(&y, &clock) - 1.0,
                pizza: 2.0 * correlation(&y, &pizza) - 1.0,
            }
        })
        .collect()
}

/// Keep only frequency `f` (and the constant) in each column of the number tokens'
/// embeddings.
fn isolate_frequency(w: &mut ModelWeights, f: usize) {
    let p = w.modulus();
    let d = w.width();
    let basis: Vec<Vec<f64>> = {
        let b = crate::analysis::fourier::FourierBasis::new(p);
        let idx = b
            .labels()
            .iter()
            .enumerate()
            .filter(|(_, l)| l.frequency == 0 || l.frequency == f)
            .map(|(i, _)| i)
            .collect::<Vec<_>>();
        idx.into_iter().map(|i| b.vector(i)).collect()
    };
    for j in 0..d {
        let col: Vec<f64> = (0..p).map(|t| w.w_e.get(t, j) as f64).collect();
        let mut out = vec![0.0; p];
        for v in &basis {
            let c: f64 = col.iter().zip(v).map(|(x, y)| x * y).sum();
            out.iter_mut().zip(v).for_each(|(o, y)| *o += c * y);
        }
        for (t, v) in out.iter().enumerate() {
            w.w_e.row_mut(t)[j] = *v as f32;
        }
    }
}

/// Pearson correlation (0 when either side is constant).
fn correlation(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    if sxx > 0.0 && syy > 0.0 {
        sxy / (sxx * syy).sqrt()
    } else {
        0.0
    }
}

/// Distance irrelevance (Zhong et al.) of any per-input value `v[a·p + b]`: the mean
/// over d of its std over the pairs with a − b ≡ d, over its std over all pairs; None
/// when it is constant.
pub fn distance_irrelevance_of(v: &[f64], p: usize) -> Option<f64> {
    let overall = measures::population_std(v);
    if overall <= 0.0 {
        return None;
    }
    let per_distance: f64 = (0..p)
        .map(|d| {
            let g: Vec<f64> = (0..p).map(|a| v[a * p + (a + p - d) % p]).collect();
            measures::population_std(&g)
        })
        .sum::<f64>()
        / p as f64;
    Some(per_distance / overall)
}

/// The largest wrong logit per input: the value Zhong et al.'s released result
/// tables compute distance irrelevance on (their training script), where the paper
/// and their notebook use the correct logit.
pub fn max_wrong_logits(logits: &[f32], p: usize) -> Vec<f64> {
    (0..p * p)
        .map(|i| {
            let c = (i / p + i % p) % p;
            (0..p)
                .filter(|&k| k != c)
                .map(|k| logits[i * p + k] as f64)
                .fold(f64::NEG_INFINITY, f64::max)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neuron_form_separates_sums_from_products() {
        let (p, f) = (23, 4);
        let w = 2.0 * PI * f as f64 / p as f64;
        let grid = |g: &dyn Fn(f64, f64) -> f64| -> Vec<f64> {
            (0..p * p)
                .map(|i| g(w * (i / p) as f64, w * (i % p) as f64))
                .collect()
        };
        let sum =
            neuron_form(&grid(&|a, b| (a + 0.5).cos() + 2.0 * (b - 1.0).cos()), p, f).unwrap();
        assert!(
            (sum.degree1 - 1.0).abs() < 1e-12 && sum.degree2 < 1e-12,
            "{sum:?}"
        );
        assert!((sum.phase_a - 0.5).abs() < 1e-12 && (sum.phase_b + 1.0).abs() < 1e-12);
        assert!((sum.amplitude_ratio - 2.0).abs() < 1e-12);
        let product = neuron_form(&grid(&|a, b| (a + b).cos()), p, f).unwrap();
        assert!(product.degree1 < 1e-12 && (product.degree2 - 1.0).abs() < 1e-12);
        // Half and half.
        let both = neuron_form(
            &grid(&|a, b| a.cos() + 2f64.sqrt() * a.cos() * b.sin()),
            p,
            f,
        )
        .unwrap();
        assert!((both.degree1 - 0.5).abs() < 1e-12 && (both.degree2 - 0.5).abs() < 1e-12);
        assert!(neuron_form(&vec![1.0; p * p], p, f).is_none());
    }

    #[test]
    fn difference_share_sees_a_minus_b_only() {
        let p = 13;
        let diff: Vec<f64> = (0..p * p)
            .map(|i| ((i / p + p - i % p) % p) as f64)
            .collect();
        assert!((difference_share(&diff, p).unwrap() - 1.0).abs() < 1e-12);
        let sum: Vec<f64> = (0..p * p)
            .map(|i| (2.0 * PI * ((i / p + i % p) % p) as f64 / p as f64).cos())
            .collect();
        assert!(difference_share(&sum, p).unwrap() < 1e-12);
        let split = norm_split(&vec![2.0; p * p], p);
        assert_eq!(split.x2_norm_cv, 0.0);
        assert_eq!(split.x2_norm_difference_share, None);
    }
}
