//! The kubelet plugin registration API, client side: ask a registrar socket who it is
//! (`GetInfo`) and tell it the outcome (`NotifyRegistrationStatus`); and the CSI version
//! check the reference kubelet applies to a registering driver.

use std::path::Path;
use std::time::Duration;

use tonic::transport::Channel;
use tracing::Instrument;

use crate::endpoint::{self, call, request};
use crate::error::CsiError;
use crate::proto::pluginregistration as reg;
use crate::proto::pluginregistration::registration_client::RegistrationClient as GrpcClient;

/// `PluginInfo.type` of CSI drivers.
pub const CSI_PLUGIN_TYPE: &str = "CSIPlugin";

/// A CSI spec version a driver claims (`major.minor.patch`, a leading `v` and a
/// `-pre`/`+build` suffix allowed, missing parts 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct CsiVersion {
    /// Major version.
    pub major: u64,
    /// Minor version.
    pub minor: u64,
    /// Patch version.
    pub patch: u64,
}

impl std::fmt::Display for CsiVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl std::str::FromStr for CsiVersion {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let trimmed = s.trim();
        let core = trimmed.strip_prefix('v').unwrap_or(trimmed);
        let core = core.split(['-', '+']).next().unwrap_or_default();
        let parts: Vec<&str> = core.split('.').collect();
        if core.is_empty() || parts.len() > 3 {
            return Err(format!("invalid version {s:?}"));
        }
        let mut numbers = [0u64; 3];
        for (slot, part) in numbers.iter_mut().zip(&parts) {
            *slot = part.parse().map_err(|_| format!("invalid version {s:?}"))?;
        }
        Ok(CsiVersion {
            major: numbers[0],
            minor: numbers[1],
            patch: numbers[2],
        })
    }
}

/// The highest CSI version of `versions` that this kubelet speaks, as the reference picks it:
/// versions above 1.x are skipped (a 2.x need not be compatible), unparsable ones too, and the
/// highest remaining one must be a 1.x (0.x is no longer supported).
pub fn highest_supported_version(versions: &[String]) -> Result<CsiVersion, String> {
    if versions.is_empty() {
        return Err("CSI driver reports no supported versions".into());
    }
    let mut parse_error = None;
    let mut highest: Option<CsiVersion> = None;
    for v in versions {
        match v.parse::<CsiVersion>() {
            Err(e) => parse_error = Some(e),
            Ok(version) if version.major > 1 => {}
            Ok(version) => highest = highest.max(Some(version)),
        }
    }
    match highest {
        None => Err(format!(
            "none of the versions {versions:?} reported by the driver is supported (need 1.x){}",
            parse_error.map(|e| format!(": {e}")).unwrap_or_default()
        )),
        Some(version) if version.major != 1 => Err(format!(
            "highest supported version reported by driver is {version}, must be v1.x"
        )),
        Some(version) => Ok(version),
    }
}

/// A registrar's `pluginregistration.Registration` service on its socket.
#[derive(Debug, Clone)]
pub struct RegistrationClient {
    endpoint: String,
    timeout: Duration,
    client: GrpcClient<Channel>,
}

impl RegistrationClient {
    /// Dial the registrar socket at `path`; every call is bounded by `timeout`.
    pub async fn connect(path: &Path, timeout: Duration) -> Result<Self, CsiError> {
        let endpoint = path.display().to_string();
        let channel = endpoint::connect(&endpoint, path, timeout).await?;
        Ok(RegistrationClient {
            endpoint,
            timeout,
            client: GrpcClient::new(channel),
        })
    }

    /// `GetInfo`: the plugin's type, name, endpoint and versions.
    pub async fn get_info(&self) -> Result<reg::PluginInfo, CsiError> {
        const OP: &str = "GetInfo";
        let mut client = self.client.clone();
        call(
            OP,
            &self.endpoint,
            self.timeout,
            client.get_info(request(reg::InfoRequest {}, self.timeout)),
        )
        .instrument(tracing::debug_span!("plugin_registration", op = OP, socket = %self.endpoint))
        .await
    }

    /// `NotifyRegistrationStatus`: tell the plugin whether it was registered, and why not.
    pub async fn notify_registration_status(
        &self,
        registered: bool,
        error: &str,
    ) -> Result<(), CsiError> {
        const OP: &str = "NotifyRegistrationStatus";
        let mut client = self.client.clone();
        let status = reg::RegistrationStatus {
            plugin_registered: registered,
            error: error.to_string(),
        };
        call(
            OP,
            &self.endpoint,
            self.timeout,
            client.notify_registration_status(request(status, self.timeout)),
        )
        .instrument(tracing::debug_span!("plugin_registration", op = OP, socket = %self.endpoint))
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn versions(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn picks_highest_1x() {
        let v = highest_supported_version(&versions(&["0.3.0", "1.0.0", "v1.2", "2.0.0"]));
        assert_eq!(
            v,
            Ok(CsiVersion {
                major: 1,
                minor: 2,
                patch: 0
            })
        );
    }

    #[test]
    fn refuses_without_1x() {
        assert!(highest_supported_version(&versions(&[])).is_err());
        assert!(highest_supported_version(&versions(&["0.3.0"])).is_err());
        assert!(highest_supported_version(&versions(&["2.0.0", "3.1"])).is_err());
        assert!(highest_supported_version(&versions(&["banana"])).is_err());
        assert!(highest_supported_version(&versions(&["banana", "1.5.0-rc1"])).is_ok());
    }
}
