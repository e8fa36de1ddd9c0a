//! The training loop: it learns, it is deterministic (runs, threads, resume), and the
//! straight-through estimator updates the latent weights with the gradient w.r.t. Q(W).

mod common;
use bitgrok::config::{CellConfig, Precision};
use bitgrok::engine::model::run;
use bitgrok::engine::quant::scale;
use bitgrok::engine::train::{
    effective_weights, install_warm, thread_pool, train_cell, Checkpoint, Interrupted, TrainHooks,
    TrainOutput, Trainer,
};
use rayon::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};

/// p = 23, width 32. lr, train_fraction raised from the papers' 1e-3 / 0.3 so that a
/// tiny model groks in about a thousand steps (seeds 0–3 reach 0.95 by step 1,200).
fn tiny(precision: Precision, steps: u64) -> CellConfig {
    let mut cfg = CellConfig {
        precision,
        modulus: 23,
        width: 32,
        ..Default::default()
    };
    cfg.train.steps = steps;
    cfg.train.lr = 3e-3;
    cfg.train.train_fraction = 0.7;
    cfg.train.eval_every = 100.min(steps);
    cfg
}

fn train(cfg: &CellConfig, threads: usize) -> TrainOutput {
    common::train_quietly(cfg, threads).unwrap()
}

#[test]
fn small_fp32_model_generalises() {
    let out = train(&tiny(Precision::Fp32, 1500), 2);
    let best = out.curves.iter().map(|c| c.test_acc).fold(0.0, f64::max);
    assert!(best >= 0.95, "best test accuracy {best}: {:?}", out.curves);
    let steps: Vec<u64> = out.curves.iter().map(|c| c.step).collect();
    assert_eq!(steps, (0..=15).map(|i| i * 100).collect::<Vec<_>>());
}

#[test]
fn ternary_and_binary_models_train() {
    for precision in [Precision::Ternary, Precision::Binary] {
        let cfg = tiny(precision, 600);
        let out = train(&cfg, 2);
        let ln_p = (cfg.modulus as f64).ln();
        let last = out.curves.last().unwrap();
        assert!(
            last.train_loss < 0.25 * ln_p,
            "{precision}: final train loss {}",
            last.train_loss
        );
        // The effective weights are quantized.
        let pairs = out.effective.params().into_iter().zip(out.latent.params());
        for ((spec, eff), (_, lat)) in pairs {
            let name = spec.name;
            if spec.quantized {
                let s = scale(precision, &cfg.quant, lat).unwrap() as f32;
                let allowed: &[f32] = if precision == Precision::Ternary {
                    &[-s, 0.0, s]
                } else {
                    &[-s, s]
                };
                assert!(
                    eff.iter().all(|v| allowed.contains(v)),
                    "{precision} {name} off grid"
                );
            }
        }
    }
}

#[test]
fn the_latent_weights_receive_the_gradient_of_the_quantized_ones() {
    for precision in [Precision::Ternary, Precision::Binary, Precision::Int(4)] {
        let cfg = tiny(precision, 0);
        let split = bitgrok::engine::data::split(&cfg);
        let mut trainer = Trainer::new(&cfg, &split, bitgrok::engine::model::init_weights(&cfg));
        trainer.update();
        trainer.update();
        // By hand: gradient at Q(W), applied to W by AdamW.
        let mut latent = trainer.latent.clone();
        let mut adam = trainer.adam.clone();
        let eff = effective_weights(&cfg, &latent);
        assert_ne!(eff, latent);
        let g = run(
            &eff,
            0,
            cfg.quant.eps,
            cfg.model.attention_mix(),
            &trainer.train,
            true,
            false,
        )
        .grads
        .unwrap();
        adam.step(&cfg.train, &mut latent, &g);
        trainer.update();
        assert_eq!(trainer.latent, latent, "{precision}");
        assert_eq!(trainer.adam, adam);
    }
}

fn assert_same(a: &TrainOutput, b: &TrainOutput) {
    assert_eq!(a.latent, b.latent);
    assert_eq!(a.effective, b.effective);
    assert_eq!(a.init, b.init);
    assert_eq!(a.split, b.split);
    assert_eq!(a.curves, b.curves);
}

