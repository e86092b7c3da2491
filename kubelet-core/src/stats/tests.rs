//! The default provider over the fake runtime, with a cgroup v1 tree, a `/proc` and a kubelet
//! root directory made of fixture files.

use std::path::Path;
use std::sync::Arc;

use super::cadvisor::encode_cadvisor_metrics;
use super::metrics::Format;
use super::{RuntimeStatsProvider, StatsConfig, StatsProvider};
use crate::Runtime;
use crate::runtime::{ContainerConfig, ContainerMetadata, PodSandboxConfig, SandboxMetadata};
use crate::testing::FakeRuntime;
use crate::testing::Method;

fn write(path: &Path, text: &str) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("mkdir");
    }
    std::fs::write(path, text).expect("write fixture");
}

const NET_DEV: &str = "Inter-| Receive | Transmit\n face |bytes packets errs drop fifo frame compressed multicast|bytes packets errs drop fifo colls carrier compressed\n    \
    lo: 5 1 0 0 0 0 0 0 5 1 0 0 0 0 0 0\n  eth0: 1000 10 1 0 0 0 0 0 2000 20 2 0 0 0 0 0\n";

/// A running pod `web` with container `app` in the fake runtime: (pod UID, sandbox ID,
/// container ID).
async fn running_pod(runtime: &FakeRuntime) -> (String, String, String) {
    let sandbox_config = PodSandboxConfig {
        metadata: SandboxMetadata {
            name: "web".into(),
            uid: "uid-1".into(),
            namespace: "default".into(),
            attempt: 0,
        },
        ..Default::default()
    };
    let sandbox = runtime
        .run_pod_sandbox(&sandbox_config)
        .await
        .expect("sandbox");
    let config = ContainerConfig {
        metadata: ContainerMetadata {
            name: "app".into(),
            attempt: 0,
        },
        image: "busybox".into(),
        ..Default::default()
    };
    let id = runtime
        .create_container(&sandbox, &config, &sandbox_config)
        .await
        .expect("create");
    runtime.start_container(&id).await.expect("start");
    ("uid-1".into(), sandbox, id)
}

struct Fixture {
    _dir: tempfile::TempDir,
    config: StatsConfig,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let mut config = StatsConfig::new("node-1");
    config.cgroup_fs_root = root.join("cgroup");
    config.proc_root = root.join("proc");
    config.root_dir = root.join("kubelet");
    config.pod_logs_root = root.join("logs");
    let proc = &config.proc_root;
    write(
        &proc.join("stat"),
        "cpu  100 0 50 1000 0 0 0 0 0 0\nbtime 1700000000\n",
    );
    write(
        &proc.join("meminfo"),
        "MemTotal: 1000000 kB\nMemFree: 400000 kB\nInactive(file): 100000 kB\nAnonPages: 200000 kB\n\
         SwapTotal: 2000 kB\nSwapFree: 1500 kB\n",
    );
    write(&proc.join("self/net/dev"), NET_DEV);
    write(&proc.join("4242/net/dev"), NET_DEV);
    write(&proc.join("sys/kernel/pid_max"), "32768\n");
    std::fs::create_dir_all(config.root_dir.join("pods")).expect("mkdir");
    std::fs::create_dir_all(&config.pod_logs_root).expect("mkdir");
    Fixture { _dir: dir, config }
}

/// A v1 cgroup with `cpu_ns` of CPU and 64 MiB anonymous plus 4 MiB inactive cache.
fn cgroup_v1(root: &Path, relative: &str, cpu_ns: u64, procs: &str) {
    write(
        &root.join("cpuacct").join(relative).join("cpuacct.usage"),
        &format!("{cpu_ns}\n"),
    );
    let mem = root.join("memory").join(relative);
    write(
        &mem.join("memory.usage_in_bytes"),
        &format!("{}\n", 68 << 20),
    );
    write(
        &mem.join("memory.stat"),
        &format!(
            "total_rss {}\ntotal_inactive_file {}\ntotal_pgfault 500\ntotal_pgmajfault 2\n",
            64 << 20,
            4 << 20
        ),
    );
    write(
        &mem.join("memory.limit_in_bytes"),
        &format!("{}\n", 128 << 20),
    );
    write(&mem.join("cgroup.procs"), procs);
}

