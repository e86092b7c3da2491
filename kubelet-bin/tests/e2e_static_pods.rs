//! End-to-end: the `kubelet` binary runs static pods from a manifest directory on a real
//! containerd. Each test starts its own containerd (serialised host-wide by
//! `TestContainerd`) and kubelet, and is skipped when no containerd can run here (unless
//! `KUBELET_TEST_REQUIRE_CONTAINERD=1`). A failing test prints the kubelet's log and the tail of
//! containerd's; `KUBELET_E2E_SHOW_LOG=1` prints the kubelet's log for passing tests too.

mod support {
    // Shared by several test binaries; each uses part of it.
    #[allow(dead_code)]
    pub mod node;
}

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;
use kubelet_core::runtime::ContainerState;
use support::node::{
    NODE, TestNode, container, cri_log_lines, phase, pod_cgroup_dirs, running_and_ready,
    runtime_id, status_of, uid,
};

const IMAGE: &str = kubelet_cri::testing::BUSYBOX_IMAGE;
/// Deadline for a pod to come up, restart, or go.
const DEADLINE: Duration = Duration::from_secs(90);

/// A static pod manifest: `name`, then `spec` lines (indented by two spaces already).
fn pod_yaml(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n{spec}"
    )
}

/// A container entry (list item under `containers:` or `initContainers:`) running `script`
/// with sh, image pulled only if absent.
fn container_yaml(name: &str, script: &str) -> String {
    let script = serde_json::to_string(script).expect("quote script");
    format!(
        "  - name: {name}\n    image: {IMAGE}\n    imagePullPolicy: IfNotPresent\n    command: [\"sh\", \"-c\", {script}]\n"
    )
}

/// A script that prints `line`, then idles until SIGTERM, on which it exits 0 at once.
fn serve_script(line: &str) -> String {
    format!("trap 'exit 0' TERM; echo {line}; sleep 3600 & wait")
}

/// `<podLogsDir>/default_<name>-<node>_<uid>/<container>/<attempt>.log`.
fn log_file(
    node: &TestNode,
    name: &str,
    uid: &str,
    container: &str,
    attempt: u32,
) -> std::path::PathBuf {
    node.pod_logs_dir()
        .join(format!("default_{name}-{NODE}_{uid}"))
        .join(container)
        .join(format!("{attempt}.log"))
}

/// Wait until the stdout lines of a CRI log file are `want` (the file may not exist yet).
async fn wait_log(node: &mut TestNode, path: &std::path::Path, want: &[&str]) {
    let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    let what = format!("{} to hold {want:?}", path.display());
    node.wait_for(&what, DEADLINE, async |_| {
        let lines: Vec<String> = cri_log_lines(path)
            .into_iter()
            .filter(|(stream, _)| stream == "stdout")
            .map(|(_, line)| line)
            .collect();
        (lines == want).then_some(())
    })
    .await;
}

