//! One sample of the node: the blocking file reads of a collection, turned into a
//! [`Summary`]. Runs on a blocking thread; every read that fails leaves its field out
//! rather than failing the sample (a container that exits mid-sample loses its cgroup).

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use super::StatsConfig;
use super::cadvisor::{
    CadvisorSample, CgroupCpu, CgroupLabels, CgroupMemoryStats, CgroupStats, FsUsage, MachineInfo,
    NamedDeviceIo,
};
use super::cgroup::{self, CgroupLayout, CgroupMemory, CgroupSpec};
use super::fs::{self, FsInfo};
use super::node::{self, InterfaceCounters, MemInfo};
use super::summary::{
    ContainerStats, CpuStats, FsStats, InterfaceStats, MemoryStats, NetworkStats, NodeStats,
    PodReference, PodStats, ProcessStats, RlimitStats, RuntimeStats, Summary, SwapStats, Time,
    VolumeStats,
};
use crate::runtime::{
    ContainerStats as RuntimeContainerStats, ContainerStatus,
    PodSandboxStats as RuntimeSandboxStats, PodSandboxStatus,
};

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
    /// What the runtime measured of the whole pod (CRI `ListPodSandboxStats`), if it does.
    pub(super) sandbox_stats: Option<RuntimeSandboxStats>,
    pub(super) containers: Vec<(ContainerStatus, Option<RuntimeContainerStats>)>,
    /// Its volumes as their plugins measured them ([`super::VolumeStatsSource`]).
    pub(super) sourced_volumes: Vec<VolumeStats>,
}

/// What one collection leaves for the next.
#[derive(Default)]
pub(super) struct State {
    /// Per measured thing: (sample time, cumulative CPU ns) of the previous collection.
    cpu: HashMap<String, (i64, u64)>,
    /// Per pod UID: when its volumes were measured, and what they measured.
    volumes: HashMap<String, (Instant, Vec<VolumeStats>)>,
    /// Per cgroup: its limits and when they were read (they change rarely: re-read on the
    /// volume period, as cAdvisor reads a container's spec once).
    specs: HashMap<String, (Instant, CgroupSpec)>,
    /// The machine's identifiers, read once.
    machine_ids: Option<(String, String, String)>,
    /// Whether the last collection found a pod without its cgroup or network namespace:
    /// only then is the runtime asked what it measured of the pods (`None`: no collection
    /// yet, ask).
    pub(super) pods_unmeasured: Option<bool>,
}

/// The cAdvisor side of one collection: the cgroups measured so far, and what they need.
struct Cadvisor<'a> {
    layout: &'a CgroupLayout,
    /// The previous collection's specs; the ones used now move to `specs_now`.
    specs: &'a mut HashMap<String, (Instant, CgroupSpec)>,
    specs_now: HashMap<String, (Instant, CgroupSpec)>,
    spec_period: std::time::Duration,
    devices: HashMap<(u32, u32), String>,
    entries: Vec<CgroupStats>,
    /// Set when a pod's cgroup or network namespace was not found.
    pods_unmeasured: bool,
}

/// What the caller already read of a cgroup for the summary.
#[derive(Default)]
struct Measured<'m> {
    cpu_ns: Option<u64>,
    memory: Option<&'m CgroupMemory>,
    processes: Option<u64>,
    threads: Option<u64>,
    network: Vec<InterfaceCounters>,
    fs: Vec<FsUsage>,
}

