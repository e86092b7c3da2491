//! Load harness (not criterion): the real reconciler (`Kubelet`) starting N pods on the
//! in-memory `FakeRuntime` with zero delays, on a multi-thread tokio runtime in real time.
//! Because the fake answers at once, what it measures is the kubelet's own overhead: the mux,
//! the pod workers, the planner, status computation, the relist loop.
//!
//! For each N it sends one snapshot of N pods (one container each) and waits until every pod
//! was reported `Running` to the `NodeReporter`, then removes them all (empty snapshot) and
//! waits until every pod was reported removed, nothing runs in the runtime and
//! `KubeletHandle::pods()` is empty. It prints time to all Running, per-pod time-to-Running
//! percentiles (taken when the reporter received the status), CPU time of the process while
//! the pods started, and memory: RSS before, with all pods Running and after shutdown, and
//! the peak (VmHWM, reset before each run).
//!
//! `cargo bench --bench reconciler_load` runs N = 100 and 500;
//! `cargo bench --bench reconciler_load -- 100 1000 2000` or
//! `KUBELET_BENCH_PODS=1000 cargo bench --bench reconciler_load` picks other sizes.
//! Each run is bounded (`KUBELET_BENCH_DEADLINE_SECS`, default 300 s per phase).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kubelet_core::testing::pods::{container, pod};
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Node, NodeStatus, Pod, PodStatus};
use kubelet_core::testing::{ChannelSource, FakeRuntime};
use kubelet_core::{Kubelet, KubeletConfig, KubeletEvent, NodeReporter, ReportError};
use tokio::sync::oneshot;

