//! What every pod worker shares: the seams, the settings, and the outgoing channels for
//! status and events (so that a slow API server never blocks a worker).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ObjectReference, Pod, PodStatus};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::kubelet::KubeletConfig;
use super::kubelet_state::Shared;
use crate::network::NetworkPlugin;
use crate::objects::PodObjects;
use crate::reporter::{EventType, KubeletEvent, NodeReporter};
use crate::runtime::Runtime;
use crate::volume::VolumePlugin;

/// How many events may wait for the reporter before new ones are dropped.
const EVENT_QUEUE: usize = 1024;
/// How long a failed status report waits before it is tried again.
const STATUS_RETRY: Duration = Duration::from_secs(2);

/// Shared by all pod workers.
pub(super) struct WorkerContext {
    pub config: KubeletConfig,
    /// The runtime's name, for container IDs in status (`containerd://<id>`).
    pub runtime_name: String,
    pub runtime: Arc<dyn Runtime>,
    pub network: Arc<dyn NetworkPlugin>,
    pub volume_plugins: Vec<Arc<dyn VolumePlugin>>,
    /// Where ConfigMaps, Secrets and Services come from; none without an API server.
    pub pod_objects: Option<Arc<dyn PodObjects>>,
    /// Where RuntimeClasses come from; none: the default handler for every pod.
    pub runtime_classes: Option<Arc<dyn crate::runtime_class::RuntimeClasses>>,
    /// Mounts the bind mounts of subPaths.
    pub mounter: Arc<dyn crate::volume::Mounter>,
    /// The QoS and pod cgroups, when the kubelet manages cgroups.
    pub pod_cgroups: Option<Arc<crate::cgroups::PodCgroups>>,
    /// The node-pressure eviction manager, whose admit handler a new pod goes through.
    pub node_eviction: Option<Arc<super::node_eviction::NodeEviction>>,
    /// The node a new pod must fit (resources, affinity, ports, taints); none without
    /// node status settings.
    pub node_info: Option<crate::admission::NodeInfo>,
    pub shared: Arc<Shared>,
    events: mpsc::Sender<KubeletEvent>,
    statuses: mpsc::UnboundedSender<PodReport>,
}

/// The API objects pods name, where they come from; and the mounter of subPaths.
pub(super) struct ObjectSources {
    pub pod_objects: Option<Arc<dyn PodObjects>>,
    pub runtime_classes: Option<Arc<dyn crate::runtime_class::RuntimeClasses>>,
    pub mounter: Arc<dyn crate::volume::Mounter>,
    /// The QoS and pod cgroups (not an API object: handed over with the other sources).
    pub pod_cgroups: Option<Arc<crate::cgroups::PodCgroups>>,
    /// The node-pressure eviction manager (likewise).
    pub node_eviction: Option<Arc<super::node_eviction::NodeEviction>>,
    /// The node pods are admitted to (likewise).
    pub node_info: Option<crate::admission::NodeInfo>,
}

impl WorkerContext {
    /// Build the context and spawn the tasks that drain events and statuses to the reporter.
    #[allow(clippy::too_many_arguments)] // the seams, each its own
    pub fn start(
        config: KubeletConfig,
        runtime_name: String,
        runtime: Arc<dyn Runtime>,
        network: Arc<dyn NetworkPlugin>,
        volume_plugins: Vec<Arc<dyn VolumePlugin>>,
        objects: ObjectSources,
        reporter: Arc<dyn NodeReporter>,
        shared: Arc<Shared>,
    ) -> (Arc<Self>, Vec<tokio::task::JoinHandle<()>>) {
        let ObjectSources {
            pod_objects,
            runtime_classes,
            mounter,
            pod_cgroups,
            node_eviction,
            node_info,
        } = objects;
        let (events, event_rx) = mpsc::channel(EVENT_QUEUE);
        let (statuses, status_rx) = mpsc::unbounded_channel();
        let tasks = vec![
            tokio::spawn(drain_events(reporter.clone(), event_rx)),
            tokio::spawn(drain_statuses(reporter.clone(), status_rx)),
        ];
        let ctx = Arc::new(Self {
            config,
            runtime_name,
            runtime,
            network,
            volume_plugins,
            pod_objects,
            runtime_classes,
            mounter,
            pod_cgroups,
            node_eviction,
            node_info,
            shared,
            events,
            statuses,
        });
        (ctx, tasks)
    }

    /// Record an event about a pod, or one of its containers when `container` is given.
    pub fn event(
        &self,
        pod: &Pod,
        container: Option<&str>,
        type_: EventType,
        reason: &str,
        message: String,
    ) {
        let field_path = container.map(|name| container_field_path(pod, name));
        let event = KubeletEvent {
            involved: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: pod.metadata.name.clone(),
                namespace: pod.metadata.namespace.clone(),
                uid: pod.metadata.uid.clone(),
                resource_version: pod.metadata.resource_version.clone(),
                field_path,
            },
            type_,
            reason: reason.to_string(),
            message,
        };
        if self.events.try_send(event).is_err() {
            debug!(reason, "event queue full; event dropped");
        }
    }

    /// Hand a changed pod status to the reporter (asynchronously).
    pub fn report_status(&self, pod: &Pod, status: &PodStatus) {
        let _ = self
            .statuses
            .send(PodReport::Status(Box::new((pod.clone(), status.clone()))));
    }

    /// Tell the reporter the pod is gone from the node, after any status still queued for it.
    pub fn report_removed(&self, pod: &Pod) {
        let _ = self
            .statuses
            .send(PodReport::Removed(Box::new(pod.clone())));
    }
}

