//! Built-in volume plugins that need nothing but the node: `emptyDir` and `hostPath`.
//! (configMap, secret, downwardAPI and projected need the API server; CSI is in
//! `kubelet-csi`.)

mod empty_dir;
mod host_path;

pub use empty_dir::EmptyDirPlugin;
pub use host_path::HostPathPlugin;

use std::sync::Arc;

use crate::volume::VolumePlugin;

/// The built-in plugins, as the kubelet registers them by default.
pub fn builtin() -> Vec<Arc<dyn VolumePlugin>> {
    vec![Arc::new(EmptyDirPlugin), Arc::new(HostPathPlugin)]
}

fn io_error(volume: &str, path: &std::path::Path, source: std::io::Error) -> crate::VolumeError {
    crate::VolumeError::Io {
        volume: volume.to_string(),
        path: path.to_path_buf(),
        source,
    }
}
