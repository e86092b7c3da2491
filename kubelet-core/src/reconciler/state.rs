//! What the runtime holds for one pod, as the planner and status computation see it.

use crate::labels;
use crate::runtime::{ContainerState, ContainerStatus, PodSandboxStatus, SandboxState};

/// The runtime's sandboxes and containers of one pod, with full container statuses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodRuntimeState {
    /// Pod UID.
    pub uid: String,
    /// Sandboxes of the pod, newest first.
    pub sandboxes: Vec<PodSandboxStatus>,
    /// Containers of the pod (all sandboxes), newest first.
    pub containers: Vec<ContainerStatus>,
}

impl PodRuntimeState {
    /// The newest sandbox, if any.
    pub fn latest_sandbox(&self) -> Option<&PodSandboxStatus> {
        self.sandboxes.first()
    }

    /// The newest sandbox if it is ready.
    pub fn ready_sandbox(&self) -> Option<&PodSandboxStatus> {
        self.latest_sandbox()
            .filter(|s| s.state == SandboxState::Ready)
    }

    /// The newest container of the given name (in any sandbox).
    pub fn latest_container(&self, name: &str) -> Option<&ContainerStatus> {
        self.containers.iter().find(|c| c.metadata.name == name)
    }

    /// The containers of the given name, newest first.
    pub fn containers_named<'a>(
        &'a self,
        name: &'a str,
    ) -> impl Iterator<Item = &'a ContainerStatus> + 'a {
        self.containers
            .iter()
            .filter(move |c| c.metadata.name == name)
    }

    /// Containers that are running.
    pub fn running_containers(&self) -> impl Iterator<Item = &ContainerStatus> {
        self.containers
            .iter()
            .filter(|c| c.state == ContainerState::Running)
    }

    /// Whether nothing of this pod is left running.
    pub fn is_stopped(&self) -> bool {
        self.running_containers().next().is_none()
            && self
                .sandboxes
                .iter()
                .all(|s| s.state != SandboxState::Ready)
    }

    /// Whether the runtime holds nothing of this pod.
    pub fn is_empty(&self) -> bool {
        self.sandboxes.is_empty() && self.containers.is_empty()
    }

    /// Sort sandboxes and containers newest first (by creation time, then attempt).
    pub fn sort(&mut self) {
        self.sandboxes.sort_by(|a, b| {
            (b.created_at, b.metadata.attempt).cmp(&(a.created_at, a.metadata.attempt))
        });
        self.containers.sort_by(|a, b| {
            (b.created_at, labels::restart_count_of(&b.annotations))
                .cmp(&(a.created_at, labels::restart_count_of(&a.annotations)))
        });
    }
}
