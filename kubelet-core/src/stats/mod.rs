//! Node, pod and container statistics: what `/stats/summary` and `/metrics/resource` serve.
//!
//! The seam is [`StatsProvider`]: anything that can produce a [`Summary`]. Embedders with a
//! runtime of their own implement it (or use [`RuntimeStatsProvider`] over their
//! [`Runtime`]) and the kubelet server serves their numbers. The default provider combines
//! the runtime (sandboxes, containers, CRI `ListContainerStats`) with the node's own files
//! for what the runtime does not give:
//!
//! - [`cgroup`]: a cgroup's CPU and memory, v1 and v2, both drivers' paths;
//! - [`node`]: `/proc` (CPU, boot time, memory, network interfaces, PIDs);
//! - [`fs`]: statvfs and directory usage (volumes, logs);
//! - [`summary`]: the reference's `statsapi.Summary` JSON;
//! - [`metrics`]: the `/metrics/resource` exposition.
//!
//! Collection runs on a housekeeping interval (10 s, as the reference's cAdvisor) and is
//! cached: a scrape reads the newest sample and costs no file reads. CPU usage in
//! nanocores is the CPU time between two samples over the time between them, as the
//! reference computes it; the first sample has none.

pub mod cgroup;
mod collect;
pub mod fs;
pub mod metrics;
pub mod node;
pub mod summary;

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::RuntimeError;
use crate::runtime::{ContainerState, ListFilter, Runtime, SandboxState};

pub use summary::Summary;

/// An error of stats collection.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    /// The runtime could not list its pods or containers.
    #[error("stats: the runtime: {0}")]
    Runtime(#[from] RuntimeError),
    /// The collection task failed.
    #[error("stats: collection failed: {0}")]
    Collection(String),
}

/// Produces the node's statistics. The kubelet server serves `/stats/summary` and
/// `/metrics/resource` from it.
#[async_trait]
pub trait StatsProvider: Send + Sync + 'static {
    /// The newest summary of the node, its pods and containers.
    async fn summary(&self) -> Result<Arc<Summary>, StatsError>;
}

impl std::fmt::Debug for dyn StatsProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StatsProvider")
    }
}

/// Where the default provider reads, and how often.
#[derive(Debug, Clone)]
pub struct StatsConfig {
    /// The node's name (`node.nodeName`).
    pub node_name: String,
    /// How often a sample is taken (the reference's cAdvisor housekeeping: 10 s).
    pub housekeeping_interval: Duration,
    /// How often volumes are measured (walking them costs more; the reference's
    /// `volumeStatsAggPeriod`: 1 min).
    pub volume_stats_period: Duration,
    /// The cgroup filesystem (`/sys/fs/cgroup`).
    pub cgroup_fs_root: PathBuf,
    /// `/proc`.
    pub proc_root: PathBuf,
    /// The pods' top cgroup (`/kubepods`; `/kubepods.slice` with the systemd driver).
    pub pods_cgroup: String,
    /// The kubelet's root directory (`/var/lib/kubelet`): the node's `fs`, pod volumes.
    pub root_dir: PathBuf,
    /// The pod log directories' root (`/var/log/pods`).
    pub pod_logs_root: PathBuf,
    /// A path on the runtime's image filesystem (e.g. `/var/lib/containerd`); the root
    /// directory's filesystem when `None`.
    pub image_fs: Option<PathBuf>,
}

impl StatsConfig {
    /// The reference's defaults for node `node_name`.
    pub fn new(node_name: impl Into<String>) -> Self {
        Self {
            node_name: node_name.into(),
            housekeeping_interval: Duration::from_secs(10),
            volume_stats_period: Duration::from_secs(60),
            cgroup_fs_root: PathBuf::from("/sys/fs/cgroup"),
            proc_root: PathBuf::from("/proc"),
            pods_cgroup: "/kubepods".to_string(),
            root_dir: PathBuf::from("/var/lib/kubelet"),
            pod_logs_root: PathBuf::from("/var/log/pods"),
            image_fs: None,
        }
    }
}

/// The default [`StatsProvider`]: the runtime's pods and containers, measured through their
/// cgroups, `/proc` and the filesystems; CRI `ListContainerStats` where no cgroup is found
/// (a runtime without cgroups, or a driver layout not known here).
///
/// The reference also lists the `kubelet` and `runtime` system containers and swap; this
/// provider lists only the `pods` system container and no swap.
pub struct RuntimeStatsProvider {
    runtime: Arc<dyn Runtime>,
    config: StatsConfig,
    layout: cgroup::CgroupLayout,
    /// The samples of the previous collection (for nanocores) and the volume cache; one
    /// collection at a time.
    state: tokio::sync::Mutex<collect::State>,
    /// The newest sample and when it was taken.
    newest: std::sync::RwLock<Option<(std::time::Instant, Arc<Summary>)>>,
}

