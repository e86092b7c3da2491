//! The node's half of the attach/detach controller's handshake for attachable CSI volumes
//! (those whose CSIDriver says `attachRequired`, the default), as the reference's volume
//! manager does it:
//!
//! - a PV-backed volume of an attachable driver is marked in the node's
//!   [`VolumesInUse`] (reported in `node.status.volumesInUse` by the node agent) from the
//!   first setup that wants it until no pod uses it and it is unstaged;
//! - before the first mount, the reference's `VerifyControllerAttachedVolume`: the volume
//!   must have been reported in a node status the API server accepted, and the
//!   attach/detach controller must list it in the Node's `status.volumesAttached`; only then
//!   the VolumeAttachment is waited for;
//! - a restarted kubelet marks the volumes it finds on disk (published in a pod directory,
//!   or staged), so that its first status does not take them out of `volumesInUse` while
//!   they are still mounted.
//!
//! Differences from the reference: its node status carries a new volume at the next
//! `nodeStatusUpdateFrequency` tick and its mount retries until then; our node agent sends
//! a status as soon as the set changes, and a setup waits for that report (up to
//! [`super::DEFAULT_IN_USE_REPORT_WAIT`]) rather than failing its first attempt. Its
//! verification failures are logged only (no event); ours return an error the pod worker
//! turns into a `FailedMount` event, with the reference's log wording.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use k8s_openapi::api::core::v1::Pod;
use kubelet_core::error::VolumeError;
use kubelet_core::node::VolumesInUse;
use tracing::{debug, info};

use super::data::VolData;
use super::paths;
use super::spec::CsiVolumeSpec;
use crate::objects::CsiObjects;

/// The unique volume name the reference reports for a CSI volume (in `volumesInUse` and
/// the attach/detach controller's `volumesAttached`):
/// `kubernetes.io/csi/<driver>^<volumeHandle>`.
pub fn unique_volume_name(driver: &str, volume_handle: &str) -> String {
    format!("{}/{driver}^{volume_handle}", super::CSI_PLUGIN_NAME)
}

/// A volume by driver and handle.
type VolumeId = (String, String);

/// The plugin's marks in the node's [`VolumesInUse`].
#[derive(Debug)]
pub(super) struct InUse {
    volumes: VolumesInUse,
    /// What pods want (the reference's desired state of the world): (pod UID, the pod's
    /// volume name) to the volume. Its lock also makes "nobody uses it, unmark" atomic
    /// against a new user marking it.
    desired: Mutex<HashMap<(String, String), VolumeId>>,
}

impl InUse {
    pub(super) fn new(volumes: VolumesInUse) -> Self {
        InUse {
            volumes,
            desired: Mutex::default(),
        }
    }

    fn desired(&self) -> MutexGuard<'_, HashMap<(String, String), VolumeId>> {
        self.desired.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `pod_uid`'s volume `pod_volume` is the attachable volume `handle` of `driver`.
    pub(super) fn want(&self, pod_uid: &str, pod_volume: &str, driver: &str, handle: &str) {
        let mut desired = self.desired();
        desired.insert(
            (pod_uid.to_string(), pod_volume.to_string()),
            (driver.to_string(), handle.to_string()),
        );
        self.volumes.mark(&unique_volume_name(driver, handle));
    }

    /// The driver turned out not to need attachment: the volume is not reported.
    pub(super) fn not_attachable(&self, driver: &str, handle: &str) {
        let mut desired = self.desired();
        desired.retain(|_, (d, h)| d != driver || h != handle);
        self.volumes.unmark(&unique_volume_name(driver, handle));
    }

    /// The pod no longer wants its volume `pod_volume`; the volume it named, if any.
    pub(super) fn forget(&self, pod_uid: &str, pod_volume: &str) -> Option<VolumeId> {
        self.desired()
            .remove(&(pod_uid.to_string(), pod_volume.to_string()))
    }

    /// Unmark the volume unless a pod wants it or `on_node()` says it is still published
    /// or staged here.
    pub(super) fn release_unless(
        &self,
        driver: &str,
        handle: &str,
        on_node: impl FnOnce() -> bool,
    ) {
        let desired = self.desired();
        if desired.values().any(|(d, h)| d == driver && h == handle) {
            return;
        }
        let name = unique_volume_name(driver, handle);
        if !self.volumes.contains(&name) || on_node() {
            return;
        }
        self.volumes.unmark(&name);
        info!(volume = %name, "volume no longer in use on the node");
    }

    /// Mark what a previous kubelet left published in pod directories or staged below
    /// `<root>/plugins/kubernetes.io/csi` (persistent volumes only: inline volumes are
    /// never attached). Whether their drivers need attachment is not known without the
    /// API server; they count as attachable until a pod's sync or their teardown says
    /// otherwise, since reporting an unattachable volume in use is harmless and dropping
    /// an attached one is not.
    pub(super) fn reconstruct(&self, root_dir: &Path) {
        let mut found = Vec::new();
        let mut consider = |dir: &Path| {
            if let Ok(Some(data)) = VolData::load(dir)
                && !data.is_ephemeral()
                && !data.driver_name.is_empty()
                && !data.volume_handle.is_empty()
            {
                found.push(unique_volume_name(&data.driver_name, &data.volume_handle));
            }
        };
        for pod in subdirs(&root_dir.join("pods")) {
            for volume in subdirs(&paths::pod_plugin_dir(&pod)) {
                consider(&volume);
            }
        }
        for driver in subdirs(&root_dir.join(paths::NODE_PLUGIN_DIR)) {
            for device in subdirs(&driver) {
                consider(&device);
            }
        }
        for name in found {
            debug!(volume = %name, "volume found on the node: in use");
            self.volumes.mark(&name);
        }
    }
}

