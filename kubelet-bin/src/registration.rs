//! What the node registers with: `--node-labels` and `--register-with-taints` (or the
//! config's `registerWithTaints`), parsed and validated as the reference does.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Taint;

/// Labels a kubelet may set on its own Node in the `kubernetes.io` / `k8s.io` namespaces
/// (the NodeRestriction admission plugin refuses any other label there).
const ALLOWED_KUBELET_LABELS: [&str; 11] = [
    "beta.kubernetes.io/arch",
    "beta.kubernetes.io/instance-type",
    "beta.kubernetes.io/os",
    "failure-domain.beta.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone",
    "kubernetes.io/arch",
    "kubernetes.io/hostname",
    "kubernetes.io/os",
    "node.kubernetes.io/instance-type",
    "topology.kubernetes.io/region",
    "topology.kubernetes.io/zone",
];

/// Label namespaces below which a kubelet may set any label.
const ALLOWED_KUBELET_NAMESPACES: [&str; 2] = ["kubelet.kubernetes.io", "node.kubernetes.io"];

/// Taint effects the API accepts.
const TAINT_EFFECTS: [&str; 3] = ["NoSchedule", "PreferNoSchedule", "NoExecute"];

/// Parse one `--node-labels` value: `key=value` pairs separated by commas.
pub fn parse_node_labels(value: &str) -> Result<BTreeMap<String, String>, String> {
    let mut labels = BTreeMap::new();
    for pair in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("{pair:?} is not key=value"))?;
        labels.insert(key.trim().to_string(), value.trim().to_string());
    }
    Ok(labels)
}

/// Check label keys and values for syntax, and that labels in the `kubernetes.io` and
/// `k8s.io` namespaces are ones a kubelet may set.
pub fn validate_node_labels(labels: &BTreeMap<String, String>) -> Result<(), String> {
    let mut forbidden = Vec::new();
    for (key, value) in labels {
        validate_qualified_name(key).map_err(|e| format!("label key {key:?}: {e}"))?;
        validate_label_value(value).map_err(|e| format!("label {key:?} value {value:?}: {e}"))?;
        if !kubelet_may_set(key) {
            forbidden.push(key.as_str());
        }
    }
    if forbidden.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "unknown 'kubernetes.io' or 'k8s.io' labels {forbidden:?}: labels in these \
             namespaces must begin with an allowed prefix ({}) or be one of {}",
            ALLOWED_KUBELET_NAMESPACES.join(", "),
            ALLOWED_KUBELET_LABELS.join(", ")
        ))
    }
}

fn kubelet_may_set(key: &str) -> bool {
    let Some((namespace, _)) = key.split_once('/') else {
        return true;
    };
    let in_restricted = |ns: &str, base: &str| ns == base || ns.ends_with(&format!(".{base}"));
    if !in_restricted(namespace, "kubernetes.io") && !in_restricted(namespace, "k8s.io") {
        return true;
    }
    ALLOWED_KUBELET_LABELS.contains(&key)
        || ALLOWED_KUBELET_NAMESPACES
            .iter()
            .any(|allowed| in_restricted(namespace, allowed))
}

/// Parse `--register-with-taints`: `key=value:Effect` or `key:Effect`, comma separated.
pub fn parse_taints(value: &str) -> Result<Vec<Taint>, String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|spec| {
            let (key_value, effect) = spec
                .rsplit_once(':')
                .ok_or_else(|| format!("taint {spec:?}: expected key=value:Effect"))?;
            let (key, value) = match key_value.split_once('=') {
                Some((key, value)) => (key, Some(value.to_string())),
                None => (key_value, None),
            };
            let taint = Taint {
                key: key.to_string(),
                value,
                effect: effect.to_string(),
                time_added: None,
            };
            validate_taint(&taint).map_err(|e| format!("taint {spec:?}: {e}"))?;
            Ok(taint)
        })
        .collect()
}

/// Check a taint's key, value and effect; the kubelet registers only scheduling effects
/// with no `timeAdded`.
pub fn validate_taint(taint: &Taint) -> Result<(), String> {
    validate_qualified_name(&taint.key).map_err(|e| format!("key {:?}: {e}", taint.key))?;
    if let Some(value) = &taint.value {
        validate_label_value(value).map_err(|e| format!("value {value:?}: {e}"))?;
    }
    if !TAINT_EFFECTS.contains(&taint.effect.as_str()) {
        return Err(format!(
            "effect {:?} is not one of {}",
            taint.effect,
            TAINT_EFFECTS.join(", ")
        ));
    }
    Ok(())
}

