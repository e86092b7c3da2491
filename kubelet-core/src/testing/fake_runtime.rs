//! A stateful in-memory [`Runtime`] that answers as containerd does through the CRI,
//! including its refusals, so that a reconciler tested against it is not flattered.
//!
//! Container processes are simulated lazily: whether a container has exited is computed from
//! its start time and its behaviour against the clock on every call, so scenarios are
//! deterministic under tokio's paused time and need no background tasks.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::behavior::{
    ContainerBehavior, ContainerMatch, ExecHandler, ExecReply, MatchTarget, OnTerm, Run,
};
use crate::error::RuntimeError;
use crate::labels;
use crate::runtime::{
    AuthConfig, ContainerConfig, ContainerMetadata, ContainerState, ContainerStats,
    ContainerStatus, ExecResult, ImageFsInfo, ImageInfo, ListFilter, NamespaceMode,
    PodSandboxConfig, PodSandboxStatus, Runtime, RuntimeCondition, RuntimeResult, RuntimeStatus,
    RuntimeVersion, SandboxState,
};

/// Exit code of a SIGKILLed process.
const SIGKILL_EXIT: i32 = 137;
/// containerd's exit code and reason for a container whose start failed.
const START_ERROR_EXIT: i32 = 128;
const START_ERROR_REASON: &str = "StartError";

/// A method of the [`Runtime`] trait, for fault injection and call accounting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Method {
    /// `version`
    Version,
    /// `status`
    Status,
    /// `run_pod_sandbox`
    RunPodSandbox,
    /// `stop_pod_sandbox`
    StopPodSandbox,
    /// `remove_pod_sandbox`
    RemovePodSandbox,
    /// `pod_sandbox_status`
    PodSandboxStatus,
    /// `list_pod_sandboxes`
    ListPodSandboxes,
    /// `create_container`
    CreateContainer,
    /// `start_container`
    StartContainer,
    /// `stop_container`
    StopContainer,
    /// `remove_container`
    RemoveContainer,
    /// `container_status`
    ContainerStatus,
    /// `list_containers`
    ListContainers,
    /// `image_status`
    ImageStatus,
    /// `pull_image`
    PullImage,
    /// `list_images`
    ListImages,
    /// `remove_image`
    RemoveImage,
    /// `exec_sync`
    ExecSync,
    /// `container_stats`
    ContainerStats,
    /// `list_container_stats`
    ListContainerStats,
    /// `list_pod_sandbox_stats`
    ListPodSandboxStats,
    /// `image_fs_info`
    ImageFsInfo,
}

/// One call made to the fake, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// The method.
    pub method: Method,
    /// What the call was about: the sandbox or container ID, the image, the pod UID for
    /// `run_pod_sandbox`, `<sandbox id>/<container name>` for `create_container`, empty for
    /// list calls.
    pub target: String,
}

struct Sandbox {
    id: String,
    /// Creation order (timestamps tie under paused time).
    seq: u64,
    config: PodSandboxConfig,
    state: SandboxState,
    created: Instant,
    ip: Option<String>,
    netns: Option<String>,
}

#[derive(Clone)]
struct PlannedExit {
    at: Instant,
    code: i32,
    reason: Option<String>,
}

struct Container {
    id: String,
    /// Creation order (timestamps tie under paused time).
    seq: u64,
    sandbox_id: String,
    config: ContainerConfig,
    image: String,
    image_ref: String,
    log_path: String,
    behavior: ContainerBehavior,
    state: ContainerState,
    starting: bool,
    created: Instant,
    started: Option<Instant>,
    finished: Option<Instant>,
    exit_code: i32,
    reason: String,
    message: String,
    /// When and how the process ends, if anything decided it yet.
    exit: Option<PlannedExit>,
}

impl Container {
    /// Apply a planned exit whose time has come.
    fn settle(&mut self, now: Instant) {
        if self.state != ContainerState::Running {
            return;
        }
        if let Some(exit) = self.exit.clone().filter(|e| e.at <= now) {
            self.state = ContainerState::Exited;
            self.finished = Some(exit.at);
            self.exit_code = exit.code;
            self.reason = exit.reason.unwrap_or_default();
        }
    }

    /// Plan an exit unless an earlier one is planned already.
    fn plan_exit(&mut self, exit: PlannedExit) {
        match &self.exit {
            Some(current) if current.at <= exit.at => {}
            _ => self.exit = Some(exit),
        }
    }

    /// SIGKILL now.
    fn kill(&mut self, now: Instant) {
        if self.state == ContainerState::Running {
            self.plan_exit(PlannedExit {
                at: now,
                code: SIGKILL_EXIT,
                reason: None,
            });
            self.settle(now);
        }
    }
}

struct Image {
    id: String,
    tag: String,
    digest: String,
    size: u64,
    pinned: bool,
    /// The image config's user: numeric, or a name.
    uid: Option<i64>,
    username: String,
}

impl Image {
    fn new(name: &str) -> Self {
        let digest = hex_digest(&["image-manifest", name]);
        let repo = name
            .rsplit_once(':')
            .filter(|(_, tag)| !tag.contains('/'))
            .map_or(name, |(repo, _)| repo);
        Self {
            id: format!("sha256:{}", hex_digest(&["image-config", name])),
            tag: name.to_string(),
            digest: format!("{repo}@sha256:{digest}"),
            size: 1_048_576 + u64::from(digest.as_bytes()[0]) * 4096,
            pinned: false,
            uid: None,
            username: String::new(),
        }
    }

    fn info(&self) -> ImageInfo {
        ImageInfo {
            id: self.id.clone(),
            repo_tags: vec![self.tag.clone()],
            repo_digests: vec![self.digest.clone()],
            size: self.size,
            pinned: self.pinned,
            uid: self.uid,
            username: self.username.clone(),
        }
    }
}

struct Rule {
    matcher: ContainerMatch,
    behavior: ContainerBehavior,
    remaining: Option<usize>,
}

