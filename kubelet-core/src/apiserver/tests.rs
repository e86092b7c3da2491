//! Request-shape tests over kube-rs's tower-test mock: the path, query, method, content type
//! and body of every call, and how answers are handled.

use std::time::Duration;

use futures::StreamExt;
use http::{Method, Request, Response, StatusCode};
use k8s_openapi::api::core::v1::{ObjectReference, Pod, PodStatus};
use kube::client::Body;
use serde_json::{Value, json};
use tokio::time::Instant;
use tower_test::mock;

use super::*;
use crate::error::ReportError;
use crate::reporter::{EventType, KubeletEvent, NodeReporter};
use crate::source::{PodSource, PodUpdate};

type Handle = mock::Handle<Request<Body>, Response<Body>>;
type Responder = mock::SendResponse<Response<Body>>;

const NODE: &str = "node-1";

fn mock_client() -> (NodeClient, Handle) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "default");
    (
        NodeClient::from_client(client, NODE, "https://mock"),
        handle,
    )
}

/// One request as the server saw it.
struct Seen {
    method: Method,
    path: String,
    query: Vec<(String, String)>,
    content_type: Option<String>,
    body: Value,
    respond: Responder,
}

impl Seen {
    fn query(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn reply(self, code: u16, body: Value) {
        let response = Response::builder()
            .status(StatusCode::from_u16(code).unwrap())
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(&body).unwrap()))
            .unwrap();
        self.respond.send_response(response);
    }

    fn ok(self, body: Value) {
        self.reply(200, body);
    }

    fn fail(self, code: u16, reason: &str) {
        self.reply(
            code,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                   "code": code, "reason": reason, "message": format!("{reason} (test)")}),
        );
    }

    /// A stream of watch events, then the end of the response.
    fn events(self, events: &[Value]) {
        let mut bytes = Vec::new();
        for e in events {
            bytes.extend(serde_json::to_vec(e).unwrap());
            bytes.push(b'\n');
        }
        self.respond.send_response(Response::new(Body::from(bytes)));
    }

    fn unreachable(self) {
        self.respond.send_error(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "connection refused",
        ));
    }
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

async fn next(handle: &mut Handle) -> Seen {
    let (request, respond) = tokio::time::timeout(Duration::from_secs(600), handle.next_request())
        .await
        .expect("a request within 10 minutes")
        .expect("the client is alive");
    let (parts, body) = request.into_parts();
    let bytes = body.collect_bytes().await.unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    let query = parts
        .uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k), decode(v))
        })
        .collect();
    Seen {
        method: parts.method,
        path: parts.uri.path().to_string(),
        query,
        content_type: parts
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        body,
        respond,
    }
}

/// Asserts that no request comes within `within` (paused time: nothing else would happen).
async fn no_request(handle: &mut Handle, within: Duration) {
    if let Ok(Some((request, _))) = tokio::time::timeout(within, handle.next_request()).await {
        panic!("unexpected request {} {}", request.method(), request.uri());
    }
}

fn pod_json(name: &str, uid: &str, rv: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "ns", "uid": uid, "resourceVersion": rv},
        "spec": {"nodeName": NODE, "containers": [{"name": "c", "image": "busybox"}]},
        "status": {"conditions": [{"type": "PodScheduled", "status": "True"}]}
    })
}

fn mirror_json(name: &str, uid: &str, rv: &str) -> Value {
    let mut p = pod_json(name, uid, rv);
    p["metadata"]["annotations"] = json!({"kubernetes.io/config.mirror": "hash"});
    p
}

fn pod_list(rv: &str, items: Vec<Value>, cont: Option<&str>) -> Value {
    let mut meta = json!({"resourceVersion": rv});
    if let Some(c) = cont {
        meta["continue"] = json!(c);
    }
    json!({"apiVersion": "v1", "kind": "PodList", "metadata": meta, "items": items})
}

fn uids(pods: &[Pod]) -> Vec<&str> {
    pods.iter()
        .map(|p| p.metadata.uid.as_deref().unwrap())
        .collect()
}

// ---------------------------------------------------------------- source

