use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};

use super::*;
use crate::labels;
use crate::runtime::{
    ContainerMetadata, ContainerState, ContainerStatus, NamespaceMode, PodSandboxStatus,
    SandboxMetadata, SandboxState,
};

fn container(name: &str) -> Container {
    Container {
        name: name.into(),
        image: Some("busybox:local".into()),
        ..Default::default()
    }
}

fn pod(policy: &str, init: &[&str], regular: &[&str]) -> Pod {
    Pod {
        spec: Some(PodSpec {
            restart_policy: Some(policy.into()),
            init_containers: if init.is_empty() {
                None
            } else {
                Some(init.iter().map(|n| container(n)).collect())
            },
            containers: regular.iter().map(|n| container(n)).collect(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn sandbox(id: &str, attempt: u32, ready: bool) -> PodSandboxStatus {
    PodSandboxStatus {
        id: id.into(),
        metadata: SandboxMetadata {
            attempt,
            ..Default::default()
        },
        state: if ready {
            SandboxState::Ready
        } else {
            SandboxState::NotReady
        },
        created_at: i64::from(attempt),
        network: NamespaceMode::Pod,
        ..Default::default()
    }
}

/// A container of the pod spec as the runtime holds it: `state` is `run`, `ok` (exited 0),
/// `fail` (exited 1) or `created`.
fn observed_container(pod: &Pod, name: &str, restarts: i32, state: &str) -> ContainerStatus {
    let spec = pod.spec.as_ref().unwrap();
    let c = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == name)
        .cloned()
        .unwrap_or_else(|| container(name));
    let (state, exit_code) = match state {
        "run" => (ContainerState::Running, 0),
        "ok" => (ContainerState::Exited, 0),
        "fail" => (ContainerState::Exited, 1),
        "created" => (ContainerState::Created, 0),
        other => panic!("unknown state {other}"),
    };
    ContainerStatus {
        id: format!("{name}-{restarts}"),
        sandbox_id: "sb".into(),
        metadata: ContainerMetadata {
            name: name.into(),
            attempt: restarts as u32,
        },
        state,
        exit_code,
        created_at: i64::from(restarts),
        annotations: [
            (
                labels::CONTAINER_HASH.to_string(),
                labels::container_hash(&c),
            ),
            (
                labels::CONTAINER_RESTART_COUNT.to_string(),
                restarts.to_string(),
            ),
        ]
        .into(),
        ..Default::default()
    }
}

fn state(sandboxes: Vec<PodSandboxStatus>, containers: Vec<ContainerStatus>) -> PodRuntimeState {
    let mut s = PodRuntimeState {
        uid: "uid".into(),
        sandboxes,
        containers,
    };
    s.sort();
    s
}

fn run_plan(pod: &Pod, observed: &PodRuntimeState, backoff: &[&str]) -> PodActions {
    let in_backoff: BTreeSet<String> = backoff.iter().map(|s| s.to_string()).collect();
    plan(PlanInput {
        pod,
        observed,
        in_backoff: &in_backoff,
        liveness_failed: &BTreeSet::new(),
        startup_failed: &BTreeSet::new(),
    })
}

fn started(actions: &PodActions) -> Vec<(&str, bool, u32)> {
    actions
        .start
        .iter()
        .map(|s| (s.name.as_str(), s.init, s.restart_count))
        .collect()
}

#[test]
fn a_new_pod_gets_a_sandbox_and_all_its_containers() {
    let p = pod("Always", &[], &["a", "b"]);
    let a = run_plan(&p, &state(vec![], vec![]), &[]);
    assert!(a.create_sandbox);
    assert_eq!(a.sandbox_attempt, 0);
    assert_eq!(started(&a), vec![("a", false, 0), ("b", false, 0)]);
}

#[test]
fn a_new_pod_with_init_containers_starts_only_the_first() {
    let p = pod("Always", &["i1", "i2"], &["a"]);
    let a = run_plan(&p, &state(vec![], vec![]), &[]);
    assert!(a.create_sandbox);
    assert_eq!(started(&a), vec![("i1", true, 0)]);
}

#[test]
fn a_running_pod_that_matches_its_spec_needs_nothing() {
    let p = pod("Always", &["i1"], &["a"]);
    let observed = state(
        vec![sandbox("sb", 0, true)],
        vec![
            observed_container(&p, "i1", 0, "ok"),
            observed_container(&p, "a", 0, "run"),
        ],
    );
    let a = run_plan(&p, &observed, &[]);
    assert_eq!(
        a,
        PodActions {
            sandbox_id: Some("sb".into()),
            ..Default::default()
        }
    );
}

/// Each restart policy against each way the only container can have exited.
#[test]
fn restart_policy_table_for_exited_containers() {
    // (policy, exit state, restarted, pod killed)
    let table = [
        ("Always", "ok", true, false),
        ("Always", "fail", true, false),
        ("OnFailure", "ok", false, true),
        ("OnFailure", "fail", true, false),
        ("Never", "ok", false, true),
        ("Never", "fail", false, true),
    ];
    for (policy, exit, restarted, killed) in table {
        let p = pod(policy, &[], &["a"]);
        let observed = state(
            vec![sandbox("sb", 0, true)],
            vec![observed_container(&p, "a", 2, exit)],
        );
        let a = run_plan(&p, &observed, &[]);
        let want: Vec<(&str, bool, u32)> = if restarted {
            vec![("a", false, 3)]
        } else {
            vec![]
        };
        assert_eq!(started(&a), want, "{policy} {exit}");
        assert_eq!(a.kill_pod, killed, "{policy} {exit}");
        assert!(!a.create_sandbox, "{policy} {exit}");
    }
}

#[test]
fn a_container_in_backoff_waits_and_keeps_the_pod_alive() {
    let p = pod("Always", &[], &["a"]);
    let observed = state(
        vec![sandbox("sb", 0, true)],
        vec![observed_container(&p, "a", 1, "fail")],
    );
    let a = run_plan(&p, &observed, &["a"]);
    assert!(a.start.is_empty());
    assert_eq!(a.backing_off, vec!["a".to_string()]);
    assert!(!a.kill_pod);
}

/// Init containers: the state of each, and what the planner does next.
#[test]
fn init_container_table() {
    // (policy, states of i1 and i2 (None: never ran), expected start, pod killed)
    type Row<'a> = (&'a str, [Option<&'a str>; 2], Option<(&'a str, u32)>, bool);
    let table: [Row; 8] = [
        ("Always", [Some("run"), None], None, false),
        ("Always", [Some("ok"), None], Some(("i2", 0)), false),
        ("Always", [Some("fail"), None], Some(("i1", 1)), false),
        ("OnFailure", [Some("fail"), None], Some(("i1", 1)), false),
        ("Never", [Some("fail"), None], None, true),
        ("Never", [Some("ok"), Some("fail")], None, true),
        ("Always", [Some("ok"), Some("ok")], Some(("a", 0)), false),
        ("Never", [Some("ok"), Some("run")], None, false),
    ];
    for (policy, inits, want, killed) in table {
        let p = pod(policy, &["i1", "i2"], &["a"]);
        let containers = ["i1", "i2"]
            .iter()
            .zip(inits)
            .filter_map(|(name, st)| st.map(|st| observed_container(&p, name, 0, st)))
            .collect();
        let observed = state(vec![sandbox("sb", 0, true)], containers);
        let a = run_plan(&p, &observed, &[]);
        let got: Option<(&str, u32)> = a.start.first().map(|s| (s.name.as_str(), s.restart_count));
        assert_eq!(got, want, "{policy} {inits:?}");
        assert!(a.start.len() <= 1, "one init container at a time");
        assert_eq!(a.kill_pod, killed, "{policy} {inits:?}");
    }
}

#[test]
fn a_changed_spec_kills_and_restarts_the_container_without_backoff() {
    let old = pod("Always", &[], &["a"]);
    let observed = state(
        vec![sandbox("sb", 0, true)],
        vec![observed_container(&old, "a", 0, "run")],
    );
    let mut new = old.clone();
    new.spec.as_mut().unwrap().containers[0].image = Some("busybox:other".into());
    let a = run_plan(&new, &observed, &["a"]);
    assert_eq!(
        a.kill,
        vec![ContainerKill {
            id: "a-0".into(),
            name: "a".into(),
            reason: KillReason::SpecChanged
        }]
    );
    assert_eq!(started(&a), vec![("a", false, 1)]);
    assert!(!a.kill_pod);
}

#[test]
fn liveness_failure_restarts_unless_policy_is_never() {
    for (policy, restarted) in [("Always", true), ("OnFailure", true), ("Never", false)] {
        let p = pod(policy, &[], &["a"]);
        let observed = state(
            vec![sandbox("sb", 0, true)],
            vec![observed_container(&p, "a", 0, "run")],
        );
        let failed: BTreeSet<String> = ["a-0".to_string()].into();
        let a = plan(PlanInput {
            pod: &p,
            observed: &observed,
            in_backoff: &BTreeSet::new(),
            liveness_failed: &failed,
            startup_failed: &BTreeSet::new(),
        });
        assert_eq!(a.kill.len(), 1, "{policy}");
        assert_eq!(a.kill[0].reason, KillReason::LivenessFailed);
        assert_eq!(!a.start.is_empty(), restarted, "{policy}");
    }
}

#[test]
fn a_dead_sandbox_is_replaced_with_the_next_attempt() {
    let p = pod("Always", &[], &["a"]);
    let observed = state(
        vec![sandbox("sb", 3, false)],
        vec![observed_container(&p, "a", 5, "fail")],
    );
    let a = run_plan(&p, &observed, &[]);
    assert!(a.kill_pod && a.create_sandbox);
    assert_eq!(a.sandbox_attempt, 4);
    assert_eq!(started(&a), vec![("a", false, 6)]);
}

#[test]
fn a_finished_pod_is_not_brought_back() {
    for (policy, exit) in [("Never", "fail"), ("Never", "ok"), ("OnFailure", "ok")] {
        let p = pod(policy, &[], &["a"]);
        let observed = state(
            vec![sandbox("sb", 0, false)],
            vec![observed_container(&p, "a", 0, exit)],
        );
        let a = run_plan(&p, &observed, &[]);
        assert!(!a.create_sandbox, "{policy} {exit}");
        assert!(a.start.is_empty(), "{policy} {exit}");
    }
}

#[test]
fn a_switch_to_host_network_needs_a_new_sandbox() {
    let mut p = pod("Always", &[], &["a"]);
    p.spec.as_mut().unwrap().host_network = Some(true);
    let observed = state(
        vec![sandbox("sb", 0, true)],
        vec![observed_container(&p, "a", 0, "run")],
    );
    let a = run_plan(&p, &observed, &[]);
    assert!(a.create_sandbox && a.kill_pod);
}

#[test]
fn running_containers_not_in_the_spec_are_killed() {
    let p = pod("Always", &[], &["a"]);
    let observed = state(
        vec![sandbox("sb", 0, true)],
        vec![
            observed_container(&p, "a", 0, "run"),
            observed_container(&p, "gone", 0, "run"),
        ],
    );
    let a = run_plan(&p, &observed, &[]);
    assert_eq!(a.kill.len(), 1);
    assert_eq!(a.kill[0].reason, KillReason::NotInSpec);
    assert_eq!(a.kill[0].name, "gone");
}

#[test]
fn a_created_but_never_started_container_is_started_again() {
    let p = pod("Never", &[], &["a"]);
    let observed = state(
        vec![sandbox("sb", 0, true)],
        vec![observed_container(&p, "a", 0, "created")],
    );
    let a = run_plan(&p, &observed, &[]);
    assert_eq!(started(&a), vec![("a", false, 1)]);
}

#[test]
fn startup_failure_restarts_like_liveness() {
    let p = pod("Always", &[], &["a"]);
    let observed = state(
        vec![sandbox("sb", 0, true)],
        vec![observed_container(&p, "a", 0, "run")],
    );
    let failed: BTreeSet<String> = ["a-0".to_string()].into();
    let a = plan(PlanInput {
        pod: &p,
        observed: &observed,
        in_backoff: &BTreeSet::new(),
        liveness_failed: &BTreeSet::new(),
        startup_failed: &failed,
    });
    assert_eq!(a.kill.len(), 1);
    assert_eq!(a.kill[0].reason, KillReason::StartupFailed);
    assert_eq!(started(&a), vec![("a", false, 1)]);
    assert!(!a.kill_pod);
}

#[test]
fn a_probe_kill_in_backoff_kills_but_waits_to_restart() {
    let p = pod("Always", &[], &["a"]);
    let observed = state(
        vec![sandbox("sb", 0, true)],
        vec![
            observed_container(&p, "a", 1, "run"),
            observed_container(&p, "a", 0, "fail"),
        ],
    );
    let failed: BTreeSet<String> = ["a-1".to_string()].into();
    let backoff: BTreeSet<String> = ["a".to_string()].into();
    let a = plan(PlanInput {
        pod: &p,
        observed: &observed,
        in_backoff: &backoff,
        liveness_failed: &failed,
        startup_failed: &BTreeSet::new(),
    });
    assert_eq!(a.kill.len(), 1);
    assert_eq!(a.kill[0].id, "a-1");
    assert!(a.start.is_empty());
    assert_eq!(a.backing_off, vec!["a".to_string()]);
    // The pod lives on while the container waits.
    assert!(!a.kill_pod);
}
