//! [`ApiServerSource`]: the pods bound to this node, by list+watch of the API server.

use std::collections::HashMap;
use std::time::Duration;

use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, WatchEvent, WatchParams};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::client::NodeClient;
use super::error::{message, source_error, status_code};
use crate::labels;
use crate::source::{PodSource, PodUpdate, SOURCE_API};

/// Pods per page of the initial list.
const LIST_PAGE: u32 = 500;

/// Backoff of the list and watch calls after an error: doubling from `initial` to `max`, as
/// the reference reflector (800 ms to 30 s), reset by a successful call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchBackoff {
    /// First delay.
    pub initial: Duration,
    /// Largest delay.
    pub max: Duration,
}

impl Default for WatchBackoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(800),
            max: Duration::from_secs(30),
        }
    }
}

/// A [`PodSource`] (named `api`) for the pods whose `spec.nodeName` is this node.
///
/// It lists the pods (`fieldSelector=spec.nodeName=<node>`) and sends them as one
/// [`PodUpdate::Snapshot`], then watches from the list's resourceVersion (with bookmarks)
/// and sends [`PodUpdate::Add`], [`PodUpdate::Update`] and [`PodUpdate::Remove`]. A watch
/// that ends or breaks is resumed from the last resourceVersion seen; when that version is
/// too old (410 Gone) the pods are listed again and a new snapshot sent. Errors back off
/// (800 ms doubling to 30 s). While the API server is unreachable nothing is sent, so the
/// pods the node runs keep running.
///
/// Mirror pods (annotation `kubernetes.io/config.mirror`) are left out: they stand for
/// static pods this node runs from another source. Pods being deleted are passed on with
/// their `deletionTimestamp`; the reconciler stops them.
pub struct ApiServerSource {
    client: NodeClient,
    backoff: WatchBackoff,
    watch_timeout: Duration,
    idle_timeout: Duration,
}

impl std::fmt::Debug for ApiServerSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiServerSource")
            .field("node", &self.client.node_name())
            .field("backoff", &self.backoff)
            .field("watch_timeout", &self.watch_timeout)
            .finish_non_exhaustive()
    }
}

impl ApiServerSource {
    /// A source for the node of `client`.
    pub fn new(client: NodeClient) -> Self {
        // The reference reflector asks for watches of 5 to 10 minutes; a per-node spread
        // keeps many nodes from re-watching at the same moment.
        let spread = u64::from(
            client
                .node_name()
                .bytes()
                .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b))),
        ) % 300;
        let watch_timeout = Duration::from_secs(300 + spread);
        Self {
            client,
            backoff: WatchBackoff::default(),
            watch_timeout,
            idle_timeout: watch_timeout + Duration::from_secs(60),
        }
    }

    /// Sets the error backoff.
    pub fn with_backoff(mut self, backoff: WatchBackoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Sets how long each watch request lasts (`timeoutSeconds`), and so how often it is
    /// renewed; a watch that gets nothing (not even a bookmark) for a minute longer than
    /// that is taken as broken and renewed.
    pub fn with_watch_timeout(mut self, timeout: Duration) -> Self {
        self.watch_timeout = timeout.max(Duration::from_secs(1));
        self.idle_timeout = self.watch_timeout + Duration::from_secs(60);
        self
    }
}

impl PodSource for ApiServerSource {
    fn name(&self) -> &str {
        SOURCE_API
    }

    fn updates(self: Box<Self>) -> BoxStream<'static, PodUpdate> {
        let (tx, rx) = mpsc::channel(64);
        let watch = PodWatch {
            api: Api::all(self.client.client().clone()),
            selector: format!("spec.nodeName={}", self.client.node_name()),
            origin: format!(
                "{} pods of node {}",
                self.client.url(),
                self.client.node_name()
            ),
            backoff: self.backoff,
            watch_timeout: self.watch_timeout,
            idle_timeout: self.idle_timeout,
            known: HashMap::new(),
            tx,
        };
        tokio::spawn(async move {
            let closed = watch.tx.clone();
            tokio::select! {
                () = watch.run() => {}
                // The stream was dropped: stop watching.
                () = closed.closed() => {}
            }
        });
        tokio_stream::wrappers::ReceiverStream::new(rx).boxed()
    }
}

/// Whether the pod is a mirror pod (the API object standing for a static pod).
pub(crate) fn is_mirror_pod(pod: &Pod) -> bool {
    pod.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(labels::CONFIG_MIRROR))
}

/// Why a watch ended.
enum WatchEnd {
    /// Resume from the last resourceVersion (at once: the server closed it normally).
    Resume,
    /// Resume after a backoff delay.
    Failed,
    /// The resourceVersion is too old: list again.
    Gone,
    /// The consumer went away.
    Closed,
}

struct PodWatch {
    api: Api<Pod>,
    selector: String,
    origin: String,
    backoff: WatchBackoff,
    watch_timeout: Duration,
    idle_timeout: Duration,
    /// The pods last sent, by UID, so that deletes and re-adds are told apart from updates.
    known: HashMap<String, Pod>,
    tx: mpsc::Sender<PodUpdate>,
}

