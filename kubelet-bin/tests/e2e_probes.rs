//! End-to-end: probes and lifecycle hooks of static pods run by the `kubelet` binary on a real
//! containerd. Each test starts its own containerd and kubelet (see `support/node.rs`) and is
//! skipped when no containerd can run here, unless `KUBELET_TEST_REQUIRE_CONTAINERD=1`.

// Not every helper of the shared support module is used here.
#[allow(dead_code)]
mod support {
    pub mod node;
}

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use support::node::{TestNode, container, phase, runtime_id};

const IMAGE: &str = kubelet_cri::testing::BUSYBOX_IMAGE;
/// Deadline for a pod to come up, restart, or go.
const DEADLINE: Duration = Duration::from_secs(90);

/// A static pod manifest: `name`, then `spec` lines (indented by two spaces already).
fn pod_yaml(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n{spec}"
    )
}

/// A container entry running `script` with sh, then `extra` lines (indented by four spaces).
fn container_yaml(name: &str, script: &str, extra: &str) -> String {
    let script = serde_json::to_string(script).expect("quote script");
    format!(
        "  - name: {name}\n    image: {IMAGE}\n    imagePullPolicy: IfNotPresent\n    command: [\"sh\", \"-c\", {script}]\n{extra}"
    )
}

fn condition(pod: &Pod, type_: &str) -> Option<String> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.clone())
}

fn pod_ready(pod: &Pod) -> bool {
    condition(pod, "Ready").as_deref() == Some("True")
}

