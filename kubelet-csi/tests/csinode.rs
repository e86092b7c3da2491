//! The CSINode updater end to end: the example driver registers through its registrar socket
//! in a temporary `plugins_registry/`, and the node's `CSINode`, node ID annotation and
//! topology labels follow, written with the node's own client certificate. Runs against the
//! fake API server always, and against a real kube-apiserver (Node authorizer and
//! NodeRestriction judging the writes) when `KUBELET_TEST_ASSETS` is set.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::storage::v1::CSINode;
use kube::api::{Api, PostParams};
use kubelet_core::testing::apiserver::FakeApiServer;
use kubelet_core::testing::envtest::{self, ASSETS_ENV, Envtest, REQUIRE_ENV};
use kubelet_csi::csinode::{MIGRATED_PLUGINS_ANNOTATION, NODE_ID_ANNOTATION};
use kubelet_csi::testing::{
    HostPathDriver, HostPathOptions, Registrar, RegistrarHandle, ServerHandle,
};
use kubelet_csi::{
    CsiNodeUpdater, CsiNodeUpdaterOptions, DriverRegistry, PluginWatcher, PluginWatcherHandle,
    PluginWatcherOptions,
};
use serde_json::json;

const NODE: &str = "csi-node-1";
const TOPOLOGY_KEY: &str = "topology.hostpath.csi.kubelet.test/node";
/// Long enough for a real server under a loaded machine.
const DEADLINE: Duration = Duration::from_secs(60);

async fn client(kubeconfig: &str) -> kube::Client {
    let file = kube::config::Kubeconfig::from_yaml(kubeconfig).expect("kubeconfig YAML");
    let config = kube::Config::from_custom_kubeconfig(file, &Default::default())
        .await
        .expect("client config");
    kube::Client::try_from(config).expect("kube client")
}

/// The API server under test: an admin client and the node's.
struct Target {
    name: &'static str,
    admin: kube::Client,
    node: kube::Client,
}

async fn fake_target(fake: &FakeApiServer) -> Target {
    let node_conf = fake
        .kubeconfig_with_client_cert(&format!("system:node:{NODE}"), &["system:nodes"])
        .expect("node kubeconfig");
    Target {
        name: "fake",
        admin: client(&fake.kubeconfig()).await,
        node: client(&node_conf).await,
    }
}

async fn real() -> Option<Envtest> {
    match Envtest::from_env().await {
        Ok(Some(env)) => Some(env),
        Ok(None) if envtest::required() => panic!("{REQUIRE_ENV}=1 but {ASSETS_ENV} is not set"),
        Ok(None) => {
            eprintln!("{ASSETS_ENV} not set: the updater runs against the fake API server only");
            None
        }
        Err(e) => panic!("envtest: {e}"),
    }
}

async fn real_target(env: &Envtest) -> Target {
    Target {
        name: "kube-apiserver",
        admin: client(&env.kubeconfig()).await,
        node: client(&env.node_kubeconfig(NODE).expect("node kubeconfig")).await,
    }
}

/// Poll `check` (an API read) until it gives `Some`, failing after [`DEADLINE`].
async fn eventually<T, F, Fut>(target: &Target, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}: timed out waiting for {what}",
            target.name
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn csinode(t: &Target) -> Option<CSINode> {
    Api::<CSINode>::all(t.admin.clone())
        .get_opt(NODE)
        .await
        .unwrap_or_else(|e| panic!("{}: get csinode: {e}", t.name))
}

async fn node(t: &Target) -> Node {
    Api::<Node>::all(t.admin.clone())
        .get(NODE)
        .await
        .unwrap_or_else(|e| panic!("{}: get node: {e}", t.name))
}

fn node_ids(node: &Node) -> Option<BTreeMap<String, String>> {
    let value = node
        .metadata
        .annotations
        .as_ref()?
        .get(NODE_ID_ANNOTATION)?;
    Some(serde_json::from_str(value).expect("annotation is a JSON map"))
}

fn label<'a>(node: &'a Node, key: &str) -> Option<&'a str> {
    node.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

fn watch(root: &Path, registry: &DriverRegistry) -> PluginWatcherHandle {
    let mut options = PluginWatcherOptions::for_root_dir(root);
    options.resync_interval = Duration::from_millis(200);
    options.initial_retry_delay = Duration::from_millis(100);
    options.max_retry_delay = Duration::from_millis(400);
    PluginWatcher::new(options, registry.clone())
        .spawn()
        .expect("start watcher")
}

