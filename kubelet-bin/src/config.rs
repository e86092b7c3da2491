//! The KubeletConfiguration file (`kubelet.config.k8s.io/v1beta1`), its merge with the flags
//! and the validation of the result.
//!
//! Precedence is the reference's: flags > config file > defaults. Decoding is strict, as the
//! reference's strict decoder: a field this kubelet does not know is an error naming the field
//! and the file, and a field the reference has but this kubelet does not implement is an error
//! saying so, so that nobody believes a setting took effect when it did not.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::Taint;
use serde::Deserialize;
use thiserror::Error;

use crate::duration::{DurationError, parse_duration};
use crate::flags::Flags;

mod eviction;

/// The only config API version this kubelet reads.
pub const API_VERSION: &str = "kubelet.config.k8s.io/v1beta1";
/// The config kind.
pub const KIND: &str = "KubeletConfiguration";

/// Default CRI endpoint (containerd's).
pub const DEFAULT_RUNTIME_ENDPOINT: &str = "unix:///run/containerd/containerd.sock";
/// Default state directory.
pub const DEFAULT_ROOT_DIR: &str = "/var/lib/kubelet";
/// Default root of the pod log directories.
pub const DEFAULT_POD_LOGS_DIR: &str = "/var/log/pods";
/// Default healthz address.
pub const DEFAULT_HEALTHZ_BIND_ADDRESS: &str = "127.0.0.1";
/// Default healthz port.
pub const DEFAULT_HEALTHZ_PORT: u16 = 10248;
/// Default runtime request timeout.
pub const DEFAULT_RUNTIME_REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Default static directory rescan period.
pub const DEFAULT_FILE_CHECK_FREQUENCY: Duration = Duration::from_secs(20);
/// Default manifest URL fetch period.
pub const DEFAULT_HTTP_CHECK_FREQUENCY: Duration = Duration::from_secs(20);
/// Default period of full pod syncs.
pub const DEFAULT_SYNC_FREQUENCY: Duration = Duration::from_secs(60);
/// Default node status computation period.
pub const DEFAULT_NODE_STATUS_UPDATE_FREQUENCY: Duration = Duration::from_secs(10);
/// Default node status report period when nodeStatusUpdateFrequency is not set.
pub const DEFAULT_NODE_STATUS_REPORT_FREQUENCY: Duration = Duration::from_secs(300);
/// Default maximum number of pods.
pub const DEFAULT_MAX_PODS: u32 = 110;
/// Default address of the kubelet server.
pub const DEFAULT_ADDRESS: IpAddr = IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);
/// Default port of the kubelet server.
pub const DEFAULT_PORT: u16 = 10250;
/// Default duration of the node's Lease.
pub const DEFAULT_NODE_LEASE_DURATION_SECONDS: u32 = 40;

/// Fields of the reference's KubeletConfiguration that this kubelet does not implement.
/// Setting one is an error rather than a silent no-op.
const UNSUPPORTED_FIELDS: &[&str] = &[
    "allowedUnsafeSysctls",
    "configMapAndSecretChangeDetectionStrategy",
    "containerLogMaxWorkers",
    "containerLogMonitorInterval",
    "contentType",
    "cpuCFSQuota",
    "cpuCFSQuotaPeriod",
    "cpuManagerPolicy",
    "cpuManagerPolicyOptions",
    "cpuManagerReconcilePeriod",
    "crashLoopBackOff",
    "enableContentionProfiling",
    "enableControllerAttachDetach",
    "enableDebugFlagsHandler",
    "enableDebuggingHandlers",
    "enableProfilingHandler",
    "enableServer",
    "enableSystemLogHandler",
    "enableSystemLogQuery",
    "eventBurst",
    "eventRecordQPS",
    "failCgroupV1",
    "failSwapOn",
    "featureGates",
    "hairpinMode",
    "imageMaximumGCAge",
    "imagePullCredentialsVerificationPolicy",
    "imageServiceEndpoint",
    "iptablesDropBit",
    "iptablesMasqueradeBit",
    "kernelMemcgNotification",
    "kubeAPIBurst",
    "kubeAPIQPS",
    "kubeReserved",
    "kubeReservedCgroup",
    "kubeletCgroups",
    "localStorageCapacityIsolation",
    "logging",
    "makeIPTablesUtilChains",
    "maxOpenFiles",
    "maxParallelImagePulls",
    "memoryManagerPolicy",
    "memorySwap",
    "memoryThrottlingFactor",
    "nodeStatusMaxImages",
    "oomScoreAdj",
    "podCIDR",
    "podsPerCore",
    "preloadedImagesVerificationAllowlist",
    "protectKernelDefaults",
    "providerID",
    "qosReserved",
    "registryBurst",
    "registryPullQPS",
    "reservedMemory",
    "reservedSystemCPUs",
    "rotateCertificates",
    "runOnce",
    "serializeImagePulls",
    "serverTLSBootstrap",
    "showHiddenMetricsForVersion",
    "shutdownGracePeriod",
    "shutdownGracePeriodByPodPriority",
    "shutdownGracePeriodCriticalPods",
    "singleProcessOOMKill",
    "streamingConnectionIdleTimeout",
    "systemCgroups",
    "systemReserved",
    "systemReservedCgroup",
    "topologyManagerPolicy",
    "topologyManagerPolicyOptions",
    "topologyManagerScope",
    "tracing",
    "userNamespaces",
    "volumePluginDir",
    "volumeStatsAggPeriod",
];

/// What went wrong reading the config file or validating the merged settings.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid YAML or JSON, or not a mapping at the top.
    #[error("config file {path}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// `apiVersion` or `kind` is missing or not the KubeletConfiguration's.
    #[error("config file {path}: {message}")]
    WrongType {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A field neither this kubelet nor the reference knows.
    #[error("config file {path}: unknown field {field:?}")]
    UnknownField {
        /// The file.
        path: PathBuf,
        /// The field as written.
        field: String,
    },
    /// A field of the reference's KubeletConfiguration that this kubelet does not implement.
    #[error("config file {path}: field {field:?} is not supported by this kubelet")]
    UnsupportedField {
        /// The file.
        path: PathBuf,
        /// The field as written.
        field: String,
    },
    /// A value that does not fit its field's type or rules. `origin` names the flag, or the
    /// field and the file.
    #[error("{origin}: {message}")]
    Invalid {
        /// Where the value came from.
        origin: Origin,
        /// What is wrong.
        message: String,
    },
    /// The node name could not be determined.
    #[error("node name: {0}")]
    NodeName(String),
}

/// Where a setting's value came from, for messages that point at the right place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A command-line flag (`--sync-frequency`).
    Flag(&'static str),
    /// A field of the config file.
    File {
        /// The field (`syncFrequency`).
        field: String,
        /// The file.
        path: PathBuf,
    },
    /// The built-in default.
    Default(&'static str),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Flag(flag) => write!(f, "flag {flag}"),
            Self::File { field, path } => {
                write!(f, "field {field:?} in config file {}", path.display())
            }
            Self::Default(field) => write!(f, "default {field}"),
        }
    }
}

