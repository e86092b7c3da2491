//! `/metrics/resource`: the node's, pods' and containers' CPU and memory as the reference's
//! resource metrics collector names and labels them (what metrics-server reads), encoded by
//! `prometheus-client`.
//!
//! Each usage sample carries the time it was measured, as the reference emits it
//! (`container_start_time_seconds` carries the start time itself; `scrape_error` none).
//! prometheus-client writes OpenMetrics and has no sample timestamps, so the timestamps are
//! appended to its lines here; for the Prometheus text format (0.0.4, what the reference
//! serves unless OpenMetrics is asked for) the counter families are renamed with their
//! `_total` as the reference names them, timestamps are in milliseconds and the `# EOF`
//! trailer is dropped.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use super::summary::{Summary, Time};

/// The content type of the Prometheus text format.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// The content type of OpenMetrics.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Which exposition format to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text 0.0.4.
    Text,
    /// OpenMetrics 1.0.
    OpenMetrics,
}

impl Format {
    /// OpenMetrics when the `Accept` header asks for it, else the text format.
    pub fn from_accept(accept: Option<&str>) -> Self {
        if accept.is_some_and(|a| a.contains("application/openmetrics-text")) {
            Self::OpenMetrics
        } else {
            Self::Text
        }
    }

    /// Its content type.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Text => TEXT_CONTENT_TYPE,
            Self::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
        }
    }
}

/// One family: name (without `_total` for counters), help, type, and its samples (shared
/// with the `/metrics/cadvisor` exposition of [`super::cadvisor`]).
#[derive(Debug)]
pub(super) struct Family {
    pub(super) name: &'static str,
    pub(super) help: &'static str,
    pub(super) counter: bool,
    /// Written as an integer (`scrape_error 0`, as the reference).
    pub(super) integer: bool,
    /// A counter whose samples the text format writes without `_total`, as cAdvisor's
    /// `container_memory_failcnt` (OpenMetrics requires the suffix on every counter).
    pub(super) bare_counter: bool,
    pub(super) samples: Vec<Sample>,
}

/// One sample: its labels in the order written, value, and when it was measured.
#[derive(Debug)]
pub(super) struct Sample {
    pub(super) labels: Vec<(&'static str, String)>,
    pub(super) value: f64,
    pub(super) timestamp: Option<Time>,
}

/// The families of one scrape, in the order written.
#[derive(Debug)]
struct ResourceCollector {
    families: Vec<Family>,
}

impl Collector for ResourceCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for family in &self.families {
            let kind = if family.counter {
                MetricType::Counter
            } else {
                MetricType::Gauge
            };
            let mut metric = encoder.encode_descriptor(family.name, family.help, None, kind)?;
            // A family without labels has one sample, written without `{}`.
            if let [only] = family.samples.as_slice()
                && only.labels.is_empty()
            {
                if family.counter {
                    ConstCounter::new(only.value).encode(metric)?;
                } else if family.integer {
                    ConstGauge::new(only.value as i64).encode(metric)?;
                } else {
                    ConstGauge::new(only.value).encode(metric)?;
                }
                continue;
            }
            for sample in &family.samples {
                let labels: Vec<(&str, &str)> = sample
                    .labels
                    .iter()
                    .map(|(k, v)| (*k, v.as_str()))
                    .collect();
                let encoder = metric.encode_family(&labels)?;
                if family.counter {
                    ConstCounter::new(sample.value).encode(encoder)?;
                } else if family.integer {
                    ConstGauge::new(sample.value as i64).encode(encoder)?;
                } else {
                    ConstGauge::new(sample.value).encode(encoder)?;
                }
            }
        }
        Ok(())
    }
}

