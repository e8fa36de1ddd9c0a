//! Parse a sweep file (`sweeps/NAME.toml`) into a [`Sweep`]: its name, fixed
//! settings, grid axes and `[[cells]]` entries, each value converted to its
//! setting's type and located in the file. Cells and their checks are in `grid` and
//! `sweep::load`.
//!
//! Every problem in a file is collected and reported at once, each naming the file,
//! the key (with line:column) and what is allowed.

use crate::config::limits::MAX_NAME_LEN;
use crate::sweep::cell::Cell;
use crate::sweep::settings::{
    convert, sections, setting, settings, suggest, to_value, value_text, Kind,
};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};
use toml::Value;
use toml_edit::{ImDocument, Item, TableLike};

/// Top-level keys of a sweep file that are not cell settings. A new sweep-level
/// section (e.g. `[slurm]` for cluster options) is added here, to [`Sweep`], and as
/// one more arm of the top-level `match` in `Parser::parse`.
const META_KEYS: &[&str] = &["name", "description", "grid", "cells", "slurm"];

/// Line and column (both 1-based) of a key or value in a sweep file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// One problem found in a sweep file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    pub location: Option<Location>,
    /// The key as written in the file, e.g. `train.lr`, `grid.seed`, `cells[0].width`.
    pub key: String,
    /// What is wrong and what is allowed.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(loc) = self.location {
            write!(f, ":{loc}")?;
        }
        if self.key.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": {}: {}", self.key, self.message)
        }
    }
}

/// All problems of one sweep file, in file order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecError {
    pub problems: Vec<Problem>,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SpecError {}

/// A setting's value where it was written.
#[derive(Clone, Debug, PartialEq)]
pub struct Setting {
    /// Dotted name, e.g. `train.lr`.
    pub key: String,
    /// The value converted to the setting's type (integers to floats where needed).
    pub value: Value,
    pub location: Option<Location>,
}

/// A grid axis: one setting and the values it takes.
#[derive(Clone, Debug, PartialEq)]
pub struct Axis {
    pub key: String,
    /// Each value with its own location.
    pub values: Vec<Setting>,
    pub location: Option<Location>,
}

/// One `[[cells]]` entry: the settings it fixes.
#[derive(Clone, Debug, PartialEq)]
pub struct ExtraCells {
    pub settings: Vec<Setting>,
    pub location: Option<Location>,
}

/// A parsed, validated sweep file.
#[derive(Clone, Debug, PartialEq)]
pub struct Sweep {
    pub path: PathBuf,
    pub name: String,
    pub description: String,
    /// Fixed settings from `[model]`, `[quant]`, `[train]`, `[analysis]` and top-level keys.
    pub fixed: Vec<Setting>,
    /// Whether the file has a `[grid]` table.
    pub has_grid: bool,
    /// Grid axes in the order they appear in the file.
    pub axes: Vec<Axis>,
    /// `[[cells]]` entries in file order.
    pub extra: Vec<ExtraCells>,
    /// The cells, in the documented order (filled by `sweep::load`).
    pub cells: Vec<Cell>,
    /// `[slurm]`: sbatch settings for `bitgrok submit` (not part of any cell).
    pub slurm: SlurmOptions,
}

/// sbatch settings, from `[slurm]` in the sweep file and command-line flags.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlurmOptions {
    /// At most this many array tasks at once (`--array=0-N%K`); 0 = no throttle.
    pub throttle: usize,
    /// `--time`, e.g. "02:00:00"; empty = the partition's default.
    pub time: String,
    /// `--partition`; empty = the cluster's default.
    pub partition: String,
    /// `--cpus-per-task`; also the matmul threads of each task.
    pub cpus_per_task: usize,
    /// `--mem`, e.g. "2G"; empty = the cluster's default.
    pub mem: String,
    /// Extra sbatch options, each a full `--flag=value`.
    pub extra: Vec<String>,
}

/// Parse the text of a sweep file without checking its cells (see `sweep::load`);
/// `path` is only used in messages. Returns the sweep (`None` when the text is not
/// TOML) and the problems found.
pub fn parse(path: &Path, text: &str) -> (Option<Sweep>, Vec<Problem>) {
    let mut p = Parser {
        path: path.to_path_buf(),
        text,
        problems: Vec::new(),
    };
    let sweep = p.parse();
    (sweep, p.problems)
}

struct Parser<'a> {
    path: PathBuf,
    text: &'a str,
    problems: Vec<Problem>,
}

/// A leaf found while walking a (possibly nested) table, with its dotted name.
struct Leaf<'d> {
    name: String,
    item: &'d Item,
    location: Option<Location>,
    offset: usize,
}

