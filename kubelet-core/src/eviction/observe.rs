//! Signal observations from the stats summary (the reference's `makeSignalObservations`),
//! threshold quantities and which thresholds are met (`thresholdsMet`), and quantities
//! printed as Go's `resource.Quantity` prints them.

use std::collections::BTreeMap;

use super::{Signal, Threshold, ThresholdValue};
use crate::quantity;
use crate::stats::summary::{FsStats, Summary, Time};

/// How the reference builds an observed quantity, which decides how it prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// Bytes: `resource.BinarySI`.
    BinarySi,
    /// Counts (inodes, PIDs): `resource.DecimalSI`.
    DecimalSi,
}

/// One signal as observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Observation {
    pub available: i64,
    pub capacity: i64,
    /// When the stat was sampled; zero when unknown.
    pub time: Time,
    pub format: Format,
}

impl Observation {
    /// The available amount as the reference prints it in eviction messages.
    pub fn available_text(&self) -> String {
        match self.format {
            Format::BinarySi => format_binary_si(self.available),
            Format::DecimalSi => format_decimal_si(self.available),
        }
    }
}

/// Every signal the summary lets us observe.
pub(crate) type Observations = BTreeMap<Signal, Observation>;

/// The reference's `int64(*uint64)`.
fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn fs_observations(out: &mut Observations, fs: Option<&FsStats>, bytes: Signal, inodes: Signal) {
    let Some(fs) = fs else {
        return;
    };
    if let (Some(available), Some(capacity)) = (fs.available_bytes, fs.capacity_bytes) {
        out.insert(
            bytes,
            Observation {
                available: int(available),
                capacity: int(capacity),
                time: fs.time,
                format: Format::BinarySi,
            },
        );
    }
    if let (Some(free), Some(total)) = (fs.inodes_free, fs.inodes) {
        out.insert(
            inodes,
            Observation {
                available: int(free),
                capacity: int(total),
                time: fs.time,
                format: Format::DecimalSi,
            },
        );
    }
}

/// The signals observed in a summary; a stat the summary lacks leaves its signal out, and a
/// threshold on a signal not observed is not met.
pub(crate) fn observe(summary: &Summary) -> Observations {
    let mut out = Observations::new();
    let node = &summary.node;
    if let Some(memory) = &node.memory
        && let (Some(available), Some(working_set)) =
            (memory.available_bytes, memory.working_set_bytes)
    {
        out.insert(
            Signal::MemoryAvailable,
            Observation {
                available: int(available),
                capacity: int(available.saturating_add(working_set)),
                time: memory.time,
                format: Format::BinarySi,
            },
        );
    }
    // The reference measures allocatable memory on the pods' cgroup, whose limit is the
    // node's allocatable: available plus working set is that limit.
    if let Some(pods) = node
        .system_containers
        .iter()
        .flatten()
        .find(|c| c.name == "pods")
        && let Some(memory) = &pods.memory
        && let (Some(available), Some(working_set)) =
            (memory.available_bytes, memory.working_set_bytes)
    {
        out.insert(
            Signal::AllocatableMemoryAvailable,
            Observation {
                available: int(available),
                capacity: int(available.saturating_add(working_set)),
                time: memory.time,
                format: Format::BinarySi,
            },
        );
    }
    fs_observations(
        &mut out,
        node.fs.as_ref(),
        Signal::NodeFsAvailable,
        Signal::NodeFsInodesFree,
    );
    fs_observations(
        &mut out,
        node.runtime.as_ref().and_then(|r| r.image_fs.as_ref()),
        Signal::ImageFsAvailable,
        Signal::ImageFsInodesFree,
    );
    if let Some(rlimit) = &node.rlimit
        && let (Some(max), Some(running)) = (rlimit.maxpid, rlimit.curproc)
    {
        out.insert(
            Signal::PidAvailable,
            Observation {
                available: max.saturating_sub(running),
                capacity: max,
                time: rlimit.time,
                format: Format::DecimalSi,
            },
        );
    }
    out
}

