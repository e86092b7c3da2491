//! The volume plugin for volumes made of API objects and pod fields: `configMap`, `secret`,
//! `downwardAPI` and `projected` (serviceAccountToken, configMap, secret, downwardAPI
//! sources), including the `kube-api-access-<x>` volume that ServiceAccount admission adds
//! to every pod.
//!
//! Each volume is a directory `<pod dir>/volumes/kubernetes.io~<plugin>/<volume name>` with
//! the reference's names (`configmap`, `secret`, `downward-api`, `projected`) and the
//! atomic-writer layout (`..<timestamp>/`, `..data` -> it, visible paths as symlinks through
//! `..data`). Where it lives is as the reference's wrapped emptyDir: secret, downwardAPI and
//! projected volumes (so service account tokens) are memory-backed, a tmpfs mounted at the
//! volume directory (sized as [`crate::volume_plugins::memory_volume_size`] says, without a
//! `sizeLimit`) and unmounted at teardown; configMap volumes are a directory on the node's
//! disk (mode 0777). Containers mount them read-only.
//!
//! With a pod `fsGroup`, every write gives the volume to the group (group read, setgid
//! directories: the reference's `SetVolumeOwnership`, always, whatever
//! `fsGroupChangePolicy` says, as the reference does for these volumes). A service account
//! token belongs to the user all the pod's containers run as, when they agree on one, and
//! its mode is then (or with an fsGroup) 0600, as the reference's. Other files belong to the
//! kubelet's user (the alpha `defaultUser`/`user` fields are not applied).
//!
//! Register it next to the built-ins:
//!
//! ```ignore
//! let fetcher = Arc::new(PodObjectFetcher::new(node_client.clone()));
//! plugins.push(Arc::new(ApiObjectVolumePlugin::new(fetcher)));
//! ```
//!
//! [`VolumePlugin::setup`] is called on every pod sync (so at least once per sync period):
//! it fetches the objects again (through the [`PodObjectFetcher`] cache, so at most once per
//! TTL), requests a new token once 80 % of the current one's life has passed, and swaps
//! `..data` only when a file's content or mode changed: a changed ConfigMap shows up in the
//! file within the sync period plus the cache TTL ([`VOLUME_OBJECT_TTL`] with
//! [`ApiObjectVolumePlugin::for_client`]).

mod atomic;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{
    ConfigMap, DownwardAPIVolumeFile, KeyToPath, Pod, ResourceFieldSelector, Secret, Volume,
    VolumeProjection,
};
use tracing::debug;

use self::atomic::{FileProjection, Payload};
use super::error::FetchError;
use super::fetch::{BoundPod, PodObjectFetcher};
use crate::downward_api::NodeAllocatable;
use crate::error::VolumeError;
use crate::volume::{MountedVolume, VolumeContext, VolumePlugin};
use crate::volume_plugins::ownership::FsGroup;
use crate::volume_plugins::{HostMounter, Mounter, ensure_tmpfs, remove_volume_dir};

/// The plugin's name in logs (it stands for the reference's `kubernetes.io/configmap`,
/// `kubernetes.io/secret`, `kubernetes.io/downward-api` and `kubernetes.io/projected`).
pub const API_OBJECT_PLUGIN_NAME: &str = "kubernetes.io/api-object";
/// File mode when the volume gives none (the API's default `defaultMode`).
pub const DEFAULT_FILE_MODE: u32 = 0o644;
/// How long the plugin made by [`ApiObjectVolumePlugin::for_client`] uses a fetched
/// ConfigMap or Secret: short, so that a change reaches the files within the sync period
/// plus this (70 s with the default 1-minute sync period, inside the 60-90 s the reference
/// takes with its default watch-based change detection), while the few syncs of a starting
/// pod still share one read.
pub const VOLUME_OBJECT_TTL: Duration = Duration::from_secs(10);
/// A token's lifetime when `expirationSeconds` is unset (the API's default).
pub const DEFAULT_TOKEN_EXPIRATION: Duration = Duration::from_secs(3600);

/// The four volume types, with the directory names of the reference plugins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    ConfigMap,
    Secret,
    DownwardApi,
    Projected,
}

