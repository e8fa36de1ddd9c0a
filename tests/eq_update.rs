//! The record of how AdamW moves the `=` embedding (`train.eq_update_every`).

use bitgrok::config::{CellConfig, Precision};
use bitgrok::engine::data::split;
use bitgrok::engine::eq_update::{eq_row, EqUpdateWindow};
use bitgrok::engine::model::init_weights;
use bitgrok::engine::reference::{loss_and_grads, Params64};
use bitgrok::engine::train::{Checkpoint, TrainOutput};

mod common;
use common::{cell_dirs, run_sweep, tiny_sweep, train_until};

fn cell(precision: Precision, steps: u64, every: u64) -> CellConfig {
    let mut cfg = CellConfig {
        precision,
        modulus: 17,
        width: 32,
        ..CellConfig::default()
    };
    cfg.train.steps = steps;
    cfg.train.lr = 3e-3;
    cfg.train.train_fraction = 0.5;
    cfg.train.eval_every = steps.min(10);
    cfg.train.eq_update_every = every;
    cfg
}

/// Train to the end (or after `stop_at` updates), keeping the checkpoints.
fn train(
    cfg: &CellConfig,
    resume: Option<Checkpoint>,
    stop_at: Option<u64>,
) -> (anyhow::Result<TrainOutput>, Vec<Checkpoint>) {
    let (out, _, checkpoints) = train_until(cfg, resume, stop_at);
    (out, checkpoints)
}

fn part(w: &EqUpdateWindow, name: &str) -> f64 {
    w.get(name).unwrap()
}

#[test]
fn recording_leaves_the_bits_and_its_parts_add_up_to_the_change_of_e_eq() {
    for precision in [Precision::Fp32, Precision::Binary] {
        let traced = train(&cell(precision, 60, 7), None, None).0.unwrap();
        let mut plain_cfg = cell(precision, 60, 7);
        plain_cfg.train.eq_update_every = 0;
        let plain = train(&plain_cfg, None, None).0.unwrap();
        assert_eq!(traced.latent, plain.latent, "{precision:?}");
        assert_eq!(traced.curves, plain.curves);
        assert!(plain.eq_update.is_empty());

        // Windows of 7 updates, the last one cut at step 60.
        let steps: Vec<u64> = traced.eq_update.iter().map(|w| w.step).collect();
        assert_eq!(steps, vec![7, 14, 21, 28, 35, 42, 49, 56, 60]);
        let updates: u64 = traced.eq_update.iter().map(|w| w.updates).sum();
        assert_eq!(updates, 60);
        assert_eq!(
            traced.eq_update.last().unwrap().get("eq_norm").unwrap(),
            eq_row(&traced.latent)
                .iter()
                .map(|&x| x as f64 * x as f64)
                .sum::<f64>()
                .sqrt()
        );
        for w in &traced.eq_update {
            // The update is θ − lr·(Adam's step + wd·θ): its radial part, measured on
            // the f32 weights, is the two parts computed from the optimizer's state.
            let (loss, decay) = (part(w, "loss_part"), part(w, "decay_part"));
            let change = part(w, "radial_change");
            assert!(decay < 0.0);
            assert!(
                (change - (loss + decay)).abs() <= 1e-4 * (loss.abs() + decay.abs()),
                "{precision:?} step {}: change {change} vs {loss} + {decay}",
                w.step
            );
            for c in ["gradient_cos", "momentum_cos", "adam_cos"] {
                assert!(part(w, c).abs() <= 1.0 + 1e-12);
            }
        }
    }
}

