//! The planner: a pure function from (desired pod, what the runtime holds, which containers
//! are in backoff, which failed their liveness/startup probes) to the actions that bring the
//! pod closer to its spec. It follows the reference's `computePodActions`.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{Container, Pod};

use super::state::PodRuntimeState;
use crate::labels;
use crate::runtime::{ContainerState, ContainerStatus, NamespaceMode, SandboxState};

/// Why a running container is killed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KillReason {
    /// Its spec hash no longer matches the pod spec.
    SpecChanged,
    /// It is not in the pod spec (any more).
    NotInSpec,
    /// It failed its liveness probe.
    LivenessFailed,
    /// It failed its startup probe.
    StartupFailed,
}

impl KillReason {
    /// The message the reference puts in the Killing event.
    pub fn message(&self, name: &str) -> String {
        match self {
            Self::SpecChanged => format!("Container {name} definition changed, will be restarted"),
            Self::NotInSpec => format!("Container {name} is not in the pod spec, will be killed"),
            Self::LivenessFailed => {
                format!("Container {name} failed liveness probe, will be restarted")
            }
            Self::StartupFailed => {
                format!("Container {name} failed startup probe, will be restarted")
            }
        }
    }
}

/// A container to kill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerKill {
    /// Runtime container ID.
    pub id: String,
    /// Container name.
    pub name: String,
    /// Why.
    pub reason: KillReason,
}

/// A container to create and start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerStart {
    /// Index into `spec.initContainers` or `spec.containers`.
    pub index: usize,
    /// Container name.
    pub name: String,
    /// Whether it is an init container.
    pub init: bool,
    /// The restart count the new container gets (0 for the first).
    pub restart_count: u32,
}

/// What the worker should do for a pod, in this order: kill the pod (all containers and the
/// sandbox), create a sandbox, kill containers, start the next init container, start
/// containers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodActions {
    /// Stop every container and the sandbox (before a new sandbox, or because the pod is done).
    pub kill_pod: bool,
    /// Create a new sandbox.
    pub create_sandbox: bool,
    /// The attempt number of the sandbox to create.
    pub sandbox_attempt: u32,
    /// The ready sandbox to use when none is created.
    pub sandbox_id: Option<String>,
    /// Running containers to kill.
    pub kill: Vec<ContainerKill>,
    /// Containers to start, at most one init container.
    pub start: Vec<ContainerStart>,
    /// Containers that would be started but are in CrashLoopBackOff.
    pub backing_off: Vec<String>,
}

/// The planner's input.
#[derive(Debug, Clone, Copy)]
pub struct PlanInput<'a> {
    /// The desired pod.
    pub pod: &'a Pod,
    /// What the runtime holds for it.
    pub observed: &'a PodRuntimeState,
    /// Container names whose restart is held back by CrashLoopBackOff.
    pub in_backoff: &'a BTreeSet<String>,
    /// IDs of running containers that failed their liveness probe.
    pub liveness_failed: &'a BTreeSet<String>,
    /// IDs of running containers that failed their startup probe.
    pub startup_failed: &'a BTreeSet<String>,
}

fn restart_policy(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always")
}

fn host_network(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false)
}

fn init_containers(pod: &Pod) -> &[Container] {
    pod.spec
        .as_ref()
        .and_then(|s| s.init_containers.as_deref())
        .unwrap_or(&[])
}

fn containers(pod: &Pod) -> &[Container] {
    pod.spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or(&[])
}

fn next_restart_count(latest: Option<&ContainerStatus>) -> u32 {
    latest
        .map(|c| u32::try_from(labels::restart_count_of(&c.annotations)).unwrap_or(0) + 1)
        .unwrap_or(0)
}

fn succeeded(status: &ContainerStatus) -> bool {
    status.state == ContainerState::Exited && status.exit_code == 0
}

/// Whether a container that is not running should be (re)started, by the restart policy and
/// how its newest instance ended (the reference's `ShouldContainerBeRestarted`).
pub fn should_restart(pod: &Pod, latest: Option<&ContainerStatus>) -> bool {
    let Some(status) = latest else {
        return true;
    };
    match status.state {
        ContainerState::Running => false,
        ContainerState::Created | ContainerState::Unknown => true,
        ContainerState::Exited => match restart_policy(pod) {
            "Never" => false,
            "OnFailure" => status.exit_code != 0,
            _ => true,
        },
    }
}

/// Decide whether the pod needs a new sandbox, and with which attempt number.
fn sandbox_changed(pod: &Pod, observed: &PodRuntimeState) -> (bool, u32, Option<String>) {
    let Some(latest) = observed.latest_sandbox() else {
        return (true, 0, None);
    };
    let next_attempt = latest.metadata.attempt + 1;
    let ready = observed
        .sandboxes
        .iter()
        .filter(|s| s.state == SandboxState::Ready)
        .count();
    if ready > 1 || latest.state != SandboxState::Ready {
        return (true, next_attempt, None);
    }
    let wants_host = host_network(pod);
    let has_host = latest.network == NamespaceMode::Node;
    if wants_host != has_host {
        return (true, next_attempt, None);
    }
    (false, latest.metadata.attempt, Some(latest.id.clone()))
}

