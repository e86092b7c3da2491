//! The volume plugin for volumes made of API objects and pod fields: `configMap`, `secret`,
//! `downwardAPI` and `projected` (serviceAccountToken, configMap, secret, downwardAPI
//! sources), including the `kube-api-access-<x>` volume that ServiceAccount admission adds
//! to every pod.
//!
//! Each volume is a directory `<pod dir>/volumes/kubernetes.io~<plugin>/<volume name>` with
//! the reference's names (`configmap`, `secret`, `downward-api`, `projected`) and the
//! atomic-writer layout (`..<timestamp>/`, `..data` -> it, visible paths as symlinks through
//! `..data`). Unlike the reference, the directory is a plain directory on the node's disk,
//! not a tmpfs: Secret data and tokens land on disk, protected only by the directory
//! permissions and the file modes the pod asks for. Containers mount it read-only. File
//! ownership (`fsGroup`, the alpha `defaultUser`/`user` fields) is not applied: files belong
//! to the kubelet's user.
//!
//! Register it next to the built-ins:
//!
//! ```ignore
//! let fetcher = Arc::new(PodObjectFetcher::new(node_client.clone()));
//! plugins.push(Arc::new(ApiObjectVolumePlugin::new(fetcher)));
//! ```
//!
//! [`VolumePlugin::setup`] is called on every pod sync: it fetches the objects again
//! (through the [`PodObjectFetcher`] cache, so at most once per TTL), requests a new token
//! once 80 % of the current one's life has passed, and swaps `..data` only when a file's
//! content or mode changed.

mod atomic;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{
    ConfigMap, DownwardAPIVolumeFile, KeyToPath, Pod, Secret, Volume, VolumeProjection,
};
use tracing::debug;

use self::atomic::{FileProjection, Payload};
use super::error::FetchError;
use super::fetch::{BoundPod, PodObjectFetcher};
use crate::error::VolumeError;
use crate::volume::{MountedVolume, VolumeContext, VolumePlugin};

/// The plugin's name in logs (it stands for the reference's `kubernetes.io/configmap`,
/// `kubernetes.io/secret`, `kubernetes.io/downward-api` and `kubernetes.io/projected`).
pub const API_OBJECT_PLUGIN_NAME: &str = "kubernetes.io/api-object";
/// File mode when the volume gives none (the API's default `defaultMode`).
pub const DEFAULT_FILE_MODE: u32 = 0o644;
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
}

impl ApiObjectVolumePlugin {
    /// A plugin reading ConfigMaps, Secrets and tokens through `fetcher`.
    pub fn new(fetcher: Arc<PodObjectFetcher>) -> Self {
        Self { fetcher }
    }
}

/// The pod facts the payload needs.
struct PodRef<'a> {
    pod: &'a Pod,
    namespace: &'a str,
}

impl<'a> PodRef<'a> {
    fn new(pod: &'a Pod) -> Self {
        Self {
            pod,
            namespace: pod.metadata.namespace.as_deref().unwrap_or("default"),
        }
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
                    let file = FileProjection { data: bytes, mode };
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
            (None, Some(r)) => {
                return Err(VolumeError::Invalid {
                    volume: volume.to_string(),
                    message: format!(
                        "downwardAPI item {:?}: resourceFieldRef {:?} is not supported by this kubelet",
                        item.path, r.resource
                    ),
                });
            }
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
        };
        insert(payload, volume, &item.path, file)?;
    }
    Ok(())
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
            downward_files(vname, pod.pod, items, default_mode, &mut payload)?;
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
            downward_files(vname, pod.pod, items, default_mode, payload)
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
            let file = FileProjection {
                data: token.token.into_bytes(),
                mode: default_mode,
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

    fn can_support(&self, volume: &Volume) -> bool {
        Kind::of(volume).is_some()
    }

    async fn setup(
        &self,
        ctx: &VolumeContext<'_>,
        volume: &Volume,
    ) -> Result<MountedVolume, VolumeError> {
        let kind = Kind::of(volume).ok_or_else(|| VolumeError::Unsupported(volume.name.clone()))?;
        let pod = PodRef::new(ctx.pod);
        let payload = self.payload(&pod, volume).await?;
        let dir = volume_dir(ctx.pod_dir, kind, &volume.name);
        let target = dir.clone();
        let written = tokio::task::spawn_blocking(move || atomic::write(&target, &payload))
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
            match tokio::fs::remove_dir_all(&dir).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(VolumeError::Io {
                        volume: volume_name.to_string(),
                        path: dir,
                        source: e,
                    });
                }
            }
        }
        // The pod's tokens are useless once its volumes are gone.
        self.fetcher.forget_pod(pod_uid);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
