use clap::Parser;

use super::*;

const FULL: &str = r#"
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
staticPodPath: /etc/kubernetes/manifests
staticPodURL: https://config.example/pods
staticPodURLHeader:
  Authorization: ["Bearer abc"]
  X-Node: [a, b]
containerRuntimeEndpoint: unix:///run/crio/crio.sock
fileCheckFrequency: 10s
httpCheckFrequency: 1m30s
syncFrequency: 30s
runtimeRequestTimeout: 5m
healthzBindAddress: 0.0.0.0
healthzPort: 10300
podLogsDir: /data/pod-logs
cgroupRoot: /edge
cgroupDriver: cgroupfs
clusterDNS: [10.96.0.10]
clusterDomain: cluster.local
maxPods: 50
address: 127.0.0.1
port: 10260
readOnlyPort: 10255
nodeStatusUpdateFrequency: 20s
registerNode: false
"#;

fn path() -> PathBuf {
    PathBuf::from("/etc/kubelet/config.yaml")
}

fn file(text: &str) -> Result<ConfigFile, ConfigError> {
    ConfigFile::parse(&path(), text)
}

fn flags(args: &[&str]) -> Flags {
    Flags::try_parse_from(std::iter::once("kubelet").chain(args.iter().copied())).unwrap()
}

fn resolve(args: &[&str], text: Option<&str>) -> Result<Settings, ConfigError> {
    let file = text.map(file).transpose()?;
    Settings::resolve(&flags(args), file.as_ref(), || {
        Ok("Node-A.example".to_string())
    })
}

fn header(kind: &str) -> String {
    format!("apiVersion: {API_VERSION}\nkind: {kind}\n")
}

#[test]
fn defaults_without_file_or_flags() {
    let s = resolve(&[], None).unwrap();
    assert_eq!(s.node_name, "node-a.example");
    assert_eq!(s.root_dir, PathBuf::from("/var/lib/kubelet"));
    assert_eq!(s.static_pod_path, None);
    assert_eq!(s.static_pod_url, None);
    assert_eq!(s.container_runtime_endpoint, DEFAULT_RUNTIME_ENDPOINT);
    assert_eq!(s.runtime_request_timeout, Duration::from_secs(120));
    assert_eq!(s.file_check_frequency, Duration::from_secs(20));
    assert_eq!(s.http_check_frequency, Duration::from_secs(20));
    assert_eq!(s.sync_frequency, Duration::from_secs(60));
    assert_eq!(s.healthz, Some("127.0.0.1:10248".parse().unwrap()));
    assert_eq!(s.pod_logs_dir, PathBuf::from("/var/log/pods"));
    assert_eq!(s.cgroup_root, "/");
    assert_eq!(s.pods_cgroup(), "/kubepods");
    assert_eq!(s.cgroup_driver, CgroupDriver::Cgroupfs);
    assert!(s.cluster_dns.is_empty());
    assert_eq!(s.cluster_domain, "");
    assert_eq!(s.max_pods, 110);
    assert_eq!(s.port, 10250);
    assert_eq!(s.read_only_port, 0);
    assert_eq!(s.node_status_update_frequency, Duration::from_secs(10));
    assert_eq!(s.node_status_report_frequency, Duration::from_secs(300));
    assert!(s.register_node);
    assert!(s.inert_fields.is_empty());
}

#[test]
fn full_file_is_read() {
    let s = resolve(&[], Some(FULL)).unwrap();
    assert_eq!(
        s.static_pod_path,
        Some(PathBuf::from("/etc/kubernetes/manifests"))
    );
    assert_eq!(
        s.static_pod_url.as_deref(),
        Some("https://config.example/pods")
    );
    assert_eq!(s.static_pod_url_header["Authorization"], ["Bearer abc"]);
    assert_eq!(s.static_pod_url_header["X-Node"], ["a", "b"]);
    assert_eq!(s.container_runtime_endpoint, "unix:///run/crio/crio.sock");
    assert_eq!(s.file_check_frequency, Duration::from_secs(10));
    assert_eq!(s.http_check_frequency, Duration::from_secs(90));
    assert_eq!(s.sync_frequency, Duration::from_secs(30));
    assert_eq!(s.runtime_request_timeout, Duration::from_secs(300));
    assert_eq!(s.healthz, Some("0.0.0.0:10300".parse().unwrap()));
    assert_eq!(s.pod_logs_dir, PathBuf::from("/data/pod-logs"));
    assert_eq!(s.pods_cgroup(), "/edge/kubepods");
    assert_eq!(s.cluster_dns, ["10.96.0.10".parse::<IpAddr>().unwrap()]);
    assert_eq!(s.cluster_domain, "cluster.local");
    assert_eq!(s.max_pods, 50);
    assert_eq!(s.address, "127.0.0.1".parse::<IpAddr>().unwrap());
    assert_eq!(s.port, 10260);
    assert_eq!(s.read_only_port, 10255);
    // An explicit update frequency is the report frequency too.
    assert_eq!(s.node_status_update_frequency, Duration::from_secs(20));
    assert_eq!(s.node_status_report_frequency, Duration::from_secs(20));
    assert!(!s.register_node);
    assert_eq!(
        s.inert_fields,
        ["maxPods", "nodeStatusUpdateFrequency", "registerNode"]
    );
}

