//! Raw block CSI volumes (`volumeMode: Block`) through the CSI `VolumePlugin` against the
//! example hostpath driver over its real unix socket, with real loop devices and bind mounts
//! (needs root; skipped without unless `KUBELET_TEST_REQUIRE_ROOT=1`): the reference's
//! block mapper layout, stage / publish / map and the reverse, the access type `Block`, a
//! mapped volume left alone, and the refusals in the reference's words.

mod support;

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    Container, EphemeralVolumeSource, PersistentVolumeClaimVolumeSource, Pod, PodSpec, Volume,
    VolumeDevice, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kubelet_core::volume::{VolumeContext, VolumePlugin};
use kubelet_csi::testing::{
    HostPathDriver, HostPathOptions, ServerHandle, detach_loop_devices_under, loop_devices_under,
};
use kubelet_csi::{
    CsiVersion, CsiVolumeOptions, CsiVolumePlugin, DriverRegistry, NodeInfo, RegisteredDriver,
};
use support::is_mounted;
use support::objects::{DRIVER, NODE, TestObjects};

/// `csi.v1.VolumeCapability.AccessMode.Mode.SINGLE_NODE_WRITER`.
const SINGLE_NODE_WRITER: i32 = 1;

fn have_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    assert!(
        std::env::var("KUBELET_TEST_REQUIRE_ROOT").as_deref() != Ok("1"),
        "KUBELET_TEST_REQUIRE_ROOT=1 but not running as root"
    );
    eprintln!("skipping: needs root for loop devices and bind mounts");
    false
}

/// Everything a test made below its temporary directory goes, even when it fails: the
/// kubelet's bind mounts and loop devices (the driver's go with its server).
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        detach_loop_devices_under(&self.0);
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut mounts: Vec<PathBuf> = info
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .map(PathBuf::from)
            .filter(|m| m.starts_with(&self.0))
            .collect();
        mounts.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for m in mounts {
            let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

struct Fixture {
    root: PathBuf,
    driver: HostPathDriver,
    registry: DriverRegistry,
    objects: Arc<TestObjects>,
    // Drop order: the server (unmounts and detaches the driver's), then the rest, then
    // the directory.
    _server: ServerHandle,
    _cleanup: Cleanup,
    tmp: tempfile::TempDir,
}

impl Fixture {
    async fn start(configure: impl FnOnce(&mut HostPathOptions)) -> Fixture {
        support::init_tracing();
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("kubelet");
        let mut options = HostPathOptions::new(DRIVER, NODE, tmp.path().join("driver-state"));
        configure(&mut options);
        let driver = HostPathDriver::new(options);
        let server = driver
            .serve(&root.join("plugins/hostpath/csi.sock"))
            .await
            .expect("serve driver");
        let registry = DriverRegistry::new();
        registry.insert(RegisteredDriver {
            name: DRIVER.into(),
            endpoint: format!("unix://{}", server.socket().display()),
            registration_socket: root.join("plugins_registry/hostpath-reg.sock"),
            version: CsiVersion {
                major: 1,
                minor: 0,
                patch: 0,
            },
            node: NodeInfo {
                node_id: NODE.into(),
                ..Default::default()
            },
        });
        let objects = Arc::new(TestObjects::default());
        objects.put_driver_without_attachment();
        Fixture {
            root,
            driver,
            registry,
            objects,
            _server: server,
            _cleanup: Cleanup(tmp.path().to_path_buf()),
            tmp,
        }
    }

    fn plugin(&self) -> CsiVolumePlugin {
        CsiVolumePlugin::new(
            self.registry.clone(),
            self.objects.clone(),
            CsiVolumeOptions::new(self.root.clone(), NODE.into()),
        )
    }

    fn pod_dir(&self, pod: &Pod) -> PathBuf {
        self.root
            .join("pods")
            .join(pod.metadata.uid.as_deref().unwrap())
    }

    fn devices(&self) -> PathBuf {
        self.root.join("plugins/kubernetes.io/csi/volumeDevices")
    }

    fn loops(&self) -> Vec<(PathBuf, PathBuf)> {
        loop_devices_under(self.tmp.path())
    }
}

/// A pod `name` whose container maps (or, `mount`, mounts) the volume `data` of `source`.
fn pod(name: &str, uid: &str, source: Volume, mount: bool) -> Pod {
    let mut container = Container {
        name: "app".into(),
        ..Default::default()
    };
    if mount {
        container.volume_mounts = Some(vec![VolumeMount {
            name: "data".into(),
            mount_path: "/data".into(),
            ..Default::default()
        }]);
    } else {
        container.volume_devices = Some(vec![VolumeDevice {
            name: "data".into(),
            device_path: "/dev/xvda".into(),
        }]);
    }
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("ns".into()),
            uid: Some(uid.into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![container],
            volumes: Some(vec![Volume {
                name: "data".into(),
                ..source
            }]),
            ..Default::default()
        }),
        status: None,
    }
}

