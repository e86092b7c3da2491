//! The node conditions (MemoryPressure, DiskPressure, PIDPressure, Ready) with the
//! reference's rules: `lastHeartbeatTime` is set on every computation, `lastTransitionTime`
//! only when the status value changes; an event is recorded on each change.

use std::time::Duration;

use k8s_openapi::api::core::v1::NodeCondition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use tokio::time::Instant;

use crate::runtime::{RuntimeCondition, RuntimeStatus};

/// How long the runtime may go without a successful status check before the node is not
/// ready (the reference's `maxWaitForContainerRuntime`).
pub const RUNTIME_SYNC_THRESHOLD: Duration = Duration::from_secs(30);

/// Pressure the eviction manager sees; all false until one feeds it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodePressure {
    /// `memory.available` is below its threshold.
    pub memory: bool,
    /// A disk signal is below its threshold.
    pub disk: bool,
    /// `pid.available` is below its threshold.
    pub pid: bool,
}

/// What the kubelet knows of the runtime's health, from its `Status` calls.
#[derive(Debug, Clone, Default)]
pub struct RuntimeHealth {
    last_sync: Option<Instant>,
    runtime_error: Option<String>,
    network_error: Option<String>,
}

/// `RuntimeReady=false reason:X message:Y`, as the reference prints a runtime condition.
fn describe(condition: Option<&RuntimeCondition>) -> String {
    match condition {
        Some(c) => format!(
            "{}={} reason:{} message:{}",
            c.type_, c.status, c.reason, c.message
        ),
        None => "<nil>".to_string(),
    }
}

/// One error or `[e1, e2]`, as the reference's aggregate errors print.
fn aggregate(errors: Vec<String>) -> Option<String> {
    match errors.len() {
        0 => None,
        1 => errors.into_iter().next(),
        _ => Some(format!("[{}]", errors.join(", "))),
    }
}

impl RuntimeHealth {
    /// Take in a successful `Status` answer.
    pub fn observe(&mut self, status: &RuntimeStatus, now: Instant) {
        self.last_sync = Some(now);
        let runtime = status.condition(RuntimeStatus::RUNTIME_READY);
        self.runtime_error = (!runtime.is_some_and(|c| c.status))
            .then(|| format!("container runtime not ready: {}", describe(runtime)));
        let network = status.condition(RuntimeStatus::NETWORK_READY);
        self.network_error = (!network.is_some_and(|c| c.status))
            .then(|| format!("container runtime network not ready: {}", describe(network)));
    }

    /// Why the node is not ready, `None` when it is.
    pub fn not_ready_message(&self, now: Instant) -> Option<String> {
        let mut runtime = Vec::new();
        match self.last_sync {
            None => runtime
                .push("container runtime status check may not have completed yet".to_string()),
            Some(at) if now.saturating_duration_since(at) > RUNTIME_SYNC_THRESHOLD => {
                runtime.push("container runtime is down".to_string());
            }
            Some(_) => {}
        }
        runtime.extend(self.runtime_error.clone());
        let errors = aggregate(runtime)
            .into_iter()
            .chain(self.network_error.clone())
            .collect();
        aggregate(errors)
    }
}

/// The event reason recorded for a condition change.
pub type EventReason = &'static str;

fn time_eq(a: Option<&Time>, b: Option<&Time>) -> bool {
    a.map(|t| t.0) == b.map(|t| t.0)
}

