//! The CSI `VolumePlugin` against the example hostpath driver over its real unix socket,
//! with real bind mounts (needs root; skipped without unless `KUBELET_TEST_REQUIRE_ROOT=1`).
//! API objects come from a small in-test `CsiObjects`.

mod support;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{
    CSIVolumeSource, EphemeralVolumeSource, LocalObjectReference,
    PersistentVolumeClaimVolumeSource, Pod, PodSecurityContext, PodSpec, Secret, Volume,
};
use k8s_openapi::api::storage::v1::{
    CSIDriver, CSIDriverSpec, TokenRequest, VolumeAttachment, VolumeAttachmentSource,
    VolumeAttachmentSpec, VolumeAttachmentStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kubelet_core::node::VolumesInUse;
use kubelet_core::volume::{VolumeContext, VolumePlugin};
use kubelet_csi::testing::{Fault, HostPathDriver, HostPathOptions, ServerHandle};
use kubelet_csi::volume::{attachment_name, ephemeral_volume_handle, unique_volume_name};
use kubelet_csi::{
    CsiVersion, CsiVolumeOptions, CsiVolumePlugin, DriverRegistry, NodeInfo, RegisteredDriver,
};
use support::is_mounted;
use support::objects::{DRIVER, NODE, TestObjects};
use tonic::Code;

/// Root is needed to bind-mount; without it the tests skip, unless asked to require it.
fn have_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    assert!(
        std::env::var("KUBELET_TEST_REQUIRE_ROOT").as_deref() != Ok("1"),
        "KUBELET_TEST_REQUIRE_ROOT=1 but not running as root"
    );
    eprintln!("skipping: needs root to bind-mount");
    false
}

struct Fixture {
    tmp: tempfile::TempDir,
    root: PathBuf,
    driver: HostPathDriver,
    _server: ServerHandle,
    registry: DriverRegistry,
    objects: Arc<TestObjects>,
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
        Fixture {
            tmp,
            root,
            driver,
            _server: server,
            registry,
            objects: Arc::default(),
        }
    }

    fn plugin(&self) -> CsiVolumePlugin {
        CsiVolumePlugin::new(
            self.registry.clone(),
            self.objects.clone(),
            CsiVolumeOptions::new(self.root.clone(), NODE.into()),
        )
    }

    /// A plugin taking part in the node-status handshake through `volumes`, waiting
    /// `report_wait` for a new volume to be reported.
    fn plugin_reporting(&self, volumes: &VolumesInUse, report_wait: Duration) -> CsiVolumePlugin {
        CsiVolumePlugin::new(
            self.registry.clone(),
            self.objects.clone(),
            CsiVolumeOptions::new(self.root.clone(), NODE.into())
                .with_volumes_in_use(volumes.clone())
                .with_in_use_report_wait(report_wait),
        )
    }

    /// [`Fixture::plugin_reporting`] with no node agent in the test: a short wait.
    fn plugin_in_use(&self, volumes: &VolumesInUse) -> CsiVolumePlugin {
        self.plugin_reporting(volumes, Duration::from_millis(100))
    }

    fn pod_dir(&self, pod: &Pod) -> PathBuf {
        self.root
            .join("pods")
            .join(pod.metadata.uid.as_deref().unwrap())
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // Whatever a failed test left mounted goes before the temporary directory does.
        self.driver.unmount_all();
        let _ = &self.tmp;
    }
}

fn pod(name: &str, volumes: Vec<Volume>) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("ns1".into()),
            uid: Some(format!("uid-{name}")),
            ..Default::default()
        },
        spec: Some(PodSpec {
            service_account_name: Some("sa1".into()),
            volumes: Some(volumes),
            ..Default::default()
        }),
        status: None,
    }
}

