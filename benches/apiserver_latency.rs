//! Pod start latency through the API server, against a real containerd (started by
//! `kubelet_cri::testing::TestContainerd`, which also tears it down), for bursts of N pods:
//!
//! (a) the CRI floor: N pods at once as tokio tasks through `CriRuntime`, each
//!     RunPodSandbox + CreateContainer + StartContainer of a busybox container; per-pod
//!     latency and the time until all started, then all torn down at once;
//! (b) the same N pods through the fake kube-apiserver of `kubelet_core::testing::apiserver`
//!     (plain HTTP, reached through a kubeconfig only): the kubelet runs in-process as the
//!     daemon wires it (`CriRuntime`, `ApiServerSource`, `ApiServerReporter`, node status),
//!     the bench watches the pods with a kube-rs watcher and POSTs all N at once with its own
//!     kube-rs client; latency from each pod's POST being sent to the watch first showing it
//!     `Running`, and the time until all are. Then all are DELETEd through the API (the
//!     kubelet stops them and finishes the deletion), until neither the API server nor the
//!     runtime holds any;
//! (c) the same as (b) through a real kube-apiserver and etcd started by
//!     `kubelet_core::testing::envtest` (HTTPS, Node and RBAC authorization, NodeRestriction
//!     and the default admission plugins). The kubelet joins as `system:node:<node>` with a
//!     client certificate, so the Node authorizer and NodeRestriction check every request of
//!     it, as on a cluster; the bench's client is the admin. Only with `KUBELET_TEST_ASSETS`
//!     naming a directory with `kube-apiserver` (etcd from there, else `PATH` or
//!     /usr/bin/etcd); skipped with a message otherwise. No controller-manager or scheduler
//!     runs there, which the bench does not need: its pods carry `spec.nodeName`. It is
//!     started once, before the first burst, so that a server that cannot start fails the
//!     bench before minutes of (a) and (b); it idles during them.
//!
//! The pods set `automountServiceAccountToken: false` in (b) and (c): the real server's
//! ServiceAccount admission would otherwise add a projected `kube-api-access-*` volume (a
//! TokenRequest and the `kube-root-ca.crt` ConfigMap per pod) that the fake does not add, and
//! (b) and (c) would not time the same work.
//!
//! A kubelet runs only during (b) and (c), one per burst and path, and is stopped (its Node
//! deleted) before the next: it would remove the pods of (a), which no source wants. Every
//! burst waits until its pods are gone from the API server and the runtime, and a kubelet
//! starts only on an empty runtime (else the bench fails). The envtest's processes are
//! killed (by PID) when it drops, at the end and on every early return.
//!
//! `cargo bench --bench apiserver_latency` (bursts of 30 and 100),
//! `cargo bench --bench apiserver_latency -- 10 50` or `KUBELET_BENCH_API_PODS=10,50`;
//! `KUBELET_TEST_ASSETS=/work/shared/envtest cargo bench --bench apiserver_latency` adds (c).
//! Needs root and containerd (scripts/install-deps.sh); prints why and exits 0 otherwise.
//! `RUST_LOG=kubelet_core=info` shows the kubelet's log on stderr.

// Shared with cri_latency; this bench uses part of it.
#[allow(dead_code)]
mod support;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kubelet_core::apiserver::{
    ApiServerReporter, ApiServerSource, ClientSource, DEFAULT_SYNC_PERIOD, NodeClient,
};
use kubelet_core::node::{MachineInfo, NodeConfig};
use kubelet_core::runtime::ListFilter;
use kubelet_core::testing::apiserver::FakeApiServer;
use kubelet_core::testing::envtest::{self, ASSETS_ENV, Envtest, REQUIRE_ENV};
use kubelet_core::{Kubelet, KubeletConfig, KubeletError, Runtime, RuntimeManagedNetwork};
use kubelet_cri::CriRuntime;
use kubelet_cri::testing::{BUSYBOX_IMAGE, TestContainerd, missing_prerequisites};
use support::{
    BoxError, SCRIPT, Samples, Table, container_config, ms, ns_between, sandbox_config,
    since_epoch_ns,
};
use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};

