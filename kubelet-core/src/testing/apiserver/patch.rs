//! JSON merge patch (RFC 7386), JSON patch (RFC 6902) and strategic merge patch with the
//! keyed lists of the types a kubelet patches.

use serde_json::{Map, Value};

/// The patch types the fake accepts, by `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    /// `application/merge-patch+json`.
    Merge,
    /// `application/json-patch+json`.
    Json,
    /// `application/strategic-merge-patch+json`.
    Strategic,
}

impl PatchType {
    /// From a `Content-Type` value; `None` for apply patches and unknown types.
    pub fn from_content_type(ct: &str) -> Option<Self> {
        match ct.split(';').next().map(str::trim) {
            Some("application/merge-patch+json") => Some(Self::Merge),
            Some("application/json-patch+json") => Some(Self::Json),
            Some("application/strategic-merge-patch+json") => Some(Self::Strategic),
            _ => None,
        }
    }
}

/// A patch that cannot be applied; the message is shown to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PatchError(pub String);

/// RFC 7386 merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            if let Value::Object(t) = target {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

fn split_pointer(path: &str) -> Result<Vec<String>, PatchError> {
    if path.is_empty() {
        return Ok(Vec::new());
    }
    let rest = path
        .strip_prefix('/')
        .ok_or_else(|| PatchError(format!("invalid JSON pointer {path:?}")))?;
    Ok(rest.split('/').map(unescape).collect())
}

fn parent_mut<'a>(
    doc: &'a mut Value,
    tokens: &[String],
    path: &str,
) -> Result<&'a mut Value, PatchError> {
    let mut cur = doc;
    for t in tokens {
        cur = match cur {
            Value::Object(m) => m.get_mut(t),
            Value::Array(a) => t.parse::<usize>().ok().and_then(move |i| a.get_mut(i)),
            _ => None,
        }
        .ok_or_else(|| PatchError(format!("doc is missing path: {path:?}")))?;
    }
    Ok(cur)
}

fn get_at<'a>(doc: &'a Value, path: &str) -> Result<&'a Value, PatchError> {
    doc.pointer(path)
        .ok_or_else(|| PatchError(format!("doc is missing path: {path:?}")))
}

fn remove_at(doc: &mut Value, path: &str) -> Result<Value, PatchError> {
    let tokens = split_pointer(path)?;
    let (last, parents) = tokens
        .split_last()
        .ok_or_else(|| PatchError("cannot remove the document root".to_string()))?;
    match parent_mut(doc, parents, path)? {
        Value::Object(m) => m.remove(last).ok_or_else(|| {
            PatchError(format!(
                "unable to remove nonexistent key: {last}: missing value"
            ))
        }),
        Value::Array(a) => {
            let i = last
                .parse::<usize>()
                .ok()
                .filter(|i| *i < a.len())
                .ok_or_else(|| {
                    PatchError(format!(
                        "remove operation does not apply: doc is missing path: {path:?}"
                    ))
                })?;
            Ok(a.remove(i))
        }
        _ => Err(PatchError(format!("doc is missing path: {path:?}"))),
    }
}

fn add_at(doc: &mut Value, path: &str, value: Value) -> Result<(), PatchError> {
    let tokens = split_pointer(path)?;
    let Some((last, parents)) = tokens.split_last() else {
        *doc = value;
        return Ok(());
    };
    match parent_mut(doc, parents, path)? {
        Value::Object(m) => {
            m.insert(last.clone(), value);
            Ok(())
        }
        Value::Array(a) => {
            if last == "-" {
                a.push(value);
                return Ok(());
            }
            let i = last
                .parse::<usize>()
                .ok()
                .filter(|i| *i <= a.len())
                .ok_or_else(|| {
                    PatchError(format!(
                        "add operation does not apply: doc is missing path: {path:?}"
                    ))
                })?;
            a.insert(i, value);
            Ok(())
        }
        _ => Err(PatchError(format!("doc is missing path: {path:?}"))),
    }
}

