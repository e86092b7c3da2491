//! End-to-end: the `kubelet` binary joins a cluster and runs its pods on a real containerd.
//! The cluster is what `TestApiServer::from_env` gives: a real etcd + kube-apiserver started
//! from `KUBELET_TEST_ASSETS` (Node and RBAC authorization, NodeRestriction), a real cluster
//! with `KUBELET_TEST_REAL_CLUSTER=1` and `KUBECONFIG`, or else the fake kube-apiserver of
//! `kubelet_core::testing::apiserver`. The kubelet authenticates as `system:node:e2e-node`
//! with a client certificate and gets only a kubeconfig, and the tests read and write through
//! kube-rs as an admin, so they run unchanged against any of them (what needs the fake's
//! fault injection or request log is skipped on a real one).
//! Skipped like the other end-to-end tests when no containerd can run here, unless
//! `KUBELET_TEST_REQUIRE_CONTAINERD=1`.

mod support {
    // Shared by several test binaries; each uses part of it.
    #[allow(dead_code)]
    pub mod node;
}

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Node, Pod, PodCondition};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kubelet_core::testing::apiserver::{FakeApiServer, TestApiServer};
use support::node::{NODE, TestNode, container, phase, runtime_id, uid};

const IMAGE: &str = kubelet_cri::testing::BUSYBOX_IMAGE;
/// Deadline for anything the kubelet does on its own schedule.
const DEADLINE: Duration = Duration::from_secs(90);
/// How often the tests look at the API server.
const POLL: Duration = Duration::from_millis(250);
/// A script that idles until SIGTERM, on which it exits 0 at once.
const SERVE: &str = "trap 'exit 0' TERM; sleep 3600 & wait";

/// The API server, a kube-rs client of the test's own, the kubeconfig file handed to the
/// kubelet, and a node whose kubelet uses it.
struct Cluster {
    // Field order is drop order: the kubelet first, then the server.
    node: TestNode,
    kube: kube::Client,
    server: TestApiServer,
    _kubeconfig_dir: tempfile::TempDir,
}

async fn start_cluster(extra: &[&str]) -> Option<Cluster> {
    let server = TestApiServer::from_env()
        .await
        .expect("API server for the test");
    start_cluster_on(server, extra).await
}

/// A cluster on the fake API server whatever the environment says: for the tests that need
/// its fault injection.
async fn start_fake_cluster(extra: &[&str]) -> Option<Cluster> {
    let fake = FakeApiServer::start_tls().await.expect("fake API server");
    start_cluster_on(TestApiServer::Fake(fake), extra).await
}

async fn start_cluster_on(server: TestApiServer, extra: &[&str]) -> Option<Cluster> {
    let dir = tempfile::tempdir().expect("temp dir");
    let test_kubeconfig = dir.path().join("test.conf");
    server
        .write_kubeconfig(&test_kubeconfig)
        .expect("write kubeconfig");
    // A node's credentials as kubeadm issues them: a client certificate for
    // system:node:<name> in group system:nodes (a real cluster's own kubeconfig as it is).
    let kubelet_kubeconfig = dir.path().join("kubelet.conf");
    let config = server
        .node_kubeconfig(NODE)
        .expect("node client certificate kubeconfig");
    std::fs::write(&kubelet_kubeconfig, config).expect("write kubeconfig");
    let mut args = vec![format!("--kubeconfig={}", kubelet_kubeconfig.display())];
    args.extend(extra.iter().map(ToString::to_string));
    let node = TestNode::start_with_args(args).await?;
    let kubeconfig = kube::config::Kubeconfig::read_from(&test_kubeconfig).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("client config");
    let kube = kube::Client::try_from(config).expect("kube client");
    Some(Cluster {
        node,
        kube,
        server,
        _kubeconfig_dir: dir,
    })
}