impl RuntimeStatsProvider {
    /// A provider over `runtime`; nothing is read until the first collection.
    pub fn new(runtime: Arc<dyn Runtime>, config: StatsConfig) -> Self {
        let layout = cgroup::CgroupLayout::detect(&config.cgroup_fs_root);
        Self {
            runtime,
            config,
            layout,
            state: tokio::sync::Mutex::new(collect::State::default()),
            newest: std::sync::RwLock::new(None),
        }
    }

    /// Housekeeping: a collection now and then every interval, until `shutdown`.
    pub async fn run(self: Arc<Self>, shutdown: impl Future<Output = ()> + Send) {
        let mut tick = tokio::time::interval(self.config.housekeeping_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = &mut shutdown => return,
            }
            if let Err(e) = self.collect().await {
                tracing::warn!(error = %e, "stats housekeeping failed");
            }
        }
    }

    /// Takes a sample now, caches it and returns it.
    pub async fn collect(&self) -> Result<Arc<Summary>, StatsError> {
        let mut state = self.state.lock().await;
        let all = ListFilter::all();
        let (sandboxes, containers) = tokio::try_join!(
            self.runtime.list_pod_sandboxes(&all),
            self.runtime.list_containers(&all),
        )?;
        // What the runtime measured is a fallback: a failure here only loses it.
        let runtime_stats = self
            .runtime
            .list_container_stats()
            .await
            .unwrap_or_else(|e| {
                tracing::debug!(error = %e, "ListContainerStats failed; cgroups only");
                Vec::new()
            });
        let images_bytes = match self.runtime.list_images().await {
            Ok(images) => Some(images.iter().map(|i| i.size).sum()),
            Err(e) => {
                tracing::debug!(error = %e, "listing images failed");
                None
            }
        };
        let mut by_id: HashMap<String, crate::runtime::ContainerStats> = runtime_stats
            .into_iter()
            .map(|s| (s.id.clone(), s))
            .collect();
        // One entry per pod: its ready sandbox (the newest one when several are).
        let mut pods: HashMap<String, collect::PodInput> = HashMap::new();
        for s in sandboxes
            .into_iter()
            .filter(|s| s.state == SandboxState::Ready)
        {
            let newer = pods
                .get(&s.metadata.uid)
                .is_none_or(|p| p.sandbox.created_at < s.created_at);
            if newer {
                pods.insert(
                    s.metadata.uid.clone(),
                    collect::PodInput {
                        sandbox: s,
                        containers: Vec::new(),
                    },
                );
            }
        }
        let pod_of_sandbox: HashMap<String, String> = pods
            .iter()
            .map(|(uid, p)| (p.sandbox.id.clone(), uid.clone()))
            .collect();
        // Running containers only, as the reference's CRI stats leave out terminated ones.
        for c in containers
            .into_iter()
            .filter(|c| c.state == ContainerState::Running)
        {
            let pod = pod_of_sandbox
                .get(&c.sandbox_id)
                .and_then(|uid| pods.get_mut(uid));
            if let Some(pod) = pod {
                let stats = by_id.remove(&c.id);
                pod.containers.push((c, stats));
            }
        }
        let mut pods: Vec<collect::PodInput> = pods.into_values().collect();
        pods.sort_by(|a, b| {
            (&a.sandbox.metadata.namespace, &a.sandbox.metadata.name)
                .cmp(&(&b.sandbox.metadata.namespace, &b.sandbox.metadata.name))
        });

        let config = self.config.clone();
        let layout = self.layout.clone();
        let mut taken = std::mem::take(&mut *state);
        let (summary, taken) = tokio::task::spawn_blocking(move || {
            let summary = collect::sample(&config, &layout, pods, images_bytes, &mut taken);
            (summary, taken)
        })
        .await
        .map_err(|e| StatsError::Collection(e.to_string()))?;
        *state = taken;
        let summary = Arc::new(summary);
        if let Ok(mut newest) = self.newest.write() {
            *newest = Some((std::time::Instant::now(), summary.clone()));
        }
        Ok(summary)
    }

    /// The newest cached sample, if any was taken.
    pub fn cached(&self) -> Option<Arc<Summary>> {
        self.newest
            .read()
            .ok()
            .and_then(|n| n.as_ref().map(|(_, s)| s.clone()))
    }

    /// The cached sample while housekeeping keeps it fresh (younger than two intervals).
    fn fresh(&self) -> Option<Arc<Summary>> {
        let newest = self.newest.read().ok()?;
        let (at, summary) = newest.as_ref()?;
        (at.elapsed() < self.config.housekeeping_interval * 2).then(|| summary.clone())
    }
}

#[async_trait]
impl StatsProvider for RuntimeStatsProvider {
    /// The cached sample; a collection now when housekeeping has not run yet (or does not
    /// run: an embedder that never spawned [`RuntimeStatsProvider::run`]).
    async fn summary(&self) -> Result<Arc<Summary>, StatsError> {
        match self.fresh() {
            Some(summary) => Ok(summary),
            None => self.collect().await,
        }
    }
}

#[cfg(test)]
mod tests;
