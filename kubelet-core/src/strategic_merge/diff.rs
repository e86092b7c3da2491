//! The two-way strategic merge patch from one version of an object to another, as
//! apimachinery's `CreateTwoWayMergePatch` makes it (the patch the reference kubelet sends
//! for pod and node status): changed scalars and atomic lists sent whole, keyed lists as
//! their changed items plus `$patch: delete` items and a `$setElementOrder` list, removed
//! fields as `null`.

use serde_json::{Map, Value};

use super::order::{go_format, go_stable_sort};
use super::schema::{Cursor, Field};

const PATCH: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ORDER: &str = "$setElementOrder/";
const DELETE_PRIMITIVES: &str = "$deleteFromPrimitiveList/";

/// The patch taking `original` to `modified` (maps; anything else diffs as an empty map).
pub(crate) fn two_way(original: &Value, modified: &Value, cursor: Cursor<'_>) -> Value {
    let empty = Map::new();
    let o = original.as_object().unwrap_or(&empty);
    let m = modified.as_object().unwrap_or(&empty);
    Value::Object(diff_maps(o, m, cursor, false))
}

fn diff_maps(
    original: &Map<String, Value>,
    modified: &Map<String, Value>,
    cursor: Cursor<'_>,
    retain_keys: bool,
) -> Map<String, Value> {
    let mut patch = Map::new();
    let mut retained = Vec::new();
    for (key, new) in modified {
        if retain_keys && !new.is_null() {
            retained.push(Value::String(key.clone()));
        }
        let Some(old) = original.get(key) else {
            patch.insert(key.clone(), new.clone());
            continue;
        };
        match (old, new) {
            (Value::Object(o), Value::Object(n)) => {
                let field = cursor.field(key);
                if field.replaces() {
                    if o != n {
                        patch.insert(key.clone(), new.clone());
                    }
                } else {
                    let inner = diff_maps(o, n, field.inner, field.retains_keys());
                    if !inner.is_empty() {
                        patch.insert(key.clone(), Value::Object(inner));
                    }
                }
            }
            (Value::Array(o), Value::Array(n)) => {
                diff_list_field(key, o, n, cursor.field(key), &mut patch);
            }
            _ => {
                if old != new {
                    patch.insert(key.clone(), new.clone());
                }
            }
        }
    }
    for key in original.keys() {
        if !modified.contains_key(key) {
            patch.insert(key.clone(), Value::Null);
        }
    }
    let more_in_original = original
        .iter()
        .any(|(k, v)| !v.is_null() && !modified.contains_key(k));
    if !retained.is_empty() && (!patch.is_empty() || more_in_original) {
        retained.sort_by_key(go_format);
        patch.insert(RETAIN_KEYS.to_string(), Value::Array(retained));
    }
    patch
}

fn diff_list_field(
    key: &str,
    original: &[Value],
    modified: &[Value],
    field: Field<'_>,
    patch: &mut Map<String, Value>,
) {
    if !field.merges() {
        if original != modified {
            patch.insert(key.to_string(), Value::Array(modified.to_vec()));
        }
        return;
    }
    if original.is_empty() {
        if !modified.is_empty() {
            patch.insert(key.to_string(), Value::Array(modified.to_vec()));
        }
        return;
    }
    let merge_key = field.key();
    let maps = original.iter().chain(modified).any(Value::is_object);
    let (changes, deletions, order) = if maps {
        diff_maps_list(original, modified, merge_key, field)
    } else {
        diff_scalar_list(original, modified)
    };
    if !changes.is_empty() {
        patch.insert(key.to_string(), Value::Array(changes));
    }
    if !deletions.is_empty() {
        patch.insert(format!("{DELETE_PRIMITIVES}{key}"), Value::Array(deletions));
    }
    if let Some(order) = order {
        patch.insert(format!("{SET_ORDER}{key}"), Value::Array(order));
    }
}

fn key_string(v: &Value, key: &str) -> String {
    go_format(v.get(key).unwrap_or(&Value::Null))
}

type ListDiff = (Vec<Value>, Vec<Value>, Option<Vec<Value>>);

