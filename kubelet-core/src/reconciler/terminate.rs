//! Stopping a pod: graceful stop of its containers within the grace period, then the sandbox,
//! its network, the containers and sandboxes removed, volumes torn down, the pod's
//! directories and cgroups cleaned.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::future::join_all;
use k8s_openapi::api::core::v1::Pod;
use tracing::{info, warn};

use super::context::WorkerContext;
use super::state::PodRuntimeState;
use super::sync::{find_container, grace_period, network_context, pod_name};
use super::worker::PodWorker;
use crate::probes::{ProbeTarget, hook_spec, run_hook};
use crate::reporter::EventType;
use crate::runtime::{ContainerState, SandboxState};

/// How long termination waits before trying the runtime again when it is unreachable.
const RETRY: Duration = Duration::from_secs(2);
/// The least grace a container gets after its preStop hook, as the reference's
/// `minimumGracePeriodInSeconds`, so that it is not SIGKILLed right after SIGTERM.
const MINIMUM_GRACE: Duration = Duration::from_secs(2);

/// Stop one container as the reference's `killContainer`: a Killing event (`message`, or
/// "Stopping container <name>"), the preStop hook bounded by the grace period, then SIGTERM
/// with what is left of the grace period (at least 2 s) before SIGKILL. `pod` is `None` for
/// an orphan (no spec: no hook, no event).
pub(super) async fn kill_container(
    ctx: &WorkerContext,
    pod: Option<&Pod>,
    container_id: &str,
    name: &str,
    grace: Duration,
    message: Option<String>,
    pod_ip: Option<&str>,
) {
    let mut grace = grace;
    if let Some(pod) = pod {
        ctx.event(
            pod,
            Some(name),
            EventType::Normal,
            "Killing",
            message.unwrap_or_else(|| format!("Stopping container {name}")),
        );
        let pre_stop = find_container(pod, name).and_then(|(c, field)| {
            let hook = c.lifecycle.as_ref()?.pre_stop.as_ref()?;
            Some((c, field, hook))
        });
        if let Some((container, field, hook)) = pre_stop
            && !grace.is_zero()
        {
            let started = tokio::time::Instant::now();
            let target = ProbeTarget {
                container_id,
                container,
                pod_ip,
            };
            let outcome = match hook_spec(hook, &format!("{field}.lifecycle.preStop")) {
                Ok(hook) => {
                    let full_name = pod_name(pod);
                    let run = run_hook(ctx.runtime.as_ref(), &hook, target, &full_name);
                    tokio::time::timeout(grace, run).await
                }
                Err(err) => Ok(Err(err.to_string())),
            };
            match outcome {
                Ok(Ok(())) => {}
                Ok(Err(message)) => {
                    warn!(container = %name, %message, "preStop hook failed");
                    ctx.event(
                        pod,
                        Some(name),
                        EventType::Warning,
                        "FailedPreStopHook",
                        message,
                    );
                }
                Err(_) => info!(
                    container = %name,
                    grace_seconds = grace.as_secs(),
                    "preStop hook not completed in grace period"
                ),
            }
            // Whole seconds, as the reference counts the hook against the grace period.
            grace = grace.saturating_sub(Duration::from_secs(started.elapsed().as_secs()));
        }
    }
    let grace = grace.max(MINIMUM_GRACE);
    if let Err(err) = ctx.runtime.stop_container(container_id, grace).await {
        warn!(container = %name, error = %err, "stop failed");
    }
}

impl PodWorker {
    /// Stop every running container (concurrently, each with `grace`) and every ready sandbox.
    pub(super) async fn kill_pod(
        &mut self,
        pod: Option<&Pod>,
        observed: &PodRuntimeState,
        grace: Duration,
    ) {
        let runtime = &self.ctx.runtime;
        let pod_ip = pod.and_then(|p| self.pod_ip(p));
        let ctx = &self.ctx;
        let stops = observed.running_containers().map(|c| {
            kill_container(
                ctx,
                pod,
                &c.id,
                &c.metadata.name,
                grace,
                None,
                pod_ip.as_deref(),
            )
        });
        join_all(stops).await;
        for sandbox in observed
            .sandboxes
            .iter()
            .filter(|s| s.state == SandboxState::Ready)
        {
            if let Some(pod) = pod {
                let status = runtime.pod_sandbox_status(&sandbox.id).await;
                let status = status.as_ref().unwrap_or(sandbox);
                if let Err(err) = self
                    .ctx
                    .network
                    .teardown(&network_context(pod, status))
                    .await
                {
                    warn!(sandbox = %sandbox.id, error = %err, "network teardown failed");
                }
            }
            if let Err(err) = runtime.stop_pod_sandbox(&sandbox.id).await {
                warn!(sandbox = %sandbox.id, error = %err, "stopping sandbox failed");
            }
        }
    }

