//! The reconciler: sources -> mux -> pod workers -> runtime; runtime -> lifecycle events ->
//! workers -> status -> reporter.

pub mod backoff;
mod context;
mod dispatcher;
mod env;
mod images;
mod kubelet;
pub(crate) mod kubelet_state;
pub mod mux;
pub mod planner;
pub mod pleg;
pub mod qos;
pub mod spec;
pub mod state;
pub mod status;
mod sync;
mod terminate;
mod volumes;
mod worker;

pub use kubelet::{Kubelet, KubeletBuilder, KubeletConfig, KubeletError, KubeletHandle};
