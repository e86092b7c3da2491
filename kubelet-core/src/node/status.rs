//! The whole NodeStatus and the Node registered at start, from the configuration, the
//! machine's facts and what was observed of the runtime.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ContainerImage, DaemonEndpoint, Node, NodeAddress, NodeDaemonEndpoints, NodeSpec, NodeStatus,
    NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

use super::conditions::{
    DISK_PRESSURE, EventReason, MEMORY_PRESSURE, NodePressure, PID_PRESSURE, conditions_changed,
    set_pressure, set_ready,
};
use super::config::{ANNOTATION_CONTROLLER_ATTACH_DETACH, NodeConfig};
use super::machine::MachineInfo;
use super::resources::NodeResources;
use crate::runtime::{ImageInfo, RuntimeVersion};

/// At most this many images are listed in the status, largest first (the reference's
/// `nodeStatusMaxImages`).
pub const MAX_IMAGES_IN_STATUS: usize = 50;
/// At most this many names per image (`maxNamesPerImageInNodeStatus`).
pub const MAX_NAMES_PER_IMAGE: usize = 5;

/// What was observed for one status computation.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// The runtime's version, when known.
    pub runtime_version: Option<RuntimeVersion>,
    /// Why the node is not ready (`None`: ready).
    pub not_ready: Option<String>,
    /// Pressure as the eviction manager sees it.
    pub pressure: NodePressure,
    /// The runtime's images, when listed.
    pub images: Option<Vec<ImageInfo>>,
    /// The attachable volumes in use, sorted and unique (`volumesInUse`; none when empty).
    pub volumes_in_use: Vec<String>,
}

/// Computes node statuses for one node.
#[derive(Debug, Clone)]
pub struct StatusComputer {
    config: NodeConfig,
    machine: MachineInfo,
    resources: NodeResources,
}

