//! CNI spec versions: which ones this library speaks and how they compare.

use std::cmp::Ordering;

/// The spec versions this library reads and writes, oldest first.
pub const SUPPORTED_VERSIONS: &[&str] = &[
    "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0",
];

/// The newest spec version this library implements.
pub const CURRENT_VERSION: &str = "1.1.0";

/// A `major.minor.patch` version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version(pub u32, pub u32, pub u32);

impl Version {
    /// CHECK exists from 0.4.0 on, and DEL receives prevResult from then on.
    pub const V0_4_0: Version = Version(0, 4, 0);
    /// Results carry `interfaces` and `ips` (instead of `ip4`/`ip6`) from 0.3.0 on.
    pub const V0_3_0: Version = Version(0, 3, 0);
    /// `ips[].version` was dropped in 1.0.0.
    pub const V1_0_0: Version = Version(1, 0, 0);
    /// STATUS and GC exist from 1.1.0 on.
    pub const V1_1_0: Version = Version(1, 1, 0);

    /// Parse `major.minor.patch` (all three parts required, as the spec's versions are).
    pub fn parse(s: &str) -> Option<Version> {
        let mut parts = s.split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        let patch = parts.next()?.parse().ok()?;
        if parts.next().is_some() {
            return None;
        }
        Some(Version(major, minor, patch))
    }
}

/// Whether this library speaks `v`.
pub fn is_supported(v: &str) -> bool {
    SUPPORTED_VERSIONS.contains(&v)
}

/// Compare two version strings; unparseable versions sort first.
pub fn compare(a: &str, b: &str) -> Ordering {
    Version::parse(a).cmp(&Version::parse(b))
}

/// Whether `v` is at least `min`.
pub fn at_least(v: &str, min: Version) -> bool {
    Version::parse(v).is_some_and(|v| v >= min)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_compare() {
        let cases = [
            ("1.0.0", Some(Version(1, 0, 0))),
            ("0.3.1", Some(Version(0, 3, 1))),
            ("1.0", None),
            ("1.0.0.0", None),
            ("a.b.c", None),
            ("", None),
        ];
        for (input, want) in cases {
            assert_eq!(Version::parse(input), want, "{input}");
        }
        assert_eq!(compare("0.4.0", "1.0.0"), Ordering::Less);
        assert_eq!(compare("1.1.0", "1.0.0"), Ordering::Greater);
        assert!(at_least("0.4.0", Version::V0_4_0));
        assert!(!at_least("0.3.1", Version::V0_4_0));
        assert!(!at_least("garbage", Version::V0_4_0));
        assert!(is_supported("0.3.1") && !is_supported("0.5.0"));
    }
}
