//! A straightforward f64 implementation of both architectures (science.md §2): every
//! position of every example computed the textbook way, with a hand-written backward
//! pass. Slow; it exists to check the fast path and for analyses that need exact
//! per-example gradients (e.g. with respect to the input vectors).
//!
//! It works on the weights the forward pass uses (the effective weights of a
//! quantized model); `act_bits > 0` quantizes the inputs of the six projections per
//! token, with a straight-through backward pass, as the fast path does; `mix` is
//! `model.attention_rate` and `model.uniform_attention`: every query's attention is
//! `rate·softmax + uniform part` ([`AttentionMix`]) over the positions it may attend
//! to (all three for li2024, positions ≤ its own under nanda2023's causal mask).
//!
//! Everything after attention runs on a batch of rows (each row one position of one
//! input) through [`rows_mat`], whose every output is the same sum in the same order
//! whichever rows share the batch: one input alone and all p² inputs at once
//! ([`ReadOut::position_two`]) give the same bits. Its products are compiled for AVX2
//! too (same bits: see [`simd_fn`]).

use crate::config::AttentionMix;
use crate::engine::model_file::attention_scale;
use crate::engine::weights::{Mat, ModelWeights};

mod kernels;
use kernels::{act_quant, act_quant_rows, add, add_outer, rows_mat, vec_mat, vec_mat_t};

/// A dense row-major f64 matrix.
pub type M64 = Mat<f64>;

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
    mix: AttentionMix,
) -> Trace {
    let slots = x0.map(|x| Slot::new(w, x, act_bits, eps));
    trace(w, slots, act_bits, eps, mix)
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

/// Attention of query position `i` over the positions it may see, given the three
/// positions' queries, keys and values: each head's rate-mixed weights and softmax,
/// and the attention output `z` (`d` values, before `W_O`).
fn attend(
    w: &Params64,
    qkv: [(&[f64], &[f64], &[f64]); 3],
    i: usize,
    mix: AttentionMix,
) -> Attended {
    let d = w.w_e.cols;
    let h = w.heads;
    let dh = d / h;
    let causal = w.arch.is_causal();
    let scale = attention_scale(w.arch, d, h);
    let q = qkv[i].0;
    let mut out = Attended {
        pattern: vec![[0.0; 3]; h],
        softmax: vec![[0.0; 3]; h],
        z: vec![0.0; d],
    };
    for (head, (pat, sm)) in out.pattern.iter_mut().zip(&mut out.softmax).enumerate() {
        let cols = head * dh..(head + 1) * dh;
        let mut s = [f64::NEG_INFINITY; 3];
        for (j, sj) in s.iter_mut().enumerate() {
            if causal && j > i {
                continue; // causal mask
            }
            *sj = cols.clone().map(|c| q[c] * qkv[j].1[c]).sum::<f64>() * scale;
        }
        let mx = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let e = s.map(|x| (x - mx).exp());
        let tot: f64 = e.iter().sum();
        let visible = if causal { i + 1 } else { 3 };
        for j in 0..3 {
            sm[j] = e[j] / tot;
            let uniform = if j < visible {
                mix.uniform_weight(visible)
            } else {
                0.0
            };
            pat[j] = mix.rate * sm[j] + uniform;
            for c in cols.clone() {
                out.z[c] += pat[j] * qkv[j].2[c];
            }
        }
    }
    out
}

/// What [`attend`] gives for one query position: per head, the rate-mixed weights
/// and their softmax part over the three key positions; and the output `z`.
struct Attended {
    pattern: Vec<[f64; 3]>,
    softmax: Vec<[f64; 3]>,
    z: Vec<f64>,
}

/// Everything after attention for a batch of rows, each row one position of one
/// input; row-major, one row per input row. Every product is [`rows_mat`], so a row's
/// numbers do not depend on the rows batched with it.
pub struct Rows {
    /// How many rows.
    pub n: usize,
    /// Attention output as `W_O` sees it (quantized when `act_bits > 0`).
    zq: Vec<f64>,
    /// Residual stream after attention.
    x1: Vec<f64>,
    x1q: Vec<f64>,
    /// MLP pre-activations (`d_mlp` per row).
    pub hidden: Vec<f64>,
    aq: Vec<f64>,
    /// Residual stream after the MLP.
    pub x2: Vec<f64>,
    xn: Vec<f64>,
    /// Logits (`p` per row).
    pub logits: Vec<f64>,
}

/// One row of [`Rows`], each stage as its own vector (all empty for a position a
/// read-out trace does not compute).
#[derive(Default)]
struct Row {
    zq: Vec<f64>,
    x1: Vec<f64>,
    x1q: Vec<f64>,
    hidden: Vec<f64>,
    aq: Vec<f64>,
    x2: Vec<f64>,
    xn: Vec<f64>,
    logits: Vec<f64>,
}

impl Rows {
    /// Row `r`.
    fn row(&self, r: usize) -> Row {
        let cut = |v: &[f64]| {
            let dim = v.len() / self.n;
            v[r * dim..(r + 1) * dim].to_vec()
        };
        Row {
            zq: cut(&self.zq),
            x1: cut(&self.x1),
            x1q: cut(&self.x1q),
            hidden: cut(&self.hidden),
            aq: cut(&self.aq),
            x2: cut(&self.x2),
            xn: cut(&self.xn),
            logits: cut(&self.logits),
        }
    }
}

/// How far past attention a batch is computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Depth {
    /// Up to the MLP's pre-activations (`hidden`); the later stages stay empty.
    Hidden,
    /// Through the logits.
    Logits,
}

