#![cfg(feature = "apiserver")]
//! The API-server source and reporter against the fake kube-apiserver, reached only through
//! a kubeconfig: watch, relist, outage, pod status, deletion, Lease, mirror pods, events.

use std::path::PathBuf;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Node, ObjectReference, Pod, PodStatus};
use kubelet_core::apiserver::{
    ApiServerReporter, ApiServerSource, ClientSource, NodeClient, WatchBackoff,
};
use kubelet_core::testing::apiserver::{DeleteOptions, FaultKind, FaultMatch, Verb};
use kubelet_core::testing::{FakeApiServer, FakeApiServerOptions};
use kubelet_core::{EventType, KubeletEvent, NodeReporter, PodSource, PodUpdate, ReportError};
use serde_json::json;
use tokio::time::{Instant, timeout};

const NODE: &str = "node-1";
/// Generous: these tests talk to a real HTTP server on a shared, busy machine.
const DEADLINE: Duration = Duration::from_secs(30);

struct Setup {
    server: FakeApiServer,
    client: NodeClient,
    _dir: tempfile::TempDir,
    kubeconfig: PathBuf,
}

async fn setup_with(server: FakeApiServer) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    server.write_kubeconfig(&kubeconfig).unwrap();
    let client = NodeClient::connect(&ClientSource::Kubeconfig(kubeconfig.clone()), NODE)
        .await
        .unwrap();
    client.check_access().await.unwrap();
    Setup {
        server,
        client,
        _dir: dir,
        kubeconfig,
    }
}

async fn setup() -> Setup {
    setup_with(FakeApiServer::start().await.unwrap()).await
}

fn source(client: &NodeClient) -> BoxStream<'static, PodUpdate> {
    let source = ApiServerSource::new(client.clone()).with_backoff(WatchBackoff {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(400),
    });
    Box::new(source).updates()
}

async fn next_update(updates: &mut BoxStream<'static, PodUpdate>) -> PodUpdate {
    timeout(DEADLINE, updates.next())
        .await
        .expect("an update in time")
        .expect("the source keeps going")
}

fn pod(name: &str, node: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"nodeName": node, "terminationGracePeriodSeconds": 30,
                 "containers": [{"name": "c", "image": "busybox"}]}
    }))
    .unwrap()
}

fn uid(p: &Pod) -> String {
    p.metadata.uid.clone().unwrap()
}

#[tokio::test]
async fn the_watch_picks_up_pods_of_this_node_only_and_their_deletion() {
    let s = setup().await;
    let early = s.server.create(&pod("early", NODE)).unwrap();
    let mut mirror = pod("mirror", NODE);
    mirror.metadata.annotations =
        Some([("kubernetes.io/config.mirror".to_string(), "h".to_string())].into());
    s.server.create(&mirror).unwrap();
    s.server.create(&pod("elsewhere", "node-2")).unwrap();

    let mut updates = source(&s.client);
    match next_update(&mut updates).await {
        PodUpdate::Snapshot(pods) => {
            assert_eq!(pods.iter().map(uid).collect::<Vec<_>>(), vec![uid(&early)]);
            assert_eq!(
                pods[0].metadata.annotations.as_ref().unwrap()["kubernetes.io/config.source"],
                "api"
            );
        }
        other => panic!("expected a snapshot, got {other:?}"),
    }

    let web = s.server.create(&pod("web", NODE)).unwrap();
    s.server.create(&pod("other", "node-2")).unwrap();
    match next_update(&mut updates).await {
        PodUpdate::Add(p) => assert_eq!(uid(&p), uid(&web)),
        other => panic!("expected the new pod, got {other:?}"),
    }

    // A graceful delete: the pod stays with a deletionTimestamp, for the kubelet to stop.
    s.server
        .delete::<Pod>("default", "web", &DeleteOptions::default())
        .unwrap();
    let deleting = match next_update(&mut updates).await {
        PodUpdate::Update(p) => p,
        other => panic!("expected the pod being deleted, got {other:?}"),
    };
    assert!(deleting.metadata.deletion_timestamp.is_some());
    assert_eq!(deleting.metadata.deletion_grace_period_seconds, Some(30));

    // The kubelet finishes the deletion once the pod is stopped.
    let reporter = ApiServerReporter::new(s.client.clone());
    reporter.pod_removed(&deleting).await.unwrap();
    match next_update(&mut updates).await {
        PodUpdate::Remove(u) => assert_eq!(u, uid(&web)),
        other => panic!("expected the removal, got {other:?}"),
    }
    assert!(s.server.try_get::<Pod>("default", "web").unwrap().is_none());
    let delete = s
        .server
        .requests()
        .into_iter()
        .find(|r| r.verb == Some(Verb::Delete) && r.resource.as_deref() == Some("pods"))
        .expect("the kubelet's DELETE");
    assert_eq!(delete.user.as_deref(), None, "plain HTTP server: anonymous");
}

