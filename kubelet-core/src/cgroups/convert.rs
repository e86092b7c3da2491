//! The reference's resource formulas: CPU shares and CFS quota from millicores, the cgroup v2
//! `cpu.weight` from shares, the file values of v1 and v2, and the resources of a pod cgroup
//! (`ResourceConfigForPod`: requests and limits summed as the scheduler does, plus the pod's
//! `overhead`) and of the `kubepods` cgroup (node allocatable).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::{CgroupSettings, ResourceConfig};
use crate::quantity;
use crate::reconciler::qos::{QosClass, qos_class};
use crate::reconciler::spec::{milli_cpu_to_quota, milli_cpu_to_shares};

/// The least CPU shares a cgroup gets (`MinShares`): BestEffort pods and their tier.
pub const MIN_SHARES: u64 = 2;
/// The most CPU shares the kernel takes (`MaxShares`).
pub const MAX_SHARES: u64 = 262_144;
/// The largest cgroup v2 `cpu.weight`.
pub const MAX_WEIGHT: u64 = 10_000;

/// CPU shares for a CPU amount in millicores (`MilliCPUToShares`): 1024 per CPU, at least
/// 2 (also for zero), at most 262144.
pub fn cpu_shares(milli_cpu: i64) -> u64 {
    u64::try_from(milli_cpu_to_shares(milli_cpu.max(0))).unwrap_or(MIN_SHARES)
}

/// The CFS quota for a CPU limit in millicores over `period_us` (`MilliCPUToQuota`): 0
/// without a limit, at least 1 ms.
pub fn cpu_quota(milli_cpu: i64, period_us: u64) -> i64 {
    let period = i64::try_from(period_us).unwrap_or(i64::MAX);
    milli_cpu_to_quota(milli_cpu.max(0), period)
}

/// The cgroup v2 `cpu.weight` for v1 CPU shares, as the reference's cgroup manager converts
/// them: `[2, 262144]` mapped linearly onto `[1, 10000]`.
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares >= MAX_SHARES {
        return MAX_WEIGHT;
    }
    let shares = shares.max(MIN_SHARES);
    1 + ((shares - MIN_SHARES) * (MAX_WEIGHT - 1)) / (MAX_SHARES - MIN_SHARES)
}

/// The v2 `cpu.max` line (`<quota> <period>`, `max <period>` when unlimited); `None` when
/// neither is set.
pub fn v2_cpu_max(quota: Option<i64>, period: Option<u64>) -> Option<String> {
    let quota = quota.unwrap_or(0);
    let period = period.unwrap_or(0);
    if quota == 0 && period == 0 {
        return None;
    }
    let q = if quota > 0 {
        quota.to_string()
    } else {
        "max".to_string()
    };
    Some(if period > 0 {
        format!("{q} {period}")
    } else {
        q
    })
}

/// A v2 limit (`memory.max`, `pids.max`): `max` for unlimited (negative), `None` for 0
/// (not set).
pub fn v2_limit(value: i64) -> Option<String> {
    match value {
        0 => None,
        v if v < 0 => Some("max".to_string()),
        v => Some(v.to_string()),
    }
}

/// `pids.max` (v1 and v2): `max` for unlimited (0 or less).
pub fn pids_max(limit: i64) -> String {
    if limit > 0 {
        limit.to_string()
    } else {
        "max".to_string()
    }
}

/// CPU in millicores and memory in bytes of one resource list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Amounts {
    cpu: Option<i64>,
    memory: Option<i64>,
}

impl Amounts {
    fn parse(list: Option<&BTreeMap<String, Quantity>>, field: &str) -> Result<Self, String> {
        let Some(list) = list else {
            return Ok(Self::default());
        };
        let cpu = list
            .get("cpu")
            .map(|q| quantity::parse_milli(q).map_err(|e| format!("{field}.cpu: {e}")))
            .transpose()?;
        let memory = list
            .get("memory")
            .map(|q| quantity::parse_units(q).map_err(|e| format!("{field}.memory: {e}")))
            .transpose()?;
        Ok(Self { cpu, memory })
    }

