//! Unix socket endpoints and the gRPC channel over them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};
use tower::service_fn;

use crate::error::CsiError;

/// The socket path of an endpoint: `unix:///path`, `unix:/path` or a bare absolute path (as
/// node-driver-registrar reports it).
pub fn socket_path(endpoint: &str) -> Result<PathBuf, CsiError> {
    let invalid = |reason: &str| CsiError::InvalidEndpoint {
        endpoint: endpoint.to_string(),
        reason: reason.to_string(),
    };
    let path = if let Some(rest) = endpoint.strip_prefix("unix://") {
        rest
    } else if let Some(rest) = endpoint.strip_prefix("unix:") {
        rest
    } else if endpoint.contains("://") {
        return Err(invalid("only unix sockets are supported"));
    } else {
        endpoint
    };
    if path.is_empty() {
        return Err(invalid("empty socket path"));
    }
    if !path.starts_with('/') {
        return Err(invalid("socket path must be absolute"));
    }
    Ok(PathBuf::from(path))
}

fn endpoint_for(connect_timeout: Duration) -> Endpoint {
    // tonic wants a URI; the connector ignores it and always dials the socket.
    Endpoint::from_static("http://csi.local").connect_timeout(connect_timeout)
}

/// Dial the socket at `path` now, within `timeout`.
pub(crate) async fn connect(
    endpoint: &str,
    path: &Path,
    timeout: Duration,
) -> Result<Channel, CsiError> {
    let path = path.to_path_buf();
    let connector = service_fn(move |_: Uri| {
        let path = path.clone();
        async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
    });
    let channel_endpoint = endpoint_for(timeout);
    let fut = channel_endpoint.connect_with_connector(connector);
    match tokio::time::timeout(timeout, fut).await {
        Err(_) => Err(CsiError::ConnectTimeout {
            endpoint: endpoint.to_string(),
            timeout,
        }),
        Ok(Err(source)) => Err(CsiError::Connect {
            endpoint: endpoint.to_string(),
            source,
        }),
        Ok(Ok(channel)) => Ok(channel),
    }
}

/// A channel that dials the socket at `path` on first use (and again after the peer went
/// away).
pub(crate) fn connect_lazy(path: &Path, connect_timeout: Duration) -> Channel {
    let path = path.to_path_buf();
    let connector = service_fn(move |_: Uri| {
        let path = path.clone();
        async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
    });
    endpoint_for(connect_timeout).connect_with_connector_lazy(connector)
}

/// Run one unary call under `timeout` (also sent to the server as the gRPC deadline) and
/// classify its failure.
pub(crate) async fn call<T, F>(
    op: &'static str,
    endpoint: &str,
    timeout: Duration,
    fut: F,
) -> Result<T, CsiError>
where
    F: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    tracing::trace!(op, endpoint, "gRPC call");
    let started = tokio::time::Instant::now();
    let result = tokio::time::timeout(timeout, fut).await;
    // A server that enforces the deadline we sent (tonic answers Cancelled "Timeout expired",
    // grpc-go DeadlineExceeded) may answer just before our own timer fires: same thing.
    let server_timed_out = matches!(&result, Ok(Err(status))
        if matches!(status.code(), tonic::Code::Cancelled | tonic::Code::DeadlineExceeded)
            && started.elapsed() >= timeout);
    match result {
        _ if server_timed_out => {
            let err = CsiError::Timeout {
                op,
                endpoint: endpoint.to_string(),
                timeout,
            };
            tracing::debug!(%err, "gRPC call timed out on the server");
            Err(err)
        }
        Err(_) => {
            let err = CsiError::Timeout {
                op,
                endpoint: endpoint.to_string(),
                timeout,
            };
            tracing::debug!(%err, "gRPC call timed out");
            Err(err)
        }
        Ok(Err(status)) => {
            let err = CsiError::from_status(op, endpoint, &status);
            tracing::debug!(%err, "gRPC call failed");
            Err(err)
        }
        Ok(Ok(resp)) => Ok(resp.into_inner()),
    }
}

/// A request carrying `timeout` as its gRPC deadline, so that the server can give up too.
pub(crate) fn request<T>(message: T, timeout: Duration) -> tonic::Request<T> {
    let mut req = tonic::Request::new(message);
    req.set_timeout(timeout);
    req
}
