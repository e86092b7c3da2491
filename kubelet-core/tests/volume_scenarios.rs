#![cfg(feature = "apiserver")]
//! Volume scenarios: the real reconciler with the built-in volume plugins and the
//! API-object plugin (over an in-process mock of the API server), the stateful fake runtime
//! and a recording reporter, on tokio's paused time. tmpfs mounts go through a
//! [`FakeMounter`] so that the tests run unprivileged and leave nothing mounted; the real
//! mounts are tested on containerd in `kubelet-bin/tests/e2e_volumes.rs`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use k8s_openapi::api::core::v1::Pod;
use kube::client::Body;
use kubelet_core::apiserver::{ApiObjectVolumePlugin, NodeClient};
use kubelet_core::runtime::{ContainerConfig, MountPropagation};
use kubelet_core::testing::{ChannelSource, ChannelSourceSender, FakeRuntime, RecordingReporter};
use kubelet_core::volume::FakeMounter;
use kubelet_core::volume_plugins::EmptyDirPlugin;
use kubelet_core::{Kubelet, KubeletConfig};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tower_test::mock;

const IMAGE: &str = "docker.io/library/busybox:local";
const NODE: &str = "node-1";

/// ConfigMaps and Secrets by request path, served to the kubelet's client.
#[derive(Default)]
struct Objects(Mutex<HashMap<String, Value>>);

impl Objects {
    fn put(&self, path: &str, obj: Value) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(path.to_string(), obj);
    }
}

async fn serve(mut handle: mock::Handle<Request<Body>, Response<Body>>, objects: Arc<Objects>) {
    while let Some((request, respond)) = handle.next_request().await {
        let path = request.uri().path().to_string();
        let found = objects
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&path)
            .cloned();
        let (code, body) = match found {
            Some(obj) => (200, obj),
            None => (
                404,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                    "code": 404, "reason": "NotFound", "message": format!("{path} not found")}),
            ),
        };
        let response = Response::builder()
            .status(StatusCode::from_u16(code).expect("status"))
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(&body).expect("json")))
            .expect("response");
        respond.send_response(response);
    }
}

/// What outlives a kubelet: its root directory, the runtime and the node's mounts.
struct Leftovers {
    dir: tempfile::TempDir,
    runtime: Arc<FakeRuntime>,
    mounter: FakeMounter,
    objects: Arc<Objects>,
}

