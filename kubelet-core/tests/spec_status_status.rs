//! Table tests of pod status computation: container statuses, phase, conditions.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, ContainerState as ApiState, ContainerStatus as ApiStatus, Pod, PodCondition,
    PodReadinessGate, PodSpec, PodStatus, Probe, ResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kubelet_core::labels;
use kubelet_core::reconciler::state::PodRuntimeState;
use kubelet_core::reconciler::status::{ContainerWaiting, StatusInput, compute_pod_status};
use kubelet_core::runtime::{
    ContainerMetadata, ContainerState, ContainerStatus, NamespaceMode, PodSandboxStatus,
    SandboxState,
};

const SEC: i64 = 1_000_000_000;

fn now() -> Timestamp {
    Timestamp::from_second(1_700_000_000).expect("valid time")
}

fn earlier() -> Timestamp {
    Timestamp::from_second(1_600_000_000).expect("valid time")
}

fn container(name: &str) -> Container {
    Container {
        name: name.into(),
        image: Some(format!("img-{name}")),
        ..Default::default()
    }
}

fn pod(policy: &str, init: &[&str], regular: &[&str]) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some("p".into()),
            namespace: Some("default".into()),
            uid: Some("uid".into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            restart_policy: Some(policy.into()),
            init_containers: (!init.is_empty())
                .then(|| init.iter().map(|n| container(n)).collect()),
            containers: regular.iter().map(|n| container(n)).collect(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A runtime container; `created` orders them (seconds), `restarts` is the annotation.
fn rc(
    name: &str,
    state: ContainerState,
    exit_code: i32,
    created: i64,
    restarts: i32,
) -> ContainerStatus {
    ContainerStatus {
        id: format!("{name}-{created}"),
        sandbox_id: "sb".into(),
        metadata: ContainerMetadata {
            name: name.into(),
            attempt: restarts as u32,
        },
        state,
        created_at: created * SEC,
        started_at: if state == ContainerState::Created {
            0
        } else {
            (created + 1) * SEC
        },
        finished_at: if state == ContainerState::Exited {
            (created + 5) * SEC
        } else {
            0
        },
        exit_code,
        image: format!("img-{name}"),
        image_ref: format!("sha256:{name}"),
        annotations: BTreeMap::from([(
            labels::CONTAINER_RESTART_COUNT.to_string(),
            restarts.to_string(),
        )]),
        ..Default::default()
    }
}

fn running(name: &str, created: i64) -> ContainerStatus {
    rc(name, ContainerState::Running, 0, created, 0)
}

fn exited(name: &str, code: i32, created: i64) -> ContainerStatus {
    rc(name, ContainerState::Exited, code, created, 0)
}

fn sandbox(ready: bool, ips: &[&str]) -> PodSandboxStatus {
    PodSandboxStatus {
        id: "sb".into(),
        state: if ready {
            SandboxState::Ready
        } else {
            SandboxState::NotReady
        },
        ips: ips.iter().map(|s| s.to_string()).collect(),
        network: NamespaceMode::Pod,
        created_at: SEC,
        ..Default::default()
    }
}

fn observed(containers: Vec<ContainerStatus>) -> PodRuntimeState {
    let mut state = PodRuntimeState {
        uid: "uid".into(),
        sandboxes: vec![sandbox(true, &["10.0.0.5"])],
        containers,
    };
    state.sort();
    state
}

/// Inputs with defaults; tests override fields.
struct Case {
    pod: Pod,
    observed: PodRuntimeState,
    waiting: BTreeMap<String, ContainerWaiting>,
    readiness: BTreeMap<String, bool>,
    started: BTreeMap<String, bool>,
    previous: Option<PodStatus>,
    terminating: bool,
}

impl Case {
    fn new(pod: Pod, containers: Vec<ContainerStatus>) -> Self {
        Self {
            pod,
            observed: observed(containers),
            waiting: BTreeMap::new(),
            readiness: BTreeMap::new(),
            started: BTreeMap::new(),
            previous: None,
            terminating: false,
        }
    }

    fn waiting(mut self, name: &str, reason: &str) -> Self {
        self.waiting.insert(
            name.into(),
            ContainerWaiting {
                reason: reason.into(),
                message: format!("{reason} for {name}"),
            },
        );
        self
    }

    fn compute(&self) -> PodStatus {
        compute_pod_status(&StatusInput {
            pod: &self.pod,
            observed: &self.observed,
            waiting: &self.waiting,
            readiness: &self.readiness,
            started: &self.started,
            previous: self.previous.as_ref(),
            pod_ips: &["10.0.0.5".to_string()],
            host_ips: &["192.168.1.10".to_string()],
            terminating: self.terminating,
            runtime_name: "containerd",
            evicted: None,
            disruption: None,
            now: now(),
        })
    }
}

fn status_of<'a>(s: &'a PodStatus, name: &str) -> &'a ApiStatus {
    s.container_statuses
        .iter()
        .chain(s.init_container_statuses.iter())
        .flatten()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no status for {name}"))
}

