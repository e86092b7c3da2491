//! The `Runtime` seam: pod sandboxes, containers, images, exec and stats.
//!
//! The types mirror the CRI v1 API closely (so that the CRI implementation is a thin mapping)
//! but are plain Rust types, so that other runtimes (Wasm, VMs, fakes) need no protobuf.
//! Timestamps are nanoseconds since the Unix epoch, as in CRI.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::RuntimeError;

/// Result of a runtime call.
pub type RuntimeResult<T> = Result<T, RuntimeError>;

/// Identity of a pod sandbox: the pod it belongs to and how many times it was recreated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SandboxMetadata {
    /// Pod name.
    pub name: String,
    /// Pod UID.
    pub uid: String,
    /// Pod namespace.
    pub namespace: String,
    /// How many sandboxes were created for this pod before this one.
    pub attempt: u32,
}

/// A port a container or pod exposes, possibly mapped to a host port.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortMapping {
    /// `TCP`, `UDP` or `SCTP`.
    pub protocol: Protocol,
    /// Port inside the container.
    pub container_port: i32,
    /// Port on the host (0 when not mapped).
    pub host_port: i32,
    /// Host IP to bind (empty: all).
    pub host_ip: String,
}

/// Transport protocol of a port.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Protocol {
    /// TCP.
    #[default]
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

/// DNS settings handed to the sandbox.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsConfig {
    /// Name server addresses.
    pub servers: Vec<String>,
    /// Search domains.
    pub searches: Vec<String>,
    /// resolv.conf options.
    pub options: Vec<String>,
}

/// Namespace mode of a pod sandbox.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum NamespaceMode {
    /// A namespace of the pod's own, shared by its containers (for the PID namespace:
    /// `shareProcessNamespace`).
    #[default]
    Pod,
    /// A namespace of each container's own (CRI's `CONTAINER`; the PID namespace of a pod
    /// that neither shares its process namespace nor uses the host's).
    Container,
    /// The host's namespace.
    Node,
}

/// A seccomp profile, as CRI's `SecurityProfile` carries it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum SeccompProfile {
    /// The runtime's default profile.
    #[default]
    RuntimeDefault,
    /// No seccomp filtering.
    Unconfined,
    /// A profile file on the node, by absolute path.
    Localhost(String),
}

/// Everything the runtime needs to create a pod sandbox. Its default has a PID namespace
/// per container, as a pod that does not share its process namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodSandboxConfig {
    /// Pod identity.
    pub metadata: SandboxMetadata,
    /// Hostname; must be empty with host networking.
    pub hostname: String,
    /// Directory where the pod's container logs go.
    pub log_directory: String,
    /// DNS configuration.
    pub dns_config: Option<DnsConfig>,
    /// Ports to map from the host.
    pub port_mappings: Vec<PortMapping>,
    /// Labels the kubelet sets (and reads back when adopting).
    pub labels: BTreeMap<String, String>,
    /// Annotations of the pod.
    pub annotations: BTreeMap<String, String>,
    /// cgroup parent directory for the pod (derived from the QoS class).
    pub cgroup_parent: String,
    /// Network namespace mode.
    pub network: NamespaceMode,
    /// PID namespace mode.
    pub pid: NamespaceMode,
    /// IPC namespace mode.
    pub ipc: NamespaceMode,
    /// Namespaced sysctls.
    pub sysctls: BTreeMap<String, String>,
    /// Run the sandbox privileged (needed when any container is privileged).
    pub privileged: bool,
    /// Runtime handler (RuntimeClass), empty for the default.
    pub runtime_handler: String,
    /// UID the sandbox's process runs as (the pod's `securityContext.runAsUser`).
    pub run_as_user: Option<i64>,
    /// GID the sandbox's process runs as (the pod's `securityContext.runAsGroup`).
    pub run_as_group: Option<i64>,
    /// Supplemental groups of the sandbox's process (fsGroup, then supplementalGroups).
    pub supplemental_groups: Vec<i64>,
    /// Seccomp profile of the sandbox's process; `None` leaves it to the runtime.
    pub seccomp: Option<SeccompProfile>,
    /// The pod's `overhead` (RuntimeClass), as resources with requests equal to limits.
    pub overhead: Option<LinuxResources>,
    /// The sum of the pod's container resources, without the overhead.
    pub resources: Option<LinuxResources>,
}

