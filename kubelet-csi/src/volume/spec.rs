//! What a pod volume means for CSI: the driver, the volume ID, the attributes and secrets,
//! resolved from the pod spec (inline `csi`) or through the PVC and its bound PV
//! (`persistentVolumeClaim`, generic `ephemeral`), and what the CSIDriver object asks for.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Volume};
use k8s_openapi::api::storage::v1::{CSIDriverSpec, TokenRequest};
use kubelet_core::apiserver::FetchError;
use kubelet_core::error::VolumeError;

use super::data::{MODE_EPHEMERAL, MODE_PERSISTENT};
use super::paths::ephemeral_volume_handle;
use crate::objects::CsiObjects;

/// A secret reference: namespace and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRef {
    pub namespace: String,
    pub name: String,
}

/// A pod volume resolved to a CSI volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsiVolumeSpec {
    /// The pod's name for the volume.
    pub pod_volume_name: String,
    /// The reference's spec name: the pod's volume name inline, the PV name otherwise. Names
    /// the pod-level directory and the volume in event messages.
    pub spec_name: String,
    /// The driver.
    pub driver: String,
    /// The CSI volume ID.
    pub volume_handle: String,
    /// Inline ephemeral (no staging, no attach) or PV-backed.
    pub ephemeral: bool,
    /// Published read-only.
    pub read_only: bool,
    /// Filesystem type (empty: the driver's default).
    pub fs_type: String,
    /// The PV's mount options.
    pub mount_options: Vec<String>,
    /// The PV's first access mode (`ReadWriteOnce` for inline volumes).
    pub access_mode: String,
    /// Whether the PV allows `ReadWriteOnce` (fsGroupPolicy `ReadWriteOnceWithFSType`).
    pub read_write_once: bool,
    /// `volumeAttributes`: the volume context.
    pub attributes: BTreeMap<String, String>,
    /// `nodePublishSecretRef`.
    pub publish_secret: Option<SecretRef>,
    /// `nodeStageSecretRef` (PVs only).
    pub stage_secret: Option<SecretRef>,
    /// The PV's `volumeMode` is `Block`: a raw block device mapped into the pod (see
    /// `block.rs`); inline volumes are always filesystems.
    pub block: bool,
}

impl CsiVolumeSpec {
    /// `Ephemeral` or `Persistent`.
    pub fn lifecycle_mode(&self) -> &'static str {
        if self.ephemeral {
            MODE_EPHEMERAL
        } else {
            MODE_PERSISTENT
        }
    }
}

/// What the driver's CSIDriver object says, with the reference's defaults for fields left
/// unset and for a driver without a CSIDriver object.
#[derive(Debug, Clone, PartialEq)]
pub struct DriverPolicy {
    /// Whether a CSIDriver object exists.
    pub exists: bool,
    /// `attachRequired` (default true).
    pub attach_required: bool,
    /// `podInfoOnMount` (default false).
    pub pod_info_on_mount: bool,
    /// `fsGroupPolicy` (default `ReadWriteOnceWithFSType`).
    pub fs_group_policy: String,
    /// `requiresRepublish` (default false).
    pub requires_republish: bool,
    /// `tokenRequests`.
    pub token_requests: Vec<TokenRequest>,
    /// `volumeLifecycleModes` (default `[Persistent]`).
    pub lifecycle_modes: Vec<String>,
}

/// fsGroupPolicy: `File`.
pub const FS_GROUP_FILE: &str = "File";
/// fsGroupPolicy: `None`.
pub const FS_GROUP_NONE: &str = "None";
/// fsGroupPolicy: `ReadWriteOnceWithFSType`.
pub const FS_GROUP_RWO_WITH_FS_TYPE: &str = "ReadWriteOnceWithFSType";

impl DriverPolicy {
    /// The policy of a driver without a CSIDriver object.
    pub fn absent() -> Self {
        Self::from_spec(None)
    }

