//! The artifacts directory: where each cell's results live and whether they are done.
//!
//! Layout: `<artifacts>/cells/<key>/manifest.json`; a cell is done when its manifest
//! says `"status": "done"`, partial when its directory exists otherwise (a run was
//! started or killed), missing when there is no directory.

use std::fmt;
use std::path::{Path, PathBuf};

/// Cache status of one cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CellStatus {
    Done,
    Partial,
    Missing,
}

impl fmt::Display for CellStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CellStatus::Done => "done",
            CellStatus::Partial => "partial",
            CellStatus::Missing => "missing",
        })
    }
}

/// The directory of one cell.
pub fn cell_dir(artifacts: &Path, key: &str) -> PathBuf {
    artifacts.join("cells").join(key)
}

/// The manifest file of one cell.
pub fn manifest_path(artifacts: &Path, key: &str) -> PathBuf {
    cell_dir(artifacts, key).join("manifest.json")
}

/// Whether a cell is done, partial or missing. An unreadable or malformed manifest
/// counts as partial.
pub fn cell_status(artifacts: &Path, key: &str) -> CellStatus {
    let dir = cell_dir(artifacts, key);
    if !dir.is_dir() {
        return CellStatus::Missing;
    }
    let done = std::fs::read(manifest_path(artifacts, key))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .is_some_and(|m| m.get("status").and_then(|s| s.as_str()) == Some("done"));
    if done {
        CellStatus::Done
    } else {
        CellStatus::Partial
    }
}
