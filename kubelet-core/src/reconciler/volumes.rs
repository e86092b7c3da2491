//! Setting up and tearing down a pod's volumes through the volume plugins.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use tracing::warn;

use super::worker::PodWorker;
use crate::error::VolumeError;
use crate::volume::{MountedVolume, VolumeContext};

impl PodWorker {
    /// Set up every volume of the pod; the host paths by volume name.
    pub(super) async fn setup_volumes(
        &self,
        pod: &Pod,
    ) -> Result<BTreeMap<String, MountedVolume>, VolumeError> {
        let mut mounted = BTreeMap::new();
        let volumes = pod
            .spec
            .as_ref()
            .and_then(|s| s.volumes.as_deref())
            .unwrap_or(&[]);
        if volumes.is_empty() {
            return Ok(mounted);
        }
        let pod_dir = self.pod_dir();
        let ctx = VolumeContext {
            pod,
            pod_dir: &pod_dir,
        };
        for volume in volumes {
            let plugin = self
                .ctx
                .volume_plugins
                .iter()
                .find(|p| p.can_support(volume))
                .ok_or_else(|| VolumeError::Unsupported(volume.name.clone()))?;
            let m = plugin.setup(&ctx, volume).await?;
            mounted.insert(volume.name.clone(), m);
        }
        Ok(mounted)
    }

    /// Tear down the pod's volumes: those of its spec, or for an orphan every volume
    /// directory left below the pod directory, offered to each plugin.
    pub(super) async fn teardown_volumes(&self, pod: Option<&Pod>) {
        let pod_dir = self.pod_dir();
        let names: Vec<String> = match pod {
            Some(p) => p
                .spec
                .as_ref()
                .and_then(|s| s.volumes.as_ref())
                .map(|vs| vs.iter().map(|v| v.name.clone()).collect())
                .unwrap_or_default(),
            None => orphan_volume_names(&pod_dir.join("volumes")),
        };
        for name in names {
            for plugin in &self.ctx.volume_plugins {
                if let Err(err) = plugin.teardown(&self.uid, &pod_dir, &name).await {
                    warn!(volume = %name, plugin = plugin.name(), error = %err, "volume teardown failed");
                }
            }
        }
    }
}

/// `<pod dir>/volumes/<plugin>/<name>` directory names.
fn orphan_volume_names(volumes_dir: &std::path::Path) -> Vec<String> {
    let mut names = Vec::new();
    for plugin_dir in std::fs::read_dir(volumes_dir)
        .into_iter()
        .flatten()
        .flatten()
    {
        for vol in std::fs::read_dir(plugin_dir.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            names.push(vol.file_name().to_string_lossy().into_owned());
        }
    }
    names
}
