//! ConfigMaps, Secrets and ServiceAccount tokens, fetched as pods need them (for env and
//! volumes), with a cache so that every sync of a pod does not hit the API server.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use tokio::time::Instant;
use tracing::warn;

use super::client::NodeClient;
use super::error::FetchError;
use super::services::ServiceCache;
use crate::objects::{ObjectError, PodObjects};

/// How long a fetched ConfigMap or Secret is used before it is fetched again (the
/// reference's TTL cache default, `node.alpha.kubernetes.io/ttl` unset: 1 minute).
pub const DEFAULT_OBJECT_TTL: Duration = Duration::from_secs(60);
/// The shortest token lifetime the API server accepts.
pub const MIN_TOKEN_EXPIRATION: Duration = Duration::from_secs(600);

/// A ServiceAccount token obtained through the TokenRequest API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccountToken {
    /// The bearer token.
    pub token: String,
    /// When it expires, as the API server said.
    pub expiration: k8s_openapi::jiff::Timestamp,
}

/// The pod a token is bound to: the token is invalid once that pod is gone.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BoundPod {
    /// Pod name.
    pub name: String,
    /// Pod UID.
    pub uid: String,
}

/// What a token request asks for; also the token cache's key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenKey {
    /// Namespace of the service account.
    pub namespace: String,
    /// Service account name.
    pub service_account: String,
    /// Audiences; empty means the API server's own.
    pub audiences: Vec<String>,
    /// Requested lifetime in seconds (at least 600).
    pub expiration_seconds: i64,
    /// The pod the token is bound to.
    pub bound_pod: Option<BoundPod>,
}

#[derive(Debug, Clone)]
struct Cached<T> {
    value: T,
    fetched: Instant,
}

#[derive(Debug, Clone)]
struct CachedToken {
    token: ServiceAccountToken,
    issued: Instant,
    lifetime: Duration,
}

#[derive(Debug, Default)]
struct Caches {
    configmaps: HashMap<(String, String), Cached<ConfigMap>>,
    secrets: HashMap<(String, String), Cached<Secret>>,
    tokens: HashMap<TokenKey, CachedToken>,
}

/// Fetches the objects pods reference. Cheap to clone (the cache is shared).
///
/// ConfigMaps and Secrets are kept for a TTL (default 1 minute); while the API server is
/// unreachable, a stale copy is returned rather than an error, so that a pod restarting a
/// container during an outage still gets its environment. Tokens are reused until 80 % of
/// their lifetime has passed or they are 24 hours old, as the reference token manager does.
#[derive(Clone)]
pub struct PodObjectFetcher {
    client: NodeClient,
    ttl: Duration,
    caches: Arc<Mutex<Caches>>,
    services: Option<ServiceCache>,
}

