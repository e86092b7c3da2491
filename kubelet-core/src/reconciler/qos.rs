//! QoS class of a pod (Guaranteed, Burstable, BestEffort) as the reference computes it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::quantity;

/// A pod's QoS class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum QosClass {
    /// Every container has equal cpu and memory requests and limits.
    Guaranteed,
    /// Some requests or limits, not guaranteed.
    Burstable,
    /// No requests or limits at all.
    BestEffort,
}

impl QosClass {
    /// The API's string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Guaranteed => "Guaranteed",
            Self::Burstable => "Burstable",
            Self::BestEffort => "BestEffort",
        }
    }

    /// The class named by the API's string.
    pub fn from_api(s: &str) -> Option<Self> {
        match s {
            "Guaranteed" => Some(Self::Guaranteed),
            "Burstable" => Some(Self::Burstable),
            "BestEffort" => Some(Self::BestEffort),
            _ => None,
        }
    }
}

/// The only resources that count for QoS.
const QOS_RESOURCES: [&str; 2] = ["cpu", "memory"];

/// Compute the QoS class of a pod.
///
/// As the reference's `GetPodQOS`, a class already recorded in `status.qosClass` wins: it is
/// fixed at creation and must not move when resources are resized in place. Otherwise the
/// class is computed from the requests and limits of all init and regular containers (or
/// from pod-level resources when the pod sets them): requests default to limits, zero
/// quantities count as unset, and sums are compared exactly.
pub fn qos_class(pod: &Pod) -> QosClass {
    if let Some(class) = pod
        .status
        .as_ref()
        .and_then(|s| s.qos_class.as_deref())
        .and_then(QosClass::from_api)
    {
        return class;
    }
    compute_qos_class(pod)
}

/// Compute the QoS class from the spec alone, ignoring `status.qosClass`.
pub fn compute_qos_class(pod: &Pod) -> QosClass {
    let mut requests: BTreeMap<&str, i128> = BTreeMap::new();
    let mut limits: BTreeMap<&str, i128> = BTreeMap::new();
    let mut guaranteed = true;

    let Some(spec) = pod.spec.as_ref() else {
        return QosClass::BestEffort;
    };
    let pod_level = spec
        .resources
        .as_ref()
        .filter(|r| non_empty(&r.requests) || non_empty(&r.limits));
    let resource_sets: Vec<&ResourceRequirements> = match pod_level {
        Some(r) => vec![r],
        None => spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .filter_map(|c| c.resources.as_ref())
            .collect(),
    };
    let container_count = if pod_level.is_some() {
        1
    } else {
        spec.containers.len() + spec.init_containers.as_ref().map_or(0, Vec::len)
    };
    // Containers without any resources contribute nothing and are not guaranteed.
    if resource_sets.len() < container_count {
        guaranteed = false;
    }

    for res in resource_sets {
        let lims = positive_values(res.limits.as_ref());
        // API defaulting: a request left unset takes the limit.
        let mut reqs = positive_values(res.requests.as_ref());
        for (name, v) in &lims {
            if !res.requests.as_ref().is_some_and(|r| r.contains_key(*name)) {
                reqs.insert(name, *v);
            }
        }
        for (name, v) in reqs {
            *requests.entry(name).or_insert(0) += v;
        }
        if !QOS_RESOURCES.iter().all(|r| lims.contains_key(r)) {
            guaranteed = false;
        }
        for (name, v) in lims {
            *limits.entry(name).or_insert(0) += v;
        }
    }

    if requests.is_empty() && limits.is_empty() {
        return QosClass::BestEffort;
    }
    if guaranteed
        && requests.len() == limits.len()
        && requests.iter().all(|(name, r)| limits.get(name) == Some(r))
    {
        return QosClass::Guaranteed;
    }
    QosClass::Burstable
}

fn non_empty(list: &Option<BTreeMap<String, Quantity>>) -> bool {
    list.as_ref().is_some_and(|l| !l.is_empty())
}

