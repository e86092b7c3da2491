//! The API-server backed [`crate::PodSource`] and [`crate::NodeReporter`], over kube-rs
//! (feature `apiserver`, on by default).
//!
//! The kubelet acts as `system:node:<name>`: under the Node authorizer and NodeRestriction
//! admission it may read and write only its own Node and Lease, the pods bound to it and
//! their status, the secrets, configmaps and service account tokens those pods use, mirror
//! pods of its static pods, and events. Everything here asks for no more than that.
//!
//! - [`NodeClient`]: the client, from `--kubeconfig` or the in-cluster service account.
//! - [`ApiServerSource`]: the node's pods by list+watch.
//! - [`ApiServerReporter`]: Node, node status, Lease, pod status, mirror pods, deletion,
//!   events.
//! - [`PodObjectFetcher`]: ConfigMaps, Secrets and ServiceAccount tokens with a cache, and
//!   Services from a [`ServiceCache`] watch: the [`crate::objects::PodObjects`] of a cluster.

mod client;
mod error;
mod events;
mod fetch;
mod lease;
mod node;
mod pods;
mod reporter;
mod runtime_classes;
mod services;
mod source;
mod volumes;

pub use client::{ClientSource, NodeClient};
pub use error::{ApiClientError, FetchError};
pub use events::EVENT_COMPONENT;
pub use fetch::{
    BoundPod, DEFAULT_OBJECT_TTL, MIN_TOKEN_EXPIRATION, PodObjectFetcher, ServiceAccountToken,
    TokenKey,
};
pub use reporter::{
    ApiServerReporter, DEFAULT_LEASE_DURATION_SECONDS, DEFAULT_SYNC_PERIOD, NODE_LEASE_NAMESPACE,
    ReporterConfig,
};
pub use runtime_classes::{ApiRuntimeClasses, DEFAULT_RUNTIME_CLASS_TTL};
pub use services::ServiceCache;
pub use source::{ApiServerSource, WatchBackoff};
pub use volumes::{
    API_OBJECT_PLUGIN_NAME, ApiObjectVolumePlugin, DEFAULT_FILE_MODE, DEFAULT_TOKEN_EXPIRATION,
};

#[cfg(test)]
mod tests;
