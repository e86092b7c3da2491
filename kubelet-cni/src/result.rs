//! Plugin results: parsed from any spec version into one shape, the raw JSON kept for chaining.

use std::net::IpAddr;

use serde_json::{Map, Value};

use crate::version::{self, Version};

/// An interface a plugin created or configured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Interface {
    /// Interface name.
    pub name: String,
    /// MAC address, if any.
    pub mac: String,
    /// Netns path for interfaces inside the container; empty for host interfaces.
    pub sandbox: String,
}

/// An address assigned to an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpConfig {
    /// The address.
    pub address: IpAddr,
    /// Prefix length.
    pub prefix: u8,
    /// Default gateway, if any.
    pub gateway: Option<IpAddr>,
    /// Index into [`CniResult::interfaces`], if given.
    pub interface: Option<usize>,
}

/// A route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Destination in CIDR form.
    pub dst: String,
    /// Next hop, if any.
    pub gw: Option<IpAddr>,
}

/// DNS information.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dns {
    /// Name servers.
    pub nameservers: Vec<String>,
    /// Local domain.
    pub domain: String,
    /// Search domains.
    pub search: Vec<String>,
    /// resolv.conf options.
    pub options: Vec<String>,
}

/// A plugin's (or a chain's) result, in the shape of spec 1.0, plus the JSON it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct CniResult {
    /// The result's `cniVersion`.
    pub cni_version: String,
    /// Interfaces.
    pub interfaces: Vec<Interface>,
    /// Addresses.
    pub ips: Vec<IpConfig>,
    /// Routes.
    pub routes: Vec<Route>,
    /// DNS.
    pub dns: Dns,
    /// The JSON as the plugin printed it, handed on as `prevResult`.
    pub raw: Value,
}

impl CniResult {
    /// Parse a result printed by a plugin invoked with `expected_version`. The result's own
    /// `cniVersion` decides the format (0.1/0.2 `ip4`/`ip6`, 0.3/0.4 `ips` with `version`,
    /// 1.x `ips`); a result without one is read as `expected_version`.
    pub fn parse(bytes: &[u8], expected_version: &str) -> Result<Self, String> {
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| format!("not valid JSON: {e}"))?;
        Self::from_value(value, expected_version)
    }

    /// As [`CniResult::parse`], from a JSON value.
    pub fn from_value(value: Value, expected_version: &str) -> Result<Self, String> {
        let Value::Object(obj) = &value else {
            return Err("result must be a JSON object".into());
        };
        let cni_version = match obj.get("cniVersion") {
            None => expected_version.to_string(),
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err("cniVersion: must be a string".into()),
        };
        let v = Version::parse(&cni_version)
            .ok_or_else(|| format!("cniVersion: {cni_version:?} is not a version"))?;
        if !version::is_supported(&cni_version) {
            return Err(format!("cniVersion: unsupported version {cni_version:?}"));
        }
        let dns = parse_dns(obj.get("dns"))?;
        let mut result = if v < Version::V0_3_0 {
            parse_legacy(obj)?
        } else {
            let interfaces = parse_interfaces(obj.get("interfaces"))?;
            let ips = parse_ips(obj.get("ips"), v, interfaces.len())?;
            let routes = parse_routes(obj.get("routes"), "routes")?;
            CniResult {
                cni_version: String::new(),
                interfaces,
                ips,
                routes,
                dns: Dns::default(),
                raw: Value::Null,
            }
        };
        result.cni_version = cni_version;
        result.dns = dns;
        result.raw = value;
        Ok(result)
    }

    /// The pod IPs: at most one per family, in result order, preferring addresses on
    /// interfaces inside the container (those with a `sandbox`).
    pub fn pod_ips(&self) -> Vec<IpAddr> {
        let in_sandbox = |ip: &&IpConfig| {
            ip.interface
                .and_then(|i| self.interfaces.get(i))
                .is_some_and(|iface| !iface.sandbox.is_empty())
        };
        let mut candidates: Vec<&IpConfig> = self.ips.iter().filter(in_sandbox).collect();
        if candidates.is_empty() {
            candidates = self.ips.iter().collect();
        }
        let mut out: Vec<IpAddr> = Vec::new();
        for ip in candidates {
            if !out.iter().any(|o| o.is_ipv4() == ip.address.is_ipv4()) {
                out.push(ip.address);
            }
        }
        out
    }

    /// The interfaces on the host side (no `sandbox`).
    pub fn host_interfaces(&self) -> impl Iterator<Item = &Interface> {
        self.interfaces.iter().filter(|i| i.sandbox.is_empty())
    }
}

