//! The kubelet's admission of a pod as it first comes, after the eviction admit handler
//! ([`crate::eviction::EvictionManager::admit`]): the reference's predicate admit handler
//! (`pkg/kubelet/lifecycle/predicate.go` over the scheduler's `AdmissionCheck`). A pod bound
//! to the node without the scheduler (`nodeName` set by hand, a static pod) is refused here
//! when the node cannot hold it, as everywhere else.
//!
//! In the reference's order, the first failure wins:
//! - the pod's `kubernetes.io/os` label or `spec.os.name` is not the node's OS
//!   (`PodOSSelectorNodeLabelDoesNotMatch`, `PodOSNotSupported`);
//! - resources: one more pod than `pods` allows, or a request (cpu, memory,
//!   ephemeral-storage, huge pages, extended resources the node has) above what allocatable
//!   leaves after the other admitted pods (`OutOfcpu`, `OutOfmemory`, ...: "Node didn't have
//!   enough resource: cpu, requested: 2000, used: 500, capacity: 1000");
//! - the required node affinity or `nodeSelector` does not match the node's labels
//!   (`NodeAffinity`); `nodeName` names another node (`NodeName`); a host port is taken by
//!   another pod (`NodePorts`); a `NoExecute` taint of the node is not tolerated, static pods
//!   aside (`TaintToleration`): "Predicate NodeAffinity failed: node(s) didn't match Pod's
//!   node affinity/selector".
//!
//! Difference: the reference lets a critical pod that does not fit preempt others; here a
//! critical pod's resource shortfall is overlooked (it is admitted, nothing is preempted).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{
    NodeSelectorRequirement, NodeSelectorTerm, Pod, PodSpec, Taint, Toleration,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::eviction::Rejection;
use crate::node::{MachineInfo, NodeConfig, NodeConfigError};

/// The node's facts admission checks a pod against.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeInfo {
    /// The Node's name.
    pub name: String,
    /// The node's OS (`linux`).
    pub operating_system: String,
    /// Its labels (the well-known ones included).
    pub labels: BTreeMap<String, String>,
    /// Its taints.
    pub taints: Vec<Taint>,
    /// Its allocatable resources.
    pub allocatable: BTreeMap<String, Quantity>,
}

impl NodeInfo {
    /// The node as the node agent registers it.
    pub fn new(config: &NodeConfig, machine: &MachineInfo) -> Result<Self, NodeConfigError> {
        let resources = crate::node::NodeResources::compute(config, machine)?;
        Ok(Self {
            name: config.name.clone(),
            operating_system: machine.operating_system.clone(),
            labels: config.node_labels(&machine.operating_system, &machine.architecture),
            taints: config.taints.clone(),
            allocatable: resources.allocatable,
        })
    }
}

/// The reference's `OutOf<resource>` reasons and scheduler plugin names.
const NODE_AFFINITY: &str = "NodeAffinity";
const NODE_NAME: &str = "NodeName";
const NODE_PORTS: &str = "NodePorts";
const TAINT_TOLERATION: &str = "TaintToleration";
const LABEL_OS: &str = "kubernetes.io/os";

fn predicate_failed(name: &str, why: &str) -> Rejection {
    Rejection {
        reason: name.to_string(),
        message: format!("Predicate {name} failed: {why}"),
    }
}

