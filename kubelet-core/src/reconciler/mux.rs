//! The pod config mux: merges the updates of every source into one set of desired pods,
//! so that one pod UID comes from one source, and tells which pods changed.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Pod;
use tracing::warn;

use crate::labels;
use crate::source::PodUpdate;

/// A desired pod that appeared, changed, or went away (`pod` is `None`).
#[derive(Debug, Clone, PartialEq)]
pub struct PodChange {
    /// Pod UID.
    pub uid: String,
    /// The newest desired pod, `None` when no source wants it any more.
    pub pod: Option<Pod>,
}

/// The merged desired state of all sources.
#[derive(Debug, Default)]
pub struct PodConfigMux {
    pods: BTreeMap<String, (String, Pod)>,
    sources: BTreeSet<String>,
    ready: BTreeSet<String>,
}

/// Whether two versions of a pod differ in what the kubelet acts on: not the status the
/// kubelet writes itself, nor the bookkeeping that changes on every write; but the
/// conditions of the pod's readiness gates, which other controllers set in the status and
/// which decide the pod's Ready condition.
fn same_desired_state(a: &Pod, b: &Pod) -> bool {
    let strip = |p: &Pod| {
        let mut p = p.clone();
        let gates: Vec<String> = p
            .spec
            .iter()
            .flat_map(|s| s.readiness_gates.iter().flatten())
            .map(|g| g.condition_type.clone())
            .collect();
        let gate_conditions: Vec<(String, String)> = p
            .status
            .iter()
            .flat_map(|s| s.conditions.iter().flatten())
            .filter(|c| gates.contains(&c.type_))
            .map(|c| (c.type_.clone(), c.status.clone()))
            .collect();
        p.status = None;
        p.metadata.resource_version = None;
        p.metadata.managed_fields = None;
        (p, gate_conditions)
    };
    strip(a) == strip(b)
}

impl PodConfigMux {
    /// A mux expecting the named sources; it is ready once each has sent its first snapshot.
    pub fn new<I, S>(sources: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            sources: sources.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }

    /// Whether every source has sent its first complete snapshot. Until then, pods found in
    /// the runtime that no source wants are not treated as orphans: their source may simply
    /// not have spoken yet.
    pub fn all_sources_ready(&self) -> bool {
        self.sources.iter().all(|s| self.ready.contains(s))
    }

    /// The desired pod of that UID.
    pub fn desired(&self, uid: &str) -> Option<&Pod> {
        self.pods.get(uid).map(|(_, p)| p)
    }

    /// All desired pods.
    pub fn pods(&self) -> impl Iterator<Item = &Pod> {
        self.pods.values().map(|(_, p)| p)
    }

    /// Apply one update from a source; returns what changed.
    pub fn apply(&mut self, source: &str, update: PodUpdate) -> Vec<PodChange> {
        let mut changes = Vec::new();
        match update {
            PodUpdate::Snapshot(pods) => {
                self.ready.insert(source.to_string());
                let mut seen = BTreeSet::new();
                for pod in pods {
                    if let Some(uid) = self.upsert(source, pod, &mut changes) {
                        seen.insert(uid);
                    }
                }
                let gone: Vec<String> = self
                    .pods
                    .iter()
                    .filter(|(uid, (src, _))| src == source && !seen.contains(*uid))
                    .map(|(uid, _)| uid.clone())
                    .collect();
                for uid in gone {
                    self.pods.remove(&uid);
                    changes.push(PodChange { uid, pod: None });
                }
            }
            PodUpdate::Add(pod) | PodUpdate::Update(pod) => {
                self.upsert(source, pod, &mut changes);
            }
            PodUpdate::Remove(uid) => {
                if self.pods.get(&uid).is_some_and(|(src, _)| src == source) {
                    self.pods.remove(&uid);
                    changes.push(PodChange { uid, pod: None });
                }
            }
        }
        changes
    }