fn inline_volume(name: &str) -> Volume {
    Volume {
        name: name.into(),
        csi: Some(CSIVolumeSource {
            driver: DRIVER.into(),
            volume_attributes: Some(BTreeMap::from([("size".to_string(), "1Gi".to_string())])),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn claim_volume(name: &str, claim: &str) -> Volume {
    Volume {
        name: name.into(),
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
            claim_name: claim.into(),
            read_only: None,
        }),
        ..Default::default()
    }
}

fn ephemeral_modes(pod_info: bool) -> CSIDriverSpec {
    CSIDriverSpec {
        attach_required: Some(false),
        pod_info_on_mount: Some(pod_info),
        volume_lifecycle_modes: Some(vec!["Persistent".into(), "Ephemeral".into()]),
        ..Default::default()
    }
}

async fn setup(
    plugin: &CsiVolumePlugin,
    pod: &Pod,
    pod_dir: &Path,
    volume: &Volume,
) -> Result<kubelet_core::MountedVolume, kubelet_core::VolumeError> {
    support::within(
        "setup",
        plugin.setup(&VolumeContext::new(pod, pod_dir), volume),
    )
    .await
}

#[tokio::test]
async fn inline_volume_is_published_with_pod_info_and_secrets_and_unpublished() {
    if !have_root() {
        return;
    }
    let f = Fixture::start(|_| {}).await;
    f.objects.put_driver(ephemeral_modes(true));
    f.objects.secrets.lock().unwrap().insert(
        ("ns1".into(), "creds".into()),
        Secret {
            data: Some(BTreeMap::from([(
                "password".to_string(),
                ByteString(b"hunter2".to_vec()),
            )])),
            ..Default::default()
        },
    );
    let mut volume = inline_volume("data");
    volume.csi.as_mut().unwrap().node_publish_secret_ref = Some(LocalObjectReference {
        name: "creds".into(),
    });
    let p = pod("web", vec![volume.clone()]);
    let pod_dir = f.pod_dir(&p);
    let plugin = f.plugin();

    let mounted = setup(&plugin, &p, &pod_dir, &volume).await.expect("setup");
    let target = pod_dir.join("volumes/kubernetes.io~csi/data/mount");
    assert_eq!(mounted.host_path, target);
    assert!(!mounted.read_only);
    assert!(is_mounted(&target), "published at the pod's path");
    let handle = ephemeral_volume_handle("uid-web", "data");
    std::fs::write(target.join("hello"), "world").unwrap();
    assert_eq!(
        std::fs::read_to_string(f.driver.volume_path(&handle).join("hello")).unwrap(),
        "world",
        "written through the mount into the driver's volume"
    );
    let vol_data: serde_json::Value = serde_json::from_slice(
        &std::fs::read(pod_dir.join("volumes/kubernetes.io~csi/data/vol_data.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(vol_data["driverName"], DRIVER);
    assert_eq!(vol_data["volumeHandle"], handle.as_str());
    assert_eq!(vol_data["volumeLifecycleMode"], "Ephemeral");

    // No staging for inline volumes, the context and secrets as the reference sends them.
    assert_eq!(f.driver.count("NodeStageVolume"), 0);
    let requests = f.driver.requests();
    assert_eq!(requests.len(), 1);
    let publish = &requests[0];
    assert_eq!(publish.op, "NodePublishVolume");
    assert_eq!(publish.volume_id, handle);
    assert_eq!(publish.staging_target_path, "");
    assert!(!publish.readonly);
    let expected: BTreeMap<String, String> = [
        ("size", "1Gi"),
        ("csi.storage.k8s.io/ephemeral", "true"),
        ("csi.storage.k8s.io/pod.name", "web"),
        ("csi.storage.k8s.io/pod.namespace", "ns1"),
        ("csi.storage.k8s.io/pod.uid", "uid-web"),
        ("csi.storage.k8s.io/serviceAccount.name", "sa1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(publish.volume_context, expected);
    assert_eq!(publish.secrets["password"], "hunter2");

    // Every sync sets up again: nothing is published twice.
    for _ in 0..3 {
        let again = setup(&plugin, &p, &pod_dir, &volume)
            .await
            .expect("re-setup");
        assert_eq!(again, mounted);
    }
    assert_eq!(f.driver.count("NodePublishVolume"), 1);

    support::within("teardown", plugin.teardown("uid-web", &pod_dir, "data"))
        .await
        .expect("teardown");
    assert!(!is_mounted(&target));
    assert!(!pod_dir.join("volumes/kubernetes.io~csi/data").exists());
    assert_eq!(f.driver.count("NodeUnpublishVolume"), 1);
    assert!(f.driver.mounts().is_empty());
    // Idempotent, and the data stays with the driver.
    support::within("teardown", plugin.teardown("uid-web", &pod_dir, "data"))
        .await
        .expect("second teardown");
    assert_eq!(f.driver.count("NodeUnpublishVolume"), 1);
    assert!(f.driver.volume_path(&handle).join("hello").exists());
}

#[tokio::test]
async fn inline_volume_is_refused_without_the_ephemeral_mode() {
    if !have_root() {
        return;
    }
    let f = Fixture::start(|_| {}).await;
    let volume = inline_volume("data");
    let p = pod("web", vec![volume.clone()]);
    let pod_dir = f.pod_dir(&p);
    let plugin = f.plugin();
    // No CSIDriver object: persistent only.
    let err = setup(&plugin, &p, &pod_dir, &volume).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            r#"MountVolume.NewMounter initialization failed for volume "data" : volume mode "Ephemeral" not supported by driver {DRIVER} (no CSIDriver object)"#
        )
    );
    f.objects.put_driver(CSIDriverSpec::default());
    let err = setup(&plugin, &p, &pod_dir, &volume).await.unwrap_err();
    assert!(
        err.to_string()
            .ends_with(r#"(only supports ["Persistent"])"#),
        "{err}"
    );
    assert_eq!(f.driver.count("NodePublishVolume"), 0);
}

#[tokio::test]
async fn failing_publish_is_reported_in_the_references_words_and_retried() {
    if !have_root() {
        return;
    }
    let f = Fixture::start(|_| {}).await;
    f.objects.put_driver(ephemeral_modes(false));
    let volume = inline_volume("data");
    let p = pod("web", vec![volume.clone()]);
    let pod_dir = f.pod_dir(&p);
    let plugin = f.plugin();
    f.driver.inject_times(
        "NodePublishVolume",
        Fault::Status(Code::Internal, "disk on fire".into()),
        2,
    );
    for _ in 0..2 {
        let err = setup(&plugin, &p, &pod_dir, &volume).await.unwrap_err();
        assert!(matches!(err, kubelet_core::VolumeError::Mount { .. }));
        assert_eq!(
            err.to_string(),
            r#"MountVolume.SetUp failed for volume "data" : rpc error: code = Internal desc = disk on fire"#
        );
        // A final error: nothing left that looks set up.
        assert!(!pod_dir.join("volumes/kubernetes.io~csi/data").exists());
    }
    // An uncertain one keeps vol_data.json, so a teardown would still find the volume.
    f.driver.inject_times(
        "NodePublishVolume",
        Fault::Status(Code::Unavailable, "busy".into()),
        1,
    );
    let err = setup(&plugin, &p, &pod_dir, &volume).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"MountVolume.SetUp failed for volume "data" : rpc error: code = Unavailable desc = busy"#
    );
    assert!(
        pod_dir
            .join("volumes/kubernetes.io~csi/data/vol_data.json")
            .exists()
    );
    let mounted = setup(&plugin, &p, &pod_dir, &volume)
        .await
        .expect("the retry succeeds");
    assert!(is_mounted(&mounted.host_path));
    assert_eq!(f.driver.count("NodePublishVolume"), 4);
    plugin
        .teardown("uid-web", &pod_dir, "data")
        .await
        .expect("teardown");
    assert!(!is_mounted(&mounted.host_path));
}

#[tokio::test]
async fn an_unregistered_driver_is_reported_in_the_references_words() {
    if !have_root() {
        return;
    }
    let f = Fixture::start(|_| {}).await;
    f.objects.put_driver(ephemeral_modes(false));
    let mut volume = inline_volume("data");
    volume.csi.as_mut().unwrap().driver = "missing.csi.test".into();
    f.objects.drivers.lock().unwrap().insert(
        "missing.csi.test".into(),
        CSIDriver {
            metadata: ObjectMeta::default(),
            spec: ephemeral_modes(false),
        },
    );
    let p = pod("web", vec![volume.clone()]);
    let pod_dir = f.pod_dir(&p);
    let err = setup(&f.plugin(), &p, &pod_dir, &volume).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"MountVolume.SetUp failed for volume "data" : kubernetes.io/csi: mounter.SetUpAt failed to get CSI client: driver name missing.csi.test not found in the list of registered CSI drivers"#
    );
}

#[tokio::test]
async fn a_claim_is_staged_once_for_two_pods_and_unstaged_after_the_last() {
    if !have_root() {
        return;
    }
    let f = Fixture::start(|_| {}).await;
    f.objects.put_driver(CSIDriverSpec {
        attach_required: Some(false),
        ..Default::default()
    });
    f.objects.put_bound_claim("ns1", "claim", "pv-1", "vol-1");
    let volume = claim_volume("data", "claim");
    let (a, b) = (
        pod("a", vec![volume.clone()]),
        pod("b", vec![volume.clone()]),
    );
    let (dir_a, dir_b) = (f.pod_dir(&a), f.pod_dir(&b));
    let plugin = f.plugin();

    let ma = setup(&plugin, &a, &dir_a, &volume).await.expect("setup a");
    let mb = setup(&plugin, &b, &dir_b, &volume).await.expect("setup b");
    // The pod directory is named after the PV, as the reference names it.
    assert_eq!(
        ma.host_path,
        dir_a.join("volumes/kubernetes.io~csi/pv-1/mount")
    );
    assert!(is_mounted(&ma.host_path) && is_mounted(&mb.host_path));
    assert_eq!(f.driver.count("NodeStageVolume"), 1, "staged once per node");
    assert_eq!(f.driver.count("NodePublishVolume"), 2, "published per pod");
    let staging = f.driver.staged()["vol-1"].clone();
    assert!(
        staging.starts_with(f.root.join("plugins/kubernetes.io/csi").join(DRIVER)),
        "{}",
        staging.display()
    );
    assert!(staging.ends_with("globalmount"));
    assert!(is_mounted(&staging));
    let stage = &f.driver.requests()[0];
    assert_eq!(stage.op, "NodeStageVolume");
    assert_eq!(stage.fs_type, "ext4");
    assert_eq!(stage.volume_context["tier"], "gold");
    let publish = &f.driver.requests()[1];
    assert_eq!(publish.staging_target_path, staging.display().to_string());
    assert!(
        !publish
            .volume_context
            .contains_key("csi.storage.k8s.io/pod.name"),
        "no pod info without podInfoOnMount"
    );

    std::fs::write(ma.host_path.join("shared"), "from a").unwrap();
    assert_eq!(
        std::fs::read_to_string(mb.host_path.join("shared")).unwrap(),
        "from a"
    );

    plugin
        .teardown("uid-a", &dir_a, "data")
        .await
        .expect("teardown a");
    assert!(!is_mounted(&ma.host_path));
    assert!(is_mounted(&staging), "b still uses it");
    assert_eq!(f.driver.count("NodeUnstageVolume"), 0);

    plugin
        .teardown("uid-b", &dir_b, "data")
        .await
        .expect("teardown b");
    assert!(!is_mounted(&mb.host_path));
    assert!(!is_mounted(&staging));
    assert_eq!(f.driver.count("NodeUnstageVolume"), 1);
    assert!(
        !staging.parent().unwrap().exists(),
        "global directory removed"
    );
    assert!(f.driver.mounts().is_empty());
}

#[tokio::test]
async fn attachment_is_waited_for_and_its_metadata_passed_on() {
    if !have_root() {
        return;
    }
    let f = Fixture::start(|_| {}).await;
    // No CSIDriver object: attachment required, as the reference assumes.
    f.objects.put_bound_claim("ns1", "claim", "pv-1", "vol-1");
    let volume = claim_volume("data", "claim");
    let p = pod("a", vec![volume.clone()]);
    let dir = f.pod_dir(&p);
    let plugin = f.plugin();
    let err = setup(&plugin, &p, &dir, &volume).await.unwrap_err();
    assert!(
        err.to_string()
            .starts_with(r#"MountVolume.WaitForAttach failed for volume "pv-1" : "#),
        "{err}"
    );
    let name = attachment_name("vol-1", DRIVER, NODE);
    let attachment = |attached: bool| VolumeAttachment {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            ..Default::default()
        },
        spec: VolumeAttachmentSpec {
            attacher: DRIVER.into(),
            node_name: NODE.into(),
            source: VolumeAttachmentSource {
                persistent_volume_name: Some("pv-1".into()),
                ..Default::default()
            },
        },
        status: Some(VolumeAttachmentStatus {
            attached,
            attachment_metadata: Some(BTreeMap::from([("lun".to_string(), "3".to_string())])),
            ..Default::default()
        }),
    };
    f.objects
        .attachments
        .lock()
        .unwrap()
        .insert(name.clone(), attachment(false));
    let err = setup(&plugin, &p, &dir, &volume).await.unwrap_err();
    assert!(err.to_string().contains("is not attached"), "{err}");
    assert_eq!(f.driver.count("NodeStageVolume"), 0);

    f.objects
        .attachments
        .lock()
        .unwrap()
        .insert(name.clone(), attachment(true));
    let m = setup(&plugin, &p, &dir, &volume).await.expect("setup");
    let requests = f.driver.requests();
    assert_eq!(requests[0].publish_context["lun"], "3");
    assert_eq!(requests[1].publish_context["lun"], "3");
    plugin
        .teardown("uid-a", &dir, "data")
        .await
        .expect("teardown");
    assert!(!is_mounted(&m.host_path));
}

#[tokio::test]
async fn a_restarted_plugin_finds_published_volumes_and_leaves_them() {
    if !have_root() {
        return;
    }
    let f = Fixture::start(|_| {}).await;
    f.objects.put_driver(ephemeral_modes(false));
    f.objects.put_bound_claim("ns1", "claim", "pv-1", "vol-1");
    let inline = inline_volume("scratch");
    let claim = claim_volume("data", "claim");
    let p = pod("a", vec![inline.clone(), claim.clone()]);
    let dir = f.pod_dir(&p);
    let first = f.plugin();
    let m1 = setup(&first, &p, &dir, &inline).await.expect("inline");
    let m2 = setup(&first, &p, &dir, &claim).await.expect("claim");
    drop(first);
    let calls = f.driver.calls().len();

    // A new kubelet process: a new plugin, the same node directories.
    let second = f.plugin();
    assert_eq!(setup(&second, &p, &dir, &inline).await.expect("inline"), m1);
    assert_eq!(setup(&second, &p, &dir, &claim).await.expect("claim"), m2);
    let new_calls: Vec<String> = f.driver.calls()[calls..].to_vec();
    assert!(
        !new_calls
            .iter()
            .any(|c| c.contains("Publish") || c.contains("Stage")),
        "neither unpublished nor republished: {new_calls:?}"
    );
    assert!(is_mounted(&m1.host_path) && is_mounted(&m2.host_path));

    second.teardown("uid-a", &dir, "scratch").await.expect("td");
    second.teardown("uid-a", &dir, "data").await.expect("td");
    assert!(f.driver.mounts().is_empty());
}

#[tokio::test]
async fn requires_republish_publishes_on_every_setup_with_fresh_tokens() {
    if !have_root() {
        return;
    }
    let f = Fixture::start(|_| {}).await;
    f.objects.put_driver(CSIDriverSpec {
        requires_republish: Some(true),
        token_requests: Some(vec![TokenRequest {
            audience: "vault".into(),
            expiration_seconds: Some(3600),
        }]),
        ..ephemeral_modes(false)
    });
    let volume = inline_volume("data");
    let p = pod("web", vec![volume.clone()]);
    let dir = f.pod_dir(&p);
    let plugin = f.plugin();
    setup(&plugin, &p, &dir, &volume).await.expect("setup");
    setup(&plugin, &p, &dir, &volume).await.expect("setup");
    assert_eq!(f.driver.count("NodePublishVolume"), 2);
    let publish = &f.driver.requests()[1];
    let tokens: serde_json::Value =
        serde_json::from_str(&publish.volume_context["csi.storage.k8s.io/serviceAccount.tokens"])
            .unwrap();
    assert_eq!(tokens["vault"]["token"], "token-for-vault-web");
    assert_eq!(
        tokens["vault"]["expirationTimestamp"],
        "2030-01-02T03:04:05Z"
    );
    assert_eq!(
        f.objects.token_requests.lock().unwrap()[0],
        ("ns1".into(), "sa1".into(), "vault".into(), "web".into())
    );
    plugin.teardown("uid-web", &dir, "data").await.expect("td");
    assert!(f.driver.mounts().is_empty());
}

#[tokio::test]
async fn generic_ephemeral_claims_must_belong_to_the_pod_and_fs_group_applies() {
    if !have_root() {
        return;
    }
    let f = Fixture::start(|_| {}).await;
    f.objects.put_driver(CSIDriverSpec {
        attach_required: Some(false),
        fs_group_policy: Some("File".into()),
        ..Default::default()
    });
    f.objects
        .put_bound_claim("ns1", "web-cache", "pv-eph", "vol-eph");
    let volume = Volume {
        name: "cache".into(),
        ephemeral: Some(EphemeralVolumeSource::default()),
        ..Default::default()
    };
    let mut p = pod("web", vec![volume.clone()]);
    p.spec.as_mut().unwrap().security_context = Some(PodSecurityContext {
        fs_group: Some(4321),
        ..Default::default()
    });
    let dir = f.pod_dir(&p);
    let plugin = f.plugin();
    let err = setup(&plugin, &p, &dir, &volume).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("PVC ns1/web-cache was not created for pod ns1/web (pod is not owner)"),
        "{err}"
    );
    f.objects
        .claims
        .lock()
        .unwrap()
        .get_mut(&("ns1".to_string(), "web-cache".to_string()))
        .unwrap()
        .metadata
        .owner_references = Some(vec![OwnerReference {
        api_version: "v1".into(),
        kind: "Pod".into(),
        name: "web".into(),
        uid: "uid-web".into(),
        controller: Some(true),
        ..Default::default()
    }]);
    let m = setup(&plugin, &p, &dir, &volume).await.expect("setup");
    assert!(is_mounted(&m.host_path));
    assert_eq!(std::fs::metadata(&m.host_path).unwrap().gid(), 4321);
    plugin.teardown("uid-web", &dir, "cache").await.expect("td");
    assert!(!is_mounted(&m.host_path));
    assert_eq!(f.driver.count("NodeUnstageVolume"), 1);
}

#[tokio::test]
async fn a_driver_with_volume_mount_group_gets_the_fs_group_and_read_only_is_passed() {
    if !have_root() {
        return;
    }
    let f = Fixture::start(|o| o.volume_mount_group = true).await;
    f.objects.put_driver(CSIDriverSpec {
        fs_group_policy: Some("File".into()),
        ..ephemeral_modes(false)
    });
    let mut rw = inline_volume("rw");
    rw.csi.as_mut().unwrap().fs_type = Some("xfs".into());
    let mut ro = inline_volume("ro");
    ro.csi.as_mut().unwrap().read_only = Some(true);
    let mut p = pod("web", vec![rw.clone(), ro.clone()]);
    p.spec.as_mut().unwrap().security_context = Some(PodSecurityContext {
        fs_group: Some(4321),
        ..Default::default()
    });
    let dir = f.pod_dir(&p);
    let plugin = f.plugin();
    let m_rw = setup(&plugin, &p, &dir, &rw).await.expect("rw");
    let m_ro = setup(&plugin, &p, &dir, &ro).await.expect("ro");
    assert!(!m_rw.read_only && m_ro.read_only);
    let requests = f.driver.requests();
    let (rw_req, ro_req) = (&requests[0], &requests[1]);
    // The driver applies the group: the kubelet hands it over and does not walk the volume.
    assert_eq!(rw_req.volume_mount_group, "4321");
    assert_eq!(rw_req.fs_type, "xfs");
    assert_ne!(std::fs::metadata(&m_rw.host_path).unwrap().gid(), 4321);
    assert!(!rw_req.readonly && ro_req.readonly);
    assert!(
        std::fs::write(m_ro.host_path.join("x"), "no").is_err(),
        "read-only mount"
    );
    plugin.teardown("uid-web", &dir, "rw").await.expect("td");
    plugin.teardown("uid-web", &dir, "ro").await.expect("td");
    assert!(f.driver.mounts().is_empty());
    assert!(!dir.join("volumes/kubernetes.io~csi").exists());
}

#[tokio::test]
async fn teardown_waits_for_the_driver_to_register_again() {
    if !have_root() {
        return;
    }
    let f = Fixture::start(|_| {}).await;
    f.objects.put_driver(ephemeral_modes(false));
    let volume = inline_volume("data");
    let p = pod("web", vec![volume.clone()]);
    let dir = f.pod_dir(&p);
    let m = setup(&f.plugin(), &p, &dir, &volume).await.expect("setup");
    let registered = f.registry.get(DRIVER).expect("registered");
    f.registry.remove(DRIVER, &registered.registration_socket);

    // Not waiting: the reference's words, and the volume stays.
    let impatient = CsiVolumePlugin::new(
        f.registry.clone(),
        f.objects.clone(),
        CsiVolumeOptions::new(f.root.clone(), NODE.into()).with_registration_wait(Duration::ZERO),
    );
    let err = impatient
        .teardown("uid-web", &dir, "data")
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            r#"UnmountVolume.TearDown failed for volume "data" : kubernetes.io/csi: Unmounter.TearDownAt failed to get CSI client: driver name {DRIVER} not found in the list of registered CSI drivers"#
        )
    );
    assert!(is_mounted(&m.host_path));

    // A driver registering while teardown waits (as after a kubelet restart).
    let registry = f.registry.clone();
    let again = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        registry.insert(registered);
    });
    support::within("teardown", f.plugin().teardown("uid-web", &dir, "data"))
        .await
        .expect("teardown after the driver registered");
    again.await.unwrap();
    assert!(!is_mounted(&m.host_path));
    assert_eq!(f.driver.count("NodeUnpublishVolume"), 1);
}