/// The fields of the KubeletConfiguration this kubelet implements, as written in the file.
/// Durations stay strings here: they are parsed during validation so that their errors name
/// the field.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubeletConfigurationFile {
    /// Must be [`API_VERSION`].
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    /// Must be [`KIND`].
    pub kind: String,
    /// Directory of static pod manifests.
    #[serde(rename = "staticPodPath")]
    pub static_pod_path: Option<String>,
    /// URL of static pod manifests.
    #[serde(rename = "staticPodURL")]
    pub static_pod_url: Option<String>,
    /// HTTP headers for the manifest URL.
    #[serde(rename = "staticPodURLHeader")]
    pub static_pod_url_header: Option<BTreeMap<String, Vec<String>>>,
    /// The CRI endpoint.
    #[serde(rename = "containerRuntimeEndpoint")]
    pub container_runtime_endpoint: Option<String>,
    /// Static directory rescan period.
    #[serde(rename = "fileCheckFrequency")]
    pub file_check_frequency: Option<String>,
    /// Manifest URL fetch period.
    #[serde(rename = "httpCheckFrequency")]
    pub http_check_frequency: Option<String>,
    /// Full pod sync period.
    #[serde(rename = "syncFrequency")]
    pub sync_frequency: Option<String>,
    /// Timeout of runtime calls.
    #[serde(rename = "runtimeRequestTimeout")]
    pub runtime_request_timeout: Option<String>,
    /// Node status computation period.
    #[serde(rename = "nodeStatusUpdateFrequency")]
    pub node_status_update_frequency: Option<String>,
    /// Node status report period.
    #[serde(rename = "nodeStatusReportFrequency")]
    pub node_status_report_frequency: Option<String>,
    /// Healthz server address.
    #[serde(rename = "healthzBindAddress")]
    pub healthz_bind_address: Option<String>,
    /// Healthz server port (0 disables).
    #[serde(rename = "healthzPort")]
    pub healthz_port: Option<i32>,
    /// Root of the pod log directories.
    #[serde(rename = "podLogsDir")]
    pub pod_logs_dir: Option<String>,
    /// Parent cgroup of the pods' QoS cgroups.
    #[serde(rename = "cgroupRoot")]
    pub cgroup_root: Option<String>,
    /// Cgroup driver (`cgroupfs` only).
    #[serde(rename = "cgroupDriver")]
    pub cgroup_driver: Option<String>,
    /// Cluster DNS servers.
    #[serde(rename = "clusterDNS")]
    pub cluster_dns: Option<Vec<String>>,
    /// Cluster domain.
    #[serde(rename = "clusterDomain")]
    pub cluster_domain: Option<String>,
    /// The resolver file pods' DNS settings start from (empty: none).
    #[serde(rename = "resolvConf")]
    pub resolv_conf: Option<String>,
    /// Give containers without a seccomp profile the runtime's default one.
    #[serde(rename = "seccompDefault")]
    pub seccomp_default: Option<bool>,
    /// One cgroup per QoS class and per pod below cgroupRoot.
    #[serde(rename = "cgroupsPerQOS")]
    pub cgroups_per_qos: Option<bool>,
    /// Levels of node allocatable enforcement (`pods`, or `none`).
    #[serde(rename = "enforceNodeAllocatable")]
    pub enforce_node_allocatable: Option<Vec<String>>,
    /// Most processes per pod (-1: unlimited).
    #[serde(rename = "podPidsLimit")]
    pub pod_pids_limit: Option<i64>,
    /// Maximum number of pods.
    #[serde(rename = "maxPods")]
    pub max_pods: Option<i32>,
    /// Address of the kubelet server.
    pub address: Option<String>,
    /// Port of the kubelet server.
    pub port: Option<i32>,
    /// Port of the read-only kubelet server (0 disables).
    #[serde(rename = "readOnlyPort")]
    pub read_only_port: Option<i32>,
    /// Whether to register the node with the API server.
    #[serde(rename = "registerNode")]
    pub register_node: Option<bool>,
    /// Taints the node registers with.
    #[serde(rename = "registerWithTaints")]
    pub register_with_taints: Option<Vec<Taint>>,
    /// Duration of the node's Lease, in seconds.
    #[serde(rename = "nodeLeaseDurationSeconds")]
    pub node_lease_duration_seconds: Option<i32>,
    /// Size at which container logs are rotated (a quantity).
    #[serde(rename = "containerLogMaxSize")]
    pub container_log_max_size: Option<String>,
    /// Most log files kept per container.
    #[serde(rename = "containerLogMaxFiles")]
    pub container_log_max_files: Option<i32>,
    /// Image filesystem usage percent at or above which images are collected.
    #[serde(rename = "imageGCHighThresholdPercent")]
    pub image_gc_high_threshold_percent: Option<i32>,
    /// Image filesystem usage percent collection frees down to.
    #[serde(rename = "imageGCLowThresholdPercent")]
    pub image_gc_low_threshold_percent: Option<i32>,
    /// Minimum age of an unused image before it is collected (a duration).
    #[serde(rename = "imageMinimumGCAge")]
    pub image_minimum_gc_age: Option<String>,
    /// Serving certificate of the kubelet server (PEM).
    #[serde(rename = "tlsCertFile")]
    pub tls_cert_file: Option<String>,
    /// Its private key (PEM).
    #[serde(rename = "tlsPrivateKeyFile")]
    pub tls_private_key_file: Option<String>,
    /// Minimum TLS version (`VersionTLS12`, `VersionTLS13`).
    #[serde(rename = "tlsMinVersion")]
    pub tls_min_version: Option<String>,
    /// Cipher suites (IANA names).
    #[serde(rename = "tlsCipherSuites")]
    pub tls_cipher_suites: Option<Vec<String>>,
    /// Hard eviction thresholds (signal to quantity or percentage).
    #[serde(rename = "evictionHard")]
    pub eviction_hard: Option<BTreeMap<String, String>>,
    /// Soft eviction thresholds.
    #[serde(rename = "evictionSoft")]
    pub eviction_soft: Option<BTreeMap<String, String>>,
    /// Grace periods of the soft thresholds (signal to duration).
    #[serde(rename = "evictionSoftGracePeriod")]
    pub eviction_soft_grace_period: Option<BTreeMap<String, String>>,
    /// The least reclaimed once a threshold is met (signal to quantity or percentage).
    #[serde(rename = "evictionMinimumReclaim")]
    pub eviction_minimum_reclaim: Option<BTreeMap<String, String>>,
    /// The most a soft eviction gives a pod to stop, in seconds.
    #[serde(rename = "evictionMaxPodGracePeriod")]
    pub eviction_max_pod_grace_period: Option<i32>,
    /// How long a pressure condition outlives its threshold (a duration).
    #[serde(rename = "evictionPressureTransitionPeriod")]
    pub eviction_pressure_transition_period: Option<String>,
    /// Whether the default hard thresholds fill the signals `evictionHard` leaves out.
    #[serde(rename = "mergeDefaultEvictionSettings")]
    pub merge_default_eviction_settings: Option<bool>,
    /// How requests to the kubelet server are authenticated.
    pub authentication: Option<AuthenticationFile>,
    /// How requests to the kubelet server are authorized.
    pub authorization: Option<AuthorizationFile>,
}

