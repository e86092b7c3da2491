//! The planner (`kubelet_core::reconciler::planner::plan`) on representative pods: what one
//! pod worker pays per sync to decide what to do, before any runtime call.
//!
//! `cargo bench --bench planner` (add `-- --quick` for a faster, rougher run).

use std::collections::{BTreeMap, BTreeSet};
use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, HTTPGetAction, Pod, Probe, ResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kubelet_core::labels;
use kubelet_core::reconciler::planner::{PlanInput, plan};
use kubelet_core::reconciler::state::PodRuntimeState;
use kubelet_core::runtime::{
    ContainerMetadata, ContainerState, ContainerStatus, NamespaceMode, PodSandboxStatus,
    SandboxMetadata, SandboxState,
};
use kubelet_core::testing::pods::{PodBuilder, container, pod};

const IMAGE: &str = "registry.example.com/team/app:1.4.2";
const NS: i64 = 1_000_000_000;
/// A fixed creation time, so that inputs are the same on every run.
const T0: i64 = 1_760_000_000 * NS;

/// A container as real manifests have them: command, env, ports, resources and probes, so
/// that the spec hash the planner compares is computed over a realistic amount of JSON.
fn app_container(name: &str) -> Container {
    let quantity = |s: &str| Quantity(s.to_string());
    container(name, IMAGE)
        .command(["/app/server"])
        .args(["--listen=:8080", "--log-level=info"])
        .port(8080)
        .with(|c| {
            c.env = Some(
                (0..6)
                    .map(|i| EnvVar {
                        name: format!("SETTING_{i}"),
                        value: Some(format!("value-{i}")),
                        ..EnvVar::default()
                    })
                    .collect(),
            );
            c.ports.get_or_insert_with(Vec::new).push(ContainerPort {
                container_port: 9090,
                name: Some("metrics".into()),
                ..ContainerPort::default()
            });
            c.resources = Some(ResourceRequirements {
                requests: Some(BTreeMap::from([
                    ("cpu".to_string(), quantity("100m")),
                    ("memory".to_string(), quantity("128Mi")),
                ])),
                limits: Some(BTreeMap::from([("memory".to_string(), quantity("256Mi"))])),
                ..ResourceRequirements::default()
            });
            let http = |path: &str| Probe {
                http_get: Some(HTTPGetAction {
                    path: Some(path.into()),
                    port: IntOrString::Int(8080),
                    ..HTTPGetAction::default()
                }),
                period_seconds: Some(10),
                ..Probe::default()
            };
            c.readiness_probe = Some(http("/ready"));
            c.liveness_probe = Some(http("/healthz"));
        })
        .build()
}

fn with_containers(builder: PodBuilder, names: &[&str]) -> PodBuilder {
    builder.spec(|s| s.containers.extend(names.iter().map(|n| app_container(n))))
}

fn ready_sandbox(uid: &str) -> PodSandboxStatus {
    PodSandboxStatus {
        id: format!("{:0>64}", "5a"),
        metadata: SandboxMetadata {
            name: "pod".into(),
            uid: uid.into(),
            namespace: "default".into(),
            attempt: 0,
        },
        state: SandboxState::Ready,
        created_at: T0,
        ips: vec!["10.88.0.17".into()],
        network: NamespaceMode::Pod,
        labels: labels::pod_labels("default", "pod", uid),
        ..PodSandboxStatus::default()
    }
}

/// A container of `spec` as the runtime reports it, with the annotations the kubelet set at
/// creation (spec hash, restart count).
fn observed(
    uid: &str,
    spec: &Container,
    restart: u32,
    state: ContainerState,
    exit_code: i32,
) -> ContainerStatus {
    let created_at = T0 + i64::from(restart + 1) * 30 * NS;
    ContainerStatus {
        id: format!("{:0>56}{restart:08x}", spec.name.len()),
        sandbox_id: format!("{:0>64}", "5a"),
        metadata: ContainerMetadata {
            name: spec.name.clone(),
            attempt: restart,
        },
        state,
        created_at,
        started_at: created_at + NS / 10,
        finished_at: if state == ContainerState::Exited {
            created_at + 2 * NS
        } else {
            0
        },
        exit_code,
        image: IMAGE.into(),
        image_ref: format!("sha256:{:0>64}", "ab"),
        reason: match (state, exit_code) {
            (ContainerState::Exited, 0) => "Completed".into(),
            (ContainerState::Exited, _) => "Error".into(),
            _ => String::new(),
        },
        labels: {
            let mut l = labels::pod_labels("default", "pod", uid);
            l.insert(labels::CONTAINER_NAME.into(), spec.name.clone());
            l
        },
        annotations: BTreeMap::from([
            (labels::CONTAINER_HASH.into(), labels::container_hash(spec)),
            (labels::CONTAINER_RESTART_COUNT.into(), restart.to_string()),
        ]),
        log_path: format!(
            "/var/log/pods/default_pod_{uid}/{}/{restart}.log",
            spec.name
        ),
        ..ContainerStatus::default()
    }
}

