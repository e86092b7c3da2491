//! End-to-end: the daemon keeps working, and stops on SIGTERM, after the reader of its log
//! (stderr) went away, as when the `tee` or log collector it was piped into dies. A failed
//! log write must cost the log line, not the task that logged it. Skipped when no containerd
//! can run here, unless `KUBELET_TEST_REQUIRE_CONTAINERD=1`.

// Not every helper of the shared support module is used here.
#[allow(dead_code)]
mod support {
    pub mod node;
}

use std::time::Duration;

use support::node::{TestNode, running_and_ready};

/// Generous, for a loaded machine.
const DEADLINE: Duration = Duration::from_secs(90);

fn manifest(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  \
         containers:\n  - name: app\n    image: {image}\n    imagePullPolicy: Never\n    \
         command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; sleep 3600 & wait\"]\n",
        image = kubelet_cri::testing::BUSYBOX_IMAGE,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_and_stops_on_sigterm_after_its_log_reader_died() {
    let Some(mut node) = TestNode::start().await else {
        return;
    };
    node.kill_kubelet();
    let (reader, writer) = std::io::pipe().expect("pipe");
    node.start_kubelet_logging_to(writer.into()).await;
    // The reader goes: every later write to the kubelet's stderr fails with EPIPE.
    drop(reader);

    // It still starts pods (their workers log at every step)...
    node.write_manifest("after.yaml", &manifest("after"));
    node.wait_pod("after", "running", DEADLINE, |p| {
        running_and_ready(p, "app")
    })
    .await;
    // ...and stops on SIGTERM, as it does with a log reader.
    let status = node.terminate_kubelet(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "the kubelet did not exit cleanly within 30 s of SIGTERM: {status:?}"
    );
}
