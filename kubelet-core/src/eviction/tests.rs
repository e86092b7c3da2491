use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde_json::json;
use tokio::time::Instant;

use super::observe::{observe, percentage_of};
use super::*;
use crate::node::conditions::NodePressure;
use crate::stats::summary::{
    ContainerStats, FsStats, MemoryStats, PodReference, PodStats, ProcessStats, RlimitStats,
    RuntimeStats, Summary, Time, VolumeStats,
};

const MI: u64 = 1024 * 1024;
const GI: u64 = 1024 * MI;

// ---- builders ----

fn map(items: &[(&str, &str)]) -> BTreeMap<String, String> {
    items
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn q(s: &str) -> ThresholdValue {
    ThresholdValue::Quantity(Quantity(s.to_string()))
}

fn pct(percent: f32) -> ThresholdValue {
    ThresholdValue::Percentage(f64::from(percent / 100.0))
}

fn hard(signal: Signal, value: ThresholdValue) -> Threshold {
    Threshold {
        signal,
        value,
        grace_period: Duration::ZERO,
        min_reclaim: None,
    }
}

fn config(thresholds: Vec<Threshold>) -> EvictionConfig {
    EvictionConfig {
        thresholds,
        ..EvictionConfig::default()
    }
}

fn memory(available: u64, working_set: u64) -> MemoryStats {
    MemoryStats {
        available_bytes: Some(available),
        working_set_bytes: Some(working_set),
        ..MemoryStats::default()
    }
}

fn fs(available: u64, capacity: u64) -> FsStats {
    FsStats {
        available_bytes: Some(available),
        capacity_bytes: Some(capacity),
        ..FsStats::default()
    }
}

fn used(bytes: u64, inodes: u64) -> FsStats {
    FsStats {
        used_bytes: Some(bytes),
        inodes_used: Some(inodes),
        ..FsStats::default()
    }
}

/// A node with `available` of 4Gi memory free.
fn node_memory(available: u64) -> Summary {
    let mut s = Summary::default();
    s.node.memory = Some(memory(available, 4 * GI - available));
    s
}

fn pod_stats(uid: &str, working_set: u64, containers: Vec<ContainerStats>) -> PodStats {
    PodStats {
        pod_ref: PodReference {
            name: uid.to_string(),
            namespace: "default".to_string(),
            uid: uid.to_string(),
        },
        memory: Some(memory(0, working_set)),
        containers,
        ..PodStats::default()
    }
}

fn container_memory(name: &str, working_set: u64) -> ContainerStats {
    ContainerStats {
        name: name.to_string(),
        memory: Some(memory(0, working_set)),
        ..ContainerStats::default()
    }
}

fn container_disk(name: &str, rootfs: FsStats, logs: FsStats) -> ContainerStats {
    ContainerStats {
        name: name.to_string(),
        rootfs: Some(rootfs),
        logs: Some(logs),
        ..ContainerStats::default()
    }
}

/// A pod named as its UID with one container `app`, the given memory request (none:
/// BestEffort) and priority.
fn pod(uid: &str, memory_request: Option<&str>, priority: Option<i32>) -> Pod {
    let resources = match memory_request {
        Some(r) => json!({"requests": {"memory": r}}),
        None => json!({}),
    };
    serde_json::from_value(json!({
        "metadata": {"name": uid, "namespace": "default", "uid": uid},
        "spec": {
            "containers": [{"name": "app", "image": "busybox", "resources": resources}],
            "priority": priority,
        }
    }))
    .expect("pod")
}

fn with_annotation(mut pod: Pod, key: &str, value: &str) -> Pod {
    pod.metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(key.to_string(), value.to_string());
    pod
}

fn uids(reclaim: &Reclaim) -> Vec<&str> {
    reclaim.candidates.iter().map(|c| c.uid.as_str()).collect()
}

fn memory_manager() -> EvictionManager {
    EvictionManager::new(config(vec![hard(Signal::MemoryAvailable, q("100Mi"))]))
}

// ---- signals and parsing ----

#[test]
fn signals_name_resource_and_condition() {
    for signal in Signal::ALL {
        assert_eq!(signal.name().parse::<Signal>(), Ok(signal));
        assert_eq!(signal.to_string(), signal.name());
    }
    assert_eq!(Signal::MemoryAvailable.resource(), "memory");
    assert_eq!(Signal::AllocatableMemoryAvailable.resource(), "memory");
    assert_eq!(Signal::NodeFsAvailable.resource(), "ephemeral-storage");
    assert_eq!(Signal::ImageFsInodesFree.resource(), "inodes");
    assert_eq!(Signal::PidAvailable.resource(), "pids");
    assert_eq!(
        Signal::AllocatableMemoryAvailable.pressure(),
        PressureKind::Memory
    );
    assert_eq!(Signal::ImageFsAvailable.pressure(), PressureKind::Disk);
    assert_eq!(Signal::PidAvailable.pressure(), PressureKind::Pid);
    let err = "swap.available".parse::<Signal>().unwrap_err();
    assert_eq!(
        err.to_string(),
        "unsupported eviction signal swap.available"
    );
}

#[test]
fn default_eviction_hard_parses_to_the_reference_defaults() {
    let hard_defaults = default_eviction_hard();
    assert_eq!(
        hard_defaults,
        map(&[
            ("memory.available", "100Mi"),
            ("nodefs.available", "10%"),
            ("nodefs.inodesFree", "5%"),
            ("imagefs.available", "15%"),
            ("imagefs.inodesFree", "5%"),
        ])
    );
    let thresholds = parse_thresholds(&EvictionSettings {
        hard: hard_defaults,
        ..EvictionSettings::default()
    })
    .unwrap();
    assert_eq!(
        thresholds,
        vec![
            hard(Signal::ImageFsAvailable, pct(15.0)),
            hard(Signal::ImageFsInodesFree, pct(5.0)),
            hard(Signal::MemoryAvailable, q("100Mi")),
            hard(Signal::NodeFsAvailable, pct(10.0)),
            hard(Signal::NodeFsInodesFree, pct(5.0)),
        ]
    );
    assert!(thresholds.iter().all(Threshold::is_hard));
    let c = EvictionConfig::default();
    assert_eq!(c.thresholds, thresholds);
    assert_eq!(c.pressure_transition_period, Duration::from_secs(300));
    assert_eq!(c.max_pod_grace_period, Duration::ZERO);
    assert_eq!(c.monitoring_interval, Duration::from_secs(10));
    assert!(!c.dedicated_image_fs);
}

#[test]
fn flag_map_forms() {
    assert_eq!(
        parse_flag_map("memory.available<100Mi,nodefs.available<10%", '<').unwrap(),
        map(&[("memory.available", "100Mi"), ("nodefs.available", "10%")])
    );
    assert_eq!(
        parse_flag_map("memory.available=1m30s", '=').unwrap(),
        map(&[("memory.available", "1m30s")])
    );
    assert_eq!(
        parse_flag_map(" memory.available < 1Gi ,,imagefs.available<15%,", '<').unwrap(),
        map(&[("memory.available", "1Gi"), ("imagefs.available", "15%")])
    );
    assert_eq!(parse_flag_map("", '<').unwrap(), BTreeMap::new());
    let err = parse_flag_map("memory.available=100Mi", '<').unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"malformed pair, expect string<string: "memory.available=100Mi""#
    );
    let err = parse_flag_map("memory.available<1Gi,memory.available<2Gi", '<').unwrap_err();
    assert_eq!(
        err,
        ThresholdError::DuplicateSignal("memory.available".into())
    );
    assert_eq!(
        err.to_string(),
        "duplicate eviction signal memory.available"
    );
}