impl Cadvisor<'_> {
    /// Adds the cgroup at `relative` (`None`: not found; only what was measured otherwise).
    fn add(
        &mut self,
        relative: Option<&str>,
        labels: CgroupLabels,
        start: Time,
        now: Time,
        m: Measured<'_>,
    ) {
        let layout = self.layout;
        let spec = relative.map(|cg| {
            let cached = self
                .specs
                .remove(cg)
                .filter(|(at, _)| at.elapsed() < self.spec_period);
            let (at, spec) = cached.unwrap_or_else(|| (Instant::now(), layout.spec(cg)));
            self.specs_now.insert(cg.to_string(), (at, spec));
            spec
        });
        let cpu = m.cpu_ns.map(|usage_ns| CgroupCpu {
            usage_ns,
            detail: relative
                .and_then(|cg| layout.cpu_detail(cg).ok())
                .unwrap_or_default(),
        });
        let io = relative
            .and_then(|cg| layout.io(cg).ok())
            .unwrap_or_default()
            .into_iter()
            // All-zero rows (devices the cgroup never used) say nothing.
            .filter(|d| {
                [d.read_bytes, d.write_bytes, d.reads, d.writes]
                    .iter()
                    .any(|v| *v > 0)
            })
            .map(|io| NamedDeviceIo {
                device: self
                    .devices
                    .get(&(io.major, io.minor))
                    .cloned()
                    .unwrap_or_else(|| format!("{}:{}", io.major, io.minor)),
                io,
            })
            .collect();
        self.entries.push(CgroupStats {
            labels,
            start_time: start,
            time: now,
            cpu,
            memory: m.memory.map(CgroupMemoryStats::from),
            spec: spec.unwrap_or_default(),
            network: m.network,
            fs: m.fs,
            io,
            processes: m.processes,
            threads: m.threads,
        });
    }
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

/// Filesystems of the node with their devices, for the cAdvisor series.
struct Filesystems {
    root: Option<FsInfo>,
    root_device: String,
    image: Option<FsInfo>,
    image_device: String,
    logs: Option<FsInfo>,
}

impl Filesystems {
    /// The image filesystem as a container's writable layer of `used` bytes uses it.
    fn container_fs(&self, used: Option<u64>) -> Vec<FsUsage> {
        match (used, &self.image) {
            (Some(used), Some(info)) => vec![FsUsage {
                device: self.image_device.clone(),
                usage: used,
                limit: info.capacity,
                inodes: Some(info.inodes),
                inodes_free: Some(info.inodes_free),
            }],
            _ => Vec::new(),
        }
    }
}

/// Takes one sample of the node and `pods`: the summary, and the per-cgroup sample of
/// `/metrics/cadvisor`.
pub(super) fn sample(
    config: &StatsConfig,
    layout: &CgroupLayout,
    pods: Vec<PodInput>,
    images_bytes: Option<u64>,
    state: &mut State,
) -> (Summary, CadvisorSample) {
    let now = Time::now();
    let mut rates = Rates {
        previous: &state.cpu,
        current: HashMap::new(),
    };
    let mountinfo =
        std::fs::read_to_string(config.proc_root.join("self/mountinfo")).unwrap_or_default();
    let device_of = |path: &Path| {
        let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        node::mount_source(&mountinfo, &path).unwrap_or_default()
    };
    let image_path = config.image_fs.as_deref().unwrap_or(&config.root_dir);
    let filesystems = Filesystems {
        root: fs::fs_info(&config.root_dir).ok(),
        root_device: device_of(&config.root_dir),
        image: fs::fs_info(image_path).ok(),
        image_device: device_of(image_path),
        logs: fs::fs_info(&config.pod_logs_root).ok(),
    };
    let mut cad = Cadvisor {
        layout,
        specs: &mut state.specs,
        specs_now: HashMap::new(),
        spec_period: config.volume_stats_period,
        devices: node::block_devices(&config.proc_root),
        entries: Vec::with_capacity(2 + pods.len() * 3),
        pods_unmeasured: false,
    };
    let machine_ids = state
        .machine_ids
        .get_or_insert_with(|| machine_ids(&config.proc_root))
        .clone();
    let (root_fs, image_fs, logs_fs) = (
        filesystems.root.as_ref(),
        filesystems.image.as_ref(),
        filesystems.logs.as_ref(),
    );
    let (node, machine) = node_stats(
        config,
        layout,
        &mut rates,
        now,
        &filesystems,
        images_bytes,
        &mut cad,
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
            (root_fs, image_fs, logs_fs),
            &filesystems,
            &mut cad,
        ));
    }
    state.volumes.retain(|uid, _| live.contains(uid));
    state.cpu = rates.current;
    let entries = std::mem::take(&mut cad.entries);
    let pods_unmeasured = cad.pods_unmeasured;
    state.specs = cad.specs_now;
    state.pods_unmeasured = Some(pods_unmeasured);
    let (boot_id, machine_id, system_uuid) = machine_ids;
    let cadvisor = CadvisorSample {
        time: now,
        machine: MachineInfo {
            boot_id,
            machine_id,
            system_uuid,
            ..machine
        },
        containers: entries,
    };
    (Summary { node, pods: out }, cadvisor)
}