/// The kubelet under test and its doubles.
struct Node {
    runtime: Arc<FakeRuntime>,
    reporter: Arc<RecordingReporter>,
    pods: ChannelSourceSender,
    mounter: FakeMounter,
    objects: Arc<Objects>,
    root: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Node {
    fn start() -> Self {
        Self::start_on(Leftovers {
            dir: tempfile::tempdir().expect("tempdir"),
            runtime: Arc::new(FakeRuntime::with_images([IMAGE])),
            mounter: FakeMounter::new(),
            objects: Arc::new(Objects::default()),
        })
    }

    /// A kubelet over what an earlier one left: its directory, runtime and mounts.
    fn start_on(left: Leftovers) -> Self {
        let Leftovers {
            dir,
            runtime,
            mounter,
            objects,
        } = left;
        let root = dir.path().join("kubelet");
        let mut config = KubeletConfig::new(NODE);
        config.root_dir = root.clone();
        config.spec.pod_logs_root = dir.path().join("pods").to_string_lossy().into_owned();
        config.spec.node_memory_capacity = 1 << 30;
        config.spec.node_cpu_capacity_milli = 4000;
        config.node_ips = vec!["192.0.2.10".into()];
        let reporter = Arc::new(RecordingReporter::new());
        let (source, pods) = ChannelSource::new("api");
        let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
        tokio::spawn(serve(handle, objects.clone()));
        let client =
            NodeClient::from_client(kube::Client::new(service, "default"), NODE, "https://mock");
        let kubelet = Kubelet::builder(config)
            .runtime(runtime.clone())
            .reporter(reporter.clone())
            .source(Box::new(source))
            // As the daemon wires it: a fetcher of its own, objects kept 10 s.
            .volume_plugin(Arc::new(
                ApiObjectVolumePlugin::for_client(client).with_mounter(Arc::new(mounter.clone())),
            ))
            .volume_plugin(Arc::new(EmptyDirPlugin::with_mounter(Arc::new(
                mounter.clone(),
            ))))
            // subPath bind mounts too.
            .mounter(Arc::new(mounter.clone()))
            .build()
            .expect("kubelet");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            kubelet
                .run(async move {
                    let _ = stopped.await;
                })
                .await
                .expect("kubelet run");
        });
        Self {
            runtime,
            reporter,
            pods,
            mounter,
            objects,
            root,
            stop: Some(stop),
            task,
            _dir: dir,
        }
    }

    async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }

    /// Stop the kubelet (pods and mounts stay) and keep what the next one starts on.
    async fn stop_keeping(mut self) -> Leftovers {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
        Leftovers {
            dir: self._dir,
            runtime: self.runtime,
            mounter: self.mounter,
            objects: self.objects,
        }
    }

    /// Wait (on virtual time) until `cond` holds, at most `limit`.
    async fn until(&self, limit: Duration, what: &str, mut cond: impl FnMut(&Self) -> bool) {
        let deadline = Instant::now() + limit;
        while !cond(self) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for: {what}; events: {:?}",
                self.reporter
                    .events()
                    .into_iter()
                    .map(|e| (e.reason, e.message))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn pod_dir(&self, uid: &str) -> PathBuf {
        self.root.join("pods").join(uid)
    }

    /// The config of the newest container `name` of pod `pod_name` the runtime created.
    fn created(&self, pod_name: &str, name: &str) -> Option<ContainerConfig> {
        let c = self
            .runtime
            .containers_of(pod_name, name)
            .into_iter()
            .last()?;
        self.runtime.container_config(&c.id)
    }

    fn waiting(&self, uid: &str, name: &str) -> Option<(String, String)> {
        let w = self
            .reporter
            .last_pod_status(uid)?
            .container_statuses?
            .into_iter()
            .find(|c| c.name == name)?
            .state?
            .waiting?;
        Some((w.reason.unwrap_or_default(), w.message.unwrap_or_default()))
    }
}

fn pod(name: &str, spec: Value) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
        "spec": spec,
    }))
    .expect("pod JSON")
}

fn app(mounts: Value, extra: Value) -> Value {
    let mut c = json!({
        "name": "app",
        "image": IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "volumeMounts": mounts,
    });
    if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
        c.extend(extra.clone());
    }
    c
}

fn mount_of<'a>(config: &'a ContainerConfig, path: &str) -> &'a kubelet_core::runtime::Mount {
    config
        .mounts
        .iter()
        .find(|m| m.container_path == path)
        .unwrap_or_else(|| panic!("no mount at {path}: {:?}", config.mounts))
}

