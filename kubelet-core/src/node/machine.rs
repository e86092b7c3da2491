//! The machine's facts as the reference reads them (through cadvisor): CPUs, memory, the
//! root filesystem's size, huge pages, and the identity fields of `nodeInfo`.
//!
//! Everything is read below a root path (`/` on a real node, a fixture directory in tests).
//! A file that is missing or unreadable leaves its field empty (or zero); reading never fails.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// A huge page pool of one page size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HugePages {
    /// Page size in bytes.
    pub page_size: u64,
    /// Pages reserved in the pool (`nr_hugepages`).
    pub count: u64,
}

/// What the node agent needs to know of the machine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MachineInfo {
    /// CPUs the kubelet may use: online and in its cpuset.
    pub num_cores: i64,
    /// MemTotal in bytes.
    pub memory_capacity: i64,
    /// Size in bytes of the filesystem holding the kubelet's root directory.
    pub ephemeral_storage_capacity: i64,
    /// Huge page pools, by page size.
    pub hugepages: Vec<HugePages>,
    /// `/etc/machine-id` (or D-Bus's copy).
    pub machine_id: String,
    /// The firmware's product UUID, when readable (it needs root).
    pub system_uuid: String,
    /// The kernel's boot ID.
    pub boot_id: String,
    /// The kernel release (`uname -r`).
    pub kernel_version: String,
    /// `PRETTY_NAME` of `os-release`.
    pub os_image: String,
    /// Architecture as Go names it (`amd64`, `arm64`), as Kubernetes reports it.
    pub architecture: String,
    /// `linux`.
    pub operating_system: String,
}

impl MachineInfo {
    /// Read this machine's facts; `kubelet_root_dir` (e.g. `/var/lib/kubelet`) selects the
    /// filesystem whose size is the ephemeral-storage capacity.
    pub fn read(kubelet_root_dir: &Path) -> Self {
        MachineReader::host().read(kubelet_root_dir)
    }
}

/// Reads [`MachineInfo`] below a root path.
#[derive(Debug, Clone)]
pub struct MachineReader {
    root: PathBuf,
}

impl MachineReader {
    /// Read the real machine.
    pub fn host() -> Self {
        Self::with_root("/")
    }

    /// Read a machine whose `/proc`, `/sys` and `/etc` live below `root` (a fixture).
    pub fn with_root(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    fn path(&self, absolute: &str) -> PathBuf {
        self.root.join(absolute.trim_start_matches('/'))
    }

    fn read_string(&self, absolute: &str) -> Option<String> {
        let path = self.path(absolute);
        match std::fs::read_to_string(&path) {
            Ok(text) => Some(text),
            Err(err) => {
                tracing::debug!(path = %path.display(), error = %err, "machine fact unreadable");
                None
            }
        }
    }

    fn read_trimmed(&self, absolute: &str) -> String {
        self.read_string(absolute)
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    }

    /// Read every fact; `kubelet_root_dir` is an absolute path on the machine.
    pub fn read(&self, kubelet_root_dir: &Path) -> MachineInfo {
        let machine_id = Some(self.read_trimmed("/etc/machine-id"))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| self.read_trimmed("/var/lib/dbus/machine-id"));
        let root_dir = kubelet_root_dir.to_string_lossy();
        MachineInfo {
            num_cores: self.num_cores(),
            memory_capacity: self
                .read_string("/proc/meminfo")
                .as_deref()
                .and_then(parse_mem_total)
                .unwrap_or(0),
            ephemeral_storage_capacity: filesystem_size(&self.path(&root_dir)),
            hugepages: self.hugepages(),
            machine_id,
            system_uuid: self.read_trimmed("/sys/class/dmi/id/product_uuid"),
            boot_id: self.read_trimmed("/proc/sys/kernel/random/boot_id"),
            // The same string uname(2) reports as the release, readable below a root.
            kernel_version: self.read_trimmed("/proc/sys/kernel/osrelease"),
            os_image: self
                .read_string("/etc/os-release")
                .or_else(|| self.read_string("/usr/lib/os-release"))
                .map(|text| pretty_name(&text))
                .unwrap_or_default(),
            architecture: go_arch(std::env::consts::ARCH).to_string(),
            operating_system: std::env::consts::OS.to_string(),
        }
    }

