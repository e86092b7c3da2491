//! Setting up and tearing down a pod's volumes through the volume plugins, and turning a
//! container's `volumeMounts` into the runtime's mounts (`subPath`, `subPathExpr`,
//! `readOnly`, `mountPropagation`), with the reference's checks and messages.
//!
//! Every pod sync calls [`PodWorker::setup_volumes`], so volumes made of API objects are
//! brought up to date at least once per sync period.

use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod, VolumeMount};
use tracing::{Instrument, info_span, warn};

use super::worker::PodWorker;
use crate::error::VolumeError;
use crate::runtime::{KeyValue, Mount, MountPropagation};
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
    /// directory left below the pod directory, offered to each plugin.
    pub(super) async fn teardown_volumes(&self, pod: Option<&Pod>) {
        let pod_dir = self.pod_dir();
        let names: Vec<String> = match pod {
            Some(p) => p
                .spec
                .as_ref()
                .and_then(|s| s.volumes.as_ref())
                .map(|vs| vs.iter().map(|v| v.name.clone()).collect())
                .unwrap_or_default(),
            None => orphan_volume_names(&pod_dir.join("volumes")),
        };
        for name in names {
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

/// The container's volume mounts, resolved to host paths. `env` is the container's
/// environment, which `subPathExpr` expands from. `Err` is the message the container waits
/// with (`CreateContainerConfigError`).
///
/// A `subPath` (or expanded `subPathExpr`) must be relative without `..`; what is missing of
/// it is created as directories with the mode of the volume's root; it must not leave the
/// volume through symbolic links. Unlike the reference, which bind-mounts the checked path
/// to a directory of its own so that a container cannot swap a symbolic link in between,
/// this kubelet resolves the path and hands the resolved path to the runtime: a link
/// changed by another container between the check and the container's start is not caught.
pub(super) fn container_mounts(
    pod: &Pod,
    container: &Container,
    volumes: &BTreeMap<String, MountedVolume>,
    env: &[KeyValue],
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
            Some(sub) => resolve_sub_path(&volume.host_path, &sub, vm, &container.name)?,
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

/// The mount's sub-path: `subPath`, or `subPathExpr` expanded from the environment (every
/// variable it names must be set and not empty, as the reference requires), checked.
fn sub_path(vm: &VolumeMount, env: &[KeyValue]) -> Result<Option<String>, String> {
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

/// The host path of `sub` below the volume at `root`, created if missing (directories with
/// the root's mode), refused if it resolves outside the volume.
fn resolve_sub_path(
    root: &Path,
    sub: &str,
    vm: &VolumeMount,
    container: &str,
) -> Result<PathBuf, String> {
    match walk_sub_path(root, sub) {
        Ok(path) => Ok(path),
        Err(SubPathError::Create(err)) => {
            warn!(volume = %vm.name, %container, sub_path = sub, error = %err, "cannot create subPath directory");
            Err(format!(
                "failed to create subPath directory for volumeMount {:?} of container {:?}",
                vm.name, container
            ))
        }
        Err(SubPathError::Prepare(err)) => {
            // As the reference, the details (host paths) go to the log, not to the pod.
            warn!(volume = %vm.name, %container, sub_path = sub, error = %err, "cannot prepare subPath");
            Err(format!(
                "failed to prepare subPath for volumeMount {:?} of container {:?}",
                vm.name, container
            ))
        }
    }
}

enum SubPathError {
    Create(io::Error),
    Prepare(String),
}

/// Walk `sub` below `root` component by component without ever leaving it: an existing
/// component is resolved (symbolic links followed) and must stay below the root; a missing
/// one is created as a directory. Returns the resolved path.
fn walk_sub_path(root: &Path, sub: &str) -> Result<PathBuf, SubPathError> {
    let root = std::fs::canonicalize(root)
        .map_err(|e| SubPathError::Prepare(format!("{}: {e}", root.display())))?;
    let root_mode = std::fs::metadata(&root)
        .map_err(|e| SubPathError::Prepare(format!("{}: {e}", root.display())))?
        .permissions()
        .mode()
        & 0o7777;
    let mut current = root.clone();
    for component in Path::new(sub).components() {
        let Component::Normal(name) = component else {
            continue;
        };
        let next = current.join(name);
        match std::fs::symlink_metadata(&next) {
            Ok(_) => {
                let resolved = std::fs::canonicalize(&next)
                    .map_err(|e| SubPathError::Prepare(format!("{}: {e}", next.display())))?;
                if !resolved.starts_with(&root) {
                    return Err(SubPathError::Prepare(format!(
                        "subpath {:?} resolves to {}, outside the volume {}",
                        sub,
                        resolved.display(),
                        root.display()
                    )));
                }
                current = resolved;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                if !current.is_dir() {
                    return Err(SubPathError::Create(io::Error::new(
                        io::ErrorKind::NotADirectory,
                        format!("{} is not a directory", current.display()),
                    )));
                }
                match std::fs::create_dir(&next) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(SubPathError::Create(e)),
                }
                std::fs::set_permissions(&next, std::fs::Permissions::from_mode(root_mode))
                    .map_err(SubPathError::Create)?;
                current = next;
            }
            Err(e) => {
                return Err(SubPathError::Prepare(format!("{}: {e}", next.display())));
            }
        }
    }
    Ok(current)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use k8s_openapi::api::core::v1::{PodSpec, SecurityContext};

    use super::*;

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

    struct Vol {
        _root: tempfile::TempDir,
        dir: PathBuf,
        volumes: BTreeMap<String, MountedVolume>,
    }

    fn volume() -> Vol {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("vol");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o2775)).unwrap();
        let volumes = BTreeMap::from([(
            "data".to_string(),
            MountedVolume {
                host_path: dir.clone(),
                read_only: false,
                size_limit_bytes: None,
            },
        )]);
        let dir = std::fs::canonicalize(&dir).unwrap();
        Vol {
            _root: root,
            dir,
            volumes,
        }
    }

    fn mounts_of(
        vms: Vec<VolumeMount>,
        privileged: bool,
        v: &Vol,
        e: &[(&str, &str)],
    ) -> Result<Vec<Mount>, String> {
        let c = container(vms, privileged);
        container_mounts(&pod(c.clone()), &c, &v.volumes, &env(e))
    }

    #[test]
    fn sub_path_is_created_with_the_roots_mode_and_resolved() {
        let v = volume();
        let m = mounts_of(
            vec![VolumeMount {
                sub_path: Some("a/b".into()),
                read_only: Some(true),
                ..mount("data", "/data")
            }],
            false,
            &v,
            &[],
        )
        .unwrap();
        assert_eq!(m[0].host_path, v.dir.join("a/b").to_string_lossy());
        assert!(m[0].readonly);
        assert_eq!(m[0].propagation, MountPropagation::Private);
        let mode = std::fs::metadata(v.dir.join("a/b"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777;
        assert_eq!(mode, 0o2775);
        // An existing file is mounted as it is.
        std::fs::write(v.dir.join("file"), "x").unwrap();
        let m = mounts_of(
            vec![VolumeMount {
                sub_path: Some("file".into()),
                ..mount("data", "/f")
            }],
            false,
            &v,
            &[],
        )
        .unwrap();
        assert_eq!(m[0].host_path, v.dir.join("file").to_string_lossy());
    }

    #[test]
    fn sub_path_checks_as_the_reference() {
        let v = volume();
        let err = |sub: &str| {
            mounts_of(
                vec![VolumeMount {
                    sub_path: Some(sub.into()),
                    ..mount("data", "/d")
                }],
                false,
                &v,
                &[],
            )
            .unwrap_err()
        };
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
        // ... even further down, and nothing gets created outside.
        assert_eq!(
            err("out/kubelet-subpath-test"),
            "failed to prepare subPath for volumeMount \"data\" of container \"app\""
        );
        assert!(!Path::new("/etc/kubelet-subpath-test").exists());
        // A link that stays inside is fine.
        std::fs::create_dir(v.dir.join("real")).unwrap();
        symlink("real", v.dir.join("inside")).unwrap();
        let m = mounts_of(
            vec![VolumeMount {
                sub_path: Some("inside".into()),
                ..mount("data", "/d")
            }],
            false,
            &v,
            &[],
        )
        .unwrap();
        assert_eq!(m[0].host_path, v.dir.join("real").to_string_lossy());
        // Below a file nothing can be created.
        std::fs::write(v.dir.join("plain"), "x").unwrap();
        assert_eq!(
            err("plain/x"),
            "failed to create subPath directory for volumeMount \"data\" of container \"app\""
        );
    }

    #[test]
    fn sub_path_expr_expands_the_environment() {
        let v = volume();
        let m = mounts_of(
            vec![VolumeMount {
                sub_path_expr: Some("pods/$(POD_NAME)/$$(LITERAL)".into()),
                ..mount("data", "/d")
            }],
            false,
            &v,
            &[("POD_NAME", "web-0")],
        )
        .unwrap();
        assert_eq!(
            m[0].host_path,
            v.dir.join("pods/web-0/$(LITERAL)").to_string_lossy()
        );
        let err = mounts_of(
            vec![VolumeMount {
                sub_path_expr: Some("$(B)/$(A)/$(EMPTY)".into()),
                ..mount("data", "/d")
            }],
            false,
            &v,
            &[("EMPTY", "")],
        )
        .unwrap_err();
        assert_eq!(err, "missing value for A, B, EMPTY");
        let err = mounts_of(
            vec![VolumeMount {
                sub_path_expr: Some("$(ABS)".into()),
                ..mount("data", "/d")
            }],
            false,
            &v,
            &[("ABS", "/etc")],
        )
        .unwrap_err();
        assert_eq!(err, "error SubPath `/etc` must not be an absolute path");
        let err = mounts_of(
            vec![VolumeMount {
                sub_path: Some("a".into()),
                sub_path_expr: Some("b".into()),
                ..mount("data", "/d")
            }],
            false,
            &v,
            &[],
        )
        .unwrap_err();
        assert!(err.contains("mutually exclusive"), "{err}");
    }

    #[test]
    fn propagation_and_read_only() {
        let v = volume();
        let with = |p: &str, privileged: bool| {
            mounts_of(
                vec![VolumeMount {
                    mount_propagation: Some(p.into()),
                    ..mount("data", "/d")
                }],
                privileged,
                &v,
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
        let m = container_mounts(&pod(c.clone()), &c, &ro, &[]).unwrap();
        assert!(m[0].readonly);
        let m = mounts_of(vec![mount("data", "/d")], false, &v, &[]).unwrap();
        assert!(!m[0].readonly);
        let err = mounts_of(vec![mount("nope", "/d")], false, &v, &[]).unwrap_err();
        assert_eq!(
            err,
            "cannot find volume \"nope\" to mount into container \"app\""
        );
    }
}
