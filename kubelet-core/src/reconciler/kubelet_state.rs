//! State the reconciler shares with its handles: the pods with their computed status, the
//! pods admitted and not finished (what admission weighs a new pod against), and the health
//! of the relist loop.

use std::collections::BTreeMap;
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use tokio::time::Instant;

/// The reference's PLEG health threshold: unhealthy when no relist finished for 3 minutes.
pub(super) const RELIST_THRESHOLD: Duration = Duration::from_secs(180);

pub struct Shared {
    pods: RwLock<BTreeMap<String, Pod>>,
    /// Pods admitted and not finished, by UID. Its lock makes admission one pod at a time,
    /// as the reference's, so that two pods that each fit but not together are never both
    /// admitted.
    admitted: Mutex<BTreeMap<String, Pod>>,
    last_relist: Mutex<Instant>,
    /// Probe run counts (`prober_probe_total`), written by the probe workers.
    pub(crate) probe_metrics: std::sync::Arc<crate::probes::ProbeMetrics>,
    /// The kubelet's metrics (`/metrics`), written by the workers and the relister.
    pub(crate) metrics: crate::metrics::KubeletMetrics,
}

impl Shared {
    pub(super) fn new(metrics: crate::metrics::KubeletMetrics) -> Self {
        Self {
            pods: RwLock::new(BTreeMap::new()),
            admitted: Mutex::new(BTreeMap::new()),
            last_relist: Mutex::new(Instant::now()),
            probe_metrics: metrics.probes().clone(),
            metrics,
        }
    }

    pub(super) fn set_pod(&self, pod: &Pod, status: Option<PodStatus>) {
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        let finished = status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_some_and(|p| p == "Succeeded" || p == "Failed");
        if finished {
            self.admitted().remove(&uid);
        }
        let mut pod = pod.clone();
        if let Some(status) = status {
            pod.status = Some(status);
        } else if let Some(previous) = self.read_pods().get(&uid) {
            pod.status = previous.status.clone();
        }
        if let Ok(mut pods) = self.pods.write() {
            pods.insert(uid, pod);
        }
    }

    fn admitted(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Pod>> {
        self.admitted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Admit `pod` if `check`, given the other admitted pods, says so; it then counts as
    /// admitted until it finishes or goes.
    pub(super) fn admit<E>(
        &self,
        pod: &Pod,
        check: impl FnOnce(&[Pod]) -> Result<(), E>,
    ) -> Result<(), E> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let mut admitted = self.admitted();
        let others: Vec<Pod> = admitted
            .iter()
            .filter(|(other, _)| **other != uid)
            .map(|(_, p)| p.clone())
            .collect();
        check(&others)?;
        admitted.insert(uid, pod.clone());
        Ok(())
    }

    pub(super) fn remove_pod(&self, uid: &str) {
        self.admitted().remove(uid);
        if let Ok(mut pods) = self.pods.write() {
            pods.remove(uid);
        }
    }

    fn read_pods(&self) -> BTreeMap<String, Pod> {
        self.pods.read().map(|p| p.clone()).unwrap_or_default()
    }

    pub(super) fn relisted(&self) {
        if let Ok(mut last) = self.last_relist.lock() {
            *last = Instant::now();
        }
    }

    pub(super) fn pods(&self) -> Vec<Pod> {
        self.pods
            .read()
            .map(|p| p.values().cloned().collect())
            .unwrap_or_default()
    }

    pub(super) fn healthz(&self) -> Result<(), String> {
        let last = self
            .last_relist
            .lock()
            .map(|l| *l)
            .map_err(|_| "relist state poisoned".to_string())?;
        let since = last.elapsed();
        if since > RELIST_THRESHOLD {
            return Err(format!(
                "pleg was last seen active {}s ago; threshold is {}s",
                since.as_secs(),
                RELIST_THRESHOLD.as_secs()
            ));
        }
        Ok(())
    }
}
