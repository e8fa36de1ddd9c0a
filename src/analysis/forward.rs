//! The analysis's view of a model over all p² inputs `[a, b, =]` (row `a·p + b`),
//! computed by the model code training uses, never by a forward pass of its own:
//! - logits come from training's forward pass ([`crate::engine::model::run`]), so the
//!   analysis's losses are the losses training reported;
//! - MLP activations, attention patterns and input gradients come from the single f64
//!   reference ([`crate::engine::reference`]), which computes every position the
//!   textbook way and is tested against training's pass.
//!
//! Both honour everything that changes the function: the architecture (attention
//! scale and mask), `act_bits`, the quantizer's eps and `model.attention_rate`
//! (attention is `rate·softmax + (1 − rate)·uniform`) ([`Model`]).

use crate::config::UniformAttention;
use crate::engine::model::{run, Batch};
use crate::engine::model_file::Model;
use crate::engine::reference::{self, Depth, Params64, ReadOut};
use rayon::prelude::*;

/// What analysis reads from the model over all p² inputs.
pub struct ForwardPass {
    pub p: usize,
    pub d_mlp: usize,
    pub heads: usize,
    /// MLP neuron activations (after ReLU, before any activation quantizer) at
    /// position 2, neuron by neuron: `neurons[n·p² + a·p + b]`.
    pub neurons: Vec<f64>,
    /// MLP pre-activations (before ReLU), same layout.
    pub pre_activations: Vec<f64>,
    /// Logits at position 2, `p² × p`.
    pub logits: Vec<f32>,
    /// Attention of position 2 over positions 0, 1, 2 (see [`attention_pattern`]).
    pub attention: AttentionPattern,
    /// With a final RMSNorm: the correct class's logit with the norm's division by
    /// ‖x2‖ left out, `(x2 ⊙ g)·W_U[:, (a+b) mod p]`, per input (science.md §6).
    pub pre_norm_correct_logit: Option<Vec<f64>>,
    /// With a final RMSNorm: ‖x2‖ per input, what the norm divides by.
    pub x2_norms: Option<Vec<f64>>,
}

/// Position-2 attention of every input `[a, b, =]`: `weights[(h·p² + a·p + b)·3 + j]`
/// is head `h`'s weight on position `j`; each triple sums to 1.
#[derive(Clone, Debug, PartialEq)]
pub struct AttentionPattern {
    pub p: usize,
    pub heads: usize,
    pub weights: Vec<f64>,
}

impl AttentionPattern {
    /// The three weights of head `h` for input `i = a·p + b`.
    pub fn get(&self, i: usize, h: usize) -> &[f64] {
        let n = self.p * self.p;
        &self.weights[(h * n + i) * 3..(h * n + i + 1) * 3]
    }
}

/// Every pair `(a, b)`, in row order `a·p + b`.
pub fn all_pairs(p: usize) -> Vec<(u32, u32)> {
    (0..p * p)
        .map(|i| ((i / p) as u32, (i % p) as u32))
        .collect()
}

/// Logits at position 2 for every input, `p² × p`, from training's forward pass.
pub fn logits(m: &Model) -> Vec<f32> {
    let p = m.weights.modulus();
    let batch = Batch::new(m.weights.arch, p, &all_pairs(p));
    run(
        &m.weights,
        m.act_bits,
        m.act_eps,
        m.attention,
        &batch,
        false,
        true,
    )
    .logits
    .expect("logits were asked for")
}

/// The reference's read-out pass of the model `m` (weights `w` in f64), with its
/// activation bits, eps and attention rate.
pub fn read_out<'a>(m: &Model, w: &'a Params64) -> ReadOut<'a> {
    ReadOut::new(w, m.act_bits, m.act_eps, m.attention)
}

/// Inputs per batch of the read-out pass: enough rows for [`reference`]'s blocked
/// products, few enough that a batch's rows stay in cache. Batches run in parallel;
/// no value depends on the batching (see [`ReadOut::position_two`]).
pub const BATCH: usize = 64;

