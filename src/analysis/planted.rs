//! Models whose algorithm is known because their weights were written by hand: the
//! ground truth the labels are tested on (README, "Planted models").
//!
//! - [`Planted::Clock`] (nanda2023 only): head 0 attends to position 0 and head 1 to
//!   position 1 (through the positional embedding), so the MLP sees `cos wa, sin wa`
//!   and `cos wb, sin wb` in separate dimensions. Neurons `ReLU(cos(wa + θ) +
//!   cos(wb + ψ))` on an 8 × 8 grid of phases, read out with `cos(θ + ψ + wc)`, sum to
//!   a multiple of `cos(w(a + b − c))` (the (1, 1) harmonic of `ReLU(cos x + cos y)`;
//!   the grid aliases only harmonics of order ≥ 7).
//! - [`Planted::Pizza`] (both architectures): constant attention (`W_Q = 0`), so the
//!   MLP sees `E_a + E_b` = `2cos(w(a−b)/2)·(cos φ, sin φ)`, φ = w(a+b)/2. Neurons
//!   `ReLU(cos(wa + θ) + cos(wb + θ))` on 12 phases, read out with `cos(2θ + wc)`, sum
//!   to a multiple of `|cos(w(a−b)/2)|·cos(w(a+b−c))` (the second harmonic of a
//!   half-wave rectified cosine, 2/(3π); the grid aliases only harmonics ≥ 10).
//! - [`Planted::Lookup`] (both architectures): one-hot embeddings and one neuron per
//!   input (nanda2023: per ordered pair; li2024: per unordered pair plus a
//!   correction per diagonal pair), each writing its answer: a perfect table with no
//!   Fourier structure.
//!
//! li2024 cannot express this clock: it has no positional embedding and attends
//! without a mask, so positions 0 and 1 are exchangeable and nothing can route `a`
//! and `b` into different dimensions; every function it computes is symmetric in
//! the two inputs *as vectors*, and its MLP sees `α(a,b)·E_a + β(a,b)·E_b` with the
//! same weights on both. With a final RMSNorm, li2024 models here carry a large
//! constant direction in `E_=` so that the norm divides by a near-constant.

use crate::config::Arch;
use crate::engine::model_file::{attention_scale, Model};
use crate::engine::weights::{Dims, ModelWeights};
use anyhow::{bail, Result};
use std::f64::consts::PI;

/// Which hand-written algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Planted {
    Clock,
    Pizza,
    Lookup,
}

/// Width, heads and MLP width of every planted model: d_head = 16.
const D: usize = 64;
const HEADS: usize = 4;
const D_MLP: usize = 256;
/// Residual dimensions: token features from 0, what head 0 writes from `A`, head 1
/// from `B`, the MLP's output from `R`, the positional one-hots at `POS..POS + 3`,
/// the constant of `E_=` (li2024) at `CONST`.
const A: usize = 16;
const B: usize = 32;
const R: usize = 48;
const POS: usize = 60;
const CONST: usize = 63;
/// Norm of the constant direction of `E_=` in li2024 models.
const CONST_NORM: f64 = 100.0;
/// Attention score (nats) of a routed head on its position.
const ROUTE_NATS: f64 = 40.0;
/// The correct logit's margin the read-out aims at (nats).
const LOGIT_SCALE: f64 = 12.0;

