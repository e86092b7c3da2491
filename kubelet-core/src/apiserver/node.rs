//! Node registration and node status.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, NodeStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tracing::info;

use super::error::{report_error, status_code};
use super::reporter::Inner;
use crate::error::ReportError;
use crate::strategic_merge::StrategicMerge;

/// The labels the reference kubelet keeps in line with its own view on an existing Node
/// (`updateDefaultLabels`); other labels there belong to others.
const DEFAULT_LABELS: &[&str] = &[
    "kubernetes.io/hostname",
    "topology.kubernetes.io/zone",
    "topology.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone",
    "failure-domain.beta.kubernetes.io/region",
    "node.kubernetes.io/instance-type",
    "beta.kubernetes.io/instance-type",
    "kubernetes.io/os",
    "kubernetes.io/arch",
    "node.kubernetes.io/windows-build",
    "beta.kubernetes.io/os",
    "beta.kubernetes.io/arch",
];

/// Annotation by which the kubelet says the attach/detach controller manages its volumes;
/// reconciled on an existing Node as the reference does.
const CONTROLLER_MANAGED_ATTACH_DETACH: &str =
    "volumes.kubernetes.io/controller-managed-attach-detach";

impl Inner {
    pub async fn register_node(&self, node: &Node) -> Result<(), ReportError> {
        let api: Api<Node> = Api::all(self.kube());
        let name = node
            .metadata
            .name
            .clone()
            .unwrap_or_else(|| self.node_name().to_string());
        let mut wanted = node.clone();
        wanted.metadata.name = Some(name.clone());
        wanted.metadata.uid = None;
        wanted.metadata.resource_version = None;
        match self
            .timed(api.create(&PostParams::default(), &wanted))
            .await
        {
            Ok(created) => {
                info!(node = %name, "node registered");
                self.remember_node_uid(created.metadata.uid);
                Ok(())
            }
            Err(err) if status_code(&err) == Some(409) => self.adopt_node(&api, &wanted).await,
            Err(err) => Err(report_error(&format!("create nodes/{name}"), &err)),
        }
    }

    /// An existing Node of our name: keep it, bringing our default labels up to date.
    async fn adopt_node(&self, api: &Api<Node>, wanted: &Node) -> Result<(), ReportError> {
        let name = wanted.metadata.name.clone().unwrap_or_default();
        let existing = self
            .timed(api.get(&name))
            .await
            .map_err(|e| report_error(&format!("get nodes/{name}"), &e))?;
        let patch = reconcile_existing(wanted, &existing);
        if let Some(patch) = patch {
            self.timed(api.patch(&name, &PatchParams::default(), &Patch::Strategic(&patch)))
                .await
                .map_err(|e| report_error(&format!("patch nodes/{name}"), &e))?;
            info!(node = %name, "existing node adopted; default labels updated");
        } else {
            info!(node = %name, "existing node adopted");
        }
        self.remember_node_uid(existing.metadata.uid);
        Ok(())
    }

    fn remember_node_uid(&self, uid: Option<String>) {
        *self
            .node_uid
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = uid;
    }

    /// The UID of our Node (asked for when not known yet).
    pub async fn node_uid(&self) -> Result<String, ReportError> {
        let known = self
            .node_uid
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if let Some(uid) = known {
            return Ok(uid);
        }
        let api: Api<Node> = Api::all(self.kube());
        let name = self.node_name().to_string();
        let node = self
            .timed(api.get_metadata(&name))
            .await
            .map_err(|e| report_error(&format!("get nodes/{name}"), &e))?;
        let uid = node.metadata.uid.unwrap_or_default();
        self.remember_node_uid(Some(uid.clone()));
        Ok(uid)
    }

    /// The owner reference to our Node, for the Lease and mirror pods (the garbage
    /// collector removes them with the Node).
    pub async fn node_owner(&self) -> Result<OwnerReference, ReportError> {
        Ok(OwnerReference {
            api_version: "v1".into(),
            kind: "Node".into(),
            name: self.node_name().to_string(),
            uid: self.node_uid().await?,
            controller: Some(true),
            block_owner_deletion: None,
        })
    }

