//! Pod status: phase, conditions, container statuses, QoS class and IPs, computed from what
//! the runtime holds for the pod. A pure function of its input.
//!
//! It follows the reference kubelet's `generateAPIPodStatus` (container statuses, `getPhase`,
//! the three-way merge of terminal phases), the probe manager's ready/started rules, the
//! condition generators of `status/generate.go` and the status manager's rule for
//! `lastTransitionTime` (kept while a condition's status does not change).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, ContainerState as ApiContainerState, ContainerStateRunning,
    ContainerStateTerminated, ContainerStateWaiting, ContainerStatus as ApiContainerStatus, HostIP,
    Pod, PodCondition, PodIP, PodSpec, PodStatus, VolumeMount, VolumeMountStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::qos::qos_class;
use super::state::PodRuntimeState;
use crate::labels;
use crate::runtime::{ContainerState, ContainerStatus, NamespaceMode, SandboxState};

/// Why a container is waiting, as decided by the last sync (image pull errors, backoff...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerWaiting {
    /// `ErrImagePull`, `ImagePullBackOff`, `ErrImageNeverPull`, `CrashLoopBackOff`,
    /// `CreateContainerError`, `CreateContainerConfigError`, `RunContainerError`, ...
    pub reason: String,
    /// Human-readable detail.
    pub message: String,
}

/// Everything the pod status is computed from.
#[derive(Debug, Clone)]
pub struct StatusInput<'a> {
    /// The desired pod.
    pub pod: &'a Pod,
    /// What the runtime holds for it.
    pub observed: &'a PodRuntimeState,
    /// Waiting reasons per container name, from the last sync. Applied only to containers
    /// the reference would restart (not running, allowed by the restart policy).
    pub waiting: &'a BTreeMap<String, ContainerWaiting>,
    /// Readiness per container name from readiness probes. A running, started container
    /// with no entry is ready unless it has a readiness probe (which has not succeeded yet).
    pub readiness: &'a BTreeMap<String, bool>,
    /// Startup-probe results per container name. A running container with no entry is
    /// started unless it has a startup probe (which has not succeeded yet).
    pub started: &'a BTreeMap<String, bool>,
    /// The status last computed, so that transition times and startTime are kept. When
    /// `None`, the pod's own `status` (from the API) is used the same way.
    pub previous: Option<&'a PodStatus>,
    /// Pod IPs, primary first. Host-network pods with none get the host IPs.
    pub pod_ips: &'a [String],
    /// Node IPs, primary first.
    pub host_ips: &'a [String],
    /// Whether the pod is being terminated (deleted or removed from its source).
    pub terminating: bool,
    /// Name of the runtime, the scheme of container IDs (`containerd://<id>`); empty: bare
    /// IDs.
    pub runtime_name: &'a str,
    /// Reason and message of an eviction the kubelet decided (activeDeadlineSeconds): the
    /// phase is then Failed with them, as the reference's `ShouldEvict` handlers do.
    pub evicted: Option<(&'a str, &'a str)>,
    /// The message of the `DisruptionTarget` condition of a pod the kubelet evicted (none
    /// for a pod past its deadline or refused at admission).
    pub disruption: Option<&'a str>,
    /// Now.
    pub now: Timestamp,
}

/// Default waiting reason of a container that has no runtime container yet.
const CONTAINER_CREATING: &str = "ContainerCreating";
/// Default waiting reason when the pod has init containers.
const POD_INITIALIZING: &str = "PodInitializing";
/// Reason of a container that vanished from the runtime while it was running.
const CONTAINER_STATUS_UNKNOWN: &str = "ContainerStatusUnknown";

/// Condition types the kubelet owns (`PodConditionsByKubelet`; replaced on every
/// computation, and the others left to their writers).
pub(crate) const KUBELET_CONDITIONS: [&str; 5] = [
    "PodScheduled",
    "Ready",
    "Initialized",
    "ContainersReady",
    "PodReadyToStartContainers",
];

