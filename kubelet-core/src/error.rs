//! The error kinds shared by the seams, so callers decide by kind (retry, not found, invalid).

use thiserror::Error;

/// An error from a [`crate::Runtime`].
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RuntimeError {
    /// The sandbox, container or image does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The runtime cannot be reached or is overloaded; the call may be retried.
    #[error("runtime unavailable: {0}")]
    Unavailable(String),
    /// The call did not finish within its deadline.
    #[error("deadline exceeded: {0}")]
    DeadlineExceeded(String),
    /// The runtime rejected the request as malformed; retrying the same request will not help.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Pulling an image failed.
    #[error("image pull failed: {0}")]
    ImagePull(String),
    /// The object exists already (e.g. a container name taken in a sandbox).
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// The runtime does not offer this call (e.g. no streaming server).
    #[error("not supported: {0}")]
    Unsupported(String),
    /// Anything else the runtime reported.
    #[error("runtime error: {0}")]
    Other(String),
}

impl RuntimeError {
    /// Whether retrying the same call later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::DeadlineExceeded(_))
    }

    /// Whether the object named in the call does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound(_))
    }
}

/// An error from a [`crate::VolumePlugin`].
#[derive(Debug, Error)]
pub enum VolumeError {
    /// The volume references something that does not exist (yet), e.g. a missing ConfigMap.
    #[error("volume {volume}: {message}")]
    NotReady {
        /// Volume name in the pod spec.
        volume: String,
        /// What is missing.
        message: String,
    },
    /// The volume spec is invalid.
    #[error("volume {volume}: invalid: {message}")]
    Invalid {
        /// Volume name in the pod spec.
        volume: String,
        /// What is wrong.
        message: String,
    },
    /// No plugin handles this volume's type.
    #[error("volume {0}: no plugin supports this volume type")]
    Unsupported(String),
    /// Filesystem or mount failure.
    #[error("volume {volume}: {path}: {source}")]
    Io {
        /// Volume name in the pod spec.
        volume: String,
        /// The path the operation failed on.
        path: std::path::PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Anything else the plugin reported.
    #[error("volume {volume}: {message}")]
    Other {
        /// Volume name in the pod spec.
        volume: String,
        /// What went wrong.
        message: String,
    },
}

/// An error from a [`crate::NetworkPlugin`].
#[derive(Debug, Error)]
pub enum NetworkError {
    /// The network is not configured yet (e.g. no CNI config); retry later.
    #[error("network not ready: {0}")]
    NotReady(String),
    /// Setting up or tearing down the pod's network failed.
    #[error("network plugin {plugin}: {message}")]
    Plugin {
        /// The plugin that failed.
        plugin: String,
        /// What it reported.
        message: String,
    },
    /// The runtime failed while the network was being inspected.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

/// An error from a [`crate::NodeReporter`].
#[derive(Debug, Error)]
pub enum ReportError {
    /// The API server (or sink) cannot be reached; the report is retried later.
    #[error("reporter unavailable: {0}")]
    Unavailable(String),
    /// The object changed underneath us (e.g. UID mismatch, resourceVersion conflict).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The object is gone.
    #[error("not found: {0}")]
    NotFound(String),
    /// The report was refused (forbidden, invalid).
    #[error("rejected: {0}")]
    Rejected(String),
}

/// An error from a [`crate::PodSource`] or from reading a pod manifest.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SourceError {
    /// A manifest could not be parsed or failed validation. `origin` names the file or URL,
    /// `field` the offending field path where known.
    #[error("{origin}: {field}: {message}")]
    InvalidManifest {
        /// File path or URL.
        origin: String,
        /// Field path, e.g. `spec.containers[0].image`.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The source could not be read (I/O, HTTP).
    #[error("{origin}: {message}")]
    Unavailable {
        /// File path or URL.
        origin: String,
        /// What went wrong.
        message: String,
    },
}

/// An error with its causes, each once: reqwest's and hyper's own messages are often just
/// "error sending request".
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
