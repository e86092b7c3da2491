//! Authentication of requests to the kubelet server, as the reference's delegating
//! authenticator: x509 client certificates against the client CA (user = CN, groups = O),
//! then bearer tokens (through a [`TokenAuthenticator`], in production a TokenReview to the
//! API server); an error from either is a 401 even when anonymous requests are allowed, and
//! only a request that offers neither credential falls to `system:anonymous`.

use std::collections::BTreeMap;
use std::sync::Arc;
#[cfg(feature = "apiserver")]
use std::time::Duration;

use async_trait::async_trait;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::ClientCertVerifier;

/// The anonymous user's name.
pub const ANONYMOUS_USER: &str = "system:anonymous";
/// The anonymous user's group.
pub const UNAUTHENTICATED_GROUP: &str = "system:unauthenticated";
/// The group every authenticated user is added to.
pub const AUTHENTICATED_GROUP: &str = "system:authenticated";

/// Who made a request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct UserInfo {
    /// User name.
    pub name: String,
    /// UID, when the authenticator knows one.
    pub uid: String,
    /// Groups.
    pub groups: Vec<String>,
    /// Extra attributes (from a TokenReview).
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    /// `system:anonymous` in `system:unauthenticated`.
    pub fn anonymous() -> Self {
        Self {
            name: ANONYMOUS_USER.to_string(),
            groups: vec![UNAUTHENTICATED_GROUP.to_string()],
            ..Default::default()
        }
    }
}

/// Why a credential was refused (every variant ends in a 401).
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuthnError {
    /// The client certificate does not verify against the client CA.
    #[error("x509: certificate not verified by the client CA: {0}")]
    Certificate(String),
    /// The bearer token was not accepted.
    #[error("invalid bearer token")]
    InvalidToken,
    /// The token could not be checked (API server unreachable, refused the review).
    #[error("token review: {0}")]
    Review(String),
}

/// Checks bearer tokens. The API-server backed one is [`WebhookTokenAuthenticator`];
/// embedders and tests may bring their own.
#[async_trait]
pub trait TokenAuthenticator: Send + Sync {
    /// The user the token belongs to, `None` when it is not valid.
    async fn authenticate_token(&self, token: &str) -> Result<Option<UserInfo>, AuthnError>;
}

/// The credentials a request carries.
#[derive(Debug, Clone, Copy, Default)]
pub struct Credentials<'a> {
    /// The client certificate chain from the TLS handshake, leaf first.
    pub peer_certificates: Option<&'a [CertificateDer<'static>]>,
    /// The `Authorization` header's value.
    pub authorization: Option<&'a str>,
}

/// The kubelet server's authenticator.
#[derive(Clone, Default)]
pub struct Authenticator {
    client_ca: Option<Arc<dyn ClientCertVerifier>>,
    token: Option<Arc<dyn TokenAuthenticator>>,
    anonymous: bool,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("x509", &self.client_ca.is_some())
            .field("token", &self.token.is_some())
            .field("anonymous", &self.anonymous)
            .finish()
    }
}

impl Authenticator {
    /// Refuses everything until credentials are configured.
    pub fn new() -> Self {
        Self::default()
    }

    /// Verify client certificates against these CAs (`clientCAFile`).
    pub fn client_ca(mut self, roots: rustls::RootCertStore) -> Result<Self, super::ServerError> {
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .map_err(|e| super::ServerError::Tls(format!("client CA: {e}")))?;
        self.client_ca = Some(verifier);
        Ok(self)
    }

    /// Check bearer tokens with `token`.
    pub fn token(mut self, token: Arc<dyn TokenAuthenticator>) -> Self {
        self.token = Some(token);
        self
    }

    /// Let requests without credentials in as `system:anonymous`.
    pub fn anonymous(mut self, enabled: bool) -> Self {
        self.anonymous = enabled;
        self
    }

