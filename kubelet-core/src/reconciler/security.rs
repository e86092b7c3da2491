//! A pod's security settings as the runtime takes them: the container's effective security
//! context (container fields over the pod's), the image user and the `runAsNonRoot` check,
//! seccomp profiles, masked `/proc` paths, namespace modes, and the sandbox's own security
//! context. Pure functions, after the reference kubelet's `kuberuntime/security_context.go`,
//! `securitycontext/util.go`, `kuberuntime/helpers.go` (seccomp) and
//! `kuberuntime/kuberuntime_sandbox.go` (`generatePodSandboxLinuxConfig`).

use std::path::Path;

use k8s_openapi::api::core::v1::{
    Container, Pod, PodSecurityContext, PodSpec, SeccompProfile as ApiSeccompProfile,
    SecurityContext,
};

use crate::runtime::{
    Capabilities, ImageInfo, LinuxSecurityContext, NamespaceMode, PodSandboxConfig, SeccompProfile,
};

/// Paths the runtime masks in a container with `procMount: Default` (the reference's
/// `defaultMaskedPaths`, kept in step with the container runtimes' defaults).
pub const DEFAULT_MASKED_PATHS: [&str; 11] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths the runtime makes read-only with `procMount: Default` (`defaultReadonlyPaths`).
pub const DEFAULT_READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The user an image runs as, from the runtime's image status (the reference's
/// `getImageUser`): a UID, or a name when the image's user is not numeric. An image that
/// names no user runs as root (UID 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageUser {
    /// Numeric user.
    pub uid: Option<i64>,
    /// User name, when not numeric.
    pub username: String,
}

impl ImageUser {
    /// The user of an image as the runtime reports it.
    pub fn of(image: &ImageInfo) -> Self {
        if let Some(uid) = image.uid {
            return Self {
                uid: Some(uid),
                username: String::new(),
            };
        }
        if !image.username.is_empty() {
            return Self {
                uid: None,
                username: image.username.clone(),
            };
        }
        Self::root()
    }

    /// Root: what an image without a user runs as.
    pub fn root() -> Self {
        Self {
            uid: Some(0),
            username: String::new(),
        }
    }
}

/// The container's security context with the pod's fields filled in where the container
/// leaves them unset (the reference's `DetermineEffectiveSecurityContext`). `None` when
/// neither sets anything.
pub fn effective_security_context(
    spec: &PodSpec,
    container: &Container,
) -> Option<SecurityContext> {
    let psc = spec.security_context.as_ref();
    let csc = container.security_context.as_ref();
    if psc.is_none() && csc.is_none() {
        return None;
    }
    let mut effective = csc.cloned().unwrap_or_default();
    if let Some(p) = psc {
        effective.run_as_user = effective.run_as_user.or(p.run_as_user);
        effective.run_as_group = effective.run_as_group.or(p.run_as_group);
        effective.run_as_non_root = effective.run_as_non_root.or(p.run_as_non_root);
        if effective.se_linux_options.is_none() {
            effective.se_linux_options = p.se_linux_options.clone();
        }
        if effective.seccomp_profile.is_none() {
            effective.seccomp_profile = p.seccomp_profile.clone();
        }
    }
    Some(effective)
}

/// The reference's `format.Pod`: `name_namespace(uid)`.
fn format_pod(pod: &Pod) -> String {
    format!(
        "{}_{}({})",
        pod.metadata.name.as_deref().unwrap_or_default(),
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.uid.as_deref().unwrap_or_default()
    )
}

