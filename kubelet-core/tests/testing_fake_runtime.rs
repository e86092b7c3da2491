//! The contract of the fake runtime: containerd's answers, lazy exits under paused time,
//! stop semantics, filters, fault injection and call accounting.
#![cfg(feature = "testing")]

use std::time::Duration;

use kubelet_core::Runtime;
use kubelet_core::RuntimeError;
use kubelet_core::labels;
use kubelet_core::runtime::ExecResult;
use kubelet_core::runtime::{
    ContainerConfig, ContainerMetadata, ContainerState, ListFilter, NamespaceMode,
    PodSandboxConfig, SandboxMetadata, SandboxState,
};
use kubelet_core::testing::{ContainerBehavior, ContainerMatch, ExecReply, FakeRuntime, Method};

const IMAGE: &str = "docker.io/library/busybox:1.36";

fn sandbox_config(name: &str, uid: &str) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: SandboxMetadata {
            name: name.into(),
            uid: uid.into(),
            namespace: "default".into(),
            attempt: 0,
        },
        hostname: name.into(),
        log_directory: format!("/var/log/pods/default_{name}_{uid}"),
        labels: labels::pod_labels("default", name, uid),
        ..PodSandboxConfig::default()
    }
}

fn container_config(sandbox: &PodSandboxConfig, name: &str, attempt: u32) -> ContainerConfig {
    let mut l = sandbox.labels.clone();
    l.insert(labels::CONTAINER_NAME.into(), name.into());
    ContainerConfig {
        metadata: ContainerMetadata {
            name: name.into(),
            attempt,
        },
        image: IMAGE.into(),
        command: vec!["sh".into(), "-c".into(), "sleep 3600".into()],
        labels: l,
        log_path: format!("{name}/{attempt}.log"),
        ..ContainerConfig::default()
    }
}

fn runtime() -> FakeRuntime {
    FakeRuntime::with_images([IMAGE])
}

/// A ready sandbox for pod `name` and a started container `c` in it.
async fn running(rt: &FakeRuntime, name: &str) -> (String, String, PodSandboxConfig) {
    let sb = sandbox_config(name, &format!("uid-{name}"));
    let sid = rt.run_pod_sandbox(&sb).await.unwrap();
    let cid = rt
        .create_container(&sid, &container_config(&sb, "c", 0), &sb)
        .await
        .unwrap();
    rt.start_container(&cid).await.unwrap();
    (sid, cid, sb)
}

fn is_hex64(id: &str) -> bool {
    id.len() == 64
        && id
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
}

#[tokio::test(start_paused = true)]
async fn ids_are_hex_and_distinct_and_status_is_full() {
    let rt = runtime();
    let (sid, cid, _) = running(&rt, "web").await;
    assert!(is_hex64(&sid) && is_hex64(&cid) && sid != cid);

    let sb = rt.pod_sandbox_status(&sid).await.unwrap();
    assert_eq!(sb.state, SandboxState::Ready);
    assert_eq!(sb.ips.len(), 1);
    assert!(sb.netns_path.is_some());

    let st = rt.container_status(&cid).await.unwrap();
    assert_eq!(st.state, ContainerState::Running);
    assert_eq!(st.sandbox_id, sid);
    assert!(st.created_at > 0 && st.started_at >= st.created_at);
    assert_eq!(st.finished_at, 0);
    assert_eq!(st.log_path, "/var/log/pods/default_web_uid-web/c/0.log");
    assert!(st.image_ref.contains("@sha256:"));
}

