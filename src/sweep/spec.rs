//! Parse and validate a sweep file (`sweeps/NAME.toml`).
//!
//! The set of known settings, their types and defaults is derived from
//! [`CellConfig::default()`] and [`AnalysisConfig::default()`], so a field added to
//! `config.rs` is at once a valid fixed setting, axis and `[[cells]]` key.
//!
//! Every problem in a file is collected and reported at once, each naming the file,
//! the key (with line:column) and what is allowed.

use crate::config::{AnalysisConfig, CellConfig, PRECISION_NAMES};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
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
    pub cells: Vec<ExtraCells>,
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

/// Read the `[slurm]` table into [`SlurmOptions`].
fn slurm_options(item: &Item) -> Result<SlurmOptions, String> {
    let table = item
        .as_table_like()
        .ok_or("must be a table, e.g. [slurm]")?;
    let mut text = String::new();
    for (k, v) in table.iter() {
        let v = v
            .as_value()
            .ok_or_else(|| format!("slurm.{k} must be a value"))?;
        text += &format!("{k} = {}\n", v.to_string().trim());
    }
    toml::from_str::<SlurmOptions>(&text).map_err(|e| {
        format!(
            "{} (allowed: throttle, time, partition, cpus_per_task, mem, extra)",
            e.message().trim()
        )
    })
}

/// Read, parse and validate a sweep file.
pub fn load(path: &Path) -> Result<Sweep, SpecError> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_str(path, &text),
        Err(e) => Err(SpecError {
            problems: vec![Problem {
                file: path.to_path_buf(),
                location: None,
                key: String::new(),
                message: format!("cannot read the file: {e}"),
            }],
        }),
    }
}