impl PodWatch {
    async fn run(mut self) {
        let mut delay = self.backoff.initial;
        loop {
            let resource_version = match self.list().await {
                Ok((pods, rv)) => {
                    delay = self.backoff.initial;
                    self.known = pods
                        .iter()
                        .filter_map(|p| Some((p.metadata.uid.clone()?, p.clone())))
                        .collect();
                    info!(pods = pods.len(), resource_version = %rv, "listed the node's pods");
                    if self.tx.send(PodUpdate::Snapshot(pods)).await.is_err() {
                        return;
                    }
                    rv
                }
                Err(err) => {
                    warn!(
                        error = %source_error(&self.origin, &err),
                        retry_in_ms = delay.as_millis() as u64,
                        "listing the node's pods failed; keeping the pods we have"
                    );
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(self.backoff.max);
                    continue;
                }
            };
            let mut rv = resource_version;
            loop {
                match self.watch(&mut rv).await {
                    WatchEnd::Resume => delay = self.backoff.initial,
                    WatchEnd::Failed => {
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(self.backoff.max);
                    }
                    WatchEnd::Gone => {
                        info!(resource_version = %rv, "watch too old (410 Gone); listing again");
                        break;
                    }
                    WatchEnd::Closed => return,
                }
            }
        }
    }

    /// All pods bound to the node (paged), without mirror pods, and the list's version.
    async fn list(&self) -> Result<(Vec<Pod>, String), kube::Error> {
        let mut pods = Vec::new();
        let mut params = ListParams::default()
            .fields(&self.selector)
            .limit(LIST_PAGE);
        loop {
            let page = self.api.list(&params).await?;
            let rv = page.metadata.resource_version.clone().unwrap_or_default();
            pods.extend(page.items.into_iter().filter_map(prepare));
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => params.continue_token = Some(token),
                None => return Ok((pods, rv)),
            }
        }
    }

    /// One watch request from `rv`, sending its events; `rv` follows what was seen.
    async fn watch(&mut self, rv: &mut String) -> WatchEnd {
        let params = WatchParams::default()
            .fields(&self.selector)
            .timeout(u32::try_from(self.watch_timeout.as_secs()).unwrap_or(u32::MAX));
        let stream = match self.api.watch(&params, rv).await {
            Ok(stream) => stream,
            Err(err) if status_code(&err) == Some(410) => return WatchEnd::Gone,
            Err(err) => {
                warn!(error = %message(&err), "watching the node's pods failed; keeping the pods we have");
                return WatchEnd::Failed;
            }
        };
        let mut stream = std::pin::pin!(stream);
        let mut saw_event = false;
        loop {
            let next = match tokio::time::timeout(self.idle_timeout, stream.try_next()).await {
                Ok(next) => next,
                Err(_) => {
                    warn!("the pod watch went quiet past its timeout; renewing it");
                    return WatchEnd::Resume;
                }
            };
            let event = match next {
                Ok(Some(event)) => event,
                Ok(None) => {
                    debug!(resource_version = %rv, "pod watch closed by the server; resuming");
                    // A watch closed before sending anything may be a server in trouble:
                    // back off rather than spin.
                    return if saw_event {
                        WatchEnd::Resume
                    } else {
                        WatchEnd::Failed
                    };
                }
                Err(err) => {
                    warn!(error = %message(&err), "the pod watch broke; resuming it");
                    return WatchEnd::Failed;
                }
            };
            saw_event = true;
            let update = match event {
                WatchEvent::Added(pod) | WatchEvent::Modified(pod) => {
                    track_version(rv, &pod);
                    self.upsert(pod)
                }
                WatchEvent::Deleted(pod) => {
                    track_version(rv, &pod);
                    let uid = pod.metadata.uid.clone().unwrap_or_default();
                    self.known.remove(&uid).map(|_| PodUpdate::Remove(uid))
                }
                WatchEvent::Bookmark(bookmark) => {
                    *rv = bookmark.metadata.resource_version;
                    None
                }
                WatchEvent::Error(status) if status.code == 410 => return WatchEnd::Gone,
                WatchEvent::Error(status) => {
                    warn!(code = status.code, reason = %status.reason, message = %status.message, "pod watch error");
                    return WatchEnd::Failed;
                }
            };
            if let Some(update) = update
                && self.tx.send(update).await.is_err()
            {
                return WatchEnd::Closed;
            }
        }
    }

    fn upsert(&mut self, pod: Pod) -> Option<PodUpdate> {
        let uid = pod.metadata.uid.clone()?;
        match prepare(pod) {
            Some(pod) => {
                let update = if self.known.contains_key(&uid) {
                    PodUpdate::Update(pod.clone())
                } else {
                    PodUpdate::Add(pod.clone())
                };
                self.known.insert(uid, pod);
                Some(update)
            }
            // A pod that turned into a mirror pod is not ours to run any more.
            None => self.known.remove(&uid).map(|_| PodUpdate::Remove(uid)),
        }
    }
}

fn track_version(rv: &mut String, pod: &Pod) {
    if let Some(v) = pod
        .metadata
        .resource_version
        .as_ref()
        .filter(|v| !v.is_empty())
    {
        rv.clone_from(v);
    }
}

/// Leaves out mirror pods and pods without a UID; marks the rest as coming from `api`.
fn prepare(mut pod: Pod) -> Option<Pod> {
    if is_mirror_pod(&pod) || pod.metadata.uid.as_deref().is_none_or(str::is_empty) {
        return None;
    }
    pod.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(labels::CONFIG_SOURCE.to_string(), SOURCE_API.to_string());
    Some(pod)
}
