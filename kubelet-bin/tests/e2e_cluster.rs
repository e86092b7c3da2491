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
    pub mod cluster;
    #[allow(dead_code)]
    pub mod node;
}

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, PostParams};
use support::cluster::{
    DEADLINE, IMAGE, POLL, SERVE, api_pod, assert_one_status_per_container, condition,
    ensure_configmap, node_ready, start_cluster, start_fake_cluster, start_reachable_cluster,
};
use support::node::{NODE, container, phase, runtime_id, uid};

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

    // A container the runtime cannot start: the event carries the runtime's own message,
    // as the reference's `Error: <status message>` (no gRPC wrapping, no call context).
    let mut unstartable = api_pod("unstartable", "Never", 1, &[("app", "")]);
    if let Some(c) = unstartable
        .spec
        .as_mut()
        .and_then(|s| s.containers.first_mut())
    {
        c.command = Some(vec!["/no/such/binary".to_string()]);
    }
    let unstartable = cluster.create_pod(&unstartable).await;
    let unstartable_uid = uid(&unstartable);
    let failed = cluster
        .wait(
            "the Failed event of the unstartable container",
            async || {
                cluster
                    .events_about(&unstartable_uid)
                    .await
                    .into_iter()
                    .find(|e| e.reason.as_deref() == Some("Failed"))
            },
            |e| e.is_some(),
        )
        .await
        .and_then(|e| e.message)
        .unwrap_or_default();
    assert!(
        failed.starts_with("Error: failed to ") && !failed.contains("rpc error"),
        "{failed}"
    );
    assert!(failed.contains("/no/such/binary"), "{failed}");
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

/// The container's environment from the API server's objects: `valueFrom` ConfigMap and
/// Secret keys, `envFrom` with a prefix (an invalid key skipped with the reference's
/// warning), and the service variables of the `kubernetes` service and of a Service of the
/// pod's namespace, fed into `$(VAR)` expansion; a container whose ConfigMap is missing
/// waits in CreateContainerConfigError and starts once it is created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_from_config_maps_secrets_and_services() {
    let Some(cluster) = start_cluster(&[]).await else {
        return;
    };
    // "1st" is a valid ConfigMap key but no valid variable name.
    ensure_configmap(&cluster, "env-settings", &[("mode", "fast"), ("1st", "x")]).await;
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "env-creds", "namespace": "default"},
        "stringData": {"password": "s3cret"},
    }))
    .expect("Secret JSON");
    Api::<k8s_openapi::api::core::v1::Secret>::namespaced(cluster.kube.clone(), "default")
        .create(&PostParams::default(), &secret)
        .await
        .expect("create Secret");
    let service: k8s_openapi::api::core::v1::Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "backend", "namespace": "default"},
        "spec": {"ports": [{"name": "http", "port": 8080}]},
    }))
    .expect("Service JSON");
    let service =
        Api::<k8s_openapi::api::core::v1::Service>::namespaced(cluster.kube.clone(), "default")
            .create(&PostParams::default(), &service)
            .await
            .expect("create Service");
    let backend_ip = service
        .spec
        .and_then(|s| s.cluster_ip)
        .expect("the API server gives the service an IP");
    let kubernetes_ip =
        Api::<k8s_openapi::api::core::v1::Service>::namespaced(cluster.kube.clone(), "default")
            .get("kubernetes")
            .await
            .expect("the API server's own service")
            .spec
            .and_then(|s| s.cluster_ip)
            .expect("its IP");

    let script = format!(
        "test \"$MODE\" = fast && test \"$PASSWORD\" = s3cret && test \"$CFG_mode\" = fast && \
         test \"$CFG_1st\" = x && test \"$mode\" = fast && \
         test \"$URL\" = \"http://{backend_ip}:8080/fast\" && \
         test \"$BACKEND_PORT_8080_TCP\" = \"tcp://{backend_ip}:8080\" && \
         test \"$BACKEND_SERVICE_PORT_HTTP\" = 8080 && \
         test \"$KUBERNETES_SERVICE_HOST\" = {kubernetes_ip} && echo env-ok"
    );
    let mut pod = api_pod("env-reader", "Never", 1, &[("app", &script)]);
    let env: serde_json::Value = serde_json::json!({
        "env": [
            {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "env-settings", "key": "mode"}}},
            {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "env-creds", "key": "password"}}},
            {"name": "URL", "value": "http://$(BACKEND_SERVICE_HOST):$(BACKEND_SERVICE_PORT)/$(MODE)"},
        ],
        "envFrom": [
            {"configMapRef": {"name": "env-settings"}},
            {"prefix": "CFG_", "configMapRef": {"name": "env-settings"}},
        ],
    });
    let app = &mut pod.spec.as_mut().expect("spec").containers[0];
    app.env = serde_json::from_value(env["env"].clone()).expect("env JSON");
    app.env_from = serde_json::from_value(env["envFrom"].clone()).expect("envFrom JSON");
    let created = cluster.create_pod(&pod).await;
    let done = cluster
        .wait_pod("env-reader", "finished", |p| {
            matches!(phase(p), "Succeeded" | "Failed")
        })
        .await;
    assert_eq!(
        phase(&done),
        "Succeeded",
        "the container did not see its environment: {:?}",
        container(&done, "app")
    );
    let pod_uid = created.metadata.uid.clone().expect("uid");
    let events = cluster.events_about(&pod_uid).await;
    let invalid: Vec<&Event> = events
        .iter()
        .filter(|e| e.reason.as_deref() == Some("InvalidEnvironmentVariableNames"))
        .collect();
    assert_eq!(invalid.len(), 1, "{events:#?}");
    assert_eq!(
        invalid[0].message.as_deref(),
        Some(
            "Keys [1st] from the EnvFrom configMap default/env-settings were skipped since they are considered invalid environment variable names."
        )
    );

    // A ConfigMap that does not exist yet: the container waits, then starts.
    let mut waiting_pod = api_pod(
        "env-waiter",
        "Never",
        1,
        &[("app", "test \"$LATER\" = now")],
    );
    waiting_pod.spec.as_mut().expect("spec").containers[0].env =
        serde_json::from_value(serde_json::json!([
            {"name": "LATER", "valueFrom": {"configMapKeyRef": {"name": "env-later", "key": "k"}}}
        ]))
        .expect("env JSON");
    cluster.create_pod(&waiting_pod).await;
    let waiting = cluster
        .wait_pod("env-waiter", "CreateContainerConfigError", |p| {
            container(p, "app")
                .and_then(|c| c.state.as_ref())
                .and_then(|s| s.waiting.as_ref())
                .is_some_and(|w| w.reason.as_deref() == Some("CreateContainerConfigError"))
        })
        .await;
    let message = container(&waiting, "app")
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.waiting.as_ref())
        .and_then(|w| w.message.clone());
    assert_eq!(
        message.as_deref(),
        Some("configmap \"env-later\" not found")
    );
    ensure_configmap(&cluster, "env-later", &[("k", "now")]).await;
    let done = cluster
        .wait_pod("env-waiter", "finished", |p| {
            matches!(phase(p), "Succeeded" | "Failed")
        })
        .await;
    assert_eq!(phase(&done), "Succeeded", "{:?}", container(&done, "app"));
}