    fn add(&mut self, other: Self) {
        let sum = |a: Option<i64>, b: Option<i64>| match (a, b) {
            (Some(a), Some(b)) => Some(a.saturating_add(b)),
            (a, b) => a.or(b),
        };
        self.cpu = sum(self.cpu, other.cpu);
        self.memory = sum(self.memory, other.memory);
    }

    fn max(&mut self, other: Self) {
        let max = |a: Option<i64>, b: Option<i64>| match (a, b) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        self.cpu = max(self.cpu, other.cpu);
        self.memory = max(self.memory, other.memory);
    }
}

/// A container's requests (a resource with a limit and no request requests its limit, as
/// API defaulting sets it) and limits.
fn container_amounts(c: &Container, field: &str) -> Result<(Amounts, Amounts), String> {
    let r = c.resources.as_ref();
    let limits = Amounts::parse(
        r.and_then(|r| r.limits.as_ref()),
        &format!("{field}.limits"),
    )?;
    let mut requests = Amounts::parse(
        r.and_then(|r| r.requests.as_ref()),
        &format!("{field}.requests"),
    )?;
    requests.cpu = requests.cpu.or(limits.cpu);
    requests.memory = requests.memory.or(limits.memory);
    Ok((requests, limits))
}

/// The pod's requests and limits without the overhead, as the reference aggregates them:
/// regular containers and sidecars summed; each other init container with the sidecars
/// started before it; the larger of the two per resource. Pod-level resources, when set,
/// win. Also whether every container declares a CPU and a memory limit.
struct PodAmounts {
    requests: Amounts,
    limits: Amounts,
    cpu_limits_declared: bool,
    memory_limits_declared: bool,
}

fn pod_amounts(spec: &PodSpec) -> Result<PodAmounts, String> {
    let mut requests = Amounts::default();
    let mut limits = Amounts::default();
    let mut cpu_declared = true;
    let mut memory_declared = true;
    let mut declare = |l: &Amounts| {
        cpu_declared &= l.cpu.is_some_and(|v| v != 0);
        memory_declared &= l.memory.is_some_and(|v| v != 0);
    };
    for (i, c) in spec.containers.iter().enumerate() {
        let (req, lim) = container_amounts(c, &format!("spec.containers[{i}].resources"))?;
        declare(&lim);
        requests.add(req);
        limits.add(lim);
    }
    let (mut sidecar_req, mut sidecar_lim) = (Amounts::default(), Amounts::default());
    let (mut init_req, mut init_lim) = (Amounts::default(), Amounts::default());
    for (i, c) in spec.init_containers.iter().flatten().enumerate() {
        let (req, lim) = container_amounts(c, &format!("spec.initContainers[{i}].resources"))?;
        declare(&lim);
        if c.restart_policy.as_deref() == Some("Always") {
            requests.add(req);
            limits.add(lim);
            sidecar_req.add(req);
            sidecar_lim.add(lim);
            init_req.max(sidecar_req);
            init_lim.max(sidecar_lim);
        } else {
            let (mut r, mut l) = (req, lim);
            r.add(sidecar_req);
            l.add(sidecar_lim);
            init_req.max(r);
            init_lim.max(l);
        }
    }
    requests.max(init_req);
    limits.max(init_lim);
    if let Some(pod_level) = spec.resources.as_ref() {
        let req = Amounts::parse(pod_level.requests.as_ref(), "spec.resources.requests")?;
        let lim = Amounts::parse(pod_level.limits.as_ref(), "spec.resources.limits")?;
        if lim.cpu.is_some() {
            cpu_declared = true;
        }
        if lim.memory.is_some() {
            memory_declared = true;
        }
        requests.cpu = req.cpu.or(lim.cpu).or(requests.cpu);
        requests.memory = req.memory.or(lim.memory).or(requests.memory);
        limits.cpu = lim.cpu.or(limits.cpu);
        limits.memory = lim.memory.or(limits.memory);
    }
    Ok(PodAmounts {
        requests,
        limits,
        cpu_limits_declared: cpu_declared,
        memory_limits_declared: memory_declared,
    })
}