    /// The policy of `spec` (`None`: no CSIDriver object).
    pub fn from_spec(spec: Option<&CSIDriverSpec>) -> Self {
        let modes = spec
            .and_then(|s| s.volume_lifecycle_modes.clone())
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| vec![MODE_PERSISTENT.to_string()]);
        DriverPolicy {
            exists: spec.is_some(),
            attach_required: spec.and_then(|s| s.attach_required).unwrap_or(true),
            pod_info_on_mount: spec.and_then(|s| s.pod_info_on_mount).unwrap_or(false),
            fs_group_policy: spec
                .and_then(|s| s.fs_group_policy.clone())
                .unwrap_or_else(|| FS_GROUP_RWO_WITH_FS_TYPE.to_string()),
            requires_republish: spec.and_then(|s| s.requires_republish).unwrap_or(false),
            token_requests: spec
                .and_then(|s| s.token_requests.clone())
                .unwrap_or_default(),
            lifecycle_modes: modes,
        }
    }

    /// Refuse a lifecycle mode the driver does not list, in the reference's words.
    pub fn check_lifecycle_mode(&self, driver: &str, mode: &str) -> Result<(), String> {
        if !self.exists {
            if mode == MODE_PERSISTENT {
                return Ok(());
            }
            return Err(format!(
                "volume mode {mode:?} not supported by driver {driver} (no CSIDriver object)"
            ));
        }
        if self.lifecycle_modes.iter().any(|m| m == mode) {
            return Ok(());
        }
        let listed: Vec<String> = self
            .lifecycle_modes
            .iter()
            .map(|m| format!("{m:?}"))
            .collect();
        Err(format!(
            "volume mode {mode:?} not supported by driver {driver} (only supports [{}])",
            listed.join(" ")
        ))
    }

    /// Whether the kubelet gives the volume to the pod's fsGroup after publishing (the
    /// reference's `supportsFSGroup`).
    pub fn applies_fs_group(&self, spec: &CsiVolumeSpec) -> bool {
        if spec.read_only || self.fs_group_policy == FS_GROUP_NONE {
            return false;
        }
        if self.fs_group_policy == FS_GROUP_FILE {
            return true;
        }
        // ReadWriteOnceWithFSType: only volumes with a filesystem type, mounted RWO
        // (inline volumes always are).
        !spec.fs_type.is_empty() && (spec.ephemeral || spec.read_write_once)
    }
}

/// The volume is not (yet) usable; the pod sync retries.
pub(crate) fn not_ready(volume: &str, message: String) -> VolumeError {
    VolumeError::NotReady {
        volume: volume.to_string(),
        message,
    }
}

fn fetch_error(volume: &str, err: FetchError) -> VolumeError {
    not_ready(volume, err.to_string())
}

fn pod_namespace(pod: &Pod) -> &str {
    pod.metadata.namespace.as_deref().unwrap_or("default")
}