#[test]
fn percentages_with_float32_precision_and_disabled_signals() {
    let parsed = parse_thresholds(&EvictionSettings {
        hard: map(&[
            ("memory.available", "5.5%"),
            ("nodefs.available", "0%"),
            ("nodefs.inodesFree", "100%"),
            ("imagefs.available", "99.9%"),
        ]),
        ..EvictionSettings::default()
    })
    .unwrap();
    assert_eq!(
        parsed,
        vec![
            hard(Signal::ImageFsAvailable, pct(99.9)),
            hard(Signal::MemoryAvailable, pct(5.5)),
        ]
    );
    // 10% is float32 0.1: the reference's threshold on 10Gi is 16 bytes over a tenth.
    assert_eq!(
        percentage_of(f64::from(10f32 / 100.0), 10 * GI as i64),
        1_073_741_840
    );
}

#[test]
fn soft_thresholds_grace_periods_and_min_reclaim() {
    let parsed = parse_thresholds(&EvictionSettings {
        hard: map(&[("memory.available", "100Mi")]),
        soft: map(&[("memory.available", "1Gi"), ("nodefs.available", "15%")]),
        soft_grace_period: map(&[("memory.available", "1m30s"), ("nodefs.available", "2h")]),
        minimum_reclaim: map(&[
            ("memory.available", "0Mi"),
            ("nodefs.available", "5%"),
            ("imagefs.available", "2Gi"),
        ]),
    })
    .unwrap();
    assert_eq!(
        parsed,
        vec![
            Threshold {
                min_reclaim: Some(q("0Mi")),
                ..hard(Signal::MemoryAvailable, q("100Mi"))
            },
            Threshold {
                signal: Signal::MemoryAvailable,
                value: q("1Gi"),
                grace_period: Duration::from_secs(90),
                min_reclaim: Some(q("0Mi")),
            },
            Threshold {
                signal: Signal::NodeFsAvailable,
                value: pct(15.0),
                grace_period: Duration::from_secs(7200),
                min_reclaim: Some(pct(5.0)),
            },
        ]
    );
    assert!(parsed[0].is_hard() && !parsed[1].is_hard());
}

#[test]
fn container_fs_signals_are_accepted_and_dropped() {
    let parsed = parse_thresholds(&EvictionSettings {
        hard: map(&[("containerfs.available", "10%"), ("pid.available", "1000")]),
        soft: map(&[("containerfs.inodesFree", "5%")]),
        ..EvictionSettings::default()
    })
    .unwrap();
    assert_eq!(parsed, vec![hard(Signal::PidAvailable, q("1000"))]);
}