/// Admit `pod` beside the `others` already admitted on `node`, or say why not.
pub fn admit(pod: &Pod, others: &[Pod], node: &NodeInfo) -> Result<(), Rejection> {
    let spec = pod.spec.as_ref().cloned().unwrap_or_default();
    let os_label = pod.metadata.labels.as_ref().and_then(|l| l.get(LABEL_OS));
    let node_os = node
        .labels
        .get(LABEL_OS)
        .cloned()
        .unwrap_or_else(|| node.operating_system.clone());
    if os_label.is_some_and(|os| *os != node_os) {
        return Err(Rejection {
            reason: "PodOSSelectorNodeLabelDoesNotMatch".into(),
            message: "Failed to admit pod as the `kubernetes.io/os` label doesn't match node label"
                .into(),
        });
    }
    if spec
        .os
        .as_ref()
        .is_some_and(|os| os.name != node.operating_system)
    {
        return Err(Rejection {
            reason: "PodOSNotSupported".into(),
            message: "Failed to admit pod as the OS field doesn't match node OS".into(),
        });
    }
    if !crate::eviction::is_critical(pod) {
        fits_resources(&spec, others, node)?;
    }
    if !required_affinity_matches(&spec, node) {
        return Err(predicate_failed(
            NODE_AFFINITY,
            "node(s) didn't match Pod's node affinity/selector",
        ));
    }
    if spec
        .node_name
        .as_deref()
        .is_some_and(|n| !n.is_empty() && n != node.name)
    {
        return Err(predicate_failed(
            NODE_NAME,
            "node(s) didn't match the requested node name",
        ));
    }
    if host_ports_conflict(&spec, others) {
        return Err(predicate_failed(
            NODE_PORTS,
            "node(s) didn't have free ports for the requested pod ports",
        ));
    }
    let is_static = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(crate::labels::CONFIG_SOURCE))
        .is_some_and(|s| s != crate::source::SOURCE_API);
    let tolerations = spec.tolerations.as_deref().unwrap_or_default();
    let untolerated = node
        .taints
        .iter()
        .filter(|t| t.effect == "NoExecute")
        .any(|taint| !tolerations.iter().any(|t| tolerates(t, taint)));
    if !is_static && untolerated {
        return Err(predicate_failed(
            TAINT_TOLERATION,
            "node(s) had taints that the pod didn't tolerate",
        ));
    }
    Ok(())
}

/// The reference's `Toleration.ToleratesTaint`.
pub(crate) fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    let effect = t.effect.as_deref().unwrap_or("");
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = t.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match t.operator.as_deref().unwrap_or("") {
        "" | "Equal" => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        "Exists" => true,
        _ => false,
    }
}

/// A pod's request of `resource` as the scheduler counts it, in nano-units: its
/// containers' (init containers at their peak) plus its overhead.
fn request_nanos(spec: &PodSpec, resource: &str) -> i128 {
    let overhead = spec
        .overhead
        .as_ref()
        .and_then(|o| o.get(resource))
        .and_then(|q| crate::quantity::parse_nano(q).ok())
        .unwrap_or(0);
    crate::eviction::containers_request(spec, resource) + overhead
}

/// The resources a pod asks for.
fn requested_resources(spec: &PodSpec) -> BTreeSet<String> {
    let containers = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    containers
        .filter_map(|c| c.resources.as_ref()?.requests.as_ref())
        .flat_map(|r| r.keys().cloned())
        .chain(spec.overhead.iter().flat_map(|o| o.keys().cloned()))
        .chain(
            spec.resources
                .as_ref()
                .and_then(|r| r.requests.as_ref())
                .into_iter()
                .flat_map(|r| r.keys().cloned()),
        )
        .collect()
}

/// A resource in the scheduler's units: millicores for cpu, whole units otherwise, rounded
/// up.
fn units(resource: &str, nanos: i128) -> i64 {
    let per = if resource == "cpu" {
        1_000_000
    } else {
        1_000_000_000
    };
    let rounded = (nanos + per - 1).div_euclid(per);
    i64::try_from(rounded).unwrap_or(i64::MAX)
}

/// An extended resource (`example.com/gpu`), which the node need not know: the reference
/// leaves out the ones its allocatable lacks.
fn is_extended(resource: &str) -> bool {
    resource.contains('/') && !resource.starts_with("kubernetes.io/")
}

fn out_of(resource: &str, requested: i64, used: i64, capacity: i64) -> Rejection {
    Rejection {
        reason: format!("OutOf{resource}"),
        message: format!(
            "Node didn't have enough resource: {resource}, requested: {requested}, used: {used}, capacity: {capacity}"
        ),
    }
}

