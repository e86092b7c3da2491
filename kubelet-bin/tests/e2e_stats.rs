//! End-to-end: `/stats/summary` and `/metrics/resource` of the `kubelet` binary on a real
//! containerd, read on the read-only port. A container that puts 64 MiB in a memory-backed
//! emptyDir shows that much working set (and the volume that much used); a busy loop shows
//! about one core; bytes sent to a pod show in its network stats. Skipped when no containerd can run here, unless
//! `KUBELET_TEST_REQUIRE_CONTAINERD=1`.

// Not every helper of the shared support module is used here.
#[allow(dead_code)]
mod support {
    pub mod node;
}

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

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
    node.write_manifest(
        "busy.yaml",
        &manifest("busy", "spin", "while :; do :; done", ""),
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
