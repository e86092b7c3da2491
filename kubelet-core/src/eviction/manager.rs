//! The eviction manager's state across monitoring passes (the reference's `managerImpl`:
//! `synchronize` up to the choice of pods, `reclaimNodeLevelResources`' check, `Admit`).

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Taint};
use tokio::time::Instant;

use super::observe::{Observations, is_met, observe, value_text};
use super::rank::{Ranking, eviction_message, is_critical, pod_stats, rank};
use super::threshold::{EvictionSettings, default_eviction_hard, parse_thresholds};
use super::{IMMEDIATE_EVICTION_GRACE_PERIOD, PressureKind, REASON, Signal, Threshold};
use crate::node::conditions::NodePressure;
use crate::reconciler::qos::{QosClass, qos_class};
use crate::stats::summary::Summary;

/// The taint a BestEffort pod must tolerate to be admitted under memory pressure.
const MEMORY_PRESSURE_TAINT: &str = "node.kubernetes.io/memory-pressure";

/// How the eviction manager is configured.
#[derive(Debug, Clone, PartialEq)]
pub struct EvictionConfig {
    /// The thresholds, hard and soft.
    pub thresholds: Vec<Threshold>,
    /// How long a pressure condition stays after its threshold was last met
    /// (`evictionPressureTransitionPeriod`, 5 minutes).
    pub pressure_transition_period: Duration,
    /// The longest grace period a pod evicted for a soft threshold gets
    /// (`evictionMaxPodGracePeriod`, 0).
    pub max_pod_grace_period: Duration,
    /// How often the caller runs [`EvictionManager::synchronize`] (10 seconds).
    pub monitoring_interval: Duration,
    /// Whether the runtime's image filesystem is a device of its own; when it is not, the
    /// image filesystem is the node filesystem.
    pub dedicated_image_fs: bool,
}

impl Default for EvictionConfig {
    fn default() -> Self {
        let settings = EvictionSettings {
            hard: default_eviction_hard(),
            ..EvictionSettings::default()
        };
        Self {
            // The defaults always parse (a unit test holds it).
            thresholds: parse_thresholds(&settings).unwrap_or_default(),
            pressure_transition_period: Duration::from_secs(5 * 60),
            max_pod_grace_period: Duration::ZERO,
            monitoring_interval: Duration::from_secs(10),
            dedicated_image_fs: false,
        }
    }
}

/// What one monitoring pass found.
#[derive(Debug, Clone, PartialEq)]
pub struct Synchronized {
    /// The node's pressure conditions.
    pub pressure: NodePressure,
    /// Some when a threshold (grace period passed) is met: what to reclaim.
    pub reclaim: Option<Reclaim>,
}

/// What to reclaim, and how.
#[derive(Debug, Clone, PartialEq)]
pub struct Reclaim {
    /// The threshold's signal chosen (memory first).
    pub signal: Signal,
    /// The resource to reclaim ([`Signal::resource`]).
    pub resource: &'static str,
    /// The message of the node's Warning event `EvictionThresholdMet`.
    pub event_message: String,
    /// Node-level steps to try before evicting pods, in order; after them, evict only if
    /// [`EvictionManager::reclaimed_enough`] says a fresh summary still meets a threshold.
    pub node_level: Vec<NodeReclaim>,
    /// The active pods in eviction order (critical pods left out), first to evict first;
    /// the reference evicts one pod per pass.
    pub candidates: Vec<PodEviction>,
}

/// A node-level reclaim step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeReclaim {
    /// Remove every dead container (container GC with no minimum age).
    DeleteUnusedContainers,
    /// Remove unused images (image GC).
    DeleteUnusedImages,
}

/// One pod to evict.
#[derive(Debug, Clone, PartialEq)]
pub struct PodEviction {
    /// Its UID.
    pub uid: String,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The pod's status message, event message and `DisruptionTarget` condition message.
    pub message: String,
    /// The grace period to stop it with.
    pub grace_period: Duration,
    /// The annotations of the pod's Warning `Evicted` event.
    pub annotations: BTreeMap<String, String>,
}

/// Why a pod is not admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// `Evicted`.
    pub reason: String,
    /// The node's conditions, as the reference prints them.
    pub message: String,
}