fn parse_cidr(s: &str, field: &str) -> Result<(IpAddr, u8), String> {
    let (addr, prefix) = s
        .split_once('/')
        .ok_or_else(|| format!("{field}: {s:?} is not in CIDR form"))?;
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| format!("{field}: {s:?} has an invalid address"))?;
    let prefix: u8 = prefix
        .parse()
        .map_err(|_| format!("{field}: {s:?} has an invalid prefix"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if prefix > max {
        return Err(format!("{field}: {s:?} has a prefix longer than {max}"));
    }
    Ok((addr, prefix))
}

fn opt_ip(obj: &Map<String, Value>, key: &str, field: &str) -> Result<Option<IpAddr>, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => s
            .parse()
            .map(Some)
            .map_err(|_| format!("{field}.{key}: {s:?} is not an IP address")),
        Some(_) => Err(format!("{field}.{key}: must be a string")),
    }
}

fn opt_str(obj: &Map<String, Value>, key: &str, field: &str) -> Result<String, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(format!("{field}.{key}: must be a string")),
    }
}

fn array<'a>(v: Option<&'a Value>, field: &str) -> Result<&'a [Value], String> {
    match v {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(_) => Err(format!("{field}: must be an array")),
    }
}

fn object<'a>(v: &'a Value, field: &str) -> Result<&'a Map<String, Value>, String> {
    v.as_object()
        .ok_or_else(|| format!("{field}: must be an object"))
}

fn parse_interfaces(v: Option<&Value>) -> Result<Vec<Interface>, String> {
    let mut out = Vec::new();
    for (i, item) in array(v, "interfaces")?.iter().enumerate() {
        let field = format!("interfaces[{i}]");
        let obj = object(item, &field)?;
        let name = opt_str(obj, "name", &field)?;
        if name.is_empty() {
            return Err(format!("{field}.name: missing"));
        }
        out.push(Interface {
            name,
            mac: opt_str(obj, "mac", &field)?,
            sandbox: opt_str(obj, "sandbox", &field)?,
        });
    }
    Ok(out)
}

fn parse_ips(
    v: Option<&Value>,
    version: Version,
    n_interfaces: usize,
) -> Result<Vec<IpConfig>, String> {
    let mut out = Vec::new();
    for (i, item) in array(v, "ips")?.iter().enumerate() {
        let field = format!("ips[{i}]");
        let obj = object(item, &field)?;
        let address = match obj.get("address") {
            Some(Value::String(s)) => s,
            Some(_) => return Err(format!("{field}.address: must be a string")),
            None => return Err(format!("{field}.address: missing")),
        };
        let (address, prefix) = parse_cidr(address, &format!("{field}.address"))?;
        if version < Version::V1_0_0 {
            // 0.3.x/0.4.0 name the family; plugins built on the 1.x libraries leave it out
            // when they convert down, so it is checked only when present.
            let family = opt_str(obj, "version", &field)?;
            let want = if address.is_ipv4() { "4" } else { "6" };
            if !family.is_empty() && family != want {
                return Err(format!(
                    "{field}.version: {family:?} does not match address {address}"
                ));
            }
        }
        let gateway = opt_ip(obj, "gateway", &field)?;
        let interface = match obj.get("interface") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => {
                let idx = n
                    .as_u64()
                    .ok_or_else(|| format!("{field}.interface: must be a non-negative integer"))?;
                let idx =
                    usize::try_from(idx).map_err(|_| format!("{field}.interface: too large"))?;
                if idx >= n_interfaces {
                    return Err(format!(
                        "{field}.interface: index {idx} out of range ({n_interfaces} interfaces)"
                    ));
                }
                Some(idx)
            }
            Some(_) => return Err(format!("{field}.interface: must be an integer")),
        };
        out.push(IpConfig {
            address,
            prefix,
            gateway,
            interface,
        });
    }
    Ok(out)
}

