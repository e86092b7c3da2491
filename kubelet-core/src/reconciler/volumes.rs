//! Setting up and tearing down a pod's volumes through the volume plugins, and turning a
//! container's `volumeMounts` into the runtime's mounts (`subPath`, `subPathExpr`,
//! `readOnly`, `mountPropagation`), with the reference's checks and messages.
//!
//! Every pod sync calls [`PodWorker::setup_volumes`], so volumes made of API objects are
//! brought up to date at least once per sync period.

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::core::v1::{Container, Pod};
use tracing::{Instrument, info_span, warn};

pub(super) use super::sub_paths::{SubPathMounts, clean_sub_paths, sub_path_volume_names};
use super::sub_paths::{SubPathTarget, prepare_sub_path, sub_path};
use super::worker::PodWorker;
use crate::error::VolumeError;
use crate::runtime::{Device, KeyValue, Mount, MountPropagation};
use crate::volume::{MountedVolume, VolumeContext};

impl PodWorker {
    /// Set up every volume of the pod; the host paths by volume name.
    pub(super) async fn setup_volumes(
        &self,
        pod: &Pod,
    ) -> Result<BTreeMap<String, MountedVolume>, VolumeError> {
        let mut mounted = BTreeMap::new();
        let volumes = pod
            .spec
            .as_ref()
            .and_then(|s| s.volumes.as_deref())
            .unwrap_or(&[]);
        if volumes.is_empty() {
            return Ok(mounted);
        }
        let pod_dir = self.pod_dir();
        let ctx = VolumeContext::new(pod, &pod_dir)
            .with_node_allocatable(self.ctx.config.spec.node_allocatable());
        let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
        for volume in volumes {
            let plugin = self
                .ctx
                .volume_plugins
                .iter()
                .find(|p| p.can_support(volume))
                .ok_or_else(|| VolumeError::Unsupported(volume.name.clone()))?;
            let span = info_span!("volume_setup", pod = %pod_name, volume = %volume.name, plugin = plugin.name());
            let m = plugin.setup(&ctx, volume).instrument(span).await?;
            mounted.insert(volume.name.clone(), m);
        }
        Ok(mounted)
    }

    /// Tear down the pod's volumes: those of its spec, or for an orphan every volume
    /// directory left below the pod directory, offered to each plugin. The subPath binds
    /// of every volume go first; a volume whose binds cannot be removed is left as it is,
    /// as the reference does.
    pub(super) async fn teardown_volumes(&self, pod: Option<&Pod>) {
        let pod_dir = self.pod_dir();
        let mut busy = std::collections::BTreeSet::new();
        for name in sub_path_volume_names(&pod_dir) {
            if let Err(err) = clean_sub_paths(self.ctx.mounter.as_ref(), &pod_dir, &name) {
                warn!(pod = %self.uid, volume = %name, error = %err, "subPath mounts not cleaned up; volume kept");
                busy.insert(name);
            }
        }
        let names: Vec<String> = match pod {
            Some(p) => p
                .spec
                .as_ref()
                .and_then(|s| s.volumes.as_ref())
                .map(|vs| vs.iter().map(|v| v.name.clone()).collect())
                .unwrap_or_default(),
            None => orphan_volume_names(&pod_dir.join("volumes")),
        };
        for name in names.into_iter().filter(|n| !busy.contains(n)) {
            for plugin in &self.ctx.volume_plugins {
                let span = info_span!("volume_teardown", pod = %self.uid, volume = %name, plugin = plugin.name());
                if let Err(err) = plugin
                    .teardown(&self.uid, &pod_dir, &name)
                    .instrument(span)
                    .await
                {
                    warn!(volume = %name, plugin = plugin.name(), error = %err, "volume teardown failed");
                }
            }
        }
    }
}

/// `<pod dir>/volumes/<plugin>/<name>` directory names.
fn orphan_volume_names(volumes_dir: &Path) -> Vec<String> {
    let mut names = Vec::new();
    for plugin_dir in std::fs::read_dir(volumes_dir)
        .into_iter()
        .flatten()
        .flatten()
    {
        for vol in std::fs::read_dir(plugin_dir.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            names.push(vol.file_name().to_string_lossy().into_owned());
        }
    }
    names
}