/// A planted model of `kind` in `arch` at modulus `p` on the frequencies `freqs`
/// (ignored by [`Planted::Lookup`]). Fails for a combination the architecture
/// cannot express or that does not fit the fixed sizes.
pub fn planted(kind: Planted, arch: Arch, p: usize, freqs: &[usize]) -> Result<Model> {
    let features = match kind {
        Planted::Lookup => p,
        _ => 2 * freqs.len(),
    };
    if features == 0 || features > A || p < 3 {
        bail!("a planted model needs p ≥ 3 and 1 to {} token features", A);
    }
    if kind != Planted::Lookup && freqs.iter().any(|&f| f == 0 || 2 * f >= p) {
        bail!("planted frequencies must lie in 1..p/2");
    }
    let neurons = match (kind, arch) {
        (Planted::Clock, _) => 64 * freqs.len(),
        (Planted::Pizza, _) => 12 * freqs.len(),
        (Planted::Lookup, Arch::Nanda2023) => p * p,
        (Planted::Lookup, Arch::Li2024) => p * (p + 1) / 2,
    };
    if neurons > D_MLP || (kind == Planted::Lookup && p > POS - R) {
        bail!("the planted model does not fit {D_MLP} neurons");
    }
    if kind == Planted::Clock && arch == Arch::Li2024 {
        bail!(
            "li2024 cannot express the planted clock: without a positional embedding or \
             mask, positions 0 and 1 are exchangeable, so a and b cannot be routed apart"
        );
    }
    let dims = Dims {
        modulus: p,
        d_model: D,
        heads: HEADS,
        d_mlp: D_MLP,
    };
    let mut w: ModelWeights<f64> =
        ModelWeights::try_build(arch, &dims, |_, (r, c)| Ok(vec![0.0; r * c]))?;
    if let Some(g) = w.ln_final_w.as_mut() {
        g.iter_mut().for_each(|v| *v = 1.0);
    }
    let dh = D / HEADS;
    let w_freq = |f: usize| 2.0 * PI * f as f64 / p as f64;
    // Token features.
    for t in 0..p {
        let row = w.w_e.row_mut(t);
        match kind {
            Planted::Lookup => row[t] = 1.0,
            _ => {
                for (i, &f) in freqs.iter().enumerate() {
                    row[2 * i] = (w_freq(f) * t as f64).cos();
                    row[2 * i + 1] = (w_freq(f) * t as f64).sin();
                }
            }
        }
    }
    match w.w_pos.as_mut() {
        Some(pos) => (0..3).for_each(|j| pos.row_mut(j)[POS + j] = 1.0),
        None => w.w_e.row_mut(p)[CONST] = CONST_NORM,
    }
    // Attention: routed heads 0 → position 0 and 1 → position 1, or head 0 alone
    // under constant attention (W_Q = 0) with its output scaled by 3 to undo the 1/3.
    let routed = kind == Planted::Clock || (kind == Planted::Lookup && arch == Arch::Nanda2023);
    let heads_used: &[(usize, usize)] = if routed { &[(0, A), (1, B)] } else { &[(0, A)] };
    let scale = attention_scale(arch, D, HEADS);
    for &(h, out) in heads_used {
        if routed {
            w.w_q.row_mut(POS + 2)[h * dh + dh - 1] = ROUTE_NATS / scale;
            w.w_k.row_mut(POS + h)[h * dh + dh - 1] = 1.0;
        }
        for i in 0..features {
            w.w_v.row_mut(i)[h * dh + i] = 1.0;
            w.w_o.row_mut(h * dh + i)[out + i] = if routed { 1.0 } else { 3.0 };
        }
    }
    // MLP and read-out.
    let mut n = 0;
    let mut neuron = |w: &mut ModelWeights<f64>, input: &[(usize, f64)], bias: f64| {
        for &(dim, v) in input {
            w.w_in.row_mut(dim)[n] = v;
        }
        match w.b_in.as_mut() {
            Some(b) => b[n] = bias,
            // li2024 has no MLP bias: the constant direction of E_= carries it.
            None => w.w_in.row_mut(CONST)[n] = bias / CONST_NORM,
        }
        n += 1;
        n - 1
    };
    match kind {
        Planted::Clock | Planted::Pizza => {
            let (grid, gain) = if kind == Planted::Clock {
                (8, LOGIT_SCALE / (0.5 * relu_sum_harmonic_11()))
            } else {
                // |R|/(3π) with |R| ≤ 2: the largest correct logit is LOGIT_SCALE.
                (12, LOGIT_SCALE * 3.0 * PI / 2.0)
            };
            for (i, &f) in freqs.iter().enumerate() {
                let (c, s) = (2 * i, 2 * i + 1);
                let phases: Vec<(f64, f64)> = if kind == Planted::Clock {
                    (0..grid * grid)
                        .map(|g| (phase(g / grid, grid), phase(g % grid, grid)))
                        .collect()
                } else {
                    (0..grid)
                        .map(|g| (phase(g, grid), phase(g, grid)))
                        .collect()
                };
                let count = phases.len() as f64;
                for (th, ps) in phases {
                    let input: Vec<(usize, f64)> = if kind == Planted::Clock {
                        vec![
                            (A + c, th.cos()),
                            (A + s, -th.sin()),
                            (B + c, ps.cos()),
                            (B + s, -ps.sin()),
                        ]
                    } else {
                        vec![(A + c, th.cos()), (A + s, -th.sin())]
                    };
                    let m = neuron(&mut w, &input, 0.0);
                    // Read out cos(θ + ψ + wc) (pizza: ψ = θ, so cos(2θ + wc)).
                    w.w_out.row_mut(m)[R + c] = (th + ps).cos() * gain / count;
                    w.w_out.row_mut(m)[R + s] = -(th + ps).sin() * gain / count;
                }
                for cls in 0..p {
                    w.w_u.row_mut(R + c)[cls] = (w_freq(f) * cls as f64).cos();
                    w.w_u.row_mut(R + s)[cls] = (w_freq(f) * cls as f64).sin();
                }
            }
        }
        Planted::Lookup => {
            for cls in 0..p {
                w.w_u.row_mut(R + cls)[cls] = LOGIT_SCALE;
            }
            if arch == Arch::Nanda2023 {
                // ReLU(x_a=i + x_b=j − 1) is 1 exactly on (i, j).
                for i in 0..p {
                    for j in 0..p {
                        let m = neuron(&mut w, &[(A + i, 1.0), (B + j, 1.0)], -1.0);
                        w.w_out.row_mut(m)[R + (i + j) % p] = 1.0;
                    }
                }
            } else {
                // x = onehot(a) + onehot(b). ReLU(x_i + x_j − 1.5) is ½ on (i, j), (j, i),
                // (i, i) and (j, j); ReLU(x_i − 1.5) is ½ on (i, i) only and removes what
                // every pair neuron {i, j} wrote there.
                for i in 0..p {
                    for j in i + 1..p {
                        let m = neuron(&mut w, &[(A + i, 1.0), (A + j, 1.0)], -1.5);
                        w.w_out.row_mut(m)[R + (i + j) % p] = 2.0;
                    }
                    let m = neuron(&mut w, &[(A + i, 1.0)], -1.5);
                    for j in (0..p).filter(|&j| j != i) {
                        w.w_out.row_mut(m)[R + (i + j) % p] -= 2.0;
                    }
                    w.w_out.row_mut(m)[R + (2 * i) % p] += 2.0;
                }
            }
        }
    }
    if arch == Arch::Li2024 {
        // The norm divides by ≈ CONST_NORM and multiplies by sqrt(d): undo both.
        let undo = CONST_NORM / (D as f64).sqrt();
        w.w_u.data.iter_mut().for_each(|v| *v *= undo);
    }
    let weights = w.map(|_, d| d.iter().map(|&v| v as f32).collect());
    Ok(Model::plain(weights))
}

/// Phase `i` of a grid of `n` over [0, 2π).
fn phase(i: usize, n: usize) -> f64 {
    2.0 * PI * i as f64 / n as f64
}

/// The coefficient of `cos(x + y)` in the Fourier series of `ReLU(cos x + cos y)`,
/// by a 256 × 256 midpoint sum.
fn relu_sum_harmonic_11() -> f64 {
    let n = 256;
    let mut s = 0.0;
    for i in 0..n {
        for j in 0..n {
            let (x, y) = (phase(i, n) + PI / n as f64, phase(j, n) + PI / n as f64);
            s += (x.cos() + y.cos()).max(0.0) * (x + y).cos();
        }
    }
    2.0 * s / (n * n) as f64
}
