//! The plugin over kube-rs's tower-test mock, answering from an in-memory set of objects,
//! so that token refresh can be tested with paused time.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::sync::Mutex;

use http::{Method, Request, Response, StatusCode};
use k8s_openapi::api::core::v1::{
    ConfigMapProjection, ConfigMapVolumeSource, DownwardAPIProjection, DownwardAPIVolumeSource,
    ObjectFieldSelector, PodSpec, ProjectedVolumeSource, ResourceFieldSelector, SecretVolumeSource,
    ServiceAccountTokenProjection,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock;

use super::*;
use crate::apiserver::NodeClient;

type Handle = mock::Handle<Request<Body>, Response<Body>>;

/// A tiny API server: objects by request path, and a token counter.
#[derive(Default)]
struct Objects {
    by_path: Mutex<HashMap<String, Value>>,
    token_requests: Mutex<Vec<Value>>,
}

impl Objects {
    fn put(&self, path: &str, obj: Value) {
        self.by_path.lock().unwrap().insert(path.to_string(), obj);
    }
}

fn reply(code: u16, body: &Value) -> Response<Body> {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap())
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(body).unwrap()))
        .unwrap()
}

async fn serve(mut handle: Handle, objects: Arc<Objects>) {
    while let Some((request, respond)) = handle.next_request().await {
        let (parts, body) = request.into_parts();
        let path = parts.uri.path().to_string();
        let bytes = body.collect_bytes().await.unwrap();
        if parts.method == Method::POST && path.ends_with("/token") {
            let body: Value = serde_json::from_slice(&bytes).unwrap();
            let n = {
                let mut reqs = objects.token_requests.lock().unwrap();
                reqs.push(body.clone());
                reqs.len()
            };
            let secs = body["spec"]["expirationSeconds"].as_i64().unwrap();
            let exp = k8s_openapi::jiff::Timestamp::now()
                + k8s_openapi::jiff::SignedDuration::from_secs(secs);
            respond.send_response(reply(
                201,
                &json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                    "spec": body["spec"],
                    "status": {"token": format!("token-{n}"), "expirationTimestamp": exp.to_string()}}),
            ));
            continue;
        }
        let found = objects.by_path.lock().unwrap().get(&path).cloned();
        match found {
            Some(obj) => respond.send_response(reply(200, &obj)),
            None => respond.send_response(reply(
                404,
                &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                    "code": 404, "reason": "NotFound", "message": format!("{path} not found")}),
            )),
        }
    }
}

fn plugin() -> (ApiObjectVolumePlugin, Arc<Objects>) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "default");
    let client = NodeClient::from_client(client, "node-1", "https://mock");
    let objects = Arc::new(Objects::default());
    tokio::spawn(serve(handle, objects.clone()));
    let fetcher = PodObjectFetcher::new(client).with_ttl(Duration::from_secs(10));
    (
        ApiObjectVolumePlugin::new(Arc::new(fetcher))
            .with_mounter(Arc::new(crate::volume_plugins::FakeMounter::new())),
        objects,
    )
}

