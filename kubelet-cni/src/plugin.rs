//! [`CniNetworkPlugin`]: kubelet-core's `NetworkPlugin` over CNI, for runtimes that leave pod
//! networking to the kubelet.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use async_trait::async_trait;
use kubelet_core::runtime::{NamespaceMode, Protocol};
use kubelet_core::{NetworkContext, NetworkError, NetworkPlugin, PodNetworkStatus};
use serde_json::json;

use crate::capabilities::{DnsConfig, IpRange, PortMapping, RuntimeConfig};
use crate::cni::{Attachment, Cni, DEFAULT_TIMEOUT, ValidAttachment};
use crate::config::{self, NetworkConfigList};
use crate::error::CniError;
use crate::netns::{self, DEFAULT_NETNS_DIR, NetNs};
use crate::result::CniResult;
use crate::watch::DirWatcher;

/// Name of the loopback network run before the pod network, as the reference kubelet did.
pub const LOOPBACK_NETWORK: &str = "cni-loopback";
/// Prefix of the namespaces this plugin creates.
pub const NETNS_PREFIX: &str = "kcni-";

/// Settings of a [`CniNetworkPlugin`]; defaults are the reference kubelet's.
#[derive(Debug, Clone)]
pub struct CniPluginConfig {
    /// Directory with the network configuration (`--cni-conf-dir`, `/etc/cni/net.d`).
    pub conf_dir: PathBuf,
    /// Directories with plugin binaries (`--cni-bin-dir`, `/opt/cni/bin`).
    pub bin_dirs: Vec<PathBuf>,
    /// Result cache directory (`--cni-cache-dir`, `/var/lib/cni/cache`).
    pub cache_dir: PathBuf,
    /// Where namespaces are created for sandboxes that have none (`/var/run/netns`).
    pub netns_dir: PathBuf,
    /// The pod's interface name (`eth0`).
    pub ifname: String,
    /// Per-plugin-call timeout.
    pub timeout: Duration,
    /// Bring `lo` up in the pod with the `loopback` plugin, if installed.
    pub loopback: bool,
    /// `dns` capability for every pod (cluster DNS).
    pub dns: Option<DnsConfig>,
    /// `ipRanges` capability for every pod (e.g. the node's pod CIDR).
    pub ip_ranges: Vec<Vec<IpRange>>,
}

impl Default for CniPluginConfig {
    fn default() -> Self {
        Self {
            conf_dir: PathBuf::from("/etc/cni/net.d"),
            bin_dirs: vec![PathBuf::from("/opt/cni/bin")],
            cache_dir: PathBuf::from("/var/lib/cni/cache"),
            netns_dir: PathBuf::from(DEFAULT_NETNS_DIR),
            ifname: "eth0".into(),
            timeout: DEFAULT_TIMEOUT,
            loopback: true,
            dns: None,
            ip_ranges: Vec::new(),
        }
    }
}

/// The CNI network plugin: loads the first valid network from the configuration directory
/// (reloading on change with [`CniNetworkPlugin::watch`]), attaches pod sandboxes to it,
/// creating a network namespace when the runtime did not, and detaches them idempotently.
#[derive(Debug)]
pub struct CniNetworkPlugin {
    cni: Cni,
    config: CniPluginConfig,
    network: RwLock<Result<Arc<NetworkConfigList>, String>>,
    loopback: NetworkConfigList,
}

impl CniNetworkPlugin {
    /// A plugin with `config`; loads the network configuration once (a missing or invalid
    /// one leaves the plugin not ready, see [`NetworkPlugin::ready`]).
    pub fn new(config: CniPluginConfig) -> Result<Self, CniError> {
        let cni = Cni::new(config.bin_dirs.clone(), &config.cache_dir).with_timeout(config.timeout);
        let loopback = NetworkConfigList::from_value(
            &json!({"cniVersion": "0.3.1", "name": LOOPBACK_NETWORK, "plugins": [{"type": "loopback"}]}),
            LOOPBACK_NETWORK,
        )?;
        crate::cni::validate_ifname(&config.ifname)?;
        let plugin = Self {
            cni,
            config,
            network: RwLock::new(Err("not loaded yet".into())),
            loopback,
        };
        if let Err(e) = plugin.reload() {
            tracing::warn!(error = %e, "no CNI network yet");
        }
        Ok(plugin)
    }

