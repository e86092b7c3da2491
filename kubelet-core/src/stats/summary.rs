//! The reference's `statsapi.Summary` (`k8s.io/kubelet/pkg/apis/stats/v1alpha1`), the JSON
//! of `/stats/summary`: field names, nesting and omitted-when-empty fields as the reference
//! writes them, so that metrics-server and other readers parse it unchanged.

use serde::{Deserialize, Serialize};

/// A point in time, nanoseconds since the epoch, written as the reference's `metav1.Time`:
/// RFC 3339 in UTC with whole seconds (`2026-12-02T18:27:46Z`), and `null` when unknown
/// (zero).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Time(pub i64);

impl Time {
    /// Now.
    pub fn now() -> Self {
        Self(jiff::Timestamp::now().as_nanosecond() as i64)
    }

    /// Seconds since the epoch, with the fraction.
    pub fn as_secs_f64(&self) -> f64 {
        self.0 as f64 / 1e9
    }
}

impl Serialize for Time {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.0 == 0 {
            return serializer.serialize_none();
        }
        let ts = jiff::Timestamp::from_second(self.0.div_euclid(1_000_000_000))
            .map_err(serde::ser::Error::custom)?;
        serializer.serialize_str(&ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
    }
}

impl<'de> Deserialize<'de> for Time {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let Some(text) = Option::<String>::deserialize(deserializer)? else {
            return Ok(Self(0));
        };
        let ts: jiff::Timestamp = text.parse().map_err(serde::de::Error::custom)?;
        Ok(Self(ts.as_nanosecond() as i64))
    }
}

/// The whole summary: the node and its pods.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// The node.
    pub node: NodeStats,
    /// The pods, each with its containers.
    pub pods: Vec<PodStats>,
}

/// The node's numbers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeStats {
    /// The node's name.
    pub node_name: String,
    /// The node's system containers (here `pods`: the cgroup of all pods).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_containers: Option<Vec<ContainerStats>>,
    /// When the node booted.
    pub start_time: Time,
    /// CPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuStats>,
    /// Memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryStats>,
    /// Swap (`/proc/meminfo`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swap: Option<SwapStats>,
    /// Network (the root network namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkStats>,
    /// The filesystem of the kubelet's root directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fs: Option<FsStats>,
    /// The runtime's image filesystem.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<RuntimeStats>,
    /// PID limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rlimit: Option<RlimitStats>,
}

/// The runtime's filesystems.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeStats {
    /// Where images live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_fs: Option<FsStats>,
    /// Where containers' writable layers live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_fs: Option<FsStats>,
}

/// The node's process limits.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RlimitStats {
    /// When sampled.
    pub time: Time,
    /// The most PIDs the node allows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maxpid: Option<i64>,
    /// The processes running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub curproc: Option<i64>,
}

/// Which pod.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodReference {
    /// Name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// UID.
    pub uid: String,
}

/// A pod's numbers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStats {
    /// Which pod.
    pub pod_ref: PodReference,
    /// When its sandbox was created (the reference's CRI stats do the same).
    pub start_time: Time,
    /// Its running containers.
    pub containers: Vec<ContainerStats>,
    /// The pod cgroup's CPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuStats>,
    /// The pod cgroup's memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryStats>,
    /// The pod cgroup's swap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swap: Option<SwapStats>,
    /// The pod's network namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkStats>,
    /// Its volumes measured on the node (emptyDir and the API-object volumes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<Vec<VolumeStats>>,
    /// Writable layers, logs and local volumes together.
    #[serde(
        rename = "ephemeral-storage",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ephemeral_storage: Option<FsStats>,
    /// How many processes run in the pod.
    #[serde(
        rename = "process_stats",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub process_stats: Option<ProcessStats>,
}

/// Processes of a pod.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessStats {
    /// How many.
    #[serde(
        rename = "process_count",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub process_count: Option<u64>,
}

/// A container's numbers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStats {
    /// The container's name in the pod spec.
    pub name: String,
    /// When it was created (the reference's CRI stats do the same).
    pub start_time: Time,
    /// CPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuStats>,
    /// Memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryStats>,
    /// Swap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swap: Option<SwapStats>,
    /// Its writable layer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rootfs: Option<FsStats>,
    /// Its log files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs: Option<FsStats>,
}

/// CPU usage.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CpuStats {
    /// When sampled.
    pub time: Time,
    /// Mean usage over the last housekeeping interval, in billionths of a core.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage_nano_cores: Option<u64>,
    /// Cumulative CPU time, in core-nanoseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage_core_nano_seconds: Option<u64>,
}

/// Memory usage, in bytes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemoryStats {
    /// When sampled.
    pub time: Time,
    /// The limit (or the node's capacity) less the working set, when there is a limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_bytes: Option<u64>,
    /// All memory in use, page cache included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage_bytes: Option<u64>,
    /// Usage less the inactive file cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_set_bytes: Option<u64>,
    /// Anonymous memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss_bytes: Option<u64>,
    /// Page faults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_faults: Option<u64>,
    /// Major page faults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub major_page_faults: Option<u64>,
}

/// Swap usage, in bytes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SwapStats {
    /// When sampled.
    pub time: Time,
    /// Swap left (the node's free swap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swap_available_bytes: Option<u64>,
    /// Swap in use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swap_usage_bytes: Option<u64>,
}

