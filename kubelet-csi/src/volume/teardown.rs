//! Teardown of a pod's CSI volume: unpublish and remove its pod directory, then unstage
//! the volume once no pod directory on the node records it (the reference's
//! `UnmountVolume.TearDown` and `UnmountDevice`), and let it leave volumesInUse.

use std::path::Path;

use kubelet_core::error::VolumeError;
use tracing::{debug, info};

use super::data::VolData;
use super::{
    CsiVolumePlugin, LOG_PREFIX, io_error, paths, remove_volume_dir, rpc_error_text,
    teardown_failed, volume_key,
};

impl CsiVolumePlugin {
    /// Unpublish and remove one pod volume directory; unstage when it was the last user.
    pub(super) async fn teardown_dir(&self, volume: &str, dir: &Path) -> Result<(), VolumeError> {
        let target = paths::target_path(dir);
        let data = VolData::load(dir).map_err(|e| io_error(volume, dir, e))?;
        let Some(data) = data else {
            // Never set up, or a previous teardown got this far: only empty directories left.
            return remove_volume_dir(&*self.options.mounter, dir, &target)
                .map_err(|e| io_error(volume, dir, e));
        };
        let lock = self.volume_lock(&volume_key(&data.driver_name, &data.volume_handle));
        let _guard = lock.lock().await;
        if target.exists() || self.is_mount_point(&target) {
            let client = self.client_waiting(&data.driver_name).await.map_err(|m| {
                teardown_failed(
                    &data.spec_volume_id,
                    format!("{LOG_PREFIX}: Unmounter.TearDownAt failed to get CSI client: {m}"),
                )
            })?;
            client
                .node_unpublish_volume(&data.volume_handle, &target.display().to_string())
                .await
                .map_err(|e| teardown_failed(&data.spec_volume_id, rpc_error_text(&e)))?;
            info!(target = %target.display(), "volume unpublished");
        }
        remove_volume_dir(&*self.options.mounter, dir, &target)
            .map_err(|e| teardown_failed(&data.spec_volume_id, e))?;
        if !data.is_ephemeral() {
            self.unstage_if_unused(&data).await?;
        }
        Ok(())
    }

    /// Whether any pod directory on the node still records the volume.
    pub(super) fn in_use(&self, driver: &str, handle: &str) -> bool {
        let pods = self.options.root_dir.join("pods");
        for pod in std::fs::read_dir(&pods).into_iter().flatten().flatten() {
            let plugin_dir = paths::pod_plugin_dir(&pod.path());
            for vol in std::fs::read_dir(&plugin_dir)
                .into_iter()
                .flatten()
                .flatten()
            {
                match VolData::load(&vol.path()) {
                    Ok(Some(d)) if d.driver_name == driver && d.volume_handle == handle => {
                        return true;
                    }
                    Ok(_) => {}
                    // Unreadable: assume it may be a user, unstaging under a pod is worse.
                    Err(_) => return true,
                }
            }
        }
        false
    }

    pub(super) async fn unstage_if_unused(&self, data: &VolData) -> Result<(), VolumeError> {
        if self.in_use(&data.driver_name, &data.volume_handle) {
            debug!("volume still used by another pod; stays staged");
            return Ok(());
        }
        let device_dir = paths::device_dir(
            &self.options.root_dir,
            &data.driver_name,
            &data.volume_handle,
        );
        let staging = paths::staging_path(&device_dir);
        let unmount_device_failed = |detail: String| VolumeError::Mount {
            volume: data.pod_volume_name.clone(),
            message: format!(
                "UnmountDevice failed for volume {:?} : {detail}",
                data.spec_volume_id
            ),
        };
        if !device_dir.exists() {
            self.release_in_use(&data.driver_name, &data.volume_handle);
            return Ok(());
        }
        let client = self.client_waiting(&data.driver_name).await.map_err(|m| {
            unmount_device_failed(format!(
                "{LOG_PREFIX}: attacher.UnmountDevice failed to create newCsiDriverClient: {m}"
            ))
        })?;
        let caps = client
            .node_get_capabilities()
            .await
            .map_err(|e| unmount_device_failed(rpc_error_text(&e)))?;
        if caps.stage_unstage_volume {
            client
                .node_unstage_volume(&data.volume_handle, &staging.display().to_string())
                .await
                .map_err(|e| unmount_device_failed(rpc_error_text(&e)))?;
            info!(staging = %staging.display(), "volume unstaged");
        }
        self.staged()
            .remove(&volume_key(&data.driver_name, &data.volume_handle));
        remove_volume_dir(&*self.options.mounter, &device_dir, &staging)
            .map_err(|e| unmount_device_failed(e.to_string()))?;
        // The per-driver directory goes when its last volume does.
        if let Some(driver_dir) = device_dir.parent() {
            let _ = std::fs::remove_dir(driver_dir);
        }
        self.release_in_use(&data.driver_name, &data.volume_handle);
        Ok(())
    }
}
