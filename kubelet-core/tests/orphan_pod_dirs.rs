//! Scenario tests (fake runtime, paused time) of the housekeeping of orphaned pod
//! directories: `<root-dir>/pods/<uid>` of a pod that no source wants and the runtime does not
//! hold, as left by a pod deleted while the kubelet was down.
//!
//! - [`an_orphaned_pod_dir_is_torn_down_and_removed_once_the_sources_are_ready`]: nothing is
//!   touched before the source's first snapshot; then the subPath bind goes, each volume
//!   (and a block volume's map path below `volumeDevices/`) is torn down through the plugin
//!   owning its directory, and the directory is removed; a wanted pod's directory stays.
//! - [`a_dir_with_something_still_mounted_is_kept_and_retried`]: a volume whose unmount fails
//!   and a mount outside `volumes/` keep their directories (retried every housekeeping)
//!   without holding up another orphan; once unmounted they go. A volume no plugin owns keeps
//!   its directory.
//! - [`a_pod_of_the_same_uid_starts_only_after_the_cleanup`]: a pod that shows up while its
//!   old directory is being cleaned starts once the cleanup is over, on a fresh directory.

mod support {
    // Shared by the scenario test files; each uses part of it.
    #[allow(dead_code)]
    pub mod scenario;
}

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{CSIVolumeSource, Pod, Volume, VolumeMount};
use kubelet_core::VolumeError;
use kubelet_core::testing::pods::{container, pod};
use kubelet_core::volume::{FakeMounter, MountedVolume, Mounter, VolumeContext, VolumePlugin};
use support::scenario::{IMAGE, Node, runtime};

const PLUGIN: &str = "example.com/recording";
const PLUGIN_DIR: &str = "example.com~recording";

/// What the recording plugin was asked, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Setup(String, String),
    TeardownStart(String, String),
    /// Torn down; whether a subPath bind was still mounted when teardown started.
    TeardownDone(String, String, bool),
    TeardownFailed(String, String),
}

/// A volume plugin for `csi` volumes of driver `recording`: a plain directory at
/// `volumes/example.com~recording/<name>`; its teardown fails while the directory is a
/// mount point of the mounter (a busy device), optionally after a delay.
#[derive(Debug)]
struct RecordingPlugin {
    mounter: FakeMounter,
    ops: Mutex<Vec<Op>>,
    delay: Duration,
}

impl RecordingPlugin {
    fn new(mounter: FakeMounter, delay: Duration) -> Arc<Self> {
        Arc::new(Self {
            mounter,
            ops: Mutex::new(Vec::new()),
            delay,
        })
    }

    fn ops(&self) -> Vec<Op> {
        self.ops.lock().unwrap().clone()
    }

    fn record(&self, op: Op) {
        self.ops.lock().unwrap().push(op);
    }

    fn teardowns_done(&self, uid: &str) -> usize {
        self.ops()
            .iter()
            .filter(|op| matches!(op, Op::TeardownDone(u, ..) if u == uid))
            .count()
    }

    fn teardowns_failed(&self, uid: &str) -> usize {
        self.ops()
            .iter()
            .filter(|op| matches!(op, Op::TeardownFailed(u, ..) if u == uid))
            .count()
    }
}

#[async_trait]
impl VolumePlugin for RecordingPlugin {
    fn name(&self) -> &str {
        PLUGIN
    }

    fn can_support(&self, volume: &Volume) -> bool {
        volume.csi.as_ref().is_some_and(|c| c.driver == "recording")
    }

    async fn setup(
        &self,
        ctx: &VolumeContext<'_>,
        volume: &Volume,
    ) -> Result<MountedVolume, VolumeError> {
        let uid = ctx.pod.metadata.uid.clone().unwrap_or_default();
        let dir = ctx
            .pod_dir
            .join("volumes")
            .join(PLUGIN_DIR)
            .join(&volume.name);
        std::fs::create_dir_all(&dir).map_err(|source| VolumeError::Io {
            volume: volume.name.clone(),
            path: dir.clone(),
            source,
        })?;
        self.record(Op::Setup(uid, volume.name.clone()));
        Ok(MountedVolume {
            host_path: dir,
            ..MountedVolume::default()
        })
    }

    async fn teardown(
        &self,
        pod_uid: &str,
        pod_dir: &Path,
        volume_name: &str,
    ) -> Result<(), VolumeError> {
        let binds_left = !self.mounter.binds().is_empty();
        self.record(Op::TeardownStart(pod_uid.into(), volume_name.into()));
        tokio::time::sleep(self.delay).await;
        let dir = pod_dir.join("volumes").join(PLUGIN_DIR).join(volume_name);
        if self.mounter.is_mount_point(&dir).unwrap_or(true) {
            self.record(Op::TeardownFailed(pod_uid.into(), volume_name.into()));
            return Err(VolumeError::Other {
                volume: volume_name.into(),
                message: format!("unmount {}: device or resource busy", dir.display()),
            });
        }
        // A block volume's map path (a link to the device) goes too.
        let map = pod_dir
            .join("volumeDevices")
            .join(PLUGIN_DIR)
            .join(volume_name);
        for removed in [std::fs::remove_dir_all(&dir), std::fs::remove_file(&map)] {
            match removed {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(VolumeError::Io {
                        volume: volume_name.into(),
                        path: dir,
                        source,
                    });
                }
            }
        }
        self.record(Op::TeardownDone(
            pod_uid.into(),
            volume_name.into(),
            binds_left,
        ));
        Ok(())
    }
}

