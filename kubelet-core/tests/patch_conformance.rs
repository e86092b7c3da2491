#![cfg(feature = "apiserver")]
//! The fake API server against the real kube-apiserver: every case sends the same pod status
//! patches, as the node `system:node:n1`, to the fake and (with `KUBELET_TEST_ASSETS`) to a
//! real kube-apiserver started by the envtest harness, and requires the same outcome from
//! both: the stored status, or the error code, reason and message. Each case also pins what
//! that outcome is, so that without the real server the fake is still held to it.
//!
//! Stored statuses are compared as clients decode them, without null fields and empty
//! objects: Go writes `"lastState": {}` and `"startedAt": null` where the fake writes
//! nothing, which no client can tell apart.

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kubelet_core::strategic_merge::StrategicMerge;
use kubelet_core::testing::apiserver::FakeApiServer;
use kubelet_core::testing::envtest::{self, ASSETS_ENV, Envtest, REQUIRE_ENV};
use serde_json::{Value, json};

const NODE: &str = "n1";
const STARTED: &str = "2026-12-02T14:00:00Z";

/// One API server under test, with an admin client and the node's.
struct Target {
    name: &'static str,
    admin: kube::Client,
    node: kube::Client,
}

async fn client(kubeconfig: &str) -> kube::Client {
    let file = kube::config::Kubeconfig::from_yaml(kubeconfig).expect("kubeconfig YAML");
    let config = kube::Config::from_custom_kubeconfig(file, &Default::default())
        .await
        .expect("client config");
    kube::Client::try_from(config).expect("kube client")
}

/// The servers: the fake always, the real one when the assets are there. The guards keep
/// them running.
async fn targets() -> (FakeApiServer, Option<Envtest>, Vec<Target>) {
    let fake = FakeApiServer::start_tls().await.expect("fake API server");
    let node_conf = fake
        .kubeconfig_with_client_cert(&format!("system:node:{NODE}"), &["system:nodes"])
        .expect("node kubeconfig");
    let mut targets = vec![Target {
        name: "fake",
        admin: client(&fake.kubeconfig()).await,
        node: client(&node_conf).await,
    }];
    let real = match Envtest::from_env().await {
        Ok(Some(env)) => Some(env),
        Ok(None) if envtest::required() => panic!("{REQUIRE_ENV}=1 but {ASSETS_ENV} is not set"),
        Ok(None) => {
            eprintln!(
                "{ASSETS_ENV} not set: the fake is checked against the recorded outcomes only"
            );
            None
        }
        Err(e) => panic!("envtest: {e}"),
    };
    if let Some(env) = &real {
        targets.push(Target {
            name: "kube-apiserver",
            admin: client(&env.kubeconfig()).await,
            node: client(&env.node_kubeconfig(NODE).expect("node kubeconfig")).await,
        });
    }
    for t in &targets {
        let node: Node = serde_json::from_value(json!({"metadata": {"name": NODE}})).unwrap();
        match Api::<Node>::all(t.admin.clone())
            .create(&PostParams::default(), &node)
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => panic!("{}: create node: {e}", t.name),
        }
    }
    (fake, real, targets)
}

/// What a server made of one patch.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Stored(Value),
    Refused {
        code: u16,
        reason: String,
        message: String,
    },
}

impl Outcome {
    fn stored(&self) -> &Value {
        match self {
            Outcome::Stored(v) => v,
            other => panic!("expected a stored status, got {other:?}"),
        }
    }

    fn refused(&self) -> (u16, &str, &str) {
        match self {
            Outcome::Refused {
                code,
                reason,
                message,
            } => (*code, reason, message),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
}

/// Drops nulls and empty objects, the way a client cannot tell them apart from absence.
fn decoded(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| (k, decoded(v)))
                .filter(|(_, v)| !v.is_null() && v != &json!({}))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(decoded).collect()),
        other => other,
    }
}

fn status_value(pod: &Pod) -> Value {
    decoded(serde_json::to_value(pod.status.clone().unwrap_or_default()).unwrap())
}

async fn new_pod(t: &Target, name: &str, policy: &str) -> Pod {
    let pods: Api<Pod> = Api::namespaced(t.admin.clone(), "default");
    let _ = pods
        .delete(name, &DeleteParams::default().grace_period(0))
        .await;
    for _ in 0..100 {
        if pods.get_opt(name).await.expect("get pod").is_none() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"nodeName": NODE, "restartPolicy": policy, "automountServiceAccountToken": false,
                 "containers": [{"name": "app", "image": "busybox"}]},
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create pod")
}

async fn send(t: &Target, name: &str, patch: &Value) -> Outcome {
    let pods: Api<Pod> = Api::namespaced(t.node.clone(), "default");
    match pods
        .patch_status(name, &PatchParams::default(), &Patch::Strategic(patch))
        .await
    {
        Ok(pod) => Outcome::Stored(status_value(&pod)),
        Err(kube::Error::Api(s)) => Outcome::Refused {
            code: s.code,
            reason: s.reason,
            message: s.message,
        },
        Err(e) => panic!("{}: patch {name}: {e}", t.name),
    }
}

/// Sends `patches` in turn to a new pod on every target; the outcomes of the fake, after
/// checking that every other target had the same.
async fn case(targets: &[Target], name: &str, policy: &str, patches: &[Value]) -> Vec<Outcome> {
    let mut all = Vec::new();
    for t in targets {
        new_pod(t, name, policy).await;
        let mut outcomes = Vec::new();
        for p in patches {
            outcomes.push(send(t, name, p).await);
        }
        all.push((t.name, outcomes));
    }
    eprintln!(
        "case {name}: {}",
        all.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(" = ")
    );
    let (first, expected) = &all[0];
    for (other, outcomes) in &all[1..] {
        assert_eq!(
            outcomes, expected,
            "case {name}: {other} (right) and {first} (left) disagree"
        );
    }
    expected.clone()
}

