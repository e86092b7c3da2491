//! `subPath` and `subPathExpr` of a container's volume mounts, as the reference makes them
//! safe: the path is checked to stay inside the volume, what is missing of it is created
//! one `mkdirat` at a time below a descriptor of the volume, then it is opened component by
//! component without following links and that descriptor is bind-mounted at
//! `<pod dir>/volume-subpaths/<volume>/<container>/<mount index>`, which is what the runtime
//! mounts. Teardown unmounts and removes those binds (`CleanSubPaths`). The tests go
//! through `volumes::container_mounts`.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use nix::fcntl::{OFlag, open, openat};
use nix::sys::stat::{Mode, SFlag, fchmod, fstat, mkdirat};

use k8s_openapi::api::core::v1::VolumeMount;
use tracing::warn;

use crate::runtime::KeyValue;
use crate::volume::Mounter;

/// Below the pod directory: the bind mounts of subPaths, at
/// `volume-subpaths/<volume>/<container>/<mount index>` (the reference's layout).
pub const SUBPATH_DIR: &str = "volume-subpaths";

/// Where and how a container's subPaths are bind-mounted.
pub(super) struct SubPathMounts<'a> {
    /// Mounts the binds.
    pub mounter: &'a dyn Mounter,
    /// `<root-dir>/pods/<uid>`.
    pub pod_dir: &'a Path,
}

/// The mount's sub-path: `subPath`, or `subPathExpr` expanded from the environment (every
/// variable it names must be set and not empty, as the reference requires), checked.
pub(super) fn sub_path(vm: &VolumeMount, env: &[KeyValue]) -> Result<Option<String>, String> {
    let sub = vm.sub_path.as_deref().filter(|s| !s.is_empty());
    let expr = vm.sub_path_expr.as_deref().filter(|s| !s.is_empty());
    let sub = match (sub, expr) {
        (None, None) => return Ok(None),
        (Some(_), Some(_)) => {
            return Err(format!(
                "volumeMount {:?}: subPath and subPathExpr are mutually exclusive",
                vm.name
            ));
        }
        (Some(s), None) => s.to_string(),
        (None, Some(expr)) => expand_sub_path_expr(expr, env)?,
    };
    if Path::new(&sub).is_absolute() {
        return Err(format!(
            "error SubPath `{sub}` must not be an absolute path"
        ));
    }
    if Path::new(&sub)
        .components()
        .any(|c| c == Component::ParentDir)
    {
        return Err(format!(
            "unable to provision SubPath `{sub}`: must not contain '..'"
        ));
    }
    Ok(Some(sub))
}

/// `$(VAR)` references of a `subPathExpr` replaced by the container's variables; a
/// reference to a variable that is unset or empty is an error naming them all.
fn expand_sub_path_expr(expr: &str, env: &[KeyValue]) -> Result<String, String> {
    let values: BTreeMap<String, String> = env
        .iter()
        .map(|kv| (kv.key.clone(), kv.value.clone()))
        .collect();
    let mut missing: Vec<&str> = Vec::new();
    let mut rest = expr;
    while let Some(start) = rest.find("$(") {
        // `$$(` is an escaped reference.
        let escaped = rest[..start].ends_with('$')
            && rest[..start]
                .chars()
                .rev()
                .take_while(|c| *c == '$')
                .count()
                % 2
                == 1;
        let after = &rest[start + 2..];
        let Some(end) = after.find(')') else {
            break;
        };
        let name = &after[..end];
        if !escaped && values.get(name).is_none_or(String::is_empty) && !missing.contains(&name) {
            missing.push(name);
        }
        rest = &after[end + 1..];
    }
    if !missing.is_empty() {
        missing.sort_unstable();
        return Err(format!("missing value for {}", missing.join(", ")));
    }
    Ok(super::env::expand_vars(expr, &values))
}

/// One subPath mount of a container: volume name, container name, index of the mount in
/// the container's `volumeMounts`.
pub(super) struct SubPathTarget<'a> {
    pub(super) volume: &'a str,
    pub(super) container: &'a str,
    pub(super) index: usize,
}

impl SubPathTarget<'_> {
    /// `<pod dir>/volume-subpaths/<volume>/<container>/<index>`.
    fn path(&self, pod_dir: &Path) -> PathBuf {
        pod_dir
            .join(SUBPATH_DIR)
            .join(self.volume)
            .join(self.container)
            .join(self.index.to_string())
    }
}

