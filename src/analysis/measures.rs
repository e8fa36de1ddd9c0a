//! The quantities of science.md §5, each a function of plain arrays so each can be
//! tested on constructed inputs. Logit arrays are `p² × p`, row `a·p + b`, column
//! the output class `c`; neuron grids are `p × p`, `grid[a·p + b]`.

use crate::analysis::fourier::{frequency_energy, FourierBasis};
use crate::engine::weights::Mat;
use std::f64::consts::PI;

/// Gini coefficient of non-negative values (0: all equal; → 1: one value holds all).
pub fn gini(values: &[f64]) -> f64 {
    let n = values.len();
    let total: f64 = values.iter().sum();
    if n == 0 || total <= 0.0 {
        return 0.0;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let weighted: f64 = v
        .iter()
        .enumerate()
        .map(|(i, x)| (2.0 * (i + 1) as f64 - n as f64 - 1.0) * x)
        .sum();
    weighted / (n as f64 * total)
}

/// Embedding spectrum: norm per frequency of the token embeddings `W_E[0..p]`.
#[derive(Clone, Debug, PartialEq)]
pub struct EmbeddingSpectrum {
    /// Norm per frequency `0..=⌊p/2⌋` (cos and sin rows combined, over all of d_model).
    pub norms: Vec<f64>,
    /// Gini coefficient of the norms of frequencies `1..=⌊p/2⌋`.
    pub gini: f64,
    /// Fewest frequencies (largest first) whose energy covers `coverage` of the
    /// non-constant energy.
    pub frequencies_for_coverage: usize,
}

pub fn embedding_spectrum(basis: &FourierBasis, w_e: &Mat, coverage: f64) -> EmbeddingSpectrum {
    let p = basis.p;
    let mut energy = vec![0.0; basis.max_frequency() + 1];
    let mut column = vec![0.0; p];
    for col in 0..w_e.cols {
        for (x, t) in column.iter_mut().enumerate() {
            *t = w_e.get(x, col) as f64;
        }
        for (e, f) in energy
            .iter_mut()
            .zip(frequency_energy(basis, &basis.transform(&column)))
        {
            *e += f;
        }
    }
    let norms: Vec<f64> = energy.iter().map(|e| e.sqrt()).collect();
    EmbeddingSpectrum {
        gini: gini(&norms[1..]),
        frequencies_for_coverage: coverage_count(&energy[1..], coverage),
        norms,
    }
}

/// How many of the largest energies it takes to reach `coverage` of their sum.
pub fn coverage_count(energies: &[f64], coverage: f64) -> usize {
    let total: f64 = energies.iter().sum();
    if total <= 0.0 {
        return 0;
    }
    let mut sorted = energies.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let target = coverage * total * (1.0 - 1e-12);
    let mut acc = 0.0;
    for (i, e) in sorted.iter().enumerate() {
        acc += e;
        if acc >= target {
            return i + 1;
        }
    }
    sorted.len()
}

/// How well one frequency explains one neuron's activations over the (a, b) grid.
#[derive(Clone, Debug, PartialEq)]
pub struct NeuronFit {
    /// Frequency with the largest share of the centred variance (None when dead).
    pub best_frequency: Option<usize>,
    /// That share (0 when dead).
    pub fve: f64,
    pub mean: f64,
    pub std: f64,
    pub dead: bool,
}

/// Nanda's per-neuron fraction of variance explained: centre the grid, take its 2-D
/// Fourier transform, and for each frequency k sum the energy in `{1, cos k, sin k}²`
/// without constant × constant. A neuron whose standard deviation over the grid is
/// at most `dead_std` is dead.
pub fn neuron_fit(basis: &FourierBasis, grid: &[f64], dead_std: f64) -> NeuronFit {
    let n = grid.len() as f64;
    let mean = grid.iter().sum::<f64>() / n;
    let centred: Vec<f64> = grid.iter().map(|x| x - mean).collect();
    let total: f64 = centred.iter().map(|x| x * x).sum();
    let std = (total / n).sqrt();
    if std <= dead_std || total <= 0.0 {
        return NeuronFit {
            best_frequency: None,
            fve: 0.0,
            mean,
            std,
            dead: true,
        };
    }
    let energy = basis.frequency_energy_2d(&basis.transform_2d(&centred));
    let mut best = 1;
    for k in 2..energy.len() {
        if energy[k] > energy[best] {
            best = k;
        }
    }
    NeuronFit {
        best_frequency: Some(best),
        fve: energy[best] / total,
        mean,
        std,
        dead: false,
    }
}

/// `cos(2πm/p)` and `sin(2πm/p)` for `m = 0..p`.
fn trig_tables(p: usize) -> (Vec<f64>, Vec<f64>) {
    (0..p)
        .map(|m| {
            let t = 2.0 * PI * m as f64 / p as f64;
            (t.cos(), t.sin())
        })
        .unzip()
}

/// Sums of the logits over each anti-diagonal `a + b ≡ s`: `out[s·p + c]`.
fn anti_diagonal_sums(logits: &[f32], p: usize) -> Vec<f64> {
    let mut s = vec![0.0; p * p];
    for a in 0..p {
        for b in 0..p {
            let row = &logits[(a * p + b) * p..(a * p + b + 1) * p];
            let out = &mut s[((a + b) % p) * p..((a + b) % p + 1) * p];
            for (o, &v) in out.iter_mut().zip(row) {
                *o += v as f64;
            }
        }
    }
    s
}

/// Fraction of the squared norm of the logits, centred over the output class, that
/// lies on the direction `cos(2πk(a+b−c)/p)` for each frequency in `keys` (same order).
/// The directions are orthogonal, so their sum is the fraction for the key set.
/// Frequency 0 (a constant over c) always explains 0.
pub fn logits_explained(logits: &[f32], p: usize, keys: &[usize]) -> Vec<f64> {
    let mut centred_norm = 0.0;
    for row in logits.chunks_exact(p) {
        let mean = row.iter().map(|&v| v as f64).sum::<f64>() / p as f64;
        centred_norm += row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>();
    }
    if centred_norm <= 0.0 {
        return vec![0.0; keys.len()];
    }
    // Centring over c changes no inner product with these directions (each sums to 0
    // over c), so the raw anti-diagonal sums serve.
    let s = anti_diagonal_sums(logits, p);
    let (cos, _) = trig_tables(p);
    keys.iter()
        .map(|&k| {
            if k % p == 0 {
                // The constant direction: nothing of the class-centred logits is on it.
                return 0.0;
            }
            let mut dot = 0.0;
            for sum in 0..p {
                for c in 0..p {
                    dot += s[sum * p + c] * cos[(k * (sum + p - c)) % p];
                }
            }
            let norm2 = if 2 * k == p {
                (p * p * p) as f64
            } else {
                (p * p * p) as f64 / 2.0
            };
            dot * dot / norm2 / centred_norm
        })
        .collect()
}

/// The part of the logits along `cos(k(a+b))` and `sin(k(a+b))` (per output class)
/// for the key frequencies: a function of `(a + b) mod p` and `c`, `out[s·p + c]`.
pub fn key_components(logits: &[f32], p: usize, keys: &[usize]) -> Vec<f64> {
    let s = anti_diagonal_sums(logits, p);
    let (cos, sin) = trig_tables(p);
    let mut out = vec![0.0; p * p];
    for c in 0..p {
        // Projecting a function of a+b onto functions of a+b of frequency k is the 1-D
        // projection of its anti-diagonal mean g(s) = S(s)/p.
        for &k in keys {
            let (mut alpha, mut beta) = (0.0, 0.0);
            for sum in 0..p {
                let g = s[sum * p + c] / p as f64;
                alpha += g * cos[(k * sum) % p];
                beta += g * sin[(k * sum) % p];
            }
            let norm = if 2 * k == p { p as f64 } else { p as f64 / 2.0 };
            for sum in 0..p {
                out[sum * p + c] += (alpha * cos[(k * sum) % p] + beta * sin[(k * sum) % p]) / norm;
            }
        }
    }
    out
}

/// Mean over all inputs of each output class's logit.
fn class_means(logits: &[f32], p: usize) -> Vec<f64> {
    let mut m = vec![0.0; p];
    for row in logits.chunks_exact(p) {
        for (o, &v) in m.iter_mut().zip(row) {
            *o += v as f64;
        }
    }
    m.iter().map(|x| x / (p * p) as f64).collect()
}

/// Mean cross-entropy and accuracy over `pairs` of logits produced row by row.
pub fn loss_and_accuracy(
    p: usize,
    pairs: &[(usize, usize)],
    mut row: impl FnMut(usize, usize, &mut [f64]),
) -> (f64, f64) {
    if pairs.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let mut buf = vec![0.0; p];
    let (mut loss, mut correct) = (0.0, 0usize);
    for &(a, b) in pairs {
        row(a, b, &mut buf);
        let label = (a + b) % p;
        let mut best = 0;
        for c in 1..p {
            if buf[c] > buf[best] {
                best = c;
            }
        }
        let m = buf[best];
        let lse = m + buf.iter().map(|x| (x - m).exp()).sum::<f64>().ln();
        loss += lse - buf[label];
        correct += (best == label) as usize;
    }
    (
        loss / pairs.len() as f64,
        correct as f64 / pairs.len() as f64,
    )
}

/// Every input (a, b), in the logits' row order a·p + b.
pub fn all_pairs(p: usize) -> Vec<(usize, usize)> {
    (0..p * p).map(|i| (i / p, i % p)).collect()
}

/// Loss and accuracy of the model's own logits on `pairs`.
pub fn full_loss(logits: &[f32], p: usize, pairs: &[(usize, usize)]) -> (f64, f64) {
    loss_and_accuracy(p, pairs, |a, b, out| {
        let row = &logits[(a * p + b) * p..(a * p + b + 1) * p];
        out.iter_mut().zip(row).for_each(|(o, &v)| *o = v as f64);
    })
}

/// Nanda's restricted loss on `pairs`: logits replaced by their key-frequency
/// `cos/sin(k(a+b))` components plus each class's mean over inputs (the mean of what
/// was removed, since the kept components have mean zero).
pub fn restricted_loss(logits: &[f32], p: usize, keys: &[usize], pairs: &[(usize, usize)]) -> f64 {
    let kept = key_components(logits, p, keys);
    let means = class_means(logits, p);
    loss_and_accuracy(p, pairs, |a, b, out| {
        let s = (a + b) % p;
        for c in 0..p {
            out[c] = kept[s * p + c] + means[c];
        }
    })
    .0
}

/// Nanda's excluded loss on `pairs`: the key-frequency `cos/sin(k(a+b))` components
/// subtracted from the logits.
pub fn excluded_loss(logits: &[f32], p: usize, keys: &[usize], pairs: &[(usize, usize)]) -> f64 {
    let kept = key_components(logits, p, keys);
    loss_and_accuracy(p, pairs, |a, b, out| {
        let s = (a + b) % p;
        let row = &logits[(a * p + b) * p..(a * p + b + 1) * p];
        for c in 0..p {
            out[c] = row[c] as f64 - kept[s * p + c];
        }
    })
    .0
}

pub(crate) fn population_std(x: &[f64]) -> f64 {
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    (x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt()
}

/// Zhong et al.'s distance irrelevance: mean over `d` of the std of the correct
/// logit over pairs with `a − b ≡ d`, over its std over all pairs. None when the
/// correct logit is constant.
pub fn distance_irrelevance(logits: &[f32], p: usize) -> Option<f64> {
    let correct = crate::analysis::clock_pizza::correct_logits(logits, p);
    crate::analysis::mechanism::distance_irrelevance_of(&correct, p)
}

/// Mean cosine similarity of gradient pairs (a pair with a zero gradient counts 0).
pub fn mean_cosine(pairs: &[(Vec<f64>, Vec<f64>)]) -> f64 {
    if pairs.is_empty() {
        return f64::NAN;
    }
    pairs
        .iter()
        .map(|(x, y)| {
            let dot: f64 = x.iter().zip(y).map(|(a, b)| a * b).sum();
            let nx = x.iter().map(|a| a * a).sum::<f64>().sqrt();
            let ny = y.iter().map(|a| a * a).sum::<f64>().sqrt();
            if nx > 0.0 && ny > 0.0 {
                dot / (nx * ny)
            } else {
                0.0
            }
        })
        .sum::<f64>()
        / pairs.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn planted_logits(p: usize, keys: &[usize]) -> Vec<f32> {
        let mut l = vec![0f32; p * p * p];
        for a in 0..p {
            for b in 0..p {
                for c in 0..p {
                    let v: f64 = keys
                        .iter()
                        .map(|&k| (2.0 * PI * (k * (a + b + p - c)) as f64 / p as f64).cos())
                        .sum();
                    l[(a * p + b) * p + c] = (4.0 * v) as f32;
                }
            }
        }
        l
    }

    #[test]
    fn gini_of_equal_values_is_zero_and_of_one_spike_is_high() {
        assert!(gini(&[1.0; 10]).abs() < 1e-12);
        let mut v = vec![0.0; 10];
        v[3] = 5.0;
        assert!((gini(&v) - 0.9).abs() < 1e-12);
    }

    #[test]
    fn planted_embedding_frequencies_are_found() {
        let (p, d) = (113, 16);
        let planted = [14, 35, 41];
        let basis = FourierBasis::new(p);
        let mut e = Mat::zeros(p + 1, d);
        for x in 0..=p {
            for col in 0..d {
                let k = planted[col % 3];
                let phase = col as f64 * 0.7;
                e.data[x * d + col] = (2.0 * PI * (k * x) as f64 / p as f64 + phase).cos() as f32
                    * (1.0 + col as f32);
            }
        }
        let s = embedding_spectrum(&basis, &e, 0.9);
        let total: f64 = s.norms[1..].iter().map(|n| n * n).sum();
        for &k in &planted {
            assert!(s.norms[k] * s.norms[k] / total > 0.1, "k={k}");
        }
        let other: f64 = (1..s.norms.len())
            .filter(|k| !planted.contains(k))
            .map(|k| s.norms[k] * s.norms[k])
            .sum();
        assert!(
            other / total < 1e-10,
            "energy off the planted frequencies: {other}"
        );
        assert!(s.gini > 0.9, "gini {}", s.gini);
        assert_eq!(s.frequencies_for_coverage, 3);
    }

    #[test]
    fn synthetic_neuron_gets_its_frequency_with_full_variance_explained() {
        let p = 113;
        let basis = FourierBasis::new(p);
        for (k, phase) in [(14usize, 0.0), (41, 1.3), (56, 2.0)] {
            let grid: Vec<f64> = (0..p * p)
                .map(|i| {
                    let (a, b) = (i / p, i % p);
                    3.0 + (2.0 * PI * (k * (a + b)) as f64 / p as f64 + phase).cos()
                })
                .collect();
            let fit = neuron_fit(&basis, &grid, 1e-6);
            assert_eq!(fit.best_frequency, Some(k));
            assert!((fit.fve - 1.0).abs() < 1e-9, "fve {}", fit.fve);
        }
        let dead = neuron_fit(&basis, &vec![0.0; p * p], 1e-6);
        assert!(dead.dead && dead.best_frequency.is_none());
    }

    #[test]
    fn even_modulus_nyquist_neuron_is_found() {
        let p = 8;
        let basis = FourierBasis::new(p);
        let grid: Vec<f64> = (0..p * p)
            .map(|i| if (i / p + i % p) % 2 == 0 { 1.0 } else { -1.0 })
            .collect();
        let fit = neuron_fit(&basis, &grid, 1e-6);
        assert_eq!(fit.best_frequency, Some(4));
        assert!((fit.fve - 1.0).abs() < 1e-12);
    }

    #[test]
    fn planted_logits_are_explained_restricted_keeps_and_excluded_destroys() {
        for p in [31, 32] {
            // For even p the Nyquist frequency p/2 is one of the keys.
            let keys = [3, 7, if p % 2 == 0 { p / 2 } else { 11 }];
            let l = planted_logits(p, &keys);
            let explained: f64 = logits_explained(&l, p, &keys).iter().sum();
            assert!((explained - 1.0).abs() < 1e-6, "p={p}: {explained}");
            let partial: f64 = logits_explained(&l, p, &keys[..1]).iter().sum();
            // Each cosine carries p³/2 of squared norm, the Nyquist one p³.
            let want = if p % 2 == 0 { 0.25 } else { 1.0 / 3.0 };
            assert!((partial - want).abs() < 1e-6, "p={p}: {partial}");
            // A per-input offset is removed by centring over c.
            let shifted: Vec<f32> = l
                .iter()
                .enumerate()
                .map(|(i, v)| v + (i / p) as f32)
                .collect();
            let with_zero = logits_explained(&shifted, p, &[0, keys[0], keys[1], keys[2]]);
            assert_eq!(with_zero[0], 0.0);
            assert!((with_zero.iter().sum::<f64>() - 1.0).abs() < 1e-5);
            let pairs = all_pairs(p);
            let (full, acc) = full_loss(&l, p, &pairs);
            assert_eq!(acc, 1.0);
            let restricted = restricted_loss(&l, p, &keys, &pairs);
            assert!(
                restricted <= full + 1e-5,
                "restricted {restricted} > full {full}"
            );
            let excluded = excluded_loss(&l, p, &keys, &pairs);
            assert!(
                (excluded - (p as f64).ln()).abs() < 1e-4,
                "excluded {excluded}, ln p {}",
                (p as f64).ln()
            );
            // Dropping one key frequency from the restriction hurts.
            assert!(restricted_loss(&l, p, &keys[..2], &pairs) > full + 0.1);
        }
    }

    #[test]
    fn distance_irrelevance_separates_sum_and_difference_logits() {
        let p = 23;
        let mut clock = vec![0f32; p * p * p];
        let mut pizza = vec![0f32; p * p * p];
        for a in 0..p {
            for b in 0..p {
                let c = (a + b) % p;
                // Correct logit constant along a−b = d in the pizza case; free in clock.
                clock[(a * p + b) * p + c] = ((a * 7 + b * 3) % 11) as f32;
                pizza[(a * p + b) * p + c] = ((a + p - b) % p) as f32;
            }
        }
        assert!(distance_irrelevance(&pizza, p).unwrap() < 1e-6);
        assert!(distance_irrelevance(&clock, p).unwrap() > 0.8);
    }

    #[test]
    fn cosine_of_sum_gradients_is_one_and_of_product_gradients_is_low() {
        // f(x, y) = w·(x + y): both gradients are w. f = (u·x)(v·y) with u ⟂ v:
        // gradients (v·y)u and (u·x)v are orthogonal.
        let w = vec![0.3, -1.0, 2.0];
        let sum: Vec<_> = (0..5).map(|_| (w.clone(), w.clone())).collect();
        assert!((mean_cosine(&sum) - 1.0).abs() < 1e-12);
        let (u, v) = (vec![1.0, 0.0, 0.0], vec![0.0, 1.0, 0.0]);
        let product: Vec<_> = (1..5)
            .map(|i| {
                let (x, y) = (vec![i as f64, 1.0, 0.0], vec![0.5, i as f64, 0.0]);
                let uv =
                    |a: &Vec<f64>, b: &Vec<f64>| a.iter().zip(b).map(|(p, q)| p * q).sum::<f64>();
                (
                    u.iter().map(|t| t * uv(&v, &y)).collect(),
                    v.iter().map(|t| t * uv(&u, &x)).collect(),
                )
            })
            .collect();
        assert!(mean_cosine(&product).abs() < 1e-12);
    }
}
