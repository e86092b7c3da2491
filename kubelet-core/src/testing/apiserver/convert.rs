//! Conversion between the stored (core/v1) form of Events and events.k8s.io/v1.

use serde_json::{Map, Value};

use super::resources::ResourceInfo;

/// core/v1 field <-> events.k8s.io/v1 field.
const RENAMES: &[(&str, &str)] = &[
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
    ("reportingComponent", "reportingController"),
];

fn rename(obj: &Value, from_core: bool) -> Value {
    let Value::Object(m) = obj else {
        return obj.clone();
    };
    let mut out = Map::new();
    for (k, v) in m {
        let new_key = RENAMES
            .iter()
            .find_map(|(core, ext)| {
                if from_core && k == core {
                    Some(*ext)
                } else if !from_core && k == ext {
                    Some(*core)
                } else {
                    None
                }
            })
            .unwrap_or(k.as_str());
        out.insert(new_key.to_string(), v.clone());
    }
    Value::Object(out)
}

/// The stored object as a client of `info` sees it.
pub(crate) fn to_external(info: &ResourceInfo, obj: &Value) -> Value {
    if info.group == "events.k8s.io" {
        let mut v = rename(obj, true);
        v["apiVersion"] = Value::String(info.api_version());
        v["kind"] = Value::String(info.kind.to_string());
        v
    } else {
        obj.clone()
    }
}

/// A client's object of `info` in stored form.
pub(crate) fn to_internal(info: &ResourceInfo, obj: &Value) -> Value {
    if info.group == "events.k8s.io" {
        let mut v = rename(obj, false);
        v["apiVersion"] = Value::String("v1".to_string());
        v
    } else {
        obj.clone()
    }
}