impl StatusComputer {
    /// For this node, machine and resources.
    pub fn new(config: NodeConfig, machine: MachineInfo, resources: NodeResources) -> Self {
        Self {
            config,
            machine,
            resources,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// The status at `now`, with the conditions carried on from `base` (the status the API
    /// server holds) by the heartbeat and transition rules; also the events of the
    /// condition changes.
    pub fn compute(
        &self,
        base: Option<&NodeStatus>,
        observed: &Observed,
        now: &Time,
    ) -> (NodeStatus, Vec<EventReason>) {
        let mut events = Vec::new();
        let mut conditions = base.and_then(|b| b.conditions.clone()).unwrap_or_default();
        let p = observed.pressure;
        set_pressure(
            &mut conditions,
            &MEMORY_PRESSURE,
            p.memory,
            now,
            &mut events,
        );
        set_pressure(&mut conditions, &DISK_PRESSURE, p.disk, now, &mut events);
        set_pressure(&mut conditions, &PID_PRESSURE, p.pid, now, &mut events);
        set_ready(
            &mut conditions,
            observed.not_ready.as_deref(),
            now,
            &mut events,
        );

        let container_runtime_version = observed.runtime_version.as_ref().map_or_else(
            // Keep what was reported before rather than blank it on a failed call.
            || {
                base.and_then(|b| b.node_info.as_ref())
                    .map(|i| i.container_runtime_version.clone())
                    .unwrap_or_default()
            },
            |v| format!("{}://{}", v.runtime_name, v.runtime_version),
        );
        let images = match &observed.images {
            Some(images) => Some(status_images(images)),
            None => base.and_then(|b| b.images.clone()),
        };
        let m = &self.machine;
        let status = NodeStatus {
            capacity: Some(self.resources.capacity.clone()),
            allocatable: Some(self.resources.allocatable.clone()),
            addresses: Some(self.addresses()),
            conditions: Some(conditions),
            daemon_endpoints: Some(NodeDaemonEndpoints {
                kubelet_endpoint: Some(DaemonEndpoint {
                    port: self.config.kubelet_port,
                }),
            }),
            node_info: Some(NodeSystemInfo {
                machine_id: m.machine_id.clone(),
                system_uuid: m.system_uuid.clone(),
                boot_id: m.boot_id.clone(),
                kernel_version: m.kernel_version.clone(),
                os_image: m.os_image.clone(),
                container_runtime_version,
                kubelet_version: self.config.kubelet_version.clone(),
                architecture: m.architecture.clone(),
                operating_system: m.operating_system.clone(),
                ..NodeSystemInfo::default()
            }),
            images,
            volumes_in_use: (!observed.volumes_in_use.is_empty())
                .then(|| observed.volumes_in_use.clone()),
            ..NodeStatus::default()
        };
        (status, events)
    }

    /// `InternalIP` for each node IP, then the hostname.
    fn addresses(&self) -> Vec<NodeAddress> {
        self.config
            .node_ips
            .iter()
            .map(|ip| NodeAddress {
                type_: "InternalIP".to_string(),
                address: ip.to_string(),
            })
            .chain(std::iter::once(NodeAddress {
                type_: "Hostname".to_string(),
                address: self.config.hostname.clone(),
            }))
            .collect()
    }

    /// The Node object registered at start: name, labels, the controller-managed
    /// attach/detach annotation, taints, and the status.
    pub fn initial_node(&self, status: NodeStatus) -> Node {
        let c = &self.config;
        Node {
            metadata: ObjectMeta {
                name: Some(c.name.clone()),
                labels: Some(
                    c.node_labels(&self.machine.operating_system, &self.machine.architecture),
                ),
                annotations: Some(BTreeMap::from([(
                    ANNOTATION_CONTROLLER_ATTACH_DETACH.to_string(),
                    "true".to_string(),
                )])),
                ..ObjectMeta::default()
            },
            spec: Some(NodeSpec {
                taints: (!c.taints.is_empty()).then(|| c.taints.clone()),
                ..NodeSpec::default()
            }),
            status: Some(status),
        }
    }
}

/// Images for the status: largest first, at most [`MAX_IMAGES_IN_STATUS`], each with its
/// digests then tags, at most [`MAX_NAMES_PER_IMAGE`] names.
fn status_images(images: &[ImageInfo]) -> Vec<ContainerImage> {
    let mut sorted: Vec<&ImageInfo> = images.iter().collect();
    sorted.sort_by_key(|i| std::cmp::Reverse(i.size));
    sorted
        .into_iter()
        .filter(|i| !i.repo_tags.is_empty() || !i.repo_digests.is_empty())
        .take(MAX_IMAGES_IN_STATUS)
        .map(|i| ContainerImage {
            names: Some(
                i.repo_digests
                    .iter()
                    .chain(&i.repo_tags)
                    .take(MAX_NAMES_PER_IMAGE)
                    .cloned()
                    .collect(),
            ),
            size_bytes: i64::try_from(i.size).ok(),
        })
        .collect()
}

/// Whether `new` differs from `old` other than in condition heartbeat times (the
/// reference's `nodeStatusHasChanged`).
pub fn status_changed(old: &NodeStatus, new: &NodeStatus) -> bool {
    let (old_conditions, new_conditions) = (
        old.conditions.as_deref().unwrap_or_default(),
        new.conditions.as_deref().unwrap_or_default(),
    );
    if conditions_changed(old_conditions, new_conditions) {
        return true;
    }
    let strip = |s: &NodeStatus| NodeStatus {
        conditions: None,
        ..s.clone()
    };
    strip(old) != strip(new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Taint;
    use k8s_openapi::jiff::Timestamp;

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).unwrap())
    }

    fn computer() -> StatusComputer {
        let mut config = NodeConfig::new("node-1");
        config.node_ips = vec!["10.0.0.5".parse().unwrap(), "fd00::5".parse().unwrap()];
        config.kubelet_version = "v1.34.0".into();
        config.taints = vec![Taint {
            key: "dedicated".into(),
            value: Some("edge".into()),
            effect: "NoSchedule".into(),
            time_added: None,
        }];
        let machine = MachineInfo {
            num_cores: 2,
            memory_capacity: 4 << 30,
            ephemeral_storage_capacity: 100 << 30,
            machine_id: "mid".into(),
            system_uuid: "uuid".into(),
            boot_id: "boot".into(),
            kernel_version: "6.1.0".into(),
            os_image: "Debian GNU/Linux 12 (bookworm)".into(),
            architecture: "amd64".into(),
            operating_system: "linux".into(),
            ..MachineInfo::default()
        };
        let resources = NodeResources::compute(&config, &machine).unwrap();
        StatusComputer::new(config, machine, resources)
    }

