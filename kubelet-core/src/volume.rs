//! The `VolumePlugin` seam: make a pod's volume present on the node, tear it down.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Pod, Volume};

use crate::error::VolumeError;

/// Where a volume's pod-level data lives on the node once set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountedVolume {
    /// Host path that containers bind-mount (sub-paths are resolved below it).
    pub host_path: PathBuf,
    /// Whether the volume must be mounted read-only whatever the container asks.
    pub read_only: bool,
}

/// Where a pod's volume directories live: `<root>/pods/<uid>/volumes/<plugin>/<name>`,
/// as the reference kubelet lays them out.
#[derive(Debug, Clone, Copy)]
pub struct VolumeContext<'a> {
    /// The pod the volume belongs to.
    pub pod: &'a Pod,
    /// `<root-dir>/pods/<uid>`.
    pub pod_dir: &'a Path,
}

/// A volume type handler: built-ins (emptyDir, hostPath, ...) in core, CSI in `kubelet-csi`.
#[async_trait]
pub trait VolumePlugin: Send + Sync + 'static {
    /// Plugin name, as the reference names them (e.g. `kubernetes.io/empty-dir`).
    fn name(&self) -> &str;
    /// Whether this plugin handles the given volume.
    fn can_support(&self, volume: &Volume) -> bool;
    /// Make the volume present and return the host path to mount. Must be idempotent: it is
    /// called on every pod sync.
    async fn setup(
        &self,
        ctx: &VolumeContext<'_>,
        volume: &Volume,
    ) -> Result<MountedVolume, VolumeError>;
    /// Remove what `setup` made. Must be idempotent and tolerate a volume never set up.
    async fn teardown(
        &self,
        pod_uid: &str,
        pod_dir: &Path,
        volume_name: &str,
    ) -> Result<(), VolumeError>;
}
