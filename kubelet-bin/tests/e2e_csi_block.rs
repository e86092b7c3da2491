//! End-to-end: a raw block CSI volume (`volumeMode: Block`, `volumeDevices`) on a real
//! containerd and the real API server (the envtest kube-apiserver with `KUBELET_TEST_ASSETS`,
//! else the fake one), through the example hostpath CSI driver (loop devices) started by the
//! test and registered into the daemon's `<root-dir>/plugins_registry/`.
//!
//! - [`block_pvc_is_mapped_into_the_container_and_unmapped_when_the_pod_goes`]: a Block PV
//!   and PVC bound by hand (no controllers run here); the pod's container sees `/dev/xvda`
//!   as a block device, writes a marker with `dd` and reads it back; the marker is in the
//!   driver's backing file on the host; a restarted kubelet leaves the mapped volume alone
//!   (no driver call, the same container); once the pod is deleted the volume is unmapped,
//!   unpublished and unstaged, and no loop device, mount or directory of it is left.
//!
//! Skipped when no containerd can run here (unless `KUBELET_TEST_REQUIRE_CONTAINERD=1`), or
//! without root (the driver makes loop devices and bind-mounts).

mod support {
    // Shared by several test binaries; each uses part of it.
    #[allow(dead_code)]
    pub mod cluster;
    #[allow(dead_code)]
    pub mod csi;
    #[allow(dead_code)]
    pub mod node;
}

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Pod;
use kube::api::DeleteParams;
use kubelet_csi::testing::{detach_loop_devices_under, loop_devices_under};
use std::time::Instant;

use support::cluster::{DEADLINE, IMAGE, POLL, SERVE, start_cluster};
use support::csi::{
    Driver, bind_claim_of_mode, eventually, have_root, put_csi_driver, root_dir, start_driver,
};
use support::node::{NODE, container, cri_log_lines, running_and_ready, runtime_id, uid};

const MARKER: &str = "blk-marker-e2e";

/// Mount points of this mount namespace below `dir`.
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|m| m.starts_with(dir))
        .collect()
}

/// Whatever the kubelet left below its root and the driver below its state directory goes,
/// even when the test fails: loop devices first, then mounts (deepest first).
struct Cleanup(Vec<PathBuf>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for dir in &self.0 {
            detach_loop_devices_under(dir);
            let mut mounts = mounts_under(dir);
            mounts.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
            for m in mounts {
                let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
            }
        }
    }
}

