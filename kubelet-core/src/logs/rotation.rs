//! Container log rotation, as the reference kubelet's container log manager
//! (`pkg/kubelet/logs`) does it.
//!
//! Every [`MONITOR_PERIOD`] the manager lists the runtime's containers and, for each running
//! one whose log file (`ContainerStatus::log_path`) has reached `max_size` bytes:
//!
//! 1. removes leftovers of an earlier, interrupted rotation among the rotated files
//!    `<log>.*`: temporary files (`*.tmp`) of a compression, and plain files whose `.gz` exists;
//! 2. removes the oldest rotated files so that, with the current file and the one about to be
//!    rotated, at most `max_files` remain;
//! 3. compresses the rotated files that are still plain (`<name>.gz`, written to
//!    `<name>.tmp` first, the plain file removed after);
//! 4. renames the log to `<log>.<YYYYMMDD-hhmmss>` (local time, as the reference), left
//!    uncompressed so that a follower or a log shipper can finish reading it, and asks the
//!    runtime to reopen the container's log (CRI `ReopenContainerLog`); if that fails the file
//!    is renamed back, to be tried again next period.
//!
//! A log file that is missing is reopened first, as the reference does (a rotation whose
//! reopen and rename-back both failed leaves none). Containers that are not running are
//! skipped: they write nothing more. The rotated files of a container go with its pod's log
//! directory, or with [`ContainerLogManager::clean`].

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument;

use crate::error::RuntimeError;
use crate::labels;
use crate::runtime::{ContainerState, ListFilter, Runtime};

/// How often the logs are checked (the reference's monitor period).
pub const MONITOR_PERIOD: Duration = Duration::from_secs(10);
/// Default `containerLogMaxSize`: 10Mi.
pub const DEFAULT_MAX_SIZE: i64 = 10 * 1024 * 1024;
/// Default `containerLogMaxFiles`.
pub const DEFAULT_MAX_FILES: u32 = 5;

/// Suffix of the rotated file's timestamp, as Go's layout `20060102-150405`.
const TIMESTAMP_FORMAT: &str = "%Y%m%d-%H%M%S";
/// Suffix of a compressed rotated file.
const COMPRESS_SUFFIX: &str = ".gz";
/// Suffix of a compression in progress.
const TMP_SUFFIX: &str = ".tmp";

/// Why the manager could not be made, or a container's log not rotated.
#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    /// `containerLogMaxFiles` below 2: the current file and the one just rotated are the
    /// minimum.
    #[error("invalid containerLogMaxFiles {0}: must be at least 2")]
    InvalidMaxFiles(u32),
    /// A runtime call failed (status, list, or reopen).
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// A file operation failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
}

