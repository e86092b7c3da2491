//! Which pod to evict first (the reference's `rankMemoryPressure`, `rankDiskPressureFunc`,
//! `rankPIDPressure`), what a pod requests (`GetResourceRequestQuantity`), and the eviction
//! message and event annotations (`evictionMessage`).

use std::cmp::Ordering;
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, Volume};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::observe::{NANO, format_binary_si};
use super::{
    OFFENDING_CONTAINERS_KEY, OFFENDING_CONTAINERS_USAGE_KEY, OFFENDING_POD_KEY,
    OFFENDING_POD_USAGE_KEY, STARVED_RESOURCE_KEY, Signal,
};
use crate::labels;
use crate::quantity;
use crate::stats::summary::{FsStats, PodStats, Summary};

/// Priorities at or above this are the system's critical ones.
const SYSTEM_CRITICAL_PRIORITY: i32 = 2_000_000_000;

/// The reference's `IsCriticalPod`: a static pod, a mirror pod, or a system-critical
/// priority. The kubelet never evicts these and always admits them.
pub(crate) fn is_critical(pod: &Pod) -> bool {
    let annotations = pod.metadata.annotations.as_ref();
    let static_pod = annotations
        .and_then(|a| a.get(labels::CONFIG_SOURCE))
        .is_some_and(|source| source != "api");
    let mirror = annotations.is_some_and(|a| a.contains_key(labels::CONFIG_MIRROR));
    let critical_priority = pod
        .spec
        .as_ref()
        .and_then(|s| s.priority)
        .is_some_and(|p| p >= SYSTEM_CRITICAL_PRIORITY);
    static_pod || mirror || critical_priority
}

/// The pod's priority, 0 when unset.
fn priority(pod: &Pod) -> i32 {
    pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

/// A quantity in nano-units; one that does not parse counts as zero, as the API server
/// never stores such a pod.
fn nanos(q: &Quantity) -> i128 {
    quantity::parse_nano(q).unwrap_or(0)
}

fn container_request<'a>(c: &'a Container, resource: &str) -> Option<&'a Quantity> {
    c.resources.as_ref()?.requests.as_ref()?.get(resource)
}

/// The reference's `PodRequests` for one resource, without the overhead: the containers and
/// sidecars summed, each other init container together with the sidecars started before it,
/// the larger of the two; a pod-level request, where the pod sets one, instead.
pub(crate) fn containers_request(spec: &PodSpec, resource: &str) -> i128 {
    let pod_level = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get(resource));
    if matches!(resource, "cpu" | "memory")
        && let Some(q) = pod_level
    {
        return nanos(q);
    }
    let of = |c: &Container| container_request(c, resource).map_or(0, nanos);
    let mut total: i128 = spec.containers.iter().map(of).sum();
    let mut sidecars: i128 = 0;
    let mut init_peak: i128 = 0;
    for c in spec.init_containers.iter().flatten() {
        let while_running = if c.restart_policy.as_deref() == Some("Always") {
            total += of(c);
            sidecars += of(c);
            sidecars
        } else {
            of(c) + sidecars
        };
        init_peak = init_peak.max(while_running);
    }
    total.max(init_peak)
}

/// The reference's `GetResourceRequestQuantity`, in nano-units: the pod's request plus its
/// overhead when the request is not zero.
pub(crate) fn pod_request(pod: &Pod, resource: &str) -> i128 {
    let Some(spec) = pod.spec.as_ref() else {
        return 0;
    };
    let mut request = containers_request(spec, resource);
    if request != 0
        && let Some(overhead) = spec.overhead.as_ref().and_then(|o| o.get(resource))
    {
        request += nanos(overhead);
    }
    request
}

/// The parts of a pod's disk usage a disk signal measures (the reference's `fsStatsType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FsStatsToMeasure {
    /// Containers' writable layers.
    pub root: bool,
    /// Containers' logs.
    pub logs: bool,
    /// Local volumes (emptyDir on disk, configMap, gitRepo, hostPath).
    pub local_volumes: bool,
}

impl FsStatsToMeasure {
    /// What a disk signal measures: everything on a single filesystem; with a dedicated
    /// image filesystem, nodefs holds logs and volumes and imagefs the writable layers.
    pub fn for_signal(signal: Signal, dedicated_image_fs: bool) -> Self {
        let all = Self {
            root: true,
            logs: true,
            local_volumes: true,
        };
        if !dedicated_image_fs {
            return all;
        }
        match signal {
            Signal::ImageFsAvailable | Signal::ImageFsInodesFree => Self {
                root: true,
                logs: false,
                local_volumes: false,
            },
            _ => Self {
                root: false,
                logs: true,
                local_volumes: true,
            },
        }
    }
}