/// The reference's `verifyRunAsNonRoot`: with `runAsNonRoot`, a container may not run as
/// UID 0, neither by its `runAsUser` nor by its image's user, and an image whose user is a
/// name cannot be verified. `image` is `None` when the image user is not known (then only
/// the explicit `runAsUser` is checked). The messages are the reference's.
pub fn verify_run_as_non_root(
    pod: &Pod,
    container: &Container,
    image: Option<&ImageUser>,
) -> Result<(), String> {
    let default_spec = PodSpec::default();
    let spec = pod.spec.as_ref().unwrap_or(&default_spec);
    let Some(sc) = effective_security_context(spec, container) else {
        return Ok(());
    };
    if sc.run_as_non_root != Some(true) {
        return Ok(());
    }
    let pod_name = format_pod(pod);
    let name = &container.name;
    if let Some(uid) = sc.run_as_user {
        if uid == 0 {
            return Err(format!(
                "container's runAsUser breaks non-root policy (pod: {pod_name:?}, container: {name})"
            ));
        }
        return Ok(());
    }
    match image {
        Some(ImageUser { uid: Some(0), .. }) => Err(format!(
            "container has runAsNonRoot and image will run as root (pod: {pod_name:?}, container: {name})"
        )),
        Some(ImageUser {
            uid: None,
            username,
        }) if !username.is_empty() => Err(format!(
            "container has runAsNonRoot and image has non-numeric user ({username}), cannot verify user is non-root (pod: {pod_name:?}, container: {name})"
        )),
        _ => Ok(()),
    }
}

/// Namespace modes of a pod: network, PID, IPC (the reference's `NamespacesForPod`). The PID
/// namespace is the host's with `hostPID`, the pod's with `shareProcessNamespace`, else
/// one per container.
pub fn namespaces(spec: &PodSpec) -> (NamespaceMode, NamespaceMode, NamespaceMode) {
    let host = |flag: Option<bool>| {
        if flag.unwrap_or(false) {
            NamespaceMode::Node
        } else {
            NamespaceMode::Pod
        }
    };
    let pid = if spec.host_pid.unwrap_or(false) {
        NamespaceMode::Node
    } else if spec.share_process_namespace.unwrap_or(false) {
        NamespaceMode::Pod
    } else {
        NamespaceMode::Container
    };
    (host(spec.host_network), pid, host(spec.host_ipc))
}

/// The seccomp profile of one field (the reference's `fieldSeccompProfile`): a Localhost
/// profile is a file below `profile_root` (`<root-dir>/seccomp`).
fn field_seccomp_profile(
    profile: &ApiSeccompProfile,
    profile_root: &str,
    field: &str,
) -> Result<SeccompProfile, String> {
    match profile.type_.as_str() {
        "RuntimeDefault" => Ok(SeccompProfile::RuntimeDefault),
        "Localhost" => {
            let local = profile
                .localhost_profile
                .as_deref()
                .filter(|p| !p.is_empty())
                .ok_or_else(|| {
                    format!(
                        "{field}.localhostProfile: localhostProfile must be set if seccomp profile type is Localhost."
                    )
                })?;
            Ok(SeccompProfile::Localhost(
                Path::new(profile_root)
                    .join(local)
                    .to_string_lossy()
                    .into_owned(),
            ))
        }
        _ => Ok(SeccompProfile::Unconfined),
    }
}

/// The seccomp profile of a container (the reference's `getSeccompProfile`): the
/// container's field, else the pod's, else RuntimeDefault with `seccompDefault`, else
/// Unconfined.
pub fn seccomp_profile(
    spec: &PodSpec,
    container: &Container,
    path: &str,
    profile_root: &str,
    seccomp_default: bool,
) -> Result<SeccompProfile, String> {
    if let Some(p) = container
        .security_context
        .as_ref()
        .and_then(|c| c.seccomp_profile.as_ref())
    {
        return field_seccomp_profile(
            p,
            profile_root,
            &format!("{path}.securityContext.seccompProfile"),
        );
    }
    if let Some(p) = spec
        .security_context
        .as_ref()
        .and_then(|c| c.seccomp_profile.as_ref())
    {
        return field_seccomp_profile(p, profile_root, "spec.securityContext.seccompProfile");
    }
    Ok(if seccomp_default {
        SeccompProfile::RuntimeDefault
    } else {
        SeccompProfile::Unconfined
    })
}