impl Kind {
    const ALL: [Kind; 4] = [
        Kind::ConfigMap,
        Kind::Secret,
        Kind::DownwardApi,
        Kind::Projected,
    ];

    fn of(volume: &Volume) -> Option<Kind> {
        if volume.config_map.is_some() {
            Some(Kind::ConfigMap)
        } else if volume.secret.is_some() {
            Some(Kind::Secret)
        } else if volume.downward_api.is_some() {
            Some(Kind::DownwardApi)
        } else if volume.projected.is_some() {
            Some(Kind::Projected)
        } else {
            None
        }
    }

    /// Whether the reference backs this kind with memory (its wrapped emptyDir's medium).
    fn memory_backed(self) -> bool {
        !matches!(self, Kind::ConfigMap)
    }

    fn dir(self) -> &'static str {
        match self {
            Kind::ConfigMap => "kubernetes.io~configmap",
            Kind::Secret => "kubernetes.io~secret",
            Kind::DownwardApi => "kubernetes.io~downward-api",
            Kind::Projected => "kubernetes.io~projected",
        }
    }
}

fn volume_dir(pod_dir: &Path, kind: Kind, name: &str) -> PathBuf {
    pod_dir.join("volumes").join(kind.dir()).join(name)
}

/// The `configMap`, `secret`, `downwardAPI` and `projected` volume plugin.
#[derive(Debug, Clone)]
pub struct ApiObjectVolumePlugin {
    fetcher: Arc<PodObjectFetcher>,
    mounter: Arc<dyn Mounter>,
}

impl ApiObjectVolumePlugin {
    /// A plugin reading ConfigMaps, Secrets and tokens through `fetcher`, mounting the
    /// memory-backed volumes through the node's mount table.
    pub fn new(fetcher: Arc<PodObjectFetcher>) -> Self {
        Self {
            fetcher,
            mounter: Arc::new(HostMounter),
        }
    }

    /// A plugin with a fetcher of its own over `client`, keeping objects for
    /// [`VOLUME_OBJECT_TTL`] (the daemon's choice: volume contents follow the API server
    /// more closely than environment variables, which are read once per container start).
    pub fn for_client(client: super::client::NodeClient) -> Self {
        Self::new(Arc::new(
            PodObjectFetcher::new(client).with_ttl(VOLUME_OBJECT_TTL),
        ))
    }

    /// The same plugin mounting its tmpfs volumes through `mounter` (a
    /// [`crate::volume::FakeMounter`] in tests that run without privileges).
    pub fn with_mounter(mut self, mounter: Arc<dyn Mounter>) -> Self {
        self.mounter = mounter;
        self
    }
}

/// The pod facts the payload needs.
struct PodRef<'a> {
    pod: &'a Pod,
    namespace: &'a str,
    node: NodeAllocatable,
    fs_group: Option<FsGroup>,
}

impl<'a> PodRef<'a> {
    fn new(pod: &'a Pod, node: NodeAllocatable) -> Self {
        Self {
            pod,
            namespace: pod.metadata.namespace.as_deref().unwrap_or("default"),
            node,
            fs_group: FsGroup::of(pod),
        }
    }

    /// The user every container of the pod runs as (its own `runAsUser`, else the pod's),
    /// when they all set the same one (the reference's `FsUserFrom`).
    fn fs_user(&self) -> Option<u32> {
        let spec = self.pod.spec.as_ref()?;
        let pod_user = spec.security_context.as_ref().and_then(|s| s.run_as_user);
        let mut user: Option<i64> = None;
        for c in spec
            .init_containers
            .iter()
            .flatten()
            .chain(spec.containers.iter())
        {
            let u = c
                .security_context
                .as_ref()
                .and_then(|s| s.run_as_user)
                .or(pod_user)?;
            match user {
                None => user = Some(u),
                Some(prev) if prev != u => return None,
                Some(_) => {}
            }
        }
        user.and_then(|u| u32::try_from(u).ok())
    }

