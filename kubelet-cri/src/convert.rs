//! Translation between the plain types of `kubelet_core::runtime` and CRI v1 messages.
//!
//! Pure functions, so that every field's mapping is unit-tested without a runtime.

use std::collections::{BTreeMap, HashMap};

use k8s_cri::v1 as cri;
use kubelet_core::runtime as core;

fn to_hash_map(map: &BTreeMap<String, String>) -> HashMap<String, String> {
    map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn to_btree_map(map: HashMap<String, String>) -> BTreeMap<String, String> {
    map.into_iter().collect()
}

fn namespace_mode(mode: core::NamespaceMode) -> cri::NamespaceMode {
    match mode {
        core::NamespaceMode::Pod => cri::NamespaceMode::Pod,
        core::NamespaceMode::Container => cri::NamespaceMode::Container,
        core::NamespaceMode::Node => cri::NamespaceMode::Node,
    }
}

fn namespace_options(
    network: core::NamespaceMode,
    pid: core::NamespaceMode,
    ipc: core::NamespaceMode,
) -> cri::NamespaceOption {
    cri::NamespaceOption {
        network: namespace_mode(network) as i32,
        pid: namespace_mode(pid) as i32,
        ipc: namespace_mode(ipc) as i32,
        ..Default::default()
    }
}

/// CRI's security profile for a seccomp profile.
pub fn security_profile(profile: &core::SeccompProfile) -> cri::SecurityProfile {
    use cri::security_profile::ProfileType;
    match profile {
        core::SeccompProfile::RuntimeDefault => cri::SecurityProfile {
            profile_type: ProfileType::RuntimeDefault as i32,
            localhost_ref: String::new(),
        },
        core::SeccompProfile::Unconfined => cri::SecurityProfile {
            profile_type: ProfileType::Unconfined as i32,
            localhost_ref: String::new(),
        },
        core::SeccompProfile::Localhost(path) => cri::SecurityProfile {
            profile_type: ProfileType::Localhost as i32,
            localhost_ref: path.clone(),
        },
    }
}

fn protocol(p: core::Protocol) -> cri::Protocol {
    match p {
        core::Protocol::Tcp => cri::Protocol::Tcp,
        core::Protocol::Udp => cri::Protocol::Udp,
        core::Protocol::Sctp => cri::Protocol::Sctp,
    }
}

fn propagation(p: core::MountPropagation) -> cri::MountPropagation {
    match p {
        core::MountPropagation::Private => cri::MountPropagation::PropagationPrivate,
        core::MountPropagation::HostToContainer => {
            cri::MountPropagation::PropagationHostToContainer
        }
        core::MountPropagation::Bidirectional => cri::MountPropagation::PropagationBidirectional,
    }
}

/// The CRI sandbox config for a core one.
pub fn sandbox_config(config: &core::PodSandboxConfig) -> cri::PodSandboxConfig {
    let md = &config.metadata;
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: md.name.clone(),
            uid: md.uid.clone(),
            namespace: md.namespace.clone(),
            attempt: md.attempt,
        }),
        hostname: config.hostname.clone(),
        log_directory: config.log_directory.clone(),
        dns_config: config.dns_config.as_ref().map(|dns| cri::DnsConfig {
            servers: dns.servers.clone(),
            searches: dns.searches.clone(),
            options: dns.options.clone(),
        }),
        port_mappings: config
            .port_mappings
            .iter()
            .map(|pm| cri::PortMapping {
                protocol: protocol(pm.protocol) as i32,
                container_port: pm.container_port,
                host_port: pm.host_port,
                host_ip: pm.host_ip.clone(),
            })
            .collect(),
        labels: to_hash_map(&config.labels),
        annotations: to_hash_map(&config.annotations),
        linux: Some(cri::LinuxPodSandboxConfig {
            cgroup_parent: config.cgroup_parent.clone(),
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(namespace_options(config.network, config.pid, config.ipc)),
                privileged: config.privileged,
                run_as_user: config.run_as_user.map(|value| cri::Int64Value { value }),
                run_as_group: config.run_as_group.map(|value| cri::Int64Value { value }),
                supplemental_groups: config.supplemental_groups.clone(),
                seccomp: config.seccomp.as_ref().map(security_profile),
                ..Default::default()
            }),
            sysctls: to_hash_map(&config.sysctls),
            overhead: config.overhead.as_ref().map(linux_resources),
            resources: config.resources.as_ref().map(linux_resources),
        }),
        windows: None,
    }
}

fn linux_resources(res: &core::LinuxResources) -> cri::LinuxContainerResources {
    cri::LinuxContainerResources {
        cpu_period: res.cpu_period,
        cpu_quota: res.cpu_quota,
        cpu_shares: res.cpu_shares,
        memory_limit_in_bytes: res.memory_limit_in_bytes,
        oom_score_adj: res.oom_score_adj,
        ..Default::default()
    }
}