fn subdirs(dir: &Path) -> impl Iterator<Item = std::path::PathBuf> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
}

/// `<prefix> for volume "<spec name>" (UniqueName: "<name>") pod "<pod>" (UID: "<uid>")`,
/// the reference's detailed wording of a volume operation's error.
fn verify_error(
    spec: &CsiVolumeSpec,
    pod: &Pod,
    prefix: &str,
    detail: Option<String>,
) -> VolumeError {
    let name = unique_volume_name(&spec.driver, &spec.volume_handle);
    let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    let suffix = detail.map(|d| format!(": {d}")).unwrap_or_default();
    VolumeError::Mount {
        volume: spec.pod_volume_name.clone(),
        message: format!(
            "{prefix} for volume {:?} (UniqueName: {name:?}) pod {pod_name:?} (UID: {uid:?}){suffix}",
            spec.spec_name
        ),
    }
}

/// The reference's `VerifyControllerAttachedVolume` for a controller-attached volume:
/// reported in use, then listed in the Node's `status.volumesAttached`.
pub(super) async fn verify_controller_attached(
    in_use: &InUse,
    objects: &dyn CsiObjects,
    node_name: &str,
    spec: &CsiVolumeSpec,
    pod: &Pod,
    report_wait: std::time::Duration,
) -> Result<(), VolumeError> {
    let name = unique_volume_name(&spec.driver, &spec.volume_handle);
    // The node agent sends a status as soon as the mark changes: wait for it a little, so
    // that the usual first sync does not fail (and the pod get a warning event) for it.
    if !in_use.volumes.wait_reported(&name, report_wait).await {
        return Err(verify_error(
            spec,
            pod,
            "Volume has not been added to the list of VolumesInUse in the node's volume status",
            None,
        ));
    }
    let node = objects.node(node_name).await.map_err(|e| {
        verify_error(
            spec,
            pod,
            "VerifyControllerAttachedVolume failed fetching node from API server",
            Some(e.to_string()),
        )
    })?;
    let attached = node
        .status
        .and_then(|s| s.volumes_attached)
        .unwrap_or_default()
        .into_iter()
        .find(|v| v.name == name);
    match attached {
        Some(volume) => {
            info!(volume = %name, device_path = %volume.device_path, "controller attach succeeded");
            Ok(())
        }
        None => Err(verify_error(
            spec,
            pod,
            "Volume not attached according to node status",
            None,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_are_the_references() {
        assert_eq!(
            unique_volume_name("ebs.csi.aws.com", "vol-1"),
            "kubernetes.io/csi/ebs.csi.aws.com^vol-1"
        );
    }

    #[test]
    fn a_volume_stays_marked_while_a_pod_wants_it_or_it_is_on_the_node() {
        let volumes = VolumesInUse::new();
        let in_use = InUse::new(volumes.clone());
        in_use.want("a", "data", "d", "h");
        in_use.want("b", "data", "d", "h");
        assert_eq!(volumes.list(), ["kubernetes.io/csi/d^h"]);
        assert_eq!(in_use.forget("a", "data"), Some(("d".into(), "h".into())));
        in_use.release_unless("d", "h", || false);
        assert!(volumes.contains("kubernetes.io/csi/d^h"), "pod b wants it");
        in_use.forget("b", "data");
        in_use.release_unless("d", "h", || true);
        assert!(volumes.contains("kubernetes.io/csi/d^h"), "still staged");
        in_use.release_unless("d", "h", || false);
        assert!(volumes.list().is_empty());

        in_use.want("c", "data", "d", "h");
        in_use.not_attachable("d", "h");
        assert!(volumes.list().is_empty());
        assert_eq!(in_use.forget("c", "data"), None);
    }

    #[test]
    fn reconstruction_marks_persistent_volumes_found_on_disk() {
        let root = tempfile::tempdir().unwrap();
        let save = |dir: &Path, handle: &str, mode: &str| {
            std::fs::create_dir_all(dir).unwrap();
            VolData {
                volume_handle: handle.into(),
                driver_name: "d".into(),
                lifecycle_mode: mode.into(),
                ..VolData::default()
            }
            .save(dir)
            .unwrap();
        };
        let pod_dir = root.path().join("pods/uid-1");
        save(
            &paths::pod_volume_dir(&pod_dir, "pv-1"),
            "published",
            super::super::data::MODE_PERSISTENT,
        );
        save(
            &paths::pod_volume_dir(&pod_dir, "inline"),
            "inline",
            super::super::data::MODE_EPHEMERAL,
        );
        save(
            &paths::device_dir(root.path(), "d", "staged"),
            "staged",
            super::super::data::MODE_PERSISTENT,
        );
        let volumes = VolumesInUse::new();
        InUse::new(volumes.clone()).reconstruct(root.path());
        assert_eq!(
            volumes.list(),
            [
                "kubernetes.io/csi/d^published",
                "kubernetes.io/csi/d^staged"
            ]
        );
    }
}