#[tokio::test(start_paused = true)]
async fn source_lists_pages_then_watches_and_leaves_out_mirror_pods() {
    let (client, mut handle) = mock_client();
    let source = ApiServerSource::new(client).with_watch_timeout(Duration::from_secs(300));
    let mut updates = Box::new(source).updates();

    let list = next(&mut handle).await;
    assert_eq!(list.method, Method::GET);
    assert_eq!(list.path, "/api/v1/pods");
    assert_eq!(list.query("fieldSelector"), Some("spec.nodeName=node-1"));
    assert_eq!(list.query("limit"), Some("500"));
    assert_eq!(list.query("watch"), None);
    list.ok(pod_list(
        "10",
        vec![pod_json("a", "ua", "5")],
        Some("page2"),
    ));
    let list = next(&mut handle).await;
    assert_eq!(list.query("continue"), Some("page2"));
    list.ok(pod_list(
        "11",
        vec![pod_json("b", "ub", "6"), mirror_json("m", "um", "7")],
        None,
    ));

    let PodUpdate::Snapshot(pods) = updates.next().await.unwrap() else {
        panic!("first update is a snapshot");
    };
    assert_eq!(uids(&pods), vec!["ua", "ub"]);
    assert_eq!(
        pods[0].metadata.annotations.as_ref().unwrap()["kubernetes.io/config.source"],
        "api"
    );

    let watch = next(&mut handle).await;
    assert_eq!(watch.path, "/api/v1/pods");
    assert_eq!(watch.query("watch"), Some("true"));
    assert_eq!(watch.query("resourceVersion"), Some("11"));
    assert_eq!(watch.query("fieldSelector"), Some("spec.nodeName=node-1"));
    assert_eq!(watch.query("allowWatchBookmarks"), Some("true"));
    assert_eq!(watch.query("timeoutSeconds"), Some("300"));
    let mut deleting = pod_json("a", "ua", "14");
    deleting["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    deleting["metadata"]["deletionGracePeriodSeconds"] = json!(30);
    watch.events(&[
        json!({"type": "ADDED", "object": pod_json("c", "uc", "12")}),
        json!({"type": "ADDED", "object": mirror_json("m2", "um2", "13")}),
        json!({"type": "MODIFIED", "object": deleting}),
        json!({"type": "DELETED", "object": pod_json("b", "ub", "15")}),
        json!({"type": "BOOKMARK", "object": {"kind": "Pod", "apiVersion": "v1",
               "metadata": {"resourceVersion": "20"}}}),
    ]);
    match updates.next().await.unwrap() {
        PodUpdate::Add(p) => assert_eq!(p.metadata.uid.as_deref(), Some("uc")),
        other => panic!("expected add, got {other:?}"),
    }
    match updates.next().await.unwrap() {
        PodUpdate::Update(p) => {
            assert_eq!(p.metadata.uid.as_deref(), Some("ua"));
            assert!(p.metadata.deletion_timestamp.is_some());
        }
        other => panic!("expected update, got {other:?}"),
    }
    match updates.next().await.unwrap() {
        PodUpdate::Remove(uid) => assert_eq!(uid, "ub"),
        other => panic!("expected remove, got {other:?}"),
    }
    // The watch ended normally: resumed from the bookmark's version at once.
    let rewatch = next(&mut handle).await;
    assert_eq!(rewatch.query("resourceVersion"), Some("20"));
    drop(rewatch);
}

#[tokio::test(start_paused = true)]
async fn source_relists_on_410_and_keeps_its_pods_through_an_outage() {
    let (client, mut handle) = mock_client();
    let mut updates = Box::new(ApiServerSource::new(client)).updates();
    next(&mut handle)
        .await
        .ok(pod_list("10", vec![pod_json("a", "ua", "5")], None));
    assert!(matches!(updates.next().await, Some(PodUpdate::Snapshot(p)) if p.len() == 1));

    // Outage: the watch and its retries fail; the delays double from 800 ms.
    let mut last = Instant::now();
    next(&mut handle).await.unreachable();
    let mut delays = Vec::new();
    for _ in 0..4 {
        let watch = next(&mut handle).await;
        assert_eq!(watch.query("resourceVersion"), Some("10"));
        delays.push(Instant::now() - last);
        last = Instant::now();
        watch.fail(503, "ServiceUnavailable");
    }
    assert_eq!(
        delays,
        [800, 1600, 3200, 6400].map(Duration::from_millis).to_vec()
    );
    // Nothing was sent meanwhile: no removal, no empty snapshot.
    assert!(futures::FutureExt::now_or_never(updates.next()).is_none());

    // Back, but our version is too old: 410 in the watch stream, then a new list.
    next(&mut handle)
        .await
        .events(&[json!({"type": "ERROR", "object":
        {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 410,
         "reason": "Expired", "message": "too old resource version: 10 (30)"}})]);
    let relist = next(&mut handle).await;
    assert_eq!(relist.query("watch"), None);
    relist.ok(pod_list("31", vec![pod_json("b", "ub", "30")], None));
    match updates.next().await.unwrap() {
        PodUpdate::Snapshot(pods) => assert_eq!(uids(&pods), vec!["ub"]),
        other => panic!("expected a snapshot, got {other:?}"),
    }
    let watch = next(&mut handle).await;
    assert_eq!(watch.query("resourceVersion"), Some("31"));
    // A 410 answer to the watch request itself also relists.
    watch.fail(410, "Gone");
    let relist = next(&mut handle).await;
    assert_eq!(relist.query("watch"), None);
    drop(relist);
}

#[tokio::test(start_paused = true)]
async fn source_list_errors_back_off_up_to_30_seconds() {
    let (client, mut handle) = mock_client();
    let _updates = Box::new(ApiServerSource::new(client)).updates();
    let mut last = Instant::now();
    let mut delays = Vec::new();
    for _ in 0..8 {
        let list = next(&mut handle).await;
        delays.push((Instant::now() - last).as_millis());
        last = Instant::now();
        list.fail(500, "InternalError");
    }
    assert_eq!(delays, vec![0, 800, 1600, 3200, 6400, 12800, 25600, 30000]);
}

// ---------------------------------------------------------------- client

#[tokio::test]
async fn access_check_names_what_failed() {
    let (client, mut handle) = mock_client();
    let check = tokio::spawn(async move { client.check_access().await });
    let get = next(&mut handle).await;
    assert_eq!(get.method, Method::GET);
    assert_eq!(get.path, "/api/v1/nodes/node-1");
    get.fail(403, "Forbidden");
    let err = check.await.unwrap().unwrap_err();
    assert!(
        err.to_string()
            .contains("forbids get nodes/node-1 to system:node:node-1"),
        "{err}"
    );

    let (client, mut handle) = mock_client();
    let check = tokio::spawn(async move { client.check_access().await });
    next(&mut handle).await.unreachable();
    let err = check.await.unwrap().unwrap_err();
    assert!(matches!(err, ApiClientError::Unreachable { .. }), "{err}");

    let (client, mut handle) = mock_client();
    let check = tokio::spawn(async move { client.check_access().await });
    next(&mut handle).await.fail(404, "NotFound");
    check.await.unwrap().unwrap();
}

#[tokio::test]
async fn kubeconfig_errors_name_the_file() {
    let err = NodeClient::connect(
        &ClientSource::Kubeconfig("/nonexistent/kubeconfig".into()),
        NODE,
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("kubeconfig /nonexistent/kubeconfig:"),
        "{err}"
    );
}

// ---------------------------------------------------------------- node and lease

fn node_json(uid: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Node",
           "metadata": {"name": NODE, "uid": uid, "resourceVersion": "1", "labels": labels}})
}

