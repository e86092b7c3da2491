//! [`CsiVolumePlugin`]: the pods' CSI volumes, as the reference kubelet's `kubernetes.io/csi`
//! plugin makes them.
//!
//! - Inline ephemeral volumes (`volumes[].csi`): `NodePublishVolume` straight into the pod's
//!   volume directory (no staging, no attachment), volume ID `csi-<sha256(pod UID + volume
//!   name)>`, refused unless the CSIDriver lists the `Ephemeral` lifecycle mode.
//! - PV-backed volumes (`persistentVolumeClaim`, and the PVC `<pod>-<volume>` of a generic
//!   `ephemeral` volume, which must be owned by the pod): the PVC must be Bound to a CSI PV;
//!   when the CSIDriver requires attachment (the default, also without a CSIDriver object)
//!   the VolumeAttachment `csi-<sha256(handle + driver + node)>` must be attached; the
//!   volume is staged once per node at
//!   `<root>/plugins/kubernetes.io/csi/<driver>/<sha256(handle)>/globalmount` when the driver
//!   has `STAGE_UNSTAGE_VOLUME`, then published per pod.
//! - Per pod the volume appears at `<pod-dir>/volumes/kubernetes.io~csi/<spec name>/mount`
//!   (spec name: the pod's volume name inline, the PV name otherwise), with `vol_data.json`
//!   beside it naming the driver and volume ID, so teardown and a restarted kubelet find it.
//!   A volume found published (its `vol_data.json` and the mount present) is left alone on
//!   later syncs and after a restart, unless the CSIDriver sets `requiresRepublish`.
//! - The volume context gets the pod's identity (`csi.storage.k8s.io/pod.*`) when the
//!   CSIDriver sets `podInfoOnMount`, and the pod's service account tokens
//!   (`csi.storage.k8s.io/serviceAccount.tokens`) for its `tokenRequests`; `fsGroupPolicy`
//!   decides whether the kubelet gives the volume to the pod's `fsGroup` (or the driver does,
//!   with `VOLUME_MOUNT_GROUP`).
//! - PVs of `volumeMode: Block` are not mounted: they are staged and published with an
//!   access type `Block` capability and mapped into the pod as the reference's block mapper
//!   does (`<pod-dir>/volumeDevices/kubernetes.io~csi/<pv>`, see `block.rs`), for the
//!   containers' `volumeDevices`.
//! - Teardown unpublishes, removes the directories, and unstages once no pod directory on
//!   the node records the volume any more.
//! - With a [`kubelet_core::node::VolumesInUse`] tracker
//!   ([`CsiVolumeOptions::with_volumes_in_use`]), attachable volumes take part in the
//!   attach/detach controller's handshake through the Node's status: reported in
//!   `volumesInUse` from the first setup until unstaged, mounted only once reported and
//!   listed in `volumesAttached` (see `in_use.rs`).
//!
//! Failures carry the reference's event wording (`MountVolume.SetUp failed for volume "x" :
//! rpc error: code = Internal desc = ...`); the pod stays `ContainerCreating` and the next
//! sync tries again.

pub(crate) mod block;
mod data;
mod in_use;
mod inputs;
mod paths;
mod spec;
mod stats;
mod teardown;

pub use in_use::unique_volume_name;
pub use paths::{attachment_name, ephemeral_volume_handle};

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Pod, Volume};
use kubelet_core::error::VolumeError;
use kubelet_core::volume::{HostMounter, MountedVolume, Mounter, VolumeContext, VolumePlugin};
use kubelet_core::volume_plugins::ownership::{FsGroup, set_volume_ownership};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::client::{CsiClient, CsiClientOptions, NodeCapabilities};
use crate::error::CsiError;
use crate::objects::CsiObjects;
use crate::proto::csi::v1 as csi;
use crate::registry::DriverRegistry;
use data::VolData;
use spec::{CsiVolumeSpec, DriverPolicy, FS_GROUP_FILE, not_ready};

/// The plugin's name, as the reference names it.
pub const CSI_PLUGIN_NAME: &str = "kubernetes.io/csi";

