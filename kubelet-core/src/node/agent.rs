//! The node agent: registers the Node, reports its status every
//! `nodeStatusUpdateFrequency` when it changed (or every `nodeStatusReportFrequency`
//! regardless), and renews the node Lease, all through the [`NodeReporter`] seam. The
//! runtime's readiness (CRI `Status`) is checked every 5 s and feeds the Ready condition.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::NodeStatus;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::conditions::{EventReason, NodePressure, RuntimeHealth};
use super::config::{NodeConfig, NodeConfigError};
use super::machine::MachineInfo;
use super::resources::NodeResources;
use super::status::{Observed, StatusComputer, status_changed};
use super::volumes_in_use::VolumesInUse;
use crate::reporter::{EventType, KubeletEvent, NodeReporter};
use crate::runtime::{Runtime, RuntimeVersion};

/// First wait before registering, doubled after each failure (the reference's step).
pub const REGISTRATION_INITIAL_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait between registration attempts.
pub const REGISTRATION_MAX_BACKOFF: Duration = Duration::from_secs(7);
/// First wait after a failed lease renewal, doubled after each failure.
pub const LEASE_INITIAL_BACKOFF: Duration = Duration::from_millis(200);
/// Longest wait between failed lease renewals.
pub const LEASE_MAX_BACKOFF: Duration = Duration::from_secs(7);
/// How often the runtime's readiness is checked (the reference's `updateRuntimeUp` period).
pub const RUNTIME_STATUS_PERIOD: Duration = Duration::from_secs(5);
/// For this long after start, the status is sent as soon as the runtime turns ready
/// rather than at the next status tick (the reference's `nodeReadyGracePeriod` of its fast
/// status update).
pub const FAST_STATUS_UPDATE_PERIOD: Duration = Duration::from_secs(120);

/// Wall-clock time that advances with tokio's clock (so paused-time tests see heartbeats
/// move), at the second precision the API keeps.
#[derive(Debug, Clone, Copy)]
struct WallClock {
    base_ns: i128,
    base: Instant,
}

impl WallClock {
    fn new() -> Self {
        let base_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i128::try_from(d.as_nanos()).unwrap_or(0));
        Self {
            base_ns,
            base: Instant::now(),
        }
    }

    fn at(&self, instant: Instant) -> Time {
        let since =
            i128::try_from(instant.saturating_duration_since(self.base).as_nanos()).unwrap_or(0);
        let secs = i64::try_from((self.base_ns + since) / 1_000_000_000).unwrap_or(0);
        Time(Timestamp::from_second(secs).unwrap_or(Timestamp::UNIX_EPOCH))
    }
}

#[derive(Debug, Default)]
struct SharedState {
    pressure: NodePressure,
    registered: bool,
    last_computed: Option<NodeStatus>,
    last_sent: Option<(NodeStatus, Instant)>,
    last_lease_renewal: Option<Instant>,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<SharedState>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, SharedState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A cloneable view into a running [`NodeAgent`]: what it last computed and sent (for
/// `/healthz` and the node's own server), and the pressure input of the conditions.
#[derive(Debug, Clone)]
pub struct NodeStatusHandle {
    shared: Arc<Shared>,
}

impl NodeStatusHandle {
    /// The status computed last (sent or not).
    pub fn last_status(&self) -> Option<NodeStatus> {
        self.shared.lock().last_computed.clone()
    }

    /// The status last accepted by the reporter, and when.
    pub fn last_sent(&self) -> Option<(NodeStatus, Instant)> {
        self.shared.lock().last_sent.clone()
    }

    /// When the lease was last renewed.
    pub fn last_lease_renewal(&self) -> Option<Instant> {
        self.shared.lock().last_lease_renewal
    }

    /// Whether the Node was registered (always false with `register_node` off).
    pub fn registered(&self) -> bool {
        self.shared.lock().registered
    }

    /// Set the pressure the conditions report (the eviction manager's verdict); it shows at
    /// the next status computation.
    pub fn set_pressure(&self, pressure: NodePressure) {
        self.shared.lock().pressure = pressure;
    }
}

/// Registers the node, keeps its status and its Lease current. Generic over the reporter
/// and the runtime; [`NodeAgent::run`] drives it until shutdown.
pub struct NodeAgent {
    computer: StatusComputer,
    runtime: Arc<dyn Runtime>,
    reporter: Arc<dyn NodeReporter>,
    clock: WallClock,
    shared: Arc<Shared>,
    volumes_in_use: Option<VolumesInUse>,
}

impl std::fmt::Debug for NodeAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeAgent")
            .field("node", &self.computer.config().name)
            .finish_non_exhaustive()
    }
}