#[tokio::test]
async fn a_too_old_watch_relists() {
    let s = setup().await;
    let mut updates = source(&s.client);
    assert!(matches!(next_update(&mut updates).await, PodUpdate::Snapshot(p) if p.is_empty()));
    let lists_before = list_requests(&s.server);

    // While the node is cut off, a pod comes and the history it would resume from goes.
    s.server.start_outage();
    let web = s.server.create(&pod("web", NODE)).unwrap();
    s.server.compact();
    s.server.end_outage();
    // Resuming from the compacted version is refused (410): a new list and snapshot.
    match next_update(&mut updates).await {
        PodUpdate::Snapshot(pods) => {
            assert_eq!(pods.iter().map(uid).collect::<Vec<_>>(), vec![uid(&web)]);
        }
        other => panic!("expected a new snapshot, got {other:?}"),
    }
    assert!(list_requests(&s.server) > lists_before);
}

fn list_requests(server: &FakeApiServer) -> usize {
    server
        .requests()
        .iter()
        .filter(|r| r.verb == Some(Verb::List) && r.resource.as_deref() == Some("pods"))
        .count()
}

#[tokio::test]
async fn an_outage_removes_no_pod_and_the_watch_resumes() {
    let s = setup().await;
    let web = s.server.create(&pod("web", NODE)).unwrap();
    let mut updates = source(&s.client);
    assert!(matches!(next_update(&mut updates).await, PodUpdate::Snapshot(p) if p.len() == 1));

    s.server.start_outage();
    // Retries fail meanwhile; nothing is sent (no removal, no empty snapshot).
    assert!(
        timeout(Duration::from_secs(2), updates.next())
            .await
            .is_err()
    );
    // Injected 500s on the way back are retried too.
    s.server.fail_next(
        FaultMatch::new(Verb::Watch, "pods"),
        2,
        FaultKind::InternalError,
    );
    s.server.end_outage();

    s.server
        .delete::<Pod>(
            "default",
            "web",
            &DeleteOptions {
                grace_period_seconds: Some(0),
                ..Default::default()
            },
        )
        .unwrap();
    loop {
        match next_update(&mut updates).await {
            PodUpdate::Remove(u) => {
                assert_eq!(u, uid(&web));
                break;
            }
            PodUpdate::Snapshot(pods) if pods.is_empty() => break,
            PodUpdate::Update(p) if uid(&p) == uid(&web) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}

fn running(ip: &str) -> PodStatus {
    serde_json::from_value(json!({
        "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
        "conditions": [
            {"type": "Ready", "status": "True"},
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2030-01-01T00:00:00Z"}
        ]
    }))
    .unwrap()
}

#[tokio::test]
async fn pod_status_goes_to_the_pod_of_that_uid_only() {
    let s = setup().await;
    let mut created = pod("web", NODE);
    created.status = None;
    s.server.create(&created).unwrap();
    // As the scheduler sets it.
    let web = s
        .server
        .modify::<Pod>("default", "web", true, |p| {
            p.status.get_or_insert_with(Default::default).conditions = Some(vec![
                serde_json::from_value(json!({"type": "PodScheduled", "status": "True",
                    "lastTransitionTime": "2026-01-01T00:00:00Z"}))
                .unwrap(),
            ]);
        })
        .unwrap();
    let reporter = ApiServerReporter::new(s.client.clone());
    reporter
        .update_pod_status(&web, &running("10.1.0.7"))
        .await
        .unwrap();
    let stored: Pod = s.server.get("default", "web").unwrap();
    let status = stored.status.unwrap();
    assert_eq!(status.phase.as_deref(), Some("Running"));
    assert_eq!(status.pod_ip.as_deref(), Some("10.1.0.7"));
    let conditions = status.conditions.unwrap();
    let scheduled = conditions
        .iter()
        .find(|c| c.type_ == "PodScheduled")
        .unwrap();
    assert_eq!(
        scheduled
            .last_transition_time
            .as_ref()
            .unwrap()
            .0
            .to_string(),
        "2026-01-01T00:00:00Z",
        "the scheduler's condition is kept"
    );
    assert!(conditions.iter().any(|c| c.type_ == "Ready"));

    // Unchanged: no request.
    let patches = |server: &FakeApiServer| {
        server
            .requests()
            .iter()
            .filter(|r| r.resource.as_deref() == Some("pods/status"))
            .count()
    };
    let before = patches(&s.server);
    reporter
        .update_pod_status(&web, &running("10.1.0.7"))
        .await
        .unwrap();
    assert_eq!(patches(&s.server), before);

    // The pod is replaced by another of the same name: the old status must not land on it.
    s.server
        .delete::<Pod>(
            "default",
            "web",
            &DeleteOptions {
                grace_period_seconds: Some(0),
                ..Default::default()
            },
        )
        .unwrap();
    let replacement = s.server.create(&pod("web", NODE)).unwrap();
    assert_ne!(uid(&replacement), uid(&web));
    let err = reporter
        .update_pod_status(&web, &running("10.1.0.8"))
        .await
        .unwrap_err();
    assert!(matches!(err, ReportError::NotFound(_)), "{err}");
    let stored: Pod = s.server.get("default", "web").unwrap();
    assert_ne!(
        stored.status.and_then(|s| s.pod_ip).as_deref(),
        Some("10.1.0.8")
    );
}

#[tokio::test]
async fn statuses_that_failed_in_an_outage_arrive_after_it() {
    let s = setup().await;
    let web = s.server.create(&pod("web", NODE)).unwrap();
    let reporter = ApiServerReporter::new(s.client.clone());
    s.server.start_outage();
    let err = reporter
        .update_pod_status(&web, &running("10.1.0.7"))
        .await
        .unwrap_err();
    assert!(matches!(err, ReportError::Unavailable(_)), "{err}");
    assert!(matches!(
        reporter.renew_lease(NODE).await,
        Err(ReportError::Unavailable(_))
    ));
    s.server.end_outage();
    let sync = reporter.spawn_sync(Duration::from_millis(100));
    s.server
        .wait_for::<Pod, _>("default", "web", DEADLINE, |p| {
            p.and_then(|p| p.status.as_ref())
                .and_then(|s| s.phase.as_deref())
                == Some("Running")
        })
        .await
        .unwrap();
    let deadline = Instant::now() + DEADLINE;
    while reporter.pending_pod_statuses().await != 0 {
        assert!(Instant::now() < deadline, "statuses still pending");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sync.abort();
}

fn our_node() -> Node {
    serde_json::from_value(json!({
        "metadata": {"name": NODE, "labels": {"kubernetes.io/hostname": NODE, "kubernetes.io/os": "linux"}},
        "spec": {"taints": [{"key": "dedicated", "value": "x", "effect": "NoSchedule"}]}
    }))
    .unwrap()
}

#[tokio::test]
async fn the_node_registers_reports_status_and_renews_its_lease() {
    let s = setup().await;
    let reporter = ApiServerReporter::new(s.client.clone());
    reporter.register_node(&our_node()).await.unwrap();
    let node: Node = s.server.get("", NODE).unwrap();
    assert_eq!(node.spec.unwrap().taints.unwrap()[0].key, "dedicated");

    // Registering again adopts the Node (e.g. after a kubelet restart).
    s.server
        .modify::<Node>("", NODE, false, |n| {
            n.metadata
                .labels
                .get_or_insert_with(Default::default)
                .insert("kubernetes.io/hostname".into(), "stale".into());
            n.metadata
                .labels
                .get_or_insert_with(Default::default)
                .insert("team".into(), "a".into());
        })
        .unwrap();
    reporter.register_node(&our_node()).await.unwrap();
    let node: Node = s.server.get("", NODE).unwrap();
    let labels = node.metadata.labels.clone().unwrap();
    assert_eq!(labels["kubernetes.io/hostname"], NODE);
    assert_eq!(labels["team"], "a");

    let status = serde_json::from_value(json!({
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
        "addresses": [{"type": "InternalIP", "address": "10.0.0.5"}, {"type": "Hostname", "address": NODE}],
        "capacity": {"pods": "110", "cpu": "2"}
    }))
    .unwrap();
    reporter.update_node_status(NODE, &status).await.unwrap();
    let addresses_later = serde_json::from_value(json!({
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
        "addresses": [{"type": "InternalIP", "address": "10.0.0.6"}],
        "capacity": {"pods": "110", "cpu": "2"}
    }))
    .unwrap();
    reporter
        .update_node_status(NODE, &addresses_later)
        .await
        .unwrap();
    let stored = s.server.get::<Node>("", NODE).unwrap().status.unwrap();
    assert_eq!(stored.conditions.unwrap()[0].type_, "Ready");
    assert_eq!(stored.capacity.unwrap()["pods"].0, "110");
    let addresses = stored.addresses.unwrap();
    assert_eq!(
        addresses.len(),
        1,
        "addresses replaced whole: {addresses:?}"
    );
    assert_eq!(addresses[0].address, "10.0.0.6");

    reporter.renew_lease(NODE).await.unwrap();
    let lease: Lease = s.server.get("kube-node-lease", NODE).unwrap();
    let spec = lease.spec.clone().unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some(NODE));
    assert_eq!(spec.lease_duration_seconds, Some(40));
    let owner = &lease.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!((owner.kind.as_str(), owner.name.as_str()), ("Node", NODE));
    assert_eq!(Some(&owner.uid), node.metadata.uid.as_ref());
    let first_renew = spec.renew_time.unwrap().0;

    // Someone else writes the Lease: our next renewal conflicts, reads it again, succeeds.
    s.server
        .modify::<Lease>("kube-node-lease", NODE, false, |l| {
            l.metadata
                .labels
                .get_or_insert_with(Default::default)
                .insert("touched".into(), "yes".into());
        })
        .unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    reporter.renew_lease(NODE).await.unwrap();
    let lease: Lease = s.server.get("kube-node-lease", NODE).unwrap();
    assert!(lease.spec.unwrap().renew_time.unwrap().0 > first_renew);
    assert_eq!(lease.metadata.labels.unwrap()["touched"], "yes");
}

fn static_pod() -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "etcd-node-1", "namespace": "kube-system", "uid": "0123456789abcdef",
            "annotations": {"kubernetes.io/config.source": "file",
                            "kubernetes.io/config.hash": "0123456789abcdef"}},
        "spec": {"nodeName": NODE, "containers": [{"name": "etcd", "image": "etcd"}]}
    }))
    .unwrap()
}

