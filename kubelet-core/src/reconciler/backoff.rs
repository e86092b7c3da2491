//! Exponential backoff per key, as the reference's flowcontrol.Backoff: CrashLoopBackOff
//! (10 s doubling to 5 min) and image pull backoff. An entry that saw no event for twice the
//! maximum (10 min for crash loops) starts over at the initial delay.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

/// Initial CrashLoopBackOff delay.
pub const CRASH_LOOP_INITIAL: Duration = Duration::from_secs(10);
/// Maximum CrashLoopBackOff delay.
pub const CRASH_LOOP_MAX: Duration = Duration::from_secs(300);
/// Initial image pull backoff delay.
pub const IMAGE_PULL_INITIAL: Duration = Duration::from_secs(10);
/// Maximum image pull backoff delay.
pub const IMAGE_PULL_MAX: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy)]
struct Entry {
    delay: Duration,
    last_update: Instant,
}

/// Backoff state for a set of keys (e.g. one per container name and spec hash).
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    entries: HashMap<String, Entry>,
}

impl Backoff {
    /// A backoff starting at `initial` and doubling up to `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            entries: HashMap::new(),
        }
    }

    /// The CrashLoopBackOff policy.
    pub fn crash_loop() -> Self {
        Self::new(CRASH_LOOP_INITIAL, CRASH_LOOP_MAX)
    }

    /// The image pull policy.
    pub fn image_pull() -> Self {
        Self::new(IMAGE_PULL_INITIAL, IMAGE_PULL_MAX)
    }

    fn expired(&self, entry: &Entry, now: Instant) -> bool {
        now.saturating_duration_since(entry.last_update) > self.max * 2
    }

    /// Record a failure at `event_time` (e.g. when the container exited) and grow the delay.
    pub fn next(&mut self, key: &str, event_time: Instant) {
        let delay = match self.entries.get(key) {
            Some(entry) if !self.expired(entry, event_time) => (entry.delay * 2).min(self.max),
            _ => self.initial,
        };
        self.entries.insert(
            key.to_string(),
            Entry {
                delay,
                last_update: event_time,
            },
        );
    }

    /// How long is left of the backoff that started at `event_time`, if any is left at `now`.
    pub fn remaining(&self, key: &str, event_time: Instant, now: Instant) -> Option<Duration> {
        let entry = self.entries.get(key)?;
        if self.expired(entry, now) {
            return None;
        }
        let elapsed = now.saturating_duration_since(event_time);
        entry.delay.checked_sub(elapsed).filter(|d| !d.is_zero())
    }

    /// How long is left of the backoff counted from the key's last failure.
    pub fn remaining_since_last(&self, key: &str, now: Instant) -> Option<Duration> {
        let entry = self.entries.get(key)?;
        self.remaining(key, entry.last_update, now)
    }

    /// The current delay of a key, if it has one.
    pub fn delay(&self, key: &str) -> Option<Duration> {
        self.entries.get(key).map(|e| e.delay)
    }

    /// Forget a key.
    pub fn reset(&mut self, key: &str) {
        self.entries.remove(key);
    }

    /// Drop entries that have expired, so the map does not grow forever.
    pub fn gc(&mut self, now: Instant) {
        let max2 = self.max * 2;
        self.entries
            .retain(|_, e| now.saturating_duration_since(e.last_update) <= max2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn delays_double_up_to_the_maximum() {
        let mut b = Backoff::crash_loop();
        let mut expected = Vec::new();
        let mut seen = Vec::new();
        for want in [10, 20, 40, 80, 160, 300, 300] {
            let now = Instant::now();
            b.next("c", now);
            seen.push(b.delay("c").map(|d| d.as_secs()));
            expected.push(Some(want));
            // The next failure comes just after the delay ran out.
            tokio::time::advance(Duration::from_secs(want + 1)).await;
        }
        assert_eq!(seen, expected);
    }

    #[tokio::test(start_paused = true)]
    async fn remaining_counts_from_the_event() {
        let mut b = Backoff::crash_loop();
        let exited = Instant::now();
        b.next("c", exited);
        assert_eq!(
            b.remaining("c", exited, exited),
            Some(Duration::from_secs(10))
        );
        tokio::time::advance(Duration::from_secs(4)).await;
        assert_eq!(
            b.remaining("c", exited, Instant::now()),
            Some(Duration::from_secs(6))
        );
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(b.remaining("c", exited, Instant::now()), None);
        assert_eq!(b.remaining("other", exited, Instant::now()), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_healthy_run_resets_the_delay() {
        let mut b = Backoff::crash_loop();
        for _ in 0..4 {
            b.next("c", Instant::now());
            tokio::time::advance(Duration::from_secs(100)).await;
        }
        assert_eq!(b.delay("c"), Some(Duration::from_secs(80)));
        // Ten minutes (twice the maximum) without a failure: start over.
        tokio::time::advance(Duration::from_secs(601)).await;
        b.next("c", Instant::now());
        assert_eq!(b.delay("c"), Some(Duration::from_secs(10)));
    }

    #[tokio::test(start_paused = true)]
    async fn gc_drops_expired_entries() {
        let mut b = Backoff::crash_loop();
        b.next("old", Instant::now());
        tokio::time::advance(Duration::from_secs(700)).await;
        b.next("new", Instant::now());
        b.gc(Instant::now());
        assert_eq!(b.delay("old"), None);
        assert!(b.delay("new").is_some());
    }
}
