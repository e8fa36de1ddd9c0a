//! The nearest stored cell to a configuration, for `plan --explain`: why a cell is
//! not done, said as the settings that differ from the closest cell on disk.

use crate::config::CellConfig;
use crate::store::{Artifacts, CellStatus};
use std::collections::BTreeMap;

/// Every done cell's key and flattened config (dotted name -> value text), by key.
pub fn stored_configs(artifacts: &Artifacts) -> Vec<(String, BTreeMap<String, String>)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(artifacts.cells_dir()) else {
        return out;
    };
    for e in entries.flatten() {
        let key = e.file_name().to_string_lossy().into_owned();
        if !matches!(artifacts.status_with(&key, false), CellStatus::Done(_)) {
            continue;
        }
        if let Ok(text) = std::fs::read_to_string(e.path().join("cell.toml")) {
            if let Ok(value) = text.parse::<toml::Table>() {
                out.push((key, flatten(&toml::Value::Table(value))));
            }
        }
    }
    out.sort();
    out
}

/// A config as dotted names to value texts, without settings outside the key.
pub fn flatten(v: &toml::Value) -> BTreeMap<String, String> {
    fn walk(prefix: &str, v: &toml::Value, out: &mut BTreeMap<String, String>) {
        match v {
            toml::Value::Table(t) => {
                for (k, v) in t {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, v, out);
                }
            }
            other => {
                out.insert(
                    prefix.to_string(),
                    crate::sweep::settings::value_text(other),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk("", v, &mut out);
    for k in crate::key::NOT_IN_CELL_KEY {
        out.remove(*k);
    }
    out
}

/// The stored cell with the fewest differing settings (ties: the smallest key) and
/// those differences as `name (stored -> wanted)`.
pub fn nearest<'a>(
    config: &CellConfig,
    stored: &'a [(String, BTreeMap<String, String>)],
) -> Option<(&'a str, Vec<String>)> {
    let mine = flatten(&toml::Value::try_from(config).expect("config serialises"));
    stored
        .iter()
        .map(|(k, theirs)| {
            let diffs: Vec<String> = mine
                .iter()
                .filter(|(name, v)| theirs.get(*name) != Some(v))
                .map(|(name, v)| {
                    format!(
                        "{name} ({} -> {v})",
                        theirs.get(name).map(String::as_str).unwrap_or("unset")
                    )
                })
                .collect();
            (k.as_str(), diffs)
        })
        .min_by(|a, b| (a.1.len(), a.0).cmp(&(b.1.len(), b.0)))
}