#[test]
fn runs_are_bit_identical_across_repeats_and_threads() {
    for precision in [Precision::Fp32, Precision::Ternary] {
        let mut cfg = tiny(precision, 60);
        cfg.train.eval_every = 20;
        let a = train(&cfg, 1);
        let b = train(&cfg, 1);
        let c = train(&cfg, 2);
        assert_same(&a, &b);
        assert_same(&a, &c);
    }
    // nanda2023 with the Grokfast filter and warmup, too.
    let mut cfg = tiny(Precision::Binary, 40);
    cfg.model.arch = bitgrok::config::Arch::Nanda2023;
    cfg.train.grokfast = true;
    cfg.train.warmup_steps = 10;
    assert_same(&train(&cfg, 1), &train(&cfg, 2));
}

/// A step runs with the pool's other threads kept looking for work: nested parallel
/// work still completes with the right result, and the helpers end with it (a
/// broadcast, which needs every thread of the pool, returns).
#[test]
fn kept_warm_pools_finish_their_work_and_their_helpers() {
    for threads in [1, 2, 3, 4] {
        let pool = thread_pool(threads).unwrap();
        for round in 0..300u64 {
            let sum: u64 = install_warm(&pool, || {
                (0..200u64)
                    .into_par_iter()
                    .map(|i| {
                        let (a, b) =
                            rayon::join(|| i * round, || (0..i).into_par_iter().sum::<u64>());
                        a + b
                    })
                    .sum()
            });
            let expected: u64 = (0..200u64)
                .map(|i| i * round + i * i.saturating_sub(1) / 2)
                .sum();
            assert_eq!(sum, expected, "{threads} threads, round {round}");
        }
        assert_eq!(pool.broadcast(|ctx| ctx.index()).len(), threads);
    }
}

/// A run lends a cell the cores of idle workers between steps: the thread count
/// changes mid-training, the bits do not.
#[test]
fn threads_lent_between_steps_keep_the_bits() {
    let mut cfg = tiny(Precision::Ternary, 40);
    cfg.train.eval_every = 20;
    let fixed = train(&cfg, 1);
    let asked = std::sync::atomic::AtomicUsize::new(0);
    // 0, 1, 2, 0, 1, 2, ... more threads, step after step.
    let more = || asked.fetch_add(1, Ordering::SeqCst) % 3;
    let stop = AtomicBool::new(false);
    let lent = train_cell(
        &cfg,
        TrainHooks {
            threads: 1,
            more_threads: &more,
            resume: None,
            on_checkpoint: &mut |_| Ok(()),
            on_progress: &mut |_| {},
            on_snapshot: &mut |_, _| Ok(()),
            stop: &stop,
        },
    )
    .unwrap();
    assert_same(&fixed, &lent);
    assert_eq!((fixed.max_threads, lent.max_threads), (1, 3));
    assert_eq!(asked.load(Ordering::SeqCst), 40, "asked before every step");
}