/// The CRI container config for a core one.
pub fn container_config(config: &core::ContainerConfig) -> cri::ContainerConfig {
    let sec = &config.security;
    let res = &config.resources;
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: config.metadata.name.clone(),
            attempt: config.metadata.attempt,
        }),
        image: Some(image_spec(&config.image)),
        command: config.command.clone(),
        args: config.args.clone(),
        working_dir: config.working_dir.clone(),
        envs: config
            .envs
            .iter()
            .map(|kv| cri::KeyValue {
                key: kv.key.clone(),
                value: kv.value.clone(),
            })
            .collect(),
        mounts: config
            .mounts
            .iter()
            .map(|m| cri::Mount {
                container_path: m.container_path.clone(),
                host_path: m.host_path.clone(),
                readonly: m.readonly,
                propagation: propagation(m.propagation) as i32,
                ..Default::default()
            })
            .collect(),
        devices: config
            .devices
            .iter()
            .map(|d| cri::Device {
                container_path: d.container_path.clone(),
                host_path: d.host_path.clone(),
                permissions: d.permissions.clone(),
            })
            .collect(),
        labels: to_hash_map(&config.labels),
        annotations: to_hash_map(&config.annotations),
        log_path: config.log_path.clone(),
        stdin: config.stdin,
        stdin_once: config.stdin_once,
        tty: config.tty,
        linux: Some(cri::LinuxContainerConfig {
            resources: Some(linux_resources(res)),
            security_context: Some(cri::LinuxContainerSecurityContext {
                capabilities: sec.capabilities.as_ref().map(|c| cri::Capability {
                    add_capabilities: c.add.clone(),
                    drop_capabilities: c.drop.clone(),
                    add_ambient_capabilities: Vec::new(),
                }),
                privileged: sec.privileged,
                namespace_options: Some(namespace_options(
                    sec.namespace_network,
                    sec.namespace_pid,
                    sec.namespace_ipc,
                )),
                run_as_user: sec.run_as_user.map(|value| cri::Int64Value { value }),
                run_as_group: sec.run_as_group.map(|value| cri::Int64Value { value }),
                run_as_username: sec.run_as_username.clone(),
                readonly_rootfs: sec.readonly_rootfs,
                supplemental_groups: sec.supplemental_groups.clone(),
                no_new_privs: sec.no_new_privs,
                masked_paths: sec.masked_paths.clone(),
                readonly_paths: sec.readonly_paths.clone(),
                seccomp: sec.seccomp.as_ref().map(security_profile),
                ..Default::default()
            }),
        }),
        windows: None,
        cdi_devices: Vec::new(),
    }
}

/// An image spec naming `image`.
pub fn image_spec(image: &str) -> cri::ImageSpec {
    cri::ImageSpec {
        image: image.to_string(),
        ..Default::default()
    }
}

/// Registry credentials.
pub fn auth_config(auth: &core::AuthConfig) -> cri::AuthConfig {
    cri::AuthConfig {
        username: auth.username.clone(),
        password: auth.password.clone(),
        auth: auth.auth.clone(),
        server_address: auth.server_address.clone(),
        identity_token: auth.identity_token.clone(),
        registry_token: auth.registry_token.clone(),
    }
}

fn sandbox_metadata(md: Option<cri::PodSandboxMetadata>) -> core::SandboxMetadata {
    let md = md.unwrap_or_default();
    core::SandboxMetadata {
        name: md.name,
        uid: md.uid,
        namespace: md.namespace,
        attempt: md.attempt,
    }
}

fn sandbox_state(state: i32) -> core::SandboxState {
    match cri::PodSandboxState::try_from(state) {
        Ok(cri::PodSandboxState::SandboxReady) => core::SandboxState::Ready,
        _ => core::SandboxState::NotReady,
    }
}

/// A sandbox from ListPodSandbox (no IPs, no netns).
pub fn sandbox_from_list(sb: cri::PodSandbox) -> core::PodSandboxStatus {
    core::PodSandboxStatus {
        id: sb.id,
        metadata: sandbox_metadata(sb.metadata),
        state: sandbox_state(sb.state),
        created_at: sb.created_at,
        ips: Vec::new(),
        netns_path: None,
        // The list call does not carry namespace options; the status call does.
        network: core::NamespaceMode::Pod,
        labels: to_btree_map(sb.labels),
        annotations: to_btree_map(sb.annotations),
    }
}

