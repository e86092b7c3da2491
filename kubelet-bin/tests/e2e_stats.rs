//! End-to-end: `/stats/summary`, `/metrics/resource` and `/metrics/cadvisor` of the `kubelet`
//! binary on a real containerd, read on the read-only port. A container that puts 64 MiB in a
//! memory-backed emptyDir shows that much working set (and the volume that much used) in all
//! three; a busy loop shows about one core; bytes sent to a pod show in its network stats; a
//! disk emptyDir holding a 10 MiB file shows about 10 MiB used. Skipped when no containerd can
//! run here, unless `KUBELET_TEST_REQUIRE_CONTAINERD=1`.

// Not every helper of the shared support module is used here.
#[allow(dead_code)]
mod support {
    pub mod node;
}

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use kubelet_core::Runtime;
use support::node::{NODE, TestNode, running_and_ready};

const IMAGE: &str = kubelet_cri::testing::BUSYBOX_IMAGE;
/// Deadline for pods to come up and for housekeeping to take the two samples a CPU rate
/// needs (10 s apart), with room for a loaded machine; volumes are measured once a minute.
const DEADLINE: Duration = Duration::from_secs(150);
const MIB: f64 = 1024.0 * 1024.0;

/// A port nobody listens on now.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

/// A plain HTTP GET on the read-only port: the body of a 200 answer, else an error.
fn http_get(port: u16, path: &str) -> Result<String, String> {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut conn =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(
        conn,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let text = String::from_utf8(raw).map_err(|e| e.to_string())?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("malformed answer: {text}"))?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!("GET {path}: {head}: {body}"));
    }
    Ok(body.to_string())
}

async fn get(port: u16, path: &'static str) -> Result<String, String> {
    tokio::task::spawn_blocking(move || http_get(port, path))
        .await
        .map_err(|e| e.to_string())?
}

/// The summary's entry for container `container` of static pod `pod`.
fn container_stats<'a>(
    summary: &'a serde_json::Value,
    pod: &str,
    container: &str,
) -> Option<&'a serde_json::Value> {
    let full = format!("{pod}-{NODE}");
    summary["pods"]
        .as_array()?
        .iter()
        .find(|p| p["podRef"]["name"] == full.as_str())?["containers"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == container)
}

/// The value of the sample `name{labels}` in a Prometheus text exposition.
fn sample(text: &str, name: &str, labels: &str) -> Option<f64> {
    let prefix = format!("{name}{{{labels}}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))?
        .split(' ')
        .next()?
        .parse()
        .ok()
}

/// The first sample of family `name` whose labels include every `(label, value)` of `want`:
/// its value and timestamp (ms), from a Prometheus text exposition.
fn sample_with(text: &str, name: &str, want: &[(&str, &str)]) -> Option<(f64, Option<i64>)> {
    let prefix = format!("{name}{{");
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(&prefix)?;
        let (labels, values) = rest.split_once("} ")?;
        let all = want
            .iter()
            .all(|(k, v)| labels.split(',').any(|l| l == format!("{k}=\"{v}\"")));
        if !all {
            return None;
        }
        let mut values = values.split(' ');
        let value = values.next()?.parse().ok()?;
        Some((value, values.next().and_then(|t| t.parse().ok())))
    })
}

/// The mount points below `dir` (from this process's mount table).
fn mounts_below(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|m| m.starts_with(dir))
        .collect()
}

/// Detaches what is still mounted below the kubelet's root directory when the test ends
/// early (the memory-backed emptyDir's tmpfs), so that the temporary directory can go.
struct UnmountBelow(PathBuf);

