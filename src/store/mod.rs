//! The artifacts directory: one folder per trained cell, written so that a crash at
//! any instant leaves either the old state or the new one.
//!
//! ```text
//! artifacts/cells/<key>/
//!   cell.toml                 resolved canonical config
//!   checkpoint.safetensors    latest resumable state (while training; removed when done)
//!   curves.csv split.csv init.safetensors model.safetensors train.log
//!   manifest.json             written last: status, versions, timings, blake3 of every file
//!   lock                      per-cell lock (flock), held while a process trains the cell
//! ```
//!
//! Every file is written to a temporary name in the same folder, synced and renamed
//! into place, so no reader ever sees half a file. `manifest.json` is the commit
//! point: a cell is done exactly when its manifest says so and every file it lists
//! still has the recorded blake3 checksum. A cell that fails that check counts as
//! missing and is retrained; it is never used.

pub mod atomic;
mod cell;
pub mod formats;
pub mod gc;
pub mod lock;
pub mod manifest;
pub mod nearest;
pub mod snapshots;

pub use atomic::{
    check_sealed, dir_size, hash_file, hostname, is_sealed, now_secs, remove_temporaries,
    seal_safetensors, verify_files, verify_listed, verify_manifest_dir, write_atomic,
    write_dir_atomic, MANIFEST,
};
pub use cell::{load_checkpoint, read_cell_model, save_checkpoint};
pub use formats::{curves_csv, read_curves, read_split, split_csv};
pub use lock::CellLock;
pub use manifest::{
    new_manifest, save_trained_cell, train_log, Manifest, CELL_FILES, DFDX_VERSION, STORE_FORMAT,
};
pub use snapshots::{read_snapshots, snapshot_file, snapshot_files, write_snapshot};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::{Path, PathBuf};

// A cell folder's files, named once (`manifest.json` is [`MANIFEST`]).
pub const CELL_TOML: &str = "cell.toml";
pub const CURVES: &str = "curves.csv";
pub const SPLIT: &str = "split.csv";
pub const INIT: &str = "init.safetensors";
pub const TRAIN_LOG: &str = "train.log";
/// How AdamW moved E_= (cells with `train.eq_update_every` > 0).
pub const EQ_UPDATE: &str = "eq_update.csv";
pub use crate::engine::model_file::{LATENT_FILE, MODEL_FILE};
/// An analysis folder's signature (one of [`ANALYSIS_FILES`]).
pub const SIGNATURE: &str = "signature.json";
pub const CHECKPOINT: &str = "checkpoint.safetensors";
/// The checkpoint before the latest, kept until the next one is in place, so a
/// damaged latest checkpoint costs one checkpoint interval, not the whole run.
pub const PREVIOUS_CHECKPOINT: &str = "checkpoint.previous.safetensors";
pub const LOCK: &str = "lock";
/// In a cell adopted from its legacy key: that key.
pub const ADOPTED_FROM: &str = "adopted_from";
/// The files of `cells/<key>/analysis/<analysis key>/` (besides its manifest).
pub const ANALYSIS_FILES: [&str; 3] = [SIGNATURE, "frequencies.csv", "neurons.csv"];
/// An analysis folder's progress table, for a cell with snapshots.
pub const PROGRESS: &str = "progress.csv";

/// The files a complete analysis of a cell trained with `cfg` holds: a cell with
/// snapshots also has its [`PROGRESS`] table.
pub fn analysis_files(cfg: &crate::config::CellConfig) -> Vec<&'static str> {
    let mut files = ANALYSIS_FILES.to_vec();
    if cfg.train.snapshot_every > 0 {
        files.push(PROGRESS);
    }
    files
}

/// The files a cell's config adds to [`CELL_FILES`]: its snapshots and, when it
/// records E_='s updates, [`EQ_UPDATE`].
pub fn config_cell_files(cfg: &crate::config::CellConfig) -> Vec<String> {
    let mut files = snapshot_files(cfg);
    if cfg.train.eq_update_every > 0 {
        files.push(EQ_UPDATE.to_string());
    }
    files
}

