//! One sample of the node: the blocking file reads of a collection, turned into a
//! [`Summary`]. Runs on a blocking thread; every read that fails leaves its field out
//! rather than failing the sample (a container that exits mid-sample loses its cgroup).

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use super::StatsConfig;
use super::cgroup::{self, CgroupLayout, CgroupMemory};
use super::fs::{self, FsInfo};
use super::node::{self, InterfaceCounters, MemInfo};
use super::summary::{
    ContainerStats, CpuStats, FsStats, InterfaceStats, MemoryStats, NetworkStats, NodeStats,
    PodReference, PodStats, ProcessStats, RlimitStats, RuntimeStats, Summary, Time, VolumeStats,
};
use crate::runtime::{ContainerStats as RuntimeContainerStats, ContainerStatus, PodSandboxStatus};

/// The interface the reference reports inline in `network` (`defaultNetworkInterfaceName`).
const DEFAULT_INTERFACE: &str = "eth0";
/// The volume plugins whose directories under `<root>/pods/<uid>/volumes` live on the
/// node and are measured by walking them, as the reference's `MetricsDu` volumes.
const MEASURED_VOLUME_DIRS: [&str; 5] = [
    "kubernetes.io~empty-dir",
    "kubernetes.io~configmap",
    "kubernetes.io~secret",
    "kubernetes.io~projected",
    "kubernetes.io~downward-api",
];

/// A pod as the runtime lists it: its ready sandbox and its running containers, each with
/// what the runtime measured of it.
pub(super) struct PodInput {
    pub(super) sandbox: PodSandboxStatus,
    pub(super) containers: Vec<(ContainerStatus, Option<RuntimeContainerStats>)>,
}

/// What one collection leaves for the next.
#[derive(Default)]
pub(super) struct State {
    /// Per measured thing: (sample time, cumulative CPU ns) of the previous collection.
    cpu: HashMap<String, (i64, u64)>,
    /// Per pod UID: when its volumes were measured, and what they measured.
    volumes: HashMap<String, (Instant, Vec<VolumeStats>)>,
}

/// CPU samples of this collection, rated against the previous one's.
struct Rates<'a> {
    previous: &'a HashMap<String, (i64, u64)>,
    current: HashMap<String, (i64, u64)>,
}

impl Rates<'_> {
    /// The CPU stats of `key` from its cumulative usage at `at`: nanocores from the previous
    /// sample when there is one and the counter did not go back (a new container under a
    /// reused key).
    fn cpu(&mut self, key: String, usage_ns: u64, at: Time) -> CpuStats {
        let nano_cores = self.previous.get(&key).and_then(|&(t, u)| {
            let elapsed = at.0.checked_sub(t).filter(|e| *e > 0)?;
            let used = usage_ns.checked_sub(u)?;
            Some((u128::from(used) * 1_000_000_000 / elapsed as u128) as u64)
        });
        self.current.insert(key, (at.0, usage_ns));
        CpuStats {
            time: at,
            usage_nano_cores: nano_cores,
            usage_core_nano_seconds: Some(usage_ns),
        }
    }
}

fn memory_stats(m: &CgroupMemory, time: Time, capacity: Option<u64>) -> MemoryStats {
    MemoryStats {
        time,
        available_bytes: m
            .limit
            .or(capacity)
            .map(|l| l.saturating_sub(m.working_set)),
        usage_bytes: Some(m.usage),
        working_set_bytes: Some(m.working_set),
        rss_bytes: Some(m.rss),
        page_faults: Some(m.page_faults),
        major_page_faults: Some(m.major_page_faults),
    }
}

/// A filesystem's numbers with `used` (bytes, inodes) of the thing measured on it.
fn fs_stats(
    info: Option<&FsInfo>,
    time: Time,
    used: Option<u64>,
    inodes_used: Option<u64>,
) -> FsStats {
    FsStats {
        time,
        available_bytes: info.map(|i| i.available),
        capacity_bytes: info.map(|i| i.capacity),
        used_bytes: used,
        inodes_free: info.map(|i| i.inodes_free),
        inodes: info.map(|i| i.inodes),
        inodes_used,
    }
}

