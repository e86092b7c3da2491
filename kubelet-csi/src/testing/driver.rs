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
        }
    }
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
    /// RPC names in the order they were called.
    calls: Vec<String>,
}

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
        self.lock().faults.insert(op.to_string(), fault);
    }

    /// Remove the fault of `op`.
    pub fn clear(&self, op: &str) {
        self.lock().faults.remove(op);
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

    /// Lazily unmount everything the driver still has mounted (deepest first).
    pub fn unmount_all(&self) {
        let mut mounts: Vec<PathBuf> = self.lock().mounts.drain().collect();
        mounts.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for mount in mounts {
            if let Err(e) = nix::mount::umount2(&mount, MntFlags::MNT_DETACH) {
                tracing::warn!(path = %mount.display(), error = %e, "cleanup unmount failed");
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Record the call of `op` and apply its fault, if any.
    async fn enter(&self, op: &str) -> Result<(), Status> {
        let fault = {
            let mut state = self.lock();
            state.calls.push(op.to_string());
            state.faults.get(op).cloned()
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

/// The hostpath driver serves mounted filesystems only.
fn require_mount(cap: Option<&csi::VolumeCapability>) -> Result<(), Status> {
    let cap =
        cap.ok_or_else(|| Status::invalid_argument("volume capability missing in request"))?;
    match cap.access_type {
        Some(csi::volume_capability::AccessType::Mount(_)) => Ok(()),
        Some(csi::volume_capability::AccessType::Block(_)) => Err(Status::invalid_argument(
            "block access type is not supported by the hostpath test driver",
        )),
        None => Err(Status::invalid_argument("access type missing in request")),
    }
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
        require_mount(req.volume_capability.as_ref())?;
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
            unmount(&staging)?;
            let mut state = self.lock();
            state.mounts.remove(&staging);
            state.staged.remove(&req.volume_id);
        }
        Ok(Response::new(csi::NodeUnstageVolumeResponse {}))
    }

    async fn node_publish_volume(
        &self,
        request: Request<csi::NodePublishVolumeRequest>,
    ) -> Result<Response<csi::NodePublishVolumeResponse>, Status> {
        self.enter("NodePublishVolume").await?;
        let req = request.into_inner();
        self.volume_dir(&req.volume_id)?;
        let target = require_path("target path", &req.target_path)?;
        require_mount(req.volume_capability.as_ref())?;
        if req.staging_target_path.is_empty() {
            return Err(Status::failed_precondition(
                "staging target path not set (the driver has STAGE_UNSTAGE_VOLUME)",
            ));
        }
        let staging = PathBuf::from(&req.staging_target_path);
        {
            let state = self.lock();
            if state.staged.get(&req.volume_id) != Some(&staging) {
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
        // The SP deletes what it created at the target path.
        match std::fs::remove_dir(&target) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(internal("remove", &target, e));
            }
            _ => {}
        }
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
        let capabilities = [
            rpc::Type::StageUnstageVolume,
            rpc::Type::GetVolumeStats,
            rpc::Type::ExpandVolume,
            rpc::Type::VolumeCondition,
        ]
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