/// Volume-context keys the kubelet adds.
pub mod context_keys {
    /// The pod's name (`podInfoOnMount`).
    pub const POD_NAME: &str = "csi.storage.k8s.io/pod.name";
    /// The pod's namespace (`podInfoOnMount`).
    pub const POD_NAMESPACE: &str = "csi.storage.k8s.io/pod.namespace";
    /// The pod's UID (`podInfoOnMount`).
    pub const POD_UID: &str = "csi.storage.k8s.io/pod.uid";
    /// The pod's service account name (`podInfoOnMount`).
    pub const SERVICE_ACCOUNT_NAME: &str = "csi.storage.k8s.io/serviceAccount.name";
    /// `"true"` for inline ephemeral volumes, `"false"` otherwise (`podInfoOnMount`).
    pub const EPHEMERAL: &str = "csi.storage.k8s.io/ephemeral";
    /// The service account tokens of the CSIDriver's `tokenRequests`, as JSON:
    /// `{"<audience>": {"token": "...", "expirationTimestamp": "<RFC 3339>"}}`.
    pub const SERVICE_ACCOUNT_TOKENS: &str = "csi.storage.k8s.io/serviceAccount.tokens";
}

/// The reference's log prefix, which its error messages carry.
const LOG_PREFIX: &str = "kubernetes.io/csi";

/// Settings of a [`CsiVolumePlugin`].
#[derive(Debug, Clone)]
pub struct CsiVolumeOptions {
    root_dir: PathBuf,
    node_name: String,
    mounter: Arc<dyn Mounter>,
    client_options: CsiClientOptions,
    registration_wait: std::time::Duration,
    volumes_in_use: Option<kubelet_core::node::VolumesInUse>,
    in_use_report_wait: std::time::Duration,
}

/// How long teardown waits for a driver that is not registered (yet): after a kubelet
/// restart drivers register again within seconds, and a pod deleted meanwhile must still be
/// unpublished (the reference's volume manager retries for as long as it takes).
pub const DEFAULT_REGISTRATION_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// How long a setup waits for a newly marked attachable volume to be reported in the
/// node's `volumesInUse`: the reference's `nodeStatusUpdateFrequency`, the longest its own
/// kubelet takes (ours sends a status at once on a change; this only bounds a slow or
/// failing API server).
pub const DEFAULT_IN_USE_REPORT_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

impl CsiVolumeOptions {
    /// A plugin of the kubelet with root directory `root_dir` (pods below `<root_dir>/pods`,
    /// global mount paths below `<root_dir>/plugins/kubernetes.io/csi/`) on node
    /// `node_name`.
    pub fn new(root_dir: PathBuf, node_name: String) -> Self {
        CsiVolumeOptions {
            root_dir,
            node_name,
            mounter: Arc::new(HostMounter),
            client_options: CsiClientOptions::default(),
            registration_wait: DEFAULT_REGISTRATION_WAIT,
            volumes_in_use: None,
            in_use_report_wait: DEFAULT_IN_USE_REPORT_WAIT,
        }
    }

    /// How long a setup waits for the node agent to report a newly marked volume in
    /// `volumesInUse` before it fails for the next sync to retry (default
    /// [`DEFAULT_IN_USE_REPORT_WAIT`]).
    pub fn with_in_use_report_wait(mut self, wait: std::time::Duration) -> Self {
        self.in_use_report_wait = wait;
        self
    }

    /// Take part in the attach/detach controller's handshake through the node status
    /// (see `in_use.rs`): attachable volumes are marked in `volumes` (the tracker the node
    /// agent reports as `volumesInUse`), and mounted only once reported and listed in the
    /// Node's `volumesAttached`. Without it (standalone) only the VolumeAttachment is
    /// checked.
    pub fn with_volumes_in_use(mut self, volumes: kubelet_core::node::VolumesInUse) -> Self {
        self.volumes_in_use = Some(volumes);
        self
    }

    /// Let teardown wait this long for a driver to register (default
    /// [`DEFAULT_REGISTRATION_WAIT`]); setup never waits, the next pod sync tries again.
    pub fn with_registration_wait(mut self, wait: std::time::Duration) -> Self {
        self.registration_wait = wait;
        self
    }

