//! Names the disk a path lives on, for the alerts that ask a person to free space there:
//! the mount point, and the device and file system type as `/proc/self/mounts` gives them.

use std::path::{Path, PathBuf};

/// `"/var/lib/wms-node on /dev/mmcblk0p3 (ext4)"`, or the directory alone where the mount
/// table cannot be read.
pub(crate) fn describe(path: &Path) -> String {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
    let Some(mount) = mount_point(&dir) else {
        return dir.display().to_string();
    };
    match mount_entry(&mount) {
        Some((device, fstype)) => format!(
            "{} on {device} ({fstype}, mounted at {})",
            dir.display(),
            mount.display()
        ),
        None => format!("{} (mounted at {})", dir.display(), mount.display()),
    }
}

/// Whether the disk holding `path` takes a megabyte more (about what a commit with
/// quick-repair may need): a probe file beside it is written, fsynced and removed.
pub(crate) fn has_room(path: &Path) -> bool {
    use std::io::Write;
    let probe = path.with_file_name(".wms-node-space-probe");
    let written = std::fs::File::create(&probe).and_then(|mut f| {
        f.write_all(&[0u8; 1 << 20])?;
        f.sync_all()
    });
    let _ = std::fs::remove_file(&probe);
    written.is_ok()
}

/// The mount point holding `dir`: the highest ancestor on the same device.
#[cfg(unix)]
fn mount_point(dir: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(dir).ok()?.dev();
    let mut mount = dir.to_owned();
    while let Some(parent) = mount.parent() {
        match std::fs::metadata(parent) {
            Ok(m) if m.dev() == dev => mount = parent.to_owned(),
            _ => break,
        }
    }
    Some(mount)
}

#[cfg(not(unix))]
fn mount_point(_dir: &Path) -> Option<PathBuf> {
    None
}

/// The device and file system type mounted at `mount` (the last such line wins, as mounts
/// stack).
fn mount_entry(mount: &Path) -> Option<(String, String)> {
    let table = std::fs::read_to_string("/proc/self/mounts").ok()?;
    let want = mount.to_str()?;
    table.lines().rev().find_map(|line| {
        let mut f = line.split(' ');
        let (device, point, fstype) = (f.next()?, f.next()?, f.next()?);
        // Spaces in mount points are written as \040.
        (point.replace("\\040", " ") == want).then(|| (device.to_owned(), fstype.to_owned()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_disk_of_a_file_is_named_by_its_directory_and_mount() {
        let dir = tempfile::tempdir().unwrap();
        let d = describe(&dir.path().join("x.redb"));
        let canonical = std::fs::canonicalize(dir.path()).unwrap();
        assert!(d.starts_with(&canonical.display().to_string()), "{d}");
        if cfg!(target_os = "linux") {
            assert!(d.contains(" on ") && d.contains("mounted at"), "{d}");
        }
    }
}