#[tokio::test(start_paused = true)]
async fn create_refusals() {
    let rt = runtime();
    let sb = sandbox_config("web", "uid-web");
    let cfg = container_config(&sb, "c", 0);
    let err = rt.create_container("nope", &cfg, &sb).await.unwrap_err();
    assert!(err.is_not_found(), "{err}");

    let sid = rt.run_pod_sandbox(&sb).await.unwrap();
    let mut other_image = cfg.clone();
    other_image.image = "nginx".into();
    let err = rt
        .create_container(&sid, &other_image, &sb)
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(err.to_string().contains("image not found"), "{err}");

    rt.create_container(&sid, &cfg, &sb).await.unwrap();
    let err = rt.create_container(&sid, &cfg, &sb).await.unwrap_err();
    assert!(matches!(err, RuntimeError::AlreadyExists(_)), "{err}");

    rt.stop_pod_sandbox(&sid).await.unwrap();
    let err = rt
        .create_container(&sid, &container_config(&sb, "c", 1), &sb)
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(err.to_string().contains("no running task"), "{err}");

    // The same sandbox name (metadata) cannot be taken twice while the first exists.
    let err = rt.run_pod_sandbox(&sb).await.unwrap_err();
    assert!(matches!(err, RuntimeError::AlreadyExists(_)), "{err}");
    rt.remove_pod_sandbox(&sid).await.unwrap();
    rt.run_pod_sandbox(&sb).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn host_network_sandbox_rejects_hostname_and_has_no_ip() {
    let rt = runtime();
    let mut sb = sandbox_config("h", "uid-h");
    sb.network = NamespaceMode::Node;
    assert!(rt.run_pod_sandbox(&sb).await.is_err());
    sb.hostname.clear();
    let sid = rt.run_pod_sandbox(&sb).await.unwrap();
    let st = rt.pod_sandbox_status(&sid).await.unwrap();
    assert!(st.ips.is_empty() && st.netns_path.is_none());
    assert_eq!(st.network, NamespaceMode::Node);
}

#[tokio::test(start_paused = true)]
async fn start_refusals() {
    let rt = runtime();
    let (sid, cid, sb) = running(&rt, "web").await;
    let err = rt.start_container(&cid).await.unwrap_err();
    assert!(err.to_string().contains("CONTAINER_RUNNING"), "{err}");
    assert!(rt.start_container("nope").await.unwrap_err().is_not_found());

    // A created container in a sandbox that stopped meanwhile fails to start and is marked
    // exited with containerd's StartError.
    let created = rt
        .create_container(&sid, &container_config(&sb, "d", 0), &sb)
        .await
        .unwrap();
    rt.stop_pod_sandbox(&sid).await.unwrap();
    let err = rt.start_container(&created).await.unwrap_err();
    assert!(err.to_string().contains("is not running"), "{err}");
    let st = rt.container_status(&created).await.unwrap();
    assert_eq!(st.state, ContainerState::Exited);
    assert_eq!((st.exit_code, st.reason.as_str()), (128, "StartError"));
    let err = rt.start_container(&created).await.unwrap_err();
    assert!(err.to_string().contains("CONTAINER_EXITED"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn fail_start_behaviour_is_a_start_error() {
    let rt = runtime();
    rt.set_behavior(
        ContainerMatch::container("web", "c"),
        ContainerBehavior::fail_start("exec: \"nope\": executable file not found in $PATH"),
    );
    let sb = sandbox_config("web", "uid-web");
    let sid = rt.run_pod_sandbox(&sb).await.unwrap();
    let cid = rt
        .create_container(&sid, &container_config(&sb, "c", 0), &sb)
        .await
        .unwrap();
    let err = rt.start_container(&cid).await.unwrap_err();
    assert!(
        err.to_string().contains("executable file not found"),
        "{err}"
    );
    let st = rt.container_status(&cid).await.unwrap();
    assert_eq!((st.state, st.exit_code), (ContainerState::Exited, 128));
    assert_eq!(st.started_at, 0);
    assert!(st.message.contains("executable file not found"));
}

#[tokio::test(start_paused = true)]
async fn fail_create_matches_by_image() {
    let rt = runtime();
    rt.set_behavior(
        ContainerMatch::image("busybox:1.36"),
        ContainerBehavior::fail_create("no space left on device"),
    );
    let sb = sandbox_config("web", "uid-web");
    let sid = rt.run_pod_sandbox(&sb).await.unwrap();
    let err = rt
        .create_container(&sid, &container_config(&sb, "c", 0), &sb)
        .await
        .unwrap_err();
    assert!(
        matches!(err, RuntimeError::Other(ref m) if m.contains("no space")),
        "{err}"
    );
    assert!(rt.containers().is_empty());
}

#[tokio::test(start_paused = true)]
async fn lazy_exit_under_paused_time() {
    let rt = runtime();
    rt.set_behavior(
        ContainerMatch::command_contains("sleep 3600"),
        ContainerBehavior::exit(3, Duration::from_secs(5)),
    );
    let (_, cid, _) = running(&rt, "job").await;
    let started = rt.container_status(&cid).await.unwrap().started_at;

    tokio::time::advance(Duration::from_secs(4)).await;
    assert_eq!(
        rt.container_status(&cid).await.unwrap().state,
        ContainerState::Running
    );

    tokio::time::advance(Duration::from_secs(10)).await;
    let st = rt.container_status(&cid).await.unwrap();
    assert_eq!(st.state, ContainerState::Exited);
    assert_eq!(st.exit_code, 3);
    assert_eq!(st.reason, "Error");
    // The exit happened at start + 5 s, not when it was looked at.
    assert_eq!(st.finished_at - st.started_at, 5_000_000_000);
    assert_eq!(st.started_at, started);

    // list leaves the details out, as CRI's ListContainers does.
    let listed = rt.list_containers(&ListFilter::all()).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].state, ContainerState::Exited);
    assert_eq!(
        (
            listed[0].exit_code,
            listed[0].started_at,
            listed[0].finished_at
        ),
        (0, 0, 0)
    );
    assert!(listed[0].reason.is_empty() && listed[0].log_path.is_empty());
    assert!(listed[0].created_at > 0);
}

#[tokio::test(start_paused = true)]
async fn clock_follows_paused_time() {
    let rt = runtime();
    let (_, first, sb) = running(&rt, "a").await;
    tokio::time::advance(Duration::from_secs(60)).await;
    let sid = rt
        .run_pod_sandbox(&sandbox_config("b", "uid-b"))
        .await
        .unwrap();
    let second = rt
        .create_container(&sid, &container_config(&sb, "c", 0), &sb)
        .await
        .unwrap();
    let a = rt.container_status(&first).await.unwrap().created_at;
    let b = rt.container_status(&second).await.unwrap().created_at;
    assert!(b - a >= 60_000_000_000 && b - a < 61_000_000_000);
}

#[tokio::test(start_paused = true)]
async fn completed_and_oom_reasons() {
    let rt = runtime();
    rt.set_behavior(
        ContainerMatch::named("c"),
        ContainerBehavior::exit(0, Duration::ZERO),
    );
    rt.set_behavior(
        ContainerMatch::pod("oom"),
        ContainerBehavior::oom_killed(Duration::from_secs(1)),
    );
    let (_, ok, _) = running(&rt, "ok").await;
    let st = rt.container_status(&ok).await.unwrap();
    assert_eq!(
        (st.state, st.reason.as_str()),
        (ContainerState::Exited, "Completed")
    );

    let (_, oom, _) = running(&rt, "oom").await;
    tokio::time::advance(Duration::from_secs(1)).await;
    let st = rt.container_status(&oom).await.unwrap();
    assert_eq!((st.exit_code, st.reason.as_str()), (137, "OOMKilled"));
}

#[tokio::test(start_paused = true)]
async fn stop_honouring_term_is_immediate() {
    let rt = runtime();
    let (_, cid, _) = running(&rt, "web").await;
    let before = tokio::time::Instant::now();
    rt.stop_container(&cid, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(before.elapsed(), Duration::ZERO);
    let st = rt.container_status(&cid).await.unwrap();
    assert_eq!((st.state, st.exit_code), (ContainerState::Exited, 0));
    // Stopping an exited container succeeds.
    rt.stop_container(&cid, Duration::from_secs(30))
        .await
        .unwrap();
    assert!(
        rt.stop_container("nope", Duration::ZERO)
            .await
            .unwrap_err()
            .is_not_found()
    );
}

#[tokio::test(start_paused = true)]
async fn stop_with_slow_term_handler_exits_with_its_code() {
    let rt = runtime();
    rt.set_default_behavior(ContainerBehavior::forever().on_term_exit(143, Duration::from_secs(2)));
    let (_, cid, _) = running(&rt, "web").await;
    let before = tokio::time::Instant::now();
    rt.stop_container(&cid, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(before.elapsed(), Duration::from_secs(2));
    let st = rt.container_status(&cid).await.unwrap();
    assert_eq!((st.exit_code, st.reason.as_str()), (143, "Error"));
}

#[tokio::test(start_paused = true)]
async fn stop_ignoring_term_waits_out_the_timeout_then_kills() {
    let rt = std::sync::Arc::new(runtime());
    rt.set_behavior(
        ContainerMatch::any(),
        ContainerBehavior::forever().ignore_term(),
    );
    let (_, cid, _) = running(&rt, "web").await;
    let before = tokio::time::Instant::now();
    let stopper = {
        let rt = rt.clone();
        let cid = cid.clone();
        tokio::spawn(async move { rt.stop_container(&cid, Duration::from_secs(10)).await })
    };
    tokio::time::sleep(Duration::from_secs(5)).await;
    // Still running while the stop waits.
    assert_eq!(
        rt.container_status(&cid).await.unwrap().state,
        ContainerState::Running
    );
    stopper.await.unwrap().unwrap();
    assert_eq!(before.elapsed(), Duration::from_secs(10));
    let st = rt.container_status(&cid).await.unwrap();
    assert_eq!(
        (st.state, st.exit_code, st.reason.as_str()),
        (ContainerState::Exited, 137, "Error")
    );
    assert_eq!(st.finished_at - st.started_at, 10_000_000_000);
}

#[tokio::test(start_paused = true)]
async fn stop_with_zero_timeout_kills_at_once() {
    let rt = runtime();
    let (_, cid, _) = running(&rt, "web").await;
    rt.stop_container(&cid, Duration::ZERO).await.unwrap();
    assert_eq!(rt.container_status(&cid).await.unwrap().exit_code, 137);
}

#[tokio::test(start_paused = true)]
async fn natural_exit_before_the_stop_deadline_wins() {
    let rt = runtime();
    rt.set_default_behavior(ContainerBehavior::exit(0, Duration::from_secs(3)).ignore_term());
    let (_, cid, _) = running(&rt, "web").await;
    let before = tokio::time::Instant::now();
    rt.stop_container(&cid, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(before.elapsed(), Duration::from_secs(3));
    assert_eq!(rt.container_status(&cid).await.unwrap().exit_code, 0);
}

#[tokio::test(start_paused = true)]
async fn stop_sandbox_kills_containers_and_drops_ips() {
    let rt = runtime();
    let (sid, cid, _) = running(&rt, "web").await;
    rt.stop_pod_sandbox(&sid).await.unwrap();
    rt.stop_pod_sandbox(&sid).await.unwrap();
    let sb = rt.pod_sandbox_status(&sid).await.unwrap();
    assert_eq!(sb.state, SandboxState::NotReady);
    assert!(sb.ips.is_empty());
    let st = rt.container_status(&cid).await.unwrap();
    assert_eq!(
        (st.state, st.exit_code, st.reason.as_str()),
        (ContainerState::Exited, 137, "Error")
    );
    assert!(
        rt.stop_pod_sandbox("nope")
            .await
            .unwrap_err()
            .is_not_found()
    );
}

#[tokio::test(start_paused = true)]
async fn remove_semantics() {
    let rt = runtime();
    let (sid, cid, _) = running(&rt, "web").await;
    rt.remove_container("nope").await.unwrap();
    rt.remove_pod_sandbox("nope").await.unwrap();

    rt.set_refuse_remove_running(true);
    let err = rt.remove_container(&cid).await.unwrap_err();
    assert!(err.to_string().contains("to stop first"), "{err}");
    rt.set_refuse_remove_running(false);
    // containerd's default: SIGKILL, then remove.
    rt.remove_container(&cid).await.unwrap();
    assert!(rt.container_status(&cid).await.unwrap_err().is_not_found());

    let (sid2, cid2, _) = running(&rt, "api").await;
    rt.remove_pod_sandbox(&sid2).await.unwrap();
    assert!(
        rt.pod_sandbox_status(&sid2)
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert!(rt.container_status(&cid2).await.unwrap_err().is_not_found());
    assert_eq!(rt.sandboxes().len(), 1);
    assert_eq!(rt.sandboxes()[0].id, sid);
}

#[tokio::test(start_paused = true)]
async fn start_hang_blocks_remove_and_second_start() {
    let rt = std::sync::Arc::new(runtime());
    rt.set_default_behavior(ContainerBehavior::forever().start_delay(Duration::from_secs(20)));
    let sb = sandbox_config("web", "uid-web");
    let sid = rt.run_pod_sandbox(&sb).await.unwrap();
    let cid = rt
        .create_container(&sid, &container_config(&sb, "c", 0), &sb)
        .await
        .unwrap();
    let starter = {
        let rt = rt.clone();
        let cid = cid.clone();
        tokio::spawn(async move { rt.start_container(&cid).await })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(rt.start_container(&cid).await.is_err());
    assert!(rt.remove_container(&cid).await.is_err());
    starter.await.unwrap().unwrap();
    let st = rt.container_status(&cid).await.unwrap();
    assert_eq!(st.state, ContainerState::Running);
}

#[tokio::test(start_paused = true)]
async fn list_filters_by_pod_uid_label() {
    let rt = runtime();
    running(&rt, "a").await;
    running(&rt, "b").await;
    let a = rt.list_containers(&ListFilter::pod("uid-a")).await.unwrap();
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].labels[labels::POD_UID], "uid-a");
    assert_eq!(
        rt.list_containers(&ListFilter::all()).await.unwrap().len(),
        2
    );
    let sbs = rt
        .list_pod_sandboxes(&ListFilter::pod("uid-b"))
        .await
        .unwrap();
    assert_eq!(sbs.len(), 1);
    assert_eq!(sbs[0].metadata.name, "b");
    // CRI's list carries no IPs.
    assert!(sbs[0].ips.is_empty());
    assert!(
        rt.list_pod_sandboxes(&ListFilter::pod("x"))
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(start_paused = true)]
async fn images_and_pulls() {
    let rt = FakeRuntime::with_images(["busybox"]);
    assert!(
        rt.image_status("docker.io/library/busybox:latest")
            .await
            .unwrap()
            .is_some()
    );
    assert!(rt.image_status("nginx").await.unwrap().is_none());
    let err = rt.pull_image("nginx", None).await.unwrap_err();
    assert!(matches!(err, RuntimeError::ImagePull(_)), "{err}");

    rt.add_registry_image("nginx:latest");
    rt.set_pull_delay(Duration::from_secs(7));
    let before = tokio::time::Instant::now();
    let image_ref = rt.pull_image("nginx", None).await.unwrap();
    assert_eq!(before.elapsed(), Duration::from_secs(7));
    assert!(image_ref.starts_with("sha256:"));
    let info = rt.image_status("nginx").await.unwrap().unwrap();
    assert_eq!(info.id, image_ref);
    assert_eq!(rt.list_images().await.unwrap().len(), 2);

    rt.remove_image("nginx").await.unwrap();
    rt.remove_image("nginx").await.unwrap();
    assert!(rt.image_status("nginx").await.unwrap().is_none());
}

#[tokio::test(start_paused = true)]
async fn exec_handlers_and_deadlines() {
    let rt = runtime();
    rt.set_exec_handler(ContainerMatch::named("c"), |cmd| {
        if cmd.first().map(String::as_str) == Some("hang") {
            ExecReply::Hang
        } else {
            ExecReply::Done(ExecResult {
                stdout: cmd.join(" ").into_bytes(),
                stderr: Vec::new(),
                exit_code: 7,
            })
        }
    });
    let (_, cid, _) = running(&rt, "web").await;
    let out = rt
        .exec_sync(
            &cid,
            &["cat".into(), "/tmp/x".into()],
            Duration::from_secs(1),
        )
        .await
        .unwrap();
    assert_eq!(
        (out.exit_code, out.stdout.as_slice()),
        (7, b"cat /tmp/x".as_slice())
    );

    let before = tokio::time::Instant::now();
    let err = rt
        .exec_sync(&cid, &["hang".into()], Duration::from_secs(2))
        .await
        .unwrap_err();
    assert!(matches!(err, RuntimeError::DeadlineExceeded(_)), "{err}");
    assert_eq!(before.elapsed(), Duration::from_secs(2));

    rt.kill_container(&cid, 1);
    let err = rt
        .exec_sync(&cid, &[], Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("CONTAINER_EXITED"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn kill_container_exits_now() {
    let rt = runtime();
    let (_, cid, _) = running(&rt, "web").await;
    tokio::time::advance(Duration::from_secs(2)).await;
    assert!(rt.kill_container(&cid, 2));
    assert!(!rt.kill_container(&cid, 2));
    let st = rt.container_status(&cid).await.unwrap();
    assert_eq!((st.state, st.exit_code), (ContainerState::Exited, 2));
    assert_eq!(st.finished_at - st.started_at, 2_000_000_000);
}

#[tokio::test(start_paused = true)]
async fn behaviour_for_a_number_of_times_then_fallback() {
    let rt = runtime();
    rt.set_behavior_times(
        ContainerMatch::container("uid-web", "c"),
        ContainerBehavior::exit(1, Duration::ZERO),
        1,
    );
    let sb = sandbox_config("web", "uid-web");
    let sid = rt.run_pod_sandbox(&sb).await.unwrap();
    let first = rt
        .create_container(&sid, &container_config(&sb, "c", 0), &sb)
        .await
        .unwrap();
    rt.start_container(&first).await.unwrap();
    let second = rt
        .create_container(&sid, &container_config(&sb, "c", 1), &sb)
        .await
        .unwrap();
    rt.start_container(&second).await.unwrap();
    let states: Vec<_> = rt
        .containers_of("web", "c")
        .into_iter()
        .map(|c| (c.metadata.attempt, c.state))
        .collect();
    assert_eq!(
        states,
        vec![(0, ContainerState::Exited), (1, ContainerState::Running)]
    );
}

#[tokio::test(start_paused = true)]
async fn fault_injection_and_call_accounting() {
    let rt = runtime();
    rt.fail_next(Method::RunPodSandbox, 2);
    let sb = sandbox_config("web", "uid-web");
    for _ in 0..2 {
        let err = rt.run_pod_sandbox(&sb).await.unwrap_err();
        assert!(err.is_retryable(), "{err}");
    }
    let sid = rt.run_pod_sandbox(&sb).await.unwrap();
    assert_eq!(rt.calls(Method::RunPodSandbox), 3);

    rt.set_outage(true);
    assert!(matches!(
        rt.list_containers(&ListFilter::all()).await,
        Err(RuntimeError::Unavailable(_))
    ));
    assert!(
        rt.pod_sandbox_status(&sid)
            .await
            .unwrap_err()
            .is_retryable()
    );
    rt.set_outage(false);
    assert_eq!(
        rt.pod_sandbox_status(&sid).await.unwrap().state,
        SandboxState::Ready
    );

    let log = rt.call_log();
    assert_eq!(log.len(), 6);
    assert_eq!(log[0].target, "uid-web");
    assert_eq!(log[4].method, Method::PodSandboxStatus);
    assert_eq!(log[4].target, sid);
    assert_eq!(rt.calls_of(Method::PodSandboxStatus).len(), 2);
    rt.clear_calls();
    assert_eq!(rt.calls(Method::RunPodSandbox), 0);
}

#[tokio::test(start_paused = true)]
async fn create_hang_then_sandbox_gone() {
    let rt = std::sync::Arc::new(runtime());
    rt.set_default_behavior(ContainerBehavior::forever().create_delay(Duration::from_secs(4)));
    let sb = sandbox_config("web", "uid-web");
    let sid = rt.run_pod_sandbox(&sb).await.unwrap();
    let creator = {
        let (rt, sid, sb) = (rt.clone(), sid.clone(), sb.clone());
        tokio::spawn(async move {
            rt.create_container(&sid, &container_config(&sb, "c", 0), &sb)
                .await
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    rt.remove_pod_sandbox(&sid).await.unwrap();
    assert!(creator.await.unwrap().unwrap_err().is_not_found());
}

#[tokio::test(start_paused = true)]
async fn stats_grow_with_run_time() {
    let rt = runtime();
    let (_, cid, _) = running(&rt, "web").await;
    tokio::time::advance(Duration::from_secs(10)).await;
    let s = rt.container_stats(&cid).await.unwrap().unwrap();
    assert_eq!(s.cpu_usage_core_nanoseconds, Some(100_000_000));
    assert!(s.memory_working_set_bytes.is_some());
    assert_eq!(rt.list_container_stats().await.unwrap().len(), 1);
    assert!(rt.container_stats("nope").await.unwrap_err().is_not_found());
}
