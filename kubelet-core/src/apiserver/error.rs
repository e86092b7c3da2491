//! Errors of the API-server client, and how kube-rs errors map onto the seams' error kinds.

use std::path::PathBuf;

use thiserror::Error;

use crate::error::{ReportError, SourceError};

/// Building or checking the API-server client failed.
#[derive(Debug, Error)]
pub enum ApiClientError {
    /// The kubeconfig file could not be read or used.
    #[error("kubeconfig {path}: {source}")]
    Kubeconfig {
        /// The `--kubeconfig` path.
        path: PathBuf,
        /// What kube-rs reported.
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// The in-cluster configuration (service account token, CA, `KUBERNETES_SERVICE_*`) is
    /// not usable.
    #[error("in-cluster config: {0}")]
    InCluster(#[source] kube::config::InClusterError),
    /// The HTTP client could not be built from the configuration (TLS, client certificate).
    #[error("API server client for {url}: {source}")]
    Build {
        /// The API server URL.
        url: String,
        /// What kube-rs reported.
        #[source]
        source: kube::Error,
    },
    /// The API server did not answer.
    #[error("cannot reach the API server at {url}: {message}")]
    Unreachable {
        /// The API server URL.
        url: String,
        /// The transport error.
        message: String,
    },
    /// The API server did not accept our credentials (401).
    #[error("the API server at {url} refused our credentials (401 Unauthorized): {message}")]
    Unauthorized {
        /// The API server URL.
        url: String,
        /// The server's message.
        message: String,
    },
    /// The API server authenticated us but refused the request (403): not authorized as the
    /// node (`system:node:<name>` in the `system:nodes` group).
    #[error(
        "the API server at {url} forbids {what} to system:node:{node} (403 Forbidden): {message}"
    )]
    Forbidden {
        /// The API server URL.
        url: String,
        /// Our node name.
        node: String,
        /// What was asked (`get nodes/<name>`).
        what: String,
        /// The server's message.
        message: String,
    },
    /// Any other answer.
    #[error("the API server at {url} answered {what}: {message}")]
    Other {
        /// The API server URL.
        url: String,
        /// What was asked.
        what: String,
        /// The error.
        message: String,
    },
}

/// Fetching a ConfigMap, Secret or ServiceAccount token failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// The object does not exist.
    #[error("{kind} {namespace}/{name} not found")]
    NotFound {
        /// `ConfigMap`, `Secret`, `ServiceAccount`.
        kind: &'static str,
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// The node may not read it (the Node authorizer only allows objects that pods bound to
    /// this node reference).
    #[error("{kind} {namespace}/{name}: forbidden: {message}")]
    Forbidden {
        /// Object kind.
        kind: &'static str,
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// The server's message.
        message: String,
    },
    /// The API server cannot be reached or is overloaded; try again later.
    #[error("{kind} {namespace}/{name}: API server unavailable: {message}")]
    Unavailable {
        /// Object kind.
        kind: &'static str,
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// The error.
        message: String,
    },
    /// The request was refused as invalid (e.g. a token expiration below 10 minutes).
    #[error("{kind} {namespace}/{name}: rejected: {message}")]
    Rejected {
        /// Object kind.
        kind: &'static str,
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// The server's message.
        message: String,
    },
}

impl FetchError {
    /// Whether retrying later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }

    pub(crate) fn from_kube(
        kind: &'static str,
        namespace: &str,
        name: &str,
        err: &kube::Error,
    ) -> Self {
        let (namespace, name) = (namespace.to_string(), name.to_string());
        match status_code(err) {
            Some(404) => Self::NotFound {
                kind,
                namespace,
                name,
            },
            Some(401 | 403) => Self::Forbidden {
                kind,
                namespace,
                name,
                message: message(err),
            },
            Some(code) if !is_retryable_code(code) => Self::Rejected {
                kind,
                namespace,
                name,
                message: message(err),
            },
            _ => Self::Unavailable {
                kind,
                namespace,
                name,
                message: message(err),
            },
        }
    }
}

/// The HTTP status code of an error the API server answered with; `None` for transport
/// errors (the server was not reached or the connection broke).
pub(crate) fn status_code(err: &kube::Error) -> Option<u16> {
    match err {
        kube::Error::Api(status) if status.code != 0 => Some(status.code),
        _ => None,
    }
}

/// The server's message for API errors, the error chain for the rest.
pub(crate) fn message(err: &kube::Error) -> String {
    match err {
        kube::Error::Api(status) if !status.message.is_empty() => status.message.clone(),
        other => {
            let mut text = other.to_string();
            let mut source = std::error::Error::source(other);
            while let Some(s) = source {
                let part = s.to_string();
                if !text.contains(&part) {
                    text.push_str(": ");
                    text.push_str(&part);
                }
                source = s.source();
            }
            text
        }
    }
}

/// 429 (throttled), 5xx (server trouble) and 408/504 (timeouts) may succeed on retry.
fn is_retryable_code(code: u16) -> bool {
    code == 429 || code == 408 || code >= 500
}

/// Maps a kube-rs error to the reporter's error kinds; `what` names the call and object.
pub(crate) fn report_error(what: &str, err: &kube::Error) -> ReportError {
    let text = format!("{what}: {}", message(err));
    match status_code(err) {
        Some(404) => ReportError::NotFound(text),
        Some(409) => ReportError::Conflict(text),
        Some(code) if is_retryable_code(code) => ReportError::Unavailable(text),
        Some(_) => ReportError::Rejected(text),
        None => ReportError::Unavailable(text),
    }
}

/// Maps a kube-rs error of the pod source to [`SourceError`].
pub(crate) fn source_error(origin: &str, err: &kube::Error) -> SourceError {
    SourceError::Unavailable {
        origin: origin.to_string(),
        message: message(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16, reason: &str) -> kube::Error {
        kube::Error::Api(
            kube::core::Status {
                code,
                reason: reason.into(),
                message: format!("{reason} message"),
                ..kube::core::Status::failure("x", reason)
            }
            .boxed(),
        )
    }

    #[test]
    fn api_errors_map_to_report_kinds() {
        assert!(matches!(
            report_error("w", &api(404, "NotFound")),
            ReportError::NotFound(_)
        ));
        assert!(matches!(
            report_error("w", &api(409, "Conflict")),
            ReportError::Conflict(_)
        ));
        assert!(matches!(
            report_error("w", &api(403, "Forbidden")),
            ReportError::Rejected(_)
        ));
        assert!(matches!(
            report_error("w", &api(422, "Invalid")),
            ReportError::Rejected(_)
        ));
        assert!(matches!(
            report_error("w", &api(429, "TooManyRequests")),
            ReportError::Unavailable(_)
        ));
        assert!(matches!(
            report_error("w", &api(503, "ServiceUnavailable")),
            ReportError::Unavailable(_)
        ));
        let e = report_error("patch pods/a/status", &api(404, "NotFound"));
        assert_eq!(
            e.to_string(),
            "not found: patch pods/a/status: NotFound message"
        );
    }

    #[test]
    fn fetch_errors_name_the_object() {
        let e = FetchError::from_kube("Secret", "ns", "db", &api(404, "NotFound"));
        assert_eq!(e.to_string(), "Secret ns/db not found");
        let e = FetchError::from_kube("Secret", "ns", "db", &api(503, "ServiceUnavailable"));
        assert!(e.is_retryable());
        let e = FetchError::from_kube("ConfigMap", "ns", "c", &api(403, "Forbidden"));
        assert!(matches!(e, FetchError::Forbidden { .. }));
    }
}
