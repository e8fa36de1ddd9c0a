//! A cell's manifest (the commit point of a cell folder) and the writing of a
//! trained cell.

use crate::store::atomic::{hash_file, hostname, now_secs, write_atomic, MANIFEST};
use crate::store::formats::{curves_csv, split_csv};
use crate::store::CellState;
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// What a cell's manifest records.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// `done` or `failed`.
    pub status: CellState,
    pub key: String,
    pub bitgrok_version: String,
    pub dfdx_version: String,
    pub engine_version: u32,
    /// Layout of the cell's files: 1 = `model.safetensors` holds the latent weights
    /// beside the effective ones and no description (manifests without this field);
    /// 2 = self-describing `model.safetensors`, latent weights in `latent.safetensors`
    /// (`engine::model_file`). Both are read.
    #[serde(default = "store_format_1")]
    pub store_format: u32,
    /// Seconds since the Unix epoch.
    pub started: u64,
    pub finished: u64,
    /// Wall-clock seconds spent training in this and earlier (resumed) runs.
    pub seconds: f64,
    pub steps: u64,
    pub threads: usize,
    pub host: String,
    /// The error, for failed cells.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// blake3 (hex) of every file of the cell, by file name.
    pub files: BTreeMap<String, String>,
}

/// The dfdx release bitgrok trains with (checked against Cargo.lock by a test).
pub const DFDX_VERSION: &str = "0.13.0";

/// The store format new cells are written in (see [`Manifest::store_format`]).
pub const STORE_FORMAT: u32 = 2;

fn store_format_1() -> u32 {
    1
}

/// A manifest for `key` with versions, host and times filled in; status "done".
pub fn new_manifest(key: &str, started: u64, threads: usize) -> Manifest {
    Manifest {
        status: CellState::Done,
        key: key.to_string(),
        bitgrok_version: env!("CARGO_PKG_VERSION").to_string(),
        dfdx_version: DFDX_VERSION.to_string(),
        engine_version: crate::key::ENGINE_VERSION,
        store_format: STORE_FORMAT,
        started,
        finished: now_secs(),
        seconds: 0.0,
        steps: 0,
        threads,
        host: hostname(),
        error: None,
        files: BTreeMap::new(),
    }
}

/// Files every finished cell has besides the manifest (quantized cells of store
/// format 2 also have `latent.safetensors`, listed by
/// `engine::model_file::cell_model_files`).
pub const CELL_FILES: [&str; 6] = [
    super::CELL_TOML,
    super::CURVES,
    super::SPLIT,
    super::INIT,
    super::MODEL_FILE,
    super::TRAIN_LOG,
];

/// Write a trained cell's outputs, each atomically, then its manifest (the commit point).
pub fn save_trained_cell(
    dir: &Path,
    key: &str,
    output: &crate::engine::train::TrainOutput,
    started: u64,
    threads: usize,
) -> Result<Manifest> {
    let meta = BTreeMap::from([("bitgrok.key".to_string(), key.to_string())]);
    let models = crate::engine::model_file::cell_model_files(
        &output.config,
        key,
        &output.effective,
        &output.latent,
    )?;
    for (name, bytes) in &models {
        write_atomic(&dir.join(name), bytes)?;
    }
    let init = output.init.to_named();
    write_atomic(
        &dir.join(super::INIT),
        &crate::engine::weights::to_safetensors_bytes(&init, &meta)?,
    )?;
    write_atomic(&dir.join(super::CURVES), &curves_csv(&output.curves)?)?;
    write_atomic(&dir.join(super::SPLIT), &split_csv(&output.split)?)?;
    write_atomic(
        &dir.join(super::TRAIN_LOG),
        train_log(&output.curves).as_bytes(),
    )?;
    if output.config.train.eq_update_every > 0 {
        write_atomic(
            &dir.join(super::EQ_UPDATE),
            crate::engine::eq_update::to_csv(&output.eq_update).as_bytes(),
        )?;
    }
    let mut manifest = new_manifest(key, started, threads);
    manifest.seconds = output.seconds;
    manifest.steps = output.curves.last().map(|c| c.step).unwrap_or(0);
    // Snapshots were written during training (`store::write_snapshot`).
    let extra = crate::store::config_cell_files(&output.config);
    let written = models.iter().map(|(name, _)| *name);
    for name in CELL_FILES
        .into_iter()
        .chain(written)
        .chain(extra.iter().map(String::as_str))
    {
        manifest
            .files
            .insert(name.to_string(), hash_file(&dir.join(name))?);
    }
    write_atomic(
        &dir.join(MANIFEST),
        serde_json::to_string_pretty(&manifest)?.as_bytes(),
    )?;
    Ok(manifest)
}

/// train.log of a finished cell: one line per evaluation, written from the curves
/// (which a checkpoint carries), so a resumed cell's log equals an uninterrupted one's.
pub fn train_log(curves: &[crate::engine::train::CurvePoint]) -> String {
    curves
        .iter()
        .map(|c| {
            format!(
                "step {} train_loss {:.6} test_acc {:.4}\n",
                c.step, c.train_loss, c.test_acc
            )
        })
        .collect()
}
