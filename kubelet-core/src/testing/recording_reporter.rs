//! A [`NodeReporter`] that records everything it is told, for assertions.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Node, NodeStatus, Pod, PodStatus};
use tokio::sync::Notify;

use crate::error::ReportError;
use crate::reporter::{KubeletEvent, NodeReporter};

#[derive(Default)]
struct Recorded {
    node: Option<Node>,
    registrations: usize,
    node_statuses: Vec<NodeStatus>,
    lease_renewals: usize,
    pods: BTreeMap<String, Pod>,
    pod_statuses: BTreeMap<String, Vec<PodStatus>>,
    status_order: Vec<String>,
    removed: Vec<Pod>,
    /// Pod status updates (`false`) and removals (`true`) with the pod UID, in call order.
    pod_calls: Vec<(String, bool)>,
    events: Vec<KubeletEvent>,
    unavailable: bool,
    fail_next: usize,
    failed_calls: usize,
}

/// Records node registration, node statuses, lease renewals, pod statuses (per pod UID, in
/// order), removed pods and events. Calls fail with [`ReportError::Unavailable`] (and are not
/// recorded) while [`RecordingReporter::set_unavailable`] is on or after
/// [`RecordingReporter::fail_next`].
#[derive(Default)]
pub struct RecordingReporter {
    recorded: Mutex<Recorded>,
    changed: Notify,
}

impl std::fmt::Debug for RecordingReporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r = self.lock();
        f.debug_struct("RecordingReporter")
            .field("registrations", &r.registrations)
            .field("node_statuses", &r.node_statuses.len())
            .field("lease_renewals", &r.lease_renewals)
            .field("pod_status_updates", &r.status_order.len())
            .field("removed", &r.removed.len())
            .field("events", &r.events.len())
            .finish()
    }
}

fn uid_of(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

impl RecordingReporter {
    /// An empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Recorded> {
        self.recorded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Count the call against injected failures; `Err` if it must fail.
    fn admit(r: &mut Recorded, what: &str) -> Result<(), ReportError> {
        if r.unavailable || r.fail_next > 0 {
            r.fail_next = r.fail_next.saturating_sub(1);
            r.failed_calls += 1;
            return Err(ReportError::Unavailable(format!(
                "{what}: injected failure"
            )));
        }
        Ok(())
    }

    /// While on, every call fails with [`ReportError::Unavailable`].
    pub fn set_unavailable(&self, unavailable: bool) {
        self.lock().unavailable = unavailable;
    }

    /// The next `n` calls (of any method) fail with [`ReportError::Unavailable`].
    pub fn fail_next(&self, n: usize) {
        self.lock().fail_next += n;
    }

    /// How many calls failed by injection.
    pub fn failed_calls(&self) -> usize {
        self.lock().failed_calls
    }

    /// The node last registered.
    pub fn registered_node(&self) -> Option<Node> {
        self.lock().node.clone()
    }

    /// How many times the node was registered.
    pub fn registrations(&self) -> usize {
        self.lock().registrations
    }

    /// Every node status reported, in order.
    pub fn node_statuses(&self) -> Vec<NodeStatus> {
        self.lock().node_statuses.clone()
    }

    /// The node status last reported.
    pub fn last_node_status(&self) -> Option<NodeStatus> {
        self.lock().node_statuses.last().cloned()
    }

    /// How many times the lease was renewed.
    pub fn lease_renewals(&self) -> usize {
        self.lock().lease_renewals
    }

    /// Every status reported for the pod with this UID, in order.
    pub fn pod_statuses(&self, uid: &str) -> Vec<PodStatus> {
        self.lock()
            .pod_statuses
            .get(uid)
            .cloned()
            .unwrap_or_default()
    }

    /// The status last reported for the pod with this UID.
    pub fn last_pod_status(&self, uid: &str) -> Option<PodStatus> {
        self.lock()
            .pod_statuses
            .get(uid)
            .and_then(|s| s.last().cloned())
    }

    /// The phase last reported for the pod with this UID.
    pub fn last_phase(&self, uid: &str) -> Option<String> {
        self.last_pod_status(uid).and_then(|s| s.phase)
    }

    /// The pod (as last passed with a status) with this UID.
    pub fn pod(&self, uid: &str) -> Option<Pod> {
        self.lock().pods.get(uid).cloned()
    }

    /// UIDs of the pods in the order their status updates came (one entry per update).
    pub fn pod_status_order(&self) -> Vec<String> {
        self.lock().status_order.clone()
    }

    /// UIDs of the pods reported removed, in order.
    pub fn removed_pods(&self) -> Vec<String> {
        self.lock().removed.iter().map(uid_of).collect()
    }

    /// How many status updates of the pod were accepted after its removal was (none, when
    /// the kubelet reports in order); `None` while the pod was not reported removed.
    pub fn status_updates_after_removal(&self, uid: &str) -> Option<usize> {
        let r = self.lock();
        let at = r
            .pod_calls
            .iter()
            .position(|(u, removed)| u == uid && *removed)?;
        Some(
            r.pod_calls[at..]
                .iter()
                .filter(|(u, removed)| u == uid && !*removed)
                .count(),
        )
    }

    /// Every event recorded, in order.
    pub fn events(&self) -> Vec<KubeletEvent> {
        self.lock().events.clone()
    }

    /// The events with this reason, in order.
    pub fn events_with_reason(&self, reason: &str) -> Vec<KubeletEvent> {
        self.lock()
            .events
            .iter()
            .filter(|e| e.reason == reason)
            .cloned()
            .collect()
    }

    /// Wait until `condition` holds on this recorder (checked after every recorded call).
    /// Pair it with `tokio::time::timeout` in tests.
    pub async fn wait_for<F>(&self, mut condition: F)
    where
        F: FnMut(&Self) -> bool,
    {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            // Register before checking, so that a change between check and await is seen.
            notified.as_mut().enable();
            if condition(self) {
                return;
            }
            notified.await;
        }
    }
}

