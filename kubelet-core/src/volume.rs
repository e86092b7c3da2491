//! The `VolumePlugin` seam: make a pod's volume present on the node, tear it down.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Pod, Volume};

use crate::downward_api::NodeAllocatable;
use crate::error::VolumeError;

pub use crate::volume_plugins::{FakeMounter, HostMounter, Mounter};

/// Where a volume's pod-level data lives on the node once set up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MountedVolume {
    /// Host path that containers bind-mount (sub-paths are resolved below it).
    pub host_path: PathBuf,
    /// Whether the volume must be mounted read-only whatever the container asks.
    pub read_only: bool,
    /// The size the volume may use on the node's disk (an on-disk `emptyDir`'s
    /// `sizeLimit`), which the pod worker enforces by eviction; memory-backed volumes are limited by
    /// their tmpfs size instead and leave it `None`.
    pub size_limit_bytes: Option<u64>,
    /// Set when the volume is a raw block device (a PersistentVolume with `volumeMode:
    /// Block`): the host path of the device node, or of a symlink to it (the reference's
    /// pod device map path, `<pod-dir>/volumeDevices/<plugin>/<name>`). Containers get it as
    /// a device through `volumeDevices`, never as a bind mount: a `volumeMounts` entry
    /// naming it is an error, as is a `volumeDevices` entry naming a volume without it.
    /// Filesystem volumes leave it `None`.
    pub block_device: Option<PathBuf>,
}

/// Where a pod's volume directories live: `<root>/pods/<uid>/volumes/<plugin>/<name>`,
/// as the reference kubelet lays them out, and what the node offers.
#[derive(Debug, Clone, Copy)]
pub struct VolumeContext<'a> {
    /// The pod the volume belongs to.
    pub pod: &'a Pod,
    /// `<root-dir>/pods/<uid>`.
    pub pod_dir: &'a Path,
    /// The node's allocatable resources: the downward-API value of a `limits.*` the
    /// container leaves unset, and the size of memory-backed volumes of pods without a
    /// memory limit. Zeros mean unknown.
    pub node_allocatable: NodeAllocatable,
}

impl<'a> VolumeContext<'a> {
    /// The context of `pod`'s volumes below `pod_dir`, with the node's allocatable unknown.
    pub fn new(pod: &'a Pod, pod_dir: &'a Path) -> Self {
        Self {
            pod,
            pod_dir,
            node_allocatable: NodeAllocatable::default(),
        }
    }

    /// The same, with the node's allocatable resources.
    pub fn with_node_allocatable(mut self, node_allocatable: NodeAllocatable) -> Self {
        self.node_allocatable = node_allocatable;
        self
    }
}

/// A volume type handler: built-ins (emptyDir, hostPath, ...) in core, CSI in `kubelet-csi`.
#[async_trait]
pub trait VolumePlugin: Send + Sync + 'static {
    /// Plugin name, as the reference names them (e.g. `kubernetes.io/empty-dir`).
    fn name(&self) -> &str;
    /// The directories below `<pod-dir>/volumes/` this plugin's volumes live in: by default
    /// its name escaped as the reference does (`kubernetes.io/csi` -> `kubernetes.io~csi`).
    /// A volume found there with no pod to name it (a pod removed while the kubelet was
    /// down) is torn down through this plugin.
    fn pod_volume_dirs(&self) -> Vec<String> {
        vec![escape_plugin_name(self.name())]
    }
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

/// A plugin name as a directory name, as the reference escapes qualified names: each `/`
/// becomes `~` (`kubernetes.io/empty-dir` -> `kubernetes.io~empty-dir`).
pub fn escape_plugin_name(name: &str) -> String {
    name.replace('/', "~")
}
