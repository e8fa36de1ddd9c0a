//! Atomic writes and checksums: every file is written under a temporary name,
//! synced and renamed into place, so a crash leaves the old file or the whole new
//! one; folders are built under a temporary name with a manifest of checksums.

use anyhow::{anyhow, bail, Context, Result};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

/// The manifest file name of a cell folder and of every folder [`write_dir_atomic`] builds.
pub const MANIFEST: &str = "manifest.json";

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

/// Check that a manifest lists every file in `expected` (so an emptied manifest
/// never vouches for a folder), then every listed file's checksum.
pub fn verify_listed(
    dir: &Path,
    files: &BTreeMap<String, String>,
    expected: &[&str],
) -> std::result::Result<(), String> {
    if let Some(name) = expected.iter().find(|n| !files.contains_key(**n)) {
        return Err(format!(
            "{}: does not list {name}",
            dir.join(MANIFEST).display()
        ));
    }
    verify_files(dir, files)
}

/// A folder written by [`write_dir_atomic`]: its manifest.json lists every file of
/// `expected` (and maybe more) with its checksum; all must check out.
pub fn verify_manifest_dir(dir: &Path, expected: &[&str]) -> std::result::Result<(), String> {
    let path = dir.join(MANIFEST);
    let text = fs::read_to_string(&path).map_err(|_| format!("{}: missing", path.display()))?;
    let files: BTreeMap<String, String> =
        serde_json::from_str(&text).map_err(|e| format!("{}: unreadable ({e})", path.display()))?;
    verify_listed(dir, &files, expected)
}

/// Build a folder under a temporary name with `fill`, add a manifest.json of the
/// checksums of its files, and rename it to `dir` (replacing an old one), so `dir`
/// is either absent, the old folder or the complete new one.
pub fn write_dir_atomic(dir: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let parent = parent_folder(dir)?;
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
            if verify_manifest_dir(dir, &[]).is_err() {
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
    let dir = parent_folder(path)?;
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = path
        .file_name()
        .ok_or_else(|| anyhow!("{} has no file name", path.display()))?;
    let tmp = dir.join(temp_name(&name.to_string_lossy()));
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

/// The folder `path` is in: `.` for a bare relative name such as `out` (whose
/// `parent()` is the empty path, which cannot be opened to sync).
fn parent_folder(path: &Path) -> Result<&Path> {
    match path.parent() {
        Some(p) if p.as_os_str().is_empty() => Ok(Path::new(".")),
        Some(p) => Ok(p),
        None => bail!("{} has no parent folder", path.display()),
    }
}

/// A temporary name for `name` in the same folder, unique across threads,
/// processes and hosts sharing the artifacts folder; removed by
/// [`remove_temporaries`] if a crash leaves it behind.
fn temp_name(name: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!(".{name}.{}.{}.{n}.tmp", hostname(), std::process::id())
}

/// Whether a temporary file name was made by a process of this host that has
/// exited (so no write in progress owns it).
pub fn temporary_of_dead_process(name: &str) -> bool {
    let Some(stem) = name.strip_suffix(".tmp") else {
        return false;
    };
    let mut parts = stem.rsplitn(3, '.');
    let (_n, pid, rest) = (parts.next(), parts.next(), parts.next().unwrap_or(""));
    let Some(pid) = pid.and_then(|p| p.parse::<u32>().ok()) else {
        return false;
    };
    rest.ends_with(&format!(".{}", hostname()))
        && pid != std::process::id()
        && !Path::new(&format!("/proc/{pid}")).exists()
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

/// The metadata key of a sealed safetensors file's checksum.
const SEAL: &str = "bitgrok.blake3";

/// Split safetensors bytes into the header JSON and the data section.
fn safetensors_parts(bytes: &[u8]) -> Result<(serde_json::Map<String, serde_json::Value>, &[u8])> {
    let n = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
        .ok_or_else(|| anyhow!("shorter than a safetensors header"))?;
    let end = 8usize
        .checked_add(usize::try_from(n)?)
        .filter(|&e| e <= bytes.len())
        .ok_or_else(|| anyhow!("header length {n} runs past the end of the file"))?;
    let header: serde_json::Value =
        serde_json::from_slice(&bytes[8..end]).context("unreadable safetensors header")?;
    let serde_json::Value::Object(header) = header else {
        bail!("the safetensors header is not a JSON object");
    };
    Ok((header, &bytes[end..]))
}

/// The same safetensors file with the blake3 of its data section (and of its other
/// metadata) in its metadata, so [`check_sealed`] detects any altered bit. The file
/// stays a valid safetensors file.
pub fn seal_safetensors(bytes: &[u8]) -> Result<Vec<u8>> {
    let (mut header, data) = safetensors_parts(bytes)?;
    let sum = seal_sum(&header, data);
    let meta = header
        .entry("__metadata__")
        .or_insert_with(|| serde_json::Value::Object(Default::default()));
    meta.as_object_mut()
        .ok_or_else(|| anyhow!("__metadata__ is not an object"))?
        .insert(SEAL.into(), sum.into());
    let mut json = serde_json::to_vec(&header)?;
    // Data must start at a multiple of 8 bytes.
    while json.len() % 8 != 0 {
        json.push(b' ');
    }
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&json);
    out.extend_from_slice(data);
    Ok(out)
}

/// blake3 over the header without the seal (keys sorted by serde_json) and the data.
fn seal_sum(header: &serde_json::Map<String, serde_json::Value>, data: &[u8]) -> String {
    let mut header = header.clone();
    if let Some(serde_json::Value::Object(meta)) = header.get_mut("__metadata__") {
        meta.remove(SEAL);
    }
    let mut h = blake3::Hasher::new();
    h.update(&serde_json::to_vec(&header).unwrap_or_default());
    h.update(data);
    h.finalize().to_hex().to_string()
}

/// Whether a safetensors file carries a seal (files from earlier versions do not).
pub fn is_sealed(bytes: &[u8]) -> bool {
    safetensors_parts(bytes)
        .is_ok_and(|(h, _)| h.get("__metadata__").and_then(|m| m.get(SEAL)).is_some())
}

/// Check a file sealed by [`seal_safetensors`]; the error says what is wrong.
pub fn check_sealed(bytes: &[u8]) -> Result<()> {
    let (header, data) = safetensors_parts(bytes)?;
    let recorded = header
        .get("__metadata__")
        .and_then(|m| m.get(SEAL))
        .and_then(|v| v.as_str())
        .ok_or_else(|| anyhow!("no checksum in the header"))?;
    if recorded != seal_sum(&header, data) {
        bail!("checksum does not match the contents");
    }
    Ok(())
}