    fn upsert(
        &mut self,
        source: &str,
        mut pod: Pod,
        changes: &mut Vec<PodChange>,
    ) -> Option<String> {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let Some(uid) = pod.metadata.uid.clone().filter(|u| !u.is_empty()) else {
            warn!(source, pod = %name, namespace = %namespace, "pod without metadata.uid ignored");
            return None;
        };
        if let Some((owner, _)) = self.pods.get(&uid)
            && owner != source
        {
            warn!(source, owner = %owner, pod = %name, uid = %uid, "pod UID already provided by another source; ignored");
            return None;
        }
        pod.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .entry(labels::CONFIG_SOURCE.to_string())
            .or_insert_with(|| source.to_string());
        let changed = self
            .pods
            .get(&uid)
            .is_none_or(|(_, old)| !same_desired_state(old, &pod));
        if changed {
            changes.push(PodChange {
                uid: uid.clone(),
                pod: Some(pod.clone()),
            });
        }
        self.pods.insert(uid.clone(), (source.to_string(), pod));
        Some(uid)
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn pod(uid: &str, image: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(format!("pod-{uid}")),
                namespace: Some("default".into()),
                uid: Some(uid.into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![k8s_openapi::api::core::v1::Container {
                    name: "c".into(),
                    image: Some(image.into()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn uids(changes: &[PodChange]) -> Vec<(&str, bool)> {
        changes
            .iter()
            .map(|c| (c.uid.as_str(), c.pod.is_some()))
            .collect()
    }

    #[test]
    fn snapshots_add_change_and_remove_pods() {
        let mut mux = PodConfigMux::new(["file"]);
        assert!(!mux.all_sources_ready());
        let c = mux.apply(
            "file",
            PodUpdate::Snapshot(vec![pod("a", "x"), pod("b", "x")]),
        );
        assert_eq!(uids(&c), vec![("a", true), ("b", true)]);
        assert!(mux.all_sources_ready());
        // The same snapshot again changes nothing.
        let c = mux.apply(
            "file",
            PodUpdate::Snapshot(vec![pod("a", "x"), pod("b", "x")]),
        );
        assert!(c.is_empty());
        let c = mux.apply("file", PodUpdate::Snapshot(vec![pod("a", "y")]));
        assert_eq!(uids(&c), vec![("a", true), ("b", false)]);
        assert!(mux.desired("b").is_none());
        assert_eq!(
            mux.desired("a")
                .and_then(|p| p.metadata.annotations.as_ref())
                .and_then(|a| a.get(labels::CONFIG_SOURCE))
                .map(String::as_str),
            Some("file")
        );
    }

    #[test]
    fn one_uid_belongs_to_one_source() {
        let mut mux = PodConfigMux::new(["file", "api"]);
        mux.apply("file", PodUpdate::Snapshot(vec![pod("a", "x")]));
        let c = mux.apply("api", PodUpdate::Add(pod("a", "other")));
        assert!(c.is_empty());
        let c = mux.apply("api", PodUpdate::Remove("a".into()));
        assert!(c.is_empty());
        assert!(mux.desired("a").is_some());
        // An empty snapshot from another source does not take the pod away either.
        assert!(mux.apply("api", PodUpdate::Snapshot(vec![])).is_empty());
        assert!(mux.all_sources_ready());
    }

    #[test]
    fn status_only_changes_do_not_wake_the_worker() {
        let mut mux = PodConfigMux::new(["api"]);
        mux.apply("api", PodUpdate::Snapshot(vec![pod("a", "x")]));
        let mut p = pod("a", "x");
        p.status = Some(PodStatus {
            phase: Some("Running".into()),
            ..Default::default()
        });
        p.metadata.resource_version = Some("42".into());
        assert!(mux.apply("api", PodUpdate::Update(p)).is_empty());
    }

    #[test]
    fn readiness_gate_conditions_wake_the_worker() {
        let mut mux = PodConfigMux::new(["api"]);
        let mut gated = pod("a", "x");
        if let Some(spec) = gated.spec.as_mut() {
            spec.readiness_gates = Some(vec![k8s_openapi::api::core::v1::PodReadinessGate {
                condition_type: "example.com/lb".into(),
            }]);
        }
        mux.apply("api", PodUpdate::Snapshot(vec![gated.clone()]));
        let with_condition = |type_: &str, status: &str| {
            let mut p = gated.clone();
            p.status = Some(PodStatus {
                conditions: Some(vec![k8s_openapi::api::core::v1::PodCondition {
                    type_: type_.into(),
                    status: status.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            });
            p
        };
        // Another condition than the gate's: nothing to do.
        assert!(
            mux.apply("api", PodUpdate::Update(with_condition("Other", "True")))
                .is_empty()
        );
        let changes = mux.apply(
            "api",
            PodUpdate::Update(with_condition("example.com/lb", "True")),
        );
        assert_eq!(changes.len(), 1);
        let seen = changes[0].pod.as_ref().and_then(|p| p.status.as_ref());
        assert!(seen.is_some(), "the worker gets the gate's condition");
        // The same gate status again (e.g. the kubelet's own status write): nothing to do.
        assert!(
            mux.apply(
                "api",
                PodUpdate::Update(with_condition("example.com/lb", "True"))
            )
            .is_empty()
        );
    }

    #[test]
    fn pods_without_uid_are_ignored() {
        let mut mux = PodConfigMux::new(["file"]);
        let mut p = pod("a", "x");
        p.metadata.uid = None;
        assert!(mux.apply("file", PodUpdate::Snapshot(vec![p])).is_empty());
        assert_eq!(mux.pods().count(), 0);
    }
}
