//! Expand a sweep into its cells, each resolved to a full configuration.
//!
//! Order (deterministic): first the cartesian product of the `[grid]` axes, axes in
//! the order they appear in the file, the last axis varying fastest (like nested
//! loops written top to bottom); then each `[[cells]]` entry in file order. An entry
//! fixes the settings it names and still varies over the grid axes it does not
//! name, in the same order. A cell equal to an earlier one (same resolved training
//! and analysis settings) is dropped. Without a `[grid]` table the sweep is the one
//! cell of its fixed settings, or, when it has `[[cells]]`, exactly those cells.

pub use crate::sweep::cell::Cell;
use crate::sweep::settings::{effective_value, resolve, value_text};
use crate::sweep::spec::{Origin, Setting, Sweep};
use std::collections::{BTreeMap, HashSet};
use toml::Value;

/// A cell with, for every setting the file gave, where it was given.
pub(crate) struct Traced {
    pub cell: Cell,
    pub origins: BTreeMap<String, Origin>,
}

/// All cells of a sweep, in the documented order, without duplicates (`sweep::load`
/// fills `Sweep::cells` with these).
pub fn expand(sweep: &Sweep) -> Vec<Cell> {
    expand_traced(sweep).into_iter().map(|t| t.cell).collect()
}

/// How many cells the sweep has at most (before duplicates are dropped), computed
/// from the axis lengths without building any cell; saturates at `u128::MAX`.
pub fn count_upper_bound(sweep: &Sweep) -> u128 {
    let block = |overrides: &[Setting]| -> u128 {
        sweep
            .axes
            .iter()
            .filter(|a| !overrides.iter().any(|o| o.key == a.key))
            .fold(1u128, |n, a| n.saturating_mul(a.values.len() as u128))
    };
    let mut n = 0u128;
    if sweep.has_grid || sweep.extra.is_empty() {
        n = block(&[]);
    }
    for entry in &sweep.extra {
        n = n.saturating_add(block(&entry.settings));
    }
    n
}

/// The names of the grid axes, in order.
pub fn axis_names(sweep: &Sweep) -> Vec<String> {
    sweep.axes.iter().map(|a| a.key.clone()).collect()
}

pub(crate) fn expand_traced(sweep: &Sweep) -> Vec<Traced> {
    let mut base: BTreeMap<String, (Value, Origin)> = BTreeMap::new();
    for s in &sweep.fixed {
        base.insert(s.key.clone(), (s.value.clone(), origin(&s.key, s)));
    }
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    if sweep.has_grid || sweep.extra.is_empty() {
        product(sweep, &base, &[], None, &mut out, &mut seen);
    }
    for (i, entry) in sweep.extra.iter().enumerate() {
        product(sweep, &base, &entry.settings, Some(i), &mut out, &mut seen);
    }
    show_every_identity(&mut out);
    out
}

/// A setting one `[[cells]]` entry names is another cell's default or sweep-level
/// value: write it out in every cell, so no identity column is ever blank (a blank
/// would not say which value the cell has).
fn show_every_identity(cells: &mut [Traced]) {
    let mut names: Vec<String> = Vec::new();
    for t in cells.iter() {
        for (name, _) in &t.cell.axes {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
    }
    for t in cells.iter_mut() {
        for name in &names {
            if !t.cell.axes.iter().any(|(n, _)| n == name) {
                let value = effective_value(&t.cell.config, &t.cell.analysis, name);
                t.cell.axes.push((name.clone(), value));
            }
        }
    }
}

fn origin(shown: &str, s: &Setting) -> Origin {
    Origin {
        shown: shown.to_string(),
        location: s.location,
    }
}

/// Add the cells of one block: the axes not fixed by `overrides`, last fastest.
fn product(
    sweep: &Sweep,
    base: &BTreeMap<String, (Value, Origin)>,
    overrides: &[Setting],
    entry: Option<usize>,
    out: &mut Vec<Traced>,
    seen: &mut HashSet<(String, String)>,
) {
    let varying: Vec<_> = sweep
        .axes
        .iter()
        .filter(|a| !overrides.iter().any(|o| o.key == a.key))
        .collect();
    let mut index = vec![0usize; varying.len()];
    loop {
        let mut values = base.clone();
        for (axis, &i) in varying.iter().zip(&index) {
            let s = &axis.values[i];
            values.insert(
                s.key.clone(),
                (s.value.clone(), origin(&format!("grid.{}", s.key), s)),
            );
        }
        for s in overrides {
            let shown = format!("cells[{}].{}", entry.unwrap_or(0), s.key);
            values.insert(s.key.clone(), (s.value.clone(), origin(&shown, s)));
        }
        let plain: BTreeMap<String, Value> = values
            .iter()
            .map(|(k, (v, _))| (k.clone(), v.clone()))
            .collect();
        // Every value was checked on its own while parsing, so this resolves.
        if let Ok((config, analysis)) = resolve(&plain) {
            let signature = (
                crate::key::cell_toml(&config),
                crate::key::analysis_text(&analysis),
            );
            if seen.insert(signature) {
                let mut axes: Vec<(String, String)> = sweep
                    .axes
                    .iter()
                    .map(|a| (a.key.clone(), value_text(&plain[&a.key])))
                    .collect();
                for s in overrides {
                    if !sweep.axes.iter().any(|a| a.key == s.key) {
                        axes.push((s.key.clone(), value_text(&s.value)));
                    }
                }
                out.push(Traced {
                    cell: Cell::new(config, analysis, axes),
                    origins: values.into_iter().map(|(k, (_, o))| (k, o)).collect(),
                });
            }
        }
        // Odometer step: the last axis varies fastest.
        let mut d = varying.len();
        loop {
            if d == 0 {
                return;
            }
            d -= 1;
            index[d] += 1;
            if index[d] < varying[d].values.len() {
                break;
            }
            index[d] = 0;
        }
    }
}
