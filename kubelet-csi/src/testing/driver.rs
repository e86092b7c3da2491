//! [`HostPathDriver`]: a hostpath-style CSI node driver over a real unix-socket gRPC server.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::mount::{MntFlags, MsFlags};
use tonic::{Code, Request, Response, Status};

use crate::error::CsiError;
use crate::proto::csi::v1 as csi;
use crate::proto::csi::v1::identity_server::{Identity, IdentityServer};
use crate::proto::csi::v1::node_server::{Node, NodeServer};
use crate::testing::server::{self, ServerHandle};
use crate::volume::block::loop_device;

/// A fault to inject into one RPC of the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this gRPC status instead of doing the work.
    Status(Code, String),
    /// Sleep this long before doing the work (to trip the caller's timeout).
    Delay(Duration),
}

/// Settings of a [`HostPathDriver`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPathOptions {
    /// The driver name (`GetPluginInfo`).
    pub name: String,
    /// The node ID (`NodeGetInfo`).
    pub node_id: String,
    /// `NodeGetInfo.max_volumes_per_node` (0: no limit).
    pub max_volumes_per_node: i64,
    /// `NodeGetInfo.accessible_topology` segments; when not empty the driver also announces
    /// `VOLUME_ACCESSIBILITY_CONSTRAINTS`.
    pub topology: BTreeMap<String, String>,
    /// Where the volumes' directories live (`<state_dir>/<volume_id>`).
    pub state_dir: PathBuf,
    /// Whether the driver announces `STAGE_UNSTAGE_VOLUME` (default true). Without it,
    /// `NodePublishVolume` bind-mounts the volume directory itself.
    pub stage_unstage: bool,
    /// Whether the driver announces `VOLUME_MOUNT_GROUP` (default false).
    pub volume_mount_group: bool,
    /// Whether the driver serves the access type `Block` (default true): a volume is then
    /// a backing file `<state_dir>/<volume_id>.img` attached to a loop device, whose node
    /// stage and publish bind-mount onto files. Without it, a `Block` capability is
    /// refused with `InvalidArgument`.
    pub block: bool,
    /// The size of a block volume's backing file (default 8 MiB, sparse).
    pub block_size_bytes: u64,
}

impl HostPathOptions {
    /// A driver `name` on node `node_id` keeping volumes under `state_dir`.
    pub fn new(name: &str, node_id: &str, state_dir: PathBuf) -> Self {
        HostPathOptions {
            name: name.to_string(),
            node_id: node_id.to_string(),
            max_volumes_per_node: 0,
            topology: BTreeMap::new(),
            state_dir,
            stage_unstage: true,
            volume_mount_group: false,
            block: true,
            block_size_bytes: 8 << 20,
        }
    }
}

/// A stage or publish request as the driver received it, for tests to check what the
/// kubelet sent (secrets included: this is a test driver).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordedRequest {
    /// `NodeStageVolume` or `NodePublishVolume`.
    pub op: String,
    /// The volume ID.
    pub volume_id: String,
    /// The staging path (empty when not staged).
    pub staging_target_path: String,
    /// The publish target (empty for stage).
    pub target_path: String,
    /// `volume_context`.
    pub volume_context: BTreeMap<String, String>,
    /// `publish_context`.
    pub publish_context: BTreeMap<String, String>,
    /// `secrets`.
    pub secrets: BTreeMap<String, String>,
    /// `readonly` (publish only).
    pub readonly: bool,
    /// The mount capability's filesystem type.
    pub fs_type: String,
    /// The mount capability's `volume_mount_group`.
    pub volume_mount_group: String,
    /// The access mode.
    pub access_mode: i32,
    /// Whether the capability's access type is `Block` (else `Mount`).
    pub block: bool,
}

impl RecordedRequest {
    fn capability(mut self, cap: Option<&csi::VolumeCapability>) -> Self {
        if let Some(cap) = cap {
            match &cap.access_type {
                Some(csi::volume_capability::AccessType::Mount(m)) => {
                    self.fs_type = m.fs_type.clone();
                    self.volume_mount_group = m.volume_mount_group.clone();
                }
                Some(csi::volume_capability::AccessType::Block(_)) => self.block = true,
                None => {}
            }
            self.access_mode = cap.access_mode.as_ref().map_or(0, |m| m.mode);
        }
        self
    }
}