/// Resolve `volume` of `pod`. `Ok(None)` when the volume is not a CSI kind at all.
pub async fn resolve(
    objects: &dyn CsiObjects,
    pod: &Pod,
    volume: &Volume,
) -> Result<CsiVolumeSpec, VolumeError> {
    let namespace = pod_namespace(pod);
    let pod_uid = pod.metadata.uid.as_deref().unwrap_or_default();
    if let Some(csi) = &volume.csi {
        return Ok(CsiVolumeSpec {
            pod_volume_name: volume.name.clone(),
            spec_name: volume.name.clone(),
            driver: csi.driver.clone(),
            volume_handle: ephemeral_volume_handle(pod_uid, &volume.name),
            ephemeral: true,
            read_only: csi.read_only.unwrap_or(false),
            fs_type: csi.fs_type.clone().unwrap_or_default(),
            mount_options: Vec::new(),
            access_mode: "ReadWriteOnce".to_string(),
            read_write_once: true,
            attributes: csi.volume_attributes.clone().unwrap_or_default(),
            publish_secret: csi.node_publish_secret_ref.as_ref().map(|r| SecretRef {
                namespace: namespace.to_string(),
                name: r.name.clone(),
            }),
            stage_secret: None,
            block: false,
        });
    }
    let (claim_name, claim_read_only) = if let Some(pvc) = &volume.persistent_volume_claim {
        (pvc.claim_name.clone(), pvc.read_only.unwrap_or(false))
    } else if volume.ephemeral.is_some() {
        let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
        (format!("{pod_name}-{}", volume.name), false)
    } else {
        return Err(VolumeError::Unsupported(volume.name.clone()));
    };
    let claim = objects
        .persistent_volume_claim(namespace, &claim_name)
        .await
        .map_err(|e| fetch_error(&volume.name, e))?;
    if volume.ephemeral.is_some() {
        check_owned_by_pod(&claim, pod).map_err(|m| not_ready(&volume.name, m))?;
    }
    let pv_name = bound_volume_name(&claim, namespace, &claim_name)
        .map_err(|m| not_ready(&volume.name, m))?;
    let pv = objects
        .persistent_volume(&pv_name)
        .await
        .map_err(|e| fetch_error(&volume.name, e))?;
    let pv_spec = pv.spec.unwrap_or_default();
    // The PV must be bound to this very claim (the reference's getPVSpec checks).
    let claim_uid = claim.metadata.uid.as_deref().unwrap_or_default();
    match pv_spec.claim_ref.as_ref().and_then(|r| r.uid.as_deref()) {
        Some(uid) if uid == claim_uid => {}
        other => {
            return Err(not_ready(
                &volume.name,
                format!(
                    "found PV object {pv_name:?} but its ClaimRef.UID ({:?}) does not point to claim.UID ({claim_uid:?})",
                    other.unwrap_or_default()
                ),
            ));
        }
    }
    let Some(csi) = pv_spec.csi else {
        return Err(VolumeError::Invalid {
            volume: volume.name.clone(),
            message: format!(
                "PersistentVolume {pv_name:?} is not a CSI volume; this node mounts CSI persistent volumes only"
            ),
        });
    };
    let access_modes = pv_spec.access_modes.unwrap_or_default();
    let secret = |r: &Option<k8s_openapi::api::core::v1::SecretReference>| {
        r.as_ref().and_then(|r| {
            Some(SecretRef {
                namespace: r.namespace.clone().unwrap_or_else(|| namespace.to_string()),
                name: r.name.clone()?,
            })
        })
    };
    Ok(CsiVolumeSpec {
        pod_volume_name: volume.name.clone(),
        spec_name: pv_name,
        driver: csi.driver.clone(),
        volume_handle: csi.volume_handle.clone(),
        ephemeral: false,
        read_only: claim_read_only || csi.read_only.unwrap_or(false),
        fs_type: csi.fs_type.clone().unwrap_or_default(),
        mount_options: pv_spec.mount_options.unwrap_or_default(),
        access_mode: access_modes
            .first()
            .cloned()
            .unwrap_or_else(|| "ReadWriteOnce".to_string()),
        read_write_once: access_modes.iter().any(|m| m == "ReadWriteOnce"),
        attributes: csi.volume_attributes.clone().unwrap_or_default(),
        publish_secret: secret(&csi.node_publish_secret_ref),
        stage_secret: secret(&csi.node_stage_secret_ref),
        block: pv_spec.volume_mode.as_deref() == Some("Block"),
    })
}

/// A generic ephemeral volume's PVC must have been made for this pod (the reference's
/// `VolumeIsForPod`).
fn check_owned_by_pod(claim: &PersistentVolumeClaim, pod: &Pod) -> Result<(), String> {
    let pod_uid = pod.metadata.uid.as_deref().unwrap_or_default();
    let owned = claim
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true) && o.uid == pod_uid);
    if owned {
        return Ok(());
    }
    Err(format!(
        "PVC {}/{} was not created for pod {}/{} (pod is not owner)",
        claim.metadata.namespace.as_deref().unwrap_or_default(),
        claim.metadata.name.as_deref().unwrap_or_default(),
        pod_namespace(pod),
        pod.metadata.name.as_deref().unwrap_or_default(),
    ))
}