struct State {
    next_id: u64,
    next_ip: u32,
    sandboxes: BTreeMap<String, Sandbox>,
    containers: BTreeMap<String, Container>,
    /// Containers removed by `RemoveContainer`, as they were then (for tests that count a
    /// container's instances after the kubelet collected the dead ones).
    removed_containers: Vec<Container>,
    /// Local images by normalised name.
    images: BTreeMap<String, Image>,
    /// What `image_fs_info` answers; `None`: it refuses, as a runtime without the call.
    image_fs: Option<Vec<ImageFsInfo>>,
    /// Images a pull succeeds for (normalised), with the user and password it takes.
    registry: BTreeMap<String, Option<(String, String)>>,
    /// Every pull: the image and the user name it was made with.
    pulls: Vec<(String, Option<String>)>,
    pull_delay: Duration,
    rules: Vec<Rule>,
    default_behavior: ContainerBehavior,
    exec_handlers: Vec<(ContainerMatch, ExecHandler)>,
    refuse_remove_running: bool,
    runtime_status: RuntimeStatus,
    outage: bool,
    fail_next: HashMap<Method, usize>,
    counts: HashMap<Method, usize>,
    log: Vec<Call>,
}

/// The clock of the fake: a wall-clock base taken at creation, advanced by tokio's
/// (possibly paused) monotonic time.
#[derive(Clone, Copy)]
struct Clock {
    base_ns: i64,
    base: Instant,
}

impl Clock {
    fn new() -> Self {
        let base_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
        Self {
            base_ns,
            base: Instant::now(),
        }
    }

    fn ns(&self, at: Instant) -> i64 {
        let since = at.saturating_duration_since(self.base).as_nanos();
        self.base_ns
            .saturating_add(i64::try_from(since).unwrap_or(i64::MAX))
    }
}

/// A stateful in-memory container runtime with containerd's CRI semantics.
///
/// Share it as `Arc<FakeRuntime>`: hand one clone to the kubelet and keep one to steer and
/// inspect. See the module docs of [`crate::testing`] for what it models.
pub struct FakeRuntime {
    clock: Clock,
    state: Mutex<State>,
}

