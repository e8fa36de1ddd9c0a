//! Aggregate a sweep's cells into CSV tables: `cells.csv`, `frequencies.csv`,
//! `compare.csv`, `overlap.csv`, `summary.csv`, `progress.csv` and, where a cell
//! recorded E_='s updates, `eq_update.csv`.
//!
//! Input: the sweep's cells in grid order, each with its axis values, cell key and
//! analysis key. For every cell we read `cells/<key>/manifest.json` and
//! `cells/<key>/analysis/<akey>/signature.json` (a walk of `cells/` first indexes
//! which cell folders and signatures exist, so absent files cost nothing).
//!
//! Status of a cell, as the store verifies it (`store::Artifacts::state`, the one
//! `store::CellState` vocabulary): `missing` (no folder, or files that no longer
//! match the manifest's checksums), `partial` (folder without a manifest),
//! `running` (locked by a process training it), `failed`, `unanalysed` (done, but
//! no verified analysis for this analysis key) or `done` (done and analysed). A
//! verified signature that cannot be parsed is an error naming the file.
//!
//! Identity columns: every grid axis in the sweep's axis order, then any other
//! setting a `[[cells]]` entry gave (first-appearance order), empty where a cell does
//! not have it. Identity columns always lead a row, so a diff can match rows by them.
//!
//! Tables: [`TABLES`] lists them; each table's columns are one list in `columns`
//! (`SIGNATURE_COLUMNS`, `FREQUENCY_COLUMNS`, `PAIR_COLUMNS`, `OVERLAP_COLUMNS`,
//! `SUMMARY_NUMBERS`, `PROGRESS_COLUMNS`, `eq_update_columns`), and README's "Output tables" says what each column holds (a
//! test checks it names every one).
//!
//! Rounding (fixed, so files are stable): accuracies, fractions, shares, ratios,
//! Gini, symmetricity, distance irrelevance and their differences: 4 decimals
//! (`0.1235`); losses and embedding norms: scientific with 4 significant digits
//! (`1.235e-3`); counts and steps: integers; medians of integers: the integer or
//! `x.5`; seconds: 1 decimal; yes/no for booleans; empty when missing; `inf`, `-inf`
//! and `NaN` spelled out. Files are written atomically (temporary file in the same
//! folder, then rename).

use crate::analysis::progress::ProgressRow;
use crate::analysis::Signature;
use crate::engine::eq_update::EqUpdateWindow;
use crate::store::{self, write_atomic, Artifacts, CellState as Status, CellStatus};
use anyhow::{Context, Result};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

mod columns;
mod compare;
mod overlap;
pub use columns::{
    cell_columns, eq_update_columns, fmt_fraction, fmt_magnitude, jaccard, mean_pattern, median,
    summary_columns, FREQUENCY_COLUMNS, PROGRESS_COLUMNS, SUMMARY_NUMBERS,
};
use columns::{
    cells_table, eq_update_table, frequencies_table, names, progress_table, summary_table,
};
use compare::compare_table;
pub use compare::{compare_columns, PAIR_COLUMNS};
use overlap::overlap_table;
pub use overlap::{chance_jaccard, overlap_columns, OVERLAP_COLUMNS};

/// One cell of the sweep as the aggregator needs it.
#[derive(Clone, Debug, PartialEq)]
pub struct SweepCell {
    /// (name, value text), grid axes in the sweep's axis order (see `grid::Cell`).
    pub axes: Vec<(String, String)>,
    /// `key::cell_key` of the cell.
    pub key: String,
    /// `key::analysis_key` of the cell's analysis settings.
    pub analysis_key: String,
}

impl From<&crate::sweep::Cell> for SweepCell {
    /// The cell's axes with its cell key and analysis key.
    fn from(c: &crate::sweep::Cell) -> SweepCell {
        SweepCell {
            axes: c.axes.clone(),
            key: c.key.clone(),
            analysis_key: c.analysis_key(),
        }
    }
}

