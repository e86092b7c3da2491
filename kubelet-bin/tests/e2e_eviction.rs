//! End-to-end: node-pressure eviction and the admission of pods by the daemon on a real
//! containerd, with the node and its pods on the API server (the real kube-apiserver with
//! `KUBELET_TEST_ASSETS`, as `e2e_cluster.rs`). The thresholds are set relative to what the
//! machine has, so that the pressure is certain whatever else runs here:
//!
//! - [`memory_pressure_refuses_best_effort_pods_and_evicts_the_others`]: a memory threshold
//!   above the node's memory (`memory.available<99%`) gives MemoryPressure on the Node; a
//!   BestEffort pod is refused as the reference's admit handler refuses it, a Burstable one
//!   is admitted and then evicted with the reference's message.
//! - [`a_pod_bound_by_hand_that_does_not_fit_is_refused`]: a pod bound to the node with more
//!   CPU requested than the node has, or for another zone, is Failed with the reference's
//!   reason and message; one that fits runs.
//! - [`a_pod_that_takes_the_pids_is_evicted_and_the_pressure_clears`]: a PID threshold a few
//!   hundred processes below what runs now; a pod that starts a thousand gives PIDPressure,
//!   is evicted, its processes die, and the condition clears after the transition period.
//!
//! Skipped when no containerd can run here, unless `KUBELET_TEST_REQUIRE_CONTAINERD=1`.

mod support {
    // Shared by several test binaries; each uses part of it.
    #[allow(dead_code)]
    pub mod cluster;
    #[allow(dead_code)]
    pub mod node;
}

use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{Api, ListParams};
use support::cluster::{Cluster, IMAGE, SERVE, condition, start_cluster};
use support::node::{NODE, uid};

fn node_condition(node: &Node, type_: &str) -> Option<String> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.clone())
}

fn pod(name: &str, script: &str, resources: serde_json::Value) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "nodeName": NODE,
            "terminationGracePeriodSeconds": 30,
            "containers": [{
                "name": "app", "image": IMAGE, "imagePullPolicy": "IfNotPresent",
                "command": ["sh", "-c", script],
                "resources": resources,
            }],
        },
    }))
    .expect("pod JSON")
}

fn reason(pod: &Pod) -> Option<&str> {
    pod.status.as_ref()?.reason.as_deref()
}

fn message(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.message.as_deref())
        .unwrap_or_default()
}

