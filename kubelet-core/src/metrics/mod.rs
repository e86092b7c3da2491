//! The kubelet's own Prometheus metrics, as the reference kubelet serves them on `/metrics`
//! and `/metrics/probes`: the same names, types, label names and buckets
//! (`pkg/kubelet/metrics`, the instrumented runtime service, the prober), kept in
//! `prometheus-client` registries.
//!
//! A [`KubeletMetrics`] is handed to the kubelet with
//! [`KubeletBuilder::metrics`](crate::KubeletBuilder::metrics) (without one the kubelet makes
//! its own) and reached by the server through the kubelet's handle. Embedders register their
//! own metrics and collectors into it ([`KubeletMetrics::register`],
//! [`KubeletMetrics::register_collector`]); they are served on `/metrics` with the kubelet's.
//!
//! - [`runtime`]: [`InstrumentedRuntime`], the `Runtime` wrapper that counts and times every
//!   call under the reference's `operation_type` names;
//! - `rest_client` (feature `apiserver`): `rest_client_requests_total` for the kube-rs client;
//! - [`encode`]: the exposition, Prometheus text 0.0.4 by default and OpenMetrics on request.

pub mod encode;
#[cfg(feature = "apiserver")]
pub mod rest_client;
pub mod runtime;

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Metric, Registry};

pub use encode::Format;
#[cfg(feature = "apiserver")]
pub use rest_client::instrument_client;
pub use runtime::InstrumentedRuntime;

use crate::probes::ProbeMetrics;