fn updater(t: &Target) -> CsiNodeUpdater {
    CsiNodeUpdater::new(t.node.clone(), NODE.to_string()).with_options(CsiNodeUpdaterOptions {
        initial_retry_delay: Duration::from_millis(50),
        max_retry_delay: Duration::from_millis(500),
        conflict_retries: 5,
    })
}

/// A driver with `node_id`, an optional volume limit and topology, served with its
/// registrar under `root`.
async fn start_driver(
    root: &Path,
    name: &str,
    node_id: &str,
    max_volumes: i64,
    topology: &[(&str, &str)],
) -> (ServerHandle, RegistrarHandle) {
    let mut options = HostPathOptions::new(name, node_id, root.join("state").join(name));
    options.max_volumes_per_node = max_volumes;
    options.topology = topology
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let driver = HostPathDriver::new(options);
    let server = driver
        .serve(&root.join("plugins").join(name).join("csi.sock"))
        .await
        .expect("serve driver");
    let registrar = Registrar::csi(name, server.socket())
        .serve(
            &root
                .join("plugins_registry")
                .join(format!("{name}-reg.sock")),
        )
        .await
        .expect("serve registrar");
    (server, registrar)
}

async fn create_node(t: &Target) -> Node {
    let node: Node = serde_json::from_value(json!({"metadata": {"name": NODE}})).expect("node");
    Api::<Node>::all(t.admin.clone())
        .create(&PostParams::default(), &node)
        .await
        .unwrap_or_else(|e| panic!("{}: create node: {e}", t.name))
}

