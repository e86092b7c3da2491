//! A cgroup's CPU and memory, read from the cgroup filesystem (v1 and v2), as cAdvisor reads
//! them for the reference kubelet.
//!
//! - CPU: v1 `cpuacct.usage` (nanoseconds); v2 `cpu.stat` `usage_usec` (microseconds).
//! - Memory: v1 `memory.usage_in_bytes` and `memory.stat` (the hierarchical `total_*`
//!   counters); v2 `memory.current` and `memory.stat`. The working set is the usage less
//!   the inactive file cache (`total_inactive_file` / `inactive_file`), never below zero, as
//!   the reference computes it; RSS is `total_rss` (v1) or `anon` (v2); page faults are
//!   `pgfault` / `pgmajfault`.

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
        /// The `memory` hierarchy.
        memory: PathBuf,
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
        Self::V1 {
            cpuacct,
            memory: fs_root.join("memory"),
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
            Self::V1 { cpuacct, memory } => match controller {
                Controller::Cpu => cpuacct.join(relative),
                Controller::Memory => memory.join(relative),
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
        let dir = self.dir(relative, Controller::Cpu);
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
                Ok(memory_v1(usage, &stat, limit))
            }
            Self::V2 { .. } => {
                let usage = parse_u64(&std::fs::read_to_string(dir.join("memory.current"))?)?;
                let stat = std::fs::read_to_string(dir.join("memory.stat"))?;
                let limit = std::fs::read_to_string(dir.join("memory.max"))
                    .ok()
                    .and_then(|t| parse_u64(&t).ok());
                Ok(memory_v2(usage, &stat, limit))
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Controller {
    Cpu,
    Memory,
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
        write(&mem, "cgroup.procs", "42\n43\n");
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
            }
        );
        assert_eq!(layout.procs(pod).expect("procs"), [42, 43]);
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
    }

    #[test]
    fn working_set_never_below_zero_and_max_is_unlimited() {
        let m = memory_v2(100, "inactive_file 4096\n", Some(u64::MAX));
        assert_eq!((m.working_set, m.limit), (0, None));
        assert_eq!(parse_u64("max\n").expect("max"), u64::MAX);
        assert!(parse_u64("x").is_err());
    }
}
