//! Per-cell locks: an exclusive advisory lock (`flock`, through std's
//! `File::try_lock`) on `cells/<key>/lock`. The kernel releases it when the holder
//! exits for any reason, SIGKILL included, so a crashed process never leaves a
//! stale lock behind. The file records the holder's host and pid for display only.

use crate::store::atomic::hostname;
use anyhow::{Context, Result};
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::Path;

/// A held cell lock; released when dropped.
#[derive(Debug)]
pub struct CellLock {
    file: File,
}

impl CellLock {
    /// Take the lock at `path` without waiting; `None` when another process holds it.
    pub fn try_acquire(path: &Path) -> Result<Option<CellLock>> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Ok(None),
            Err(TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {}", path.display()))
            }
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
        let _ = self.file.unlock();
    }
}
