//! Pod and QoS cgroups: scenarios with the fake cgroup manager under the real reconciler and
//! the fake runtime (paused time), and the real cgroupfs driver on this machine's cgroup
//! filesystem under a cgroup root of the test's own (root only).

mod support {
    // Shared by the scenario test files; each uses part of it.
    #[allow(dead_code)]
    pub mod scenario;
}

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kubelet_core::cgroups::convert::cpu_shares;
use kubelet_core::cgroups::{
    CgroupFs, CgroupManager, CgroupName, CgroupSettings, FakeCgroupManager, NodeCgroupResources,
    PodCgroups, ResourceConfig,
};
use kubelet_core::runtime::ContainerState;
use kubelet_core::testing::pods::{ContainerBuilder, container, pod};
use kubelet_core::testing::{ContainerBehavior, ContainerMatch, FakeRuntime, Method};

use support::scenario::{IMAGE, Node, runtime};

const MI: i64 = 1 << 20;

fn list(items: &[(&str, &str)]) -> Option<BTreeMap<String, Quantity>> {
    (!items.is_empty()).then(|| {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
            .collect()
    })
}

fn sized(name: &str, requests: &[(&str, &str)], limits: &[(&str, &str)]) -> ContainerBuilder {
    let (requests, limits) = (list(requests), list(limits));
    container(name, IMAGE).with(move |c| {
        c.resources = Some(ResourceRequirements {
            requests,
            limits,
            ..Default::default()
        });
    })
}

fn with_overhead(p: Pod, overhead: &[(&str, &str)]) -> Pod {
    let mut p = p;
    if let Some(spec) = p.spec.as_mut() {
        spec.overhead = list(overhead);
    }
    p
}

/// A kubelet over `runtime` whose cgroups are `fake`'s, on a 4-CPU, 8 GiB node.
fn start(runtime: Arc<FakeRuntime>, fake: &FakeCgroupManager) -> Node {
    let manager: Arc<dyn CgroupManager> = Arc::new(fake.clone());
    Node::start_configured(
        runtime,
        |config, _| {
            config.cgroups.node_capacity = Some(NodeCgroupResources {
                cpu_milli: 4000,
                memory_bytes: 8192 * MI,
            });
        },
        move |b| b.cgroup_manager(manager),
    )
}

const LIMIT: Duration = Duration::from_secs(60);

fn running(node: &Node, uid: &str) -> bool {
    node.reporter.last_phase(uid).as_deref() == Some("Running")
}

#[tokio::test(start_paused = true)]
async fn qos_hierarchy_is_made_at_start() {
    let fake = FakeCgroupManager::new();
    let node = start(runtime(), &fake);
    node.until(LIMIT, "the QoS cgroups", |_| {
        fake.get("/kubepods/besteffort").is_some()
    })
    .await;
    let kubepods = fake.get("/kubepods").expect("kubepods");
    assert_eq!(kubepods.cpu_shares, Some(4096));
    assert_eq!(kubepods.memory, Some(8192 * MI));
    assert_eq!(
        fake.get("/kubepods/besteffort").unwrap().cpu_shares,
        Some(2)
    );
    assert_eq!(fake.get("/kubepods/burstable").unwrap().cpu_shares, Some(2));
    node.shutdown().await;
}

/// A Burstable pod with an overhead: shares from its requests plus the overhead, the memory
/// limit and CFS quota from its limits plus the overhead (every container declares both),
/// created before its sandbox, which names it as its cgroup parent.
#[tokio::test(start_paused = true)]
async fn burstable_pod_with_overhead_is_sized_with_it() {
    let fake = FakeCgroupManager::new();
    let node = start(runtime(), &fake);
    let p = with_overhead(
        pod("web")
            .uid("uid-b")
            .container(sized(
                "app",
                &[("cpu", "250m"), ("memory", "64Mi")],
                &[("cpu", "500m"), ("memory", "128Mi")],
            ))
            .build(),
        &[("cpu", "100m"), ("memory", "32Mi")],
    );
    node.pods.snapshot(vec![p]);
    node.until(LIMIT, "the pod to run", |n| running(n, "uid-b"))
        .await;
    let cgroup = fake
        .get("/kubepods/burstable/poduid-b")
        .expect("pod cgroup");
    assert_eq!(
        cgroup,
        ResourceConfig {
            cpu_shares: Some(cpu_shares(350)),
            cpu_quota: Some(60_000),
            cpu_period: Some(100_000),
            memory: Some(160 * MI),
            pids_limit: None,
        }
    );
    let sandbox = node.runtime.sandboxes()[0].id.clone();
    let config = node
        .runtime
        .sandbox_config(&sandbox)
        .expect("sandbox config");
    assert_eq!(config.cgroup_parent, "/kubepods/burstable/poduid-b");
    // The Burstable tier covers the pod's request with its overhead.
    assert_eq!(
        fake.get("/kubepods/burstable").unwrap().cpu_shares,
        Some(cpu_shares(350))
    );
    node.shutdown().await;
}

