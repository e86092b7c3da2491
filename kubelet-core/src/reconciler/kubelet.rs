//! The public face of the reconciler: configuration, builder, the running kubelet and a
//! handle to inspect it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use thiserror::Error;

use super::spec::SpecSettings;
use crate::network::NetworkPlugin;
use crate::node::{MachineInfo, NodeAgent, NodeConfig, NodeConfigError, NodeStatusHandle};
use crate::reporter::NodeReporter;
use crate::runtime::Runtime;
use crate::source::PodSource;
use crate::volume::VolumePlugin;

/// Settings of the reconciler.
#[derive(Debug, Clone)]
pub struct KubeletConfig {
    /// The node's name.
    pub node_name: String,
    /// The kubelet's state directory (`/var/lib/kubelet`): pod dirs and volumes live below.
    pub root_dir: PathBuf,
    /// How runtime configs are shaped (log root, cgroup root, DNS).
    pub spec: SpecSettings,
    /// How often the runtime is relisted for changes (reference: 1 s).
    pub relist_period: Duration,
    /// How often every pod is synced even without changes (`syncFrequency`, 1 min).
    pub sync_frequency: Duration,
    /// The node's IPs, primary first (for `hostIP(s)` in pod status).
    pub node_ips: Vec<String>,
    /// Where the cgroup hierarchies are mounted (`/sys/fs/cgroup`): the kubelet manages the
    /// QoS and pod cgroups there (cgroupfs driver, per [`KubeletConfig::cgroups`]); `None`
    /// leaves cgroups alone (fake runtimes) unless a [`KubeletBuilder::cgroup_manager`] is
    /// given.
    pub cgroup_fs_root: Option<PathBuf>,
    /// `--cgroups-per-qos`, node allocatable enforcement, `--pod-max-pids` and the CFS
    /// quota settings of the pod cgroups (below `spec.cgroup_root`).
    pub cgroups: crate::cgroups::CgroupSettings,
    /// The node's hosts file (`/etc/hosts`), the base of a host-network pod's `/etc/hosts`.
    pub node_hosts_file: PathBuf,
    /// Image garbage collection (`imageGCHighThresholdPercent` and friends; the reference's
    /// defaults). Runs while the kubelet runs unless the high threshold is 100.
    pub image_gc: crate::image_gc::ImageGcPolicy,
}

impl KubeletConfig {
    /// Defaults as the reference kubelet has them, for the given node name.
    pub fn new(node_name: impl Into<String>) -> Self {
        Self {
            node_name: node_name.into(),
            root_dir: PathBuf::from("/var/lib/kubelet"),
            spec: SpecSettings::default(),
            relist_period: Duration::from_secs(1),
            sync_frequency: Duration::from_secs(60),
            node_ips: Vec::new(),
            cgroup_fs_root: None,
            cgroups: crate::cgroups::CgroupSettings::default(),
            node_hosts_file: PathBuf::from(super::etc_hosts::NODE_ETC_HOSTS),
            image_gc: crate::image_gc::ImageGcPolicy::default(),
        }
    }
}