/// What the aggregator found, for the caller to print.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AggregateReport {
    pub cells: usize,
    /// Done and analysed.
    pub done: usize,
    pub unanalysed: usize,
    pub failed: usize,
    pub partial: usize,
    pub running: usize,
    pub missing: usize,
    /// The tables written, in the order cells, frequencies, compare, summary.
    pub tables: Vec<PathBuf>,
}

impl std::fmt::Display for AggregateReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} done, {} unanalysed, {} failed, {} partial, {} missing",
            crate::text::count(self.cells, "cell"),
            self.done,
            self.unanalysed,
            self.failed,
            self.partial,
            self.missing
        )?;
        if self.running > 0 {
            write!(f, ", {} running", self.running)?;
        }
        Ok(())
    }
}

/// Read the cells of a parsed sweep (in grid order) from the store once: the tables
/// and the report are both made from what this returns, so they always agree. The
/// identity columns are the grid axes, then the settings `[[cells]]` entries add.
pub fn read_sweep_of(artifacts_root: &Path, sweep: &crate::sweep::Sweep) -> Result<SweepRows> {
    let cells: Vec<SweepCell> = sweep.cells.iter().map(SweepCell::from).collect();
    read_sweep(
        artifacts_root,
        &crate::sweep::grid::axis_names(sweep),
        &cells,
    )
}

/// One cell with what was read for it (also what the HTML report draws).
pub struct Row {
    /// Values of the identity columns.
    pub ids: Vec<String>,
    pub key: String,
    pub status: Status,
    pub seconds: Option<f64>,
    pub error: Option<String>,
    pub sig: Option<Signature>,
    /// Progress rows of the analysis (cells with snapshots).
    pub progress: Vec<ProgressRow>,
    /// How AdamW moved E_= (cells trained with `train.eq_update_every` > 0).
    pub eq_update: Vec<EqUpdateWindow>,
}

/// Every cell of a sweep as read from the store, in grid order.
pub struct SweepRows {
    /// Identity column names (see the module doc).
    pub columns: Vec<String>,
    pub rows: Vec<Row>,
}

/// Which files exist under `<artifacts>/cells`, from one walk.
#[derive(Default)]
struct Index {
    dirs: HashSet<String>,
    /// (cell key, analysis key) with a signature.json.
    signatures: HashSet<(String, String)>,
}

fn index_cells(cells_root: &Path) -> Result<Index> {
    let mut index = Index::default();
    if !cells_root.is_dir() {
        return Ok(index);
    }
    // Depth 1: cell folders; 2: manifest.json and analysis/; 3: analysis keys;
    // 4: signature.json. Nothing else is visited.
    let walk = walkdir::WalkDir::new(cells_root)
        .min_depth(1)
        .max_depth(4)
        .into_iter()
        .filter_entry(|e| {
            let name = e.file_name().to_str().unwrap_or("");
            match e.depth() {
                2 => name == "analysis",
                4 => name == store::SIGNATURE,
                _ => true,
            }
        });
    for entry in walk {
        let entry = entry.with_context(|| format!("walking {}", cells_root.display()))?;
        let rel = entry
            .path()
            .strip_prefix(cells_root)
            .unwrap_or(entry.path());
        let parts: Vec<&str> = rel.iter().filter_map(|s| s.to_str()).collect();
        let is_file = entry.file_type().is_file();
        match parts.as_slice() {
            [key] if entry.file_type().is_dir() => {
                index.dirs.insert(key.to_string());
            }
            [key, "analysis", akey, name] if is_file && *name == store::SIGNATURE => {
                index.signatures.insert((key.to_string(), akey.to_string()));
            }
            _ => {}
        }
    }
    Ok(index)
}

/// Identity column names: the axes, then other settings cells carry.
fn identity_columns(axis_names: &[String], cells: &[SweepCell]) -> Vec<String> {
    let mut cols: Vec<String> = axis_names.to_vec();
    for c in cells {
        for (name, _) in &c.axes {
            if !cols.contains(name) {
                cols.push(name.clone());
            }
        }
    }
    cols
}