impl Drop for UnmountBelow {
    fn drop(&mut self) {
        for mount in mounts_below(&self.0).into_iter().rev() {
            let _ = nix::mount::umount2(&mount, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

fn manifest(name: &str, container: &str, script: &str, extra: &str) -> String {
    let script = serde_json::to_string(script).expect("quote script");
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  \
         terminationGracePeriodSeconds: 1\n  containers:\n  - name: {container}\n    image: {IMAGE}\n    \
         imagePullPolicy: IfNotPresent\n    command: [\"sh\", \"-c\", {script}]\n{extra}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn working_set_and_cpu_of_real_containers() {
    let port = free_port();
    let Some(mut node) = TestNode::start_with_args(vec![format!("--read-only-port={port}")]).await
    else {
        return;
    };
    let root_dir = node
        .pod_logs_dir()
        .parent()
        .expect("the node's directory")
        .join("root");
    let _unmount = UnmountBelow(root_dir.clone());
    // 64 MiB in a tmpfs: resident, charged to the writer's cgroup, never reclaimable as
    // inactive file cache, so all of it is working set.
    node.write_manifest(
        "mem.yaml",
        &manifest(
            "mem",
            "hog",
            "trap 'exit 0' TERM; dd if=/dev/zero of=/mem/fill bs=1M count=64 && touch /mem/done; \
             sleep 3600 & wait",
            "    volumeMounts:\n    - name: mem\n      mountPath: /mem\n  volumes:\n  - name: mem\n    \
             emptyDir:\n      medium: Memory\n      sizeLimit: 128Mi\n",
        ),
    );
    // The spinner first writes 10 MiB of real blocks into a disk-backed emptyDir.
    node.write_manifest(
        "busy.yaml",
        &manifest(
            "busy",
            "spin",
            "dd if=/dev/zero of=/data/f bs=1M count=10 && sync; while :; do :; done",
            "    volumeMounts:\n    - name: data\n      mountPath: /data\n  volumes:\n  - name: data\n    \
             emptyDir: {}\n",
        ),
    );
    node.wait_pod("mem", "hog running", DEADLINE, |p| {
        running_and_ready(p, "hog")
    })
    .await;
    node.wait_pod("busy", "spin running", DEADLINE, |p| {
        running_and_ready(p, "spin")
    })
    .await;

    let want = 64.0 * MIB;
    // /stats/summary: the hog's working set within 10 % of 64 MiB, the spinner near a core.
    let (working_set, nano_cores, summary) = node
        .wait_for(
            "the summary to show 64 MiB and a busy core",
            DEADLINE,
            async |_| {
                let body = get(port, "/stats/summary").await.ok()?;
                let summary: serde_json::Value = serde_json::from_str(&body).ok()?;
                let ws = container_stats(&summary, "mem", "hog")?["memory"]["workingSetBytes"]
                    .as_f64()?;
                let cores =
                    container_stats(&summary, "busy", "spin")?["cpu"]["usageNanoCores"].as_f64()?;
                ((ws - want).abs() <= want * 0.1 && cores > 0.4e9).then_some((ws, cores, summary))
            },
        )
        .await;
    assert!(
        nano_cores < 1.3e9,
        "one spinning shell uses at most about one core: {nano_cores}"
    );
    eprintln!(
        "hog working set {:.1} MiB, spinner {:.2} cores",
        working_set / MIB,
        nano_cores / 1e9
    );
    let hog = container_stats(&summary, "mem", "hog").expect("hog");
    assert!(hog["memory"]["usageBytes"].as_f64() >= Some(working_set));
    assert!(hog["startTime"].is_string(), "{hog}");
    assert!(summary["node"]["cpu"]["usageCoreNanoSeconds"].as_u64() > Some(0));
    assert!(summary["node"]["memory"]["workingSetBytes"].as_u64() > Some(64 << 20));
    // The pod's own network namespace, read through one of its processes.
    let mem_pod = summary["pods"]
        .as_array()
        .and_then(|pods| {
            pods.iter()
                .find(|p| p["podRef"]["name"] == format!("mem-{NODE}").as_str())
        })
        .expect("mem pod");
    assert!(mem_pod["network"]["interfaces"].is_array(), "{mem_pod}");
    assert!(
        mem_pod["cpu"]["usageCoreNanoSeconds"].as_u64() > Some(0),
        "{mem_pod}"
    );

    // Bytes sent to the pod over its network show on its eth0: 1000 UDP datagrams of 1000
    // bytes from the node to the pod's IP (nothing listens; the interface counts them).
    let rx_of = |summary: &serde_json::Value| {
        summary["pods"]
            .as_array()?
            .iter()
            .find(|p| p["podRef"]["name"] == format!("mem-{NODE}").as_str())?["network"]["rxBytes"]
            .as_u64()
    };
    let rx_before = rx_of(&summary).expect("the mem pod's eth0 rxBytes");
    let pod_ip = node
        .pod("mem")
        .await
        .and_then(|p| p.status?.pod_ip)
        .expect("the mem pod's IP");
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").expect("UDP socket");
    for _ in 0..1000 {
        socket
            .send_to(&[7u8; 1000], (pod_ip.as_str(), 9))
            .expect("send to the pod");
    }
    let rx_after = node
        .wait_for(
            "the pod's rxBytes to count 1 MB more",
            DEADLINE,
            async |_| {
                let body = get(port, "/stats/summary").await.ok()?;
                let summary: serde_json::Value = serde_json::from_str(&body).ok()?;
                rx_of(&summary).filter(|rx| *rx >= rx_before + 900_000)
            },
        )
        .await;
    eprintln!("mem pod eth0 rxBytes {rx_before} -> {rx_after}");

    // /metrics/resource: the same numbers under the reference's names and labels.
    let metrics = node
        .wait_for("/metrics/resource to show the hog", DEADLINE, async |_| {
            let text = get(port, "/metrics/resource").await.ok()?;
            let labels = format!("container=\"hog\",namespace=\"default\",pod=\"mem-{NODE}\"");
            let ws = sample(&text, "container_memory_working_set_bytes", &labels)?;
            ((ws - want).abs() <= want * 0.1).then_some(text)
        })
        .await;
    let spin = format!("container=\"spin\",namespace=\"default\",pod=\"busy-{NODE}\"");
    let cpu = sample(&metrics, "container_cpu_usage_seconds_total", &spin).expect("spin cpu");
    assert!(cpu > 0.0, "{metrics}");
    assert!(
        sample(&metrics, "container_start_time_seconds", &spin).is_some(),
        "{metrics}"
    );
    assert!(
        sample(
            &metrics,
            "pod_memory_working_set_bytes",
            &format!("namespace=\"default\",pod=\"mem-{NODE}\"")
        )
        .is_some_and(|ws| ws >= want * 0.9),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("node_cpu_usage_seconds_total "))
    );
    assert!(metrics.lines().any(|l| l == "scrape_error 0"), "{metrics}");

    // /metrics/cadvisor: the hog's working set, the spinner's CPU rate between two
    // housekeeping samples (their timestamps), the pod's network on its sandbox's series.
    let (mem_pod, busy_pod) = (format!("mem-{NODE}"), format!("busy-{NODE}"));
    let hog = [
        ("container", "hog"),
        ("namespace", "default"),
        ("pod", mem_pod.as_str()),
    ];
    let spin = [
        ("container", "spin"),
        ("cpu", "total"),
        ("pod", busy_pod.as_str()),
    ];
    let first = node
        .wait_for("/metrics/cadvisor to show the hog", DEADLINE, async |_| {
            let text = get(port, "/metrics/cadvisor").await.ok()?;
            let (ws, _) = sample_with(&text, "container_memory_working_set_bytes", &hog)?;
            ((ws - want).abs() <= want * 0.1).then_some(text)
        })
        .await;
    let (cpu0, t0) =
        sample_with(&first, "container_cpu_usage_seconds_total", &spin).expect("spin cpu");
    let t0 = t0.expect("a sample timestamp");
    let cores = node
        .wait_for("a second housekeeping sample", DEADLINE, async |_| {
            let text = get(port, "/metrics/cadvisor").await.ok()?;
            let (cpu1, t1) = sample_with(&text, "container_cpu_usage_seconds_total", &spin)?;
            let t1 = t1?;
            (t1 > t0).then(|| (cpu1 - cpu0) / ((t1 - t0) as f64 / 1000.0))
        })
        .await;
    eprintln!("/metrics/cadvisor: spinner {cores:.2} cores");
    assert!(
        (0.4..1.3).contains(&cores),
        "one spinning shell uses about one core: {cores}"
    );
    let rx = sample_with(
        &first,
        "container_network_receive_bytes_total",
        &[
            ("container", ""),
            ("interface", "eth0"),
            ("pod", mem_pod.as_str()),
        ],
    )
    .map(|(v, _)| v)
    .expect("the mem pod's eth0 on its sandbox's series");
    assert!(rx >= (rx_before + 900_000) as f64, "{rx} after {rx_before}");
    for (name, labels) in [
        ("container_memory_rss", &hog[..]),
        ("container_memory_usage_bytes", &hog[..]),
        ("container_spec_memory_limit_bytes", &hog[..]),
        ("container_start_time_seconds", &hog[..]),
        ("container_cpu_usage_seconds_total", &[("id", "/")][..]),
        (
            "container_memory_working_set_bytes",
            &[("container", ""), ("pod", mem_pod.as_str())][..],
        ),
    ] {
        assert!(
            sample_with(&first, name, labels).is_some(),
            "{name} {labels:?} in\n{first}"
        );
    }
    let cores_here = std::thread::available_parallelism().map_or(0, |n| n.get());
    assert!(
        first.lines().any(
            |l| l.starts_with("machine_cpu_cores{") && l.ends_with(&format!(" {cores_here}.0"))
        ),
        "machine_cpu_cores {cores_here}"
    );

    // CRI ListPodSandboxStats on this containerd: the pods' numbers, or Unimplemented (which
    // the collector answers with the cgroups); anything else is a failure.
    let cri = node.containerd().runtime().await;
    match cri.list_pod_sandbox_stats().await {
        Ok(stats) => {
            let mem = stats
                .iter()
                .find(|s| s.metadata.name == mem_pod)
                .unwrap_or_else(|| panic!("no sandbox of {mem_pod} in {stats:?}"));
            eprintln!(
                "ListPodSandboxStats answered {} sandboxes; {mem_pod}: cpu {:?} ns, working \
                 set {:?}, network {:?}, processes {:?}",
                stats.len(),
                mem.cpu_usage_core_nanoseconds,
                mem.memory_working_set_bytes,
                mem.network,
                mem.process_count
            );
        }
        Err(kubelet_core::RuntimeError::Unsupported(message)) => {
            eprintln!("ListPodSandboxStats: unsupported by this containerd: {message}");
        }
        Err(e) => panic!("ListPodSandboxStats: {e}"),
    }

    // The disk emptyDir: its 10 MiB file (volumes are measured once a minute).
    let ten = 10.0 * MIB;
    let data_used = node
        .wait_for(
            "the disk emptyDir's 10 MiB in the summary",
            DEADLINE,
            async |_| {
                let body = get(port, "/stats/summary").await.ok()?;
                let summary: serde_json::Value = serde_json::from_str(&body).ok()?;
                let pod = summary["pods"]
                    .as_array()?
                    .iter()
                    .find(|p| p["podRef"]["name"] == format!("busy-{NODE}").as_str())?
                    .clone();
                let used = pod["volume"]
                    .as_array()?
                    .iter()
                    .find(|v| v["name"] == "data")?["usedBytes"]
                    .as_f64()?;
                ((used - ten).abs() <= ten * 0.1).then_some(used)
            },
        )
        .await;
    eprintln!("disk emptyDir used {:.2} MiB", data_used / MIB);

    // The memory-backed emptyDir: about 64 MiB used (volumes are measured once a minute).
    node.wait_for(
        "the emptyDir's 64 MiB in the summary",
        DEADLINE,
        async |_| {
            let body = get(port, "/stats/summary").await.ok()?;
            let summary: serde_json::Value = serde_json::from_str(&body).ok()?;
            let pod = summary["pods"]
                .as_array()?
                .iter()
                .find(|p| p["podRef"]["name"] == format!("mem-{NODE}").as_str())?
                .clone();
            let used = pod["volume"]
                .as_array()?
                .iter()
                .find(|v| v["name"] == "mem")?["usedBytes"]
                .as_f64()?;
            ((used - want).abs() <= want * 0.1).then_some(())
        },
    )
    .await;

    // The kubelet tears the pods down, the tmpfs included.
    node.remove_manifest("mem.yaml");
    node.remove_manifest("busy.yaml");
    node.wait_for("the pods and their tmpfs to go", DEADLINE, async |n| {
        let gone = n.pods_named("mem").await.is_empty() && n.pods_named("busy").await.is_empty();
        (gone && mounts_below(&root_dir).is_empty()).then_some(())
    })
    .await;
    node.shutdown().await;
}

/// The kubelet daemon's PID: the process whose command line names the node's directory.
fn kubelet_pid(node_dir: &Path) -> Option<u32> {
    let needle = node_dir.to_string_lossy().into_owned();
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
        let cmdline = String::from_utf8_lossy(&cmdline);
        let exe = std::fs::read_link(e.path().join("exe")).ok()?;
        (exe.file_name()? == "kubelet" && cmdline.contains(&needle)).then_some(pid)
    })
}

/// A process's CPU time (user + system) in clock ticks (10 ms).
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(") ")?.1.split(' ').collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// Not a check but a measurement (run with `--ignored`): the daemon's CPU over 60 s at idle
/// with three pods running, housekeeping (10 s), PLEG relists and status syncs included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a 60 s measurement, run by hand"]
async fn idle_cpu_of_the_daemon() {
    let port = free_port();
    let Some(mut node) = TestNode::start_with_args(vec![format!("--read-only-port={port}")]).await
    else {
        return;
    };
    for n in 0..3 {
        node.write_manifest(
            &format!("idle{n}.yaml"),
            &manifest(
                &format!("idle{n}"),
                "app",
                "trap 'exit 0' TERM; sleep 3600 & wait",
                "",
            ),
        );
    }
    for n in 0..3 {
        node.wait_pod(&format!("idle{n}"), "app running", DEADLINE, |p| {
            running_and_ready(p, "app")
        })
        .await;
    }
    let node_dir = node
        .pod_logs_dir()
        .parent()
        .expect("the node's directory")
        .to_path_buf();
    let pid = kubelet_pid(&node_dir).expect("the kubelet's PID");
    // Past the pods' start: the summary has all three.
    node.wait_for("the summary to list the pods", DEADLINE, async |_| {
        let body = get(port, "/stats/summary").await.ok()?;
        let summary: serde_json::Value = serde_json::from_str(&body).ok()?;
        (summary["pods"].as_array()?.len() == 3).then_some(())
    })
    .await;
    let window = Duration::from_secs(60);
    let before = cpu_ticks(pid).expect("kubelet CPU");
    let started = std::time::Instant::now();
    tokio::time::sleep(window).await;
    let used = (cpu_ticks(pid).expect("kubelet CPU") - before) as f64 * 10.0;
    let elapsed = started.elapsed().as_secs_f64() * 1000.0;
    eprintln!(
        "kubelet idle with 3 pods: {used:.0} CPU ms over {:.1} s = {:.2} % of a core",
        elapsed / 1000.0,
        used / elapsed * 100.0
    );
    for n in 0..3 {
        node.remove_manifest(&format!("idle{n}.yaml"));
    }
    node.wait_for("the pods to go", DEADLINE, async |n| {
        let mut gone = true;
        for i in 0..3 {
            gone &= n.pods_named(&format!("idle{i}")).await.is_empty();
        }
        gone.then_some(())
    })
    .await;
    node.shutdown().await;
}
