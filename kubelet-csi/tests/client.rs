//! The CSI client against the example hostpath driver over real unix sockets (needs root:
//! the driver bind-mounts).

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kubelet_csi::proto::csi::v1 as csi;
use kubelet_csi::testing::{Fault, HostPathDriver, HostPathOptions, ServerHandle};
use kubelet_csi::{CsiClient, CsiClientOptions, CsiError, mount_capability};
use support::is_mounted;
use tonic::Code;

const DRIVER: &str = "hostpath.csi.kubelet.test";
const RWO: csi::volume_capability::access_mode::Mode =
    csi::volume_capability::access_mode::Mode::SingleNodeWriter;

struct Fixture {
    root: PathBuf,
    driver: HostPathDriver,
    server: ServerHandle,
    client: CsiClient,
}

async fn start(tmp: &Path) -> Fixture {
    support::init_tracing();
    let root = tmp.to_path_buf();
    let mut options = HostPathOptions::new(DRIVER, "node-a", root.join("driver-state"));
    options.max_volumes_per_node = 10;
    // A driver without block volumes: its refusal is one of the codes checked below.
    options.block = false;
    options.topology = BTreeMap::from([("topology.hostpath.test/node".into(), "node-a".into())]);
    let driver = HostPathDriver::new(options);
    let server = driver
        .serve(&root.join("plugins/hostpath/csi.sock"))
        .await
        .expect("serve driver");
    let endpoint = format!("unix://{}", server.socket().display());
    let client = CsiClient::connect(&endpoint, CsiClientOptions::default())
        .await
        .expect("connect");
    Fixture {
        root,
        driver,
        server,
        client,
    }
}

fn stage_request(volume: &str, staging: &Path) -> csi::NodeStageVolumeRequest {
    csi::NodeStageVolumeRequest {
        volume_id: volume.into(),
        staging_target_path: staging.display().to_string(),
        volume_capability: Some(mount_capability(RWO, "ext4", &[])),
        ..Default::default()
    }
}

fn publish_request(
    volume: &str,
    staging: &Path,
    target: &Path,
    readonly: bool,
) -> csi::NodePublishVolumeRequest {
    csi::NodePublishVolumeRequest {
        volume_id: volume.into(),
        staging_target_path: staging.display().to_string(),
        target_path: target.display().to_string(),
        volume_capability: Some(mount_capability(RWO, "ext4", &[])),
        readonly,
        ..Default::default()
    }
}

