//! Container log rotation (`kubelet_core::logs::ContainerLogManager`) against a real
//! containerd started by `kubelet_cri::testing::TestContainerd` (skipped when that cannot
//! run here): the rotated file keeps what was written, new output lands in the reopened file,
//! older rotated files are gzipped, and a follower of the log reads across the rotations
//! without losing a line.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kubelet_core::Runtime;
use kubelet_core::labels;
use kubelet_core::logs::{ContainerLogManager, ContainerRunning, LogOptions};
use kubelet_core::runtime::{
    ContainerConfig, ContainerMetadata, ContainerState, PodSandboxConfig, SandboxMetadata,
};
use kubelet_cri::CriRuntime;
use kubelet_cri::testing::{BUSYBOX_IMAGE, TestContainerd};

/// Generous: the machine is shared and small.
const DEADLINE: Duration = Duration::from_secs(60);
/// Rotation size of the test: a few hundred lines.
const MAX_SIZE: u64 = 8 * 1024;

fn sandbox_config(env: &TestContainerd, name: &str, uid: &str) -> PodSandboxConfig {
    let log_directory = env.log_dir().join(format!("default_{name}_{uid}"));
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
        hostname: name.into(),
        log_directory: log_directory.display().to_string(),
        labels,
        cgroup_parent: format!("/kubepods/besteffort/pod{uid}"),
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

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < DEADLINE, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// The rotated files of `log`, sorted.
fn rotated(log: &Path) -> Vec<String> {
    let prefix = format!("{}.", log.file_name().unwrap().to_string_lossy());
    let mut names: Vec<String> = std::fs::read_dir(log.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&prefix))
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn rotation_reopens_the_log_and_a_follower_reads_across_it() {
    let Some(env) = TestContainerd::start().await else {
        return;
    };
    let rt = Arc::new(env.runtime().await);
    let pod = sandbox_config(&env, "rotate", "uid-rotate");
    let sb = rt.run_pod_sandbox(&pod).await.unwrap();
    // Fast, numbered output (bursts of 50 lines) until told to stop.
    let script = "trap 'exit 0' TERM; i=0; while true; do i=$((i+1)); echo \"line $i\"; \
                  if [ $((i % 50)) = 0 ]; then sleep 0.02; fi; done & wait";
    let id = rt
        .create_container(&sb, &container_config(&pod, "main", script), &pod)
        .await
        .unwrap();
    rt.start_container(&id).await.unwrap();
    let log = PathBuf::from(rt.container_status(&id).await.unwrap().log_path);
    assert!(log.ends_with("main/0.log"), "{}", log.display());

    // A follower from the start, as `kubectl logs -f` through the kubelet server.
    let running = {
        let rt = rt.clone();
        let id = id.clone();
        ContainerRunning::new(move || {
            let rt = rt.clone();
            let id = id.clone();
            async move {
                rt.container_status(&id)
                    .await
                    .is_ok_and(|s| s.state == ContainerState::Running)
            }
        })
    };
    wait_until("the container's first output", || size(&log) > 0).await;
    let opts = LogOptions {
        follow: true,
        ..Default::default()
    };
    // Opened before any rotation (container_log_stream opens lazily, at the first poll).
    let mut stream = kubelet_core::logs::open_container_log(log.clone(), opts, running)
        .await
        .unwrap();
    let follower = tokio::spawn(async move {
        let mut out = Vec::new();
        while let Some(chunk) = stream.next().await {
            out.extend_from_slice(&chunk.unwrap());
        }
        String::from_utf8(out).unwrap()
    });

    let runtime: Arc<dyn Runtime> = rt.clone();
    let manager = ContainerLogManager::new(runtime, MAX_SIZE as i64, 3).unwrap();
    for round in 1..=3 {
        wait_until("the log to reach the max size", || size(&log) >= MAX_SIZE).await;
        manager.rotate_once().await.unwrap();
        let files = rotated(&log);
        assert!(!files.is_empty(), "round {round}: nothing rotated");
        // New output lands in the reopened file at the same path.
        wait_until("output in the reopened log", || {
            std::fs::read_to_string(&log).is_ok_and(|l| l.contains(" stdout F line "))
        })
        .await;
        if round < 3 {
            // Rotated files are named to the second: the next rotation gets a new name.
            tokio::time::sleep(Duration::from_millis(1100)).await;
        }
    }
    // maxFiles 3: the current file, one gzipped and the newest rotated one, plain.
    let files = rotated(&log);
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(files[0].ends_with(".gz"), "{files:?}");
    assert!(!files[1].ends_with(".gz"), "{files:?}");
    let newest = std::fs::read_to_string(log.with_file_name(&files[1])).unwrap();
    assert!(newest.contains(" stdout F line "), "{newest}");
    let mut older = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(log.with_file_name(&files[0])).unwrap())
        .read_to_string(&mut older)
        .unwrap();
    assert!(
        older.len() as u64 >= MAX_SIZE && older.contains(" stdout F line "),
        "{older}"
    );

    rt.stop_container(&id, Duration::from_secs(10))
        .await
        .unwrap();
    let followed = tokio::time::timeout(DEADLINE, follower)
        .await
        .expect("the follower ends when the container stops")
        .unwrap();
    // Every line once, in order, from the first: nothing lost or repeated across the
    // rotations.
    let numbers: Vec<u64> = followed
        .lines()
        .map(|l| l.strip_prefix("line ").unwrap().parse().unwrap())
        .collect();
    assert!(
        numbers.len() as u64 > 3 * MAX_SIZE / 100,
        "{} lines",
        numbers.len()
    );
    for (i, n) in numbers.iter().enumerate() {
        assert_eq!(*n, i as u64 + 1, "line {i} of the followed output");
    }

    rt.remove_container(&id).await.unwrap();
    rt.stop_pod_sandbox(&sb).await.unwrap();
    rt.remove_pod_sandbox(&sb).await.unwrap();
}

#[tokio::test]
async fn rotation_below_the_max_size_leaves_the_log() {
    let Some(env) = TestContainerd::start().await else {
        return;
    };
    let rt: Arc<CriRuntime> = Arc::new(env.runtime().await);
    let pod = sandbox_config(&env, "quiet", "uid-quiet");
    let sb = rt.run_pod_sandbox(&pod).await.unwrap();
    let script = "trap 'exit 0' TERM; echo hello; while true; do sleep 1; done & wait";
    let id = rt
        .create_container(&sb, &container_config(&pod, "main", script), &pod)
        .await
        .unwrap();
    rt.start_container(&id).await.unwrap();
    let log = PathBuf::from(rt.container_status(&id).await.unwrap().log_path);
    wait_until("the container's output", || size(&log) > 0).await;

    let runtime: Arc<dyn Runtime> = rt.clone();
    let manager = ContainerLogManager::new(runtime, 1024 * 1024, 5).unwrap();
    assert!(!manager.rotate_container(&id).await.unwrap());
    assert!(rotated(&log).is_empty());

    rt.stop_pod_sandbox(&sb).await.unwrap();
    rt.remove_pod_sandbox(&sb).await.unwrap();
}
