//! Reconciler scenarios: the real reconciler against the stateful fake runtime, a channel
//! source and a recording reporter, on tokio's paused time (a 5-minute backoff takes no wall
//! time).

mod support {
    // Shared by the scenario test files; each uses part of it.
    #[allow(dead_code)]
    pub mod scenario;
}

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kubelet_core::runtime::ContainerState;
use kubelet_core::testing::pods::{container, pod};
use kubelet_core::testing::{ContainerBehavior, ContainerMatch, FakeRuntime, Method};
use tokio::time::Instant;

use support::scenario::{IMAGE, Node, runtime};

impl Node {
    fn phase(&self, uid: &str) -> Option<String> {
        self.reporter.last_phase(uid)
    }

    fn restart_count(&self, uid: &str, name: &str) -> Option<i32> {
        self.reporter
            .last_pod_status(uid)?
            .container_statuses?
            .into_iter()
            .find(|c| c.name == name)
            .map(|c| c.restart_count)
    }

    fn waiting_reason(&self, uid: &str, name: &str) -> Option<String> {
        self.reporter
            .last_pod_status(uid)?
            .container_statuses?
            .into_iter()
            .find(|c| c.name == name)?
            .state?
            .waiting?
            .reason
    }
}

/// A node running pod `crash`, whose container `app` exits 1 after a second, every time.
fn crash_looping_pod() -> (std::sync::Arc<FakeRuntime>, Node, Pod) {
    let rt = runtime();
    rt.set_behavior(
        ContainerMatch::container("crash", "app"),
        ContainerBehavior::exit(1, Duration::from_secs(1)),
    );
    let node = Node::start(rt.clone());
    let p = pod("crash").container(container("app", IMAGE)).build();
    node.pods.snapshot(vec![p.clone()]);
    (rt, node, p)
}

fn uid(p: &Pod) -> String {
    p.metadata.uid.clone().unwrap_or_default()
}

