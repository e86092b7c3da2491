#![cfg(feature = "server")]
//! `/stats/summary`, `/metrics/resource` and `/metrics/cadvisor` on the secure routes (behind
//! the `stats` and `metrics` subresources) and on the read-only port, from a provider of the
//! test's own: the seam an embedder plugs its runtime's numbers into.

use std::sync::Arc;

use async_trait::async_trait;
use http::{Request, StatusCode};
use kubelet_core::server::authn::Authenticator;
use kubelet_core::server::authz::{Attributes, Authorizer, AuthzError, Decision};
use kubelet_core::server::routes::{RouteState, secure_router};
use kubelet_core::server::{Auth, ConnectionInfo, Handles, ReadOnlyServer, ServerConfig};
use kubelet_core::stats::summary::{
    ContainerStats, CpuStats, MemoryStats, NetworkStats, NodeStats, PodReference, PodStats,
    Summary, Time,
};
use kubelet_core::stats::{StatsError, StatsProvider};
use kubelet_core::testing::{ChannelSource, FakeRuntime, RecordingReporter};
use kubelet_core::{Kubelet, KubeletConfig, RuntimeError};
use tower::ServiceExt;

/// An embedder's provider: a fixed summary, or a failure.
struct Fixed(Option<Arc<Summary>>);

#[async_trait]
impl StatsProvider for Fixed {
    async fn summary(&self) -> Result<Arc<Summary>, StatsError> {
        self.0
            .clone()
            .ok_or_else(|| StatsError::Runtime(RuntimeError::Unavailable("down".into())))
    }
}

