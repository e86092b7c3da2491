//! The node-pressure eviction settings: `--eviction-hard` / `evictionHard`,
//! `--eviction-soft` / `evictionSoft`, `--eviction-soft-grace-period` /
//! `evictionSoftGracePeriod`, `--eviction-minimum-reclaim` / `evictionMinimumReclaim`,
//! `--eviction-max-pod-grace-period` / `evictionMaxPodGracePeriod`,
//! `--eviction-pressure-transition-period` / `evictionPressureTransitionPeriod` and
//! `mergeDefaultEvictionSettings`, as the reference takes them: a flag wins over the file,
//! and a threshold map given replaces the default one whole (the hard defaults fill the
//! signals it leaves out only with `mergeDefaultEvictionSettings: true`).

use std::collections::BTreeMap;
use std::time::Duration;

use kubelet_core::eviction::{
    EvictionConfig, EvictionSettings, default_eviction_hard, parse_flag_map, parse_thresholds,
};

use super::{ConfigError, KubeletConfigurationFile, Origin};
use crate::duration::parse_duration;
use crate::flags::Flags;

/// The reference's `evictionPressureTransitionPeriod` default.
const DEFAULT_PRESSURE_TRANSITION_PERIOD: Duration = Duration::from_secs(5 * 60);

/// One threshold map: the flag's text (`op` between signal and value), else the file's map,
/// else `default`; with the origin of what was taken.
fn threshold_map(
    flag: &Option<String>,
    flag_name: &'static str,
    op: char,
    file_value: &Option<BTreeMap<String, String>>,
    field: &'static str,
    file_origin: &dyn Fn(&str) -> Origin,
    default: BTreeMap<String, String>,
) -> Result<(BTreeMap<String, String>, Origin), ConfigError> {
    match (flag, file_value) {
        (Some(text), _) => {
            let origin = Origin::Flag(flag_name);
            let map = parse_flag_map(text, op).map_err(|e| ConfigError::Invalid {
                origin: origin.clone(),
                message: e.to_string(),
            })?;
            Ok((map, origin))
        }
        (None, Some(map)) => Ok((map.clone(), file_origin(field))),
        (None, None) => Ok((default, Origin::Default(field))),
    }
}

/// The eviction configuration of the daemon, validated (messages name the flag or field).
pub(super) fn eviction_config(
    flags: &Flags,
    f: &KubeletConfigurationFile,
    file_origin: &dyn Fn(&str) -> Origin,
) -> Result<EvictionConfig, ConfigError> {
    let (mut hard, hard_origin) = threshold_map(
        &flags.eviction_hard,
        "--eviction-hard",
        '<',
        &f.eviction_hard,
        "evictionHard",
        file_origin,
        default_eviction_hard(),
    )?;
    if f.merge_default_eviction_settings.unwrap_or(false) {
        for (signal, value) in default_eviction_hard() {
            hard.entry(signal).or_insert(value);
        }
    }
    let (soft, soft_origin) = threshold_map(
        &flags.eviction_soft,
        "--eviction-soft",
        '<',
        &f.eviction_soft,
        "evictionSoft",
        file_origin,
        BTreeMap::new(),
    )?;
    let (soft_grace_period, grace_origin) = threshold_map(
        &flags.eviction_soft_grace_period,
        "--eviction-soft-grace-period",
        '=',
        &f.eviction_soft_grace_period,
        "evictionSoftGracePeriod",
        file_origin,
        BTreeMap::new(),
    )?;
    let (minimum_reclaim, reclaim_origin) = threshold_map(
        &flags.eviction_minimum_reclaim,
        "--eviction-minimum-reclaim",
        '=',
        &f.eviction_minimum_reclaim,
        "evictionMinimumReclaim",
        file_origin,
        BTreeMap::new(),
    )?;

    // Validated piece by piece, so that an error names the setting it is in.
    let invalid = |origin: &Origin, e: &dyn std::fmt::Display| ConfigError::Invalid {
        origin: origin.clone(),
        message: e.to_string(),
    };
    let hard_only = EvictionSettings {
        hard: hard.clone(),
        ..EvictionSettings::default()
    };
    parse_thresholds(&hard_only).map_err(|e| invalid(&hard_origin, &e))?;
    let soft_only = EvictionSettings {
        soft: soft.clone(),
        soft_grace_period: soft_grace_period.clone(),
        ..EvictionSettings::default()
    };
    // A grace period without its threshold is the grace period's error.
    let soft_or_grace = match soft_origin {
        Origin::Default(_) => grace_origin,
        given => given,
    };
    parse_thresholds(&soft_only).map_err(|e| invalid(&soft_or_grace, &e))?;
    let settings = EvictionSettings {
        hard,
        soft,
        soft_grace_period,
        minimum_reclaim,
    };
    let thresholds = parse_thresholds(&settings).map_err(|e| invalid(&reclaim_origin, &e))?;

    let max_pod_grace_period = match (
        flags.eviction_max_pod_grace_period,
        f.eviction_max_pod_grace_period,
    ) {
        (Some(v), _) => Some((v, Origin::Flag("--eviction-max-pod-grace-period"))),
        (None, Some(v)) => Some((v, file_origin("evictionMaxPodGracePeriod"))),
        (None, None) => None,
    };
    let max_pod_grace_period = match max_pod_grace_period {
        Some((seconds, origin)) => {
            let seconds = u64::try_from(seconds).map_err(|_| ConfigError::Invalid {
                origin,
                message: format!("{seconds} must not be negative"),
            })?;
            Duration::from_secs(seconds)
        }
        None => Duration::ZERO,
    };
    let pressure_transition_period = match (
        flags.eviction_pressure_transition_period,
        &f.eviction_pressure_transition_period,
    ) {
        (Some(d), _) => d,
        (None, Some(text)) => parse_duration(text).map_err(|e| ConfigError::Invalid {
            origin: file_origin("evictionPressureTransitionPeriod"),
            message: e.to_string(),
        })?,
        (None, None) => DEFAULT_PRESSURE_TRANSITION_PERIOD,
    };
    Ok(EvictionConfig {
        thresholds,
        pressure_transition_period,
        max_pod_grace_period,
        ..EvictionConfig::default()
    })
}
