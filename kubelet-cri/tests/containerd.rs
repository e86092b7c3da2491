//! `CriRuntime` against a real containerd, started per test by
//! `kubelet_cri::testing::TestContainerd` (the tests skip when that cannot run here).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kubelet_core::Runtime;
use kubelet_core::RuntimeError;
use kubelet_core::labels;
use kubelet_core::runtime::{
    ContainerConfig, ContainerMetadata, ContainerState, ContainerStatus, ListFilter, NamespaceMode,
    PodSandboxConfig, RuntimeStatus, SandboxMetadata, SandboxState, StreamOptions,
};
use kubelet_cri::testing::{BUSYBOX_IMAGE, PAUSE_IMAGE, TestContainerd};
use kubelet_cri::{CriOptions, CriRuntime};

/// Generous: the machine is shared and small.
const DEADLINE: Duration = Duration::from_secs(60);

fn sandbox_config(
    env: &TestContainerd,
    name: &str,
    uid: &str,
    host_network: bool,
) -> PodSandboxConfig {
    let log_directory = env.log_dir().join(format!("default_{name}_{uid}"));
    // The kubelet creates the pod's log directory before it asks for the sandbox.
    std::fs::create_dir_all(&log_directory).unwrap();
    let mut labels = labels::pod_labels("default", name, uid);
    labels.insert(labels::KUBELET_TYPE.into(), "podsandbox".into());
    PodSandboxConfig {
        metadata: SandboxMetadata {
            name: name.into(),
            uid: uid.into(),
            namespace: "default".into(),
            attempt: 0,
        },
        // A private UTS namespace is impossible with the host's network.
        hostname: if host_network {
            String::new()
        } else {
            name.into()
        },
        log_directory: log_directory.display().to_string(),
        labels,
        annotations: BTreeMap::from([("test/annotation".into(), "yes".into())]),
        cgroup_parent: format!("/kubepods/besteffort/pod{uid}"),
        network: if host_network {
            NamespaceMode::Node
        } else {
            NamespaceMode::Pod
        },
        ..Default::default()
    }
}

fn container_config(sandbox: &PodSandboxConfig, name: &str, script: &str) -> ContainerConfig {
    let mut labels = labels::pod_labels(
        &sandbox.metadata.namespace,
        &sandbox.metadata.name,
        &sandbox.metadata.uid,
    );
    labels.insert(labels::CONTAINER_NAME.into(), name.into());
    ContainerConfig {
        metadata: ContainerMetadata {
            name: name.into(),
            attempt: 0,
        },
        image: BUSYBOX_IMAGE.into(),
        command: vec!["sh".into(), "-c".into(), script.into()],
        labels,
        annotations: BTreeMap::from([(labels::CONTAINER_RESTART_COUNT.into(), "0".into())]),
        log_path: format!("{name}/0.log"),
        security: kubelet_core::runtime::LinuxSecurityContext {
            namespace_network: sandbox.network,
            ..Default::default()
        },
        ..Default::default()
    }
}

async fn run_container(
    rt: &CriRuntime,
    sandbox_id: &str,
    sandbox: &PodSandboxConfig,
    name: &str,
    script: &str,
) -> String {
    let id = rt
        .create_container(
            sandbox_id,
            &container_config(sandbox, name, script),
            sandbox,
        )
        .await
        .unwrap();
    rt.start_container(&id).await.unwrap();
    id
}

