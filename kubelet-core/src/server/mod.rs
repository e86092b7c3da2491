//! The kubelet's HTTPS API server (port 10250) and its read-only port, as the reference
//! serves them (`pkg/kubelet/server/server.go`), built from the library's own handles so that
//! an embedder's runtime serves through it:
//!
//! - [`tls`]: the serving certificate (given, or self-signed once under `<root-dir>/pki`),
//!   `tlsMinVersion`, `tlsCipherSuites`, and the client certificate request;
//! - [`authn`]: x509 client certificates against the client CA, bearer tokens through a
//!   TokenReview, anonymous requests; 401 `Unauthorized` otherwise;
//! - [`authz`]: the reference's request attributes, `AlwaysAllow` or `Webhook`
//!   (SubjectAccessReview); 403 `Forbidden (user=..., ...)` when denied;
//! - [`routes`]: `/healthz` (and its checks), `/pods`, `/runningpods/`,
//!   `/containerLogs/{namespace}/{pod}/{container}` (through [`crate::logs`]), `/logs/`.
//!
//! ```no_run
//! # async fn demo(handles: kubelet_core::server::Handles) -> Result<(), kubelet_core::server::ServerError> {
//! use std::sync::Arc;
//! use kubelet_core::server::{Auth, KubeletServer, ServerConfig, authn::Authenticator, authz::AlwaysAllow};
//!
//! let config = ServerConfig::new("node-1", "0.0.0.0:10250".parse().expect("addr"));
//! let auth = Auth {
//!     authenticator: Authenticator::new().anonymous(true),
//!     authorizer: Arc::new(AlwaysAllow),
//! };
//! let server = KubeletServer::bind(config, auth, handles).await?;
//! server.serve(std::future::pending()).await
//! # }
//! ```

pub mod authn;
pub mod authz;
mod cache;
mod container_logs;
mod metrics_routes;
mod node_logs;
pub mod routes;
mod stats_routes;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::TokioIo;
use rustls::pki_types::CertificateDer;
use tower::ServiceExt;

use crate::KubeletHandle;
use crate::runtime::Runtime;

#[cfg(feature = "apiserver")]
pub use authn::WebhookTokenAuthenticator;
pub use authn::{Authenticator, TokenAuthenticator, UserInfo};
#[cfg(feature = "apiserver")]
pub use authz::WebhookAuthorizer;
pub use authz::{AlwaysAllow, Authorizer};
pub use tls::TlsOptions;

/// How long a TLS handshake may take before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send a request's headers (and how long an idle
/// keep-alive connection stays open), as Go's `ReadHeaderTimeout` guards servers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long in-flight requests may finish after shutdown (log follows would never end).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Errors of the kubelet server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The listen address could not be bound.
    #[error("kubelet server: cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The TLS settings or files are unusable.
    #[error("kubelet server TLS: {0}")]
    Tls(String),
    /// A file of the server (certificate, key) could not be read or written.
    #[error("kubelet server: {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Serving failed.
    #[error("kubelet server on {addr}: {source}")]
    Serve {
        /// The address.
        addr: SocketAddr,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// Where and how the server listens, and the node facts the routes need.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// `address:port` (the reference's default `0.0.0.0:10250`).
    pub address: SocketAddr,
    /// The node's name: the `name` of the authorization attributes.
    pub node_name: String,
    /// TLS settings.
    pub tls: TlsOptions,
    /// The node's log directory served under `/logs/` (`/var/log`).
    pub node_log_dir: PathBuf,
    /// The root of the pod log directories (`/var/log/pods`), for `/containerLogs`.
    pub pod_logs_root: PathBuf,
    /// Where `/stats/summary` and `/metrics/resource` read (503 without one).
    pub stats: Option<Arc<dyn crate::stats::StatsProvider>>,
}

impl ServerConfig {
    /// The reference's defaults for `node_name` on `address`; the self-signed certificate
    /// under `/var/lib/kubelet/pki`.
    pub fn new(node_name: impl Into<String>, address: SocketAddr) -> Self {
        let node_name = node_name.into();
        Self {
            address,
            tls: TlsOptions {
                cert_dir: PathBuf::from("/var/lib/kubelet/pki"),
                hostname: node_name.clone(),
                ..Default::default()
            },
            node_name,
            node_log_dir: PathBuf::from("/var/log"),
            pod_logs_root: PathBuf::from("/var/log/pods"),
            stats: None,
        }
    }
}

/// Authentication and authorization of the secure port.
#[derive(Clone)]
pub struct Auth {
    /// Who is asking.
    pub authenticator: Authenticator,
    /// Whether they may.
    pub authorizer: Arc<dyn Authorizer>,
}

/// What the routes read: the kubelet's view of its pods and health, and the runtime.
#[derive(Clone)]
pub struct Handles {
    /// The reconciler (`/pods`, `/healthz`).
    pub kubelet: KubeletHandle,
    /// The container runtime (`/runningpods/`, logs).
    pub runtime: Arc<dyn Runtime>,
}

/// The TLS connection's facts, put in each request's extensions.
#[derive(Debug, Clone, Default)]
pub struct ConnectionInfo {
    /// The client's certificate chain, leaf first, when it sent one.
    pub peer_certificates: Option<Arc<Vec<CertificateDer<'static>>>>,
    /// The client's address.
    pub remote: Option<SocketAddr>,
}

/// The secure server, bound and ready to serve. Binding first lets the daemon fail at
/// start, with the address in the message, when the port is taken or the TLS files are bad.
pub struct KubeletServer {
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
    acceptor: tokio_rustls::TlsAcceptor,
    router: Router,
}