fn summary() -> Summary {
    let t = Time(1_700_000_000_000_000_000);
    Summary {
        node: NodeStats {
            node_name: "node-1".into(),
            start_time: t,
            cpu: Some(CpuStats {
                time: t,
                usage_nano_cores: Some(250_000_000),
                usage_core_nano_seconds: Some(12_000_000_000),
            }),
            network: Some(NetworkStats {
                time: t,
                ..Default::default()
            }),
            ..Default::default()
        },
        pods: vec![PodStats {
            pod_ref: PodReference {
                name: "web".into(),
                namespace: "default".into(),
                uid: "u1".into(),
            },
            start_time: t,
            containers: vec![ContainerStats {
                name: "app".into(),
                start_time: t,
                memory: Some(MemoryStats {
                    time: t,
                    working_set_bytes: Some(64 << 20),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// Allows one subresource only.
struct Only(&'static str);

#[async_trait]
impl Authorizer for Only {
    async fn authorize(&self, a: &Attributes) -> Result<Decision, AuthzError> {
        Ok(if a.subresource == self.0 {
            Decision::Allow
        } else {
            Decision::Deny("not this one".into())
        })
    }
}

fn handles() -> Handles {
    let runtime = Arc::new(FakeRuntime::new());
    let (source, _pods) = ChannelSource::new("api");
    let kubelet = Kubelet::builder(KubeletConfig::new("node-1"))
        .runtime(runtime.clone())
        .reporter(Arc::new(RecordingReporter::new()))
        .source(Box::new(source))
        .build()
        .expect("kubelet");
    Handles {
        kubelet: kubelet.handle(),
        runtime,
    }
}

async fn get(
    router: &axum::Router,
    path: &str,
    accept: Option<&str>,
) -> (StatusCode, String, String) {
    let mut request = Request::get(path);
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    let mut request = request.body(axum::body::Body::empty()).expect("request");
    request.extensions_mut().insert(ConnectionInfo::default());
    let response = router.clone().oneshot(request).await.expect("response");
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body");
    (
        status,
        content_type,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

fn router(provider: Arc<dyn StatsProvider>, allowed: &'static str) -> axum::Router {
    let mut config = ServerConfig::new("node-1", "127.0.0.1:0".parse().expect("addr"));
    config.stats = Some(provider);
    let auth = Auth {
        authenticator: Authenticator::new().anonymous(true),
        authorizer: Arc::new(Only(allowed)),
    };
    secure_router(RouteState::new(&config, handles()), auth)
}

#[tokio::test]
async fn summary_behind_the_stats_subresource() {
    let stats = router(Arc::new(Fixed(Some(Arc::new(summary())))), "stats");
    let (status, content_type, body) = get(&stats, "/stats/summary", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(content_type, "application/json");
    let json: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(json["node"]["nodeName"], "node-1");
    assert_eq!(json["node"]["cpu"]["usageNanoCores"], 250_000_000);
    assert!(json["node"].get("network").is_some());
    assert_eq!(json["pods"][0]["podRef"]["name"], "web");
    assert_eq!(
        json["pods"][0]["containers"][0]["memory"]["workingSetBytes"],
        64 << 20
    );
    let (status, _, body) = get(&stats, "/stats/summary?only_cpu_and_memory=true", None).await;
    assert_eq!(status, StatusCode::OK);
    let json: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert!(json["node"].get("network").is_none(), "{body}");
    assert!(json["node"].get("cpu").is_some(), "{body}");

    // The metrics subresource is another permission.
    let (status, _, body) = get(&stats, "/metrics/resource", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("subresource(s)=[metrics]"), "{body}");

    let failing = router(Arc::new(Fixed(None)), "stats");
    let (status, _, body) = get(&failing, "/stats/summary", None).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(body.starts_with("Internal Error: "), "{body}");
}

#[tokio::test]
async fn resource_metrics_behind_the_metrics_subresource() {
    let metrics = router(Arc::new(Fixed(Some(Arc::new(summary())))), "metrics");
    let (status, content_type, body) = get(&metrics, "/metrics/resource", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    assert!(
        body.lines()
            .any(|l| l == "node_cpu_usage_seconds_total 12.0 1700000000000"),
        "{body}"
    );
    assert!(
        body.lines().any(|l| l
            == "container_memory_working_set_bytes{container=\"app\",namespace=\"default\",pod=\"web\"} 67108864.0 1700000000000"),
        "{body}"
    );
    assert!(body.lines().any(|l| l == "scrape_error 0"), "{body}");
    let (_, content_type, body) = get(
        &metrics,
        "/metrics/resource",
        Some("application/openmetrics-text;version=1.0.0"),
    )
    .await;
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    assert!(body.ends_with("# EOF\n"), "{body}");
    let (status, _, _) = get(&metrics, "/stats/summary", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let failing = router(Arc::new(Fixed(None)), "metrics");
    let (status, _, body) = get(&failing, "/metrics/resource", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.lines().any(|l| l == "scrape_error 1"), "{body}");
}

#[tokio::test]
async fn cadvisor_metrics_behind_the_metrics_subresource() {
    // The embedder's provider implements `summary` only: the default `cadvisor` derives the
    // per-container series from it.
    let metrics = router(Arc::new(Fixed(Some(Arc::new(summary())))), "metrics");
    let (status, content_type, body) = get(&metrics, "/metrics/cadvisor", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    for expected in [
        "# TYPE container_cpu_usage_seconds_total counter",
        "# TYPE container_memory_working_set_bytes gauge",
        "container_memory_working_set_bytes{container=\"app\",id=\"/pods/u1/app\",image=\"\",name=\"\",namespace=\"default\",pod=\"web\"} 67108864.0 1700000000000",
        "container_cpu_usage_seconds_total{container=\"\",cpu=\"total\",id=\"/\",image=\"\",name=\"\",namespace=\"\",pod=\"\"} 12.0 1700000000000",
        "container_scrape_error 0",
    ] {
        assert!(
            body.lines().any(|l| l == expected),
            "missing {expected:?} in\n{body}"
        );
    }
    let (_, content_type, body) = get(
        &metrics,
        "/metrics/cadvisor",
        Some("application/openmetrics-text;version=1.0.0"),
    )
    .await;
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    assert!(body.ends_with("# EOF\n"), "{body}");

    let stats_only = router(Arc::new(Fixed(Some(Arc::new(summary())))), "stats");
    let (status, _, body) = get(&stats_only, "/metrics/cadvisor", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("subresource(s)=[metrics]"), "{body}");

    let failing = router(Arc::new(Fixed(None)), "metrics");
    let (status, _, body) = get(&failing, "/metrics/cadvisor", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.lines().any(|l| l == "container_scrape_error 1"),
        "{body}"
    );
}

#[tokio::test]
async fn read_only_port_serves_stats() {
    let server = ReadOnlyServer::bind("127.0.0.1:0".parse().expect("addr"), handles())
        .await
        .expect("bind")
        .with_stats(Arc::new(Fixed(Some(Arc::new(summary())))));
    let addr = server.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.serve(async move {
        let _ = stopped.await;
    }));
    let (status, body) = http_get(addr, "/stats/summary").await;
    assert!(status.contains(" 200 "), "{status}");
    let summary: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(summary["pods"][0]["podRef"]["uid"], "u1");
    let (status, metrics) = http_get(addr, "/metrics/resource").await;
    assert!(status.contains(" 200 "), "{status}");
    assert!(
        metrics.contains("# TYPE pod_cpu_usage_seconds_total counter"),
        "{metrics}"
    );
    let (status, cadvisor) = http_get(addr, "/metrics/cadvisor").await;
    assert!(status.contains(" 200 "), "{status}");
    assert!(
        cadvisor.contains("# TYPE container_memory_working_set_bytes gauge"),
        "{cadvisor}"
    );
    let (status, _) = http_get(addr, "/healthz").await;
    assert!(status.contains(" 200 "), "the other routes stay: {status}");
    let _ = stop.send(());
    task.await.expect("join").expect("serve");
}

/// A plain HTTP/1.1 GET on the read-only port: the status line and the body.
async fn http_get(addr: std::net::SocketAddr, path: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
    conn.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .expect("write");
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).await.expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a full answer");
    (
        head.lines().next().unwrap_or_default().to_string(),
        body.to_string(),
    )
}
