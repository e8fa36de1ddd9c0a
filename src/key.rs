//! Content keys: a cell's key is the blake3 hash of its canonical training config
//! plus [`ENGINE_VERSION`]; an analysis key hashes the analysis settings plus
//! [`ANALYSIS_VERSION`].
//!
//! Canonical text: one `dotted.key = value` line per setting, sorted by key; floats
//! in their shortest round-trip spelling with a decimal point, so `1e-3` and `0.001`,
//! `1` and `1.0` (for a float setting), key order, comments and formatting of the
//! sweep file never change a key.

use crate::config::{AnalysisConfig, CellConfig};
use toml::Value;

/// Bump when a change to training code changes what a given config learns; every
/// cell key changes with it, so old results are never mistaken for new ones.
pub const ENGINE_VERSION: u32 = 1;

/// Bump when a change to the analysis changes its results for given weights.
pub const ANALYSIS_VERSION: u32 = 10;

/// Settings that do not change the trained model and so are not in the cell key.
pub const NOT_IN_CELL_KEY: &[&str] = &["train.checkpoint_every"];

/// Training settings added after the first engine version. Each enters the key
/// text only when it differs from its default, so adding one leaves the key of every
/// existing cell unchanged (a cell trained before the setting existed trained with
/// its default). Append a setting here when it is added to `config.rs`.
pub const KEYED_WHEN_NOT_DEFAULT: &[&str] = &[
    "train.snapshot_every",
    "model.attention_rate",
    "model.uniform_attention",
    "model.init",
    "quant.scale",
    "quant.matrices",
    "model.eq_init_scale",
    "train.eq_update_every",
];

/// Hex digits of a key shown by `bitgrok plan`.
pub const SHORT_KEY_LEN: usize = 12;

/// The cell key: 64 hex digits, of the config's [`CellConfig::trained_form`], so
/// settings the training cannot read never split one model into several keys.
pub fn cell_key(cfg: &CellConfig) -> String {
    blake3::hash(training_text(&cfg.trained_form()).as_bytes())
        .to_hex()
        .to_string()
}

/// The key a cell had before keys hashed the trained form (the config as the sweep
/// wrote it). Where it differs from [`cell_key`], a store may hold the cell under
/// it; [`crate::store::Artifacts::adopt_legacy`] moves it to its key.
pub fn legacy_cell_key(cfg: &CellConfig) -> String {
    blake3::hash(training_text(cfg).as_bytes())
        .to_hex()
        .to_string()
}

/// The analysis key: 64 hex digits.
pub fn analysis_key(a: &AnalysisConfig) -> String {
    blake3::hash(analysis_text(a).as_bytes())
        .to_hex()
        .to_string()
}

/// The exact text hashed into the cell key.
pub fn training_text(cfg: &CellConfig) -> String {
    let defaults = flat_lines(
        "",
        &Value::try_from(CellConfig::default()).expect("CellConfig serialises"),
    );
    let at_default = |k: &str, v: &str| {
        KEYED_WHEN_NOT_DEFAULT.contains(&k) && defaults.iter().any(|(dk, dv)| dk == k && dv == v)
    };
    let mut lines = vec![format!("engine_version = {ENGINE_VERSION}")];
    lines.extend(
        flat_lines("", &Value::try_from(cfg).expect("CellConfig serialises"))
            .into_iter()
            .filter(|(k, v)| !NOT_IN_CELL_KEY.contains(&k.as_str()) && !at_default(k, v))
            .map(|(k, v)| format!("{k} = {v}")),
    );
    lines.join("\n") + "\n"
}

/// The exact text hashed into the analysis key.
pub fn analysis_text(a: &AnalysisConfig) -> String {
    let mut lines = vec![format!("analysis_version = {ANALYSIS_VERSION}")];
    lines.extend(
        flat_lines("", &Value::try_from(a).expect("AnalysisConfig serialises"))
            .into_iter()
            .map(|(k, v)| format!("{k} = {v}")),
    );
    lines.join("\n") + "\n"
}

/// The full resolved config as canonical TOML (stored as `cell.toml`): top-level
/// settings, then one table per section, keys sorted. It includes
/// `train.checkpoint_every` and parses back into the same [`CellConfig`].
pub fn cell_toml(cfg: &CellConfig) -> String {
    let v = Value::try_from(cfg).expect("CellConfig serialises");
    let Value::Table(t) = &v else { unreachable!() };
    let mut keys: Vec<&String> = t.keys().collect();
    keys.sort();
    let mut out = String::new();
    for k in &keys {
        if !matches!(t[*k], Value::Table(_)) {
            out += &format!("{k} = {}\n", toml_value(&t[*k]));
        }
    }
    for k in &keys {
        if let Value::Table(_) = &t[*k] {
            out += &format!("\n[{k}]\n");
            for (sub, val) in flat_lines("", &t[*k]) {
                out += &format!("{sub} = {val}\n");
            }
        }
    }
    out
}

/// Sorted `(dotted key, canonical TOML value)` pairs of a table.
fn flat_lines(prefix: &str, v: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Value::Table(t) = v {
        for (k, v) in t {
            let key = format!("{prefix}{k}");
            match v {
                Value::Table(_) => out.extend(flat_lines(&format!("{key}."), v)),
                _ => out.push((key, toml_value(v))),
            }
        }
    }
    out.sort();
    out
}

/// A value in canonical TOML spelling.
fn toml_value(v: &Value) -> String {
    match v {
        Value::Float(f) => format_float(*f),
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(toml_value).collect::<Vec<_>>().join(", ")
        ),
        other => other.to_string(),
    }
}

/// The one spelling of a float in key texts ([`crate::text::float`]).
pub use crate::text::float as format_float;
