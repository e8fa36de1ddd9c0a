//! A tolerant diff of CSV tables, for reviewing what a change did to the summaries.
//!
//! Rows are matched by identity columns (by default the shortest leading run of
//! columns that tells every row apart in both files), then every other column is
//! compared: text and integer cells exactly, float cells within a tolerance
//! (`|new − old| ≤ atol + rtol·|old|`, with per-column absolute overrides).
//! Added and removed rows, columns and files are changes too.

mod markdown;

use anyhow::{bail, Context, Result};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// How cells are compared and rows matched.
#[derive(Clone, Debug)]
pub struct DiffOptions {
    /// Identity columns; empty = the shortest unique leading run of columns.
    pub key_columns: Vec<String>,
    /// Relative tolerance for float cells.
    pub rtol: f64,
    /// Absolute tolerance for float cells.
    pub atol: f64,
    /// Per-column absolute tolerances, replacing `atol` and `rtol` for that column.
    pub column_tol: BTreeMap<String, f64>,
    /// Columns left out of the comparison (e.g. wall-clock timings).
    pub ignore: BTreeSet<String>,
}

impl Default for DiffOptions {
    fn default() -> Self {
        DiffOptions {
            key_columns: Vec::new(),
            rtol: 1e-3,
            atol: 1e-6,
            column_tol: BTreeMap::new(),
            ignore: BTreeSet::new(),
        }
    }
}

/// One difference between the old and the new tables.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    /// The table (file name) it is in.
    pub table: String,
    /// The row's identity, `col=value` joined by `,` (a name or value holding `,`,
    /// `=`, a quote or a control character is quoted and escaped, so different rows
    /// never share an identity); empty for table-level changes.
    pub row: String,
    /// The column, or a description for row/column/table-level changes.
    pub column: String,
    pub old: String,
    pub new: String,
    /// `new − old` for numeric cells, empty otherwise.
    pub delta: String,
}

/// A parsed CSV table.
struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

fn read_table(path: &Path) -> Result<Table> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_path(path)
        .with_context(|| format!("reading {}", path.display()))?;
    let header = rdr.headers()?.iter().map(str::to_string).collect();
    let rows = rdr
        .records()
        .map(|r| Ok(r?.iter().map(str::to_string).collect()))
        .collect::<Result<Vec<Vec<String>>>>()
        .with_context(|| format!("parsing {}", path.display()))?;
    Ok(Table { header, rows })
}

/// Diff two CSV files, or two folders of CSV files (matched by file name).
pub fn diff_paths(old: &Path, new: &Path, opts: &DiffOptions) -> Result<Vec<Change>> {
    // Every column named in --tol or --ignore must exist somewhere: a typo would
    // otherwise silently compare (or skip) nothing.
    let files: Vec<PathBuf> = if old.is_dir() && new.is_dir() {
        csv_files(old)?
            .into_values()
            .chain(csv_files(new)?.into_values())
            .collect()
    } else {
        vec![old.to_path_buf(), new.to_path_buf()]
    };
    let mut columns = BTreeSet::new();
    for f in files.iter().filter(|f| f.is_file()) {
        columns.extend(read_table(f)?.header);
    }
    for col in opts.column_tol.keys().chain(&opts.ignore) {
        if !columns.contains(col) {
            bail!("column \"{col}\" is in none of the tables compared");
        }
    }
    match (old.is_dir(), new.is_dir()) {
        (true, true) => {
            let (a, b) = (csv_files(old)?, csv_files(new)?);
            let names: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            let mut changes = Vec::new();
            for name in names {
                match (a.get(name), b.get(name)) {
                    (Some(pa), Some(pb)) => changes.extend(diff_files(pa, pb, name, opts)?),
                    (Some(_), None) => {
                        changes.push(table_change(name, "table removed", "present", ""))
                    }
                    (None, Some(_)) => {
                        changes.push(table_change(name, "table added", "", "present"))
                    }
                    (None, None) => unreachable!(),
                }
            }
            Ok(changes)
        }
        (false, false) => {
            let name = new
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            diff_files(old, new, &name, opts)
        }
        _ => bail!("compare two files or two folders, not a file with a folder"),
    }
}