/// RFC 6902 JSON patch: add, remove, replace, move, copy, test.
pub fn json_patch(doc: &mut Value, patch: &Value) -> Result<(), PatchError> {
    let ops = patch
        .as_array()
        .ok_or_else(|| PatchError("json patch must be an array of operations".to_string()))?;
    for op in ops {
        let kind = op
            .get("op")
            .and_then(Value::as_str)
            .ok_or_else(|| PatchError("json patch operation is missing \"op\"".to_string()))?;
        let path = op
            .get("path")
            .and_then(Value::as_str)
            .ok_or_else(|| PatchError(format!("{kind} operation is missing \"path\"")))?;
        let value = || {
            op.get("value")
                .cloned()
                .ok_or_else(|| PatchError(format!("{kind} operation is missing \"value\"")))
        };
        let from = || {
            op.get("from")
                .and_then(Value::as_str)
                .ok_or_else(|| PatchError(format!("{kind} operation is missing \"from\"")))
        };
        match kind {
            "add" => add_at(doc, path, value()?)?,
            "remove" => {
                remove_at(doc, path)?;
            }
            "replace" => {
                get_at(doc, path)
                    .map_err(|_| PatchError(format!("replace operation does not apply: doc is missing key: {path}: missing value")))?;
                remove_at(doc, path)?;
                add_at(doc, path, value()?)?;
            }
            "move" => {
                let v = remove_at(doc, from()?)?;
                add_at(doc, path, v)?;
            }
            "copy" => {
                let v = get_at(doc, from()?)?.clone();
                add_at(doc, path, v)?;
            }
            "test" => {
                let expected = value()?;
                let actual = doc.pointer(path).cloned().unwrap_or(Value::Null);
                if actual != expected {
                    return Err(PatchError(format!(
                        "testing value {path} failed: test failed"
                    )));
                }
            }
            other => return Err(PatchError(format!("Unexpected kind: {other}"))),
        }
    }
    Ok(())
}

/// How a list field merges under a strategic merge patch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ListStrategy {
    /// Atomic: the patch's list replaces the original.
    Replace,
    /// A list of maps merged element by element on this key.
    MergeByKey(&'static str),
    /// A list of scalars merged as a set (e.g. `finalizers`).
    MergePrimitives,
}

/// The `patchStrategy`/`patchMergeKey` tags of the API types for a field path (list
/// elements are transparent in the path) of a kind.
fn list_strategy(kind: &str, path: &[&str]) -> ListStrategy {
    use ListStrategy::*;
    match path {
        ["metadata", "ownerReferences"] => MergeByKey("uid"),
        ["metadata", "finalizers"] => MergePrimitives,
        _ => match kind {
            "Pod" => match path {
                ["status", "conditions"] => MergeByKey("type"),
                ["status", "containerStatuses"]
                | ["status", "initContainerStatuses"]
                | ["status", "ephemeralContainerStatuses"]
                | ["status", "resourceClaimStatuses"] => MergeByKey("name"),
                ["status", "podIPs"] | ["status", "hostIPs"] => MergeByKey("ip"),
                ["spec", "containers"]
                | ["spec", "initContainers"]
                | ["spec", "ephemeralContainers"]
                | ["spec", "volumes"]
                | ["spec", "imagePullSecrets"]
                | ["spec", "resourceClaims"] => MergeByKey("name"),
                [
                    "spec",
                    "containers" | "initContainers" | "ephemeralContainers",
                    "env",
                ] => MergeByKey("name"),
                [
                    "spec",
                    "containers" | "initContainers" | "ephemeralContainers",
                    "ports",
                ] => MergeByKey("containerPort"),
                [
                    "spec",
                    "containers" | "initContainers" | "ephemeralContainers",
                    "volumeMounts",
                ] => MergeByKey("mountPath"),
                [
                    "spec",
                    "containers" | "initContainers" | "ephemeralContainers",
                    "volumeDevices",
                ] => MergeByKey("devicePath"),
                _ => Replace,
            },
            "Node" => match path {
                ["status", "conditions"] | ["status", "addresses"] => MergeByKey("type"),
                ["spec", "taints"] => MergeByKey("key"),
                ["spec", "podCIDRs"] => MergePrimitives,
                _ => Replace,
            },
            "Namespace" => match path {
                ["status", "conditions"] => MergeByKey("type"),
                _ => Replace,
            },
            _ => Replace,
        },
    }
}

