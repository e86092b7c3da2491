//! Translation of a pod spec into runtime configs: sandbox config, container config (command,
//! env with `$(VAR)` expansion, ports, resources, security context, mounts, log path), and the
//! pod's cgroup parent by QoS class. Pure functions, except that the sandbox config reads the
//! node's resolv.conf (`SpecSettings::resolv_conf`), as the reference does for every sandbox.
//! The security context is [`super::security`]'s, DNS [`super::dns`]'s, the pod-level
//! resources and overhead [`super::pod_resources`]'s.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, ContainerPort, Pod, PodSpec};

pub use super::env::expand_vars;
use super::qos::{QosClass, qos_class};
use crate::labels;
use crate::quantity;
use crate::runtime::{
    ContainerConfig, ContainerMetadata, KeyValue, LinuxResources, LinuxSecurityContext, Mount,
    PodSandboxConfig, PortMapping, Protocol, SandboxMetadata,
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
    /// Memory capacity of the node in bytes, for the Burstable OOM score (and the
    /// downward-API value of `limits.memory` without `allocatable`). 0 means unknown:
    /// Burstable containers then get 999 (just below BestEffort).
    pub node_memory_capacity: i64,
    /// The node's allocatable resources: the downward-API value of a `limits.*` resource
    /// the container leaves unset, as the reference. `None`: the capacities above.
    pub allocatable: Option<crate::downward_api::NodeAllocatable>,
    /// CPU capacity of the node in millicores, the downward-API value of `limits.cpu` when
    /// the container sets no limit. 0 means unknown (reported as 0).
    pub node_cpu_capacity_milli: i64,
    /// The node's resolver file (`--resolv-conf`, `/etc/resolv.conf`), the base of the pods'
    /// DNS settings; empty: none (pods with the host's DNS then resolve on 127.0.0.1).
    pub resolv_conf: String,
    /// Where Localhost seccomp profiles are (`<root-dir>/seccomp`).
    pub seccomp_profile_root: String,
    /// `seccompDefault`: containers without a seccomp profile get the runtime's default
    /// rather than none.
    pub seccomp_default: bool,
}

/// Something the node could not honour as the pod asked, reported as a Warning event on
/// the pod (e.g. DNS limits exceeded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecWarning {
    /// Event reason (`DNSConfigForming`, `MissingClusterDNS`).
    pub reason: &'static str,
    /// Event message.
    pub message: String,
}