const NODE: &str = "bench-node";
const DEFAULT_BURSTS: [usize; 2] = [30, 100];
/// Bound of the waits for one whole burst (start or removal): the machine is small and shared.
const BURST_DEADLINE: Duration = Duration::from_secs(600);
/// Bound of every other wait.
const DEADLINE: Duration = Duration::from_secs(120);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// `terminationGracePeriodSeconds` of the API pods (the script exits at once on SIGTERM).
const GRACE_SECONDS: i64 = 10;
/// The label that tells one burst's pods from another's.
const BURST_LABEL: &str = "bench.kubelet-rs.io/burst";

fn burst_sizes() -> Result<Vec<usize>, BoxError> {
    // `cargo bench` passes `--bench` to every bench binary.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let given = if args.is_empty() {
        std::env::var("KUBELET_BENCH_API_PODS")
            .map(|v| v.split(',').map(|s| s.trim().to_string()).collect())
            .unwrap_or_default()
    } else {
        args
    };
    if given.is_empty() {
        return Ok(DEFAULT_BURSTS.to_vec());
    }
    given
        .iter()
        .map(|s| match s.parse::<usize>() {
            Ok(0) => Err(format!("burst size {s:?}: must be at least 1").into()),
            Ok(n) => Ok(n),
            Err(e) => Err(format!("burst size {s:?}: {e}").into()),
        })
        .collect()
}

/// Collects every task's output; fails on the first error or when `deadline` passes (the
/// tasks left are aborted when the set drops).
async fn join_all<T: 'static>(
    set: &mut JoinSet<Result<T, BoxError>>,
    deadline: Instant,
    what: &str,
) -> Result<Vec<T>, BoxError> {
    let mut out = Vec::new();
    loop {
        let next = tokio::time::timeout_at(deadline.into(), set.join_next())
            .await
            .map_err(|_| format!("{what}: {} not done within the deadline", set.len()))?;
        match next {
            None => return Ok(out),
            Some(joined) => out.push(joined.map_err(|e| format!("{what}: {e}"))??),
        }
    }
}

