//! The static pod source: one pod manifest per file in a directory (`--pod-manifest-path`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use k8s_openapi::api::core::v1::Pod;
use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::time::{Instant, Interval, MissedTickBehavior};

use super::manifest::{self, MAX_MANIFEST_BYTES};
use super::{ManifestProblems, SeenTimes, dedup_by_name};
use crate::error::SourceError;
use crate::source::{PodSource, PodUpdate, SOURCE_FILE};

/// How long to wait after a filesystem event before rescanning, so that an editor's burst of
/// writes (or a copy of many files) gives one rescan.
const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(100);

/// A [`PodSource`] (named `file`) that reads static pod manifests from a directory.
///
/// Every regular file whose name does not start with `.` holds one pod, as YAML or JSON
/// (symlinks are followed; subdirectories are not entered). The path may also name a single
/// manifest file. The directory is rescanned every `check_frequency` and shortly after a
/// filesystem event. A snapshot of all valid pods (in lexical file order) is sent first, even
/// when the directory is empty or missing, and then whenever the set changes. Invalid files
/// are logged, left out and listed by [`StaticDirSource::problems`]; of two files defining the
/// same namespace/name, the first in file order wins.
#[derive(Debug)]
pub struct StaticDirSource {
    path: PathBuf,
    node_name: String,
    check_frequency: Duration,
    debounce: Duration,
    problems: ManifestProblems,
}

impl StaticDirSource {
    /// A source reading `path` for node `node_name`, rescanning every `check_frequency`
    /// (the reference default is [`super::DEFAULT_FILE_CHECK_FREQUENCY`], 20 s).
    pub fn new(
        path: impl Into<PathBuf>,
        node_name: impl Into<String>,
        check_frequency: Duration,
    ) -> Self {
        Self {
            path: path.into(),
            node_name: node_name.into(),
            check_frequency: check_frequency.max(Duration::from_millis(1)),
            debounce: DEFAULT_DEBOUNCE,
            problems: ManifestProblems::default(),
        }
    }

    /// Sets the delay between a filesystem event and the rescan it triggers (default 100 ms).
    pub fn with_debounce(mut self, debounce: Duration) -> Self {
        self.debounce = debounce;
        self
    }

    /// A handle on the manifests the latest scan left out (file path -> error); also lists
    /// the directory itself while it cannot be read.
    pub fn problems(&self) -> ManifestProblems {
        self.problems.clone()
    }

    /// Reads the directory once: the valid pods in file order, and the problems found.
    async fn scan(&self, seen: &mut SeenTimes) -> (Vec<Pod>, BTreeMap<String, SourceError>) {
        let mut problems = BTreeMap::new();
        let dir_origin = self.path.display().to_string();
        let files = match tokio::fs::metadata(&self.path).await {
            Ok(meta) if meta.is_dir() => match list_manifest_files(&self.path).await {
                Ok(files) => files,
                Err(e) => {
                    problems.insert(dir_origin.clone(), unavailable(&dir_origin, &e));
                    Vec::new()
                }
            },
            Ok(meta) if meta.is_file() => vec![self.path.clone()],
            Ok(_) => {
                problems.insert(
                    dir_origin.clone(),
                    SourceError::Unavailable {
                        origin: dir_origin,
                        message: "neither a directory nor a regular file".to_string(),
                    },
                );
                Vec::new()
            }
            Err(e) => {
                problems.insert(dir_origin.clone(), unavailable(&dir_origin, &e));
                Vec::new()
            }
        };

        let mut pods = Vec::with_capacity(files.len());
        for file in files {
            let origin = file.display().to_string();
            match self.read_manifest(&file, &origin).await {
                Ok(pod) => pods.push((origin, pod)),
                Err(err) => {
                    problems.insert(origin, err);
                }
            }
        }
        let mut pods = dedup_by_name(pods, &mut problems);
        seen.stamp(&mut pods);
        (pods, problems)
    }

    async fn read_manifest(&self, file: &Path, origin: &str) -> Result<Pod, SourceError> {
        let meta = tokio::fs::metadata(file)
            .await
            .map_err(|e| unavailable(origin, &e))?;
        if meta.len() > MAX_MANIFEST_BYTES as u64 {
            return Err(SourceError::InvalidManifest {
                origin: origin.to_string(),
                field: "manifest".to_string(),
                message: format!(
                    "too large: {} bytes, at most {MAX_MANIFEST_BYTES}",
                    meta.len()
                ),
            });
        }
        let data = tokio::fs::read(file)
            .await
            .map_err(|e| unavailable(origin, &e))?;
        let pod = manifest::decode_pod(&data, origin)?;
        manifest::prepare_static_pod(pod, &self.node_name, SOURCE_FILE, origin)
    }
}

impl PodSource for StaticDirSource {
    fn name(&self) -> &str {
        SOURCE_FILE
    }

    fn updates(self: Box<Self>) -> BoxStream<'static, PodUpdate> {
        let state = DirWatch::new(*self);
        futures::stream::unfold(state, |mut state| async move {
            let pods = state.next_snapshot().await;
            Some((PodUpdate::Snapshot(pods), state))
        })
        .boxed()
    }
}

