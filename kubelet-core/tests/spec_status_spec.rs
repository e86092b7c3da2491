//! Table tests of the pod-spec translation: sandbox config, container config, `$(VAR)`
//! expansion, cgroup parents, CPU and OOM arithmetic.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities as ApiCapabilities, ConfigMapEnvSource, ConfigMapKeySelector, Container,
    ContainerPort, EnvFromSource, EnvVar, EnvVarSource, ObjectFieldSelector, Pod, PodDNSConfig,
    PodDNSConfigOption, PodSecurityContext, PodSpec, ResourceFieldSelector, ResourceRequirements,
    SecretEnvSource, SecurityContext, Sysctl,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kubelet_core::labels;
use kubelet_core::reconciler::env::{EnvObjects, container_env};
use kubelet_core::reconciler::spec::{
    self, SpecSettings, expand_vars, milli_cpu_to_quota, milli_cpu_to_shares, oom_score_adj,
    sandbox_config,
};
use kubelet_core::runtime::{
    ContainerConfig, DnsConfig, Mount, NamespaceMode, PortMapping, Protocol,
};

/// The container config with its environment, on a node with an (empty) object source.
fn container_config(
    p: &Pod,
    c: &Container,
    restart_count: u32,
    mounts: Vec<Mount>,
    settings: &SpecSettings,
) -> Result<ContainerConfig, String> {
    config_with(
        p,
        c,
        restart_count,
        mounts,
        settings,
        &EnvObjects::given(vec![], vec![], vec![]),
    )
}

fn config_with(
    p: &Pod,
    c: &Container,
    restart_count: u32,
    mounts: Vec<Mount>,
    settings: &SpecSettings,
    objects: &EnvObjects,
) -> Result<ContainerConfig, String> {
    let env = container_env(p, c, objects, settings)?;
    spec::container_config(p, c, restart_count, mounts, env.vars, settings)
}

fn resources(requests: &[(&str, &str)], limits: &[(&str, &str)]) -> Option<ResourceRequirements> {
    let list = |items: &[(&str, &str)]| {
        (!items.is_empty()).then(|| {
            items
                .iter()
                .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                .collect()
        })
    };
    Some(ResourceRequirements {
        requests: list(requests),
        limits: list(limits),
        ..Default::default()
    })
}

fn container(name: &str) -> Container {
    Container {
        name: name.into(),
        image: Some("busybox:1.36".into()),
        ..Default::default()
    }
}

fn pod(containers: Vec<Container>) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("prod".into()),
            uid: Some("uid-1".into()),
            labels: Some(BTreeMap::from([("app".into(), "web".into())])),
            annotations: Some(BTreeMap::from([("note".into(), "hi".into())])),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers,
            node_name: Some("node-1".into()),
            service_account_name: Some("sa".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn spec_mut(p: &mut Pod) -> &mut PodSpec {
    p.spec.get_or_insert_with(Default::default)
}

fn env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..Default::default()
    }
}

fn env_from(name: &str, source: EnvVarSource) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(source),
        ..Default::default()
    }
}

