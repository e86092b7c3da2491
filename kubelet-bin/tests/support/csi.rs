//! The example hostpath CSI driver for the daemon's end-to-end tests: started on the test
//! node and registered through its registrar socket in `<root-dir>/plugins_registry/` as
//! node-driver-registrar would, plus the CSIDriver object, a PV and PVC bound by hand, and a
//! pod with one volume.

use std::path::{Path, PathBuf};
use std::time::Instant;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::CSIDriver;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kubelet_csi::testing::{
    HostPathDriver, HostPathOptions, Registrar, RegistrarHandle, ServerHandle,
};

use super::cluster::{Cluster, DEADLINE, IMAGE, POLL};
use super::node::{NODE, TestNode};

/// The test driver's name.
pub const DRIVER: &str = "hostpath.csi.kubelet.test";

pub fn root_dir(node: &TestNode) -> PathBuf {
    node.pod_logs_dir()
        .parent()
        .map(|p| p.join("root"))
        .expect("test node directory")
}

pub fn have_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    assert!(
        std::env::var("KUBELET_TEST_REQUIRE_ROOT").as_deref() != Ok("1"),
        "KUBELET_TEST_REQUIRE_ROOT=1 but not running as root"
    );
    eprintln!("SKIPPED: needs root (the CSI test driver bind-mounts)");
    false
}

/// The example driver serving on the node, registered through its registrar socket.
pub struct Driver {
    /// The driver, to read what it was asked.
    pub driver: HostPathDriver,
    /// The driver's state directory (its volumes, block volumes' backing files).
    pub state: PathBuf,
    // Drop order: the registrar goes first (the kubelet forgets the driver), then the
    // driver's server (which unmounts whatever it still has mounted).
    /// The registrar, to read the kubelet's answers.
    pub registrar: RegistrarHandle,
    _server: ServerHandle,
    _state: tempfile::TempDir,
}

pub async fn start_driver(node: &TestNode) -> Driver {
    let root = root_dir(node);
    let state = tempfile::tempdir().expect("driver state dir");
    let driver = HostPathDriver::new(HostPathOptions::new(
        DRIVER,
        NODE,
        state.path().join("volumes"),
    ));
    let server = driver
        .serve(&root.join("plugins").join(DRIVER).join("csi.sock"))
        .await
        .expect("serve the CSI driver");
    let registrar = Registrar::csi(DRIVER, server.socket())
        .serve(
            &root
                .join("plugins_registry")
                .join(format!("{DRIVER}-reg.sock")),
        )
        .await
        .expect("serve the registrar");
    let status = tokio::time::timeout(DEADLINE, registrar.first_status())
        .await
        .expect("the kubelet answers the registrar (plugin watcher wired?)");
    assert!(
        status.plugin_registered,
        "registration refused: {}",
        status.error
    );
    Driver {
        driver,
        state: state.path().to_path_buf(),
        registrar,
        _server: server,
        _state: state,
    }
}

pub async fn put_csi_driver(cluster: &Cluster, spec: serde_json::Value) {
    let api: Api<CSIDriver> = Api::all(cluster.kube.clone());
    let object: CSIDriver = serde_json::from_value(serde_json::json!({
        "apiVersion": "storage.k8s.io/v1",
        "kind": "CSIDriver",
        "metadata": {"name": DRIVER},
        "spec": spec,
    }))
    .expect("CSIDriver JSON");
    // A previous test run on a shared server may have left one: replace it.
    let _ = api.delete(DRIVER, &DeleteParams::default()).await;
    let deadline = Instant::now() + DEADLINE;
    loop {
        match api.create(&PostParams::default(), &object).await {
            Ok(_) => return,
            Err(kube::Error::Api(s)) if s.code == 409 && Instant::now() < deadline => {
                tokio::time::sleep(POLL).await;
            }
            Err(err) => panic!("create CSIDriver: {err}"),
        }
    }
}

pub fn csi_pod(name: &str, volume: serde_json::Value, script: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "nodeName": NODE,
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "app",
                "image": IMAGE,
                "imagePullPolicy": "IfNotPresent",
                "command": ["sh", "-c", script],
                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
            }],
            "volumes": [volume],
        },
    }))
    .expect("pod JSON")
}

/// Poll `check` until it holds; panics after [`DEADLINE`].
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(POLL).await;
    }
}

pub fn is_mounted(path: &Path) -> bool {
    let wanted = path.to_string_lossy();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|m| m == wanted)
}

/// A PV `pv` of the test driver with volume handle `handle`, and a PVC `claim` bound to it
/// by hand, as the PV controller would bind them (no controllers run here): the claim names
/// the volume, the volume's claimRef names the claim by UID, the claim's status says Bound.
pub async fn bind_claim(
    cluster: &Cluster,
    claim_name: &str,
    pv_name: &str,
    handle: &str,
) -> (Api<PersistentVolumeClaim>, Api<PersistentVolume>) {
    bind_claim_of_mode(cluster, claim_name, pv_name, handle, "Filesystem").await
}

/// As [`bind_claim`], with the PV and PVC of `volumeMode` `mode` (`Filesystem`, `Block`).
pub async fn bind_claim_of_mode(
    cluster: &Cluster,
    claim_name: &str,
    pv_name: &str,
    handle: &str,
    mode: &str,
) -> (Api<PersistentVolumeClaim>, Api<PersistentVolume>) {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(cluster.kube.clone(), "default");
    let volumes: Api<PersistentVolume> = Api::all(cluster.kube.clone());
    let _ = volumes.delete(pv_name, &DeleteParams::default()).await;
    let _ = claims.delete(claim_name, &DeleteParams::default()).await;
    let claim: PersistentVolumeClaim = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": claim_name, "namespace": "default"},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "volumeMode": mode,
            "resources": {"requests": {"storage": "1Gi"}},
            "storageClassName": "",
            "volumeName": pv_name,
        },
    }))
    .expect("PVC JSON");
    let claim = claims
        .create(&PostParams::default(), &claim)
        .await
        .expect("create PVC");
    let pv: PersistentVolume = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": pv_name},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "volumeMode": mode,
            "capacity": {"storage": "1Gi"},
            "storageClassName": "",
            "persistentVolumeReclaimPolicy": "Retain",
            "claimRef": {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "namespace": "default",
                "name": claim_name,
                "uid": claim.metadata.uid,
            },
            "csi": {"driver": DRIVER, "volumeHandle": handle, "fsType": "ext4"},
        },
    }))
    .expect("PV JSON");
    volumes
        .create(&PostParams::default(), &pv)
        .await
        .expect("create PV");
    claims
        .patch_status(
            claim_name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"status": {
                "phase": "Bound",
                "accessModes": ["ReadWriteOnce"],
                "capacity": {"storage": "1Gi"},
            }})),
        )
        .await
        .expect("mark the PVC Bound");

    (claims, volumes)
}