    /// Terminate the pod for good and clean up after it. `pod` is `None` for an orphan found
    /// in the runtime that no source wants.
    pub(super) async fn terminate(&mut self, pod: Option<&Pod>) {
        // Probes stop with the pod: a liveness failure must not restart a container that is
        // being stopped.
        self.probes.stop_all();
        let observed = loop {
            match self.observe().await {
                Ok(o) => break o,
                Err(err) => {
                    warn!(error = %err, "cannot observe pod to terminate it; will retry");
                    tokio::time::sleep(RETRY).await;
                }
            }
        };
        let grace = grace_period(pod, &observed);
        info!(
            pod = %pod.map(pod_name).unwrap_or_else(|| self.uid.clone()),
            grace_seconds = grace.as_secs(),
            "terminating pod"
        );
        self.kill_pod(pod, &observed, grace).await;
        if let Some(pod) = pod {
            // The final status: every container stopped.
            let stopped = self.observe().await.unwrap_or(observed.clone());
            self.update_status(pod, &stopped, true);
        }
        let runtime = &self.ctx.runtime;
        for c in &observed.containers {
            if c.state == ContainerState::Running {
                // A container that did not stop in time is killed by its stop call; try
                // once more without grace before removing it.
                let _ = runtime.stop_container(&c.id, Duration::ZERO).await;
            }
            if let Err(err) = runtime.remove_container(&c.id).await {
                warn!(container = %c.metadata.name, error = %err, "removing container failed");
            }
        }
        for s in &observed.sandboxes {
            if let Err(err) = runtime.remove_pod_sandbox(&s.id).await {
                warn!(sandbox = %s.id, error = %err, "removing sandbox failed");
            }
        }
        self.teardown_volumes(pod).await;
        let pod_dir = self.pod_dir();
        if let Err(err) = remove_unmounted_dir(&pod_dir).await {
            warn!(path = %pod_dir.display(), error = %err, "pod directory not removed");
        }
        if let Some(pod) = pod {
            let logs = Path::new(&self.ctx.config.spec.pod_logs_root).join(format!(
                "{}_{}_{}",
                pod.metadata.namespace.as_deref().unwrap_or_default(),
                pod.metadata.name.as_deref().unwrap_or_default(),
                self.uid
            ));
            if let Err(err) = remove_unmounted_dir(&logs).await {
                warn!(path = %logs.display(), error = %err, "pod log directory not removed");
            }
        }
        if let Some(cgroups) = &self.ctx.pod_cgroups {
            // After the processes and the volumes, as the reference's SyncTerminatedPod;
            // what is still in the cgroup is killed. Failures are logged; housekeeping
            // tries again.
            let _ = cgroups.destroy_pod(&self.uid).await;
        } else if let Some(root) = &self.ctx.config.cgroup_fs_root {
            let parents = [
                format!("pod{}", self.uid),
                format!("burstable/pod{}", self.uid),
                format!("besteffort/pod{}", self.uid),
            ];
            for parent in parents {
                remove_pod_cgroup(root, &self.ctx.config.spec.cgroup_root, &parent).await;
            }
        }
        self.ctx.shared.remove_pod(&self.uid);
        if let Some(pod) = pod {
            self.ctx.report_removed(pod);
        }
        info!(uid = %self.uid, "pod terminated and removed");
    }

    /// `<root-dir>/pods/<uid>`.
    pub(super) fn pod_dir(&self) -> PathBuf {
        self.ctx.config.root_dir.join("pods").join(&self.uid)
    }
}

/// Remove a directory tree unless something is mounted below it (removing through a mount
/// would delete the mounted data).
async fn remove_unmounted_dir(dir: &Path) -> std::io::Result<()> {
    if !tokio::fs::try_exists(dir).await.unwrap_or(false) {
        return Ok(());
    }
    let mountinfo = tokio::fs::read_to_string("/proc/self/mountinfo")
        .await
        .unwrap_or_default();
    // By path components: a mount under `<pods>/abcd` is not below `<pods>/abc`.
    let mounted = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|mount_point| Path::new(mount_point).starts_with(dir));
    if mounted {
        return Err(std::io::Error::other("a mount is still active below it"));
    }
    tokio::fs::remove_dir_all(dir).await
}

/// Remove the pod's cgroup directory in every hierarchy (`<root>/<controller>/<cgroup
/// root>/<parent>` for cgroups v1, and the unified one). The runtime removes the containers'
/// cgroups but leaves the pod's.
async fn remove_pod_cgroup(fs_root: &Path, cgroup_root: &str, parent: &str) {
    let relative = format!("{}/{}", cgroup_root.trim_matches('/'), parent);
    let mut hierarchies = vec![fs_root.to_path_buf()];
    if let Ok(mut entries) = tokio::fs::read_dir(fs_root).await {
        while let Ok(Some(entry)) = entries.next_entry().await {
            if entry.file_type().await.is_ok_and(|t| t.is_dir()) {
                hierarchies.push(entry.path());
            }
        }
    }
    for hierarchy in hierarchies {
        let dir = hierarchy.join(&relative);
        if tokio::fs::try_exists(&dir).await.unwrap_or(false) {
            remove_cgroup_tree(&dir).await;
        }
    }
}

/// cgroup directories are removed bottom-up with rmdir; their files cannot be deleted.
async fn remove_cgroup_tree(dir: &Path) {
    let mut stack = vec![dir.to_path_buf()];
    let mut order = Vec::new();
    while let Some(d) = stack.pop() {
        if let Ok(mut entries) = tokio::fs::read_dir(&d).await {
            while let Ok(Some(entry)) = entries.next_entry().await {
                if entry.file_type().await.is_ok_and(|t| t.is_dir()) {
                    stack.push(entry.path());
                }
            }
        }
        order.push(d);
    }
    for d in order.into_iter().rev() {
        if let Err(err) = tokio::fs::remove_dir(&d).await {
            warn!(path = %d.display(), error = %err, "pod cgroup not removed");
        }
    }
}