/// Polls `check` every 100 ms until it holds; fails with `what` after `limit`.
async fn poll_until<F, Fut>(what: &str, limit: Duration, mut check: F) -> Result<(), BoxError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool, BoxError>>,
{
    let started = Instant::now();
    loop {
        if check().await? {
            return Ok(());
        }
        if started.elapsed() > limit {
            return Err(format!("timed out after {limit:?} waiting for {what}").into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What one burst measured: per-pod latencies and the time until the last pod was up.
struct Burst {
    per_pod: Samples,
    all: Duration,
}

/// (a) The CRI floor: `n` pods at once, then all torn down at once.
async fn cri_burst(
    env: &TestContainerd,
    rt: &CriRuntime,
    n: usize,
    prefix: &str,
) -> Result<(Burst, Table), BoxError> {
    let mut configs = Vec::new();
    for i in 0..n {
        // The log directories are made before the clock starts, as sandbox_config makes them.
        configs.push(sandbox_config(
            env,
            &format!("{prefix}-{i}"),
            &format!("{prefix}-uid-{i}"),
        )?);
    }
    let started = Instant::now();
    let mut set = JoinSet::new();
    for sandbox in configs {
        let rt = rt.clone();
        set.spawn(async move {
            let pod_started = Instant::now();
            let call = Instant::now();
            let sandbox_id = rt
                .run_pod_sandbox(&sandbox)
                .await
                .map_err(|e| format!("RunPodSandbox {}: {e}", sandbox.metadata.name))?;
            let run = call.elapsed();
            let call = Instant::now();
            let container_id = rt
                .create_container(&sandbox_id, &container_config(&sandbox), &sandbox)
                .await
                .map_err(|e| format!("CreateContainer in {}: {e}", sandbox.metadata.name))?;
            let create = call.elapsed();
            let call = Instant::now();
            rt.start_container(&container_id)
                .await
                .map_err(|e| format!("StartContainer in {}: {e}", sandbox.metadata.name))?;
            let steps = [
                ("pod up (3 calls)", pod_started.elapsed()),
                ("  RunPodSandbox", run),
                ("  CreateContainer", create),
                ("  StartContainer", call.elapsed()),
            ];
            Ok::<_, BoxError>((steps, sandbox_id, container_id))
        });
    }
    let up = join_all(&mut set, started + BURST_DEADLINE, "CRI burst").await?;
    let all = started.elapsed();

    let mut table = Table::default();
    let mut per_pod = Samples::default();
    for (steps, _, _) in &up {
        per_pod.push(steps[0].1);
        for (name, d) in steps {
            table.record(name, *d);
        }
    }

    let stopping = Instant::now();
    let mut set = JoinSet::new();
    for (_, sandbox_id, container_id) in up {
        let rt = rt.clone();
        set.spawn(async move {
            let pod_stopping = Instant::now();
            rt.stop_container(&container_id, STOP_TIMEOUT).await?;
            rt.remove_container(&container_id).await?;
            rt.stop_pod_sandbox(&sandbox_id).await?;
            rt.remove_pod_sandbox(&sandbox_id).await?;
            Ok::<_, BoxError>(pod_stopping.elapsed())
        });
    }
    for d in join_all(&mut set, stopping + BURST_DEADLINE, "CRI teardown").await? {
        table.record("pod down (4 calls)", d);
    }
    table.record("all pods down", stopping.elapsed());
    Ok((Burst { per_pod, all }, table))
}

/// The kubelet, in-process, wired to the API server as the daemon wires it.
struct KubeletNode {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), KubeletError>>,
    sync: JoinHandle<()>,
    root: Option<tempfile::TempDir>,
}

impl KubeletNode {
    async fn start(
        env: &TestContainerd,
        kubeconfig: &Path,
        bench: &kube::Client,
    ) -> Result<Self, BoxError> {
        let client =
            NodeClient::connect(&ClientSource::Kubeconfig(kubeconfig.into()), NODE).await?;
        client.check_access().await?;
        let root = tempfile::Builder::new()
            .prefix("kubelet-bench-")
            .tempdir()?;
        let mut config = KubeletConfig::new(NODE);
        config.root_dir = root.path().join("kubelet");
        std::fs::create_dir_all(&config.root_dir)
            .map_err(|e| format!("{}: {e}", config.root_dir.display()))?;
        config.spec.pod_logs_root = env.log_dir().to_string_lossy().into_owned();
        // containerd leaves pod cgroups behind; the kubelet removes them, as the daemon does.
        config.cgroup_fs_root = Some("/sys/fs/cgroup".into());
        let node_ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10));
        config.node_ips = vec![node_ip.to_string()];
        let mut node = NodeConfig::new(NODE);
        node.node_ips = vec![node_ip];
        let machine = MachineInfo::read(&config.root_dir);

        let reporter = ApiServerReporter::new(client.clone());
        let sync = reporter.spawn_sync(DEFAULT_SYNC_PERIOD);
        let kubelet = Kubelet::builder(config)
            .runtime(Arc::new(env.runtime().await))
            .network(Arc::new(RuntimeManagedNetwork))
            .reporter(Arc::new(reporter))
            .source(Box::new(ApiServerSource::new(client)))
            .node_status(node, machine)
            .build();
        let kubelet = match kubelet {
            Ok(k) => k,
            Err(e) => {
                sync.abort();
                return Err(e.into());
            }
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(kubelet.run(async move {
            let _ = stopped.await;
        }));
        let node = Self {
            stop: Some(stop),
            task,
            sync,
            root: Some(root),
        };
        // Up means registered and Ready, as a scheduler would wait for.
        let nodes: Api<Node> = Api::all(bench.clone());
        poll_until("the Node to be Ready", DEADLINE, || {
            let nodes = nodes.clone();
            async move {
                let ready = nodes.get_opt(NODE).await?.is_some_and(|n| {
                    n.status.and_then(|s| s.conditions).is_some_and(|cs| {
                        cs.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                    })
                });
                Ok(ready)
            }
        })
        .await?;
        Ok(node)
    }

    /// Stops the kubelet and deletes its Node, so that the next kubelet's Node turns Ready
    /// only once that kubelet reports.
    async fn shutdown(mut self, bench: &kube::Client) -> Result<(), BoxError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(DEADLINE, &mut self.task)
            .await
            .map_err(|_| "the kubelet did not stop")???;
        self.sync.abort();
        Api::<Node>::all(bench.clone())
            .delete(NODE, &DeleteParams::default())
            .await?;
        if let Some(root) = self.root.take() {
            let path = root.path().display().to_string();
            root.close().map_err(|e| format!("removing {path}: {e}"))?;
        }
        Ok(())
    }
}

impl Drop for KubeletNode {
    fn drop(&mut self) {
        // On an early return the kubelet must not outlive the containerd it talks to.
        self.task.abort();
        self.sync.abort();
    }
}

/// What the bench's watch saw, stamped when it arrived.
enum Seen {
    Running(String, Instant),
    Gone(String, Instant),
}

/// A watch of one burst's pods from the bench side; aborted on drop.
struct PodWatch {
    seen: mpsc::UnboundedReceiver<Seen>,
    task: JoinHandle<()>,
}

impl PodWatch {
    /// Starts watching and returns once the watcher's initial list is done, so that no
    /// pod of the burst can predate it.
    async fn start(pods: Api<Pod>, selector: &str) -> Result<Self, BoxError> {
        let (tx, seen) = mpsc::unbounded_channel();
        let (listed_tx, listed) = oneshot::channel();
        let config = watcher::Config::default().labels(selector);
        let task = tokio::spawn(async move {
            let mut listed_tx = Some(listed_tx);
            let mut stream = watcher::watcher(pods, config).default_backoff().boxed();
            let mut running = std::collections::HashSet::new();
            while let Some(event) = stream.next().await {
                let at = Instant::now();
                match event {
                    Ok(Event::InitDone) => {
                        if let Some(listed) = listed_tx.take() {
                            let _ = listed.send(());
                        }
                    }
                    Ok(Event::Apply(pod) | Event::InitApply(pod)) => {
                        let is_running = pod
                            .status
                            .as_ref()
                            .and_then(|s| s.phase.as_deref())
                            .is_some_and(|p| p == "Running");
                        let name = pod.metadata.name.unwrap_or_default();
                        if is_running && running.insert(name.clone()) {
                            let _ = tx.send(Seen::Running(name, at));
                        }
                    }
                    Ok(Event::Delete(pod)) => {
                        let _ = tx.send(Seen::Gone(pod.metadata.name.unwrap_or_default(), at));
                    }
                    Ok(Event::Init) => {}
                    Err(e) => tracing::warn!(error = %e, "bench pod watch failed; retrying"),
                }
            }
        });
        let watch = Self { seen, task };
        tokio::time::timeout(DEADLINE, listed)
            .await
            .map_err(|_| "the bench's pod watch never listed")?
            .map_err(|_| "the bench's pod watch ended")?;
        Ok(watch)
    }

    /// Waits until `want` has been seen for `n` distinct pods; their times by name.
    async fn wait(
        &mut self,
        n: usize,
        want: fn(&Seen) -> Option<(&str, Instant)>,
        deadline: Instant,
        what: &str,
    ) -> Result<HashMap<String, Instant>, BoxError> {
        let mut got = HashMap::new();
        while got.len() < n {
            match tokio::time::timeout_at(deadline.into(), self.seen.recv()).await {
                Ok(Some(seen)) => {
                    if let Some((name, at)) = want(&seen) {
                        got.entry(name.to_string()).or_insert(at);
                    }
                }
                Ok(None) => return Err("the bench's pod watch ended".into()),
                Err(_) => {
                    return Err(format!("only {} of {n} pods {what} in time", got.len()).into());
                }
            }
        }
        Ok(got)
    }
}

impl Drop for PodWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A pod bound to the bench node, as the scheduler leaves it.
fn api_pod(name: &str, burst: &str) -> Result<Pod, BoxError> {
    let pod = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {BURST_LABEL: burst}},
        "spec": {
            "nodeName": NODE,
            // Same work on the fake and the real server (see the module documentation).
            "automountServiceAccountToken": false,
            "terminationGracePeriodSeconds": GRACE_SECONDS,
            "containers": [{
                "name": "app",
                "image": BUSYBOX_IMAGE,
                "imagePullPolicy": "IfNotPresent",
                "command": ["sh", "-c", SCRIPT],
            }],
        },
    });
    Ok(serde_json::from_value(pod)?)
}