#[tokio::test(start_paused = true)]
async fn a_pod_runs_and_reports_running() {
    let node = Node::start(runtime());
    let p = pod("web").container(container("app", IMAGE)).build();
    node.pods.snapshot(vec![p.clone()]);
    node.until(Duration::from_secs(30), "Running", |n| {
        n.phase(&uid(&p)).as_deref() == Some("Running")
    })
    .await;
    let status = node.reporter.last_pod_status(&uid(&p)).expect("status");
    let app = &status
        .container_statuses
        .clone()
        .expect("container statuses")[0];
    assert!(app.ready && app.started == Some(true));
    assert_eq!(app.restart_count, 0);
    assert!(
        status.pod_ip.is_some(),
        "pod IP from the runtime: {status:?}"
    );
    assert_eq!(node.runtime.calls(Method::CreateContainer), 1);
    let reasons: Vec<String> = node
        .reporter
        .events()
        .into_iter()
        .map(|e| e.reason)
        .collect();
    for want in ["Pulled", "Created", "Started"] {
        assert!(reasons.iter().any(|r| r == want), "{want} in {reasons:?}");
    }
    // The /pods view carries the same status.
    let listed = node.handle.pods();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        listed[0].status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Running")
    );
    node.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn crash_loop_backs_off_10s_doubling() {
    let (rt, node, p) = crash_looping_pod();

    // Start times of each container instance, relative to the first.
    node.until(Duration::from_secs(200), "4 restarts", |n| {
        n.runtime.container_instances_of("crash", "app").len() >= 5
    })
    .await;
    let mut starts: Vec<i64> = rt
        .container_instances_of("crash", "app")
        .iter()
        .map(|c| c.created_at)
        .collect();
    starts.sort();
    let gaps: Vec<i64> = starts
        .windows(2)
        .map(|w| (w[1] - w[0]) / 1_000_000_000)
        .collect();
    // Each instance runs 1 s. The first restart is immediate (within a relist), then the
    // kubelet waits 10 s, 20 s, 40 s after each exit.
    let expected_backoff = [0, 10, 20, 40];
    for (gap, backoff) in gaps.iter().zip(expected_backoff) {
        let run_and_detect = 1..=3;
        assert!(
            run_and_detect.contains(&(gap - backoff)),
            "gaps {gaps:?}, expected backoffs {expected_backoff:?}"
        );
    }
    node.until(Duration::from_secs(60), "CrashLoopBackOff", |n| {
        n.waiting_reason(&uid(&p), "app").as_deref() == Some("CrashLoopBackOff")
    })
    .await;
    assert!(node.restart_count(&uid(&p), "app").unwrap_or(0) >= 4);
    assert!(!node.reporter.events_with_reason("BackOff").is_empty());
    node.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn dead_containers_beyond_the_newest_are_removed_with_their_logs() {
    let (rt, node, p) = crash_looping_pod();
    node.until(Duration::from_secs(30), "the first instance exited", |n| {
        n.runtime
            .container_instances_of("crash", "app")
            .first()
            .is_some_and(|c| c.state == ContainerState::Exited)
    })
    .await;
    // The log the runtime would have written for it, and one rotation of it.
    let first = rt.container_instances_of("crash", "app").remove(0);
    assert!(!first.log_path.is_empty());
    let log = std::path::PathBuf::from(&first.log_path);
    std::fs::create_dir_all(log.parent().expect("log dir")).expect("log dir");
    std::fs::write(&log, "x").expect("log");
    let rotated = log.with_file_name(format!(
        "{}.20260101-000000.gz",
        log.file_name().and_then(|n| n.to_str()).unwrap_or_default()
    ));
    std::fs::write(&rotated, "x").expect("rotated log");

    node.until(Duration::from_secs(300), "five instances", |n| {
        n.runtime.container_instances_of("crash", "app").len() >= 5
    })
    .await;
    // Of five instances, the runtime keeps the newest dead one (and a running one, if any).
    let kept = rt.containers_of("crash", "app");
    let dead = kept
        .iter()
        .filter(|c| c.state != ContainerState::Running)
        .count();
    assert!(kept.len() <= 2 && dead <= 1, "{kept:?}");
    assert!(kept.iter().all(|c| c.id != first.id));
    assert!(
        !log.exists() && !rotated.exists(),
        "the first instance's logs are removed"
    );
    // The status still counts every restart and shows the last termination.
    node.until(Duration::from_secs(60), "restart count 4", |n| {
        n.restart_count(&uid(&p), "app").unwrap_or(0) >= 4
    })
    .await;
    let status = node.reporter.last_pod_status(&uid(&p)).expect("status");
    let app = &status.container_statuses.expect("statuses")[0];
    assert!(
        app.last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .is_some_and(|t| t.exit_code == 1),
        "{app:?}"
    );
    node.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn backoff_caps_at_five_minutes() {
    let (rt, node, _) = crash_looping_pod();
    node.until(Duration::from_secs(3600), "9 instances", |n| {
        n.runtime.container_instances_of("crash", "app").len() >= 9
    })
    .await;
    let mut starts: Vec<i64> = rt
        .container_instances_of("crash", "app")
        .iter()
        .map(|c| c.created_at)
        .collect();
    starts.sort();
    let gaps: Vec<i64> = starts
        .windows(2)
        .map(|w| (w[1] - w[0]) / 1_000_000_000)
        .collect();
    // 0, 10, 20, 40, 80, 160, 300, 300 (+ the 1 s run and up to 2 s to notice).
    let last = gaps.last().copied().unwrap_or_default();
    assert!((301..=303).contains(&last), "gaps {gaps:?}");
    assert!((301..=303).contains(&gaps[gaps.len() - 2]), "gaps {gaps:?}");
    node.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn restart_policy_never_ends_in_succeeded_or_failed() {
    for (code, phase) in [(0, "Succeeded"), (3, "Failed")] {
        let rt = runtime();
        rt.set_behavior(
            ContainerMatch::container("job", "app"),
            ContainerBehavior::exit(code, Duration::from_secs(2)),
        );
        let node = Node::start(rt.clone());
        let p = pod("job")
            .restart_policy("Never")
            .container(container("app", IMAGE))
            .build();
        node.pods.snapshot(vec![p.clone()]);
        node.until(Duration::from_secs(60), phase, |n| {
            n.phase(&uid(&p)).as_deref() == Some(phase)
        })
        .await;
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(
            rt.container_instances_of("job", "app").len(),
            1,
            "never restarted"
        );
        assert_eq!(node.phase(&uid(&p)).as_deref(), Some(phase));
        // The finished pod's sandbox is stopped, its container kept for its logs.
        assert!(rt.running_containers().is_empty());
        let status = node.reporter.last_pod_status(&uid(&p)).expect("status");
        let term = status.container_statuses.expect("statuses")[0]
            .state
            .clone()
            .and_then(|s| s.terminated)
            .expect("terminated");
        assert_eq!(term.exit_code, code);
        node.shutdown().await;
    }
}

#[tokio::test(start_paused = true)]
async fn on_failure_restarts_failures_only() {
    let rt = runtime();
    // Later rules take precedence: fail twice, then succeed.
    rt.set_behavior(
        ContainerMatch::container("retry", "app"),
        ContainerBehavior::exit(0, Duration::from_secs(1)),
    );
    rt.set_behavior_times(
        ContainerMatch::container("retry", "app"),
        ContainerBehavior::exit(1, Duration::from_secs(1)),
        2,
    );
    let node = Node::start(rt.clone());
    let p = pod("retry")
        .restart_policy("OnFailure")
        .container(container("app", IMAGE))
        .build();
    node.pods.snapshot(vec![p.clone()]);
    node.until(Duration::from_secs(120), "Succeeded", |n| {
        n.phase(&uid(&p)).as_deref() == Some("Succeeded")
    })
    .await;
    assert_eq!(rt.container_instances_of("retry", "app").len(), 3);
    assert_eq!(node.restart_count(&uid(&p), "app"), Some(2));
    node.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn init_containers_run_one_at_a_time_in_order() {
    let rt = runtime();
    for name in ["init-1", "init-2"] {
        rt.set_behavior(
            ContainerMatch::container("ordered", name),
            ContainerBehavior::exit(0, Duration::from_secs(3)),
        );
    }
    let node = Node::start(rt.clone());
    let p = pod("ordered")
        .init_container(container("init-1", IMAGE))
        .init_container(container("init-2", IMAGE))
        .container(container("app", IMAGE))
        .build();
    node.pods.snapshot(vec![p.clone()]);
    node.until(Duration::from_secs(60), "Running", |n| {
        n.phase(&uid(&p)).as_deref() == Some("Running")
    })
    .await;
    let created: Vec<String> = rt
        .calls_of(Method::CreateContainer)
        .into_iter()
        .map(|c| c.target.rsplit('/').next().unwrap_or_default().to_string())
        .collect();
    assert_eq!(created, vec!["init-1", "init-2", "app"]);
    let i1 = &rt.container_instances_of("ordered", "init-1")[0];
    let i2 = &rt.container_instances_of("ordered", "init-2")[0];
    let i1 = rt_status(&rt, &i1.id).await;
    let i2 = rt_status(&rt, &i2.id).await;
    assert!(
        i2.started_at >= i1.finished_at,
        "init-2 starts after init-1 finished"
    );
    node.shutdown().await;
}

async fn rt_status(rt: &FakeRuntime, id: &str) -> kubelet_core::runtime::ContainerStatus {
    use kubelet_core::Runtime;
    rt.container_status(id).await.expect("status")
}

#[tokio::test(start_paused = true)]
async fn a_failed_init_container_fails_the_pod_under_never() {
    let rt = runtime();
    rt.set_behavior(
        ContainerMatch::container("bad-init", "init"),
        ContainerBehavior::exit(2, Duration::from_secs(1)),
    );
    let node = Node::start(rt.clone());
    let p = pod("bad-init")
        .restart_policy("Never")
        .init_container(container("init", IMAGE))
        .container(container("app", IMAGE))
        .build();
    node.pods.snapshot(vec![p.clone()]);
    node.until(Duration::from_secs(60), "Failed", |n| {
        n.phase(&uid(&p)).as_deref() == Some("Failed")
    })
    .await;
    assert!(
        rt.container_instances_of("bad-init", "app").is_empty(),
        "app never starts"
    );
    assert_eq!(rt.container_instances_of("bad-init", "init").len(), 1);
    node.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn updates_coalesce_and_the_newest_spec_wins() {
    let rt = runtime();
    for tag in ["v1", "v2", "v3", "v4", "v5"] {
        rt.add_local_image(&format!("docker.io/library/busybox:{tag}"));
    }
    let node = Node::start(rt.clone());
    let base = pod("web")
        .container(container("app", "docker.io/library/busybox:v1"))
        .build();
    node.pods.snapshot(vec![base.clone()]);
    node.until(Duration::from_secs(30), "Running", |n| {
        n.phase(&uid(&base)).as_deref() == Some("Running")
    })
    .await;
    rt.clear_calls();
    // Five updates in a row, faster than a sync: only the newest is acted upon.
    for tag in ["v2", "v3", "v4", "v5"] {
        let mut p = base.clone();
        p.spec.as_mut().expect("spec").containers[0].image =
            Some(format!("docker.io/library/busybox:{tag}"));
        node.pods.update(p);
    }
    node.until(Duration::from_secs(30), "v5 running", |n| {
        n.runtime
            .running_containers()
            .iter()
            .any(|c| c.image.ends_with(":v5"))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let created = rt.calls(Method::CreateContainer);
    assert!(
        created <= 2,
        "created {created} containers for 4 coalesced updates"
    );
    assert_eq!(rt.running_containers().len(), 1);
    assert!(!node.reporter.events_with_reason("Killing").is_empty());
    node.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn removal_is_reported_after_the_final_status_and_retried() {
    let rt = runtime();
    let node = Node::start(rt.clone());
    let p = pod("going")
        .grace_period(5)
        .container(container("app", IMAGE))
        .build();
    node.pods.snapshot(vec![p.clone()]);
    node.until(Duration::from_secs(30), "Running", |n| {
        n.phase(&uid(&p)).as_deref() == Some("Running")
    })
    .await;
    // The API server is away while the pod is stopped and removed.
    node.reporter.set_unavailable(true);
    node.pods.snapshot(vec![]);
    node.until(Duration::from_secs(60), "gone from the runtime", |_| {
        rt.sandboxes().is_empty() && rt.containers().is_empty()
    })
    .await;
    assert!(node.reporter.removed_pods().is_empty());
    tokio::time::sleep(Duration::from_secs(30)).await;
    node.reporter.set_unavailable(false);
    node.until(Duration::from_secs(60), "removal reported", |n| {
        n.reporter.removed_pods().contains(&uid(&p))
    })
    .await;
    // The final status (containers terminated) went first; nothing after the removal.
    assert_eq!(
        node.reporter.status_updates_after_removal(&uid(&p)),
        Some(0)
    );
    let last = node.reporter.last_pod_status(&uid(&p)).expect("a status");
    let app = &last.container_statuses.expect("container statuses")[0];
    assert!(
        app.state.as_ref().is_some_and(|s| s.terminated.is_some()),
        "final status: {app:?}"
    );
    node.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn removal_honours_the_grace_period() {
    let rt = runtime();
    rt.set_behavior(
        ContainerMatch::container("slow", "app"),
        ContainerBehavior::forever().ignore_term(),
    );
    let node = Node::start(rt.clone());
    let p = pod("slow")
        .grace_period(20)
        .container(container("app", IMAGE))
        .build();
    node.pods.snapshot(vec![p.clone()]);
    node.until(Duration::from_secs(30), "Running", |n| {
        n.phase(&uid(&p)).as_deref() == Some("Running")
    })
    .await;
    let removed_at = Instant::now();
    node.pods.snapshot(vec![]);
    node.until(Duration::from_secs(60), "removed", |n| {
        n.reporter.removed_pods().contains(&uid(&p))
    })
    .await;
    let took = Instant::now() - removed_at;
    // A container that ignores SIGTERM is killed when the 20 s grace period ends.
    assert!(
        took >= Duration::from_secs(20) && took < Duration::from_secs(23),
        "took {took:?}"
    );
    assert!(
        rt.sandboxes().is_empty() && rt.containers().is_empty(),
        "all removed"
    );
    assert!(node.handle.pods().is_empty());
    node.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_container_that_honours_term_stops_at_once() {
    let node = Node::start(runtime());
    let p = pod("quick")
        .grace_period(30)
        .container(container("app", IMAGE))
        .build();
    node.pods.snapshot(vec![p.clone()]);
    node.until(Duration::from_secs(30), "Running", |n| {
        n.phase(&uid(&p)).as_deref() == Some("Running")
    })
    .await;
    let removed_at = Instant::now();
    node.pods.remove(uid(&p));
    node.until(Duration::from_secs(60), "removed", |n| {
        n.reporter.removed_pods().contains(&uid(&p))
    })
    .await;
    assert!(Instant::now() - removed_at < Duration::from_secs(3));
    node.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_restarted_kubelet_adopts_running_pods_without_restarting_them() {
    let rt = runtime();
    let p = pod("web").container(container("app", IMAGE)).build();
    let node = Node::start(rt.clone());
    node.pods.snapshot(vec![p.clone()]);
    node.until(Duration::from_secs(30), "Running", |n| {
        n.phase(&uid(&p)).as_deref() == Some("Running")
    })
    .await;
    let before: Vec<String> = rt.running_containers().into_iter().map(|c| c.id).collect();
    let rt = node.shutdown().await;
    rt.clear_calls();

    let node = Node::start(rt.clone());
    node.pods.snapshot(vec![p.clone()]);
    node.until(Duration::from_secs(30), "Running again", |n| {
        n.phase(&uid(&p)).as_deref() == Some("Running")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    let after: Vec<String> = rt.running_containers().into_iter().map(|c| c.id).collect();
    assert_eq!(before, after);
    for method in [
        Method::RunPodSandbox,
        Method::CreateContainer,
        Method::StopContainer,
        Method::StopPodSandbox,
    ] {
        assert_eq!(rt.calls(method), 0, "{method:?} after restart");
    }
    node.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn pods_no_source_wants_are_removed_after_the_first_snapshot() {
    let rt = runtime();
    let keep = pod("keep").container(container("app", IMAGE)).build();
    let gone = pod("gone").container(container("app", IMAGE)).build();
    let node = Node::start(rt.clone());
    node.pods.snapshot(vec![keep.clone(), gone.clone()]);
    node.until(Duration::from_secs(30), "both running", |n| {
        n.runtime.running_containers().len() == 2
    })
    .await;
    let rt = node.shutdown().await;

    // The new kubelet's source no longer has `gone`; nothing is touched before its
    // first snapshot arrives.
    let node = Node::start(rt.clone());
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        rt.running_containers().len(),
        2,
        "nothing removed before the source spoke"
    );
    node.pods.snapshot(vec![keep.clone()]);
    node.until(Duration::from_secs(60), "orphan removed", |n| {
        n.runtime
            .containers()
            .iter()
            .all(|c| c.labels.get("io.kubernetes.pod.name").map(String::as_str) != Some("gone"))
    })
    .await;
    let running = rt.running_containers();
    assert_eq!(running.len(), 1);
    assert_eq!(running[0].state, ContainerState::Running);
    node.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn image_pull_errors_back_off() {
    let rt = runtime();
    let node = Node::start(rt.clone());
    let p = pod("nopull")
        .container(container("app", "registry.invalid/nothing:1").pull_policy("IfNotPresent"))
        .build();
    node.pods.snapshot(vec![p.clone()]);
    node.until(Duration::from_secs(30), "ErrImagePull", |n| {
        n.waiting_reason(&uid(&p), "app").as_deref() == Some("ErrImagePull")
    })
    .await;
    node.until(Duration::from_secs(30), "ImagePullBackOff", |n| {
        n.waiting_reason(&uid(&p), "app").as_deref() == Some("ImagePullBackOff")
    })
    .await;
    let pulls_then = rt.calls(Method::PullImage);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        rt.calls(Method::PullImage),
        pulls_then,
        "no pull during the backoff"
    );
    // Once the image exists in the registry, the next try after the backoff succeeds.
    rt.add_registry_image("registry.invalid/nothing:1");
    node.until(Duration::from_secs(120), "Running", |n| {
        n.phase(&uid(&p)).as_deref() == Some("Running")
    })
    .await;
    node.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn pull_policy_never_without_the_image_waits() {
    let rt = runtime();
    let node = Node::start(rt.clone());
    let p = pod("never")
        .container(container("app", "docker.io/library/absent:1").pull_policy("Never"))
        .build();
    node.pods.snapshot(vec![p.clone()]);
    node.until(Duration::from_secs(30), "ErrImageNeverPull", |n| {
        n.waiting_reason(&uid(&p), "app").as_deref() == Some("ErrImageNeverPull")
    })
    .await;
    assert_eq!(rt.calls(Method::PullImage), 0);
    assert_eq!(node.phase(&uid(&p)).as_deref(), Some("Pending"));
    node.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_broken_pod_does_not_disturb_another() {
    let rt = runtime();
    rt.set_behavior(
        ContainerMatch::container("broken", "app"),
        ContainerBehavior::fail_create("no such file or directory: /bin/nothing"),
    );
    let node = Node::start(rt.clone());
    let broken = pod("broken").container(container("app", IMAGE)).build();
    let good = pod("good").container(container("app", IMAGE)).build();
    node.pods.snapshot(vec![broken.clone(), good.clone()]);
    node.until(Duration::from_secs(30), "good Running", |n| {
        n.phase(&uid(&good)).as_deref() == Some("Running")
    })
    .await;
    node.until(Duration::from_secs(30), "CreateContainerError", |n| {
        n.waiting_reason(&uid(&broken), "app").as_deref() == Some("CreateContainerError")
    })
    .await;
    node.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_runtime_outage_restarts_nothing() {
    let rt = runtime();
    let node = Node::start(rt.clone());
    let p = pod("web").container(container("app", IMAGE)).build();
    node.pods.snapshot(vec![p.clone()]);
    node.until(Duration::from_secs(30), "Running", |n| {
        n.phase(&uid(&p)).as_deref() == Some("Running")
    })
    .await;
    let before: Vec<String> = rt.running_containers().into_iter().map(|c| c.id).collect();
    rt.set_outage(true);
    tokio::time::sleep(Duration::from_secs(120)).await;
    rt.set_outage(false);
    tokio::time::sleep(Duration::from_secs(120)).await;
    let after: Vec<String> = rt.running_containers().into_iter().map(|c| c.id).collect();
    assert_eq!(before, after);
    assert_eq!(node.phase(&uid(&p)).as_deref(), Some("Running"));
    assert!(node.handle.healthz().is_ok());
    node.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_host_network_pod_keeps_its_sandbox_and_has_the_node_ip() {
    let rt = runtime();
    let node = Node::start(rt.clone());
    let p = pod("hostnet")
        .host_network()
        .container(container("app", IMAGE))
        .build();
    node.pods.snapshot(vec![p.clone()]);
    node.until(Duration::from_secs(30), "Running", |n| {
        n.phase(&uid(&p)).as_deref() == Some("Running")
    })
    .await;
    // CRI lists carry no namespace modes; the sandbox must not look changed on later syncs.
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(rt.calls(Method::RunPodSandbox), 1);
    assert_eq!(rt.calls(Method::CreateContainer), 1);
    let status = node.reporter.last_pod_status(&uid(&p)).expect("status");
    assert_eq!(status.pod_ip.as_deref(), Some("192.0.2.10"));
    node.shutdown().await;
}
