//! The model's parameters, their initialisation, and the fast training forward and
//! backward pass on dfdx (science.md §2).
//!
//! The fast pass is the straightforward one-layer transformer with its structure
//! exploited (science.md §2, "useful facts for speed"), mathematically identical:
//! - the loss reads position 2 only, so queries, attention output, MLP, norm and
//!   unembedding are computed at position 2 only;
//! - the residual input at position 2 is always the row of token `=` (plus
//!   `W_pos[2]` for nanda2023), so the query is one vector for the whole batch;
//! - keys and values depend only on (position, token), so they are computed once per
//!   row of an input table (the p+1 token embeddings for li2024; embeddings plus each
//!   position's positional embedding for nanda2023) and gathered per example;
//! - li2024 has no positional embedding, so `[a, b, =]` and `[b, a, =]` are the same
//!   input at position 2: each unordered pair is computed once, with its count;
//! - the attention output and the MLP's first matrix are linear in the value rows,
//!   so they too are computed per table row (`VO_h = V_h·W_O_h`, `T_h = VO_h·W_in`)
//!   and each example only sums 3·heads weighted rows ([`ops::attention_mlp`]); only
//!   the MLP's second matrix (after the ReLU) and the unembedding run per example.
//!
//! dfdx records every operation on its tape and runs the backward pass. The
//! embedding table, queries, keys, values, attention scores and the unembedding are
//! dfdx ops; fused ops with hand-written backward passes are recorded on the same
//! tape (see [`ops`]): attention + MLP on the tables, RMSNorm, and cross-entropy
//! (with quantized activations, where the table regrouping does not hold: attention
//! read-out, activation quantizer and MLP block instead). Gradients come back with
//! respect to the weights the forward pass used (the effective, quantized ones),
//! which is what the straight-through estimator applies to the latent weights.

use crate::config::{Arch, CellConfig};
use crate::engine::data::{cell_rng, label, INIT_STREAM};
use crate::engine::weights::{Mat, ModelWeights};
use dfdx::prelude::*;
use rand::Rng;
use std::sync::Arc;

pub mod ops;

pub(crate) type Tp = OwnedTape<f32, Cpu>;
pub(crate) type T2 = Tensor<(usize, usize), f32, Cpu, Tp>;
type Leaf = Tensor<(usize, usize), f32, Cpu>;