fn our_node() -> k8s_openapi::api::core::v1::Node {
    serde_json::from_value(json!({"metadata": {"name": NODE, "labels": {
        "kubernetes.io/hostname": NODE, "kubernetes.io/os": "linux", "custom": "mine"}},
        "spec": {"taints": [{"key": "k", "value": "v", "effect": "NoSchedule"}]}}))
    .unwrap()
}

#[tokio::test]
async fn register_creates_the_node() {
    let (client, mut handle) = mock_client();
    let reporter = ApiServerReporter::new(client);
    let r = reporter.clone();
    let call = tokio::spawn(async move { r.register_node(&our_node()).await });
    let create = next(&mut handle).await;
    assert_eq!(create.method, Method::POST);
    assert_eq!(create.path, "/api/v1/nodes");
    assert_eq!(create.body["metadata"]["name"], NODE);
    assert_eq!(create.body["spec"]["taints"][0]["key"], "k");
    create.reply(201, node_json("node-uid", json!({})));
    call.await.unwrap().unwrap();
}

#[tokio::test]
async fn register_adopts_an_existing_node_and_fixes_default_labels_only() {
    let (client, mut handle) = mock_client();
    let reporter = ApiServerReporter::new(client);
    let r = reporter.clone();
    let call = tokio::spawn(async move { r.register_node(&our_node()).await });
    next(&mut handle).await.fail(409, "AlreadyExists");
    let get = next(&mut handle).await;
    assert_eq!(
        (get.method.clone(), get.path.as_str()),
        (Method::GET, "/api/v1/nodes/node-1")
    );
    get.ok(node_json(
        "old-uid",
        json!({"kubernetes.io/hostname": "other", "kubernetes.io/os": "linux", "custom": "theirs"}),
    ));
    let patch = next(&mut handle).await;
    assert_eq!(patch.method, Method::PATCH);
    assert_eq!(patch.path, "/api/v1/nodes/node-1");
    assert_eq!(
        patch.content_type.as_deref(),
        Some("application/strategic-merge-patch+json")
    );
    assert_eq!(
        patch.body,
        json!({"metadata": {"labels": {"kubernetes.io/hostname": "node-1"}}})
    );
    patch.ok(node_json("old-uid", json!({})));
    call.await.unwrap().unwrap();
    assert_eq!(reporter.inner.node_uid().await.unwrap(), "old-uid");
}