    fn service_account(&self) -> &'a str {
        let spec = self.pod.spec.as_ref();
        spec.and_then(|s| s.service_account_name.as_deref())
            .or_else(|| spec.and_then(|s| s.service_account.as_deref()))
            .filter(|s| !s.is_empty())
            .unwrap_or("default")
    }

    fn bound(&self) -> Option<BoundPod> {
        Some(BoundPod {
            name: self.pod.metadata.name.clone()?,
            uid: self.pod.metadata.uid.clone()?,
        })
    }
}

fn mode(volume: &str, what: &str, mode: Option<i32>, default: u32) -> Result<u32, VolumeError> {
    match mode {
        None => Ok(default),
        Some(m) if (0..=0o777).contains(&m) => Ok(m.unsigned_abs()),
        Some(m) => Err(VolumeError::Invalid {
            volume: volume.to_string(),
            message: format!("{what} {m:#o} is not between 0 and 0777"),
        }),
    }
}

fn fetch_error(volume: &str, err: FetchError) -> VolumeError {
    match err {
        FetchError::NotFound { .. } | FetchError::Unavailable { .. } => VolumeError::NotReady {
            volume: volume.to_string(),
            message: err.to_string(),
        },
        FetchError::Forbidden { .. } | FetchError::Rejected { .. } => VolumeError::Other {
            volume: volume.to_string(),
            message: err.to_string(),
        },
    }
}

fn insert(
    payload: &mut Payload,
    volume: &str,
    path: &str,
    file: FileProjection,
) -> Result<(), VolumeError> {
    if payload.insert(path.to_string(), file).is_some() {
        return Err(VolumeError::Invalid {
            volume: volume.to_string(),
            message: format!("more than one source writes the path {path:?}"),
        });
    }
    Ok(())
}

/// The keys of a ConfigMap or Secret with their bytes.
struct Object<'a> {
    kind: &'static str,
    namespace: &'a str,
    name: &'a str,
    data: BTreeMap<String, Vec<u8>>,
}

impl<'a> Object<'a> {
    fn configmap(namespace: &'a str, name: &'a str, cm: Option<ConfigMap>) -> Self {
        let mut data = BTreeMap::new();
        if let Some(cm) = cm {
            for (k, v) in cm.data.into_iter().flatten() {
                data.insert(k, v.into_bytes());
            }
            for (k, v) in cm.binary_data.into_iter().flatten() {
                data.insert(k, v.0);
            }
        }
        Self {
            kind: "ConfigMap",
            namespace,
            name,
            data,
        }
    }

    fn secret(namespace: &'a str, name: &'a str, secret: Option<Secret>) -> Self {
        let mut data = BTreeMap::new();
        if let Some(s) = secret {
            for (k, v) in s.data.into_iter().flatten() {
                data.insert(k, v.0);
            }
            // Written by clients as plain text; the API server folds it into `data`, but a
            // source that did not go through it may still carry it.
            for (k, v) in s.string_data.into_iter().flatten() {
                data.insert(k, v.into_bytes());
            }
        }
        Self {
            kind: "Secret",
            namespace,
            name,
            data,
        }
    }

    /// The files of this object: every key, or the listed items; a listed key that is
    /// missing is skipped when `optional`, an error otherwise.
    fn project(
        self,
        volume: &str,
        items: Option<&[KeyToPath]>,
        default_mode: u32,
        optional: bool,
        payload: &mut Payload,
    ) -> Result<(), VolumeError> {
        let Object {
            kind,
            namespace,
            name,
            data,
        } = self;
        match items.filter(|i| !i.is_empty()) {
            None => {
                for (key, bytes) in data {
                    let file = FileProjection {
                        data: bytes,
                        mode: default_mode,
                        owner: None,
                    };
                    insert(payload, volume, &key, file)?;
                }
            }
            Some(items) => {
                for item in items {
                    let what = format!("mode of key {:?}", item.key);
                    let mode = mode(volume, &what, item.mode, default_mode)?;
                    let Some(bytes) = data.get(&item.key).cloned() else {
                        if optional {
                            continue;
                        }
                        return Err(VolumeError::NotReady {
                            volume: volume.to_string(),
                            message: format!(
                                "{kind} {namespace}/{name} has no key {:?} (and the volume is not optional)",
                                item.key
                            ),
                        });
                    };
                    let file = FileProjection {
                        data: bytes,
                        mode,
                        owner: None,
                    };
                    insert(payload, volume, &item.path, file)?;
                }
            }
        }
        Ok(())
    }
}