#[test]
fn registration_settings_from_file_and_flags() {
    let text = format!(
        "apiVersion: {API_VERSION}\nkind: KubeletConfiguration\nnodeLeaseDurationSeconds: 60\n\
             registerWithTaints:\n- key: dedicated\n  value: edge\n  effect: NoSchedule\n"
    );
    let s = resolve(&["--node-labels=example.com/rack=r1"], Some(&text)).unwrap();
    assert_eq!(s.node_lease_duration_seconds, 60);
    assert_eq!(s.register_with_taints.len(), 1);
    assert_eq!(s.register_with_taints[0].value.as_deref(), Some("edge"));
    assert_eq!(s.node_labels["example.com/rack"], "r1");
    assert!(s.register_node);
    assert!(s.kubeconfig.is_none());
    // Standalone, node settings have nothing to act on.
    assert_eq!(
        s.inert_fields,
        ["registerWithTaints", "nodeLeaseDurationSeconds"]
    );
    let joined = resolve(&["--kubeconfig=/etc/kubelet.conf"], Some(&text)).unwrap();
    assert!(joined.inert_fields.is_empty(), "{:?}", joined.inert_fields);
    assert_eq!(
        joined.kubeconfig.as_deref(),
        Some(std::path::Path::new("/etc/kubelet.conf"))
    );

    let s = resolve(
        &[
            "--register-with-taints=a:NoExecute",
            "--register-node=false",
        ],
        Some(&text),
    )
    .unwrap();
    assert_eq!(s.register_with_taints[0].key, "a");
    assert!(!s.register_node);

    let bad = format!(
        "apiVersion: {API_VERSION}\nkind: KubeletConfiguration\n\
             registerWithTaints:\n- key: a\n  effect: Always\n"
    );
    let err = resolve(&[], Some(&bad)).unwrap_err().to_string();
    assert!(
        err.contains("registerWithTaints[0]") && err.contains("Always"),
        "{err}"
    );
    let bad = format!(
        "apiVersion: {API_VERSION}\nkind: KubeletConfiguration\nnodeLeaseDurationSeconds: 0\n"
    );
    let err = resolve(&[], Some(&bad)).unwrap_err().to_string();
    assert!(err.contains("nodeLeaseDurationSeconds"), "{err}");
    let err = resolve(&["--node-labels=kubernetes.io/role=x"], None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("--node-labels") && err.contains("kubernetes.io/role"),
        "{err}"
    );
}

#[test]
fn json_files_are_read() {
    let text = format!(
        r#"{{"apiVersion": "{API_VERSION}", "kind": "KubeletConfiguration",
                "syncFrequency": "45s", "clusterDNS": ["10.0.0.10", "fd00::10"]}}"#
    );
    let s = resolve(&[], Some(&text)).unwrap();
    assert_eq!(s.sync_frequency, Duration::from_secs(45));
    assert_eq!(s.cluster_dns.len(), 2);
}

#[test]
fn flags_override_the_file() {
    let args = [
        "--pod-manifest-path=/srv/manifests",
        "--manifest-url=http://other/pods",
        "--manifest-url-header=K:v1,K:v2",
        "--container-runtime-endpoint=/run/containerd/containerd.sock",
        "--sync-frequency=2m",
        "--file-check-frequency=1s",
        "--http-check-frequency=3s",
        "--runtime-request-timeout=30s",
        "--healthz-bind-address=::1",
        "--healthz-port=0",
        "--cgroup-root=/other",
        "--cluster-dns=1.1.1.1",
        "--cluster-domain=corp.local.",
        "--hostname-override=  Edge-7 ",
        "--root-dir=/data/kubelet",
        "--node-ip=10.1.2.3",
    ];
    let s = resolve(&args, Some(FULL)).unwrap();
    assert_eq!(s.node_name, "edge-7");
    assert_eq!(s.root_dir, PathBuf::from("/data/kubelet"));
    assert_eq!(s.static_pod_path, Some(PathBuf::from("/srv/manifests")));
    assert_eq!(s.static_pod_url.as_deref(), Some("http://other/pods"));
    assert_eq!(
        s.static_pod_url_header,
        BTreeMap::from([("K".to_string(), vec!["v1".to_string(), "v2".to_string()])])
    );
    // A bare path is accepted and normalised.
    assert_eq!(
        s.container_runtime_endpoint,
        "unix:///run/containerd/containerd.sock"
    );
    assert_eq!(s.sync_frequency, Duration::from_secs(120));
    assert_eq!(s.file_check_frequency, Duration::from_secs(1));
    assert_eq!(s.http_check_frequency, Duration::from_secs(3));
    assert_eq!(s.runtime_request_timeout, Duration::from_secs(30));
    assert_eq!(s.healthz, None);
    assert_eq!(s.pods_cgroup(), "/other/kubepods");
    assert_eq!(s.cluster_dns, ["1.1.1.1".parse::<IpAddr>().unwrap()]);
    assert_eq!(s.cluster_domain, "corp.local");
    assert_eq!(s.node_ips, ["10.1.2.3".parse::<IpAddr>().unwrap()]);
    // Fields without flags keep the file's values.
    assert_eq!(s.pod_logs_dir, PathBuf::from("/data/pod-logs"));
}

