//! Events: core/v1 Events with the reference recorder's spam filter, aggregation of similar
//! events and counting of repeats, so that a crash loop cannot flood the API server.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::time::Instant;
use tracing::debug;

use super::error::{report_error, status_code};
use super::reporter::Inner;
use crate::error::ReportError;
use crate::reporter::KubeletEvent;

/// The component name events are recorded under.
pub const EVENT_COMPONENT: &str = "kubelet";
/// Entries kept per cache (the reference's `maxLruCacheEntries`).
const MAX_CACHE_ENTRIES: usize = 4096;
/// Similar events (same object, type and reason) with different messages within this window
/// are combined once there are this many (the reference's aggregator defaults).
const AGGREGATE_MAX_EVENTS: usize = 10;
const AGGREGATE_WINDOW: Duration = Duration::from_secs(600);

/// A token bucket: `burst` tokens, one more every `refill`.
#[derive(Debug, Clone)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

#[derive(Debug)]
struct Aggregate {
    messages: BTreeSet<String>,
    last: Instant,
}

/// An Event already written, to count its repeats.
#[derive(Debug, Clone)]
struct Written {
    name: String,
    namespace: String,
    count: i32,
    first: Timestamp,
}

/// What the recorder remembers between events.
#[derive(Debug)]
pub(super) struct EventState {
    burst: u32,
    refill: Duration,
    buckets: HashMap<String, Bucket>,
    aggregates: HashMap<String, Aggregate>,
    written: HashMap<String, Written>,
    last_name_nanos: i128,
}

impl EventState {
    pub fn new(burst: u32, refill: Duration) -> Self {
        Self {
            burst,
            refill: refill.max(Duration::from_millis(1)),
            buckets: HashMap::new(),
            aggregates: HashMap::new(),
            written: HashMap::new(),
            last_name_nanos: 0,
        }
    }

    /// The spam filter: whether the object may have one more event now.
    fn allow(&mut self, key: &str, now: Instant) -> bool {
        if self.buckets.len() >= MAX_CACHE_ENTRIES && !self.buckets.contains_key(key) {
            evict_oldest(&mut self.buckets, |b| b.last);
        }
        let burst = f64::from(self.burst);
        let refill = self.refill.as_secs_f64();
        let bucket = self.buckets.entry(key.to_string()).or_insert(Bucket {
            tokens: burst,
            last: now,
        });
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed / refill).min(burst);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// The aggregator: the key to count this event under and its message, which becomes
    /// "(combined from similar events): ..." once similar events with many different
    /// messages pile up.
    fn aggregate(&mut self, similar: &str, message: &str, now: Instant) -> (String, String) {
        if self.aggregates.len() >= MAX_CACHE_ENTRIES && !self.aggregates.contains_key(similar) {
            evict_oldest(&mut self.aggregates, |a| a.last);
        }
        let entry = self
            .aggregates
            .entry(similar.to_string())
            .or_insert_with(|| Aggregate {
                messages: BTreeSet::new(),
                last: now,
            });
        if now.saturating_duration_since(entry.last) > AGGREGATE_WINDOW {
            entry.messages.clear();
        }
        entry.last = now;
        entry.messages.insert(message.to_string());
        if entry.messages.len() < AGGREGATE_MAX_EVENTS {
            (format!("{similar}\u{0}{message}"), message.to_string())
        } else {
            (
                similar.to_string(),
                format!("(combined from similar events): {message}"),
            )
        }
    }

    /// A name no other event of ours has: `<object>.<hex nanoseconds>`, as the reference.
    fn event_name(&mut self, object: &str, now: Timestamp) -> String {
        let nanos = now.as_nanosecond().max(self.last_name_nanos + 1);
        self.last_name_nanos = nanos;
        format!("{object}.{nanos:x}")
    }
}

fn evict_oldest<V>(map: &mut HashMap<String, V>, at: impl Fn(&V) -> Instant) {
    if let Some(oldest) = map
        .iter()
        .min_by_key(|(_, v)| at(v))
        .map(|(k, _)| k.clone())
    {
        map.remove(&oldest);
    }
}