fn downward_files(
    volume: &str,
    pod: &Pod,
    node: &NodeAllocatable,
    items: &[DownwardAPIVolumeFile],
    default_mode: u32,
    payload: &mut Payload,
) -> Result<(), VolumeError> {
    for item in items {
        let what = format!("mode of {:?}", item.path);
        let mode = mode(volume, &what, item.mode, default_mode)?;
        let value = match (&item.field_ref, &item.resource_field_ref) {
            (Some(field), None) => {
                if let Some(v) = field.api_version.as_deref().filter(|v| *v != "v1") {
                    return Err(VolumeError::Invalid {
                        volume: volume.to_string(),
                        message: format!(
                            "downwardAPI item {:?}: fieldRef apiVersion {v:?} is not supported (only v1)",
                            item.path
                        ),
                    });
                }
                crate::downward_api::field_value(pod, &field.field_path).map_err(|m| {
                    VolumeError::Invalid {
                        volume: volume.to_string(),
                        message: format!("downwardAPI item {:?}: {m}", item.path),
                    }
                })?
            }
            (None, Some(r)) => resource_file(volume, pod, node, &item.path, r)?,
            _ => {
                return Err(VolumeError::Invalid {
                    volume: volume.to_string(),
                    message: format!(
                        "downwardAPI item {:?} must have exactly one of fieldRef and resourceFieldRef",
                        item.path
                    ),
                });
            }
        };
        let file = FileProjection {
            data: value.into_bytes(),
            mode,
            owner: None,
        };
        insert(payload, volume, &item.path, file)?;
    }
    Ok(())
}

/// A `resourceFieldRef` item: the named container's request or limit (a limit it leaves
/// unset is the node's allocatable), divided by the divisor and rounded up.
fn resource_file(
    volume: &str,
    pod: &Pod,
    node: &NodeAllocatable,
    path: &str,
    selector: &ResourceFieldSelector,
) -> Result<String, VolumeError> {
    let invalid = |message: String| VolumeError::Invalid {
        volume: volume.to_string(),
        message: format!("downwardAPI item {path:?}: resourceFieldRef: {message}"),
    };
    let name = selector
        .container_name
        .as_deref()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| invalid("containerName is required in a volume".to_string()))?;
    let container = pod
        .spec
        .as_ref()
        .and_then(|s| {
            s.containers
                .iter()
                .chain(s.init_containers.iter().flatten())
                .find(|c| c.name == name)
        })
        .ok_or_else(|| invalid(format!("container {name:?} not found in the pod")))?;
    crate::downward_api::resource_value(pod, container, selector, node).map_err(invalid)
}

impl ApiObjectVolumePlugin {
    async fn configmap(
        &self,
        volume: &str,
        pod: &PodRef<'_>,
        name: &str,
        optional: bool,
    ) -> Result<Option<ConfigMap>, VolumeError> {
        match self.fetcher.get_configmap(pod.namespace, name).await {
            Ok(cm) => Ok(Some(cm)),
            Err(FetchError::NotFound { .. }) if optional => Ok(None),
            Err(e) => Err(fetch_error(volume, e)),
        }
    }

    async fn secret(
        &self,
        volume: &str,
        pod: &PodRef<'_>,
        name: &str,
        optional: bool,
    ) -> Result<Option<Secret>, VolumeError> {
        match self.fetcher.get_secret(pod.namespace, name).await {
            Ok(s) => Ok(Some(s)),
            Err(FetchError::NotFound { .. }) if optional => Ok(None),
            Err(e) => Err(fetch_error(volume, e)),
        }
    }