/// (b) `n` pods created at once through the API server, Running as the watch sees it, then
/// deleted through the API until the API server and the runtime hold none.
async fn api_burst(
    client: &kube::Client,
    observer: &CriRuntime,
    n: usize,
    burst: &str,
) -> Result<(Burst, Table), BoxError> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let selector = format!("{BURST_LABEL}={burst}");
    let mut watch = PodWatch::start(pods.clone(), &selector).await?;
    let mut manifests = Vec::new();
    for i in 0..n {
        let name = format!("{burst}-{i}");
        manifests.push((api_pod(&name, burst)?, name));
    }

    let started = Instant::now();
    let mut set = JoinSet::new();
    for (pod, name) in manifests {
        let pods = pods.clone();
        set.spawn(async move {
            let sent_wall = SystemTime::now();
            let sent = Instant::now();
            let created = pods
                .create(&PostParams::default(), &pod)
                .await
                .map_err(|e| format!("creating pod {name}: {e}"))?;
            let uid = created.metadata.uid.unwrap_or_default();
            Ok::<_, BoxError>((name, uid, sent, sent_wall, sent.elapsed()))
        });
    }
    let deadline = started + BURST_DEADLINE;
    let created = join_all(&mut set, deadline, "creating pods").await?;
    let running_at = watch
        .wait(
            n,
            |s| match s {
                Seen::Running(name, at) => Some((name.as_str(), *at)),
                Seen::Gone(..) => None,
            },
            deadline,
            "Running",
        )
        .await?;
    let last_running = running_at.values().max().copied().unwrap_or(started);
    let all = last_running.duration_since(started);

    let mut table = Table::default();
    let mut per_pod = Samples::default();
    for (name, _, sent, _, post) in &created {
        let to_running = running_at
            .get(name)
            .map_or(Duration::ZERO, |at| at.duration_since(*sent));
        per_pod.push(to_running);
        table.record("POST sent -> Running seen by watch", to_running);
        table.record("  POST (create call)", *post);
    }
    // Where the time went, from the runtime's own timestamps (read after the measurement).
    for (name, uid, sent, sent_wall, _) in &created {
        let sent_ns = since_epoch_ns(*sent_wall);
        let Some(seen) = running_at.get(name) else {
            continue;
        };
        let seen_ns =
            sent_ns + i64::try_from(seen.duration_since(*sent).as_nanos()).unwrap_or(i64::MAX);
        let sandboxes = observer.list_pod_sandboxes(&ListFilter::pod(uid)).await?;
        let containers = observer.list_containers(&ListFilter::pod(uid)).await?;
        if let (Some(sb), Some(c)) = (sandboxes.first(), containers.first()) {
            let status = observer.container_status(&c.id).await?;
            table.record(
                "  POST sent -> sandbox created",
                ns_between(sent_ns, sb.created_at),
            );
            table.record(
                "  sandbox created -> container started",
                ns_between(sb.created_at, status.started_at),
            );
            table.record(
                "  container started -> Running seen by watch",
                ns_between(status.started_at, seen_ns),
            );
        }
    }

    let deleting = Instant::now();
    let mut set = JoinSet::new();
    for (name, ..) in &created {
        let pods = pods.clone();
        let name = name.clone();
        set.spawn(async move {
            let sent = Instant::now();
            pods.delete(&name, &DeleteParams::default())
                .await
                .map_err(|e| format!("deleting pod {name}: {e}"))?;
            Ok::<_, BoxError>((name, sent))
        });
    }
    let deadline = deleting + BURST_DEADLINE;
    let delete_sent = join_all(&mut set, deadline, "deleting pods").await?;
    let gone_at = watch
        .wait(
            n,
            |s| match s {
                Seen::Gone(name, at) => Some((name.as_str(), *at)),
                Seen::Running(..) => None,
            },
            deadline,
            "gone",
        )
        .await?;
    for (name, sent) in &delete_sent {
        if let Some(at) = gone_at.get(name) {
            table.record(
                "DELETE sent -> object gone (watch)",
                at.duration_since(*sent),
            );
        }
    }
    // The kubelet removes the sandboxes before it deletes the object; this only checks it.
    let left = deadline.saturating_duration_since(Instant::now());
    poll_until("the API server and runtime to hold no pod", left, || {
        let pods = pods.clone();
        let selector = selector.clone();
        async move {
            let listed = pods.list(&ListParams::default().labels(&selector)).await?;
            let sandboxes = observer.list_pod_sandboxes(&ListFilter::all()).await?;
            let containers = observer.list_containers(&ListFilter::all()).await?;
            Ok(listed.items.is_empty() && sandboxes.is_empty() && containers.is_empty())
        }
    })
    .await?;
    table.record(
        "all deleted (API server and runtime empty)",
        deleting.elapsed(),
    );
    Ok((Burst { per_pod, all }, table))
}

