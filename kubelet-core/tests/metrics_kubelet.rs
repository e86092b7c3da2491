#![cfg(feature = "server")]
//! The kubelet's own metrics on `/metrics` and `/metrics/probes`: every family under the
//! reference's name, type, label names and buckets (the table below, from the Kubernetes
//! metrics documentation and the reference kubelet's metric definitions), with values that
//! match what happened in a scenario on the fake runtime under paused time: pods started, a
//! container that does not start, an exec readiness probe, an eviction, API requests.

mod support {
    // Shared by the scenario test files; each uses part of it.
    #[allow(dead_code)]
    pub mod scenario;
}

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use http::{Request, StatusCode};
use k8s_openapi::api::core::v1::{EmptyDirVolumeSource, ExecAction, Probe, Volume, VolumeMount};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kubelet_core::metrics::KubeletMetrics;
use kubelet_core::server::authn::Authenticator;
use kubelet_core::server::authz::{Attributes, Authorizer, AuthzError, Decision};
use kubelet_core::server::routes::{RouteState, read_only_router, secure_router};
use kubelet_core::server::{Auth, ConnectionInfo, Handles, ServerConfig};
use kubelet_core::testing::pods::{container, pod};
use kubelet_core::testing::{ContainerBehavior, ContainerMatch, Method};
use tower::ServiceExt;

use support::scenario::{IMAGE, Node, runtime};

/// Prometheus' default buckets.
const DEF: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// `podStartupDurationBuckets`.
const POD_START: &[f64] = &[
    0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 20.0, 30.0, 45.0, 60.0, 120.0, 180.0, 240.0,
    300.0, 360.0, 480.0, 600.0, 900.0, 1200.0, 1800.0, 2700.0, 3600.0,
];

/// `ExponentialBuckets(.005, 2.5, 14)`.
fn runtime_buckets() -> Vec<f64> {
    (0..14).map(|i| 0.005 * 2.5f64.powi(i)).collect()
}

/// One row of the reference's metrics: name as exposed (text format), type, label names
/// (sorted), and the buckets of a histogram.
struct Row {
    name: &'static str,
    kind: &'static str,
    labels: &'static [&'static str],
    buckets: Option<Vec<f64>>,
}

fn row(name: &'static str, kind: &'static str, labels: &'static [&'static str]) -> Row {
    Row {
        name,
        kind,
        labels,
        buckets: None,
    }
}

