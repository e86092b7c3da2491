//! `/metrics/cadvisor`: per-cgroup series under the names, types, help and labels of the
//! cAdvisor built into the reference kubelet (what the kubernetes-mixin dashboards and alerts
//! query), from a [`CadvisorSample`] taken at housekeeping.
//!
//! As the reference labels them: every `container_*` series has `container`, `id` (the
//! cgroup path), `image`, `name` (the runtime's container ID), `namespace` and `pod`, blank
//! where unknown; the root cgroup `/` and the pods' top cgroup have only `id`; a pod's cgroup
//! has `container=""` with its pod's `namespace` and `pod`; the sandbox (pause) container
//! carries the pod's network series (`interface`), as its network namespace is the pod's.
//! Samples of measured values carry their measurement time; the limits, start time and last
//! seen do not. The encoding is [`super::metrics`]'s.

use super::cgroup::{CgroupSpec, CpuDetail, DeviceIo};
use super::metrics::{Family, Format, encode_families, sample};
use super::node::InterfaceCounters;
use super::summary::{Summary, Time};

/// One housekeeping sample for `/metrics/cadvisor`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CadvisorSample {
    /// When it was taken.
    pub time: Time,
    /// The machine.
    pub machine: MachineInfo,
    /// Every cgroup measured: `/`, the pods' top cgroup, pods, sandboxes and containers.
    pub containers: Vec<CgroupStats>,
}

/// The machine's numbers (`machine_*`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MachineInfo {
    /// Logical CPUs.
    pub cpu_cores: u64,
    /// Installed memory, bytes.
    pub memory_bytes: u64,
    /// `/proc/sys/kernel/random/boot_id`.
    pub boot_id: String,
    /// `/etc/machine-id`.
    pub machine_id: String,
    /// `/sys/class/dmi/id/product_uuid`.
    pub system_uuid: String,
}

/// Who a cgroup belongs to: the label values of its series.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupLabels {
    /// The container's name in the pod spec (blank for pods, sandboxes and the node's).
    pub container: String,
    /// The cgroup path.
    pub id: String,
    /// The container's image.
    pub image: String,
    /// The runtime's container (or sandbox) ID.
    pub name: String,
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub pod: String,
}

/// CPU of a cgroup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CgroupCpu {
    /// Cumulative CPU time, nanoseconds.
    pub usage_ns: u64,
    /// User/system time and throttling, where the cgroup gives them.
    pub detail: CpuDetail,
}

/// Memory of a cgroup, bytes; `None` where unknown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CgroupMemoryStats {
    /// All memory charged, page cache included.
    pub usage: Option<u64>,
    /// Usage less the inactive file cache.
    pub working_set: Option<u64>,
    /// Anonymous memory.
    pub rss: Option<u64>,
    /// Page cache.
    pub cache: Option<u64>,
    /// Swap.
    pub swap: Option<u64>,
    /// Mapped files.
    pub mapped_file: Option<u64>,
    /// Times usage hit the limit.
    pub failcnt: Option<u64>,
}

impl From<&super::cgroup::CgroupMemory> for CgroupMemoryStats {
    fn from(m: &super::cgroup::CgroupMemory) -> Self {
        Self {
            usage: Some(m.usage),
            working_set: Some(m.working_set),
            rss: Some(m.rss),
            cache: Some(m.cache),
            swap: Some(m.swap),
            mapped_file: Some(m.mapped_file),
            failcnt: m.failcnt,
        }
    }
}

/// A filesystem as one cgroup uses it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FsUsage {
    /// The device (`/dev/sda1`, or the mount's source).
    pub device: String,
    /// Bytes used by the cgroup (the node's: by everything).
    pub usage: u64,
    /// The filesystem's size.
    pub limit: u64,
    /// Inodes of the filesystem.
    pub inodes: Option<u64>,
    /// Free inodes of the filesystem.
    pub inodes_free: Option<u64>,
}

