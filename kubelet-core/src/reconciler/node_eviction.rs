//! Node-pressure eviction, the kubelet's side of [`crate::eviction::EvictionManager`]: every
//! monitoring interval (10 s) the newest stats summary is weighed against the eviction
//! thresholds; the verdict sets the node's MemoryPressure, DiskPressure and PIDPressure
//! conditions, and while a threshold is met the kubelet records an `EvictionThresholdMet`
//! event on the node, reclaims node-level resources first (unused images under disk
//! pressure, then a fresh summary decides whether that was enough), and otherwise evicts one
//! pod, the first of the manager's ranking, through its worker. As the reference, it then
//! waits (up to 30 s) for that pod's containers to stop before it looks again, so that one
//! shortage never costs two pods. New pods go through the manager's admit handler
//! ([`NodeEviction::admit`]) at their first sync.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::eviction::Eviction;
use super::kubelet_state::Shared;
use crate::eviction::{EvictionConfig, EvictionManager, NodeReclaim, Rejection};
use crate::image_gc::ImageGcManager;
use crate::node::NodeStatusHandle;
use crate::reporter::{EventType, KubeletEvent, NodeReporter};
use crate::stats::StatsProvider;

/// The node event recorded while a threshold is met.
pub(crate) const REASON_THRESHOLD_MET: &str = "EvictionThresholdMet";
/// How long an eviction waits for its pod's containers to stop before the next pass (the
/// reference's `podCleanupTimeout`).
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How often that wait looks (the reference's `podCleanupPollFreq`).
const CLEANUP_POLL: Duration = Duration::from_secs(1);

/// The eviction manager, shared by its monitoring loop and the pod workers' admission.
#[derive(Debug)]
pub(crate) struct NodeEviction {
    manager: Mutex<EvictionManager>,
}

impl NodeEviction {
    /// A manager with `config`; nothing is observed until the loop runs.
    pub(crate) fn new(config: EvictionConfig) -> Self {
        Self {
            manager: Mutex::new(EvictionManager::new(config)),
        }
    }

    fn manager(&self) -> MutexGuard<'_, EvictionManager> {
        self.manager
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The eviction admit handler's verdict on a new pod.
    pub(crate) fn admit(&self, pod: &Pod) -> Result<(), Rejection> {
        self.manager().admit(pod)
    }

    fn monitoring_interval(&self) -> Duration {
        self.manager().config().monitoring_interval
    }
}

/// An eviction the monitoring loop asks the dispatcher to hand to a pod's worker; `done`
/// says whether the pod had one.
pub(super) struct EvictOrder {
    pub uid: String,
    pub eviction: Eviction,
    pub done: oneshot::Sender<bool>,
}

/// What the monitoring loop works through.
pub(super) struct Monitor {
    pub eviction: Arc<NodeEviction>,
    pub stats: Arc<dyn StatsProvider>,
    pub shared: Arc<Shared>,
    pub node: Option<NodeStatusHandle>,
    pub reporter: Arc<dyn NodeReporter>,
    pub node_name: String,
    pub image_gc: Option<Arc<tokio::sync::Mutex<ImageGcManager>>>,
    pub orders: mpsc::Sender<EvictOrder>,
    /// Pods already ordered out: never chosen twice.
    evicted: HashSet<String>,
}

impl Monitor {
    #[allow(clippy::too_many_arguments)] // the seams, each its own
    pub(super) fn new(
        eviction: Arc<NodeEviction>,
        stats: Arc<dyn StatsProvider>,
        shared: Arc<Shared>,
        node: Option<NodeStatusHandle>,
        reporter: Arc<dyn NodeReporter>,
        node_name: String,
        image_gc: Option<Arc<tokio::sync::Mutex<ImageGcManager>>>,
        orders: mpsc::Sender<EvictOrder>,
    ) -> Self {
        Self {
            eviction,
            stats,
            shared,
            node,
            reporter,
            node_name,
            image_gc,
            orders,
            evicted: HashSet::new(),
        }
    }

    /// Monitor until the task is dropped.
    pub(super) async fn run(mut self) {
        let mut tick = tokio::time::interval(self.eviction.monitoring_interval());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Some(uid) = self.pass().await {
                self.wait_for_cleanup(&uid).await;
            }
        }
    }

    /// The pods that may be evicted: running on the node, not finished, not on their way out.
    fn active_pods(&mut self) -> Vec<Pod> {
        let pods = self.shared.pods();
        let present: HashSet<&str> = pods
            .iter()
            .filter_map(|p| p.metadata.uid.as_deref())
            .collect();
        self.evicted.retain(|uid| present.contains(uid.as_str()));
        pods.iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| {
                !matches!(
                    p.status.as_ref().and_then(|s| s.phase.as_deref()),
                    Some("Succeeded" | "Failed")
                )
            })
            .filter(|p| {
                p.metadata
                    .uid
                    .as_deref()
                    .is_some_and(|uid| !self.evicted.contains(uid))
            })
            .cloned()
            .collect()
    }

    /// One monitoring pass; the UID of the pod it evicted, if any.
    async fn pass(&mut self) -> Option<String> {
        let summary = match self.stats.summary().await {
            Ok(summary) => summary,
            Err(err) => {
                debug!(error = %err, "eviction manager: no stats summary yet");
                return None;
            }
        };
        let pods = self.active_pods();
        let verdict = self
            .eviction
            .manager()
            .synchronize(Instant::now(), &summary, &pods);
        if let Some(node) = &self.node {
            node.set_pressure(verdict.pressure);
        }
        let reclaim = verdict.reclaim?;
        warn!(
            signal = reclaim.signal.name(),
            resource = reclaim.resource,
            "eviction manager: attempting to reclaim"
        );
        self.node_event(REASON_THRESHOLD_MET, reclaim.event_message.clone())
            .await;
        if !reclaim.node_level.is_empty() && self.reclaim_node_level(&reclaim.node_level).await {
            info!(
                resource = reclaim.resource,
                "eviction manager: node-level reclaim was enough; no pod evicted"
            );
            return None;
        }
        for candidate in &reclaim.candidates {
            let (done, answer) = oneshot::channel();
            let order = EvictOrder {
                uid: candidate.uid.clone(),
                eviction: Eviction::node_pressure(candidate, reclaim.signal.name()),
                done,
            };
            if self.orders.send(order).await.is_err() {
                return None;
            }
            if answer.await.unwrap_or(false) {
                info!(
                    pod = %format!("{}/{}", candidate.namespace, candidate.name),
                    signal = reclaim.signal.name(),
                    "eviction manager: pod evicted"
                );
                self.evicted.insert(candidate.uid.clone());
                return Some(candidate.uid.clone());
            }
        }
        if reclaim.candidates.is_empty() {
            warn!(
                "eviction manager: eviction thresholds have been met, but no pods are active to evict"
            );
        } else {
            warn!("eviction manager: unable to evict any pod from the node");
        }
        None
    }

    /// Run the node-level reclaim steps; whether a fresh summary shows them enough.
    async fn reclaim_node_level(&self, steps: &[NodeReclaim]) -> bool {
        for step in steps {
            match step {
                NodeReclaim::DeleteUnusedImages => {
                    let Some(gc) = &self.image_gc else { continue };
                    match gc.lock().await.delete_unused_images().await {
                        Ok(freed) => info!(freed, "eviction manager: unused images removed"),
                        Err(err) => {
                            warn!(error = %err, "eviction manager: removing unused images failed")
                        }
                    }
                }
                // Each pod's worker removes its dead containers (all but the newest of a
                // name) after every sync; a removed pod's go with it. No more is left
                // node-wide that the reference's DeleteAllUnusedContainers would take.
                NodeReclaim::DeleteUnusedContainers => {}
            }
        }
        match self.stats.fresh_summary().await {
            Ok(summary) => self.eviction.manager().reclaimed_enough(&summary),
            Err(err) => {
                debug!(error = %err, "eviction manager: no summary after node-level reclaim");
                false
            }
        }
    }

    /// Wait until the evicted pod's containers stopped (its status is Failed and none runs),
    /// at most [`CLEANUP_TIMEOUT`].
    async fn wait_for_cleanup(&self, uid: &str) {
        let deadline = Instant::now() + CLEANUP_TIMEOUT;
        while Instant::now() < deadline {
            tokio::time::sleep(CLEANUP_POLL).await;
            let pods = self.shared.pods();
            let Some(pod) = pods.iter().find(|p| p.metadata.uid.as_deref() == Some(uid)) else {
                return;
            };
            let status = pod.status.as_ref();
            let failed = status.and_then(|s| s.phase.as_deref()) == Some("Failed");
            let running = status
                .and_then(|s| s.container_statuses.as_ref())
                .is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()))
                });
            if failed && !running {
                return;
            }
        }
        warn!(
            uid,
            "eviction manager: timed out waiting for the evicted pod to be cleaned up"
        );
    }

    /// A Warning event on the Node object.
    async fn node_event(&self, reason: &str, message: String) {
        let event = KubeletEvent::about_node(&self.node_name, EventType::Warning, reason, message);
        if let Err(err) = self.reporter.record_event(&event).await {
            debug!(error = %err, reason, "recording a node event failed");
        }
    }
}