/// Errors that stop the kubelet.
#[derive(Debug, Error)]
pub enum KubeletError {
    /// The builder lacks a required seam.
    #[error("kubelet is missing its {0}")]
    Missing(&'static str),
    /// The runtime is unusable at start.
    #[error("container runtime: {0}")]
    Runtime(#[from] crate::error::RuntimeError),
    /// The node status settings are unusable.
    #[error(transparent)]
    Node(#[from] NodeConfigError),
    /// The QoS cgroups could not be set up.
    #[error("cannot set up the pod cgroups: {0}")]
    Cgroups(#[from] crate::cgroups::CgroupError),
    /// The image GC policy is unusable.
    #[error(transparent)]
    ImageGc(#[from] crate::image_gc::ImageGcError),
}

/// The reconciler, assembled from its seams. [`Kubelet::run`] drives it until shutdown.
pub struct Kubelet {
    pub(super) config: KubeletConfig,
    pub(super) runtime: Arc<dyn Runtime>,
    pub(super) network: Arc<dyn NetworkPlugin>,
    pub(super) reporter: Arc<dyn NodeReporter>,
    pub(super) volume_plugins: Vec<Arc<dyn VolumePlugin>>,
    pub(super) mounter: Arc<dyn crate::volume::Mounter>,
    pub(super) pod_objects: Option<Arc<dyn crate::objects::PodObjects>>,
    pub(super) runtime_classes: Option<Arc<dyn crate::runtime_class::RuntimeClasses>>,
    pub(super) sources: Vec<Box<dyn PodSource>>,
    pub(super) shared: Arc<super::kubelet_state::Shared>,
    pub(super) node_agent: Option<NodeAgent>,
    /// The QoS and pod cgroups, when the kubelet manages cgroups.
    pub(super) pod_cgroups: Option<Arc<crate::cgroups::PodCgroups>>,
    /// Image garbage collection, when enabled (shared with the eviction manager's reclaim).
    pub(super) image_gc: Option<Arc<tokio::sync::Mutex<crate::image_gc::ImageGcManager>>>,
    /// Where the node's and pods' usage is read (node-pressure eviction).
    pub(super) stats: Option<Arc<dyn crate::stats::StatsProvider>>,
    /// The eviction settings.
    pub(super) eviction: crate::eviction::EvictionConfig,
    /// The node-pressure eviction manager, once a stats provider is given.
    pub(super) node_eviction: Option<Arc<super::node_eviction::NodeEviction>>,
    /// The node new pods must fit (from the node status settings).
    pub(super) node_info: Option<crate::admission::NodeInfo>,
    /// The node agent's handle: the eviction manager sets the pressure conditions.
    pub(super) node_status: Option<NodeStatusHandle>,
}

impl Kubelet {
    /// Start assembling a kubelet with the given settings.
    pub fn builder(config: KubeletConfig) -> KubeletBuilder {
        KubeletBuilder {
            config: Some(config),
            ..KubeletBuilder::default()
        }
    }

    /// Run until `shutdown` completes: watch the sources, relist the runtime, sync the pods.
    /// Pods keep running after shutdown (as with the reference kubelet, a stopped kubelet
    /// leaves its containers alone).
    pub async fn run(
        mut self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), KubeletError> {
        // The QoS hierarchy exists before any pod is synced, as the reference's container
        // manager starts before its pod workers.
        let housekeeping = match &self.pod_cgroups {
            Some(cgroups) => {
                cgroups.start()?;
                Some(tokio::spawn(crate::cgroups::housekeeping(
                    cgroups.clone(),
                    self.runtime.clone(),
                    self.config.root_dir.join("pods"),
                )))
            }
            None => None,
        };
        let image_gc = self.image_gc.clone().map(|gc| {
            tokio::spawn(crate::image_gc::ImageGcManager::run_shared(
                gc,
                std::future::pending::<()>(),
            ))
        });
        let result = match self.node_agent.take() {
            None => super::dispatcher::run(self, shutdown).await,
            Some(agent) => {
                let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
                let agent = tokio::spawn(agent.run(async move {
                    let _ = stopped.await;
                }));
                let result = super::dispatcher::run(self, shutdown).await;
                let _ = stop.send(());
                let _ = agent.await;
                result
            }
        };
        for task in [housekeeping, image_gc].into_iter().flatten() {
            task.abort();
        }
        result
    }

    /// Where the node's and its pods' usage is read (build it over [`Kubelet::runtime`], so
    /// that its runtime calls are counted too). With it the kubelet runs node-pressure
    /// eviction as [`KubeletBuilder::eviction`] sets it: the node's pressure conditions,
    /// node-level reclaim, pod eviction, and the eviction admit handler for new pods.
    pub fn with_stats(mut self, stats: Arc<dyn crate::stats::StatsProvider>) -> Self {
        self.stats = Some(stats);
        self.node_eviction = Some(Arc::new(super::node_eviction::NodeEviction::new(
            self.eviction.clone(),
        )));
        self
    }

    /// The runtime as the kubelet calls it: the one given, with its calls counted into the
    /// kubelet's metrics. Hand this one to the server and other users of the runtime so
    /// that their calls are counted too.
    pub fn runtime(&self) -> Arc<dyn Runtime> {
        self.runtime.clone()
    }

    /// A handle to inspect the kubelet while it runs.
    pub fn handle(&self) -> KubeletHandle {
        KubeletHandle {
            inner: self.shared.clone(),
            node: self.node_agent.as_ref().map(NodeAgent::handle),
        }
    }
}

/// Assembles a [`Kubelet`] from its seams.
#[derive(Default)]
pub struct KubeletBuilder {
    pub(super) config: Option<KubeletConfig>,
    pub(super) runtime: Option<Arc<dyn Runtime>>,
    pub(super) network: Option<Arc<dyn NetworkPlugin>>,
    pub(super) reporter: Option<Arc<dyn NodeReporter>>,
    pub(super) volume_plugins: Vec<Arc<dyn VolumePlugin>>,
    pub(super) mounter: Option<Arc<dyn crate::volume::Mounter>>,
    pub(super) pod_objects: Option<Arc<dyn crate::objects::PodObjects>>,
    pub(super) runtime_classes: Option<Arc<dyn crate::runtime_class::RuntimeClasses>>,
    pub(super) sources: Vec<Box<dyn PodSource>>,
    pub(super) node: Option<(NodeConfig, MachineInfo)>,
    pub(super) volumes_in_use: Option<crate::node::VolumesInUse>,
    pub(super) cgroup_manager: Option<Arc<dyn crate::cgroups::CgroupManager>>,
    pub(super) metrics: Option<crate::metrics::KubeletMetrics>,
    pub(super) image_fs: Option<Arc<dyn crate::image_gc::ImageFsStatsProvider>>,
    pub(super) eviction: Option<crate::eviction::EvictionConfig>,
}

impl KubeletBuilder {
    /// The container runtime.
    pub fn runtime(mut self, runtime: Arc<dyn Runtime>) -> Self {
        self.runtime = Some(runtime);
        self
    }
    /// The network plugin (use [`crate::RuntimeManagedNetwork`] with CRI runtimes).
    pub fn network(mut self, network: Arc<dyn NetworkPlugin>) -> Self {
        self.network = Some(network);
        self
    }
    /// Where status and events go.
    pub fn reporter(mut self, reporter: Arc<dyn NodeReporter>) -> Self {
        self.reporter = Some(reporter);
        self
    }
    /// Add a volume plugin (the built-ins, emptyDir and hostPath, are always present; a
    /// plugin added here is asked first).
    pub fn volume_plugin(mut self, plugin: Arc<dyn VolumePlugin>) -> Self {
        self.volume_plugins.push(plugin);
        self
    }
    /// How the kubelet mounts: the built-in plugins' tmpfs volumes and the bind mounts of
    /// subPaths (default: the node's mount table, [`crate::volume::HostMounter`]; a
    /// [`crate::volume::FakeMounter`] in tests that run without privileges).
    pub fn mounter(mut self, mounter: Arc<dyn crate::volume::Mounter>) -> Self {
        self.mounter = Some(mounter);
        self
    }
    /// Where the ConfigMaps, Secrets and Services that pods name come from (the API server's
    /// `PodObjectFetcher` in a cluster). Without one, a container whose environment names a
    /// ConfigMap or Secret does not start, as with a reference kubelet without an API server.
    pub fn pod_objects(mut self, objects: Arc<dyn crate::objects::PodObjects>) -> Self {
        self.pod_objects = Some(objects);
        self
    }
    /// Where RuntimeClasses come from (the API server's `ApiRuntimeClasses` in a cluster).
    /// Without one, every pod runs with the runtime's default handler; with one, a pod
    /// naming an unknown RuntimeClass does not start.
    pub fn runtime_classes(
        mut self,
        classes: Arc<dyn crate::runtime_class::RuntimeClasses>,
    ) -> Self {
        self.runtime_classes = Some(classes);
        self
    }
    /// Add a pod source.
    pub fn source(mut self, source: Box<dyn PodSource>) -> Self {
        self.sources.push(source);
        self
    }

    /// The metrics registry the kubelet records into and its server serves on `/metrics`
    /// and `/metrics/probes` (the embedder's own series registered in it are served
    /// alongside). Without one the kubelet makes its own ([`KubeletHandle::metrics`]).
    pub fn metrics(mut self, metrics: crate::metrics::KubeletMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Manage the QoS and pod cgroups through this cgroup manager (a fake in tests, or a
    /// [`crate::cgroups::CgroupFs`] over another root) rather than the cgroupfs driver at
    /// [`KubeletConfig::cgroup_fs_root`].
    pub fn cgroup_manager(mut self, manager: Arc<dyn crate::cgroups::CgroupManager>) -> Self {
        self.cgroup_manager = Some(manager);
        self
    }

    /// Where image GC learns the image filesystem's size and free space (default:
    /// [`crate::image_gc::RuntimeImageFs`], the runtime's `ImageFsInfo` and statfs).
    pub fn image_fs(mut self, image_fs: Arc<dyn crate::image_gc::ImageFsStatsProvider>) -> Self {
        self.image_fs = Some(image_fs);
        self
    }

    /// The eviction thresholds and periods (`evictionHard` and friends) of node-pressure
    /// eviction, which runs once the kubelet has a stats provider
    /// ([`Kubelet::with_stats`]); without this, the reference's defaults.
    pub fn eviction(mut self, config: crate::eviction::EvictionConfig) -> Self {
        self.eviction = Some(config);
        self
    }

    /// Register the node and report its status and Lease through the reporter (the
    /// [`NodeAgent`], started and stopped with the kubelet). Without it the kubelet reports
    /// pods only.
    pub fn node_status(mut self, config: NodeConfig, machine: MachineInfo) -> Self {
        self.node = Some((config, machine));
        self
    }

    /// Report these volumes in the node's `status.volumesInUse` (see
    /// [`NodeAgent::with_volumes_in_use`]); give the same tracker to the volume plugins
    /// of attachable volumes.
    pub fn volumes_in_use(mut self, volumes: crate::node::VolumesInUse) -> Self {
        self.volumes_in_use = Some(volumes);
        self
    }

    /// Check that every seam is there and build the kubelet. The network plugin defaults to
    /// [`crate::RuntimeManagedNetwork`].
    pub fn build(self) -> Result<Kubelet, KubeletError> {
        let config = self.config.ok_or(KubeletError::Missing("configuration"))?;
        let runtime = self.runtime.ok_or(KubeletError::Missing("runtime"))?;
        let reporter = self.reporter.ok_or(KubeletError::Missing("reporter"))?;
        let metrics = self.metrics.unwrap_or_default();
        metrics.set_node_name(&config.node_name);
        // Every runtime call of the kubelet (node agent, workers, relister, probes) is
        // counted and timed (kubelet_runtime_operations_*).
        let runtime: Arc<dyn Runtime> = Arc::new(crate::metrics::InstrumentedRuntime::new(
            runtime,
            metrics.clone(),
        ));
        let node_info = match &self.node {
            Some((config, machine)) => Some(crate::admission::NodeInfo::new(config, machine)?),
            None => None,
        };
        let node_agent = match self.node {
            Some((config, machine)) => {
                let agent = NodeAgent::new(config, machine, runtime.clone(), reporter.clone())?;
                Some(match self.volumes_in_use {
                    Some(volumes) => agent.with_volumes_in_use(volumes),
                    None => agent,
                })
            }
            None => None,
        };
        let pod_cgroups = match (self.cgroup_manager, &config.cgroup_fs_root) {
            _ if !config.cgroups.cgroups_per_qos => None,
            (Some(manager), _) => Some(manager),
            (None, Some(root)) => Some(Arc::new(crate::cgroups::CgroupFs::new(root)?)
                as Arc<dyn crate::cgroups::CgroupManager>),
            (None, None) => None,
        }
        .map(|manager| {
            Arc::new(crate::cgroups::PodCgroups::new(
                manager,
                config.cgroups.clone(),
                &config.spec.cgroup_root,
            ))
        });
        let mounter = self
            .mounter
            .unwrap_or_else(|| Arc::new(crate::volume::HostMounter));
        config.image_gc.validate()?;
        let image_gc = if config.image_gc.enabled() {
            let image_fs = self
                .image_fs
                .unwrap_or_else(|| Arc::new(crate::image_gc::RuntimeImageFs::new(runtime.clone())));
            Some(Arc::new(tokio::sync::Mutex::new(
                crate::image_gc::ImageGcManager::new(
                    config.image_gc.clone(),
                    runtime.clone(),
                    image_fs,
                    reporter.clone(),
                    config.node_name.clone(),
                )?,
            )))
        } else {
            None
        };
        let node_status = node_agent.as_ref().map(NodeAgent::handle);
        Ok(Kubelet {
            config,
            runtime,
            network: self
                .network
                .unwrap_or_else(|| Arc::new(crate::network::RuntimeManagedNetwork)),
            reporter,
            volume_plugins: self
                .volume_plugins
                .into_iter()
                .chain(crate::volume_plugins::builtin_with(mounter.clone()))
                .collect(),
            mounter,
            pod_objects: self.pod_objects,
            runtime_classes: self.runtime_classes,
            sources: self.sources,
            shared: Arc::new(super::kubelet_state::Shared::new(metrics)),
            node_agent,
            pod_cgroups,
            image_gc,
            stats: None,
            eviction: self.eviction.unwrap_or_default(),
            node_eviction: None,
            node_status,
            node_info,
        })
    }
}

/// A cloneable view into a running kubelet.
#[derive(Clone)]
pub struct KubeletHandle {
    pub(super) inner: Arc<super::kubelet_state::Shared>,
    pub(super) node: Option<NodeStatusHandle>,
}

impl KubeletHandle {
    /// The pods on this node, each with the status last computed for it (the `/pods` view).
    pub fn pods(&self) -> Vec<Pod> {
        self.inner.pods()
    }

    /// Ok while the reconciler is alive: the runtime was relisted recently (the reference's
    /// PLEG health check behind `/healthz`).
    pub fn healthz(&self) -> Result<(), String> {
        self.inner.healthz()
    }

    /// Probe run counts by probe type, result, container, pod and namespace (the
    /// `prober_probe_total` metric).
    pub fn probe_counts(&self) -> std::collections::BTreeMap<crate::probes::ProbeCountKey, u64> {
        self.inner.probe_metrics.snapshot()
    }

    /// The kubelet's metrics registry (`/metrics`, `/metrics/probes`).
    pub fn metrics(&self) -> &crate::metrics::KubeletMetrics {
        &self.inner.metrics
    }

    /// The node agent's view (last node status, lease renewal), when the kubelet reports
    /// node status.
    pub fn node_status(&self) -> Option<&NodeStatusHandle> {
        self.node.as_ref()
    }
}
