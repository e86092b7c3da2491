//! Housekeeping of orphaned pod directories: `<root-dir>/pods/<uid>` of a pod that no source
//! wants, that has no worker and that the runtime does not hold (a pod deleted while the
//! kubelet was down, whose sandbox is gone too).
//!
//! The reference splits this in two: its volume manager reconstructs such volumes from disk
//! and unmounts them, and its housekeeping (`cleanupOrphanedPodDirs`) removes the directory
//! once no volume and no subPath is left. Here one task per directory does both, in the
//! reference's order: the subPath binds, then each volume found at
//! `volumes/<plugin dir>/<name>` (or, for a block volume, `volumeDevices/<plugin dir>/<name>`)
//! through the plugin owning that directory
//! ([`VolumePlugin::pod_volume_dirs`]), then the directory itself, and only when nothing
//! below it is still a mount point. What fails is logged and tried again at the next
//! housekeeping; one directory never holds up another.
//!
//! Differences from the reference: the teardown runs here rather than in a volume manager
//! that reconstructs the volumes into its state (no other part of this kubelet needs them);
//! and each directory kept is logged on its own (`orphaned pod "<uid>" found, but ...`)
//! rather than as the first of an aggregate ("There were a total of N errors similar to
//! this").
//!
//! The task holds the pod's UID in the dispatcher's worker map while it runs (see
//! [`WorkerHandle::holding`]), so a pod of that UID that shows up meanwhile starts only once
//! the cleanup is over, on a fresh directory.

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::mpsc;
use tracing::{Instrument, debug, info, info_span, warn};

use super::context::WorkerContext;
use super::volumes::{clean_sub_paths, sub_path_volume_names};
use super::worker::WorkerHandle;
use crate::volume::{Mounter, VolumePlugin};

/// What became of one orphaned pod directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Everything was torn down and the directory removed.
    Removed,
    /// The directory stays (the reason, as logged); the next housekeeping tries again.
    Kept(String),
}

/// The UIDs of the pod directories below `pods_dir` (directories only, as the reference's
/// `listPodsFromDisk`).
pub(super) fn pods_on_disk(pods_dir: &Path) -> Vec<String> {
    let entries = match std::fs::read_dir(pods_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            warn!(path = %pods_dir.display(), error = %e, "cannot list pod directories");
            return Vec::new();
        }
    };
    entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect()
}

/// Start a cleanup for each pod directory on disk whose UID is not `known` (wanted by a
/// source, or held by the runtime) and has no worker. The caller makes sure the sources and
/// the runtime have been listed once: a pod merely not listed yet is never an orphan.
pub(super) fn start_cleanups(
    ctx: &Arc<WorkerContext>,
    known: impl Fn(&str) -> bool,
    workers: &mut HashMap<String, WorkerHandle>,
    done: &mpsc::UnboundedSender<String>,
) {
    let pods_dir = ctx.config.root_dir.join("pods");
    for uid in pods_on_disk(&pods_dir) {
        if known(&uid) || workers.contains_key(&uid) {
            continue;
        }
        let span = info_span!("orphaned_pod_dir", uid = %uid);
        let task_ctx = ctx.clone();
        let task_uid = uid.clone();
        let task_done = done.clone();
        let task = tokio::spawn(
            async move {
                let _ = cleanup(&task_ctx, &task_uid).await;
                let _ = task_done.send(task_uid);
            }
            .instrument(span),
        );
        workers.insert(uid, WorkerHandle::holding(task));
    }
}

/// Tear down what is left in the pod directory of `uid` and remove it (see the module docs).
pub(super) async fn cleanup(ctx: &WorkerContext, uid: &str) -> Outcome {
    let pod_dir = ctx.config.root_dir.join("pods").join(uid);
    let outcome = cleanup_dir(ctx, uid, &pod_dir).await;
    match &outcome {
        Outcome::Removed => info!(pod_uid = %uid, "orphaned pod directory removed"),
        Outcome::Kept(reason) => warn!(pod_uid = %uid, "orphaned pod {uid:?} found, but {reason}"),
    }
    outcome
}