const SET_ORDER: &str = "$setElementOrder/";
const DELETE_PRIMITIVES: &str = "$deleteFromPrimitiveList/";
const RETAIN_KEYS: &str = "$retainKeys";
const PATCH: &str = "$patch";

/// Applies a strategic merge patch to `target`, an object of `kind`.
pub fn strategic_merge_patch(
    target: &mut Value,
    patch: &Value,
    kind: &str,
) -> Result<(), PatchError> {
    let mut path = Vec::new();
    merge_map(target, patch, kind, &mut path)
}

fn merge_map(
    target: &mut Value,
    patch: &Value,
    kind: &str,
    path: &mut Vec<String>,
) -> Result<(), PatchError> {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return Ok(());
    };
    match p.get(PATCH).and_then(Value::as_str) {
        Some("replace") => {
            let mut clean = p.clone();
            clean.remove(PATCH);
            *target = Value::Object(clean);
            return Ok(());
        }
        Some("delete") => {
            *target = Value::Null;
            return Ok(());
        }
        Some(other) => {
            return Err(PatchError(format!("Unknown patch type: {other} in map")));
        }
        None => {}
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(t) = target else {
        return Ok(());
    };
    if let Some(Value::Array(keep)) = p.get(RETAIN_KEYS) {
        let keep: Vec<&str> = keep.iter().filter_map(Value::as_str).collect();
        t.retain(|k, _| keep.contains(&k.as_str()));
    }
    // Deletions from primitive lists come before merges of the same field.
    for (k, v) in p {
        if let Some(field) = k.strip_prefix(DELETE_PRIMITIVES)
            && let (Some(Value::Array(cur)), Value::Array(del)) = (t.get_mut(field), v)
        {
            cur.retain(|x| !del.contains(x));
        }
    }
    for (k, v) in p {
        if k.starts_with('$') {
            continue;
        }
        if v.is_null() {
            t.remove(k);
            continue;
        }
        path.push(k.clone());
        let order = p.get(&format!("{SET_ORDER}{k}")).and_then(Value::as_array);
        match v {
            Value::Object(_) => {
                let slot = t.entry(k.clone()).or_insert(Value::Null);
                merge_map(slot, v, kind, path)?;
                if slot.is_null() {
                    t.remove(k);
                }
            }
            Value::Array(items) => {
                let refs: Vec<&str> = path.iter().map(String::as_str).collect();
                let strategy = list_strategy(kind, &refs);
                let cur = t.remove(k).unwrap_or(Value::Null);
                let merged = merge_list(cur, items, strategy, order, kind, path)?;
                t.insert(k.clone(), merged);
            }
            other => {
                t.insert(k.clone(), other.clone());
            }
        }
        path.pop();
    }
    // `$setElementOrder` alone (no patch items for that list) still reorders.
    for (k, v) in p {
        if let Some(field) = k.strip_prefix(SET_ORDER)
            && !p.contains_key(field)
            && let (Some(Value::Array(order)), Some(Value::Array(cur))) =
                (Some(v), t.get_mut(field))
        {
            path.push(field.to_string());
            let refs: Vec<&str> = path.iter().map(String::as_str).collect();
            let strategy = list_strategy(kind, &refs);
            path.pop();
            reorder(cur, order, strategy);
        }
    }
    Ok(())
}

