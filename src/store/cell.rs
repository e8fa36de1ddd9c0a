//! What the store does inside one cell's folder beyond its files' integrity:
//! checkpoints (sealed, the previous one kept until the next is in place), the lock
//! taken by waiting, a failure's record, and the cell's model as trained.

use super::{
    check_sealed, is_sealed, new_manifest, now_secs, seal_safetensors, write_atomic, Artifacts,
    CellLock, CellState, Manifest, CHECKPOINT, MANIFEST, PREVIOUS_CHECKPOINT, TRAIN_LOG,
};
use super::{CELL_TOML, MODEL_FILE};
use crate::config::CellConfig;
use crate::engine::model_file::{model_from_tensors, Described, Model};
use crate::engine::train::Checkpoint;
use crate::engine::weights::from_safetensors_bytes;
use crate::sweep::cell::short;
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::time::{Duration, Instant};

/// Write a checkpoint sealed with its checksum; the one it replaces is kept as the
/// previous checkpoint until the next one is in place.
pub fn save_checkpoint(dir: &Path, c: &Checkpoint) -> Result<()> {
    let bytes = seal_safetensors(&c.to_bytes()?)?;
    let latest = dir.join(CHECKPOINT);
    if latest.is_file() {
        std::fs::rename(&latest, dir.join(PREVIOUS_CHECKPOINT))
            .with_context(|| format!("keeping {} as the previous checkpoint", latest.display()))?;
    }
    write_atomic(&latest, &bytes)
}

/// The newest checkpoint that checks out: the latest, else the previous one, else
/// none (training starts from scratch). Every damaged checkpoint is reported by
/// name through `warn`.
pub fn load_checkpoint(dir: &Path, warn: impl Fn(&str)) -> Option<Checkpoint> {
    let mut damaged = false;
    for name in [CHECKPOINT, PREVIOUS_CHECKPOINT] {
        let path = dir.join(name);
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        if !is_sealed(&bytes) {
            if let Ok(c) = Checkpoint::from_bytes(&bytes) {
                warn(&format!(
                    "warning: {} has no checksum (written by an earlier bitgrok); resuming from it unverified",
                    path.display()
                ));
                return Some(c);
            }
        }
        match read_checkpoint(&bytes) {
            Ok(c) => {
                if damaged {
                    warn(&format!(
                        "warning: resuming {} from {} at step {}",
                        dir.display(),
                        path.display(),
                        c.step
                    ));
                }
                return Some(c);
            }
            Err(e) => {
                damaged = true;
                warn(&format!(
                    "warning: ignoring damaged checkpoint {}: {e:#}",
                    path.display()
                ));
            }
        }
    }
    if damaged {
        warn(&format!(
            "warning: no usable checkpoint in {}; training from scratch",
            dir.display()
        ));
    }
    None
}

fn read_checkpoint(bytes: &[u8]) -> Result<Checkpoint> {
    check_sealed(bytes)?;
    Checkpoint::from_bytes(bytes)
}

impl Artifacts {
    /// The cell's lock, waiting while another process holds it briefly (an analysis
    /// or gc); gives up after ten minutes.
    pub fn lock_waiting(&self, key: &str) -> Result<CellLock> {
        let started = Instant::now();
        loop {
            if let Some(lock) = self.try_lock(key)? {
                return Ok(lock);
            }
            if started.elapsed() > Duration::from_secs(600) {
                bail!("cell {} stayed locked by another process", short(key));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Record that training cell `key` failed with `error`: its `train.log` and a
    /// manifest with status `failed` (call it while holding the cell's lock, so it
    /// never lands on another process's finished cell).
    pub fn record_failure(&self, key: &str, threads: usize, error: &str) -> Result<()> {
        let dir = self.cell_dir(key);
        write_atomic(&dir.join(TRAIN_LOG), format!("error: {error}\n").as_bytes())?;
        let manifest = Manifest {
            status: CellState::Failed,
            error: Some(error.to_string()),
            ..new_manifest(key, now_secs(), threads)
        };
        write_atomic(
            &dir.join(MANIFEST),
            serde_json::to_string_pretty(&manifest)?.as_bytes(),
        )
        .context("writing the failure manifest")
    }
}

/// The model of a trained cell folder (format 2, or format 1 described by its
/// `cell.toml`), run as it was trained.
pub fn read_cell_model(dir: &Path) -> Result<(CellConfig, Model)> {
    let toml_path = dir.join(CELL_TOML);
    let text = std::fs::read_to_string(&toml_path)
        .with_context(|| format!("reading {}", toml_path.display()))?;
    let cfg: CellConfig =
        toml::from_str(&text).with_context(|| format!("parsing {}", toml_path.display()))?;
    let path = dir.join(MODEL_FILE);
    let buf = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let (tensors, meta) =
        from_safetensors_bytes(&buf).with_context(|| format!("parsing {}", path.display()))?;
    let given = Described {
        arch: Some(cfg.model.arch),
        act_bits: Some(cfg.quant.act_bits),
        act_eps: Some(cfg.quant.eps),
        attention_rate: Some(cfg.model.attention_rate),
        uniform_attention: Some(cfg.model.uniform_attention),
    };
    let loaded = model_from_tensors(&tensors, &meta, &given, &path.display().to_string())?;
    Ok((cfg, loaded.model))
}
