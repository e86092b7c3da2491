//! Command-line flags, named as the reference kubelet names them. Both `--flag=value` and
//! `--flag value` work. Every setting flag is optional here so that the merge in
//! [`crate::config`] can tell "given" from "not given": flags override the config file, which
//! overrides the defaults.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use k8s_openapi::api::core::v1::Taint;

use crate::duration::parse_duration;

/// The kubelet's command line.
#[derive(Debug, Clone, Default, Parser)]
#[command(
    name = "kubelet",
    version,
    about = "The kubelet: the primary node agent. It runs the pods meant for this node through \
             a CRI container runtime (containerd, CRI-O).",
    long_about = None,
)]
pub struct Flags {
    /// The KubeletConfiguration file (kubelet.config.k8s.io/v1beta1, YAML or JSON). Flags
    /// given on the command line override its values.
    #[arg(long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Directory of static pod manifests to run (config: staticPodPath).
    #[arg(long = "pod-manifest-path", value_name = "DIR")]
    pub pod_manifest_path: Option<PathBuf>,

    /// URL of static pod manifests to run (config: staticPodURL).
    #[arg(long = "manifest-url", value_name = "URL")]
    pub manifest_url: Option<String>,

    /// HTTP headers for --manifest-url, as `key:value` pairs, comma separated; repeatable
    /// (config: staticPodURLHeader).
    #[arg(long = "manifest-url-header", value_name = "KEY:VALUE,...", value_parser = parse_header_list)]
    pub manifest_url_header: Vec<Vec<(String, String)>>,

    /// The CRI endpoint: `unix:///path` or an absolute socket path (config:
    /// containerRuntimeEndpoint) [default: unix:///run/containerd/containerd.sock].
    #[arg(long = "container-runtime-endpoint", value_name = "ENDPOINT")]
    pub container_runtime_endpoint: Option<String>,

    /// Use this name instead of the machine's hostname as the node name.
    #[arg(long = "hostname-override", value_name = "NAME")]
    pub hostname_override: Option<String>,

    /// The kubelet's state directory [default: /var/lib/kubelet].
    #[arg(long = "root-dir", value_name = "DIR")]
    pub root_dir: Option<PathBuf>,

    /// Log verbosity: 0-2 info, 3-4 debug, 5 and up trace. RUST_LOG, when set, wins.
    #[arg(short = 'v', long = "v", value_name = "LEVEL", default_value_t = 0)]
    pub verbosity: u8,

    /// Timeout of runtime calls other than long-running ones (pull, logs, exec, attach)
    /// (config: runtimeRequestTimeout) [default: 2m].
    #[arg(long = "runtime-request-timeout", value_name = "DURATION", value_parser = parse_duration_flag)]
    pub runtime_request_timeout: Option<Duration>,

    /// How often the static pod directory is rescanned (config: fileCheckFrequency)
    /// [default: 20s].
    #[arg(long = "file-check-frequency", value_name = "DURATION", value_parser = parse_duration_flag)]
    pub file_check_frequency: Option<Duration>,

    /// How often the manifest URL is fetched (config: httpCheckFrequency) [default: 20s].
    #[arg(long = "http-check-frequency", value_name = "DURATION", value_parser = parse_duration_flag)]
    pub http_check_frequency: Option<Duration>,

    /// How often every pod is synced even without a change (config: syncFrequency)
    /// [default: 1m].
    #[arg(long = "sync-frequency", value_name = "DURATION", value_parser = parse_duration_flag)]
    pub sync_frequency: Option<Duration>,

    /// Address of the healthz server (config: healthzBindAddress) [default: 127.0.0.1].
    #[arg(long = "healthz-bind-address", value_name = "IP")]
    pub healthz_bind_address: Option<String>,