/// Block I/O of one device, named.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamedDeviceIo {
    /// `/dev/<name>`, or `major:minor` when not found.
    pub device: String,
    /// The counters.
    pub io: DeviceIo,
}

/// One cgroup's sample.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CgroupStats {
    /// Its labels.
    pub labels: CgroupLabels,
    /// When the container (or pod, or node) started.
    pub start_time: Time,
    /// When measured.
    pub time: Time,
    /// CPU.
    pub cpu: Option<CgroupCpu>,
    /// Memory.
    pub memory: Option<CgroupMemoryStats>,
    /// Limits.
    pub spec: CgroupSpec,
    /// Network interfaces (the sandbox's and the node's).
    pub network: Vec<InterfaceCounters>,
    /// Filesystem usage.
    pub fs: Vec<FsUsage>,
    /// Block I/O.
    pub io: Vec<NamedDeviceIo>,
    /// Processes in it.
    pub processes: Option<u64>,
    /// Threads in it.
    pub threads: Option<u64>,
}

impl CadvisorSample {
    /// What a summary alone tells (for a [`super::StatsProvider`] that measures no cgroups):
    /// the node as `/`, each pod as `/pods/<uid>` and its containers below it, with CPU,
    /// memory, the pod's network and the containers' writable layers.
    pub fn from_summary(summary: &Summary) -> Self {
        let node = &summary.node;
        let mut containers = Vec::with_capacity(1 + summary.pods.len() * 2);
        let memory = |m: &super::summary::MemoryStats| CgroupMemoryStats {
            usage: m.usage_bytes,
            working_set: m.working_set_bytes,
            rss: m.rss_bytes,
            ..CgroupMemoryStats::default()
        };
        let cpu = |c: &super::summary::CpuStats| {
            c.usage_core_nano_seconds.map(|usage_ns| CgroupCpu {
                usage_ns,
                detail: CpuDetail::default(),
            })
        };
        let network = |n: &super::summary::NetworkStats| -> Vec<InterfaceCounters> {
            n.interfaces
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
        };
        let time = node
            .cpu
            .as_ref()
            .map(|c| c.time)
            .or_else(|| node.memory.as_ref().map(|m| m.time))
            .unwrap_or_else(Time::now);
        containers.push(CgroupStats {
            labels: CgroupLabels {
                id: "/".into(),
                ..CgroupLabels::default()
            },
            start_time: node.start_time,
            time,
            cpu: node.cpu.as_ref().and_then(cpu),
            memory: node.memory.as_ref().map(memory),
            network: node.network.as_ref().map(network).unwrap_or_default(),
            ..CgroupStats::default()
        });
        for pod in &summary.pods {
            let pod_id = format!("/pods/{}", pod.pod_ref.uid);
            let labels = |container: &str, id: String| CgroupLabels {
                container: container.to_string(),
                id,
                namespace: pod.pod_ref.namespace.clone(),
                pod: pod.pod_ref.name.clone(),
                ..CgroupLabels::default()
            };
            containers.push(CgroupStats {
                labels: labels("", pod_id.clone()),
                start_time: pod.start_time,
                time,
                cpu: pod.cpu.as_ref().and_then(cpu),
                memory: pod.memory.as_ref().map(memory),
                network: pod.network.as_ref().map(network).unwrap_or_default(),
                processes: pod.process_stats.as_ref().and_then(|p| p.process_count),
                ..CgroupStats::default()
            });
            for c in &pod.containers {
                containers.push(CgroupStats {
                    labels: labels(&c.name, format!("{pod_id}/{}", c.name)),
                    start_time: c.start_time,
                    time: c.cpu.as_ref().map_or(time, |c| c.time),
                    cpu: c.cpu.as_ref().and_then(cpu),
                    memory: c.memory.as_ref().map(memory),
                    fs: c
                        .rootfs
                        .iter()
                        .map(|fs| FsUsage {
                            device: String::new(),
                            usage: fs.used_bytes.unwrap_or(0),
                            limit: fs.capacity_bytes.unwrap_or(0),
                            inodes: fs.inodes,
                            inodes_free: fs.inodes_free,
                        })
                        .collect(),
                    ..CgroupStats::default()
                });
            }
        }
        Self {
            time,
            machine: MachineInfo::default(),
            containers,
        }
    }
}