impl Cluster {
    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.kube.clone(), "default")
    }

    fn fake(&self) -> Option<&FakeApiServer> {
        self.server.fake()
    }

    async fn create_pod(&self, pod: &Pod) -> Pod {
        self.pods()
            .create(&PostParams::default(), pod)
            .await
            .expect("create pod")
    }

    /// Poll `get` until `pred` holds for what it returns; panics after [`DEADLINE`].
    async fn wait<K: std::fmt::Debug>(
        &self,
        what: &str,
        mut get: impl AsyncFnMut() -> Option<K>,
        pred: impl Fn(Option<&K>) -> bool,
    ) -> Option<K> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let current = get().await;
            if pred(current.as_ref()) {
                return current;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; now: {current:#?}"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// The pod as the server has it; every look checks that the stored container statuses
    /// are one per container (no phantom entries), whatever the test waits for.
    async fn get_pod(&self, name: &str) -> Option<Pod> {
        let pod = self.pods().get_opt(name).await.ok().flatten();
        if let Some(p) = &pod
            && p.status
                .as_ref()
                .is_some_and(|s| s.container_statuses.is_some())
        {
            assert_one_status_per_container(p);
        }
        pod
    }

    async fn wait_pod(&self, name: &str, what: &str, pred: impl Fn(&Pod) -> bool) -> Pod {
        self.wait(
            &format!("pod {name}: {what}"),
            async || self.get_pod(name).await,
            |p| p.is_some_and(&pred),
        )
        .await
        .expect("the pod exists")
    }

    async fn wait_pod_gone(&self, name: &str) {
        self.wait(
            &format!("pod {name} to be gone"),
            async || self.get_pod(name).await,
            |p| p.is_none(),
        )
        .await;
    }

    async fn wait_node(&self, what: &str, pred: impl Fn(&Node) -> bool) -> Node {
        let nodes: Api<Node> = Api::all(self.kube.clone());
        self.wait(
            &format!("node: {what}"),
            async || nodes.get_opt(NODE).await.ok().flatten(),
            |n| n.is_some_and(&pred),
        )
        .await
        .expect("the Node exists")
    }

    async fn wait_lease(&self, what: &str, pred: impl Fn(&Lease) -> bool) -> Lease {
        let leases: Api<Lease> = Api::namespaced(self.kube.clone(), "kube-node-lease");
        self.wait(
            &format!("lease: {what}"),
            async || leases.get_opt(NODE).await.ok().flatten(),
            |l| l.is_some_and(&pred),
        )
        .await
        .expect("the Lease exists")
    }

    /// The Scheduler's part: a PodScheduled condition on the bound pod (strategic merge by
    /// condition type, as the scheduler writes it), which the kubelet must keep when it
    /// writes its own conditions.
    async fn mark_scheduled(&self, name: &str) {
        let patch = serde_json::json!({"status": {"conditions": [
            {"type": "PodScheduled", "status": "True"}
        ]}});
        self.pods()
            .patch_status(name, &PatchParams::default(), &Patch::Strategic(patch))
            .await
            .expect("set PodScheduled");
    }

    async fn delete_pod(&self, name: &str, grace: Option<u32>) {
        let params = DeleteParams {
            grace_period_seconds: grace,
            ..DeleteParams::default()
        };
        let _ = self.pods().delete(name, &params).await.expect("delete pod");
    }

    async fn events_about(&self, pod_uid: &str) -> Vec<Event> {
        let events: Api<Event> = Api::namespaced(self.kube.clone(), "default");
        events
            .list(&ListParams::default())
            .await
            .expect("list events")
            .items
            .into_iter()
            .filter(|e| e.involved_object.uid.as_deref() == Some(pod_uid))
            .collect()
    }
}

/// A pod bound to the test node with one container per `(name, script)`.
fn api_pod(name: &str, restart_policy: &str, grace: i64, containers: &[(&str, &str)]) -> Pod {
    let containers: Vec<serde_json::Value> = containers
        .iter()
        .map(|(name, script)| {
            serde_json::json!({
                "name": name,
                "image": IMAGE,
                "imagePullPolicy": "IfNotPresent",
                "command": ["sh", "-c", script],
            })
        })
        .collect();
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "nodeName": NODE,
            "restartPolicy": restart_policy,
            "terminationGracePeriodSeconds": grace,
            "containers": containers,
        },
    }))
    .expect("pod JSON")
}

fn condition<'a>(pod: &'a Pod, type_: &str) -> Option<&'a PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

/// The server holds one container status per container of the spec, as the reference
/// kubelet writes them: nothing for a container that does not exist.
fn assert_one_status_per_container(pod: &Pod) {
    let mut spec: Vec<&str> = pod
        .spec
        .iter()
        .flat_map(|s| &s.containers)
        .map(|c| c.name.as_str())
        .collect();
    let statuses = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref());
    let mut names: Vec<&str> = statuses
        .into_iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    spec.sort_unstable();
    names.sort_unstable();
    assert_eq!(
        names, spec,
        "container statuses on the server, one per container expected: {statuses:#?}"
    );
}

fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_registers_runs_an_api_pod_and_deletes_it_gracefully() {
    let Some(cluster) = start_cluster(&["--node-labels=example.com/rack=r1"]).await else {
        return;
    };

    // The Node registers and turns Ready, with the identity and capacity the reference reports.
    let node = cluster.wait_node("Ready", node_ready).await;
    let labels = node.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels["kubernetes.io/hostname"], NODE);
    assert_eq!(labels["kubernetes.io/os"], "linux");
    assert_eq!(labels["example.com/rack"], "r1");
    let status = node.status.clone().expect("node status");
    let capacity = status.capacity.expect("capacity");
    assert_eq!(capacity["pods"].0, "110");
    assert!(capacity.contains_key("cpu") && capacity.contains_key("memory"));
    assert!(
        status
            .allocatable
            .expect("allocatable")
            .contains_key("memory")
    );
    let info = status.node_info.expect("nodeInfo");
    assert!(
        info.container_runtime_version.starts_with("containerd://"),
        "{info:?}"
    );
    assert!(!info.boot_id.is_empty() && !info.kernel_version.is_empty());
    assert_eq!(info.operating_system, "linux");
    assert!(
        info.kubelet_version.starts_with("v1.37.0+kubelet-rs."),
        "{info:?}"
    );
    let types: BTreeSet<String> = status
        .conditions
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.type_)
        .collect();
    for t in ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"] {
        assert!(types.contains(t), "{t} in {types:?}");
    }

    // The Lease exists, is owned by the Node, and is renewed (every 10 s).
    let lease = cluster.wait_lease("exists", |_| true).await;
    let spec = lease.spec.clone().expect("lease spec");
    assert_eq!(spec.holder_identity.as_deref(), Some(NODE));
    assert_eq!(spec.lease_duration_seconds, Some(40));
    let owner = &lease.metadata.owner_references.clone().expect("owner")[0];
    assert_eq!((owner.kind.as_str(), owner.name.as_str()), ("Node", NODE));
    assert_eq!(Some(&owner.uid), node.metadata.uid.as_ref());
    let first_renew = spec.renew_time.map(|t| t.0);
    cluster
        .wait_lease("renewed", |l: &Lease| {
            l.spec
                .as_ref()
                .is_some_and(|s| s.renew_time.as_ref().map(|t| t.0) != first_renew)
        })
        .await;

    // A pod bound to the node in the API server runs; its status goes Pending -> Running.
    let created = cluster
        .create_pod(&api_pod("web", "Always", 5, &[("app", SERVE)]))
        .await;
    assert_eq!(phase(&created), "Pending");
    cluster.mark_scheduled("web").await;
    let running = cluster
        .wait_pod("web", "Running and Ready", |p| {
            phase(p) == "Running" && condition(p, "Ready").is_some_and(|c| c.status == "True")
        })
        .await;
    let status = running.status.clone().expect("status");
    assert!(
        status.pod_ip.is_some() && status.pod_ips.is_some(),
        "{status:?}"
    );
    assert!(status.host_ip.is_some(), "{status:?}");
    assert!(status.start_time.is_some());
    assert_eq!(status.qos_class.as_deref(), Some("BestEffort"));
    let scheduled = condition(&running, "PodScheduled").expect("PodScheduled kept");
    assert_eq!(scheduled.status, "True");
    let app = container(&running, "app").expect("app status");
    assert!(app.ready && app.started == Some(true));
    assert!(
        app.container_id
            .as_deref()
            .is_some_and(|id| id.starts_with("containerd://"))
    );
    assert!(!app.image_id.is_empty() && app.image == IMAGE, "{app:?}");
    let pod_uid = uid(&running);

    // Events with the reference's reasons reached the API server.
    let reasons: BTreeSet<String> = cluster
        .events_about(&pod_uid)
        .await
        .into_iter()
        .filter_map(|e| e.reason)
        .collect();
    assert!(
        reasons.contains("Started") && reasons.contains("Created"),
        "{reasons:?}"
    );

    // Deleting it: the kubelet stops it within its grace period and finishes the deletion.
    let container_id = runtime_id(app).expect("container id").to_string();
    cluster.delete_pod("web", None).await;
    let asked = Instant::now();
    let deleting = cluster.get_pod("web").await;
    assert!(
        deleting.is_some_and(|p| p.metadata.deletion_timestamp.is_some()),
        "a graceful delete waits for the kubelet"
    );
    cluster.wait_pod_gone("web").await;
    // Grace 5 s, plus the kubelet's watch and sync turns.
    assert!(
        asked.elapsed() < Duration::from_secs(30),
        "{:?}",
        asked.elapsed()
    );
    let left = cluster.node.container_status(&container_id).await;
    assert!(left.is_none(), "container left in the runtime: {left:?}");
    assert!(cluster.node.containers(Some(&pod_uid)).await.is_empty());

    // Everything asked for was within what the Node authorizer grants system:node:<name>
    // (the fake does not enforce it, so check the requests it saw; a real cluster enforces
    // it itself).
    if let Some(fake) = cluster.fake() {
        let node_user = format!("system:node:{NODE}");
        for request in fake.requests() {
            if request.user.as_deref() == Some(&node_user) {
                assert!(node_may(&request), "beyond a node's rights: {request:?}");
            }
        }
        assert!(
            fake.requests()
                .iter()
                .any(|r| r.user.as_deref() == Some(&node_user))
        );
    }
}

