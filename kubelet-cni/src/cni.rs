//! The CNI operations over a network configuration list: ADD, DEL, CHECK, STATUS, GC and
//! VERSION, with `prevResult` chaining and the result cache.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::cache::{CachedAttachment, ResultCache};
use crate::capabilities::RuntimeConfig;
use crate::config::{NetworkConfigList, PluginConfig};
use crate::error::CniError;
use crate::exec::{Command, InvocationEnv, PluginExec};
use crate::result::CniResult;
use crate::version::{self, Version};

/// Default time a plugin call may take before it is killed.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// One container interface on one network: the per-call arguments of ADD, DEL and CHECK.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Attachment {
    /// Container ID (`CNI_CONTAINERID`).
    pub container_id: String,
    /// Network namespace path (`CNI_NETNS`).
    pub netns: String,
    /// Interface name inside the container (`CNI_IFNAME`).
    pub ifname: String,
    /// `CNI_ARGS` pairs.
    pub args: Vec<(String, String)>,
    /// Capability arguments.
    pub runtime_config: RuntimeConfig,
}

impl Attachment {
    /// An attachment without extra arguments.
    pub fn new(
        container_id: impl Into<String>,
        netns: impl Into<String>,
        ifname: impl Into<String>,
    ) -> Self {
        Self {
            container_id: container_id.into(),
            netns: netns.into(),
            ifname: ifname.into(),
            ..Default::default()
        }
    }

    /// Check the container ID and interface name against the spec's rules.
    pub fn validate(&self) -> Result<(), CniError> {
        validate_container_id(&self.container_id)?;
        validate_ifname(&self.ifname)
    }

    fn env(&self) -> InvocationEnv {
        InvocationEnv {
            container_id: self.container_id.clone(),
            netns: self.netns.clone(),
            ifname: self.ifname.clone(),
            args: self.args.clone(),
        }
    }
}

/// The spec's container ID rule: non-empty; letters, digits, `_`, `.`, `-`.
pub fn validate_container_id(id: &str) -> Result<(), CniError> {
    let bad = |message: String| CniError::InvalidArgument {
        field: "container ID",
        message,
    };
    if id.is_empty() {
        return Err(bad("must not be empty".into()));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(bad(format!("{id:?} contains {c:?}")));
    }
    Ok(())
}

/// The spec's interface name rule: 1-15 bytes, not `.` or `..`, no `/`, `:` or whitespace.
pub fn validate_ifname(name: &str) -> Result<(), CniError> {
    let bad = |message: String| CniError::InvalidArgument {
        field: "interface name",
        message,
    };
    if name.is_empty() {
        return Err(bad("must not be empty".into()));
    }
    if name.len() > 15 {
        return Err(bad(format!("{name:?} is longer than 15 bytes")));
    }
    if name == "." || name == ".." {
        return Err(bad(format!("{name:?} is not allowed")));
    }
    if let Some(c) = name
        .chars()
        .find(|c| *c == '/' || *c == ':' || c.is_whitespace())
    {
        return Err(bad(format!("{name:?} contains {c:?}")));
    }
    Ok(())
}

/// An attachment GC must keep (`cni.dev/valid-attachments`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidAttachment {
    /// Container ID.
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// Interface name.
    pub ifname: String,
}

/// What a plugin's VERSION call reports.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct VersionInfo {
    /// The version of the reply.
    #[serde(rename = "cniVersion", default)]
    pub cni_version: String,
    /// The spec versions the plugin speaks.
    #[serde(rename = "supportedVersions", default)]
    pub supported_versions: Vec<String>,
}

/// The CNI library: plugin bin dirs, a result cache and a per-call timeout.
#[derive(Debug, Clone)]
pub struct Cni {
    exec: PluginExec,
    cache: ResultCache,
}

impl Cni {
    /// Look for plugins in `bin_dirs` (in order) and keep results under `cache_dir`.
    pub fn new(bin_dirs: Vec<PathBuf>, cache_dir: impl AsRef<Path>) -> Self {
        Self {
            exec: PluginExec::new(bin_dirs, DEFAULT_TIMEOUT),
            cache: ResultCache::new(cache_dir),
        }
    }

