//! Errors of the CNI library, including the spec's plugin error format.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The well-known error codes of the CNI spec (0-99 are reserved, 100+ are plugin-specific).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// 1: incompatible CNI version.
    IncompatibleVersion,
    /// 2: unsupported field in network configuration.
    UnsupportedField,
    /// 3: container unknown or does not exist.
    UnknownContainer,
    /// 4: invalid necessary environment variables.
    InvalidEnvironmentVariables,
    /// 5: I/O failure.
    IoFailure,
    /// 6: failed to decode content.
    DecodingFailure,
    /// 7: invalid network config.
    InvalidNetworkConfig,
    /// 11: try again later.
    TryAgainLater,
    /// 50: the plugin is not available (cannot service ADD requests).
    PluginNotAvailable,
    /// 51: the plugin is not available, and existing containers may have limited connectivity.
    PluginNotAvailableLimitedConnectivity,
    /// Any other code (plugin-specific codes are 100 and above).
    Other(u32),
}

impl ErrorCode {
    /// The numeric code.
    pub fn as_u32(self) -> u32 {
        match self {
            Self::IncompatibleVersion => 1,
            Self::UnsupportedField => 2,
            Self::UnknownContainer => 3,
            Self::InvalidEnvironmentVariables => 4,
            Self::IoFailure => 5,
            Self::DecodingFailure => 6,
            Self::InvalidNetworkConfig => 7,
            Self::TryAgainLater => 11,
            Self::PluginNotAvailable => 50,
            Self::PluginNotAvailableLimitedConnectivity => 51,
            Self::Other(c) => c,
        }
    }

    /// Whether the same call may succeed later (code 11 and the "not available" codes).
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            Self::TryAgainLater
                | Self::PluginNotAvailable
                | Self::PluginNotAvailableLimitedConnectivity
        )
    }
}

impl From<u32> for ErrorCode {
    fn from(code: u32) -> Self {
        match code {
            1 => Self::IncompatibleVersion,
            2 => Self::UnsupportedField,
            3 => Self::UnknownContainer,
            4 => Self::InvalidEnvironmentVariables,
            5 => Self::IoFailure,
            6 => Self::DecodingFailure,
            7 => Self::InvalidNetworkConfig,
            11 => Self::TryAgainLater,
            50 => Self::PluginNotAvailable,
            51 => Self::PluginNotAvailableLimitedConnectivity,
            other => Self::Other(other),
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.as_u32())
    }
}

/// The error object a plugin prints on stdout when it fails (CNI spec, "Error").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginError {
    /// The CNI version of the error object.
    #[serde(
        rename = "cniVersion",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub cni_version: String,
    /// Error code.
    #[serde(with = "code_serde")]
    pub code: ErrorCode,
    /// Short message.
    #[serde(default)]
    pub msg: String,
    /// Longer details.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub details: String,
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "code {}: {}", self.code, self.msg)?;
        if !self.details.is_empty() {
            write!(f, "; {}", self.details)?;
        }
        Ok(())
    }
}