/// The whole life of two drivers on one node, as the reference's node-info manager keeps it.
async fn drivers_come_and_go(t: &Target) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let the_node = create_node(t).await;
    let registry = DriverRegistry::new();
    let watcher = watch(root, &registry);
    let task = updater(t).spawn(registry.clone());

    // At start, with no driver yet: the CSINode exists, owned by the Node.
    let created = eventually(t, "CSINode created", || csinode(t)).await;
    let owners = created
        .metadata
        .owner_references
        .clone()
        .unwrap_or_default();
    assert_eq!(owners.len(), 1, "{}: {owners:?}", t.name);
    assert_eq!(
        (
            owners[0].api_version.as_str(),
            owners[0].kind.as_str(),
            owners[0].name.as_str()
        ),
        ("v1", "Node", NODE),
        "{}",
        t.name
    );
    assert_eq!(Some(&owners[0].uid), the_node.metadata.uid.as_ref());
    assert_eq!(owners[0].controller, None);
    assert!(created.spec.drivers.is_empty(), "{}", t.name);
    assert_eq!(
        created
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(MIGRATED_PLUGINS_ANNOTATION))
            .map(String::as_str),
        Some(
            "kubernetes.io/aws-ebs,kubernetes.io/azure-disk,kubernetes.io/azure-file,kubernetes.io/cinder,kubernetes.io/gce-pd,kubernetes.io/vsphere-volume"
        ),
        "{}",
        t.name
    );

    // The first driver registers: its entry, node ID and topology label appear.
    let first = "hostpath.csi.kubelet.test";
    let (first_server, first_registrar) =
        start_driver(root, first, "first-id", 7, &[(TOPOLOGY_KEY, NODE)]).await;
    let entry = eventually(t, "first driver's entry", || async {
        csinode(t)
            .await?
            .spec
            .drivers
            .into_iter()
            .find(|d| d.name == first)
    })
    .await;
    assert_eq!(entry.node_id, "first-id", "{}", t.name);
    assert_eq!(
        entry.topology_keys,
        Some(vec![TOPOLOGY_KEY.to_string()]),
        "{}",
        t.name
    );
    assert_eq!(
        entry.allocatable.and_then(|a| a.count),
        Some(7),
        "{}",
        t.name
    );
    let n = eventually(t, "node ID annotation", || async {
        let n = node(t).await;
        node_ids(&n).is_some().then_some(n)
    })
    .await;
    assert_eq!(
        node_ids(&n),
        Some(BTreeMap::from([(
            first.to_string(),
            "first-id".to_string()
        )])),
        "{}",
        t.name
    );
    assert_eq!(label(&n, TOPOLOGY_KEY), Some(NODE), "{}", t.name);

    // A second driver, without topology or volume limit, comes and goes.
    let second = "second.csi.kubelet.test";
    let (second_server, second_registrar) = start_driver(root, second, "second-id", 0, &[]).await;
    let entry = eventually(t, "second driver's entry", || async {
        csinode(t)
            .await?
            .spec
            .drivers
            .into_iter()
            .find(|d| d.name == second)
    })
    .await;
    assert_eq!(
        (
            entry.node_id.as_str(),
            entry.topology_keys,
            entry.allocatable
        ),
        ("second-id", None, None),
        "{}",
        t.name
    );
    eventually(t, "both node IDs", || async {
        (node_ids(&node(t).await)?.len() == 2).then_some(())
    })
    .await;
    assert_eq!(
        node_ids(&node(t).await),
        Some(BTreeMap::from([
            (first.to_string(), "first-id".to_string()),
            (second.to_string(), "second-id".to_string()),
        ])),
        "{}",
        t.name
    );

    second_registrar.stop().await;
    eventually(t, "second driver's entry removed", || async {
        let c = csinode(t).await?;
        (!c.spec.drivers.iter().any(|d| d.name == second)).then_some(())
    })
    .await;
    eventually(t, "second node ID removed", || async {
        (node_ids(&node(t).await)?.len() == 1).then_some(())
    })
    .await;
    // The first driver is left alone.
    let c = csinode(t).await.expect("csinode");
    assert_eq!(c.spec.drivers.len(), 1, "{}: {:?}", t.name, c.spec.drivers);
    assert_eq!(c.spec.drivers[0].name, first);
    assert_eq!(c.spec.drivers[0].node_id, "first-id");
    let n = node(t).await;
    assert_eq!(
        node_ids(&n),
        Some(BTreeMap::from([(
            first.to_string(),
            "first-id".to_string()
        )]))
    );
    assert_eq!(label(&n, TOPOLOGY_KEY), Some(NODE));

    // The first driver goes too: no entry, no annotation. Its topology label stays, as the
    // reference leaves it.
    first_registrar.stop().await;
    eventually(t, "all entries removed", || async {
        csinode(t).await?.spec.drivers.is_empty().then_some(())
    })
    .await;
    let n = eventually(t, "annotation removed", || async {
        let n = node(t).await;
        node_ids(&n).is_none().then_some(n)
    })
    .await;
    assert_eq!(label(&n, TOPOLOGY_KEY), Some(NODE), "{}", t.name);

    // A kubelet restart: an existing CSINode is kept with the entries of drivers that have
    // not registered (again), and only its annotation is brought up to date.
    task.abort();
    let _ = task.await;
    let api = Api::<CSINode>::all(t.admin.clone());
    let mut stale = csinode(t).await.expect("csinode");
    stale.spec.drivers.push(
        serde_json::from_value(json!({"name": "stale.csi.kubelet.test", "nodeID": "old"}))
            .expect("entry"),
    );
    stale.metadata.annotations = None;
    api.replace(NODE, &PostParams::default(), &stale)
        .await
        .unwrap_or_else(|e| panic!("{}: put stale entry: {e}", t.name));
    let restarted = updater(t).spawn(registry.clone());
    let c = eventually(t, "annotation restored", || async {
        let c = csinode(t).await?;
        c.metadata
            .annotations
            .as_ref()?
            .get(MIGRATED_PLUGINS_ANNOTATION)?;
        Some(c)
    })
    .await;
    let names: Vec<&str> = c.spec.drivers.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["stale.csi.kubelet.test"], "{}", t.name);

    restarted.abort();
    watcher.stop().await;
    first_server.stop().await;
    second_server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csinode_follows_the_drivers_on_the_fake_api_server() {
    support::init_tracing();
    let fake = FakeApiServer::start_tls().await.expect("fake API server");
    let t = fake_target(&fake).await;
    drivers_come_and_go(&t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csinode_follows_the_drivers_on_kube_apiserver() {
    support::init_tracing();
    let Some(env) = real().await else {
        return;
    };
    let t = real_target(&env).await;
    drivers_come_and_go(&t).await;
}

/// A driver that registers again with another node ID replaces its entry, although
/// kube-apiserver refuses to change an entry in place (fake and real server alike).
async fn a_changed_node_id_replaces_the_entry(t: &Target) {
    create_node(t).await;
    let registry = DriverRegistry::new();
    let task = updater(t).spawn(registry.clone());
    eventually(t, "CSINode created", || csinode(t)).await;
    let name = "moving.csi.kubelet.test";
    let mut driver = kubelet_csi::RegisteredDriver {
        name: name.to_string(),
        endpoint: "/nonexistent.sock".to_string(),
        registration_socket: "/nonexistent-reg.sock".into(),
        version: kubelet_csi::CsiVersion {
            major: 1,
            minor: 0,
            patch: 0,
        },
        node: kubelet_csi::NodeInfo {
            node_id: "before".to_string(),
            max_volumes_per_node: Some(3),
            topology: BTreeMap::new(),
        },
    };
    registry.insert(driver.clone());
    eventually(t, "first entry", || async {
        let c = csinode(t).await?;
        c.spec
            .drivers
            .iter()
            .any(|d| d.node_id == "before")
            .then_some(())
    })
    .await;
    driver.node.node_id = "after".to_string();
    driver.node.max_volumes_per_node = Some(4);
    registry.insert(driver);
    let c = eventually(t, "replaced entry", || async {
        let c = csinode(t).await?;
        c.spec
            .drivers
            .iter()
            .any(|d| d.node_id == "after")
            .then_some(c)
    })
    .await;
    assert_eq!(c.spec.drivers.len(), 1, "{}", t.name);
    assert_eq!(
        c.spec.drivers[0].allocatable.as_ref().and_then(|a| a.count),
        Some(4)
    );
    eventually(t, "annotation updated", || async {
        (node_ids(&node(t).await)?.get(name)? == "after").then_some(())
    })
    .await;
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_node_id_replaces_the_entry_on_both_servers() {
    support::init_tracing();
    let fake = FakeApiServer::start_tls().await.expect("fake API server");
    a_changed_node_id_replaces_the_entry(&fake_target(&fake).await).await;
    if let Some(env) = real().await {
        a_changed_node_id_replaces_the_entry(&real_target(&env).await).await;
    }
}

/// The updater outlasts what a kubelet meets at start and in a flaky cluster: a Node that is
/// not registered yet (the CSINode waits for it), and failing writes (retried with backoff).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_updater_retries_until_the_node_exists_and_writes_succeed() {
    use kubelet_core::testing::apiserver::{FaultKind, FaultMatch, Verb};
    support::init_tracing();
    let fake = FakeApiServer::start_tls().await.expect("fake API server");
    let t = fake_target(&fake).await;
    let registry = DriverRegistry::new();
    let name = "early.csi.kubelet.test";
    registry.insert(kubelet_csi::RegisteredDriver {
        name: name.to_string(),
        endpoint: "/nonexistent.sock".to_string(),
        registration_socket: "/nonexistent-reg.sock".into(),
        version: kubelet_csi::CsiVersion {
            major: 1,
            minor: 0,
            patch: 0,
        },
        node: kubelet_csi::NodeInfo {
            node_id: "early-id".to_string(),
            max_volumes_per_node: None,
            topology: BTreeMap::from([(TOPOLOGY_KEY.to_string(), "early".to_string())]),
        },
    });
    let task = updater(&t).spawn(registry.clone());
    // No Node yet: the updater's reads of it fail, and it keeps trying.
    eventually(&t, "two failed reads of the Node", || async {
        let misses = fake
            .requests()
            .iter()
            .filter(|r| r.resource.as_deref() == Some("nodes") && r.status == 404)
            .count();
        (misses >= 2).then_some(())
    })
    .await;
    assert!(csinode(&t).await.is_none());
    let fault = |verb, resource: &str| FaultMatch {
        verb: Some(verb),
        resource: Some(resource.to_string()),
    };
    fake.fail_next(fault(Verb::Update, "csinodes"), 2, FaultKind::InternalError);
    fake.fail_next(fault(Verb::Patch, "nodes"), 2, FaultKind::InternalError);
    create_node(&t).await;
    let entry = eventually(&t, "the driver's entry", || async {
        csinode(&t)
            .await?
            .spec
            .drivers
            .into_iter()
            .find(|d| d.name == name)
    })
    .await;
    assert_eq!(entry.node_id, "early-id");
    let n = eventually(&t, "annotation and label", || async {
        let n = node(&t).await;
        node_ids(&n)?.contains_key(name).then_some(n)
    })
    .await;
    assert_eq!(label(&n, TOPOLOGY_KEY), Some("early"));
    let failed = |resource: &str| {
        fake.requests()
            .iter()
            .filter(|r| r.resource.as_deref() == Some(resource) && r.status == 500)
            .count()
    };
    assert_eq!(failed("csinodes"), 2);
    assert_eq!(failed("nodes"), 2);
    assert!(!task.is_finished(), "the updater never gives up");
    task.abort();
}