fn network_stats(interfaces: Vec<InterfaceCounters>, time: Time) -> NetworkStats {
    let interfaces: Vec<InterfaceStats> = interfaces
        .into_iter()
        .map(|i| InterfaceStats {
            name: i.name,
            rx_bytes: Some(i.rx_bytes),
            rx_errors: Some(i.rx_errors),
            tx_bytes: Some(i.tx_bytes),
            tx_errors: Some(i.tx_errors),
        })
        .collect();
    NetworkStats {
        time,
        default_interface: interfaces
            .iter()
            .find(|i| i.name == DEFAULT_INTERFACE)
            .cloned()
            .unwrap_or_default(),
        interfaces,
    }
}

/// Takes one sample of the node and `pods`.
pub(super) fn sample(
    config: &StatsConfig,
    layout: &CgroupLayout,
    pods: Vec<PodInput>,
    images_bytes: Option<u64>,
    state: &mut State,
) -> Summary {
    let now = Time::now();
    let mut rates = Rates {
        previous: &state.cpu,
        current: HashMap::new(),
    };
    let root_fs = fs::fs_info(&config.root_dir).ok();
    let image_fs = fs::fs_info(config.image_fs.as_deref().unwrap_or(&config.root_dir)).ok();
    let logs_fs = fs::fs_info(&config.pod_logs_root).ok();
    let node = node_stats(
        config,
        layout,
        &mut rates,
        now,
        root_fs.as_ref(),
        image_fs.as_ref(),
        images_bytes,
    );

    let mut live = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(pods.len());
    for pod in pods {
        let uid = pod.sandbox.metadata.uid.clone();
        let _span = tracing::debug_span!("pod stats", pod = %pod.sandbox.metadata.name, namespace = %pod.sandbox.metadata.namespace, %uid).entered();
        let volumes = match state.volumes.get(&uid) {
            Some((at, v)) if at.elapsed() < config.volume_stats_period => v.clone(),
            _ => {
                let v = volume_stats(&config.root_dir.join("pods").join(&uid), now);
                state
                    .volumes
                    .insert(uid.clone(), (Instant::now(), v.clone()));
                v
            }
        };
        live.insert(uid);
        out.push(pod_stats(
            config,
            layout,
            &mut rates,
            now,
            pod,
            volumes,
            (root_fs.as_ref(), image_fs.as_ref(), logs_fs.as_ref()),
        ));
    }
    state.volumes.retain(|uid, _| live.contains(uid));
    state.cpu = rates.current;
    Summary { node, pods: out }
}

fn node_stats(
    config: &StatsConfig,
    layout: &CgroupLayout,
    rates: &mut Rates<'_>,
    now: Time,
    root_fs: Option<&FsInfo>,
    image_fs: Option<&FsInfo>,
    images_bytes: Option<u64>,
) -> NodeStats {
    let proc = &config.proc_root;
    let proc_stat = std::fs::read_to_string(proc.join("stat")).unwrap_or_default();
    let meminfo = std::fs::read_to_string(proc.join("meminfo"))
        .ok()
        .map(|t| MemInfo::parse(&t));
    let cpu = layout
        .cpu_usage_ns("/")
        .ok()
        .or_else(|| node::proc_stat_cpu_ns(&proc_stat))
        .map(|usage| rates.cpu("node".to_string(), usage, now));
    // The root cgroup of v1 has the node's memory; v2's root has no memory.current, so
    // /proc/meminfo and /proc/vmstat stand in, as runc does for it.
    let memory = match layout {
        CgroupLayout::V1 { .. } => layout.memory("/").ok(),
        CgroupLayout::V2 { .. } => None,
    }
    .or_else(|| {
        let m = meminfo?;
        let vmstat = std::fs::read_to_string(proc.join("vmstat")).unwrap_or_default();
        Some(CgroupMemory {
            usage: m.usage(),
            working_set: m.working_set(),
            rss: m.anon,
            page_faults: cgroup::flat_keyed(&vmstat, "pgfault").unwrap_or(0),
            major_page_faults: cgroup::flat_keyed(&vmstat, "pgmajfault").unwrap_or(0),
            limit: None,
        })
    })
    // The node's available memory is against its capacity, whatever the root's limit.
    .map(|m| {
        let m = CgroupMemory { limit: None, ..m };
        memory_stats(&m, now, meminfo.map(|i| i.total))
    });
    let network = node::read_net_dev(proc, "self")
        .ok()
        .map(|i| network_stats(i, now));
    let fs = root_fs.map(|i| {
        fs_stats(
            Some(i),
            now,
            Some(i.capacity.saturating_sub(i.free)),
            Some(i.inodes.saturating_sub(i.inodes_free)),
        )
    });
    let image = image_fs.map(|i| fs_stats(Some(i), now, images_bytes, None));
    let rlimit = node::pid_counts(proc)
        .ok()
        .map(|(max, running)| RlimitStats {
            time: now,
            maxpid: Some(max),
            curproc: Some(running),
        });
    let start_time = node::proc_stat_boot_time(&proc_stat)
        .map(|s| Time(s.saturating_mul(1_000_000_000)))
        .unwrap_or_default();
    let pods_container = ContainerStats {
        name: "pods".to_string(),
        start_time,
        cpu: layout
            .cpu_usage_ns(&config.pods_cgroup)
            .ok()
            .map(|u| rates.cpu("system:pods".to_string(), u, now)),
        memory: layout
            .memory(&config.pods_cgroup)
            .ok()
            .map(|m| memory_stats(&m, now, meminfo.map(|i| i.total))),
        rootfs: None,
        logs: None,
    };
    NodeStats {
        node_name: config.node_name.clone(),
        system_containers: Some(vec![pods_container]),
        start_time,
        cpu,
        memory,
        network,
        fs,
        runtime: image.map(|image| RuntimeStats {
            image_fs: Some(image.clone()),
            container_fs: Some(image),
        }),
        rlimit,
    }
}

