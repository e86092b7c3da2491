//! Translation of a pod spec into runtime configs: sandbox config, container config (command,
//! env with `$(VAR)` expansion, ports, resources, security context, mounts, log path), and the
//! pod's cgroup parent by QoS class. Pure functions.

use std::collections::{BTreeMap, HashSet};

use k8s_openapi::api::core::v1::{Container, ContainerPort, Pod, PodSpec};

pub use super::env::expand_vars;
use super::env::make_env;
use super::qos::{QosClass, qos_class};
use crate::labels;
use crate::quantity;
use crate::runtime::{
    Capabilities, ContainerConfig, ContainerMetadata, DnsConfig, LinuxResources,
    LinuxSecurityContext, Mount, NamespaceMode, PodSandboxConfig, PortMapping, Protocol,
    SandboxMetadata,
};

/// Annotation carrying the container's ports as JSON (the reference's key).
pub const CONTAINER_PORTS: &str = "io.kubernetes.container.ports";
/// Annotation carrying the container's preStop handler as JSON, so that a restarted kubelet
/// can still run it.
pub const CONTAINER_PRESTOP_HANDLER: &str = "io.kubernetes.container.preStopHandler";
/// Annotation carrying the pod's deletion grace period when the pod is being deleted.
pub const POD_DELETION_GRACE_PERIOD: &str = "io.kubernetes.pod.deletionGracePeriod";

/// Default `terminationMessagePath` (API defaulting).
const DEFAULT_TERMINATION_MESSAGE_PATH: &str = "/dev/termination-log";
/// Default `terminationMessagePolicy` (API defaulting).
const DEFAULT_TERMINATION_MESSAGE_POLICY: &str = "File";
/// Default `terminationGracePeriodSeconds` (API defaulting).
const DEFAULT_TERMINATION_GRACE_PERIOD: i64 = 30;

/// CFS period the reference uses (`cpuCFSQuotaPeriod` default, 100ms).
pub const CPU_PERIOD_US: i64 = 100_000;
const MIN_QUOTA_US: i64 = 1_000;
const MIN_SHARES: i64 = 2;
const MAX_SHARES: i64 = 262_144;
const SHARES_PER_CPU: i64 = 1024;
const MILLI_CPU_TO_CPU: i64 = 1000;

const GUARANTEED_OOM_SCORE_ADJ: i64 = -997;
const BESTEFFORT_OOM_SCORE_ADJ: i64 = 1000;
/// Pods at or above this priority are critical (the reference's `SystemCriticalPriority`).
const SYSTEM_CRITICAL_PRIORITY: i32 = 2_000_000_000;

/// Settings of the node that shape runtime configs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecSettings {
    /// Root of the pod log directories (`/var/log/pods` by default).
    pub pod_logs_root: String,
    /// Top-level cgroup of the pods (`/kubepods` with the cgroupfs driver).
    pub cgroup_root: String,
    /// Cluster DNS servers (empty: use the host's resolv.conf).
    pub cluster_dns: Vec<String>,
    /// Cluster domain (e.g. `cluster.local`).
    pub cluster_domain: String,
    /// Memory capacity of the node in bytes, for the Burstable OOM score and as the
    /// downward-API value of `limits.memory` when the container sets no limit. 0 means
    /// unknown: Burstable containers then get 999 (just below BestEffort) and the downward
    /// API reports 0.
    pub node_memory_capacity: i64,
    /// CPU capacity of the node in millicores, the downward-API value of `limits.cpu` when
    /// the container sets no limit. 0 means unknown (reported as 0).
    pub node_cpu_capacity_milli: i64,
}

impl SpecSettings {
    /// What the downward API reports for a `limits.*` resource the container leaves unset.
    pub fn node_allocatable(&self) -> crate::downward_api::NodeAllocatable {
        crate::downward_api::NodeAllocatable {
            cpu_milli: self.node_cpu_capacity_milli,
            memory_bytes: self.node_memory_capacity,
            ephemeral_storage_bytes: 0,
        }
    }
}

impl Default for SpecSettings {
    fn default() -> Self {
        Self {
            pod_logs_root: "/var/log/pods".to_string(),
            cgroup_root: "/kubepods".to_string(),
            cluster_dns: Vec::new(),
            cluster_domain: String::new(),
            node_memory_capacity: 0,
            node_cpu_capacity_milli: 0,
        }
    }
}