#[tokio::test]
async fn a_static_pod_has_a_mirror_pod_recreated_when_deleted() {
    let s = setup().await;
    let reporter = ApiServerReporter::new(s.client.clone());
    reporter.register_node(&our_node()).await.unwrap();
    let node_uid = s.server.get::<Node>("", NODE).unwrap().metadata.uid;
    reporter
        .update_pod_status(&static_pod(), &running("10.0.0.5"))
        .await
        .unwrap();
    let mirror: Pod = s.server.get("kube-system", "etcd-node-1").unwrap();
    let annotations = mirror.metadata.annotations.clone().unwrap();
    assert_eq!(
        annotations["kubernetes.io/config.mirror"],
        "0123456789abcdef"
    );
    assert_eq!(annotations["kubernetes.io/config.source"], "file");
    assert_ne!(mirror.metadata.uid.as_deref(), Some("0123456789abcdef"));
    let owner = &mirror.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(Some(&owner.uid), node_uid.as_ref());
    assert_eq!(
        mirror.status.as_ref().unwrap().phase.as_deref(),
        Some("Running")
    );

    // The API source does not hand the mirror pod to the kubelet to run.
    let mut updates = source(&s.client);
    assert!(matches!(next_update(&mut updates).await, PodUpdate::Snapshot(p) if p.is_empty()));

    // Deleted by a user: the periodic sync creates it again, with the status.
    s.server
        .delete::<Pod>(
            "kube-system",
            "etcd-node-1",
            &DeleteOptions {
                grace_period_seconds: Some(0),
                ..Default::default()
            },
        )
        .unwrap();
    let sync = reporter.spawn_sync(Duration::from_millis(100));
    let again = s
        .server
        .wait_for::<Pod, _>("kube-system", "etcd-node-1", DEADLINE, |p| {
            p.is_some_and(|p| {
                p.metadata.uid != mirror.metadata.uid
                    && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
            })
        })
        .await
        .unwrap();
    assert!(again.is_some());
    sync.abort();

    // The static pod goes: so does its mirror.
    reporter.pod_removed(&static_pod()).await.unwrap();
    assert!(
        s.server
            .try_get::<Pod>("kube-system", "etcd-node-1")
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn a_crash_loop_cannot_flood_the_api_server_with_events() {
    let s = setup().await;
    let web = s.server.create(&pod("web", NODE)).unwrap();
    let reporter = ApiServerReporter::new(s.client.clone());
    let event = KubeletEvent {
        involved: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: web.metadata.name.clone(),
            namespace: web.metadata.namespace.clone(),
            uid: web.metadata.uid.clone(),
            field_path: Some("spec.containers{c}".into()),
            ..Default::default()
        },
        type_: EventType::Warning,
        reason: "BackOff".into(),
        message: "Back-off restarting failed container c in pod web".into(),
    };
    for _ in 0..40 {
        reporter.record_event(&event).await.unwrap();
    }
    let events: Vec<Event> = s.server.list(Some("default")).unwrap();
    assert_eq!(events.len(), 1, "repeats count up one object");
    assert_eq!(
        events[0].count,
        Some(25),
        "a burst of 25, then rate-limited"
    );
    assert_eq!(events[0].reason.as_deref(), Some("BackOff"));
    assert_eq!(
        events[0].source.as_ref().unwrap().host.as_deref(),
        Some(NODE)
    );
    let writes = s
        .server
        .requests()
        .iter()
        .filter(|r| r.resource.as_deref() == Some("events"))
        .count();
    assert_eq!(writes, 25);
}

#[tokio::test]
async fn over_https_with_a_node_client_certificate_or_a_refused_token() {
    let server = FakeApiServer::start_with(
        FakeApiServerOptions {
            require_auth: true,
            ..Default::default()
        },
        true,
    )
    .await;
    let server = match server {
        Ok(server) => server,
        Err(err) => panic!("fake API server over TLS: {err}"),
    };
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("node.kubeconfig");
    std::fs::write(
        &kubeconfig,
        server
            .kubeconfig_with_client_cert(&format!("system:node:{NODE}"), &["system:nodes"])
            .unwrap(),
    )
    .unwrap();
    let client = NodeClient::connect(&ClientSource::Kubeconfig(kubeconfig), NODE)
        .await
        .unwrap();
    client.check_access().await.unwrap();
    let reporter = ApiServerReporter::new(client);
    reporter.register_node(&our_node()).await.unwrap();
    let users: Vec<_> = server
        .requests()
        .into_iter()
        .filter_map(|r| r.user)
        .collect();
    assert!(users.iter().all(|u| u == "system:node:node-1"), "{users:?}");

    // A token the server does not know: 401, said as such.
    let bad = server
        .kubeconfig()
        .replace(server.token().unwrap(), "not-a-valid-token");
    let bad_path = dir.path().join("bad.kubeconfig");
    std::fs::write(&bad_path, bad).unwrap();
    let client = NodeClient::connect(&ClientSource::Kubeconfig(bad_path), NODE)
        .await
        .unwrap();
    let err = client.check_access().await.unwrap_err();
    assert!(err.to_string().contains("401 Unauthorized"), "{err}");
}

#[tokio::test]
async fn an_unreachable_server_is_named() {
    let s = setup().await;
    let kubeconfig = s.kubeconfig.clone();
    drop(s.server);
    let client = NodeClient::connect(&ClientSource::Kubeconfig(kubeconfig), NODE)
        .await
        .unwrap();
    let err = client.check_access().await.unwrap_err();
    assert!(
        err.to_string()
            .starts_with("cannot reach the API server at http://127.0.0.1:"),
        "{err}"
    );
}