fn parse_routes(v: Option<&Value>, name: &str) -> Result<Vec<Route>, String> {
    let mut out = Vec::new();
    for (i, item) in array(v, name)?.iter().enumerate() {
        let field = format!("{name}[{i}]");
        let obj = object(item, &field)?;
        let dst = opt_str(obj, "dst", &field)?;
        parse_cidr(&dst, &format!("{field}.dst"))?;
        out.push(Route {
            dst,
            gw: opt_ip(obj, "gw", &field)?,
        });
    }
    Ok(out)
}

fn string_list(obj: &Map<String, Value>, key: &str) -> Result<Vec<String>, String> {
    array(obj.get(key), &format!("dns.{key}"))?
        .iter()
        .map(|v| {
            v.as_str()
                .map(str::to_string)
                .ok_or_else(|| format!("dns.{key}: must be an array of strings"))
        })
        .collect()
}

fn parse_dns(v: Option<&Value>) -> Result<Dns, String> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(Dns::default());
    };
    let obj = object(v, "dns")?;
    Ok(Dns {
        nameservers: string_list(obj, "nameservers")?,
        domain: opt_str(obj, "domain", "dns")?,
        search: string_list(obj, "search")?,
        options: string_list(obj, "options")?,
    })
}

/// 0.1.0 / 0.2.0: `ip4` and `ip6` objects with `ip`, `gateway` and `routes`.
fn parse_legacy(obj: &Map<String, Value>) -> Result<CniResult, String> {
    let mut ips = Vec::new();
    let mut routes = Vec::new();
    for key in ["ip4", "ip6"] {
        let Some(v) = obj.get(key).filter(|v| !v.is_null()) else {
            continue;
        };
        let o = object(v, key)?;
        let ip = match o.get("ip") {
            Some(Value::String(s)) => s,
            Some(_) => return Err(format!("{key}.ip: must be a string")),
            None => return Err(format!("{key}.ip: missing")),
        };
        let (address, prefix) = parse_cidr(ip, &format!("{key}.ip"))?;
        if address.is_ipv4() != (key == "ip4") {
            return Err(format!("{key}.ip: {ip:?} is of the wrong family"));
        }
        ips.push(IpConfig {
            address,
            prefix,
            gateway: opt_ip(o, "gateway", key)?,
            interface: None,
        });
        routes.extend(parse_routes(o.get("routes"), &format!("{key}.routes"))?);
    }
    Ok(CniResult {
        cni_version: String::new(),
        interfaces: Vec::new(),
        ips,
        routes,
        dns: Dns::default(),
        raw: Value::Null,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn results_of_every_version() {
        // (result JSON, version the plugin was called with, pod IPs, #interfaces, #routes)
        let cases: &[(&str, &str, &[&str], usize, usize)] = &[
            (
                r#"{"cniVersion":"1.0.0","interfaces":[{"name":"cni0","mac":"aa:bb:cc:dd:ee:ff"},{"name":"eth0","sandbox":"/var/run/netns/x"}],
                   "ips":[{"address":"10.1.0.1/24","interface":0},{"address":"10.88.0.5/16","gateway":"10.88.0.1","interface":1},
                          {"address":"fd00::5/64","interface":1},{"address":"10.88.0.6/16","interface":1}],
                   "routes":[{"dst":"0.0.0.0/0"},{"dst":"::/0","gw":"fd00::1"}],"dns":{"nameservers":["10.96.0.10"]}}"#,
                "1.0.0",
                &["10.88.0.5", "fd00::5"],
                2,
                2,
            ),
            (
                r#"{"cniVersion":"0.4.0","interfaces":[{"name":"eth0","sandbox":"/x"}],"ips":[{"version":"6","address":"fd00::2/64","interface":0},{"version":"4","address":"10.0.0.2/24","gateway":"10.0.0.1","interface":0}]}"#,
                "0.4.0",
                &["fd00::2", "10.0.0.2"],
                1,
                0,
            ),
            (
                r#"{"cniVersion":"0.3.1","ips":[{"version":"4","address":"10.0.0.2/24"}]}"#,
                "0.3.1",
                &["10.0.0.2"],
                0,
                0,
            ),
            (
                r#"{"cniVersion":"0.2.0","ip4":{"ip":"10.0.0.2/24","gateway":"10.0.0.1","routes":[{"dst":"0.0.0.0/0"}]},"ip6":{"ip":"fd00::2/64"},"dns":{}}"#,
                "0.2.0",
                &["10.0.0.2", "fd00::2"],
                0,
                1,
            ),
            // What Debian's loopback prints for 0.3.1: no `version` in `ips`.
            (
                r#"{"cniVersion":"0.3.1","interfaces":[{"name":"lo","sandbox":"/x"}],"ips":[{"interface":0,"address":"127.0.0.1/8"},{"interface":0,"address":"::1/128"}],"dns":{}}"#,
                "0.3.1",
                &["127.0.0.1", "::1"],
                1,
                0,
            ),
            // No cniVersion: read as the version the plugin was invoked with.
            (
                r#"{"ips":[{"address":"10.0.0.9/8"}]}"#,
                "1.0.0",
                &["10.0.0.9"],
                0,
                0,
            ),
            (r#"{"cniVersion":"1.1.0"}"#, "1.1.0", &[], 0, 0),
        ];
        for (input, version, want, n_if, n_routes) in cases {
            let got = CniResult::parse(input.as_bytes(), version)
                .unwrap_or_else(|e| panic!("{input}: {e}"));
            let want: Vec<IpAddr> = want.iter().map(|s| ip(s)).collect();
            assert_eq!(got.pod_ips(), want, "{input}");
            assert_eq!(got.interfaces.len(), *n_if, "{input}");
            assert_eq!(got.routes.len(), *n_routes, "{input}");
            assert_eq!(
                got.raw,
                serde_json::from_str::<Value>(input).unwrap_or_default()
            );
        }
    }

    #[test]
    fn invalid_results_name_the_field() {
        let cases: &[(&str, &str)] = &[
            ("nope", "not valid JSON"),
            ("[]", "JSON object"),
            (r#"{"cniVersion":1}"#, "cniVersion: must be a string"),
            (r#"{"cniVersion":"7.0.0"}"#, "unsupported version"),
            (
                r#"{"cniVersion":"1.0.0","ips":{}}"#,
                "ips: must be an array",
            ),
            (
                r#"{"cniVersion":"1.0.0","ips":[{}]}"#,
                "ips[0].address: missing",
            ),
            (
                r#"{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.1"}]}"#,
                "ips[0].address: \"10.0.0.1\" is not in CIDR form",
            ),
            (
                r#"{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.300/24"}]}"#,
                "invalid address",
            ),
            (
                r#"{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.1/33"}]}"#,
                "prefix longer than 32",
            ),
            (
                r#"{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.1/24","interface":2}],"interfaces":[{"name":"a"}]}"#,
                "ips[0].interface: index 2 out of range",
            ),
            (
                r#"{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.1/24","interface":-1}]}"#,
                "ips[0].interface: must be a non-negative integer",
            ),
            (
                r#"{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.1/24","gateway":"x"}]}"#,
                "ips[0].gateway: \"x\" is not an IP address",
            ),
            (
                r#"{"cniVersion":"0.3.1","ips":[{"version":"6","address":"10.0.0.1/24"}]}"#,
                "ips[0].version: \"6\" does not match",
            ),
            (
                r#"{"cniVersion":"1.0.0","interfaces":[{"mac":"x"}]}"#,
                "interfaces[0].name: missing",
            ),
            (
                r#"{"cniVersion":"1.0.0","routes":[{"dst":"default"}]}"#,
                "routes[0].dst",
            ),
            (
                r#"{"cniVersion":"1.0.0","dns":{"nameservers":[1]}}"#,
                "dns.nameservers: must be an array of strings",
            ),
            (
                r#"{"cniVersion":"0.2.0","ip4":{"ip":"fd00::1/64"}}"#,
                "ip4.ip: \"fd00::1/64\" is of the wrong family",
            ),
            (r#"{"cniVersion":"0.2.0","ip4":{}}"#, "ip4.ip: missing"),
        ];
        for (input, want) in cases {
            match CniResult::parse(input.as_bytes(), "1.0.0") {
                Ok(r) => panic!("{input}: parsed {r:?}"),
                Err(e) => assert!(e.contains(want), "{input}: got {e:?}, want {want:?}"),
            }
        }
    }
}
