//! `kubelet-core`: the heart of a Kubernetes node agent, as a library.
//!
//! It holds the five seams ([`Runtime`], [`VolumePlugin`], [`NetworkPlugin`], [`PodSource`],
//! [`NodeReporter`]) and where the objects pods name come from ([`objects::PodObjects`]:
//! ConfigMaps, Secrets, Services), the generic reconciler that drives them ([`Kubelet`]) with pod status,
//! [`probes`] and lifecycle hooks, the pod sources for static manifest directories and
//! manifest URLs, the API-server source and reporter ([`apiserver`], default feature
//! `apiserver`, over kube-rs) with the [`strategic_merge`] patches it sends, and the [`node`]
//! agent (registration, node status, Lease), [`stats`], node-pressure [`eviction`]
//! ([`Kubelet::with_stats`]) and pod [`admission`], and the kubelet's HTTPS API server
//! (`server`, default feature `server`: TLS, authentication, authorization, `/pods`,
//! `/containerLogs`...). Backends live in their own crates
//! (`kubelet-cri`, `kubelet-cni`, `kubelet-csi`); the `testing` feature adds an in-memory
//! fake runtime, a fake kube-apiserver, an envtest harness that starts a real one, a channel
//! source and a recording reporter.
//!
//! ```no_run
//! # #[cfg(feature = "testing")]
//! # async fn demo() -> Result<(), kubelet_core::KubeletError> {
//! use std::sync::Arc;
//! use kubelet_core::testing::{FakeRuntime, RecordingReporter, ChannelSource};
//! use kubelet_core::{Kubelet, KubeletConfig, RuntimeManagedNetwork};
//!
//! let (source, _pods) = ChannelSource::new("api");
//! let kubelet = Kubelet::builder(KubeletConfig::new("node-1"))
//!     .runtime(Arc::new(FakeRuntime::new()))
//!     .network(Arc::new(RuntimeManagedNetwork))
//!     .reporter(Arc::new(RecordingReporter::default()))
//!     .source(Box::new(source))
//!     .build()?;
//! kubelet.run(std::future::pending()).await
//! # }
//! ```

pub mod admission;
#[cfg(feature = "apiserver")]
pub mod apiserver;
pub mod cgroups;
pub mod downward_api;
pub mod error;
pub mod eviction;
pub mod go_duration;
pub mod image_credentials;
pub mod image_gc;
pub mod labels;
pub mod log_reporter;
pub mod logs;
pub mod metrics;
pub mod network;
pub mod node;
pub mod objects;
pub mod probes;
pub mod quantity;
pub mod reconciler;
pub mod reporter;
pub mod runtime;
pub mod runtime_class;
#[cfg(feature = "server")]
pub mod server;
pub mod source;
pub mod sources;
pub mod stats;
pub mod strategic_merge;
#[cfg(feature = "server")]
pub mod streaming;
pub mod volume;
pub mod volume_plugins;

#[cfg(feature = "testing")]
pub mod testing;

#[cfg(feature = "apiserver")]
pub use apiserver::{ApiServerReporter, ApiServerSource, NodeClient};

/// The Kubernetes release this crate is written against (k8s-openapi's newest API): the
/// `kube-probe/<major>.<minor>` User-Agent of HTTP probes and the node's `kubeletVersion`
/// derive from it.
pub const KUBERNETES_VERSION: (u32, u32, u32) = (1, 37, 0);

/// What the node reports as `nodeInfo.kubeletVersion`: [`KUBERNETES_VERSION`] with this
/// crate's version as build metadata, so that `kubectl get nodes` tells it apart from the
/// reference kubelet.
pub fn kubelet_version() -> String {
    let (major, minor, patch) = KUBERNETES_VERSION;
    format!(
        "v{major}.{minor}.{patch}+kubelet-rs.{}",
        env!("CARGO_PKG_VERSION")
    )
}
pub use error::{NetworkError, ReportError, RuntimeError, SourceError, VolumeError};
pub use network::{NetworkContext, NetworkPlugin, PodNetworkStatus, RuntimeManagedNetwork};
pub use reconciler::{Kubelet, KubeletBuilder, KubeletConfig, KubeletError, KubeletHandle};
pub use reporter::{EventType, KubeletEvent, NodeReporter};
pub use runtime::Runtime;
pub use source::{PodSource, PodUpdate};
pub use sources::{ManifestUrlSource, StaticDirSource};
pub use volume::{MountedVolume, VolumeContext, VolumePlugin};

/// Re-export of the Kubernetes API types this crate speaks, so that embedders use the same
/// version.
pub use k8s_openapi;
