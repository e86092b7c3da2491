//! JSON merge patch (RFC 7386) and JSON patch (RFC 6902); strategic merge patches are
//! [`crate::strategic_merge`]'s.

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
}