#[tokio::test]
async fn node_status_is_a_two_way_patch_from_the_servers_status() {
    let (client, mut handle) = mock_client();
    let reporter = ApiServerReporter::new(client);
    let status: k8s_openapi::api::core::v1::NodeStatus = serde_json::from_value(json!({
        "conditions": [{"type": "Ready", "status": "True"}],
        "addresses": [{"type": "InternalIP", "address": "10.0.0.5"}],
        "capacity": {"pods": "110"}
    }))
    .unwrap();
    let mut server = node_json("uid", json!({}));
    server["status"] = json!({
        "conditions": [{"type": "Ready", "status": "False"}],
        "addresses": [{"type": "InternalIP", "address": "10.0.0.4"}],
        "capacity": {"pods": "110"}
    });
    for attempt in 0..2 {
        let r = reporter.clone();
        let s = status.clone();
        let call = tokio::spawn(async move { r.update_node_status(NODE, &s).await });
        // The base of the patch: the Node as the server has it (again after a failure).
        let get = next(&mut handle).await;
        assert_eq!(
            (get.method.clone(), get.path.as_str()),
            (Method::GET, "/api/v1/nodes/node-1")
        );
        get.ok(server.clone());
        let patch = next(&mut handle).await;
        assert_eq!(patch.method, Method::PATCH);
        assert_eq!(patch.path, "/api/v1/nodes/node-1/status");
        assert_eq!(
            patch.content_type.as_deref(),
            Some("application/strategic-merge-patch+json")
        );
        assert_eq!(
            patch.body,
            json!({"status": {
                "$setElementOrder/conditions": [{"type": "Ready"}],
                "conditions": [{"type": "Ready", "status": "True"}],
                "addresses": [{"type": "InternalIP", "address": "10.0.0.5"}, {"$patch": "replace"}],
            }})
        );
        if attempt == 0 {
            patch.fail(503, "ServiceUnavailable");
            assert!(matches!(
                call.await.unwrap(),
                Err(ReportError::Unavailable(_))
            ));
        } else {
            let mut updated = server.clone();
            updated["status"] = serde_json::to_value(&status).unwrap();
            patch.ok(updated);
            call.await.unwrap().unwrap();
        }
    }
    // The server has it all now: nothing is sent.
    reporter
        .inner
        .update_node_status(NODE, &status)
        .await
        .unwrap();
}

fn lease_json(rv: &str, renew: &str) -> Value {
    json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
           "metadata": {"name": NODE, "namespace": "kube-node-lease", "resourceVersion": rv,
                        "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": NODE, "uid": "node-uid"}]},
           "spec": {"holderIdentity": NODE, "leaseDurationSeconds": 40, "renewTime": renew}})
}

#[tokio::test]
async fn lease_is_created_owned_by_the_node_then_updated_with_conflict_retry() {
    let (client, mut handle) = mock_client();
    let reporter = ApiServerReporter::new(client);
    let r = reporter.clone();
    let call = tokio::spawn(async move { r.renew_lease(NODE).await });
    let get = next(&mut handle).await;
    assert_eq!(
        get.path,
        "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/node-1"
    );
    get.fail(404, "NotFound");
    let node = next(&mut handle).await;
    assert_eq!(node.path, "/api/v1/nodes/node-1");
    node.ok(node_json("node-uid", json!({})));
    let create = next(&mut handle).await;
    assert_eq!(create.method, Method::POST);
    assert_eq!(
        create.path,
        "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"
    );
    assert_eq!(create.body["spec"]["holderIdentity"], NODE);
    assert_eq!(create.body["spec"]["leaseDurationSeconds"], 40);
    assert!(create.body["spec"]["renewTime"].is_string());
    assert_eq!(
        create.body["metadata"]["ownerReferences"],
        json!([{"apiVersion": "v1", "kind": "Node", "name": NODE, "uid": "node-uid", "controller": true}])
    );
    create.reply(201, lease_json("5", "2026-01-01T00:00:00.000000Z"));
    call.await.unwrap().unwrap();

    // The next renewal is a conditional update of the Lease we wrote.
    let r = reporter.clone();
    let call = tokio::spawn(async move { r.renew_lease(NODE).await });
    let put = next(&mut handle).await;
    assert_eq!(put.method, Method::PUT);
    assert_eq!(
        put.path,
        "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/node-1"
    );
    assert_eq!(put.body["metadata"]["resourceVersion"], "5");
    assert_ne!(put.body["spec"]["renewTime"], "2026-01-01T00:00:00.000000Z");
    put.fail(409, "Conflict");
    let get = next(&mut handle).await;
    assert_eq!(get.method, Method::GET);
    get.ok(lease_json("9", "2026-01-01T00:00:01.000000Z"));
    let put = next(&mut handle).await;
    assert_eq!(put.body["metadata"]["resourceVersion"], "9");
    put.ok(lease_json("10", "2026-01-01T00:00:02.000000Z"));
    call.await.unwrap().unwrap();
}

