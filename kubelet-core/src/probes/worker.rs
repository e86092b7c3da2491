//! Probe workers: one tokio task per probe of a running container. A worker waits
//! `initialDelaySeconds` from the container's start, then probes every `periodSeconds`, and
//! settles on a result once `successThreshold` / `failureThreshold` runs agree. Results live
//! in a [`ProbeResults`] the pod worker reads; a changed result wakes the pod worker.
//!
//! As with the reference: readiness starts as failure, liveness as success, startup as
//! unknown; liveness and readiness do not probe until the startup probe succeeded; a startup
//! probe stops once it succeeded; after a liveness or startup failure the worker stops (the
//! container is killed, and its successor gets workers of its own).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::{Container, Pod};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tracing::{Instrument, debug, info_span, warn};

use super::action::{Outcome, ProbeTarget, run_probe};
use super::spec::{ProbeSpec, container_probes};
use super::{ProbeCountKey, ProbeError, ProbeMetrics, ProbeResult, ProbeType};
use crate::reporter::EventType;
use crate::runtime::Runtime;

/// How often a probe that errored (as opposed to failed) is retried within one run.
const MAX_PROBE_RETRIES: usize = 3;

/// Where probe workers record their events (Unhealthy, ProbeWarning).
pub trait ProbeEvents: Send + Sync + 'static {
    /// Record an event about container `container` of `pod`.
    fn probe_event(
        &self,
        pod: &Pod,
        container: &str,
        type_: EventType,
        reason: &str,
        message: String,
    );
}

/// What every probe worker of a kubelet shares.
#[derive(Clone)]
pub struct ProbeDeps {
    /// The runtime (for exec probes).
    pub runtime: Arc<dyn Runtime>,
    /// Where events go.
    pub events: Arc<dyn ProbeEvents>,
    /// Where probe runs are counted.
    pub metrics: Arc<ProbeMetrics>,
}

/// The settled results of one pod's probes, by container ID and probe type.
#[derive(Debug, Default)]
pub struct ProbeResults {
    results: Mutex<HashMap<(String, ProbeType), ProbeResult>>,
    changed: Notify,
}

impl ProbeResults {
    /// The result of one probe of one container, `None` while there is none.
    pub fn get(&self, container_id: &str, probe: ProbeType) -> Option<ProbeResult> {
        self.results
            .lock()
            .ok()?
            .get(&(container_id.to_string(), probe))
            .copied()
    }

    /// Set a result; wakes the pod worker when it changed.
    pub fn set(&self, container_id: &str, probe: ProbeType, result: ProbeResult) {
        let previous = self
            .results
            .lock()
            .map(|mut r| r.insert((container_id.to_string(), probe), result))
            .unwrap_or(None);
        if previous != Some(result) {
            self.changed.notify_one();
        }
    }

    /// Set a result without waking the pod worker (initial values).
    fn init(&self, container_id: &str, probe: ProbeType, result: ProbeResult) {
        if let Ok(mut r) = self.results.lock() {
            r.entry((container_id.to_string(), probe)).or_insert(result);
        }
    }

    /// Forget the results of containers not in `keep`.
    fn retain(&self, keep: &BTreeSet<&str>) {
        if let Ok(mut r) = self.results.lock() {
            r.retain(|(id, _), _| keep.contains(id.as_str()));
        }
    }

    /// Wait until a result changes (returns at once if one changed since the last call).
    pub async fn changed(&self) {
        self.changed.notified().await;
    }
}

/// A running container, as probe workers need it.
#[derive(Debug, Clone)]
pub struct RunningContainer<'a> {
    /// Its spec.
    pub spec: &'a Container,
    /// Its path in the pod (`spec.containers[0]`), for error messages.
    pub field: String,
    /// Runtime container ID.
    pub id: &'a str,
    /// When it started (ns since the epoch; 0: unknown).
    pub started_at: i64,
}

struct RunningProbe {
    container_id: String,
    task: JoinHandle<()>,
}