    fn observed() -> Observed {
        Observed {
            runtime_version: Some(RuntimeVersion {
                runtime_name: "containerd".into(),
                runtime_version: "1.7.24".into(),
                runtime_api_version: "v1".into(),
            }),
            ..Observed::default()
        }
    }

    #[test]
    fn status_carries_node_info_addresses_endpoints_and_conditions() {
        let (status, events) = computer().compute(None, &observed(), &at(1000));
        let info = status.node_info.as_ref().unwrap();
        assert_eq!(info.container_runtime_version, "containerd://1.7.24");
        assert_eq!(info.kubelet_version, "v1.34.0");
        assert_eq!(info.machine_id, "mid");
        assert_eq!(info.os_image, "Debian GNU/Linux 12 (bookworm)");
        let addresses: Vec<(&str, &str)> = status
            .addresses
            .iter()
            .flatten()
            .map(|a| (a.type_.as_str(), a.address.as_str()))
            .collect();
        assert_eq!(
            addresses,
            [
                ("InternalIP", "10.0.0.5"),
                ("InternalIP", "fd00::5"),
                ("Hostname", "node-1")
            ]
        );
        let port = status
            .daemon_endpoints
            .as_ref()
            .and_then(|d| d.kubelet_endpoint.as_ref())
            .map(|e| e.port);
        assert_eq!(port, Some(10250));
        let types: Vec<&str> = status
            .conditions
            .iter()
            .flatten()
            .map(|c| c.type_.as_str())
            .collect();
        assert_eq!(
            types,
            ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready"]
        );
        assert_eq!(
            events,
            [
                "NodeHasSufficientMemory",
                "NodeHasNoDiskPressure",
                "NodeHasSufficientPID"
            ]
        );
        assert_eq!(status.capacity.as_ref().unwrap()["pods"].0, "110");
    }

    #[test]
    fn only_heartbeats_moving_is_no_change() {
        let c = computer();
        let (first, _) = c.compute(None, &observed(), &at(1000));
        let (second, events) = c.compute(Some(&first), &observed(), &at(1010));
        assert!(events.is_empty());
        assert!(!status_changed(&first, &second));
        let mut o = observed();
        o.not_ready = Some("container runtime is down".into());
        let (third, events) = c.compute(Some(&second), &o, &at(1020));
        assert!(status_changed(&second, &third));
        assert_eq!(events, ["NodeNotReady"]);
    }

    #[test]
    fn a_failed_version_call_keeps_the_previous_runtime_version() {
        let c = computer();
        let (first, _) = c.compute(None, &observed(), &at(1));
        let (second, _) = c.compute(Some(&first), &Observed::default(), &at(2));
        assert_eq!(
            second.node_info.unwrap().container_runtime_version,
            "containerd://1.7.24"
        );
    }

    #[test]
    fn images_largest_first_digests_then_tags() {
        let image = |tag: &str, size| ImageInfo {
            id: format!("sha256:{tag}"),
            repo_tags: vec![tag.to_string()],
            repo_digests: vec![format!("{tag}@sha256:d")],
            size,
            pinned: false,
            ..Default::default()
        };
        let mut o = observed();
        o.images = Some(vec![image("small", 10), image("big", 1000)]);
        let (status, _) = computer().compute(None, &o, &at(1));
        let images = status.images.unwrap();
        assert_eq!(images[0].names.as_deref().unwrap(), ["big@sha256:d", "big"]);
        assert_eq!(images[0].size_bytes, Some(1000));
        assert_eq!(images.len(), 2);
    }

    #[test]
    fn initial_node_has_labels_annotation_and_taints() {
        let c = computer();
        let (status, _) = c.compute(None, &observed(), &at(1));
        let node = c.initial_node(status);
        assert_eq!(node.metadata.name.as_deref(), Some("node-1"));
        let labels = node.metadata.labels.unwrap();
        assert_eq!(labels["kubernetes.io/hostname"], "node-1");
        assert_eq!(labels["kubernetes.io/os"], "linux");
        assert_eq!(labels["kubernetes.io/arch"], "amd64");
        assert_eq!(
            node.metadata.annotations.unwrap()[ANNOTATION_CONTROLLER_ATTACH_DETACH],
            "true"
        );
        assert_eq!(node.spec.unwrap().taints.unwrap()[0].key, "dedicated");
        assert!(node.status.unwrap().conditions.is_some());
    }
}
