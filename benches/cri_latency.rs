//! Pod start latency against a real containerd (started by
//! `kubelet_cri::testing::TestContainerd`, which also tears it down):
//!
//! (a) the CRI floor: M pods one after another, RunPodSandbox + CreateContainer +
//!     StartContainer of a busybox container (through `CriRuntime`, the project's thin CRI
//!     client), then each pod's teardown (StopContainer, RemoveContainer, StopPodSandbox,
//!     RemovePodSandbox); p50/p99 per call and per pod;
//! (b) the same number of pods through the kubelet (reconciler + `CriRuntime`, a
//!     `ChannelSource`, a `RecordingReporter`), sent one at a time: latency from sending the
//!     pod to its status being reported `Running`, split into the part before the sandbox
//!     exists, the CRI work, and the part after the container started; then each pod's
//!     removal, one at a time, until the runtime holds nothing of it.
//!
//! `cargo bench --bench cri_latency` (M = 20), `cargo bench --bench cri_latency -- 50` or
//! `KUBELET_BENCH_CRI_PODS=50`. `KUBELET_BENCH_RELIST_MS` changes the kubelet's relist
//! period (default 1000, the reference's). Needs root and containerd (scripts/install-deps.sh);
//! prints why and exits 0 otherwise.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use kubelet_core::Runtime;
use kubelet_core::runtime::{ContainerState, ListFilter, SandboxState};
use kubelet_core::testing::pods::{container, pod};
use kubelet_core::testing::{ChannelSource, ChannelSourceSender, RecordingReporter};
use kubelet_core::{Kubelet, KubeletConfig, KubeletHandle, RuntimeManagedNetwork};
use kubelet_cri::CriRuntime;
use kubelet_cri::testing::{BUSYBOX_IMAGE, TestContainerd, missing_prerequisites};
use support::{
    BoxError, SCRIPT, Samples, Table, container_config, ms, ns_between, sandbox_config,
    since_epoch_ns,
};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
const DEFAULT_PODS: usize = 20;
/// Bound of every wait: the machine is small and shared.
const DEADLINE: Duration = Duration::from_secs(120);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

fn pod_count() -> Result<usize, BoxError> {
    // `cargo bench` passes `--bench` to every bench binary.
    let arg = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    match arg.or_else(|| std::env::var("KUBELET_BENCH_CRI_PODS").ok()) {
        Some(s) => s
            .parse()
            .map_err(|e| format!("pod count {s:?}: {e}").into()),
        None => Ok(DEFAULT_PODS),
    }
}

fn relist_period() -> Duration {
    std::env::var("KUBELET_BENCH_RELIST_MS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(Duration::from_secs(1), Duration::from_millis)
}

/// Time one call.
async fn timed<T, F>(table: &mut Table, name: &str, call: F) -> Result<T, BoxError>
where
    F: std::future::Future<Output = Result<T, kubelet_core::RuntimeError>>,
{
    let started = Instant::now();
    let out = call.await.map_err(|e| format!("{name}: {e}"))?;
    table.record(name, started.elapsed());
    Ok(out)
}

/// (a) The CRI floor: every pod up one after another, then every pod down.
async fn raw_floor(
    env: &TestContainerd,
    rt: &CriRuntime,
    m: usize,
    prefix: &str,
) -> Result<Table, BoxError> {
    let mut table = Table::default();
    let mut up = Vec::new();
    for i in 0..m {
        let name = format!("{prefix}-{i}");
        let uid = format!("{prefix}-uid-{i}");
        let sandbox = sandbox_config(env, &name, &uid)?;
        let pod_started = Instant::now();
        let sandbox_id = timed(&mut table, "RunPodSandbox", rt.run_pod_sandbox(&sandbox)).await?;
        let container_id = timed(
            &mut table,
            "CreateContainer",
            rt.create_container(&sandbox_id, &container_config(&sandbox), &sandbox),
        )
        .await?;
        timed(
            &mut table,
            "StartContainer",
            rt.start_container(&container_id),
        )
        .await?;
        table.record("pod up (3 calls)", pod_started.elapsed());
        up.push((sandbox_id, container_id));
    }
    for (sandbox_id, container_id) in up {
        let pod_stopping = Instant::now();
        timed(
            &mut table,
            "StopContainer",
            rt.stop_container(&container_id, STOP_TIMEOUT),
        )
        .await?;
        timed(
            &mut table,
            "RemoveContainer",
            rt.remove_container(&container_id),
        )
        .await?;
        timed(
            &mut table,
            "StopPodSandbox",
            rt.stop_pod_sandbox(&sandbox_id),
        )
        .await?;
        timed(
            &mut table,
            "RemovePodSandbox",
            rt.remove_pod_sandbox(&sandbox_id),
        )
        .await?;
        table.record("pod down (4 calls)", pod_stopping.elapsed());
    }
    Ok(table)
}

/// A kubelet running on the test containerd.
struct Node {
    reporter: Arc<RecordingReporter>,
    pods: ChannelSourceSender,
    handle: KubeletHandle,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), kubelet_core::KubeletError>>,
    root: Option<tempfile::TempDir>,
}

