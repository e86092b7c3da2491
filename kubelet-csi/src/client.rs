//! [`CsiClient`]: the Identity and Node services of one CSI driver, over its unix socket.

use std::collections::BTreeMap;
use std::time::Duration;

use tonic::transport::Channel;
use tracing::Instrument;

use crate::endpoint::{self, call, request};
use crate::error::CsiError;
use crate::proto::csi::v1 as csi;
use crate::proto::csi::v1::identity_client::IdentityClient;
use crate::proto::csi::v1::node_client::NodeClient;

/// The reference kubelet's bound of one CSI call (`csiTimeout`, 2 min).
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(120);
/// Bound of dialling a driver's socket.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The reference kubelet's maximum gRPC message size, both ways.
const MAX_MESSAGE_SIZE: usize = 16 * 1024 * 1024;

/// Settings of a [`CsiClient`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CsiClientOptions {
    /// Bound of every call, also sent to the driver as the gRPC deadline.
    pub timeout: Duration,
    /// Bound of dialling the socket.
    pub connect_timeout: Duration,
}

impl Default for CsiClientOptions {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_CALL_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }
}

/// What `NodeGetInfo` says about this node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeInfo {
    /// The node's ID as the driver knows it (never empty).
    pub node_id: String,
    /// How many of the driver's volumes the node can take; `None` when the driver sets no
    /// limit (0 on the wire).
    pub max_volumes_per_node: Option<u64>,
    /// The node's topology segments (empty when the driver reports none).
    pub topology: BTreeMap<String, String>,
}

/// The Node service capabilities a driver reports (`NodeGetCapabilities`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeCapabilities {
    /// `STAGE_UNSTAGE_VOLUME`: stage once per node before publishing per pod.
    pub stage_unstage_volume: bool,
    /// `GET_VOLUME_STATS`.
    pub get_volume_stats: bool,
    /// `EXPAND_VOLUME`.
    pub expand_volume: bool,
    /// `VOLUME_CONDITION`.
    pub volume_condition: bool,
    /// `SINGLE_NODE_MULTI_WRITER`: the access modes 6 and 7 are understood.
    pub single_node_multi_writer: bool,
    /// `VOLUME_MOUNT_GROUP`: fsGroup may be passed as `volume_mount_group`.
    pub volume_mount_group: bool,
}

impl NodeCapabilities {
    /// Collect the RPC capabilities of a `NodeGetCapabilities` answer; unknown ones are
    /// ignored.
    pub fn from_response(resp: &csi::NodeGetCapabilitiesResponse) -> NodeCapabilities {
        use csi::node_service_capability::Type as Cap;
        use csi::node_service_capability::rpc::Type as Rpc;
        let mut caps = NodeCapabilities::default();
        for cap in &resp.capabilities {
            let Some(Cap::Rpc(rpc)) = &cap.r#type else {
                continue;
            };
            match Rpc::try_from(rpc.r#type) {
                Ok(Rpc::StageUnstageVolume) => caps.stage_unstage_volume = true,
                Ok(Rpc::GetVolumeStats) => caps.get_volume_stats = true,
                Ok(Rpc::ExpandVolume) => caps.expand_volume = true,
                Ok(Rpc::VolumeCondition) => caps.volume_condition = true,
                Ok(Rpc::SingleNodeMultiWriter) => caps.single_node_multi_writer = true,
                Ok(Rpc::VolumeMountGroup) => caps.volume_mount_group = true,
                Ok(Rpc::Unknown) | Err(_) => {}
            }
        }
        caps
    }
}

/// One unit of `NodeGetVolumeStats` usage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Available (free) amount.
    pub available: i64,
    /// Total capacity.
    pub total: i64,
    /// Used amount.
    pub used: i64,
}

/// What `NodeGetVolumeStats` says about a volume.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VolumeStats {
    /// Usage in bytes, when reported.
    pub bytes: Option<Usage>,
    /// Usage in inodes, when reported.
    pub inodes: Option<Usage>,
    /// The volume's condition, from drivers with `VOLUME_CONDITION`.
    pub condition: Option<csi::VolumeCondition>,
}

/// A CSI driver's Identity and Node services on a unix socket.
///
/// Cheap to clone: clones share one HTTP/2 connection, which redials by itself when the
/// driver restarts. Every call is bounded by the client's timeout (see
/// [`CsiClient::with_timeout`]) and fails with a [`CsiError`] that says whether the
/// operation may still be in progress.
///
/// The generated request types derive `Debug` including their `secrets`: do not log requests.
#[derive(Debug, Clone)]
pub struct CsiClient {
    /// The driver name, for logs (empty when not known).
    driver: String,
    endpoint: String,
    timeout: Duration,
    identity: IdentityClient<Channel>,
    node: NodeClient<Channel>,
}