fn state_of(s: &ApiStatus) -> String {
    describe(s.state.as_ref())
}

fn last_of(s: &ApiStatus) -> String {
    describe(s.last_state.as_ref())
}

fn describe(state: Option<&ApiState>) -> String {
    let Some(state) = state else {
        return "none".into();
    };
    if let Some(w) = &state.waiting {
        return format!("waiting:{}", w.reason.as_deref().unwrap_or(""));
    }
    if state.running.is_some() {
        return "running".into();
    }
    if let Some(t) = &state.terminated {
        return format!(
            "terminated:{}:{}",
            t.exit_code,
            t.reason.as_deref().unwrap_or("")
        );
    }
    "none".into()
}

fn cond<'a>(s: &'a PodStatus, type_: &str) -> &'a PodCondition {
    s.conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no condition {type_}"))
}

fn phase(s: &PodStatus) -> &str {
    s.phase.as_deref().unwrap_or_default()
}

#[test]
fn phase_by_restart_policy_and_exit_codes() {
    // (policy, exit codes of the two containers, expected phase)
    let cases = [
        ("Always", [0, 0], "Running"),
        ("Always", [0, 1], "Running"),
        ("Always", [1, 1], "Running"),
        ("OnFailure", [0, 0], "Succeeded"),
        ("OnFailure", [0, 1], "Running"),
        ("OnFailure", [1, 1], "Running"),
        ("Never", [0, 0], "Succeeded"),
        ("Never", [0, 1], "Failed"),
        ("Never", [1, 1], "Failed"),
    ];
    for (policy, codes, want) in cases {
        let case = Case::new(
            pod(policy, &[], &["a", "b"]),
            vec![exited("a", codes[0], 10), exited("b", codes[1], 11)],
        );
        let s = case.compute();
        assert_eq!(phase(&s), want, "{policy} {codes:?}");
        assert_eq!(
            state_of(status_of(&s, "a")),
            format!(
                "terminated:{}:{}",
                codes[0],
                if codes[0] == 0 { "Completed" } else { "Error" }
            )
        );
    }
}

#[test]
fn phase_with_running_waiting_and_mixed_containers() {
    let cases: Vec<(&str, &str, Vec<ContainerStatus>, &str)> = vec![
        ("nothing yet", "Always", vec![], "Pending"),
        (
            "one running one not created",
            "Always",
            vec![running("a", 10)],
            "Pending",
        ),
        (
            "all running",
            "Always",
            vec![running("a", 10), running("b", 11)],
            "Running",
        ),
        (
            "running and succeeded",
            "Never",
            vec![running("a", 10), exited("b", 0, 11)],
            "Running",
        ),
        (
            "running and failed",
            "Never",
            vec![running("a", 10), exited("b", 1, 11)],
            "Running",
        ),
        (
            "created not started",
            "Always",
            vec![running("a", 10), rc("b", ContainerState::Created, 0, 11, 0)],
            "Pending",
        ),
    ];
    for (name, policy, containers, want) in cases {
        let s = Case::new(pod(policy, &[], &["a", "b"]), containers).compute();
        assert_eq!(phase(&s), want, "{name}");
    }
}