/// The events on the Node with `reason`.
async fn node_events(cluster: &Cluster, reason: &str) -> Vec<Event> {
    let events: Api<Event> = Api::namespaced(cluster.kube.clone(), "default");
    events
        .list(&ListParams::default())
        .await
        .expect("list events")
        .items
        .into_iter()
        .filter(|e| {
            e.involved_object.kind.as_deref() == Some("Node") && e.reason.as_deref() == Some(reason)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_pressure_refuses_best_effort_pods_and_evicts_the_others() {
    let Some(mut cluster) = start_cluster(&["--eviction-hard=memory.available<99%"]).await else {
        return;
    };
    cluster
        .wait_node("MemoryPressure", |n| {
            node_condition(n, "MemoryPressure").as_deref() == Some("True")
        })
        .await;
    cluster
        .wait(
            "the node's EvictionThresholdMet event",
            async || Some(node_events(&cluster, "EvictionThresholdMet").await),
            |events| {
                events.is_some_and(|events| {
                    events.iter().any(|e| {
                        e.type_.as_deref() == Some("Warning")
                            && e.message.as_deref() == Some("Attempting to reclaim memory")
                    })
                })
            },
        )
        .await;

    // BestEffort: refused, never started.
    cluster
        .create_pod(&pod("besteffort", SERVE, serde_json::json!({})))
        .await;
    let refused = cluster
        .wait_pod("besteffort", "refused", |p| reason(p) == Some("Evicted"))
        .await;
    assert_eq!(
        refused.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Failed")
    );
    assert_eq!(
        message(&refused),
        "Pod was rejected: The node had condition: [MemoryPressure]. "
    );
    assert!(
        condition(&refused, "DisruptionTarget").is_none(),
        "{refused:?}"
    );
    let events = cluster.events_about(&uid(&refused)).await;
    assert!(
        events.iter().any(|e| e.reason.as_deref() == Some("Evicted")
            && e.message.as_deref() == Some("The node had condition: [MemoryPressure]. ")),
        "{events:?}"
    );
    assert!(
        cluster
            .node
            .sandboxes(Some(&uid(&refused)))
            .await
            .is_empty(),
        "nothing of the refused pod runs"
    );

    // Burstable: admitted, then evicted (the only pod, and memory stays short).
    cluster
        .create_pod(&pod(
            "burstable",
            SERVE,
            serde_json::json!({"requests": {"memory": "1Mi"}}),
        ))
        .await;
    let evicted = cluster
        .wait_pod("burstable", "evicted", |p| reason(p) == Some("Evicted"))
        .await;
    let text = message(&evicted);
    assert!(
        text.starts_with("The node was low on resource: memory. Threshold quantity: ")
            && text.contains(", available: "),
        "{text}"
    );
    let disruption = condition(&evicted, "DisruptionTarget").expect("DisruptionTarget");
    assert_eq!(disruption.reason.as_deref(), Some("TerminationByKubelet"));
    assert_eq!(disruption.message.as_deref(), Some(text));
    let events = cluster.events_about(&uid(&evicted)).await;
    assert!(
        events
            .iter()
            .any(|e| e.reason.as_deref() == Some("Evicted") && e.message.as_deref() == Some(text)),
        "{events:?}"
    );
    let burstable = uid(&evicted);
    cluster
        .node
        .wait_for(
            "the evicted pod's containers to stop",
            support::cluster::DEADLINE,
            async |n| {
                n.containers(Some(&burstable))
                    .await
                    .iter()
                    .all(|c| c.state != kubelet_core::runtime::ContainerState::Running)
                    .then_some(())
            },
        )
        .await;
}

/// Processes running on the machine now (the numeric entries of `/proc`, as the stats
/// provider counts them).
fn processes() -> i64 {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .count() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_that_takes_the_pids_is_evicted_and_the_pressure_clears() {
    let pid_max: i64 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .expect("pid_max")
        .trim()
        .parse()
        .expect("pid_max number");
    // Met once ~400 more processes run than now (the cluster this test starts and a test
    // beside it take a few dozen); the pod below starts a thousand.
    let threshold = pid_max - processes() - 400;
    let hard = format!("--eviction-hard=pid.available<{threshold}");
    let Some(cluster) =
        start_cluster(&[hard.as_str(), "--eviction-pressure-transition-period=20s"]).await
    else {
        return;
    };
    cluster
        .wait_node("no PIDPressure", |n| {
            node_condition(n, "PIDPressure").as_deref() == Some("False")
        })
        .await;
    cluster
        .create_pod(&pod(
            "forker",
            "i=0; while [ $i -lt 1000 ]; do sleep 3600 & i=$((i+1)); done; wait",
            serde_json::json!({}),
        ))
        .await;
    cluster
        .wait_node("PIDPressure", |n| {
            node_condition(n, "PIDPressure").as_deref() == Some("True")
        })
        .await;
    let evicted = cluster
        .wait_pod("forker", "evicted", |p| reason(p) == Some("Evicted"))
        .await;
    let text = message(&evicted);
    let prefix =
        format!("The node was low on resource: pids. Threshold quantity: {threshold}, available: ");
    assert!(text.starts_with(&prefix), "{text}");
    assert!(
        condition(&evicted, "DisruptionTarget").is_some(),
        "{evicted:?}"
    );
    // Its processes gone, the condition clears once the transition period has passed.
    cluster
        .wait_node("PIDPressure cleared", |n| {
            node_condition(n, "PIDPressure").as_deref() == Some("False")
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_bound_by_hand_that_does_not_fit_is_refused() {
    let Some(cluster) = start_cluster(&["--node-labels=zone=a"]).await else {
        return;
    };
    let node = cluster
        .wait_node("allocatable cpu", |n| {
            n.status
                .as_ref()
                .and_then(|s| s.allocatable.as_ref())
                .is_some_and(|a| a.contains_key("cpu"))
        })
        .await;
    let cpu = node.status.and_then(|s| s.allocatable).unwrap()["cpu"]
        .0
        .clone();
    let capacity_milli: i64 = match cpu.strip_suffix('m') {
        Some(milli) => milli.parse().expect("millicores"),
        None => cpu.parse::<i64>().expect("cores") * 1000,
    };

    cluster
        .create_pod(&pod(
            "greedy",
            SERVE,
            serde_json::json!({"requests": {"cpu": "64"}}),
        ))
        .await;
    let mut elsewhere = pod("elsewhere", SERVE, serde_json::json!({}));
    elsewhere.spec.as_mut().unwrap().node_selector =
        Some([("zone".to_string(), "b".to_string())].into());
    cluster.create_pod(&elsewhere).await;
    cluster
        .create_pod(&pod(
            "modest",
            SERVE,
            serde_json::json!({"requests": {"cpu": "10m"}}),
        ))
        .await;

    let greedy = cluster
        .wait_pod("greedy", "refused", |p| reason(p) == Some("OutOfcpu"))
        .await;
    assert_eq!(
        greedy.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Failed")
    );
    // The modest pod counts when it was admitted first.
    let expected = |used: i64| {
        format!(
            "Pod was rejected: Node didn't have enough resource: cpu, requested: 64000, used: \
             {used}, capacity: {capacity_milli}"
        )
    };
    assert!(
        message(&greedy) == expected(10) || message(&greedy) == expected(0),
        "{greedy:?}"
    );
    let events = cluster.events_about(&uid(&greedy)).await;
    assert!(
        events
            .iter()
            .any(|e| e.reason.as_deref() == Some("OutOfcpu")),
        "{events:?}"
    );
    let elsewhere = cluster
        .wait_pod("elsewhere", "refused", |p| {
            reason(p) == Some("NodeAffinity")
        })
        .await;
    assert_eq!(
        message(&elsewhere),
        "Pod was rejected: Predicate NodeAffinity failed: node(s) didn't match Pod's node \
         affinity/selector"
    );
    cluster
        .wait_pod("modest", "running", |p| {
            p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
        })
        .await;
    for gone in [&greedy, &elsewhere] {
        assert!(cluster.node.sandboxes(Some(&uid(gone))).await.is_empty());
    }
}
