//! Pod status, mirror pods and the final deletion of pods.

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use serde_json::{Value, json};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::error::{message, report_error, status_code};
use super::reporter::Inner;
use super::source::is_mirror_pod;
use crate::error::ReportError;
use crate::labels;
use crate::reconciler::status::KUBELET_CONDITIONS;
use crate::source::SOURCE_API;
use crate::strategic_merge::StrategicMerge;

/// The condition the kubelet shares with others (the reference's
/// `PodConditionSharedByKubelet`).
const SHARED_CONDITION: &str = "DisruptionTarget";
/// Tries of one status patch when it meets a conflict.
const STATUS_TRIES: usize = 3;
/// How long a removed pod's UID is remembered, so that a late status update does not bring
/// back its mirror pod.
const REMOVED_MEMORY: Duration = Duration::from_secs(600);

/// The mirror pod standing for one static pod.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mirror {
    uid: String,
    hash: String,
}

/// What the reporter knows about pod statuses, by pod UID (the static pod's for mirrors).
#[derive(Debug, Default)]
pub(super) struct PodStatuses {
    /// The status the API server last accepted.
    sent: HashMap<String, PodStatus>,
    /// The status as the API server last showed it, by the UID of the API object (the
    /// mirror's for static pods): the base of the next two-way patch.
    server: HashMap<String, PodStatus>,
    /// The newest status not accepted yet, with its pod.
    pending: HashMap<String, (Pod, PodStatus)>,
    /// Static pods running here, for the mirror pod check.
    statics: HashMap<String, Pod>,
    /// Mirror pods we created or found, by static pod UID.
    mirrors: HashMap<String, Mirror>,
    /// Pods reported removed, and when.
    removed: HashMap<String, Instant>,
}

impl PodStatuses {
    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }

    fn forget(&mut self, uid: &str) {
        self.sent.remove(uid);
        self.server.remove(uid);
        self.pending.remove(uid);
        self.statics.remove(uid);
        let now = Instant::now();
        self.removed
            .retain(|_, at| now.saturating_duration_since(*at) < REMOVED_MEMORY);
        self.removed.insert(uid.to_string(), now);
    }
}

fn is_static(pod: &Pod) -> bool {
    annotation(pod, labels::CONFIG_SOURCE).is_some_and(|s| s != SOURCE_API)
}

fn annotation<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

/// The value a static pod's mirror carries in `kubernetes.io/config.mirror`: the static
/// pod's config hash, or its UID without one (as the reference).
fn mirror_hash(pod: &Pod) -> String {
    annotation(pod, labels::CONFIG_HASH)
        .map(str::to_string)
        .or_else(|| pod.metadata.uid.clone())
        .unwrap_or_default()
}

fn name_of(pod: &Pod) -> (String, String) {
    (
        pod.metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_string()),
        pod.metadata.name.clone().unwrap_or_default(),
    )
}

/// Status fields other components write (the scheduler, the resource claim controller):
/// kept as the server has them.
const OTHERS_FIELDS: [&str; 3] = [
    "nominatedNodeName",
    "resourceClaimStatuses",
    "extendedResourceClaimStatus",
];

