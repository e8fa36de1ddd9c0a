//! A straightforward f64 implementation of both architectures (science.md §2): every
//! position of every example computed the textbook way, with a hand-written backward
//! pass. Slow; it exists to check the fast path and for analyses that need exact
//! per-example gradients (e.g. with respect to the input vectors).
//!
//! It works on the weights the forward pass uses (the effective weights of a
//! quantized model); `act_bits > 0` quantizes the inputs of the six projections per
//! token, with a straight-through backward pass, as the fast path does; `rate` is
//! `model.attention_rate`: every query's attention is `rate·softmax + (1 − rate)·uniform`
//! over the positions it may attend to (all three for li2024, positions ≤ its own
//! under nanda2023's causal mask).
//!
//! Its two matrix-vector products are compiled for AVX2 too (same bits: see
//! [`simd_fn`]), which makes the analysis's pass over all p² inputs about twice as fast.

use crate::config::Arch;
use crate::engine::model::kernels::simd_fn;
use crate::engine::model_file::attention_scale;
use crate::engine::weights::{Mat, ModelWeights};

/// A dense row-major f64 matrix.
pub type M64 = Mat<f64>;

simd_fn! {
    /// `x @ W` for one row vector. Rows of zero inputs (ReLU's, mostly) are skipped:
    /// they would add only zeros.
    fn vec_mat(x: &[f64], w: &M64) -> Vec<f64> {
        let mut out = vec![0.0; w.cols];
        for (i, &xi) in x.iter().enumerate() {
            if xi == 0.0 {
                continue;
            }
            for (o, wv) in out.iter_mut().zip(w.row(i)) {
                *o += xi * wv;
            }
        }
        out
    }
}

simd_fn! {
    /// `dy @ W^T` for one row vector.
    fn vec_mat_t(dy: &[f64], w: &M64) -> Vec<f64> {
        (0..w.rows)
            .map(|i| w.row(i).iter().zip(dy).map(|(a, b)| a * b).sum())
            .collect()
    }
}

/// `G += x^T dy` (outer product).
fn add_outer(g: &mut M64, x: &[f64], dy: &[f64]) {
    for (i, xi) in x.iter().enumerate() {
        for (gv, d) in g.row_mut(i).iter_mut().zip(dy) {
            *gv += xi * d;
        }
    }
}

fn add(a: &mut [f64], b: &[f64]) {
    for (x, y) in a.iter_mut().zip(b) {
        *x += y;
    }
}

fn act_quant(x: &[f64], bits: u32, eps: f64) -> Vec<f64> {
    if bits == 0 {
        return x.to_vec();
    }
    let qb = (1u64 << (bits - 1)) as f64;
    let g = x.iter().fold(0.0f64, |a, v| a.max(v.abs())).max(eps);
    x.iter()
        .map(|v| (v * qb / g).round_ties_even().clamp(-qb, qb - 1.0) * g / qb)
        .collect()
}

/// All parameters in f64, same layout as [`ModelWeights`]; also used for gradients.
pub type Params64 = ModelWeights<f64>;

impl ModelWeights<f64> {
    pub fn from_weights(w: &ModelWeights) -> Params64 {
        w.map(|_, d| d.iter().map(|&x| x as f64).collect())
    }
}

/// Everything the forward pass of one example computes, at all three positions.
#[derive(Clone, Debug)]
pub struct Trace {
    pub x0: [Vec<f64>; 3],
    xq0: [Vec<f64>; 3],
    q: [Vec<f64>; 3],
    k: [Vec<f64>; 3],
    v: [Vec<f64>; 3],
    /// attention weights [head][query][key] (rate-mixed)
    pub pattern: Vec<[[f64; 3]; 3]>,
    /// the softmax part of `pattern`, [head][query][key]
    softmax: Vec<[[f64; 3]; 3]>,
    rate: f64,
    zq: [Vec<f64>; 3],
    pub x1: [Vec<f64>; 3],
    x1q: [Vec<f64>; 3],
    /// MLP pre-activations.
    pub hidden: [Vec<f64>; 3],
    aq: [Vec<f64>; 3],
    pub x2: [Vec<f64>; 3],
    xn: [Vec<f64>; 3],
    /// logits at every position; the model's output is position 2.
    pub logits: [Vec<f64>; 3],
}