/// fsGroup, then supplementalGroups, as the reference appends them.
fn pod_supplemental_groups(psc: Option<&PodSecurityContext>) -> Vec<i64> {
    let Some(psc) = psc else {
        return Vec::new();
    };
    psc.fs_group
        .into_iter()
        .chain(psc.supplemental_groups.iter().flatten().copied())
        .collect()
}

/// The container's Linux security context for the runtime (the reference's
/// `determineEffectiveSecurityContext`), without the image user (see [`apply_image_user`]).
///
/// `procMount`: Default sends the runtime [`DEFAULT_MASKED_PATHS`] and
/// [`DEFAULT_READONLY_PATHS`]; Unmasked sends both lists empty, which CRI runtimes read as
/// "mask nothing" (containerd since 1.5 applies the lists as given, so `/proc` is mounted
/// without masks). In a cluster the field reaches a kubelet only where the API server keeps
/// it, behind the ProcMountType feature gate (alpha and off by default in v1.28, the API
/// server the tests run); newer API servers also require `hostUsers: false` with it. This
/// kubelet honours the field whenever a pod carries it (a static pod, or an API server that
/// kept it); it creates no user namespaces.
pub fn container_security(
    spec: &PodSpec,
    container: &Container,
    path: &str,
    profile_root: &str,
    seccomp_default: bool,
) -> Result<LinuxSecurityContext, String> {
    let effective = effective_security_context(spec, container).unwrap_or_default();
    let (network, pid, ipc) = namespaces(spec);
    let unmasked = effective.proc_mount.as_deref() == Some("Unmasked");
    let (masked_paths, readonly_paths) = if unmasked {
        (Vec::new(), Vec::new())
    } else {
        (
            DEFAULT_MASKED_PATHS.map(String::from).to_vec(),
            DEFAULT_READONLY_PATHS.map(String::from).to_vec(),
        )
    };
    Ok(LinuxSecurityContext {
        run_as_user: effective.run_as_user,
        run_as_username: String::new(),
        run_as_group: effective.run_as_group,
        supplemental_groups: pod_supplemental_groups(spec.security_context.as_ref()),
        privileged: effective.privileged.unwrap_or(false),
        readonly_rootfs: effective.read_only_root_filesystem.unwrap_or(false),
        capabilities: effective.capabilities.as_ref().map(|caps| Capabilities {
            add: caps.add.clone().unwrap_or_default(),
            drop: caps.drop.clone().unwrap_or_default(),
        }),
        // The reference's `AddNoNewPrivileges`: only an explicit `false` sets it.
        no_new_privs: effective.allow_privilege_escalation == Some(false),
        namespace_network: network,
        namespace_pid: pid,
        namespace_ipc: ipc,
        seccomp: Some(seccomp_profile(
            spec,
            container,
            path,
            profile_root,
            seccomp_default,
        )?),
        masked_paths,
        readonly_paths,
    })
}

/// Complete a container's security context with its image's user, as the reference does
/// before it creates the container: `runAsNonRoot` checked against the image user, and the
/// image's UID (or user name) set as the user when the pod names none.
pub fn apply_image_user(
    security: &mut LinuxSecurityContext,
    pod: &Pod,
    container: &Container,
    image: &ImageUser,
) -> Result<(), String> {
    verify_run_as_non_root(pod, container, Some(image))?;
    if security.run_as_user.is_none() {
        match image.uid {
            Some(uid) => security.run_as_user = Some(uid),
            None => security.run_as_username = image.username.clone(),
        }
    }
    Ok(())
}

