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
//! - [`metrics`]: the `/metrics/resource` exposition;
//! - [`cadvisor`]: the `/metrics/cadvisor` exposition, per cgroup, as cAdvisor names it.
//!
//! Collection runs on a housekeeping interval (10 s, as the reference's cAdvisor) and is
//! cached: a scrape reads the newest sample and costs no file reads. CPU usage in
//! nanocores is the CPU time between two samples over the time between them, as the
//! reference computes it; the first sample has none.

pub mod cadvisor;
pub mod cgroup;
mod collect;
pub mod fs;
pub mod metrics;
pub mod node;
pub mod summary;
pub mod volumes;

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::RuntimeError;
use crate::runtime::{ContainerState, ListFilter, Runtime, SandboxState};

pub use cadvisor::CadvisorSample;
pub use summary::Summary;
pub use volumes::{VolumeStatsCollector, VolumeStatsSource};

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

/// Produces the node's statistics. The kubelet server serves `/stats/summary`,
/// `/metrics/resource` and `/metrics/cadvisor` from it.
#[async_trait]
pub trait StatsProvider: Send + Sync + 'static {
    /// The newest summary of the node, its pods and containers.
    async fn summary(&self) -> Result<Arc<Summary>, StatsError>;

    /// A summary taken now rather than the cached one (the eviction manager checks one after
    /// it reclaimed node-level resources). The default is [`StatsProvider::summary`].
    async fn fresh_summary(&self) -> Result<Arc<Summary>, StatsError> {
        self.summary().await
    }

    /// The newest per-cgroup sample for `/metrics/cadvisor`. The default derives what it
    /// can from [`StatsProvider::summary`] (CPU, memory, network, writable layers).
    async fn cadvisor(&self) -> Result<Arc<CadvisorSample>, StatsError> {
        let summary = self.summary().await?;
        Ok(Arc::new(CadvisorSample::from_summary(&summary)))
    }
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
    /// The kubelet's cgroup (`kubeletCgroups`): the `kubelet` system container when set.
    pub kubelet_cgroup: Option<String>,
    /// The runtime's cgroup (`runtimeCgroups`): the `runtime` system container when set.
    pub runtime_cgroup: Option<String>,
    /// The other system daemons' cgroup (`systemCgroups`): the `misc` system container.
    pub system_cgroup: Option<String>,
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
            kubelet_cgroup: None,
            runtime_cgroup: None,
            system_cgroup: None,
            root_dir: PathBuf::from("/var/lib/kubelet"),
            pod_logs_root: PathBuf::from("/var/log/pods"),
            image_fs: None,
        }
    }
}

/// One collection's results and when it was taken.
type Sampled = (std::time::Instant, Arc<Summary>, Arc<CadvisorSample>);

