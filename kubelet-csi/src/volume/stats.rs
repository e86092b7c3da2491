//! The CSI volumes' usage, from their drivers (`NodeGetVolumeStats`), for `/stats/summary`
//! and the `kubelet_volume_stats_*` metrics: the plugin is a
//! [`VolumeStatsSource`](kubelet_core::stats::VolumeStatsSource), as the reference's CSI
//! metrics provider.
//!
//! A driver without the `GET_VOLUME_STATS` capability leaves its volumes out, as in the
//! reference. Block volumes are not measured here.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Pod, Volume};
use kubelet_core::stats::VolumeStatsSource;
use kubelet_core::stats::summary::{FsStats, PvcReference, Time, VolumeStats};
use tracing::debug;

use super::data::VolData;
use super::{CsiVolumePlugin, paths, pod_name, pod_namespace, pod_uid};
use crate::client::Usage;

/// Which claim each pod volume is backed by, as last seen in the pod's spec: the summary
/// names the claim (`pvcRef`), which `vol_data.json` does not record.
#[derive(Debug, Default)]
pub(super) struct Claims(Mutex<HashMap<(String, String), PvcReference>>);

impl Claims {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), PvcReference>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Note the claim of `volume` of `pod` (a PVC, or the PVC of a generic ephemeral
    /// volume, `<pod>-<volume>`); inline volumes have none.
    pub(super) fn remember(&self, pod: &Pod, volume: &Volume) {
        let name = if let Some(pvc) = &volume.persistent_volume_claim {
            pvc.claim_name.clone()
        } else if volume.ephemeral.is_some() {
            format!("{}-{}", pod_name(pod), volume.name)
        } else {
            return;
        };
        let claim = PvcReference {
            name,
            namespace: pod_namespace(pod).to_string(),
        };
        self.lock()
            .insert((pod_uid(pod).to_string(), volume.name.clone()), claim);
    }

    /// Forget the claim of a pod's volume once it is torn down.
    pub(super) fn forget(&self, pod_uid: &str, volume_name: &str) {
        self.lock()
            .remove(&(pod_uid.to_string(), volume_name.to_string()));
    }

    fn get(&self, pod_uid: &str, volume_name: &str) -> Option<PvcReference> {
        self.lock()
            .get(&(pod_uid.to_string(), volume_name.to_string()))
            .cloned()
    }
}

/// The summary's numbers from a driver's answer: bytes and inodes, each as far as given.
fn fs_stats(bytes: Option<&Usage>, inodes: Option<&Usage>, time: Time) -> FsStats {
    let non_negative = |v: i64| u64::try_from(v).ok();
    FsStats {
        time,
        available_bytes: bytes.and_then(|u| non_negative(u.available)),
        capacity_bytes: bytes.and_then(|u| non_negative(u.total)),
        used_bytes: bytes.and_then(|u| non_negative(u.used)),
        inodes_free: inodes.and_then(|u| non_negative(u.available)),
        inodes: inodes.and_then(|u| non_negative(u.total)),
        inodes_used: inodes.and_then(|u| non_negative(u.used)),
    }
}

#[async_trait]
impl VolumeStatsSource for CsiVolumePlugin {
    async fn pod_volume_stats(&self, pod_uid: &str, pod_dir: &Path) -> Vec<VolumeStats> {
        let mut out = Vec::new();
        let dirs = std::fs::read_dir(paths::pod_plugin_dir(pod_dir));
        for entry in dirs.into_iter().flatten().flatten() {
            let dir = entry.path();
            let Ok(Some(data)) = VolData::load(&dir) else {
                continue;
            };
            let target = paths::target_path(&dir);
            if !self.is_mount_point(&target) {
                continue;
            }
            let name = if data.pod_volume_name.is_empty() {
                data.spec_volume_id.clone()
            } else {
                data.pod_volume_name.clone()
            };
            let Ok(client) = self.client(&data.driver_name) else {
                continue;
            };
            match client.node_get_capabilities().await {
                Ok(caps) if caps.get_volume_stats => {}
                Ok(_) => continue,
                Err(e) => {
                    debug!(driver = %data.driver_name, error = %e, "NodeGetCapabilities failed; volume not measured");
                    continue;
                }
            }
            let stats = client
                .node_get_volume_stats(&data.volume_handle, &target.display().to_string(), None)
                .await;
            match stats {
                Ok(stats) => out.push(VolumeStats {
                    fs: fs_stats(stats.bytes.as_ref(), stats.inodes.as_ref(), Time::now()),
                    pvc_ref: self.claims.get(pod_uid, &name),
                    name,
                }),
                Err(e) => {
                    debug!(pod_uid, volume = %name, error = %e, "NodeGetVolumeStats failed");
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_maps_onto_the_summary_fields() {
        let bytes = Usage {
            available: 700,
            total: 1000,
            used: 300,
        };
        let inodes = Usage {
            available: 90,
            total: 100,
            used: 10,
        };
        let fs = fs_stats(Some(&bytes), Some(&inodes), Time(5));
        assert_eq!(
            fs,
            FsStats {
                time: Time(5),
                available_bytes: Some(700),
                capacity_bytes: Some(1000),
                used_bytes: Some(300),
                inodes_free: Some(90),
                inodes: Some(100),
                inodes_used: Some(10),
            }
        );
        // A driver that reports no inodes, and a nonsense negative number, leave them out.
        let odd = Usage {
            available: -1,
            total: 1000,
            used: 300,
        };
        let fs = fs_stats(Some(&odd), None, Time(5));
        assert_eq!(fs.available_bytes, None);
        assert_eq!(fs.inodes, None);
        assert_eq!(fs.used_bytes, Some(300));
    }

    #[test]
    fn claims_of_pvc_and_generic_ephemeral_volumes() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "shop", "uid": "u1"},
            "spec": {"containers": [], "volumes": [
                {"name": "data", "persistentVolumeClaim": {"claimName": "data-claim"}},
                {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}},
                {"name": "inline", "csi": {"driver": "d"}}
            ]}
        }))
        .expect("pod");
        let claims = Claims::default();
        for v in pod
            .spec
            .as_ref()
            .and_then(|s| s.volumes.as_ref())
            .into_iter()
            .flatten()
        {
            claims.remember(&pod, v);
        }
        let claim = |name: &str| claims.get("u1", name).map(|c| (c.namespace, c.name));
        assert_eq!(claim("data"), Some(("shop".into(), "data-claim".into())));
        assert_eq!(
            claim("scratch"),
            Some(("shop".into(), "web-scratch".into()))
        );
        assert_eq!(claim("inline"), None);
        claims.forget("u1", "data");
        assert_eq!(claim("data"), None);
    }
}