#[tokio::test]
async fn pods_and_containers_measured_through_their_cgroups() {
    let runtime = Arc::new(FakeRuntime::with_images(["busybox"]));
    let (uid, sandbox, id) = running_pod(&runtime).await;
    let fx = fixture();
    let cg = &fx.config.cgroup_fs_root;
    cgroup_v1(cg, "", 9_000_000_000, "1\n");
    cgroup_v1(cg, "kubepods", 5_000_000_000, "");
    let pod_cg = format!("kubepods/besteffort/pod{uid}");
    cgroup_v1(cg, &pod_cg, 3_000_000_000, "");
    cgroup_v1(cg, &format!("{pod_cg}/{sandbox}"), 1_000, "4242\n");
    cgroup_v1(cg, &format!("{pod_cg}/{id}"), 2_000_000_000, "4243\n4244\n");
    let volume = fx.config.root_dir.join(format!(
        "pods/{uid}/volumes/kubernetes.io~empty-dir/scratch"
    ));
    std::fs::create_dir_all(&volume).expect("mkdir");
    std::fs::write(volume.join("data"), vec![1u8; 256 * 1024]).expect("write");
    write(
        &fx.config
            .pod_logs_root
            .join(format!("default_web_{uid}/app/0.log")),
        &"x".repeat(8192),
    );

    cgroup_v1(cg, "system.slice/kubelet.service", 1_000, "");
    let mut config = fx.config.clone();
    config.kubelet_cgroup = Some("/system.slice/kubelet.service".into());
    config.runtime_cgroup = Some(String::new());
    let provider = RuntimeStatsProvider::new(runtime.clone(), config);
    let first = provider.summary().await.expect("summary");
    let node = &first.node;
    assert_eq!(node.node_name, "node-1");
    assert_eq!(node.start_time.0, 1_700_000_000_000_000_000);
    let node_cpu = node.cpu.as_ref().expect("node cpu");
    assert_eq!(node_cpu.usage_core_nano_seconds, Some(9_000_000_000));
    assert_eq!(node_cpu.usage_nano_cores, None, "one sample has no rate");
    let node_mem = node.memory.as_ref().expect("node memory");
    assert_eq!(node_mem.working_set_bytes, Some(64 << 20));
    assert_eq!(
        node_mem.available_bytes,
        Some(1_000_000 * 1024 - (64 << 20))
    );
    let net = node.network.as_ref().expect("node network");
    assert_eq!(net.default_interface.name, "eth0");
    assert_eq!(
        (
            net.default_interface.rx_bytes,
            net.default_interface.tx_errors
        ),
        (Some(1000), Some(2))
    );
    assert_eq!(net.interfaces.len(), 1, "no loopback");
    assert_eq!(node.rlimit.as_ref().and_then(|r| r.maxpid), Some(32768));
    let swap = node.swap.as_ref().expect("node swap");
    assert_eq!(
        (swap.swap_usage_bytes, swap.swap_available_bytes),
        (Some(500 * 1024), Some(1500 * 1024))
    );
    let system = node.system_containers.as_ref().expect("system containers");
    let names: Vec<&str> = system.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        ["kubelet", "pods"],
        "runtime and misc are not configured"
    );
    assert_eq!(
        system[0].memory.as_ref().and_then(|m| m.working_set_bytes),
        Some(64 << 20),
        "the kubelet's cgroup"
    );
    let pods_sys = &system[1];
    assert_eq!(pods_sys.name, "pods");
    assert_eq!(
        pods_sys
            .cpu
            .as_ref()
            .and_then(|c| c.usage_core_nano_seconds),
        Some(5_000_000_000)
    );

    assert_eq!(first.pods.len(), 1);
    let pod = &first.pods[0];
    assert_eq!(
        (
            pod.pod_ref.name.as_str(),
            pod.pod_ref.namespace.as_str(),
            pod.pod_ref.uid.as_str()
        ),
        ("web", "default", uid.as_str())
    );
    assert_eq!(
        pod.cpu.as_ref().and_then(|c| c.usage_core_nano_seconds),
        Some(3_000_000_000)
    );
    assert_eq!(
        pod.process_stats.as_ref().and_then(|p| p.process_count),
        Some(3)
    );
    assert_eq!(
        pod.network
            .as_ref()
            .and_then(|n| n.default_interface.tx_bytes),
        Some(2000),
        "read through the sandbox's process"
    );
    let c = &pod.containers[0];
    assert_eq!(c.name, "app");
    let mem = c.memory.as_ref().expect("container memory");
    assert_eq!(mem.usage_bytes, Some(68 << 20));
    assert_eq!(
        mem.working_set_bytes,
        Some(64 << 20),
        "usage less inactive file"
    );
    assert_eq!(mem.rss_bytes, Some(64 << 20));
    assert_eq!(
        (mem.page_faults, mem.major_page_faults),
        (Some(500), Some(2))
    );
    assert_eq!(mem.available_bytes, Some((128 << 20) - (64 << 20)));
    assert_eq!(
        c.rootfs.as_ref().and_then(|r| r.used_bytes),
        Some(4096),
        "from the runtime"
    );
    let logs = c
        .logs
        .as_ref()
        .and_then(|l| l.used_bytes)
        .expect("logs used");
    assert!(logs >= 8192, "{logs}");
    let volumes = pod.volume.as_ref().expect("volumes");
    assert_eq!(volumes[0].name, "scratch");
    let used = volumes[0].fs.used_bytes.expect("volume used");
    assert!(
        (256 * 1024..256 * 1024 + 16 * 1024).contains(&used),
        "{used}"
    );
    let eph = pod
        .ephemeral_storage
        .as_ref()
        .and_then(|e| e.used_bytes)
        .expect("ephemeral");
    assert_eq!(eph, 4096 + logs + used);

    // The same collection's cgroup sample for /metrics/cadvisor.
    let cad = provider.cadvisor().await.expect("cadvisor sample");
    let ids: Vec<&str> = cad
        .containers
        .iter()
        .map(|c| c.labels.id.as_str())
        .collect();
    let pod_id = format!("/{pod_cg}");
    let sandbox_id = format!("/{pod_cg}/{sandbox}");
    let container_id = format!("/{pod_cg}/{id}");
    for want in ["/", "/kubepods", &pod_id, &sandbox_id, &container_id] {
        assert!(ids.contains(&want), "{want} in {ids:?}");
    }
    assert_eq!(
        cad.machine.cpu_cores, 0,
        "no cpuN lines in the fixture's /proc/stat"
    );
    assert_eq!(cad.machine.memory_bytes, 1_000_000 * 1024);
    let text = encode_cadvisor_metrics(Some(&cad), Format::Text);
    let labels = format!(
        "container=\"app\",id=\"{container_id}\",image=\"busybox\",name=\"{id}\",namespace=\"default\",pod=\"web\""
    );
    for (name, value) in [
        (
            "container_memory_working_set_bytes",
            format!("{}.0", 64 << 20),
        ),
        ("container_memory_rss", format!("{}.0", 64 << 20)),
        ("container_memory_usage_bytes", format!("{}.0", 68 << 20)),
        (
            "container_spec_memory_limit_bytes",
            format!("{}.0", 128 << 20),
        ),
        ("container_processes", "2.0".to_string()),
    ] {
        let prefix = format!("{name}{{{labels}}} {value}");
        assert!(
            text.lines().any(|l| l.starts_with(&prefix)),
            "missing {prefix} in\n{text}"
        );
    }
    let cpu = format!(
        "container_cpu_usage_seconds_total{{container=\"app\",cpu=\"total\",id=\"{container_id}\""
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with(&cpu) && l.contains("} 2.0 ")),
        "{text}"
    );
    // The pod's cgroup: container="" with the pod's labels; its sandbox: the network.
    assert!(
        text.contains(&format!(
            "container_memory_working_set_bytes{{container=\"\",id=\"{pod_id}\",image=\"\",name=\"\",namespace=\"default\",pod=\"web\"}}"
        )),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.starts_with(&format!(
            "container_network_transmit_bytes_total{{container=\"\",id=\"{sandbox_id}\",image=\"\",interface=\"eth0\",name=\"{sandbox}\",namespace=\"default\",pod=\"web\"}} 2000.0"
        ))),
        "{text}"
    );
    assert!(
        text.contains("container_network_receive_bytes_total{container=\"\",id=\"/\",image=\"\",interface=\"eth0\",name=\"\",namespace=\"\",pod=\"\"} 1000.0"),
        "the root cgroup has the node's interfaces: {text}"
    );

    // A second sample: nanocores are the CPU time over the time between the samples.
    cgroup_v1(cg, &format!("{pod_cg}/{id}"), 2_500_000_000, "4243\n");
    let second = provider.collect().await.expect("second sample");
    assert_eq!(
        runtime.calls(Method::ListPodSandboxStats),
        1,
        "every pod measured through its cgroup: the runtime is not asked again"
    );
    let before = first.pods[0].containers[0].cpu.clone().expect("cpu");
    let after = second.pods[0].containers[0].cpu.clone().expect("cpu");
    let elapsed = (after.time.0 - before.time.0) as u128;
    assert!(elapsed > 0);
    assert_eq!(
        after.usage_nano_cores,
        Some((500_000_000u128 * 1_000_000_000 / elapsed) as u64)
    );
    assert_eq!(after.usage_core_nano_seconds, Some(2_500_000_000));
    assert!(
        Arc::ptr_eq(&provider.summary().await.expect("cached"), &second),
        "scrapes read the cached sample"
    );
}

