#![cfg(feature = "apiserver")]
//! The fake kube-apiserver driven through kube-rs: create/get/update/delete codes,
//! optimistic concurrency, status subresources, the three patch types, graceful pod
//! deletion, selectors, pagination and TokenRequest. Expected answers are those
//! kube-apiserver documents (API conventions, "Kubernetes API Concepts").

use std::time::Duration;

use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Namespace, Node, Pod, ServiceAccount};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use kubelet_core::testing::apiserver::DeleteOptions;
use kubelet_core::testing::{FakeApiServer, FakeApiServerError};
use serde_json::json;

async fn client_for(server: &FakeApiServer) -> Client {
    let kc = Kubeconfig::from_yaml(&server.kubeconfig()).expect("kubeconfig parses");
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig is usable");
    Client::try_from(config).expect("client")
}

fn pod(name: &str, node: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "web"}},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox:1.36"}]}
    }))
    .expect("pod")
}

/// A JSON patch of pod `default/p` (kube's `Patch::Json` needs its `jsonpatch` feature).
async fn json_patch(client: &Client, ops: serde_json::Value) -> Result<Pod, kube::Error> {
    let req = http::Request::patch("/api/v1/namespaces/default/pods/p")
        .header("content-type", "application/json-patch+json")
        .body(serde_json::to_vec(&ops).unwrap())
        .unwrap();
    client.request::<Pod>(req).await
}

