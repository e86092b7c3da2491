//! Built-in pod sources: a static manifest directory ([`StaticDirSource`], source `file`) and
//! a manifest URL ([`ManifestUrlSource`], source `http`), plus the manifest decoding,
//! defaulting and validation they share ([`manifest`]).
//!
//! Both send only [`crate::PodUpdate::Snapshot`]s, and only when the set of pods changed;
//! manifests that do not decode or validate are logged with their origin and field, left
//! out, and listed by [`ManifestProblems`].

mod file;
pub mod manifest;
mod url;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;

pub use file::StaticDirSource;
pub use manifest::{
    apply_pod_defaults, decode_pod, decode_pods, default_image_pull_policy, prepare_static_pod,
    static_pod_uid, validate_pod,
};
pub use url::{ManifestUrlSource, parse_manifest_url_headers};

use crate::error::SourceError;
use crate::labels;

/// How often the reference kubelet rescans the static pod path (`fileCheckFrequency`).
pub const DEFAULT_FILE_CHECK_FREQUENCY: Duration = Duration::from_secs(20);
/// How often the reference kubelet refetches the manifest URL (`httpCheckFrequency`).
pub const DEFAULT_HTTP_CHECK_FREQUENCY: Duration = Duration::from_secs(20);

/// The manifests a source currently leaves out, by origin (file path or URL), with why.
/// A cheap clonable handle; the source updates it after every scan or fetch.
#[derive(Debug, Clone, Default)]
pub struct ManifestProblems(Arc<Mutex<BTreeMap<String, SourceError>>>);

impl ManifestProblems {
    /// The problems found by the latest scan or fetch.
    pub fn current(&self) -> BTreeMap<String, SourceError> {
        self.lock().clone()
    }

    /// Whether the latest scan or fetch found no problem.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Replaces the problem list, logging what is new (warn) and what went away (info), so a
    /// broken manifest is reported once rather than on every rescan.
    fn replace(&self, source: &str, new: BTreeMap<String, SourceError>) {
        let mut current = self.lock();
        for (origin, err) in &new {
            if current.get(origin) != Some(err) {
                match err {
                    SourceError::InvalidManifest { field, message, .. } => tracing::warn!(
                        source,
                        origin = %origin,
                        field = %field,
                        "ignoring pod manifest: {message}"
                    ),
                    SourceError::Unavailable { message, .. } => {
                        tracing::warn!(source, origin = %origin, "cannot read pods: {message}")
                    }
                }
            }
        }
        for origin in current.keys() {
            if !new.contains_key(origin) {
                tracing::info!(source, origin = %origin, "pod manifest problem resolved");
            }
        }
        *current = new;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, SourceError>> {
        // A panic while holding the lock cannot leave the map half-written in a way that
        // matters (it is replaced whole), so a poisoned lock is still usable.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// First-seen times by pod UID, so that `kubernetes.io/config.seen` stays put across rescans
/// (and snapshots compare equal when nothing changed).
#[derive(Debug, Default)]
struct SeenTimes(HashMap<String, String>);

impl SeenTimes {
    /// Stamps every pod with its first-seen time and forgets UIDs no longer present.
    fn stamp(&mut self, pods: &mut [Pod]) {
        let now = k8s_openapi::jiff::Timestamp::now().to_string();
        let mut present = BTreeSet::new();
        for pod in pods.iter_mut() {
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            let seen = self.0.entry(uid.clone()).or_insert_with(|| now.clone());
            pod.metadata
                .annotations
                .get_or_insert_with(BTreeMap::new)
                .insert(labels::CONFIG_SEEN.to_string(), seen.clone());
            present.insert(uid);
        }
        self.0.retain(|uid, _| present.contains(uid));
    }
}

/// Keeps the first pod of each namespace/name, in the given order; later ones become
/// problems of their origin.
fn dedup_by_name(
    pods: Vec<(String, Pod)>,
    problems: &mut BTreeMap<String, SourceError>,
) -> Vec<Pod> {
    let mut first: BTreeMap<(String, String), String> = BTreeMap::new();
    let mut kept = Vec::with_capacity(pods.len());
    for (origin, pod) in pods {
        let key = (
            pod.metadata.namespace.clone().unwrap_or_default(),
            pod.metadata.name.clone().unwrap_or_default(),
        );
        match first.get(&key) {
            Some(earlier) => {
                let message = format!(
                    "duplicate pod {}/{}: already defined by {earlier}",
                    key.0, key.1
                );
                problems
                    .entry(origin.clone())
                    .or_insert(SourceError::InvalidManifest {
                        origin,
                        field: "metadata.name".to_string(),
                        message,
                    });
            }
            None => {
                first.insert(key, origin);
                kept.push(pod);
            }
        }
    }
    kept
}