/// The pod's CPU request in millicores with its overhead (`PodRequests`), what the
/// Burstable tier's shares sum.
pub fn pod_cpu_request(pod: &Pod) -> Result<i64, String> {
    let default_spec = PodSpec::default();
    let spec = pod.spec.as_ref().unwrap_or(&default_spec);
    let mut requests = pod_amounts(spec)?.requests;
    requests.add(Amounts::parse(spec.overhead.as_ref(), "spec.overhead")?);
    Ok(requests.cpu.unwrap_or(0))
}

/// The resources of the pod's cgroup (`ResourceConfigForPod`), from its requests and limits
/// plus its `overhead` (added to every request, and to the limits that are set):
/// - Guaranteed: shares from the CPU requests, the CFS quota from the CPU limits, the memory
///   limit;
/// - Burstable: the shares; the quota only when every container has a CPU limit, the memory
///   limit only when every container has a memory limit;
/// - BestEffort: the minimum shares.
///
/// The pids limit is `--pod-max-pids` when positive.
pub fn pod_resource_config(pod: &Pod, settings: &CgroupSettings) -> Result<ResourceConfig, String> {
    let default_spec = PodSpec::default();
    let spec = pod.spec.as_ref().unwrap_or(&default_spec);
    let amounts = pod_amounts(spec)?;
    let overhead = Amounts::parse(spec.overhead.as_ref(), "spec.overhead")?;
    let mut requests = amounts.requests;
    requests.add(overhead);
    let mut limits = amounts.limits;
    if let (Some(l), Some(o)) = (limits.cpu.filter(|v| *v != 0), overhead.cpu) {
        limits.cpu = Some(l.saturating_add(o));
    }
    if let (Some(l), Some(o)) = (limits.memory.filter(|v| *v != 0), overhead.memory) {
        limits.memory = Some(l.saturating_add(o));
    }
    let shares = cpu_shares(requests.cpu.unwrap_or(0));
    let period = settings.cpu_cfs_quota_period_us;
    let quota = if settings.cpu_cfs_quota {
        cpu_quota(limits.cpu.unwrap_or(0), period)
    } else {
        -1
    };
    let memory = limits.memory.unwrap_or(0);
    let mut config = ResourceConfig::default();
    match qos_class(pod) {
        QosClass::Guaranteed => {
            config.cpu_shares = Some(shares);
            config.cpu_quota = Some(quota);
            config.cpu_period = Some(period);
            config.memory = Some(memory);
        }
        QosClass::Burstable => {
            config.cpu_shares = Some(shares);
            if amounts.cpu_limits_declared {
                config.cpu_quota = Some(quota);
                config.cpu_period = Some(period);
            }
            if amounts.memory_limits_declared {
                config.memory = Some(memory);
            }
        }
        QosClass::BestEffort => config.cpu_shares = Some(MIN_SHARES),
    }
    if settings.pod_pids_limit > 0 {
        config.pids_limit = Some(settings.pod_pids_limit);
    }
    Ok(config)
}