/// `authentication` of the KubeletConfiguration.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthenticationFile {
    /// `x509`.
    pub x509: Option<X509File>,
    /// `webhook`.
    pub webhook: Option<AuthnWebhookFile>,
    /// `anonymous`.
    pub anonymous: Option<AnonymousFile>,
}

/// `authentication.x509`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct X509File {
    /// CA bundle that client certificates must chain to.
    #[serde(rename = "clientCAFile")]
    pub client_ca_file: Option<String>,
}

/// `authentication.webhook`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthnWebhookFile {
    /// Check bearer tokens with TokenReviews.
    pub enabled: Option<bool>,
    /// How long answers are cached.
    #[serde(rename = "cacheTTL")]
    pub cache_ttl: Option<String>,
}

/// `authentication.anonymous`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnonymousFile {
    /// Let requests without credentials in as `system:anonymous`.
    pub enabled: Option<bool>,
}

/// `authorization` of the KubeletConfiguration.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationFile {
    /// `AlwaysAllow` or `Webhook`.
    pub mode: Option<String>,
    /// `webhook`.
    pub webhook: Option<AuthzWebhookFile>,
}

/// `authorization.webhook`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthzWebhookFile {
    /// How long allowed answers are cached.
    #[serde(rename = "cacheAuthorizedTTL")]
    pub cache_authorized_ttl: Option<String>,
    /// How long denied answers are cached.
    #[serde(rename = "cacheUnauthorizedTTL")]
    pub cache_unauthorized_ttl: Option<String>,
}

/// How the kubelet server authorizes requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthorizationMode {
    /// Every authenticated request is allowed.
    AlwaysAllow,
    /// SubjectAccessReviews to the API server.
    Webhook,
}

/// The kubelet server's authentication and authorization settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerAuth {
    /// CA bundle for client certificates (`clientCAFile`).
    pub client_ca_file: Option<PathBuf>,
    /// Requests without credentials are `system:anonymous`.
    pub anonymous: bool,
    /// Bearer tokens are checked by TokenReviews.
    pub token_webhook: bool,
    /// TokenReview answers are cached this long.
    pub token_webhook_cache_ttl: Duration,
    /// The authorization mode.
    pub mode: AuthorizationMode,
    /// Allowed SubjectAccessReview answers are cached this long.
    pub cache_authorized_ttl: Duration,
    /// Denied SubjectAccessReview answers are cached this long.
    pub cache_unauthorized_ttl: Duration,
}

/// A config file as read: its path and its fields.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// Its fields.
    pub fields: KubeletConfigurationFile,
}

impl ConfigFile {
    /// Read and strictly decode a KubeletConfiguration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Strictly decode a KubeletConfiguration document; `path` is for messages.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let syntax = |message: String| ConfigError::Syntax {
            path: path.to_path_buf(),
            message,
        };
        // JSON is YAML too, but serde_json's messages are better for JSON files.
        let document: serde_json::Value = if text.trim_start().starts_with('{') {
            serde_json::from_str(text).map_err(|e| syntax(format!("invalid JSON: {e}")))?
        } else {
            serde_saphyr::from_str(text).map_err(|e| syntax(format!("invalid YAML: {e}")))?
        };
        let serde_json::Value::Object(map) = &document else {
            return Err(syntax(
                "expected a KubeletConfiguration mapping at the top".to_string(),
            ));
        };

        let wrong_type = |message: String| ConfigError::WrongType {
            path: path.to_path_buf(),
            message,
        };
        match map.get("apiVersion") {
            Some(serde_json::Value::String(v)) if v == API_VERSION => {}
            Some(other) => {
                return Err(wrong_type(format!(
                    "apiVersion {other} is not supported: expected {API_VERSION:?}"
                )));
            }
            None => {
                return Err(wrong_type(format!(
                    "apiVersion is missing: expected {API_VERSION:?}"
                )));
            }
        }
        match map.get("kind") {
            Some(serde_json::Value::String(k)) if k == KIND => {}
            Some(other) => {
                return Err(wrong_type(format!(
                    "kind {other} is not supported: expected {KIND:?}"
                )));
            }
            None => return Err(wrong_type(format!("kind is missing: expected {KIND:?}"))),
        }
        for key in map.keys() {
            if UNSUPPORTED_FIELDS.contains(&key.as_str()) {
                return Err(ConfigError::UnsupportedField {
                    path: path.to_path_buf(),
                    field: key.clone(),
                });
            }
        }

        let fields: KubeletConfigurationFile =
            serde_path_to_error::deserialize(document).map_err(|e| {
                let field = e.path().to_string();
                let inner = e.into_inner().to_string();
                // serde's own wording is `unknown field `x`, expected one of ...`: turn it into
                // ours, which names the file and keeps the list out.
                if let Some(rest) = inner.strip_prefix("unknown field `") {
                    let name = rest.split('`').next().unwrap_or(rest).to_string();
                    return ConfigError::UnknownField {
                        path: path.to_path_buf(),
                        field: name,
                    };
                }
                ConfigError::Invalid {
                    origin: Origin::File {
                        field,
                        path: path.to_path_buf(),
                    },
                    message: inner,
                }
            })?;
        Ok(Self {
            path: path.to_path_buf(),
            fields,
        })
    }

    fn origin(&self, field: &str) -> Origin {
        Origin::File {
            field: field.to_string(),
            path: self.path.clone(),
        }
    }
}

/// The cgroup driver. Only cgroupfs is implemented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupDriver {
    /// Cgroups managed through the cgroup filesystem.
    Cgroupfs,
}

