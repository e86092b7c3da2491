//! Node-side cgroup management as the reference kubelet does it with the cgroupfs driver:
//! the QoS hierarchy (`<cgroup-root>/kubepods`, `kubepods/burstable`, `kubepods/besteffort`)
//! and one cgroup per pod (`kubepods[/<qos>]/pod<uid>`), sized from the pod's requests,
//! limits and `overhead`, created before the sandbox and destroyed after the pod's processes
//! are gone.
//!
//! The seam is [`CgroupManager`]: [`CgroupFs`] writes a cgroup filesystem (v1 hierarchies or
//! the v2 unified one) below a configurable root, `FakeCgroupManager` (feature `testing`)
//! keeps cgroups in memory for scenario tests. [`PodCgroups`] is the reference's QoS and pod
//! container managers on top of it; [`convert`] holds the resource formulas.

pub mod convert;
#[cfg(any(test, feature = "testing"))]
mod fake;
mod fs;
mod pods;

use std::fmt;
use std::path::PathBuf;

use thiserror::Error;

#[cfg(any(test, feature = "testing"))]
pub use fake::{FakeCgroupCall, FakeCgroupManager};
pub use fs::{CgroupFs, CgroupVersion};
pub use pods::{HOUSEKEEPING_PERIOD, PodCgroups, QOS_UPDATE_PERIOD, housekeeping};

/// A cgroup's name: its path components below the cgroup filesystem's root, driver-neutral
/// (the reference's `CgroupName`). `["kubepods", "burstable", "pod<uid>"]` is
/// `/kubepods/burstable/pod<uid>` with the cgroupfs driver.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct CgroupName(Vec<String>);

impl CgroupName {
    /// The root cgroup.
    pub fn root() -> Self {
        Self(Vec::new())
    }

    /// Parse a cgroupfs path (`/kubepods/burstable`); empty components are skipped.
    pub fn from_path(path: &str) -> Self {
        Self(
            path.split('/')
                .filter(|c| !c.is_empty())
                .map(str::to_string)
                .collect(),
        )
    }

    /// This cgroup's child named `component`.
    pub fn child(&self, component: &str) -> Self {
        let mut parts = self.0.clone();
        parts.push(component.to_string());
        Self(parts)
    }

    /// The path components.
    pub fn components(&self) -> &[String] {
        &self.0
    }

    /// The last component (`pod<uid>`), empty for the root.
    pub fn base(&self) -> &str {
        self.0.last().map_or("", String::as_str)
    }

    /// The cgroupfs path: `/a/b/c`, `/` for the root.
    pub fn to_path(&self) -> String {
        if self.0.is_empty() {
            "/".to_string()
        } else {
            format!("/{}", self.0.join("/"))
        }
    }
}

impl fmt::Display for CgroupName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_path())
    }
}

/// What a cgroup is given (the reference's `ResourceConfig`); `None` leaves a setting as it
/// is (the kernel's default for a new cgroup).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResourceConfig {
    /// CPU shares (cgroup v1 `cpu.shares`; converted to `cpu.weight` on v2).
    pub cpu_shares: Option<u64>,
    /// CFS quota in microseconds per period; -1 is unlimited.
    pub cpu_quota: Option<i64>,
    /// CFS period in microseconds.
    pub cpu_period: Option<u64>,
    /// Memory limit in bytes; -1 is unlimited.
    pub memory: Option<i64>,
    /// Most processes; -1 (or 0 or less) is unlimited.
    pub pids_limit: Option<i64>,
}

/// A failed cgroup operation.
#[derive(Debug, Error)]
pub enum CgroupError {
    /// A cgroup file or directory could not be read or written.
    #[error("cgroup {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The cgroup filesystem is not usable (no hierarchy found, an unreadable value).
    #[error("cgroups: {0}")]
    Invalid(String),
    /// Processes of a pod cgroup could not be killed.
    #[error("cgroup {name}: processes not killed: {message}")]
    Kill {
        /// The cgroup.
        name: CgroupName,
        /// What failed.
        message: String,
    },
}

impl CgroupError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

/// Creates, sizes and removes cgroups (the reference's `CgroupManager`). Calls are
/// synchronous: they are a few small writes to a kernel filesystem.
pub trait CgroupManager: Send + Sync + fmt::Debug {
    /// Whether the cgroup exists (in every hierarchy the kubelet needs, on cgroup v1).
    fn exists(&self, name: &CgroupName) -> bool;
    /// Create the cgroup (and its missing ancestors) and apply `resources`.
    fn create(&self, name: &CgroupName, resources: &ResourceConfig) -> Result<(), CgroupError>;
    /// Apply `resources` to an existing cgroup.
    fn update(&self, name: &CgroupName, resources: &ResourceConfig) -> Result<(), CgroupError>;
    /// Remove the cgroup and the cgroups below it; a cgroup that is not there is no error.
    /// Fails while processes are still in it.
    fn destroy(&self, name: &CgroupName) -> Result<(), CgroupError>;
    /// The processes in the cgroup and below it.
    fn pids(&self, name: &CgroupName) -> Result<Vec<i32>, CgroupError>;
    /// The names of the cgroup's direct children (empty when it does not exist).
    fn children(&self, name: &CgroupName) -> Result<Vec<String>, CgroupError>;
}

/// The reference's `--cgroups-per-qos` and node allocatable enforcement settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupSettings {
    /// `--cgroups-per-qos` (`cgroupsPerQOS`, default true): the QoS hierarchy and one cgroup
    /// per pod. Off: pods get no cgroup parent from the kubelet (the runtime's default).
    pub cgroups_per_qos: bool,
    /// Whether `--enforce-node-allocatable` contains `pods` (its default): the `kubepods`
    /// cgroup's memory limit is the node's allocatable memory rather than its capacity.
    pub enforce_node_allocatable_pods: bool,
    /// `--pod-max-pids` (`podPidsLimit`): most processes per pod; -1 (default) unlimited.
    pub pod_pids_limit: i64,
    /// `cpuCFSQuota` (default true): CPU limits become CFS quotas; off: unlimited (-1).
    pub cpu_cfs_quota: bool,
    /// `cpuCFSQuotaPeriod` in microseconds (default 100 ms).
    pub cpu_cfs_quota_period_us: u64,
    /// The node's capacity (`None`: unknown; `kubepods` is then left unsized).
    pub node_capacity: Option<NodeCgroupResources>,
    /// `kubeReserved` + `systemReserved`, taken from the capacity when pods are enforced.
    pub reserved: NodeCgroupResources,
}

/// CPU and memory of the node, for the `kubepods` cgroup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeCgroupResources {
    /// CPU in millicores.
    pub cpu_milli: i64,
    /// Memory in bytes.
    pub memory_bytes: i64,
}

impl Default for CgroupSettings {
    fn default() -> Self {
        Self {
            cgroups_per_qos: true,
            enforce_node_allocatable_pods: true,
            pod_pids_limit: -1,
            cpu_cfs_quota: true,
            cpu_cfs_quota_period_us: 100_000,
            node_capacity: None,
            reserved: NodeCgroupResources::default(),
        }
    }
}
