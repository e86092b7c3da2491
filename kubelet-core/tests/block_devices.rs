//! Raw block volumes (`volumeDevices`) on the real reconciler with the stateful fake
//! runtime under paused time: a volume plugin that reports a block device has it handed to
//! the runtime as a CRI device (never as a mount), and a container naming a volume that is
//! missing or not a block volume, or mounting a block volume, waits in
//! `CreateContainerConfigError` with a message naming pod, container and field.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{
    EmptyDirVolumeSource, PersistentVolumeClaimVolumeSource, Pod, Volume, VolumeDevice, VolumeMount,
};
use kubelet_core::error::VolumeError;
use kubelet_core::runtime::{ContainerState, Device};
use kubelet_core::testing::pods::{container, pod};
use kubelet_core::volume::{MountedVolume, VolumeContext, VolumePlugin};

mod support {
    // Shared by the scenario test files; each uses part of it.
    #[allow(dead_code)]
    pub mod scenario;
}

use support::scenario::{IMAGE, Node, runtime};

const LIMIT: Duration = Duration::from_secs(60);

/// A plugin of claims that are raw block devices at `<pod-dir>/volumeDevices/test~block/
/// <name>` (the path is only handed on: the fake runtime opens nothing). Records teardowns.
#[derive(Default)]
struct RawBlockPlugin {
    torn_down: Mutex<Vec<String>>,
}

#[async_trait]
impl VolumePlugin for RawBlockPlugin {
    fn name(&self) -> &str {
        "test/block"
    }
    fn can_support(&self, volume: &Volume) -> bool {
        volume.persistent_volume_claim.is_some()
    }
    async fn setup(
        &self,
        ctx: &VolumeContext<'_>,
        volume: &Volume,
    ) -> Result<MountedVolume, VolumeError> {
        let link = ctx
            .pod_dir
            .join("volumeDevices/test~block")
            .join(&volume.name);
        let read_only = volume
            .persistent_volume_claim
            .as_ref()
            .and_then(|c| c.read_only)
            .unwrap_or(false);
        Ok(MountedVolume {
            host_path: link.clone(),
            read_only,
            size_limit_bytes: None,
            block_device: Some(link),
        })
    }
    async fn teardown(
        &self,
        _pod_uid: &str,
        _pod_dir: &Path,
        volume_name: &str,
    ) -> Result<(), VolumeError> {
        self.torn_down
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(volume_name.to_string());
        Ok(())
    }
}

fn claim(name: &str, read_only: bool) -> Volume {
    Volume {
        name: name.into(),
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
            claim_name: format!("claim-{name}"),
            read_only: Some(read_only),
        }),
        ..Default::default()
    }
}

fn scratch() -> Volume {
    Volume {
        name: "scratch".into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    }
}

fn device(name: &str, path: &str) -> VolumeDevice {
    VolumeDevice {
        name: name.into(),
        device_path: path.into(),
    }
}

fn uid(p: &Pod) -> String {
    p.metadata.uid.clone().unwrap_or_default()
}

impl Node {
    fn with_block_plugin(plugin: Arc<RawBlockPlugin>) -> Self {
        Node::start_with(runtime(), |b| b.volume_plugin(plugin))
    }

    fn waiting(&self, uid: &str, name: &str) -> Option<(String, String)> {
        let w = self
            .reporter
            .last_pod_status(uid)?
            .container_statuses?
            .into_iter()
            .find(|c| c.name == name)?
            .state?
            .waiting?;
        Some((w.reason.unwrap_or_default(), w.message.unwrap_or_default()))
    }
}