// ---------------------------------------------------------------- pod status

fn api_pod(uid: &str) -> Pod {
    serde_json::from_value(pod_json("web", uid, "3")).unwrap()
}

fn running() -> PodStatus {
    serde_json::from_value(json!({"phase": "Running", "podIP": "10.1.0.7",
        "conditions": [{"type": "Ready", "status": "True"}, {"type": "PodScheduled", "status": "True"}]}))
    .unwrap()
}

#[tokio::test(start_paused = true)]
async fn pod_status_is_patched_with_uid_precondition_only_when_changed() {
    let (client, mut handle) = mock_client();
    let reporter = ApiServerReporter::new(client);
    let r = reporter.clone();
    let call = tokio::spawn(async move { r.update_pod_status(&api_pod("u1"), &running()).await });
    let patch = next(&mut handle).await;
    assert_eq!(patch.method, Method::PATCH);
    assert_eq!(patch.path, "/api/v1/namespaces/ns/pods/web/status");
    assert_eq!(
        patch.content_type.as_deref(),
        Some("application/strategic-merge-patch+json")
    );
    assert_eq!(patch.body["metadata"], json!({"uid": "u1"}));
    assert_eq!(patch.body["status"]["phase"], "Running");
    assert_eq!(patch.body["status"]["podIP"], "10.1.0.7");
    // The scheduler's PodScheduled stays as it set it.
    assert_eq!(
        patch.body["status"]["conditions"],
        json!([{"type": "Ready", "status": "True"}])
    );
    patch.ok(pod_json("web", "u1", "4"));
    call.await.unwrap().unwrap();

    // The same status again: nothing sent.
    reporter
        .update_pod_status(&api_pod("u1"), &running())
        .await
        .unwrap();
    no_request(&mut handle, Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn a_recreated_pod_of_the_same_name_does_not_get_the_old_status() {
    let (client, mut handle) = mock_client();
    let reporter = ApiServerReporter::new(client);
    let r = reporter.clone();
    let call = tokio::spawn(async move { r.update_pod_status(&api_pod("u1"), &running()).await });
    next(&mut handle).await.fail(409, "Conflict");
    let get = next(&mut handle).await;
    assert_eq!(get.method, Method::GET);
    assert_eq!(get.path, "/api/v1/namespaces/ns/pods/web");
    get.ok(pod_json("web", "u2", "9"));
    assert!(matches!(call.await.unwrap(), Err(ReportError::NotFound(_))));
    assert_eq!(reporter.pending_pod_statuses().await, 0);
    no_request(&mut handle, Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn a_conflict_on_our_own_pod_is_retried() {
    let (client, mut handle) = mock_client();
    let reporter = ApiServerReporter::new(client);
    let r = reporter.clone();
    let call = tokio::spawn(async move { r.update_pod_status(&api_pod("u1"), &running()).await });
    next(&mut handle).await.fail(409, "Conflict");
    next(&mut handle).await.ok(pod_json("web", "u1", "9"));
    let patch = next(&mut handle).await;
    assert_eq!(patch.method, Method::PATCH);
    patch.ok(pod_json("web", "u1", "10"));
    call.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn statuses_that_failed_during_an_outage_are_sent_on_sync() {
    let (client, mut handle) = mock_client();
    let reporter = ApiServerReporter::new(client);
    let r = reporter.clone();
    let call = tokio::spawn(async move { r.update_pod_status(&api_pod("u1"), &running()).await });
    next(&mut handle).await.unreachable();
    assert!(matches!(
        call.await.unwrap(),
        Err(ReportError::Unavailable(_))
    ));
    assert_eq!(reporter.pending_pod_statuses().await, 1);

    let sync = reporter.spawn_sync(Duration::from_secs(10));
    let patch = next(&mut handle).await;
    assert_eq!(patch.path, "/api/v1/namespaces/ns/pods/web/status");
    assert_eq!(patch.body["status"]["phase"], "Running");
    patch.ok(pod_json("web", "u1", "4"));
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(reporter.pending_pod_statuses().await, 0);
    no_request(&mut handle, Duration::from_secs(60)).await;
    sync.abort();
}

#[tokio::test(start_paused = true)]
async fn a_deleted_api_pod_is_finally_deleted_with_grace_0_and_its_uid() {
    let (client, mut handle) = mock_client();
    let reporter = ApiServerReporter::new(client);
    let mut pod = api_pod("u1");
    pod.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::now(),
    ));
    let r = reporter.clone();
    let p = pod.clone();
    let call = tokio::spawn(async move { r.pod_removed(&p).await });
    let delete = next(&mut handle).await;
    assert_eq!(delete.method, Method::DELETE);
    assert_eq!(delete.path, "/api/v1/namespaces/ns/pods/web");
    assert_eq!(delete.body["gracePeriodSeconds"], 0);
    assert_eq!(delete.body["preconditions"], json!({"uid": "u1"}));
    delete.fail(404, "NotFound");
    call.await.unwrap().unwrap();

    // A pod removed without being deleted (e.g. it left the source) is not deleted.
    reporter.pod_removed(&api_pod("u2")).await.unwrap();
    no_request(&mut handle, Duration::from_secs(5)).await;
}

// ---------------------------------------------------------------- mirror pods

fn static_pod() -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "etcd-node-1", "namespace": "kube-system", "uid": "static-uid",
            "labels": {"component": "etcd"},
            "annotations": {"kubernetes.io/config.source": "file", "kubernetes.io/config.hash": "static-uid"}},
        "spec": {"containers": [{"name": "etcd", "image": "etcd"}]}
    }))
    .unwrap()
}