/// The daemon's settings after merging flags, file and defaults, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The node's name (lowercase).
    pub node_name: String,
    /// The kubelet's state directory.
    pub root_dir: PathBuf,
    /// Directory of static pod manifests, if any.
    pub static_pod_path: Option<PathBuf>,
    /// URL of static pod manifests, if any.
    pub static_pod_url: Option<String>,
    /// Headers sent with manifest URL requests.
    pub static_pod_url_header: BTreeMap<String, Vec<String>>,
    /// The CRI endpoint, always as `unix:///absolute/path`.
    pub container_runtime_endpoint: String,
    /// Timeout of runtime calls.
    pub runtime_request_timeout: Duration,
    /// Static directory rescan period.
    pub file_check_frequency: Duration,
    /// Manifest URL fetch period.
    pub http_check_frequency: Duration,
    /// Full pod sync period.
    pub sync_frequency: Duration,
    /// Where the healthz server listens; `None` when healthzPort is 0.
    pub healthz: Option<SocketAddr>,
    /// Root of the pod log directories.
    pub pod_logs_dir: PathBuf,
    /// The kubelet's cgroupRoot (`/` when not set): the pods' `kubepods` cgroup goes below.
    pub cgroup_root: String,
    /// The cgroup driver.
    pub cgroup_driver: CgroupDriver,
    /// Cluster DNS servers.
    pub cluster_dns: Vec<IpAddr>,
    /// Cluster domain (may be empty).
    pub cluster_domain: String,
    /// The node's resolver file, the base of pods' DNS (`/etc/resolv.conf`; empty: none).
    pub resolv_conf: String,
    /// `seccompDefault`: RuntimeDefault for containers that name no seccomp profile.
    pub seccomp_default: bool,
    /// `cgroupsPerQOS`: the QoS hierarchy and one cgroup per pod (default true).
    pub cgroups_per_qos: bool,
    /// Whether `enforceNodeAllocatable` contains `pods` (its default): the `kubepods`
    /// cgroup is limited to the node's allocatable memory.
    pub enforce_node_allocatable_pods: bool,
    /// `podPidsLimit` / `--pod-max-pids`: most processes per pod; -1 unlimited.
    pub pod_pids_limit: i64,
    /// Node IPs given by `--node-ip` (empty: detect).
    pub node_ips: Vec<IpAddr>,
    /// Maximum number of pods.
    pub max_pods: u32,
    /// Address of the kubelet server.
    pub address: IpAddr,
    /// Port of the kubelet server.
    pub port: u16,
    /// Port of the read-only server (0: disabled).
    pub read_only_port: u16,
    /// Node status computation period.
    pub node_status_update_frequency: Duration,
    /// Node status report period.
    pub node_status_report_frequency: Duration,
    /// Whether to register the node with an API server.
    pub register_node: bool,
    /// Kubeconfig of the API server (`None`: standalone).
    pub kubeconfig: Option<PathBuf>,
    /// Labels the node registers with, besides the well-known ones.
    pub node_labels: BTreeMap<String, String>,
    /// Taints the node registers with.
    pub register_with_taints: Vec<Taint>,
    /// Duration of the node's Lease.
    pub node_lease_duration_seconds: u32,
    /// Size in bytes at which container logs are rotated (negative: never).
    pub container_log_max_size: i64,
    /// Most log files kept per container, the current one included (at least 2).
    pub container_log_max_files: u32,
    /// Image garbage collection: thresholds, minimum age, the sandbox image it keeps.
    pub image_gc: kubelet_core::image_gc::ImageGcPolicy,
    /// Node-pressure eviction: thresholds and periods.
    pub eviction: kubelet_core::eviction::EvictionConfig,
    /// Serving certificate and key of the kubelet server (`None`: self-signed under
    /// `cert_dir`).
    pub tls_cert_file: Option<PathBuf>,
    /// See `tls_cert_file`.
    pub tls_private_key_file: Option<PathBuf>,
    /// Minimum TLS version of the kubelet server.
    pub tls_min_version: Option<String>,
    /// Cipher suites of the kubelet server (empty: the TLS stack's defaults).
    pub tls_cipher_suites: Vec<String>,
    /// Where the self-signed serving pair is kept (`--cert-dir`, `<root-dir>/pki`).
    pub cert_dir: PathBuf,
    /// Authentication and authorization of the kubelet server.
    pub server_auth: ServerAuth,
    /// Fields given in the file that are accepted and validated but have no effect yet in
    /// this daemon (no API server); the daemon warns about them.
    pub inert_fields: Vec<&'static str>,
}