#[test]
fn parse_errors_name_the_signal_and_value() {
    let hard_only = |signal: &str, value: &str| {
        parse_thresholds(&EvictionSettings {
            hard: map(&[(signal, value)]),
            ..EvictionSettings::default()
        })
        .unwrap_err()
        .to_string()
    };
    assert_eq!(
        hard_only("foo.available", "1Gi"),
        "unsupported eviction signal foo.available"
    );
    assert!(
        hard_only("memory.available", "lots").starts_with(
            r#"invalid eviction threshold memory.available: "lots": quantities must match"#
        ),
        "{}",
        hard_only("memory.available", "lots")
    );
    assert_eq!(
        hard_only("nodefs.available", "x%"),
        r#"invalid eviction percentage nodefs.available: strconv.ParseFloat: parsing "x": invalid syntax"#
    );
    assert_eq!(
        hard_only("nodefs.available", "-5%"),
        "eviction percentage threshold nodefs.available must be >= 0%: -5%"
    );
    assert_eq!(
        hard_only("nodefs.available", "150%"),
        "eviction percentage threshold nodefs.available must be <= 100%: 150%"
    );
    assert_eq!(
        hard_only("memory.available", "-1Gi"),
        "eviction threshold memory.available must be positive: -1Gi"
    );
    assert_eq!(
        hard_only("memory.available", "0"),
        "eviction threshold memory.available must be positive: 0"
    );

    let soft = |soft: &[(&str, &str)], grace: &[(&str, &str)]| {
        parse_thresholds(&EvictionSettings {
            soft: map(soft),
            soft_grace_period: map(grace),
            ..EvictionSettings::default()
        })
        .unwrap_err()
        .to_string()
    };
    assert_eq!(
        soft(&[("memory.available", "1Gi")], &[]),
        "grace period must be specified for the soft eviction threshold memory.available"
    );
    assert_eq!(
        soft(
            &[("memory.available", "1Gi")],
            &[("memory.available", "1m"), ("nodefs.available", "1m")]
        ),
        "eviction soft grace period specified for nodefs.available without a soft eviction threshold"
    );
    assert_eq!(
        soft(
            &[("memory.available", "1Gi")],
            &[("memory.available", "soon")]
        ),
        r#"invalid eviction grace period for memory.available: time: invalid duration "soon""#
    );
    assert_eq!(
        soft(
            &[("memory.available", "1Gi")],
            &[("memory.available", "-1s")]
        ),
        "invalid eviction grace period specified for memory.available: -1s, must be a positive value"
    );
    assert_eq!(
        soft(&[("memory.available", "1Gi")], &[("bogus", "1s")]),
        "unsupported eviction signal bogus"
    );

    let min_reclaim = |value: &str| {
        parse_thresholds(&EvictionSettings {
            hard: map(&[("memory.available", "100Mi")]),
            minimum_reclaim: map(&[("memory.available", value)]),
            ..EvictionSettings::default()
        })
        .unwrap_err()
        .to_string()
    };
    assert_eq!(
        min_reclaim("0%"),
        "eviction percentage minimum reclaim memory.available must be positive: 0%"
    );
    assert_eq!(
        min_reclaim("-1Mi"),
        "negative eviction minimum reclaim specified for memory.available: -1Mi"
    );
}

// ---- quantities as Go prints them ----

#[test]
fn quantities_print_as_go_does() {
    assert_eq!(format_binary_si(53_291_008), "52042Ki");
    assert_eq!(format_binary_si(52_428_800), "50Mi");
    assert_eq!(format_binary_si(1536), "1536");
    assert_eq!(format_binary_si(1024), "1Ki");
    assert_eq!(format_binary_si(0), "0");
    assert_eq!(format_binary_si(500), "500");
    assert_eq!(format_binary_si(1000), "1k");
    assert_eq!(format_binary_si(GI as i64), "1Gi");
    assert_eq!(format_binary_si(-(2 * MI as i64)), "-2Mi");
    assert_eq!(format_decimal_si(5000), "5k");
    assert_eq!(format_decimal_si(1_500_000), "1500k");
    assert_eq!(format_decimal_si(2_000_000), "2M");
    assert_eq!(format_decimal_si(123), "123");
    assert_eq!(format_decimal_si(-40_000), "-40k");
}

// ---- observations and thresholds met ----

#[test]
fn observations_from_the_summary() {
    let mut s = node_memory(GI);
    s.node.system_containers = Some(vec![ContainerStats {
        name: "pods".into(),
        memory: Some(memory(MI, 3 * MI)),
        ..ContainerStats::default()
    }]);
    s.node.fs = Some(FsStats {
        inodes_free: Some(50),
        inodes: Some(1000),
        ..fs(10, 100)
    });
    s.node.runtime = Some(RuntimeStats {
        image_fs: Some(fs(20, 200)),
        container_fs: None,
    });
    s.node.rlimit = Some(RlimitStats {
        maxpid: Some(4194304),
        curproc: Some(300),
        ..RlimitStats::default()
    });
    let o = observe(&s);
    let pair = |signal| o.get(&signal).map(|o| (o.available, o.capacity));
    assert_eq!(
        pair(Signal::MemoryAvailable),
        Some((GI as i64, 4 * GI as i64))
    );
    assert_eq!(
        pair(Signal::AllocatableMemoryAvailable),
        Some((MI as i64, 4 * MI as i64))
    );
    assert_eq!(pair(Signal::NodeFsAvailable), Some((10, 100)));
    assert_eq!(pair(Signal::NodeFsInodesFree), Some((50, 1000)));
    assert_eq!(pair(Signal::ImageFsAvailable), Some((20, 200)));
    assert_eq!(pair(Signal::ImageFsInodesFree), None);
    assert_eq!(pair(Signal::PidAvailable), Some((4194004, 4194304)));
    assert!(observe(&Summary::default()).is_empty());
}

#[test]
fn thresholds_met_with_quantities_and_percentages() {
    let mut m = EvictionManager::new(config(vec![
        hard(Signal::MemoryAvailable, q("100Mi")),
        hard(Signal::NodeFsAvailable, pct(10.0)),
        hard(Signal::NodeFsInodesFree, pct(5.0)),
        hard(Signal::PidAvailable, q("1000")),
    ]));
    let now = Instant::now();
    // Exactly at the threshold is not below it.
    let mut s = node_memory(100 * MI);
    s.node.fs = Some(FsStats {
        inodes_free: Some(50),
        inodes: Some(1000),
        ..fs(2 * GI, 10 * GI)
    });
    s.node.rlimit = Some(RlimitStats {
        maxpid: Some(2000),
        curproc: Some(1000),
        ..RlimitStats::default()
    });
    let out = m.synchronize(now, &s, &[]);
    assert_eq!(out.pressure, NodePressure::default());
    assert!(m.reclaimed_enough(&s));

    // 10% of 10Gi is 1073741840 bytes with float32; one byte below it is met.
    s.node.fs = Some(fs(1_073_741_839, 10 * GI));
    let out = m.synchronize(now, &s, &[]);
    assert_eq!(
        out.pressure,
        NodePressure {
            memory: false,
            disk: true,
            pid: false
        }
    );
    assert!(!m.reclaimed_enough(&s));

    let mut s = node_memory(100 * MI - 1);
    s.node.rlimit = Some(RlimitStats {
        maxpid: Some(2000),
        curproc: Some(1001),
        ..RlimitStats::default()
    });
    let out = m.synchronize(now + Duration::from_secs(600), &s, &[]);
    assert_eq!(
        out.pressure,
        NodePressure {
            memory: true,
            disk: false,
            pid: true
        }
    );
}

