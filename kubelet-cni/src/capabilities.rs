//! Runtime configuration handed to plugins that declare the matching capability
//! (CNI conventions: `portMappings`, `bandwidth`, `ipRanges`, `dns`, ...).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::config::PluginConfig;

/// A host port mapping (`portMappings` capability).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    /// Port on the host.
    pub host_port: u16,
    /// Port in the container.
    pub container_port: u16,
    /// `tcp`, `udp` or `sctp`.
    pub protocol: String,
    /// Host IP to bind; empty for all.
    #[serde(rename = "hostIP", default, skip_serializing_if = "String::is_empty")]
    pub host_ip: String,
}

/// Traffic shaping (`bandwidth` capability). Rates in bits per second, bursts in bits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bandwidth {
    /// Ingress rate.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ingress_rate: u64,
    /// Ingress burst.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ingress_burst: u64,
    /// Egress rate.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub egress_rate: u64,
    /// Egress burst.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub egress_burst: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// One IP range (`ipRanges` capability, a list of range sets).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IpRange {
    /// Subnet in CIDR form.
    pub subnet: String,
    /// First address to allocate.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub range_start: String,
    /// Last address to allocate.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub range_end: String,
    /// Gateway.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub gateway: String,
}

/// DNS settings (`dns` capability).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsConfig {
    /// Name servers.
    #[serde(default)]
    pub servers: Vec<String>,
    /// Search domains.
    #[serde(default)]
    pub searches: Vec<String>,
    /// resolv.conf options.
    #[serde(default)]
    pub options: Vec<String>,
}

/// The capability arguments of one attachment. Each is handed only to plugins that declare
/// the capability in their `capabilities` object.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuntimeConfig {
    /// `portMappings`.
    pub port_mappings: Vec<PortMapping>,
    /// `bandwidth`.
    pub bandwidth: Option<Bandwidth>,
    /// `ipRanges`.
    pub ip_ranges: Vec<Vec<IpRange>>,
    /// `dns`.
    pub dns: Option<DnsConfig>,
    /// Any other capability (e.g. `mac`, `ips`, `cgroupPath`), by name.
    pub extra: BTreeMap<String, Value>,
}

impl RuntimeConfig {
    /// All capability arguments, keyed by capability name (empty ones left out).
    pub fn to_map(&self) -> Map<String, Value> {
        let mut map = Map::new();
        if !self.port_mappings.is_empty() {
            map.insert(
                "portMappings".into(),
                serde_json::to_value(&self.port_mappings).unwrap_or_default(),
            );
        }
        if let Some(b) = &self.bandwidth {
            map.insert(
                "bandwidth".into(),
                serde_json::to_value(b).unwrap_or_default(),
            );
        }
        if !self.ip_ranges.is_empty() {
            map.insert(
                "ipRanges".into(),
                serde_json::to_value(&self.ip_ranges).unwrap_or_default(),
            );
        }
        if let Some(d) = &self.dns {
            map.insert("dns".into(), serde_json::to_value(d).unwrap_or_default());
        }
        for (k, v) in &self.extra {
            map.insert(k.clone(), v.clone());
        }
        map
    }

    /// Rebuild from a capability map (as stored in the result cache).
    pub fn from_map(map: &Map<String, Value>) -> Result<Self, String> {
        let mut rc = RuntimeConfig::default();
        for (k, v) in map {
            match k.as_str() {
                "portMappings" => {
                    rc.port_mappings = serde_json::from_value(v.clone())
                        .map_err(|e| format!("portMappings: {e}"))?;
                }
                "bandwidth" => {
                    rc.bandwidth = Some(
                        serde_json::from_value(v.clone()).map_err(|e| format!("bandwidth: {e}"))?,
                    );
                }
                "ipRanges" => {
                    rc.ip_ranges =
                        serde_json::from_value(v.clone()).map_err(|e| format!("ipRanges: {e}"))?;
                }
                "dns" => {
                    rc.dns =
                        Some(serde_json::from_value(v.clone()).map_err(|e| format!("dns: {e}"))?)
                }
                _ => {
                    rc.extra.insert(k.clone(), v.clone());
                }
            }
        }
        Ok(rc)
    }

    /// The `runtimeConfig` object for one plugin: only the capabilities it declares, `None`
    /// if it declares none that we have.
    pub fn for_plugin(&self, plugin: &PluginConfig) -> Option<Map<String, Value>> {
        let all = self.to_map();
        let picked: Map<String, Value> = all
            .into_iter()
            .filter(|(k, _)| plugin.capabilities.get(k).copied().unwrap_or(false))
            .collect();
        (!picked.is_empty()).then_some(picked)
    }
}

