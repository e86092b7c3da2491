//! Applying a strategic merge patch the way kube-apiserver does (apimachinery's
//! `StrategicMergeMapPatch` with parallel lists merged and unmatched nulls ignored), corners
//! included: directives are honoured only where the server honours them, so that a fake API
//! server stores what a real one would.

use serde_json::{Map, Value};

use super::order::{go_format, go_stable_sort};
use super::schema::{Cursor, Field};
use super::{PatchError, PatchErrorKind};

const PATCH: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ORDER: &str = "$setElementOrder/";
const DELETE_PRIMITIVES: &str = "$deleteFromPrimitiveList/";

fn internal(message: String) -> PatchError {
    PatchError {
        kind: PatchErrorKind::Internal,
        message,
    }
}

fn bad_request(message: &str) -> PatchError {
    PatchError {
        kind: PatchErrorKind::BadRequest,
        message: message.to_string(),
    }
}

fn no_merge_key(item: &Value, key: &str) -> PatchError {
    internal(format!(
        "map: {} does not contain declared merge key: {key}",
        go_format(item)
    ))
}

fn bad_patch_type(kind: &Value, item: &Value) -> PatchError {
    internal(format!(
        "unknown patch type: {} in map: {}",
        go_format(kind),
        go_format(item)
    ))
}

/// Applies `patch` to `original`, an object whose top is `cursor`'s type.
pub(crate) fn apply(
    original: &Value,
    patch: &Value,
    cursor: Cursor<'_>,
) -> Result<Value, PatchError> {
    let Value::Object(patch) = patch else {
        return Err(bad_request("invalid JSON document"));
    };
    let original = match original {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    merge_map(original, patch.clone(), cursor).map(Value::Object)
}

fn merge_map(
    mut original: Map<String, Value>,
    mut patch: Map<String, Value>,
    cursor: Cursor<'_>,
) -> Result<Map<String, Value>, PatchError> {
    if let Some(directive) = patch.get(PATCH).cloned() {
        return match directive.as_str() {
            Some("replace") => {
                patch.remove(PATCH);
                Ok(patch)
            }
            Some("delete") => Ok(Map::new()),
            _ => Err(bad_patch_type(&directive, &Value::Object(patch))),
        };
    }
    apply_retain_keys(&mut original, &mut patch)?;
    merge_ordered_lists(&mut original, &mut patch, cursor)?;
    for (key, value) in patch {
        if key.starts_with(SET_ORDER) || key == RETAIN_KEYS {
            continue;
        }
        let (key, delete_list) = match key.strip_prefix(DELETE_PRIMITIVES) {
            Some(field) => (field.to_string(), true),
            None => (key, false),
        };
        if value.is_null() {
            original.remove(&key);
            continue;
        }
        let present = original.get(&key).filter(|o| same_kind(o, &value));
        let Some(current) = present else {
            // Absent (or of another JSON type): the patch's value, its directives dropped.
            if !delete_list {
                let mut value = value;
                discard_nulls(&mut value);
                match remove_directives(value) {
                    Some(v) => {
                        original.insert(key, v);
                    }
                    None => {
                        original.remove(&key);
                    }
                }
            }
            continue;
        };
        let field = cursor.field(&key);
        let merged = match (current, value) {
            (Value::Object(cur), Value::Object(p)) => {
                if field.replaces() {
                    Value::Object(p)
                } else {
                    Value::Object(merge_map(cur.clone(), p, field.inner)?)
                }
            }
            (Value::Array(cur), Value::Array(p)) => {
                Value::Array(merge_list_field(cur.clone(), p, field, delete_list)?)
            }
            (_, v) => v,
        };
        original.insert(key, merged);
    }
    Ok(original)
}

/// Go compares the dynamic types of the decoded values: maps, lists and scalars merge only
/// with their own kind.
fn same_kind(a: &Value, b: &Value) -> bool {
    matches!(
        (a, b),
        (Value::Object(_), Value::Object(_))
            | (Value::Array(_), Value::Array(_))
            | (Value::String(_), Value::String(_))
            | (Value::Bool(_), Value::Bool(_))
            | (Value::Number(_), Value::Number(_))
    )
}

fn discard_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, v| !v.is_null());
            m.values_mut().for_each(discard_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(discard_nulls),
        _ => {}
    }
}