/// The log directory of a pod: `<root>/<namespace>_<name>_<uid>`.
pub fn pod_log_directory(root: &str, namespace: &str, name: &str, uid: &str) -> String {
    format!("{}/{namespace}_{name}_{uid}", root.trim_end_matches('/'))
}

/// The pod's cgroup parent with the cgroupfs driver: Guaranteed pods directly under the
/// root, the others under `burstable/` or `besteffort/`.
pub fn pod_cgroup_parent(cgroup_root: &str, class: QosClass, uid: &str) -> String {
    let root = cgroup_root.trim_end_matches('/');
    match class {
        QosClass::Guaranteed => format!("{root}/pod{uid}"),
        QosClass::Burstable => format!("{root}/burstable/pod{uid}"),
        QosClass::BestEffort => format!("{root}/besteffort/pod{uid}"),
    }
}

/// The sandbox config for a pod at the given sandbox attempt.
pub fn sandbox_config(pod: &Pod, attempt: u32, settings: &SpecSettings) -> PodSandboxConfig {
    let meta = &pod.metadata;
    let name = meta.name.clone().unwrap_or_default();
    let namespace = meta.namespace.clone().unwrap_or_default();
    let uid = meta.uid.clone().unwrap_or_default();
    let default_spec = PodSpec::default();
    let spec = pod.spec.as_ref().unwrap_or(&default_spec);
    let host_network = spec.host_network.unwrap_or(false);

    let mut sandbox_labels: BTreeMap<String, String> = meta.labels.clone().unwrap_or_default();
    sandbox_labels.extend(labels::pod_labels(&namespace, &name, &uid));

    let sysctls = spec
        .security_context
        .as_ref()
        .and_then(|sc| sc.sysctls.as_ref())
        .map(|list| {
            list.iter()
                .map(|s| (s.name.clone(), s.value.clone()))
                .collect()
        })
        .unwrap_or_default();

    PodSandboxConfig {
        metadata: SandboxMetadata {
            name: name.clone(),
            uid: uid.clone(),
            namespace: namespace.clone(),
            attempt,
        },
        // containerd refuses a hostname for a sandbox that shares the host's UTS namespace.
        hostname: if host_network {
            String::new()
        } else {
            pod_hostname(pod, settings)
        },
        log_directory: pod_log_directory(&settings.pod_logs_root, &namespace, &name, &uid),
        dns_config: dns_config(pod, settings),
        port_mappings: port_mappings(spec),
        labels: sandbox_labels,
        annotations: meta.annotations.clone().unwrap_or_default(),
        cgroup_parent: pod_cgroup_parent(&settings.cgroup_root, qos_class(pod), &uid),
        network: mode(host_network),
        pid: mode(spec.host_pid.unwrap_or(false)),
        ipc: mode(spec.host_ipc.unwrap_or(false)),
        sysctls,
        privileged: has_privileged_container(spec),
        runtime_handler: String::new(),
    }
}

fn mode(host: bool) -> NamespaceMode {
    if host {
        NamespaceMode::Node
    } else {
        NamespaceMode::Pod
    }
}

/// Hostname of a pod as the reference generates it: `spec.hostname` or the pod name,
/// truncated to 63 characters, and the FQDN when `setHostnameAsFQDN` asks for it.
fn pod_hostname(pod: &Pod, settings: &SpecSettings) -> String {
    let spec = pod.spec.as_ref();
    let base = spec
        .and_then(|s| s.hostname.as_deref())
        .filter(|h| !h.is_empty())
        .or(pod.metadata.name.as_deref())
        .unwrap_or_default();
    let hostname = truncate_hostname(base);
    let subdomain = spec
        .and_then(|s| s.subdomain.as_deref())
        .unwrap_or_default();
    let as_fqdn = spec.and_then(|s| s.set_hostname_as_fqdn).unwrap_or(false);
    if as_fqdn && !subdomain.is_empty() {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        let fqdn = format!(
            "{hostname}.{subdomain}.{namespace}.svc.{}",
            settings.cluster_domain
        );
        // The kernel limits the hostname to 64 bytes; the reference fails such a pod, we keep
        // the short name rather than fail sandbox creation from a pure function.
        if fqdn.len() <= 64 {
            return fqdn;
        }
        tracing::warn!(
            pod = pod.metadata.name.as_deref().unwrap_or_default(),
            fqdn,
            "pod FQDN longer than 64 characters; using the short hostname"
        );
    }
    hostname
}

