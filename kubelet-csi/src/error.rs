//! [`CsiError`]: what a CSI or registration call can fail with, and which failures leave the
//! operation possibly still in progress.
//!
//! gRPC codes are classified as the reference kubelet classifies them
//! (`pkg/volume/csi/csi_client.go`, `isFinalError`):
//!
//! | class | codes | meaning for the caller |
//! |---|---|---|
//! | uncertain ([`CsiError::Uncertain`], [`CsiError::Timeout`]) | `Cancelled`, `DeadlineExceeded`, `Unavailable`, `ResourceExhausted`, `Aborted` | the driver may still be working on the call (or on an earlier one for the same volume); do not assume nothing happened: retry the same call (stage/publish are idempotent) or undo it |
//! | final ([`CsiError::Final`]) | every other code, e.g. `InvalidArgument`, `NotFound`, `AlreadyExists`, `FailedPrecondition`, `OutOfRange`, `Unimplemented`, `Internal`, `Unknown` | the call failed and is not in progress; retrying is up to the caller's backoff, with fixed arguments where the spec says so |
//!
//! A client-side timeout counts as `DeadlineExceeded`. Errors that are not gRPC statuses
//! (a socket that cannot be dialled) are "uncertain" too, as the reference treats them in its
//! mount path, "to be on the safe side".

use std::time::Duration;

use thiserror::Error;
use tonic::Code;

/// An error of the CSI node client, the registration client or the plugin watcher.
#[derive(Debug, Error)]
pub enum CsiError {
    /// The endpoint is not a unix socket address this crate understands.
    #[error("CSI endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The socket could not be connected.
    #[error("CSI endpoint {endpoint}: connect: {source}")]
    Connect {
        /// The endpoint as given.
        endpoint: String,
        /// The transport error.
        #[source]
        source: tonic::transport::Error,
    },
    /// Connecting took longer than the connect timeout.
    #[error("CSI endpoint {endpoint}: no connection within {timeout:?}")]
    ConnectTimeout {
        /// The endpoint as given.
        endpoint: String,
        /// The timeout that passed.
        timeout: Duration,
    },
    /// The call did not finish within its timeout; the driver may still be working on it.
    #[error("{op} on {endpoint}: no answer within {timeout:?}")]
    Timeout {
        /// The RPC, e.g. `NodePublishVolume`.
        op: &'static str,
        /// The endpoint called.
        endpoint: String,
        /// The timeout that passed.
        timeout: Duration,
    },
    /// The driver answered with a status after which the operation is certainly not in progress.
    #[error("{op} on {endpoint}: {code:?}: {message}")]
    Final {
        /// The RPC.
        op: &'static str,
        /// The endpoint called.
        endpoint: String,
        /// The gRPC code.
        code: Code,
        /// The driver's message.
        message: String,
    },
    /// The call failed in a way that leaves the operation possibly still in progress
    /// (see the module table).
    #[error("{op} on {endpoint}: {code:?} (operation may still be in progress): {message}")]
    Uncertain {
        /// The RPC.
        op: &'static str,
        /// The endpoint called.
        endpoint: String,
        /// The gRPC code.
        code: Code,
        /// The driver's (or transport's) message.
        message: String,
    },
    /// The request was refused before it was sent (e.g. an empty volume ID).
    #[error("{op}: invalid request: {reason}")]
    InvalidRequest {
        /// The RPC.
        op: &'static str,
        /// What is missing or wrong.
        reason: String,
    },
    /// The driver answered, but with something the spec does not allow (e.g. no node ID).
    #[error("{op} on {endpoint}: invalid response: {reason}")]
    InvalidResponse {
        /// The RPC.
        op: &'static str,
        /// The endpoint called.
        endpoint: String,
        /// What is wrong with the answer.
        reason: String,
    },
    /// A plugin asked to be registered and was refused (wrong type, no supported version,
    /// NodeGetInfo failed...). The reason was also sent to the plugin.
    #[error("plugin at {socket}: registration refused: {reason}")]
    Registration {
        /// The registration socket.
        socket: String,
        /// Why, as sent in NotifyRegistrationStatus.
        reason: String,
    },
    /// Watching the plugin registry directory failed.
    #[error("watching {path}: {source}")]
    Watch {
        /// The directory.
        path: String,
        /// The watcher's error.
        #[source]
        source: notify::Error,
    },
    /// A filesystem operation on `path` failed.
    #[error("{path}: {source}")]
    Io {
        /// The path the operation was on.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// Whether a gRPC code leaves the operation possibly in progress (the reference's
/// `!isFinalError`).
pub fn is_uncertain_code(code: Code) -> bool {
    matches!(
        code,
        Code::Cancelled
            | Code::DeadlineExceeded
            | Code::Unavailable
            | Code::ResourceExhausted
            | Code::Aborted
    )
}

impl CsiError {
    /// Classify the gRPC status `status` of the call `op` on `endpoint`.
    pub fn from_status(op: &'static str, endpoint: &str, status: &tonic::Status) -> CsiError {
        let code = status.code();
        let endpoint = endpoint.to_string();
        let message = status.message().to_string();
        if is_uncertain_code(code) {
            CsiError::Uncertain {
                op,
                endpoint,
                code,
                message,
            }
        } else {
            CsiError::Final {
                op,
                endpoint,
                code,
                message,
            }
        }
    }

    /// The gRPC code this error stands for: the driver's, `DeadlineExceeded` for a timeout,
    /// `Unavailable` for a socket that could not be reached, `InvalidArgument` for a request
    /// refused before sending; `None` for the rest.
    pub fn code(&self) -> Option<Code> {
        match self {
            CsiError::Final { code, .. } | CsiError::Uncertain { code, .. } => Some(*code),
            CsiError::Timeout { .. } => Some(Code::DeadlineExceeded),
            CsiError::Connect { .. } | CsiError::ConnectTimeout { .. } => Some(Code::Unavailable),
            CsiError::InvalidRequest { .. } => Some(Code::InvalidArgument),
            _ => None,
        }
    }

    /// Whether the operation may still be in progress on the driver's side, so that the
    /// caller must not assume nothing happened (the reference's "uncertain progress").
    pub fn is_uncertain(&self) -> bool {
        matches!(
            self,
            CsiError::Uncertain { .. }
                | CsiError::Timeout { .. }
                | CsiError::Connect { .. }
                | CsiError::ConnectTimeout { .. }
        )
    }

    /// Whether the operation certainly failed and is not in progress.
    pub fn is_final(&self) -> bool {
        !self.is_uncertain()
    }

    /// Whether the driver said the volume (or other object) does not exist.
    pub fn is_not_found(&self) -> bool {
        self.code() == Some(Code::NotFound)
    }

    /// Whether the driver does not implement the call.
    pub fn is_unimplemented(&self) -> bool {
        self.code() == Some(Code::Unimplemented)
    }
}
