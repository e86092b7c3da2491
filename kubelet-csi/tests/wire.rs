//! Pins the wire format of the crate's protos to the field numbers and enum values of the CSI
//! spec (csi.proto, spec v1.x) and of k8s.io/kubelet pluginregistration/v1 (api.proto): each
//! message is encoded with one field set and the field's tag is checked.

use kubelet_csi::proto::csi::v1 as csi;
use kubelet_csi::proto::pluginregistration as reg;
use prost::Message;

/// The field number and wire type of the first field of an encoded message.
fn first_key(bytes: &[u8]) -> (u64, u8) {
    let mut key = 0u64;
    for (i, b) in bytes.iter().enumerate() {
        key |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            break;
        }
    }
    (key >> 3, (key & 7) as u8)
}

fn field<M: Message>(m: M) -> u64 {
    let bytes = m.encode_to_vec();
    assert!(!bytes.is_empty(), "nothing encoded");
    first_key(&bytes).0
}

fn s(v: &str) -> String {
    v.to_string()
}

fn map() -> std::collections::HashMap<String, String> {
    [(s("k"), s("v"))].into()
}

#[test]
fn identity_messages() {
    assert_eq!(
        field(csi::GetPluginInfoResponse {
            name: s("x"),
            ..Default::default()
        }),
        1
    );
    assert_eq!(
        field(csi::GetPluginInfoResponse {
            vendor_version: s("x"),
            ..Default::default()
        }),
        2
    );
    assert_eq!(
        field(csi::GetPluginInfoResponse {
            manifest: map(),
            ..Default::default()
        }),
        3
    );
    assert_eq!(
        field(csi::GetPluginCapabilitiesResponse {
            capabilities: vec![Default::default()]
        }),
        1
    );
    use csi::plugin_capability::{Service, Type, VolumeExpansion};
    assert_eq!(
        field(csi::PluginCapability {
            r#type: Some(Type::Service(Service::default()))
        }),
        1
    );
    assert_eq!(
        field(csi::PluginCapability {
            r#type: Some(Type::VolumeExpansion(VolumeExpansion::default()))
        }),
        2
    );
    assert_eq!(field(Service { r#type: 1 }), 1);
    assert_eq!(field(csi::ProbeResponse { ready: Some(false) }), 1);
    // ready is a google.protobuf.BoolValue: a nested message whose field 1 is the value.
    assert_eq!(
        csi::ProbeResponse { ready: Some(true) }.encode_to_vec(),
        [0x0a, 0x02, 0x08, 0x01]
    );

    use csi::plugin_capability::service::Type as S;
    assert_eq!(S::Unknown as i32, 0);
    assert_eq!(S::ControllerService as i32, 1);
    assert_eq!(S::VolumeAccessibilityConstraints as i32, 2);
    assert_eq!(S::GroupControllerService as i32, 3);
    assert_eq!(S::SnapshotMetadataService as i32, 4);
    use csi::plugin_capability::volume_expansion::Type as E;
    assert_eq!(
        (E::Unknown as i32, E::Online as i32, E::Offline as i32),
        (0, 1, 2)
    );
}

#[test]
fn shared_types() {
    use csi::volume_capability::{
        AccessMode, AccessType, BlockVolume, MountVolume, access_mode::Mode,
    };
    assert_eq!(
        field(csi::VolumeCapability {
            access_type: Some(AccessType::Block(BlockVolume {})),
            access_mode: None
        }),
        1
    );
    assert_eq!(
        field(csi::VolumeCapability {
            access_type: Some(AccessType::Mount(MountVolume::default())),
            access_mode: None
        }),
        2
    );
    assert_eq!(
        field(csi::VolumeCapability {
            access_type: None,
            access_mode: Some(AccessMode { mode: 0 })
        }),
        3
    );
    assert_eq!(
        field(MountVolume {
            fs_type: s("ext4"),
            ..Default::default()
        }),
        1
    );
    assert_eq!(
        field(MountVolume {
            mount_flags: vec![s("ro")],
            ..Default::default()
        }),
        2
    );
    assert_eq!(
        field(MountVolume {
            volume_mount_group: s("1000"),
            ..Default::default()
        }),
        3
    );
    assert_eq!(field(AccessMode { mode: 1 }), 1);
    let modes = [
        (Mode::Unknown, 0),
        (Mode::SingleNodeWriter, 1),
        (Mode::SingleNodeReaderOnly, 2),
        (Mode::MultiNodeReaderOnly, 3),
        (Mode::MultiNodeSingleWriter, 4),
        (Mode::MultiNodeMultiWriter, 5),
        (Mode::SingleNodeSingleWriter, 6),
        (Mode::SingleNodeMultiWriter, 7),
    ];
    for (mode, value) in modes {
        assert_eq!(mode as i32, value, "{mode:?}");
    }
    assert_eq!(
        field(csi::CapacityRange {
            required_bytes: 1,
            limit_bytes: 0
        }),
        1
    );
    assert_eq!(
        field(csi::CapacityRange {
            required_bytes: 0,
            limit_bytes: 1
        }),
        2
    );
    assert_eq!(field(csi::Topology { segments: map() }), 1);
}

#[test]
fn node_requests() {
    let stage = || csi::NodeStageVolumeRequest::default();
    assert_eq!(
        field(csi::NodeStageVolumeRequest {
            volume_id: s("v"),
            ..stage()
        }),
        1
    );
    assert_eq!(
        field(csi::NodeStageVolumeRequest {
            publish_context: map(),
            ..stage()
        }),
        2
    );
    assert_eq!(
        field(csi::NodeStageVolumeRequest {
            staging_target_path: s("/p"),
            ..stage()
        }),
        3
    );
    assert_eq!(
        field(csi::NodeStageVolumeRequest {
            volume_capability: Some(Default::default()),
            ..stage()
        }),
        4
    );
    assert_eq!(
        field(csi::NodeStageVolumeRequest {
            secrets: map(),
            ..stage()
        }),
        5
    );
    assert_eq!(
        field(csi::NodeStageVolumeRequest {
            volume_context: map(),
            ..stage()
        }),
        6
    );

    assert_eq!(
        field(csi::NodeUnstageVolumeRequest {
            volume_id: s("v"),
            ..Default::default()
        }),
        1
    );
    assert_eq!(
        field(csi::NodeUnstageVolumeRequest {
            staging_target_path: s("/p"),
            ..Default::default()
        }),
        2
    );

    let publish = || csi::NodePublishVolumeRequest::default();
    assert_eq!(
        field(csi::NodePublishVolumeRequest {
            volume_id: s("v"),
            ..publish()
        }),
        1
    );
    assert_eq!(
        field(csi::NodePublishVolumeRequest {
            publish_context: map(),
            ..publish()
        }),
        2
    );
    assert_eq!(
        field(csi::NodePublishVolumeRequest {
            staging_target_path: s("/p"),
            ..publish()
        }),
        3
    );
    assert_eq!(
        field(csi::NodePublishVolumeRequest {
            target_path: s("/t"),
            ..publish()
        }),
        4
    );
    assert_eq!(
        field(csi::NodePublishVolumeRequest {
            volume_capability: Some(Default::default()),
            ..publish()
        }),
        5
    );
    assert_eq!(
        field(csi::NodePublishVolumeRequest {
            readonly: true,
            ..publish()
        }),
        6
    );
    assert_eq!(
        field(csi::NodePublishVolumeRequest {
            secrets: map(),
            ..publish()
        }),
        7
    );
    assert_eq!(
        field(csi::NodePublishVolumeRequest {
            volume_context: map(),
            ..publish()
        }),
        8
    );

    assert_eq!(
        field(csi::NodeUnpublishVolumeRequest {
            volume_id: s("v"),
            ..Default::default()
        }),
        1
    );
    assert_eq!(
        field(csi::NodeUnpublishVolumeRequest {
            target_path: s("/t"),
            ..Default::default()
        }),
        2
    );

    assert_eq!(
        field(csi::NodeGetVolumeStatsRequest {
            volume_id: s("v"),
            ..Default::default()
        }),
        1
    );
    assert_eq!(
        field(csi::NodeGetVolumeStatsRequest {
            volume_path: s("/p"),
            ..Default::default()
        }),
        2
    );
    assert_eq!(
        field(csi::NodeGetVolumeStatsRequest {
            staging_target_path: s("/s"),
            ..Default::default()
        }),
        3
    );

    let expand = || csi::NodeExpandVolumeRequest::default();
    assert_eq!(
        field(csi::NodeExpandVolumeRequest {
            volume_id: s("v"),
            ..expand()
        }),
        1
    );
    assert_eq!(
        field(csi::NodeExpandVolumeRequest {
            volume_path: s("/p"),
            ..expand()
        }),
        2
    );
    assert_eq!(
        field(csi::NodeExpandVolumeRequest {
            capacity_range: Some(Default::default()),
            ..expand()
        }),
        3
    );
    assert_eq!(
        field(csi::NodeExpandVolumeRequest {
            staging_target_path: s("/s"),
            ..expand()
        }),
        4
    );
    assert_eq!(
        field(csi::NodeExpandVolumeRequest {
            volume_capability: Some(Default::default()),
            ..expand()
        }),
        5
    );
    assert_eq!(
        field(csi::NodeExpandVolumeRequest {
            secrets: map(),
            ..expand()
        }),
        6
    );
}

#[test]
fn node_responses() {
    assert_eq!(
        field(csi::NodeGetVolumeStatsResponse {
            usage: vec![Default::default()],
            volume_condition: None
        }),
        1
    );
    assert_eq!(
        field(csi::NodeGetVolumeStatsResponse {
            usage: vec![],
            volume_condition: Some(Default::default())
        }),
        2
    );
    assert_eq!(
        field(csi::VolumeUsage {
            available: 1,
            ..Default::default()
        }),
        1
    );
    assert_eq!(
        field(csi::VolumeUsage {
            total: 1,
            ..Default::default()
        }),
        2
    );
    assert_eq!(
        field(csi::VolumeUsage {
            used: 1,
            ..Default::default()
        }),
        3
    );
    assert_eq!(
        field(csi::VolumeUsage {
            unit: 1,
            ..Default::default()
        }),
        4
    );
    use csi::volume_usage::Unit;
    assert_eq!(
        (
            Unit::Unknown as i32,
            Unit::Bytes as i32,
            Unit::Inodes as i32
        ),
        (0, 1, 2)
    );
    assert_eq!(
        field(csi::VolumeCondition {
            abnormal: true,
            message: s("")
        }),
        1
    );
    assert_eq!(
        field(csi::VolumeCondition {
            abnormal: false,
            message: s("m")
        }),
        2
    );

    assert_eq!(
        field(csi::NodeGetCapabilitiesResponse {
            capabilities: vec![Default::default()]
        }),
        1
    );
    use csi::node_service_capability::{Rpc, Type, rpc::Type as R};
    assert_eq!(
        field(csi::NodeServiceCapability {
            r#type: Some(Type::Rpc(Rpc::default()))
        }),
        1
    );
    assert_eq!(field(Rpc { r#type: 1 }), 1);
    let rpcs = [
        (R::Unknown, 0),
        (R::StageUnstageVolume, 1),
        (R::GetVolumeStats, 2),
        (R::ExpandVolume, 3),
        (R::VolumeCondition, 4),
        (R::SingleNodeMultiWriter, 5),
        (R::VolumeMountGroup, 6),
    ];
    for (rpc, value) in rpcs {
        assert_eq!(rpc as i32, value, "{rpc:?}");
    }

    assert_eq!(
        field(csi::NodeGetInfoResponse {
            node_id: s("n"),
            ..Default::default()
        }),
        1
    );
    assert_eq!(
        field(csi::NodeGetInfoResponse {
            max_volumes_per_node: 1,
            ..Default::default()
        }),
        2
    );
    assert_eq!(
        field(csi::NodeGetInfoResponse {
            accessible_topology: Some(Default::default()),
            ..Default::default()
        }),
        3
    );
    assert_eq!(
        field(csi::NodeExpandVolumeResponse { capacity_bytes: 1 }),
        1
    );
}

#[test]
fn plugin_registration_messages() {
    assert_eq!(
        field(reg::PluginInfo {
            r#type: s("CSIPlugin"),
            ..Default::default()
        }),
        1
    );
    assert_eq!(
        field(reg::PluginInfo {
            name: s("n"),
            ..Default::default()
        }),
        2
    );
    assert_eq!(
        field(reg::PluginInfo {
            endpoint: s("/e"),
            ..Default::default()
        }),
        3
    );
    assert_eq!(
        field(reg::PluginInfo {
            supported_versions: vec![s("1.0.0")],
            ..Default::default()
        }),
        4
    );
    assert_eq!(
        field(reg::RegistrationStatus {
            plugin_registered: true,
            error: s("")
        }),
        1
    );
    assert_eq!(
        field(reg::RegistrationStatus {
            plugin_registered: false,
            error: s("e")
        }),
        2
    );
}

#[test]
fn grpc_paths() {
    // Service and method names as the spec names them: the generated clients use these paths.
    use kubelet_csi::proto::csi::v1::identity_server::IdentityServer;
    use kubelet_csi::proto::csi::v1::node_server::NodeServer;
    use kubelet_csi::proto::pluginregistration::registration_server::RegistrationServer;
    use tonic::server::NamedService;
    assert_eq!(
        <IdentityServer<kubelet_csi::testing::HostPathDriver> as NamedService>::NAME,
        "csi.v1.Identity"
    );
    assert_eq!(
        <NodeServer<kubelet_csi::testing::HostPathDriver> as NamedService>::NAME,
        "csi.v1.Node"
    );
    let registration = <RegistrationServer<Dummy> as NamedService>::NAME;
    assert_eq!(registration, "pluginregistration.Registration");
}

struct Dummy;

#[tonic::async_trait]
impl kubelet_csi::proto::pluginregistration::registration_server::Registration for Dummy {
    async fn get_info(
        &self,
        _: tonic::Request<reg::InfoRequest>,
    ) -> Result<tonic::Response<reg::PluginInfo>, tonic::Status> {
        Err(tonic::Status::unimplemented("dummy"))
    }
    async fn notify_registration_status(
        &self,
        _: tonic::Request<reg::RegistrationStatus>,
    ) -> Result<tonic::Response<reg::RegistrationStatusResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("dummy"))
    }
}