fn truncate_hostname(name: &str) -> String {
    const MAX: usize = 63;
    if name.len() <= MAX {
        return name.to_string();
    }
    let mut cut = MAX;
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    name[..cut].trim_end_matches(['-', '.']).to_string()
}

/// DNS settings for the sandbox; `None` lets the runtime use the host's resolv.conf.
fn dns_config(pod: &Pod, settings: &SpecSettings) -> Option<DnsConfig> {
    let spec = pod.spec.as_ref()?;
    let host_network = spec.host_network.unwrap_or(false);
    let policy = spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
    // ClusterFirst on the host network falls back to the host's DNS, as in the reference.
    let cluster = match policy {
        "ClusterFirstWithHostNet" => true,
        "ClusterFirst" => !host_network,
        _ => false,
    };
    let mut config = match policy {
        "None" => DnsConfig::default(),
        _ if cluster && !settings.cluster_dns.is_empty() => {
            let mut searches = Vec::new();
            let domain = &settings.cluster_domain;
            if !domain.is_empty() {
                let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
                searches.push(format!("{namespace}.svc.{domain}"));
                searches.push(format!("svc.{domain}"));
                searches.push(domain.clone());
            }
            DnsConfig {
                servers: settings.cluster_dns.clone(),
                searches,
                options: vec!["ndots:5".to_string()],
            }
        }
        // Default, ClusterFirst on the host network, or no cluster DNS configured: the host's
        // resolv.conf, which the runtime uses when given no config. The pod's own dnsConfig
        // would be merged into the host's file by the reference; without reading that file
        // here it cannot be, so it is dropped (logged).
        other => {
            if !matches!(
                other,
                "Default" | "ClusterFirst" | "ClusterFirstWithHostNet"
            ) {
                tracing::warn!(policy = other, "unknown dnsPolicy; using the host's DNS");
            }
            if spec.dns_config.is_some() {
                tracing::warn!(
                    pod = pod.metadata.name.as_deref().unwrap_or_default(),
                    "spec.dnsConfig ignored with the host's DNS"
                );
            }
            return None;
        }
    };
    if let Some(extra) = &spec.dns_config {
        for server in extra.nameservers.iter().flatten() {
            if !config.servers.contains(server) {
                config.servers.push(server.clone());
            }
        }
        for search in extra.searches.iter().flatten() {
            if !config.searches.contains(search) {
                config.searches.push(search.clone());
            }
        }
        for option in extra.options.iter().flatten() {
            let Some(name) = option.name.as_deref().filter(|n| !n.is_empty()) else {
                continue;
            };
            let rendered = match option.value.as_deref().filter(|v| !v.is_empty()) {
                Some(v) => format!("{name}:{v}"),
                None => name.to_string(),
            };
            // A pod option overrides the default of the same name (e.g. ndots).
            match config
                .options
                .iter_mut()
                .find(|o| o.split(':').next() == Some(name))
            {
                Some(existing) => *existing = rendered,
                None => config.options.push(rendered),
            }
        }
    }
    Some(config)
}

fn protocol(p: Option<&str>) -> Protocol {
    match p {
        Some("UDP") => Protocol::Udp,
        Some("SCTP") => Protocol::Sctp,
        _ => Protocol::Tcp,
    }
}

/// Ports of the regular containers that ask for a host port, without duplicates.
/// The host port mappings of a pod's containers (for the sandbox and for CNI's portMappings).
pub fn sandbox_port_mappings(pod: &Pod) -> Vec<PortMapping> {
    pod.spec.as_ref().map(port_mappings).unwrap_or_default()
}

fn port_mappings(spec: &PodSpec) -> Vec<PortMapping> {
    let mut out: Vec<PortMapping> = Vec::new();
    for port in spec
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
    {
        let host_port = port.host_port.unwrap_or(0);
        if host_port == 0 {
            continue;
        }
        let mapping = PortMapping {
            protocol: protocol(port.protocol.as_deref()),
            container_port: port.container_port,
            host_port,
            host_ip: port.host_ip.clone().unwrap_or_default(),
        };
        if !out.contains(&mapping) {
            out.push(mapping);
        }
    }
    out
}

