//! The standalone [`NodeReporter`]: with no API server, what the kubelet would report goes to
//! the log.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{ContainerStatus, Node, NodeStatus, Pod, PodStatus};

use crate::error::ReportError;
use crate::reporter::{EventType, KubeletEvent, NodeReporter};

/// Logs node registration, node condition changes, pod status changes and events with
/// `tracing` at info (warning events at warn). Never fails. It keeps only the last status
/// summary per pod and the last node condition summary, so that unchanged reports are not
/// logged again.
#[derive(Debug, Default)]
pub struct LogReporter {
    state: Mutex<LogState>,
}

#[derive(Debug, Default)]
struct LogState {
    node_conditions: String,
    pods: HashMap<String, String>,
}

impl LogReporter {
    /// A reporter that logs.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, LogState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// `Ready=True, MemoryPressure=False, ...`
fn node_conditions(status: &NodeStatus) -> String {
    status
        .conditions
        .iter()
        .flatten()
        .map(|c| format!("{}={}", c.type_, c.status))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `app=running, init=terminated(0 Completed), side=waiting(CrashLoopBackOff)`
fn container_states(statuses: Option<&Vec<ContainerStatus>>) -> impl Iterator<Item = String> {
    statuses.into_iter().flatten().map(|c| {
        let state = c.state.as_ref();
        let what = if let Some(t) = state.and_then(|s| s.terminated.as_ref()) {
            match t.reason.as_deref().filter(|r| !r.is_empty()) {
                Some(reason) => format!("terminated({} {reason})", t.exit_code),
                None => format!("terminated({})", t.exit_code),
            }
        } else if let Some(w) = state.and_then(|s| s.waiting.as_ref()) {
            format!("waiting({})", w.reason.as_deref().unwrap_or(""))
        } else if state.and_then(|s| s.running.as_ref()).is_some() {
            if c.ready { "running,ready" } else { "running" }.to_string()
        } else {
            "unknown".to_string()
        };
        format!("{}={what}", c.name)
    })
}

/// One line that changes whenever anything worth seeing in the status changes.
fn pod_summary(status: &PodStatus) -> String {
    let mut parts = vec![format!(
        "phase={}",
        status.phase.as_deref().unwrap_or("Unknown")
    )];
    if let Some(reason) = &status.reason {
        parts.push(format!("reason={reason}"));
    }
    if let Some(ip) = &status.pod_ip {
        parts.push(format!("ip={ip}"));
    }
    let containers: Vec<String> = container_states(status.init_container_statuses.as_ref())
        .map(|s| format!("init:{s}"))
        .chain(container_states(status.container_statuses.as_ref()))
        .collect();
    if !containers.is_empty() {
        parts.push(format!("containers=[{}]", containers.join(", ")));
    }
    parts.join(" ")
}

fn pod_key(pod: &Pod) -> (String, String) {
    let name = format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.name.as_deref().unwrap_or("")
    );
    (pod.metadata.uid.clone().unwrap_or_default(), name)
}

#[async_trait]
impl NodeReporter for LogReporter {
    async fn register_node(&self, node: &Node) -> Result<(), ReportError> {
        let info = node.status.as_ref().and_then(|s| s.node_info.as_ref());
        tracing::info!(
            node = node.metadata.name.as_deref().unwrap_or(""),
            kubelet_version = info.map_or("", |i| i.kubelet_version.as_str()),
            container_runtime = info.map_or("", |i| i.container_runtime_version.as_str()),
            "node registered"
        );
        Ok(())
    }

    async fn update_node_status(
        &self,
        node_name: &str,
        status: &NodeStatus,
    ) -> Result<(), ReportError> {
        let conditions = node_conditions(status);
        let mut state = self.lock();
        if state.node_conditions != conditions {
            tracing::info!(node = node_name, %conditions, "node status changed");
            state.node_conditions = conditions;
        }
        Ok(())
    }

    async fn renew_lease(&self, node_name: &str) -> Result<(), ReportError> {
        tracing::debug!(node = node_name, "node lease renewed");
        Ok(())
    }