fn require(op: &'static str, what: &str, value: &str) -> Result<(), CsiError> {
    if value.is_empty() {
        return Err(CsiError::InvalidRequest {
            op,
            reason: format!("missing {what}"),
        });
    }
    Ok(())
}

impl CsiClient {
    /// Dial the driver at `endpoint` (`unix:///path` or `/path`) now.
    pub async fn connect(endpoint: &str, options: CsiClientOptions) -> Result<Self, CsiError> {
        let path = endpoint::socket_path(endpoint)?;
        let channel = endpoint::connect(endpoint, &path, options.connect_timeout).await?;
        Ok(Self::from_channel(endpoint, channel, options.timeout))
    }

    /// A client that dials the driver at `endpoint` on its first call; connection failures
    /// then surface as [`CsiError::Uncertain`] with code `Unavailable`.
    pub fn connect_lazy(endpoint: &str, options: CsiClientOptions) -> Result<Self, CsiError> {
        let path = endpoint::socket_path(endpoint)?;
        let channel = endpoint::connect_lazy(&path, options.connect_timeout);
        Ok(Self::from_channel(endpoint, channel, options.timeout))
    }

    fn from_channel(endpoint: &str, channel: Channel, timeout: Duration) -> Self {
        let identity = IdentityClient::new(channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE);
        let node = NodeClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE);
        CsiClient {
            driver: String::new(),
            endpoint: endpoint.to_string(),
            timeout,
            identity,
            node,
        }
    }

    /// The same client, naming `driver` in its tracing spans.
    pub fn with_driver_name(mut self, driver: &str) -> Self {
        self.driver = driver.to_string();
        self
    }

    /// The driver name given with [`with_driver_name`](Self::with_driver_name).
    pub fn driver_name(&self) -> &str {
        &self.driver
    }

    /// The endpoint this client calls.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The bound of each call.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The same client (same connection) with another per-call timeout.
    pub fn with_timeout(&self, timeout: Duration) -> Self {
        let mut this = self.clone();
        this.timeout = timeout;
        this
    }

    /// One Identity call: the request with its deadline, bounded by the client's timeout,
    /// in a span naming the driver.
    async fn identity_rpc<Req, Resp, Fut>(
        &self,
        op: &'static str,
        req: Req,
        rpc: impl FnOnce(IdentityClient<Channel>, tonic::Request<Req>) -> Fut,
    ) -> Result<Resp, CsiError>
    where
        Fut: Future<Output = Result<tonic::Response<Resp>, tonic::Status>>,
    {
        let span =
            tracing::debug_span!("csi", op, driver = %self.driver, endpoint = %self.endpoint);
        call(
            op,
            &self.endpoint,
            self.timeout,
            rpc(self.identity.clone(), request(req, self.timeout)),
        )
        .instrument(span)
        .await
    }

    /// One Node call, as [`identity_rpc`](Self::identity_rpc), its span also naming the
    /// volume; at info level for the calls that change a volume.
    async fn node_rpc<Req, Resp, Fut>(
        &self,
        op: &'static str,
        volume: Option<&str>,
        changes: bool,
        req: Req,
        rpc: impl FnOnce(NodeClient<Channel>, tonic::Request<Req>) -> Fut,
    ) -> Result<Resp, CsiError>
    where
        Fut: Future<Output = Result<tonic::Response<Resp>, tonic::Status>>,
    {
        let volume = volume.unwrap_or_default();
        let span = if changes {
            tracing::info_span!("csi", op, driver = %self.driver, endpoint = %self.endpoint, volume)
        } else {
            tracing::debug_span!("csi", op, driver = %self.driver, endpoint = %self.endpoint, volume)
        };
        call(
            op,
            &self.endpoint,
            self.timeout,
            rpc(self.node.clone(), request(req, self.timeout)),
        )
        .instrument(span)
        .await
    }

    /// `GetPluginInfo`: the driver's name and version.
    pub async fn get_plugin_info(&self) -> Result<csi::GetPluginInfoResponse, CsiError> {
        const OP: &str = "GetPluginInfo";
        let resp = self
            .identity_rpc(OP, csi::GetPluginInfoRequest {}, |mut c, r| async move {
                c.get_plugin_info(r).await
            })
            .await?;
        if resp.name.is_empty() {
            return Err(CsiError::InvalidResponse {
                op: OP,
                endpoint: self.endpoint.clone(),
                reason: "empty driver name".into(),
            });
        }
        Ok(resp)
    }

    /// `GetPluginCapabilities`.
    pub async fn get_plugin_capabilities(&self) -> Result<Vec<csi::PluginCapability>, CsiError> {
        const OP: &str = "GetPluginCapabilities";
        let resp = self
            .identity_rpc(
                OP,
                csi::GetPluginCapabilitiesRequest {},
                |mut c, r| async move { c.get_plugin_capabilities(r).await },
            )
            .await?;
        Ok(resp.capabilities)
    }

    /// `Probe`: whether the driver is ready (an unset `ready` means ready, per the spec).
    pub async fn probe(&self) -> Result<bool, CsiError> {
        const OP: &str = "Probe";
        let resp = self
            .identity_rpc(OP, csi::ProbeRequest {}, |mut c, r| async move {
                c.probe(r).await
            })
            .await?;
        Ok(resp.ready.unwrap_or(true))
    }

    /// `NodeGetInfo`: the node ID, volume limit and topology the driver sees.
    pub async fn node_get_info(&self) -> Result<NodeInfo, CsiError> {
        const OP: &str = "NodeGetInfo";
        let resp = self
            .node_rpc(
                OP,
                None,
                false,
                csi::NodeGetInfoRequest {},
                |mut c, r| async move { c.node_get_info(r).await },
            )
            .await?;
        let invalid = |reason: &str| CsiError::InvalidResponse {
            op: OP,
            endpoint: self.endpoint.clone(),
            reason: reason.to_string(),
        };
        if resp.node_id.is_empty() {
            return Err(invalid("empty node ID"));
        }
        let max_volumes_per_node = match resp.max_volumes_per_node {
            0 => None,
            n => Some(u64::try_from(n).map_err(|_| invalid("negative max_volumes_per_node"))?),
        };
        Ok(NodeInfo {
            node_id: resp.node_id,
            max_volumes_per_node,
            topology: resp
                .accessible_topology
                .map(|t| t.segments.into_iter().collect())
                .unwrap_or_default(),
        })
    }

    /// `NodeGetCapabilities`.
    pub async fn node_get_capabilities(&self) -> Result<NodeCapabilities, CsiError> {
        const OP: &str = "NodeGetCapabilities";
        let resp = self
            .node_rpc(
                OP,
                None,
                false,
                csi::NodeGetCapabilitiesRequest {},
                |mut c, r| async move { c.node_get_capabilities(r).await },
            )
            .await?;
        Ok(NodeCapabilities::from_response(&resp))
    }

    /// `NodeStageVolume`: make the volume ready at its per-node staging path. Idempotent on
    /// the driver's side; after an [uncertain](CsiError::is_uncertain) failure, call again.
    pub async fn node_stage_volume(
        &self,
        req: csi::NodeStageVolumeRequest,
    ) -> Result<(), CsiError> {
        const OP: &str = "NodeStageVolume";
        require(OP, "volume ID", &req.volume_id)?;
        require(OP, "staging target path", &req.staging_target_path)?;
        if req.volume_capability.is_none() {
            return Err(CsiError::InvalidRequest {
                op: OP,
                reason: "missing volume capability".into(),
            });
        }
        let volume = req.volume_id.clone();
        self.node_rpc(OP, Some(&volume), true, req, |mut c, r| async move {
            c.node_stage_volume(r).await
        })
        .await?;
        Ok(())
    }

    /// `NodeUnstageVolume`: undo [`node_stage_volume`](Self::node_stage_volume).
    pub async fn node_unstage_volume(
        &self,
        volume_id: &str,
        staging_target_path: &str,
    ) -> Result<(), CsiError> {
        const OP: &str = "NodeUnstageVolume";
        require(OP, "volume ID", volume_id)?;
        require(OP, "staging target path", staging_target_path)?;
        let req = csi::NodeUnstageVolumeRequest {
            volume_id: volume_id.to_string(),
            staging_target_path: staging_target_path.to_string(),
        };
        self.node_rpc(OP, Some(volume_id), true, req, |mut c, r| async move {
            c.node_unstage_volume(r).await
        })
        .await?;
        Ok(())
    }

    /// `NodePublishVolume`: make the volume appear at `target_path` for one pod.
    pub async fn node_publish_volume(
        &self,
        req: csi::NodePublishVolumeRequest,
    ) -> Result<(), CsiError> {
        const OP: &str = "NodePublishVolume";
        require(OP, "volume ID", &req.volume_id)?;
        require(OP, "target path", &req.target_path)?;
        if req.volume_capability.is_none() {
            return Err(CsiError::InvalidRequest {
                op: OP,
                reason: "missing volume capability".into(),
            });
        }
        let volume = req.volume_id.clone();
        self.node_rpc(OP, Some(&volume), true, req, |mut c, r| async move {
            c.node_publish_volume(r).await
        })
        .await?;
        Ok(())
    }

    /// `NodeUnpublishVolume`: undo [`node_publish_volume`](Self::node_publish_volume).
    pub async fn node_unpublish_volume(
        &self,
        volume_id: &str,
        target_path: &str,
    ) -> Result<(), CsiError> {
        const OP: &str = "NodeUnpublishVolume";
        require(OP, "volume ID", volume_id)?;
        require(OP, "target path", target_path)?;
        let req = csi::NodeUnpublishVolumeRequest {
            volume_id: volume_id.to_string(),
            target_path: target_path.to_string(),
        };
        self.node_rpc(OP, Some(volume_id), true, req, |mut c, r| async move {
            c.node_unpublish_volume(r).await
        })
        .await?;
        Ok(())
    }

    /// `NodeGetVolumeStats` of the volume at `volume_path` (staged or published), with its
    /// staging path when the driver stages.
    pub async fn node_get_volume_stats(
        &self,
        volume_id: &str,
        volume_path: &str,
        staging_target_path: Option<&str>,
    ) -> Result<VolumeStats, CsiError> {
        const OP: &str = "NodeGetVolumeStats";
        require(OP, "volume ID", volume_id)?;
        require(OP, "volume path", volume_path)?;
        let req = csi::NodeGetVolumeStatsRequest {
            volume_id: volume_id.to_string(),
            volume_path: volume_path.to_string(),
            staging_target_path: staging_target_path.unwrap_or_default().to_string(),
        };
        let resp = self
            .node_rpc(OP, Some(volume_id), false, req, |mut c, r| async move {
                c.node_get_volume_stats(r).await
            })
            .await?;
        let mut stats = VolumeStats {
            condition: resp.volume_condition,
            ..VolumeStats::default()
        };
        for usage in resp.usage {
            let value = Usage {
                available: usage.available,
                total: usage.total,
                used: usage.used,
            };
            match csi::volume_usage::Unit::try_from(usage.unit) {
                Ok(csi::volume_usage::Unit::Bytes) => stats.bytes = Some(value),
                Ok(csi::volume_usage::Unit::Inodes) => stats.inodes = Some(value),
                _ => tracing::debug!(unit = usage.unit, "ignoring volume usage of unknown unit"),
            }
        }
        Ok(stats)
    }

    /// `NodeExpandVolume`: grow the filesystem of a staged or published volume. Returns the
    /// new capacity when the driver reports one.
    pub async fn node_expand_volume(
        &self,
        req: csi::NodeExpandVolumeRequest,
    ) -> Result<Option<i64>, CsiError> {
        const OP: &str = "NodeExpandVolume";
        require(OP, "volume ID", &req.volume_id)?;
        require(OP, "volume path", &req.volume_path)?;
        let volume = req.volume_id.clone();
        let resp = self
            .node_rpc(OP, Some(&volume), true, req, |mut c, r| async move {
                c.node_expand_volume(r).await
            })
            .await?;
        Ok((resp.capacity_bytes > 0).then_some(resp.capacity_bytes))
    }
}

/// A mount-type [`VolumeCapability`](csi::VolumeCapability) with `mode`, filesystem type
/// and mount flags.
pub fn mount_capability(
    mode: csi::volume_capability::access_mode::Mode,
    fs_type: &str,
    mount_flags: &[String],
) -> csi::VolumeCapability {
    csi::VolumeCapability {
        access_type: Some(csi::volume_capability::AccessType::Mount(
            csi::volume_capability::MountVolume {
                fs_type: fs_type.to_string(),
                mount_flags: mount_flags.to_vec(),
                volume_mount_group: String::new(),
            },
        )),
        access_mode: Some(csi::volume_capability::AccessMode { mode: mode.into() }),
    }
}

/// A block-type [`VolumeCapability`](csi::VolumeCapability) with `mode`.
pub fn block_capability(mode: csi::volume_capability::access_mode::Mode) -> csi::VolumeCapability {
    csi::VolumeCapability {
        access_type: Some(csi::volume_capability::AccessType::Block(
            csi::volume_capability::BlockVolume {},
        )),
        access_mode: Some(csi::volume_capability::AccessMode { mode: mode.into() }),
    }
}
