//! One wiring from [`Settings`] to a running kubelet: the CRI runtime, the runtime-managed
//! network, the log reporter, the static pod sources, the healthz server, the kubelet server
//! (HTTPS on `address:port`) and the read-only port, container log rotation, in cluster mode
//! CSI (drivers registering through `<root-dir>/plugins_registry`, the node's CSINode kept
//! current, the CSI volume plugin), and shutdown on SIGINT/SIGTERM.

use std::net::IpAddr;
use std::sync::Arc;

use kubelet_core::log_reporter::LogReporter;
use kubelet_core::logs::ContainerLogManager;
use kubelet_core::reconciler::spec::SpecSettings;
use kubelet_core::server::authn::Authenticator;
use kubelet_core::server::{
    AlwaysAllow, Auth, Authorizer, Handles, KubeletServer, ReadOnlyServer, ServerConfig,
    TlsOptions, WebhookAuthorizer, WebhookTokenAuthenticator,
};
use kubelet_core::sources::{ManifestUrlSource, StaticDirSource};
use kubelet_core::{
    Kubelet, KubeletConfig, KubeletError, PodSource, Runtime, RuntimeManagedNetwork,
};
use kubelet_cri::{CriError, CriOptions, CriRuntime};
use thiserror::Error;
use tokio::sync::watch;

use crate::cluster::Cluster;
use crate::config::Settings;
use crate::server::{Server, ServerError};

