//! An example CSI node driver and its registrar, for tests and as a model for embedders
//! (feature `testing`).
//!
//! [`HostPathDriver`] is a hostpath-style driver: each volume is a directory under the
//! driver's state directory; `NodeStageVolume` bind-mounts it at the staging path,
//! `NodePublishVolume` bind-mounts the staging path at the target path (read-only when asked),
//! and the unstage/unpublish calls unmount. It needs the privileges to mount (root). Faults
//! (a gRPC status, or a delay) can be injected per RPC. [`Registrar`] serves
//! `pluginregistration.Registration` on a socket, as node-driver-registrar does, and records
//! the kubelet's `NotifyRegistrationStatus` answers.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use kubelet_csi::testing::{HostPathDriver, HostPathOptions, Registrar};
//!
//! let dir = std::path::Path::new("/var/lib/kubelet");
//! let driver = HostPathDriver::new(HostPathOptions::new("hostpath.csi.example", "node-1", dir.join("hostpath")));
//! let server = driver.serve(&dir.join("plugins/hostpath/csi.sock")).await?;
//! let registrar = Registrar::csi("hostpath.csi.example", server.socket())
//!     .serve(&dir.join("plugins_registry/hostpath.csi.example-reg.sock"))
//!     .await?;
//! # drop((server, registrar)); Ok(()) }
//! ```

mod driver;
mod registrar;
mod server;

pub use driver::{Fault, HostPathDriver, HostPathOptions};
pub use registrar::{Registrar, RegistrarHandle};
pub use server::ServerHandle;