/// A sandbox from PodSandboxStatus, with its verbose `info` (may be empty).
pub fn sandbox_from_status(
    status: cri::PodSandboxStatus,
    info: &HashMap<String, String>,
) -> core::PodSandboxStatus {
    let mut ips = Vec::new();
    if let Some(net) = status.network {
        if !net.ip.is_empty() {
            ips.push(net.ip);
        }
        ips.extend(
            net.additional_ips
                .into_iter()
                .map(|ip| ip.ip)
                .filter(|ip| !ip.is_empty()),
        );
    }
    let network = status
        .linux
        .and_then(|l| l.namespaces)
        .and_then(|n| n.options)
        .map(|o| match cri::NamespaceMode::try_from(o.network) {
            Ok(cri::NamespaceMode::Node) => core::NamespaceMode::Node,
            _ => core::NamespaceMode::Pod,
        })
        .unwrap_or_default();
    core::PodSandboxStatus {
        id: status.id,
        metadata: sandbox_metadata(status.metadata),
        state: sandbox_state(status.state),
        created_at: status.created_at,
        ips,
        netns_path: netns_path_from_info(info),
        network,
        labels: to_btree_map(status.labels),
        annotations: to_btree_map(status.annotations),
    }
}

/// The network namespace path from a verbose sandbox status. containerd puts a JSON object
/// under `info` whose `runtimeSpec.linux.namespaces` lists the sandbox's namespaces; the
/// network one has the bind-mounted path. Absent (non-verbose call, host network, other
/// runtimes): `None`.
pub fn netns_path_from_info(info: &HashMap<String, String>) -> Option<String> {
    let raw = info.get("info")?;
    let value: serde_json::Value = serde_json::from_str(raw).ok()?;
    value
        .pointer("/runtimeSpec/linux/namespaces")?
        .as_array()?
        .iter()
        .find(|ns| ns.get("type").and_then(|t| t.as_str()) == Some("network"))?
        .get("path")?
        .as_str()
        .filter(|p| !p.is_empty())
        .map(str::to_string)
}

fn container_metadata(md: Option<cri::ContainerMetadata>) -> core::ContainerMetadata {
    let md = md.unwrap_or_default();
    core::ContainerMetadata {
        name: md.name,
        attempt: md.attempt,
    }
}

fn container_state(state: i32) -> core::ContainerState {
    match cri::ContainerState::try_from(state) {
        Ok(cri::ContainerState::ContainerCreated) => core::ContainerState::Created,
        Ok(cri::ContainerState::ContainerRunning) => core::ContainerState::Running,
        Ok(cri::ContainerState::ContainerExited) => core::ContainerState::Exited,
        _ => core::ContainerState::Unknown,
    }
}

/// A container from ListContainers (detail fields empty).
pub fn container_from_list(c: cri::Container) -> core::ContainerStatus {
    core::ContainerStatus {
        id: c.id,
        sandbox_id: c.pod_sandbox_id,
        metadata: container_metadata(c.metadata),
        state: container_state(c.state),
        created_at: c.created_at,
        image: c.image.map(|i| i.image).unwrap_or_default(),
        image_ref: c.image_ref,
        labels: to_btree_map(c.labels),
        annotations: to_btree_map(c.annotations),
        ..Default::default()
    }
}

/// A container from ContainerStatus. CRI's status carries no sandbox ID; `sandbox_id` is
/// what the caller found otherwise (empty if unknown).
pub fn container_from_status(c: cri::ContainerStatus, sandbox_id: String) -> core::ContainerStatus {
    core::ContainerStatus {
        id: c.id,
        sandbox_id,
        metadata: container_metadata(c.metadata),
        state: container_state(c.state),
        created_at: c.created_at,
        started_at: c.started_at,
        finished_at: c.finished_at,
        exit_code: c.exit_code,
        image: c.image.map(|i| i.image).unwrap_or_default(),
        image_ref: c.image_ref,
        reason: c.reason,
        message: c.message,
        labels: to_btree_map(c.labels),
        annotations: to_btree_map(c.annotations),
        log_path: c.log_path,
    }
}

/// An image.
pub fn image_info(image: cri::Image) -> core::ImageInfo {
    core::ImageInfo {
        id: image.id,
        repo_tags: image.repo_tags,
        repo_digests: image.repo_digests,
        size: image.size,
        pinned: image.pinned,
        uid: image.uid.map(|u| u.value),
        username: image.username,
    }
}

/// Container stats.
pub fn container_stats(stats: cri::ContainerStats) -> core::ContainerStats {
    let attrs = stats.attributes.unwrap_or_default();
    let cpu = stats.cpu;
    let memory = stats.memory;
    let timestamp = cpu
        .as_ref()
        .map(|c| c.timestamp)
        .filter(|t| *t > 0)
        .or_else(|| memory.as_ref().map(|m| m.timestamp))
        .unwrap_or_default();
    core::ContainerStats {
        id: attrs.id,
        metadata: container_metadata(attrs.metadata),
        timestamp,
        cpu_usage_core_nanoseconds: cpu.and_then(|c| c.usage_core_nano_seconds).map(|v| v.value),
        memory_working_set_bytes: memory.and_then(|m| m.working_set_bytes).map(|v| v.value),
        writable_layer_used_bytes: stats
            .writable_layer
            .and_then(|w| w.used_bytes)
            .map(|v| v.value),
    }
}