#[test]
fn crash_loop_back_off_shows_waiting_with_the_last_termination() {
    let mut case = Case::new(
        pod("Always", &[], &["a"]),
        vec![
            rc("a", ContainerState::Exited, 2, 10, 0),
            rc("a", ContainerState::Exited, 1, 20, 1),
        ],
    )
    .waiting("a", "CrashLoopBackOff");
    let s = case.compute();
    let a = status_of(&s, "a");
    assert_eq!(state_of(a), "waiting:CrashLoopBackOff");
    assert_eq!(
        last_of(a),
        "terminated:1:Error",
        "the newest run, not the older one"
    );
    assert_eq!(a.restart_count, 1);
    assert!(!a.ready);
    assert_eq!(a.started, Some(false));
    assert_eq!(
        phase(&s),
        "Running",
        "a restarting container keeps the pod Running"
    );
    let waiting = a
        .state
        .as_ref()
        .and_then(|st| st.waiting.as_ref())
        .expect("waiting");
    assert_eq!(waiting.message.as_deref(), Some("CrashLoopBackOff for a"));

    // With Never the container will not restart: the waiting reason does not apply.
    case.pod = pod("Never", &[], &["a"]);
    let s = case.compute();
    assert_eq!(state_of(status_of(&s, "a")), "terminated:1:Error");
    assert_eq!(last_of(status_of(&s, "a")), "terminated:2:Error");
    assert_eq!(phase(&s), "Failed");

    // OnFailure after a success: no restart, no waiting.
    let case = Case::new(pod("OnFailure", &[], &["a"]), vec![exited("a", 0, 10)])
        .waiting("a", "CrashLoopBackOff");
    let s = case.compute();
    assert_eq!(state_of(status_of(&s, "a")), "terminated:0:Completed");
    assert_eq!(phase(&s), "Succeeded");
}

#[test]
fn waiting_reasons_apply_to_containers_not_running() {
    let cases = [
        ("ErrImagePull", vec![], "waiting:ErrImagePull", "Pending"),
        (
            "ImagePullBackOff",
            vec![],
            "waiting:ImagePullBackOff",
            "Pending",
        ),
        (
            "CreateContainerConfigError",
            vec![],
            "waiting:CreateContainerConfigError",
            "Pending",
        ),
        (
            "RunContainerError",
            vec![running("a", 10)],
            "running",
            "Running",
        ),
    ];
    for (reason, containers, want_state, want_phase) in cases {
        let s = Case::new(pod("Always", &[], &["a"]), containers)
            .waiting("a", reason)
            .compute();
        assert_eq!(state_of(status_of(&s, "a")), want_state, "{reason}");
        assert_eq!(phase(&s), want_phase, "{reason}");
    }
    // No reason recorded and nothing created: the default.
    let s = Case::new(pod("Always", &[], &["a"]), vec![]).compute();
    assert_eq!(state_of(status_of(&s, "a")), "waiting:ContainerCreating");
}

