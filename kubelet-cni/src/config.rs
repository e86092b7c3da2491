//! Network configuration: parsing, validation and loading from a configuration directory.
//!
//! A `.conflist` holds a network configuration list (`name`, `cniVersion` or the 1.1
//! `cniVersions`, `plugins`, `disableCheck`, `disableGC`); a `.conf` or `.json` holds a single
//! plugin configuration, which is treated as a list of one. The runtime injects `name` and
//! `cniVersion` into each plugin's configuration, so per-plugin copies of them are ignored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::{CniError, ConfigError};
use crate::version::{self, SUPPORTED_VERSIONS};

/// File extensions that hold network configurations.
pub const CONFIG_EXTENSIONS: &[&str] = &["conflist", "conf", "json"];

/// One plugin of a network configuration list.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginConfig {
    /// The plugin type: the binary's file name.
    pub plugin_type: String,
    /// The capabilities the plugin declares (`capabilities` object).
    pub capabilities: BTreeMap<String, bool>,
    /// The plugin's configuration object as written.
    pub raw: Map<String, Value>,
}

/// A validated network configuration list.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkConfigList {
    /// Network name.
    pub name: String,
    /// The spec version the plugins are invoked with (from `cniVersion`, or the newest
    /// supported entry of `cniVersions`).
    pub cni_version: String,
    /// Skip CHECK for this network.
    pub disable_check: bool,
    /// Skip GC for this network (1.1).
    pub disable_gc: bool,
    /// The plugins, in invocation order for ADD.
    pub plugins: Vec<PluginConfig>,
    /// The list as a JSON object (single-plugin files converted), for the result cache.
    pub raw: Value,
    /// The file it was loaded from, if any.
    pub source: Option<PathBuf>,
}

/// Whether a file is a single plugin configuration or a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigFormat {
    /// A `.conflist`.
    List,
    /// A `.conf` / `.json` single plugin configuration (a list is accepted too).
    Single,
}

impl ConfigFormat {
    /// The format a file name implies, `None` if it is not a configuration file.
    pub fn of(path: &Path) -> Option<ConfigFormat> {
        match path.extension()?.to_str()? {
            "conflist" => Some(Self::List),
            "conf" | "json" => Some(Self::Single),
            _ => None,
        }
    }
}

impl NetworkConfigList {
    /// Parse and validate configuration bytes; `origin` names the file in errors.
    pub fn parse(bytes: &[u8], origin: &Path, format: ConfigFormat) -> Result<Self, ConfigError> {
        let err = |field: &str, message: String| ConfigError {
            file: origin.to_path_buf(),
            field: field.to_string(),
            message,
        };
        let value: Value = serde_json::from_slice(bytes).map_err(|e| {
            err(
                "",
                format!(
                    "not valid JSON at line {} column {}: {e}",
                    e.line(),
                    e.column()
                ),
            )
        })?;
        let Value::Object(obj) = value else {
            return Err(err("", "must be a JSON object".to_string()));
        };
        let is_list = match format {
            ConfigFormat::List => true,
            // A list in a .conf file is what its author meant; accept it.
            ConfigFormat::Single => obj.contains_key("plugins"),
        };
        let list_obj = if is_list {
            obj
        } else {
            if !obj.contains_key("type") {
                return Err(err(
                    "type",
                    "missing (a single plugin configuration needs a type)".into(),
                ));
            }
            let mut list = Map::new();
            for key in [
                "name",
                "cniVersion",
                "cniVersions",
                "disableCheck",
                "disableGC",
            ] {
                if let Some(v) = obj.get(key) {
                    list.insert(key.to_string(), v.clone());
                }
            }
            list.insert("plugins".into(), Value::Array(vec![Value::Object(obj)]));
            list
        };
        let mut parsed =
            Self::from_object(&list_obj).map_err(|(field, message)| err(&field, message))?;
        parsed.source = Some(origin.to_path_buf());
        Ok(parsed)
    }