#[test]
fn file_type_errors() {
    let cases: &[(String, &str)] = &[
        (String::new(), "expected a KubeletConfiguration mapping"),
        (
            "- a\n- b\n".to_string(),
            "expected a KubeletConfiguration mapping",
        ),
        ("a: [\n".to_string(), "invalid YAML"),
        ("{\"apiVersion\": \n".to_string(), "invalid JSON"),
        (
            "kind: KubeletConfiguration\n".to_string(),
            "apiVersion is missing",
        ),
        (
            "apiVersion: kubelet.config.k8s.io/v1\nkind: KubeletConfiguration\n".to_string(),
            "apiVersion \"kubelet.config.k8s.io/v1\" is not supported: expected \"kubelet.config.k8s.io/v1beta1\"",
        ),
        (
            format!("apiVersion: {API_VERSION}\n"),
            "kind is missing: expected \"KubeletConfiguration\"",
        ),
        (
            header("KubeProxyConfiguration"),
            "kind \"KubeProxyConfiguration\" is not supported: expected \"KubeletConfiguration\"",
        ),
    ];
    for (text, want) in cases {
        let err = file(text).unwrap_err().to_string();
        assert!(
            err.starts_with("config file /etc/kubelet/config.yaml: "),
            "{text:?}: {err}"
        );
        assert!(err.contains(want), "{text:?}: {err}");
    }
}

#[test]
fn unknown_and_unsupported_fields_are_rejected_by_name() {
    let unknown = file(&format!("{}staticPodPth: /x\n", header(KIND))).unwrap_err();
    assert!(matches!(&unknown, ConfigError::UnknownField { field, .. } if field == "staticPodPth"));
    assert_eq!(
        unknown.to_string(),
        "config file /etc/kubelet/config.yaml: unknown field \"staticPodPth\""
    );

    for field in ["kubeReserved", "featureGates", "enableServer"] {
        let err = file(&format!("{}{field}: {{}}\n", header(KIND))).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "config file /etc/kubelet/config.yaml: field \"{field}\" is not supported by this kubelet"
            )
        );
    }
}