/// [`Rows`] from each row's input vector `x0` and attention output `z` (both `d` per
/// row), computed to `depth`.
fn after_attention(
    w: &Params64,
    x0: &[f64],
    z: &[f64],
    act_bits: u32,
    eps: f64,
    depth: Depth,
) -> Rows {
    let d = w.w_e.cols;
    let d_mlp = w.w_in.cols;
    let zq = act_quant_rows(z, d, act_bits, eps);
    let mut x1 = rows_mat(&zq, &w.w_o);
    // x0 + zq W_O (addition commutes exactly, so the order of the operands is free).
    for (o, x) in x1.iter_mut().zip(x0) {
        *o += x;
    }
    let x1q = act_quant_rows(&x1, d, act_bits, eps);
    let mut hidden = rows_mat(&x1q, &w.w_in);
    if let Some(b) = &w.b_in {
        hidden.chunks_mut(d_mlp).for_each(|r| add(r, b));
    }
    let mut rows = Rows {
        n: x0.len() / d,
        zq,
        x1,
        x1q,
        hidden,
        aq: Vec::new(),
        x2: Vec::new(),
        xn: Vec::new(),
        logits: Vec::new(),
    };
    if depth == Depth::Hidden {
        return rows;
    }
    let relu: Vec<f64> = rows.hidden.iter().map(|x| x.max(0.0)).collect();
    rows.aq = act_quant_rows(&relu, d_mlp, act_bits, eps);
    let mut x2 = rows_mat(&rows.aq, &w.w_out);
    for (o, x) in x2.iter_mut().zip(&rows.x1) {
        *o += x;
    }
    if let Some(b) = &w.b_out {
        x2.chunks_mut(d).for_each(|r| add(r, b));
    }
    rows.xn = match &w.ln_final_w {
        Some(g) => x2
            .chunks(d)
            .flat_map(|x| {
                let norm = x.iter().map(|v| v * v).sum::<f64>().sqrt();
                let r = (d as f64).sqrt() / norm;
                x.iter().zip(g).map(move |(v, g)| v * r * g)
            })
            .collect(),
        None => x2.clone(),
    };
    rows.x2 = x2;
    rows.logits = rows_mat(&rows.xn, &w.w_u);
    rows
}