impl Settings {
    /// Merge flags over the file over the defaults and validate. `hostname` gives the
    /// machine's hostname, used as the node name unless `--hostname-override` is given.
    pub fn resolve(
        flags: &Flags,
        file: Option<&ConfigFile>,
        hostname: impl FnOnce() -> std::io::Result<String>,
    ) -> Result<Self, ConfigError> {
        let empty = KubeletConfigurationFile::default();
        let f = file.map_or(&empty, |c| &c.fields);
        let file_origin = |field: &str| {
            file.map(|c| c.origin(field))
                .unwrap_or(Origin::Default("(no config file)"))
        };

        // Pick the flag if given, else the file's value, else the default, with the origin
        // of the winner for messages.
        fn pick<T: Clone>(
            flag: Option<T>,
            flag_name: &'static str,
            file_value: Option<T>,
            field: &str,
            file_origin: &dyn Fn(&str) -> Origin,
        ) -> Option<(T, Origin)> {
            match (flag, file_value) {
                (Some(v), _) => Some((v, Origin::Flag(flag_name))),
                (None, Some(v)) => Some((v, file_origin(field))),
                (None, None) => None,
            }
        }

        let duration = |flag: Option<Duration>,
                        flag_name: &'static str,
                        file_value: &Option<String>,
                        field: &'static str,
                        default: Duration,
                        positive: bool|
         -> Result<Duration, ConfigError> {
            let (value, origin) = match (flag, file_value) {
                (Some(v), _) => (v, Origin::Flag(flag_name)),
                (None, Some(text)) => {
                    let origin = file_origin(field);
                    let value =
                        parse_duration(text).map_err(|e: DurationError| ConfigError::Invalid {
                            origin: origin.clone(),
                            message: e.to_string(),
                        })?;
                    (value, origin)
                }
                (None, None) => (default, Origin::Default(field)),
            };
            if positive && value.is_zero() {
                return Err(ConfigError::Invalid {
                    origin,
                    message: "must be greater than zero".to_string(),
                });
            }
            Ok(value)
        };

        let node_name = node_name(flags.hostname_override.as_deref(), hostname)?;

        let root_dir = flags
            .root_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT_DIR));
        if !root_dir.is_absolute() {
            return Err(ConfigError::Invalid {
                origin: Origin::Flag("--root-dir"),
                message: format!("{} is not an absolute path", root_dir.display()),
            });
        }

        let static_pod_path = match pick(
            flags
                .pod_manifest_path
                .clone()
                .map(|p| p.to_string_lossy().into_owned()),
            "--pod-manifest-path",
            f.static_pod_path.clone(),
            "staticPodPath",
            &file_origin,
        ) {
            Some((path, _)) if path.is_empty() => None,
            Some((path, origin)) => {
                let path = PathBuf::from(path);
                if !path.is_absolute() {
                    return Err(ConfigError::Invalid {
                        origin,
                        message: format!("{} is not an absolute path", path.display()),
                    });
                }
                Some(path)
            }
            None => None,
        };

        let static_pod_url = match pick(
            flags.manifest_url.clone(),
            "--manifest-url",
            f.static_pod_url.clone(),
            "staticPodURL",
            &file_origin,
        ) {
            Some((url, _)) if url.is_empty() => None,
            Some((url, origin)) => {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(ConfigError::Invalid {
                        origin,
                        message: format!("{url:?} is not an http:// or https:// URL"),
                    });
                }
                Some(url)
            }
            None => None,
        };

        let static_pod_url_header = if flags.manifest_url_header.is_empty() {
            f.static_pod_url_header.clone().unwrap_or_default()
        } else {
            let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for (key, value) in flags.manifest_url_header.iter().flatten() {
                headers.entry(key.clone()).or_default().push(value.clone());
            }
            headers
        };

        let (endpoint, endpoint_origin) = pick(
            flags.container_runtime_endpoint.clone(),
            "--container-runtime-endpoint",
            f.container_runtime_endpoint.clone(),
            "containerRuntimeEndpoint",
            &file_origin,
        )
        .unwrap_or_else(|| {
            (
                DEFAULT_RUNTIME_ENDPOINT.to_string(),
                Origin::Default("containerRuntimeEndpoint"),
            )
        });
        let container_runtime_endpoint =
            normalize_endpoint(&endpoint).map_err(|message| ConfigError::Invalid {
                origin: endpoint_origin,
                message,
            })?;

        let runtime_request_timeout = duration(
            flags.runtime_request_timeout,
            "--runtime-request-timeout",
            &f.runtime_request_timeout,
            "runtimeRequestTimeout",
            DEFAULT_RUNTIME_REQUEST_TIMEOUT,
            true,
        )?;
        let file_check_frequency = duration(
            flags.file_check_frequency,
            "--file-check-frequency",
            &f.file_check_frequency,
            "fileCheckFrequency",
            DEFAULT_FILE_CHECK_FREQUENCY,
            true,
        )?;
        let http_check_frequency = duration(
            flags.http_check_frequency,
            "--http-check-frequency",
            &f.http_check_frequency,
            "httpCheckFrequency",
            DEFAULT_HTTP_CHECK_FREQUENCY,
            true,
        )?;
        let sync_frequency = duration(
            flags.sync_frequency,
            "--sync-frequency",
            &f.sync_frequency,
            "syncFrequency",
            DEFAULT_SYNC_FREQUENCY,
            true,
        )?;
        let node_status_update_frequency = duration(
            None,
            "",
            &f.node_status_update_frequency,
            "nodeStatusUpdateFrequency",
            DEFAULT_NODE_STATUS_UPDATE_FREQUENCY,
            true,
        )?;
        // The reference's backward compatibility: an explicit update frequency is also the
        // report frequency unless that is set too.
        let report_default = if f.node_status_update_frequency.is_some() {
            node_status_update_frequency
        } else {
            DEFAULT_NODE_STATUS_REPORT_FREQUENCY
        };
        let node_status_report_frequency = duration(
            None,
            "",
            &f.node_status_report_frequency,
            "nodeStatusReportFrequency",
            report_default,
            true,
        )?;

        let (bind, bind_origin) = pick(
            flags.healthz_bind_address.clone(),
            "--healthz-bind-address",
            f.healthz_bind_address.clone(),
            "healthzBindAddress",
            &file_origin,
        )
        .unwrap_or_else(|| {
            (
                DEFAULT_HEALTHZ_BIND_ADDRESS.to_string(),
                Origin::Default("healthzBindAddress"),
            )
        });
        let bind: IpAddr = parse_ip(&bind, bind_origin)?;
        let (healthz_port, port_origin) = pick(
            flags.healthz_port,
            "--healthz-port",
            f.healthz_port,
            "healthzPort",
            &file_origin,
        )
        .unwrap_or((
            i32::from(DEFAULT_HEALTHZ_PORT),
            Origin::Default("healthzPort"),
        ));
        let healthz_port = port(healthz_port, true, port_origin)?;
        let healthz = (healthz_port != 0).then(|| SocketAddr::new(bind, healthz_port));

        let pod_logs_dir = match &f.pod_logs_dir {
            Some(dir) => {
                let dir = PathBuf::from(dir);
                if !dir.is_absolute() || !is_normalized(&dir) {
                    return Err(ConfigError::Invalid {
                        origin: file_origin("podLogsDir"),
                        message: format!("{} must be an absolute, normalized path", dir.display()),
                    });
                }
                dir
            }
            None => PathBuf::from(DEFAULT_POD_LOGS_DIR),
        };

        let cgroup_root = match pick(
            flags.cgroup_root.clone(),
            "--cgroup-root",
            f.cgroup_root.clone(),
            "cgroupRoot",
            &file_origin,
        ) {
            Some((root, _)) if root.is_empty() => "/".to_string(),
            Some((root, origin)) => {
                if !root.starts_with('/') || !is_normalized(Path::new(&root)) {
                    return Err(ConfigError::Invalid {
                        origin,
                        message: format!("{root:?} must be an absolute, normalized cgroup path"),
                    });
                }
                root
            }
            None => "/".to_string(),
        };

        let cgroup_driver = match pick(
            flags.cgroup_driver.clone(),
            "--cgroup-driver",
            f.cgroup_driver.clone(),
            "cgroupDriver",
            &file_origin,
        ) {
            None => CgroupDriver::Cgroupfs,
            Some((driver, _)) if driver == "cgroupfs" => CgroupDriver::Cgroupfs,
            Some((driver, origin)) if driver == "systemd" => {
                return Err(ConfigError::Invalid {
                    origin,
                    message: "cgroup driver \"systemd\" is not supported by this kubelet: only \
                              \"cgroupfs\" is; use cgroupfs here and in the container runtime \
                              (containerd: SystemdCgroup = false)"
                        .to_string(),
                });
            }
            Some((driver, origin)) => {
                return Err(ConfigError::Invalid {
                    origin,
                    message: format!("unknown cgroup driver {driver:?}: expected \"cgroupfs\""),
                });
            }
        };

        let cluster_dns = match pick(
            (!flags.cluster_dns.is_empty()).then(|| flags.cluster_dns.clone()),
            "--cluster-dns",
            f.cluster_dns.clone(),
            "clusterDNS",
            &file_origin,
        ) {
            Some((list, origin)) => list
                .iter()
                .map(|ip| parse_ip(ip.trim(), origin.clone()))
                .collect::<Result<Vec<_>, _>>()?,
            None => Vec::new(),
        };

        let cluster_domain = pick(
            flags.cluster_domain.clone(),
            "--cluster-domain",
            f.cluster_domain.clone(),
            "clusterDomain",
            &file_origin,
        )
        .map(|(domain, _)| domain.trim_end_matches('.').to_string())
        .unwrap_or_default();

        let node_ips = flags
            .node_ip
            .iter()
            .map(|ip| parse_ip(ip.trim(), Origin::Flag("--node-ip")))
            .collect::<Result<Vec<_>, _>>()?;
        if node_ips.len() > 2
            || (node_ips.len() == 2 && node_ips[0].is_ipv4() == node_ips[1].is_ipv4())
        {
            return Err(ConfigError::Invalid {
                origin: Origin::Flag("--node-ip"),
                message: "at most one IPv4 and one IPv6 address may be given".to_string(),
            });
        }

        let mut node_labels = BTreeMap::new();
        for labels in &flags.node_labels {
            node_labels.extend(labels.0.clone());
        }
        crate::registration::validate_node_labels(&node_labels).map_err(|message| {
            ConfigError::Invalid {
                origin: Origin::Flag("--node-labels"),
                message,
            }
        })?;
        let register_with_taints = match (&flags.register_with_taints, &f.register_with_taints) {
            (Some(list), _) => list.0.clone(),
            (None, Some(taints)) => {
                for (i, taint) in taints.iter().enumerate() {
                    crate::registration::validate_taint(taint).map_err(|message| {
                        ConfigError::Invalid {
                            origin: file_origin(&format!("registerWithTaints[{i}]")),
                            message,
                        }
                    })?;
                }
                taints.clone()
            }
            (None, None) => Vec::new(),
        };
        let node_lease_duration_seconds = match f.node_lease_duration_seconds {
            Some(n) if n > 0 => n.unsigned_abs(),
            Some(n) => {
                return Err(ConfigError::Invalid {
                    origin: file_origin("nodeLeaseDurationSeconds"),
                    message: format!("{n} must be greater than 0"),
                });
            }
            None => DEFAULT_NODE_LEASE_DURATION_SECONDS,
        };

        let cgroups_per_qos = flags.cgroups_per_qos.or(f.cgroups_per_qos).unwrap_or(true);
        let (enforce, enforce_origin) =
            match (&flags.enforce_node_allocatable, &f.enforce_node_allocatable) {
                (Some(levels), _) => (levels.clone(), Origin::Flag("--enforce-node-allocatable")),
                (None, Some(levels)) => (levels.clone(), file_origin("enforceNodeAllocatable")),
                (None, None) => (
                    vec!["pods".to_string()],
                    Origin::Default("enforceNodeAllocatable"),
                ),
            };
        let enforce_node_allocatable_pods =
            enforce_node_allocatable(&enforce, cgroups_per_qos, enforce_origin)?;
        let pod_pids_limit = flags.pod_max_pids.or(f.pod_pids_limit).unwrap_or(-1);

        let standalone = flags.kubeconfig.is_none();
        let max_pods = match f.max_pods {
            Some(n) => u32::try_from(n).map_err(|_| ConfigError::Invalid {
                origin: file_origin("maxPods"),
                message: format!("{n} must not be negative"),
            })?,
            None => DEFAULT_MAX_PODS,
        };
        let address = match &f.address {
            Some(a) => parse_ip(a, file_origin("address"))?,
            None => DEFAULT_ADDRESS,
        };
        let port_value = match f.port {
            Some(p) => port(p, false, file_origin("port"))?,
            None => DEFAULT_PORT,
        };
        let address = match &flags.address {
            Some(a) => parse_ip(a, Origin::Flag("--address"))?,
            None => address,
        };
        let port_value = match flags.port {
            Some(p) => port(p, false, Origin::Flag("--port"))?,
            None => port_value,
        };
        // Off unless set: the reference's flag default (without --config) is 10255, its
        // config file default 0; an unauthenticated port stays opt-in here.
        let read_only_port = match (flags.read_only_port, f.read_only_port) {
            (Some(p), _) => port(p, true, Origin::Flag("--read-only-port"))?,
            (None, Some(p)) => port(p, true, file_origin("readOnlyPort"))?,
            (None, None) => 0,
        };
        let container_log_max_size = match pick(
            flags.container_log_max_size.clone(),
            "--container-log-max-size",
            f.container_log_max_size.clone(),
            "containerLogMaxSize",
            &file_origin,
        ) {
            Some((text, origin)) => {
                let quantity =
                    k8s_openapi::apimachinery::pkg::api::resource::Quantity(text.clone());
                kubelet_core::quantity::parse_units(&quantity).map_err(|_| {
                    ConfigError::Invalid {
                        origin,
                        message: format!("{text:?} must be a valid quantity, such as 10Mi"),
                    }
                })?
            }
            None => kubelet_core::logs::rotation::DEFAULT_MAX_SIZE,
        };
        let container_log_max_files = match pick(
            flags.container_log_max_files,
            "--container-log-max-files",
            f.container_log_max_files,
            "containerLogMaxFiles",
            &file_origin,
        ) {
            // The reference's validation: the current file and one rotated at the least.
            Some((n, origin)) => {
                u32::try_from(n)
                    .ok()
                    .filter(|n| *n >= 2)
                    .ok_or_else(|| ConfigError::Invalid {
                        origin,
                        message: format!("{n} must be equal to or greater than 2"),
                    })?
            }
            None => kubelet_core::logs::rotation::DEFAULT_MAX_FILES,
        };
        let image_minimum_gc_age = duration(
            flags.minimum_image_ttl_duration,
            "--minimum-image-ttl-duration",
            &f.image_minimum_gc_age,
            "imageMinimumGCAge",
            kubelet_core::image_gc::DEFAULT_MINIMUM_GC_AGE,
            false,
        )?;
        let image_gc = image_gc_policy(flags, f, &file_origin, image_minimum_gc_age)?;
        let eviction = eviction::eviction_config(flags, f, &file_origin)?;
        let path_of = |flag: &Option<PathBuf>, file_value: &Option<String>| {
            flag.clone()
                .or_else(|| file_value.clone().map(PathBuf::from))
                .filter(|p| !p.as_os_str().is_empty())
        };
        let tls_cert_file = path_of(&flags.tls_cert_file, &f.tls_cert_file);
        let tls_private_key_file = path_of(&flags.tls_private_key_file, &f.tls_private_key_file);
        if tls_cert_file.is_some() != tls_private_key_file.is_some() {
            return Err(ConfigError::Invalid {
                origin: Origin::Flag("--tls-cert-file"),
                message: "--tls-cert-file (tlsCertFile) and --tls-private-key-file \
                          (tlsPrivateKeyFile) must be given together"
                    .to_string(),
            });
        }
        let tls_min_version = flags
            .tls_min_version
            .clone()
            .or_else(|| f.tls_min_version.clone())
            .filter(|v| !v.is_empty());
        let tls_cipher_suites = if flags.tls_cipher_suites.is_empty() {
            f.tls_cipher_suites.clone().unwrap_or_default()
        } else {
            flags.tls_cipher_suites.clone()
        };
        let cert_dir = flags
            .cert_dir
            .clone()
            .unwrap_or_else(|| root_dir.join("pki"));
        let server_auth = server_auth(flags, file, f, &file_origin)?;

        Ok(Self {
            node_name,
            root_dir,
            static_pod_path,
            static_pod_url,
            static_pod_url_header,
            container_runtime_endpoint,
            runtime_request_timeout,
            file_check_frequency,
            http_check_frequency,
            sync_frequency,
            healthz,
            pod_logs_dir,
            cgroup_root,
            cgroup_driver,
            cluster_dns,
            cluster_domain,
            resolv_conf: flags
                .resolv_conf
                .clone()
                .or_else(|| f.resolv_conf.clone())
                .unwrap_or_else(|| "/etc/resolv.conf".to_string()),
            seccomp_default: flags.seccomp_default.or(f.seccomp_default).unwrap_or(false),
            cgroups_per_qos,
            enforce_node_allocatable_pods,
            pod_pids_limit,
            node_ips,
            max_pods,
            address,
            port: port_value,
            read_only_port,
            node_status_update_frequency,
            node_status_report_frequency,
            register_node: flags.register_node.or(f.register_node).unwrap_or(true),
            kubeconfig: flags.kubeconfig.clone(),
            node_labels,
            register_with_taints,
            node_lease_duration_seconds,
            container_log_max_size,
            container_log_max_files,
            image_gc,
            eviction,
            tls_cert_file,
            tls_private_key_file,
            tls_min_version,
            tls_cipher_suites,
            cert_dir,
            server_auth,
            inert_fields: [
                // Node settings only matter with an API server to report to.
                ("maxPods", standalone && f.max_pods.is_some()),
                (
                    "nodeStatusUpdateFrequency",
                    standalone && f.node_status_update_frequency.is_some(),
                ),
                (
                    "nodeStatusReportFrequency",
                    standalone && f.node_status_report_frequency.is_some(),
                ),
                ("registerNode", standalone && f.register_node.is_some()),
                (
                    "registerWithTaints",
                    standalone && f.register_with_taints.is_some(),
                ),
                (
                    "nodeLeaseDurationSeconds",
                    standalone && f.node_lease_duration_seconds.is_some(),
                ),
            ]
            .into_iter()
            .filter_map(|(field, given)| given.then_some(field))
            .collect(),
        })
    }

    /// The pods' top cgroup: `kubepods` below cgroupRoot, as the reference places it.
    pub fn pods_cgroup(&self) -> String {
        if self.cgroup_root == "/" {
            "/kubepods".to_string()
        } else {
            format!("{}/kubepods", self.cgroup_root.trim_end_matches('/'))
        }
    }
}