fn read_row(root: &Path, index: &Index, ids: Vec<String>, cell: &SweepCell) -> Result<Row> {
    let mut row = Row {
        ids,
        key: cell.key.clone(),
        status: Status::Missing,
        seconds: None,
        error: None,
        sig: None,
        progress: Vec::new(),
        eq_update: Vec::new(),
    };
    if !index.dirs.contains(&cell.key) {
        return Ok(row);
    }
    // The store's verified status: a cell whose files do not match its manifest
    // counts as missing here too, as it does for `run`.
    let artifacts = Artifacts::new(root);
    let (state, status) = artifacts.state(&cell.key);
    match status {
        _ if state == Status::Running => row.status = Status::Running,
        CellStatus::Missing | CellStatus::Corrupt(_) => {}
        CellStatus::Partial => row.status = Status::Partial,
        CellStatus::Failed(m) => {
            row.status = Status::Failed;
            row.seconds = Some(m.seconds);
            row.error = m.error;
        }
        CellStatus::Done(m) => {
            row.status = Status::Unanalysed;
            row.seconds = Some(m.seconds);
            if m.files.contains_key(store::EQ_UPDATE) {
                let path = artifacts.cell_dir(&cell.key).join(store::EQ_UPDATE);
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))?;
                row.eq_update = crate::engine::eq_update::from_csv(&text)
                    .with_context(|| format!("{} is not a valid table", path.display()))?;
            }
            let dir = artifacts.analysis_dir(&cell.key, &cell.analysis_key);
            let indexed = index
                .signatures
                .contains(&(cell.key.clone(), cell.analysis_key.clone()));
            if indexed && store::verify_manifest_dir(&dir, &store::ANALYSIS_FILES).is_ok() {
                let path = dir.join(store::SIGNATURE);
                let bytes =
                    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
                let sig: Signature = serde_json::from_slice(&bytes)
                    .with_context(|| format!("{} is not a valid signature", path.display()))?;
                row.sig = Some(sig);
                row.status = Status::Done;
                row.progress = read_progress(&dir.join(store::PROGRESS))?;
            }
        }
    }
    Ok(row)
}

/// Read every cell's manifest and signature and write the four tables into
/// `out_dir` (created if needed). See the module doc for columns, order and rounding.
pub fn aggregate(
    artifacts_root: &Path,
    axis_names: &[String],
    cells: &[SweepCell],
    out_dir: &Path,
) -> Result<AggregateReport> {
    write_tables(&read_sweep(artifacts_root, axis_names, cells)?, out_dir)
}

/// Write the tables of what [`read_sweep`] read into `out_dir`.
pub fn write_tables(read: &SweepRows, out_dir: &Path) -> Result<AggregateReport> {
    let mut report = AggregateReport {
        cells: read.rows.len(),
        ..Default::default()
    };
    for r in &read.rows {
        match r.status {
            Status::Done => report.done += 1,
            Status::Unanalysed => report.unanalysed += 1,
            Status::Failed => report.failed += 1,
            Status::Partial => report.partial += 1,
            Status::Running => report.running += 1,
            Status::Missing | Status::Queued => report.missing += 1,
        }
    }

    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    for tmp in store::gc::stale_sweep_temporaries(out_dir) {
        eprintln!(
            "warning: removing {}, left by an interrupted write",
            tmp.display()
        );
        std::fs::remove_file(&tmp).with_context(|| format!("removing {}", tmp.display()))?;
    }
    for (name, table) in tables(read)? {
        let path = out_dir.join(name);
        write_atomic(&path, &table)?;
        report.tables.push(path);
    }
    Ok(report)
}

/// Read every cell's verified status, manifest and signature, in grid order.
pub fn read_sweep(
    artifacts_root: &Path,
    axis_names: &[String],
    cells: &[SweepCell],
) -> Result<SweepRows> {
    let index = index_cells(&artifacts_root.join("cells"))?;
    let cols = identity_columns(axis_names, cells);
    let ids = |c: &SweepCell| -> Vec<String> {
        cols.iter()
            .map(|name| {
                c.axes
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            })
            .collect()
    };
    let rows = read_rows(artifacts_root, &index, cells, &ids)?;
    Ok(SweepRows {
        columns: cols,
        rows,
    })
}