    /// Build a list from an in-memory JSON object (e.g. a cached configuration).
    pub fn from_value(value: &Value, origin: &str) -> Result<Self, ConfigError> {
        let err = |field: String, message: String| ConfigError {
            file: PathBuf::from(origin),
            field,
            message,
        };
        let Value::Object(obj) = value else {
            return Err(err(String::new(), "must be a JSON object".into()));
        };
        Self::from_object(obj).map_err(|(f, m)| err(f, m))
    }

    fn from_object(obj: &Map<String, Value>) -> Result<Self, (String, String)> {
        let name = match obj.get("name") {
            None => return Err(("name".into(), "missing".into())),
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err(("name".into(), "must be a string".into())),
        };
        validate_network_name(&name).map_err(|m| ("name".to_string(), m))?;

        let cni_version = pick_version(obj)?;
        let disable_check = optional_bool(obj, "disableCheck")?;
        let disable_gc = optional_bool(obj, "disableGC")?;

        let plugins = match obj.get("plugins") {
            None => return Err(("plugins".into(), "missing".into())),
            Some(Value::Array(a)) if a.is_empty() => {
                return Err(("plugins".into(), "must hold at least one plugin".into()));
            }
            Some(Value::Array(a)) => a,
            Some(_) => return Err(("plugins".into(), "must be an array".into())),
        };
        let mut parsed = Vec::with_capacity(plugins.len());
        for (i, p) in plugins.iter().enumerate() {
            parsed.push(parse_plugin(p, &format!("plugins[{i}]"))?);
        }
        Ok(Self {
            name,
            cni_version,
            disable_check,
            disable_gc,
            plugins: parsed,
            raw: Value::Object(obj.clone()),
            source: None,
        })
    }

    /// Where the list came from, for messages.
    pub fn origin(&self) -> String {
        self.source
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| format!("network {}", self.name))
    }
}

fn pick_version(obj: &Map<String, Value>) -> Result<String, (String, String)> {
    // 1.1: `cniVersions` lists the versions the file is valid for; use the newest we speak.
    if let Some(v) = obj.get("cniVersions") {
        let Value::Array(list) = v else {
            return Err(("cniVersions".into(), "must be an array of strings".into()));
        };
        let mut best: Option<&str> = None;
        for (i, item) in list.iter().enumerate() {
            let Value::String(s) = item else {
                return Err((format!("cniVersions[{i}]"), "must be a string".into()));
            };
            if version::Version::parse(s).is_none() {
                return Err((
                    format!("cniVersions[{i}]"),
                    format!("{s:?} is not a version"),
                ));
            }
            if version::is_supported(s) && best.is_none_or(|b| version::compare(s, b).is_gt()) {
                best = Some(s);
            }
        }
        if let Some(b) = best {
            return Ok(b.to_string());
        }
        if !obj.contains_key("cniVersion") {
            return Err((
                "cniVersions".into(),
                format!(
                    "none of the listed versions is supported (supported: {})",
                    SUPPORTED_VERSIONS.join(", ")
                ),
            ));
        }
    }
    match obj.get("cniVersion") {
        None => Err(("cniVersion".into(), "missing".into())),
        Some(Value::String(s)) if version::is_supported(s) => Ok(s.clone()),
        Some(Value::String(s)) => Err((
            "cniVersion".into(),
            format!(
                "unsupported version {s:?} (supported: {})",
                SUPPORTED_VERSIONS.join(", ")
            ),
        )),
        Some(_) => Err(("cniVersion".into(), "must be a string".into())),
    }
}

fn optional_bool(obj: &Map<String, Value>, key: &str) -> Result<bool, (String, String)> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err((key.to_string(), "must be a boolean".into())),
    }
}

fn parse_plugin(value: &Value, path: &str) -> Result<PluginConfig, (String, String)> {
    let Value::Object(obj) = value else {
        return Err((path.to_string(), "must be an object".into()));
    };
    let plugin_type = match obj.get("type") {
        None => return Err((format!("{path}.type"), "missing".into())),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err((format!("{path}.type"), "must be a string".into())),
    };
    validate_plugin_type(&plugin_type).map_err(|m| (format!("{path}.type"), m))?;
    let mut capabilities = BTreeMap::new();
    match obj.get("capabilities") {
        None | Some(Value::Null) => {}
        Some(Value::Object(caps)) => {
            for (k, v) in caps {
                let Value::Bool(b) = v else {
                    return Err((
                        format!("{path}.capabilities.{k}"),
                        "must be a boolean".into(),
                    ));
                };
                capabilities.insert(k.clone(), *b);
            }
        }
        Some(_) => return Err((format!("{path}.capabilities"), "must be an object".into())),
    }
    Ok(PluginConfig {
        plugin_type,
        capabilities,
        raw: obj.clone(),
    })
}

