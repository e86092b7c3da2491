//! Local-storage eviction: a pod whose on-disk emptyDir outgrows its `sizeLimit` is evicted
//! as the reference's eviction manager evicts it (within its 10 s monitoring interval, at
//! once, Failed/Evicted with the reference's message and a DisruptionTarget condition, a
//! Warning event, never started again), on the fake runtime under paused time.

mod support {
    // Shared by the scenario test files; each uses part of it.
    #[allow(dead_code)]
    pub mod scenario;
}

use std::time::Duration;

use k8s_openapi::api::core::v1::{EmptyDirVolumeSource, Volume, VolumeMount};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kubelet_core::testing::pods::{container, pod};

use support::scenario::{IMAGE, Node, runtime};

#[tokio::test(start_paused = true)]
async fn an_empty_dir_past_its_size_limit_gets_the_pod_evicted() {
    let node = Node::start(runtime());
    let p = pod("web")
        .namespace("shop")
        .container(container("app", IMAGE).with(|c| {
            c.volume_mounts = Some(vec![VolumeMount {
                name: "scratch".into(),
                mount_path: "/scratch".into(),
                ..Default::default()
            }]);
        }))
        .spec(|s| {
            s.volumes = Some(vec![Volume {
                name: "scratch".into(),
                empty_dir: Some(EmptyDirVolumeSource {
                    size_limit: Some(Quantity("1Mi".into())),
                    ..Default::default()
                }),
                ..Default::default()
            }]);
        })
        .build();
    let uid = p.metadata.uid.clone().unwrap_or_default();
    node.pods.snapshot(vec![p]);
    node.until(Duration::from_secs(30), "Running", |n| {
        n.reporter.last_phase(&uid).as_deref() == Some("Running")
    })
    .await;

    // The container fills the volume past its limit (here: the test, on the host side).
    let config = node
        .runtime
        .container_config(&node.runtime.containers()[0].id)
        .expect("config");
    let volume = config
        .mounts
        .iter()
        .find(|m| m.container_path == "/scratch")
        .expect("the emptyDir mount")
        .host_path
        .clone();
    std::fs::write(
        std::path::Path::new(&volume).join("fill"),
        vec![0u8; 2 << 20],
    )
    .expect("write");

    let evicted_at = tokio::time::Instant::now();
    node.until(Duration::from_secs(30), "Evicted", |n| {
        n.reporter.last_phase(&uid).as_deref() == Some("Failed")
    })
    .await;
    // Within the monitoring interval.
    assert!(
        evicted_at.elapsed() <= Duration::from_secs(11),
        "{:?}",
        evicted_at.elapsed()
    );
    let status = node.reporter.last_pod_status(&uid).expect("status");
    let message = "Usage of EmptyDir volume \"scratch\" exceeds the limit \"1Mi\". ";
    assert_eq!(status.reason.as_deref(), Some("Evicted"));
    assert_eq!(status.message.as_deref(), Some(message));
    let disruption = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "DisruptionTarget")
        .expect("DisruptionTarget condition");
    assert_eq!(
        (
            disruption.status.as_str(),
            disruption.reason.as_deref(),
            disruption.message.as_deref()
        ),
        ("True", Some("TerminationByKubelet"), Some(message))
    );
    let events = node.reporter.events_with_reason("Evicted");
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].message, message);
    assert!(node.runtime.running_containers().is_empty());

    // Never started again, however long it stays.
    tokio::time::sleep(Duration::from_secs(300)).await;
    assert!(node.runtime.running_containers().is_empty());
    assert_eq!(node.runtime.containers().len(), 1);
    assert_eq!(node.reporter.last_phase(&uid).as_deref(), Some("Failed"));
    node.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn within_its_limit_the_pod_keeps_running() {
    let node = Node::start(runtime());
    let p = pod("web")
        .container(container("app", IMAGE))
        .spec(|s| {
            s.volumes = Some(vec![Volume {
                name: "scratch".into(),
                empty_dir: Some(EmptyDirVolumeSource {
                    size_limit: Some(Quantity("1Mi".into())),
                    ..Default::default()
                }),
                ..Default::default()
            }]);
        })
        .build();
    let uid = p.metadata.uid.clone().unwrap_or_default();
    node.pods.snapshot(vec![p]);
    node.until(Duration::from_secs(30), "Running", |n| {
        n.reporter.last_phase(&uid).as_deref() == Some("Running")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(node.reporter.last_phase(&uid).as_deref(), Some("Running"));
    assert!(node.reporter.events_with_reason("Evicted").is_empty());
    node.shutdown().await;
}