#[test]
fn missing_stats_meet_no_threshold() {
    let mut m = EvictionManager::new(EvictionConfig::default());
    let out = m.synchronize(Instant::now(), &Summary::default(), &[pod("a", None, None)]);
    assert_eq!(out.pressure, NodePressure::default());
    assert_eq!(out.reclaim, None);
}

#[test]
fn allocatable_memory_from_the_pods_cgroup() {
    let mut m = EvictionManager::new(config(vec![hard(
        Signal::AllocatableMemoryAvailable,
        q("1Gi"),
    )]));
    let mut s = node_memory(3 * GI);
    s.node.system_containers = Some(vec![ContainerStats {
        name: "pods".into(),
        memory: Some(memory(GI - 1, GI)),
        ..ContainerStats::default()
    }]);
    let out = m.synchronize(Instant::now(), &s, &[pod("a", None, None)]);
    assert!(out.pressure.memory);
    let reclaim = out.reclaim.unwrap();
    assert_eq!(reclaim.signal, Signal::AllocatableMemoryAvailable);
    assert_eq!(reclaim.resource, "memory");
}

#[test]
fn soft_threshold_waits_for_its_grace_period() {
    let mut m = EvictionManager::new(config(vec![Threshold {
        signal: Signal::MemoryAvailable,
        value: q("1Gi"),
        grace_period: Duration::from_secs(90),
        min_reclaim: None,
    }]));
    let pods = [pod("a", None, None)];
    let t0 = Instant::now();
    let low = node_memory(512 * MI);
    let out = m.synchronize(t0, &low, &pods);
    assert!(out.pressure.memory, "the condition needs no grace period");
    assert_eq!(out.reclaim, None);
    let out = m.synchronize(t0 + Duration::from_secs(89), &low, &pods);
    assert_eq!(out.reclaim, None);
    let out = m.synchronize(t0 + Duration::from_secs(90), &low, &pods);
    let reclaim = out.reclaim.unwrap();
    assert_eq!(reclaim.signal, Signal::MemoryAvailable);
    assert_eq!(uids(&reclaim), ["a"]);

    // Once the signal recovers, the grace period starts over.
    m.synchronize(t0 + Duration::from_secs(100), &node_memory(2 * GI), &pods);
    let out = m.synchronize(t0 + Duration::from_secs(110), &low, &pods);
    assert_eq!(out.reclaim, None);
}

#[test]
fn pressure_stays_for_the_transition_period() {
    let mut m = EvictionManager::new(EvictionConfig {
        pressure_transition_period: Duration::from_secs(300),
        ..config(vec![hard(Signal::MemoryAvailable, q("100Mi"))])
    });
    let t0 = Instant::now();
    assert!(m.synchronize(t0, &node_memory(MI), &[]).pressure.memory);
    assert!(m.pressure().memory);
    let ok = node_memory(GI);
    let at = |secs| t0 + Duration::from_secs(secs);
    assert!(m.synchronize(at(10), &ok, &[]).pressure.memory);
    assert!(m.synchronize(at(299), &ok, &[]).pressure.memory);
    assert!(!m.synchronize(at(300), &ok, &[]).pressure.memory);
    assert!(!m.pressure().memory);
    // Met again: the period counts from the last time it was met.
    assert!(
        m.synchronize(at(400), &node_memory(MI), &[])
            .pressure
            .memory
    );
    assert!(m.synchronize(at(699), &ok, &[]).pressure.memory);
    assert!(!m.synchronize(at(700), &ok, &[]).pressure.memory);
}

#[test]
fn min_reclaim_keeps_a_threshold_until_enough_is_reclaimed() {
    let mut m = EvictionManager::new(config(vec![Threshold {
        min_reclaim: Some(q("500Mi")),
        ..hard(Signal::MemoryAvailable, q("100Mi"))
    }]));
    let pods = [pod("a", None, None)];
    let t0 = Instant::now();
    let at = |secs| t0 + Duration::from_secs(secs);
    // Above the threshold without having met it: nothing.
    assert_eq!(
        m.synchronize(at(0), &node_memory(300 * MI), &pods).reclaim,
        None
    );
    assert!(
        m.synchronize(at(10), &node_memory(50 * MI), &pods)
            .reclaim
            .is_some()
    );
    // Above 100Mi but below 100Mi + 500Mi: still reclaiming.
    let out = m.synchronize(at(20), &node_memory(300 * MI), &pods);
    assert!(out.pressure.memory);
    assert!(out.reclaim.is_some());
    assert!(!m.reclaimed_enough(&node_memory(300 * MI)));
    assert!(m.reclaimed_enough(&node_memory(600 * MI)));
    // Exactly 600Mi available resolves it; then 300Mi alone does not meet it again.
    assert_eq!(
        m.synchronize(at(30), &node_memory(600 * MI), &pods).reclaim,
        None
    );
    assert_eq!(
        m.synchronize(at(40), &node_memory(300 * MI), &pods).reclaim,
        None
    );
}

#[test]
fn min_reclaim_as_a_percentage() {
    let m = EvictionManager::new(config(vec![Threshold {
        min_reclaim: Some(pct(5.0)),
        ..hard(Signal::NodeFsAvailable, pct(10.0))
    }]));
    let mut s = Summary::default();
    s.node.fs = Some(fs(1400, 10_000));
    assert!(!m.reclaimed_enough(&s));
    s.node.fs = Some(fs(1500, 10_000));
    assert!(m.reclaimed_enough(&s));
}

