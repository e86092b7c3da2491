//! Container logs as `kubectl logs` reads them through the kubelet's `/containerLogs`
//! endpoint: the CRI log files the runtime writes, decoded and filtered as the reference
//! kubelet (`pkg/kubelet/kuberuntime/logs`) does.
//!
//! The runtime writes each container's output to `<pod log dir>/<container>/<restart>.log`,
//! one record a line: `<RFC3339Nano time> <stdout|stderr> <P|F> <content>`, `P` marking a
//! record whose line continues in the next record of the stream.
//!
//! - [`LogOptions::from_query`] decodes and validates the request's `PodLogOptions`.
//! - [`log_file_for`] picks the file of the current or the previous run.
//! - [`container_log_stream`] (or [`open_container_log`]) streams the output: partial records
//!   joined, `timestamps` prefixes, `tailLines`, `sinceSeconds`/`sinceTime`, `limitBytes`,
//!   `stream`, and `follow` until the container stops, across log rotation.
//!
//! As the reference, a request reads one file: the current `N.log` (or the previous run's),
//! not the rotated `N.log.<time>[.gz]` files beside it, which only a follower that was
//! reading when the rotation happened sees the end of.
//!
//! Memory: a request holds one read buffer (64 KiB), one output chunk (about 32 KiB) and the
//! longest line seen. `tailLines` locates the start of the tail by reading the file
//! backwards in 8 KiB blocks, so a tail of a large file reads only the tail, and never holds
//! more than one block.

pub(crate) mod cri;
mod options;
mod reader;
pub mod rotation;
mod tail;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;

pub use options::{LogOptions, LogOptionsError, LogStream, RecordStream};
pub use reader::{container_log_stream, open_container_log};
pub use rotation::{ContainerLogManager, RotationError};

/// Tells a follower whether the container is still running: following ends once it is not
/// and its log file is drained. The reference asks the runtime (CRI `ContainerStatus`) each
/// time the follower reaches the end of the file.
#[derive(Clone)]
pub struct ContainerRunning(Arc<dyn Fn() -> BoxFuture<'static, bool> + Send + Sync>);

impl ContainerRunning {
    /// From an async check, such as a runtime status call.
    pub fn new<F, Fut>(check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = bool> + Send + 'static,
    {
        ContainerRunning(Arc::new(move || check().boxed()))
    }

    /// A container that is not running (a previous run, or an exited one): a follower ends
    /// at the end of the file.
    pub fn exited() -> Self {
        Self::new(|| async { false })
    }

    /// Whether the container runs now.
    pub async fn check(&self) -> bool {
        (self.0)().await
    }
}

impl std::fmt::Debug for ContainerRunning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ContainerRunning(..)")
    }
}

/// Why no log file could be picked for a request.
#[derive(Debug, thiserror::Error)]
pub enum LogFileError {
    /// The container name cannot be a directory name (it comes from the request's path).
    #[error("invalid container name {0:?}")]
    InvalidContainerName(String),
    /// `previous` was asked of a container that has not restarted.
    #[error("previous terminated container {0:?} not found")]
    NoPreviousRun(String),
    /// The run's log file does not exist (never written, or removed with the container).
    #[error("log file {} not found", .0.display())]
    NotFound(PathBuf),
    /// The file's existence could not be checked.
    #[error("checking log file {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// The log directory of a pod under the node's pod log root (`/var/log/pods`):
/// `<namespace>_<name>_<uid>`, as the reference names it in the sandbox's `LogDirectory`.
pub fn pod_log_dir(root: &Path, namespace: &str, name: &str, uid: &str) -> PathBuf {
    root.join(format!("{namespace}_{name}_{uid}"))
}

/// The log file of a container's current run (`<container>/<restart_count>.log`) or, with
/// `previous`, of the run before it; an error if there is none or the file is missing.
pub fn log_file_for(
    pod_log_dir: &Path,
    container: &str,
    restart_count: u32,
    previous: bool,
) -> Result<PathBuf, LogFileError> {
    if container.is_empty()
        || container == "."
        || container == ".."
        || container.contains(['/', '\0'])
    {
        return Err(LogFileError::InvalidContainerName(container.to_string()));
    }
    let run = if previous {
        restart_count
            .checked_sub(1)
            .ok_or_else(|| LogFileError::NoPreviousRun(container.to_string()))?
    } else {
        restart_count
    };
    let path = pod_log_dir.join(container).join(format!("{run}.log"));
    match path.try_exists() {
        Ok(true) => Ok(path),
        Ok(false) => Err(LogFileError::NotFound(path)),
        Err(source) => Err(LogFileError::Io { path, source }),
    }
}
