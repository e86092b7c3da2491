//! Raw block CSI volumes (`volumeMode: Block`), mapped as the reference kubelet's CSI block
//! mapper (`csi_block.go`) and its common `MapBlockVolume` / `UnmapBlockVolume` do.
//!
//! For a PV `<pv>` used by pod `<uid>` the node holds:
//!
//! ```text
//! <root>/plugins/kubernetes.io/csi/volumeDevices/staging/<pv>        staging path (NodeStageVolume)
//! <root>/plugins/kubernetes.io/csi/volumeDevices/publish/<pv>/<uid>  publish path: a file the driver
//!                                                                   puts the device on (NodePublishVolume)
//! <root>/plugins/kubernetes.io/csi/volumeDevices/<pv>/data/vol_data.json  what the volume is
//! <root>/plugins/kubernetes.io/csi/volumeDevices/<pv>/dev/<uid>      global map file: a bind mount of
//!                                                                   the publish path, held open by a
//!                                                                   loop device (the reference's
//!                                                                   "descriptor lock")
//! <root>/pods/<uid>/volumeDevices/kubernetes.io~csi/<pv>             pod device map path: a symlink to
//!                                                                   the publish path, handed to the
//!                                                                   runtime as the device's host path
//! ```
//!
//! Setup: wait for the attachment (when required), `NodeStageVolume` with an access type
//! `Block` capability when the driver has `STAGE_UNSTAGE_VOLUME` (once per node),
//! `NodePublishVolume` per pod, then map. Teardown in reverse: release the loop device,
//! remove the symlink, unmount the global map file, `NodeUnpublishVolume`, and once no pod
//! uses the volume `NodeUnstageVolume` and the removal of the volume's directories. A volume
//! found mapped (after a restart, or on a later sync) is left alone: no driver call.
//!
//! This kubelet's addition: a per-pod record,
//! `<root>/plugins/kubernetes.io/csi/volumeDevices/<pv>/data/pods/<uid>/vol_data.json`,
//! written before publishing, with the pod's name for the volume, so that teardown (which
//! is asked by the pod's volume name) finds the PV, and so that the last user is known
//! without the reference's in-memory actual state of the world.

use std::collections::BTreeSet;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Pod;
use kubelet_core::error::VolumeError;
use kubelet_core::volume::{MountedVolume, Mounter, VolumeContext};
use tracing::{debug, info, warn};

use super::data::VolData;
use super::paths::{NODE_PLUGIN_DIR, POD_PLUGIN_DIR, attachment_name};
use super::spec::CsiVolumeSpec;
use super::{CsiVolumePlugin, LOG_PREFIX, access_mode, pod_uid, rpc_error_text, volume_key};
use crate::proto::csi::v1 as csi;

/// Below `<root>/plugins/kubernetes.io/csi`: the block volumes' directory.
pub const VOLUME_DEVICES_DIR: &str = "volumeDevices";
/// Below a pod directory: its block volumes' map paths (`volumeDevices/kubernetes.io~csi`).
pub const POD_VOLUME_DEVICES_DIR: &str = "volumeDevices";
const STAGING_DIR: &str = "staging";
const PUBLISH_DIR: &str = "publish";

/// Where one pod's use of one block volume lives (see the [module](self) docs).
#[derive(Debug, Clone)]
pub struct BlockPaths {
    /// `<root>/plugins/kubernetes.io/csi/volumeDevices/<pv>`.
    pub volume_dir: PathBuf,
    /// `.../volumeDevices/<pv>/data`: the volume's `vol_data.json`.
    pub data_dir: PathBuf,
    /// `.../volumeDevices/<pv>/data/pods/<uid>`: this pod's record.
    pub pod_record: PathBuf,
    /// `.../volumeDevices/<pv>/dev`: the global map path.
    pub global_map_path: PathBuf,
    /// `.../volumeDevices/<pv>/dev/<uid>`: this pod's map file.
    pub map_file: PathBuf,
    /// `.../volumeDevices/staging/<pv>`.
    pub staging: PathBuf,
    /// `.../volumeDevices/publish/<pv>`.
    pub publish_dir: PathBuf,
    /// `.../volumeDevices/publish/<pv>/<uid>`.
    pub publish: PathBuf,
    /// `<pod-dir>/volumeDevices/kubernetes.io~csi`.
    pub pod_map_dir: PathBuf,
    /// `<pod-dir>/volumeDevices/kubernetes.io~csi/<pv>`: the symlink the container gets.
    pub link: PathBuf,
}