/// An API server a kubelet joins in (b) or (c).
struct Target {
    /// Its rows in the summary.
    path: &'static str,
    /// Its heading in the per-burst tables.
    heading: &'static str,
    /// Its pods' name prefix and burst label, per round.
    prefix: &'static str,
    /// The kubeconfig the kubelet runs with.
    node_kubeconfig: PathBuf,
    /// The bench's own client: creates, watches and deletes the pods, deletes the Node.
    client: kube::Client,
}

async fn client_from(kubeconfig: Kubeconfig) -> Result<kube::Client, BoxError> {
    let config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    Ok(kube::Client::try_from(config)?)
}

/// The real kube-apiserver of (c), when `KUBELET_TEST_ASSETS` asks for one.
async fn start_envtest() -> Result<Option<Envtest>, BoxError> {
    match Envtest::from_env().await {
        Ok(Some(env)) => Ok(Some(env)),
        Ok(None) if envtest::required() => {
            Err(format!("{REQUIRE_ENV}=1 but {ASSETS_ENV} is not set").into())
        }
        Ok(None) => {
            println!(
                "apiserver_latency: (c) real kube-apiserver skipped: {ASSETS_ENV} is not set. \
                 Set it to a directory holding kube-apiserver (etcd from there, else PATH or \
                 /usr/bin/etcd) to add it, e.g. \
                 `{ASSETS_ENV}=/work/shared/envtest cargo bench --bench apiserver_latency`"
            );
            Ok(None)
        }
        Err(e) => {
            let dir = envtest::assets_dir().unwrap_or_default();
            Err(format!(
                "(c) real kube-apiserver from {ASSETS_ENV}={}: {e}",
                dir.display()
            )
            .into())
        }
    }
}

