//! `diff`: compare two CSV tables or two folders of them.

use super::{CliError, CmdResult};
use crate::diff::{diff_paths, render, DiffFormat, DiffOptions};
use anyhow::anyhow;
use clap::{Args, ValueEnum};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Format {
    Text,
    Markdown,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// Old CSV file or folder of CSV files.
    pub old: PathBuf,
    /// New CSV file or folder of CSV files.
    pub new: PathBuf,
    /// Identity columns matching rows [default: the shortest leading run of columns
    /// that tells every row apart].
    #[arg(long, value_delimiter = ',')]
    pub key: Vec<String>,
    /// Relative tolerance for float cells.
    #[arg(long, default_value_t = 1e-3)]
    pub rtol: f64,
    /// Absolute tolerance for float cells.
    #[arg(long, default_value_t = 1e-6)]
    pub atol: f64,
    /// Absolute tolerance for one column, replacing rtol/atol there, e.g. `test_acc=0.01`.
    #[arg(long, value_name = "COLUMN=TOL")]
    pub tol: Vec<String>,
    /// Columns to leave out, e.g. wall-clock timings (comma-separated or repeated).
    #[arg(long, value_delimiter = ',', value_name = "COLUMN")]
    pub ignore: Vec<String>,
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

pub fn diff(args: &DiffArgs) -> CmdResult {
    let mut column_tol = BTreeMap::new();
    for t in &args.tol {
        let (col, tol) = t
            .split_once('=')
            .ok_or_else(|| anyhow!("--tol {t}: expected COLUMN=TOLERANCE"))?;
        let tol: f64 = tol
            .parse()
            .map_err(|_| anyhow!("--tol {t}: {tol} is not a number"))?;
        column_tol.insert(col.to_string(), tol);
    }
    let opts = DiffOptions {
        key_columns: args.key.clone(),
        rtol: args.rtol,
        atol: args.atol,
        column_tol,
        ignore: args.ignore.iter().cloned().collect(),
    };
    for path in [&args.old, &args.new] {
        require_utf8(path)?;
    }
    let changes = diff_paths(&args.old, &args.new, &opts)?;
    let format = match args.format {
        Format::Text => DiffFormat::Text,
        Format::Markdown => DiffFormat::Markdown,
    };
    let tables = crate::diff::compared_tables(&args.old, &args.new)?;
    print!("{}", render(&changes, &tables, format));
    if changes.is_empty() {
        Ok(())
    } else {
        Err(CliError::Reported(1))
    }
}

/// Fail naming the file when a table (or a CSV file in a folder) is not UTF-8 text.
fn require_utf8(path: &Path) -> anyhow::Result<()> {
    let files: Vec<PathBuf> = if path.is_dir() {
        std::fs::read_dir(path)?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "csv"))
            .collect()
    } else {
        vec![path.to_path_buf()]
    };
    for f in files {
        if let Ok(bytes) = std::fs::read(&f) {
            if let Err(e) = std::str::from_utf8(&bytes) {
                anyhow::bail!(
                    "{}: not UTF-8 text (invalid byte at offset {})",
                    f.display(),
                    e.valid_up_to()
                );
            }
        }
    }
    Ok(())
}