    /// Online CPUs, narrowed to the cpuset of the kubelet's cgroup when one is visible
    /// (a kubelet in a container sees only its share).
    fn num_cores(&self) -> i64 {
        let online = self
            .read_string("/sys/devices/system/cpu/online")
            .as_deref()
            .and_then(parse_cpu_list);
        let cpuset = [
            "/sys/fs/cgroup/cpuset.cpus.effective",
            "/sys/fs/cgroup/cpuset/cpuset.effective_cpus",
        ]
        .into_iter()
        .find_map(|p| self.read_string(p).as_deref().and_then(parse_cpu_list));
        let cpus = match (online, cpuset) {
            (Some(online), Some(cpuset)) => {
                let both = online.intersection(&cpuset).count();
                if both == 0 { online.len() } else { both }
            }
            (Some(online), None) => online.len(),
            (None, Some(cpuset)) => cpuset.len(),
            // Only the real machine may fall back to what the process sees.
            (None, None) if self.root == Path::new("/") => {
                std::thread::available_parallelism().map_or(0, std::num::NonZero::get)
            }
            (None, None) => 0,
        };
        i64::try_from(cpus).unwrap_or(0)
    }

    fn hugepages(&self) -> Vec<HugePages> {
        let dir = self.path("/sys/kernel/mm/hugepages");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        let mut pools: Vec<HugePages> = entries
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                let kb: u64 = name
                    .strip_prefix("hugepages-")?
                    .strip_suffix("kB")?
                    .parse()
                    .ok()?;
                let count = std::fs::read_to_string(entry.path().join("nr_hugepages"))
                    .ok()
                    .and_then(|s| s.trim().parse().ok())
                    .unwrap_or(0);
                Some(HugePages {
                    page_size: kb.checked_mul(1024)?,
                    count,
                })
            })
            .collect();
        pools.sort_by_key(|p| p.page_size);
        pools
    }
}

/// Size in bytes of the filesystem holding `path`, asked of the nearest existing ancestor
/// (the kubelet's root directory may not exist yet); 0 when nothing answers.
// The statvfs field types are u64 on 64-bit targets only.
#[allow(clippy::useless_conversion)]
fn filesystem_size(path: &Path) -> i64 {
    for candidate in path.ancestors() {
        if let Ok(stat) = nix::sys::statvfs::statvfs(candidate) {
            let size = u64::from(stat.blocks()).saturating_mul(u64::from(stat.fragment_size()));
            return i64::try_from(size).unwrap_or(i64::MAX);
        }
    }
    0
}

/// MemTotal in bytes from the text of `/proc/meminfo`.
pub fn parse_mem_total(meminfo: &str) -> Option<i64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut parts = line["MemTotal:".len()..].split_whitespace();
    let value: i64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") => value.checked_mul(1024),
        None => Some(value),
        Some(_) => None,
    }
}

/// The CPUs of a sysfs CPU list (`0-3,6,8-9`); `None` when it is empty or malformed.
pub fn parse_cpu_list(list: &str) -> Option<BTreeSet<u32>> {
    let mut cpus = BTreeSet::new();
    for range in list.trim().split(',').filter(|r| !r.is_empty()) {
        match range.split_once('-') {
            Some((lo, hi)) => {
                let (lo, hi): (u32, u32) = (lo.parse().ok()?, hi.parse().ok()?);
                if hi < lo {
                    return None;
                }
                cpus.extend(lo..=hi);
            }
            None => {
                cpus.insert(range.parse().ok()?);
            }
        }
    }
    (!cpus.is_empty()).then_some(cpus)
}

/// `PRETTY_NAME` of an os-release file, unquoted; `Linux` when the file has none (as cadvisor).
pub fn pretty_name(os_release: &str) -> String {
    os_release
        .lines()
        .find_map(|l| l.trim().strip_prefix("PRETTY_NAME="))
        .map_or_else(
            || "Linux".to_string(),
            |v| v.trim().trim_matches('"').trim_matches('\'').to_string(),
        )
}