/// Set the Ready condition in `conditions` (kept in place, appended if absent).
pub fn set_ready(
    conditions: &mut Vec<NodeCondition>,
    not_ready: Option<&str>,
    now: &Time,
    events: &mut Vec<EventReason>,
) {
    let (status, reason, message) = match not_ready {
        None => ("True", "KubeletReady", "kubelet is posting ready status"),
        Some(message) => ("False", "KubeletNotReady", message),
    };
    let mut condition = NodeCondition {
        type_: "Ready".to_string(),
        status: status.to_string(),
        reason: Some(reason.to_string()),
        message: Some(message.to_string()),
        last_heartbeat_time: Some(now.clone()),
        last_transition_time: Some(now.clone()),
    };
    match conditions.iter_mut().find(|c| c.type_ == "Ready") {
        Some(existing) => {
            if existing.status == condition.status {
                condition.last_transition_time = existing.last_transition_time.clone();
            } else {
                events.push(if not_ready.is_none() {
                    "NodeReady"
                } else {
                    "NodeNotReady"
                });
            }
            *existing = condition;
        }
        // The first Ready condition records no event, as in the reference.
        None => conditions.push(condition),
    }
}

/// The words of one pressure condition.
pub struct Pressure {
    /// Condition type.
    pub type_: &'static str,
    /// Reason and message when under pressure, and the event reason.
    pub on: (&'static str, &'static str, EventReason),
    /// Reason and message without pressure, and the event reason.
    pub off: (&'static str, &'static str, EventReason),
}

/// MemoryPressure.
pub const MEMORY_PRESSURE: Pressure = Pressure {
    type_: "MemoryPressure",
    on: (
        "KubeletHasInsufficientMemory",
        "kubelet has insufficient memory available",
        "NodeHasInsufficientMemory",
    ),
    off: (
        "KubeletHasSufficientMemory",
        "kubelet has sufficient memory available",
        "NodeHasSufficientMemory",
    ),
};
/// DiskPressure.
pub const DISK_PRESSURE: Pressure = Pressure {
    type_: "DiskPressure",
    on: (
        "KubeletHasDiskPressure",
        "kubelet has disk pressure",
        "NodeHasDiskPressure",
    ),
    off: (
        "KubeletHasNoDiskPressure",
        "kubelet has no disk pressure",
        "NodeHasNoDiskPressure",
    ),
};
/// PIDPressure.
pub const PID_PRESSURE: Pressure = Pressure {
    type_: "PIDPressure",
    on: (
        "KubeletHasInsufficientPID",
        "kubelet has insufficient PID available",
        "NodeHasInsufficientPID",
    ),
    off: (
        "KubeletHasSufficientPID",
        "kubelet has sufficient PID available",
        "NodeHasSufficientPID",
    ),
};

/// Set a pressure condition: heartbeat now; status, reason, message and transition time
/// only when the value changes (the first computation counts as a change).
pub fn set_pressure(
    conditions: &mut Vec<NodeCondition>,
    words: &Pressure,
    under_pressure: bool,
    now: &Time,
    events: &mut Vec<EventReason>,
) {
    let index = match conditions.iter().position(|c| c.type_ == words.type_) {
        Some(i) => i,
        None => {
            conditions.push(NodeCondition {
                type_: words.type_.to_string(),
                ..NodeCondition::default()
            });
            conditions.len() - 1
        }
    };
    let condition = &mut conditions[index];
    condition.last_heartbeat_time = Some(now.clone());
    let (status, (reason, message, event)) = if under_pressure {
        ("True", words.on)
    } else {
        ("False", words.off)
    };
    if condition.status != status {
        condition.status = status.to_string();
        condition.reason = Some(reason.to_string());
        condition.message = Some(message.to_string());
        condition.last_transition_time = Some(now.clone());
        events.push(event);
    }
}