/// The boot ID (from `proc_root`), machine ID and system UUID (from the host's files), blank
/// where unreadable.
fn machine_ids(proc_root: &Path) -> (String, String, String) {
    let read = |p: &Path| {
        std::fs::read_to_string(p)
            .map(|t| t.trim().to_string())
            .unwrap_or_default()
    };
    let machine_id = ["/etc/machine-id", "/var/lib/dbus/machine-id"]
        .iter()
        .map(|p| read(Path::new(p)))
        .find(|id| !id.is_empty())
        .unwrap_or_default();
    (
        read(&proc_root.join("sys/kernel/random/boot_id")),
        machine_id,
        read(Path::new("/sys/class/dmi/id/product_uuid")),
    )
}

fn node_stats(
    config: &StatsConfig,
    layout: &CgroupLayout,
    rates: &mut Rates<'_>,
    now: Time,
    filesystems: &Filesystems,
    images_bytes: Option<u64>,
    cad: &mut Cadvisor<'_>,
) -> (NodeStats, MachineInfo) {
    let (root_fs, image_fs) = (filesystems.root.as_ref(), filesystems.image.as_ref());
    let proc = &config.proc_root;
    let proc_stat = std::fs::read_to_string(proc.join("stat")).unwrap_or_default();
    let meminfo = std::fs::read_to_string(proc.join("meminfo"))
        .ok()
        .map(|t| MemInfo::parse(&t));
    let root_cpu_ns = layout
        .cpu_usage_ns("/")
        .ok()
        .or_else(|| node::proc_stat_cpu_ns(&proc_stat));
    let cpu = root_cpu_ns.map(|usage| rates.cpu("node".to_string(), usage, now));
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
            cache: m.usage().saturating_sub(m.anon),
            ..CgroupMemory::default()
        })
    })
    // The node's available memory is against its capacity, whatever the root's limit.
    .map(|m| CgroupMemory { limit: None, ..m });
    let root_memory = memory;
    let swap = meminfo.map(|m| SwapStats {
        time: now,
        swap_available_bytes: Some(m.swap_free),
        swap_usage_bytes: Some(m.swap_total.saturating_sub(m.swap_free)),
    });
    let memory = memory.map(|m| memory_stats(&m, now, meminfo.map(|i| i.total)));
    let interfaces = node::read_net_dev(proc, "self").ok();
    // cAdvisor leaves the pods' veth ends out of the node's interfaces.
    let root_network: Vec<InterfaceCounters> = interfaces
        .iter()
        .flatten()
        .filter(|i| !i.name.starts_with("veth"))
        .cloned()
        .collect();
    let network = interfaces.map(|i| network_stats(i, now));
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
    let pods_cpu = layout.cpu_usage_ns(&config.pods_cgroup).ok();
    let pods_memory = layout.memory(&config.pods_cgroup).ok();
    let pods_container = ContainerStats {
        name: "pods".to_string(),
        start_time,
        cpu: pods_cpu.map(|u| rates.cpu("system:pods".to_string(), u, now)),
        memory: pods_memory
            .as_ref()
            .map(|m| memory_stats(m, now, meminfo.map(|i| i.total))),
        swap: None,
        rootfs: None,
        logs: None,
    };
    // The configured system daemons' cgroups, as the reference lists them (before `pods`).
    let mut system_containers = Vec::with_capacity(4);
    for (name, cgroup) in [
        ("kubelet", &config.kubelet_cgroup),
        ("runtime", &config.runtime_cgroup),
        ("misc", &config.system_cgroup),
    ] {
        let Some(cgroup) = cgroup.as_deref().filter(|c| !c.is_empty()) else {
            continue;
        };
        system_containers.push(ContainerStats {
            name: name.to_string(),
            start_time,
            cpu: layout
                .cpu_usage_ns(cgroup)
                .ok()
                .map(|u| rates.cpu(format!("system:{name}"), u, now)),
            memory: layout
                .memory(cgroup)
                .ok()
                .map(|m| memory_stats(&m, now, meminfo.map(|i| i.total))),
            ..ContainerStats::default()
        });
    }
    system_containers.push(pods_container);
    // The root cgroup: the node's CPU, memory, interfaces and filesystems.
    let mut root_fs_usage = Vec::new();
    for (info, device) in [
        (root_fs, &filesystems.root_device),
        (image_fs, &filesystems.image_device),
    ] {
        if let Some(info) = info
            && root_fs_usage.iter().all(|f: &FsUsage| &f.device != device)
        {
            root_fs_usage.push(FsUsage {
                device: device.clone(),
                usage: info.capacity.saturating_sub(info.free),
                limit: info.capacity,
                inodes: Some(info.inodes),
                inodes_free: Some(info.inodes_free),
            });
        }
    }
    let root_processes = rlimit.as_ref().and_then(|r| r.curproc).map(|n| n as u64);
    cad.add(
        Some("/"),
        CgroupLabels {
            id: "/".to_string(),
            ..CgroupLabels::default()
        },
        start_time,
        now,
        Measured {
            cpu_ns: root_cpu_ns,
            memory: root_memory.as_ref(),
            processes: root_processes,
            network: root_network,
            fs: root_fs_usage,
            ..Measured::default()
        },
    );
    if pods_cpu.is_some() || pods_memory.is_some() {
        cad.add(
            Some(&config.pods_cgroup),
            CgroupLabels {
                id: config.pods_cgroup.clone(),
                ..CgroupLabels::default()
            },
            start_time,
            now,
            Measured {
                cpu_ns: pods_cpu,
                memory: pods_memory.as_ref(),
                ..Measured::default()
            },
        );
    }
    let machine = MachineInfo {
        cpu_cores: node::proc_stat_cores(&proc_stat),
        memory_bytes: meminfo.map_or(0, |m| m.total),
        ..MachineInfo::default()
    };
    let node = NodeStats {
        node_name: config.node_name.clone(),
        system_containers: Some(system_containers),
        start_time,
        cpu,
        memory,
        swap,
        network,
        fs,
        runtime: image.map(|image| RuntimeStats {
            image_fs: Some(image.clone()),
            container_fs: Some(image),
        }),
        rlimit,
    };
    (node, machine)
}