/// The probe workers of one pod, kept by its pod worker (their only owner): started for
/// containers as they run, stopped when they stop.
pub struct PodProbes {
    results: Arc<ProbeResults>,
    workers: HashMap<(String, ProbeType), RunningProbe>,
    /// Invalid probe specs already reported, by container ID, so each is reported once.
    reported_invalid: BTreeSet<(String, ProbeType)>,
}

impl Default for PodProbes {
    fn default() -> Self {
        Self::new()
    }
}

impl PodProbes {
    /// No workers yet.
    pub fn new() -> Self {
        Self {
            results: Arc::new(ProbeResults::default()),
            workers: HashMap::new(),
            reported_invalid: BTreeSet::new(),
        }
    }

    /// The results the workers settle on.
    pub fn results(&self) -> &Arc<ProbeResults> {
        &self.results
    }

    /// Make the workers match the running containers: one per probe of each, started with
    /// the container and stopped when it stops or is replaced.
    pub fn sync(
        &mut self,
        deps: &ProbeDeps,
        pod: &Pod,
        running: &[RunningContainer<'_>],
        pod_ip: Option<&str>,
    ) {
        let mut wanted: BTreeMap<(String, ProbeType), (&RunningContainer<'_>, ProbeSpec, bool)> =
            BTreeMap::new();
        for c in running {
            let probes = container_probes(c.spec, &c.field);
            let gated = c.spec.startup_probe.is_some();
            for (probe_type, spec) in probes {
                match spec {
                    Ok(spec) => {
                        wanted.insert((c.spec.name.clone(), probe_type), (c, spec, gated));
                    }
                    Err(err) => {
                        if self.reported_invalid.insert((c.id.to_string(), probe_type)) {
                            warn!(container = %c.spec.name, error = %err, "invalid probe; not run");
                            deps.events.probe_event(
                                pod,
                                &c.spec.name,
                                EventType::Warning,
                                "Failed",
                                format!("Error: {err}"),
                            );
                        }
                    }
                }
            }
        }
        // A finished worker (liveness failed, startup done) stays while its container runs,
        // so that it is not started again for the same container.
        self.workers.retain(|key, worker| {
            let keep = wanted
                .get(key)
                .is_some_and(|(c, _, _)| c.id == worker.container_id);
            if !keep {
                worker.task.abort();
            }
            keep
        });
        for (key, (c, spec, gated)) in wanted {
            if self.workers.contains_key(&key) {
                continue;
            }
            let probe_type = key.1;
            if probe_type == ProbeType::Readiness {
                self.results
                    .init(c.id, ProbeType::Readiness, ProbeResult::Failure);
            }
            let span = info_span!("probe", container = %c.spec.name, probe = %probe_type);
            let worker = Worker {
                deps: deps.clone(),
                results: self.results.clone(),
                pod: pod.clone(),
                container: c.spec.clone(),
                container_id: c.id.to_string(),
                spec,
                gated,
                started_at: c.started_at,
                pod_ip: pod_ip.map(str::to_string),
            };
            let task = tokio::spawn(worker.run().instrument(span));
            self.workers.insert(
                key,
                RunningProbe {
                    container_id: c.id.to_string(),
                    task,
                },
            );
        }
        let ids: BTreeSet<&str> = running.iter().map(|c| c.id).collect();
        self.results.retain(&ids);
        self.reported_invalid
            .retain(|(id, _)| ids.contains(id.as_str()));
    }

    /// Stop every worker (the pod is terminating).
    pub fn stop_all(&mut self) {
        for (_, worker) in self.workers.drain() {
            worker.task.abort();
        }
    }

    /// How many workers run (for tests and diagnostics).
    pub fn running(&self) -> usize {
        self.workers
            .values()
            .filter(|w| !w.task.is_finished())
            .count()
    }
}

impl Drop for PodProbes {
    fn drop(&mut self) {
        self.stop_all();
    }
}

struct Worker {
    deps: ProbeDeps,
    results: Arc<ProbeResults>,
    pod: Pod,
    container: Container,
    container_id: String,
    spec: ProbeSpec,
    /// The container has a startup probe: probe only once it succeeded.
    gated: bool,
    started_at: i64,
    pod_ip: Option<String>,
}

impl Worker {
    /// How long the container has run already (a kubelet restart finds containers that have).
    fn running_for(&self) -> Duration {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        if self.started_at <= 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(u64::try_from(now.saturating_sub(self.started_at)).unwrap_or(0))
    }

    async fn run(self) {
        let probe_type = self.spec.probe_type;
        let delay = self.spec.initial_delay.saturating_sub(self.running_for());
        tokio::time::sleep(delay).await;
        let mut tick = tokio::time::interval(self.spec.period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last: Option<ProbeResult> = None;
        let mut run = 0u32;
        loop {
            tick.tick().await;
            let started = self.results.get(&self.container_id, ProbeType::Startup)
                == Some(ProbeResult::Success);
            if probe_type == ProbeType::Startup && started {
                return;
            }
            if probe_type != ProbeType::Startup && self.gated && !started {
                continue;
            }
            let Some(result) = self.probe_once().await else {
                continue;
            };
            if last == Some(result) {
                run = run.saturating_add(1);
            } else {
                last = Some(result);
                run = 1;
            }
            let threshold = match result {
                ProbeResult::Success => self.spec.success_threshold,
                ProbeResult::Failure => self.spec.failure_threshold,
            };
            if run < threshold {
                continue;
            }
            self.results.set(&self.container_id, probe_type, result);
            if result == ProbeResult::Failure && probe_type != ProbeType::Readiness {
                debug!("probe failed; the container will be killed");
                return;
            }
        }
    }

    /// One probe run (retrying errors), with its event and count. `None` when it errored.
    async fn probe_once(&self) -> Option<ProbeResult> {
        let probe_type = self.spec.probe_type;
        let target = ProbeTarget {
            container_id: &self.container_id,
            container: &self.container,
            pod_ip: self.pod_ip.as_deref(),
        };
        let mut outcome = Err(ProbeError::Errored("not run".into()));
        let started = tokio::time::Instant::now();
        for _ in 0..MAX_PROBE_RETRIES {
            outcome = run_probe(
                self.deps.runtime.as_ref(),
                &self.spec.handler,
                self.spec.timeout,
                target,
            )
            .await;
            if outcome.is_ok() {
                break;
            }
        }
        let (label, result) = match &outcome {
            Ok(Outcome::Success(_) | Outcome::Warning(_)) => {
                ("successful", Some(ProbeResult::Success))
            }
            Ok(Outcome::Failure(_)) => ("failed", Some(ProbeResult::Failure)),
            Err(_) => ("unknown", None),
        };
        let key = ProbeCountKey {
            probe_type: probe_type.as_str().to_string(),
            result: label.to_string(),
            container: self.container.name.clone(),
            pod: self.pod.metadata.name.clone().unwrap_or_default(),
            namespace: self.pod.metadata.namespace.clone().unwrap_or_default(),
            pod_uid: self.pod.metadata.uid.clone().unwrap_or_default(),
        };
        // As the reference: the duration of successful and unknown runs, not of failures.
        if label != "failed" {
            self.deps.metrics.record_duration(&key, started.elapsed());
        }
        self.deps.metrics.record(key);
        let event = |reason: &str, message: String| {
            self.deps.events.probe_event(
                &self.pod,
                &self.container.name,
                EventType::Warning,
                reason,
                message,
            )
        };
        match outcome {
            Ok(Outcome::Success(_)) => {}
            Ok(Outcome::Warning(output)) => event(
                "ProbeWarning",
                format!("{probe_type} probe warning: {output}"),
            ),
            Ok(Outcome::Failure(output)) => {
                debug!(%output, "probe failed");
                event("Unhealthy", format!("{probe_type} probe failed: {output}"))
            }
            Err(err) => {
                debug!(error = %err, "probe errored");
                event(
                    "Unhealthy",
                    format!("{probe_type} probe errored and resulted in unknown state: {err}"),
                )
            }
        }
        result
    }
}