fn read_at(path: &Path, offset: u64, len: usize) -> Vec<u8> {
    let mut f = std::fs::File::open(path).expect("open the backing file");
    f.seek(SeekFrom::Start(offset)).expect("seek");
    let mut buf = vec![0; len];
    f.read_exact(&mut buf).expect("read");
    buf
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_pvc_is_mapped_into_the_container_and_unmapped_when_the_pod_goes() {
    if !have_root() {
        return;
    }
    let Some(mut cluster) = start_cluster(&[]).await else {
        return;
    };
    let root = root_dir(&cluster.node);
    let d = start_driver(&cluster.node).await;
    let _cleanup = Cleanup(vec![root.clone(), d.state.clone()]);
    put_csi_driver(&cluster, serde_json::json!({"attachRequired": false})).await;
    let (claims, volumes) = bind_claim_of_mode(
        &cluster,
        "block-claim",
        "block-pv-1",
        "e2e-block-1",
        "Block",
    )
    .await;

    // The container checks the device, writes the marker at offset 4096 with dd, reads it
    // back, then idles.
    let script = format!(
        "ls -l /dev/xvda; test -b /dev/xvda || exit 3; \
         printf {MARKER} | dd of=/dev/xvda bs=512 seek=8 conv=fsync 2>/dev/null || exit 4; \
         dd if=/dev/xvda bs=512 skip=8 count=1 2>/dev/null | grep -q {MARKER} || exit 5; \
         echo verified; {SERVE}"
    );
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "block-pod", "namespace": "default"},
        "spec": {
            "nodeName": NODE,
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "app",
                "image": IMAGE,
                "imagePullPolicy": "IfNotPresent",
                "command": ["sh", "-c", script],
                "volumeDevices": [{"name": "data", "devicePath": "/dev/xvda"}],
            }],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "block-claim"}}],
        },
    }))
    .expect("pod JSON");
    cluster.create_pod(&pod).await;
    let running = cluster
        .wait_pod("block-pod", "running", |p| running_and_ready(p, "app"))
        .await;
    let pod_uid = uid(&running);
    let id = container(&running, "app")
        .and_then(runtime_id)
        .expect("container id")
        .to_string();

    // The container's report: a block device at /dev/xvda, the marker read back.
    let mut lines = Vec::new();
    let deadline = Instant::now() + DEADLINE;
    while !lines.iter().any(|l: &String| l == "verified") {
        assert!(
            Instant::now() < deadline,
            "the container never verified its write: {lines:?}"
        );
        tokio::time::sleep(POLL).await;
        if let Some(status) = cluster.node.container_status(&id).await {
            lines = cri_log_lines(Path::new(&status.log_path))
                .into_iter()
                .map(|(_, line)| line)
                .collect();
        }
    }
    eprintln!("container output: {lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with('b') && l.ends_with("/dev/xvda")),
        "ls -l shows a block device: {lines:?}"
    );
    assert_eq!(
        cluster
            .node
            .exec(&id, "test -b /dev/xvda && ls -l /dev/xvda | grep -q '^b'")
            .await,
        0
    );
    // From the host: the marker is in the driver's backing file.
    let backing = d.driver.block_path("e2e-block-1");
    eventually("the marker in the driver's backing file", || {
        read_at(&backing, 4096, MARKER.len()) == MARKER.as_bytes()
    })
    .await;

    // The reference's layout on the node.
    let devices = root.join("plugins/kubernetes.io/csi/volumeDevices");
    let publish = devices.join("publish/block-pv-1").join(&pod_uid);
    let map_file = devices.join("block-pv-1/dev").join(&pod_uid);
    let link = root
        .join("pods")
        .join(&pod_uid)
        .join("volumeDevices/kubernetes.io~csi/block-pv-1");
    assert_eq!(
        std::fs::read_link(&link).expect("pod device map symlink"),
        publish
    );
    let mounted = mounts_under(&root);
    assert!(mounted.contains(&publish), "{mounted:?}");
    assert!(mounted.contains(&map_file), "{mounted:?}");
    assert_eq!(
        d.driver.staged().get("e2e-block-1"),
        Some(&devices.join("staging/block-pv-1"))
    );
    let loops_root = loop_devices_under(&root);
    let loops_state = loop_devices_under(&d.state);
    eprintln!("loop devices: kubelet {loops_root:?}, driver {loops_state:?}");
    assert_eq!(loops_root.len(), 1, "the kubelet's descriptor lock");
    assert_eq!(loops_state.len(), 1, "the driver's device");
    assert!(d.driver.requests().iter().all(|r| r.block));

    // A restarted kubelet finds the volume mapped and leaves it alone: no driver call, the
    // same container keeps its device.
    // (Registration calls NodeGetInfo again: only the volume calls count.)
    let volume_calls = |d: &Driver| -> Vec<String> {
        d.driver
            .calls()
            .into_iter()
            .filter(|c| c.ends_with("Volume"))
            .collect()
    };
    let calls = volume_calls(&d);
    cluster.node.kill_kubelet();
    cluster.node.start_kubelet().await;
    eventually("a sync of the pod by the restarted kubelet", || {
        let log = cluster.node.kubelet_log();
        log.split("----- kubelet start 2 -----")
            .nth(1)
            .is_some_and(|second| {
                second.lines().any(|l| {
                    l.contains("planned actions") && l.contains("pod=\"default/block-pod\"")
                })
            })
    })
    .await;
    eventually("the driver registered with the new kubelet", || {
        d.registrar.statuses().len() >= 2
    })
    .await;
    let again = cluster
        .wait_pod("block-pod", "still running", |p| {
            running_and_ready(p, "app")
        })
        .await;
    assert_eq!(
        container(&again, "app").and_then(runtime_id),
        Some(id.as_str()),
        "the same container"
    );
    assert_eq!(volume_calls(&d), calls, "no volume call after the restart");
    assert_eq!(loop_devices_under(&root).len(), 1, "one descriptor lock");
    assert_eq!(
        cluster
            .node
            .exec(
                &id,
                &format!("dd if=/dev/xvda bs=512 skip=8 count=1 2>/dev/null | grep -q {MARKER}")
            )
            .await,
        0
    );

    // The pod goes: unmapped, unpublished, unstaged; nothing of the volume is left.
    cluster.delete_pod("block-pod", Some(0)).await;
    cluster.wait_pod_gone("block-pod").await;
    eventually("unpublished and unstaged", || {
        d.driver.count("NodeUnstageVolume") >= 1 && d.driver.mounts().is_empty()
    })
    .await;
    eprintln!(
        "driver calls: stage {}, publish {}, unpublish {}, unstage {}",
        d.driver.count("NodeStageVolume"),
        d.driver.count("NodePublishVolume"),
        d.driver.count("NodeUnpublishVolume"),
        d.driver.count("NodeUnstageVolume"),
    );
    assert_eq!(d.driver.count("NodeStageVolume"), 1);
    assert_eq!(d.driver.count("NodePublishVolume"), 1);
    assert_eq!(d.driver.count("NodeUnpublishVolume"), 1);
    assert_eq!(d.driver.count("NodeUnstageVolume"), 1);
    // The kernel clears a detached loop device once its last opener is gone.
    eventually("no loop device of the kubelet or the driver left", || {
        loop_devices_under(&root).is_empty() && loop_devices_under(&d.state).is_empty()
    })
    .await;
    assert!(
        mounts_under(&devices).is_empty() && mounts_under(&root.join("pods")).is_empty(),
        "mounts left: {:?}",
        mounts_under(&root)
    );
    for gone in [
        devices.join("staging/block-pv-1"),
        devices.join("publish/block-pv-1"),
        devices.join("block-pv-1"),
    ] {
        assert!(!gone.exists(), "{} left behind", gone.display());
    }
    assert!(std::fs::symlink_metadata(&link).is_err(), "symlink left");
    // The data stays in the volume.
    assert_eq!(read_at(&backing, 4096, MARKER.len()), MARKER.as_bytes());

    let _ = claims.delete("block-claim", &DeleteParams::default()).await;
    let _ = volumes.delete("block-pv-1", &DeleteParams::default()).await;
    d.driver
        .delete_volume("e2e-block-1")
        .expect("delete the volume");
    drop(d);
}
