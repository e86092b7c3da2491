//! Mounting memory-backed volumes and subPath bind mounts: the [`Mounter`] seam, the host's
//! mount table ([`HostMounter`]) and a recording fake ([`FakeMounter`]) for tests that run
//! unprivileged.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Mounts tmpfs file systems at volume directories and bind mounts for subPaths, and
/// unmounts them.
pub trait Mounter: Send + Sync + Debug + 'static {
    /// Whether `path` is itself a mount point.
    fn is_mount_point(&self, path: &Path) -> io::Result<bool>;
    /// Mount a tmpfs at `path` (an existing directory), limited to `size_bytes` when given.
    fn mount_tmpfs(&self, path: &Path, size_bytes: Option<u64>) -> io::Result<()>;
    /// Bind-mount `source` onto `target` (an existing file or directory of the same kind).
    /// For subPaths the source is `/proc/<pid>/fd/<n>`, a path the kubelet opened without
    /// following links, so that the mount is of what was checked.
    fn bind_mount(&self, source: &Path, target: &Path) -> io::Result<()>;
    /// Unmount whatever is mounted at `path`.
    fn unmount(&self, path: &Path) -> io::Result<()>;
}

/// The node's own mount table, through mount(2) and umount(2) (needs CAP_SYS_ADMIN).
#[derive(Debug, Clone, Copy, Default)]
pub struct HostMounter;

/// Undo the octal escapes (`\040` for a space) of a path in `/proc/self/mountinfo`.
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 4 <= bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let v = (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Mount points listed in a mountinfo text.
pub(crate) fn mount_points(mountinfo: &str) -> impl Iterator<Item = PathBuf> + '_ {
    mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_mountinfo(p)))
}

impl Mounter for HostMounter {
    fn is_mount_point(&self, path: &Path) -> io::Result<bool> {
        let path = match std::fs::canonicalize(path) {
            Ok(p) => p,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        let info = std::fs::read_to_string("/proc/self/mountinfo")?;
        Ok(mount_points(&info).any(|p| p == path))
    }

    fn mount_tmpfs(&self, path: &Path, size_bytes: Option<u64>) -> io::Result<()> {
        let options = size_bytes.map(|s| format!("size={s}"));
        nix::mount::mount(
            Some("tmpfs"),
            path,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            options.as_deref(),
        )
        .map_err(io::Error::from)
    }

    fn bind_mount(&self, source: &Path, target: &Path) -> io::Result<()> {
        nix::mount::mount(
            Some(source),
            target,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(io::Error::from)
    }

    fn unmount(&self, path: &Path) -> io::Result<()> {
        match nix::mount::umount(path) {
            Ok(()) => Ok(()),
            // Still in use (a process of the node with its working directory there): detach
            // it now, the kernel frees it when the last user goes, rather than leave the
            // volume behind.
            Err(nix::errno::Errno::EBUSY) => {
                nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH).map_err(io::Error::from)
            }
            Err(e) => Err(io::Error::from(e)),
        }
    }
}

/// A mounter that mounts nothing and records what it was asked: for tests without
/// privileges. Clones share the record.
#[derive(Debug, Clone, Default)]
pub struct FakeMounter {
    mounted: Arc<Mutex<BTreeMap<PathBuf, Option<u64>>>>,
    binds: Arc<Mutex<BTreeMap<PathBuf, PathBuf>>>,
    unmounted: Arc<Mutex<Vec<PathBuf>>>,
}

impl FakeMounter {
    /// A fake with nothing mounted.
    pub fn new() -> Self {
        Self::default()
    }