/// Where a cell stands: the one vocabulary of manifests (`done`, `failed`), `plan`,
/// `status` and the tables. Declared in the order totals list them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CellState {
    /// Finished, every file checks out (and, in the tables, analysed).
    Done,
    /// Done, but no verified analysis for the sweep's analysis settings (tables only).
    Unanalysed,
    /// A process holds the cell's lock: it is being trained, here or on a cluster.
    Running,
    /// Not started, in a Slurm job that is still pending.
    Queued,
    /// Started, not finished and not being trained: files but no manifest.
    Partial,
    /// Training failed; the manifest holds the error.
    Failed,
    /// Nothing there, or files that do not match their manifest.
    Missing,
}

impl CellState {
    pub const ALL: [CellState; 7] = [
        CellState::Done,
        CellState::Unanalysed,
        CellState::Running,
        CellState::Queued,
        CellState::Partial,
        CellState::Failed,
        CellState::Missing,
    ];

    pub fn word(self) -> &'static str {
        match self {
            CellState::Done => "done",
            CellState::Unanalysed => "unanalysed",
            CellState::Running => "running",
            CellState::Queued => "queued",
            CellState::Partial => "partial",
            CellState::Failed => "failed",
            CellState::Missing => "missing",
        }
    }
}

impl std::fmt::Display for CellState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.word())
    }
}

/// The state of one cell in the artifacts directory.
#[derive(Clone, Debug, PartialEq)]
pub enum CellStatus {
    /// Finished and every file checks out.
    Done(Manifest),
    /// Training failed; the manifest holds the error.
    Failed(Manifest),
    /// Started, not finished: files but no manifest (maybe a checkpoint).
    Partial,
    /// Nothing there.
    Missing,
    /// A done manifest whose files do not check out: the reason names the file.
    Corrupt(String),
}

impl CellStatus {
    /// The state of what is on disk (corrupt counts as missing), ignoring locks.
    pub fn state(&self) -> CellState {
        match self {
            CellStatus::Done(_) => CellState::Done,
            CellStatus::Failed(_) => CellState::Failed,
            CellStatus::Partial => CellState::Partial,
            CellStatus::Missing | CellStatus::Corrupt(_) => CellState::Missing,
        }
    }
}

/// The artifacts directory.
#[derive(Clone, Debug)]
pub struct Artifacts {
    pub root: PathBuf,
}