fn histogram(name: &'static str, labels: &'static [&'static str], buckets: Vec<f64>) -> Row {
    Row {
        name,
        kind: "histogram",
        labels,
        buckets: Some(buckets),
    }
}

/// `/metrics`, as the reference kubelet serves these families.
fn metrics_table() -> Vec<Row> {
    vec![
        row("kubelet_node_name", "gauge", &["node"]),
        row("kubelet_running_pods", "gauge", &[]),
        row("kubelet_running_containers", "gauge", &["container_state"]),
        row(
            "kubelet_runtime_operations_total",
            "counter",
            &["operation_type"],
        ),
        histogram(
            "kubelet_runtime_operations_duration_seconds",
            &["operation_type"],
            runtime_buckets(),
        ),
        row(
            "kubelet_runtime_operations_errors_total",
            "counter",
            &["operation_type"],
        ),
        row(
            "kubelet_started_containers_total",
            "counter",
            &["container_type"],
        ),
        row(
            "kubelet_started_containers_errors_total",
            "counter",
            &["code", "container_type"],
        ),
        histogram(
            "kubelet_pod_start_duration_seconds",
            &[],
            POD_START.to_vec(),
        ),
        histogram(
            "kubelet_pod_worker_duration_seconds",
            &["operation_type"],
            DEF.to_vec(),
        ),
        histogram("kubelet_pleg_relist_duration_seconds", &[], DEF.to_vec()),
        histogram("kubelet_pleg_relist_interval_seconds", &[], DEF.to_vec()),
        row("kubelet_pleg_last_seen_seconds", "gauge", &[]),
        row("kubelet_evictions", "counter", &["eviction_signal"]),
        row(
            "rest_client_requests_total",
            "counter",
            &["code", "host", "method"],
        ),
        row(
            "kubelet_http_requests_total",
            "counter",
            &["long_running", "method", "path", "server_type"],
        ),
        histogram(
            "kubelet_http_requests_duration_seconds",
            &["long_running", "method", "path", "server_type"],
            DEF.to_vec(),
        ),
        row(
            "kubelet_http_inflight_requests",
            "gauge",
            &["long_running", "method", "path", "server_type"],
        ),
    ]
}

/// `/metrics/probes`.
fn probes_table() -> Vec<Row> {
    vec![
        row(
            "prober_probe_total",
            "counter",
            &[
                "container",
                "namespace",
                "pod",
                "pod_uid",
                "probe_type",
                "result",
            ],
        ),
        histogram(
            "prober_probe_duration_seconds",
            &["container", "namespace", "pod", "probe_type"],
            DEF.to_vec(),
        ),
    ]
}

/// One sample of a text exposition.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A parsed text exposition: family types and samples.
#[derive(Debug, Default)]
struct Scrape {
    types: BTreeMap<String, String>,
    samples: Vec<Sample>,
}

fn parse(text: &str) -> Scrape {
    let mut scrape = Scrape::default();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE line");
            scrape.types.insert(name.to_string(), kind.to_string());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("sample line");
        let (name, labels) = match series.split_once('{') {
            Some((name, labels)) => (name, labels.trim_end_matches('}')),
            None => (series, ""),
        };
        let labels = labels
            .split("\",")
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (k, v) = l.split_once("=\"").expect("label");
                (k.to_string(), v.trim_end_matches('"').to_string())
            })
            .collect();
        scrape.samples.push(Sample {
            name: name.to_string(),
            labels,
            value: value.parse().expect("value"),
        });
    }
    scrape
}

