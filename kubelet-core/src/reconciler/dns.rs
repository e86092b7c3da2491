//! A pod's DNS settings for its sandbox, as the reference kubelet's `pkg/kubelet/network/dns`
//! computes them: the node's resolv.conf (`--resolv-conf`), the pod's `dnsPolicy`
//! (ClusterFirst, ClusterFirstWithHostNet, Default, None), the cluster DNS servers and
//! domain, the pod's `dnsConfig` merged in, and the resolver's limits (3 name servers, 32
//! search domains, 2048 characters of search line, no domain over 253 characters).

use k8s_openapi::api::core::v1::{Pod, PodDNSConfigOption};

use super::spec::{SpecSettings, SpecWarning};
use crate::runtime::DnsConfig;

/// At most this many name servers (the resolver's `MAXNS`).
pub const MAX_NAMESERVERS: usize = 3;
/// At most this many search domains.
pub const MAX_SEARCH_PATHS: usize = 32;
/// At most this many characters in the search line.
pub const MAX_SEARCH_LINE_CHARS: usize = 2048;
/// Longest search domain kept (a DNS-1123 subdomain).
const MAX_DOMAIN_LEN: usize = 253;
/// Largest resolv.conf read.
const MAX_RESOLV_CONF_LEN: u64 = 10 << 20;
/// Options of a ClusterFirst pod.
const DEFAULT_DNS_OPTIONS: [&str; 1] = ["ndots:5"];

/// Event reason for a DNS setting the node cannot honour as asked.
pub const DNS_CONFIG_FORMING: &str = "DNSConfigForming";
/// Event reason for ClusterFirst without cluster DNS servers.
pub const MISSING_CLUSTER_DNS: &str = "MissingClusterDNS";

/// What a resolv.conf says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvConf {
    /// `nameserver` lines, in order.
    pub nameservers: Vec<String>,
    /// The last `search` line's domains, without trailing dots, `.` left out.
    pub searches: Vec<String>,
    /// `options`, a later option replacing an earlier one of the same name.
    pub options: Vec<String>,
}

/// Parse a resolv.conf as the reference does.
pub fn parse_resolv_conf(text: &str) -> Result<ResolvConf, String> {
    let mut conf = ResolvConf::default();
    let mut errors = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.first().copied() {
            Some("nameserver") => match fields.get(1) {
                Some(server) => conf.nameservers.push((*server).to_string()),
                None => errors.push("nameserver list is empty".to_string()),
            },
            Some("search") => {
                conf.searches = fields[1..]
                    .iter()
                    .filter(|s| **s != ".")
                    .map(|s| s.trim_end_matches('.').to_string())
                    .collect();
            }
            Some("options") => {
                for option in &fields[1..] {
                    merge_option(&mut conf.options, option);
                }
            }
            _ => {}
        }
    }
    if errors.is_empty() {
        Ok(conf)
    } else {
        Err(errors.join(", "))
    }
}

fn option_name(option: &str) -> &str {
    option.split(':').next().unwrap_or(option)
}

/// Add an option, replacing one of the same name where it stands.
fn merge_option(options: &mut Vec<String>, option: &str) {
    match options
        .iter_mut()
        .find(|o| option_name(o) == option_name(option))
    {
        Some(existing) => *existing = option.to_string(),
        None => options.push(option.to_string()),
    }
}

/// The node's resolver settings, read from `path` (empty: none, as `--resolv-conf=""`).
pub fn host_dns(path: &str) -> Result<ResolvConf, String> {
    if path.is_empty() {
        return Ok(ResolvConf::default());
    }
    use std::io::Read;
    let file = std::fs::File::open(path)
        .map_err(|e| format!("could not open resolv conf file {path}: {e}"))?;
    let mut text = String::new();
    file.take(MAX_RESOLV_CONF_LEN)
        .read_to_string(&mut text)
        .map_err(|e| format!("could not read resolv conf file {path}: {e}"))?;
    parse_resolv_conf(&text)
        .map_err(|e| format!("Encountered error while parsing resolv conf file {path}: {e}"))
}