/// Forward pass for the input `[a, b, =]`, with input vectors `x0` given explicitly
/// (the embeddings plus positional embeddings, see [`input_vectors`]).
pub fn forward_from_inputs(
    w: &Params64,
    x0: [Vec<f64>; 3],
    act_bits: u32,
    eps: f64,
    rate: f64,
) -> Trace {
    let slots = x0.map(|x| Slot::new(w, x, act_bits, eps));
    trace(w, slots, act_bits, eps, rate, 0)
}

/// What one position brings to attention: its input vector, that vector as the
/// projections see it (quantized when `act_bits > 0`), and its query, key and value.
/// It depends only on the position and its token.
#[derive(Clone)]
struct Slot {
    x0: Vec<f64>,
    xq0: Vec<f64>,
    q: Vec<f64>,
    k: Vec<f64>,
    v: Vec<f64>,
}

impl Slot {
    fn new(w: &Params64, x0: Vec<f64>, act_bits: u32, eps: f64) -> Slot {
        let xq0 = act_quant(&x0, act_bits, eps);
        Slot {
            q: vec_mat(&xq0, &w.w_q),
            k: vec_mat(&xq0, &w.w_k),
            v: vec_mat(&xq0, &w.w_v),
            x0,
            xq0,
        }
    }
}

/// The forward pass from the three positions' slots, computing positions `first..3`
/// past attention's inputs; the other positions' later vectors are left empty.
/// `first = 2` gives the read-out position alone ([`ReadOut`]).
fn trace(
    w: &Params64,
    slots: [Slot; 3],
    act_bits: u32,
    eps: f64,
    rate: f64,
    first: usize,
) -> Trace {
    let d = w.w_e.cols;
    let h = w.heads;
    let dh = d / h;
    let nanda = w.arch == Arch::Nanda2023;
    let scale = attention_scale(w.arch, d, h);
    let each = |f: &dyn Fn(usize) -> Vec<f64>| {
        [0, 1, 2].map(|i| if i < first { Vec::new() } else { f(i) })
    };
    let [s0, s1, s2] = slots;
    let x0 = [s0.x0, s1.x0, s2.x0];
    let xq0 = [s0.xq0, s1.xq0, s2.xq0];
    let q = [s0.q, s1.q, s2.q];
    let k = [s0.k, s1.k, s2.k];
    let v = [s0.v, s1.v, s2.v];
    let mut pattern = vec![[[0.0; 3]; 3]; h];
    let mut softmax = pattern.clone();
    let mut z = [vec![0.0; d], vec![0.0; d], vec![0.0; d]];
    for (head, (pat, sm)) in pattern.iter_mut().zip(&mut softmax).enumerate() {
        let cols = head * dh..(head + 1) * dh;
        for i in first..3 {
            let mut s = [f64::NEG_INFINITY; 3];
            for (j, sj) in s.iter_mut().enumerate() {
                if nanda && j > i {
                    continue; // causal mask
                }
                *sj = cols.clone().map(|c| q[i][c] * k[j][c]).sum::<f64>() * scale;
            }
            let mx = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e = s.map(|x| (x - mx).exp());
            let tot: f64 = e.iter().sum();
            let visible = if nanda { i + 1 } else { 3 };
            for j in 0..3 {
                sm[i][j] = e[j] / tot;
                let uniform = if j < visible {
                    1.0 / visible as f64
                } else {
                    0.0
                };
                pat[i][j] = rate * sm[i][j] + (1.0 - rate) * uniform;
                for c in cols.clone() {
                    z[i][c] += pat[i][j] * v[j][c];
                }
            }
        }
    }
    let zq = each(&|i| act_quant(&z[i], act_bits, eps));
    let x1 = each(&|i| {
        let mut x = x0[i].clone();
        add(&mut x, &vec_mat(&zq[i], &w.w_o));
        x
    });
    let x1q = each(&|i| act_quant(&x1[i], act_bits, eps));
    let hidden = each(&|i| {
        let mut hv = vec_mat(&x1q[i], &w.w_in);
        if let Some(b) = &w.b_in {
            add(&mut hv, b);
        }
        hv
    });
    let aq = each(&|i| {
        let a: Vec<f64> = hidden[i].iter().map(|x| x.max(0.0)).collect();
        act_quant(&a, act_bits, eps)
    });
    let x2 = each(&|i| {
        let mut x = x1[i].clone();
        add(&mut x, &vec_mat(&aq[i], &w.w_out));
        if let Some(b) = &w.b_out {
            add(&mut x, b);
        }
        x
    });
    let xn = each(&|i| match &w.ln_final_w {
        Some(g) => {
            let norm = x2[i].iter().map(|x| x * x).sum::<f64>().sqrt();
            let r = (d as f64).sqrt() / norm;
            x2[i].iter().zip(g).map(|(x, g)| x * r * g).collect()
        }
        None => x2[i].clone(),
    });
    let logits = each(&|i| vec_mat(&xn[i], &w.w_u));
    Trace {
        x0,
        xq0,
        q,
        k,
        v,
        pattern,
        softmax,
        rate,
        zq,
        x1,
        x1q,
        hidden,
        aq,
        x2,
        xn,
        logits,
    }
}