/// `spec.containers{name}` or `spec.initContainers{name}`, as the reference names them.
fn container_field_path(pod: &Pod, name: &str) -> String {
    let init = pod
        .spec
        .as_ref()
        .and_then(|s| s.init_containers.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.name == name));
    if init {
        format!("spec.initContainers{{{name}}}")
    } else {
        format!("spec.containers{{{name}}}")
    }
}

async fn drain_events(reporter: Arc<dyn NodeReporter>, mut rx: mpsc::Receiver<KubeletEvent>) {
    while let Some(event) = rx.recv().await {
        if let Err(err) = reporter.record_event(&event).await {
            debug!(reason = %event.reason, error = %err, "event not recorded");
        }
    }
}

/// What the pod workers hand to the reporter, in order per pod.
pub(super) enum PodReport {
    /// The pod's status changed.
    Status(Box<(Pod, PodStatus)>),
    /// The pod was stopped and removed from the node.
    Removed(Box<Pod>),
}

/// What is still to be reported about one pod: its newest status, then (once it is gone)
/// its removal, which must not overtake the final status (the API server would lose it
/// with the deleted object).
#[derive(Default)]
struct Pending {
    status: Option<(Pod, PodStatus)>,
    removed: Option<Pod>,
}

impl Pending {
    fn add(map: &mut BTreeMap<String, Pending>, report: PodReport) {
        let uid = |pod: &Pod| pod.metadata.uid.clone().unwrap_or_default();
        match report {
            PodReport::Status(report) => {
                let entry = map.entry(uid(&report.0)).or_default();
                entry.status = Some(*report);
            }
            PodReport::Removed(pod) => {
                let entry = map.entry(uid(&pod)).or_default();
                entry.removed = Some(*pod);
            }
        }
    }

    /// Report what is pending; true when nothing is left.
    async fn flush(&mut self, uid: &str, reporter: &dyn NodeReporter) -> bool {
        if let Some((pod, status)) = &self.status {
            match reporter.update_pod_status(pod, status).await {
                // NotFound: the pod is gone from the API server; nothing to report to.
                Ok(()) | Err(crate::error::ReportError::NotFound(_)) => self.status = None,
                Err(err) => {
                    warn!(uid, error = %err, "pod status not reported; will retry");
                    return false;
                }
            }
        }
        if let Some(pod) = &self.removed {
            match reporter.pod_removed(pod).await {
                Ok(()) | Err(crate::error::ReportError::NotFound(_)) => self.removed = None,
                Err(err) => {
                    warn!(uid, error = %err, "pod removal not reported; will retry");
                    return false;
                }
            }
        }
        true
    }
}

/// Reports pod statuses (newest per pod) and removals, in order per pod; a failed report is
/// kept and tried again, and a newer status of the same pod replaces it.
async fn drain_statuses(
    reporter: Arc<dyn NodeReporter>,
    mut rx: mpsc::UnboundedReceiver<PodReport>,
) {
    let mut pending: BTreeMap<String, Pending> = BTreeMap::new();
    loop {
        if pending.is_empty() {
            match rx.recv().await {
                Some(report) => Pending::add(&mut pending, report),
                None => return,
            }
        }
        while let Ok(report) = rx.try_recv() {
            Pending::add(&mut pending, report);
        }
        let uids: Vec<String> = pending.keys().cloned().collect();
        for uid in uids {
            let Some(entry) = pending.get_mut(&uid) else {
                continue;
            };
            if entry.flush(&uid, reporter.as_ref()).await {
                pending.remove(&uid);
            }
        }
        if !pending.is_empty() {
            tokio::select! {
                report = rx.recv() => match report {
                    Some(report) => Pending::add(&mut pending, report),
                    None => return,
                },
                _ = tokio::time::sleep(STATUS_RETRY) => {}
            }
        }
    }
}

impl crate::probes::worker::ProbeEvents for WorkerContext {
    fn probe_event(
        &self,
        pod: &Pod,
        container: &str,
        type_: EventType,
        reason: &str,
        message: String,
    ) {
        self.event(pod, Some(container), type_, reason, message);
    }
}

impl WorkerContext {
    /// What the probe workers of a pod need from the kubelet.
    pub fn probe_deps(self: &Arc<Self>) -> crate::probes::worker::ProbeDeps {
        crate::probes::worker::ProbeDeps {
            runtime: self.runtime.clone(),
            events: self.clone(),
            metrics: self.shared.probe_metrics.clone(),
        }
    }
}
