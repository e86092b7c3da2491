//! Syncing one pod: observe what the runtime holds, plan, act, and compute the status.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Container, Pod};
use tokio::time::Instant;
use tracing::{Instrument, debug, info_span, warn};

use super::planner::{self, ContainerStart, KillReason, PlanInput};
use super::spec;
use super::state::PodRuntimeState;
use super::status::{self, ContainerWaiting, StatusInput};
use super::worker::PodWorker;
use crate::error::RuntimeError;
use crate::labels;
use crate::network::NetworkContext;
use crate::probes::worker::RunningContainer;
use crate::probes::{ProbeResult, ProbeTarget, ProbeType, hook_spec, run_hook};
use crate::reporter::EventType;
use crate::runtime::{ContainerState, ListFilter, NamespaceMode, SandboxState};
use crate::volume::MountedVolume;

/// How soon a sync that failed on the runtime is tried again.
const RETRY: Duration = Duration::from_secs(2);

/// Reasons a container waits, as the reference names them.
pub(super) mod reason {
    pub const CRASH_LOOP: &str = "CrashLoopBackOff";
    pub const CREATE_CONFIG: &str = "CreateContainerConfigError";
    pub const CREATE: &str = "CreateContainerError";
    pub const RUN: &str = "RunContainerError";
    pub const CONTAINER_CREATING: &str = "ContainerCreating";
    pub const POST_START_HOOK: &str = "PostStartHookError";
}

/// The spec of container `name` and its path in the pod (`spec.containers[0]`).
pub(super) fn find_container<'a>(pod: &'a Pod, name: &str) -> Option<(&'a Container, String)> {
    let spec = pod.spec.as_ref()?;
    if let Some((i, c)) = spec
        .containers
        .iter()
        .enumerate()
        .find(|(_, c)| c.name == name)
    {
        return Some((c, format!("spec.containers[{i}]")));
    }
    spec.init_containers
        .iter()
        .flatten()
        .enumerate()
        .find(|(_, c)| c.name == name)
        .map(|(i, c)| (c, format!("spec.initContainers[{i}]")))
}

fn restart_policy_never(pod: &Pod) -> bool {
    pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()) == Some("Never")
}

/// The grace period a probe asks for when its failure kills the container.
fn probe_grace(pod: &Pod, name: &str, probe: ProbeType) -> Option<Duration> {
    let (c, _) = find_container(pod, name)?;
    let p = match probe {
        ProbeType::Liveness => c.liveness_probe.as_ref(),
        ProbeType::Startup => c.startup_probe.as_ref(),
        ProbeType::Readiness => None,
    }?;
    let seconds = p.termination_grace_period_seconds.filter(|s| *s > 0)?;
    Some(Duration::from_secs(u64::try_from(seconds).ok()?))
}

pub(super) fn pod_containers(pod: &Pod) -> impl Iterator<Item = &Container> {
    let spec = pod.spec.as_ref();
    spec.and_then(|s| s.init_containers.as_deref())
        .unwrap_or(&[])
        .iter()
        .chain(spec.map(|s| s.containers.as_slice()).unwrap_or(&[]))
}

pub(super) fn pod_name(pod: &Pod) -> String {
    format!(
        "{}_{}({})",
        pod.metadata.name.as_deref().unwrap_or_default(),
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.uid.as_deref().unwrap_or_default()
    )
}

fn backoff_key(container: &Container) -> String {
    format!("{}_{}", container.name, labels::container_hash(container))
}

fn waiting(reason: &str, message: impl Into<String>) -> ContainerWaiting {
    ContainerWaiting {
        reason: reason.to_string(),
        message: message.into(),
    }
}