/// A value taken from the patch as it is: maps carrying `$patch` are dropped, wherever they
/// stand (kube-apiserver v1.28 does so; older servers stored them verbatim).
fn remove_directives(v: Value) -> Option<Value> {
    match v {
        Value::Object(m) => {
            if m.contains_key(PATCH) {
                return None;
            }
            let mut out = Map::new();
            for (k, v) in m {
                if let Some(v) = remove_directives(v) {
                    out.insert(k, v);
                }
            }
            Some(Value::Object(out))
        }
        Value::Array(items) => Some(Value::Array(
            items.into_iter().filter_map(remove_directives).collect(),
        )),
        other => Some(other),
    }
}

fn apply_retain_keys(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
) -> Result<(), PatchError> {
    let Some(retain) = patch.remove(RETAIN_KEYS) else {
        return Ok(());
    };
    let keep: Vec<Value> = match retain {
        Value::Null => Vec::new(),
        Value::Array(items) => items,
        _ => return Err(bad_request("invalid patch format of retainKeys")),
    };
    let kept = |k: &str| keep.iter().any(|v| v.as_str() == Some(k));
    for (k, v) in patch.iter() {
        if v.is_null() || k.starts_with(DELETE_PRIMITIVES) || k.starts_with(SET_ORDER) {
            continue;
        }
        if !kept(k) {
            return Err(bad_request("invalid patch format of retainKeys"));
        }
    }
    original.retain(|k, _| kept(k));
    Ok(())
}

/// The element kind of two lists together: maps, scalars, or an error for lists of lists
/// and mixed kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Elements {
    Maps,
    Scalars,
}

fn element_kind(a: &[Value], b: &[Value]) -> Result<Option<Elements>, PatchError> {
    let mut kind = None;
    for v in a.iter().chain(b) {
        let this = match v {
            Value::Null => continue,
            Value::Array(_) => {
                return Err(PatchError {
                    kind: PatchErrorKind::Unprocessable,
                    message: "lists of lists are not supported".to_string(),
                });
            }
            Value::Object(_) => Elements::Maps,
            _ => Elements::Scalars,
        };
        match kind {
            None => kind = Some(this),
            Some(k) if k != this => {
                return Err(internal(format!(
                    "mismatched types in list: {} and {}",
                    go_format(&Value::Array(a.to_vec())),
                    go_format(&Value::Array(b.to_vec()))
                )));
            }
            Some(_) => {}
        }
    }
    Ok(kind)
}

fn merge_list_field(
    original: Vec<Value>,
    patch: Vec<Value>,
    field: Field<'_>,
    delete_list: bool,
) -> Result<Vec<Value>, PatchError> {
    if field.merges() || delete_list {
        merge_list(original, patch, field, delete_list)
    } else {
        // Atomic: the patch's list as it is, directive elements and all.
        Ok(patch)
    }
}

fn merge_key_of<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_object().and_then(|m| m.get(key))
}

fn merge_list(
    original: Vec<Value>,
    patch: Vec<Value>,
    field: Field<'_>,
    delete_list: bool,
) -> Result<Vec<Value>, PatchError> {
    if original.is_empty() && patch.is_empty() {
        return Ok(original);
    }
    let key = field.key();
    let kind = element_kind(&original, &patch)?;
    let (merged, patch, server_order) = if kind != Some(Elements::Maps) {
        if delete_list {
            let kept = original
                .into_iter()
                .filter(|v| !patch.contains(v))
                .collect();
            return Ok(kept);
        }
        let mut merged: Vec<Value> = Vec::new();
        for v in original.iter().chain(&patch) {
            if !merged.contains(v) {
                merged.push(v.clone());
            }
        }
        (merged, patch, original)
    } else {
        if key.is_empty() {
            return Err(internal(
                "cannot merge lists without merge key for the field".to_string(),
            ));
        }
        let (original, patch) = split_special_elements(original, patch, key)?;
        let merged = merge_elements(original.clone(), &patch, key, field)?;
        (merged, patch, original)
    };
    let (in_patch, server_only) = partition(merged, &patch, key, kind)?;
    normalize_order(in_patch, server_only, &patch, &server_order, key, kind)
}