#[test]
fn stale_stats_do_not_drive_eviction_twice() {
    let mut m = memory_manager();
    let pods = [pod("a", None, None)];
    let t0 = Instant::now();
    let mut s = node_memory(MI);
    s.node.memory.as_mut().unwrap().time = Time(1_000);
    assert!(m.synchronize(t0, &s, &pods).reclaim.is_some());
    let out = m.synchronize(t0 + Duration::from_secs(10), &s, &pods);
    assert!(out.pressure.memory);
    assert_eq!(out.reclaim, None);
    s.node.memory.as_mut().unwrap().time = Time(2_000);
    assert!(
        m.synchronize(t0 + Duration::from_secs(20), &s, &pods)
            .reclaim
            .is_some()
    );
}

#[test]
fn without_active_pods_the_reclaim_has_no_candidates() {
    let mut m = memory_manager();
    let out = m.synchronize(Instant::now(), &node_memory(MI), &[]);
    assert!(out.pressure.memory);
    let reclaim = out
        .reclaim
        .expect("a threshold is met: the event is still due");
    assert_eq!(reclaim.event_message, "Attempting to reclaim memory");
    assert!(reclaim.candidates.is_empty());
}

#[test]
fn memory_is_reclaimed_before_disk() {
    let mut m = EvictionManager::new(config(vec![
        hard(Signal::NodeFsAvailable, pct(10.0)),
        hard(Signal::MemoryAvailable, q("100Mi")),
    ]));
    let mut s = node_memory(MI);
    s.node.fs = Some(fs(1, 100));
    let out = m.synchronize(Instant::now(), &s, &[pod("a", None, None)]);
    assert_eq!(
        out.pressure,
        NodePressure {
            memory: true,
            disk: true,
            pid: false
        }
    );
    let reclaim = out.reclaim.unwrap();
    assert_eq!(reclaim.signal, Signal::MemoryAvailable);
    assert_eq!(reclaim.resource, "memory");
    assert_eq!(reclaim.event_message, "Attempting to reclaim memory");
    assert!(reclaim.node_level.is_empty());
}

// ---- node-level reclaim ----

#[test]
fn node_level_steps_per_signal() {
    use NodeReclaim::{DeleteUnusedContainers, DeleteUnusedImages};
    let gc = vec![DeleteUnusedContainers, DeleteUnusedImages];
    let cases = [
        (Signal::MemoryAvailable, false, vec![]),
        (Signal::PidAvailable, false, vec![]),
        (Signal::NodeFsAvailable, false, gc.clone()),
        (Signal::NodeFsInodesFree, false, gc.clone()),
        (Signal::ImageFsAvailable, false, gc.clone()),
        (Signal::NodeFsAvailable, true, vec![]),
        (Signal::NodeFsInodesFree, true, vec![]),
        (Signal::ImageFsAvailable, true, gc.clone()),
        (Signal::ImageFsInodesFree, true, gc.clone()),
    ];
    for (signal, dedicated, want) in cases {
        let mut m = EvictionManager::new(EvictionConfig {
            dedicated_image_fs: dedicated,
            ..config(vec![hard(signal, q("10"))])
        });
        let mut s = node_memory(0);
        s.node.fs = Some(FsStats {
            inodes_free: Some(0),
            inodes: Some(100),
            ..fs(0, 100)
        });
        s.node.runtime = Some(RuntimeStats {
            image_fs: Some(FsStats {
                inodes_free: Some(0),
                inodes: Some(100),
                ..fs(0, 100)
            }),
            container_fs: None,
        });
        s.node.rlimit = Some(RlimitStats {
            maxpid: Some(100),
            curproc: Some(100),
            ..RlimitStats::default()
        });
        let reclaim = m
            .synchronize(Instant::now(), &s, &[pod("a", None, None)])
            .reclaim
            .unwrap();
        assert_eq!(reclaim.signal, signal);
        assert_eq!(reclaim.node_level, want, "{signal} dedicated={dedicated}");
        assert_eq!(
            reclaim.event_message,
            format!("Attempting to reclaim {}", signal.resource())
        );
    }
}

// ---- ranking ----

#[test]
fn memory_ranking_exceeds_requests_then_priority_then_usage() {
    let mut m = memory_manager();
    let pods = [
        // Within its request.
        pod("within", Some("500Mi"), None),
        // Above its request, high priority.
        pod("important", Some("100Mi"), Some(1000)),
        // BestEffort: any usage exceeds.
        pod("besteffort", None, None),
        // Above its request by more than the BestEffort pod uses.
        pod("hungry", Some("100Mi"), None),
        // No stats at all: first.
        pod("unknown", Some("1Gi"), Some(5000)),
    ];
    let mut s = node_memory(MI);
    s.pods = vec![
        pod_stats("within", 400 * MI, vec![]),
        pod_stats("important", 900 * MI, vec![]),
        pod_stats("besteffort", 100 * MI, vec![]),
        pod_stats("hungry", 300 * MI, vec![]),
    ];
    let reclaim = m.synchronize(Instant::now(), &s, &pods).reclaim.unwrap();
    assert_eq!(
        uids(&reclaim),
        ["unknown", "hungry", "besteffort", "important", "within"]
    );
}

#[test]
fn memory_request_counts_init_containers_sidecars_and_overhead() {
    // The init container runs alone (the sidecar starts after it): 300Mi against the
    // 200Mi of the app and the sidecar together; then 50Mi of overhead.
    let p: Pod = serde_json::from_value(json!({
        "metadata": {"name": "p", "namespace": "default", "uid": "p"},
        "spec": {
            "initContainers": [
                {"name": "init", "resources": {"requests": {"memory": "300Mi"}}},
                {"name": "sidecar", "restartPolicy": "Always",
                 "resources": {"requests": {"memory": "100Mi"}}},
            ],
            "containers": [{"name": "app", "resources": {"requests": {"memory": "100Mi"}}}],
            "overhead": {"memory": "50Mi"},
        }
    }))
    .unwrap();
    assert_eq!(
        super::rank::pod_request(&p, "memory"),
        i128::from(350 * MI) * 1_000_000_000
    );
    // Without any request, the overhead does not count.
    let mut best_effort = pod("b", None, None);
    best_effort.spec.as_mut().unwrap().overhead =
        Some([("memory".to_string(), Quantity("50Mi".into()))].into());
    assert_eq!(super::rank::pod_request(&best_effort, "memory"), 0);
}