/// A qualified name (`prefix/name` or `name`) as label and taint keys use.
fn validate_qualified_name(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        validate_dns_subdomain(prefix).map_err(|e| format!("prefix: {e}"))?;
    }
    if name.is_empty() {
        return Err("name part must not be empty".to_string());
    }
    validate_label_value(name).map_err(|e| format!("name part: {e}"))
}

/// At most 63 characters, alphanumeric at both ends, `-`, `_` and `.` inside; may be empty.
fn validate_label_value(value: &str) -> Result<(), String> {
    if value.len() > 63 {
        return Err("must be at most 63 characters".to_string());
    }
    let alnum = |c: Option<char>| c.is_none_or(|c| c.is_ascii_alphanumeric());
    let inner_ok = value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !inner_ok || !alnum(value.chars().next()) || !alnum(value.chars().last()) {
        return Err(
            "must be alphanumeric characters, '-', '_' or '.', starting and ending with an \
             alphanumeric character"
                .to_string(),
        );
    }
    Ok(())
}

/// A DNS subdomain (RFC 1123): lowercase labels separated by dots, at most 253 characters.
fn validate_dns_subdomain(value: &str) -> Result<(), String> {
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if value.is_empty() || value.len() > 253 || !value.split('.').all(label_ok) {
        return Err(format!("{value:?} is not a lowercase RFC 1123 subdomain"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_labels_parse_and_trim() {
        let labels = parse_node_labels("a=1, example.com/b = two ,,c=").unwrap();
        assert_eq!(labels.get("a").map(String::as_str), Some("1"));
        assert_eq!(labels.get("example.com/b").map(String::as_str), Some("two"));
        assert_eq!(labels.get("c").map(String::as_str), Some(""));
        assert!(
            parse_node_labels("novalue")
                .unwrap_err()
                .contains("novalue")
        );
    }

    #[test]
    fn kubelet_label_namespaces_are_restricted_as_node_restriction_does() {
        let ok = |k: &str| validate_node_labels(&BTreeMap::from([(k.to_string(), "x".into())]));
        assert!(ok("team").is_ok());
        assert!(ok("example.com/role").is_ok());
        assert!(ok("node.kubernetes.io/exclude-from-external-load-balancers").is_ok());
        assert!(ok("foo.kubelet.kubernetes.io/x").is_ok());
        assert!(ok("topology.kubernetes.io/zone").is_ok());
        let err = ok("node-role.kubernetes.io/worker").unwrap_err();
        assert!(err.contains("node-role.kubernetes.io/worker"), "{err}");
        assert!(ok("kubernetes.io/role").is_err());
        assert!(ok("example.k8s.io/x").is_err());
    }

    #[test]
    fn label_syntax_errors_name_the_label() {
        let bad_value = BTreeMap::from([("a".to_string(), "-x".to_string())]);
        assert!(
            validate_node_labels(&bad_value)
                .unwrap_err()
                .contains("\"a\"")
        );
        let bad_prefix = BTreeMap::from([("Example.com/a".to_string(), "x".to_string())]);
        assert!(
            validate_node_labels(&bad_prefix)
                .unwrap_err()
                .contains("prefix")
        );
        let long = BTreeMap::from([("a".to_string(), "x".repeat(64))]);
        assert!(validate_node_labels(&long).unwrap_err().contains("63"));
    }

    #[test]
    fn taints_parse_with_and_without_values() {
        let taints = parse_taints("dedicated=gpu:NoSchedule, example.com/maint:NoExecute").unwrap();
        assert_eq!(taints.len(), 2);
        assert_eq!(taints[0].key, "dedicated");
        assert_eq!(taints[0].value.as_deref(), Some("gpu"));
        assert_eq!(taints[0].effect, "NoSchedule");
        assert_eq!(taints[1].key, "example.com/maint");
        assert_eq!(taints[1].value, None);
        assert_eq!(taints[1].effect, "NoExecute");
    }

    #[test]
    fn bad_taints_say_what_is_wrong() {
        assert!(
            parse_taints("a=b")
                .unwrap_err()
                .contains("key=value:Effect")
        );
        assert!(
            parse_taints("a=b:Sometimes")
                .unwrap_err()
                .contains("Sometimes")
        );
        assert!(
            parse_taints("=b:NoSchedule")
                .unwrap_err()
                .contains("name part")
        );
    }
}