/// `$patch` elements of a list of maps: `delete` removes the original's entries of that
/// key, `replace` drops the original; anything else is refused.
fn split_special_elements(
    mut original: Vec<Value>,
    patch: Vec<Value>,
    key: &str,
) -> Result<(Vec<Value>, Vec<Value>), PatchError> {
    let mut plain = Vec::new();
    let mut replace = false;
    for item in patch {
        let Some(directive) = merge_key_of(&item, PATCH) else {
            plain.push(item);
            continue;
        };
        match directive.as_str() {
            Some("delete") => {
                let Some(value) = merge_key_of(&item, key) else {
                    return Err(no_merge_key(&item, key));
                };
                original.retain(|o| merge_key_of(o, key) != Some(value));
            }
            Some("replace") => replace = true,
            Some("merge") => {
                return Err(internal(
                    "merging lists cannot yet be specified in the patch".to_string(),
                ));
            }
            _ => return Err(bad_patch_type(directive, &item)),
        }
    }
    if replace {
        Ok((plain, Vec::new()))
    } else {
        Ok((original, plain))
    }
}

fn merge_elements(
    mut original: Vec<Value>,
    patch: &[Value],
    key: &str,
    field: Field<'_>,
) -> Result<Vec<Value>, PatchError> {
    for item in patch {
        let Some(value) = merge_key_of(item, key) else {
            return Err(no_merge_key(item, key));
        };
        let found = original
            .iter()
            .position(|o| merge_key_of(o, key) == Some(value));
        match (found, item) {
            (Some(i), Value::Object(p)) => {
                let current = match &original[i] {
                    Value::Object(m) => m.clone(),
                    _ => Map::new(),
                };
                original[i] = Value::Object(merge_map(current, p.clone(), field.inner)?);
            }
            _ => original.push(item.clone()),
        }
    }
    Ok(original)
}

fn same_item(a: &Value, b: &Value, key: &str, kind: Option<Elements>) -> bool {
    if kind == Some(Elements::Maps) {
        merge_key_of(a, key).is_some() && merge_key_of(a, key) == merge_key_of(b, key)
    } else {
        a == b
    }
}

fn index_in(list: &[Value], item: &Value, key: &str, kind: Option<Elements>) -> Option<usize> {
    list.iter().position(|o| same_item(o, item, key, kind))
}

/// Splits `merged` into the items `by` names and the others, each keeping its order.
fn partition(
    merged: Vec<Value>,
    by: &[Value],
    key: &str,
    kind: Option<Elements>,
) -> Result<(Vec<Value>, Vec<Value>), PatchError> {
    let mut named = Vec::new();
    let mut others = Vec::new();
    for item in merged {
        if kind == Some(Elements::Maps) && merge_key_of(&item, key).is_none() {
            return Err(no_merge_key(&item, key));
        }
        if index_in(by, &item, key, kind).is_some() {
            named.push(item);
        } else {
            others.push(item);
        }
    }
    Ok((named, others))
}