/// The running state of a [`StaticDirSource`]'s stream. Dropping the stream drops the
/// filesystem watcher with it.
struct DirWatch {
    source: StaticDirSource,
    /// The active watch and the path it is on: the manifest path itself, or its parent
    /// while the manifest path does not exist (to notice it being created).
    watcher: Option<(RecommendedWatcher, PathBuf)>,
    events_tx: mpsc::UnboundedSender<notify::Result<notify::Event>>,
    events: mpsc::UnboundedReceiver<notify::Result<notify::Event>>,
    interval: Interval,
    last: Option<Vec<Pod>>,
    seen: SeenTimes,
}

impl DirWatch {
    fn new(source: StaticDirSource) -> Self {
        let (events_tx, events) = mpsc::unbounded_channel();
        let period = source.check_frequency;
        let mut interval = tokio::time::interval_at(Instant::now() + period, period);
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Self {
            source,
            watcher: None,
            events_tx,
            events,
            interval,
            last: None,
            seen: SeenTimes::default(),
        }
    }

    /// Waits until a scan finds a set different from the last one sent (the first scan is
    /// always sent).
    async fn next_snapshot(&mut self) -> Vec<Pod> {
        loop {
            if self.last.is_some() {
                self.wait_for_trigger().await;
            }
            self.ensure_watch();
            let (pods, problems) = self.source.scan(&mut self.seen).await;
            self.source.problems.replace(SOURCE_FILE, problems);
            if self.last.as_ref() != Some(&pods) {
                tracing::debug!(
                    path = %self.source.path.display(),
                    pods = pods.len(),
                    "static pod set changed"
                );
                self.last = Some(pods.clone());
                return pods;
            }
        }
    }

    async fn wait_for_trigger(&mut self) {
        loop {
            tokio::select! {
                _ = self.interval.tick() => return,
                Some(event) = self.events.recv() => {
                    if !self.is_relevant(event) {
                        continue;
                    }
                    tokio::time::sleep(self.source.debounce).await;
                    while let Ok(event) = self.events.try_recv() {
                        self.is_relevant(event);
                    }
                    // A change was just picked up: the next periodic scan can wait a period.
                    self.interval.reset();
                    return;
                }
            }
        }
    }

    /// Whether an event may change the pod set; also forgets the watcher when the watched
    /// path itself went away, so that it is set up again when the path comes back.
    fn is_relevant(&mut self, event: notify::Result<notify::Event>) -> bool {
        let event = match event {
            Ok(event) => event,
            Err(e) => {
                tracing::debug!(path = %self.source.path.display(), "watch error: {e}");
                return true;
            }
        };
        if matches!(event.kind, EventKind::Remove(_))
            && event.paths.iter().any(|p| p == &self.source.path)
        {
            self.watcher = None;
        }
        // Our own reads show up as access events; only a finished write matters.
        match event.kind {
            EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
            EventKind::Access(_) => false,
            _ => true,
        }
    }

    /// Watches the manifest path, or its parent while the path does not exist, so that
    /// both changes inside it and its (re)creation wake the source. Without a watch
    /// (unsupported filesystem, inotify limits) the periodic rescan still finds every change.
    fn ensure_watch(&mut self) {
        let path = &self.source.path;
        let target = if path.exists() {
            path.clone()
        } else {
            match path.parent() {
                Some(parent) if parent.as_os_str().is_empty() => PathBuf::from("."),
                Some(parent) if parent.exists() => parent.to_path_buf(),
                _ => {
                    self.watcher = None;
                    return;
                }
            }
        };
        if self.watcher.as_ref().is_some_and(|(_, on)| *on == target) {
            return;
        }
        self.watcher = None;
        let tx = self.events_tx.clone();
        let handler = move |event: notify::Result<notify::Event>| {
            // The receiver is gone only when the stream was dropped: nothing to tell.
            let _ = tx.send(event);
        };
        match notify::recommended_watcher(handler).and_then(|mut w| {
            w.watch(&target, RecursiveMode::NonRecursive)?;
            Ok(w)
        }) {
            Ok(w) => self.watcher = Some((w, target)),
            Err(e) => tracing::debug!(
                path = %target.display(),
                "cannot watch for changes, relying on the periodic rescan: {e}"
            ),
        }
    }
}

/// The regular files of `dir` that may hold manifests, in lexical order of their names.
async fn list_manifest_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut entries = tokio::fs::read_dir(dir).await?;
    let mut names = Vec::new();
    while let Some(entry) = entries.next_entry().await? {
        names.push(entry.file_name());
    }
    names.sort();
    let mut files = Vec::with_capacity(names.len());
    for name in names {
        // Hidden files are editors' swap files and the like (the reference skips them too).
        if name.as_encoded_bytes().starts_with(b".") {
            continue;
        }
        let path = dir.join(&name);
        match tokio::fs::metadata(&path).await {
            Ok(meta) if meta.is_file() => files.push(path),
            Ok(meta) if meta.is_dir() => {
                tracing::debug!(path = %path.display(), "not recursing into manifest directory")
            }
            Ok(_) => tracing::debug!(path = %path.display(), "not a regular file, skipped"),
            // Removed between the listing and now, or a dangling symlink.
            Err(e) => tracing::debug!(path = %path.display(), "skipped: {e}"),
        }
    }
    Ok(files)
}

fn unavailable(origin: &str, err: &std::io::Error) -> SourceError {
    SourceError::Unavailable {
        origin: origin.to_string(),
        message: err.to_string(),
    }
}