/// The default [`StatsProvider`]: the runtime's pods and containers, measured through their
/// cgroups, `/proc` and the filesystems; CRI `ListContainerStats` where no cgroup is found
/// (a runtime without cgroups, or a driver layout not known here).
///
/// Of the system containers it lists `pods`, as the reference does when no
/// `kubeletCgroups`/`runtimeCgroups`/`systemCgroups` are configured (it lists those only
/// when they are).
///
/// CRI `ListPodSandboxStats` stands in for a pod whose cgroup or network namespace is not
/// found: it is asked at the first collection and after any collection that met such a pod
/// (the pod then gets the runtime's numbers from the next one). A runtime that refuses it
/// (`Unimplemented`) is not asked again.
pub struct RuntimeStatsProvider {
    runtime: Arc<dyn Runtime>,
    config: StatsConfig,
    layout: cgroup::CgroupLayout,
    /// The samples of the previous collection (for nanocores) and the volume cache; one
    /// collection at a time.
    state: tokio::sync::Mutex<collect::State>,
    /// The newest sample and when it was taken.
    newest: std::sync::RwLock<Option<Sampled>>,
    /// Whether the runtime answers `ListPodSandboxStats` (until it refuses).
    sandbox_stats: std::sync::atomic::AtomicBool,
    /// The plugins that measure their own volumes (CSI drivers).
    volume_sources: Vec<Arc<dyn VolumeStatsSource>>,
    /// Per pod UID: when the volume sources were last asked, and what they answered.
    sourced_volumes:
        tokio::sync::Mutex<HashMap<String, (std::time::Instant, Vec<summary::VolumeStats>)>>,
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
            sandbox_stats: std::sync::atomic::AtomicBool::new(true),
            volume_sources: Vec::new(),
            sourced_volumes: tokio::sync::Mutex::default(),
        }
    }

    /// Also ask `source` for the pods' volumes (on the volume stats period).
    pub fn with_volume_source(mut self, source: Arc<dyn VolumeStatsSource>) -> Self {
        self.volume_sources.push(source);
        self
    }

    /// What the volume sources say of each pod's volumes: asked again once the volume stats
    /// period has passed for the pod, cached in between (a driver call per volume is dearer
    /// than a cgroup read).
    async fn sourced_volume_stats(
        &self,
        uids: &[String],
    ) -> HashMap<String, Vec<summary::VolumeStats>> {
        if self.volume_sources.is_empty() {
            return HashMap::new();
        }
        let mut cache = self.sourced_volumes.lock().await;
        cache.retain(|uid, _| uids.contains(uid));
        let mut out = HashMap::new();
        for uid in uids {
            let fresh = cache
                .get(uid)
                .filter(|(at, _)| at.elapsed() < self.config.volume_stats_period)
                .map(|(_, v)| v.clone());
            let volumes = match fresh {
                Some(v) => v,
                None => {
                    let pod_dir = self.config.root_dir.join("pods").join(uid);
                    let mut v = Vec::new();
                    for source in &self.volume_sources {
                        v.extend(source.pod_volume_stats(uid, &pod_dir).await);
                    }
                    cache.insert(uid.clone(), (std::time::Instant::now(), v.clone()));
                    v
                }
            };
            if !volumes.is_empty() {
                out.insert(uid.clone(), volumes);
            }
        }
        out
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
        self.collect_both().await.map(|(summary, _)| summary)
    }

    /// What the runtime measured of each sandbox, by sandbox ID; empty when it does not
    /// measure sandboxes.
    async fn runtime_sandbox_stats(&self) -> HashMap<String, crate::runtime::PodSandboxStats> {
        use std::sync::atomic::Ordering;
        if !self.sandbox_stats.load(Ordering::Relaxed) {
            return HashMap::new();
        }
        match self.runtime.list_pod_sandbox_stats().await {
            Ok(stats) => stats.into_iter().map(|s| (s.id.clone(), s)).collect(),
            Err(RuntimeError::Unsupported(message)) => {
                tracing::info!(%message, "the runtime does not measure pod sandboxes; cgroups only");
                self.sandbox_stats.store(false, Ordering::Relaxed);
                HashMap::new()
            }
            Err(e) => {
                tracing::debug!(error = %e, "ListPodSandboxStats failed; cgroups only");
                HashMap::new()
            }
        }
    }

    /// Takes a sample now and caches it: the summary and the cAdvisor sample.
    async fn collect_both(&self) -> Result<(Arc<Summary>, Arc<CadvisorSample>), StatsError> {
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
        // Only while some pod is not measured through its cgroup and network namespace: the
        // runtime reads the same cgroups again to answer.
        let mut sandbox_stats = if state.pods_unmeasured.unwrap_or(true) {
            self.runtime_sandbox_stats().await
        } else {
            HashMap::new()
        };
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
                        sandbox_stats: sandbox_stats.remove(&s.id),
                        sandbox: s,
                        containers: Vec::new(),
                        sourced_volumes: Vec::new(),
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
        let uids: Vec<String> = pods.keys().cloned().collect();
        for (uid, volumes) in self.sourced_volume_stats(&uids).await {
            if let Some(pod) = pods.get_mut(&uid) {
                pod.sourced_volumes = volumes;
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
        let ((summary, cadvisor), taken) = tokio::task::spawn_blocking(move || {
            let sample = collect::sample(&config, &layout, pods, images_bytes, &mut taken);
            (sample, taken)
        })
        .await
        .map_err(|e| StatsError::Collection(e.to_string()))?;
        *state = taken;
        let (summary, cadvisor) = (Arc::new(summary), Arc::new(cadvisor));
        if let Ok(mut newest) = self.newest.write() {
            *newest = Some((std::time::Instant::now(), summary.clone(), cadvisor.clone()));
        }
        Ok((summary, cadvisor))
    }

    /// The newest cached sample, if any was taken.
    pub fn cached(&self) -> Option<Arc<Summary>> {
        self.newest
            .read()
            .ok()
            .and_then(|n| n.as_ref().map(|(_, s, _)| s.clone()))
    }

    /// The cached sample while housekeeping keeps it fresh (younger than two intervals).
    fn fresh(&self) -> Option<(Arc<Summary>, Arc<CadvisorSample>)> {
        let newest = self.newest.read().ok()?;
        let (at, summary, cadvisor) = newest.as_ref()?;
        (at.elapsed() < self.config.housekeeping_interval * 2)
            .then(|| (summary.clone(), cadvisor.clone()))
    }
}

#[async_trait]
impl StatsProvider for RuntimeStatsProvider {
    /// The cached sample; a collection now when housekeeping has not run yet (or does not
    /// run: an embedder that never spawned [`RuntimeStatsProvider::run`]).
    async fn summary(&self) -> Result<Arc<Summary>, StatsError> {
        match self.fresh() {
            Some((summary, _)) => Ok(summary),
            None => self.collect().await,
        }
    }

    async fn fresh_summary(&self) -> Result<Arc<Summary>, StatsError> {
        self.collect().await
    }

    /// The cached cgroup sample, taken with the summary.
    async fn cadvisor(&self) -> Result<Arc<CadvisorSample>, StatsError> {
        match self.fresh() {
            Some((_, cadvisor)) => Ok(cadvisor),
            None => self.collect_both().await.map(|(_, cadvisor)| cadvisor),
        }
    }
}

#[cfg(test)]
mod tests;