#[tokio::test]
async fn every_call_against_the_hostpath_driver() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let f = start(tmp.path()).await;
    let c = &f.client;

    let info = c.get_plugin_info().await.expect("GetPluginInfo");
    assert_eq!(info.name, DRIVER);
    let caps = c
        .get_plugin_capabilities()
        .await
        .expect("GetPluginCapabilities");
    assert!(caps.iter().any(|cap| matches!(
        &cap.r#type,
        Some(csi::plugin_capability::Type::Service(s))
            if s.r#type == csi::plugin_capability::service::Type::VolumeAccessibilityConstraints as i32
    )));
    assert!(c.probe().await.expect("Probe"));

    let node = c.node_get_info().await.expect("NodeGetInfo");
    assert_eq!(node.node_id, "node-a");
    assert_eq!(node.max_volumes_per_node, Some(10));
    assert_eq!(
        node.topology
            .get("topology.hostpath.test/node")
            .map(String::as_str),
        Some("node-a")
    );
    let node_caps = c
        .node_get_capabilities()
        .await
        .expect("NodeGetCapabilities");
    assert!(node_caps.stage_unstage_volume);
    assert!(node_caps.get_volume_stats);
    assert!(node_caps.expand_volume);
    assert!(node_caps.volume_condition);
    assert!(!node_caps.single_node_multi_writer);

    // Stage into the per-volume global directory (the caller creates it), twice: idempotent.
    let staging = f
        .root
        .join("plugins/kubernetes.io/csi/hostpath/vol-1/globalmount");
    std::fs::create_dir_all(&staging).expect("mkdir staging");
    c.node_stage_volume(stage_request("vol-1", &staging))
        .await
        .expect("NodeStageVolume");
    c.node_stage_volume(stage_request("vol-1", &staging))
        .await
        .expect("NodeStageVolume again");
    assert!(is_mounted(&staging));

    // Publish for two pods, one read-only; the parents exist, the driver creates the targets.
    let pods = f.root.join("pods");
    let rw = pods.join("uid-1/volumes/kubernetes.io~csi/data/mount");
    let ro = pods.join("uid-2/volumes/kubernetes.io~csi/data/mount");
    for target in [&rw, &ro] {
        std::fs::create_dir_all(target.parent().expect("parent")).expect("mkdir parent");
    }
    c.node_publish_volume(publish_request("vol-1", &staging, &rw, false))
        .await
        .expect("NodePublishVolume");
    c.node_publish_volume(publish_request("vol-1", &staging, &rw, false))
        .await
        .expect("NodePublishVolume again");
    c.node_publish_volume(publish_request("vol-1", &staging, &ro, true))
        .await
        .expect("NodePublishVolume read-only");
    assert!(is_mounted(&rw) && is_mounted(&ro));

    // A write through one pod's mount lands in the volume and shows through the other.
    std::fs::write(rw.join("hello"), "from pod 1").expect("write through the mount");
    let backing = f.root.join("driver-state/vol-1/hello");
    assert_eq!(
        std::fs::read_to_string(&backing).expect("backing file"),
        "from pod 1"
    );
    assert_eq!(
        std::fs::read_to_string(ro.join("hello")).expect("read ro"),
        "from pod 1"
    );
    let err = std::fs::write(ro.join("nope"), "x").expect_err("read-only mount");
    assert_eq!(err.kind(), std::io::ErrorKind::ReadOnlyFilesystem);

    let stats = c
        .node_get_volume_stats(
            "vol-1",
            &rw.display().to_string(),
            Some(&staging.display().to_string()),
        )
        .await
        .expect("NodeGetVolumeStats");
    let bytes = stats.bytes.expect("bytes usage");
    assert!(bytes.total > 0 && bytes.available <= bytes.total);
    assert!(stats.inodes.is_some());
    assert_eq!(stats.condition.map(|c| c.abnormal), Some(false));

    let capacity = c
        .node_expand_volume(csi::NodeExpandVolumeRequest {
            volume_id: "vol-1".into(),
            volume_path: rw.display().to_string(),
            staging_target_path: staging.display().to_string(),
            capacity_range: Some(csi::CapacityRange {
                required_bytes: 1 << 30,
                limit_bytes: 0,
            }),
            ..Default::default()
        })
        .await
        .expect("NodeExpandVolume");
    assert_eq!(capacity, Some(1 << 30));

    // Tear down in the order the kubelet does: every unpublish, then unstage. All idempotent.
    for target in [&rw, &ro] {
        let target = target.display().to_string();
        c.node_unpublish_volume("vol-1", &target)
            .await
            .expect("NodeUnpublishVolume");
        c.node_unpublish_volume("vol-1", &target)
            .await
            .expect("NodeUnpublishVolume again");
    }
    assert!(!is_mounted(&rw) && !rw.exists(), "target path removed");
    assert!(!ro.exists());
    let staging_str = staging.display().to_string();
    c.node_unstage_volume("vol-1", &staging_str)
        .await
        .expect("NodeUnstageVolume");
    c.node_unstage_volume("vol-1", &staging_str)
        .await
        .expect("NodeUnstageVolume again");
    assert!(!is_mounted(&staging));
    assert!(f.driver.mounts().is_empty());
    assert_eq!(
        std::fs::read_to_string(&backing).expect("data kept"),
        "from pod 1"
    );
    f.server.stop().await;
}

