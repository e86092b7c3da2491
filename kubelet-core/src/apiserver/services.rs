//! The cluster's Services, kept by a watch as the reference kubelet's service informer keeps
//! them: what the service environment variables of new containers are made of.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use super::client::NodeClient;

/// The Services of every namespace, from a list+watch that resumes on its own.
#[derive(Clone)]
pub struct ServiceCache {
    store: Store<Service>,
    synced: Arc<AtomicBool>,
}

impl std::fmt::Debug for ServiceCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceCache")
            .field("synced", &self.has_synced())
            .field("services", &self.store.state().len())
            .finish()
    }
}

impl ServiceCache {
    /// Start watching (the node may list and watch Services cluster-wide). Abort the handle
    /// to stop.
    pub fn start(client: &NodeClient) -> (Self, JoinHandle<()>) {
        let api: Api<Service> = Api::all(client.client().clone());
        let (store, writer) = reflector::store();
        let synced = Arc::new(AtomicBool::new(false));
        let flag = synced.clone();
        let events = reflector::reflector(writer, watcher(api, watcher::Config::default()))
            .default_backoff();
        let task = tokio::spawn(async move {
            let mut events = std::pin::pin!(events);
            while let Some(event) = events.next().await {
                match event {
                    Ok(watcher::Event::InitDone) => {
                        flag.store(true, Ordering::Release);
                        debug!("services listed");
                    }
                    Ok(_) => {}
                    Err(err) => warn!(error = %err, "watch of services failed; retrying"),
                }
            }
        });
        (Self { store, synced }, task)
    }

    /// Whether the Services have been listed at least once.
    pub fn has_synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    /// The Services of `namespace` known now; an error (the reference's words) before the
    /// first list.
    pub fn services(&self, namespace: &str) -> Result<Vec<Service>, String> {
        if !self.has_synced() {
            return Err(
                "services have not yet been read at least once, cannot construct envvars"
                    .to_string(),
            );
        }
        Ok(self
            .store
            .state()
            .iter()
            .filter(|s| s.metadata.namespace.as_deref() == Some(namespace))
            .map(|s| (**s).clone())
            .collect())
    }
}
