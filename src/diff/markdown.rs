//! `bitgrok diff --format markdown`: a review summary of the changes for a pull
//! request or a CI job summary.

use super::{cells_of, Change};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// The per-cell table: its changes lead the Markdown summary.
const CELLS_TABLE: &str = "cells.csv";

/// Change rows shown per Markdown section; the counts still cover every change.
const MARKDOWN_ROWS: usize = 200;

/// What happened to one table.
#[derive(Default)]
struct TableCounts {
    changed_rows: BTreeSet<String>,
    added: usize,
    removed: usize,
    values: usize,
    structure: usize,
}

/// One header line, the changed cells (`cells.csv`), per-table counts over `tables`,
/// then the other changes.
pub fn render(changes: &[Change], tables: &[String]) -> String {
    let mut counts: BTreeMap<&str, TableCounts> = tables
        .iter()
        .map(|t| (t.as_str(), TableCounts::default()))
        .collect();
    for c in changes {
        let t = counts.entry(&c.table).or_default();
        match c.column.as_str() {
            "row added" => t.added += 1,
            "row removed" => t.removed += 1,
            _ if c.row.is_empty() => t.structure += 1,
            _ => {
                t.values += 1;
                t.changed_rows.insert(c.row.clone());
            }
        }
    }
    let mut out = String::new();
    let touched = counts
        .values()
        .filter(|t| t.values + t.added + t.removed + t.structure > 0)
        .count();
    if changes.is_empty() {
        writeln!(
            out,
            "**bitgrok diff: no changes beyond tolerance** ({} table(s) compared).",
            counts.len()
        )
        .unwrap();
        return out;
    }
    let cells = counts.get(CELLS_TABLE);
    let cell_part = cells
        .map(|t| {
            format!(
                "; {} changed, {} added, {} removed",
                crate::text::count(t.changed_rows.len(), "cell"),
                t.added,
                t.removed
            )
        })
        .unwrap_or_default();
    writeln!(
        out,
        "**bitgrok diff: {} beyond tolerance in {touched} of {}{cell_part}.**",
        crate::text::count(changes.len(), "change"),
        crate::text::count(counts.len(), "table")
    )
    .unwrap();
    let (first, rest): (Vec<&Change>, Vec<&Change>) =
        changes.iter().partition(|c| c.table == CELLS_TABLE);
    if !first.is_empty() {
        writeln!(out, "\n#### Changed cells ({CELLS_TABLE})\n").unwrap();
        markdown_rows(&mut out, &first);
    }
    writeln!(out, "\n#### Per table\n").unwrap();
    writeln!(
        out,
        "| table | rows changed | rows added | rows removed | values changed | columns/table changed |\n|---|---|---|---|---|---|"
    )
    .unwrap();
    for (name, t) in &counts {
        writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            name.replace('|', "\\|"),
            t.changed_rows.len(),
            t.added,
            t.removed,
            t.values,
            t.structure
        )
        .unwrap();
    }
    if !rest.is_empty() {
        writeln!(
            out,
            "\n#### {} changes\n",
            if first.is_empty() { "All" } else { "Other" }
        )
        .unwrap();
        markdown_rows(&mut out, &rest);
    }
    out
}

/// A Markdown table of changes, at most `MARKDOWN_ROWS` rows.
fn markdown_rows(out: &mut String, changes: &[&Change]) {
    writeln!(
        out,
        "| table | row | column | old | new | change |\n|---|---|---|---|---|---|"
    )
    .unwrap();
    for c in changes.iter().take(MARKDOWN_ROWS) {
        let cells: Vec<String> = cells_of(c).iter().map(|x| x.replace('|', "\\|")).collect();
        writeln!(out, "| {} |", cells.join(" | ")).unwrap();
    }
    if changes.len() > MARKDOWN_ROWS {
        writeln!(
            out,
            "\n... and {} more (`bitgrok diff` without `--format markdown` lists all).",
            changes.len() - MARKDOWN_ROWS
        )
        .unwrap();
    }
}
