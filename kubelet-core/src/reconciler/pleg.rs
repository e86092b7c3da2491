//! The pod lifecycle event generator: relists the runtime on an interval and tells which pods
//! changed (a sandbox or container appeared, changed state, or went away), so that only those
//! pods' workers wake up.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::RuntimeError;
use crate::labels;
use crate::runtime::{
    ContainerState, ContainerStatus, ListFilter, PodSandboxStatus, Runtime, SandboxState,
};

/// What one pod looked like at a relist: each sandbox's and container's state by ID.
type Fingerprint = BTreeMap<String, u8>;

/// The result of one relist.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelistResult {
    /// Pods whose sandboxes or containers changed since the previous relist.
    pub changed: BTreeSet<String>,
    /// Every pod UID the runtime holds anything of.
    pub present: BTreeSet<String>,
}

/// Remembers the previous relist to compute differences.
#[derive(Debug, Default)]
pub struct Relister {
    last: BTreeMap<String, Fingerprint>,
    /// Where the relist's duration, interval and the running pods and containers go.
    metrics: Option<crate::metrics::KubeletMetrics>,
    /// When the previous successful relist started.
    last_start: Option<tokio::time::Instant>,
}

fn sandbox_code(s: &PodSandboxStatus) -> u8 {
    match s.state {
        SandboxState::Ready => 1,
        SandboxState::NotReady => 2,
    }
}

fn container_code(c: &ContainerStatus) -> u8 {
    match c.state {
        ContainerState::Created => 3,
        ContainerState::Running => 4,
        ContainerState::Exited => 5,
        ContainerState::Unknown => 6,
    }
}

impl Relister {
    /// A relister that has seen nothing: its first relist reports every pod as changed.
    pub fn new() -> Self {
        Self::default()
    }

    /// Record into `metrics` (as the reference's PLEG): each relist's duration, the interval
    /// between relists, when it was last seen, and the pods and containers running.
    pub fn with_metrics(mut self, metrics: crate::metrics::KubeletMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// List the runtime and compare with the previous relist.
    pub async fn relist(&mut self, runtime: &dyn Runtime) -> Result<RelistResult, RuntimeError> {
        let start = tokio::time::Instant::now();
        let listed = async {
            let sandboxes = runtime.list_pod_sandboxes(&ListFilter::all()).await?;
            let containers = runtime.list_containers(&ListFilter::all()).await?;
            Ok::<_, RuntimeError>((sandboxes, containers))
        }
        .await;
        if let Some(metrics) = &self.metrics {
            if listed.is_ok() {
                let interval = self.last_start.map(|last| start.duration_since(last));
                metrics.pleg_seen(interval, std::time::SystemTime::now());
                self.last_start = Some(start);
            }
            if let Ok((sandboxes, containers)) = &listed {
                let (pods, states) = running(sandboxes, containers);
                metrics.set_running(pods, states);
            }
            metrics.pleg_relist(start.elapsed());
        }
        let (sandboxes, containers) = listed?;
        Ok(self.diff(&sandboxes, &containers))
    }

    /// Compare a listing with the previous one.
    pub fn diff(
        &mut self,
        sandboxes: &[PodSandboxStatus],
        containers: &[ContainerStatus],
    ) -> RelistResult {
        let mut now: BTreeMap<String, Fingerprint> = BTreeMap::new();
        for s in sandboxes {
            if let Some(uid) = labels::pod_uid_of(&s.labels) {
                now.entry(uid.to_string())
                    .or_default()
                    .insert(s.id.clone(), sandbox_code(s));
            }
        }
        for c in containers {
            if let Some(uid) = labels::pod_uid_of(&c.labels) {
                now.entry(uid.to_string())
                    .or_default()
                    .insert(c.id.clone(), container_code(c));
            }
        }
        let mut changed: BTreeSet<String> = now
            .iter()
            .filter(|(uid, fp)| self.last.get(*uid) != Some(*fp))
            .map(|(uid, _)| uid.clone())
            .collect();
        changed.extend(
            self.last
                .keys()
                .filter(|uid| !now.contains_key(*uid))
                .cloned(),
        );
        let present = now.keys().cloned().collect();
        self.last = now;
        RelistResult { changed, present }
    }
}

/// The kubelet's pods with a ready sandbox, and its containers by state (the reference's
/// `kubelet_running_pods` and `kubelet_running_containers`).
fn running(
    sandboxes: &[PodSandboxStatus],
    containers: &[ContainerStatus],
) -> (usize, [(&'static str, usize); 4]) {
    let pods: BTreeSet<&str> = sandboxes
        .iter()
        .filter(|s| s.state == SandboxState::Ready)
        .filter_map(|s| labels::pod_uid_of(&s.labels))
        .collect();
    let mut states = [
        ("created", 0),
        ("running", 0),
        ("exited", 0),
        ("unknown", 0),
    ];
    for c in containers
        .iter()
        .filter(|c| labels::pod_uid_of(&c.labels).is_some())
    {
        let i = match c.state {
            ContainerState::Created => 0,
            ContainerState::Running => 1,
            ContainerState::Exited => 2,
            ContainerState::Unknown => 3,
        };
        states[i].1 += 1;
    }
    (pods.len(), states)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sandbox(uid: &str, id: &str, ready: bool) -> PodSandboxStatus {
        PodSandboxStatus {
            id: id.into(),
            state: if ready {
                SandboxState::Ready
            } else {
                SandboxState::NotReady
            },
            labels: labels::pod_labels("ns", "n", uid),
            ..Default::default()
        }
    }

    fn container(uid: &str, id: &str, state: ContainerState) -> ContainerStatus {
        ContainerStatus {
            id: id.into(),
            state,
            labels: labels::pod_labels("ns", "n", uid),
            ..Default::default()
        }
    }

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn reports_only_the_pods_that_changed() {
        let mut r = Relister::new();
        let sb = vec![sandbox("a", "s1", true), sandbox("b", "s2", true)];
        let first = r.diff(&sb, &[container("a", "c1", ContainerState::Running)]);
        assert_eq!(first.changed, set(&["a", "b"]));
        assert_eq!(first.present, set(&["a", "b"]));

        let same = r.diff(&sb, &[container("a", "c1", ContainerState::Running)]);
        assert!(same.changed.is_empty());

        let exited = r.diff(&sb, &[container("a", "c1", ContainerState::Exited)]);
        assert_eq!(exited.changed, set(&["a"]));

        let gone = r.diff(&sb[..1], &[container("a", "c1", ContainerState::Exited)]);
        assert_eq!(gone.changed, set(&["b"]));
        assert_eq!(gone.present, set(&["a"]));
    }

    #[test]
    fn unlabelled_objects_are_not_ours() {
        let mut r = Relister::new();
        let mut foreign = sandbox("x", "s", true);
        foreign.labels.clear();
        let res = r.diff(&[foreign], &[]);
        assert!(res.present.is_empty() && res.changed.is_empty());
    }
}
