//! RuntimeClasses (`node.k8s.io/v1`) from the API server, which a node may read: the
//! [`crate::runtime_class::RuntimeClasses`] of a cluster.
//!
//! Where this differs from the reference: the reference keeps an informer (a watch) of every
//! RuntimeClass; this asks for the one a pod names when its sandbox is created and keeps
//! what it got for a TTL (an absent class is asked for again at the next try, so that a pod
//! starts soon after its class is created).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::node::v1::RuntimeClass;
use kube::api::Api;
use tokio::time::Instant;

use super::client::NodeClient;
use crate::runtime_class::{RuntimeClassError, RuntimeClasses};

/// How long a RuntimeClass's handler is used before it is asked for again.
pub const DEFAULT_RUNTIME_CLASS_TTL: Duration = Duration::from_secs(60);

/// RuntimeClasses read from the API server, cached for a TTL. Cheap to clone.
#[derive(Clone)]
pub struct ApiRuntimeClasses {
    client: NodeClient,
    ttl: Duration,
    cache: Arc<Mutex<HashMap<String, (String, Instant)>>>,
}

impl std::fmt::Debug for ApiRuntimeClasses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiRuntimeClasses")
            .field("node", &self.client.node_name())
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl ApiRuntimeClasses {
    /// RuntimeClasses through the node's client, with the default TTL.
    pub fn new(client: NodeClient) -> Self {
        Self {
            client,
            ttl: DEFAULT_RUNTIME_CLASS_TTL,
            cache: Arc::default(),
        }
    }

    /// Sets how long a handler is used before it is asked for again.
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    fn cached(&self, name: &str) -> Option<String> {
        let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        cache
            .get(name)
            .filter(|(_, at)| at.elapsed() < self.ttl)
            .map(|(handler, _)| handler.clone())
    }
}

#[async_trait]
impl RuntimeClasses for ApiRuntimeClasses {
    async fn handler(&self, name: &str) -> Result<String, RuntimeClassError> {
        if let Some(handler) = self.cached(name) {
            return Ok(handler);
        }
        let api: Api<RuntimeClass> = Api::all(self.client.client().clone());
        match api.get(name).await {
            Ok(class) => {
                self.cache
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(name.to_string(), (class.handler.clone(), Instant::now()));
                Ok(class.handler)
            }
            Err(kube::Error::Api(status)) if status.code == 404 => {
                self.cache
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(name);
                Err(RuntimeClassError::NotFound(name.to_string()))
            }
            Err(err) => {
                // While the API server is away, a handler known before is still good.
                let stale = self
                    .cache
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get(name)
                    .map(|(handler, _)| handler.clone());
                stale.ok_or_else(|| RuntimeClassError::Unavailable {
                    name: name.to_string(),
                    message: err.to_string(),
                })
            }
        }
    }
}