impl Default for PodSandboxConfig {
    fn default() -> Self {
        Self {
            metadata: SandboxMetadata::default(),
            hostname: String::new(),
            log_directory: String::new(),
            dns_config: None,
            port_mappings: Vec::new(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            cgroup_parent: String::new(),
            network: NamespaceMode::Pod,
            pid: NamespaceMode::Container,
            ipc: NamespaceMode::Pod,
            sysctls: BTreeMap::new(),
            privileged: false,
            runtime_handler: String::new(),
            run_as_user: None,
            run_as_group: None,
            supplemental_groups: Vec::new(),
            seccomp: None,
            overhead: None,
            resources: None,
        }
    }
}

/// State of a pod sandbox.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SandboxState {
    /// The sandbox is running.
    Ready,
    /// The sandbox is stopped or broken.
    #[default]
    NotReady,
}

/// What the runtime reports of a pod sandbox.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodSandboxStatus {
    /// Sandbox ID.
    pub id: String,
    /// Pod identity.
    pub metadata: SandboxMetadata,
    /// State.
    pub state: SandboxState,
    /// Creation time (ns since epoch).
    pub created_at: i64,
    /// IPs of the sandbox, primary first (empty with host networking or before setup).
    pub ips: Vec<String>,
    /// Network namespace path, when the runtime reports it (used by network plugins).
    pub netns_path: Option<String>,
    /// Network namespace mode the sandbox was created with.
    pub network: NamespaceMode,
    /// Labels set at creation.
    pub labels: BTreeMap<String, String>,
    /// Annotations set at creation.
    pub annotations: BTreeMap<String, String>,
}

/// Identity of a container inside its sandbox.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerMetadata {
    /// Container name from the pod spec.
    pub name: String,
    /// How many times this container was created before in this sandbox.
    pub attempt: u32,
}

/// A key/value environment variable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyValue {
    /// Variable name.
    pub key: String,
    /// Value.
    pub value: String,
}

/// How a mount propagates between host and container.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MountPropagation {
    /// No propagation.
    #[default]
    Private,
    /// Host to container.
    HostToContainer,
    /// Both ways.
    Bidirectional,
}

/// A bind mount into a container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mount {
    /// Path inside the container.
    pub container_path: String,
    /// Path on the host.
    pub host_path: String,
    /// Mount read-only.
    pub readonly: bool,
    /// Propagation mode.
    pub propagation: MountPropagation,
}

/// A host device made available in a container (CRI `Device`): a raw block volume of the
/// container's `volumeDevices`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Device {
    /// Path of the device inside the container (the `devicePath`).
    pub container_path: String,
    /// Path of the device on the host; the runtime resolves a symlink to the device node.
    pub host_path: String,
    /// Cgroup permissions of the device: `r`, `w` and `m` (mknod), e.g. `mrw`.
    pub permissions: String,
}

/// Linux resource settings of a container, as the CRI carries them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinuxResources {
    /// CPU CFS period in microseconds (0: runtime default).
    pub cpu_period: i64,
    /// CPU CFS quota in microseconds (0: none).
    pub cpu_quota: i64,
    /// CPU shares (relative weight).
    pub cpu_shares: i64,
    /// Memory limit in bytes (0: none).
    pub memory_limit_in_bytes: i64,
    /// OOM score adjustment.
    pub oom_score_adj: i64,
}

/// Capabilities to add or drop.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// Added capabilities (without the `CAP_` prefix, as in the pod spec).
    pub add: Vec<String>,
    /// Dropped capabilities.
    pub drop: Vec<String>,
}

