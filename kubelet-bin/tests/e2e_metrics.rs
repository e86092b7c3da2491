//! End-to-end: the kubelet's own metrics (`/metrics`, `/metrics/probes`) from the `kubelet`
//! binary on a real containerd, joined to an API server (the real kube-apiserver with
//! `KUBELET_TEST_ASSETS`), read on the read-only port: one pod with an exec readiness probe
//! runs, the runtime operations it took are counted, its probe runs are counted with the
//! pod's UID, and the API client's requests are counted by code, method and host. Skipped
//! when no containerd can run here, unless `KUBELET_TEST_REQUIRE_CONTAINERD=1`.

// Not every helper of the shared support modules is used here.
#[allow(dead_code)]
mod support {
    pub mod cluster;
    pub mod node;
}

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use support::cluster::{DEADLINE, IMAGE, POLL, SERVE, condition, start_cluster};
use support::node::{NODE, uid};

/// A port nobody listens on now.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

/// A plain HTTP GET on the read-only port: content type and body of a 200 answer.
fn http_get(port: u16, path: &str) -> Result<(String, String), String> {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut conn =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(
        conn,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let text = String::from_utf8(raw).map_err(|e| e.to_string())?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("malformed answer: {text}"))?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!("GET {path}: {head}: {body}"));
    }
    let content_type = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type: ")
                .map(str::to_string)
        })
        .unwrap_or_default();
    // The answer is small and unchunked (a whole body, with Content-Length).
    Ok((content_type, body.to_string()))
}

async fn get(port: u16, path: &'static str) -> (String, String) {
    tokio::task::spawn_blocking(move || http_get(port, path))
        .await
        .expect("join")
        .expect("GET")
}

/// The samples of a text exposition: name, labels, value.
fn samples(text: &str) -> Vec<(String, BTreeMap<String, String>, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => (name, labels.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split("\",")
                .filter(|l| !l.is_empty())
                .filter_map(|l| {
                    let (k, v) = l.split_once("=\"")?;
                    Some((k.to_string(), v.trim_end_matches('"').to_string()))
                })
                .collect();
            Some((name.to_string(), labels, value.parse().ok()?))
        })
        .collect()
}

/// The sum of the samples named `name` whose labels include `with`.
fn total(text: &str, name: &str, with: &[(&str, &str)]) -> f64 {
    samples(text)
        .into_iter()
        .filter(|(n, labels, _)| {
            n == name
                && with
                    .iter()
                    .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, v)| v)
        .sum()
}

