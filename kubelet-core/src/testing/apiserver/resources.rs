//! The resources the fake serves, and the discovery documents that describe them.

use serde_json::{Value, json};

/// One served resource (group/version/plural).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceInfo {
    /// API group, `""` for core.
    pub group: &'static str,
    /// API version.
    pub version: &'static str,
    /// Plural resource name in URLs.
    pub plural: &'static str,
    /// Singular name.
    pub singular: &'static str,
    /// Kind.
    pub kind: &'static str,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
    /// Whether a `/status` subresource exists.
    pub has_status: bool,
    /// Storage key: resources stored together (core and events.k8s.io events) share one.
    pub storage: &'static str,
    /// Short names, for discovery.
    pub short_names: &'static [&'static str],
}

impl ResourceInfo {
    /// `apiVersion` of objects of this resource.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

// One row of the table below; positional to keep the table readable.
#[allow(clippy::too_many_arguments)]
const fn r(
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    singular: &'static str,
    kind: &'static str,
    namespaced: bool,
    has_status: bool,
    storage: &'static str,
    short_names: &'static [&'static str],
) -> ResourceInfo {
    ResourceInfo {
        group,
        version,
        plural,
        singular,
        kind,
        namespaced,
        has_status,
        storage,
        short_names,
    }
}

/// Every resource served.
pub const RESOURCES: &[ResourceInfo] = &[
    r("", "v1", "pods", "pod", "Pod", true, true, "pods", &["po"]),
    r(
        "",
        "v1",
        "nodes",
        "node",
        "Node",
        false,
        true,
        "nodes",
        &["no"],
    ),
    r(
        "",
        "v1",
        "namespaces",
        "namespace",
        "Namespace",
        false,
        true,
        "namespaces",
        &["ns"],
    ),
    r(
        "",
        "v1",
        "configmaps",
        "configmap",
        "ConfigMap",
        true,
        false,
        "configmaps",
        &["cm"],
    ),
    r(
        "",
        "v1",
        "secrets",
        "secret",
        "Secret",
        true,
        false,
        "secrets",
        &[],
    ),
    r(
        "",
        "v1",
        "services",
        "service",
        "Service",
        true,
        false,
        "services",
        &["svc"],
    ),
    r(
        "",
        "v1",
        "serviceaccounts",
        "serviceaccount",
        "ServiceAccount",
        true,
        false,
        "serviceaccounts",
        &["sa"],
    ),
    r(
        "",
        "v1",
        "events",
        "event",
        "Event",
        true,
        false,
        "events",
        &["ev"],
    ),
    r(
        "events.k8s.io",
        "v1",
        "events",
        "event",
        "Event",
        true,
        false,
        "events",
        &["ev"],
    ),
    r(
        "coordination.k8s.io",
        "v1",
        "leases",
        "lease",
        "Lease",
        true,
        false,
        "leases",
        &[],
    ),
    r(
        "",
        "v1",
        "persistentvolumes",
        "persistentvolume",
        "PersistentVolume",
        false,
        true,
        "persistentvolumes",
        &["pv"],
    ),
    r(
        "",
        "v1",
        "persistentvolumeclaims",
        "persistentvolumeclaim",
        "PersistentVolumeClaim",
        true,
        true,
        "persistentvolumeclaims",
        &["pvc"],
    ),
    r(
        "storage.k8s.io",
        "v1",
        "csidrivers",
        "csidriver",
        "CSIDriver",
        false,
        false,
        "csidrivers",
        &[],
    ),
    r(
        "storage.k8s.io",
        "v1",
        "csinodes",
        "csinode",
        "CSINode",
        false,
        false,
        "csinodes",
        &[],
    ),
    r(
        "storage.k8s.io",
        "v1",
        "storageclasses",
        "storageclass",
        "StorageClass",
        false,
        false,
        "storageclasses",
        &["sc"],
    ),
    r(
        "storage.k8s.io",
        "v1",
        "volumeattachments",
        "volumeattachment",
        "VolumeAttachment",
        false,
        true,
        "volumeattachments",
        &[],
    ),
];

/// The resource for a group/version/plural, if served.
pub fn lookup(group: &str, version: &str, plural: &str) -> Option<&'static ResourceInfo> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The resource served under a storage key in the core/legacy form (the form objects are kept in).
pub fn storage_form(storage: &str) -> Option<&'static ResourceInfo> {
    RESOURCES.iter().find(|r| r.storage == storage)
}

/// `/version`.
pub fn version_info() -> Value {
    json!({
        "major": "1",
        "minor": "34",
        "gitVersion": "v1.34.0",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-08-27T00:00:00Z",
        "goVersion": "go1.24.6",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

/// `/api`.
pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{ "clientCIDR": "0.0.0.0/0", "serverAddress": server_address }],
    })
}

fn groups() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for r in RESOURCES {
        if !r.group.is_empty() && !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out
}

fn group_doc(group: &str, version: &str) -> Value {
    let gv = format!("{group}/{version}");
    json!({
        "name": group,
        "versions": [{ "groupVersion": gv, "version": version }],
        "preferredVersion": { "groupVersion": gv, "version": version },
    })
}

/// `/apis`.
pub fn api_group_list() -> Value {
    json!({
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": groups().into_iter().map(|(g, v)| group_doc(g, v)).collect::<Vec<_>>(),
    })
}

/// `/apis/<group>`.
pub fn api_group(group: &str) -> Option<Value> {
    let (g, v) = groups().into_iter().find(|(g, _)| *g == group)?;
    let mut doc = group_doc(g, v);
    doc["kind"] = json!("APIGroup");
    doc["apiVersion"] = json!("v1");
    Some(doc)
}

/// `/api/v1` or `/apis/<group>/<version>`.
pub fn api_resource_list(group: &str, version: &str) -> Option<Value> {
    let served: Vec<&ResourceInfo> = RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    if served.is_empty() {
        return None;
    }
    let verbs = json!([
        "create",
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "update",
        "watch"
    ]);
    let mut resources = Vec::new();
    for r in served {
        let mut doc = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": verbs,
        });
        if !r.short_names.is_empty() {
            doc["shortNames"] = json!(r.short_names);
        }
        resources.push(doc);
        if r.has_status {
            resources.push(json!({
                "name": format!("{}/status", r.plural),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": r.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
        if r.plural == "serviceaccounts" {
            resources.push(json!({
                "name": "serviceaccounts/token",
                "singularName": "",
                "namespaced": true,
                "group": "authentication.k8s.io",
                "version": "v1",
                "kind": "TokenRequest",
                "verbs": ["create"],
            }));
        }
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": gv,
        "resources": resources,
    }))
}