/// A percentage of a capacity as the reference computes it:
/// `int64(float64(capacity) * float64(percentage))`.
pub(crate) fn percentage_of(percentage: f64, capacity: i64) -> i64 {
    (capacity as f64 * percentage) as i64
}

/// A threshold value against a capacity, in nano-units so that a fractional quantity
/// compares exactly; `None` for a quantity that does not parse.
pub(crate) fn value_nanos(value: &ThresholdValue, capacity: i64) -> Option<i128> {
    match value {
        ThresholdValue::Quantity(q) => quantity::parse_nano(q).ok(),
        ThresholdValue::Percentage(p) => Some(i128::from(percentage_of(*p, capacity)) * NANO),
    }
}

/// A threshold value as the reference prints it in messages (`GetThresholdQuantity`): a
/// quantity as written, a percentage as the bytes or count it comes to, in `BinarySI`.
pub(crate) fn value_text(value: &ThresholdValue, capacity: i64) -> String {
    match value {
        ThresholdValue::Quantity(q) => q.0.clone(),
        ThresholdValue::Percentage(p) => format_binary_si(percentage_of(*p, capacity)),
    }
}

/// Nano-units per unit.
pub(crate) const NANO: i128 = 1_000_000_000;

/// Whether a threshold is met: the signal's available amount is below the threshold, or,
/// with `enforce_min_reclaim`, below the threshold plus its minimum reclaim.
pub(crate) fn is_met(
    threshold: &Threshold,
    observations: &Observations,
    enforce_min_reclaim: bool,
) -> bool {
    let Some(observed) = observations.get(&threshold.signal) else {
        return false;
    };
    let Some(mut quantity) = value_nanos(&threshold.value, observed.capacity) else {
        tracing::warn!(
            signal = threshold.signal.name(),
            "eviction threshold quantity does not parse; ignored"
        );
        return false;
    };
    if enforce_min_reclaim && let Some(min_reclaim) = &threshold.min_reclaim {
        quantity += value_nanos(min_reclaim, observed.capacity).unwrap_or(0);
    }
    quantity > i128::from(observed.available) * NANO
}

/// Go's `resource.Quantity.String()` for a `BinarySI` integer: `Ki`..`Ei` suffixes when the
/// value is a whole multiple, decimal below 1024 (`53291008` -> `52042Ki`, `1536` ->
/// `1536`, `1000` -> `1k`).
pub fn format_binary_si(value: i64) -> String {
    if value == 0 {
        return "0".to_string();
    }
    if value > -1024 && value < 1024 {
        return format_decimal_si(value);
    }
    const SUFFIXES: [&str; 7] = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
    let mut mantissa = value;
    let mut exponent = 0;
    while mantissa % 1024 == 0 && exponent < SUFFIXES.len() - 1 {
        mantissa /= 1024;
        exponent += 1;
    }
    format!("{mantissa}{}", SUFFIXES[exponent])
}

/// Go's `resource.Quantity.String()` for a `DecimalSI` integer: trailing zeros folded into
/// `k`..`E` by threes (`5000` -> `5k`, `1500000` -> `1500k`).
pub fn format_decimal_si(value: i64) -> String {
    if value == 0 {
        return "0".to_string();
    }
    const SUFFIXES: [&str; 7] = ["", "k", "M", "G", "T", "P", "E"];
    let mut mantissa = value;
    let mut zeros = 0;
    while mantissa % 10 == 0 {
        mantissa /= 10;
        zeros += 1;
    }
    // Only whole thousands fold into a suffix; the rest of the zeros stay written.
    let exponent = zeros / 3;
    for _ in 0..zeros % 3 {
        mantissa *= 10;
    }
    format!("{mantissa}{}", SUFFIXES[exponent.min(SUFFIXES.len() - 1)])
}
