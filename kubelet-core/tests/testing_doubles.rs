//! The channel source, the recording reporter and the pod builders.
#![cfg(feature = "testing")]

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{NodeStatus, ObjectReference, Pod, PodStatus};
use kubelet_core::labels;
use kubelet_core::testing::pods::{container, pod};
use kubelet_core::testing::{ChannelSource, RecordingReporter};
use kubelet_core::{EventType, KubeletEvent, NodeReporter, PodSource, PodUpdate, ReportError};

fn status(phase: &str) -> PodStatus {
    PodStatus {
        phase: Some(phase.into()),
        ..PodStatus::default()
    }
}

#[tokio::test]
async fn channel_source_streams_updates_in_order_and_stamps_the_source() {
    let (source, tx) = ChannelSource::new("api");
    assert_eq!(source.name(), "api");
    let mut updates = Box::new(source).updates();

    assert!(tx.snapshot(vec![pod("a").build()]));
    assert!(tx.add(pod("b").build()));
    assert!(tx.update(pod("b").annotation(labels::CONFIG_SOURCE, "file").build()));
    assert!(tx.remove("uid-default-a"));
    drop(tx);

    let got: Vec<PodUpdate> = updates.by_ref().collect().await;
    assert_eq!(got.len(), 4);
    let source_of =
        |p: &Pod| p.metadata.annotations.as_ref().unwrap()[labels::CONFIG_SOURCE].clone();
    match &got[0] {
        PodUpdate::Snapshot(pods) => assert_eq!(source_of(&pods[0]), "api"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(&got[1], PodUpdate::Add(p) if source_of(p) == "api"));
    // An annotation already set is kept.
    assert!(matches!(&got[2], PodUpdate::Update(p) if source_of(p) == "file"));
    assert!(matches!(&got[3], PodUpdate::Remove(uid) if uid == "uid-default-a"));
}

#[tokio::test]
async fn sender_reports_a_dropped_source() {
    let (source, tx) = ChannelSource::new("api");
    drop(source);
    assert!(tx.is_closed());
    assert!(!tx.add(pod("a").build()));
}

#[tokio::test]
async fn recording_reporter_records_everything() {
    let r = RecordingReporter::new();
    let p = pod("web").build();
    r.register_node(&Default::default()).await.unwrap();
    r.update_node_status("n", &NodeStatus::default())
        .await
        .unwrap();
    r.renew_lease("n").await.unwrap();
    r.renew_lease("n").await.unwrap();
    r.update_pod_status(&p, &status("Pending")).await.unwrap();
    r.update_pod_status(&pod("db").build(), &status("Running"))
        .await
        .unwrap();
    r.update_pod_status(&p, &status("Running")).await.unwrap();
    r.record_event(&KubeletEvent {
        involved: ObjectReference::default(),
        type_: EventType::Normal,
        reason: "Pulled".into(),
        message: "pulled".into(),
    })
    .await
    .unwrap();
    r.pod_removed(&p).await.unwrap();

    assert_eq!(r.registrations(), 1);
    assert!(r.registered_node().is_some());
    assert_eq!(r.node_statuses().len(), 1);
    assert_eq!(r.lease_renewals(), 2);
    let phases: Vec<_> = r
        .pod_statuses("uid-default-web")
        .into_iter()
        .filter_map(|s| s.phase)
        .collect();
    assert_eq!(phases, ["Pending", "Running"]);
    assert_eq!(r.last_phase("uid-default-db").as_deref(), Some("Running"));
    assert_eq!(
        r.pod_status_order(),
        ["uid-default-web", "uid-default-db", "uid-default-web"]
    );
    assert_eq!(r.removed_pods(), ["uid-default-web"]);
    assert_eq!(r.events_with_reason("Pulled").len(), 1);
    assert!(r.events_with_reason("Failed").is_empty());
}

#[tokio::test]
async fn recording_reporter_failure_injection() {
    let r = RecordingReporter::new();
    r.fail_next(1);
    assert!(matches!(
        r.renew_lease("n").await,
        Err(ReportError::Unavailable(_))
    ));
    r.renew_lease("n").await.unwrap();
    r.set_unavailable(true);
    assert!(
        r.update_pod_status(&pod("a").build(), &status("Running"))
            .await
            .is_err()
    );
    r.set_unavailable(false);
    assert_eq!(r.lease_renewals(), 1);
    assert_eq!(r.failed_calls(), 2);
    assert!(r.pod_statuses("uid-default-a").is_empty());
}

#[tokio::test(start_paused = true)]
async fn wait_for_wakes_on_a_recorded_change() {
    let r = std::sync::Arc::new(RecordingReporter::new());
    let writer = {
        let r = r.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            r.update_pod_status(&pod("a").build(), &status("Running"))
                .await
                .unwrap();
        })
    };
    tokio::time::timeout(
        Duration::from_secs(10),
        r.wait_for(|r| r.last_phase("uid-default-a").as_deref() == Some("Running")),
    )
    .await
    .unwrap();
    writer.await.unwrap();
}

#[test]
fn pod_builder_sets_what_it_says() {
    let p = pod("web")
        .namespace("prod")
        .uid("u-1")
        .restart_policy("OnFailure")
        .grace_period(5)
        .init_container(container("init", "busybox").command(["sh", "-c", "true"]))
        .container(
            container("app", "nginx")
                .port(80)
                .args(["-g", "daemon off;"]),
        )
        .build();
    assert_eq!(p.metadata.name.as_deref(), Some("web"));
    assert_eq!(p.metadata.namespace.as_deref(), Some("prod"));
    assert_eq!(p.metadata.uid.as_deref(), Some("u-1"));
    let spec = p.spec.unwrap();
    assert_eq!(spec.restart_policy.as_deref(), Some("OnFailure"));
    assert_eq!(spec.termination_grace_period_seconds, Some(5));
    let init = &spec.init_containers.unwrap()[0];
    assert_eq!(init.command.as_deref().unwrap(), ["sh", "-c", "true"]);
    assert_eq!(spec.containers[0].image.as_deref(), Some("nginx"));
    assert_eq!(
        spec.containers[0].ports.as_ref().unwrap()[0].container_port,
        80
    );
}