/// A table of the sweep: its file name, how its bytes are made from the rows, its
/// columns after the identity columns, and whether a sweep with these rows has it.
type Table = (
    &'static str,
    fn(&[String], &[Row]) -> Result<Vec<u8>>,
    fn() -> Vec<String>,
    fn(&[Row]) -> bool,
);

/// Tables every sweep has.
fn always(_: &[Row]) -> bool {
    true
}

/// The sweep's tables, in the order they are written: the one list of them.
const TABLES: &[Table] = &[
    ("cells.csv", cells_table, || owned(cell_columns()), always),
    (
        "frequencies.csv",
        frequencies_table,
        || owned(names(FREQUENCY_COLUMNS)),
        always,
    ),
    (
        "compare.csv",
        compare_table,
        || owned(compare_columns()),
        always,
    ),
    (
        "overlap.csv",
        overlap_table,
        || owned(overlap_columns()),
        always,
    ),
    ("summary.csv", summary_table, summary_columns, always),
    (
        "progress.csv",
        progress_table,
        || owned(names(PROGRESS_COLUMNS)),
        always,
    ),
    // Only where a cell recorded E_='s updates, so other sweeps' tables stay as
    // they were.
    (
        "eq_update.csv",
        eq_update_table,
        || owned(eq_update_columns()),
        |rows| rows.iter().any(|r| !r.eq_update.is_empty()),
    ),
];

fn owned(v: Vec<&str>) -> Vec<String> {
    v.into_iter().map(String::from).collect()
}

/// The tables' file names and CSV bytes, in the order of [`TABLES`].
pub fn tables(read: &SweepRows) -> Result<Vec<(&'static str, Vec<u8>)>> {
    TABLES
        .iter()
        .filter(|(_, _, _, present)| present(&read.rows))
        .map(|(name, make, _, _)| Ok((*name, make(&read.columns, &read.rows)?)))
        .collect()
}

/// Each table's file name and its columns after the identity columns (summary.csv
/// and overlap.csv drop `seed` from those), for documentation and its test.
pub fn table_columns() -> Vec<(&'static str, Vec<String>)> {
    TABLES
        .iter()
        .map(|(name, _, columns, _)| (*name, columns()))
        .collect()
}

/// Read the rows, spreading the cells over the available cores; the result is in
/// cell order whatever the thread count.
fn read_rows(
    root: &Path,
    index: &Index,
    cells: &[SweepCell],
    ids: &(dyn Fn(&SweepCell) -> Vec<String> + Sync),
) -> Result<Vec<Row>> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(cells.len().div_ceil(64).max(1));
    let chunk = cells.len().div_ceil(threads).max(1);
    let parts: Vec<Result<Vec<Row>>> = std::thread::scope(|s| {
        let handles: Vec<_> = cells
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .map(|c| read_row(root, index, ids(c), c))
                        .collect::<Result<Vec<Row>>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("reading a cell panicked"))
            .collect()
    });
    let mut rows = Vec::with_capacity(cells.len());
    for p in parts {
        rows.extend(p?);
    }
    Ok(rows)
}

/// A verified analysis's progress rows (empty for cells without snapshots).
fn read_progress(path: &Path) -> Result<Vec<ProgressRow>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let mut r =
        csv::Reader::from_path(path).with_context(|| format!("reading {}", path.display()))?;
    r.deserialize()
        .collect::<Result<Vec<ProgressRow>, _>>()
        .with_context(|| format!("{} is not a valid progress table", path.display()))
}

/// CSV bytes of a header and rows.
fn csv_bytes(header: &[String], rows: &[Vec<String>]) -> Result<Vec<u8>> {
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    w.write_record(header)?;
    for r in rows {
        w.write_record(r)?;
    }
    w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))
}
