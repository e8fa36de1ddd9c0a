//! Model files: strict reading (metadata, --arch, unmodelled tensors, TransformerLens
//! buffers, zero biases, zero sizes) and the TransformerLens export.

use bitgrok::config::{Arch, AttentionMix, CellConfig, ModelConfig, UniformAttention};
use bitgrok::engine::export::{config, state_dict, state_dict_bytes, usage};
use bitgrok::engine::model::init_weights;
use bitgrok::engine::model_file::{metadata, model_from_tensors, Described, Model};
use bitgrok::engine::weights::{from_safetensors_bytes, to_safetensors_bytes, ModelWeights};
use safetensors::Dtype;
use std::collections::BTreeMap;

fn cfg(arch: Arch) -> CellConfig {
    CellConfig {
        modulus: 7,
        width: 8,
        model: ModelConfig {
            arch,
            heads: 2,
            mlp_ratio: 4,
            ..Default::default()
        },
        ..Default::default()
    }
}

/// A TransformerLens-style file (no bitgrok metadata) of `w`, read back.
fn tl_file(
    w: &ModelWeights,
    edit: impl Fn(&mut Vec<(String, Dtype, Vec<usize>, Vec<u8>)>),
) -> Vec<u8> {
    let mut sd = state_dict(w);
    edit(&mut sd);
    state_dict_bytes(&sd, &BTreeMap::new()).unwrap()
}

fn read(bytes: &[u8], given: &Described) -> anyhow::Result<Model> {
    let (t, meta) = from_safetensors_bytes(bytes)?;
    Ok(model_from_tensors(&t, &meta, given, "model.safetensors")?.model)
}

fn li() -> Described {
    Described {
        arch: Some(Arch::Li2024),
        ..Default::default()
    }
}

#[test]
fn a_transformer_lens_file_needs_its_arch_and_then_reads_exactly() {
    for arch in Arch::ALL {
        let w = init_weights(&cfg(arch));
        let bytes = tl_file(&w, |_| {});
        let err = read(&bytes, &Described::default()).unwrap_err().to_string();
        assert!(err.contains("--arch"), "{err}");
        let given = Described {
            arch: Some(arch),
            ..Default::default()
        };
        // li2024's zero pos_embed.W_pos does not make it nanda2023.
        let m = read(&bytes, &given).unwrap();
        assert_eq!(m.weights, w);
        assert_eq!(m.act_bits, 0);
    }
}

#[test]
fn non_zero_unmodelled_tensors_are_refused_by_name() {
    let w = init_weights(&cfg(Arch::Li2024));
    let bytes = tl_file(&w, |sd| {
        let b_u = sd.iter_mut().find(|t| t.0 == "unembed.b_U").unwrap();
        b_u.3[..4].copy_from_slice(&10f32.to_le_bytes());
        let ln1 = (
            "blocks.0.ln1.w".to_string(),
            Dtype::F32,
            vec![8],
            [1f32; 8].iter().flat_map(|x| x.to_le_bytes()).collect(),
        );
        sd.push(ln1);
    });
    let err = read(&bytes, &li()).unwrap_err().to_string();
    assert!(
        err.contains("unembed.b_U") && err.contains("blocks.0.ln1.w"),
        "{err}"
    );
    // A non-zero positional embedding is not li2024's (nanda2023's zero biases are
    // not named: zeros change nothing).
    let w = init_weights(&cfg(Arch::Nanda2023));
    let err = read(&tl_file(&w, |_| {}), &li()).unwrap_err().to_string();
    assert!(
        err.contains("pos_embed.W_pos") && !err.contains("b_in"),
        "{err}"
    );
}

