//! `fsGroup`: a volume's files given to the pod's group, as the reference's
//! `SetVolumeOwnership` does: every file and directory gets the group, group read (and
//! write unless the volume is read-only), directories also group execute and setgid so that
//! what containers create later inherits the group. `fsGroupChangePolicy: OnRootMismatch`
//! skips the walk when the volume's root already has the group and those permissions.

use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Pod;

const RW_MASK: u32 = 0o660;
const RO_MASK: u32 = 0o440;
const EXEC_MASK: u32 = 0o110;
const SETGID: u32 = 0o2000;

/// When the ownership walk runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FsGroupChangePolicy {
    /// On every setup (the default).
    #[default]
    Always,
    /// Only when the volume root's group or permissions do not match.
    OnRootMismatch,
}

/// A pod's `securityContext.fsGroup` and `fsGroupChangePolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsGroup {
    /// The group.
    pub gid: u32,
    /// When to apply it.
    pub policy: FsGroupChangePolicy,
}

impl FsGroup {
    /// The pod's fsGroup, if it sets one (a negative or oversized group is ignored: the API
    /// server refuses those).
    pub fn of(pod: &Pod) -> Option<FsGroup> {
        let sc = pod.spec.as_ref()?.security_context.as_ref()?;
        let gid = u32::try_from(sc.fs_group?).ok()?;
        let policy = match sc.fs_group_change_policy.as_deref() {
            Some("OnRootMismatch") => FsGroupChangePolicy::OnRootMismatch,
            _ => FsGroupChangePolicy::Always,
        };
        Some(FsGroup { gid, policy })
    }
}

/// A filesystem operation of the walk failed on `path`.
#[derive(Debug)]
pub struct OwnershipError {
    /// Where.
    pub path: PathBuf,
    /// What.
    pub source: io::Error,
}

fn at(path: &Path) -> impl FnOnce(io::Error) -> OwnershipError + '_ {
    move |source| OwnershipError {
        path: path.to_path_buf(),
        source,
    }
}

/// Whether the root of the volume lacks the group or the permissions the walk gives.
pub fn requires_change(dir: &Path, gid: u32, read_only: bool) -> Result<bool, OwnershipError> {
    let meta = std::fs::metadata(dir).map_err(at(dir))?;
    if meta.gid() != gid {
        return Ok(true);
    }
    let mut want = if read_only { RO_MASK } else { RW_MASK };
    let mode = meta.permissions().mode();
    if meta.is_dir() {
        want |= EXEC_MASK;
        if mode & SETGID == 0 {
            return Ok(true);
        }
    }
    Ok(mode & want != want)
}

/// Give everything below `dir` (and `dir`) to the group; returns whether it walked (false:
/// `OnRootMismatch` found the root matching). Symbolic links get the group but keep their
/// target's mode (a chmod would go through to the target).
pub fn set_volume_ownership(
    dir: &Path,
    fs_group: FsGroup,
    read_only: bool,
) -> Result<bool, OwnershipError> {
    if fs_group.policy == FsGroupChangePolicy::OnRootMismatch
        && !requires_change(dir, fs_group.gid, read_only)?
    {
        return Ok(false);
    }
    walk(dir, fs_group.gid, read_only)?;
    Ok(true)
}