/// The spec's network name rule: an alphanumeric, then alphanumerics, `_`, `.` or `-`.
pub fn validate_network_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    match chars.next() {
        None => return Err("must not be empty".into()),
        Some(c) if !c.is_ascii_alphanumeric() => {
            return Err(format!("{name:?} must start with a letter or digit"));
        }
        Some(_) => {}
    }
    if let Some(c) = chars.find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))) {
        return Err(format!(
            "{name:?} contains {c:?}; only letters, digits, '_', '.' and '-' are allowed"
        ));
    }
    Ok(())
}

/// A plugin type names a binary in the bin dirs, so it must be a plain file name.
pub fn validate_plugin_type(t: &str) -> Result<(), String> {
    if t.is_empty() {
        return Err("must not be empty".into());
    }
    if t.contains('/') || t == "." || t == ".." || t.contains('\0') {
        return Err(format!("{t:?} is not a plain file name"));
    }
    Ok(())
}

/// Read and validate one configuration file.
pub fn load_file(path: &Path) -> Result<NetworkConfigList, ConfigError> {
    let format = ConfigFormat::of(path).ok_or_else(|| ConfigError {
        file: path.to_path_buf(),
        field: String::new(),
        message: format!(
            "not a configuration file (extensions: {})",
            CONFIG_EXTENSIONS.join(", ")
        ),
    })?;
    let bytes = std::fs::read(path).map_err(|e| ConfigError {
        file: path.to_path_buf(),
        field: String::new(),
        message: format!("cannot read: {e}"),
    })?;
    NetworkConfigList::parse(&bytes, path, format)
}

/// The configuration files in `dir`, in lexical order of their names.
pub fn config_files(dir: &Path) -> Result<Vec<PathBuf>, CniError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(CniError::Config(ConfigError {
                file: dir.to_path_buf(),
                field: String::new(),
                message: format!("cannot list directory: {e}"),
            }));
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| ConfigFormat::of(p).is_some() && p.is_file())
        .collect();
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(files)
}

/// The outcome of scanning a configuration directory.
#[derive(Debug, Clone, PartialEq)]
pub struct DirScan {
    /// The first valid network, in lexical file order.
    pub network: Option<NetworkConfigList>,
    /// Files before it (or all files, if none is valid) that were skipped, and why.
    pub skipped: Vec<ConfigError>,
}