#[tokio::test]
async fn attachable_volume_waits_for_volumes_in_use_then_volumes_attached_then_mounts() {
    if !have_root() {
        return;
    }
    let f = Fixture::start(|_| {}).await;
    // No CSIDriver object: attachment required, as the reference assumes.
    f.objects.put_bound_claim("ns1", "claim", "pv-1", "vol-1");
    let volume = claim_volume("data", "claim");
    let (a, b) = (
        pod("a", vec![volume.clone()]),
        pod("b", vec![volume.clone()]),
    );
    let (dir_a, dir_b) = (f.pod_dir(&a), f.pod_dir(&b));
    let volumes = VolumesInUse::new();
    let plugin = f.plugin_in_use(&volumes);
    let name = unique_volume_name(DRIVER, "vol-1");
    assert_eq!(name, format!("kubernetes.io/csi/{DRIVER}^vol-1"));
    let detail = format!(r#"for volume "pv-1" (UniqueName: "{name}") pod "a" (UID: "uid-a")"#);

    // Marked in use at once, refused until a node status listed it.
    let err = setup(&plugin, &a, &dir_a, &volume).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "Volume has not been added to the list of VolumesInUse in the node's volume status {detail}"
        )
    );
    assert_eq!(volumes.list(), [name.as_str()]);

    // Reported (the node agent's part); the Node cannot be read yet.
    volumes.mark_reported(std::slice::from_ref(&name));
    let err = setup(&plugin, &a, &dir_a, &volume).await.unwrap_err();
    assert!(
        err.to_string().starts_with(&format!(
            "VerifyControllerAttachedVolume failed fetching node from API server {detail}: "
        )),
        "{err}"
    );
    // The Node lists other volumes only.
    f.objects.put_node(&["kubernetes.io/csi/other^vol-9"]);
    let err = setup(&plugin, &a, &dir_a, &volume).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("Volume not attached according to node status {detail}")
    );
    assert!(
        f.driver
            .calls()
            .iter()
            .all(|c| !c.contains("Stage") && !c.contains("Publish"))
    );

    // Listed by the controller: then the VolumeAttachment is waited for, as before.
    f.objects.put_node(&[&name]);
    let err = setup(&plugin, &a, &dir_a, &volume).await.unwrap_err();
    assert!(
        err.to_string()
            .starts_with(r#"MountVolume.WaitForAttach failed for volume "pv-1" : "#),
        "{err}"
    );
    f.objects.put_attachment("vol-1", "pv-1", true);
    let ma = setup(&plugin, &a, &dir_a, &volume).await.expect("setup a");
    assert!(is_mounted(&ma.host_path));
    assert_eq!(f.driver.requests()[0].publish_context["lun"], "3");
    // Published: later syncs neither check again nor call the driver.
    let calls = f.driver.calls().len();
    f.objects.put_node(&[]);
    setup(&plugin, &a, &dir_a, &volume)
        .await
        .expect("published volume stays");
    assert_eq!(f.driver.calls().len(), calls);
    f.objects.put_node(&[&name]);

    // A second pod of the same volume: already reported and attached.
    let mb = setup(&plugin, &b, &dir_b, &volume).await.expect("setup b");
    assert!(is_mounted(&mb.host_path));

    // In use until the last pod's volume is unpublished and unstaged.
    plugin
        .teardown("uid-a", &dir_a, "data")
        .await
        .expect("td a");
    assert_eq!(volumes.list(), [name.as_str()], "b still uses it");
    plugin
        .teardown("uid-b", &dir_b, "data")
        .await
        .expect("td b");
    assert_eq!(f.driver.count("NodeUnstageVolume"), 1);
    assert!(volumes.list().is_empty(), "left volumesInUse");
    assert!(!volumes.is_reported(&name));
}