fn push_unique(list: &mut Vec<String>, item: &str) {
    if !list.iter().any(|x| x == item) {
        list.push(item.to_string());
    }
}

/// The pod's DNS settings, with warnings (events) for what had to be dropped, given the
/// node's resolver settings `host` (from `settings.resolv_conf`).
///
/// Where this differs from the reference: options keep their order (the reference's come
/// out of a Go map in random order), and without a resolv.conf (`resolv_conf` empty) the
/// Default policy gets one `127.0.0.1` name server whatever the node's IP family.
pub fn pod_dns(
    pod: &Pod,
    settings: &SpecSettings,
    host: &ResolvConf,
) -> (DnsConfig, Vec<SpecWarning>) {
    let mut warnings = Vec::new();
    let spec = pod.spec.as_ref();
    let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
    let policy = spec
        .and_then(|s| s.dns_policy.as_deref())
        .unwrap_or("ClusterFirst");
    let mut config = DnsConfig {
        servers: host.nameservers.clone(),
        searches: host.searches.clone(),
        options: host.options.clone(),
    };
    enum Kind {
        None,
        Cluster,
        Host,
    }
    let kind = match policy {
        "None" => Kind::None,
        "ClusterFirstWithHostNet" => Kind::Cluster,
        "ClusterFirst" if !host_network => Kind::Cluster,
        "ClusterFirst" | "Default" => Kind::Host,
        other => {
            tracing::warn!(
                policy = other,
                "invalid dnsPolicy; falling back to ClusterFirst"
            );
            Kind::Cluster
        }
    };
    let mut host_fallback = matches!(kind, Kind::Host);
    match kind {
        Kind::None => config = DnsConfig::default(),
        Kind::Cluster if !settings.cluster_dns.is_empty() => {
            config.servers = settings.cluster_dns.clone();
            if !settings.cluster_domain.is_empty() {
                let domain = &settings.cluster_domain;
                let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
                let mut searches = Vec::new();
                for s in [
                    format!("{namespace}.svc.{domain}"),
                    format!("svc.{domain}"),
                    domain.clone(),
                ]
                .iter()
                .chain(host.searches.iter())
                {
                    push_unique(&mut searches, s);
                }
                config.searches = searches;
            }
            config.options = DEFAULT_DNS_OPTIONS.map(String::from).to_vec();
        }
        Kind::Cluster => {
            let message = "kubelet does not have ClusterDNS IP configured and cannot create Pod using \"ClusterFirst\" policy. Falling back to \"Default\" policy.";
            warnings.push(SpecWarning {
                reason: MISSING_CLUSTER_DNS,
                message: format!("pod: {:?}. {message}", super::sync::pod_name(pod)),
            });
            host_fallback = true;
        }
        Kind::Host => {}
    }
    if host_fallback && settings.resolv_conf.is_empty() {
        config.servers = vec!["127.0.0.1".to_string()];
        config.searches = vec![".".to_string()];
    }
    if let Some(extra) = spec.and_then(|s| s.dns_config.as_ref()) {
        let mut servers = Vec::new();
        for s in config
            .servers
            .iter()
            .chain(extra.nameservers.iter().flatten())
        {
            push_unique(&mut servers, s);
        }
        config.servers = servers;
        let mut searches = Vec::new();
        for s in config
            .searches
            .iter()
            .chain(extra.searches.iter().flatten())
        {
            push_unique(&mut searches, s);
        }
        config.searches = searches;
        merge_pod_options(&mut config.options, extra.options.iter().flatten());
    }
    fit_limits(&mut config, &mut warnings);
    (config, warnings)
}

/// The reference's `mergeDNSOptions`: a pod option replaces the node's or the default of the
/// same name; an option without a value is the bare name.
fn merge_pod_options<'a>(
    options: &mut Vec<String>,
    extra: impl Iterator<Item = &'a PodDNSConfigOption>,
) {
    for option in extra {
        let name = option.name.as_deref().unwrap_or_default();
        let rendered = match option.value.as_deref().filter(|v| !v.is_empty()) {
            Some(v) => format!("{name}:{v}"),
            None => name.to_string(),
        };
        merge_option(options, &rendered);
    }
}

