//! `emptyDir`: a directory of the pod's own below the kubelet's root, gone with the pod.
//!
//! The default medium is a directory on the node's disk (mode 0777, as the reference); its
//! `sizeLimit` is recorded in [`MountedVolume::size_limit_bytes`]; the pod worker measures
//! the volume ([`disk_usage`]) every 10 s and evicts the pod past the limit
//! ([`size_limit_eviction_message`]), as the reference's eviction manager does.
//! `medium: Memory` mounts a tmpfs sized as [`super::memory_volume_size`] says (the
//! reference's `SizeMemoryBackedVolumes`). The pod's `fsGroup` is applied once, when the
//! volume is first set up (a `ready` marker below `<pod dir>/plugins/` remembers it, as the
//! reference's does), so that later syncs never fight with what containers did since.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Volume;
use tracing::debug;

use super::io_error;
use super::mount::{HostMounter, Mounter, ensure_tmpfs, remove_volume_dir};
use super::ownership::{FsGroup, set_volume_ownership};
use crate::error::VolumeError;
use crate::volume::{MountedVolume, VolumeContext, VolumePlugin};

/// The reference's plugin name and directory (`kubernetes.io~empty-dir`).
const NAME: &str = "kubernetes.io/empty-dir";
const DIR: &str = "kubernetes.io~empty-dir";
const READY: &str = "ready";

/// The `emptyDir` volume plugin (disk and memory media).
#[derive(Debug, Clone)]
pub struct EmptyDirPlugin {
    mounter: Arc<dyn Mounter>,
}

impl Default for EmptyDirPlugin {
    fn default() -> Self {
        Self::with_mounter(Arc::new(HostMounter))
    }
}

impl EmptyDirPlugin {
    /// The plugin, mounting `medium: Memory` volumes through the node's mount table.
    pub fn new() -> Self {
        Self::default()
    }

    /// The plugin, mounting `medium: Memory` volumes through `mounter`.
    pub fn with_mounter(mounter: Arc<dyn Mounter>) -> Self {
        Self { mounter }
    }
}

fn volume_dir(pod_dir: &Path, name: &str) -> PathBuf {
    pod_dir.join("volumes").join(DIR).join(name)
}