fn api_err(e: kube::Error) -> (u16, String, String) {
    match e {
        kube::Error::Api(s) => (s.code, s.reason.clone(), s.message.clone()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn create_get_update_delete_answer_like_kube_apiserver() {
    let server = FakeApiServer::start().await.unwrap();
    let client = client_for(&server).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    let created = pods
        .create(&PostParams::default(), &pod("p1", ""))
        .await
        .unwrap();
    let meta = &created.metadata;
    assert_eq!(meta.namespace.as_deref(), Some("default"));
    assert!(meta.uid.as_ref().is_some_and(|u| u.len() == 36));
    assert!(meta.creation_timestamp.is_some());
    assert_eq!(meta.generation, Some(1));
    let rv1: u64 = meta.resource_version.as_ref().unwrap().parse().unwrap();
    let spec = created.spec.as_ref().unwrap();
    assert_eq!(spec.restart_policy.as_deref(), Some("Always"));
    assert_eq!(spec.termination_grace_period_seconds, Some(30));
    assert_eq!(
        spec.containers[0].image_pull_policy.as_deref(),
        Some("IfNotPresent")
    );
    assert_eq!(
        created.status.as_ref().unwrap().phase.as_deref(),
        Some("Pending")
    );

    // 409 AlreadyExists, 404 NotFound, 422 Invalid, 404 for a missing namespace.
    let (code, reason, msg) = api_err(
        pods.create(&PostParams::default(), &pod("p1", ""))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (code, reason.as_str(), msg.as_str()),
        (409, "AlreadyExists", "pods \"p1\" already exists")
    );
    let (code, reason, msg) = api_err(pods.get("nope").await.unwrap_err());
    assert_eq!(
        (code, reason.as_str(), msg.as_str()),
        (404, "NotFound", "pods \"nope\" not found")
    );
    let mut bad = pod("p2", "");
    bad.spec.as_mut().unwrap().containers.clear();
    let (code, reason, msg) = api_err(pods.create(&PostParams::default(), &bad).await.unwrap_err());
    assert_eq!((code, reason.as_str()), (422, "Invalid"));
    assert_eq!(
        msg,
        "Pod \"p2\" is invalid: spec.containers: Required value"
    );
    let elsewhere: Api<Pod> = Api::namespaced(client.clone(), "missing");
    let (code, _, msg) = api_err(
        elsewhere
            .create(&PostParams::default(), &pod("p3", ""))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (code, msg.as_str()),
        (404, "namespaces \"missing\" not found")
    );

    // A pod's status is the server's on create; a resourceVersion may not be sent.
    let mut with_status = pod("p4", "");
    with_status.status =
        Some(serde_json::from_value(json!({"phase": "Running", "podIP": "1.2.3.4"})).unwrap());
    let p4 = pods
        .create(&PostParams::default(), &with_status)
        .await
        .unwrap();
    let st = p4.status.unwrap();
    assert_eq!((st.phase.as_deref(), st.pod_ip), (Some("Pending"), None));
    let mut with_rv = pod("p5", "");
    with_rv.metadata.resource_version = Some("7".into());
    assert_eq!(
        api_err(
            pods.create(&PostParams::default(), &with_rv)
                .await
                .unwrap_err()
        )
        .0,
        500
    );

    // generateName.
    let mut gen_pod = pod("", "");
    gen_pod.metadata.name = None;
    gen_pod.metadata.generate_name = Some("web-".into());
    let g = pods.create(&PostParams::default(), &gen_pod).await.unwrap();
    let gname = g.metadata.name.unwrap();
    assert!(gname.starts_with("web-") && gname.len() == 9, "{gname}");

    // PUT: 200, new RV; a stale RV is a 409 Conflict.
    let mut changed = created.clone();
    changed
        .metadata
        .labels
        .get_or_insert_default()
        .insert("x".into(), "y".into());
    let updated = pods
        .replace("p1", &PostParams::default(), &changed)
        .await
        .unwrap();
    let rv2: u64 = updated
        .metadata
        .resource_version
        .as_ref()
        .unwrap()
        .parse()
        .unwrap();
    assert!(rv2 > rv1);
    assert_eq!(
        updated.metadata.generation,
        Some(1),
        "a label change is not a spec change"
    );
    let (code, reason, msg) = api_err(
        pods.replace("p1", &PostParams::default(), &changed)
            .await
            .unwrap_err(),
    );
    assert_eq!((code, reason.as_str()), (409, "Conflict"));
    assert_eq!(
        msg,
        "Operation cannot be fulfilled on pods \"p1\": the object has been modified; please apply your changes to the latest version and try again"
    );
    // A PUT that changes nothing writes nothing: same RV.
    let same = pods
        .replace("p1", &PostParams::default(), &updated)
        .await
        .unwrap();
    assert_eq!(
        same.metadata.resource_version,
        updated.metadata.resource_version
    );
    // Pod spec is immutable but for the image.
    let mut respec = same.clone();
    respec.spec.as_mut().unwrap().restart_policy = Some("Never".into());
    let (code, reason, _) = api_err(
        pods.replace("p1", &PostParams::default(), &respec)
            .await
            .unwrap_err(),
    );
    assert_eq!((code, reason.as_str()), (422, "Invalid"));
    let mut reimage = same.clone();
    reimage.spec.as_mut().unwrap().containers[0].image = Some("busybox:1.37".into());
    let reimaged = pods
        .replace("p1", &PostParams::default(), &reimage)
        .await
        .unwrap();
    assert_eq!(reimaged.metadata.generation, Some(2));

    // DELETE of an unbound pod is immediate; then 404.
    let gone = pods.delete("p1", &DeleteParams::default()).await.unwrap();
    assert!(gone.is_left());
    assert_eq!(api_err(pods.get("p1").await.unwrap_err()).0, 404);
    assert_eq!(
        api_err(
            pods.delete("p1", &DeleteParams::default())
                .await
                .unwrap_err()
        )
        .0,
        404
    );

    // Cluster-scoped: nodes; default namespaces exist.
    let nodes: Api<Node> = Api::all(client.clone());
    let n = nodes
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "n1"}})).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(n.metadata.namespace, None);
    assert_eq!(n.metadata.generation, None);
    let namespaces: Api<Namespace> = Api::all(client);
    let names: Vec<String> = namespaces
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    for want in ["default", "kube-node-lease", "kube-system"] {
        assert!(names.iter().any(|n| n == want), "{names:?}");
    }
}