/// The reference's `formDNSConfigFitsLimits`.
fn fit_limits(config: &mut DnsConfig, warnings: &mut Vec<SpecWarning>) {
    if config.servers.len() > MAX_NAMESERVERS {
        config.servers.truncate(MAX_NAMESERVERS);
        warnings.push(SpecWarning {
            reason: DNS_CONFIG_FORMING,
            message: format!(
                "Nameserver limits were exceeded, some nameservers have been omitted, the applied nameserver line is: {}",
                config.servers.join(" ")
            ),
        });
    }
    let mut exceeded = false;
    if config.searches.len() > MAX_SEARCH_PATHS {
        config.searches.truncate(MAX_SEARCH_PATHS);
        exceeded = true;
    }
    let before = config.searches.len();
    config.searches.retain(|s| s.len() <= MAX_DOMAIN_LEN);
    exceeded |= config.searches.len() != before;
    let line_len =
        |s: &[String]| s.iter().map(String::len).sum::<usize>() + s.len().saturating_sub(1);
    if line_len(&config.searches) > MAX_SEARCH_LINE_CHARS {
        while line_len(&config.searches) > MAX_SEARCH_LINE_CHARS {
            config.searches.pop();
        }
        exceeded = true;
    }
    if exceeded {
        warnings.push(SpecWarning {
            reason: DNS_CONFIG_FORMING,
            message: format!(
                "Search Line limits were exceeded, some search paths have been omitted, the applied search line is: {}",
                config.searches.join(" ")
            ),
        });
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{PodDNSConfig, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn pod(policy: Option<&str>, host_network: bool) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("prod".into()),
                uid: Some("u1".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                dns_policy: policy.map(String::from),
                host_network: Some(host_network),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn cluster() -> SpecSettings {
        SpecSettings {
            cluster_dns: vec!["10.96.0.10".into()],
            cluster_domain: "cluster.local".into(),
            resolv_conf: "/host/resolv.conf".into(),
            ..Default::default()
        }
    }

    fn host() -> ResolvConf {
        parse_resolv_conf(
            "# comment\nnameserver 192.0.2.53\nnameserver 192.0.2.54\nsearch corp.example. .\noptions ndots:2 timeout:1\noptions ndots:3\n",
        )
        .unwrap()
    }

    #[test]
    fn resolv_conf_parsing() {
        let h = host();
        assert_eq!(h.nameservers, ["192.0.2.53", "192.0.2.54"]);
        assert_eq!(h.searches, ["corp.example"]);
        assert_eq!(h.options, ["ndots:3", "timeout:1"]);
        assert!(parse_resolv_conf("nameserver\n").is_err());
    }

    #[test]
    fn cluster_first_uses_cluster_dns_and_appends_host_searches() {
        let (dns, warnings) = pod_dns(&pod(None, false), &cluster(), &host());
        assert!(warnings.is_empty());
        assert_eq!(dns.servers, ["10.96.0.10"]);
        assert_eq!(
            dns.searches,
            [
                "prod.svc.cluster.local",
                "svc.cluster.local",
                "cluster.local",
                "corp.example"
            ]
        );
        assert_eq!(dns.options, ["ndots:5"]);
    }

    #[test]
    fn host_network_cluster_first_is_default_unless_with_host_net() {
        let (dns, _) = pod_dns(&pod(Some("ClusterFirst"), true), &cluster(), &host());
        assert_eq!(dns.servers, ["192.0.2.53", "192.0.2.54"]);
        assert_eq!(dns.searches, ["corp.example"]);
        let (dns, _) = pod_dns(
            &pod(Some("ClusterFirstWithHostNet"), true),
            &cluster(),
            &host(),
        );
        assert_eq!(dns.servers, ["10.96.0.10"]);
        let (dns, _) = pod_dns(&pod(Some("Default"), false), &cluster(), &host());
        assert_eq!(dns.options, ["ndots:3", "timeout:1"]);
    }

    #[test]
    fn missing_cluster_dns_falls_back_with_an_event() {
        let settings = SpecSettings {
            resolv_conf: "/host/resolv.conf".into(),
            ..Default::default()
        };
        let (dns, warnings) = pod_dns(&pod(None, false), &settings, &host());
        assert_eq!(dns.servers, ["192.0.2.53", "192.0.2.54"]);
        assert_eq!(warnings.len(), 1);
        assert_eq!(warnings[0].reason, MISSING_CLUSTER_DNS);
        assert!(
            warnings[0].message.starts_with(
                "pod: \"web_prod(u1)\". kubelet does not have ClusterDNS IP configured"
            ),
            "{}",
            warnings[0].message
        );
    }

    #[test]
    fn no_resolv_conf_means_localhost() {
        let settings = SpecSettings {
            resolv_conf: String::new(),
            ..Default::default()
        };
        let (dns, _) = pod_dns(
            &pod(Some("Default"), false),
            &settings,
            &ResolvConf::default(),
        );
        assert_eq!(dns.servers, ["127.0.0.1"]);
        assert_eq!(dns.searches, ["."]);
    }

    #[test]
    fn none_takes_only_the_pods_config_and_merges_options() {
        let mut p = pod(Some("None"), false);
        p.spec.as_mut().unwrap().dns_config = Some(PodDNSConfig {
            nameservers: Some(vec!["1.1.1.1".into(), "1.1.1.1".into()]),
            searches: Some(vec!["example.com".into()]),
            options: Some(vec![
                PodDNSConfigOption {
                    name: Some("ndots".into()),
                    value: Some("2".into()),
                },
                PodDNSConfigOption {
                    name: Some("edns0".into()),
                    value: None,
                },
            ]),
        });
        let (dns, _) = pod_dns(&p, &cluster(), &host());
        assert_eq!(
            dns,
            DnsConfig {
                servers: vec!["1.1.1.1".into()],
                searches: vec!["example.com".into()],
                options: vec!["ndots:2".into(), "edns0".into()],
            }
        );
        // ClusterFirst merges: the pod's ndots replaces the default one.
        p.spec.as_mut().unwrap().dns_policy = None;
        let (dns, _) = pod_dns(&p, &cluster(), &host());
        assert_eq!(dns.servers, ["10.96.0.10", "1.1.1.1"]);
        assert_eq!(dns.searches.last().map(String::as_str), Some("example.com"));
        assert_eq!(dns.options, ["ndots:2", "edns0"]);
    }

    #[test]
    fn limits_are_applied_with_events() {
        let mut p = pod(Some("None"), false);
        let long = "a".repeat(254);
        let mut searches: Vec<String> = (0..40).map(|i| format!("d{i}.example")).collect();
        searches.insert(0, long.clone());
        p.spec.as_mut().unwrap().dns_config = Some(PodDNSConfig {
            nameservers: Some((1..=5).map(|i| format!("10.0.0.{i}")).collect()),
            searches: Some(searches),
            options: None,
        });
        let (dns, warnings) = pod_dns(&p, &cluster(), &host());
        assert_eq!(dns.servers, ["10.0.0.1", "10.0.0.2", "10.0.0.3"]);
        // 32 kept, then the one over 253 characters dropped.
        assert_eq!(dns.searches.len(), 31);
        assert!(!dns.searches.contains(&long));
        assert_eq!(warnings.len(), 2);
        assert!(warnings.iter().all(|w| w.reason == DNS_CONFIG_FORMING));
        assert!(warnings[0].message.ends_with("10.0.0.1 10.0.0.2 10.0.0.3"));

        // The search line is cut to 2048 characters from the end.
        let mut p = pod(Some("None"), false);
        p.spec.as_mut().unwrap().dns_config = Some(PodDNSConfig {
            searches: Some((0..10).map(|i| format!("{i}{}", "b".repeat(249))).collect()),
            ..Default::default()
        });
        let (dns, warnings) = pod_dns(&p, &cluster(), &host());
        assert_eq!(dns.searches.len(), 8, "8 * 251 - 1 = 2007 <= 2048");
        assert_eq!(warnings.len(), 1);
    }
}