impl<'a> Parser<'a> {
    fn location(&self, span: Option<std::ops::Range<usize>>) -> Option<Location> {
        let start = span?.start;
        let before = &self.text[..start.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
        let column = before[line_start..].chars().count() + 1;
        Some(Location { line, column })
    }

    fn problem(&mut self, location: Option<Location>, key: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            file: self.path.clone(),
            location,
            key: key.to_string(),
            message: message.into(),
        });
    }

    fn parse(&mut self) -> Option<Sweep> {
        let doc = match ImDocument::parse(self.text) {
            Ok(d) => d,
            Err(e) => {
                let loc = self.location(e.span());
                self.problem(
                    loc,
                    "",
                    format!("not valid TOML: {}", e.message().trim().replace('\n', "; ")),
                );
                return None;
            }
        };
        let mut sweep = Sweep {
            path: self.path.clone(),
            name: String::new(),
            description: String::new(),
            fixed: Vec::new(),
            has_grid: false,
            axes: Vec::new(),
            extra: Vec::new(),
            cells: Vec::new(),
            slurm: SlurmOptions::default(),
        };
        let root = doc.as_table();
        let sections = sections();
        let mut name_seen = false;
        for (k, item) in root.iter() {
            let (key, _) = root.get_key_value(k).expect("iterated key exists");
            let loc = self.location(key.span());
            match k {
                "name" => {
                    name_seen = true;
                    match item.as_str() {
                        Some(s) if s.len() > MAX_NAME_LEN => self.problem(
                            loc,
                            "name",
                            format!(
                                "is {} characters long (allowed: at most {MAX_NAME_LEN}, so \
                                 the sweep's folder and file names fit every common file system)",
                                s.len()
                            ),
                        ),
                        Some(s) if valid_name(s) => sweep.name = s.to_string(),
                        _ => self.problem(
                            loc,
                            "name",
                            "must be a non-empty string of letters, digits, '-', '_' or '.' \
                             (it names the sweep's directory under artifacts/sweeps/)",
                        ),
                    }
                }
                "description" => match item.as_str() {
                    Some(s) => sweep.description = s.to_string(),
                    None => self.problem(loc, "description", "must be a string"),
                },
                "grid" => {
                    sweep.has_grid = true;
                    match item.as_table_like() {
                        Some(t) => {
                            let mut leaves = Vec::new();
                            self.leaves("", t, &mut leaves);
                            leaves.sort_by_key(|l| l.offset);
                            for leaf in leaves {
                                if let Some(axis) = self.axis(leaf) {
                                    sweep.axes.push(axis);
                                }
                            }
                        }
                        None => self.problem(loc, "grid", "must be a table of axes"),
                    }
                }
                "cells" => self.extra_cells(item, loc, &mut sweep),
                "slurm" => self.slurm(item, loc, &mut sweep.slurm),
                _ if sections.contains(&k) => match item.as_table_like() {
                    Some(t) => {
                        let mut leaves = Vec::new();
                        self.leaves(&format!("{k}."), t, &mut leaves);
                        for leaf in leaves {
                            let shown = leaf.name.clone();
                            if let Some(s) = self.setting(&leaf, &shown, false) {
                                sweep.fixed.push(s);
                            }
                        }
                    }
                    None => {
                        self.problem(loc, k, format!("must be a table of settings, e.g. [{k}]"))
                    }
                },
                _ => {
                    let leaf = Leaf {
                        name: k.to_string(),
                        item,
                        location: loc,
                        offset: 0,
                    };
                    if setting(k).is_some() {
                        if let Some(s) = self.setting(&leaf, k, false) {
                            sweep.fixed.push(s);
                        }
                    } else {
                        let mut allowed: Vec<String> =
                            META_KEYS.iter().map(|s| s.to_string()).collect();
                        allowed.extend(
                            settings()
                                .iter()
                                .filter(|s| !s.key.contains('.'))
                                .map(|s| s.key.clone()),
                        );
                        allowed.extend(sections.iter().map(|s| format!("[{s}]")));
                        let hint = suggest(k, &allowed)
                            .map(|s| format!("; did you mean `{s}`?"))
                            .unwrap_or_default();
                        self.problem(
                            loc,
                            k,
                            format!(
                                "unknown key{hint} (allowed at top level: {})",
                                allowed.join(", ")
                            ),
                        );
                    }
                }
            }
        }
        if !name_seen {
            self.problem(
                Some(Location { line: 1, column: 1 }),
                "name",
                "missing: a sweep file needs a top-level `name = \"...\"`",
            );
        }
        self.fixed_vs_axes(&sweep);
        Some(sweep)
    }

    /// Collect the leaves of a table, descending into sub-tables (dotted keys and
    /// `[section.sub]` headers alike), so `"train.lr"` and `train.lr` name the same thing.
    fn leaves<'d>(&self, prefix: &str, t: &'d dyn TableLike, out: &mut Vec<Leaf<'d>>) {
        for (k, item) in t.iter() {
            let (key, _) = t.get_key_value(k).expect("iterated key exists");
            let name = format!("{prefix}{k}");
            match item.as_table_like() {
                Some(sub) => self.leaves(&format!("{name}."), sub, out),
                None => out.push(Leaf {
                    name,
                    item,
                    location: self.location(key.span()),
                    offset: key.span().map(|s| s.start).unwrap_or(usize::MAX),
                }),
            }
        }
    }

    /// Check that `leaf` names a known setting and convert its value. `shown` is the key
    /// as the user wrote it (for messages); `in_cell` tunes the hint for arrays.
    fn setting(&mut self, leaf: &Leaf, shown: &str, in_cell: bool) -> Option<Setting> {
        let Some(info) = setting(&leaf.name) else {
            self.unknown_setting(leaf.location, shown, &leaf.name);
            return None;
        };
        let Some(value) = leaf.item.as_value() else {
            self.problem(leaf.location, shown, format!("must be {}", info.kind));
            return None;
        };
        let value = to_value(value);
        match convert(info, &value) {
            Ok(v) => Some(Setting {
                key: info.key.clone(),
                value: v,
                location: leaf.location,
            }),
            Err(msg) => {
                let hint = if matches!(value, Value::Array(_))
                    && !matches!(info.kind, Kind::Array(..))
                {
                    if in_cell {
                        " (a [[cells]] entry takes one value per setting; use [grid] for several)"
                    } else {
                        " (to sweep over several values, make it a [grid] axis)"
                    }
                } else {
                    ""
                };
                self.problem(leaf.location, shown, format!("{msg}{hint}"));
                None
            }
        }
    }

    fn unknown_setting(&mut self, location: Option<Location>, shown: &str, name: &str) {
        let known: Vec<String> = settings().iter().map(|s| s.key.clone()).collect();
        let hint = suggest(name, &known)
            .map(|s| format!("; did you mean `{s}`?"))
            .unwrap_or_default();
        let section = name.split_once('.').map(|(s, _)| s);
        let allowed = match section.filter(|s| sections().contains(s)) {
            Some(sec) => {
                let names: Vec<&str> = settings()
                    .iter()
                    .filter_map(|s| s.key.strip_prefix(&format!("{sec}.")))
                    .collect();
                format!("allowed in [{sec}]: {}", names.join(", "))
            }
            None => format!("known settings: {}", known.join(", ")),
        };
        self.problem(
            location,
            shown,
            format!("unknown setting{hint} ({allowed})"),
        );
    }

    fn axis(&mut self, leaf: Leaf) -> Option<Axis> {
        let shown = format!("grid.{}", leaf.name);
        let Some(info) = setting(&leaf.name) else {
            self.unknown_setting(leaf.location, &shown, &leaf.name);
            return None;
        };
        let Some(array) = leaf.item.as_value().and_then(|v| v.as_array()) else {
            self.problem(
                leaf.location,
                &shown,
                format!(
                    "an axis must be an array of values, each {} (for one fixed value, \
                     write it before [grid] or in its section, or use a one-element array)",
                    info.kind
                ),
            );
            return None;
        };
        if array.is_empty() {
            self.problem(
                leaf.location,
                &shown,
                format!(
                    "empty axis (allowed: a non-empty array of values, each {})",
                    info.kind
                ),
            );
            return None;
        }
        let mut values: Vec<Setting> = Vec::new();
        for element in array.iter() {
            let loc = self.location(element.span()).or(leaf.location);
            match convert(info, &to_value(element)) {
                Ok(v) => {
                    if let Some(first) = values.iter().find(|s| s.value == v) {
                        let at = first
                            .location
                            .map(|l| format!(" (first at {l})"))
                            .unwrap_or_default();
                        self.problem(
                            loc,
                            &shown,
                            format!(
                                "duplicate axis value {}{at}; each value may appear once",
                                value_text(&v)
                            ),
                        );
                    } else {
                        values.push(Setting {
                            key: info.key.clone(),
                            value: v,
                            location: loc,
                        });
                    }
                }
                Err(msg) => self.problem(loc, &shown, msg),
            }
        }
        // Keep the good values so the rest of the file is still checked with them.
        (!values.is_empty()).then(|| Axis {
            key: info.key.clone(),
            values,
            location: leaf.location,
        })
    }

    fn extra_cells(&mut self, item: &Item, loc: Option<Location>, sweep: &mut Sweep) {
        let tables: Vec<&dyn TableLike> = if let Some(aot) = item.as_array_of_tables() {
            aot.iter().map(|t| t as &dyn TableLike).collect()
        } else if let Some(arr) = item.as_value().and_then(|v| v.as_array()) {
            let mut ts = Vec::new();
            for v in arr.iter() {
                match v.as_inline_table() {
                    Some(t) => ts.push(t as &dyn TableLike),
                    None => {
                        self.problem(loc, "cells", "must be an array of tables ([[cells]])");
                        return;
                    }
                }
            }
            ts
        } else {
            self.problem(loc, "cells", "must be an array of tables ([[cells]])");
            return;
        };
        for (i, t) in tables.into_iter().enumerate() {
            let mut leaves = Vec::new();
            self.leaves("", t, &mut leaves);
            let first_loc = leaves.iter().map(|l| l.location).min().flatten();
            let cell_loc = first_loc.or(loc);
            if leaves.is_empty() {
                self.problem(
                    cell_loc,
                    &format!("cells[{i}]"),
                    "empty [[cells]] entry (allowed: one or more settings, e.g. precision = \"int4\")",
                );
                continue;
            }
            let mut settings_of_cell = Vec::new();
            for leaf in &leaves {
                let shown = format!("cells[{i}].{}", leaf.name);
                if let Some(s) = self.setting(leaf, &shown, true) {
                    settings_of_cell.push(s);
                }
            }
            sweep.extra.push(ExtraCells {
                settings: settings_of_cell,
                location: cell_loc,
            });
        }
    }

    /// Read `[slurm]` key by key, so a wrong type is reported at its key.
    fn slurm(&mut self, item: &Item, loc: Option<Location>, out: &mut SlurmOptions) {
        let Some(table) = item.as_table_like() else {
            self.problem(loc, "slurm", "must be a table, e.g. [slurm]");
            return;
        };
        let defaults = Value::try_from(SlurmOptions::default()).expect("SlurmOptions serialises");
        let allowed: Vec<String> = defaults
            .as_table()
            .expect("a table")
            .keys()
            .cloned()
            .collect();
        let mut values = toml::Table::new();
        for (k, v) in table.iter() {
            let (key, _) = table.get_key_value(k).expect("iterated key exists");
            let at = self.location(key.span());
            let shown = format!("slurm.{k}");
            let Some(default) = defaults.get(k) else {
                let hint = suggest(k, &allowed)
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_default();
                self.problem(
                    at,
                    &shown,
                    format!(
                        "unknown key{hint} (allowed in [slurm]: {})",
                        allowed.join(", ")
                    ),
                );
                continue;
            };
            let value = v.as_value().map(to_value);
            let ok = match (&value, default) {
                (Some(Value::Integer(i)), Value::Integer(_)) => *i >= 0,
                (Some(Value::String(_)), Value::String(_)) => true,
                (Some(Value::Array(a)), Value::Array(_)) => {
                    a.iter().all(|e| matches!(e, Value::String(_)))
                }
                _ => false,
            };
            if ok {
                values.insert(k.to_string(), value.expect("checked above"));
            } else {
                let want = match default {
                    Value::Integer(_) => "an integer >= 0",
                    Value::Array(_) => "an array of strings",
                    _ => "a string",
                };
                self.problem(at, &shown, format!("expected {want}"));
            }
        }
        match Value::Table(values).try_into() {
            Ok(o) => *out = o,
            Err(e) => self.problem(loc, "slurm", format!("{e}")),
        }
    }

    fn fixed_vs_axes(&mut self, sweep: &Sweep) {
        for axis in &sweep.axes {
            if let Some(f) = sweep.fixed.iter().find(|f| f.key == axis.key) {
                let at = f.location.map(|l| format!(" at {l}")).unwrap_or_default();
                self.problem(
                    axis.location,
                    &format!("grid.{}", axis.key),
                    format!(
                        "`{}` is both a fixed setting{at} and a grid axis; give it in one place",
                        axis.key
                    ),
                );
            }
        }
    }
}

/// Where a resolved setting came from, for error messages.
#[derive(Clone, Debug, PartialEq)]
pub struct Origin {
    /// The key as written, e.g. `grid.width`.
    pub shown: String,
    pub location: Option<Location>,
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}