#[test]
fn bad_values_name_their_field_and_file() {
    let cases: &[(&str, &str)] = &[
        (
            "healthzPort: http\n",
            "field \"healthzPort\" in config file /etc/kubelet/config.yaml: invalid type",
        ),
        (
            "clusterDNS: 10.0.0.10\n",
            "field \"clusterDNS\" in config file /etc/kubelet/config.yaml: invalid type",
        ),
        (
            "syncFrequency: 1d\n",
            "field \"syncFrequency\" in config file /etc/kubelet/config.yaml: unknown unit \"d\"",
        ),
        (
            "fileCheckFrequency: -5s\n",
            "field \"fileCheckFrequency\" in config file /etc/kubelet/config.yaml: duration \"-5s\" is negative",
        ),
        (
            "httpCheckFrequency: 0s\n",
            "field \"httpCheckFrequency\" in config file /etc/kubelet/config.yaml: must be greater than zero",
        ),
        (
            "runtimeRequestTimeout: 10\n",
            "field \"runtimeRequestTimeout\" in config file /etc/kubelet/config.yaml: invalid type",
        ),
        (
            "healthzPort: 70000\n",
            "field \"healthzPort\" in config file /etc/kubelet/config.yaml: 70000 must be between 1 and 65535",
        ),
        (
            "healthzPort: -1\n",
            "field \"healthzPort\" in config file /etc/kubelet/config.yaml: -1 must be between",
        ),
        (
            "port: 0\n",
            "field \"port\" in config file /etc/kubelet/config.yaml: 0 must be between",
        ),
        (
            "healthzBindAddress: localhost\n",
            "field \"healthzBindAddress\" in config file /etc/kubelet/config.yaml: \"localhost\" is not an IP address",
        ),
        (
            "containerRuntimeEndpoint: tcp://10.0.0.1:1234\n",
            "field \"containerRuntimeEndpoint\" in config file /etc/kubelet/config.yaml: endpoint \"tcp://10.0.0.1:1234\" has scheme \"tcp\": only unix:// endpoints are supported",
        ),
        (
            "containerRuntimeEndpoint: containerd.sock\n",
            "is neither unix:///absolute/path nor an absolute path",
        ),
        (
            "containerRuntimeEndpoint: unix://run/x.sock\n",
            "the socket path must be absolute",
        ),
        (
            "podLogsDir: var/log/pods\n",
            "field \"podLogsDir\" in config file /etc/kubelet/config.yaml: var/log/pods must be an absolute, normalized path",
        ),
        (
            "podLogsDir: /var/log/../pods\n",
            "must be an absolute, normalized path",
        ),
        (
            "cgroupRoot: kubepods\n",
            "must be an absolute, normalized cgroup path",
        ),
        (
            "staticPodPath: manifests\n",
            "field \"staticPodPath\" in config file /etc/kubelet/config.yaml: manifests is not an absolute path",
        ),
        (
            "staticPodURL: ftp://x/pods\n",
            "is not an http:// or https:// URL",
        ),
        (
            "clusterDNS: [dns.local]\n",
            "field \"clusterDNS\" in config file /etc/kubelet/config.yaml: \"dns.local\" is not an IP address",
        ),
        (
            "maxPods: -3\n",
            "field \"maxPods\" in config file /etc/kubelet/config.yaml: -3 must not be negative",
        ),
        (
            "cgroupDriver: cgroupv3\n",
            "unknown cgroup driver \"cgroupv3\"",
        ),
    ];
    for (body, want) in cases {
        let text = format!("{}{body}", header(KIND));
        let err = resolve(&[], Some(&text)).unwrap_err().to_string();
        assert!(err.contains(want), "{body:?}: got {err}");
    }
}

#[test]
fn systemd_cgroup_driver_is_rejected_clearly() {
    let text = format!("{}cgroupDriver: systemd\n", header(KIND));
    let err = resolve(&[], Some(&text)).unwrap_err().to_string();
    assert!(
        err.starts_with("field \"cgroupDriver\" in config file /etc/kubelet/config.yaml: "),
        "{err}"
    );
    assert!(
        err.contains("\"systemd\" is not supported by this kubelet"),
        "{err}"
    );
    assert!(err.contains("cgroupfs"), "{err}");

    let err = resolve(&["--cgroup-driver=systemd"], None)
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("flag --cgroup-driver: "), "{err}");
    // The flag wins over a valid file value too.
    let text = format!("{}cgroupDriver: cgroupfs\n", header(KIND));
    assert!(resolve(&["--cgroup-driver", "systemd"], Some(&text)).is_err());
}

#[test]
fn bad_flag_values_name_the_flag() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--healthz-port=65536"],
            "flag --healthz-port: 65536 must be between",
        ),
        (
            &["--healthz-bind-address=any"],
            "flag --healthz-bind-address: \"any\" is not an IP",
        ),
        (
            &["--container-runtime-endpoint=npipe:////./pipe/x"],
            "flag --container-runtime-endpoint: endpoint",
        ),
        (
            &["--sync-frequency=0s"],
            "flag --sync-frequency: must be greater than zero",
        ),
        (
            &["--node-ip=10.0.0.1,10.0.0.2"],
            "flag --node-ip: at most one IPv4 and one IPv6",
        ),
        (
            &["--node-ip=node"],
            "flag --node-ip: \"node\" is not an IP address",
        ),
        (
            &["--root-dir=relative"],
            "flag --root-dir: relative is not an absolute path",
        ),
        (&["--cgroup-root=/a//b"], "flag --cgroup-root:"),
    ];
    for (args, want) in cases {
        let err = resolve(args, None).unwrap_err().to_string();
        assert!(err.starts_with(want), "{args:?}: got {err}");
    }
}

#[test]
fn a_flag_fixes_a_bad_file_value() {
    // The flag wins, so the file's bad value is never used.
    let text = format!("{}syncFrequency: soon\n", header(KIND));
    let s = resolve(&["--sync-frequency=10s"], Some(&text)).unwrap();
    assert_eq!(s.sync_frequency, Duration::from_secs(10));
}

