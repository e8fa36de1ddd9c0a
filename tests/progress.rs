//! Snapshots and progress measures over training (`train.snapshot_every`).

use bitgrok::analysis::progress::{phases, progress_rows};
use bitgrok::analysis::{analyze, TrainSplit};
use bitgrok::config::{AnalysisConfig, CellConfig, Precision};
use bitgrok::engine::model_file::Model;
use bitgrok::engine::train::{snapshot_steps, Interrupted, TrainOutput};

mod common;
use common::{bitgrok, cell_dirs, run_sweep, text, tiny_sweep, train_until};

/// A p = 23, width 32 cell that memorises and then generalises within 3,000 steps
/// (the smoke sweep's fp32 seed-0 cell), with snapshots every `every` steps.
fn grokking_cell(steps: u64, every: u64) -> CellConfig {
    let mut cfg = CellConfig {
        precision: Precision::Fp32,
        modulus: 23,
        width: 32,
        ..CellConfig::default()
    };
    cfg.train.steps = steps;
    cfg.train.lr = 3e-3;
    cfg.train.train_fraction = 0.5;
    cfg.train.eval_every = 100;
    cfg.train.snapshot_every = every;
    cfg
}

fn split_of(out: &TrainOutput) -> TrainSplit {
    TrainSplit {
        train: out
            .split
            .train
            .iter()
            .map(|&(a, b)| (a as usize, b as usize))
            .collect(),
    }
}

#[test]
fn snapshots_are_the_weights_of_a_run_stopped_there_and_survive_a_resume() {
    let mut cfg = grokking_cell(60, 25);
    cfg.precision = Precision::Ternary;
    cfg.train.eval_every = 20;
    assert_eq!(snapshot_steps(&cfg), [0, 25, 50, 60]);
    let (whole, snaps, _) = train_until(&cfg, None, None);
    let whole = whole.unwrap();
    let steps: Vec<u64> = snaps.iter().map(|s| s.0).collect();
    assert_eq!(steps, [0, 25, 50, 60]);
    assert_eq!(snaps[3].1, whole.effective);
    // The snapshot at 25 equals the final effective weights of a 25-step run.
    let mut short = cfg.clone();
    short.train.steps = 25;
    short.train.eval_every = 25;
    let (short_out, _, _) = train_until(&short, None, None);
    assert_eq!(snaps[1].1, short_out.unwrap().effective);

    // Interrupt after 37 updates, resume: the snapshots of both parts are the
    // uninterrupted run's, bit for bit.
    let (err, first, checkpoints) = train_until(&cfg, None, Some(37));
    assert!(err.unwrap_err().downcast_ref::<Interrupted>().is_some());
    let resume = checkpoints.last().cloned().expect("a checkpoint on stop");
    let (resumed, second, _) = train_until(&cfg, Some(resume), None);
    resumed.unwrap();
    let mut all = first;
    for s in second {
        if !all.iter().any(|(step, _)| *step == s.0) {
            all.push(s);
        }
    }
    assert_eq!(all, snaps);
}

#[test]
fn progress_on_the_final_snapshot_equals_the_final_signature_and_the_circuit_forms_first() {
    let cfg = grokking_cell(3000, 100);
    let (out, snaps, _) = train_until(&cfg, None, None);
    let out = out.unwrap();
    let split = split_of(&out);
    let an = AnalysisConfig::default();
    let model = Model::of_cell(&cfg, out.effective.clone());
    let sig = analyze(&model, Some(&out.curves), Some(&split), &an).unwrap();
    assert!(sig.outcome.generalised, "{:?}", sig.outcome);
    let snaps: Vec<(u64, Model)> = snaps
        .into_iter()
        .map(|(step, w)| (step, Model::of_cell(&cfg, w)))
        .collect();
    let rows = progress_rows(&snaps, &sig, &split, &an).unwrap();
    assert_eq!(rows.len(), 31);
    let last = rows.last().unwrap();
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-5 * b.abs().max(1e-6);
    assert!(close(last.restricted_loss, sig.logits.restricted_loss));
    assert!(close(last.excluded_loss, sig.logits.excluded_loss));
    assert!(close(last.gini, sig.embedding.gini));
    assert_eq!(last.n_key_frequencies, sig.neurons.key_frequencies.len());
    assert!(close(
        last.train_loss,
        sig.outcome.final_train_loss.unwrap()
    ));
    assert!(close(last.test_loss, sig.outcome.final_test_loss.unwrap()));
    assert_eq!(
        last.gradient_symmetricity,
        sig.algorithm.gradient_symmetricity
    );
    assert_eq!(last.attention_tv, sig.algorithm.attention.tv_from_uniform);
    assert_eq!(last.qk_norm, sig.algorithm.attention.qk_norm);
    assert_eq!(last.eq_norm_ratio, sig.algorithm.query.eq_norm_ratio);
    assert_eq!(last.score_spread, sig.algorithm.query.score_spread);
    assert!(close(
        last.ablation_loss_increase,
        sig.algorithm.ablation.loss_increase
    ));
    // The step-0 snapshot is the initial weights the signature's `query_init` reads.
    let init = bitgrok::analysis::initial_query_path(&cfg);
    assert_eq!(rows[0].step, 0);
    assert_eq!(rows[0].score_spread, init.score_spread);
    assert_eq!(rows[0].eq_norm_ratio, init.eq_norm_ratio);
    assert_eq!(
        Some(last.zero_fraction_mean),
        bitgrok::analysis::zero_fraction_mean(&sig.quantization)
    );

    // The ordering the progress-measures paper reports: after memorisation the
    // excluded loss (final key frequencies removed) rises before the test loss falls.
    let half = (cfg.modulus as f64).ln() / 2.0;
    let memorised = sig.outcome.step_memorised.expect("memorised");
    let after = |f: &dyn Fn(&bitgrok::analysis::progress::ProgressRow) -> bool| {
        rows.iter()
            .find(|r| r.step >= memorised && f(r))
            .map(|r| r.step)
    };
    let excluded_rise = after(&|r| r.excluded_loss >= half).expect("excluded loss rises");
    let test_fall = after(&|r| r.test_loss <= half).expect("test loss falls");
    assert!(
        excluded_rise <= test_fall,
        "excluded loss rose at {excluded_rise}, test loss fell at {test_fall}: {rows:#?}"
    );
    let ph = phases(&rows, cfg.modulus, &sig.outcome);
    assert_eq!(ph.step_circuit_start, Some(excluded_rise));
    assert!(ph.step_cleanup_start.is_some() && ph.step_cleanup_end.is_some());
}

