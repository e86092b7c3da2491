//! Objects pass through their API type on the way into storage, as kube-apiserver decodes
//! every write into its Go type: unknown fields are dropped, a value of the wrong JSON type
//! is refused, and required fields missing from a list item come back as zero values (a
//! `{"$patch": "replace"}` element of an atomic list becomes an entry with empty name), and
//! empty lists are left out as Go's `omitempty` leaves them out. A Secret's `stringData`
//! becomes `data`, as the Secret registry does.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, Event, Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod, Secret,
    Service, ServiceAccount,
};
use k8s_openapi::api::storage::v1::{CSIDriver, CSINode, StorageClass, VolumeAttachment};
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
        "secrets" => through::<Secret>(obj).map(string_data_into_data),
        "serviceaccounts" => through::<ServiceAccount>(obj),
        "services" => through::<Service>(obj),
        "leases" => through::<Lease>(obj),
        "events" => through::<Event>(obj),
        "persistentvolumes" => through::<PersistentVolume>(obj),
        "persistentvolumeclaims" => through::<PersistentVolumeClaim>(obj),
        "csinodes" => through::<CSINode>(obj),
        "csidrivers" => through::<CSIDriver>(obj),
        "volumeattachments" => through::<VolumeAttachment>(obj),
        "storageclasses" => through::<StorageClass>(obj),
        _ => Ok(obj),
    }
}

/// A Secret's `stringData` is merged into `data` on write (its keys win) and never stored.
fn string_data_into_data(mut secret: Value) -> Value {
    use base64::Engine;
    let Some(m) = secret.as_object_mut() else {
        return secret;
    };
    let Some(Value::Object(strings)) = m.remove("stringData") else {
        return secret;
    };
    let data = m
        .entry("data")
        .or_insert_with(|| Value::Object(Default::default()));
    if let Some(data) = data.as_object_mut() {
        for (k, v) in strings {
            let text = v.as_str().unwrap_or_default();
            let encoded = base64::engine::general_purpose::STANDARD.encode(text);
            data.insert(k, Value::String(encoded));
        }
    }
    secret
}