fn app_running(pod: &Pod) -> bool {
    container(pod, "app")
        .and_then(|c| c.state.as_ref())
        .is_some_and(|s| s.running.is_some())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_liveness_failure_restarts_the_container() {
    let Some(mut node) = TestNode::start().await else {
        return;
    };
    // busybox httpd serves /healthz for 6 s, then the file goes and the probe gets 404s.
    let script = "trap 'exit 0' TERM; mkdir -p /www; echo ok > /www/healthz; \
                  httpd -f -p 8080 -h /www & sleep 6; rm /www/healthz; wait";
    let probe = "    livenessProbe:\n      httpGet:\n        path: /healthz\n        port: web\n      \
                 periodSeconds: 1\n      failureThreshold: 2\n    ports:\n    - name: web\n      containerPort: 8080\n";
    node.write_manifest(
        "live.yaml",
        &pod_yaml(
            "live",
            &format!("  containers:\n{}", container_yaml("app", script, probe)),
        ),
    );
    let first = node
        .wait_pod("live", "app running", DEADLINE, app_running)
        .await;
    let first_id = container(&first, "app")
        .and_then(runtime_id)
        .expect("container id")
        .to_string();
    // Healthy while it serves: no restart in the first seconds.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pod = node.pod("live").await.expect("pod");
    assert_eq!(container(&pod, "app").map(|c| c.restart_count), Some(0));

    let restarted = node
        .wait_pod("live", "restarted by its liveness probe", DEADLINE, |p| {
            container(p, "app").is_some_and(|c| c.restart_count >= 1) && app_running(p)
        })
        .await;
    let second_id = container(&restarted, "app")
        .and_then(runtime_id)
        .expect("container id");
    assert_ne!(second_id, first_id);
    let log = node.kubelet_log();
    assert!(
        log.contains("Liveness probe failed: HTTP probe failed with statuscode: 404"),
        "no Unhealthy event in the log"
    );
    assert!(
        log.contains("Container app failed liveness probe, will be restarted"),
        "no Killing event in the log"
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_readiness_is_ready_only_once_the_port_opens() {
    let Some(mut node) = TestNode::start().await else {
        return;
    };
    // Nothing listens for 8 s; then httpd opens port 9000.
    let script = "trap 'exit 0' TERM; sleep 8; httpd -f -p 9000 & wait";
    let probe =
        "    readinessProbe:\n      tcpSocket:\n        port: 9000\n      periodSeconds: 1\n";
    node.write_manifest(
        "tcp.yaml",
        &pod_yaml(
            "tcp",
            &format!("  containers:\n{}", container_yaml("app", script, probe)),
        ),
    );
    let running = node
        .wait_pod("tcp", "app running", DEADLINE, app_running)
        .await;
    let since = Instant::now();
    assert!(!pod_ready(&running), "ready before the port opened");
    assert_eq!(phase(&running), "Running");
    // Still not ready a few seconds in.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let pod = node.pod("tcp").await.expect("pod");
    assert!(!pod_ready(&pod), "ready before the port opened");
    assert!(!container(&pod, "app").is_some_and(|c| c.ready));
    let ready = node.wait_pod("tcp", "Ready", DEADLINE, pod_ready).await;
    assert!(
        since.elapsed() >= Duration::from_secs(3),
        "ready after {:?}",
        since.elapsed()
    );
    assert_eq!(
        condition(&ready, "ContainersReady").as_deref(),
        Some("True")
    );
    assert!(container(&ready, "app").is_some_and(|c| c.ready));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exec_probe_hanging_past_its_timeout_fails() {
    let Some(mut node) = TestNode::start().await else {
        return;
    };
    let script = "trap 'exit 0' TERM; sleep 3600 & wait";
    let probe = "    readinessProbe:\n      exec:\n        command: [\"sleep\", \"10\"]\n      \
                 timeoutSeconds: 2\n      periodSeconds: 3\n";
    node.write_manifest(
        "hang.yaml",
        &pod_yaml(
            "hang",
            &format!("  containers:\n{}", container_yaml("app", script, probe)),
        ),
    );
    node.wait_pod("hang", "app running", DEADLINE, app_running)
        .await;
    let started = Instant::now();
    node.wait_for("an Unhealthy event for the timeout", DEADLINE, async |n| {
        let log = n.kubelet_log();
        log.lines()
            .any(|l| {
                l.contains("Readiness probe failed: command")
                    && l.contains("sleep 10")
                    && l.contains("timed out")
            })
            .then_some(())
    })
    .await;
    // The runtime gave up after the 2 s timeout, not after the command's 10 s.
    assert!(started.elapsed() < Duration::from_secs(30));
    let pod = node.pod("hang").await.expect("pod");
    assert!(!pod_ready(&pod));
    assert_eq!(container(&pod, "app").map(|c| c.restart_count), Some(0));
    node.shutdown().await;
}

/// A gRPC health server on the host (all addresses), serving `service` as SERVING.
async fn health_server(
    service: &str,
) -> (
    u16,
    tonic_health::server::HealthReporter,
    tokio::task::JoinHandle<()>,
) {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status(service, tonic_health::ServingStatus::Serving)
        .await;
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0")
        .await
        .expect("bind the health server");
    let port = listener.local_addr().expect("local addr").port();
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    let task = tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(health)
            .serve_with_incoming(incoming)
            .await;
    });
    (port, reporter, task)
}

/// Aborts the server task however the test ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_readiness_follows_a_health_server() {
    let Some(mut node) = TestNode::start().await else {
        return;
    };
    let (port, reporter, task) = health_server("app.v1").await;
    let _server = AbortOnDrop(task);
    let script = "trap 'exit 0' TERM; sleep 3600 & wait";
    let probe = format!(
        "    readinessProbe:\n      grpc:\n        port: {port}\n        service: app.v1\n      periodSeconds: 1\n"
    );
    node.write_manifest(
        "grpc.yaml",
        &pod_yaml(
            "grpc",
            &format!(
                "  hostNetwork: true\n  containers:\n{}",
                container_yaml("app", script, &probe)
            ),
        ),
    );
    node.wait_pod(
        "grpc",
        "Ready through the gRPC health check",
        DEADLINE,
        pod_ready,
    )
    .await;
    reporter
        .set_service_status("app.v1", tonic_health::ServingStatus::NotServing)
        .await;
    node.wait_pod("grpc", "not Ready once NOT_SERVING", DEADLINE, |p| {
        !pod_ready(p) && app_running(p)
    })
    .await;
    assert!(
        node.kubelet_log()
            .lines()
            .any(|l| l.contains("service unhealthy (responded with") && l.contains("NOT_SERVING")),
        "no Unhealthy event in the log"
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pre_stop_hook_runs_before_the_container_stops() {
    let Some(mut node) = TestNode::start().await else {
        return;
    };
    let out = tempfile::Builder::new()
        .prefix("kubelet-e2e-prestop-")
        .tempdir()
        .expect("temp dir");
    let log = out.path().join("log");
    let script = "trap 'echo term >> /out/log; exit 0' TERM; echo started >> /out/log; \
                  sleep 3600 & wait";
    let extra = "    lifecycle:\n      preStop:\n        exec:\n          command: [\"sh\", \"-c\", \"echo prestop >> /out/log\"]\n    \
                 volumeMounts:\n    - name: out\n      mountPath: /out\n";
    node.write_manifest(
        "stop.yaml",
        &pod_yaml(
            "stop",
            &format!(
                "  terminationGracePeriodSeconds: 20\n  volumes:\n  - name: out\n    hostPath:\n      path: {}\n      type: Directory\n  containers:\n{}",
                out.path().display(),
                container_yaml("app", script, extra)
            ),
        ),
    );
    node.wait_pod("stop", "app running", DEADLINE, app_running)
        .await;
    node.wait_for("the container to write its start", DEADLINE, async |_| {
        std::fs::read_to_string(&log)
            .ok()
            .filter(|t| t.contains("started"))
            .map(drop)
    })
    .await;
    node.remove_manifest("stop.yaml");
    node.wait_for("the pod to go", DEADLINE, async |n| {
        n.pods_named("stop").await.is_empty().then_some(())
    })
    .await;
    let text = std::fs::read_to_string(&log).expect("read the hook's file");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines, ["started", "prestop", "term"], "{text}");
    node.shutdown().await;
}