#[tokio::test(start_paused = true)]
async fn volumes_reach_the_runtime_as_mounts_and_memory_ones_are_tmpfs_until_the_pod_goes() {
    let node = Node::start();
    node.objects.put(
        "/api/v1/namespaces/default/secrets/creds",
        json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "creds", "namespace": "default"}, "data": {"password": "czNjcmV0"}}),
    );
    let host = tempfile::tempdir().expect("tempdir");
    let made = host.path().join("made/dir");
    let p = pod(
        "web",
        json!({
            "containers": [app(
                json!([
                    {"name": "shm", "mountPath": "/shm"},
                    {"name": "scratch", "mountPath": "/scratch", "readOnly": true},
                    {"name": "scratch", "mountPath": "/logs", "subPathExpr": "logs/$(POD)"},
                    {"name": "host", "mountPath": "/host", "mountPropagation": "HostToContainer"},
                    {"name": "creds", "mountPath": "/creds"},
                    {"name": "info", "mountPath": "/info"}
                ]),
                json!({"env": [{"name": "POD", "value": "web-0"}],
                    "resources": {"limits": {"memory": "64Mi"}}}),
            )],
            "volumes": [
                {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "8Mi"}},
                {"name": "scratch", "emptyDir": {"sizeLimit": "1Gi"}},
                {"name": "host", "hostPath": {"path": made, "type": "DirectoryOrCreate"}},
                {"name": "creds", "secret": {"secretName": "creds"}},
                {"name": "info", "downwardAPI": {"items": [
                    {"path": "cpu", "resourceFieldRef": {"containerName": "app",
                        "resource": "limits.cpu", "divisor": "1m"}},
                    {"path": "mem", "mode": 0o400, "resourceFieldRef": {"containerName": "app",
                        "resource": "limits.memory", "divisor": "1Mi"}}
                ]}}
            ]
        }),
    );
    node.pods.snapshot(vec![p.clone()]);
    node.until(Duration::from_secs(30), "app created", |n| {
        n.created("web", "app").is_some()
    })
    .await;
    let config = node.created("web", "app").expect("config");
    let volumes = node.pod_dir("uid-web").join("volumes");
    let shm = volumes.join("kubernetes.io~empty-dir/shm");
    let scratch = volumes.join("kubernetes.io~empty-dir/scratch");
    let creds = volumes.join("kubernetes.io~secret/creds");
    let info = volumes.join("kubernetes.io~downward-api/info");

    let m = mount_of(&config, "/shm");
    assert_eq!(Path::new(&m.host_path), shm);
    assert!(!m.readonly);
    let m = mount_of(&config, "/scratch");
    assert!(m.readonly, "readOnly reaches the runtime");
    // A subPath reaches the runtime as its bind mount below the pod directory (volume,
    // container, index of the mount), of the directory it names in the volume.
    let m = mount_of(&config, "/logs");
    let logs = std::fs::canonicalize(scratch.join("logs/web-0")).expect("subPathExpr made");
    let bind = node
        .pod_dir("uid-web")
        .join("volume-subpaths/scratch/app/2");
    assert_eq!(Path::new(&m.host_path), bind);
    assert_eq!(node.mounter.binds().get(&bind), Some(&logs));
    let m = mount_of(&config, "/host");
    assert_eq!(m.propagation, MountPropagation::HostToContainer);
    assert!(made.is_dir(), "DirectoryOrCreate");
    let m = mount_of(&config, "/creds");
    assert!(m.readonly, "secret volumes are read-only");
    assert_eq!(
        std::fs::read_to_string(creds.join("password")).expect("secret file"),
        "s3cret"
    );
    // Resource fields: the unset CPU limit is the node's allocatable.
    assert_eq!(
        std::fs::read_to_string(info.join("cpu")).expect("cpu"),
        "4000"
    );
    assert_eq!(
        std::fs::read_to_string(info.join("mem")).expect("mem"),
        "64"
    );

    // Memory-backed: the memory emptyDir (its sizeLimit), the secret and the downward API
    // volume (the pod's memory limit); the disk emptyDir is not.
    let mounts = node.mounter.mounts();
    assert_eq!(mounts.get(&shm), Some(&Some(8 << 20)));
    assert_eq!(mounts.get(&creds), Some(&Some(64 << 20)));
    assert_eq!(mounts.get(&info), Some(&Some(64 << 20)));
    assert_eq!(mounts.len(), 3, "{mounts:?}");

    // Gone with the pod: unmounted and removed.
    node.pods.snapshot(vec![]);
    node.until(Duration::from_secs(60), "volumes unmounted", |n| {
        n.mounter.mounts().is_empty()
    })
    .await;
    let mut unmounted = node.mounter.unmounted();
    unmounted.sort();
    let mut want = vec![shm.clone(), creds.clone(), info.clone(), bind.clone()];
    want.sort();
    assert_eq!(unmounted, want);
    assert!(node.mounter.binds().is_empty(), "subPath binds unmounted");
    assert!(!node.pod_dir("uid-web").join("volume-subpaths").exists());
    node.until(
        Duration::from_secs(60),
        "volume directories removed",
        |_| !shm.exists() && !creds.exists() && !scratch.exists(),
    )
    .await;
    assert!(made.is_dir(), "the node's hostPath stays");
    node.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn mounts_the_reference_refuses_keep_the_container_waiting() {
    let node = Node::start();
    let host = tempfile::tempdir().expect("tempdir");
    let missing = host.path().join("later");
    let bidi = pod(
        "bidi",
        json!({
            "containers": [app(json!([{"name": "d", "mountPath": "/d",
                "mountPropagation": "Bidirectional"}]), json!({}))],
            "volumes": [{"name": "d", "emptyDir": {}}]
        }),
    );
    let escape = pod(
        "escape",
        json!({
            "containers": [app(json!([{"name": "d", "mountPath": "/d", "subPathExpr": "$(UNSET)"}]), json!({}))],
            "volumes": [{"name": "d", "emptyDir": {}}]
        }),
    );
    let typed = pod(
        "typed",
        json!({
            "containers": [app(json!([{"name": "h", "mountPath": "/h"}]), json!({}))],
            "volumes": [{"name": "h", "hostPath": {"path": missing, "type": "Directory"}}]
        }),
    );
    let privileged = pod(
        "privileged",
        json!({
            "containers": [app(json!([{"name": "d", "mountPath": "/d",
                "mountPropagation": "Bidirectional"}]),
                json!({"securityContext": {"privileged": true}}))],
            "volumes": [{"name": "d", "emptyDir": {}}]
        }),
    );
    node.pods.snapshot(vec![bidi, escape, typed, privileged]);
    node.until(Duration::from_secs(30), "refusals reported", |n| {
        n.waiting("uid-bidi", "app").is_some()
            && n.waiting("uid-escape", "app").is_some()
            && n.waiting("uid-typed", "app").is_some()
            && n.created("privileged", "app").is_some()
    })
    .await;
    assert_eq!(
        node.waiting("uid-bidi", "app"),
        Some((
            "CreateContainerConfigError".to_string(),
            "spec.containers[0].volumeMounts[0].mountPropagation: Forbidden: Bidirectional mount propagation is available only to privileged containers".to_string()
        ))
    );
    assert_eq!(
        node.waiting("uid-escape", "app"),
        Some((
            "CreateContainerConfigError".to_string(),
            "missing value for UNSET".to_string()
        ))
    );
    let (reason, message) = node.waiting("uid-typed", "app").expect("waiting");
    assert_eq!(reason, "ContainerCreating");
    assert!(
        message.contains(&format!(
            "hostPath type check failed: {} is not a directory",
            missing.display()
        )),
        "{message}"
    );
    let failed_mount = node.reporter.events_with_reason("FailedMount");
    assert!(
        failed_mount
            .iter()
            .any(|e| e.message.contains("hostPath type check failed")),
        "{failed_mount:?}"
    );
    assert!(node.created("bidi", "app").is_none());
    assert!(node.created("typed", "app").is_none());
    let config = node
        .created("privileged", "app")
        .expect("privileged created");
    assert_eq!(
        mount_of(&config, "/d").propagation,
        MountPropagation::Bidirectional
    );
    // Once the directory exists, the retry mounts it and the container starts.
    std::fs::create_dir(&missing).expect("mkdir");
    node.until(Duration::from_secs(30), "typed started", |n| {
        n.created("typed", "app").is_some()
    })
    .await;
    node.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_changed_configmap_reaches_the_file_within_the_sync_period_and_cache_ttl() {
    let node = Node::start();
    let path = "/api/v1/namespaces/default/configmaps/settings";
    let cm = |v: &str| {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "settings", "namespace": "default"}, "data": {"greeting": v}})
    };
    node.objects.put(path, cm("hello"));
    let p = pod(
        "cfg",
        json!({
            "containers": [app(json!([{"name": "settings", "mountPath": "/etc/settings"}]), json!({}))],
            "volumes": [{"name": "settings", "configMap": {"name": "settings",
                "items": [{"key": "greeting", "path": "greeting", "mode": 0o600}]}}]
        }),
    );
    node.pods.snapshot(vec![p]);
    let dir = node
        .pod_dir("uid-cfg")
        .join("volumes/kubernetes.io~configmap/settings");
    let file = dir.join("greeting");
    node.until(Duration::from_secs(30), "app created", |n| {
        n.created("cfg", "app").is_some()
    })
    .await;
    assert_eq!(std::fs::read_to_string(&file).expect("file"), "hello");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).expect("meta").permissions().mode() & 0o7777;
        assert_eq!(mode, 0o600);
    }
    let before = std::fs::read_link(dir.join("..data")).expect("..data");
    // On disk, not in memory.
    assert!(node.mounter.mounts().is_empty());

    let changed = Instant::now();
    node.objects.put(path, cm("updated"));
    node.until(Duration::from_secs(125), "the change in the file", |_| {
        std::fs::read_to_string(&file).ok().as_deref() == Some("updated")
    })
    .await;
    // Within the sync period (1 minute) plus the volume plugin's object TTL (10 s): inside
    // the 60-90 s the reference takes.
    let delay = changed.elapsed();
    assert!(
        delay <= Duration::from_secs(71),
        "took {delay:?}, more than sync period + TTL"
    );
    // An atomic swap: a new timestamped directory behind `..data`, the old one gone.
    let after = std::fs::read_link(dir.join("..data")).expect("..data");
    assert_ne!(before, after);
    assert!(!dir.join(&before).exists());
    assert_eq!(
        std::fs::read_link(&file).expect("link"),
        Path::new("..data/greeting")
    );
    // The running container was not restarted for it.
    assert_eq!(node.runtime.containers_of("cfg", "app").len(), 1);
    node.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_pod_removed_while_the_kubelet_was_down_has_its_tmpfs_unmounted_at_restart() {
    let node = Node::start();
    let p = pod(
        "gone",
        json!({
            "containers": [app(json!([
                {"name": "shm", "mountPath": "/shm"},
                {"name": "shm", "mountPath": "/sub", "subPath": "sub"}
            ]), json!({}))],
            "volumes": [{"name": "shm", "emptyDir": {"medium": "Memory"}}]
        }),
    );
    node.pods.snapshot(vec![p]);
    node.until(Duration::from_secs(30), "app created", |n| {
        n.created("gone", "app").is_some()
    })
    .await;
    let shm = node
        .pod_dir("uid-gone")
        .join("volumes/kubernetes.io~empty-dir/shm");
    let bind = node.pod_dir("uid-gone").join("volume-subpaths/shm/app/1");
    // No memory limit on the pod: the node's allocatable memory.
    assert_eq!(node.mounter.mounts().get(&shm), Some(&Some(1 << 30)));
    assert!(node.mounter.binds().contains_key(&bind));
    let left = node.stop_keeping().await;
    // The kubelet comes back to a node where the pod is no longer wanted: the orphan's
    // subPath bind goes first, then its tmpfs.
    let node = Node::start_on(left);
    node.pods.snapshot(vec![]);
    node.until(
        Duration::from_secs(60),
        "the orphan's tmpfs unmounted",
        |n| n.mounter.mounts().is_empty(),
    )
    .await;
    assert_eq!(node.mounter.unmounted(), vec![bind.clone(), shm.clone()]);
    assert!(node.mounter.binds().is_empty());
    node.until(
        Duration::from_secs(60),
        "the orphan's volume removed",
        |_| !shm.exists() && !bind.exists(),
    )
    .await;
    node.shutdown().await;
}