/// Where the plugin keeps what it knows about a volume (the `ready` marker).
fn meta_dir(pod_dir: &Path, name: &str) -> PathBuf {
    pod_dir.join("plugins").join(DIR).join(name)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Medium {
    Disk,
    Memory,
}

/// What one setup has to do, computed before the blocking part.
struct Plan {
    name: String,
    dir: PathBuf,
    meta: PathBuf,
    medium: Medium,
    tmpfs_size: Option<u64>,
    fs_group: Option<FsGroup>,
}

fn run(plan: &Plan, mounter: &dyn Mounter) -> Result<(), VolumeError> {
    let name = plan.name.as_str();
    let ready = plan.meta.join(READY);
    let is_ready = ready.exists();
    match plan.medium {
        Medium::Memory => {
            let mounted = ensure_tmpfs(mounter, &plan.dir, plan.tmpfs_size)
                .map_err(|e| io_error(name, &plan.dir, e))?;
            if mounted {
                debug!(volume = %name, dir = %plan.dir.display(), size = ?plan.tmpfs_size, "tmpfs mounted");
            } else if is_ready {
                return Ok(());
            }
        }
        Medium::Disk => {
            if is_ready && plan.dir.is_dir() {
                return Ok(());
            }
            std::fs::create_dir_all(&plan.dir).map_err(|e| io_error(name, &plan.dir, e))?;
            // Any user of any container may write to it, as with the reference.
            std::fs::set_permissions(&plan.dir, std::fs::Permissions::from_mode(0o777))
                .map_err(|e| io_error(name, &plan.dir, e))?;
        }
    }
    if let Some(group) = plan.fs_group {
        set_volume_ownership(&plan.dir, group, false)
            .map_err(|e| io_error(name, &e.path, e.source))?;
    }
    std::fs::create_dir_all(&plan.meta).map_err(|e| io_error(name, &plan.meta, e))?;
    std::fs::write(&ready, b"").map_err(|e| io_error(name, &ready, e))?;
    Ok(())
}

#[async_trait]
impl VolumePlugin for EmptyDirPlugin {
    fn name(&self) -> &str {
        NAME
    }

    fn can_support(&self, volume: &Volume) -> bool {
        volume.empty_dir.is_some()
    }

    async fn setup(
        &self,
        ctx: &VolumeContext<'_>,
        volume: &Volume,
    ) -> Result<MountedVolume, VolumeError> {
        let source = volume.empty_dir.as_ref();
        let medium = match source.and_then(|e| e.medium.as_deref()).unwrap_or_default() {
            "" => Medium::Disk,
            "Memory" => Medium::Memory,
            other => {
                return Err(VolumeError::Invalid {
                    volume: volume.name.clone(),
                    message: format!(
                        "emptyDir.medium {other:?} is not supported by this kubelet (the default disk medium and Memory are)"
                    ),
                });
            }
        };
        let size_limit = source.and_then(|e| e.size_limit.as_ref());
        let size_limit_bytes = match size_limit {
            None => None,
            Some(q) => Some(
                crate::quantity::parse_units(q)
                    .ok()
                    .and_then(|v| u64::try_from(v).ok())
                    .ok_or_else(|| VolumeError::Invalid {
                        volume: volume.name.clone(),
                        message: format!("emptyDir.sizeLimit {:?} is not a valid size", q.0),
                    })?,
            ),
        };
        let plan = Plan {
            name: volume.name.clone(),
            dir: volume_dir(ctx.pod_dir, &volume.name),
            meta: meta_dir(ctx.pod_dir, &volume.name),
            medium,
            tmpfs_size: match medium {
                Medium::Memory => super::memory_volume_size(
                    ctx.pod,
                    size_limit,
                    ctx.node_allocatable.memory_bytes,
                ),
                Medium::Disk => None,
            },
            fs_group: FsGroup::of(ctx.pod),
        };
        let mounter = self.mounter.clone();
        let (plan, result) = tokio::task::spawn_blocking(move || {
            let r = run(&plan, mounter.as_ref());
            (plan, r)
        })
        .await
        .map_err(|e| VolumeError::Other {
            volume: volume.name.clone(),
            message: format!("setting up the emptyDir: {e}"),
        })?;
        result?;
        Ok(MountedVolume {
            host_path: plan.dir,
            read_only: false,
            size_limit_bytes: match medium {
                Medium::Disk => size_limit_bytes,
                Medium::Memory => None,
            },
            block_device: None,
        })
    }

    async fn teardown(
        &self,
        _pod_uid: &str,
        pod_dir: &Path,
        volume_name: &str,
    ) -> Result<(), VolumeError> {
        let dir = volume_dir(pod_dir, volume_name);
        let meta = meta_dir(pod_dir, volume_name);
        let mounter = self.mounter.clone();
        let name = volume_name.to_string();
        tokio::task::spawn_blocking(move || {
            remove_volume_dir(mounter.as_ref(), &dir).map_err(|e| io_error(&name, &dir, e))?;
            match std::fs::remove_dir_all(&meta) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(io_error(&name, &meta, e)),
            }
        })
        .await
        .map_err(|e| VolumeError::Other {
            volume: volume_name.to_string(),
            message: format!("tearing down the emptyDir: {e}"),
        })?
    }
}

/// How much of the node's disk what lies below `dir` takes (allocated blocks, as `du`
/// counts them), staying on `dir`'s file system and not following symbolic links: what the
/// reference compares with an on-disk emptyDir's `sizeLimit`.
pub fn disk_usage(dir: &Path) -> std::io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    fn walk(path: &Path, dev: u64, total: &mut u64) -> std::io::Result<()> {
        let meta = match std::fs::symlink_metadata(path) {
            Ok(m) => m,
            // Removed while walking (a container's temporary file).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        if meta.dev() != dev {
            return Ok(());
        }
        *total = total.saturating_add(meta.blocks().saturating_mul(512));
        if meta.is_dir() {
            for entry in std::fs::read_dir(path)? {
                walk(&entry?.path(), dev, total)?;
            }
        }
        Ok(())
    }
    let dev = std::fs::symlink_metadata(dir)?.dev();
    let mut total = 0;
    walk(dir, dev, &mut total)?;
    Ok(total)
}