/// The forward pass at all three positions from their slots.
fn trace(w: &Params64, slots: [Slot; 3], act_bits: u32, eps: f64, mix: AttentionMix) -> Trace {
    let h = w.heads;
    let [s0, s1, s2] = slots;
    let qkv = [&s0, &s1, &s2].map(|s| (&s.q[..], &s.k[..], &s.v[..]));
    let mut pattern = vec![[[0.0; 3]; 3]; h];
    let mut softmax = pattern.clone();
    let (mut x0_rows, mut z_rows) = (Vec::new(), Vec::new());
    for (i, s) in [&s0, &s1, &s2].into_iter().enumerate() {
        let att = attend(w, qkv, i, mix);
        for head in 0..h {
            pattern[head][i] = att.pattern[head];
            softmax[head][i] = att.softmax[head];
        }
        x0_rows.extend_from_slice(&s.x0);
        z_rows.extend(att.z);
    }
    let rows = after_attention(w, &x0_rows, &z_rows, act_bits, eps, Depth::Logits);
    // Row i of the batch is position i.
    let after = [0, 1, 2].map(|i| rows.row(i));
    Trace::assemble([s0, s1, s2], pattern, softmax, mix.rate, after)
}

impl Trace {
    /// A trace from each position's slot, the attention weights [head][query][key]
    /// and each position's vectors after attention.
    fn assemble(
        slots: [Slot; 3],
        pattern: Vec<[[f64; 3]; 3]>,
        softmax: Vec<[[f64; 3]; 3]>,
        rate: f64,
        after: [Row; 3],
    ) -> Trace {
        let [s0, s1, s2] = slots;
        let [r0, r1, r2] = after;
        Trace {
            x0: [s0.x0, s1.x0, s2.x0],
            xq0: [s0.xq0, s1.xq0, s2.xq0],
            q: [s0.q, s1.q, s2.q],
            k: [s0.k, s1.k, s2.k],
            v: [s0.v, s1.v, s2.v],
            pattern,
            softmax,
            rate,
            zq: [r0.zq, r1.zq, r2.zq],
            x1: [r0.x1, r1.x1, r2.x1],
            x1q: [r0.x1q, r1.x1q, r2.x1q],
            hidden: [r0.hidden, r1.hidden, r2.hidden],
            aq: [r0.aq, r1.aq, r2.aq],
            x2: [r0.x2, r1.x2, r2.x2],
            xn: [r0.xn, r1.xn, r2.xn],
            logits: [r0.logits, r1.logits, r2.logits],
        }
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
pub fn forward(
    w: &Params64,
    a: usize,
    b: usize,
    act_bits: u32,
    eps: f64,
    mix: AttentionMix,
) -> Trace {
    forward_from_inputs(w, input_vectors(w, a, b), act_bits, eps, mix)
}

/// [`forward`] at the read-out position only, for passes over many inputs: the same
/// numbers at position 2, with every (position, token) slot computed once up front
/// instead of once per input. Positions 0 and 1 keep only their slots, so a trace is
/// for reading position 2 and for [`backward`] from it.
pub struct ReadOut<'a> {
    w: &'a Params64,
    act_bits: u32,
    eps: f64,
    mix: AttentionMix,
    /// `slots[pos][token]`.
    slots: [Vec<Slot>; 3],
}

impl<'a> ReadOut<'a> {
    pub fn new(w: &'a Params64, act_bits: u32, eps: f64, mix: AttentionMix) -> ReadOut<'a> {
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
            mix,
            slots,
        }
    }

    /// The weights this pass reads.
    pub fn weights(&self) -> &'a Params64 {
        self.w
    }

    /// The slots of `[a, b, =]`.
    fn slots_of(&self, a: usize, b: usize) -> [&Slot; 3] {
        let p = self.w.w_u.cols;
        [(0, a), (1, b), (2, p)].map(|(pos, tok)| &self.slots[pos][tok])
    }

    /// The trace of `[a, b, =]` at position 2: [`ReadOut::traces`] of one input.
    pub fn forward(&self, a: usize, b: usize) -> Trace {
        self.traces(&[(a, b)]).pop().expect("one trace per input")
    }

    /// Position 2 of the inputs `[a, b, =]` for every `(a, b)` in `pairs`, as one
    /// batch computed to `depth`: row `r` of `rows` and `pattern[r·heads + h]` (head
    /// `h`'s weights on positions 0, 1, 2) do not depend on the other inputs of the
    /// batch, nor on the depth.
    pub fn position_two(&self, pairs: &[(usize, usize)], depth: Depth) -> PositionTwo {
        self.position_two_routed(pairs, depth, EqRoutes::ALL)
    }