#[test]
fn a_resumed_run_ends_bit_identical_to_an_uninterrupted_one() {
    for grokfast in [false, true] {
        let mut cfg = tiny(Precision::Ternary, 50);
        cfg.train.eval_every = 20;
        cfg.train.checkpoint_every = 15;
        cfg.train.grokfast = grokfast;
        cfg.train.warmup_steps = 5;
        let whole = train(&cfg, 2);

        // Interrupt after 27 updates (between evaluations and checkpoints).
        let stop = AtomicBool::new(false);
        let mut saved: Vec<Vec<u8>> = Vec::new();
        let err = train_cell(
            &cfg,
            TrainHooks {
                threads: 1,
                more_threads: &|| 0,
                resume: None,
                on_checkpoint: &mut |c: &Checkpoint| {
                    saved.push(c.to_bytes()?);
                    Ok(())
                },
                on_progress: &mut |p| {
                    if p.step == 27 {
                        stop.store(true, Ordering::SeqCst);
                    }
                },
                on_snapshot: &mut |_, _| Ok(()),
                stop: &stop,
            },
        )
        .unwrap_err();
        assert!(err.downcast_ref::<Interrupted>().is_some(), "{err}");
        assert_eq!(saved.len(), 2, "checkpoints at 15 and at the stop");
        let ck = Checkpoint::from_bytes(saved.last().unwrap()).unwrap();
        assert_eq!(ck.step, 27);
        assert_eq!(Checkpoint::from_bytes(&ck.to_bytes().unwrap()).unwrap(), ck);

        // Resume from the stop, and from the periodic checkpoint at 15.
        for bytes in [saved.last().unwrap(), &saved[0]] {
            let stop = AtomicBool::new(false);
            let resumed = train_cell(
                &cfg,
                TrainHooks {
                    threads: 2,
                    more_threads: &|| 0,
                    resume: Some(Checkpoint::from_bytes(bytes).unwrap()),
                    on_checkpoint: &mut |_| Ok(()),
                    on_progress: &mut |_| {},
                    on_snapshot: &mut |_, _| Ok(()),
                    stop: &stop,
                },
            )
            .unwrap();
            assert_same(&whole, &resumed);
        }

        // A checkpoint of another config is refused.
        let mut other = cfg.clone();
        other.seed += 1;
        let stop = AtomicBool::new(false);
        let err = train_cell(
            &other,
            TrainHooks {
                threads: 1,
                more_threads: &|| 0,
                resume: Some(ck),
                on_checkpoint: &mut |_| Ok(()),
                on_progress: &mut |_| {},
                on_snapshot: &mut |_, _| Ok(()),
                stop: &stop,
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("different config"), "{err}");
    }
}

#[test]
fn bad_configs_and_checkpoints_are_refused_with_clear_errors() {
    let mut cfg = tiny(Precision::Fp32, 1);
    cfg.width = 30; // not a multiple of 4 heads
    let err = common::train_quietly(&cfg, 1).unwrap_err();
    assert!(err.to_string().contains("model.heads"), "{err}");
    let err = Checkpoint::from_bytes(b"not a checkpoint").unwrap_err();
    assert!(format!("{err:#}").contains("checkpoint"), "{err:#}");
}

/// Every entry of the quantized matrices `which` selects, and whether each other
/// projection matrix equals its latent (unquantized) weights.
fn projections(out: &TrainOutput) -> Vec<(&'static str, Vec<f32>, bool)> {
    let latent = out.latent.params();
    out.effective
        .params()
        .into_iter()
        .zip(latent)
        .filter(|((spec, _), _)| spec.quantized)
        .map(|((spec, e), (_, l))| (spec.name, e.to_vec(), e == l))
        .collect()
}

/// `quant.scale = "initial"`: binary is c·sign(W − mean W) with c the matrix's
/// initial mean |W|, held while weight decay shrinks the latent weights.
#[test]
fn fixed_magnitude_binary_keeps_each_matrix_at_its_initial_mean_abs() {
    let mut cfg = tiny(Precision::Binary, 300);
    cfg.quant.scale = bitgrok::config::QuantScale::Initial;
    let out = train(&cfg, 1);
    let init = out.init.params();
    for ((name, e, _), (_, w0)) in projections(&out)
        .into_iter()
        .zip(init.into_iter().filter(|(spec, _)| spec.quantized))
    {
        let c = (w0.iter().map(|x| x.abs() as f64).sum::<f64>() / w0.len() as f64) as f32;
        assert!(e.iter().all(|v| v.abs() == c), "{name}: not ±{c}");
        let latent = out.latent.params();
        let (_, now) = latent.iter().find(|(s, _)| s.name == name).unwrap();
        let now = scale(Precision::Binary, &cfg.quant, now).unwrap();
        assert!(
            (now - c as f64).abs() > 1e-4 * c as f64,
            "{name}: the latent scale did not move"
        );
    }
}

/// `quant.scale = "none"`: ternary weights are {−1, 0, 1} and int4 weights the
/// integers −7 … 7, each using more than one level.
#[test]
fn unscaled_grids_are_their_levels() {
    for (precision, m) in [(Precision::Ternary, 1.0f32), (Precision::Int(4), 7.0)] {
        let mut cfg = tiny(precision, 50);
        cfg.quant.scale = bitgrok::config::QuantScale::None;
        let out = train(&cfg, 1);
        for (name, e, _) in projections(&out) {
            assert!(
                e.iter().all(|v| v.fract() == 0.0 && v.abs() <= m),
                "{precision} {name}: off the integer grid"
            );
            let distinct: std::collections::BTreeSet<i32> = e.iter().map(|&v| v as i32).collect();
            assert!(distinct.len() > 1, "{precision} {name}: {distinct:?}");
        }
    }
}

/// `quant.matrices`: `qk` quantizes W_Q and W_K only, `all-but-qk` the other four.
#[test]
fn only_the_selected_matrices_are_quantized() {
    use bitgrok::config::QuantMatrices;
    for matrices in [QuantMatrices::Qk, QuantMatrices::AllButQk] {
        let mut cfg = tiny(Precision::Binary, 20);
        cfg.quant.matrices = matrices;
        let out = train(&cfg, 1);
        for (name, _, equals_latent) in projections(&out) {
            let qk = name.ends_with("W_Q") || name.ends_with("W_K");
            let quantized = matches!(matrices, QuantMatrices::Qk) == qk;
            assert_eq!(!equals_latent, quantized, "{matrices:?} {name}");
        }
    }
}
