//! End-to-end: CSI volumes on a real containerd and a real API server (the envtest
//! kube-apiserver with `KUBELET_TEST_ASSETS`, else the fake one), with the example hostpath
//! CSI driver started by the test and registering itself into the daemon's
//! `<root-dir>/plugins_registry/` as node-driver-registrar would.
//!
//! - [`inline_csi_volume_is_published_written_and_torn_down`]: an inline CSI volume is
//!   published into the pod (with the pod's identity in the volume context), the container's
//!   write lands in the driver's backing directory, and the volume is unpublished when the
//!   pod goes.
//! - [`failing_publish_keeps_the_pod_creating_then_retries`]: a driver failing
//!   `NodePublishVolume` keeps the pod in ContainerCreating with the reference's FailedMount
//!   event; once it recovers the pod runs.
//! - [`kubelet_restart_neither_unpublishes_nor_republishes`]: a kubelet killed and started
//!   again with a CSI-backed pod running syncs it without calling the driver; the container
//!   keeps running.
//! - [`pvc_backed_csi_volume_is_staged_published_and_unstaged`]: a PV and PVC bound by hand
//!   (no controllers run here) on a driver without attachment: staged once, published,
//!   written, unpublished and unstaged when the pod goes.
//!
//! - [`publish_secret_and_service_account_tokens_reach_the_driver`]: a `nodePublishSecretRef`
//!   Secret and a `tokenRequests` token, both read by the node through the Node authorizer,
//!   reach the driver.
//!
//! - [`attach_required_waits_for_the_volume_attachment`]: with `attachRequired` the test
//!   plays the attach/detach controller and the external attacher: the kubelet reports the
//!   volume in the Node's `status.volumesInUse`, waits (`Volume not attached according to
//!   node status ...`) until the Node's `status.volumesAttached` lists it, then
//!   (`MountVolume.WaitForAttach failed ...`) until the VolumeAttachment the reference names
//!   is attached; its metadata reaches stage and publish; once the pod is gone and the
//!   volume unstaged, `volumesInUse` no longer lists it.
//! - [`kubelet_restart_keeps_an_attached_volume_in_use`]: a kubelet killed and started again
//!   with such a volume mounted never drops it from the Node's `volumesInUse` (every
//!   version of the Node is watched), and neither republishes nor unpublishes it.
//!
//! Skipped when no containerd can run here (unless `KUBELET_TEST_REQUIRE_CONTAINERD=1`), or
//! without root (the driver bind-mounts).

mod support {
    // Shared by several test binaries; each uses part of it.
    #[allow(dead_code)]
    pub mod cluster;
    #[allow(dead_code)]
    pub mod csi;
    #[allow(dead_code)]
    pub mod node;
}

use std::path::Path;

