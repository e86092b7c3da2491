//! Storage objects as kube-apiserver v1.28 keeps them: `storage.k8s.io/v1` CSINodes,
//! CSIDrivers, VolumeAttachments and StorageClasses, core/v1 PersistentVolumes and
//! PersistentVolumeClaims. The defaults, the status a create starts from and the validation
//! a kubelet (or a test setting up its storage) can meet, with the real server's field paths,
//! messages and order; each is checked against a real kube-apiserver by
//! `tests/patch_conformance.rs`.
//!
//! Go's rendering of a struct in an immutability error (`%#v`, with pointer addresses) is
//! imitated with a fixed address, `0xc000000000`: the real one differs on every request.

use serde_json::{Value, json};

use super::resources::ResourceInfo;
use super::status::ApiError;

/// A validation cause: field path, cause reason, message.
pub(super) type Cause = (String, &'static str, String);

/// Storage keys of the resources this module keeps.
pub(super) const STORAGES: &[&str] = &[
    "csinodes",
    "csidrivers",
    "volumeattachments",
    "storageclasses",
    "persistentvolumes",
    "persistentvolumeclaims",
];

/// The kinds whose strategy refuses an update without a resourceVersion
/// (`AllowUnconditionalUpdate` false).
pub(super) const REQUIRES_RESOURCE_VERSION: &[&str] =
    &["csinodes", "csidrivers", "volumeattachments"];

/// The refusal of an update without a resourceVersion, named by the resource as the
/// generic registry names it.
pub(super) fn unconditional_update(info: &ResourceInfo, name: &str) -> ApiError {
    ApiError::invalid(
        info.plural,
        info.group,
        name,
        &[(
            "metadata.resourceVersion".to_string(),
            "FieldValueInvalid",
            "Invalid value: 0x0: must be specified for an update".to_string(),
        )],
    )
}

/// IsDNS1123Subdomain's message, as kube-apiserver words it.
pub(super) const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const QUALIFIED_NAME_MSG: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
/// A CSI node ID may have this many characters (v1.28 allows the longer limit).
const NODE_ID_MAX: usize = 256;
/// The address Go would print for a pointer; see the module comment.
const FAKE_POINTER: &str = "0xc000000000";

/// The volume sources of a PersistentVolume spec (`spec: Required value: must specify a
/// volume type` when none is set).
const PV_SOURCES: &[&str] = &[
    "awsElasticBlockStore",
    "azureDisk",
    "azureFile",
    "cephfs",
    "cinder",
    "csi",
    "fc",
    "flexVolume",
    "flocker",
    "gcePersistentDisk",
    "glusterfs",
    "hostPath",
    "iscsi",
    "local",
    "nfs",
    "photonPersistentDisk",
    "portworxVolume",
    "quobyte",
    "rbd",
    "scaleIO",
    "storageos",
    "vsphereVolume",
];

fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

fn invalid(field: &str, value: &str, why: &str) -> Cause {
    (
        field.to_string(),
        "FieldValueInvalid",
        format!("Invalid value: {}: {why}", quote(value)),
    )
}

fn required(field: &str, detail: &str) -> Cause {
    let message = if detail.is_empty() {
        "Required value".to_string()
    } else {
        format!("Required value: {detail}")
    };
    (field.to_string(), "FieldValueRequired", message)
}

fn duplicate(field: &str, value: &str) -> Cause {
    (
        field.to_string(),
        "FieldValueDuplicate",
        format!("Duplicate value: {}", quote(value)),
    )
}

fn not_supported(field: &str, value: &str, supported: &[&str]) -> Cause {
    let list: Vec<String> = supported.iter().map(|s| quote(s)).collect();
    (
        field.to_string(),
        "FieldValueNotSupported",
        format!(
            "Unsupported value: {}: supported values: {}",
            quote(value),
            list.join(", ")
        ),
    )
}

/// IsDNS1123Subdomain's regular expression: dot-separated labels of lowercase
/// alphanumerics and `-`, each starting and ending with an alphanumeric.
pub(super) fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|label| {
            !label.is_empty()
                && label
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && label.starts_with(|c: char| c.is_ascii_alphanumeric())
                && label.ends_with(|c: char| c.is_ascii_alphanumeric())
        })
}