fn app(state: Value) -> Value {
    json!({"name": "app", "image": "busybox", "imageID": "", "ready": false, "restartCount": 0, "state": state})
}

fn running() -> Value {
    json!({"running": {"startedAt": STARTED}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patches_are_stored_and_refused_as_kube_apiserver_does() {
    let (_fake, _real, targets) = targets().await;
    let t = targets.as_slice();

    // The kubelet's former patch shape: a replace directive inside the atomic containerStatuses
    // is stored as an element on the second patch (a phantom container status).
    let old_shape = |state: Value| {
        json!({"status": {"phase": "Running", "podIP": "10.77.0.3",
            "podIPs": [{"ip": "10.77.0.3"}, {"$patch": "replace"}],
            "containerStatuses": [app(state), {"$patch": "replace"}]}})
    };
    let out = case(
        t,
        "old-shape",
        "Always",
        &[
            old_shape(running()),
            old_shape(json!({"terminated": {"exitCode": 1}})),
        ],
    )
    .await;
    assert_eq!(
        out[0].stored()["containerStatuses"],
        json!([decoded(app(running()))])
    );
    let names: Vec<&Value> = out[1].stored()["containerStatuses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["name"])
        .collect();
    assert_eq!(names, [&json!("app"), &json!("")], "the phantom entry");
    assert_eq!(out[1].stored()["podIPs"], json!([{"ip": "10.77.0.3"}]));

    // Two-way patches as the kubelet now makes them, from the status the server answered:
    // one entry per container throughout.
    let pod = StrategicMerge::for_kind("v1", "Pod");
    let statuses = [
        json!({"phase": "Running", "podIP": "10.77.0.3", "podIPs": [{"ip": "10.77.0.3"}],
               "conditions": [{"type": "Ready", "status": "True"}],
               "containerStatuses": [app(running())]}),
        json!({"phase": "Running", "podIP": "10.77.0.3", "podIPs": [{"ip": "10.77.0.3"}],
               "conditions": [{"type": "Ready", "status": "False"}],
               "containerStatuses": [{"name": "app", "image": "busybox", "imageID": "", "ready": false,
                   "restartCount": 1, "state": running(),
                   "lastState": {"terminated": {"exitCode": 137, "reason": "Error"}}}]}),
        json!({"phase": "Failed", "podIP": "10.77.0.3", "podIPs": [{"ip": "10.77.0.3"}],
               "containerStatuses": [app(json!({"terminated": {"exitCode": 1}}))]}),
    ];
    for target in t {
        new_pod(target, "two-way", "Always").await;
        let mut seen = json!({"phase": "Pending", "qosClass": "BestEffort"});
        for s in &statuses {
            let mut wanted = s.clone();
            wanted["qosClass"] = json!("BestEffort");
            let patch = pod.diff(&json!({"status": seen}), &json!({"status": wanted}));
            let stored = send(target, "two-way", &patch).await;
            assert_eq!(
                stored.stored(),
                &decoded(wanted.clone()),
                "{}: patch {patch}",
                target.name
            );
            seen = wanted;
        }
    }

    // Directives under a field the server does not have are dropped, at any depth.
    let out = case(t, "absent", "Always", &[json!({"status": {
        "conditions": [{"type": "A", "status": "True"}, {"type": "B", "$patch": "delete"}],
        "containerStatuses": [{"name": "app", "state": {"$patch": "replace", "running": {"startedAt": STARTED}}}],
    }})])
    .await;
    assert_eq!(
        out[0].stored()["conditions"],
        json!([{"type": "A", "status": "True"}])
    );
    assert_eq!(out[0].stored()["containerStatuses"][0].get("state"), None);

    // Keyed lists and $setElementOrder.
    let cond = |t: &str| json!({"type": t, "status": "True"});
    let out = case(t, "order", "Always", &[
        json!({"status": {"conditions": [cond("A"), cond("B")]}}),
        json!({"status": {"$setElementOrder/conditions": [{"type": "B"}, {"type": "A"}]}}),
        json!({"status": {"$setElementOrder/conditions": [{"type": "C"}, {"type": "A"}], "conditions": [cond("C")]}}),
        json!({"status": {"conditions": [{"$patch": "replace"}, cond("D")]}}),
        json!({"status": {"conditions": [{"type": "D", "$patch": "delete"}]}}),
    ])
    .await;
    assert_eq!(
        out[2].stored()["conditions"],
        json!([cond("C"), cond("B"), cond("A")])
    );
    assert_eq!(out[3].stored()["conditions"], json!([cond("D")]));
    assert_eq!(out[4].stored().get("conditions"), None);

    // podIP and podIPs: podIP wins, fills podIPs, and is podIPs[0] again.
    let out = case(t, "pod-ip", "Always", &[
        json!({"status": {"podIP": "10.1.1.1", "podIPs": [{"ip": "10.1.1.2"}]}}),
        json!({"status": {"podIPs": [{"ip": "10.1.1.3"}]}}),
        json!({"status": {"$setElementOrder/podIPs": [{"ip": "10.1.1.1"}, {"ip": "fd00::1"}], "podIPs": [{"ip": "fd00::1"}]}}),
        json!({"status": {"podIP": null, "podIPs": null}}),
    ])
    .await;
    assert_eq!(out[0].stored()["podIPs"], json!([{"ip": "10.1.1.1"}]));
    assert_eq!(out[1].stored()["podIPs"], json!([{"ip": "10.1.1.1"}]));
    assert_eq!(
        out[2].stored()["podIPs"],
        json!([{"ip": "10.1.1.1"}, {"ip": "fd00::1"}])
    );
    assert_eq!(out[3].stored().get("podIP"), None);

    // Validation a kubelet can run into.
    let out = case(
        t,
        "invalid",
        "Never",
        &[
            json!({"status": {"podIP": "abc"}}),
            json!({"status": {"podIPs": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}]}}),
            json!({"status": {"podIPs": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.1"}]}}),
            json!({"status": {"hostIP": "10.0.0.5", "hostIPs": [{"ip": "10.0.0.6"}]}}),
            json!({"status": {"conditions": [{"status": "True"}]}}),
            json!({"status": {"containerStatuses": [app(json!({"terminated": {"exitCode": 0}}))]}}),
            json!({"status": {"containerStatuses": [app(running())]}}),
            json!({"metadata": {"uid": "not-this-pod"}, "status": {"phase": "Running"}}),
        ],
    )
    .await;
    for (i, o) in out.iter().enumerate() {
        if i != 5 {
            let (code, reason, _) = o.refused();
            assert_eq!((code, reason), (422, "Invalid"), "patch {i}: {o:?}");
        }
    }
    assert_eq!(
        out[6].refused().2,
        "Pod \"invalid\" is invalid: status.containerStatuses[0].state: Forbidden: may not be transitioned to non-terminated state"
    );
    assert_eq!(
        out[7].refused().2,
        "Pod \"invalid\" is invalid: metadata.uid: Invalid value: \"not-this-pod\": field is immutable"
    );

    // Restartable after a failure only; a phase leaves a terminal phase on v1.28.
    let out = case(t, "on-failure", "OnFailure", &[
        json!({"status": {"phase": "Failed", "containerStatuses": [app(json!({"terminated": {"exitCode": 2}}))]}}),
        json!({"status": {"phase": "Running", "containerStatuses": [app(running())]}}),
    ])
    .await;
    assert_eq!(out[1].stored()["phase"], "Running");

    // What kube-apiserver v1.28 does not check, so neither does the fake: a container status
    // for no container of the spec, a negative restart count, an unknown phase.
    let out = case(t, "unchecked", "Always", &[json!({"status": {
        "phase": "Bogus",
        "containerStatuses": [{"name": "nope", "image": "i", "imageID": "", "ready": false, "restartCount": -1}],
    }})])
    .await;
    assert_eq!(out[0].stored()["containerStatuses"][0]["name"], "nope");

    // Patches the merge itself refuses: the bare message, code 500, no reason.
    let out = case(
        t,
        "refused",
        "Always",
        &[
            json!({"status": {"conditions": [cond("A")]}}),
            json!({"status": {"conditions": [{"type": "A", "$patch": "merge"}]}}),
            json!({"status": {"conditions": [{"type": "A", "$patch": "bogus"}]}}),
            json!({"status": {"conditions": [{"status": "x"}]}}),
            json!({"status": {"$setElementOrder/conditions": [{"type": "B"}, {"type": "A"}],
                          "conditions": [cond("A"), cond("B")]}}),
        ],
    )
    .await;
    assert_eq!(
        out[1].refused(),
        (
            500,
            "",
            "merging lists cannot yet be specified in the patch"
        )
    );
    assert_eq!(
        out[2].refused(),
        (
            500,
            "",
            "unknown patch type: bogus in map: map[$patch:bogus type:A]"
        )
    );
    assert_eq!(
        out[3].refused(),
        (
            500,
            "",
            "map: map[status:x] does not contain declared merge key: type"
        )
    );
    assert_eq!(out[4].refused().0, 500);
}

fn pod_status(v: Value) -> k8s_openapi::api::core::v1::PodStatus {
    serde_json::from_value(v).unwrap()
}

/// The kubelet's own reporter, as the node, through a container's life: the stored status is
/// exactly what it reported at each step, with one entry per container, on every server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reporters_patches_store_exactly_its_status() {
    use kubelet_core::NodeReporter;
    use kubelet_core::apiserver::ApiServerReporter;
    use kubelet_core::apiserver::NodeClient;

    let (_fake, _real, targets) = targets().await;
    let steps = [
        json!({"phase": "Pending", "qosClass": "BestEffort", "hostIP": "10.0.0.5", "hostIPs": [{"ip": "10.0.0.5"}],
               "conditions": [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "False"}],
               "containerStatuses": [app(json!({"waiting": {"reason": "ContainerCreating"}}))]}),
        json!({"phase": "Running", "qosClass": "BestEffort", "hostIP": "10.0.0.5", "hostIPs": [{"ip": "10.0.0.5"}],
               "podIP": "10.77.0.3", "podIPs": [{"ip": "10.77.0.3"}], "startTime": STARTED,
               "conditions": [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"}],
               "containerStatuses": [app(running())]}),
        json!({"phase": "Running", "qosClass": "BestEffort", "hostIP": "10.0.0.5", "hostIPs": [{"ip": "10.0.0.5"}],
               "podIP": "10.77.0.3", "podIPs": [{"ip": "10.77.0.3"}], "startTime": STARTED,
               "conditions": [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "False"}],
               "containerStatuses": [{"name": "app", "image": "busybox", "imageID": "", "ready": false,
                   "restartCount": 1, "state": running(),
                   "lastState": {"terminated": {"exitCode": 137, "reason": "Error", "startedAt": STARTED, "finishedAt": STARTED}}}]}),
        json!({"phase": "Succeeded", "qosClass": "BestEffort", "hostIP": "10.0.0.5", "hostIPs": [{"ip": "10.0.0.5"}],
               "podIP": "10.77.0.3", "podIPs": [{"ip": "10.77.0.3"}], "startTime": STARTED,
               "conditions": [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "False"}],
               "containerStatuses": [app(json!({"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": STARTED, "finishedAt": STARTED}}))]}),
    ];
    for t in &targets {
        let pod = new_pod(t, "reported", "OnFailure").await;
        // The scheduler's condition, which the kubelet keeps.
        let scheduled =
            json!({"status": {"conditions": [{"type": "PodScheduled", "status": "True"}]}});
        Api::<Pod>::namespaced(t.admin.clone(), "default")
            .patch_status(
                "reported",
                &PatchParams::default(),
                &Patch::Strategic(scheduled),
            )
            .await
            .expect("PodScheduled");
        let reporter =
            ApiServerReporter::new(NodeClient::from_client(t.node.clone(), NODE, t.name));
        for (i, step) in steps.iter().enumerate() {
            reporter
                .update_pod_status(&pod, &pod_status(step.clone()))
                .await
                .unwrap_or_else(|e| panic!("{}: step {i}: {e}", t.name));
            let stored = Api::<Pod>::namespaced(t.admin.clone(), "default")
                .get("reported")
                .await
                .expect("get pod");
            // Conditions in any order: the server places those it merges as it sees fit.
            let by_type = |mut v: Value| {
                if let Some(cs) = v["conditions"].as_array_mut() {
                    cs.sort_by_key(|c| c["type"].as_str().unwrap_or("").to_string());
                }
                v
            };
            let mut expected = decoded(step.clone());
            let conditions = expected["conditions"].as_array_mut().unwrap();
            conditions.push(json!({"type": "PodScheduled", "status": "True"}));
            assert_eq!(
                by_type(status_value(&stored)),
                by_type(expected),
                "{}: step {i}",
                t.name
            );
        }

        // Node status: first report, a changed address, a condition someone else owns.
        let node_status = |ip: &str, ready: &str| {
            serde_json::from_value::<k8s_openapi::api::core::v1::NodeStatus>(json!({
                "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": NODE}],
                "capacity": {"pods": "110", "cpu": "2"},
                "conditions": [{"type": "Ready", "status": ready, "reason": "KubeletReady"}],
                "volumesInUse": ["kubernetes.io/csi/a"],
            }))
            .unwrap()
        };
        reporter
            .update_node_status(NODE, &node_status("10.0.0.5", "False"))
            .await
            .unwrap();
        let network =
            json!({"status": {"conditions": [{"type": "NetworkUnavailable", "status": "False"}]}});
        Api::<Node>::all(t.admin.clone())
            .patch_status(NODE, &PatchParams::default(), &Patch::Strategic(network))
            .await
            .expect("NetworkUnavailable");
        let mut later = node_status("10.0.0.6", "True");
        later.volumes_in_use = None;
        // A stale base (the reporter last saw the node before NetworkUnavailable) still
        // leaves the other writer's condition.
        reporter.update_node_status(NODE, &later).await.unwrap();
        let node = Api::<Node>::all(t.admin.clone())
            .get(NODE)
            .await
            .expect("get node");
        let status = decoded(serde_json::to_value(node.status.unwrap()).unwrap());
        assert_eq!(
            status["addresses"],
            json!([{"type": "InternalIP", "address": "10.0.0.6"}, {"type": "Hostname", "address": NODE}]),
            "{}",
            t.name
        );
        let types: Vec<&str> = status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["type"].as_str().unwrap())
            .collect();
        assert!(
            types.contains(&"NetworkUnavailable") && types.contains(&"Ready"),
            "{}: {types:?}",
            t.name
        );
        assert_eq!(status.get("volumesInUse"), None, "{}", t.name);
    }
}

