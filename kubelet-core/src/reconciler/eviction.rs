//! Local-storage eviction of one pod, as the reference's eviction manager does it for an
//! on-disk `emptyDir` that outgrows its `sizeLimit`: every monitoring interval (10 s) the
//! volume's usage is measured; past the limit the pod is evicted at once (grace period 0),
//! with a Warning `Evicted` event, and its status goes Failed with reason `Evicted`, the
//! reference's message and a `DisruptionTarget` condition. An evicted pod never starts again
//! on this node. Node-pressure eviction (memory, disk, PIDs) is not here yet.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;

use super::state::PodRuntimeState;
use super::worker::PodWorker;
use crate::reporter::EventType;
use crate::volume::MountedVolume;
use crate::volume_plugins::{disk_usage, size_limit_eviction_message};

/// The status reason and event reason of an evicted pod.
pub const REASON: &str = "Evicted";
/// How often a pod with size-limited volumes has them measured (the eviction manager's
/// `evictionMonitoringPeriod`).
pub const MONITORING_INTERVAL: Duration = Duration::from_secs(10);

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
    /// Evict the pod (once: the event; every sync: its containers and sandbox stopped at
    /// once, the Failed status).
    pub(super) async fn enforce_eviction(&mut self, pod: &Pod, observed: &PodRuntimeState) {
        let Some(message) = self.evicted.clone() else {
            return;
        };
        if !self.eviction_recorded {
            self.eviction_recorded = true;
            self.ctx
                .shared
                .metrics
                .eviction(crate::metrics::SIGNAL_EMPTY_DIR_FS_LIMIT);
            tracing::warn!(pod = %super::sync::pod_name(pod), %message, "evicting pod");
            self.ctx
                .event(pod, None, EventType::Warning, REASON, message.clone());
            self.probes.stop_all();
            self.waiting.clear();
        }
        let running = observed.running_containers().next().is_some()
            || observed
                .sandboxes
                .iter()
                .any(|s| s.state == crate::runtime::SandboxState::Ready);
        let observed = if running {
            self.kill_pod(Some(pod), observed, Duration::ZERO).await;
            self.observe().await.unwrap_or_else(|_| observed.clone())
        } else {
            observed.clone()
        };
        self.update_status(pod, &observed, false);
    }
}