#[test]
fn critical_pods_are_never_candidates() {
    let mut m = memory_manager();
    let pods = [
        with_annotation(
            pod("static", None, None),
            "kubernetes.io/config.source",
            "file",
        ),
        with_annotation(
            pod("mirror", None, None),
            "kubernetes.io/config.mirror",
            "abc",
        ),
        pod("system", None, Some(2_000_000_000)),
        with_annotation(pod("api", None, None), "kubernetes.io/config.source", "api"),
        pod("plain", None, Some(1_999_999_999)),
    ];
    let reclaim = m
        .synchronize(Instant::now(), &node_memory(MI), &pods)
        .reclaim
        .unwrap();
    assert_eq!(uids(&reclaim), ["api", "plain"]);
}

fn disk_pod(uid: &str, request: Option<&str>) -> Pod {
    let resources = match request {
        Some(r) => json!({"requests": {"ephemeral-storage": r}}),
        None => json!({}),
    };
    serde_json::from_value(json!({
        "metadata": {"name": uid, "namespace": "default", "uid": uid},
        "spec": {
            "containers": [{"name": "app", "resources": resources}],
            "volumes": [
                {"name": "scratch", "emptyDir": {}},
                {"name": "tmpfs", "emptyDir": {"medium": "Memory"}},
                {"name": "config", "configMap": {"name": "c"}},
                {"name": "claim", "persistentVolumeClaim": {"claimName": "c"}},
            ],
        }
    }))
    .unwrap()
}

fn disk_stats(uid: &str, rootfs: u64, logs: u64, volumes: &[(&str, u64)]) -> PodStats {
    PodStats {
        volume: Some(
            volumes
                .iter()
                .map(|(name, bytes)| VolumeStats {
                    fs: used(*bytes, *bytes / 10),
                    name: name.to_string(),
                    pvc_ref: None,
                })
                .collect(),
        ),
        ..pod_stats(
            uid,
            0,
            vec![container_disk(
                "app",
                used(rootfs, rootfs / 10),
                used(logs, logs / 10),
            )],
        )
    }
}

fn disk_summary(pods: Vec<PodStats>) -> Summary {
    let mut s = Summary::default();
    s.node.fs = Some(FsStats {
        inodes_free: Some(1),
        inodes: Some(1000),
        ..fs(1, 1000)
    });
    s.node.runtime = Some(RuntimeStats {
        image_fs: Some(FsStats {
            inodes_free: Some(1),
            inodes: Some(1000),
            ..fs(1, 1000)
        }),
        container_fs: None,
    });
    s.pods = pods;
    s
}

fn disk_ranking(signal: Signal, dedicated: bool) -> Vec<String> {
    let mut m = EvictionManager::new(EvictionConfig {
        dedicated_image_fs: dedicated,
        ..config(vec![hard(signal, q("10"))])
    });
    let pods = [
        disk_pod("writer", None),
        disk_pod("logger", None),
        disk_pod("volumes", None),
        disk_pod("requested", Some("10Gi")),
    ];
    let s = disk_summary(vec![
        disk_stats("writer", 900 * MI, 10 * MI, &[]),
        disk_stats("logger", 10 * MI, 800 * MI, &[]),
        // tmpfs (memory) and the claim do not count; scratch and config do.
        disk_stats(
            "volumes",
            20 * MI,
            10 * MI,
            &[
                ("scratch", 500 * MI),
                ("config", 200 * MI),
                ("tmpfs", 5 * GI),
                ("claim", 5 * GI),
            ],
        ),
        disk_stats("requested", 5 * GI, 0, &[]),
    ]);
    let reclaim = m.synchronize(Instant::now(), &s, &pods).reclaim.unwrap();
    assert_eq!(reclaim.signal, signal);
    reclaim.candidates.into_iter().map(|c| c.uid).collect()
}

#[test]
fn disk_ranking_by_the_filesystems_the_signal_measures() {
    // One filesystem: writable layers, logs and local volumes all count; the pod within its
    // 10Gi request goes last despite using the most.
    assert_eq!(
        disk_ranking(Signal::NodeFsAvailable, false),
        ["writer", "logger", "volumes", "requested"]
    );
    assert_eq!(
        disk_ranking(Signal::ImageFsAvailable, false),
        ["writer", "logger", "volumes", "requested"]
    );
    // Dedicated image filesystem: nodefs holds logs and volumes ...
    assert_eq!(
        disk_ranking(Signal::NodeFsAvailable, true),
        ["logger", "volumes", "writer", "requested"]
    );
    // ... and imagefs the writable layers.
    assert_eq!(
        disk_ranking(Signal::ImageFsAvailable, true),
        ["writer", "volumes", "logger", "requested"]
    );
    // Inodes (a tenth of the bytes here): no inode requests, so every pod exceeds; the
    // reference then subtracts the ephemeral-storage request even from inode counts.
    assert_eq!(
        disk_ranking(Signal::NodeFsInodesFree, false),
        ["writer", "logger", "volumes", "requested"]
    );
}

