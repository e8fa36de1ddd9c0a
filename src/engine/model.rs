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

use crate::config::{Arch, AttentionMix, CellConfig, InitScheme};
use crate::engine::data::{cell_rng, label, INIT_STREAM};
use crate::engine::weights::{
    Dim, Dims, Init, ModelWeights, B_IN, B_OUT, LN_FINAL_W, W_E, W_IN, W_K, W_O, W_OUT, W_POS, W_Q,
    W_U, W_V,
};
use dfdx::prelude::*;
use rand::Rng;
use std::collections::HashMap;
use std::sync::Arc;

mod chains;
mod fused;
pub(crate) mod kernels;
pub mod ops;
pub mod relu_products;
mod softmax;

pub(crate) type Tp = OwnedTape<f32, Cpu>;
pub(crate) type T2 = Tensor<(usize, usize), f32, Cpu, Tp>;
type Leaf = Tensor<(usize, usize), f32, Cpu>;

/// Check the settings of a cell (`CellConfig::check`); the error names the setting.
pub fn validate(cfg: &CellConfig) -> anyhow::Result<()> {
    cfg.checked()
}

/// Initial weights (science.md §2): Gaussian with std `1/sqrt(fan_in)`, where fan_in is
/// the input dimension of `x @ W` (d for W_Q, W_K, W_V, W_O, W_in, W_U; d_mlp for W_out)
/// and `1/sqrt(d)` for the embeddings W_E and W_pos (Nanda's choice); biases 0, RMSNorm
/// gain 1 (each parameter's [`Init`]). Draws come from ChaCha20 stream [`INIT_STREAM`]
/// of the cell seed, parameter after parameter in [`crate::engine::weights::PARAMS`]
/// order (Box–Muller, f64); then the `=` row of W_E times `model.eq_init_scale`.
pub fn init_weights(cfg: &CellConfig) -> ModelWeights {
    let dims = Dims {
        modulus: cfg.modulus,
        d_model: cfg.width,
        heads: cfg.model.heads,
        d_mlp: cfg.d_mlp(),
    };
    let mut rng = cell_rng(cfg.seed, INIT_STREAM);
    let mut w = ModelWeights::try_build(cfg.model.arch, &dims, |spec, (rows, cols)| {
        let n = rows * cols;
        Ok(match spec.init {
            Init::Zeros => vec![0.0; n],
            Init::Ones => vec![1.0; n],
            Init::Normal(fan_in) => {
                let std =
                    1.0 / (dims.of(init_dim(cfg.model.init, spec.name, fan_in)) as f64).sqrt();
                (0..n)
                    .map(|_| {
                        let u1: f64 = 1.0 - rng.gen::<f64>(); // (0, 1]
                        let u2: f64 = rng.gen::<f64>();
                        ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos() * std) as f32
                    })
                    .collect()
            }
        })
    })
    .expect("initialisation builds every parameter at its own shape");
    let scale = cfg.model.eq_init_scale;
    if scale != 1.0 {
        w.w_e
            .row_mut(cfg.modulus)
            .iter_mut()
            .for_each(|v| *v = (*v as f64 * scale) as f32);
    }
    w
}

/// The dimension whose square root divides a Gaussian parameter's initial std:
/// its fan-in, except where `model.init = "zhong2023"` follows Zhong et al.'s code.
fn init_dim(scheme: InitScheme, name: &str, fan_in: Dim) -> Dim {
    match (scheme, name) {
        (InitScheme::Zhong2023, W_IN) => Dim::Mlp,
        (InitScheme::Zhong2023, W_OUT) => Dim::Model,
        (InitScheme::Zhong2023, W_U) => Dim::Vocab,
        _ => fan_in,
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
        let positional = arch.has_positional_embedding();
        let key = |(a, b): (u32, u32)| match positional {
            false => [a.min(b), a.max(b), p as u32],
            true => [a, v + b, 2 * v + p as u32],
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
            table_rows: match positional {
                false => p + 1,
                true => 3 * (p + 1),
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
        match self.arch.has_positional_embedding() {
            false => self.modulus,
            true => 3 * (self.modulus + 1) - 1,
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
/// per token (straight-through); `mix` mixes the attention with uniform attention
/// (`model.attention_rate`, `model.uniform_attention`). Matrix products use the threads of the current rayon
/// pool; the result does not depend on their number.
pub fn run(
    w: &ModelWeights,
    act_bits: u32,
    eps: f64,
    mix: AttentionMix,
    batch: &Batch,
    want_grads: bool,
    want_logits: bool,
) -> PassResult {
    let dev: Cpu = Default::default();
    let (p, d) = (w.modulus(), w.width());
    let (h, n, r) = (w.heads, batch.rows.len(), batch.table_rows);
    assert_eq!(p, batch.modulus, "batch and model modulus differ");
    assert_eq!(w.arch, batch.arch, "batch and model architecture differ");
    // One leaf per parameter, by TransformerLens name; the gradients come back per leaf.
    let dims = w.dims();
    let leaves: HashMap<&'static str, Leaf> = w
        .params()
        .into_iter()
        .map(|(spec, data)| {
            let (rows, cols) = spec.shape(&dims);
            (spec.name, leaf(&dev, data, rows, cols))
        })
        .collect();
    let w_e = &leaves[W_E];
    let w_pos = leaves.get(W_POS);
    let (w_q, w_k, w_v, w_o) = (&leaves[W_Q], &leaves[W_K], &leaves[W_V], &leaves[W_O]);
    let (w_in, w_out, w_u) = (&leaves[W_IN], &leaves[W_OUT], &leaves[W_U]);
    let (b_in, b_out, gain) = (leaves.get(B_IN), leaves.get(B_OUT), leaves.get(LN_FINAL_W));

    // Input table: one row per (position, token) that can occur.
    let x0tab: T2 = if let Some(w_pos) = w_pos {
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
    let scale = 1.0 / (w.arch.attention_scale_dim(d, h) as f32).sqrt();
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
            b_in.map(|b| b.leaky_trace()),
            w_out.leaky_trace(),
            b_out.map(|b| b.leaky_trace()),
            batch.rows.clone(),
            h,
            mix,
        )
    } else {
        // Quantized activations: the inputs of W_O and W_in must be materialised.
        let z = ops::attend(scores, v, batch.rows.clone(), h, mix); // [n, d]
        let zq = ops::quantize_activations(z, act_bits, eps);
        let attn_out: T2 = zq.matmul(w_o.leaky_trace());
        let x1: T2 = attn_out + broadcast_row(x0_query, n, d);
        ops::mlp_block(
            x1,
            w_in.leaky_trace(),
            b_in.map(|b| b.leaky_trace()),
            w_out.leaky_trace(),
            b_out.map(|b| b.leaky_trace()),
            act_bits,
            eps,
        )
    };
    let (loss, stats) = ops::head(
        x2,
        gain.map(|g| g.leaky_trace()),
        w_u.leaky_trace(),
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
        // `ops::data` copies the buffer (`as_vec` walks it element by element).
        w.map(|spec, _| ops::data(&g.get(&leaves[spec.name])))
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