#[tokio::test]
async fn without_cgroups_the_runtime_stats_stand_in() {
    let runtime = Arc::new(FakeRuntime::with_images(["busybox"]));
    let _ = running_pod(&runtime).await;
    let fx = fixture();
    let provider = RuntimeStatsProvider::new(runtime.clone(), fx.config.clone());
    let summary = provider.collect().await.expect("summary");
    let pod = &summary.pods[0];
    let c = &pod.containers[0];
    assert_eq!(
        c.memory.as_ref().and_then(|m| m.working_set_bytes),
        Some(8 << 20),
        "the fake runtime's working set"
    );
    assert!(
        c.cpu
            .as_ref()
            .and_then(|c| c.usage_core_nano_seconds)
            .is_some()
    );
    assert_eq!(
        pod.memory.as_ref().and_then(|m| m.working_set_bytes),
        Some(8 << 20),
        "the pod is the sum of its containers"
    );
    // What the runtime measured of the sandbox stands in for the pod's cgroup and netns.
    assert_eq!(
        pod.network.as_ref().map(|n| (
            n.default_interface.name.as_str(),
            n.default_interface.rx_bytes
        )),
        Some(("eth0", Some(1024))),
        "the fake runtime's sandbox network"
    );
    assert_eq!(
        pod.process_stats.as_ref().and_then(|p| p.process_count),
        Some(1)
    );
    assert_eq!(runtime.calls(Method::ListPodSandboxStats), 1);
    // The cAdvisor series of a provider without cgroups: the runtime's numbers, no `id`.
    let cad = provider.cadvisor().await.expect("cadvisor");
    let text = encode_cadvisor_metrics(Some(&cad), Format::Text);
    let app = cad
        .containers
        .iter()
        .find(|c| c.labels.container == "app")
        .expect("app series");
    assert_eq!(app.labels.id, "", "no cgroup found");
    assert_eq!(app.memory.and_then(|m| m.working_set), Some(8 << 20));
    assert!(
        text.contains("interface=\"eth0\""),
        "the sandbox carries the pod's network: {text}"
    );

    // A runtime failing ListPodSandboxStats: the containers' sum, no network.
    runtime.fail_next(Method::ListPodSandboxStats, 1);
    let summary = provider.collect().await.expect("summary");
    let pod = &summary.pods[0];
    assert_eq!(
        pod.memory.as_ref().and_then(|m| m.working_set_bytes),
        Some(8 << 20)
    );
    assert!(pod.network.is_none() && pod.process_stats.is_none());
    // The node falls back to /proc: busy ticks of /proc/stat, memory of /proc/meminfo.
    assert_eq!(
        summary
            .node
            .cpu
            .as_ref()
            .and_then(|c| c.usage_core_nano_seconds),
        Some(150 * 10_000_000)
    );
}