#[test]
fn the_first_update_is_measured_against_the_reference_gradient() {
    let cfg = cell(Precision::Fp32, 3, 1);
    let out = train(&cfg, None, None).0.unwrap();
    let first = &out.eq_update[0];
    assert_eq!((first.step, first.updates), (1, 1));
    // The f64 reference backward pass at the initial weights, independently of the
    // fast pass training runs.
    let init = init_weights(&cfg);
    let pairs = split(&cfg).train;
    let (_, _, grads) = loss_and_grads(
        &Params64::from_weights(&init),
        &pairs,
        cfg.quant.act_bits,
        cfg.quant.eps,
        cfg.model.attention_mix(),
        true,
    );
    let g = grads.unwrap();
    let p = cfg.modulus;
    let g: Vec<f64> = g.w_e.data[p * g.w_e.cols..(p + 1) * g.w_e.cols].to_vec();
    let theta: Vec<f64> = eq_row(&init).iter().map(|&x| x as f64).collect();
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    let grad_cos = -dot(&g, &theta) / (norm(&g) * norm(&theta));
    assert!((part(first, "gradient_cos") - grad_cos).abs() < 1e-4);
    // After one update Adam's first moment, bias-corrected, is the gradient.
    assert!((part(first, "momentum_cos") - part(first, "gradient_cos")).abs() < 1e-12);
    // And its normalised step is g/(|g|+ε) per coordinate: the gradient's signs.
    let signs: Vec<f64> = g.iter().map(|x| x.signum()).collect();
    let adam_cos = -dot(&signs, &theta) / (norm(&signs) * norm(&theta));
    assert!((part(first, "adam_cos") - adam_cos).abs() < 1e-4);
    let lr = cfg.train.lr;
    let unit: Vec<f64> = theta.iter().map(|x| x / norm(&theta)).collect();
    assert!((part(first, "loss_part") + lr * dot(&signs, &unit)).abs() < 1e-4 * lr);
    assert!((part(first, "decay_part") + lr * cfg.train.weight_decay * norm(&theta)).abs() < 1e-12);
}

#[test]
fn a_resumed_run_records_what_an_uninterrupted_one_does() {
    let mut cfg = cell(Precision::Ternary, 40, 6);
    cfg.train.checkpoint_every = 10;
    let whole = train(&cfg, None, None).0.unwrap();
    // Interrupted after 15 updates: mid-window (windows end at 12 and 18).
    let (stopped, checkpoints) = train(&cfg, None, Some(15));
    assert!(stopped.is_err());
    // Through its bytes, as a resumed run reads it.
    let last = Checkpoint::from_bytes(&checkpoints.last().unwrap().to_bytes().unwrap()).unwrap();
    assert_eq!(last.step, 15);
    assert_eq!(last.eq_update.as_ref().unwrap().windows.len(), 2);
    let resumed = train(&cfg, Some(last), None).0.unwrap();
    assert_eq!(resumed.latent, whole.latent);
    assert_eq!(resumed.eq_update, whole.eq_update);
}

#[test]
fn a_traced_sweep_stores_the_record_and_tables_it() {
    let dir = tempfile::tempdir().unwrap();
    let art = dir.path().join("art");
    let body = "[grid]\nprecision = [\"fp32\", \"binary\"]\n\
                [train]\nsteps = 30\neval_every = 10\neq_update_every = 10\n";
    run_sweep(&tiny_sweep(dir.path(), "traced", body), &art);
    let table = std::fs::read_to_string(art.join("sweeps/traced/eq_update.csv")).unwrap();
    let mut lines = table.lines();
    assert_eq!(
        lines.next().unwrap(),
        "precision,key,step,updates,eq_norm,radial_change,loss_part,decay_part,\
         gradient_cos,momentum_cos,adam_cos"
    );
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 6);
    assert!(rows[0].starts_with("fp32,") && rows[3].starts_with("binary,"));
    // Each cell keeps its record, listed (so checksummed) in its manifest.
    for cell in cell_dirs(&art) {
        let manifest = std::fs::read_to_string(cell.join("manifest.json")).unwrap();
        assert!(manifest.contains("\"eq_update.csv\""));
        let windows = bitgrok::engine::eq_update::from_csv(
            &std::fs::read_to_string(cell.join("eq_update.csv")).unwrap(),
        )
        .unwrap();
        assert_eq!(
            windows.iter().map(|w| w.step).collect::<Vec<_>>(),
            [10, 20, 30]
        );
    }
    // A sweep without the record has no such table.
    let plain = tiny_sweep(
        dir.path(),
        "plain",
        "[train]\nsteps = 10\neval_every = 10\n",
    );
    run_sweep(&plain, &art);
    assert!(art.join("sweeps/plain/cells.csv").exists());
    assert!(!art.join("sweeps/plain/eq_update.csv").exists());
}