fn sorted(map: &HashMap<String, String>) -> BTreeMap<String, String> {
    map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

#[derive(Debug, Default)]
struct State {
    /// Staged volumes: volume ID -> staging path.
    staged: HashMap<String, PathBuf>,
    /// Published target paths -> volume ID.
    published: HashMap<PathBuf, String>,
    /// Every mount point this driver made and has not unmounted, for cleanup on drop.
    mounts: HashSet<PathBuf>,
    /// Injected faults by RPC name (e.g. `NodePublishVolume`).
    faults: HashMap<String, Fault>,
    /// How many more calls an injected fault applies to (absent: every call).
    fault_counts: HashMap<String, usize>,
    /// Stage and publish requests in the order they came.
    requests: Vec<RecordedRequest>,
    /// RPC names in the order they were called.
    calls: Vec<String>,
    /// Block volumes attached to a loop device: volume ID -> loop device.
    loops: HashMap<String, PathBuf>,
}

/// The file below a block volume's staging directory that the loop device is bind-mounted
/// onto.
pub const STAGED_DEVICE_FILE: &str = "device";

/// A hostpath-style CSI node driver (see the [module](crate::testing) docs). Cheap to clone:
/// clones share state, so a test can inject faults into a serving driver.
#[derive(Debug, Clone)]
pub struct HostPathDriver {
    options: Arc<HostPathOptions>,
    state: Arc<Mutex<State>>,
}

impl HostPathDriver {
    /// A driver with `options`.
    pub fn new(options: HostPathOptions) -> Self {
        HostPathDriver {
            options: Arc::new(options),
            state: Arc::default(),
        }
    }

    /// Serve Identity and Node on `socket`. Dropping the handle stops the server, removes the
    /// socket and unmounts whatever the driver still has mounted.
    pub async fn serve(&self, socket: &Path) -> Result<ServerHandle, CsiError> {
        let router = tonic::transport::Server::builder()
            .add_service(IdentityServer::new(self.clone()))
            .add_service(NodeServer::new(self.clone()));
        let driver = self.clone();
        Ok(server::serve(router, socket)
            .await?
            .on_stop(move || driver.unmount_all()))
    }

    /// Inject `fault` into every later call of the RPC `op` (e.g. `"NodePublishVolume"`).
    pub fn inject(&self, op: &str, fault: Fault) {
        let mut state = self.lock();
        state.faults.insert(op.to_string(), fault);
        state.fault_counts.remove(op);
    }

    /// Inject `fault` into the next `times` calls of `op` only.
    pub fn inject_times(&self, op: &str, fault: Fault, times: usize) {
        let mut state = self.lock();
        state.faults.insert(op.to_string(), fault);
        state.fault_counts.insert(op.to_string(), times);
    }

    /// Remove the fault of `op`.
    pub fn clear(&self, op: &str) {
        let mut state = self.lock();
        state.faults.remove(op);
        state.fault_counts.remove(op);
    }

    /// How many times `op` was called so far.
    pub fn count(&self, op: &str) -> usize {
        self.lock().calls.iter().filter(|c| *c == op).count()
    }

    /// The stage and publish requests received so far (after fault injection: a request
    /// answered with an injected fault is not recorded).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().requests.clone()
    }

    /// The directory holding volume `volume_id`'s data.
    pub fn volume_path(&self, volume_id: &str) -> PathBuf {
        self.options.state_dir.join(volume_id)
    }

    /// The volumes staged now, with their staging paths.
    pub fn staged(&self) -> BTreeMap<String, PathBuf> {
        self.lock()
            .staged
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The publish targets now, with their volume IDs.
    pub fn published(&self) -> BTreeMap<PathBuf, String> {
        self.lock()
            .published
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The RPCs called so far, in order.
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    /// The mount points the driver made and has not unmounted.
    pub fn mounts(&self) -> Vec<PathBuf> {
        let mut mounts: Vec<_> = self.lock().mounts.iter().cloned().collect();
        mounts.sort();
        mounts
    }

    /// Lazily unmount everything the driver still has mounted (deepest first), and detach
    /// its loop devices.
    pub fn unmount_all(&self) {
        let mut mounts: Vec<PathBuf> = self.lock().mounts.drain().collect();
        mounts.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for mount in mounts {
            if let Err(e) = nix::mount::umount2(&mount, MntFlags::MNT_DETACH) {
                tracing::warn!(path = %mount.display(), error = %e, "cleanup unmount failed");
            }
        }
        let loops: Vec<PathBuf> = self.lock().loops.drain().map(|(_, d)| d).collect();
        for device in loops {
            if let Err(e) = loop_device::detach(&device) {
                tracing::warn!(device = %device.display(), error = %e, "cleanup loop detach failed");
            }
        }
    }

    /// The backing file of block volume `volume_id`.
    pub fn block_path(&self, volume_id: &str) -> PathBuf {
        self.options.state_dir.join(format!("{volume_id}.img"))
    }

    /// The block volumes attached to a loop device now, with their loop devices.
    pub fn loop_devices(&self) -> BTreeMap<String, PathBuf> {
        self.lock()
            .loops
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Delete volume `volume_id` (as `DeleteVolume` would): detach its loop device and remove
    /// its backing file or directory. Refused while it is staged or published.
    pub fn delete_volume(&self, volume_id: &str) -> Result<(), Status> {
        let dir = self.volume_dir(volume_id)?;
        {
            let state = self.lock();
            if state.staged.contains_key(volume_id)
                || state.published.values().any(|v| v == volume_id)
            {
                return Err(Status::failed_precondition(format!(
                    "volume {volume_id} is in use"
                )));
            }
        }
        self.detach_block(volume_id)?;
        let file = self.block_path(volume_id);
        match std::fs::remove_file(&file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(internal("remove", &file, e));
            }
            _ => {}
        }
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(internal("remove", &dir, e)),
            _ => Ok(()),
        }
    }

    /// The loop device of block volume `volume_id`, attaching its backing file (made on
    /// first use) when it has none.
    fn attach_block(&self, volume_id: &str) -> Result<PathBuf, Status> {
        self.volume_dir(volume_id)?;
        if let Some(device) = self.lock().loops.get(volume_id) {
            return Ok(device.clone());
        }
        let file = self.block_path(volume_id);
        std::fs::create_dir_all(&self.options.state_dir)
            .map_err(|e| internal("create", &self.options.state_dir, e))?;
        let backing = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&file)
            .map_err(|e| internal("create", &file, e))?;
        if backing.metadata().map(|m| m.len()).unwrap_or(0) < self.options.block_size_bytes {
            backing
                .set_len(self.options.block_size_bytes)
                .map_err(|e| internal("size", &file, e))?;
        }
        drop(backing);
        let device = loop_device::attach(&file).map_err(|e| internal("attach", &file, e))?;
        self.lock()
            .loops
            .insert(volume_id.to_string(), device.clone());
        Ok(device)
    }

    /// Detach the loop device of `volume_id`, if it has one.
    fn detach_block(&self, volume_id: &str) -> Result<(), Status> {
        let device = self.lock().loops.get(volume_id).cloned();
        if let Some(device) = device {
            loop_device::detach(&device).map_err(|e| internal("detach", &device, e))?;
            self.lock().loops.remove(volume_id);
        }
        Ok(())
    }

    /// Detach `volume_id`'s loop device once it is neither staged nor published anywhere.
    fn detach_block_if_unused(&self, volume_id: &str) -> Result<(), Status> {
        let used = {
            let state = self.lock();
            state.staged.contains_key(volume_id) || state.published.values().any(|v| v == volume_id)
        };
        if used {
            return Ok(());
        }
        self.detach_block(volume_id)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Record the call of `op` and apply its fault, if any.
    async fn enter(&self, op: &str) -> Result<(), Status> {
        let fault = {
            let mut state = self.lock();
            state.calls.push(op.to_string());
            let fault = state.faults.get(op).cloned();
            if let Some(left) = state.fault_counts.get_mut(op) {
                *left = left.saturating_sub(1);
                if *left == 0 {
                    state.fault_counts.remove(op);
                    state.faults.remove(op);
                }
            }
            fault
        };
        match fault {
            None => Ok(()),
            Some(Fault::Status(code, message)) => Err(Status::new(code, message)),
            Some(Fault::Delay(d)) => {
                tokio::time::sleep(d).await;
                Ok(())
            }
        }
    }

    fn volume_dir(&self, volume_id: &str) -> Result<PathBuf, Status> {
        if volume_id.is_empty() || volume_id.contains('/') || volume_id.starts_with('.') {
            return Err(Status::invalid_argument(format!(
                "invalid volume ID {volume_id:?}"
            )));
        }
        Ok(self.options.state_dir.join(volume_id))
    }
}

fn internal(what: &str, path: &Path, e: impl std::fmt::Display) -> Status {
    Status::internal(format!("{what} {}: {e}", path.display()))
}

fn require_path(field: &str, value: &str) -> Result<PathBuf, Status> {
    if value.is_empty() {
        return Err(Status::invalid_argument(format!(
            "{field} missing in request"
        )));
    }
    if !value.starts_with('/') {
        return Err(Status::invalid_argument(format!(
            "{field} must be absolute"
        )));
    }
    Ok(PathBuf::from(value))
}

/// Whether the capability asks for a block volume (else a mounted filesystem); `Block` is
/// refused by a driver without [`HostPathOptions::block`].
fn access_is_block(
    cap: Option<&csi::VolumeCapability>,
    block_offered: bool,
) -> Result<bool, Status> {
    let cap =
        cap.ok_or_else(|| Status::invalid_argument("volume capability missing in request"))?;
    match cap.access_type {
        Some(csi::volume_capability::AccessType::Mount(_)) => Ok(false),
        Some(csi::volume_capability::AccessType::Block(_)) if block_offered => Ok(true),
        Some(csi::volume_capability::AccessType::Block(_)) => Err(Status::invalid_argument(
            "block access type is not supported by the hostpath test driver",
        )),
        None => Err(Status::invalid_argument("access type missing in request")),
    }
}

/// Create an empty file at `path` (the target of a device bind mount) unless one is there.
fn create_file(path: &Path) -> Result<(), Status> {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map(drop)
        .map_err(|e| internal("create", path, e))
}

fn bind_mount(source: &Path, target: &Path, read_only: bool) -> Result<(), Status> {
    nix::mount::mount(
        Some(source),
        target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| internal("bind mount onto", target, e))?;
    if read_only {
        let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
        if let Err(e) = nix::mount::mount(None::<&str>, target, None::<&str>, flags, None::<&str>) {
            let _ = nix::mount::umount2(target, MntFlags::MNT_DETACH);
            return Err(internal("read-only remount of", target, e));
        }
    }
    Ok(())
}

fn unmount(target: &Path) -> Result<(), Status> {
    match nix::mount::umount2(target, MntFlags::empty()) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(e) => Err(internal("unmount", target, e)),
    }
}