/// Lists of maps merged by `key`: the changed and new items (each with its key), then a
/// `$patch: delete` item per removed one; the order of all of `modified`.
fn diff_maps_list(original: &[Value], modified: &[Value], key: &str, field: Field<'_>) -> ListDiff {
    let mut old: Vec<&Value> = original.iter().collect();
    let mut new: Vec<&Value> = modified.iter().collect();
    let by_key = |a: &&Value, b: &&Value| key_string(a, key) < key_string(b, key);
    go_stable_sort(&mut old, &by_key);
    go_stable_sort(&mut new, &by_key);
    let empty = Map::new();
    let as_map = |v: &Value| v.as_object().cloned().unwrap_or_else(|| empty.clone());
    let mut changes = Vec::new();
    let mut deletions = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < new.len() {
        let ok = old.get(i).map(|v| key_string(v, key));
        let nk = new.get(j).map(|v| key_string(v, key));
        match (ok, nk) {
            (Some(a), Some(b)) if a == b => {
                let mut inner = diff_maps(
                    &as_map(old[i]),
                    &as_map(new[j]),
                    field.inner,
                    field.retains_keys(),
                );
                if !inner.is_empty() {
                    inner.insert(
                        key.to_string(),
                        new[j].get(key).cloned().unwrap_or(Value::Null),
                    );
                    changes.push(Value::Object(inner));
                }
                i += 1;
                j += 1;
            }
            (None, Some(_)) => {
                changes.push(new[j].clone());
                j += 1;
            }
            (Some(a), Some(b)) if a > b => {
                changes.push(new[j].clone());
                j += 1;
            }
            _ => {
                let mut item = Map::new();
                item.insert(PATCH.to_string(), Value::String("delete".to_string()));
                item.insert(
                    key.to_string(),
                    old[i].get(key).cloned().unwrap_or(Value::Null),
                );
                deletions.push(Value::Object(item));
                i += 1;
            }
        }
    }
    let same_key = |a: &Value, b: &Value| key_string(a, key) == key_string(b, key);
    let place = |v: &Value| modified.iter().position(|m| same_key(m, v));
    go_stable_sort(
        &mut changes,
        &|a: &Value, b: &Value| match (place(a), place(b)) {
            (Some(x), Some(y)) => x < y,
            _ => true,
        },
    );
    let order_same = original.len() == modified.len()
        && original.iter().zip(modified).all(|(a, b)| same_key(a, b));
    changes.extend(deletions);
    let order = (!changes.is_empty() || !order_same).then(|| {
        modified
            .iter()
            .map(|m| {
                let mut item = Map::new();
                item.insert(key.to_string(), m.get(key).cloned().unwrap_or(Value::Null));
                Value::Object(item)
            })
            .collect()
    });
    (changes, Vec::new(), order)
}

/// Lists of scalars merged as sets: the added values, the removed ones (sent in a
/// `$deleteFromPrimitiveList`), and the whole new order when anything differs.
fn diff_scalar_list(original: &[Value], modified: &[Value]) -> ListDiff {
    let mut old: Vec<&Value> = original.iter().collect();
    let mut new: Vec<&Value> = modified.iter().collect();
    let by_text = |a: &&Value, b: &&Value| go_format(a) < go_format(b);
    go_stable_sort(&mut old, &by_text);
    go_stable_sort(&mut new, &by_text);
    let mut added = Vec::new();
    let mut removed: Vec<Value> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < new.len() {
        let a = old.get(i).map(|v| go_format(v));
        let b = new.get(j).map(|v| go_format(v));
        match (a, b) {
            (Some(a), Some(b)) if a == b => {
                i += 1;
                j += 1;
            }
            (Some(a), Some(b)) if a < b => {
                removed.push(old[i].clone());
                i += 1;
            }
            (Some(_), None) => {
                removed.push(old[i].clone());
                i += 1;
            }
            _ => {
                added.push(new[j].clone());
                j += 1;
            }
        }
    }
    removed.dedup();
    let place = |v: &Value| modified.iter().position(|m| m == v);
    go_stable_sort(
        &mut added,
        &|a: &Value, b: &Value| match (place(a), place(b)) {
            (Some(x), Some(y)) => x < y,
            _ => true,
        },
    );
    let order = (!removed.is_empty() || original != modified).then(|| modified.to_vec());
    (added, removed, order)
}
