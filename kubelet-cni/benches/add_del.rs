//! ADD+DEL latency with Debian's plugins on a bridge network (bridge + host-local, portmap,
//! firewall): one pod, and 50 pods in parallel. Needs root and /usr/lib/cni; skips otherwise.
//! Namespace creation and removal are outside the measured time.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use kubelet_cni::config::ConfigFormat;
use kubelet_cni::{Attachment, Cni, NetNs, NetworkConfigList};

const BRIDGE: &str = "kcnitest9";

/// Removes the bench's bridge, namespaces and state, also when a bench panics.
struct Cleanup {
    dir: tempfile::TempDir,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Ok(entries) = std::fs::read_dir(self.dir.path().join("netns")) {
            for e in entries.flatten() {
                let _ = NetNs::remove(&e.path());
            }
        }
        let _ = Command::new("ip").args(["link", "del", BRIDGE]).output();
    }
}

fn network(dir: &Path) -> NetworkConfigList {
    let text = format!(
        r#"{{"cniVersion":"1.0.0","name":"{BRIDGE}","plugins":[
          {{"type":"bridge","bridge":"{BRIDGE}","isGateway":true,"ipMasq":false,
            "ipam":{{"type":"host-local","dataDir":"{ipam}","ranges":[[{{"subnet":"10.99.9.0/24"}}]]}}}},
          {{"type":"portmap","capabilities":{{"portMappings":true}}}},
          {{"type":"firewall","backend":"iptables"}}]}}"#,
        ipam = dir.join("ipam").display()
    );
    match NetworkConfigList::parse(
        text.as_bytes(),
        Path::new("bench.conflist"),
        ConfigFormat::List,
    ) {
        Ok(n) => n,
        Err(e) => panic!("{e}"),
    }
}

async fn add_del(cni: &Cni, net: &NetworkConfigList, att: &Attachment) {
    if let Err(e) = cni.add(net, att).await {
        panic!("ADD {}: {e}", att.container_id);
    }
    if let Err(e) = cni.del(net, att).await {
        panic!("DEL {}: {e}", att.container_id);
    }
}

fn pods(netns_dir: &Path, n: usize) -> Vec<(NetNs, Attachment)> {
    (0..n)
        .map(|i| {
            let name = format!("bench-{i}");
            let ns = NetNs::create(netns_dir, &name).unwrap_or_else(|e| panic!("{e}"));
            let att = Attachment::new(name, ns.path().display().to_string(), "eth0");
            (ns, att)
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    if !nix::unistd::geteuid().is_root() || !Path::new("/usr/lib/cni/bridge").exists() {
        eprintln!("skipping add_del bench: needs root and /usr/lib/cni");
        return;
    }
    let cleanup = Cleanup {
        dir: tempfile::tempdir().unwrap_or_else(|e| panic!("{e}")),
    };
    let dir = cleanup.dir.path().to_path_buf();
    let netns_dir = dir.join("netns");
    let net = network(&dir);
    let cni = Cni::new(vec![PathBuf::from("/usr/lib/cni")], dir.join("cache"));
    let rt = tokio::runtime::Runtime::new().unwrap_or_else(|e| panic!("{e}"));

    let mut group = c.benchmark_group("cni_bridge");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(20));
    group.bench_function("add_del_1_pod", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let (cni, net, netns_dir) = (cni.clone(), net.clone(), netns_dir.clone());
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let set = pods(&netns_dir, 1);
                    let start = Instant::now();
                    add_del(&cni, &net, &set[0].1).await;
                    total += start.elapsed();
                    for (ns, _) in set {
                        let _ = NetNs::remove(ns.path());
                    }
                }
                total
            }
        })
    });
    // Each sample is a couple of seconds: one batch per sample.
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .measurement_time(Duration::from_secs(30));
    group.bench_function("add_del_50_pods_parallel", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let (cni, net, netns_dir) = (cni.clone(), net.clone(), netns_dir.clone());
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let set = pods(&netns_dir, 50);
                    let start = Instant::now();
                    let runs = set.iter().map(|(_, att)| add_del(&cni, &net, att));
                    futures_join_all(runs).await;
                    total += start.elapsed();
                    for (ns, _) in set {
                        let _ = NetNs::remove(ns.path());
                    }
                }
                total
            }
        })
    });
    group.finish();
    drop(cleanup);
}

/// Run futures concurrently on the current task (the plugins are separate processes, so
/// this is real parallelism).
async fn futures_join_all<F: std::future::Future<Output = ()>>(futs: impl Iterator<Item = F>) {
    let mut set = Vec::new();
    for f in futs {
        set.push(Box::pin(f));
    }
    futures::future::join_all(set).await;
}

criterion_group!(benches, bench);
criterion_main!(benches);
