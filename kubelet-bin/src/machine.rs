//! The machine's capacity as the reference reads it (through cadvisor): memory from
//! `/proc/meminfo`'s MemTotal, CPUs as the number online.

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

/// The number of CPUs in a sysfs CPU list (`0-3,6,8-9`).
pub fn parse_cpu_list(list: &str) -> Option<i64> {
    let mut count = 0i64;
    for range in list.trim().split(',').filter(|r| !r.is_empty()) {
        count += match range.split_once('-') {
            Some((lo, hi)) => {
                let (lo, hi): (i64, i64) = (lo.parse().ok()?, hi.parse().ok()?);
                if hi < lo {
                    return None;
                }
                hi - lo + 1
            }
            None => {
                range.parse::<i64>().ok()?;
                1
            }
        };
    }
    (count > 0).then_some(count)
}

/// Memory capacity in bytes; 0 when unknown.
pub fn memory_capacity() -> i64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .as_deref()
        .and_then(parse_mem_total)
        .unwrap_or(0)
}

/// CPU capacity in millicores; 0 when unknown.
pub fn cpu_capacity_milli() -> i64 {
    let cpus = std::fs::read_to_string("/sys/devices/system/cpu/online")
        .ok()
        .as_deref()
        .and_then(parse_cpu_list)
        .or_else(|| {
            std::thread::available_parallelism()
                .ok()
                .and_then(|n| i64::try_from(n.get()).ok())
        })
        .unwrap_or(0);
    cpus * 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_total() {
        let meminfo = "MemTotal:        8048572 kB\nMemFree:          123 kB\n";
        assert_eq!(parse_mem_total(meminfo), Some(8_048_572 * 1024));
        assert_eq!(parse_mem_total("MemFree: 1 kB\n"), None);
        assert_eq!(parse_mem_total("MemTotal: x kB\n"), None);
        assert_eq!(parse_mem_total("MemTotal: 1 MB\n"), None);
    }

    #[test]
    fn cpu_lists() {
        let cases = [
            ("0\n", Some(1)),
            ("0-3\n", Some(4)),
            ("0-3,6,8-9", Some(7)),
            ("", None),
            ("3-1", None),
            ("a", None),
        ];
        for (list, want) in cases {
            assert_eq!(parse_cpu_list(list), want, "{list:?}");
        }
    }
}