    async fn update_pod_status(&self, pod: &Pod, status: &PodStatus) -> Result<(), ReportError> {
        let (uid, name) = pod_key(pod);
        let summary = pod_summary(status);
        let mut state = self.lock();
        if state.pods.get(&uid) != Some(&summary) {
            tracing::info!(pod = %name, %uid, status = %summary, "pod status changed");
            state.pods.insert(uid, summary);
        }
        Ok(())
    }

    async fn pod_removed(&self, pod: &Pod) -> Result<(), ReportError> {
        let (uid, name) = pod_key(pod);
        self.lock().pods.remove(&uid);
        tracing::info!(pod = %name, %uid, "pod removed from node");
        Ok(())
    }

    async fn record_event(&self, event: &KubeletEvent) -> Result<(), ReportError> {
        let involved = &event.involved;
        let object = format!(
            "{}/{}/{}{}",
            involved.kind.as_deref().unwrap_or(""),
            involved.namespace.as_deref().unwrap_or(""),
            involved.name.as_deref().unwrap_or(""),
            involved
                .field_path
                .as_deref()
                .map(|f| format!(" {f}"))
                .unwrap_or_default()
        );
        match event.type_ {
            EventType::Normal => tracing::info!(
                %object, reason = %event.reason, message = %event.message, "event"
            ),
            EventType::Warning => tracing::warn!(
                %object, reason = %event.reason, message = %event.message, "warning event"
            ),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateTerminated, ContainerStateWaiting, NodeCondition,
        ObjectReference,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn test_pod(uid: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("prod".into()),
                uid: Some(uid.into()),
                ..ObjectMeta::default()
            },
            ..Pod::default()
        }
    }

    fn status(phase: &str, containers: Vec<ContainerStatus>) -> PodStatus {
        PodStatus {
            phase: Some(phase.into()),
            container_statuses: Some(containers),
            ..PodStatus::default()
        }
    }

    #[test]
    fn summary_names_phase_and_container_states() {
        let s = status(
            "Running",
            vec![
                ContainerStatus {
                    name: "app".into(),
                    state: Some(ContainerState {
                        terminated: Some(ContainerStateTerminated {
                            exit_code: 1,
                            reason: Some("Error".into()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                ContainerStatus {
                    name: "side".into(),
                    state: Some(ContainerState {
                        waiting: Some(ContainerStateWaiting {
                            reason: Some("CrashLoopBackOff".into()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            ],
        );
        assert_eq!(
            pod_summary(&s),
            "phase=Running containers=[app=terminated(1 Error), side=waiting(CrashLoopBackOff)]"
        );
    }

    #[tokio::test]
    async fn keeps_only_last_summary_per_pod_and_forgets_removed_pods() {
        let r = LogReporter::new();
        let pod = test_pod("u1");
        r.update_pod_status(&pod, &status("Pending", vec![]))
            .await
            .unwrap();
        r.update_pod_status(&pod, &status("Running", vec![]))
            .await
            .unwrap();
        r.update_pod_status(&test_pod("u2"), &status("Pending", vec![]))
            .await
            .unwrap();
        {
            let state = r.lock();
            assert_eq!(state.pods.len(), 2);
            assert_eq!(state.pods["u1"], "phase=Running");
        }
        r.pod_removed(&pod).await.unwrap();
        assert!(!r.lock().pods.contains_key("u1"));
    }

    #[tokio::test]
    async fn never_fails() {
        let r = LogReporter::new();
        r.register_node(&Node::default()).await.unwrap();
        let ns = NodeStatus {
            conditions: Some(vec![NodeCondition {
                type_: "Ready".into(),
                status: "True".into(),
                ..Default::default()
            }]),
            ..Default::default()
        };
        r.update_node_status("n", &ns).await.unwrap();
        assert_eq!(r.lock().node_conditions, "Ready=True");
        r.renew_lease("n").await.unwrap();
        r.record_event(&KubeletEvent {
            involved: ObjectReference::default(),
            type_: EventType::Warning,
            reason: "BackOff".into(),
            message: "m".into(),
        })
        .await
        .unwrap();
    }
}
