//! `node.status.volumesInUse` under paused time, with the fake runtime and the recording
//! reporter: the node agent reports the tracker's volumes as soon as they change (not at
//! the next 10 s tick), marks them reported only once a status listing them was accepted,
//! and clears the field when the last volume goes; the kubelet builder hands the tracker
//! to its agent.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::NodeStatus;
use kubelet_core::node::{MachineInfo, NodeAgent, NodeConfig, VolumesInUse};
use kubelet_core::testing::{ChannelSource, FakeRuntime, RecordingReporter};
use kubelet_core::{Kubelet, KubeletConfig};
use tokio::sync::oneshot;
use tokio::time::{Instant, sleep_until};

const A: &str = "kubernetes.io/csi/d^a";
const B: &str = "kubernetes.io/csi/d^b";
const C: &str = "kubernetes.io/csi/d^c";

fn machine() -> MachineInfo {
    MachineInfo {
        num_cores: 2,
        memory_capacity: 4 << 30,
        ephemeral_storage_capacity: 50 << 30,
        architecture: "amd64".into(),
        operating_system: "linux".into(),
        ..MachineInfo::default()
    }
}

fn in_use(status: &NodeStatus) -> Option<Vec<&str>> {
    status
        .volumes_in_use
        .as_ref()
        .map(|v| v.iter().map(String::as_str).collect())
}

#[tokio::test(start_paused = true)]
async fn volumes_in_use_are_reported_promptly_marked_reported_and_cleared() {
    let volumes = VolumesInUse::new();
    let reporter = Arc::new(RecordingReporter::new());
    let agent = NodeAgent::new(
        NodeConfig::new("node-1"),
        machine(),
        Arc::new(FakeRuntime::new()),
        reporter.clone(),
    )
    .unwrap()
    .with_volumes_in_use(volumes.clone());
    let (stop, stopped) = oneshot::channel::<()>();
    let t0 = Instant::now();
    let task = tokio::spawn(agent.run(async move {
        let _ = stopped.await;
    }));
    let at = |secs: f64| sleep_until(t0 + Duration::from_secs_f64(secs));

    // Registered at 0.1 s, first status at once: no volumes, no field.
    at(1.0).await;
    let statuses = reporter.node_statuses();
    assert_eq!(statuses.len(), 1);
    assert_eq!(in_use(&statuses[0]), None);

    // Marked between two ticks (10.1 s, 20.1 s): reported at that instant, sorted.
    at(12.0).await;
    volumes.mark(B);
    volumes.mark(A);
    assert!(!volumes.is_reported(A), "not before a status listed it");
    tokio::task::yield_now().await;
    at(12.001).await;
    let statuses = reporter.node_statuses();
    assert_eq!(statuses.len(), 2, "sent without waiting for the tick");
    assert_eq!(in_use(&statuses[1]), Some(vec![A, B]));
    assert!(volumes.is_reported(A) && volumes.is_reported(B));

    // Unmarked and marked again before the agent looks: the status is unchanged, so
    // nothing is sent, but the server still holds it, so it counts as reported again.
    volumes.unmark(A);
    volumes.mark(A);
    assert!(!volumes.is_reported(A));
    at(12.002).await;
    assert_eq!(reporter.node_statuses().len(), 2);
    assert!(volumes.is_reported(A));

    // A status the API server did not accept marks nothing; the next tick (20.1 s) sends
    // it again.
    reporter.set_unavailable(true);
    volumes.mark(C);
    at(13.0).await;
    assert!(!volumes.is_reported(C));
    assert!(volumes.is_reported(A), "the earlier report still stands");
    reporter.set_unavailable(false);
    at(19.0).await;
    assert!(!volumes.is_reported(C));
    at(20.2).await;
    assert!(volumes.is_reported(C));
    assert_eq!(
        in_use(&reporter.last_node_status().unwrap()),
        Some(vec![A, B, C])
    );

    // Volumes leave; when the last goes the field is cleared, at once each time.
    let sent = reporter.node_statuses().len();
    volumes.unmark(A);
    volumes.unmark(C);
    at(21.0).await;
    assert_eq!(reporter.node_statuses().len(), sent + 1);
    assert_eq!(in_use(&reporter.last_node_status().unwrap()), Some(vec![B]));
    volumes.unmark(B);
    at(22.0).await;
    assert_eq!(reporter.node_statuses().len(), sent + 2);
    assert_eq!(in_use(&reporter.last_node_status().unwrap()), None);
    assert!(!volumes.is_reported(B));

    let _ = stop.send(());
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_kubelet_builder_gives_the_tracker_to_its_node_agent() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = KubeletConfig::new("node-1");
    config.root_dir = dir.path().join("kubelet");
    let reporter = Arc::new(RecordingReporter::new());
    let (source, _pods) = ChannelSource::new("api");
    let volumes = VolumesInUse::new();
    volumes.mark(A);
    let kubelet = Kubelet::builder(config)
        .runtime(Arc::new(FakeRuntime::new()))
        .reporter(reporter.clone())
        .source(Box::new(source))
        .volumes_in_use(volumes.clone())
        .node_status(NodeConfig::new("node-1"), machine())
        .build()
        .unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(kubelet.run(async move {
        let _ = stopped.await;
    }));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(in_use(&reporter.last_node_status().unwrap()), Some(vec![A]));
    assert!(volumes.is_reported(A));
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}