impl RotationError {
    fn io(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> Self {
        move |source| RotationError::Io {
            what,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The clock naming rotated files.
type Clock = Arc<dyn Fn() -> jiff::Zoned + Send + Sync>;

/// Rotates the logs of the runtime's running containers (see the module docs).
pub struct ContainerLogManager {
    runtime: Arc<dyn Runtime>,
    max_size: i64,
    max_files: u32,
    period: Duration,
    clock: Clock,
    // One rotation at a time, and no clean in the middle of one, as the reference's mutex.
    lock: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for ContainerLogManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContainerLogManager")
            .field("max_size", &self.max_size)
            .field("max_files", &self.max_files)
            .field("period", &self.period)
            .finish_non_exhaustive()
    }
}

impl ContainerLogManager {
    /// A manager rotating logs at `max_size` bytes (negative: never, as the reference's
    /// negative `containerLogMaxSize`) keeping at most `max_files` files a container
    /// (at least 2).
    pub fn new(
        runtime: Arc<dyn Runtime>,
        max_size: i64,
        max_files: u32,
    ) -> Result<Self, RotationError> {
        if max_files < 2 {
            return Err(RotationError::InvalidMaxFiles(max_files));
        }
        Ok(Self {
            runtime,
            max_size,
            max_files,
            period: MONITOR_PERIOD,
            clock: Arc::new(jiff::Zoned::now),
            lock: tokio::sync::Mutex::new(()),
        })
    }

    /// Check every `period` instead of [`MONITOR_PERIOD`].
    pub fn with_period(mut self, period: Duration) -> Self {
        self.period = period;
        self
    }

    /// Name rotated files after this clock's time instead of the local time now.
    pub fn with_clock(mut self, clock: impl Fn() -> jiff::Zoned + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Whether rotation is on (a non-negative max size).
    pub fn enabled(&self) -> bool {
        self.max_size >= 0
    }

    /// Rotate every period until `shutdown` resolves. Returns at once when rotation is off.
    pub async fn run(self: Arc<Self>, shutdown: impl Future<Output = ()>) {
        if !self.enabled() {
            tracing::info!("container log rotation disabled (negative max size)");
            return;
        }
        tracing::info!(
            max_size = self.max_size,
            max_files = self.max_files,
            period = ?self.period,
            "container log rotation starting"
        );
        let mut ticks = tokio::time::interval(self.period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                _ = ticks.tick() => {}
            }
            if let Err(e) = self.rotate_once().await {
                tracing::error!(error = %e, "failed to rotate container logs");
            }
        }
        tracing::info!("container log rotation stopped");
    }

    /// One pass over the running containers. Fails only if the containers cannot be listed;
    /// a container whose log cannot be rotated is logged and skipped, as the reference's
    /// workers do.
    pub async fn rotate_once(&self) -> Result<(), RuntimeError> {
        if !self.enabled() {
            return Ok(());
        }
        let _guard = self.lock.lock().await;
        let containers = self.runtime.list_containers(&ListFilter::all()).await?;
        for c in containers {
            // A container that is not running writes nothing more: an empty current log
            // after rotation would be of no use.
            if c.state != ContainerState::Running {
                continue;
            }
            let label = |key: &str| c.labels.get(key).map(String::as_str).unwrap_or("");
            let span = tracing::info_span!(
                "rotate_container_log",
                pod = %format!("{}/{}", label(labels::POD_NAMESPACE), label(labels::POD_NAME)),
                container = %c.metadata.name,
                container_id = %c.id,
            );
            if let Err(e) = self.rotate_locked(&c.id).instrument(span.clone()).await {
                span.in_scope(|| tracing::error!(error = %e, "failed to rotate container log"));
            }
        }
        Ok(())
    }

    /// Rotate one container's log if it has reached the max size; whether it was rotated.
    pub async fn rotate_container(&self, container_id: &str) -> Result<bool, RotationError> {
        if !self.enabled() {
            return Ok(false);
        }
        let _guard = self.lock.lock().await;
        self.rotate_locked(container_id).await
    }

    async fn rotate_locked(&self, container_id: &str) -> Result<bool, RotationError> {
        let status = self.runtime.container_status(container_id).await?;
        if status.log_path.is_empty() {
            return Ok(false);
        }
        let log = PathBuf::from(&status.log_path);
        let size = match tokio::fs::metadata(&log).await {
            Ok(m) => m.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Lost in an earlier rotation whose reopen and rename back both failed: the
                // runtime writes to an unlinked file until it reopens.
                self.runtime.reopen_container_log(container_id).await?;
                tokio::fs::metadata(&log)
                    .await
                    .map_err(RotationError::io("stat container log after reopen", &log))?
                    .len()
            }
            Err(e) => return Err(RotationError::io("stat container log", &log)(e)),
        };
        if i128::from(size) < i128::from(self.max_size) {
            tracing::trace!(size, max_size = self.max_size, "log below the max size");
            return Ok(false);
        }
        let keep = usize::try_from(self.max_files.saturating_sub(2)).unwrap_or(usize::MAX);
        let dir_log = log.clone();
        tokio::task::spawn_blocking(move || prepare_rotated(&dir_log, keep))
            .await
            .map_err(|e| RotationError::Io {
                what: "tidy rotated logs of",
                path: log.clone(),
                source: io::Error::other(e.to_string()),
            })??;
        let timestamp = (self.clock)().strftime(TIMESTAMP_FORMAT).to_string();
        let rotated = with_suffix(&log, &format!(".{timestamp}"));
        tokio::fs::rename(&log, &rotated)
            .await
            .map_err(RotationError::io("rename container log", &log))?;
        if let Err(e) = self.runtime.reopen_container_log(container_id).await {
            // Back under its name, so that the next period tries again. Should that fail too
            // the output written so far is only in the rotated file.
            if let Err(back) = tokio::fs::rename(&rotated, &log).await {
                tracing::error!(
                    error = %back,
                    rotated = %rotated.display(),
                    "failed to rename the rotated log back"
                );
            }
            return Err(e.into());
        }
        tracing::debug!(size, rotated = %rotated.display(), "container log rotated");
        Ok(true)
    }

    /// Remove all log files of a container, current and rotated (`<log_path>*`), as the
    /// reference does when it removes the container.
    pub async fn clean(&self, container_id: &str) -> Result<(), RotationError> {
        let _guard = self.lock.lock().await;
        let status = self.runtime.container_status(container_id).await?;
        if status.log_path.is_empty() {
            return Ok(());
        }
        let log = PathBuf::from(&status.log_path);
        tokio::task::spawn_blocking(move || remove_log_files(&log))
            .await
            .map_err(|e| RotationError::Io {
                what: "clean logs of container",
                path: PathBuf::from(container_id),
                source: io::Error::other(e.to_string()),
            })?
    }
}

/// Remove a container's log file and its rotations (`<log>*`).
pub(crate) fn remove_log_files(log: &Path) -> Result<(), RotationError> {
    for file in matching(log, "")? {
        match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(RotationError::io("remove container log", &file)(e)),
        }
    }
    Ok(())
}

/// `path` with `suffix` appended to its file name.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

/// The files beside `log` whose name is the log's name followed by `sep` and anything
/// (the reference's glob `<log><sep>*`), sorted by name: oldest rotation first, since the
/// timestamps sort as their names.
fn matching(log: &Path, sep: &str) -> Result<Vec<PathBuf>, RotationError> {
    let (Some(dir), Some(name)) = (log.parent(), log.file_name()) else {
        return Ok(Vec::new());
    };
    let prefix = format!("{}{sep}", name.to_string_lossy());
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(RotationError::io("list log directory", dir)(e)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(RotationError::io("list log directory", dir))?;
        let file_name = entry.file_name();
        if file_name.to_string_lossy().starts_with(&prefix) {
            found.push(dir.join(file_name));
        }
    }
    found.sort();
    Ok(found)
}

/// Steps 1 to 3 of a rotation (see the module docs) on the rotated files of `log`, keeping
/// at most `keep` of them.
fn prepare_rotated(log: &Path, keep: usize) -> Result<(), RotationError> {
    let rotated = matching(log, ".")?;
    let names: Vec<String> = rotated
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let mut in_use = Vec::new();
    for (path, name) in rotated.iter().zip(&names) {
        let unused = name.ends_with(TMP_SUFFIX)
            || (!name.ends_with(COMPRESS_SUFFIX)
                && names.contains(&format!("{name}{COMPRESS_SUFFIX}")));
        if unused {
            std::fs::remove_file(path).map_err(RotationError::io("remove unused log", path))?;
        } else {
            in_use.push(path.clone());
        }
    }
    // Removed oldest first, so that a reader of a newer file is not cut off.
    let excess = in_use.len().saturating_sub(keep);
    for path in in_use.drain(..excess) {
        std::fs::remove_file(&path).map_err(RotationError::io("remove old log", &path))?;
    }
    for path in &in_use {
        if !path.to_string_lossy().ends_with(COMPRESS_SUFFIX) {
            compress(path)?;
        }
    }
    Ok(())
}

/// Gzip `log` into `<log>.gz` by way of `<log>.tmp`, then remove `log`.
fn compress(log: &Path) -> Result<(), RotationError> {
    let tmp = with_suffix(log, TMP_SUFFIX);
    let result = compress_to(log, &tmp);
    if result.is_err() {
        // Best effort: the next rotation removes it otherwise.
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn compress_to(log: &Path, tmp: &Path) -> Result<(), RotationError> {
    use std::io::Write;
    let mut input = std::fs::File::open(log).map_err(RotationError::io("open log", log))?;
    let output = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(tmp)
        .map_err(RotationError::io("create temporary log", tmp))?;
    let mut encoder = flate2::write::GzEncoder::new(output, flate2::Compression::default());
    io::copy(&mut input, &mut encoder).map_err(RotationError::io("compress log into", tmp))?;
    let mut output = encoder
        .finish()
        .map_err(RotationError::io("compress log into", tmp))?;
    output
        .flush()
        .map_err(RotationError::io("write temporary log", tmp))?;
    drop(output);
    let compressed = with_suffix(log, COMPRESS_SUFFIX);
    std::fs::rename(tmp, &compressed).map_err(RotationError::io("rename compressed log", tmp))?;
    std::fs::remove_file(log).map_err(RotationError::io("remove log after compression", log))
}

#[cfg(test)]
mod tests;