/// Prometheus' default buckets (`prometheus.DefBuckets`), which the reference uses for the
/// pod worker, PLEG and probe duration histograms.
pub const DEFAULT_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The buckets of `kubelet_pod_start_duration_seconds` (the reference's
/// `podStartupDurationBuckets`).
pub const POD_START_BUCKETS: [f64; 25] = [
    0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 20.0, 30.0, 45.0, 60.0, 120.0, 180.0, 240.0,
    300.0, 360.0, 480.0, 600.0, 900.0, 1200.0, 1800.0, 2700.0, 3600.0,
];

/// The buckets of `kubelet_runtime_operations_duration_seconds`: exponential from 5 ms by a
/// factor 2.5, 14 of them (the reference's `ExponentialBuckets(.005, 2.5, 14)`).
pub fn runtime_operation_buckets() -> Vec<f64> {
    exponential_buckets(0.005, 2.5, 14).collect()
}

/// The eviction signal of an `emptyDir` that outgrew its `sizeLimit` (the reference's
/// `signalEmptyDirFsLimit`), the `eviction_signal` of `kubelet_evictions`.
pub const SIGNAL_EMPTY_DIR_FS_LIMIT: &str = "emptydirfs.limit";

/// The `container_type` label values of `kubelet_started_containers_total`.
pub mod container_type {
    /// A regular container.
    pub const CONTAINER: &str = "container";
    /// An init container (sidecars included).
    pub const INIT_CONTAINER: &str = "init_container";
    /// An ephemeral container.
    pub const EPHEMERAL_CONTAINER: &str = "ephemeral_container";
}

/// The `operation_type` label values of `kubelet_pod_worker_duration_seconds`.
pub mod pod_worker_operation {
    /// The first sync of a pod.
    pub const CREATE: &str = "create";
    /// A sync after the pod's spec or metadata changed.
    pub const UPDATE: &str = "update";
    /// Any other sync (runtime changes, resync, probe results).
    pub const SYNC: &str = "sync";
}

/// Counter families whose reference name has no `_total` (written without it in the text
/// format, with it in OpenMetrics as the reference's encoder does).
const UNSUFFIXED_COUNTERS: &[&str] = &["kubelet_evictions"];

type Label1 = [(&'static str, String); 1];
type Label2 = [(&'static str, String); 2];
type Label3 = [(&'static str, String); 3];
type Label4 = [(&'static str, String); 4];
type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn runtime_histogram() -> Histogram {
    Histogram::new(runtime_operation_buckets())
}

fn default_histogram() -> Histogram {
    Histogram::new(DEFAULT_BUCKETS)
}

/// The kubelet's own series.
#[derive(Debug)]
struct Families {
    node_name: Family<Label1, Gauge>,
    running_pods: Gauge,
    running_containers: Family<Label1, Gauge>,
    runtime_operations: Family<Label1, Counter>,
    runtime_operations_duration: HistogramFamily<Label1>,
    runtime_operations_errors: Family<Label1, Counter>,
    started_containers: Family<Label1, Counter>,
    started_containers_errors: Family<Label2, Counter>,
    pod_start_duration: Histogram,
    pod_worker_duration: HistogramFamily<Label1>,
    pleg_relist_duration: Histogram,
    pleg_relist_interval: Histogram,
    pleg_last_seen: Gauge<f64, AtomicU64>,
    evictions: Family<Label1, Counter>,
    rest_client_requests: Family<Label3, Counter>,
    http_requests: Family<Label4, Counter>,
    http_requests_duration: HistogramFamily<Label4>,
    http_inflight_requests: Family<Label4, Gauge>,
}

impl Families {
    fn new() -> Self {
        Self {
            node_name: Family::default(),
            running_pods: Gauge::default(),
            running_containers: Family::default(),
            runtime_operations: Family::default(),
            runtime_operations_duration: Family::new_with_constructor(runtime_histogram),
            runtime_operations_errors: Family::default(),
            started_containers: Family::default(),
            started_containers_errors: Family::default(),
            pod_start_duration: Histogram::new(POD_START_BUCKETS),
            pod_worker_duration: Family::new_with_constructor(default_histogram),
            pleg_relist_duration: default_histogram(),
            pleg_relist_interval: default_histogram(),
            pleg_last_seen: Gauge::default(),
            evictions: Family::default(),
            rest_client_requests: Family::default(),
            http_requests: Family::default(),
            http_requests_duration: Family::new_with_constructor(default_histogram),
            http_inflight_requests: Family::default(),
        }
    }

    /// Registers every family under the reference's name and help (counters without their
    /// `_total`, which the encoder adds).
    fn register(&self, r: &mut Registry) {
        add(
            r,
            "kubelet_node_name",
            "[ALPHA] The node's name. The count is always 1.",
            self.node_name.clone(),
        );
        add(
            r,
            "kubelet_running_pods",
            "[ALPHA] Number of pods that have a running pod sandbox",
            self.running_pods.clone(),
        );
        add(
            r,
            "kubelet_running_containers",
            "[ALPHA] Number of containers currently running",
            self.running_containers.clone(),
        );
        add(
            r,
            "kubelet_runtime_operations",
            "[ALPHA] Cumulative number of runtime operations by operation type.",
            self.runtime_operations.clone(),
        );
        add(
            r,
            "kubelet_runtime_operations_duration_seconds",
            "[ALPHA] Duration in seconds of runtime operations. Broken down by operation type.",
            self.runtime_operations_duration.clone(),
        );
        add(
            r,
            "kubelet_runtime_operations_errors",
            "[ALPHA] Cumulative number of runtime operation errors by operation type.",
            self.runtime_operations_errors.clone(),
        );
        add(
            r,
            "kubelet_started_containers",
            "[ALPHA] Cumulative number of containers started",
            self.started_containers.clone(),
        );
        add(
            r,
            "kubelet_started_containers_errors",
            "[ALPHA] Cumulative number of errors when starting containers",
            self.started_containers_errors.clone(),
        );
        add(
            r,
            "kubelet_pod_start_duration_seconds",
            "[ALPHA] Duration in seconds from kubelet seeing a pod for the first time to the pod starting to run",
            self.pod_start_duration.clone(),
        );
        add(
            r,
            "kubelet_pod_worker_duration_seconds",
            "[ALPHA] Duration in seconds to sync a single pod. Broken down by operation type: create, update, or sync",
            self.pod_worker_duration.clone(),
        );
        add(
            r,
            "kubelet_pleg_relist_duration_seconds",
            "[ALPHA] Duration in seconds for relisting pods in PLEG.",
            self.pleg_relist_duration.clone(),
        );
        add(
            r,
            "kubelet_pleg_relist_interval_seconds",
            "[ALPHA] Interval in seconds between relisting in PLEG.",
            self.pleg_relist_interval.clone(),
        );
        add(
            r,
            "kubelet_pleg_last_seen_seconds",
            "[ALPHA] Timestamp in seconds when PLEG was last seen active.",
            self.pleg_last_seen.clone(),
        );
        add(
            r,
            "kubelet_evictions",
            "[ALPHA] Cumulative number of pod evictions by eviction signal",
            self.evictions.clone(),
        );
        add(
            r,
            "rest_client_requests",
            "[ALPHA] Number of HTTP requests, partitioned by status code, method, and host.",
            self.rest_client_requests.clone(),
        );
        add(
            r,
            "kubelet_http_requests",
            "[ALPHA] Number of the http requests received since the server started",
            self.http_requests.clone(),
        );
        add(
            r,
            "kubelet_http_requests_duration_seconds",
            "[ALPHA] Duration in seconds to serve http requests",
            self.http_requests_duration.clone(),
        );
        add(
            r,
            "kubelet_http_inflight_requests",
            "[ALPHA] Number of the inflight http requests",
            self.http_inflight_requests.clone(),
        );
    }
}

/// A metric written under exactly the reference's help text (`Registry::register` appends
/// a period to every help text), and not at all while it has no series (as a vector the
/// registry holds).
#[derive(Debug)]
struct Described<M> {
    name: &'static str,
    help: &'static str,
    metric: M,
}

impl<M> Collector for Described<M>
where
    M: EncodeMetric + std::fmt::Debug + Send + Sync + 'static,
{
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if self.metric.is_empty() {
            return Ok(());
        }
        let metric =
            encoder.encode_descriptor(self.name, self.help, None, self.metric.metric_type())?;
        self.metric.encode(metric)
    }
}

pub(crate) fn add<M>(registry: &mut Registry, name: &'static str, help: &'static str, metric: M)
where
    M: EncodeMetric + std::fmt::Debug + Send + Sync + 'static,
{
    registry.register_collector(Box::new(Described { name, help, metric }));
}

struct Inner {
    registry: Mutex<Registry>,
    probes_registry: Mutex<Registry>,
    families: Families,
    probes: Arc<ProbeMetrics>,
}

/// The kubelet's metrics registries (`/metrics` and `/metrics/probes`) with its own series.
/// Cheap to clone: clones share the registries.
#[derive(Clone)]
pub struct KubeletMetrics {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for KubeletMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeletMetrics").finish_non_exhaustive()
    }
}

impl Default for KubeletMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl KubeletMetrics {
    /// Registries holding the kubelet's series, none observed yet.
    pub fn new() -> Self {
        let families = Families::new();
        let mut registry = Registry::default();
        families.register(&mut registry);
        let probes = Arc::new(ProbeMetrics::default());
        let mut probes_registry = Registry::default();
        probes.register(&mut probes_registry);
        Self {
            inner: Arc::new(Inner {
                registry: Mutex::new(registry),
                probes_registry: Mutex::new(probes_registry),
                families,
                probes,
            }),
        }
    }

    /// Add a metric of the embedder's to `/metrics` (a counter named without its `_total`,
    /// as prometheus-client wants it).
    pub fn register(&self, name: &str, help: &str, metric: impl Metric) {
        self.with_registry(|r| r.register(name, help, metric));
    }

    /// Add a collector of the embedder's to `/metrics` (e.g. its runtime's own series,
    /// computed at each scrape).
    pub fn register_collector(&self, collector: Box<dyn Collector>) {
        self.with_registry(|r| r.register_collector(collector));
    }

    /// Work on the `/metrics` registry directly (sub-registries, units).
    pub fn with_registry<T>(&self, f: impl FnOnce(&mut Registry) -> T) -> T {
        let mut registry = self
            .inner
            .registry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut registry)
    }

    /// Work on the `/metrics/probes` registry directly.
    pub fn with_probes_registry<T>(&self, f: impl FnOnce(&mut Registry) -> T) -> T {
        let mut registry = self
            .inner
            .probes_registry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut registry)
    }

    /// The `/metrics` exposition in `format`.
    pub fn encode(&self, format: Format) -> String {
        self.with_registry(|r| encode::encode(r, format, UNSUFFIXED_COUNTERS))
    }

    /// The `/metrics/probes` exposition in `format`.
    pub fn encode_probes(&self, format: Format) -> String {
        self.with_probes_registry(|r| encode::encode(r, format, &[]))
    }

    /// The probe counts and durations (`prober_probe_total`, `prober_probe_duration_seconds`)
    /// the probe workers record into.
    pub fn probes(&self) -> &Arc<ProbeMetrics> {
        &self.inner.probes
    }

    fn f(&self) -> &Families {
        &self.inner.families
    }

    /// `kubelet_node_name{node}`: 1 for this node.
    pub fn set_node_name(&self, node: &str) {
        self.f().node_name.clear();
        self.f()
            .node_name
            .get_or_create(&[("node", node.to_string())])
            .set(1);
    }

    /// One runtime call of `operation` (the reference's `operation_type`) that took
    /// `elapsed`, failed or not.
    pub fn runtime_operation(&self, operation: &'static str, elapsed: Duration, failed: bool) {
        let labels = [("operation_type", operation.to_string())];
        self.f().runtime_operations.get_or_create(&labels).inc();
        self.f()
            .runtime_operations_duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        if failed {
            self.f()
                .runtime_operations_errors
                .get_or_create(&labels)
                .inc();
        }
    }

    /// A container start attempted (after any backoff), `init` for init containers; `error`
    /// is the reason it did not start (`CreateContainerConfigError`, `ErrImagePull`,
    /// `RunContainerError`, ...), the `code` of `kubelet_started_containers_errors_total`.
    pub fn container_started(&self, init: bool, error: Option<&str>) {
        let kind = if init {
            container_type::INIT_CONTAINER
        } else {
            container_type::CONTAINER
        };
        self.f()
            .started_containers
            .get_or_create(&[("container_type", kind.to_string())])
            .inc();
        if let Some(code) = error {
            self.f()
                .started_containers_errors
                .get_or_create(&[
                    ("code", code.to_string()),
                    ("container_type", kind.to_string()),
                ])
                .inc();
        }
    }

    /// A pod went running `elapsed` after the kubelet first saw it.
    pub fn pod_started(&self, elapsed: Duration) {
        self.f().pod_start_duration.observe(elapsed.as_secs_f64());
    }

    /// One pod worker sync of `operation` ([`pod_worker_operation`]) that took `elapsed`.
    pub fn pod_worker_sync(&self, operation: &'static str, elapsed: Duration) {
        self.f()
            .pod_worker_duration
            .get_or_create(&[("operation_type", operation.to_string())])
            .observe(elapsed.as_secs_f64());
    }

    /// One relist of the runtime that took `elapsed`.
    pub fn pleg_relist(&self, elapsed: Duration) {
        self.f().pleg_relist_duration.observe(elapsed.as_secs_f64());
    }

    /// A successful relist started `interval` after the previous one, at `now`.
    pub fn pleg_seen(&self, interval: Option<Duration>, now: SystemTime) {
        if let Some(interval) = interval {
            self.f()
                .pleg_relist_interval
                .observe(interval.as_secs_f64());
        }
        let seconds = now
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs() as f64);
        self.f().pleg_last_seen.set(seconds);
    }

    /// What the runtime runs: pods with a ready sandbox, containers by state (`created`,
    /// `running`, `exited`, `unknown`).
    pub fn set_running(&self, pods: usize, containers: [(&'static str, usize); 4]) {
        self.f()
            .running_pods
            .set(i64::try_from(pods).unwrap_or(i64::MAX));
        for (state, count) in containers {
            self.f()
                .running_containers
                .get_or_create(&[("container_state", state.to_string())])
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
    }

    /// A pod evicted for `signal` (e.g. [`SIGNAL_EMPTY_DIR_FS_LIMIT`]).
    pub fn eviction(&self, signal: &str) {
        self.f()
            .evictions
            .get_or_create(&[("eviction_signal", signal.to_string())])
            .inc();
    }

    /// A request to the kubelet's server begins: counted, in flight until the returned
    /// guard is dropped, which observes its duration. `method` and `path` are the
    /// reference's buckets ([`http_method_bucket`], [`http_path_bucket`]); `server_type`
    /// is `readwrite` (10250) or `readonly`.
    pub fn http_request(
        &self,
        method: &str,
        path: &str,
        server_type: &'static str,
    ) -> HttpRequestGuard {
        // As the reference: exec, attach and debug are long-running (its map spells
        // `portforward` in lower case, so port forwarding is not).
        let long_running = matches!(path, "exec" | "attach" | "debug");
        let labels: Label4 = [
            ("long_running", long_running.to_string()),
            ("method", method.to_string()),
            ("path", path.to_string()),
            ("server_type", server_type.to_string()),
        ];
        self.f().http_requests.get_or_create(&labels).inc();
        self.f().http_inflight_requests.get_or_create(&labels).inc();
        HttpRequestGuard {
            metrics: self.clone(),
            labels,
            start: tokio::time::Instant::now(),
        }
    }

    /// One request of the API-server client: `code` the HTTP status (`<error>` when there
    /// was no answer), `method` the HTTP method, `host` the server's `host:port`.
    pub fn rest_client_request(&self, code: &str, method: &str, host: &str) {
        self.f()
            .rest_client_requests
            .get_or_create(&[
                ("code", code.to_string()),
                ("host", host.to_string()),
                ("method", method.to_string()),
            ])
            .inc();
    }
}

/// A request to the kubelet's server in flight (see [`KubeletMetrics::http_request`]).
pub struct HttpRequestGuard {
    metrics: KubeletMetrics,
    labels: Label4,
    start: tokio::time::Instant,
}

impl Drop for HttpRequestGuard {
    fn drop(&mut self) {
        let f = self.metrics.f();
        f.http_inflight_requests.get_or_create(&self.labels).dec();
        f.http_requests_duration
            .get_or_create(&self.labels)
            .observe(self.start.elapsed().as_secs_f64());
    }
}

/// The `method` label of the server's request metrics: a known HTTP method, else `other`.
pub fn http_method_bucket(method: &str) -> &str {
    match method {
        "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS" | "CONNECT" | "TRACE" => {
            method
        }
        _ => "other",
    }
}

/// The `path` label of the server's request metrics, as the reference buckets paths: the
/// first segment (`pods`, `stats`, `containerLogs`...), two for `/metrics/...`
/// (`metrics/probes`), `other` for what the kubelet does not serve.
pub fn http_path_bucket(path: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        "healthz",
        "pods",
        "runningpods",
        "stats",
        "metrics",
        "metrics/cadvisor",
        "metrics/probes",
        "metrics/resource",
        "spec",
        "logs",
        "containerLogs",
        "run",
        "exec",
        "attach",
        "portForward",
        "configz",
        "debug",
        "checkpoint",
        "cri",
    ];
    let mut parts = path.trim_start_matches('/').splitn(3, '/');
    let first = parts.next().unwrap_or("");
    let root = match (first, parts.next()) {
        ("metrics", Some(second)) => format!("metrics/{second}"),
        _ => first.to_string(),
    };
    KNOWN
        .iter()
        .find(|k| **k == root)
        .copied()
        .unwrap_or("other")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_names_types_and_values() {
        let m = KubeletMetrics::new();
        m.set_node_name("node-1");
        m.runtime_operation("run_podsandbox", Duration::from_millis(20), false);
        m.runtime_operation("run_podsandbox", Duration::from_millis(30), true);
        m.eviction(SIGNAL_EMPTY_DIR_FS_LIMIT);
        m.container_started(false, Some("RunContainerError"));
        let text = m.encode(Format::Text);
        for line in [
            "# HELP kubelet_running_pods [ALPHA] Number of pods that have a running pod sandbox",
            "# HELP kubelet_runtime_operations_total [ALPHA] Cumulative number of runtime operations by operation type.",
            "# TYPE kubelet_node_name gauge",
            "kubelet_node_name{node=\"node-1\"} 1",
            "# TYPE kubelet_runtime_operations_total counter",
            "kubelet_runtime_operations_total{operation_type=\"run_podsandbox\"} 2",
            "kubelet_runtime_operations_errors_total{operation_type=\"run_podsandbox\"} 1",
            "kubelet_runtime_operations_duration_seconds_count{operation_type=\"run_podsandbox\"} 2",
            "kubelet_runtime_operations_duration_seconds_bucket{operation_type=\"run_podsandbox\",le=\"0.03125\"} 2",
            "# TYPE kubelet_evictions counter",
            "kubelet_evictions{eviction_signal=\"emptydirfs.limit\"} 1",
            "kubelet_started_containers_total{container_type=\"container\"} 1",
            "kubelet_started_containers_errors_total{code=\"RunContainerError\",container_type=\"container\"} 1",
            "# TYPE kubelet_pod_start_duration_seconds histogram",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        assert!(!text.contains("# EOF"), "{text}");
        let om = m.encode(Format::OpenMetrics);
        assert!(om.ends_with("# EOF\n"), "{om}");
        assert!(
            om.contains("kubelet_evictions_total{eviction_signal=\"emptydirfs.limit\"} 1\n"),
            "{om}"
        );
        assert!(
            om.contains("# TYPE kubelet_runtime_operations counter\n"),
            "{om}"
        );
    }

    #[test]
    fn server_requests_by_bucket() {
        assert_eq!(http_path_bucket("/containerLogs/ns/p/c"), "containerLogs");
        assert_eq!(http_path_bucket("/metrics/probes"), "metrics/probes");
        assert_eq!(http_path_bucket("/metrics"), "metrics");
        assert_eq!(http_path_bucket("/stats/summary"), "stats");
        assert_eq!(http_path_bucket("/nope"), "other");
        assert_eq!(http_method_bucket("BREW"), "other");
        let m = KubeletMetrics::new();
        let guard = m.http_request("GET", "exec", "readwrite");
        let text = m.encode(Format::Text);
        let series =
            "{long_running=\"true\",method=\"GET\",path=\"exec\",server_type=\"readwrite\"}";
        assert!(
            text.contains(&format!("kubelet_http_inflight_requests{series} 1\n")),
            "{text}"
        );
        drop(guard);
        let text = m.encode(Format::Text);
        assert!(
            text.contains(&format!("kubelet_http_inflight_requests{series} 0\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!("kubelet_http_requests_total{series} 1\n")),
            "{text}"
        );
        assert!(
            text.contains("kubelet_http_requests_duration_seconds_count{long_running=\"true\",method=\"GET\",path=\"exec\",server_type=\"readwrite\"} 1\n"),
            "{text}"
        );
    }

    #[test]
    fn embedders_series_are_served_with_the_kubelets() {
        let m = KubeletMetrics::new();
        let c: Counter = Counter::default();
        m.register("my_runtime_vms_started", "VMs started", c.clone());
        c.inc_by(3);
        let text = m.encode(Format::Text);
        assert!(
            text.lines().any(|l| l == "my_runtime_vms_started_total 3"),
            "{text}"
        );
        assert!(
            text.lines()
                .any(|l| l == "# TYPE my_runtime_vms_started_total counter"),
            "{text}"
        );
    }
}
