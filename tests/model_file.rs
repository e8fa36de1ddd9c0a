//! Model files: strict reading (metadata, --arch, unmodelled tensors, TransformerLens
//! buffers, zero biases, zero sizes) and the TransformerLens export.

use bitgrok::config::{Arch, AttentionMix, CellConfig, ModelConfig, UniformAttention};
use bitgrok::engine::export::{config, state_dict, state_dict_bytes, usage, Check};
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

/// What a file without metadata needs said: its arch, act bits and attention rate.
fn described(arch: Arch) -> Described {
    Described {
        arch: Some(arch),
        act_bits: Some(0),
        attention_rate: Some(1.0),
        ..Default::default()
    }
}

fn li() -> Described {
    described(Arch::Li2024)
}

#[test]
fn a_transformer_lens_file_needs_how_it_runs_and_then_reads_exactly() {
    for arch in Arch::ALL {
        let w = init_weights(&cfg(arch));
        let bytes = tl_file(&w, |_| {});
        let err = read(&bytes, &Described::default()).unwrap_err().to_string();
        assert!(
            err.contains("missing: --arch, --act-bits, --attention-rate"),
            "{err}"
        );
        // Nothing is guessed: the arch alone, or without the rate, is not enough.
        for partial in [
            Described {
                arch: Some(arch),
                ..Default::default()
            },
            Described {
                attention_rate: None,
                ..described(arch)
            },
        ] {
            let err = read(&bytes, &partial).unwrap_err().to_string();
            assert!(
                err.contains("missing: ") && !err.contains("--arch,"),
                "{err}"
            );
        }
        // Below rate 1 the uniform weighting must be said too.
        let mixed = Described {
            attention_rate: Some(0.5),
            ..described(arch)
        };
        let err = read(&bytes, &mixed).unwrap_err().to_string();
        assert!(err.contains("--uniform-attention"), "{err}");
        let given = described(arch);
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
fn bridge_names_are_refused_with_how_to_save_readable_ones() {
    let w = init_weights(&cfg(Arch::Li2024));
    let bytes = tl_file(&w, |sd| {
        for t in sd.iter_mut() {
            match t.0.as_str() {
                "embed.W_E" => t.0 = "embed.weight".into(),
                "blocks.0.attn.W_Q" => t.0 = "blocks.0.attn.q.weight".into(),
                _ => {}
            }
        }
    });
    let err = read(&bytes, &li()).unwrap_err().to_string();
    assert!(
        err.contains("bridge names (embed.weight, blocks.0.attn.q.weight)")
            && err.contains("tl_parameters()"),
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
    // Without metadata the flags say it.
    let given = Described {
        attention_rate: Some(0.5),
        uniform_attention: Some(UniformAttention::Sum),
        ..li()
    };
    let w = init_weights(&cfg(Arch::Li2024));
    assert_eq!(
        read(&tl_file(&w, |_| {}), &given).unwrap().attention,
        AttentionMix {
            rate: 0.5,
            uniform: UniformAttention::Sum
        }
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
        let given = described(arch);
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

fn hook_names(u: &serde_json::Value, major: &str) -> Vec<String> {
    u["hooks"][major]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            format!(
                "{} {}",
                h["apply"].as_str().unwrap(),
                h["hook"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn the_usage_lists_each_majors_hooks_and_the_values_to_check_against() {
    let check = Check {
        loss: 1.5,
        accuracy: 0.25,
        max_abs_logit: 20.0,
    };
    let w = init_weights(&cfg(Arch::Nanda2023));
    let plain = usage(&Model::plain(w.clone()), check);
    assert_eq!(plain["attention_rate"], 1.0);
    assert_eq!(plain["uniform_attention"], "mean");
    for major in ["3", "4"] {
        assert!(hook_names(&plain, major).is_empty(), "{major}");
    }
    assert!(plain["mix_attention"].is_null() && plain["quantize"].is_null());
    assert_eq!(plain["check"]["all_pairs_loss"], 1.5);
    assert_eq!(plain["check"]["all_pairs_accuracy"], 0.25);
    // 3.x needs dtype as a torch.dtype, which JSON cannot hold: left at its default.
    for major in [3, 4] {
        assert!(config(&Model::plain(w.clone()), major)
            .get("dtype")
            .is_none());
    }

    // Below rate 1 the pattern hook, with the uniform part per (query, key): causal
    // nanda2023 spreads (1 − rate) over the positions ≤ the query (mean) or gives
    // each (1 − rate) (sum); bidirectional li2024 sees all three everywhere.
    let at = |arch: Arch, uniform: UniformAttention| Model {
        attention: AttentionMix { rate: 0.5, uniform },
        ..Model::plain(init_weights(&cfg(arch)))
    };
    let sixth = 0.5 / 3.0;
    for (arch, uniform, want) in [
        (
            Arch::Nanda2023,
            UniformAttention::Mean,
            serde_json::json!([[0.5, 0.0, 0.0], [0.25, 0.25, 0.0], [sixth, sixth, sixth]]),
        ),
        (
            Arch::Nanda2023,
            UniformAttention::Sum,
            serde_json::json!([[0.5, 0.0, 0.0], [0.5, 0.5, 0.0], [0.5, 0.5, 0.5]]),
        ),
        (
            Arch::Li2024,
            UniformAttention::Mean,
            serde_json::json!([
                [sixth, sixth, sixth],
                [sixth, sixth, sixth],
                [sixth, sixth, sixth]
            ]),
        ),
    ] {
        let u = usage(&at(arch, uniform), check);
        assert_eq!(
            u["mix_attention"]["uniform_part"], want,
            "{arch} {uniform:?}"
        );
        assert_eq!(u["uniform_attention"], uniform.name());
        for major in ["3", "4"] {
            assert_eq!(
                hook_names(&u, major),
                ["mix_attention blocks.0.attn.hook_pattern"]
            );
        }
    }

    // Quantized activations: six quantizer hooks per major, at that major's names;
    // 3.x's config switches on the hook points it needs.
    let act = Model {
        act_bits: 4,
        ..Model::plain(w)
    };
    let u = usage(&act, check);
    let (tl3, tl4) = (hook_names(&u, "3"), hook_names(&u, "4"));
    assert_eq!(tl3.len(), 6);
    assert_eq!(tl4.len(), 6);
    assert!(tl3.contains(&"quantize blocks.0.hook_q_input".to_string()));
    assert!(tl4.contains(&"quantize blocks.0.attn.q.hook_in".to_string()));
    assert!(u["quantize"].is_string());
    assert_eq!(config(&act, 3)["use_split_qkv_input"], true);
    assert!(config(&act, 4).get("use_split_qkv_input").is_none());
    // Quantizer rounding ties may move a few inputs there (1 %, at least 2), and no
    // input elsewhere.
    assert_eq!(u["check"]["inputs_off_allowed"], 2);
    assert_eq!(plain["check"]["inputs_off_allowed"], 0);
    assert_eq!(u["check"]["accuracy_tolerance"], 2.0 / 49.0);
    let big = Model {
        act_bits: 4,
        ..Model::plain(init_weights(&CellConfig {
            modulus: 113,
            ..cfg(Arch::Li2024)
        }))
    };
    assert_eq!(usage(&big, check)["check"]["inputs_off_allowed"], 128);
    // The loss may move by twice the largest logit difference allowed.
    let tol = plain["check"]["loss_tolerance"].as_f64().unwrap();
    assert!(
        (tol - 2.0 * Check::LOGIT_TOLERANCE * 20.0).abs() < 1e-15,
        "{tol}"
    );
}
