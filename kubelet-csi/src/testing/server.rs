//! Serving tonic services on a unix socket, for the test driver and registrar.

use std::path::{Path, PathBuf};

use tokio::net::UnixListener;
use tokio::sync::oneshot;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::server::Router;

use crate::error::CsiError;

/// A gRPC server on a unix socket. Dropping it stops the server and removes the socket.
pub struct ServerHandle {
    socket: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    on_stop: Option<Box<dyn FnOnce() + Send + Sync>>,
}

impl std::fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandle")
            .field("socket", &self.socket)
            .finish_non_exhaustive()
    }
}

impl ServerHandle {
    /// The socket path the server listens on.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Stop serving, wait for the server to end, and remove the socket.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        // Drop does the rest.
    }

    pub(crate) fn on_stop(mut self, f: impl FnOnce() + Send + Sync + 'static) -> Self {
        self.on_stop = Some(Box::new(f));
        self
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        let _ = std::fs::remove_file(&self.socket);
        if let Some(f) = self.on_stop.take() {
            f();
        }
    }
}

/// Bind `socket` (replacing a stale socket file, creating the parent directory) and serve
/// `router` on it in a task.
pub(crate) async fn serve(router: Router, socket: &Path) -> Result<ServerHandle, CsiError> {
    let io = |source| CsiError::Io {
        path: socket.display().to_string(),
        source,
    };
    if let Some(parent) = socket.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    match std::fs::remove_file(socket) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
        _ => {}
    }
    let listener = UnixListener::bind(socket).map_err(io)?;
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let path = socket.display().to_string();
    let task = tokio::spawn(async move {
        let incoming = UnixListenerStream::new(listener);
        let shutdown = async {
            let _ = stop_rx.await;
        };
        if let Err(e) = router
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await
        {
            tracing::warn!(socket = %path, error = %e, "test gRPC server failed");
        }
    });
    Ok(ServerHandle {
        socket: socket.to_path_buf(),
        stop: Some(stop_tx),
        task: Some(task),
        on_stop: None,
    })
}