/// Whether a request is one the Node authorizer and NodeRestriction allow this node: its own
/// Node and Lease, pods by `spec.nodeName=<node>`, the pods (and their status) of this test,
/// events.
fn node_may(r: &kubelet_core::testing::apiserver::RequestRecord) -> bool {
    let name = r.name.as_deref();
    match r.resource.as_deref() {
        None => r.method == "GET", // discovery, /version
        // A create names the Node in its body, which NodeRestriction checks.
        Some("nodes") if r.method == "POST" => name.is_none(),
        Some("nodes" | "nodes/status") => name == Some(NODE),
        Some("leases") => {
            r.namespace.as_deref() == Some("kube-node-lease")
                && (name == Some(NODE) || (r.method == "POST" && name.is_none()))
        }
        Some("pods") if name.is_none() => {
            r.query_param("fieldSelector").as_deref() == Some(&format!("spec.nodeName={NODE}"))
        }
        Some("pods" | "pods/status") => name == Some("web"),
        Some("events") => r.method == "POST" || r.method == "PATCH",
        Some(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_pod_gets_a_mirror_pod_that_comes_back_and_goes() {
    let Some(cluster) = start_cluster(&[]).await else {
        return;
    };
    cluster.node.write_manifest(
        "static.yaml",
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: static\n  namespace: default\nspec:\n  \
             containers:\n  - name: app\n    image: {IMAGE}\n    imagePullPolicy: IfNotPresent\n    \
             command: [\"sh\", \"-c\", \"{SERVE}\"]\n"
        ),
    );
    let mirror_name = format!("static-{NODE}");
    let is_running_mirror = |p: &Pod| {
        let annotations = p.metadata.annotations.clone().unwrap_or_default();
        annotations.contains_key("kubernetes.io/config.mirror") && phase(p) == "Running"
    };
    let mirror = cluster
        .wait_pod(&mirror_name, "a Running mirror pod", is_running_mirror)
        .await;
    let owner = &mirror.metadata.owner_references.clone().expect("owner")[0];
    assert_eq!((owner.kind.as_str(), owner.name.as_str()), ("Node", NODE));
    assert_eq!(
        mirror.spec.as_ref().and_then(|s| s.node_name.as_deref()),
        Some(NODE)
    );
    let static_uid = mirror
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("kubernetes.io/config.mirror"))
        .cloned();
    assert!(static_uid.is_some());

    // Deleted by someone, the mirror pod is recreated; the static pod keeps running.
    let before = cluster.node.containers(None).await;
    let first_uid = uid(&mirror);
    cluster.delete_pod(&mirror_name, Some(0)).await;
    let again = cluster
        .wait_pod(&mirror_name, "the mirror pod recreated", |p| {
            uid(p) != first_uid && is_running_mirror(p)
        })
        .await;
    assert_ne!(uid(&again), first_uid);
    let after = cluster.node.containers(None).await;
    let ids = |cs: &[kubelet_core::runtime::ContainerStatus]| {
        cs.iter().map(|c| c.id.clone()).collect::<BTreeSet<_>>()
    };
    assert_eq!(
        ids(&before),
        ids(&after),
        "the static pod was not restarted"
    );

    // The manifest goes: so do the static pod and its mirror.
    cluster.node.remove_manifest("static.yaml");
    cluster.wait_pod_gone(&mirror_name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_loop_reports_restart_count_and_back_off() {
    let Some(cluster) = start_cluster(&[]).await else {
        return;
    };
    cluster
        .create_pod(&api_pod(
            "crasher",
            "Always",
            1,
            &[("app", "echo bye; exit 3")],
        ))
        .await;
    let pod = cluster
        .wait_pod("crasher", "CrashLoopBackOff after restarts", |p| {
            container(p, "app").is_some_and(|c| {
                c.restart_count >= 1
                    && c.state
                        .as_ref()
                        .and_then(|s| s.waiting.as_ref())
                        .and_then(|w| w.reason.as_deref())
                        == Some("CrashLoopBackOff")
            })
        })
        .await;
    let app = container(&pod, "app").expect("app status");
    let last = app
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .expect("lastState.terminated");
    assert_eq!(last.exit_code, 3);
    assert_eq!(last.reason.as_deref(), Some("Error"));
    assert!(!app.ready);
    assert_eq!(phase(&pod), "Running");
    let back_off = cluster
        .events_about(&uid(&pod))
        .await
        .into_iter()
        .find(|e| e.reason.as_deref() == Some("BackOff"));
    assert!(back_off.is_some(), "a BackOff event");
    assert_one_status_per_container(&pod);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_server_outage_restarts_nothing_and_loses_no_status() {
    // An outage needs the fake's fault injection, with or without a real server around.
    let Some(cluster) = start_fake_cluster(&[]).await else {
        return;
    };
    let fake = cluster.fake().expect("the fake API server");
    // `job` finishes during the outage: its Completed state must reach the API server after.
    cluster
        .create_pod(&api_pod(
            "steady",
            "OnFailure",
            5,
            &[("app", SERVE), ("job", "sleep 20; exit 0")],
        ))
        .await;
    let running = cluster
        .wait_pod("steady", "Running", |p| {
            container(p, "app").is_some_and(|c| c.ready)
                && container(p, "job")
                    .is_some_and(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()))
        })
        .await;
    let pod_uid = uid(&running);
    let before = cluster.node.containers(Some(&pod_uid)).await;
    let sandboxes_before = cluster.node.sandboxes(Some(&pod_uid)).await;

    fake.start_outage();
    let outage = Instant::now();
    // A minute without the API server, polling the runtime: nothing may be stopped.
    while outage.elapsed() < Duration::from_secs(60) {
        let app = cluster
            .node
            .containers(Some(&pod_uid))
            .await
            .into_iter()
            .find(|c| c.metadata.name == "app")
            .expect("app container");
        assert_eq!(
            app.state,
            kubelet_core::runtime::ContainerState::Running,
            "app stopped during the outage"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    fake.end_outage();

    let after = cluster
        .wait_pod("steady", "job Completed reported after the outage", |p| {
            container(p, "job").is_some_and(|c| {
                c.state
                    .as_ref()
                    .and_then(|s| s.terminated.as_ref())
                    .is_some_and(|t| t.reason.as_deref() == Some("Completed"))
            })
        })
        .await;
    assert_eq!(container(&after, "app").map(|c| c.restart_count), Some(0));
    assert_eq!(container(&after, "job").map(|c| c.restart_count), Some(0));
    let app_id = |cs: &[kubelet_core::runtime::ContainerStatus]| {
        cs.iter()
            .find(|c| c.metadata.name == "app")
            .map(|c| c.id.clone())
    };
    let now = cluster.node.containers(Some(&pod_uid)).await;
    assert_eq!(app_id(&before), app_id(&now), "app container replaced");
    let sandbox_ids = |s: &[kubelet_core::runtime::PodSandboxStatus]| {
        s.iter().map(|s| s.id.clone()).collect::<BTreeSet<_>>()
    };
    assert_eq!(
        sandbox_ids(&sandboxes_before),
        sandbox_ids(&cluster.node.sandboxes(Some(&pod_uid)).await)
    );
    // The node is Ready again with a fresh heartbeat.
    cluster
        .wait_node("Ready after the outage", node_ready)
        .await;
}

/// A ConfigMap in `default`; one that exists already (a real cluster's kube-root-ca.crt) is
/// left as it is.
async fn ensure_configmap(cluster: &Cluster, name: &str, data: &[(&str, &str)]) {
    let configmaps: Api<ConfigMap> = Api::namespaced(cluster.kube.clone(), "default");
    let data: std::collections::BTreeMap<String, String> = data
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let object: ConfigMap = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "default"},
        "data": data,
    }))
    .expect("ConfigMap JSON");
    match configmaps.create(&PostParams::default(), &object).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(err) => panic!("create ConfigMap {name}: {err}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_account_config_map_and_secret_volumes_are_mounted() {
    let Some(cluster) = start_cluster(&[]).await else {
        return;
    };
    ensure_configmap(&cluster, "kube-root-ca.crt", &[("ca.crt", "a test CA")]).await;
    ensure_configmap(&cluster, "settings", &[("greeting", "hello")]).await;
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "creds", "namespace": "default"},
        "stringData": {"password": "s3cret"},
    }))
    .expect("Secret JSON");
    Api::<k8s_openapi::api::core::v1::Secret>::namespaced(cluster.kube.clone(), "default")
        .create(&PostParams::default(), &secret)
        .await
        .expect("create Secret");
    // The volume ServiceAccount admission adds to every pod, as it writes it, plus a
    // configMap and a secret volume; the container checks what it sees and exits 0 only if
    // all is there.
    let sa_dir = "/var/run/secrets/kubernetes.io/serviceaccount";
    let script = format!(
        "test -s {sa_dir}/token && test -s {sa_dir}/ca.crt && \
         test \"$(cat {sa_dir}/namespace)\" = default && \
         test \"$(cat /etc/settings/greeting)\" = hello && \
         test \"$(cat /etc/creds/password)\" = s3cret && echo all-there"
    );
    let mut pod = api_pod("reader", "Never", 1, &[("app", &script)]);
    let spec = serde_json::json!({
        "serviceAccountName": "default",
        "volumes": [
            {"name": "kube-api-access-test", "projected": {"defaultMode": 420, "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace",
                    "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}
            ]}},
            {"name": "settings", "configMap": {"name": "settings"}},
            {"name": "creds", "secret": {"secretName": "creds", "defaultMode": 256}}
        ],
    });
    let extra: k8s_openapi::api::core::v1::PodSpec =
        serde_json::from_value(spec).expect("pod spec JSON");
    let pod_spec = pod.spec.as_mut().expect("spec");
    pod_spec.service_account_name = extra.service_account_name;
    pod_spec.volumes = extra.volumes;
    pod_spec.containers[0].volume_mounts = Some(
        serde_json::from_value(serde_json::json!([
            {"name": "kube-api-access-test", "mountPath": sa_dir, "readOnly": true},
            {"name": "settings", "mountPath": "/etc/settings"},
            {"name": "creds", "mountPath": "/etc/creds", "readOnly": true}
        ]))
        .expect("mounts JSON"),
    );
    cluster.create_pod(&pod).await;
    let done = cluster
        .wait_pod("reader", "finished", |p| {
            matches!(phase(p), "Succeeded" | "Failed")
        })
        .await;
    let app = container(&done, "app").expect("app status");
    let exit = app
        .state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .map(|t| t.exit_code);
    assert_eq!(
        (phase(&done), exit),
        ("Succeeded", Some(0)),
        "the container did not see its volumes: {app:?}"
    );
    // The API server holds the state the kubelet sent, not a merge with the earlier one.
    let state = app.state.as_ref().expect("state");
    assert!(
        state.running.is_none() && state.waiting.is_none(),
        "{state:?}"
    );
    assert_one_status_per_container(&done);
}