pub(super) fn sample(
    labels: Vec<(&'static str, String)>,
    value: f64,
    timestamp: Option<Time>,
) -> Sample {
    Sample {
        labels,
        value,
        timestamp,
    }
}

/// The families of `summary` (`None`: the summary could not be had, `scrape_error` 1).
fn families(summary: Option<&Summary>) -> Vec<Family> {
    let mut node_cpu = Vec::new();
    let mut node_memory = Vec::new();
    let mut container_cpu = Vec::new();
    let mut container_memory = Vec::new();
    let mut container_start = Vec::new();
    let mut pod_cpu = Vec::new();
    let mut pod_memory = Vec::new();
    if let Some(s) = summary {
        if let Some(cpu) = &s.node.cpu
            && let Some(usage) = cpu.usage_core_nano_seconds
        {
            node_cpu.push(sample(vec![], usage as f64 / 1e9, Some(cpu.time)));
        }
        if let Some(m) = &s.node.memory
            && let Some(ws) = m.working_set_bytes
        {
            node_memory.push(sample(vec![], ws as f64, Some(m.time)));
        }
        for pod in &s.pods {
            let (name, namespace) = (&pod.pod_ref.name, &pod.pod_ref.namespace);
            let pod_labels = || vec![("namespace", namespace.clone()), ("pod", name.clone())];
            for c in &pod.containers {
                let labels = || {
                    vec![
                        ("container", c.name.clone()),
                        ("namespace", namespace.clone()),
                        ("pod", name.clone()),
                    ]
                };
                if let Some(cpu) = &c.cpu
                    && let Some(usage) = cpu.usage_core_nano_seconds
                {
                    container_cpu.push(sample(labels(), usage as f64 / 1e9, Some(cpu.time)));
                }
                if let Some(m) = &c.memory
                    && let Some(ws) = m.working_set_bytes
                {
                    container_memory.push(sample(labels(), ws as f64, Some(m.time)));
                }
                container_start.push(sample(
                    labels(),
                    c.start_time.as_secs_f64(),
                    Some(c.start_time),
                ));
            }
            if let Some(cpu) = &pod.cpu
                && let Some(usage) = cpu.usage_core_nano_seconds
            {
                pod_cpu.push(sample(pod_labels(), usage as f64 / 1e9, Some(cpu.time)));
            }
            if let Some(m) = &pod.memory
                && let Some(ws) = m.working_set_bytes
            {
                pod_memory.push(sample(pod_labels(), ws as f64, Some(m.time)));
            }
        }
    }
    let failed = if summary.is_some() { 0.0 } else { 1.0 };
    let family = |name, help, counter, samples: Vec<Sample>| Family {
        name,
        help,
        counter,
        integer: name.ends_with("scrape_error"),
        bare_counter: false,
        samples,
    };
    vec![
        family(
            "container_cpu_usage_seconds",
            "[STABLE] Cumulative cpu time consumed by the container in core-seconds",
            true,
            container_cpu,
        ),
        family(
            "container_memory_working_set_bytes",
            "[STABLE] Current working set of the container in bytes",
            false,
            container_memory,
        ),
        family(
            "container_start_time_seconds",
            "[STABLE] Start time of the container since unix epoch in seconds",
            false,
            container_start,
        ),
        family(
            "node_cpu_usage_seconds",
            "[STABLE] Cumulative cpu time consumed by the node in core-seconds",
            true,
            node_cpu,
        ),
        family(
            "node_memory_working_set_bytes",
            "[STABLE] Current working set of the node in bytes",
            false,
            node_memory,
        ),
        family(
            "pod_cpu_usage_seconds",
            "[STABLE] Cumulative cpu time consumed by the pod in core-seconds",
            true,
            pod_cpu,
        ),
        family(
            "pod_memory_working_set_bytes",
            "[STABLE] Current working set of the pod in bytes",
            false,
            pod_memory,
        ),
        family(
            "resource_scrape_error",
            "[STABLE] 1 if there was an error while getting container metrics, 0 otherwise",
            false,
            vec![sample(vec![], failed, None)],
        ),
        family(
            "scrape_error",
            "[ALPHA] 1 if there was an error while getting container metrics, 0 otherwise",
            false,
            vec![sample(vec![], failed, None)],
        ),
    ]
}

/// The `/metrics/resource` exposition of `summary` in `format` (`None`: collection failed,
/// only `scrape_error` 1 is written).
pub fn encode_resource_metrics(summary: Option<&Summary>, format: Format) -> String {
    encode_families(families(summary), format)
}

/// `families` in `format`: prometheus-client's OpenMetrics, with the sample timestamps
/// added, or rewritten into the text format.
pub(super) fn encode_families(families: Vec<Family>, format: Format) -> String {
    // The timestamps and counter names, in the order prometheus-client writes the samples.
    let timestamps: Vec<Option<Time>> = families
        .iter()
        .flat_map(|f| f.samples.iter().map(|s| s.timestamp))
        .collect();
    let counters: Vec<&'static str> = families
        .iter()
        .filter(|f| f.counter && !f.bare_counter)
        .map(|f| f.name)
        .collect();
    // The sample-name prefixes the text format writes without `_total`.
    let bare: Vec<(String, usize)> = families
        .iter()
        .filter(|f| f.counter && f.bare_counter)
        .map(|f| (format!("{}_total", f.name), f.name.len()))
        .collect();
    let mut registry = Registry::default();
    registry.register_collector(Box::new(ResourceCollector { families }));
    let mut open_metrics = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut open_metrics, &registry) {
        tracing::error!(error = %e, "encoding metrics failed");
        return String::new();
    }
    let mut out = String::with_capacity(open_metrics.len() + timestamps.len() * 16);
    let mut stamps = timestamps.into_iter();
    for line in open_metrics.lines() {
        if let Some(comment) = line.strip_prefix("# ") {
            match format {
                Format::OpenMetrics => out.push_str(line),
                Format::Text => {
                    if comment == "EOF" {
                        continue;
                    }
                    out.push_str(&text_comment(comment, &counters));
                }
            }
        } else {
            match bare.iter().find(|(prefix, _)| {
                line.strip_prefix(prefix.as_str())
                    .is_some_and(|rest| rest.starts_with(['{', ' ']))
            }) {
                Some((prefix, len)) if format == Format::Text => {
                    out.push_str(&line[..*len]);
                    out.push_str(&line[prefix.len()..]);
                }
                _ => out.push_str(line),
            }
            if let Some(Some(t)) = stamps.next() {
                match format {
                    // OpenMetrics timestamps are seconds, the text format's milliseconds.
                    Format::OpenMetrics => {
                        out.push_str(&format!(
                            " {}.{:03}",
                            t.0.div_euclid(1_000_000_000),
                            t.0.rem_euclid(1_000_000_000) / 1_000_000
                        ));
                    }
                    Format::Text => out.push_str(&format!(" {}", t.0.div_euclid(1_000_000))),
                }
            }
        }
        out.push('\n');
    }
    out
}