impl PodWorker {
    /// The container's volume mounts for the runtime (see [`container_mounts`]), subPaths
    /// bind-mounted below the pod directory.
    pub(super) fn container_mounts(
        &self,
        pod: &Pod,
        container: &Container,
        volumes: &BTreeMap<String, MountedVolume>,
        env: &[KeyValue],
    ) -> Result<Vec<Mount>, String> {
        let pod_dir = self.pod_dir();
        let sub_paths = SubPathMounts {
            mounter: self.ctx.mounter.as_ref(),
            pod_dir: &pod_dir,
        };
        container_mounts(pod, container, volumes, env, &sub_paths)
    }
}

/// The container's volume mounts, resolved to host paths. `env` is the container's
/// environment, which `subPathExpr` expands from. `Err` is the message the container waits
/// with (`CreateContainerConfigError`).
///
/// A `subPath` (or expanded `subPathExpr`) must be relative without `..`; what is missing of
/// it is created as directories with the mode of the volume's root, one `mkdirat` at a time
/// below a descriptor of the volume so that no link is followed; it must not leave the
/// volume. As the reference does, the path is then opened component by component without
/// following links (each step checked to stay inside the volume), the opened descriptor
/// (`/proc/<pid>/fd/<n>`) is bind-mounted at `<pod dir>/volume-subpaths/<volume>/<container>/
/// <mount index>`, and that path is what the runtime mounts: a link that another container
/// swaps in after the check changes nothing, since what was checked is what is mounted.
pub(super) fn container_mounts(
    pod: &Pod,
    container: &Container,
    volumes: &BTreeMap<String, MountedVolume>,
    env: &[KeyValue],
    sub_paths: &SubPathMounts<'_>,
) -> Result<Vec<Mount>, String> {
    let privileged = container
        .security_context
        .as_ref()
        .and_then(|s| s.privileged)
        .unwrap_or(false);
    let default_spec = k8s_openapi::api::core::v1::PodSpec::default();
    let path = super::spec::container_field_path(
        pod.spec.as_ref().unwrap_or(&default_spec),
        &container.name,
    );
    let mut mounts = Vec::new();
    for (i, vm) in container.volume_mounts.iter().flatten().enumerate() {
        let field = format!("{path}.volumeMounts[{i}]");
        let Some(volume) = volumes.get(&vm.name) else {
            return Err(format!(
                "cannot find volume {:?} to mount into container {:?}",
                vm.name, container.name
            ));
        };
        if volume.block_device.is_some() {
            // The reference has no mounter for a block volume and fails the same way.
            return Err(format!(
                "cannot find volume {:?} to mount into container {:?} (pod {:?}, {field}: the volume has volumeMode Block; use volumeDevices)",
                vm.name,
                container.name,
                pod_ref(pod),
            ));
        }
        let propagation = match vm.mount_propagation.as_deref() {
            None | Some("None") => MountPropagation::Private,
            Some("HostToContainer") => MountPropagation::HostToContainer,
            Some("Bidirectional") if privileged => MountPropagation::Bidirectional,
            Some("Bidirectional") => {
                return Err(format!(
                    "{field}.mountPropagation: Forbidden: Bidirectional mount propagation is available only to privileged containers"
                ));
            }
            Some(other) => return Err(format!("invalid MountPropagation mode: {other:?}")),
        };
        let host_path = match sub_path(vm, env)? {
            None => volume.host_path.clone(),
            Some(sub) => {
                let target = SubPathTarget {
                    volume: &vm.name,
                    container: &container.name,
                    index: i,
                };
                prepare_sub_path(sub_paths, &volume.host_path, &sub, &target)?
            }
        };
        mounts.push(Mount {
            container_path: vm.mount_path.clone(),
            host_path: host_path.to_string_lossy().into_owned(),
            readonly: vm.read_only.unwrap_or(false) || volume.read_only,
            propagation,
        });
    }
    Ok(mounts)
}

