#![cfg(feature = "apiserver")]
//! configMap, secret, downwardAPI and projected volumes against the fake kube-apiserver,
//! reached through a kubeconfig as the node: files, modes, optional objects and keys, the
//! `kube-api-access-<x>` volume as ServiceAccount admission injects it, and updates.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapProjection, ConfigMapVolumeSource, Container, DownwardAPIProjection,
    DownwardAPIVolumeFile, DownwardAPIVolumeSource, KeyToPath, ObjectFieldSelector, Pod, PodSpec,
    ProjectedVolumeSource, Secret, SecretVolumeSource, ServiceAccountTokenProjection, Volume,
    VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kubelet_core::apiserver::{
    ApiObjectVolumePlugin, BoundPod, ClientSource, NodeClient, PodObjectFetcher,
};
use kubelet_core::testing::FakeApiServer;
use kubelet_core::{VolumeContext, VolumeError, VolumePlugin};
use serde_json::Value;

const NODE: &str = "node-1";

struct Setup {
    server: FakeApiServer,
    fetcher: Arc<PodObjectFetcher>,
    plugin: ApiObjectVolumePlugin,
    dir: tempfile::TempDir,
}

impl Setup {
    fn pod_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("pods/uid")
    }
}

async fn setup() -> Setup {
    let server = FakeApiServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    server.write_kubeconfig(&kubeconfig).unwrap();
    let client = NodeClient::connect(&ClientSource::Kubeconfig(kubeconfig), NODE)
        .await
        .unwrap();
    // No TTL: each setup sees the server's current objects.
    let fetcher = Arc::new(PodObjectFetcher::new(client).with_ttl(Duration::ZERO));
    // Memory-backed volumes are recorded, not mounted: these tests look at the files.
    let plugin = ApiObjectVolumePlugin::new(fetcher.clone())
        .with_mounter(Arc::new(kubelet_core::volume::FakeMounter::new()));
    Setup {
        server,
        fetcher,
        plugin,
        dir,
    }
}

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some("default".into()),
        ..Default::default()
    }
}

fn configmap(name: &str, data: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: meta(name),
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        ..Default::default()
    }
}

/// A pod created in the server (so that tokens can be bound to it), with `volumes`.
fn create_pod(server: &FakeApiServer, volumes: Vec<Volume>) -> Pod {
    let pod = Pod {
        metadata: meta("web"),
        spec: Some(PodSpec {
            node_name: Some(NODE.into()),
            containers: vec![Container {
                name: "c".into(),
                image: Some("busybox".into()),
                ..Default::default()
            }],
            volumes: Some(volumes),
            ..Default::default()
        }),
        status: None,
    };
    server.create(&pod).unwrap()
}

