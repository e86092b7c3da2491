//! End-to-end: `runtimeClassName` on a real containerd. The RuntimeClasses come from the real
//! kube-apiserver (`KUBELET_TEST_ASSETS`); the test containerd has a second runc handler,
//! `test-handler` (`scripts/containerd-config.toml.in`). A pod whose class names it runs
//! under it, as containerd's own PodSandboxStatus says; a class naming a handler containerd
//! lacks fails the sandbox with `FailedCreatePodSandBox` and the pod stays Pending. Skipped
//! without the envtest API server (the fake serves no RuntimeClasses) or without containerd,
//! unless `KUBELET_TEST_REQUIRE_ENVTEST=1` / `KUBELET_TEST_REQUIRE_CONTAINERD=1`.

mod support {
    // Shared by several test binaries; each uses part of it.
    #[allow(dead_code)]
    pub mod cluster;
    #[allow(dead_code)]
    pub mod node;
}

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::node::v1::RuntimeClass;
use kube::api::{Api, DeleteParams, PostParams};
use kubelet_cri::testing::TEST_RUNTIME_HANDLER;
use support::cluster::{SERVE, api_pod, start_cluster};
use support::node::{container, phase, uid};

fn runtime_class(name: &str, handler: &str) -> RuntimeClass {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "node.k8s.io/v1",
        "kind": "RuntimeClass",
        "metadata": {"name": name},
        "handler": handler,
    }))
    .expect("RuntimeClass JSON")
}

fn with_class(mut pod: Pod, class: &str) -> Pod {
    if let Some(spec) = pod.spec.as_mut() {
        spec.runtime_class_name = Some(class.to_string());
    }
    pod
}

fn running(pod: &Pod, name: &str) -> bool {
    container(pod, name)
        .and_then(|c| c.state.as_ref())
        .is_some_and(|s| s.running.is_some())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_class_handler_reaches_containerd_and_an_unknown_one_fails_the_sandbox() {
    let Some(cluster) = start_cluster(&[]).await else {
        return;
    };
    if cluster.fake().is_some() {
        assert!(
            !kubelet_core::testing::envtest::required(),
            "KUBELET_TEST_REQUIRE_ENVTEST=1 but the test API server is the fake"
        );
        eprintln!("SKIPPED: needs the envtest API server (KUBELET_TEST_ASSETS) for RuntimeClasses");
        return;
    }
    let classes: Api<RuntimeClass> = Api::all(cluster.kube.clone());
    for (name, handler) in [
        ("e2e-test-handler", TEST_RUNTIME_HANDLER),
        ("e2e-missing-handler", "no-such-handler"),
    ] {
        classes
            .create(&PostParams::default(), &runtime_class(name, handler))
            .await
            .expect("create RuntimeClass");
    }

    // The handler of the class reaches containerd, and the pod runs under it.
    let pod = with_class(
        api_pod("handled", "Always", 2, &[("app", SERVE)]),
        "e2e-test-handler",
    );
    cluster.create_pod(&pod).await;
    let pod = cluster
        .wait_pod("handled", "app running", |p| running(p, "app"))
        .await;
    let sandboxes = cluster.node.sandboxes(Some(&uid(&pod))).await;
    assert_eq!(sandboxes.len(), 1, "{sandboxes:?}");
    let handler = cluster
        .node
        .containerd()
        .sandbox_runtime_handler(&sandboxes[0].id)
        .await
        .expect("PodSandboxStatus");
    assert_eq!(handler, TEST_RUNTIME_HANDLER);

    // A pod without a class runs under the default handler (reported as empty or runc).
    let plain = api_pod("plain", "Always", 2, &[("app", SERVE)]);
    cluster.create_pod(&plain).await;
    let plain = cluster
        .wait_pod("plain", "app running", |p| running(p, "app"))
        .await;
    let sandboxes = cluster.node.sandboxes(Some(&uid(&plain))).await;
    let handler = cluster
        .node
        .containerd()
        .sandbox_runtime_handler(&sandboxes[0].id)
        .await
        .expect("PodSandboxStatus");
    assert!(handler.is_empty() || handler == "runc", "{handler:?}");

    // A handler containerd does not have: the sandbox fails as with the reference
    // (FailedCreatePodSandBox, "Failed to create pod sandbox: <runtime error>"), nothing
    // runs, and the pod stays Pending with its container waiting in ContainerCreating.
    let broken = with_class(
        api_pod("broken", "Always", 2, &[("app", SERVE)]),
        "e2e-missing-handler",
    );
    let broken = cluster.create_pod(&broken).await;
    let broken_uid = uid(&broken);
    let events = cluster
        .wait(
            "FailedCreatePodSandBox for pod broken",
            async || {
                let events = cluster.events_about(&broken_uid).await;
                events
                    .iter()
                    .any(|e| e.reason.as_deref() == Some("FailedCreatePodSandBox"))
                    .then_some(events)
            },
            |e| e.is_some(),
        )
        .await
        .unwrap_or_default();
    let event = events
        .iter()
        .find(|e| e.reason.as_deref() == Some("FailedCreatePodSandBox"))
        .expect("event");
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    let message = event.message.clone().unwrap_or_default();
    assert!(
        message.starts_with("Failed to create pod sandbox: rpc error: code = ")
            && message.contains("no runtime for \"no-such-handler\" is configured"),
        "{message}"
    );
    let broken = cluster
        .wait_pod("broken", "status reported", |p| {
            p.status
                .as_ref()
                .is_some_and(|s| s.container_statuses.is_some())
        })
        .await;
    assert_eq!(phase(&broken), "Pending");
    let waiting = container(&broken, "app")
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.waiting.as_ref())
        .and_then(|w| w.reason.clone());
    assert_eq!(waiting.as_deref(), Some("ContainerCreating"));
    assert!(cluster.node.sandboxes(Some(&broken_uid)).await.is_empty());

    for name in ["handled", "plain", "broken"] {
        cluster.delete_pod(name, Some(0)).await;
    }
    for name in ["e2e-test-handler", "e2e-missing-handler"] {
        let _ = classes.delete(name, &DeleteParams::default()).await;
    }
}
