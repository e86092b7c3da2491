//! Filesystem numbers: a filesystem's capacity, free space and inodes (statvfs), and the
//! space and inodes a directory tree uses (a `du`, as the reference measures emptyDir and
//! the API-object volumes and container logs).

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// A filesystem's size and free space, in bytes and inodes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FsInfo {
    /// Total size.
    pub capacity: u64,
    /// Space available to unprivileged users.
    pub available: u64,
    /// Free space (the reserved blocks included).
    pub free: u64,
    /// Total inodes.
    pub inodes: u64,
    /// Free inodes.
    pub inodes_free: u64,
}

/// statvfs of the filesystem holding `path`.
pub fn fs_info(path: &Path) -> io::Result<FsInfo> {
    let s = nix::sys::statvfs::statvfs(path).map_err(io::Error::from)?;
    let frsize = s.fragment_size();
    Ok(FsInfo {
        capacity: s.blocks().saturating_mul(frsize),
        available: s.blocks_available().saturating_mul(frsize),
        free: s.blocks_free().saturating_mul(frsize),
        inodes: s.files(),
        inodes_free: s.files_free(),
    })
}

/// What a directory tree uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskUsage {
    /// Bytes of allocated blocks (as `du`), each hard-linked file counted once per tree.
    pub bytes: u64,
    /// Inodes (files, directories, links), the root included.
    pub inodes: u64,
}

/// Walks `root` without following symlinks or crossing into other filesystems. A tree that
/// vanishes while walked yields what was counted; a missing root is an error.
pub fn disk_usage(root: &Path) -> io::Result<DiskUsage> {
    let meta = std::fs::symlink_metadata(root)?;
    let device = meta.dev();
    let mut seen = std::collections::HashSet::new();
    let mut usage = DiskUsage::default();
    let mut stack = vec![(root.to_path_buf(), meta)];
    while let Some((path, meta)) = stack.pop() {
        if meta.nlink() > 1 && !meta.is_dir() && !seen.insert(meta.ino()) {
            continue;
        }
        usage.inodes += 1;
        // st_blocks is in 512-byte units whatever the filesystem's block size.
        usage.bytes += meta.blocks().saturating_mul(512);
        if !meta.is_dir() || meta.dev() != device {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(&path) else {
            continue;
        };
        for entry in entries.flatten() {
            if let Ok(m) = entry.path().symlink_metadata() {
                stack.push((entry.path(), m));
            }
        }
    }
    Ok(usage)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_usage_counts_blocks_and_inodes() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("vol");
        std::fs::create_dir_all(dir.join("sub")).expect("mkdir");
        // Real data, not a sparse file: du counts allocated blocks.
        std::fs::write(dir.join("sub/data"), vec![7u8; 1 << 20]).expect("write");
        std::fs::hard_link(dir.join("sub/data"), dir.join("link")).expect("link");
        let u = disk_usage(&dir).expect("du");
        assert_eq!(u.inodes, 3, "vol, sub, data (the hard link counted once)");
        assert!(
            u.bytes >= 1 << 20 && u.bytes < (1 << 20) + 64 * 1024,
            "{u:?}"
        );
        assert!(disk_usage(&tmp.path().join("missing")).is_err());
    }

    #[test]
    fn fs_info_of_a_real_filesystem() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let info = fs_info(tmp.path()).expect("statvfs");
        assert!(
            info.capacity > 0 && info.available <= info.capacity,
            "{info:?}"
        );
    }
}
