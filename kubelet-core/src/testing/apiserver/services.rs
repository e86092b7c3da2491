//! Services as kube-apiserver keeps them: defaults of core/v1, a cluster IP allocated from
//! the service range (the envtest harness's `10.0.0.0/24`), the ports a cluster-IP service
//! must have.

use serde_json::{Value, json};

use super::status::ApiError;

/// The range the fake allocates from, as `--service-cluster-ip-range` of the envtest harness.
const RANGE_PREFIX: &str = "10.0.0.";
const RANGE: &str = "10.0.0.0/24";

/// The address of the `kubernetes` service: the first of the range.
pub(super) fn first_ip() -> String {
    format!("{RANGE_PREFIX}1")
}

fn headless(obj: &Value) -> bool {
    obj.pointer("/spec/clusterIP").and_then(Value::as_str) == Some("None")
}

fn external_name(obj: &Value) -> bool {
    obj.pointer("/spec/type").and_then(Value::as_str) == Some("ExternalName")
}

/// SetDefaults_Service (and the registry's IP family fields).
pub(super) fn defaults(obj: &mut Value) {
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    spec.entry("type").or_insert(json!("ClusterIP"));
    spec.entry("sessionAffinity").or_insert(json!("None"));
    let external = spec.get("type").and_then(Value::as_str) == Some("ExternalName");
    if !external {
        spec.entry("internalTrafficPolicy")
            .or_insert(json!("Cluster"));
    }
    if let Some(Value::Array(ports)) = spec.get_mut("ports") {
        for port in ports {
            let Some(p) = port.as_object_mut() else {
                continue;
            };
            p.entry("protocol").or_insert(json!("TCP"));
            if !p.contains_key("targetPort")
                && let Some(n) = p.get("port").cloned()
            {
                p.insert("targetPort".into(), n);
            }
        }
    }
}

/// The causes ValidateService gives for what a test may get wrong.
pub(super) fn validate(obj: &Value) -> Vec<(String, &'static str, String)> {
    let mut causes = Vec::new();
    let ports = obj
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if ports.is_empty() && !headless(obj) && !external_name(obj) {
        causes.push((
            "spec.ports".to_string(),
            "FieldValueRequired",
            "Required value".to_string(),
        ));
    }
    for (i, port) in ports.iter().enumerate() {
        let number = port.get("port").and_then(Value::as_i64).unwrap_or(0);
        if !(1..=65535).contains(&number) {
            causes.push((
                format!("spec.ports[{i}].port"),
                "FieldValueInvalid",
                format!("Invalid value: {number}: must be between 1 and 65535, inclusive"),
            ));
        }
        let named = port
            .get("name")
            .and_then(Value::as_str)
            .is_some_and(|n| !n.is_empty());
        if ports.len() > 1 && !named {
            causes.push((
                format!("spec.ports[{i}].name"),
                "FieldValueRequired",
                "Required value".to_string(),
            ));
        }
    }
    causes
}

/// Give a cluster-IP service its address (the one asked for, if free and in range) and the
/// IP family fields the registry fills in.
pub(super) fn allocate_cluster_ip(obj: &mut Value, in_use: Vec<String>) -> Result<(), ApiError> {
    if external_name(obj) {
        return Ok(());
    }
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let asked = obj
        .pointer("/spec/clusterIP")
        .and_then(Value::as_str)
        .filter(|ip| !ip.is_empty())
        .map(str::to_string);
    let ip = match asked {
        Some(ip) if ip == "None" => ip,
        Some(ip) => {
            let host = ip
                .strip_prefix(RANGE_PREFIX)
                .and_then(|h| h.parse::<u8>().ok());
            let refuse = |why: String| {
                ApiError::invalid(
                    "Service",
                    "",
                    &name,
                    &[(
                        "spec.clusterIPs".to_string(),
                        "FieldValueInvalid",
                        format!(
                            "Invalid value: []string{{\"{ip}\"}}: failed to allocate IP {ip}: {why}"
                        ),
                    )],
                )
            };
            match host {
                Some(1..=254) if in_use.contains(&ip) => {
                    return Err(refuse("provided IP is already allocated".to_string()));
                }
                Some(1..=254) => ip,
                _ => {
                    return Err(refuse(format!(
                        "the provided IP ({ip}) is not in the valid range. The range of valid IPs is {RANGE}"
                    )));
                }
            }
        }
        None => (10..=254u8)
            .chain(2..10)
            .map(|h| format!("{RANGE_PREFIX}{h}"))
            .find(|ip| !in_use.contains(ip))
            .ok_or_else(|| ApiError::internal("failed to allocate a serviceIP: range is full"))?,
    };
    // A headless service without a selector may have endpoints of either family.
    let any_family = ip == "None"
        && obj
            .pointer("/spec/selector")
            .and_then(Value::as_object)
            .is_none_or(|s| s.is_empty());
    if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
        spec.insert("clusterIP".into(), json!(ip));
        spec.insert("clusterIPs".into(), json!([ip]));
        if any_family {
            spec.insert("ipFamilies".into(), json!(["IPv4", "IPv6"]));
            spec.insert("ipFamilyPolicy".into(), json!("RequireDualStack"));
        } else {
            spec.insert("ipFamilies".into(), json!(["IPv4"]));
            spec.insert("ipFamilyPolicy".into(), json!("SingleStack"));
        }
    }
    Ok(())
}
