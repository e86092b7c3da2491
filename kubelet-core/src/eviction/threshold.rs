//! The kubelet's eviction settings and their parsing into thresholds, with the reference's
//! rules and error wording (`ParseThresholdConfig`, `parseThresholdStatement`,
//! `parseGracePeriods`, `parseMinimumReclaims`).

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::{Signal, Threshold, ThresholdValue};
use crate::quantity;

/// The signals the reference accepts but overrides with the nodefs or imagefs thresholds
/// (`UpdateContainerFsThresholds`); without a separate container filesystem they add nothing,
/// so they are accepted and dropped.
const CONTAINER_FS_SIGNALS: [&str; 2] = ["containerfs.available", "containerfs.inodesFree"];

/// The kubelet's eviction settings as KubeletConfiguration and flags give them: maps of
/// signal name to text.
#[derive(Debug, Clone, Default)]
pub struct EvictionSettings {
    /// `evictionHard`: `memory.available` -> `100Mi` or `10%`.
    pub hard: BTreeMap<String, String>,
    /// `evictionSoft`, same form.
    pub soft: BTreeMap<String, String>,
    /// `evictionSoftGracePeriod`: Go durations (`1m30s`, `90s`, `2h`).
    pub soft_grace_period: BTreeMap<String, String>,
    /// `evictionMinimumReclaim`: `0Mi`, `500Mi`, `5%`.
    pub minimum_reclaim: BTreeMap<String, String>,
}

/// Why the eviction settings are not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ThresholdError {
    /// A signal the kubelet does not know.
    #[error("unsupported eviction signal {0}")]
    UnsupportedSignal(String),
    /// A flag item without the separator.
    #[error("malformed pair, expect string{op}string: {item:?}")]
    MalformedPair {
        /// `<` or `=`.
        op: char,
        /// The item as given.
        item: String,
    },
    /// A flag naming the same signal twice.
    #[error("duplicate eviction signal {0}")]
    DuplicateSignal(String),
    /// A quantity that does not parse.
    #[error(
        "invalid eviction threshold {signal}: {value:?}: quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
    )]
    InvalidQuantity {
        /// The signal.
        signal: String,
        /// The value as given.
        value: String,
    },
    /// A percentage that does not parse.
    #[error(
        "invalid eviction percentage {signal}: strconv.ParseFloat: parsing {number:?}: invalid syntax"
    )]
    InvalidPercentage {
        /// The signal.
        signal: String,
        /// The number before the `%`.
        number: String,
    },
    /// A negative percentage threshold.
    #[error("eviction percentage threshold {signal} must be >= 0%: {value}")]
    PercentageBelowZero {
        /// The signal.
        signal: String,
        /// The value as given.
        value: String,
    },
    /// A percentage threshold above 100%.
    #[error("eviction percentage threshold {signal} must be <= 100%: {value}")]
    PercentageAboveHundred {
        /// The signal.
        signal: String,
        /// The value as given.
        value: String,
    },
    /// A zero or negative quantity threshold.
    #[error("eviction threshold {signal} must be positive: {value}")]
    NotPositive {
        /// The signal.
        signal: String,
        /// The value as given.
        value: String,
    },
    /// A soft threshold without a grace period.
    #[error("grace period must be specified for the soft eviction threshold {0}")]
    MissingGracePeriod(String),
    /// A grace period without a soft threshold.
    #[error("eviction soft grace period specified for {0} without a soft eviction threshold")]
    GracePeriodWithoutThreshold(String),
    /// A grace period that is not a Go duration.
    #[error("invalid eviction grace period for {signal}: time: invalid duration {value:?}")]
    InvalidGracePeriod {
        /// The signal.
        signal: String,
        /// The value as given.
        value: String,
    },
    /// A negative grace period.
    #[error(
        "invalid eviction grace period specified for {signal}: {value}, must be a positive value"
    )]
    NegativeGracePeriod {
        /// The signal.
        signal: String,
        /// The value as given.
        value: String,
    },
    /// A minimum reclaim percentage of zero or less.
    #[error("eviction percentage minimum reclaim {signal} must be positive: {value}")]
    MinReclaimPercentageNotPositive {
        /// The signal.
        signal: String,
        /// The value as given.
        value: String,
    },
    /// A negative minimum reclaim quantity.
    #[error("negative eviction minimum reclaim specified for {signal}: {value}")]
    NegativeMinReclaim {
        /// The signal.
        signal: String,
        /// The value as given.
        value: String,
    },
}

