//! Weight and activation quantizers (science.md §3).
//!
//! The optimizer keeps latent fp32 weights `W`; the forward pass uses `Q(W)`, and the
//! backward pass is straight-through (`dQ/dW = I`). In bitgrok the straight-through
//! estimator is realised by construction: the forward pass runs on the *effective*
//! weights `Q(W)`, and the gradient it returns with respect to `Q(W)` is applied to the
//! latent `W` unchanged. Scales are per tensor; reductions run in f64 in a fixed order,
//! so the result does not depend on threads.
//!
//! Rounding is half-to-even, as `torch.round` does.

use crate::config::{Precision, QuantConfig, QuantMatrices, QuantScale};

/// Round half to even for `|x| ≤ 2^51`, by the floating-point addition trick: baseline
/// x86-64 has no rounding instruction, and `round_ties_even` becomes a slow library
/// call. Callers clamp first, so every input is small.
#[inline]
fn round_even(x: f64) -> f64 {
    const C: f64 = 4_503_599_627_370_496.0; // 2^52
    let r = (x.abs() + C) - C;
    r.copysign(x)
}

#[inline]
fn round_even_f32(x: f32) -> f32 {
    const C: f32 = 8_388_608.0; // 2^23
    let r = (x.abs() + C) - C;
    r.copysign(x)
}

fn mean(w: &[f32]) -> f64 {
    w.iter().map(|&x| x as f64).sum::<f64>() / w.len().max(1) as f64
}

fn mean_abs(w: &[f32]) -> f64 {
    w.iter().map(|&x| (x as f64).abs()).sum::<f64>() / w.len().max(1) as f64
}

/// The per-tensor scale of a quantized tensor: γ (ternary), β or 1 (binary), s (int-k);
/// `None` for fp32.
pub fn scale(precision: Precision, q: &QuantConfig, w: &[f32]) -> Option<f64> {
    match precision {
        Precision::Fp32 => None,
        Precision::Ternary => {
            let m = if q.ternary_center { mean(w) } else { 0.0 };
            let abs = w.iter().map(|&x| (x as f64 - m).abs()).sum::<f64>() / w.len().max(1) as f64;
            Some(abs + q.eps)
        }
        Precision::Binary => Some(if q.binary_scale { mean_abs(w) } else { 1.0 }),
        Precision::Int(k) => {
            let m = int_levels(k) as f64;
            let max = w.iter().fold(0.0f64, |acc, &x| acc.max((x as f64).abs()));
            Some(max / m)
        }
    }
}

/// Whether `quant.matrices` selects the projection matrix with this TransformerLens
/// name for quantization.
pub fn selects(matrices: QuantMatrices, name: &str) -> bool {
    let qk = name == crate::engine::weights::W_Q || name == crate::engine::weights::W_K;
    match matrices {
        QuantMatrices::All => true,
        QuantMatrices::Qk => qk,
        QuantMatrices::AllButQk => !qk,
    }
}

/// `m = 2^(k-1) - 1`: the int-k grid is `s·{-m, …, m}`.
pub fn int_levels(k: u8) -> i32 {
    (1i32 << (k - 1)) - 1
}

/// `Q(W)` for one tensor:
/// - ternary: `γ·clip(round((W − c)/γ), −1, 1)`, `γ = mean|W − c| + eps`, with
///   `c = mean(W)` when `ternary_center` (the seed study's code) else 0 (BitNet b1.58);
/// - binary: `β·sign(W − mean W)`, sign(0) = +1, `β = mean|W|` when `binary_scale`
///   (BitNet) else 1 (the seed study's code);
/// - int-k: `s·clip(round(W/s), −m, m)`, `m = 2^(k−1) − 1`, `s = max|W|/m` (all zeros
///   when W is all zeros).
///
/// The levels are then multiplied by that scale (`quant.scale = "per-step"`), by 1
/// (`"none"`) or by `initial_scale`, the scale of the matrix's initial weights
/// (`"initial"`, which needs it).
pub fn quantize(
    precision: Precision,
    q: &QuantConfig,
    w: &[f32],
    initial_scale: Option<f64>,
) -> Vec<f32> {
    let Some(s) = scale(precision, q, w) else {
        return w.to_vec();
    };
    let magnitude = match q.scale {
        QuantScale::PerStep => s,
        QuantScale::None => 1.0,
        QuantScale::Initial => {
            initial_scale.expect("quant.scale = \"initial\" needs the initial scale")
        }
    };
    match precision {
        Precision::Fp32 => unreachable!(),
        Precision::Ternary => {
            let c = if q.ternary_center { mean(w) } else { 0.0 };
            w.iter()
                .map(|&x| {
                    let level = round_even(((x as f64 - c) / s).clamp(-2.0, 2.0)).clamp(-1.0, 1.0);
                    (level * magnitude) as f32
                })
                .collect()
        }
        Precision::Binary => {
            let alpha = mean(w);
            w.iter()
                .map(|&x| {
                    if x as f64 - alpha >= 0.0 {
                        magnitude as f32
                    } else {
                        -magnitude as f32
                    }
                })
                .collect()
        }
        Precision::Int(k) => {
            if s == 0.0 {
                return vec![0.0; w.len()];
            }
            let m = int_levels(k) as f64;
            w.iter()
                .map(|&x| {
                    (round_even((x as f64 / s).clamp(-m - 1.0, m + 1.0)).clamp(-m, m) * magnitude)
                        as f32
                })
                .collect()
        }
    }
}

