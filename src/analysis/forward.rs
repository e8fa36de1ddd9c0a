//! The model's forward pass over all p² inputs, written for analysis (no training
//! engine needed), plus the gradient of one logit with respect to the input vectors
//! of one example (for gradient symmetricity) and a plain position-by-position
//! reference implementation that both are tested against.
//!
//! Why it is fast (science.md §2): only position 2 (`=`) is read out, so the query,
//! attention output, MLP, norm and unembedding are needed at position 2 only. That
//! query is the same for every input (the `=` token, plus its positional embedding
//! for nanda2023), and keys and values at positions 0 and 1 depend on one token
//! each, so they are computed per distinct token and gathered. The causal mask of
//! nanda2023 hides nothing from position 2, the last one.
//!
//! `rate` is the cell's `model.attention_rate`: attention is `rate·softmax + (1 −
//! rate)·uniform` over the positions a query may attend to.

use crate::config::Arch;
use crate::engine::weights::{Mat, ModelWeights};

/// Activations of the whole input grid, row `a·p + b` for input `[a, b, =]`.
pub struct ForwardPass {
    pub p: usize,
    pub d_mlp: usize,
    /// MLP neuron activations (after ReLU) at position 2, `p² × d_mlp`.
    pub neurons: Vec<f32>,
    /// Logits at position 2, `p² × p`.
    pub logits: Vec<f32>,
    /// With a final RMSNorm: the correct class's logit with the norm's division by
    /// ‖x2‖ left out, `(x2 ⊙ g)·W_U[:, (a+b) mod p]`, per input (science.md §6).
    pub pre_norm_correct_logit: Option<Vec<f64>>,
}

/// Score scale of the attention: 1/sqrt(d_model) for li2024, 1/sqrt(d_head) for nanda2023.
pub fn attention_scale(w: &ModelWeights) -> f64 {
    match w.arch {
        Arch::Li2024 => 1.0 / (w.width() as f64).sqrt(),
        Arch::Nanda2023 => 1.0 / (w.d_head() as f64).sqrt(),
    }
}

/// The residual-stream input at `pos` holding `token`: its embedding plus, for
/// nanda2023, the positional embedding.
pub fn input_vector(w: &ModelWeights, pos: usize, token: usize) -> Vec<f64> {
    let mut x: Vec<f64> = w.w_e.row(token).iter().map(|&v| v as f64).collect();
    if let Some(pe) = &w.w_pos {
        for (xi, &v) in x.iter_mut().zip(pe.row(pos)) {
            *xi += v as f64;
        }
    }
    x
}

/// `x @ M` for a row vector in f64.
fn vec_mat(x: &[f64], m: &Mat) -> Vec<f64> {
    let mut out = vec![0.0; m.cols];
    for (r, &xr) in x.iter().enumerate() {
        if xr != 0.0 {
            for (o, &v) in out.iter_mut().zip(m.row(r)) {
                *o += xr * v as f64;
            }
        }
    }
    out
}

/// `M @ y` (i.e. `y @ Mᵀ`) for a vector of length `m.cols`, in f64.
fn mat_vec(m: &Mat, y: &[f64]) -> Vec<f64> {
    (0..m.rows)
        .map(|r| m.row(r).iter().zip(y).map(|(&a, &b)| a as f64 * b).sum())
        .collect()
}

/// Row-major `out = a (m × k) @ b (k × n)` in f32, single-threaded (deterministic).
pub(crate) fn matmul(m: usize, k: usize, n: usize, a: &[f32], b: &[f32], out: &mut [f32]) {
    assert!(a.len() == m * k && b.len() == k * n && out.len() == m * n);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        out.fill(0.0);
        return;
    }
    // SAFETY: the asserts above bound every index gemm touches; strides describe
    // contiguous row-major matrices of exactly those sizes.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            1,
            k as isize,
            b.as_ptr(),
            1,
            n as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// Attention weights from the scores of the positions a query may attend to:
