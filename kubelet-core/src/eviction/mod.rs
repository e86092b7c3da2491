//! Node-pressure eviction, the decision core of the reference kubelet's eviction manager
//! (`pkg/kubelet/eviction`): thresholds parsed from the kubelet's `evictionHard`,
//! `evictionSoft`, `evictionSoftGracePeriod` and `evictionMinimumReclaim` settings, signals
//! observed in the stats summary, thresholds met (soft ones after their grace period, met
//! ones kept until their minimum reclaim is reclaimed), the node's pressure conditions with
//! their transition period, the node-level reclaim steps and the ranking of pods to evict
//! with the reference's event messages and annotations, and the admission of new pods under
//! pressure.
//!
//! Nothing here acts: [`EvictionManager::synchronize`] says what to reclaim and which pods to
//! evict first; the caller runs image and container GC, checks
//! [`EvictionManager::reclaimed_enough`] on a fresh summary and, if not, evicts the first
//! candidate.

mod manager;
mod observe;
mod rank;
mod threshold;

#[cfg(test)]
mod tests;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

pub use manager::{
    EvictionConfig, EvictionManager, NodeReclaim, PodEviction, Reclaim, Rejection, Synchronized,
};
pub use observe::{format_binary_si, format_decimal_si};
pub(crate) use rank::{containers_request, is_critical};
pub use threshold::{
    EvictionSettings, ThresholdError, default_eviction_hard, parse_flag_map, parse_thresholds,
};

/// The status and event reason of an evicted pod, and the reason of a rejected admission.
pub const REASON: &str = "Evicted";
/// The grace period of a pod evicted for a hard threshold (the reference's
/// `immediateEvictionGracePeriodSeconds`).
pub const IMMEDIATE_EVICTION_GRACE_PERIOD: Duration = Duration::from_secs(1);
/// The event annotation listing the containers that used more than they requested.
pub const OFFENDING_CONTAINERS_KEY: &str = "offending_containers";
/// The event annotation with those containers' usage, in the same order.
pub const OFFENDING_CONTAINERS_USAGE_KEY: &str = "offending_containers_usage";
/// The event annotation naming a pod whose pod-level memory request is set.
pub const OFFENDING_POD_KEY: &str = "offending_pod";
/// The event annotation with that pod's memory usage.
pub const OFFENDING_POD_USAGE_KEY: &str = "offending_pod_usage";
/// The event annotation naming the resource the node was low on.
pub const STARVED_RESOURCE_KEY: &str = "starved_resource";

/// An eviction signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Signal {
    /// `memory.available`: the node's available memory.
    MemoryAvailable,
    /// `allocatableMemory.available`: memory available to the pods' cgroup.
    AllocatableMemoryAvailable,
    /// `nodefs.available`: bytes free on the kubelet's filesystem.
    NodeFsAvailable,
    /// `nodefs.inodesFree`: inodes free on the kubelet's filesystem.
    NodeFsInodesFree,
    /// `imagefs.available`: bytes free on the runtime's image filesystem.
    ImageFsAvailable,
    /// `imagefs.inodesFree`: inodes free on the runtime's image filesystem.
    ImageFsInodesFree,
    /// `pid.available`: process IDs left.
    PidAvailable,
}

impl Signal {
    /// Every signal, in declaration order.
    pub const ALL: [Signal; 7] = [
        Signal::MemoryAvailable,
        Signal::AllocatableMemoryAvailable,
        Signal::NodeFsAvailable,
        Signal::NodeFsInodesFree,
        Signal::ImageFsAvailable,
        Signal::ImageFsInodesFree,
        Signal::PidAvailable,
    ];

    /// The signal's name in the kubelet's configuration.
    pub fn name(self) -> &'static str {
        match self {
            Signal::MemoryAvailable => "memory.available",
            Signal::AllocatableMemoryAvailable => "allocatableMemory.available",
            Signal::NodeFsAvailable => "nodefs.available",
            Signal::NodeFsInodesFree => "nodefs.inodesFree",
            Signal::ImageFsAvailable => "imagefs.available",
            Signal::ImageFsInodesFree => "imagefs.inodesFree",
            Signal::PidAvailable => "pid.available",
        }
    }

    /// The resource to reclaim when the signal's threshold is met, named as the reference
    /// names it (in messages, events and annotations).
    pub fn resource(self) -> &'static str {
        match self {
            Signal::MemoryAvailable | Signal::AllocatableMemoryAvailable => "memory",
            Signal::NodeFsAvailable | Signal::ImageFsAvailable => "ephemeral-storage",
            Signal::NodeFsInodesFree | Signal::ImageFsInodesFree => "inodes",
            Signal::PidAvailable => "pids",
        }
    }

    /// The node condition the signal drives.
    pub fn pressure(self) -> PressureKind {
        match self {
            Signal::MemoryAvailable | Signal::AllocatableMemoryAvailable => PressureKind::Memory,
            Signal::NodeFsAvailable
            | Signal::NodeFsInodesFree
            | Signal::ImageFsAvailable
            | Signal::ImageFsInodesFree => PressureKind::Disk,
            Signal::PidAvailable => PressureKind::Pid,
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Signal {
    type Err = ThresholdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Signal::ALL
            .into_iter()
            .find(|signal| signal.name() == s)
            .ok_or_else(|| ThresholdError::UnsupportedSignal(s.to_string()))
    }
}

/// The node condition a signal drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PressureKind {
    /// `MemoryPressure`.
    Memory,
    /// `DiskPressure`.
    Disk,
    /// `PIDPressure`.
    Pid,
}

impl PressureKind {
    /// The node condition type.
    pub fn condition_type(self) -> &'static str {
        match self {
            PressureKind::Memory => "MemoryPressure",
            PressureKind::Disk => "DiskPressure",
            PressureKind::Pid => "PIDPressure",
        }
    }
}

/// A threshold's value: an amount, or a share of the signal's capacity.
#[derive(Debug, Clone, PartialEq)]
pub enum ThresholdValue {
    /// An amount (bytes, inodes, PIDs), kept as written for messages.
    Quantity(Quantity),
    /// A share of the capacity, `0.0..=1.0`, with the reference's `float32` precision.
    Percentage(f64),
}

impl ThresholdValue {
    /// What the value comes to on a resource of `capacity` (bytes, inodes, PIDs): a quantity
    /// rounded up to whole units, a percentage as the reference computes it. The node's
    /// allocatable holds back the hard `memory.available` and `nodefs.available` amounts.
    pub fn amount(&self, capacity: i64) -> i64 {
        match self {
            Self::Quantity(q) => crate::quantity::parse_units(q).unwrap_or(0),
            Self::Percentage(p) => observe::percentage_of(*p, capacity),
        }
    }
}

/// An eviction threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    /// What is measured.
    pub signal: Signal,
    /// Met when the signal's available amount is below this.
    pub value: ThresholdValue,
    /// How long the threshold must hold before it drives eviction; zero for a hard one.
    pub grace_period: Duration,
    /// Once met, how much more than `value` must be available before it is resolved.
    pub min_reclaim: Option<ThresholdValue>,
}

impl Threshold {
    /// A hard threshold evicts as soon as it is met, with the immediate grace period.
    pub fn is_hard(&self) -> bool {
        self.grace_period.is_zero()
    }
}