/// `imagePullSecrets` to a real registry: the kubelet reads the pod's
/// `kubernetes.io/dockerconfigjson` Secret from the API server and hands the matching
/// credentials to containerd with the pull; without the secret the pull gets the registry's
/// 401 and the container waits in ErrImagePull.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_pull_secrets_reach_a_private_registry() {
    let registry = tokio::task::spawn_blocking(|| {
        kubelet_cri::test_registry::TestRegistry::start("robot", "s3cret")
    })
    .await
    .expect("join")
    .expect("registry");
    let Some(registry) = registry else { return };
    let image = tokio::task::block_in_place(|| registry.push_busybox("team/busybox:private"))
        .expect("push");
    let Some(cluster) = start_cluster(&[]).await else {
        return;
    };
    let config = serde_json::json!({"auths": {registry.host(): {"username": "robot", "password": "s3cret"}}});
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "registry-creds", "namespace": "default"},
        "type": "kubernetes.io/dockerconfigjson",
        "stringData": {".dockerconfigjson": config.to_string()},
    }))
    .expect("Secret JSON");
    Api::<k8s_openapi::api::core::v1::Secret>::namespaced(cluster.kube.clone(), "default")
        .create(&PostParams::default(), &secret)
        .await
        .expect("create Secret");

    let private_pod = |name: &str, secret: Option<&str>| {
        let mut pod = api_pod(name, "Never", 1, &[("app", "echo pulled")]);
        let spec = pod.spec.as_mut().expect("spec");
        spec.containers[0].image = Some(image.clone());
        spec.image_pull_secrets = secret
            .map(|s| vec![k8s_openapi::api::core::v1::LocalObjectReference { name: s.into() }]);
        pod
    };
    cluster.create_pod(&private_pod("anonymous", None)).await;
    let refused = cluster
        .wait_pod("anonymous", "ErrImagePull", |p| {
            container(p, "app")
                .and_then(|c| c.state.as_ref())
                .and_then(|s| s.waiting.as_ref())
                .is_some_and(|w| {
                    matches!(
                        w.reason.as_deref(),
                        Some("ErrImagePull" | "ImagePullBackOff")
                    )
                })
        })
        .await;
    let message = container(&refused, "app")
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.waiting.as_ref())
        .and_then(|w| w.message.clone())
        .unwrap_or_default();
    assert!(message.contains("401 Unauthorized"), "{message}");

    cluster
        .create_pod(&private_pod("authorized", Some("registry-creds")))
        .await;
    let done = cluster
        .wait_pod("authorized", "finished", |p| {
            matches!(phase(p), "Succeeded" | "Failed")
        })
        .await;
    assert_eq!(phase(&done), "Succeeded", "{:?}", container(&done, "app"));
    let app = container(&done, "app").expect("status");
    assert_eq!(app.image, image);
}