/// The parameters of a model as named flat slices, in a fixed order (the in-memory
/// layout of [`ModelWeights`]). Optimizer state is kept per entry of this list.
pub fn params(w: &ModelWeights) -> Vec<(&'static str, &[f32])> {
    let mut out: Vec<(&'static str, &[f32])> = vec![("W_E", &w.w_e.data)];
    if let Some(m) = &w.w_pos {
        out.push(("W_pos", &m.data));
    }
    out.push(("W_Q", &w.w_q.data));
    out.push(("W_K", &w.w_k.data));
    out.push(("W_V", &w.w_v.data));
    out.push(("W_O", &w.w_o.data));
    out.push(("W_in", &w.w_in.data));
    if let Some(b) = &w.b_in {
        out.push(("b_in", b));
    }
    out.push(("W_out", &w.w_out.data));
    if let Some(b) = &w.b_out {
        out.push(("b_out", b));
    }
    if let Some(g) = &w.ln_final_w {
        out.push(("ln_final.w", g));
    }
    out.push(("W_U", &w.w_u.data));
    out
}

/// Mutable counterpart of [`params`], same order.
pub fn params_mut(w: &mut ModelWeights) -> Vec<(&'static str, &mut [f32])> {
    let mut out: Vec<(&'static str, &mut [f32])> = vec![("W_E", &mut w.w_e.data)];
    if let Some(m) = &mut w.w_pos {
        out.push(("W_pos", &mut m.data));
    }
    out.push(("W_Q", &mut w.w_q.data));
    out.push(("W_K", &mut w.w_k.data));
    out.push(("W_V", &mut w.w_v.data));
    out.push(("W_O", &mut w.w_o.data));
    out.push(("W_in", &mut w.w_in.data));
    if let Some(b) = &mut w.b_in {
        out.push(("b_in", b));
    }
    out.push(("W_out", &mut w.w_out.data));
    if let Some(b) = &mut w.b_out {
        out.push(("b_out", b));
    }
    if let Some(g) = &mut w.ln_final_w {
        out.push(("ln_final.w", g));
    }
    out.push(("W_U", &mut w.w_u.data));
    out
}

/// Names of the six projection matrices that quantized precisions quantize.
pub const PROJECTIONS: [&str; 6] = ["W_Q", "W_K", "W_V", "W_O", "W_in", "W_out"];

/// A model of the same shape with every parameter zero.
pub fn zeros_like(w: &ModelWeights) -> ModelWeights {
    let mut z = w.clone();
    for (_, p) in params_mut(&mut z) {
        p.fill(0.0);
    }
    z
}

/// Check the shape settings of a cell; the error names the setting.
pub fn validate(cfg: &CellConfig) -> anyhow::Result<()> {
    anyhow::ensure!(
        cfg.modulus >= 2,
        "modulus must be at least 2, got {}",
        cfg.modulus
    );
    anyhow::ensure!(cfg.model.heads >= 1, "model.heads must be at least 1");
    anyhow::ensure!(
        cfg.width >= 1 && cfg.width.is_multiple_of(cfg.model.heads),
        "width {} must be a positive multiple of model.heads {}",
        cfg.width,
        cfg.model.heads
    );
    anyhow::ensure!(
        cfg.model.mlp_ratio >= 1,
        "model.mlp_ratio must be at least 1"
    );
    anyhow::ensure!(
        cfg.train.train_fraction > 0.0 && cfg.train.train_fraction <= 1.0,
        "train.train_fraction must be in (0, 1], got {}",
        cfg.train.train_fraction
    );
    anyhow::ensure!(
        cfg.quant.act_bits <= 16,
        "quant.act_bits must be 0 (off) or 1..=16"
    );
    Ok(())
}

/// Initial weights (science.md §2): Gaussian with std `1/sqrt(fan_in)`, where fan_in is
/// the input dimension of `x @ W` (d for W_Q, W_K, W_V, W_O, W_in, W_U; d_mlp for W_out)
/// and `1/sqrt(d)` for the embeddings W_E and W_pos (Nanda's choice); biases 0, RMSNorm
/// gain 1. Draws come from ChaCha20 stream [`INIT_STREAM`] of the cell seed, in the
/// order W_E, W_pos, W_Q, W_K, W_V, W_O, W_in, W_out, W_U (Box–Muller, f64).
pub fn init_weights(cfg: &CellConfig) -> ModelWeights {
    let (p, d, m) = (cfg.modulus, cfg.width, cfg.d_mlp());
    let nanda = cfg.model.arch == Arch::Nanda2023;
    let mut rng = cell_rng(cfg.seed, INIT_STREAM);
    let mut gauss = |rows: usize, cols: usize, fan_in: usize| -> Mat {
        let std = 1.0 / (fan_in as f64).sqrt();
        let data = (0..rows * cols)
            .map(|_| {
                let u1: f64 = 1.0 - rng.gen::<f64>(); // (0, 1]
                let u2: f64 = rng.gen::<f64>();
                ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos() * std) as f32
            })
            .collect();
        Mat::from_vec(rows, cols, data)
    };
    let w_e = gauss(p + 1, d, d);
    let w_pos = nanda.then(|| gauss(3, d, d));
    let w_q = gauss(d, d, d);
    let w_k = gauss(d, d, d);
    let w_v = gauss(d, d, d);
    let w_o = gauss(d, d, d);
    let w_in = gauss(d, m, d);
    let w_out = gauss(m, d, m);
    let w_u = gauss(d, p, d);
    ModelWeights {
        arch: cfg.model.arch,
        heads: cfg.model.heads,
        w_e,
        w_pos,
        w_q,
        w_k,
        w_v,
        w_o,
        w_in,
        b_in: nanda.then(|| vec![0.0; m]),
        w_out,
        b_out: nanda.then(|| vec![0.0; d]),
        ln_final_w: (!nanda).then(|| vec![1.0; d]),
        w_u,
    }
}

/// A batch in the fast path's form: for every distinct example the rows of the input
/// table at positions 0, 1, 2, its label and its multiplicity.
///
/// li2024 has no positional embedding, so `[a, b, =]` and `[b, a, =]` give the same
/// residual stream at position 2 and the same label: the batch holds each unordered
/// pair once, weighted by how often it occurs (the loss and its gradient are the same
/// sums, grouped). nanda2023 keeps every pair.
#[derive(Clone, Debug)]
pub struct Batch {
    pub arch: Arch,
    pub modulus: usize,
    /// Rows of the input table: p+1 (li2024) or 3(p+1) (nanda2023).
    pub table_rows: usize,
    /// [distinct examples, 3] row indices into the input table.
    pub rows: Arc<Vec<[u32; 3]>>,
    pub labels: Arc<Vec<u32>>,
    /// Multiplicity of each distinct example.
    pub counts: Arc<Vec<u32>>,
    /// For every pair given, the index of its distinct example.
    pub index: Vec<u32>,
}

impl Batch {
    pub fn new(arch: Arch, p: usize, pairs: &[(u32, u32)]) -> Batch {
        let v = (p + 1) as u32;
        let key = |(a, b): (u32, u32)| match arch {
            Arch::Li2024 => [a.min(b), a.max(b), p as u32],
            Arch::Nanda2023 => [a, v + b, 2 * v + p as u32],
        };
        let mut slot = std::collections::HashMap::new();
        let (mut rows, mut labels, mut counts, mut index) = (vec![], vec![], vec![], vec![]);
        for &ab in pairs {
            let k = key(ab);
            let i = *slot.entry(k).or_insert_with(|| {
                rows.push(k);
                labels.push(label(p, ab));
                counts.push(0u32);
                rows.len() - 1
            });
            counts[i] += 1;
            index.push(i as u32);
        }
        Batch {
            arch,
            modulus: p,
            table_rows: match arch {
                Arch::Li2024 => p + 1,
                Arch::Nanda2023 => 3 * (p + 1),
            },
            rows: Arc::new(rows),
            labels: Arc::new(labels),
            counts: Arc::new(counts),
            index,
        }
    }
    /// Number of pairs (with multiplicity).
    pub fn len(&self) -> usize {
        self.index.len()
    }
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }
    /// The row of the query input (token `=` at position 2).
    fn query_row(&self) -> usize {
        match self.arch {
            Arch::Li2024 => self.modulus,
            Arch::Nanda2023 => 3 * (self.modulus + 1) - 1,
        }
    }
}