fn start(index: usize, name: &str, init: bool, latest: Option<&ContainerStatus>) -> ContainerStart {
    ContainerStart {
        index,
        name: name.to_string(),
        init,
        restart_count: next_restart_count(latest),
    }
}

/// Compute the actions for one pod.
pub fn plan(input: PlanInput<'_>) -> PodActions {
    let PlanInput {
        pod,
        observed,
        in_backoff,
        liveness_failed,
        startup_failed,
    } = input;
    let mut actions = PodActions::default();
    let (create_sandbox, attempt, sandbox_id) = sandbox_changed(pod, observed);
    actions.sandbox_attempt = attempt;
    actions.sandbox_id = sandbox_id;

    if create_sandbox {
        actions.kill_pod = true;
        // A pod that ran before under restartPolicy Never is not brought back: it is done.
        if restart_policy(pod) == "Never" && attempt != 0 && !observed.containers.is_empty() {
            return actions;
        }
        // Under OnFailure, a pod whose containers all succeeded stays done too.
        let all_succeeded = !containers(pod).is_empty()
            && containers(pod)
                .iter()
                .all(|c| observed.latest_container(&c.name).is_some_and(succeeded));
        if restart_policy(pod) == "OnFailure" && attempt != 0 && all_succeeded {
            return actions;
        }
        actions.create_sandbox = true;
        if let Some(first) = init_containers(pod).first() {
            push_start(&mut actions, in_backoff, start(0, &first.name, true, None));
            return actions;
        }
        for (index, c) in containers(pod).iter().enumerate() {
            let latest = observed.latest_container(&c.name);
            if restart_policy(pod) == "OnFailure" && latest.is_some_and(succeeded) {
                continue;
            }
            push_start(
                &mut actions,
                in_backoff,
                start(index, &c.name, false, latest),
            );
        }
        return actions;
    }

    kill_unknown(pod, observed, &mut actions);

    // Init containers run one at a time, in order, before any regular container.
    for (index, c) in init_containers(pod).iter().enumerate() {
        let latest = observed.latest_container(&c.name);
        match latest {
            Some(s) if succeeded(s) => continue,
            Some(s) if s.state == ContainerState::Running => return actions,
            Some(s) if s.state == ContainerState::Exited => {
                if restart_policy(pod) == "Never" {
                    // A failed init container fails the pod for good.
                    actions.kill_pod = true;
                    return actions;
                }
                push_start(
                    &mut actions,
                    in_backoff,
                    start(index, &c.name, true, latest),
                );
                return actions;
            }
            _ => {
                push_start(
                    &mut actions,
                    in_backoff,
                    start(index, &c.name, true, latest),
                );
                return actions;
            }
        }
    }

    let mut keep = 0usize;
    for (index, c) in containers(pod).iter().enumerate() {
        let latest = observed.latest_container(&c.name);
        let running = latest.filter(|s| s.state == ContainerState::Running);
        let Some(running) = running else {
            if should_restart(pod, latest) {
                push_start(
                    &mut actions,
                    in_backoff,
                    start(index, &c.name, false, latest),
                );
            }
            continue;
        };
        let reason = if running.annotations.get(labels::CONTAINER_HASH)
            != Some(&labels::container_hash(c))
        {
            Some((KillReason::SpecChanged, true))
        } else if liveness_failed.contains(&running.id) {
            Some((KillReason::LivenessFailed, restart_policy(pod) != "Never"))
        } else if startup_failed.contains(&running.id) {
            Some((KillReason::StartupFailed, restart_policy(pod) != "Never"))
        } else {
            None
        };
        match reason {
            None => keep += 1,
            Some((reason, restart)) => {
                actions.kill.push(ContainerKill {
                    id: running.id.clone(),
                    name: c.name.clone(),
                    reason: reason.clone(),
                });
                let next = start(index, &c.name, false, latest);
                if restart && reason == KillReason::SpecChanged {
                    // A changed spec has a new backoff key: it never waits.
                    actions.start.push(next);
                } else if restart {
                    // A probe kill waits while the container's CrashLoopBackOff lasts (the
                    // reference backs off from its newest exited instance).
                    push_start(&mut actions, in_backoff, next);
                }
            }
        }
    }

    if keep == 0 && actions.start.is_empty() && actions.backing_off.is_empty() {
        actions.kill_pod = true;
    }
    actions
}

fn push_start(actions: &mut PodActions, in_backoff: &BTreeSet<String>, start: ContainerStart) {
    if in_backoff.contains(&start.name) {
        actions.backing_off.push(start.name);
    } else {
        actions.start.push(start);
    }
}

/// Running containers that the spec does not name are killed.
fn kill_unknown(pod: &Pod, observed: &PodRuntimeState, actions: &mut PodActions) {
    let known: BTreeSet<&str> = init_containers(pod)
        .iter()
        .chain(containers(pod))
        .map(|c| c.name.as_str())
        .collect();
    for c in observed.running_containers() {
        if !known.contains(c.metadata.name.as_str()) {
            actions.kill.push(ContainerKill {
                id: c.id.clone(),
                name: c.metadata.name.clone(),
                reason: KillReason::NotInSpec,
            });
        }
    }
}

#[cfg(test)]
mod tests;