/// The PV a claim is bound to, or why it cannot be used yet.
fn bound_volume_name(
    claim: &PersistentVolumeClaim,
    namespace: &str,
    name: &str,
) -> Result<String, String> {
    if claim.metadata.deletion_timestamp.is_some() {
        return Err(format!(
            "can't start pod because PVC {namespace}/{name} is being deleted"
        ));
    }
    let phase = claim
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default();
    let volume_name = claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .unwrap_or_default();
    if phase != "Bound" || volume_name.is_empty() {
        return Err(format!(
            "PVC {namespace}/{name} has non-bound phase ({phase:?}) or empty pvc.Spec.VolumeName ({volume_name:?})"
        ));
    }
    Ok(volume_name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_modes_are_refused_in_the_references_words() {
        let absent = DriverPolicy::absent();
        assert!(absent.check_lifecycle_mode("d", MODE_PERSISTENT).is_ok());
        assert_eq!(
            absent
                .check_lifecycle_mode("d", MODE_EPHEMERAL)
                .unwrap_err(),
            r#"volume mode "Ephemeral" not supported by driver d (no CSIDriver object)"#
        );
        let persistent_only = DriverPolicy::from_spec(Some(&CSIDriverSpec::default()));
        assert_eq!(
            persistent_only
                .check_lifecycle_mode("d", MODE_EPHEMERAL)
                .unwrap_err(),
            r#"volume mode "Ephemeral" not supported by driver d (only supports ["Persistent"])"#
        );
        let both = DriverPolicy::from_spec(Some(&CSIDriverSpec {
            volume_lifecycle_modes: Some(vec!["Persistent".into(), "Ephemeral".into()]),
            ..Default::default()
        }));
        assert!(both.check_lifecycle_mode("d", MODE_EPHEMERAL).is_ok());
        assert!(both.attach_required, "attachRequired defaults to true");
    }

    #[test]
    fn fs_group_follows_the_policy() {
        let spec = CsiVolumeSpec {
            pod_volume_name: "v".into(),
            spec_name: "pv".into(),
            driver: "d".into(),
            volume_handle: "h".into(),
            ephemeral: false,
            read_only: false,
            fs_type: String::new(),
            mount_options: vec![],
            access_mode: "ReadWriteOnce".into(),
            read_write_once: true,
            attributes: BTreeMap::new(),
            publish_secret: None,
            stage_secret: None,
            block: false,
        };
        let policy = |p: &str| DriverPolicy {
            fs_group_policy: p.to_string(),
            ..DriverPolicy::absent()
        };
        assert!(policy(FS_GROUP_FILE).applies_fs_group(&spec));
        assert!(!policy(FS_GROUP_NONE).applies_fs_group(&spec));
        // No fsType: skipped.
        assert!(!policy(FS_GROUP_RWO_WITH_FS_TYPE).applies_fs_group(&spec));
        let ext4 = CsiVolumeSpec {
            fs_type: "ext4".into(),
            ..spec.clone()
        };
        assert!(policy(FS_GROUP_RWO_WITH_FS_TYPE).applies_fs_group(&ext4));
        let rwx = CsiVolumeSpec {
            read_write_once: false,
            ..ext4.clone()
        };
        assert!(!policy(FS_GROUP_RWO_WITH_FS_TYPE).applies_fs_group(&rwx));
        let ro = CsiVolumeSpec {
            read_only: true,
            ..ext4
        };
        assert!(!policy(FS_GROUP_FILE).applies_fs_group(&ro));
    }
}
