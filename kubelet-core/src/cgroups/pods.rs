//! The reference's QoS container manager and pod container manager over a
//! [`CgroupManager`]: the `kubepods` cgroup sized to the node's allocatable resources, the
//! Burstable and BestEffort tiers below it, one cgroup per pod created before its sandbox
//! and destroyed (its remaining processes killed first) when it is gone, and the cleanup of
//! pod cgroups no pod owns any more.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tracing::{debug, info, warn};

use super::convert::{self, MIN_SHARES};
use super::{CgroupError, CgroupManager, CgroupName, CgroupSettings, ResourceConfig};
use crate::reconciler::qos::{QosClass, qos_class};

/// How often destroying a pod cgroup is tried (killing what is left in it first).
const DESTROY_ATTEMPTS: u32 = 5;
/// The wait between two attempts, for killed processes to exit.
const DESTROY_RETRY: Duration = Duration::from_millis(200);

/// The QoS and pod cgroups of a node (see the module documentation).
#[derive(Debug)]
pub struct PodCgroups {
    manager: Arc<dyn CgroupManager>,
    settings: CgroupSettings,
    /// `<cgroup-root>/kubepods`.
    root: CgroupName,
    /// The pods the kubelet runs (by UID), whose CPU requests the Burstable tier's shares
    /// sum, and whose cgroups are never orphans.
    active: Mutex<BTreeMap<String, Pod>>,
}

impl PodCgroups {
    /// Pod cgroups below `pods_cgroup` (`/kubepods`) through `manager`.
    pub fn new(
        manager: Arc<dyn CgroupManager>,
        settings: CgroupSettings,
        pods_cgroup: &str,
    ) -> Self {
        Self {
            manager,
            settings,
            root: CgroupName::from_path(pods_cgroup),
            active: Mutex::new(BTreeMap::new()),
        }
    }

    fn active(&self) -> MutexGuard<'_, BTreeMap<String, Pod>> {
        self.active.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cgroup manager underneath.
    pub fn manager(&self) -> &Arc<dyn CgroupManager> {
        &self.manager
    }

    /// The top cgroup of a QoS class: `kubepods` for Guaranteed, `kubepods/burstable`,
    /// `kubepods/besteffort`.
    pub fn qos_cgroup(&self, class: QosClass) -> CgroupName {
        match class {
            QosClass::Guaranteed => self.root.clone(),
            QosClass::Burstable => self.root.child("burstable"),
            QosClass::BestEffort => self.root.child("besteffort"),
        }
    }

    /// The pod's cgroup: `pod<uid>` below its QoS class's cgroup.
    pub fn pod_cgroup(&self, pod: &Pod) -> CgroupName {
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        self.qos_cgroup(qos_class(pod)).child(&format!("pod{uid}"))
    }

    /// Set up the hierarchy at the kubelet's start: `kubepods` with the node's allocatable
    /// CPU shares and memory, then the Burstable and BestEffort tiers (created, or updated
    /// when they exist), as the reference's container manager and QoS manager start.
    pub fn start(&self) -> Result<(), CgroupError> {
        let node = convert::node_allocatable_config(&self.settings);
        self.create_or_update(&self.root, &node)?;
        let best_effort = ResourceConfig {
            cpu_shares: Some(MIN_SHARES),
            ..ResourceConfig::default()
        };
        self.create_or_update(&self.qos_cgroup(QosClass::BestEffort), &best_effort)?;
        self.create_or_update(
            &self.qos_cgroup(QosClass::Burstable),
            &ResourceConfig::default(),
        )?;
        info!(cgroup = %self.root, ?node, "QoS cgroups ready");
        self.update_qos()
    }

    fn create_or_update(
        &self,
        name: &CgroupName,
        resources: &ResourceConfig,
    ) -> Result<(), CgroupError> {
        if self.manager.exists(name) {
            self.manager.update(name, resources)
        } else {
            self.manager.create(name, resources)
        }
    }

