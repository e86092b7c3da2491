//! [`PluginWatcher`]: registers CSI drivers whose registrar sockets appear in
//! `<root-dir>/plugins_registry/`, and forgets them when the sockets go.
//!
//! Like the reference kubelet's plugin manager, it treats every unix socket in the directory
//! and its subdirectories (names starting with `.` excepted) as a registrar, asks it
//! `GetInfo`, checks the type (`CSIPlugin`) and version (1.x), calls the driver's
//! `NodeGetInfo` on the endpoint it names, records the driver in the [`DriverRegistry`] and
//! answers `NotifyRegistrationStatus(true)`; any refusal is answered with
//! `NotifyRegistrationStatus(false, reason)` and retried with backoff while the socket stays.
//! A socket replaced by a new one (another inode or change time) is registered afresh.
//! inotify wakes the watcher; a periodic rescan covers missed events and drives the retries.
//! A registration still in flight when its socket goes is discarded (the plugin may already
//! have been told it was registered; it is not in the registry).

use std::collections::HashMap;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::Instrument;

use crate::client::{CsiClient, CsiClientOptions};
use crate::error::CsiError;
use crate::registration::{self, CSI_PLUGIN_TYPE, RegistrationClient};
use crate::registry::{DriverRegistry, RegisteredDriver};

/// The plugin registry directory under the kubelet's root directory.
pub const PLUGINS_REGISTRY_DIR: &str = "plugins_registry";

/// Settings of a [`PluginWatcher`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginWatcherOptions {
    /// The directory to watch (`<root-dir>/plugins_registry`); created (0750) if missing.
    pub dir: PathBuf,
    /// How often the directory is rescanned besides inotify events.
    pub resync_interval: Duration,
    /// Bound of each registration call (GetInfo, NotifyRegistrationStatus, NodeGetInfo) and
    /// of dialling. The reference uses 1 s for the registrar calls and 2 min for NodeGetInfo;
    /// one bound keeps this simple.
    pub call_timeout: Duration,
    /// First delay before retrying a failed registration; doubles up to `max_retry_delay`.
    pub initial_retry_delay: Duration,
    /// Longest delay between retries.
    pub max_retry_delay: Duration,
}

impl PluginWatcherOptions {
    /// Defaults for `<root_dir>/plugins_registry`.
    pub fn for_root_dir(root_dir: &Path) -> Self {
        Self::new(root_dir.join(PLUGINS_REGISTRY_DIR))
    }

    /// Defaults for the directory `dir`.
    pub fn new(dir: PathBuf) -> Self {
        PluginWatcherOptions {
            dir,
            resync_interval: Duration::from_secs(1),
            call_timeout: Duration::from_secs(10),
            initial_retry_delay: Duration::from_millis(500),
            max_retry_delay: Duration::from_secs(120),
        }
    }
}

/// Watches the plugin registry directory and keeps a [`DriverRegistry`] current.
#[derive(Debug)]
pub struct PluginWatcher {
    options: PluginWatcherOptions,
    registry: DriverRegistry,
}

/// A running [`PluginWatcher`]; dropping it stops the watcher (registered drivers stay in
/// the registry).
#[derive(Debug)]
pub struct PluginWatcherHandle {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl PluginWatcherHandle {
    /// Stop the watcher and wait until it has.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for PluginWatcherHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Where one socket of the directory stands.
#[derive(Debug)]
struct SocketState {
    /// Identity of the socket file, to notice a replaced socket.
    id: SocketId,
    /// Bumped on every attempt, so that a stale attempt's result is ignored.
    generation: u64,
    status: Status,
    /// The delay after the last failure, doubled on the next one.
    last_delay: Option<Duration>,
}

#[derive(Debug)]
enum Status {
    InProgress,
    Registered(String),
    Failed { retry_at: Instant },
}

/// (device, inode, ctime s, ctime ns) of a socket file: a socket recreated at the same path
/// may get the same inode number back, but not the same change time.
type SocketId = (u64, u64, i64, i64);

type AttemptResult = (PathBuf, u64, Result<RegisteredDriver, CsiError>);

impl PluginWatcher {
    /// A watcher of `options.dir` writing into `registry`.
    pub fn new(options: PluginWatcherOptions, registry: DriverRegistry) -> Self {
        PluginWatcher { options, registry }
    }