/// Pod annotation with the ingress rate limit (a quantity, bits per second).
pub const INGRESS_BANDWIDTH_ANNOTATION: &str = "kubernetes.io/ingress-bandwidth";
/// Pod annotation with the egress rate limit (a quantity, bits per second).
pub const EGRESS_BANDWIDTH_ANNOTATION: &str = "kubernetes.io/egress-bandwidth";

/// The `bandwidth` capability from a pod's annotations, as the reference kubelet reads them:
/// rates between 1k and 1P bits per second, bursts unlimited (`u32::MAX`).
pub fn bandwidth_from_annotations(
    annotations: &BTreeMap<String, String>,
) -> Result<Option<Bandwidth>, String> {
    let read = |key: &str| -> Result<Option<u64>, String> {
        let Some(v) = annotations.get(key) else {
            return Ok(None);
        };
        let rate = parse_rate(v).map_err(|e| format!("annotation {key}: {e}"))?;
        if !(1_000..=1_000_000_000_000_000).contains(&rate) {
            return Err(format!("annotation {key}: {v:?} is outside 1k..1P"));
        }
        Ok(Some(rate))
    };
    let ingress = read(INGRESS_BANDWIDTH_ANNOTATION)?;
    let egress = read(EGRESS_BANDWIDTH_ANNOTATION)?;
    if ingress.is_none() && egress.is_none() {
        return Ok(None);
    }
    let burst = u64::from(u32::MAX);
    Ok(Some(Bandwidth {
        ingress_rate: ingress.unwrap_or(0),
        ingress_burst: if ingress.is_some() { burst } else { 0 },
        egress_rate: egress.unwrap_or(0),
        egress_burst: if egress.is_some() { burst } else { 0 },
    }))
}

/// A rate quantity (`10M`, `1Gi`) in whole units, parsed as Kubernetes parses quantities.
fn parse_rate(s: &str) -> Result<u64, String> {
    let q =
        kubelet_core::k8s_openapi::apimachinery::pkg::api::resource::Quantity(s.trim().to_string());
    let value = kubelet_core::quantity::parse_units(&q)?;
    u64::try_from(value).map_err(|_| format!("{s:?}: must not be negative"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plugin(caps: &[(&str, bool)]) -> PluginConfig {
        PluginConfig {
            plugin_type: "x".into(),
            capabilities: caps.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            raw: Map::new(),
        }
    }

    #[test]
    fn only_declared_capabilities_are_passed() {
        let rc = RuntimeConfig {
            port_mappings: vec![PortMapping {
                host_port: 8080,
                container_port: 80,
                protocol: "tcp".into(),
                host_ip: String::new(),
            }],
            bandwidth: Some(Bandwidth {
                ingress_rate: 1000,
                ingress_burst: 2000,
                ..Default::default()
            }),
            ..Default::default()
        };
        type Case<'a> = (&'a [(&'a str, bool)], Option<&'a str>);
        let cases: &[Case] = &[
            (&[], None),
            (&[("portMappings", false)], None),
            (&[("dns", true)], None),
            (
                &[("portMappings", true)],
                Some(r#"{"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}]}"#),
            ),
            (
                &[("portMappings", true), ("bandwidth", true)],
                Some(
                    r#"{"bandwidth":{"ingressRate":1000,"ingressBurst":2000},"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}]}"#,
                ),
            ),
        ];
        for (caps, want) in cases {
            let got = rc.for_plugin(&plugin(caps)).map(Value::Object);
            let want = want.map(|w| serde_json::from_str::<Value>(w).unwrap_or_default());
            assert_eq!(got, want, "{caps:?}");
        }
        let back = RuntimeConfig::from_map(&rc.to_map()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, rc);
    }

    #[test]
    fn bandwidth_annotations() {
        let ann = |i: Option<&str>, e: Option<&str>| {
            let mut m = BTreeMap::new();
            if let Some(i) = i {
                m.insert(INGRESS_BANDWIDTH_ANNOTATION.to_string(), i.to_string());
            }
            if let Some(e) = e {
                m.insert(EGRESS_BANDWIDTH_ANNOTATION.to_string(), e.to_string());
            }
            m
        };
        assert_eq!(bandwidth_from_annotations(&ann(None, None)), Ok(None));
        let b = bandwidth_from_annotations(&ann(Some("10M"), Some("1.5Mi")))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            b,
            Some(Bandwidth {
                ingress_rate: 10_000_000,
                ingress_burst: u64::from(u32::MAX),
                egress_rate: 1_572_864,
                egress_burst: u64::from(u32::MAX),
            })
        );
        for bad in ["10x", "100", "2E", "", "abc"] {
            assert!(
                bandwidth_from_annotations(&ann(Some(bad), None)).is_err(),
                "{bad}"
            );
        }
    }
}
