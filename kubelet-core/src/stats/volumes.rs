//! Volumes measured by their plugin rather than by walking them, and the per-claim volume
//! metrics of `/metrics`.
//!
//! The default provider walks the directories of the node-local volumes (emptyDir and the
//! API-object volumes). A volume whose data lives elsewhere (a CSI volume: the driver's
//! storage) is measured by its plugin, as the reference's `MetricsProvider` of each volume
//! type: a [`VolumeStatsSource`] given to
//! [`RuntimeStatsProvider::with_volume_source`](super::RuntimeStatsProvider::with_volume_source)
//! answers for the volumes it knows, on the volume stats period, and its numbers join the
//! pod's `volume` list in `/stats/summary` (not its ephemeral storage: they are not on the
//! node's root filesystem).
//!
//! [`VolumeStatsCollector`] turns the volumes of the newest summary that belong to a
//! PersistentVolumeClaim into the reference's `kubelet_volume_stats_*` gauges, labelled
//! `namespace` and `persistentvolumeclaim` (one series per claim, however many pods on the
//! node use it), which the kubernetes-mixin's `KubePersistentVolumeFillingUp` alerts read.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;

use super::summary::{FsStats, Summary, VolumeStats};

/// Measures the volumes of one kind of volume plugin.
#[async_trait]
pub trait VolumeStatsSource: Send + Sync + 'static {
    /// The volumes of the pod `pod_uid` (directory `pod_dir`, `<root-dir>/pods/<uid>`) this
    /// source measures, named as in the pod spec, with the claim of a PVC-backed volume.
    /// Volumes it cannot measure now are left out.
    async fn pod_volume_stats(&self, pod_uid: &str, pod_dir: &Path) -> Vec<VolumeStats>;
}

impl std::fmt::Debug for dyn VolumeStatsSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VolumeStatsSource")
    }
}

/// A gauge of a claim's volume: its name, help, and which number of the volume it shows.
type Gauge = (&'static str, &'static str, fn(&FsStats) -> Option<u64>);

/// The gauges of one claim's volume, in the order written.
const GAUGES: [Gauge; 6] = [
    (
        "kubelet_volume_stats_capacity_bytes",
        "Capacity in bytes of the volume",
        |f| f.capacity_bytes,
    ),
    (
        "kubelet_volume_stats_available_bytes",
        "Number of available bytes in the volume",
        |f| f.available_bytes,
    ),
    (
        "kubelet_volume_stats_used_bytes",
        "Number of used bytes in the volume",
        |f| f.used_bytes,
    ),
    (
        "kubelet_volume_stats_inodes",
        "Maximum number of inodes in the volume",
        |f| f.inodes,
    ),
    (
        "kubelet_volume_stats_inodes_free",
        "Number of free inodes in the volume",
        |f| f.inodes_free,
    ),
    (
        "kubelet_volume_stats_inodes_used",
        "Number of used inodes in the volume",
        |f| f.inodes_used,
    ),
];

/// The `kubelet_volume_stats_*` gauges of the PVC-backed volumes of the newest summary,
/// for the `/metrics` registry
/// ([`KubeletMetrics::register_collector`](crate::metrics::KubeletMetrics::register_collector)).
pub struct VolumeStatsCollector {
    newest: Arc<dyn Fn() -> Option<Arc<Summary>> + Send + Sync>,
}

impl std::fmt::Debug for VolumeStatsCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VolumeStatsCollector")
            .finish_non_exhaustive()
    }
}

impl VolumeStatsCollector {
    /// Gauges of whatever summary `newest` returns at scrape time (for the default provider,
    /// `RuntimeStatsProvider::cached`); nothing before the first one.
    pub fn new(newest: impl Fn() -> Option<Arc<Summary>> + Send + Sync + 'static) -> Self {
        Self {
            newest: Arc::new(newest),
        }
    }
}