impl std::fmt::Debug for PodObjectFetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodObjectFetcher")
            .field("node", &self.client.node_name())
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl PodObjectFetcher {
    /// A fetcher with the default TTL.
    pub fn new(client: NodeClient) -> Self {
        Self {
            client,
            ttl: DEFAULT_OBJECT_TTL,
            caches: Arc::default(),
            services: None,
        }
    }

    /// Serve Services from this cache (see [`ServiceCache::start`]); without one the fetcher
    /// knows no Services and pods get no service environment variables.
    pub fn with_services(mut self, services: ServiceCache) -> Self {
        self.services = Some(services);
        self
    }

    /// Sets how long fetched ConfigMaps and Secrets are used.
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    fn caches(&self) -> std::sync::MutexGuard<'_, Caches> {
        self.caches
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The ConfigMap `namespace/name`.
    pub async fn get_configmap(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<ConfigMap, FetchError> {
        let key = (namespace.to_string(), name.to_string());
        let cached = self.caches().configmaps.get(&key).cloned();
        let api: Api<ConfigMap> = Api::namespaced(self.client.client().clone(), namespace);
        let result = fetch(
            "ConfigMap",
            namespace,
            name,
            cached,
            self.ttl,
            api.get(name),
        )
        .await;
        self.store(result, |c| &mut c.configmaps, key)
    }

    /// The Secret `namespace/name`.
    pub async fn get_secret(&self, namespace: &str, name: &str) -> Result<Secret, FetchError> {
        let key = (namespace.to_string(), name.to_string());
        let cached = self.caches().secrets.get(&key).cloned();
        let api: Api<Secret> = Api::namespaced(self.client.client().clone(), namespace);
        let result = fetch("Secret", namespace, name, cached, self.ttl, api.get(name)).await;
        self.store(result, |c| &mut c.secrets, key)
    }

    fn store<T: Clone>(
        &self,
        result: Result<(T, Option<Instant>), FetchError>,
        map: impl FnOnce(&mut Caches) -> &mut HashMap<(String, String), Cached<T>>,
        key: (String, String),
    ) -> Result<T, FetchError> {
        let mut caches = self.caches();
        let map = map(&mut caches);
        match result {
            Ok((value, Some(fetched))) => {
                map.insert(
                    key,
                    Cached {
                        value: value.clone(),
                        fetched,
                    },
                );
                Ok(value)
            }
            Ok((value, None)) => Ok(value),
            Err(err) => {
                if matches!(err, FetchError::NotFound { .. }) {
                    map.remove(&key);
                }
                Err(err)
            }
        }
    }

    /// A token for `namespace/service_account` (TokenRequest), bound to the pod when given.
    /// `expiration` is raised to the API server's minimum of 10 minutes.
    pub async fn request_token(
        &self,
        namespace: &str,
        service_account: &str,
        audiences: &[String],
        expiration: Duration,
        bound_pod: Option<BoundPod>,
    ) -> Result<ServiceAccountToken, FetchError> {
        let expiration = expiration.max(MIN_TOKEN_EXPIRATION);
        let key = TokenKey {
            namespace: namespace.to_string(),
            service_account: service_account.to_string(),
            audiences: audiences.to_vec(),
            expiration_seconds: i64::try_from(expiration.as_secs()).unwrap_or(i64::MAX),
            bound_pod,
        };
        let now = Instant::now();
        if let Some(cached) = self.caches().tokens.get(&key)
            && !needs_refresh(cached, now)
        {
            return Ok(cached.token.clone());
        }
        let request = TokenRequest {
            metadata: ObjectMeta::default(),
            spec: Some(TokenRequestSpec {
                audiences: Some(key.audiences.clone()),
                expiration_seconds: Some(key.expiration_seconds),
                bound_object_ref: key.bound_pod.as_ref().map(|p| BoundObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: Some(p.name.clone()),
                    uid: Some(p.uid.clone()),
                }),
                ..Default::default()
            }),
            status: None,
        };
        let api: Api<ServiceAccount> = Api::namespaced(self.client.client().clone(), namespace);
        let answer = api
            .create_token_request(service_account, &PostParams::default(), &request)
            .await;
        let answer = match answer {
            Ok(answer) => answer,
            Err(err) => {
                let err = FetchError::from_kube("ServiceAccount", namespace, service_account, &err);
                // A still-valid token serves through an outage.
                if err.is_retryable()
                    && let Some(cached) = self.caches().tokens.get(&key)
                    && k8s_openapi::jiff::Timestamp::now() < cached.token.expiration
                {
                    warn!(error = %err, "token refresh failed; using the current token");
                    return Ok(cached.token.clone());
                }
                return Err(err);
            }
        };
        let (Some(token), Some(expiration)) = answer
            .status
            .map_or((None, None), |s| (s.token, s.expiration_timestamp))
        else {
            return Err(FetchError::Rejected {
                kind: "ServiceAccount",
                namespace: namespace.to_string(),
                name: service_account.to_string(),
                message: "the token request came back without status.token".to_string(),
            });
        };
        let token = ServiceAccountToken {
            token,
            expiration: expiration.0,
        };
        let lifetime = token
            .expiration
            .duration_since(k8s_openapi::jiff::Timestamp::now())
            .unsigned_abs();
        self.caches().tokens.insert(
            key,
            CachedToken {
                token: token.clone(),
                issued: now,
                lifetime,
            },
        );
        Ok(token)
    }

    /// Forgets the tokens bound to a pod (call when the pod is gone).
    pub fn forget_pod(&self, pod_uid: &str) {
        self.caches()
            .tokens
            .retain(|k, _| k.bound_pod.as_ref().is_none_or(|p| p.uid != pod_uid));
    }
}

/// The reference's wording for a missing object (`configmap "app" not found`), else the
/// fetch error's.
fn object_error(err: FetchError) -> ObjectError {
    match err {
        FetchError::NotFound {
            kind,
            namespace,
            name,
        } => ObjectError::NotFound {
            kind: match kind {
                "ConfigMap" => "configmap",
                "Secret" => "secret",
                _ => "object",
            },
            namespace,
            name,
        },
        other => ObjectError::Unavailable(other.to_string()),
    }
}

#[async_trait::async_trait]
impl PodObjects for PodObjectFetcher {
    async fn config_map(&self, namespace: &str, name: &str) -> Result<ConfigMap, ObjectError> {
        self.get_configmap(namespace, name)
            .await
            .map_err(object_error)
    }
    async fn secret(&self, namespace: &str, name: &str) -> Result<Secret, ObjectError> {
        self.get_secret(namespace, name).await.map_err(object_error)
    }
    async fn services(
        &self,
        namespace: &str,
    ) -> Result<Vec<k8s_openapi::api::core::v1::Service>, ObjectError> {
        match &self.services {
            Some(cache) => cache.services(namespace).map_err(ObjectError::Unavailable),
            None => Ok(Vec::new()),
        }
    }
}

/// As the reference token manager: refresh past 80 % of the lifetime, or after 24 h.
fn needs_refresh(cached: &CachedToken, now: Instant) -> bool {
    let age = now.saturating_duration_since(cached.issued);
    age >= cached.lifetime.mul_f64(0.8) || age >= Duration::from_secs(24 * 3600)
}

/// A cached value younger than `ttl`, or the fetched one (with the fetch time to cache it),
/// or the stale cached one when the server is unreachable.
async fn fetch<T: Clone>(
    kind: &'static str,
    namespace: &str,
    name: &str,
    cached: Option<Cached<T>>,
    ttl: Duration,
    get: impl Future<Output = Result<T, kube::Error>>,
) -> Result<(T, Option<Instant>), FetchError> {
    let now = Instant::now();
    if let Some(c) = &cached
        && now.saturating_duration_since(c.fetched) < ttl
    {
        return Ok((c.value.clone(), None));
    }
    match get.await {
        Ok(value) => Ok((value, Some(now))),
        Err(err) => {
            let err = FetchError::from_kube(kind, namespace, name, &err);
            match cached {
                Some(c) if err.is_retryable() => {
                    warn!(error = %err, "using the last fetched copy");
                    Ok((c.value, None))
                }
                _ => Err(err),
            }
        }
    }
}