    /// The Burstable tier's shares from the CPU requests (with overhead) of the Burstable
    /// pods the kubelet runs; the BestEffort tier at the minimum.
    pub fn update_qos(&self) -> Result<(), CgroupError> {
        let burstable_milli: i64 = self
            .active()
            .values()
            .filter(|p| qos_class(p) == QosClass::Burstable)
            .map(|p| convert::pod_cpu_request(p).unwrap_or(0))
            .sum();
        let shares = convert::cpu_shares(burstable_milli);
        debug!(burstable_milli, shares, "updating QoS cgroups");
        self.manager.update(
            &self.qos_cgroup(QosClass::Burstable),
            &ResourceConfig {
                cpu_shares: Some(shares),
                ..ResourceConfig::default()
            },
        )?;
        self.manager.update(
            &self.qos_cgroup(QosClass::BestEffort),
            &ResourceConfig {
                cpu_shares: Some(MIN_SHARES),
                ..ResourceConfig::default()
            },
        )
    }

    /// Count the pod as running on the node and make sure its cgroup exists, created with
    /// the pod's resources (requests, limits and overhead) when it does not; the QoS tiers
    /// are updated first, so that the Burstable tier covers a new Burstable pod before it
    /// starts. An existing pod cgroup is left as it is.
    pub fn ensure_pod(&self, pod: &Pod) -> Result<CgroupName, CgroupError> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let name = self.pod_cgroup(pod);
        let new = self.active().insert(uid.clone(), pod.clone()).is_none();
        let exists = self.manager.exists(&name);
        if new || !exists {
            self.update_qos()?;
        }
        if !exists {
            let resources =
                convert::pod_resource_config(pod, &self.settings).map_err(CgroupError::Invalid)?;
            info!(pod_uid = %uid, cgroup = %name, ?resources, "creating pod cgroup");
            self.manager.create(&name, &resources)?;
        }
        Ok(name)
    }

    /// The pod finished (Succeeded or Failed): it no longer counts in the Burstable tier's
    /// shares. Its cgroup stays until the pod is removed from the node.
    pub fn deactivate(&self, uid: &str) {
        if self.active().remove(uid).is_some()
            && let Err(err) = self.update_qos()
        {
            warn!(error = %err, "QoS cgroups not updated");
        }
    }

    /// Whether the pod with this UID counts as running on the node.
    pub fn is_active(&self, uid: &str) -> bool {
        self.active().contains_key(uid)
    }

    /// The pod cgroups on the node by pod UID (below `kubepods` and its two tiers).
    pub fn pod_cgroups_on_node(&self) -> Result<BTreeMap<String, Vec<CgroupName>>, CgroupError> {
        let mut found: BTreeMap<String, Vec<CgroupName>> = BTreeMap::new();
        for class in [
            QosClass::Guaranteed,
            QosClass::Burstable,
            QosClass::BestEffort,
        ] {
            let parent = self.qos_cgroup(class);
            for child in self.manager.children(&parent)? {
                if let Some(uid) = child.strip_prefix("pod").filter(|u| !u.is_empty()) {
                    found
                        .entry(uid.to_string())
                        .or_default()
                        .push(parent.child(&child));
                }
            }
        }
        Ok(found)
    }

    /// The pod is gone: kill what is left in its cgroup, remove the cgroup, stop counting
    /// the pod, and shrink the Burstable tier.
    pub async fn destroy_pod(&self, uid: &str) -> Result<(), CgroupError> {
        let names = self.pod_cgroups_on_node()?.remove(uid).unwrap_or_default();
        let mut result = Ok(());
        for name in names {
            if let Err(err) = self.destroy(&name).await {
                warn!(pod_uid = %uid, cgroup = %name, error = %err, "pod cgroup not removed");
                result = Err(err);
            } else {
                info!(pod_uid = %uid, cgroup = %name, "pod cgroup removed");
            }
        }
        self.active().remove(uid);
        if let Err(err) = self.update_qos() {
            warn!(error = %err, "QoS cgroups not updated");
        }
        result
    }

    /// Kill the processes in a cgroup (SIGKILL, as the reference) and remove it, a few
    /// times over while killed processes exit.
    async fn destroy(&self, name: &CgroupName) -> Result<(), CgroupError> {
        let own = std::process::id();
        let mut last = Ok(());
        for attempt in 0..DESTROY_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(DESTROY_RETRY).await;
            }
            let pids = self.manager.pids(name)?;
            let mut failed = Vec::new();
            for pid in pids {
                // Never the kubelet itself, init, or a kernel-invalid ID.
                if pid <= 1 || u32::try_from(pid).is_ok_and(|p| p == own) {
                    continue;
                }
                debug!(pid, cgroup = %name, "killing process left in pod cgroup");
                match kill(Pid::from_raw(pid), Signal::SIGKILL) {
                    Ok(()) | Err(Errno::ESRCH) => {}
                    Err(e) => failed.push(format!("{pid}: {e}")),
                }
            }
            if !failed.is_empty() {
                last = Err(CgroupError::Kill {
                    name: name.clone(),
                    message: failed.join(", "),
                });
                continue;
            }
            last = self.manager.destroy(name);
            if last.is_ok() {
                return Ok(());
            }
        }
        last
    }

    /// Remove the cgroups of pods that the kubelet does not run and `keep` does not name
    /// (pods the runtime still holds, whose own termination removes them); returns the UIDs
    /// cleaned. The reference does this in its housekeeping.
    pub async fn cleanup_orphans(&self, keep: &BTreeSet<String>) -> Vec<String> {
        let found = match self.pod_cgroups_on_node() {
            Ok(found) => found,
            Err(err) => {
                warn!(error = %err, "cannot list pod cgroups");
                return Vec::new();
            }
        };
        let mut cleaned = Vec::new();
        for uid in found.keys() {
            if keep.contains(uid) || self.is_active(uid) {
                continue;
            }
            info!(pod_uid = %uid, "removing the cgroup of a pod no longer on the node");
            if self.destroy_pod(uid).await.is_ok() {
                cleaned.push(uid.clone());
            }
        }
        cleaned
    }

    /// The UIDs of pod cgroups that no running pod owns, for the caller to check against
    /// the runtime before [`PodCgroups::cleanup_orphans`].
    pub fn orphan_candidates(&self) -> Vec<String> {
        match self.pod_cgroups_on_node() {
            Ok(found) => found
                .into_keys()
                .filter(|uid| !self.is_active(uid))
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}

/// How often pod cgroups no pod owns are looked for (the reference's housekeeping period).
pub const HOUSEKEEPING_PERIOD: Duration = Duration::from_secs(2);
/// How often the QoS tiers are brought back to what the pods ask (as the reference).
pub const QOS_UPDATE_PERIOD: Duration = Duration::from_secs(60);

/// The kubelet's cgroup housekeeping, until aborted: every [`HOUSEKEEPING_PERIOD`], the
/// cgroups of pods that neither the kubelet runs, nor the runtime holds, nor still have
/// volumes (below `<pods_dir>/<uid>/volumes`) are removed; every [`QOS_UPDATE_PERIOD`] the
/// QoS tiers are updated.
pub async fn housekeeping(
    cgroups: Arc<PodCgroups>,
    runtime: Arc<dyn crate::runtime::Runtime>,
    pods_dir: std::path::PathBuf,
) {
    let mut tick = tokio::time::interval(HOUSEKEEPING_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_qos_update = tokio::time::Instant::now();
    loop {
        tick.tick().await;
        if last_qos_update.elapsed() >= QOS_UPDATE_PERIOD {
            last_qos_update = tokio::time::Instant::now();
            if let Err(err) = cgroups.update_qos() {
                warn!(error = %err, "QoS cgroups not updated");
            }
        }
        let candidates = cgroups.orphan_candidates();
        if candidates.is_empty() {
            continue;
        }
        // Pods the runtime still holds are terminated by their own workers, which remove
        // their cgroups after their processes.
        let sandboxes = match runtime
            .list_pod_sandboxes(&crate::runtime::ListFilter::all())
            .await
        {
            Ok(s) => s,
            Err(err) => {
                debug!(error = %err, "cannot list sandboxes; pod cgroup cleanup postponed");
                continue;
            }
        };
        let mut keep: BTreeSet<String> = sandboxes.into_iter().map(|s| s.metadata.uid).collect();
        keep.extend(
            candidates
                .into_iter()
                .filter(|uid| volumes_exist(&pods_dir.join(uid))),
        );
        cgroups.cleanup_orphans(&keep).await;
    }
}

/// Whether a pod directory still holds volumes (`volumes/<plugin>/<name>`): its cgroup
/// stays until they are torn down, as the reference's cleanup waits for them.
fn volumes_exist(pod_dir: &std::path::Path) -> bool {
    let Ok(plugins) = std::fs::read_dir(pod_dir.join("volumes")) else {
        return false;
    };
    plugins.flatten().any(|plugin| {
        std::fs::read_dir(plugin.path()).is_ok_and(|mut volumes| volumes.next().is_some())
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::{Container, PodSpec, ResourceRequirements};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    use super::*;
    use crate::cgroups::FakeCgroupManager;

    fn pod(uid: &str, requests: &[(&str, &str)], limits: &[(&str, &str)]) -> Pod {
        let list = |items: &[(&str, &str)]| {
            (!items.is_empty()).then(|| {
                items
                    .iter()
                    .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                    .collect::<BTreeMap<_, _>>()
            })
        };
        let mut p = Pod::default();
        p.metadata.uid = Some(uid.into());
        p.spec = Some(PodSpec {
            containers: vec![Container {
                name: "c".into(),
                resources: Some(ResourceRequirements {
                    requests: list(requests),
                    limits: list(limits),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        });
        p
    }

    #[tokio::test(start_paused = true)]
    async fn hierarchy_pods_and_orphans() {
        let fake = FakeCgroupManager::new();
        let settings = CgroupSettings {
            node_capacity: Some(super::super::NodeCgroupResources {
                cpu_milli: 2000,
                memory_bytes: 1 << 30,
            }),
            ..CgroupSettings::default()
        };
        let cgroups = PodCgroups::new(Arc::new(fake.clone()), settings, "/kubepods");
        cgroups.start().unwrap();
        assert_eq!(fake.get("/kubepods").unwrap().cpu_shares, Some(2048));
        assert_eq!(fake.get("/kubepods").unwrap().memory, Some(1 << 30));
        assert_eq!(
            fake.get("/kubepods/besteffort").unwrap().cpu_shares,
            Some(2)
        );
        assert_eq!(fake.get("/kubepods/burstable").unwrap().cpu_shares, Some(2));

        let a = pod("a", &[("cpu", "250m")], &[]);
        let b = pod("b", &[("cpu", "500m")], &[("memory", "64Mi")]);
        let g = pod("g", &[], &[("cpu", "1"), ("memory", "64Mi")]);
        let e = pod("e", &[], &[]);
        for p in [&a, &b, &g, &e] {
            cgroups.ensure_pod(p).unwrap();
        }
        assert!(fake.get("/kubepods/burstable/poda").is_some());
        assert!(fake.get("/kubepods/podg").is_some());
        assert!(fake.get("/kubepods/besteffort/pode").is_some());
        assert_eq!(
            fake.get("/kubepods/burstable").unwrap().cpu_shares,
            Some(convert::cpu_shares(750))
        );

        cgroups.destroy_pod("b").await.unwrap();
        assert!(fake.get("/kubepods/burstable/podb").is_none());
        assert_eq!(
            fake.get("/kubepods/burstable").unwrap().cpu_shares,
            Some(256)
        );

        // Left by an earlier kubelet: removed unless kept.
        fake.insert("/kubepods/burstable/podold", ResourceConfig::default());
        fake.insert("/kubepods/podkept", ResourceConfig::default());
        let mut candidates = cgroups.orphan_candidates();
        candidates.sort();
        assert_eq!(candidates, vec!["kept".to_string(), "old".to_string()]);
        let keep = BTreeSet::from(["kept".to_string()]);
        assert_eq!(
            cgroups.cleanup_orphans(&keep).await,
            vec!["old".to_string()]
        );
        assert!(fake.get("/kubepods/burstable/podold").is_none());
        assert!(fake.get("/kubepods/podkept").is_some());
        assert!(fake.get("/kubepods/burstable/poda").is_some());
    }
}