#[tokio::test]
async fn grpc_codes_map_to_final_or_uncertain() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let f = start(tmp.path()).await;
    let staging = f.root.join("staging");
    std::fs::create_dir_all(&staging).expect("mkdir");
    let target = f.root.join("target");

    // Codes the reference treats as "may still be in progress".
    for code in [
        Code::DeadlineExceeded,
        Code::Unavailable,
        Code::ResourceExhausted,
        Code::Aborted,
        Code::Cancelled,
    ] {
        f.driver
            .inject("NodeStageVolume", Fault::Status(code, "injected".into()));
        let err = f
            .client
            .node_stage_volume(stage_request("vol-2", &staging))
            .await
            .expect_err("injected failure");
        assert!(matches!(err, CsiError::Uncertain { .. }), "{code:?}: {err}");
        assert!(err.is_uncertain() && !err.is_final(), "{code:?}");
        assert_eq!(err.code(), Some(code));
    }
    // Every other code is final.
    for code in [
        Code::InvalidArgument,
        Code::NotFound,
        Code::AlreadyExists,
        Code::FailedPrecondition,
        Code::OutOfRange,
        Code::Internal,
        Code::Unknown,
        Code::PermissionDenied,
    ] {
        f.driver
            .inject("NodePublishVolume", Fault::Status(code, "injected".into()));
        let err = f
            .client
            .node_publish_volume(publish_request("vol-2", &staging, &target, false))
            .await
            .expect_err("injected failure");
        assert!(matches!(err, CsiError::Final { .. }), "{code:?}: {err}");
        assert!(err.is_final(), "{code:?}");
        assert_eq!(err.code(), Some(code));
    }
    let err = f
        .client
        .node_publish_volume(publish_request("vol-2", &staging, &target, false))
        .await
        .expect_err("still injected");
    assert!(!err.is_not_found());
    f.driver.clear("NodeStageVolume");
    f.driver.clear("NodePublishVolume");

    // The driver's own refusals: publish before stage, a block volume (not offered).
    let err = f
        .client
        .node_publish_volume(publish_request("vol-2", &staging, &target, false))
        .await
        .expect_err("not staged");
    assert_eq!(err.code(), Some(Code::FailedPrecondition));
    assert!(err.is_final());
    let mut block = stage_request("vol-2", &staging);
    block.volume_capability = Some(kubelet_csi::block_capability(RWO));
    let err = f.client.node_stage_volume(block).await.expect_err("block");
    assert_eq!(err.code(), Some(Code::InvalidArgument));
    let err = f
        .client
        .node_get_volume_stats("vol-2", "/nonexistent/path", None)
        .await
        .expect_err("stats of nothing");
    assert!(err.is_not_found());

    // Refused before sending.
    let err = f
        .client
        .node_stage_volume(stage_request("", &staging))
        .await
        .expect_err("no volume ID");
    assert!(matches!(err, CsiError::InvalidRequest { .. }), "{err}");
    let err = f
        .client
        .node_unpublish_volume("vol-2", "")
        .await
        .expect_err("no target");
    assert!(matches!(err, CsiError::InvalidRequest { .. }), "{err}");
    assert!(!f.driver.calls().iter().any(|c| c == "NodeUnpublishVolume"));
}

#[tokio::test]
async fn calls_are_bounded_by_the_timeout() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let f = start(tmp.path()).await;
    f.driver
        .inject("NodeGetInfo", Fault::Delay(Duration::from_secs(30)));
    let short = f.client.with_timeout(Duration::from_millis(300));
    let started = std::time::Instant::now();
    let err = short.node_get_info().await.expect_err("times out");
    assert!(started.elapsed() < Duration::from_secs(10), "bounded");
    assert!(
        matches!(
            err,
            CsiError::Timeout {
                op: "NodeGetInfo",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.is_uncertain());
    assert_eq!(err.code(), Some(Code::DeadlineExceeded));

    // The connection is still good for the next call.
    f.driver.clear("NodeGetInfo");
    assert_eq!(
        short
            .node_get_info()
            .await
            .expect("after the fault")
            .node_id,
        "node-a"
    );
    assert_eq!(
        f.client.timeout(),
        kubelet_csi::client::DEFAULT_CALL_TIMEOUT
    );
}

#[tokio::test]
async fn unreachable_driver() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let missing = tmp.path().join("nobody.sock");
    let options = CsiClientOptions {
        timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(2),
    };
    let err = CsiClient::connect(&missing.display().to_string(), options)
        .await
        .expect_err("no socket");
    assert!(matches!(err, CsiError::Connect { .. }), "{err}");
    assert!(err.is_uncertain());

    let lazy = CsiClient::connect_lazy(&missing.display().to_string(), options).expect("lazy");
    let err = lazy.probe().await.expect_err("no socket");
    assert!(err.is_uncertain(), "{err}");
    assert_eq!(err.code(), Some(Code::Unavailable));

    for bad in ["tcp://127.0.0.1:1", "relative.sock", "unix://", ""] {
        let err = CsiClient::connect_lazy(bad, options).expect_err(bad);
        assert!(
            matches!(err, CsiError::InvalidEndpoint { .. }),
            "{bad}: {err}"
        );
    }
}

#[tokio::test]
async fn the_client_redials_a_restarted_driver() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let f = start(tmp.path()).await;
    let socket = f.server.socket().to_path_buf();
    assert!(f.client.probe().await.expect("probe"));

    // The driver goes away: calls fail as "uncertain" (the driver may be mid-restart).
    f.server.stop().await;
    let err = f.client.probe().await.expect_err("driver gone");
    assert!(err.is_uncertain(), "{err}");

    // It comes back on the same socket: the same client reaches it again.
    let _server = f.driver.serve(&socket).await.expect("serve again");
    let deadline = tokio::time::Instant::now() + support::DEADLINE;
    loop {
        match f.client.probe().await {
            Ok(ready) => {
                assert!(ready);
                break;
            }
            Err(e) => {
                assert!(e.is_uncertain(), "{e}");
                assert!(tokio::time::Instant::now() < deadline, "no reconnect: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}
