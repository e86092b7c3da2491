//! A cgroup's CPU and memory, read from the cgroup filesystem (v1 and v2), as cAdvisor reads
//! them for the reference kubelet.
//!
//! - CPU: v1 `cpuacct.usage` (nanoseconds); v2 `cpu.stat` `usage_usec` (microseconds).
//! - Memory: v1 `memory.usage_in_bytes` and `memory.stat` (the hierarchical `total_*`
//!   counters); v2 `memory.current` and `memory.stat`. The working set is the usage less
//!   the inactive file cache (`total_inactive_file` / `inactive_file`), never below zero, as
//!   the reference computes it; RSS is `total_rss` (v1) or `anon` (v2); page faults are
//!   `pgfault` / `pgmajfault`.
//! - For `/metrics/cadvisor` also: user/system CPU and CFS throttling (`cpuacct.stat`,
//!   `cpu.stat`), the limits (`cpu.shares`/`cpu.weight`, the CFS quota and period, the
//!   memory limit and soft limit), block I/O (`blkio.throttle.*_recursive` / `io.stat`) and
//!   the threads (`tasks` / `cgroup.threads`).

use std::io;
use std::path::{Path, PathBuf};

/// A limit at or above this is "no limit" (v1 writes `PAGE_COUNTER_MAX` pages, about 2^63).
const UNLIMITED: u64 = 1 << 62;

/// Which cgroup layout the node has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupLayout {
    /// cgroups v1: one hierarchy per controller (a cgroup2 `unified` mount beside them holds
    /// no controllers and is ignored).
    V1 {
        /// The `cpuacct` hierarchy (e.g. `/sys/fs/cgroup/cpuacct`).
        cpuacct: PathBuf,
        /// The `cpu` hierarchy (often the same mount as `cpuacct`).
        cpu: PathBuf,
        /// The `memory` hierarchy.
        memory: PathBuf,
        /// The `blkio` hierarchy.
        blkio: PathBuf,
    },
    /// cgroups v2: one unified hierarchy.
    V2 {
        /// Its mount point (e.g. `/sys/fs/cgroup`).
        root: PathBuf,
    },
}

impl CgroupLayout {
    /// The layout under `fs_root` (normally `/sys/fs/cgroup`): v2 when the root itself has
    /// `cgroup.controllers`, else v1 with `cpuacct` (or `cpu,cpuacct`) and `memory`.
    pub fn detect(fs_root: &Path) -> Self {
        if fs_root.join("cgroup.controllers").is_file() {
            return Self::V2 {
                root: fs_root.to_path_buf(),
            };
        }
        let cpuacct = ["cpuacct", "cpu,cpuacct", "cpuacct,cpu"]
            .iter()
            .map(|name| fs_root.join(name))
            .find(|p| p.join("cpuacct.usage").is_file())
            .unwrap_or_else(|| fs_root.join("cpuacct"));
        let cpu = ["cpu", "cpu,cpuacct", "cpuacct,cpu"]
            .iter()
            .map(|name| fs_root.join(name))
            .find(|p| p.join("cpu.shares").is_file())
            .unwrap_or_else(|| fs_root.join("cpu"));
        Self::V1 {
            cpuacct,
            cpu,
            memory: fs_root.join("memory"),
            blkio: fs_root.join("blkio"),
        }
    }

    /// Whether the cgroup at `relative` (e.g. `/kubepods/pod<uid>`) exists.
    pub fn exists(&self, relative: &str) -> bool {
        self.dir(relative, Controller::Memory).is_dir()
    }

    /// The cgroup's directory for a controller.
    fn dir(&self, relative: &str, controller: Controller) -> PathBuf {
        let relative = relative.trim_start_matches('/');
        match self {
            Self::V1 {
                cpuacct,
                cpu,
                memory,
                blkio,
            } => match controller {
                Controller::Cpuacct => cpuacct.join(relative),
                Controller::Cpu => cpu.join(relative),
                Controller::Memory => memory.join(relative),
                Controller::Blkio => blkio.join(relative),
            },
            Self::V2 { root } => root.join(relative),
        }
    }

