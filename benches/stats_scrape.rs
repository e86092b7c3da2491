//! The cost of the node's statistics with 100 pods: one housekeeping collection
//! (`RuntimeStatsProvider::collect`: the runtime's lists plus the cgroup, `/proc` and
//! filesystem reads of every pod, sandbox and container), and one scrape of
//! `/stats/summary` and of `/metrics/cadvisor` over HTTP on the read-only port (what
//! metrics-server and Prometheus pay per scrape; a scrape reads the cached sample).
//!
//! The runtime is the in-memory fake (100 pods of one running container each); the cgroup
//! (v1) and `/proc` trees are synthetic files in a temporary directory with the files the
//! collector reads, so that the numbers are the kubelet's own work, repeatable on any
//! machine. Each pod has a 64 KiB emptyDir (walked once a minute; cached in between, as
//! between two housekeeping ticks of a real node).
//!
//! Besides criterion's wall times, the bench prints the process CPU time per scrape and per
//! collection (from `/proc/self/stat` over many runs) and the response sizes.
//!
//! `cargo bench --bench stats_scrape -- --warm-up-time 1 --measurement-time 3`

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use kubelet_core::runtime::{
    ContainerConfig, ContainerMetadata, PodSandboxConfig, SandboxMetadata,
};
use kubelet_core::server::{Handles, ReadOnlyServer};
use kubelet_core::stats::{RuntimeStatsProvider, StatsConfig, StatsProvider};
use kubelet_core::testing::{ChannelSource, FakeRuntime, RecordingReporter};
use kubelet_core::{Kubelet, KubeletConfig, Runtime};

const PODS: usize = 100;

fn write(path: &Path, text: &str) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("mkdir");
    }
    std::fs::write(path, text).expect("write fixture");
}

const NET_DEV: &str = "Inter-| Receive | Transmit\n face |bytes packets errs drop fifo frame compressed multicast|bytes packets errs drop fifo colls carrier compressed\n    \
    lo: 5 1 0 0 0 0 0 0 5 1 0 0 0 0 0 0\n  eth0: 123456789 1000 1 2 0 0 0 0 98765432 900 3 4 0 0 0 0\n";

/// A v1 cgroup with every file the collector reads.
fn cgroup_v1(root: &Path, relative: &str, procs: &str) {
    let cpu = root.join("cpu,cpuacct").join(relative);
    write(&cpu.join("cpuacct.usage"), "123456789012\n");
    write(&cpu.join("cpuacct.stat"), "user 9000\nsystem 3000\n");
    write(
        &cpu.join("cpu.stat"),
        "nr_periods 100\nnr_throttled 3\nthrottled_time 123456\n",
    );
    write(&cpu.join("cpu.shares"), "512\n");
    write(&cpu.join("cpu.cfs_quota_us"), "50000\n");
    write(&cpu.join("cpu.cfs_period_us"), "100000\n");
    let mem = root.join("memory").join(relative);
    write(&mem.join("memory.usage_in_bytes"), "71303168\n");
    write(
        &mem.join("memory.stat"),
        "cache 8388608\nrss 62914560\nmapped_file 4096\nswap 0\npgfault 500\npgmajfault 2\n\
         inactive_file 4194304\nactive_file 4194304\nhierarchical_memory_limit 134217728\n\
         total_cache 8388608\ntotal_rss 62914560\ntotal_mapped_file 4096\ntotal_swap 0\n\
         total_pgfault 500\ntotal_pgmajfault 2\ntotal_inactive_file 4194304\n\
         total_active_file 4194304\n",
    );
    write(&mem.join("memory.limit_in_bytes"), "134217728\n");
    write(
        &mem.join("memory.soft_limit_in_bytes"),
        "9223372036854771712\n",
    );
    write(&mem.join("memory.failcnt"), "0\n");
    write(&mem.join("cgroup.procs"), procs);
    write(&mem.join("tasks"), procs);
    let blkio = root.join("blkio").join(relative);
    write(
        &blkio.join("blkio.throttle.io_service_bytes_recursive"),
        "8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 0\n8:0 Async 0\n8:0 Total 12288\nTotal 12288\n",
    );
    write(
        &blkio.join("blkio.throttle.io_serviced_recursive"),
        "8:0 Read 1\n8:0 Write 2\nTotal 3\n",
    );
}

