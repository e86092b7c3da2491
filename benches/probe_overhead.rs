//! Probe overhead (not criterion): the real reconciler (`Kubelet`) running 100 pods of one
//! container each on the in-memory `FakeRuntime`, with every container probed every second
//! (an exec liveness and an exec readiness probe, answered at once by the fake), against the
//! same pods with no probes. Each mode runs in a child process of its own, so that one mode's
//! allocations do not count in the other's memory.
//!
//! Per mode: start the pods, wait until every pod is reported Ready, let it settle, then
//! measure over a fixed window the process's CPU time (user + system) and its RSS (sampled
//! each second: mean and maximum). Prints a markdown table.
//!
//! `cargo bench --bench probe_overhead`; `KUBELET_BENCH_CONTAINERS` (default 100) and
//! `KUBELET_BENCH_WINDOW_SECS` (default 30) change the size and the window.

use std::collections::HashSet;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{ExecAction, Node, NodeStatus, Pod, PodStatus, Probe};
use kubelet_core::testing::pods::{container, pod};
use kubelet_core::testing::{ChannelSource, ContainerMatch, ExecReply, FakeRuntime};
use kubelet_core::{Kubelet, KubeletConfig, KubeletEvent, NodeReporter, ReportError};
use tokio::sync::oneshot;

const IMAGE: &str = "docker.io/library/busybox:local";
/// Set in the child process: which mode it measures.
const MODE_ENV: &str = "KUBELET_PROBE_BENCH_MODE";
const SETTLE: Duration = Duration::from_secs(5);
const START_LIMIT: Duration = Duration::from_secs(300);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Counts what the kubelet reports; remembers which pods were reported Ready.
#[derive(Default)]
struct CountingReporter {
    ready: Mutex<HashSet<String>>,
    ready_count: AtomicUsize,
    events: AtomicUsize,
}

#[async_trait]
impl NodeReporter for CountingReporter {
    async fn register_node(&self, _node: &Node) -> Result<(), ReportError> {
        Ok(())
    }

    async fn update_node_status(&self, _node: &str, _s: &NodeStatus) -> Result<(), ReportError> {
        Ok(())
    }

    async fn renew_lease(&self, _node: &str) -> Result<(), ReportError> {
        Ok(())
    }

    async fn update_pod_status(&self, pod: &Pod, status: &PodStatus) -> Result<(), ReportError> {
        let ready = status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        if ready
            && let Some(uid) = &pod.metadata.uid
            && let Ok(mut set) = self.ready.lock()
            && set.insert(uid.clone())
        {
            self.ready_count.fetch_add(1, Ordering::Release);
        }
        Ok(())
    }