    /// The CNI library this plugin uses.
    pub fn cni(&self) -> &Cni {
        &self.cni
    }

    /// The settings.
    pub fn config(&self) -> &CniPluginConfig {
        &self.config
    }

    /// Re-read the configuration directory.
    pub fn reload(&self) -> Result<Arc<NetworkConfigList>, CniError> {
        let loaded = config::load_dir(&self.config.conf_dir).map(Arc::new);
        let mut slot = self.network.write().unwrap_or_else(|p| p.into_inner());
        match &loaded {
            Ok(net) => {
                if slot
                    .as_ref()
                    .map(|n| n.as_ref() != net.as_ref())
                    .unwrap_or(true)
                {
                    tracing::info!(network = %net.name, file = %net.origin(), "using CNI network");
                }
                *slot = Ok(net.clone());
            }
            Err(e) => *slot = Err(e.to_string()),
        }
        loaded
    }

    /// The network in use, if a valid one is configured.
    pub fn network(&self) -> Option<Arc<NetworkConfigList>> {
        self.network
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .ok()
            .cloned()
    }

    fn current(&self) -> Result<Arc<NetworkConfigList>, NetworkError> {
        self.network
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .map_err(NetworkError::NotReady)
    }

    /// Reload the configuration whenever the directory changes, until the plugin is dropped
    /// or the directory goes away. Must be called within a tokio runtime.
    pub fn watch(self: &Arc<Self>) -> Result<tokio::task::JoinHandle<()>, CniError> {
        let mut watcher = DirWatcher::new(&self.config.conf_dir)?;
        // The directory may have been created just now, or changed before the watch began.
        let _ = self.reload();
        let weak: Weak<Self> = Arc::downgrade(self);
        Ok(tokio::spawn(async move {
            loop {
                match watcher.changed().await {
                    Ok(_) => {
                        let Some(plugin) = weak.upgrade() else { return };
                        if let Err(e) = plugin.reload() {
                            tracing::warn!(error = %e, "CNI configuration changed; no valid network");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "stopped watching the CNI configuration directory");
                        if let Some(plugin) = weak.upgrade() {
                            let _ = plugin.reload();
                        }
                        return;
                    }
                }
            }
        }))
    }

    /// The namespace path this plugin uses for a sandbox the runtime made none for.
    pub fn netns_path(&self, sandbox_id: &str) -> PathBuf {
        self.config
            .netns_dir
            .join(format!("{NETNS_PREFIX}{sandbox_id}"))
    }

    fn has_loopback(&self) -> bool {
        self.config.loopback && self.cni.exec().find("loopback").is_ok()
    }

    fn attachment(&self, ctx: &NetworkContext, netns: &str, ifname: &str) -> Attachment {
        let args = vec![
            ("IgnoreUnknown".to_string(), "1".to_string()),
            ("K8S_POD_NAMESPACE".to_string(), ctx.namespace.clone()),
            ("K8S_POD_NAME".to_string(), ctx.name.clone()),
            (
                "K8S_POD_INFRA_CONTAINER_ID".to_string(),
                ctx.sandbox_id.clone(),
            ),
            ("K8S_POD_UID".to_string(), ctx.uid.clone()),
        ];
        let port_mappings = ctx
            .port_mappings
            .iter()
            .filter(|p| p.host_port > 0)
            .filter_map(|p| {
                let host_port = u16::try_from(p.host_port).ok()?;
                let container_port = u16::try_from(p.container_port).ok()?;
                Some(PortMapping {
                    host_port,
                    container_port,
                    protocol: match p.protocol {
                        Protocol::Tcp => "tcp",
                        Protocol::Udp => "udp",
                        Protocol::Sctp => "sctp",
                    }
                    .to_string(),
                    host_ip: p.host_ip.clone(),
                })
            })
            .collect();
        Attachment {
            container_id: ctx.sandbox_id.clone(),
            netns: netns.to_string(),
            ifname: ifname.to_string(),
            args,
            runtime_config: RuntimeConfig {
                port_mappings,
                bandwidth: match crate::capabilities::bandwidth_from_annotations(&ctx.annotations) {
                    Ok(b) => b,
                    Err(err) => {
                        tracing::warn!(pod = %ctx.name, namespace = %ctx.namespace, error = %err, "bandwidth annotation ignored");
                        None
                    }
                },
                dns: self.config.dns.clone(),
                ip_ranges: self.config.ip_ranges.clone(),
                ..Default::default()
            },
        }
    }