/// The positive cpu and memory values of a resource list, in nano-units. Values that do not
/// parse count as unset (the API server rejects them; a static pod may still carry one).
fn positive_values(list: Option<&BTreeMap<String, Quantity>>) -> BTreeMap<&'static str, i128> {
    let mut out = BTreeMap::new();
    let Some(list) = list else {
        return out;
    };
    for name in QOS_RESOURCES {
        let Some(q) = list.get(name) else { continue };
        match quantity::parse_nano(q) {
            Ok(v) if v > 0 => {
                out.insert(name, v);
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(resource = name, error = %e, "ignoring unparsable quantity for QoS")
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec, PodStatus};

    fn res(requests: &[(&str, &str)], limits: &[(&str, &str)]) -> Option<ResourceRequirements> {
        let list = |items: &[(&str, &str)]| {
            (!items.is_empty()).then(|| {
                items
                    .iter()
                    .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                    .collect()
            })
        };
        Some(ResourceRequirements {
            requests: list(requests),
            limits: list(limits),
            ..Default::default()
        })
    }

    fn container(name: &str, resources: Option<ResourceRequirements>) -> Container {
        Container {
            name: name.into(),
            resources,
            ..Default::default()
        }
    }

    fn pod(containers: Vec<Container>, init: Vec<Container>) -> Pod {
        Pod {
            spec: Some(PodSpec {
                containers,
                init_containers: (!init.is_empty()).then_some(init),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn classic_cases() {
        use QosClass::*;
        let full = |cpu: &str, mem: &str| {
            res(
                &[("cpu", cpu), ("memory", mem)],
                &[("cpu", cpu), ("memory", mem)],
            )
        };
        let cases: Vec<(&str, Pod, QosClass)> = vec![
            (
                "no resources",
                pod(vec![container("a", None)], vec![]),
                BestEffort,
            ),
            (
                "empty resources",
                pod(vec![container("a", res(&[], &[]))], vec![]),
                BestEffort,
            ),
            (
                "zero requests",
                pod(
                    vec![container("a", res(&[("cpu", "0"), ("memory", "0")], &[]))],
                    vec![],
                ),
                BestEffort,
            ),
            (
                "only cpu request",
                pod(vec![container("a", res(&[("cpu", "100m")], &[]))], vec![]),
                Burstable,
            ),
            (
                "equal requests and limits",
                pod(vec![container("a", full("100m", "100Mi"))], vec![]),
                Guaranteed,
            ),
            (
                "limits only (requests default)",
                pod(
                    vec![container("a", res(&[], &[("cpu", "1"), ("memory", "1Gi")]))],
                    vec![],
                ),
                Guaranteed,
            ),
            (
                "equal in other units",
                pod(
                    vec![container(
                        "a",
                        res(
                            &[("cpu", "1"), ("memory", "1Gi")],
                            &[("cpu", "1000m"), ("memory", "1073741824")],
                        ),
                    )],
                    vec![],
                ),
                Guaranteed,
            ),
            (
                "request below limit",
                pod(
                    vec![container(
                        "a",
                        res(
                            &[("cpu", "100m"), ("memory", "100Mi")],
                            &[("cpu", "200m"), ("memory", "100Mi")],
                        ),
                    )],
                    vec![],
                ),
                Burstable,
            ),
            (
                "missing memory limit",
                pod(
                    vec![container("a", res(&[("cpu", "1")], &[("cpu", "1")]))],
                    vec![],
                ),
                Burstable,
            ),
            (
                "one of two containers without resources",
                pod(
                    vec![container("a", full("1", "1Gi")), container("b", None)],
                    vec![],
                ),
                Burstable,
            ),
            (
                "two guaranteed containers",
                pod(
                    vec![
                        container("a", full("1", "1Gi")),
                        container("b", full("500m", "10Mi")),
                    ],
                    vec![],
                ),
                Guaranteed,
            ),
            (
                "init container best effort",
                pod(
                    vec![container("a", full("1", "1Gi"))],
                    vec![container("i", None)],
                ),
                Burstable,
            ),
            (
                "init container guaranteed",
                pod(
                    vec![container("a", full("1", "1Gi"))],
                    vec![container("i", full("2", "2Gi"))],
                ),
                Guaranteed,
            ),
            (
                "only init container has resources",
                pod(
                    vec![container("a", None)],
                    vec![container("i", res(&[("memory", "1Gi")], &[]))],
                ),
                Burstable,
            ),
            (
                "hugepages ignored",
                pod(
                    vec![container("a", res(&[], &[("hugepages-2Mi", "2Mi")]))],
                    vec![],
                ),
                BestEffort,
            ),
            (
                "extended resource ignored for guaranteed",
                pod(
                    vec![container(
                        "a",
                        res(
                            &[("cpu", "1"), ("memory", "1Gi"), ("example.com/gpu", "1")],
                            &[("cpu", "1"), ("memory", "1Gi"), ("example.com/gpu", "1")],
                        ),
                    )],
                    vec![],
                ),
                Guaranteed,
            ),
            (
                "zero limit counts as unset",
                pod(
                    vec![container(
                        "a",
                        res(&[("cpu", "1")], &[("cpu", "0"), ("memory", "1Gi")]),
                    )],
                    vec![],
                ),
                Burstable,
            ),
        ];
        for (name, pod, want) in cases {
            assert_eq!(qos_class(&pod), want, "{name}");
        }
    }

    #[test]
    fn pod_level_resources_decide_when_set() {
        let mut p = pod(vec![container("a", None)], vec![]);
        if let Some(spec) = p.spec.as_mut() {
            spec.resources = res(&[], &[("cpu", "1"), ("memory", "1Gi")]);
        }
        assert_eq!(qos_class(&p), QosClass::Guaranteed);
    }

    #[test]
    fn recorded_class_wins() {
        let mut p = pod(vec![container("a", None)], vec![]);
        p.status = Some(PodStatus {
            qos_class: Some("Burstable".into()),
            ..Default::default()
        });
        assert_eq!(qos_class(&p), QosClass::Burstable);
        assert_eq!(compute_qos_class(&p), QosClass::BestEffort);
    }
}