    /// The files the volume must hold now.
    async fn payload(&self, pod: &PodRef<'_>, volume: &Volume) -> Result<Payload, VolumeError> {
        let vname = volume.name.as_str();
        let mut payload = Payload::new();
        if let Some(src) = &volume.config_map {
            let default_mode = mode(vname, "defaultMode", src.default_mode, DEFAULT_FILE_MODE)?;
            let optional = src.optional.unwrap_or(false);
            let cm = self.configmap(vname, pod, &src.name, optional).await?;
            Object::configmap(pod.namespace, &src.name, cm).project(
                vname,
                src.items.as_deref(),
                default_mode,
                optional,
                &mut payload,
            )?;
        } else if let Some(src) = &volume.secret {
            let default_mode = mode(vname, "defaultMode", src.default_mode, DEFAULT_FILE_MODE)?;
            let optional = src.optional.unwrap_or(false);
            let name = src.secret_name.as_deref().unwrap_or_default();
            if name.is_empty() {
                return Err(VolumeError::Invalid {
                    volume: vname.to_string(),
                    message: "secret.secretName is empty".to_string(),
                });
            }
            let secret = self.secret(vname, pod, name, optional).await?;
            Object::secret(pod.namespace, name, secret).project(
                vname,
                src.items.as_deref(),
                default_mode,
                optional,
                &mut payload,
            )?;
        } else if let Some(src) = &volume.downward_api {
            let default_mode = mode(vname, "defaultMode", src.default_mode, DEFAULT_FILE_MODE)?;
            let items = src.items.as_deref().unwrap_or_default();
            downward_files(vname, pod.pod, &pod.node, items, default_mode, &mut payload)?;
        } else if let Some(src) = &volume.projected {
            let default_mode = mode(vname, "defaultMode", src.default_mode, DEFAULT_FILE_MODE)?;
            for source in src.sources.iter().flatten() {
                self.projection(vname, pod, source, default_mode, &mut payload)
                    .await?;
            }
        }
        atomic::validate(&payload).map_err(|message| VolumeError::Invalid {
            volume: vname.to_string(),
            message,
        })?;
        Ok(payload)
    }

    async fn projection(
        &self,
        vname: &str,
        pod: &PodRef<'_>,
        source: &VolumeProjection,
        default_mode: u32,
        payload: &mut Payload,
    ) -> Result<(), VolumeError> {
        if let Some(src) = &source.config_map {
            let optional = src.optional.unwrap_or(false);
            let cm = self.configmap(vname, pod, &src.name, optional).await?;
            Object::configmap(pod.namespace, &src.name, cm).project(
                vname,
                src.items.as_deref(),
                default_mode,
                optional,
                payload,
            )
        } else if let Some(src) = &source.secret {
            let optional = src.optional.unwrap_or(false);
            let secret = self.secret(vname, pod, &src.name, optional).await?;
            Object::secret(pod.namespace, &src.name, secret).project(
                vname,
                src.items.as_deref(),
                default_mode,
                optional,
                payload,
            )
        } else if let Some(src) = &source.downward_api {
            let items = src.items.as_deref().unwrap_or_default();
            downward_files(vname, pod.pod, &pod.node, items, default_mode, payload)
        } else if let Some(src) = &source.service_account_token {
            let expiration = match src.expiration_seconds {
                None => DEFAULT_TOKEN_EXPIRATION,
                Some(s) => match u64::try_from(s) {
                    Ok(s) => Duration::from_secs(s),
                    Err(_) => {
                        return Err(VolumeError::Invalid {
                            volume: vname.to_string(),
                            message: format!(
                                "serviceAccountToken.expirationSeconds {s} is negative"
                            ),
                        });
                    }
                },
            };
            let audiences: Vec<String> = src
                .audience
                .iter()
                .filter(|a| !a.is_empty())
                .cloned()
                .collect();
            let token = self
                .fetcher
                .request_token(
                    pod.namespace,
                    pod.service_account(),
                    &audiences,
                    expiration,
                    pod.bound(),
                )
                .await
                .map_err(|e| fetch_error(vname, e))?;
            // As the reference: when every container runs as the same user the token is
            // theirs, and with that user or an fsGroup it is readable by its owner only
            // (the group still gets read through the ownership walk).
            let owner = pod.fs_user();
            let mode = if owner.is_some() || pod.fs_group.is_some() {
                0o600
            } else {
                default_mode
            };
            let file = FileProjection {
                data: token.token.into_bytes(),
                mode,
                owner,
            };
            insert(payload, vname, &src.path, file)
        } else if source.cluster_trust_bundle.is_some() {
            Err(VolumeError::Invalid {
                volume: vname.to_string(),
                message: "projected source clusterTrustBundle is not supported by this kubelet"
                    .to_string(),
            })
        } else {
            Err(VolumeError::Invalid {
                volume: vname.to_string(),
                message: "a projected source of a type this kubelet does not support (or none)"
                    .to_string(),
            })
        }
    }
}