#[test]
fn init_containers_drive_the_phase() {
    // (init states, regular state, policy, phase, init condition, regular waiting reason)
    struct Row {
        name: &'static str,
        policy: &'static str,
        containers: Vec<ContainerStatus>,
        waiting: Option<(&'static str, &'static str)>,
        phase: &'static str,
        initialized: &'static str,
        main_state: &'static str,
    }
    let rows = vec![
        Row {
            name: "nothing started",
            policy: "Always",
            containers: vec![],
            waiting: None,
            phase: "Pending",
            initialized: "False",
            main_state: "waiting:PodInitializing",
        },
        Row {
            name: "first init running",
            policy: "Always",
            containers: vec![running("i1", 10)],
            waiting: None,
            phase: "Pending",
            initialized: "False",
            main_state: "waiting:PodInitializing",
        },
        Row {
            name: "both init succeeded, main not created",
            policy: "Always",
            containers: vec![exited("i1", 0, 10), exited("i2", 0, 20)],
            waiting: None,
            phase: "Pending",
            initialized: "True",
            main_state: "waiting:PodInitializing",
        },
        Row {
            name: "init done, main running",
            policy: "Always",
            containers: vec![
                exited("i1", 0, 10),
                exited("i2", 0, 20),
                running("main", 30),
            ],
            waiting: None,
            phase: "Running",
            initialized: "True",
            main_state: "running",
        },
        Row {
            name: "init failed, Never",
            policy: "Never",
            containers: vec![exited("i1", 1, 10)],
            waiting: None,
            phase: "Failed",
            initialized: "False",
            main_state: "waiting:PodInitializing",
        },
        Row {
            name: "init failed, OnFailure, backing off",
            policy: "OnFailure",
            containers: vec![exited("i1", 1, 10)],
            waiting: Some(("i1", "CrashLoopBackOff")),
            phase: "Pending",
            initialized: "False",
            main_state: "waiting:PodInitializing",
        },
        Row {
            name: "init failed, Always, about to restart",
            policy: "Always",
            containers: vec![exited("i1", 1, 10)],
            waiting: None,
            phase: "Pending",
            initialized: "False",
            main_state: "waiting:PodInitializing",
        },
        Row {
            name: "succeeded init is never put back to waiting",
            policy: "Always",
            containers: vec![exited("i1", 0, 10), running("i2", 20)],
            waiting: Some(("i1", "CrashLoopBackOff")),
            phase: "Pending",
            initialized: "False",
            main_state: "waiting:PodInitializing",
        },
    ];
    for row in rows {
        let mut case = Case::new(pod(row.policy, &["i1", "i2"], &["main"]), row.containers);
        if let Some((name, reason)) = row.waiting {
            case = case.waiting(name, reason);
        }
        let s = case.compute();
        assert_eq!(phase(&s), row.phase, "{}", row.name);
        assert_eq!(
            cond(&s, "Initialized").status,
            row.initialized,
            "{}",
            row.name
        );
        assert_eq!(
            state_of(status_of(&s, "main")),
            row.main_state,
            "{}",
            row.name
        );
        if row.name.starts_with("succeeded init") {
            assert_eq!(state_of(status_of(&s, "i1")), "terminated:0:Completed");
        }
        let init_names: Vec<&str> = s
            .init_container_statuses
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(init_names, vec!["i1", "i2"], "init statuses in spec order");
    }

    // Init container readiness: ready once it succeeded.
    let s = Case::new(
        pod("Always", &["i1", "i2"], &["main"]),
        vec![exited("i1", 0, 10), running("i2", 20)],
    )
    .compute();
    assert!(status_of(&s, "i1").ready);
    assert!(!status_of(&s, "i2").ready);
    assert_eq!(
        cond(&s, "Initialized").message.as_deref(),
        Some("containers with incomplete status: [i2]")
    );
    assert_eq!(
        cond(&s, "Initialized").reason.as_deref(),
        Some("ContainersNotInitialized")
    );
}

#[test]
fn terminating_pod_with_everything_stopped_gets_a_terminal_phase() {
    let cases = [
        ("Always", [0, 0], false, "Succeeded"),
        ("Always", [0, 137], false, "Failed"),
        ("OnFailure", [143, 0], false, "Failed"),
        // Static pods keep the restart-policy rule.
        ("Always", [0, 137], true, "Running"),
    ];
    for (policy, codes, is_static, want) in cases {
        let mut p = pod(policy, &[], &["a", "b"]);
        if is_static {
            p.metadata.annotations = Some(BTreeMap::from([(
                labels::CONFIG_SOURCE.to_string(),
                "file".to_string(),
            )]));
        }
        let mut case = Case::new(
            p,
            vec![exited("a", codes[0], 10), exited("b", codes[1], 11)],
        );
        case.terminating = true;
        assert_eq!(
            phase(&case.compute()),
            want,
            "{policy} {codes:?} static={is_static}"
        );
    }

    // Still running while terminating: Running.
    let mut case = Case::new(pod("Always", &[], &["a"]), vec![running("a", 10)]);
    case.terminating = true;
    assert_eq!(phase(&case.compute()), "Running");
}

