//! A container's environment as the reference kubelet builds it: `envFrom` (prefixes,
//! invalid keys skipped with a warning), `valueFrom` ConfigMap and Secret keys (optional or
//! not), `$(VAR)` expansion, and the service environment variables; then the reconciler
//! keeping a container waiting in `CreateContainerConfigError` until its ConfigMap appears.

mod support {
    // Shared by the scenario test files; each uses part of it.
    #[allow(dead_code)]
    pub mod scenario;
}

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapEnvSource, ConfigMapKeySelector, Container, EnvFromSource, EnvVar,
    EnvVarSource, Pod, Secret, SecretEnvSource, SecretKeySelector, Service, ServicePort,
    ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kubelet_core::objects::{ObjectError, PodObjects, StaticPodObjects};
use kubelet_core::reconciler::env::{EnvObjects, container_env, is_env_var_name, service_env};
use kubelet_core::reconciler::spec::SpecSettings;
use kubelet_core::testing::pods::{container, pod};

use support::scenario::{IMAGE, Node, runtime};

fn meta(namespace: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(namespace.into()),
        ..Default::default()
    }
}

fn config_map(namespace: &str, name: &str, data: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: meta(namespace, name),
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        ..Default::default()
    }
}

fn secret(namespace: &str, name: &str, data: &[(&str, &str)]) -> Secret {
    Secret {
        metadata: meta(namespace, name),
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Default::default()
    }
}