#[tonic::async_trait]
impl Identity for HostPathDriver {
    async fn get_plugin_info(
        &self,
        _request: Request<csi::GetPluginInfoRequest>,
    ) -> Result<Response<csi::GetPluginInfoResponse>, Status> {
        self.enter("GetPluginInfo").await?;
        Ok(Response::new(csi::GetPluginInfoResponse {
            name: self.options.name.clone(),
            vendor_version: env!("CARGO_PKG_VERSION").to_string(),
            manifest: Default::default(),
        }))
    }

    async fn get_plugin_capabilities(
        &self,
        _request: Request<csi::GetPluginCapabilitiesRequest>,
    ) -> Result<Response<csi::GetPluginCapabilitiesResponse>, Status> {
        self.enter("GetPluginCapabilities").await?;
        use csi::plugin_capability::{Service, Type, service};
        let mut capabilities = Vec::new();
        if !self.options.topology.is_empty() {
            capabilities.push(csi::PluginCapability {
                r#type: Some(Type::Service(Service {
                    r#type: service::Type::VolumeAccessibilityConstraints.into(),
                })),
            });
        }
        Ok(Response::new(csi::GetPluginCapabilitiesResponse {
            capabilities,
        }))
    }

    async fn probe(
        &self,
        _request: Request<csi::ProbeRequest>,
    ) -> Result<Response<csi::ProbeResponse>, Status> {
        self.enter("Probe").await?;
        Ok(Response::new(csi::ProbeResponse { ready: Some(true) }))
    }
}