/// The image GC policy from `--image-gc-high-threshold` / `imageGCHighThresholdPercent`,
/// `--image-gc-low-threshold` / `imageGCLowThresholdPercent`, `--minimum-image-ttl-duration`
/// / `imageMinimumGCAge` (`min_age`, parsed by the caller) and `--pod-infra-container-image`,
/// validated as the reference validates the KubeletConfiguration (its messages).
fn image_gc_policy(
    flags: &Flags,
    f: &KubeletConfigurationFile,
    file_origin: &dyn Fn(&str) -> Origin,
    min_age: Duration,
) -> Result<kubelet_core::image_gc::ImageGcPolicy, ConfigError> {
    use kubelet_core::image_gc as gc;
    let percent = |flag: Option<i32>,
                   flag_name: &'static str,
                   file_value: Option<i32>,
                   field: &'static str,
                   default: u8|
     -> Result<(i32, Origin), ConfigError> {
        let (value, origin) = match (flag, file_value) {
            (Some(v), _) => (v, Origin::Flag(flag_name)),
            (None, Some(v)) => (v, file_origin(field)),
            (None, None) => (i32::from(default), Origin::Default(field)),
        };
        if !(0..=100).contains(&value) {
            return Err(ConfigError::Invalid {
                origin,
                message: format!(
                    "invalid configuration: {field} ({flag_name}) {value} must be between 0 \
                     and 100, inclusive"
                ),
            });
        }
        Ok((value, origin))
    };
    let (high, _) = percent(
        flags.image_gc_high_threshold,
        "--image-gc-high-threshold",
        f.image_gc_high_threshold_percent,
        "imageGCHighThresholdPercent",
        gc::DEFAULT_HIGH_THRESHOLD_PERCENT,
    )?;
    let (low, low_origin) = percent(
        flags.image_gc_low_threshold,
        "--image-gc-low-threshold",
        f.image_gc_low_threshold_percent,
        "imageGCLowThresholdPercent",
        gc::DEFAULT_LOW_THRESHOLD_PERCENT,
    )?;
    if low >= high {
        return Err(ConfigError::Invalid {
            origin: low_origin,
            message: format!(
                "invalid configuration: imageGCLowThresholdPercent (--image-gc-low-threshold) \
                 {low} must be less than imageGCHighThresholdPercent \
                 (--image-gc-high-threshold) {high}"
            ),
        });
    }
    let sandbox_image = flags
        .pod_infra_container_image
        .clone()
        .filter(|i| !i.is_empty())
        .unwrap_or_else(|| gc::DEFAULT_SANDBOX_IMAGE.to_string());
    // In 0..=100 after the checks above.
    let to_u8 = |v: i32| u8::try_from(v).unwrap_or(100);
    Ok(gc::ImageGcPolicy {
        high_threshold_percent: to_u8(high),
        low_threshold_percent: to_u8(low),
        min_age,
        sandbox_image: Some(sandbox_image),
        ..gc::ImageGcPolicy::default()
    })
}