fn mirror_of_static(uid: &str, hash: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "etcd-node-1", "namespace": "kube-system", "uid": uid,
            "annotations": {"kubernetes.io/config.mirror": hash, "kubernetes.io/config.source": "file"}},
        "spec": {"nodeName": NODE, "containers": [{"name": "etcd", "image": "etcd"}]}})
}

/// Answers the requests that create the mirror pod, returns the created pod's body.
async fn expect_mirror_creation(handle: &mut Handle, mirror_uid: &str) -> Value {
    let get = next(handle).await;
    assert_eq!(get.method, Method::GET);
    assert_eq!(get.path, "/api/v1/namespaces/kube-system/pods/etcd-node-1");
    get.fail(404, "NotFound");
    let create = next(handle).await;
    let create = if create.path == "/api/v1/nodes/node-1" {
        create.ok(node_json("node-uid", json!({})));
        next(handle).await
    } else {
        create
    };
    assert_eq!(create.method, Method::POST);
    assert_eq!(create.path, "/api/v1/namespaces/kube-system/pods");
    let body = create.body.clone();
    create.reply(201, mirror_of_static(mirror_uid, "static-uid"));
    body
}

#[tokio::test(start_paused = true)]
async fn a_static_pod_gets_a_mirror_pod_with_its_status_and_loses_it_when_removed() {
    let (client, mut handle) = mock_client();
    let reporter = ApiServerReporter::new(client);
    let r = reporter.clone();
    let call = tokio::spawn(async move { r.update_pod_status(&static_pod(), &running()).await });
    let body = expect_mirror_creation(&mut handle, "mirror-1").await;
    assert_eq!(
        body["metadata"]["annotations"]["kubernetes.io/config.mirror"],
        "static-uid"
    );
    assert_eq!(
        body["metadata"]["annotations"]["kubernetes.io/config.source"],
        "file"
    );
    assert_eq!(body["metadata"]["labels"]["component"], "etcd");
    assert_eq!(body["metadata"].get("uid"), None);
    assert_eq!(
        body["metadata"]["ownerReferences"],
        json!([{"apiVersion": "v1", "kind": "Node", "name": NODE, "uid": "node-uid", "controller": true}])
    );
    assert_eq!(body["spec"]["nodeName"], NODE);
    let patch = next(&mut handle).await;
    assert_eq!(
        patch.path,
        "/api/v1/namespaces/kube-system/pods/etcd-node-1/status"
    );
    assert_eq!(patch.body["metadata"], json!({"uid": "mirror-1"}));
    assert_eq!(patch.body["status"]["phase"], "Running");
    // A fresh mirror has no PodScheduled of the scheduler's: ours is sent.
    assert_eq!(
        patch.body["status"]["conditions"].as_array().unwrap().len(),
        2
    );
    patch.ok(mirror_of_static("mirror-1", "static-uid"));
    call.await.unwrap().unwrap();

    // Deleted by someone: the periodic sync makes it again and gives it the status.
    let r = reporter.clone();
    let sync = tokio::spawn(async move { r.sync().await });
    let check = next(&mut handle).await;
    assert_eq!(
        check.path,
        "/api/v1/namespaces/kube-system/pods/etcd-node-1"
    );
    check.fail(404, "NotFound");
    expect_mirror_creation(&mut handle, "mirror-2").await;
    let patch = next(&mut handle).await;
    assert_eq!(patch.body["metadata"], json!({"uid": "mirror-2"}));
    patch.ok(mirror_of_static("mirror-2", "static-uid"));
    sync.await.unwrap().unwrap();

    // The static pod goes: its mirror goes, by UID.
    let r = reporter.clone();
    let call = tokio::spawn(async move { r.pod_removed(&static_pod()).await });
    let delete = next(&mut handle).await;
    assert_eq!(delete.method, Method::DELETE);
    assert_eq!(
        delete.path,
        "/api/v1/namespaces/kube-system/pods/etcd-node-1"
    );
    assert_eq!(delete.body["preconditions"], json!({"uid": "mirror-2"}));
    assert_eq!(delete.body["gracePeriodSeconds"], 0);
    delete.ok(mirror_of_static("mirror-2", "static-uid"));
    call.await.unwrap().unwrap();
    // A late status of the removed static pod does not bring the mirror back.
    assert!(matches!(
        reporter.update_pod_status(&static_pod(), &running()).await,
        Err(ReportError::NotFound(_))
    ));
    no_request(&mut handle, Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn a_mirror_of_another_version_is_replaced() {
    let (client, mut handle) = mock_client();
    let reporter = ApiServerReporter::new(client);
    let r = reporter.clone();
    let call = tokio::spawn(async move { r.update_pod_status(&static_pod(), &running()).await });
    next(&mut handle)
        .await
        .ok(mirror_of_static("old-mirror", "old-hash"));
    let delete = next(&mut handle).await;
    assert_eq!(delete.method, Method::DELETE);
    assert_eq!(delete.body["preconditions"], json!({"uid": "old-mirror"}));
    delete.ok(mirror_of_static("old-mirror", "old-hash"));
    let node = next(&mut handle).await;
    node.ok(node_json("node-uid", json!({})));
    let create = next(&mut handle).await;
    assert_eq!(create.method, Method::POST);
    create.reply(201, mirror_of_static("new-mirror", "static-uid"));
    let patch = next(&mut handle).await;
    assert_eq!(patch.body["metadata"], json!({"uid": "new-mirror"}));
    patch.ok(mirror_of_static("new-mirror", "static-uid"));
    call.await.unwrap().unwrap();
}

// ---------------------------------------------------------------- events

fn backoff_event() -> KubeletEvent {
    KubeletEvent {
        involved: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some("web".into()),
            namespace: Some("ns".into()),
            uid: Some("u1".into()),
            field_path: Some("spec.containers{c}".into()),
            ..Default::default()
        },
        type_: EventType::Warning,
        reason: "BackOff".into(),
        message: "Back-off restarting failed container c".into(),
    }
}

#[tokio::test(start_paused = true)]
async fn events_are_created_then_counted_then_rate_limited() {
    let (client, mut handle) = mock_client();
    let reporter = ApiServerReporter::new(client);
    let r = reporter.clone();
    let call = tokio::spawn(async move { r.record_event(&backoff_event()).await });
    let create = next(&mut handle).await;
    assert_eq!(create.method, Method::POST);
    assert_eq!(create.path, "/api/v1/namespaces/ns/events");
    assert_eq!(create.body["reason"], "BackOff");
    assert_eq!(create.body["type"], "Warning");
    assert_eq!(create.body["count"], 1);
    assert_eq!(
        create.body["source"],
        json!({"component": "kubelet", "host": NODE})
    );
    assert_eq!(
        create.body["involvedObject"]["fieldPath"],
        "spec.containers{c}"
    );
    let name = create.body["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(name.starts_with("web."));
    let created = create.body.clone();
    create.reply(201, created);
    call.await.unwrap().unwrap();

    for count in 2..=25 {
        let r = reporter.clone();
        let call = tokio::spawn(async move { r.record_event(&backoff_event()).await });
        let patch = next(&mut handle).await;
        assert_eq!(patch.method, Method::PATCH);
        assert_eq!(patch.path, format!("/api/v1/namespaces/ns/events/{name}"));
        assert_eq!(patch.body["count"], count);
        assert!(patch.body["lastTimestamp"].is_string());
        patch.ok(json!({"apiVersion": "v1", "kind": "Event",
            "metadata": {"name": name, "namespace": "ns"}, "involvedObject": {}}));
        call.await.unwrap().unwrap();
    }
    // The 26th within the burst is dropped without a request.
    reporter.record_event(&backoff_event()).await.unwrap();
    no_request(&mut handle, Duration::from_secs(5)).await;
    // Five minutes later one more goes through.
    tokio::time::sleep(Duration::from_secs(300)).await;
    let r = reporter.clone();
    let call = tokio::spawn(async move { r.record_event(&backoff_event()).await });
    let patch = next(&mut handle).await;
    assert_eq!(patch.body["count"], 26);
    // An expired event object is written anew.
    patch.fail(404, "NotFound");
    let create = next(&mut handle).await;
    assert_eq!(create.method, Method::POST);
    assert_eq!(create.body["metadata"]["name"], name.as_str());
    assert_eq!(create.body["count"], 26);
    let created = create.body.clone();
    create.reply(201, created);
    call.await.unwrap().unwrap();
}

// ---------------------------------------------------------------- fetcher

#[tokio::test(start_paused = true)]
async fn configmaps_and_secrets_are_cached_and_served_stale_through_an_outage() {
    let (client, mut handle) = mock_client();
    let fetcher = PodObjectFetcher::new(client);
    let f = fetcher.clone();
    let call = tokio::spawn(async move { f.get_configmap("ns", "cfg").await });
    let get = next(&mut handle).await;
    assert_eq!(
        (get.method.clone(), get.path.as_str()),
        (Method::GET, "/api/v1/namespaces/ns/configmaps/cfg")
    );
    get.ok(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "cfg", "namespace": "ns"}, "data": {"k": "v1"}}));
    assert_eq!(call.await.unwrap().unwrap().data.unwrap()["k"], "v1");
    // Within the TTL: from the cache.
    assert_eq!(
        fetcher
            .get_configmap("ns", "cfg")
            .await
            .unwrap()
            .data
            .unwrap()["k"],
        "v1"
    );
    no_request(&mut handle, Duration::from_secs(5)).await;

    tokio::time::sleep(DEFAULT_OBJECT_TTL).await;
    let f = fetcher.clone();
    let call = tokio::spawn(async move { f.get_configmap("ns", "cfg").await });
    next(&mut handle).await.unreachable();
    assert_eq!(call.await.unwrap().unwrap().data.unwrap()["k"], "v1");

    let f = fetcher.clone();
    let call = tokio::spawn(async move { f.get_secret("ns", "db").await });
    let get = next(&mut handle).await;
    assert_eq!(get.path, "/api/v1/namespaces/ns/secrets/db");
    get.fail(404, "NotFound");
    assert_eq!(
        call.await.unwrap().unwrap_err(),
        FetchError::NotFound {
            kind: "Secret",
            namespace: "ns".into(),
            name: "db".into()
        }
    );
}

