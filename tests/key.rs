//! Cell key stability and sensitivity.

use bitgrok::config::{AnalysisConfig, CellConfig};
use bitgrok::key::{self, analysis_key, cell_key, cell_toml};
use bitgrok::sweep::grid;
use bitgrok::sweep::settings;
use std::collections::HashSet;
use std::path::Path;
use toml::Value;

fn keys_of(text: &str) -> Vec<String> {
    let s = bitgrok::sweep::load_str(Path::new("k.toml"), text).unwrap_or_else(|e| panic!("{e}"));
    grid::expand(&s)
        .iter()
        .map(|c| cell_key(&c.config))
        .collect()
}

const BASE: &str = r#"
name = "k"
[grid]
precision = ["fp32", "binary"]
seed = [0, 1]
[train]
lr = 0.001
weight_decay = 1.0
steps = 500
eval_every = 50
"#;

#[test]
fn key_is_64_hex_digits() {
    let k = cell_key(&CellConfig::default());
    assert_eq!(k.len(), 64);
    assert!(k.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(k, cell_key(&CellConfig::default()));
}

#[test]
fn formatting_does_not_change_keys() {
    let base = keys_of(BASE);
    assert_eq!(base.len(), 4);
    let variants = [
        // Reordered keys and sections, comments, other whitespace.
        r#"
# a comment
name = "k"
[train]   # another
eval_every = 50
steps    = 500
weight_decay = 1.0
lr = 0.001
[grid]
precision = ["fp32", "binary"]
seed = [0, 1]
"#,
        // 1e-3 vs 0.001, 1 vs 1.0, dotted keys instead of a section.
        r#"
name = "other-name"
description = "names and descriptions are not settings"
train.lr = 1e-3
train.weight_decay = 1
train.steps = 500
train.eval_every = 50
[grid]
precision = ["fp32", "binary"]
seed = [0, 1]
"#,
        // Adding single-valued axes equal to the defaults.
        r#"
name = "k"
[grid]
precision = ["fp32", "binary"]
modulus = [113]
seed = [0, 1]
"train.betas" = [[0.9, 0.98]]
[train]
lr = 0.001
weight_decay = 1.0
steps = 500
eval_every = 50
"#,
        // Spelling out defaults as fixed settings; changing checkpoint_every.
        r#"
name = "k"
width = 128
[model]
arch = "li2024"
heads = 4
[grid]
precision = ["fp32", "binary"]
seed = [0, 1]
[train]
lr = 0.001
weight_decay = 1.0
steps = 500
eval_every = 50
checkpoint_every = 7
"#,
    ];
    for v in variants {
        assert_eq!(keys_of(v), base, "{v}");
    }
}

#[test]
fn analysis_settings_do_not_change_cell_keys() {
    let with = BASE.to_string() + "[analysis]\nfve_threshold = 0.5\nsymmetricity_triples = 10\n";
    assert_eq!(keys_of(&with), keys_of(BASE));
}

/// A different valid value for every kind of setting.
fn changed(key: &str, v: &Value) -> Value {
    match v {
        Value::Boolean(b) => Value::Boolean(!b),
        Value::Integer(i) => Value::Integer(i + 4),
        Value::Float(f) => Value::Float(f * 0.5 + 0.001),
        Value::String(s) => Value::String(match key {
            "precision" => if s == "fp32" { "binary" } else { "fp32" }.into(),
            "model.arch" => if s == "li2024" { "nanda2023" } else { "li2024" }.into(),
            "model.uniform_attention" => if s == "mean" { "sum" } else { "mean" }.into(),
            "model.init" => if s == "fan-in" { "zhong2023" } else { "fan-in" }.into(),
            "quant.scale" => if s == "per-step" { "none" } else { "per-step" }.into(),
            "quant.matrices" => if s == "all" { "qk" } else { "all" }.into(),
            _ => panic!("no alternative value for {key}: add one here"),
        }),
        Value::Array(a) => {
            let mut a = a.clone();
            a[0] = changed(key, &a[0]);
            Value::Array(a)
        }
        other => panic!("unexpected {other:?}"),
    }
}

/// Settings a cell's training reads only in some configs, and one such config.
fn where_read(key: &str) -> Vec<(&'static str, Value)> {
    match key {
        "quant.binary_scale" => vec![("precision", Value::String("binary".into()))],
        "quant.ternary_center" | "quant.eps" | "quant.scale" | "quant.matrices" => {
            vec![("precision", Value::String("ternary".into()))]
        }
        "train.grokfast_alpha" | "train.grokfast_lambda" => {
            vec![("train.grokfast", Value::Boolean(true))]
        }
        "model.uniform_attention" => vec![("model.attention_rate", Value::Float(0.5))],
        _ => vec![],
    }
}

#[test]
fn every_training_setting_changes_the_key() {
    let mut seen = HashSet::new();
    for s in settings::settings() {
        let mut one = std::collections::BTreeMap::new();
        for (k, v) in where_read(&s.key) {
            one.insert(k.to_string(), v);
        }
        let base = cell_key(&settings::resolve(&one).unwrap().0);
        one.insert(s.key.clone(), changed(&s.key, &s.default));
        let (cfg, an) = settings::resolve(&one).unwrap();
        let k = cell_key(&cfg);
        let in_key =
            s.scope == settings::Scope::Training && !key::NOT_IN_CELL_KEY.contains(&s.key.as_str());
        if in_key {
            assert_ne!(k, base, "{} does not change the key", s.key);
            assert!(seen.insert(k), "{} collides", s.key);
        } else {
            assert_eq!(k, base, "{} must not change the cell key", s.key);
        }
        if s.scope == settings::Scope::Analysis {
            assert_ne!(
                analysis_key(&an),
                analysis_key(&AnalysisConfig::default()),
                "{}",
                s.key
            );
        }
    }
    assert!(
        seen.len() >= 20,
        "only {} training settings tested",
        seen.len()
    );
}

#[test]
fn settings_added_later_enter_the_key_only_off_their_default() {
    let text = key::training_text(&CellConfig::default());
    for k in key::KEYED_WHEN_NOT_DEFAULT {
        assert!(settings::setting(k).is_some(), "{k} is not a setting");
        assert!(
            !text.contains(&format!("{k} =")),
            "{k} at its default is in the key"
        );
    }
}

#[test]
fn engine_version_is_in_the_hashed_text() {
    let text = key::training_text(&CellConfig::default());
    assert!(text.starts_with(&format!("engine_version = {}\n", key::ENGINE_VERSION)));
    assert!(!text.contains("checkpoint_every"));
    assert!(text.contains("train.lr = 0.001\n"), "{text}");
    let a = key::analysis_text(&AnalysisConfig::default());
    assert!(a.starts_with(&format!("analysis_version = {}\n", key::ANALYSIS_VERSION)));
}

#[test]
fn cell_toml_round_trips_and_is_sorted() {
    let mut cfg = CellConfig::default();
    cfg.train.lr = 3e-3;
    cfg.quant.eps = 1e-5;
    cfg.train.weight_decay = 1.0;
    let text = cell_toml(&cfg);
    let back: CellConfig = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(back, cfg);
    assert_eq!(cell_key(&back), cell_key(&cfg));
    assert!(text.contains("checkpoint_every = 1000\n"));
    assert!(text.contains("weight_decay = 1.0\n"));
    let sections: Vec<&str> = text.lines().filter(|l| l.starts_with('[')).collect();
    assert_eq!(sections, ["[model]", "[quant]", "[train]"]);
    let train: Vec<&str> = text
        .split("[train]\n")
        .nth(1)
        .unwrap()
        .lines()
        .map(|l| l.split(" = ").next().unwrap())
        .collect();
    let mut sorted = train.clone();
    sorted.sort();
    assert_eq!(train, sorted);
}

#[test]
fn float_spelling() {
    assert_eq!(key::format_float(1e-3), "0.001");
    assert_eq!(key::format_float(1.0), "1.0");
    assert_eq!(key::format_float(-0.0), "0.0");
    assert_eq!(key::format_float(0.98), "0.98");
    assert_eq!(key::format_float(1e-8).parse::<f64>().unwrap(), 1e-8);
}

#[test]
fn settings_the_training_cannot_read_do_not_change_the_key() {
    use bitgrok::config::{Precision, QuantMatrices, QuantScale, UniformAttention};
    let fp32 = CellConfig::default();
    let key = |f: &dyn Fn(&mut CellConfig)| {
        let mut c = fp32.clone();
        f(&mut c);
        cell_key(&c)
    };
    let base = cell_key(&fp32);
    // Not read by this cell: the same key, though the legacy key differs.
    let unread: [&dyn Fn(&mut CellConfig); 7] = [
        &|c| c.quant.binary_scale = !c.quant.binary_scale,
        &|c| c.quant.ternary_center = !c.quant.ternary_center,
        &|c| c.quant.eps = 1e-3,
        &|c| c.train.grokfast_alpha = 0.5,
        &|c| c.model.uniform_attention = UniformAttention::Sum,
        &|c| c.quant.scale = QuantScale::Initial,
        &|c| c.quant.matrices = QuantMatrices::Qk,
    ];
    for f in unread {
        assert_eq!(key(f), base);
        let mut c = fp32.clone();
        f(&mut c);
        assert_ne!(key::legacy_cell_key(&c), base);
    }
    // Read once the precision, act_bits, Grokfast or rate makes them matter: then
    // the change moves the key.
    let contexts: [&dyn Fn(&mut CellConfig); 7] = [
        &|c| c.precision = Precision::Binary,
        &|c| c.precision = Precision::Ternary,
        &|c| c.quant.act_bits = 8,
        &|c| c.train.grokfast = true,
        &|c| c.model.attention_rate = 0.5,
        &|c| c.precision = Precision::Int(4),
        &|c| c.precision = Precision::Binary,
    ];
    for (context, change) in contexts.iter().zip(unread) {
        let both = key(&|c: &mut CellConfig| {
            context(c);
            change(c)
        });
        assert_ne!(both, key(*context));
    }
}

#[test]
fn smoke_keys_are_unchanged_by_the_trained_form() {
    // The committed smoke tables were trained before keys hashed the trained form.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let smoke = bitgrok::sweep::load(&root.join("sweeps/smoke.toml")).unwrap();
    for c in grid::expand(&smoke) {
        assert_eq!(cell_key(&c.config), key::legacy_cell_key(&c.config));
    }
}