/// IsDNS1123Subdomain's messages.
fn dns1123_subdomain_errors(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 253 {
        errs.push("must be no more than 253 characters".to_string());
    }
    if !is_dns1123_subdomain(s) {
        errs.push(DNS1123_SUBDOMAIN_MSG.to_string());
    }
    errs
}

fn qualified_name_part_ok(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// IsQualifiedName's messages (label keys, topology keys).
fn qualified_name_errors(value: &str) -> Vec<String> {
    let parts: Vec<&str> = value.split('/').collect();
    let mut errs = Vec::new();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_string());
            } else {
                errs.extend(
                    dns1123_subdomain_errors(prefix)
                        .into_iter()
                        .map(|m| format!("prefix part {m}")),
                );
            }
            *name
        }
        _ => {
            return vec![format!(
                "a qualified name {QUALIFIED_NAME_MSG} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
            )];
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_string());
    } else if name.len() > 63 {
        errs.push("name part must be no more than 63 characters".to_string());
    }
    if !qualified_name_part_ok(name) {
        errs.push(format!("name part {QUALIFIED_NAME_MSG}"));
    }
    errs
}

/// validateCSIDriverName: required, at most 63 bytes, a DNS subdomain once lowercased.
fn csi_driver_name_errors(name: &str, field: &str) -> Vec<Cause> {
    let mut causes = Vec::new();
    if name.is_empty() {
        causes.push(required(field, ""));
    }
    if name.len() > 63 {
        causes.push((
            field.to_string(),
            "FieldValueTooLong",
            "Too long: must have at most 63 bytes".to_string(),
        ));
    }
    for msg in dns1123_subdomain_errors(&name.to_lowercase()) {
        causes.push(invalid(field, name, &msg));
    }
    causes
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn set_default(obj: &mut Value, field: &str, v: Value) {
    if let Some(m) = obj.as_object_mut() {
        m.entry(field.to_string()).or_insert(v);
    }
}

/// The defaults and the starting status of a create (SetDefaults_* and PrepareForCreate).
pub(super) fn defaults_on_create(storage: &str, obj: &mut Value) {
    defaults(storage, obj);
    match storage {
        // A new PV or PVC starts Pending, whatever status was sent; a VolumeAttachment
        // starts detached.
        "persistentvolumes" | "persistentvolumeclaims" => {
            obj["status"] = json!({"phase": "Pending"})
        }
        "volumeattachments" => obj["status"] = json!({"attached": false}),
        _ => {}
    }
}

/// SetDefaults_* of the storage kinds (applied on every write, as decoding applies them).
pub(super) fn defaults(storage: &str, obj: &mut Value) {
    match storage {
        "csidrivers" => {
            if !obj.get("spec").is_some_and(Value::is_object) {
                obj["spec"] = json!({});
            }
            let spec = &mut obj["spec"];
            set_default(spec, "attachRequired", json!(true));
            set_default(spec, "podInfoOnMount", json!(false));
            set_default(spec, "storageCapacity", json!(false));
            set_default(spec, "fsGroupPolicy", json!("ReadWriteOnceWithFSType"));
            set_default(spec, "requiresRepublish", json!(false));
            set_default(spec, "seLinuxMount", json!(false));
            set_default(spec, "volumeLifecycleModes", json!(["Persistent"]));
        }
        "storageclasses" => {
            set_default(obj, "reclaimPolicy", json!("Delete"));
            set_default(obj, "volumeBindingMode", json!("Immediate"));
        }
        "persistentvolumes" => {
            if let Some(spec) = obj.get_mut("spec").filter(|s| s.is_object()) {
                set_default(spec, "persistentVolumeReclaimPolicy", json!("Retain"));
                set_default(spec, "volumeMode", json!("Filesystem"));
            }
            if obj.get("status").is_some_and(Value::is_object) {
                set_default(&mut obj["status"], "phase", json!("Pending"));
            }
        }
        "persistentvolumeclaims" => {
            if let Some(spec) = obj.get_mut("spec").filter(|s| s.is_object()) {
                set_default(spec, "volumeMode", json!("Filesystem"));
            }
            if obj.get("status").is_some_and(Value::is_object) {
                set_default(&mut obj["status"], "phase", json!("Pending"));
            }
        }
        _ => {}
    }
}

/// The validation of a create (and of the new object of an update).
pub(super) fn validate(storage: &str, obj: &Value) -> Vec<Cause> {
    match storage {
        "csinodes" => validate_csinode(obj),
        "csidrivers" => validate_csidriver(obj),
        "volumeattachments" => validate_volume_attachment(obj),
        "storageclasses" => {
            if str_at(obj, "/provisioner").is_empty() {
                vec![required("provisioner", "")]
            } else {
                Vec::new()
            }
        }
        "persistentvolumes" => validate_pv(obj),
        "persistentvolumeclaims" => validate_pvc(obj),
        _ => Vec::new(),
    }
}

fn validate_csinode(obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let drivers = obj
        .pointer("/spec/drivers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut names = std::collections::HashSet::new();
    for (i, driver) in drivers.iter().enumerate() {
        let path = format!("spec.drivers[{i}]");
        let name = str_at(driver, "/name");
        causes.extend(csi_driver_name_errors(name, &format!("{path}.name")));
        let node_id = str_at(driver, "/nodeID");
        if node_id.is_empty() {
            causes.push(required(&format!("{path}.nodeID"), ""));
        } else if node_id.len() > NODE_ID_MAX {
            causes.push(invalid(
                &format!("{path}.nodeID"),
                node_id,
                &format!("must be {NODE_ID_MAX} characters or less"),
            ));
        }
        if let Some(count) = driver.pointer("/allocatable/count").and_then(Value::as_i64)
            && count < 0
        {
            causes.push((
                format!("{path}.allocatable.count"),
                "FieldValueInvalid",
                format!("Invalid value: {count}: must be greater than or equal to 0"),
            ));
        }
        if !names.insert(name.to_string()) {
            causes.push(duplicate(&format!("{path}.name"), name));
        }
        let mut keys = std::collections::HashSet::new();
        for key in driver
            .get("topologyKeys")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let key = key.as_str().unwrap_or("");
            // The real server reports these on the driver, not on topologyKeys.
            if key.is_empty() {
                causes.push(required(&path, ""));
            }
            if !keys.insert(key) {
                causes.push(duplicate(&path, key));
            }
            for msg in qualified_name_errors(key) {
                causes.push(invalid(&path, key, &msg));
            }
        }
    }
    causes
}

fn validate_csidriver(obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let policy = str_at(obj, "/spec/fsGroupPolicy");
    let policies = ["File", "None", "ReadWriteOnceWithFSType"];
    if !policy.is_empty() && !policies.contains(&policy) {
        causes.push(not_supported("spec.fsGroupPolicy", policy, &policies));
    }
    let mut audiences = std::collections::HashSet::new();
    for (i, request) in obj
        .pointer("/spec/tokenRequests")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let audience = str_at(request, "/audience");
        if !audiences.insert(audience.to_string()) {
            causes.push(duplicate(
                &format!("spec.tokenRequests[{i}].audience"),
                audience,
            ));
        }
    }
    for mode in obj
        .pointer("/spec/volumeLifecycleModes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let mode = mode.as_str().unwrap_or("");
        if !matches!(mode, "Persistent" | "Ephemeral") {
            causes.push(not_supported(
                "spec.volumeLifecycleModes",
                mode,
                &["Persistent", "Ephemeral"],
            ));
        }
    }
    causes
}

