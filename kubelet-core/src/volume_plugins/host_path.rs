//! `hostPath`: a path of the node, checked (or created) by its `type` as the reference does,
//! with the reference's messages (`hostPath type check failed: <path> is not a directory`).
//! `DirectoryOrCreate` makes the directory (and its parents) with mode 0755,
//! `FileOrCreate` an empty file with mode 0644; unlike the documented reference, which
//! leaves a missing parent directory of a `FileOrCreate` path as an error, this kubelet
//! creates the parents too. The volume's ownership is left alone (`fsGroup` does not apply
//! to hostPath volumes, as with the reference).

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
                "socket file",
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
                return Err(invalid(name, format!("{other} is an invalid volume type")));
            }
        }
        Ok(MountedVolume {
            host_path: path,
            read_only: false,
            size_limit_bytes: None,
            block_device: None,
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
        let ctx = VolumeContext::new(&pod, root.path());
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
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o7777;
        assert_eq!(mode(&dir), 0o755);
        assert_eq!(mode(&file), 0o644);
        // What exists already is checked, not created over.
        let err = p
            .setup(&ctx, &volume(&file, "DirectoryOrCreate"))
            .await
            .expect_err("a file is not a directory");
        assert!(err.to_string().contains("is not a directory"), "{err}");
        let err = p
            .setup(&ctx, &volume(&dir, "FileOrCreate"))
            .await
            .expect_err("a directory is not a file");
        assert!(err.to_string().contains("is not a file"), "{err}");
        let socket_path = root.path().join("sock");
        let _listener = std::os::unix::net::UnixListener::bind(&socket_path).expect("bind");
        p.setup(&ctx, &volume(&socket_path, "Socket"))
            .await
            .expect("is a socket");
        p.setup(&ctx, &volume(Path::new("/dev/null"), "CharDevice"))
            .await
            .expect("/dev/null is a character device");
        let absent = root.path().join("absent");
        for (path, kind, what) in [
            (&file, "Directory", "is not a directory"),
            (&dir, "File", "is not a file"),
            (&dir, "Socket", "is not a socket file"),
            (&file, "CharDevice", "is not a character device"),
            (&socket_path, "BlockDevice", "is not a block device"),
            (&absent, "Directory", "is not a directory"),
            (&absent, "File", "is not a file"),
        ] {
            let err = p.setup(&ctx, &volume(path, kind)).await.expect_err(kind);
            let want = format!("hostPath type check failed: {} {what}", path.display());
            assert!(
                err.to_string().contains(&want) && err.to_string().contains("host"),
                "{err}"
            );
        }
        assert!(!absent.exists());
        let err = p
            .setup(&ctx, &volume(&dir, "Bogus"))
            .await
            .expect_err("bad type");
        assert!(
            err.to_string().contains("Bogus is an invalid volume type"),
            "{err}"
        );
        let err = p
            .setup(&ctx, &volume(Path::new("relative"), ""))
            .await
            .expect_err("relative");
        assert!(err.to_string().contains("absolute"), "{err}");
    }
}
