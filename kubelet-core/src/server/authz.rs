//! Authorization of requests to the kubelet server: the reference's request attributes
//! (`pkg/kubelet/server/auth.go`) and the `AlwaysAllow` and `Webhook` (SubjectAccessReview)
//! authorizers.

#[cfg(feature = "apiserver")]
use std::time::Duration;

use async_trait::async_trait;

use super::authn::UserInfo;

/// What a request asks to do, as a SubjectAccessReview's resource attributes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Attributes {
    /// The user.
    pub user: UserInfo,
    /// `get`, `create`, `update`, `patch`, `delete` (from the HTTP method).
    pub verb: String,
    /// Always `nodes`.
    pub resource: String,
    /// `proxy`, `stats`, `metrics`, `log`, `healthz`, `pods`, `configz`, `checkpoint`.
    pub subresource: String,
    /// The node's name.
    pub name: String,
    /// Always `v1`.
    pub api_version: String,
    /// The request path (for logs).
    pub path: String,
}

/// Whether `path` is `prefix` or below it (the reference's `isSubpath`).
fn is_subpath(path: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    path == prefix || (path.starts_with(prefix) && path.as_bytes().get(prefix.len()) == Some(&b'/'))
}

/// The API verb of an HTTP method (empty for methods the reference does not map).
pub fn verb_of(method: &http::Method) -> &'static str {
    match *method {
        http::Method::POST => "create",
        http::Method::GET => "get",
        http::Method::PUT => "update",
        http::Method::PATCH => "patch",
        http::Method::DELETE => "delete",
        _ => "",
    }
}

/// The attributes to try, in order, for a request: with the reference's fine-grained
/// kubelet authorization (on by default since v1.33), `/healthz`, `/pods`, `/runningpods`
/// and `/configz` are first checked against their own subresource and then against
/// `proxy`; `/stats`, `/metrics`, `/logs` and `/checkpoint` against theirs; everything else
/// against `proxy`. The request is allowed when one of them is.
pub fn request_attributes(
    user: &UserInfo,
    method: &http::Method,
    path: &str,
    node_name: &str,
) -> Vec<Attributes> {
    let mut subresources = Vec::with_capacity(2);
    if is_subpath(path, "/pods") || is_subpath(path, "/runningpods/") {
        subresources.push("pods");
    } else if is_subpath(path, "/healthz") {
        subresources.push("healthz");
    } else if is_subpath(path, "/configz") {
        subresources.push("configz");
    }
    subresources.push(if is_subpath(path, "/stats/") {
        "stats"
    } else if is_subpath(path, "/metrics") {
        "metrics"
    } else if is_subpath(path, "/logs/") {
        // "log", as the API's other log subresources (pods/log).
        "log"
    } else if is_subpath(path, "/checkpoint") {
        "checkpoint"
    } else {
        "proxy"
    });
    subresources
        .into_iter()
        .map(|subresource| Attributes {
            user: user.clone(),
            verb: verb_of(method).to_string(),
            resource: "nodes".to_string(),
            subresource: subresource.to_string(),
            name: node_name.to_string(),
            api_version: "v1".to_string(),
            path: path.to_string(),
        })
        .collect()
}

/// An authorizer's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Allowed.
    Allow,
    /// Denied, or no opinion (both forbid here), with the reason given.
    Deny(String),
}

/// The authorizer could not decide (the request gets a 500, as in the reference).
#[derive(Debug, Clone, thiserror::Error)]
#[error("authorization: {0}")]
pub struct AuthzError(pub String);

/// Decides whether a request may proceed.
#[async_trait]
pub trait Authorizer: Send + Sync {
    /// The decision for `attributes`.
    async fn authorize(&self, attributes: &Attributes) -> Result<Decision, AuthzError>;
}

/// `authorization.mode: AlwaysAllow`.
#[derive(Debug, Clone, Copy, Default)]
pub struct AlwaysAllow;

#[async_trait]
impl Authorizer for AlwaysAllow {
    async fn authorize(&self, _attributes: &Attributes) -> Result<Decision, AuthzError> {
        Ok(Decision::Allow)
    }
}

/// `authorization.mode: Webhook`: a SubjectAccessReview to the API server per distinct
/// request, allowed answers cached for `cache_authorized_ttl` (5m by default) and denied ones
/// for `cache_unauthorized_ttl` (30s).
#[cfg(feature = "apiserver")]
pub struct WebhookAuthorizer {
    client: kube::Client,
    cache_authorized_ttl: Duration,
    cache_unauthorized_ttl: Duration,
    cache: super::cache::TtlCache<Attributes, Decision>,
}

