//! An example CSI node driver and its registrar, for tests and as a model for embedders
//! (feature `testing`).
//!
//! [`HostPathDriver`] is a hostpath-style driver: each volume is a directory under the
//! driver's state directory; `NodeStageVolume` bind-mounts it at the staging path,
//! `NodePublishVolume` bind-mounts the staging path at the target path (read-only when asked;
//! without a staging path, as for inline ephemeral volumes, the volume directory itself),
//! and the unstage/unpublish calls unmount. With the access type `Block` a volume is a
//! sparse backing file attached to a loop device (`losetup`) when staged (or published
//! without staging); stage and publish bind-mount the device node onto a file, and the loop
//! device is detached once the volume is neither staged nor published, or when the server
//! stops. It needs the privileges to mount (root). Faults
//! (a gRPC status, or a delay) can be injected per RPC, always or for the next N calls, and
//! the stage and publish requests are recorded for tests to inspect. [`Registrar`] serves
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

pub use driver::{Fault, HostPathDriver, HostPathOptions, RecordedRequest};
pub use registrar::{Registrar, RegistrarHandle};
pub use server::ServerHandle;

use std::path::{Path, PathBuf};

/// The loop devices whose backing file lies below `dir`, with their backing files: what a
/// test attached there (the driver's volumes, the kubelet's descriptor locks).
pub fn loop_devices_under(dir: &Path) -> Vec<(PathBuf, PathBuf)> {
    crate::volume::block::loop_device::list()
        .into_iter()
        .filter(|(_, backing)| backing.starts_with(dir))
        .collect()
}

/// Detach every loop device backed below `dir` (test cleanup, so that a failing test
/// leaks none); returns how many it detached.
pub fn detach_loop_devices_under(dir: &Path) -> usize {
    let mut detached = 0;
    // The kubelet's locks sit on top of the driver's devices: detach the newest first.
    let mut found = loop_devices_under(dir);
    found.reverse();
    for (device, _) in found {
        if crate::volume::block::loop_device::detach(&device).is_ok() {
            detached += 1;
        }
    }
    detached
}