#[async_trait]
impl VolumePlugin for ApiObjectVolumePlugin {
    fn name(&self) -> &str {
        API_OBJECT_PLUGIN_NAME
    }

    fn pod_volume_dirs(&self) -> Vec<String> {
        Kind::ALL.iter().map(|k| k.dir().to_string()).collect()
    }

    fn can_support(&self, volume: &Volume) -> bool {
        Kind::of(volume).is_some()
    }

    async fn setup(
        &self,
        ctx: &VolumeContext<'_>,
        volume: &Volume,
    ) -> Result<MountedVolume, VolumeError> {
        let kind = Kind::of(volume).ok_or_else(|| VolumeError::Unsupported(volume.name.clone()))?;
        let pod = PodRef::new(ctx.pod, ctx.node_allocatable);
        let payload = self.payload(&pod, volume).await?;
        let dir = volume_dir(ctx.pod_dir, kind, &volume.name);
        let target = dir.clone();
        let tmpfs_size = kind.memory_backed().then(|| {
            crate::volume_plugins::memory_volume_size(
                ctx.pod,
                None,
                ctx.node_allocatable.memory_bytes,
            )
        });
        let mounter = self.mounter.clone();
        let fs_group = pod.fs_group;
        let written = tokio::task::spawn_blocking(move || {
            prepare_dir(mounter.as_ref(), &target, tmpfs_size).map_err(|source| {
                atomic::WriteError {
                    path: target.clone(),
                    source,
                }
            })?;
            atomic::write(&target, &payload, fs_group)
        })
        .await
        .map_err(|e| VolumeError::Other {
            volume: volume.name.clone(),
            message: format!("writing the volume's files: {e}"),
        })?
        .map_err(|e| VolumeError::Io {
            volume: volume.name.clone(),
            path: e.path,
            source: e.source,
        })?;
        if written {
            debug!(volume = %volume.name, dir = %dir.display(), "volume contents updated");
        }
        Ok(MountedVolume {
            host_path: dir,
            read_only: true,
            size_limit_bytes: None,
            block_device: None,
        })
    }

    async fn teardown(
        &self,
        pod_uid: &str,
        pod_dir: &Path,
        volume_name: &str,
    ) -> Result<(), VolumeError> {
        // Only the name is known here: each of the four directories may hold it.
        for kind in Kind::ALL {
            let dir = volume_dir(pod_dir, kind, volume_name);
            let mounter = self.mounter.clone();
            let target = dir.clone();
            tokio::task::spawn_blocking(move || remove_volume_dir(mounter.as_ref(), &target))
                .await
                .map_err(|e| VolumeError::Other {
                    volume: volume_name.to_string(),
                    message: format!("removing the volume: {e}"),
                })?
                .map_err(|source| VolumeError::Io {
                    volume: volume_name.to_string(),
                    path: dir,
                    source,
                })?;
        }
        // The pod's tokens are useless once its volumes are gone.
        self.fetcher.forget_pod(pod_uid);
        Ok(())
    }
}

/// The volume directory as the reference's wrapped emptyDir makes it: a tmpfs for the
/// memory-backed kinds (`Some(size)`), a directory of mode 0777 on disk otherwise (the mode
/// set when it is made, so that the setgid an `fsGroup` adds stays).
fn prepare_dir(
    mounter: &dyn Mounter,
    dir: &Path,
    tmpfs_size: Option<Option<u64>>,
) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    match tmpfs_size {
        Some(size) => {
            if ensure_tmpfs(mounter, dir, size)? {
                debug!(dir = %dir.display(), ?size, "tmpfs mounted");
            }
            Ok(())
        }
        None => {
            if dir.is_dir() {
                return Ok(());
            }
            std::fs::create_dir_all(dir)?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777))
        }
    }
}

#[cfg(test)]
mod tests;