/// The reference's `localVolumeNames`: hostPath volumes and local ephemeral ones
/// (`IsLocalEphemeralVolume`: gitRepo, emptyDir on the default medium, configMap).
fn is_local_volume(v: &Volume) -> bool {
    v.host_path.is_some()
        || v.git_repo.is_some()
        || v.empty_dir
            .as_ref()
            .is_some_and(|e| e.medium.as_deref().unwrap_or("").is_empty())
        || v.config_map.is_some()
}

/// A pod's disk usage in bytes and inodes over the measured parts (`podDiskUsage`).
fn pod_disk_usage(stats: &PodStats, pod: &Pod, measure: FsStatsToMeasure) -> (i128, i128) {
    let mut bytes: i128 = 0;
    let mut inodes: i128 = 0;
    let mut add = |fs: Option<&FsStats>| {
        if let Some(fs) = fs {
            bytes += i128::from(fs.used_bytes.unwrap_or(0));
            inodes += i128::from(fs.inodes_used.unwrap_or(0));
        }
    };
    for c in &stats.containers {
        if measure.root {
            add(c.rootfs.as_ref());
        }
        if measure.logs {
            add(c.logs.as_ref());
        }
    }
    if measure.local_volumes {
        let volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_ref());
        for v in volumes.into_iter().flatten().filter(|v| is_local_volume(v)) {
            let found = stats.volume.iter().flatten().find(|s| s.name == v.name);
            add(found.map(|s| &s.fs));
        }
    }
    (bytes, inodes)
}

/// How pods are ranked for a signal.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Ranking {
    Memory,
    Pid,
    Disk {
        measure: FsStatsToMeasure,
        inodes: bool,
    },
}

impl Ranking {
    pub fn for_signal(signal: Signal, dedicated_image_fs: bool) -> Self {
        match signal {
            Signal::MemoryAvailable | Signal::AllocatableMemoryAvailable => Ranking::Memory,
            Signal::PidAvailable => Ranking::Pid,
            Signal::NodeFsAvailable
            | Signal::NodeFsInodesFree
            | Signal::ImageFsAvailable
            | Signal::ImageFsInodesFree => Ranking::Disk {
                measure: FsStatsToMeasure::for_signal(signal, dedicated_image_fs),
                inodes: matches!(signal, Signal::NodeFsInodesFree | Signal::ImageFsInodesFree),
            },
        }
    }
}

/// What ranking compares about one pod.
struct Key {
    priority: i32,
    /// `None` without stats: such pods go first, as the reference's comparators put them.
    usage: Option<Usage>,
}

struct Usage {
    /// Usage above the request counts first.
    exceeds: bool,
    /// Then usage less the request, larger first (processes for PIDs).
    above_request: i128,
}

/// `true` before `false`, the reference's `cmpBool`.
fn true_first(a: bool, b: bool) -> Ordering {
    b.cmp(&a)
}

/// The reference's comparator for a usage-based criterion: pods without stats first, then
/// the criterion.
fn by_usage(a: &Key, b: &Key, f: impl Fn(&Usage, &Usage) -> Ordering) -> Ordering {
    match (&a.usage, &b.usage) {
        (Some(x), Some(y)) => f(x, y),
        _ => true_first(a.usage.is_none(), b.usage.is_none()),
    }
}

fn key(ranking: Ranking, pod: &Pod, stats: Option<&PodStats>) -> Key {
    let usage = stats.map(|stats| match ranking {
        Ranking::Memory => {
            let used = i128::from(
                stats
                    .memory
                    .as_ref()
                    .and_then(|m| m.working_set_bytes)
                    .unwrap_or(0),
            ) * NANO;
            let request = pod_request(pod, "memory");
            Usage {
                exceeds: used > request,
                above_request: used - request,
            }
        }
        Ranking::Pid => Usage {
            exceeds: false,
            above_request: i128::from(
                stats
                    .process_stats
                    .as_ref()
                    .and_then(|p| p.process_count)
                    .unwrap_or(0),
            ),
        },
        Ranking::Disk { measure, inodes } => {
            let (bytes, inode_count) = pod_disk_usage(stats, pod, measure);
            let (used, resource) = if inodes {
                (inode_count * NANO, "inodes")
            } else {
                (bytes * NANO, "ephemeral-storage")
            };
            Usage {
                exceeds: used > pod_request(pod, resource),
                // The reference subtracts the ephemeral-storage request for inodes too.
                above_request: used - pod_request(pod, "ephemeral-storage"),
            }
        }
    });
    Key {
        priority: priority(pod),
        usage,
    }
}