/// Per claim `(namespace, name)`, its volume's numbers (the first pod's, when several pods
/// use the claim: they measure the same volume).
fn claims(summary: &Summary) -> BTreeMap<(String, String), FsStats> {
    let mut out = BTreeMap::new();
    for pod in &summary.pods {
        for volume in pod.volume.iter().flatten() {
            if let Some(pvc) = &volume.pvc_ref {
                out.entry((pvc.namespace.clone(), pvc.name.clone()))
                    .or_insert_with(|| volume.fs.clone());
            }
        }
    }
    out
}

impl Collector for VolumeStatsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(summary) = (self.newest)() else {
            return Ok(());
        };
        let claims = claims(&summary);
        if claims.is_empty() {
            return Ok(());
        }
        for (name, help, value) in GAUGES {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for ((namespace, claim), fs) in &claims {
                let Some(v) = value(fs) else { continue };
                let labels = [
                    ("namespace", namespace.as_str()),
                    ("persistentvolumeclaim", claim.as_str()),
                ];
                ConstGauge::new(v as f64).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Format, KubeletMetrics};
    use crate::stats::summary::{PodReference, PodStats, PvcReference, Time};

    fn volume(name: &str, claim: Option<(&str, &str)>, used: u64) -> VolumeStats {
        VolumeStats {
            fs: FsStats {
                time: Time(1),
                available_bytes: Some(900),
                capacity_bytes: Some(1000),
                used_bytes: Some(used),
                inodes_free: Some(90),
                inodes: Some(100),
                inodes_used: Some(10),
            },
            name: name.to_string(),
            pvc_ref: claim.map(|(namespace, name)| PvcReference {
                name: name.to_string(),
                namespace: namespace.to_string(),
            }),
        }
    }

    fn pod(name: &str, volumes: Vec<VolumeStats>) -> PodStats {
        PodStats {
            pod_ref: PodReference {
                name: name.to_string(),
                namespace: "default".to_string(),
                uid: format!("uid-{name}"),
            },
            volume: Some(volumes),
            ..PodStats::default()
        }
    }

    #[test]
    fn one_series_per_claim_with_the_reference_names_and_labels() {
        let summary = Arc::new(Summary {
            pods: vec![
                pod(
                    "a",
                    vec![
                        volume("data", Some(("default", "claim-1")), 100),
                        volume("scratch", None, 5),
                    ],
                ),
                // A second pod on the same claim adds no second series.
                pod("b", vec![volume("data", Some(("default", "claim-1")), 100)]),
                pod("c", vec![volume("db", Some(("team", "claim-2")), 300)]),
            ],
            ..Summary::default()
        });
        let metrics = KubeletMetrics::new();
        metrics.register_collector(Box::new(VolumeStatsCollector::new(move || {
            Some(summary.clone())
        })));
        let text = metrics.encode(Format::Text);
        for line in [
            "# TYPE kubelet_volume_stats_capacity_bytes gauge",
            "kubelet_volume_stats_capacity_bytes{namespace=\"default\",persistentvolumeclaim=\"claim-1\"} 1000",
            "kubelet_volume_stats_available_bytes{namespace=\"default\",persistentvolumeclaim=\"claim-1\"} 900",
            "kubelet_volume_stats_used_bytes{namespace=\"team\",persistentvolumeclaim=\"claim-2\"} 300",
            "kubelet_volume_stats_inodes{namespace=\"team\",persistentvolumeclaim=\"claim-2\"} 100",
            "kubelet_volume_stats_inodes_free{namespace=\"default\",persistentvolumeclaim=\"claim-1\"} 90",
            "kubelet_volume_stats_inodes_used{namespace=\"default\",persistentvolumeclaim=\"claim-1\"} 10",
        ] {
            assert!(text.contains(line), "missing {line:?} in:\n{text}");
        }
        let used_series = text
            .lines()
            .filter(|l| l.starts_with("kubelet_volume_stats_used_bytes{"))
            .count();
        assert_eq!(used_series, 2, "{text}");
        assert!(!text.contains("scratch"), "{text}");
    }

    #[test]
    fn nothing_before_the_first_summary() {
        let metrics = KubeletMetrics::new();
        metrics.register_collector(Box::new(VolumeStatsCollector::new(|| None)));
        assert!(
            !metrics
                .encode(Format::Text)
                .contains("kubelet_volume_stats")
        );
    }
}
