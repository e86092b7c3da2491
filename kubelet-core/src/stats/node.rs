//! The node's own numbers from `/proc`: CPU time and boot time (`/proc/stat`), memory
//! (`/proc/meminfo`), network interfaces (`/proc/<pid>/net/dev`, also a pod's through one of
//! its processes), and the PID limits.

use std::io;
use std::path::Path;

/// Clock ticks per second of `/proc/stat` (USER_HZ, 100 on every Linux ABI).
const USER_HZ: u64 = 100;

/// Cumulative busy CPU time of all cores from `/proc/stat`'s `cpu` line, in nanoseconds:
/// user, nice, system, irq, softirq and steal (idle and iowait excluded).
pub fn proc_stat_cpu_ns(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal
    let busy: u64 = [0usize, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|i| fields.get(*i))
        .sum();
    Some(busy.saturating_mul(1_000_000_000 / USER_HZ))
}

/// Boot time in seconds since the epoch (`btime` of `/proc/stat`).
pub fn proc_stat_boot_time(text: &str) -> Option<i64> {
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// What `/proc/meminfo` says, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemInfo {
    /// `MemTotal`.
    pub total: u64,
    /// `MemFree`.
    pub free: u64,
    /// `Inactive(file)`.
    pub inactive_file: u64,
    /// `AnonPages`.
    pub anon: u64,
    /// `SwapTotal`.
    pub swap_total: u64,
    /// `SwapFree`.
    pub swap_free: u64,
}

impl MemInfo {
    /// Parses `/proc/meminfo` (values in kB).
    pub fn parse(text: &str) -> Self {
        let mut info = Self::default();
        for line in text.lines() {
            let Some((key, rest)) = line.split_once(':') else {
                continue;
            };
            let kb: u64 = rest
                .split_whitespace()
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let bytes = kb.saturating_mul(1024);
            match key {
                "MemTotal" => info.total = bytes,
                "MemFree" => info.free = bytes,
                "Inactive(file)" => info.inactive_file = bytes,
                "AnonPages" => info.anon = bytes,
                "SwapTotal" => info.swap_total = bytes,
                "SwapFree" => info.swap_free = bytes,
                _ => {}
            }
        }
        info
    }

    /// Memory in use (total less free, page cache included), as the root cgroup of v2
    /// reports it.
    pub fn usage(&self) -> u64 {
        self.total.saturating_sub(self.free)
    }

    /// Usage less the inactive file cache.
    pub fn working_set(&self) -> u64 {
        self.usage().saturating_sub(self.inactive_file)
    }
}

/// The counters of one network interface.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InterfaceCounters {
    /// Interface name.
    pub name: String,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Packets received.
    pub rx_packets: u64,
    /// Receive errors.
    pub rx_errors: u64,
    /// Packets dropped while receiving.
    pub rx_dropped: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Packets sent.
    pub tx_packets: u64,
    /// Transmit errors.
    pub tx_errors: u64,
    /// Packets dropped while sending.
    pub tx_dropped: u64,
}

/// The interfaces of a `net/dev` file, without the loopback (which the reference leaves out
/// too).
pub fn parse_net_dev(text: &str) -> Vec<InterfaceCounters> {
    text.lines()
        .skip(2)
        .filter_map(|line| {
            let (name, rest) = line.split_once(':')?;
            let name = name.trim();
            if name == "lo" {
                return None;
            }
            let f: Vec<u64> = rest
                .split_whitespace()
                .map(|v| v.parse().unwrap_or(0))
                .collect();
            Some(InterfaceCounters {
                name: name.to_string(),
                rx_bytes: *f.first()?,
                rx_packets: *f.get(1)?,
                rx_errors: *f.get(2)?,
                rx_dropped: *f.get(3)?,
                tx_bytes: *f.get(8)?,
                tx_packets: *f.get(9)?,
                tx_errors: *f.get(10)?,
                tx_dropped: *f.get(11)?,
            })
        })
        .collect()
}

/// The interfaces of the network namespace of process `pid` (`<proc>/<pid>/net/dev`; `self`
/// for the kubelet's own).
pub fn read_net_dev(proc_root: &Path, pid: &str) -> io::Result<Vec<InterfaceCounters>> {
    let text = std::fs::read_to_string(proc_root.join(pid).join("net/dev"))?;
    Ok(parse_net_dev(&text))
}

/// The node's PID limit (`kernel/pid_max`) and how many processes run (the numeric
/// entries of `/proc`).
pub fn pid_counts(proc_root: &Path) -> io::Result<(i64, i64)> {
    let max = std::fs::read_to_string(proc_root.join("sys/kernel/pid_max"))?
        .trim()
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("pid_max: {e}")))?;
    let mut running = 0i64;
    for entry in std::fs::read_dir(proc_root)?.flatten() {
        if entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        {
            running += 1;
        }
    }
    Ok((max, running))
}