#[tonic::async_trait]
impl Node for HostPathDriver {
    async fn node_stage_volume(
        &self,
        request: Request<csi::NodeStageVolumeRequest>,
    ) -> Result<Response<csi::NodeStageVolumeResponse>, Status> {
        self.enter("NodeStageVolume").await?;
        let req = request.into_inner();
        let source = self.volume_dir(&req.volume_id)?;
        let staging = require_path("staging target path", &req.staging_target_path)?;
        let block = access_is_block(req.volume_capability.as_ref(), self.options.block)?;
        self.lock().requests.push(
            RecordedRequest {
                op: "NodeStageVolume".into(),
                volume_id: req.volume_id.clone(),
                staging_target_path: req.staging_target_path.clone(),
                volume_context: sorted(&req.volume_context),
                publish_context: sorted(&req.publish_context),
                secrets: sorted(&req.secrets),
                ..RecordedRequest::default()
            }
            .capability(req.volume_capability.as_ref()),
        );
        if !self.options.stage_unstage {
            return Err(Status::unimplemented("NodeStageVolume is not offered"));
        }
        if let Some(existing) = self.lock().staged.get(&req.volume_id) {
            if *existing == staging {
                return Ok(Response::new(csi::NodeStageVolumeResponse {}));
            }
            return Err(Status::already_exists(format!(
                "volume {} is already staged at {}",
                req.volume_id,
                existing.display()
            )));
        }
        if !staging.is_dir() {
            return Err(Status::failed_precondition(format!(
                "staging target path {} is not a directory",
                staging.display()
            )));
        }
        if block {
            // The volume "attached to the node": its loop device, on a file below staging.
            let device = self.attach_block(&req.volume_id)?;
            let file = staging.join(STAGED_DEVICE_FILE);
            create_file(&file)?;
            if let Err(e) = bind_mount(&device, &file, false) {
                let _ = std::fs::remove_file(&file);
                self.detach_block_if_unused(&req.volume_id)?;
                return Err(e);
            }
            let mut state = self.lock();
            state.mounts.insert(file);
            state.staged.insert(req.volume_id, staging);
            return Ok(Response::new(csi::NodeStageVolumeResponse {}));
        }
        std::fs::create_dir_all(&source).map_err(|e| internal("create", &source, e))?;
        bind_mount(&source, &staging, false)?;
        let mut state = self.lock();
        state.mounts.insert(staging.clone());
        state.staged.insert(req.volume_id, staging);
        Ok(Response::new(csi::NodeStageVolumeResponse {}))
    }

