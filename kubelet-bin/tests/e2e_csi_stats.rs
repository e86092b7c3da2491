//! End-to-end: a CSI volume's usage, as its driver reports it (`NodeGetVolumeStats`),
//! reaches `/stats/summary` (the pod's `volume` list, with the claim as `pvcRef`) and
//! `/metrics` (`kubelet_volume_stats_*{namespace, persistentvolumeclaim}`), on a real
//! containerd, the real kube-apiserver (with `KUBELET_TEST_ASSETS`) and the example hostpath
//! CSI driver registered through `<root-dir>/plugins_registry/`. Needs root (the driver
//! bind-mounts); skipped without unless `KUBELET_TEST_REQUIRE_ROOT=1`.

mod support {
    // Shared by several test binaries; each uses part of it.
    #[allow(dead_code)]
    pub mod cluster;
    #[allow(dead_code)]
    pub mod csi;
    #[allow(dead_code)]
    pub mod node;
}

use std::time::Duration;

use kube::api::DeleteParams;
use support::cluster::{SERVE, start_cluster};
use support::csi::{bind_claim, csi_pod, have_root, put_csi_driver, start_driver};
use support::node::{free_port, running_and_ready};

/// Housekeeping runs every 10 s; room for a loaded machine.
const DEADLINE: Duration = Duration::from_secs(120);

/// The numbers of `volume` of pod `pod` in a `/stats/summary` answer, when listed.
fn summary_volume(
    summary: &serde_json::Value,
    pod: &str,
    volume: &str,
) -> Option<serde_json::Value> {
    summary["pods"]
        .as_array()?
        .iter()
        .find(|p| p["podRef"]["name"] == pod)?["volume"]
        .as_array()?
        .iter()
        .find(|v| v["name"] == volume)
        .cloned()
}

/// The value of the sample of `family` for the claim `default/claim` in a `/metrics` text.
fn claim_gauge(text: &str, family: &str, claim: &str) -> Option<f64> {
    let prefix = format!("{family}{{namespace=\"default\",persistentvolumeclaim=\"{claim}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csi_volume_usage_in_the_summary_and_the_volume_metrics() {
    if !have_root() {
        return;
    }
    let port = free_port();
    let Some(mut cluster) = start_cluster(&[&format!("--read-only-port={port}")]).await else {
        return;
    };
    let d = start_driver(&cluster.node).await;
    put_csi_driver(&cluster, serde_json::json!({"attachRequired": false})).await;
    let (claims, volumes) = bind_claim(&cluster, "stats-claim", "stats-pv", "stats-vol").await;
    let pod = csi_pod(
        "csi-stats",
        serde_json::json!({"name": "data", "persistentVolumeClaim": {"claimName": "stats-claim"}}),
        &format!("echo data > /data/out && {SERVE}"),
    );
    cluster.create_pod(&pod).await;
    cluster
        .wait_pod("csi-stats", "running", |p| running_and_ready(p, "app"))
        .await;

    // The driver measures the filesystem of its backing directory (statvfs).
    let backing = d.driver.volume_path("stats-vol");
    let st = nix::sys::statvfs::statvfs(&backing).expect("statvfs of the backing directory");
    let capacity = st.blocks() * st.fragment_size();

    let volume = cluster
        .node
        .wait_for("the CSI volume in /stats/summary", DEADLINE, async |node| {
            let text = node.try_get_port(port, "/stats/summary").await.ok()?;
            let summary: serde_json::Value = serde_json::from_str(&text).ok()?;
            summary_volume(&summary, "csi-stats", "data")
        })
        .await;
    assert_eq!(
        volume["pvcRef"],
        serde_json::json!({"name": "stats-claim", "namespace": "default"}),
        "{volume}"
    );
    assert_eq!(volume["capacityBytes"], capacity, "{volume}");
    let used = volume["usedBytes"].as_u64().expect("usedBytes");
    assert!(used > 0 && used <= capacity, "{volume}");
    assert!(volume["inodes"].as_u64().is_some_and(|n| n > 0), "{volume}");
    assert!(d.driver.count("NodeGetVolumeStats") >= 1);

    // /metrics: one series per claim, the summary's numbers.
    let text = cluster
        .node
        .wait_for(
            "kubelet_volume_stats_* on /metrics",
            DEADLINE,
            async |node| {
                let text = node.try_get_port(port, "/metrics").await.ok()?;
                claim_gauge(&text, "kubelet_volume_stats_capacity_bytes", "stats-claim")
                    .is_some()
                    .then_some(text)
            },
        )
        .await;
    assert_eq!(
        claim_gauge(&text, "kubelet_volume_stats_capacity_bytes", "stats-claim"),
        Some(capacity as f64),
        "{text}"
    );
    for family in [
        "kubelet_volume_stats_available_bytes",
        "kubelet_volume_stats_used_bytes",
        "kubelet_volume_stats_inodes",
        "kubelet_volume_stats_inodes_free",
        "kubelet_volume_stats_inodes_used",
    ] {
        assert!(
            claim_gauge(&text, family, "stats-claim").is_some(),
            "{family} missing:\n{text}"
        );
        assert!(text.contains(&format!("# TYPE {family} gauge")), "{text}");
    }

    cluster.delete_pod("csi-stats", Some(0)).await;
    cluster.wait_pod_gone("csi-stats").await;
    let _ = claims.delete("stats-claim", &DeleteParams::default()).await;
    let _ = volumes.delete("stats-pv", &DeleteParams::default()).await;
    // The driver stays up until the volume is torn down.
    support::csi::eventually("unpublished", || d.driver.mounts().is_empty()).await;
    drop(d);
}
