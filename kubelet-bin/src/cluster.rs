//! The API-server side of the wiring (`--kubeconfig`): the client acting as
//! `system:node:<name>`, the pod source that watches the node's pods, the reporter for the
//! Node, its Lease, pod status, mirror pods and events, and the node agent's settings.

use std::net::IpAddr;

use std::sync::Arc;

use kubelet_core::apiserver::{
    ApiClientError, ApiObjectVolumePlugin, ApiRuntimeClasses, ApiServerReporter, ApiServerSource,
    ClientSource, DEFAULT_SYNC_PERIOD, NodeClient, PodObjectFetcher, ReporterConfig, ServiceCache,
};
use kubelet_core::node::NodeConfig;
use tokio::task::JoinHandle;

use crate::config::Settings;

/// The API-server backed seams, ready to be handed to the kubelet builder.
pub struct Cluster {
    /// The node's pods by list+watch.
    pub source: ApiServerSource,
    /// Node, Lease, pod status, mirror pods, events.
    pub reporter: ApiServerReporter,
    /// How the node registers and reports its status.
    pub node: NodeConfig,
    /// configMap, secret, downwardAPI and projected volumes (the service account token
    /// volume admission adds to every pod), from the objects the node may read.
    pub volumes: ApiObjectVolumePlugin,
    /// ConfigMaps, Secrets and Services for the containers' environments.
    pub objects: Arc<PodObjectFetcher>,
    /// RuntimeClasses, for the handler a pod's `runtimeClassName` names.
    pub runtime_classes: Arc<ApiRuntimeClasses>,
    /// The watch of Services behind `objects`; abort at shutdown.
    pub service_watch: JoinHandle<()>,
    /// The node's client, for the kubelet server's TokenReviews and SubjectAccessReviews.
    pub client: kube::Client,
}

impl Cluster {
    /// Build the client from the kubeconfig (its requests counted into `metrics`) and check
    /// that the API server accepts us as this node. An unreachable server is only a warning: the kubelet must still run its static
    /// pods (on a control-plane node they are the API server), and the source and reporter
    /// retry until it answers. Refused credentials are an error: they do not heal by waiting.
    pub async fn connect(
        settings: &Settings,
        kubeconfig: &std::path::Path,
        node_ips: &[IpAddr],
        metrics: &kubelet_core::metrics::KubeletMetrics,
    ) -> Result<Self, ApiClientError> {
        let client = NodeClient::connect(
            &ClientSource::Kubeconfig(kubeconfig.to_path_buf()),
            settings.node_name.clone(),
        )
        .await?;
        // Every request counted (`rest_client_requests_total`).
        let client = kubelet_core::metrics::rest_client::instrument_node_client(&client, metrics);
        match client.check_access().await {
            Ok(()) => {
                tracing::info!(url = client.url(), node = %settings.node_name, "API server accepts this node")
            }
            Err(err @ ApiClientError::Unreachable { .. }) => {
                tracing::warn!(error = %err, "API server not reachable yet; running static pods and retrying");
            }
            Err(err) => return Err(err),
        }
        let lease_duration_seconds =
            i32::try_from(settings.node_lease_duration_seconds).unwrap_or(i32::MAX);
        let reporter = ApiServerReporter::with_config(
            client.clone(),
            ReporterConfig {
                lease_duration_seconds,
                ..ReporterConfig::default()
            },
        );
        let (services, service_watch) = ServiceCache::start(&client);
        let fetcher = Arc::new(PodObjectFetcher::new(client.clone()).with_services(services));
        Ok(Self {
            client: client.client().clone(),
            // A fetcher of its own with a short TTL: ConfigMap and Secret changes reach
            // the volumes within the sync period plus 10 s.
            volumes: ApiObjectVolumePlugin::for_client(client.clone()),
            objects: fetcher,
            runtime_classes: Arc::new(ApiRuntimeClasses::new(client.clone())),
            service_watch,
            source: ApiServerSource::new(client),
            reporter,
            node: node_config(settings, node_ips),
        })
    }

    /// Start the reporter's own loop (failed pod statuses sent again, deleted mirror pods
    /// recreated); abort the handle at shutdown.
    pub fn spawn_background(&self) -> JoinHandle<()> {
        self.reporter.spawn_sync(DEFAULT_SYNC_PERIOD)
    }
}

/// The node agent's settings from the daemon's.
pub fn node_config(settings: &Settings, node_ips: &[IpAddr]) -> NodeConfig {
    let mut node = NodeConfig::new(settings.node_name.clone());
    node.labels = settings.node_labels.clone();
    node.taints = settings.register_with_taints.clone();
    node.register_node = settings.register_node;
    node.node_ips = node_ips.to_vec();
    node.max_pods = i64::from(settings.max_pods);
    node.node_status_update_frequency = settings.node_status_update_frequency;
    node.node_status_report_frequency = settings.node_status_report_frequency;
    node.node_lease_duration_seconds =
        i32::try_from(settings.node_lease_duration_seconds).unwrap_or(i32::MAX);
    node.kubelet_port = i32::from(settings.port);
    // The hard thresholds the eviction manager keeps are held back from allocatable.
    node.eviction_hard = settings.eviction.thresholds.clone();
    node
}