fn has_privileged_container(spec: &PodSpec) -> bool {
    let regular = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .filter_map(|c| c.security_context.as_ref());
    let ephemeral = spec
        .ephemeral_containers
        .iter()
        .flatten()
        .filter_map(|c| c.security_context.as_ref());
    regular
        .chain(ephemeral)
        .any(|sc| sc.privileged.unwrap_or(false))
}

/// The API field path of a container (`spec.containers[2]`), for error messages.
fn container_field_path(spec: &PodSpec, name: &str) -> String {
    if let Some(i) = spec.containers.iter().position(|c| c.name == name) {
        return format!("spec.containers[{i}]");
    }
    if let Some(i) = spec
        .init_containers
        .iter()
        .flatten()
        .position(|c| c.name == name)
    {
        return format!("spec.initContainers[{i}]");
    }
    if let Some(i) = spec
        .ephemeral_containers
        .iter()
        .flatten()
        .position(|c| c.name == name)
    {
        return format!("spec.ephemeralContainers[{i}]");
    }
    format!("container {name:?}")
}

fn is_init_container(spec: &PodSpec, name: &str) -> bool {
    spec.init_containers
        .iter()
        .flatten()
        .any(|c| c.name == name)
}

/// The container config for one of the pod's containers (init or regular).
///
/// `restart_count` is the attempt; `mounts` are the volume mounts already resolved to host
/// paths; `spec_hash` goes into the annotations. Errors name the field that is wrong
/// (e.g. an env var referring to a missing key): they become `CreateContainerConfigError`.
pub fn container_config(
    pod: &Pod,
    container: &Container,
    restart_count: u32,
    mounts: Vec<Mount>,
    settings: &SpecSettings,
) -> Result<ContainerConfig, String> {
    let default_spec = PodSpec::default();
    let spec = pod.spec.as_ref().unwrap_or(&default_spec);
    let path = container_field_path(spec, &container.name);
    let meta = &pod.metadata;
    let pod_name = meta.name.as_deref().unwrap_or_default();
    let namespace = meta.namespace.as_deref().unwrap_or_default();
    let uid = meta.uid.as_deref().unwrap_or_default();

    let image = container
        .image
        .clone()
        .filter(|i| !i.is_empty())
        .ok_or_else(|| format!("{path}.image: an image is required"))?;

    let envs = make_env(pod, container, &path, settings)?;
    let env_map: BTreeMap<String, String> = envs
        .iter()
        .map(|kv| (kv.key.clone(), kv.value.clone()))
        .collect();
    let expand_all = |list: &Option<Vec<String>>| -> Vec<String> {
        list.iter()
            .flatten()
            .map(|s| expand_vars(s, &env_map))
            .collect()
    };

    let mut container_labels = labels::pod_labels(namespace, pod_name, uid);
    container_labels.insert(labels::CONTAINER_NAME.to_string(), container.name.clone());

    let annotations = container_annotations(pod, container, restart_count, &path)?;

    Ok(ContainerConfig {
        metadata: ContainerMetadata {
            name: container.name.clone(),
            attempt: restart_count,
        },
        image,
        command: expand_all(&container.command),
        args: expand_all(&container.args),
        working_dir: container.working_dir.clone().unwrap_or_default(),
        envs,
        mounts,
        labels: container_labels,
        annotations,
        log_path: format!("{}/{restart_count}.log", container.name),
        stdin: container.stdin.unwrap_or(false),
        stdin_once: container.stdin_once.unwrap_or(false),
        tty: container.tty.unwrap_or(false),
        resources: linux_resources(pod, container, &path, settings)?,
        security: security_context(spec, container, &path)?,
    })
}

