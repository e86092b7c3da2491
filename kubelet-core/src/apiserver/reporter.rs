//! [`ApiServerReporter`]: the [`NodeReporter`] that writes to the API server.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeStatus, Pod, PodStatus};

use super::client::NodeClient;
use super::events::EventState;
use super::pods::PodStatuses;
use crate::error::ReportError;
use crate::reporter::{KubeletEvent, NodeReporter};

/// The namespace of node Leases.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";
/// The reference's `nodeLeaseDurationSeconds`.
pub const DEFAULT_LEASE_DURATION_SECONDS: i32 = 40;
/// How often [`ApiServerReporter::spawn_sync`] retries pending pod statuses and checks mirror
/// pods (the reference status manager's sync period).
pub const DEFAULT_SYNC_PERIOD: Duration = Duration::from_secs(10);

/// Settings of an [`ApiServerReporter`].
#[derive(Debug, Clone, PartialEq)]
pub struct ReporterConfig {
    /// `leaseDurationSeconds` of the node Lease (reference default 40).
    pub lease_duration_seconds: i32,
    /// Namespace of the node Lease (`kube-node-lease`).
    pub lease_namespace: String,
    /// Events allowed at once per involved object (reference spam filter burst: 25).
    pub event_burst: u32,
    /// One more event allowed per involved object every this long (reference: 5 minutes).
    pub event_refill: Duration,
    /// How long one API call may take before it counts as failed (server unavailable).
    pub request_timeout: Duration,
}

impl Default for ReporterConfig {
    fn default() -> Self {
        Self {
            lease_duration_seconds: DEFAULT_LEASE_DURATION_SECONDS,
            lease_namespace: NODE_LEASE_NAMESPACE.to_string(),
            event_burst: 25,
            event_refill: Duration::from_secs(300),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// Reports to the API server as node `system:node:<name>`.
///
/// - `register_node` creates the Node, or adopts an existing one of our name and updates its
///   default labels (hostname, os, arch, zone, region, instance type) as the reference does.
/// - `update_node_status` patches `nodes/<name>/status` (strategic merge: conditions other
///   components own are kept; addresses are replaced).
/// - `renew_lease` creates or updates `kube-node-lease/<node>` (holder = node, owner = the
///   Node), retrying on conflicts.
/// - `update_pod_status` patches `pods/<name>/status` with the pod's UID as precondition and
///   only when the status differs from the last one accepted; failed updates are kept and
///   sent again by [`ApiServerReporter::sync`]. Static pods get a mirror pod, whose status is
///   the static pod's.
/// - `pod_removed` deletes a terminated API pod that is being deleted (grace 0, UID
///   precondition), or the mirror pod of a static pod.
/// - `record_event` writes core/v1 Events, with the reference's spam filter (per object: a
///   burst of 25, then one every 5 minutes), aggregation of similar events and `count` for
///   repeats.
///
/// Every call fails with [`ReportError::Unavailable`] while the server cannot be reached.
#[derive(Clone)]
pub struct ApiServerReporter {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub client: NodeClient,
    pub config: ReporterConfig,
    /// The UID of our Node object, for owner references.
    pub node_uid: Mutex<Option<String>>,
    /// The Lease as last written (its resourceVersion makes the next update conditional).
    pub lease: tokio::sync::Mutex<Option<Lease>>,
    /// The Node's status as the server last showed it: the base of the next status patch.
    pub node_status: tokio::sync::Mutex<Option<NodeStatus>>,
    /// Pod statuses and mirror pods; held across the calls so that sends do not interleave.
    pub pods: tokio::sync::Mutex<PodStatuses>,
    pub events: Mutex<EventState>,
}

impl std::fmt::Debug for ApiServerReporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiServerReporter")
            .field("client", &self.inner.client)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl ApiServerReporter {
    /// A reporter for the node of `client`, with the reference defaults.
    pub fn new(client: NodeClient) -> Self {
        Self::with_config(client, ReporterConfig::default())
    }

    /// A reporter with the given settings.
    pub fn with_config(client: NodeClient, config: ReporterConfig) -> Self {
        let events = EventState::new(config.event_burst, config.event_refill);
        Self {
            inner: Arc::new(Inner {
                client,
                config,
                node_uid: Mutex::new(None),
                lease: tokio::sync::Mutex::new(None),
                node_status: tokio::sync::Mutex::new(None),
                pods: tokio::sync::Mutex::new(PodStatuses::default()),
                events: Mutex::new(events),
            }),
        }
    }

    /// Sends the pod statuses that failed before, and recreates mirror pods that were
    /// deleted or no longer match their static pod. Returns the first error met.
    pub async fn sync(&self) -> Result<(), ReportError> {
        self.inner.sync_pods().await
    }

    /// Runs [`ApiServerReporter::sync`] every `period` until the handle is aborted.
    pub fn spawn_sync(&self, period: Duration) -> tokio::task::JoinHandle<()> {
        let reporter = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                if let Err(err) = reporter.sync().await {
                    tracing::debug!(error = %err, "pod status sync incomplete; will retry");
                }
            }
        })
    }

    /// How many pod statuses wait to be sent (failed while the server was away).
    pub async fn pending_pod_statuses(&self) -> usize {
        self.inner.pods.lock().await.pending_count()
    }
}

impl Inner {
    /// Runs one API call with the request timeout; a timeout is a transport error.
    pub async fn timed<T>(
        &self,
        call: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, kube::Error> {
        match tokio::time::timeout(self.config.request_timeout, call).await {
            Ok(result) => result,
            Err(_) => Err(kube::Error::Service(
                format!(
                    "no answer within {} s",
                    self.config.request_timeout.as_secs()
                )
                .into(),
            )),
        }
    }

    pub fn node_name(&self) -> &str {
        self.client.node_name()
    }

    pub fn kube(&self) -> kube::Client {
        self.client.client().clone()
    }
}

#[async_trait]
impl NodeReporter for ApiServerReporter {
    async fn register_node(&self, node: &Node) -> Result<(), ReportError> {
        self.inner.register_node(node).await
    }

    async fn update_node_status(
        &self,
        node_name: &str,
        status: &NodeStatus,
    ) -> Result<(), ReportError> {
        self.inner.update_node_status(node_name, status).await
    }

    async fn renew_lease(&self, node_name: &str) -> Result<(), ReportError> {
        self.inner.renew_lease(node_name).await
    }

    async fn update_pod_status(&self, pod: &Pod, status: &PodStatus) -> Result<(), ReportError> {
        self.inner.update_pod_status(pod, status).await
    }

    async fn pod_removed(&self, pod: &Pod) -> Result<(), ReportError> {
        self.inner.pod_removed(pod).await
    }

    async fn record_event(&self, event: &KubeletEvent) -> Result<(), ReportError> {
        self.inner.record_event(event).await
    }
}