struct Setup {
    _dir: tempfile::TempDir,
    provider: Arc<RuntimeStatsProvider>,
    port: u16,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let mut config = StatsConfig::new("bench-node");
    config.cgroup_fs_root = root.join("cgroup");
    config.proc_root = root.join("proc");
    config.root_dir = root.join("kubelet");
    config.pod_logs_root = root.join("logs");
    let proc = &config.proc_root;
    write(
        &proc.join("stat"),
        "cpu  100 0 50 1000 0 0 0 0 0 0\ncpu0 50 0 25 500 0 0 0 0 0 0\n\
         cpu1 50 0 25 500 0 0 0 0 0 0\nbtime 1700000000\n",
    );
    write(
        &proc.join("meminfo"),
        "MemTotal: 16000000 kB\nMemFree: 4000000 kB\nInactive(file): 1000000 kB\nAnonPages: 2000000 kB\n",
    );
    write(&proc.join("vmstat"), "pgfault 1000\npgmajfault 10\n");
    write(&proc.join("self/net/dev"), NET_DEV);
    write(&proc.join("sys/kernel/pid_max"), "4194304\n");
    write(&proc.join("sys/kernel/random/boot_id"), "bench-boot\n");
    write(&proc.join("diskstats"), "   8       0 sda 1 2 3 4\n");
    write(
        &proc.join("self/mountinfo"),
        "22 1 8:0 / / rw - ext4 /dev/sda rw\n",
    );
    let cg = &config.cgroup_fs_root;
    cgroup_v1(cg, "", "1\n");
    cgroup_v1(cg, "kubepods", "");
    std::fs::create_dir_all(&config.pod_logs_root).expect("mkdir");

    let runtime = Arc::new(FakeRuntime::with_images(["busybox"]));
    for n in 0..PODS {
        let uid = format!("uid-{n}");
        let sandbox_config = PodSandboxConfig {
            metadata: SandboxMetadata {
                name: format!("pod-{n}"),
                uid: uid.clone(),
                namespace: "bench".into(),
                attempt: 0,
            },
            ..Default::default()
        };
        let sandbox = runtime
            .run_pod_sandbox(&sandbox_config)
            .await
            .expect("sandbox");
        let config_c = ContainerConfig {
            metadata: ContainerMetadata {
                name: "app".into(),
                attempt: 0,
            },
            image: "busybox".into(),
            ..Default::default()
        };
        let id = runtime
            .create_container(&sandbox, &config_c, &sandbox_config)
            .await
            .expect("create");
        runtime.start_container(&id).await.expect("start");
        let pod_cg = format!("kubepods/burstable/pod{uid}");
        let pid = 10_000 + n;
        cgroup_v1(cg, &pod_cg, "");
        cgroup_v1(cg, &format!("{pod_cg}/{sandbox}"), &format!("{pid}\n"));
        cgroup_v1(cg, &format!("{pod_cg}/{id}"), &format!("{}\n", pid + 1));
        write(&proc.join(format!("{pid}/net/dev")), NET_DEV);
        let volume = config.root_dir.join(format!(
            "pods/{uid}/volumes/kubernetes.io~empty-dir/scratch"
        ));
        write(&volume.join("data"), &"x".repeat(64 * 1024));
        write(
            &config
                .pod_logs_root
                .join(format!("bench_pod-{n}_{uid}/app/0.log")),
            &"log line\n".repeat(100),
        );
    }
    let provider = Arc::new(RuntimeStatsProvider::new(runtime.clone(), config));
    let first = provider.collect().await.expect("first collection");
    assert_eq!(first.pods.len(), PODS);