    /// The process IDs in the cgroup at `relative` (`cgroup.procs`).
    pub fn procs(&self, relative: &str) -> io::Result<Vec<u32>> {
        let text =
            std::fs::read_to_string(self.dir(relative, Controller::Memory).join("cgroup.procs"))?;
        Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
    }

    /// The cgroup's cumulative CPU time in nanoseconds.
    pub fn cpu_usage_ns(&self, relative: &str) -> io::Result<u64> {
        let dir = self.dir(relative, Controller::Cpuacct);
        match self {
            Self::V1 { .. } => parse_u64(&std::fs::read_to_string(dir.join("cpuacct.usage"))?),
            Self::V2 { .. } => {
                let stat = std::fs::read_to_string(dir.join("cpu.stat"))?;
                flat_keyed(&stat, "usage_usec")
                    .map(|us| us.saturating_mul(1000))
                    .ok_or_else(|| invalid("cpu.stat without usage_usec"))
            }
        }
    }

    /// The cgroup's memory. The root cgroup of v2 has no `memory.current`: the node's memory
    /// comes from `/proc/meminfo` there (see [`super::node`]).
    pub fn memory(&self, relative: &str) -> io::Result<CgroupMemory> {
        let dir = self.dir(relative, Controller::Memory);
        match self {
            Self::V1 { .. } => {
                let usage =
                    parse_u64(&std::fs::read_to_string(dir.join("memory.usage_in_bytes"))?)?;
                let stat = std::fs::read_to_string(dir.join("memory.stat"))?;
                let limit = std::fs::read_to_string(dir.join("memory.limit_in_bytes"))
                    .ok()
                    .and_then(|t| parse_u64(&t).ok());
                let mut m = memory_v1(usage, &stat, limit);
                m.failcnt = std::fs::read_to_string(dir.join("memory.failcnt"))
                    .ok()
                    .and_then(|t| parse_u64(&t).ok());
                Ok(m)
            }
            Self::V2 { .. } => {
                let usage = parse_u64(&std::fs::read_to_string(dir.join("memory.current"))?)?;
                let stat = std::fs::read_to_string(dir.join("memory.stat"))?;
                let limit = std::fs::read_to_string(dir.join("memory.max"))
                    .ok()
                    .and_then(|t| parse_u64(&t).ok());
                let mut m = memory_v2(usage, &stat, limit);
                // v2 keeps swap apart from the memory counters.
                m.swap = std::fs::read_to_string(dir.join("memory.swap.current"))
                    .ok()
                    .and_then(|t| parse_u64(&t).ok())
                    .unwrap_or(0);
                Ok(m)
            }
        }
    }

    /// User and system CPU time and CFS throttling, for `/metrics/cadvisor`.
    pub fn cpu_detail(&self, relative: &str) -> io::Result<CpuDetail> {
        match self {
            Self::V1 { .. } => {
                let acct = std::fs::read_to_string(
                    self.dir(relative, Controller::Cpuacct).join("cpuacct.stat"),
                )?;
                // cpuacct.stat counts USER_HZ ticks.
                let tick = |key| flat_keyed(&acct, key).map(|t| t.saturating_mul(10_000_000));
                let stat =
                    std::fs::read_to_string(self.dir(relative, Controller::Cpu).join("cpu.stat"))
                        .unwrap_or_default();
                Ok(CpuDetail {
                    user_ns: tick("user"),
                    system_ns: tick("system"),
                    throttling: throttling(&stat, "throttled_time", 1),
                })
            }
            Self::V2 { .. } => {
                let stat =
                    std::fs::read_to_string(self.dir(relative, Controller::Cpu).join("cpu.stat"))?;
                let us = |key| flat_keyed(&stat, key).map(|v| v.saturating_mul(1000));
                Ok(CpuDetail {
                    user_ns: us("user_usec"),
                    system_ns: us("system_usec"),
                    throttling: throttling(&stat, "throttled_usec", 1000),
                })
            }
        }
    }