/// Logits (training's pass), and from the reference computed to `depth`: neuron
/// activations and attention patterns, and at [`Depth::Logits`] the pre-norm correct
/// logits, over all p² inputs. The depth changes no value, only what is computed.
pub fn forward_all(m: &Model, depth: Depth) -> ForwardPass {
    let w = Params64::from_weights(&m.weights);
    let (p, h, d_mlp) = (m.weights.modulus(), m.weights.heads, m.weights.d_mlp());
    let n = p * p;
    let d = w.w_e.cols;
    let read_out = read_out(m, &w);
    let pairs = crate::analysis::measures::all_pairs(p);
    let batches: Vec<_> = pairs
        .par_chunks(BATCH)
        .map(|chunk| read_out.position_two(chunk, depth))
        .collect();
    let mut neurons = vec![0.0; n * d_mlp];
    let mut pre_activations = vec![0.0; n * d_mlp];
    let mut attention = vec![0.0; h * n * 3];
    let mut pre_norm = w
        .ln_final_w
        .as_ref()
        .filter(|_| depth == Depth::Logits)
        .map(|_| Vec::with_capacity(n));
    let mut x2_norms = pre_norm.as_ref().map(|_| Vec::with_capacity(n));
    for (c, (chunk, batch)) in pairs.chunks(BATCH).zip(batches).enumerate() {
        let first = c * BATCH;
        for (nn, (out, pre)) in neurons
            .chunks_mut(n)
            .zip(pre_activations.chunks_mut(n))
            .enumerate()
        {
            for r in 0..chunk.len() {
                let h = batch.rows.hidden[r * d_mlp + nn];
                pre[first + r] = h;
                out[first + r] = h.max(0.0);
            }
        }
        for (r, &(a, b)) in chunk.iter().enumerate() {
            let i = a * p + b;
            for head in 0..h {
                let share = &mut attention[(head * n + i) * 3..(head * n + i + 1) * 3];
                share.copy_from_slice(&batch.pattern[r * h + head]);
                // Summed uniform parts leave rows that sum to 3 − 2·rate: report each
                // position's share (mean weighting's rows already sum to 1).
                if m.attention.uniform == UniformAttention::Sum {
                    let total: f64 = share.iter().sum();
                    share.iter_mut().for_each(|x| *x /= total);
                }
            }
            if let (Some(all), Some(g)) = (pre_norm.as_mut(), &w.ln_final_w) {
                let (x2, c) = (&batch.rows.x2[r * d..(r + 1) * d], (a + b) % p);
                all.push((0..d).map(|j| x2[j] * g[j] * w.w_u.get(j, c)).sum());
            }
            if let Some(norms) = x2_norms.as_mut() {
                let x2 = &batch.rows.x2[r * d..(r + 1) * d];
                norms.push(x2.iter().map(|v| v * v).sum::<f64>().sqrt());
            }
        }
    }
    ForwardPass {
        p,
        d_mlp,
        heads: h,
        neurons,
        pre_activations,
        logits: logits(m),
        attention: AttentionPattern {
            p,
            heads: h,
            weights: attention,
        },
        pre_norm_correct_logit: pre_norm,
        x2_norms,
    }
}

/// The attention pattern of position 2 (the `=` token, the read-out position) over
/// the key positions 0, 1, 2, for every head and every input, at the model's
/// attention rate. For reports and attention statistics (science.md §6).
pub fn attention_pattern(m: &Model) -> AttentionPattern {
    forward_all(m, Depth::Hidden).attention
}