/// Linux security settings of a container. Its default has a PID namespace of the
/// container's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinuxSecurityContext {
    /// UID to run as.
    pub run_as_user: Option<i64>,
    /// User name to run as (the image's non-numeric user), when no UID is given.
    pub run_as_username: String,
    /// GID to run as.
    pub run_as_group: Option<i64>,
    /// Supplemental groups.
    pub supplemental_groups: Vec<i64>,
    /// Run privileged.
    pub privileged: bool,
    /// Mount the root filesystem read-only.
    pub readonly_rootfs: bool,
    /// Capabilities.
    pub capabilities: Option<Capabilities>,
    /// Disallow privilege escalation.
    pub no_new_privs: bool,
    /// Host network/PID/IPC namespaces, copied from the sandbox.
    pub namespace_network: NamespaceMode,
    /// PID namespace mode.
    pub namespace_pid: NamespaceMode,
    /// IPC namespace mode.
    pub namespace_ipc: NamespaceMode,
    /// Seccomp profile; `None` leaves it to the runtime.
    pub seccomp: Option<SeccompProfile>,
    /// Paths masked in the container (`procMount: Default`: the runtime's usual list).
    pub masked_paths: Vec<String>,
    /// Paths made read-only in the container.
    pub readonly_paths: Vec<String>,
}

impl Default for LinuxSecurityContext {
    fn default() -> Self {
        Self {
            run_as_user: None,
            run_as_username: String::new(),
            run_as_group: None,
            supplemental_groups: Vec::new(),
            privileged: false,
            readonly_rootfs: false,
            capabilities: None,
            no_new_privs: false,
            namespace_network: NamespaceMode::Pod,
            namespace_pid: NamespaceMode::Container,
            namespace_ipc: NamespaceMode::Pod,
            seccomp: None,
            masked_paths: Vec::new(),
            readonly_paths: Vec::new(),
        }
    }
}

/// Everything the runtime needs to create a container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerConfig {
    /// Name and attempt.
    pub metadata: ContainerMetadata,
    /// Image reference, as resolved by the image service.
    pub image: String,
    /// Entrypoint (the pod spec's `command`).
    pub command: Vec<String>,
    /// Arguments.
    pub args: Vec<String>,
    /// Working directory.
    pub working_dir: String,
    /// Environment.
    pub envs: Vec<KeyValue>,
    /// Mounts.
    pub mounts: Vec<Mount>,
    /// Devices (raw block volumes).
    pub devices: Vec<Device>,
    /// Labels the kubelet sets (pod and container identity).
    pub labels: BTreeMap<String, String>,
    /// Annotations the kubelet sets (spec hash, restart count, termination settings).
    pub annotations: BTreeMap<String, String>,
    /// Log path relative to the sandbox's log directory.
    pub log_path: String,
    /// Keep stdin open.
    pub stdin: bool,
    /// Close stdin after the first attach.
    pub stdin_once: bool,
    /// Allocate a TTY.
    pub tty: bool,
    /// Resources.
    pub resources: LinuxResources,
    /// Security settings.
    pub security: LinuxSecurityContext,
}

/// State of a container.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ContainerState {
    /// Created, not started.
    Created,
    /// Running.
    Running,
    /// Exited.
    Exited,
    /// The runtime does not know.
    #[default]
    Unknown,
}

/// What the runtime reports of a container. A list call may leave the detail fields (exit
/// code, times other than creation, reason, message) empty; [`Runtime::container_status`]
/// fills them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerStatus {
    /// Container ID.
    pub id: String,
    /// Sandbox the container belongs to.
    pub sandbox_id: String,
    /// Name and attempt.
    pub metadata: ContainerMetadata,
    /// State.
    pub state: ContainerState,
    /// Creation time (ns since epoch).
    pub created_at: i64,
    /// Start time (ns since epoch, 0 if never started).
    pub started_at: i64,
    /// Finish time (ns since epoch, 0 if not finished).
    pub finished_at: i64,
    /// Exit code (valid when exited).
    pub exit_code: i32,
    /// Image spec the container was created from.
    pub image: String,
    /// Resolved image reference (digest).
    pub image_ref: String,
    /// Short reason, e.g. `OOMKilled`, `Completed`, `Error`.
    pub reason: String,
    /// Longer message.
    pub message: String,
    /// Labels set at creation.
    pub labels: BTreeMap<String, String>,
    /// Annotations set at creation.
    pub annotations: BTreeMap<String, String>,
    /// Absolute log path, if any.
    pub log_path: String,
}

/// An image known to the runtime.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageInfo {
    /// Image ID.
    pub id: String,
    /// Tags.
    pub repo_tags: Vec<String>,
    /// Digests.
    pub repo_digests: Vec<String>,
    /// Size in bytes.
    pub size: u64,
    /// Whether the image is pinned (never garbage collected).
    pub pinned: bool,
    /// The numeric user the image runs as (its config's `User`), when numeric.
    pub uid: Option<i64>,
    /// The image's user when it is a name rather than a number.
    pub username: String,
}