fn pod() -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("ns".into()),
            uid: Some("uid-1".into()),
            labels: Some(BTreeMap::from([("app".to_string(), "web".to_string())])),
            ..Default::default()
        },
        spec: Some(PodSpec {
            service_account_name: Some("builder".into()),
            ..Default::default()
        }),
        status: None,
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn token_volume(expiration: i64) -> Volume {
    Volume {
        name: "token".into(),
        projected: Some(ProjectedVolumeSource {
            sources: Some(vec![
                VolumeProjection {
                    service_account_token: Some(ServiceAccountTokenProjection {
                        audience: Some("vault".into()),
                        expiration_seconds: Some(expiration),
                        path: "token".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                VolumeProjection {
                    downward_api: Some(DownwardAPIProjection {
                        items: Some(vec![DownwardAPIVolumeFile {
                            path: "labels".into(),
                            field_ref: Some(ObjectFieldSelector {
                                api_version: Some("v1".into()),
                                field_path: "metadata.labels".into(),
                            }),
                            ..Default::default()
                        }]),
                    }),
                    ..Default::default()
                },
            ]),
            default_mode: Some(0o600),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[tokio::test(start_paused = true)]
async fn the_token_is_renewed_once_80_percent_of_its_life_has_passed() {
    let (plugin, objects) = plugin();
    let root = tempfile::tempdir().unwrap();
    let pod = pod();
    let ctx = VolumeContext::new(&pod, root.path());
    let volume = token_volume(3600);
    let m = plugin.setup(&ctx, &volume).await.unwrap();
    assert!(m.read_only);
    assert!(
        m.host_path
            .ends_with("volumes/kubernetes.io~projected/token")
    );
    assert_eq!(read(&m.host_path.join("token")), "token-1");
    assert_eq!(mode_of(&m.host_path.join("token")), 0o600);
    assert_eq!(read(&m.host_path.join("labels")), "app=\"web\"");
    {
        let reqs = objects.token_requests.lock().unwrap();
        let spec = &reqs[0]["spec"];
        assert_eq!(spec["audiences"], json!(["vault"]));
        assert_eq!(spec["expirationSeconds"], 3600);
        assert_eq!(
            spec["boundObjectRef"],
            json!({"apiVersion": "v1", "kind": "Pod", "name": "web", "uid": "uid-1"})
        );
    }
    let data1 = std::fs::read_link(m.host_path.join("..data")).unwrap();

    // Before 80 % of the hour: the same token, nothing rewritten.
    tokio::time::advance(Duration::from_secs(2800)).await;
    plugin.setup(&ctx, &volume).await.unwrap();
    assert_eq!(read(&m.host_path.join("token")), "token-1");
    assert_eq!(
        std::fs::read_link(m.host_path.join("..data")).unwrap(),
        data1
    );
    // After: a new token, swapped in through ..data.
    tokio::time::advance(Duration::from_secs(100)).await;
    plugin.setup(&ctx, &volume).await.unwrap();
    assert_eq!(read(&m.host_path.join("token")), "token-2");
    assert_ne!(
        std::fs::read_link(m.host_path.join("..data")).unwrap(),
        data1
    );
    assert_eq!(objects.token_requests.lock().unwrap().len(), 2);

    plugin
        .teardown("uid-1", root.path(), "token")
        .await
        .unwrap();
    assert!(!m.host_path.exists());
    // The pod's token was forgotten: a new setup asks again.
    plugin.setup(&ctx, &volume).await.unwrap();
    assert_eq!(objects.token_requests.lock().unwrap().len(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_short_expiration_is_raised_to_the_minimum_and_unset_means_an_hour() {
    let (plugin, objects) = plugin();
    let root = tempfile::tempdir().unwrap();
    let pod = pod();
    let ctx = VolumeContext::new(&pod, root.path());
    plugin.setup(&ctx, &token_volume(60)).await.unwrap();
    let mut unset = token_volume(0);
    unset.name = "other".into();
    if let Some(p) = unset.projected.as_mut()
        && let Some(s) = p.sources.as_mut()
    {
        s[0].service_account_token = Some(ServiceAccountTokenProjection {
            audience: None,
            expiration_seconds: None,
            path: "t".into(),
            ..Default::default()
        });
    }
    plugin.setup(&ctx, &unset).await.unwrap();
    let reqs = objects.token_requests.lock().unwrap();
    assert_eq!(reqs[0]["spec"]["expirationSeconds"], 600);
    assert_eq!(reqs[1]["spec"]["expirationSeconds"], 3600);
    // No audience: the API server's own.
    assert_eq!(reqs[1]["spec"]["audiences"], json!([]));
}

#[tokio::test(start_paused = true)]
async fn configmap_changes_show_after_the_ttl() {
    let (plugin, objects) = plugin();
    let path = "/api/v1/namespaces/ns/configmaps/cfg";
    let cm = |v: &str| {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "cfg", "namespace": "ns"},
            "data": {"k": v}, "binaryData": {"bin": "AAEC"}})
    };
    objects.put(path, cm("v1"));
    let root = tempfile::tempdir().unwrap();
    let pod = pod();
    let ctx = VolumeContext::new(&pod, root.path());
    let volume = Volume {
        name: "cfg".into(),
        config_map: Some(ConfigMapVolumeSource {
            name: "cfg".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let m = plugin.setup(&ctx, &volume).await.unwrap();
    assert_eq!(read(&m.host_path.join("k")), "v1");
    assert_eq!(std::fs::read(m.host_path.join("bin")).unwrap(), [0, 1, 2]);
    assert_eq!(mode_of(&m.host_path.join("k")), DEFAULT_FILE_MODE);
    objects.put(path, cm("v2"));
    plugin.setup(&ctx, &volume).await.unwrap();
    assert_eq!(read(&m.host_path.join("k")), "v1", "cached within the TTL");
    tokio::time::advance(Duration::from_secs(11)).await;
    plugin.setup(&ctx, &volume).await.unwrap();
    assert_eq!(read(&m.host_path.join("k")), "v2");
}

#[tokio::test]
async fn invalid_specs_are_refused_naming_the_volume() {
    let (plugin, objects) = plugin();
    objects.put(
        "/api/v1/namespaces/ns/secrets/s",
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "ns"},
            "data": {"a": "YQ=="}}),
    );
    let root = tempfile::tempdir().unwrap();
    let pod = pod();
    let ctx = VolumeContext::new(&pod, root.path());
    let escape = Volume {
        name: "escape".into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some("s".into()),
            items: Some(vec![KeyToPath {
                key: "a".into(),
                path: "../../etc/x".into(),
                mode: None,
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let err = plugin.setup(&ctx, &escape).await.unwrap_err();
    assert!(matches!(err, VolumeError::Invalid { .. }), "{err}");
    assert!(err.to_string().contains("escape"), "{err}");

    let bad_mode = Volume {
        name: "m".into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some("s".into()),
            default_mode: Some(0o1777),
            ..Default::default()
        }),
        ..Default::default()
    };
    let err = plugin.setup(&ctx, &bad_mode).await.unwrap_err();
    assert!(err.to_string().contains("defaultMode"), "{err}");

    let resource = Volume {
        name: "limits".into(),
        downward_api: Some(DownwardAPIVolumeSource {
            items: Some(vec![DownwardAPIVolumeFile {
                path: "cpu".into(),
                resource_field_ref: Some(ResourceFieldSelector {
                    resource: "limits.cpu".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let err = plugin.setup(&ctx, &resource).await.unwrap_err();
    assert!(
        err.to_string().contains("limits") && err.to_string().contains("resourceFieldRef"),
        "{err}"
    );

    let clash = Volume {
        name: "clash".into(),
        projected: Some(ProjectedVolumeSource {
            sources: Some(vec![
                VolumeProjection {
                    secret: Some(k8s_openapi::api::core::v1::SecretProjection {
                        name: "s".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                VolumeProjection {
                    config_map: Some(ConfigMapProjection {
                        name: "absent".into(),
                        optional: Some(true),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                VolumeProjection {
                    secret: Some(k8s_openapi::api::core::v1::SecretProjection {
                        name: "s".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            ]),
            default_mode: None,
            ..Default::default()
        }),
        ..Default::default()
    };
    let err = plugin.setup(&ctx, &clash).await.unwrap_err();
    assert!(err.to_string().contains("\"a\""), "{err}");
    // Nothing was left behind by the refused volumes.
    assert!(
        !root
            .path()
            .join("volumes/kubernetes.io~secret/escape")
            .exists()
    );
}

#[test]
fn supports_exactly_the_four_types() {
    let (service, _handle) = mock::pair::<Request<Body>, Response<Body>>();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let client = NodeClient::from_client(kube::Client::new(service, "default"), "n", "https://m");
    let plugin = ApiObjectVolumePlugin::new(Arc::new(PodObjectFetcher::new(client)));
    assert_eq!(plugin.name(), API_OBJECT_PLUGIN_NAME);
    let v = |f: fn(&mut Volume)| {
        let mut v = Volume {
            name: "v".into(),
            ..Default::default()
        };
        f(&mut v);
        v
    };
    assert!(plugin.can_support(&v(|v| v.config_map = Some(Default::default()))));
    assert!(plugin.can_support(&v(|v| v.secret = Some(Default::default()))));
    assert!(plugin.can_support(&v(|v| v.downward_api = Some(Default::default()))));
    assert!(plugin.can_support(&v(|v| v.projected = Some(Default::default()))));
    assert!(!plugin.can_support(&v(|v| v.empty_dir = Some(Default::default()))));
    assert!(!plugin.can_support(&v(|_| {})));
}

use k8s_openapi::api::core::v1::Container;

fn plugin_with_mounter() -> (
    ApiObjectVolumePlugin,
    Arc<Objects>,
    crate::volume_plugins::FakeMounter,
) {
    let (plugin, objects) = plugin();
    let mounter = crate::volume_plugins::FakeMounter::new();
    (
        plugin.with_mounter(Arc::new(mounter.clone())),
        objects,
        mounter,
    )
}

fn resource_pod() -> Pod {
    let mut p = pod();
    let quantity = |s: &str| k8s_openapi::apimachinery::pkg::api::resource::Quantity(s.into());
    if let Some(spec) = p.spec.as_mut() {
        spec.containers = vec![Container {
            name: "app".into(),
            resources: Some(k8s_openapi::api::core::v1::ResourceRequirements {
                requests: Some(BTreeMap::from([
                    ("cpu".to_string(), quantity("250m")),
                    ("memory".to_string(), quantity("32Mi")),
                ])),
                limits: Some(BTreeMap::from([("memory".to_string(), quantity("64Mi"))])),
                ..Default::default()
            }),
            ..Default::default()
        }];
    }
    p
}

fn resource_item(
    path: &str,
    resource: &str,
    divisor: Option<&str>,
    mode: Option<i32>,
) -> DownwardAPIVolumeFile {
    DownwardAPIVolumeFile {
        path: path.into(),
        mode,
        resource_field_ref: Some(ResourceFieldSelector {
            container_name: Some("app".into()),
            resource: resource.into(),
            divisor: divisor
                .map(|d| k8s_openapi::apimachinery::pkg::api::resource::Quantity(d.into())),
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn resource_fields_are_written_with_divisor_and_node_allocatable_and_modes() {
    let (plugin, _objects, _mounter) = plugin_with_mounter();
    let root = tempfile::tempdir().unwrap();
    let pod = resource_pod();
    let node = crate::downward_api::NodeAllocatable {
        cpu_milli: 2000,
        memory_bytes: 4 << 30,
        ephemeral_storage_bytes: 0,
    };
    let ctx = VolumeContext::new(&pod, root.path()).with_node_allocatable(node);
    let volume = Volume {
        name: "res".into(),
        downward_api: Some(DownwardAPIVolumeSource {
            default_mode: Some(0o440),
            items: Some(vec![
                resource_item("cpu_request", "requests.cpu", Some("1m"), Some(0o400)),
                resource_item("cpu_limit", "limits.cpu", None, None),
                resource_item("mem_limit", "limits.memory", Some("1Mi"), None),
                resource_item("mem_request", "requests.memory", None, None),
            ]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let m = plugin.setup(&ctx, &volume).await.unwrap();
    assert_eq!(read(&m.host_path.join("cpu_request")), "250");
    // No CPU limit: the node's allocatable (2 cores).
    assert_eq!(read(&m.host_path.join("cpu_limit")), "2");
    assert_eq!(read(&m.host_path.join("mem_limit")), "64");
    assert_eq!(
        read(&m.host_path.join("mem_request")),
        (32 << 20).to_string()
    );
    assert_eq!(mode_of(&m.host_path.join("cpu_request")), 0o400);
    assert_eq!(mode_of(&m.host_path.join("cpu_limit")), 0o440);
    // Projected downwardAPI sources take resource fields too.
    let projected = Volume {
        name: "proj".into(),
        projected: Some(ProjectedVolumeSource {
            default_mode: Some(0o600),
            sources: Some(vec![VolumeProjection {
                downward_api: Some(DownwardAPIProjection {
                    items: Some(vec![resource_item(
                        "mem",
                        "limits.memory",
                        Some("1Mi"),
                        Some(0o444),
                    )]),
                }),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let m = plugin.setup(&ctx, &projected).await.unwrap();
    assert_eq!(read(&m.host_path.join("mem")), "64");
    assert_eq!(mode_of(&m.host_path.join("mem")), 0o444);
    // A container that is not in the pod.
    let mut bad = volume.clone();
    if let Some(d) = bad.downward_api.as_mut() {
        d.items = Some(vec![DownwardAPIVolumeFile {
            path: "x".into(),
            resource_field_ref: Some(ResourceFieldSelector {
                container_name: Some("ghost".into()),
                resource: "limits.cpu".into(),
                divisor: None,
            }),
            ..Default::default()
        }]);
    }
    let err = plugin.setup(&ctx, &bad).await.unwrap_err().to_string();
    assert!(err.contains("res") && err.contains("ghost"), "{err}");
}

#[tokio::test]
async fn secret_downward_and_projected_volumes_are_tmpfs_and_configmaps_are_not() {
    let (plugin, objects, mounter) = plugin_with_mounter();
    objects.put(
        "/api/v1/namespaces/ns/secrets/s",
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "ns"},
            "data": {"a": "YQ=="}}),
    );
    objects.put(
        "/api/v1/namespaces/ns/configmaps/c",
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "ns"},
            "data": {"k": "v"}}),
    );
    let root = tempfile::tempdir().unwrap();
    let pod = resource_pod();
    let node = crate::downward_api::NodeAllocatable {
        memory_bytes: 4 << 30,
        ..Default::default()
    };
    let ctx = VolumeContext::new(&pod, root.path()).with_node_allocatable(node);
    let secret = Volume {
        name: "sec".into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some("s".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let cm = Volume {
        name: "cm".into(),
        config_map: Some(ConfigMapVolumeSource {
            name: "c".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let downward = Volume {
        name: "dw".into(),
        downward_api: Some(DownwardAPIVolumeSource {
            items: Some(vec![resource_item("m", "limits.memory", None, None)]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let token = token_volume(3600);
    let mut dirs = BTreeMap::new();
    for v in [&secret, &cm, &downward, &token] {
        let m = plugin.setup(&ctx, v).await.unwrap();
        dirs.insert(v.name.clone(), m.host_path);
    }
    let mounts = mounter.mounts();
    // The pod's memory limit (64Mi) is below the node's allocatable: the tmpfs size.
    for name in ["sec", "dw", "token"] {
        assert_eq!(mounts.get(&dirs[name]), Some(&Some(64 << 20)), "{name}");
    }
    assert!(!mounts.contains_key(&dirs["cm"]));
    assert_eq!(mounts.len(), 3);
    // The on-disk configMap directory is open to all, as the reference's emptyDir.
    assert_eq!(mode_of(&dirs["cm"]), 0o777);
    // Syncing again mounts nothing more; teardown unmounts and removes.
    plugin.setup(&ctx, &secret).await.unwrap();
    assert_eq!(mounter.mounts().len(), 3);
    for name in ["sec", "cm", "dw", "token"] {
        plugin.teardown("uid-1", root.path(), name).await.unwrap();
        assert!(!dirs[name].exists(), "{name}");
    }
    assert!(mounter.mounts().is_empty());
    assert_eq!(mounter.unmounted().len(), 3);
}

#[tokio::test(start_paused = true)]
async fn fs_group_gives_the_files_to_the_group_and_the_token_0600() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: chown to another group needs root");
        return;
    }
    use std::os::unix::fs::MetadataExt;
    let (plugin, objects, _mounter) = plugin_with_mounter();
    objects.put(
        "/api/v1/namespaces/ns/configmaps/c",
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "ns"},
            "data": {"k": "v"}}),
    );
    let root = tempfile::tempdir().unwrap();
    let mut pod = pod();
    if let Some(spec) = pod.spec.as_mut() {
        spec.security_context = Some(k8s_openapi::api::core::v1::PodSecurityContext {
            fs_group: Some(3456),
            fs_group_change_policy: Some("OnRootMismatch".into()),
            ..Default::default()
        });
    }
    let ctx = VolumeContext::new(&pod, root.path());
    let cm = Volume {
        name: "cm".into(),
        config_map: Some(ConfigMapVolumeSource {
            name: "c".into(),
            default_mode: Some(0o600),
            ..Default::default()
        }),
        ..Default::default()
    };
    let m = plugin.setup(&ctx, &cm).await.unwrap();
    let meta = std::fs::metadata(m.host_path.join("k")).unwrap();
    assert_eq!(meta.gid(), 3456);
    // Group read added to the file's mode (the volume is read-only: no group write).
    assert_eq!(meta.permissions().mode() & 0o7777, 0o640);
    let root_meta = std::fs::metadata(&m.host_path).unwrap();
    assert_eq!(root_meta.gid(), 3456);
    assert_eq!(root_meta.permissions().mode() & 0o2000, 0o2000);
    // A sync with nothing changed writes nothing (the added group bit is expected).
    let data = std::fs::read_link(m.host_path.join("..data")).unwrap();
    plugin.setup(&ctx, &cm).await.unwrap();
    assert_eq!(
        std::fs::read_link(m.host_path.join("..data")).unwrap(),
        data
    );
    // A change is written and given to the group again, OnRootMismatch or not.
    objects.put(
        "/api/v1/namespaces/ns/configmaps/c",
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "ns"},
            "data": {"k": "v2"}}),
    );
    tokio::time::advance(Duration::from_secs(11)).await;
    plugin.setup(&ctx, &cm).await.unwrap();
    assert_eq!(read(&m.host_path.join("k")), "v2");
    let meta = std::fs::metadata(m.host_path.join("k")).unwrap();
    assert_eq!(
        (meta.gid(), meta.permissions().mode() & 0o7777),
        (3456, 0o640)
    );
    // The token of a pod with an fsGroup is readable by its owner only (plus the group).
    let m = plugin.setup(&ctx, &token_volume(3600)).await.unwrap();
    let meta = std::fs::metadata(m.host_path.join("token")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o640);
    assert_eq!(meta.gid(), 3456);
}

#[tokio::test]
async fn the_token_belongs_to_the_common_run_as_user() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: chown to another user needs root");
        return;
    }
    use std::os::unix::fs::MetadataExt;
    let (plugin, _objects, _mounter) = plugin_with_mounter();
    let root = tempfile::tempdir().unwrap();
    let mut pod = pod();
    if let Some(spec) = pod.spec.as_mut() {
        spec.security_context = Some(k8s_openapi::api::core::v1::PodSecurityContext {
            run_as_user: Some(4242),
            ..Default::default()
        });
        spec.containers = vec![Container {
            name: "a".into(),
            ..Default::default()
        }];
    }
    let ctx = VolumeContext::new(&pod, root.path());
    let m = plugin.setup(&ctx, &token_volume(3600)).await.unwrap();
    let meta = std::fs::metadata(m.host_path.join("token")).unwrap();
    assert_eq!(meta.uid(), 4242);
    assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
    // The other files of the volume stay the kubelet's, with their modes.
    let labels = std::fs::metadata(m.host_path.join("labels")).unwrap();
    assert_eq!(labels.uid(), nix::unistd::geteuid().as_raw());
    assert_eq!(labels.permissions().mode() & 0o7777, 0o600);
    // Containers that disagree: the token stays the kubelet's.
    if let Some(spec) = pod.spec.as_mut() {
        spec.containers.push(Container {
            name: "b".into(),
            security_context: Some(k8s_openapi::api::core::v1::SecurityContext {
                run_as_user: Some(7),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    let ctx = VolumeContext::new(&pod, root.path());
    let mut other = token_volume(3600);
    other.name = "other".into();
    let m = plugin.setup(&ctx, &other).await.unwrap();
    let meta = std::fs::metadata(m.host_path.join("token")).unwrap();
    assert_eq!(meta.uid(), nix::unistd::geteuid().as_raw());
    assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
}
