//! The `NodeReporter` seam: node registration and status, the Lease, pod status, events.

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Node, NodeStatus, ObjectReference, Pod, PodStatus};

use crate::error::ReportError;

/// Event type, as in core/v1 Event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Normal.
    Normal,
    /// Warning.
    Warning,
}

impl EventType {
    /// The API's string for this type.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "Normal",
            Self::Warning => "Warning",
        }
    }
}

/// An event the kubelet records about an object (usually a pod or one of its containers).
#[derive(Debug, Clone, PartialEq)]
pub struct KubeletEvent {
    /// The object the event is about; `field_path` names the container
    /// (`spec.containers{name}`).
    pub involved: ObjectReference,
    /// Normal or Warning.
    pub type_: EventType,
    /// Reason as the reference kubelet names them (`Pulling`, `Started`, `BackOff`, ...).
    pub reason: String,
    /// Human-readable message.
    pub message: String,
}

impl KubeletEvent {
    /// An event about the node itself. As the reference's node events, the node's name
    /// stands for its UID.
    pub fn about_node(node_name: &str, type_: EventType, reason: &str, message: String) -> Self {
        Self {
            involved: ObjectReference {
                kind: Some("Node".to_string()),
                name: Some(node_name.to_string()),
                uid: Some(node_name.to_string()),
                ..ObjectReference::default()
            },
            type_,
            reason: reason.to_string(),
            message,
        }
    }
}

/// Where the kubelet reports what it does: the API server in production, a log or a recorder
/// standalone and in tests.
#[async_trait]
pub trait NodeReporter: Send + Sync + 'static {
    /// Register the node (create, or adopt an existing Node of the same name).
    async fn register_node(&self, node: &Node) -> Result<(), ReportError>;
    /// Report the node's status.
    async fn update_node_status(
        &self,
        node_name: &str,
        status: &NodeStatus,
    ) -> Result<(), ReportError>;
    /// Renew the node's Lease (heartbeat).
    async fn renew_lease(&self, node_name: &str) -> Result<(), ReportError>;
    /// Report a pod's status. Called only when the status changed.
    async fn update_pod_status(&self, pod: &Pod, status: &PodStatus) -> Result<(), ReportError>;
    /// A pod was fully stopped and removed from the node (containers and sandbox gone).
    /// The API-server reporter finishes the pod's deletion here.
    async fn pod_removed(&self, _pod: &Pod) -> Result<(), ReportError> {
        Ok(())
    }
    /// Record an event.
    async fn record_event(&self, event: &KubeletEvent) -> Result<(), ReportError>;
}