/// The patch metadata this crate ships is the real server's: what `/openapi/v2` declares
/// for every field, trimmed the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builtin_patch_schema_is_the_servers() {
    use kubelet_core::strategic_merge::PatchSchema;

    let (_fake, real, targets) = targets().await;
    let Some(_real) = real else {
        eprintln!("skipped: the schema is checked against a real kube-apiserver only");
        return;
    };
    let admin = &targets[1].admin;
    let request = http::Request::get("/openapi/v2").body(Vec::new()).unwrap();
    let text = admin.request_text(request).await.expect("GET /openapi/v2");
    let doc: Value = serde_json::from_str(&text).expect("OpenAPI JSON");
    let builtin = PatchSchema::builtin();
    let live = PatchSchema::from_openapi_v2(&doc, &builtin.source);
    assert_eq!(live.kinds, builtin.kinds);
    for (name, fields) in &builtin.types {
        assert_eq!(live.types.get(name), Some(fields), "{name}");
    }
    assert_eq!(live.types.len(), builtin.types.len());
}

/// What a create of `obj` at `path` (namespace `default`) gives: the stored object, or the
/// refusal.
async fn create_raw(client: &kube::Client, plural: &str, obj: &Value) -> Result<Value, Outcome> {
    let request = http::Request::post(format!("/api/v1/namespaces/default/{plural}"))
        .header("content-type", "application/json")
        .body(serde_json::to_vec(obj).expect("JSON"))
        .expect("request");
    match client.request::<Value>(request).await {
        Ok(v) => Ok(v),
        Err(kube::Error::Api(s)) => Err(Outcome::Refused {
            code: s.code,
            reason: s.reason,
            message: s.message,
        }),
        Err(e) => panic!("create {plural}: {e}"),
    }
}

