//! End-to-end: the daemon's CSI wiring. The `kubelet` binary runs in cluster mode on a real
//! containerd against the API server of `TestApiServer::from_env` (the envtest kube-apiserver
//! with `KUBELET_TEST_ASSETS`, judging the kubelet's writes with the Node authorizer and
//! NodeRestriction; else the fake one); the example hostpath CSI driver registers through a
//! registrar socket in the daemon's `<root-dir>/plugins_registry/`, as node-driver-registrar
//! does, and the node's CSINode, node ID annotation and topology label follow it.
//! Skipped when no containerd can run here (unless `KUBELET_TEST_REQUIRE_CONTAINERD=1`).

mod support {
    // Shared by several test binaries; each uses part of it.
    #[allow(dead_code)]
    pub mod cluster;
    #[allow(dead_code)]
    pub mod node;
}

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::storage::v1::CSINode;
use kube::api::Api;
use kubelet_csi::testing::{HostPathDriver, HostPathOptions, Registrar};
use support::cluster::start_cluster;
use support::node::{NODE, TestNode};

const DRIVER: &str = "registration.csi.kubelet.test";
const TOPOLOGY_KEY: &str = "topology.registration.csi.kubelet.test/node";
const NODE_ID_ANNOTATION: &str = "csi.volume.kubernetes.io/nodeid";

/// The kubelet's `--root-dir` (beside the pod logs directory in the test node's directory).
fn root_dir(node: &TestNode) -> PathBuf {
    node.pod_logs_dir()
        .parent()
        .map(|p| p.join("root"))
        .expect("test node directory")
}

fn node_ids(node: &Node) -> BTreeMap<String, String> {
    node.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(NODE_ID_ANNOTATION))
        .map(|v| serde_json::from_str(v).expect("annotation is a JSON map"))
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_driver_registering_under_the_root_dir_shows_in_csinode() {
    let Some(cluster) = start_cluster(&[]).await else {
        return;
    };
    let csinodes = Api::<CSINode>::all(cluster.kube.clone());
    let nodes = Api::<Node>::all(cluster.kube.clone());

    // At start the kubelet makes the node's CSINode, owned by its Node.
    let csinode = cluster
        .wait(
            "CSINode created",
            async || csinodes.get_opt(NODE).await.ok().flatten(),
            |c| c.is_some(),
        )
        .await
        .expect("CSINode");
    let owner = &csinode
        .metadata
        .owner_references
        .clone()
        .unwrap_or_default()[0];
    assert_eq!((owner.kind.as_str(), owner.name.as_str()), ("Node", NODE));
    assert!(csinode.spec.drivers.is_empty());

    // The driver and its registrar, where a DaemonSet would put them.
    let root = root_dir(&cluster.node);
    let state = tempfile::tempdir().expect("driver state dir");
    let mut options = HostPathOptions::new(DRIVER, "e2e-node-id", state.path().join("volumes"));
    options.max_volumes_per_node = 12;
    options.topology = BTreeMap::from([(TOPOLOGY_KEY.to_string(), NODE.to_string())]);
    let driver = HostPathDriver::new(options);
    let server = driver
        .serve(&root.join("plugins").join(DRIVER).join("csi.sock"))
        .await
        .expect("serve driver");
    let registrar = Registrar::csi(DRIVER, server.socket())
        .serve(
            &root
                .join("plugins_registry")
                .join(format!("{DRIVER}-reg.sock")),
        )
        .await
        .expect("serve registrar");
    let status = tokio::time::timeout(support::cluster::DEADLINE, registrar.first_status())
        .await
        .expect("the kubelet answers the registrar");
    assert!(status.plugin_registered, "{status:?}");

    let csinode = cluster
        .wait(
            "the driver in CSINode",
            async || csinodes.get_opt(NODE).await.ok().flatten(),
            |c| c.is_some_and(|c| c.spec.drivers.iter().any(|d| d.name == DRIVER)),
        )
        .await
        .expect("CSINode");
    let entry = &csinode.spec.drivers[0];
    assert_eq!(entry.node_id, "e2e-node-id");
    assert_eq!(entry.topology_keys, Some(vec![TOPOLOGY_KEY.to_string()]));
    assert_eq!(entry.allocatable.as_ref().and_then(|a| a.count), Some(12));
    let node = cluster
        .wait(
            "node ID annotation and topology label",
            async || nodes.get_opt(NODE).await.ok().flatten(),
            |n| {
                n.is_some_and(|n| {
                    node_ids(n).contains_key(DRIVER)
                        && n.metadata
                            .labels
                            .as_ref()
                            .is_some_and(|l| l.contains_key(TOPOLOGY_KEY))
                })
            },
        )
        .await
        .expect("node");
    assert_eq!(
        node_ids(&node).get(DRIVER).map(String::as_str),
        Some("e2e-node-id")
    );

    // The registrar goes (the driver's DaemonSet pod is deleted): the entry and the node ID
    // go with it.
    registrar.stop().await;
    cluster
        .wait(
            "the driver gone from CSINode",
            async || csinodes.get_opt(NODE).await.ok().flatten(),
            |c| c.is_some_and(|c| c.spec.drivers.is_empty()),
        )
        .await;
    cluster
        .wait(
            "the node ID annotation gone",
            async || nodes.get_opt(NODE).await.ok().flatten(),
            |n| n.is_some_and(|n| node_ids(n).is_empty()),
        )
        .await;
    server.stop().await;
}