impl BlockPaths {
    /// The paths of `pod_uid`'s (directory `pod_dir`) use of the PV `spec_name`.
    pub fn new(root_dir: &Path, pod_dir: &Path, pod_uid: &str, spec_name: &str) -> Self {
        let devices = root_dir.join(NODE_PLUGIN_DIR).join(VOLUME_DEVICES_DIR);
        let volume_dir = devices.join(spec_name);
        let data_dir = volume_dir.join("data");
        let global_map_path = volume_dir.join("dev");
        let publish_dir = devices.join(PUBLISH_DIR).join(spec_name);
        let pod_map_dir = pod_map_dir(pod_dir);
        BlockPaths {
            pod_record: data_dir.join("pods").join(pod_uid),
            map_file: global_map_path.join(pod_uid),
            staging: devices.join(STAGING_DIR).join(spec_name),
            publish: publish_dir.join(pod_uid),
            link: pod_map_dir.join(spec_name),
            volume_dir,
            data_dir,
            global_map_path,
            publish_dir,
            pod_map_dir,
        }
    }

    /// Whether another pod than this one still records the volume.
    fn other_users(&self) -> bool {
        let own = self.pod_record.file_name();
        std::fs::read_dir(self.data_dir.join("pods"))
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| Some(e.file_name().as_os_str()) != own)
    }
}

/// `<pod-dir>/volumeDevices/kubernetes.io~csi`.
pub fn pod_map_dir(pod_dir: &Path) -> PathBuf {
    pod_dir.join(POD_VOLUME_DEVICES_DIR).join(POD_PLUGIN_DIR)
}

/// `MapVolume.<op> failed for volume "<pv>" : <detail>`, the reference's event text.
fn map_failed(spec: &CsiVolumeSpec, op: &str, detail: impl std::fmt::Display) -> VolumeError {
    VolumeError::Mount {
        volume: spec.pod_volume_name.clone(),
        message: format!(
            "MapVolume.{op} failed for volume {:?} : {detail}",
            spec.spec_name
        ),
    }
}

/// A shared helper's `MountVolume.` error, worded for the block path.
fn as_map_error(err: VolumeError) -> VolumeError {
    match err {
        VolumeError::Mount { volume, message } => VolumeError::Mount {
            volume,
            message: match message.strip_prefix("MountVolume.") {
                Some(rest) => format!("MapVolume.{rest}"),
                None => message,
            },
        },
        other => other,
    }
}

fn unmap_failed(
    op: &str,
    spec_name: &str,
    volume: &str,
    detail: impl std::fmt::Display,
) -> VolumeError {
    VolumeError::Mount {
        volume: volume.to_string(),
        message: format!("{op} failed for volume {spec_name:?} : {detail}"),
    }
}

fn mkdir_all(path: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o750)
        .create(path)
}