/// A `HELP` or `TYPE` comment of the text format: a counter family takes its `_total`.
fn text_comment(comment: &str, counters: &[&str]) -> String {
    let mut parts = comment.splitn(3, ' ');
    let (kind, name, rest) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    );
    if counters.contains(&name) {
        format!("# {kind} {name}_total {rest}")
    } else {
        format!("# {comment}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::summary::{
        ContainerStats, CpuStats, MemoryStats, NodeStats, PodReference, PodStats,
    };

    fn summary() -> Summary {
        let t = Time(1_700_000_000_123_000_000);
        let cpu = |ns| {
            Some(CpuStats {
                time: t,
                usage_nano_cores: Some(1),
                usage_core_nano_seconds: Some(ns),
            })
        };
        let mem = |ws| {
            Some(MemoryStats {
                time: t,
                working_set_bytes: Some(ws),
                ..Default::default()
            })
        };
        Summary {
            node: NodeStats {
                node_name: "n".into(),
                cpu: cpu(357_354_910_000),
                memory: mem(1_000),
                ..Default::default()
            },
            pods: vec![PodStats {
                pod_ref: PodReference {
                    name: "web".into(),
                    namespace: "default".into(),
                    uid: "u".into(),
                },
                containers: vec![ContainerStats {
                    name: "app".into(),
                    start_time: Time(1_699_999_000_000_000_000),
                    cpu: cpu(2_500_000_000),
                    memory: mem(67_108_864),
                    ..Default::default()
                }],
                cpu: cpu(3_000_000_000),
                memory: mem(70_000_000),
                ..Default::default()
            }],
        }
    }

    #[test]
    fn text_format_as_the_reference() {
        let text = encode_resource_metrics(Some(&summary()), Format::Text);
        for expected in [
            "# TYPE node_cpu_usage_seconds_total counter",
            "node_cpu_usage_seconds_total 357.35491 1700000000123",
            "# TYPE node_memory_working_set_bytes gauge",
            "node_memory_working_set_bytes 1000.0 1700000000123",
            "container_cpu_usage_seconds_total{container=\"app\",namespace=\"default\",pod=\"web\"} 2.5 1700000000123",
            "container_memory_working_set_bytes{container=\"app\",namespace=\"default\",pod=\"web\"} 67108864.0 1700000000123",
            "container_start_time_seconds{container=\"app\",namespace=\"default\",pod=\"web\"} 1699999000.0 1699999000000",
            "pod_cpu_usage_seconds_total{namespace=\"default\",pod=\"web\"} 3.0 1700000000123",
            "pod_memory_working_set_bytes{namespace=\"default\",pod=\"web\"} 70000000.0 1700000000123",
            "scrape_error 0",
            "resource_scrape_error 0",
        ] {
            assert!(
                text.lines().any(|l| l == expected),
                "missing {expected:?} in\n{text}"
            );
        }
        assert!(!text.contains("# EOF"), "{text}");
    }

    #[test]
    fn openmetrics_and_scrape_error() {
        let om = encode_resource_metrics(Some(&summary()), Format::OpenMetrics);
        assert!(om.ends_with("# EOF\n"), "{om}");
        assert!(
            om.contains("# TYPE node_cpu_usage_seconds counter\n"),
            "{om}"
        );
        assert!(
            om.contains("node_cpu_usage_seconds_total 357.35491 1700000000.123\n"),
            "{om}"
        );
        let failed = encode_resource_metrics(None, Format::Text);
        assert!(failed.lines().any(|l| l == "scrape_error 1"), "{failed}");
        assert!(
            !failed.contains("container_cpu_usage_seconds_total{"),
            "{failed}"
        );
    }
}
