//! AdamW with decoupled weight decay, linear warmup, and the optional Grokfast-EMA
//! gradient filter (science.md §4).
//!
//! Weight decay applies to *all* parameters (embeddings, unembedding, biases and the
//! RMSNorm gain included), as `torch.optim.AdamW(model.parameters(), …)` does in the
//! seed study's and Nanda's code. For quantized models it decays the latent weights.
//!
//! Moments are stored in f32 (as torch does); each update is computed in f64.

use crate::config::TrainConfig;
use crate::engine::model::kernels::simd_fn;
use crate::engine::weights::ModelWeights;
use rayon::prelude::*;

/// Learning rate of update number `step` (0-based). With `warmup_steps = w > 0` it is
/// `lr · min(step / w, 1)`, as Nanda's `LambdaLR(lambda step: min(step/10, 1))`, so the
/// first update has learning rate 0 (its moments still count).
pub fn learning_rate(cfg: &TrainConfig, step: u64) -> f64 {
    if cfg.warmup_steps == 0 {
        cfg.lr
    } else {
        cfg.lr * (step as f64 / cfg.warmup_steps as f64).min(1.0)
    }
}

/// AdamW state: first and second moments per parameter, and the number of updates done.
#[derive(Clone, Debug, PartialEq)]
pub struct AdamW {
    pub m: ModelWeights,
    pub v: ModelWeights,
    pub t: u64,
}

impl AdamW {
    pub fn new(like: &ModelWeights) -> AdamW {
        AdamW {
            m: like.zeros_like(),
            v: like.zeros_like(),
            t: 0,
        }
    }

    /// One update: `m ← β1·m + (1−β1)·g`, `v ← β2·v + (1−β2)·g²`,
    /// `θ ← θ − lr·(m̂/(sqrt(v̂)+ε) + wd·θ)` with `m̂ = m/(1−β1^t)`, `v̂ = v/(1−β2^t)`.
    pub fn step(&mut self, cfg: &TrainConfig, theta: &mut ModelWeights, grads: &ModelWeights) {
        let lr = learning_rate(cfg, self.t);
        self.t += 1;
        let (c1, c2) = bias_corrections(cfg, self.t);
        let (eps, wd) = (cfg.eps, cfg.weight_decay);
        let groups = theta
            .params_mut()
            .into_iter()
            .zip(self.m.params_mut())
            .zip(self.v.params_mut())
            .zip(grads.params());
        // Element-wise, so splitting across threads cannot change a bit. Every
        // parameter's blocks go to one parallel loop (a loop per parameter left the
        // second thread idle on the small ones).
        const BLOCK: usize = 4096;
        let mut blocks = Vec::new();
        for ((((_, th), (_, m)), (_, v)), (_, g)) in groups {
            let parts = th.chunks_mut(BLOCK).zip(m.chunks_mut(BLOCK));
            let parts = parts.zip(v.chunks_mut(BLOCK)).zip(g.chunks(BLOCK));
            blocks.extend(parts.map(|(((th, m), v), g)| (th, m, v, g)));
        }
        blocks
            .into_par_iter()
            .for_each(|(th, m, v, g)| update_block(cfg.betas, [lr, c1, c2, eps, wd], th, m, v, g));
    }
}

simd_fn! {
    /// [`AdamW::step`] on one block of elements, compiled for AVX2 where the CPU has
    /// it: the loop vectorizes, and each element's f64 operations (IEEE, no FMA
    /// contraction) are the same either way.
    fn update_block(
        betas: [f64; 2],
        scalars: [f64; 5],
        th: &mut [f32],
        m: &mut [f32],
        v: &mut [f32],
        g: &[f32],
    ) {
        let [lr, c1, c2, eps, wd] = scalars;
        let elements = th.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(g);
        for (((th, m), v), g) in elements {
            let (mi, vi) = moments(betas, *m, *v, *g);
            *m = mi as f32;
            *v = vi as f32;
            let x = *th as f64;
            *th = (x - lr * (direction(mi, vi, c1, c2, eps) + wd * x)) as f32;
        }
    }
}

/// `(1 − β1^t, 1 − β2^t)`: the bias corrections of update number `t` (1-based).
pub fn bias_corrections(cfg: &TrainConfig, t: u64) -> (f64, f64) {
    let [b1, b2] = cfg.betas;
    (1.0 - b1.powi(t as i32), 1.0 - b2.powi(t as i32))
}

/// The moments after one more gradient `g`: `(β1·m + (1−β1)·g, β2·v + (1−β2)·g²)`.
#[inline(always)]
pub fn moments([b1, b2]: [f64; 2], m: f32, v: f32, g: f32) -> (f64, f64) {
    let g = g as f64;
    (
        b1 * m as f64 + (1.0 - b1) * g,
        b2 * v as f64 + (1.0 - b2) * g * g,
    )
}

/// Adam's normalised step direction `m̂/(sqrt(v̂)+ε)` from the moments `m`, `v` and
/// the bias corrections `c1`, `c2`.
#[inline(always)]
pub fn direction(m: f64, v: f64, c1: f64, c2: f64, eps: f64) -> f64 {
    (m / c1) / ((v / c2).sqrt() + eps)
}