    /// Create the directory, start watching it and run in a task.
    pub fn spawn(self) -> Result<PluginWatcherHandle, CsiError> {
        let dir = &self.options.dir;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(dir)
            .map_err(|source| CsiError::Io {
                path: dir.display().to_string(),
                source,
            })?;
        let (wake_tx, wake_rx) = mpsc::unbounded_channel();
        let watch_error = |source| CsiError::Watch {
            path: dir.display().to_string(),
            source,
        };
        let mut watcher =
            notify::recommended_watcher(move |_event: notify::Result<notify::Event>| {
                // Every event (or watch error) just triggers a rescan.
                let _ = wake_tx.send(());
            })
            .map_err(watch_error)?;
        watcher
            .watch(dir, RecursiveMode::Recursive)
            .map_err(watch_error)?;
        let (stop_tx, stop_rx) = oneshot::channel();
        let span = tracing::info_span!("plugin_watcher", dir = %dir.display());
        let task = tokio::spawn(self.run(watcher, wake_rx, stop_rx).instrument(span));
        Ok(PluginWatcherHandle {
            stop: Some(stop_tx),
            task,
        })
    }

    async fn run(
        self,
        _watcher: notify::RecommendedWatcher,
        mut wake: mpsc::UnboundedReceiver<()>,
        mut stop: oneshot::Receiver<()>,
    ) {
        let mut sockets: HashMap<PathBuf, SocketState> = HashMap::new();
        let mut attempts: JoinSet<AttemptResult> = JoinSet::new();
        let mut next_generation = 0u64;
        let mut tick = tokio::time::interval(self.options.resync_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.scan(&mut sockets, &mut attempts, &mut next_generation);
            tokio::select! {
                _ = &mut stop => break,
                _ = tick.tick() => {}
                woke = wake.recv() => {
                    if woke.is_none() {
                        break;
                    }
                    // Coalesce a burst of events into one scan.
                    while wake.try_recv().is_ok() {}
                }
                Some(joined) = attempts.join_next() => {
                    match joined {
                        Ok(result) => self.finish(&mut sockets, result),
                        Err(e) => tracing::warn!(error = %e, "registration attempt task failed"),
                    }
                }
            }
        }
        attempts.shutdown().await;
    }

    /// Compare the directory with what is known: start registering new sockets, retry failed
    /// ones that are due, forget the gone ones.
    fn scan(
        &self,
        sockets: &mut HashMap<PathBuf, SocketState>,
        attempts: &mut JoinSet<AttemptResult>,
        next_generation: &mut u64,
    ) {
        let present = match list_sockets(&self.options.dir) {
            Ok(present) => present,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the plugin registry");
                return;
            }
        };
        // Gone or replaced sockets.
        let stale: Vec<PathBuf> = sockets
            .iter()
            .filter(|(path, state)| present.get(*path) != Some(&state.id))
            .map(|(path, _)| path.clone())
            .collect();
        for path in stale {
            if let Some(state) = sockets.remove(&path) {
                tracing::info!(socket = %path.display(), "registrar socket removed");
                if let Status::Registered(name) = state.status {
                    self.registry.remove(&name, &path);
                }
            }
        }
        let now = Instant::now();
        for (path, id) in present {
            let due = match sockets.get(&path) {
                None => true,
                Some(SocketState {
                    status: Status::Failed { retry_at, .. },
                    ..
                }) => *retry_at <= now,
                Some(_) => false,
            };
            if !due {
                continue;
            }
            *next_generation += 1;
            let generation = *next_generation;
            let state = sockets.entry(path.clone()).or_insert(SocketState {
                id,
                generation,
                status: Status::InProgress,
                last_delay: None,
            });
            state.generation = generation;
            state.status = Status::InProgress;
            let registry = self.registry.clone();
            let timeout = self.options.call_timeout;
            let span = tracing::info_span!("register", socket = %path.display());
            attempts.spawn(
                async move {
                    let result = register(&path, timeout, &registry).await;
                    (path, generation, result)
                }
                .instrument(span),
            );
        }
    }