    async fn record_event(&self, _event: &KubeletEvent) -> Result<(), ReportError> {
        self.events.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// One `Key:   value kB` line of /proc/self/status, in kB.
fn proc_status_kb(key: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}

/// User + system CPU time of this process, from /proc/self/stat (USER_HZ = 100).
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

fn env_u64(name: &str, default: u64) -> Result<u64, BoxError> {
    match std::env::var(name) {
        Ok(v) => Ok(v.parse().map_err(|e| format!("{name}={v}: {e}"))?),
        Err(_) => Ok(default),
    }
}

fn exec_probe(period: i32) -> Probe {
    Probe {
        exec: Some(ExecAction {
            command: Some(vec!["/bin/check".into()]),
        }),
        period_seconds: Some(period),
        ..Default::default()
    }
}

/// What a child process measured.
struct Measured {
    cpu_ms: u64,
    rss_mean_kb: u64,
    rss_max_kb: u64,
    probes: u64,
    events: usize,
}

async fn measure(probes: bool, n: usize, window: Duration) -> Result<Measured, BoxError> {
    let dir = tempfile::Builder::new()
        .prefix("kubelet-bench-probes-")
        .tempdir()?;
    let runtime = Arc::new(FakeRuntime::with_images([IMAGE]));
    runtime.set_exec_handler(ContainerMatch::any(), |_| ExecReply::stdout("ok"));
    let reporter = Arc::new(CountingReporter::default());
    let (source, sender) = ChannelSource::new("api");
    let mut config = KubeletConfig::new("bench-node");
    config.root_dir = dir.path().join("kubelet");
    config.spec.pod_logs_root = dir.path().join("pods").to_string_lossy().into_owned();
    config.node_ips = vec!["192.0.2.10".into()];
    let kubelet = Kubelet::builder(config)
        .runtime(runtime.clone())
        .reporter(reporter.clone())
        .source(Box::new(source))
        .build()?;
    let handle = kubelet.handle();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(kubelet.run(async move {
        let _ = stopped.await;
    }));
    let pods: Vec<Pod> = (0..n)
        .map(|i| {
            let c = container("app", IMAGE).with(|c| {
                if probes {
                    c.liveness_probe = Some(exec_probe(1));
                    c.readiness_probe = Some(exec_probe(1));
                }
            });
            pod(format!("probe-{i}"))
                .container(c)
                .grace_period(1)
                .build()
        })
        .collect();
    sender.snapshot(pods);
    let started = Instant::now();
    while reporter.ready_count.load(Ordering::Acquire) < n {
        if started.elapsed() > START_LIMIT {
            return Err(format!(
                "only {} of {n} pods Ready after {START_LIMIT:?}",
                reporter.ready_count.load(Ordering::Acquire)
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(SETTLE).await;

    let count = |h: &kubelet_core::KubeletHandle| -> u64 { h.probe_counts().values().sum() };
    let probes_before = count(&handle);
    let cpu_before = cpu_time().ok_or("no /proc/self/stat")?;
    let window_start = Instant::now();
    let mut rss = Vec::new();
    while window_start.elapsed() < window {
        tokio::time::sleep(Duration::from_secs(1)).await;
        rss.extend(proc_status_kb("VmRSS"));
    }
    let cpu = cpu_time()
        .ok_or("no /proc/self/stat")?
        .saturating_sub(cpu_before);
    let elapsed = window_start.elapsed();
    let probes_run = count(&handle).saturating_sub(probes_before);
    let _ = stop.send(());
    task.await??;
    let rss_mean_kb = if rss.is_empty() {
        0
    } else {
        rss.iter().sum::<u64>() / rss.len() as u64
    };
    // Normalise to the nominal window (the loop may overshoot it by a tick).
    let scale = window.as_secs_f64() / elapsed.as_secs_f64();
    Ok(Measured {
        cpu_ms: (cpu.as_millis() as f64 * scale) as u64,
        rss_mean_kb,
        rss_max_kb: rss.iter().copied().max().unwrap_or(0),
        probes: (probes_run as f64 * scale) as u64,
        events: reporter.events.load(Ordering::Relaxed),
    })
}

/// In the child: measure one mode and print `key=value` lines for the parent.
fn child(mode: &str, n: usize, window: Duration) -> Result<(), BoxError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let m = runtime.block_on(measure(mode == "probes", n, window))?;
    println!("cpu_ms={}", m.cpu_ms);
    println!("rss_mean_kb={}", m.rss_mean_kb);
    println!("rss_max_kb={}", m.rss_max_kb);
    println!("probes={}", m.probes);
    println!("events={}", m.events);
    Ok(())
}

fn run_child(mode: &str) -> Result<Measured, BoxError> {
    let exe = std::env::current_exe()?;
    let out = Command::new(exe).env(MODE_ENV, mode).output()?;
    if !out.status.success() {
        return Err(format!(
            "{mode} run failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    let text = String::from_utf8(out.stdout)?;
    let get = |key: &str| -> Result<u64, BoxError> {
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .ok_or_else(|| format!("{mode}: no {key} in {text:?}"))?;
        Ok(line.trim().parse()?)
    };
    Ok(Measured {
        cpu_ms: get("cpu_ms")?,
        rss_mean_kb: get("rss_mean_kb")?,
        rss_max_kb: get("rss_max_kb")?,
        probes: get("probes")?,
        events: usize::try_from(get("events")?)?,
    })
}

fn mb(kb: u64) -> String {
    format!("{:.1}", kb as f64 / 1024.0)
}

fn main() -> Result<(), BoxError> {
    let n = usize::try_from(env_u64("KUBELET_BENCH_CONTAINERS", 100)?)?;
    let window = Duration::from_secs(env_u64("KUBELET_BENCH_WINDOW_SECS", 30)?);
    if let Ok(mode) = std::env::var(MODE_ENV) {
        return child(&mode, n, window);
    }
    println!(
        "probe overhead: {n} pods x 1 container on the FakeRuntime, probed mode = exec liveness + \
         exec readiness every 1 s (answered by the fake); each mode in its own process; \
         measured over {}s after all pods were Ready and {}s of settling",
        window.as_secs(),
        SETTLE.as_secs()
    );
    let none = run_child("none")?;
    let probed = run_child("probes")?;
    let secs = window.as_secs_f64();
    println!();
    println!(
        "| mode | containers | probe runs/s | CPU time in window (ms) | CPU (% of one core) \
         | RSS mean (MB) | RSS max (MB) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (name, m) in [
        ("no probes", &none),
        ("2 exec probes/container, 1 s", &probed),
    ] {
        println!(
            "| {name} | {n} | {:.0} | {} | {:.2} | {} | {} |",
            m.probes as f64 / secs,
            m.cpu_ms,
            m.cpu_ms as f64 / (secs * 10.0),
            mb(m.rss_mean_kb),
            mb(m.rss_max_kb),
        );
    }
    let extra_cpu = probed.cpu_ms.saturating_sub(none.cpu_ms);
    let per_probe_us = if probed.probes > 0 {
        extra_cpu as f64 * 1000.0 / probed.probes as f64
    } else {
        0.0
    };
    println!(
        "| overhead | {n} | | {extra_cpu} | {:.2} | {:+.1} | {:+.1} |",
        extra_cpu as f64 / (secs * 10.0),
        (probed.rss_mean_kb as f64 - none.rss_mean_kb as f64) / 1024.0,
        (probed.rss_max_kb as f64 - none.rss_max_kb as f64) / 1024.0,
    );
    println!();
    println!(
        "about {per_probe_us:.0} us of CPU per probe run; events recorded: {} without probes, \
         {} with",
        none.events, probed.events
    );
    Ok(())
}