/// `rate·softmax(s) + (1 − rate)/len`, and the softmax itself (for backward passes).
pub fn rated_softmax(s: &[f64], rate: f64) -> (Vec<f64>, Vec<f64>) {
    let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
    let total: f64 = e.iter().sum();
    let sm: Vec<f64> = e.iter().map(|x| x / total).collect();
    let uniform = (1.0 - rate) / s.len() as f64;
    (sm.iter().map(|x| rate * x + uniform).collect(), sm)
}

/// Position-2 attention of every input `[a, b, =]`: `weights[((a·p + b)·heads + h)·3 + j]`
/// is head `h`'s weight on position `j`.
pub struct AttentionPattern {
    pub p: usize,
    pub heads: usize,
    pub weights: Vec<f64>,
}

impl AttentionPattern {
    /// The three weights of head `h` for input `i = a·p + b`.
    pub fn get(&self, i: usize, h: usize) -> &[f64] {
        &self.weights[(i * self.heads + h) * 3..(i * self.heads + h + 1) * 3]
    }
}

/// The position-2 attention pattern over all p² inputs (the one place the analysis
/// computes it).
pub fn position_two_attention(w: &ModelWeights, rate: f64) -> AttentionPattern {
    let (p, h) = (w.modulus(), w.heads);
    let q = vec_mat(&input_vector(w, 2, p), &w.w_q);
    let tokens: Vec<usize> = (0..p).collect();
    let s0 = position_table(w, 0, &tokens, &q).scores;
    let s1 = position_table(w, 1, &tokens, &q).scores;
    let s2 = position_table(w, 2, &[p], &q).scores;
    let mut weights = Vec::with_capacity(p * p * h * 3);
    for a in 0..p {
        for b in 0..p {
            for head in 0..h {
                let s = [s0[a * h + head], s1[b * h + head], s2[head]];
                weights.extend(rated_softmax(&s, rate).0);
            }
        }
    }
    AttentionPattern {
        p,
        heads: h,
        weights,
    }
}

/// Per-token attention ingredients at one position: scores against the constant
/// position-2 query (`tokens × heads`) and value vectors already passed through
/// their head's block of `W_O` (`tokens × heads × d`).
struct PositionTable {
    scores: Vec<f64>,
    outputs: Vec<f64>,
}

fn position_table(w: &ModelWeights, pos: usize, tokens: &[usize], q: &[f64]) -> PositionTable {
    let (d, h, dh) = (w.width(), w.heads, w.d_head());
    let scale = attention_scale(w);
    let mut scores = Vec::with_capacity(tokens.len() * h);
    let mut outputs = vec![0.0; tokens.len() * h * d];
    for (t, &tok) in tokens.iter().enumerate() {
        let x = input_vector(w, pos, tok);
        let k = vec_mat(&x, &w.w_k);
        let v = vec_mat(&x, &w.w_v);
        for head in 0..h {
            let cols = head * dh..(head + 1) * dh;
            scores.push(
                scale
                    * q[cols.clone()]
                        .iter()
                        .zip(&k[cols.clone()])
                        .map(|(a, b)| a * b)
                        .sum::<f64>(),
            );
            let out = &mut outputs[(t * h + head) * d..(t * h + head + 1) * d];
            for i in cols {
                for (o, &wo) in out.iter_mut().zip(w.w_o.row(i)) {
                    *o += v[i] * wo as f64;
                }
            }
        }
    }
    PositionTable { scores, outputs }
}