mod code_serde {
    use super::ErrorCode;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(code: &ErrorCode, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(code.as_u32())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ErrorCode, D::Error> {
        Ok(ErrorCode::from(u32::deserialize(d)?))
    }
}

/// A problem with one network configuration file: the file, the field and what is wrong.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("{}: {field}: {message}", file.display())]
pub struct ConfigError {
    /// The configuration file (or a description of the source for in-memory configs).
    pub file: PathBuf,
    /// The offending field, as a JSON path (e.g. `plugins[1].type`); empty for the whole file.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// An error of the CNI library.
#[derive(Debug, Error)]
pub enum CniError {
    /// A configuration file is invalid.
    #[error("invalid network configuration: {0}")]
    Config(#[from] ConfigError),
    /// No valid network configuration was found in the configuration directory.
    #[error("no valid CNI network configuration in {}{}", dir.display(), summarize(problems))]
    NoNetwork {
        /// The configuration directory.
        dir: PathBuf,
        /// Why each candidate file was skipped.
        problems: Vec<ConfigError>,
    },
    /// An argument of the call (container ID, interface name, ...) is invalid.
    #[error("invalid {field}: {message}")]
    InvalidArgument {
        /// The argument.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The plugin binary is not in any of the bin dirs.
    #[error("plugin {plugin}: binary not found in {dirs:?}")]
    PluginNotFound {
        /// Plugin type.
        plugin: String,
        /// The directories searched.
        dirs: Vec<PathBuf>,
    },
    /// The plugin binary could not be started or talked to.
    #[error("plugin {plugin} ({}): {source}", path.display())]
    Exec {
        /// Plugin type.
        plugin: String,
        /// Binary path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The plugin failed and reported a CNI error object.
    #[error("plugin {plugin} {command} failed: {error}")]
    Plugin {
        /// Plugin type.
        plugin: String,
        /// CNI command (ADD, DEL, ...).
        command: String,
        /// The error the plugin reported.
        error: Box<PluginError>,
    },
    /// The plugin failed without a parseable CNI error object.
    #[error("plugin {plugin} {command} failed ({status}): {output}")]
    PluginFailed {
        /// Plugin type.
        plugin: String,
        /// CNI command.
        command: String,
        /// Exit status description.
        status: String,
        /// What the plugin printed (stdout, else stderr), trimmed.
        output: String,
    },
    /// The plugin did not finish in time and was killed.
    #[error("plugin {plugin} {command} timed out after {timeout:?}")]
    Timeout {
        /// Plugin type.
        plugin: String,
        /// CNI command.
        command: String,
        /// The timeout.
        timeout: Duration,
    },
    /// The plugin printed a result that does not follow the spec.
    #[error("plugin {plugin}: invalid result: {message}")]
    InvalidResult {
        /// Plugin type.
        plugin: String,
        /// What is wrong, with the field.
        message: String,
    },
    /// The operation is not defined for the network's CNI version or is disabled.
    #[error("network {network}: {command} is not supported: {reason}")]
    NotSupported {
        /// Network name.
        network: String,
        /// CNI command.
        command: String,
        /// Why.
        reason: String,
    },
    /// CHECK needs the result of a previous ADD, and there is none.
    #[error("network {network}: no cached result for container {container_id} interface {ifname}")]
    NoCachedResult {
        /// Network name.
        network: String,
        /// Container ID.
        container_id: String,
        /// Interface name.
        ifname: String,
    },
    /// Reading or writing the result cache failed.
    #[error("result cache {}: {message}", path.display())]
    Cache {
        /// The cache file or directory.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// Creating, opening or removing a network namespace failed.
    #[error("network namespace {}: {message}", path.display())]
    Netns {
        /// The namespace path.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// Watching the configuration directory failed.
    #[error("watching {}: {message}", path.display())]
    Watch {
        /// The directory.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

impl CniError {
    /// The CNI error code the plugin reported, if this is a plugin error.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Plugin { error, .. } => Some(error.code),
            _ => None,
        }
    }

    /// Whether retrying later may succeed (plugin said "try again later" / "not available",
    /// a timeout, or no network configured yet).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Plugin { error, .. } => error.code.is_transient(),
            Self::Timeout { .. } | Self::NoNetwork { .. } => true,
            _ => false,
        }
    }
}

fn summarize(problems: &[ConfigError]) -> String {
    if problems.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = problems.iter().map(ToString::to_string).collect();
    format!(" (skipped: {})", parts.join("; "))
}

impl From<CniError> for kubelet_core::NetworkError {
    fn from(err: CniError) -> Self {
        match &err {
            CniError::NoNetwork { .. } => Self::NotReady(err.to_string()),
            CniError::Plugin { plugin, .. }
            | CniError::PluginFailed { plugin, .. }
            | CniError::PluginNotFound { plugin, .. }
            | CniError::Exec { plugin, .. }
            | CniError::Timeout { plugin, .. }
            | CniError::InvalidResult { plugin, .. } => Self::Plugin {
                plugin: plugin.clone(),
                message: err.to_string(),
            },
            _ => Self::Plugin {
                plugin: "cni".to_string(),
                message: err.to_string(),
            },
        }
    }
}