fn container_annotations(
    pod: &Pod,
    container: &Container,
    restart_count: u32,
    path: &str,
) -> Result<BTreeMap<String, String>, String> {
    let spec = pod.spec.as_ref();
    let mut out = BTreeMap::new();
    out.insert(
        labels::CONTAINER_HASH.to_string(),
        labels::container_hash(container),
    );
    out.insert(
        labels::CONTAINER_RESTART_COUNT.to_string(),
        restart_count.to_string(),
    );
    out.insert(
        labels::CONTAINER_TERMINATION_MESSAGE_PATH.to_string(),
        container
            .termination_message_path
            .clone()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| DEFAULT_TERMINATION_MESSAGE_PATH.to_string()),
    );
    out.insert(
        labels::CONTAINER_TERMINATION_MESSAGE_POLICY.to_string(),
        container
            .termination_message_policy
            .clone()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| DEFAULT_TERMINATION_MESSAGE_POLICY.to_string()),
    );
    out.insert(
        labels::POD_TERMINATION_GRACE_PERIOD.to_string(),
        spec.and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(DEFAULT_TERMINATION_GRACE_PERIOD)
            .to_string(),
    );
    if let Some(grace) = pod.metadata.deletion_grace_period_seconds {
        out.insert(POD_DELETION_GRACE_PERIOD.to_string(), grace.to_string());
    }
    if let Some(pre_stop) = container
        .lifecycle
        .as_ref()
        .and_then(|l| l.pre_stop.as_ref())
    {
        let json = serde_json::to_string(pre_stop)
            .map_err(|e| format!("{path}.lifecycle.preStop: cannot encode: {e}"))?;
        out.insert(CONTAINER_PRESTOP_HANDLER.to_string(), json);
    }
    if let Some(ports) = container.ports.as_ref().filter(|p| !p.is_empty()) {
        let json = serde_json::to_string::<Vec<ContainerPort>>(ports)
            .map_err(|e| format!("{path}.ports: cannot encode: {e}"))?;
        out.insert(CONTAINER_PORTS.to_string(), json);
    }
    Ok(out)
}

/// A quantity of the container's requests or limits, `None` when unset or zero.
fn resource_quantity(
    container: &Container,
    kind: &str,
    resource: &str,
    path: &str,
    milli: bool,
) -> Result<Option<i64>, String> {
    let list = container.resources.as_ref().and_then(|r| match kind {
        "requests" => r.requests.as_ref(),
        _ => r.limits.as_ref(),
    });
    let Some(q) = list.and_then(|l| l.get(resource)) else {
        return Ok(None);
    };
    let value = if milli {
        quantity::parse_milli(q)
    } else {
        quantity::parse_units(q)
    }
    .map_err(|e| format!("{path}.resources.{kind}.{resource}: {e}"))?;
    Ok(Some(value))
}

/// The reference's `MilliCPUToShares`.
pub fn milli_cpu_to_shares(milli_cpu: i64) -> i64 {
    if milli_cpu == 0 {
        return MIN_SHARES;
    }
    (milli_cpu.saturating_mul(SHARES_PER_CPU) / MILLI_CPU_TO_CPU).clamp(MIN_SHARES, MAX_SHARES)
}

/// The reference's `milliCPUToQuota`: 0 (no quota) without a limit, at least 1ms.
pub fn milli_cpu_to_quota(milli_cpu: i64, period: i64) -> i64 {
    if milli_cpu == 0 {
        return 0;
    }
    (milli_cpu.saturating_mul(period) / MILLI_CPU_TO_CPU).max(MIN_QUOTA_US)
}

fn linux_resources(
    pod: &Pod,
    container: &Container,
    path: &str,
    settings: &SpecSettings,
) -> Result<LinuxResources, String> {
    let cpu_limit = resource_quantity(container, "limits", "cpu", path, true)?.unwrap_or(0);
    let cpu_request = match resource_quantity(container, "requests", "cpu", path, true)? {
        Some(v) => v,
        // A request left unset takes the limit (API defaulting, repeated by the reference).
        None => cpu_limit,
    };
    let memory_limit = resource_quantity(container, "limits", "memory", path, false)?.unwrap_or(0);
    Ok(LinuxResources {
        cpu_period: CPU_PERIOD_US,
        cpu_quota: milli_cpu_to_quota(cpu_limit, CPU_PERIOD_US),
        cpu_shares: milli_cpu_to_shares(cpu_request),
        memory_limit_in_bytes: memory_limit,
        oom_score_adj: oom_score_adj(pod, container, settings.node_memory_capacity),
    })
}

/// Memory request of a container in bytes (the limit when no request is set), 0 if none or
/// unparsable.
fn memory_request(container: &Container) -> i64 {
    let get = |kind: &str| {
        resource_quantity(container, kind, "memory", "", false)
            .ok()
            .flatten()
    };
    get("requests").or_else(|| get("limits")).unwrap_or(0)
}

fn is_static_or_mirror(pod: &Pod) -> bool {
    let annotations = pod.metadata.annotations.as_ref();
    let source = annotations.and_then(|a| a.get(labels::CONFIG_SOURCE));
    let mirror = annotations.is_some_and(|a| a.contains_key(labels::CONFIG_MIRROR));
    mirror || source.is_some_and(|s| s != "api")
}