/// Forward pass over every input `[a, b, =]`, `a, b ∈ 0..p`.
pub fn forward_all(w: &ModelWeights, rate: f64) -> ForwardPass {
    let (p, d, h, d_mlp) = (w.modulus(), w.width(), w.heads, w.d_mlp());
    let n = p * p;
    let x_eq = input_vector(w, 2, p);
    let q = vec_mat(&x_eq, &w.w_q);
    let tokens: Vec<usize> = (0..p).collect();
    let t0 = position_table(w, 0, &tokens, &q);
    let t1 = position_table(w, 1, &tokens, &q);
    let t2 = position_table(w, 2, &[p], &q);
    let pattern = position_two_attention(w, rate);

    // Residual stream at position 2 after attention.
    let mut resid = vec![0f32; n * d];
    let mut acc = vec![0f64; d];
    for a in 0..p {
        for b in 0..p {
            acc.copy_from_slice(&x_eq);
            for head in 0..h {
                let rows = [
                    &t0.outputs[(a * h + head) * d..(a * h + head + 1) * d],
                    &t1.outputs[(b * h + head) * d..(b * h + head + 1) * d],
                    &t2.outputs[head * d..(head + 1) * d],
                ];
                for (&weight, row) in pattern.get(a * p + b, head).iter().zip(rows) {
                    for (o, &v) in acc.iter_mut().zip(row) {
                        *o += weight * v;
                    }
                }
            }
            for (o, &v) in resid[(a * p + b) * d..(a * p + b + 1) * d]
                .iter_mut()
                .zip(&acc)
            {
                *o = v as f32;
            }
        }
    }

    // MLP.
    let mut neurons = vec![0f32; n * d_mlp];
    matmul(n, d, d_mlp, &resid, &w.w_in.data, &mut neurons);
    for row in neurons.chunks_exact_mut(d_mlp) {
        if let Some(b_in) = &w.b_in {
            for (x, &bias) in row.iter_mut().zip(b_in) {
                *x += bias;
            }
        }
        for x in row.iter_mut() {
            *x = x.max(0.0);
        }
    }
    let mut mlp_out = vec![0f32; n * d];
    matmul(n, d_mlp, d, &neurons, &w.w_out.data, &mut mlp_out);
    let mut pre_norm = w.ln_final_w.as_ref().map(|_| vec![0f64; n]);
    for (i, (r, m)) in resid
        .chunks_exact_mut(d)
        .zip(mlp_out.chunks_exact(d))
        .enumerate()
    {
        for (x, &y) in r.iter_mut().zip(m) {
            *x += y;
        }
        if let Some(b_out) = &w.b_out {
            for (x, &bias) in r.iter_mut().zip(b_out) {
                *x += bias;
            }
        }
        if let Some(g) = &w.ln_final_w {
            let c = (i / p + i % p) % p;
            if let Some(pre) = pre_norm.as_mut() {
                pre[i] = (0..d)
                    .map(|j| r[j] as f64 * g[j] as f64 * w.w_u.get(j, c) as f64)
                    .sum();
            }
            let norm = r.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
            let s = if norm > 0.0 {
                (d as f64).sqrt() / norm
            } else {
                0.0
            };
            for (x, &gi) in r.iter_mut().zip(g) {
                *x = (*x as f64 * s) as f32 * gi;
            }
        }
    }
    let mut logits = vec![0f32; n * p];
    matmul(n, d, p, &resid, &w.w_u.data, &mut logits);
    ForwardPass {
        p,
        d_mlp,
        neurons,
        logits,
        pre_norm_correct_logit: pre_norm,
    }
}

