//! Admission of new pods against the node (resources, affinity) on the fake runtime under
//! paused time: a refused pod is Failed with the reference's reason and `Pod was rejected:
//! ...` message, a Warning event, and nothing of it runs; pods that each fit but not
//! together are never both admitted; a finished pod's requests are free again.

mod support {
    // Shared by the scenario test files; each uses part of it.
    #[allow(dead_code)]
    pub mod scenario;
}

use std::time::Duration;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kubelet_core::node::{MachineInfo, NodeConfig};
use kubelet_core::testing::pods::{container, pod};

use support::scenario::{IMAGE, Node, runtime};

/// A node with 2 CPUs and 4 GiB, zone `a`.
fn start() -> Node {
    let machine = MachineInfo {
        num_cores: 2,
        memory_capacity: 4 << 30,
        operating_system: "linux".into(),
        architecture: "amd64".into(),
        ..MachineInfo::default()
    };
    let mut config = NodeConfig::new("node-1");
    config.labels.insert("zone".into(), "a".into());
    Node::start_with(runtime(), |b| b.node_status(config, machine))
}

fn cpu(milli: &str) -> ResourceRequirements {
    ResourceRequirements {
        requests: Some([("cpu".to_string(), Quantity(milli.into()))].into()),
        ..Default::default()
    }
}

fn phase(node: &Node, uid: &str) -> Option<String> {
    node.reporter.last_phase(uid)
}

#[tokio::test(start_paused = true)]
async fn of_two_pods_that_fit_only_alone_one_runs_and_the_other_is_refused() {
    let node = start();
    let pods: Vec<_> = ["first", "second"]
        .into_iter()
        .map(|name| {
            pod(name)
                .container(container("app", IMAGE).with(|c| c.resources = Some(cpu("1500m"))))
                .build()
        })
        .collect();
    let uids: Vec<String> = pods
        .iter()
        .map(|p| p.metadata.uid.clone().unwrap())
        .collect();
    node.pods.snapshot(pods.clone());
    node.until(Duration::from_secs(30), "one running, one refused", |n| {
        let phases: Vec<_> = uids.iter().map(|u| phase(n, u)).collect();
        phases.contains(&Some("Running".into())) && phases.contains(&Some("Failed".into()))
    })
    .await;
    let refused = uids
        .iter()
        .find(|u| phase(&node, u).as_deref() == Some("Failed"))
        .unwrap()
        .clone();
    let admitted = uids.iter().find(|u| **u != refused).unwrap().clone();
    let status = node.reporter.last_pod_status(&refused).unwrap();
    let message =
        "Node didn't have enough resource: cpu, requested: 1500, used: 1500, capacity: 2000";
    assert_eq!(status.reason.as_deref(), Some("OutOfcpu"));
    assert_eq!(
        status.message.as_deref(),
        Some(format!("Pod was rejected: {message}").as_str())
    );
    let events = node.reporter.events_with_reason("OutOfcpu");
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].message, message);
    assert_eq!(events[0].involved.uid.as_deref(), Some(refused.as_str()));
    assert_eq!(node.runtime.running_containers().len(), 1);
    // The refused pod stays refused.
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(phase(&node, &refused).as_deref(), Some("Failed"));
    assert_eq!(node.runtime.running_containers().len(), 1);

    // Once the admitted pod is gone, its CPU is free for a new pod.
    let admitted_pod = pods
        .iter()
        .find(|p| p.metadata.uid.as_deref() == Some(admitted.as_str()))
        .unwrap();
    let refused_pod = pods
        .iter()
        .find(|p| p.metadata.uid.as_deref() == Some(refused.as_str()))
        .unwrap();
    node.pods.snapshot(vec![refused_pod.clone()]);
    node.until(Duration::from_secs(60), "the admitted pod gone", |n| {
        n.reporter
            .removed_pods()
            .contains(&admitted_pod.metadata.uid.clone().unwrap())
    })
    .await;
    let third = pod("third")
        .container(container("app", IMAGE).with(|c| c.resources = Some(cpu("1500m"))))
        .build();
    let third_uid = third.metadata.uid.clone().unwrap();
    node.pods.snapshot(vec![refused_pod.clone(), third]);
    node.until(Duration::from_secs(30), "the third pod runs", |n| {
        phase(n, &third_uid).as_deref() == Some("Running")
    })
    .await;
    node.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_pod_for_another_zone_is_refused_and_one_for_this_zone_runs() {
    let node = start();
    let elsewhere = pod("elsewhere")
        .container(container("app", IMAGE))
        .spec(|s| s.node_selector = Some([("zone".to_string(), "b".to_string())].into()))
        .build();
    let here = pod("here")
        .container(container("app", IMAGE))
        .spec(|s| s.node_selector = Some([("zone".to_string(), "a".to_string())].into()))
        .build();
    let (elsewhere_uid, here_uid) = (
        elsewhere.metadata.uid.clone().unwrap(),
        here.metadata.uid.clone().unwrap(),
    );
    node.pods.snapshot(vec![elsewhere, here]);
    node.until(Duration::from_secs(30), "both settled", |n| {
        phase(n, &elsewhere_uid).as_deref() == Some("Failed")
            && phase(n, &here_uid).as_deref() == Some("Running")
    })
    .await;
    let status = node.reporter.last_pod_status(&elsewhere_uid).unwrap();
    assert_eq!(status.reason.as_deref(), Some("NodeAffinity"));
    assert_eq!(
        status.message.as_deref(),
        Some(
            "Pod was rejected: Predicate NodeAffinity failed: node(s) didn't match Pod's node \
             affinity/selector"
        )
    );
    node.shutdown().await;
}