use k8s_openapi::api::core::v1::{
    Node, PersistentVolume, PersistentVolumeClaim, Secret, ServiceAccount,
};
use k8s_openapi::api::storage::v1::VolumeAttachment;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kubelet_csi::testing::Fault;
use kubelet_csi::volume::ephemeral_volume_handle;
use support::cluster::{Cluster, SERVE, start_cluster};
use support::csi::{
    DRIVER, Driver, bind_claim, csi_pod, eventually, have_root, is_mounted, put_csi_driver,
    root_dir, start_driver,
};
use support::node::{NODE, running_and_ready, uid};
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_csi_volume_is_published_written_and_torn_down() {
    if !have_root() {
        return;
    }
    let Some(cluster) = start_cluster(&[]).await else {
        return;
    };
    let d = start_driver(&cluster.node).await;
    put_csi_driver(
        &cluster,
        serde_json::json!({
            "attachRequired": false,
            "podInfoOnMount": true,
            "volumeLifecycleModes": ["Ephemeral"],
        }),
    )
    .await;
    let pod = csi_pod(
        "csi-inline",
        serde_json::json!({"name": "data", "csi": {
            "driver": DRIVER,
            "volumeAttributes": {"color": "blue"},
        }}),
        &format!("echo written-by-the-container > /data/out && {SERVE}"),
    );
    cluster.create_pod(&pod).await;
    let running = cluster
        .wait_pod("csi-inline", "running", |p| running_and_ready(p, "app"))
        .await;
    let pod_uid = uid(&running);
    let handle = ephemeral_volume_handle(&pod_uid, "data");
    let backing = d.driver.volume_path(&handle).join("out");
    eventually("the container's write in the driver's directory", || {
        std::fs::read_to_string(&backing).is_ok_and(|s| s == "written-by-the-container\n")
    })
    .await;
    let target = root_dir(&cluster.node)
        .join("pods")
        .join(&pod_uid)
        .join("volumes/kubernetes.io~csi/data/mount");
    assert!(is_mounted(&target), "published at {}", target.display());
    let publish = d
        .driver
        .requests()
        .into_iter()
        .find(|r| r.op == "NodePublishVolume")
        .expect("a publish request");
    assert_eq!(publish.volume_id, handle);
    assert_eq!(publish.target_path, target.display().to_string());
    assert_eq!(publish.volume_context["color"], "blue");
    assert_eq!(
        publish.volume_context["csi.storage.k8s.io/ephemeral"],
        "true"
    );
    assert_eq!(
        publish.volume_context["csi.storage.k8s.io/pod.name"],
        "csi-inline"
    );
    assert_eq!(
        publish.volume_context["csi.storage.k8s.io/pod.uid"],
        pod_uid.as_str()
    );
    assert_eq!(
        d.driver.count("NodeStageVolume"),
        0,
        "inline volumes are not staged"
    );

    cluster.delete_pod("csi-inline", Some(0)).await;
    cluster.wait_pod_gone("csi-inline").await;
    eventually("the volume unpublished", || {
        d.driver.count("NodeUnpublishVolume") >= 1 && !is_mounted(&target)
    })
    .await;
    eventually("the pod's volume directory removed", || {
        !target.parent().is_some_and(Path::exists)
    })
    .await;
    assert_eq!(d.driver.count("NodePublishVolume"), 1, "published once");
    assert!(d.driver.mounts().is_empty(), "{:?}", d.driver.mounts());
    assert!(backing.exists(), "the data stays with the driver");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_publish_keeps_the_pod_creating_then_retries() {
    if !have_root() {
        return;
    }
    let Some(cluster) = start_cluster(&[]).await else {
        return;
    };
    let d = start_driver(&cluster.node).await;
    put_csi_driver(
        &cluster,
        serde_json::json!({"attachRequired": false, "volumeLifecycleModes": ["Ephemeral"]}),
    )
    .await;
    d.driver.inject(
        "NodePublishVolume",
        Fault::Status(Code::Internal, "backend offline".into()),
    );
    let pod = csi_pod(
        "csi-failing",
        serde_json::json!({"name": "data", "csi": {"driver": DRIVER}}),
        SERVE,
    );
    let created = cluster.create_pod(&pod).await;
    let pod_uid = created.metadata.uid.clone().expect("uid");
    let expected = r#"MountVolume.SetUp failed for volume "data" : rpc error: code = Internal desc = backend offline"#;
    cluster
        .wait(
            "the FailedMount event",
            async || {
                Some(
                    cluster
                        .events_about(&pod_uid)
                        .await
                        .into_iter()
                        .filter(|e| e.reason.as_deref() == Some("FailedMount"))
                        .filter_map(|e| e.message)
                        .collect::<Vec<_>>(),
                )
            },
            |messages| messages.is_some_and(|m| m.iter().any(|m| m == expected)),
        )
        .await;
    let waiting = cluster
        .wait_pod("csi-failing", "ContainerCreating", |p| {
            p.status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .and_then(|cs| cs.first())
                .and_then(|c| c.state.as_ref())
                .and_then(|s| s.waiting.as_ref())
                .is_some_and(|w| w.reason.as_deref() == Some("ContainerCreating"))
        })
        .await;
    assert_eq!(
        waiting.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Pending")
    );
    let failures = d.driver.count("NodePublishVolume");
    eventually("the publish retried", || {
        d.driver.count("NodePublishVolume") > failures
    })
    .await;

    d.driver.clear("NodePublishVolume");
    cluster
        .wait_pod("csi-failing", "running after the driver recovered", |p| {
            running_and_ready(p, "app")
        })
        .await;
    cluster.delete_pod("csi-failing", Some(0)).await;
    cluster.wait_pod_gone("csi-failing").await;
    eventually("the volume unpublished", || d.driver.mounts().is_empty()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pvc_backed_csi_volume_is_staged_published_and_unstaged() {
    if !have_root() {
        return;
    }
    let Some(cluster) = start_cluster(&[]).await else {
        return;
    };
    let d = start_driver(&cluster.node).await;
    put_csi_driver(&cluster, serde_json::json!({"attachRequired": false})).await;

    let (claims, volumes) = bind_claim(&cluster, "csi-claim", "csi-pv-1", "e2e-vol-1").await;

    let pod = csi_pod(
        "csi-claim-pod",
        serde_json::json!({"name": "data", "persistentVolumeClaim": {"claimName": "csi-claim"}}),
        &format!("echo on-the-claim > /data/out && {SERVE}"),
    );
    cluster.create_pod(&pod).await;
    let running = cluster
        .wait_pod("csi-claim-pod", "running", |p| running_and_ready(p, "app"))
        .await;
    let pod_uid = uid(&running);
    let backing = d.driver.volume_path("e2e-vol-1").join("out");
    eventually("the container's write in the driver's directory", || {
        std::fs::read_to_string(&backing).is_ok_and(|s| s == "on-the-claim\n")
    })
    .await;
    let staging = d.driver.staged().get("e2e-vol-1").cloned().expect("staged");
    assert!(
        staging.starts_with(
            root_dir(&cluster.node)
                .join("plugins/kubernetes.io/csi")
                .join(DRIVER)
        ),
        "{}",
        staging.display()
    );
    let target = root_dir(&cluster.node)
        .join("pods")
        .join(&pod_uid)
        .join("volumes/kubernetes.io~csi/csi-pv-1/mount");
    assert!(is_mounted(&target), "published at {}", target.display());
    assert_eq!(d.driver.count("NodeStageVolume"), 1);

    cluster.delete_pod("csi-claim-pod", Some(0)).await;
    cluster.wait_pod_gone("csi-claim-pod").await;
    // The global mount directory goes right after NodeUnstageVolume returns.
    eventually(
        "unpublished and unstaged, the global mount directory removed",
        || {
            d.driver.count("NodeUnstageVolume") >= 1
                && d.driver.mounts().is_empty()
                && !staging.exists()
        },
    )
    .await;
    let _ = claims.delete("csi-claim", &DeleteParams::default()).await;
    let _ = volumes.delete("csi-pv-1", &DeleteParams::default()).await;
    // Keep the driver up until here: teardown needs it.
    drop(d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubelet_restart_neither_unpublishes_nor_republishes() {
    if !have_root() {
        return;
    }
    let Some(mut cluster) = start_cluster(&[]).await else {
        return;
    };
    let d = start_driver(&cluster.node).await;
    put_csi_driver(
        &cluster,
        serde_json::json!({"attachRequired": false, "volumeLifecycleModes": ["Ephemeral"]}),
    )
    .await;
    let pod = csi_pod(
        "csi-restart",
        serde_json::json!({"name": "data", "csi": {"driver": DRIVER}}),
        SERVE,
    );
    cluster.create_pod(&pod).await;
    let running = cluster
        .wait_pod("csi-restart", "running", |p| running_and_ready(p, "app"))
        .await;
    let pod_uid = uid(&running);
    let container_id = running
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.first())
        .and_then(|c| c.container_id.clone())
        .expect("container ID");
    let target = root_dir(&cluster.node)
        .join("pods")
        .join(&pod_uid)
        .join("volumes/kubernetes.io~csi/data/mount");
    assert!(is_mounted(&target));
    assert_eq!(d.driver.count("NodePublishVolume"), 1);

    cluster.node.kill_kubelet();
    cluster.node.start_kubelet().await;
    // The new kubelet has synced the pod (volumes set up, actions planned) at least once.
    let synced = "planned actions";
    let pod_field = "pod=\"default/csi-restart\"";
    eventually("a sync of the pod by the restarted kubelet", || {
        let log = cluster.node.kubelet_log();
        log.split("----- kubelet start 2 -----")
            .nth(1)
            .is_some_and(|second| {
                second
                    .lines()
                    .any(|l| l.contains(synced) && l.contains(pod_field))
            })
    })
    .await;
    // ...and the driver has registered with it again.
    eventually("the driver registered with the new kubelet", || {
        d.registrar.statuses().len() >= 2
    })
    .await;
    let again = cluster
        .wait_pod("csi-restart", "still running", |p| {
            running_and_ready(p, "app")
        })
        .await;
    let same_container = again
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.first())
        .and_then(|c| c.container_id.clone());
    assert_eq!(same_container.as_deref(), Some(container_id.as_str()));
    assert!(is_mounted(&target), "still published");
    assert_eq!(d.driver.count("NodePublishVolume"), 1, "not republished");
    assert_eq!(d.driver.count("NodeUnpublishVolume"), 0, "not unpublished");

    cluster.delete_pod("csi-restart", Some(0)).await;
    cluster.wait_pod_gone("csi-restart").await;
    eventually("the volume unpublished", || {
        d.driver.count("NodeUnpublishVolume") >= 1 && !is_mounted(&target)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_secret_and_service_account_tokens_reach_the_driver() {
    if !have_root() {
        return;
    }
    let Some(cluster) = start_cluster(&[]).await else {
        return;
    };
    let d = start_driver(&cluster.node).await;
    put_csi_driver(
        &cluster,
        serde_json::json!({
            "attachRequired": false,
            "volumeLifecycleModes": ["Ephemeral"],
            "tokenRequests": [{"audience": "csi-e2e", "expirationSeconds": 3600}],
        }),
    )
    .await;
    // What the controllers would have made: the namespace's default ServiceAccount.
    let accounts: Api<ServiceAccount> = Api::namespaced(cluster.kube.clone(), "default");
    let account: ServiceAccount = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "default", "namespace": "default"},
    }))
    .expect("ServiceAccount JSON");
    match accounts.create(&PostParams::default(), &account).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(err) => panic!("create ServiceAccount: {err}"),
    }
    let secrets: Api<Secret> = Api::namespaced(cluster.kube.clone(), "default");
    let _ = secrets.delete("csi-creds", &DeleteParams::default()).await;
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "csi-creds", "namespace": "default"},
        "stringData": {"password": "s3cret"},
    }))
    .expect("Secret JSON");
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("create Secret");
    let mut pod = csi_pod(
        "csi-tokens",
        serde_json::json!({"name": "data", "csi": {
            "driver": DRIVER,
            "nodePublishSecretRef": {"name": "csi-creds"},
        }}),
        SERVE,
    );
    pod.spec.as_mut().expect("spec").service_account_name = Some("default".into());
    cluster.create_pod(&pod).await;
    cluster
        .wait_pod("csi-tokens", "running", |p| running_and_ready(p, "app"))
        .await;
    let publish = d
        .driver
        .requests()
        .into_iter()
        .find(|r| r.op == "NodePublishVolume")
        .expect("a publish request");
    assert_eq!(publish.secrets["password"], "s3cret");
    let tokens: serde_json::Value =
        serde_json::from_str(&publish.volume_context["csi.storage.k8s.io/serviceAccount.tokens"])
            .expect("tokens JSON");
    let token = tokens["csi-e2e"]["token"].as_str().expect("a token");
    assert_eq!(token.split('.').count(), 3, "a JWT from the API server");
    assert!(
        tokens["csi-e2e"]["expirationTimestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{tokens}"
    );

    cluster.delete_pod("csi-tokens", Some(0)).await;
    cluster.wait_pod_gone("csi-tokens").await;
    eventually("the volume unpublished", || d.driver.mounts().is_empty()).await;
    let _ = secrets.delete("csi-creds", &DeleteParams::default()).await;
}