/// What one pass over a batch gives.
pub struct PassResult {
    /// Mean cross-entropy.
    pub loss: f64,
    /// Fraction of examples whose argmax logit is the label.
    pub accuracy: f64,
    /// Gradients of the loss with respect to the weights used in the forward pass
    /// (present when asked for).
    pub grads: Option<ModelWeights>,
    /// [n, p] logits at position 2 (present when asked for).
    pub logits: Option<Vec<f32>>,
}

fn leaf(dev: &Cpu, data: &[f32], rows: usize, cols: usize) -> Leaf {
    dev.tensor_from_vec(data.to_vec(), (rows, cols))
}

/// One forward pass (and, when `want_grads`, the backward pass) of the model with
/// weights `w` on `batch`. `act_bits > 0` quantizes the inputs of the six projections
/// per token (straight-through); `attention_rate` mixes the attention with uniform
/// attention (`model.attention_rate`). Matrix products use the threads of the current rayon
/// pool; the result does not depend on their number.
pub fn run(
    w: &ModelWeights,
    act_bits: u32,
    eps: f64,
    attention_rate: f64,
    batch: &Batch,
    want_grads: bool,
    want_logits: bool,
) -> PassResult {
    let dev: Cpu = Default::default();
    let (p, d) = (w.modulus(), w.width());
    let (h, n, r) = (w.heads, batch.rows.len(), batch.table_rows);
    assert_eq!(p, batch.modulus, "batch and model modulus differ");
    assert_eq!(w.arch, batch.arch, "batch and model architecture differ");
    let nanda = w.arch == Arch::Nanda2023;

    let w_e = leaf(&dev, &w.w_e.data, p + 1, d);
    let w_pos = w.w_pos.as_ref().map(|m| leaf(&dev, &m.data, 3, d));
    let w_q = leaf(&dev, &w.w_q.data, d, d);
    let w_k = leaf(&dev, &w.w_k.data, d, d);
    let w_v = leaf(&dev, &w.w_v.data, d, d);
    let w_o = leaf(&dev, &w.w_o.data, d, d);
    let w_in = leaf(&dev, &w.w_in.data, d, w.d_mlp());
    let b_in = w.b_in.as_ref().map(|b| leaf(&dev, b, 1, b.len()));
    let w_out = leaf(&dev, &w.w_out.data, w.d_mlp(), d);
    let b_out = w.b_out.as_ref().map(|b| leaf(&dev, b, 1, b.len()));
    let gain = w.ln_final_w.as_ref().map(|g| leaf(&dev, g, 1, d));
    let w_u = leaf(&dev, &w.w_u.data, d, p);

    // Input table: one row per (position, token) that can occur.
    let x0tab: T2 = if let Some(w_pos) = &w_pos {
        let v = p + 1;
        let mut sel_e = vec![0.0f32; r * v];
        let mut sel_p = vec![0.0f32; r * 3];
        for pos in 0..3 {
            for t in 0..v {
                sel_e[(pos * v + t) * v + t] = 1.0;
                sel_p[(pos * v + t) * 3 + pos] = 1.0;
            }
        }
        let sel_e = dev.tensor_from_vec(sel_e, (r, v));
        let sel_p = dev.tensor_from_vec(sel_p, (r, 3));
        sel_e.retaped::<Tp>().matmul(w_e.leaky_trace())
            + sel_p.retaped::<Tp>().matmul(w_pos.leaky_trace())
    } else {
        w_e.leaky_trace()
    };
    let mut onehot = vec![0.0f32; r];
    onehot[batch.query_row()] = 1.0;
    let onehot = dev.tensor_from_vec(onehot, (1, r));
    // Residual stream at position 2 before attention: the same for every example.
    let x0_query: T2 = onehot.retaped::<Tp>().matmul(x0tab.retaped::<Tp>());
    let x0q: T2 = if act_bits > 0 {
        ops::quantize_activations(x0tab.retaped(), act_bits, eps)
    } else {
        x0tab.retaped()
    };
    let q: T2 = onehot
        .retaped::<Tp>()
        .matmul(x0q.retaped::<Tp>())
        .matmul(w_q.leaky_trace()); // [1, d]
    let k: T2 = x0q.retaped::<Tp>().matmul(w_k.leaky_trace()); // [r, d]
    let v: T2 = x0q.matmul(w_v.leaky_trace()); // [r, d]
    let dh = d / h;
    let scale = if nanda {
        1.0 / (dh as f32).sqrt()
    } else {
        1.0 / (d as f32).sqrt()
    };
    let qb = q.reshape_like(&(d,)).broadcast_like::<_, Axis<0>>(&(r, d));
    let scores: T2 = (k * qb)
        .reshape_like(&(r, h, dh))
        .sum::<(usize, usize), Axis<2>>()
        * scale; // [r, h]

    // Position 2 attends to positions 0, 1, 2 in both architectures (the causal mask
    // hides nothing from the last position).
    let x2 = if act_bits == 0 {
        ops::attention_mlp(
            scores,
            v,
            w_o.leaky_trace(),
            x0_query,
            w_in.leaky_trace(),
            b_in.as_ref().map(|b| b.leaky_trace()),
            w_out.leaky_trace(),
            b_out.as_ref().map(|b| b.leaky_trace()),
            batch.rows.clone(),
            h,
            attention_rate as f32,
        )
    } else {
        // Quantized activations: the inputs of W_O and W_in must be materialised.
        let z = ops::attend(scores, v, batch.rows.clone(), h, attention_rate as f32); // [n, d]
        let zq = ops::quantize_activations(z, act_bits, eps);
        let attn_out: T2 = zq.matmul(w_o.leaky_trace());
        let x1: T2 = attn_out + broadcast_row(x0_query, n, d);
        ops::mlp_block(
            x1,
            w_in.leaky_trace(),
            b_in.as_ref().map(|b| b.leaky_trace()),
            w_out.leaky_trace(),
            b_out.as_ref().map(|b| b.leaky_trace()),
            act_bits,
            eps,
        )
    };
    let xn = match &gain {
        Some(g) => ops::rms_norm(x2, g.leaky_trace()),
        None => x2,
    };
    let logits: T2 = xn.matmul(w_u.leaky_trace());
    let (loss, stats) = ops::cross_entropy(
        logits,
        batch.labels.clone(),
        batch.counts.clone(),
        want_logits,
    );
    // Every other use of the input table took an empty-taped copy, so the ops that
    // built the table (nanda2023) are still on its own tape: fold them in.
    let loss = merge_tape(loss, x0tab);
    let loss_value = loss.as_vec()[0] as f64;
    let grads = want_grads.then(|| {
        let g = loss.backward();
        let get = |t: &Leaf| g.get(t).as_vec();
        let mat = |t: &Leaf, like: &Mat| Mat::from_vec(like.rows, like.cols, get(t));
        ModelWeights {
            arch: w.arch,
            heads: w.heads,
            w_e: mat(&w_e, &w.w_e),
            w_pos: w_pos.as_ref().zip(w.w_pos.as_ref()).map(|(t, m)| mat(t, m)),
            w_q: mat(&w_q, &w.w_q),
            w_k: mat(&w_k, &w.w_k),
            w_v: mat(&w_v, &w.w_v),
            w_o: mat(&w_o, &w.w_o),
            w_in: mat(&w_in, &w.w_in),
            b_in: b_in.as_ref().map(get),
            w_out: mat(&w_out, &w.w_out),
            b_out: b_out.as_ref().map(get),
            ln_final_w: gain.as_ref().map(get),
            w_u: mat(&w_u, &w.w_u),
        }
    });
    PassResult {
        loss: loss_value,
        accuracy: stats.correct as f64 / batch.len().max(1) as f64,
        grads,
        logits: stats.logits.map(|z| {
            let mut out = Vec::with_capacity(batch.len() * p);
            for &i in &batch.index {
                out.extend_from_slice(&z[i as usize * p..(i as usize + 1) * p]);
            }
            out
        }),
    }
}

/// [1, d] -> [n, d] by repeating the row.
fn broadcast_row(x: T2, n: usize, d: usize) -> T2 {
    x.reshape_like(&(d,)).broadcast_like::<_, Axis<0>>(&(n, d))
}

/// Move the tape of `other` into `loss` (no arithmetic).
fn merge_tape(loss: Tensor<(), f32, Cpu, Tp>, other: T2) -> Tensor<(), f32, Cpu, Tp> {
    let (other, tape) = other.split_tape();
    drop(other);
    let (loss, loss_tape) = loss.split_tape();
    loss.put_tape(loss_tape.merge(tape))
}
