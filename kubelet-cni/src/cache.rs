//! The result cache: what an ADD produced, per (network, container, interface), so that DEL
//! and CHECK get their `prevResult` (and the configuration ADD used) after a restart.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::CniError;

const KIND: &str = "cniCacheV1";

/// One cached attachment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CachedAttachment {
    /// Always `cniCacheV1`.
    pub kind: String,
    /// Container ID.
    pub container_id: String,
    /// Interface name.
    pub if_name: String,
    /// Network name.
    pub network_name: String,
    /// Netns path the ADD used.
    #[serde(default)]
    pub netns: String,
    /// The network configuration list ADD ran with.
    pub config: Value,
    /// `CNI_ARGS` pairs.
    #[serde(default)]
    pub cni_args: Vec<(String, String)>,
    /// Capability arguments (runtimeConfig) ADD ran with.
    #[serde(default)]
    pub capability_args: Map<String, Value>,
    /// The chain's final result.
    #[serde(default)]
    pub result: Option<Value>,
}

impl CachedAttachment {
    /// A cache entry for an attachment.
    pub fn new(network_name: &str, container_id: &str, if_name: &str) -> Self {
        Self {
            kind: KIND.to_string(),
            container_id: container_id.to_string(),
            if_name: if_name.to_string(),
            network_name: network_name.to_string(),
            netns: String::new(),
            config: Value::Null,
            cni_args: Vec::new(),
            capability_args: Map::new(),
            result: None,
        }
    }
}

/// The on-disk result cache under `<cache dir>/results`.
#[derive(Debug, Clone)]
pub struct ResultCache {
    dir: PathBuf,
}

impl ResultCache {
    /// A cache rooted at `cache_dir` (e.g. `/var/lib/cni/cache`).
    pub fn new(cache_dir: impl AsRef<Path>) -> Self {
        Self {
            dir: cache_dir.as_ref().join("results"),
        }
    }

    /// The directory holding the entries.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of one attachment.
    pub fn path(&self, network: &str, container_id: &str, ifname: &str) -> PathBuf {
        self.dir.join(format!("{network}-{container_id}-{ifname}"))
    }

    fn err(path: &Path, message: impl Into<String>) -> CniError {
        CniError::Cache {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }

    /// The cached attachment, `None` if there is none.
    pub fn load(
        &self,
        network: &str,
        container_id: &str,
        ifname: &str,
    ) -> Result<Option<CachedAttachment>, CniError> {
        let path = self.path(network, container_id, ifname);
        let Some(entry) = Self::read(&path)? else {
            return Ok(None);
        };
        // File names join the parts with '-', which the parts may contain too.
        if entry.network_name != network
            || entry.container_id != container_id
            || entry.if_name != ifname
        {
            return Ok(None);
        }
        Ok(Some(entry))
    }

    fn read(path: &Path) -> Result<Option<CachedAttachment>, CniError> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Self::err(path, format!("cannot read: {e}"))),
        };
        let entry: CachedAttachment = serde_json::from_slice(&bytes)
            .map_err(|e| Self::err(path, format!("corrupt entry: {e}")))?;
        if entry.kind != KIND {
            return Err(Self::err(path, format!("unknown kind {:?}", entry.kind)));
        }
        Ok(Some(entry))
    }

    /// Write an entry atomically (a temporary file renamed over the old one).
    pub fn store(&self, entry: &CachedAttachment) -> Result<(), CniError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|e| Self::err(&self.dir, format!("cannot create: {e}")))?;
        let path = self.path(&entry.network_name, &entry.container_id, &entry.if_name);
        let tmp = path.with_file_name(format!(
            ".{}.tmp",
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        ));
        let bytes = serde_json::to_vec(entry)
            .map_err(|e| Self::err(&path, format!("cannot encode: {e}")))?;
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Self::err(&path, format!("cannot write: {e}"))
        })
    }

    /// Remove an entry; removing an absent one succeeds.
    pub fn remove(&self, network: &str, container_id: &str, ifname: &str) -> Result<(), CniError> {
        let path = self.path(network, container_id, ifname);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Self::err(&path, format!("cannot remove: {e}"))),
        }
    }

    /// All entries, optionally only those of one network. Unreadable entries are skipped
    /// with a warning, so that one corrupt file does not block GC or teardown of others.
    pub fn list(&self, network: Option<&str>) -> Result<Vec<CachedAttachment>, CniError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Self::err(&self.dir, format!("cannot list: {e}"))),
        };
        let mut out = Vec::new();
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            match Self::read(&path) {
                Ok(Some(e)) if network.is_none_or(|n| n == e.network_name) => out.push(e),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "skipping CNI cache entry"),
            }
        }
        out.sort_by(|a, b| {
            (&a.network_name, &a.container_id, &a.if_name).cmp(&(
                &b.network_name,
                &b.container_id,
                &b.if_name,
            ))
        });
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_load_list_remove() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let cache = ResultCache::new(dir.path());
        assert_eq!(cache.load("net", "c1", "eth0").ok(), Some(None));
        assert_eq!(cache.list(None).ok(), Some(vec![]));

        let mut a = CachedAttachment::new("net", "c1", "eth0");
        a.result =
            Some(serde_json::json!({"cniVersion":"1.0.0","ips":[{"address":"10.0.0.2/24"}]}));
        a.cni_args = vec![("K8S_POD_NAME".into(), "p".into())];
        let b = CachedAttachment::new("other-net", "c2", "eth0");
        // Same file-name prefix, different split: must not be confused with `a`.
        let c = CachedAttachment::new("net-c1", "x", "eth0");
        for e in [&a, &b, &c] {
            cache.store(e).unwrap_or_else(|e| panic!("{e}"));
        }
        assert_eq!(
            cache.load("net", "c1", "eth0").ok().flatten(),
            Some(a.clone())
        );
        assert_eq!(cache.list(Some("net")).map(|l| l.len()).ok(), Some(1));
        assert_eq!(cache.list(None).map(|l| l.len()).ok(), Some(3));

        cache
            .remove("net", "c1", "eth0")
            .unwrap_or_else(|e| panic!("{e}"));
        cache
            .remove("net", "c1", "eth0")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cache.load("net", "c1", "eth0").ok(), Some(None));

        std::fs::write(cache.path("bad", "c", "eth0"), "{").unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            cache.load("bad", "c", "eth0"),
            Err(CniError::Cache { .. })
        ));
        assert_eq!(cache.list(None).map(|l| l.len()).ok(), Some(2));
    }
}