/// Whether the Node's `status.volumesInUse` lists `unique_name`.
fn lists_in_use(node: &Node, unique_name: &str) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.volumes_in_use.as_ref())
        .is_some_and(|v| v.iter().any(|n| n == unique_name))
}

/// The attached volume's pod goes: unpublished and unstaged, then out of volumesInUse; the
/// test, as the attach/detach controller, then detaches it (clears the Node's
/// volumesAttached, deletes the VolumeAttachment `attachment`) and deletes the claim and PV.
async fn delete_and_detach(
    cluster: &Cluster,
    d: &Driver,
    pod: &str,
    unique_name: &str,
    attachment: &str,
    (claim, pv): (&str, &str),
) {
    cluster.delete_pod(pod, Some(0)).await;
    cluster.wait_pod_gone(pod).await;
    eventually("unpublished and unstaged", || {
        d.driver.count("NodeUnstageVolume") >= 1 && d.driver.mounts().is_empty()
    })
    .await;
    cluster
        .wait_node("the volume gone from status.volumesInUse", |n| {
            !lists_in_use(n, unique_name)
        })
        .await;
    let nodes: Api<Node> = Api::all(cluster.kube.clone());
    nodes
        .patch_status(
            NODE,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"status": {"volumesAttached": null}})),
        )
        .await
        .expect("clear the Node's volumesAttached");
    let attachments: Api<VolumeAttachment> = Api::all(cluster.kube.clone());
    let _ = attachments
        .delete(attachment, &DeleteParams::default())
        .await;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(cluster.kube.clone(), "default");
    let _ = claims.delete(claim, &DeleteParams::default()).await;
    let volumes: Api<PersistentVolume> = Api::all(cluster.kube.clone());
    let _ = volumes.delete(pv, &DeleteParams::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_required_waits_for_the_volume_attachment() {
    if !have_root() {
        return;
    }
    let Some(cluster) = start_cluster(&[]).await else {
        return;
    };
    let d = start_driver(&cluster.node).await;
    put_csi_driver(&cluster, serde_json::json!({"attachRequired": true})).await;
    // The claim and PV go in delete_and_detach.
    bind_claim(
        &cluster,
        "csi-attach-claim",
        "csi-attach-pv",
        "e2e-vol-attach",
    )
    .await;
    let pod = csi_pod(
        "csi-attach-pod",
        serde_json::json!({"name": "data", "persistentVolumeClaim": {"claimName": "csi-attach-claim"}}),
        SERVE,
    );
    let created = cluster.create_pod(&pod).await;
    let pod_uid = created.metadata.uid.clone().expect("uid");
    let unique_name = kubelet_csi::volume::unique_volume_name(DRIVER, "e2e-vol-attach");
    assert_eq!(
        unique_name,
        format!("kubernetes.io/csi/{DRIVER}^e2e-vol-attach")
    );
    let in_use = |node: &Node| lists_in_use(node, &unique_name);
    let failed_mounts = async || {
        Some(
            cluster
                .events_about(&pod_uid)
                .await
                .into_iter()
                .filter(|e| e.reason.as_deref() == Some("FailedMount"))
                .filter_map(|e| e.message)
                .collect::<Vec<_>>(),
        )
    };

    // The kubelet's part of the handshake: the volume in the Node's volumesInUse on the
    // API server, and no mount before the attach/detach controller lists it as attached.
    cluster
        .wait_node("the volume in status.volumesInUse", in_use)
        .await;
    let not_attached = format!(
        r#"Volume not attached according to node status for volume "csi-attach-pv" (UniqueName: "{unique_name}") pod "csi-attach-pod""#
    );
    cluster
        .wait(
            "the kubelet waiting for status.volumesAttached",
            failed_mounts,
            |m| m.is_some_and(|m| m.iter().any(|m| m.starts_with(&not_attached))),
        )
        .await;
    assert_eq!(
        d.driver.count("NodeStageVolume"),
        0,
        "not staged before the controller attached it"
    );

    // The attach/detach controller's part: volumesAttached in the Node's status.
    let nodes: Api<Node> = Api::all(cluster.kube.clone());
    nodes
        .patch_status(
            NODE,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"status": {
                "volumesAttached": [{"name": unique_name, "devicePath": ""}],
            }})),
        )
        .await
        .expect("set the Node's volumesAttached");
    // Then the kubelet waits for the VolumeAttachment, as the reference's CSI attacher.
    let expected = r#"MountVolume.WaitForAttach failed for volume "csi-attach-pv" : "#;
    cluster
        .wait(
            "the FailedMount event of the missing attachment",
            failed_mounts,
            |m| m.is_some_and(|m| m.iter().any(|m| m.starts_with(expected))),
        )
        .await;
    assert_eq!(
        d.driver.count("NodeStageVolume"),
        0,
        "not staged before attached"
    );

    // The external attacher's part: the VolumeAttachment, then its status.
    let name = kubelet_csi::volume::attachment_name("e2e-vol-attach", DRIVER, NODE);
    let attachments: Api<VolumeAttachment> = Api::all(cluster.kube.clone());
    let attachment: VolumeAttachment = serde_json::from_value(serde_json::json!({
        "apiVersion": "storage.k8s.io/v1",
        "kind": "VolumeAttachment",
        "metadata": {"name": name},
        "spec": {
            "attacher": DRIVER,
            "nodeName": NODE,
            "source": {"persistentVolumeName": "csi-attach-pv"},
        },
    }))
    .expect("VolumeAttachment JSON");
    attachments
        .create(&PostParams::default(), &attachment)
        .await
        .expect("create VolumeAttachment");
    attachments
        .patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"status": {
                "attached": true,
                "attachmentMetadata": {"lun": "7"},
            }})),
        )
        .await
        .expect("mark attached");
    cluster
        .wait_pod("csi-attach-pod", "running once attached", |p| {
            running_and_ready(p, "app")
        })
        .await;
    let requests = d.driver.requests();
    let stage = requests
        .iter()
        .find(|r| r.op == "NodeStageVolume")
        .expect("staged");
    assert_eq!(stage.publish_context["lun"], "7");
    let publish = requests
        .iter()
        .find(|r| r.op == "NodePublishVolume")
        .expect("published");
    assert_eq!(publish.publish_context["lun"], "7");

    // Unstaged: the volume leaves volumesInUse (the controller may detach it now).
    delete_and_detach(
        &cluster,
        &d,
        "csi-attach-pod",
        &unique_name,
        &name,
        ("csi-attach-claim", "csi-attach-pv"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubelet_restart_keeps_an_attached_volume_in_use() {
    use futures::StreamExt;
    use kube::api::{WatchEvent, WatchParams};

    if !have_root() {
        return;
    }
    let Some(mut cluster) = start_cluster(&[]).await else {
        return;
    };
    let d = start_driver(&cluster.node).await;
    put_csi_driver(&cluster, serde_json::json!({"attachRequired": true})).await;
    let handle = "e2e-vol-restart-attach";
    // The claim and PV go in delete_and_detach.
    bind_claim(
        &cluster,
        "csi-restart-attach-claim",
        "csi-restart-attach-pv",
        handle,
    )
    .await;
    let unique_name = kubelet_csi::volume::unique_volume_name(DRIVER, handle);
    let in_use = |node: &Node| lists_in_use(node, &unique_name);
    // The controllers' part, done before the pod: attached, and listed on the Node.
    let name = kubelet_csi::volume::attachment_name(handle, DRIVER, NODE);
    let attachments: Api<VolumeAttachment> = Api::all(cluster.kube.clone());
    let attachment: VolumeAttachment = serde_json::from_value(serde_json::json!({
        "apiVersion": "storage.k8s.io/v1",
        "kind": "VolumeAttachment",
        "metadata": {"name": name},
        "spec": {
            "attacher": DRIVER,
            "nodeName": NODE,
            "source": {"persistentVolumeName": "csi-restart-attach-pv"},
        },
    }))
    .expect("VolumeAttachment JSON");
    let _ = attachments.delete(&name, &DeleteParams::default()).await;
    attachments
        .create(&PostParams::default(), &attachment)
        .await
        .expect("create VolumeAttachment");
    attachments
        .patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"status": {"attached": true}})),
        )
        .await
        .expect("mark attached");
    let nodes: Api<Node> = Api::all(cluster.kube.clone());
    nodes
        .patch_status(
            NODE,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"status": {
                "volumesAttached": [{"name": unique_name, "devicePath": ""}],
            }})),
        )
        .await
        .expect("set the Node's volumesAttached");

    let pod = csi_pod(
        "csi-restart-attach",
        serde_json::json!({"name": "data", "persistentVolumeClaim": {"claimName": "csi-restart-attach-claim"}}),
        SERVE,
    );
    cluster.create_pod(&pod).await;
    cluster
        .wait_pod("csi-restart-attach", "running", |p| {
            running_and_ready(p, "app")
        })
        .await;
    let node = cluster
        .wait_node("the volume in status.volumesInUse", in_use)
        .await;

    // Every version of the Node from now on, through the restart.
    let mut watch = nodes
        .watch(
            &WatchParams::default().fields(&format!("metadata.name={NODE}")),
            node.metadata.resource_version.as_deref().unwrap_or("0"),
        )
        .await
        .expect("watch the Node")
        .boxed();
    cluster.node.kill_kubelet();
    cluster.node.start_kubelet().await;
    // The new kubelet has sent a node status and synced the pod...
    let pod_field = "pod=\"default/csi-restart-attach\"";
    eventually(
        "a node status and a pod sync of the restarted kubelet",
        || {
            let log = cluster.node.kubelet_log();
            log.split("----- kubelet start 2 -----")
                .nth(1)
                .is_some_and(|second| {
                    second.lines().any(|l| l.contains("node status sent"))
                        && second
                            .lines()
                            .any(|l| l.contains("planned actions") && l.contains(pod_field))
                })
        },
    )
    .await;
    let now = nodes.get(NODE).await.expect("get the Node");
    assert!(in_use(&now), "in volumesInUse after the restart");
    // ...and no version of the Node since the kill dropped the volume (the watch has
    // delivered them all once it is quiet for a second).
    let mut seen = 0;
    while let Ok(Some(event)) =
        tokio::time::timeout(std::time::Duration::from_secs(1), watch.next()).await
    {
        let node = match event.expect("watch event") {
            WatchEvent::Added(n) | WatchEvent::Modified(n) => n,
            WatchEvent::Error(e) => panic!("watch error: {e:?}"),
            _ => continue,
        };
        seen += 1;
        assert!(
            in_use(&node),
            "the volume left volumesInUse across the restart: {:?}",
            node.status.as_ref().map(|s| &s.volumes_in_use)
        );
    }
    // (None when the new status equals the old one to the second: nothing was patched.)
    eprintln!("{seen} versions of the Node watched across the restart");
    assert_eq!(d.driver.count("NodePublishVolume"), 1, "not republished");
    assert_eq!(d.driver.count("NodeUnpublishVolume"), 0, "not unpublished");

    // The pod goes: unpublished, unstaged, out of volumesInUse.
    delete_and_detach(
        &cluster,
        &d,
        "csi-restart-attach",
        &unique_name,
        &name,
        ("csi-restart-attach-claim", "csi-restart-attach-pv"),
    )
    .await;
}
