//! Times `analyze` on the seed study's cell shape: p = 113, d_model 128, 4 heads,
//! d_mlp 512 (li2024), with an embedding planted on five frequencies and random
//! other weights. Prints the median of several runs and the signature's headline.
//!
//! `cargo run --release --example analyze_bench [runs]`

use bitgrok::analysis::{analyze, TrainSplit};
use bitgrok::config::{AnalysisConfig, Arch};
use bitgrok::engine::weights::{Mat, ModelWeights};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::f64::consts::PI;
use std::time::Instant;

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("runs must be a number"))
        .unwrap_or(5);
    let (p, d, heads, d_mlp) = (113, 128, 4, 512);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut mat = |rows: usize, cols: usize, std: f64| {
        let data = (0..rows * cols)
            .map(|_| ((rng.gen::<f64>() - 0.5) * std * 12f64.sqrt()) as f32)
            .collect();
        Mat::from_vec(rows, cols, data)
    };
    let inv = |n: usize| 1.0 / (n as f64).sqrt();
    // Embedding on Nanda's key frequencies, one frequency per column.
    let keys = [14, 35, 41, 42, 52];
    let mut w_e = mat(p + 1, d, 0.05);
    for x in 0..p {
        for col in 0..d {
            let k = keys[col % keys.len()];
            let t = 2.0 * PI * (k * x) as f64 / p as f64 + col as f64;
            w_e.data[x * d + col] += t.cos() as f32;
        }
    }
    let w = ModelWeights {
        arch: Arch::Li2024,
        heads,
        w_e,
        w_pos: None,
        w_q: mat(d, d, inv(d)),
        w_k: mat(d, d, inv(d)),
        w_v: mat(d, d, inv(d)),
        w_o: mat(d, d, inv(d)),
        w_in: mat(d, d_mlp, inv(d)),
        b_in: None,
        w_out: mat(d_mlp, d, inv(d_mlp)),
        b_out: None,
        ln_final_w: Some(vec![1.0; d]),
        w_u: mat(d, p, inv(d)),
    };
    let model = bitgrok::engine::model_file::Model::plain(w);
    let split = TrainSplit {
        train: (0..p * p)
            .filter(|i| i % 10 < 3)
            .map(|i| (i / p, i % p))
            .collect(),
    };
    let cfg = AnalysisConfig::default();
    let mut times = Vec::new();
    let mut sig = None;
    for _ in 0..runs {
        let t = Instant::now();
        sig = Some(analyze(&model, None, Some(&split), &cfg).expect("analysis"));
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let sig = sig.expect("at least one run");
    println!(
        "analyze p={p} d_model={d} heads={heads} d_mlp={d_mlp}: median {:.3} s over {runs} runs (min {:.3} s, max {:.3} s)",
        times[times.len() / 2],
        times[0],
        times[times.len() - 1]
    );
    let top: Vec<usize> = {
        let mut k: Vec<usize> = (1..sig.embedding.norm_by_frequency.len()).collect();
        k.sort_by(|a, b| {
            sig.embedding.norm_by_frequency[*b].total_cmp(&sig.embedding.norm_by_frequency[*a])
        });
        k.truncate(5);
        k.sort();
        k
    };
    println!(
        "embedding top-5 frequencies {top:?}, gini {:.3}, frequencies for {:.0}% energy: {}; clustered neurons {}, dead {}, symmetricity {:.3}, label {}",
        sig.embedding.gini,
        100.0 * sig.embedding.energy_coverage,
        sig.embedding.frequencies_for_coverage,
        sig.neurons.clustered,
        sig.neurons.dead,
        sig.algorithm.gradient_symmetricity,
        sig.algorithm.label
    );
}