    let (source, _pods) = ChannelSource::new("bench");
    let kubelet = Kubelet::builder(KubeletConfig::new("bench-node"))
        .runtime(runtime.clone())
        .reporter(Arc::new(RecordingReporter::new()))
        .source(Box::new(source))
        .build()
        .expect("kubelet");
    let handles = Handles {
        kubelet: kubelet.handle(),
        runtime,
    };
    let server = ReadOnlyServer::bind("127.0.0.1:0".parse().expect("addr"), handles)
        .await
        .expect("bind")
        .with_stats(provider.clone() as Arc<dyn StatsProvider>);
    let port = server.local_addr().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.serve(async move {
        let _ = stopped.await;
    }));
    Setup {
        _dir: dir,
        provider,
        port,
        _stop: stop,
    }
}

/// This process's CPU time (user + system) from `/proc/self/stat`, in clock ticks (10 ms).
fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name (which may hold spaces) start after ") ".
    let rest = stat.rsplit_once(") ").map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split(' ').collect();
    // utime and stime are fields 14 and 15 of the line: 12 and 13 after the name.
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    n(11) + n(12)
}

/// CPU milliseconds per run of `f` over `runs` runs.
async fn cpu_ms_per_run<F, Fut>(runs: u32, mut f: F) -> f64
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let before = cpu_ticks();
    for _ in 0..runs {
        f().await;
    }
    (cpu_ticks() - before) as f64 * 10.0 / f64::from(runs)
}

async fn scrape(client: &reqwest::Client, port: u16, path: &str) -> usize {
    client
        .get(format!("http://127.0.0.1:{port}{path}"))
        .send()
        .await
        .expect("GET")
        .bytes()
        .await
        .expect("body")
        .len()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let setup = rt.block_on(setup());
    // reqwest's TLS stack wants a process-wide crypto provider even for plain HTTP.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    let port = setup.port;

    // Sizes and CPU time per operation, beside criterion's wall times.
    rt.block_on(async {
        let summary_bytes = scrape(&client, port, "/stats/summary").await;
        let cadvisor_bytes = scrape(&client, port, "/metrics/cadvisor").await;
        let resource_bytes = scrape(&client, port, "/metrics/resource").await;
        let summary_cpu = cpu_ms_per_run(200, || async {
            scrape(&client, port, "/stats/summary").await;
        })
        .await;
        let cadvisor_cpu = cpu_ms_per_run(200, || async {
            scrape(&client, port, "/metrics/cadvisor").await;
        })
        .await;
        let provider = setup.provider.clone();
        let started = Instant::now();
        let collect_cpu = cpu_ms_per_run(50, || {
            let provider = provider.clone();
            async move {
                provider.collect().await.expect("collect");
            }
        })
        .await;
        let collect_wall = started.elapsed() / 50;
        eprintln!(
            "{PODS} pods: /stats/summary {summary_bytes} bytes, {summary_cpu:.2} CPU ms/scrape; \
             /metrics/cadvisor {cadvisor_bytes} bytes, {cadvisor_cpu:.2} CPU ms/scrape; \
             /metrics/resource {resource_bytes} bytes; housekeeping {collect_cpu:.2} CPU ms \
             ({collect_wall:?} wall) per collection = {:.3} % of a core at the 10 s interval",
            collect_cpu / 10_000.0 * 100.0
        );
    });

    let mut group = c.benchmark_group(format!("stats_{PODS}_pods"));
    group.bench_function("scrape /stats/summary", |b| {
        b.to_async(&rt)
            .iter(|| async { scrape(&client, port, "/stats/summary").await })
    });
    group.bench_function("scrape /metrics/cadvisor", |b| {
        b.to_async(&rt)
            .iter(|| async { scrape(&client, port, "/metrics/cadvisor").await })
    });
    let provider = setup.provider.clone();
    group.bench_function("housekeeping collection", |b| {
        b.to_async(&rt).iter(|| {
            let provider = provider.clone();
            async move { provider.collect().await.expect("collect") }
        })
    });
    group.finish();
    drop(setup);
}

criterion_group!(benches, bench);
criterion_main!(benches);