/// Rust's architecture name as Go (and so Kubernetes) spells it.
pub fn go_arch(rust_arch: &str) -> &str {
    match rust_arch {
        "x86_64" => "amd64",
        "x86" => "386",
        "aarch64" => "arm64",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "loongarch64" => "loong64",
        "mips64" if cfg!(target_endian = "little") => "mips64le",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, path: &str, text: &str) {
        let path = root.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn facts_come_from_the_fixture_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(
            root,
            "/proc/meminfo",
            "MemTotal:        8048572 kB\nMemFree: 1 kB\n",
        );
        write(root, "/sys/devices/system/cpu/online", "0-7\n");
        write(root, "/sys/fs/cgroup/cpuset.cpus.effective", "2-3,6\n");
        write(
            root,
            "/etc/machine-id",
            "0123456789abcdef0123456789abcdef\n",
        );
        write(
            root,
            "/sys/class/dmi/id/product_uuid",
            "EC2A1B2C-0000-1111-2222-333344445555\n",
        );
        write(
            root,
            "/proc/sys/kernel/random/boot_id",
            "7d1f2f0e-2b3a-4c5d-8e9f-001122334455\n",
        );
        write(root, "/proc/sys/kernel/osrelease", "6.1.0-18-amd64\n");
        write(
            root,
            "/etc/os-release",
            "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n",
        );
        write(
            root,
            "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages",
            "4\n",
        );
        write(
            root,
            "/sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages",
            "0\n",
        );
        let info = MachineReader::with_root(root).read(Path::new("/var/lib/kubelet"));
        assert_eq!(info.num_cores, 3);
        assert_eq!(info.memory_capacity, 8_048_572 * 1024);
        assert!(info.ephemeral_storage_capacity > 0);
        assert_eq!(info.machine_id, "0123456789abcdef0123456789abcdef");
        assert_eq!(info.system_uuid, "EC2A1B2C-0000-1111-2222-333344445555");
        assert_eq!(info.boot_id, "7d1f2f0e-2b3a-4c5d-8e9f-001122334455");
        assert_eq!(info.kernel_version, "6.1.0-18-amd64");
        assert_eq!(info.os_image, "Debian GNU/Linux 12 (bookworm)");
        assert_eq!(
            info.hugepages,
            [
                HugePages {
                    page_size: 2 << 20,
                    count: 4
                },
                HugePages {
                    page_size: 1 << 30,
                    count: 0
                }
            ]
        );
        assert_eq!(info.operating_system, "linux");
        assert_eq!(info.architecture, go_arch(std::env::consts::ARCH));
    }

    #[test]
    fn missing_files_leave_fields_empty() {
        let dir = tempfile::tempdir().unwrap();
        let info = MachineReader::with_root(dir.path()).read(Path::new("/var/lib/kubelet"));
        assert_eq!(info.num_cores, 0);
        assert_eq!(info.memory_capacity, 0);
        assert!(info.machine_id.is_empty());
        assert!(info.system_uuid.is_empty());
        assert!(info.boot_id.is_empty());
        assert!(info.kernel_version.is_empty());
        assert!(info.os_image.is_empty());
        assert!(info.hugepages.is_empty());
        // The filesystem of the fixture directory itself still answers.
        assert!(info.ephemeral_storage_capacity > 0);
    }

    #[test]
    fn machine_id_falls_back_to_dbus_and_os_release_to_usr_lib() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "/var/lib/dbus/machine-id", "feed\n");
        write(dir.path(), "/usr/lib/os-release", "ID=clear-linux-os\n");
        write(dir.path(), "/sys/devices/system/cpu/online", "0-3\n");
        write(dir.path(), "/sys/fs/cgroup/cpuset.cpus.effective", "\n");
        let info = MachineReader::with_root(dir.path()).read(Path::new("/"));
        assert_eq!(info.machine_id, "feed");
        assert_eq!(info.os_image, "Linux");
        assert_eq!(info.num_cores, 4);
    }

    #[test]
    fn the_real_machine_has_cpus_and_memory() {
        let info = MachineInfo::read(Path::new("/var/lib/kubelet-test-does-not-exist"));
        assert!(info.num_cores >= 1);
        assert!(info.memory_capacity > 0);
        assert!(info.ephemeral_storage_capacity > 0);
    }

    #[test]
    fn parsers() {
        assert_eq!(parse_mem_total("MemTotal: 1 MB\n"), None);
        assert_eq!(parse_mem_total("MemFree: 1 kB\n"), None);
        assert_eq!(parse_cpu_list("0-3,6,8-9").map(|s| s.len()), Some(7));
        assert_eq!(parse_cpu_list("0,0-1").map(|s| s.len()), Some(2));
        for bad in ["", "3-1", "a", "1-"] {
            assert_eq!(parse_cpu_list(bad), None, "{bad:?}");
        }
        assert_eq!(
            pretty_name("PRETTY_NAME='Alpine Linux v3.19'\n"),
            "Alpine Linux v3.19"
        );
        assert_eq!(go_arch("x86_64"), "amd64");
        assert_eq!(go_arch("aarch64"), "arm64");
        assert_eq!(go_arch("s390x"), "s390x");
    }
}