fn key_of<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_object().and_then(|m| m.get(key))
}

fn merge_list(
    cur: Value,
    items: &[Value],
    strategy: ListStrategy,
    order: Option<&Vec<Value>>,
    kind: &str,
    path: &mut Vec<String>,
) -> Result<Value, PatchError> {
    // A `{"$patch": "replace"}` element replaces the whole list with the other elements.
    let replace = items
        .iter()
        .any(|i| key_of(i, PATCH).and_then(Value::as_str) == Some("replace"));
    if replace || strategy == ListStrategy::Replace {
        let kept: Vec<Value> = items
            .iter()
            .filter(|i| key_of(i, PATCH).is_none())
            .cloned()
            .collect();
        return Ok(Value::Array(kept));
    }
    let mut out = match cur {
        Value::Array(a) => a,
        _ => Vec::new(),
    };
    match strategy {
        ListStrategy::MergePrimitives => {
            for i in items {
                if !out.contains(i) {
                    out.push(i.clone());
                }
            }
        }
        ListStrategy::MergeByKey(key) => {
            for item in items {
                let Some(kv) = key_of(item, key).cloned() else {
                    return Err(PatchError(format!(
                        "map: {item} does not contain declared merge key: {key}"
                    )));
                };
                let pos = out.iter().position(|o| key_of(o, key) == Some(&kv));
                match key_of(item, PATCH).and_then(Value::as_str) {
                    Some("delete") => {
                        if let Some(i) = pos {
                            out.remove(i);
                        }
                        continue;
                    }
                    Some(other) if other != "merge" => {
                        return Err(PatchError(format!("Unknown patch type: {other} in list")));
                    }
                    _ => {}
                }
                match pos {
                    Some(i) => merge_map(&mut out[i], item, kind, path)?,
                    None => {
                        let mut fresh = Value::Null;
                        merge_map(&mut fresh, item, kind, path)?;
                        out.push(fresh);
                    }
                }
            }
        }
        ListStrategy::Replace => {}
    }
    if let Some(order) = order {
        reorder(&mut out, order, strategy);
    }
    Ok(Value::Array(out))
}