/// Why the daemon could not start or stopped with an error.
#[derive(Debug, Error)]
pub enum WiringError {
    /// The container runtime could not be reached.
    // CriError names the endpoint already; `detail` is its whole cause chain, so that the
    // root cause (e.g. "No such file or directory") comes before the hint.
    #[error(
        "cannot use the container runtime: {detail} (is it running, and is \
         --container-runtime-endpoint / containerRuntimeEndpoint right?)"
    )]
    Runtime {
        /// The endpoint tried.
        endpoint: String,
        /// The error and its causes, as text.
        detail: String,
        /// The underlying error.
        #[source]
        source: CriError,
    },
    /// A pod source could not be set up.
    #[error("pod source {source_name}: {message}")]
    Source {
        /// `file` or `http`.
        source_name: &'static str,
        /// What went wrong.
        message: String,
    },
    /// The API server refused us, or its kubeconfig is unusable.
    #[error("API server: {0}")]
    ApiServer(#[from] kubelet_core::apiserver::ApiClientError),
    /// The kubeconfig's credentials cannot be used by the kubelet's TLS stack.
    #[error("API server: {0}")]
    Credentials(#[from] crate::credentials::CredentialError),
    /// The healthz server failed.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// The kubelet server (10250) or the read-only port failed, or its settings are unusable.
    #[error(transparent)]
    KubeletServer(#[from] kubelet_core::server::ServerError),
    /// The reconciler failed.
    #[error(transparent)]
    Kubelet(#[from] KubeletError),
    /// Container log rotation settings are unusable.
    #[error("container log rotation: {0}")]
    LogRotation(#[from] kubelet_core::logs::RotationError),
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(#[source] std::io::Error),
    /// The CSI plugin registry directory could not be watched.
    #[error("CSI plugin registration: {0}")]
    Csi(#[from] kubelet_csi::CsiError),
}

/// The reconciler's settings derived from the daemon's and the machine's capacity.
pub fn kubelet_config(
    settings: &Settings,
    node_ips: Vec<IpAddr>,
    machine: &crate::machine::MachineInfo,
) -> KubeletConfig {
    let mut config = KubeletConfig::new(settings.node_name.clone());
    // The cgroupfs driver: the kubelet makes the QoS and pod cgroups there (containerd
    // creates the containers' below them) and removes a pod's when the pod goes.
    config.cgroup_fs_root = Some("/sys/fs/cgroup".into());
    config.root_dir = settings.root_dir.clone();
    config.sync_frequency = settings.sync_frequency;
    config.image_gc = settings.image_gc.clone();
    config.node_ips = node_ips.iter().map(ToString::to_string).collect();
    // Field by field on top of the defaults, so that settings added to SpecSettings later
    // keep their defaults here.
    let spec: &mut SpecSettings = &mut config.spec;
    spec.pod_logs_root = settings.pod_logs_dir.to_string_lossy().into_owned();
    spec.cgroup_root = settings.pods_cgroup();
    spec.cluster_dns = settings
        .cluster_dns
        .iter()
        .map(ToString::to_string)
        .collect();
    spec.cluster_domain = settings.cluster_domain.clone();
    spec.resolv_conf = settings.resolv_conf.clone();
    spec.seccomp_default = settings.seccomp_default;
    // Localhost seccomp profiles are files below <root-dir>/seccomp, as the reference.
    spec.seccomp_profile_root = settings
        .root_dir
        .join("seccomp")
        .to_string_lossy()
        .into_owned();
    spec.node_memory_capacity = machine.memory_capacity;
    spec.node_cpu_capacity_milli = crate::machine::cpu_capacity_milli(machine);
    spec.allocatable = node_allocatable(settings, &node_ips, machine);
    // The QoS and pod cgroups below the pods' cgroup; `kubepods` is sized to the machine
    // (no kube/system reserved amounts in this daemon: allocatable is the capacity there).
    config.cgroups.cgroups_per_qos = settings.cgroups_per_qos;
    config.cgroups.enforce_node_allocatable_pods = settings.enforce_node_allocatable_pods;
    config.cgroups.pod_pids_limit = settings.pod_pids_limit;
    let cpu_milli = crate::machine::cpu_capacity_milli(machine);
    config.cgroups.node_capacity = (cpu_milli > 0 && machine.memory_capacity > 0).then_some(
        kubelet_core::cgroups::NodeCgroupResources {
            cpu_milli,
            memory_bytes: machine.memory_capacity,
        },
    );
    config
}

/// The node's allocatable cpu, memory and ephemeral storage, as its status reports them.
fn node_allocatable(
    settings: &Settings,
    node_ips: &[IpAddr],
    machine: &crate::machine::MachineInfo,
) -> Option<kubelet_core::downward_api::NodeAllocatable> {
    let node = crate::cluster::node_config(settings, node_ips);
    let resources = kubelet_core::node::NodeResources::compute(&node, machine).ok()?;
    let get = |name: &str, milli: bool| {
        resources.allocatable.get(name).and_then(|q| {
            if milli {
                kubelet_core::quantity::parse_milli(q).ok()
            } else {
                kubelet_core::quantity::parse_units(q).ok()
            }
        })
    };
    Some(kubelet_core::downward_api::NodeAllocatable {
        cpu_milli: get("cpu", true)?,
        memory_bytes: get("memory", false)?,
        ephemeral_storage_bytes: get("ephemeral-storage", false).unwrap_or(0),
    })
}

/// The pod sources the settings ask for: the static directory and the manifest URL.
pub fn sources(settings: &Settings) -> Result<Vec<Box<dyn PodSource>>, WiringError> {
    let mut sources: Vec<Box<dyn PodSource>> = Vec::new();
    if let Some(dir) = &settings.static_pod_path {
        tracing::info!(path = %dir.display(), "watching static pod manifests");
        sources.push(Box::new(StaticDirSource::new(
            dir.clone(),
            settings.node_name.clone(),
            settings.file_check_frequency,
        )));
    }
    if let Some(url) = &settings.static_pod_url {
        tracing::info!(%url, "fetching static pod manifests");
        let headers = settings
            .static_pod_url_header
            .iter()
            .flat_map(|(name, values)| values.iter().map(move |value| (name, value)));
        let source = ManifestUrlSource::new(
            url,
            settings.node_name.clone(),
            settings.http_check_frequency,
        )
        .and_then(|source| source.with_headers(headers))
        .map_err(|e| WiringError::Source {
            source_name: "http",
            message: e.to_string(),
        })?;
        sources.push(Box::new(source));
    }
    Ok(sources)
}

/// Connect to the CRI runtime at the settings' endpoint.
pub async fn connect_runtime(settings: &Settings) -> Result<CriRuntime, WiringError> {
    let options = CriOptions {
        request_timeout: settings.runtime_request_timeout,
        ..CriOptions::default()
    };
    CriRuntime::connect(&settings.container_runtime_endpoint, options)
        .await
        .map_err(|source| WiringError::Runtime {
            endpoint: settings.container_runtime_endpoint.clone(),
            detail: crate::error_chain(&source),
            source,
        })
}

/// A built kubelet and the tasks that run beside it (stopped when the kubelet stops).
pub struct Assembled {
    /// The kubelet.
    pub kubelet: Kubelet,
    /// Background tasks of the backends (the API-server reporter's resync).
    pub background: Vec<tokio::task::JoinHandle<()>>,
    /// The runtime the kubelet drives (the kubelet server reads it too).
    pub runtime: Arc<dyn Runtime>,
    /// The node's API-server client, when there is one (the server's webhooks use it).
    pub client: Option<kube::Client>,
    /// The node's IPs (the self-signed serving certificate names them).
    pub node_ips: Vec<IpAddr>,
    /// The volume plugins that measure their own volumes (CSI), for the stats provider.
    pub volume_stats: Vec<Arc<dyn kubelet_core::stats::VolumeStatsSource>>,
}

/// The kubelet server's authentication and authorization from the settings.
pub fn server_auth(
    settings: &Settings,
    client: Option<&kube::Client>,
) -> Result<Auth, WiringError> {
    let a = &settings.server_auth;
    let mut authenticator = Authenticator::new().anonymous(a.anonymous);
    if let Some(ca) = &a.client_ca_file {
        let roots = kubelet_core::server::tls::read_ca_bundle(ca)?;
        authenticator = authenticator.client_ca(roots)?;
    }
    // Settings::resolve turns the webhooks off (or refuses them) without an API server.
    if a.token_webhook
        && let Some(client) = client
    {
        authenticator = authenticator.token(Arc::new(WebhookTokenAuthenticator::new(
            client.clone(),
            a.token_webhook_cache_ttl,
        )));
    }
    let authorizer: Arc<dyn Authorizer> = match (a.mode, client) {
        (crate::config::AuthorizationMode::Webhook, Some(client)) => {
            Arc::new(WebhookAuthorizer::new(
                client.clone(),
                a.cache_authorized_ttl,
                a.cache_unauthorized_ttl,
            ))
        }
        _ => Arc::new(AlwaysAllow),
    };
    Ok(Auth {
        authenticator,
        authorizer,
    })
}

/// The kubelet server's listen address, TLS settings and directories from the settings.
pub fn server_config(settings: &Settings, node_ips: &[IpAddr]) -> ServerConfig {
    let mut config = ServerConfig::new(
        settings.node_name.clone(),
        std::net::SocketAddr::new(settings.address, settings.port),
    );
    config.tls = TlsOptions {
        cert_file: settings.tls_cert_file.clone(),
        key_file: settings.tls_private_key_file.clone(),
        cert_dir: settings.cert_dir.clone(),
        hostname: settings.node_name.clone(),
        node_ips: node_ips.to_vec(),
        min_version: settings.tls_min_version.clone(),
        cipher_suites: settings.tls_cipher_suites.clone(),
    };
    config.pod_logs_root = settings.pod_logs_dir.clone();
    config
}

/// The stats provider of the daemon: the runtime's pods measured through the cgroupfs
/// driver's cgroups under the pods' top cgroup, `/proc`, and the kubelet's directories.
pub fn stats_provider(
    settings: &Settings,
    runtime: Arc<dyn Runtime>,
) -> kubelet_core::stats::RuntimeStatsProvider {
    let mut config = kubelet_core::stats::StatsConfig::new(settings.node_name.clone());
    config.pods_cgroup = settings.pods_cgroup();
    config.root_dir = settings.root_dir.clone();
    config.pod_logs_root = settings.pod_logs_dir.clone();
    kubelet_core::stats::RuntimeStatsProvider::new(runtime, config)
}

/// Assemble the kubelet from the settings: connects to the runtime, and with `--kubeconfig`
/// to the API server.
pub async fn build(settings: &Settings) -> Result<Assembled, WiringError> {
    for field in &settings.inert_fields {
        tracing::warn!(
            field,
            "config field is accepted but has no effect yet in this kubelet"
        );
    }
    let node_ips = if settings.node_ips.is_empty() {
        let detected = crate::node_ip::detect();
        match &detected {
            Some(ip) => tracing::info!(%ip, "node IP detected from the default route"),
            None => tracing::warn!("no node IP found; pods' hostIP stays empty (see --node-ip)"),
        }
        detected.into_iter().collect()
    } else {
        settings.node_ips.clone()
    };
    // What the kubelet, its API client and its runtime calls record (`/metrics`).
    let metrics = kubelet_core::metrics::KubeletMetrics::new();
    // The API server first: refused credentials are a configuration error to report before
    // anything else is set up.
    let cluster = match &settings.kubeconfig {
        Some(kubeconfig) => {
            crate::credentials::check_kubeconfig(kubeconfig).await?;
            Some(Cluster::connect(settings, kubeconfig, &node_ips, &metrics).await?)
        }
        None => None,
    };
    let runtime: Arc<dyn Runtime> = Arc::new(connect_runtime(settings).await?);
    // Read once: the reconciler's resource defaults and the node status both use it.
    let machine = crate::machine::read(&settings.root_dir);
    let mut eviction = settings.eviction.clone();
    eviction.dedicated_image_fs = dedicated_image_fs(runtime.as_ref(), &settings.root_dir).await;
    let mut builder = Kubelet::builder(kubelet_config(settings, node_ips.clone(), &machine))
        .eviction(eviction)
        .runtime(runtime)
        .network(Arc::new(RuntimeManagedNetwork))
        .metrics(metrics);
    for source in sources(settings)? {
        builder = builder.source(source);
    }
    let mut background = Vec::new();
    let mut client = None;
    let mut volume_stats: Vec<Arc<dyn kubelet_core::stats::VolumeStatsSource>> = Vec::new();
    match cluster {
        Some(cluster) => {
            client = Some(cluster.client.clone());
            background.push(cluster.spawn_background());
            background.push(cluster.service_watch);
            // One set of attachable volumes in use: the CSI plugin marks, the node agent
            // reports them in status.volumesInUse.
            let volumes_in_use = kubelet_core::node::VolumesInUse::new();
            let (csi_plugin, csi_tasks) = csi(settings, &cluster.client, &volumes_in_use)?;
            background.extend(csi_tasks);
            let csi_plugin = Arc::new(csi_plugin);
            volume_stats.push(csi_plugin.clone());
            builder = builder
                .volumes_in_use(volumes_in_use)
                .volume_plugin(csi_plugin)
                .volume_plugin(Arc::new(cluster.volumes))
                .pod_objects(cluster.objects)
                .runtime_classes(cluster.runtime_classes)
                .reporter(Arc::new(cluster.reporter))
                .source(Box::new(cluster.source))
                .node_status(cluster.node, machine);
        }
        None => builder = builder.reporter(Arc::new(LogReporter::new())),
    }
    let kubelet = builder.build()?;
    Ok(Assembled {
        // As the kubelet calls it (counted): the server, stats and log rotation use it too.
        runtime: kubelet.runtime(),
        kubelet,
        background,
        client,
        node_ips,
        volume_stats,
    })
}

/// Whether the runtime keeps its images on a filesystem of their own, not the one of the
/// kubelet's root directory (the eviction manager then tells imagefs from nodefs). Unknown
/// (the runtime does not say where): not dedicated, as the reference assumes.
async fn dedicated_image_fs(runtime: &dyn Runtime, root_dir: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(filesystems) = runtime.image_fs_info().await else {
        return false;
    };
    let Some(mountpoint) = filesystems.into_iter().map(|fs| fs.mountpoint).next() else {
        return false;
    };
    match (std::fs::metadata(&mountpoint), std::fs::metadata(root_dir)) {
        (Ok(images), Ok(root)) => images.dev() != root.dev(),
        _ => false,
    }
}

/// The CSI volume plugin and the tasks behind it.
type CsiParts = (
    kubelet_csi::CsiVolumePlugin,
    Vec<tokio::task::JoinHandle<()>>,
);

/// CSI in cluster mode, as the reference's plugin manager and CSI plugin: drivers register
/// through `<root-dir>/plugins_registry`, the node's CSINode (and its node ID annotation
/// and topology labels) follow them, and the CSI volume plugin calls them. Returns the
/// plugin and the background tasks (aborting them stops the watcher and the updater).
fn csi(
    settings: &Settings,
    client: &kube::Client,
    volumes_in_use: &kubelet_core::node::VolumesInUse,
) -> Result<CsiParts, WiringError> {
    let registry = kubelet_csi::DriverRegistry::new();
    let options = kubelet_csi::PluginWatcherOptions::for_root_dir(&settings.root_dir);
    tracing::info!(dir = %options.dir.display(), "watching for CSI driver registrations");
    let watcher = kubelet_csi::PluginWatcher::new(options, registry.clone()).spawn()?;
    // The watcher stops when its handle drops: a task owns it until the task is aborted.
    let watching = tokio::spawn(async move {
        let _watcher = watcher;
        std::future::pending::<()>().await
    });
    let updater = kubelet_csi::CsiNodeUpdater::new(client.clone(), settings.node_name.clone())
        .spawn(registry.clone());
    let plugin = kubelet_csi::CsiVolumePlugin::new(
        registry,
        Arc::new(kubelet_csi::ApiCsiObjects::new(client.clone())),
        kubelet_csi::CsiVolumeOptions::new(settings.root_dir.clone(), settings.node_name.clone())
            .with_volumes_in_use(volumes_in_use.clone()),
    );
    Ok((plugin, vec![watching, updater]))
}

/// The container log manager over the CRI runtime, rotating at `containerLogMaxSize` and
/// keeping `containerLogMaxFiles` files a container.
pub fn log_manager(
    settings: &Settings,
    runtime: Arc<dyn Runtime>,
) -> Result<ContainerLogManager, WiringError> {
    Ok(ContainerLogManager::new(
        runtime,
        settings.container_log_max_size,
        settings.container_log_max_files,
    )?)
}

/// Aborts the tasks when the daemon's run ends, however it ends.
struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// Runs a kubelet server; a failure is logged (the pods keep running without it).
fn spawn_server(
    what: &'static str,
    serving: impl std::future::Future<Output = Result<(), kubelet_core::server::ServerError>>
    + Send
    + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if let Err(e) = serving.await {
            tracing::error!(server = what, error = %e, "server stopped with an error");
        }
    })
}

/// Resolves once the shutdown flag is raised.
async fn shutdown_signal(mut flag: watch::Receiver<bool>) {
    // An error means the sender is gone: treat it as shutdown too.
    let _ = flag.wait_for(|stop| *stop).await;
}

/// Raise the flag on the first SIGINT or SIGTERM.
fn watch_signals(flag: Arc<watch::Sender<bool>>) -> Result<(), WiringError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).map_err(WiringError::Signals)?;
    let mut terminate = signal(SignalKind::terminate()).map_err(WiringError::Signals)?;
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        };
        // The flag first: nothing may stand between a signal and the shutdown.
        flag.send_replace(true);
        tracing::info!(signal = name, "shutting down; pods keep running");
    });
    Ok(())
}

