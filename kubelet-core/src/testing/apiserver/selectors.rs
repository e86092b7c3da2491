//! Field and label selectors, parsed and matched as kube-apiserver does.

use serde_json::Value;

use super::status::ApiError;

/// One `fieldSelector` term.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FieldTerm {
    field: String,
    value: String,
    equal: bool,
}

/// A parsed `fieldSelector`: terms joined by `,` (AND), each `=`, `==` or `!=`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    terms: Vec<FieldTerm>,
}

/// The fields a resource can be selected on, besides `metadata.name` and
/// `metadata.namespace` (from each type's `GetAttrs`/field label conversion).
fn supported_fields(storage: &str) -> &'static [&'static str] {
    match storage {
        "pods" => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        "nodes" => &["spec.unschedulable"],
        "namespaces" => &["status.phase"],
        "secrets" => &["type"],
        "events" => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        _ => &[],
    }
}

impl FieldSelector {
    /// Parses a selector for a resource kept under `storage`; unknown fields are a 400 as
    /// on the real server.
    pub fn parse(input: &str, storage: &str) -> Result<Self, ApiError> {
        let mut terms = Vec::new();
        for raw in input.split(',') {
            let raw = raw.trim();
            if raw.is_empty() {
                continue;
            }
            let (field, value, equal) = if let Some((f, v)) = raw.split_once("!=") {
                (f, v, false)
            } else if let Some((f, v)) = raw.split_once("==") {
                (f, v, true)
            } else if let Some((f, v)) = raw.split_once('=') {
                (f, v, true)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{input}'; can't understand '{raw}'"
                )));
            };
            let field = field.trim();
            if field != "metadata.name"
                && field != "metadata.namespace"
                && !supported_fields(storage).contains(&field)
            {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {field}"
                )));
            }
            terms.push(FieldTerm {
                field: field.to_string(),
                value: value.trim().to_string(),
                equal,
            });
        }
        Ok(Self { terms })
    }

    /// Whether the object matches every term.
    pub fn matches(&self, obj: &Value) -> bool {
        self.terms.iter().all(|t| {
            let actual = field_value(obj, &t.field);
            (actual == t.value) == t.equal
        })
    }
}

/// A field's value as the selector sees it: strings as is, booleans as `true`/`false`,
/// absent as the empty string (`source` of events is `source.component`).
fn field_value(obj: &Value, field: &str) -> String {
    let path = if field == "source" {
        "source.component"
    } else {
        field
    };
    let mut cur = obj;
    for part in path.split('.') {
        match cur.get(part) {
            Some(v) => cur = v,
            None => {
                return if path == "spec.hostNetwork" || path == "spec.unschedulable" {
                    "false".to_string()
                } else {
                    String::new()
                };
            }
        }
    }
    match cur {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum LabelOp {
    Equals(String),
    NotEquals(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    DoesNotExist,
}

/// A parsed `labelSelector`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    reqs: Vec<(String, LabelOp)>,
}

/// Splits on commas that are not inside parentheses.
fn split_top(input: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in input.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&input[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&input[start..]);
    out
}

fn parse_set(rest: &str, whole: &str) -> Result<Vec<String>, ApiError> {
    let rest = rest.trim();
    let inner = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "unable to parse requirement: found '{rest}', expected: '(' in '{whole}'"
            ))
        })?;
    Ok(inner
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect())
}

fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

impl LabelSelector {
    /// Parses `=`, `==`, `!=`, `in (..)`, `notin (..)`, `key` and `!key` terms.
    pub fn parse(input: &str) -> Result<Self, ApiError> {
        let mut reqs = Vec::new();
        for raw in split_top(input) {
            let term = raw.trim();
            if term.is_empty() {
                continue;
            }
            let bad = || {
                ApiError::bad_request(format!(
                    "unable to parse requirement: invalid label selector '{input}'"
                ))
            };
            let (key, op) = if let Some(k) = term.strip_prefix('!') {
                (k.trim().to_string(), LabelOp::DoesNotExist)
            } else if let Some((k, v)) = term.split_once("!=") {
                (
                    k.trim().to_string(),
                    LabelOp::NotEquals(v.trim().to_string()),
                )
            } else if let Some((k, v)) = term.split_once("==") {
                (k.trim().to_string(), LabelOp::Equals(v.trim().to_string()))
            } else if let Some((k, v)) = term.split_once('=') {
                (k.trim().to_string(), LabelOp::Equals(v.trim().to_string()))
            } else if let Some((k, rest)) = term.split_once(" notin ") {
                (
                    k.trim().to_string(),
                    LabelOp::NotIn(parse_set(rest, input)?),
                )
            } else if let Some((k, rest)) = term.split_once(" in ") {
                (k.trim().to_string(), LabelOp::In(parse_set(rest, input)?))
            } else {
                (term.to_string(), LabelOp::Exists)
            };
            if !valid_key(&key) {
                return Err(bad());
            }
            reqs.push((key, op));
        }
        Ok(Self { reqs })
    }

    /// Whether the object's `metadata.labels` satisfy every requirement.
    pub fn matches(&self, obj: &Value) -> bool {
        let labels = obj.pointer("/metadata/labels");
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.reqs.iter().all(|(k, op)| match op {
            LabelOp::Equals(v) => get(k) == Some(v.as_str()),
            LabelOp::NotEquals(v) => get(k) != Some(v.as_str()),
            LabelOp::In(set) => get(k).is_some_and(|x| set.iter().any(|s| s == x)),
            LabelOp::NotIn(set) => get(k).is_none_or(|x| !set.iter().any(|s| s == x)),
            LabelOp::Exists => get(k).is_some(),
            LabelOp::DoesNotExist => get(k).is_none(),
        })
    }
}

/// Both selectors of a request.
#[derive(Debug, Clone, Default)]
pub struct Selectors {
    /// `fieldSelector`.
    pub fields: FieldSelector,
    /// `labelSelector`.
    pub labels: LabelSelector,
}

impl Selectors {
    /// Whether an object matches both.
    pub fn matches(&self, obj: &Value) -> bool {
        self.fields.matches(obj) && self.labels.matches(obj)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn field_selector_terms() {
        let pod = json!({"metadata": {"name": "a", "namespace": "ns"}, "spec": {"nodeName": "n1"}});
        let s = FieldSelector::parse("spec.nodeName=n1,metadata.namespace==ns", "pods").unwrap();
        assert!(s.matches(&pod));
        let s = FieldSelector::parse("spec.nodeName!=n1", "pods").unwrap();
        assert!(!s.matches(&pod));
        let s = FieldSelector::parse("spec.nodeName=", "pods").unwrap();
        assert!(!s.matches(&pod));
        let err = FieldSelector::parse("spec.foo=bar", "pods").unwrap_err();
        assert_eq!(err.code, 400);
        assert_eq!(err.message, "field label not supported: spec.foo");
    }

    #[test]
    fn label_selector_ops() {
        let obj = json!({"metadata": {"labels": {"app": "web", "tier": "fe"}}});
        let t = |s: &str| LabelSelector::parse(s).unwrap().matches(&obj);
        assert!(t("app=web"));
        assert!(t("app==web,tier!=be"));
        assert!(t("app in (web, db)"));
        assert!(!t("app notin (web)"));
        assert!(t("missing notin (x)"));
        assert!(t("tier"));
        assert!(!t("!tier"));
        assert!(t("!missing"));
        assert!(t("app in (web),tier"));
        assert!(!t("app=db"));
        assert_eq!(LabelSelector::parse("a in b").unwrap_err().code, 400);
    }
}