#[test]
fn terminal_phases_are_never_left() {
    let mut case = Case::new(pod("Always", &[], &["a"]), vec![running("a", 10)]);
    case.previous = Some(PodStatus {
        phase: Some("Succeeded".into()),
        reason: Some("Done".into()),
        ..Default::default()
    });
    let s = case.compute();
    assert_eq!(phase(&s), "Succeeded");
    assert_eq!(
        s.reason.as_deref(),
        Some("Done"),
        "reason kept with the phase"
    );

    let mut case = Case::new(pod("Always", &[], &["a"]), vec![running("a", 10)]);
    case.pod.status = Some(PodStatus {
        phase: Some("Failed".into()),
        ..Default::default()
    });
    case.previous = Some(PodStatus {
        phase: Some("Running".into()),
        ..Default::default()
    });
    assert_eq!(
        phase(&case.compute()),
        "Failed",
        "the API's terminal phase wins"
    );
}

#[test]
fn restart_counts_and_last_state() {
    let s = Case::new(
        pod("Always", &[], &["a"]),
        vec![
            rc("a", ContainerState::Exited, 1, 10, 1),
            rc("a", ContainerState::Exited, 2, 20, 2),
            rc("a", ContainerState::Running, 0, 30, 3),
        ],
    )
    .compute();
    let a = status_of(&s, "a");
    assert_eq!(a.restart_count, 3);
    assert_eq!(state_of(a), "running");
    assert_eq!(last_of(a), "terminated:2:Error", "second newest run");
    assert_eq!(a.container_id.as_deref(), Some("containerd://a-30"));
    assert_eq!(a.image_id, "sha256:a");
    assert_eq!(a.image, "img-a");
    let started_at = a
        .state
        .as_ref()
        .and_then(|st| st.running.as_ref())
        .and_then(|r| r.started_at.clone());
    assert_eq!(
        started_at,
        Some(Time(Timestamp::from_second(31).expect("ts")))
    );
    let last = a
        .last_state
        .as_ref()
        .and_then(|st| st.terminated.as_ref())
        .expect("terminated");
    assert_eq!(last.container_id.as_deref(), Some("containerd://a-20"));
    assert_eq!(
        last.started_at,
        Some(Time(Timestamp::from_second(21).expect("ts")))
    );
    assert_eq!(
        last.finished_at,
        Some(Time(Timestamp::from_second(25).expect("ts")))
    );

    // Runtime-provided reason wins over the default one.
    let mut oom = exited("a", 137, 10);
    oom.reason = "OOMKilled".into();
    oom.message = "out of memory".into();
    let s = Case::new(pod("Never", &[], &["a"]), vec![oom]).compute();
    let t = status_of(&s, "a")
        .state
        .as_ref()
        .and_then(|st| st.terminated.clone())
        .expect("terminated");
    assert_eq!(t.reason.as_deref(), Some("OOMKilled"));
    assert_eq!(t.message.as_deref(), Some("out of memory"));
}

fn previous_running(name: &str, restart_count: i32) -> PodStatus {
    PodStatus {
        phase: Some("Running".into()),
        container_statuses: Some(vec![ApiStatus {
            name: name.into(),
            restart_count,
            state: Some(ApiState {
                running: Some(Default::default()),
                ..Default::default()
            }),
            ..Default::default()
        }]),
        ..Default::default()
    }
}

#[test]
fn containers_lost_by_the_runtime() {
    // Unknown state after running: terminated as ContainerStatusUnknown, one more restart.
    let mut case = Case::new(
        pod("Always", &[], &["a"]),
        vec![rc("a", ContainerState::Unknown, 0, 10, 4)],
    );
    case.previous = Some(previous_running("a", 4));
    let s = case.compute();
    let a = status_of(&s, "a");
    assert_eq!(state_of(a), "terminated:137:ContainerStatusUnknown");
    assert_eq!(a.restart_count, 5);

    // Vanished after running: waiting with an unknown last termination, not Pending.
    let mut case = Case::new(pod("Always", &[], &["a"]), vec![]);
    case.previous = Some(previous_running("a", 2));
    let s = case.compute();
    let a = status_of(&s, "a");
    assert_eq!(state_of(a), "waiting:ContainerCreating");
    assert_eq!(last_of(a), "terminated:137:ContainerStatusUnknown");
    assert_eq!(a.restart_count, 3);
    assert_eq!(phase(&s), "Running");
}

