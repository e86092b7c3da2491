//! [`CsiObjects`]: the API objects the CSI volume plugin reads (CSIDriver, PVC, PV,
//! VolumeAttachment, Secrets, its own Node) and the ServiceAccount tokens it asks for,
//! behind a seam so tests and embedders can serve them from anywhere; [`ApiCsiObjects`]
//! serves them from the API server, as far as the Node authorizer lets a node read them.

use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Secret};
use k8s_openapi::api::storage::v1::{CSIDriver, VolumeAttachment};
use kube::Api;
use kubelet_core::apiserver::{
    BoundPod, FetchError, NodeClient, PodObjectFetcher, ServiceAccountToken,
};

/// The objects behind CSI volumes. `Err(FetchError::NotFound)` when an object does not exist.
#[async_trait]
pub trait CsiObjects: Send + Sync + 'static {
    /// The cluster-scoped `CSIDriver` named after the driver.
    async fn csi_driver(&self, name: &str) -> Result<CSIDriver, FetchError>;
    /// The `PersistentVolumeClaim` `namespace/name`.
    async fn persistent_volume_claim(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<PersistentVolumeClaim, FetchError>;
    /// The `PersistentVolume` `name`.
    async fn persistent_volume(&self, name: &str) -> Result<PersistentVolume, FetchError>;
    /// The `VolumeAttachment` `name`.
    async fn volume_attachment(&self, name: &str) -> Result<VolumeAttachment, FetchError>;
    /// The `Secret` `namespace/name` (a `nodePublishSecretRef`).
    async fn secret(&self, namespace: &str, name: &str) -> Result<Secret, FetchError>;
    /// The node's own `Node` `name`, whose `status.volumesAttached` (written by the
    /// attach/detach controller) says which volumes may be mounted. Only asked when the
    /// plugin reports `volumesInUse` ([`crate::CsiVolumeOptions::with_volumes_in_use`]);
    /// the default answers `Unavailable`, so such a plugin mounts no attachable volume.
    async fn node(&self, name: &str) -> Result<Node, FetchError> {
        Err(FetchError::Unavailable {
            kind: "Node",
            namespace: String::new(),
            name: name.to_string(),
            message: "this CsiObjects does not serve Nodes".to_string(),
        })
    }
    /// A token of `namespace/service_account` for `audience` (empty: the API server's own),
    /// bound to `pod` (TokenRequest), for a CSIDriver's `tokenRequests`.
    async fn service_account_token(
        &self,
        namespace: &str,
        service_account: &str,
        audience: &str,
        expiration: Option<Duration>,
        pod: BoundPod,
    ) -> Result<ServiceAccountToken, FetchError>;
}

/// The token lifetime when a `tokenRequests` entry sets none (the reference's default of
/// one hour).
pub const DEFAULT_TOKEN_EXPIRATION: Duration = Duration::from_secs(3600);

/// [`CsiObjects`] read from the API server. Secrets and tokens go through kubelet-core's
/// [`PodObjectFetcher`] (TTL cache, token refresh); the storage objects are read fresh, since
/// their state (Bound, attached) is what the plugin waits for.
#[derive(Clone)]
pub struct ApiCsiObjects {
    client: kube::Client,
    fetcher: PodObjectFetcher,
}

impl std::fmt::Debug for ApiCsiObjects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiCsiObjects").finish_non_exhaustive()
    }
}

impl ApiCsiObjects {
    /// Objects read with `client` (the node's credentials).
    pub fn new(client: kube::Client) -> Self {
        let fetcher = PodObjectFetcher::new(NodeClient::from_client(client.clone(), "", ""));
        ApiCsiObjects { client, fetcher }
    }
}

fn kube_error(kind: &'static str, namespace: &str, name: &str, err: &kube::Error) -> FetchError {
    let (namespace, name) = (namespace.to_string(), name.to_string());
    let code = match err {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    };
    let message = err.to_string();
    match code {
        Some(404) => FetchError::NotFound {
            kind,
            namespace,
            name,
        },
        Some(401 | 403) => FetchError::Forbidden {
            kind,
            namespace,
            name,
            message,
        },
        // Throttled or a server error: try again later.
        Some(429) | Some(500..) | None => FetchError::Unavailable {
            kind,
            namespace,
            name,
            message,
        },
        Some(_) => FetchError::Rejected {
            kind,
            namespace,
            name,
            message,
        },
    }
}

async fn get<K>(
    api: Api<K>,
    kind: &'static str,
    namespace: &str,
    name: &str,
) -> Result<K, FetchError>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.get(name)
        .await
        .map_err(|e| kube_error(kind, namespace, name, &e))
}

#[async_trait]
impl CsiObjects for ApiCsiObjects {
    async fn csi_driver(&self, name: &str) -> Result<CSIDriver, FetchError> {
        get(Api::all(self.client.clone()), "CSIDriver", "", name).await
    }

    async fn persistent_volume_claim(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<PersistentVolumeClaim, FetchError> {
        let api = Api::namespaced(self.client.clone(), namespace);
        get(api, "PersistentVolumeClaim", namespace, name).await
    }

    async fn persistent_volume(&self, name: &str) -> Result<PersistentVolume, FetchError> {
        get(Api::all(self.client.clone()), "PersistentVolume", "", name).await
    }

    async fn volume_attachment(&self, name: &str) -> Result<VolumeAttachment, FetchError> {
        get(Api::all(self.client.clone()), "VolumeAttachment", "", name).await
    }

    async fn secret(&self, namespace: &str, name: &str) -> Result<Secret, FetchError> {
        self.fetcher.get_secret(namespace, name).await
    }

    async fn node(&self, name: &str) -> Result<Node, FetchError> {
        // Read fresh: volumesAttached is what the mount waits for.
        get(Api::all(self.client.clone()), "Node", "", name).await
    }

    async fn service_account_token(
        &self,
        namespace: &str,
        service_account: &str,
        audience: &str,
        expiration: Option<Duration>,
        pod: BoundPod,
    ) -> Result<ServiceAccountToken, FetchError> {
        let audiences: Vec<String> = if audience.is_empty() {
            Vec::new()
        } else {
            vec![audience.to_string()]
        };
        self.fetcher
            .request_token(
                namespace,
                service_account,
                &audiences,
                expiration.unwrap_or(DEFAULT_TOKEN_EXPIRATION),
                Some(pod),
            )
            .await
    }
}