/// Fill the sandbox's own security context (the reference's
/// `generatePodSandboxLinuxConfig`): the pod's user and group, fsGroup and supplemental
/// groups, namespace modes, privileged when any container is, and always the runtime's
/// default seccomp profile, so that the pause process is confined whatever the containers
/// ask for.
pub fn sandbox_security(config: &mut PodSandboxConfig, spec: &PodSpec) {
    let psc = spec.security_context.as_ref();
    let (network, pid, ipc) = namespaces(spec);
    config.network = network;
    config.pid = pid;
    config.ipc = ipc;
    config.run_as_user = psc.and_then(|p| p.run_as_user);
    config.run_as_group = psc.and_then(|p| p.run_as_group);
    config.supplemental_groups = pod_supplemental_groups(psc);
    config.seccomp = Some(SeccompProfile::RuntimeDefault);
    config.sysctls = psc
        .and_then(|p| p.sysctls.as_ref())
        .map(|list| {
            list.iter()
                .map(|s| (s.name.clone(), s.value.clone()))
                .collect()
        })
        .unwrap_or_default();
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{Capabilities as ApiCapabilities, PodSpec, Sysctl};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn pod(psc: Option<PodSecurityContext>, csc: Option<SecurityContext>) -> (Pod, Container) {
        let container = Container {
            name: "app".into(),
            image: Some("busybox".into()),
            security_context: csc,
            ..Default::default()
        };
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("prod".into()),
                uid: Some("uid-1".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![container.clone()],
                security_context: psc,
                ..Default::default()
            }),
            ..Default::default()
        };
        (pod, container)
    }

    fn non_root(user: Option<i64>) -> Option<SecurityContext> {
        Some(SecurityContext {
            run_as_non_root: Some(true),
            run_as_user: user,
            ..Default::default()
        })
    }

    #[test]
    fn run_as_non_root_with_root_image_is_refused() {
        let (p, c) = pod(None, non_root(None));
        assert_eq!(
            verify_run_as_non_root(&p, &c, Some(&ImageUser::root())).unwrap_err(),
            "container has runAsNonRoot and image will run as root (pod: \"web_prod(uid-1)\", container: app)"
        );
        let named = ImageUser {
            uid: None,
            username: "nginx".into(),
        };
        assert_eq!(
            verify_run_as_non_root(&p, &c, Some(&named)).unwrap_err(),
            "container has runAsNonRoot and image has non-numeric user (nginx), cannot verify user is non-root (pod: \"web_prod(uid-1)\", container: app)"
        );
        let numeric = ImageUser {
            uid: Some(1000),
            username: String::new(),
        };
        assert_eq!(verify_run_as_non_root(&p, &c, Some(&numeric)), Ok(()));
    }

    #[test]
    fn run_as_non_root_with_explicit_user() {
        let (p, c) = pod(None, non_root(Some(0)));
        assert_eq!(
            verify_run_as_non_root(&p, &c, Some(&ImageUser::root())).unwrap_err(),
            "container's runAsUser breaks non-root policy (pod: \"web_prod(uid-1)\", container: app)"
        );
        // An explicit non-root UID wins over a root image.
        let (p, c) = pod(None, non_root(Some(1000)));
        assert_eq!(
            verify_run_as_non_root(&p, &c, Some(&ImageUser::root())),
            Ok(())
        );
        // The pod-level user and flag apply when the container sets none.
        let (p, c) = pod(
            Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(2000),
                ..Default::default()
            }),
            None,
        );
        assert_eq!(
            verify_run_as_non_root(&p, &c, Some(&ImageUser::root())),
            Ok(())
        );
        // The container may turn the pod's flag off.
        let (p, c) = pod(
            Some(PodSecurityContext {
                run_as_non_root: Some(true),
                ..Default::default()
            }),
            Some(SecurityContext {
                run_as_non_root: Some(false),
                ..Default::default()
            }),
        );
        assert_eq!(
            verify_run_as_non_root(&p, &c, Some(&ImageUser::root())),
            Ok(())
        );
    }

    #[test]
    fn image_user_fills_an_unset_user() {
        let (p, c) = pod(None, None);
        let mut sec = LinuxSecurityContext::default();
        let image = ImageUser::of(&ImageInfo {
            uid: Some(1000),
            ..Default::default()
        });
        apply_image_user(&mut sec, &p, &c, &image).unwrap();
        assert_eq!(sec.run_as_user, Some(1000));

        let mut sec = LinuxSecurityContext::default();
        let image = ImageUser::of(&ImageInfo {
            username: "www-data".into(),
            ..Default::default()
        });
        apply_image_user(&mut sec, &p, &c, &image).unwrap();
        assert_eq!(
            (sec.run_as_user, sec.run_as_username.as_str()),
            (None, "www-data")
        );

        // No user in the image: root, explicitly.
        let mut sec = LinuxSecurityContext::default();
        apply_image_user(&mut sec, &p, &c, &ImageUser::of(&ImageInfo::default())).unwrap();
        assert_eq!(sec.run_as_user, Some(0));

        // The pod's user is kept.
        let mut sec = LinuxSecurityContext {
            run_as_user: Some(42),
            ..Default::default()
        };
        apply_image_user(&mut sec, &p, &c, &ImageUser::root()).unwrap();
        assert_eq!(sec.run_as_user, Some(42));
    }

    #[test]
    fn container_fields_override_the_pods() {
        let (p, c) = pod(
            Some(PodSecurityContext {
                run_as_user: Some(1000),
                run_as_group: Some(3000),
                fs_group: Some(2000),
                supplemental_groups: Some(vec![4000, 5000]),
                ..Default::default()
            }),
            Some(SecurityContext {
                run_as_user: Some(1001),
                privileged: Some(true),
                read_only_root_filesystem: Some(true),
                allow_privilege_escalation: Some(false),
                capabilities: Some(ApiCapabilities {
                    add: Some(vec!["NET_ADMIN".into()]),
                    drop: Some(vec!["ALL".into()]),
                }),
                ..Default::default()
            }),
        );
        let spec = p.spec.as_ref().unwrap();
        let sec = container_security(
            spec,
            &c,
            "spec.containers[0]",
            "/var/lib/kubelet/seccomp",
            false,
        )
        .unwrap();
        assert_eq!(sec.run_as_user, Some(1001));
        assert_eq!(sec.run_as_group, Some(3000));
        assert_eq!(sec.supplemental_groups, [2000, 4000, 5000]);
        assert!(sec.privileged && sec.readonly_rootfs && sec.no_new_privs);
        let caps = sec.capabilities.unwrap();
        assert_eq!(
            (caps.add, caps.drop),
            (vec!["NET_ADMIN".to_string()], vec!["ALL".to_string()])
        );
        assert_eq!(sec.seccomp, Some(SeccompProfile::Unconfined));
        assert_eq!(sec.masked_paths.len(), DEFAULT_MASKED_PATHS.len());
        assert_eq!(sec.readonly_paths.len(), DEFAULT_READONLY_PATHS.len());
        assert_eq!(sec.namespace_pid, NamespaceMode::Container);
    }

    #[test]
    fn allow_privilege_escalation_only_explicit_false_sets_no_new_privs() {
        for (allow, want) in [(None, false), (Some(true), false), (Some(false), true)] {
            let (p, c) = pod(
                None,
                Some(SecurityContext {
                    allow_privilege_escalation: allow,
                    ..Default::default()
                }),
            );
            let sec = container_security(p.spec.as_ref().unwrap(), &c, "c", "/s", false).unwrap();
            assert_eq!(sec.no_new_privs, want, "{allow:?}");
        }
    }

    #[test]
    fn proc_mount_unmasked_clears_masked_paths() {
        let (p, c) = pod(
            None,
            Some(SecurityContext {
                proc_mount: Some("Unmasked".into()),
                ..Default::default()
            }),
        );
        let sec = container_security(p.spec.as_ref().unwrap(), &c, "c", "/s", false).unwrap();
        assert!(sec.masked_paths.is_empty() && sec.readonly_paths.is_empty());
    }

    #[test]
    fn seccomp_profiles_container_over_pod_over_default() {
        let profile = |t: &str, local: Option<&str>| ApiSeccompProfile {
            type_: t.into(),
            localhost_profile: local.map(String::from),
        };
        let root = "/var/lib/kubelet/seccomp";
        let (p, c) = pod(
            Some(PodSecurityContext {
                seccomp_profile: Some(profile("RuntimeDefault", None)),
                ..Default::default()
            }),
            Some(SecurityContext {
                seccomp_profile: Some(profile("Localhost", Some("profiles/audit.json"))),
                ..Default::default()
            }),
        );
        let spec = p.spec.as_ref().unwrap();
        assert_eq!(
            seccomp_profile(spec, &c, "spec.containers[0]", root, false),
            Ok(SeccompProfile::Localhost(
                "/var/lib/kubelet/seccomp/profiles/audit.json".into()
            ))
        );
        let plain = Container {
            name: "plain".into(),
            ..Default::default()
        };
        assert_eq!(
            seccomp_profile(spec, &plain, "spec.containers[1]", root, false),
            Ok(SeccompProfile::RuntimeDefault),
            "the pod's profile applies"
        );
        let bare = PodSpec::default();
        assert_eq!(
            seccomp_profile(&bare, &plain, "c", root, false),
            Ok(SeccompProfile::Unconfined)
        );
        assert_eq!(
            seccomp_profile(&bare, &plain, "c", root, true),
            Ok(SeccompProfile::RuntimeDefault),
            "seccompDefault"
        );
        let (p, c) = pod(
            None,
            Some(SecurityContext {
                seccomp_profile: Some(profile("Localhost", None)),
                ..Default::default()
            }),
        );
        let err = seccomp_profile(
            p.spec.as_ref().unwrap(),
            &c,
            "spec.containers[0]",
            root,
            false,
        )
        .unwrap_err();
        assert!(
            err.starts_with("spec.containers[0].securityContext.seccompProfile.localhostProfile:"),
            "{err}"
        );
        let (p, c) = pod(
            None,
            Some(SecurityContext {
                seccomp_profile: Some(profile("Unconfined", None)),
                ..Default::default()
            }),
        );
        assert_eq!(
            seccomp_profile(p.spec.as_ref().unwrap(), &c, "c", root, true),
            Ok(SeccompProfile::Unconfined)
        );
    }

    #[test]
    fn namespace_modes() {
        let mut spec = PodSpec::default();
        assert_eq!(
            namespaces(&spec),
            (
                NamespaceMode::Pod,
                NamespaceMode::Container,
                NamespaceMode::Pod
            )
        );
        spec.share_process_namespace = Some(true);
        assert_eq!(namespaces(&spec).1, NamespaceMode::Pod);
        spec.host_pid = Some(true);
        spec.host_ipc = Some(true);
        spec.host_network = Some(true);
        assert_eq!(
            namespaces(&spec),
            (
                NamespaceMode::Node,
                NamespaceMode::Node,
                NamespaceMode::Node
            )
        );
    }

    #[test]
    fn sandbox_gets_the_pods_user_groups_sysctls_and_runtime_default_seccomp() {
        let spec = PodSpec {
            share_process_namespace: Some(true),
            security_context: Some(PodSecurityContext {
                run_as_user: Some(1000),
                run_as_group: Some(3000),
                fs_group: Some(2000),
                supplemental_groups: Some(vec![4000]),
                sysctls: Some(vec![Sysctl {
                    name: "kernel.shm_rmid_forced".into(),
                    value: "1".into(),
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut config = PodSandboxConfig::default();
        sandbox_security(&mut config, &spec);
        assert_eq!(config.run_as_user, Some(1000));
        assert_eq!(config.run_as_group, Some(3000));
        assert_eq!(config.supplemental_groups, [2000, 4000]);
        assert_eq!(config.seccomp, Some(SeccompProfile::RuntimeDefault));
        assert_eq!(config.pid, NamespaceMode::Pod);
        assert_eq!(config.sysctls["kernel.shm_rmid_forced"], "1");
    }
}