#[tokio::test]
async fn a_pod_deleted_before_its_volume_mounted_leaves_volumes_in_use() {
    if !have_root() {
        return;
    }
    let f = Fixture::start(|_| {}).await;
    f.objects.put_bound_claim("ns1", "claim", "pv-1", "vol-1");
    let volume = claim_volume("data", "claim");
    let a = pod("a", vec![volume.clone()]);
    let dir = f.pod_dir(&a);
    let volumes = VolumesInUse::new();
    let plugin = f.plugin_in_use(&volumes);
    setup(&plugin, &a, &dir, &volume).await.unwrap_err();
    assert_eq!(volumes.list().len(), 1);
    plugin.teardown("uid-a", &dir, "data").await.expect("td");
    assert!(volumes.list().is_empty());
    assert!(
        f.driver
            .calls()
            .iter()
            .all(|c| !c.contains("Stage") && !c.contains("Publish"))
    );
}

#[tokio::test]
async fn volumes_without_attachment_are_not_in_use() {
    if !have_root() {
        return;
    }
    let f = Fixture::start(|_| {}).await;
    f.objects.put_driver(CSIDriverSpec {
        attach_required: Some(false),
        volume_lifecycle_modes: Some(vec!["Persistent".into(), "Ephemeral".into()]),
        ..Default::default()
    });
    f.objects.put_bound_claim("ns1", "claim", "pv-1", "vol-1");
    let (claim, inline) = (claim_volume("data", "claim"), inline_volume("scratch"));
    let a = pod("a", vec![claim.clone(), inline.clone()]);
    let dir = f.pod_dir(&a);
    let volumes = VolumesInUse::new();
    let plugin = f.plugin_in_use(&volumes);
    // Neither reported nor listed in volumesAttached (no Node object at all): no checks.
    setup(&plugin, &a, &dir, &claim).await.expect("claim");
    setup(&plugin, &a, &dir, &inline).await.expect("inline");
    assert!(volumes.list().is_empty());
    plugin.teardown("uid-a", &dir, "data").await.expect("td");
    plugin.teardown("uid-a", &dir, "scratch").await.expect("td");
}