fn pod_with_readiness_probe(name: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "nodeName": NODE,
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "app",
                "image": IMAGE,
                "imagePullPolicy": "IfNotPresent",
                "command": ["sh", "-c", SERVE],
                "readinessProbe": {
                    "exec": {"command": ["sh", "-c", "test -d /proc/1"]},
                    "periodSeconds": 1,
                },
            }],
        },
    }))
    .expect("pod JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubelet_metrics_on_containerd_and_the_api_server() {
    let port = free_port();
    let Some(cluster) = start_cluster(&[&format!("--read-only-port={port}")]).await else {
        return;
    };
    let created = cluster
        .create_pod(&pod_with_readiness_probe("metrics-probe"))
        .await;
    let pod_uid = uid(&created);
    cluster
        .wait_pod("metrics-probe", "Ready", |p| {
            condition(p, "Ready").is_some_and(|c| c.status == "True")
        })
        .await;

    // Wait until a relist saw the pod and a few probe runs were counted.
    let deadline = Instant::now() + DEADLINE;
    let (metrics, probes) = loop {
        let (_, metrics) = get(port, "/metrics").await;
        let (_, probes) = get(port, "/metrics/probes").await;
        let runs = total(
            &probes,
            "prober_probe_total",
            &[("pod_uid", &pod_uid), ("result", "successful")],
        );
        if total(&metrics, "kubelet_running_pods", &[]) == 1.0 && runs >= 3.0 {
            break (metrics, probes);
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for the metrics:\n{metrics}\n{probes}\n{}",
            cluster.node.kubelet_log()
        );
        tokio::time::sleep(POLL).await;
    };

    let (content_type, _) = get(port, "/metrics").await;
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    assert_eq!(total(&metrics, "kubelet_node_name", &[("node", NODE)]), 1.0);
    assert_eq!(total(&metrics, "kubelet_running_pods", &[]), 1.0);
    assert_eq!(
        total(
            &metrics,
            "kubelet_running_containers",
            &[("container_state", "running")]
        ),
        1.0,
        "{metrics}"
    );
    // The CRI calls the pod took, counted under the reference's operation types.
    let ops = |op: &str| {
        total(
            &metrics,
            "kubelet_runtime_operations_total",
            &[("operation_type", op)],
        )
    };
    for (op, at_least) in [
        ("version", 1.0),
        ("status", 1.0),
        ("run_podsandbox", 1.0),
        ("podsandbox_status", 1.0),
        ("list_podsandbox", 3.0),
        ("list_containers", 3.0),
        ("image_status", 1.0),
        ("create_container", 1.0),
        ("start_container", 1.0),
        ("exec_sync", 3.0),
    ] {
        assert!(ops(op) >= at_least, "{op}: {}\n{metrics}", ops(op));
    }
    assert_eq!(ops("run_podsandbox"), 1.0, "{metrics}");
    assert_eq!(
        total(
            &metrics,
            "kubelet_runtime_operations_duration_seconds_count",
            &[("operation_type", "run_podsandbox")]
        ),
        1.0
    );
    assert_eq!(
        total(
            &metrics,
            "kubelet_started_containers_total",
            &[("container_type", "container")]
        ),
        1.0,
        "{metrics}"
    );
    assert_eq!(
        total(&metrics, "kubelet_started_containers_errors_total", &[]),
        0.0
    );
    assert_eq!(
        total(&metrics, "kubelet_pod_start_duration_seconds_count", &[]),
        1.0,
        "{metrics}"
    );
    assert!(
        total(
            &metrics,
            "kubelet_pod_worker_duration_seconds_count",
            &[("operation_type", "create")]
        ) >= 1.0
    );
    assert!(total(&metrics, "kubelet_pleg_relist_duration_seconds_count", &[]) >= 3.0);
    assert!(total(&metrics, "kubelet_pleg_last_seen_seconds", &[]) > 1.7e9);

    // The API client's requests: the node's registration, Lease, watches, status.
    // The API server's `host:port`, from the kubeconfig the kubelet was given.
    let kubeconfig = cluster.server.node_kubeconfig(NODE).expect("kubeconfig");
    let host = kubeconfig
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: "))
        .and_then(|url| url.split("://").nth(1))
        .expect("server URL")
        .trim_end_matches('/')
        .to_string();
    let ok = total(
        &metrics,
        "rest_client_requests_total",
        &[("code", "200"), ("host", &host), ("method", "GET")],
    );
    assert!(ok >= 1.0, "no GET answered 200 from {host}:\n{metrics}");
    assert!(
        total(
            &metrics,
            "rest_client_requests_total",
            &[("host", &host), ("method", "PATCH")]
        ) >= 1.0,
        "{metrics}"
    );

    // The exec readiness probe, by result, with the pod's UID; its durations.
    let probe = [
        ("container", "app"),
        ("namespace", "default"),
        ("pod", "metrics-probe"),
        ("probe_type", "Readiness"),
    ];
    let mut successful = probe.to_vec();
    successful.extend([("pod_uid", pod_uid.as_str()), ("result", "successful")]);
    let runs = total(&probes, "prober_probe_total", &successful);
    assert!(runs >= 3.0, "{probes}");
    assert!(ops("exec_sync") >= runs, "{metrics}");
    let timed = total(&probes, "prober_probe_duration_seconds_count", &probe);
    assert!(timed >= 3.0, "{probes}");
    let took = total(&probes, "prober_probe_duration_seconds_sum", &probe) / timed;
    assert!(took > 0.0 && took < 5.0, "mean probe time {took} s");
    assert!(
        probes.contains("# TYPE prober_probe_total counter"),
        "{probes}"
    );
}
