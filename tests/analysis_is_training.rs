//! The analysed model is the trained model: the analysis, reading a stored cell,
//! computes the losses training reported, for every architecture, precision and
//! activation quantizer and attention rate; and cells stored before format 2 read the same.

mod common;
use bitgrok::analysis::{analyze, TrainSplit};
use bitgrok::config::{AnalysisConfig, Arch, CellConfig, ModelConfig, Precision, UniformAttention};
use bitgrok::engine::model_file::{LATENT_FILE, MODEL_FILE};
use bitgrok::engine::train::TrainOutput;
use bitgrok::engine::weights::{to_safetensors_bytes, LATENT_PREFIX};
use bitgrok::store::read_cell_model;
use std::collections::BTreeMap;
use std::path::Path;

fn cell(arch: Arch, precision: Precision, act_bits: u32) -> CellConfig {
    let mut cfg = CellConfig {
        precision,
        modulus: 7,
        width: 8,
        seed: 1,
        model: ModelConfig {
            arch,
            heads: 2,
            mlp_ratio: 2,
            // Attention mixed with summed uniform parts in the act_bits 4 cells, so
            // the analysis must read rate and weighting from the stored model to
            // match training.
            attention_rate: if act_bits == 4 { 0.5 } else { 1.0 },
            uniform_attention: if act_bits == 4 {
                UniformAttention::Sum
            } else {
                UniformAttention::Mean
            },
            ..Default::default()
        },
        ..Default::default()
    };
    cfg.quant.act_bits = act_bits;
    cfg.train.steps = 4;
    cfg.train.eval_every = 2;
    cfg.train.lr = 1e-2;
    cfg.train.train_fraction = 0.5;
    cfg
}

fn train_and_store(cfg: &CellConfig, dir: &Path) -> TrainOutput {
    let out = common::train_quietly(cfg, 1).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("cell.toml"), bitgrok::key::cell_toml(cfg)).unwrap();
    let key = bitgrok::key::cell_key(cfg);
    bitgrok::store::save_trained_cell(dir, &key, &out, 0, 1).unwrap();
    out
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-5 * b.abs()
}

#[test]
fn analysis_losses_are_the_final_training_losses() {
    let acfg = AnalysisConfig {
        symmetricity_triples: 3,
        ..Default::default()
    };
    let root = tempfile::tempdir().unwrap();
    for arch in Arch::ALL {
        for precision in [
            Precision::Fp32,
            Precision::Ternary,
            Precision::Binary,
            Precision::Int(4),
        ] {
            for act_bits in [0, 8, 4] {
                let cfg = cell(arch, precision, act_bits);
                let ctx = format!("{arch} {precision} act_bits {act_bits}");
                let dir = root.path().join(ctx.replace(' ', "_"));
                let out = train_and_store(&cfg, &dir);
                assert_eq!(
                    dir.join(LATENT_FILE).exists(),
                    precision != Precision::Fp32,
                    "{ctx}"
                );
                let (_, model) = read_cell_model(&dir).unwrap();
                assert_eq!(model.act_bits, act_bits, "{ctx}");
                assert_eq!(model.weights, out.effective, "{ctx}");
                let split = TrainSplit {
                    train: out
                        .split
                        .train
                        .iter()
                        .map(|&(a, b)| (a as usize, b as usize))
                        .collect(),
                };
                let sig = analyze(&model, None, Some(&split), &acfg).unwrap();
                let last = out.curves.last().unwrap();
                let (train, test) = (
                    sig.outcome.final_train_loss.unwrap(),
                    sig.outcome.final_test_loss.unwrap(),
                );
                assert!(
                    close(train, last.train_loss) && close(test, last.test_loss),
                    "{ctx}: analysis train/test {train}/{test}, training {}/{}",
                    last.train_loss,
                    last.test_loss
                );
            }
        }
    }
}

#[test]
fn a_format_1_cell_reads_as_it_was_trained() {
    let root = tempfile::tempdir().unwrap();
    let cfg = cell(Arch::Nanda2023, Precision::Ternary, 4);
    let out = train_and_store(&cfg, root.path());
    let (_, new) = read_cell_model(root.path()).unwrap();
    // Rewrite the cell as format 1 did: latent weights beside the effective ones,
    // only the key in the metadata, no latent.safetensors.
    let mut tensors = out.effective.to_named();
    tensors.extend(
        out.latent
            .to_named()
            .into_iter()
            .map(|(n, s, d)| (format!("{LATENT_PREFIX}{n}"), s, d)),
    );
    let meta = BTreeMap::from([("bitgrok.key".to_string(), "k".to_string())]);
    std::fs::write(
        root.path().join(MODEL_FILE),
        to_safetensors_bytes(&tensors, &meta).unwrap(),
    )
    .unwrap();
    std::fs::remove_file(root.path().join(LATENT_FILE)).unwrap();
    let (_, old) = read_cell_model(root.path()).unwrap();
    assert_eq!(old, new);
    assert_eq!(old.act_bits, 4);
}