/// The Services and ConfigMap keys the kubelet's environment code depends on: the API
/// server's own `kubernetes` Service, a cluster IP allocated from the service range with the
/// defaults of core/v1, and the keys a ConfigMap may have.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_and_config_keys_as_kube_apiserver_keeps_them() {
    let (_fake, _real, targets) = targets().await;
    let mut outcomes = Vec::new();
    for t in &targets {
        // The node may list Services cluster-wide (the service environment variables).
        let services = Api::<k8s_openapi::api::core::v1::Service>::all(t.node.clone())
            .list(&Default::default())
            .await
            .unwrap_or_else(|e| panic!("{}: node lists services: {e}", t.name));
        let kubernetes = services
            .items
            .iter()
            .find(|s| s.metadata.name.as_deref() == Some("kubernetes"))
            .unwrap_or_else(|| panic!("{}: no kubernetes service", t.name));
        let spec = kubernetes.spec.as_ref().expect("spec");
        assert_eq!(spec.cluster_ip.as_deref(), Some("10.0.0.1"), "{}", t.name);
        let port = &spec.ports.as_ref().expect("ports")[0];
        assert_eq!(
            (port.name.as_deref(), port.port, port.protocol.as_deref()),
            (Some("https"), 443, Some("TCP")),
            "{}",
            t.name
        );

        let mut got = Vec::new();
        let svc = create_raw(
            &t.admin,
            "services",
            &json!({"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}}),
        )
        .await
        .unwrap_or_else(|e| panic!("{}: create service: {e:?}", t.name));
        let ip = svc["spec"]["clusterIP"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            ip.starts_with("10.0.0.") && ip != "10.0.0.1",
            "{}: {ip}",
            t.name
        );
        assert_eq!(svc["spec"]["clusterIPs"], json!([ip]), "{}", t.name);
        let mut spec = svc["spec"].clone();
        for allocated in ["clusterIP", "clusterIPs"] {
            spec.as_object_mut().expect("spec").remove(allocated);
        }
        got.push(Outcome::Stored(spec));
        let headless = create_raw(
            &t.admin,
            "services",
            &json!({"metadata": {"name": "headless"}, "spec": {"clusterIP": "None"}}),
        )
        .await
        .map(|v| Outcome::Stored(v["spec"].clone()));
        got.push(headless.unwrap_or_else(|e| e));
        for refused in [
            json!({"metadata": {"name": "no-ports"}, "spec": {}}),
            json!({"metadata": {"name": "taken"}, "spec": {"clusterIP": ip, "ports": [{"port": 80}]}}),
            json!({"metadata": {"name": "outside"}, "spec": {"clusterIP": "10.9.0.5", "ports": [{"port": 80}]}}),
        ] {
            got.push(
                create_raw(&t.admin, "services", &refused)
                    .await
                    .map(Outcome::Stored)
                    .unwrap_or_else(|e| e),
            );
        }
        // One bad key a ConfigMap: kube-apiserver reports several in Go's map order.
        for data in [
            json!({"ok.key-1_x": "1", "bad key": "2"}),
            json!({"..dots": "3"}),
        ] {
            let bad_key = create_raw(
                &t.admin,
                "configmaps",
                &json!({"metadata": {"name": "keys"}, "data": data}),
            )
            .await
            .map(Outcome::Stored)
            .unwrap_or_else(|e| e);
            got.push(bad_key);
        }
        // The same message whatever IP the server picked.
        let got: Vec<Outcome> = got
            .into_iter()
            .map(|o| match o {
                Outcome::Refused {
                    code,
                    reason,
                    message,
                } => Outcome::Refused {
                    code,
                    reason,
                    message: message.replace(&ip, "<ip>"),
                },
                stored => stored,
            })
            .collect();
        outcomes.push((t.name, got));
    }
    let (first, expected) = &outcomes[0];
    for (other, got) in &outcomes[1..] {
        assert_eq!(got, expected, "{other} (left) and {first} (right) disagree");
    }
    let refused = |i: usize| match &expected[i] {
        Outcome::Refused { code, message, .. } => (*code, message.clone()),
        other => panic!("case {i} was stored: {other:?}"),
    };
    assert_eq!(
        expected[0],
        Outcome::Stored(json!({
            "internalTrafficPolicy": "Cluster",
            "ipFamilies": ["IPv4"],
            "ipFamilyPolicy": "SingleStack",
            "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}],
            "sessionAffinity": "None",
            "type": "ClusterIP",
        }))
    );
    assert_eq!(
        refused(2),
        (
            422,
            "Service \"no-ports\" is invalid: spec.ports: Required value".to_string()
        )
    );
    assert_eq!(refused(3).0, 422);
    assert_eq!(
        refused(4).1,
        "Service \"outside\" is invalid: spec.clusterIPs: Invalid value: []string{\"10.9.0.5\"}: failed to allocate IP 10.9.0.5: the provided IP (10.9.0.5) is not in the valid range. The range of valid IPs is 10.0.0.0/24"
    );
    assert!(refused(5).1.contains("data[bad key]"), "{:?}", refused(5));
    assert_eq!(
        refused(6).1,
        "ConfigMap \"keys\" is invalid: data[..dots]: Invalid value: \"..dots\": must not start with '..'"
    );
}

/// What `method` on `path` with `body` gives: the object answered (without metadata, as a
/// client decodes it), or the refusal. Pointer addresses Go prints in immutability errors
/// differ on every request and are masked.
async fn storage_request(
    client: &kube::Client,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Outcome {
    let builder = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json");
    let body = body.map(|b| serde_json::to_vec(b).expect("JSON"));
    let request = builder.body(body.unwrap_or_default()).expect("request");
    match client.request::<Value>(request).await {
        Ok(mut v) => {
            if let Some(m) = v.as_object_mut() {
                m.remove("metadata");
            }
            Outcome::Stored(decoded(v))
        }
        Err(kube::Error::Api(s)) => Outcome::Refused {
            code: s.code,
            reason: s.reason,
            message: mask_pointers(&s.message),
        },
        Err(e) => panic!("{method} {path}: {e}"),
    }
}

fn mask_pointers(message: &str) -> String {
    let mut out = String::new();
    let mut rest = message;
    while let Some(at) = rest.find("(0xc") {
        out.push_str(&rest[..at]);
        let tail = &rest[at + 1..];
        let end = tail.find(')').unwrap_or(tail.len());
        out.push_str("(<pointer>");
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// The resourceVersion of the object at `path`, for the updates that must carry one.
async fn resource_version(client: &kube::Client, path: &str) -> String {
    let request = http::Request::get(path).body(Vec::new()).expect("request");
    let v: Value = client.request(request).await.expect("get");
    v["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The storage objects a kubelet reads and writes (CSINode, CSIDriver, VolumeAttachment,
/// StorageClass, PersistentVolume, PersistentVolumeClaim): created, defaulted, updated and
/// refused the same way by the fake and by kube-apiserver, and served in discovery alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_objects_as_kube_apiserver_keeps_them() {
    let (_fake, _real, targets) = targets().await;
    const CSINODES: &str = "/apis/storage.k8s.io/v1/csinodes";
    const CSIDRIVERS: &str = "/apis/storage.k8s.io/v1/csidrivers";
    const CLASSES: &str = "/apis/storage.k8s.io/v1/storageclasses";
    const ATTACHMENTS: &str = "/apis/storage.k8s.io/v1/volumeattachments";
    const PVS: &str = "/api/v1/persistentvolumes";
    const PVCS: &str = "/api/v1/namespaces/default/persistentvolumeclaims";
    let long_name = "a".repeat(64);
    let long_id = "x".repeat(257);
    let hostpath = json!({"name": "hostpath.csi.k8s.io", "nodeID": NODE, "topologyKeys": ["b", "a"], "allocatable": {"count": 3}});
    let mut outcomes = Vec::new();
    for t in &targets {
        let c = &t.admin;
        let mut got = Vec::new();
        // CSINode: the kubelet's own writes (as the node), then what validation refuses.
        got.push(
            storage_request(&t.node, "POST", CSINODES, Some(&json!({
                "metadata": {"name": NODE},
                "spec": {"drivers": [hostpath, {"name": "other.csi", "nodeID": NODE, "topologyKeys": []}]},
            })))
            .await,
        );
        let rv = resource_version(c, &format!("{CSINODES}/{NODE}")).await;
        let mut changed = hostpath.clone();
        changed["nodeID"] = json!("changed");
        changed["allocatable"] = json!({"count": 5});
        got.push(
            storage_request(
                &t.node,
                "PUT",
                &format!("{CSINODES}/{NODE}"),
                Some(&json!({
                    "metadata": {"name": NODE, "resourceVersion": rv},
                    "spec": {"drivers": [changed, {"name": "other.csi", "nodeID": NODE}]},
                })),
            )
            .await,
        );
        got.push(
            storage_request(
                &t.node,
                "PUT",
                &format!("{CSINODES}/{NODE}"),
                Some(&json!({
                    "metadata": {"name": NODE},
                    "spec": {"drivers": [hostpath]},
                })),
            )
            .await,
        );
        got.push(
            storage_request(
                &t.node,
                "PUT",
                &format!("{CSINODES}/{NODE}"),
                Some(&json!({
                    "metadata": {"name": NODE, "resourceVersion": rv},
                    "spec": {"drivers": [hostpath]},
                })),
            )
            .await,
        );
        got.push(
            storage_request(c, "POST", CSINODES, Some(&json!({
                "metadata": {"name": "bad"},
                "spec": {"drivers": [
                    {"name": "hostpath.csi.k8s.io", "nodeID": "n1"},
                    {"name": "Bad_Name!", "nodeID": ""},
                    {"name": "hostpath.csi.k8s.io", "nodeID": "x", "topologyKeys": ["a", "a", "not valid!"], "allocatable": {"count": -1}},
                    {"name": "", "nodeID": "y"},
                    {"name": long_name, "nodeID": long_id, "topologyKeys": ["", "/x", "a/b/c"]},
                ]},
            })))
            .await,
        );
        // CSIDriver: the defaults the volume plugin relies on, and refusals.
        got.push(
            storage_request(
                c,
                "POST",
                CSIDRIVERS,
                Some(&json!({"metadata": {"name": "hostpath.csi.k8s.io"}, "spec": {}})),
            )
            .await,
        );
        got.push(
            storage_request(c, "POST", CSIDRIVERS, Some(&json!({
                "metadata": {"name": "e.csi"},
                "spec": {"attachRequired": false, "podInfoOnMount": true, "volumeLifecycleModes": ["Ephemeral"], "requiresRepublish": true, "tokenRequests": [{"audience": ""}]},
            })))
            .await,
        );
        got.push(
            storage_request(c, "POST", CSIDRIVERS, Some(&json!({
                "metadata": {"name": "Bad_Name"},
                "spec": {"volumeLifecycleModes": ["Persistent", "Nope"], "fsGroupPolicy": "Sometimes", "tokenRequests": [{"audience": "a"}, {"audience": "a", "expirationSeconds": 600}]},
            })))
            .await,
        );
        got.push(
            storage_request(
                c,
                "PUT",
                &format!("{CSIDRIVERS}/e.csi"),
                Some(&json!({"metadata": {"name": "e.csi"}, "spec": {}})),
            )
            .await,
        );
        // StorageClass.
        got.push(
            storage_request(c, "POST", CLASSES, Some(&json!({"metadata": {"name": "sc1"}, "provisioner": "hostpath.csi.k8s.io", "parameters": {"k": "v"}}))).await,
        );
        got.push(
            storage_request(
                c,
                "POST",
                CLASSES,
                Some(&json!({"metadata": {"name": "sc2"}})),
            )
            .await,
        );
        got.push(
            storage_request(c, "PUT", &format!("{CLASSES}/sc1"), Some(&json!({"metadata": {"name": "sc1"}, "provisioner": "b.csi", "parameters": {"k": "w"}, "reclaimPolicy": "Retain"}))).await,
        );
        // VolumeAttachment: the status the attacher writes and the node reads.
        let va = json!({"metadata": {"name": "va1"}, "spec": {"attacher": "hostpath.csi.k8s.io", "nodeName": NODE, "source": {"persistentVolumeName": "pv1"}}, "status": {"attached": true}});
        got.push(storage_request(c, "POST", ATTACHMENTS, Some(&va)).await);
        let rv = resource_version(c, &format!("{ATTACHMENTS}/va1")).await;
        let mut attached = va.clone();
        attached["metadata"]["resourceVersion"] = json!(rv);
        attached["status"] = json!({"attached": true, "attachmentMetadata": {"k": "v"}});
        attached["spec"]["nodeName"] = json!("elsewhere");
        got.push(
            storage_request(
                c,
                "PUT",
                &format!("{ATTACHMENTS}/va1/status"),
                Some(&attached),
            )
            .await,
        );
        let rv = resource_version(c, &format!("{ATTACHMENTS}/va1")).await;
        attached["metadata"]["resourceVersion"] = json!(rv);
        got.push(storage_request(c, "PUT", &format!("{ATTACHMENTS}/va1"), Some(&attached)).await);
        got.push(
            storage_request(
                c,
                "POST",
                ATTACHMENTS,
                Some(&json!({"metadata": {"name": "va2"}, "spec": {"source": {}}})),
            )
            .await,
        );
        // PersistentVolume and PersistentVolumeClaim: defaults and the starting phase.
        got.push(
            storage_request(c, "POST", PVS, Some(&json!({
                "metadata": {"name": "pv1"},
                "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "csi": {"driver": "hostpath.csi.k8s.io", "volumeHandle": "v1"}},
                "status": {"phase": "Bound"},
            })))
            .await,
        );
        got.push(
            storage_request(
                c,
                "POST",
                PVS,
                Some(&json!({"metadata": {"name": "pv2"}, "spec": {}})),
            )
            .await,
        );
        got.push(
            storage_request(c, "POST", PVS, Some(&json!({
                "metadata": {"name": "pv3"},
                "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "csi": {"driver": "", "volumeHandle": ""}},
            })))
            .await,
        );
        got.push(
            storage_request(
                c,
                "PUT",
                &format!("{PVS}/pv1/status"),
                Some(&json!({"metadata": {"name": "pv1"}, "status": {"phase": "Available"}})),
            )
            .await,
        );
        got.push(
            storage_request(c, "POST", PVCS, Some(&json!({
                "metadata": {"name": "pvc1"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}, "volumeName": "pv1"},
                "status": {"phase": "Bound"},
            })))
            .await,
        );
        got.push(
            storage_request(
                c,
                "POST",
                PVCS,
                Some(&json!({"metadata": {"name": "pvc2"}, "spec": {}})),
            )
            .await,
        );
        got.push(
            storage_request(c, "PUT", &format!("{PVCS}/pvc1/status"), Some(&json!({"metadata": {"name": "pvc1"}, "status": {"phase": "Bound", "capacity": {"storage": "1Gi"}}}))).await,
        );
        // CSIDriver updates: the immutable fields changed with the others...
        let rv = resource_version(c, &format!("{CSIDRIVERS}/e.csi")).await;
        got.push(
            storage_request(
                c,
                "PUT",
                &format!("{CSIDRIVERS}/e.csi"),
                Some(&json!({
                    "metadata": {"name": "e.csi", "resourceVersion": rv},
                    "spec": {"attachRequired": true, "podInfoOnMount": false, "fsGroupPolicy": "File", "volumeLifecycleModes": ["Persistent"], "requiresRepublish": false, "storageCapacity": true, "tokenRequests": [{"audience": "x"}]},
                })),
            )
            .await,
        );
        // ...and only the fields that may change.
        got.push(
            storage_request(
                c,
                "PUT",
                &format!("{CSIDRIVERS}/e.csi"),
                Some(&json!({
                    "metadata": {"name": "e.csi", "resourceVersion": rv},
                    "spec": {"attachRequired": false, "podInfoOnMount": true, "volumeLifecycleModes": ["Ephemeral"], "requiresRepublish": false, "storageCapacity": true, "tokenRequests": [{"audience": "x"}]},
                })),
            )
            .await,
        );
        // DELETE answers with the object on every one of these registries.
        for path in [
            format!("{CSINODES}/{NODE}"),
            format!("{CSIDRIVERS}/e.csi"),
            format!("{CLASSES}/sc1"),
            format!("{ATTACHMENTS}/va1"),
            format!("{PVCS}/pvc1"),
            format!("{PVS}/pv1"),
        ] {
            let deleted = storage_request(c, "DELETE", &path, None).await;
            got.push(Outcome::Stored(json!(deleted.stored()["kind"])));
        }
        // Discovery of what the fake serves.
        let request = http::Request::get("/apis/storage.k8s.io/v1")
            .body(Vec::new())
            .expect("request");
        let doc: Value = c.request(request).await.expect("discovery");
        let mut served: Vec<Value> = doc["resources"]
            .as_array()
            .expect("resources")
            .iter()
            .filter(|r| r["name"] != "csistoragecapacities")
            .map(|r| {
                json!([
                    r["name"],
                    r["namespaced"],
                    r["kind"],
                    r["verbs"],
                    r["shortNames"]
                ])
            })
            .collect();
        served.sort_by_key(|v| v.to_string());
        got.push(Outcome::Stored(json!(served)));
        outcomes.push((t.name, got));
    }
    let (first, expected) = &outcomes[0];
    for (other, got) in &outcomes[1..] {
        assert_eq!(got.len(), expected.len());
        for (i, (g, e)) in got.iter().zip(expected).enumerate() {
            assert_eq!(
                g, e,
                "case {i}: {other} (left) and {first} (right) disagree"
            );
        }
    }
    // What the outcomes are, pinned for runs without the real server.
    let spec = |i: usize| expected[i].stored()["spec"].clone();
    assert_eq!(
        spec(0)["drivers"],
        json!([{"name": "hostpath.csi.k8s.io", "nodeID": NODE, "topologyKeys": ["b", "a"], "allocatable": {"count": 3}}, {"name": "other.csi", "nodeID": NODE}])
    );
    let (code, _, message) = expected[1].refused();
    assert_eq!(code, 422);
    assert!(
        message.starts_with("CSINode.storage.k8s.io \"n1\" is invalid: CSINodeDriver: Invalid value: storage.CSINodeDriver{Name:\"hostpath.csi.k8s.io\", NodeID:\"changed\", TopologyKeys:[]string{\"b\", \"a\"}, Allocatable:(*storage.VolumeNodeResources)(<pointer>)}: field is immutable"),
        "{message}"
    );
    assert_eq!(
        expected[2].refused().2,
        "csinodes.storage.k8s.io \"n1\" is invalid: metadata.resourceVersion: Invalid value: 0x0: must be specified for an update"
    );
    assert_eq!(spec(3)["drivers"].as_array().map(Vec::len), Some(1));
    assert!(
        expected[4]
            .refused()
            .2
            .contains("spec.drivers[2].name: Duplicate value: \"hostpath.csi.k8s.io\"")
    );
    assert_eq!(
        spec(5),
        json!({"attachRequired": true, "fsGroupPolicy": "ReadWriteOnceWithFSType", "podInfoOnMount": false, "requiresRepublish": false, "seLinuxMount": false, "storageCapacity": false, "volumeLifecycleModes": ["Persistent"]})
    );
    assert_eq!(spec(6)["volumeLifecycleModes"], json!(["Ephemeral"]));
    assert_eq!(expected[7].refused().0, 422);
    assert_eq!(expected[9].stored()["reclaimPolicy"], "Delete");
    assert_eq!(expected[9].stored()["volumeBindingMode"], "Immediate");
    assert_eq!(
        expected[10].refused().2,
        "StorageClass.storage.k8s.io \"sc2\" is invalid: provisioner: Required value"
    );
    assert_eq!(expected[12].stored()["status"], json!({"attached": false}));
    assert_eq!(expected[13].stored()["spec"]["nodeName"], NODE);
    assert_eq!(expected[13].stored()["status"]["attached"], true);
    assert_eq!(expected[16].stored()["status"], json!({"phase": "Pending"}));
    assert_eq!(
        expected[16].stored()["spec"]["persistentVolumeReclaimPolicy"],
        "Retain"
    );
    assert_eq!(expected[16].stored()["spec"]["volumeMode"], "Filesystem");
    assert_eq!(expected[20].stored()["status"], json!({"phase": "Pending"}));
    assert_eq!(expected[20].stored()["spec"]["volumeMode"], "Filesystem");
    assert_eq!(
        expected[23].refused().2,
        "CSIDriver.storage.k8s.io \"e.csi\" is invalid: [spec.attachedRequired: Invalid value: true: field is immutable, spec.fsGroupPolicy: Invalid value: \"File\": field is immutable, spec.podInfoOnMount: Invalid value: false: field is immutable, spec.volumeLifecycleModes: Invalid value: []storage.VolumeLifecycleMode{\"Persistent\"}: field is immutable]"
    );
    assert_eq!(spec(24)["storageCapacity"], true);
    assert_eq!(spec(24)["tokenRequests"], json!([{"audience": "x"}]));
    assert_eq!(
        expected[21].refused().2,
        "PersistentVolumeClaim \"pvc2\" is invalid: [spec.accessModes: Required value: at least 1 access mode is required, spec.resources[storage]: Required value]"
    );
}
