//! End-to-end: `kubectl attach -it` to a pod on this node through a real kube-apiserver, as
//! kube-rs does it (WebSocket to the API server, which carries the upgraded connection to the
//! kubelet's `/attach`; the kubelet proxies it to containerd's streaming server), with a
//! terminal and its resizes. The API server reaches the kubelet on the node's InternalIP
//! with its own client certificate; so the test needs the envtest API server
//! (`KUBELET_TEST_ASSETS`; the fake one does not proxy to kubelets) and a containerd, and is
//! skipped with the reason otherwise (failed with `KUBELET_TEST_REQUIRE_ENVTEST=1` /
//! `KUBELET_TEST_REQUIRE_CONTAINERD=1`).

mod support {
    // Shared by several test binaries; each uses part of it.
    #[allow(dead_code)]
    pub mod cluster;
    #[allow(dead_code)]
    pub mod node;
}

use std::time::Instant;

use futures::SinkExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{AttachParams, PostParams, TerminalSize};
use support::cluster::{Cluster, DEADLINE, IMAGE, POLL, start_reachable_cluster};
use support::node::{NODE, container, phase, uid};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A pod bound to the test node whose one container runs `script` on a terminal, its stdin
/// open (`stdin: true`, `tty: true`, as `kubectl run -it` makes it).
fn tty_pod(name: &str, script: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "nodeName": NODE,
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 0,
            "containers": [{
                "name": "app",
                "image": IMAGE,
                "imagePullPolicy": "IfNotPresent",
                "command": ["sh", "-c", script],
                "stdin": true,
                "tty": true,
            }],
        },
    }))
    .expect("pod JSON")
}

/// Sends a newline until `want` shows in what `stdout` gave, returning all of it: the new
/// size travels on the resize channel, apart from the line, so one line may be read before
/// the terminal has its new size.
async fn ask_until(
    stdin: &mut (impl AsyncWriteExt + Unpin),
    stdout: &mut (impl AsyncReadExt + Unpin),
    want: &str,
) -> String {
    let until = tokio::time::Instant::now() + DEADLINE;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains(want) {
        stdin.write_all(b"\n").await.expect("write stdin");
        match tokio::time::timeout_at(until, stdout.read(&mut buf)).await {
            Ok(Ok(0)) => panic!("stdout ended: {:?}", String::from_utf8_lossy(&seen)),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
            Ok(Err(e)) => panic!("reading stdout: {e}"),
            Err(_) => panic!(
                "no {want:?} within {DEADLINE:?}: {:?}",
                String::from_utf8_lossy(&seen)
            ),
        }
    }
    String::from_utf8_lossy(&seen).into_owned()
}

/// `kubectl attach -it`: what the container's terminal prints comes back, what the test
/// types reaches it (echoed by the terminal, as a terminal does), and each resize of the
/// client's terminal reaches the container's (`stty size` prints rows and columns). Detaching
/// leaves the container running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_with_a_tty_and_resizes_through_the_api_server() {
    let Some((cluster, _ca_dir)) = start_reachable_cluster().await else {
        return;
    };
    let script = "while read x; do echo \"typed:$x\"; stty size; done";
    cluster
        .pods()
        .create(&PostParams::default(), &tty_pod("tty", script))
        .await
        .expect("create pod");
    cluster
        .wait_pod("tty", "Running", |p| phase(p) == "Running")
        .await;

    let mut attached = cluster
        .pods()
        .attach("tty", &AttachParams::interactive_tty())
        .await
        .expect("attach through the API server");
    let mut stdin = attached.stdin().expect("stdin");
    let mut stdout = attached.stdout().expect("stdout");
    assert!(attached.stderr().is_none(), "a terminal has no stderr");
    let mut resize = attached.terminal_size().expect("a resize channel");

    // Typed input reaches the program on the terminal, echoed by the terminal.
    stdin.write_all(b"hello\n").await.expect("write stdin");
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("typed:hello\r\n") {
        let n = tokio::time::timeout(DEADLINE, stdout.read(&mut buf))
            .await
            .expect("output in time")
            .expect("read stdout");
        assert!(n > 0, "stdout ended: {:?}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    let seen = String::from_utf8_lossy(&seen);
    assert!(seen.contains("hello\r\n"), "the terminal echoes: {seen:?}");

    for (width, height) in [(123u16, 45u16), (200, 50)] {
        resize
            .send(TerminalSize { width, height })
            .await
            .expect("send the size");
        ask_until(&mut stdin, &mut stdout, &format!("{height} {width}")).await;
    }

    // Detach: the session ends, the container goes on.
    drop(stdin);
    drop(resize);
    attached.abort();
    let pod = cluster
        .wait_pod("tty", "still Running after the detach", |p| {
            phase(p) == "Running"
        })
        .await;
    let app = container(&pod, "app").expect("app status");
    assert_eq!(app.restart_count, 0, "{app:?}");
    assert!(
        app.state.as_ref().is_some_and(|s| s.running.is_some()),
        "{app:?}"
    );

    let pod_uid = uid(&pod);
    cluster.delete_pod("tty", Some(0)).await;
    cluster.wait_pod_gone("tty").await;
    // The kubelet tears the pod down after the API server forgot it (no grace): wait for its
    // sandbox and its volumes (the service account token's tmpfs) to go, so that nothing of
    // the pod outlives the test.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let mounted = std::fs::read_to_string("/proc/mounts")
            .expect("/proc/mounts")
            .contains(&pod_uid);
        if !mounted && cluster.node.sandboxes(Some(&pod_uid)).await.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "pod {pod_uid} not torn down");
        tokio::time::sleep(POLL).await;
    }
    // The kubelet first, while the API server it talks to is still up.
    let Cluster { node, .. } = cluster;
    node.shutdown().await;
}
