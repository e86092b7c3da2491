//! WATCH: initial state or history replay from a resourceVersion, live events with
//! selector transitions, bookmarks, timeouts, and 410 Gone as an ERROR event.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;

use super::Shared;
use super::convert::to_external;
use super::resources::ResourceInfo;
use super::selectors::Selectors;
use super::status::ApiError;
use super::store::{EventType, StoreEvent};

/// The query parameters of a watch.
#[derive(Debug, Default)]
pub(crate) struct WatchParams {
    pub(crate) resource_version: Option<String>,
    pub(crate) resource_version_match: Option<String>,
    pub(crate) allow_bookmarks: bool,
    pub(crate) timeout: Option<Duration>,
    pub(crate) send_initial_events: Option<bool>,
    pub(crate) namespace: Option<String>,
    pub(crate) selectors: Selectors,
    /// Changes at or before this RV are not sent.
    pub(crate) skip_through: u64,
}

fn line(kind: &str, object: &Value) -> Bytes {
    let mut s = json!({ "type": kind, "object": object }).to_string();
    s.push('\n');
    Bytes::from(s)
}

fn in_scope(p: &WatchParams, obj: &Value) -> bool {
    let ns_ok = p
        .namespace
        .as_deref()
        .is_none_or(|ns| obj.pointer("/metadata/namespace").and_then(Value::as_str) == Some(ns));
    ns_ok && p.selectors.matches(obj)
}

/// The event a watcher with these selectors sees for a store change: an object that
/// starts matching is ADDED, one that stops matching is DELETED.
fn transform(info: &ResourceInfo, p: &WatchParams, ev: &StoreEvent) -> Option<Bytes> {
    if ev.storage != info.storage {
        return None;
    }
    let now = in_scope(p, &ev.object);
    let before = ev.old.as_ref().is_some_and(|o| in_scope(p, o));
    let kind = match ev.kind {
        EventType::Added => now.then_some("ADDED"),
        EventType::Deleted => before.then_some("DELETED"),
        EventType::Modified => match (before, now) {
            (true, true) => Some("MODIFIED"),
            (false, true) => Some("ADDED"),
            (true, false) => Some("DELETED"),
            (false, false) => None,
        },
    }?;
    Some(line(kind, &to_external(info, &ev.object)))
}

fn bookmark(info: &ResourceInfo, rv: u64, initial_end: bool) -> Bytes {
    let mut meta = json!({ "resourceVersion": rv.to_string() });
    if initial_end {
        meta["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
    }
    line(
        "BOOKMARK",
        &json!({ "kind": info.kind, "apiVersion": info.api_version(), "metadata": meta }),
    )
}

/// Validates a watch request and starts its stream; the receiver yields the lines of the
/// response body.
pub(crate) fn start(
    shared: &Arc<Shared>,
    info: &'static ResourceInfo,
    p: WatchParams,
) -> Result<mpsc::Receiver<Bytes>, ApiError> {
    let send_initial = p.send_initial_events.unwrap_or(false);
    if p.send_initial_events.is_some() {
        let mut causes = Vec::new();
        if p.resource_version_match.as_deref() != Some("NotOlderThan") {
            causes.push((
                "resourceVersionMatch".to_string(),
                "FieldValueForbidden",
                "Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan".to_string(),
            ));
        }
        if send_initial && !p.allow_bookmarks {
            causes.push((
                "allowWatchBookmarks".to_string(),
                "FieldValueRequired",
                "Required value: allowWatchBookmarks must be set to true when sendInitialEvents is set".to_string(),
            ));
        }
        if !causes.is_empty() {
            return Err(ApiError::invalid("ListOptions", "meta.k8s.io", "", &causes));
        }
    } else if p.resource_version_match.is_some() {
        return Err(ApiError::invalid(
            "ListOptions",
            "meta.k8s.io",
            "",
            &[(
                "resourceVersionMatch".to_string(),
                "FieldValueForbidden",
                "Forbidden: resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided".to_string(),
            )],
        ));
    }
    let rv = p
        .resource_version
        .as_deref()
        .filter(|r| !r.is_empty() && *r != "0")
        .map(super::store::Store::parse_rv)
        .transpose()?;

    let (tx, rx) = mpsc::channel::<Bytes>(1024);
    let mut initial: Vec<Bytes> = Vec::new();
    let (events, start_rv) = {
        let store = shared.lock_store();
        let events = store.events.subscribe();
        let start_rv = store.current_rv();
        if send_initial || rv.is_none() {
            // Unset or "0": the current state as synthetic ADDED events, then changes.
            let (items, _) = store.list(info, p.namespace.as_deref(), &p.selectors, None)?;
            for item in &items {
                initial.push(line("ADDED", &to_external(info, item)));
            }
            if send_initial {
                initial.push(bookmark(info, start_rv, true));
            }
        } else if let Some(rv) = rv {
            match store.events_since(rv) {
                Ok(evs) => {
                    for ev in evs {
                        if let Some(l) = transform(info, &p, &ev) {
                            initial.push(l);
                        }
                    }
                }
                Err(e) => {
                    // A watch that cannot start from its RV is an ERROR event on a 200.
                    initial.push(line("ERROR", &e.to_status()));
                    tokio::spawn(async move {
                        for l in initial {
                            if tx.send(l).await.is_err() {
                                return;
                            }
                        }
                    });
                    return Ok(rx);
                }
            }
        }
        (events, start_rv)
    };
    let interval = shared.bookmark_interval;
    let drop_rx = shared.drop_watches.subscribe();
    let mut p = p;
    // From an RV ahead of the store, only changes after it are sent.
    p.skip_through = rv.unwrap_or(0);
    tokio::spawn(run(
        tx, initial, events, drop_rx, info, p, start_rv, interval,
    ));
    Ok(rx)
}

#[allow(clippy::too_many_arguments)]
async fn run(
    tx: mpsc::Sender<Bytes>,
    initial: Vec<Bytes>,
    mut events: broadcast::Receiver<Arc<StoreEvent>>,
    mut drop_rx: tokio::sync::watch::Receiver<u64>,
    info: &'static ResourceInfo,
    p: WatchParams,
    start_rv: u64,
    bookmark_every: Duration,
) {
    drop_rx.borrow_and_update();
    for l in initial {
        if tx.send(l).await.is_err() {
            return;
        }
    }
    let deadline = p.timeout.map(|t| Instant::now() + t);
    let timeout = async move {
        match deadline {
            Some(d) => tokio::time::sleep_until(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(timeout);
    let mut ticker = tokio::time::interval_at(Instant::now() + bookmark_every, bookmark_every);
    let mut last_rv = start_rv;
    loop {
        tokio::select! {
            r = events.recv() => match r {
                Ok(ev) if ev.rv <= p.skip_through => last_rv = last_rv.max(ev.rv),
                Ok(ev) => {
                    last_rv = last_rv.max(ev.rv);
                    if let Some(l) = transform(info, &p, &ev)
                        && tx.send(l).await.is_err()
                    {
                        return;
                    }
                }
                // A watcher too slow for the event stream is closed; it resumes from
                // its last resourceVersion.
                Err(broadcast::error::RecvError::Lagged(_)) | Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = ticker.tick(), if p.allow_bookmarks => {
                if tx.send(bookmark(info, last_rv, false)).await.is_err() {
                    return;
                }
            }
            _ = &mut timeout => return,
            _ = drop_rx.changed() => return,
            _ = tx.closed() => return,
        }
    }
}