impl Artifacts {
    /// The full key of the one done cell whose key starts with `prefix`.
    pub fn resolve_key(&self, prefix: &str) -> Result<String> {
        if prefix.len() < 4 || !prefix.chars().all(|c| c.is_ascii_hexdigit()) {
            anyhow::bail!(
                "{prefix} is neither a file nor a cell key prefix (at least 4 hex digits)"
            );
        }
        let mut found: Vec<String> = std::fs::read_dir(self.cells_dir())
            .with_context(|| format!("reading {}", self.cells_dir().display()))?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|k| k.starts_with(prefix))
            .collect();
        found.sort();
        match found.len() {
            0 => anyhow::bail!(
                "no cell in {} has a key starting with {prefix}",
                self.cells_dir().display()
            ),
            1 => {
                let key = found.remove(0);
                match self.status(&key) {
                    CellStatus::Done(_) => Ok(key),
                    other => anyhow::bail!("cell {key} is {}, not done", other.state()),
                }
            }
            _ => anyhow::bail!("key prefix {prefix} is ambiguous: {}", found.join(", ")),
        }
    }

    pub fn new(root: impl Into<PathBuf>) -> Artifacts {
        Artifacts { root: root.into() }
    }

    /// Move a cell stored under its legacy key ([`crate::key::legacy_cell_key`]:
    /// before keys hashed the trained form) to its key, when the legacy folder holds
    /// it and the key's folder holds nothing. The folder is renamed whole (weights,
    /// curves, checkpoints, analyses; a partial cell resumes from its checkpoint) and
    /// records its former key in [`ADOPTED_FROM`]; nothing is retrained. A folder
    /// some process is training is left for a later call. True when a folder moved.
    pub fn adopt_legacy(&self, cfg: &crate::config::CellConfig) -> Result<bool> {
        let (key, legacy) = (crate::key::cell_key(cfg), crate::key::legacy_cell_key(cfg));
        let (new, old) = (self.cell_dir(&key), self.cell_dir(&legacy));
        if key == legacy || !old.is_dir() || self.is_locked(&legacy) {
            return Ok(false);
        }
        if new.exists() {
            // Only a lock file left by a status check or an unstarted run may be there.
            if !matches!(self.status(&key), CellStatus::Missing) || self.is_locked(&key) {
                return Ok(false);
            }
            fs::remove_dir_all(&new).with_context(|| format!("removing {}", new.display()))?;
        }
        fs::rename(&old, &new)
            .with_context(|| format!("moving {} to {}", old.display(), new.display()))?;
        atomic::write_atomic(&new.join(ADOPTED_FROM), format!("{legacy}\n").as_bytes())?;
        Ok(true)
    }

    /// [`Artifacts::adopt_legacy`] for every config of a sweep, saying so for each
    /// cell moved.
    pub fn adopt_legacy_cells<'a>(
        &self,
        configs: impl IntoIterator<Item = &'a crate::config::CellConfig>,
    ) -> Result<()> {
        let short = |k: String| k[..crate::key::SHORT_KEY_LEN].to_string();
        for cfg in configs {
            if self.adopt_legacy(cfg)? {
                eprintln!(
                    "cell {} adopted from its legacy key {}",
                    short(crate::key::cell_key(cfg)),
                    short(crate::key::legacy_cell_key(cfg))
                );
            }
        }
        Ok(())
    }

    pub fn cells_dir(&self) -> PathBuf {
        self.root.join("cells")
    }

    pub fn cell_dir(&self, key: &str) -> PathBuf {
        self.cells_dir().join(key)
    }

    /// Where the analysis of a cell under analysis key `akey` lives.
    pub fn analysis_dir(&self, key: &str, akey: &str) -> PathBuf {
        self.cell_dir(key).join("analysis").join(akey)
    }

    /// The status of a cell, checking the files of a done cell against their checksums.
    pub fn status(&self, key: &str) -> CellStatus {
        self.status_with(key, true)
    }

    /// The status of a cell; `verify = false` trusts a done manifest without hashing files.
    pub fn status_with(&self, key: &str, verify: bool) -> CellStatus {
        let dir = self.cell_dir(key);
        let started = fs::read_dir(&dir)
            .map(|mut entries| entries.any(|e| e.is_ok_and(|e| e.file_name() != LOCK)))
            .unwrap_or(false);
        if !started {
            return CellStatus::Missing;
        }
        let manifest_path = dir.join(MANIFEST);
        let Ok(text) = fs::read_to_string(&manifest_path) else {
            return CellStatus::Partial;
        };
        let manifest: Manifest = match serde_json::from_str(&text) {
            Ok(m) => m,
            Err(e) => {
                return CellStatus::Corrupt(format!(
                    "{}: unreadable manifest ({e})",
                    manifest_path.display()
                ))
            }
        };
        match manifest.status {
            CellState::Done if !verify => CellStatus::Done(manifest),
            CellState::Done => {
                let expected = expected_cell_files(&dir, manifest.store_format);
                let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
                match verify_listed(&dir, &manifest.files, &expected) {
                    Ok(()) => CellStatus::Done(manifest),
                    Err(why) => CellStatus::Corrupt(why),
                }
            }
            CellState::Failed => CellStatus::Failed(manifest),
            _ => CellStatus::Partial,
        }
    }

    /// Take the cell's lock without waiting; `None` when another process holds it.
    pub fn try_lock(&self, key: &str) -> Result<Option<CellLock>> {
        let dir = self.cell_dir(key);
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        CellLock::try_acquire(&dir.join(LOCK))
    }

    /// The cell's state as `plan`, `status` and the tables show it: the verified
    /// status on disk, `running` while a process holds the lock of a cell not done.
    pub fn state(&self, key: &str) -> (CellState, CellStatus) {
        let status = self.status(key);
        let state = match status.state() {
            CellState::Done => CellState::Done,
            _ if self.is_locked(key) => CellState::Running,
            s => s,
        };
        (state, status)
    }

    /// Whether some process holds the cell's lock right now (it is training the cell).
    pub fn is_locked(&self, key: &str) -> bool {
        let path = self.cell_dir(key).join(LOCK);
        path.exists() && matches!(CellLock::try_acquire(&path), Ok(None))
    }
}