    /// Port of the healthz server; 0 disables it (config: healthzPort) [default: 10248].
    #[arg(
        long = "healthz-port",
        value_name = "PORT",
        allow_negative_numbers = true
    )]
    pub healthz_port: Option<i32>,

    /// The cgroup the pods' QoS hierarchy (`kubepods`) goes below (config: cgroupRoot)
    /// [default: /].
    #[arg(long = "cgroup-root", value_name = "CGROUP")]
    pub cgroup_root: Option<String>,

    /// Make the QoS cgroup hierarchy and one cgroup per pod below --cgroup-root (config:
    /// cgroupsPerQOS) [default: true].
    #[arg(
        long = "cgroups-per-qos",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    pub cgroups_per_qos: Option<bool>,

    /// Levels of node allocatable enforcement, comma separated: `pods` or `none` (config:
    /// enforceNodeAllocatable) [default: pods].
    #[arg(
        long = "enforce-node-allocatable",
        value_name = "LEVEL,...",
        value_delimiter = ','
    )]
    pub enforce_node_allocatable: Option<Vec<String>>,

    /// Most processes in a pod; -1 for no limit (config: podPidsLimit) [default: -1].
    #[arg(long = "pod-max-pids", value_name = "N", allow_negative_numbers = true)]
    pub pod_max_pids: Option<i64>,

    /// The cgroup driver; only `cgroupfs` is supported (config: cgroupDriver).
    #[arg(long = "cgroup-driver", value_name = "DRIVER")]
    pub cgroup_driver: Option<String>,

    /// The node's IP addresses, comma separated, at most one per family; by default the
    /// IPv4 address of the interface with the default route.
    #[arg(long = "node-ip", value_name = "IP,...", value_delimiter = ',')]
    pub node_ip: Vec<String>,

    /// Cluster DNS server IPs, comma separated; repeatable (config: clusterDNS).
    #[arg(long = "cluster-dns", value_name = "IP,...", value_delimiter = ',')]
    pub cluster_dns: Vec<String>,

    /// The cluster's domain, searched by pods besides the host's domains (config:
    /// clusterDomain).
    #[arg(long = "cluster-domain", value_name = "DOMAIN")]
    pub cluster_domain: Option<String>,

    /// The resolver file pods' DNS settings start from; "" for none (config: resolvConf,
    /// default /etc/resolv.conf).
    #[arg(long = "resolv-conf", value_name = "FILE")]
    pub resolv_conf: Option<String>,

    /// RuntimeDefault seccomp for containers that name no profile (config: seccompDefault).
    #[arg(
        long = "seccomp-default",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    pub seccomp_default: Option<bool>,

    /// Kubeconfig of the API server to join; without it the kubelet runs standalone.
    #[arg(long = "kubeconfig", value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,

    /// Labels to add when registering the node, `key=value` comma separated; repeatable.
    #[arg(long = "node-labels", value_name = "KEY=VALUE,...", value_parser = parse_node_labels_flag)]
    pub node_labels: Vec<NodeLabels>,

    /// Taints to register the node with, `key=value:Effect` comma separated (config:
    /// registerWithTaints).
    #[arg(long = "register-with-taints", value_name = "KEY=VALUE:EFFECT,...", value_parser = parse_taints_flag)]
    pub register_with_taints: Option<TaintList>,

    /// Register the node with the API server (config: registerNode); `--register-node=false`
    /// only reports the status of a Node created by someone else.
    #[arg(
        long = "register-node",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    pub register_node: Option<bool>,

    /// Address of the kubelet server (config: address) [default: 0.0.0.0].
    #[arg(long = "address", value_name = "IP")]
    pub address: Option<String>,

    /// Port of the kubelet server, HTTPS (config: port) [default: 10250].
    #[arg(long = "port", value_name = "PORT")]
    pub port: Option<i32>,

    /// Port of the read-only server, plain HTTP without authentication; 0 disables it
    /// (config: readOnlyPort) [default: 0].
    #[arg(long = "read-only-port", value_name = "PORT")]
    pub read_only_port: Option<i32>,

    /// Size at which a container's log file is rotated, a quantity such as 10Mi; negative
    /// turns rotation off (config: containerLogMaxSize) [default: 10Mi].
    #[arg(
        long = "container-log-max-size",
        value_name = "QUANTITY",
        allow_hyphen_values = true
    )]
    pub container_log_max_size: Option<String>,

    /// Most log files kept per container, the current one included, at least 2 (config:
    /// containerLogMaxFiles) [default: 5].
    #[arg(
        long = "container-log-max-files",
        value_name = "N",
        allow_hyphen_values = true
    )]
    pub container_log_max_files: Option<i32>,

    /// Image filesystem usage percent at or above which image garbage collection runs;
    /// 100 turns it off (config: imageGCHighThresholdPercent) [default: 85].
    #[arg(
        long = "image-gc-high-threshold",
        value_name = "PERCENT",
        allow_negative_numbers = true
    )]
    pub image_gc_high_threshold: Option<i32>,

    /// Image filesystem usage percent image garbage collection frees down to (config:
    /// imageGCLowThresholdPercent) [default: 80].
    #[arg(
        long = "image-gc-low-threshold",
        value_name = "PERCENT",
        allow_negative_numbers = true
    )]
    pub image_gc_low_threshold: Option<i32>,

    /// Minimum age of an unused image before it may be garbage collected (config:
    /// imageMinimumGCAge) [default: 2m].
    #[arg(long = "minimum-image-ttl-duration", value_name = "DURATION", value_parser = parse_duration_flag)]
    pub minimum_image_ttl_duration: Option<Duration>,

    /// The sandbox (pause) image; image garbage collection never removes it. The runtime's
    /// own configuration chooses the image sandboxes run [default: registry.k8s.io/pause:3.10].
    #[arg(long = "pod-infra-container-image", value_name = "IMAGE")]
    pub pod_infra_container_image: Option<String>,

    /// Hard eviction thresholds, `<signal><<quantity or percent>` separated by commas; given,
    /// they replace the defaults (config: evictionHard) [default:
    /// imagefs.available<15%,imagefs.inodesFree<5%,memory.available<100Mi,nodefs.available<10%,nodefs.inodesFree<5%].
    #[arg(long = "eviction-hard", value_name = "SIGNAL<VALUE,...")]
    pub eviction_hard: Option<String>,

    /// Soft eviction thresholds, as --eviction-hard; each needs a grace period (config:
    /// evictionSoft).
    #[arg(long = "eviction-soft", value_name = "SIGNAL<VALUE,...")]
    pub eviction_soft: Option<String>,

    /// How long each soft threshold must be met before pods are evicted,
    /// `<signal>=<duration>` separated by commas (config: evictionSoftGracePeriod).
    #[arg(
        long = "eviction-soft-grace-period",
        value_name = "SIGNAL=DURATION,..."
    )]
    pub eviction_soft_grace_period: Option<String>,

    /// The most a pod evicted for a soft threshold gets to stop, in seconds (config:
    /// evictionMaxPodGracePeriod) [default: 0].
    #[arg(
        long = "eviction-max-pod-grace-period",
        value_name = "SECONDS",
        allow_negative_numbers = true
    )]
    pub eviction_max_pod_grace_period: Option<i32>,

    /// How long a pressure condition stays after its threshold stopped being met (config:
    /// evictionPressureTransitionPeriod) [default: 5m].
    #[arg(long = "eviction-pressure-transition-period", value_name = "DURATION", value_parser = parse_duration_flag)]
    pub eviction_pressure_transition_period: Option<Duration>,

    /// The least amount reclaimed once a threshold is met, `<signal>=<quantity or percent>`
    /// separated by commas (config: evictionMinimumReclaim).
    #[arg(long = "eviction-minimum-reclaim", value_name = "SIGNAL=VALUE,...")]
    pub eviction_minimum_reclaim: Option<String>,

    /// Serving certificate of the kubelet server, PEM, leaf first (config: tlsCertFile).
    /// Without it a self-signed one is kept in --cert-dir.
    #[arg(long = "tls-cert-file", value_name = "FILE")]
    pub tls_cert_file: Option<PathBuf>,

    /// Private key of --tls-cert-file (config: tlsPrivateKeyFile).
    #[arg(long = "tls-private-key-file", value_name = "FILE")]
    pub tls_private_key_file: Option<PathBuf>,

    /// Minimum TLS version: VersionTLS12 or VersionTLS13 (config: tlsMinVersion).
    #[arg(long = "tls-min-version", value_name = "VERSION")]
    pub tls_min_version: Option<String>,

    /// TLS 1.2 cipher suites, IANA names, comma separated (config: tlsCipherSuites).
    #[arg(
        long = "tls-cipher-suites",
        value_name = "NAME,...",
        value_delimiter = ','
    )]
    pub tls_cipher_suites: Vec<String>,

    /// Where the self-signed serving certificate is kept [default: <root-dir>/pki].
    #[arg(long = "cert-dir", value_name = "DIR")]
    pub cert_dir: Option<PathBuf>,

    /// CA bundle that client certificates must chain to; user = CN, groups = O (config:
    /// authentication.x509.clientCAFile).
    #[arg(long = "client-ca-file", value_name = "FILE")]
    pub client_ca_file: Option<PathBuf>,

    /// Let requests without credentials in as system:anonymous (config:
    /// authentication.anonymous.enabled) [default: true without --config, false with].
    #[arg(
        long = "anonymous-auth",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    pub anonymous_auth: Option<bool>,

    /// Check bearer tokens with TokenReviews to the API server (config:
    /// authentication.webhook.enabled) [default: false without --config, true with].
    #[arg(
        long = "authentication-token-webhook",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    pub authentication_token_webhook: Option<bool>,

    /// How long TokenReview answers are cached (config: authentication.webhook.cacheTTL)
    /// [default: 2m].
    #[arg(long = "authentication-token-webhook-cache-ttl", value_name = "DURATION", value_parser = parse_duration_flag)]
    pub authentication_token_webhook_cache_ttl: Option<Duration>,

    /// AlwaysAllow or Webhook (SubjectAccessReviews to the API server) (config:
    /// authorization.mode) [default: AlwaysAllow without --config, Webhook with].
    #[arg(long = "authorization-mode", value_name = "MODE")]
    pub authorization_mode: Option<String>,

    /// How long allowed SubjectAccessReview answers are cached (config:
    /// authorization.webhook.cacheAuthorizedTTL) [default: 5m].
    #[arg(long = "authorization-webhook-cache-authorized-ttl", value_name = "DURATION", value_parser = parse_duration_flag)]
    pub authorization_webhook_cache_authorized_ttl: Option<Duration>,

    /// How long denied SubjectAccessReview answers are cached (config:
    /// authorization.webhook.cacheUnauthorizedTTL) [default: 30s].
    #[arg(long = "authorization-webhook-cache-unauthorized-ttl", value_name = "DURATION", value_parser = parse_duration_flag)]
    pub authorization_webhook_cache_unauthorized_ttl: Option<Duration>,
}