/// A pod dir as a pod with a `recording` volume `data` leaves it, plus a container's
/// directory and its hosts file.
fn leave_pod_dir(root: &Path, uid: &str) -> PathBuf {
    let dir = root.join("pods").join(uid);
    let data = dir.join("volumes").join(PLUGIN_DIR).join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("file"), "volume data").unwrap();
    std::fs::create_dir_all(dir.join("containers/app")).unwrap();
    std::fs::write(dir.join("etc-hosts"), "127.0.0.1 localhost\n").unwrap();
    dir
}

fn recording_pod(name: &str, uid: &str) -> Pod {
    pod(name)
        .uid(uid)
        .container(container("app", IMAGE))
        .spec(|s| {
            s.volumes = Some(vec![Volume {
                name: "data".into(),
                csi: Some(CSIVolumeSource {
                    driver: "recording".into(),
                    ..CSIVolumeSource::default()
                }),
                ..Volume::default()
            }]);
            if let Some(c) = s.containers.first_mut() {
                c.volume_mounts = Some(vec![VolumeMount {
                    name: "data".into(),
                    mount_path: "/data".into(),
                    ..VolumeMount::default()
                }]);
            }
        })
        .build()
}

/// A kubelet with the recording plugin, the fake mounter for everything, and `prepare`
/// run on its root directory before it starts.
fn start(
    plugin: &Arc<RecordingPlugin>,
    mounter: &FakeMounter,
    prepare: impl FnOnce(&Path),
) -> Node {
    let plugin = plugin.clone();
    let mounter = mounter.clone();
    Node::start_configured(
        runtime(),
        |config, _| prepare(&config.root_dir),
        // The built-in emptyDir plugin gets the same fake mounter.
        move |b| b.volume_plugin(plugin).mounter(Arc::new(mounter)),
    )
}