/// What the pod status should be on the server: the kubelet's, with the conditions and
/// fields others own taken from the server's (`mergePodStatus`). The scheduler's
/// PodScheduled stays as it is.
fn merged_status(server: &PodStatus, ours: &PodStatus) -> PodStatus {
    let theirs = server.conditions.as_deref().unwrap_or_default();
    let scheduled = theirs.iter().any(|c| c.type_ == "PodScheduled");
    let mut conditions: Vec<_> = theirs
        .iter()
        .filter(|c| c.type_ == "PodScheduled" || !KUBELET_CONDITIONS.contains(&c.type_.as_str()))
        .cloned()
        .collect();
    conditions.extend(
        ours.conditions
            .iter()
            .flatten()
            .filter(|c| KUBELET_CONDITIONS.contains(&c.type_.as_str()))
            .filter(|c| !(scheduled && c.type_ == "PodScheduled"))
            .cloned(),
    );
    // DisruptionTarget is shared: the kubelet's (an eviction's) replaces the server's, sent
    // once the pod is terminal and nothing of it can still run, as the reference sends it.
    let terminal = matches!(ours.phase.as_deref(), Some("Failed" | "Succeeded"));
    let could_run = ours
        .container_statuses
        .iter()
        .chain(ours.init_container_statuses.iter())
        .flatten()
        .any(|c| c.state.as_ref().is_none_or(|s| s.terminated.is_none()));
    if terminal && !could_run {
        for c in ours.conditions.iter().flatten() {
            if c.type_ == SHARED_CONDITION {
                match conditions.iter_mut().find(|o| o.type_ == c.type_) {
                    Some(existing) => *existing = c.clone(),
                    None => conditions.push(c.clone()),
                }
            }
        }
    }
    let mut merged = ours.clone();
    merged.conditions = (!conditions.is_empty()).then_some(conditions);
    merged
}

/// The status patch as the reference kubelet makes it (`PatchPodStatus`): a two-way
/// strategic merge patch from the status last seen on the server to the new one, with the
/// pod's UID as precondition. `None` when the server already has that status.
pub(super) fn pod_status_patch(
    uid: &str,
    server: &PodStatus,
    status: &PodStatus,
) -> Result<Option<Value>, serde_json::Error> {
    let mut wanted = serde_json::to_value(merged_status(server, status))?;
    let current = serde_json::to_value(server)?;
    if let (Some(w), Some(c)) = (wanted.as_object_mut(), current.as_object()) {
        for field in OTHERS_FIELDS {
            if let Some(v) = c.get(field).filter(|_| !w.contains_key(field)) {
                w.insert(field.to_string(), v.clone());
            }
        }
    }
    let patch = StrategicMerge::for_kind("v1", "Pod").diff(
        &json!({ "status": current }),
        &json!({ "metadata": { "uid": uid }, "status": wanted }),
    );
    Ok(patch.get("status").is_some().then_some(patch))
}

/// Delete options of the kubelet's deletions: at once, and only the object of that UID.
fn delete_now(uid: &str) -> DeleteParams {
    DeleteParams::default()
        .grace_period(0)
        .preconditions(Preconditions {
            uid: Some(uid.to_string()),
            resource_version: None,
        })
}