#[test]
fn a_sweep_with_snapshots_stores_them_checksummed_and_tables_carry_progress() {
    let dir = tempfile::tempdir().unwrap();
    let body = "[grid]\nprecision = [\"fp32\", \"ternary\"]\n\
                [train]\nsteps = 120\neval_every = 20\nsnapshot_every = 50\n";
    let sweep = tiny_sweep(dir.path(), "snap", body);
    let art = dir.path().join("art");
    run_sweep(&sweep, &art);
    let cells = cell_dirs(&art);
    assert_eq!(cells.len(), 2);
    for c in &cells {
        let manifest = std::fs::read_to_string(c.join("manifest.json")).unwrap();
        for step in [0, 50, 100, 120] {
            let name = format!("snapshots/step-{step:08}.safetensors");
            assert!(c.join(&name).is_file(), "{name}");
            assert!(manifest.contains(&name), "{name} not in the manifest");
        }
    }
    let progress = std::fs::read_to_string(art.join("sweeps/snap/progress.csv")).unwrap();
    let lines: Vec<&str> = progress.lines().collect();
    assert!(
        lines[0].starts_with("precision,key,step,train_loss,"),
        "{}",
        lines[0]
    );
    assert_eq!(lines.len(), 1 + 2 * 4, "{progress}");
    let cells_csv = std::fs::read_to_string(art.join("sweeps/snap/cells.csv")).unwrap();
    assert!(cells_csv
        .lines()
        .next()
        .unwrap()
        .contains("step_circuit_start"));
    // The zero fraction over training: none in fp32, ternary's rounding zeroes some
    // weights at every snapshot, and the last snapshot's equals the cell's.
    let column = |table: &str, name: &str| -> Vec<(String, String)> {
        let rows: Vec<Vec<&str>> = table.lines().map(|l| l.split(',').collect()).collect();
        let at = |n: &str| rows[0].iter().position(|c| *c == n).unwrap();
        let (p, v) = (at("precision"), at(name));
        rows[1..]
            .iter()
            .map(|r| (r[p].to_string(), r[v].to_string()))
            .collect()
    };
    let zeros = column(&progress, "zero_fraction_mean");
    for (precision, z) in &zeros {
        let z: f64 = z.parse().unwrap();
        match precision.as_str() {
            "fp32" => assert_eq!(z, 0.0),
            _ => assert!(z > 0.0 && z < 1.0, "ternary zero fraction {z}"),
        }
    }
    let finals = column(&cells_csv, "zero_fraction_mean");
    assert_eq!(zeros[3], finals[0]);
    assert_eq!(zeros[7], finals[1]);

    // `analyze KEY` stores what `run` stores: the progress table and the phases.
    let key = cells[0].file_name().unwrap().to_str().unwrap().to_string();
    let again = dir.path().join("again");
    let out = bitgrok(&[
        "analyze",
        &key,
        "--artifacts",
        art.to_str().unwrap(),
        "--out",
        again.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stored = std::fs::read_dir(cells[0].join("analysis"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    for file in ["progress.csv", "signature.json"] {
        assert_eq!(
            std::fs::read(again.join(file)).unwrap(),
            std::fs::read(stored.join(file)).unwrap(),
            "{file}"
        );
    }

    // A damaged snapshot makes the cell count as corrupt: it is named and rebuilt.
    let snap = cells[0].join("snapshots/step-00000050.safetensors");
    let good = std::fs::read(&snap).unwrap();
    let mut bad = good.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    std::fs::write(&snap, bad).unwrap();
    let out = bitgrok(&[
        "run",
        sweep.to_str().unwrap(),
        "--artifacts",
        art.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("step-00000050.safetensors"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(std::fs::read(&snap).unwrap(), good);
}

#[test]
fn weights_files_with_metadata_have_the_same_bytes_every_time() {
    use bitgrok::engine::weights::{from_safetensors_bytes, to_safetensors_bytes};
    let tensors = vec![
        ("b".to_string(), vec![2, 3], vec![1.5f32; 6]),
        ("a".to_string(), vec![3], vec![-2.0f32; 3]),
    ];
    let meta: std::collections::BTreeMap<String, String> = (0..12)
        .map(|i| (format!("bitgrok.k{i}"), format!("v{i}")))
        .collect();
    let first = to_safetensors_bytes(&tensors, &meta).unwrap();
    for _ in 0..20 {
        assert_eq!(to_safetensors_bytes(&tensors, &meta).unwrap(), first);
    }
    let n = u64::from_le_bytes(first[..8].try_into().unwrap()) as usize;
    assert_eq!((8 + n) % 8, 0, "data starts 8-byte aligned");
    let (back, back_meta) = from_safetensors_bytes(&first).unwrap();
    assert_eq!(back_meta, meta);
    assert_eq!(back.len(), 2);
}