/// The eviction manager: thresholds, and what earlier passes saw.
#[derive(Debug)]
pub struct EvictionManager {
    config: EvictionConfig,
    /// The conditions as last computed.
    pressure: NodePressure,
    /// When each condition's threshold was last met.
    conditions_last_observed: BTreeMap<PressureKind, Instant>,
    /// When each threshold (by index into the config's) was first met, while it stays met.
    thresholds_first_observed: BTreeMap<usize, Instant>,
    /// The thresholds met (grace period passed) at the last pass, kept until resolved.
    thresholds_met: Vec<usize>,
    /// The last pass's observations, to act only on fresh stats.
    last_observations: Observations,
}

impl EvictionManager {
    /// A manager that has seen nothing yet: no pressure.
    pub fn new(config: EvictionConfig) -> Self {
        Self {
            config,
            pressure: NodePressure::default(),
            conditions_last_observed: BTreeMap::new(),
            thresholds_first_observed: BTreeMap::new(),
            thresholds_met: Vec::new(),
            last_observations: Observations::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &EvictionConfig {
        &self.config
    }

    /// One monitoring pass (the reference's `synchronize` up to the choice of pods):
    /// observations from the summary, thresholds met (hard and soft; soft only after their
    /// grace period), node conditions kept for `pressure_transition_period` after the last
    /// observation, thresholds not yet resolved kept until `min_reclaim` is reclaimed.
    /// `active_pods`: the pods the kubelet runs that could be evicted (the caller already
    /// left out terminal ones).
    ///
    /// As the reference, a threshold drives eviction only when its stat is newer than at
    /// the last pass (or carries no time), so that a stale summary does not evict twice.
    pub fn synchronize(
        &mut self,
        now: Instant,
        summary: &Summary,
        active_pods: &[Pod],
    ) -> Synchronized {
        let observations = observe(summary);
        let thresholds = &self.config.thresholds;

        let mut met: Vec<usize> = (0..thresholds.len())
            .filter(|&i| is_met(&thresholds[i], &observations, false))
            .collect();
        // A threshold met before stays until the minimum reclaim is available too.
        for &i in &self.thresholds_met {
            if !met.contains(&i) && is_met(&thresholds[i], &observations, true) {
                met.push(i);
            }
        }
        met.sort_unstable();

        let first_observed: BTreeMap<usize, Instant> = met
            .iter()
            .map(|&i| (i, *self.thresholds_first_observed.get(&i).unwrap_or(&now)))
            .collect();

        for &i in &met {
            self.conditions_last_observed
                .insert(thresholds[i].signal.pressure(), now);
        }
        let period = self.config.pressure_transition_period;
        let active = |kind: PressureKind| {
            self.conditions_last_observed
                .get(&kind)
                .is_some_and(|&at| at == now || now.saturating_duration_since(at) < period)
        };
        self.pressure = NodePressure {
            memory: active(PressureKind::Memory),
            disk: active(PressureKind::Disk),
            pid: active(PressureKind::Pid),
        };

        let past_grace: Vec<usize> = first_observed
            .iter()
            .filter(|&(&i, &at)| now.saturating_duration_since(at) >= thresholds[i].grace_period)
            .map(|(&i, _)| i)
            .collect();
        self.thresholds_first_observed = first_observed;
        self.thresholds_met = past_grace.clone();

        let mut fresh: Vec<usize> = past_grace
            .into_iter()
            .filter(|&i| {
                let signal = thresholds[i].signal;
                let Some(observed) = observations.get(&signal) else {
                    return false;
                };
                let last = self.last_observations.get(&signal);
                observed.time.0 == 0 || last.is_none_or(|last| observed.time > last.time)
            })
            .collect();
        self.last_observations = observations;

        // Memory before everything else, then the configuration's order.
        fresh.sort_by_key(|&i| thresholds[i].signal.pressure() != PressureKind::Memory);
        // As the reference, the event and the node-level reclaim come even when no pod is
        // there to evict (then `candidates` is empty).
        let reclaim = fresh
            .first()
            .map(|&chosen| self.reclaim(chosen, &fresh, summary, active_pods));
        Synchronized {
            pressure: self.pressure,
            reclaim,
        }
    }

    /// What to reclaim for the chosen threshold; `met` are the thresholds driving eviction,
    /// in priority order, for the message's threshold and available amounts.
    fn reclaim(&self, chosen: usize, met: &[usize], summary: &Summary, pods: &[Pod]) -> Reclaim {
        let threshold = &self.config.thresholds[chosen];
        let signal = threshold.signal;
        let resource = signal.resource();
        let observations = &self.last_observations;
        // The reference reports the first met threshold on the same resource.
        let threshold_met = met.iter().find_map(|&i| {
            let t = &self.config.thresholds[i];
            let observed = observations.get(&t.signal)?;
            (t.signal.resource() == resource).then(|| {
                (
                    value_text(&t.value, observed.capacity),
                    observed.available_text(),
                )
            })
        });
        let evictable: Vec<&Pod> = pods.iter().filter(|p| !is_critical(p)).collect();
        let ranking = Ranking::for_signal(signal, self.config.dedicated_image_fs);
        let candidates = rank(ranking, &evictable, summary)
            .into_iter()
            .map(|pod| {
                let (message, annotations) = eviction_message(
                    resource,
                    threshold_met.clone(),
                    pod,
                    pod_stats(summary, pod),
                );
                PodEviction {
                    uid: pod.metadata.uid.clone().unwrap_or_default(),
                    namespace: pod.metadata.namespace.clone().unwrap_or_default(),
                    name: pod.metadata.name.clone().unwrap_or_default(),
                    message,
                    grace_period: self.grace_period(threshold, pod),
                    annotations,
                }
            })
            .collect();
        Reclaim {
            signal,
            resource,
            event_message: format!("Attempting to reclaim {resource}"),
            node_level: self.node_level(signal),
            candidates,
        }
    }

    /// Hard: the immediate grace period. Soft: `max_pod_grace_period`, or the pod's own
    /// `terminationGracePeriodSeconds` when shorter (as the reference since 1.32).
    fn grace_period(&self, threshold: &Threshold, pod: &Pod) -> Duration {
        if threshold.is_hard() {
            return IMMEDIATE_EVICTION_GRACE_PERIOD;
        }
        let max = self.config.max_pod_grace_period;
        match pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
        {
            Some(own) => max.min(Duration::from_secs(u64::try_from(own).unwrap_or(0))),
            None => max,
        }
    }

    /// The reference's `buildSignalToNodeReclaimFuncs` without a separate container
    /// filesystem.
    fn node_level(&self, signal: Signal) -> Vec<NodeReclaim> {
        let gc = vec![
            NodeReclaim::DeleteUnusedContainers,
            NodeReclaim::DeleteUnusedImages,
        ];
        match signal {
            Signal::ImageFsAvailable | Signal::ImageFsInodesFree => gc,
            Signal::NodeFsAvailable | Signal::NodeFsInodesFree
                if !self.config.dedicated_image_fs =>
            {
                gc
            }
            _ => Vec::new(),
        }
    }

    /// After node-level reclaim (image/container GC): whether a fresh summary no longer
    /// meets any threshold, min_reclaim included (the reference's
    /// `reclaimNodeLevelResources` check). Grace periods are not considered.
    pub fn reclaimed_enough(&self, summary: &Summary) -> bool {
        let observations = observe(summary);
        !self
            .config
            .thresholds
            .iter()
            .any(|t| is_met(t, &observations, true))
    }

    /// The node conditions as last computed.
    pub fn pressure(&self) -> NodePressure {
        self.pressure
    }

    /// The eviction admit handler: critical pods always; under memory pressure alone,
    /// pods that are not BestEffort and BestEffort pods tolerating the memory-pressure
    /// taint; under any other pressure, none.
    pub fn admit(&self, pod: &Pod) -> Result<(), Rejection> {
        let p = self.pressure;
        let conditions: Vec<&str> = [
            (p.memory, PressureKind::Memory),
            (p.disk, PressureKind::Disk),
            (p.pid, PressureKind::Pid),
        ]
        .into_iter()
        .filter(|(on, _)| *on)
        .map(|(_, kind)| kind.condition_type())
        .collect();
        if conditions.is_empty() || is_critical(pod) {
            return Ok(());
        }
        if conditions == [PressureKind::Memory.condition_type()] {
            if qos_class(pod) != QosClass::BestEffort {
                return Ok(());
            }
            let tolerations = pod.spec.as_ref().and_then(|s| s.tolerations.as_ref());
            let memory_pressure_taint = Taint {
                key: MEMORY_PRESSURE_TAINT.to_string(),
                effect: "NoSchedule".to_string(),
                ..Taint::default()
            };
            if tolerations
                .into_iter()
                .flatten()
                .any(|t| crate::admission::tolerates(t, &memory_pressure_taint))
            {
                return Ok(());
            }
        }
        Err(Rejection {
            reason: REASON.to_string(),
            message: format!("The node had condition: [{}]. ", conditions.join(" ")),
        })
    }
}