async fn cleanup_dir(ctx: &WorkerContext, uid: &str, pod_dir: &Path) -> Outcome {
    // The subPath binds point into the volumes: they go first, and while one stays no
    // volume is torn down (its unmount would fail, or hide what the bind still shows).
    let mounter = ctx.mounter.clone();
    let dir = pod_dir.to_path_buf();
    let subpaths = tokio::task::spawn_blocking(move || {
        for name in sub_path_volume_names(&dir) {
            clean_sub_paths(mounter.as_ref(), &dir, &name).map_err(|e| {
                format!("error {e} occurred cleaning the subPath mounts of volume {name:?}")
            })?;
        }
        Ok::<(), String>(())
    })
    .await;
    match subpaths {
        Ok(Ok(())) => {}
        Ok(Err(reason)) => return Outcome::Kept(reason),
        Err(e) => return Outcome::Kept(format!("cleaning its subPath mounts failed: {e}")),
    }

    let found = match volumes_on_disk(pod_dir) {
        Ok(found) => found,
        Err(e) => {
            return Outcome::Kept(format!(
                "error {e} occurred during reading volume dir from disk"
            ));
        }
    };
    let mut failed = Vec::new();
    // A block volume may have both a map path and other paths: one teardown per name.
    let mut torn_down = std::collections::BTreeSet::new();
    for found in &found {
        let OnDisk {
            plugin_dir, name, ..
        } = found;
        if name.is_empty() {
            failed.push(format!("{found} (not a directory)"));
            continue;
        }
        if !torn_down.insert((plugin_dir, name)) {
            continue;
        }
        let Some(plugin) = plugin_for(&ctx.volume_plugins, plugin_dir) else {
            failed.push(format!("{found} (no volume plugin owns {plugin_dir:?})"));
            continue;
        };
        let span =
            info_span!("volume_teardown", pod_uid = %uid, volume = %name, plugin = plugin.name());
        match plugin.teardown(uid, pod_dir, name).instrument(span).await {
            Ok(()) => debug!(volume = %name, plugin = plugin.name(), "orphaned volume torn down"),
            Err(err) => {
                warn!(volume = %name, plugin = plugin.name(), error = %err, "orphaned volume teardown failed");
                failed.push(format!("{found} ({err})"));
            }
        }
    }
    // Plugin directories left empty go; anything else left means a volume is not gone.
    for dir in VOLUME_DIRS {
        if let Ok(entries) = std::fs::read_dir(pod_dir.join(dir)) {
            for entry in entries.flatten() {
                let _ = std::fs::remove_dir(entry.path());
            }
        }
    }
    match volumes_on_disk(pod_dir) {
        Ok(left) if left.is_empty() => {}
        Ok(left) => {
            let left: Vec<String> = left.iter().map(ToString::to_string).collect();
            let why = if failed.is_empty() {
                String::new()
            } else {
                format!("; teardown failed for {}", failed.join(", "))
            };
            return Outcome::Kept(format!(
                "volume paths are still present on disk: {}{why}",
                left.join(", ")
            ));
        }
        Err(e) => {
            return Outcome::Kept(format!(
                "error {e} occurred during reading volume dir from disk"
            ));
        }
    }

    let mounter = ctx.mounter.clone();
    let dir = pod_dir.to_path_buf();
    match tokio::task::spawn_blocking(move || remove_unless_mounted(mounter.as_ref(), &dir)).await {
        Ok(Ok(())) => Outcome::Removed,
        Ok(Err(e)) => Outcome::Kept(format!("its directory was not removed: {e}")),
        Err(e) => Outcome::Kept(format!("its directory was not removed: {e}")),
    }
}

/// Below a pod directory, where volumes live: `volumes/<plugin dir>/<name>` (mounted
/// volumes) and `volumeDevices/<plugin dir>/<name>` (the map paths of block volumes).
const VOLUME_DIRS: [&str; 2] = ["volumes", "volumeDevices"];

/// One volume path found below a pod directory.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct OnDisk {
    /// One of [`VOLUME_DIRS`].
    dir: &'static str,
    plugin_dir: String,
    /// Empty for a stray file where a plugin directory belongs.
    name: String,
}

impl std::fmt::Display for OnDisk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.dir, self.plugin_dir)?;
        if !self.name.is_empty() {
            write!(f, "/{}", self.name)?;
        }
        Ok(())
    }
}

/// Each `<dir>/<plugin dir>/<name>` below the pod directory, for each of [`VOLUME_DIRS`];
/// nothing for a directory that does not exist.
fn volumes_on_disk(pod_dir: &Path) -> io::Result<Vec<OnDisk>> {
    let mut found = Vec::new();
    for dir in VOLUME_DIRS {
        let plugins = match std::fs::read_dir(pod_dir.join(dir)) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for plugin in plugins {
            let plugin = plugin?;
            let plugin_dir = plugin.file_name().to_string_lossy().into_owned();
            if !plugin.file_type()?.is_dir() {
                // A stray file where a plugin directory belongs is a path still present.
                found.push(OnDisk {
                    dir,
                    plugin_dir,
                    name: String::new(),
                });
                continue;
            }
            for volume in std::fs::read_dir(plugin.path())? {
                found.push(OnDisk {
                    dir,
                    plugin_dir: plugin_dir.clone(),
                    name: volume?.file_name().to_string_lossy().into_owned(),
                });
            }
        }
    }
    found.sort();
    Ok(found)
}