fn csv_files(dir: &Path) -> Result<BTreeMap<String, PathBuf>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "csv") {
            out.insert(
                path.file_name().unwrap().to_string_lossy().into_owned(),
                path,
            );
        }
    }
    Ok(out)
}

fn table_change(table: &str, what: &str, old: &str, new: &str) -> Change {
    Change {
        table: table.to_string(),
        row: String::new(),
        column: what.to_string(),
        old: old.to_string(),
        new: new.to_string(),
        delta: String::new(),
    }
}

fn diff_files(old: &Path, new: &Path, name: &str, opts: &DiffOptions) -> Result<Vec<Change>> {
    let (a, b) = (read_table(old)?, read_table(new)?);
    diff_tables(&a, &b, name, opts)
        .with_context(|| format!("comparing {} with {}", old.display(), new.display()))
}

/// The identity columns: given ones (which must exist in both tables) or the
/// shortest leading run of shared columns that is unique in both tables.
fn key_columns(a: &Table, b: &Table, opts: &DiffOptions) -> Result<Vec<String>> {
    if !opts.key_columns.is_empty() {
        for k in &opts.key_columns {
            if !a.header.contains(k) || !b.header.contains(k) {
                bail!("key column \"{k}\" is not in both tables");
            }
        }
        return Ok(opts.key_columns.clone());
    }
    let shared: Vec<&String> = a
        .header
        .iter()
        .take_while(|c| b.header.contains(c))
        .collect();
    for n in 1..=shared.len() {
        let cols: Vec<String> = shared[..n].iter().map(|c| c.to_string()).collect();
        if unique_on(a, &cols) && unique_on(b, &cols) {
            return Ok(cols);
        }
    }
    bail!("no leading columns tell the rows apart; name the identity columns with --key")
}

fn column_index(t: &Table, col: &str) -> usize {
    t.header
        .iter()
        .position(|c| c == col)
        .expect("column checked to exist")
}

fn row_id(t: &Table, row: &[String], cols: &[String]) -> String {
    cols.iter()
        .map(|c| format!("{}={}", quoted(c), quoted(&row[column_index(t, c)])))
        .collect::<Vec<_>>()
        .join(",")
}

/// `s` as it is, or quoted and escaped when it holds a character that would make a
/// row identity or an output line ambiguous.
fn quoted(s: &str) -> String {
    if s.chars()
        .any(|ch| matches!(ch, ',' | '=' | '"') || ch.is_control())
    {
        format!("{s:?}")
    } else {
        s.to_string()
    }
}

/// A cell's value for one output line: control characters (newlines) escaped.
fn printable(s: &str) -> String {
    if s.chars().any(char::is_control) {
        s.escape_debug().to_string()
    } else {
        s.to_string()
    }
}

/// Fail on a header that names a column twice: only one of the two could be compared.
fn check_header(t: &Table, which: &str) -> Result<()> {
    let mut seen = BTreeSet::new();
    for c in &t.header {
        if !seen.insert(c) {
            bail!("the {which} table names column \"{c}\" twice; every column needs its own name");
        }
    }
    Ok(())
}

fn unique_on(t: &Table, cols: &[String]) -> bool {
    let mut seen = BTreeSet::new();
    t.rows.iter().all(|r| seen.insert(row_id(t, r, cols)))
}

