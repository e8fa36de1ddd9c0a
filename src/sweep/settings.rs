//! The settings registry: every setting a sweep file may give, its type and
//! default, derived from [`CellConfig::default()`] and [`AnalysisConfig::default()`],
//! so a field added to `config.rs` is at once a valid fixed setting, axis and
//! `[[cells]]` key; and the conversion of written values to those types.

use crate::config::{AnalysisConfig, CellConfig, PRECISION_NAMES};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::OnceLock;
use toml::Value;

/// The TOML type a setting takes, derived from its default value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    Bool,
    Integer,
    /// An integer is accepted and converted.
    Float,
    String,
    /// A fixed-length array, e.g. `train.betas`.
    Array(Box<Kind>, usize),
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kind::Bool => write!(f, "true or false"),
            Kind::Integer => write!(f, "an integer"),
            Kind::Float => write!(f, "a number (integer or float)"),
            Kind::String => write!(f, "a string"),
            Kind::Array(k, n) => write!(f, "an array of {n} values, each {k}"),
        }
    }
}

/// Whether a setting changes the trained model or only its analysis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Training,
    Analysis,
}

/// One known setting: its dotted name (`train.lr`), type and default.
#[derive(Clone, Debug, PartialEq)]
pub struct SettingInfo {
    pub key: String,
    pub kind: Kind,
    pub default: Value,
    pub scope: Scope,
}

/// All known settings, training settings first, each group in dotted-name order.
pub fn settings() -> &'static [SettingInfo] {
    static SETTINGS: OnceLock<Vec<SettingInfo>> = OnceLock::new();
    SETTINGS.get_or_init(|| {
        let mut out = Vec::new();
        let training = Value::try_from(CellConfig::default()).expect("CellConfig serialises");
        flatten_defaults("", &training, Scope::Training, &mut out);
        let analysis =
            Value::try_from(AnalysisConfig::default()).expect("AnalysisConfig serialises");
        flatten_defaults("analysis.", &analysis, Scope::Analysis, &mut out);
        out
    })
}

fn flatten_defaults(prefix: &str, v: &Value, scope: Scope, out: &mut Vec<SettingInfo>) {
    let Value::Table(t) = v else {
        unreachable!("config structs serialise to tables")
    };
    let mut keys: Vec<&String> = t.keys().collect();
    keys.sort();
    for k in keys {
        let v = &t[k];
        let key = format!("{prefix}{k}");
        if let Value::Table(_) = v {
            flatten_defaults(&format!("{key}."), v, scope, out);
        } else {
            out.push(SettingInfo {
                key,
                kind: kind_of(v),
                default: v.clone(),
                scope,
            });
        }
    }
}

fn kind_of(v: &Value) -> Kind {
    match v {
        Value::Boolean(_) => Kind::Bool,
        Value::Integer(_) => Kind::Integer,
        Value::Float(_) => Kind::Float,
        Value::String(_) => Kind::String,
        Value::Array(a) => Kind::Array(Box::new(kind_of(&a[0])), a.len()),
        Value::Datetime(_) | Value::Table(_) => unreachable!("no config field has this type"),
    }
}

/// The known setting with this dotted name.
pub fn setting(key: &str) -> Option<&'static SettingInfo> {
    settings().iter().find(|s| s.key == key)
}

/// The sections (`model`, `quant`, `train`, `analysis`, ...) that hold settings.
pub fn sections() -> Vec<&'static str> {
    let mut out: Vec<&str> = Vec::new();
    for s in settings() {
        if let Some((section, _)) = s.key.split_once('.') {
            if !out.contains(&section) {
                out.push(section);
            }
        }
    }
    out
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a date",
        Value::Array(_) => "an array",
        Value::Table(_) => "a table",
    }
}

/// Convert `v` to the type of `kind` (integers become floats where a float is
/// expected), or say what was expected.
pub(crate) fn convert_kind(kind: &Kind, v: &Value) -> Result<Value, String> {
    let wrong = || format!("expected {kind}, found {}", type_name(v));
    match (kind, v) {
        (Kind::Bool, Value::Boolean(_))
        | (Kind::Integer, Value::Integer(_))
        | (Kind::String, Value::String(_)) => Ok(v.clone()),
        (Kind::Float, Value::Float(f)) if f.is_finite() => Ok(v.clone()),
        (Kind::Float, Value::Float(f)) => {
            Err(format!("{f} is not allowed (allowed: a finite number)"))
        }
        (Kind::Float, Value::Integer(i)) => Ok(Value::Float(*i as f64)),
        (Kind::Array(k, n), Value::Array(a)) => {
            if a.len() != *n {
                return Err(format!("expected {kind}, found an array of {}", a.len()));
            }
            a.iter()
                .map(|e| convert_kind(k, e))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array)
        }
        _ => Err(wrong()),
    }
}