/// Fails unless the runtime holds no sandbox and no container: a kubelet started now would
/// remove them, and its burst would time that too.
async fn ensure_runtime_empty(rt: &CriRuntime, before: &str) -> Result<(), BoxError> {
    let sandboxes = rt.list_pod_sandboxes(&ListFilter::all()).await?;
    let containers = rt.list_containers(&ListFilter::all()).await?;
    if sandboxes.is_empty() && containers.is_empty() {
        return Ok(());
    }
    Err(format!(
        "{} sandboxes and {} containers left in the runtime before {before}",
        sandboxes.len(),
        containers.len()
    )
    .into())
}

/// (b) or (c): a kubelet joins `target`, the burst runs through it, the kubelet stops. On an
/// early return the kubelet is aborted as it drops and `TestContainerd` removes what is left.
async fn kubelet_burst(
    env: &TestContainerd,
    rt: &CriRuntime,
    target: &Target,
    n: usize,
    burst: &str,
) -> Result<(Burst, Table), BoxError> {
    ensure_runtime_empty(rt, burst).await?;
    let node = KubeletNode::start(env, &target.node_kubeconfig, &target.client).await?;
    let measured = api_burst(&target.client, rt, n, burst).await?;
    node.shutdown(&target.client).await?;
    Ok(measured)
}