#[tokio::test(start_paused = true)]
async fn an_orphaned_pod_dir_is_torn_down_and_removed_once_the_sources_are_ready() {
    let mounter = FakeMounter::new();
    let plugin = RecordingPlugin::new(mounter.clone(), Duration::ZERO);
    let mut orphan = PathBuf::new();
    let mut bind = PathBuf::new();
    let node = start(&plugin, &mounter, |root| {
        orphan = leave_pod_dir(root, "uid-orphan");
        // An emptyDir of the same pod, and a subPath bind into the recording volume.
        std::fs::create_dir_all(orphan.join("volumes/kubernetes.io~empty-dir/cache")).unwrap();
        std::fs::write(orphan.join("volumes/kubernetes.io~empty-dir/cache/x"), "x").unwrap();
        bind = orphan.join("volume-subpaths/data/app/0");
        std::fs::create_dir_all(&bind).unwrap();
        let sub = orphan.join("volumes").join(PLUGIN_DIR).join("data/sub");
        std::fs::create_dir_all(&sub).unwrap();
        mounter.bind_mount(&sub, &bind).unwrap();
        // The map path of a block volume of the same plugin.
        let devices = orphan.join("volumeDevices").join(PLUGIN_DIR);
        std::fs::create_dir_all(&devices).unwrap();
        std::os::unix::fs::symlink("/dev/null", devices.join("blk")).unwrap();
        // The directory of a pod the source still wants.
        leave_pod_dir(root, "uid-web");
    });
    let web_dir = node.root.join("pods/uid-web");

    // The source has not spoken: the pod may just not be listed yet.
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert!(plugin.ops().is_empty(), "{:?}", plugin.ops());
    assert!(
        orphan
            .join("volumes")
            .join(PLUGIN_DIR)
            .join("data/file")
            .is_file()
    );
    assert!(mounter.binds().contains_key(&bind));

    node.pods.snapshot(vec![recording_pod("web", "uid-web")]);
    node.until(
        Duration::from_secs(60),
        "the orphaned pod dir removed",
        |_| !orphan.exists(),
    )
    .await;
    let ops = plugin.ops();
    assert!(
        ops.contains(&Op::TeardownDone("uid-orphan".into(), "data".into(), false)),
        "torn down after its subPath bind went: {ops:?}"
    );
    assert!(
        ops.contains(&Op::TeardownDone("uid-orphan".into(), "blk".into(), false)),
        "the block volume torn down: {ops:?}"
    );
    assert_eq!(mounter.unmounted(), vec![bind.clone()]);
    assert!(
        !ops.iter()
            .any(|op| matches!(op, Op::TeardownStart(u, _) if u == "uid-web")),
        "the wanted pod's volume stays: {ops:?}"
    );
    node.until(Duration::from_secs(30), "the wanted pod running", |n| {
        n.reporter.last_phase("uid-web").as_deref() == Some("Running")
    })
    .await;
    // Housekeeping goes on; the wanted pod's directory and volume stay.
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(
        web_dir
            .join("volumes")
            .join(PLUGIN_DIR)
            .join("data/file")
            .is_file()
    );
    assert_eq!(plugin.teardowns_done("uid-orphan"), 2, "{:?}", plugin.ops());
    node.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_dir_with_something_still_mounted_is_kept_and_retried() {
    let mounter = FakeMounter::new();
    let plugin = RecordingPlugin::new(mounter.clone(), Duration::ZERO);
    let (mut busy, mut clean, mut elsewhere, mut unowned) = Default::default();
    let node = start(&plugin, &mounter, |root| {
        // Its volume is a mount point whose unmount fails (busy).
        busy = leave_pod_dir(root, "uid-busy");
        mounter
            .mount_tmpfs(&busy.join("volumes").join(PLUGIN_DIR).join("data"), None)
            .unwrap();
        clean = leave_pod_dir(root, "uid-clean");
        // Its volume goes, but something else below it is still mounted.
        elsewhere = leave_pod_dir(root, "uid-elsewhere");
        std::fs::create_dir_all(elsewhere.join("plugins/x")).unwrap();
        mounter
            .mount_tmpfs(&elsewhere.join("plugins/x"), None)
            .unwrap();
        // A volume of a plugin this kubelet does not have.
        unowned = root.join("pods/uid-unowned/volumes/example.com~gone/v");
        std::fs::create_dir_all(&unowned).unwrap();
    });
    node.pods.snapshot(vec![]);
    node.until(Duration::from_secs(60), "the clean orphan removed", |_| {
        !clean.exists()
    })
    .await;
    node.until(Duration::from_secs(60), "the busy volume retried", |_| {
        plugin.teardowns_failed("uid-busy") >= 3
    })
    .await;
    assert!(
        busy.join("volumes")
            .join(PLUGIN_DIR)
            .join("data/file")
            .is_file()
    );
    assert!(busy.join("etc-hosts").is_file());
    assert_eq!(plugin.teardowns_done("uid-elsewhere"), 1);
    assert!(elsewhere.join("plugins/x").is_dir());
    assert!(
        elsewhere.join("etc-hosts").is_file(),
        "nothing removed below a mount"
    );
    assert!(unowned.is_dir());

    // The busy user goes away: the next housekeeping finishes the job.
    mounter
        .unmount(&busy.join("volumes").join(PLUGIN_DIR).join("data"))
        .unwrap();
    mounter.unmount(&elsewhere.join("plugins/x")).unwrap();
    node.until(Duration::from_secs(30), "both kept dirs removed", |_| {
        !busy.exists() && !elsewhere.exists()
    })
    .await;
    assert_eq!(plugin.teardowns_done("uid-busy"), 1);
    assert!(unowned.is_dir(), "no plugin to tear it down: kept");
    node.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_pod_of_the_same_uid_starts_only_after_the_cleanup() {
    let mounter = FakeMounter::new();
    let plugin = RecordingPlugin::new(mounter.clone(), Duration::from_secs(5));
    let node = start(&plugin, &mounter, |root| {
        leave_pod_dir(root, "uid-back");
    });
    node.pods.snapshot(vec![]);
    node.until(Duration::from_secs(60), "the cleanup started", |_| {
        !plugin.ops().is_empty()
    })
    .await;
    // The pod comes back (e.g. a static manifest put back) while its teardown runs.
    node.pods.snapshot(vec![recording_pod("back", "uid-back")]);
    node.until(Duration::from_secs(60), "the pod running again", |n| {
        n.reporter.last_phase("uid-back").as_deref() == Some("Running")
    })
    .await;
    let ops = plugin.ops();
    let first_setup = ops
        .iter()
        .position(|op| matches!(op, Op::Setup(..)))
        .expect("set up again");
    let done = ops
        .iter()
        .position(|op| matches!(op, Op::TeardownDone(..)))
        .expect("torn down");
    assert!(
        done < first_setup,
        "the pod starts after the cleanup: {ops:?}"
    );
    let dir = node.root.join("pods/uid-back");
    assert!(dir.join("volumes").join(PLUGIN_DIR).join("data").is_dir());
    assert!(
        !dir.join("volumes")
            .join(PLUGIN_DIR)
            .join("data/file")
            .exists(),
        "a fresh volume"
    );
    // Wanted now: housekeeping leaves it alone.
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(plugin.teardowns_done("uid-back"), 1, "{:?}", plugin.ops());
    assert!(dir.join("volumes").join(PLUGIN_DIR).join("data").is_dir());
    node.shutdown().await;
}
