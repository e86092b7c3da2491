//! `hostPath`: a path of the node, checked (or created) by its `type` as the reference does.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Volume;

use super::io_error;
use crate::error::VolumeError;
use crate::volume::{MountedVolume, VolumeContext, VolumePlugin};

/// The `hostPath` volume plugin.
#[derive(Debug, Clone, Copy, Default)]
pub struct HostPathPlugin;

fn invalid(volume: &str, message: String) -> VolumeError {
    VolumeError::Invalid {
        volume: volume.to_string(),
        message,
    }
}

#[async_trait]
impl VolumePlugin for HostPathPlugin {
    fn name(&self) -> &str {
        "kubernetes.io/host-path"
    }

    fn can_support(&self, volume: &Volume) -> bool {
        volume.host_path.is_some()
    }

    async fn setup(
        &self,
        _ctx: &VolumeContext<'_>,
        volume: &Volume,
    ) -> Result<MountedVolume, VolumeError> {
        let name = volume.name.as_str();
        let Some(source) = volume.host_path.as_ref() else {
            return Err(VolumeError::Unsupported(name.to_string()));
        };
        let path = PathBuf::from(&source.path);
        if !path.is_absolute() {
            return Err(invalid(
                name,
                format!("hostPath.path {:?} must be an absolute path", source.path),
            ));
        }
        let kind = source.type_.as_deref().unwrap_or_default();
        let meta = tokio::fs::metadata(&path).await;
        let want = |ok: bool, what: &str| {
            if ok {
                Ok(())
            } else {
                Err(VolumeError::NotReady {
                    volume: name.to_string(),
                    message: format!(
                        "hostPath type check failed: {} is not a {what}",
                        path.display()
                    ),
                })
            }
        };
        match kind {
            "" => {}
            "DirectoryOrCreate" => match &meta {
                Ok(m) => want(m.is_dir(), "directory")?,
                Err(_) => {
                    tokio::fs::create_dir_all(&path)
                        .await
                        .map_err(|e| io_error(name, &path, e))?;
                    tokio::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                        .await
                        .map_err(|e| io_error(name, &path, e))?;
                }
            },
            "FileOrCreate" => match &meta {
                Ok(m) => want(m.is_file(), "file")?,
                Err(_) => create_file(name, &path).await?,
            },
            "Directory" => want(meta.as_ref().is_ok_and(|m| m.is_dir()), "directory")?,
            "File" => want(meta.as_ref().is_ok_and(|m| m.is_file()), "file")?,
            "Socket" => want(
                meta.as_ref().is_ok_and(|m| m.file_type().is_socket()),
                "socket",
            )?,
            "CharDevice" => want(
                meta.as_ref().is_ok_and(|m| m.file_type().is_char_device()),
                "character device",
            )?,
            "BlockDevice" => want(
                meta.as_ref().is_ok_and(|m| m.file_type().is_block_device()),
                "block device",
            )?,
            other => {
                return Err(invalid(
                    name,
                    format!("hostPath.type {other:?} is not a valid type"),
                ));
            }
        }
        Ok(MountedVolume {
            host_path: path,
            read_only: false,
        })
    }

    async fn teardown(
        &self,
        _pod_uid: &str,
        _pod_dir: &Path,
        _volume_name: &str,
    ) -> Result<(), VolumeError> {
        // The path belongs to the node, not to the pod: nothing to remove.
        Ok(())
    }
}

async fn create_file(name: &str, path: &Path) -> Result<(), VolumeError> {
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|e| io_error(name, parent, e))?;
    }
    tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .await
        .map_err(|e| io_error(name, path, e))?;
    tokio::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
        .await
        .map_err(|e| io_error(name, path, e))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{HostPathVolumeSource, Pod};

    use super::*;

    fn volume(path: &Path, kind: &str) -> Volume {
        Volume {
            name: "host".into(),
            host_path: Some(HostPathVolumeSource {
                path: path.to_string_lossy().into_owned(),
                type_: Some(kind.into()),
            }),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn types_are_checked_or_created() {
        let root = tempfile::tempdir().expect("tempdir");
        let pod = Pod::default();
        let ctx = VolumeContext {
            pod: &pod,
            pod_dir: root.path(),
        };
        let dir = root.path().join("made/dir");
        let file = root.path().join("made/file");
        let p = HostPathPlugin;
        p.setup(&ctx, &volume(&dir, "DirectoryOrCreate"))
            .await
            .expect("dir created");
        assert!(dir.is_dir());
        p.setup(&ctx, &volume(&file, "FileOrCreate"))
            .await
            .expect("file created");
        assert!(file.is_file());
        p.setup(&ctx, &volume(&dir, "Directory"))
            .await
            .expect("is a dir");
        p.setup(&ctx, &volume(&file, "File"))
            .await
            .expect("is a file");
        for (path, kind) in [
            (&file, "Directory"),
            (&dir, "File"),
            (&dir, "Socket"),
            (&root.path().join("absent"), "Directory"),
        ] {
            let err = p.setup(&ctx, &volume(path, kind)).await.expect_err(kind);
            assert!(err.to_string().contains("host"), "{err}");
        }
        let err = p
            .setup(&ctx, &volume(&dir, "Bogus"))
            .await
            .expect_err("bad type");
        assert!(err.to_string().contains("Bogus"), "{err}");
        let err = p
            .setup(&ctx, &volume(Path::new("relative"), ""))
            .await
            .expect_err("relative");
        assert!(err.to_string().contains("absolute"), "{err}");
    }
}