impl Node {
    fn start(
        env: &TestContainerd,
        runtime: CriRuntime,
        relist: Duration,
    ) -> Result<Self, BoxError> {
        let root = tempfile::Builder::new()
            .prefix("kubelet-bench-")
            .tempdir()?;
        let mut config = KubeletConfig::new("bench-node");
        config.root_dir = root.path().join("kubelet");
        config.relist_period = relist;
        config.spec.pod_logs_root = env.log_dir().to_string_lossy().into_owned();
        // containerd leaves pod cgroups behind; the kubelet removes them, as the daemon does.
        config.cgroup_fs_root = Some("/sys/fs/cgroup".into());
        config.node_ips = vec!["192.0.2.10".into()];
        let reporter = Arc::new(RecordingReporter::new());
        let (source, pods) = ChannelSource::new("api");
        let kubelet = Kubelet::builder(config)
            .runtime(Arc::new(runtime))
            .network(Arc::new(RuntimeManagedNetwork))
            .reporter(reporter.clone())
            .source(Box::new(source))
            .build()?;
        let handle = kubelet.handle();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(kubelet.run(async move {
            let _ = stopped.await;
        }));
        Ok(Self {
            reporter,
            pods,
            handle,
            stop: Some(stop),
            task,
            root: Some(root),
        })
    }

    async fn shutdown(mut self) -> Result<(), BoxError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await??;
        if let Some(root) = self.root.take() {
            let path = root.path().display().to_string();
            root.close().map_err(|e| format!("removing {path}: {e}"))?;
        }
        Ok(())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // On an early return the kubelet must not outlive the containerd it talks to.
        self.task.abort();
    }
}

