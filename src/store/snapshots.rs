//! Snapshots of a cell's effective weights over training (`train.snapshot_every`),
//! for the progress measures: `snapshots/step-NNNNNNNN.safetensors`, checksummed in
//! the cell's manifest like every other file.

use crate::config::CellConfig;
use crate::engine::weights::ModelWeights;
use crate::store::atomic::write_atomic;
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::path::Path;

/// A snapshot's file, relative to its cell folder.
pub fn snapshot_file(step: u64) -> String {
    format!("snapshots/step-{step:08}.safetensors")
}

/// The snapshot files a cell of this config has, ascending by step.
pub fn snapshot_files(cfg: &CellConfig) -> Vec<String> {
    crate::engine::train::snapshot_steps(cfg)
        .into_iter()
        .map(snapshot_file)
        .collect()
}

/// Write the effective weights of `step` as a snapshot of the cell in `dir`
/// (atomically; written again with the same bits after a resume).
pub fn write_snapshot(dir: &Path, key: &str, step: u64, w: &ModelWeights) -> Result<()> {
    let meta = BTreeMap::from([
        ("bitgrok.key".to_string(), key.to_string()),
        ("bitgrok.step".to_string(), step.to_string()),
    ]);
    write_atomic(
        &dir.join(snapshot_file(step)),
        &crate::engine::weights::to_safetensors_bytes(&w.to_named(), &meta)?,
    )
}

/// The snapshots of a cell, ascending by step, as its config asks for them.
pub fn read_snapshots(dir: &Path, cfg: &CellConfig) -> Result<Vec<(u64, ModelWeights)>> {
    crate::engine::train::snapshot_steps(cfg)
        .into_iter()
        .map(|step| {
            let path = dir.join(snapshot_file(step));
            let (tensors, _) = crate::engine::weights::read_safetensors(&path)?;
            let w = ModelWeights::from_named(&tensors, "", cfg.model.arch)
                .with_context(|| format!("reading snapshot {}", path.display()))?;
            Ok((step, w))
        })
        .collect()
}