#[allow(clippy::too_many_arguments)]
fn pod_stats(
    config: &StatsConfig,
    layout: &CgroupLayout,
    rates: &mut Rates<'_>,
    now: Time,
    mut pod: PodInput,
    mut volumes: Vec<VolumeStats>,
    (root_fs, image_fs, logs_fs): (Option<&FsInfo>, Option<&FsInfo>, Option<&FsInfo>),
    filesystems: &Filesystems,
    cad: &mut Cadvisor<'_>,
) -> PodStats {
    let sourced_volumes = std::mem::take(&mut pod.sourced_volumes);
    let meta = &pod.sandbox.metadata;
    let pod_cgroup = cgroup::find_pod_cgroup(layout, &config.pods_cgroup, &meta.uid);
    let log_dir = config
        .pod_logs_root
        .join(format!("{}_{}_{}", meta.namespace, meta.name, meta.uid));
    let labels = |container: &str, id: &str, name: &str, image: &str| CgroupLabels {
        container: container.to_string(),
        id: id.to_string(),
        image: image.to_string(),
        name: name.to_string(),
        namespace: meta.namespace.clone(),
        pod: meta.name.clone(),
    };
    let mut processes: Option<u64> = None;
    let mut threads: Option<u64> = None;
    // The sandbox's cgroup: a process of it to read the pod's network namespace through.
    let sandbox_cg = pod_cgroup
        .as_deref()
        .and_then(|p| cgroup::find_container_cgroup(layout, p, &pod.sandbox.id));
    let sandbox_procs = sandbox_cg.as_deref().and_then(|cg| layout.procs(cg).ok());
    if let Some(procs) = &sandbox_procs {
        *processes.get_or_insert(0) += procs.len() as u64;
    }
    let mut net_pid = sandbox_procs.as_ref().and_then(|p| p.first().copied());
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
        let cg_cpu = cg.as_deref().and_then(|cg| layout.cpu_usage_ns(cg).ok());
        let cpu = match cg_cpu {
            Some(usage) => Some(rates.cpu(key, usage, now)),
            None => runtime_stats
                .as_ref()
                .and_then(|s| s.cpu_usage_core_nanoseconds)
                .map(|usage| rates.cpu(key, usage, runtime_time)),
        };
        let cg_memory = cg.as_deref().and_then(|cg| layout.memory(cg).ok());
        let cg_swap = cg_memory.as_ref().map(|m| m.swap);
        let memory = match &cg_memory {
            Some(m) => Some(memory_stats(m, now, None)),
            None => runtime_stats
                .as_ref()
                .and_then(|s| s.memory_working_set_bytes)
                .map(|ws| MemoryStats {
                    time: runtime_time,
                    working_set_bytes: Some(ws),
                    ..MemoryStats::default()
                }),
        };
        let procs = cg.as_deref().and_then(|cg| layout.procs(cg).ok());
        if let Some(procs) = &procs {
            *processes.get_or_insert(0) += procs.len() as u64;
            if net_pid.is_none() {
                net_pid = procs.first().copied();
            }
        }
        let container_threads = cg.as_deref().and_then(|cg| layout.threads(cg).ok());
        if let Some(t) = container_threads {
            *threads.get_or_insert(0) += t;
        }
        let writable = runtime_stats
            .as_ref()
            .and_then(|s| s.writable_layer_used_bytes);
        let rootfs = writable.map(|used| fs_stats(image_fs, now, Some(used), None));
        let logs = fs::disk_usage(&log_dir.join(&c.metadata.name))
            .ok()
            .map(|u| fs_stats(logs_fs, now, Some(u.bytes), Some(u.inodes)));
        let start_time = Time(c.created_at);
        // cAdvisor's series of the container: what its cgroup says, else what the runtime
        // measured.
        let cad_memory = cg_memory.or_else(|| {
            memory.as_ref().map(|m| CgroupMemory {
                working_set: m.working_set_bytes.unwrap_or(0),
                ..CgroupMemory::default()
            })
        });
        cad.add(
            cg.as_deref(),
            labels(
                &c.metadata.name,
                cg.as_deref().unwrap_or_default(),
                &c.id,
                &c.image,
            ),
            start_time,
            cpu.as_ref().map_or(now, |c| c.time),
            Measured {
                cpu_ns: cpu.as_ref().and_then(|c| c.usage_core_nano_seconds),
                memory: cad_memory.as_ref(),
                processes: procs.map(|p| p.len() as u64),
                threads: container_threads,
                fs: filesystems.container_fs(writable),
                ..Measured::default()
            },
        );
        containers.push(ContainerStats {
            name: c.metadata.name.clone(),
            start_time,
            cpu,
            memory,
            swap: cg_swap.map(|usage| swap_stats(usage, now)),
            rootfs,
            logs,
        });
    }
    containers.sort_by(|a, b| a.name.cmp(&b.name));

    let runtime_pod = pod.sandbox_stats.as_ref();
    let runtime_time = runtime_pod
        .map(|s| s.timestamp)
        .filter(|t| *t > 0)
        .map_or(now, Time);
    // The pod's cgroup when found (it also holds the sandbox), else what the runtime
    // measured of the pod, else the containers' sum.
    let pod_cpu_ns = pod_cgroup
        .as_deref()
        .and_then(|p| layout.cpu_usage_ns(p).ok());
    let pod_key = format!("pod:{}", meta.uid);
    let cpu = match pod_cpu_ns {
        Some(usage) => Some(rates.cpu(pod_key, usage, now)),
        None => match runtime_pod.and_then(|s| s.cpu_usage_core_nanoseconds) {
            Some(usage) => Some(rates.cpu(pod_key, usage, runtime_time)),
            None => sum_cpu(&containers, now),
        },
    };
    let pod_memory = pod_cgroup.as_deref().and_then(|p| layout.memory(p).ok());
    let memory = match &pod_memory {
        Some(m) => Some(memory_stats(m, now, None)),
        None => match runtime_pod.and_then(|s| s.memory_working_set_bytes) {
            Some(ws) => Some(MemoryStats {
                time: runtime_time,
                working_set_bytes: Some(ws),
                usage_bytes: runtime_pod.and_then(|s| s.memory_usage_bytes),
                rss_bytes: runtime_pod.and_then(|s| s.memory_rss_bytes),
                ..MemoryStats::default()
            }),
            None => sum_memory(&containers, now),
        },
    };
    let netns_interfaces =
        net_pid.and_then(|pid| node::read_net_dev(&config.proc_root, &pid.to_string()).ok());
    if pod_cgroup.is_none() || netns_interfaces.is_none() {
        cad.pods_unmeasured = true;
    }
    let interfaces =
        netns_interfaces.or_else(|| runtime_pod.map(|s| runtime_interfaces(&s.network)));
    if processes.is_none() {
        processes = runtime_pod.and_then(|s| s.process_count);
    }
    let start_time = Time(pod.sandbox.created_at);
    // The pod's cgroup (container="" with the pod's labels, as the reference associates it
    // with its pod) and its sandbox, which carries the pod's network.
    if let Some(pod_cg) = pod_cgroup.as_deref() {
        cad.add(
            Some(pod_cg),
            labels("", pod_cg, "", ""),
            start_time,
            now,
            Measured {
                cpu_ns: pod_cpu_ns,
                memory: pod_memory.as_ref(),
                processes,
                threads: threads.map(|t| {
                    t + sandbox_cg
                        .as_deref()
                        .and_then(|cg| layout.threads(cg).ok())
                        .unwrap_or(0)
                }),
                ..Measured::default()
            },
        );
    }
    let sandbox_memory = sandbox_cg.as_deref().and_then(|cg| layout.memory(cg).ok());
    cad.add(
        sandbox_cg.as_deref(),
        labels(
            "",
            sandbox_cg.as_deref().unwrap_or_default(),
            &pod.sandbox.id,
            "",
        ),
        start_time,
        now,
        Measured {
            cpu_ns: sandbox_cg
                .as_deref()
                .and_then(|cg| layout.cpu_usage_ns(cg).ok()),
            memory: sandbox_memory.as_ref(),
            processes: sandbox_procs.map(|p| p.len() as u64),
            threads: sandbox_cg.as_deref().and_then(|cg| layout.threads(cg).ok()),
            network: interfaces.clone().unwrap_or_default(),
            ..Measured::default()
        },
    );
    let network = interfaces.map(|i| network_stats(i, now));
    let ephemeral = ephemeral_storage(&containers, &volumes, root_fs, now);
    // Measured by their plugins: not on the root filesystem, so not ephemeral storage.
    if !sourced_volumes.is_empty() {
        volumes.extend(sourced_volumes);
        volumes.sort_by(|a, b| a.name.cmp(&b.name));
    }
    PodStats {
        pod_ref: PodReference {
            name: meta.name.clone(),
            namespace: meta.namespace.clone(),
            uid: meta.uid.clone(),
        },
        start_time,
        containers,
        cpu,
        memory,
        swap: pod_memory.as_ref().map(|m| swap_stats(m.swap, now)),
        network,
        volume: (!volumes.is_empty()).then_some(volumes),
        ephemeral_storage: Some(ephemeral),
        process_stats: processes.map(|n| ProcessStats {
            process_count: Some(n),
        }),
    }
}

/// The runtime's interface counters in the shape `/proc/<pid>/net/dev` gives.
fn runtime_interfaces(usage: &[crate::runtime::InterfaceUsage]) -> Vec<InterfaceCounters> {
    usage
        .iter()
        .map(|i| InterfaceCounters {
            name: i.name.clone(),
            rx_bytes: i.rx_bytes.unwrap_or(0),
            rx_errors: i.rx_errors.unwrap_or(0),
            tx_bytes: i.tx_bytes.unwrap_or(0),
            tx_errors: i.tx_errors.unwrap_or(0),
            ..InterfaceCounters::default()
        })
        .collect()
}

/// A cgroup's swap in use (its limit is not read: no available bytes).
fn swap_stats(usage: u64, time: Time) -> SwapStats {
    SwapStats {
        time,
        swap_available_bytes: None,
        swap_usage_bytes: Some(usage),
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