#[tokio::test]
async fn a_restarted_plugin_keeps_mounted_volumes_in_use_until_torn_down() {
    if !have_root() {
        return;
    }
    let f = Fixture::start(|_| {}).await;
    f.objects.put_bound_claim("ns1", "claim", "pv-1", "vol-1");
    let name = unique_volume_name(DRIVER, "vol-1");
    f.objects.put_node(&[&name]);
    f.objects.put_attachment("vol-1", "pv-1", true);
    let volume = claim_volume("data", "claim");
    let a = pod("a", vec![volume.clone()]);
    let dir = f.pod_dir(&a);
    let first = VolumesInUse::new();
    let plugin = f.plugin_in_use(&first);
    setup(&plugin, &a, &dir, &volume).await.unwrap_err();
    first.mark_reported(std::slice::from_ref(&name));
    setup(&plugin, &a, &dir, &volume).await.expect("setup");
    drop(plugin);

    // A new kubelet process: the volume is in use before any pod syncs, so the first
    // node status keeps it in volumesInUse.
    let second = VolumesInUse::new();
    let plugin = f.plugin_in_use(&second);
    assert_eq!(second.list(), [name.as_str()]);
    let calls = f.driver.calls().len();
    // The pod's next sync finds it published (not reported by this process: no check).
    setup(&plugin, &a, &dir, &volume)
        .await
        .expect("found again");
    assert_eq!(f.driver.calls().len(), calls);
    assert_eq!(second.list(), [name.as_str()]);
    plugin.teardown("uid-a", &dir, "data").await.expect("td");
    assert!(second.list().is_empty());
    assert!(f.driver.mounts().is_empty());
}