#[test]
fn node_name_comes_from_override_or_hostname() {
    assert_eq!(
        node_name(Some("Edge-1"), || unreachable!()).unwrap(),
        "edge-1"
    );
    assert_eq!(
        node_name(None, || Ok(" MyHost\n".to_string())).unwrap(),
        "myhost"
    );
    assert_eq!(node_name(Some("  "), || Ok("h".to_string())).unwrap(), "h");
    assert!(node_name(None, || Ok(String::new())).is_err());
    let err = node_name(None, || Err(std::io::Error::other("boom"))).unwrap_err();
    assert_eq!(err.to_string(), "node name: cannot read the hostname: boom");
}

#[test]
fn empty_static_settings_mean_none() {
    let text = format!("{}staticPodPath: \"\"\nstaticPodURL: \"\"\n", header(KIND));
    let s = resolve(&[], Some(&text)).unwrap();
    assert_eq!(s.static_pod_path, None);
    assert_eq!(s.static_pod_url, None);
}

#[test]
fn load_reports_missing_files_with_their_path() {
    let err = ConfigFile::load(Path::new("/nonexistent/kubelet.yaml")).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("config file /nonexistent/kubelet.yaml: "),
        "{err}"
    );
}

#[test]
fn server_settings_follow_the_reference_defaults() {
    // Without a config file: the flags' legacy defaults.
    let s = resolve(&[], None).unwrap();
    assert_eq!(s.address, "0.0.0.0".parse::<IpAddr>().unwrap());
    assert_eq!(s.port, 10250);
    assert_eq!(s.read_only_port, 0);
    assert_eq!(s.cert_dir, PathBuf::from("/var/lib/kubelet/pki"));
    assert!(s.server_auth.anonymous);
    assert!(!s.server_auth.token_webhook);
    assert_eq!(s.server_auth.mode, AuthorizationMode::AlwaysAllow);

    // With one: v1beta1's defaults (webhooks need --kubeconfig).
    let text = format!("apiVersion: {API_VERSION}\nkind: KubeletConfiguration\n");
    let s = resolve(&["--kubeconfig=/etc/kubelet.conf"], Some(&text)).unwrap();
    assert!(!s.server_auth.anonymous);
    assert!(s.server_auth.token_webhook);
    assert_eq!(
        s.server_auth.token_webhook_cache_ttl,
        Duration::from_secs(120)
    );
    assert_eq!(s.server_auth.mode, AuthorizationMode::Webhook);
    assert_eq!(s.server_auth.cache_authorized_ttl, Duration::from_secs(300));
    assert_eq!(
        s.server_auth.cache_unauthorized_ttl,
        Duration::from_secs(30)
    );
    // Standalone, defaulted webhooks are off; asked for, they are an error.
    let s = resolve(&[], Some(&text)).unwrap();
    assert!(!s.server_auth.token_webhook);
    assert_eq!(s.server_auth.mode, AuthorizationMode::AlwaysAllow);
    assert!(resolve(&["--authorization-mode=Webhook"], Some(&text)).is_err());

    let text = format!(
        "apiVersion: {API_VERSION}\nkind: KubeletConfiguration\naddress: 127.0.0.1\n\
         tlsCertFile: /pki/k.crt\ntlsPrivateKeyFile: /pki/k.key\ntlsMinVersion: VersionTLS13\n\
         tlsCipherSuites: [TLS_AES_128_GCM_SHA256]\n\
         authentication:\n  x509:\n    clientCAFile: /pki/ca.crt\n  webhook:\n    \
         enabled: true\n    cacheTTL: 1m\n  anonymous:\n    enabled: false\n\
         authorization:\n  mode: Webhook\n  webhook:\n    cacheAuthorizedTTL: 10s\n    \
         cacheUnauthorizedTTL: 1s\n"
    );
    let s = resolve(
        &[
            "--kubeconfig=/etc/kubelet.conf",
            "--port=10260",
            "--anonymous-auth",
        ],
        Some(&text),
    )
    .unwrap();
    assert_eq!(s.address, "127.0.0.1".parse::<IpAddr>().unwrap());
    assert_eq!(s.port, 10260);
    assert_eq!(s.tls_cert_file, Some(PathBuf::from("/pki/k.crt")));
    assert_eq!(s.tls_private_key_file, Some(PathBuf::from("/pki/k.key")));
    assert_eq!(s.tls_min_version.as_deref(), Some("VersionTLS13"));
    assert_eq!(s.tls_cipher_suites, ["TLS_AES_128_GCM_SHA256"]);
    assert_eq!(
        s.server_auth.client_ca_file,
        Some(PathBuf::from("/pki/ca.crt"))
    );
    assert!(s.server_auth.anonymous, "the flag wins");
    assert_eq!(
        s.server_auth.token_webhook_cache_ttl,
        Duration::from_secs(60)
    );
    assert_eq!(s.server_auth.cache_authorized_ttl, Duration::from_secs(10));
    assert_eq!(s.server_auth.cache_unauthorized_ttl, Duration::from_secs(1));
    let err = resolve(&["--authorization-mode=RBAC"], None).unwrap_err();
    assert!(err.to_string().contains("RBAC"), "{err}");
}