/// A family under construction.
struct Builder {
    family: Family,
}

impl Builder {
    fn new(name: &'static str, help: &'static str, counter: bool) -> Self {
        Self {
            family: Family {
                name,
                help,
                counter,
                integer: false,
                bare_counter: false,
                samples: Vec::new(),
            },
        }
    }
}

/// The labels of `c`'s series, with `extra` (name, value) in alphabetical place, as the
/// reference's client library sorts them.
fn labels(c: &CgroupLabels, extra: Option<(&'static str, &str)>) -> Vec<(&'static str, String)> {
    let mut out = vec![
        ("container", c.container.clone()),
        ("id", c.id.clone()),
        ("image", c.image.clone()),
        ("name", c.name.clone()),
        ("namespace", c.namespace.clone()),
        ("pod", c.pod.clone()),
    ];
    if let Some((k, v)) = extra {
        let at = out.iter().position(|(n, _)| *n > k).unwrap_or(out.len());
        out.insert(at, (k, v.to_string()));
    }
    out
}

/// Index of each family in the list `families` builds, for the pushes below.
#[derive(Clone, Copy)]
enum F {
    CfsPeriods,
    CfsThrottledPeriods,
    CfsThrottledSeconds,
    CpuSystem,
    CpuUsage,
    CpuUser,
    FsInodesFree,
    FsInodesTotal,
    FsLimit,
    FsReadsBytes,
    FsReads,
    FsUsage,
    FsWritesBytes,
    FsWrites,
    LastSeen,
    MemCache,
    MemFailcnt,
    MemMappedFile,
    MemRss,
    MemSwap,
    MemUsage,
    MemWorkingSet,
    NetRxBytes,
    NetRxErrors,
    NetRxDropped,
    NetRxPackets,
    NetTxBytes,
    NetTxErrors,
    NetTxDropped,
    NetTxPackets,
    Processes,
    ScrapeError,
    SpecCpuPeriod,
    SpecCpuQuota,
    SpecCpuShares,
    SpecMemLimit,
    SpecMemReservation,
    StartTime,
    Threads,
    MachineCores,
    MachineMemory,
}

/// The families, in the order of [`F`] (alphabetical, as the reference writes them).
fn empty_families() -> Vec<Builder> {
    let c = |n, h| Builder::new(n, h, true);
    let g = |n, h| Builder::new(n, h, false);
    let mut failcnt = c(
        "container_memory_failcnt",
        "Number of memory usage hits limits",
    );
    failcnt.family.bare_counter = true;
    let mut scrape = g(
        "container_scrape_error",
        "1 if there was an error while getting container metrics, 0 otherwise",
    );
    scrape.family.integer = true;
    vec![
        c(
            "container_cpu_cfs_periods",
            "Number of elapsed enforcement period intervals.",
        ),
        c(
            "container_cpu_cfs_throttled_periods",
            "Number of throttled period intervals.",
        ),
        c(
            "container_cpu_cfs_throttled_seconds",
            "Total time duration the container has been throttled.",
        ),
        c(
            "container_cpu_system_seconds",
            "Cumulative system cpu time consumed in seconds.",
        ),
        c(
            "container_cpu_usage_seconds",
            "Cumulative cpu time consumed in seconds.",
        ),
        c(
            "container_cpu_user_seconds",
            "Cumulative user cpu time consumed in seconds.",
        ),
        g("container_fs_inodes_free", "Number of available Inodes"),
        g("container_fs_inodes_total", "Number of Inodes"),
        g(
            "container_fs_limit_bytes",
            "Number of bytes that can be consumed by the container on this filesystem.",
        ),
        c("container_fs_reads_bytes", "Cumulative count of bytes read"),
        c("container_fs_reads", "Cumulative count of reads completed"),
        g(
            "container_fs_usage_bytes",
            "Number of bytes that are consumed by the container on this filesystem.",
        ),
        c(
            "container_fs_writes_bytes",
            "Cumulative count of bytes written",
        ),
        c(
            "container_fs_writes",
            "Cumulative count of writes completed",
        ),
        g(
            "container_last_seen",
            "Last time a container was seen by the exporter",
        ),
        g(
            "container_memory_cache",
            "Number of bytes of page cache memory.",
        ),
        failcnt,
        g(
            "container_memory_mapped_file",
            "Size of memory mapped files in bytes.",
        ),
        g("container_memory_rss", "Size of RSS in bytes."),
        g("container_memory_swap", "Container swap usage in bytes."),
        g(
            "container_memory_usage_bytes",
            "Current memory usage in bytes, including all memory regardless of when it was accessed",
        ),
        g(
            "container_memory_working_set_bytes",
            "Current working set in bytes.",
        ),
        c(
            "container_network_receive_bytes",
            "Cumulative count of bytes received",
        ),
        c(
            "container_network_receive_errors",
            "Cumulative count of errors encountered while receiving",
        ),
        c(
            "container_network_receive_packets_dropped",
            "Cumulative count of packets dropped while receiving",
        ),
        c(
            "container_network_receive_packets",
            "Cumulative count of packets received",
        ),
        c(
            "container_network_transmit_bytes",
            "Cumulative count of bytes transmitted",
        ),
        c(
            "container_network_transmit_errors",
            "Cumulative count of errors encountered while transmitting",
        ),
        c(
            "container_network_transmit_packets_dropped",
            "Cumulative count of packets dropped while transmitting",
        ),
        c(
            "container_network_transmit_packets",
            "Cumulative count of packets transmitted",
        ),
        g(
            "container_processes",
            "Number of processes running inside the container.",
        ),
        scrape,
        g("container_spec_cpu_period", "CPU period of the container."),
        g("container_spec_cpu_quota", "CPU quota of the container."),
        g("container_spec_cpu_shares", "CPU share of the container."),
        g(
            "container_spec_memory_limit_bytes",
            "Memory limit for the container.",
        ),
        g(
            "container_spec_memory_reservation_limit_bytes",
            "Memory reservation limit for the container.",
        ),
        g(
            "container_start_time_seconds",
            "Start time of the container since unix epoch in seconds.",
        ),
        g(
            "container_threads",
            "Number of threads running inside the container",
        ),
        g("machine_cpu_cores", "Number of logical CPU cores."),
        g(
            "machine_memory_bytes",
            "Amount of memory installed on the machine.",
        ),
    ]
}

/// The families of `sample` (`None`: it could not be had, `container_scrape_error` 1).
fn families(sample_: Option<&CadvisorSample>) -> Vec<Family> {
    let mut fams = empty_families();
    let mut push = |f: F, labels: Vec<(&'static str, String)>, value: f64, at: Option<Time>| {
        fams[f as usize]
            .family
            .samples
            .push(sample(labels, value, at));
    };
    let failed = sample_.is_none();
    push(F::ScrapeError, vec![], if failed { 1.0 } else { 0.0 }, None);
    if let Some(s) = sample_ {
        let m = &s.machine;
        let machine = || {
            vec![
                ("boot_id", m.boot_id.clone()),
                ("machine_id", m.machine_id.clone()),
                ("system_uuid", m.system_uuid.clone()),
            ]
        };
        push(F::MachineCores, machine(), m.cpu_cores as f64, None);
        push(F::MachineMemory, machine(), m.memory_bytes as f64, None);
        for c in &s.containers {
            container_samples(c, s.time, &mut push);
        }
    }
    fams.into_iter().map(|b| b.family).collect()
}

/// The samples of one cgroup.
fn container_samples(
    c: &CgroupStats,
    now: Time,
    push: &mut impl FnMut(F, Vec<(&'static str, String)>, f64, Option<Time>),
) {
    let l = &c.labels;
    let at = Some(c.time);
    let base = || labels(l, None);
    let secs = |ns: u64| ns as f64 / 1e9;
    if let Some(cpu) = &c.cpu {
        push(
            F::CpuUsage,
            labels(l, Some(("cpu", "total"))),
            secs(cpu.usage_ns),
            at,
        );
        if let Some(user) = cpu.detail.user_ns {
            push(F::CpuUser, base(), secs(user), at);
        }
        if let Some(system) = cpu.detail.system_ns {
            push(F::CpuSystem, base(), secs(system), at);
        }
        // As cAdvisor: the CFS counters only where a quota is set.
        if let (Some(t), Some(_)) = (cpu.detail.throttling, c.spec.cpu_quota) {
            push(F::CfsPeriods, base(), t.periods as f64, at);
            push(
                F::CfsThrottledPeriods,
                base(),
                t.throttled_periods as f64,
                at,
            );
            push(F::CfsThrottledSeconds, base(), secs(t.throttled_ns), at);
        }
    }
    if let Some(m) = &c.memory {
        for (f, v) in [
            (F::MemCache, m.cache),
            (F::MemRss, m.rss),
            (F::MemMappedFile, m.mapped_file),
            (F::MemSwap, m.swap),
            (F::MemFailcnt, m.failcnt),
            (F::MemUsage, m.usage),
            (F::MemWorkingSet, m.working_set),
        ] {
            if let Some(v) = v {
                push(f, base(), v as f64, at);
            }
        }
    }
    for i in &c.network {
        let nl = || labels(l, Some(("interface", &i.name)));
        push(F::NetRxBytes, nl(), i.rx_bytes as f64, at);
        push(F::NetRxErrors, nl(), i.rx_errors as f64, at);
        push(F::NetRxDropped, nl(), i.rx_dropped as f64, at);
        push(F::NetRxPackets, nl(), i.rx_packets as f64, at);
        push(F::NetTxBytes, nl(), i.tx_bytes as f64, at);
        push(F::NetTxErrors, nl(), i.tx_errors as f64, at);
        push(F::NetTxDropped, nl(), i.tx_dropped as f64, at);
        push(F::NetTxPackets, nl(), i.tx_packets as f64, at);
    }
    for fs in &c.fs {
        let dl = || labels(l, Some(("device", &fs.device)));
        push(F::FsUsage, dl(), fs.usage as f64, at);
        push(F::FsLimit, dl(), fs.limit as f64, at);
        if let Some(v) = fs.inodes {
            push(F::FsInodesTotal, dl(), v as f64, at);
        }
        if let Some(v) = fs.inodes_free {
            push(F::FsInodesFree, dl(), v as f64, at);
        }
    }
    for d in &c.io {
        let dl = || labels(l, Some(("device", &d.device)));
        push(F::FsReadsBytes, dl(), d.io.read_bytes as f64, at);
        push(F::FsReads, dl(), d.io.reads as f64, at);
        push(F::FsWritesBytes, dl(), d.io.write_bytes as f64, at);
        push(F::FsWrites, dl(), d.io.writes as f64, at);
    }
    if let Some(p) = c.processes {
        push(F::Processes, base(), p as f64, at);
    }
    if let Some(t) = c.threads {
        push(F::Threads, base(), t as f64, at);
    }
    let spec = &c.spec;
    if let Some(v) = spec.cpu_shares {
        push(F::SpecCpuShares, base(), v as f64, None);
    }
    if let Some(v) = spec.cpu_period {
        push(F::SpecCpuPeriod, base(), v as f64, None);
    }
    if let Some(v) = spec.cpu_quota {
        push(F::SpecCpuQuota, base(), v as f64, None);
    }
    if c.memory.is_some() {
        // 0: unlimited, as cAdvisor writes it.
        push(
            F::SpecMemLimit,
            base(),
            spec.memory_limit.unwrap_or(0) as f64,
            None,
        );
        push(
            F::SpecMemReservation,
            base(),
            spec.memory_reservation.unwrap_or(0) as f64,
            None,
        );
    }
    if c.start_time.0 > 0 {
        push(F::StartTime, base(), c.start_time.as_secs_f64(), None);
    }
    push(F::LastSeen, base(), now.as_secs_f64().floor(), None);
}

/// The `/metrics/cadvisor` exposition of `sample` in `format` (`None`: collection failed,
/// only `container_scrape_error` 1 is written).
pub fn encode_cadvisor_metrics(sample: Option<&CadvisorSample>, format: Format) -> String {
    encode_families(families(sample), format)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::cgroup::Throttling;

    fn canned() -> CadvisorSample {
        let t = Time(1_700_000_000_123_000_000);
        let pod_labels = |container: &str, id: &str, name: &str, image: &str| CgroupLabels {
            container: container.into(),
            id: id.into(),
            image: image.into(),
            name: name.into(),
            namespace: "default".into(),
            pod: "web".into(),
        };
        CadvisorSample {
            time: t,
            machine: MachineInfo {
                cpu_cores: 2,
                memory_bytes: 4 << 30,
                boot_id: "b".into(),
                machine_id: "m".into(),
                system_uuid: "s".into(),
            },
            containers: vec![
                CgroupStats {
                    labels: CgroupLabels {
                        id: "/".into(),
                        ..Default::default()
                    },
                    start_time: Time(1_699_000_000_000_000_000),
                    time: t,
                    cpu: Some(CgroupCpu {
                        usage_ns: 9_000_000_000,
                        detail: CpuDetail::default(),
                    }),
                    fs: vec![FsUsage {
                        device: "/dev/sda1".into(),
                        usage: 1000,
                        limit: 5000,
                        inodes: Some(100),
                        inodes_free: Some(40),
                    }],
                    ..Default::default()
                },
                CgroupStats {
                    labels: pod_labels("", "/kubepods/podu", "", ""),
                    time: t,
                    memory: Some(CgroupMemoryStats {
                        working_set: Some(70_000_000),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                CgroupStats {
                    labels: pod_labels("", "/kubepods/podu/sb", "sb", ""),
                    time: t,
                    network: vec![InterfaceCounters {
                        name: "eth0".into(),
                        rx_bytes: 1000,
                        rx_packets: 10,
                        tx_bytes: 2000,
                        tx_packets: 20,
                        ..Default::default()
                    }],
                    ..Default::default()
                },
                CgroupStats {
                    labels: pod_labels("app", "/kubepods/podu/c1", "c1", "busybox:local"),
                    start_time: Time(1_699_999_000_000_000_000),
                    time: t,
                    cpu: Some(CgroupCpu {
                        usage_ns: 2_500_000_000,
                        detail: CpuDetail {
                            user_ns: Some(2_000_000_000),
                            system_ns: Some(500_000_000),
                            throttling: Some(Throttling {
                                periods: 10,
                                throttled_periods: 3,
                                throttled_ns: 1_500_000_000,
                            }),
                        },
                    }),
                    memory: Some(CgroupMemoryStats {
                        usage: Some(68 << 20),
                        working_set: Some(64 << 20),
                        rss: Some(60 << 20),
                        cache: Some(8 << 20),
                        swap: Some(0),
                        mapped_file: Some(4096),
                        failcnt: Some(7),
                    }),
                    spec: CgroupSpec {
                        cpu_shares: Some(512),
                        cpu_quota: Some(50_000),
                        cpu_period: Some(100_000),
                        memory_limit: Some(128 << 20),
                        memory_reservation: None,
                    },
                    io: vec![NamedDeviceIo {
                        device: "/dev/sda".into(),
                        io: DeviceIo {
                            major: 8,
                            minor: 0,
                            read_bytes: 4096,
                            write_bytes: 8192,
                            reads: 1,
                            writes: 2,
                        },
                    }],
                    processes: Some(2),
                    threads: Some(3),
                    ..Default::default()
                },
            ],
        }
    }

    const APP: &str = "container=\"app\",id=\"/kubepods/podu/c1\",image=\"busybox:local\",name=\"c1\",namespace=\"default\",pod=\"web\"";

    #[test]
    fn text_exposition_names_types_labels_as_cadvisor() {
        let text = encode_cadvisor_metrics(Some(&canned()), Format::Text);
        for expected in [
            "# TYPE container_cpu_usage_seconds_total counter".to_string(),
            "# HELP container_cpu_usage_seconds_total Cumulative cpu time consumed in seconds."
                .into(),
            "container_cpu_usage_seconds_total{container=\"app\",cpu=\"total\",id=\"/kubepods/podu/c1\",image=\"busybox:local\",name=\"c1\",namespace=\"default\",pod=\"web\"} 2.5 1700000000123".into(),
            "container_cpu_usage_seconds_total{container=\"\",cpu=\"total\",id=\"/\",image=\"\",name=\"\",namespace=\"\",pod=\"\"} 9.0 1700000000123".into(),
            format!("container_cpu_user_seconds_total{{{APP}}} 2.0 1700000000123"),
            format!("container_cpu_system_seconds_total{{{APP}}} 0.5 1700000000123"),
            format!("container_cpu_cfs_periods_total{{{APP}}} 10.0 1700000000123"),
            format!("container_cpu_cfs_throttled_periods_total{{{APP}}} 3.0 1700000000123"),
            format!("container_cpu_cfs_throttled_seconds_total{{{APP}}} 1.5 1700000000123"),
            "# TYPE container_memory_working_set_bytes gauge".into(),
            format!("container_memory_working_set_bytes{{{APP}}} 67108864.0 1700000000123"),
            format!("container_memory_rss{{{APP}}} 62914560.0 1700000000123"),
            format!("container_memory_cache{{{APP}}} 8388608.0 1700000000123"),
            format!("container_memory_usage_bytes{{{APP}}} 71303168.0 1700000000123"),
            format!("container_memory_swap{{{APP}}} 0.0 1700000000123"),
            "# TYPE container_memory_failcnt counter".into(),
            format!("container_memory_failcnt{{{APP}}} 7.0 1700000000123"),
            "container_memory_working_set_bytes{container=\"\",id=\"/kubepods/podu\",image=\"\",name=\"\",namespace=\"default\",pod=\"web\"} 70000000.0 1700000000123".into(),
            "# TYPE container_network_receive_bytes_total counter".into(),
            "container_network_receive_bytes_total{container=\"\",id=\"/kubepods/podu/sb\",image=\"\",interface=\"eth0\",name=\"sb\",namespace=\"default\",pod=\"web\"} 1000.0 1700000000123".into(),
            "container_network_transmit_packets_total{container=\"\",id=\"/kubepods/podu/sb\",image=\"\",interface=\"eth0\",name=\"sb\",namespace=\"default\",pod=\"web\"} 20.0 1700000000123".into(),
            "container_fs_usage_bytes{container=\"\",device=\"/dev/sda1\",id=\"/\",image=\"\",name=\"\",namespace=\"\",pod=\"\"} 1000.0 1700000000123".into(),
            "container_fs_limit_bytes{container=\"\",device=\"/dev/sda1\",id=\"/\",image=\"\",name=\"\",namespace=\"\",pod=\"\"} 5000.0 1700000000123".into(),
            "container_fs_reads_bytes_total{container=\"app\",device=\"/dev/sda\",id=\"/kubepods/podu/c1\",image=\"busybox:local\",name=\"c1\",namespace=\"default\",pod=\"web\"} 4096.0 1700000000123".into(),
            "container_fs_writes_bytes_total{container=\"app\",device=\"/dev/sda\",id=\"/kubepods/podu/c1\",image=\"busybox:local\",name=\"c1\",namespace=\"default\",pod=\"web\"} 8192.0 1700000000123".into(),
            format!("container_spec_memory_limit_bytes{{{APP}}} 134217728.0"),
            format!("container_spec_cpu_shares{{{APP}}} 512.0"),
            format!("container_spec_cpu_quota{{{APP}}} 50000.0"),
            format!("container_spec_cpu_period{{{APP}}} 100000.0"),
            format!("container_start_time_seconds{{{APP}}} 1699999000.0"),
            format!("container_last_seen{{{APP}}} 1700000000.0"),
            format!("container_processes{{{APP}}} 2.0 1700000000123"),
            format!("container_threads{{{APP}}} 3.0 1700000000123"),
            "machine_cpu_cores{boot_id=\"b\",machine_id=\"m\",system_uuid=\"s\"} 2.0".into(),
            "machine_memory_bytes{boot_id=\"b\",machine_id=\"m\",system_uuid=\"s\"} 4294967296.0"
                .into(),
            "container_scrape_error 0".into(),
        ] {
            assert!(
                text.lines().any(|l| l == expected),
                "missing {expected:?} in\n{text}"
            );
        }
        // No CFS series without a quota (the root), no EOF in the text format, one TYPE per
        // family.
        assert!(!text.contains("container_cpu_cfs_periods_total{container=\"\",id=\"/\""));
        assert!(!text.contains("# EOF"));
        let types = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
        assert_eq!(types, empty_families().len(), "{text}");
    }

    #[test]
    fn openmetrics_suffixes_every_counter_and_failure_is_a_scrape_error() {
        let om = encode_cadvisor_metrics(Some(&canned()), Format::OpenMetrics);
        assert!(om.ends_with("# EOF\n"), "{om}");
        assert!(
            om.contains("# TYPE container_memory_failcnt counter\n"),
            "{om}"
        );
        assert!(
            om.contains(&format!(
                "container_memory_failcnt_total{{{APP}}} 7.0 1700000000.123\n"
            )),
            "{om}"
        );
        let failed = encode_cadvisor_metrics(None, Format::Text);
        assert!(
            failed.lines().any(|l| l == "container_scrape_error 1"),
            "{failed}"
        );
        assert!(!failed.contains("container_cpu_usage_seconds_total{"));
    }

    #[test]
    fn from_a_summary_for_providers_without_cgroups() {
        use crate::stats::summary::{
            ContainerStats, CpuStats, MemoryStats, NodeStats, PodReference, PodStats,
        };
        let t = Time(1_700_000_000_000_000_000);
        let summary = Summary {
            node: NodeStats {
                cpu: Some(CpuStats {
                    time: t,
                    usage_nano_cores: None,
                    usage_core_nano_seconds: Some(5),
                }),
                ..Default::default()
            },
            pods: vec![PodStats {
                pod_ref: PodReference {
                    name: "web".into(),
                    namespace: "ns".into(),
                    uid: "u".into(),
                },
                containers: vec![ContainerStats {
                    name: "app".into(),
                    memory: Some(MemoryStats {
                        time: t,
                        working_set_bytes: Some(42),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let s = CadvisorSample::from_summary(&summary);
        let text = encode_cadvisor_metrics(Some(&s), Format::Text);
        assert!(
            text.contains("container_memory_working_set_bytes{container=\"app\",id=\"/pods/u/app\",image=\"\",name=\"\",namespace=\"ns\",pod=\"web\"} 42.0"),
            "{text}"
        );
        assert!(
            !text.contains("container_memory_cache{container=\"app\""),
            "unknown values are left out: {text}"
        );
    }
}