#[tokio::test(start_paused = true)]
async fn tokens_are_requested_bound_to_the_pod_and_reused_until_80_percent_of_their_life() {
    let (client, mut handle) = mock_client();
    let fetcher = PodObjectFetcher::new(client);
    let bound = BoundPod {
        name: "web".into(),
        uid: "u1".into(),
    };
    let request = |f: PodObjectFetcher, b: BoundPod| {
        tokio::spawn(async move {
            f.request_token(
                "ns",
                "sa",
                &["api".to_string()],
                Duration::from_secs(3600),
                Some(b),
            )
            .await
        })
    };
    let answer = |exp: k8s_openapi::jiff::Timestamp, token: &str| {
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "metadata": {"name": "sa", "namespace": "ns"},
            "spec": {"audiences": ["api"]},
            "status": {"token": token, "expirationTimestamp": exp.to_string()}})
    };
    let call = request(fetcher.clone(), bound.clone());
    let post = next(&mut handle).await;
    assert_eq!(post.method, Method::POST);
    assert_eq!(post.path, "/api/v1/namespaces/ns/serviceaccounts/sa/token");
    assert_eq!(post.body["spec"]["audiences"], json!(["api"]));
    assert_eq!(post.body["spec"]["expirationSeconds"], 3600);
    assert_eq!(
        post.body["spec"]["boundObjectRef"],
        json!({"apiVersion": "v1", "kind": "Pod", "name": "web", "uid": "u1"})
    );
    let exp =
        k8s_openapi::jiff::Timestamp::now() + k8s_openapi::jiff::SignedDuration::from_secs(3600);
    post.reply(201, answer(exp, "t1"));
    assert_eq!(call.await.unwrap().unwrap().token, "t1");

    // Reused before 80 % of an hour...
    tokio::time::sleep(Duration::from_secs(2000)).await;
    let token = request(fetcher.clone(), bound.clone())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(token.token, "t1");
    no_request(&mut handle, Duration::from_secs(1)).await;
    // ...and renewed after.
    tokio::time::sleep(Duration::from_secs(900)).await;
    let call = request(fetcher.clone(), bound.clone());
    next(&mut handle).await.reply(201, answer(exp, "t2"));
    assert_eq!(call.await.unwrap().unwrap().token, "t2");
}