fn uid(p: &Pod) -> String {
    p.metadata.uid.clone().unwrap_or_default()
}

fn spec_containers(p: &Pod) -> (Vec<Container>, Vec<Container>) {
    let spec = p.spec.clone().unwrap_or_default();
    (spec.init_containers.unwrap_or_default(), spec.containers)
}

/// A pod just sent by a source: nothing in the runtime yet. Plan: new sandbox, 3 starts.
fn new_pod() -> (Pod, PodRuntimeState) {
    let p = with_containers(pod("fresh"), &["web", "sidecar", "metrics"]).build();
    let state = PodRuntimeState {
        uid: uid(&p),
        ..PodRuntimeState::default()
    };
    (p, state)
}

/// A pod in its steady state: its init container succeeded, its 5 containers run with the
/// spec hashes they were created with. Plan: nothing to do (the common case of a resync).
fn steady_pod() -> (Pod, PodRuntimeState) {
    let init = container("migrate", IMAGE).command(["/app/migrate", "--up"]);
    let p = with_containers(
        pod("steady").init_container(init),
        &["web", "worker", "cache", "proxy", "metrics"],
    )
    .build();
    let u = uid(&p);
    let (inits, regular) = spec_containers(&p);
    let mut containers = vec![observed(&u, &inits[0], 0, ContainerState::Exited, 0)];
    containers.extend(
        regular
            .iter()
            .map(|c| observed(&u, c, 0, ContainerState::Running, 0)),
    );
    let mut state = PodRuntimeState {
        uid: u.clone(),
        sandboxes: vec![ready_sandbox(&u)],
        containers,
    };
    state.sort();
    (p, state)
}

/// A pod whose one container crashed 6 times (its exited instances are all still there, as
/// the runtime keeps them until garbage collection). Plan: restart it, or report it as
/// backing off when CrashLoopBackOff holds it.
fn crash_looping_pod() -> (Pod, PodRuntimeState) {
    let p = with_containers(pod("crashy"), &["app"]).build();
    let u = uid(&p);
    let (_, regular) = spec_containers(&p);
    let mut state = PodRuntimeState {
        uid: u.clone(),
        sandboxes: vec![ready_sandbox(&u)],
        containers: (0..6)
            .map(|restart| observed(&u, &regular[0], restart, ContainerState::Exited, 1))
            .collect(),
    };
    state.sort();
    (p, state)
}

fn bench_planner(c: &mut Criterion) {
    let none = BTreeSet::new();
    let backing_off = BTreeSet::from(["app".to_string()]);
    let cases = [
        ("new_pod_3_containers", new_pod(), &none, 3),
        ("steady_1_init_5_containers", steady_pod(), &none, 0),
        (
            "crash_loop_in_backoff",
            crash_looping_pod(),
            &backing_off,
            0,
        ),
        ("crash_loop_restart", crash_looping_pod(), &none, 1),
    ];
    let mut group = c.benchmark_group("planner");
    for (name, (p, state), in_backoff, starts) in &cases {
        let input = PlanInput {
            pod: p,
            observed: state,
            in_backoff,
            liveness_failed: &none,
            startup_failed: &none,
        };
        // The inputs mean what their names say: checked once, outside the timing.
        let actions = plan(input);
        assert_eq!(actions.start.len(), *starts, "{name}: {actions:?}");
        assert!(
            !actions.kill_pod || *name == "new_pod_3_containers",
            "{name}"
        );
        if *name == "crash_loop_in_backoff" {
            assert_eq!(actions.backing_off, ["app"]);
        }
        group.bench_function(*name, |b| b.iter(|| plan(black_box(input))));
    }
    group.finish();
}

criterion_group! {
    name = benches;
    // Short: the planner is a pure function with stable timings; this keeps the whole bench
    // under half a minute on a small shared machine.
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50);
    targets = bench_planner
}
criterion_main!(benches);
