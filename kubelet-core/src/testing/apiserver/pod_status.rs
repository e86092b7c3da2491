//! What kube-apiserver (v1.28, checked against the real one) does with a pod status update
//! beyond storing it: the `podIP`/`podIPs` conversion and the rules of
//! `ValidatePodStatusUpdate` a kubelet can break (IPs, container state transitions,
//! condition types).

use std::net::IpAddr;

use serde_json::{Value, json};

use super::status::ApiError;

type Cause = (String, &'static str, String);

fn text<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn list<'a>(v: &'a Value, pointer: &str) -> &'a [Value] {
    v.pointer(pointer)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// The round trip through the internal type: `podIP` wins over a `podIPs` that disagrees
/// with it, fills an empty `podIPs`, and is `podIPs[0]` again on the way out.
pub(crate) fn convert_pod_ips(pod: &mut Value) {
    let Some(status) = pod.get_mut("status").and_then(Value::as_object_mut) else {
        return;
    };
    let ip = status
        .get("podIP")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let first = status
        .get("podIPs")
        .and_then(Value::as_array)
        .and_then(|ips| ips.first())
        .map(|p| {
            p.get("ip")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        });
    if !ip.is_empty() && first.as_deref() != Some(ip.as_str()) {
        status.insert("podIPs".into(), json!([{ "ip": ip }]));
    }
    let first = status
        .get("podIPs")
        .and_then(Value::as_array)
        .and_then(|ips| ips.first())
        .and_then(|p| p.get("ip"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if first.is_empty() {
        status.remove("podIP");
    } else {
        status.insert("podIP".into(), Value::String(first));
    }
}

const INVALID_IP: &str = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)";

fn go_ip_list(type_name: &str, ips: &[&str]) -> String {
    let items: Vec<String> = ips
        .iter()
        .map(|ip| format!("core.{type_name}{{IP:{ip:?}}}"))
        .collect();
    format!("[]core.{type_name}{{{}}}", items.join(", "))
}

/// Valid IPs, at most one per family, no duplicates (`validatePodIPs`/`validateHostIPs`).
fn check_ips(field: &str, type_name: &str, ips: &[&str], causes: &mut Vec<Cause>) {
    let parsed: Vec<Option<IpAddr>> = ips.iter().map(|ip| ip.parse().ok()).collect();
    for (i, (ip, p)) in ips.iter().zip(&parsed).enumerate() {
        if p.is_none() {
            causes.push((
                format!("{field}[{i}]"),
                "FieldValueInvalid",
                format!("Invalid value: {ip:?}: {INVALID_IP}"),
            ));
        }
    }
    if ips.len() > 1 {
        let dual = ips.len() == 2
            && matches!(
                (parsed[0], parsed[1]),
                (Some(a), Some(b)) if a.is_ipv4() != b.is_ipv4()
            );
        if !dual {
            causes.push((
                field.to_string(),
                "FieldValueInvalid",
                format!(
                    "Invalid value: {}: may specify no more than one IP for each IP family",
                    go_ip_list(type_name, ips)
                ),
            ));
        }
        for (i, ip) in ips.iter().enumerate() {
            if ips[..i].contains(ip) {
                causes.push((
                    format!("{field}[{i}]"),
                    "FieldValueDuplicate",
                    format!("Duplicate value: core.{type_name}{{IP:{ip:?}}}"),
                ));
            }
        }
    }
}

fn ips_of(status: &Value, field: &str) -> Vec<String> {
    list(status, &format!("/{field}"))
        .iter()
        .map(|p| text(p, "/ip").to_string())
        .collect()
}

fn terminated(status: &Value) -> Option<&Value> {
    status
        .pointer("/state/terminated")
        .filter(|t| t.is_object())
}

/// A container that terminated for good (by the restart policy) may not run again.
fn check_transitions(
    field: &str,
    new: &[Value],
    old: &[Value],
    policy: &str,
    restartable: &dyn Fn(&str) -> bool,
    causes: &mut Vec<Cause>,
) {
    if policy == "Always" {
        return;
    }
    for (i, before) in old.iter().enumerate() {
        let Some(t) = terminated(before) else {
            continue;
        };
        let exit = t.get("exitCode").and_then(Value::as_i64).unwrap_or(0);
        if exit != 0 && policy == "OnFailure" {
            continue;
        }
        let name = text(before, "/name");
        if restartable(name) {
            continue;
        }
        for after in new {
            if text(after, "/name") == name && terminated(after).is_none() {
                causes.push((
                    format!("{field}[{i}].state"),
                    "FieldValueForbidden",
                    "Forbidden: may not be transitioned to non-terminated state".to_string(),
                ));
            }
        }
    }
}

const NAME_FMT: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";

/// `IsQualifiedName` of a condition type; the errors carry the reference's field path
/// (`metadata.conditions[i].Type`, sic).
fn check_condition_type(i: usize, t: &str, causes: &mut Vec<Cause>) {
    let field = format!("metadata.conditions[{i}].Type");
    let name = t.rsplit_once('/').map_or(t, |(_, n)| n);
    let mut problems = Vec::new();
    if name.is_empty() {
        problems.push("name part must be non-empty".to_string());
    } else if name.len() > 63 {
        problems.push("name part must be no more than 63 characters".to_string());
    }
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !(ok_chars && alnum(name.chars().next()) && alnum(name.chars().last())) {
        problems.push(NAME_FMT.to_string());
    }
    if let Some((prefix, _)) = t.rsplit_once('/')
        && prefix.is_empty()
    {
        problems.push("prefix part must be non-empty".to_string());
    }
    for p in problems {
        causes.push((
            field.clone(),
            "FieldValueInvalid",
            format!("Invalid value: {t:?}: {p}"),
        ));
    }
}

/// `ValidatePodStatusUpdate`'s rules for the new pod `new` replacing `old`.
pub(crate) fn validate_update(name: &str, old: &Value, new: &Value) -> Result<(), ApiError> {
    let mut causes = Vec::new();
    for (i, c) in list(new, "/status/conditions").iter().enumerate() {
        check_condition_type(i, text(c, "/type"), &mut causes);
    }
    let policy = match text(old, "/spec/restartPolicy") {
        "" => "Always",
        p => p,
    };
    let no_restartable = |_: &str| false;
    check_transitions(
        "status.containerStatuses",
        list(new, "/status/containerStatuses"),
        list(old, "/status/containerStatuses"),
        policy,
        &no_restartable,
        &mut causes,
    );
    let sidecar = |n: &str| {
        list(old, "/spec/initContainers")
            .iter()
            .find(|c| text(c, "/name") == n)
            .is_some_and(|c| text(c, "/restartPolicy") == "Always")
    };
    check_transitions(
        "status.initContainerStatuses",
        list(new, "/status/initContainerStatuses"),
        list(old, "/status/initContainerStatuses"),
        policy,
        &sidecar,
        &mut causes,
    );
    check_transitions(
        "status.ephemeralContainerStatuses",
        list(new, "/status/ephemeralContainerStatuses"),
        list(old, "/status/ephemeralContainerStatuses"),
        "Never",
        &no_restartable,
        &mut causes,
    );
    let status = new.get("status").cloned().unwrap_or(Value::Null);
    let pod_ips = ips_of(&status, "podIPs");
    let pod_ips: Vec<&str> = pod_ips.iter().map(String::as_str).collect();
    check_ips("status.podIPs", "PodIP", &pod_ips, &mut causes);
    let host_ips = ips_of(&status, "hostIPs");
    let host_ips: Vec<&str> = host_ips.iter().map(String::as_str).collect();
    if let Some(first) = host_ips.first()
        && *first != text(&status, "/hostIP")
    {
        causes.push((
            "status.hostIPs[0].ip".to_string(),
            "FieldValueInvalid",
            format!("Invalid value: {first:?}: must be equal to `hostIP`"),
        ));
    }
    check_ips("status.hostIPs", "HostIP", &host_ips, &mut causes);
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid("Pod", "", name, &causes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(policy: &str, status: Value) -> Value {
        json!({"spec": {"restartPolicy": policy, "containers": [{"name": "app"}]}, "status": status})
    }

    // Each message below is what kube-apiserver v1.28 answered to the same update.
    #[test]
    fn ip_rules() {
        let old = pod("Always", json!({}));
        let check = |status: Value| {
            validate_update("h", &old, &pod("Always", status))
                .unwrap_err()
                .message
        };
        assert_eq!(
            check(json!({"podIPs": [{"ip": "abc"}]})),
            "Pod \"h\" is invalid: status.podIPs[0]: Invalid value: \"abc\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"
        );
        assert_eq!(
            check(json!({"podIPs": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}]})),
            "Pod \"h\" is invalid: status.podIPs: Invalid value: []core.PodIP{core.PodIP{IP:\"10.0.0.1\"}, core.PodIP{IP:\"10.0.0.2\"}}: may specify no more than one IP for each IP family"
        );
        assert_eq!(
            check(json!({"podIPs": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.1"}]})),
            "Pod \"h\" is invalid: [status.podIPs: Invalid value: []core.PodIP{core.PodIP{IP:\"10.0.0.1\"}, core.PodIP{IP:\"10.0.0.1\"}}: may specify no more than one IP for each IP family, status.podIPs[1]: Duplicate value: core.PodIP{IP:\"10.0.0.1\"}]"
        );
        assert_eq!(
            check(json!({"hostIP": "10.0.0.5", "hostIPs": [{"ip": "x"}]})),
            "Pod \"h\" is invalid: [status.hostIPs[0].ip: Invalid value: \"x\": must be equal to `hostIP`, status.hostIPs[0]: Invalid value: \"x\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)]"
        );
        let dual = pod(
            "Always",
            json!({"podIPs": [{"ip": "10.0.0.6"}, {"ip": "fd00::6"}], "hostIP": "10.0.0.5", "hostIPs": [{"ip": "10.0.0.5"}]}),
        );
        assert!(validate_update("h", &old, &dual).is_ok());
    }

    #[test]
    fn pod_ip_wins_and_fills_pod_ips() {
        let mut p = json!({"status": {"podIP": "10.1.1.1", "podIPs": [{"ip": "10.1.1.2"}]}});
        convert_pod_ips(&mut p);
        assert_eq!(
            p["status"],
            json!({"podIP": "10.1.1.1", "podIPs": [{"ip": "10.1.1.1"}]})
        );
        let mut p = json!({"status": {"podIPs": [{"ip": "10.0.0.6"}]}});
        convert_pod_ips(&mut p);
        assert_eq!(p["status"]["podIP"], "10.0.0.6");
    }

    #[test]
    fn terminated_containers_stay_terminated_unless_the_policy_restarts_them() {
        let term = |code: i64| json!({"containerStatuses": [{"name": "app", "state": {"terminated": {"exitCode": code}}}]});
        let run = json!({"containerStatuses": [{"name": "app", "state": {"running": {}}}]});
        let forbidden = "Pod \"k\" is invalid: status.containerStatuses[0].state: Forbidden: may not be transitioned to non-terminated state";
        for (policy, code, refused) in [
            ("Never", 1, true),
            ("OnFailure", 0, true),
            ("OnFailure", 1, false),
            ("Always", 0, false),
        ] {
            let r = validate_update("k", &pod(policy, term(code)), &pod(policy, run.clone()));
            assert_eq!(r.is_err(), refused, "{policy} {code}");
            if let Err(e) = r {
                assert_eq!(e.message, forbidden);
            }
        }
    }

    #[test]
    fn condition_types_are_qualified_names() {
        let old = pod("Always", json!({}));
        let e = validate_update(
            "j5",
            &old,
            &pod("Always", json!({"conditions": [{"status": "True"}]})),
        )
        .unwrap_err();
        assert_eq!(
            e.message,
            format!(
                "Pod \"j5\" is invalid: [metadata.conditions[0].Type: Invalid value: \"\": name part must be non-empty, metadata.conditions[0].Type: Invalid value: \"\": {NAME_FMT}]"
            )
        );
        let ok = pod(
            "Always",
            json!({"conditions": [{"type": "example.com/gate", "status": "True"}]}),
        );
        assert!(validate_update("j5", &old, &ok).is_ok());
    }
}