/// The scheduler's `noderesources.Fits`, first shortfall only.
fn fits_resources(spec: &PodSpec, others: &[Pod], node: &NodeInfo) -> Result<(), Rejection> {
    let allocatable = |resource: &str| {
        node.allocatable
            .get(resource)
            .and_then(|q| crate::quantity::parse_nano(q).ok())
            .map(|n| units(resource, n))
    };
    let allowed_pods = allocatable("pods").unwrap_or(0);
    let other_pods = i64::try_from(others.len()).unwrap_or(i64::MAX);
    if other_pods + 1 > allowed_pods {
        return Err(out_of("pods", 1, other_pods, allowed_pods));
    }
    // Native resources first in the scheduler's order, then the others by name.
    let mut resources: Vec<String> = requested_resources(spec).into_iter().collect();
    let rank = |r: &str| match r {
        "cpu" => 0,
        "memory" => 1,
        "ephemeral-storage" => 2,
        _ => 3,
    };
    resources.sort_by(|a, b| rank(a).cmp(&rank(b)).then_with(|| a.cmp(b)));
    for resource in resources {
        let requested = units(&resource, request_nanos(spec, &resource));
        if requested <= 0 {
            continue;
        }
        let capacity = match allocatable(&resource) {
            Some(c) => c,
            None if is_extended(&resource) => continue,
            None => 0,
        };
        let used: i64 = others
            .iter()
            .filter_map(|p| p.spec.as_ref())
            .map(|s| units(&resource, request_nanos(s, &resource)))
            .sum();
        if requested > capacity - used {
            return Err(out_of(&resource, requested, used, capacity));
        }
    }
    Ok(())
}

/// `nodeSelector` and the required node affinity terms (any term, all of its
/// requirements).
fn required_affinity_matches(spec: &PodSpec, node: &NodeInfo) -> bool {
    let selector_matches = spec
        .node_selector
        .iter()
        .flatten()
        .all(|(k, v)| node.labels.get(k) == Some(v));
    if !selector_matches {
        return false;
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    match required {
        None => true,
        Some(selector) => selector
            .node_selector_terms
            .iter()
            .any(|term| term_matches(term, node)),
    }
}

/// A term with no requirement matches nothing, as the reference's.
fn term_matches(term: &NodeSelectorTerm, node: &NodeInfo) -> bool {
    let expressions = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if expressions.is_empty() && fields.is_empty() {
        return false;
    }
    expressions
        .iter()
        .all(|r| requirement_matches(r, node.labels.get(&r.key).map(String::as_str)))
        && fields.iter().all(|r| {
            r.key == "metadata.name"
                && matches!(r.operator.as_str(), "In" | "NotIn")
                && requirement_matches(r, Some(node.name.as_str()))
        })
}

fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    let number = |s: &str| s.parse::<i64>().ok();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(have), [bound]) = (value.and_then(number), values) else {
                return false;
            };
            let Some(bound) = number(bound) else {
                return false;
            };
            if r.operator == "Gt" {
                have > bound
            } else {
                have < bound
            }
        }
        _ => false,
    }
}

/// `(protocol, hostIP, hostPort)` of each host port a pod asks for.
fn host_ports(spec: &PodSpec) -> Vec<(String, String, i32)> {
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let port = p.host_port.filter(|p| *p > 0)?;
            let protocol = p.protocol.clone().unwrap_or_else(|| "TCP".into());
            let ip = p
                .host_ip
                .clone()
                .filter(|ip| !ip.is_empty())
                .unwrap_or_else(|| "0.0.0.0".into());
            Some((protocol, ip, port))
        })
        .collect()
}

/// Whether a host port of the pod is taken by another: same protocol and port, and the same
/// address or either on all addresses.
fn host_ports_conflict(spec: &PodSpec, others: &[Pod]) -> bool {
    let wanted = host_ports(spec);
    if wanted.is_empty() {
        return false;
    }
    let taken: Vec<_> = others
        .iter()
        .filter_map(|p| p.spec.as_ref())
        .flat_map(host_ports)
        .collect();
    wanted.iter().any(|(protocol, ip, port)| {
        taken.iter().any(|(p2, ip2, port2)| {
            p2 == protocol && port2 == port && (ip == ip2 || ip == "0.0.0.0" || ip2 == "0.0.0.0")
        })
    })
}

#[cfg(test)]
mod tests;