#[test]
fn container_log_rotation_settings() {
    let s = resolve(&[], None).unwrap();
    assert_eq!(s.container_log_max_size, 10 * 1024 * 1024);
    assert_eq!(s.container_log_max_files, 5);

    let text = format!(
        "{}containerLogMaxSize: 200Ki\ncontainerLogMaxFiles: 3\n",
        header(KIND)
    );
    let s = resolve(&[], Some(&text)).unwrap();
    assert_eq!(s.container_log_max_size, 200 * 1024);
    assert_eq!(s.container_log_max_files, 3);

    let s = resolve(
        &[
            "--container-log-max-size",
            "1M",
            "--container-log-max-files=2",
        ],
        Some(&text),
    )
    .unwrap();
    assert_eq!(s.container_log_max_size, 1_000_000);
    assert_eq!(s.container_log_max_files, 2);

    // Negative turns rotation off, as the reference.
    let s = resolve(&["--container-log-max-size", "-1"], None).unwrap();
    assert_eq!(s.container_log_max_size, -1);

    let err = resolve(&["--container-log-max-files", "1"], None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("--container-log-max-files"), "{err}");
    assert!(
        err.contains("1 must be equal to or greater than 2"),
        "{err}"
    );
    let text = format!("{}containerLogMaxSize: ten megs\n", header(KIND));
    let err = resolve(&[], Some(&text)).unwrap_err().to_string();
    assert!(
        err.contains("field \"containerLogMaxSize\"") && err.contains("must be a valid quantity"),
        "{err}"
    );
}

#[test]
fn resolv_conf_and_seccomp_default_from_file_and_flags() {
    let s = resolve(&[], None).unwrap();
    assert_eq!(s.resolv_conf, "/etc/resolv.conf");
    assert!(!s.seccomp_default);
    let text = format!(
        "apiVersion: {API_VERSION}\nkind: KubeletConfiguration\nresolvConf: /run/systemd/resolve/resolv.conf\nseccompDefault: true\n"
    );
    let s = resolve(&[], Some(&text)).unwrap();
    assert_eq!(s.resolv_conf, "/run/systemd/resolve/resolv.conf");
    assert!(s.seccomp_default);
    assert!(s.inert_fields.is_empty(), "{:?}", s.inert_fields);
    let s = resolve(&["--resolv-conf=", "--seccomp-default=false"], Some(&text)).unwrap();
    assert_eq!(s.resolv_conf, "", "the flag wins, and empty means none");
    assert!(!s.seccomp_default);
}

#[test]
fn pod_cgroup_settings_from_file_and_flags() {
    // The reference's defaults: per-QoS cgroups, `pods` enforced, no pids limit.
    let s = resolve(&[], None).unwrap();
    assert!(s.cgroups_per_qos);
    assert!(s.enforce_node_allocatable_pods);
    assert_eq!(s.pod_pids_limit, -1);

    let text = format!(
        "{}cgroupsPerQOS: true\nenforceNodeAllocatable: [none]\npodPidsLimit: 1024\n",
        header(KIND)
    );
    let s = resolve(&[], Some(&text)).unwrap();
    assert!(s.cgroups_per_qos);
    assert!(!s.enforce_node_allocatable_pods);
    assert_eq!(s.pod_pids_limit, 1024);

    // Flags win over the file.
    let s = resolve(
        &["--pod-max-pids=-1", "--enforce-node-allocatable=pods"],
        Some(&text),
    )
    .unwrap();
    assert_eq!(s.pod_pids_limit, -1);
    assert!(s.enforce_node_allocatable_pods);
    let s = resolve(
        &["--cgroups-per-qos=false", "--enforce-node-allocatable="],
        None,
    )
    .unwrap();
    assert!(!s.cgroups_per_qos);
    assert!(!s.enforce_node_allocatable_pods);

    let cases: &[(&[&str], Option<String>, &str)] = &[
        (
            &["--cgroups-per-qos=false"],
            None,
            "default enforceNodeAllocatable: enforcing node allocatable on pods needs cgroupsPerQOS",
        ),
        (
            &["--enforce-node-allocatable=pods,none"],
            None,
            "flag --enforce-node-allocatable: may not contain additional enforcements",
        ),
        (
            &[],
            Some(format!("{}enforceNodeAllocatable: [pod]\n", header(KIND))),
            "field \"enforceNodeAllocatable\" in config file /etc/kubelet/config.yaml: invalid option \"pod\"",
        ),
        (
            &["--enforce-node-allocatable=pods,system-reserved"],
            None,
            "\"system-reserved\" is not supported by this kubelet",
        ),
        (
            &[],
            Some(format!("{}podPidsLimit: lots\n", header(KIND))),
            "field \"podPidsLimit\" in config file /etc/kubelet/config.yaml: invalid type",
        ),
    ];
    for (args, text, want) in cases {
        let err = resolve(args, text.as_deref()).unwrap_err().to_string();
        assert!(err.contains(want), "{args:?} {text:?}: {err}");
    }
}