/// The pods in eviction order for the ranking, first to evict first. Ties keep the input
/// order.
pub(crate) fn rank<'a>(ranking: Ranking, pods: &[&'a Pod], summary: &Summary) -> Vec<&'a Pod> {
    let mut keyed: Vec<(Key, &Pod)> = pods
        .iter()
        .map(|pod| (key(ranking, pod, pod_stats(summary, pod)), *pod))
        .collect();
    keyed.sort_by(|(a, _), (b, _)| {
        let exceeds = || by_usage(a, b, |x, y| true_first(x.exceeds, y.exceeds));
        let priority = || a.priority.cmp(&b.priority);
        let usage = || by_usage(a, b, |x, y| y.above_request.cmp(&x.above_request));
        match ranking {
            Ranking::Memory | Ranking::Disk { .. } => {
                exceeds().then_with(priority).then_with(usage)
            }
            Ranking::Pid => priority().then_with(usage),
        }
    });
    keyed.into_iter().map(|(_, pod)| pod).collect()
}

/// The summary's stats for the pod, by UID.
pub(crate) fn pod_stats<'a>(summary: &'a Summary, pod: &Pod) -> Option<&'a PodStats> {
    let uid = pod.metadata.uid.as_deref()?;
    summary.pods.iter().find(|p| p.pod_ref.uid == uid)
}

/// The reference's `evictionMessage`: the starved resource, the threshold and what was
/// available, and each container that used more than it requested; with the event
/// annotations (none when the pod has no stats).
pub(crate) fn eviction_message(
    resource: &str,
    threshold_met: Option<(String, String)>,
    pod: &Pod,
    stats: Option<&PodStats>,
) -> (String, BTreeMap<String, String>) {
    let mut annotations = BTreeMap::new();
    let mut message = format!("The node was low on resource: {resource}. ");
    if let Some((quantity, available)) = threshold_met {
        message += &format!("Threshold quantity: {quantity}, available: {available}. ");
    }
    let Some(stats) = stats else {
        return (message, annotations);
    };
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let spec = pod.spec.as_ref();
    if resource == "memory"
        && let Some(request) = spec
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("memory"))
        && let Some(memory) = &stats.memory
    {
        let usage = format_binary_si(int(memory.working_set_bytes.unwrap_or(0)));
        message += &format!(
            "Pod {name} was using {usage}, request is {}, has larger consumption of {resource}. ",
            request.0
        );
        annotations.insert(OFFENDING_POD_KEY.to_string(), name.to_string());
        annotations.insert(OFFENDING_POD_USAGE_KEY.to_string(), usage);
    }
    // Ephemeral containers cannot request resources, so only these are blamed.
    let containers: Vec<&Container> = spec
        .map(|s| {
            s.containers
                .iter()
                .chain(s.init_containers.iter().flatten())
        })
        .into_iter()
        .flatten()
        .collect();
    let mut offending = Vec::new();
    let mut offending_usage = Vec::new();
    for container_stats in &stats.containers {
        let Some(container) = containers.iter().find(|c| c.name == container_stats.name) else {
            continue;
        };
        let usage = match resource {
            "ephemeral-storage" => container_stats
                .rootfs
                .as_ref()
                .and_then(|r| r.used_bytes)
                .zip(container_stats.logs.as_ref().and_then(|l| l.used_bytes))
                .map(|(root, logs)| root.saturating_add(logs)),
            "memory" => container_stats
                .memory
                .as_ref()
                .and_then(|m| m.working_set_bytes),
            _ => None,
        };
        let request = container_request(container, resource);
        let Some(usage) = usage.map(int) else {
            continue;
        };
        if i128::from(usage) * NANO > request.map_or(0, nanos) {
            let usage = format_binary_si(usage);
            let request = request.map_or("0", |q| q.0.as_str());
            message += &format!(
                "Container {} was using {usage}, request is {request}, has larger consumption of {resource}. ",
                container.name
            );
            offending.push(container.name.clone());
            offending_usage.push(usage);
        }
    }
    annotations.insert(OFFENDING_CONTAINERS_KEY.to_string(), offending.join(","));
    annotations.insert(
        OFFENDING_CONTAINERS_USAGE_KEY.to_string(),
        offending_usage.join(","),
    );
    annotations.insert(STARVED_RESOURCE_KEY.to_string(), resource.to_string());
    (message, annotations)
}

fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