/// Completes when the in-use volumes changed; never without a tracker.
async fn volumes_changed(volumes: Option<&VolumesInUse>) {
    match volumes {
        Some(volumes) => volumes.changed().await,
        None => std::future::pending().await,
    }
}

/// The status loop's memory between ticks.
#[derive(Default)]
struct StatusState {
    /// The status the API server holds as far as we know: conditions carry on from it.
    base: Option<NodeStatus>,
    /// When a status was last accepted; `None` forces the next send.
    last_sent_at: Option<Instant>,
    health: RuntimeHealth,
    version: Option<RuntimeVersion>,
    /// A status with Ready=True was accepted.
    ready_sent: bool,
}

impl NodeAgent {
    /// An agent for the node `config` describes, on this machine. Fails when a reservation
    /// in the configuration does not parse.
    pub fn new(
        config: NodeConfig,
        machine: MachineInfo,
        runtime: Arc<dyn Runtime>,
        reporter: Arc<dyn NodeReporter>,
    ) -> Result<Self, NodeConfigError> {
        config.validate()?;
        let resources = NodeResources::compute(&config, &machine)?;
        Ok(Self {
            computer: StatusComputer::new(config, machine, resources),
            runtime,
            reporter,
            clock: WallClock::new(),
            shared: Arc::new(Shared::default()),
            volumes_in_use: None,
        })
    }

    /// Report `volumes` in `status.volumesInUse`, a status soon after they change (not at
    /// the next `nodeStatusUpdateFrequency` tick: the reference waits for the tick, which
    /// delays every attachable mount by up to 10 s), and mark what the API server accepted
    /// as reported. Without it `volumesInUse` stays empty.
    pub fn with_volumes_in_use(mut self, volumes: VolumesInUse) -> Self {
        self.volumes_in_use = Some(volumes);
        self
    }

    /// A handle to inspect the agent while it runs.
    pub fn handle(&self) -> NodeStatusHandle {
        NodeStatusHandle {
            shared: self.shared.clone(),
        }
    }

    fn name(&self) -> &str {
        &self.computer.config().name
    }