/// Source and involved object: the spam filter's key (one bucket per object).
fn object_key(node: &str, o: &ObjectReference) -> String {
    [
        EVENT_COMPONENT,
        node,
        o.kind.as_deref().unwrap_or_default(),
        o.namespace.as_deref().unwrap_or_default(),
        o.name.as_deref().unwrap_or_default(),
        o.uid.as_deref().unwrap_or_default(),
        o.api_version.as_deref().unwrap_or_default(),
    ]
    .join("\u{0}")
}

/// What to do with one event.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum EventWrite {
    /// Dropped by the spam filter.
    Dropped,
    /// A new Event object.
    Create(Box<Event>),
    /// A repeat: patch `count`, `lastTimestamp` and `message` of the existing object.
    Repeat {
        namespace: String,
        name: String,
        count: i32,
        message: String,
        last: Timestamp,
        /// The whole event, should the old object be gone.
        event: Box<Event>,
    },
}

impl EventState {
    /// Decides how `event` is written at `now` (monotonic) / `wall` (wall clock).
    pub(super) fn plan(
        &mut self,
        node: &str,
        event: &KubeletEvent,
        now: Instant,
        wall: Timestamp,
    ) -> EventWrite {
        let involved = &event.involved;
        let object = object_key(node, involved);
        if !self.allow(&object, now) {
            return EventWrite::Dropped;
        }
        let similar = format!("{object}\u{0}{}\u{0}{}", event.type_.as_str(), event.reason);
        let (key, message) = self.aggregate(&similar, &event.message, now);
        let namespace = involved
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".to_string());
        let mut written = self.written.get(&key).cloned();
        let record = |name: String, count: i32, first: Timestamp| Event {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            involved_object: involved.clone(),
            reason: Some(event.reason.clone()),
            message: Some(message.clone()),
            type_: Some(event.type_.as_str().to_string()),
            source: Some(EventSource {
                component: Some(EVENT_COMPONENT.to_string()),
                host: Some(node.to_string()),
            }),
            first_timestamp: Some(Time(first)),
            last_timestamp: Some(Time(wall)),
            count: Some(count),
            reporting_component: Some(EVENT_COMPONENT.to_string()),
            reporting_instance: Some(node.to_string()),
            ..Default::default()
        };
        match written.as_mut() {
            Some(w) => {
                w.count += 1;
                let event = record(w.name.clone(), w.count, w.first);
                let plan = EventWrite::Repeat {
                    namespace: w.namespace.clone(),
                    name: w.name.clone(),
                    count: w.count,
                    message: message.clone(),
                    last: wall,
                    event: Box::new(event),
                };
                self.written.insert(key, w.clone());
                plan
            }
            None => {
                let name = self.event_name(involved.name.as_deref().unwrap_or("unknown"), wall);
                if self.written.len() >= MAX_CACHE_ENTRIES {
                    // Forget an arbitrary old entry: at worst a repeat makes a new object.
                    if let Some(k) = self.written.keys().next().cloned() {
                        self.written.remove(&k);
                    }
                }
                self.written.insert(
                    key,
                    Written {
                        name: name.clone(),
                        namespace: namespace.clone(),
                        count: 1,
                        first: wall,
                    },
                );
                EventWrite::Create(Box::new(record(name, 1, wall)))
            }
        }
    }

    /// Forgets a written event whose creation failed, so the next repeat creates it.
    fn forget_written(&mut self, namespace: &str, name: &str) {
        self.written
            .retain(|_, w| !(w.namespace == namespace && w.name == name));
    }
}

impl Inner {
    pub async fn record_event(&self, event: &KubeletEvent) -> Result<(), ReportError> {
        let plan = self
            .events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .plan(self.node_name(), event, Instant::now(), Timestamp::now());
        match plan {
            EventWrite::Dropped => {
                debug!(reason = %event.reason, "event dropped by the spam filter");
                Ok(())
            }
            EventWrite::Create(e) => self.create_event(*e).await,
            EventWrite::Repeat {
                namespace,
                name,
                count,
                message,
                last,
                event,
            } => {
                let api: Api<Event> = Api::namespaced(self.kube(), &namespace);
                let patch = json!({
                    "count": count,
                    "lastTimestamp": Time(last),
                    "message": message,
                });
                match self
                    .timed(api.patch(&name, &PatchParams::default(), &Patch::Strategic(&patch)))
                    .await
                {
                    Ok(_) => Ok(()),
                    // Events expire (1 h by default): write it anew.
                    Err(err) if status_code(&err) == Some(404) => self.create_event(*event).await,
                    Err(err) => Err(report_error(
                        &format!("patch events/{namespace}/{name}"),
                        &err,
                    )),
                }
            }
        }
    }

