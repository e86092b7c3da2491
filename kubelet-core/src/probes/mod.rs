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
}

/// Probe counts (`prober_probe_total`), shared by every probe worker of a kubelet and read by
/// the metrics server through the kubelet's handle.
#[derive(Debug, Default)]
pub struct ProbeMetrics {
    counts: Mutex<BTreeMap<ProbeCountKey, u64>>,
}

impl ProbeMetrics {
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