const IMAGE: &str = "docker.io/library/busybox:local";
const POLL: Duration = Duration::from_millis(10);
const DEFAULT_SIZES: [usize; 2] = [100, 500];

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Counts what the kubelet reports and keeps only when each pod was first reported
/// `Running`, so that the memory measured is the kubelet's (and the fake runtime's), not a
/// recorder's history, and so that the harness need not poll `KubeletHandle::pods()` (which
/// clones every pod: at thousands of pods the polling itself would load the machine).
#[derive(Default)]
struct CountingReporter {
    pod_statuses: AtomicUsize,
    events: AtomicUsize,
    removed: AtomicUsize,
    running_at: Mutex<HashMap<String, Instant>>,
    running: AtomicUsize,
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
        let now = Instant::now();
        self.pod_statuses.fetch_add(1, Ordering::Relaxed);
        if status.phase.as_deref() == Some("Running")
            && let Some(uid) = &pod.metadata.uid
            && let Ok(mut running_at) = self.running_at.lock()
            && !running_at.contains_key(uid)
        {
            running_at.insert(uid.clone(), now);
            self.running.fetch_add(1, Ordering::Release);
        }
        Ok(())
    }

    async fn pod_removed(&self, _pod: &Pod) -> Result<(), ReportError> {
        self.removed.fetch_add(1, Ordering::Release);
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

/// Reset the peak RSS (VmHWM) to the current RSS, so that each run reports its own peak
/// (Linux >= 4.0: writing 5 to clear_refs).
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// User + system CPU time of this process, from /proc/self/stat (in USER_HZ ticks, which
/// Linux fixes at 100 per second for user space).
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may hold spaces; the fields after it are fixed.
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line: 12th and 13th after the name.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn sizes() -> Result<Vec<usize>, BoxError> {
    // `cargo bench` passes `--bench` (and criterion-style flags) to every bench binary.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let from_env = std::env::var("KUBELET_BENCH_PODS").ok();
    let words: Vec<String> = if !args.is_empty() {
        args
    } else if let Some(list) = from_env {
        list.split([',', ' '])
            .filter(|w| !w.is_empty())
            .map(str::to_string)
            .collect()
    } else {
        return Ok(DEFAULT_SIZES.to_vec());
    };
    words
        .iter()
        .map(|w| {
            w.parse::<usize>()
                .map_err(|e| format!("pod count {w:?}: {e}").into())
        })
        .collect()
}

fn deadline() -> Duration {
    std::env::var("KUBELET_BENCH_DEADLINE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(Duration::from_secs(300), Duration::from_secs)
}

struct RunResult {
    pods: usize,
    all_running: Duration,
    first_running: Duration,
    p50: Duration,
    p99: Duration,
    cpu_up: Option<Duration>,
    all_stopped: Duration,
    rss_before_kb: Option<u64>,
    rss_running_kb: Option<u64>,
    rss_after_kb: Option<u64>,
    peak_kb: Option<u64>,
    status_updates: usize,
    events: usize,
}

async fn run_once(n: usize, limit: Duration) -> Result<RunResult, BoxError> {
    let dir = std::env::temp_dir().join(format!("kubelet-bench-load-{}-{n}", std::process::id()));
    let result = run_in(n, limit, &dir).await;
    if let Err(e) = std::fs::remove_dir_all(&dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        eprintln!("warning: removing {}: {e}", dir.display());
    }
    result
}

async fn run_in(n: usize, limit: Duration, dir: &std::path::Path) -> Result<RunResult, BoxError> {
    // Zero delays everywhere (the default behaviour runs forever and exits at once on
    // SIGTERM; images are local): only the kubelet's own work is timed.
    let runtime = Arc::new(FakeRuntime::with_images([IMAGE]));
    let reporter = Arc::new(CountingReporter::default());
    let (source, sender) = ChannelSource::new("api");
    let mut config = KubeletConfig::new("bench-node");
    config.root_dir = dir.join("kubelet");
    config.spec.pod_logs_root = dir.join("pods").to_string_lossy().into_owned();
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

    let pods: Vec<_> = (0..n)
        .map(|i| {
            pod(format!("load-{i}"))
                .container(container("app", IMAGE))
                .grace_period(1)
                .build()
        })
        .collect();
    let uids: Vec<String> = pods.iter().filter_map(|p| p.metadata.uid.clone()).collect();

    // Let the kubelet settle (first relist, node registration) before the clock starts.
    tokio::time::sleep(Duration::from_millis(300)).await;
    reset_peak_rss();
    let rss_before_kb = proc_status_kb("VmRSS");
    let cpu_before = cpu_time();

    let started = Instant::now();
    if !sender.snapshot(pods) {
        return Err("the kubelet dropped its pod source".into());
    }
    loop {
        let running = reporter.running.load(Ordering::Acquire);
        if running >= n {
            break;
        }
        if started.elapsed() > limit {
            let _ = stop.send(());
            let _ = task.await;
            return Err(format!("{n} pods: only {running} Running after {limit:?}").into());
        }
        if task.is_finished() {
            return Err(format!("{n} pods: the kubelet stopped early: {:?}", task.await).into());
        }
        tokio::time::sleep(POLL).await;
    }
    let all_running = started.elapsed();
    let cpu_up = cpu_before.zip(cpu_time()).map(|(a, b)| b.saturating_sub(a));
    let rss_running_kb = proc_status_kb("VmRSS");
    let status_updates = reporter.pod_statuses.load(Ordering::Relaxed);
    let events = reporter.events.load(Ordering::Relaxed);

    // Tear down: an empty snapshot removes every pod; done when every pod was reported
    // removed and nothing runs any more.
    let removing = Instant::now();
    sender.snapshot(Vec::new());
    loop {
        let removed = reporter.removed.load(Ordering::Acquire);
        if removed >= n && runtime.running_containers().is_empty() && handle.pods().is_empty() {
            break;
        }
        if removing.elapsed() > limit {
            let _ = stop.send(());
            let _ = task.await;
            return Err(format!(
                "{n} pods: {removed} reported removed, {} containers still running {limit:?} \
                 after removal",
                runtime.running_containers().len()
            )
            .into());
        }
        tokio::time::sleep(POLL).await;
    }
    let all_stopped = removing.elapsed();
    let peak_kb = proc_status_kb("VmHWM");

    let _ = stop.send(());
    task.await??;
    let rss_after_kb = proc_status_kb("VmRSS");

    let running_at = reporter
        .running_at
        .lock()
        .map(|r| r.clone())
        .unwrap_or_default();
    let mut times: Vec<Duration> = uids
        .iter()
        .filter_map(|u| {
            running_at
                .get(u)
                .map(|t| t.saturating_duration_since(started))
        })
        .collect();
    times.sort();
    Ok(RunResult {
        pods: n,
        all_running,
        first_running: times.first().copied().unwrap_or_default(),
        p50: percentile(&times, 50.0),
        p99: percentile(&times, 99.0),
        cpu_up,
        all_stopped,
        rss_before_kb,
        rss_running_kb,
        rss_after_kb,
        peak_kb,
        status_updates,
        events,
    })
}

fn ms(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1000.0)
}

fn mb(kb: Option<u64>) -> String {
    kb.map_or_else(|| "?".into(), |kb| format!("{:.1}", kb as f64 / 1024.0))
}

fn main() -> Result<(), BoxError> {
    let sizes = sizes()?;
    let limit = deadline();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "reconciler load: FakeRuntime with zero delays, multi-thread tokio ({threads} workers), \
         relist period 1 s, per-pod times as reported to the NodeReporter"
    );
    let mut results = Vec::new();
    for n in sizes {
        let r = runtime.block_on(run_once(n, limit))?;
        results.push(r);
    }
    println!();
    println!(
        "| pods | all Running (ms) | first (ms) | p50 (ms) | p99 (ms) | CPU up (ms) | pods/s \
         | status updates | events | all removed (ms) | RSS before (MB) | RSS all Running (MB) \
         | RSS after (MB) | peak VmHWM (MB) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &results {
        println!(
            "| {} | {} | {} | {} | {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} |",
            r.pods,
            ms(r.all_running),
            ms(r.first_running),
            ms(r.p50),
            ms(r.p99),
            r.cpu_up.map_or_else(|| "?".into(), ms),
            r.pods as f64 / r.all_running.as_secs_f64(),
            r.status_updates,
            r.events,
            ms(r.all_stopped),
            mb(r.rss_before_kb),
            mb(r.rss_running_kb),
            mb(r.rss_after_kb),
            mb(r.peak_kb),
        );
    }
    Ok(())
}
