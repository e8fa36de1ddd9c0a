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

use anyhow::{anyhow, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

pub const MANIFEST: &str = "manifest.json";
pub const CHECKPOINT: &str = "checkpoint.safetensors";
pub const LOCK: &str = "lock";

/// What a cell's manifest records.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// "done" or "failed".
    pub status: String,
    pub key: String,
    pub bitgrok_version: String,
    pub dfdx_version: String,
    pub engine_version: u32,
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
    /// The word used in tables: done, failed, partial, missing (corrupt counts as missing).
    pub fn word(&self) -> &'static str {
        match self {
            CellStatus::Done(_) => "done",
            CellStatus::Failed(_) => "failed",
            CellStatus::Partial => "partial",
            CellStatus::Missing | CellStatus::Corrupt(_) => "missing",
        }
    }
}

/// The artifacts directory.
#[derive(Clone, Debug)]
pub struct Artifacts {
    pub root: PathBuf,
}

impl Artifacts {
    pub fn new(root: impl Into<PathBuf>) -> Artifacts {
        Artifacts { root: root.into() }
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
        match manifest.status.as_str() {
            "done" if !verify => CellStatus::Done(manifest),
            "done" => match verify_files(&dir, &manifest.files) {
                Ok(()) => CellStatus::Done(manifest),
                Err(why) => CellStatus::Corrupt(why),
            },
            "failed" => CellStatus::Failed(manifest),
            _ => CellStatus::Partial,
        }
    }

    /// Take the cell's lock without waiting; `None` when another process holds it.
    pub fn try_lock(&self, key: &str) -> Result<Option<CellLock>> {
        let dir = self.cell_dir(key);
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        CellLock::try_acquire(&dir.join(LOCK))
    }

    /// Whether some process holds the cell's lock right now (it is training the cell).
    pub fn is_locked(&self, key: &str) -> bool {
        let path = self.cell_dir(key).join(LOCK);
        path.exists() && matches!(CellLock::try_acquire(&path), Ok(None))
    }
}

/// Check every listed file against its blake3 checksum; the error names the file.
pub fn verify_files(
    dir: &Path,
    files: &BTreeMap<String, String>,
) -> std::result::Result<(), String> {
    for (name, expected) in files {
        let path = dir.join(name);
        match hash_file(&path) {
            Ok(h) if &h == expected => {}
            Ok(_) => {
                return Err(format!(
                    "{}: checksum does not match the manifest",
                    path.display()
                ))
            }
            Err(_) => return Err(format!("{}: missing or unreadable", path.display())),
        }
    }
    Ok(())
}

/// A folder written by [`write_dir_atomic`]: its manifest.json lists every file
/// with its checksum; all must check out.
pub fn verify_manifest_dir(dir: &Path) -> std::result::Result<(), String> {
    let path = dir.join(MANIFEST);
    let text = fs::read_to_string(&path).map_err(|_| format!("{}: missing", path.display()))?;
    let files: BTreeMap<String, String> =
        serde_json::from_str(&text).map_err(|e| format!("{}: unreadable ({e})", path.display()))?;
    verify_files(dir, &files)
}

/// Build a folder under a temporary name with `fill`, add a manifest.json of the
/// checksums of its files, and rename it to `dir` (replacing an old one), so `dir`
/// is either absent, the old folder or the complete new one.
pub fn write_dir_atomic(dir: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let parent = dir
        .parent()
        .ok_or_else(|| anyhow!("{} has no parent folder", dir.display()))?;
    let name = dir
        .file_name()
        .ok_or_else(|| anyhow!("{} has no name", dir.display()))?
        .to_string_lossy();
    let tmp = parent.join(temp_name(&name));
    fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let result = (|| -> Result<()> {
        fill(&tmp)?;
        let mut files = BTreeMap::new();
        for e in fs::read_dir(&tmp)? {
            let e = e?;
            File::open(e.path())?.sync_all()?;
            files.insert(
                e.file_name().to_string_lossy().into_owned(),
                hash_file(&e.path())?,
            );
        }
        let mut f = File::create(tmp.join(MANIFEST))?;
        f.write_all(serde_json::to_string_pretty(&files)?.as_bytes())?;
        f.sync_all()?;
        if dir.exists() {
            fs::remove_dir_all(dir)?;
        }
        if let Err(e) = fs::rename(&tmp, dir) {
            // Another process put the same folder in place meanwhile: keep a good one.
            if verify_manifest_dir(dir).is_err() {
                return Err(e.into());
            }
            fs::remove_dir_all(&tmp)?;
        }
        File::open(parent)?.sync_all()?;
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_dir_all(&tmp);
    }
    result.with_context(|| format!("writing {}", dir.display()))
}

/// blake3 of a file, hex.
pub fn hash_file(path: &Path) -> Result<String> {
    let mut hasher = blake3::Hasher::new();
    hasher.update_reader(File::open(path)?)?;
    Ok(hasher.finalize().to_hex().to_string())
}

/// Write `bytes` to `path` atomically: a temporary file in the same folder, synced,
/// then renamed over `path`, then the folder synced. Readers see the old file or
/// the whole new one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| anyhow!("{} has no parent folder", path.display()))?;
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = path
        .file_name()
        .ok_or_else(|| anyhow!("{} has no file name", path.display()))?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| -> Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()?;
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.with_context(|| format!("writing {}", path.display()))
}