async fn wait_for_state(rt: &CriRuntime, id: &str, state: ContainerState) -> ContainerStatus {
    let started = Instant::now();
    loop {
        let status = rt.container_status(id).await.unwrap();
        if status.state == state {
            return status;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "container {id} never reached {state:?}: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn version_names_containerd() {
    let Some(env) = TestContainerd::start().await else {
        return;
    };
    let rt = env.runtime().await;
    let v = rt.version().await.unwrap();
    assert_eq!(v.runtime_name, "containerd");
    assert_eq!(v.runtime_api_version, "v1");
    assert!(!v.runtime_version.is_empty());
}

/// The harness gives containerd a CNI config, so both conditions the kubelet requires hold.
#[tokio::test]
async fn status_reports_runtime_and_network_ready() {
    let Some(env) = TestContainerd::start().await else {
        return;
    };
    let rt = env.runtime().await;
    let status = rt.status().await.unwrap();
    for type_ in [RuntimeStatus::RUNTIME_READY, RuntimeStatus::NETWORK_READY] {
        let condition = status
            .condition(type_)
            .unwrap_or_else(|| panic!("no {type_} condition in {status:?}"));
        assert!(condition.status, "{condition:?}");
    }
}

#[tokio::test]
async fn pod_network_sandbox_has_an_ip_and_host_network_one_does_not() {
    let Some(env) = TestContainerd::start().await else {
        return;
    };
    let rt = env.runtime().await;

    let pod = sandbox_config(&env, "net", "uid-net", false);
    let id = rt.run_pod_sandbox(&pod).await.unwrap();
    let status = rt.pod_sandbox_status(&id).await.unwrap();
    assert_eq!(status.id, id);
    assert_eq!(status.state, SandboxState::Ready);
    assert_eq!(status.metadata, pod.metadata);
    assert_eq!(status.network, NamespaceMode::Pod);
    assert!(status.created_at > 0);
    assert_eq!(status.labels, pod.labels);
    assert_eq!(status.annotations["test/annotation"], "yes");
    assert_eq!(status.ips.len(), 1, "{status:?}");
    assert!(status.ips[0].starts_with("10.89."), "{status:?}");
    // Non-verbose status: no netns path.
    assert_eq!(status.netns_path, None);

    let host = sandbox_config(&env, "host", "uid-host", true);
    let host_id = rt.run_pod_sandbox(&host).await.unwrap();
    let host_status = rt.pod_sandbox_status(&host_id).await.unwrap();
    assert_eq!(host_status.state, SandboxState::Ready);
    assert_eq!(host_status.network, NamespaceMode::Node);
    assert!(
        host_status.ips.iter().all(|ip| !ip.starts_with("10.89.")),
        "{host_status:?}"
    );

    // Verbose status carries the network namespace path for the pod-network sandbox.
    let verbose = CriRuntime::connect(
        env.endpoint(),
        CriOptions {
            verbose_sandbox_status: true,
            request_timeout: Duration::from_secs(30),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let netns = verbose.pod_sandbox_status(&id).await.unwrap().netns_path;
    let netns = netns.expect("verbose status names the netns");
    assert!(std::path::Path::new(&netns).exists(), "{netns}");

    rt.stop_pod_sandbox(&id).await.unwrap();
    let stopped = rt.pod_sandbox_status(&id).await.unwrap();
    assert_eq!(stopped.state, SandboxState::NotReady);
    rt.remove_pod_sandbox(&id).await.unwrap();
    rt.stop_pod_sandbox(&host_id).await.unwrap();
    rt.remove_pod_sandbox(&host_id).await.unwrap();
}

#[tokio::test]
async fn container_output_lands_in_cri_log_and_exit_is_reported() {
    let Some(env) = TestContainerd::start().await else {
        return;
    };
    let rt = env.runtime().await;
    let pod = sandbox_config(&env, "logs", "uid-logs", false);
    let sb = rt.run_pod_sandbox(&pod).await.unwrap();

    let id = run_container(&rt, &sb, &pod, "echo", "echo hello-from-cri; echo oops >&2").await;
    let status = wait_for_state(&rt, &id, ContainerState::Exited).await;
    assert_eq!(status.exit_code, 0);
    assert_eq!(status.reason, "Completed");
    assert_eq!(status.sandbox_id, sb);
    assert_eq!(status.metadata.name, "echo");
    // No order between the two: containerd stamps the start after the task started, and a
    // container this short may have exited (and been stamped by the shim) before that.
    assert!(
        status.started_at > 0 && status.finished_at > 0,
        "{status:?}"
    );
    assert!(status.created_at > 0 && status.created_at <= status.started_at);
    assert_eq!(status.image, BUSYBOX_IMAGE);
    assert!(status.image_ref.starts_with("sha256:"), "{status:?}");
    assert_eq!(status.labels[labels::CONTAINER_NAME], "echo");
    assert_eq!(status.annotations[labels::CONTAINER_RESTART_COUNT], "0");
    let expected_log = std::path::Path::new(&pod.log_directory).join("echo/0.log");
    assert_eq!(status.log_path, expected_log.display().to_string());

    let log = std::fs::read_to_string(&expected_log).unwrap();
    let stdout_line = log
        .lines()
        .find(|l| l.ends_with(" stdout F hello-from-cri"))
        .unwrap_or_else(|| panic!("no CRI stdout line in {log:?}"));
    // `<RFC3339Nano> stdout F <line>`
    let timestamp = stdout_line.split(' ').next().unwrap();
    assert!(
        timestamp.len() > 20 && timestamp.contains('T'),
        "{stdout_line}"
    );
    assert!(
        log.lines().any(|l| l.ends_with(" stderr F oops")),
        "{log:?}"
    );

    let failing = run_container(&rt, &sb, &pod, "fail", "exit 3").await;
    let status = wait_for_state(&rt, &failing, ContainerState::Exited).await;
    assert_eq!(status.exit_code, 3);
    assert_eq!(status.reason, "Error");
    assert!(status.finished_at > 0);
}

#[tokio::test]
async fn stop_container_sends_term_then_honours_timeout() {
    let Some(env) = TestContainerd::start().await else {
        return;
    };
    let rt = env.runtime().await;
    let pod = sandbox_config(&env, "stop", "uid-stop", false);
    let sb = rt.run_pod_sandbox(&pod).await.unwrap();

    let polite = run_container(
        &rt,
        &sb,
        &pod,
        "polite",
        "trap 'exit 0' TERM; sleep 3600 & wait",
    )
    .await;
    wait_for_state(&rt, &polite, ContainerState::Running).await;
    let started = Instant::now();
    rt.stop_container(&polite, Duration::from_secs(30))
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "SIGTERM was not delivered: stop took {:?}",
        started.elapsed()
    );
    let status = rt.container_status(&polite).await.unwrap();
    assert_eq!(status.state, ContainerState::Exited);
    assert_eq!(status.exit_code, 0);

    // A container that ignores SIGTERM is killed once the timeout passes.
    let stubborn = run_container(
        &rt,
        &sb,
        &pod,
        "stubborn",
        "trap '' TERM; while :; do sleep 1; done",
    )
    .await;
    wait_for_state(&rt, &stubborn, ContainerState::Running).await;
    let started = Instant::now();
    rt.stop_container(&stubborn, Duration::from_secs(2))
        .await
        .unwrap();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(2),
        "killed before the timeout: {took:?}"
    );
    let status = rt.container_status(&stubborn).await.unwrap();
    assert_eq!(status.state, ContainerState::Exited);
    assert_eq!(status.exit_code, 137, "{status:?}");

    // Stopping an exited container succeeds.
    rt.stop_container(&polite, Duration::from_secs(1))
        .await
        .unwrap();
}

#[tokio::test]
async fn exec_sync_returns_output_and_times_out() {
    let Some(env) = TestContainerd::start().await else {
        return;
    };
    let rt = env.runtime().await;
    let pod = sandbox_config(&env, "exec", "uid-exec", false);
    let sb = rt.run_pod_sandbox(&pod).await.unwrap();
    let id = run_container(
        &rt,
        &sb,
        &pod,
        "main",
        "trap 'exit 0' TERM; sleep 3600 & wait",
    )
    .await;
    wait_for_state(&rt, &id, ContainerState::Running).await;

    let cmd: Vec<String> = ["sh", "-c", "echo out; echo err >&2; exit 7"]
        .map(String::from)
        .to_vec();
    let result = rt
        .exec_sync(&id, &cmd, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(result.stdout, b"out\n");
    assert_eq!(result.stderr, b"err\n");
    assert_eq!(result.exit_code, 7);

    let hang: Vec<String> = ["sleep", "30"].map(String::from).to_vec();
    let started = Instant::now();
    let err = rt
        .exec_sync(&id, &hang, Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(matches!(err, RuntimeError::DeadlineExceeded(_)), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "exec timeout not enforced: {:?}",
        started.elapsed()
    );

    // Stats of a running container.
    let stats = rt
        .container_stats(&id)
        .await
        .unwrap()
        .expect("stats sample");
    assert_eq!(stats.id, id);
    assert_eq!(stats.metadata.name, "main");
    assert!(stats.memory_working_set_bytes.is_some(), "{stats:?}");
    assert!(stats.cpu_usage_core_nanoseconds.is_some(), "{stats:?}");
    let all = rt.list_container_stats().await.unwrap();
    assert!(all.iter().any(|s| s.id == id), "{all:?}");
}

#[tokio::test]
async fn images_status_list_and_failed_pull() {
    let Some(env) = TestContainerd::start().await else {
        return;
    };
    let rt = env.runtime().await;

    assert_eq!(
        rt.image_status("docker.io/library/absent:nope")
            .await
            .unwrap(),
        None
    );
    let busybox = rt
        .image_status(BUSYBOX_IMAGE)
        .await
        .unwrap()
        .expect("busybox imported");
    assert!(busybox.id.starts_with("sha256:"), "{busybox:?}");
    assert!(
        busybox.repo_tags.iter().any(|t| t == BUSYBOX_IMAGE),
        "{busybox:?}"
    );
    assert!(busybox.size > 0);

    let images = rt.list_images().await.unwrap();
    for want in [BUSYBOX_IMAGE, PAUSE_IMAGE] {
        assert!(
            images.iter().any(|i| i.repo_tags.iter().any(|t| t == want)),
            "{want} missing from {images:?}"
        );
    }

    let err = rt
        .pull_image("registry.invalid/nothing/here:1", None)
        .await
        .unwrap_err();
    assert!(matches!(err, RuntimeError::ImagePull(_)), "{err:?}");
    assert!(
        err.to_string().contains("registry.invalid/nothing/here:1"),
        "{err}"
    );

    // Removing an absent image succeeds.
    rt.remove_image("docker.io/library/absent:nope")
        .await
        .unwrap();
}

#[tokio::test]
async fn image_fs_info_names_a_mounted_directory_and_image_removal_by_id() {
    let Some(env) = TestContainerd::start().await else {
        return;
    };
    let rt = env.runtime().await;
    let filesystems = rt.image_fs_info().await.unwrap();
    let fs = filesystems.first().expect("one image filesystem");
    // containerd's snapshotter directory below its own root: image GC statfs's it.
    assert!(
        std::path::Path::new(&fs.mountpoint).is_dir(),
        "{filesystems:?}"
    );
    // containerd measures its snapshots in the background: a number, possibly 0 this early.
    assert!(fs.used_bytes.is_some(), "{filesystems:?}");

    // Image GC removes by image ID.
    let nonroot = rt
        .image_status(kubelet_cri::testing::BUSYBOX_NONROOT_IMAGE)
        .await
        .unwrap()
        .expect("imported");
    rt.remove_image(&nonroot.id).await.unwrap();
    assert_eq!(
        rt.image_status(kubelet_cri::testing::BUSYBOX_NONROOT_IMAGE)
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn list_filters_by_pod_uid() {
    let Some(env) = TestContainerd::start().await else {
        return;
    };
    let rt = env.runtime().await;
    let a = sandbox_config(&env, "a", "uid-a", false);
    let b = sandbox_config(&env, "b", "uid-b", false);
    let sa = rt.run_pod_sandbox(&a).await.unwrap();
    let sb = rt.run_pod_sandbox(&b).await.unwrap();
    let ca = run_container(&rt, &sa, &a, "one", "sleep 3600").await;
    let cb = run_container(&rt, &sb, &b, "two", "sleep 3600").await;

    let all = rt.list_pod_sandboxes(&ListFilter::all()).await.unwrap();
    assert!(all.iter().any(|s| s.id == sa) && all.iter().any(|s| s.id == sb));

    let only_a = rt
        .list_pod_sandboxes(&ListFilter::pod("uid-a"))
        .await
        .unwrap();
    assert_eq!(only_a.len(), 1, "{only_a:?}");
    assert_eq!(only_a[0].id, sa);
    assert_eq!(only_a[0].metadata.uid, "uid-a");
    assert_eq!(only_a[0].state, SandboxState::Ready);
    assert_eq!(labels::pod_uid_of(&only_a[0].labels), Some("uid-a"));

    let containers_b = rt.list_containers(&ListFilter::pod("uid-b")).await.unwrap();
    assert_eq!(containers_b.len(), 1, "{containers_b:?}");
    assert_eq!(containers_b[0].id, cb);
    assert_eq!(containers_b[0].sandbox_id, sb);
    assert_eq!(containers_b[0].metadata.name, "two");
    assert_eq!(containers_b[0].image, BUSYBOX_IMAGE);

    let all_containers = rt.list_containers(&ListFilter::all()).await.unwrap();
    assert!(all_containers.iter().any(|c| c.id == ca));
    assert!(all_containers.iter().any(|c| c.id == cb));

    assert!(
        rt.list_containers(&ListFilter::pod("uid-none"))
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn removal_is_idempotent_and_unknown_ids_are_not_found() {
    let Some(env) = TestContainerd::start().await else {
        return;
    };
    let rt = env.runtime().await;
    let pod = sandbox_config(&env, "rm", "uid-rm", false);
    let sb = rt.run_pod_sandbox(&pod).await.unwrap();
    let id = run_container(&rt, &sb, &pod, "gone", "true").await;
    wait_for_state(&rt, &id, ContainerState::Exited).await;

    rt.remove_container(&id).await.unwrap();
    rt.remove_container(&id).await.unwrap();
    let err = rt.container_status(&id).await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");

    rt.stop_pod_sandbox(&sb).await.unwrap();
    rt.stop_pod_sandbox(&sb).await.unwrap();
    rt.remove_pod_sandbox(&sb).await.unwrap();
    rt.remove_pod_sandbox(&sb).await.unwrap();
    rt.stop_pod_sandbox(&sb).await.unwrap();
    let err = rt.pod_sandbox_status(&sb).await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    assert!(
        rt.list_pod_sandboxes(&ListFilter::pod("uid-rm"))
            .await
            .unwrap()
            .is_empty()
    );

    let bogus = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    for err in [
        rt.container_status(bogus).await.unwrap_err(),
        rt.start_container(bogus).await.unwrap_err(),
        rt.exec_sync(bogus, &["true".to_string()], Duration::from_secs(5))
            .await
            .unwrap_err(),
        rt.pod_sandbox_status(bogus).await.unwrap_err(),
    ] {
        assert!(err.is_not_found(), "{err:?}");
    }
    rt.stop_container(bogus, Duration::from_secs(1))
        .await
        .unwrap();
    rt.remove_container(bogus).await.unwrap();
}

/// One plain HTTP GET (no upgrade) to a URL of the streaming server: the status code.
async fn plain_get_status(url: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").expect("http URL");
    let (host, path) = rest.split_at(rest.find('/').expect("a path"));
    let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).await.unwrap();
    let line = String::from_utf8_lossy(&head).to_string();
    line[9..12]
        .parse()
        .unwrap_or_else(|_| panic!("status line {line:?}"))
}

#[tokio::test]
async fn streaming_calls_hand_out_urls_and_the_log_reopens() {
    let Some(env) = TestContainerd::start().await else {
        return;
    };
    let rt = env.runtime().await;
    let pod = sandbox_config(&env, "stream", "uid-stream", false);
    let sb = rt.run_pod_sandbox(&pod).await.unwrap();
    let script = "trap 'exit 0' TERM; while true; do echo tick; sleep 0.2; done & wait";
    let id = run_container(&rt, &sb, &pod, "main", script).await;
    wait_for_state(&rt, &id, ContainerState::Running).await;

    let opts = StreamOptions {
        stdin: true,
        stdout: true,
        stderr: true,
        tty: false,
    };
    let cmd: Vec<String> = ["sh", "-c", "echo hi"].map(String::from).to_vec();
    let exec = rt.exec_stream(&id, &cmd, opts).await.unwrap();
    let attach = rt.attach_stream(&id, opts).await.unwrap();
    let forward = rt.port_forward_stream(&sb, &[8080]).await.unwrap();
    // containerd's streaming server, on the address the test containerd is configured with.
    for (url, kind) in [
        (&exec, "/exec/"),
        (&attach, "/attach/"),
        (&forward, "/portforward/"),
    ] {
        assert!(
            url.starts_with("http://127.0.0.1:") && url.contains(kind),
            "{url}"
        );
    }
    // A request that does not upgrade is refused by the streaming server itself (the URL
    // is live: the kubelet's proxy will carry the client's upgrade there).
    assert_eq!(plain_get_status(&exec).await, 400);
    let unknown = rt
        .exec_stream("no-such-container", &cmd, opts)
        .await
        .unwrap_err();
    assert!(unknown.is_not_found(), "{unknown:?}");

    // Log rotation as the kubelet does it: rename, then ReopenContainerLog; new output lands
    // in a new file at the same path.
    let log = std::path::Path::new(&pod.log_directory).join("main/0.log");
    let rotated = log.with_extension("log.20261202-000000");
    std::fs::rename(&log, &rotated).unwrap();
    rt.reopen_container_log(&id).await.unwrap();
    let started = Instant::now();
    while !std::fs::read_to_string(&log).is_ok_and(|l| l.contains(" stdout F tick")) {
        assert!(
            started.elapsed() < DEADLINE,
            "no output in the reopened log"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(std::fs::read_to_string(&rotated).unwrap().contains("tick"));
}