/// Logits at position 2 for three explicit input vectors, computed the plain way:
/// every position's query, key and value, the architecture's mask, the MLP and the
/// norm at every position. The reference the fast paths are tested against.
pub fn reference_logits(w: &ModelWeights, inputs: &[Vec<f64>; 3], rate: f64) -> Vec<f64> {
    let (d, h, dh) = (w.width(), w.heads, w.d_head());
    let scale = attention_scale(w);
    let q: Vec<Vec<f64>> = inputs.iter().map(|x| vec_mat(x, &w.w_q)).collect();
    let k: Vec<Vec<f64>> = inputs.iter().map(|x| vec_mat(x, &w.w_k)).collect();
    let v: Vec<Vec<f64>> = inputs.iter().map(|x| vec_mat(x, &w.w_v)).collect();
    let mut last = Vec::new();
    for i in 0..3 {
        let visible = match w.arch {
            Arch::Li2024 => 3,
            Arch::Nanda2023 => i + 1,
        };
        let mut z = vec![0.0; d];
        for head in 0..h {
            let cols = head * dh..(head + 1) * dh;
            let s: Vec<f64> = (0..visible)
                .map(|j| scale * cols.clone().map(|c| q[i][c] * k[j][c]).sum::<f64>())
                .collect();
            for (j, a) in rated_softmax(&s, rate).0.into_iter().enumerate() {
                for c in cols.clone() {
                    z[c] += a * v[j][c];
                }
            }
        }
        let attn = vec_mat(&z, &w.w_o);
        let x1: Vec<f64> = inputs[i].iter().zip(&attn).map(|(a, b)| a + b).collect();
        let (_, mut x2) = mlp_block(w, &x1);
        if let Some(g) = &w.ln_final_w {
            let norm = x2.iter().map(|x| x * x).sum::<f64>().sqrt();
            for (x, &gi) in x2.iter_mut().zip(g) {
                *x = *x / norm * (d as f64).sqrt() * gi as f64;
            }
        }
        last = x2;
    }
    vec_mat(&last, &w.w_u)
}

/// The MLP block on one residual vector: its pre-activations and the residual
/// stream after it (before the final norm).
fn mlp_block(w: &ModelWeights, x1: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let mut pre = vec_mat(x1, &w.w_in);
    if let Some(b) = &w.b_in {
        pre.iter_mut().zip(b).for_each(|(x, &bb)| *x += bb as f64);
    }
    let act: Vec<f64> = pre.iter().map(|x| x.max(0.0)).collect();
    let mlp = vec_mat(&act, &w.w_out);
    let mut x2: Vec<f64> = x1.iter().zip(&mlp).map(|(a, b)| a + b).collect();
    if let Some(b) = &w.b_out {
        x2.iter_mut().zip(b).for_each(|(x, &bb)| *x += bb as f64);
    }
    (pre, x2)
}

