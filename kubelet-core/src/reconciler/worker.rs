//! Pod workers: one task per pod UID. Updates coalesce (the newest desired state wins); a
//! worker syncs its pod until the pod is no longer wanted, then terminates it and ends. A
//! worker is the only writer of its pod's runtime state, and never waits on another pod.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{Instrument, info_span};

use super::backoff::Backoff;
use super::context::WorkerContext;
use super::status::ContainerWaiting;
use crate::probes::worker::PodProbes;
use crate::runtime::{ContainerStatus, PodSandboxStatus};

/// What a worker is told: the newest desired pod (`None`: the pod must go) and a counter
/// bumped whenever something about the pod changed in the runtime.
#[derive(Debug, Clone, Default)]
struct WorkerInput {
    desired: Option<Pod>,
    wakes: u64,
    /// An eviction the node-pressure eviction manager ordered.
    eviction: Option<super::eviction::Eviction>,
}

/// The dispatcher's end of a worker.
pub(super) struct WorkerHandle {
    tx: watch::Sender<WorkerInput>,
    task: JoinHandle<()>,
}

impl WorkerHandle {
    /// Start a worker for `uid`. When it has terminated the pod it sends `uid` on `done`.
    pub fn spawn(
        ctx: Arc<WorkerContext>,
        uid: String,
        desired: Option<Pod>,
        done: mpsc::UnboundedSender<String>,
    ) -> Self {
        let (tx, rx) = watch::channel(WorkerInput {
            desired,
            wakes: 0,
            eviction: None,
        });
        let span = info_span!("pod_worker", uid = %uid, pod = tracing::field::Empty);
        let worker = PodWorker::new(ctx, uid);
        let task = tokio::spawn(worker.run(rx, done).instrument(span));
        Self { tx, task }
    }

    /// A handle over a task that holds the pod's UID as a worker would without being one
    /// (the cleanup of an orphaned pod directory): no worker starts for that UID while the
    /// task runs, updates are dropped, and once it has sent the UID on `done` the dispatcher
    /// starts a real worker if the pod is wanted.
    pub fn holding(task: JoinHandle<()>) -> Self {
        let (tx, _) = watch::channel(WorkerInput::default());
        Self { tx, task }
    }

    /// Replace the desired pod; the worker acts on the newest one it sees.
    pub fn update(&self, desired: Option<Pod>) {
        self.tx.send_modify(|input| input.desired = desired);
    }

    /// Make the worker look at its pod again.
    pub fn wake(&self) {
        self.tx
            .send_modify(|input| input.wakes = input.wakes.wrapping_add(1));
    }

    /// Evict the pod: the worker stops it for good at once.
    pub fn evict(&self, eviction: super::eviction::Eviction) {
        self.tx.send_modify(|input| input.eviction = Some(eviction));
    }

    /// Stop the worker where it is (kubelet shutdown: pods keep running).
    pub fn abort(&self) {
        self.task.abort();
    }
}

/// A pod must go when no source wants it or it is being deleted.
fn is_terminating(desired: Option<&Pod>) -> bool {
    desired.is_none_or(|p| p.metadata.deletion_timestamp.is_some())
}

/// The state of one pod worker.
pub(super) struct PodWorker {
    pub ctx: Arc<WorkerContext>,
    pub uid: String,
    /// CrashLoopBackOff, keyed by container name and spec hash.
    pub crash_backoff: Backoff,
    /// Image pull backoff, keyed by image.
    pub pull_backoff: Backoff,
    /// The last pull error per image, for the ImagePullBackOff message.
    pub pull_errors: HashMap<String, String>,
    /// When the worker first saw each container exited (backoff counts from there).
    pub exit_seen: HashMap<String, Instant>,
    /// Statuses of exited containers, which never change again.
    pub exited: HashMap<String, ContainerStatus>,
    /// Status of each ready sandbox, as `PodSandboxStatus` reported it when first seen.
    pub sandbox_details: HashMap<String, PodSandboxStatus>,
    /// Why containers are waiting, by container name.
    pub waiting: BTreeMap<String, ContainerWaiting>,
    /// Sandbox ID and the pod IPs found for it.
    pub pod_ips: Option<(String, Vec<String>)>,
    /// The status last computed.
    pub last_status: Option<PodStatus>,
    /// The probe workers of the pod's running containers, and their results.
    pub probes: PodProbes,
    /// The pod as last synced.
    last_pod: Option<Pod>,
    /// The wall clock, advancing with tokio's (activeDeadlineSeconds under paused time).
    pub clock: super::active_deadline::WorkerClock,
    /// The pod went past its activeDeadlineSeconds: its containers are stopped for good.
    pub deadline_exceeded: bool,
    /// The pod was evicted or refused at admission: its containers are stopped for good.
    pub evicted: Option<super::eviction::Eviction>,
    /// The admit handlers were asked (once, at the pod's first sync).
    pub admitted: bool,
    /// The eviction's event was recorded.
    pub eviction_recorded: bool,
    /// When the worker first saw the pod (`kubelet_pod_start_duration_seconds` counts
    /// from there); `None` once the pod's start was recorded.
    first_seen: Option<Instant>,
}

