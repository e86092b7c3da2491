//! Pod-level resources as the reference computes them for the sandbox
//! (`kuberuntime_sandbox_linux.go`: `calculateSandboxResources`,
//! `convertOverheadToLinuxResources`; `resourcehelper.PodRequests`/`PodLimits`): the sum of the
//! containers' CPU and memory (sidecars included, init containers by their peak) without the
//! overhead, and the pod's `overhead` (set from its RuntimeClass) on its own, both handed to
//! the runtime with the sandbox.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::spec::{CPU_PERIOD_US, milli_cpu_to_quota, milli_cpu_to_shares};
use crate::quantity;
use crate::runtime::LinuxResources;

/// CPU in millicores and memory in bytes; a resource absent from the map is unset.
type Amounts = BTreeMap<&'static str, i64>;

fn amounts(list: Option<&BTreeMap<String, Quantity>>, field: &str) -> Result<Amounts, String> {
    let mut out = Amounts::new();
    let Some(list) = list else {
        return Ok(out);
    };
    if let Some(q) = list.get("cpu") {
        let v = quantity::parse_milli(q).map_err(|e| format!("{field}.cpu: {e}"))?;
        out.insert("cpu", v);
    }
    if let Some(q) = list.get("memory") {
        let v = quantity::parse_units(q).map_err(|e| format!("{field}.memory: {e}"))?;
        out.insert("memory", v);
    }
    Ok(out)
}

fn add(into: &mut Amounts, more: &Amounts) {
    for (k, v) in more {
        let e = into.entry(k).or_insert(0);
        *e = e.saturating_add(*v);
    }
}

fn max_into(into: &mut Amounts, other: &Amounts) {
    for (k, v) in other {
        let e = into.entry(k).or_insert(*v);
        *e = (*e).max(*v);
    }
}

/// The reference's `PodRequests`/`PodLimits` without the overhead, for `kind` `requests`
/// or `limits`: regular containers and sidecars summed, each other init container with the
/// sidecars started before it, the larger of the two per resource.
fn pod_amounts(spec: &PodSpec, kind: &str) -> Result<Amounts, String> {
    let of = |c: &Container, field: String| {
        let r = c.resources.as_ref();
        let list = match kind {
            "requests" => r.and_then(|r| r.requests.as_ref()),
            _ => r.and_then(|r| r.limits.as_ref()),
        };
        amounts(list, &format!("{field}.resources.{kind}"))
    };
    let mut total = Amounts::new();
    for (i, c) in spec.containers.iter().enumerate() {
        add(&mut total, &of(c, format!("spec.containers[{i}]"))?);
    }
    let mut sidecars = Amounts::new();
    let mut init_peak = Amounts::new();
    for (i, c) in spec.init_containers.iter().flatten().enumerate() {
        let own = of(c, format!("spec.initContainers[{i}]"))?;
        let while_running = if c.restart_policy.as_deref() == Some("Always") {
            add(&mut total, &own);
            add(&mut sidecars, &own);
            sidecars.clone()
        } else {
            let mut with_sidecars = own;
            add(&mut with_sidecars, &sidecars);
            with_sidecars
        };
        max_into(&mut init_peak, &while_running);
    }
    max_into(&mut total, &init_peak);
    Ok(total)
}

/// The reference's `calculateLinuxResources`: shares from the CPU request (the limit
/// without a request), quota from the CPU limit, the memory limit.
fn linux_resources(cpu_request: Option<i64>, cpu_limit: i64, memory_limit: i64) -> LinuxResources {
    LinuxResources {
        cpu_period: CPU_PERIOD_US,
        cpu_quota: milli_cpu_to_quota(cpu_limit, CPU_PERIOD_US),
        cpu_shares: milli_cpu_to_shares(cpu_request.unwrap_or(cpu_limit)),
        memory_limit_in_bytes: memory_limit,
        oom_score_adj: 0,
    }
}

/// The sum of the pod's container resources, without the overhead.
pub fn sandbox_resources(pod: &Pod) -> Result<LinuxResources, String> {
    let default_spec = PodSpec::default();
    let spec = pod.spec.as_ref().unwrap_or(&default_spec);
    let requests = pod_amounts(spec, "requests")?;
    let limits = pod_amounts(spec, "limits")?;
    Ok(linux_resources(
        requests.get("cpu").copied(),
        limits.get("cpu").copied().unwrap_or(0),
        limits.get("memory").copied().unwrap_or(0),
    ))
}