#[tokio::test]
async fn status_subresource_and_main_resource_change_only_their_part() {
    let server = FakeApiServer::start().await.unwrap();
    let client = client_for(&server).await;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let p = pods
        .create(&PostParams::default(), &pod("p", "n1"))
        .await
        .unwrap();

    // A status write that also tries to change labels: only status changes.
    let mut s = p.clone();
    s.status.as_mut().unwrap().phase = Some("Running".into());
    s.metadata
        .labels
        .get_or_insert_default()
        .insert("sneaky".into(), "1".into());
    let after = pods
        .replace_status("p", &PostParams::default(), &s)
        .await
        .unwrap();
    assert_eq!(
        after.status.as_ref().unwrap().phase.as_deref(),
        Some("Running")
    );
    assert!(
        !after
            .metadata
            .labels
            .as_ref()
            .unwrap()
            .contains_key("sneaky")
    );

    // A main-resource write that tries to change status: status stays.
    let mut m = after.clone();
    m.status.as_mut().unwrap().phase = Some("Failed".into());
    m.metadata
        .labels
        .get_or_insert_default()
        .insert("ok".into(), "1".into());
    let after = pods.replace("p", &PostParams::default(), &m).await.unwrap();
    assert_eq!(
        after.status.as_ref().unwrap().phase.as_deref(),
        Some("Running")
    );
    assert!(after.metadata.labels.as_ref().unwrap().contains_key("ok"));

    // Same for patches.
    let after = pods
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Failed"}})),
        )
        .await
        .unwrap();
    assert_eq!(
        after.status.as_ref().unwrap().phase.as_deref(),
        Some("Running")
    );
    let after = pods
        .patch_status(
            "p",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"z": "1"}}, "status": {"message": "hi"}})),
        )
        .await
        .unwrap();
    assert_eq!(
        after.status.as_ref().unwrap().message.as_deref(),
        Some("hi")
    );
    assert!(!after.metadata.labels.as_ref().unwrap().contains_key("z"));
}