#[tokio::test]
async fn a_prompt_node_status_lets_the_first_setup_through() {
    if !have_root() {
        return;
    }
    let f = Fixture::start(|_| {}).await;
    f.objects.put_bound_claim("ns1", "claim", "pv-1", "vol-1");
    let name = unique_volume_name(DRIVER, "vol-1");
    f.objects.put_node(&[&name]);
    f.objects.put_attachment("vol-1", "pv-1", true);
    let volume = claim_volume("data", "claim");
    let a = pod("a", vec![volume.clone()]);
    let dir = f.pod_dir(&a);
    let volumes = VolumesInUse::new();
    // The node agent's part: a status with the marked volumes, accepted half a second
    // after they change.
    let agent = volumes.clone();
    let reporting = tokio::spawn(async move {
        loop {
            agent.changed().await;
            tokio::time::sleep(Duration::from_millis(500)).await;
            agent.mark_reported(&agent.list());
        }
    });
    let plugin = f.plugin_reporting(&volumes, Duration::from_secs(10));
    let m = setup(&plugin, &a, &dir, &volume)
        .await
        .expect("mounted once the node status reported it, without a failed sync");
    assert!(is_mounted(&m.host_path));
    plugin.teardown("uid-a", &dir, "data").await.expect("td");
    assert!(volumes.list().is_empty());
    reporting.abort();
}