    /// The netns path a DEL should get: the first of the candidates that still exists, or
    /// empty (the spec lets plugins clean up host state without the namespace).
    fn live_netns(candidates: &[&str]) -> String {
        candidates
            .iter()
            .find(|p| !p.is_empty() && netns::is_netns(Path::new(p)))
            .map(|p| p.to_string())
            .unwrap_or_default()
    }

    async fn remove_managed_netns(&self, sandbox_id: &str) -> Result<(), CniError> {
        let path = self.netns_path(sandbox_id);
        tokio::task::spawn_blocking(move || NetNs::remove(&path))
            .await
            .map_err(|e| CniError::Netns {
                path: PathBuf::from(sandbox_id),
                message: e.to_string(),
            })?
    }

    /// Verify a sandbox's attachment with CHECK.
    pub async fn check(&self, ctx: &NetworkContext) -> Result<(), NetworkError> {
        let net = self.current()?;
        let netns = match &ctx.netns_path {
            Some(p) if !p.is_empty() => p.clone(),
            _ => self.netns_path(&ctx.sandbox_id).display().to_string(),
        };
        let att = self.attachment(ctx, &netns, &self.config.ifname);
        Ok(self.cni.check(&net, &att).await?)
    }

    /// Garbage-collect: detach every cached attachment whose sandbox is not in
    /// `live_sandboxes`, then run the plugins' GC (1.1 networks).
    pub async fn gc(&self, live_sandboxes: &[String]) -> Result<(), NetworkError> {
        let net = self.current()?;
        let valid: Vec<ValidAttachment> = live_sandboxes
            .iter()
            .map(|id| ValidAttachment {
                container_id: id.clone(),
                ifname: self.config.ifname.clone(),
            })
            .collect();
        self.cni.gc(&net, &valid).await?;
        if self.config.loopback {
            let lo: Vec<ValidAttachment> = live_sandboxes
                .iter()
                .map(|id| ValidAttachment {
                    container_id: id.clone(),
                    ifname: "lo".into(),
                })
                .collect();
            self.cni.gc(&self.loopback, &lo).await?;
        }
        // Namespaces this plugin made for sandboxes that are gone.
        if let Ok(entries) = std::fs::read_dir(&self.config.netns_dir) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let Some(id) = name.strip_prefix(NETNS_PREFIX) else {
                    continue;
                };
                if !live_sandboxes.iter().any(|s| s == id) {
                    self.remove_managed_netns(id).await?;
                }
            }
        }
        Ok(())
    }
}

fn to_status(result: &CniResult) -> PodNetworkStatus {
    PodNetworkStatus {
        ips: result.pod_ips().iter().map(ToString::to_string).collect(),
    }
}

#[async_trait]
impl NetworkPlugin for CniNetworkPlugin {
    fn name(&self) -> &str {
        "cni"
    }

    async fn ready(&self) -> Result<(), NetworkError> {
        let net = self.current()?;
        for plugin in &net.plugins {
            self.cni
                .exec()
                .find(&plugin.plugin_type)
                .map_err(|e| NetworkError::NotReady(format!("network {}: {e}", net.name)))?;
        }
        self.cni
            .status(&net)
            .await
            .map_err(|e| NetworkError::NotReady(format!("network {}: {e}", net.name)))
    }