/// Pod sandbox stats (the Linux part; a Windows sandbox has none of these numbers).
pub fn pod_sandbox_stats(stats: cri::PodSandboxStats) -> core::PodSandboxStats {
    let attrs = stats.attributes.unwrap_or_default();
    let linux = stats.linux.unwrap_or_default();
    let cpu = linux.cpu;
    let memory = linux.memory;
    let timestamp = cpu
        .as_ref()
        .map(|c| c.timestamp)
        .filter(|t| *t > 0)
        .or_else(|| memory.as_ref().map(|m| m.timestamp))
        .unwrap_or_default();
    let value = |v: Option<cri::UInt64Value>| v.map(|v| v.value);
    let interface = |i: cri::NetworkInterfaceUsage| core::InterfaceUsage {
        name: i.name,
        rx_bytes: value(i.rx_bytes),
        rx_errors: value(i.rx_errors),
        tx_bytes: value(i.tx_bytes),
        tx_errors: value(i.tx_errors),
    };
    let network = linux
        .network
        .map(|n| {
            n.default_interface
                .into_iter()
                .chain(n.interfaces)
                .map(interface)
                .collect()
        })
        .unwrap_or_default();
    let (working_set, usage, rss) = match memory {
        Some(m) => (
            value(m.working_set_bytes),
            value(m.usage_bytes),
            value(m.rss_bytes),
        ),
        None => (None, None, None),
    };
    core::PodSandboxStats {
        id: attrs.id,
        metadata: sandbox_metadata(attrs.metadata),
        timestamp,
        cpu_usage_core_nanoseconds: cpu.and_then(|c| value(c.usage_core_nano_seconds)),
        memory_working_set_bytes: working_set,
        memory_usage_bytes: usage,
        memory_rss_bytes: rss,
        network,
        process_count: linux.process.and_then(|p| value(p.process_count)),
        containers: linux.containers.into_iter().map(container_stats).collect(),
    }
}

