//! What the node agent is told: identity, labels, taints, frequencies, reservations and
//! hard eviction thresholds, with the reference kubelet's defaults.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::core::v1::Taint;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use thiserror::Error;

/// `maxPods` default.
pub const DEFAULT_MAX_PODS: i64 = 110;
/// `nodeStatusUpdateFrequency` default.
pub const DEFAULT_NODE_STATUS_UPDATE_FREQUENCY: Duration = Duration::from_secs(10);
/// `nodeStatusReportFrequency` default.
pub const DEFAULT_NODE_STATUS_REPORT_FREQUENCY: Duration = Duration::from_secs(5 * 60);
/// `nodeLeaseDurationSeconds` default.
pub const DEFAULT_NODE_LEASE_DURATION_SECONDS: i32 = 40;
/// The share of the lease duration after which the lease is renewed
/// (the reference's `NodeLeaseRenewIntervalFraction`).
pub const LEASE_RENEW_INTERVAL_FRACTION: f64 = 0.25;
/// The kubelet's `port` default.
pub const DEFAULT_KUBELET_PORT: i32 = 10250;

/// Label naming the node's hostname.
pub const LABEL_HOSTNAME: &str = "kubernetes.io/hostname";
/// Label naming the node's operating system.
pub const LABEL_OS: &str = "kubernetes.io/os";
/// Label naming the node's architecture.
pub const LABEL_ARCH: &str = "kubernetes.io/arch";
/// Deprecated OS label the reference still sets, for old selectors.
pub const LABEL_OS_BETA: &str = "beta.kubernetes.io/os";
/// Deprecated architecture label the reference still sets, for old selectors.
pub const LABEL_ARCH_BETA: &str = "beta.kubernetes.io/arch";
/// Annotation telling the attach/detach controller that it, not the kubelet, attaches
/// volumes to this node (the reference's `enableControllerAttachDetach`, on by default).
pub const ANNOTATION_CONTROLLER_ATTACH_DETACH: &str =
    "volumes.kubernetes.io/controller-managed-attach-detach";

/// A setting of the node agent that cannot be used.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum NodeConfigError {
    /// A reservation or threshold quantity does not parse or is negative.
    #[error("node config {field}: {message}")]
    Invalid {
        /// The setting, e.g. `systemReserved[memory]` or `evictionHard[memory.available]`.
        field: String,
        /// What is wrong.
        message: String,
    },
}

/// Everything the node agent needs besides the machine's facts.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeConfig {
    /// The Node's name.
    pub name: String,
    /// The machine's hostname (the `kubernetes.io/hostname` label and the `Hostname`
    /// address); the node name by default.
    pub hostname: String,
    /// Extra labels (`--node-labels`); they override the standard ones of the same key, as
    /// in the reference.
    pub labels: BTreeMap<String, String>,
    /// Taints the Node is registered with (`--register-with-taints`).
    pub taints: Vec<Taint>,
    /// Register the Node at start (`--register-node`); without it the Node must exist and
    /// only its status is reported.
    pub register_node: bool,
    /// The node's IPs, reported as `InternalIP` addresses in this order (`--node-ip`).
    pub node_ips: Vec<IpAddr>,
    /// `maxPods`: the `pods` capacity.
    pub max_pods: i64,
    /// How often the node status is computed (`nodeStatusUpdateFrequency`).
    pub node_status_update_frequency: Duration,
    /// How often the node status is sent even when unchanged (`nodeStatusReportFrequency`).
    pub node_status_report_frequency: Duration,
    /// `nodeLeaseDurationSeconds`; the lease is renewed every quarter of it.
    pub node_lease_duration_seconds: i32,
    /// The port of the kubelet's own server (`daemonEndpoints.kubeletEndpoint.Port`).
    pub kubelet_port: i32,
    /// What the node reports as `kubeletVersion`.
    pub kubelet_version: String,
    /// `systemReserved`: resource name (`cpu`, `memory`, `ephemeral-storage`) to quantity.
    pub system_reserved: BTreeMap<String, Quantity>,
    /// `kubeReserved`, as `system_reserved`.
    pub kube_reserved: BTreeMap<String, Quantity>,
    /// `evictionHard`; `memory.available` and `nodefs.available` are held back from
    /// allocatable.
    pub eviction_hard: Vec<crate::eviction::Threshold>,
}