/// Convert a value for a known setting and check it deserialises into the config
/// (catches unknown enum names and negative counts).
pub(crate) fn convert(info: &SettingInfo, v: &Value) -> Result<Value, String> {
    let v = convert_kind(&info.kind, v)?;
    if info.key == "precision" {
        if let Value::String(s) = &v {
            s.parse::<crate::config::Precision>()?;
        }
    }
    let mut one = BTreeMap::new();
    one.insert(info.key.clone(), v.clone());
    resolve(&one).map_err(|e| {
        let e = e.trim_end().to_string();
        if info.key == "precision" {
            format!("{e} (allowed: {})", PRECISION_NAMES.join(", "))
        } else {
            e
        }
    })?;
    Ok(v)
}

/// Build the full configuration of one cell: defaults overridden by `values`
/// (dotted names to already converted values).
pub fn resolve(values: &BTreeMap<String, Value>) -> Result<(CellConfig, AnalysisConfig), String> {
    let mut training = Value::try_from(CellConfig::default()).map_err(|e| e.to_string())?;
    let mut analysis = Value::try_from(AnalysisConfig::default()).map_err(|e| e.to_string())?;
    for (key, v) in values {
        let (root, path) = match key.strip_prefix("analysis.") {
            Some(rest) => (&mut analysis, rest),
            None => (&mut training, key.as_str()),
        };
        let mut node = root;
        let parts: Vec<&str> = path.split('.').collect();
        for part in &parts[..parts.len() - 1] {
            node = node
                .get_mut(*part)
                .ok_or_else(|| format!("unknown setting `{key}`"))?;
        }
        let Value::Table(t) = node else {
            return Err(format!("unknown setting `{key}`"));
        };
        t.insert(parts[parts.len() - 1].to_string(), v.clone());
    }
    let cfg: CellConfig = training
        .try_into()
        .map_err(|e: toml::de::Error| clean(&e))?;
    let an: AnalysisConfig = analysis
        .try_into()
        .map_err(|e: toml::de::Error| clean(&e))?;
    Ok((cfg, an))
}

fn clean(e: &toml::de::Error) -> String {
    let m = e.message().trim();
    ["expected usize", "expected u64", "expected u32"]
        .iter()
        .fold(m.to_string(), |m, t| {
            m.replace(t, "expected an integer >= 0")
        })
}

/// The value of setting `key` (dotted name) in a resolved configuration, as shown to
/// users ([`value_text`]); the inverse of [`resolve`] for one key.
pub fn effective_value(cfg: &CellConfig, an: &AnalysisConfig, key: &str) -> String {
    let (root, path) = match key.strip_prefix("analysis.") {
        Some(rest) => (Value::try_from(an), rest),
        None => (Value::try_from(cfg), key),
    };
    let root = root.expect("config structs serialise");
    path.split('.')
        .try_fold(&root, |node, part| node.get(part))
        .map(value_text)
        .unwrap_or_default()
}

/// A value as shown to users: strings bare, floats in their shortest spelling.
pub fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Float(f) => crate::text::float(*f),
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(value_text).collect::<Vec<_>>().join(", ")
        ),
        other => other.to_string(),
    }
}

/// Convert a parsed TOML value to a plain `toml::Value`.
pub(crate) fn to_value(v: &toml_edit::Value) -> Value {
    match v {
        toml_edit::Value::String(s) => Value::String(s.value().clone()),
        toml_edit::Value::Integer(i) => Value::Integer(*i.value()),
        toml_edit::Value::Float(f) => Value::Float(*f.value()),
        toml_edit::Value::Boolean(b) => Value::Boolean(*b.value()),
        toml_edit::Value::Datetime(d) => Value::String(d.value().to_string()),
        toml_edit::Value::Array(a) => Value::Array(a.iter().map(to_value).collect()),
        toml_edit::Value::InlineTable(t) => Value::Table(
            t.iter()
                .map(|(k, v)| (k.to_string(), to_value(v)))
                .collect(),
        ),
    }
}

/// The closest of `candidates` to `word` by edit distance, when close enough to be a
/// likely typo. A candidate whose last dotted part equals `word`'s last part wins.
pub(crate) fn suggest(word: &str, candidates: &[String]) -> Option<String> {
    let leaf = |s: &str| {
        s.rsplit('.')
            .next()
            .unwrap_or(s)
            .trim_matches(['[', ']'])
            .to_string()
    };
    let word_leaf = leaf(word);
    if let Some(c) = candidates
        .iter()
        .find(|c| leaf(c) == word_leaf && c.as_str() != word)
    {
        return Some(c.clone());
    }
    if let Some(c) = candidates
        .iter()
        .find(|c| word_leaf.len() >= 2 && leaf(c).starts_with(&word_leaf))
    {
        return Some(c.clone());
    }
    candidates
        .iter()
        .map(|c| (strsim::levenshtein(word, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min()
        .map(|(_, c)| c.clone())
}