fn validate_volume_attachment(obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let attacher = str_at(obj, "/spec/attacher");
    if attacher.is_empty() {
        causes.push(required("spec.attacher", ""));
    }
    let pv = obj.pointer("/spec/source/persistentVolumeName").is_some();
    let inline = obj.pointer("/spec/source/inlineVolumeSpec").is_some();
    if pv == inline {
        causes.push(required(
            "spec.source",
            "must specify exactly one of inlineVolumeSpec and persistentVolumeName",
        ));
    } else if pv && str_at(obj, "/spec/source/persistentVolumeName").is_empty() {
        causes.push(required("spec.source.persistentVolumeName", ""));
    }
    let node = str_at(obj, "/spec/nodeName");
    for msg in dns1123_subdomain_errors(node) {
        causes.push(invalid("spec.nodeName", node, &msg));
    }
    // ValidateVolumeAttachmentV1 checks the attacher again as a CSI driver name.
    causes.extend(csi_driver_name_errors(attacher, "spec.attacher"));
    causes
}

fn validate_pv(obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let spec = obj.get("spec").cloned().unwrap_or(Value::Null);
    let modes = spec.get("accessModes").and_then(Value::as_array);
    if modes.is_none_or(|m| m.is_empty()) {
        causes.push(required("spec.accessModes", ""));
    }
    let capacity = spec.get("capacity").and_then(Value::as_object);
    if capacity.is_none_or(|c| c.is_empty()) {
        causes.push(required("spec.capacity", ""));
        causes.push((
            "spec.capacity".to_string(),
            "FieldValueNotSupported",
            "Unsupported value: core.ResourceList(nil): supported values: \"storage\"".to_string(),
        ));
    }
    let sources: Vec<&str> = PV_SOURCES
        .iter()
        .copied()
        .filter(|s| spec.get(*s).is_some_and(|v| !v.is_null()))
        .collect();
    if sources.is_empty() {
        causes.push(required("spec", "must specify a volume type"));
    }
    if spec.get("csi").is_some_and(|v| !v.is_null()) {
        let driver = str_at(&spec, "/csi/driver");
        if driver.is_empty() {
            causes.push(required("spec.csi.driver", ""));
        }
        if driver.len() > 63 {
            causes.push((
                "spec.csi.driver".to_string(),
                "FieldValueTooLong",
                "Too long: must have at most 63 bytes".to_string(),
            ));
        }
        for msg in dns1123_subdomain_errors(&driver.to_lowercase()) {
            causes.push(invalid("spec.csi.driver", driver, &msg));
        }
        if str_at(&spec, "/csi/volumeHandle").is_empty() {
            causes.push(required("spec.csi.volumeHandle", ""));
        }
    }
    causes
}