/// Run the daemon: build the kubelet, serve healthz, run until SIGINT/SIGTERM.
pub async fn run(settings: Settings) -> Result<(), WiringError> {
    let (flag, receiver) = watch::channel(false);
    let flag = Arc::new(flag);
    watch_signals(flag.clone())?;

    let Assembled {
        mut kubelet,
        mut background,
        runtime,
        client,
        node_ips,
        volume_stats,
    } = build(&settings).await?;
    // Log rotation runs beside the kubelet (the runtime is always CRI here, whose
    // ReopenContainerLog it needs), stopping at shutdown between two passes.
    let rotation = Arc::new(log_manager(&settings, runtime.clone())?);
    background.push(tokio::spawn(
        rotation.run(shutdown_signal(receiver.clone())),
    ));
    // The kubelet server and the read-only port: bound before the kubelet runs, so that a
    // taken port or unusable TLS files stop the daemon at start with the reason.
    // Stats for /stats/summary and /metrics/resource: housekeeping beside the kubelet.
    let mut stats = stats_provider(&settings, runtime.clone());
    for source in volume_stats {
        stats = stats.with_volume_source(source);
    }
    let stats = Arc::new(stats);
    // The PVC-backed volumes' kubelet_volume_stats_* on /metrics, from the newest sample.
    kubelet.handle().metrics().register_collector(Box::new({
        let stats = stats.clone();
        kubelet_core::stats::VolumeStatsCollector::new(move || stats.cached())
    }));
    background.push(tokio::spawn(
        stats.clone().run(shutdown_signal(receiver.clone())),
    ));
    // Node-pressure eviction reads the same samples.
    kubelet = kubelet.with_stats(stats.clone());
    let handles = Handles {
        kubelet: kubelet.handle(),
        runtime,
    };
    let mut config = server_config(&settings, &node_ips);
    config.stats = Some(stats.clone());
    // The client CA's subjects go out as hints in the certificate request, as Go's server
    // sends them: Go clients only offer a certificate that one of them issued.
    let hints = match &settings.server_auth.client_ca_file {
        Some(ca) => Some(kubelet_core::server::tls::read_ca_bundle(ca)?),
        None => None,
    };
    let tls = kubelet_core::server::tls::server_config(&config.tls, hints.as_ref())?;
    let secure = KubeletServer::bind_with_tls(
        config,
        tls,
        server_auth(&settings, client.as_ref())?,
        handles.clone(),
    )
    .await?;
    background.push(spawn_server(
        "kubelet server",
        secure.serve(shutdown_signal(receiver.clone())),
    ));
    if settings.read_only_port != 0 {
        let addr = std::net::SocketAddr::new(settings.address, settings.read_only_port);
        let read_only = ReadOnlyServer::bind(addr, handles)
            .await?
            .with_stats(stats.clone());
        background.push(spawn_server(
            "read-only server",
            read_only.serve(shutdown_signal(receiver.clone())),
        ));
    }
    let _background = AbortOnDrop(background);
    let server = match settings.healthz {
        Some(addr) => Some(Server::bind(addr, kubelet.handle()).await?),
        None => None,
    };
    tracing::info!(
        node = %settings.node_name,
        endpoint = %settings.container_runtime_endpoint,
        "kubelet starting"
    );

    let serving = server.is_some();
    let addr = server.as_ref().map(Server::local_addr);
    let server_task = server.map(|s| tokio::spawn(s.serve(shutdown_signal(receiver.clone()))));
    let server_done = async move {
        match server_task {
            Some(task) => task.await.unwrap_or_else(|join| {
                Err(ServerError::Serve {
                    addr: addr.unwrap_or_else(|| ([127, 0, 0, 1], 0).into()),
                    source: std::io::Error::other(join.to_string()),
                })
            }),
            None => std::future::pending().await,
        }
    };
    tokio::pin!(server_done);
    let kubelet_run = kubelet.run(shutdown_signal(receiver));
    tokio::pin!(kubelet_run);

    tokio::select! {
        result = &mut kubelet_run => {
            flag.send_replace(true);
            if serving && let Err(e) = server_done.await {
                tracing::error!(error = %e, "healthz server stopped with an error");
            }
            result?;
        }
        result = &mut server_done => {
            // The server ends before the kubelet only on failure or at shutdown: either way
            // the kubelet stops too.
            flag.send_replace(true);
            let kubelet_result = kubelet_run.await;
            result?;
            kubelet_result?;
        }
    }
    tracing::info!("kubelet stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::flags::Flags;

    fn settings(args: &[&str]) -> Settings {
        let flags =
            Flags::try_parse_from(std::iter::once("kubelet").chain(args.iter().copied())).unwrap();
        Settings::resolve(&flags, None, || Ok("host-1".to_string())).unwrap()
    }

    #[test]
    fn kubelet_config_carries_the_settings() {
        let s = settings(&[
            "--root-dir=/data/kubelet",
            "--sync-frequency=30s",
            "--cgroup-root=/edge",
            "--cluster-dns=10.96.0.10",
            "--cluster-domain=cluster.local",
        ]);
        let machine = crate::machine::read(&s.root_dir);
        let config = kubelet_config(&s, vec!["10.0.0.5".parse().unwrap()], &machine);
        assert_eq!(config.node_name, "host-1");
        assert_eq!(config.root_dir, std::path::PathBuf::from("/data/kubelet"));
        assert_eq!(config.sync_frequency, std::time::Duration::from_secs(30));
        assert_eq!(config.node_ips, ["10.0.0.5"]);
        assert_eq!(config.spec.pod_logs_root, "/var/log/pods");
        assert_eq!(config.spec.cgroup_root, "/edge/kubepods");
        assert_eq!(config.spec.cluster_dns, ["10.96.0.10"]);
        assert_eq!(config.spec.cluster_domain, "cluster.local");
        // This machine has memory and CPUs; the values come from /proc and /sys.
        assert!(config.spec.node_memory_capacity > 0);
        assert!(config.spec.node_cpu_capacity_milli >= 1000);
        // The downward API's default limits: allocatable, i.e. capacity less the default
        // hard eviction threshold of memory.available (100Mi).
        let allocatable = config.spec.allocatable.expect("allocatable");
        assert_eq!(
            allocatable.memory_bytes,
            config.spec.node_memory_capacity - 100 * 1024 * 1024
        );
        assert_eq!(allocatable.cpu_milli, config.spec.node_cpu_capacity_milli);
        // Pod cgroups: the reference's defaults, `kubepods` sized to the machine.
        assert!(config.cgroups.cgroups_per_qos);
        assert!(config.cgroups.enforce_node_allocatable_pods);
        assert_eq!(config.cgroups.pod_pids_limit, -1);
        let capacity = config.cgroups.node_capacity.expect("node capacity");
        assert_eq!(capacity.memory_bytes, config.spec.node_memory_capacity);
        assert_eq!(capacity.cpu_milli, config.spec.node_cpu_capacity_milli);
        let s = settings(&["--cgroups-per-qos=false", "--enforce-node-allocatable=none"]);
        let config = kubelet_config(&s, Vec::new(), &machine);
        assert!(!config.cgroups.cgroups_per_qos);
        let s = settings(&["--pod-max-pids=256"]);
        assert_eq!(
            kubelet_config(&s, Vec::new(), &machine)
                .cgroups
                .pod_pids_limit,
            256
        );
    }

    #[test]
    fn dns_and_seccomp_settings_reach_the_spec_settings() {
        let machine = crate::machine::read(std::path::Path::new("/var/lib/kubelet"));
        let ip = vec!["10.0.0.5".parse().unwrap()];
        let defaults = kubelet_config(
            &settings(&["--root-dir=/data/kubelet"]),
            ip.clone(),
            &machine,
        );
        assert_eq!(defaults.spec.resolv_conf, "/etc/resolv.conf");
        assert!(!defaults.spec.seccomp_default);
        assert_eq!(defaults.spec.seccomp_profile_root, "/data/kubelet/seccomp");
        let s = settings(&["--resolv-conf=", "--seccomp-default"]);
        let config = kubelet_config(&s, ip, &machine);
        assert_eq!(config.spec.resolv_conf, "");
        assert!(config.spec.seccomp_default);
    }

    #[test]
    fn sources_follow_the_settings() {
        assert!(sources(&settings(&[])).unwrap().is_empty());
        let both = sources(&settings(&[
            "--pod-manifest-path=/etc/kubernetes/manifests",
            "--manifest-url=http://127.0.0.1:1/pods",
            "--manifest-url-header=Authorization:Bearer x",
        ]))
        .unwrap();
        let names: Vec<&str> = both.iter().map(|s| s.name()).collect();
        assert_eq!(names, ["file", "http"]);

        let err = sources(&settings(&[
            "--manifest-url=http://127.0.0.1:1/pods",
            "--manifest-url-header=Bad Name:x",
        ]))
        .err()
        .unwrap();
        assert!(err.to_string().starts_with("pod source http: "), "{err}");
    }
}
