//! The `NetworkPlugin` seam: give a pod sandbox its network and IPs, tear it down.

use std::collections::BTreeMap;

use async_trait::async_trait;

use crate::error::NetworkError;
use crate::runtime::{NamespaceMode, PortMapping};

/// The pod and sandbox a network operation is about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkContext {
    /// Pod namespace.
    pub namespace: String,
    /// Pod name.
    pub name: String,
    /// Pod UID.
    pub uid: String,
    /// Sandbox (infra container) ID.
    pub sandbox_id: String,
    /// Network namespace path, if the runtime made one.
    pub netns_path: Option<String>,
    /// Whether the pod uses the host's network.
    pub network: NamespaceMode,
    /// IPs the runtime already reports for the sandbox.
    pub runtime_ips: Vec<String>,
    /// Port mappings from the pod spec (for plugins with the portMappings capability).
    pub port_mappings: Vec<PortMapping>,
    /// The pod's annotations (e.g. `kubernetes.io/ingress-bandwidth` for the bandwidth
    /// capability).
    pub annotations: BTreeMap<String, String>,
}

/// The network state of a pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodNetworkStatus {
    /// Pod IPs, primary first (at most one per family).
    pub ips: Vec<String>,
}

/// Gives pods their network. With a CRI runtime the runtime usually runs CNI itself, and
/// [`RuntimeManagedNetwork`] just reads the IPs the runtime reports.
#[async_trait]
pub trait NetworkPlugin: Send + Sync + 'static {
    /// Plugin name.
    fn name(&self) -> &str;
    /// Whether the network is ready for new pods (drives the node's NetworkReady condition).
    async fn ready(&self) -> Result<(), NetworkError> {
        Ok(())
    }
    /// Set up the sandbox's network and return its IPs.
    async fn setup(&self, ctx: &NetworkContext) -> Result<PodNetworkStatus, NetworkError>;
    /// Tear the sandbox's network down. Idempotent.
    async fn teardown(&self, ctx: &NetworkContext) -> Result<(), NetworkError>;
    /// The sandbox's current IPs.
    async fn status(&self, ctx: &NetworkContext) -> Result<PodNetworkStatus, NetworkError>;
}

/// The network plugin for runtimes that do networking themselves (containerd, CRI-O):
/// setup and teardown are the runtime's, the IPs are what the runtime reports.
#[derive(Debug, Clone, Copy, Default)]
pub struct RuntimeManagedNetwork;

#[async_trait]
impl NetworkPlugin for RuntimeManagedNetwork {
    fn name(&self) -> &str {
        "runtime-managed"
    }

    async fn setup(&self, ctx: &NetworkContext) -> Result<PodNetworkStatus, NetworkError> {
        self.status(ctx).await
    }

    async fn teardown(&self, _ctx: &NetworkContext) -> Result<(), NetworkError> {
        Ok(())
    }

    async fn status(&self, ctx: &NetworkContext) -> Result<PodNetworkStatus, NetworkError> {
        Ok(PodNetworkStatus {
            ips: ctx.runtime_ips.clone(),
        })
    }
}
