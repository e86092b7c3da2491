//! The reconciler: sources -> mux -> pod workers -> runtime; runtime -> lifecycle events ->
//! workers -> status -> reporter.

pub mod active_deadline;
pub mod backoff;
mod container_gc;
mod context;
mod dispatcher;
pub mod dns;
pub mod env;
pub mod etc_hosts;
mod eviction;
mod images;
mod kubelet;
pub(crate) mod kubelet_state;
pub mod mux;
mod node_eviction;
mod orphan_dirs;
pub mod planner;
pub mod pleg;
pub mod pod_resources;
mod pod_settings;
pub mod qos;
pub mod security;
pub mod spec;
pub mod state;
pub mod status;
mod sub_paths;
mod sync;
mod terminate;
pub mod termination_message;
mod volumes;
mod worker;

pub use kubelet::{Kubelet, KubeletBuilder, KubeletConfig, KubeletError, KubeletHandle};
