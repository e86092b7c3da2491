//! `kubelet-csi`: the kubelet's half of the Container Storage Interface.
//!
//! - [`proto`]: the CSI v1 node-side API (`csi.v1` Identity and Node services) and the kubelet
//!   plugin registration API (`pluginregistration.Registration`), compiled from the crate's
//!   own protos with the upstream field numbers.
//! - [`CsiClient`]: a driver's Identity and Node services over its unix socket, every call
//!   bounded by a timeout, failures typed as [`CsiError`] and classified as the reference
//!   kubelet does: *final* (the operation failed) or *uncertain* (it may still be in progress;
//!   see [`error`]).
//! - [`PluginWatcher`]: watches `<root-dir>/plugins_registry/` for registrar sockets,
//!   registers the CSI drivers behind them (type and 1.x version checked, `NodeGetInfo`
//!   called, `NotifyRegistrationStatus` answered) into a [`DriverRegistry`], which hands out
//!   clients and a stream of [`DriverEvent`]s (for the CSINode updater); a driver whose
//!   socket goes away is forgotten.
//! - [`CsiNodeUpdater`]: follows the registry and keeps the node's objects as the reference's
//!   CSI node-info manager does: the `CSINode` named after the node (created owned by the
//!   Node; one entry per driver with its node ID, topology keys and volume limit), the Node's
//!   `csi.volume.kubernetes.io/nodeid` annotation and the drivers' topology labels.
//! - `testing` (feature): a hostpath-style example driver and its registrar, serving real
//!   gRPC on unix sockets.
//!
//! - [`CsiVolumePlugin`]: kubelet-core's `VolumePlugin` for CSI: inline ephemeral CSI
//!   volumes, PVC-backed CSI volumes and generic ephemeral volumes, staged once per node and
//!   published per pod as the reference lays them out (see [`volume`]), reading the
//!   CSIDriver, PVC, PV, VolumeAttachment and Secrets and asking for service account tokens
//!   through [`CsiObjects`] ([`ApiCsiObjects`] over the API server).
//!
//! ```no_run
//! use kubelet_csi::{CsiClientOptions, DriverEvent, DriverRegistry, PluginWatcher, PluginWatcherOptions};
//!
//! # async fn demo() -> Result<(), kubelet_csi::CsiError> {
//! let registry = DriverRegistry::new();
//! let mut events = registry.subscribe();
//! let options = PluginWatcherOptions::for_root_dir("/var/lib/kubelet".as_ref());
//! let _watcher = PluginWatcher::new(options, registry.clone()).spawn()?;
//! while let Ok(DriverEvent::Registered(driver)) = events.recv().await {
//!     println!("{} on {} (node ID {})", driver.name, driver.endpoint, driver.node.node_id);
//!     let client = registry.client(&driver.name, CsiClientOptions::default())?;
//!     let caps = client.node_get_capabilities().await?;
//!     println!("stages volumes: {}", caps.stage_unstage_volume);
//! }
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod client;
pub mod csinode;
pub mod endpoint;
pub mod error;
pub mod objects;
pub mod proto;
pub mod registration;
pub mod registry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod volume;
pub mod watcher;

pub use client::{
    CsiClient, CsiClientOptions, NodeCapabilities, NodeInfo, Usage, VolumeStats, block_capability,
    mount_capability,
};
pub use csinode::{CsiNodeError, CsiNodeUpdater, CsiNodeUpdaterOptions};
pub use error::CsiError;
pub use objects::{ApiCsiObjects, CsiObjects};
pub use registration::{
    CSI_PLUGIN_TYPE, CsiVersion, RegistrationClient, highest_supported_version,
};
pub use registry::{DriverEvent, DriverRegistry, RegisteredDriver};
pub use volume::{CSI_PLUGIN_NAME, CsiVolumeOptions, CsiVolumePlugin};
pub use watcher::{PLUGINS_REGISTRY_DIR, PluginWatcher, PluginWatcherHandle, PluginWatcherOptions};