impl Scrape {
    /// The samples named `name` whose labels include `with`.
    fn find(&self, name: &str, with: &[(&str, &str)]) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                with.iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect()
    }

    /// The value of the one sample named `name` with labels `with` (0 when there is none).
    fn value(&self, name: &str, with: &[(&str, &str)]) -> f64 {
        let found = self.find(name, with);
        assert!(found.len() <= 1, "several {name} {with:?}: {found:?}");
        found.first().map_or(0.0, |s| s.value)
    }

    /// The count of the bucket `le` (compared as a number) of the histogram series `with`.
    fn bucket(&self, name: &str, with: &[(&str, &str)], le: f64) -> f64 {
        let found: Vec<&Sample> = self
            .find(name, with)
            .into_iter()
            .filter(|s| {
                s.labels
                    .get("le")
                    .and_then(|v| v.parse::<f64>().ok())
                    .is_some_and(|v| ((v - le) / le).abs() < 1e-9)
            })
            .collect();
        assert_eq!(found.len(), 1, "bucket {le} of {name} {with:?}: {found:?}");
        found[0].value
    }

    /// Every family of `table` that has samples has its type, and every sample of it
    /// exactly its label names (plus `le` on buckets) and, for histograms, exactly its
    /// buckets; those named in `present` have samples (as with the reference, a family
    /// with labels appears once one of its series was observed).
    fn check(&self, table: &[Row], present: &[&str]) {
        for row in table {
            let sampled = self.samples.iter().any(|s| {
                s.name == row.name
                    || ["_bucket", "_sum", "_count"]
                        .iter()
                        .any(|suffix| s.name == format!("{}{suffix}", row.name))
            });
            assert!(
                sampled || !present.contains(&row.name),
                "{} has no samples",
                row.name
            );
            if !sampled {
                continue;
            }
            assert_eq!(
                self.types.get(row.name).map(String::as_str),
                Some(row.kind),
                "type of {}",
                row.name
            );
            let names: Vec<&str> = match row.kind {
                "histogram" => vec!["_bucket", "_sum", "_count"],
                _ => vec![""],
            };
            for suffix in names {
                let name = format!("{}{suffix}", row.name);
                for s in self.find(&name, &[]) {
                    let mut keys: Vec<&str> = s.labels.keys().map(String::as_str).collect();
                    keys.retain(|k| !(suffix == "_bucket" && *k == "le"));
                    assert_eq!(keys, row.labels, "labels of {name}: {s:?}");
                }
            }
            if let Some(buckets) = &row.buckets {
                let bucket = format!("{}_bucket", row.name);
                // The buckets of one series (the first), in order.
                let Some(first) = self.samples.iter().find(|s| s.name == bucket) else {
                    continue;
                };
                let series: BTreeMap<_, _> =
                    first.labels.iter().filter(|(k, _)| *k != "le").collect();
                let les: Vec<f64> = self
                    .samples
                    .iter()
                    .filter(|s| s.name == bucket)
                    .filter(|s| {
                        s.labels
                            .iter()
                            .filter(|(k, _)| *k != "le")
                            .collect::<BTreeMap<_, _>>()
                            == series
                    })
                    .map(|s| match s.labels["le"].as_str() {
                        "+Inf" => f64::INFINITY,
                        le => le.parse().expect("le"),
                    })
                    .collect();
                let mut expected = buckets.clone();
                expected.push(f64::INFINITY);
                assert_eq!(
                    les.len(),
                    expected.len(),
                    "buckets of {}: {les:?}",
                    row.name
                );
                for (got, want) in les.iter().zip(&expected) {
                    assert!(
                        got == want || ((got - want) / want).abs() < 1e-9,
                        "buckets of {}: {les:?} vs {expected:?}",
                        row.name
                    );
                }
            }
        }
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

fn secure(node: &Node, allowed: &'static str) -> axum::Router {
    let config = ServerConfig::new("node-1", "127.0.0.1:0".parse().expect("addr"));
    let auth = Auth {
        authenticator: Authenticator::new().anonymous(true),
        authorizer: Arc::new(Only(allowed)),
    };
    secure_router(RouteState::new(&config, handles(node)), auth)
}

fn handles(node: &Node) -> Handles {
    Handles {
        kubelet: node.handle.clone(),
        runtime: node.runtime.clone(),
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
    let body = axum::body::to_bytes(response.into_body(), 16 << 20)
        .await
        .expect("body");
    (
        status,
        content_type,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

async fn scrape(router: &axum::Router, path: &str) -> Scrape {
    let (status, content_type, body) = get(router, path, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    parse(&body)
}

fn readiness(command: &str) -> Probe {
    Probe {
        exec: Some(ExecAction {
            command: Some(vec!["sh".into(), "-c".into(), command.into()]),
        }),
        period_seconds: Some(1),
        ..Default::default()
    }
}

#[tokio::test(start_paused = true)]
async fn kubelet_metrics_match_the_reference_and_what_happened() {
    let rt = runtime();
    // Each container takes 1.5 s to start: the pods' start durations are above 1 s.
    rt.set_default_behavior(ContainerBehavior::forever().start_delay(Duration::from_millis(1500)));
    rt.set_behavior(
        ContainerMatch::container("db", "bad"),
        ContainerBehavior::fail_start("exec: \"nope\": executable file not found in $PATH"),
    );
    // The embedder hands its registry, with a series of its own.
    let metrics = KubeletMetrics::new();
    let own: prometheus_client::metrics::counter::Counter = Default::default();
    metrics.register(
        "embedder_vms_booted",
        "VMs booted by the embedder's runtime",
        own.clone(),
    );
    own.inc_by(7);
    let node = Node::start_with(rt.clone(), |b| b.metrics(metrics.clone()));

    let web = pod("web")
        .uid("uid-web")
        .container(container("app", IMAGE).with(|c| c.readiness_probe = Some(readiness("true"))))
        .build();
    let db = pod("db")
        .uid("uid-db")
        .container(container("main", IMAGE))
        .container(container("bad", IMAGE))
        .build();
    node.pods.snapshot(vec![web.clone(), db.clone()]);
    node.until(Duration::from_secs(60), "both pods running", |n| {
        n.reporter.last_phase("uid-web").as_deref() == Some("Running")
            && n.reporter.last_phase("uid-db").as_deref() == Some("Running")
    })
    .await;
    // A label change is an update for the pod worker.
    let mut web2 = web.clone();
    web2.metadata
        .labels
        .get_or_insert_default()
        .insert("tier".into(), "front".into());
    node.pods.snapshot(vec![web2, db.clone()]);
    // Probes and relists run a while; the bad container keeps failing to start.
    tokio::time::sleep(Duration::from_secs(20)).await;
    node.until(Duration::from_secs(60), "readiness probed", |n| {
        n.handle
            .probe_counts()
            .iter()
            .filter(|(k, _)| k.pod == "web" && k.result == "successful")
            .map(|(_, v)| *v)
            .sum::<u64>()
            >= 5
    })
    .await;

    let router = secure(&node, "metrics");
    let handle = node.handle.clone();
    let rt = node.shutdown().await;
    let m = scrape(&router, "/metrics").await;
    let p = scrape(&router, "/metrics/probes").await;
    let all: Vec<&str> = metrics_table().iter().map(|r| r.name).collect();
    let expected: Vec<&str> = all
        .iter()
        .copied()
        .filter(|n| !["kubelet_evictions", "rest_client_requests_total"].contains(n))
        .filter(|n| !n.starts_with("kubelet_http_"))
        .collect();
    m.check(&metrics_table(), &expected);
    p.check(
        &probes_table(),
        &["prober_probe_total", "prober_probe_duration_seconds"],
    );

    // The node, what runs.
    assert_eq!(m.value("kubelet_node_name", &[("node", "node-1")]), 1.0);
    assert_eq!(m.value("kubelet_running_pods", &[]), 2.0);
    assert_eq!(
        m.value(
            "kubelet_running_containers",
            &[("container_state", "running")]
        ),
        2.0
    );
    // The bad container's instances exited at their failed start (the kubelet keeps the
    // newest ones); none is left created.
    let exited = m.value(
        "kubelet_running_containers",
        &[("container_state", "exited")],
    );
    assert!(exited >= 1.0, "{exited}");
    assert_eq!(
        m.value(
            "kubelet_running_containers",
            &[("container_state", "created")]
        ),
        0.0
    );

    // Runtime operations: as many as the runtime answered, errors under their operation.
    let ops = |op: &str| {
        m.value(
            "kubelet_runtime_operations_total",
            &[("operation_type", op)],
        )
    };
    let errors = |op: &str| {
        m.value(
            "kubelet_runtime_operations_errors_total",
            &[("operation_type", op)],
        )
    };
    assert_eq!(ops("run_podsandbox"), 2.0);
    assert_eq!(rt.calls(Method::RunPodSandbox), 2);
    assert_eq!(
        ops("create_container") as usize,
        rt.calls(Method::CreateContainer)
    );
    assert_eq!(
        ops("start_container") as usize,
        rt.calls(Method::StartContainer)
    );
    assert_eq!(ops("version") as usize, rt.calls(Method::Version));
    assert!(ops("list_podsandbox") >= 20.0, "{}", ops("list_podsandbox"));
    assert!(ops("exec_sync") >= 5.0);
    let bad_starts = errors("start_container");
    assert!(exited <= bad_starts, "{exited} > {bad_starts}");
    assert!(
        bad_starts >= 2.0,
        "the bad container failed to start: {bad_starts}"
    );
    assert_eq!(errors("run_podsandbox"), 0.0);
    assert_eq!(
        m.value(
            "kubelet_runtime_operations_duration_seconds_count",
            &[("operation_type", "start_container")]
        ),
        ops("start_container")
    );
    // Starts take 1.5 s (virtual time) but the failed ones, which fail at once: the 1.5 s
    // ones are above the 0.48828125 bucket and within the 3.0517578125 one.
    let start_bucket = |le: f64| {
        m.bucket(
            "kubelet_runtime_operations_duration_seconds_bucket",
            &[("operation_type", "start_container")],
            le,
        )
    };
    assert_eq!(start_bucket(0.005 * 2.5f64.powi(5)), bad_starts);
    assert_eq!(start_bucket(0.005 * 2.5f64.powi(7)), ops("start_container"));

    // Started containers: three first starts and the bad one's retries.
    assert_eq!(
        m.value(
            "kubelet_started_containers_total",
            &[("container_type", "container")]
        ),
        ops("start_container")
    );
    assert_eq!(
        m.value(
            "kubelet_started_containers_errors_total",
            &[
                ("code", "RunContainerError"),
                ("container_type", "container")
            ]
        ),
        bad_starts
    );
    assert_eq!(
        m.value(
            "kubelet_started_containers_total",
            &[("container_type", "container")]
        ),
        2.0 + bad_starts
    );

    // Pod start: two pods, each after its 1.5 s container start(s).
    assert_eq!(
        m.value("kubelet_pod_start_duration_seconds_count", &[]),
        2.0
    );
    assert_eq!(
        m.value(
            "kubelet_pod_start_duration_seconds_bucket",
            &[("le", "1.0")]
        ),
        0.0
    );
    assert_eq!(
        m.value(
            "kubelet_pod_start_duration_seconds_bucket",
            &[("le", "+Inf")]
        ),
        2.0
    );
    let sum = m.value("kubelet_pod_start_duration_seconds_sum", &[]);
    assert!((3.0..=10.0).contains(&sum), "{sum}");

    // Pod workers: one create per pod, one update (the label), syncs.
    let worker = |op: &str| {
        m.value(
            "kubelet_pod_worker_duration_seconds_count",
            &[("operation_type", op)],
        )
    };
    assert_eq!(worker("create"), 2.0);
    assert_eq!(worker("update"), 1.0);
    assert!(worker("sync") >= 2.0, "{}", worker("sync"));

    // PLEG: a relist every second (virtual time), each listing the sandboxes (as the pod
    // workers do too).
    let relists = m.value("kubelet_pleg_relist_duration_seconds_count", &[]);
    assert!(relists >= 20.0, "{relists}");
    assert!(ops("list_podsandbox") >= relists);
    let intervals = m.value("kubelet_pleg_relist_interval_seconds_count", &[]);
    assert_eq!(intervals, relists - 1.0);
    assert_eq!(
        m.value(
            "kubelet_pleg_relist_interval_seconds_bucket",
            &[("le", "1.0")]
        ),
        intervals
    );
    assert_eq!(
        m.value(
            "kubelet_pleg_relist_interval_seconds_bucket",
            &[("le", "0.5")]
        ),
        0.0
    );
    let last_seen = m.value("kubelet_pleg_last_seen_seconds", &[]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    assert!(
        (now - 120.0..=now + 1.0).contains(&last_seen),
        "{last_seen} vs {now}"
    );

    // No eviction, no API client here.
    assert!(m.find("kubelet_evictions", &[]).is_empty());
    assert!(m.find("rest_client_requests_total", &[]).is_empty());

    // The embedder's own series, served alongside.
    assert_eq!(m.value("embedder_vms_booted_total", &[]), 7.0);

    // Probes: the readiness probe of web/app, by result, with the pod's UID.
    let probe = [
        ("container", "app"),
        ("namespace", "default"),
        ("pod", "web"),
        ("pod_uid", "uid-web"),
        ("probe_type", "Readiness"),
    ];
    let mut successful = probe.to_vec();
    successful.push(("result", "successful"));
    let runs = p.value("prober_probe_total", &successful);
    let counted: u64 = handle
        .probe_counts()
        .iter()
        .filter(|(k, _)| k.pod_uid == "uid-web" && k.result == "successful")
        .map(|(_, v)| *v)
        .sum();
    assert!(runs >= 5.0, "{runs}");
    assert_eq!(runs, counted as f64);
    assert!(ops("exec_sync") >= runs);
    let mut failed = probe.to_vec();
    failed.push(("result", "failed"));
    assert_eq!(p.value("prober_probe_total", &failed), 0.0);
    // Durations of the successful runs (exec answers at once on the fake runtime).
    let durations = &probe[..3]
        .iter()
        .chain(&probe[4..])
        .copied()
        .collect::<Vec<_>>();
    assert_eq!(
        p.value("prober_probe_duration_seconds_count", durations),
        runs
    );
    let mut quick = durations.clone();
    quick.push(("le", "0.005"));
    assert_eq!(
        p.value("prober_probe_duration_seconds_bucket", &quick),
        runs
    );
}

#[tokio::test(start_paused = true)]
async fn formats_authorization_and_the_read_only_port() {
    let node = Node::start(runtime());
    node.pods.snapshot(vec![
        pod("web")
            .uid("uid-web")
            .container(container("app", IMAGE))
            .build(),
    ]);
    node.until(Duration::from_secs(30), "running", |n| {
        n.reporter.last_phase("uid-web").as_deref() == Some("Running")
    })
    .await;
    // A relist sees it.
    tokio::time::sleep(Duration::from_secs(2)).await;

    // OpenMetrics on request: counters typed without `_total`, samples with it, `# EOF`.
    let router = secure(&node, "metrics");
    let (status, content_type, body) = get(
        &router,
        "/metrics",
        Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        content_type.starts_with("application/openmetrics-text; version=1.0.0"),
        "{content_type}"
    );
    assert!(body.ends_with("# EOF\n"), "{body}");
    assert!(
        body.contains("# TYPE kubelet_started_containers counter\n"),
        "{body}"
    );
    assert!(
        body.contains("kubelet_started_containers_total{container_type=\"container\"} 1\n"),
        "{body}"
    );
    let (_, content_type, body) = get(
        &router,
        "/metrics/probes",
        Some("application/openmetrics-text"),
    )
    .await;
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    assert!(body.contains("# TYPE prober_probe counter\n"), "{body}");

    // Both behind the `metrics` subresource.
    let stats_only = secure(&node, "stats");
    for path in ["/metrics", "/metrics/probes"] {
        let (status, _, body) = get(&stats_only, path, None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
        assert!(body.contains("subresource(s)=[metrics]"), "{body}");
    }

    // The read-only port serves them too, without authentication.
    let read_only = read_only_router(handles(&node));
    let m = scrape(&read_only, "/metrics").await;
    assert_eq!(m.value("kubelet_running_pods", &[]), 1.0);
    assert_eq!(
        m.value(
            "kubelet_started_containers_total",
            &[("container_type", "container")]
        ),
        1.0
    );
    let p = scrape(&read_only, "/metrics/probes").await;
    assert!(p.types.contains_key("prober_probe_total"));

    // The servers' own requests, by server, method and path bucket (the forbidden ones
    // too: counted before authorization, as the reference).
    let m = scrape(&read_only, "/metrics").await;
    m.check(
        &metrics_table(),
        &[
            "kubelet_http_requests_total",
            "kubelet_http_requests_duration_seconds",
            "kubelet_http_inflight_requests",
        ],
    );
    let http = |path: &str, server: &str| {
        m.value(
            "kubelet_http_requests_total",
            &[
                ("long_running", "false"),
                ("method", "GET"),
                ("path", path),
                ("server_type", server),
            ],
        )
    };
    // This scrape is the read-only port's second of /metrics, in flight while it encodes.
    assert_eq!(http("metrics", "readonly"), 2.0);
    assert_eq!(http("metrics/probes", "readonly"), 1.0);
    assert_eq!(http("metrics", "readwrite"), 2.0);
    assert_eq!(http("metrics/probes", "readwrite"), 2.0);
    assert_eq!(
        m.value(
            "kubelet_http_inflight_requests",
            &[("path", "metrics"), ("server_type", "readonly")]
        ),
        1.0
    );
    assert_eq!(
        m.value(
            "kubelet_http_requests_duration_seconds_count",
            &[("path", "metrics/probes"), ("server_type", "readwrite")]
        ),
        2.0
    );
    node.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn an_eviction_is_counted_by_its_signal() {
    let node = Node::start(runtime());
    let p = pod("web")
        .uid("uid-web")
        .container(container("app", IMAGE).with(|c| {
            c.volume_mounts = Some(vec![VolumeMount {
                name: "scratch".into(),
                mount_path: "/scratch".into(),
                ..Default::default()
            }]);
        }))
        .spec(|s| {
            s.volumes = Some(vec![Volume {
                name: "scratch".into(),
                empty_dir: Some(EmptyDirVolumeSource {
                    size_limit: Some(Quantity("1Mi".into())),
                    ..Default::default()
                }),
                ..Default::default()
            }]);
        })
        .build();
    node.pods.snapshot(vec![p]);
    node.until(Duration::from_secs(30), "Running", |n| {
        n.reporter.last_phase("uid-web").as_deref() == Some("Running")
    })
    .await;
    let config = node
        .runtime
        .container_config(&node.runtime.containers()[0].id)
        .expect("config");
    let volume = config
        .mounts
        .iter()
        .find(|m| m.container_path == "/scratch")
        .expect("the emptyDir mount")
        .host_path
        .clone();
    std::fs::write(
        std::path::Path::new(&volume).join("fill"),
        vec![0u8; 2 << 20],
    )
    .expect("write");
    node.until(Duration::from_secs(30), "Evicted", |n| {
        n.reporter.last_phase("uid-web").as_deref() == Some("Failed")
    })
    .await;
    // Syncs after the eviction do not count it again.
    tokio::time::sleep(Duration::from_secs(60)).await;
    let m = scrape(&secure(&node, "metrics"), "/metrics").await;
    m.check(&metrics_table(), &["kubelet_evictions"]);
    assert_eq!(
        m.value(
            "kubelet_evictions",
            &[("eviction_signal", "emptydirfs.limit")]
        ),
        1.0
    );
    assert_eq!(m.value("kubelet_running_pods", &[]), 0.0);
    node.shutdown().await;
}

#[cfg(feature = "apiserver")]
#[tokio::test]
async fn api_requests_are_counted_by_code_method_and_host() {
    use kubelet_core::apiserver::{ClientSource, NodeClient};
    use kubelet_core::testing::apiserver::FakeApiServer;

    let server = FakeApiServer::start().await.expect("fake API server");
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    server.write_kubeconfig(&kubeconfig).expect("kubeconfig");
    let client = NodeClient::connect(&ClientSource::Kubeconfig(kubeconfig), "node-1")
        .await
        .expect("client");
    let metrics = KubeletMetrics::new();
    let client = kubelet_core::metrics::rest_client::instrument_node_client(&client, &metrics);
    // Our own Node does not exist yet: a GET answered 404, twice.
    client.check_access().await.expect("access");
    client.check_access().await.expect("access");
    let text = metrics.encode(kubelet_core::metrics::Format::Text);
    let m = parse(&text);
    m.check(&metrics_table(), &["rest_client_requests_total"]);
    let host = server
        .url()
        .split("://")
        .nth(1)
        .expect("url")
        .trim_end_matches('/')
        .to_string();
    assert_eq!(
        m.value(
            "rest_client_requests_total",
            &[("code", "404"), ("host", &host), ("method", "GET")]
        ),
        2.0,
        "{text}"
    );
}