impl Inner {
    pub async fn update_pod_status(
        &self,
        pod: &Pod,
        status: &PodStatus,
    ) -> Result<(), ReportError> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let mut st = self.pods.lock().await;
        if st.removed.contains_key(&uid) {
            return Err(ReportError::NotFound(format!(
                "pod {uid} was removed from the node"
            )));
        }
        if st.sent.get(&uid) == Some(status) {
            st.pending.remove(&uid);
            return Ok(());
        }
        st.pending
            .insert(uid.clone(), (pod.clone(), status.clone()));
        if is_static(pod) {
            st.statics.insert(uid.clone(), pod.clone());
        }
        self.send_pending(&mut st, &uid).await
    }

    /// Sends the pending status of `uid`, recording the outcome.
    async fn send_pending(&self, st: &mut PodStatuses, uid: &str) -> Result<(), ReportError> {
        let Some((pod, status)) = st.pending.get(uid).cloned() else {
            return Ok(());
        };
        let result = if is_static(&pod) {
            self.send_mirror_status(st, &pod, &status).await
        } else {
            let (ns, name) = name_of(&pod);
            let seen = pod.status.clone().unwrap_or_default();
            self.patch_status(st, &ns, &name, uid, seen, &status).await
        };
        match &result {
            Ok(()) => {
                st.pending.remove(uid);
                st.sent.insert(uid.to_string(), status);
            }
            // The pod is gone: there is nothing to report to any more.
            Err(ReportError::NotFound(_)) => {
                st.pending.remove(uid);
            }
            Err(_) => {}
        }
        result
    }

    /// PATCH `pods/<name>/status`: the two-way patch from the status last seen on the
    /// server (`seen` until the server has answered one of ours) with a UID precondition.
    /// A refused patch (a conflict, or 422: a real server refuses a UID precondition that
    /// fails as an immutable-field change) is retried once from the pod as it is now, after
    /// checking that the pod of that name is still ours.
    async fn patch_status(
        &self,
        st: &mut PodStatuses,
        ns: &str,
        name: &str,
        uid: &str,
        seen: PodStatus,
        status: &PodStatus,
    ) -> Result<(), ReportError> {
        let api: Api<Pod> = Api::namespaced(self.kube(), ns);
        let what = format!("patch pods/{ns}/{name}/status");
        let mut base = st.server.get(uid).cloned().unwrap_or(seen);
        let mut refreshed = false;
        for _ in 0..STATUS_TRIES {
            let Some(patch) = pod_status_patch(uid, &base, status)
                .map_err(|e| ReportError::Rejected(format!("{what}: {e}")))?
            else {
                return Ok(());
            };
            let err = match self
                .timed(api.patch_status(name, &PatchParams::default(), &Patch::Strategic(&patch)))
                .await
            {
                Ok(updated) => {
                    st.server
                        .insert(uid.to_string(), updated.status.unwrap_or_default());
                    return Ok(());
                }
                Err(err) => err,
            };
            let code = status_code(&err);
            // The base stays: after an outage the status we last saw accepted is still the
            // best guess of what the server has.
            if !matches!(code, Some(409 | 422)) || (code == Some(422) && refreshed) {
                return Err(report_error(&what, &err));
            }
            match self.timed(api.get_opt(name)).await {
                Ok(Some(current)) if current.metadata.uid.as_deref() == Some(uid) => {
                    debug!(pod = %format!("{ns}/{name}"), error = %message(&err), "status patch refused; retrying from the pod as it is now");
                    base = current.status.unwrap_or_default();
                    refreshed = true;
                }
                Ok(_) => {
                    st.server.remove(uid);
                    return Err(ReportError::NotFound(format!(
                        "{what}: pod {uid} was deleted (the name now belongs to another pod or none)"
                    )));
                }
                Err(e) => return Err(report_error(&format!("get pods/{ns}/{name}"), &e)),
            }
        }
        Err(ReportError::Conflict(what))
    }

    /// Makes sure the static pod has its mirror pod, then gives the mirror the status.
    async fn send_mirror_status(
        &self,
        st: &mut PodStatuses,
        pod: &Pod,
        status: &PodStatus,
    ) -> Result<(), ReportError> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let (ns, name) = name_of(pod);
        for _ in 0..2 {
            let mirror = self.ensure_mirror(st, pod).await?;
            match self
                .patch_status(st, &ns, &name, &mirror.uid, PodStatus::default(), status)
                .await
            {
                // Deleted or replaced under us: make it again.
                Err(ReportError::NotFound(_)) => {
                    st.mirrors.remove(&uid);
                }
                other => return other,
            }
        }
        Err(ReportError::Unavailable(format!(
            "mirror pod {ns}/{name} keeps disappearing"
        )))
    }

    /// The static pod's mirror pod: the one we know, or the one found in the API server if
    /// it is a mirror of this very static pod, or a new one. A mirror of another version of
    /// the static pod is deleted and made again.
    async fn ensure_mirror(&self, st: &mut PodStatuses, pod: &Pod) -> Result<Mirror, ReportError> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let hash = mirror_hash(pod);
        if let Some(m) = st.mirrors.get(&uid).filter(|m| m.hash == hash) {
            return Ok(m.clone());
        }
        let (ns, name) = name_of(pod);
        let api: Api<Pod> = Api::namespaced(self.kube(), &ns);
        let existing = self
            .timed(api.get_opt(&name))
            .await
            .map_err(|e| report_error(&format!("get pods/{ns}/{name}"), &e))?;
        if let Some(existing) = existing {
            if !is_mirror_pod(&existing) {
                return Err(ReportError::Rejected(format!(
                    "mirror pod {ns}/{name}: a pod of that name exists and is not a mirror pod"
                )));
            }
            let existing_uid = existing.metadata.uid.clone().unwrap_or_default();
            if annotation(&existing, labels::CONFIG_MIRROR) == Some(hash.as_str())
                && existing.metadata.deletion_timestamp.is_none()
            {
                st.server
                    .insert(existing_uid.clone(), existing.status.unwrap_or_default());
                let m = Mirror {
                    uid: existing_uid,
                    hash,
                };
                st.mirrors.insert(uid, m.clone());
                return Ok(m);
            }
            info!(pod = %format!("{ns}/{name}"), "mirror pod differs from its static pod; replacing it");
            match self
                .timed(api.delete(&name, &delete_now(&existing_uid)))
                .await
            {
                Ok(_) => {}
                Err(e) if matches!(status_code(&e), Some(404 | 409)) => {}
                Err(e) => return Err(report_error(&format!("delete pods/{ns}/{name}"), &e)),
            }
        }
        let mirror = self.mirror_pod(pod, &hash).await?;
        match self
            .timed(api.create(&PostParams::default(), &mirror))
            .await
        {
            Ok(created) => {
                info!(pod = %format!("{ns}/{name}"), "mirror pod created");
                let created_uid = created.metadata.uid.unwrap_or_default();
                st.server
                    .insert(created_uid.clone(), created.status.unwrap_or_default());
                let m = Mirror {
                    uid: created_uid,
                    hash,
                };
                st.mirrors.insert(uid, m.clone());
                Ok(m)
            }
            Err(e) => Err(report_error(&format!("create pods/{ns}/{name}"), &e)),
        }
    }

    /// The mirror pod of a static pod: its spec, labels and annotations plus
    /// `kubernetes.io/config.mirror`, bound to this node and owned by the Node.
    async fn mirror_pod(&self, pod: &Pod, hash: &str) -> Result<Pod, ReportError> {
        // No Node yet (not registered): the status waits rather than being dropped.
        let owner = self.node_owner().await.map_err(|e| match e {
            ReportError::NotFound(m) => {
                ReportError::Unavailable(format!("mirror pod needs the Node as owner: {m}"))
            }
            other => other,
        })?;
        let mut annotations = pod.metadata.annotations.clone().unwrap_or_default();
        annotations.insert(labels::CONFIG_MIRROR.to_string(), hash.to_string());
        let mut spec = pod.spec.clone().unwrap_or_default();
        spec.node_name = Some(self.node_name().to_string());
        Ok(Pod {
            metadata: ObjectMeta {
                name: pod.metadata.name.clone(),
                namespace: pod.metadata.namespace.clone(),
                labels: pod.metadata.labels.clone(),
                annotations: Some(annotations),
                owner_references: Some(vec![owner]),
                ..Default::default()
            },
            spec: Some(spec),
            status: None,
        })
    }

    pub async fn pod_removed(&self, pod: &Pod) -> Result<(), ReportError> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let (ns, name) = name_of(pod);
        let api: Api<Pod> = Api::namespaced(self.kube(), &ns);
        let mut st = self.pods.lock().await;
        // The final status first, when it is still waiting (it tells why the pod ended).
        if st.pending.contains_key(&uid)
            && let Err(err) = self.send_pending(&mut st, &uid).await
        {
            debug!(error = %err, "final pod status not sent");
        }
        let mirror = st.mirrors.remove(&uid);
        if let Some(m) = &mirror {
            st.server.remove(&m.uid);
        }
        st.forget(&uid);
        drop(st);
        if is_static(pod) {
            let mirror_uid = match mirror {
                Some(m) => Some(m.uid),
                None => {
                    // Delete only a mirror of this very static pod: a newer version's
                    // mirror may already stand under the same name.
                    let hash = mirror_hash(pod);
                    self.timed(api.get_opt(&name))
                        .await
                        .map_err(|e| report_error(&format!("get pods/{ns}/{name}"), &e))?
                        .filter(|p| annotation(p, labels::CONFIG_MIRROR) == Some(hash.as_str()))
                        .and_then(|p| p.metadata.uid)
                }
            };
            if let Some(mirror_uid) = mirror_uid {
                self.delete_pod(&api, &ns, &name, &mirror_uid).await?;
                info!(pod = %format!("{ns}/{name}"), "mirror pod deleted");
            }
            return Ok(());
        }
        if pod.metadata.deletion_timestamp.is_some() {
            self.delete_pod(&api, &ns, &name, &uid).await?;
            info!(pod = %format!("{ns}/{name}"), %uid, "pod deleted from the API server");
        }
        Ok(())
    }

    /// DELETE with grace 0 and a UID precondition; gone already (404) or replaced by another
    /// pod (409) is fine.
    async fn delete_pod(
        &self,
        api: &Api<Pod>,
        ns: &str,
        name: &str,
        uid: &str,
    ) -> Result<(), ReportError> {
        match self.timed(api.delete(name, &delete_now(uid))).await {
            Ok(_) => Ok(()),
            Err(e) if matches!(status_code(&e), Some(404 | 409)) => Ok(()),
            Err(e) => Err(report_error(&format!("delete pods/{ns}/{name}"), &e)),
        }
    }

    /// Sends pending statuses and checks every static pod's mirror; a deleted or changed
    /// mirror is made again and given the last status.
    pub async fn sync_pods(&self) -> Result<(), ReportError> {
        let mut st = self.pods.lock().await;
        let mut first_err = None;
        let pending: Vec<String> = st.pending.keys().cloned().collect();
        for uid in pending {
            if let Err(err) = self.send_pending(&mut st, &uid).await {
                warn!(%uid, error = %err, "pod status still not reported");
                first_err.get_or_insert(err);
            }
        }
        let statics: Vec<Pod> = st.statics.values().cloned().collect();
        for pod in statics {
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            if st.pending.contains_key(&uid) {
                continue;
            }
            let Some(known) = st.mirrors.get(&uid).cloned() else {
                continue;
            };
            let (ns, name) = name_of(&pod);
            let api: Api<Pod> = Api::namespaced(self.kube(), &ns);
            let current = match self.timed(api.get_metadata_opt(&name)).await {
                Ok(current) => current,
                Err(e) => {
                    first_err.get_or_insert(report_error(&format!("get pods/{ns}/{name}"), &e));
                    continue;
                }
            };
            if current.and_then(|p| p.metadata.uid).as_deref() == Some(known.uid.as_str()) {
                continue;
            }
            info!(pod = %format!("{ns}/{name}"), "mirror pod gone; creating it again");
            st.mirrors.remove(&uid);
            st.server.remove(&known.uid);
            if let Some(status) = st.sent.remove(&uid) {
                st.pending.insert(uid.clone(), (pod.clone(), status));
                if let Err(err) = self.send_pending(&mut st, &uid).await {
                    first_err.get_or_insert(err);
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodCondition;

    fn cond(t: &str) -> PodCondition {
        PodCondition {
            type_: t.into(),
            status: "True".into(),
            ..Default::default()
        }
    }

    fn status(v: Value) -> PodStatus {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn status_patch_carries_uid_and_keeps_the_schedulers_condition() {
        let ours = PodStatus {
            phase: Some("Running".into()),
            conditions: Some(vec![cond("Ready"), cond("PodScheduled")]),
            ..Default::default()
        };
        let server = PodStatus {
            phase: Some("Pending".into()),
            conditions: Some(vec![cond("PodScheduled")]),
            ..Default::default()
        };
        let patch = pod_status_patch("u1", &server, &ours).unwrap().unwrap();
        assert_eq!(patch["metadata"], json!({"uid": "u1"}));
        assert_eq!(patch["status"]["phase"], "Running");
        assert_eq!(
            patch["status"]["conditions"],
            json!([{"type": "Ready", "status": "True"}])
        );
        // Without the scheduler's (a pod bound by nodeName), ours is sent.
        let patch = pod_status_patch("u1", &PodStatus::default(), &ours)
            .unwrap()
            .unwrap();
        assert_eq!(patch["status"]["conditions"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn an_evictions_disruption_target_goes_out_once_nothing_runs() {
        let disruption = json!({"type": "DisruptionTarget", "status": "True",
            "reason": "TerminationByKubelet", "message": "full"});
        let server = status(json!({"conditions": [
            {"type": "DisruptionTarget", "status": "False", "reason": "Other"}]}));
        let app = |state: Value| {
            json!([{"name": "app", "image": "i", "imageID": "",
            "ready": false, "restartCount": 0, "state": state}])
        };
        // Still running: the server's stays.
        let ours = status(json!({"phase": "Failed", "conditions": [disruption],
            "containerStatuses": app(json!({"running": {}}))}));
        let merged = merged_status(&server, &ours);
        assert_eq!(merged.conditions.unwrap()[0].status, "False");
        // Terminal and stopped: ours replaces it.
        let ours = status(json!({"phase": "Failed", "conditions": [disruption],
            "containerStatuses": app(json!({"terminated": {"exitCode": 137}}))}));
        let merged = merged_status(&server, &ours);
        let conditions = merged.conditions.unwrap();
        assert_eq!(conditions.len(), 1);
        assert_eq!(
            conditions[0].reason.as_deref(),
            Some("TerminationByKubelet")
        );
        // Appended where the server has none.
        let merged = merged_status(&PodStatus::default(), &ours);
        assert_eq!(merged.conditions.unwrap()[0].type_, "DisruptionTarget");
    }

    #[test]
    fn container_statuses_are_sent_whole_without_directives() {
        let server = status(
            json!({"containerStatuses": [{"name": "app", "image": "i", "imageID": "",
            "ready": true, "restartCount": 0, "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}]}),
        );
        let ours = status(
            json!({"containerStatuses": [{"name": "app", "image": "i", "imageID": "",
            "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 1}}}]}),
        );
        let patch = pod_status_patch("u1", &server, &ours).unwrap().unwrap();
        assert_eq!(
            patch["status"]["containerStatuses"],
            serde_json::to_value(&ours).unwrap()["containerStatuses"]
        );
        assert!(!patch.to_string().contains("$patch"), "{patch}");
    }

    #[test]
    fn nothing_to_send_when_the_server_has_it() {
        let ours = status(
            json!({"phase": "Running", "podIP": "10.0.0.1", "podIPs": [{"ip": "10.0.0.1"}],
            "conditions": [{"type": "Ready", "status": "True"}]}),
        );
        assert_eq!(pod_status_patch("u1", &ours, &ours).unwrap(), None);
    }

    #[test]
    fn others_conditions_and_fields_stay() {
        let server = status(json!({"nominatedNodeName": "n2", "conditions": [
            {"type": "example.com/gate", "status": "True"},
            {"type": "DisruptionTarget", "status": "True"},
            {"type": "Ready", "status": "False"}]}));
        let ours = status(json!({"conditions": [{"type": "Ready", "status": "True"}]}));
        let patch = pod_status_patch("u1", &server, &ours).unwrap().unwrap();
        assert_eq!(
            patch["status"],
            json!({
                "$setElementOrder/conditions": [{"type": "example.com/gate"}, {"type": "DisruptionTarget"}, {"type": "Ready"}],
                "conditions": [{"type": "Ready", "status": "True"}],
            })
        );
    }
}