/// What status computation needs of a container spec (init, regular or ephemeral).
struct Spec<'a> {
    name: &'a str,
    image: &'a str,
    volume_mounts: Option<&'a Vec<VolumeMount>>,
    /// A sidecar: an init container with `restartPolicy: Always`.
    restartable: bool,
    readiness_probe: bool,
    startup_probe: bool,
}

impl<'a> Spec<'a> {
    fn of(c: &'a Container, is_init: bool) -> Self {
        Self {
            name: &c.name,
            image: c.image.as_deref().unwrap_or_default(),
            volume_mounts: c.volume_mounts.as_ref(),
            restartable: is_init && c.restart_policy.as_deref() == Some("Always"),
            readiness_probe: c.readiness_probe.is_some(),
            startup_probe: c.startup_probe.is_some(),
        }
    }
}

/// Compute a pod's status.
pub fn compute_pod_status(input: &StatusInput<'_>) -> PodStatus {
    let pod = input.pod;
    let default_spec = PodSpec::default();
    let spec = pod.spec.as_ref().unwrap_or(&default_spec);
    let api_status = pod.status.as_ref();
    let old = input.previous.or(api_status);
    let has_init = spec.init_containers.as_ref().is_some_and(|v| !v.is_empty());
    let deleted = input.terminating || pod.metadata.deletion_timestamp.is_some();

    let init_specs: Vec<Spec<'_>> = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| Spec::of(c, true))
        .collect();
    let regular_specs: Vec<Spec<'_>> = spec.containers.iter().map(|c| Spec::of(c, false)).collect();
    let ephemeral: Vec<Container> = spec
        .ephemeral_containers
        .iter()
        .flatten()
        .map(|e| Container {
            name: e.name.clone(),
            image: e.image.clone(),
            volume_mounts: e.volume_mounts.clone(),
            ..Default::default()
        })
        .collect();
    let ephemeral_specs: Vec<Spec<'_>> = ephemeral.iter().map(|c| Spec::of(c, false)).collect();

    let old_list =
        |f: fn(&PodStatus) -> Option<&Vec<ApiContainerStatus>>| -> &[ApiContainerStatus] {
            old.and_then(f).map(Vec::as_slice).unwrap_or_default()
        };
    let mut init_statuses = convert_statuses(
        input,
        &init_specs,
        old_list(|s| s.init_container_statuses.as_ref()),
        has_init,
        true,
        deleted,
    );
    let mut statuses = convert_statuses(
        input,
        &regular_specs,
        old_list(|s| s.container_statuses.as_ref()),
        has_init,
        false,
        deleted,
    );
    let mut ephemeral_statuses = convert_statuses(
        input,
        &ephemeral_specs,
        old_list(|s| s.ephemeral_container_statuses.as_ref()),
        has_init,
        false,
        deleted,
    );
    apply_probe_results(input, &init_specs, &mut init_statuses, true);
    apply_probe_results(input, &regular_specs, &mut statuses, false);
    // Ephemeral containers have no probes; the reference leaves their ready/started unset.
    // The reference orders regular and ephemeral statuses by name, init statuses by spec.
    statuses.sort_by(|a, b| a.name.cmp(&b.name));
    ephemeral_statuses.sort_by(|a, b| a.name.cmp(&b.name));

    let pod_is_terminal = input.terminating && input.observed.running_containers().next().is_none();
    let mut phase = get_phase(
        spec,
        &init_specs,
        &init_statuses,
        &statuses,
        pod_is_terminal,
        is_static(pod),
    );
    let old_phase = old.and_then(|s| s.phase.as_deref());
    let api_phase = api_status.and_then(|s| s.phase.as_deref());
    // Terminal phases are final: neither the last computed nor the API's may be left.
    if !is_terminal(Some(phase)) {
        if is_terminal(old_phase) {
            phase = old_phase.unwrap_or(phase);
        } else if is_terminal(api_phase) {
            phase = api_phase.unwrap_or(phase);
        }
    }
    if is_terminal(api_phase) && api_phase != Some(phase) {
        tracing::warn!(
            pod = pod.metadata.name.as_deref().unwrap_or_default(),
            from = api_phase.unwrap_or_default(),
            to = phase,
            "illegal pod phase transition out of a terminal phase; keeping the API's phase"
        );
        phase = api_phase.unwrap_or(phase);
    }
    let (mut reason, mut message) = (None, None);
    if old_phase == Some(phase) {
        let non_empty = |v: Option<&String>| v.filter(|s| !s.is_empty()).cloned();
        reason = non_empty(old.and_then(|s| s.reason.as_ref()))
            .or_else(|| non_empty(api_status.and_then(|s| s.reason.as_ref())));
        message = non_empty(old.and_then(|s| s.message.as_ref()))
            .or_else(|| non_empty(api_status.and_then(|s| s.message.as_ref())));
    }
    if let Some((why, text)) = input.evicted {
        phase = "Failed";
        reason = Some(why.to_string());
        message = Some(text.to_string());
    }

    let conditions = conditions(
        input,
        spec,
        &init_specs,
        &init_statuses,
        &statuses,
        phase,
        old,
    );

    let host_network = spec.host_network.unwrap_or(false);
    let pod_ips: &[String] = if input.pod_ips.is_empty() && host_network {
        input.host_ips
    } else {
        input.pod_ips
    };
    let start_time = old
        .and_then(|s| s.start_time.clone())
        .unwrap_or(Time(input.now));

    PodStatus {
        phase: Some(phase.to_string()),
        reason,
        message,
        conditions: Some(conditions),
        container_statuses: Some(statuses),
        init_container_statuses: Some(init_statuses),
        ephemeral_container_statuses: (!ephemeral_statuses.is_empty())
            .then_some(ephemeral_statuses),
        qos_class: Some(qos_class(pod).as_str().to_string()),
        pod_ip: pod_ips.first().cloned(),
        pod_ips: (!pod_ips.is_empty())
            .then(|| pod_ips.iter().map(|ip| PodIP { ip: ip.clone() }).collect()),
        host_ip: input.host_ips.first().cloned(),
        host_ips: (!input.host_ips.is_empty()).then(|| {
            input
                .host_ips
                .iter()
                .map(|ip| HostIP { ip: ip.clone() })
                .collect()
        }),
        start_time: Some(start_time),
        observed_generation: pod.metadata.generation,
        ..Default::default()
    }
}

