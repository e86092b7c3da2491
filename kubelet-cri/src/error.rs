//! Errors of connecting to a CRI runtime, and the mapping of gRPC statuses to
//! [`RuntimeError`] kinds.

use std::time::Duration;

use kubelet_core::RuntimeError;
use thiserror::Error;
use tonic::Code;

/// An error while connecting to a CRI runtime.
#[derive(Debug, Error)]
pub enum CriError {
    /// The endpoint is not a unix socket address this client understands.
    #[error("CRI endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The socket could not be connected.
    #[error("CRI endpoint {endpoint}: connect: {source}")]
    Connect {
        /// The endpoint as given.
        endpoint: String,
        /// The transport error.
        #[source]
        source: tonic::transport::Error,
    },
    /// Connecting took longer than the request timeout.
    #[error("CRI endpoint {endpoint}: no connection within {timeout:?}")]
    ConnectTimeout {
        /// The endpoint as given.
        endpoint: String,
        /// The timeout that passed.
        timeout: Duration,
    },
    /// The runtime answered, but not as a CRI v1 runtime (e.g. the Version call failed).
    #[error("CRI endpoint {endpoint}: {source}")]
    Runtime {
        /// The endpoint as given.
        endpoint: String,
        /// What the runtime answered.
        #[source]
        source: RuntimeError,
    },
}

/// Turn a gRPC status of the CRI call `op` on `object` (e.g. `container abc`) into the
/// runtime error kind callers decide on.
pub fn status_to_error(op: &str, object: &str, status: &tonic::Status) -> RuntimeError {
    let message = describe(op, object, status);
    match status.code() {
        Code::NotFound => RuntimeError::NotFound(message),
        Code::Unavailable => RuntimeError::Unavailable(message),
        Code::DeadlineExceeded => RuntimeError::DeadlineExceeded(message),
        Code::InvalidArgument => RuntimeError::InvalidArgument(message),
        Code::AlreadyExists => RuntimeError::AlreadyExists(message),
        Code::Unimplemented => RuntimeError::Unsupported(message),
        // containerd answers several lookups of unknown IDs with Unknown and a message such
        // as "an error occurred when try to find container \"x\": not found".
        Code::Unknown if is_not_found_message(status.message()) => RuntimeError::NotFound(message),
        _ => RuntimeError::Other(message),
    }
}

/// Like [`status_to_error`] for PullImage: any failure is an image pull failure, except an
/// unreachable runtime, which stays [`RuntimeError::Unavailable`] so that callers can tell
/// "the registry refused" from "the runtime is down".
pub fn pull_status_to_error(image: &str, status: &tonic::Status) -> RuntimeError {
    let message = describe("PullImage", &format!("image {image}"), status);
    match status.code() {
        Code::Unavailable => RuntimeError::Unavailable(message),
        _ => RuntimeError::ImagePull(message),
    }
}

/// The call and its object, then the status as gRPC-Go prints it, which is what the
/// reference's events and statuses show of a runtime error.
fn describe(op: &str, object: &str, status: &tonic::Status) -> String {
    format!(
        "{op} {object}: {}",
        kubelet_core::error::grpc_status_text(status.code(), status.message())
    )
}

fn is_not_found_message(message: &str) -> bool {
    message.to_ascii_lowercase().contains("not found")
}

/// The error for a call that outlived its client-side deadline.
pub(crate) fn timeout_error(op: &str, object: &str, timeout: Duration) -> RuntimeError {
    RuntimeError::DeadlineExceeded(format!("{op} {object}: no answer within {timeout:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Status;

    #[test]
    fn codes_map_to_kinds() {
        let cases = [
            (Status::not_found("x"), "NotFound"),
            (Status::unavailable("x"), "Unavailable"),
            (Status::deadline_exceeded("x"), "DeadlineExceeded"),
            (Status::invalid_argument("x"), "InvalidArgument"),
            (Status::already_exists("x"), "AlreadyExists"),
            (Status::internal("x"), "Other"),
            (Status::unknown("something broke"), "Other"),
            (Status::permission_denied("x"), "Other"),
            (Status::unimplemented("x"), "Unsupported"),
        ];
        for (status, want) in cases {
            let got = status_to_error("Op", "container c1", &status);
            let kind = match &got {
                RuntimeError::NotFound(_) => "NotFound",
                RuntimeError::Unavailable(_) => "Unavailable",
                RuntimeError::DeadlineExceeded(_) => "DeadlineExceeded",
                RuntimeError::InvalidArgument(_) => "InvalidArgument",
                RuntimeError::AlreadyExists(_) => "AlreadyExists",
                RuntimeError::ImagePull(_) => "ImagePull",
                RuntimeError::Unsupported(_) => "Unsupported",
                RuntimeError::Other(_) => "Other",
            };
            assert_eq!(kind, want, "{status:?} mapped to {got:?}");
        }
    }

    #[test]
    fn containerd_unknown_not_found_is_not_found() {
        let status =
            Status::unknown("an error occurred when try to find container \"abc\": not found");
        let err = status_to_error("ContainerStatus", "container abc", &status);
        assert!(err.is_not_found(), "{err:?}");
    }

    #[test]
    fn message_names_call_and_object() {
        let err = status_to_error("StopContainer", "container abc", &Status::internal("boom"));
        assert_eq!(
            err,
            RuntimeError::Other(
                "StopContainer container abc: rpc error: code = Internal desc = boom".into()
            )
        );
    }

    #[test]
    fn pull_failures_are_image_pull_unless_runtime_down() {
        let err = pull_status_to_error(
            "registry.invalid/x:1",
            &Status::unknown("failed to resolve reference: no such host"),
        );
        assert!(
            matches!(err, RuntimeError::ImagePull(ref m) if m.contains("registry.invalid/x:1"))
        );
        let err = pull_status_to_error("x", &Status::not_found("x"));
        assert!(matches!(err, RuntimeError::ImagePull(_)));
        let err = pull_status_to_error("x", &Status::unavailable("socket closed"));
        assert!(matches!(err, RuntimeError::Unavailable(_)));
    }

    #[test]
    fn timeout_is_deadline_exceeded_and_retryable() {
        let err = timeout_error("Version", "runtime", Duration::from_secs(2));
        assert!(err.is_retryable());
        assert!(matches!(err, RuntimeError::DeadlineExceeded(_)));
    }
}