/// Sorts `items` by their place in `order`, dropping those `order` marks for deletion.
fn sort_by_order(
    mut items: Vec<Value>,
    order: &[Value],
    key: &str,
    kind: Option<Elements>,
) -> Result<Vec<Value>, PatchError> {
    let mut deleted = Vec::new();
    if kind == Some(Elements::Maps) {
        for v in items.iter().chain(order) {
            if merge_key_of(v, key).is_none() {
                return Err(no_merge_key(v, key));
            }
        }
        for v in order {
            if merge_key_of(v, PATCH).and_then(Value::as_str) == Some("delete") {
                deleted.extend(merge_key_of(v, key).cloned());
            }
        }
    }
    go_stable_sort(&mut items, &|a: &Value, b: &Value| match (
        index_in(order, a, key, kind),
        index_in(order, b, key, kind),
    ) {
        (Some(i), Some(j)) => i < j,
        _ => true,
    });
    if !deleted.is_empty() {
        items.retain(|v| merge_key_of(v, key).is_none_or(|k| !deleted.contains(k)));
    }
    Ok(items)
}

/// The patch's items in the patch's order, the server's other items in the server's order,
/// interleaved where the server's order places them.
fn normalize_order(
    in_patch: Vec<Value>,
    server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    key: &str,
    kind: Option<Elements>,
) -> Result<Vec<Value>, PatchError> {
    let right = sort_by_order(in_patch, patch_order, key, kind)?;
    let left = sort_by_order(server_only, server_order, key, kind)?;
    let mut out = Vec::with_capacity(left.len() + right.len());
    let (mut left, mut right) = (left.into_iter().peekable(), right.into_iter().peekable());
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => matches!(
                (
                    index_in(server_order, l, key, kind),
                    index_in(server_order, r, key, kind)
                ),
                (Some(i), Some(j)) if i < j
            ),
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next);
    }
    Ok(out)
}

/// `$setElementOrder/<field>` lists: the field's patch list is merged and the result put in
/// that order; the field is then done.
fn merge_ordered_lists(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
    cursor: Cursor<'_>,
) -> Result<(), PatchError> {
    let fields: Vec<String> = patch
        .keys()
        .filter_map(|k| k.strip_prefix(SET_ORDER).map(str::to_string))
        .collect();
    for name in fields {
        let order = match patch.get(&format!("{SET_ORDER}{name}")) {
            Some(Value::Array(order)) => order.clone(),
            _ => return Err(bad_request("invalid patch format of setElementOrder list")),
        };
        let current = match original.get(&name) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items.clone(),
            Some(_) => return Err(bad_request("invalid patch format of setElementOrder list")),
        };
        let items = match patch.get(&name) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items.clone(),
            Some(_) => return Err(bad_request("invalid patch format of setElementOrder list")),
        };
        let field = cursor.field(&name);
        let key = field.key();
        check_order(&items, &order, key)?;
        let kind = element_kind(&current, &items)?;
        let merged = merge_list_field(current.clone(), items, field, false)?;
        let (named, others) = partition(merged, &order, key, kind)?;
        let merged = normalize_order(named, others, &order, &current, key, kind)?;
        original.insert(name.clone(), Value::Array(merged));
        patch.remove(&name);
    }
    Ok(())
}

/// The patch list's items must come in the order `$setElementOrder` gives them.
fn check_order(items: &[Value], order: &[Value], key: &str) -> Result<(), PatchError> {
    if items.is_empty() || order.is_empty() {
        return Ok(());
    }
    let plain: Vec<&Value> = if key.is_empty() {
        items.iter().collect()
    } else {
        items
            .iter()
            .filter(|v| merge_key_of(v, PATCH).and_then(Value::as_str) != Some("delete"))
            .collect()
    };
    let same = |a: &Value, b: &Value| {
        if key.is_empty() {
            a == b
        } else {
            merge_key_of(a, key).is_some() && merge_key_of(a, key) == merge_key_of(b, key)
        }
    };
    let (mut i, mut j) = (0, 0);
    while i < plain.len() && j < order.len() {
        if same(plain[i], &order[j]) {
            i += 1;
        }
        j += 1;
    }
    if i < plain.len() {
        return Err(internal(format!(
            "The order in patch list:\n{}\n doesn't match $setElementOrder list:\n{}\n",
            go_format(&Value::Array(items.to_vec())),
            go_format(&Value::Array(order.to_vec()))
        )));
    }
    Ok(())
}