fn is_terminal(phase: Option<&str>) -> bool {
    matches!(phase, Some("Succeeded" | "Failed"))
}

/// A static pod (from a file or URL source) keeps the reference's exemption from the
/// terminal-phase rule for terminated pods.
fn is_static(pod: &Pod) -> bool {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(labels::CONFIG_SOURCE))
        .is_some_and(|s| s != "api")
}

fn time_from_nanos(ns: i64) -> Option<Time> {
    if ns <= 0 {
        return None;
    }
    // The API keeps whole seconds; dropping the rest keeps recomputed statuses equal to the
    // ones read back from the API server.
    Timestamp::from_second(ns.div_euclid(1_000_000_000))
        .ok()
        .map(Time)
}

fn waiting_state(reason: Option<&str>, message: Option<&str>) -> ApiContainerState {
    ApiContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: reason.map(str::to_string),
            message: message.map(str::to_string),
        }),
        ..Default::default()
    }
}

fn is_running(s: &ApiContainerStatus) -> bool {
    s.state.as_ref().is_some_and(|st| st.running.is_some())
}

fn terminated(s: &ApiContainerStatus) -> Option<&ContainerStateTerminated> {
    s.state.as_ref().and_then(|st| st.terminated.as_ref())
}

fn is_waiting(s: &ApiContainerStatus) -> bool {
    s.state.as_ref().is_some_and(|st| st.waiting.is_some())
}