fn pod_stats(
    config: &StatsConfig,
    layout: &CgroupLayout,
    rates: &mut Rates<'_>,
    now: Time,
    pod: PodInput,
    volumes: Vec<VolumeStats>,
    (root_fs, image_fs, logs_fs): (Option<&FsInfo>, Option<&FsInfo>, Option<&FsInfo>),
) -> PodStats {
    let meta = &pod.sandbox.metadata;
    let pod_cgroup = cgroup::find_pod_cgroup(layout, &config.pods_cgroup, &meta.uid);
    let log_dir = config
        .pod_logs_root
        .join(format!("{}_{}_{}", meta.namespace, meta.name, meta.uid));
    let mut processes: Option<u64> = None;
    // A process of the pod, to read its network namespace: the sandbox's first.
    let mut net_pid = pod_cgroup
        .as_deref()
        .and_then(|p| cgroup::find_container_cgroup(layout, p, &pod.sandbox.id))
        .and_then(|cg| layout.procs(&cg).ok())
        .and_then(|procs| {
            *processes.get_or_insert(0) += procs.len() as u64;
            procs.first().copied()
        });
    let mut containers = Vec::with_capacity(pod.containers.len());
    for (c, runtime_stats) in pod.containers {
        let _span = tracing::trace_span!("container stats", container = %c.metadata.name).entered();
        let cg = pod_cgroup
            .as_deref()
            .and_then(|p| cgroup::find_container_cgroup(layout, p, &c.id));
        let key = format!("container:{}", c.id);
        let runtime_time = runtime_stats
            .as_ref()
            .map(|s| s.timestamp)
            .filter(|t| *t > 0)
            .map_or(now, Time);
        let cpu = match cg.as_deref().and_then(|cg| layout.cpu_usage_ns(cg).ok()) {
            Some(usage) => Some(rates.cpu(key, usage, now)),
            None => runtime_stats
                .as_ref()
                .and_then(|s| s.cpu_usage_core_nanoseconds)
                .map(|usage| rates.cpu(key, usage, runtime_time)),
        };
        let memory = match cg.as_deref().and_then(|cg| layout.memory(cg).ok()) {
            Some(m) => Some(memory_stats(&m, now, None)),
            None => runtime_stats
                .as_ref()
                .and_then(|s| s.memory_working_set_bytes)
                .map(|ws| MemoryStats {
                    time: runtime_time,
                    working_set_bytes: Some(ws),
                    ..MemoryStats::default()
                }),
        };
        if let Some(procs) = cg.as_deref().and_then(|cg| layout.procs(cg).ok()) {
            *processes.get_or_insert(0) += procs.len() as u64;
            if net_pid.is_none() {
                net_pid = procs.first().copied();
            }
        }
        let rootfs = runtime_stats
            .as_ref()
            .and_then(|s| s.writable_layer_used_bytes)
            .map(|used| fs_stats(image_fs, now, Some(used), None));
        let logs = fs::disk_usage(&log_dir.join(&c.metadata.name))
            .ok()
            .map(|u| fs_stats(logs_fs, now, Some(u.bytes), Some(u.inodes)));
        containers.push(ContainerStats {
            name: c.metadata.name.clone(),
            start_time: Time(c.created_at),
            cpu,
            memory,
            rootfs,
            logs,
        });
    }
    containers.sort_by(|a, b| a.name.cmp(&b.name));

    // The pod's cgroup when found (it also holds the sandbox), else the containers' sum.
    let cpu = match pod_cgroup
        .as_deref()
        .and_then(|p| layout.cpu_usage_ns(p).ok())
    {
        Some(usage) => Some(rates.cpu(format!("pod:{}", meta.uid), usage, now)),
        None => sum_cpu(&containers, now),
    };
    let memory = match pod_cgroup.as_deref().and_then(|p| layout.memory(p).ok()) {
        Some(m) => Some(memory_stats(&m, now, None)),
        None => sum_memory(&containers, now),
    };
    let network = net_pid
        .and_then(|pid| node::read_net_dev(&config.proc_root, &pid.to_string()).ok())
        .map(|i| network_stats(i, now));
    let ephemeral = ephemeral_storage(&containers, &volumes, root_fs, now);
    PodStats {
        pod_ref: PodReference {
            name: meta.name.clone(),
            namespace: meta.namespace.clone(),
            uid: meta.uid.clone(),
        },
        start_time: Time(pod.sandbox.created_at),
        containers,
        cpu,
        memory,
        network,
        volume: (!volumes.is_empty()).then_some(volumes),
        ephemeral_storage: Some(ephemeral),
        process_stats: processes.map(|n| ProcessStats {
            process_count: Some(n),
        }),
    }
}