fn remove_file_if_exists(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn remove_empty_dir(path: &Path) {
    // Not empty or not there: left as it is.
    let _ = std::fs::remove_dir(path);
}

/// Whether `link` is a symlink to `target`.
fn links_to(link: &Path, target: &Path) -> bool {
    std::fs::read_link(link).is_ok_and(|t| t == target)
}

/// The reference's check before mapping (`createVolumeSpec` of the desired state of the
/// world populator): a PV of `volumeMode: Block` must not be in any container's
/// `volumeMounts`, a filesystem PV not in any `volumeDevices`.
pub(super) fn check_volume_mode_usage(pod: &Pod, spec: &CsiVolumeSpec) -> Result<(), VolumeError> {
    let Some(pod_spec) = pod.spec.as_ref() else {
        return Ok(());
    };
    let name = spec.pod_volume_name.as_str();
    let containers = pod_spec
        .containers
        .iter()
        .chain(pod_spec.init_containers.iter().flatten());
    let (mut mounted, mut mapped) = (false, false);
    for c in containers {
        mounted |= c.volume_mounts.iter().flatten().any(|m| m.name == name);
        mapped |= c.volume_devices.iter().flatten().any(|d| d.name == name);
    }
    for c in pod_spec.ephemeral_containers.iter().flatten() {
        mounted |= c.volume_mounts.iter().flatten().any(|m| m.name == name);
        mapped |= c.volume_devices.iter().flatten().any(|d| d.name == name);
    }
    let mode = if spec.block { "Block" } else { "Filesystem" };
    let message = if mounted && spec.block {
        format!("volume {name} has volumeMode {mode}, but is specified in volumeMounts")
    } else if mapped && !spec.block {
        format!("volume {name} has volumeMode {mode}, but is specified in volumeDevices")
    } else {
        return Ok(());
    };
    Err(VolumeError::Mount {
        volume: name.to_string(),
        message,
    })
}

impl CsiVolumePlugin {
    /// Stage, publish and map a PV-backed block volume for the pod of `ctx`.
    pub(super) async fn setup_block(
        &self,
        ctx: &VolumeContext<'_>,
        spec: &CsiVolumeSpec,
    ) -> Result<MountedVolume, VolumeError> {
        let pod = ctx.pod;
        let uid = pod_uid(pod);
        let paths = BlockPaths::new(&self.options.root_dir, ctx.pod_dir, uid, &spec.spec_name);
        let mounted = MountedVolume {
            host_path: paths.link.clone(),
            read_only: spec.read_only,
            size_limit_bytes: None,
            block_device: Some(paths.link.clone()),
        };
        let is_mapped = || {
            let recorded = VolData::load(&paths.pod_record)
                .ok()
                .flatten()
                .is_some_and(|d| {
                    d.volume_handle == spec.volume_handle && d.driver_name == spec.driver
                });
            recorded
                && self.is_mount_point(&paths.publish)
                && self.is_mount_point(&paths.map_file)
                && links_to(&paths.link, &paths.publish)
        };
        // Mapped by an earlier sync or before a restart: left as it is (still in use).
        if is_mapped() {
            let policy = self.driver_policy(spec).await;
            let attachable = !matches!(&policy, Ok(p) if !p.attach_required);
            self.mark_in_use(pod, spec, attachable);
            return Ok(mounted);
        }
        let policy = self.driver_policy(spec).await?;
        policy
            .check_lifecycle_mode(&spec.driver, spec.lifecycle_mode())
            .map_err(|m| map_failed(spec, "NewBlockVolumeMapper initialization", m))?;
        self.mark_in_use(pod, spec, policy.attach_required);

        let key = volume_key(&spec.driver, &spec.volume_handle);
        let lock = self.volume_lock(&key);
        let _guard = lock.lock().await;
        if is_mapped() {
            return Ok(mounted);
        }
        let client = self.client(&spec.driver).map_err(|m| {
            map_failed(
                spec,
                "SetUpDevice",
                format!("{LOG_PREFIX}: blockMapper.SetUpDevice failed to get CSI client: {m}"),
            )
        })?;
        let caps = client.node_get_capabilities().await.map_err(|e| {
            map_failed(
                spec,
                "SetUpDevice",
                format!(
                    "{LOG_PREFIX}: blockMapper.stageVolumeForBlock failed to check STAGE_UNSTAGE_VOLUME capability: {}",
                    rpc_error_text(&e)
                ),
            )
        })?;
        let publish_context = if policy.attach_required {
            if let Some(in_use) = &self.in_use {
                super::in_use::verify_controller_attached(
                    in_use,
                    &*self.objects,
                    &self.options.node_name,
                    spec,
                    pod,
                    self.options.in_use_report_wait,
                )
                .await
                .map_err(as_map_error)?;
            }
            self.wait_for_attach(spec).await.map_err(as_map_error)?
        } else {
            Default::default()
        };
        let capability = crate::client::block_capability(access_mode(spec, &caps));
        let data = VolData {
            spec_volume_id: spec.spec_name.clone(),
            volume_handle: spec.volume_handle.clone(),
            driver_name: spec.driver.clone(),
            node_name: self.options.node_name.clone(),
            attachment_id: attachment_name(
                &spec.volume_handle,
                &spec.driver,
                &self.options.node_name,
            ),
            lifecycle_mode: spec.lifecycle_mode().to_string(),
            pod_volume_name: String::new(),
        };
        let io_err = |path: &Path, e: io::Error| super::io_error(&spec.pod_volume_name, path, e);

        // SetUpDevice: the volume's record, then NodeStageVolume once per node.
        mkdir_all(&paths.data_dir).map_err(|e| io_err(&paths.data_dir, e))?;
        data.save(&paths.data_dir)
            .map_err(|e| io_err(&paths.data_dir, e))?;
        let staging = if caps.stage_unstage_volume {
            let staged = self.staged().contains(&key) || paths.other_users();
            if !staged {
                mkdir_all(&paths.staging).map_err(|e| io_err(&paths.staging, e))?;
                let secrets = self
                    .secrets(spec, "SetUpDevice", spec.stage_secret.as_ref())
                    .await
                    .map_err(as_map_error)?;
                let request = csi::NodeStageVolumeRequest {
                    volume_id: spec.volume_handle.clone(),
                    publish_context: publish_context.clone(),
                    staging_target_path: paths.staging.display().to_string(),
                    volume_capability: Some(capability.clone()),
                    secrets,
                    volume_context: spec.attributes.clone().into_iter().collect(),
                };
                if let Err(err) = client.node_stage_volume(request).await {
                    if err.is_final() && !paths.other_users() {
                        // Nothing is in progress and nobody else uses the volume.
                        remove_empty_dir(&paths.staging);
                    }
                    return Err(map_failed(spec, "SetUpDevice", rpc_error_text(&err)));
                }
                info!(staging = %paths.staging.display(), "block volume staged");
                self.staged().insert(key.clone());
            }
            Some(paths.staging.display().to_string())
        } else {
            debug!("STAGE_UNSTAGE_VOLUME capability not set; skipping NodeStageVolume");
            None
        };

        // MapPodDevice: this pod's record (teardown needs it even if publishing times out),
        // then NodePublishVolume onto a file below a directory the kubelet creates.
        mkdir_all(&paths.pod_record).map_err(|e| io_err(&paths.pod_record, e))?;
        VolData {
            pod_volume_name: spec.pod_volume_name.clone(),
            ..data.clone()
        }
        .save(&paths.pod_record)
        .map_err(|e| io_err(&paths.pod_record, e))?;
        mkdir_all(&paths.publish_dir).map_err(|e| io_err(&paths.publish_dir, e))?;
        if !self.is_mount_point(&paths.publish) {
            let volume_context = self.publish_context_attributes(pod, spec, &policy).await?;
            let secrets = self
                .secrets(spec, "MapPodDevice", spec.publish_secret.as_ref())
                .await
                .map_err(as_map_error)?;
            let request = csi::NodePublishVolumeRequest {
                volume_id: spec.volume_handle.clone(),
                publish_context,
                staging_target_path: staging.unwrap_or_default(),
                target_path: paths.publish.display().to_string(),
                volume_capability: Some(capability),
                readonly: spec.read_only,
                secrets,
                volume_context: volume_context.into_iter().collect(),
            };
            if let Err(err) = client.node_publish_volume(request).await {
                if err.is_final() {
                    // The publish is over and failed: this pod is no user of the volume.
                    let _ = std::fs::remove_dir_all(&paths.pod_record);
                }
                return Err(map_failed(spec, "MapPodDevice", rpc_error_text(&err)));
            }
            info!(publish = %paths.publish.display(), "block volume published");
        }

        // MapBlockVolume: the global map file, the pod's symlink, the descriptor lock.
        // Mounts and losetup block: off the async workers.
        let mounter = self.options.mounter.clone();
        let (map_paths, map_uid) = (paths.clone(), uid.to_string());
        tokio::task::spawn_blocking(move || map_block(&*mounter, &map_paths, &map_uid))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r)
            .map_err(|m| map_failed(spec, "MapBlockVolume", m))?;
        info!(link = %paths.link.display(), "block volume mapped");
        Ok(mounted)
    }

    /// Unmap, unpublish and (for the last user) unstage the block volumes of `pod_uid` that
    /// the pod calls `volume_name` (or whose PV is named so, for a pod known only by its
    /// directory).
    pub(super) async fn teardown_block(
        &self,
        pod_uid: &str,
        pod_dir: &Path,
        volume_name: &str,
    ) -> Result<(), VolumeError> {
        let root = &self.options.root_dir;
        let map_dir = pod_map_dir(pod_dir);
        let mut names = BTreeSet::new();
        for entry in std::fs::read_dir(&map_dir).into_iter().flatten().flatten() {
            names.insert(entry.file_name().to_string_lossy().into_owned());
        }
        let devices = root.join(NODE_PLUGIN_DIR).join(VOLUME_DEVICES_DIR);
        for entry in std::fs::read_dir(&devices).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name != STAGING_DIR
                && name != PUBLISH_DIR
                && entry.path().join("data/pods").join(pod_uid).exists()
            {
                names.insert(name);
            }
        }
        let mut first_error = None;
        for spec_name in names {
            let paths = BlockPaths::new(root, pod_dir, pod_uid, &spec_name);
            let record = VolData::load(&paths.pod_record).ok().flatten();
            let ours = spec_name == volume_name
                || record
                    .as_ref()
                    .is_some_and(|d| d.pod_volume_name == volume_name);
            if !ours {
                continue;
            }
            // Without this pod's record the volume's own says which driver to call.
            let data = record.or_else(|| VolData::load(&paths.data_dir).ok().flatten());
            if let Err(e) = self
                .unmap_block(&paths, &spec_name, volume_name, data)
                .await
            {
                warn!(volume = %spec_name, error = %e, "block volume teardown failed");
                first_error.get_or_insert(e);
            }
        }
        remove_empty_dir(&map_dir);
        remove_empty_dir(&pod_dir.join(POD_VOLUME_DEVICES_DIR));
        first_error.map_or(Ok(()), Err)
    }

    async fn unmap_block(
        &self,
        paths: &BlockPaths,
        spec_name: &str,
        volume: &str,
        data: Option<VolData>,
    ) -> Result<(), VolumeError> {
        let lock = data
            .as_ref()
            .map(|d| self.volume_lock(&volume_key(&d.driver_name, &d.volume_handle)));
        let _guard = match &lock {
            Some(l) => Some(l.lock().await),
            None => None,
        };
        // UnmapBlockVolume: release the lock, remove the symlink and the global map file
        // (losetup and umount block: off the async workers).
        let mounter = self.options.mounter.clone();
        let unmap_paths = paths.clone();
        tokio::task::spawn_blocking(move || unmap_block_files(&*mounter, &unmap_paths))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r)
            .map_err(|e| unmap_failed("UnmapVolume.UnmapBlockVolume", spec_name, volume, e))?;

        let Some(data) = data else {
            warn!(volume = %spec_name, "no record of the block volume's driver; unmapped only");
            return Ok(());
        };
        // UnmapPodDevice: NodeUnpublishVolume, even if the publish path is gone (a publish
        // that timed out may have completed).
        let client = self.client_waiting(&data.driver_name).await.map_err(|m| {
            unmap_failed(
                "UnmapVolume.UnmapPodDevice",
                spec_name,
                volume,
                format!("{LOG_PREFIX}: blockMapper.UnmapPodDevice failed to get CSI client: {m}"),
            )
        })?;
        client
            .node_unpublish_volume(&data.volume_handle, &paths.publish.display().to_string())
            .await
            .map_err(|e| {
                unmap_failed(
                    "UnmapVolume.UnmapPodDevice",
                    spec_name,
                    volume,
                    format!(
                        "{LOG_PREFIX}: blockMapper.unpublishVolumeForBlock failed: {}",
                        rpc_error_text(&e)
                    ),
                )
            })?;
        info!(publish = %paths.publish.display(), "block volume unpublished");
        // The driver removes the publish file; one it left behind (and unmounted) goes too.
        if !self.is_mount_point(&paths.publish) {
            remove_file_if_exists(&paths.publish)
                .map_err(|e| unmap_failed("UnmapVolume.UnmapPodDevice", spec_name, volume, e))?;
        }
        let _ = std::fs::remove_dir_all(&paths.pod_record);
        if paths.other_users() {
            debug!("block volume still used by another pod; stays staged");
            return Ok(());
        }

        // TearDownDevice: NodeUnstageVolume when the staging path is there.
        let teardown = |d: String| unmap_failed("UnmapDevice.TearDownDevice", spec_name, volume, d);
        if paths.staging.exists() {
            let caps = client
                .node_get_capabilities()
                .await
                .map_err(|e| teardown(rpc_error_text(&e)))?;
            if caps.stage_unstage_volume {
                client
                    .node_unstage_volume(&data.volume_handle, &paths.staging.display().to_string())
                    .await
                    .map_err(|e| {
                        teardown(format!(
                            "{LOG_PREFIX}: blockMapper.unstageVolumeForBlock failed: {}",
                            rpc_error_text(&e)
                        ))
                    })?;
                info!(staging = %paths.staging.display(), "block volume unstaged");
            }
        }
        self.staged()
            .remove(&volume_key(&data.driver_name, &data.volume_handle));
        self.cleanup_orphan_device_files(paths)
            .map_err(|e| teardown(e.to_string()))
    }

    /// What is left of a volume no pod uses: its publish directory, staging path and the
    /// volume's directory (`data/vol_data.json`, an empty `dev/`). Never through a mount.
    fn cleanup_orphan_device_files(&self, paths: &BlockPaths) -> io::Result<()> {
        for dir in [&paths.publish_dir, &paths.staging, &paths.global_map_path] {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                if self.is_mount_point(&entry.path()) {
                    return Err(io::Error::other(format!(
                        "{} is still a mount point",
                        entry.path().display()
                    )));
                }
            }
            if self.is_mount_point(dir) {
                return Err(io::Error::other(format!(
                    "{} is still a mount point",
                    dir.display()
                )));
            }
        }
        for dir in [&paths.publish_dir, &paths.staging, &paths.volume_dir] {
            match std::fs::remove_dir_all(dir) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }
}