    /// PATCH `nodes/<name>/status` as the reference does (`PatchNodeStatus`): the two-way
    /// patch from the status the server last showed (asked for when not known) to ours
    /// merged into it; nothing is sent when the server already has it.
    pub async fn update_node_status(
        &self,
        node_name: &str,
        status: &NodeStatus,
    ) -> Result<(), ReportError> {
        let api: Api<Node> = Api::all(self.kube());
        let what = format!("patch nodes/{node_name}/status");
        let mut seen = self.node_status.lock().await;
        let base = match seen.take() {
            Some(base) => base,
            None => self
                .timed(api.get(node_name))
                .await
                .map_err(|e| self.node_error(&format!("get nodes/{node_name}"), &e))?
                .status
                .unwrap_or_default(),
        };
        let Some(patch) = node_status_patch(&base, status)
            .map_err(|e| ReportError::Rejected(format!("{what}: {e}")))?
        else {
            *seen = Some(base);
            return Ok(());
        };
        match self
            .timed(api.patch_status(
                node_name,
                &PatchParams::default(),
                &Patch::Strategic(&patch),
            ))
            .await
        {
            Ok(node) => {
                *seen = node.status;
                Ok(())
            }
            Err(err) => Err(self.node_error(&what, &err)),
        }
    }

    fn node_error(&self, what: &str, err: &kube::Error) -> ReportError {
        if status_code(err) == Some(404) {
            // The Node was deleted: a new one (if registered again) has a new UID.
            self.remember_node_uid(None);
        }
        report_error(what, err)
    }
}

/// The patch that brings an existing Node's default labels (and the attach/detach
/// annotation) in line with ours, `None` when nothing differs. As the reference, labels we
/// do not set are left alone, and a label we set empty is removed.
fn reconcile_existing(wanted: &Node, existing: &Node) -> Option<Value> {
    let empty = BTreeMap::new();
    let ours = wanted.metadata.labels.as_ref().unwrap_or(&empty);
    let theirs = existing.metadata.labels.as_ref().unwrap_or(&empty);
    let mut labels = serde_json::Map::new();
    for key in DEFAULT_LABELS {
        let Some(value) = ours.get(*key) else {
            continue;
        };
        if value.is_empty() {
            if theirs.contains_key(*key) {
                labels.insert((*key).to_string(), Value::Null);
            }
        } else if theirs.get(*key) != Some(value) {
            labels.insert((*key).to_string(), Value::String(value.clone()));
        }
    }
    let mut annotations = serde_json::Map::new();
    let ours_a = wanted.metadata.annotations.as_ref().unwrap_or(&empty);
    let theirs_a = existing.metadata.annotations.as_ref().unwrap_or(&empty);
    match (
        ours_a.get(CONTROLLER_MANAGED_ATTACH_DETACH),
        theirs_a.get(CONTROLLER_MANAGED_ATTACH_DETACH),
    ) {
        (Some(a), b) if b != Some(a) => {
            annotations.insert(
                CONTROLLER_MANAGED_ATTACH_DETACH.into(),
                Value::String(a.clone()),
            );
        }
        (None, Some(_)) => {
            annotations.insert(CONTROLLER_MANAGED_ATTACH_DETACH.into(), Value::Null);
        }
        _ => {}
    }
    if labels.is_empty() && annotations.is_empty() {
        return None;
    }
    let mut metadata = serde_json::Map::new();
    if !labels.is_empty() {
        metadata.insert("labels".into(), Value::Object(labels));
    }
    if !annotations.is_empty() {
        metadata.insert("annotations".into(), Value::Object(annotations));
    }
    Some(json!({ "metadata": metadata }))
}

/// Node status fields the kubelet sets whole on every update (its status setters), cleared
/// when it has none; the other fields (volumesAttached of the attach/detach controller,
/// config, ...) are ours only when we set them.
const KUBELET_NODE_FIELDS: [&str; 7] = [
    "capacity",
    "allocatable",
    "addresses",
    "daemonEndpoints",
    "nodeInfo",
    "images",
    "volumesInUse",
];