/// Usage of one of the runtime's image filesystems (CRI `ImageFsInfo`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageFsInfo {
    /// Where the filesystem holding the images is mounted (e.g.
    /// `/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs`).
    pub mountpoint: String,
    /// Bytes the images use on it.
    pub used_bytes: Option<u64>,
    /// Inodes the images use on it.
    pub inodes_used: Option<u64>,
}

/// Registry credentials for a pull.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthConfig {
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
    /// Base64 `user:password`.
    pub auth: String,
    /// Server address.
    pub server_address: String,
    /// Identity token.
    pub identity_token: String,
    /// Registry token.
    pub registry_token: String,
}

/// Output of a synchronous exec.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecResult {
    /// Captured stdout.
    pub stdout: Vec<u8>,
    /// Captured stderr.
    pub stderr: Vec<u8>,
    /// Exit code.
    pub exit_code: i32,
}

/// Which standard streams a streaming exec or attach carries, and whether it has a TTY
/// (with a TTY, stderr is merged into stdout and must not be asked for).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamOptions {
    /// Allocate a TTY.
    pub tty: bool,
    /// Stream stdin.
    pub stdin: bool,
    /// Stream stdout.
    pub stdout: bool,
    /// Stream stderr.
    pub stderr: bool,
}

/// Resource usage of one container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerStats {
    /// Container ID.
    pub id: String,
    /// Container name and attempt.
    pub metadata: ContainerMetadata,
    /// When the sample was taken (ns since epoch).
    pub timestamp: i64,
    /// Cumulative CPU time in nanoseconds.
    pub cpu_usage_core_nanoseconds: Option<u64>,
    /// Memory working set in bytes.
    pub memory_working_set_bytes: Option<u64>,
    /// Bytes used by the container's writable layer.
    pub writable_layer_used_bytes: Option<u64>,
}

/// Resource usage of one pod sandbox as the runtime measures it (CRI `PodSandboxStats`,
/// Linux): the pod's cgroup and network namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodSandboxStats {
    /// Sandbox ID.
    pub id: String,
    /// The pod it belongs to.
    pub metadata: SandboxMetadata,
    /// When the sample was taken (ns since epoch).
    pub timestamp: i64,
    /// Cumulative CPU time of the pod in nanoseconds.
    pub cpu_usage_core_nanoseconds: Option<u64>,
    /// Memory working set of the pod in bytes.
    pub memory_working_set_bytes: Option<u64>,
    /// Memory in use, page cache included.
    pub memory_usage_bytes: Option<u64>,
    /// Anonymous memory.
    pub memory_rss_bytes: Option<u64>,
    /// The network interfaces of the pod's namespace, the default one first.
    pub network: Vec<InterfaceUsage>,
    /// How many processes run in the pod.
    pub process_count: Option<u64>,
    /// Its containers' usage.
    pub containers: Vec<ContainerStats>,
}

/// Counters of one network interface (CRI `NetworkInterfaceUsage`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InterfaceUsage {
    /// Interface name.
    pub name: String,
    /// Bytes received.
    pub rx_bytes: Option<u64>,
    /// Receive errors.
    pub rx_errors: Option<u64>,
    /// Bytes sent.
    pub tx_bytes: Option<u64>,
    /// Transmit errors.
    pub tx_errors: Option<u64>,
}

/// Which sandboxes or containers a list call returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    /// Only those of the pod with this UID (the `io.kubernetes.pod.uid` label).
    pub pod_uid: Option<String>,
}

impl ListFilter {
    /// Everything.
    pub fn all() -> Self {
        Self::default()
    }

    /// Only what belongs to one pod.
    pub fn pod(uid: impl Into<String>) -> Self {
        Self {
            pod_uid: Some(uid.into()),
        }
    }
}

/// Name and version of the runtime.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeVersion {
    /// e.g. `containerd`.
    pub runtime_name: String,
    /// e.g. `1.6.20`.
    pub runtime_version: String,
    /// API version, e.g. `v1`.
    pub runtime_api_version: String,
}