/// The input vectors of `[a, b, =]`: token embeddings plus positional embeddings.
pub fn input_vectors(w: &Params64, a: usize, b: usize) -> [Vec<f64>; 3] {
    let p = w.w_u.cols;
    [(0, a), (1, b), (2, p)].map(|(pos, tok)| input_vector(w, pos, tok))
}

/// The input vector of token `tok` at position `pos`.
fn input_vector(w: &Params64, pos: usize, tok: usize) -> Vec<f64> {
    let mut x = w.w_e.row(tok).to_vec();
    if let Some(wp) = &w.w_pos {
        add(&mut x, wp.row(pos));
    }
    x
}

/// Forward pass for the input `[a, b, =]`.
pub fn forward(w: &Params64, a: usize, b: usize, act_bits: u32, eps: f64, rate: f64) -> Trace {
    forward_from_inputs(w, input_vectors(w, a, b), act_bits, eps, rate)
}

/// [`forward`] at the read-out position only, for passes over many inputs: the same
/// numbers at position 2, with every (position, token) slot computed once up front
/// instead of once per input. Positions 0 and 1 keep only their slots, so a trace is
/// for reading position 2 and for [`backward`] from it.
pub struct ReadOut<'a> {
    w: &'a Params64,
    act_bits: u32,
    eps: f64,
    rate: f64,
    /// `slots[pos][token]`.
    slots: [Vec<Slot>; 3],
}

impl<'a> ReadOut<'a> {
    pub fn new(w: &'a Params64, act_bits: u32, eps: f64, rate: f64) -> ReadOut<'a> {
        let tokens = w.w_e.rows;
        let slots = [0, 1, 2].map(|pos| {
            (0..tokens)
                .map(|tok| Slot::new(w, input_vector(w, pos, tok), act_bits, eps))
                .collect()
        });
        ReadOut {
            w,
            act_bits,
            eps,
            rate,
            slots,
        }
    }

    /// The weights this pass reads.
    pub fn weights(&self) -> &'a Params64 {
        self.w
    }

    /// The trace of `[a, b, =]` at position 2.
    pub fn forward(&self, a: usize, b: usize) -> Trace {
        let p = self.w.w_u.cols;
        let slots = [(0, a), (1, b), (2, p)].map(|(pos, tok)| self.slots[pos][tok].clone());
        trace(self.w, slots, self.act_bits, self.eps, self.rate, 2)
    }
}