#[test]
fn image_gc_settings_from_file_and_flags() {
    let s = resolve(&[], None).unwrap();
    assert_eq!(s.image_gc.high_threshold_percent, 85);
    assert_eq!(s.image_gc.low_threshold_percent, 80);
    assert_eq!(s.image_gc.min_age, Duration::from_secs(120));
    assert_eq!(s.image_gc.period, Duration::from_secs(300));
    assert_eq!(
        s.image_gc.sandbox_image.as_deref(),
        Some("registry.k8s.io/pause:3.10")
    );

    let text = format!(
        "{}imageGCHighThresholdPercent: 90\nimageGCLowThresholdPercent: 70\nimageMinimumGCAge: 5m\n",
        header(KIND)
    );
    let s = resolve(&[], Some(&text)).unwrap();
    assert_eq!(
        (
            s.image_gc.high_threshold_percent,
            s.image_gc.low_threshold_percent,
            s.image_gc.min_age
        ),
        (90, 70, Duration::from_secs(300))
    );

    // Flags win; a minimum age of 0 is allowed; 100 is a valid high threshold (GC off).
    let s = resolve(
        &[
            "--image-gc-high-threshold=100",
            "--image-gc-low-threshold",
            "0",
            "--minimum-image-ttl-duration=0s",
            "--pod-infra-container-image=localhost/pause:local",
        ],
        Some(&text),
    )
    .unwrap();
    assert_eq!(s.image_gc.high_threshold_percent, 100);
    assert_eq!(s.image_gc.low_threshold_percent, 0);
    assert_eq!(s.image_gc.min_age, Duration::ZERO);
    assert!(!s.image_gc.enabled());
    assert_eq!(
        s.image_gc.sandbox_image.as_deref(),
        Some("localhost/pause:local")
    );
}

#[test]
fn image_gc_settings_are_validated_as_the_reference() {
    let err = resolve(&["--image-gc-high-threshold=101"], None)
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "flag --image-gc-high-threshold: invalid configuration: imageGCHighThresholdPercent \
         (--image-gc-high-threshold) 101 must be between 0 and 100, inclusive"
    );
    let text = format!("{}imageGCLowThresholdPercent: -1\n", header(KIND));
    let err = resolve(&[], Some(&text)).unwrap_err().to_string();
    assert!(
        err.contains("field \"imageGCLowThresholdPercent\""),
        "{err}"
    );
    assert!(
        err.contains(
            "imageGCLowThresholdPercent (--image-gc-low-threshold) -1 must be between 0 and 100, \
             inclusive"
        ),
        "{err}"
    );
    // Low must be below high, equal included.
    for (high, low) in [("80", "80"), ("50", "60")] {
        let err = resolve(
            &[
                &format!("--image-gc-high-threshold={high}"),
                &format!("--image-gc-low-threshold={low}"),
            ],
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.ends_with(&format!(
                "invalid configuration: imageGCLowThresholdPercent (--image-gc-low-threshold) \
                 {low} must be less than imageGCHighThresholdPercent (--image-gc-high-threshold) \
                 {high}"
            )),
            "{err}"
        );
    }
    let text = format!("{}imageMinimumGCAge: 2 minutes\n", header(KIND));
    let err = resolve(&[], Some(&text)).unwrap_err().to_string();
    assert!(err.contains("field \"imageMinimumGCAge\""), "{err}");
    // imageMaximumGCAge stays unimplemented: refused by name.
    let err = file(&format!("{}imageMaximumGCAge: 1h\n", header(KIND))).unwrap_err();
    assert!(
        matches!(&err, ConfigError::UnsupportedField { field, .. } if field == "imageMaximumGCAge")
    );
}

