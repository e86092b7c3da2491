//! End-to-end: a CSI-backed pod deleted while the kubelet is down, on a real containerd and
//! the real API server (the envtest kube-apiserver with `KUBELET_TEST_ASSETS`, else the fake
//! one), with the example hostpath CSI driver registered through its registrar.
//!
//! - [`csi_volumes_of_a_pod_deleted_while_the_kubelet_was_down_are_torn_down`]: a pod with an
//!   inline CSI volume and a PVC-backed (staged) one runs; the kubelet is SIGKILLed, the pod
//!   force-deleted from the API server and its sandbox removed from containerd meanwhile;
//!   the restarted kubelet's housekeeping finds the pod directory, unpublishes both volumes,
//!   unstages the PV, and removes the directory.
//!
//! Skipped when no containerd can run here (unless `KUBELET_TEST_REQUIRE_CONTAINERD=1`), or
//! without root (the driver bind-mounts).

mod support {
    // Shared by several test binaries; each uses part of it.
    #[allow(dead_code)]
    pub mod cluster;
    #[allow(dead_code)]
    pub mod csi;
    #[allow(dead_code)]
    pub mod node;
}

use k8s_openapi::api::core::v1::{Volume, VolumeMount};
use kube::api::DeleteParams;
use kubelet_core::Runtime;
use kubelet_core::runtime::ListFilter;
use support::cluster::{SERVE, start_cluster};
use support::csi::{
    DRIVER, bind_claim, csi_pod, eventually, have_root, is_mounted, put_csi_driver, root_dir,
    start_driver,
};
use support::node::{running_and_ready, uid};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csi_volumes_of_a_pod_deleted_while_the_kubelet_was_down_are_torn_down() {
    if !have_root() {
        return;
    }
    let Some(mut cluster) = start_cluster(&[]).await else {
        return;
    };
    let d = start_driver(&cluster.node).await;
    put_csi_driver(
        &cluster,
        serde_json::json!({
            "attachRequired": false,
            "volumeLifecycleModes": ["Persistent", "Ephemeral"],
        }),
    )
    .await;
    let (claims, volumes) =
        bind_claim(&cluster, "orphan-claim", "orphan-pv", "e2e-orphan-vol").await;
    let mut pod = csi_pod(
        "csi-orphan",
        serde_json::json!({"name": "data", "csi": {"driver": DRIVER}}),
        SERVE,
    );
    let spec = pod.spec.as_mut().expect("spec");
    spec.volumes.get_or_insert_with(Vec::new).push(
        serde_json::from_value::<Volume>(serde_json::json!({
            "name": "claim",
            "persistentVolumeClaim": {"claimName": "orphan-claim"},
        }))
        .expect("volume JSON"),
    );
    spec.containers[0]
        .volume_mounts
        .get_or_insert_with(Vec::new)
        .push(VolumeMount {
            name: "claim".into(),
            mount_path: "/claim".into(),
            ..VolumeMount::default()
        });
    cluster.create_pod(&pod).await;
    let running = cluster
        .wait_pod("csi-orphan", "running", |p| running_and_ready(p, "app"))
        .await;
    let pod_uid = uid(&running);
    let pod_dir = root_dir(&cluster.node).join("pods").join(&pod_uid);
    let inline = pod_dir.join("volumes/kubernetes.io~csi/data/mount");
    let claimed = pod_dir.join("volumes/kubernetes.io~csi/orphan-pv/mount");
    assert!(is_mounted(&inline), "published at {}", inline.display());
    assert!(is_mounted(&claimed), "published at {}", claimed.display());
    let staging = d
        .driver
        .staged()
        .get("e2e-orphan-vol")
        .cloned()
        .expect("the PV staged");
    assert_eq!(d.driver.count("NodePublishVolume"), 2);
    let published = d.driver.published();
    assert!(
        published.contains_key(&inline) && published.contains_key(&claimed),
        "{published:?}"
    );

    // The kubelet dies; meanwhile the pod is force-deleted and its sandbox removed.
    cluster.node.kill_kubelet();
    cluster.delete_pod("csi-orphan", Some(0)).await;
    cluster.wait_pod_gone("csi-orphan").await;
    let runtime = cluster.node.containerd().runtime().await;
    let sandboxes = runtime
        .list_pod_sandboxes(&ListFilter::pod(&pod_uid))
        .await
        .expect("CRI ListPodSandbox");
    assert!(!sandboxes.is_empty(), "the pod's sandbox is in containerd");
    for sandbox in &sandboxes {
        runtime
            .stop_pod_sandbox(&sandbox.id)
            .await
            .expect("CRI StopPodSandbox");
        runtime
            .remove_pod_sandbox(&sandbox.id)
            .await
            .expect("CRI RemovePodSandbox");
    }
    assert!(
        runtime
            .list_containers(&ListFilter::pod(&pod_uid))
            .await
            .expect("CRI ListContainers")
            .is_empty(),
        "containers go with their sandbox"
    );
    assert!(pod_dir.is_dir(), "the pod directory outlives the pod");
    assert_eq!(d.driver.count("NodeUnpublishVolume"), 0);

    cluster.node.start_kubelet().await;
    eventually("both volumes unpublished and the PV unstaged", || {
        d.driver.count("NodeUnpublishVolume") >= 2 && d.driver.count("NodeUnstageVolume") >= 1
    })
    .await;
    eventually("the orphaned pod directory removed", || !pod_dir.exists()).await;
    assert!(!is_mounted(&inline) && !is_mounted(&claimed));
    eventually("the global mount directory removed", || !staging.exists()).await;
    assert!(d.driver.mounts().is_empty(), "{:?}", d.driver.mounts());
    assert!(
        d.driver.published().is_empty(),
        "the driver unpublished both targets: {:?}",
        d.driver.published()
    );
    let log = cluster.node.kubelet_log();
    assert!(
        log.contains("orphaned pod directory removed"),
        "the housekeeping says what it did"
    );
    let _ = claims
        .delete("orphan-claim", &DeleteParams::default())
        .await;
    let _ = volumes.delete("orphan-pv", &DeleteParams::default()).await;
    // Keep the driver up until here: teardown needs it.
    drop(d);
}
