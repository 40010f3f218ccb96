//! Durable file operations for everything under `<data_dir>/ota/`: a file is written as
//! `NAME.tmp`, fsynced, renamed over `NAME`, and the folder fsynced, so after a power cut
//! either the old or the new content is there, whole. And `flock(2)` locks, which the
//! kernel releases when a process dies, so a killed installer never leaves a stale lock.

use super::OtaError;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

/// fsyncs a folder, so renames and new names in it survive a power cut.
pub fn sync_dir(dir: &Path) -> Result<(), OtaError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| OtaError::io("cannot fsync folder", dir, e))
}

/// Creates `dir` (and parents) and fsyncs its parent, so the new folder survives.
pub fn create_dir(dir: &Path) -> Result<(), OtaError> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(|e| OtaError::io("cannot create folder", dir, e))?;
    if let Some(parent) = dir.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Writes `bytes` to `path` atomically and durably (tmp → fsync → rename → fsync folder).
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), OtaError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    create_dir(dir)?;
    let tmp = tmp_path(path);
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| OtaError::io("cannot create", &tmp, e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| OtaError::io("cannot write", &tmp, e))?;
    drop(f);
    rename(&tmp, path)
}

/// Renames `from` over `to` and fsyncs both folders.
pub fn rename(from: &Path, to: &Path) -> Result<(), OtaError> {
    std::fs::rename(from, to).map_err(|e| OtaError::io("cannot rename into", to, e))?;
    if let Some(d) = to.parent() {
        sync_dir(d)?;
    }
    if let Some(d) = from.parent().filter(|d| Some(*d) != to.parent()) {
        sync_dir(d)?;
    }
    Ok(())
}

/// Makes an already written file executable, fsyncs it and renames it to `to` durably: how
/// a verified download becomes a slot's binary without being copied.
pub fn install_executable(from: &Path, to: &Path) -> Result<(), OtaError> {
    if let Some(dir) = to.parent() {
        create_dir(dir)?;
    }
    let f = File::open(from).map_err(|e| OtaError::io("cannot open", from, e))?;
    f.set_permissions(std::fs::Permissions::from_mode(0o755))
        .and_then(|()| f.sync_all())
        .map_err(|e| OtaError::io("cannot make executable", from, e))?;
    drop(f);
    // Through NAME.tmp in the slot's folder: the rename that makes the slot is one within
    // its own folder, and a leftover .tmp after a power cut is plainly not the slot.
    let tmp = tmp_path(to);
    rename(from, &tmp)?;
    rename(&tmp, to)
}

/// Removes a file if it is there (and fsyncs its folder).
pub fn remove(path: &Path) -> Result<(), OtaError> {
    match std::fs::remove_file(path) {
        Ok(()) => path.parent().map_or(Ok(()), sync_dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(OtaError::io("cannot remove", path, e)),
    }
}

/// An exclusive `flock(2)` on a file, released when dropped or when the process dies.
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

impl Lock {
    /// Takes the lock, waiting for another holder to release it.
    pub fn wait(path: &Path) -> Result<Lock, OtaError> {
        Self::take(path, rustix::fs::FlockOperation::LockExclusive)?
            .ok_or_else(|| OtaError::Busy { lock: path.into() })
    }

    /// Takes the lock, or `None` at once if another process holds it.
    pub fn try_take(path: &Path) -> Result<Option<Lock>, OtaError> {
        Self::take(path, rustix::fs::FlockOperation::NonBlockingLockExclusive)
    }

    fn take(path: &Path, op: rustix::fs::FlockOperation) -> Result<Option<Lock>, OtaError> {
        if let Some(dir) = path.parent() {
            create_dir(dir)?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(|e| OtaError::io("cannot open lock", path, e))?;
        match rustix::fs::flock(&file, op) {
            Ok(()) => Ok(Some(Lock { _file: file })),
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => Ok(None),
            Err(e) => Err(OtaError::io("cannot lock", path, e.into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_atomic_write_leaves_no_tmp_and_replaces_the_content() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/state.json");
        write_atomic(&p, b"one", 0o600).unwrap();
        write_atomic(&p, b"two", 0o600).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert!(!tmp_path(&p).exists());
    }

    #[test]
    fn a_held_lock_is_refused_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("lock");
        let held = Lock::try_take(&p).unwrap().unwrap();
        assert!(Lock::try_take(&p).unwrap().is_none());
        drop(held);
        assert!(Lock::try_take(&p).unwrap().is_some());
    }

    #[test]
    fn an_installed_executable_is_executable_and_the_source_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("dl.part");
        std::fs::write(&from, b"#!/bin/sh\n").unwrap();
        let to = dir.path().join("slots/a/wms-node");
        install_executable(&from, &to).unwrap();
        assert!(!from.exists());
        let mode = std::fs::metadata(&to).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
    }
}