    /// Register (unless `register_node` is off), then report status and renew the Lease
    /// until `shutdown` completes.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) {
        let (registered_tx, registered_rx) = oneshot::channel::<()>();
        let work = async {
            tokio::join!(
                self.status_loop(registered_tx),
                self.lease_loop(registered_rx)
            );
        };
        tokio::select! {
            () = shutdown => {}
            () = work => {}
        }
        debug!(node = %self.name(), "node agent stopped");
    }

    async fn status_loop(&self, registered: oneshot::Sender<()>) {
        let started = Instant::now();
        let mut state = StatusState::default();
        if self.computer.config().register_node {
            self.register(&mut state).await;
        }
        // The Lease names the Node as its owner, so it waits for the Node to exist.
        let _ = registered.send(());
        let mut status_tick =
            tokio::time::interval(self.computer.config().node_status_update_frequency);
        status_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut runtime_tick = tokio::time::interval(RUNTIME_STATUS_PERIOD);
        runtime_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                // Runtime first, so that a status computed at the same instant sees it.
                biased;
                _ = runtime_tick.tick() => {
                    self.poll_runtime(&mut state).await;
                    // Until the node was first reported Ready, report it the moment the
                    // runtime is ready rather than at the next status tick.
                    let fast = !state.ready_sent
                        && started.elapsed() < FAST_STATUS_UPDATE_PERIOD
                        && state.health.not_ready_message(Instant::now()).is_none();
                    if fast {
                        self.update_status(&mut state).await;
                    }
                }
                _ = status_tick.tick() => self.update_status(&mut state).await,
                () = volumes_changed(self.volumes_in_use.as_ref()) => {
                    self.update_status(&mut state).await;
                }
            }
        }
    }

    /// Check the runtime's readiness; a failed check leaves the previous knowledge, which
    /// turns into "container runtime is down" once it is too old.
    async fn poll_runtime(&self, state: &mut StatusState) {
        match self.runtime.status().await {
            Ok(status) => state.health.observe(&status, Instant::now()),
            Err(err) => warn!(error = %err, "container runtime status check failed"),
        }
    }

    /// Ask the runtime what the status needs; failures leave the previous knowledge.
    async fn observe(&self, state: &mut StatusState) -> Observed {
        match self.runtime.version().await {
            Ok(version) => state.version = Some(version),
            Err(err) => warn!(error = %err, "container runtime version check failed"),
        }
        let images = match self.runtime.list_images().await {
            Ok(images) => Some(images),
            Err(err) => {
                warn!(error = %err, "listing images for the node status failed");
                None
            }
        };
        Observed {
            runtime_version: state.version.clone(),
            not_ready: state.health.not_ready_message(Instant::now()),
            pressure: self.shared.lock().pressure,
            images,
            volumes_in_use: self
                .volumes_in_use
                .as_ref()
                .map(VolumesInUse::list)
                .unwrap_or_default(),
        }
    }

    /// Create (or adopt) the Node, retrying with backoff until the reporter accepts it.
    async fn register(&self, state: &mut StatusState) {
        let mut step = REGISTRATION_INITIAL_BACKOFF;
        loop {
            tokio::time::sleep(step).await;
            step = (step * 2).min(REGISTRATION_MAX_BACKOFF);
            self.poll_runtime(state).await;
            let observed = self.observe(state).await;
            let now = Instant::now();
            let (status, events) = self.computer.compute(None, &observed, &self.clock.at(now));
            let node = self.computer.initial_node(status.clone());
            match self.reporter.register_node(&node).await {
                Ok(()) => {
                    info!(node = %self.name(), "node registered");
                    self.record_events(&events).await;
                    let mut shared = self.shared.lock();
                    shared.registered = true;
                    shared.last_computed = Some(status.clone());
                    state.base = Some(status);
                    return;
                }
                Err(err) => warn!(
                    node = %self.name(),
                    error = %err,
                    retry_in = ?step,
                    "unable to register the node"
                ),
            }
        }
    }

    /// Compute the status; send it when it changed or the report interval passed.
    async fn update_status(&self, state: &mut StatusState) {
        let observed = self.observe(state).await;
        let now = Instant::now();
        let (status, events) =
            self.computer
                .compute(state.base.as_ref(), &observed, &self.clock.at(now));
        self.shared.lock().last_computed = Some(status.clone());
        let report_due = state
            .last_sent_at
            .is_none_or(|at| now >= at + self.computer.config().node_status_report_frequency);
        let changed = state
            .base
            .as_ref()
            .is_none_or(|base| status_changed(base, &status));
        if !report_due && !changed {
            // The server holds what we sent last: its volumes count as reported (the
            // reference's `markVolumesFromNode`), e.g. a volume unmarked and marked again
            // in between.
            self.mark_reported(state.base.as_ref());
            return;
        }
        match self.reporter.update_node_status(self.name(), &status).await {
            Ok(()) => {
                debug!(node = %self.name(), changed, "node status sent");
                self.record_events(&events).await;
                self.shared.lock().last_sent = Some((status.clone(), now));
                self.mark_reported(Some(&status));
                state.ready_sent |= observed.not_ready.is_none();
                state.base = Some(status);
                state.last_sent_at = Some(now);
            }
            // The next tick computes and tries again.
            Err(err) => warn!(node = %self.name(), error = %err, "updating node status failed"),
        }
    }

    /// The volumes of `accepted` (a status the API server holds) count as reported.
    fn mark_reported(&self, accepted: Option<&NodeStatus>) {
        if let Some(volumes) = &self.volumes_in_use {
            let sent = accepted
                .and_then(|s| s.volumes_in_use.as_deref())
                .unwrap_or_default();
            volumes.mark_reported(sent);
        }
    }

    async fn record_events(&self, reasons: &[EventReason]) {
        for reason in reasons {
            let event = KubeletEvent::about_node(
                self.name(),
                EventType::Normal,
                reason,
                format!("Node {} status is now: {reason}", self.name()),
            );
            if let Err(err) = self.reporter.record_event(&event).await {
                debug!(error = %err, reason, "recording a node event failed");
            }
        }
    }

    /// Renew the Lease every renew interval; after a failure retry sooner, 200 ms doubling
    /// to 7 s, then fall back to the interval once a renewal succeeds.
    async fn lease_loop(&self, registered: oneshot::Receiver<()>) {
        if registered.await.is_err() {
            return;
        }
        let interval = self.computer.config().lease_renew_interval();
        let mut backoff = LEASE_INITIAL_BACKOFF;
        loop {
            match self.reporter.renew_lease(self.name()).await {
                Ok(()) => {
                    self.shared.lock().last_lease_renewal = Some(Instant::now());
                    backoff = LEASE_INITIAL_BACKOFF;
                    tokio::time::sleep(interval).await;
                }
                Err(err) => {
                    warn!(node = %self.name(), error = %err, retry_in = ?backoff, "renewing the node lease failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(LEASE_MAX_BACKOFF);
                }
            }
        }
    }
}