/// The pod's overhead as resources with requests equal to limits; `None` without one.
pub fn overhead_resources(pod: &Pod) -> Result<Option<LinuxResources>, String> {
    let Some(overhead) = pod.spec.as_ref().and_then(|s| s.overhead.as_ref()) else {
        return Ok(None);
    };
    let o = amounts(Some(overhead), "spec.overhead")?;
    let cpu = o.get("cpu").copied().unwrap_or(0);
    Ok(Some(linux_resources(
        Some(cpu),
        cpu,
        o.get("memory").copied().unwrap_or(0),
    )))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::ResourceRequirements;

    use super::*;

    fn list(items: &[(&str, &str)]) -> Option<BTreeMap<String, Quantity>> {
        (!items.is_empty()).then(|| {
            items
                .iter()
                .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                .collect()
        })
    }

    fn c(name: &str, req: &[(&str, &str)], lim: &[(&str, &str)], sidecar: bool) -> Container {
        Container {
            name: name.into(),
            resources: Some(ResourceRequirements {
                requests: list(req),
                limits: list(lim),
                ..Default::default()
            }),
            restart_policy: sidecar.then(|| "Always".to_string()),
            ..Default::default()
        }
    }

    fn pod(spec: PodSpec) -> Pod {
        Pod {
            spec: Some(spec),
            ..Default::default()
        }
    }

    #[test]
    fn containers_sum_and_init_containers_peak() {
        let p = pod(PodSpec {
            containers: vec![
                c(
                    "a",
                    &[("cpu", "100m")],
                    &[("cpu", "200m"), ("memory", "64Mi")],
                    false,
                ),
                c("b", &[("cpu", "300m")], &[("memory", "64Mi")], false),
            ],
            init_containers: Some(vec![
                c("side", &[("cpu", "50m")], &[("memory", "32Mi")], true),
                // 1 CPU while it runs, with the sidecar: more than the regular sum.
                c("init", &[("cpu", "1")], &[("memory", "512Mi")], false),
            ]),
            ..Default::default()
        });
        let r = sandbox_resources(&p).unwrap();
        // Requests: max(100+300+50, 1000+50) = 1050m.
        assert_eq!(r.cpu_shares, milli_cpu_to_shares(1050));
        // CPU limits: only a's 200m.
        assert_eq!(r.cpu_quota, 20_000);
        // Memory limits: max(64+64+32, 512+32) Mi.
        assert_eq!(r.memory_limit_in_bytes, 544 << 20);
        assert_eq!(r.cpu_period, CPU_PERIOD_US);
    }

    #[test]
    fn no_cpu_request_takes_the_limit_and_best_effort_gets_minimum_shares() {
        let p = pod(PodSpec {
            containers: vec![c("a", &[], &[("cpu", "500m")], false)],
            ..Default::default()
        });
        assert_eq!(sandbox_resources(&p).unwrap().cpu_shares, 512);
        let p = pod(PodSpec {
            containers: vec![c("a", &[], &[], false)],
            ..Default::default()
        });
        let r = sandbox_resources(&p).unwrap();
        assert_eq!(
            (r.cpu_shares, r.cpu_quota, r.memory_limit_in_bytes),
            (2, 0, 0)
        );
    }

    #[test]
    fn overhead_is_guaranteed() {
        assert_eq!(overhead_resources(&pod(PodSpec::default())), Ok(None));
        let p = pod(PodSpec {
            overhead: list(&[("cpu", "250m"), ("memory", "120Mi")]),
            ..Default::default()
        });
        let o = overhead_resources(&p).unwrap().unwrap();
        assert_eq!(
            (o.cpu_shares, o.cpu_quota, o.memory_limit_in_bytes),
            (256, 25_000, 120 << 20)
        );
        let bad = pod(PodSpec {
            overhead: list(&[("memory", "lots")]),
            ..Default::default()
        });
        let err = overhead_resources(&bad).unwrap_err();
        assert!(err.starts_with("spec.overhead.memory:"), "{err}");
    }
}