/// The number of logical CPUs (`cpuN` lines of `/proc/stat`).
pub fn proc_stat_cores(text: &str) -> u64 {
    text.lines()
        .filter(|l| {
            // `cpuN ...`, not the all-CPUs `cpu  ...` line.
            l.strip_prefix("cpu")
                .and_then(|rest| rest.split(' ').next())
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .count() as u64
}

/// Block device names by `(major, minor)` from `/proc/diskstats`, as `/dev/<name>`.
pub fn block_devices(proc_root: &Path) -> std::collections::HashMap<(u32, u32), String> {
    let text = std::fs::read_to_string(proc_root.join("diskstats")).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let major = f.next()?.parse().ok()?;
            let minor = f.next()?.parse().ok()?;
            Some(((major, minor), format!("/dev/{}", f.next()?)))
        })
        .collect()
}

/// The source (device) of the mount holding `path`, from `<proc>/self/mountinfo`: the
/// mount whose mount point is the longest prefix of `path` (the last one mounted there).
pub fn mount_source(mountinfo: &str, path: &Path) -> Option<String> {
    let mut best: Option<(usize, String)> = None;
    for line in mountinfo.lines() {
        let mut fields = line.split(' ');
        let Some(mount_point) = fields.nth(4) else {
            continue;
        };
        let Some((_, after)) = line.split_once(" - ") else {
            continue;
        };
        let Some(source) = after.split(' ').nth(1) else {
            continue;
        };
        let mount_point = Path::new(mount_point);
        if path.starts_with(mount_point) {
            let depth = mount_point.components().count();
            if best.as_ref().is_none_or(|(d, _)| depth >= *d) {
                best = Some((depth, source.to_string()));
            }
        }
    }
    best.map(|(_, source)| source)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  174566 10 32496 254130 2911 5 283 39 0 0\n\
        cpu0 69660 0 13995 147230 1068 0 52 15 0 0\nintr 1 2\nbtime 1764660000\nprocesses 9\n";

    #[test]
    fn proc_stat_busy_time_and_boot_time() {
        let busy = 174_566 + 10 + 32_496 + 5 + 283 + 39;
        assert_eq!(proc_stat_cpu_ns(STAT), Some(busy * 10_000_000));
        assert_eq!(proc_stat_boot_time(STAT), Some(1_764_660_000));
        assert_eq!(proc_stat_cpu_ns("intr 1\n"), None);
    }

    #[test]
    fn meminfo_working_set() {
        let m = MemInfo::parse(
            "MemTotal:       24683584 kB\nMemFree:         7802968 kB\n\
             Inactive(file): 10297792 kB\nAnonPages:       1201372 kB\nHugePages_Total: 0\n\
             SwapTotal: 2048 kB\nSwapFree: 1024 kB\n",
        );
        assert_eq!(m.total, 24_683_584 * 1024);
        assert_eq!(m.usage(), (24_683_584 - 7_802_968) * 1024);
        assert_eq!(
            m.working_set(),
            (24_683_584 - 7_802_968 - 10_297_792) * 1024
        );
        assert_eq!(m.anon, 1_201_372 * 1024);
        assert_eq!((m.swap_total, m.swap_free), (2048 * 1024, 1024 * 1024));
    }

    #[test]
    fn net_dev_without_loopback() {
        let text = "Inter-|   Receive                                                |  Transmit\n \
            face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
            lo: 26371164  103570    0    0    0     0          0         0 26371164  103570    0    0    0     0       0          0\n  \
            eth0: 137730075    3796    7    0    0     0          0         0   238263    2320    9    0    0     0       0          0\n";
        assert_eq!(
            parse_net_dev(text),
            [InterfaceCounters {
                name: "eth0".into(),
                rx_bytes: 137_730_075,
                rx_packets: 3796,
                rx_errors: 7,
                rx_dropped: 0,
                tx_bytes: 238_263,
                tx_packets: 2320,
                tx_errors: 9,
                tx_dropped: 0,
            }]
        );
    }

    #[test]
    fn cores_devices_and_mount_sources() {
        assert_eq!(proc_stat_cores(STAT), 1);
        assert_eq!(proc_stat_cores("cpu  1 2\ncpu0 1\ncpu1 1\ncpufreq 3\n"), 2);
        let mountinfo = "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n\
            30 22 0:40 / /var/lib/kubelet/pods/x rw - tmpfs tmpfs rw\n";
        assert_eq!(
            mount_source(mountinfo, Path::new("/var/lib/containerd")).as_deref(),
            Some("/dev/sda1")
        );
        assert_eq!(
            mount_source(mountinfo, Path::new("/var/lib/kubelet/pods/x/v")).as_deref(),
            Some("tmpfs")
        );
        let tmp = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            tmp.path().join("diskstats"),
            "   8       0 sda 1 2 3 4\n   8       1 sda1 1 2 3 4\n",
        )
        .expect("write");
        let devices = block_devices(tmp.path());
        assert_eq!(devices.get(&(8, 1)).map(String::as_str), Some("/dev/sda1"));
    }

    #[test]
    fn pid_counts_from_a_proc_tree() {
        let tmp = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(tmp.path().join("sys/kernel")).expect("mkdir");
        std::fs::write(tmp.path().join("sys/kernel/pid_max"), "4194304\n").expect("write");
        for d in ["1", "42", "self", "net"] {
            std::fs::create_dir_all(tmp.path().join(d)).expect("mkdir");
        }
        assert_eq!(pid_counts(tmp.path()).expect("pids"), (4_194_304, 2));
    }
}