/// One network interface.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InterfaceStats {
    /// Its name.
    pub name: String,
    /// Bytes received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rx_bytes: Option<u64>,
    /// Receive errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rx_errors: Option<u64>,
    /// Bytes sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx_bytes: Option<u64>,
    /// Transmit errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx_errors: Option<u64>,
}

/// A network namespace: the default interface (`eth0`) inline, and every interface.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NetworkStats {
    /// When sampled.
    pub time: Time,
    /// The default interface.
    #[serde(flatten)]
    pub default_interface: InterfaceStats,
    /// Every interface.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<InterfaceStats>,
}

/// A filesystem or the part of one a thing uses.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FsStats {
    /// When sampled.
    pub time: Time,
    /// Bytes available on the filesystem.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_bytes: Option<u64>,
    /// Size of the filesystem.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity_bytes: Option<u64>,
    /// Bytes used (by the thing measured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_bytes: Option<u64>,
    /// Free inodes on the filesystem.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inodes_free: Option<u64>,
    /// Inodes of the filesystem.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inodes: Option<u64>,
    /// Inodes used (by the thing measured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inodes_used: Option<u64>,
}

/// Which claim a volume comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PvcReference {
    /// Claim name.
    pub name: String,
    /// Claim namespace.
    pub namespace: String,
}

/// A pod volume's usage.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeStats {
    /// The numbers.
    #[serde(flatten)]
    pub fs: FsStats,
    /// The volume's name in the pod spec.
    pub name: String,
    /// The claim, for a PVC-backed volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pvc_ref: Option<PvcReference>,
}

impl Summary {
    /// The `?only_cpu_and_memory=true` view: the node's and pods' CPU and memory, the
    /// containers' names, start times, CPU and memory, and nothing else, as the reference.
    pub fn cpu_and_memory_only(&self) -> Summary {
        let strip = |c: &ContainerStats| ContainerStats {
            name: c.name.clone(),
            start_time: c.start_time,
            cpu: c.cpu.clone(),
            memory: c.memory.clone(),
            swap: None,
            rootfs: None,
            logs: None,
        };
        Summary {
            node: NodeStats {
                node_name: self.node.node_name.clone(),
                system_containers: self
                    .node
                    .system_containers
                    .as_ref()
                    .map(|cs| cs.iter().map(strip).collect()),
                start_time: self.node.start_time,
                cpu: self.node.cpu.clone(),
                memory: self.node.memory.clone(),
                ..NodeStats::default()
            },
            pods: self
                .pods
                .iter()
                .map(|p| PodStats {
                    pod_ref: p.pod_ref.clone(),
                    start_time: p.start_time,
                    containers: p.containers.iter().map(strip).collect(),
                    cpu: p.cpu.clone(),
                    memory: p.memory.clone(),
                    ..PodStats::default()
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape_as_the_reference() {
        let t = Time(1_764_700_066_123_456_789);
        let summary = Summary {
            node: NodeStats {
                node_name: "n1".into(),
                start_time: t,
                cpu: Some(CpuStats {
                    time: t,
                    usage_nano_cores: Some(5),
                    usage_core_nano_seconds: Some(6),
                }),
                network: Some(NetworkStats {
                    time: t,
                    default_interface: InterfaceStats {
                        name: "eth0".into(),
                        rx_bytes: Some(1),
                        ..Default::default()
                    },
                    interfaces: vec![],
                }),
                ..Default::default()
            },
            pods: vec![PodStats {
                pod_ref: PodReference {
                    name: "p".into(),
                    namespace: "ns".into(),
                    uid: "u".into(),
                },
                start_time: t,
                volume: Some(vec![VolumeStats {
                    fs: FsStats {
                        time: t,
                        used_bytes: Some(10),
                        ..Default::default()
                    },
                    name: "scratch".into(),
                    pvc_ref: None,
                }]),
                ephemeral_storage: Some(FsStats::default()),
                ..Default::default()
            }],
        };
        let json = serde_json::to_value(&summary).expect("serialize");
        assert_eq!(json["node"]["nodeName"], "n1");
        assert_eq!(json["node"]["startTime"], "2025-12-02T18:27:46Z");
        assert_eq!(json["node"]["cpu"]["usageNanoCores"], 5);
        assert_eq!(json["node"]["cpu"]["usageCoreNanoSeconds"], 6);
        assert_eq!(json["node"]["network"]["name"], "eth0");
        assert_eq!(json["node"]["network"]["rxBytes"], 1);
        assert!(json["node"].get("memory").is_none());
        assert!(json["node"]["network"].get("interfaces").is_none());
        let pod = &json["pods"][0];
        assert_eq!(pod["podRef"]["uid"], "u");
        assert_eq!(pod["containers"], serde_json::json!([]));
        assert_eq!(pod["volume"][0]["name"], "scratch");
        assert_eq!(pod["volume"][0]["usedBytes"], 10);
        assert!(pod.get("ephemeral-storage").is_some());
        let back: Summary = serde_json::from_value(json).expect("deserialize");
        assert_eq!(back.node.start_time, Time(1_764_700_066_000_000_000));
        let unknown = serde_json::to_value(NodeStats::default()).expect("serialize");
        assert!(unknown["startTime"].is_null(), "{unknown}");
        let only = summary.cpu_and_memory_only();
        assert!(only.node.network.is_none() && only.pods[0].volume.is_none());
        assert!(only.node.cpu.is_some());
    }
}