impl Default for FakeRuntime {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for FakeRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        f.debug_struct("FakeRuntime")
            .field("sandboxes", &state.sandboxes.len())
            .field("containers", &state.containers.len())
            .field("images", &state.images.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Whether `c` is container `name` of pod `pod` (its name or UID).
fn is_container_of(c: &ContainerStatus, pod: &str, name: &str) -> bool {
    c.metadata.name == name
        && (c.labels.get(labels::POD_NAME).is_some_and(|p| p == pod)
            || c.labels.get(labels::POD_UID).is_some_and(|p| p == pod))
}

impl FakeRuntime {
    /// An empty runtime: no images, no registry images, everything runs forever.
    pub fn new() -> Self {
        Self {
            clock: Clock::new(),
            state: Mutex::new(State {
                next_id: 0,
                next_ip: 2,
                sandboxes: BTreeMap::new(),
                containers: BTreeMap::new(),
                removed_containers: Vec::new(),
                images: BTreeMap::new(),
                image_fs: None,
                registry: BTreeMap::new(),
                pulls: Vec::new(),
                pull_delay: Duration::ZERO,
                rules: Vec::new(),
                default_behavior: ContainerBehavior::default(),
                exec_handlers: Vec::new(),
                refuse_remove_running: false,
                runtime_status: RuntimeStatus::ready(),
                outage: false,
                fail_next: HashMap::new(),
                counts: HashMap::new(),
                log: Vec::new(),
            }),
        }
    }

    /// A runtime with these images present locally.
    pub fn with_images<I, S>(images: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let runtime = Self::new();
        for image in images {
            runtime.add_local_image(image.as_ref());
        }
        runtime
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic in another test thread must not hide this test's state.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    // ----- steering -----

    /// Make an image present on the node.
    pub fn add_local_image(&self, image: &str) {
        let name = normalize_image(image);
        let mut state = self.lock();
        state.images.insert(name.clone(), Image::new(&name));
    }

    /// Set the user a local image runs as, as its config's `User` would: a UID, or a name
    /// (`uid` `None`). Images have no user (root) until set.
    pub fn set_image_user(&self, image: &str, uid: Option<i64>, username: &str) {
        let name = normalize_image(image);
        if let Some(i) = self.lock().images.get_mut(&name) {
            i.uid = uid;
            i.username = username.to_string();
        }
    }

    /// The config a sandbox was created with.
    pub fn sandbox_config(&self, sandbox_id: &str) -> Option<PodSandboxConfig> {
        self.lock()
            .sandboxes
            .get(sandbox_id)
            .map(|s| s.config.clone())
    }

    /// The config a container was created with.
    pub fn container_config(&self, container_id: &str) -> Option<ContainerConfig> {
        self.lock()
            .containers
            .get(container_id)
            .map(|c| c.config.clone())
    }

    /// Set a local image's size in bytes (as `list_images` reports it).
    pub fn set_image_size(&self, image: &str, size: u64) {
        if let Some(i) = self.lock().images.get_mut(&normalize_image(image)) {
            i.size = size;
        }
    }

    /// Mark a local image pinned (never garbage collected), as a runtime pins its sandbox
    /// image.
    pub fn set_image_pinned(&self, image: &str, pinned: bool) {
        if let Some(i) = self.lock().images.get_mut(&normalize_image(image)) {
            i.pinned = pinned;
        }
    }

    /// The ID of a local image (`sha256:...`), if present.
    pub fn image_id(&self, image: &str) -> Option<String> {
        self.lock()
            .images
            .get(&normalize_image(image))
            .map(|i| i.id.clone())
    }

    /// What `image_fs_info` answers from now on; `None` (the default) makes it refuse as a
    /// runtime without the call does.
    pub fn set_image_fs_info(&self, filesystems: Option<Vec<ImageFsInfo>>) {
        self.lock().image_fs = filesystems;
    }

    /// Make pulls of `image` succeed (pulls of anything else fail with
    /// [`RuntimeError::ImagePull`]).
    pub fn add_registry_image(&self, image: &str) {
        self.lock().registry.insert(normalize_image(image), None);
    }

    /// Make pulls of `image` succeed only with this user name and password (others fail
    /// as a registry's 401 does).
    pub fn add_private_registry_image(&self, image: &str, username: &str, password: &str) {
        self.lock().registry.insert(
            normalize_image(image),
            Some((username.to_string(), password.to_string())),
        );
    }

    /// Every pull so far: the image and the user name of its credentials, if any.
    pub fn pulls(&self) -> Vec<(String, Option<String>)> {
        self.lock().pulls.clone()
    }

    /// How long each pull takes.
    pub fn set_pull_delay(&self, delay: Duration) {
        self.lock().pull_delay = delay;
    }

    /// Containers matching `matcher` created from now on behave as `behavior`. Later rules
    /// win over earlier ones.
    pub fn set_behavior(&self, matcher: ContainerMatch, behavior: ContainerBehavior) {
        self.lock().rules.push(Rule {
            matcher,
            behavior,
            remaining: None,
        });
    }

    /// Like [`FakeRuntime::set_behavior`], for the next `times` matching containers only
    /// (e.g. crash twice, then run).
    pub fn set_behavior_times(
        &self,
        matcher: ContainerMatch,
        behavior: ContainerBehavior,
        times: usize,
    ) {
        self.lock().rules.push(Rule {
            matcher,
            behavior,
            remaining: Some(times),
        });
    }

    /// Behaviour of containers no rule matches.
    pub fn set_default_behavior(&self, behavior: ContainerBehavior) {
        self.lock().default_behavior = behavior;
    }

    /// Execs in containers matching `matcher` are answered by `handler` (later handlers
    /// win). Without a handler an exec exits 0 with no output.
    pub fn set_exec_handler<F>(&self, matcher: ContainerMatch, handler: F)
    where
        F: Fn(&[String]) -> ExecReply + Send + Sync + 'static,
    {
        self.lock().exec_handlers.push((matcher, Arc::new(handler)));
    }

    /// Refuse to remove a running container instead of SIGKILLing it first as containerd
    /// does; for tests asserting that the caller always stops before removing.
    pub fn set_refuse_remove_running(&self, refuse: bool) {
        self.lock().refuse_remove_running = refuse;
    }

    /// The next `n` calls of `method` fail with [`RuntimeError::Unavailable`].
    pub fn fail_next(&self, method: Method, n: usize) {
        *self.lock().fail_next.entry(method).or_default() += n;
    }

    /// What `status` answers from now on (both conditions ready at first).
    pub fn set_runtime_status(&self, status: RuntimeStatus) {
        self.lock().runtime_status = status;
    }

    /// Make the runtime's network ready, or not ready with the reason and message containerd
    /// gives before a CNI config exists.
    pub fn set_network_ready(&self, ready: bool) {
        let condition = if ready {
            RuntimeCondition::ready(RuntimeStatus::NETWORK_READY)
        } else {
            RuntimeCondition::not_ready(
                RuntimeStatus::NETWORK_READY,
                "NetworkPluginNotReady",
                "Network plugin returns error: cni plugin not initialized",
            )
        };
        let mut state = self.lock();
        state
            .runtime_status
            .conditions
            .retain(|c| c.type_ != RuntimeStatus::NETWORK_READY);
        state.runtime_status.conditions.push(condition);
    }

    /// While on, every call fails with [`RuntimeError::Unavailable`] (the runtime is down).
    pub fn set_outage(&self, outage: bool) {
        self.lock().outage = outage;
    }

    /// The container's process exits now with `code` (reason derived from the code).
    /// Returns false if the container is not running.
    pub fn kill_container(&self, container_id: &str, code: i32) -> bool {
        self.exit_container(container_id, code, None)
    }

    /// The container's process exits now with `code` and the given reason
    /// (e.g. `OOMKilled`). Returns false if the container is not running.
    pub fn exit_container(&self, container_id: &str, code: i32, reason: Option<&str>) -> bool {
        let now = Instant::now();
        let mut state = self.lock();
        let Some(c) = state.containers.get_mut(container_id) else {
            return false;
        };
        c.settle(now);
        if c.state != ContainerState::Running {
            return false;
        }
        c.exit = Some(PlannedExit {
            at: now,
            code,
            reason: reason.map(str::to_string),
        });
        c.settle(now);
        true
    }

    /// The sandbox's infra process dies: the sandbox turns NotReady, its containers keep
    /// running (as with a crashed pause process). Returns false if the sandbox is absent.
    pub fn kill_sandbox(&self, sandbox_id: &str) -> bool {
        let mut state = self.lock();
        match state.sandboxes.get_mut(sandbox_id) {
            Some(s) => {
                s.state = SandboxState::NotReady;
                true
            }
            None => false,
        }
    }

    // ----- inspection -----

    /// How many times `method` was called (failed calls included).
    pub fn calls(&self, method: Method) -> usize {
        self.lock().counts.get(&method).copied().unwrap_or(0)
    }

    /// Every call so far, in order.
    pub fn call_log(&self) -> Vec<Call> {
        self.lock().log.clone()
    }

    /// The calls of `method`, in order.
    pub fn calls_of(&self, method: Method) -> Vec<Call> {
        self.lock()
            .log
            .iter()
            .filter(|c| c.method == method)
            .cloned()
            .collect()
    }

    /// Forget the call log and counts.
    pub fn clear_calls(&self) {
        let mut state = self.lock();
        state.log.clear();
        state.counts.clear();
    }

    /// Full status of every sandbox, oldest first.
    pub fn sandboxes(&self) -> Vec<PodSandboxStatus> {
        let state = self.lock();
        let mut all: Vec<&Sandbox> = state.sandboxes.values().collect();
        all.sort_by_key(|s| s.seq);
        all.into_iter().map(|s| self.sandbox_status(s)).collect()
    }

    /// Full status of every container, oldest first.
    pub fn containers(&self) -> Vec<ContainerStatus> {
        let now = Instant::now();
        let mut state = self.lock();
        state.containers.values_mut().for_each(|c| c.settle(now));
        let mut all: Vec<&Container> = state.containers.values().collect();
        all.sort_by_key(|c| c.seq);
        all.into_iter().map(|c| self.container_full(c)).collect()
    }

    /// Every instance of container `name` in pod `pod` (name or UID) ever created: those
    /// removed with `RemoveContainer` (as they were then) and those still there, oldest
    /// first.
    pub fn container_instances_of(&self, pod: &str, name: &str) -> Vec<ContainerStatus> {
        let removed: Vec<ContainerStatus> = {
            let state = self.lock();
            let mut removed: Vec<&Container> = state.removed_containers.iter().collect();
            removed.sort_by_key(|c| c.seq);
            removed
                .into_iter()
                .map(|c| self.container_full(c))
                .collect()
        };
        let mut all: Vec<ContainerStatus> = removed
            .into_iter()
            .chain(self.containers())
            .filter(|c| is_container_of(c, pod, name))
            .collect();
        all.sort_by_key(|c| c.created_at);
        all
    }

    /// Full status of the containers named `name` in pod `pod` (name or UID), oldest first.
    pub fn containers_of(&self, pod: &str, name: &str) -> Vec<ContainerStatus> {
        self.containers()
            .into_iter()
            .filter(|c| is_container_of(c, pod, name))
            .collect()
    }

    /// Running containers.
    pub fn running_containers(&self) -> Vec<ContainerStatus> {
        self.containers()
            .into_iter()
            .filter(|c| c.state == ContainerState::Running)
            .collect()
    }

    /// Names of the local images (normalised).
    pub fn local_images(&self) -> Vec<String> {
        self.lock().images.keys().cloned().collect()
    }

    // ----- internals -----

    /// Count and log the call, then apply injected faults.
    fn enter(&self, method: Method, target: &str) -> RuntimeResult<()> {
        let mut state = self.lock();
        *state.counts.entry(method).or_default() += 1;
        state.log.push(Call {
            method,
            target: target.to_string(),
        });
        if state.outage {
            return Err(RuntimeError::Unavailable(format!(
                "{method:?}: connection error: dial unix /run/containerd/containerd.sock: connect: connection refused"
            )));
        }
        if let Some(n) = state.fail_next.get_mut(&method).filter(|n| **n > 0) {
            *n -= 1;
            return Err(RuntimeError::Unavailable(format!(
                "{method:?} {target}: injected failure"
            )));
        }
        Ok(())
    }

    fn new_id(state: &mut State, kind: &str) -> String {
        state.next_id += 1;
        hex_digest(&[kind, &state.next_id.to_string()])
    }

    fn sandbox_status(&self, s: &Sandbox) -> PodSandboxStatus {
        PodSandboxStatus {
            id: s.id.clone(),
            metadata: s.config.metadata.clone(),
            state: s.state,
            created_at: self.clock.ns(s.created),
            ips: s.ip.iter().cloned().collect(),
            netns_path: s.netns.clone(),
            network: s.config.network,
            labels: s.config.labels.clone(),
            annotations: s.config.annotations.clone(),
        }
    }

    fn container_full(&self, c: &Container) -> ContainerStatus {
        let reason = if c.state == ContainerState::Exited && c.reason.is_empty() {
            if c.exit_code == 0 {
                "Completed"
            } else {
                "Error"
            }
            .to_string()
        } else {
            c.reason.clone()
        };
        ContainerStatus {
            id: c.id.clone(),
            sandbox_id: c.sandbox_id.clone(),
            metadata: c.config.metadata.clone(),
            state: c.state,
            created_at: self.clock.ns(c.created),
            started_at: c.started.map_or(0, |t| self.clock.ns(t)),
            finished_at: c.finished.map_or(0, |t| self.clock.ns(t)),
            exit_code: c.exit_code,
            image: c.image.clone(),
            image_ref: c.image_ref.clone(),
            reason,
            message: c.message.clone(),
            labels: c.config.labels.clone(),
            annotations: c.config.annotations.clone(),
            log_path: c.log_path.clone(),
        }
    }

    fn behavior_for(state: &mut State, target: &MatchTarget<'_>) -> ContainerBehavior {
        let found = state
            .rules
            .iter_mut()
            .rev()
            .find(|r| r.remaining != Some(0) && r.matcher.matches(target));
        match found {
            Some(rule) => {
                if let Some(n) = rule.remaining.as_mut() {
                    *n -= 1;
                }
                rule.behavior.clone()
            }
            None => state.default_behavior.clone(),
        }
    }

    /// Stop a sandbox as containerd does: SIGKILL its containers, tear its network down.
    fn stop_sandbox_locked(state: &mut State, sandbox_id: &str, now: Instant) {
        for c in state
            .containers
            .values_mut()
            .filter(|c| c.sandbox_id == sandbox_id)
        {
            c.settle(now);
            c.kill(now);
        }
        if let Some(s) = state.sandboxes.get_mut(sandbox_id) {
            s.state = SandboxState::NotReady;
            s.ip = None;
            s.netns = None;
        }
    }
}

/// Normalise an image reference as containerd does: `busybox` is
/// `docker.io/library/busybox:latest`.
pub fn normalize_image(image: &str) -> String {
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    let mut name = match name.split_once('/') {
        None => format!("docker.io/library/{name}"),
        Some((host, _)) if host.contains('.') || host.contains(':') || host == "localhost" => {
            name.to_string()
        }
        Some(_) => format!("docker.io/{name}"),
    };
    if let Some(d) = digest {
        return format!("{name}@{d}");
    }
    let last = name.rsplit('/').next().unwrap_or_default();
    if !last.contains(':') {
        name.push_str(":latest");
    }
    name
}

fn hex_digest(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for p in parts {
        hasher.update(p.as_bytes());
        hasher.update([0]);
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn not_found_container(id: &str) -> RuntimeError {
    RuntimeError::NotFound(format!(
        "an error occurred when try to find container {id:?}: not found"
    ))
}

fn not_found_sandbox(id: &str) -> RuntimeError {
    RuntimeError::NotFound(format!(
        "an error occurred when try to find sandbox {id:?}: not found"
    ))
}

fn state_name(state: ContainerState) -> &'static str {
    match state {
        ContainerState::Created => "CONTAINER_CREATED",
        ContainerState::Running => "CONTAINER_RUNNING",
        ContainerState::Exited => "CONTAINER_EXITED",
        ContainerState::Unknown => "CONTAINER_UNKNOWN",
    }
}

#[async_trait]
impl Runtime for FakeRuntime {
    async fn version(&self) -> RuntimeResult<RuntimeVersion> {
        self.enter(Method::Version, "")?;
        Ok(RuntimeVersion {
            runtime_name: "fake".to_string(),
            runtime_version: env!("CARGO_PKG_VERSION").to_string(),
            runtime_api_version: "v1".to_string(),
        })
    }

    async fn status(&self) -> RuntimeResult<RuntimeStatus> {
        self.enter(Method::Status, "")?;
        Ok(self.lock().runtime_status.clone())
    }

    async fn run_pod_sandbox(&self, config: &PodSandboxConfig) -> RuntimeResult<String> {
        self.enter(Method::RunPodSandbox, &config.metadata.uid)?;
        let meta = &config.metadata;
        if meta.name.is_empty() || meta.namespace.is_empty() || meta.uid.is_empty() {
            return Err(RuntimeError::InvalidArgument(
                "sandbox config must include metadata name, namespace and uid".to_string(),
            ));
        }
        if config.network == NamespaceMode::Node && !config.hostname.is_empty() {
            // What runc says when asked to set a hostname without a UTS namespace.
            return Err(RuntimeError::Other(
                "failed to create containerd task: unable to set hostname without a private UTS namespace"
                    .to_string(),
            ));
        }
        if let (Some(group), None) = (config.run_as_group, config.run_as_user) {
            // containerd cannot make a user string of a group alone.
            return Err(RuntimeError::Other(format!(
                "failed to generate sanbdox container spec options: failed to generate user string: user group \"{group}\" is specified without user"
            )));
        }
        let mut state = self.lock();
        let name = format!(
            "k8s_POD_{}_{}_{}_{}",
            meta.name, meta.namespace, meta.uid, meta.attempt
        );
        if let Some(other) = state
            .sandboxes
            .values()
            .find(|s| s.config.metadata == *meta)
        {
            return Err(RuntimeError::AlreadyExists(format!(
                "failed to reserve sandbox name {name:?}: name {name:?} is reserved for {:?}",
                other.id
            )));
        }
        let id = Self::new_id(&mut state, "sandbox");
        let seq = state.next_id;
        let created = Instant::now();
        let (ip, netns) = if config.network == NamespaceMode::Pod {
            let n = state.next_ip;
            state.next_ip += 1;
            (
                Some(format!("10.88.{}.{}", (n >> 8) & 0xff, n & 0xff)),
                Some(format!("/var/run/netns/cni-{}", &id[..32])),
            )
        } else {
            (None, None)
        };
        state.sandboxes.insert(
            id.clone(),
            Sandbox {
                id: id.clone(),
                seq,
                config: config.clone(),
                state: SandboxState::Ready,
                created,
                ip,
                netns,
            },
        );
        Ok(id)
    }

    async fn stop_pod_sandbox(&self, sandbox_id: &str) -> RuntimeResult<()> {
        self.enter(Method::StopPodSandbox, sandbox_id)?;
        let now = Instant::now();
        let mut state = self.lock();
        if !state.sandboxes.contains_key(sandbox_id) {
            return Err(not_found_sandbox(sandbox_id));
        }
        Self::stop_sandbox_locked(&mut state, sandbox_id, now);
        Ok(())
    }

    async fn remove_pod_sandbox(&self, sandbox_id: &str) -> RuntimeResult<()> {
        self.enter(Method::RemovePodSandbox, sandbox_id)?;
        let now = Instant::now();
        let mut state = self.lock();
        if !state.sandboxes.contains_key(sandbox_id) {
            return Ok(());
        }
        if let Some(c) = state
            .containers
            .values()
            .find(|c| c.sandbox_id == sandbox_id && c.starting)
        {
            return Err(RuntimeError::Other(format!(
                "failed to remove container {:?}: failed to set removing state for container {:?}: container is in starting state, can't be removed",
                c.id, c.id
            )));
        }
        Self::stop_sandbox_locked(&mut state, sandbox_id, now);
        state.containers.retain(|_, c| c.sandbox_id != sandbox_id);
        state.sandboxes.remove(sandbox_id);
        Ok(())
    }

    async fn pod_sandbox_status(&self, sandbox_id: &str) -> RuntimeResult<PodSandboxStatus> {
        self.enter(Method::PodSandboxStatus, sandbox_id)?;
        let state = self.lock();
        state
            .sandboxes
            .get(sandbox_id)
            .map(|s| self.sandbox_status(s))
            .ok_or_else(|| not_found_sandbox(sandbox_id))
    }

    async fn list_pod_sandboxes(
        &self,
        filter: &ListFilter,
    ) -> RuntimeResult<Vec<PodSandboxStatus>> {
        self.enter(Method::ListPodSandboxes, "")?;
        let state = self.lock();
        Ok(state
            .sandboxes
            .values()
            .filter(|s| {
                filter
                    .pod_uid
                    .as_deref()
                    .is_none_or(|uid| labels::pod_uid_of(&s.config.labels) == Some(uid))
            })
            .map(|s| {
                // CRI's PodSandbox (list) carries no network details.
                PodSandboxStatus {
                    ips: Vec::new(),
                    netns_path: None,
                    network: NamespaceMode::default(),
                    ..self.sandbox_status(s)
                }
            })
            .collect())
    }

    async fn create_container(
        &self,
        sandbox_id: &str,
        config: &ContainerConfig,
        sandbox_config: &PodSandboxConfig,
    ) -> RuntimeResult<String> {
        self.enter(
            Method::CreateContainer,
            &format!("{sandbox_id}/{}", config.metadata.name),
        )?;
        let sec = &config.security;
        if let (Some(group), None, true) = (
            sec.run_as_group,
            sec.run_as_user,
            sec.run_as_username.is_empty(),
        ) {
            // As containerd: a group alone makes no user string.
            return Err(RuntimeError::Other(format!(
                "failed to generate user string: user group \"{group}\" is specified without user"
            )));
        }
        let image = normalize_image(&config.image);
        let behavior = {
            let mut state = self.lock();
            let sandbox = state.sandboxes.get(sandbox_id).ok_or_else(|| {
                RuntimeError::NotFound(format!(
                    "failed to find sandbox id {sandbox_id:?}: not found"
                ))
            })?;
            if sandbox.state != SandboxState::Ready {
                // containerd builds the spec from the sandbox's running task, gone once
                // the sandbox stopped.
                return Err(RuntimeError::NotFound(format!(
                    "failed to get sandbox container task: no running task found: task {sandbox_id} not found: not found"
                )));
            }
            let (pod_name, pod_uid) = (
                sandbox.config.metadata.name.clone(),
                sandbox.config.metadata.uid.clone(),
            );
            let command_line = config
                .command
                .iter()
                .chain(config.args.iter())
                .cloned()
                .collect::<Vec<_>>()
                .join(" ");
            let target = MatchTarget {
                pod_name: &pod_name,
                pod_uid: &pod_uid,
                container: &config.metadata.name,
                image: &image,
                command_line: &command_line,
            };
            Self::behavior_for(&mut state, &target)
        };
        if !behavior.create_delay.is_zero() {
            tokio::time::sleep(behavior.create_delay).await;
        }
        if let Some(message) = &behavior.create_error {
            return Err(RuntimeError::Other(format!(
                "failed to create containerd container: {message}"
            )));
        }
        let mut state = self.lock();
        // The sandbox may have gone while creation hung.
        let Some(sandbox) = state.sandboxes.get(sandbox_id) else {
            return Err(RuntimeError::NotFound(format!(
                "failed to find sandbox id {sandbox_id:?}: not found"
            )));
        };
        let meta = &sandbox.config.metadata;
        let name = format!(
            "k8s_{}_{}_{}_{}_{}",
            config.metadata.name, meta.name, meta.namespace, meta.uid, config.metadata.attempt
        );
        let log_dir = sandbox_config.log_directory.clone();
        if let Some(other) = state
            .containers
            .values()
            .find(|c| c.sandbox_id == sandbox_id && c.config.metadata == config.metadata)
        {
            return Err(RuntimeError::AlreadyExists(format!(
                "failed to reserve container name {name:?}: name {name:?} is reserved for {:?}",
                other.id
            )));
        }
        let Some(image_ref) = state.images.get(&image).map(|i| i.digest.clone()) else {
            return Err(RuntimeError::NotFound(format!(
                "failed to resolve image {:?}: {image}: image not found",
                config.image
            )));
        };
        let id = Self::new_id(&mut state, "container");
        let seq = state.next_id;
        let created = Instant::now();
        let log_path = if log_dir.is_empty() || config.log_path.is_empty() {
            String::new()
        } else {
            format!("{}/{}", log_dir.trim_end_matches('/'), config.log_path)
        };
        state.containers.insert(
            id.clone(),
            Container {
                id: id.clone(),
                seq,
                sandbox_id: sandbox_id.to_string(),
                config: config.clone(),
                image: config.image.clone(),
                image_ref,
                log_path,
                behavior,
                state: ContainerState::Created,
                starting: false,
                created,
                started: None,
                finished: None,
                exit_code: 0,
                reason: String::new(),
                message: String::new(),
                exit: None,
            },
        );
        Ok(id)
    }

    async fn start_container(&self, container_id: &str) -> RuntimeResult<()> {
        self.enter(Method::StartContainer, container_id)?;
        let now = Instant::now();
        let delay = {
            let mut state = self.lock();
            let c = state
                .containers
                .get_mut(container_id)
                .ok_or_else(|| not_found_container(container_id))?;
            c.settle(now);
            if c.state != ContainerState::Created {
                return Err(RuntimeError::Other(format!(
                    "failed to set starting state for container {container_id:?}: container is in {} state",
                    state_name(c.state)
                )));
            }
            if c.starting {
                return Err(RuntimeError::Other(format!(
                    "failed to set starting state for container {container_id:?}: container is already in starting state"
                )));
            }
            c.starting = true;
            c.behavior.start_delay
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let mut state = self.lock();
        let now = Instant::now();
        let sandbox_ready = {
            let Some(c) = state.containers.get(container_id) else {
                return Err(not_found_container(container_id));
            };
            state
                .sandboxes
                .get(&c.sandbox_id)
                .map(|s| s.state == SandboxState::Ready)
        };
        let Some(c) = state.containers.get_mut(container_id) else {
            return Err(not_found_container(container_id));
        };
        c.starting = false;
        let failure = match sandbox_ready {
            None => Some(RuntimeError::NotFound(format!(
                "sandbox {:?} not found: not found",
                c.sandbox_id
            ))),
            Some(false) => Some(RuntimeError::Other(format!(
                "sandbox container {:?} is not running",
                c.sandbox_id
            ))),
            Some(true) => c.behavior.start_error.as_ref().map(|m| {
                RuntimeError::Other(format!(
                    "failed to create containerd task: failed to create shim task: OCI runtime create failed: {m}"
                ))
            }),
        };
        if let Some(err) = failure {
            // containerd marks a container whose start failed as exited.
            c.state = ContainerState::Exited;
            c.finished = Some(now);
            c.exit_code = START_ERROR_EXIT;
            c.reason = START_ERROR_REASON.to_string();
            c.message = err.to_string();
            return Err(err);
        }
        c.state = ContainerState::Running;
        c.started = Some(now);
        if let Run::Exit {
            code,
            after,
            reason,
        } = &c.behavior.run
        {
            c.exit = Some(PlannedExit {
                at: now + *after,
                code: *code,
                reason: reason.clone(),
            });
        }
        c.settle(now);
        Ok(())
    }

    async fn stop_container(&self, container_id: &str, timeout: Duration) -> RuntimeResult<()> {
        self.enter(Method::StopContainer, container_id)?;
        let now = Instant::now();
        let until = {
            let mut state = self.lock();
            let c = state
                .containers
                .get_mut(container_id)
                .ok_or_else(|| not_found_container(container_id))?;
            c.settle(now);
            if c.state != ContainerState::Running {
                return Ok(());
            }
            // SIGTERM first; past the timeout (or at once with no timeout) SIGKILL.
            let exit = match c.behavior.on_term {
                OnTerm::Exit { code, after } if !timeout.is_zero() && after < timeout => {
                    PlannedExit {
                        at: now + after,
                        code,
                        reason: None,
                    }
                }
                _ => PlannedExit {
                    at: now + timeout,
                    code: SIGKILL_EXIT,
                    reason: None,
                },
            };
            c.plan_exit(exit);
            c.settle(now);
            c.exit.as_ref().map_or(now, |e| e.at)
        };
        tokio::time::sleep_until(until).await;
        let mut state = self.lock();
        if let Some(c) = state.containers.get_mut(container_id) {
            c.settle(Instant::now());
        }
        Ok(())
    }

    async fn remove_container(&self, container_id: &str) -> RuntimeResult<()> {
        self.enter(Method::RemoveContainer, container_id)?;
        let now = Instant::now();
        let mut state = self.lock();
        let refuse_running = state.refuse_remove_running;
        let Some(c) = state.containers.get_mut(container_id) else {
            return Ok(());
        };
        c.settle(now);
        if c.starting {
            return Err(RuntimeError::Other(format!(
                "failed to set removing state for container {container_id:?}: container is in starting state, can't be removed"
            )));
        }
        if c.state == ContainerState::Running {
            if refuse_running {
                return Err(RuntimeError::Other(format!(
                    "failed to set removing state for container {container_id:?}: container is still running, to stop first"
                )));
            }
            // containerd forcibly stops a running container before removing it.
            c.kill(now);
        }
        if let Some(gone) = state.containers.remove(container_id) {
            state.removed_containers.push(gone);
        }
        Ok(())
    }

    async fn container_status(&self, container_id: &str) -> RuntimeResult<ContainerStatus> {
        self.enter(Method::ContainerStatus, container_id)?;
        let now = Instant::now();
        let mut state = self.lock();
        let c = state
            .containers
            .get_mut(container_id)
            .ok_or_else(|| not_found_container(container_id))?;
        c.settle(now);
        Ok(self.container_full(c))
    }

    async fn list_containers(&self, filter: &ListFilter) -> RuntimeResult<Vec<ContainerStatus>> {
        self.enter(Method::ListContainers, "")?;
        let now = Instant::now();
        let mut state = self.lock();
        Ok(state
            .containers
            .values_mut()
            .filter(|c| {
                filter
                    .pod_uid
                    .as_deref()
                    .is_none_or(|uid| labels::pod_uid_of(&c.config.labels) == Some(uid))
            })
            .map(|c| {
                c.settle(now);
                // CRI's Container (list) has no times but creation, no exit code, reason,
                // message or log path.
                ContainerStatus {
                    id: c.id.clone(),
                    sandbox_id: c.sandbox_id.clone(),
                    metadata: c.config.metadata.clone(),
                    state: c.state,
                    created_at: self.clock.ns(c.created),
                    image: c.image.clone(),
                    image_ref: c.image_ref.clone(),
                    labels: c.config.labels.clone(),
                    annotations: c.config.annotations.clone(),
                    ..ContainerStatus::default()
                }
            })
            .collect())
    }

    async fn image_status(&self, image: &str) -> RuntimeResult<Option<ImageInfo>> {
        self.enter(Method::ImageStatus, image)?;
        let state = self.lock();
        Ok(state.images.get(&normalize_image(image)).map(Image::info))
    }

    async fn pull_image(&self, image: &str, auth: Option<&AuthConfig>) -> RuntimeResult<String> {
        self.enter(Method::PullImage, image)?;
        let name = normalize_image(image);
        let (known, delay) = {
            let mut state = self.lock();
            state
                .pulls
                .push((name.clone(), auth.map(|a| a.username.clone())));
            (state.registry.get(&name).cloned(), state.pull_delay)
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        match known {
            None => {
                return Err(RuntimeError::ImagePull(format!(
                    "failed to pull and unpack image {name:?}: failed to resolve reference {name:?}: {name}: not found"
                )));
            }
            Some(Some((user, password)))
                if auth.is_none_or(|a| a.username != user || a.password != password) =>
            {
                return Err(RuntimeError::ImagePull(format!(
                    "failed to pull and unpack image {name:?}: failed to resolve reference {name:?}: pull access denied, repository does not exist or may require authorization: authorization failed: 401 Unauthorized"
                )));
            }
            Some(_) => {}
        }
        let mut state = self.lock();
        let entry = state
            .images
            .entry(name.clone())
            .or_insert_with(|| Image::new(&name));
        Ok(entry.id.clone())
    }

    async fn list_images(&self) -> RuntimeResult<Vec<ImageInfo>> {
        self.enter(Method::ListImages, "")?;
        Ok(self.lock().images.values().map(Image::info).collect())
    }

    async fn remove_image(&self, image: &str) -> RuntimeResult<()> {
        self.enter(Method::RemoveImage, image)?;
        let mut state = self.lock();
        let name = normalize_image(image);
        // Accept the image ID too, as the kubelet's image GC removes by ID.
        state.images.retain(|key, i| *key != name && i.id != image);
        Ok(())
    }

    async fn image_fs_info(&self) -> RuntimeResult<Vec<ImageFsInfo>> {
        self.enter(Method::ImageFsInfo, "")?;
        self.lock().image_fs.clone().ok_or_else(|| {
            RuntimeError::Unsupported("ImageFsInfo: not supported by this runtime".to_string())
        })
    }

    async fn exec_sync(
        &self,
        container_id: &str,
        cmd: &[String],
        timeout: Duration,
    ) -> RuntimeResult<ExecResult> {
        self.enter(Method::ExecSync, container_id)?;
        let now = Instant::now();
        let handler = {
            let mut state = self.lock();
            let State {
                containers,
                sandboxes,
                exec_handlers,
                ..
            } = &mut *state;
            let c = containers
                .get_mut(container_id)
                .ok_or_else(|| not_found_container(container_id))?;
            c.settle(now);
            if c.state != ContainerState::Running {
                return Err(RuntimeError::Other(format!(
                    "container is in {} state",
                    state_name(c.state)
                )));
            }
            let (pod_name, pod_uid) = sandboxes
                .get(&c.sandbox_id)
                .map(|s| {
                    (
                        s.config.metadata.name.clone(),
                        s.config.metadata.uid.clone(),
                    )
                })
                .unwrap_or_default();
            let image = normalize_image(&c.image);
            let command_line = c
                .config
                .command
                .iter()
                .chain(c.config.args.iter())
                .cloned()
                .collect::<Vec<_>>()
                .join(" ");
            let target = MatchTarget {
                pod_name: &pod_name,
                pod_uid: &pod_uid,
                container: &c.config.metadata.name,
                image: &image,
                command_line: &command_line,
            };
            exec_handlers
                .iter()
                .rev()
                .find(|(m, _)| m.matches(&target))
                .map(|(_, h)| Arc::clone(h))
        };
        let reply = handler.map_or(ExecReply::exit(0), |h| h(cmd));
        let deadline = || {
            RuntimeError::DeadlineExceeded(format!(
                "failed to exec in container {container_id:?}: timeout {}s exceeded: context deadline exceeded",
                timeout.as_secs()
            ))
        };
        match reply {
            ExecReply::Done(result) => Ok(result),
            ExecReply::After(delay, result) => {
                if !timeout.is_zero() && delay > timeout {
                    tokio::time::sleep(timeout).await;
                    return Err(deadline());
                }
                tokio::time::sleep(delay).await;
                Ok(result)
            }
            ExecReply::Hang => {
                if timeout.is_zero() {
                    std::future::pending::<()>().await;
                }
                tokio::time::sleep(timeout).await;
                Err(deadline())
            }
        }
    }

    async fn container_stats(&self, container_id: &str) -> RuntimeResult<Option<ContainerStats>> {
        self.enter(Method::ContainerStats, container_id)?;
        let now = Instant::now();
        let mut state = self.lock();
        let c = state
            .containers
            .get_mut(container_id)
            .ok_or_else(|| not_found_container(container_id))?;
        c.settle(now);
        Ok(Some(self.stats_of(c, now)))
    }

    async fn list_container_stats(&self) -> RuntimeResult<Vec<ContainerStats>> {
        self.enter(Method::ListContainerStats, "")?;
        let now = Instant::now();
        let mut state = self.lock();
        Ok(state
            .containers
            .values_mut()
            .map(|c| {
                c.settle(now);
                self.stats_of(c, now)
            })
            .collect())
    }

    /// Each ready sandbox: the sum of its running containers' usage, and an `eth0` that
    /// has received 1 KiB and sent 512 bytes per container.
    async fn list_pod_sandbox_stats(&self) -> RuntimeResult<Vec<crate::runtime::PodSandboxStats>> {
        self.enter(Method::ListPodSandboxStats, "")?;
        let now = Instant::now();
        let mut state = self.lock();
        let mut out = Vec::new();
        let ready: Vec<(String, crate::runtime::SandboxMetadata)> = state
            .sandboxes
            .values()
            .filter(|s| s.state == SandboxState::Ready)
            .map(|s| (s.id.clone(), s.config.metadata.clone()))
            .collect();
        for (id, metadata) in ready {
            let containers: Vec<ContainerStats> = state
                .containers
                .values_mut()
                .filter(|c| c.sandbox_id == id)
                .map(|c| {
                    c.settle(now);
                    self.stats_of(c, now)
                })
                .filter(|s| s.memory_working_set_bytes.is_some())
                .collect();
            let n = containers.len() as u64;
            out.push(crate::runtime::PodSandboxStats {
                id,
                metadata,
                timestamp: self.clock.ns(now),
                cpu_usage_core_nanoseconds: Some(
                    containers
                        .iter()
                        .filter_map(|c| c.cpu_usage_core_nanoseconds)
                        .sum(),
                ),
                memory_working_set_bytes: Some(
                    containers
                        .iter()
                        .filter_map(|c| c.memory_working_set_bytes)
                        .sum(),
                ),
                network: vec![crate::runtime::InterfaceUsage {
                    name: "eth0".into(),
                    rx_bytes: Some(1024 * n),
                    rx_errors: Some(0),
                    tx_bytes: Some(512 * n),
                    tx_errors: Some(0),
                }],
                process_count: Some(n),
                containers,
                ..Default::default()
            });
        }
        Ok(out)
    }
}

impl FakeRuntime {
    /// Usage that grows with run time: 10 ms of CPU per second running, 8 MiB of memory
    /// while running, a 4 KiB writable layer.
    fn stats_of(&self, c: &Container, now: Instant) -> ContainerStats {
        let running = c.state == ContainerState::Running;
        let cpu = c.started.map(|start| {
            let end = c.finished.unwrap_or(now);
            u64::try_from(end.saturating_duration_since(start).as_nanos() / 100).unwrap_or(u64::MAX)
        });
        ContainerStats {
            id: c.id.clone(),
            metadata: ContainerMetadata {
                name: c.config.metadata.name.clone(),
                attempt: c.config.metadata.attempt,
            },
            timestamp: self.clock.ns(now),
            cpu_usage_core_nanoseconds: cpu.filter(|_| running),
            memory_working_set_bytes: running.then_some(8 * 1024 * 1024),
            writable_layer_used_bytes: Some(4096),
        }
    }
}