/// The label selector for a list filter.
pub fn label_selector(filter: &core::ListFilter) -> HashMap<String, String> {
    filter
        .pod_uid
        .iter()
        .map(|uid| (kubelet_core::labels::POD_UID.to_string(), uid.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full_sandbox() -> core::PodSandboxConfig {
        core::PodSandboxConfig {
            metadata: core::SandboxMetadata {
                name: "web".into(),
                uid: "uid-1".into(),
                namespace: "default".into(),
                attempt: 2,
            },
            hostname: "web".into(),
            log_directory: "/var/log/pods/default_web_uid-1".into(),
            dns_config: Some(core::DnsConfig {
                servers: vec!["10.96.0.10".into()],
                searches: vec!["default.svc.cluster.local".into()],
                options: vec!["ndots:5".into()],
            }),
            port_mappings: vec![core::PortMapping {
                protocol: core::Protocol::Udp,
                container_port: 53,
                host_port: 5353,
                host_ip: "127.0.0.1".into(),
            }],
            labels: BTreeMap::from([("io.kubernetes.pod.uid".into(), "uid-1".into())]),
            annotations: BTreeMap::from([("a".into(), "b".into())]),
            cgroup_parent: "/kubepods/besteffort/poduid-1".into(),
            network: core::NamespaceMode::Pod,
            pid: core::NamespaceMode::Node,
            ipc: core::NamespaceMode::Node,
            sysctls: BTreeMap::from([("net.ipv4.ip_unprivileged_port_start".into(), "0".into())]),
            privileged: true,
            runtime_handler: String::new(),
            run_as_user: Some(1000),
            run_as_group: Some(3000),
            supplemental_groups: vec![2000, 4000],
            seccomp: Some(core::SeccompProfile::RuntimeDefault),
            overhead: Some(core::LinuxResources {
                cpu_period: 100_000,
                cpu_quota: 25_000,
                cpu_shares: 256,
                memory_limit_in_bytes: 128 << 20,
                oom_score_adj: 0,
            }),
            resources: Some(core::LinuxResources {
                cpu_period: 100_000,
                cpu_quota: 0,
                cpu_shares: 2,
                memory_limit_in_bytes: 0,
                oom_score_adj: 0,
            }),
        }
    }

    #[test]
    fn sandbox_config_maps_every_field() {
        let c = sandbox_config(&full_sandbox());
        let md = c.metadata.as_ref().unwrap();
        assert_eq!(
            (
                md.name.as_str(),
                md.uid.as_str(),
                md.namespace.as_str(),
                md.attempt
            ),
            ("web", "uid-1", "default", 2)
        );
        assert_eq!(c.hostname, "web");
        assert_eq!(c.log_directory, "/var/log/pods/default_web_uid-1");
        let dns = c.dns_config.as_ref().unwrap();
        assert_eq!(dns.servers, ["10.96.0.10"]);
        assert_eq!(dns.searches, ["default.svc.cluster.local"]);
        assert_eq!(dns.options, ["ndots:5"]);
        assert_eq!(
            c.port_mappings,
            [cri::PortMapping {
                protocol: cri::Protocol::Udp as i32,
                container_port: 53,
                host_port: 5353,
                host_ip: "127.0.0.1".into(),
            }]
        );
        assert_eq!(c.labels["io.kubernetes.pod.uid"], "uid-1");
        assert_eq!(c.annotations["a"], "b");
        let linux = c.linux.as_ref().unwrap();
        assert_eq!(linux.cgroup_parent, "/kubepods/besteffort/poduid-1");
        assert_eq!(linux.sysctls["net.ipv4.ip_unprivileged_port_start"], "0");
        let overhead = linux.overhead.as_ref().unwrap();
        assert_eq!(
            (
                overhead.cpu_shares,
                overhead.cpu_quota,
                overhead.memory_limit_in_bytes
            ),
            (256, 25_000, 128 << 20)
        );
        assert_eq!(linux.resources.as_ref().map(|r| r.cpu_shares), Some(2));
        let sc = linux.security_context.as_ref().unwrap();
        assert!(sc.privileged);
        assert_eq!(sc.run_as_user, Some(cri::Int64Value { value: 1000 }));
        assert_eq!(sc.run_as_group, Some(cri::Int64Value { value: 3000 }));
        assert_eq!(sc.supplemental_groups, [2000, 4000]);
        assert_eq!(
            sc.seccomp,
            Some(cri::SecurityProfile {
                profile_type: cri::security_profile::ProfileType::RuntimeDefault as i32,
                localhost_ref: String::new(),
            })
        );
        let ns = sc.namespace_options.as_ref().unwrap();
        assert_eq!(ns.network, cri::NamespaceMode::Pod as i32);
        assert_eq!(ns.pid, cri::NamespaceMode::Node as i32);
        assert_eq!(ns.ipc, cri::NamespaceMode::Node as i32);
    }

    #[test]
    fn host_network_sandbox_uses_node_namespace() {
        let mut cfg = full_sandbox();
        cfg.network = core::NamespaceMode::Node;
        cfg.pid = core::NamespaceMode::Container;
        cfg.ipc = core::NamespaceMode::Pod;
        let c = sandbox_config(&cfg);
        let ns = c
            .linux
            .and_then(|l| l.security_context)
            .and_then(|s| s.namespace_options)
            .unwrap();
        assert_eq!(ns.network, cri::NamespaceMode::Node as i32);
        // Not the host's PID namespace: one per container, as the reference kubelet does.
        assert_eq!(ns.pid, cri::NamespaceMode::Container as i32);
        assert_eq!(ns.ipc, cri::NamespaceMode::Pod as i32);

        // shareProcessNamespace: one PID namespace for the pod.
        cfg.pid = core::NamespaceMode::Pod;
        let ns = sandbox_config(&cfg)
            .linux
            .and_then(|l| l.security_context)
            .and_then(|s| s.namespace_options)
            .unwrap();
        assert_eq!(ns.pid, cri::NamespaceMode::Pod as i32);
        // Unset security fields stay unset.
        let sc = sandbox_config(&core::PodSandboxConfig::default())
            .linux
            .and_then(|l| l.security_context)
            .unwrap();
        assert_eq!((sc.run_as_user, sc.seccomp), (None, None));
    }

    #[test]
    fn seccomp_profiles_map() {
        use cri::security_profile::ProfileType;
        let localhost = security_profile(&core::SeccompProfile::Localhost(
            "/var/lib/kubelet/seccomp/audit.json".into(),
        ));
        assert_eq!(localhost.profile_type, ProfileType::Localhost as i32);
        assert_eq!(
            localhost.localhost_ref,
            "/var/lib/kubelet/seccomp/audit.json"
        );
        assert_eq!(
            security_profile(&core::SeccompProfile::Unconfined).profile_type,
            ProfileType::Unconfined as i32
        );
        assert_eq!(
            security_profile(&core::SeccompProfile::RuntimeDefault).profile_type,
            ProfileType::RuntimeDefault as i32
        );
    }

    #[test]
    fn image_user_maps() {
        let numeric = image_info(cri::Image {
            id: "sha256:1".into(),
            uid: Some(cri::Int64Value { value: 1000 }),
            ..Default::default()
        });
        assert_eq!((numeric.uid, numeric.username.as_str()), (Some(1000), ""));
        let named = image_info(cri::Image {
            id: "sha256:2".into(),
            username: "nobody".into(),
            ..Default::default()
        });
        assert_eq!((named.uid, named.username.as_str()), (None, "nobody"));
    }

    #[test]
    fn container_config_maps_every_field() {
        let cfg = core::ContainerConfig {
            metadata: core::ContainerMetadata {
                name: "app".into(),
                attempt: 3,
            },
            image: "docker.io/library/busybox:local".into(),
            command: vec!["sh".into(), "-c".into()],
            args: vec!["echo hi".into()],
            working_dir: "/tmp".into(),
            envs: vec![core::KeyValue {
                key: "A".into(),
                value: "1".into(),
            }],
            mounts: vec![
                core::Mount {
                    container_path: "/data".into(),
                    host_path: "/var/lib/kubelet/pods/u/volumes/x".into(),
                    readonly: true,
                    propagation: core::MountPropagation::HostToContainer,
                },
                core::Mount {
                    container_path: "/bi".into(),
                    host_path: "/mnt".into(),
                    readonly: false,
                    propagation: core::MountPropagation::Bidirectional,
                },
            ],
            devices: vec![core::Device {
                container_path: "/dev/xvda".into(),
                host_path: "/var/lib/kubelet/pods/u/volumeDevices/kubernetes.io~csi/pv".into(),
                permissions: "mrw".into(),
            }],
            labels: BTreeMap::from([("io.kubernetes.container.name".into(), "app".into())]),
            annotations: BTreeMap::from([("io.kubernetes.container.hash".into(), "abc".into())]),
            log_path: "app/3.log".into(),
            stdin: true,
            stdin_once: true,
            tty: true,
            resources: core::LinuxResources {
                cpu_period: 100_000,
                cpu_quota: 50_000,
                cpu_shares: 512,
                memory_limit_in_bytes: 64 << 20,
                oom_score_adj: 1000,
            },
            security: core::LinuxSecurityContext {
                run_as_user: Some(1000),
                run_as_username: String::new(),
                seccomp: Some(core::SeccompProfile::Localhost("/p.json".into())),
                masked_paths: vec!["/proc/kcore".into()],
                readonly_paths: vec!["/proc/sys".into()],
                run_as_group: Some(2000),
                supplemental_groups: vec![3000],
                privileged: true,
                readonly_rootfs: true,
                capabilities: Some(core::Capabilities {
                    add: vec!["NET_ADMIN".into()],
                    drop: vec!["ALL".into()],
                }),
                no_new_privs: true,
                namespace_network: core::NamespaceMode::Node,
                namespace_pid: core::NamespaceMode::Node,
                namespace_ipc: core::NamespaceMode::Pod,
            },
        };
        let c = container_config(&cfg);
        let md = c.metadata.as_ref().unwrap();
        assert_eq!((md.name.as_str(), md.attempt), ("app", 3));
        assert_eq!(
            c.image.as_ref().unwrap().image,
            "docker.io/library/busybox:local"
        );
        assert_eq!(c.command, ["sh", "-c"]);
        assert_eq!(c.args, ["echo hi"]);
        assert_eq!(c.working_dir, "/tmp");
        assert_eq!(
            c.envs,
            [cri::KeyValue {
                key: "A".into(),
                value: "1".into()
            }]
        );
        assert_eq!(c.mounts.len(), 2);
        assert_eq!(c.mounts[0].container_path, "/data");
        assert_eq!(c.mounts[0].host_path, "/var/lib/kubelet/pods/u/volumes/x");
        assert!(c.mounts[0].readonly);
        assert_eq!(
            c.mounts[0].propagation,
            cri::MountPropagation::PropagationHostToContainer as i32
        );
        assert!(!c.mounts[1].readonly);
        assert_eq!(
            c.mounts[1].propagation,
            cri::MountPropagation::PropagationBidirectional as i32
        );
        assert_eq!(
            c.devices,
            [cri::Device {
                container_path: "/dev/xvda".into(),
                host_path: "/var/lib/kubelet/pods/u/volumeDevices/kubernetes.io~csi/pv".into(),
                permissions: "mrw".into(),
            }]
        );
        assert_eq!(c.labels["io.kubernetes.container.name"], "app");
        assert_eq!(c.annotations["io.kubernetes.container.hash"], "abc");
        assert_eq!(c.log_path, "app/3.log");
        assert!(c.stdin && c.stdin_once && c.tty);
        let linux = c.linux.as_ref().unwrap();
        let r = linux.resources.as_ref().unwrap();
        assert_eq!(
            (
                r.cpu_period,
                r.cpu_quota,
                r.cpu_shares,
                r.memory_limit_in_bytes,
                r.oom_score_adj
            ),
            (100_000, 50_000, 512, 64 << 20, 1000)
        );
        let s = linux.security_context.as_ref().unwrap();
        assert_eq!(s.run_as_user, Some(cri::Int64Value { value: 1000 }));
        assert_eq!(s.run_as_group, Some(cri::Int64Value { value: 2000 }));
        assert_eq!(s.supplemental_groups, [3000]);
        assert!(s.privileged && s.readonly_rootfs && s.no_new_privs);
        assert_eq!(s.masked_paths, ["/proc/kcore"]);
        assert_eq!(s.readonly_paths, ["/proc/sys"]);
        assert_eq!(
            s.seccomp.as_ref().map(|p| p.localhost_ref.as_str()),
            Some("/p.json")
        );
        let caps = s.capabilities.as_ref().unwrap();
        assert_eq!(caps.add_capabilities, ["NET_ADMIN"]);
        assert_eq!(caps.drop_capabilities, ["ALL"]);
        let ns = s.namespace_options.as_ref().unwrap();
        assert_eq!(ns.network, cri::NamespaceMode::Node as i32);
        assert_eq!(ns.pid, cri::NamespaceMode::Node as i32);
        assert_eq!(ns.ipc, cri::NamespaceMode::Pod as i32);
    }

    #[test]
    fn unset_user_and_capabilities_stay_unset() {
        let c = container_config(&core::ContainerConfig::default());
        let s = c.linux.unwrap().security_context.unwrap();
        assert_eq!(s.run_as_user, None);
        assert_eq!(s.run_as_group, None);
        assert_eq!(s.capabilities, None);
        assert_eq!(
            s.namespace_options.unwrap().pid,
            cri::NamespaceMode::Container as i32
        );
    }

    #[test]
    fn sandbox_status_collects_ips_and_network_mode() {
        let status = cri::PodSandboxStatus {
            id: "sb1".into(),
            metadata: Some(cri::PodSandboxMetadata {
                name: "web".into(),
                uid: "u1".into(),
                namespace: "ns".into(),
                attempt: 1,
            }),
            state: cri::PodSandboxState::SandboxReady as i32,
            created_at: 42,
            network: Some(cri::PodSandboxNetworkStatus {
                ip: "10.89.0.5".into(),
                additional_ips: vec![cri::PodIp {
                    ip: "fd00::5".into(),
                }],
            }),
            linux: Some(cri::LinuxPodSandboxStatus {
                namespaces: Some(cri::Namespace {
                    options: Some(cri::NamespaceOption {
                        network: cri::NamespaceMode::Node as i32,
                        ..Default::default()
                    }),
                }),
            }),
            labels: HashMap::from([("l".into(), "1".into())]),
            annotations: HashMap::from([("a".into(), "2".into())]),
            runtime_handler: String::new(),
        };
        let s = sandbox_from_status(status, &HashMap::new());
        assert_eq!(s.id, "sb1");
        assert_eq!(s.metadata.uid, "u1");
        assert_eq!(s.metadata.attempt, 1);
        assert_eq!(s.state, core::SandboxState::Ready);
        assert_eq!(s.created_at, 42);
        assert_eq!(s.ips, ["10.89.0.5", "fd00::5"]);
        assert_eq!(s.network, core::NamespaceMode::Node);
        assert_eq!(s.netns_path, None);
        assert_eq!(s.labels["l"], "1");
        assert_eq!(s.annotations["a"], "2");
    }

    #[test]
    fn netns_path_is_read_from_verbose_info() {
        let info = HashMap::from([(
            "info".to_string(),
            r#"{"pid":1,"runtimeSpec":{"linux":{"namespaces":[{"type":"pid"},{"type":"network","path":"/var/run/netns/cni-1"}]}}}"#
                .to_string(),
        )]);
        assert_eq!(
            netns_path_from_info(&info).as_deref(),
            Some("/var/run/netns/cni-1")
        );
        let host = HashMap::from([(
            "info".to_string(),
            r#"{"runtimeSpec":{"linux":{"namespaces":[{"type":"pid"}]}}}"#.to_string(),
        )]);
        assert_eq!(netns_path_from_info(&host), None);
        let garbage = HashMap::from([("info".to_string(), "not json".to_string())]);
        assert_eq!(netns_path_from_info(&garbage), None);
    }

    #[test]
    fn container_status_maps_details() {
        let status = cri::ContainerStatus {
            id: "c1".into(),
            metadata: Some(cri::ContainerMetadata {
                name: "app".into(),
                attempt: 4,
            }),
            state: cri::ContainerState::ContainerExited as i32,
            created_at: 1,
            started_at: 2,
            finished_at: 3,
            exit_code: 137,
            image: Some(image_spec("busybox")),
            image_ref: "sha256:abc".into(),
            reason: "OOMKilled".into(),
            message: "out of memory".into(),
            labels: HashMap::from([("l".into(), "1".into())]),
            annotations: HashMap::from([("a".into(), "2".into())]),
            log_path: "/var/log/pods/x/app/4.log".into(),
            ..Default::default()
        };
        let s = container_from_status(status, "sb1".into());
        assert_eq!(
            s,
            core::ContainerStatus {
                id: "c1".into(),
                sandbox_id: "sb1".into(),
                metadata: core::ContainerMetadata {
                    name: "app".into(),
                    attempt: 4
                },
                state: core::ContainerState::Exited,
                created_at: 1,
                started_at: 2,
                finished_at: 3,
                exit_code: 137,
                image: "busybox".into(),
                image_ref: "sha256:abc".into(),
                reason: "OOMKilled".into(),
                message: "out of memory".into(),
                labels: BTreeMap::from([("l".into(), "1".into())]),
                annotations: BTreeMap::from([("a".into(), "2".into())]),
                log_path: "/var/log/pods/x/app/4.log".into(),
            }
        );
    }

    #[test]
    fn states_map() {
        assert_eq!(container_state(0), core::ContainerState::Created);
        assert_eq!(container_state(1), core::ContainerState::Running);
        assert_eq!(container_state(2), core::ContainerState::Exited);
        assert_eq!(container_state(3), core::ContainerState::Unknown);
        assert_eq!(container_state(99), core::ContainerState::Unknown);
        assert_eq!(sandbox_state(0), core::SandboxState::Ready);
        assert_eq!(sandbox_state(1), core::SandboxState::NotReady);
    }

    #[test]
    fn sandbox_stats_map() {
        let v = |value| Some(cri::UInt64Value { value });
        let stats = cri::PodSandboxStats {
            attributes: Some(cri::PodSandboxAttributes {
                id: "sb".into(),
                metadata: Some(cri::PodSandboxMetadata {
                    name: "web".into(),
                    uid: "u".into(),
                    namespace: "ns".into(),
                    attempt: 1,
                }),
                ..Default::default()
            }),
            linux: Some(cri::LinuxPodSandboxStats {
                cpu: Some(cri::CpuUsage {
                    timestamp: 5,
                    usage_core_nano_seconds: v(100),
                    usage_nano_cores: None,
                }),
                memory: Some(cri::MemoryUsage {
                    timestamp: 5,
                    working_set_bytes: v(64),
                    usage_bytes: v(70),
                    rss_bytes: v(60),
                    ..Default::default()
                }),
                network: Some(cri::NetworkUsage {
                    timestamp: 5,
                    default_interface: Some(cri::NetworkInterfaceUsage {
                        name: "eth0".into(),
                        rx_bytes: v(1000),
                        rx_errors: v(1),
                        tx_bytes: v(2000),
                        tx_errors: v(2),
                    }),
                    interfaces: vec![cri::NetworkInterfaceUsage {
                        name: "eth1".into(),
                        rx_bytes: v(3),
                        ..Default::default()
                    }],
                }),
                process: Some(cri::ProcessUsage {
                    timestamp: 5,
                    process_count: v(3),
                }),
                containers: vec![],
            }),
            windows: None,
        };
        let s = pod_sandbox_stats(stats);
        assert_eq!((s.id.as_str(), s.metadata.uid.as_str()), ("sb", "u"));
        assert_eq!(s.timestamp, 5);
        assert_eq!(s.cpu_usage_core_nanoseconds, Some(100));
        assert_eq!(
            (
                s.memory_working_set_bytes,
                s.memory_usage_bytes,
                s.memory_rss_bytes
            ),
            (Some(64), Some(70), Some(60))
        );
        let names: Vec<&str> = s.network.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["eth0", "eth1"], "the default interface first");
        assert_eq!(s.network[0].tx_errors, Some(2));
        assert_eq!(s.process_count, Some(3));
    }

    #[test]
    fn stats_map() {
        let stats = cri::ContainerStats {
            attributes: Some(cri::ContainerAttributes {
                id: "c1".into(),
                metadata: Some(cri::ContainerMetadata {
                    name: "app".into(),
                    attempt: 0,
                }),
                ..Default::default()
            }),
            cpu: Some(cri::CpuUsage {
                timestamp: 7,
                usage_core_nano_seconds: Some(cri::UInt64Value { value: 1234 }),
                usage_nano_cores: None,
            }),
            memory: Some(cri::MemoryUsage {
                timestamp: 7,
                working_set_bytes: Some(cri::UInt64Value { value: 4096 }),
                ..Default::default()
            }),
            writable_layer: Some(cri::FilesystemUsage {
                timestamp: 7,
                used_bytes: Some(cri::UInt64Value { value: 8 }),
                ..Default::default()
            }),
            swap: None,
        };
        let s = container_stats(stats);
        assert_eq!(s.id, "c1");
        assert_eq!(s.metadata.name, "app");
        assert_eq!(s.timestamp, 7);
        assert_eq!(s.cpu_usage_core_nanoseconds, Some(1234));
        assert_eq!(s.memory_working_set_bytes, Some(4096));
        assert_eq!(s.writable_layer_used_bytes, Some(8));
    }

    #[test]
    fn list_filter_selects_pod_uid_label() {
        assert!(label_selector(&core::ListFilter::all()).is_empty());
        assert_eq!(
            label_selector(&core::ListFilter::pod("u1")),
            HashMap::from([("io.kubernetes.pod.uid".to_string(), "u1".to_string())])
        );
    }

    #[test]
    fn auth_maps() {
        let a = auth_config(&core::AuthConfig {
            username: "u".into(),
            password: "p".into(),
            auth: "dTpw".into(),
            server_address: "r.example".into(),
            identity_token: "i".into(),
            registry_token: "t".into(),
        });
        assert_eq!(
            (
                a.username.as_str(),
                a.password.as_str(),
                a.auth.as_str(),
                a.server_address.as_str(),
                a.identity_token.as_str(),
                a.registry_token.as_str()
            ),
            ("u", "p", "dTpw", "r.example", "i", "t")
        );
    }
}