fn sum_cpu(containers: &[ContainerStats], now: Time) -> Option<CpuStats> {
    let cpus: Vec<&CpuStats> = containers.iter().filter_map(|c| c.cpu.as_ref()).collect();
    if cpus.is_empty() {
        return None;
    }
    Some(CpuStats {
        time: now,
        usage_nano_cores: cpus.iter().map(|c| c.usage_nano_cores).sum(),
        usage_core_nano_seconds: cpus.iter().map(|c| c.usage_core_nano_seconds).sum(),
    })
}

fn sum_memory(containers: &[ContainerStats], now: Time) -> Option<MemoryStats> {
    let mems: Vec<&MemoryStats> = containers
        .iter()
        .filter_map(|c| c.memory.as_ref())
        .collect();
    if mems.is_empty() {
        return None;
    }
    Some(MemoryStats {
        time: now,
        working_set_bytes: mems.iter().map(|m| m.working_set_bytes).sum(),
        usage_bytes: mems.iter().map(|m| m.usage_bytes).sum(),
        rss_bytes: mems.iter().map(|m| m.rss_bytes).sum(),
        ..MemoryStats::default()
    })
}

/// The pod's local storage: writable layers, logs and the measured volumes, on the root
/// filesystem's numbers (the reference's `calcEphemeralStorage`).
fn ephemeral_storage(
    containers: &[ContainerStats],
    volumes: &[VolumeStats],
    root_fs: Option<&FsInfo>,
    now: Time,
) -> FsStats {
    let mut used = 0u64;
    let mut inodes = 0u64;
    for c in containers {
        for fs in [&c.rootfs, &c.logs].into_iter().flatten() {
            used += fs.used_bytes.unwrap_or(0);
            inodes += fs.inodes_used.unwrap_or(0);
        }
    }
    for v in volumes {
        used += v.fs.used_bytes.unwrap_or(0);
        inodes += v.fs.inodes_used.unwrap_or(0);
    }
    fs_stats(root_fs, now, Some(used), Some(inodes))
}

/// The pod's volumes in the measured plugins' directories, by name.
fn volume_stats(pod_dir: &Path, now: Time) -> Vec<VolumeStats> {
    let mut out = Vec::new();
    for plugin in MEASURED_VOLUME_DIRS {
        let Ok(entries) = std::fs::read_dir(pod_dir.join("volumes").join(plugin)) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(usage) = fs::disk_usage(&path) else {
                continue;
            };
            let info = fs::fs_info(&path).ok();
            out.push(VolumeStats {
                fs: fs_stats(info.as_ref(), now, Some(usage.bytes), Some(usage.inodes)),
                name: entry.file_name().to_string_lossy().into_owned(),
                pvc_ref: None,
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}