#[test]
fn metadata_describes_the_file_and_flags_may_not_contradict_it() {
    let mut c = cfg(Arch::Nanda2023);
    c.quant.act_bits = 4;
    c.quant.eps = 1e-3;
    let w = init_weights(&c);
    let bytes = to_safetensors_bytes(&w.to_named(), &metadata(&c, "k")).unwrap();
    let m = read(&bytes, &Described::default()).unwrap();
    assert_eq!(
        (m.weights.arch, m.act_bits, m.act_eps),
        (Arch::Nanda2023, 4, 1e-3)
    );
    let err = read(&bytes, &li()).unwrap_err().to_string();
    assert!(err.contains("--arch li2024 contradicts"), "{err}");
    // The attention rate is part of the description.
    c.model.attention_rate = 0.25;
    let bytes = to_safetensors_bytes(&w.to_named(), &metadata(&c, "k")).unwrap();
    assert_eq!(
        read(&bytes, &Described::default()).unwrap().attention.rate,
        0.25
    );
    let said = Described {
        attention_rate: Some(1.0),
        ..Default::default()
    };
    let err = read(&bytes, &said).unwrap_err().to_string();
    assert!(err.contains("--attention-rate 1.0 contradicts"), "{err}");
    // A format-2 file written before the setting existed trained at rate 1.
    let mut old = metadata(&c, "k");
    old.remove("model.attention_rate");
    let bytes = to_safetensors_bytes(&w.to_named(), &old).unwrap();
    assert_eq!(
        read(&bytes, &Described::default()).unwrap().attention.rate,
        1.0
    );
    // Without metadata the flag says it.
    let given = Described {
        attention_rate: Some(0.5),
        ..li()
    };
    let w = init_weights(&cfg(Arch::Li2024));
    assert_eq!(
        read(&tl_file(&w, |_| {}), &given).unwrap().attention.rate,
        0.5
    );
    // The uniform weighting too: written only when summed (files of cells trained
    // before it existed are unchanged), read back, absent meaning mean.
    assert!(!metadata(&c, "k").contains_key("model.uniform_attention"));
    c.model.uniform_attention = UniformAttention::Sum;
    let w = init_weights(&c);
    let bytes = to_safetensors_bytes(&w.to_named(), &metadata(&c, "k")).unwrap();
    let m = read(&bytes, &Described::default()).unwrap();
    assert_eq!(m.attention, c.model.attention_mix());
    let said = Described {
        uniform_attention: Some(UniformAttention::Mean),
        ..Default::default()
    };
    let err = read(&bytes, &said).unwrap_err().to_string();
    assert!(
        err.contains("--uniform-attention mean contradicts"),
        "{err}"
    );
}

#[test]
fn zero_sizes_are_errors_not_panics() {
    let w = init_weights(&cfg(Arch::Li2024));
    for (name, shape) in [
        ("blocks.0.mlp.W_in", vec![8, 0]),
        ("embed.W_E", vec![0, 8]),
        ("unembed.W_U", vec![8, 0]),
        ("blocks.0.attn.W_Q", vec![0, 8, 4]),
    ] {
        let mut t: Vec<_> = w.to_named();
        let e = t.iter_mut().find(|x| x.0 == name).unwrap();
        e.2 = vec![0.0; shape.iter().product()];
        e.1 = shape;
        let bytes = to_safetensors_bytes(&t, &BTreeMap::new()).unwrap();
        assert!(read(&bytes, &li()).is_err(), "{name}");
    }
}

#[test]
fn the_export_has_transformer_lens_names_and_shapes() {
    let list = std::fs::read_to_string("tests/data/transformer_lens_keys.txt").unwrap();
    for arch in Arch::ALL {
        let c = cfg(arch);
        let w = init_weights(&c);
        let dim = |s: &str| match s {
            "d_vocab" => 8,
            "d_vocab_out" => 7,
            "d_model" => 8,
            "n_heads" => 2,
            "d_head" => 4,
            "d_mlp" => 32,
            "n_ctx" => 3,
            other => panic!("unknown dimension {other}"),
        };
        let mut want: Vec<(String, Vec<usize>)> = list
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter_map(|l| {
                let mut f = l.splitn(3, ' ');
                let (who, name, shape) = (f.next()?, f.next()?, f.next()?);
                (who == "both" || who == arch.to_string()).then(|| {
                    let dims = shape.trim_matches(|c| c == '[' || c == ']');
                    let shape = dims
                        .split(", ")
                        .filter(|s| !s.is_empty())
                        .map(dim)
                        .collect();
                    (name.to_string(), shape)
                })
            })
            .collect();
        want.sort();
        let sd = state_dict(&w);
        let got: Vec<(String, Vec<usize>)> =
            sd.iter().map(|t| (t.0.clone(), t.2.clone())).collect();
        assert_eq!(got, want, "{arch}");
        // The export reads back as the same model (its zeros and buffers skipped).
        let given = Described {
            arch: Some(arch),
            ..Default::default()
        };
        assert_eq!(
            read(&state_dict_bytes(&sd, &BTreeMap::new()).unwrap(), &given)
                .unwrap()
                .weights,
            w
        );
        let tl3 = config(&Model::plain(w.clone()), 3);
        let scale = if arch == Arch::Li2024 {
            8f64.sqrt()
        } else {
            2.0
        };
        assert!((tl3["attn_scale"].as_f64().unwrap() - scale).abs() < 1e-12);
        assert_eq!(tl3["d_vocab"], 8);
    }
}

#[test]
fn the_usage_names_the_attention_rate_hook_only_below_rate_one() {
    let w = init_weights(&cfg(Arch::Nanda2023));
    let plain = usage(&Model::plain(w.clone()));
    assert_eq!(plain["attention_rate"], 1.0);
    assert!(plain["attention_rate_hook"].is_null());
    let mixed = usage(&Model {
        attention: AttentionMix {
            rate: 0.5,
            ..AttentionMix::SOFTMAX
        },
        ..Model::plain(w)
    });
    assert_eq!(mixed["attention_rate"], 0.5);
    assert!(mixed["attention_rate_hook"]["blocks.0.attn.hook_pattern"].is_string());
}