    /// The cgroup's limits (what cAdvisor calls its spec). Missing files leave their field
    /// out.
    pub fn spec(&self, relative: &str) -> CgroupSpec {
        let read = |controller, file: &str| {
            std::fs::read_to_string(self.dir(relative, controller).join(file)).ok()
        };
        let number =
            |controller, file: &str| read(controller, file).and_then(|t| parse_u64(&t).ok());
        match self {
            Self::V1 { .. } => CgroupSpec {
                cpu_shares: number(Controller::Cpu, "cpu.shares"),
                // -1: no quota.
                cpu_quota: read(Controller::Cpu, "cpu.cfs_quota_us")
                    .and_then(|t| t.trim().parse::<i64>().ok())
                    .and_then(|q| u64::try_from(q).ok()),
                cpu_period: number(Controller::Cpu, "cpu.cfs_period_us"),
                memory_limit: number(Controller::Memory, "memory.limit_in_bytes")
                    .filter(|l| *l < UNLIMITED),
                memory_reservation: number(Controller::Memory, "memory.soft_limit_in_bytes")
                    .filter(|l| *l < UNLIMITED),
            },
            Self::V2 { .. } => {
                // cpu.max: "<quota|max> <period>".
                let max = read(Controller::Cpu, "cpu.max").unwrap_or_default();
                let mut parts = max.split_whitespace();
                let quota = parts.next().and_then(|q| q.parse().ok());
                let period = parts.next().and_then(|p| p.parse().ok());
                CgroupSpec {
                    cpu_shares: number(Controller::Cpu, "cpu.weight").map(weight_to_shares),
                    cpu_quota: quota,
                    cpu_period: period,
                    memory_limit: number(Controller::Memory, "memory.max")
                        .filter(|l| *l < UNLIMITED),
                    memory_reservation: number(Controller::Memory, "memory.low")
                        .filter(|l| *l < UNLIMITED && *l > 0),
                }
            }
        }
    }

    /// Block I/O per device (`major:minor`), recursive over the cgroup's descendants.
    pub fn io(&self, relative: &str) -> io::Result<Vec<DeviceIo>> {
        match self {
            Self::V1 { .. } => {
                let dir = self.dir(relative, Controller::Blkio);
                let bytes =
                    std::fs::read_to_string(dir.join("blkio.throttle.io_service_bytes_recursive"))?;
                let ops = std::fs::read_to_string(dir.join("blkio.throttle.io_serviced_recursive"))
                    .unwrap_or_default();
                Ok(parse_blkio_v1(&bytes, &ops))
            }
            Self::V2 { .. } => {
                let stat = std::fs::read_to_string(
                    self.dir(relative, Controller::Memory).join("io.stat"),
                )?;
                Ok(parse_io_stat_v2(&stat))
            }
        }
    }

    /// How many threads run in the cgroup itself (`tasks` / `cgroup.threads`).
    pub fn threads(&self, relative: &str) -> io::Result<u64> {
        let file = match self {
            Self::V1 { .. } => "tasks",
            Self::V2 { .. } => "cgroup.threads",
        };
        let text = std::fs::read_to_string(self.dir(relative, Controller::Memory).join(file))?;
        Ok(text.lines().filter(|l| !l.trim().is_empty()).count() as u64)
    }
}

/// cgroup v2's `cpu.weight` (1..10000) as v1 shares (2..262144), as the runtimes map them.
fn weight_to_shares(weight: u64) -> u64 {
    2 + (weight.clamp(1, 10_000) - 1) * 262_142 / 9_999
}

/// CFS throttling from a `cpu.stat`, its throttled time in `unit` nanoseconds under `key`.
fn throttling(stat: &str, key: &str, unit: u64) -> Option<Throttling> {
    Some(Throttling {
        periods: flat_keyed(stat, "nr_periods")?,
        throttled_periods: flat_keyed(stat, "nr_throttled")?,
        throttled_ns: flat_keyed(stat, key)?.saturating_mul(unit),
    })
}