impl PodWorker {
    /// What the runtime holds for this pod, with full container statuses.
    pub(super) async fn observe(&mut self) -> Result<PodRuntimeState, RuntimeError> {
        let runtime = &self.ctx.runtime;
        let filter = ListFilter::pod(self.uid.clone());
        let mut sandboxes = runtime.list_pod_sandboxes(&filter).await?;
        // CRI's list carries no namespace modes, IPs or netns: take them from the status of
        // each ready sandbox, once (they do not change while it lives).
        for sandbox in sandboxes
            .iter_mut()
            .filter(|s| s.state == SandboxState::Ready)
        {
            if !self.sandbox_details.contains_key(&sandbox.id) {
                match runtime.pod_sandbox_status(&sandbox.id).await {
                    Ok(status) => {
                        self.sandbox_details.insert(sandbox.id.clone(), status);
                    }
                    Err(e) if e.is_not_found() => continue,
                    Err(e) => return Err(e),
                }
            }
            if let Some(details) = self.sandbox_details.get(&sandbox.id) {
                sandbox.network = details.network;
                sandbox.ips = details.ips.clone();
                sandbox.netns_path = details.netns_path.clone();
            }
        }
        let ready: BTreeSet<&str> = sandboxes
            .iter()
            .filter(|s| s.state == SandboxState::Ready)
            .map(|s| s.id.as_str())
            .collect();
        self.sandbox_details
            .retain(|id, _| ready.contains(id.as_str()));
        let listed = runtime.list_containers(&filter).await?;
        let mut containers = Vec::with_capacity(listed.len());
        for c in &listed {
            if let Some(done) = self.exited.get(&c.id) {
                containers.push(done.clone());
                continue;
            }
            match runtime.container_status(&c.id).await {
                Ok(mut status) => {
                    if status.state == ContainerState::Exited {
                        // Once, as it exits: its termination message (file or log).
                        super::termination_message::enrich(&mut status).await;
                        self.exited.insert(status.id.clone(), status.clone());
                    }
                    containers.push(status);
                }
                // Removed between the list and the status call.
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        let listed_ids: BTreeSet<&str> = listed.iter().map(|c| c.id.as_str()).collect();
        self.exited.retain(|id, _| listed_ids.contains(id.as_str()));
        self.exit_seen
            .retain(|id, _| listed_ids.contains(id.as_str()));
        let mut state = PodRuntimeState {
            uid: self.uid.clone(),
            sandboxes,
            containers,
        };
        state.sort();
        Ok(state)
    }

    /// Bring the pod closer to its spec. Returns when the worker should look again at the
    /// latest, if sooner than the periodic resync (a backoff running out, a retry).
    pub(super) async fn sync(&mut self, pod: &Pod) -> Option<Duration> {
        let now = Instant::now();
        let observed = match self.observe().await {
            Ok(o) => o,
            Err(err) => {
                warn!(error = %err, "cannot observe pod in the runtime; will retry");
                return Some(RETRY);
            }
        };
        for c in &observed.containers {
            if c.state == ContainerState::Exited {
                self.exit_seen.entry(c.id.clone()).or_insert(now);
            }
        }
        let mut next_wake: Option<Duration> = None;
        let mut wake_in = |d: Duration| {
            next_wake = Some(next_wake.map_or(d, |w: Duration| w.min(d)));
        };
        match self.active_deadline(pod) {
            super::active_deadline::Deadline::Exceeded => {
                self.enforce_active_deadline(pod, &observed).await;
                return None;
            }
            super::active_deadline::Deadline::In(left) => wake_in(left),
            super::active_deadline::Deadline::None => {}
        }
        if !self.admitted {
            self.admitted = true;
            self.admit(pod, &observed);
        }
        if self.evicted.is_some() {
            self.enforce_eviction(pod, &observed).await;
            return None;
        }

        // The pod's cgroup, sized from its resources and overhead, exists before anything of
        // the pod runs (the sandbox's cgroup parent), as the reference's SyncPod ensures.
        // A finished pod (Succeeded, Failed) no longer counts: its cgroup stays until the
        // pod goes, and is not made again.
        let finished = matches!(
            self.last_status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        );
        if let Some(cgroups) = &self.ctx.pod_cgroups
            && !finished
            && let Err(err) = cgroups.ensure_pod(pod)
        {
            warn!(error = %err, "pod cgroup not created; will retry");
            self.ctx.event(
                pod,
                None,
                EventType::Warning,
                "FailedCreatePodContainer",
                format!("unable to ensure pod container exists: {err}"),
            );
            self.update_status(pod, &observed, false);
            return Some(RETRY);
        }

        let volumes = match self.setup_volumes(pod).await {
            Ok(v) => v,
            Err(err) => {
                self.ctx.event(
                    pod,
                    None,
                    EventType::Warning,
                    "FailedMount",
                    err.to_string(),
                );
                for c in pod_containers(pod) {
                    if observed.latest_container(&c.name).is_none() {
                        self.waiting.insert(
                            c.name.clone(),
                            waiting(reason::CONTAINER_CREATING, err.to_string()),
                        );
                    }
                }
                self.update_status(pod, &observed, false);
                return Some(RETRY);
            }
        };
        if super::eviction::has_size_limits(&volumes) {
            if let Some(message) = super::eviction::storage_limit_exceeded(pod, &volumes).await {
                self.evicted = Some(super::eviction::Eviction::local_storage(message));
                self.enforce_eviction(pod, &observed).await;
                return None;
            }
            wake_in(super::eviction::MONITORING_INTERVAL);
        }

        // Running containers whose liveness or startup probe failed: the planner kills them.
        let results = self.probes.results().clone();
        let failed = |probe: ProbeType| -> BTreeSet<String> {
            observed
                .running_containers()
                .filter(|c| results.get(&c.id, probe) == Some(ProbeResult::Failure))
                .map(|c| c.id.clone())
                .collect()
        };
        let liveness_failed = failed(ProbeType::Liveness);
        let startup_failed = failed(ProbeType::Startup);

        // Which restarts CrashLoopBackOff holds back now: after a crash, and (as with the
        // reference, which backs off from the newest exited instance) after a probe kill.
        let mut in_backoff = BTreeSet::new();
        for c in pod_containers(pod) {
            let Some(latest) = observed.latest_container(&c.name) else {
                continue;
            };
            let crashed = latest.state == ContainerState::Exited
                && planner::should_restart(pod, Some(latest));
            let probe_restart = latest.state == ContainerState::Running
                && (liveness_failed.contains(&latest.id) || startup_failed.contains(&latest.id))
                && !restart_policy_never(pod);
            if !crashed && !probe_restart {
                continue;
            }
            let Some(exited) = observed
                .containers_named(&c.name)
                .find(|x| x.state == ContainerState::Exited)
            else {
                continue;
            };
            let exited_at = self.exit_seen.get(&exited.id).copied().unwrap_or(now);
            if let Some(left) = self
                .crash_backoff
                .remaining(&backoff_key(c), exited_at, now)
            {
                let delay = self
                    .crash_backoff
                    .delay(&backoff_key(c))
                    .unwrap_or_default();
                in_backoff.insert(c.name.clone());
                self.waiting.insert(
                    c.name.clone(),
                    waiting(
                        reason::CRASH_LOOP,
                        format!(
                            "back-off {} restarting failed container={} pod={}",
                            format_delay(delay),
                            c.name,
                            pod_name(pod)
                        ),
                    ),
                );
                wake_in(left);
            }
        }

        let actions = planner::plan(PlanInput {
            pod,
            observed: &observed,
            in_backoff: &in_backoff,
            liveness_failed: &liveness_failed,
            startup_failed: &startup_failed,
        });
        debug!(?actions, "planned");
        for name in &actions.backing_off {
            self.ctx.event(
                pod,
                Some(name),
                EventType::Warning,
                "BackOff",
                format!(
                    "Back-off restarting failed container {name} in pod {}",
                    pod_name(pod)
                ),
            );
        }
        let acted = actions.kill_pod
            || actions.create_sandbox
            || !actions.kill.is_empty()
            || !actions.start.is_empty();

        if actions.kill_pod {
            self.kill_pod(Some(pod), &observed, grace_period(Some(pod), &observed))
                .await;
        }
        let mut sandbox_id = actions.sandbox_id.clone();
        if actions.create_sandbox {
            match self.create_sandbox(pod, actions.sandbox_attempt).await {
                Ok(id) => sandbox_id = Some(id),
                Err(err) => {
                    self.ctx.event(
                        pod,
                        None,
                        EventType::Warning,
                        "FailedCreatePodSandBox",
                        format!("Failed to create pod sandbox: {err}"),
                    );
                    let observed = self.observe().await.unwrap_or(observed);
                    self.update_status(pod, &observed, false);
                    return Some(RETRY);
                }
            }
        }
        let grace = grace_period(Some(pod), &observed);
        let pod_ip = self.pod_ip(pod);
        for kill in &actions.kill {
            let grace = match kill.reason {
                KillReason::LivenessFailed => probe_grace(pod, &kill.name, ProbeType::Liveness),
                KillReason::StartupFailed => probe_grace(pod, &kill.name, ProbeType::Startup),
                _ => None,
            }
            .unwrap_or(grace);
            super::terminate::kill_container(
                &self.ctx,
                Some(pod),
                &kill.id,
                &kill.name,
                grace,
                Some(kill.reason.message(&kill.name)),
                pod_ip.as_deref(),
            )
            .await;
        }
        if let Some(sandbox_id) = &sandbox_id {
            match spec::sandbox_config(pod, actions.sandbox_attempt, &self.ctx.config.spec) {
                Ok(mut sandbox_config) => {
                    if !self.ctx.config.cgroups.cgroups_per_qos {
                        sandbox_config.cgroup_parent = String::new();
                    }
                    for start in &actions.start {
                        let span = info_span!("container", container = %start.name);
                        self.start_container(
                            pod,
                            sandbox_id,
                            &sandbox_config,
                            start,
                            &observed,
                            &volumes,
                        )
                        .instrument(span)
                        .await;
                        let failed = self.waiting.get(&start.name).map(|w| w.reason.as_str());
                        let metrics = &self.ctx.shared.metrics;
                        metrics.container_started(start.init, failed);
                    }
                }
                Err(err) => {
                    warn!(error = %err, "no sandbox config; containers not started");
                    wake_in(RETRY);
                }
            }
            if sandbox_id != self.pod_ips.as_ref().map_or("", |(id, _)| id.as_str()) {
                self.refresh_ips(pod, sandbox_id).await;
            }
        }
        for (image, _) in self.pull_errors.iter() {
            if let Some(left) = self.pull_backoff.remaining_since_last(image, now) {
                wake_in(left);
            }
        }
        // CrashLoopBackOff stays only while the backoff lasts; other reasons go when the
        // container starts.
        self.waiting
            .retain(|name, w| w.reason != reason::CRASH_LOOP || in_backoff.contains(name));

        let observed = if acted {
            self.observe().await.unwrap_or(observed)
        } else {
            observed
        };
        self.update_status(pod, &observed, false);
        // After the status took what it needs of the dead containers.
        self.collect_garbage(&observed).await;
        if let Some(cgroups) = &self.ctx.pod_cgroups
            && matches!(
                self.last_status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Succeeded" | "Failed")
            )
        {
            // As the reference's active pods: a finished pod leaves the Burstable tier.
            cgroups.deactivate(&self.uid);
        }
        self.sync_probes(pod, &observed);
        next_wake
    }

    /// The pod's primary IP, where probes and hooks connect by default. A host-network pod
    /// with no node IP known is reached on the loopback.
    pub(super) fn pod_ip(&self, pod: &Pod) -> Option<String> {
        let host_network = pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false);
        self.pod_ips
            .as_ref()
            .and_then(|(_, ips)| ips.first().cloned())
            .or_else(|| host_network.then(|| self.ctx.config.node_ips.first().cloned())?)
            .or_else(|| host_network.then(|| "127.0.0.1".to_string()))
    }

    /// Start probe workers for the containers that run now, stop those of containers that
    /// do not. Regular containers and sidecars are probed; other init containers are not.
    fn sync_probes(&mut self, pod: &Pod, observed: &PodRuntimeState) {
        let Some(spec) = pod.spec.as_ref() else {
            return;
        };
        let sidecars = spec
            .init_containers
            .iter()
            .flatten()
            .enumerate()
            .filter(|(_, c)| c.restart_policy.as_deref() == Some("Always"))
            .map(|(i, c)| (c, format!("spec.initContainers[{i}]")));
        let regular = spec
            .containers
            .iter()
            .enumerate()
            .map(|(i, c)| (c, format!("spec.containers[{i}]")));
        let running: Vec<RunningContainer<'_>> = sidecars
            .chain(regular)
            .filter_map(|(c, field)| {
                let status = observed
                    .latest_container(&c.name)
                    .filter(|s| s.state == ContainerState::Running)?;
                Some(RunningContainer {
                    spec: c,
                    field,
                    id: &status.id,
                    started_at: status.started_at,
                })
            })
            .collect();
        let deps = self.ctx.probe_deps();
        let pod_ip = self.pod_ip(pod);
        self.probes.sync(&deps, pod, &running, pod_ip.as_deref());
    }

    async fn start_container(
        &mut self,
        pod: &Pod,
        sandbox_id: &str,
        sandbox_config: &crate::runtime::PodSandboxConfig,
        start: &ContainerStart,
        observed: &PodRuntimeState,
        volumes: &BTreeMap<String, MountedVolume>,
    ) {
        let spec = pod.spec.as_ref();
        let container = if start.init {
            spec.and_then(|s| s.init_containers.as_ref())
                .and_then(|c| c.get(start.index))
        } else {
            spec.and_then(|s| s.containers.get(start.index))
        };
        let Some(container) = container else {
            return;
        };
        let name = container.name.as_str();
        // A restart after an exit counts towards CrashLoopBackOff, from when the newest
        // exited instance exited (after a probe kill, the one before the killed one).
        if let Some(previous) = observed
            .containers_named(name)
            .find(|c| c.state == ContainerState::Exited)
        {
            let exited_at = self
                .exit_seen
                .get(&previous.id)
                .copied()
                .unwrap_or_else(Instant::now);
            self.crash_backoff.next(&backoff_key(container), exited_at);
        }
        if let Err(w) = self.ensure_image(pod, container).await {
            self.waiting.insert(name.to_string(), w);
            return;
        }
        let env = match self.container_env(pod, container).await {
            Ok(env) => env,
            Err(message) => {
                self.fail_start(pod, name, reason::CREATE_CONFIG, message);
                return;
            }
        };
        // After the environment: `subPathExpr` expands from it.
        let mounts = match self.container_mounts(pod, container, volumes, &env) {
            Ok(m) => m,
            Err(message) => {
                self.fail_start(pod, name, reason::CREATE_CONFIG, message);
                return;
            }
        };
        let mut config = match spec::container_config(
            pod,
            container,
            start.restart_count,
            mounts,
            env,
            &self.ctx.config.spec,
        ) {
            Ok(c) => c,
            Err(message) => {
                self.fail_start(pod, name, reason::CREATE_CONFIG, message);
                return;
            }
        };
        match super::volumes::container_devices(pod, container, volumes) {
            Ok(devices) => config.devices = devices,
            Err(message) => {
                self.fail_start(pod, name, reason::CREATE_CONFIG, message);
                return;
            }
        }
        // The image's user (runAsNonRoot) and the files the kubelet mounts (/etc/hosts).
        if let Err(message) = self
            .complete_container_config(pod, container, &mut config)
            .await
        {
            self.fail_start(pod, name, reason::CREATE_CONFIG, message);
            return;
        }
        let log_dir = std::path::Path::new(&sandbox_config.log_directory).join(name);
        if let Err(err) = tokio::fs::create_dir_all(&log_dir).await {
            warn!(path = %log_dir.display(), error = %err, "cannot create container log directory");
        }
        let id = match self
            .ctx
            .runtime
            .create_container(sandbox_id, &config, sandbox_config)
            .await
        {
            Ok(id) => id,
            Err(err) => {
                self.fail_start(pod, name, reason::CREATE, err.runtime_message().to_string());
                return;
            }
        };
        self.ctx.event(
            pod,
            Some(name),
            EventType::Normal,
            "Created",
            format!("Created container {name}"),
        );
        if let Err(err) = self.ctx.runtime.start_container(&id).await {
            self.fail_start(pod, name, reason::RUN, err.runtime_message().to_string());
            return;
        }
        self.ctx.event(
            pod,
            Some(name),
            EventType::Normal,
            "Started",
            format!("Started container {name}"),
        );
        self.waiting.remove(name);
        if let Some(hook) = container
            .lifecycle
            .as_ref()
            .and_then(|l| l.post_start.as_ref())
        {
            self.post_start(pod, container, &id, hook, start.init).await;
        }
    }

    /// Run the postStart hook of a container that just started; a failing hook kills the
    /// container (the restart policy then decides, as after a crash).
    async fn post_start(
        &mut self,
        pod: &Pod,
        container: &Container,
        id: &str,
        hook: &k8s_openapi::api::core::v1::LifecycleHandler,
        init: bool,
    ) {
        let name = container.name.as_str();
        let kind = if init { "initContainers" } else { "containers" };
        let field = find_container(pod, name).map_or_else(
            || format!("spec.{kind}{{{name}}}.lifecycle.postStart"),
            |(_, path)| format!("{path}.lifecycle.postStart"),
        );
        let pod_ip = self.pod_ip(pod);
        let outcome = match hook_spec(hook, &field) {
            Ok(hook) => {
                let target = ProbeTarget {
                    container_id: id,
                    container,
                    pod_ip: pod_ip.as_deref(),
                };
                run_hook(self.ctx.runtime.as_ref(), &hook, target, &pod_name(pod)).await
            }
            Err(err) => Err(err.to_string()),
        };
        let Err(message) = outcome else {
            return;
        };
        warn!(container = %name, %message, "postStart hook failed");
        self.ctx.event(
            pod,
            Some(name),
            EventType::Warning,
            "FailedPostStartHook",
            message.clone(),
        );
        let observed = PodRuntimeState::default();
        let grace = grace_period(Some(pod), &observed);
        super::terminate::kill_container(
            &self.ctx,
            Some(pod),
            id,
            name,
            grace,
            Some("FailedPostStartHook".to_string()),
            pod_ip.as_deref(),
        )
        .await;
        self.waiting
            .insert(name.to_string(), waiting(reason::POST_START_HOOK, message));
    }

    /// The container's environment, with the objects it names fetched first; invalid
    /// `envFrom` keys are skipped with a warning event on the pod, as the reference does.
    async fn container_env(
        &self,
        pod: &Pod,
        container: &Container,
    ) -> Result<Vec<crate::runtime::KeyValue>, String> {
        let objects =
            super::env::EnvObjects::fetch(pod, container, self.ctx.pod_objects.as_deref()).await;
        let env = super::env::container_env(pod, container, &objects, &self.ctx.config.spec)?;
        for warning in env.warnings {
            self.ctx.event(
                pod,
                None,
                EventType::Warning,
                "InvalidEnvironmentVariableNames",
                warning,
            );
        }
        Ok(env.vars)
    }

    fn fail_start(&mut self, pod: &Pod, name: &str, why: &str, message: String) {
        warn!(container = %name, reason = why, %message, "container not started");
        self.ctx.event(
            pod,
            Some(name),
            EventType::Warning,
            "Failed",
            format!("Error: {message}"),
        );
        self.waiting.insert(name.to_string(), waiting(why, message));
    }

    async fn create_sandbox(&mut self, pod: &Pod, attempt: u32) -> Result<String, String> {
        let (mut config, warnings) =
            spec::sandbox_config_with_warnings(pod, attempt, &self.ctx.config.spec)?;
        if !self.ctx.config.cgroups.cgroups_per_qos {
            // No pod cgroups: the runtime's default parent, as the reference.
            config.cgroup_parent = String::new();
        }
        for warning in warnings {
            self.ctx.event(
                pod,
                None,
                EventType::Warning,
                warning.reason,
                warning.message,
            );
        }
        config.runtime_handler = self.runtime_handler(pod).await?;
        if attempt > 0 {
            self.ctx.event(
                pod,
                None,
                EventType::Normal,
                "SandboxChanged",
                "Pod sandbox changed, it will be killed and re-created.".to_string(),
            );
        }
        tokio::fs::create_dir_all(&config.log_directory)
            .await
            .map_err(|e| format!("creating log directory {}: {e}", config.log_directory))?;
        let id = self
            .ctx
            .runtime
            .run_pod_sandbox(&config)
            .await
            .map_err(|e| e.rpc_text().to_string())?;
        self.pod_ips = None;
        self.refresh_ips(pod, &id).await;
        Ok(id)
    }

    /// Ask the network plugin for the pod IPs of a sandbox (setting up its network when the
    /// plugin does that).
    async fn refresh_ips(&mut self, pod: &Pod, sandbox_id: &str) {
        let status = match self.ctx.runtime.pod_sandbox_status(sandbox_id).await {
            Ok(s) => s,
            Err(err) => {
                warn!(sandbox = %sandbox_id, error = %err, "sandbox status failed");
                return;
            }
        };
        if status.network == NamespaceMode::Node {
            self.pod_ips = Some((sandbox_id.to_string(), self.ctx.config.node_ips.clone()));
            return;
        }
        let ctx = network_context(pod, &status);
        match self.ctx.network.setup(&ctx).await {
            Ok(net) => self.pod_ips = Some((sandbox_id.to_string(), net.ips)),
            Err(err) => {
                warn!(sandbox = %sandbox_id, error = %err, "pod network setup failed");
                self.ctx.event(
                    pod,
                    None,
                    EventType::Warning,
                    "FailedCreatePodSandBox",
                    format!("Failed to set up the pod network: {err}"),
                );
            }
        }
    }

    /// Compute the pod status and report it if it changed.
    pub(super) fn update_status(
        &mut self,
        pod: &Pod,
        observed: &PodRuntimeState,
        terminating: bool,
    ) {
        // Probe results of the newest instance of each running container.
        let results = self.probes.results();
        let mut readiness = BTreeMap::new();
        let mut started = BTreeMap::new();
        for c in observed.running_containers() {
            let name = &c.metadata.name;
            if observed.latest_container(name).map(|l| &l.id) != Some(&c.id) {
                continue;
            }
            if let Some(r) = results.get(&c.id, ProbeType::Readiness) {
                readiness.insert(name.clone(), r == ProbeResult::Success);
            }
            if let Some(r) = results.get(&c.id, ProbeType::Startup) {
                started.insert(name.clone(), r == ProbeResult::Success);
            }
        }
        let pod_ips: &[String] = self
            .pod_ips
            .as_ref()
            .filter(|(id, _)| observed.ready_sandbox().is_some_and(|s| &s.id == id))
            .map_or(&[], |(_, ips)| ips.as_slice());
        let status = status::compute_pod_status(&StatusInput {
            pod,
            observed,
            waiting: &self.waiting,
            readiness: &readiness,
            started: &started,
            previous: self.last_status.as_ref(),
            pod_ips,
            host_ips: &self.ctx.config.node_ips,
            terminating,
            runtime_name: &self.ctx.runtime_name,
            evicted: if self.deadline_exceeded {
                Some((
                    super::active_deadline::REASON,
                    super::active_deadline::MESSAGE,
                ))
            } else {
                self.evicted
                    .as_ref()
                    .map(|e| (e.reason.as_str(), e.message.as_str()))
            },
            disruption: self
                .evicted
                .as_ref()
                .filter(|e| e.disruption && !self.deadline_exceeded)
                .map(|e| e.message.as_str()),
            now: Timestamp::now(),
        });
        if self.last_status.as_ref() != Some(&status) {
            self.ctx.shared.set_pod(pod, Some(status.clone()));
            self.ctx.report_status(pod, &status);
            self.last_status = Some(status);
        } else {
            self.ctx.shared.set_pod(pod, None);
        }
    }
}

/// The network context of a sandbox.
pub(super) fn network_context(
    pod: &Pod,
    sandbox: &crate::runtime::PodSandboxStatus,
) -> NetworkContext {
    NetworkContext {
        namespace: pod.metadata.namespace.clone().unwrap_or_default(),
        name: pod.metadata.name.clone().unwrap_or_default(),
        uid: pod.metadata.uid.clone().unwrap_or_default(),
        sandbox_id: sandbox.id.clone(),
        netns_path: sandbox.netns_path.clone(),
        network: sandbox.network,
        runtime_ips: sandbox.ips.clone(),
        port_mappings: spec::sandbox_port_mappings(pod),
        annotations: pod.metadata.annotations.clone().unwrap_or_default(),
    }
}

/// The grace period for stopping a pod's containers: the deletion's, capped by the spec's, or
/// what the containers recorded when the pod spec is gone; at least 2 s as the reference.
pub(super) fn grace_period(pod: Option<&Pod>, observed: &PodRuntimeState) -> Duration {
    const MINIMUM: i64 = 2;
    let spec_grace = pod
        .and_then(|p| p.spec.as_ref())
        .and_then(|s| s.termination_grace_period_seconds);
    let deletion_grace = pod.and_then(|p| p.metadata.deletion_grace_period_seconds);
    let recorded = observed.containers.iter().find_map(|c| {
        c.annotations
            .get(labels::POD_TERMINATION_GRACE_PERIOD)
            .and_then(|v| v.parse::<i64>().ok())
    });
    let seconds = match (deletion_grace, spec_grace) {
        (Some(d), Some(s)) => d.min(s),
        (Some(d), None) => d,
        (None, Some(s)) => s,
        (None, None) => recorded.unwrap_or(30),
    };
    Duration::from_secs(u64::try_from(seconds.max(MINIMUM)).unwrap_or(2))
}

/// `10s`, `1m20s`, `5m0s`, as Go prints durations in the reference's messages.
fn format_delay(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 60 {
        format!("{}m{}s", secs / 60, secs % 60)
    } else {
        format!("{secs}s")
    }
}