    fn finish(&self, sockets: &mut HashMap<PathBuf, SocketState>, result: AttemptResult) {
        let (path, generation, result) = result;
        let Some(state) = sockets.get_mut(&path) else {
            return;
        };
        if state.generation != generation {
            return;
        }
        match result {
            Ok(driver) => {
                state.status = Status::Registered(driver.name.clone());
                state.last_delay = None;
                self.registry.insert(driver);
            }
            Err(e) => {
                let delay = state
                    .last_delay
                    .map(|d| (d * 2).min(self.options.max_retry_delay))
                    .unwrap_or(self.options.initial_retry_delay);
                tracing::warn!(socket = %path.display(), error = %e, retry_in = ?delay, "plugin registration failed");
                state.last_delay = Some(delay);
                state.status = Status::Failed {
                    retry_at: Instant::now() + delay,
                };
            }
        }
    }
}

/// The unix sockets under `dir`, subdirectories included as the reference walks them (hidden
/// names skipped, symlinks not followed), with their identities.
fn list_sockets(dir: &Path) -> std::io::Result<HashMap<PathBuf, SocketId>> {
    let mut found = HashMap::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(current) = dirs.pop() {
        let entries = match std::fs::read_dir(&current) {
            Ok(entries) => entries,
            // The top directory must be readable; a subdirectory may vanish meanwhile.
            Err(e) if current != dir && e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            // The entry may vanish between listing and stat: skip it then.
            let Ok(meta) = std::fs::symlink_metadata(entry.path()) else {
                continue;
            };
            if meta.file_type().is_socket() {
                found.insert(
                    entry.path(),
                    (meta.dev(), meta.ino(), meta.ctime(), meta.ctime_nsec()),
                );
            } else if meta.is_dir() {
                dirs.push(entry.path());
            }
        }
    }
    Ok(found)
}

/// One registration attempt of the registrar at `socket`, as the reference's plugin manager
/// and CSI registration handler do it.
async fn register(
    socket: &Path,
    timeout: Duration,
    registry: &DriverRegistry,
) -> Result<RegisteredDriver, CsiError> {
    let client = RegistrationClient::connect(socket, timeout).await?;
    let info = client.get_info().await?;
    tracing::debug!(r#type = %info.r#type, name = %info.name, endpoint = %info.endpoint, versions = ?info.supported_versions, "plugin info");
    let refuse = |reason: String| async {
        if let Err(e) = client.notify_registration_status(false, &reason).await {
            tracing::warn!(error = %e, "cannot tell the plugin it was refused");
        }
        CsiError::Registration {
            socket: socket.display().to_string(),
            reason,
        }
    };
    if info.r#type != CSI_PLUGIN_TYPE {
        return Err(refuse(format!(
            "RegisterPlugin error -- no handler registered for plugin type: {} at socket {}",
            info.r#type,
            socket.display()
        ))
        .await);
    }
    let endpoint = if info.endpoint.is_empty() {
        socket.display().to_string()
    } else {
        info.endpoint.clone()
    };
    let validated = validate(&info.name, &info.supported_versions, socket, registry);
    let version = match validated {
        Ok(version) => version,
        Err(e) => {
            return Err(refuse(format!(
                "RegisterPlugin error -- plugin validation failed with err: {e}"
            ))
            .await);
        }
    };
    let options = CsiClientOptions {
        timeout,
        connect_timeout: timeout,
    };
    let node = async {
        CsiClient::connect(&endpoint, options)
            .await?
            .with_driver_name(&info.name)
            .node_get_info()
            .await
    }
    .instrument(tracing::info_span!("csi", driver = %info.name))
    .await;
    let node = match node {
        Ok(node) => node,
        Err(e) => {
            return Err(refuse(format!(
                "RegisterPlugin error -- plugin registration failed with err: error calling NodeGetInfo of CSI driver {}: {e}",
                info.name
            ))
            .await);
        }
    };
    client.notify_registration_status(true, "").await?;
    Ok(RegisteredDriver {
        name: info.name,
        endpoint,
        registration_socket: socket.to_path_buf(),
        version,
        node,
    })
}

/// The reference's `ValidatePlugin` for CSI: a name, a supported 1.x version, and no other
/// registrar already registered the same driver with a higher or equal version.
fn validate(
    name: &str,
    versions: &[String],
    socket: &Path,
    registry: &DriverRegistry,
) -> Result<registration::CsiVersion, String> {
    if name.is_empty() {
        return Err("empty plugin name".into());
    }
    let version = registration::highest_supported_version(versions).map_err(|e| {
        format!(
            "none of the versions specified {versions:?} of CSI driver {name:?} are supported: {e}"
        )
    })?;
    if let Some(existing) = registry.get(name)
        && existing.registration_socket != socket
        && existing.version >= version
    {
        return Err(format!(
            "another driver with the name {name:?} is already registered with a higher supported version: {}",
            existing.version
        ));
    }
    Ok(version)
}