#[tokio::test(start_paused = true)]
async fn volume_devices_reach_the_runtime_as_devices() {
    let plugin = Arc::new(RawBlockPlugin::default());
    let node = Node::with_block_plugin(plugin.clone());
    let p = pod("raw")
        .spec(|s| s.volumes = Some(vec![claim("disk", false), claim("ro", true), scratch()]))
        .container(container("app", IMAGE).with(|c| {
            c.volume_devices = Some(vec![device("disk", "/dev/xvda"), device("ro", "/dev/xvdb")]);
            c.volume_mounts = Some(vec![VolumeMount {
                name: "scratch".into(),
                mount_path: "/scratch".into(),
                ..Default::default()
            }]);
        }))
        .build();
    let u = uid(&p);
    node.pods.snapshot(vec![p]);
    node.until(LIMIT, "app running", |n| {
        n.runtime
            .containers_of("raw", "app")
            .iter()
            .any(|c| c.state == ContainerState::Running)
    })
    .await;
    let id = node.runtime.containers_of("raw", "app")[0].id.clone();
    let config = node.runtime.container_config(&id).expect("config");
    let pod_dir: PathBuf = node.root.join("pods").join(&u);
    let link = |name: &str| {
        pod_dir
            .join("volumeDevices/test~block")
            .join(name)
            .to_string_lossy()
            .into_owned()
    };
    assert_eq!(
        config.devices,
        vec![
            Device {
                container_path: "/dev/xvda".into(),
                host_path: link("disk"),
                permissions: "mrw".into(),
            },
            Device {
                container_path: "/dev/xvdb".into(),
                host_path: link("ro"),
                permissions: "r".into(),
            },
        ]
    );
    // The block volumes are no mounts; the emptyDir is.
    assert!(
        config
            .mounts
            .iter()
            .all(|m| !m.host_path.contains("volumeDevices")),
        "{:?}",
        config.mounts
    );
    assert!(
        config.mounts.iter().any(|m| m.container_path == "/scratch"),
        "{:?}",
        config.mounts
    );

    // Deleting the pod tears its block volumes down through the plugin.
    node.pods.snapshot(vec![]);
    node.until(LIMIT, "block volumes torn down", |_| {
        let torn = plugin.torn_down.lock().unwrap_or_else(|e| e.into_inner());
        torn.contains(&"disk".to_string()) && torn.contains(&"ro".to_string())
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn bad_volume_devices_keep_the_container_waiting() {
    let node = Node::with_block_plugin(Arc::default());
    let cases = [
        (
            "not-block",
            vec![device("scratch", "/dev/xvda")],
            None,
            r#"cannot find volume "scratch" to pass into container "app" (pod "default/not-block", spec.containers[0].volumeDevices[0]: the volume is not a block volume (volumeMode Block))"#,
        ),
        (
            "missing",
            vec![device("disk", "/dev/xvda"), device("nope", "/dev/xvdb")],
            None,
            r#"cannot find volume "nope" to pass into container "app" (pod "default/missing", spec.containers[0].volumeDevices[1]: no volume of that name in the pod)"#,
        ),
        (
            "mounted",
            vec![],
            Some("disk"),
            r#"cannot find volume "disk" to mount into container "app" (pod "default/mounted", spec.containers[0].volumeMounts[0]: the volume has volumeMode Block; use volumeDevices)"#,
        ),
    ];
    let mut pods = Vec::new();
    for (name, devices, mount, _) in &cases {
        let devices = devices.clone();
        let mount = *mount;
        pods.push(
            pod(*name)
                .spec(|s| s.volumes = Some(vec![claim("disk", false), scratch()]))
                .container(container("app", IMAGE).with(move |c| {
                    c.volume_devices = Some(devices);
                    c.volume_mounts = mount.map(|m| {
                        vec![VolumeMount {
                            name: m.into(),
                            mount_path: "/data".into(),
                            ..Default::default()
                        }]
                    });
                }))
                .build(),
        );
    }
    // A good pod beside them runs: one broken pod never harms the others.
    pods.push(
        pod("good")
            .spec(|s| s.volumes = Some(vec![claim("disk", false)]))
            .container(
                container("app", IMAGE)
                    .with(|c| c.volume_devices = Some(vec![device("disk", "/dev/xvda")])),
            )
            .build(),
    );
    let uids: Vec<String> = pods.iter().map(uid).collect();
    node.pods.snapshot(pods);
    for ((name, _, _, message), u) in cases.iter().zip(&uids) {
        node.until(LIMIT, &format!("{name}: CreateContainerConfigError"), |n| {
            n.waiting(u, "app")
                .is_some_and(|(r, _)| r == "CreateContainerConfigError")
        })
        .await;
        let (_, got) = node.waiting(u, "app").unwrap_or_default();
        assert_eq!(got, *message, "{name}");
        assert!(node.runtime.containers_of(name, "app").is_empty(), "{name}");
    }
    node.until(LIMIT, "good running", |n| {
        n.runtime
            .containers_of("good", "app")
            .iter()
            .any(|c| c.state == ContainerState::Running)
    })
    .await;
}