impl NodeConfig {
    /// The reference's defaults for a node of this name.
    pub fn new(name: impl Into<String>) -> Self {
        let name = name.into();
        Self {
            hostname: name.clone(),
            name,
            labels: BTreeMap::new(),
            taints: Vec::new(),
            register_node: true,
            node_ips: Vec::new(),
            max_pods: DEFAULT_MAX_PODS,
            node_status_update_frequency: DEFAULT_NODE_STATUS_UPDATE_FREQUENCY,
            node_status_report_frequency: DEFAULT_NODE_STATUS_REPORT_FREQUENCY,
            node_lease_duration_seconds: DEFAULT_NODE_LEASE_DURATION_SECONDS,
            kubelet_port: DEFAULT_KUBELET_PORT,
            kubelet_version: crate::kubelet_version(),
            system_reserved: BTreeMap::new(),
            kube_reserved: BTreeMap::new(),
            eviction_hard: crate::eviction::EvictionConfig::default().thresholds,
        }
    }

    /// How often the lease is renewed: a quarter of its duration (10 s by default).
    pub fn lease_renew_interval(&self) -> Duration {
        let seconds = f64::from(self.node_lease_duration_seconds.max(1));
        Duration::from_secs_f64(seconds * LEASE_RENEW_INTERVAL_FRACTION)
    }

    /// The labels the Node is registered with: hostname, OS and architecture (stable and
    /// beta keys, as the reference sets them), then the configured ones on top.
    pub fn node_labels(
        &self,
        operating_system: &str,
        architecture: &str,
    ) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::from([
            (LABEL_HOSTNAME.to_string(), self.hostname.clone()),
            (LABEL_OS.to_string(), operating_system.to_string()),
            (LABEL_ARCH.to_string(), architecture.to_string()),
            (LABEL_OS_BETA.to_string(), operating_system.to_string()),
            (LABEL_ARCH_BETA.to_string(), architecture.to_string()),
        ]);
        for (key, value) in &self.labels {
            labels.insert(key.clone(), value.clone());
        }
        labels
    }

    /// Check the reservations parse; the node agent refuses to start otherwise.
    pub fn validate(&self) -> Result<(), NodeConfigError> {
        for (what, map) in [
            ("systemReserved", &self.system_reserved),
            ("kubeReserved", &self.kube_reserved),
        ] {
            for (resource, quantity) in map {
                reserved_amount(what, resource, quantity)?;
            }
        }
        Ok(())
    }
}

/// A reservation in the resource's unit (millicores for cpu, bytes or counts otherwise).
pub(crate) fn reserved_amount(
    what: &str,
    resource: &str,
    quantity: &Quantity,
) -> Result<i64, NodeConfigError> {
    let parsed = if resource == "cpu" {
        crate::quantity::parse_milli(quantity)
    } else {
        crate::quantity::parse_units(quantity)
    };
    let invalid = |message: String| NodeConfigError::Invalid {
        field: format!("{what}[{resource}]"),
        message,
    };
    let value = parsed.map_err(invalid)?;
    if value < 0 {
        return Err(invalid(format!("negative quantity {:?}", quantity.0)));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_reference_ones() {
        let c = NodeConfig::new("n1");
        assert_eq!(c.hostname, "n1");
        assert!(c.register_node);
        assert_eq!(c.max_pods, 110);
        assert_eq!(c.node_status_update_frequency, Duration::from_secs(10));
        assert_eq!(c.node_status_report_frequency, Duration::from_secs(300));
        assert_eq!(c.node_lease_duration_seconds, 40);
        assert_eq!(c.lease_renew_interval(), Duration::from_secs(10));
        assert_eq!(c.kubelet_port, 10250);
    }

    #[test]
    fn configured_labels_override_standard_ones() {
        let mut c = NodeConfig::new("n1");
        c.labels.insert("role".into(), "edge".into());
        c.labels.insert(LABEL_HOSTNAME.into(), "other".into());
        let labels = c.node_labels("linux", "amd64");
        assert_eq!(labels[LABEL_HOSTNAME], "other");
        assert_eq!(labels[LABEL_OS], "linux");
        assert_eq!(labels[LABEL_ARCH_BETA], "amd64");
        assert_eq!(labels["role"], "edge");
        assert_eq!(labels.len(), 6);
    }

    #[test]
    fn validate_names_the_bad_reservation() {
        let mut c = NodeConfig::new("n1");
        c.system_reserved
            .insert("memory".into(), Quantity("lots".into()));
        let err = c.validate().unwrap_err();
        assert!(err.to_string().contains("systemReserved[memory]"), "{err}");
        c.system_reserved.clear();
        c.kube_reserved
            .insert("cpu".into(), Quantity("100m".into()));
        assert_eq!(c.validate(), Ok(()));
    }
}