/// Per-token absmax activation quantization to `bits` bits (BitNet), in place on the
/// rows of a row-major `[rows, cols]` buffer: `Q_b = 2^(bits−1)`, `γx = max(max|x|, eps)`,
/// `x ← clip(round(x·Q_b/γx), −Q_b, Q_b − 1)·γx/Q_b`. Backward is the identity
/// (straight-through). `bits == 0` leaves `x` unchanged.
pub fn quantize_rows(x: &mut [f32], cols: usize, bits: u32, eps: f64) {
    if bits == 0 || cols == 0 {
        return;
    }
    let qb = (1u64 << (bits - 1)) as f32;
    for row in x.chunks_exact_mut(cols) {
        let gamma = row
            .iter()
            .fold(0.0f32, |a, &v| a.max(v.abs()))
            .max(eps as f32);
        let up = qb / gamma;
        let down = gamma / qb;
        for v in row {
            *v = round_even_f32((*v * up).clamp(-qb - 1.0, qb)).clamp(-qb, qb - 1.0) * down;
        }
    }
}

/// Fraction of exact zeros in a tensor (a quantization statistic, e.g. of ternary weights).
pub fn zero_fraction(w: &[f32]) -> f64 {
    w.iter().filter(|&&x| x == 0.0).count() as f64 / w.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<f32> {
        (0..200)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.013 + 0.02)
            .collect()
    }

    #[test]
    fn rounding_is_half_to_even() {
        for x in [
            -2.5,
            -1.5,
            -0.5,
            -0.49,
            0.0,
            0.5,
            0.51,
            1.5,
            2.5,
            3.7,
            -1e9 - 0.5,
        ] {
            assert_eq!(round_even(x), f64::round_ties_even(x), "{x}");
            assert_eq!(
                round_even_f32(x as f32),
                f32::round_ties_even(x as f32),
                "{x}"
            );
        }
    }

    #[test]
    fn ternary_takes_three_values() {
        for center in [false, true] {
            let q = QuantConfig {
                ternary_center: center,
                ..Default::default()
            };
            let w = sample();
            let g = scale(Precision::Ternary, &q, &w).unwrap() as f32;
            let out = quantize(Precision::Ternary, &q, &w, None);
            let mut seen = [false; 3];
            for v in &out {
                let i = [-g, 0.0, g].iter().position(|x| x == v).expect("off grid");
                seen[i] = true;
            }
            assert_eq!(seen, [true; 3]);
        }
    }

    #[test]
    fn binary_is_plus_minus_beta_or_one() {
        let w = sample();
        for scaled in [true, false] {
            let q = QuantConfig {
                binary_scale: scaled,
                ..Default::default()
            };
            let b = if scaled { mean_abs(&w) as f32 } else { 1.0 };
            let out = quantize(Precision::Binary, &q, &w, None);
            let alpha = mean(&w);
            for (x, v) in w.iter().zip(&out) {
                assert_eq!(*v, if *x as f64 >= alpha { b } else { -b });
            }
        }
    }

    #[test]
    fn int_k_lies_on_the_grid() {
        let w = sample();
        for k in [2u8, 4, 8] {
            let q = QuantConfig::default();
            let s = scale(Precision::Int(k), &q, &w).unwrap();
            let m = int_levels(k);
            let out = quantize(Precision::Int(k), &q, &w, None);
            let mut levels = std::collections::BTreeSet::new();
            for v in out {
                let l = (v as f64 / s).round();
                assert!((v as f64 - l * s).abs() < 1e-6 && l.abs() <= m as f64);
                levels.insert(l as i32);
            }
            assert!(levels.contains(&m) || levels.contains(&-m));
            assert!(levels.len() as i32 <= 2 * m + 1);
        }
    }

    /// `quant.scale`: "none" gives the levels themselves, "initial" the same levels
    /// times the given constant, whatever the latent weights' own scale.
    #[test]
    fn unscaled_and_initial_scales_keep_the_levels() {
        let w = sample();
        for precision in [Precision::Ternary, Precision::Int(4), Precision::Binary] {
            let per_step = QuantConfig::default();
            let s = scale(precision, &per_step, &w).unwrap();
            let levels: Vec<f64> = quantize(precision, &per_step, &w, None)
                .iter()
                .map(|&v| v as f64 / s)
                .collect();
            if precision != Precision::Binary {
                let none = QuantConfig {
                    scale: QuantScale::None,
                    ..Default::default()
                };
                let out = quantize(precision, &none, &w, None);
                for (v, l) in out.iter().zip(&levels) {
                    assert_eq!(*v as f64, l.round(), "{precision}");
                }
            }
            let initial = QuantConfig {
                scale: QuantScale::Initial,
                ..Default::default()
            };
            // Latent weights ten times larger: the same levels, the same magnitude.
            let w10: Vec<f32> = w.iter().map(|x| x * 10.0).collect();
            let out = quantize(precision, &initial, &w10, Some(0.25));
            for (v, l) in out.iter().zip(&levels) {
                assert_eq!(*v, (l.round() * 0.25) as f32, "{precision}");
            }
        }
    }

    #[test]
    fn activation_quantization_uses_2_pow_bits_levels_per_row() {
        let orig = sample();
        let mut x = orig.clone();
        quantize_rows(&mut x, 50, 4, 1e-5);
        for (row, o) in x.chunks(50).zip(orig.chunks(50)) {
            let g = o.iter().fold(0.0f32, |a, v| a.max(v.abs()));
            let mut lv: Vec<i32> = row.iter().map(|v| (v * 8.0 / g).round() as i32).collect();
            lv.sort();
            lv.dedup();
            assert!(lv.iter().all(|l| (-8..=7).contains(l)), "{lv:?}");
        }
    }
}