#[tokio::test]
async fn a_node_of_120_pods_in_one_collection() {
    let runtime = Arc::new(FakeRuntime::with_images(["busybox"]));
    let fx = fixture();
    let cg = &fx.config.cgroup_fs_root;
    cgroup_v1(cg, "", 1, "");
    for n in 0..120 {
        let sandbox_config = PodSandboxConfig {
            metadata: SandboxMetadata {
                name: format!("p{n}"),
                uid: format!("uid-{n}"),
                namespace: "load".into(),
                attempt: 0,
            },
            ..Default::default()
        };
        let sandbox = runtime
            .run_pod_sandbox(&sandbox_config)
            .await
            .expect("sandbox");
        let pod_cg = format!("kubepods/burstable/poduid-{n}");
        cgroup_v1(cg, &pod_cg, 1, "");
        for name in ["a", "b"] {
            let config = ContainerConfig {
                metadata: ContainerMetadata {
                    name: name.into(),
                    attempt: 0,
                },
                image: "busybox".into(),
                ..Default::default()
            };
            let id = runtime
                .create_container(&sandbox, &config, &sandbox_config)
                .await
                .expect("create");
            runtime.start_container(&id).await.expect("start");
            cgroup_v1(cg, &format!("{pod_cg}/{id}"), 7, "");
        }
    }
    let provider = RuntimeStatsProvider::new(runtime.clone(), fx.config.clone());
    let started = std::time::Instant::now();
    let summary = provider.collect().await.expect("summary");
    eprintln!("one collection of 120 pods: {:?}", started.elapsed());
    assert_eq!(summary.pods.len(), 120);
    for pod in &summary.pods {
        assert_eq!(pod.containers.len(), 2, "{}", pod.pod_ref.name);
        for c in &pod.containers {
            assert_eq!(
                c.cpu.as_ref().and_then(|c| c.usage_core_nano_seconds),
                Some(7),
                "read from its cgroup"
            );
        }
    }
}

#[tokio::test]
async fn housekeeping_samples_until_shutdown() {
    let runtime = Arc::new(FakeRuntime::with_images(["busybox"]));
    let _ = running_pod(&runtime).await;
    let fx = fixture();
    let mut config = fx.config.clone();
    config.housekeeping_interval = std::time::Duration::from_millis(20);
    let provider = Arc::new(RuntimeStatsProvider::new(runtime.clone(), config));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(provider.clone().run(async move {
        let _ = stopped.await;
    }));
    // Two samples at least: the second one rates the container's CPU.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let rated = provider.cached().is_some_and(|s| {
            s.pods[0].containers[0]
                .cpu
                .as_ref()
                .is_some_and(|c| c.usage_nano_cores.is_some())
        });
        if rated {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no second sample");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let _ = stop.send(());
    task.await.expect("housekeeping stops at shutdown");
}