#[test]
fn ready_and_started_with_probe_results() {
    let probe = || Some(Probe::default());
    // (name, has readiness probe, has startup probe, readiness entry, started entry, ready, started)
    let cases = [
        ("no probes", false, false, None, None, true, true),
        (
            "readiness probe not run yet",
            true,
            false,
            None,
            None,
            false,
            true,
        ),
        (
            "readiness failing",
            true,
            false,
            Some(false),
            None,
            false,
            true,
        ),
        (
            "readiness passing",
            true,
            false,
            Some(true),
            None,
            true,
            true,
        ),
        (
            "startup probe not run yet",
            false,
            true,
            None,
            None,
            false,
            false,
        ),
        (
            "startup failing, readiness ok",
            true,
            true,
            Some(true),
            Some(false),
            false,
            false,
        ),
        ("startup passed", false, true, None, Some(true), true, true),
        (
            "entry without probe in spec",
            false,
            false,
            Some(false),
            None,
            false,
            true,
        ),
    ];
    for (
        name,
        readiness_probe,
        startup_probe,
        ready_entry,
        started_entry,
        want_ready,
        want_started,
    ) in cases
    {
        let mut p = pod("Always", &[], &["a"]);
        if let Some(spec) = p.spec.as_mut() {
            spec.containers[0].readiness_probe = if readiness_probe { probe() } else { None };
            spec.containers[0].startup_probe = if startup_probe { probe() } else { None };
        }
        let mut case = Case::new(p, vec![running("a", 10)]);
        if let Some(v) = ready_entry {
            case.readiness.insert("a".into(), v);
        }
        if let Some(v) = started_entry {
            case.started.insert("a".into(), v);
        }
        let s = case.compute();
        let a = status_of(&s, "a");
        assert_eq!(a.ready, want_ready, "{name}: ready");
        assert_eq!(a.started, Some(want_started), "{name}: started");
        assert_eq!(
            cond(&s, "ContainersReady").status == "True",
            want_ready,
            "{name}"
        );
        assert_eq!(cond(&s, "Ready").status == "True", want_ready, "{name}");
    }

    // An exited container is neither ready nor started whatever the probe maps say.
    let mut case = Case::new(pod("Always", &[], &["a"]), vec![exited("a", 0, 10)]);
    case.readiness.insert("a".into(), true);
    case.started.insert("a".into(), true);
    let s = case.compute();
    assert!(!status_of(&s, "a").ready);
    assert_eq!(status_of(&s, "a").started, Some(false));
}