    /// The tmpfs mounts in place now, with their size limits.
    pub fn mounts(&self) -> BTreeMap<PathBuf, Option<u64>> {
        self.mounted
            .lock()
            .map(|m| m.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// The bind mounts in place now: target -> the source as it resolved when it was
    /// mounted (for a `/proc/<pid>/fd/<n>` source, the file the descriptor was open on).
    pub fn binds(&self) -> BTreeMap<PathBuf, PathBuf> {
        self.binds
            .lock()
            .map(|m| m.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Every path unmounted so far, in order.
    pub fn unmounted(&self) -> Vec<PathBuf> {
        self.unmounted
            .lock()
            .map(|m| m.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }
}

impl Mounter for FakeMounter {
    fn is_mount_point(&self, path: &Path) -> io::Result<bool> {
        Ok(self.mounts().contains_key(path) || self.binds().contains_key(path))
    }

    fn mount_tmpfs(&self, path: &Path, size_bytes: Option<u64>) -> io::Result<()> {
        if !path.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "mount point is not a directory",
            ));
        }
        let mut m = self.mounted.lock().unwrap_or_else(|p| p.into_inner());
        m.insert(path.to_path_buf(), size_bytes);
        Ok(())
    }

    fn bind_mount(&self, source: &Path, target: &Path) -> io::Result<()> {
        // Resolved now: a descriptor source is gone once the caller closes it.
        let resolved = std::fs::canonicalize(source)?;
        let (source_dir, target_dir) = (resolved.is_dir(), std::fs::metadata(target)?.is_dir());
        if source_dir != target_dir {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "bind mount source and target are not of the same kind",
            ));
        }
        let mut b = self.binds.lock().unwrap_or_else(|p| p.into_inner());
        b.insert(target.to_path_buf(), resolved);
        Ok(())
    }

    fn unmount(&self, path: &Path) -> io::Result<()> {
        let removed = {
            let mut m = self.mounted.lock().unwrap_or_else(|p| p.into_inner());
            let mut b = self.binds.lock().unwrap_or_else(|p| p.into_inner());
            m.remove(path).is_some() || b.remove(path).is_some()
        };
        if !removed {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "not mounted"));
        }
        self.unmounted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(path.to_path_buf());
        Ok(())
    }
}

/// Make `dir` a tmpfs mount point (creating the directory, mode 0777 before the mount as
/// the reference's emptyDir does; the tmpfs root then has tmpfs's own 1777). Returns whether
/// it mounted (false: a mount was there already).
pub(crate) fn ensure_tmpfs(
    mounter: &dyn Mounter,
    dir: &Path,
    size_bytes: Option<u64>,
) -> io::Result<bool> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    if mounter.is_mount_point(dir)? {
        return Ok(false);
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777))?;
    mounter.mount_tmpfs(dir, size_bytes)?;
    Ok(true)
}

/// Unmount `dir` if something is mounted there (then remove it), else just remove it.
pub(crate) fn remove_volume_dir(mounter: &dyn Mounter, dir: &Path) -> io::Result<()> {
    if mounter.is_mount_point(dir)? {
        mounter.unmount(dir)?;
    }
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_paths_are_unescaped() {
        let info = "36 35 98:0 / /mnt/a\\040b rw,noatime master:1 - ext3 /dev/root rw\n\
                    37 35 0:5 / /var/lib/kubelet/pods/u/volumes/x rw - tmpfs tmpfs rw\n";
        let points: Vec<PathBuf> = mount_points(info).collect();
        assert_eq!(
            points,
            vec![
                PathBuf::from("/mnt/a b"),
                PathBuf::from("/var/lib/kubelet/pods/u/volumes/x")
            ]
        );
    }

    #[test]
    fn a_real_tmpfs_is_mounted_sized_and_removed() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: mounting needs root");
            return;
        }
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("vol");
        assert!(ensure_tmpfs(&HostMounter, &dir, Some(4 << 20)).unwrap());
        // Whatever happens below, nothing stays mounted.
        struct Guard(PathBuf);
        impl Drop for Guard {
            fn drop(&mut self) {
                let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
            }
        }
        let _guard = Guard(dir.clone());
        assert!(HostMounter.is_mount_point(&dir).unwrap());
        assert!(!ensure_tmpfs(&HostMounter, &dir, Some(4 << 20)).unwrap());
        let stat = nix::sys::statfs::statfs(&dir).unwrap();
        assert_eq!(stat.filesystem_type(), nix::sys::statfs::TMPFS_MAGIC);
        let size = stat.blocks() * u64::try_from(stat.block_size()).unwrap();
        assert_eq!(size, 4 << 20);
        std::fs::write(dir.join("f"), "x").unwrap();
        remove_volume_dir(&HostMounter, &dir).unwrap();
        assert!(!HostMounter.is_mount_point(&dir).unwrap());
        assert!(!dir.exists());
    }

    #[test]
    fn the_root_is_a_mount_point_and_a_missing_path_is_not() {
        assert!(HostMounter.is_mount_point(Path::new("/")).unwrap());
        assert!(
            !HostMounter
                .is_mount_point(Path::new("/no/such/kubelet/path"))
                .unwrap()
        );
    }
}