/// Our status laid over the server's, as the reference applies its setters to the Node it
/// read: conditions others write (NetworkUnavailable, ...) stay where they are, ours
/// replace theirs of the same type or are added.
fn merged_node_status(server: &Value, ours: &Value) -> Value {
    let empty = serde_json::Map::new();
    let server = server.as_object().unwrap_or(&empty);
    let ours = ours.as_object().unwrap_or(&empty);
    let mut merged = server.clone();
    for field in KUBELET_NODE_FIELDS {
        merged.remove(field);
    }
    for (k, v) in ours {
        if k != "conditions" {
            merged.insert(k.clone(), v.clone());
        }
    }
    let mut conditions = server
        .get("conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for c in ours
        .get("conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match conditions
            .iter_mut()
            .find(|s| s.get("type") == c.get("type"))
        {
            Some(slot) => *slot = c.clone(),
            None => conditions.push(c.clone()),
        }
    }
    if !conditions.is_empty() {
        merged.insert("conditions".to_string(), Value::Array(conditions));
    }
    Value::Object(merged)
}

/// The node status patch: the two-way strategic merge patch from the server's status to
/// ours. `addresses` is declared a list merged by `type`, which would keep stale addresses
/// of a type we no longer report and mix two of one type; as the reference
/// (`fixupPatchForNodeStatusAddresses`), a changed list is sent whole with a replace
/// directive. `None` when there is nothing to change.
pub(super) fn node_status_patch(
    server: &NodeStatus,
    ours: &NodeStatus,
) -> Result<Option<Value>, serde_json::Error> {
    let current = serde_json::to_value(server)?;
    let merged = merged_node_status(&current, &serde_json::to_value(ours)?);
    let mut patch = StrategicMerge::for_kind("v1", "Node")
        .diff(&json!({ "status": current }), &json!({ "status": merged }));
    let replace_addresses = current.get("addresses").is_some_and(|a| a != &json!([]))
        && current.get("addresses") != merged.get("addresses");
    if replace_addresses
        && let Some(status) = patch.get_mut("status").and_then(Value::as_object_mut)
    {
        let mut addresses = merged.get("addresses").cloned().unwrap_or(json!([]));
        if let Value::Array(items) = &mut addresses {
            items.push(json!({ "$patch": "replace" }));
        }
        status.insert("addresses".to_string(), addresses);
        status.remove("$setElementOrder/addresses");
    }
    Ok(patch.get("status").is_some().then_some(patch))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NodeAddress;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn node(labels: &[(&str, &str)]) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some("n1".into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                        .collect(),
                ),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn existing_node_gets_our_default_labels_only() {
        let wanted = node(&[
            ("kubernetes.io/hostname", "n1"),
            ("kubernetes.io/arch", "amd64"),
            ("custom", "ours"),
        ]);
        let existing = node(&[
            ("kubernetes.io/hostname", "old"),
            ("kubernetes.io/arch", "amd64"),
            ("custom", "theirs"),
            ("topology.kubernetes.io/zone", "z"),
        ]);
        let patch = reconcile_existing(&wanted, &existing).unwrap();
        assert_eq!(
            patch,
            json!({"metadata": {"labels": {"kubernetes.io/hostname": "n1"}}})
        );
        assert!(reconcile_existing(&existing, &existing).is_none());
    }

    fn addresses(list: &[(&str, &str)]) -> Option<Vec<NodeAddress>> {
        Some(
            list.iter()
                .map(|(t, a)| NodeAddress {
                    type_: (*t).into(),
                    address: (*a).into(),
                })
                .collect(),
        )
    }

    #[test]
    fn first_addresses_are_sent_as_a_list_and_changed_ones_replaced_whole() {
        let ours = NodeStatus {
            addresses: addresses(&[("InternalIP", "10.0.0.1"), ("Hostname", "n1")]),
            ..Default::default()
        };
        assert_eq!(
            node_status_patch(&NodeStatus::default(), &ours).unwrap(),
            Some(json!({"status": {"addresses": [
                {"type": "InternalIP", "address": "10.0.0.1"},
                {"type": "Hostname", "address": "n1"}
            ]}}))
        );
        let moved = NodeStatus {
            addresses: addresses(&[("InternalIP", "10.0.0.2"), ("Hostname", "n1")]),
            ..Default::default()
        };
        assert_eq!(
            node_status_patch(&ours, &moved).unwrap(),
            Some(json!({"status": {"addresses": [
                {"type": "InternalIP", "address": "10.0.0.2"},
                {"type": "Hostname", "address": "n1"},
                {"$patch": "replace"}
            ]}}))
        );
        assert_eq!(node_status_patch(&moved, &moved).unwrap(), None);
    }

    #[test]
    fn others_conditions_and_attached_volumes_stay() {
        let server: NodeStatus = serde_json::from_value(json!({
            "conditions": [{"type": "NetworkUnavailable", "status": "False"}, {"type": "Ready", "status": "False"}],
            "volumesAttached": [{"name": "kubernetes.io/csi/x", "devicePath": ""}],
            "volumesInUse": ["kubernetes.io/csi/y"],
            "config": {"active": {"configMap": {"name": "c", "namespace": "kube-system", "kubeletConfigKey": "k"}}},
        }))
        .unwrap();
        let ours: NodeStatus = serde_json::from_value(json!({
            "conditions": [{"type": "Ready", "status": "True"}],
        }))
        .unwrap();
        let patch = node_status_patch(&server, &ours).unwrap().unwrap();
        assert_eq!(
            patch,
            json!({"status": {
                "$setElementOrder/conditions": [{"type": "NetworkUnavailable"}, {"type": "Ready"}],
                "conditions": [{"type": "Ready", "status": "True"}],
                "volumesInUse": null,
            }})
        );
    }
}