/// The reference's eviction message for an on-disk emptyDir whose `usage` (bytes, see
/// [`disk_usage`]) exceeds its `sizeLimit`, `None` while it does not (or it sets none, or
/// it is memory-backed: the tmpfs size bounds those). The pod worker evicts on it.
pub fn size_limit_eviction_message(volume: &Volume, usage: u64) -> Option<String> {
    let source = volume.empty_dir.as_ref()?;
    if source.medium.as_deref().is_some_and(|m| !m.is_empty()) {
        return None;
    }
    let limit = source.size_limit.as_ref()?;
    let bytes = u64::try_from(crate::quantity::parse_units(limit).ok()?).ok()?;
    (usage > bytes).then(|| {
        format!(
            "Usage of EmptyDir volume {:?} exceeds the limit {:?}. ",
            volume.name, limit.0
        )
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::{
        Container, EmptyDirVolumeSource, Pod, PodSpec, ResourceRequirements,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    use super::*;
    use crate::downward_api::NodeAllocatable;
    use crate::volume_plugins::FakeMounter;

    fn volume(name: &str, medium: Option<&str>, size: Option<&str>) -> Volume {
        Volume {
            name: name.into(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: medium.map(str::to_string),
                size_limit: size.map(|s| Quantity(s.into())),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn pod(memory_limit: Option<&str>) -> Pod {
        Pod {
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "app".into(),
                    resources: memory_limit.map(|m| ResourceRequirements {
                        limits: Some(BTreeMap::from([("memory".to_string(), Quantity(m.into()))])),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn makes_a_writable_dir_and_removes_it() {
        let root = tempfile::tempdir().expect("tempdir");
        let pod = Pod::default();
        let mounter = FakeMounter::new();
        let plugin = EmptyDirPlugin::with_mounter(Arc::new(mounter.clone()));
        let volume = volume("scratch", None, Some("10Mi"));
        let ctx = VolumeContext::new(&pod, root.path());
        let m = plugin.setup(&ctx, &volume).await.expect("setup");
        assert!(
            m.host_path
                .ends_with("volumes/kubernetes.io~empty-dir/scratch")
        );
        // On disk the sizeLimit is recorded, no tmpfs is mounted.
        assert_eq!(m.size_limit_bytes, Some(10 * 1024 * 1024));
        assert!(mounter.mounts().is_empty());
        let mode = std::fs::metadata(&m.host_path)
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o777);
        // Setup is idempotent.
        plugin.setup(&ctx, &volume).await.expect("setup again");
        plugin
            .teardown("uid", root.path(), "scratch")
            .await
            .expect("teardown");
        assert!(!m.host_path.exists());
        assert!(
            !root
                .path()
                .join("plugins/kubernetes.io~empty-dir/scratch")
                .exists()
        );
        plugin
            .teardown("uid", root.path(), "scratch")
            .await
            .expect("teardown again");
    }

    #[tokio::test]
    async fn memory_medium_is_a_tmpfs_sized_by_limit_pod_or_node() {
        let root = tempfile::tempdir().expect("tempdir");
        let mounter = FakeMounter::new();
        let plugin = EmptyDirPlugin::with_mounter(Arc::new(mounter.clone()));
        let node = NodeAllocatable {
            memory_bytes: 1 << 30,
            ..Default::default()
        };
        let cases = [
            ("node", pod(None), None, Some(1u64 << 30)),
            ("podlimit", pod(Some("64Mi")), None, Some(64 << 20)),
            ("sizelimit", pod(Some("64Mi")), Some("8Mi"), Some(8 << 20)),
        ];
        for (name, p, size, want) in cases {
            let ctx = VolumeContext::new(&p, root.path()).with_node_allocatable(node);
            let m = plugin
                .setup(&ctx, &volume(name, Some("Memory"), size))
                .await
                .expect("setup");
            assert_eq!(mounter.mounts().get(&m.host_path), Some(&want), "{name}");
            assert_eq!(m.size_limit_bytes, None);
            // Setting up again mounts nothing more.
            plugin
                .setup(&ctx, &volume(name, Some("Memory"), size))
                .await
                .expect("setup again");
        }
        assert_eq!(mounter.mounts().len(), 3);
        plugin
            .teardown("uid", root.path(), "node")
            .await
            .expect("teardown");
        assert_eq!(mounter.mounts().len(), 2);
        assert_eq!(
            mounter.unmounted(),
            vec![root.path().join("volumes/kubernetes.io~empty-dir/node")]
        );
        assert!(
            !root
                .path()
                .join("volumes/kubernetes.io~empty-dir/node")
                .exists()
        );
    }

    #[test]
    fn usage_over_the_size_limit_gets_the_references_eviction_message() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("vol");
        std::fs::create_dir_all(dir.join("sub")).expect("mkdir");
        std::fs::write(dir.join("sub/f"), vec![7u8; 64 * 1024]).expect("write");
        std::os::unix::fs::symlink("/usr", dir.join("link")).expect("symlink");
        let usage = disk_usage(&dir).expect("usage");
        // The file's blocks (at least its size), not what the link points to.
        assert!((64 * 1024..1024 * 1024).contains(&usage), "{usage}");
        let small = volume("cache", None, Some("32Ki"));
        assert_eq!(
            size_limit_eviction_message(&small, usage).as_deref(),
            Some("Usage of EmptyDir volume \"cache\" exceeds the limit \"32Ki\". ")
        );
        assert_eq!(
            size_limit_eviction_message(&volume("cache", None, Some("1Mi")), usage),
            None
        );
        assert_eq!(
            size_limit_eviction_message(&volume("cache", None, None), usage),
            None
        );
        assert_eq!(
            size_limit_eviction_message(&volume("shm", Some("Memory"), Some("1Ki")), usage),
            None
        );
    }

    #[tokio::test]
    async fn other_media_are_refused_with_the_volume_named() {
        let root = tempfile::tempdir().expect("tempdir");
        let pod = Pod::default();
        let ctx = VolumeContext::new(&pod, root.path());
        let plugin = EmptyDirPlugin::with_mounter(Arc::new(FakeMounter::new()));
        let err = plugin
            .setup(&ctx, &volume("huge", Some("HugePages"), None))
            .await
            .expect_err("refused");
        assert!(
            err.to_string().contains("huge") && err.to_string().contains("HugePages"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn fs_group_is_applied_once_at_first_setup() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: chown to another group needs root");
            return;
        }
        use std::os::unix::fs::MetadataExt;
        let root = tempfile::tempdir().expect("tempdir");
        let mut pod = pod(None);
        if let Some(spec) = pod.spec.as_mut() {
            spec.security_context = Some(k8s_openapi::api::core::v1::PodSecurityContext {
                fs_group: Some(2345),
                ..Default::default()
            });
        }
        let ctx = VolumeContext::new(&pod, root.path());
        let plugin = EmptyDirPlugin::with_mounter(Arc::new(FakeMounter::new()));
        let m = plugin
            .setup(&ctx, &volume("data", None, None))
            .await
            .expect("setup");
        let meta = std::fs::metadata(&m.host_path).expect("meta");
        assert_eq!(meta.gid(), 2345);
        assert_eq!(meta.permissions().mode() & 0o7777, 0o2777);
        // What a container does afterwards is not undone by later syncs.
        let file = m.host_path.join("f");
        std::fs::write(&file, "x").expect("write");
        std::os::unix::fs::lchown(&file, None, Some(0)).expect("chown");
        plugin
            .setup(&ctx, &volume("data", None, None))
            .await
            .expect("setup again");
        assert_eq!(std::fs::metadata(&file).expect("meta").gid(), 0);
    }
}