    async fn node_unstage_volume(
        &self,
        request: Request<csi::NodeUnstageVolumeRequest>,
    ) -> Result<Response<csi::NodeUnstageVolumeResponse>, Status> {
        self.enter("NodeUnstageVolume").await?;
        let req = request.into_inner();
        self.volume_dir(&req.volume_id)?;
        let staging = require_path("staging target path", &req.staging_target_path)?;
        let staged_here = self.lock().staged.get(&req.volume_id) == Some(&staging);
        if staged_here {
            let device_file = staging.join(STAGED_DEVICE_FILE);
            if device_file.exists() {
                unmount(&device_file)?;
                std::fs::remove_file(&device_file)
                    .map_err(|e| internal("remove", &device_file, e))?;
                self.lock().mounts.remove(&device_file);
            }
            unmount(&staging)?;
            let mut state = self.lock();
            state.mounts.remove(&staging);
            state.staged.remove(&req.volume_id);
        }
        self.detach_block_if_unused(&req.volume_id)?;
        Ok(Response::new(csi::NodeUnstageVolumeResponse {}))
    }

    async fn node_publish_volume(
        &self,
        request: Request<csi::NodePublishVolumeRequest>,
    ) -> Result<Response<csi::NodePublishVolumeResponse>, Status> {
        self.enter("NodePublishVolume").await?;
        let req = request.into_inner();
        let volume_dir = self.volume_dir(&req.volume_id)?;
        let target = require_path("target path", &req.target_path)?;
        let block = access_is_block(req.volume_capability.as_ref(), self.options.block)?;
        self.lock().requests.push(
            RecordedRequest {
                op: "NodePublishVolume".into(),
                volume_id: req.volume_id.clone(),
                staging_target_path: req.staging_target_path.clone(),
                target_path: req.target_path.clone(),
                volume_context: sorted(&req.volume_context),
                publish_context: sorted(&req.publish_context),
                secrets: sorted(&req.secrets),
                readonly: req.readonly,
                ..RecordedRequest::default()
            }
            .capability(req.volume_capability.as_ref()),
        );
        // Without a staging path (inline ephemeral volumes, or a driver without
        // STAGE_UNSTAGE_VOLUME) the volume directory itself is published.
        let staged = !req.staging_target_path.is_empty();
        if !staged && !block {
            std::fs::create_dir_all(&volume_dir).map_err(|e| internal("create", &volume_dir, e))?;
        }
        let staging = if staged {
            PathBuf::from(&req.staging_target_path)
        } else {
            volume_dir
        };
        {
            let state = self.lock();
            if staged && state.staged.get(&req.volume_id) != Some(&staging) {
                return Err(Status::failed_precondition(format!(
                    "volume {} is not staged at {}",
                    req.volume_id,
                    staging.display()
                )));
            }
            match state.published.get(&target) {
                Some(volume) if *volume == req.volume_id => {
                    return Ok(Response::new(csi::NodePublishVolumeResponse {}));
                }
                Some(volume) => {
                    return Err(Status::already_exists(format!(
                        "target path {} holds volume {volume}",
                        target.display()
                    )));
                }
                None => {}
            }
        }
        if block {
            // The device, from its staged file or (not staged) its loop device, onto a
            // file the SP creates; the parent directory is the CO's.
            let device = if staged {
                staging.join(STAGED_DEVICE_FILE)
            } else {
                self.attach_block(&req.volume_id)?
            };
            create_file(&target)?;
            if let Err(e) = bind_mount(&device, &target, req.readonly) {
                let _ = std::fs::remove_file(&target);
                if !staged {
                    self.detach_block_if_unused(&req.volume_id)?;
                }
                return Err(e);
            }
            let mut state = self.lock();
            state.mounts.insert(target.clone());
            state.published.insert(target, req.volume_id);
            return Ok(Response::new(csi::NodePublishVolumeResponse {}));
        }
        // The SP creates the target path; its parent exists.
        std::fs::create_dir_all(&target).map_err(|e| internal("create", &target, e))?;
        bind_mount(&staging, &target, req.readonly)?;
        let mut state = self.lock();
        state.mounts.insert(target.clone());
        state.published.insert(target, req.volume_id);
        Ok(Response::new(csi::NodePublishVolumeResponse {}))
    }