/// Check the levels of `enforceNodeAllocatable` as the reference validates them; true when
/// `pods` is among them. `system-reserved` and `kube-reserved` need reserved cgroups this
/// kubelet does not manage.
fn enforce_node_allocatable(
    levels: &[String],
    cgroups_per_qos: bool,
    origin: Origin,
) -> Result<bool, ConfigError> {
    let invalid = |message: String| ConfigError::Invalid {
        origin: origin.clone(),
        message,
    };
    let levels: Vec<&str> = levels
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
        .collect();
    let mut pods = false;
    for level in &levels {
        match *level {
            "pods" => pods = true,
            "none" if levels.len() > 1 => {
                return Err(invalid(
                    "may not contain additional enforcements when 'none' is specified".into(),
                ));
            }
            "none" => {}
            "system-reserved"
            | "kube-reserved"
            | "system-reserved-compressible"
            | "kube-reserved-compressible" => {
                return Err(invalid(format!(
                    "{level:?} is not supported by this kubelet (it manages no reserved cgroups); \
                     use \"pods\" or \"none\""
                )));
            }
            other => {
                return Err(invalid(format!(
                    "invalid option {other:?}: valid options are \"pods\", \"system-reserved\", \
                     \"kube-reserved\" and \"none\""
                )));
            }
        }
    }
    if pods && !cgroups_per_qos {
        return Err(invalid(
            "enforcing node allocatable on pods needs cgroupsPerQOS (--cgroups-per-qos); \
             without it, enforce none"
                .into(),
        ));
    }
    Ok(pods)
}