/// Grokfast-EMA: `μ_t = α·μ_{t−1} + (1−α)·g_t` (`μ_0 = g_0`); the optimizer receives
/// `g_t + λ·μ_t`.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct GrokfastEma {
    pub mu: Option<ModelWeights>,
}

impl GrokfastEma {
    /// Replace `grads` by the filtered gradients.
    pub fn filter(&mut self, alpha: f64, lambda: f64, grads: &mut ModelWeights) {
        match &mut self.mu {
            None => self.mu = Some(grads.clone()),
            Some(mu) => {
                for ((_, m), (_, g)) in mu.params_mut().into_iter().zip(grads.params()) {
                    for (mi, gi) in m.iter_mut().zip(g) {
                        *mi = (alpha * *mi as f64 + (1.0 - alpha) * *gi as f64) as f32;
                    }
                }
            }
        }
        let mu = self.mu.as_ref().unwrap();
        for ((_, g), (_, m)) in grads.params_mut().into_iter().zip(mu.params()) {
            for (gi, mi) in g.iter_mut().zip(m) {
                *gi = (*gi as f64 + lambda * *mi as f64) as f32;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CellConfig;
    use crate::engine::model::init_weights;

    /// p = 5, width 4, 2 heads: small enough to check every number by hand.
    fn tiny_cell() -> CellConfig {
        CellConfig {
            modulus: 5,
            width: 4,
            model: crate::config::ModelConfig {
                heads: 2,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn one_adamw_step_matches_the_formula_by_hand() {
        let cell = tiny_cell();
        let cfg = TrainConfig {
            lr: 0.01,
            weight_decay: 0.5,
            betas: [0.9, 0.98],
            eps: 1e-8,
            warmup_steps: 4,
            ..Default::default()
        };
        let theta0 = init_weights(&cell);
        let mut grads = theta0.clone();
        for (_, g) in grads.params_mut() {
            for (i, x) in g.iter_mut().enumerate() {
                *x = (i as f32 * 0.37).sin() * 0.1;
            }
        }
        let mut opt = AdamW::new(&theta0);
        let mut theta = theta0.clone();
        // Update 0 has warmup factor 0: the weights stay, the moments move.
        opt.step(&cfg, &mut theta, &grads);
        assert_eq!(theta, theta0);
        // Update 1: lr·1/4, t = 2.
        let theta1 = theta.clone();
        opt.step(&cfg, &mut theta, &grads);
        let lr = 0.01 * 0.25;
        for (((_, th), (_, t1)), (_, g)) in theta
            .params()
            .into_iter()
            .zip(theta1.params())
            .zip(grads.params())
        {
            for i in 0..th.len() {
                let g = g[i] as f64;
                let m = 0.9 * (0.1 * g) + 0.1 * g;
                let v = 0.98 * (0.02 * g * g) + 0.02 * g * g;
                let mhat = m / (1.0 - 0.81);
                let vhat = v / (1.0 - 0.98f64 * 0.98);
                let x = t1[i] as f64;
                let want = x - lr * (mhat / (vhat.sqrt() + 1e-8) + 0.5 * x);
                assert!(
                    (th[i] as f64 - want).abs() <= 1e-6 * want.abs().max(1e-3),
                    "{} vs {want}",
                    th[i]
                );
            }
        }
        assert_eq!(learning_rate(&cfg, 10), 0.01);
    }

    #[test]
    fn the_vectorized_update_gives_the_baseline_bits() {
        use crate::engine::model::kernels::baseline_only;
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let n = 1003;
        let mut draw = |scale: f32| -> Vec<f32> {
            (0..n)
                .map(|_| rng.gen_range(-1.0f32..1.0) * scale.powi(rng.gen_range(-8..8)))
                .collect()
        };
        let (th, m, g) = (draw(10.0), draw(10.0), draw(10.0));
        let v: Vec<f32> = draw(10.0).iter().map(|x| x * x).collect();
        let scalars = [1e-3, 0.19, 0.0396, 1e-8, 1.0];
        let run = || {
            let (mut th, mut m, mut v) = (th.clone(), m.clone(), v.clone());
            update_block([0.9, 0.98], scalars, &mut th, &mut m, &mut v, &g);
            [th, m, v].map(|x| x.iter().map(|y| y.to_bits()).collect::<Vec<_>>())
        };
        let fast = run();
        assert_eq!(fast, baseline_only(run));
        assert_ne!(fast[0], th.iter().map(|y| y.to_bits()).collect::<Vec<_>>());
    }

    #[test]
    fn grokfast_ema_starts_at_the_first_gradient() {
        let cell = tiny_cell();
        let g0 = init_weights(&cell);
        let mut ema = GrokfastEma::default();
        let mut g = g0.clone();
        ema.filter(0.9, 2.0, &mut g);
        assert_eq!(g.params()[0].1[0], g0.params()[0].1[0] * 3.0);
        let mut g1 = g0.zeros_like();
        ema.filter(0.9, 2.0, &mut g1);
        let want = 2.0 * 0.9 * g0.params()[0].1[0];
        assert!((g1.params()[0].1[0] - want).abs() < 1e-6);
    }
}