/// `namespace/name` of a pod, for messages.
fn pod_ref(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

/// The container's `volumeDevices` as runtime devices, as the reference's
/// `makeBlockVolumes`: each names a block volume of the pod (one whose plugin reported a
/// [`MountedVolume::block_device`]), which the runtime exposes at `devicePath` with the
/// permissions `mrw`, or `r` when the volume is read-only. `Err` is the message the
/// container waits with (`CreateContainerConfigError`): the reference's wording, with the
/// pod and the field added.
pub(super) fn container_devices(
    pod: &Pod,
    container: &Container,
    volumes: &BTreeMap<String, MountedVolume>,
) -> Result<Vec<Device>, String> {
    let default_spec = k8s_openapi::api::core::v1::PodSpec::default();
    let path = super::spec::container_field_path(
        pod.spec.as_ref().unwrap_or(&default_spec),
        &container.name,
    );
    let mut devices = Vec::new();
    for (i, vd) in container.volume_devices.iter().flatten().enumerate() {
        let field = format!("{path}.volumeDevices[{i}]");
        if !Path::new(&vd.device_path).is_absolute() {
            return Err(format!(
                "error DevicePath `{}` must be an absolute path",
                vd.device_path
            ));
        }
        let missing = |why: &str| {
            format!(
                "cannot find volume {:?} to pass into container {:?} (pod {:?}, {field}: {why})",
                vd.name,
                container.name,
                pod_ref(pod),
            )
        };
        let Some(volume) = volumes.get(&vd.name) else {
            return Err(missing("no volume of that name in the pod"));
        };
        let Some(host_path) = &volume.block_device else {
            return Err(missing(
                "the volume is not a block volume (volumeMode Block)",
            ));
        };
        devices.push(Device {
            container_path: vd.device_path.clone(),
            host_path: host_path.to_string_lossy().into_owned(),
            permissions: if volume.read_only { "r" } else { "mrw" }.to_string(),
        });
    }
    Ok(devices)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{PermissionsExt, symlink};
    use std::path::PathBuf;

    use k8s_openapi::api::core::v1::{PodSpec, SecurityContext, VolumeMount};

    use super::super::sub_paths::{SUBPATH_DIR, safe_open};
    use super::*;
    use crate::volume::{FakeMounter, HostMounter, Mounter};

    fn pod(container: Container) -> Pod {
        Pod {
            spec: Some(PodSpec {
                containers: vec![container],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn container(mounts: Vec<VolumeMount>, privileged: bool) -> Container {
        Container {
            name: "app".into(),
            volume_mounts: Some(mounts),
            security_context: privileged.then(|| SecurityContext {
                privileged: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn mount(name: &str, path: &str) -> VolumeMount {
        VolumeMount {
            name: name.into(),
            mount_path: path.into(),
            ..Default::default()
        }
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<KeyValue> {
        pairs
            .iter()
            .map(|(k, v)| KeyValue {
                key: k.to_string(),
                value: v.to_string(),
            })
            .collect()
    }

    /// A volume `data` (mode 2775) and a pod directory, both in a temp dir.
    struct Vol {
        _root: tempfile::TempDir,
        dir: PathBuf,
        pod_dir: PathBuf,
        volumes: BTreeMap<String, MountedVolume>,
        mounter: FakeMounter,
    }

    fn volume() -> Vol {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("vol");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o2775)).unwrap();
        let pod_dir = root.path().join("pod");
        std::fs::create_dir(&pod_dir).unwrap();
        let volumes = BTreeMap::from([(
            "data".to_string(),
            MountedVolume {
                host_path: dir.clone(),
                read_only: false,
                size_limit_bytes: None,
                block_device: None,
            },
        )]);
        let dir = std::fs::canonicalize(&dir).unwrap();
        Vol {
            _root: root,
            dir,
            pod_dir,
            volumes,
            mounter: FakeMounter::new(),
        }
    }

    impl Vol {
        fn mounts_with(
            &self,
            mounter: &dyn Mounter,
            vms: Vec<VolumeMount>,
            privileged: bool,
            e: &[(&str, &str)],
        ) -> Result<Vec<Mount>, String> {
            let c = container(vms, privileged);
            let sub_paths = SubPathMounts {
                mounter,
                pod_dir: &self.pod_dir,
            };
            container_mounts(&pod(c.clone()), &c, &self.volumes, &env(e), &sub_paths)
        }

        fn mounts(
            &self,
            vms: Vec<VolumeMount>,
            privileged: bool,
            e: &[(&str, &str)],
        ) -> Result<Vec<Mount>, String> {
            self.mounts_with(&self.mounter, vms, privileged, e)
        }

        /// `<pod dir>/volume-subpaths/data/app/<index>`.
        fn target(&self, index: usize) -> PathBuf {
            self.pod_dir
                .join("volume-subpaths/data/app")
                .join(index.to_string())
        }

        /// What the fake bound at the target of mount `index`.
        fn bound(&self, index: usize) -> Option<PathBuf> {
            self.mounter.binds().get(&self.target(index)).cloned()
        }
    }

    fn sub(path: &str, mount_path: &str) -> VolumeMount {
        VolumeMount {
            sub_path: Some(path.into()),
            ..mount("data", mount_path)
        }
    }

    #[test]
    fn sub_path_is_created_with_the_roots_mode_and_bind_mounted() {
        let v = volume();
        let m = v
            .mounts(
                vec![VolumeMount {
                    read_only: Some(true),
                    ..sub("a/b", "/data")
                }],
                false,
                &[],
            )
            .unwrap();
        // The runtime gets the bind target, not the volume's path.
        assert_eq!(m[0].host_path, v.target(0).to_string_lossy());
        assert_eq!(v.bound(0), Some(v.dir.join("a/b")));
        assert!(v.target(0).is_dir());
        assert!(m[0].readonly);
        assert_eq!(m[0].propagation, MountPropagation::Private);
        for made in ["a", "a/b"] {
            let mode = std::fs::metadata(v.dir.join(made))
                .unwrap()
                .permissions()
                .mode()
                & 0o7777;
            assert_eq!(mode, 0o2775, "{made}");
        }
        // An existing file is bound onto a file, at the index of its mount.
        std::fs::write(v.dir.join("file"), "x").unwrap();
        let m = v
            .mounts(vec![mount("data", "/whole"), sub("file", "/f")], false, &[])
            .unwrap();
        assert_eq!(m[0].host_path, v.dir.to_string_lossy(), "no subPath");
        assert_eq!(m[1].host_path, v.target(1).to_string_lossy());
        assert_eq!(v.bound(1), Some(v.dir.join("file")));
        assert!(v.target(1).is_file());
    }

    #[test]
    fn a_bind_of_the_same_file_is_kept_and_a_stale_one_replaced() {
        let v = volume();
        std::fs::create_dir(v.dir.join("a")).unwrap();
        v.mounts(vec![sub("a", "/a")], false, &[]).unwrap();
        assert_eq!(v.bound(0), Some(v.dir.join("a")));
        // A fake bind leaves the target an empty directory of its own, so the same-file
        // check sees another file: the bind is replaced (unmounted, bound again).
        std::fs::create_dir(v.dir.join("b")).unwrap();
        let m = v.mounts(vec![sub("b", "/b")], false, &[]).unwrap();
        assert_eq!(m[0].host_path, v.target(0).to_string_lossy());
        assert_eq!(v.bound(0), Some(v.dir.join("b")));
        assert_eq!(v.mounter.unmounted(), vec![v.target(0)]);
        // A file where a directory was bound: the target changes kind.
        std::fs::write(v.dir.join("f"), "x").unwrap();
        v.mounts(vec![sub("f", "/f")], false, &[]).unwrap();
        assert!(v.target(0).is_file());
        assert_eq!(v.bound(0), Some(v.dir.join("f")));
    }

    #[test]
    fn clean_sub_paths_unmounts_and_removes_everything() {
        let v = volume();
        std::fs::write(v.dir.join("f"), "x").unwrap();
        v.mounts(vec![sub("a", "/a"), sub("f", "/f")], false, &[])
            .unwrap();
        assert_eq!(v.mounter.binds().len(), 2);
        assert_eq!(sub_path_volume_names(&v.pod_dir), ["data"]);
        clean_sub_paths(&v.mounter, &v.pod_dir, "data").unwrap();
        assert!(v.mounter.binds().is_empty());
        assert!(!v.pod_dir.join(SUBPATH_DIR).exists());
        // The volume's own files are untouched.
        assert!(v.dir.join("a").is_dir() && v.dir.join("f").is_file());
        // Nothing to clean is fine.
        clean_sub_paths(&v.mounter, &v.pod_dir, "data").unwrap();
    }

    #[test]
    fn sub_path_checks_as_the_reference() {
        let v = volume();
        let err = |sub_path: &str| v.mounts(vec![sub(sub_path, "/d")], false, &[]).unwrap_err();
        assert_eq!(
            err("/etc"),
            "error SubPath `/etc` must not be an absolute path"
        );
        assert_eq!(
            err("a/../../x"),
            "unable to provision SubPath `a/../../x`: must not contain '..'"
        );
        // A link inside the volume that points out of it.
        symlink("/etc", v.dir.join("out")).unwrap();
        assert_eq!(
            err("out"),
            "failed to prepare subPath for volumeMount \"data\" of container \"app\""
        );
        // ... even further down, where the missing part would be created outside.
        assert_eq!(
            err("out/kubelet-subpath-test"),
            "failed to create subPath directory for volumeMount \"data\" of container \"app\""
        );
        assert!(!Path::new("/etc/kubelet-subpath-test").exists());
        // A link that stays inside is fine: the resolved directory is bound.
        std::fs::create_dir(v.dir.join("real")).unwrap();
        symlink("real", v.dir.join("inside")).unwrap();
        v.mounts(vec![sub("inside", "/d")], false, &[]).unwrap();
        assert_eq!(v.bound(0), Some(v.dir.join("real")));
        // Below a file nothing can be opened.
        std::fs::write(v.dir.join("plain"), "x").unwrap();
        assert_eq!(
            err("plain/x"),
            "failed to prepare subPath for volumeMount \"data\" of container \"app\""
        );
        assert!(v.mounter.binds().len() <= 1, "no bind for a refused path");
    }

    #[test]
    fn safe_open_refuses_a_link_swapped_in_after_resolution() {
        let v = volume();
        std::fs::create_dir_all(v.dir.join("a/b")).unwrap();
        // Resolved while `a` was a directory; then `a` became a link out of the volume.
        let resolved = v.dir.join("a/b");
        std::fs::rename(v.dir.join("a"), v.dir.join("moved")).unwrap();
        symlink("/etc", v.dir.join("a")).unwrap();
        let err = safe_open(&resolved, &v.dir).unwrap_err().to_string();
        assert!(err.starts_with("unexpected symlink found"), "{err}");
        // A link as the last component is opened as the link itself, and refused.
        symlink("/etc", v.dir.join("last")).unwrap();
        let err = safe_open(&v.dir.join("last"), &v.dir)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("unexpected symlink found"), "{err}");
        // Outside the base at all.
        assert!(safe_open(Path::new("/etc"), &v.dir).is_err());
        // A plain path opens.
        assert!(safe_open(&v.dir.join("moved/b"), &v.dir).is_ok());
    }

    /// With real bind mounts (root only): the container's path shows the volume's file, a
    /// link escaping the volume is refused with the reference's message and nothing is
    /// mounted for it, a link inside works, and cleaning up unmounts everything.
    #[test]
    fn real_bind_mounts_of_sub_paths() {
        if !nix::unistd::geteuid().is_root() {
            assert_ne!(
                std::env::var("KUBELET_TEST_REQUIRE_ROOT").as_deref(),
                Ok("1"),
                "KUBELET_TEST_REQUIRE_ROOT=1 but not root"
            );
            eprintln!("SKIPPED: bind mounts need root");
            return;
        }
        let v = volume();
        struct Unmount(PathBuf);
        impl Drop for Unmount {
            fn drop(&mut self) {
                // Whatever failed, nothing stays mounted below the temp dir.
                for name in sub_path_volume_names(&self.0) {
                    let _ = clean_sub_paths(&HostMounter, &self.0, &name);
                }
            }
        }
        let _guard = Unmount(v.pod_dir.clone());
        std::fs::create_dir(v.dir.join("real")).unwrap();
        std::fs::write(v.dir.join("real/greeting"), "hello").unwrap();
        symlink("real", v.dir.join("inside")).unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "host").unwrap();
        symlink(outside.path(), v.dir.join("escape")).unwrap();

        let err = v
            .mounts_with(&HostMounter, vec![sub("escape", "/e")], false, &[])
            .unwrap_err();
        assert_eq!(
            err,
            "failed to prepare subPath for volumeMount \"data\" of container \"app\""
        );
        assert!(!HostMounter.is_mount_point(&v.target(0)).unwrap());

        let m = v
            .mounts_with(
                &HostMounter,
                vec![sub("inside", "/d"), sub("real/greeting", "/g")],
                false,
                &[],
            )
            .unwrap();
        assert!(HostMounter.is_mount_point(&v.target(0)).unwrap());
        assert_eq!(
            std::fs::read_to_string(Path::new(&m[0].host_path).join("greeting")).unwrap(),
            "hello"
        );
        assert_eq!(std::fs::read_to_string(&m[1].host_path).unwrap(), "hello");
        // Swapping the link for one out of the volume does not change the bound directory.
        std::fs::remove_file(v.dir.join("inside")).unwrap();
        symlink(outside.path(), v.dir.join("inside")).unwrap();
        assert!(Path::new(&m[0].host_path).join("greeting").is_file());
        assert!(!Path::new(&m[0].host_path).join("secret").exists());
        // Preparing again (a container restart) now refuses the escaping link, and the
        // old bind is not reused for it.
        let err = v
            .mounts_with(&HostMounter, vec![sub("inside", "/d")], false, &[])
            .unwrap_err();
        assert_eq!(
            err,
            "failed to prepare subPath for volumeMount \"data\" of container \"app\""
        );

        clean_sub_paths(&HostMounter, &v.pod_dir, "data").unwrap();
        assert!(!v.pod_dir.join(SUBPATH_DIR).exists());
        assert_eq!(
            std::fs::read_to_string(v.dir.join("real/greeting")).unwrap(),
            "hello",
            "the volume's files survive the cleanup"
        );
        assert_eq!(
            std::fs::read_to_string(outside.path().join("secret")).unwrap(),
            "host"
        );
    }

    #[test]
    fn sub_path_expr_expands_the_environment() {
        let v = volume();
        v.mounts(
            vec![VolumeMount {
                sub_path_expr: Some("pods/$(POD_NAME)/$$(LITERAL)".into()),
                ..mount("data", "/d")
            }],
            false,
            &[("POD_NAME", "web-0")],
        )
        .unwrap();
        assert_eq!(v.bound(0), Some(v.dir.join("pods/web-0/$(LITERAL)")));
        let err = v
            .mounts(
                vec![VolumeMount {
                    sub_path_expr: Some("$(B)/$(A)/$(EMPTY)".into()),
                    ..mount("data", "/d")
                }],
                false,
                &[("EMPTY", "")],
            )
            .unwrap_err();
        assert_eq!(err, "missing value for A, B, EMPTY");
        let err = v
            .mounts(
                vec![VolumeMount {
                    sub_path_expr: Some("$(ABS)".into()),
                    ..mount("data", "/d")
                }],
                false,
                &[("ABS", "/etc")],
            )
            .unwrap_err();
        assert_eq!(err, "error SubPath `/etc` must not be an absolute path");
        let err = v
            .mounts(
                vec![VolumeMount {
                    sub_path: Some("a".into()),
                    sub_path_expr: Some("b".into()),
                    ..mount("data", "/d")
                }],
                false,
                &[],
            )
            .unwrap_err();
        assert!(err.contains("mutually exclusive"), "{err}");
    }

    #[test]
    fn propagation_and_read_only() {
        let v = volume();
        let with = |p: &str, privileged: bool| {
            v.mounts(
                vec![VolumeMount {
                    mount_propagation: Some(p.into()),
                    ..mount("data", "/d")
                }],
                privileged,
                &[],
            )
        };
        assert_eq!(
            with("None", false).unwrap()[0].propagation,
            MountPropagation::Private
        );
        assert_eq!(
            with("HostToContainer", false).unwrap()[0].propagation,
            MountPropagation::HostToContainer
        );
        assert_eq!(
            with("Bidirectional", true).unwrap()[0].propagation,
            MountPropagation::Bidirectional
        );
        assert_eq!(
            with("Bidirectional", false).unwrap_err(),
            "spec.containers[0].volumeMounts[0].mountPropagation: Forbidden: Bidirectional mount propagation is available only to privileged containers"
        );
        assert_eq!(
            with("Sideways", false).unwrap_err(),
            "invalid MountPropagation mode: \"Sideways\""
        );
        // A read-only volume is mounted read-only whatever the mount says.
        let mut ro = v.volumes.clone();
        if let Some(m) = ro.get_mut("data") {
            m.read_only = true;
        }
        let c = container(vec![mount("data", "/d")], false);
        let sub_paths = SubPathMounts {
            mounter: &v.mounter,
            pod_dir: &v.pod_dir,
        };
        let m = container_mounts(&pod(c.clone()), &c, &ro, &[], &sub_paths).unwrap();
        assert!(m[0].readonly);
        let m = v.mounts(vec![mount("data", "/d")], false, &[]).unwrap();
        assert!(!m[0].readonly);
        let err = v.mounts(vec![mount("nope", "/d")], false, &[]).unwrap_err();
        assert_eq!(
            err,
            "cannot find volume \"nope\" to mount into container \"app\""
        );
    }

    fn block_volumes() -> BTreeMap<String, MountedVolume> {
        let link = PathBuf::from("/var/lib/kubelet/pods/u/volumeDevices/kubernetes.io~csi/pv-1");
        BTreeMap::from([
            (
                "raw".to_string(),
                MountedVolume {
                    host_path: link.clone(),
                    block_device: Some(link.clone()),
                    ..Default::default()
                },
            ),
            (
                "raw-ro".to_string(),
                MountedVolume {
                    host_path: link.clone(),
                    read_only: true,
                    block_device: Some(link),
                    ..Default::default()
                },
            ),
            (
                "files".to_string(),
                MountedVolume {
                    host_path: PathBuf::from("/var/lib/kubelet/pods/u/volumes/x/files"),
                    ..Default::default()
                },
            ),
        ])
    }

    fn device_container(devices: &[(&str, &str)]) -> Container {
        Container {
            name: "app".into(),
            volume_devices: Some(
                devices
                    .iter()
                    .map(|(name, path)| k8s_openapi::api::core::v1::VolumeDevice {
                        name: name.to_string(),
                        device_path: path.to_string(),
                    })
                    .collect(),
            ),
            ..Default::default()
        }
    }

    fn named_pod(c: Container) -> Pod {
        let mut p = pod(c);
        p.metadata.name = Some("p".into());
        p.metadata.namespace = Some("ns".into());
        p
    }

    #[test]
    fn volume_devices_become_runtime_devices() {
        let c = device_container(&[("raw", "/dev/xvda"), ("raw-ro", "/dev/xvdb")]);
        let devices = container_devices(&named_pod(c.clone()), &c, &block_volumes()).unwrap();
        assert_eq!(
            devices,
            vec![
                Device {
                    container_path: "/dev/xvda".into(),
                    host_path: "/var/lib/kubelet/pods/u/volumeDevices/kubernetes.io~csi/pv-1"
                        .into(),
                    permissions: "mrw".into(),
                },
                Device {
                    container_path: "/dev/xvdb".into(),
                    host_path: "/var/lib/kubelet/pods/u/volumeDevices/kubernetes.io~csi/pv-1"
                        .into(),
                    permissions: "r".into(),
                },
            ]
        );
        // No volumeDevices: no devices.
        let plain = container(vec![], false);
        assert!(
            container_devices(&named_pod(plain.clone()), &plain, &block_volumes())
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn bad_volume_devices_are_refused_naming_pod_container_and_field() {
        let check = |devices: &[(&str, &str)]| {
            let c = device_container(devices);
            container_devices(&named_pod(c.clone()), &c, &block_volumes()).unwrap_err()
        };
        assert_eq!(
            check(&[("raw", "/dev/xvda"), ("files", "/dev/xvdb")]),
            r#"cannot find volume "files" to pass into container "app" (pod "ns/p", spec.containers[0].volumeDevices[1]: the volume is not a block volume (volumeMode Block))"#
        );
        assert_eq!(
            check(&[("gone", "/dev/xvda")]),
            r#"cannot find volume "gone" to pass into container "app" (pod "ns/p", spec.containers[0].volumeDevices[0]: no volume of that name in the pod)"#
        );
        assert_eq!(
            check(&[("raw", "dev/xvda")]),
            "error DevicePath `dev/xvda` must be an absolute path"
        );
    }

    #[test]
    fn a_block_volume_is_never_mounted_as_a_directory() {
        let root = tempfile::tempdir().unwrap();
        let mounter = FakeMounter::default();
        let sub_paths = SubPathMounts {
            mounter: &mounter,
            pod_dir: root.path(),
        };
        let c = container(vec![mount("raw", "/data")], false);
        let err = container_mounts(&named_pod(c.clone()), &c, &block_volumes(), &[], &sub_paths)
            .unwrap_err();
        assert_eq!(
            err,
            r#"cannot find volume "raw" to mount into container "app" (pod "ns/p", spec.containers[0].volumeMounts[0]: the volume has volumeMode Block; use volumeDevices)"#
        );
        // A filesystem volume of the same pod still mounts.
        let c = container(vec![mount("files", "/data")], false);
        let m =
            container_mounts(&named_pod(c.clone()), &c, &block_volumes(), &[], &sub_paths).unwrap();
        assert_eq!(m.len(), 1);
    }
}
