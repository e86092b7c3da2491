//! The labels and annotations the kubelet puts on sandboxes and containers, so that it can
//! recognise and adopt them after a restart. Keys are the reference kubelet's.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Container;
use sha2::{Digest, Sha256};

/// Pod name label.
pub const POD_NAME: &str = "io.kubernetes.pod.name";
/// Pod namespace label.
pub const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
/// Pod UID label.
pub const POD_UID: &str = "io.kubernetes.pod.uid";
/// Container name label.
pub const CONTAINER_NAME: &str = "io.kubernetes.container.name";
/// Container spec hash annotation.
pub const CONTAINER_HASH: &str = "io.kubernetes.container.hash";
/// Restart count annotation.
pub const CONTAINER_RESTART_COUNT: &str = "io.kubernetes.container.restartCount";
/// Termination message path annotation.
pub const CONTAINER_TERMINATION_MESSAGE_PATH: &str =
    "io.kubernetes.container.terminationMessagePath";
/// Termination message policy annotation.
pub const CONTAINER_TERMINATION_MESSAGE_POLICY: &str =
    "io.kubernetes.container.terminationMessagePolicy";
/// Pod termination grace period annotation (seconds), so a restarted kubelet can stop an
/// orphan with the grace its pod asked for.
pub const POD_TERMINATION_GRACE_PERIOD: &str = "io.kubernetes.pod.terminationGracePeriod";
/// The `type` label that marks what the kubelet created (`podsandbox` or `container`).
pub const KUBELET_TYPE: &str = "io.kubernetes.kubelet.type";
/// Annotation naming the pod source (`file`, `http`, `api`).
pub const CONFIG_SOURCE: &str = "kubernetes.io/config.source";
/// Annotation carrying the hash that made a static pod's UID.
pub const CONFIG_HASH: &str = "kubernetes.io/config.hash";
/// Annotation marking a mirror pod.
pub const CONFIG_MIRROR: &str = "kubernetes.io/config.mirror";
/// Annotation with the time the kubelet first saw the pod.
pub const CONFIG_SEEN: &str = "kubernetes.io/config.seen";

/// Identity labels shared by a pod's sandbox and containers.
pub fn pod_labels(namespace: &str, name: &str, uid: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (POD_NAME.to_string(), name.to_string()),
        (POD_NAMESPACE.to_string(), namespace.to_string()),
        (POD_UID.to_string(), uid.to_string()),
    ])
}

/// Hash of a container's spec: when it changes, the container is restarted. Computed over
/// the canonical JSON of the spec, so field order in the manifest does not matter.
pub fn container_hash(container: &Container) -> String {
    // serde_json of a k8s-openapi struct is deterministic (fields in declaration order,
    // maps are BTreeMaps), which is what makes this hash stable across restarts.
    let json = serde_json::to_vec(container).unwrap_or_default();
    let digest = Sha256::digest(&json);
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// The pod UID a sandbox or container label set names, if any.
pub fn pod_uid_of(labels: &BTreeMap<String, String>) -> Option<&str> {
    labels.get(POD_UID).map(String::as_str)
}

/// The restart count recorded on a container, 0 when absent or malformed.
pub fn restart_count_of(annotations: &BTreeMap<String, String>) -> i32 {
    annotations
        .get(CONTAINER_RESTART_COUNT)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