/// A pod with an exec readiness probe on `/tmp/ready`, bound to the test node.
fn probed_pod(name: &str) -> Pod {
    let mut pod = api_pod(
        name,
        "Always",
        2,
        &[("app", &format!("touch /tmp/ready; {SERVE}"))],
    );
    let probe = serde_json::json!({
        "exec": {"command": ["test", "-f", "/tmp/ready"]},
        "periodSeconds": 1, "failureThreshold": 1, "successThreshold": 1,
    });
    pod.spec.as_mut().expect("spec").containers[0].readiness_probe =
        Some(serde_json::from_value(probe).expect("probe JSON"));
    pod
}

fn ready(pod: &Pod) -> Option<&str> {
    condition(pod, "Ready").map(|c| c.status.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_probe_and_a_killed_container_restarts_with_its_last_state() {
    let Some(cluster) = start_cluster(&[]).await else {
        return;
    };
    cluster.create_pod(&probed_pod("probed")).await;
    let up = cluster
        .wait_pod("probed", "Running and Ready", |p| {
            phase(p) == "Running" && ready(p) == Some("True")
        })
        .await;
    let first = container(&up, "app").expect("app status");
    let id = runtime_id(first).expect("container id").to_string();

    // The probe fails: Ready goes False on the server, the container keeps running.
    assert_eq!(cluster.node.exec(&id, "rm /tmp/ready").await, 0);
    let unready = cluster
        .wait_pod("probed", "Ready False", |p| ready(p) == Some("False"))
        .await;
    let app = container(&unready, "app").expect("app status");
    assert!(!app.ready && app.restart_count == 0, "{app:?}");
    assert_eq!(
        condition(&unready, "ContainersReady").map(|c| c.status.as_str()),
        Some("False")
    );
    assert_eq!(cluster.node.exec(&id, "touch /tmp/ready").await, 0);
    cluster
        .wait_pod("probed", "Ready again", |p| ready(p) == Some("True"))
        .await;

    // Killed in containerd behind the kubelet's back: restarted, counted, last state kept.
    cluster.node.kill_container(&id).await;
    let restarted = cluster
        .wait_pod("probed", "restarted and Ready", |p| {
            container(p, "app").is_some_and(|c| {
                c.restart_count == 1
                    && c.ready
                    && c.state.as_ref().is_some_and(|s| s.running.is_some())
            })
        })
        .await;
    let app = container(&restarted, "app").expect("app status");
    let last = app
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .expect("lastState.terminated");
    assert_eq!(last.exit_code, 137, "{last:?}");
    assert_eq!(last.container_id.as_deref(), first.container_id.as_deref());
    assert_ne!(app.container_id, first.container_id);
    assert_eq!(phase(&restarted), "Running");
    let status = restarted.status.as_ref().expect("status");
    assert_eq!(status.pod_ips.as_ref().map(Vec::len), Some(1), "{status:?}");
    assert_eq!(
        status
            .pod_ips
            .as_ref()
            .and_then(|ips| ips.first())
            .map(|i| i.ip.as_str()),
        status.pod_ip.as_deref()
    );

    cluster.delete_pod("probed", None).await;
    cluster.wait_pod_gone("probed").await;
}

/// A cluster on the envtest API server whose kubelet the API server can reach (`None`, said,
/// on any other server: the fake does not proxy to kubelets): the kubelet trusts the cluster
/// CA for client certificates and listens on every address, since the API server's node
/// proxy refuses loopback addresses and reaches the node on its InternalIP (detected from the
/// default route). The directory holds the CA file.
async fn start_reachable_cluster() -> Option<(Cluster, tempfile::TempDir)> {
    let server = TestApiServer::from_env()
        .await
        .expect("API server for the test");
    let ca_dir = tempfile::tempdir().expect("temp dir");
    let ca_file = ca_dir.path().join("client-ca.crt");
    match &server {
        TestApiServer::Envtest(env) => std::fs::write(&ca_file, env.ca_pem()).expect("write CA"),
        _ => {
            eprintln!("SKIPPED: needs the envtest API server (KUBELET_TEST_ASSETS)");
            return None;
        }
    }
    let client_ca = format!("--client-ca-file={}", ca_file.display());
    let cluster = start_cluster_on(server, &[&client_ca, "--address=0.0.0.0"]).await?;
    Some((cluster, ca_dir))
}

/// The API server reaches the kubelet's HTTPS server with its own client certificate
/// (`--kubelet-client-certificate`, `O=system:masters`), as `kubectl logs` and the node proxy
/// do: the kubelet trusts the cluster CA (`--client-ca-file`) and asks the API server
/// (SubjectAccessReview) whether that user may; the API server connects to the node's
/// InternalIP at `daemonEndpoints.kubeletEndpoint.Port`. Needs the envtest API server (the
/// fake one does not proxy to kubelets).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_server_reaches_the_kubelet_for_node_proxy_and_pod_logs() {
    let Some((cluster, _ca_dir)) = start_reachable_cluster().await else {
        return;
    };
    let node = cluster.wait_node("Ready", node_ready).await;
    let port = node
        .status
        .and_then(|s| s.daemon_endpoints)
        .and_then(|d| d.kubelet_endpoint)
        .map(|e| e.port);
    assert_eq!(port, Some(i32::from(cluster.node.server_port)));

    // GET /api/v1/nodes/<node>/proxy/healthz: the API server to the kubelet's /healthz.
    let request = http::Request::get(format!("/api/v1/nodes/{NODE}/proxy/healthz"))
        .body(Vec::new())
        .expect("request");
    let body = cluster
        .kube
        .request_text(request)
        .await
        .expect("node proxy to /healthz");
    assert_eq!(body, "ok");

    // kubectl logs: the container's output through the API server and the kubelet.
    let script = "echo first line; echo \"from $HOSTNAME\"; trap 'exit 0' TERM; sleep 3600 & wait";
    cluster
        .create_pod(&api_pod("logger", "Always", 5, &[("app", script)]))
        .await;
    cluster.mark_scheduled("logger").await;
    cluster
        .wait_pod("logger", "Running", |p| phase(p) == "Running")
        .await;
    let deadline = Instant::now() + DEADLINE;
    let logs = loop {
        match cluster.pods().logs("logger", &Default::default()).await {
            Ok(text) if text.contains("from logger") => break text,
            result => {
                assert!(Instant::now() < deadline, "pod logs: {result:?}");
                tokio::time::sleep(POLL).await;
            }
        }
    };
    assert_eq!(logs, "first line\nfrom logger\n");
    let tail = cluster
        .pods()
        .logs(
            "logger",
            &kube::api::LogParams {
                tail_lines: Some(1),
                timestamps: true,
                ..Default::default()
            },
        )
        .await
        .expect("tail");
    assert!(
        tail.ends_with(" from logger\n") && tail.lines().count() == 1,
        "{tail:?}"
    );

    // kubectl logs -f: a line the container writes later arrives on the open stream.
    let follow = kube::api::LogParams {
        follow: true,
        ..Default::default()
    };
    let mut lines = futures::AsyncBufReadExt::lines(
        cluster
            .pods()
            .log_stream("logger", &follow)
            .await
            .expect("follow the log"),
    );
    let pod = cluster.get_pod("logger").await.expect("the pod");
    let id = runtime_id(container(&pod, "app").expect("app status"))
        .expect("container id")
        .to_string();
    assert_eq!(cluster.node.exec(&id, "echo later > /proc/1/fd/1").await, 0);
    let deadline = Instant::now() + DEADLINE;
    loop {
        let line = tokio::time::timeout(DEADLINE, futures::StreamExt::next(&mut lines))
            .await
            .expect("a followed line in time")
            .expect("the stream stays open")
            .expect("a line");
        if line == "later" {
            break;
        }
        assert!(Instant::now() < deadline, "no 'later' in the followed log");
    }
    drop(lines);

    // kubectl logs --previous after the container was killed and restarted.
    cluster.node.kill_container(&id).await;
    cluster
        .wait_pod("logger", "restarted", |p| {
            container(p, "app").is_some_and(|c| c.restart_count == 1 && c.ready)
        })
        .await;
    let previous = kube::api::LogParams {
        previous: true,
        ..Default::default()
    };
    let before = cluster
        .pods()
        .logs("logger", &previous)
        .await
        .expect("previous logs");
    assert_eq!(before, "first line\nfrom logger\nlater\n");
    cluster.delete_pod("logger", Some(0)).await;
    cluster.wait_pod_gone("logger").await;
}

/// `kubectl exec` and `kubectl port-forward` as kube-rs does them (WebSocket through the API
/// server, which carries the upgraded connection to the kubelet's `/exec` and
/// `/portForward`; the kubelet proxies it to containerd's streaming server).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_and_port_forward_through_the_api_server() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let Some((cluster, _ca_dir)) = start_reachable_cluster().await else {
        return;
    };
    let web = "mkdir -p /tmp/www && echo through-the-api-server > /tmp/www/index.html && \
               httpd -p 8080 -h /tmp/www; trap 'exit 0' TERM; sleep 3600 & wait";
    cluster
        .create_pod(&api_pod("shell", "Always", 2, &[("app", web)]))
        .await;
    cluster.mark_scheduled("shell").await;
    cluster
        .wait_pod("shell", "Running", |p| phase(p) == "Running")
        .await;

    // exec: stdout, stdin, and the exit status.
    let params = kube::api::AttachParams::default()
        .stdin(true)
        .stdout(true)
        .stderr(true);
    let mut process = cluster
        .pods()
        .exec(
            "shell",
            ["sh", "-c", "read x; echo got:$x; echo oops >&2; exit 4"],
            &params,
        )
        .await
        .expect("exec through the API server");
    let mut stdin = process.stdin().expect("stdin");
    stdin.write_all(b"hello\n").await.expect("write stdin");
    let mut stdout = process.stdout().expect("stdout");
    let mut out = String::new();
    stdout.read_to_string(&mut out).await.expect("read stdout");
    assert_eq!(out, "got:hello\n");
    let status = process
        .take_status()
        .expect("status channel")
        .await
        .expect("a status");
    assert_eq!(status.status.as_deref(), Some("Failure"), "{status:?}");
    assert_eq!(
        status.reason.as_deref(),
        Some("NonZeroExitCode"),
        "{status:?}"
    );
    let causes = status.details.and_then(|d| d.causes).unwrap_or_default();
    assert_eq!(causes[0].message.as_deref(), Some("4"), "{causes:?}");
    process.join().await.expect("exec session ends");

    // port-forward: the pod's web server on its port.
    let mut forwarder = cluster
        .pods()
        .portforward("shell", &[8080])
        .await
        .expect("port-forward through the API server");
    let mut conn = forwarder.take_stream(8080).expect("stream for 8080");
    conn.write_all(b"GET /index.html HTTP/1.0\r\n\r\n")
        .await
        .expect("send request");
    let mut page = String::new();
    conn.read_to_string(&mut page).await.expect("read answer");
    assert!(
        page.contains(" 200 OK") && page.contains("through-the-api-server"),
        "{page}"
    );
    drop(conn);
    forwarder.abort();

    cluster.delete_pod("shell", Some(0)).await;
    cluster.wait_pod_gone("shell").await;
}
