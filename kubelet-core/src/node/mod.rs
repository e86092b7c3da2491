//! The node: its configuration, the machine's facts, capacity and allocatable, conditions,
//! and the [`NodeAgent`] that registers the Node, reports its status and renews its Lease
//! through the [`crate::NodeReporter`] seam.
//!
//! Attach it to a kubelet with [`crate::KubeletBuilder::node_status`], or run it alone.

mod agent;
pub mod conditions;
pub mod config;
pub mod machine;
pub mod resources;
pub mod status;
mod volumes_in_use;

pub use agent::{
    LEASE_INITIAL_BACKOFF, LEASE_MAX_BACKOFF, NodeAgent, NodeStatusHandle,
    REGISTRATION_INITIAL_BACKOFF, REGISTRATION_MAX_BACKOFF,
};
pub use conditions::NodePressure;
pub use config::{NodeConfig, NodeConfigError};
pub use machine::{HugePages, MachineInfo, MachineReader};
pub use resources::NodeResources;
pub use volumes_in_use::VolumesInUse;