#[tokio::test]
async fn merge_json_and_strategic_patches_with_keyed_lists() {
    let server = FakeApiServer::start().await.unwrap();
    let client = client_for(&server).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let p = pods
        .create(&PostParams::default(), &pod("p", "n1"))
        .await
        .unwrap();
    let uid = p.metadata.uid.clone().unwrap();

    // Strategic merge of pod status, as the kubelet's status manager sends it: the UID is
    // a precondition, conditions merge on type, container statuses on name, podIPs on ip.
    let scheduled = json!({"status": {"conditions": [{"type": "PodScheduled", "status": "True"}]}});
    pods.patch_status("p", &PatchParams::default(), &Patch::Strategic(scheduled))
        .await
        .unwrap();
    let patch = json!({
        "metadata": {"uid": uid},
        "status": {
            "$setElementOrder/conditions": [{"type": "Initialized"}, {"type": "Ready"}, {"type": "PodScheduled"}],
            "conditions": [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"}],
            "containerStatuses": [{"name": "c", "ready": true, "restartCount": 0, "image": "busybox:1.36", "imageID": "", "started": true, "state": {"running": {}}}],
            "podIPs": [{"ip": "10.1.0.5"}],
            "podIP": "10.1.0.5",
            "phase": "Running"
        }
    });
    let after = pods
        .patch_status("p", &PatchParams::default(), &Patch::Strategic(patch))
        .await
        .unwrap();
    let st = after.status.unwrap();
    let types: Vec<_> = st
        .conditions
        .unwrap()
        .into_iter()
        .map(|c| c.type_)
        .collect();
    assert_eq!(types, ["Initialized", "Ready", "PodScheduled"]);
    assert_eq!(st.container_statuses.unwrap()[0].name, "c");
    assert_eq!(st.pod_ips.unwrap().len(), 1);
    // A second IP merged in without an order goes first; podIP then disagrees with
    // podIPs[0] and wins (kube-apiserver v1.28 does the same): one IP stays.
    let ips = |p: &Pod| -> Vec<String> {
        let st = p.status.as_ref().unwrap();
        st.pod_ips.iter().flatten().map(|i| i.ip.clone()).collect()
    };
    let after = pods
        .patch_status(
            "p",
            &PatchParams::default(),
            &Patch::Strategic(json!({"status": {"podIPs": [{"ip": "fd00::5"}]}})),
        )
        .await
        .unwrap();
    assert_eq!(ips(&after), ["10.1.0.5"]);
    // With the order given, both stay.
    let after = pods
        .patch_status(
            "p",
            &PatchParams::default(),
            &Patch::Strategic(json!({"status": {
                "$setElementOrder/podIPs": [{"ip": "10.1.0.5"}, {"ip": "fd00::5"}],
                "podIPs": [{"ip": "fd00::5"}],
            }})),
        )
        .await
        .unwrap();
    assert_eq!(ips(&after), ["10.1.0.5", "fd00::5"]);

    // A wrong UID in the patch fails the update validation (the UID is immutable): 422, as
    // kube-apiserver v1.28 answers it.
    let (code, reason, msg) = api_err(
        pods.patch_status(
            "p",
            &PatchParams::default(),
            &Patch::Strategic(json!({"metadata": {"uid": "other"}, "status": {"phase": "Failed"}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!((code, reason.as_str()), (422, "Invalid"));
    assert_eq!(
        msg,
        "Pod \"p\" is invalid: metadata.uid: Invalid value: \"other\": field is immutable"
    );

    // JSON patch with a failing test op: 422, nothing changed.
    let before_rv = pods.get("p").await.unwrap().metadata.resource_version;
    let (code, _, _) = api_err(
        json_patch(
            &client,
            json!([
                {"op": "test", "path": "/metadata/labels/app", "value": "db"},
                {"op": "replace", "path": "/metadata/labels/app", "value": "x"}
            ]),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(code, 422);
    assert_eq!(
        pods.get("p").await.unwrap().metadata.resource_version,
        before_rv
    );
    let after = json_patch(
        &client,
        json!([
            {"op": "test", "path": "/metadata/labels/app", "value": "web"},
            {"op": "add", "path": "/metadata/annotations", "value": {"a": "1"}}
        ]),
    )
    .await
    .unwrap();
    assert_eq!(after.metadata.annotations.unwrap()["a"], "1");

    // Merge patch: null deletes a key.
    let after = pods
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"a": null}, "labels": {"b": "2"}}})),
        )
        .await
        .unwrap();
    assert!(after.metadata.annotations.unwrap_or_default().is_empty());
    assert_eq!(after.metadata.labels.unwrap()["b"], "2");

    // Node status: conditions and addresses merge on type, images are replaced.
    let nodes: Api<Node> = Api::all(client);
    nodes
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "n1"}})).unwrap(),
        )
        .await
        .unwrap();
    let first = json!({"status": {
        "conditions": [{"type": "Ready", "status": "False"}, {"type": "MemoryPressure", "status": "False"}],
        "addresses": [{"type": "Hostname", "address": "n1"}],
        "images": [{"names": ["a:1"], "sizeBytes": 1}]
    }});
    nodes
        .patch_status("n1", &PatchParams::default(), &Patch::Strategic(first))
        .await
        .unwrap();
    let second = json!({"status": {
        "conditions": [{"type": "Ready", "status": "True"}],
        "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}],
        "images": [{"names": ["b:1"], "sizeBytes": 2}]
    }});
    let n = nodes
        .patch_status("n1", &PatchParams::default(), &Patch::Strategic(second))
        .await
        .unwrap();
    let st = n.status.unwrap();
    let conds = st.conditions.unwrap();
    assert_eq!(conds.len(), 2);
    assert_eq!(
        conds.iter().find(|c| c.type_ == "Ready").unwrap().status,
        "True"
    );
    assert_eq!(st.addresses.unwrap().len(), 2);
    assert_eq!(st.images.unwrap()[0].names.as_ref().unwrap()[0], "b:1");

    // Server-side apply is refused with 415.
    let (code, reason, _) = api_err(
        pods.patch(
            "p",
            &PatchParams::apply("test"),
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!((code, reason.as_str()), (415, "UnsupportedMediaType"));
    let types: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.method == "PATCH")
        .filter_map(|r| r.content_type)
        .collect();
    for ct in [
        "application/strategic-merge-patch+json",
        "application/json-patch+json",
        "application/merge-patch+json",
        "application/apply-patch+yaml",
    ] {
        assert!(types.iter().any(|t| t == ct), "{ct} not in {types:?}");
    }
}