/// v1 `blkio.throttle.io_service_bytes_recursive` and `..._io_serviced_recursive`
/// (`<major>:<minor> <Read|Write|...> <n>` lines and a `Total` line).
pub fn parse_blkio_v1(bytes: &str, ops: &str) -> Vec<DeviceIo> {
    let mut devices: Vec<DeviceIo> = Vec::new();
    for (text, is_bytes) in [(bytes, true), (ops, false)] {
        for line in text.lines() {
            let mut f = line.split_whitespace();
            let (Some(dev), Some(op), Some(value)) = (f.next(), f.next(), f.next()) else {
                continue;
            };
            let (Some((major, minor)), Ok(value)) = (parse_dev(dev), value.parse::<u64>()) else {
                continue;
            };
            let entry = match devices
                .iter()
                .position(|d| (d.major, d.minor) == (major, minor))
            {
                Some(i) => &mut devices[i],
                None => {
                    devices.push(DeviceIo {
                        major,
                        minor,
                        ..DeviceIo::default()
                    });
                    let last = devices.len() - 1;
                    &mut devices[last]
                }
            };
            match (op, is_bytes) {
                ("Read", true) => entry.read_bytes = value,
                ("Write", true) => entry.write_bytes = value,
                ("Read", false) => entry.reads = value,
                ("Write", false) => entry.writes = value,
                _ => {}
            }
        }
    }
    devices
}

/// v2 `io.stat` (`<major>:<minor> rbytes=.. wbytes=.. rios=.. wios=..` lines).
pub fn parse_io_stat_v2(text: &str) -> Vec<DeviceIo> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let (major, minor) = parse_dev(f.next()?)?;
            let mut d = DeviceIo {
                major,
                minor,
                ..DeviceIo::default()
            };
            for kv in f {
                let Some((k, v)) = kv.split_once('=') else {
                    continue;
                };
                let v = v.parse().unwrap_or(0);
                match k {
                    "rbytes" => d.read_bytes = v,
                    "wbytes" => d.write_bytes = v,
                    "rios" => d.reads = v,
                    "wios" => d.writes = v,
                    _ => {}
                }
            }
            Some(d)
        })
        .collect()
}

fn parse_dev(dev: &str) -> Option<(u32, u32)> {
    let (major, minor) = dev.split_once(':')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

#[derive(Clone, Copy)]
enum Controller {
    Cpuacct,
    Cpu,
    Memory,
    Blkio,
}

/// User and system CPU time and CFS throttling of a cgroup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuDetail {
    /// CPU time in user mode, nanoseconds.
    pub user_ns: Option<u64>,
    /// CPU time in kernel mode, nanoseconds.
    pub system_ns: Option<u64>,
    /// CFS bandwidth control counters.
    pub throttling: Option<Throttling>,
}

/// CFS bandwidth control counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Throttling {
    /// Enforcement periods elapsed.
    pub periods: u64,
    /// Periods in which the cgroup was throttled.
    pub throttled_periods: u64,
    /// Time throttled, nanoseconds.
    pub throttled_ns: u64,
}

/// A cgroup's limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CgroupSpec {
    /// CPU shares (v2's weight converted).
    pub cpu_shares: Option<u64>,
    /// CFS quota in microseconds per period; `None`: no quota.
    pub cpu_quota: Option<u64>,
    /// CFS period in microseconds.
    pub cpu_period: Option<u64>,
    /// Memory limit in bytes; `None`: unlimited.
    pub memory_limit: Option<u64>,
    /// Memory soft limit (v2 `memory.low`) in bytes.
    pub memory_reservation: Option<u64>,
}

/// Block I/O of one device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceIo {
    /// Device major number.
    pub major: u32,
    /// Device minor number.
    pub minor: u32,
    /// Bytes read.
    pub read_bytes: u64,
    /// Bytes written.
    pub write_bytes: u64,
    /// Reads completed.
    pub reads: u64,
    /// Writes completed.
    pub writes: u64,
}