/// The reference's `MapBlockVolume` with the publish path as the device path.
fn map_block(mounter: &dyn Mounter, paths: &BlockPaths, uid: &str) -> Result<(), String> {
    let device = &paths.publish;
    if !mounter.is_mount_point(&paths.map_file).unwrap_or(false) {
        mkdir_all(&paths.global_map_path)
            .and_then(|()| {
                std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(&paths.map_file)
                    .map(drop)
            })
            .and_then(|()| mounter.bind_mount(device, &paths.map_file))
            .map_err(|e| {
                format!(
                    "blkUtil.MapDevice failed. devicePath: {}, globalMapPath:{}, podUID: {uid}, bindMount: true: {e}",
                    device.display(),
                    paths.global_map_path.display()
                )
            })?;
    }
    if !links_to(&paths.link, device) {
        let linked = mkdir_all(&paths.pod_map_dir)
            .and_then(|()| remove_file_if_exists(&paths.link))
            .and_then(|()| std::os::unix::fs::symlink(device, &paths.link));
        linked.map_err(|e| {
            format!(
                "blkUtil.MapDevice failed. devicePath: {}, podVolumeMapPath:{}, volumeMapName: {}, bindMount: false: {e}",
                device.display(),
                paths.pod_map_dir.display(),
                paths.link.file_name().unwrap_or_default().to_string_lossy()
            )
        })?;
    }
    // Keep the device open, so that it cannot silently go and another take its name.
    let locked = loop_device::find(&paths.map_file).and_then(|found| match found {
        Some(_) => Ok(()),
        None => loop_device::attach(&paths.map_file).map(drop),
    });
    locked.map_err(|e| {
        format!(
            "blkUtil.AttachFileDevice failed. globalMapPath:{}, podUID: {uid}: {e}",
            paths.global_map_path.display()
        )
    })
}

