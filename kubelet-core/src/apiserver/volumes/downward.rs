//! Downward API values: pod fields as file contents.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;

/// The value of `field_path` for `pod`, as the reference writes it into a file; `Err` names
/// what is not supported.
pub(super) fn field_value(pod: &Pod, field_path: &str) -> Result<String, String> {
    let meta = &pod.metadata;
    if let Some((map, key)) = subscript(field_path) {
        let values = match map {
            "metadata.labels" => meta.labels.as_ref(),
            "metadata.annotations" => meta.annotations.as_ref(),
            _ => return Err(format!("unsupported fieldPath {field_path:?}")),
        };
        return Ok(values.and_then(|m| m.get(key)).cloned().unwrap_or_default());
    }
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    let value = match field_path {
        "metadata.name" => meta.name.clone(),
        "metadata.namespace" => meta.namespace.clone(),
        "metadata.uid" => meta.uid.clone(),
        "metadata.labels" => Some(format_map(meta.labels.as_ref())),
        "metadata.annotations" => Some(format_map(meta.annotations.as_ref())),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()),
        "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()),
        // Known once the pod has a status from this node; empty before.
        "status.hostIP" => status.and_then(|s| s.host_ip.clone()),
        "status.podIP" => status.and_then(|s| s.pod_ip.clone()),
        _ => return Err(format!("unsupported fieldPath {field_path:?}")),
    };
    Ok(value.unwrap_or_default())
}

/// `metadata.labels['key']` -> (`metadata.labels`, `key`).
fn subscript(path: &str) -> Option<(&str, &str)> {
    let inner = path.strip_suffix("']")?;
    let (map, key) = inner.split_once("['")?;
    Some((map, key))
}

/// `key="value"` lines sorted by key, values quoted as Go's `%q` does, no final newline
/// (the reference's `fieldpath.FormatMap`).
pub(super) fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
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