impl PodWorker {
    fn new(ctx: Arc<WorkerContext>, uid: String) -> Self {
        Self {
            ctx,
            uid,
            crash_backoff: Backoff::crash_loop(),
            pull_backoff: Backoff::image_pull(),
            pull_errors: HashMap::new(),
            exit_seen: HashMap::new(),
            exited: HashMap::new(),
            sandbox_details: HashMap::new(),
            waiting: BTreeMap::new(),
            pod_ips: None,
            last_status: None,
            probes: PodProbes::new(),
            last_pod: None,
            clock: super::active_deadline::WorkerClock::new(),
            deadline_exceeded: false,
            evicted: None,
            admitted: false,
            eviction_recorded: false,
            first_seen: Some(Instant::now()),
        }
    }

    /// Which sync this is, as the reference's pod workers name it: the pod's first
    /// (`create`), one after its spec or metadata changed (`update`), or another (`sync`).
    fn sync_type(&self, pod: &Pod) -> &'static str {
        use crate::metrics::pod_worker_operation::{CREATE, SYNC, UPDATE};
        match &self.last_pod {
            None => CREATE,
            Some(last)
                if last.spec != pod.spec
                    || last.metadata.labels != pod.metadata.labels
                    || last.metadata.annotations != pod.metadata.annotations =>
            {
                UPDATE
            }
            Some(_) => SYNC,
        }
    }

    /// Records the pod's start once its phase first is Running.
    fn record_start(&mut self) {
        let running = self.last_status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
        if running && let Some(first_seen) = self.first_seen.take() {
            self.ctx.shared.metrics.pod_started(first_seen.elapsed());
        }
    }

    async fn run(
        mut self,
        mut rx: watch::Receiver<WorkerInput>,
        done: mpsc::UnboundedSender<String>,
    ) {
        loop {
            let (desired, ordered) = {
                let input = rx.borrow_and_update();
                (input.desired.clone(), input.eviction.clone())
            };
            if self.evicted.is_none() {
                self.evicted = ordered;
            }
            let pod = match desired {
                Some(pod) if !is_terminating(Some(&pod)) => pod,
                other => {
                    // A pod removed from its source is stopped as its last spec says.
                    let pod = other.or_else(|| self.last_pod.take());
                    self.terminate(pod.as_ref()).await;
                    let _ = done.send(self.uid.clone());
                    return;
                }
            };
            // Once: a pod UID keeps its name, and the fmt subscriber appends every record.
            if self.last_pod.is_none() {
                let name = format!(
                    "{}/{}",
                    pod.metadata.namespace.as_deref().unwrap_or_default(),
                    pod.metadata.name.as_deref().unwrap_or_default()
                );
                tracing::Span::current().record("pod", name.as_str());
            }
            let sync_type = self.sync_type(&pod);
            let started = Instant::now();
            let next = self.sync(&pod).await;
            self.ctx
                .shared
                .metrics
                .pod_worker_sync(sync_type, started.elapsed());
            self.record_start();
            self.last_pod = Some(pod);
            let wait = next
                .unwrap_or(self.ctx.config.sync_frequency)
                .min(self.ctx.config.sync_frequency)
                .max(Duration::from_millis(10));
            // A probe result that changed (liveness failed, readiness flipped) is acted on
            // at once rather than at the next resync.
            let probe_results = self.probes.results().clone();
            tokio::select! {
                changed = rx.changed() => if changed.is_err() { return },
                _ = probe_results.changed() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}
