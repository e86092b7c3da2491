//! Objects pass through their API type on the way into storage, as kube-apiserver decodes
//! every write into its Go type: unknown fields are dropped, a value of the wrong JSON type
//! is refused, and required fields missing from a list item come back as zero values (a
//! `{"$patch": "replace"}` element of an atomic list becomes an entry with empty name), and
//! empty lists are left out as Go's `omitempty` leaves them out.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Namespace, Node, Pod, Secret, ServiceAccount};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::resources::ResourceInfo;

fn through<K: Serialize + DeserializeOwned>(obj: Value) -> Result<Value, String> {
    let typed: K = serde_json::from_value(obj).map_err(|e| e.to_string())?;
    let mut out = serde_json::to_value(&typed).map_err(|e| e.to_string())?;
    drop_empty_lists(&mut out);
    Ok(out)
}

fn drop_empty_lists(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, v| v.as_array().is_none_or(|a| !a.is_empty()));
            m.values_mut().for_each(drop_empty_lists);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_empty_lists),
        _ => {}
    }
}

/// `obj` (stored form) as its type keeps it; the serde error when it does not decode.
pub(crate) fn normalize(info: &ResourceInfo, obj: Value) -> Result<Value, String> {
    match info.storage {
        "pods" => through::<Pod>(obj),
        "nodes" => through::<Node>(obj),
        "namespaces" => through::<Namespace>(obj),
        "configmaps" => through::<ConfigMap>(obj),
        "secrets" => through::<Secret>(obj),
        "serviceaccounts" => through::<ServiceAccount>(obj),
        "leases" => through::<Lease>(obj),
        "events" => through::<Event>(obj),
        _ => Ok(obj),
    }
}