/// Backward pass of one example: given `dlogits` at every position, add the parameter
/// gradients into `grads` and return the gradients with respect to the input vectors
/// `x0` (straight-through for quantized activations). Positions whose `dlogits` are
/// all zero add nothing and are skipped, so a [`ReadOut`] trace serves when only
/// position 2's are non-zero.
pub fn backward(
    w: &Params64,
    t: &Trace,
    dlogits: &[Vec<f64>; 3],
    grads: &mut Params64,
    a: usize,
    b: usize,
) -> [Vec<f64>; 3] {
    let d = w.w_e.cols;
    let h = w.heads;
    let dh = d / h;
    let p = w.w_u.cols;
    let scale = attention_scale(w.arch, d, h);
    let mut dx0 = [vec![0.0; d], vec![0.0; d], vec![0.0; d]];
    let mut dq = [vec![0.0; d], vec![0.0; d], vec![0.0; d]];
    let mut dk = dq.clone();
    let mut dv = dq.clone();
    for i in 0..3 {
        if dlogits[i].iter().all(|&g| g == 0.0) {
            continue;
        }
        add_outer(&mut grads.w_u, &t.xn[i], &dlogits[i]);
        let dxn = vec_mat_t(&dlogits[i], &w.w_u);
        let dx2 = match &w.ln_final_w {
            Some(g) => {
                let x = &t.x2[i];
                let nn = x.iter().map(|v| v * v).sum::<f64>();
                let r = (d as f64).sqrt() / nn.sqrt();
                let dg = grads.ln_final_w.as_mut().unwrap();
                let dy: Vec<f64> = (0..d).map(|j| dxn[j] * g[j]).collect();
                for j in 0..d {
                    dg[j] += dxn[j] * x[j] * r;
                }
                let dot: f64 = dy.iter().zip(x).map(|(a, b)| a * b).sum();
                (0..d)
                    .map(|j| r * (dy[j] - x[j] * dot / nn))
                    .collect::<Vec<_>>()
            }
            None => dxn,
        };
        // x2 = x1 + aq W_out + b_out
        add_outer(&mut grads.w_out, &t.aq[i], &dx2);
        if let Some(db) = &mut grads.b_out {
            add(db, &dx2);
        }
        let da = vec_mat_t(&dx2, &w.w_out);
        let dhid: Vec<f64> = da
            .iter()
            .zip(&t.hidden[i])
            .map(|(g, hv)| if *hv > 0.0 { *g } else { 0.0 })
            .collect();
        if let Some(db) = &mut grads.b_in {
            add(db, &dhid);
        }
        add_outer(&mut grads.w_in, &t.x1q[i], &dhid);
        let mut dx1 = dx2.clone();
        add(&mut dx1, &vec_mat_t(&dhid, &w.w_in));
        // x1 = x0 + zq W_O
        add(&mut dx0[i], &dx1);
        add_outer(&mut grads.w_o, &t.zq[i], &dx1);
        let dz = vec_mat_t(&dx1, &w.w_o);
        for head in 0..h {
            let cols = head * dh..(head + 1) * dh;
            let pat = &t.pattern[head][i];
            let sm = &t.softmax[head][i];
            let mut dpat = [0.0; 3];
            for j in 0..3 {
                dpat[j] = cols.clone().map(|c| dz[c] * t.v[j][c]).sum();
                for c in cols.clone() {
                    dv[j][c] += pat[j] * dz[c];
                }
            }
            // d pat_j / d s_l = rate · sm_j (δ_jl − sm_l).
            let dot: f64 = (0..3).map(|j| sm[j] * dpat[j]).sum();
            for j in 0..3 {
                let ds = t.rate * sm[j] * (dpat[j] - dot) * scale;
                for c in cols.clone() {
                    dq[i][c] += ds * t.k[j][c];
                    dk[j][c] += ds * t.q[i][c];
                }
            }
        }
    }
    for i in 0..3 {
        add_outer(&mut grads.w_q, &t.xq0[i], &dq[i]);
        add_outer(&mut grads.w_k, &t.xq0[i], &dk[i]);
        add_outer(&mut grads.w_v, &t.xq0[i], &dv[i]);
        add(&mut dx0[i], &vec_mat_t(&dq[i], &w.w_q));
        add(&mut dx0[i], &vec_mat_t(&dk[i], &w.w_k));
        add(&mut dx0[i], &vec_mat_t(&dv[i], &w.w_v));
    }
    for (i, tok) in [a, b, p].into_iter().enumerate() {
        add(grads.w_e.row_mut(tok), &dx0[i]);
        if let Some(gp) = &mut grads.w_pos {
            add(gp.row_mut(i), &dx0[i]);
        }
    }
    dx0
}

/// Mean cross-entropy at position 2 over `pairs`, the logits [n][p], and (when asked)
/// the parameter gradients.
pub fn loss_and_grads(
    w: &Params64,
    pairs: &[(u32, u32)],
    act_bits: u32,
    eps: f64,
    rate: f64,
    want_grads: bool,
) -> (f64, Vec<Vec<f64>>, Option<Params64>) {
    let p = w.w_u.cols;
    let n = pairs.len() as f64;
    let mut grads = want_grads.then(|| w.zeros_like());
    let mut loss = 0.0;
    let mut all_logits = Vec::with_capacity(pairs.len());
    for &(a, b) in pairs {
        let (a, b) = (a as usize, b as usize);
        let t = forward(w, a, b, act_bits, eps, rate);
        let z = &t.logits[2];
        let y = (a + b) % p;
        let mx = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = z.iter().map(|v| (v - mx).exp()).sum();
        loss += mx + sum.ln() - z[y];
        if let Some(g) = &mut grads {
            let mut dz: Vec<f64> = z.iter().map(|v| (v - mx).exp() / sum / n).collect();
            dz[y] -= 1.0 / n;
            let dl = [vec![0.0; p], vec![0.0; p], dz];
            backward(w, &t, &dl, g, a, b);
        }
        all_logits.push(z.clone());
    }
    (loss / n, all_logits, grads)
}
