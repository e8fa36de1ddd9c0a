//! Sweep files: `load` = parse (`spec`, with the settings registry `settings`) →
//! expand into cells (`grid`, one [`Cell`] type) → validate every cell with the one
//! rule set (`CellConfig::check`), each violation mapped to file:line:col.

pub mod cell;
pub mod grid;
pub mod settings;
pub mod spec;

pub use cell::Cell;
pub use spec::{Problem, SpecError, Sweep};

use std::collections::HashSet;
use std::path::Path;

/// The most cells one sweep may have. Counting is cheap, but every cell costs
/// memory and time to build and check; a larger sweep is usually a typo (or several
/// sweep files are the better shape).
pub const MAX_CELLS: u128 = 100_000;

/// Read, parse, expand and validate a sweep file.
pub fn load(path: &Path) -> Result<Sweep, SpecError> {
    match std::fs::read_to_string(path) {
        Ok(text) => load_str(path, &text),
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

/// [`load`] on the text of a sweep file; `path` is only used in messages.
pub fn load_str(path: &Path, text: &str) -> Result<Sweep, SpecError> {
    let (sweep, mut problems) = spec::parse(path, text);
    let mut sweep = sweep;
    if let Some(sweep) = &mut sweep {
        let n = grid::count_upper_bound(sweep);
        if n > MAX_CELLS {
            problems.push(Problem {
                file: path.to_path_buf(),
                location: sweep.axes.first().and_then(|a| a.location),
                key: "grid".into(),
                message: format!(
                    "{n} cells is too many (allowed: at most {MAX_CELLS} per sweep file)"
                ),
            });
        } else {
            // Runs even when parsing found problems, on the parts that did parse, so
            // every problem of the file is reported at once.
            sweep.cells = validate(sweep, &mut problems);
        }
    }
    if problems.is_empty() {
        Ok(sweep.expect("a sweep without problems"))
    } else {
        problems.sort_by_key(|p| p.location);
        problems.dedup();
        Err(SpecError { problems })
    }
}

/// Expand the sweep and check every cell, blaming each violation on the first of
/// its settings that the file sets.
fn validate(sweep: &Sweep, problems: &mut Vec<Problem>) -> Vec<Cell> {
    let mut seen = HashSet::new();
    let mut cells = Vec::new();
    for traced in grid::expand_traced(sweep) {
        let cell = traced.cell;
        for v in cell.config.check().into_iter().chain(cell.analysis.check()) {
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
                problems.push(Problem {
                    file: sweep.path.clone(),
                    location: loc,
                    key: shown,
                    message,
                });
            }
        }
        cells.push(cell);
    }
    cells
}