/// For each `(a, b, c)` in `triples`: the gradient of logit `c` at position 2 for
/// input `[a, b, =]` with respect to the input vectors (embedding plus positional
/// embedding) at positions 0 and 1, by the reference's backward pass
/// (straight-through for quantized activations). The forward passes run as one
/// batch; each result is that of its triple alone.
pub fn logit_input_gradients(
    read_out: &ReadOut,
    triples: &[(usize, usize, usize)],
) -> Vec<(Vec<f64>, Vec<f64>)> {
    let w = read_out.weights();
    let p = w.modulus();
    let pairs: Vec<(usize, usize)> = triples.iter().map(|&(a, b, _)| (a, b)).collect();
    read_out
        .traces(&pairs)
        .iter()
        .zip(triples)
        .map(|(t, &(a, b, c))| {
            let mut dlogit = vec![0.0; p];
            dlogit[c] = 1.0;
            let [g0, g1, _] =
                reference::backward(w, t, &[vec![0.0; p], vec![0.0; p], dlogit], None, a, b);
            (g0, g1)
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::{Arch, AttentionMix, UniformAttention};
    use crate::engine::weights::{Mat, ModelWeights};
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
        let inv = |n: usize| 1.0 / (n as f64).sqrt();
        let w_e = mat(p + 1, d, 1.0);
        let w_pos = arch.has_positional_embedding().then(|| mat(3, d, 1.0));
        let w_q = mat(d, d, 3.0 * inv(d));
        let w_k = mat(d, d, 3.0 * inv(d));
        let w_v = mat(d, d, inv(d));
        let w_o = mat(d, d, inv(d));
        let w_in = mat(d, d_mlp, inv(d));
        let b_in = arch.has_mlp_biases().then(|| mat(1, d_mlp, 0.3).data);
        let w_out = mat(d_mlp, d, inv(d_mlp));
        let b_out = arch.has_mlp_biases().then(|| mat(1, d, 0.3).data);
        let ln_final_w = arch
            .has_final_norm()
            .then(|| mat(1, d, 0.3).data.iter().map(|x| 1.0 + x).collect());
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

    fn plain(w: ModelWeights) -> Model {
        Model::plain(w)
    }

    /// Every architecture at attention rates 1 and 0.3, and nanda2023 at 0.3 with
    /// the uniform part summed (Zhong et al.'s weighting).
    fn arch_rates() -> impl Iterator<Item = (Arch, AttentionMix)> {
        let mean = |rate| AttentionMix {
            rate,
            uniform: UniformAttention::Mean,
        };
        let sum = AttentionMix {
            rate: 0.3,
            uniform: UniformAttention::Sum,
        };
        Arch::ALL
            .into_iter()
            .flat_map(move |a| [(a, mean(1.0)), (a, mean(0.3))])
            .chain([(Arch::Nanda2023, sum)])
    }

    #[test]
    fn training_logits_match_the_position_by_position_reference() {
        for (arch, mix) in arch_rates() {
            let m = Model {
                attention: mix,
                ..plain(random_model(arch, 7, 8, 2, 32, 1))
            };
            let w = Params64::from_weights(&m.weights);
            let f = forward_all(&m, Depth::Logits);
            let p = 7;
            for a in 0..p {
                for b in 0..p {
                    let t = reference::forward(&w, a, b, 0, 1e-5, mix);
                    for (c, want) in t.logits[2].iter().enumerate() {
                        let got = f.logits[(a * p + b) * p + c] as f64;
                        assert!(
                            (got - want).abs() < 1e-4 * (1.0 + want.abs()),
                            "{arch:?} {mix:?} a={a} b={b} c={c}: {got} vs {want}"
                        );
                    }
                    for h in 0..2 {
                        // Mixing with uniform keeps every share at least (1 − rate)/3,
                        // and the pattern is a distribution with either weighting.
                        let wts = f.attention.get(a * p + b, h);
                        assert!(wts.iter().all(|&x| x >= (1.0 - mix.rate) / 3.0 - 1e-12));
                        assert!((wts.iter().sum::<f64>() - 1.0).abs() < 1e-12);
                    }
                    // The final norm only rescales the correct logit by sqrt(d)/‖x2‖.
                    if let Some(pre) = &f.pre_norm_correct_logit {
                        let norm = t.x2[2].iter().map(|x| x * x).sum::<f64>().sqrt();
                        let got = pre[a * p + b] * 8f64.sqrt() / norm;
                        let want = t.logits[2][(a + b) % p];
                        assert!((got - want).abs() < 1e-9 * (1.0 + want.abs()));
                    }
                }
            }
            // Only li2024 has a final norm to measure before.
            assert_eq!(f.pre_norm_correct_logit.is_some(), arch == Arch::Li2024);
        }
    }

    #[test]
    fn the_read_out_pass_is_the_full_pass_at_position_two() {
        for (arch, mix) in arch_rates() {
            for act_bits in [0, 4] {
                let w = Params64::from_weights(&random_model(arch, 7, 8, 2, 32, 9));
                for (a, b, c) in [(1, 4, 2), (6, 0, 5), (3, 3, 0)] {
                    let full = reference::forward(&w, a, b, act_bits, 1e-5, mix);
                    let last = ReadOut::new(&w, act_bits, 1e-5, mix).forward(a, b);
                    assert_eq!(full.hidden[2], last.hidden[2]);
                    assert_eq!(full.x2[2], last.x2[2]);
                    assert_eq!(full.logits[2], last.logits[2]);
                    for h in 0..2 {
                        assert_eq!(full.pattern[h][2], last.pattern[h][2]);
                    }
                    assert!(last.hidden[0].is_empty() && last.logits[1].is_empty());
                    // The backward pass from position 2 needs nothing else.
                    let mut dl = [vec![0.0; 7], vec![0.0; 7], vec![0.0; 7]];
                    dl[2][c] = 1.0;
                    let (mut g_full, mut g_last) = (w.zeros_like(), w.zeros_like());
                    let dx_full = reference::backward(&w, &full, &dl, Some(&mut g_full), a, b);
                    let dx_last = reference::backward(&w, &last, &dl, Some(&mut g_last), a, b);
                    assert_eq!(dx_full, dx_last);
                    assert_eq!(g_full.w_q.data, g_last.w_q.data);
                    assert_eq!(g_full.w_e.data, g_last.w_e.data);
                }
            }
        }
    }

    #[test]
    fn the_batched_read_out_is_each_input_alone_bit_for_bit() {
        // Shapes off the kernel's 4-row and 8-column blocks (p = 7, d_mlp = 36) and
        // batches of 1, 5 and all 49 inputs; ReLU and a zeroed W_U row add exact zeros.
        for (arch, mix) in arch_rates() {
            for act_bits in [0, 4] {
                let mut mw = random_model(arch, 7, 8, 2, 36, 5);
                mw.w_u.data[..7].iter_mut().for_each(|v| *v = 0.0);
                let w = Params64::from_weights(&mw);
                let ro = ReadOut::new(&w, act_bits, 1e-5, mix);
                let pairs: Vec<(usize, usize)> = (0..49).map(|i| (i / 7, i % 7)).collect();
                for batch in [&pairs[..1], &pairs[3..8], &pairs[..]] {
                    let got = ro.position_two(batch, Depth::Logits);
                    let shallow = ro.position_two(batch, Depth::Hidden);
                    assert_eq!(shallow.rows.hidden, got.rows.hidden);
                    assert_eq!(shallow.pattern, got.pattern);
                    assert!(shallow.rows.logits.is_empty());
                    for (r, &(a, b)) in batch.iter().enumerate() {
                        let t = ro.forward(a, b);
                        assert_eq!(got.rows.hidden[r * 36..(r + 1) * 36], t.hidden[2][..]);
                        assert_eq!(got.rows.x2[r * 8..(r + 1) * 8], t.x2[2][..]);
                        assert_eq!(got.rows.logits[r * 7..(r + 1) * 7], t.logits[2][..]);
                        for h in 0..2 {
                            assert_eq!(got.pattern[r * 2 + h], t.pattern[h][2]);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn attention_patterns_are_distributions_and_uniform_without_queries() {
        let mut w = random_model(Arch::Li2024, 5, 8, 2, 16, 4);
        let pat = attention_pattern(&plain(w.clone())).weights;
        assert_eq!(pat.len(), 2 * 25 * 3);
        for t in pat.chunks(3) {
            assert!((t.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        }
        assert!(pat.iter().any(|x| (x - 1.0 / 3.0).abs() > 1e-3));
        // Attention rate 0 is uniform attention whatever the queries.
        let rate0 = Model {
            attention: AttentionMix::SOFTMAX.uniform_only(),
            ..plain(w.clone())
        };
        let uniform = |pat: &[f64]| pat.iter().all(|x| (x - 1.0 / 3.0).abs() < 1e-12);
        assert!(uniform(&attention_pattern(&rate0).weights));
        w.w_q.data.iter_mut().for_each(|v| *v = 0.0);
        assert!(uniform(&attention_pattern(&plain(w)).weights));
    }

    #[test]
    fn activation_quantization_changes_what_analysis_sees() {
        let w = random_model(Arch::Nanda2023, 5, 8, 2, 16, 6);
        let a = forward_all(&plain(w.clone()), Depth::Logits);
        let b = forward_all(
            &Model {
                act_bits: 4,
                ..plain(w)
            },
            Depth::Logits,
        );
        assert_ne!(a.logits, b.logits);
        assert_ne!(a.neurons, b.neurons);
    }

    #[test]
    fn position_two_logits_ignore_the_mask_and_follow_the_scale() {
        // One layer, read out at the last position: the causal mask changes only
        // positions 0 and 1, which never reach the logits. So a nanda2023 model equals
        // the same weights run bidirectionally with li2024's scale 1/sqrt(d) once W_Q
        // absorbs the scale ratio sqrt(d / d_head) = 2 (d = 8, 4 heads).
        let mut w = random_model(Arch::Nanda2023, 5, 8, 4, 16, 2);
        let x = reference::input_vectors(&Params64::from_weights(&w), 1, 3);
        let nanda = reference::forward_from_inputs(
            &Params64::from_weights(&w),
            x.clone(),
            0,
            0.0,
            AttentionMix::SOFTMAX,
        );
        w.arch = Arch::Li2024;
        for v in w.w_q.data.iter_mut() {
            *v *= 2.0;
        }
        let li = reference::forward_from_inputs(
            &Params64::from_weights(&w),
            x,
            0,
            0.0,
            AttentionMix::SOFTMAX,
        );
        for (a, b) in nanda.logits[2].iter().zip(&li.logits[2]) {
            assert!((a - b).abs() < 1e-9);
        }
    }

    #[test]
    fn input_gradient_matches_finite_differences() {
        for (arch, mix) in arch_rates() {
            let m = Model {
                attention: mix,
                ..plain(random_model(arch, 7, 8, 2, 32, 3))
            };
            let w = Params64::from_weights(&m.weights);
            for (a, b, c) in [(1, 4, 2), (6, 0, 5), (3, 3, 0)] {
                let x = reference::input_vectors(&w, a, b);
                let (g0, g1) = logit_input_gradients(&read_out(&m, &w), &[(a, b, c)]).remove(0);
                let logit = |x: [Vec<f64>; 3]| {
                    reference::forward_from_inputs(&w, x, 0, 0.0, mix).logits[2][c]
                };
                for (pos, g) in [(0, &g0), (1, &g1)] {
                    for i in 0..8 {
                        let eps = 1e-6;
                        let mut plus = x.clone();
                        plus[pos][i] += eps;
                        let mut minus = x.clone();
                        minus[pos][i] -= eps;
                        let fd = (logit(plus) - logit(minus)) / (2.0 * eps);
                        assert!(
                            (fd - g[i]).abs() < 1e-5 * (1.0 + fd.abs()),
                            "{arch:?} {mix:?} pos {pos} i {i}: fd {fd} vs analytic {}",
                            g[i]
                        );
                    }
                }
            }
        }
    }
}
