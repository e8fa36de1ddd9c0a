//! Times `bitgrok report` on a synthetic 100-cell sweep of paper-size cells (4
//! precisions × 25 seeds, p = 113, width 128, 10,000 steps evaluated every 100) in
//! a temporary folder. Every cell has a real model file (one random model), curves,
//! and a full-size signature with 5 key frequencies of 3+ clustered neurons each.
//! Prints the time and size of the first report (every cell page written) and of a
//! second one (cell pages unchanged).
//!
//! `cargo run --release --example report_bench [DIR]` (DIR keeps the artifacts, to
//! look at the report; default a temporary folder).

#[path = "common/synthetic.rs"]
mod synthetic;

use bitgrok::analysis::{analyze, signature_json, CurvePoint};
use bitgrok::config::AnalysisConfig;
use bitgrok::engine::model_file::{cell_model_files, Model};
use bitgrok::report::aggregate::read_sweep_of;
use bitgrok::report::aggregate::SweepCell;
use bitgrok::report::html::write_report;
use bitgrok::store;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn main() {
    let w = synthetic::paper_size_model();
    let (p, d_mlp) = (w.modulus(), w.d_mlp());
    let base = analyze(
        &Model::plain(w.clone()),
        None,
        None,
        &AnalysisConfig::default(),
    )
    .expect("analysis");

    let tmp = tempfile::tempdir().expect("temporary folder");
    let kept = std::env::args().nth(1).map(std::path::PathBuf::from);
    let root = kept.as_deref().unwrap_or(tmp.path());
    std::fs::create_dir_all(root).unwrap();
    let sweep_path = root.join("bench.toml");
    std::fs::write(
        &sweep_path,
        "name = \"bench\"\nmodulus = 113\nwidth = 128\n[grid]\n\
         precision = [\"fp32\", \"ternary\", \"binary\", \"int4\"]\n\
         seed = [0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24]\n",
    )
    .unwrap();
    let sweep = bitgrok::sweep::load(&sweep_path).expect("sweep");
    let cells = sweep.cells.clone();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for cell in &cells {
        let sc = SweepCell::from(cell);
        let mut sig = base.clone();
        let mut keys: Vec<usize> = (0..5).map(|_| rng.gen_range(1..=p / 2)).collect();
        keys.sort_unstable();
        keys.dedup();
        for (i, row) in sig.neuron_table.iter_mut().enumerate() {
            row.clustered = i % 8 < keys.len();
            row.best_frequency = row.clustered.then(|| keys[i % 8]).or(row.best_frequency);
        }
        sig.neurons.neurons_per_key_frequency = keys
            .iter()
            .map(|&k| bitgrok::analysis::KeyFrequency {
                frequency: k,
                neurons: sig
                    .neuron_table
                    .iter()
                    .filter(|r| r.clustered && r.best_frequency == Some(k))
                    .count(),
            })
            .collect();
        sig.neurons.clustered = sig.neuron_table.iter().filter(|r| r.clustered).count();
        sig.neurons.fraction_clustered = sig.neurons.clustered as f64 / d_mlp as f64;
        sig.neurons.key_frequencies = keys;
        sig.algorithm.label = bitgrok::analysis::labels::Label::Mixed;
        sig.algorithm.gradient_symmetricity = rng.gen();
        sig.algorithm.distance_irrelevance = Some(rng.gen());
        let grok = rng.gen_range(1_000.0..9_000.0);
        let curves: Vec<CurvePoint> = (0..=100)
            .map(|i| {
                let step = i as u64 * 100;
                let t = 1.0 / (1.0 + (-(step as f64 - grok) / 400.0).exp());
                CurvePoint {
                    step,
                    train_loss: 4.0 * (-(step as f64) / 300.0).exp() + 1e-4,
                    train_acc: 1.0 - 0.95 * (-(step as f64) / 300.0).exp(),
                    test_loss: 6.0 * (1.0 - t) + 1e-3,
                    test_acc: 0.01 + 0.99 * t,
                }
            })
            .collect();
        sig.outcome.step_generalised = Some(grok as u64);
        sig.outcome.final_test_acc = Some(1.0);
        let dir = root.join("cells").join(&sc.key);
        std::fs::create_dir_all(&dir).unwrap();
        // Every file a done cell lists (the model files as training writes them;
        // the others placeholders: the report reads curves, model and signature).
        let mut files: Vec<(String, Vec<u8>)> = cell_model_files(&cell.config, &sc.key, &w, &w)
            .unwrap()
            .into_iter()
            .map(|(n, b)| (n.to_string(), b))
            .collect();
        files.push(("cell.toml".into(), cell.canonical_toml().into_bytes()));
        for f in ["split.csv", "init.safetensors", "train.log"] {
            files.push((f.into(), Vec::new()));
        }
        for (name, bytes) in &files {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
        std::fs::write(dir.join("curves.csv"), store::curves_csv(&curves).unwrap()).unwrap();
        let json = signature_json(&sig).unwrap();
        // Every file a finished analysis has (the report reads only the signature).
        store::write_dir_atomic(&dir.join("analysis").join(&sc.analysis_key), |t| {
            for name in store::ANALYSIS_FILES {
                let placeholder = name != "signature.json";
                std::fs::write(t.join(name), if placeholder { "x\n" } else { &json })?;
            }
            Ok(())
        })
        .unwrap();
        let mut manifest = store::new_manifest(&sc.key, 0, 1);
        manifest.steps = 10_000;
        for f in files.iter().map(|(n, _)| n.as_str()).chain(["curves.csv"]) {
            manifest
                .files
                .insert(f.into(), store::hash_file(&dir.join(f)).unwrap());
        }
        std::fs::write(
            dir.join("manifest.json"),
            serde_json::to_string(&manifest).unwrap(),
        )
        .unwrap();
    }
    let out = root.join("sweeps").join("bench");
    for run in [
        "first report (all cell pages written)",
        "second report (cell pages kept)",
    ] {
        // Timed as `bitgrok report` runs: one read of the store, then the report.
        let start = std::time::Instant::now();
        let read = read_sweep_of(root, &sweep).expect("read");
        let s = write_report(root, &sweep, &read, &out).expect("report");
        let seconds = start.elapsed().as_secs_f64();
        let figures: u64 = std::fs::read_dir(out.join("figures"))
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();
        let pages: Vec<u64> = std::fs::read_dir(out.join("cells"))
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .collect();
        println!(
            "{run}: {} cells, {:.2} s; report.html {:.2} MB, figures/ {:.2} MB, {} cell pages of {:.2} MB max",
            cells.len(),
            seconds,
            s.html_bytes as f64 / 1e6,
            figures as f64 / 1e6,
            pages.len(),
            pages.iter().max().copied().unwrap_or(0) as f64 / 1e6
        );
    }
}