/// The reference's default `evictionHard` on Linux (since Kubernetes 1.30 it includes
/// `imagefs.inodesFree`).
pub fn default_eviction_hard() -> BTreeMap<String, String> {
    [
        ("memory.available", "100Mi"),
        ("nodefs.available", "10%"),
        ("nodefs.inodesFree", "5%"),
        ("imagefs.available", "15%"),
        ("imagefs.inodesFree", "5%"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Parse the flag form of a map: `memory.available<100Mi,nodefs.available<10%` (`op` `<`,
/// `--eviction-hard`/`--eviction-soft`/`--eviction-minimum-reclaim`) or
/// `memory.available=1m30s` (`op` `=`, `--eviction-soft-grace-period`). Keys and values are
/// trimmed and empty items skipped, as the reference's flag types do; a key given twice is
/// an error rather than the reference's silent last-one-wins.
pub fn parse_flag_map(text: &str, op: char) -> Result<BTreeMap<String, String>, ThresholdError> {
    let mut map = BTreeMap::new();
    for item in text.split(',') {
        if item.is_empty() {
            continue;
        }
        let Some((key, value)) = item.split_once(op) else {
            return Err(ThresholdError::MalformedPair {
                op,
                item: item.to_string(),
            });
        };
        let key = key.trim().to_string();
        if map.contains_key(&key) {
            return Err(ThresholdError::DuplicateSignal(key));
        }
        map.insert(key, value.trim().to_string());
    }
    Ok(map)
}

/// A signal name from the settings: `None` for the container filesystem signals, dropped.
fn signal_of(name: &str) -> Result<Option<Signal>, ThresholdError> {
    if CONTAINER_FS_SIGNALS.contains(&name) {
        return Ok(None);
    }
    name.parse().map(Some)
}

/// The reference's `parsePercentage`: the number before the `%`, parsed with `float32`
/// precision and divided by 100 in `float32`, so that percentages of a capacity come out to
/// the same byte as the reference's.
fn parse_percentage(signal: &str, value: &str) -> Result<f64, ThresholdError> {
    let number = value.trim_end_matches('%');
    let parsed: f32 = number
        .parse()
        .ok()
        .filter(|v: &f32| !v.is_nan())
        .ok_or_else(|| ThresholdError::InvalidPercentage {
            signal: signal.to_string(),
            number: number.to_string(),
        })?;
    Ok(f64::from(parsed / 100.0))
}

/// A quantity's sign, or the reference's parse error.
fn quantity_sign(signal: &str, value: &str) -> Result<std::cmp::Ordering, ThresholdError> {
    quantity::parse_nano(&Quantity(value.to_string()))
        .map(|v| v.cmp(&0))
        .map_err(|_| ThresholdError::InvalidQuantity {
            signal: signal.to_string(),
            value: value.to_string(),
        })
}

/// The reference's `parseThresholdStatement`: `None` for `0%` and `100%`, which disable the
/// signal.
fn parse_statement(name: &str, value: &str) -> Result<Option<ThresholdValue>, ThresholdError> {
    if value.ends_with('%') {
        if value == "0%" || value == "100%" {
            return Ok(None);
        }
        let percentage = parse_percentage(name, value)?;
        if percentage < 0.0 {
            return Err(ThresholdError::PercentageBelowZero {
                signal: name.to_string(),
                value: value.to_string(),
            });
        }
        if percentage > 1.0 {
            return Err(ThresholdError::PercentageAboveHundred {
                signal: name.to_string(),
                value: value.to_string(),
            });
        }
        return Ok(Some(ThresholdValue::Percentage(percentage)));
    }
    if quantity_sign(name, value)? != std::cmp::Ordering::Greater {
        return Err(ThresholdError::NotPositive {
            signal: name.to_string(),
            value: value.to_string(),
        });
    }
    Ok(Some(ThresholdValue::Quantity(Quantity(value.to_string()))))
}

/// The reference's `parseMinimumReclaims` for one entry.
fn parse_min_reclaim(name: &str, value: &str) -> Result<ThresholdValue, ThresholdError> {
    if value.ends_with('%') {
        let percentage = parse_percentage(name, value)?;
        if percentage <= 0.0 {
            return Err(ThresholdError::MinReclaimPercentageNotPositive {
                signal: name.to_string(),
                value: value.to_string(),
            });
        }
        return Ok(ThresholdValue::Percentage(percentage));
    }
    if quantity_sign(name, value)? == std::cmp::Ordering::Less {
        return Err(ThresholdError::NegativeMinReclaim {
            signal: name.to_string(),
            value: value.to_string(),
        });
    }
    Ok(ThresholdValue::Quantity(Quantity(value.to_string())))
}

/// Parse the eviction settings into thresholds, hard ones first, each group in signal-name
/// order. The reference's rules: known signals only; a percentage between 0% and 100% (`0%`
/// and `100%` disable the signal); a quantity above zero; a soft threshold needs a grace
/// period (and here a grace period needs a soft threshold); a minimum reclaim applies to
/// both the hard and the soft threshold of its signal.
pub fn parse_thresholds(settings: &EvictionSettings) -> Result<Vec<Threshold>, ThresholdError> {
    let mut grace_periods = BTreeMap::new();
    for (name, value) in &settings.soft_grace_period {
        let Some(signal) = signal_of(name)? else {
            continue;
        };
        let period = crate::go_duration::parse_duration(value).map_err(|e| match e {
            crate::go_duration::DurationError::Negative(_) => ThresholdError::NegativeGracePeriod {
                signal: name.clone(),
                value: value.clone(),
            },
            _ => ThresholdError::InvalidGracePeriod {
                signal: name.clone(),
                value: value.clone(),
            },
        })?;
        grace_periods.insert(signal, period);
    }
    let mut min_reclaims = BTreeMap::new();
    for (name, value) in &settings.minimum_reclaim {
        if let Some(signal) = signal_of(name)? {
            min_reclaims.insert(signal, parse_min_reclaim(name, value)?);
        }
    }

    let mut thresholds = Vec::new();
    for (name, value) in &settings.hard {
        let Some(signal) = signal_of(name)? else {
            continue;
        };
        if let Some(value) = parse_statement(name, value)? {
            thresholds.push(Threshold {
                signal,
                value,
                grace_period: Duration::ZERO,
                min_reclaim: None,
            });
        }
    }
    let mut soft_signals = Vec::new();
    for (name, value) in &settings.soft {
        let Some(signal) = signal_of(name)? else {
            continue;
        };
        soft_signals.push(signal);
        let parsed = parse_statement(name, value)?;
        let grace_period = *grace_periods
            .get(&signal)
            .ok_or_else(|| ThresholdError::MissingGracePeriod(name.clone()))?;
        if let Some(value) = parsed {
            thresholds.push(Threshold {
                signal,
                value,
                grace_period,
                min_reclaim: None,
            });
        }
    }
    if let Some(orphan) = grace_periods.keys().find(|s| !soft_signals.contains(s)) {
        return Err(ThresholdError::GracePeriodWithoutThreshold(
            orphan.name().to_string(),
        ));
    }
    for threshold in &mut thresholds {
        threshold.min_reclaim = min_reclaims.get(&threshold.signal).cloned();
    }
    Ok(thresholds)
}
