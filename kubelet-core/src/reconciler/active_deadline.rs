//! `activeDeadlineSeconds`: a pod active on the node longer than its deadline has its
//! containers stopped for good and fails with reason `DeadlineExceeded` (the reference's
//! `activeDeadlineHandler`, whose `ShouldEvict` makes the pod's status Failed and whose
//! event says so).

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use tokio::time::Instant;

/// The reason of the Failed phase and of the event.
pub const REASON: &str = "DeadlineExceeded";
/// The message of the Failed phase and of the event.
pub const MESSAGE: &str = "Pod was active on the node longer than the specified deadline";

/// Where a pod stands against its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deadline {
    /// No `activeDeadlineSeconds`, or the pod has no start time yet.
    None,
    /// The deadline comes in this long.
    In(Duration),
    /// The pod has been active at least as long as its deadline.
    Exceeded,
}

/// The pod's standing: active since `start` (its status's `startTime`), at `now`.
pub fn deadline(pod: &Pod, start: Option<Timestamp>, now: Timestamp) -> Deadline {
    let Some(seconds) = pod.spec.as_ref().and_then(|s| s.active_deadline_seconds) else {
        return Deadline::None;
    };
    let Some(start) = start else {
        return Deadline::None;
    };
    let allowed = Duration::from_secs(u64::try_from(seconds).unwrap_or(0));
    let active = now.duration_since(start).unsigned_abs();
    let active = if now < start { Duration::ZERO } else { active };
    match allowed.checked_sub(active) {
        Some(left) if !left.is_zero() => Deadline::In(left),
        _ => Deadline::Exceeded,
    }
}

/// A wall clock that advances with tokio's clock, so that a deadline counted from a
/// status's wall-clock start time passes under paused time as it does in real time.
#[derive(Debug, Clone, Copy)]
pub struct WorkerClock {
    instant: Instant,
    wall: Timestamp,
}

impl WorkerClock {
    /// A clock reading the wall time now.
    pub fn new() -> Self {
        Self {
            instant: Instant::now(),
            wall: Timestamp::now(),
        }
    }

    /// The wall time now, as tokio's clock has advanced since the clock was made.
    pub fn now(&self) -> Timestamp {
        let elapsed = Instant::now().duration_since(self.instant);
        jiff::SignedDuration::try_from(elapsed)
            .ok()
            .and_then(|d| self.wall.checked_add(d).ok())
            .unwrap_or_else(Timestamp::now)
    }
}

impl Default for WorkerClock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::PodSpec;

    use super::*;

    fn pod(seconds: Option<i64>) -> Pod {
        Pod {
            spec: Some(PodSpec {
                active_deadline_seconds: seconds,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn standing() {
        let start = Timestamp::from_second(1_000).unwrap();
        let at = |s: i64| Timestamp::from_second(s).unwrap();
        assert_eq!(deadline(&pod(None), Some(start), at(5_000)), Deadline::None);
        assert_eq!(deadline(&pod(Some(30)), None, at(5_000)), Deadline::None);
        assert_eq!(
            deadline(&pod(Some(30)), Some(start), at(1_010)),
            Deadline::In(Duration::from_secs(20))
        );
        assert_eq!(
            deadline(&pod(Some(30)), Some(start), at(1_030)),
            Deadline::Exceeded
        );
        assert_eq!(
            deadline(&pod(Some(30)), Some(start), at(2_000)),
            Deadline::Exceeded
        );
        // A start in the future (clock skew) counts as just started.
        assert_eq!(
            deadline(&pod(Some(30)), Some(start), at(900)),
            Deadline::In(Duration::from_secs(30))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn clock_follows_tokio_time() {
        let clock = WorkerClock::new();
        let before = clock.now();
        tokio::time::sleep(Duration::from_secs(90)).await;
        let after = clock.now();
        assert!(after.duration_since(before) >= jiff::SignedDuration::from_secs(90));
    }
}