fn diff_tables(a: &Table, b: &Table, name: &str, opts: &DiffOptions) -> Result<Vec<Change>> {
    check_header(a, "old")?;
    check_header(b, "new")?;
    let keys = key_columns(a, b, opts)?;
    if !unique_on(a, &keys) || !unique_on(b, &keys) {
        bail!("rows are not unique on the key columns {}", keys.join(","));
    }
    let mut changes = Vec::new();
    for c in a
        .header
        .iter()
        .filter(|c| !b.header.contains(c) && !opts.ignore.contains(*c))
    {
        changes.push(table_change(
            name,
            &format!("column {c} removed"),
            "present",
            "",
        ));
    }
    for c in b
        .header
        .iter()
        .filter(|c| !a.header.contains(c) && !opts.ignore.contains(*c))
    {
        changes.push(table_change(
            name,
            &format!("column {c} added"),
            "",
            "present",
        ));
    }
    let compared: Vec<&String> = a
        .header
        .iter()
        .filter(|c| b.header.contains(c) && !keys.contains(c) && !opts.ignore.contains(*c))
        .collect();
    let integer_cols: BTreeSet<&String> = compared
        .iter()
        .filter(|c| {
            let (ia, ib) = (column_index(a, c), column_index(b, c));
            a.rows
                .iter()
                .all(|r| r[ia].is_empty() || r[ia].parse::<i64>().is_ok())
                && b.rows
                    .iter()
                    .all(|r| r[ib].is_empty() || r[ib].parse::<i64>().is_ok())
        })
        .copied()
        .collect();
    let new_rows: HashMap<String, &Vec<String>> =
        b.rows.iter().map(|r| (row_id(b, r, &keys), r)).collect();
    let old_ids: BTreeSet<String> = a.rows.iter().map(|r| row_id(a, r, &keys)).collect();
    for old_row in &a.rows {
        let id = row_id(a, old_row, &keys);
        let Some(new_row) = new_rows.get(&id) else {
            changes.push(Change {
                row: id,
                ..table_change(name, "row removed", "present", "")
            });
            continue;
        };
        for col in &compared {
            let (x, y) = (
                &old_row[column_index(a, col)],
                &new_row[column_index(b, col)],
            );
            if x == y {
                continue;
            }
            let numeric = x.parse::<f64>().ok().zip(y.parse::<f64>().ok());
            // A column's own tolerance applies to any number; the default
            // tolerance to floats only (integers and text are exact).
            let within = match (numeric, opts.column_tol.get(col.as_str())) {
                (Some((u, v)), Some(tol)) => (v - u).abs() <= *tol,
                (Some((u, v)), None) if !integer_cols.contains(col) => {
                    (v - u).abs() <= opts.atol + opts.rtol * u.abs()
                }
                _ => false,
            };
            if !within {
                changes.push(Change {
                    table: name.to_string(),
                    row: id.clone(),
                    column: col.to_string(),
                    old: printable(x),
                    new: printable(y),
                    delta: numeric
                        .map(|(u, v)| format_delta(v - u))
                        .unwrap_or_default(),
                });
            }
        }
    }
    for new_row in &b.rows {
        let id = row_id(b, new_row, &keys);
        if !old_ids.contains(&id) {
            changes.push(Change {
                row: id,
                ..table_change(name, "row added", "", "present")
            });
        }
    }
    Ok(changes)
}

