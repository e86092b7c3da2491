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

/// How gRPC-Go prints a status (`rpc error: code = Unknown desc = ...`): the text runtimes'
/// errors reach the reference kubelet's events and pod statuses in.
pub fn grpc_status_text(code: tonic::Code, message: &str) -> String {
    let name = match code {
        // gRPC-Go's names where they differ from the enum's.
        tonic::Code::Ok => "OK".to_string(),
        tonic::Code::Cancelled => "Canceled".to_string(),
        other => format!("{other:?}"),
    };
    format!("{RPC_ERROR}{name} desc = {message}")
}

const RPC_ERROR: &str = "rpc error: code = ";
const DESC: &str = " desc = ";

impl RuntimeError {
    /// The error's text without the kind's prefix.
    pub fn detail(&self) -> &str {
        match self {
            Self::NotFound(m)
            | Self::Unavailable(m)
            | Self::DeadlineExceeded(m)
            | Self::InvalidArgument(m)
            | Self::ImagePull(m)
            | Self::AlreadyExists(m)
            | Self::Unsupported(m)
            | Self::Other(m) => m,
        }
    }

    /// The runtime's error as gRPC-Go prints it (`rpc error: code = ... desc = ...`), as the
    /// reference's `FailedCreatePodSandBox` events and image pull failures carry it; the
    /// [detail](Self::detail) for an error that did not come over gRPC.
    pub fn rpc_text(&self) -> &str {
        let detail = self.detail();
        detail.find(RPC_ERROR).map_or(detail, |i| &detail[i..])
    }

    /// What the runtime said, without the call's context: a gRPC status' description (the
    /// reference's `status.Message()`, what it shows as a container's waiting message and
    /// in its `Failed` events), else the [detail](Self::detail).
    pub fn runtime_message(&self) -> &str {
        let text = self.rpc_text();
        match (text.starts_with(RPC_ERROR), text.find(DESC)) {
            (true, Some(i)) => &text[i + DESC.len()..],
            _ => text,
        }
    }

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
    /// Mounting failed with a message already worded as the reference kubelet's events word
    /// it (it names the volume itself, e.g. `MountVolume.SetUp failed for volume "x" : ...`).
    #[error("{message}")]
    Mount {
        /// Volume name in the pod spec.
        volume: String,
        /// The whole message.
        message: String,
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

#[cfg(test)]
mod runtime_error_text_tests {
    use super::*;

    #[test]
    fn grpc_text_and_message_as_the_reference_shows_them() {
        let err = RuntimeError::Other(format!(
            "StartContainer container abc: {}",
            grpc_status_text(
                tonic::Code::Unknown,
                "failed to create containerd task: boom"
            )
        ));
        assert_eq!(
            err.rpc_text(),
            "rpc error: code = Unknown desc = failed to create containerd task: boom"
        );
        assert_eq!(
            err.runtime_message(),
            "failed to create containerd task: boom"
        );
        assert_eq!(
            grpc_status_text(tonic::Code::Cancelled, "x"),
            "rpc error: code = Canceled desc = x"
        );
        // Not from gRPC (the fake runtime, a custom runtime): the detail itself.
        let plain = RuntimeError::NotFound("container \"x\" not found".into());
        assert_eq!(plain.rpc_text(), "container \"x\" not found");
        assert_eq!(plain.runtime_message(), "container \"x\" not found");
    }
}
