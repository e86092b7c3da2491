//! Container probes (liveness, readiness, startup) and lifecycle hooks (postStart, preStop).
//!
//! - [`spec`]: validation with the reference's defaults, into [`ProbeSpec`] and [`HookSpec`].
//! - [`action`]: running one probe (exec, httpGet, tcpSocket, grpc) or one hook.
//! - [`worker`]: one tokio task per container probe, whose results the pod worker reads
//!   (liveness and startup failures become kills, readiness becomes status) and which wake
//!   the pod worker when a result changes.
//! - [`ProbeMetrics`]: probe counts by type, result, container and pod, for
//!   `prober_probe_total`.

pub mod action;
pub mod spec;
pub mod worker;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;

use thiserror::Error;

pub use action::{Outcome, ProbeTarget, run_hook, run_probe};
pub use spec::{HookSpec, HttpGetSpec, PortRef, ProbeHandler, ProbeSpec, hook_spec, probe_spec};

/// The Kubernetes version in the `User-Agent` of HTTP probes (`kube-probe/<major>.<minor>`)
/// and hooks (`kube-lifecycle/<major>.<minor>`).
pub const KUBE_VERSION: (u32, u32) = (crate::KUBERNETES_VERSION.0, crate::KUBERNETES_VERSION.1);

/// Which probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProbeType {
    /// Restart the container when it fails.
    Liveness,
    /// Whether the container takes traffic.
    Readiness,
    /// Whether the container has started; holds back the other two until it succeeds.
    Startup,
}

impl ProbeType {
    /// The name as the reference prints it in events and metrics (`Liveness`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Liveness => "Liveness",
            Self::Readiness => "Readiness",
            Self::Startup => "Startup",
        }
    }
}

impl fmt::Display for ProbeType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The result a probe worker settled on (after its thresholds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeResult {
    /// The probe succeeded (`successThreshold` times in a row).
    Success,
    /// The probe failed (`failureThreshold` times in a row).
    Failure,
}

/// A probe or hook spec that is invalid, or a probe that could not be run at all.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ProbeError {
    /// The spec is invalid; `field` is its path (`spec.containers[0].livenessProbe.periodSeconds`).
    #[error("{field}: {message}")]
    Invalid {
        /// Field path.
        field: String,
        /// What is wrong, as the API server words it.
        message: String,
    },
    /// The probe could not be run (a port name that matches no port, a runtime error other
    /// than a timeout). As with the reference, such a run yields no result.
    #[error("probe errored: {0}")]
    Errored(String),
}

/// The labels of one `prober_probe_total` series.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProbeCountKey {
    /// `Liveness`, `Readiness` or `Startup`.
    pub probe_type: String,
    /// `successful`, `failed` or `unknown`.
    pub result: String,
    /// Container name.
    pub container: String,
    /// Pod name.
    pub pod: String,
    /// Pod namespace.
    pub namespace: String,
    /// Pod UID.
    pub pod_uid: String,
}

/// Probe counts (`prober_probe_total`) and durations (`prober_probe_duration_seconds`),
/// shared by every probe worker of a kubelet and served on `/metrics/probes` (see
/// [`crate::metrics::KubeletMetrics`]).
#[derive(Debug)]
pub struct ProbeMetrics {
    counts: Mutex<BTreeMap<ProbeCountKey, u64>>,
    durations: ProbeDurations,
}

/// `prober_probe_duration_seconds` by container, namespace, pod and probe type.
type ProbeDurations = prometheus_client::metrics::family::Family<
    [(&'static str, String); 4],
    prometheus_client::metrics::histogram::Histogram,
    fn() -> prometheus_client::metrics::histogram::Histogram,
>;

fn probe_duration_histogram() -> prometheus_client::metrics::histogram::Histogram {
    prometheus_client::metrics::histogram::Histogram::new(crate::metrics::DEFAULT_BUCKETS)
}

impl Default for ProbeMetrics {
    fn default() -> Self {
        Self {
            counts: Mutex::default(),
            durations: ProbeDurations::new_with_constructor(probe_duration_histogram),
        }
    }
}

/// Writes `prober_probe_total` from the counts at each scrape.
#[derive(Debug)]
struct ProbeCounter(std::sync::Arc<ProbeMetrics>);

impl prometheus_client::collector::Collector for ProbeCounter {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        let mut family = encoder.encode_descriptor(
            "prober_probe",
            "[BETA] Cumulative number of a liveness, readiness or startup probe for a container by result.",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for (k, count) in self.0.snapshot() {
            // Sorted by name, as the reference's encoder writes labels.
            let labels = [
                ("container", k.container.as_str()),
                ("namespace", k.namespace.as_str()),
                ("pod", k.pod.as_str()),
                ("pod_uid", k.pod_uid.as_str()),
                ("probe_type", k.probe_type.as_str()),
                ("result", k.result.as_str()),
            ];
            prometheus_client::metrics::counter::ConstCounter::new(count)
                .encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

impl ProbeMetrics {
    /// Registers `prober_probe_total` and `prober_probe_duration_seconds` in `registry`.
    pub fn register(
        self: &std::sync::Arc<Self>,
        registry: &mut prometheus_client::registry::Registry,
    ) {
        registry.register_collector(Box::new(ProbeCounter(self.clone())));
        crate::metrics::add(
            registry,
            "prober_probe_duration_seconds",
            "[ALPHA] Duration in seconds for a probe response.",
            self.durations.clone(),
        );
    }

    /// Record how long a probe run took (the reference records successful and unknown runs).
    pub fn record_duration(&self, key: &ProbeCountKey, elapsed: std::time::Duration) {
        self.durations
            .get_or_create(&[
                ("container", key.container.clone()),
                ("namespace", key.namespace.clone()),
                ("pod", key.pod.clone()),
                ("probe_type", key.probe_type.clone()),
            ])
            .observe(elapsed.as_secs_f64());
    }

    /// Count one probe run.
    pub fn record(&self, key: ProbeCountKey) {
        if let Ok(mut counts) = self.counts.lock() {
            *counts.entry(key).or_insert(0) += 1;
        }
    }

    /// Every series with its count.
    pub fn snapshot(&self) -> BTreeMap<ProbeCountKey, u64> {
        self.counts.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Total over the series matching `filter`.
    pub fn total(&self, filter: impl Fn(&ProbeCountKey) -> bool) -> u64 {
        self.counts
            .lock()
            .map(|c| c.iter().filter(|(k, _)| filter(k)).map(|(_, v)| *v).sum())
            .unwrap_or(0)
    }
}
