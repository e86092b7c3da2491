//! API objects for the CSI volume plugin's tests, served from maps (a `CsiObjects` of the
//! tests' own), and the names of the example driver and node they use.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{
    AttachedVolume, CSIPersistentVolumeSource, Node, NodeStatus, ObjectReference, PersistentVolume,
    PersistentVolumeClaim, PersistentVolumeClaimSpec, PersistentVolumeClaimStatus,
    PersistentVolumeSpec, Secret,
};
use k8s_openapi::api::storage::v1::{
    CSIDriver, CSIDriverSpec, VolumeAttachment, VolumeAttachmentSource, VolumeAttachmentSpec,
    VolumeAttachmentStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kubelet_core::apiserver::{BoundPod, FetchError, ServiceAccountToken};
use kubelet_csi::CsiObjects;
use kubelet_csi::volume::attachment_name;

/// The example driver's name in these tests.
pub const DRIVER: &str = "hostpath.csi.kubelet.test";
/// The node's name in these tests.
pub const NODE: &str = "node-a";

/// The API objects, served from maps.
#[derive(Default)]
pub struct TestObjects {
    pub drivers: Mutex<HashMap<String, CSIDriver>>,
    pub claims: Mutex<HashMap<(String, String), PersistentVolumeClaim>>,
    pub volumes: Mutex<HashMap<String, PersistentVolume>>,
    pub attachments: Mutex<HashMap<String, VolumeAttachment>>,
    pub secrets: Mutex<HashMap<(String, String), Secret>>,
    pub nodes: Mutex<HashMap<String, Node>>,
    /// Token requests seen: (namespace, service account, audience, pod name).
    pub token_requests: Mutex<Vec<(String, String, String, String)>>,
}

pub fn not_found(kind: &'static str, namespace: &str, name: &str) -> FetchError {
    FetchError::NotFound {
        kind,
        namespace: namespace.to_string(),
        name: name.to_string(),
    }
}

fn get<K: Clone + std::hash::Hash + Eq, V: Clone>(
    map: &Mutex<HashMap<K, V>>,
    key: &K,
    kind: &'static str,
    ns: &str,
    name: &str,
) -> Result<V, FetchError> {
    map.lock()
        .unwrap()
        .get(key)
        .cloned()
        .ok_or_else(|| not_found(kind, ns, name))
}

#[async_trait]
impl CsiObjects for TestObjects {
    async fn csi_driver(&self, name: &str) -> Result<CSIDriver, FetchError> {
        get(&self.drivers, &name.to_string(), "CSIDriver", "", name)
    }
    async fn persistent_volume_claim(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<PersistentVolumeClaim, FetchError> {
        let key = (namespace.to_string(), name.to_string());
        get(&self.claims, &key, "PersistentVolumeClaim", namespace, name)
    }
    async fn persistent_volume(&self, name: &str) -> Result<PersistentVolume, FetchError> {
        get(
            &self.volumes,
            &name.to_string(),
            "PersistentVolume",
            "",
            name,
        )
    }
    async fn volume_attachment(&self, name: &str) -> Result<VolumeAttachment, FetchError> {
        get(
            &self.attachments,
            &name.to_string(),
            "VolumeAttachment",
            "",
            name,
        )
    }
    async fn secret(&self, namespace: &str, name: &str) -> Result<Secret, FetchError> {
        let key = (namespace.to_string(), name.to_string());
        get(&self.secrets, &key, "Secret", namespace, name)
    }
    async fn node(&self, name: &str) -> Result<Node, FetchError> {
        get(&self.nodes, &name.to_string(), "Node", "", name)
    }
    async fn service_account_token(
        &self,
        namespace: &str,
        service_account: &str,
        audience: &str,
        _expiration: Option<Duration>,
        pod: BoundPod,
    ) -> Result<ServiceAccountToken, FetchError> {
        self.token_requests.lock().unwrap().push((
            namespace.into(),
            service_account.into(),
            audience.into(),
            pod.name.clone(),
        ));
        Ok(ServiceAccountToken {
            token: format!("token-for-{audience}-{}", pod.name),
            expiration: "2030-01-02T03:04:05Z".parse().unwrap(),
        })
    }
}

impl TestObjects {
    /// The Node `NODE` with `attached` in `status.volumesAttached`, as the attach/detach
    /// controller writes it.
    pub fn put_node(&self, attached: &[&str]) {
        self.nodes.lock().unwrap().insert(
            NODE.into(),
            Node {
                metadata: ObjectMeta {
                    name: Some(NODE.into()),
                    ..Default::default()
                },
                spec: None,
                status: Some(NodeStatus {
                    volumes_attached: Some(
                        attached
                            .iter()
                            .map(|name| AttachedVolume {
                                name: (*name).to_string(),
                                device_path: String::new(),
                            })
                            .collect(),
                    ),
                    ..Default::default()
                }),
            },
        );
    }

    /// The VolumeAttachment of `handle` on `NODE`, attached or not, with metadata.
    pub fn put_attachment(&self, handle: &str, pv_name: &str, attached: bool) {
        let name = attachment_name(handle, DRIVER, NODE);
        self.attachments.lock().unwrap().insert(
            name.clone(),
            VolumeAttachment {
                metadata: ObjectMeta {
                    name: Some(name),
                    ..Default::default()
                },
                spec: VolumeAttachmentSpec {
                    attacher: DRIVER.into(),
                    node_name: NODE.into(),
                    source: VolumeAttachmentSource {
                        persistent_volume_name: Some(pv_name.into()),
                        ..Default::default()
                    },
                },
                status: Some(VolumeAttachmentStatus {
                    attached,
                    attachment_metadata: Some(BTreeMap::from([(
                        "lun".to_string(),
                        "3".to_string(),
                    )])),
                    ..Default::default()
                }),
            },
        );
    }

    pub fn put_driver(&self, spec: CSIDriverSpec) {
        self.drivers.lock().unwrap().insert(
            DRIVER.into(),
            CSIDriver {
                metadata: ObjectMeta {
                    name: Some(DRIVER.into()),
                    ..Default::default()
                },
                spec,
            },
        );
    }

    /// A PV `pv_name` with volume handle `handle` (ext4), bound to the claim `ns/claim`.
    pub fn put_bound_claim(&self, ns: &str, claim: &str, pv_name: &str, handle: &str) {
        self.put_claim(ns, claim, pv_name, handle, None, None);
    }

    /// A CSIDriver without attachment (as the hostpath driver deploys).
    pub fn put_driver_without_attachment(&self) {
        self.put_driver(CSIDriverSpec {
            attach_required: Some(false),
            ..Default::default()
        });
    }

    /// A PV `pv_name` (handle `handle`, `volumeMode` `mode`) bound to the claim `ns/claim`,
    /// the claim owned by `owner` (a pod UID) when given.
    pub fn put_claim_of_mode(
        &self,
        claim: &str,
        pv_name: &str,
        handle: &str,
        mode: &str,
        owner: Option<&str>,
    ) {
        self.put_claim("ns", claim, pv_name, handle, Some(mode), owner);
    }

    fn put_claim(
        &self,
        ns: &str,
        claim: &str,
        pv_name: &str,
        handle: &str,
        mode: Option<&str>,
        owner: Option<&str>,
    ) {
        let claim_uid = format!("uid-{claim}");
        self.claims.lock().unwrap().insert(
            (ns.into(), claim.into()),
            PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some(claim.into()),
                    namespace: Some(ns.into()),
                    uid: Some(claim_uid.clone()),
                    owner_references: owner.map(|uid| {
                        vec![OwnerReference {
                            api_version: "v1".into(),
                            kind: "Pod".into(),
                            name: "owner".into(),
                            uid: uid.into(),
                            controller: Some(true),
                            ..Default::default()
                        }]
                    }),
                    ..Default::default()
                },
                spec: Some(PersistentVolumeClaimSpec {
                    volume_name: Some(pv_name.into()),
                    volume_mode: mode.map(Into::into),
                    ..Default::default()
                }),
                status: Some(PersistentVolumeClaimStatus {
                    phase: Some("Bound".into()),
                    ..Default::default()
                }),
            },
        );
        self.volumes.lock().unwrap().insert(
            pv_name.into(),
            PersistentVolume {
                metadata: ObjectMeta {
                    name: Some(pv_name.into()),
                    ..Default::default()
                },
                spec: Some(PersistentVolumeSpec {
                    access_modes: Some(vec!["ReadWriteOnce".into()]),
                    volume_mode: mode.map(Into::into),
                    claim_ref: Some(ObjectReference {
                        name: Some(claim.into()),
                        namespace: Some(ns.into()),
                        uid: Some(claim_uid),
                        ..Default::default()
                    }),
                    csi: Some(CSIPersistentVolumeSource {
                        driver: DRIVER.into(),
                        volume_handle: handle.into(),
                        // Filesystem volumes name one; a raw block volume has none.
                        fs_type: mode.is_none().then(|| "ext4".into()),
                        volume_attributes: Some(BTreeMap::from([(
                            "tier".to_string(),
                            "gold".to_string(),
                        )])),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                status: None,
            },
        );
    }
}