    /// [`ReadOut::position_two`] with the routes of position 2's own input `x_=` not
    /// in `routes` cut (that input replaced by zero there only): a path ablation. The
    /// query and the keys are never cut, so the attention pattern is the model's.
    pub fn position_two_routed(
        &self,
        pairs: &[(usize, usize)],
        depth: Depth,
        routes: EqRoutes,
    ) -> PositionTwo {
        let h = self.w.heads;
        let d = self.w.w_e.cols;
        let zero = vec![0.0; d];
        let mut pattern = Vec::with_capacity(pairs.len() * h);
        let mut softmax = Vec::with_capacity(pairs.len() * h);
        let (mut x0, mut z) = (Vec::new(), Vec::new());
        for &(a, b) in pairs {
            let slots = self.slots_of(a, b);
            let mut qkv = slots.map(|s| (&s.q[..], &s.k[..], &s.v[..]));
            if !routes.value {
                qkv[2].2 = &zero;
            }
            let att = attend(self.w, qkv, 2, self.mix);
            pattern.extend(att.pattern);
            softmax.extend(att.softmax);
            x0.extend_from_slice(if routes.residual { &slots[2].x0 } else { &zero });
            z.extend(att.z);
        }
        PositionTwo {
            pattern,
            softmax,
            rows: after_attention(self.w, &x0, &z, self.act_bits, self.eps, depth),
        }
    }

    /// The traces at position 2 of the inputs in `pairs`, computed as one batch
    /// ([`ReadOut::position_two`] to the logits), for [`backward`] from position 2.
    pub fn traces(&self, pairs: &[(usize, usize)]) -> Vec<Trace> {
        let h = self.w.heads;
        let two = self.position_two(pairs, Depth::Logits);
        pairs
            .iter()
            .enumerate()
            .map(|(r, &(a, b))| {
                let slots = self.slots_of(a, b).map(Slot::clone);
                let mut pattern = vec![[[0.0; 3]; 3]; h];
                let mut softmax = pattern.clone();
                for head in 0..h {
                    pattern[head][2] = two.pattern[r * h + head];
                    softmax[head][2] = two.softmax[r * h + head];
                }
                let after = [Row::default(), Row::default(), two.rows.row(r)];
                Trace::assemble(slots, pattern, softmax, self.mix.rate, after)
            })
            .collect()
    }
}

/// The routes by which position 2's own input `x_=` (the `=` embedding, plus
/// `W_pos[2]` in nanda2023) reaches the read-out besides its query: the residual
/// stream (the MLP's input and the final sum) and its own value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EqRoutes {
    pub residual: bool,
    pub value: bool,
}

impl EqRoutes {
    /// The model as it is.
    pub const ALL: EqRoutes = EqRoutes {
        residual: true,
        value: true,
    };
}

/// Position 2 of a batch of inputs ([`ReadOut::position_two`]).
pub struct PositionTwo {
    /// Per input and head, the attention weights on positions 0, 1, 2.
    pub pattern: Vec<[f64; 3]>,
    /// Their softmax part (see [`Trace`]).
    softmax: Vec<[f64; 3]>,
    /// Everything after attention, one row per input.
    pub rows: Rows,
}