fn ts(value: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>) -> Timestamp {
    value.expect("timestamp set").0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_pod_runs_and_logs() {
    let Some(mut node) = TestNode::start().await else {
        return;
    };
    let started = Instant::now();
    node.write_manifest(
        "web.yaml",
        &pod_yaml(
            "web",
            &format!(
                "  containers:\n{}",
                container_yaml("app", &serve_script("hello-from-e2e"))
            ),
        ),
    );
    let pod = node
        .wait_pod("web", "Running, app ready, podIP set", DEADLINE, |p| {
            running_and_ready(p, "app")
                && p.status
                    .as_ref()
                    .and_then(|s| s.pod_ip.as_deref())
                    .is_some_and(|ip| ip.parse::<std::net::IpAddr>().is_ok())
        })
        .await;
    eprintln!("web running after {:?}", started.elapsed());
    let uid = uid(&pod);
    assert_eq!(pod.metadata.namespace.as_deref(), Some("default"));
    let ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone()).unwrap();
    assert!(
        ip.starts_with("10.89."),
        "pod IP {ip} not in the test network"
    );

    let sandboxes = node.sandboxes(Some(&uid)).await;
    assert_eq!(sandboxes.len(), 1, "{sandboxes:?}");
    let containers = node.containers(Some(&uid)).await;
    assert_eq!(containers.len(), 1, "{containers:?}");
    assert_eq!(containers[0].state, ContainerState::Running);
    assert_eq!(
        Some(containers[0].id.as_str()),
        container(&pod, "app").and_then(runtime_id)
    );

    let log = log_file(&node, "web", &uid, "app", 0);
    wait_log(&mut node, &log, &["hello-from-e2e"]).await;
    let text = std::fs::read_to_string(&log).unwrap();
    let first = text.lines().next().unwrap();
    let (time, rest) = first.split_once(' ').unwrap();
    assert!(time.parse::<Timestamp>().is_ok(), "{first}");
    assert_eq!(rest, "stdout F hello-from-e2e");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_policies_always_backs_off_never_completes() {
    let Some(mut node) = TestNode::start().await else {
        return;
    };
    let started = Instant::now();
    node.write_manifest(
        "crash.yaml",
        &pod_yaml(
            "crash",
            &format!(
                "  restartPolicy: Always\n  containers:\n{}",
                container_yaml("app", "echo crashing; exit 3")
            ),
        ),
    );
    node.write_manifest(
        "ok.yaml",
        &pod_yaml(
            "ok",
            &format!(
                "  restartPolicy: Never\n  containers:\n{}",
                container_yaml("app", "echo done; exit 0")
            ),
        ),
    );
    node.write_manifest(
        "fail.yaml",
        &pod_yaml(
            "fail",
            &format!(
                "  restartPolicy: Never\n  containers:\n{}",
                container_yaml("app", "echo failing; exit 1")
            ),
        ),
    );

    let ok = node
        .wait_pod("ok", "Succeeded", DEADLINE, |p| phase(p) == "Succeeded")
        .await;
    let fail = node
        .wait_pod("fail", "Failed", DEADLINE, |p| phase(p) == "Failed")
        .await;
    for (pod, code, reason) in [(&ok, 0, "Completed"), (&fail, 1, "Error")] {
        let app = container(pod, "app").unwrap();
        assert_eq!(app.restart_count, 0);
        let terminated = app.state.as_ref().and_then(|s| s.terminated.as_ref());
        let terminated = terminated.unwrap_or_else(|| panic!("{app:?}"));
        assert_eq!(terminated.exit_code, code);
        assert_eq!(terminated.reason.as_deref(), Some(reason));
    }

    // Always: restarted, with CrashLoopBackOff seen while waiting between attempts.
    let mut saw_backoff = false;
    let crash = node
        .wait_pod(
            "crash",
            "restartCount >= 2 after CrashLoopBackOff",
            DEADLINE,
            |p| {
                let Some(app) = container(p, "app") else {
                    return false;
                };
                let waiting = app.state.as_ref().and_then(|s| s.waiting.as_ref());
                if waiting.and_then(|w| w.reason.as_deref()) == Some("CrashLoopBackOff") {
                    saw_backoff = true;
                }
                saw_backoff && app.restart_count >= 2
            },
        )
        .await;
    eprintln!("crash restarted twice after {:?}", started.elapsed());
    let app = container(&crash, "app").unwrap();
    let last = app
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .unwrap_or_else(|| panic!("no lastState.terminated: {app:?}"));
    assert_eq!(last.exit_code, 3);
    assert_eq!(phase(&crash), "Running");
    // Container GC: of the dead instances only the newest stays in the runtime (from the
    // sync after an instance exits), and the first attempt's log file goes with its
    // container.
    let first_log = node
        .pod_logs_dir()
        .join(format!(
            "default_{}_{}",
            crash.metadata.name.as_deref().unwrap_or_default(),
            uid(&crash)
        ))
        .join("app/0.log");
    let crash_uid = uid(&crash);
    node.wait_for(
        "at most one dead instance in CRI, the first one's log removed",
        DEADLINE,
        async |node| {
            let in_cri = node.containers(Some(&crash_uid)).await;
            let dead = in_cri
                .iter()
                .filter(|c| c.state != ContainerState::Running)
                .count();
            let newest = in_cri.iter().map(|c| c.metadata.attempt).max();
            (dead <= 1 && newest >= Some(2) && !first_log.exists()).then_some(())
        },
    )
    .await;

    // Never: still one container each, long after they exited.
    for (name, pod) in [("ok", &ok), ("fail", &fail)] {
        let containers = node.containers(Some(&uid(pod))).await;
        assert_eq!(containers.len(), 1, "{name}: {containers:?}");
        assert_eq!(containers[0].state, ContainerState::Exited);
        let pod = node.pod(name).await.unwrap();
        assert_eq!(container(&pod, "app").unwrap().restart_count, 0);
    }
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_containers_run_in_order_sharing_an_empty_dir() {
    let Some(mut node) = TestNode::start().await else {
        return;
    };
    let mount = "    volumeMounts:\n    - name: shared\n      mountPath: /data\n";
    let spec = format!(
        "  volumes:\n  - name: shared\n    emptyDir: {{}}\n  initContainers:\n{}{mount}{}{mount}  containers:\n{}{mount}",
        container_yaml("init-1", "echo from-init-1 > /data/file"),
        container_yaml("init-2", "sleep 1; echo from-init-2 >> /data/file"),
        container_yaml(
            "app",
            "trap 'exit 0' TERM; cat /data/file; sleep 3600 & wait"
        ),
    );
    node.write_manifest("init.yaml", &pod_yaml("init", &spec));
    let pod = node
        .wait_pod("init", "Running, app ready", DEADLINE, |p| {
            running_and_ready(p, "app")
        })
        .await;
    let status = pod.status.as_ref().unwrap();
    let init_statuses = status.init_container_statuses.as_ref();
    let terminated = |name: &str| {
        let s = status_of(init_statuses, name).unwrap_or_else(|| panic!("{name}: {status:?}"));
        assert!(s.ready, "{s:?}");
        s.state
            .as_ref()
            .and_then(|st| st.terminated.clone())
            .unwrap_or_else(|| panic!("{name} not terminated: {s:?}"))
    };
    let first = terminated("init-1");
    let second = terminated("init-2");
    for t in [&first, &second] {
        assert_eq!(t.exit_code, 0);
        assert_eq!(t.reason.as_deref(), Some("Completed"));
    }
    assert!(
        ts(first.finished_at.as_ref()) <= ts(second.started_at.as_ref()),
        "init-1 {first:?} / init-2 {second:?}"
    );
    let app_started = container(&pod, "app")
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.running.as_ref())
        .and_then(|r| r.started_at.as_ref());
    assert!(
        ts(second.finished_at.as_ref()) <= ts(app_started),
        "{status:?}"
    );

    let log = log_file(&node, "init", &uid(&pod), "app", 0);
    wait_log(&mut node, &log, &["from-init-1", "from-init-2"]).await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_manifest_replaces_the_pod() {
    let Some(mut node) = TestNode::start().await else {
        return;
    };
    // The container takes a second to stop, so that a new pod started too early overlaps.
    let manifest = |line: &str| {
        pod_yaml(
            "edit",
            &format!(
                "  terminationGracePeriodSeconds: 5\n  containers:\n{}",
                container_yaml(
                    "app",
                    &format!("trap 'sleep 1; exit 0' TERM; echo {line}; sleep 3600 & wait"),
                )
            ),
        )
    };
    node.write_manifest("edit.yaml", &manifest("version-1"));
    let old = node
        .wait_pod("edit", "Running", DEADLINE, |p| running_and_ready(p, "app"))
        .await;
    let old_uid = uid(&old);
    let old_id = runtime_id(container(&old, "app").unwrap())
        .unwrap()
        .to_string();
    let old_log = log_file(&node, "edit", &old_uid, "app", 0);
    wait_log(&mut node, &old_log, &["version-1"]).await;

    let changed = Instant::now();
    node.write_manifest("edit.yaml", &manifest("version-2"));
    // As the reference, a static pod starts only once the previous pod of the same name has
    // terminated: watch the runtime through the switch.
    let mut old_finished: Option<i64> = None;
    let new_sandbox_created = node
        .wait_for("the new pod's sandbox", DEADLINE, async |n| {
            let old = n.container_status(&old_id).await;
            if let Some(old) = &old
                && old.state == ContainerState::Exited
            {
                old_finished = Some(old.finished_at);
            }
            let new_sandbox = n
                .sandboxes(None)
                .await
                .into_iter()
                .filter(|s| s.metadata.uid != old_uid)
                .map(|s| s.created_at)
                .min()?;
            assert!(
                old.as_ref()
                    .is_none_or(|o| o.state == ContainerState::Exited),
                "the new pod's sandbox exists while the old container still runs: {old:?}"
            );
            Some(new_sandbox)
        })
        .await;
    if let Some(finished) = old_finished {
        assert!(
            finished <= new_sandbox_created,
            "new sandbox created at {new_sandbox_created}, before the old container finished at {finished}"
        );
    }
    let new = node
        .wait_pod("edit", "a new UID, Running", DEADLINE, |p| {
            p.metadata.uid.as_deref() != Some(old_uid.as_str()) && running_and_ready(p, "app")
        })
        .await;
    eprintln!("replaced after {:?}", changed.elapsed());
    let new_uid = uid(&new);
    let new_id = runtime_id(container(&new, "app").unwrap())
        .unwrap()
        .to_string();
    assert_ne!(new_id, old_id);

    node.wait_for(
        "the old pod's containers and sandbox to go",
        DEADLINE,
        async |n| {
            (n.containers(Some(&old_uid)).await.is_empty()
                && n.sandboxes(Some(&old_uid)).await.is_empty())
            .then_some(())
        },
    )
    .await;
    let containers = node.containers(None).await;
    assert_eq!(containers.len(), 1, "{containers:?}");
    assert_eq!(containers[0].id, new_id);
    assert_eq!(containers[0].state, ContainerState::Running);
    let pods = node.pods().await.unwrap();
    assert_eq!(pods.len(), 1, "only the new pod is listed");
    let new_log = log_file(&node, "edit", &new_uid, "app", 0);
    wait_log(&mut node, &new_log, &["version-2"]).await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_manifest_stops_and_removes_the_pod_within_grace() {
    let Some(mut node) = TestNode::start().await else {
        return;
    };
    node.write_manifest(
        "gone.yaml",
        &pod_yaml(
            "gone",
            &format!(
                "  terminationGracePeriodSeconds: 5\n  containers:\n{}",
                container_yaml("app", &serve_script("up"))
            ),
        ),
    );
    let pod = node
        .wait_pod("gone", "Running", DEADLINE, |p| running_and_ready(p, "app"))
        .await;
    let uid = uid(&pod);
    assert!(
        !pod_cgroup_dirs(&uid).is_empty(),
        "no pod cgroup found for {uid}"
    );

    let removed = Instant::now();
    node.remove_manifest("gone.yaml");
    // 5 s grace plus generous slack for the rescan and a loaded machine.
    let limit = Duration::from_secs(5 + 30);
    node.wait_for(
        "the pod's containers, sandbox and cgroups to go",
        limit,
        async |n| {
            (n.containers(Some(&uid)).await.is_empty()
                && n.sandboxes(Some(&uid)).await.is_empty()
                && pod_cgroup_dirs(&uid).is_empty())
            .then_some(())
        },
    )
    .await;
    eprintln!("pod removed after {:?}", removed.elapsed());
    node.wait_for("/pods to drop the pod", DEADLINE, async |n| {
        n.pods().await.ok().filter(|p| p.is_empty()).map(|_| ())
    })
    .await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_kubelet_restarts_without_touching_running_containers() {
    let Some(mut node) = TestNode::start().await else {
        return;
    };
    node.write_manifest(
        "steady.yaml",
        &pod_yaml(
            "steady",
            &format!(
                "  containers:\n{}",
                container_yaml("app", &serve_script("steady"))
            ),
        ),
    );
    let pod = node
        .wait_pod("steady", "Running", DEADLINE, |p| {
            running_and_ready(p, "app")
        })
        .await;
    let uid = uid(&pod);
    let id = runtime_id(container(&pod, "app").unwrap())
        .unwrap()
        .to_string();
    let ids = |cs: Vec<kubelet_core::runtime::ContainerStatus>| -> BTreeSet<String> {
        cs.into_iter().map(|c| c.id).collect()
    };
    let before = ids(node.containers(None).await);
    let sandboxes_before: BTreeSet<String> = node
        .sandboxes(None)
        .await
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(before, BTreeSet::from([id.clone()]));
    assert_eq!(sandboxes_before.len(), 1);

    node.kill_kubelet();
    node.start_kubelet().await;
    let again = node
        .wait_pod("steady", "Running again", DEADLINE, |p| {
            running_and_ready(p, "app")
        })
        .await;
    assert_eq!(again.metadata.uid.as_deref(), Some(uid.as_str()));
    assert_eq!(
        runtime_id(container(&again, "app").unwrap()),
        Some(id.as_str())
    );
    assert_eq!(container(&again, "app").unwrap().restart_count, 0);

    // Several relists later, still the same containers and sandbox.
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_secs(10) {
        let now = ids(node.containers(None).await);
        assert_eq!(now, before, "containers changed after the kubelet restart");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let sandboxes_after: BTreeSet<String> = node
        .sandboxes(None)
        .await
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(sandboxes_after, sandboxes_before);
    let containers = node.containers(None).await;
    assert!(
        containers
            .iter()
            .all(|c| c.state == ContainerState::Running),
        "{containers:?}"
    );
    let pod = node.pod("steady").await.unwrap();
    assert!(running_and_ready(&pod, "app"));
    assert_eq!(
        runtime_id(container(&pod, "app").unwrap()),
        Some(id.as_str())
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_manifest_beside_a_good_one() {
    let Some(mut node) = TestNode::start().await else {
        return;
    };
    node.write_manifest(
        "broken.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: broken\nspec:\n  containers:\n  - name: app\n    image: busybox\n    ports:\n    - containerPort: eighty\n",
    );
    node.write_manifest(
        "good.yaml",
        &pod_yaml(
            "good",
            &format!(
                "  containers:\n{}",
                container_yaml("app", &serve_script("good"))
            ),
        ),
    );
    node.wait_pod("good", "Running", DEADLINE, |p| running_and_ready(p, "app"))
        .await;
    let broken = node.manifest_path("broken.yaml").display().to_string();
    node.wait_for(
        "the kubelet log to name the broken file and field",
        DEADLINE,
        async |n| {
            let log = n.kubelet_log();
            log.lines()
                .any(|l| {
                    l.contains(&broken) && l.contains("spec.containers[0].ports[0].containerPort")
                })
                .then_some(())
        },
    )
    .await;
    let pods = node.pods().await.unwrap();
    assert_eq!(pods.len(), 1, "only the good pod runs");
    assert_eq!(node.sandboxes(None).await.len(), 1);
    // A rescan later the good pod is still the same and running.
    let pod = node
        .wait_pod("good", "still Running", DEADLINE, |p| {
            running_and_ready(p, "app")
        })
        .await;
    assert_eq!(container(&pod, "app").unwrap().restart_count, 0);
    node.shutdown().await;
}
