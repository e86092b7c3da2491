//! A cluster for the daemon's end-to-end tests: an API server (`TestApiServer::from_env`: the
//! real kube-apiserver of the envtest harness with `KUBELET_TEST_ASSETS`, a real cluster, or
//! the fake one), a kube-rs admin client, and a [`TestNode`] whose kubelet joins it with a
//! node client certificate; plus helpers to make and watch pods through the API.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Node, Pod, PodCondition};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kubelet_core::testing::apiserver::{FakeApiServer, TestApiServer};

use super::node::{NODE, TestNode};

pub const IMAGE: &str = kubelet_cri::testing::BUSYBOX_IMAGE;
/// Deadline for anything the kubelet does on its own schedule.
pub const DEADLINE: Duration = Duration::from_secs(90);
/// How often the tests look at the API server.
pub const POLL: Duration = Duration::from_millis(250);
/// A script that idles until SIGTERM, on which it exits 0 at once.
pub const SERVE: &str = "trap 'exit 0' TERM; sleep 3600 & wait";

/// The API server, a kube-rs client of the test's own, the kubeconfig file handed to the
/// kubelet, and a node whose kubelet uses it.
pub struct Cluster {
    // Field order is drop order: the kubelet first, then the server.
    /// The node (kubelet and containerd).
    pub node: TestNode,
    /// An admin client of the API server.
    pub kube: kube::Client,
    /// The API server.
    pub server: TestApiServer,
    _kubeconfig_dir: tempfile::TempDir,
}

pub async fn start_cluster(extra: &[&str]) -> Option<Cluster> {
    let server = TestApiServer::from_env()
        .await
        .expect("API server for the test");
    start_cluster_on(server, extra).await
}

/// A cluster on the fake API server whatever the environment says: for the tests that need
/// its fault injection.
pub async fn start_fake_cluster(extra: &[&str]) -> Option<Cluster> {
    let fake = FakeApiServer::start_tls().await.expect("fake API server");
    start_cluster_on(TestApiServer::Fake(fake), extra).await
}

pub async fn start_cluster_on(server: TestApiServer, extra: &[&str]) -> Option<Cluster> {
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
    pub fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.kube.clone(), "default")
    }

    pub fn fake(&self) -> Option<&FakeApiServer> {
        self.server.fake()
    }

    pub async fn create_pod(&self, pod: &Pod) -> Pod {
        self.pods()
            .create(&PostParams::default(), pod)
            .await
            .expect("create pod")
    }

    /// Poll `get` until `pred` holds for what it returns; panics after [`DEADLINE`].
    pub async fn wait<K: std::fmt::Debug>(
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
    pub async fn get_pod(&self, name: &str) -> Option<Pod> {
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

    pub async fn wait_pod(&self, name: &str, what: &str, pred: impl Fn(&Pod) -> bool) -> Pod {
        self.wait(
            &format!("pod {name}: {what}"),
            async || self.get_pod(name).await,
            |p| p.is_some_and(&pred),
        )
        .await
        .expect("the pod exists")
    }

    pub async fn wait_pod_gone(&self, name: &str) {
        self.wait(
            &format!("pod {name} to be gone"),
            async || self.get_pod(name).await,
            |p| p.is_none(),
        )
        .await;
    }

    pub async fn wait_node(&self, what: &str, pred: impl Fn(&Node) -> bool) -> Node {
        let nodes: Api<Node> = Api::all(self.kube.clone());
        self.wait(
            &format!("node: {what}"),
            async || nodes.get_opt(NODE).await.ok().flatten(),
            |n| n.is_some_and(&pred),
        )
        .await
        .expect("the Node exists")
    }

    pub async fn wait_lease(&self, what: &str, pred: impl Fn(&Lease) -> bool) -> Lease {
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
    pub async fn mark_scheduled(&self, name: &str) {
        let patch = serde_json::json!({"status": {"conditions": [
            {"type": "PodScheduled", "status": "True"}
        ]}});
        self.pods()
            .patch_status(name, &PatchParams::default(), &Patch::Strategic(patch))
            .await
            .expect("set PodScheduled");
    }

    pub async fn delete_pod(&self, name: &str, grace: Option<u32>) {
        let params = DeleteParams {
            grace_period_seconds: grace,
            ..DeleteParams::default()
        };
        let _ = self.pods().delete(name, &params).await.expect("delete pod");
    }

    pub async fn events_about(&self, pod_uid: &str) -> Vec<Event> {
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
pub fn api_pod(name: &str, restart_policy: &str, grace: i64, containers: &[(&str, &str)]) -> Pod {
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

pub fn condition<'a>(pod: &'a Pod, type_: &str) -> Option<&'a PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

/// The server holds one container status per container of the spec, as the reference
/// kubelet writes them: nothing for a container that does not exist.
pub fn assert_one_status_per_container(pod: &Pod) {
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

pub fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// A ConfigMap in `default`; one that exists already (a real cluster's kube-root-ca.crt) is
/// left as it is.
pub async fn ensure_configmap(cluster: &Cluster, name: &str, data: &[(&str, &str)]) {
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

/// A cluster on the envtest API server whose kubelet the API server can reach (`None`, said,
/// on any other server: the fake does not proxy to kubelets): the kubelet trusts the cluster
/// CA for client certificates and listens on every address, since the API server's node
/// proxy refuses loopback addresses and reaches the node on its InternalIP (detected from the
/// default route). The directory holds the CA file.
pub async fn start_reachable_cluster() -> Option<(Cluster, tempfile::TempDir)> {
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