/// Scan `dir`: the first valid network in lexical file order, and why earlier files were
/// skipped. A missing directory holds no network.
pub fn scan_dir(dir: &Path) -> Result<DirScan, CniError> {
    let mut skipped = Vec::new();
    for file in config_files(dir)? {
        match load_file(&file) {
            Ok(network) => {
                return Ok(DirScan {
                    network: Some(network),
                    skipped,
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "skipping CNI configuration file");
                skipped.push(e);
            }
        }
    }
    Ok(DirScan {
        network: None,
        skipped,
    })
}

/// Load the network from `dir`: the first valid file in lexical order, or
/// [`CniError::NoNetwork`] listing why each file was skipped.
pub fn load_dir(dir: &Path) -> Result<NetworkConfigList, CniError> {
    let scan = scan_dir(dir)?;
    scan.network.ok_or_else(|| CniError::NoNetwork {
        dir: dir.to_path_buf(),
        problems: scan.skipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, format: ConfigFormat) -> Result<NetworkConfigList, ConfigError> {
        NetworkConfigList::parse(
            text.as_bytes(),
            Path::new("/etc/cni/net.d/10-test.conflist"),
            format,
        )
    }

    #[test]
    fn valid_configs() {
        // (input, format, name, version, plugin types)
        let cases: &[(&str, ConfigFormat, &str, &str, &[&str])] = &[
            (
                r#"{"cniVersion":"1.0.0","name":"net","plugins":[{"type":"bridge"},{"type":"portmap","capabilities":{"portMappings":true}}]}"#,
                ConfigFormat::List,
                "net",
                "1.0.0",
                &["bridge", "portmap"],
            ),
            (
                r#"{"cniVersion":"0.3.1","name":"old-net_1.x","plugins":[{"type":"ptp"}]}"#,
                ConfigFormat::List,
                "old-net_1.x",
                "0.3.1",
                &["ptp"],
            ),
            (
                r#"{"cniVersion":"0.4.0","name":"single","type":"bridge","bridge":"cni0"}"#,
                ConfigFormat::Single,
                "single",
                "0.4.0",
                &["bridge"],
            ),
            // 1.1 cniVersions: the newest supported entry wins over cniVersion.
            (
                r#"{"cniVersion":"1.0.0","cniVersions":["0.4.0","1.1.0","9.9.9"],"name":"n","plugins":[{"type":"x"}]}"#,
                ConfigFormat::List,
                "n",
                "1.1.0",
                &["x"],
            ),
            (
                r#"{"cniVersions":["1.0.0"],"name":"n","plugins":[{"type":"x"}]}"#,
                ConfigFormat::List,
                "n",
                "1.0.0",
                &["x"],
            ),
            // A list in a .conf file.
            (
                r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"x"}]}"#,
                ConfigFormat::Single,
                "n",
                "1.0.0",
                &["x"],
            ),
        ];
        for (input, format, name, version, types) in cases {
            let got = parse(input, *format).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(got.name, *name, "{input}");
            assert_eq!(got.cni_version, *version, "{input}");
            let got_types: Vec<&str> = got.plugins.iter().map(|p| p.plugin_type.as_str()).collect();
            assert_eq!(got_types, *types, "{input}");
        }
    }

    #[test]
    fn flags_and_capabilities() {
        let got = parse(
            r#"{"cniVersion":"1.1.0","name":"n","disableCheck":true,"disableGC":true,
                "plugins":[{"type":"portmap","capabilities":{"portMappings":true,"bandwidth":false}}]}"#,
            ConfigFormat::List,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(got.disable_check && got.disable_gc);
        assert_eq!(got.plugins[0].capabilities.get("portMappings"), Some(&true));
        assert_eq!(got.plugins[0].capabilities.get("bandwidth"), Some(&false));
    }

    #[test]
    fn invalid_configs_name_the_field() {
        // (input, format, field, part of the message)
        let cases: &[(&str, ConfigFormat, &str, &str)] = &[
            ("{not json", ConfigFormat::List, "", "line 1 column 2"),
            ("[1,2]", ConfigFormat::List, "", "JSON object"),
            (
                r#"{"cniVersion":"1.0.0","plugins":[{"type":"x"}]}"#,
                ConfigFormat::List,
                "name",
                "missing",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":7,"plugins":[{"type":"x"}]}"#,
                ConfigFormat::List,
                "name",
                "string",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"","plugins":[{"type":"x"}]}"#,
                ConfigFormat::List,
                "name",
                "empty",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"-bad","plugins":[{"type":"x"}]}"#,
                ConfigFormat::List,
                "name",
                "start",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"a b","plugins":[{"type":"x"}]}"#,
                ConfigFormat::List,
                "name",
                "' '",
            ),
            (
                r#"{"name":"n","plugins":[{"type":"x"}]}"#,
                ConfigFormat::List,
                "cniVersion",
                "missing",
            ),
            (
                r#"{"cniVersion":"0.5.0","name":"n","plugins":[{"type":"x"}]}"#,
                ConfigFormat::List,
                "cniVersion",
                "unsupported",
            ),
            (
                r#"{"cniVersion":1,"name":"n","plugins":[{"type":"x"}]}"#,
                ConfigFormat::List,
                "cniVersion",
                "string",
            ),
            (
                r#"{"cniVersions":"1.0.0","name":"n","plugins":[{"type":"x"}]}"#,
                ConfigFormat::List,
                "cniVersions",
                "array",
            ),
            (
                r#"{"cniVersions":["1.0.0",2],"name":"n","plugins":[{"type":"x"}]}"#,
                ConfigFormat::List,
                "cniVersions[1]",
                "string",
            ),
            (
                r#"{"cniVersions":["2.0.0"],"name":"n","plugins":[{"type":"x"}]}"#,
                ConfigFormat::List,
                "cniVersions",
                "none",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n"}"#,
                ConfigFormat::List,
                "plugins",
                "missing",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","plugins":[]}"#,
                ConfigFormat::List,
                "plugins",
                "at least one",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","plugins":{}}"#,
                ConfigFormat::List,
                "plugins",
                "array",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"a"},{"bridge":"x"}]}"#,
                ConfigFormat::List,
                "plugins[1].type",
                "missing",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"a"},3]}"#,
                ConfigFormat::List,
                "plugins[1]",
                "object",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"../bin/sh"}]}"#,
                ConfigFormat::List,
                "plugins[0].type",
                "file name",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":""}]}"#,
                ConfigFormat::List,
                "plugins[0].type",
                "empty",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"a","capabilities":[]}]}"#,
                ConfigFormat::List,
                "plugins[0].capabilities",
                "object",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"a","capabilities":{"portMappings":"yes"}}]}"#,
                ConfigFormat::List,
                "plugins[0].capabilities.portMappings",
                "boolean",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","disableCheck":"true","plugins":[{"type":"a"}]}"#,
                ConfigFormat::List,
                "disableCheck",
                "boolean",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","bridge":"cni0"}"#,
                ConfigFormat::Single,
                "type",
                "missing",
            ),
        ];
        for (input, format, field, message) in cases {
            let err = match parse(input, *format) {
                Ok(_) => panic!("{input}: parsed"),
                Err(e) => e,
            };
            assert_eq!(err.field, *field, "{input}: {err}");
            assert!(err.message.contains(message), "{input}: {err}");
            assert!(
                err.to_string()
                    .starts_with("/etc/cni/net.d/10-test.conflist: "),
                "{err}"
            );
        }
    }

    #[test]
    fn directory_lexical_order_and_skips() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let write = |name: &str, text: &str| {
            std::fs::write(dir.path().join(name), text).unwrap_or_else(|e| panic!("{e}"));
        };
        write(
            "05-broken.conflist",
            r#"{"cniVersion":"1.0.0","name":"broken","plugins":[{"type":"a"},{}]}"#,
        );
        write(
            "10-b.conf",
            r#"{"cniVersion":"0.4.0","name":"second","type":"bridge"}"#,
        );
        write(
            "20-a.conflist",
            r#"{"cniVersion":"1.0.0","name":"third","plugins":[{"type":"a"}]}"#,
        );
        write("00-ignored.txt", "not a config");
        let scan = scan_dir(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let net = scan.network.unwrap_or_else(|| panic!("no network"));
        assert_eq!(net.name, "second");
        assert_eq!(
            net.source.as_deref(),
            Some(dir.path().join("10-b.conf").as_path())
        );
        assert_eq!(scan.skipped.len(), 1);
        assert_eq!(scan.skipped[0].file, dir.path().join("05-broken.conflist"));
        assert_eq!(scan.skipped[0].field, "plugins[1].type");

        std::fs::remove_file(dir.path().join("10-b.conf")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            load_dir(dir.path()).map(|n| n.name).ok().as_deref(),
            Some("third")
        );

        std::fs::remove_file(dir.path().join("20-a.conflist")).unwrap_or_else(|e| panic!("{e}"));
        let err = match load_dir(dir.path()) {
            Ok(n) => panic!("loaded {}", n.name),
            Err(e) => e,
        };
        let msg = err.to_string();
        assert!(
            msg.contains("05-broken.conflist: plugins[1].type: missing"),
            "{msg}"
        );

        let missing = dir.path().join("nope");
        assert!(matches!(
            load_dir(&missing),
            Err(CniError::NoNetwork { .. })
        ));
    }
}