impl SpecSettings {
    /// What the downward API reports for a `limits.*` resource the container leaves unset.
    pub fn node_allocatable(&self) -> crate::downward_api::NodeAllocatable {
        self.allocatable
            .unwrap_or(crate::downward_api::NodeAllocatable {
                cpu_milli: self.node_cpu_capacity_milli,
                memory_bytes: self.node_memory_capacity,
                ephemeral_storage_bytes: 0,
            })
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
            allocatable: None,
            node_cpu_capacity_milli: 0,
            resolv_conf: "/etc/resolv.conf".to_string(),
            seccomp_profile_root: "/var/lib/kubelet/seccomp".to_string(),
            seccomp_default: false,
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

/// The sandbox config for a pod at the given sandbox attempt (the reference's
/// `generatePodSandboxConfig`). Fails, naming the field, when the pod's hostname or FQDN
/// cannot be used or the node's resolv.conf cannot be read.
pub fn sandbox_config(
    pod: &Pod,
    attempt: u32,
    settings: &SpecSettings,
) -> Result<PodSandboxConfig, String> {
    sandbox_config_with_warnings(pod, attempt, settings).map(|(config, _)| config)
}

/// [`sandbox_config`], with what the node could not honour as asked (events to record when
/// the sandbox is created).
pub fn sandbox_config_with_warnings(
    pod: &Pod,
    attempt: u32,
    settings: &SpecSettings,
) -> Result<(PodSandboxConfig, Vec<SpecWarning>), String> {
    let meta = &pod.metadata;
    let name = meta.name.clone().unwrap_or_default();
    let namespace = meta.namespace.clone().unwrap_or_default();
    let uid = meta.uid.clone().unwrap_or_default();
    let default_spec = PodSpec::default();
    let spec = pod.spec.as_ref().unwrap_or(&default_spec);
    let host_network = spec.host_network.unwrap_or(false);

    let mut sandbox_labels: BTreeMap<String, String> = meta.labels.clone().unwrap_or_default();
    sandbox_labels.extend(labels::pod_labels(&namespace, &name, &uid));

    // containerd refuses a hostname for a sandbox that shares the host's UTS namespace.
    let hostname = if host_network {
        String::new()
    } else {
        let (hostname, domain) = pod_hostname_and_domain(pod, settings)?;
        hostname_for_kernel(
            &hostname,
            &domain,
            spec.set_hostname_as_fqdn.unwrap_or(false),
        )?
    };
    let host = super::dns::host_dns(&settings.resolv_conf).map_err(|e| {
        format!(
            "Failed to generate sandbox config for pod {:?}: {e}",
            super::sync::pod_name(pod)
        )
    })?;
    let (dns, warnings) = super::dns::pod_dns(pod, settings, &host);

    let mut config = PodSandboxConfig {
        metadata: SandboxMetadata {
            name: name.clone(),
            uid: uid.clone(),
            namespace: namespace.clone(),
            attempt,
        },
        hostname,
        log_directory: pod_log_directory(&settings.pod_logs_root, &namespace, &name, &uid),
        dns_config: Some(dns),
        port_mappings: port_mappings(spec),
        labels: sandbox_labels,
        annotations: meta.annotations.clone().unwrap_or_default(),
        cgroup_parent: pod_cgroup_parent(&settings.cgroup_root, qos_class(pod), &uid),
        privileged: has_privileged_container(spec),
        ..PodSandboxConfig::default()
    };
    super::security::sandbox_security(&mut config, spec);
    config.resources = Some(super::pod_resources::sandbox_resources(pod)?);
    config.overhead = super::pod_resources::overhead_resources(pod)?;
    Ok((config, warnings))
}

/// Whether `s` is a DNS-1123 label (lower-case alphanumerics and '-', alphanumeric at both
/// ends, at most 63 characters).
fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// The pod's hostname and domain as the reference generates them
/// (`GeneratePodHostNameAndDomain`): `spec.hostname` or the pod name, cut to 63 characters;
/// the domain `<subdomain>.<namespace>.svc.<cluster domain>` when the pod has a subdomain,
/// else empty.
pub fn pod_hostname_and_domain(
    pod: &Pod,
    settings: &SpecSettings,
) -> Result<(String, String), String> {
    let spec = pod.spec.as_ref();
    let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
    let mut hostname = pod_name;
    if let Some(h) = spec
        .and_then(|s| s.hostname.as_deref())
        .filter(|h| !h.is_empty())
    {
        if !is_dns1123_label(h) {
            return Err(format!(
                "spec.hostname: pod Hostname {h:?} is not a valid DNS label"
            ));
        }
        hostname = h;
    }
    let hostname = truncate_hostname(hostname);
    if hostname.is_empty() {
        return Err(format!(
            "hostname for pod {pod_name:?} was invalid: {hostname:?}"
        ));
    }
    let mut domain = String::new();
    if let Some(sub) = spec
        .and_then(|s| s.subdomain.as_deref())
        .filter(|s| !s.is_empty())
    {
        if !is_dns1123_label(sub) {
            return Err(format!(
                "spec.subdomain: pod Subdomain {sub:?} is not a valid DNS label"
            ));
        }
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        domain = format!("{sub}.{namespace}.svc.{}", settings.cluster_domain);
    }
    Ok((hostname, domain))
}

/// The name the kernel gets (the reference's `GetNodenameForKernel`): the FQDN with
/// `setHostnameAsFQDN` and a domain, refused past 64 characters; else the hostname.
fn hostname_for_kernel(hostname: &str, domain: &str, as_fqdn: bool) -> Result<String, String> {
    const FQDN_MAX: usize = 64;
    if as_fqdn && !domain.is_empty() {
        let fqdn = format!("{hostname}.{domain}");
        if fqdn.len() > FQDN_MAX {
            return Err(format!(
                "failed to construct FQDN from pod hostname and cluster domain, FQDN {fqdn} is too long ({FQDN_MAX} characters is the max, {} characters requested)",
                fqdn.len()
            ));
        }
        return Ok(fqdn);
    }
    Ok(hostname.to_string())
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
pub(crate) fn container_field_path(spec: &PodSpec, name: &str) -> String {
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
/// paths; `envs` the environment ([`super::env::container_env`]), which `$(VAR)` references
/// in the command and args are expanded against; `spec_hash` goes into the annotations. Errors name the field that is wrong
/// (e.g. an env var referring to a missing key): they become `CreateContainerConfigError`.
pub fn container_config(
    pod: &Pod,
    container: &Container,
    restart_count: u32,
    mounts: Vec<Mount>,
    envs: Vec<KeyValue>,
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
        // Set by the caller from the container's `volumeDevices`.
        devices: Vec::new(),
        labels: container_labels,
        annotations,
        log_path: format!("{}/{restart_count}.log", container.name),
        stdin: container.stdin.unwrap_or(false),
        stdin_once: container.stdin_once.unwrap_or(false),
        tty: container.tty.unwrap_or(false),
        resources: linux_resources(pod, container, &path, settings)?,
        security: {
            // An explicit root UID under runAsNonRoot is refused here; the image's user is
            // checked when it is known (`security::apply_image_user`).
            super::security::verify_run_as_non_root(pod, container, None)?;
            security_context(spec, container, &path, settings)?
        },
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
    settings: &SpecSettings,
) -> Result<LinuxSecurityContext, String> {
    super::security::container_security(
        spec,
        container,
        path,
        &settings.seccomp_profile_root,
        settings.seccomp_default,
    )
}