/// A temporary name for `name` in the same folder, unique across threads,
/// processes and hosts sharing the artifacts folder; removed by
/// [`remove_temporaries`] if a crash leaves it behind.
fn temp_name(name: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!(".{name}.{}.{}.{n}.tmp", hostname(), std::process::id())
}

/// Remove temporary files that an interrupted write left in a cell folder.
pub fn remove_temporaries(dir: &Path) -> Result<u64> {
    let mut freed = 0;
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && name.ends_with(".tmp") {
                freed += e.metadata().map(|m| m.len()).unwrap_or(0);
                fs::remove_file(e.path())?;
            }
        }
    }
    if let Ok(entries) = fs::read_dir(dir.join("analysis")) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && name.ends_with(".tmp") {
                freed += dir_size(&e.path());
                fs::remove_dir_all(e.path())?;
            }
        }
    }
    Ok(freed)
}

/// Total size in bytes of the files under `path`.
pub fn dir_size(path: &Path) -> u64 {
    walkdir::WalkDir::new(path)
        .into_iter()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

/// An exclusive advisory lock (flock) on a cell. The kernel releases it when the
/// holder exits for any reason, SIGKILL included, so a crashed process never
/// leaves a stale lock behind. The file records the holder's host and pid for
/// display only.
#[derive(Debug)]
pub struct CellLock {
    file: File,
}

impl CellLock {
    fn try_acquire(path: &Path) -> Result<Option<CellLock>> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        // SAFETY: flock on a file descriptor we own; no memory is shared.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Ok(None);
            }
            return Err(err).with_context(|| format!("locking {}", path.display()));
        }
        // A cell folder removed (by gc) after we opened the lock file leaves us
        // holding a lock on a deleted file: count that as busy and try again later.
        use std::os::unix::fs::MetadataExt;
        if fs::metadata(path).map(|m| m.ino()).ok() != Some(file.metadata()?.ino()) {
            return Ok(None);
        }
        file.set_len(0)?;
        (&file).write_all(format!("{} {}\n", hostname(), std::process::id()).as_bytes())?;
        Ok(Some(CellLock { file }))
    }
}

impl Drop for CellLock {
    fn drop(&mut self) {
        // SAFETY: unlocking our own descriptor.
        unsafe { libc::flock(self.file.as_raw_fd(), libc::LOCK_UN) };
    }
}

/// This machine's host name.
pub fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown".to_string())
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The dfdx release bitgrok trains with (checked against Cargo.lock by a test).
pub const DFDX_VERSION: &str = "0.13.0";

