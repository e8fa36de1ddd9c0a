//! The benchmarks' synthetic model: one random li2024 model of the seed study's size
//! (p = 113, width 128, 4 heads, MLP 512), the same bits every run.

use bitgrok::config::Arch;
use bitgrok::engine::weights::{Mat, ModelWeights};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub fn paper_size_model() -> ModelWeights {
    let (p, d, heads, d_mlp) = (113, 128, 4, 512);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut mat = |rows: usize, cols: usize| {
        let s = 1.0 / (rows as f64).sqrt();
        let data = (0..rows * cols)
            .map(|_| ((rng.gen::<f64>() - 0.5) * s) as f32)
            .collect();
        Mat::from_vec(rows, cols, data)
    };
    ModelWeights {
        arch: Arch::Li2024,
        heads,
        w_e: mat(p + 1, d),
        w_pos: None,
        w_q: mat(d, d),
        w_k: mat(d, d),
        w_v: mat(d, d),
        w_o: mat(d, d),
        w_in: mat(d, d_mlp),
        b_in: None,
        w_out: mat(d_mlp, d),
        b_out: None,
        ln_final_w: Some(vec![1.0; d]),
        w_u: mat(d, p),
    }
}