fn last_terminated(s: &ApiContainerStatus) -> Option<&ContainerStateTerminated> {
    s.last_state.as_ref().and_then(|st| st.terminated.as_ref())
}

fn volume_mount_statuses(mounts: Option<&Vec<VolumeMount>>) -> Option<Vec<VolumeMountStatus>> {
    let mounts = mounts.filter(|m| !m.is_empty())?;
    Some(
        mounts
            .iter()
            .map(|m| {
                let read_only = m.read_only.unwrap_or(false);
                VolumeMountStatus {
                    name: m.name.clone(),
                    mount_path: m.mount_path.clone(),
                    read_only: Some(read_only),
                    // `IfPossible` resolves to Disabled: the runtime does not report support
                    // for recursive read-only mounts through this seam.
                    recursive_read_only: read_only.then(|| {
                        if m.recursive_read_only.as_deref() == Some("Enabled") {
                            "Enabled".to_string()
                        } else {
                            "Disabled".to_string()
                        }
                    }),
                    ..Default::default()
                }
            })
            .collect(),
    )
}

/// The API status of one runtime container (the reference's `convertContainerStatus`).
fn convert_container(
    input: &StatusInput<'_>,
    c: &ContainerStatus,
    old: Option<&ApiContainerStatus>,
    spec: &Spec<'_>,
) -> ApiContainerStatus {
    let container_id = if input.runtime_name.is_empty() {
        c.id.clone()
    } else {
        format!("{}://{}", input.runtime_name, c.id)
    };
    let mut status = ApiContainerStatus {
        name: c.metadata.name.clone(),
        restart_count: labels::restart_count_of(&c.annotations),
        // The image the user asked for: the runtime may report the resolved image ID instead.
        image: if c.image.is_empty() || c.image.starts_with("sha256:") {
            spec.image.to_string()
        } else {
            c.image.clone()
        },
        image_id: c.image_ref.clone(),
        container_id: Some(container_id.clone()),
        volume_mounts: volume_mount_statuses(spec.volume_mounts),
        ..Default::default()
    };
    let state = match c.state {
        ContainerState::Running => ApiContainerState {
            running: Some(ContainerStateRunning {
                started_at: time_from_nanos(c.started_at),
            }),
            ..Default::default()
        },
        // Created but not started: waiting to run.
        ContainerState::Created => waiting_state(None, None),
        ContainerState::Exited => {
            let reason = if !c.reason.is_empty() {
                c.reason.clone()
            } else if c.exit_code == 0 {
                "Completed".to_string()
            } else {
                "Error".to_string()
            };
            ApiContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: c.exit_code,
                    reason: Some(reason),
                    message: (!c.message.is_empty()).then(|| c.message.clone()),
                    started_at: time_from_nanos(c.started_at),
                    finished_at: time_from_nanos(c.finished_at),
                    container_id: Some(container_id),
                    ..Default::default()
                }),
                ..Default::default()
            }
        }
        ContainerState::Unknown => match old.filter(|o| is_running(o)) {
            // It was running and the runtime lost track of it: count it as failed rather
            // than as never run, so a run-once pod does not run twice.
            Some(o) => {
                status.restart_count = o.restart_count + 1;
                ApiContainerState {
                    terminated: Some(ContainerStateTerminated {
                        exit_code: 137,
                        reason: Some(CONTAINER_STATUS_UNKNOWN.to_string()),
                        message: Some(
                            "The container could not be located when the pod was terminated"
                                .to_string(),
                        ),
                        ..Default::default()
                    }),
                    ..Default::default()
                }
            }
            None => waiting_state(None, None),
        },
    };
    status.state = Some(state);
    status
}