fn walk(path: &Path, gid: u32, read_only: bool) -> Result<(), OwnershipError> {
    let meta = std::fs::symlink_metadata(path).map_err(at(path))?;
    std::os::unix::fs::lchown(path, None, Some(gid)).map_err(at(path))?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    let mut mask = if read_only { RO_MASK } else { RW_MASK };
    if meta.is_dir() {
        mask |= EXEC_MASK | SETGID;
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode | mask != mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode | mask))
            .map_err(at(path))?;
    }
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).map_err(at(path))? {
            let entry = entry.map_err(at(path))?;
            walk(&entry.path(), gid, read_only)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use k8s_openapi::api::core::v1::{PodSecurityContext, PodSpec};

    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    fn gid(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().gid()
    }

    fn setup() -> (tempfile::TempDir, PathBuf) {
        let root = tempfile::tempdir().unwrap();
        let vol = root.path().join("vol");
        std::fs::create_dir_all(vol.join("sub")).unwrap();
        std::fs::set_permissions(&vol, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(vol.join("sub"), std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::write(vol.join("sub/f"), "x").unwrap();
        std::fs::set_permissions(vol.join("sub/f"), std::fs::Permissions::from_mode(0o600))
            .unwrap();
        std::fs::write(root.path().join("outside"), "o").unwrap();
        std::fs::set_permissions(
            root.path().join("outside"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        symlink(root.path().join("outside"), vol.join("link")).unwrap();
        (root, vol)
    }

    fn is_root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    #[test]
    fn the_group_gets_rw_and_directories_setgid() {
        if !is_root() {
            eprintln!("skipped: chown to another group needs root");
            return;
        }
        let (root, vol) = setup();
        let group = FsGroup {
            gid: 4321,
            policy: FsGroupChangePolicy::Always,
        };
        assert!(set_volume_ownership(&vol, group, false).unwrap());
        assert_eq!((gid(&vol), mode(&vol)), (4321, 0o2775));
        assert_eq!(
            (gid(&vol.join("sub")), mode(&vol.join("sub"))),
            (4321, 0o2770)
        );
        assert_eq!(
            (gid(&vol.join("sub/f")), mode(&vol.join("sub/f"))),
            (4321, 0o660)
        );
        // The link itself is given to the group, its target is left alone.
        assert_eq!(gid(&vol.join("link")), 4321);
        assert_eq!(mode(&root.path().join("outside")), 0o600);
        assert_ne!(gid(&root.path().join("outside")), 4321);
    }

    #[test]
    fn read_only_volumes_get_group_read_only() {
        if !is_root() {
            eprintln!("skipped: chown to another group needs root");
            return;
        }
        let (_root, vol) = setup();
        let group = FsGroup {
            gid: 4321,
            policy: FsGroupChangePolicy::Always,
        };
        set_volume_ownership(&vol, group, true).unwrap();
        assert_eq!(mode(&vol.join("sub/f")), 0o640);
        assert_eq!(mode(&vol.join("sub")), 0o2750);
    }

    #[test]
    fn on_root_mismatch_skips_a_matching_root() {
        if !is_root() {
            eprintln!("skipped: chown to another group needs root");
            return;
        }
        let (_root, vol) = setup();
        let group = FsGroup {
            gid: 4321,
            policy: FsGroupChangePolicy::OnRootMismatch,
        };
        assert!(set_volume_ownership(&vol, group, false).unwrap());
        // A file made later with other ownership is left as it is while the root matches.
        std::fs::write(vol.join("later"), "y").unwrap();
        std::os::unix::fs::lchown(vol.join("later"), None, Some(0)).unwrap();
        assert!(!set_volume_ownership(&vol, group, false).unwrap());
        assert_eq!(gid(&vol.join("later")), 0);
        // Always walks again.
        let always = FsGroup {
            policy: FsGroupChangePolicy::Always,
            ..group
        };
        assert!(set_volume_ownership(&vol, always, false).unwrap());
        assert_eq!(gid(&vol.join("later")), 4321);
        // A root that lost setgid is a mismatch.
        std::fs::set_permissions(&vol, std::fs::Permissions::from_mode(0o775)).unwrap();
        assert!(requires_change(&vol, 4321, false).unwrap());
    }

    #[test]
    fn fs_group_comes_from_the_pod_security_context() {
        let pod = |fs_group: Option<i64>, policy: Option<&str>| Pod {
            spec: Some(PodSpec {
                security_context: Some(PodSecurityContext {
                    fs_group,
                    fs_group_change_policy: policy.map(str::to_string),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(FsGroup::of(&pod(None, None)), None);
        assert_eq!(
            FsGroup::of(&pod(Some(7), Some("OnRootMismatch"))),
            Some(FsGroup {
                gid: 7,
                policy: FsGroupChangePolicy::OnRootMismatch
            })
        );
        assert_eq!(
            FsGroup::of(&pod(Some(7), None)).map(|g| g.policy),
            Some(FsGroupChangePolicy::Always)
        );
        assert_eq!(FsGroup::of(&pod(Some(-1), None)), None);
    }
}