#[tokio::test]
async fn bound_pods_are_deleted_gracefully_until_the_final_delete_with_uid() {
    let server = FakeApiServer::start().await.unwrap();
    let client = client_for(&server).await;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let mut p = pod("p", "n1");
    p.spec.as_mut().unwrap().termination_grace_period_seconds = Some(45);
    let p = pods.create(&PostParams::default(), &p).await.unwrap();
    let uid = p.metadata.uid.clone().unwrap();

    let deleting = pods
        .delete("p", &DeleteParams::default())
        .await
        .unwrap()
        .left()
        .unwrap();
    assert_eq!(deleting.metadata.deletion_grace_period_seconds, Some(45));
    assert!(deleting.metadata.deletion_timestamp.is_some());
    let still = pods.get("p").await.unwrap();
    assert_eq!(still.metadata.deletion_grace_period_seconds, Some(45));
    // A shorter grace period shortens it; a longer one does not extend it.
    pods.delete(
        "p",
        &DeleteParams {
            grace_period_seconds: Some(10),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    pods.delete(
        "p",
        &DeleteParams {
            grace_period_seconds: Some(100),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        pods.get("p")
            .await
            .unwrap()
            .metadata
            .deletion_grace_period_seconds,
        Some(10)
    );

    // The kubelet's final delete: grace 0 with a UID precondition. A wrong UID is a 409.
    let wrong = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: Some("not-it".into()),
            resource_version: None,
        }),
        ..Default::default()
    };
    let (code, reason, msg) = api_err(pods.delete("p", &wrong).await.unwrap_err());
    assert_eq!((code, reason.as_str()), (409, "Conflict"));
    assert!(
        msg.contains("Precondition failed: UID in precondition: not-it"),
        "{msg}"
    );
    let right = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..Default::default()
    };
    pods.delete("p", &right).await.unwrap();
    assert_eq!(api_err(pods.get("p").await.unwrap_err()).0, 404);

    // A resourceVersion precondition, through the direct store access.
    let c = server.create(&pod("q", "")).unwrap();
    let err = server
        .delete::<Pod>(
            "default",
            "q",
            &DeleteOptions {
                resource_version: Some("1".into()),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(
        matches!(err, FakeApiServerError::Api(ref e) if e.code == 409),
        "{err}"
    );
    server
        .delete::<Pod>(
            "default",
            "q",
            &DeleteOptions {
                resource_version: c.metadata.resource_version.clone(),
                ..Default::default()
            },
        )
        .unwrap();
    assert!(server.try_get::<Pod>("default", "q").unwrap().is_none());
}

#[tokio::test]
async fn lists_filter_by_field_and_label_selectors_and_paginate() {
    let server = FakeApiServer::start().await.unwrap();
    let client = client_for(&server).await;
    let pods: Api<Pod> = Api::all(client.clone());
    for (name, node, app) in [
        ("a", "n1", "web"),
        ("b", "n2", "web"),
        ("c", "n1", "db"),
        ("d", "", "web"),
    ] {
        let mut p = pod(name, node);
        p.metadata
            .labels
            .as_mut()
            .unwrap()
            .insert("app".into(), app.into());
        server.create(&p).unwrap();
    }
    let names = |l: kube::core::ObjectList<Pod>| -> Vec<String> {
        l.items
            .into_iter()
            .filter_map(|p| p.metadata.name)
            .collect()
    };
    let l = pods
        .list(&ListParams::default().fields("spec.nodeName=n1"))
        .await
        .unwrap();
    assert_eq!(names(l), ["a", "c"]);
    let l = pods
        .list(&ListParams::default().fields("spec.nodeName==n1,metadata.name!=a"))
        .await
        .unwrap();
    assert_eq!(names(l), ["c"]);
    let l = pods
        .list(&ListParams::default().fields("spec.nodeName="))
        .await
        .unwrap();
    assert_eq!(names(l), ["d"]);
    let l = pods
        .list(&ListParams::default().labels("app in (db, cache)"))
        .await
        .unwrap();
    assert_eq!(names(l), ["c"]);
    let l = pods
        .list(&ListParams::default().labels("app notin (db),!nothere"))
        .await
        .unwrap();
    assert_eq!(names(l), ["a", "b", "d"]);
    let l = pods
        .list(&ListParams::default().labels("app,app!=web"))
        .await
        .unwrap();
    assert_eq!(names(l), ["c"]);
    let (code, reason, msg) = api_err(
        pods.list(&ListParams::default().fields("spec.bogus=1"))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (code, reason.as_str(), msg.as_str()),
        (400, "BadRequest", "field label not supported: spec.bogus")
    );

    // limit/continue: pages of 3 then 1, one resourceVersion for all.
    let first = pods.list(&ListParams::default().limit(3)).await.unwrap();
    let token = first.metadata.continue_.clone().expect("continue token");
    assert_eq!(first.metadata.remaining_item_count, Some(1));
    server.create(&pod("e", "")).unwrap();
    let second = pods
        .list(&ListParams::default().limit(3).continue_token(&token))
        .await
        .unwrap();
    assert_eq!(names(first), ["a", "b", "c"]);
    assert_eq!(
        names(second),
        ["d"],
        "the next page is read at the first page's resourceVersion"
    );

    // Exact resourceVersion: the list as it was.
    let now = pods.list(&ListParams::default()).await.unwrap();
    assert_eq!(now.items.len(), 5);
    let rv_before_e = server
        .get::<Pod>("default", "e")
        .unwrap()
        .metadata
        .resource_version
        .unwrap()
        .parse::<u64>()
        .unwrap()
        - 1;
    let old = pods
        .list(
            &ListParams::default()
                .at(&rv_before_e.to_string())
                .matching(kube::api::VersionMatch::Exact),
        )
        .await
        .unwrap();
    assert_eq!(old.items.len(), 4);
}

#[tokio::test]
async fn configmaps_serviceaccount_tokens_leases_and_events() {
    let server = FakeApiServer::start().await.unwrap();
    let client = client_for(&server).await;
    let p = server.create(&pod("p", "n1")).unwrap();

    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "cm"}, "data": {"k": "v"}})).unwrap(),
    )
    .await
    .unwrap();
    let cm = cms.get("cm").await.unwrap();
    assert_eq!(cm.data.as_ref().unwrap()["k"], "v");
    // Registries other than pods and namespaces answer a DELETE with a Success Status.
    let answer = cms.delete("cm", &DeleteParams::default()).await.unwrap();
    let status = answer.right().expect("a Status, not the object");
    assert!(status.is_success());
    let details = status.details.unwrap();
    assert_eq!(
        (details.name.as_str(), details.kind.as_str()),
        ("cm", "configmaps")
    );
    assert_eq!(Some(details.uid), cm.metadata.uid);

    // TokenRequest bound to the pod.
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
    let tr: TokenRequest = serde_json::from_value(json!({
        "spec": {
            "audiences": ["api"],
            "expirationSeconds": 3600,
            "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "p", "uid": p.metadata.uid}
        }
    }))
    .unwrap();
    let out = sas
        .create_token_request("default", &PostParams::default(), &tr)
        .await
        .unwrap();
    let status = out.status.unwrap();
    assert_eq!(status.token.unwrap().split('.').count(), 3);
    let exp = status.expiration_timestamp.unwrap().0;
    let ahead = exp.duration_since(k8s_openapi::jiff::Timestamp::now());
    assert!(
        ahead > k8s_openapi::jiff::SignedDuration::from_secs(3500),
        "{ahead:?}"
    );
    let mut short = tr.clone();
    short.spec.as_mut().unwrap().expiration_seconds = Some(60);
    assert_eq!(
        api_err(
            sas.create_token_request("default", &PostParams::default(), &short)
                .await
                .unwrap_err()
        )
        .0,
        422
    );
    assert_eq!(
        api_err(
            sas.create_token_request("nobody", &PostParams::default(), &tr)
                .await
                .unwrap_err()
        )
        .0,
        404
    );

    // Lease renewals with optimistic concurrency.
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let l = leases
        .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "n1"}, "spec": {"holderIdentity": "n1", "leaseDurationSeconds": 40}})).unwrap())
        .await
        .unwrap();
    let mut renew = l.clone();
    renew.spec.as_mut().unwrap().lease_duration_seconds = Some(41);
    leases
        .replace("n1", &PostParams::default(), &renew)
        .await
        .unwrap();
    assert_eq!(
        api_err(
            leases
                .replace("n1", &PostParams::default(), &renew)
                .await
                .unwrap_err()
        )
        .0,
        409
    );

    // A core/v1 Event is visible as events.k8s.io/v1 with its fields renamed, and back.
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    events
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "p.1"},
                "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"},
                "reason": "Pulled", "message": "pulled it", "type": "Normal", "count": 1,
                "source": {"component": "kubelet", "host": "n1"}
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let new_events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(client.clone(), "default");
    let e = new_events.get("p.1").await.unwrap();
    assert_eq!(e.note.as_deref(), Some("pulled it"));
    assert_eq!(e.regarding.as_ref().unwrap().name.as_deref(), Some("p"));
    assert_eq!(e.deprecated_count, Some(1));
    // events.k8s.io/v1 requires what the new Events API requires.
    let incomplete: k8s_openapi::api::events::v1::Event =
        serde_json::from_value(json!({"metadata": {"name": "p.2"}, "regarding": {"kind": "Pod", "name": "p"}, "note": "x"})).unwrap();
    let (code, reason, msg) = api_err(
        new_events
            .create(&PostParams::default(), &incomplete)
            .await
            .unwrap_err(),
    );
    assert_eq!((code, reason.as_str()), (422, "Invalid"));
    assert!(
        msg.starts_with("Event.events.k8s.io \"p.2\" is invalid: [eventTime: Required value"),
        "{msg}"
    );
    // A core Event about an object of another namespace is refused.
    let foreign: Event = serde_json::from_value(json!({
        "metadata": {"name": "p.3"},
        "involvedObject": {"kind": "Pod", "name": "p", "namespace": "kube-system"},
        "reason": "Pulled", "message": "m", "type": "Normal"
    }))
    .unwrap();
    assert_eq!(
        api_err(
            events
                .create(&PostParams::default(), &foreign)
                .await
                .unwrap_err()
        )
        .0,
        422
    );
    let by_reason = events
        .list(&ListParams::default().fields("involvedObject.name=p,reason=Pulled"))
        .await
        .unwrap();
    assert_eq!(by_reason.items.len(), 1);
}

#[tokio::test]
async fn wait_for_sees_changes_made_over_http() {
    let server = FakeApiServer::start().await.unwrap();
    let client = client_for(&server).await;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    server.create(&pod("p", "n1")).unwrap();
    let waiter = server.wait_for::<Pod, _>("default", "p", Duration::from_secs(10), |p| {
        p.and_then(|p| p.status.as_ref()?.phase.as_deref()) == Some("Running")
    });
    let writer = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        pods.patch_status(
            "p",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Running"}})),
        )
        .await
        .unwrap();
    };
    let (seen, ()) = tokio::join!(waiter, writer);
    assert!(seen.unwrap().is_some());
    let err = server
        .wait_for::<Pod, _>("default", "p", Duration::from_millis(100), |p| p.is_none())
        .await
        .unwrap_err();
    assert!(matches!(err, FakeApiServerError::Timeout { .. }), "{err}");
}