#[async_trait]
impl NodeReporter for RecordingReporter {
    async fn register_node(&self, node: &Node) -> Result<(), ReportError> {
        {
            let mut r = self.lock();
            Self::admit(&mut r, "register_node")?;
            r.node = Some(node.clone());
            r.registrations += 1;
        }
        self.changed.notify_waiters();
        Ok(())
    }

    async fn update_node_status(
        &self,
        _node_name: &str,
        status: &NodeStatus,
    ) -> Result<(), ReportError> {
        {
            let mut r = self.lock();
            Self::admit(&mut r, "update_node_status")?;
            r.node_statuses.push(status.clone());
        }
        self.changed.notify_waiters();
        Ok(())
    }

    async fn renew_lease(&self, _node_name: &str) -> Result<(), ReportError> {
        {
            let mut r = self.lock();
            Self::admit(&mut r, "renew_lease")?;
            r.lease_renewals += 1;
        }
        self.changed.notify_waiters();
        Ok(())
    }

    async fn update_pod_status(&self, pod: &Pod, status: &PodStatus) -> Result<(), ReportError> {
        {
            let mut r = self.lock();
            Self::admit(&mut r, "update_pod_status")?;
            let uid = uid_of(pod);
            r.pods.insert(uid.clone(), pod.clone());
            r.pod_statuses
                .entry(uid.clone())
                .or_default()
                .push(status.clone());
            r.pod_calls.push((uid.clone(), false));
            r.status_order.push(uid);
        }
        self.changed.notify_waiters();
        Ok(())
    }

    async fn pod_removed(&self, pod: &Pod) -> Result<(), ReportError> {
        {
            let mut r = self.lock();
            Self::admit(&mut r, "pod_removed")?;
            r.pod_calls.push((uid_of(pod), true));
            r.removed.push(pod.clone());
        }
        self.changed.notify_waiters();
        Ok(())
    }

    async fn record_event(&self, event: &KubeletEvent) -> Result<(), ReportError> {
        {
            let mut r = self.lock();
            Self::admit(&mut r, "record_event")?;
            r.events.push(event.clone());
        }
        self.changed.notify_waiters();
        Ok(())
    }
}