/// Whether the reference would (re)start this container on the next sync
/// (`ShouldContainerBeRestarted`).
fn should_restart(
    pod_policy: &str,
    spec: &Spec<'_>,
    newest: Option<&ContainerStatus>,
    deleted: bool,
) -> bool {
    if deleted {
        return false;
    }
    let Some(c) = newest else {
        return true;
    };
    match c.state {
        ContainerState::Running => return false,
        ContainerState::Unknown | ContainerState::Created => return true,
        ContainerState::Exited => {}
    }
    let policy = if spec.restartable {
        "Always"
    } else {
        pod_policy
    };
    match policy {
        "Never" => false,
        "OnFailure" => c.exit_code != 0,
        _ => true,
    }
}

/// Statuses of one list of containers, in spec order (the reference's
/// `convertToAPIContainerStatuses`).
fn convert_statuses(
    input: &StatusInput<'_>,
    specs: &[Spec<'_>],
    previous: &[ApiContainerStatus],
    has_init: bool,
    is_init: bool,
    deleted: bool,
) -> Vec<ApiContainerStatus> {
    let old: BTreeMap<&str, &ApiContainerStatus> =
        previous.iter().map(|s| (s.name.as_str(), s)).collect();
    let default_reason = if has_init {
        POD_INITIALIZING
    } else {
        CONTAINER_CREATING
    };
    let pod_policy = input
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always");

    specs
        .iter()
        .map(|spec| {
            let old_status = old.get(spec.name).copied();
            let mut status = ApiContainerStatus {
                name: spec.name.to_string(),
                image: spec.image.to_string(),
                state: Some(waiting_state(Some(default_reason), None)),
                volume_mounts: volume_mount_statuses(spec.volume_mounts),
                ..Default::default()
            };
            if let Some(o) = old_status {
                if terminated(o).is_some() {
                    status = o.clone();
                } else {
                    status.restart_count = o.restart_count;
                    status.last_state = o.last_state.clone();
                }
            }

            let mut runtime = input.observed.containers_named(spec.name);
            let newest = runtime.next();
            match newest {
                None => {
                    // It was running and has vanished: record an unknown termination so the
                    // pod does not fall back to Pending.
                    let was_running = old_status.is_some_and(|o| is_running(o) && terminated(o).is_none());
                    let is_default = status
                        .state
                        .as_ref()
                        .and_then(|s| s.waiting.as_ref())
                        .is_some_and(|w| w.reason.as_deref() == Some(default_reason));
                    if was_running && is_default && last_terminated(&status).is_none() {
                        status.last_state = Some(ApiContainerState {
                            terminated: Some(ContainerStateTerminated {
                                exit_code: 137,
                                reason: Some(CONTAINER_STATUS_UNKNOWN.to_string()),
                                message: Some(
                                    "The container could not be located when the pod was deleted.  The container used to be Running"
                                        .to_string(),
                                ),
                                ..Default::default()
                            }),
                            ..Default::default()
                        });
                        if input.pod.metadata.deletion_timestamp.is_none() {
                            status.restart_count += 1;
                        }
                    }
                }
                Some(c) => {
                    status = convert_container(input, c, old_status, spec);
                    if let Some(previous) = runtime.next() {
                        status.last_state = convert_container(input, previous, old_status, spec).state;
                    }
                }
            }

            // A container the next sync will (re)start shows why it is not running yet.
            let succeeded_init = is_init
                && newest.is_some_and(|c| c.state == ContainerState::Exited && c.exit_code == 0);
            if !succeeded_init
                && should_restart(pod_policy, spec, newest, deleted)
                && let Some(w) = input.waiting.get(spec.name)
            {
                if terminated(&status).is_some() {
                    status.last_state = status.state.take();
                }
                status.state = Some(waiting_state(
                    Some(&w.reason),
                    (!w.message.is_empty()).then_some(w.message.as_str()),
                ));
            }
            status
        })
        .collect()
}

/// Ready and started flags, as the probe manager's `UpdatePodStatus` sets them.
fn apply_probe_results(
    input: &StatusInput<'_>,
    specs: &[Spec<'_>],
    statuses: &mut [ApiContainerStatus],
    is_init: bool,
) {
    for (spec, status) in specs.iter().zip(statuses.iter_mut()) {
        let running = is_running(status);
        let started = running
            && input
                .started
                .get(spec.name)
                .copied()
                .unwrap_or(!spec.startup_probe);
        status.started = Some(started);
        if is_init && !spec.restartable {
            status.ready = terminated(status).is_some_and(|t| t.exit_code == 0);
            continue;
        }
        status.ready = started
            && input
                .readiness
                .get(spec.name)
                .copied()
                .unwrap_or(!spec.readiness_probe);
    }
}

fn find<'s>(statuses: &'s [ApiContainerStatus], name: &str) -> Option<&'s ApiContainerStatus> {
    statuses.iter().find(|s| s.name == name)
}