/// The sandbox waits for the pod cgroup: while it cannot be created no sandbox is run and
/// the pod gets the reference's event; once it can, the pod starts.
#[tokio::test(start_paused = true)]
async fn no_sandbox_without_the_pod_cgroup() {
    let fake = FakeCgroupManager::new();
    let node = start(runtime(), &fake);
    node.until(LIMIT, "the QoS cgroups", |_| {
        fake.get("/kubepods/burstable").is_some()
    })
    .await;
    fake.set_fail_create(true);
    node.pods.snapshot(vec![
        pod("web")
            .uid("uid-f")
            .container(sized("app", &[("cpu", "100m")], &[]))
            .build(),
    ]);
    node.until(LIMIT, "the failure event", |n| {
        !n.reporter
            .events_with_reason("FailedCreatePodContainer")
            .is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(
        !node
            .runtime
            .call_log()
            .iter()
            .any(|c| c.method == Method::RunPodSandbox),
        "a sandbox was run without its pod cgroup"
    );
    fake.set_fail_create(false);
    node.until(LIMIT, "the pod to run", |n| running(n, "uid-f"))
        .await;
    assert!(fake.get("/kubepods/burstable/poduid-f").is_some());
    node.shutdown().await;
}

/// BestEffort pods go below `besteffort` with the minimum shares; Guaranteed pods directly
/// below `kubepods` with their limits.
#[tokio::test(start_paused = true)]
async fn best_effort_and_guaranteed_placement() {
    let fake = FakeCgroupManager::new();
    let node = start(runtime(), &fake);
    let best_effort = pod("be")
        .uid("uid-e")
        .container(container("app", IMAGE))
        .build();
    let guaranteed = pod("g")
        .uid("uid-g")
        .container(sized("app", &[], &[("cpu", "1500m"), ("memory", "256Mi")]))
        .build();
    node.pods.snapshot(vec![best_effort, guaranteed]);
    node.until(LIMIT, "both pods to run", |n| {
        running(n, "uid-e") && running(n, "uid-g")
    })
    .await;
    assert_eq!(
        fake.get("/kubepods/besteffort/poduid-e"),
        Some(ResourceConfig {
            cpu_shares: Some(2),
            ..ResourceConfig::default()
        })
    );
    assert_eq!(
        fake.get("/kubepods/poduid-g"),
        Some(ResourceConfig {
            cpu_shares: Some(1536),
            cpu_quota: Some(150_000),
            cpu_period: Some(100_000),
            memory: Some(256 * MI),
            pids_limit: None,
        })
    );
    assert!(fake.get("/kubepods/burstable/poduid-g").is_none());
    let parents: Vec<String> = node
        .runtime
        .sandboxes()
        .iter()
        .filter_map(|s| node.runtime.sandbox_config(&s.id))
        .map(|c| c.cgroup_parent)
        .collect();
    assert!(parents.contains(&"/kubepods/besteffort/poduid-e".to_string()));
    assert!(parents.contains(&"/kubepods/poduid-g".to_string()));
    node.shutdown().await;
}

/// The pod cgroup goes after the pod: when it is destroyed, the runtime holds none of the
/// pod's containers or sandboxes any more.
#[tokio::test(start_paused = true)]
async fn pod_cgroup_destroyed_after_termination() {
    let rt = runtime();
    let seen: Arc<Mutex<Vec<(String, usize, usize)>>> = Arc::default();
    let fake = {
        let rt = rt.clone();
        let seen = seen.clone();
        FakeCgroupManager::new().on_destroy(move |name: &CgroupName| {
            let live_containers = rt
                .containers()
                .iter()
                .filter(|c| c.state == ContainerState::Running)
                .count();
            let sandboxes = rt.sandboxes().len();
            if let Ok(mut seen) = seen.lock() {
                seen.push((name.to_path(), live_containers, sandboxes));
            }
        })
    };
    let node = start(rt, &fake);
    let p = pod("web")
        .uid("uid-t")
        .grace_period(5)
        .container(sized("app", &[("cpu", "100m")], &[]))
        .build();
    node.pods.snapshot(vec![p]);
    node.until(LIMIT, "the pod to run", |n| running(n, "uid-t"))
        .await;
    assert!(fake.get("/kubepods/burstable/poduid-t").is_some());
    node.pods.snapshot(vec![]);
    node.until(LIMIT, "the pod to be removed", |n| {
        n.reporter.removed_pods().contains(&"uid-t".to_string())
    })
    .await;
    assert!(fake.get("/kubepods/burstable/poduid-t").is_none());
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![("/kubepods/burstable/poduid-t".to_string(), 0, 0)],
        "destroyed once, with nothing of the pod left in the runtime"
    );
    // The Burstable tier no longer counts the pod.
    assert_eq!(fake.get("/kubepods/burstable").unwrap().cpu_shares, Some(2));
    node.shutdown().await;
}

/// The Burstable tier's shares are the sum of the Burstable pods' CPU requests (with
/// overhead) as pods come and go.
#[tokio::test(start_paused = true)]
async fn burstable_shares_follow_pods() {
    let fake = FakeCgroupManager::new();
    let node = start(runtime(), &fake);
    let shares = || fake.get("/kubepods/burstable").and_then(|c| c.cpu_shares);
    let a = pod("a")
        .uid("uid-a")
        .grace_period(2)
        .container(sized("app", &[("cpu", "250m")], &[]))
        .build();
    let b = with_overhead(
        pod("b")
            .uid("uid-b")
            .grace_period(2)
            .container(sized("app", &[("cpu", "500m")], &[("memory", "1Gi")]))
            .build(),
        &[("cpu", "250m")],
    );
    let g = pod("g")
        .uid("uid-g")
        .grace_period(2)
        .container(sized("app", &[], &[("cpu", "1"), ("memory", "64Mi")]))
        .build();
    node.pods.snapshot(vec![a.clone()]);
    node.until(LIMIT, "a to run", |n| running(n, "uid-a")).await;
    assert_eq!(shares(), Some(256));
    // A Guaranteed pod does not count.
    node.pods.snapshot(vec![a.clone(), b.clone(), g.clone()]);
    node.until(LIMIT, "b and g to run", |n| {
        running(n, "uid-b") && running(n, "uid-g")
    })
    .await;
    assert_eq!(shares(), Some(cpu_shares(1000)));
    node.pods.snapshot(vec![b.clone(), g.clone()]);
    node.until(LIMIT, "the tier to shrink to b", |_| {
        shares() == Some(cpu_shares(750))
    })
    .await;
    node.pods.snapshot(vec![]);
    node.until(LIMIT, "the tier back at the minimum", |_| {
        shares() == Some(2)
    })
    .await;
    node.until(LIMIT, "every pod cgroup gone", |_| {
        fake.paths().iter().all(|p| !p.contains("/pod"))
    })
    .await;
    node.shutdown().await;
}

/// A finished Burstable pod leaves the Burstable tier's shares (as the reference counts only
/// active pods); its cgroup stays until the pod is removed.
#[tokio::test(start_paused = true)]
async fn finished_pods_leave_the_burstable_tier() {
    let fake = FakeCgroupManager::new();
    let rt = runtime();
    rt.set_behavior(
        ContainerMatch::pod("uid-done"),
        ContainerBehavior::exit(0, Duration::from_secs(5)),
    );
    let node = start(rt, &fake);
    let done = pod("done")
        .uid("uid-done")
        .restart_policy("Never")
        .container(sized("app", &[("cpu", "500m")], &[]))
        .build();
    node.pods.snapshot(vec![done.clone()]);
    node.until(LIMIT, "the pod's cgroup", |_| {
        fake.get("/kubepods/burstable/poduid-done").is_some()
    })
    .await;
    assert_eq!(
        fake.get("/kubepods/burstable").unwrap().cpu_shares,
        Some(512)
    );
    node.until(LIMIT, "the pod to succeed", |n| {
        n.reporter.last_phase("uid-done").as_deref() == Some("Succeeded")
    })
    .await;
    node.until(LIMIT, "the tier to drop the pod", |_| {
        fake.get("/kubepods/burstable").unwrap().cpu_shares == Some(2)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(fake.get("/kubepods/burstable/poduid-done").is_some());
    assert_eq!(fake.get("/kubepods/burstable").unwrap().cpu_shares, Some(2));
    node.pods.snapshot(vec![]);
    node.until(LIMIT, "the pod cgroup to go with the pod", |_| {
        fake.get("/kubepods/burstable/poduid-done").is_none()
    })
    .await;
    node.shutdown().await;
}

/// Pod cgroups that no pod owns (left by an earlier kubelet, or by a pod removed while the
/// kubelet was down) are removed by housekeeping; those of running pods stay.
#[tokio::test(start_paused = true)]
async fn orphaned_pod_cgroups_are_removed() {
    let fake = FakeCgroupManager::new();
    fake.insert("/kubepods/burstable/podstale", ResourceConfig::default());
    fake.insert("/kubepods/podstale-guaranteed", ResourceConfig::default());
    let node = start(runtime(), &fake);
    node.pods.snapshot(vec![
        pod("web")
            .uid("uid-r")
            .container(sized("app", &[("cpu", "100m")], &[]))
            .build(),
    ]);
    node.until(LIMIT, "the pod to run", |n| running(n, "uid-r"))
        .await;
    node.until(LIMIT, "the stale cgroups to go", |_| {
        fake.get("/kubepods/burstable/podstale").is_none()
            && fake.get("/kubepods/podstale-guaranteed").is_none()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(fake.get("/kubepods/burstable/poduid-r").is_some());

    // A pod whose volumes are still there keeps its cgroup until they are gone (a volume of
    // a plugin this kubelet lacks: orphaned-pod-dir housekeeping cannot tear it down).
    let volume = node
        .root
        .join("pods/mounted/volumes/example.com~unknown/data");
    std::fs::create_dir_all(&volume).unwrap();
    fake.insert("/kubepods/besteffort/podmounted", ResourceConfig::default());
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(fake.get("/kubepods/besteffort/podmounted").is_some());
    std::fs::remove_dir(&volume).unwrap();
    node.until(LIMIT, "the cgroup without volumes to go", |_| {
        fake.get("/kubepods/besteffort/podmounted").is_none()
    })
    .await;
    node.shutdown().await;
}

/// `--cgroups-per-qos=false`: no cgroups at all, and the sandbox gets the runtime's default
/// parent.
#[tokio::test(start_paused = true)]
async fn without_cgroups_per_qos_nothing_is_made() {
    let fake = FakeCgroupManager::new();
    let manager: Arc<dyn CgroupManager> = Arc::new(fake.clone());
    let node = Node::start_configured(
        runtime(),
        |config, _| config.cgroups.cgroups_per_qos = false,
        move |b| b.cgroup_manager(manager),
    );
    node.pods.snapshot(vec![
        pod("web")
            .uid("uid-n")
            .container(sized("app", &[("cpu", "100m")], &[]))
            .build(),
    ]);
    node.until(LIMIT, "the pod to run", |n| running(n, "uid-n"))
        .await;
    assert!(fake.calls().is_empty(), "{:?}", fake.calls());
    let sandbox = node.runtime.sandboxes()[0].id.clone();
    assert_eq!(
        node.runtime.sandbox_config(&sandbox).unwrap().cgroup_parent,
        ""
    );
    node.shutdown().await;
}

// ---- the real cgroupfs driver (root) ----

/// Whether this test may touch the machine's cgroups; fails instead of skipping under
/// `KUBELET_TEST_REQUIRE_ROOT=1`.
fn real_cgroups_available(test: &str) -> bool {
    let root = nix::unistd::Uid::effective().is_root();
    let mounted = std::path::Path::new("/sys/fs/cgroup").is_dir();
    if root && mounted {
        return true;
    }
    if std::env::var("KUBELET_TEST_REQUIRE_ROOT").as_deref() == Ok("1") {
        panic!("{test}: needs root and a cgroup filesystem at /sys/fs/cgroup");
    }
    eprintln!("skipping {test}: needs root (set KUBELET_TEST_REQUIRE_ROOT=1 to fail instead)");
    false
}

/// Removes the test's own cgroup root (and kills the test's child) whatever happens.
struct Cleanup {
    fs: CgroupFs,
    root: CgroupName,
    child: Option<std::process::Child>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Err(err) = self.fs.destroy(&self.root) {
            eprintln!("cleanup of {}: {err}", self.root);
        }
    }
}

fn read(path: std::path::PathBuf) -> String {
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_string()
}

/// The real driver on this machine (cgroup v1 here; v2 works the same through its files):
/// the QoS hierarchy and a Burstable pod's cgroup with overhead below a cgroup root of the
/// test's own, then the pod cgroup destroyed with a process still in it (killed first).
#[tokio::test]
async fn real_cgroupfs_pod_cgroup_lifecycle() {
    if !real_cgroups_available("real_cgroupfs_pod_cgroup_lifecycle") {
        return;
    }
    let test_root = format!("/kubelet-rs-cgtest-{}", std::process::id());
    let fs = CgroupFs::new("/sys/fs/cgroup").expect("cgroup filesystem");
    let mut cleanup = Cleanup {
        fs: fs.clone(),
        root: CgroupName::from_path(&test_root),
        child: None,
    };
    let settings = CgroupSettings {
        node_capacity: Some(NodeCgroupResources {
            cpu_milli: 2000,
            memory_bytes: 2048 * MI,
        }),
        pod_pids_limit: 128,
        ..CgroupSettings::default()
    };
    let pods_cgroup = format!("{test_root}/kubepods");
    let cgroups = PodCgroups::new(Arc::new(fs.clone()), settings, &pods_cgroup);
    cgroups.start().expect("QoS cgroups");
    let kubepods = CgroupName::from_path(&pods_cgroup);
    let v2 = fs.version() == kubelet_core::cgroups::CgroupVersion::V2;
    let file = |controller: &str, name: &CgroupName, v1: &str, v2_file: &str| {
        let dir = fs.path(controller, name).expect("controller mounted");
        read(dir.join(if v2 { v2_file } else { v1 }))
    };
    if v2 {
        assert_eq!(file("cpu", &kubepods, "", "cpu.weight"), "79");
        assert_eq!(file("memory", &kubepods, "", "memory.max"), "2147483648");
    } else {
        assert_eq!(file("cpu", &kubepods, "cpu.shares", ""), "2048");
        assert_eq!(
            file("memory", &kubepods, "memory.limit_in_bytes", ""),
            "2147483648"
        );
        assert_eq!(
            file("cpu", &kubepods.child("besteffort"), "cpu.shares", ""),
            "2"
        );
    }

    let p = with_overhead(
        pod("web")
            .uid("uid-real")
            .container(sized(
                "app",
                &[("cpu", "200m"), ("memory", "32Mi")],
                &[("cpu", "500m"), ("memory", "100Mi")],
            ))
            .container(sized(
                "side",
                &[("cpu", "100m")],
                &[("cpu", "1500m"), ("memory", "100Mi")],
            ))
            .build(),
        &[("cpu", "250m"), ("memory", "120Mi")],
    );
    let name = cgroups.ensure_pod(&p).expect("pod cgroup");
    assert_eq!(
        name.to_path(),
        format!("{pods_cgroup}/burstable/poduid-real")
    );
    assert!(fs.exists(&name));
    if v2 {
        assert_eq!(file("memory", &name, "", "memory.max"), "335544320");
        assert_eq!(file("cpu", &name, "", "cpu.max"), "225000 100000");
        assert_eq!(file("pids", &name, "", "pids.max"), "128");
    } else {
        // limits 500m + 1500m and 100Mi + 100Mi, plus 250m and 120Mi of overhead.
        assert_eq!(
            file("memory", &name, "memory.limit_in_bytes", ""),
            "335544320"
        );
        assert_eq!(file("cpu", &name, "cpu.cfs_quota_us", ""), "225000");
        assert_eq!(file("cpu", &name, "cpu.cfs_period_us", ""), "100000");
        // requests 200m + 100m + 250m.
        assert_eq!(file("cpu", &name, "cpu.shares", ""), "563");
        assert_eq!(file("pids", &name, "pids.max", ""), "128");
        assert_eq!(
            file("cpu", &kubepods.child("burstable"), "cpu.shares", ""),
            "563"
        );
    }

    // A process left in the pod cgroup: killed, then the cgroup removed.
    let child = std::process::Command::new("sleep")
        .arg("1000")
        .spawn()
        .expect("spawn sleep");
    let pid = child.id();
    cleanup.child = Some(child);
    let controllers: &[&str] = if v2 {
        &["cpu"]
    } else {
        &["cpu", "memory", "pids"]
    };
    for controller in controllers {
        let procs = fs.path(controller, &name).unwrap().join("cgroup.procs");
        std::fs::write(&procs, pid.to_string()).expect("move the child into the pod cgroup");
    }
    assert_eq!(fs.pids(&name).unwrap(), vec![pid as i32]);
    cgroups.destroy_pod("uid-real").await.expect("destroy");
    assert!(!fs.exists(&name));
    for controller in controllers {
        assert!(!fs.path(controller, &name).unwrap().exists());
    }
    let status = cleanup.child.as_mut().unwrap().wait().expect("reap");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(9), "{status}");
    cleanup.child = None;
    assert!(!cgroups.is_active("uid-real"));
    if !v2 {
        assert_eq!(
            file("cpu", &kubepods.child("burstable"), "cpu.shares", ""),
            "2"
        );
    }
}