/// The reference's `UnmapBlockVolume`: release the descriptor lock, remove the pod's
/// symlink, unmount and remove the global map file.
fn unmap_block_files(mounter: &dyn Mounter, paths: &BlockPaths) -> Result<(), String> {
    if let Some(dev) = loop_device::find(&paths.map_file).map_err(|e| e.to_string())? {
        loop_device::detach(&dev).map_err(|e| {
            format!(
                "blkUtil.DetachFileDevice failed. globalUnmapPath:{}, podUID: {}: {e}",
                paths.global_map_path.display(),
                paths
                    .map_file
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
            )
        })?;
    }
    remove_file_if_exists(&paths.link).map_err(|e| e.to_string())?;
    if mounter.is_mount_point(&paths.map_file).unwrap_or(false) {
        mounter
            .unmount(&paths.map_file)
            .map_err(|e| e.to_string())?;
    }
    remove_file_if_exists(&paths.map_file).map_err(|e| e.to_string())?;
    remove_empty_dir(&paths.global_map_path);
    Ok(())
}

/// Loop devices through `losetup`, as the reference's volume path handler uses them.
pub(crate) mod loop_device {
    use std::io;
    use std::path::{Path, PathBuf};

    /// `losetup` from `PATH`, else where Debian puts it.
    fn losetup() -> PathBuf {
        let in_path = std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join("losetup"))
                .find(|p| p.is_file())
        });
        in_path.unwrap_or_else(|| PathBuf::from("/usr/sbin/losetup"))
    }

    fn run(args: &[&std::ffi::OsStr]) -> io::Result<String> {
        let out = std::process::Command::new(losetup()).args(args).output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "losetup {} failed: {}: {}",
                args.iter()
                    .map(|a| a.to_string_lossy())
                    .collect::<Vec<_>>()
                    .join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Attach a free loop device to `file`; its path.
    pub(crate) fn attach(file: &Path) -> io::Result<PathBuf> {
        let out = run(&["-f".as_ref(), "--show".as_ref(), file.as_os_str()])?;
        if out.is_empty() {
            return Err(io::Error::other(format!(
                "losetup printed no device for {}",
                file.display()
            )));
        }
        Ok(PathBuf::from(out))
    }

    /// Detach loop device `device`; one already gone is fine.
    pub(crate) fn detach(device: &Path) -> io::Result<()> {
        match run(&["-d".as_ref(), device.as_os_str()]) {
            Err(_) if !device.exists() => Ok(()),
            other => other.map(drop),
        }
    }

    /// Every attached loop device with its backing file, from sysfs.
    pub(crate) fn list() -> Vec<(PathBuf, PathBuf)> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/sys/block")
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with("loop") {
                continue;
            }
            let Ok(backing) = std::fs::read_to_string(entry.path().join("loop/backing_file"))
            else {
                continue;
            };
            let backing = backing.trim_end_matches('\n');
            let backing = backing.strip_suffix(" (deleted)").unwrap_or(backing);
            found.push((Path::new("/dev").join(&name), PathBuf::from(backing)));
        }
        found.sort();
        found
    }

    /// The loop device whose backing file is `file`, if any.
    pub(crate) fn find(file: &Path) -> io::Result<Option<PathBuf>> {
        Ok(list()
            .into_iter()
            .find(|(_, backing)| backing == file)
            .map(|(dev, _)| dev))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec, VolumeDevice, VolumeMount};

    #[test]
    fn paths_are_the_references() {
        let p = BlockPaths::new(
            Path::new("/var/lib/kubelet"),
            Path::new("/var/lib/kubelet/pods/uid-1"),
            "uid-1",
            "pv-1",
        );
        let base = "/var/lib/kubelet/plugins/kubernetes.io/csi/volumeDevices";
        assert_eq!(p.staging, Path::new(&format!("{base}/staging/pv-1")));
        assert_eq!(p.publish, Path::new(&format!("{base}/publish/pv-1/uid-1")));
        assert_eq!(p.global_map_path, Path::new(&format!("{base}/pv-1/dev")));
        assert_eq!(p.map_file, Path::new(&format!("{base}/pv-1/dev/uid-1")));
        assert_eq!(p.data_dir, Path::new(&format!("{base}/pv-1/data")));
        assert_eq!(
            p.link,
            Path::new("/var/lib/kubelet/pods/uid-1/volumeDevices/kubernetes.io~csi/pv-1")
        );
    }

    fn spec(block: bool) -> CsiVolumeSpec {
        CsiVolumeSpec {
            pod_volume_name: "data".into(),
            spec_name: "pv".into(),
            driver: "d".into(),
            volume_handle: "h".into(),
            ephemeral: false,
            read_only: false,
            fs_type: String::new(),
            mount_options: vec![],
            access_mode: "ReadWriteOnce".into(),
            read_write_once: true,
            attributes: Default::default(),
            publish_secret: None,
            stage_secret: None,
            block,
        }
    }

    fn pod(mounts: bool, devices: bool) -> Pod {
        Pod {
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "app".into(),
                    volume_mounts: mounts.then(|| {
                        vec![VolumeMount {
                            name: "data".into(),
                            mount_path: "/data".into(),
                            ..Default::default()
                        }]
                    }),
                    volume_devices: devices.then(|| {
                        vec![VolumeDevice {
                            name: "data".into(),
                            device_path: "/dev/xvda".into(),
                        }]
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn volume_mode_mismatches_are_refused_in_the_references_words() {
        let err = check_volume_mode_usage(&pod(true, false), &spec(true)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "volume data has volumeMode Block, but is specified in volumeMounts"
        );
        let err = check_volume_mode_usage(&pod(false, true), &spec(false)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "volume data has volumeMode Filesystem, but is specified in volumeDevices"
        );
        assert!(check_volume_mode_usage(&pod(false, true), &spec(true)).is_ok());
        assert!(check_volume_mode_usage(&pod(true, false), &spec(false)).is_ok());
    }
}