    /// Ask `mounter` whether a path is a mount point (default: the node's mount table).
    pub fn with_mounter(mut self, mounter: Arc<dyn Mounter>) -> Self {
        self.mounter = mounter;
        self
    }

    /// Call drivers with these timeouts.
    pub fn with_client_options(mut self, client_options: CsiClientOptions) -> Self {
        self.client_options = client_options;
        self
    }
}

/// The CSI [`VolumePlugin`] (see the [module](self) docs): inline CSI volumes, PVC-backed
/// CSI volumes and generic ephemeral volumes, through the drivers of a [`DriverRegistry`].
pub struct CsiVolumePlugin {
    registry: DriverRegistry,
    objects: Arc<dyn CsiObjects>,
    options: CsiVolumeOptions,
    /// One lock per volume (driver + handle): stage, publish, unpublish and unstage of one
    /// volume never overlap, so the "last user unstages" check cannot race a new user.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Volumes this process staged (for drivers whose staging path is not a mount point).
    staged: Mutex<HashSet<String>>,
    /// The claims behind the pods' volumes, for the volume stats.
    claims: stats::Claims,
    /// The node-status handshake of attachable volumes, with a tracker.
    in_use: Option<in_use::InUse>,
}

impl std::fmt::Debug for CsiVolumePlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CsiVolumePlugin")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// `MountVolume.<op> failed for volume "<spec name>" : <detail>`, the reference's event text.
fn mount_failed(spec: &CsiVolumeSpec, op: &str, detail: impl std::fmt::Display) -> VolumeError {
    VolumeError::Mount {
        volume: spec.pod_volume_name.clone(),
        message: format!(
            "MountVolume.{op} failed for volume {:?} : {detail}",
            spec.spec_name
        ),
    }
}

fn teardown_failed(volume: &str, detail: impl std::fmt::Display) -> VolumeError {
    VolumeError::Mount {
        volume: volume.to_string(),
        message: format!("UnmountVolume.TearDown failed for volume {volume:?} : {detail}"),
    }
}

fn io_error(volume: &str, path: &Path, source: std::io::Error) -> VolumeError {
    VolumeError::Io {
        volume: volume.to_string(),
        path: path.to_path_buf(),
        source,
    }
}

/// A CSI error as gRPC-Go prints a status (`rpc error: code = Internal desc = ...`), which
/// is how it reaches the reference's events.
pub fn rpc_error_text(err: &CsiError) -> String {
    let Some(code) = err.code() else {
        return err.to_string();
    };
    let desc = match err {
        CsiError::Final { message, .. } | CsiError::Uncertain { message, .. } => message.clone(),
        CsiError::Timeout { .. } => "context deadline exceeded".to_string(),
        other => other.to_string(),
    };
    kubelet_core::error::grpc_status_text(code, &desc)
}

fn lookup_error(driver: &str) -> String {
    format!("driver name {driver} not found in the list of registered CSI drivers")
}

fn volume_key(driver: &str, handle: &str) -> String {
    // The reference's unique volume name separator.
    format!("{driver}^{handle}")
}

fn access_mode(
    spec: &CsiVolumeSpec,
    caps: &NodeCapabilities,
) -> csi::volume_capability::access_mode::Mode {
    use csi::volume_capability::access_mode::Mode;
    match spec.access_mode.as_str() {
        "ReadOnlyMany" => Mode::MultiNodeReaderOnly,
        "ReadWriteMany" => Mode::MultiNodeMultiWriter,
        "ReadWriteOncePod" if caps.single_node_multi_writer => Mode::SingleNodeSingleWriter,
        "ReadWriteOnce" if caps.single_node_multi_writer => Mode::SingleNodeMultiWriter,
        _ => Mode::SingleNodeWriter,
    }
}

fn capability(
    spec: &CsiVolumeSpec,
    caps: &NodeCapabilities,
    mount_group: Option<u32>,
) -> csi::VolumeCapability {
    let mut cap = crate::client::mount_capability(
        access_mode(spec, caps),
        &spec.fs_type,
        &spec.mount_options,
    );
    if let (Some(gid), Some(csi::volume_capability::AccessType::Mount(m))) =
        (mount_group, cap.access_type.as_mut())
    {
        m.volume_mount_group = gid.to_string();
    }
    cap
}

