//! Times `aggregate` on a synthetic artifacts tree of 1,000 done cells (4 precisions
//! × 2 widths × 125 seeds) in a temporary folder. Every cell has a manifest, a few
//! other files, and a full-size signature (p = 113, d_mlp = 512: the real analysis
//! of one random model, with per-cell key frequencies and outcome figures varied).
//! Prints the median of several runs.
//!
//! `cargo run --release --example aggregate_bench [runs]`

#[path = "common/synthetic.rs"]
mod synthetic;

use bitgrok::analysis::{analyze, signature_json};
use bitgrok::config::AnalysisConfig;
use bitgrok::report::aggregate::{aggregate, SweepCell};
use bitgrok::store;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Instant;

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("runs must be a number"))
        .unwrap_or(5);
    let w = synthetic::paper_size_model();
    let p = w.modulus();
    let cfg = AnalysisConfig::default();
    let akey = bitgrok::key::analysis_key(&cfg);
    let base = analyze(
        &bitgrok::engine::model_file::Model::plain(w),
        None,
        None,
        &cfg,
    )
    .expect("analysis");

    let tmp = tempfile::tempdir().expect("temporary folder");
    let root = tmp.path();
    let axis_names: Vec<String> = ["precision", "width", "seed"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut cells = Vec::new();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut json_bytes = 0usize;
    for precision in ["fp32", "ternary", "binary", "int4"] {
        for width in ["64", "128"] {
            for seed in 0..125 {
                let key = blake3::hash(format!("{precision}/{width}/{seed}").as_bytes())
                    .to_hex()
                    .to_string();
                let mut sig = base.clone();
                let mut keys: Vec<usize> = (0..5).map(|_| rng.gen_range(1..=p / 2)).collect();
                keys.sort_unstable();
                keys.dedup();
                for row in &mut sig.frequency_table {
                    row.key = keys.contains(&row.frequency);
                    row.neurons = if row.key { rng.gen_range(1..40) } else { 0 };
                }
                sig.neurons.key_frequencies = keys;
                sig.outcome.final_test_acc = Some(rng.gen());
                sig.outcome.step_generalised = Some(rng.gen_range(100..10_000));
                sig.logits.restricted_ratio = Some(rng.gen_range(0.5..2.0));
                sig.algorithm.gradient_symmetricity = rng.gen();
                let dir = root.join("cells").join(&key);
                std::fs::create_dir_all(dir.join("analysis")).expect("cell folder");
                let json = signature_json(&sig).expect("signature JSON");
                json_bytes += json.len();
                // Written as the runner writes them: files with checksums in manifests.
                store::write_dir_atomic(&dir.join("analysis").join(&akey), |tmp| {
                    for name in store::ANALYSIS_FILES {
                        let placeholder = name != "signature.json";
                        std::fs::write(tmp.join(name), if placeholder { "x\n" } else { &json })?;
                    }
                    Ok(())
                })
                .expect("analysis folder");
                let mut manifest = store::new_manifest(&key, 0, 1);
                manifest.seconds = rng.gen_range(10.0..100.0);
                manifest.steps = 10_000;
                // Every file a done cell must list, as placeholders (aggregate reads
                // only the manifest and the signature).
                for other in store::CELL_FILES {
                    std::fs::write(dir.join(other), "x\n").expect("write");
                    let hash = store::hash_file(&dir.join(other)).expect("hash");
                    manifest.files.insert(other.to_string(), hash);
                }
                std::fs::write(
                    dir.join("manifest.json"),
                    serde_json::to_string(&manifest).expect("manifest JSON"),
                )
                .expect("write");
                cells.push(SweepCell {
                    axes: vec![
                        ("precision".into(), precision.into()),
                        ("width".into(), width.into()),
                        ("seed".into(), seed.to_string()),
                    ],
                    key,
                    analysis_key: akey.clone(),
                });
            }
        }
    }

    let out = root.join("sweeps").join("bench");
    let mut times = Vec::new();
    let mut report = None;
    for _ in 0..runs {
        let t = Instant::now();
        report = Some(aggregate(root, &axis_names, &cells, &out).expect("aggregate"));
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let report = report.expect("at least one run");
    println!(
        "aggregate {} cells ({} done, {:.1} MB of signatures): median {:.3} s over {runs} runs (min {:.3} s, max {:.3} s)",
        report.cells,
        report.done,
        json_bytes as f64 / 1e6,
        times[times.len() / 2],
        times[0],
        times[times.len() - 1]
    );
}