impl KubeletServer {
    /// Loads (or makes) the serving certificate and binds `config.address`.
    pub async fn bind(
        config: ServerConfig,
        auth: Auth,
        handles: Handles,
    ) -> Result<Self, ServerError> {
        let tls = tls::server_config(&config.tls, None)?;
        Self::bind_with_tls(config, tls, auth, handles).await
    }

    /// Like [`KubeletServer::bind`] with a ready rustls configuration (it must request
    /// client certificates for the x509 authenticator to see them; see
    /// [`tls::server_config`], which also takes the client CA for its hints).
    pub async fn bind_with_tls(
        config: ServerConfig,
        tls: Arc<rustls::ServerConfig>,
        auth: Auth,
        handles: Handles,
    ) -> Result<Self, ServerError> {
        let (listener, addr) = bind(config.address).await?;
        let router = routes::secure_router(routes::RouteState::new(&config, handles), auth);
        Ok(Self {
            listener,
            addr,
            acceptor: tokio_rustls::TlsAcceptor::from(tls),
            router,
        })
    }

    /// The address actually bound (port 0 picks a free port).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `shutdown` completes; in-flight requests then get a few seconds.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let Self {
            listener,
            addr,
            acceptor,
            router,
        } = self;
        tracing::info!(%addr, "kubelet server listening (HTTPS)");
        accept_loop(listener, addr, router, Some(acceptor), shutdown).await;
        Ok(())
    }
}

/// Accepts connections until `shutdown`, each served on its own task (after the TLS
/// handshake when there is an acceptor), then drains them.
async fn accept_loop(
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
    router: Router,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let (stop, stopping) = tokio::sync::watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (tcp, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little, keep serving.
                    tracing::warn!(%addr, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // As Go's servers: no Nagle. Without it, the small `101 Switching Protocols` of a
        // stream waits behind the unacknowledged TLS session ticket for the client's
        // delayed ACK (tens of milliseconds), and interactive streams stutter.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(%remote, error = %e, "TCP_NODELAY not set");
        }
        let acceptor = acceptor.clone();
        let router = router.clone();
        let stopping = stopping.clone();
        tokio::spawn(async move {
            let Some(acceptor) = acceptor else {
                let info = ConnectionInfo {
                    peer_certificates: None,
                    remote: Some(remote),
                };
                serve_connection(TokioIo::new(tcp), router, info, stopping).await;
                return;
            };
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    tracing::debug!(%remote, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%remote, "TLS handshake timed out");
                    return;
                }
            };
            let info =
                ConnectionInfo {
                    peer_certificates: stream.get_ref().1.peer_certificates().map(|chain| {
                        Arc::new(chain.iter().map(|c| c.clone().into_owned()).collect())
                    }),
                    remote: Some(remote),
                };
            serve_connection(TokioIo::new(stream), router, info, stopping).await;
        });
    }
    drain(listener, stop, stopping).await;
}

/// The read-only port (`readOnlyPort`): plain HTTP, no authentication, the read-only
/// endpoints only (`/healthz`, `/pods`), as the reference's default handlers.
pub struct ReadOnlyServer {
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
    router: Router,
}

impl ReadOnlyServer {
    /// Binds `addr`.
    pub async fn bind(addr: SocketAddr, handles: Handles) -> Result<Self, ServerError> {
        let (listener, addr) = bind(addr).await?;
        Ok(Self {
            listener,
            addr,
            router: routes::read_only_router(handles),
        })
    }

    /// Serve `/stats/summary` and `/metrics/resource` from `stats` too, as the reference's
    /// read-only port does.
    pub fn with_stats(mut self, stats: Arc<dyn crate::stats::StatsProvider>) -> Self {
        self.router = self
            .router
            .merge(stats_routes::routes().with_state(stats_routes::StatsState(Some(stats))));
        self
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `shutdown` completes.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let addr = self.addr;
        tracing::info!(%addr, "kubelet read-only server listening (HTTP, no authentication)");
        accept_loop(self.listener, addr, self.router, None, shutdown).await;
        Ok(())
    }
}

async fn bind(addr: SocketAddr) -> Result<(tokio::net::TcpListener, SocketAddr), ServerError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| ServerError::Bind { addr, source })?;
    Ok((listener, bound))
}

/// One HTTP/1.1 connection: each request gets the connection's facts; at shutdown the
/// connection finishes its current request and closes.
async fn serve_connection<I>(
    io: I,
    router: Router,
    info: ConnectionInfo,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut request: http::Request<_>| {
        request.extensions_mut().insert(info.clone());
        router.clone().oneshot(request.map(axum::body::Body::new))
    });
    // A client that opens a connection and never finishes its request headers would hold
    // the connection (and its task) forever; hyper closes it after the timeout once it has
    // a timer.
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(io, service)
        .with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        // The flag only ever goes to true (or its sender goes away): either means stop.
        _ = stopping.changed() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// Stops accepting, tells the connections to finish, and waits for them (a bounded time).
async fn drain(
    listener: tokio::net::TcpListener,
    stop: tokio::sync::watch::Sender<bool>,
    stopping: tokio::sync::watch::Receiver<bool>,
) {
    drop(listener);
    drop(stopping);
    stop.send_replace(true);
    // Every connection task holds a receiver: closed() resolves when the last one ends.
    if tokio::time::timeout(SHUTDOWN_GRACE, stop.closed())
        .await
        .is_err()
    {
        tracing::info!("kubelet server stopped with requests still in flight");
    }
}