async fn run(bursts: &[usize]) -> Result<(), BoxError> {
    let Some(env) = TestContainerd::try_start().await? else {
        println!("apiserver_latency: skipped (see above)");
        return Ok(());
    };
    let rt = env.runtime().await;
    let version = rt.version().await?;
    // The kubeconfigs; the node's holds its private key (the directory is 0700).
    let dir = tempfile::Builder::new()
        .prefix("kubelet-bench-kubeconfig-")
        .tempdir()?;
    let api = FakeApiServer::start().await?;
    let fake_kubeconfig = dir.path().join("fake");
    api.write_kubeconfig(&fake_kubeconfig)?;
    let fake_client = client_from(Kubeconfig::read_from(&fake_kubeconfig)?).await?;
    println!(
        "apiserver_latency: {} {} at {}, fake API server at {} (HTTP), bursts {bursts:?}, busybox `sh -c '{SCRIPT}'`, pod network (CNI bridge)",
        version.runtime_name,
        version.runtime_version,
        env.endpoint(),
        api.url(),
    );
    let mut targets = vec![Target {
        path: "fake API server + kubelet",
        heading: "(b) fake API server",
        prefix: "fake",
        node_kubeconfig: fake_kubeconfig,
        client: fake_client,
    }];
    // Declared after `env` and `api`, so dropped before them, on early returns too.
    let real = start_envtest().await?;
    if let Some(real) = &real {
        let node_kubeconfig = dir.path().join("envtest-node");
        std::fs::write(&node_kubeconfig, real.node_kubeconfig(NODE)?)
            .map_err(|e| format!("{}: {e}", node_kubeconfig.display()))?;
        let client = client_from(Kubeconfig::from_yaml(&real.kubeconfig())?).await?;
        let server = client.apiserver_version().await?;
        println!(
            "apiserver_latency: (c) kube-apiserver {} at {} (HTTPS, envtest), kubelet as system:node:{NODE}, bench as admin",
            server.git_version,
            real.url(),
        );
        targets.push(Target {
            path: "real kube-apiserver + kubelet",
            heading: "(c) real kube-apiserver",
            prefix: "real",
            node_kubeconfig,
            client,
        });
    }

    // The first pod after containerd's start pays for the bridge and the shim binary's
    // first load: one untimed pod, so that no burst carries it.
    cri_burst(&env, &rt, 1, "warmup").await?;
    let mut summary = Vec::new();
    for (round, &n) in bursts.iter().enumerate() {
        let (floor, floor_table) = cri_burst(&env, &rt, n, &format!("raw{round}")).await?;
        floor_table.print(&format!(
            "### Burst of {n}: (a) CRI floor, {n} pods at once through CriRuntime"
        ));
        let mut paths = vec![("CRI floor", floor)];
        for target in &targets {
            let burst = format!("{}{round}", target.prefix);
            let (measured, table) = kubelet_burst(&env, &rt, target, n, &burst).await?;
            table.print(&format!(
                "### Burst of {n}: {}, {n} pods POSTed at once, kubelet on CRI",
                target.heading
            ));
            paths.push((target.path, measured));
        }
        summary.push((n, paths));
    }

    println!();
    println!("### Pod start latency: API server (POST -> Running seen by a watch) vs CRI floor");
    println!();
    println!("| burst | path | p50 (ms) | p99 (ms) | max (ms) | all up (ms) | p50 vs floor |");
    println!("|---:|---|---:|---:|---:|---:|---:|");
    for (n, paths) in &summary {
        let floor_p50 = paths[0].1.per_pod.percentile(50.0).as_secs_f64().max(1e-9);
        for (path, b) in paths {
            println!(
                "| {n} | {path} | {} | {} | {} | {} | x{:.1} |",
                ms(b.per_pod.percentile(50.0)),
                ms(b.per_pod.percentile(99.0)),
                ms(b.per_pod.percentile(100.0)),
                ms(b.all),
                b.per_pod.percentile(50.0).as_secs_f64() / floor_p50,
            );
        }
    }
    if real.is_none() {
        println!();
        println!("(c) real kube-apiserver: skipped, {ASSETS_ENV} is not set (see above)");
    }
    // Drop order: the envtest (kube-apiserver, then etcd, killed by PID and reaped; its
    // directory removed), the fake API server, then `env` (sandboxes left, none normally, are
    // removed through CRI, containerd is killed, the bridge, iptables chains and pod cgroups
    // go).
    drop(real);
    drop(api);
    Ok(())
}

fn main() -> Result<(), BoxError> {
    if let Some(why) = missing_prerequisites() {
        println!("apiserver_latency: skipped: needs a real containerd: {why}");
        return Ok(());
    }
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let bursts = burst_sizes()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(&bursts))
}