/// Authentication and authorization of the kubelet server. Defaults as the reference's: with
/// a config file, the v1beta1 defaults (anonymous off, token webhook on, `Webhook`
/// authorization); without one, the flags' legacy defaults (anonymous on, token webhook off,
/// `AlwaysAllow`). Webhooks need the API server: standalone (no --kubeconfig), a webhook that
/// is only defaulted is turned off with a warning, one asked for explicitly is an error.
fn server_auth(
    flags: &Flags,
    file: Option<&ConfigFile>,
    f: &KubeletConfigurationFile,
    file_origin: &dyn Fn(&str) -> Origin,
) -> Result<ServerAuth, ConfigError> {
    let authn = f.authentication.clone().unwrap_or_default();
    let authz = f.authorization.clone().unwrap_or_default();
    let authn_webhook = authn.webhook.clone().unwrap_or_default();
    let authz_webhook = authz.webhook.clone().unwrap_or_default();
    let with_file = file.is_some();
    let standalone = flags.kubeconfig.is_none();

    let duration_of = |flag: Option<Duration>,
                       text: &Option<String>,
                       field: &'static str,
                       default: Duration|
     -> Result<Duration, ConfigError> {
        match (flag, text) {
            (Some(d), _) => Ok(d),
            (None, Some(t)) => parse_duration(t).map_err(|e| ConfigError::Invalid {
                origin: file_origin(field),
                message: e.to_string(),
            }),
            (None, None) => Ok(default),
        }
    };

    let client_ca_file = flags
        .client_ca_file
        .clone()
        .or_else(|| authn.x509.and_then(|x| x.client_ca_file).map(PathBuf::from))
        .filter(|p| !p.as_os_str().is_empty());
    let anonymous = flags
        .anonymous_auth
        .or(authn.anonymous.and_then(|a| a.enabled))
        .unwrap_or(!with_file);
    let token_explicit = flags.authentication_token_webhook.or(authn_webhook.enabled);
    let mut token_webhook = token_explicit.unwrap_or(with_file);
    let mode_text = flags.authorization_mode.clone().or(authz.mode.clone());
    let mut mode = match mode_text.as_deref() {
        None => {
            if with_file {
                AuthorizationMode::Webhook
            } else {
                AuthorizationMode::AlwaysAllow
            }
        }
        Some("AlwaysAllow") => AuthorizationMode::AlwaysAllow,
        Some("Webhook") => AuthorizationMode::Webhook,
        Some(other) => {
            let origin = if flags.authorization_mode.is_some() {
                Origin::Flag("--authorization-mode")
            } else {
                file_origin("authorization.mode")
            };
            return Err(ConfigError::Invalid {
                origin,
                message: format!("{other:?} is not one of AlwaysAllow, Webhook"),
            });
        }
    };
    if standalone && token_webhook {
        if token_explicit == Some(true) {
            return Err(ConfigError::Invalid {
                origin: Origin::Flag("--authentication-token-webhook"),
                message: "webhook token authentication needs the API server (--kubeconfig)"
                    .to_string(),
            });
        }
        tracing::warn!(
            "no API server (--kubeconfig): webhook token authentication, on by default with \
             a config file, is off"
        );
        token_webhook = false;
    }
    if standalone && mode == AuthorizationMode::Webhook {
        if mode_text.is_some() {
            return Err(ConfigError::Invalid {
                origin: Origin::Flag("--authorization-mode"),
                message: "Webhook authorization needs the API server (--kubeconfig)".to_string(),
            });
        }
        tracing::warn!(
            "no API server (--kubeconfig): Webhook authorization, the default with a config \
             file, falls back to AlwaysAllow"
        );
        mode = AuthorizationMode::AlwaysAllow;
    }
    Ok(ServerAuth {
        client_ca_file,
        anonymous,
        token_webhook,
        token_webhook_cache_ttl: duration_of(
            flags.authentication_token_webhook_cache_ttl,
            &authn_webhook.cache_ttl,
            "authentication.webhook.cacheTTL",
            Duration::from_secs(120),
        )?,
        mode,
        cache_authorized_ttl: duration_of(
            flags.authorization_webhook_cache_authorized_ttl,
            &authz_webhook.cache_authorized_ttl,
            "authorization.webhook.cacheAuthorizedTTL",
            Duration::from_secs(300),
        )?,
        cache_unauthorized_ttl: duration_of(
            flags.authorization_webhook_cache_unauthorized_ttl,
            &authz_webhook.cache_unauthorized_ttl,
            "authorization.webhook.cacheUnauthorizedTTL",
            Duration::from_secs(30),
        )?,
    })
}

/// The node name as the reference derives it: the override if given, else the machine's
/// hostname; trimmed and lowercased.
pub fn node_name(
    hostname_override: Option<&str>,
    hostname: impl FnOnce() -> std::io::Result<String>,
) -> Result<String, ConfigError> {
    let name = match hostname_override.map(str::trim).filter(|s| !s.is_empty()) {
        Some(name) => name.to_string(),
        None => hostname()
            .map_err(|e| ConfigError::NodeName(format!("cannot read the hostname: {e}")))?,
    };
    let name = name.trim().to_lowercase();
    if name.is_empty() {
        return Err(ConfigError::NodeName(
            "the hostname is empty; give --hostname-override".to_string(),
        ));
    }
    Ok(name)
}

/// `unix:///abs/path` stays; a bare absolute path becomes `unix://` + path (the reference
/// accepts it with a deprecation warning); any other scheme is refused.
fn normalize_endpoint(endpoint: &str) -> Result<String, String> {
    let path = if let Some(path) = endpoint.strip_prefix("unix://") {
        path
    } else if endpoint.starts_with('/') {
        tracing::warn!(
            endpoint,
            "a container runtime endpoint without a scheme is deprecated; use unix://{endpoint}"
        );
        endpoint
    } else if let Some((scheme, _)) = endpoint.split_once("://") {
        return Err(format!(
            "endpoint {endpoint:?} has scheme {scheme:?}: only unix:// endpoints are supported"
        ));
    } else {
        return Err(format!(
            "endpoint {endpoint:?} is neither unix:///absolute/path nor an absolute path"
        ));
    };
    if !path.starts_with('/') {
        return Err(format!(
            "endpoint {endpoint:?}: the socket path must be absolute (unix:///path)"
        ));
    }
    Ok(format!("unix://{path}"))
}

fn parse_ip(text: &str, origin: Origin) -> Result<IpAddr, ConfigError> {
    text.parse().map_err(|_| ConfigError::Invalid {
        origin,
        message: format!("{text:?} is not an IP address"),
    })
}

fn port(value: i32, zero_disables: bool, origin: Origin) -> Result<u16, ConfigError> {
    match u16::try_from(value) {
        Ok(0) if zero_disables => Ok(0),
        Ok(p) if p > 0 => Ok(p),
        _ => Err(ConfigError::Invalid {
            origin,
            message: if zero_disables {
                format!("{value} must be between 1 and 65535 inclusive, or 0 to disable")
            } else {
                format!("{value} must be between 1 and 65535 inclusive")
            },
        }),
    }
}

fn is_normalized(path: &Path) -> bool {
    path.components()
        .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
        && !path.to_string_lossy().contains("//")
        && (path == Path::new("/") || !path.to_string_lossy().ends_with('/'))
}

#[cfg(test)]
mod tests;