/// A cgroup's memory, in bytes (page faults in counts).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CgroupMemory {
    /// All memory charged to the cgroup, page cache included.
    pub usage: u64,
    /// Usage less the inactive file cache: what the reference calls the working set.
    pub working_set: u64,
    /// Anonymous memory and swap cache.
    pub rss: u64,
    /// Page faults.
    pub page_faults: u64,
    /// Major page faults.
    pub major_page_faults: u64,
    /// The memory limit, when the cgroup has one.
    pub limit: Option<u64>,
    /// Page cache (`total_cache` / `file`).
    pub cache: u64,
    /// Swap in use (`total_swap` / `memory.swap.current`).
    pub swap: u64,
    /// Memory-mapped files (`total_mapped_file` / `file_mapped`).
    pub mapped_file: u64,
    /// How often usage hit the limit (v1 `memory.failcnt`; v2 has none).
    pub failcnt: Option<u64>,
}

/// Memory of a v1 cgroup from its usage, `memory.stat` text and limit.
pub fn memory_v1(usage: u64, stat: &str, limit: Option<u64>) -> CgroupMemory {
    let inactive_file = flat_keyed(stat, "total_inactive_file").unwrap_or(0);
    CgroupMemory {
        usage,
        working_set: usage.saturating_sub(inactive_file),
        rss: flat_keyed(stat, "total_rss").unwrap_or(0),
        page_faults: flat_keyed(stat, "total_pgfault").unwrap_or(0),
        major_page_faults: flat_keyed(stat, "total_pgmajfault").unwrap_or(0),
        limit: limit.filter(|l| *l < UNLIMITED),
        cache: flat_keyed(stat, "total_cache").unwrap_or(0),
        swap: flat_keyed(stat, "total_swap").unwrap_or(0),
        mapped_file: flat_keyed(stat, "total_mapped_file").unwrap_or(0),
        failcnt: None,
    }
}

/// Memory of a v2 cgroup from its usage, `memory.stat` text and limit.
pub fn memory_v2(usage: u64, stat: &str, limit: Option<u64>) -> CgroupMemory {
    let inactive_file = flat_keyed(stat, "inactive_file").unwrap_or(0);
    CgroupMemory {
        usage,
        working_set: usage.saturating_sub(inactive_file),
        rss: flat_keyed(stat, "anon").unwrap_or(0),
        page_faults: flat_keyed(stat, "pgfault").unwrap_or(0),
        major_page_faults: flat_keyed(stat, "pgmajfault").unwrap_or(0),
        limit: limit.filter(|l| *l < UNLIMITED),
        cache: flat_keyed(stat, "file").unwrap_or(0),
        swap: 0,
        mapped_file: flat_keyed(stat, "file_mapped").unwrap_or(0),
        failcnt: None,
    }
}

/// The value of `key` in a flat keyed file (`key value` lines: `memory.stat`, `cpu.stat`).
pub fn flat_keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok())?
    })
}

/// A single number (`max` of v2 reads as unlimited).
fn parse_u64(text: &str) -> io::Result<u64> {
    let text = text.trim();
    if text == "max" {
        return Ok(u64::MAX);
    }
    text.parse()
        .map_err(|e| invalid(&format!("not a number {text:?}: {e}")))
}

fn invalid(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.to_string())
}

/// The cgroup (relative to the hierarchy root) of the pod with `uid`, among the places the
/// cgroupfs and systemd drivers put it under `pods_cgroup` (`/kubepods`, or
/// `/kubepods.slice` with systemd): the first that exists.
pub fn find_pod_cgroup(layout: &CgroupLayout, pods_cgroup: &str, uid: &str) -> Option<String> {
    let root = pods_cgroup.trim_end_matches('/');
    let systemd_uid = uid.replace('-', "_");
    let candidates = [
        format!("{root}/pod{uid}"),
        format!("{root}/burstable/pod{uid}"),
        format!("{root}/besteffort/pod{uid}"),
        format!("{root}/kubepods-pod{systemd_uid}.slice"),
        format!("{root}/kubepods-burstable.slice/kubepods-burstable-pod{systemd_uid}.slice"),
        format!("{root}/kubepods-besteffort.slice/kubepods-besteffort-pod{systemd_uid}.slice"),
    ];
    candidates.into_iter().find(|c| layout.exists(c))
}