/// Whether any regular container has run (`HasAnyRegularContainerStarted`).
fn any_regular_started(statuses: &[ApiContainerStatus]) -> bool {
    statuses
        .iter()
        .any(|s| is_running(s) || terminated(s).is_some())
}

/// The reference's `getPhase`.
fn get_phase(
    spec: &PodSpec,
    init_specs: &[Spec<'_>],
    init_statuses: &[ApiContainerStatus],
    statuses: &[ApiContainerStatus],
    pod_is_terminal: bool,
    is_static: bool,
) -> &'static str {
    let mut pending_initialization = 0;
    let mut failed_initialization = 0;
    let (mut unknown, mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0, 0);

    for init in init_specs {
        let Some(s) = find(init_statuses, init.name) else {
            if init.restartable {
                unknown += 1;
            } else {
                pending_initialization += 1;
            }
            continue;
        };
        if !init.restartable {
            if is_running(s) {
                pending_initialization += 1;
            } else if let Some(t) = terminated(s) {
                if t.exit_code != 0 {
                    failed_initialization += 1;
                }
            } else if is_waiting(s) {
                match last_terminated(s) {
                    Some(t) if t.exit_code != 0 => failed_initialization += 1,
                    Some(_) => {}
                    None => pending_initialization += 1,
                }
            } else {
                pending_initialization += 1;
            }
        } else if is_running(s) {
            if s.started != Some(true) {
                pending_initialization += 1;
            }
            running += 1;
        } else if terminated(s).is_some() {
            // Terminated sidecars do not count towards the phase.
        } else if is_waiting(s) {
            if last_terminated(s).is_none() {
                pending_initialization += 1;
                waiting += 1;
            }
        } else {
            pending_initialization += 1;
            unknown += 1;
        }
    }

    for c in &spec.containers {
        let Some(s) = find(statuses, &c.name) else {
            unknown += 1;
            continue;
        };
        if is_running(s) {
            running += 1;
        } else if let Some(t) = terminated(s) {
            stopped += 1;
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else if is_waiting(s) {
            if last_terminated(s).is_some() {
                stopped += 1;
            } else {
                waiting += 1;
            }
        } else {
            unknown += 1;
        }
    }

    let policy = spec.restart_policy.as_deref().unwrap_or("Always");
    if failed_initialization > 0 && policy == "Never" {
        return "Failed";
    }
    if (pending_initialization > 0 && !any_regular_started(statuses)) || waiting > 0 {
        return "Pending";
    }
    if running > 0 && unknown == 0 {
        return "Running";
    }
    if running == 0 && stopped > 0 && unknown == 0 {
        // A terminated pod's containers will not restart, whatever the policy.
        if pod_is_terminal && !is_static {
            return if stopped == succeeded {
                "Succeeded"
            } else {
                "Failed"
            };
        }
        if policy == "Always" {
            return "Running";
        }
        if stopped == succeeded {
            return "Succeeded";
        }
        if policy == "Never" {
            return "Failed";
        }
        return "Running";
    }
    "Pending"
}

fn condition(
    type_: &str,
    status: bool,
    reason: Option<&str>,
    message: Option<String>,
) -> PodCondition {
    PodCondition {
        type_: type_.to_string(),
        status: if status { "True" } else { "False" }.to_string(),
        reason: reason.map(str::to_string),
        message,
        ..Default::default()
    }
}

/// Go's `%s` rendering of a string slice: `[a b]`.
fn go_list(names: &[&str]) -> String {
    format!("[{}]", names.join(" "))
}

fn containers_ready_condition(
    spec: &PodSpec,
    init_specs: &[Spec<'_>],
    init_statuses: &[ApiContainerStatus],
    statuses: &[ApiContainerStatus],
    phase: &str,
) -> PodCondition {
    const TYPE: &str = "ContainersReady";
    let mut unknown: Vec<&str> = Vec::new();
    let mut unready: Vec<&str> = Vec::new();
    let sidecars = init_specs
        .iter()
        .filter(|s| s.restartable)
        .map(|s| (s.name, find(init_statuses, s.name)));
    let regular = spec
        .containers
        .iter()
        .map(|c| (c.name.as_str(), find(statuses, &c.name)));
    for (name, status) in sidecars.chain(regular) {
        match status {
            Some(s) if !s.ready => unready.push(name),
            Some(_) => {}
            None => unknown.push(name),
        }
    }
    if (phase == "Succeeded" && unknown.is_empty()) || phase == "Failed" {
        let reason = if phase == "Failed" {
            "PodFailed"
        } else {
            "PodCompleted"
        };
        return condition(TYPE, false, Some(reason), None);
    }
    let mut messages = Vec::new();
    if !unknown.is_empty() {
        messages.push(format!(
            "containers with unknown status: {}",
            go_list(&unknown)
        ));
    }
    if !unready.is_empty() {
        messages.push(format!(
            "containers with unready status: {}",
            go_list(&unready)
        ));
    }
    if messages.is_empty() {
        condition(TYPE, true, None, None)
    } else {
        condition(
            TYPE,
            false,
            Some("ContainersNotReady"),
            Some(messages.join(", ")),
        )
    }
}

fn ready_condition(
    spec: &PodSpec,
    containers_ready: &PodCondition,
    existing: &[PodCondition],
) -> PodCondition {
    const TYPE: &str = "Ready";
    if containers_ready.status != "True" {
        return PodCondition {
            type_: TYPE.to_string(),
            ..containers_ready.clone()
        };
    }
    let mut messages = Vec::new();
    for gate in spec.readiness_gates.iter().flatten() {
        let gate_type = &gate.condition_type;
        match existing.iter().find(|c| &c.type_ == gate_type) {
            None => messages.push(format!(
                "corresponding condition of pod readiness gate {gate_type:?} does not exist."
            )),
            Some(c) if c.status != "True" => messages.push(format!(
                "the status of pod readiness gate {gate_type:?} is not \"True\", but {}",
                c.status
            )),
            Some(_) => {}
        }
    }
    if messages.is_empty() {
        condition(TYPE, true, None, None)
    } else {
        condition(
            TYPE,
            false,
            Some("ReadinessGatesNotReady"),
            Some(messages.join(", ")),
        )
    }
}

fn initialized_condition(
    init_specs: &[Spec<'_>],
    init_statuses: &[ApiContainerStatus],
    statuses: &[ApiContainerStatus],
    phase: &str,
) -> PodCondition {
    const TYPE: &str = "Initialized";
    let mut unknown: Vec<&str> = Vec::new();
    let mut incomplete: Vec<&str> = Vec::new();
    for init in init_specs {
        let Some(s) = find(init_statuses, init.name) else {
            unknown.push(init.name);
            continue;
        };
        let done = if init.restartable {
            s.started == Some(true)
        } else {
            s.ready
        };
        if !done {
            incomplete.push(init.name);
        }
    }
    if phase == "Succeeded" && unknown.is_empty() {
        return condition(TYPE, true, Some("PodCompleted"), None);
    }
    // Regular containers have run, so initialization finished before (sidecars may be
    // restarting now).
    if any_regular_started(statuses) {
        return condition(TYPE, true, None, None);
    }
    let mut messages = Vec::new();
    if !unknown.is_empty() {
        messages.push(format!(
            "containers with unknown status: {}",
            go_list(&unknown)
        ));
    }
    if !incomplete.is_empty() {
        messages.push(format!(
            "containers with incomplete status: {}",
            go_list(&incomplete)
        ));
    }
    if messages.is_empty() {
        condition(TYPE, true, None, None)
    } else {
        condition(
            TYPE,
            false,
            Some("ContainersNotInitialized"),
            Some(messages.join(", ")),
        )
    }
}

/// True when the newest sandbox is ready and networked, i.e. no new sandbox is needed
/// (the reference's `PodSandboxChanged` negated).
fn ready_to_start_containers(input: &StatusInput<'_>, spec: &PodSpec) -> bool {
    let sandboxes = &input.observed.sandboxes;
    let Some(latest) = sandboxes.first() else {
        return false;
    };
    let ready_count = sandboxes
        .iter()
        .filter(|s| s.state == SandboxState::Ready)
        .count();
    if ready_count > 1 || latest.state != SandboxState::Ready {
        return false;
    }
    let host_network = spec.host_network.unwrap_or(false);
    let want = if host_network {
        NamespaceMode::Node
    } else {
        NamespaceMode::Pod
    };
    if latest.network != want {
        return false;
    }
    host_network || !latest.ips.is_empty() || !input.pod_ips.is_empty()
}

fn conditions(
    input: &StatusInput<'_>,
    spec: &PodSpec,
    init_specs: &[Spec<'_>],
    init_statuses: &[ApiContainerStatus],
    statuses: &[ApiContainerStatus],
    phase: &str,
    old: Option<&PodStatus>,
) -> Vec<PodCondition> {
    let pod = input.pod;
    let old_conditions: &[PodCondition] = old
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    // Conditions set by others (readiness gates, scheduler extras) are kept as the API has
    // them; a disruption target recorded by the kubelet (eviction) is carried over.
    let mut out: Vec<PodCondition> = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .filter(|c| !KUBELET_CONDITIONS.contains(&c.type_.as_str()))
        .cloned()
        .collect();
    if let Some(disruption) = old_conditions
        .iter()
        .find(|c| c.type_ == "DisruptionTarget")
    {
        match out.iter_mut().find(|c| c.type_ == "DisruptionTarget") {
            Some(existing) => *existing = disruption.clone(),
            None => out.push(disruption.clone()),
        }
    }
    let first_owned = out.len();

    out.push(condition(
        "PodReadyToStartContainers",
        ready_to_start_containers(input, spec),
        None,
        None,
    ));
    out.push(initialized_condition(
        init_specs,
        init_statuses,
        statuses,
        phase,
    ));
    let containers_ready =
        containers_ready_condition(spec, init_specs, init_statuses, statuses, phase);
    let ready = ready_condition(spec, &containers_ready, &out);
    out.push(ready);
    out.push(containers_ready);
    out.push(condition("PodScheduled", true, None, None));
    // An evicted pod says why it was disrupted (the reference's PodDisruptionConditions).
    if let Some(message) = input.disruption {
        out.push(condition(
            "DisruptionTarget",
            true,
            Some("TerminationByKubelet"),
            Some(message.to_string()),
        ));
    }

    for c in &mut out[first_owned..] {
        c.observed_generation = pod.metadata.generation;
        let kept = old_conditions
            .iter()
            .find(|o| o.type_ == c.type_ && o.status == c.status)
            .and_then(|o| o.last_transition_time.clone());
        c.last_transition_time = Some(kept.unwrap_or(Time(input.now)));
    }
    out
}
