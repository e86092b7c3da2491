//! End-to-end: the `kubelet` binary makes the QoS and pod cgroups on a real containerd (cgroup
//! v1 with the cgroupfs driver on the project's machines). A static pod with CPU and memory
//! limits and a pod `overhead` gets a pod cgroup sized as the reference sizes it (limits plus
//! overhead), its containers run inside it, and it goes with the pod. Skipped when no
//! containerd can run here (unless `KUBELET_TEST_REQUIRE_CONTAINERD=1`).

mod support {
    // Shared by several test binaries; each uses part of it.
    #[allow(dead_code)]
    pub mod node;
}

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::node::{TestNode, container, pod_cgroup_dirs, running_and_ready, runtime_id, uid};

const IMAGE: &str = kubelet_cri::testing::BUSYBOX_IMAGE;
/// Deadline for a pod to come up or go.
const DEADLINE: Duration = Duration::from_secs(90);
const CGROUP_FS: &str = "/sys/fs/cgroup";

/// The reference's Pod Overhead example: two containers limited to 500m/100Mi and
/// 1500m/100Mi (Guaranteed: requests default to the limits) with a 250m/120Mi overhead.
fn manifest() -> String {
    let script = "trap 'exit 0' TERM; sleep 3600 & wait";
    let container = |name: &str, cpu: &str| {
        format!(
            "  - name: {name}\n    image: {IMAGE}\n    imagePullPolicy: IfNotPresent\n    \
             command: [\"sh\", \"-c\", \"{script}\"]\n    resources:\n      limits:\n        \
             cpu: {cpu}\n        memory: 100Mi\n"
        )
    };
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: overhead\n  namespace: default\nspec:\n  \
         terminationGracePeriodSeconds: 5\n  overhead:\n    cpu: 250m\n    memory: 120Mi\n  \
         containers:\n{}{}",
        container("busybox-ctr", "500m"),
        container("sidecar-ctr", "1500m"),
    )
}

/// The pod's cgroup directory in a v1 hierarchy (`cpu`, `memory`, `pids`).
fn pod_dir(controller: &str, uid: &str) -> PathBuf {
    Path::new(CGROUP_FS)
        .join(controller)
        .join("kubepods")
        .join(format!("pod{uid}"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_cgroup_has_limits_plus_overhead_and_goes_with_the_pod() {
    let Some(mut node) = TestNode::start().await else {
        return;
    };
    if Path::new(CGROUP_FS).join("cgroup.controllers").exists() {
        // The unified layout has other file names; this test reads the v1 ones.
        eprintln!("skipping: cgroup v2 host, this test checks cgroup v1 files");
        node.shutdown().await;
        return;
    }
    node.write_manifest("overhead.yaml", &manifest());
    let pod = node
        .wait_pod("overhead", "Running", DEADLINE, |p| {
            running_and_ready(p, "busybox-ctr") && running_and_ready(p, "sidecar-ctr")
        })
        .await;
    let uid = uid(&pod);
    assert_eq!(
        pod.status.as_ref().and_then(|s| s.qos_class.as_deref()),
        Some("Guaranteed")
    );

    // Guaranteed: directly below kubepods. Memory 100Mi + 100Mi + 120Mi; quota 2250m over
    // the 100 ms period; shares from 2250m of requests (limits, defaulted) with overhead.
    let memory = pod_dir("memory", &uid);
    let cpu = pod_dir("cpu", &uid);
    assert_eq!(read(&memory.join("memory.limit_in_bytes")), "335544320");
    assert_eq!(read(&cpu.join("cpu.cfs_quota_us")), "225000");
    assert_eq!(read(&cpu.join("cpu.cfs_period_us")), "100000");
    assert_eq!(read(&cpu.join("cpu.shares")), "2304");
    // The QoS tiers exist beside it.
    let kubepods_cpu = Path::new(CGROUP_FS).join("cpu/kubepods");
    assert_eq!(read(&kubepods_cpu.join("besteffort/cpu.shares")), "2");
    assert!(kubepods_cpu.join("burstable").is_dir());

    // The containers' processes are inside the pod cgroup, in their own cgroups below it.
    let wanted = format!(":/kubepods/pod{uid}/");
    for name in ["busybox-ctr", "sidecar-ctr"] {
        let id = runtime_id(container(&pod, name).expect("container status"))
            .expect("container id")
            .to_string();
        for controller in ["memory", "cpu"] {
            let script = format!(
                "grep -E '^[0-9]+:([a-z_,]*,)?{controller}(,[a-z_,]*)?{wanted}' /proc/1/cgroup"
            );
            assert_eq!(
                node.exec(&id, &script).await,
                0,
                "{name}: PID 1 not in the pod's {controller} cgroup"
            );
        }
    }
    let mut pids = Vec::new();
    let mut stack = vec![memory.clone()];
    while let Some(dir) = stack.pop() {
        pids.extend(
            read(&dir.join("cgroup.procs"))
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>(),
        );
        if let Ok(entries) = std::fs::read_dir(&dir) {
            stack.extend(
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
    }
    // The pause process and the two containers' shells (with their sleeps) at least.
    assert!(pids.len() >= 3, "processes in the pod cgroup: {pids:?}");

    node.remove_manifest("overhead.yaml");
    node.wait_for(
        "the pod's containers, sandbox and cgroups to go",
        Duration::from_secs(5 + 60),
        async |n| {
            (n.containers(Some(&uid)).await.is_empty()
                && n.sandboxes(Some(&uid)).await.is_empty()
                && pod_cgroup_dirs(&uid).is_empty())
            .then_some(())
        },
    )
    .await;
    assert!(!memory.exists() && !cpu.exists());
    node.shutdown().await;
}

/// Removes the test's stray cgroup directories whatever happens (never anything else).
struct StrayCgroup(Vec<PathBuf>);

impl Drop for StrayCgroup {
    fn drop(&mut self) {
        for dir in &self.0 {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// A pod cgroup that no pod owns (a pod removed while the kubelet was down) is removed by
/// the kubelet's housekeeping; the running pod's stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphaned_pod_cgroup_is_removed() {
    let Some(mut node) = TestNode::start().await else {
        return;
    };
    if Path::new(CGROUP_FS).join("cgroup.controllers").exists() {
        eprintln!("skipping: cgroup v2 host, this test makes cgroup v1 directories");
        node.shutdown().await;
        return;
    }
    node.write_manifest("overhead.yaml", &manifest());
    let pod = node
        .wait_pod("overhead", "Running", DEADLINE, |p| {
            running_and_ready(p, "busybox-ctr")
        })
        .await;
    let uid = uid(&pod);
    // A UID of this test's own: no other pod's cgroup is ever touched.
    let stray = format!("podstray-{}", std::process::id());
    let dirs: Vec<PathBuf> = ["cpu", "memory", "pids"]
        .iter()
        .map(|c| {
            Path::new(CGROUP_FS)
                .join(c)
                .join("kubepods/burstable")
                .join(&stray)
        })
        .collect();
    let _guard = StrayCgroup(dirs.clone());
    for dir in &dirs {
        std::fs::create_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    }
    node.wait_for("the stray pod cgroup to be removed", DEADLINE, async |_| {
        dirs.iter().all(|d| !d.exists()).then_some(())
    })
    .await;
    assert!(
        pod_dir("memory", &uid).is_dir(),
        "the running pod's cgroup went too"
    );
    assert!(pod_dir("cpu", &uid).is_dir());
    node.shutdown().await;
}