    async fn create_event(&self, event: Event) -> Result<(), ReportError> {
        let namespace = event.metadata.namespace.clone().unwrap_or_default();
        let name = event.metadata.name.clone().unwrap_or_default();
        let api: Api<Event> = Api::namespaced(self.kube(), &namespace);
        match self.timed(api.create(&PostParams::default(), &event)).await {
            Ok(_) => Ok(()),
            Err(err) => {
                self.events
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .forget_written(&namespace, &name);
                Err(report_error(
                    &format!("create events/{namespace}/{name}"),
                    &err,
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reporter::EventType;

    fn backoff(pod: &str, message: &str) -> KubeletEvent {
        KubeletEvent {
            involved: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(pod.into()),
                namespace: Some("ns".into()),
                uid: Some(format!("uid-{pod}")),
                ..Default::default()
            },
            type_: EventType::Warning,
            reason: "BackOff".into(),
            message: message.into(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn burst_of_25_then_one_per_five_minutes_per_object() {
        let mut st = EventState::new(25, Duration::from_secs(300));
        let wall = Timestamp::now();
        let plans: Vec<EventWrite> = (0..30)
            .map(|_| st.plan("n1", &backoff("a", "m"), Instant::now(), wall))
            .collect();
        let allowed = plans.iter().filter(|p| **p != EventWrite::Dropped).count();
        assert_eq!(allowed, 25);
        // Another object has its own bucket.
        assert_ne!(
            st.plan("n1", &backoff("b", "m"), Instant::now(), wall),
            EventWrite::Dropped
        );
        tokio::time::advance(Duration::from_secs(299)).await;
        assert_eq!(
            st.plan("n1", &backoff("a", "m"), Instant::now(), wall),
            EventWrite::Dropped
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_ne!(
            st.plan("n1", &backoff("a", "m"), Instant::now(), wall),
            EventWrite::Dropped
        );
    }

    #[tokio::test(start_paused = true)]
    async fn repeats_count_up_one_object() {
        let mut st = EventState::new(25, Duration::from_secs(300));
        let wall = Timestamp::now();
        let EventWrite::Create(first) = st.plan("n1", &backoff("a", "m"), Instant::now(), wall)
        else {
            panic!("first event must be created");
        };
        assert_eq!(first.count, Some(1));
        assert_eq!(first.source.as_ref().unwrap().host.as_deref(), Some("n1"));
        let name = first.metadata.name.clone().unwrap();
        assert!(name.starts_with("a."));
        match st.plan("n1", &backoff("a", "m"), Instant::now(), wall) {
            EventWrite::Repeat { name: n, count, .. } => {
                assert_eq!(n, name);
                assert_eq!(count, 2);
            }
            other => panic!("expected a repeat, got {other:?}"),
        }
        // A different message is a different event.
        assert!(matches!(
            st.plan("n1", &backoff("a", "other"), Instant::now(), wall),
            EventWrite::Create(_)
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn many_different_messages_are_combined() {
        let mut st = EventState::new(100, Duration::from_secs(300));
        let wall = Timestamp::now();
        for i in 0..9 {
            assert!(matches!(
                st.plan("n1", &backoff("a", &format!("m{i}")), Instant::now(), wall),
                EventWrite::Create(_)
            ));
        }
        let EventWrite::Create(combined) = st.plan("n1", &backoff("a", "m9"), Instant::now(), wall)
        else {
            panic!("the tenth message starts the combined event");
        };
        assert_eq!(
            combined.message.as_deref(),
            Some("(combined from similar events): m9")
        );
        assert!(matches!(
            st.plan("n1", &backoff("a", "m10"), Instant::now(), wall),
            EventWrite::Repeat { count: 2, .. }
        ));
    }
}
