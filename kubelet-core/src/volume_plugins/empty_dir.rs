//! `emptyDir`: a directory of the pod's own below the kubelet's root, gone with the pod.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Volume;

use super::io_error;
use crate::error::VolumeError;
use crate::volume::{MountedVolume, VolumeContext, VolumePlugin};

/// The reference's plugin name and directory (`kubernetes.io~empty-dir`).
const NAME: &str = "kubernetes.io/empty-dir";
const DIR: &str = "kubernetes.io~empty-dir";

/// The `emptyDir` volume plugin (disk medium).
#[derive(Debug, Clone, Copy, Default)]
pub struct EmptyDirPlugin;

fn volume_dir(pod_dir: &Path, name: &str) -> PathBuf {
    pod_dir.join("volumes").join(DIR).join(name)
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
        let medium = volume
            .empty_dir
            .as_ref()
            .and_then(|e| e.medium.as_deref())
            .unwrap_or_default();
        if !medium.is_empty() {
            return Err(VolumeError::Invalid {
                volume: volume.name.clone(),
                message: format!(
                    "emptyDir.medium {medium:?} is not supported by this kubelet yet (only the default disk medium)"
                ),
            });
        }
        let dir = volume_dir(ctx.pod_dir, &volume.name);
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| io_error(&volume.name, &dir, e))?;
        // Any user of any container may write to it, as with the reference.
        tokio::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))
            .await
            .map_err(|e| io_error(&volume.name, &dir, e))?;
        Ok(MountedVolume {
            host_path: dir,
            read_only: false,
        })
    }

    async fn teardown(
        &self,
        _pod_uid: &str,
        pod_dir: &Path,
        volume_name: &str,
    ) -> Result<(), VolumeError> {
        let dir = volume_dir(pod_dir, volume_name);
        match tokio::fs::remove_dir_all(&dir).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error(volume_name, &dir, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{EmptyDirVolumeSource, Pod};

    use super::*;

    #[tokio::test]
    async fn makes_a_writable_dir_and_removes_it() {
        let root = tempfile::tempdir().expect("tempdir");
        let pod = Pod::default();
        let volume = Volume {
            name: "scratch".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Default::default()
        };
        let ctx = VolumeContext {
            pod: &pod,
            pod_dir: root.path(),
        };
        let m = EmptyDirPlugin.setup(&ctx, &volume).await.expect("setup");
        assert!(
            m.host_path
                .ends_with("volumes/kubernetes.io~empty-dir/scratch")
        );
        let mode = std::fs::metadata(&m.host_path)
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o777);
        // Setup is idempotent.
        EmptyDirPlugin
            .setup(&ctx, &volume)
            .await
            .expect("setup again");
        EmptyDirPlugin
            .teardown("uid", root.path(), "scratch")
            .await
            .expect("teardown");
        assert!(!m.host_path.exists());
        EmptyDirPlugin
            .teardown("uid", root.path(), "scratch")
            .await
            .expect("teardown again");
    }

    #[tokio::test]
    async fn memory_medium_is_refused_with_the_volume_named() {
        let root = tempfile::tempdir().expect("tempdir");
        let pod = Pod::default();
        let volume = Volume {
            name: "shm".into(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: Some("Memory".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let ctx = VolumeContext {
            pod: &pod,
            pod_dir: root.path(),
        };
        let err = EmptyDirPlugin
            .setup(&ctx, &volume)
            .await
            .expect_err("refused");
        assert!(
            err.to_string().contains("shm") && err.to_string().contains("Memory"),
            "{err}"
        );
    }
}