/// Orders `list` as `$setElementOrder` says; elements it does not name keep their relative
/// order after the named ones.
fn reorder(list: &mut [Value], order: &[Value], strategy: ListStrategy) {
    let ident = |v: &Value| -> Option<Value> {
        match strategy {
            ListStrategy::MergeByKey(key) => key_of(v, key).cloned(),
            _ => Some(v.clone()),
        }
    };
    let order_ids: Vec<Value> = order.iter().filter_map(&ident).collect();
    let rank = |v: &Value| {
        ident(v)
            .and_then(|id| order_ids.iter().position(|o| *o == id))
            .unwrap_or(usize::MAX)
    };
    list.sort_by_key(rank);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_rfc7386_examples() {
        let mut t = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut t, &json!({"a": "z", "c": {"f": null}}));
        assert_eq!(t, json!({"a": "z", "c": {"d": "e"}}));
        let mut t = json!({"a": [1, 2]});
        merge_patch(&mut t, &json!({"a": [3]}));
        assert_eq!(t, json!({"a": [3]}));
    }

    #[test]
    fn json_patch_ops() {
        let mut d = json!({"a": {"b": [1, 2]}, "x~y": 1, "s/t": 2});
        json_patch(
            &mut d,
            &json!([
                {"op": "add", "path": "/a/b/-", "value": 3},
                {"op": "add", "path": "/a/b/0", "value": 0},
                {"op": "replace", "path": "/x~0y", "value": 5},
                {"op": "remove", "path": "/s~1t"},
                {"op": "copy", "from": "/a/b", "path": "/c"},
                {"op": "move", "from": "/c", "path": "/d"},
                {"op": "test", "path": "/d/3", "value": 3},
            ]),
        )
        .unwrap();
        assert_eq!(
            d,
            json!({"a": {"b": [0, 1, 2, 3]}, "x~y": 5, "d": [0, 1, 2, 3]})
        );
        let err = json_patch(
            &mut d,
            &json!([{"op": "test", "path": "/x~0y", "value": 6}]),
        )
        .unwrap_err();
        assert!(err.0.contains("test failed"));
        assert!(
            json_patch(
                &mut d,
                &json!([{"op": "replace", "path": "/nope", "value": 1}])
            )
            .is_err()
        );
    }

    #[test]
    fn strategic_keyed_lists_and_directives() {
        let mut pod = json!({
            "metadata": {"finalizers": ["a"], "ownerReferences": [{"uid": "1", "name": "x"}]},
            "status": {
                "conditions": [
                    {"type": "Ready", "status": "False"},
                    {"type": "PodScheduled", "status": "True"}
                ],
                "podIPs": [{"ip": "10.0.0.1"}],
                "containerStatuses": [{"name": "c1", "ready": false}, {"name": "c2", "ready": false}]
            }
        });
        strategic_merge_patch(
            &mut pod,
            &json!({
                "metadata": {"finalizers": ["b"], "ownerReferences": [{"uid": "2", "name": "y"}]},
                "status": {
                    "$setElementOrder/conditions": [{"type": "PodScheduled"}, {"type": "Ready"}, {"type": "Initialized"}],
                    "conditions": [{"type": "Ready", "status": "True"}, {"type": "Initialized", "status": "True"}],
                    "containerStatuses": [{"name": "c2", "ready": true}, {"name": "c1", "$patch": "delete"}],
                    "podIPs": [{"ip": "10.0.0.2"}]
                }
            }),
            "Pod",
        )
        .unwrap();
        assert_eq!(pod["metadata"]["finalizers"], json!(["a", "b"]));
        assert_eq!(
            pod["metadata"]["ownerReferences"].as_array().unwrap().len(),
            2
        );
        assert_eq!(
            pod["status"]["conditions"],
            json!([
                {"type": "PodScheduled", "status": "True"},
                {"type": "Ready", "status": "True"},
                {"type": "Initialized", "status": "True"}
            ])
        );
        assert_eq!(
            pod["status"]["containerStatuses"],
            json!([{"name": "c2", "ready": true}])
        );
        assert_eq!(
            pod["status"]["podIPs"],
            json!([{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}])
        );

        let mut node = json!({"status": {"images": [{"names": ["a"]}], "addresses": [{"type": "Hostname", "address": "h"}]}});
        strategic_merge_patch(
            &mut node,
            &json!({"status": {"images": [{"names": ["b"]}], "addresses": [{"type": "InternalIP", "address": "1.2.3.4"}]}}),
            "Node",
        )
        .unwrap();
        assert_eq!(node["status"]["images"], json!([{"names": ["b"]}]));
        assert_eq!(node["status"]["addresses"].as_array().unwrap().len(), 2);

        let mut m = json!({"spec": {"a": 1, "b": 2}});
        strategic_merge_patch(
            &mut m,
            &json!({"spec": {"$patch": "replace", "c": 3}}),
            "Pod",
        )
        .unwrap();
        assert_eq!(m, json!({"spec": {"c": 3}}));
        let mut l = json!({"status": {"conditions": [{"type": "A"}]}});
        strategic_merge_patch(
            &mut l,
            &json!({"status": {"conditions": [{"$patch": "replace"}, {"type": "B"}]}}),
            "Pod",
        )
        .unwrap();
        assert_eq!(l, json!({"status": {"conditions": [{"type": "B"}]}}));
        let mut f = json!({"metadata": {"finalizers": ["a", "b"]}});
        strategic_merge_patch(
            &mut f,
            &json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
            "Pod",
        )
        .unwrap();
        assert_eq!(f, json!({"metadata": {"finalizers": ["b"]}}));
    }
}