/// Parse and validate the text of a sweep file; `path` is only used in messages.
pub fn parse_str(path: &Path, text: &str) -> Result<Sweep, SpecError> {
    let mut p = Parser {
        path: path.to_path_buf(),
        text,
        problems: Vec::new(),
    };
    let sweep = p.parse();
    if let Some(sweep) = &sweep {
        // Runs even when parsing found problems, on the parts that did parse, so
        // every problem of the file is reported at once.
        p.check_cells(sweep);
    }
    if p.problems.is_empty() {
        Ok(sweep.expect("a sweep without problems"))
    } else {
        let mut problems = p.problems;
        problems.sort_by_key(|p| p.location);
        problems.dedup();
        Err(SpecError { problems })
    }
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
                "slurm" => match slurm_options(item) {
                    Ok(o) => sweep.slurm = o,
                    Err(e) => self.problem(loc, "slurm", e),
                },
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
            sweep.cells.push(ExtraCells {
                settings: settings_of_cell,
                location: cell_loc,
            });
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

    /// Resolve every cell and check the values that would make training fail.
    fn check_cells(&mut self, sweep: &Sweep) {
        let mut seen = std::collections::HashSet::new();
        for traced in crate::sweep::grid::expand_traced(sweep) {
            for v in check_cell(&traced.cell.config, &traced.cell.analysis) {
                // Point at the first key of the violation the file actually sets.
                let origin = v
                    .keys
                    .iter()
                    .find_map(|k| traced.origins.get(*k).map(|o| (*k, o)));
                let (key, shown, loc) = match origin {
                    Some((k, o)) => (k, o.shown.clone(), o.location),
                    None => (v.keys[0], v.keys[0].to_string(), None),
                };
                let message = if origin.is_none() {
                    format!("{} (this is the default of `{key}`)", v.message)
                } else {
                    v.message
                };
                if seen.insert((loc, shown.clone(), message.clone())) {
                    self.problem(loc, &shown, message);
                }
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

/// Convert a parsed TOML value to a plain `toml::Value`.
fn to_value(v: &toml_edit::Value) -> Value {
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
fn convert_kind(kind: &Kind, v: &Value) -> Result<Value, String> {
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
fn convert(info: &SettingInfo, v: &Value) -> Result<Value, String> {
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

/// A value as shown to users: strings bare, floats in their shortest spelling.
pub fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Float(f) => crate::key::format_float(*f),
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(value_text).collect::<Vec<_>>().join(", ")
        ),
        other => other.to_string(),
    }
}

/// The closest of `candidates` to `word` by edit distance, when close enough to be a
/// likely typo. A candidate whose last dotted part equals `word`'s last part wins.
fn suggest(word: &str, candidates: &[String]) -> Option<String> {
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
        .map(|c| (levenshtein(word, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min()
        .map(|(_, c)| c.clone())
}

fn levenshtein(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// A value that would make training or analysis fail: the keys involved (the first
/// one the file sets is blamed) and what is allowed.
#[derive(Clone, Debug, PartialEq)]
pub struct Violation {
    pub keys: Vec<&'static str>,
    pub message: String,
}

/// Check the values of one resolved cell.
pub fn check_cell(c: &CellConfig, a: &AnalysisConfig) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut bad = |keys: &[&'static str], message: String| {
        out.push(Violation {
            keys: keys.to_vec(),
            message,
        })
    };
    let t = &c.train;
    let f = crate::key::format_float;
    if c.modulus < 3 {
        bad(
            &["modulus"],
            format!("{} is too small (allowed: an integer >= 3)", c.modulus),
        );
    }
    if c.width == 0 {
        bad(
            &["width"],
            "0 is not allowed (allowed: a positive multiple of model.heads)".into(),
        );
    }
    if c.model.heads == 0 {
        bad(
            &["model.heads"],
            "0 is not allowed (allowed: an integer >= 1 that divides width)".into(),
        );
    } else if !c.width.is_multiple_of(c.model.heads) {
        bad(
            &["width", "model.heads"],
            format!(
                "width {} is not divisible by model.heads = {} (allowed: a multiple of model.heads)",
                c.width, c.model.heads
            ),
        );
    }
    if c.model.mlp_ratio == 0 {
        bad(
            &["model.mlp_ratio"],
            "0 is not allowed (allowed: an integer >= 1)".into(),
        );
    }
    if !(0.0..=1.0).contains(&c.model.attention_rate) {
        bad(
            &["model.attention_rate"],
            format!(
                "{} is not allowed (allowed: a number from 0 to 1)",
                f(c.model.attention_rate)
            ),
        );
    }
    if c.quant.eps <= 0.0 {
        bad(
            &["quant.eps"],
            format!("{} is not allowed (allowed: a number > 0)", f(c.quant.eps)),
        );
    }
    if c.quant.act_bits == 1 || c.quant.act_bits > 16 {
        bad(
            &["quant.act_bits"],
            format!(
                "{} is not allowed (allowed: 0 for off, or 2 to 16)",
                c.quant.act_bits
            ),
        );
    }
    if t.steps == 0 {
        bad(
            &["train.steps"],
            "0 is not allowed (allowed: an integer >= 1)".into(),
        );
    }
    if t.lr <= 0.0 {
        bad(
            &["train.lr"],
            format!("{} is not allowed (allowed: a number > 0)", f(t.lr)),
        );
    }
    if t.weight_decay < 0.0 {
        bad(
            &["train.weight_decay"],
            format!(
                "{} is not allowed (allowed: a number >= 0)",
                f(t.weight_decay)
            ),
        );
    }
    if t.betas.iter().any(|b| !(0.0..1.0).contains(b)) {
        bad(
            &["train.betas"],
            format!(
                "[{}, {}] is not allowed (allowed: two numbers, each in [0, 1))",
                f(t.betas[0]),
                f(t.betas[1])
            ),
        );
    }
    if t.eps <= 0.0 {
        bad(
            &["train.eps"],
            format!("{} is not allowed (allowed: a number > 0)", f(t.eps)),
        );
    }
    if !(t.train_fraction > 0.0 && t.train_fraction < 1.0) {
        bad(
            &["train.train_fraction"],
            format!(
                "{} is outside (0, 1) (allowed: a number strictly between 0 and 1)",
                f(t.train_fraction)
            ),
        );
    }
    if t.eval_every == 0 {
        bad(
            &["train.eval_every"],
            "0 is not allowed (allowed: 1 to train.steps)".into(),
        );
    } else if t.eval_every > t.steps && t.steps > 0 {
        bad(
            &["train.eval_every", "train.steps"],
            format!(
                "train.eval_every {} is greater than train.steps = {} (allowed: 1 to train.steps)",
                t.eval_every, t.steps
            ),
        );
    }
    if t.checkpoint_every == 0 {
        bad(
            &["train.checkpoint_every"],
            "0 is not allowed (allowed: an integer >= 1)".into(),
        );
    }
    if !(0.0..1.0).contains(&t.grokfast_alpha) {
        bad(
            &["train.grokfast_alpha"],
            format!(
                "{} is not allowed (allowed: a number in [0, 1))",
                f(t.grokfast_alpha)
            ),
        );
    }
    if t.grokfast_lambda < 0.0 {
        bad(
            &["train.grokfast_lambda"],
            format!(
                "{} is not allowed (allowed: a number >= 0)",
                f(t.grokfast_lambda)
            ),
        );
    }
    for (key, v) in [
        ("analysis.fve_threshold", a.fve_threshold),
        ("analysis.energy_coverage", a.energy_coverage),
        ("analysis.accuracy_threshold", a.accuracy_threshold),
    ] {
        if !(v > 0.0 && v <= 1.0) {
            bad(
                &[key],
                format!("{} is not allowed (allowed: a number in (0, 1])", f(v)),
            );
        }
    }
    for (key, v) in [
        (
            "analysis.uniform_attention_max_tv",
            a.uniform_attention_max_tv,
        ),
        (
            "analysis.constant_attention_max_variation",
            a.constant_attention_max_variation,
        ),
        (
            "analysis.fourier_min_logits_explained",
            a.fourier_min_logits_explained,
        ),
        (
            "analysis.pizza_min_difference_share",
            a.pizza_min_difference_share,
        ),
    ] {
        if !(0.0..=1.0).contains(&v) {
            bad(
                &[key],
                format!("{} is not allowed (allowed: a number from 0 to 1)", f(v)),
            );
        }
    }
    if a.symmetricity_triples == 0 {
        bad(
            &["analysis.symmetricity_triples"],
            "0 is not allowed (allowed: an integer >= 1)".into(),
        );
    }
    out
}
