//! Local-storage eviction of one pod, as the reference's eviction manager does it for an
//! on-disk `emptyDir` that outgrows its `sizeLimit`: every monitoring interval (10 s) the
//! volume's usage is measured; past the limit the pod is evicted at once (grace period 0),
//! with a Warning `Evicted` event, and its status goes Failed with reason `Evicted`, the
//! reference's message and a `DisruptionTarget` condition. An evicted pod never starts again
//! on this node.
//!
//! The worker's side of the other ways the kubelet stops a pod for good is here too: a
//! node-pressure eviction ordered by [`super::node_eviction`] (its grace period, the
//! signal's name for `kubelet_evictions`), and a pod the eviction admit handler refused
//! (`Pod was rejected: ...`, no `DisruptionTarget`, nothing ever started).

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;

use super::state::PodRuntimeState;
use super::worker::PodWorker;
use crate::reporter::EventType;
use crate::volume::MountedVolume;
use crate::volume_plugins::{disk_usage, size_limit_eviction_message};

/// The status reason and event reason of an evicted pod.
pub const REASON: &str = crate::eviction::REASON;
/// How often a pod with size-limited volumes has them measured (the eviction manager's
/// `evictionMonitoringPeriod`).
pub const MONITORING_INTERVAL: Duration = Duration::from_secs(10);

/// Why the kubelet stops a pod for good and reports it Failed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Eviction {
    /// The status reason (`Evicted`).
    pub reason: String,
    /// The status message.
    pub message: String,
    /// The Warning event's message (a rejection's lacks the status' `Pod was rejected: `).
    pub event_message: String,
    /// How long the containers get to stop.
    pub grace_period: Duration,
    /// The signal counted in `kubelet_evictions`; `None` for a rejection.
    pub signal: Option<String>,
    /// Whether the status carries a `DisruptionTarget` condition (evictions do, rejections
    /// at admission do not).
    pub disruption: bool,
}

impl Eviction {
    /// A disk `emptyDir` outgrew its `sizeLimit`: evicted at once.
    pub(crate) fn local_storage(message: String) -> Self {
        Self {
            reason: REASON.to_string(),
            event_message: message.clone(),
            message,
            grace_period: Duration::ZERO,
            signal: Some(crate::metrics::SIGNAL_EMPTY_DIR_FS_LIMIT.to_string()),
            disruption: true,
        }
    }

    /// Chosen by the node-pressure eviction manager.
    pub(crate) fn node_pressure(order: &crate::eviction::PodEviction, signal: &str) -> Self {
        Self {
            reason: REASON.to_string(),
            message: order.message.clone(),
            event_message: order.message.clone(),
            grace_period: order.grace_period,
            signal: Some(signal.to_string()),
            disruption: true,
        }
    }

    /// Refused by an admit handler when the pod first came: it never runs.
    pub(crate) fn rejected(rejection: &crate::eviction::Rejection) -> Self {
        Self {
            reason: rejection.reason.clone(),
            message: format!("Pod was rejected: {}", rejection.message),
            event_message: rejection.message.clone(),
            grace_period: Duration::ZERO,
            signal: None,
            disruption: false,
        }
    }
}

/// The eviction message when one of the pod's disk `emptyDir`s uses more than its
/// `sizeLimit`; `None` while none does.
pub(super) async fn storage_limit_exceeded(
    pod: &Pod,
    mounted: &BTreeMap<String, MountedVolume>,
) -> Option<String> {
    let volumes = pod.spec.as_ref()?.volumes.as_ref()?;
    for volume in volumes {
        let Some(mv) = mounted.get(&volume.name) else {
            continue;
        };
        if mv.size_limit_bytes.is_none() {
            continue;
        }
        let dir = mv.host_path.clone();
        // A walk of the volume's tree: off the async threads.
        let usage = match tokio::task::spawn_blocking(move || disk_usage(&dir)).await {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(err)) => {
                tracing::debug!(volume = %volume.name, error = %err, "volume usage unreadable");
                continue;
            }
            Err(_) => continue,
        };
        if let Some(message) = size_limit_eviction_message(volume, usage) {
            return Some(message);
        }
    }
    None
}

/// Whether any of the pod's volumes is measured for eviction.
pub(super) fn has_size_limits(mounted: &BTreeMap<String, MountedVolume>) -> bool {
    mounted.values().any(|v| v.size_limit_bytes.is_some())
}

impl PodWorker {
    /// The admit handlers' verdict on a pod that just came (the reference's
    /// `canAdmitPod`): the eviction manager's, then the node's resources, affinity, ports and
    /// taints ([`crate::admission`]); a refused pod never runs. A pod the runtime already runs
    /// (a restarted kubelet) was admitted before: it only counts as admitted. A finished pod
    /// does not count.
    pub(super) fn admit(&mut self, pod: &Pod, observed: &PodRuntimeState) {
        let finished = matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        );
        if finished {
            return;
        }
        let running = !observed.sandboxes.is_empty() || !observed.containers.is_empty();
        let ctx = &self.ctx;
        let verdict = ctx.shared.admit(pod, |others| {
            if running {
                return Ok(());
            }
            if let Some(eviction) = &ctx.node_eviction {
                eviction.admit(pod)?;
            }
            match &ctx.node_info {
                Some(node) => crate::admission::admit(pod, others, node),
                None => Ok(()),
            }
        });
        if let Err(rejection) = verdict {
            self.evicted = Some(Eviction::rejected(&rejection));
        }
    }

    /// Stop the evicted (or rejected) pod for good: once, the event; every sync, its
    /// containers and sandbox stopped with the eviction's grace period, the Failed status.
    pub(super) async fn enforce_eviction(&mut self, pod: &Pod, observed: &PodRuntimeState) {
        let Some(eviction) = self.evicted.clone() else {
            return;
        };
        if !self.eviction_recorded {
            self.eviction_recorded = true;
            if let Some(signal) = &eviction.signal {
                self.ctx.shared.metrics.eviction(signal);
                tracing::warn!(pod = %super::sync::pod_name(pod), message = %eviction.message, "evicting pod");
            } else {
                tracing::warn!(pod = %super::sync::pod_name(pod), message = %eviction.message, "pod rejected at admission");
            }
            self.ctx.event(
                pod,
                None,
                EventType::Warning,
                &eviction.reason,
                eviction.event_message.clone(),
            );
            self.probes.stop_all();
            self.waiting.clear();
        }
        let running = observed.running_containers().next().is_some()
            || observed
                .sandboxes
                .iter()
                .any(|s| s.state == crate::runtime::SandboxState::Ready);
        let observed = if running {
            self.kill_pod(Some(pod), observed, eviction.grace_period)
                .await;
            self.observe().await.unwrap_or_else(|_| observed.clone())
        } else {
            observed.clone()
        };
        self.update_status(pod, &observed, false);
    }
}