    /// The request's user; `Ok(None)` when it is not authenticated (401 either way).
    pub async fn authenticate(
        &self,
        credentials: Credentials<'_>,
    ) -> Result<Option<UserInfo>, AuthnError> {
        let mut first_error = None;
        if let Some(verifier) = &self.client_ca
            && let Some(chain) = credentials.peer_certificates
            && let Some((leaf, intermediates)) = chain.split_first()
        {
            match verify_client_cert(verifier.as_ref(), leaf, intermediates) {
                Ok(user) => return Ok(Some(with_authenticated_group(user))),
                Err(e) => first_error = Some(e),
            }
        }
        if let Some(tokens) = &self.token
            && let Some(token) = credentials.authorization.and_then(bearer_token)
        {
            match tokens.authenticate_token(token).await {
                Ok(Some(user)) => return Ok(Some(with_authenticated_group(user))),
                Ok(None) => {
                    first_error.get_or_insert(AuthnError::InvalidToken);
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None if self.anonymous => Ok(Some(UserInfo::anonymous())),
            None => Ok(None),
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header; anything else is no token.
fn bearer_token(header: &str) -> Option<&str> {
    let mut parts = header.trim().splitn(2, ' ');
    let scheme = parts.next()?;
    let token = parts.next()?.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn with_authenticated_group(mut user: UserInfo) -> UserInfo {
    if user.name != ANONYMOUS_USER && !user.groups.iter().any(|g| g == AUTHENTICATED_GROUP) {
        user.groups.push(AUTHENTICATED_GROUP.to_string());
    }
    user
}

fn verify_client_cert(
    verifier: &dyn ClientCertVerifier,
    leaf: &CertificateDer<'static>,
    intermediates: &[CertificateDer<'static>],
) -> Result<UserInfo, AuthnError> {
    verifier
        .verify_client_cert(leaf, intermediates, UnixTime::now())
        .map_err(|e| AuthnError::Certificate(e.to_string()))?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf)
        .map_err(|e| AuthnError::Certificate(e.to_string()))?;
    let subject = cert.subject();
    let name = subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or_default()
        .to_string();
    if name.is_empty() {
        return Err(AuthnError::Certificate(
            "the certificate has no common name".to_string(),
        ));
    }
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_string))
        .collect();
    Ok(UserInfo {
        name,
        groups,
        ..Default::default()
    })
}

/// Tokens checked by TokenReviews to the API server, answers cached for `cache_ttl`
/// (`authentication.webhook.cacheTTL`, 2m by default), valid and invalid alike.
#[cfg(feature = "apiserver")]
pub struct WebhookTokenAuthenticator {
    client: kube::Client,
    cache_ttl: Duration,
    cache: super::cache::TtlCache<[u8; 32], Option<UserInfo>>,
}

#[cfg(feature = "apiserver")]
impl WebhookTokenAuthenticator {
    /// The reference's default cache TTL.
    pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(120);
    /// How long one review may take (the reference's 10 s).
    const TIMEOUT: Duration = Duration::from_secs(10);

    /// Reviews through `client` (the node's own credentials).
    pub fn new(client: kube::Client, cache_ttl: Duration) -> Self {
        Self {
            client,
            cache_ttl,
            cache: super::cache::TtlCache::new(),
        }
    }
}

#[cfg(feature = "apiserver")]
#[async_trait]
impl TokenAuthenticator for WebhookTokenAuthenticator {
    async fn authenticate_token(&self, token: &str) -> Result<Option<UserInfo>, AuthnError> {
        use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
        use sha2::Digest;

        // Keyed by a digest, so that the cache does not hold the tokens themselves.
        let key: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        if let Some(answer) = self.cache.get(&key) {
            return Ok(answer);
        }
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: token.to_string(),
                audiences: None,
            },
            ..Default::default()
        };
        let api: kube::Api<TokenReview> = kube::Api::all(self.client.clone());
        let created = tokio::time::timeout(
            Self::TIMEOUT,
            api.create(&kube::api::PostParams::default(), &review),
        )
        .await
        .map_err(|_| AuthnError::Review(format!("no answer within {:?}", Self::TIMEOUT)))?
        .map_err(|e| AuthnError::Review(e.to_string()))?;
        let status = created.status.unwrap_or_default();
        let answer = match (status.authenticated, status.user) {
            (Some(true), Some(user)) => Some(UserInfo {
                name: user.username.unwrap_or_default(),
                uid: user.uid.unwrap_or_default(),
                groups: user.groups.unwrap_or_default(),
                extra: user.extra.unwrap_or_default(),
            }),
            _ => {
                if let Some(error) = status.error.filter(|e| !e.is_empty()) {
                    tracing::debug!(%error, "token review refused the token");
                }
                None
            }
        };
        self.cache.insert(key, answer.clone(), self.cache_ttl);
        Ok(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;

    #[async_trait]
    impl TokenAuthenticator for Fixed {
        async fn authenticate_token(&self, token: &str) -> Result<Option<UserInfo>, AuthnError> {
            Ok((token == "good").then(|| UserInfo {
                name: "alice".into(),
                ..Default::default()
            }))
        }
    }

    #[tokio::test]
    async fn tokens_anonymous_and_errors() {
        let authn = Authenticator::new().token(Arc::new(Fixed)).anonymous(true);
        let creds = |h| Credentials {
            peer_certificates: None,
            authorization: h,
        };
        let user = authn
            .authenticate(creds(Some("Bearer good")))
            .await
            .expect("ok")
            .expect("user");
        assert_eq!(user.name, "alice");
        assert_eq!(user.groups, [AUTHENTICATED_GROUP]);
        // A bad token is an error, not a fall to anonymous.
        assert!(authn.authenticate(creds(Some("Bearer bad"))).await.is_err());
        // No credential, or a header that is not a bearer token: anonymous.
        for header in [None, Some("Basic abc"), Some("Bearer ")] {
            let user = authn
                .authenticate(creds(header))
                .await
                .expect("ok")
                .expect("user");
            assert_eq!(user, UserInfo::anonymous());
        }
        let closed = Authenticator::new().token(Arc::new(Fixed));
        assert!(
            closed
                .authenticate(creds(None))
                .await
                .expect("ok")
                .is_none()
        );
    }
}