/// Every file a finished cell in `dir` must list in its manifest: [`CELL_FILES`],
/// `latent.safetensors` for a quantized precision (store format 2 on), and the
/// files its config asks for ([`config_cell_files`]). Without a readable `cell.toml` only
/// [`CELL_FILES`] (which include it, so such a cell fails verification anyway).
pub fn expected_cell_files(dir: &Path, store_format: u32) -> Vec<String> {
    let mut files: Vec<String> = CELL_FILES.iter().map(|s| s.to_string()).collect();
    let cfg = fs::read_to_string(dir.join(CELL_TOML))
        .ok()
        .and_then(|t| toml::from_str::<crate::config::CellConfig>(&t).ok());
    if let Some(cfg) = cfg {
        if store_format >= 2 && cfg.precision != crate::config::Precision::Fp32 {
            files.push(crate::engine::model_file::LATENT_FILE.to_string());
        }
        files.extend(config_cell_files(&cfg));
    }
    files
}

/// Move aside any directory standing where a cell file belongs (a user's mistake
/// or a broken tool), so the cell can be rebuilt instead of failing on every run.
/// Nothing is deleted: each goes to `NAME.aside-<seconds>`. Returns (from, to).
pub fn move_aside_directories(dir: &Path) -> Result<Vec<(PathBuf, PathBuf)>> {
    let mut moved = Vec::new();
    let expected = expected_cell_files(dir, STORE_FORMAT);
    let names =
        expected
            .iter()
            .map(String::as_str)
            .chain([MANIFEST, CHECKPOINT, PREVIOUS_CHECKPOINT]);
    for name in names {
        let from = dir.join(name);
        if from.symlink_metadata().is_ok_and(|m| m.is_dir()) {
            let to = dir.join(format!("{name}.aside-{}", now_secs()));
            fs::rename(&from, &to).with_context(|| format!("moving {} aside", from.display()))?;
            moved.push((from, to));
        }
    }
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn manifest(files: BTreeMap<String, String>) -> Manifest {
        Manifest {
            status: CellState::Done,
            key: "k".into(),
            bitgrok_version: "0".into(),
            dfdx_version: "0".into(),
            engine_version: 1,
            store_format: STORE_FORMAT,
            started: 0,
            finished: 0,
            seconds: 0.0,
            steps: 1,
            threads: 1,
            host: "h".into(),
            error: None,
            files,
        }
    }

    fn done_cell(a: &Artifacts, key: &str) {
        let dir = a.cell_dir(key);
        let mut files = BTreeMap::new();
        for name in CELL_FILES {
            write_atomic(&dir.join(name), name.as_bytes()).unwrap();
            files.insert(name.to_string(), hash_file(&dir.join(name)).unwrap());
        }
        write_atomic(
            &dir.join(MANIFEST),
            serde_json::to_string(&manifest(files)).unwrap().as_bytes(),
        )
        .unwrap();
    }

    #[test]
    fn status_follows_the_manifest_and_checksums() {
        let t = tempfile::tempdir().unwrap();
        let a = Artifacts::new(t.path());
        assert_eq!(a.status("k"), CellStatus::Missing);
        let _lock = a.try_lock("k").unwrap();
        assert_eq!(
            a.status("k"),
            CellStatus::Missing,
            "a lock alone is not a started cell"
        );
        fs::write(a.cell_dir("k").join("cell.toml"), "").unwrap();
        assert_eq!(a.status("k"), CellStatus::Partial);
        done_cell(&a, "k");
        assert_eq!(a.status("k").state(), CellState::Done);
        fs::write(a.cell_dir("k").join("model.safetensors"), b"weightz").unwrap();
        match a.status("k") {
            CellStatus::Corrupt(why) => assert!(why.contains("model.safetensors"), "{why}"),
            s => panic!("altered file not detected: {s:?}"),
        }
        fs::remove_file(a.cell_dir("k").join("model.safetensors")).unwrap();
        assert!(matches!(a.status("k"), CellStatus::Corrupt(w) if w.contains("missing")));
    }

    #[test]
    fn a_done_manifest_must_list_every_cell_file() {
        let t = tempfile::tempdir().unwrap();
        let a = Artifacts::new(t.path());
        done_cell(&a, "k");
        let path = a.cell_dir("k").join(MANIFEST);
        let mut m: Manifest = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        m.files.clear();
        fs::write(&path, serde_json::to_vec(&m).unwrap()).unwrap();
        match a.status("k") {
            CellStatus::Corrupt(why) => assert!(why.contains("does not list cell.toml"), "{why}"),
            s => panic!("an empty file list verified: {s:?}"),
        }
    }

    /// A done cell of `cfg`: every file its config implies, listed in its manifest
    /// except `omit`.
    fn done_cell_of(a: &Artifacts, key: &str, cfg: &crate::config::CellConfig, omit: &str) {
        let dir = a.cell_dir(key);
        fs::create_dir_all(dir.join("snapshots")).unwrap();
        fs::write(dir.join("cell.toml"), toml::to_string(cfg).unwrap()).unwrap();
        let mut files = BTreeMap::new();
        for name in expected_cell_files(&dir, STORE_FORMAT) {
            if name != "cell.toml" {
                write_atomic(&dir.join(&name), name.as_bytes()).unwrap();
            }
            if name != omit {
                files.insert(name.clone(), hash_file(&dir.join(&name)).unwrap());
            }
        }
        write_atomic(
            &dir.join(MANIFEST),
            serde_json::to_string(&manifest(files)).unwrap().as_bytes(),
        )
        .unwrap();
    }

    #[test]
    fn a_done_manifest_must_list_the_latent_weights_and_snapshots() {
        let t = tempfile::tempdir().unwrap();
        let a = Artifacts::new(t.path());
        let mut cfg = crate::config::CellConfig {
            precision: crate::config::Precision::Ternary,
            ..Default::default()
        };
        cfg.train.steps = 20;
        cfg.train.snapshot_every = 10;
        let snapshot = snapshot_files(&cfg)[0].clone();
        done_cell_of(&a, "whole", &cfg, "");
        assert_eq!(a.status("whole").state(), CellState::Done);
        for omit in ["latent.safetensors", snapshot.as_str()] {
            done_cell_of(&a, omit, &cfg, omit);
            match a.status(omit) {
                CellStatus::Corrupt(why) => {
                    assert!(why.contains(&format!("does not list {omit}")), "{why}")
                }
                s => panic!("a manifest without {omit} verified: {s:?}"),
            }
        }
        // fp32 has no latent weights to list.
        let fp32 = crate::config::CellConfig::default();
        done_cell_of(&a, "fp32", &fp32, "");
        assert!(!expected_cell_files(&a.cell_dir("fp32"), STORE_FORMAT)
            .contains(&"latent.safetensors".to_string()));
        assert_eq!(a.status("fp32").state(), CellState::Done);
        // A folder where the latent weights or a snapshot belong is moved aside.
        let dir = a.cell_dir("whole");
        for name in ["latent.safetensors", snapshot.as_str()] {
            fs::remove_file(dir.join(name)).unwrap();
            fs::create_dir_all(dir.join(name).join("inside")).unwrap();
        }
        let moved = move_aside_directories(&dir).unwrap();
        assert_eq!(moved.len(), 2, "{moved:?}");
        assert!(moved.iter().all(|(from, to)| !from.exists() && to.is_dir()));
    }

    #[test]
    fn a_sealed_safetensors_file_detects_any_flipped_bit() {
        let tensors = vec![("w".to_string(), vec![2, 2], vec![1.0f32, 2.0, 3.0, 4.0])];
        let meta = BTreeMap::from([("step".to_string(), "7".to_string())]);
        let plain = crate::engine::weights::to_safetensors_bytes(&tensors, &meta).unwrap();
        assert!(
            check_sealed(&plain).is_err(),
            "an unsealed file has no checksum"
        );
        let sealed = seal_safetensors(&plain).unwrap();
        check_sealed(&sealed).unwrap();
        let (back, meta_back) = crate::engine::weights::from_safetensors_bytes(&sealed).unwrap();
        assert_eq!(
            back["w"].1,
            vec![1.0, 2.0, 3.0, 4.0],
            "still a safetensors file"
        );
        assert_eq!(meta_back["step"], "7");
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert!(check_sealed(&bad).is_err(), "flip at byte {i} not detected");
        }
    }

    #[test]
    fn atomic_write_replaces_whole_files_and_leaves_no_temporaries() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("sub/file.txt");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::read_dir(p.parent().unwrap()).unwrap().count(), 1);
    }

    #[test]
    fn a_lock_excludes_others_until_dropped() {
        let t = tempfile::tempdir().unwrap();
        let a = Artifacts::new(t.path());
        let held = a.try_lock("k").unwrap().expect("free lock");
        assert!(a.try_lock("k").unwrap().is_none());
        assert!(a.is_locked("k"));
        drop(held);
        assert!(!a.is_locked("k"));
        assert!(a.try_lock("k").unwrap().is_some());
    }
}