/// One condition of the runtime, as CRI's `RuntimeCondition`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeCondition {
    /// Condition type: [`RuntimeStatus::RUNTIME_READY`], [`RuntimeStatus::NETWORK_READY`], or
    /// one the runtime defines.
    pub type_: String,
    /// Whether the condition holds.
    pub status: bool,
    /// Short machine-readable reason when it does not hold (e.g. `NetworkPluginNotReady`).
    pub reason: String,
    /// Human-readable message when it does not hold.
    pub message: String,
}

impl RuntimeCondition {
    /// A condition that holds.
    pub fn ready(type_: impl Into<String>) -> Self {
        Self {
            type_: type_.into(),
            status: true,
            ..Self::default()
        }
    }

    /// A condition that does not hold, with its reason and message.
    pub fn not_ready(
        type_: impl Into<String>,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_: type_.into(),
            status: false,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// The readiness of the runtime, as CRI's `Status` reports it. The kubelet requires the
/// [`RuntimeStatus::RUNTIME_READY`] and [`RuntimeStatus::NETWORK_READY`] conditions to hold for
/// the node to be Ready.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeStatus {
    /// The runtime's conditions.
    pub conditions: Vec<RuntimeCondition>,
}

impl RuntimeStatus {
    /// The runtime is up and ready to run pod sandboxes and containers.
    pub const RUNTIME_READY: &'static str = "RuntimeReady";
    /// The runtime's network is ready to accept pods.
    pub const NETWORK_READY: &'static str = "NetworkReady";

    /// Both required conditions hold.
    pub fn ready() -> Self {
        Self {
            conditions: vec![
                RuntimeCondition::ready(Self::RUNTIME_READY),
                RuntimeCondition::ready(Self::NETWORK_READY),
            ],
        }
    }

    /// The condition of this type, if the runtime reported it.
    pub fn condition(&self, type_: &str) -> Option<&RuntimeCondition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }
}