/// Backward pass of one example: given `dlogits` at every position, add the parameter
/// gradients into `grads` (when given) and return the gradients with respect to the
/// input vectors `x0` (straight-through for quantized activations). Positions whose `dlogits` are
/// all zero add nothing and are skipped, so a [`ReadOut`] trace serves when only
/// position 2's are non-zero.
pub fn backward(
    w: &Params64,
    t: &Trace,
    dlogits: &[Vec<f64>; 3],
    mut grads: Option<&mut Params64>,
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
        if let Some(g) = grads.as_deref_mut() {
            add_outer(&mut g.w_u, &t.xn[i], &dlogits[i]);
        }
        let dxn = vec_mat_t(&dlogits[i], &w.w_u);
        let dx2 = match &w.ln_final_w {
            Some(g) => {
                let x = &t.x2[i];
                let nn = x.iter().map(|v| v * v).sum::<f64>();
                let r = (d as f64).sqrt() / nn.sqrt();
                let dy: Vec<f64> = (0..d).map(|j| dxn[j] * g[j]).collect();
                if let Some(dg) = grads.as_deref_mut().and_then(|g| g.ln_final_w.as_mut()) {
                    for j in 0..d {
                        dg[j] += dxn[j] * x[j] * r;
                    }
                }
                let dot: f64 = dy.iter().zip(x).map(|(a, b)| a * b).sum();
                (0..d)
                    .map(|j| r * (dy[j] - x[j] * dot / nn))
                    .collect::<Vec<_>>()
            }
            None => dxn,
        };
        // x2 = x1 + aq W_out + b_out
        if let Some(g) = grads.as_deref_mut() {
            add_outer(&mut g.w_out, &t.aq[i], &dx2);
            if let Some(db) = &mut g.b_out {
                add(db, &dx2);
            }
        }
        let da = vec_mat_t(&dx2, &w.w_out);
        let dhid: Vec<f64> = da
            .iter()
            .zip(&t.hidden[i])
            .map(|(g, hv)| if *hv > 0.0 { *g } else { 0.0 })
            .collect();
        if let Some(g) = grads.as_deref_mut() {
            if let Some(db) = &mut g.b_in {
                add(db, &dhid);
            }
            add_outer(&mut g.w_in, &t.x1q[i], &dhid);
        }
        let mut dx1 = dx2.clone();
        add(&mut dx1, &vec_mat_t(&dhid, &w.w_in));
        // x1 = x0 + zq W_O
        add(&mut dx0[i], &dx1);
        if let Some(g) = grads.as_deref_mut() {
            add_outer(&mut g.w_o, &t.zq[i], &dx1);
        }
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
        if let Some(g) = grads.as_deref_mut() {
            add_outer(&mut g.w_q, &t.xq0[i], &dq[i]);
            add_outer(&mut g.w_k, &t.xq0[i], &dk[i]);
            add_outer(&mut g.w_v, &t.xq0[i], &dv[i]);
        }
        // An all-zero gradient (a position no query reads, or a query whose logits
        // have none) would add only ±0 to dx0, which starts at +0.
        for (dy, wm) in [(&dq[i], &w.w_q), (&dk[i], &w.w_k), (&dv[i], &w.w_v)] {
            if dy.iter().any(|&g| g != 0.0) {
                add(&mut dx0[i], &vec_mat_t(dy, wm));
            }
        }
    }
    for (i, tok) in [a, b, p].into_iter().enumerate() {
        if let Some(g) = grads.as_deref_mut() {
            add(g.w_e.row_mut(tok), &dx0[i]);
            if let Some(gp) = &mut g.w_pos {
                add(gp.row_mut(i), &dx0[i]);
            }
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
    mix: AttentionMix,
    want_grads: bool,
) -> (f64, Vec<Vec<f64>>, Option<Params64>) {
    let p = w.w_u.cols;
    let n = pairs.len() as f64;
    let mut grads = want_grads.then(|| w.zeros_like());
    let mut loss = 0.0;
    let mut all_logits = Vec::with_capacity(pairs.len());
    for &(a, b) in pairs {
        let (a, b) = (a as usize, b as usize);
        let t = forward(w, a, b, act_bits, eps, mix);
        let z = &t.logits[2];
        let y = (a + b) % p;
        let mx = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = z.iter().map(|v| (v - mx).exp()).sum();
        loss += mx + sum.ln() - z[y];
        if let Some(g) = &mut grads {
            let mut dz: Vec<f64> = z.iter().map(|v| (v - mx).exp() / sum / n).collect();
            dz[y] -= 1.0 / n;
            let dl = [vec![0.0; p], vec![0.0; p], dz];
            backward(w, &t, &dl, Some(g), a, b);
        }
        all_logits.push(z.clone());
    }
    (loss / n, all_logits, grads)
}