#[test]
fn eviction_settings_from_file_and_flags() {
    use kubelet_core::eviction::{Signal, ThresholdValue};
    let summary = |s: &Settings| {
        s.eviction
            .thresholds
            .iter()
            .map(|t| {
                let value = match &t.value {
                    ThresholdValue::Quantity(q) => q.0.clone(),
                    ThresholdValue::Percentage(p) => format!("{:.0}%", p * 100.0),
                };
                (t.signal.name().to_string(), value, t.grace_period)
            })
            .collect::<Vec<_>>()
    };
    // The reference's defaults.
    let s = resolve(&[], None).unwrap();
    let hard = |signal: &str, value: &str| (signal.to_string(), value.to_string(), Duration::ZERO);
    let mut defaults = summary(&s);
    defaults.sort();
    assert_eq!(
        defaults,
        [
            hard("imagefs.available", "15%"),
            hard("imagefs.inodesFree", "5%"),
            hard("memory.available", "100Mi"),
            hard("nodefs.available", "10%"),
            hard("nodefs.inodesFree", "5%"),
        ]
    );
    assert_eq!(
        s.eviction.pressure_transition_period,
        Duration::from_secs(300)
    );
    assert_eq!(s.eviction.max_pod_grace_period, Duration::ZERO);

    // A map given replaces the defaults whole; soft thresholds with their grace periods.
    let text = format!(
        "{}evictionHard:\n  memory.available: 200Mi\nevictionSoft:\n  nodefs.available: 20%\n\
         evictionSoftGracePeriod:\n  nodefs.available: 1m30s\nevictionMaxPodGracePeriod: 30\n\
         evictionPressureTransitionPeriod: 1m\nevictionMinimumReclaim:\n  memory.available: 50Mi\n",
        header(KIND)
    );
    let s = resolve(&[], Some(&text)).unwrap();
    assert_eq!(
        summary(&s),
        [
            hard("memory.available", "200Mi"),
            (
                "nodefs.available".to_string(),
                "20%".to_string(),
                Duration::from_secs(90)
            ),
        ]
    );
    assert_eq!(
        s.eviction.thresholds[0].min_reclaim,
        Some(ThresholdValue::Quantity(
            k8s_openapi::apimachinery::pkg::api::resource::Quantity("50Mi".into())
        ))
    );
    assert_eq!(s.eviction.max_pod_grace_period, Duration::from_secs(30));
    assert_eq!(
        s.eviction.pressure_transition_period,
        Duration::from_secs(60)
    );

    // mergeDefaultEvictionSettings fills what evictionHard leaves out.
    let merged = format!(
        "{}evictionHard:\n  memory.available: 200Mi\nmergeDefaultEvictionSettings: true\n",
        header(KIND)
    );
    let s = resolve(&[], Some(&merged)).unwrap();
    assert_eq!(s.eviction.thresholds.len(), 5);
    assert!(
        s.eviction
            .thresholds
            .iter()
            .any(|t| t.signal == Signal::MemoryAvailable
                && t.value
                    == ThresholdValue::Quantity(
                        k8s_openapi::apimachinery::pkg::api::resource::Quantity("200Mi".into())
                    ))
    );

    // Flags win over the file; an empty --eviction-hard turns hard eviction off.
    let s = resolve(
        &[
            "--eviction-hard=pid.available<1000,memory.available<5%",
            "--eviction-pressure-transition-period=30s",
            "--eviction-max-pod-grace-period=5",
        ],
        Some(&text),
    )
    .unwrap();
    let mut flagged = summary(&s);
    flagged.sort();
    assert_eq!(flagged[0], hard("memory.available", "5%"));
    assert_eq!(flagged[2], hard("pid.available", "1000"));
    assert_eq!(
        s.eviction.pressure_transition_period,
        Duration::from_secs(30)
    );
    assert_eq!(s.eviction.max_pod_grace_period, Duration::from_secs(5));
    let s = resolve(&["--eviction-hard="], None).unwrap();
    assert!(s.eviction.thresholds.is_empty());
}

#[test]
fn eviction_settings_errors_name_the_setting() {
    let cases: &[(&[&str], Option<String>, &str)] = &[
        (
            &["--eviction-hard=memory.avail<1Gi"],
            None,
            "flag --eviction-hard: unsupported eviction signal memory.avail",
        ),
        (
            &["--eviction-hard=memory.available=1Gi"],
            None,
            "flag --eviction-hard",
        ),
        (
            &["--eviction-soft=memory.available<1Gi"],
            None,
            "flag --eviction-soft",
        ),
        (
            &["--eviction-max-pod-grace-period=-1"],
            None,
            "flag --eviction-max-pod-grace-period: -1 must not be negative",
        ),
        (
            &[],
            Some(format!(
                "{}evictionHard:\n  nodefs.available: 120%\n",
                header(KIND)
            )),
            "field \"evictionHard\"",
        ),
        (
            &[],
            Some(format!(
                "{}evictionPressureTransitionPeriod: 5 minutes\n",
                header(KIND)
            )),
            "field \"evictionPressureTransitionPeriod\"",
        ),
    ];
    for (args, text, want) in cases {
        let err = resolve(args, text.as_deref()).unwrap_err().to_string();
        assert!(err.contains(want), "{args:?} {text:?}: {err}");
    }
}