/// A container runtime. One implementation per runtime family: CRI (`kubelet-cri`), the
/// in-memory fake (`testing` feature), or an embedder's own.
///
/// Calls are independent and may run concurrently; the reconciler guarantees that only one
/// pod worker touches a given pod's sandboxes and containers at a time.
#[async_trait]
pub trait Runtime: Send + Sync + 'static {
    /// Name and version of the runtime (for node info).
    async fn version(&self) -> RuntimeResult<RuntimeVersion>;
    /// Readiness of the runtime and its network (CRI `Status`), polled for the node's Ready
    /// condition.
    async fn status(&self) -> RuntimeResult<RuntimeStatus>;

    /// Create and start a pod sandbox; returns its ID.
    async fn run_pod_sandbox(&self, config: &PodSandboxConfig) -> RuntimeResult<String>;
    /// Stop a sandbox and any container in it. Stopping a stopped sandbox succeeds.
    async fn stop_pod_sandbox(&self, sandbox_id: &str) -> RuntimeResult<()>;
    /// Remove a sandbox and its containers. Removing an absent sandbox succeeds.
    async fn remove_pod_sandbox(&self, sandbox_id: &str) -> RuntimeResult<()>;
    /// Status of one sandbox.
    async fn pod_sandbox_status(&self, sandbox_id: &str) -> RuntimeResult<PodSandboxStatus>;
    /// Sandboxes matching the filter (IPs and netns may be left empty; ask
    /// `pod_sandbox_status` for them).
    async fn list_pod_sandboxes(&self, filter: &ListFilter)
    -> RuntimeResult<Vec<PodSandboxStatus>>;

    /// Create a container in a sandbox; returns its ID.
    async fn create_container(
        &self,
        sandbox_id: &str,
        config: &ContainerConfig,
        sandbox_config: &PodSandboxConfig,
    ) -> RuntimeResult<String>;
    /// Start a created container.
    async fn start_container(&self, container_id: &str) -> RuntimeResult<()>;
    /// Stop a container: SIGTERM, then SIGKILL after `timeout`. Stopping an exited container
    /// succeeds.
    async fn stop_container(&self, container_id: &str, timeout: Duration) -> RuntimeResult<()>;
    /// Remove a container. Removing an absent container succeeds.
    async fn remove_container(&self, container_id: &str) -> RuntimeResult<()>;
    /// Full status of one container.
    async fn container_status(&self, container_id: &str) -> RuntimeResult<ContainerStatus>;
    /// Containers matching the filter (detail fields may be empty; see [`ContainerStatus`]).
    async fn list_containers(&self, filter: &ListFilter) -> RuntimeResult<Vec<ContainerStatus>>;

    /// The image if present on the node, `None` if absent.
    async fn image_status(&self, image: &str) -> RuntimeResult<Option<ImageInfo>>;
    /// Pull an image; returns the resolved image reference.
    async fn pull_image(&self, image: &str, auth: Option<&AuthConfig>) -> RuntimeResult<String>;
    /// All images on the node.
    async fn list_images(&self) -> RuntimeResult<Vec<ImageInfo>>;
    /// Remove an image. Removing an absent image succeeds.
    async fn remove_image(&self, image: &str) -> RuntimeResult<()>;

    /// Run a command in a running container and wait for it, at most `timeout`
    /// ([`RuntimeError::DeadlineExceeded`] past it).
    async fn exec_sync(
        &self,
        container_id: &str,
        cmd: &[String],
        timeout: Duration,
    ) -> RuntimeResult<ExecResult>;

    /// Prepare a streaming exec of `cmd` in a running container (CRI `Exec`): the URL on the
    /// runtime's streaming server that serves it (SPDY or WebSocket), for the kubelet's
    /// server to proxy the client's connection to. Runtimes without a streaming server keep
    /// this default, which refuses.
    async fn exec_stream(
        &self,
        container_id: &str,
        cmd: &[String],
        opts: StreamOptions,
    ) -> RuntimeResult<String> {
        let _ = (cmd, opts);
        Err(RuntimeError::Unsupported(format!(
            "exec in container {container_id}: this runtime has no streaming server"
        )))
    }

    /// Prepare a streaming attach to a running container's main process (CRI `Attach`): the
    /// URL that serves it.
    async fn attach_stream(
        &self,
        container_id: &str,
        opts: StreamOptions,
    ) -> RuntimeResult<String> {
        let _ = opts;
        Err(RuntimeError::Unsupported(format!(
            "attach to container {container_id}: this runtime has no streaming server"
        )))
    }

    /// Prepare port forwarding into a pod sandbox's network namespace (CRI `PortForward`):
    /// the URL that serves it.
    async fn port_forward_stream(&self, sandbox_id: &str, ports: &[i32]) -> RuntimeResult<String> {
        let _ = ports;
        Err(RuntimeError::Unsupported(format!(
            "port forward to sandbox {sandbox_id}: this runtime has no streaming server"
        )))
    }

    /// Ask the runtime to reopen a container's log file (CRI `ReopenContainerLog`), after
    /// the kubelet renamed it in log rotation.
    async fn reopen_container_log(&self, container_id: &str) -> RuntimeResult<()> {
        Err(RuntimeError::Unsupported(format!(
            "reopen the log of container {container_id}: not supported by this runtime"
        )))
    }

    /// The runtime's image filesystems and what the images use there (CRI `ImageFsInfo`),
    /// for image garbage collection and stats. Runtimes that cannot tell keep this default,
    /// which refuses ([`RuntimeError::Unsupported`]); image GC is then off.
    async fn image_fs_info(&self) -> RuntimeResult<Vec<ImageFsInfo>> {
        Err(RuntimeError::Unsupported(
            "ImageFsInfo: not supported by this runtime".to_string(),
        ))
    }

    /// Usage of one container (`None` if the runtime has no sample).
    async fn container_stats(&self, container_id: &str) -> RuntimeResult<Option<ContainerStats>>;
    /// Usage of all containers.
    async fn list_container_stats(&self) -> RuntimeResult<Vec<ContainerStats>>;
    /// Usage of all pod sandboxes (CRI `ListPodSandboxStats`). Runtimes that do not measure
    /// pods keep this default, which refuses ([`RuntimeError::Unsupported`]); the stats
    /// collector then measures the pods' cgroups itself.
    async fn list_pod_sandbox_stats(&self) -> RuntimeResult<Vec<PodSandboxStats>> {
        Err(RuntimeError::Unsupported(
            "ListPodSandboxStats: not supported by this runtime".to_string(),
        ))
    }
}