/// (b) The same pods through the kubelet, one at a time.
async fn through_kubelet(
    env: &TestContainerd,
    observer: &CriRuntime,
    m: usize,
    relist: Duration,
) -> Result<Table, BoxError> {
    let mut table = Table::default();
    let node = Node::start(env, env.runtime().await, relist)?;
    // Let the kubelet come up (first relist) before the first pod.
    let ready = Instant::now();
    while node.handle.healthz().is_err() {
        if ready.elapsed() > DEADLINE {
            return Err("the kubelet never relisted".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let mut uids = Vec::new();
    for i in 0..m {
        let p = pod(format!("kube-{i}"))
            .uid(format!("kube-uid-{i}"))
            .container(
                container("app", BUSYBOX_IMAGE)
                    .command(["sh", "-c", SCRIPT])
                    .pull_policy("IfNotPresent"),
            )
            .grace_period(10)
            .build();
        let uid = p.metadata.uid.clone().unwrap_or_default();
        let sent_wall = SystemTime::now();
        let sent = Instant::now();
        node.pods.add(p);
        let reporter = node.reporter.clone();
        let wait = reporter.wait_for(|r| r.last_phase(&uid).as_deref() == Some("Running"));
        if tokio::time::timeout(DEADLINE, wait).await.is_err() {
            return Err(format!(
                "pod {uid} not Running within {DEADLINE:?}; last status {:?}",
                node.reporter.last_pod_status(&uid)
            )
            .into());
        }
        let to_running = sent.elapsed();
        table.record("send -> Running reported", to_running);

        // Where the time went, from the runtime's own timestamps.
        let sent_ns = since_epoch_ns(sent_wall);
        let reported_ns = sent_ns + i64::try_from(to_running.as_nanos()).unwrap_or(0);
        let sandboxes = observer.list_pod_sandboxes(&ListFilter::pod(&uid)).await?;
        let containers = observer.list_containers(&ListFilter::pod(&uid)).await?;
        if let (Some(sb), Some(c)) = (sandboxes.first(), containers.first()) {
            let status = observer.container_status(&c.id).await?;
            table.record(
                "  send -> sandbox created",
                ns_between(sent_ns, sb.created_at),
            );
            table.record(
                "  sandbox created -> container started",
                ns_between(sb.created_at, status.started_at),
            );
            table.record(
                "  container started -> Running reported",
                ns_between(status.started_at, reported_ns),
            );
        }
        uids.push(uid);
    }

    for uid in &uids {
        let removing = Instant::now();
        node.pods.remove(uid.clone());
        loop {
            let sandboxes = observer.list_pod_sandboxes(&ListFilter::pod(uid)).await?;
            let sandboxes_stopped = sandboxes.iter().all(|s| s.state == SandboxState::NotReady);
            let gone_from_runtime = sandboxes.is_empty()
                || (sandboxes_stopped
                    && observer
                        .list_containers(&ListFilter::pod(uid))
                        .await?
                        .iter()
                        .all(|c| c.state != ContainerState::Running));
            if gone_from_runtime {
                table.record("remove -> stopped in runtime", removing.elapsed());
                break;
            }
            if removing.elapsed() > DEADLINE {
                return Err(format!("pod {uid} still running {DEADLINE:?} after removal").into());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    // The kubelet also removes the stopped sandboxes; give it the time to, so that the
    // harness's own cleanup has nothing left to do.
    let cleaning = Instant::now();
    while !observer
        .list_pod_sandboxes(&ListFilter::all())
        .await?
        .is_empty()
        && cleaning.elapsed() < DEADLINE
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    table.record(
        "all removed from runtime (after last stop)",
        cleaning.elapsed(),
    );
    node.shutdown().await?;
    Ok(table)
}

async fn run(m: usize, relist: Duration) -> Result<(), BoxError> {
    let Some(env) = TestContainerd::try_start().await? else {
        println!("cri_latency: skipped (see above)");
        return Ok(());
    };
    let rt = env.runtime().await;
    let version = rt.version().await?;
    println!(
        "cri_latency: {} {} at {}, {m} pods, busybox `sh -c '{SCRIPT}'`, pod network (CNI bridge)",
        version.runtime_name,
        version.runtime_version,
        env.endpoint()
    );

    // The first pod after containerd's start pays for the bridge and the shim binary's
    // first load: one untimed pod, so that neither (a) nor (b) carries it.
    raw_floor(&env, &rt, 1, "warmup").await?;
    let raw = raw_floor(&env, &rt, m, "raw").await?;
    raw.print(&format!(
        "(a) CRI floor, {m} pods sequentially (up all, then down all)"
    ));
    let kube = through_kubelet(&env, &rt, m, relist).await?;
    kube.print(&format!(
        "(b) through the kubelet (relist period {} ms), {m} pods one at a time",
        relist.as_millis()
    ));
    // The machine is shared: the floor measured again shows how much it drifted meanwhile.
    let again = raw_floor(&env, &rt, m, "again").await?;
    again.print("(a') CRI floor again, after (b)");

    let mut floor = Samples::default();
    for table in [&raw, &again] {
        if let Some(s) = table.get("pod up (3 calls)") {
            floor.0.extend(&s.0);
        }
    }
    if let Some(kubelet) = kube.get("send -> Running reported") {
        println!();
        println!(
            "kubelet time-to-Running vs CRI floor (a and a'): p50 {} ms vs {} ms (x{:.1}), p99 {} ms vs {} ms",
            ms(kubelet.percentile(50.0)),
            ms(floor.percentile(50.0)),
            kubelet.percentile(50.0).as_secs_f64() / floor.percentile(50.0).as_secs_f64().max(1e-9),
            ms(kubelet.percentile(99.0)),
            ms(floor.percentile(99.0)),
        );
    }
    // `env` drops here: sandboxes left (none, normally) are removed through CRI, containerd
    // is killed, the bridge, iptables chains and pod cgroups go.
    Ok(())
}

fn main() -> Result<(), BoxError> {
    if let Some(why) = missing_prerequisites() {
        println!("cri_latency: skipped: needs a real containerd: {why}");
        return Ok(());
    }
    let m = pod_count()?;
    let relist = relist_period();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(m, relist))
}