/// Whether two condition lists differ other than in heartbeat times.
pub fn conditions_changed(old: &[NodeCondition], new: &[NodeCondition]) -> bool {
    old.len() != new.len()
        || old.iter().zip(new).any(|(a, b)| {
            a.type_ != b.type_
                || a.status != b.status
                || a.reason != b.reason
                || a.message != b.message
                || !time_eq(
                    a.last_transition_time.as_ref(),
                    b.last_transition_time.as_ref(),
                )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).unwrap())
    }

    #[test]
    fn ready_keeps_its_transition_time_while_the_value_holds() {
        let mut conditions = Vec::new();
        let mut events = Vec::new();
        set_ready(&mut conditions, None, &at(100), &mut events);
        assert!(events.is_empty());
        set_ready(&mut conditions, None, &at(110), &mut events);
        let c = &conditions[0];
        assert_eq!(c.status, "True");
        assert_eq!(c.reason.as_deref(), Some("KubeletReady"));
        assert_eq!(
            c.message.as_deref(),
            Some("kubelet is posting ready status")
        );
        assert_eq!(c.last_heartbeat_time, Some(at(110)));
        assert_eq!(c.last_transition_time, Some(at(100)));
        set_ready(&mut conditions, Some("runtime down"), &at(120), &mut events);
        assert_eq!(conditions[0].status, "False");
        assert_eq!(conditions[0].reason.as_deref(), Some("KubeletNotReady"));
        assert_eq!(conditions[0].last_transition_time, Some(at(120)));
        assert_eq!(events, ["NodeNotReady"]);
    }

    #[test]
    fn pressure_records_an_event_on_first_computation_and_on_changes() {
        let mut conditions = Vec::new();
        let mut events = Vec::new();
        set_pressure(
            &mut conditions,
            &MEMORY_PRESSURE,
            false,
            &at(1),
            &mut events,
        );
        set_pressure(
            &mut conditions,
            &MEMORY_PRESSURE,
            false,
            &at(2),
            &mut events,
        );
        assert_eq!(events, ["NodeHasSufficientMemory"]);
        assert_eq!(conditions[0].last_transition_time, Some(at(1)));
        assert_eq!(conditions[0].last_heartbeat_time, Some(at(2)));
        set_pressure(&mut conditions, &MEMORY_PRESSURE, true, &at(3), &mut events);
        assert_eq!(
            conditions[0].reason.as_deref(),
            Some("KubeletHasInsufficientMemory")
        );
        assert_eq!(conditions[0].last_transition_time, Some(at(3)));
        assert_eq!(events[1], "NodeHasInsufficientMemory");
    }

    #[test]
    fn heartbeat_alone_is_no_change() {
        let mut a = Vec::new();
        set_pressure(&mut a, &DISK_PRESSURE, false, &at(1), &mut Vec::new());
        let mut b = a.clone();
        b[0].last_heartbeat_time = Some(at(50));
        assert!(!conditions_changed(&a, &b));
        b[0].message = Some("x".into());
        assert!(conditions_changed(&a, &b));
    }

    #[tokio::test(start_paused = true)]
    async fn runtime_health_messages_follow_the_reference() {
        let mut health = RuntimeHealth::default();
        let t0 = Instant::now();
        assert_eq!(
            health.not_ready_message(t0).as_deref(),
            Some("container runtime status check may not have completed yet")
        );
        health.observe(&RuntimeStatus::ready(), t0);
        assert_eq!(health.not_ready_message(t0), None);
        let network_down = RuntimeStatus {
            conditions: vec![
                RuntimeCondition::ready(RuntimeStatus::RUNTIME_READY),
                RuntimeCondition::not_ready(
                    RuntimeStatus::NETWORK_READY,
                    "NetworkPluginNotReady",
                    "Network plugin returns error: cni plugin not initialized",
                ),
            ],
        };
        health.observe(&network_down, t0);
        assert_eq!(
            health.not_ready_message(t0).as_deref(),
            Some(
                "container runtime network not ready: NetworkReady=false \
                 reason:NetworkPluginNotReady message:Network plugin returns error: \
                 cni plugin not initialized"
            )
        );
        health.observe(&RuntimeStatus::default(), t0);
        assert_eq!(
            health
                .not_ready_message(t0 + Duration::from_secs(31))
                .as_deref(),
            Some(
                "[[container runtime is down, container runtime not ready: <nil>], \
                 container runtime network not ready: <nil>]"
            )
        );
    }
}