#[test]
fn readiness_conditions_and_messages() {
    let mut case = Case::new(
        pod("Always", &[], &["b", "a", "c"]),
        vec![running("a", 10), running("b", 11), running("c", 12)],
    );
    case.readiness.insert("a".into(), false);
    case.readiness.insert("b".into(), false);
    let s = case.compute();
    let names: Vec<&str> = s
        .container_statuses
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(
        names,
        vec!["a", "b", "c"],
        "regular statuses sorted by name"
    );
    let cr = cond(&s, "ContainersReady");
    assert_eq!(cr.status, "False");
    assert_eq!(cr.reason.as_deref(), Some("ContainersNotReady"));
    assert_eq!(
        cr.message.as_deref(),
        Some("containers with unready status: [b a]"),
        "spec order"
    );
    let ready = cond(&s, "Ready");
    assert_eq!(ready.status, "False");
    assert_eq!(ready.reason.as_deref(), Some("ContainersNotReady"));
    assert_eq!(ready.message, cr.message);
    assert!(ready.last_probe_time.is_none());

    // Readiness gates: missing, false, true.
    let mut p = pod("Always", &[], &["a"]);
    if let Some(spec) = p.spec.as_mut() {
        spec.readiness_gates = Some(vec![
            PodReadinessGate {
                condition_type: "example.com/lb".into(),
            },
            PodReadinessGate {
                condition_type: "example.com/db".into(),
            },
        ]);
    }
    p.status = Some(PodStatus {
        conditions: Some(vec![PodCondition {
            type_: "example.com/db".into(),
            status: "False".into(),
            ..Default::default()
        }]),
        ..Default::default()
    });
    let s = Case::new(p.clone(), vec![running("a", 10)]).compute();
    assert_eq!(cond(&s, "ContainersReady").status, "True");
    let ready = cond(&s, "Ready");
    assert_eq!(ready.status, "False");
    assert_eq!(ready.reason.as_deref(), Some("ReadinessGatesNotReady"));
    assert_eq!(
        ready.message.as_deref(),
        Some(
            "corresponding condition of pod readiness gate \"example.com/lb\" does not exist., \
             the status of pod readiness gate \"example.com/db\" is not \"True\", but False"
        )
    );
    assert_eq!(
        cond(&s, "example.com/db").status,
        "False",
        "foreign condition kept"
    );

    if let Some(conds) = p.status.as_mut().and_then(|s| s.conditions.as_mut()) {
        conds[0].status = "True".into();
        conds.push(PodCondition {
            type_: "example.com/lb".into(),
            status: "True".into(),
            ..Default::default()
        });
    }
    let s = Case::new(p, vec![running("a", 10)]).compute();
    assert_eq!(cond(&s, "Ready").status, "True");
}

#[test]
fn terminal_phase_conditions() {
    let s = Case::new(
        pod("Never", &["i"], &["a"]),
        vec![exited("i", 0, 5), exited("a", 0, 10)],
    )
    .compute();
    assert_eq!(phase(&s), "Succeeded");
    assert_eq!(
        cond(&s, "Initialized").reason.as_deref(),
        Some("PodCompleted")
    );
    assert_eq!(cond(&s, "Initialized").status, "True");
    assert_eq!(
        cond(&s, "ContainersReady").reason.as_deref(),
        Some("PodCompleted")
    );
    assert_eq!(cond(&s, "Ready").status, "False");
    assert_eq!(cond(&s, "Ready").reason.as_deref(), Some("PodCompleted"));

    let s = Case::new(pod("Never", &[], &["a"]), vec![exited("a", 3, 10)]).compute();
    assert_eq!(phase(&s), "Failed");
    assert_eq!(
        cond(&s, "ContainersReady").reason.as_deref(),
        Some("PodFailed")
    );
    assert_eq!(cond(&s, "Ready").reason.as_deref(), Some("PodFailed"));
}

#[test]
fn transition_times_are_kept_while_the_status_holds() {
    let first = Case::new(pod("Always", &[], &["a"]), vec![running("a", 10)]).compute();
    // Pretend the first computation happened earlier.
    let mut previous = first.clone();
    for c in previous.conditions.iter_mut().flatten() {
        c.last_transition_time = Some(Time(earlier()));
    }
    previous.start_time = Some(Time(earlier()));

    // Same state: every time kept.
    let mut case = Case::new(pod("Always", &[], &["a"]), vec![running("a", 10)]);
    case.previous = Some(previous.clone());
    let s = case.compute();
    for c in s.conditions.iter().flatten() {
        assert_eq!(c.last_transition_time, Some(Time(earlier())), "{}", c.type_);
    }
    assert_eq!(s.start_time, Some(Time(earlier())));

    // Readiness drops: Ready and ContainersReady move to now, the others stay.
    case.readiness.insert("a".into(), false);
    let s = case.compute();
    for c in s.conditions.iter().flatten() {
        let want = if c.type_ == "Ready" || c.type_ == "ContainersReady" {
            now()
        } else {
            earlier()
        };
        assert_eq!(c.last_transition_time, Some(Time(want)), "{}", c.type_);
    }

    // First status ever: start time and transition times are now.
    assert_eq!(first.start_time, Some(Time(now())));
    let types: Vec<&str> = first
        .conditions
        .iter()
        .flatten()
        .map(|c| c.type_.as_str())
        .collect();
    assert_eq!(
        types,
        vec![
            "PodReadyToStartContainers",
            "Initialized",
            "Ready",
            "ContainersReady",
            "PodScheduled"
        ]
    );
    assert_eq!(cond(&first, "PodScheduled").status, "True");
}

