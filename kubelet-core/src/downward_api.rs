//! The downward API: pod fields and container resources as the values the reference puts
//! into environment variables and files.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod, ResourceFieldSelector};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::quantity;

const MILLI_CPU_TO_CPU: i64 = 1000;

/// What the node offers, the value of a `limits.*` resource the container does not limit
/// (the reference uses the node's allocatable there). 0 means unknown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeAllocatable {
    /// CPU in millicores.
    pub cpu_milli: i64,
    /// Memory in bytes.
    pub memory_bytes: i64,
    /// Ephemeral storage in bytes.
    pub ephemeral_storage_bytes: i64,
}

/// The downward-API value of a pod field path (`metadata.name`, `metadata.labels['k']`,
/// `status.podIPs`, ...); `Err` names a path that is not one.
pub fn field_value(pod: &Pod, field_path: &str) -> Result<String, String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    let owned = |v: Option<&String>| v.cloned().unwrap_or_default();
    match field_path {
        "metadata.name" => return Ok(owned(meta.name.as_ref())),
        "metadata.namespace" => return Ok(owned(meta.namespace.as_ref())),
        "metadata.uid" => return Ok(owned(meta.uid.as_ref())),
        "metadata.labels" => return Ok(format_map(meta.labels.as_ref())),
        "metadata.annotations" => return Ok(format_map(meta.annotations.as_ref())),
        "spec.nodeName" => return Ok(owned(spec.and_then(|s| s.node_name.as_ref()))),
        "spec.serviceAccountName" => {
            return Ok(owned(spec.and_then(|s| s.service_account_name.as_ref())));
        }
        "status.hostIP" => return Ok(owned(status.and_then(|s| s.host_ip.as_ref()))),
        "status.podIP" => return Ok(owned(status.and_then(|s| s.pod_ip.as_ref()))),
        "status.hostIPs" => {
            let ips: Vec<String> = status
                .and_then(|s| s.host_ips.as_ref())
                .into_iter()
                .flatten()
                .map(|ip| ip.ip.clone())
                .collect();
            return Ok(ips.join(","));
        }
        "status.podIPs" => {
            let ips: Vec<String> = status
                .and_then(|s| s.pod_ips.as_ref())
                .into_iter()
                .flatten()
                .map(|ip| ip.ip.clone())
                .collect();
            return Ok(ips.join(","));
        }
        _ => {}
    }
    if let Some(rest) = field_path.strip_suffix("']")
        && let Some((base, key)) = rest.split_once("['")
    {
        match base {
            "metadata.labels" => {
                return Ok(meta
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(key))
                    .cloned()
                    .unwrap_or_default());
            }
            "metadata.annotations" => {
                return Ok(meta
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(key))
                    .cloned()
                    .unwrap_or_default());
            }
            _ => {}
        }
    }
    Err(format!("unsupported fieldPath {field_path:?}"))
}

/// `key="value"` lines sorted by key, values quoted as Go's `%q` does, no final newline
/// (the reference's `fieldpath.FormatMap`).
pub fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
    map.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A double-quoted string with Go's escapes (`strconv.Quote`).
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The downward-API value of `limits.*` / `requests.*` of a container, divided by the
/// divisor and rounded up.
pub fn resource_value(
    pod: &Pod,
    container: &Container,
    selector: &ResourceFieldSelector,
    node: &NodeAllocatable,
) -> Result<String, String> {
    let target = match selector.container_name.as_deref().filter(|n| !n.is_empty()) {
        None => container,
        Some(name) => pod
            .spec
            .as_ref()
            .and_then(|s| {
                s.containers
                    .iter()
                    .chain(s.init_containers.iter().flatten())
                    .find(|c| c.name == name)
            })
            .ok_or_else(|| format!("container {name:?} not found in the pod"))?,
    };
    let (kind, resource) = selector
        .resource
        .split_once('.')
        .ok_or_else(|| format!("unsupported resource {:?}", selector.resource))?;
    let supported = matches!(resource, "cpu" | "memory" | "ephemeral-storage")
        || resource.starts_with("hugepages-");
    if !supported || !matches!(kind, "limits" | "requests") {
        return Err(format!("unsupported resource {:?}", selector.resource));
    }
    let is_cpu = resource == "cpu";
    let parse = |q: &Quantity| {
        if is_cpu {
            quantity::parse_milli(q)
        } else {
            quantity::parse_units(q)
        }
    };
    let divisor = match &selector.divisor {
        Some(q) => parse(q).map_err(|e| format!("divisor: {e}"))?,
        None => 0,
    };
    let divisor = if divisor <= 0 {
        if is_cpu { MILLI_CPU_TO_CPU } else { 1 }
    } else {
        divisor
    };
    let res = target.resources.as_ref();
    let limit = res
        .and_then(|r| r.limits.as_ref())
        .and_then(|l| l.get(resource))
        .map(parse)
        .transpose()?
        .filter(|v| *v != 0);
    let value = if kind == "limits" {
        // The reference fills an unset limit with the node's allocatable amount.
        limit.unwrap_or(match resource {
            "cpu" => node.cpu_milli,
            "memory" => node.memory_bytes,
            "ephemeral-storage" => node.ephemeral_storage_bytes,
            _ => 0,
        })
    } else {
        let request = res
            .and_then(|r| r.requests.as_ref())
            .and_then(|l| l.get(resource))
            .map(parse)
            .transpose()?;
        // API defaulting: an unset request takes the limit.
        request.or(limit).unwrap_or(0)
    };
    Ok(ceil_div(value, divisor).to_string())
}

fn ceil_div(a: i64, b: i64) -> i64 {
    let q = a / b;
    if a % b != 0 && (a > 0) == (b > 0) {
        q + 1
    } else {
        q
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn pod() -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("shop".into()),
                uid: Some("u-1".into()),
                labels: Some(BTreeMap::from([
                    ("tier".to_string(), "front".to_string()),
                    ("app".to_string(), "web".to_string()),
                ])),
                annotations: Some(BTreeMap::from([(
                    "note".to_string(),
                    "say \"hi\"\n\tbye\\ é\u{1}".to_string(),
                )])),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some("node-1".into()),
                service_account_name: Some("builder".into()),
                ..Default::default()
            }),
            status: Some(PodStatus {
                host_ip: Some("10.0.0.5".into()),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn fields_as_the_reference_writes_them() {
        let p = pod();
        let v = |f: &str| field_value(&p, f).unwrap();
        assert_eq!(v("metadata.name"), "web");
        assert_eq!(v("metadata.namespace"), "shop");
        assert_eq!(v("metadata.uid"), "u-1");
        assert_eq!(v("metadata.labels"), "app=\"web\"\ntier=\"front\"");
        assert_eq!(
            v("metadata.annotations"),
            r#"note="say \"hi\"\n\tbye\\ é\x01""#
        );
        assert_eq!(v("metadata.labels['tier']"), "front");
        assert_eq!(v("metadata.labels['missing']"), "");
        assert_eq!(v("spec.nodeName"), "node-1");
        assert_eq!(v("spec.serviceAccountName"), "builder");
        assert_eq!(v("status.hostIP"), "10.0.0.5");
        // Not known yet.
        assert_eq!(v("status.podIP"), "");
        let err = field_value(&p, "spec.containers").unwrap_err();
        assert!(err.contains("spec.containers"), "{err}");
        assert!(field_value(&p, "spec.x['y']").is_err());
    }

    #[test]
    fn no_labels_is_an_empty_file() {
        assert_eq!(format_map(None), "");
    }
}
