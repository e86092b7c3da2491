//! End-to-end: the `kubelet` binary's image garbage collection on a real containerd. The
//! kubelet is restarted with thresholds that make any usage collectable
//! (`--image-gc-high-threshold=1 --image-gc-low-threshold=0
//! --minimum-image-ttl-duration=0s`); its first pass at start removes the images no container
//! uses, while the image of the running static pod and the sandbox image
//! (`--pod-infra-container-image`) stay. Skipped when no containerd can run here (unless
//! `KUBELET_TEST_REQUIRE_CONTAINERD=1`).

mod support {
    // Shared by several test binaries; each uses part of it.
    #[allow(dead_code)]
    pub mod node;
}

use std::time::Duration;

use kubelet_core::Runtime;
use kubelet_cri::testing::{BUSYBOX_IMAGE, BUSYBOX_NONROOT_IMAGE, PAUSE_IMAGE};
use support::node::{TestNode, running_and_ready};

/// Deadline for a pod to come up or an image to go.
const DEADLINE: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unused_images_are_removed_while_in_use_and_sandbox_images_stay() {
    // Started with the defaults first (2m minimum age: nothing goes while the pod starts).
    let Some(mut node) = TestNode::start().await else {
        return;
    };
    node.write_manifest(
        "gc.yaml",
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: gc\n  namespace: default\nspec:\n  \
             containers:\n  - name: app\n    image: {BUSYBOX_IMAGE}\n    imagePullPolicy: \
             IfNotPresent\n    command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; sleep 3600 & \
             wait\"]\n"
        ),
    );
    node.wait_pod("gc", "Running and ready", DEADLINE, |p| {
        running_and_ready(p, "app")
    })
    .await;
    let runtime = node.containerd().runtime().await;
    for image in [BUSYBOX_IMAGE, BUSYBOX_NONROOT_IMAGE, PAUSE_IMAGE] {
        assert!(
            runtime.image_status(image).await.unwrap().is_some(),
            "{image} imported by the test containerd"
        );
    }

    assert!(node.terminate_kubelet(Duration::from_secs(30)).is_some());
    node.set_extra_args(vec![
        "--image-gc-high-threshold=1".into(),
        "--image-gc-low-threshold=0".into(),
        "--minimum-image-ttl-duration=0s".into(),
        // The sandbox image (`--pod-infra-container-image`) is the test node's own flag.
    ]);
    node.start_kubelet().await;
    node.wait_for(
        "the unused image to be removed",
        DEADLINE,
        async |_| match runtime.image_status(BUSYBOX_NONROOT_IMAGE).await {
            Ok(None) => Some(()),
            _ => None,
        },
    )
    .await;
    assert!(
        runtime.image_status(BUSYBOX_IMAGE).await.unwrap().is_some(),
        "the running pod's image stays"
    );
    assert!(
        runtime.image_status(PAUSE_IMAGE).await.unwrap().is_some(),
        "the sandbox image stays"
    );
    let log = node.kubelet_log();
    assert!(log.contains("Removing image to free bytes"), "{log}");
    // The disk is used by more than images: the kubelet cannot reach 0% and says so.
    assert!(log.contains("FreeDiskSpaceFailed"), "{log}");
    node.wait_pod("gc", "still running", DEADLINE, |p| {
        running_and_ready(p, "app")
    })
    .await;
    node.shutdown().await;
}