/// One `--node-labels` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeLabels(pub BTreeMap<String, String>);

/// One `--register-with-taints` value.
#[derive(Debug, Clone, PartialEq)]
pub struct TaintList(pub Vec<Taint>);

fn parse_node_labels_flag(value: &str) -> Result<NodeLabels, String> {
    crate::registration::parse_node_labels(value).map(NodeLabels)
}

fn parse_taints_flag(value: &str) -> Result<TaintList, String> {
    crate::registration::parse_taints(value).map(TaintList)
}

/// A duration flag value: Go syntax, not negative.
fn parse_duration_flag(value: &str) -> Result<Duration, String> {
    parse_duration(value).map_err(|e| e.to_string())
}

/// One `--manifest-url-header` value: `key:value` pairs separated by commas, as the
/// reference's colon-separated multimap flag takes them (names and values trimmed).
pub fn parse_header_list(value: &str) -> Result<Vec<(String, String)>, String> {
    kubelet_core::sources::parse_manifest_url_headers(value).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Flags, clap::Error> {
        Flags::try_parse_from(std::iter::once("kubelet").chain(args.iter().copied()))
    }

    #[test]
    fn both_value_styles_are_accepted() {
        let eq = parse(&[
            "--config=/etc/kubelet.yaml",
            "--sync-frequency=1m30s",
            "--healthz-port=0",
            "--v=4",
        ])
        .unwrap();
        let space = parse(&[
            "--config",
            "/etc/kubelet.yaml",
            "--sync-frequency",
            "1m30s",
            "--healthz-port",
            "0",
            "--v",
            "4",
        ])
        .unwrap();
        for flags in [eq, space] {
            assert_eq!(flags.config, Some(PathBuf::from("/etc/kubelet.yaml")));
            assert_eq!(flags.sync_frequency, Some(Duration::from_secs(90)));
            assert_eq!(flags.healthz_port, Some(0));
            assert_eq!(flags.verbosity, 4);
        }
    }

    #[test]
    fn lists_split_on_commas_and_repeat() {
        let flags = parse(&[
            "--cluster-dns=10.96.0.10,10.96.0.11",
            "--cluster-dns",
            "fd00::a",
            "--node-ip=192.168.1.5,fd00::5",
            "--manifest-url-header=a:hello,b:again",
            "--manifest-url-header",
            "b:beautiful",
        ])
        .unwrap();
        assert_eq!(flags.cluster_dns, ["10.96.0.10", "10.96.0.11", "fd00::a"]);
        assert_eq!(flags.node_ip, ["192.168.1.5", "fd00::5"]);
        let headers: Vec<(String, String)> =
            flags.manifest_url_header.into_iter().flatten().collect();
        assert_eq!(
            headers,
            [
                ("a".to_string(), "hello".to_string()),
                ("b".to_string(), "again".to_string()),
                ("b".to_string(), "beautiful".to_string()),
            ]
        );
    }

    #[test]
    fn header_values_keep_later_colons() {
        assert_eq!(
            parse_header_list("Authorization:Bearer a:b").unwrap(),
            [("Authorization".to_string(), "Bearer a:b".to_string())]
        );
        assert_eq!(
            parse_header_list(" X-A : 1 ,, ").unwrap(),
            [("X-A".to_string(), "1".to_string())]
        );
        assert!(parse_header_list("novalue").is_err());
        assert!(parse_header_list(":x").is_err());
    }

    #[test]
    fn bad_values_name_the_flag() {
        let err = parse(&["--file-check-frequency=20"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--file-check-frequency"), "{err}");
        assert!(err.contains("missing unit"), "{err}");
        let err = parse(&["--sync-frequency=-1s"]).unwrap_err().to_string();
        assert!(err.contains("--sync-frequency"), "{err}");
        assert!(err.contains("negative"), "{err}");
        let err = parse(&["--healthz-port=http"]).unwrap_err().to_string();
        assert!(err.contains("--healthz-port"), "{err}");
    }

    #[test]
    fn unset_flags_stay_unset() {
        let flags = parse(&[]).unwrap();
        assert!(flags.config.is_none());
        assert!(flags.sync_frequency.is_none());
        assert!(flags.healthz_port.is_none());
        assert!(flags.node_ip.is_empty());
        assert_eq!(flags.verbosity, 0);
        assert!(flags.kubeconfig.is_none());
        assert!(flags.register_node.is_none());
        assert!(flags.register_with_taints.is_none());
    }

    #[test]
    fn registration_flags() {
        let flags = parse(&[
            "--kubeconfig=/etc/kubernetes/kubelet.conf",
            "--node-labels=a=1,b=2",
            "--node-labels",
            "c=3",
            "--register-with-taints=dedicated=gpu:NoSchedule",
            "--register-node=false",
        ])
        .unwrap();
        assert_eq!(
            flags.kubeconfig,
            Some(PathBuf::from("/etc/kubernetes/kubelet.conf"))
        );
        let keys: Vec<&String> = flags.node_labels.iter().flat_map(|l| l.0.keys()).collect();
        assert_eq!(keys, ["a", "b", "c"]);
        assert_eq!(
            flags.register_with_taints.unwrap().0[0].effect,
            "NoSchedule"
        );
        assert_eq!(flags.register_node, Some(false));
        assert_eq!(
            parse(&["--register-node"]).unwrap().register_node,
            Some(true)
        );
        let err = parse(&["--register-with-taints=a:Never"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--register-with-taints") && err.contains("Never"),
            "{err}"
        );
    }
}