#[test]
fn pid_ranking_by_priority_then_processes() {
    let mut m = EvictionManager::new(config(vec![hard(Signal::PidAvailable, q("100"))]));
    let mut s = Summary::default();
    s.node.rlimit = Some(RlimitStats {
        maxpid: Some(1000),
        curproc: Some(950),
        ..RlimitStats::default()
    });
    let procs = |uid: &str, n: u64| PodStats {
        process_stats: Some(ProcessStats {
            process_count: Some(n),
        }),
        ..pod_stats(uid, 0, vec![])
    };
    s.pods = vec![
        procs("few", 10),
        procs("many", 500),
        procs("important", 900),
    ];
    let pods = [
        pod("few", None, None),
        pod("important", None, Some(100)),
        pod("many", None, None),
        pod("unknown", None, Some(50)),
    ];
    let reclaim = m.synchronize(Instant::now(), &s, &pods).reclaim.unwrap();
    assert_eq!(reclaim.resource, "pids");
    assert_eq!(uids(&reclaim), ["many", "few", "unknown", "important"]);
    assert_eq!(
        reclaim.candidates[0].message,
        "The node was low on resource: pids. Threshold quantity: 100, available: 50. "
    );
}

// ---- messages, annotations, grace periods ----

#[test]
fn memory_eviction_message_and_annotations() {
    let mut m = memory_manager();
    let p: Pod = serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "shop", "uid": "u1"},
        "spec": {
            "containers": [
                {"name": "app"},
                {"name": "proxy", "resources": {"requests": {"memory": "64Mi"}}},
                {"name": "quiet", "resources": {"requests": {"memory": "1Gi"}}},
            ],
        }
    }))
    .unwrap();
    let mut s = node_memory(53_291_008);
    s.pods = vec![pod_stats(
        "u1",
        900 * MI,
        vec![
            container_memory("app", 500 * MI),
            container_memory("proxy", 100 * MI),
            container_memory("quiet", 10 * MI),
        ],
    )];
    let reclaim = m.synchronize(Instant::now(), &s, &[p]).reclaim.unwrap();
    let c = &reclaim.candidates[0];
    assert_eq!(
        (c.uid.as_str(), c.namespace.as_str(), c.name.as_str()),
        ("u1", "shop", "web")
    );
    assert_eq!(
        c.message,
        "The node was low on resource: memory. Threshold quantity: 100Mi, available: 52042Ki. \
         Container app was using 500Mi, request is 0, has larger consumption of memory. \
         Container proxy was using 100Mi, request is 64Mi, has larger consumption of memory. "
    );
    assert_eq!(
        c.annotations,
        map(&[
            ("offending_containers", "app,proxy"),
            ("offending_containers_usage", "500Mi,100Mi"),
            ("starved_resource", "memory"),
        ])
    );
    assert_eq!(c.grace_period, Duration::from_secs(1));
}

#[test]
fn message_without_pod_stats_has_no_annotations() {
    let mut m = memory_manager();
    let reclaim = m
        .synchronize(
            Instant::now(),
            &node_memory(50 * MI),
            &[pod("a", None, None)],
        )
        .reclaim
        .unwrap();
    assert_eq!(
        reclaim.candidates[0].message,
        "The node was low on resource: memory. Threshold quantity: 100Mi, available: 50Mi. "
    );
    assert!(reclaim.candidates[0].annotations.is_empty());
}

#[test]
fn pod_level_memory_request_in_the_message() {
    let mut m = memory_manager();
    let p: Pod = serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "default", "uid": "u1"},
        "spec": {
            "resources": {"requests": {"memory": "200Mi"}},
            "containers": [{"name": "app"}],
        }
    }))
    .unwrap();
    let mut s = node_memory(50 * MI);
    s.pods = vec![pod_stats(
        "u1",
        300 * MI,
        vec![container_memory("app", 300 * MI)],
    )];
    let reclaim = m.synchronize(Instant::now(), &s, &[p]).reclaim.unwrap();
    let c = &reclaim.candidates[0];
    assert_eq!(
        c.message,
        "The node was low on resource: memory. Threshold quantity: 100Mi, available: 50Mi. \
         Pod web was using 300Mi, request is 200Mi, has larger consumption of memory. \
         Container app was using 300Mi, request is 0, has larger consumption of memory. "
    );
    assert_eq!(c.annotations["offending_pod"], "web");
    assert_eq!(c.annotations["offending_pod_usage"], "300Mi");
}

#[test]
fn disk_message_with_a_percentage_threshold() {
    let mut m = EvictionManager::new(config(vec![hard(Signal::NodeFsAvailable, pct(10.0))]));
    let mut s = Summary::default();
    s.node.fs = Some(fs(512 * MI, 10 * GI));
    s.pods = vec![disk_stats("d", 300 * MI, 20 * MI, &[("scratch", GI)])];
    let reclaim = m
        .synchronize(Instant::now(), &s, &[disk_pod("d", Some("100Mi"))])
        .reclaim
        .unwrap();
    assert_eq!(reclaim.resource, "ephemeral-storage");
    let c = &reclaim.candidates[0];
    assert_eq!(
        c.message,
        "The node was low on resource: ephemeral-storage. Threshold quantity: 1073741840, \
         available: 512Mi. Container app was using 320Mi, request is 100Mi, has larger \
         consumption of ephemeral-storage. "
    );
    assert_eq!(
        c.annotations,
        map(&[
            ("offending_containers", "app"),
            ("offending_containers_usage", "320Mi"),
            ("starved_resource", "ephemeral-storage"),
        ])
    );
}

#[test]
fn inode_message_prints_counts_as_decimal() {
    let mut m = EvictionManager::new(config(vec![hard(Signal::NodeFsInodesFree, q("5k"))]));
    let mut s = Summary::default();
    s.node.fs = Some(FsStats {
        inodes_free: Some(4000),
        inodes: Some(1_000_000),
        ..FsStats::default()
    });
    s.pods = vec![disk_stats("d", MI, MI, &[])];
    let reclaim = m
        .synchronize(Instant::now(), &s, &[disk_pod("d", None)])
        .reclaim
        .unwrap();
    let c = &reclaim.candidates[0];
    assert_eq!(
        c.message,
        "The node was low on resource: inodes. Threshold quantity: 5k, available: 4k. "
    );
    assert_eq!(
        c.annotations,
        map(&[
            ("offending_containers", ""),
            ("offending_containers_usage", ""),
            ("starved_resource", "inodes"),
        ])
    );
}