fn format_delta(d: f64) -> String {
    let s = format!("{d:+.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

/// Output formats of `bitgrok diff`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiffFormat {
    Text,
    Markdown,
}

/// The tables `diff_paths` compares: the file names of both folders, or the new
/// file's name.
pub fn compared_tables(old: &Path, new: &Path) -> Result<Vec<String>> {
    if old.is_dir() && new.is_dir() {
        let mut names: BTreeSet<String> = csv_files(old)?.into_keys().collect();
        names.extend(csv_files(new)?.into_keys());
        Ok(names.into_iter().collect())
    } else {
        Ok(vec![new
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()])
    }
}

/// Render changes as an aligned text table, or as a Markdown review summary: one
/// header line, the changed cells (`cells.csv`), per-table counts over `tables`,
/// then the other changes.
pub fn render(changes: &[Change], tables: &[String], format: DiffFormat) -> String {
    match format {
        DiffFormat::Markdown => markdown::render(changes, tables),
        DiffFormat::Text => text(changes),
    }
}

fn text(changes: &[Change]) -> String {
    let header = ["table", "row", "column", "old", "new", "change"];
    if changes.is_empty() {
        return "no changes beyond tolerance\n".to_string();
    }
    let rows: Vec<[&str; 6]> = changes.iter().map(cells_of).collect();
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cells: [&str; 6]| {
        let parts: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        parts.join("  ").trim_end().to_string()
    };
    let mut out = String::new();
    writeln!(out, "{}", line(header)).unwrap();
    for r in &rows {
        writeln!(out, "{}", line(*r)).unwrap();
    }
    writeln!(out, "{}", crate::text::count(changes.len(), "change")).unwrap();
    out
}

pub(crate) fn cells_of(c: &Change) -> [&str; 6] {
    [&*c.table, &*c.row, &*c.column, &*c.old, &*c.new, &*c.delta]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> Table {
        let mut lines = text
            .lines()
            .map(|l| l.split(',').map(str::to_string).collect::<Vec<_>>());
        Table {
            header: lines.next().unwrap(),
            rows: lines.collect(),
        }
    }

    fn diff(a: &str, b: &str, opts: &DiffOptions) -> Vec<Change> {
        diff_tables(&table(a), &table(b), "t.csv", opts).unwrap()
    }

    const OLD: &str =
        "precision,seed,key,steps,loss,label\nfp32,0,aa,100,0.5,clock\nfp32,1,bb,200,0.25,clock";

    #[test]
    fn values_holding_separators_do_not_merge_rows() {
        // Joined naively both rows read `a=x,b=y,b=z`.
        let old = Table {
            header: vec!["a".into(), "b".into(), "v".into()],
            rows: vec![vec!["x,b=y".into(), "z".into(), "1".into()]],
        };
        let new = Table {
            header: old.header.clone(),
            rows: vec![vec!["x".into(), "y,b=z".into(), "1".into()]],
        };
        let opts = DiffOptions {
            key_columns: vec!["a".into(), "b".into()],
            ..DiffOptions::default()
        };
        let c = diff_tables(&old, &new, "t.csv", &opts).unwrap();
        assert_eq!(c.len(), 2, "{c:?}");
        assert_eq!(c[0].row, "a=\"x,b=y\",b=z");
        assert_eq!(c[1].row, "a=x,b=\"y,b=z\"");
    }

    #[test]
    fn a_column_named_twice_is_refused() {
        let err = diff_tables(
            &table("id,x,x\n1,2,3"),
            &table("id,x,x\n1,2,4"),
            "t.csv",
            &DiffOptions::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("column \"x\" twice"), "{err}");
    }

    #[test]
    fn newlines_in_values_stay_on_one_line() {
        let old = Table {
            header: vec!["id".into(), "error".into()],
            rows: vec![vec!["1".into(), "a\nb".into()]],
        };
        let new = Table {
            header: old.header.clone(),
            rows: vec![vec!["1".into(), "a\nc".into()]],
        };
        let c = diff_tables(&old, &new, "t.csv", &DiffOptions::default()).unwrap();
        assert_eq!((c[0].old.as_str(), c[0].new.as_str()), ("a\\nb", "a\\nc"));
        let text = render(&c, &["t.csv".into()], DiffFormat::Text);
        assert_eq!(text.lines().count(), 3, "{text}");
    }

    #[test]
    fn identical_tables_have_no_changes() {
        assert!(diff(OLD, OLD, &DiffOptions::default()).is_empty());
    }

    #[test]
    fn rows_match_by_identity_not_by_position() {
        let reordered = "precision,seed,key,steps,loss,label\nfp32,1,bb,200,0.25,clock\nfp32,0,aa,100,0.5,clock";
        assert!(diff(OLD, reordered, &DiffOptions::default()).is_empty());
    }

    #[test]
    fn floats_within_tolerance_are_equal_and_beyond_are_reported() {
        let near = OLD.replace("0.25", "0.2500001");
        assert!(diff(OLD, &near, &DiffOptions::default()).is_empty());
        let far = OLD.replace("0.25", "0.26");
        let c = diff(OLD, &far, &DiffOptions::default());
        assert_eq!(c.len(), 1);
        assert_eq!(
            (c[0].column.as_str(), c[0].row.as_str()),
            ("loss", "precision=fp32,seed=1")
        );
        assert_eq!(
            (c[0].old.as_str(), c[0].new.as_str(), c[0].delta.as_str()),
            ("0.25", "0.26", "+0.01")
        );
        let loose = DiffOptions {
            column_tol: BTreeMap::from([("loss".to_string(), 0.02)]),
            ..Default::default()
        };
        assert!(diff(OLD, &far, &loose).is_empty());
        let steps = DiffOptions {
            column_tol: BTreeMap::from([("steps".to_string(), 1.0)]),
            ..Default::default()
        };
        assert!(diff(OLD, &OLD.replace("200", "201"), &steps).is_empty());
        let ignored = DiffOptions {
            ignore: BTreeSet::from(["loss".to_string()]),
            ..Default::default()
        };
        assert!(diff(OLD, &OLD.replace("0.25", "9"), &ignored).is_empty());
    }

    #[test]
    fn integer_and_text_columns_are_exact() {
        let steps = OLD.replace("200", "201");
        let c = diff(
            OLD,
            &steps,
            &DiffOptions {
                rtol: 0.5,
                ..Default::default()
            },
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].column, "steps");
        let label = OLD.replace("0.25,clock", "0.25,pizza");
        assert_eq!(
            diff(OLD, &label, &DiffOptions::default())[0].column,
            "label"
        );
    }

    #[test]
    fn added_and_removed_rows_and_columns_are_changes() {
        let more = format!("{OLD}\nfp32,2,cc,300,0.1,clock");
        let c = diff(OLD, &more, &DiffOptions::default());
        assert_eq!(
            (c.len(), c[0].column.as_str(), c[0].row.as_str()),
            (1, "row added", "precision=fp32,seed=2")
        );
        let c = diff(&more, OLD, &DiffOptions::default());
        assert_eq!(c[0].column, "row removed");
        let extra = "precision,seed,key,steps,loss,label,x\nfp32,0,aa,100,0.5,clock,1\nfp32,1,bb,200,0.25,clock,2";
        assert_eq!(
            diff(OLD, extra, &DiffOptions::default())[0].column,
            "column x added"
        );
    }

    #[test]
    fn explicit_key_columns_are_checked() {
        let opts = DiffOptions {
            key_columns: vec!["nope".into()],
            ..Default::default()
        };
        assert!(diff_tables(&table(OLD), &table(OLD), "t", &opts).is_err());
        let opts = DiffOptions {
            key_columns: vec!["precision".into()],
            ..Default::default()
        };
        let err = diff_tables(&table(OLD), &table(OLD), "t", &opts)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not unique"), "{err}");
    }

    #[test]
    fn folders_compare_by_file_name() {
        let (x, y) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        std::fs::write(x.path().join("cells.csv"), OLD).unwrap();
        std::fs::write(y.path().join("cells.csv"), OLD.replace("0.5", "0.9")).unwrap();
        std::fs::write(y.path().join("summary.csv"), "a\n1").unwrap();
        let typo = DiffOptions {
            ignore: BTreeSet::from(["los".to_string()]),
            ..Default::default()
        };
        let err = diff_paths(x.path(), y.path(), &typo)
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"los\""), "{err}");
        let c = diff_paths(x.path(), y.path(), &DiffOptions::default()).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(
            (c[0].table.as_str(), c[0].column.as_str()),
            ("cells.csv", "loss")
        );
        assert_eq!(
            (c[1].table.as_str(), c[1].column.as_str()),
            ("summary.csv", "table added")
        );
        let tables = compared_tables(x.path(), y.path()).unwrap();
        assert_eq!(tables, ["cells.csv", "summary.csv"]);
        let md = render(&c, &tables, DiffFormat::Markdown);
        let lines: Vec<&str> = md.lines().collect();
        assert_eq!(
            lines[0],
            "**bitgrok diff: 2 changes beyond tolerance in 2 of 2 tables; 1 cell changed, 0 added, 0 removed.**"
        );
        // Changed cells first, then the counts, then the other tables' changes.
        let at = |s: &str| {
            md.find(s)
                .unwrap_or_else(|| panic!("{s} missing from {md}"))
        };
        assert!(
            at("#### Changed cells")
                < at("| cells.csv | precision=fp32,seed=0 | loss | 0.5 | 0.9 |")
        );
        assert!(at("| cells.csv | precision=fp32,seed=0 | loss") < at("#### Per table"));
        assert!(at("| cells.csv | 1 | 0 | 0 | 1 | 0 |") < at("#### Other changes"));
        assert!(at("| summary.csv | 0 | 0 | 0 | 0 | 1 |") < at("| summary.csv |  | table added |"));
        let none = render(&[], &tables, DiffFormat::Markdown);
        assert_eq!(
            none,
            "**bitgrok diff: no changes beyond tolerance** (2 table(s) compared).\n"
        );
    }
}