fn service(namespace: &str, name: &str, ip: &str, ports: &[(Option<&str>, i32, &str)]) -> Service {
    Service {
        metadata: meta(namespace, name),
        spec: Some(ServiceSpec {
            cluster_ip: Some(ip.into()),
            ports: Some(
                ports
                    .iter()
                    .map(|(name, port, proto)| ServicePort {
                        name: name.map(str::to_string),
                        port: *port,
                        protocol: Some(proto.to_string()),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn value(name: &str, v: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(v.into()),
        ..Default::default()
    }
}

fn cm_key(name: &str, cm: &str, key: &str, optional: Option<bool>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            config_map_key_ref: Some(ConfigMapKeySelector {
                name: cm.into(),
                key: key.into(),
                optional,
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn secret_key(name: &str, s: &str, key: &str, optional: Option<bool>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: s.into(),
                key: key.into(),
                optional,
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn app(env: Vec<EnvVar>, env_from: Vec<EnvFromSource>) -> (Pod, Container) {
    let c = container("app", IMAGE)
        .with(|c| {
            c.env = Some(env);
            c.env_from = Some(env_from);
        })
        .build();
    let p = pod("web")
        .namespace("shop")
        .container(container("app", IMAGE).with({
            let c = c.clone();
            move |x| *x = c
        }))
        .build();
    (p, c)
}

fn pairs(env: &[kubelet_core::runtime::KeyValue]) -> Vec<(String, String)> {
    env.iter()
        .map(|kv| (kv.key.clone(), kv.value.clone()))
        .collect()
}

#[test]
fn env_from_prefixes_skips_invalid_keys_and_env_overrides_it() {
    let cm = config_map(
        "shop",
        "settings",
        &[
            ("MODE", "fast"),
            ("1BAD", "x"),
            ("has space", "y"),
            ("ok.dotted-name", "z"),
        ],
    );
    let creds = secret("shop", "creds", &[("TOKEN", "s3cr3t"), ("..", "dots")]);
    let (p, c) = app(
        vec![
            value("MODE", "slow"),
            value("URL", "http://$(CFG_MODE)/$(TOKEN)"),
        ],
        vec![
            EnvFromSource {
                config_map_ref: Some(ConfigMapEnvSource {
                    name: "settings".into(),
                    optional: None,
                }),
                ..Default::default()
            },
            EnvFromSource {
                config_map_ref: Some(ConfigMapEnvSource {
                    name: "settings".into(),
                    optional: None,
                }),
                prefix: Some("CFG_".into()),
                ..Default::default()
            },
            EnvFromSource {
                secret_ref: Some(SecretEnvSource {
                    name: "creds".into(),
                    optional: None,
                }),
                ..Default::default()
            },
        ],
    );
    let objects = EnvObjects::given(vec![cm], vec![creds], vec![]);
    let env = container_env(&p, &c, &objects, &SpecSettings::default()).expect("env");
    assert_eq!(
        pairs(&env.vars),
        vec![
            // Replaced in place by the later `env` entry.
            ("MODE".to_string(), "slow".to_string()),
            ("ok.dotted-name".to_string(), "z".to_string()),
            // With the prefix, "1BAD" becomes a valid name.
            ("CFG_1BAD".to_string(), "x".to_string()),
            ("CFG_MODE".to_string(), "fast".to_string()),
            ("CFG_ok.dotted-name".to_string(), "z".to_string()),
            ("TOKEN".to_string(), "s3cr3t".to_string()),
            ("URL".to_string(), "http://fast/s3cr3t".to_string()),
        ]
    );
    assert_eq!(
        env.warnings,
        vec![
            "Keys [1BAD, has space] from the EnvFrom configMap shop/settings were skipped since they are considered invalid environment variable names.".to_string(),
            "Keys [CFG_has space] from the EnvFrom configMap shop/settings were skipped since they are considered invalid environment variable names.".to_string(),
            "Keys [..] from the EnvFrom secret shop/creds were skipped since they are considered invalid environment variable names.".to_string(),
        ]
    );
}

#[test]
fn key_references_as_the_reference_resolves_them() {
    let cm = config_map("shop", "settings", &[("mode", "fast")]);
    let creds = secret("shop", "creds", &[("password", "hunter2")]);
    let objects = EnvObjects::given(vec![cm], vec![creds], vec![]);
    let settings = SpecSettings::default();
    let run = |env: Vec<EnvVar>| {
        let (p, c) = app(env, vec![]);
        container_env(&p, &c, &objects, &settings).map(|e| pairs(&e.vars))
    };

    assert_eq!(
        run(vec![
            cm_key("MODE", "settings", "mode", None),
            secret_key("PASSWORD", "creds", "password", Some(false)),
        ]),
        Ok(vec![
            ("MODE".to_string(), "fast".to_string()),
            ("PASSWORD".to_string(), "hunter2".to_string()),
        ])
    );
    // Optional: a missing key or object is skipped.
    assert_eq!(
        run(vec![
            cm_key("A", "settings", "nope", Some(true)),
            cm_key("B", "absent", "k", Some(true)),
            secret_key("C", "creds", "nope", Some(true)),
            secret_key("D", "absent", "k", Some(true)),
        ]),
        Ok(vec![])
    );
    // Not optional: the reference's messages.
    assert_eq!(
        run(vec![cm_key("A", "settings", "nope", None)]),
        Err("couldn't find key nope in ConfigMap shop/settings".to_string())
    );
    assert_eq!(
        run(vec![secret_key("A", "creds", "nope", None)]),
        Err("couldn't find key nope in Secret shop/creds".to_string())
    );
    assert_eq!(
        run(vec![cm_key("A", "absent", "k", None)]),
        Err("configmap \"absent\" not found".to_string())
    );
    assert_eq!(
        run(vec![secret_key("A", "absent", "k", Some(false))]),
        Err("secret \"absent\" not found".to_string())
    );
}

/// Serves what it has, and fails every other lookup with an error that is not NotFound.
struct Flaky(StaticPodObjects);

#[async_trait::async_trait]
impl PodObjects for Flaky {
    async fn config_map(&self, namespace: &str, name: &str) -> Result<ConfigMap, ObjectError> {
        self.0.config_map(namespace, name).await.map_err(|_| {
            ObjectError::Unavailable(format!(
                "ConfigMap {namespace}/{name}: API server unavailable"
            ))
        })
    }
    async fn secret(&self, namespace: &str, name: &str) -> Result<Secret, ObjectError> {
        self.0.secret(namespace, name).await
    }
    async fn services(&self, _namespace: &str) -> Result<Vec<Service>, ObjectError> {
        Err(ObjectError::Unavailable(
            "services have not yet been read at least once, cannot construct envvars".into(),
        ))
    }
}

#[tokio::test]
async fn an_unreachable_object_is_an_error_even_when_optional() {
    let (p, c) = app(vec![cm_key("A", "settings", "k", Some(true))], vec![]);
    let objects = StaticPodObjects::default();
    let fetched = EnvObjects::fetch(&p, &c, Some(&objects)).await;
    assert!(
        container_env(&p, &c, &fetched, &SpecSettings::default())
            .expect("optional and missing: skipped")
            .vars
            .is_empty()
    );

    // The services are not listed yet: no environment at all, as the reference...
    let flaky = Flaky(StaticPodObjects::default());
    let fetched = EnvObjects::fetch(&p, &c, Some(&flaky)).await;
    assert_eq!(
        container_env(&p, &c, &fetched, &SpecSettings::default()),
        Err("services have not yet been read at least once, cannot construct envvars".into())
    );
    // ...except for a static pod, which does not wait for the API server,
    let mut static_pod = p.clone();
    static_pod.metadata.annotations = Some(
        [(
            kubelet_core::labels::CONFIG_SOURCE.to_string(),
            "file".to_string(),
        )]
        .into(),
    );
    let plain = container("app", IMAGE).build();
    let fetched_plain = EnvObjects::fetch(&static_pod, &plain, Some(&flaky)).await;
    assert_eq!(
        container_env(
            &static_pod,
            &plain,
            &fetched_plain,
            &SpecSettings::default()
        ),
        Ok(Default::default())
    );
    // but a ConfigMap that cannot be fetched is an error even when optional (only a
    // missing one is skipped).
    let fetched = EnvObjects::fetch(&static_pod, &c, Some(&flaky)).await;
    assert_eq!(
        container_env(&static_pod, &c, &fetched, &SpecSettings::default()),
        Err("ConfigMap shop/settings: API server unavailable".into())
    );
}

#[test]
fn service_links_as_docker_links_and_the_kubernetes_service_always() {
    let services = vec![
        service(
            "default",
            "kubernetes",
            "10.0.0.1",
            &[(Some("https"), 443, "TCP")],
        ),
        service(
            "shop",
            "redis-primary",
            "10.0.0.11",
            &[(Some("redis"), 6379, "TCP"), (Some("metrics"), 9121, "UDP")],
        ),
        service("shop", "headless", "None", &[(None, 80, "TCP")]),
        service("other", "elsewhere", "10.0.0.12", &[(None, 80, "TCP")]),
        // A `kubernetes` service of the pod's own namespace wins over the master one.
        service("default", "db", "10.0.0.13", &[(None, 5432, "TCP")]),
    ];
    let want_kubernetes: BTreeMap<String, String> = [
        ("KUBERNETES_PORT", "tcp://10.0.0.1:443"),
        ("KUBERNETES_PORT_443_TCP", "tcp://10.0.0.1:443"),
        ("KUBERNETES_PORT_443_TCP_ADDR", "10.0.0.1"),
        ("KUBERNETES_PORT_443_TCP_PORT", "443"),
        ("KUBERNETES_PORT_443_TCP_PROTO", "tcp"),
        ("KUBERNETES_SERVICE_HOST", "10.0.0.1"),
        ("KUBERNETES_SERVICE_PORT", "443"),
        ("KUBERNETES_SERVICE_PORT_HTTPS", "443"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();

    // Without service links: the API server's service only (services of `default` are not
    // the pod's unless it runs there).
    assert_eq!(service_env(&services, "shop", false), want_kubernetes);

    let mut want = want_kubernetes.clone();
    for (k, v) in [
        ("REDIS_PRIMARY_SERVICE_HOST", "10.0.0.11"),
        ("REDIS_PRIMARY_SERVICE_PORT", "6379"),
        ("REDIS_PRIMARY_SERVICE_PORT_REDIS", "6379"),
        ("REDIS_PRIMARY_SERVICE_PORT_METRICS", "9121"),
        ("REDIS_PRIMARY_PORT", "tcp://10.0.0.11:6379"),
        ("REDIS_PRIMARY_PORT_6379_TCP", "tcp://10.0.0.11:6379"),
        ("REDIS_PRIMARY_PORT_6379_TCP_PROTO", "tcp"),
        ("REDIS_PRIMARY_PORT_6379_TCP_PORT", "6379"),
        ("REDIS_PRIMARY_PORT_6379_TCP_ADDR", "10.0.0.11"),
        ("REDIS_PRIMARY_PORT_9121_UDP", "udp://10.0.0.11:9121"),
        ("REDIS_PRIMARY_PORT_9121_UDP_PROTO", "udp"),
        ("REDIS_PRIMARY_PORT_9121_UDP_PORT", "9121"),
        ("REDIS_PRIMARY_PORT_9121_UDP_ADDR", "10.0.0.11"),
    ] {
        want.insert(k.to_string(), v.to_string());
    }
    assert_eq!(service_env(&services, "shop", true), want);

    // In `default` itself with links on, its services come too.
    let in_default = service_env(&services, "default", true);
    assert_eq!(in_default["DB_SERVICE_HOST"], "10.0.0.13");
    assert_eq!(in_default["KUBERNETES_SERVICE_HOST"], "10.0.0.1");

    // A service of the pod's namespace named `kubernetes` does not displace the master one
    // for pods elsewhere, and IPv6 addresses are bracketed in the URLs.
    let v6 = vec![service("shop", "api", "fd00::5", &[(None, 8080, "TCP")])];
    let env = service_env(&v6, "shop", true);
    assert_eq!(env["API_PORT"], "tcp://[fd00::5]:8080");
    assert_eq!(env["API_PORT_8080_TCP_ADDR"], "fd00::5");
}

#[test]
fn service_variables_come_last_feed_expansion_and_yield_to_the_container() {
    let services = vec![service(
        "default",
        "kubernetes",
        "10.0.0.1",
        &[(Some("https"), 443, "TCP")],
    )];
    let (p, c) = app(
        vec![
            value(
                "API",
                "https://$(KUBERNETES_SERVICE_HOST):$(KUBERNETES_SERVICE_PORT)",
            ),
            value("KUBERNETES_SERVICE_PORT", "6443"),
        ],
        vec![],
    );
    let objects = EnvObjects::given(vec![], vec![], services);
    let env = container_env(&p, &c, &objects, &SpecSettings::default()).expect("env");
    let vars = pairs(&env.vars);
    assert_eq!(vars[0], ("API".into(), "https://10.0.0.1:443".into()));
    assert_eq!(vars[1], ("KUBERNETES_SERVICE_PORT".into(), "6443".into()));
    // The container's own definition is not repeated by the service variables.
    assert_eq!(
        vars.iter()
            .filter(|(k, _)| k == "KUBERNETES_SERVICE_PORT")
            .count(),
        1
    );
    assert!(vars[2..].iter().all(|(k, _)| k.starts_with("KUBERNETES_")));
    assert_eq!(vars.len(), 2 + 7);
}

#[test]
fn env_var_names_as_the_api_validates_them() {
    for ok in [
        "A",
        "a_b",
        "_x",
        "-dash",
        ".dot",
        "my.env-name",
        "MY_ENV.NAME",
        "MyEnvName1",
        ".a.",
    ] {
        assert!(is_env_var_name(ok), "{ok:?} should be valid");
    }
    for bad in ["", "1A", "a b", "a=b", ".", "..", "..a", "é", "a/b"] {
        assert!(!is_env_var_name(bad), "{bad:?} should be invalid");
    }
}

fn waiting(n: &Node, uid: &str) -> Option<(String, String)> {
    let w = n
        .reporter
        .last_pod_status(uid)?
        .container_statuses?
        .into_iter()
        .find(|c| c.name == "app")?
        .state?
        .waiting?;
    Some((w.reason.unwrap_or_default(), w.message.unwrap_or_default()))
}

#[tokio::test(start_paused = true)]
async fn a_container_waits_for_its_config_map_and_starts_once_it_exists() {
    let objects = StaticPodObjects::default();
    let node = Node::start_with(runtime(), {
        let objects = objects.clone();
        move |b| b.pod_objects(Arc::new(objects))
    });
    let p = pod("web")
        .namespace("shop")
        .container(container("app", IMAGE).with(|c| {
            c.env = Some(vec![cm_key("MODE", "settings", "mode", None)]);
            c.env_from = Some(vec![EnvFromSource {
                config_map_ref: Some(ConfigMapEnvSource {
                    name: "settings".into(),
                    optional: None,
                }),
                prefix: Some("CFG_".into()),
                ..Default::default()
            }]);
        }))
        .build();
    let uid = p.metadata.uid.clone().unwrap_or_default();
    node.pods.snapshot(vec![p.clone()]);
    node.until(Duration::from_secs(30), "CreateContainerConfigError", |n| {
        waiting(n, &uid)
            == Some((
                "CreateContainerConfigError".into(),
                "configmap \"settings\" not found".into(),
            ))
    })
    .await;
    let failed = node.reporter.events_with_reason("Failed");
    assert!(
        failed
            .iter()
            .any(|e| e.message == "Error: configmap \"settings\" not found"),
        "{failed:?}"
    );
    assert!(node.runtime.containers().is_empty());

    objects.put_config_map(config_map(
        "shop",
        "settings",
        &[("mode", "fast"), ("bad key", "x")],
    ));
    node.until(Duration::from_secs(120), "Running", |n| {
        n.reporter.last_phase(&uid).as_deref() == Some("Running")
    })
    .await;
    let started = node.runtime.containers();
    assert_eq!(started.len(), 1);
    let config = node
        .runtime
        .container_config(&started[0].id)
        .expect("config");
    let env: BTreeMap<String, String> = config
        .envs
        .iter()
        .map(|kv| (kv.key.clone(), kv.value.clone()))
        .collect();
    assert_eq!(env.get("MODE").map(String::as_str), Some("fast"));
    assert_eq!(env.get("CFG_mode").map(String::as_str), Some("fast"));
    let invalid = node
        .reporter
        .events_with_reason("InvalidEnvironmentVariableNames");
    assert_eq!(invalid.len(), 1, "{invalid:?}");
    assert_eq!(
        invalid[0].message,
        "Keys [CFG_bad key] from the EnvFrom configMap shop/settings were skipped since they are considered invalid environment variable names."
    );
    // On the pod, not on a container.
    assert_eq!(invalid[0].involved.field_path, None);
    node.shutdown().await;
}