    /// Kill plugin calls that take longer than `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.exec = PluginExec::new(self.exec.bin_dirs().to_vec(), timeout);
        self
    }

    /// The plugin runner.
    pub fn exec(&self) -> &PluginExec {
        &self.exec
    }

    /// The result cache.
    pub fn cache(&self) -> &ResultCache {
        &self.cache
    }

    /// Attach: ADD each plugin in order, each getting the previous one's result as
    /// `prevResult`; cache and return the final result.
    pub async fn add(
        &self,
        net: &NetworkConfigList,
        att: &Attachment,
    ) -> Result<CniResult, CniError> {
        att.validate()?;
        let env = att.env();
        let mut prev: Option<CniResult> = None;
        for plugin in &net.plugins {
            let stdin = plugin_stdin(
                net,
                plugin,
                prev.as_ref().map(|r| &r.raw),
                &att.runtime_config,
                None,
            )?;
            let out = self
                .exec
                .run(&plugin.plugin_type, Command::Add, Some(&env), &stdin)
                .await?;
            let invalid = |message: String| CniError::InvalidResult {
                plugin: plugin.plugin_type.clone(),
                message,
            };
            if out.iter().all(u8::is_ascii_whitespace) {
                return Err(invalid("ADD printed no result".into()));
            }
            prev = Some(CniResult::parse(&out, &net.cni_version).map_err(invalid)?);
        }
        let Some(result) = prev else {
            return Err(CniError::NotSupported {
                network: net.name.clone(),
                command: "ADD".into(),
                reason: "the network has no plugins".into(),
            });
        };
        let mut entry = CachedAttachment::new(&net.name, &att.container_id, &att.ifname);
        entry.netns = att.netns.clone();
        entry.config = net.raw.clone();
        entry.cni_args = att.args.clone();
        entry.capability_args = att.runtime_config.to_map();
        entry.result = Some(result.raw.clone());
        self.cache.store(&entry)?;
        tracing::debug!(network = %net.name, container = %att.container_id, ips = ?result.pod_ips(), "CNI ADD done");
        Ok(result)
    }

    /// Detach: DEL each plugin in reverse order, with the cached result as `prevResult`
    /// (0.4.0 and later), then drop the cache entry. Deleting what is not there succeeds, as
    /// far as the plugins tolerate missing state (the spec requires them to).
    pub async fn del(&self, net: &NetworkConfigList, att: &Attachment) -> Result<(), CniError> {
        att.validate()?;
        let cached = if version::at_least(&net.cni_version, Version::V0_4_0) {
            self.cache
                .load(&net.name, &att.container_id, &att.ifname)?
                .and_then(|e| e.result)
        } else {
            None
        };
        let env = att.env();
        for plugin in net.plugins.iter().rev() {
            let stdin = plugin_stdin(net, plugin, cached.as_ref(), &att.runtime_config, None)?;
            self.exec
                .run(&plugin.plugin_type, Command::Del, Some(&env), &stdin)
                .await?;
        }
        self.cache
            .remove(&net.name, &att.container_id, &att.ifname)?;
        tracing::debug!(network = %net.name, container = %att.container_id, "CNI DEL done");
        Ok(())
    }

    /// DEL an attachment with everything its ADD used: the cached configuration, netns,
    /// `CNI_ARGS` and capability arguments. `netns` overrides the cached path (e.g. with an
    /// empty string when the namespace is gone).
    pub async fn del_cached(
        &self,
        entry: &CachedAttachment,
        netns: Option<&str>,
    ) -> Result<(), CniError> {
        let origin = self
            .cache
            .path(&entry.network_name, &entry.container_id, &entry.if_name);
        let net = NetworkConfigList::from_value(&entry.config, &origin.display().to_string())?;
        let runtime_config =
            RuntimeConfig::from_map(&entry.capability_args).map_err(|message| CniError::Cache {
                path: origin.clone(),
                message,
            })?;
        let att = Attachment {
            container_id: entry.container_id.clone(),
            netns: netns.map_or_else(|| entry.netns.clone(), str::to_string),
            ifname: entry.if_name.clone(),
            args: entry.cni_args.clone(),
            runtime_config,
        };
        self.del(&net, &att).await
    }

    /// Verify an attachment: CHECK each plugin in order with the cached result. Needs 0.4.0
    /// or later; a network with `disableCheck` passes without calling plugins.
    pub async fn check(&self, net: &NetworkConfigList, att: &Attachment) -> Result<(), CniError> {
        att.validate()?;
        if !version::at_least(&net.cni_version, Version::V0_4_0) {
            return Err(CniError::NotSupported {
                network: net.name.clone(),
                command: "CHECK".into(),
                reason: format!("cniVersion {} is older than 0.4.0", net.cni_version),
            });
        }
        if net.disable_check {
            return Ok(());
        }
        let cached = self
            .cache
            .load(&net.name, &att.container_id, &att.ifname)?
            .and_then(|e| e.result)
            .ok_or_else(|| CniError::NoCachedResult {
                network: net.name.clone(),
                container_id: att.container_id.clone(),
                ifname: att.ifname.clone(),
            })?;
        let env = att.env();
        for plugin in &net.plugins {
            let stdin = plugin_stdin(net, plugin, Some(&cached), &att.runtime_config, None)?;
            self.exec
                .run(&plugin.plugin_type, Command::Check, Some(&env), &stdin)
                .await?;
        }
        Ok(())
    }

    /// Whether the network can take new attachments: STATUS each plugin (1.1). Networks
    /// older than 1.1.0 have no STATUS and are taken as ready.
    pub async fn status(&self, net: &NetworkConfigList) -> Result<(), CniError> {
        if !version::at_least(&net.cni_version, Version::V1_1_0) {
            return Ok(());
        }
        for plugin in &net.plugins {
            let stdin = plugin_stdin(net, plugin, None, &RuntimeConfig::default(), None)?;
            self.exec
                .run(&plugin.plugin_type, Command::Status, None, &stdin)
                .await?;
        }
        Ok(())
    }

    /// Garbage-collect the network: DEL cached attachments of this network that are not in
    /// `valid`, then (1.1, unless `disableGC`) GC each plugin with the valid attachments.
    /// Every step is tried; the first error is returned.
    pub async fn gc(
        &self,
        net: &NetworkConfigList,
        valid: &[ValidAttachment],
    ) -> Result<(), CniError> {
        let mut first_err: Option<CniError> = None;
        for entry in self.cache.list(Some(&net.name))? {
            let keep = valid
                .iter()
                .any(|v| v.container_id == entry.container_id && v.ifname == entry.if_name);
            if keep {
                continue;
            }
            tracing::info!(network = %net.name, container = %entry.container_id, ifname = %entry.if_name, "GC: deleting stale attachment");
            let netns = if Path::new(&entry.netns).exists() {
                entry.netns.clone()
            } else {
                String::new()
            };
            if let Err(e) = self.del_cached(&entry, Some(&netns)).await {
                tracing::warn!(error = %e, "GC: deleting stale attachment failed");
                first_err.get_or_insert(e);
            }
        }
        if version::at_least(&net.cni_version, Version::V1_1_0) && !net.disable_gc {
            let valid_json = serde_json::to_value(valid).unwrap_or_default();
            for plugin in &net.plugins {
                let stdin = plugin_stdin(
                    net,
                    plugin,
                    None,
                    &RuntimeConfig::default(),
                    Some(("cni.dev/valid-attachments", valid_json.clone())),
                )?;
                if let Err(e) = self
                    .exec
                    .run(&plugin.plugin_type, Command::Gc, None, &stdin)
                    .await
                {
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Ask a plugin which versions it speaks.
    pub async fn version(
        &self,
        plugin_type: &str,
        cni_version: &str,
    ) -> Result<VersionInfo, CniError> {
        let stdin = serde_json::to_vec(&serde_json::json!({ "cniVersion": cni_version }))
            .unwrap_or_default();
        let out = self
            .exec
            .run(plugin_type, Command::Version, None, &stdin)
            .await?;
        serde_json::from_slice(&out).map_err(|e| CniError::InvalidResult {
            plugin: plugin_type.to_string(),
            message: format!("VERSION: {e}"),
        })
    }

    /// Check that every plugin of the network is installed and speaks its version.
    pub async fn validate(&self, net: &NetworkConfigList) -> Result<(), CniError> {
        for plugin in &net.plugins {
            let info = self.version(&plugin.plugin_type, &net.cni_version).await?;
            if !info.supported_versions.contains(&net.cni_version) {
                return Err(CniError::NotSupported {
                    network: net.name.clone(),
                    command: "ADD".into(),
                    reason: format!(
                        "plugin {} does not speak cniVersion {} (it speaks {})",
                        plugin.plugin_type,
                        net.cni_version,
                        info.supported_versions.join(", ")
                    ),
                });
            }
        }
        Ok(())
    }
}

/// The configuration a plugin reads on stdin: its own object with the list's `name` and
/// `cniVersion` injected, `prevResult` when chained, `runtimeConfig` for its capabilities.
pub fn plugin_stdin(
    net: &NetworkConfigList,
    plugin: &PluginConfig,
    prev_result: Option<&Value>,
    runtime_config: &RuntimeConfig,
    extra: Option<(&str, Value)>,
) -> Result<Vec<u8>, CniError> {
    let mut conf: Map<String, Value> = plugin.raw.clone();
    conf.insert("name".into(), Value::String(net.name.clone()));
    conf.insert("cniVersion".into(), Value::String(net.cni_version.clone()));
    match prev_result {
        Some(prev) => {
            conf.insert("prevResult".into(), prev.clone());
        }
        None => {
            conf.remove("prevResult");
        }
    }
    if let Some(rc) = runtime_config.for_plugin(plugin) {
        conf.insert("runtimeConfig".into(), Value::Object(rc));
    }
    if let Some((k, v)) = extra {
        conf.insert(k.to_string(), v);
    }
    serde_json::to_vec(&Value::Object(conf)).map_err(|e| CniError::InvalidArgument {
        field: "network configuration",
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capabilities::PortMapping;
    use crate::config::ConfigFormat;

    fn net(text: &str) -> NetworkConfigList {
        NetworkConfigList::parse(text.as_bytes(), Path::new("t.conflist"), ConfigFormat::List)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn stdin_injects_name_version_prev_and_capabilities() {
        let n = net(r#"{"cniVersion":"1.0.0","name":"n","plugins":[
                {"type":"bridge","name":"ignored","cniVersion":"0.1.0","bridge":"b0"},
                {"type":"portmap","capabilities":{"portMappings":true},"runtimeConfig":{"keep":1}},
                {"type":"tuning","runtimeConfig":{"keep":2}}]}"#);
        let rc = RuntimeConfig {
            port_mappings: vec![PortMapping {
                host_port: 80,
                container_port: 8080,
                protocol: "tcp".into(),
                host_ip: String::new(),
            }],
            ..Default::default()
        };
        let prev = serde_json::json!({"cniVersion":"1.0.0","ips":[]});
        let decode = |b: Vec<u8>| serde_json::from_slice::<Value>(&b).unwrap_or_default();

        let first = decode(plugin_stdin(&n, &n.plugins[0], None, &rc, None).unwrap_or_default());
        assert_eq!(
            first,
            serde_json::json!({"type":"bridge","name":"n","cniVersion":"1.0.0","bridge":"b0"})
        );
        let second =
            decode(plugin_stdin(&n, &n.plugins[1], Some(&prev), &rc, None).unwrap_or_default());
        assert_eq!(second["prevResult"], prev);
        assert_eq!(
            second["runtimeConfig"],
            serde_json::json!({"portMappings":[{"hostPort":80,"containerPort":8080,"protocol":"tcp"}]})
        );
        // No declared capability: the plugin's own runtimeConfig is left alone.
        let third =
            decode(plugin_stdin(&n, &n.plugins[2], Some(&prev), &rc, None).unwrap_or_default());
        assert_eq!(third["runtimeConfig"], serde_json::json!({"keep":2}));
    }

    #[test]
    fn attachment_rules() {
        let ok = [
            ("abc-1_2.3", "eth0"),
            ("a", "net1"),
            ("x", "123456789012345"),
        ];
        for (id, ifname) in ok {
            assert!(
                Attachment::new(id, "/ns", ifname).validate().is_ok(),
                "{id} {ifname}"
            );
        }
        let bad = [
            ("", "eth0", "container ID"),
            ("a/b", "eth0", "container ID"),
            ("a b", "eth0", "container ID"),
            ("a", "", "interface name"),
            ("a", "1234567890123456", "interface name"),
            ("a", ".", "interface name"),
            ("a", "..", "interface name"),
            ("a", "eth/0", "interface name"),
            ("a", "eth:0", "interface name"),
            ("a", "eth 0", "interface name"),
        ];
        for (id, ifname, field) in bad {
            match Attachment::new(id, "/ns", ifname).validate() {
                Err(CniError::InvalidArgument { field: f, .. }) => {
                    assert_eq!(f, field, "{id} {ifname}")
                }
                other => panic!("{id} {ifname}: {other:?}"),
            }
        }
    }
}
