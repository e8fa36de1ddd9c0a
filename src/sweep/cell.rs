//! A cell: one resolved configuration of a sweep, with its content key and the axis
//! values that tell it apart from its neighbours. The one type the grid produces,
//! the runner trains, Slurm submissions freeze and the tables list.

use crate::config::{AnalysisConfig, CellConfig};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    /// `key::cell_key(&config)`.
    pub key: String,
    pub config: CellConfig,
    pub analysis: AnalysisConfig,
    /// What distinguishes this cell, for display: every grid axis (name, value as
    /// text) in axis order, then the other settings of its `[[cells]]` entry.
    #[serde(default)]
    pub axes: Vec<(String, String)>,
}

impl Cell {
    pub fn new(config: CellConfig, analysis: AnalysisConfig, axes: Vec<(String, String)>) -> Cell {
        Cell {
            key: crate::key::cell_key(&config),
            config,
            analysis,
            axes,
        }
    }

    /// The axis values, e.g. `precision=fp32 seed=0`.
    pub fn label(&self) -> String {
        let parts: Vec<String> = self.axes.iter().map(|(k, v)| format!("{k}={v}")).collect();
        parts.join(" ")
    }

    /// The value of one display column, `-` when the cell does not have it.
    pub fn axis_value(&self, name: &str) -> &str {
        self.axes
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("-")
    }

    /// `key::analysis_key` of the cell's analysis settings.
    pub fn analysis_key(&self) -> String {
        crate::key::analysis_key(&self.analysis)
    }

    /// The canonical config as TOML, stored as cell.toml.
    pub fn canonical_toml(&self) -> String {
        crate::key::cell_toml(&self.config)
    }

    /// The first 12 hex digits of the key, as shown in tables and messages.
    pub fn short_key(&self) -> &str {
        short(&self.key)
    }
}

/// The first [`crate::key::SHORT_KEY_LEN`] hex digits of a key.
pub fn short(key: &str) -> &str {
    &key[..key.len().min(crate::key::SHORT_KEY_LEN)]
}

/// The display columns of cells: the grid axes, then any other setting a
/// `[[cells]]` entry names (first appearance).
pub fn columns(axis_names: &[String], cells: &[Cell]) -> Vec<String> {
    let mut columns = axis_names.to_vec();
    for c in cells {
        for (k, _) in &c.axes {
            if !columns.contains(k) {
                columns.push(k.clone());
            }
        }
    }
    columns
}