/// The cgroup of container `id` inside its pod's cgroup: `<pod>/<id>` (cgroupfs driver) or
/// the systemd driver's scope of containerd, CRI-O or docker.
pub fn find_container_cgroup(layout: &CgroupLayout, pod_cgroup: &str, id: &str) -> Option<String> {
    [
        format!("{pod_cgroup}/{id}"),
        format!("{pod_cgroup}/cri-containerd-{id}.scope"),
        format!("{pod_cgroup}/crio-{id}.scope"),
        format!("{pod_cgroup}/docker-{id}.scope"),
    ]
    .into_iter()
    .find(|c| layout.exists(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT_V1: &str = "cache 4096\nrss 1000\ntotal_cache 8192\ntotal_rss 67108864\n\
        total_pgfault 17000\ntotal_pgmajfault 3\ninactive_file 1\ntotal_inactive_file 4096\n";
    const STAT_V2: &str = "anon 67108864\nfile 8192\ninactive_file 4096\nactive_file 4096\n\
        pgfault 17000\npgmajfault 3\n";

    fn write(dir: &Path, file: &str, text: &str) {
        std::fs::create_dir_all(dir).expect("mkdir");
        std::fs::write(dir.join(file), text).expect("write fixture");
    }

    #[test]
    fn v1_layout_reads_cpu_and_memory() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path();
        let pod = "kubepods/burstable/podabc";
        write(
            &root.join("cpu,cpuacct").join(pod),
            "cpuacct.usage",
            "123456789\n",
        );
        let mem = root.join("memory").join(pod);
        write(&mem, "memory.usage_in_bytes", "67125248\n");
        write(&mem, "memory.stat", STAT_V1);
        write(&mem, "memory.limit_in_bytes", "9223372036854771712\n");
        write(&mem, "memory.failcnt", "2\n");
        write(&mem, "cgroup.procs", "42\n43\n");
        write(&mem, "tasks", "42\n43\n44\n");
        write(&mem, "memory.soft_limit_in_bytes", "9223372036854771712\n");
        let cpu = root.join("cpu,cpuacct").join(pod);
        write(&cpu, "cpuacct.stat", "user 150\nsystem 50\n");
        write(
            &cpu,
            "cpu.stat",
            "nr_periods 10\nnr_throttled 3\nthrottled_time 7000\n",
        );
        write(&cpu, "cpu.shares", "512\n");
        write(&cpu, "cpu.cfs_quota_us", "50000\n");
        write(&cpu, "cpu.cfs_period_us", "100000\n");
        write(&root.join("cpu,cpuacct"), "cpu.shares", "1024\n");
        write(
            &root.join("blkio").join(pod),
            "blkio.throttle.io_service_bytes_recursive",
            "8:0 Read 4096\n8:0 Write 8192\n8:0 Total 12288\nTotal 12288\n",
        );
        write(
            &root.join("blkio").join(pod),
            "blkio.throttle.io_serviced_recursive",
            "8:0 Read 1\n8:0 Write 2\nTotal 3\n",
        );
        write(&root.join("unified"), "cgroup.procs", "");
        // A real hierarchy's root has the file too: it tells `cpu,cpuacct` apart.
        write(&root.join("cpu,cpuacct"), "cpuacct.usage", "999\n");

        let layout = CgroupLayout::detect(root);
        assert!(matches!(layout, CgroupLayout::V1 { .. }), "{layout:?}");
        assert_eq!(
            find_pod_cgroup(&layout, "/kubepods", "abc").as_deref(),
            Some("/kubepods/burstable/podabc")
        );
        assert_eq!(find_pod_cgroup(&layout, "/kubepods", "nope"), None);
        assert_eq!(layout.cpu_usage_ns(pod).expect("cpu"), 123_456_789);
        let m = layout.memory(pod).expect("memory");
        assert_eq!(
            m,
            CgroupMemory {
                usage: 67_125_248,
                working_set: 67_125_248 - 4096,
                rss: 67_108_864,
                page_faults: 17_000,
                major_page_faults: 3,
                limit: None,
                cache: 8192,
                swap: 0,
                mapped_file: 0,
                failcnt: Some(2),
            }
        );
        assert_eq!(layout.procs(pod).expect("procs"), [42, 43]);
        assert_eq!(layout.threads(pod).expect("threads"), 3);
        assert_eq!(
            layout.cpu_detail(pod).expect("cpu detail"),
            CpuDetail {
                user_ns: Some(1_500_000_000),
                system_ns: Some(500_000_000),
                throttling: Some(Throttling {
                    periods: 10,
                    throttled_periods: 3,
                    throttled_ns: 7000,
                }),
            }
        );
        assert_eq!(
            layout.spec(pod),
            CgroupSpec {
                cpu_shares: Some(512),
                cpu_quota: Some(50_000),
                cpu_period: Some(100_000),
                memory_limit: None,
                memory_reservation: None,
            }
        );
        assert_eq!(
            layout.io(pod).expect("io"),
            [DeviceIo {
                major: 8,
                minor: 0,
                read_bytes: 4096,
                write_bytes: 8192,
                reads: 1,
                writes: 2,
            }]
        );
    }

    #[test]
    fn v2_layout_reads_cpu_and_memory() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path();
        write(root, "cgroup.controllers", "cpu memory\n");
        let ctr = root.join("kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-poda_b.slice/cri-containerd-c1.scope");
        write(
            &ctr,
            "cpu.stat",
            "usage_usec 2500\nuser_usec 2000\nsystem_usec 500\n",
        );
        write(&ctr, "memory.current", "67125248\n");
        write(&ctr, "memory.stat", STAT_V2);
        write(&ctr, "memory.max", "134217728\n");
        write(&ctr, "memory.swap.current", "4096\n");
        write(&ctr, "cpu.max", "max 100000\n");
        write(&ctr, "cpu.weight", "100\n");
        write(
            &ctr,
            "io.stat",
            "8:16 rbytes=10 wbytes=20 rios=1 wios=2 dbytes=0 dios=0\n",
        );

        let layout = CgroupLayout::detect(root);
        assert!(matches!(layout, CgroupLayout::V2 { .. }), "{layout:?}");
        let pod = find_pod_cgroup(&layout, "/kubepods.slice", "a-b").expect("pod cgroup");
        let ctr = find_container_cgroup(&layout, &pod, "c1").expect("container cgroup");
        assert!(ctr.ends_with("cri-containerd-c1.scope"), "{ctr}");
        assert_eq!(layout.cpu_usage_ns(&ctr).expect("cpu"), 2_500_000);
        let m = layout.memory(&ctr).expect("memory");
        assert_eq!(m.working_set, 67_125_248 - 4096);
        assert_eq!(m.rss, 67_108_864);
        assert_eq!((m.page_faults, m.major_page_faults), (17_000, 3));
        assert_eq!(m.limit, Some(134_217_728));
        assert_eq!((m.cache, m.swap, m.failcnt), (8192, 4096, None));
        let d = layout.cpu_detail(&ctr).expect("cpu detail");
        assert_eq!((d.user_ns, d.system_ns), (Some(2_000_000), Some(500_000)));
        assert_eq!(d.throttling, None, "no nr_periods in this cpu.stat");
        let spec = layout.spec(&ctr);
        assert_eq!(
            (spec.cpu_shares, spec.cpu_quota, spec.cpu_period),
            (Some(2 + 99 * 262_142 / 9_999), None, Some(100_000))
        );
        assert_eq!(spec.memory_limit, Some(134_217_728));
        let io = layout.io(&ctr).expect("io");
        assert_eq!(
            (io[0].major, io[0].minor, io[0].read_bytes, io[0].writes),
            (8, 16, 10, 2)
        );
    }

    #[test]
    fn working_set_never_below_zero_and_max_is_unlimited() {
        let m = memory_v2(100, "inactive_file 4096\n", Some(u64::MAX));
        assert_eq!((m.working_set, m.limit), (0, None));
        assert_eq!(parse_u64("max\n").expect("max"), u64::MAX);
        assert!(parse_u64("x").is_err());
    }
}