    async fn node_unpublish_volume(
        &self,
        request: Request<csi::NodeUnpublishVolumeRequest>,
    ) -> Result<Response<csi::NodeUnpublishVolumeResponse>, Status> {
        self.enter("NodeUnpublishVolume").await?;
        let req = request.into_inner();
        self.volume_dir(&req.volume_id)?;
        let target = require_path("target path", &req.target_path)?;
        let published = self.lock().published.get(&target) == Some(&req.volume_id);
        if published {
            unmount(&target)?;
            let mut state = self.lock();
            state.mounts.remove(&target);
            state.published.remove(&target);
        }
        // The SP deletes what it created at the target path: a directory, or the file of a
        // block volume.
        let removed = if target.is_dir() {
            std::fs::remove_dir(&target)
        } else {
            std::fs::remove_file(&target)
        };
        match removed {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(internal("remove", &target, e));
            }
            _ => {}
        }
        // A block volume published without staging leaves the node with its last target.
        self.detach_block_if_unused(&req.volume_id)?;
        Ok(Response::new(csi::NodeUnpublishVolumeResponse {}))
    }

    async fn node_get_volume_stats(
        &self,
        request: Request<csi::NodeGetVolumeStatsRequest>,
    ) -> Result<Response<csi::NodeGetVolumeStatsResponse>, Status> {
        self.enter("NodeGetVolumeStats").await?;
        let req = request.into_inner();
        self.volume_dir(&req.volume_id)?;
        let path = require_path("volume path", &req.volume_path)?;
        if !path.exists() {
            return Err(Status::not_found(format!(
                "volume {} not found at {}",
                req.volume_id,
                path.display()
            )));
        }
        let st = nix::sys::statvfs::statvfs(&path).map_err(|e| internal("statvfs", &path, e))?;
        let frsize = i64::try_from(st.fragment_size()).unwrap_or(i64::MAX);
        let clamp = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let total = clamp(st.blocks()).saturating_mul(frsize);
        let available = clamp(st.blocks_available()).saturating_mul(frsize);
        let used = total.saturating_sub(clamp(st.blocks_free()).saturating_mul(frsize));
        let inodes = clamp(st.files());
        let inodes_free = clamp(st.files_free());
        Ok(Response::new(csi::NodeGetVolumeStatsResponse {
            usage: vec![
                csi::VolumeUsage {
                    available,
                    total,
                    used,
                    unit: csi::volume_usage::Unit::Bytes.into(),
                },
                csi::VolumeUsage {
                    available: inodes_free,
                    total: inodes,
                    used: inodes.saturating_sub(inodes_free),
                    unit: csi::volume_usage::Unit::Inodes.into(),
                },
            ],
            volume_condition: Some(csi::VolumeCondition {
                abnormal: false,
                message: "volume is healthy".into(),
            }),
        }))
    }

    async fn node_expand_volume(
        &self,
        request: Request<csi::NodeExpandVolumeRequest>,
    ) -> Result<Response<csi::NodeExpandVolumeResponse>, Status> {
        self.enter("NodeExpandVolume").await?;
        let req = request.into_inner();
        self.volume_dir(&req.volume_id)?;
        require_path("volume path", &req.volume_path)?;
        // A directory has no size to grow: report the requested one.
        let capacity_bytes = req.capacity_range.map(|r| r.required_bytes).unwrap_or(0);
        Ok(Response::new(csi::NodeExpandVolumeResponse {
            capacity_bytes,
        }))
    }

    async fn node_get_capabilities(
        &self,
        _request: Request<csi::NodeGetCapabilitiesRequest>,
    ) -> Result<Response<csi::NodeGetCapabilitiesResponse>, Status> {
        self.enter("NodeGetCapabilities").await?;
        use csi::node_service_capability::{Rpc, Type, rpc};
        let mut types = vec![
            rpc::Type::GetVolumeStats,
            rpc::Type::ExpandVolume,
            rpc::Type::VolumeCondition,
        ];
        if self.options.stage_unstage {
            types.push(rpc::Type::StageUnstageVolume);
        }
        if self.options.volume_mount_group {
            types.push(rpc::Type::VolumeMountGroup);
        }
        let capabilities = types
            .into_iter()
            .map(|t| csi::NodeServiceCapability {
                r#type: Some(Type::Rpc(Rpc { r#type: t.into() })),
            })
            .collect();
        Ok(Response::new(csi::NodeGetCapabilitiesResponse {
            capabilities,
        }))
    }

    async fn node_get_info(
        &self,
        _request: Request<csi::NodeGetInfoRequest>,
    ) -> Result<Response<csi::NodeGetInfoResponse>, Status> {
        self.enter("NodeGetInfo").await?;
        let accessible_topology = (!self.options.topology.is_empty()).then(|| csi::Topology {
            segments: self
                .options
                .topology
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        });
        Ok(Response::new(csi::NodeGetInfoResponse {
            node_id: self.options.node_id.clone(),
            max_volumes_per_node: self.options.max_volumes_per_node,
            accessible_topology,
        }))
    }
}
