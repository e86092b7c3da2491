//! RuntimeClasses (`node.k8s.io/v1`): the runtime handler a pod's `runtimeClassName` names,
//! passed to the runtime when its sandbox is created. A seam, as the reference's
//! `runtimeclass.Manager` (an informer): the API server serves the classes in a cluster
//! (`apiserver::ApiRuntimeClasses`), an embedder may keep them in memory
//! ([`StaticRuntimeClasses`]), and a kubelet without any runs every pod with the default
//! handler, as a reference kubelet without an API server does.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;

/// Why a RuntimeClass could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuntimeClassError {
    /// No such RuntimeClass; worded as the API server's NotFound, which the reference puts
    /// in its FailedCreatePodSandBox event.
    #[error("runtimeclass.node.k8s.io {0:?} not found")]
    NotFound(String),
    /// It could not be looked up (API server unreachable...).
    #[error("failed to lookup RuntimeClass {name}: {message}")]
    Unavailable {
        /// The RuntimeClass.
        name: String,
        /// What went wrong.
        message: String,
    },
}

/// Where the kubelet finds RuntimeClasses.
#[async_trait]
pub trait RuntimeClasses: Send + Sync {
    /// The handler of the RuntimeClass `name`.
    async fn handler(&self, name: &str) -> Result<String, RuntimeClassError>;
}

/// The handler for a pod's `runtimeClassName` (the reference's `LookupRuntimeHandler`): the
/// default handler (empty) without a class name or without any source of classes.
pub async fn lookup_runtime_handler(
    classes: Option<&dyn RuntimeClasses>,
    runtime_class_name: Option<&str>,
) -> Result<String, RuntimeClassError> {
    let Some(name) = runtime_class_name.filter(|n| !n.is_empty()) else {
        return Ok(String::new());
    };
    match classes {
        Some(classes) => classes.handler(name).await,
        None => Ok(String::new()),
    }
}

/// RuntimeClasses kept in memory, by name: for embedders and tests.
#[derive(Debug, Clone, Default)]
pub struct StaticRuntimeClasses {
    handlers: Arc<Mutex<BTreeMap<String, String>>>,
}

impl StaticRuntimeClasses {
    /// Add or replace the RuntimeClass `name` with its handler.
    pub fn put(&self, name: &str, handler: &str) {
        self.handlers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_string(), handler.to_string());
    }
}

#[async_trait]
impl RuntimeClasses for StaticRuntimeClasses {
    async fn handler(&self, name: &str) -> Result<String, RuntimeClassError> {
        self.handlers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
            .ok_or_else(|| RuntimeClassError::NotFound(name.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lookup() {
        let classes = StaticRuntimeClasses::default();
        classes.put("gvisor", "runsc");
        let dynamic: &dyn RuntimeClasses = &classes;
        assert_eq!(
            lookup_runtime_handler(Some(dynamic), None).await,
            Ok(String::new())
        );
        assert_eq!(
            lookup_runtime_handler(Some(dynamic), Some("gvisor")).await,
            Ok("runsc".into())
        );
        let err = lookup_runtime_handler(Some(dynamic), Some("kata"))
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "runtimeclass.node.k8s.io \"kata\" not found"
        );
        assert_eq!(
            lookup_runtime_handler(None, Some("kata")).await,
            Ok(String::new())
        );
    }
}