/// A manifest for `key` with versions, host and times filled in; status "done".
pub fn new_manifest(key: &str, started: u64, threads: usize) -> Manifest {
    Manifest {
        status: "done".into(),
        key: key.to_string(),
        bitgrok_version: env!("CARGO_PKG_VERSION").to_string(),
        dfdx_version: DFDX_VERSION.to_string(),
        engine_version: crate::key::ENGINE_VERSION,
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

/// Files of a finished cell besides the manifest.
pub const CELL_FILES: [&str; 6] = [
    "cell.toml",
    "curves.csv",
    "split.csv",
    "init.safetensors",
    "model.safetensors",
    "train.log",
];

/// A snapshot's file, relative to its cell folder.
pub fn snapshot_file(step: u64) -> String {
    format!("snapshots/step-{step:08}.safetensors")
}

/// Write the effective weights of `step` as a snapshot of the cell in `dir`
/// (atomically; written again with the same bits after a resume).
pub fn write_snapshot(
    dir: &Path,
    key: &str,
    step: u64,
    w: &crate::engine::weights::ModelWeights,
) -> Result<()> {
    let path = dir.join(snapshot_file(step));
    std::fs::create_dir_all(path.parent().expect("snapshots/ has a parent"))?;
    let meta = BTreeMap::from([
        ("bitgrok.key".to_string(), key.to_string()),
        ("bitgrok.step".to_string(), step.to_string()),
    ]);
    let tensors = crate::engine::weights::model_tensors(w, None);
    write_atomic(
        &path,
        &crate::engine::weights::to_safetensors_bytes(&tensors, &meta)?,
    )
}

/// The snapshots of a cell, ascending by step, as its config asks for them.
pub fn read_snapshots(
    dir: &Path,
    cfg: &crate::config::CellConfig,
) -> Result<Vec<(u64, crate::engine::weights::ModelWeights)>> {
    crate::engine::train::snapshot_steps(cfg)
        .into_iter()
        .map(|step| {
            let path = dir.join(snapshot_file(step));
            let (tensors, _) = crate::engine::weights::read_safetensors(&path)?;
            let w = crate::engine::weights::ModelWeights::from_named(&tensors, "", cfg.model.arch)
                .with_context(|| format!("reading snapshot {}", path.display()))?;
            Ok((step, w))
        })
        .collect()
}

/// Write a trained cell's outputs, each atomically, then its manifest (the commit point).
/// `snapshots` are the cell's snapshot files (already written), checksummed with the rest.
pub fn save_trained_cell(
    dir: &Path,
    key: &str,
    output: &crate::engine::train::TrainOutput,
    started: u64,
    threads: usize,
    log: &[String],
    snapshots: &[String],
) -> Result<Manifest> {
    let meta = BTreeMap::from([("bitgrok.key".to_string(), key.to_string())]);
    // Latent weights only where they differ from the effective ones (quantized cells).
    let latent = (output.latent != output.effective).then_some(&output.latent);
    let model = crate::engine::weights::model_tensors(&output.effective, latent);
    write_atomic(
        &dir.join("model.safetensors"),
        &crate::engine::weights::to_safetensors_bytes(&model, &meta)?,
    )?;
    let init = crate::engine::weights::model_tensors(&output.init, None);
    write_atomic(
        &dir.join("init.safetensors"),
        &crate::engine::weights::to_safetensors_bytes(&init, &meta)?,
    )?;
    write_atomic(&dir.join("curves.csv"), &curves_csv(&output.curves)?)?;
    write_atomic(&dir.join("split.csv"), &split_csv(&output.split)?)?;
    write_atomic(&dir.join("train.log"), (log.join("\n") + "\n").as_bytes())?;
    let mut manifest = new_manifest(key, started, threads);
    manifest.seconds = output.seconds;
    manifest.steps = output.curves.last().map(|c| c.step).unwrap_or(0);
    for name in CELL_FILES
        .iter()
        .copied()
        .chain(snapshots.iter().map(String::as_str))
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

/// curves.csv: step, train/test loss and accuracy.
pub fn curves_csv(curves: &[crate::engine::train::CurvePoint]) -> Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(["step", "train_loss", "train_acc", "test_loss", "test_acc"])?;
    for c in curves {
        w.write_record([
            c.step.to_string(),
            c.train_loss.to_string(),
            c.train_acc.to_string(),
            c.test_loss.to_string(),
            c.test_acc.to_string(),
        ])?;
    }
    Ok(w.into_inner()?)
}

/// Read curves.csv back.
pub fn read_curves(path: &Path) -> Result<Vec<crate::engine::train::CurvePoint>> {
    let mut r =
        csv::Reader::from_path(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    for rec in r.records() {
        let rec = rec?;
        let f = |i: usize| -> Result<f64> { Ok(rec.get(i).unwrap_or("").parse::<f64>()?) };
        out.push(crate::engine::train::CurvePoint {
            step: rec.get(0).unwrap_or("").parse()?,
            train_loss: f(1)?,
            train_acc: f(2)?,
            test_loss: f(3)?,
            test_acc: f(4)?,
        });
    }
    Ok(out)
}

/// split.csv: every pair (a, b) and whether it was in the train or the test set.
pub fn split_csv(split: &crate::engine::data::Split) -> Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(["a", "b", "set"])?;
    for (set, pairs) in [("train", &split.train), ("test", &split.test)] {
        for (a, b) in pairs {
            w.write_record([a.to_string(), b.to_string(), set.to_string()])?;
        }
    }
    Ok(w.into_inner()?)
}

/// Read split.csv back.
pub fn read_split(path: &Path) -> Result<crate::engine::data::Split> {
    let mut r =
        csv::Reader::from_path(path).with_context(|| format!("reading {}", path.display()))?;
    let mut split = crate::engine::data::Split {
        train: Vec::new(),
        test: Vec::new(),
    };
    for rec in r.records() {
        let rec = rec?;
        let pair = (
            rec.get(0).unwrap_or("").parse()?,
            rec.get(1).unwrap_or("").parse()?,
        );
        match rec.get(2) {
            Some("train") => split.train.push(pair),
            Some("test") => split.test.push(pair),
            other => anyhow::bail!("{}: unknown set {other:?}", path.display()),
        }
    }
    Ok(split)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(files: BTreeMap<String, String>) -> Manifest {
        Manifest {
            status: "done".into(),
            key: "k".into(),
            bitgrok_version: "0".into(),
            dfdx_version: "0".into(),
            engine_version: 1,
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
        write_atomic(&dir.join("model.safetensors"), b"weights").unwrap();
        let files = BTreeMap::from([(
            "model.safetensors".to_string(),
            hash_file(&dir.join("model.safetensors")).unwrap(),
        )]);
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
        assert_eq!(a.status("k").word(), "done");
        fs::write(a.cell_dir("k").join("model.safetensors"), b"weightz").unwrap();
        match a.status("k") {
            CellStatus::Corrupt(why) => assert!(why.contains("model.safetensors"), "{why}"),
            s => panic!("altered file not detected: {s:?}"),
        }
        fs::remove_file(a.cell_dir("k").join("model.safetensors")).unwrap();
        assert!(matches!(a.status("k"), CellStatus::Corrupt(w) if w.contains("missing")));
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