/// The host path the runtime mounts for `sub` of the volume at `root`: what is missing of
/// it created (directories with the root's mode), then the checked path bind-mounted at the
/// mount's own place below the pod directory. The messages are the reference's, which keep
/// host paths out of the pod's status (they go to the log).
pub(super) fn prepare_sub_path(
    sub_paths: &SubPathMounts<'_>,
    root: &Path,
    sub: &str,
    target: &SubPathTarget<'_>,
) -> Result<PathBuf, String> {
    let (volume, container) = (target.volume, target.container);
    let prepare_failed = |err: &dyn std::fmt::Display| {
        warn!(%volume, %container, sub_path = sub, error = %err, "failed to prepare subPath");
        format!("failed to prepare subPath for volumeMount {volume:?} of container {container:?}")
    };
    let base = std::fs::canonicalize(root).map_err(|e| {
        prepare_failed(&format!(
            "error resolving symlinks in {}: {e}",
            root.display()
        ))
    })?;
    let host_path = base.join(sub);
    match std::fs::metadata(&host_path) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let mode = std::fs::metadata(&base)
                .map_err(|e| prepare_failed(&e))?
                .permissions()
                .mode()
                & 0o7777;
            if let Err(err) = safe_make_dir(&base, sub, mode) {
                warn!(%volume, %container, sub_path = sub, error = %err, "failed to create subPath directory");
                return Err(format!(
                    "failed to create subPath directory for volumeMount {volume:?} of container {container:?}"
                ));
            }
        }
        // As the reference: not knowing is no reason to stop; the safe open below decides.
        Err(e) => {
            warn!(%volume, %container, sub_path = sub, error = %e, "could not determine if subPath exists");
        }
    }
    bind_sub_path(sub_paths, &base, &host_path, target).map_err(|e| prepare_failed(&e))
}

/// Flags of each step of a safe open: never follow a link, never block on a FIFO.
fn step_flags() -> OFlag {
    OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
}

/// Open `path` (links already resolved) below `base` one component at a time, following no
/// link: each step is opened relative to the previous one with `O_NOFOLLOW`, and a step
/// that is a link (swapped in after the resolution) is refused.
pub(super) fn safe_open(path: &Path, base: &Path) -> io::Result<OwnedFd> {
    let rel = path.strip_prefix(base).map_err(|_| {
        io::Error::other(format!(
            "subpath {} not within volume path {}",
            path.display(),
            base.display()
        ))
    })?;
    let mut fd = open(
        base,
        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io::Error::other(format!("cannot open directory {}: {e}", base.display())))?;
    let mut current = base.to_path_buf();
    for component in rel.components() {
        let Component::Normal(name) = component else {
            return Err(io::Error::other(format!(
                "path {} is outside of allowed base {}",
                path.display(),
                base.display()
            )));
        };
        current.push(name);
        let child = openat(&fd, name, step_flags(), Mode::empty())
            .map_err(|e| io::Error::other(format!("cannot open {}: {e}", current.display())))?;
        let stat = fstat(&child).map_err(|e| {
            io::Error::other(format!("error running fstat on {}: {e}", current.display()))
        })?;
        if SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK {
            return Err(io::Error::other(format!(
                "unexpected symlink found {}",
                current.display()
            )));
        }
        fd = child;
    }
    Ok(fd)
}

/// Create what is missing of `sub` below `base` (directories with `mode`), never leaving
/// the volume: the existing part is resolved and must stay inside, it is opened safely, and
/// each new directory is made with `mkdirat` below the descriptor of its parent and opened
/// without following links before the next one.
fn safe_make_dir(base: &Path, sub: &str, mode: u32) -> io::Result<()> {
    let components: Vec<&std::ffi::OsStr> = Path::new(sub)
        .components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name),
            _ => None,
        })
        .collect();
    // The existing prefix (links in it followed, as the kernel does).
    let mut existing = base.to_path_buf();
    let mut missing = components.len();
    for (i, name) in components.iter().enumerate() {
        let next = existing.join(name);
        match std::fs::symlink_metadata(&next) {
            Ok(_) => existing = next,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                missing = i;
                break;
            }
            Err(e) => return Err(e),
        }
    }
    let resolved = std::fs::canonicalize(&existing)?;
    if !resolved.starts_with(base) {
        return Err(io::Error::other(format!(
            "path {} is outside of allowed base {}",
            resolved.display(),
            base.display()
        )));
    }
    let mut parent = safe_open(&resolved, base)?;
    let mut current = resolved;
    let mode = Mode::from_bits_truncate(mode);
    for name in &components[missing..] {
        current.push(name);
        mkdirat(&parent, *name, mode).map_err(|e| {
            io::Error::other(format!(
                "cannot create directory {}: {e}",
                current.display()
            ))
        })?;
        // Opened without following links: whatever was swapped in after mkdirat is refused.
        let child = openat(
            &parent,
            *name,
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io::Error::other(format!("cannot open {}: {e}", current.display())))?;
        // The umask took bits away from mkdirat's mode.
        fchmod(&child, mode)
            .map_err(|e| io::Error::other(format!("chmod {}: {e}", current.display())))?;
        parent = child;
    }
    Ok(())
}