#[cfg(feature = "apiserver")]
impl WebhookAuthorizer {
    /// The reference's `cacheAuthorizedTTL` default.
    pub const DEFAULT_CACHE_AUTHORIZED_TTL: Duration = Duration::from_secs(300);
    /// The reference's `cacheUnauthorizedTTL` default.
    pub const DEFAULT_CACHE_UNAUTHORIZED_TTL: Duration = Duration::from_secs(30);
    /// How long one review may take.
    const TIMEOUT: Duration = Duration::from_secs(10);

    /// Reviews through `client` (the node's own credentials).
    pub fn new(
        client: kube::Client,
        cache_authorized_ttl: Duration,
        cache_unauthorized_ttl: Duration,
    ) -> Self {
        Self {
            client,
            cache_authorized_ttl,
            cache_unauthorized_ttl,
            cache: super::cache::TtlCache::new(),
        }
    }
}

#[cfg(feature = "apiserver")]
#[async_trait]
impl Authorizer for WebhookAuthorizer {
    async fn authorize(&self, a: &Attributes) -> Result<Decision, AuthzError> {
        use k8s_openapi::api::authorization::v1::{
            ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
        };

        // The path is not part of the question (resource attributes only), so it stays out
        // of the key.
        let key = Attributes {
            path: String::new(),
            ..a.clone()
        };
        if let Some(decision) = self.cache.get(&key) {
            return Ok(decision);
        }
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(a.user.name.clone()),
                uid: (!a.user.uid.is_empty()).then(|| a.user.uid.clone()),
                groups: Some(a.user.groups.clone()),
                extra: (!a.user.extra.is_empty()).then(|| a.user.extra.clone()),
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(a.verb.clone()),
                    version: Some(a.api_version.clone()),
                    resource: Some(a.resource.clone()),
                    subresource: Some(a.subresource.clone()),
                    name: Some(a.name.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let api: kube::Api<SubjectAccessReview> = kube::Api::all(self.client.clone());
        let created = tokio::time::timeout(
            Self::TIMEOUT,
            api.create(&kube::api::PostParams::default(), &review),
        )
        .await
        .map_err(|_| AuthzError(format!("no answer within {:?}", Self::TIMEOUT)))?
        .map_err(|e| AuthzError(e.to_string()))?;
        let status = created.status.unwrap_or_default();
        let (decision, ttl) = if status.allowed {
            (Decision::Allow, self.cache_authorized_ttl)
        } else {
            let reason = status
                .reason
                .or(status.evaluation_error)
                .unwrap_or_default();
            (Decision::Deny(reason), self.cache_unauthorized_ttl)
        };
        self.cache.insert(key, decision.clone(), ttl);
        Ok(decision)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subresources(method: http::Method, path: &str) -> Vec<String> {
        request_attributes(&UserInfo::anonymous(), &method, path, "node-1")
            .into_iter()
            .map(|a| a.subresource)
            .collect()
    }

    #[test]
    fn subresources_by_path_as_the_reference() {
        assert_eq!(
            subresources(http::Method::GET, "/healthz"),
            ["healthz", "proxy"]
        );
        assert_eq!(
            subresources(http::Method::GET, "/healthz/ping"),
            ["healthz", "proxy"]
        );
        assert_eq!(subresources(http::Method::GET, "/pods"), ["pods", "proxy"]);
        assert_eq!(
            subresources(http::Method::GET, "/runningpods/"),
            ["pods", "proxy"]
        );
        assert_eq!(subresources(http::Method::GET, "/podsx"), ["proxy"]);
        assert_eq!(subresources(http::Method::GET, "/stats/summary"), ["stats"]);
        assert_eq!(
            subresources(http::Method::GET, "/metrics/cadvisor"),
            ["metrics"]
        );
        assert_eq!(subresources(http::Method::GET, "/logs/"), ["log"]);
        assert_eq!(subresources(http::Method::GET, "/logs/syslog"), ["log"]);
        assert_eq!(
            subresources(http::Method::GET, "/containerLogs/ns/p/c"),
            ["proxy"]
        );
        let a = &request_attributes(
            &UserInfo::anonymous(),
            &http::Method::POST,
            "/exec/a/b/c",
            "n",
        )[0];
        assert_eq!(
            (
                a.verb.as_str(),
                a.resource.as_str(),
                a.name.as_str(),
                a.api_version.as_str()
            ),
            ("create", "nodes", "n", "v1")
        );
    }
}