#[test]
fn ready_to_start_containers_follows_the_sandbox() {
    let cases = [
        (
            "ready sandbox with IP",
            vec![sandbox(true, &["10.0.0.5"])],
            "True",
        ),
        ("no sandbox", vec![], "False"),
        (
            "sandbox not ready",
            vec![sandbox(false, &["10.0.0.5"])],
            "False",
        ),
    ];
    for (name, sandboxes, want) in cases {
        let mut case = Case::new(pod("Always", &[], &["a"]), vec![]);
        case.observed.sandboxes = sandboxes;
        assert_eq!(
            cond(&case.compute(), "PodReadyToStartContainers").status,
            want,
            "{name}"
        );
    }
}

#[test]
fn pod_level_fields() {
    let mut p = pod("Always", &[], &["a"]);
    if let Some(spec) = p.spec.as_mut() {
        spec.containers[0].resources = Some(ResourceRequirements {
            limits: Some(BTreeMap::from([
                ("cpu".to_string(), Quantity("1".into())),
                ("memory".to_string(), Quantity("1Gi".into())),
            ])),
            ..Default::default()
        });
    }
    p.metadata.generation = Some(7);
    let s = Case::new(p, vec![running("a", 10)]).compute();
    assert_eq!(s.qos_class.as_deref(), Some("Guaranteed"));
    assert_eq!(s.pod_ip.as_deref(), Some("10.0.0.5"));
    assert_eq!(s.host_ip.as_deref(), Some("192.168.1.10"));
    assert_eq!(
        s.host_ips.as_ref().map(|v| v[0].ip.as_str()),
        Some("192.168.1.10")
    );
    assert_eq!(s.observed_generation, Some(7));
    assert_eq!(cond(&s, "Ready").observed_generation, Some(7));

    // Host-network pods without IPs of their own report the node's.
    let mut p = pod("Always", &[], &["a"]);
    if let Some(spec) = p.spec.as_mut() {
        spec.host_network = Some(true);
    }
    let observed = observed(vec![running("a", 10)]);
    let empty = BTreeMap::new();
    let waiting = BTreeMap::new();
    let s = compute_pod_status(&StatusInput {
        pod: &p,
        observed: &observed,
        waiting: &waiting,
        readiness: &empty,
        started: &empty,
        previous: None,
        pod_ips: &[],
        host_ips: &["192.168.1.10".to_string()],
        terminating: false,
        runtime_name: "containerd",
        evicted: None,
        disruption: None,
        now: now(),
    });
    assert_eq!(s.pod_ip.as_deref(), Some("192.168.1.10"));
    assert_eq!(s.qos_class.as_deref(), Some("BestEffort"));
}

#[test]
fn ephemeral_containers_get_statuses_without_probe_flags() {
    let mut p = pod("Always", &[], &["a"]);
    if let Some(spec) = p.spec.as_mut() {
        spec.ephemeral_containers = Some(vec![k8s_openapi::api::core::v1::EphemeralContainer {
            name: "debug".into(),
            image: Some("busybox".into()),
            ..Default::default()
        }]);
    }
    let s = Case::new(p, vec![running("a", 10), running("debug", 20)]).compute();
    let debug = s
        .ephemeral_container_statuses
        .as_ref()
        .and_then(|v| v.iter().find(|c| c.name == "debug"))
        .expect("ephemeral status");
    assert_eq!(state_of(debug), "running");
    assert!(!debug.ready);
    assert_eq!(debug.started, None);
    assert_eq!(
        phase(&s),
        "Running",
        "ephemeral containers do not count for the phase"
    );
    assert!(
        s.container_statuses
            .iter()
            .flatten()
            .all(|c| c.name != "debug"),
        "not a regular container"
    );
}
