//! Garbage collection of a live pod's dead containers and sandboxes, as the reference's
//! container GC does with its default policy (`MinAge` 0, `MaxPerPodContainer` 1): of the
//! containers of one name that are not running, only the newest stays (its state is the
//! pod status' `lastState`, its log what `kubectl logs --previous` reads, its restart count
//! the base of the next one); older ones go, with their log files. Of the sandboxes, the
//! newest stays; older ones that are not ready and hold no container go.
//!
//! A crash-looping container would otherwise leave one dead container and one log file per
//! restart behind, for as long as the pod lives. The reference collects every minute, node
//! wide; here the pod's worker collects after each sync, so at most one old container of a
//! name is ever left. A terminated pod's containers and sandboxes are removed by its
//! termination, as before.

use std::collections::BTreeSet;
use std::path::Path;

use tracing::{debug, warn};

use super::state::PodRuntimeState;
use super::worker::PodWorker;
use crate::runtime::{ContainerState, SandboxState};

/// What the collection removes: container IDs (with their log paths), then sandbox IDs.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Evictable {
    pub(super) containers: Vec<(String, String)>,
    pub(super) sandboxes: Vec<String>,
}

/// The dead containers beyond the newest of each name, and the sandboxes beyond the newest
/// that are not ready and keep no container once those are gone.
pub(super) fn evictable(observed: &PodRuntimeState) -> Evictable {
    let mut dead: Vec<_> = observed
        .containers
        .iter()
        .filter(|c| c.state != ContainerState::Running)
        .collect();
    // Newest first, whatever order the runtime listed them in.
    dead.sort_by_key(|c| std::cmp::Reverse(c.created_at));
    let mut kept_names = BTreeSet::new();
    let mut out = Evictable::default();
    let mut removed = BTreeSet::new();
    for c in dead {
        if kept_names.insert(c.metadata.name.as_str()) {
            continue;
        }
        removed.insert(c.id.as_str());
        out.containers.push((c.id.clone(), c.log_path.clone()));
    }
    let newest_sandbox = observed
        .sandboxes
        .iter()
        .max_by_key(|s| s.created_at)
        .map(|s| s.id.as_str());
    for s in &observed.sandboxes {
        let keeps_containers = observed
            .containers
            .iter()
            .any(|c| c.sandbox_id == s.id && !removed.contains(c.id.as_str()));
        if Some(s.id.as_str()) != newest_sandbox
            && s.state != SandboxState::Ready
            && !keeps_containers
        {
            out.sandboxes.push(s.id.clone());
        }
    }
    out
}

impl PodWorker {
    /// Remove what [`evictable`] finds in `observed`. Failures are logged; the next sync
    /// tries again.
    pub(super) async fn collect_garbage(&mut self, observed: &PodRuntimeState) {
        let Evictable {
            containers,
            sandboxes,
        } = evictable(observed);
        let runtime = &self.ctx.runtime;
        for (id, log_path) in containers {
            if let Err(e) = runtime.remove_container(&id).await
                && !e.is_not_found()
            {
                warn!(container_id = %id, error = %e, "removing a dead container failed");
                continue;
            }
            debug!(container_id = %id, "dead container removed");
            if !log_path.is_empty() {
                let log = Path::new(&log_path).to_path_buf();
                let removed = tokio::task::spawn_blocking(move || {
                    crate::logs::rotation::remove_log_files(&log)
                })
                .await;
                match removed {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => warn!(container_id = %id, error = %e, "removing its logs failed"),
                    Err(e) => warn!(container_id = %id, error = %e, "removing its logs failed"),
                }
            }
        }
        for id in sandboxes {
            match runtime.remove_pod_sandbox(&id).await {
                Ok(()) => debug!(sandbox = %id, "old sandbox removed"),
                Err(e) if e.is_not_found() => {}
                Err(e) => warn!(sandbox = %id, error = %e, "removing an old sandbox failed"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{ContainerMetadata, ContainerStatus, PodSandboxStatus};

    fn container(
        id: &str,
        name: &str,
        sandbox: &str,
        state: ContainerState,
        created: i64,
    ) -> ContainerStatus {
        ContainerStatus {
            id: id.into(),
            sandbox_id: sandbox.into(),
            metadata: ContainerMetadata {
                name: name.into(),
                attempt: 0,
            },
            state,
            created_at: created,
            log_path: format!("/logs/{name}/{id}.log"),
            ..ContainerStatus::default()
        }
    }

    fn sandbox(id: &str, state: SandboxState, created: i64) -> PodSandboxStatus {
        PodSandboxStatus {
            id: id.into(),
            state,
            created_at: created,
            ..PodSandboxStatus::default()
        }
    }

    #[test]
    fn keeps_the_newest_dead_container_of_each_name_and_every_running_one() {
        use ContainerState::{Created, Exited, Running};
        let observed = PodRuntimeState {
            uid: "u".into(),
            sandboxes: vec![sandbox("s1", SandboxState::Ready, 1)],
            containers: vec![
                container("a1", "app", "s1", Exited, 1),
                container("a3", "app", "s1", Running, 3),
                container("a2", "app", "s1", Exited, 2),
                container("b1", "side", "s1", Exited, 1),
                container("b2", "side", "s1", Exited, 5),
                container("b0", "side", "s1", Created, 0),
                container("i1", "init", "s1", Exited, 1),
            ],
        };
        let got = evictable(&observed);
        let mut ids: Vec<&str> = got.containers.iter().map(|(id, _)| id.as_str()).collect();
        ids.sort();
        assert_eq!(ids, ["a1", "b0", "b1"]);
        assert!(
            got.containers
                .contains(&("b1".to_string(), "/logs/side/b1.log".to_string()))
        );
        assert!(got.sandboxes.is_empty());
    }

    #[test]
    fn old_sandboxes_go_once_empty_the_newest_stays() {
        use ContainerState::Exited;
        let observed = PodRuntimeState {
            uid: "u".into(),
            sandboxes: vec![
                sandbox("s3", SandboxState::NotReady, 3),
                sandbox("s2", SandboxState::NotReady, 2),
                sandbox("s1", SandboxState::NotReady, 1),
            ],
            containers: vec![
                // s2 keeps the newest dead "app"; s1's older one goes, and s1 with it.
                container("a2", "app", "s2", Exited, 2),
                container("a1", "app", "s1", Exited, 1),
            ],
        };
        let got = evictable(&observed);
        assert_eq!(got.containers.len(), 1);
        assert_eq!(got.sandboxes, ["s1"]);
    }
}