fn field_ref(path: &str) -> EnvVarSource {
    EnvVarSource {
        field_ref: Some(ObjectFieldSelector {
            field_path: path.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn resource_ref(resource: &str, divisor: Option<&str>) -> EnvVarSource {
    EnvVarSource {
        resource_field_ref: Some(ResourceFieldSelector {
            resource: resource.into(),
            divisor: divisor.map(|d| Quantity(d.into())),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn expand_vars_follows_the_reference_cases() {
    let env: BTreeMap<String, String> = [
        ("VAR_A", "A"),
        ("VAR_B", "B"),
        ("VAR_C", "C"),
        ("VAR_REF", "$(VAR_A)"),
        ("VAR_EMPTY", ""),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let cases = [
        ("$(VAR_A)", "A"),
        ("___$(VAR_B)___", "___B___"),
        ("$(VAR_A)-$(VAR_A)", "A-A"),
        ("f000-$$VAR_A", "f000-$VAR_A"),
        ("foo\\$(VAR_C)bar", "foo\\Cbar"),
        ("foo\\\\$(VAR_C)bar", "foo\\\\Cbar"),
        ("$(VAR_A)$(VAR_B)$(VAR_C)", "ABC"),
        ("$(VAR_REF)", "$(VAR_A)"),
        ("$(VAR_EMPTY)", ""),
        ("$(VAR_DNE)", "$(VAR_DNE)"),
        ("$$(VAR_B)", "$(VAR_B)"),
        ("$$$(VAR_A)", "$A"),
        ("$$$$(VAR_A)", "$$(VAR_A)"),
        ("$$$$", "$$"),
        ("$$", "$"),
        ("$$$", "$$"),
        ("$", "$"),
        ("$(", "$("),
        ("$(VAR_A", "$(VAR_A"),
        ("$()", "$()"),
        ("$VAR_A", "$VAR_A"),
        ("$(VAR_A)$", "A$"),
        ("$(VAR_A)$$", "A$"),
        ("hello $(VAR_A) ☃ $(VAR_B)", "hello A ☃ B"),
        ("$☃", "$☃"),
        ("no refs", "no refs"),
        ("", ""),
    ];
    for (input, want) in cases {
        assert_eq!(expand_vars(input, &env), want, "input {input:?}");
    }
}

#[test]
fn cpu_shares_and_quota_follow_the_reference() {
    assert_eq!(milli_cpu_to_shares(0), 2);
    assert_eq!(milli_cpu_to_shares(1), 2);
    assert_eq!(milli_cpu_to_shares(100), 102);
    assert_eq!(milli_cpu_to_shares(250), 256);
    assert_eq!(milli_cpu_to_shares(1000), 1024);
    assert_eq!(milli_cpu_to_shares(1_000_000), 262_144);
    assert_eq!(milli_cpu_to_quota(0, 100_000), 0);
    assert_eq!(milli_cpu_to_quota(1, 100_000), 1_000);
    assert_eq!(milli_cpu_to_quota(250, 100_000), 25_000);
    assert_eq!(milli_cpu_to_quota(2000, 100_000), 200_000);
}

#[test]
fn container_config_of_a_full_spec() {
    let mut c = container("app");
    c.command = Some(vec!["/bin/$(MODE)".into()]);
    c.args = Some(vec![
        "--greeting=$(GREETING)".into(),
        "$$(NOT_EXPANDED)".into(),
        "$(UNDEFINED)".into(),
    ]);
    c.working_dir = Some("/srv".into());
    c.stdin = Some(true);
    c.tty = Some(true);
    c.ports = Some(vec![ContainerPort {
        name: Some("http".into()),
        container_port: 8080,
        protocol: Some("TCP".into()),
        ..Default::default()
    }]);
    c.resources = resources(
        &[("cpu", "500m"), ("memory", "256Mi")],
        &[("cpu", "1"), ("memory", "512Mi")],
    );
    c.env = Some(vec![
        env("MODE", "serve"),
        env("GREETING", "hello from $(POD_NAME) in $(MODE)"),
        env_from("POD_NAME", field_ref("metadata.name")),
        env_from("POD_NAMESPACE", field_ref("metadata.namespace")),
        env_from("POD_UID", field_ref("metadata.uid")),
        env_from("NODE", field_ref("spec.nodeName")),
        env_from("SA", field_ref("spec.serviceAccountName")),
        env_from("APP", field_ref("metadata.labels['app']")),
        env_from("MISSING", field_ref("metadata.annotations['absent']")),
        env_from("POD_IP", field_ref("status.podIP")),
        env_from("MEM_LIMIT_MI", resource_ref("limits.memory", Some("1Mi"))),
        env_from("CPU_REQUEST_M", resource_ref("requests.cpu", Some("1m"))),
        env_from("CPU_LIMIT", resource_ref("limits.cpu", None)),
        env_from(
            "OPTIONAL_CM",
            EnvVarSource {
                config_map_key_ref: Some(ConfigMapKeySelector {
                    name: "cm".into(),
                    key: "k".into(),
                    optional: Some(true),
                }),
                ..Default::default()
            },
        ),
        env("MODE_AGAIN", "$(MODE)"),
        env("MODE", "overridden"),
    ]);
    c.security_context = Some(SecurityContext {
        run_as_user: Some(1000),
        read_only_root_filesystem: Some(true),
        allow_privilege_escalation: Some(false),
        capabilities: Some(ApiCapabilities {
            add: Some(vec!["NET_ADMIN".into()]),
            drop: Some(vec!["ALL".into()]),
        }),
        ..Default::default()
    });
    let mut p = pod(vec![c.clone()]);
    spec_mut(&mut p).security_context = Some(PodSecurityContext {
        run_as_user: Some(500),
        run_as_group: Some(600),
        supplemental_groups: Some(vec![700, 800]),
        fs_group: Some(900),
        ..Default::default()
    });
    spec_mut(&mut p).termination_grace_period_seconds = Some(45);
    let mounts = vec![Mount {
        container_path: "/data".into(),
        host_path: "/var/lib/kubelet/pods/uid-1/volumes/data".into(),
        ..Default::default()
    }];
    let settings = SpecSettings {
        node_memory_capacity: 8 * 1024 * 1024 * 1024,
        ..Default::default()
    };

    let cfg = container_config(&p, &c, 3, mounts.clone(), &settings).expect("config");

    assert_eq!(cfg.metadata.name, "app");
    assert_eq!(cfg.metadata.attempt, 3);
    assert_eq!(cfg.image, "busybox:1.36");
    assert_eq!(cfg.command, vec!["/bin/overridden"]);
    assert_eq!(
        cfg.args,
        vec![
            // Single pass: the value of GREETING is not expanded again.
            "--greeting=hello from $(POD_NAME) in serve",
            "$(NOT_EXPANDED)",
            "$(UNDEFINED)"
        ]
    );
    let envs: Vec<(&str, &str)> = cfg
        .envs
        .iter()
        .map(|kv| (kv.key.as_str(), kv.value.as_str()))
        .collect();
    assert_eq!(
        envs,
        vec![
            ("MODE", "overridden"),
            // Expanded when defined, before POD_NAME existed.
            ("GREETING", "hello from $(POD_NAME) in serve"),
            ("POD_NAME", "web"),
            ("POD_NAMESPACE", "prod"),
            ("POD_UID", "uid-1"),
            ("NODE", "node-1"),
            ("SA", "sa"),
            ("APP", "web"),
            ("MISSING", ""),
            ("POD_IP", ""),
            ("MEM_LIMIT_MI", "512"),
            ("CPU_REQUEST_M", "500"),
            ("CPU_LIMIT", "1"),
            ("MODE_AGAIN", "serve"),
        ]
    );
    assert_eq!(cfg.working_dir, "/srv");
    assert_eq!(cfg.mounts, mounts);
    assert!(cfg.stdin && cfg.tty && !cfg.stdin_once);
    assert_eq!(cfg.log_path, "app/3.log");

    let want_labels = BTreeMap::from([
        (labels::POD_NAME.to_string(), "web".to_string()),
        (labels::POD_NAMESPACE.to_string(), "prod".to_string()),
        (labels::POD_UID.to_string(), "uid-1".to_string()),
        (labels::CONTAINER_NAME.to_string(), "app".to_string()),
    ]);
    assert_eq!(cfg.labels, want_labels);
    let a = &cfg.annotations;
    assert_eq!(a[labels::CONTAINER_HASH], labels::container_hash(&c));
    assert_eq!(a[labels::CONTAINER_RESTART_COUNT], "3");
    assert_eq!(
        a[labels::CONTAINER_TERMINATION_MESSAGE_PATH],
        "/dev/termination-log"
    );
    assert_eq!(a[labels::CONTAINER_TERMINATION_MESSAGE_POLICY], "File");
    assert_eq!(a[labels::POD_TERMINATION_GRACE_PERIOD], "45");
    let ports: serde_json::Value =
        serde_json::from_str(&a[spec::CONTAINER_PORTS]).expect("ports annotation is JSON");
    assert_eq!(
        ports,
        serde_json::json!([{"containerPort": 8080, "name": "http", "protocol": "TCP"}])
    );
    assert!(!a.contains_key(spec::POD_DELETION_GRACE_PERIOD));

    // 500m -> 512 shares; 1 cpu -> 100ms per 100ms; 512Mi; Burstable with 256Mi of 8Gi:
    // 1000 - 1000*256Mi/8Gi = 1000 - 31 = 969.
    assert_eq!(cfg.resources.cpu_shares, 512);
    assert_eq!(cfg.resources.cpu_period, 100_000);
    assert_eq!(cfg.resources.cpu_quota, 100_000);
    assert_eq!(cfg.resources.memory_limit_in_bytes, 536_870_912);
    assert_eq!(cfg.resources.oom_score_adj, 969);

    let sec = &cfg.security;
    assert_eq!(sec.run_as_user, Some(1000), "container overrides pod");
    assert_eq!(
        sec.run_as_group,
        Some(600),
        "pod value when container sets none"
    );
    // fsGroup first, then supplementalGroups, as the reference appends them.
    assert_eq!(sec.supplemental_groups, vec![900, 700, 800]);
    assert!(sec.readonly_rootfs);
    assert!(sec.no_new_privs);
    assert!(!sec.privileged);
    let caps = sec.capabilities.as_ref().expect("capabilities");
    assert_eq!(caps.add, vec!["NET_ADMIN"]);
    assert_eq!(caps.drop, vec!["ALL"]);
    assert_eq!(sec.namespace_network, NamespaceMode::Pod);
}

#[test]
fn limits_only_set_requests_and_best_effort_gets_minimum_shares() {
    let mut limited = container("limited");
    limited.resources = resources(&[], &[("cpu", "250m"), ("memory", "64Mi")]);
    let p = pod(vec![limited.clone()]);
    let cfg = container_config(&p, &limited, 0, vec![], &SpecSettings::default()).expect("config");
    assert_eq!(
        cfg.resources.cpu_shares, 256,
        "request defaults to the limit"
    );
    assert_eq!(cfg.resources.cpu_quota, 25_000);
    assert_eq!(cfg.resources.memory_limit_in_bytes, 64 * 1024 * 1024);
    assert_eq!(cfg.resources.oom_score_adj, -997, "Guaranteed");

    let plain = container("plain");
    let p = pod(vec![plain.clone()]);
    let cfg = container_config(&p, &plain, 0, vec![], &SpecSettings::default()).expect("config");
    assert_eq!(cfg.resources.cpu_shares, 2);
    assert_eq!(cfg.resources.cpu_quota, 0);
    assert_eq!(cfg.resources.cpu_period, 100_000);
    assert_eq!(cfg.resources.memory_limit_in_bytes, 0);
    assert_eq!(cfg.resources.oom_score_adj, 1000, "BestEffort");
    assert!(!cfg.security.no_new_privs, "unset allowPrivilegeEscalation");
}

#[test]
fn oom_score_adj_per_class() {
    let gib: i64 = 1024 * 1024 * 1024;
    let burstable = |mem: &str| {
        let mut c = container("c");
        c.resources = resources(&[("memory", mem)], &[]);
        (pod(vec![c.clone()]), c)
    };
    let cases = [
        ("1Gi", 8 * gib, 875),
        ("8Gi", 8 * gib, 3),
        ("16Gi", 8 * gib, 3),
        ("1", 8 * gib, 999),
        ("1Gi", 0, 999),
    ];
    for (mem, capacity, want) in cases {
        let (p, c) = burstable(mem);
        assert_eq!(
            oom_score_adj(&p, &c, capacity),
            want,
            "request {mem} of {capacity}"
        );
    }

    // A node-critical static pod is protected whatever its class.
    let (mut p, c) = burstable("1Gi");
    spec_mut(&mut p).priority_class_name = Some("system-node-critical".into());
    assert_eq!(
        oom_score_adj(&p, &c, 8 * gib),
        875,
        "not static, no priority"
    );
    p.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(labels::CONFIG_SOURCE.into(), "file".into());
    assert_eq!(oom_score_adj(&p, &c, 8 * gib), -997);

    // A sidecar gets at most the score of the smallest regular container.
    let mut sidecar = container("sidecar");
    sidecar.restart_policy = Some("Always".into());
    sidecar.resources = resources(&[("memory", "100Mi")], &[]);
    let mut main = container("main");
    main.resources = resources(&[("memory", "2Gi")], &[]);
    let mut p = pod(vec![main.clone()]);
    spec_mut(&mut p).init_containers = Some(vec![sidecar.clone()]);
    assert_eq!(oom_score_adj(&p, &main, 8 * gib), 750);
    assert_eq!(oom_score_adj(&p, &sidecar, 8 * gib), 750);
}

#[test]
fn unresolvable_env_sources_name_the_field() {
    let mut c = container("app");
    c.env = Some(vec![
        env("A", "1"),
        env_from(
            "B",
            EnvVarSource {
                config_map_key_ref: Some(ConfigMapKeySelector {
                    name: "cm".into(),
                    key: "k".into(),
                    optional: None,
                }),
                ..Default::default()
            },
        ),
    ]);
    let mut init = c.clone();
    init.name = "setup".into();
    let mut p = pod(vec![container("first"), c.clone()]);
    spec_mut(&mut p).init_containers = Some(vec![init.clone()]);

    // As the reference: the object is not there (the reference's object managers' words).
    let err = container_config(&p, &c, 0, vec![], &SpecSettings::default()).expect_err("cm");
    assert_eq!(err, "configmap \"cm\" not found");
    let err = container_config(&p, &init, 0, vec![], &SpecSettings::default()).expect_err("cm");
    assert_eq!(err, "configmap \"cm\" not found");
    // A kubelet without an API server cannot resolve any, optional or not.
    let none = EnvObjects::default();
    let err =
        config_with(&p, &c, 0, vec![], &SpecSettings::default(), &none).expect_err("no client");
    assert_eq!(err, "couldn't get configMap prod/cm, no kubeClient defined");

    let mut from_secret = container("app");
    from_secret.env_from = Some(vec![
        EnvFromSource {
            config_map_ref: Some(ConfigMapEnvSource {
                name: "optional-cm".into(),
                optional: Some(true),
            }),
            ..Default::default()
        },
        EnvFromSource {
            secret_ref: Some(SecretEnvSource {
                name: "creds".into(),
                optional: None,
            }),
            ..Default::default()
        },
    ]);
    let p = pod(vec![from_secret.clone()]);
    let err = container_config(&p, &from_secret, 0, vec![], &SpecSettings::default())
        .expect_err("secret");
    assert_eq!(err, "secret \"creds\" not found");
    let err = config_with(&p, &from_secret, 0, vec![], &SpecSettings::default(), &none)
        .expect_err("no client");
    assert_eq!(
        err,
        "couldn't get configMap prod/optional-cm, no kubeClient defined"
    );

    let mut bad_field = container("app");
    bad_field.env = Some(vec![env_from("X", field_ref("spec.nope"))]);
    let p = pod(vec![bad_field.clone()]);
    let err =
        container_config(&p, &bad_field, 0, vec![], &SpecSettings::default()).expect_err("field");
    assert!(
        err.contains("spec.containers[0].env[0].valueFrom.fieldRef"),
        "{err}"
    );
    assert!(err.contains("spec.nope"), "{err}");

    let mut bad_quantity = container("app");
    bad_quantity.resources = resources(&[], &[("cpu", "lots")]);
    let p = pod(vec![bad_quantity.clone()]);
    let err = container_config(&p, &bad_quantity, 0, vec![], &SpecSettings::default())
        .expect_err("quantity");
    assert!(
        err.contains("spec.containers[0].resources.limits.cpu"),
        "{err}"
    );
    assert!(err.contains("\"lots\""), "{err}");

    let mut root = container("app");
    root.security_context = Some(SecurityContext {
        run_as_user: Some(0),
        run_as_non_root: Some(true),
        ..Default::default()
    });
    let p = pod(vec![root.clone()]);
    let err = container_config(&p, &root, 0, vec![], &SpecSettings::default()).expect_err("root");
    assert!(err.contains("breaks non-root policy"), "{err}");
}

#[test]
fn sandbox_config_of_a_pod() {
    let mut c = container("app");
    c.ports = Some(vec![
        ContainerPort {
            container_port: 80,
            host_port: Some(8080),
            ..Default::default()
        },
        ContainerPort {
            container_port: 53,
            host_port: Some(5353),
            protocol: Some("UDP".into()),
            host_ip: Some("127.0.0.1".into()),
            ..Default::default()
        },
        ContainerPort {
            container_port: 9090,
            ..Default::default()
        },
    ]);
    let mut init = container("init");
    init.security_context = Some(SecurityContext {
        privileged: Some(true),
        ..Default::default()
    });
    let mut p = pod(vec![c]);
    {
        let spec = spec_mut(&mut p);
        spec.init_containers = Some(vec![init]);
        spec.security_context = Some(PodSecurityContext {
            sysctls: Some(vec![Sysctl {
                name: "net.ipv4.ip_unprivileged_port_start".into(),
                value: "0".into(),
            }]),
            ..Default::default()
        });
        spec.host_pid = Some(true);
    }
    let settings = SpecSettings {
        cluster_dns: vec!["10.96.0.10".into()],
        cluster_domain: "cluster.local".into(),
        // No node resolv.conf: nothing of the host's in the cluster settings.
        resolv_conf: String::new(),
        ..Default::default()
    };

    let cfg = sandbox_config(&p, 2, &settings).expect("sandbox config");
    assert_eq!(cfg.metadata.name, "web");
    assert_eq!(cfg.metadata.namespace, "prod");
    assert_eq!(cfg.metadata.uid, "uid-1");
    assert_eq!(cfg.metadata.attempt, 2);
    assert_eq!(cfg.hostname, "web");
    assert_eq!(cfg.log_directory, "/var/log/pods/prod_web_uid-1");
    assert_eq!(
        cfg.dns_config,
        Some(DnsConfig {
            servers: vec!["10.96.0.10".into()],
            searches: vec![
                "prod.svc.cluster.local".into(),
                "svc.cluster.local".into(),
                "cluster.local".into()
            ],
            options: vec!["ndots:5".into()],
        })
    );
    assert_eq!(
        cfg.port_mappings,
        vec![
            PortMapping {
                protocol: Protocol::Tcp,
                container_port: 80,
                host_port: 8080,
                host_ip: String::new(),
            },
            PortMapping {
                protocol: Protocol::Udp,
                container_port: 53,
                host_port: 5353,
                host_ip: "127.0.0.1".into(),
            },
        ]
    );
    let mut want_labels = labels::pod_labels("prod", "web", "uid-1");
    want_labels.insert("app".into(), "web".into());
    assert_eq!(cfg.labels, want_labels);
    assert_eq!(
        cfg.annotations,
        BTreeMap::from([("note".into(), "hi".into())])
    );
    assert_eq!(cfg.cgroup_parent, "/kubepods/besteffort/poduid-1");
    assert_eq!(cfg.network, NamespaceMode::Pod);
    assert_eq!(cfg.pid, NamespaceMode::Node);
    assert_eq!(cfg.ipc, NamespaceMode::Pod);
    assert_eq!(
        cfg.sysctls,
        BTreeMap::from([("net.ipv4.ip_unprivileged_port_start".into(), "0".into())])
    );
    assert!(cfg.privileged, "an init container is privileged");
}

/// A node resolv.conf for DNS tests, and settings that read it.
fn node_resolv_conf() -> (tempfile::NamedTempFile, SpecSettings) {
    use std::io::Write;
    let mut file = tempfile::NamedTempFile::new().expect("temp resolv.conf");
    file.write_all(b"nameserver 192.0.2.53\nsearch corp.example\noptions timeout:1\n")
        .expect("write resolv.conf");
    let settings = SpecSettings {
        cluster_dns: vec!["10.96.0.10".into()],
        cluster_domain: "cluster.local".into(),
        resolv_conf: file.path().to_string_lossy().into_owned(),
        ..Default::default()
    };
    (file, settings)
}

fn node_dns() -> DnsConfig {
    DnsConfig {
        servers: vec!["192.0.2.53".into()],
        searches: vec!["corp.example".into()],
        options: vec!["timeout:1".into()],
    }
}

#[test]
fn host_network_sandbox_has_no_hostname_and_host_dns() {
    let mut p = pod(vec![container("app")]);
    spec_mut(&mut p).host_network = Some(true);
    let (_file, settings) = node_resolv_conf();
    let cfg = sandbox_config(&p, 0, &settings).expect("sandbox config");
    assert_eq!(cfg.hostname, "");
    assert_eq!(cfg.network, NamespaceMode::Node);
    assert_eq!(
        cfg.dns_config,
        Some(node_dns()),
        "ClusterFirst falls back to the node's resolv.conf on hostNetwork"
    );
    assert!(!cfg.privileged);

    spec_mut(&mut p).dns_policy = Some("ClusterFirstWithHostNet".into());
    let cfg = sandbox_config(&p, 0, &settings).expect("sandbox config");
    assert_eq!(
        cfg.dns_config.map(|d| d.servers),
        Some(vec!["10.96.0.10".to_string()])
    );
}

#[test]
fn dns_policies() {
    let (_file, cluster) = node_resolv_conf();
    let mut p = pod(vec![container("app")]);

    spec_mut(&mut p).dns_policy = Some("Default".into());
    assert_eq!(
        sandbox_config(&p, 0, &cluster)
            .expect("sandbox config")
            .dns_config,
        Some(node_dns())
    );

    spec_mut(&mut p).dns_policy = Some("ClusterFirst".into());
    let no_cluster_dns = SpecSettings {
        cluster_dns: Vec::new(),
        ..cluster.clone()
    };
    assert_eq!(
        sandbox_config(&p, 0, &no_cluster_dns)
            .expect("sandbox config")
            .dns_config,
        Some(node_dns()),
        "no cluster DNS configured: the node's"
    );

    spec_mut(&mut p).dns_policy = Some("None".into());
    spec_mut(&mut p).dns_config = Some(PodDNSConfig {
        nameservers: Some(vec!["1.1.1.1".into()]),
        searches: Some(vec!["example.com".into()]),
        options: Some(vec![
            PodDNSConfigOption {
                name: Some("ndots".into()),
                value: Some("2".into()),
            },
            PodDNSConfigOption {
                name: Some("edns0".into()),
                value: None,
            },
        ]),
    });
    assert_eq!(
        sandbox_config(&p, 0, &cluster)
            .expect("sandbox config")
            .dns_config,
        Some(DnsConfig {
            servers: vec!["1.1.1.1".into()],
            searches: vec!["example.com".into()],
            options: vec!["ndots:2".into(), "edns0".into()],
        })
    );

    // ClusterFirst merges the pod's dnsConfig; its ndots overrides the default.
    spec_mut(&mut p).dns_policy = None;
    let dns = sandbox_config(&p, 0, &cluster)
        .expect("sandbox config")
        .dns_config
        .expect("cluster dns");
    assert_eq!(dns.servers, vec!["10.96.0.10", "1.1.1.1"]);
    assert_eq!(
        dns.searches,
        vec![
            "prod.svc.cluster.local",
            "svc.cluster.local",
            "cluster.local",
            "corp.example",
            "example.com"
        ]
    );
    assert_eq!(dns.options, vec!["ndots:2", "edns0"]);
}

#[test]
fn cgroup_parent_per_qos_class() {
    let mut guaranteed = container("app");
    guaranteed.resources = resources(&[], &[("cpu", "1"), ("memory", "1Gi")]);
    let mut burstable = container("app");
    burstable.resources = resources(&[("cpu", "100m")], &[]);
    let cases = [
        (guaranteed, "/kubepods/poduid-1"),
        (burstable, "/kubepods/burstable/poduid-1"),
        (container("app"), "/kubepods/besteffort/poduid-1"),
    ];
    for (c, want) in cases {
        let p = pod(vec![c]);
        assert_eq!(
            sandbox_config(&p, 0, &SpecSettings::default())
                .expect("sandbox config")
                .cgroup_parent,
            want
        );
    }
}

#[test]
fn hostname_from_spec_truncated_and_fqdn() {
    let mut p = pod(vec![container("app")]);
    spec_mut(&mut p).hostname = Some("custom".into());
    assert_eq!(
        sandbox_config(&p, 0, &SpecSettings::default())
            .expect("sandbox config")
            .hostname,
        "custom"
    );

    p.metadata.name = Some(format!("{}-{}", "a".repeat(62), "rest"));
    spec_mut(&mut p).hostname = None;
    assert_eq!(
        sandbox_config(&p, 0, &SpecSettings::default())
            .expect("sandbox config")
            .hostname,
        "a".repeat(62),
        "cut at 63 and the trailing '-' trimmed"
    );

    p.metadata.name = Some("web".into());
    spec_mut(&mut p).subdomain = Some("sub".into());
    spec_mut(&mut p).set_hostname_as_fqdn = Some(true);
    let settings = SpecSettings {
        cluster_domain: "cluster.local".into(),
        ..Default::default()
    };
    assert_eq!(
        sandbox_config(&p, 0, &settings)
            .expect("sandbox config")
            .hostname,
        "web.sub.prod.svc.cluster.local"
    );
}