fn validate_pvc(obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let modes = obj.pointer("/spec/accessModes").and_then(Value::as_array);
    if modes.is_none_or(|m| m.is_empty()) {
        causes.push(required(
            "spec.accessModes",
            "at least 1 access mode is required",
        ));
    }
    if obj.pointer("/spec/resources/requests/storage").is_none() {
        causes.push(required("spec.resources[storage]", ""));
    }
    causes
}

/// Go's `%#v` of an internal `storage.CSINodeDriver`.
fn go_csinode_driver(d: &Value) -> String {
    let keys = match d.get("topologyKeys").and_then(Value::as_array) {
        Some(k) if !k.is_empty() => format!(
            "[]string{{{}}}",
            k.iter()
                .map(|k| quote(k.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        _ => "[]string(nil)".to_string(),
    };
    let allocatable = if d.get("allocatable").is_some_and(|a| !a.is_null()) {
        FAKE_POINTER
    } else {
        "nil"
    };
    format!(
        "storage.CSINodeDriver{{Name:{}, NodeID:{}, TopologyKeys:{keys}, Allocatable:(*storage.VolumeNodeResources)({allocatable})}}",
        quote(str_at(d, "/name")),
        quote(str_at(d, "/nodeID")),
    )
}

/// Go's rendering of a CSIDriver field's value in a field error.
fn go_value(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "null".to_string(),
        Some(Value::String(s)) => quote(s),
        Some(Value::Array(items)) => format!(
            "[]storage.VolumeLifecycleMode{{{}}}",
            items
                .iter()
                .map(|i| quote(i.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Some(other) => other.to_string(),
    }
}

/// Equal as apimachinery's semantic equality sees it: a missing list and an empty one alike.
fn same_entry(a: &Value, b: &Value) -> bool {
    let norm = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.as_object_mut() {
            m.retain(|_, x| !x.is_null() && x.as_array().is_none_or(|a| !a.is_empty()));
        }
        v
    };
    norm(a) == norm(b)
}

/// The update rules beyond the create's: CSINode driver entries and a VolumeAttachment's
/// spec are immutable, and so are a CSIDriver's attachRequired, fsGroupPolicy,
/// podInfoOnMount and volumeLifecycleModes; a StorageClass keeps its provisioner,
/// parameters and reclaim policy.
pub(super) fn validate_update(
    storage: &str,
    kind: &str,
    group: &str,
    name: &str,
    old: &Value,
    new: &Value,
) -> Result<(), ApiError> {
    let mut causes = Vec::new();
    match storage {
        "csinodes" => {
            causes.extend(validate_csinode(new));
            let drivers = |v: &Value| {
                v.pointer("/spec/drivers")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default()
            };
            for old_driver in drivers(old) {
                for new_driver in drivers(new) {
                    if old_driver.get("name") == new_driver.get("name")
                        && !same_entry(&old_driver, &new_driver)
                    {
                        causes.push((
                            "CSINodeDriver".to_string(),
                            "FieldValueInvalid",
                            format!(
                                "Invalid value: {}: field is immutable",
                                go_csinode_driver(&new_driver)
                            ),
                        ));
                    }
                }
            }
        }
        "csidrivers" => {
            causes.extend(validate_csidriver(new));
            // The path of attachRequired is misspelt as the real server spells it.
            for (field, path) in [
                ("attachRequired", "spec.attachedRequired"),
                ("fsGroupPolicy", "spec.fsGroupPolicy"),
                ("podInfoOnMount", "spec.podInfoOnMount"),
                ("volumeLifecycleModes", "spec.volumeLifecycleModes"),
            ] {
                let now = new.pointer(&format!("/spec/{field}"));
                if old.pointer(&format!("/spec/{field}")) != now {
                    causes.push((
                        path.to_string(),
                        "FieldValueInvalid",
                        format!("Invalid value: {}: field is immutable", go_value(now)),
                    ));
                }
            }
        }
        "volumeattachments" => {
            if old.get("spec") != new.get("spec") {
                causes.push((
                    "spec".to_string(),
                    "FieldValueInvalid",
                    format!(
                        "Invalid value: storage.VolumeAttachmentSpec{{Attacher:{}, Source:storage.VolumeAttachmentSource{{PersistentVolumeName:(*string)({FAKE_POINTER}), InlineVolumeSpec:(*core.PersistentVolumeSpec)(nil)}}, NodeName:{}}}: field is immutable",
                        quote(str_at(new, "/spec/attacher")),
                        quote(str_at(new, "/spec/nodeName")),
                    ),
                ));
            }
        }
        "storageclasses" => {
            if old.get("parameters") != new.get("parameters") {
                causes.push((
                    "parameters".to_string(),
                    "FieldValueForbidden",
                    "Forbidden: updates to parameters are forbidden.".to_string(),
                ));
            }
            if old.get("provisioner") != new.get("provisioner") {
                causes.push((
                    "provisioner".to_string(),
                    "FieldValueForbidden",
                    "Forbidden: updates to provisioner are forbidden.".to_string(),
                ));
            }
            if old.get("reclaimPolicy") != new.get("reclaimPolicy") {
                causes.push((
                    "reclaimPolicy".to_string(),
                    "FieldValueForbidden",
                    "Forbidden: updates to reclaimPolicy are forbidden.".to_string(),
                ));
            }
        }
        _ => return Ok(()),
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(kind, group, name, &causes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_keys() {
        assert!(is_dns1123_subdomain("hostpath.csi.k8s.io"));
        assert!(!is_dns1123_subdomain("a.-b"));
        assert!(!is_dns1123_subdomain("Bad_Name"));
        assert!(qualified_name_errors("topology.hostpath.csi/node").is_empty());
        assert_eq!(qualified_name_errors("").len(), 2);
        assert_eq!(
            qualified_name_errors("/x"),
            ["prefix part must be non-empty"]
        );
        assert_eq!(qualified_name_errors("a/b/c").len(), 1);
    }

    #[test]
    fn csinode_entries_are_checked_in_the_servers_order() {
        let causes = validate_csinode(&json!({"spec": {"drivers": [
            {"name": "d.csi", "nodeID": "n"},
            {"name": "d.csi", "nodeID": "", "topologyKeys": ["a", "a"], "allocatable": {"count": -1}},
        ]}}));
        let fields: Vec<&str> = causes.iter().map(|c| c.0.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.drivers[1].nodeID",
                "spec.drivers[1].allocatable.count",
                "spec.drivers[1].name",
                "spec.drivers[1]"
            ]
        );
    }

    #[test]
    fn csidriver_defaults() {
        let mut d = json!({"metadata": {"name": "x"}});
        defaults_on_create("csidrivers", &mut d);
        assert_eq!(d["spec"]["attachRequired"], true);
        assert_eq!(d["spec"]["volumeLifecycleModes"], json!(["Persistent"]));
        assert_eq!(d["spec"]["fsGroupPolicy"], "ReadWriteOnceWithFSType");
    }
}