/// Bind-mount `host_path` (below the volume `base`) at the mount's place below the pod
/// directory, through a descriptor opened safely; an existing bind of the same file is
/// kept, a stale one (another file) replaced.
fn bind_sub_path(
    sub_paths: &SubPathMounts<'_>,
    base: &Path,
    host_path: &Path,
    target: &SubPathTarget<'_>,
) -> io::Result<PathBuf> {
    let resolved = std::fs::canonicalize(host_path).map_err(|e| {
        io::Error::other(format!(
            "error resolving symlinks in {}: {e}",
            host_path.display()
        ))
    })?;
    if !resolved.starts_with(base) {
        return Err(io::Error::other(format!(
            "subpath {} not within volume path {}",
            resolved.display(),
            base.display()
        )));
    }
    let fd = safe_open(&resolved, base).map_err(|e| {
        io::Error::other(format!("error opening subpath {}: {e}", resolved.display()))
    })?;
    let opened = fstat(&fd).map_err(io::Error::from)?;
    let bind_path = target.path(sub_paths.pod_dir);
    let mounter = sub_paths.mounter;
    if mounter.is_mount_point(&bind_path)? {
        let same = std::fs::metadata(&bind_path)
            .is_ok_and(|m| m.dev() == opened.st_dev && m.ino() == opened.st_ino);
        if same {
            return Ok(bind_path);
        }
        mounter.unmount(&bind_path)?;
    }
    if let Some(parent) = bind_path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(parent)?;
    }
    let is_dir = SFlag::from_bits_truncate(opened.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR;
    // The target is of the source's kind: a directory for a directory, else a file (which
    // a bind of any other kind of file replaces).
    match std::fs::symlink_metadata(&bind_path) {
        Ok(m) if m.is_dir() == is_dir && !m.file_type().is_symlink() => {}
        Ok(m) if m.is_dir() => std::fs::remove_dir(&bind_path)?,
        Ok(_) => std::fs::remove_file(&bind_path)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    if is_dir {
        match std::fs::DirBuilder::new().mode(0o750).create(&bind_path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    } else if !bind_path.exists() {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o640)
            .open(&bind_path)?;
    }
    let source = PathBuf::from(format!(
        "/proc/{}/fd/{}",
        std::process::id(),
        fd.as_raw_fd()
    ));
    if let Err(err) = mounter.bind_mount(&source, &bind_path) {
        // Nothing of the failed attempt stays.
        let _ = if is_dir {
            std::fs::remove_dir(&bind_path)
        } else {
            std::fs::remove_file(&bind_path)
        };
        return Err(io::Error::other(format!(
            "error mounting {}: {err}",
            resolved.display()
        )));
    }
    tracing::debug!(sub_path = %resolved.display(), target = %bind_path.display(), "bound subPath");
    Ok(bind_path)
}

/// Unmount and remove every subPath bind of `volume` below the pod directory (the
/// reference's `CleanSubPaths`); only ever `rmdir` and `unlink`, so that nothing is deleted
/// through a bind that failed to unmount.
pub(super) fn clean_sub_paths(
    mounter: &dyn Mounter,
    pod_dir: &Path,
    volume: &str,
) -> io::Result<()> {
    let volume_dir = pod_dir.join(SUBPATH_DIR).join(volume);
    let containers = match std::fs::read_dir(&volume_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for container in containers {
        let container = container?.path();
        if !container.is_dir() {
            std::fs::remove_file(&container)?;
            continue;
        }
        for entry in std::fs::read_dir(&container)? {
            let path = entry?.path();
            if mounter.is_mount_point(&path)? {
                mounter.unmount(&path)?;
            }
            let meta = std::fs::symlink_metadata(&path)?;
            if meta.is_dir() {
                std::fs::remove_dir(&path)?;
            } else {
                std::fs::remove_file(&path)?;
            }
        }
        std::fs::remove_dir(&container)?;
    }
    std::fs::remove_dir(&volume_dir)?;
    // The parent goes with its last volume.
    let _ = std::fs::remove_dir(pod_dir.join(SUBPATH_DIR));
    Ok(())
}

/// The volumes with subPath binds below the pod directory.
pub(super) fn sub_path_volume_names(pod_dir: &Path) -> Vec<String> {
    std::fs::read_dir(pod_dir.join(SUBPATH_DIR))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}