/// The reference's `IsNodeCriticalPod`.
fn is_node_critical(pod: &Pod) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    spec.priority_class_name.as_deref() == Some("system-node-critical")
        && (is_static_or_mirror(pod)
            || spec.priority.is_some_and(|p| p >= SYSTEM_CRITICAL_PRIORITY))
}

/// The reference's `GetContainerOOMScoreAdjust`. Without a known memory capacity (0),
/// Burstable containers get 999: above every Guaranteed pod, just below BestEffort.
pub fn oom_score_adj(pod: &Pod, container: &Container, memory_capacity: i64) -> i64 {
    if is_node_critical(pod) {
        return GUARANTEED_OOM_SCORE_ADJ;
    }
    match qos_class(pod) {
        QosClass::Guaranteed => return GUARANTEED_OOM_SCORE_ADJ,
        QosClass::BestEffort => return BESTEFFORT_OOM_SCORE_ADJ,
        QosClass::Burstable => {}
    }
    if memory_capacity <= 0 {
        return BESTEFFORT_OOM_SCORE_ADJ - 1;
    }
    let adj_for = |request: i64| {
        let scaled = (1000_i128 * i128::from(request)) / i128::from(memory_capacity);
        1000 - i64::try_from(scaled).unwrap_or(i64::MAX / 2)
    };
    let mut adj = adj_for(memory_request(container));
    // A sidecar (restartable init container) must not be killed before the regular
    // containers it serves: it gets at most the score of the smallest of them.
    let spec = pod.spec.as_ref();
    let is_sidecar = container.restart_policy.as_deref() == Some("Always")
        && spec.is_some_and(|s| is_init_container(s, &container.name));
    if is_sidecar
        && let Some(min_request) = spec.and_then(|s| s.containers.iter().map(memory_request).min())
    {
        adj = adj.min(adj_for(min_request));
    }
    if adj < 1000 + GUARANTEED_OOM_SCORE_ADJ {
        return 1000 + GUARANTEED_OOM_SCORE_ADJ;
    }
    if adj == BESTEFFORT_OOM_SCORE_ADJ {
        return adj - 1;
    }
    adj
}

fn security_context(
    spec: &PodSpec,
    container: &Container,
    path: &str,
) -> Result<LinuxSecurityContext, String> {
    let psc = spec.security_context.as_ref();
    let csc = container.security_context.as_ref();
    let run_as_user = csc
        .and_then(|c| c.run_as_user)
        .or_else(|| psc.and_then(|p| p.run_as_user));
    let run_as_group = csc
        .and_then(|c| c.run_as_group)
        .or_else(|| psc.and_then(|p| p.run_as_group));
    let run_as_non_root = csc
        .and_then(|c| c.run_as_non_root)
        .or_else(|| psc.and_then(|p| p.run_as_non_root));
    // The image's user is checked by the runtime layer; an explicit root UID is caught here.
    if run_as_non_root == Some(true) && run_as_user == Some(0) {
        return Err(format!(
            "{path}.securityContext.runAsNonRoot: container's runAsUser breaks non-root policy"
        ));
    }
    let mut supplemental_groups: Vec<i64> = psc
        .and_then(|p| p.supplemental_groups.clone())
        .unwrap_or_default();
    if let Some(fs_group) = psc.and_then(|p| p.fs_group) {
        supplemental_groups.push(fs_group);
    }
    let mut seen = HashSet::new();
    supplemental_groups.retain(|g| seen.insert(*g));

    Ok(LinuxSecurityContext {
        run_as_user,
        run_as_group,
        supplemental_groups,
        privileged: csc.and_then(|c| c.privileged).unwrap_or(false),
        readonly_rootfs: csc
            .and_then(|c| c.read_only_root_filesystem)
            .unwrap_or(false),
        capabilities: csc
            .and_then(|c| c.capabilities.as_ref())
            .map(|caps| Capabilities {
                add: caps.add.clone().unwrap_or_default(),
                drop: caps.drop.clone().unwrap_or_default(),
            }),
        no_new_privs: csc.and_then(|c| c.allow_privilege_escalation) == Some(false),
        namespace_network: mode(spec.host_network.unwrap_or(false)),
        namespace_pid: mode(spec.host_pid.unwrap_or(false)),
        namespace_ipc: mode(spec.host_ipc.unwrap_or(false)),
    })
}