#[test]
fn soft_eviction_grace_period_is_capped_by_the_pods_own() {
    let mut m = EvictionManager::new(EvictionConfig {
        max_pod_grace_period: Duration::from_secs(30),
        ..config(vec![Threshold {
            signal: Signal::MemoryAvailable,
            value: q("1Gi"),
            grace_period: Duration::from_secs(60),
            min_reclaim: None,
        }])
    });
    let with_tgps = |uid: &str, secs: Option<i64>| {
        let mut p = pod(uid, None, None);
        p.spec.as_mut().unwrap().termination_grace_period_seconds = secs;
        p
    };
    let pods = [
        with_tgps("short", Some(10)),
        with_tgps("long", Some(120)),
        with_tgps("unset", None),
    ];
    let t0 = Instant::now();
    m.synchronize(t0, &node_memory(MI), &pods);
    let reclaim = m
        .synchronize(t0 + Duration::from_secs(60), &node_memory(MI), &pods)
        .reclaim
        .unwrap();
    let grace: BTreeMap<&str, Duration> = reclaim
        .candidates
        .iter()
        .map(|c| (c.uid.as_str(), c.grace_period))
        .collect();
    assert_eq!(grace["short"], Duration::from_secs(10));
    assert_eq!(grace["long"], Duration::from_secs(30));
    assert_eq!(grace["unset"], Duration::from_secs(30));
}

// ---- admission ----

fn pressured(memory: bool, disk: bool) -> EvictionManager {
    let mut m = EvictionManager::new(config(vec![
        hard(Signal::MemoryAvailable, q("100Mi")),
        hard(Signal::NodeFsAvailable, q("1Gi")),
    ]));
    let mut s = node_memory(if memory { MI } else { GI });
    s.node.fs = Some(fs(if disk { MI } else { 10 * GI }, 100 * GI));
    m.synchronize(Instant::now(), &s, &[]);
    assert_eq!(m.pressure().memory, memory);
    assert_eq!(m.pressure().disk, disk);
    m
}

fn tolerating(tolerations: serde_json::Value) -> Pod {
    let mut p = pod("t", None, None);
    p.spec.as_mut().unwrap().tolerations = serde_json::from_value(tolerations).unwrap();
    p
}

fn rejected(message: &str) -> Result<(), Rejection> {
    Err(Rejection {
        reason: "Evicted".into(),
        message: message.into(),
    })
}

#[test]
fn admission_without_pressure() {
    let m = pressured(false, false);
    assert_eq!(m.admit(&pod("b", None, None)), Ok(()));
}

#[test]
fn admission_under_memory_pressure() {
    let m = pressured(true, false);
    assert_eq!(
        m.admit(&pod("besteffort", None, None)),
        rejected("The node had condition: [MemoryPressure]. ")
    );
    assert_eq!(m.admit(&pod("burstable", Some("10Mi"), None)), Ok(()));
    let admitted = [
        json!([{"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"}]),
        json!([{"key": "node.kubernetes.io/memory-pressure", "operator": "Exists"}]),
        json!([{"operator": "Exists"}]),
        json!([{"key": "node.kubernetes.io/memory-pressure", "operator": "Equal"}]),
        json!([{"key": "node.kubernetes.io/memory-pressure"}]),
    ];
    for t in admitted {
        assert_eq!(m.admit(&tolerating(t.clone())), Ok(()), "{t}");
    }
    let refused = [
        json!([{"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoExecute"}]),
        json!([{"key": "node.kubernetes.io/disk-pressure", "operator": "Exists"}]),
        json!([{"key": "node.kubernetes.io/memory-pressure", "operator": "Equal", "value": "x"}]),
    ];
    for t in refused {
        assert_eq!(
            m.admit(&tolerating(t.clone())),
            rejected("The node had condition: [MemoryPressure]. "),
            "{t}"
        );
    }
    let critical = pod("critical", None, Some(2_000_000_000));
    assert_eq!(m.admit(&critical), Ok(()));
}

#[test]
fn admission_under_disk_pressure() {
    let m = pressured(false, true);
    assert_eq!(
        m.admit(&pod("burstable", Some("10Mi"), None)),
        rejected("The node had condition: [DiskPressure]. ")
    );
    let tolerates_all = tolerating(json!([{"operator": "Exists"}]));
    assert_eq!(
        m.admit(&tolerates_all),
        rejected("The node had condition: [DiskPressure]. ")
    );
    let static_pod = with_annotation(pod("s", None, None), "kubernetes.io/config.source", "file");
    assert_eq!(m.admit(&static_pod), Ok(()));

    let both = pressured(true, true);
    assert_eq!(
        both.admit(&pod("burstable", Some("10Mi"), None)),
        rejected("The node had condition: [MemoryPressure DiskPressure]. ")
    );
}

#[test]
fn threshold_amounts_as_allocatable_holds_them_back() {
    let thresholds = parse_thresholds(&EvictionSettings {
        hard: [("memory.available", "100Mi"), ("nodefs.available", "10%")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..EvictionSettings::default()
    })
    .unwrap();
    let amount = |signal: Signal, capacity: i64| {
        thresholds
            .iter()
            .find(|t| t.signal == signal)
            .unwrap()
            .value
            .amount(capacity)
    };
    assert_eq!(amount(Signal::MemoryAvailable, 1 << 40), 104_857_600);
    // float32 0.1 is a hair above 0.1, as in the reference.
    assert_eq!(amount(Signal::NodeFsAvailable, 1_000_000_000), 100_000_001);
}