    async fn setup(&self, ctx: &NetworkContext) -> Result<PodNetworkStatus, NetworkError> {
        if ctx.network == NamespaceMode::Node {
            return Ok(PodNetworkStatus {
                ips: ctx.runtime_ips.clone(),
            });
        }
        let net = self.current()?;
        let (netns, created) = match &ctx.netns_path {
            Some(p) if !p.is_empty() => (p.clone(), false),
            _ => {
                let dir = self.config.netns_dir.clone();
                let name = format!("{NETNS_PREFIX}{}", ctx.sandbox_id);
                let ns = tokio::task::spawn_blocking(move || NetNs::create(&dir, &name))
                    .await
                    .map_err(|e| NetworkError::Plugin {
                        plugin: "cni".into(),
                        message: e.to_string(),
                    })??;
                (ns.path().display().to_string(), true)
            }
        };
        let att = self.attachment(ctx, &netns, &self.config.ifname);
        let lo_att = self.attachment(ctx, &netns, "lo");
        let outcome = async {
            if self.has_loopback() {
                self.cni.add(&self.loopback, &lo_att).await?;
            }
            self.cni.add(&net, &att).await
        }
        .await;
        match outcome {
            Ok(result) => {
                let status = to_status(&result);
                tracing::info!(pod = %format!("{}/{}", ctx.namespace, ctx.name), ips = ?status.ips, "pod network set up");
                Ok(status)
            }
            Err(e) => {
                // Leave nothing half-made behind: the reconciler retries setup from scratch.
                if let Err(del) = self.cni.del(&net, &att).await {
                    tracing::warn!(error = %del, "cleanup after failed CNI ADD");
                }
                if self.has_loopback() {
                    let _ = self.cni.del(&self.loopback, &lo_att).await;
                }
                if created {
                    let _ = self.remove_managed_netns(&ctx.sandbox_id).await;
                }
                Err(e.into())
            }
        }
    }

    async fn teardown(&self, ctx: &NetworkContext) -> Result<(), NetworkError> {
        if ctx.network == NamespaceMode::Node {
            return Ok(());
        }
        let managed = self.netns_path(&ctx.sandbox_id).display().to_string();
        let given = ctx.netns_path.clone().unwrap_or_default();
        let entries: Vec<_> = self
            .cni
            .cache()
            .list(None)?
            .into_iter()
            .filter(|e| e.container_id == ctx.sandbox_id)
            .collect();
        let current = self.network();
        let mut main_done = false;
        let mut lo_done = false;
        // Pod network first, loopback last: the reverse of setup.
        let mut ordered: Vec<_> = entries
            .iter()
            .filter(|e| e.network_name != LOOPBACK_NETWORK)
            .collect();
        ordered.extend(
            entries
                .iter()
                .filter(|e| e.network_name == LOOPBACK_NETWORK),
        );
        for entry in ordered {
            let netns = Self::live_netns(&[&entry.netns, &given, &managed]);
            self.cni.del_cached(entry, Some(&netns)).await?;
            if entry.network_name == LOOPBACK_NETWORK {
                lo_done = true;
            } else if current
                .as_ref()
                .is_some_and(|n| n.name == entry.network_name)
            {
                main_done = true;
            }
        }
        let netns = Self::live_netns(&[&given, &managed]);
        if !main_done && let Some(net) = &current {
            // No cache (lost, or never set up): DEL with the current configuration.
            let att = self.attachment(ctx, &netns, &self.config.ifname);
            self.cni.del(net, &att).await?;
        }
        if !lo_done && self.has_loopback() {
            let att = self.attachment(ctx, &netns, "lo");
            self.cni.del(&self.loopback, &att).await?;
        }
        self.remove_managed_netns(&ctx.sandbox_id).await?;
        Ok(())
    }

    async fn status(&self, ctx: &NetworkContext) -> Result<PodNetworkStatus, NetworkError> {
        if ctx.network == NamespaceMode::Node {
            return Ok(PodNetworkStatus {
                ips: ctx.runtime_ips.clone(),
            });
        }
        let cached = self.cni.cache().list(None)?.into_iter().find(|e| {
            e.container_id == ctx.sandbox_id
                && e.if_name == self.config.ifname
                && e.network_name != LOOPBACK_NETWORK
        });
        if let Some(entry) = cached
            && let Some(raw) = entry.result
        {
            let version = raw
                .get("cniVersion")
                .and_then(|v| v.as_str())
                .unwrap_or("1.0.0")
                .to_string();
            if let Ok(result) = CniResult::from_value(raw, &version) {
                return Ok(to_status(&result));
            }
        }
        Ok(PodNetworkStatus {
            ips: ctx.runtime_ips.clone(),
        })
    }
}
