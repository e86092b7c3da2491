//! `vol_data.json`: what is mounted in a CSI volume directory, written before the driver is
//! called so that teardown (which only gets the pod UID, its directory and the volume name)
//! and a restarted kubelet find the driver and the volume ID. Same keys as the reference's.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use super::paths::VOL_DATA_FILE;

/// Lifecycle mode of an inline volume.
pub const MODE_EPHEMERAL: &str = "Ephemeral";
/// Lifecycle mode of a PV-backed volume.
pub const MODE_PERSISTENT: &str = "Persistent";

/// The recorded facts of one CSI volume directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VolData {
    /// The volume's spec name (the pod's volume name inline, the PV name otherwise).
    pub spec_volume_id: String,
    /// The CSI volume ID.
    pub volume_handle: String,
    /// The driver name.
    pub driver_name: String,
    /// The node's name.
    pub node_name: String,
    /// The VolumeAttachment name.
    pub attachment_id: String,
    /// `Ephemeral` or `Persistent`.
    pub lifecycle_mode: String,
    /// The pod's name for the volume (this kubelet's addition: the directory of a PV-backed
    /// volume is named after the PV, teardown is asked by the pod's volume name).
    pub pod_volume_name: String,
}

const SPEC_VOLUME_ID: &str = "specVolumeID";
const VOLUME_HANDLE: &str = "volumeHandle";
const DRIVER_NAME: &str = "driverName";
const NODE_NAME: &str = "nodeName";
const ATTACHMENT_ID: &str = "attachmentID";
const LIFECYCLE_MODE: &str = "volumeLifecycleMode";
const POD_VOLUME_NAME: &str = "podVolumeName";

impl VolData {
    fn to_map(&self) -> BTreeMap<&'static str, &str> {
        let mut map = BTreeMap::new();
        for (key, value) in [
            (SPEC_VOLUME_ID, &self.spec_volume_id),
            (VOLUME_HANDLE, &self.volume_handle),
            (DRIVER_NAME, &self.driver_name),
            (NODE_NAME, &self.node_name),
            (ATTACHMENT_ID, &self.attachment_id),
            (LIFECYCLE_MODE, &self.lifecycle_mode),
            (POD_VOLUME_NAME, &self.pod_volume_name),
        ] {
            if !value.is_empty() {
                map.insert(key, value.as_str());
            }
        }
        map
    }

    /// Write `<dir>/vol_data.json` (through a temporary file, so a crash leaves the old or the
    /// new one).
    pub fn save(&self, dir: &Path) -> io::Result<()> {
        let json = serde_json::to_vec(&self.to_map()).map_err(io::Error::other)?;
        let tmp = dir.join(format!(".{VOL_DATA_FILE}.tmp"));
        std::fs::write(&tmp, json)?;
        std::fs::rename(&tmp, dir.join(VOL_DATA_FILE))
    }

    /// Read `<dir>/vol_data.json`; `Ok(None)` when there is none.
    pub fn load(dir: &Path) -> io::Result<Option<VolData>> {
        let bytes = match std::fs::read(dir.join(VOL_DATA_FILE)) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut map: BTreeMap<String, String> = serde_json::from_slice(&bytes)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let mut take = |key: &str| map.remove(key).unwrap_or_default();
        let data = VolData {
            spec_volume_id: take(SPEC_VOLUME_ID),
            volume_handle: take(VOLUME_HANDLE),
            driver_name: take(DRIVER_NAME),
            node_name: take(NODE_NAME),
            attachment_id: take(ATTACHMENT_ID),
            lifecycle_mode: take(LIFECYCLE_MODE),
            pod_volume_name: take(POD_VOLUME_NAME),
        };
        if data.driver_name.is_empty() || data.volume_handle.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{VOL_DATA_FILE} names no driver or volume handle"),
            ));
        }
        Ok(Some(data))
    }

    /// Whether the volume was published for an inline ephemeral volume.
    pub fn is_ephemeral(&self) -> bool {
        self.lifecycle_mode == MODE_EPHEMERAL
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_the_references_keys() {
        let dir = tempfile::tempdir().unwrap();
        let data = VolData {
            spec_volume_id: "pv-1".into(),
            volume_handle: "vol-1".into(),
            driver_name: "d.example".into(),
            node_name: "node-1".into(),
            attachment_id: "csi-abc".into(),
            lifecycle_mode: MODE_PERSISTENT.into(),
            pod_volume_name: "data".into(),
        };
        data.save(dir.path()).unwrap();
        let raw: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join(VOL_DATA_FILE)).unwrap())
                .unwrap();
        assert_eq!(raw["specVolumeID"], "pv-1");
        assert_eq!(raw["volumeHandle"], "vol-1");
        assert_eq!(raw["driverName"], "d.example");
        assert_eq!(raw["volumeLifecycleMode"], "Persistent");
        assert_eq!(VolData::load(dir.path()).unwrap(), Some(data));
        assert_eq!(VolData::load(&dir.path().join("none")).unwrap(), None);
    }
}
