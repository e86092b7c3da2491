//! The API objects pods name (ConfigMaps and Secrets for the environment and image pull
//! secrets, Services for the service environment variables), behind a seam: the API server
//! serves them in a cluster (`apiserver::PodObjectFetcher`), an embedder may serve them from
//! anywhere, and a kubelet without any has none (as a reference kubelet without an API
//! server: static pods that name a ConfigMap do not start).
//!
//! ```
//! use std::collections::BTreeMap;
//! use k8s_openapi::api::core::v1::ConfigMap;
//! use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
//! use kubelet_core::objects::{PodObjects, StaticPodObjects};
//!
//! # async fn demo() {
//! let objects = StaticPodObjects::default();
//! objects.put_config_map(ConfigMap {
//!     metadata: ObjectMeta {
//!         name: Some("app".into()),
//!         namespace: Some("default".into()),
//!         ..Default::default()
//!     },
//!     data: Some(BTreeMap::from([("mode".to_string(), "fast".to_string())])),
//!     ..Default::default()
//! });
//! let cm = objects.config_map("default", "app").await.unwrap();
//! assert_eq!(cm.data.unwrap()["mode"], "fast");
//! # }
//! ```

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};

/// Why an object could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ObjectError {
    /// It does not exist. Worded as the reference kubelet's object managers word it
    /// (`configmap "app" not found`), since that text reaches the container's waiting
    /// message and the pod's events.
    #[error("{kind} {name:?} not found")]
    NotFound {
        /// `configmap`, `secret`.
        kind: &'static str,
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// Anything else (forbidden, unreachable, not yet listed); the text says which.
    #[error("{0}")]
    Unavailable(String),
}

impl ObjectError {
    /// Whether the object does not exist (rather than could not be fetched).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound { .. })
    }
}

/// Where the kubelet gets the objects its pods name.
#[async_trait]
pub trait PodObjects: Send + Sync {
    /// The ConfigMap `namespace/name`.
    async fn config_map(&self, namespace: &str, name: &str) -> Result<ConfigMap, ObjectError>;
    /// The Secret `namespace/name`.
    async fn secret(&self, namespace: &str, name: &str) -> Result<Secret, ObjectError>;
    /// The Services of `namespace` the node knows (the reference keeps them from a
    /// cluster-wide watch); an error while they have not been listed once, since an
    /// environment built without them would miss variables for good.
    async fn services(&self, namespace: &str) -> Result<Vec<Service>, ObjectError>;
}

/// Objects kept in memory: for embedders that have their objects at hand, and for tests.
#[derive(Debug, Clone, Default)]
pub struct StaticPodObjects {
    inner: Arc<Mutex<StaticInner>>,
}

#[derive(Debug, Default)]
struct StaticInner {
    config_maps: BTreeMap<(String, String), ConfigMap>,
    secrets: BTreeMap<(String, String), Secret>,
    services: BTreeMap<(String, String), Service>,
}

fn key(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> (String, String) {
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

impl StaticPodObjects {
    fn inner(&self) -> std::sync::MutexGuard<'_, StaticInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
    /// Add or replace a ConfigMap (by its namespace and name).
    pub fn put_config_map(&self, cm: ConfigMap) {
        self.inner().config_maps.insert(key(&cm.metadata), cm);
    }
    /// Add or replace a Secret.
    pub fn put_secret(&self, secret: Secret) {
        self.inner().secrets.insert(key(&secret.metadata), secret);
    }
    /// Add or replace a Service.
    pub fn put_service(&self, service: Service) {
        self.inner()
            .services
            .insert(key(&service.metadata), service);
    }
    /// Remove a ConfigMap.
    pub fn remove_config_map(&self, namespace: &str, name: &str) {
        self.inner()
            .config_maps
            .remove(&(namespace.to_string(), name.to_string()));
    }
}

#[async_trait]
impl PodObjects for StaticPodObjects {
    async fn config_map(&self, namespace: &str, name: &str) -> Result<ConfigMap, ObjectError> {
        let key = (namespace.to_string(), name.to_string());
        self.inner()
            .config_maps
            .get(&key)
            .cloned()
            .ok_or_else(|| ObjectError::NotFound {
                kind: "configmap",
                namespace: key.0,
                name: key.1,
            })
    }
    async fn secret(&self, namespace: &str, name: &str) -> Result<Secret, ObjectError> {
        let key = (namespace.to_string(), name.to_string());
        self.inner()
            .secrets
            .get(&key)
            .cloned()
            .ok_or_else(|| ObjectError::NotFound {
                kind: "secret",
                namespace: key.0,
                name: key.1,
            })
    }
    async fn services(&self, namespace: &str) -> Result<Vec<Service>, ObjectError> {
        Ok(self
            .inner()
            .services
            .iter()
            .filter(|((ns, _), _)| ns == namespace)
            .map(|(_, service)| service.clone())
            .collect())
    }
}
