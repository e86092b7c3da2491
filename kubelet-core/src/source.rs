//! The `PodSource` seam: a stream of desired-pod updates from one origin.

use futures::stream::BoxStream;
use k8s_openapi::api::core::v1::Pod;

/// Name of the static-file source (`kubernetes.io/config.source` annotation value).
pub const SOURCE_FILE: &str = "file";
/// Name of the manifest-URL source.
pub const SOURCE_HTTP: &str = "http";
/// Name of the API-server source.
pub const SOURCE_API: &str = "api";

/// One change from a source. A source may send only snapshots (file, URL) or a snapshot
/// followed by incremental changes (API server watch).
#[derive(Debug, Clone)]
pub enum PodUpdate {
    /// The complete set of pods this source wants now; pods of this source not in it go.
    Snapshot(Vec<Pod>),
    /// A new pod.
    Add(Pod),
    /// A changed pod (same UID).
    Update(Pod),
    /// A pod removed from the source (by UID).
    Remove(String),
}

/// An origin of desired pods: static manifest directory, manifest URL, API server.
///
/// Pods coming out of a source carry a UID and the `kubernetes.io/config.source` annotation;
/// pods that do not parse or validate are reported by the source (with file and field) and
/// left out, never sent.
pub trait PodSource: Send + 'static {
    /// The source's name (`file`, `http`, `api`, or an embedder's own).
    fn name(&self) -> &str;
    /// Start watching; the stream ends only when the source gives up for good.
    fn updates(self: Box<Self>) -> BoxStream<'static, PodUpdate>;
}