/// The plugin whose volumes live in `volumes/<plugin_dir>`.
fn plugin_for<'a>(
    plugins: &'a [Arc<dyn VolumePlugin>],
    plugin_dir: &str,
) -> Option<&'a Arc<dyn VolumePlugin>> {
    plugins
        .iter()
        .find(|p| p.pod_volume_dirs().iter().any(|d| d == plugin_dir))
}

/// Remove `dir` and everything below it, unless something below is a mount point (as the
/// mounter or the node's mount table sees it) or on another file system: removing through
/// a mount would delete the mounted data. Symbolic links are removed, never followed.
fn remove_unless_mounted(mounter: &dyn Mounter, dir: &Path) -> io::Result<()> {
    let root = match std::fs::symlink_metadata(dir) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    // Real mounts, whatever the mounter is (a fake one in tests knows only its own).
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let canonical = std::fs::canonicalize(dir)?;
    if let Some(mounted) =
        crate::volume_plugins::mount_points(&mountinfo).find(|m| m.starts_with(&canonical))
    {
        return Err(io::Error::other(format!(
            "{} is still mounted",
            mounted.display()
        )));
    }
    let mut stack: Vec<PathBuf> = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path)?;
        if meta.file_type().is_symlink() {
            continue;
        }
        if meta.dev() != root.dev() || mounter.is_mount_point(&path)? {
            return Err(io::Error::other(format!(
                "{} is still mounted",
                path.display()
            )));
        }
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path)? {
                stack.push(entry?.path());
            }
        }
    }
    std::fs::remove_dir_all(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::FakeMounter;

    #[test]
    fn volumes_on_disk_lists_plugin_dirs_and_names() {
        let dir = tempfile::tempdir().unwrap();
        let pod = dir.path();
        assert!(volumes_on_disk(pod).unwrap().is_empty());
        std::fs::create_dir_all(pod.join("volumes/kubernetes.io~csi/pv-1/mount")).unwrap();
        std::fs::create_dir_all(pod.join("volumes/kubernetes.io~empty-dir/cache")).unwrap();
        std::fs::create_dir_all(pod.join("volumes/kubernetes.io~secret")).unwrap();
        std::fs::create_dir_all(pod.join("volumeDevices/kubernetes.io~csi")).unwrap();
        std::os::unix::fs::symlink(
            "/dev/null",
            pod.join("volumeDevices/kubernetes.io~csi/pv-2"),
        )
        .unwrap();
        std::fs::write(pod.join("volumes/stray"), "").unwrap();
        let found: Vec<String> = volumes_on_disk(pod)
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            found,
            [
                "volumeDevices/kubernetes.io~csi/pv-2",
                "volumes/kubernetes.io~csi/pv-1",
                "volumes/kubernetes.io~empty-dir/cache",
                "volumes/stray",
            ]
        );
    }

    #[test]
    fn plugins_are_found_by_their_escaped_names() {
        let plugins: Vec<Arc<dyn VolumePlugin>> =
            crate::volume_plugins::builtin_with(Arc::new(FakeMounter::new()));
        assert_eq!(
            plugin_for(&plugins, "kubernetes.io~empty-dir").map(|p| p.name()),
            Some("kubernetes.io/empty-dir")
        );
        assert!(plugin_for(&plugins, "kubernetes.io~csi").is_none());
    }

    #[test]
    fn a_tree_with_a_mount_point_is_kept_and_one_without_removed() {
        let dir = tempfile::tempdir().unwrap();
        let pod = dir.path().join("uid-1");
        std::fs::create_dir_all(pod.join("plugins/x")).unwrap();
        std::fs::create_dir_all(pod.join("containers/app")).unwrap();
        std::fs::write(pod.join("etc-hosts"), "127.0.0.1 localhost\n").unwrap();
        // A link out of the tree is removed, never followed.
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("keep"), "x").unwrap();
        std::os::unix::fs::symlink(&outside, pod.join("containers/app/link")).unwrap();
        let mounter = FakeMounter::new();
        mounter.mount_tmpfs(&pod.join("plugins/x"), None).unwrap();
        let err = remove_unless_mounted(&mounter, &pod).unwrap_err();
        assert!(
            err.to_string().ends_with("plugins/x is still mounted"),
            "{err}"
        );
        assert!(pod.join("etc-hosts").is_file(), "nothing removed");
        mounter.unmount(&pod.join("plugins/x")).unwrap();
        remove_unless_mounted(&mounter, &pod).unwrap();
        assert!(!pod.exists());
        assert!(outside.join("keep").is_file());
        // Gone already is fine.
        remove_unless_mounted(&mounter, &pod).unwrap();
    }
}