fn claim_volume(claim: &str) -> Volume {
    Volume {
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
            claim_name: claim.into(),
            read_only: None,
        }),
        ..Default::default()
    }
}

fn volume_of(pod: &Pod) -> Volume {
    pod.spec.as_ref().unwrap().volumes.as_ref().unwrap()[0].clone()
}

fn is_block_device(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_block_device())
}

/// Write `marker` at offset 4096 of the device behind `path`, and sync it.
fn write_marker(path: &Path, marker: &[u8]) {
    let mut dev = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open the mapped device");
    dev.seek(SeekFrom::Start(4096)).unwrap();
    dev.write_all(marker).unwrap();
    dev.sync_all().unwrap();
}

fn read_at(path: &Path, len: usize) -> Vec<u8> {
    let mut f = std::fs::File::open(path).expect("open");
    f.seek(SeekFrom::Start(4096)).unwrap();
    let mut buf = vec![0; len];
    f.read_exact(&mut buf).unwrap();
    buf
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_pv_is_staged_published_mapped_and_torn_down_in_reverse() {
    if !have_root() {
        return;
    }
    let f = Fixture::start(|_| {}).await;
    f.objects
        .put_claim_of_mode("claim", "pv-block", "vol-b", "Block", None);
    let plugin = f.plugin();
    let pod1 = pod("one", "uid-1", claim_volume("claim"), false);
    let pod2 = pod("two", "uid-2", claim_volume("claim"), false);
    let (dir1, dir2) = (f.pod_dir(&pod1), f.pod_dir(&pod2));

    let mounted = plugin
        .setup(&VolumeContext::new(&pod1, &dir1), &volume_of(&pod1))
        .await
        .expect("setup");
    let devices = f.devices();
    let staging = devices.join("staging/pv-block");
    let publish1 = devices.join("publish/pv-block/uid-1");
    let map_file1 = devices.join("pv-block/dev/uid-1");
    let link1 = dir1.join("volumeDevices/kubernetes.io~csi/pv-block");
    assert_eq!(mounted.block_device.as_deref(), Some(link1.as_path()));
    assert!(!mounted.read_only);

    // The driver saw a Block capability, the reference's staging and publish paths.
    let requests = f.driver.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    let (stage, publish) = (&requests[0], &requests[1]);
    assert_eq!(stage.op, "NodeStageVolume");
    assert_eq!(stage.staging_target_path, staging.display().to_string());
    assert!(stage.block && stage.fs_type.is_empty());
    assert_eq!(stage.access_mode, SINGLE_NODE_WRITER);
    assert_eq!(
        stage.volume_context.get("tier").map(String::as_str),
        Some("gold")
    );
    assert_eq!(publish.op, "NodePublishVolume");
    assert_eq!(publish.target_path, publish1.display().to_string());
    assert_eq!(publish.staging_target_path, staging.display().to_string());
    assert!(publish.block);

    // The map: publish file (the driver's bind of the device), the global map file bound
    // onto it and held open by a loop device, the pod's symlink to the publish file.
    assert!(is_mounted(&publish1) && is_block_device(&publish1));
    assert!(is_mounted(&map_file1) && is_block_device(&map_file1));
    assert_eq!(std::fs::read_link(&link1).unwrap(), publish1);
    assert!(is_block_device(&link1));
    assert!(devices.join("pv-block/data/vol_data.json").is_file());
    let loops = f.loops();
    assert!(
        loops.iter().any(|(_, b)| *b == map_file1),
        "descriptor lock on the global map file: {loops:?}"
    );
    assert!(
        loops
            .iter()
            .any(|(_, b)| *b == f.driver.block_path("vol-b")),
        "the driver's loop device: {loops:?}"
    );

    // What the pod writes to its device lands in the driver's backing file.
    write_marker(&link1, b"block-marker-1");
    assert_eq!(
        read_at(&f.driver.block_path("vol-b"), 14),
        b"block-marker-1"
    );

    // Mapped: later syncs and a restarted kubelet leave it alone.
    let calls = f.driver.calls().len();
    plugin
        .setup(&VolumeContext::new(&pod1, &dir1), &volume_of(&pod1))
        .await
        .expect("second sync");
    f.plugin()
        .setup(&VolumeContext::new(&pod1, &dir1), &volume_of(&pod1))
        .await
        .expect("after a restart");
    assert_eq!(
        f.driver.calls().len(),
        calls,
        "no driver call for a mapped volume: {:?}",
        f.driver.calls()
    );

    // A second pod: published for it, not staged again.
    plugin
        .setup(&VolumeContext::new(&pod2, &dir2), &volume_of(&pod2))
        .await
        .expect("setup of the second pod");
    assert_eq!(f.driver.count("NodeStageVolume"), 1);
    assert_eq!(f.driver.count("NodePublishVolume"), 2);
    assert_eq!(
        read_at(&dir2.join("volumeDevices/kubernetes.io~csi/pv-block"), 14),
        b"block-marker-1"
    );

    // The first pod goes: unmapped and unpublished, the volume stays staged.
    plugin
        .teardown("uid-1", &dir1, "data")
        .await
        .expect("teardown 1");
    assert!(!link1.exists() && std::fs::symlink_metadata(&link1).is_err());
    assert!(!is_mounted(&map_file1) && !map_file1.exists());
    assert!(!is_mounted(&publish1) && !publish1.exists());
    assert!(!dir1.join("volumeDevices").exists());
    assert_eq!(f.driver.count("NodeUnpublishVolume"), 1);
    assert_eq!(f.driver.count("NodeUnstageVolume"), 0);
    assert!(f.driver.staged().contains_key("vol-b"));
    support::eventually("the descriptor lock released", || {
        !f.loops().iter().any(|(_, b)| *b == map_file1)
    })
    .await;

    // The last pod goes: unpublished, then unstaged, and nothing is left.
    plugin
        .teardown("uid-2", &dir2, "data")
        .await
        .expect("teardown 2");
    let calls = f.driver.calls();
    let tail: Vec<&str> = calls
        .iter()
        .map(String::as_str)
        .filter(|c| c.starts_with("NodeUn"))
        .collect();
    assert_eq!(
        tail,
        [
            "NodeUnpublishVolume",
            "NodeUnpublishVolume",
            "NodeUnstageVolume"
        ]
    );
    assert!(f.driver.staged().is_empty() && f.driver.published().is_empty());
    assert!(f.driver.mounts().is_empty(), "{:?}", f.driver.mounts());
    // The kernel clears a detached loop device once its last opener is gone.
    support::eventually("no loop device left", || f.loops().is_empty()).await;
    for gone in [
        &staging,
        &devices.join("publish/pv-block"),
        &devices.join("pv-block"),
    ] {
        assert!(!gone.exists(), "{} left behind", gone.display());
    }
    // The data stays in the volume.
    assert_eq!(
        read_at(&f.driver.block_path("vol-b"), 14),
        b"block-marker-1"
    );
    // Teardown is idempotent.
    plugin
        .teardown("uid-2", &dir2, "data")
        .await
        .expect("again");
    f.driver.delete_volume("vol-b").expect("delete the volume");
    assert!(!f.driver.block_path("vol-b").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_driver_without_staging_publishes_the_device_directly() {
    if !have_root() {
        return;
    }
    let f = Fixture::start(|o| o.stage_unstage = false).await;
    // A generic ephemeral volume of volumeMode Block: its claim `<pod>-<volume>`.
    let uid = "uid-eph";
    f.objects
        .put_claim_of_mode("eph-data", "pv-eph", "vol-eph", "Block", Some(uid));
    let source = Volume {
        ephemeral: Some(EphemeralVolumeSource::default()),
        ..Default::default()
    };
    let p = pod("eph", uid, source, false);
    let dir = f.pod_dir(&p);
    let plugin = f.plugin();
    let mounted = plugin
        .setup(&VolumeContext::new(&p, &dir), &volume_of(&p))
        .await
        .expect("setup");
    let link = mounted.block_device.expect("a block volume");
    assert_eq!(f.driver.count("NodeStageVolume"), 0);
    let requests = f.driver.requests();
    assert_eq!(requests.len(), 1);
    assert!(requests[0].block && requests[0].staging_target_path.is_empty());
    assert!(!f.devices().join("staging/pv-eph").exists());
    write_marker(&link, b"eph");
    assert_eq!(read_at(&f.driver.block_path("vol-eph"), 3), b"eph");

    plugin.teardown(uid, &dir, "data").await.expect("teardown");
    assert_eq!(f.driver.count("NodeUnpublishVolume"), 1);
    assert_eq!(f.driver.count("NodeUnstageVolume"), 0);
    // The kernel clears a detached loop device once its last opener is gone.
    support::eventually("no loop device left", || f.loops().is_empty()).await;
    assert!(f.driver.mounts().is_empty());
    assert!(!f.devices().join("pv-eph").exists());
    assert!(!f.devices().join("publish/pv-eph").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_is_refused_in_the_references_words() {
    if !have_root() {
        return;
    }
    // A driver that does not serve the access type Block.
    let f = Fixture::start(|o| o.block = false).await;
    f.objects
        .put_claim_of_mode("claim", "pv-nob", "vol-nob", "Block", None);
    let p = pod("nob", "uid-nob", claim_volume("claim"), false);
    let dir = f.pod_dir(&p);
    let err = f
        .plugin()
        .setup(&VolumeContext::new(&p, &dir), &volume_of(&p))
        .await
        .expect_err("refused");
    assert_eq!(
        err.to_string(),
        "MapVolume.SetUpDevice failed for volume \"pv-nob\" : rpc error: code = InvalidArgument desc = block access type is not supported by the hostpath test driver"
    );
    assert_eq!(f.driver.count("NodePublishVolume"), 0);
    assert!(!f.devices().join("staging/pv-nob").exists());
    support::eventually("no loop device left", || f.loops().is_empty()).await;

    // volumeMounts of a Block PV, volumeDevices of a filesystem PV: the populator's words,
    // and no driver call.
    let calls = f.driver.calls().len();
    let mounted = pod("mnt", "uid-mnt", claim_volume("claim"), true);
    let err = f
        .plugin()
        .setup(
            &VolumeContext::new(&mounted, &f.pod_dir(&mounted)),
            &volume_of(&mounted),
        )
        .await
        .expect_err("refused");
    assert_eq!(
        err.to_string(),
        "volume data has volumeMode Block, but is specified in volumeMounts"
    );
    f.objects
        .put_claim_of_mode("fs-claim", "pv-fs", "vol-fs", "Filesystem", None);
    let mapped = pod("map", "uid-map", claim_volume("fs-claim"), false);
    let err = f
        .plugin()
        .setup(
            &VolumeContext::new(&mapped, &f.pod_dir(&mapped)),
            &volume_of(&mapped),
        )
        .await
        .expect_err("refused");
    assert_eq!(
        err.to_string(),
        "volume data has volumeMode Filesystem, but is specified in volumeDevices"
    );
    assert_eq!(f.driver.calls().len(), calls);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_publish_is_reported_and_retried() {
    if !have_root() {
        return;
    }
    let f = Fixture::start(|_| {}).await;
    f.objects
        .put_claim_of_mode("claim", "pv-retry", "vol-retry", "Block", None);
    f.driver.inject_times(
        "NodePublishVolume",
        kubelet_csi::testing::Fault::Status(tonic::Code::Internal, "boom".into()),
        1,
    );
    let p = pod("retry", "uid-retry", claim_volume("claim"), false);
    let dir = f.pod_dir(&p);
    let plugin = f.plugin();
    let err = plugin
        .setup(&VolumeContext::new(&p, &dir), &volume_of(&p))
        .await
        .expect_err("the publish fails");
    assert_eq!(
        err.to_string(),
        "MapVolume.MapPodDevice failed for volume \"pv-retry\" : rpc error: code = Internal desc = boom"
    );
    // Staged, not published, not mapped: no record of this pod, no symlink.
    assert!(f.driver.staged().contains_key("vol-retry"));
    assert!(!f.devices().join("pv-retry/data/pods/uid-retry").exists());
    assert!(!dir.join("volumeDevices").exists());

    // The next sync publishes and maps, without staging again.
    let mounted = plugin
        .setup(&VolumeContext::new(&p, &dir), &volume_of(&p))
        .await
        .expect("retried");
    assert!(is_block_device(&mounted.block_device.expect("block")));
    assert_eq!(f.driver.count("NodeStageVolume"), 1);
    assert_eq!(f.driver.count("NodePublishVolume"), 2);

    plugin
        .teardown("uid-retry", &dir, "data")
        .await
        .expect("teardown");
    assert_eq!(f.driver.count("NodeUnstageVolume"), 1);
    // The kernel clears a detached loop device once its last opener is gone.
    support::eventually("no loop device left", || f.loops().is_empty()).await;
    assert!(f.driver.mounts().is_empty());
}