/// Gradient of logit `c` at position 2 with respect to the input vectors at
/// positions 0 and 1 (embedding plus positional embedding), by an analytic backward
/// pass through the position-2 computation. Returns `(d/dx₀, d/dx₁)`.
pub fn logit_input_gradients(
    w: &ModelWeights,
    inputs: &[Vec<f64>; 3],
    c: usize,
    rate: f64,
) -> (Vec<f64>, Vec<f64>) {
    let (d, h, dh) = (w.width(), w.heads, w.d_head());
    let scale = attention_scale(w);
    // Forward at position 2 (the only position the logits read).
    let q = vec_mat(&inputs[2], &w.w_q);
    let k: Vec<Vec<f64>> = inputs.iter().map(|x| vec_mat(x, &w.w_k)).collect();
    let v: Vec<Vec<f64>> = inputs.iter().map(|x| vec_mat(x, &w.w_v)).collect();
    // Per head: the (rate-mixed) attention weights and their softmax part.
    let mut attn_w = Vec::with_capacity(h);
    let mut z = vec![0.0; d];
    for head in 0..h {
        let cols = head * dh..(head + 1) * dh;
        let s: Vec<f64> = (0..3)
            .map(|j| scale * cols.clone().map(|col| q[col] * k[j][col]).sum::<f64>())
            .collect();
        let (weights, sm) = rated_softmax(&s, rate);
        for (j, wj) in weights.iter().enumerate() {
            for col in cols.clone() {
                z[col] += wj * v[j][col];
            }
        }
        attn_w.push((weights, sm));
    }
    let attn = vec_mat(&z, &w.w_o);
    let x1: Vec<f64> = inputs[2].iter().zip(&attn).map(|(a, b)| a + b).collect();
    let (pre, x2) = mlp_block(w, &x1);

    // Backward. d logit / d x2.
    let u: Vec<f64> = (0..d).map(|i| w.w_u.get(i, c) as f64).collect();
    let dx2: Vec<f64> = match &w.ln_final_w {
        None => u,
        Some(g) => {
            // y = sqrt(d)·g ⊙ x/r, r = ‖x‖: dy·/dx = sqrt(d)/r · (ug − (x·ug) x / r²).
            let ug: Vec<f64> = u.iter().zip(g).map(|(a, &b)| a * b as f64).collect();
            let r2: f64 = x2.iter().map(|x| x * x).sum();
            let r = r2.sqrt();
            let xug: f64 = x2.iter().zip(&ug).map(|(a, b)| a * b).sum();
            let s = (d as f64).sqrt() / r;
            ug.iter()
                .zip(&x2)
                .map(|(a, x)| s * (a - xug * x / r2))
                .collect()
        }
    };
    let dact = mat_vec(&w.w_out, &dx2);
    let dpre: Vec<f64> = dact
        .iter()
        .zip(&pre)
        .map(|(g, &p)| if p > 0.0 { *g } else { 0.0 })
        .collect();
    let dx1: Vec<f64> = dx2
        .iter()
        .zip(mat_vec(&w.w_in, &dpre))
        .map(|(a, b)| a + b)
        .collect();
    let dz = mat_vec(&w.w_o, &dx1);
    // Per input position j ∈ {0, 1}: gradients on its key and value vectors.
    let mut grads = [vec![0.0; d], vec![0.0; d]];
    for (j, grad) in grads.iter_mut().enumerate() {
        let mut dk = vec![0.0; d];
        let mut dv = vec![0.0; d];
        for (head, (weights, sm)) in attn_w.iter().enumerate() {
            let cols = head * dh..(head + 1) * dh;
            let da: Vec<f64> = (0..3)
                .map(|l| cols.clone().map(|col| dz[col] * v[l][col]).sum())
                .collect();
            let mean_da: f64 = sm.iter().zip(&da).map(|(a, g)| a * g).sum();
            let ds = rate * sm[j] * (da[j] - mean_da);
            for col in cols {
                dv[col] = weights[j] * dz[col];
                dk[col] = ds * scale * q[col];
            }
        }
        let from_v = mat_vec(&w.w_v, &dv);
        let from_k = mat_vec(&w.w_k, &dk);
        for ((g, a), b) in grad.iter_mut().zip(from_v).zip(from_k) {
            *g = a + b;
        }
    }
    let [g0, g1] = grads;
    (g0, g1)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// A random model with Gaussian-ish weights of std `1/sqrt(fan_in)`·`gain`.
    pub(crate) fn random_model(
        arch: Arch,
        p: usize,
        d: usize,
        heads: usize,
        d_mlp: usize,
        seed: u64,
    ) -> ModelWeights {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut mat = |rows: usize, cols: usize, std: f64| {
            let data = (0..rows * cols)
                .map(|_| {
                    // Sum of uniforms: close enough to Gaussian for analysis tests.
                    let s: f64 = (0..4).map(|_| rng.gen::<f64>() - 0.5).sum();
                    (s * std * (3.0f64).sqrt()) as f32
                })
                .collect();
            Mat::from_vec(rows, cols, data)
        };
        let nanda = arch == Arch::Nanda2023;
        let inv = |n: usize| 1.0 / (n as f64).sqrt();
        let w_e = mat(p + 1, d, 1.0);
        let w_pos = nanda.then(|| mat(3, d, 1.0));
        let w_q = mat(d, d, 3.0 * inv(d));
        let w_k = mat(d, d, 3.0 * inv(d));
        let w_v = mat(d, d, inv(d));
        let w_o = mat(d, d, inv(d));
        let w_in = mat(d, d_mlp, inv(d));
        let b_in = nanda.then(|| mat(1, d_mlp, 0.3).data);
        let w_out = mat(d_mlp, d, inv(d_mlp));
        let b_out = nanda.then(|| mat(1, d, 0.3).data);
        let ln_final_w = (!nanda).then(|| mat(1, d, 0.3).data.iter().map(|x| 1.0 + x).collect());
        let w_u = mat(d, p, inv(d));
        ModelWeights {
            arch,
            heads,
            w_e,
            w_pos,
            w_q,
            w_k,
            w_v,
            w_o,
            w_in,
            b_in,
            w_out,
            b_out,
            ln_final_w,
            w_u,
        }
    }

    fn inputs(w: &ModelWeights, a: usize, b: usize) -> [Vec<f64>; 3] {
        [
            input_vector(w, 0, a),
            input_vector(w, 1, b),
            input_vector(w, 2, w.modulus()),
        ]
    }

    #[test]
    fn fast_forward_matches_position_by_position_reference() {
        for (arch, rate) in [Arch::Li2024, Arch::Nanda2023]
            .into_iter()
            .flat_map(|a| [(a, 1.0), (a, 0.3)])
        {
            let w = random_model(arch, 7, 8, 2, 32, 1);
            let f = forward_all(&w, rate);
            let pattern = position_two_attention(&w, rate);
            let p = 7;
            for a in 0..p {
                for b in 0..p {
                    let want = reference_logits(&w, &inputs(&w, a, b), rate);
                    for (c, want) in want.iter().enumerate() {
                        let got = f.logits[(a * p + b) * p + c] as f64;
                        assert!(
                            (got - want).abs() < 1e-4 * (1.0 + want.abs()),
                            "{arch:?} rate {rate} a={a} b={b} c={c}: {got} vs {want}"
                        );
                    }
                    for h in 0..2 {
                        let wts = pattern.get(a * p + b, h);
                        assert!((wts.iter().sum::<f64>() - 1.0).abs() < 1e-12);
                        // Mixing with uniform keeps every weight at least (1 − rate)/3.
                        assert!(wts.iter().all(|&x| x >= (1.0 - rate) / 3.0 - 1e-12));
                    }
                }
            }
            // Only li2024 has a final norm to measure before.
            assert_eq!(f.pre_norm_correct_logit.is_some(), arch == Arch::Li2024);
        }
    }

    #[test]
    fn position_two_logits_ignore_the_mask_and_follow_the_scale() {
        // One layer, read out at the last position: the causal mask changes only
        // positions 0 and 1, which never reach the logits. So a nanda2023 model equals
        // the same weights run bidirectionally with li2024's scale 1/sqrt(d) once W_Q
        // absorbs the scale ratio sqrt(d / d_head) = 2 (d = 8, 4 heads).
        let mut w = random_model(Arch::Nanda2023, 5, 8, 4, 16, 2);
        let x = inputs(&w, 1, 3);
        let nanda = reference_logits(&w, &x, 1.0);
        w.arch = Arch::Li2024;
        for v in w.w_q.data.iter_mut() {
            *v *= 2.0;
        }
        let li = reference_logits(&w, &x, 1.0);
        for (a, b) in nanda.iter().zip(&li) {
            assert!((a - b).abs() < 1e-9);
        }
    }

    #[test]
    fn analytic_gradient_matches_finite_differences() {
        for (arch, rate) in [Arch::Li2024, Arch::Nanda2023]
            .into_iter()
            .flat_map(|a| [(a, 1.0), (a, 0.3)])
        {
            let w = random_model(arch, 7, 8, 2, 32, 3);
            for (a, b, c) in [(1, 4, 2), (6, 0, 5), (3, 3, 0)] {
                let x = inputs(&w, a, b);
                let (g0, g1) = logit_input_gradients(&w, &x, c, rate);
                for (pos, g) in [(0, &g0), (1, &g1)] {
                    for i in 0..8 {
                        let eps = 1e-6;
                        let mut plus = x.clone();
                        plus[pos][i] += eps;
                        let mut minus = x.clone();
                        minus[pos][i] -= eps;
                        let fd = (reference_logits(&w, &plus, rate)[c]
                            - reference_logits(&w, &minus, rate)[c])
                            / (2.0 * eps);
                        assert!(
                            (fd - g[i]).abs() < 1e-5 * (1.0 + fd.abs()),
                            "{arch:?} pos {pos} i {i}: fd {fd} vs analytic {}",
                            g[i]
                        );
                    }
                }
            }
        }
    }
}