fn pod_name(pod: &Pod) -> &str {
    pod.metadata.name.as_deref().unwrap_or_default()
}

fn pod_namespace(pod: &Pod) -> &str {
    pod.metadata.namespace.as_deref().unwrap_or("default")
}

fn pod_uid(pod: &Pod) -> &str {
    pod.metadata.uid.as_deref().unwrap_or_default()
}

fn service_account(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.service_account_name.as_deref())
        .unwrap_or_default()
}

/// Remove `dir` if it is an empty directory or holds nothing; never follows into a mount.
fn remove_dir_if_unmounted(mounter: &dyn Mounter, dir: &Path) -> std::io::Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    if mounter.is_mount_point(dir)? {
        return Err(std::io::Error::other(format!(
            "{} is still a mount point",
            dir.display()
        )));
    }
    match std::fs::remove_dir(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Remove a volume directory: the mount directory (if unmounted), `vol_data.json`, then the
/// directory itself.
fn remove_volume_dir(mounter: &dyn Mounter, dir: &Path, mount_dir: &Path) -> std::io::Result<()> {
    remove_dir_if_unmounted(mounter, mount_dir)?;
    match std::fs::remove_file(dir.join(paths::VOL_DATA_FILE)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    remove_dir_if_unmounted(mounter, dir)
}

impl CsiVolumePlugin {
    /// A plugin calling the drivers of `registry`, reading API objects through `objects`.
    pub fn new(
        registry: DriverRegistry,
        objects: Arc<dyn CsiObjects>,
        options: CsiVolumeOptions,
    ) -> Self {
        let in_use = options.volumes_in_use.clone().map(|volumes| {
            let in_use = in_use::InUse::new(volumes);
            in_use.reconstruct(&options.root_dir);
            in_use
        });
        CsiVolumePlugin {
            registry,
            objects,
            options,
            locks: Mutex::default(),
            staged: Mutex::default(),
            claims: stats::Claims::default(),
            in_use,
        }
    }

    fn volume_lock(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        // Forget locks nobody holds or waits for, so the map does not grow forever.
        locks.retain(|k, l| k == key || Arc::strong_count(l) > 1);
        locks.entry(key.to_string()).or_default().clone()
    }

    fn staged(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.staged.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn client(&self, driver: &str) -> Result<CsiClient, String> {
        if self.registry.get(driver).is_none() {
            return Err(lookup_error(driver));
        }
        self.registry
            .client(driver, self.options.client_options)
            .map_err(|e| e.to_string())
    }

    /// A client of `driver`, waiting up to the registration wait for it to register.
    async fn client_waiting(&self, driver: &str) -> Result<CsiClient, String> {
        // Subscribe before looking, so a registration in between is not missed.
        let mut events = self.registry.subscribe();
        if self.registry.get(driver).is_some() {
            return self.client(driver);
        }
        info!(driver, wait = ?self.options.registration_wait, "waiting for the CSI driver to register");
        let registered = async {
            loop {
                match events.recv().await {
                    Ok(crate::registry::DriverEvent::Registered(d)) if d.name == driver => {
                        return;
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        if self.registry.get(driver).is_some() {
                            return;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                        std::future::pending::<()>().await;
                    }
                }
            }
        };
        let _ = tokio::time::timeout(self.options.registration_wait, registered).await;
        self.client(driver)
    }

    async fn driver_policy(&self, spec: &CsiVolumeSpec) -> Result<DriverPolicy, VolumeError> {
        match self.objects.csi_driver(&spec.driver).await {
            Ok(driver) => Ok(DriverPolicy::from_spec(Some(&driver.spec))),
            Err(kubelet_core::apiserver::FetchError::NotFound { .. }) => Ok(DriverPolicy::absent()),
            Err(e) => Err(not_ready(&spec.pod_volume_name, e.to_string())),
        }
    }

    fn is_mount_point(&self, path: &Path) -> bool {
        self.options.mounter.is_mount_point(path).unwrap_or(false)
    }

    /// Stage the volume at its global mount path unless it is staged already.
    async fn stage(
        &self,
        client: &CsiClient,
        caps: &NodeCapabilities,
        spec: &CsiVolumeSpec,
        publish_context: &HashMap<String, String>,
    ) -> Result<PathBuf, VolumeError> {
        let device_dir =
            paths::device_dir(&self.options.root_dir, &spec.driver, &spec.volume_handle);
        let staging = paths::staging_path(&device_dir);
        let key = volume_key(&spec.driver, &spec.volume_handle);
        if self.staged().contains(&key) || self.is_mount_point(&staging) {
            debug!(staging = %staging.display(), "volume already staged");
            return Ok(staging);
        }
        std::fs::create_dir_all(&staging)
            .map_err(|e| io_error(&spec.pod_volume_name, &staging, e))?;
        VolData {
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
            ..VolData::default()
        }
        .save(&device_dir)
        .map_err(|e| io_error(&spec.pod_volume_name, &device_dir, e))?;
        let secrets = self
            .secrets(spec, "MountDevice", spec.stage_secret.as_ref())
            .await?;
        let request = csi::NodeStageVolumeRequest {
            volume_id: spec.volume_handle.clone(),
            publish_context: publish_context.clone(),
            staging_target_path: staging.display().to_string(),
            volume_capability: Some(capability(spec, caps, None)),
            secrets,
            volume_context: spec.attributes.clone().into_iter().collect(),
        };
        if let Err(err) = client.node_stage_volume(request).await {
            if err.is_final() {
                // Nothing is in progress: leave no directories behind.
                let _ = remove_volume_dir(&*self.options.mounter, &device_dir, &staging);
            }
            return Err(mount_failed(spec, "MountDevice", rpc_error_text(&err)));
        }
        info!(staging = %staging.display(), "volume staged");
        self.staged().insert(key);
        Ok(staging)
    }

    async fn setup_volume(
        &self,
        ctx: &VolumeContext<'_>,
        volume: &Volume,
    ) -> Result<MountedVolume, VolumeError> {
        let pod = ctx.pod;
        let spec = spec::resolve(&*self.objects, pod, volume).await?;
        if !spec.ephemeral {
            block::check_volume_mode_usage(pod, &spec)?;
        }
        if spec.block {
            return self.setup_block(ctx, &spec).await;
        }
        let volume_dir = paths::pod_volume_dir(ctx.pod_dir, &spec.spec_name);
        let target = paths::target_path(&volume_dir);
        let mounted = MountedVolume {
            host_path: target.clone(),
            read_only: spec.read_only,
            size_limit_bytes: None,
            block_device: None,
        };
        let is_published = || {
            let recorded = VolData::load(&volume_dir).ok().flatten().is_some_and(|d| {
                d.volume_handle == spec.volume_handle && d.driver_name == spec.driver
            });
            recorded && self.is_mount_point(&target)
        };
        // A published volume (an earlier sync, or before a restart) is left as it is: the
        // checks below are the reference's checks before mounting, not while mounted.
        if is_published() {
            let policy = self.driver_policy(&spec).await;
            // Still in use (also found again after a restart), unless not attachable.
            let attachable = !matches!(&policy, Ok(p) if !p.attach_required);
            self.mark_in_use(pod, &spec, attachable);
            match policy {
                Ok(policy) if policy.requires_republish => {}
                Ok(_) => return Ok(mounted),
                Err(err) => {
                    debug!(error = %err, "CSIDriver unknown; the published volume stays");
                    return Ok(mounted);
                }
            }
        }
        let policy = self.driver_policy(&spec).await?;
        policy
            .check_lifecycle_mode(&spec.driver, spec.lifecycle_mode())
            .map_err(|m| mount_failed(&spec, "NewMounter initialization", m))?;
        self.mark_in_use(pod, &spec, policy.attach_required);

        let lock = self.volume_lock(&volume_key(&spec.driver, &spec.volume_handle));
        let _guard = lock.lock().await;
        // Under the lock: another sync of this pod may have published meanwhile.
        let published = is_published();
        if published && !policy.requires_republish {
            return Ok(mounted);
        }

        let client = self.client(&spec.driver).map_err(|m| {
            let what = if spec.ephemeral || published {
                "mounter.SetUpAt failed to get CSI client"
            } else {
                "attacher.MountDevice failed to create newCsiDriverClient"
            };
            let op = if spec.ephemeral || published {
                "SetUp"
            } else {
                "MountDevice"
            };
            mount_failed(&spec, op, format!("{LOG_PREFIX}: {what}: {m}"))
        })?;
        let caps = client
            .node_get_capabilities()
            .await
            .map_err(|e| mount_failed(&spec, "SetUp", rpc_error_text(&e)))?;

        let mut publish_context = HashMap::new();
        let mut staging = None;
        if !spec.ephemeral {
            if policy.attach_required {
                if let Some(in_use) = &self.in_use
                    && !published
                {
                    in_use::verify_controller_attached(
                        in_use,
                        &*self.objects,
                        &self.options.node_name,
                        &spec,
                        pod,
                        self.options.in_use_report_wait,
                    )
                    .await?;
                }
                publish_context = self.wait_for_attach(&spec).await?;
            }
            if caps.stage_unstage_volume {
                staging = Some(self.stage(&client, &caps, &spec, &publish_context).await?);
            }
        }

        // What teardown and a restarted kubelet need, before the driver is called: a
        // publish that times out may still complete.
        std::fs::create_dir_all(&volume_dir)
            .map_err(|e| io_error(&spec.pod_volume_name, &volume_dir, e))?;
        VolData {
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
            pod_volume_name: spec.pod_volume_name.clone(),
        }
        .save(&volume_dir)
        .map_err(|e| io_error(&spec.pod_volume_name, &volume_dir, e))?;

        let fs_group = FsGroup::of(pod);
        // The driver applies the group itself when it can (VOLUME_MOUNT_GROUP) and the
        // policy hands group ownership to it.
        let mount_group = fs_group
            .filter(|_| caps.volume_mount_group && policy.fs_group_policy == FS_GROUP_FILE)
            .map(|g| g.gid);
        let volume_context = self.publish_context_attributes(pod, &spec, &policy).await?;
        let secrets = self
            .secrets(&spec, "SetUp", spec.publish_secret.as_ref())
            .await?;
        let request = csi::NodePublishVolumeRequest {
            volume_id: spec.volume_handle.clone(),
            publish_context,
            staging_target_path: staging
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            target_path: target.display().to_string(),
            volume_capability: Some(capability(&spec, &caps, mount_group)),
            readonly: spec.read_only,
            secrets,
            volume_context: volume_context.into_iter().collect(),
        };
        if let Err(err) = client.node_publish_volume(request).await {
            if err.is_final() && !published {
                // The publish is over and failed: leave no directory that looks set up.
                if let Err(e) = remove_volume_dir(&*self.options.mounter, &volume_dir, &target) {
                    warn!(dir = %volume_dir.display(), error = %e, "cleanup after a failed publish");
                }
            }
            return Err(mount_failed(&spec, "SetUp", rpc_error_text(&err)));
        }
        info!(target = %target.display(), republish = published, "volume published");

        if let Some(fs_group) = fs_group
            && mount_group.is_none()
            && policy.applies_fs_group(&spec)
        {
            let dir = target.clone();
            let read_only = spec.read_only;
            let walked = tokio::task::spawn_blocking(move || {
                set_volume_ownership(&dir, fs_group, read_only)
            })
            .await
            .map_err(|e| mount_failed(&spec, "SetUp", e))?;
            walked.map_err(|e| {
                mount_failed(
                    &spec,
                    "SetUp",
                    format!(
                        "applyFSGroup failed for vol {}: {}: {}",
                        spec.volume_handle,
                        e.path.display(),
                        e.source
                    ),
                )
            })?;
        }
        Ok(mounted)
    }

    /// Mark a PV-backed volume of `pod` in use when `attachable` (else unmark it: the
    /// driver needs no attachment); nothing for inline volumes or without a tracker.
    fn mark_in_use(&self, pod: &Pod, spec: &CsiVolumeSpec, attachable: bool) {
        let Some(in_use) = &self.in_use else { return };
        if spec.ephemeral {
            return;
        }
        if attachable {
            in_use.want(
                pod_uid(pod),
                &spec.pod_volume_name,
                &spec.driver,
                &spec.volume_handle,
            );
        } else {
            in_use.not_attachable(&spec.driver, &spec.volume_handle);
        }
    }

    /// Unmark the volume once no pod wants it and it is neither published nor staged.
    fn release_in_use(&self, driver: &str, handle: &str) {
        if let Some(in_use) = &self.in_use {
            in_use.release_unless(driver, handle, || {
                self.in_use(driver, handle)
                    || paths::device_dir(&self.options.root_dir, driver, handle).exists()
            });
        }
    }
}

#[async_trait]
impl VolumePlugin for CsiVolumePlugin {
    fn name(&self) -> &str {
        CSI_PLUGIN_NAME
    }

    fn can_support(&self, volume: &Volume) -> bool {
        volume.csi.is_some()
            || volume.persistent_volume_claim.is_some()
            || volume.ephemeral.is_some()
    }

    async fn setup(
        &self,
        ctx: &VolumeContext<'_>,
        volume: &Volume,
    ) -> Result<MountedVolume, VolumeError> {
        let span = info_span!("csi_setup", pod = %pod_name(ctx.pod), pod_uid = %pod_uid(ctx.pod), volume = %volume.name);
        self.claims.remember(ctx.pod, volume);
        self.setup_volume(ctx, volume).instrument(span).await
    }

    async fn teardown(
        &self,
        pod_uid: &str,
        pod_dir: &Path,
        volume_name: &str,
    ) -> Result<(), VolumeError> {
        let span = info_span!("csi_teardown", pod_uid = %pod_uid, volume = %volume_name);
        async {
            let plugin_dir = paths::pod_plugin_dir(pod_dir);
            // The directory is named after the pod's volume (inline) or the PV (recorded in
            // vol_data.json with the pod's name for it).
            let mut dirs = Vec::new();
            for entry in std::fs::read_dir(&plugin_dir)
                .into_iter()
                .flatten()
                .flatten()
            {
                let path = entry.path();
                let named = entry.file_name().to_str() == Some(volume_name);
                let recorded = VolData::load(&path)
                    .ok()
                    .flatten()
                    .is_some_and(|d| d.pod_volume_name == volume_name);
                if named || recorded {
                    dirs.push(path);
                }
            }
            // Block volumes (`volumeMode: Block`) live below `<pod-dir>/volumeDevices`.
            let mut first_error = self
                .teardown_block(pod_uid, pod_dir, volume_name)
                .await
                .err();
            for dir in dirs {
                if let Err(e) = self.teardown_dir(volume_name, &dir).await {
                    warn!(dir = %dir.display(), error = %e, "CSI volume teardown failed");
                    first_error.get_or_insert(e);
                }
            }
            // The plugin directory of the pod goes with its last volume.
            let _ = std::fs::remove_dir(&plugin_dir);
            // The pod no longer wants the volume; it leaves volumesInUse unless another
            // pod wants it or it is still on the node (a failed teardown is retried).
            if let Some((driver, handle)) = self
                .in_use
                .as_ref()
                .and_then(|in_use| in_use.forget(pod_uid, volume_name))
            {
                self.release_in_use(&driver, &handle);
            }
            if first_error.is_none() {
                self.claims.forget(pod_uid, volume_name);
            }
            first_error.map_or(Ok(()), Err)
        }
        .instrument(span)
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csi_errors_read_as_grpc_go_prints_them() {
        let status = |code| {
            CsiError::from_status(
                "NodePublishVolume",
                "unix:///s",
                &tonic::Status::new(code, "boom"),
            )
        };
        assert_eq!(
            rpc_error_text(&status(tonic::Code::Internal)),
            "rpc error: code = Internal desc = boom"
        );
        assert_eq!(
            rpc_error_text(&status(tonic::Code::Cancelled)),
            "rpc error: code = Canceled desc = boom"
        );
        assert_eq!(
            rpc_error_text(&status(tonic::Code::FailedPrecondition)),
            "rpc error: code = FailedPrecondition desc = boom"
        );
        let timeout = CsiError::Timeout {
            op: "NodeStageVolume",
            endpoint: "unix:///s".into(),
            timeout: std::time::Duration::from_secs(1),
        };
        assert_eq!(
            rpc_error_text(&timeout),
            "rpc error: code = DeadlineExceeded desc = context deadline exceeded"
        );
    }
}