/// The resources of the `kubepods` cgroup: the node's allocatable CPU as shares, and its
/// memory as a limit (capacity minus the reserved amounts when `pods` is enforced, the
/// capacity otherwise); nothing when the capacity is unknown.
pub fn node_allocatable_config(settings: &CgroupSettings) -> ResourceConfig {
    let Some(capacity) = settings.node_capacity else {
        return ResourceConfig::default();
    };
    let (cpu, memory) = if settings.enforce_node_allocatable_pods {
        (
            capacity.cpu_milli - settings.reserved.cpu_milli,
            capacity.memory_bytes - settings.reserved.memory_bytes,
        )
    } else {
        (capacity.cpu_milli, capacity.memory_bytes)
    };
    ResourceConfig {
        cpu_shares: (cpu > 0).then(|| cpu_shares(cpu)),
        memory: (memory > 0).then_some(memory),
        ..ResourceConfig::default()
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::ResourceRequirements;

    use super::*;

    #[test]
    fn shares_as_the_reference() {
        // MilliCPUToShares: zero and tiny amounts get the minimum, 1024 per CPU, capped.
        assert_eq!(cpu_shares(0), 2);
        assert_eq!(cpu_shares(1), 2);
        assert_eq!(cpu_shares(100), 102);
        assert_eq!(cpu_shares(250), 256);
        assert_eq!(cpu_shares(1000), 1024);
        assert_eq!(cpu_shares(2250), 2304);
        assert_eq!(cpu_shares(1_000_000), 262_144);
    }

    #[test]
    fn quota_as_the_reference() {
        // MilliCPUToQuota with the 100 ms period: none without a limit, at least 1 ms.
        assert_eq!(cpu_quota(0, 100_000), 0);
        assert_eq!(cpu_quota(1, 100_000), 1000);
        assert_eq!(cpu_quota(10, 100_000), 1000);
        assert_eq!(cpu_quota(500, 100_000), 50_000);
        assert_eq!(cpu_quota(2250, 100_000), 225_000);
        assert_eq!(cpu_quota(1500, 50_000), 75_000);
    }

    #[test]
    fn v2_weight_from_shares() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(0), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(102), 4);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(u64::MAX), 10_000);
    }

    #[test]
    fn v2_values() {
        assert_eq!(v2_cpu_max(None, None), None);
        assert_eq!(
            v2_cpu_max(Some(50_000), Some(100_000)).as_deref(),
            Some("50000 100000")
        );
        assert_eq!(
            v2_cpu_max(Some(-1), Some(100_000)).as_deref(),
            Some("max 100000")
        );
        assert_eq!(v2_limit(0), None);
        assert_eq!(v2_limit(-1).as_deref(), Some("max"));
        assert_eq!(v2_limit(1 << 20).as_deref(), Some("1048576"));
        assert_eq!(pids_max(-1), "max");
        assert_eq!(pids_max(0), "max");
        assert_eq!(pids_max(1024), "1024");
    }

    fn list(items: &[(&str, &str)]) -> Option<BTreeMap<String, Quantity>> {
        (!items.is_empty()).then(|| {
            items
                .iter()
                .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                .collect()
        })
    }

    fn c(name: &str, req: &[(&str, &str)], lim: &[(&str, &str)]) -> Container {
        Container {
            name: name.into(),
            resources: Some(ResourceRequirements {
                requests: list(req),
                limits: list(lim),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn pod(containers: Vec<Container>, overhead: &[(&str, &str)]) -> Pod {
        Pod {
            spec: Some(PodSpec {
                containers,
                overhead: list(overhead),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    const MI: i64 = 1 << 20;

    /// The reference's Pod Overhead page: two containers limited to 500m/100Mi and
    /// 1500m/100Mi (Guaranteed) with a 250m/120Mi overhead get a pod cgroup of 320Mi
    /// (335544320 bytes) and a 2250m quota (cpu.cfs_quota_us 225000).
    #[test]
    fn documented_overhead_example() {
        let p = pod(
            vec![
                c("busybox-ctr", &[], &[("cpu", "500m"), ("memory", "100Mi")]),
                c("nginx-ctr", &[], &[("cpu", "1500m"), ("memory", "100Mi")]),
            ],
            &[("cpu", "250m"), ("memory", "120Mi")],
        );
        let r = pod_resource_config(&p, &CgroupSettings::default()).unwrap();
        assert_eq!(r.memory, Some(335_544_320));
        assert_eq!(r.cpu_quota, Some(225_000));
        assert_eq!(r.cpu_period, Some(100_000));
        assert_eq!(r.cpu_shares, Some(2304));
        assert_eq!(r.pids_limit, None);
    }

    #[test]
    fn burstable_limits_only_when_every_container_declares_them() {
        // Both containers limit memory, one limits CPU: memory limit, no quota.
        let p = pod(
            vec![
                c(
                    "a",
                    &[("cpu", "100m"), ("memory", "32Mi")],
                    &[("cpu", "200m"), ("memory", "64Mi")],
                ),
                c("b", &[("cpu", "300m")], &[("memory", "64Mi")]),
            ],
            &[("cpu", "100m"), ("memory", "16Mi")],
        );
        let r = pod_resource_config(&p, &CgroupSettings::default()).unwrap();
        // Requests 100m + 300m + 100m overhead.
        assert_eq!(r.cpu_shares, Some(cpu_shares(500)));
        assert_eq!(r.cpu_quota, None);
        assert_eq!(r.cpu_period, None);
        assert_eq!(r.memory, Some(144 * MI));

        // No container limits memory: no memory limit, the overhead is not added to an
        // unset limit.
        let p = pod(
            vec![c("a", &[("cpu", "100m")], &[("cpu", "1")])],
            &[("cpu", "250m"), ("memory", "120Mi")],
        );
        let r = pod_resource_config(&p, &CgroupSettings::default()).unwrap();
        assert_eq!(r.cpu_shares, Some(cpu_shares(350)));
        assert_eq!(r.cpu_quota, Some(125_000));
        assert_eq!(r.memory, None);
    }

    #[test]
    fn best_effort_gets_minimum_shares_and_pids_limit_applies() {
        let p = pod(vec![c("a", &[], &[])], &[("cpu", "250m")]);
        let settings = CgroupSettings {
            pod_pids_limit: 1024,
            ..CgroupSettings::default()
        };
        let r = pod_resource_config(&p, &settings).unwrap();
        assert_eq!(
            r,
            ResourceConfig {
                cpu_shares: Some(2),
                pids_limit: Some(1024),
                ..ResourceConfig::default()
            }
        );
        // BestEffort: its CPU request is the overhead's alone.
        assert_eq!(pod_cpu_request(&p), Ok(250));
    }

    #[test]
    fn without_cfs_quota_the_quota_is_unlimited() {
        let p = pod(vec![c("a", &[], &[("cpu", "1"), ("memory", "1Gi")])], &[]);
        let settings = CgroupSettings {
            cpu_cfs_quota: false,
            ..CgroupSettings::default()
        };
        let r = pod_resource_config(&p, &settings).unwrap();
        assert_eq!(r.cpu_quota, Some(-1));
        assert_eq!(r.memory, Some(1 << 30));
    }

    #[test]
    fn init_containers_count_by_their_peak_and_must_declare_limits() {
        let mut p = pod(
            vec![c("a", &[], &[("cpu", "200m"), ("memory", "64Mi")])],
            &[],
        );
        if let Some(spec) = p.spec.as_mut() {
            spec.init_containers = Some(vec![c(
                "init",
                &[("cpu", "1")],
                &[("cpu", "1"), ("memory", "256Mi")],
            )]);
        }
        let r = pod_resource_config(&p, &CgroupSettings::default()).unwrap();
        assert_eq!(r.cpu_shares, Some(1024));
        assert_eq!(r.cpu_quota, Some(100_000));
        assert_eq!(r.memory, Some(256 * MI));
        // An init container without a memory limit: the pod gets none.
        if let Some(spec) = p.spec.as_mut() {
            spec.init_containers = Some(vec![c("init", &[("cpu", "1")], &[("cpu", "1")])]);
        }
        let r = pod_resource_config(&p, &CgroupSettings::default()).unwrap();
        assert_eq!(r.memory, None);
        assert_eq!(r.cpu_quota, Some(100_000));
    }

    #[test]
    fn invalid_quantities_name_their_field() {
        let p = pod(vec![c("a", &[], &[("memory", "lots")])], &[]);
        let err = pod_resource_config(&p, &CgroupSettings::default()).unwrap_err();
        assert!(
            err.starts_with("spec.containers[0].resources.limits.memory:"),
            "{err}"
        );
    }

    #[test]
    fn kubepods_is_sized_to_allocatable() {
        let mut settings = CgroupSettings::default();
        assert_eq!(
            node_allocatable_config(&settings),
            ResourceConfig::default()
        );
        settings.node_capacity = Some(super::super::NodeCgroupResources {
            cpu_milli: 2000,
            memory_bytes: 4096 * MI,
        });
        settings.reserved = super::super::NodeCgroupResources {
            cpu_milli: 500,
            memory_bytes: 512 * MI,
        };
        let r = node_allocatable_config(&settings);
        assert_eq!(r.cpu_shares, Some(1536));
        assert_eq!(r.memory, Some(3584 * MI));
        settings.enforce_node_allocatable_pods = false;
        let r = node_allocatable_config(&settings);
        assert_eq!(r.cpu_shares, Some(2048));
        assert_eq!(r.memory, Some(4096 * MI));
    }
}