fn volume(pod: &Pod, name: &str) -> Volume {
    pod.spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .and_then(|vs| vs.iter().find(|v| v.name == name))
        .cloned()
        .unwrap()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn key(key: &str, path: &str, mode: Option<i32>) -> KeyToPath {
    KeyToPath {
        key: key.into(),
        path: path.into(),
        mode,
        ..Default::default()
    }
}

fn visible_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with(".."))
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn a_configmap_with_items_and_modes_and_its_update() {
    let s = setup().await;
    s.server
        .create(&configmap(
            "app",
            &[
                ("app.conf", "port=80"),
                ("log.conf", "level=info"),
                ("unused", "x"),
            ],
        ))
        .unwrap();
    let pod = create_pod(
        &s.server,
        vec![Volume {
            name: "config".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: "app".into(),
                items: Some(vec![
                    key("app.conf", "app.conf", None),
                    key("log.conf", "sub/dir/log.conf", Some(0o400)),
                ]),
                default_mode: Some(0o640),
                ..Default::default()
            }),
            ..Default::default()
        }],
    );
    let pod_dir = s.pod_dir();
    let ctx = VolumeContext::new(&pod, &pod_dir);
    let v = volume(&pod, "config");
    let m = s.plugin.setup(&ctx, &v).await.unwrap();
    assert_eq!(
        m.host_path,
        pod_dir.join("volumes/kubernetes.io~configmap/config")
    );
    assert!(m.read_only);
    assert_eq!(read(&m.host_path.join("app.conf")), "port=80");
    assert_eq!(read(&m.host_path.join("sub/dir/log.conf")), "level=info");
    assert_eq!(mode_of(&m.host_path.join("app.conf")), 0o640);
    assert_eq!(mode_of(&m.host_path.join("sub/dir/log.conf")), 0o400);
    assert_eq!(visible_names(&m.host_path), ["app.conf", "sub"]);
    assert_eq!(
        std::fs::read_link(m.host_path.join("app.conf")).unwrap(),
        Path::new("..data/app.conf")
    );
    let data1 = std::fs::read_link(m.host_path.join("..data")).unwrap();

    // Setup again without a change: nothing swapped.
    s.plugin.setup(&ctx, &v).await.unwrap();
    assert_eq!(
        std::fs::read_link(m.host_path.join("..data")).unwrap(),
        data1
    );

    // An update shows after the next setup, through a new ..data target.
    s.server
        .modify::<ConfigMap>("default", "app", false, |cm| {
            if let Some(d) = cm.data.as_mut() {
                d.insert("app.conf".into(), "port=8080".into());
            }
        })
        .unwrap();
    s.plugin.setup(&ctx, &v).await.unwrap();
    let data2 = std::fs::read_link(m.host_path.join("..data")).unwrap();
    assert_ne!(data1, data2);
    assert!(!m.host_path.join(&data1).exists(), "the old dir is removed");
    assert!(data2.to_string_lossy().starts_with(".."));
    assert_eq!(read(&m.host_path.join("app.conf")), "port=8080");
    assert_eq!(read(&m.host_path.join("sub/dir/log.conf")), "level=info");

    s.plugin.teardown("uid", &pod_dir, "config").await.unwrap();
    assert!(!m.host_path.exists());
    s.plugin.teardown("uid", &pod_dir, "config").await.unwrap();
}

#[tokio::test]
async fn a_secret_is_written_decoded() {
    let s = setup().await;
    s.server
        .create(&Secret {
            metadata: meta("db"),
            data: Some(BTreeMap::from([
                ("password".to_string(), ByteString(b"s3cr\x00t".to_vec())),
                ("user".to_string(), ByteString(b"admin".to_vec())),
            ])),
            ..Default::default()
        })
        .unwrap();
    let pod = create_pod(
        &s.server,
        vec![Volume {
            name: "creds".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some("db".into()),
                ..Default::default()
            }),
            ..Default::default()
        }],
    );
    let pod_dir = s.pod_dir();
    let ctx = VolumeContext::new(&pod, &pod_dir);
    let m = s.plugin.setup(&ctx, &volume(&pod, "creds")).await.unwrap();
    assert_eq!(
        m.host_path,
        pod_dir.join("volumes/kubernetes.io~secret/creds")
    );
    assert_eq!(
        std::fs::read(m.host_path.join("password")).unwrap(),
        b"s3cr\x00t"
    );
    assert_eq!(read(&m.host_path.join("user")), "admin");
    assert_eq!(mode_of(&m.host_path.join("user")), 0o644);
    assert_eq!(visible_names(&m.host_path), ["password", "user"]);
}

#[tokio::test]
async fn optional_missing_objects_and_keys_are_skipped_required_ones_fail() {
    let s = setup().await;
    s.server
        .create(&configmap("present", &[("a", "1")]))
        .unwrap();
    let cm_volume =
        |name: &str, cm: &str, optional: Option<bool>, items: Option<Vec<KeyToPath>>| Volume {
            name: name.into(),
            config_map: Some(ConfigMapVolumeSource {
                name: cm.into(),
                optional,
                items,
                ..Default::default()
            }),
            ..Default::default()
        };
    let pod = create_pod(
        &s.server,
        vec![
            cm_volume("opt-missing", "absent", Some(true), None),
            cm_volume("req-missing", "absent", None, None),
            cm_volume(
                "opt-key",
                "present",
                Some(true),
                Some(vec![key("a", "a", None), key("nokey", "b", None)]),
            ),
            cm_volume(
                "req-key",
                "present",
                Some(false),
                Some(vec![key("nokey", "b", None)]),
            ),
            Volume {
                name: "opt-secret".into(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some("absent".into()),
                    optional: Some(true),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ],
    );
    let pod_dir = s.pod_dir();
    let ctx = VolumeContext::new(&pod, &pod_dir);
    let m = s
        .plugin
        .setup(&ctx, &volume(&pod, "opt-missing"))
        .await
        .unwrap();
    assert!(m.host_path.join("..data").is_dir());
    assert!(visible_names(&m.host_path).is_empty());

    let m = s
        .plugin
        .setup(&ctx, &volume(&pod, "opt-secret"))
        .await
        .unwrap();
    assert!(visible_names(&m.host_path).is_empty());

    let err = s
        .plugin
        .setup(&ctx, &volume(&pod, "req-missing"))
        .await
        .unwrap_err();
    assert!(matches!(err, VolumeError::NotReady { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("req-missing") && text.contains("ConfigMap default/absent"),
        "{text}"
    );

    let m = s
        .plugin
        .setup(&ctx, &volume(&pod, "opt-key"))
        .await
        .unwrap();
    assert_eq!(visible_names(&m.host_path), ["a"]);

    let err = s
        .plugin
        .setup(&ctx, &volume(&pod, "req-key"))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("req-key") && text.contains("default/present") && text.contains("nokey"),
        "{text}"
    );
    assert!(
        !pod_dir
            .join("volumes/kubernetes.io~configmap/req-key")
            .exists()
    );
}

/// The volume ServiceAccount admission adds to every pod.
fn kube_api_access() -> Volume {
    let field = |path: &str| ObjectFieldSelector {
        api_version: Some("v1".into()),
        field_path: path.into(),
    };
    Volume {
        name: "kube-api-access-x7k2p".into(),
        projected: Some(ProjectedVolumeSource {
            default_mode: Some(0o644),
            sources: Some(vec![
                VolumeProjection {
                    service_account_token: Some(ServiceAccountTokenProjection {
                        expiration_seconds: Some(3607),
                        path: "token".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                VolumeProjection {
                    config_map: Some(ConfigMapProjection {
                        name: "kube-root-ca.crt".into(),
                        items: Some(vec![key("ca.crt", "ca.crt", None)]),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                VolumeProjection {
                    downward_api: Some(DownwardAPIProjection {
                        items: Some(vec![DownwardAPIVolumeFile {
                            path: "namespace".into(),
                            field_ref: Some(field("metadata.namespace")),
                            ..Default::default()
                        }]),
                    }),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn the_kube_api_access_volume_as_admission_injects_it() {
    let s = setup().await;
    let ca = "-----BEGIN CERTIFICATE-----\nMIIB...\n-----END CERTIFICATE-----\n";
    s.server
        .create(&configmap("kube-root-ca.crt", &[("ca.crt", ca)]))
        .unwrap();
    let pod = create_pod(&s.server, vec![kube_api_access()]);
    let uid = pod.metadata.uid.clone().unwrap();
    let pod_dir = s.pod_dir();
    let ctx = VolumeContext::new(&pod, &pod_dir);
    let v = volume(&pod, "kube-api-access-x7k2p");
    let m = s.plugin.setup(&ctx, &v).await.unwrap();
    assert_eq!(
        m.host_path,
        pod_dir.join("volumes/kubernetes.io~projected/kube-api-access-x7k2p")
    );
    assert!(m.read_only);
    assert_eq!(
        visible_names(&m.host_path),
        ["ca.crt", "namespace", "token"]
    );
    assert_eq!(read(&m.host_path.join("ca.crt")), ca);
    assert_eq!(read(&m.host_path.join("namespace")), "default");
    for f in ["ca.crt", "namespace", "token"] {
        assert_eq!(mode_of(&m.host_path.join(f)), 0o644, "{f}");
    }

    // The token is the TokenRequest's answer (the fetcher's cache hands back the same one).
    let token = read(&m.host_path.join("token"));
    let answered = s
        .fetcher
        .request_token(
            "default",
            "default",
            &[],
            Duration::from_secs(3607),
            Some(BoundPod {
                name: "web".into(),
                uid: uid.clone(),
            }),
        )
        .await
        .unwrap();
    assert_eq!(token, answered.token);
    // ...for the pod's service account, bound to the pod, for 3607 s.
    let claims = token.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap();
    assert_eq!(claims["sub"], "system:serviceaccount:default:default");
    assert_eq!(claims["kubernetes.io"]["pod"]["name"], "web");
    assert_eq!(claims["kubernetes.io"]["pod"]["uid"], uid.as_str());
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        3607
    );
    let token_requests = s
        .server
        .requests()
        .iter()
        .filter(|r| r.resource.as_deref() == Some("serviceaccounts/token"))
        .count();
    assert_eq!(token_requests, 1);

    // Setup on the next sync keeps the still-fresh token and swaps nothing.
    let data1 = std::fs::read_link(m.host_path.join("..data")).unwrap();
    s.plugin.setup(&ctx, &v).await.unwrap();
    assert_eq!(
        std::fs::read_link(m.host_path.join("..data")).unwrap(),
        data1
    );
    assert_eq!(read(&m.host_path.join("token")), token);

    s.plugin
        .teardown(&uid, &pod_dir, "kube-api-access-x7k2p")
        .await
        .unwrap();
    assert!(!m.host_path.exists());
}

#[tokio::test]
async fn a_downward_api_volume_with_labels_and_annotations() {
    let s = setup().await;
    let mut pod = Pod {
        metadata: ObjectMeta {
            labels: Some(BTreeMap::from([
                ("app".to_string(), "web".to_string()),
                ("tier".to_string(), "front".to_string()),
            ])),
            annotations: Some(BTreeMap::from([(
                "note".to_string(),
                "a \"quoted\" value".to_string(),
            )])),
            ..meta("web")
        },
        ..Default::default()
    };
    let field = |path: &str, field: &str| DownwardAPIVolumeFile {
        path: path.into(),
        field_ref: Some(ObjectFieldSelector {
            api_version: None,
            field_path: field.into(),
        }),
        ..Default::default()
    };
    pod.spec = Some(PodSpec {
        node_name: Some(NODE.into()),
        containers: vec![Container {
            name: "c".into(),
            image: Some("busybox".into()),
            ..Default::default()
        }],
        volumes: Some(vec![Volume {
            name: "info".into(),
            downward_api: Some(DownwardAPIVolumeSource {
                items: Some(vec![
                    field("labels", "metadata.labels"),
                    field("annotations", "metadata.annotations"),
                    field("name", "metadata.name"),
                    field("uid", "metadata.uid"),
                    field("tier", "metadata.labels['tier']"),
                ]),
                default_mode: Some(0o444),
                ..Default::default()
            }),
            ..Default::default()
        }]),
        ..Default::default()
    });
    let pod = s.server.create(&pod).unwrap();
    let pod_dir = s.pod_dir();
    let ctx = VolumeContext::new(&pod, &pod_dir);
    let m = s.plugin.setup(&ctx, &volume(&pod, "info")).await.unwrap();
    assert_eq!(
        m.host_path,
        pod_dir.join("volumes/kubernetes.io~downward-api/info")
    );
    assert_eq!(
        read(&m.host_path.join("labels")),
        "app=\"web\"\ntier=\"front\""
    );
    assert_eq!(
        read(&m.host_path.join("annotations")),
        r#"note="a \"quoted\" value""#
    );
    assert_eq!(read(&m.host_path.join("name")), "web");
    assert_eq!(
        read(&m.host_path.join("uid")),
        pod.metadata.uid.clone().unwrap()
    );
    assert_eq!(read(&m.host_path.join("tier")), "front");
    assert_eq!(mode_of(&m.host_path.join("name")), 0o444);
}
