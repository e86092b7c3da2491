//! [`CsiNodeUpdater`]: publishes the registered CSI drivers in the node's API objects, as the
//! reference kubelet's CSI node-info manager (`pkg/volume/csi/nodeinfomanager`) does.
//!
//! - At start, the `storage.k8s.io/v1` `CSINode` named after the node is created if absent,
//!   owned by the Node (ownerReference `v1`/`Node` with the Node's name and UID), with the
//!   `storage.alpha.kubernetes.io/migrated-plugins` annotation listing the in-tree plugins
//!   whose CSI migration is on in v1.28. An existing CSINode is kept as it is, entries of
//!   drivers not registered (yet) included: the reference only refreshes the annotation, and
//!   a driver that comes back re-registers over its entry.
//! - On a registration: the Node's `csi.volume.kubernetes.io/nodeid` annotation (a JSON map
//!   driver name to node ID) gets the driver's node ID, the driver's topology segments
//!   become Node labels (a label already set to another value is a collision, refused as the
//!   reference refuses it), and the CSINode's entry for the driver is replaced by one with
//!   its `nodeID`, sorted `topologyKeys` and `allocatable.count` (the driver's max volumes,
//!   left out when it sets no limit).
//! - On a removal: the CSINode entry and the annotation key go. The topology labels stay, as
//!   in the reference: another driver (or the cloud provider) may publish the same key.
//!
//! Every write is retried: a conflict at once (the object is read again), any other API
//! error with a doubling delay, for as long as the change is still wanted. The updater never
//! gives up and never panics; it logs each failure with the driver's name.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::storage::v1::{CSINode, CSINodeDriver, CSINodeSpec, VolumeNodeResources};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Map, Value, json};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;
use tracing::Instrument;

use crate::client::NodeInfo;
use crate::registry::{DriverEvent, DriverRegistry, RegisteredDriver};

/// The Node annotation holding a JSON map of CSI driver name to the node's ID in that driver.
pub const NODE_ID_ANNOTATION: &str = "csi.volume.kubernetes.io/nodeid";

/// The CSINode annotation listing the in-tree volume plugins whose CSI migration is on.
pub const MIGRATED_PLUGINS_ANNOTATION: &str = "storage.alpha.kubernetes.io/migrated-plugins";

/// The in-tree plugins whose CSI migration is on in a v1.28 kubelet (GA and locked on;
/// Portworx's gate is off by default), sorted as the reference joins them.
pub const MIGRATED_PLUGINS: &[&str] = &[
    "kubernetes.io/aws-ebs",
    "kubernetes.io/azure-disk",
    "kubernetes.io/azure-file",
    "kubernetes.io/cinder",
    "kubernetes.io/gce-pd",
    "kubernetes.io/vsphere-volume",
];

/// Why publishing a driver in the node's objects failed (each is retried).
#[derive(Debug, thiserror::Error)]
pub enum CsiNodeError {
    /// An API request failed.
    #[error("{op}: {source}")]
    Api {
        /// The request, e.g. `update csinodes/n1`.
        op: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// The Node's node ID annotation is not a JSON map of strings.
    #[error(
        "failed to parse node's {NODE_ID_ANNOTATION:?} annotation value ({value:?}) err={message}"
    )]
    BadAnnotation {
        /// The annotation's value.
        value: String,
        /// The JSON error.
        message: String,
    },
    /// A topology segment of the driver disagrees with a label the Node already has.
    #[error(
        "detected topology value collision: driver reported {key:?}:{value:?} but existing label is {key:?}:{existing:?}"
    )]
    TopologyCollision {
        /// The label key.
        key: String,
        /// What the driver reported.
        value: String,
        /// What the Node has.
        existing: String,
    },
    /// The driver reported no node ID.
    #[error("error adding CSI driver node info: driverNodeID must not be empty")]
    EmptyNodeId,
}

impl CsiNodeError {
    fn api(op: String, source: kube::Error) -> Self {
        CsiNodeError::Api { op, source }
    }

    /// Whether the write lost a race (409): read again and retry at once.
    pub fn is_conflict(&self) -> bool {
        matches!(self, CsiNodeError::Api { source: kube::Error::Api(s), .. } if s.code == 409)
    }

    fn is_not_found(&self) -> bool {
        matches!(self, CsiNodeError::Api { source: kube::Error::Api(s), .. } if s.code == 404)
    }
}

/// Retry settings of a [`CsiNodeUpdater`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsiNodeUpdaterOptions {
    /// Delay after the first failure of a change; doubles per failure.
    pub initial_retry_delay: Duration,
    /// Longest delay between retries.
    pub max_retry_delay: Duration,
    /// How many times a write that lost a race (409 Conflict) is read and tried again at
    /// once before the change waits for its next retry.
    pub conflict_retries: u32,
}

impl Default for CsiNodeUpdaterOptions {
    fn default() -> Self {
        CsiNodeUpdaterOptions {
            initial_retry_delay: Duration::from_millis(200),
            max_retry_delay: Duration::from_secs(60),
            conflict_retries: 5,
        }
    }
}

impl CsiNodeUpdaterOptions {
    fn delay(&self, failures: u32) -> Duration {
        let factor = 2u32.saturating_pow(failures.saturating_sub(1));
        self.initial_retry_delay
            .saturating_mul(factor)
            .min(self.max_retry_delay)
    }
}

/// Keeps the node's `CSINode`, its node ID annotation and topology labels in line with the
/// drivers of a [`DriverRegistry`]. Cheap to clone.
#[derive(Clone)]
pub struct CsiNodeUpdater {
    client: kube::Client,
    node_name: String,
    options: CsiNodeUpdaterOptions,
}

impl std::fmt::Debug for CsiNodeUpdater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CsiNodeUpdater")
            .field("node_name", &self.node_name)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// What is still to be done for one driver.
#[derive(Debug)]
enum Op {
    Install(RegisteredDriver),
    Uninstall,
}

#[derive(Debug)]
struct Pending {
    op: Op,
    failures: u32,
    retry_at: Instant,
}

impl Pending {
    fn now(op: Op) -> Self {
        Pending {
            op,
            failures: 0,
            retry_at: Instant::now(),
        }
    }
}

impl CsiNodeUpdater {
    /// An updater acting on the Node `node_name` and its CSINode through `client` (the node's
    /// own credentials: the Node authorizer lets a node write both).
    pub fn new(client: kube::Client, node_name: String) -> Self {
        CsiNodeUpdater {
            client,
            node_name,
            options: CsiNodeUpdaterOptions::default(),
        }
    }

    /// The same updater with other retry settings.
    pub fn with_options(mut self, options: CsiNodeUpdaterOptions) -> Self {
        self.options = options;
        self
    }

    /// Follow `registry` in a task: the CSINode is initialized, the drivers registered now
    /// are published and every later [`DriverEvent`] applied. Abort the handle to stop.
    pub fn spawn(self, registry: DriverRegistry) -> tokio::task::JoinHandle<()> {
        // Subscribe before the task starts so that no event between now and its first poll
        // is lost.
        let events = registry.subscribe();
        let span = tracing::info_span!("csinode_updater", node = %self.node_name);
        tokio::spawn(self.run(registry, events).instrument(span))
    }

    fn nodes(&self) -> Api<Node> {
        Api::all(self.client.clone())
    }

    fn csinodes(&self) -> Api<CSINode> {
        Api::all(self.client.clone())
    }

    async fn run(self, registry: DriverRegistry, mut events: broadcast::Receiver<DriverEvent>) {
        let mut pending: BTreeMap<String, Pending> = BTreeMap::new();
        // Drivers this updater has published, to withdraw after a lagged event stream.
        let mut published: BTreeSet<String> = BTreeSet::new();
        for driver in registry.drivers() {
            pending.insert(driver.name.clone(), Pending::now(Op::Install(driver)));
        }
        let mut initialized = false;
        let mut init_failures = 0u32;
        let mut init_retry_at = Instant::now();
        loop {
            if !initialized && Instant::now() >= init_retry_at {
                match self.initialize().await {
                    Ok(_) => {
                        initialized = true;
                        tracing::info!("CSINode initialized");
                    }
                    Err(error) => {
                        init_failures += 1;
                        let delay = self.options.delay(init_failures);
                        tracing::warn!(%error, retry_in = ?delay, "failed to initialize CSINode");
                        init_retry_at = Instant::now() + delay;
                    }
                }
            }
            if initialized {
                self.work(&mut pending, &mut published).await;
            }
            let next = if initialized {
                pending.values().map(|p| p.retry_at).min()
            } else {
                Some(init_retry_at)
            };
            tokio::select! {
                event = events.recv() => match event {
                    Ok(DriverEvent::Registered(driver)) => {
                        pending.insert(driver.name.clone(), Pending::now(Op::Install(driver)));
                    }
                    Ok(DriverEvent::Removed(driver)) => {
                        pending.insert(driver.name, Pending::now(Op::Uninstall));
                    }
                    Err(RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "CSI driver events missed; resyncing from the registry");
                        let current = registry.drivers();
                        let names: BTreeSet<&str> = current.iter().map(|d| d.name.as_str()).collect();
                        for gone in published.iter().filter(|n| !names.contains(n.as_str())) {
                            pending.insert(gone.clone(), Pending::now(Op::Uninstall));
                        }
                        for driver in current {
                            pending.insert(driver.name.clone(), Pending::now(Op::Install(driver)));
                        }
                    }
                    Err(RecvError::Closed) => {
                        tracing::debug!("driver registry dropped; CSINode updater stops");
                        return;
                    }
                },
                _ = sleep_until(next) => {}
            }
        }
    }

    /// Apply every change that is due; failed ones wait for their next retry.
    async fn work(
        &self,
        pending: &mut BTreeMap<String, Pending>,
        published: &mut BTreeSet<String>,
    ) {
        let now = Instant::now();
        let due: Vec<String> = pending
            .iter()
            .filter(|(_, p)| p.retry_at <= now)
            .map(|(name, _)| name.clone())
            .collect();
        for name in due {
            let Some(p) = pending.remove(&name) else {
                continue;
            };
            let result = match &p.op {
                Op::Install(driver) => self.install_driver(driver).await,
                Op::Uninstall => self.uninstall_driver(&name).await,
            };
            match result {
                Ok(()) => match p.op {
                    Op::Install(_) => {
                        published.insert(name.clone());
                        tracing::info!(driver = %name, "CSI driver published in CSINode and Node");
                    }
                    Op::Uninstall => {
                        published.remove(&name);
                        tracing::info!(driver = %name, "CSI driver withdrawn from CSINode and Node");
                    }
                },
                Err(error) => {
                    let failures = p.failures + 1;
                    let delay = self.options.delay(failures);
                    let what = match p.op {
                        Op::Install(_) => "install",
                        Op::Uninstall => "uninstall",
                    };
                    tracing::warn!(driver = %name, op = what, %error, retry_in = ?delay, "failed to update the node's CSI driver info");
                    pending.insert(
                        name,
                        Pending {
                            op: p.op,
                            failures,
                            retry_at: Instant::now() + delay,
                        },
                    );
                }
            }
        }
    }

    /// Run `attempt` again while it loses races, up to the configured number of times.
    async fn retry_conflicts<T, F, Fut>(&self, mut attempt: F) -> Result<T, CsiNodeError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, CsiNodeError>>,
    {
        let mut tries = 0;
        loop {
            match attempt().await {
                Err(e) if e.is_conflict() && tries < self.options.conflict_retries => {
                    tries += 1;
                    tracing::debug!(error = %e, "conflict; reading again");
                }
                other => return other,
            }
        }
    }

    /// The reference's `InitializeCSINodeWithAnnotation`: create the CSINode if it is missing,
    /// else bring its migrated-plugins annotation up to date (its drivers are kept).
    pub async fn initialize(&self) -> Result<CSINode, CsiNodeError> {
        self.retry_conflicts(|| self.try_initialize()).await
    }

    async fn try_initialize(&self) -> Result<CSINode, CsiNodeError> {
        let name = &self.node_name;
        match self.get_csinode().await? {
            None => self.create_csinode().await,
            Some(mut csinode) => {
                if !set_migration_annotation(&mut csinode) {
                    return Ok(csinode);
                }
                self.csinodes()
                    .replace(name, &PostParams::default(), &csinode)
                    .await
                    .map_err(|e| CsiNodeError::api(format!("update csinodes/{name}"), e))
            }
        }
    }

    async fn get_csinode(&self) -> Result<Option<CSINode>, CsiNodeError> {
        let name = &self.node_name;
        self.csinodes()
            .get_opt(name)
            .await
            .map_err(|e| CsiNodeError::api(format!("get csinodes/{name}"), e))
    }

    /// The reference's `CreateCSINode`: no drivers, owned by the Node.
    async fn create_csinode(&self) -> Result<CSINode, CsiNodeError> {
        let name = &self.node_name;
        let node = self
            .nodes()
            .get(name)
            .await
            .map_err(|e| CsiNodeError::api(format!("get nodes/{name}"), e))?;
        let mut csinode = CSINode {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                owner_references: Some(vec![OwnerReference {
                    api_version: "v1".to_string(),
                    kind: "Node".to_string(),
                    name: node.metadata.name.clone().unwrap_or_else(|| name.clone()),
                    uid: node.metadata.uid.clone().unwrap_or_default(),
                    ..OwnerReference::default()
                }]),
                ..ObjectMeta::default()
            },
            spec: CSINodeSpec { drivers: vec![] },
            ..CSINode::default()
        };
        set_migration_annotation(&mut csinode);
        // Made meanwhile (e.g. by an attempt whose answer was lost), it is an AlreadyExists,
        // a 409: the caller's conflict retry reads it and goes on.
        let created = self
            .csinodes()
            .create(&PostParams::default(), &csinode)
            .await
            .map_err(|e| CsiNodeError::api(format!("create csinodes/{name}"), e))?;
        tracing::info!(csinode = %name, "CSINode created");
        Ok(created)
    }

    /// Publish `driver`: node ID annotation and topology labels on the Node, its entry in
    /// the CSINode (created if missing). One attempt, conflicts aside.
    pub async fn install_driver(&self, driver: &RegisteredDriver) -> Result<(), CsiNodeError> {
        if driver.node.node_id.is_empty() {
            return Err(CsiNodeError::EmptyNodeId);
        }
        self.retry_conflicts(|| self.try_update_node(&driver.name, Some(&driver.node)))
            .await?;
        self.retry_conflicts(|| self.try_install_in_csinode(driver))
            .await
    }

    /// Withdraw the driver `name`: its CSINode entry and node ID annotation key. One
    /// attempt, conflicts aside.
    pub async fn uninstall_driver(&self, name: &str) -> Result<(), CsiNodeError> {
        self.retry_conflicts(|| self.try_uninstall_from_csinode(name))
            .await?;
        self.retry_conflicts(|| self.try_update_node(name, None))
            .await
    }

    /// Read the Node and, when something changes, send a merge patch of its metadata that
    /// carries the resourceVersion read (a concurrent writer makes it a 409, retried).
    async fn try_update_node(
        &self,
        driver: &str,
        install: Option<&NodeInfo>,
    ) -> Result<(), CsiNodeError> {
        let name = &self.node_name;
        let node = self
            .nodes()
            .get(name)
            .await
            .map_err(|e| CsiNodeError::api(format!("get nodes/{name}"), e))?;
        let mut metadata = Map::new();
        let node_id = install.map(|info| info.node_id.as_str());
        if let Some(annotation) = node_id_annotation(&node, driver, node_id)? {
            metadata.insert(
                "annotations".into(),
                json!({ NODE_ID_ANNOTATION: annotation }),
            );
        }
        if let Some(info) = install {
            let labels = topology_labels(&node, &info.topology)?;
            if !labels.is_empty() {
                metadata.insert("labels".into(), Value::Object(labels));
            }
        }
        if metadata.is_empty() {
            return Ok(());
        }
        metadata.insert(
            "resourceVersion".into(),
            json!(node.metadata.resource_version.unwrap_or_default()),
        );
        let patch = json!({ "metadata": metadata });
        self.nodes()
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| CsiNodeError::api(format!("patch nodes/{name}"), e))?;
        Ok(())
    }

    async fn try_install_in_csinode(&self, driver: &RegisteredDriver) -> Result<(), CsiNodeError> {
        let name = &self.node_name;
        let mut csinode = match self.get_csinode().await? {
            Some(c) => c,
            None => self.create_csinode().await?,
        };
        let entry = driver_entry(driver);
        let existing = csinode
            .spec
            .drivers
            .iter()
            .find(|d| d.name == driver.name)
            .cloned();
        // As the reference: an entry with the same node ID and topology keys is left alone.
        let spec_modified = existing.as_ref().is_none_or(|d| {
            d.node_id != entry.node_id
                || d.topology_keys.iter().flatten().collect::<BTreeSet<_>>()
                    != entry
                        .topology_keys
                        .iter()
                        .flatten()
                        .collect::<BTreeSet<_>>()
        });
        let annotation_modified = set_migration_annotation(&mut csinode);
        if !spec_modified && !annotation_modified {
            return Ok(());
        }
        if existing.as_ref().is_some_and(|d| *d != entry) {
            // kube-apiserver refuses any change of an existing entry ("field is immutable"),
            // so a driver that comes back with other details (a Removed and a Registered
            // coalesced here) loses its old entry in a write of its own first.
            csinode.spec.drivers.retain(|d| d.name != driver.name);
            csinode = self
                .csinodes()
                .replace(name, &PostParams::default(), &csinode)
                .await
                .map_err(|e| CsiNodeError::api(format!("update csinodes/{name}"), e))?;
        }
        csinode.spec.drivers.retain(|d| d.name != driver.name);
        csinode.spec.drivers.push(entry);
        self.csinodes()
            .replace(name, &PostParams::default(), &csinode)
            .await
            .map_err(|e| CsiNodeError::api(format!("update csinodes/{name}"), e))?;
        Ok(())
    }

    async fn try_uninstall_from_csinode(&self, driver: &str) -> Result<(), CsiNodeError> {
        let name = &self.node_name;
        let Some(mut csinode) = self.get_csinode().await? else {
            return Ok(());
        };
        let before = csinode.spec.drivers.len();
        csinode.spec.drivers.retain(|d| d.name != driver);
        if csinode.spec.drivers.len() == before {
            return Ok(());
        }
        match self
            .csinodes()
            .replace(name, &PostParams::default(), &csinode)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                let e = CsiNodeError::api(format!("update csinodes/{name}"), e);
                // Deleted meanwhile: nothing left to withdraw.
                if e.is_not_found() { Ok(()) } else { Err(e) }
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The CSINode entry of `driver`: sorted topology keys, the volume limit when there is one
/// (capped at i32::MAX as the reference caps it).
fn driver_entry(driver: &RegisteredDriver) -> CSINodeDriver {
    let keys: Vec<String> = driver.node.topology.keys().cloned().collect();
    let allocatable = driver
        .node
        .max_volumes_per_node
        .filter(|m| *m > 0)
        .map(|m| VolumeNodeResources {
            count: Some(i32::try_from(m).unwrap_or(i32::MAX)),
        });
    CSINodeDriver {
        name: driver.name.clone(),
        node_id: driver.node.node_id.clone(),
        // The reference sends an empty list, which the server stores as absent.
        topology_keys: (!keys.is_empty()).then_some(keys),
        allocatable,
    }
}

/// Set the migrated-plugins annotation to [`MIGRATED_PLUGINS`]; whether it changed (the
/// old value compared as a set, as the reference does).
fn set_migration_annotation(csinode: &mut CSINode) -> bool {
    let annotations = csinode
        .metadata
        .annotations
        .get_or_insert_with(BTreeMap::new);
    let old: BTreeSet<&str> = annotations
        .get(MIGRATED_PLUGINS_ANNOTATION)
        .map(|v| v.split(',').filter(|s| !s.is_empty()).collect())
        .unwrap_or_default();
    let new: BTreeSet<&str> = MIGRATED_PLUGINS.iter().copied().collect();
    if old == new {
        return false;
    }
    annotations.insert(
        MIGRATED_PLUGINS_ANNOTATION.to_string(),
        MIGRATED_PLUGINS.join(","),
    );
    true
}

/// The new value of the node ID annotation with `driver` set to `node_id` (or removed when
/// `None`): `Some(Value::Null)` to remove the annotation, `None` when nothing changes.
fn node_id_annotation(
    node: &Node,
    driver: &str,
    node_id: Option<&str>,
) -> Result<Option<Value>, CsiNodeError> {
    let current = node
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(NODE_ID_ANNOTATION))
        .filter(|v| !v.is_empty());
    let mut map: BTreeMap<String, String> = match current {
        Some(v) => serde_json::from_str(v).map_err(|e| CsiNodeError::BadAnnotation {
            value: v.clone(),
            message: e.to_string(),
        })?,
        None => BTreeMap::new(),
    };
    match node_id {
        Some(id) => {
            if map.get(driver).map(String::as_str) == Some(id) {
                return Ok(None);
            }
            map.insert(driver.to_string(), id.to_string());
        }
        None => {
            if map.remove(driver).is_none() {
                return Ok(None);
            }
            if map.is_empty() {
                return Ok(Some(Value::Null));
            }
        }
    }
    // A BTreeMap serializes with sorted keys, as Go's json.Marshal of a map.
    let text = serde_json::to_string(&map).map_err(|e| CsiNodeError::BadAnnotation {
        value: String::new(),
        message: e.to_string(),
    })?;
    Ok(Some(Value::String(text)))
}

/// The topology labels the Node lacks; a collision with a different value is an error.
fn topology_labels(
    node: &Node,
    topology: &BTreeMap<String, String>,
) -> Result<Map<String, Value>, CsiNodeError> {
    let labels = node.metadata.labels.as_ref();
    let mut missing = Map::new();
    for (key, value) in topology {
        match labels.and_then(|l| l.get(key)) {
            Some(existing) if existing != value => {
                return Err(CsiNodeError::TopologyCollision {
                    key: key.clone(),
                    value: value.clone(),
                    existing: existing.clone(),
                });
            }
            Some(_) => {}
            None => {
                missing.insert(key.clone(), Value::String(value.clone()));
            }
        }
    }
    Ok(missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(annotation: Option<&str>, labels: &[(&str, &str)]) -> Node {
        let mut n = Node::default();
        if let Some(a) = annotation {
            n.metadata.annotations = Some(BTreeMap::from([(
                NODE_ID_ANNOTATION.to_string(),
                a.to_string(),
            )]));
        }
        n.metadata.labels = Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        n
    }

    #[test]
    fn node_id_annotation_is_a_sorted_json_map() {
        let n = node(None, &[]);
        assert_eq!(
            node_id_annotation(&n, "b.csi", Some("id-b")).unwrap(),
            Some(json!(r#"{"b.csi":"id-b"}"#))
        );
        let n = node(Some(r#"{"b.csi":"id-b"}"#), &[]);
        assert_eq!(
            node_id_annotation(&n, "a.csi", Some("id-a")).unwrap(),
            Some(json!(r#"{"a.csi":"id-a","b.csi":"id-b"}"#))
        );
        assert_eq!(node_id_annotation(&n, "b.csi", Some("id-b")).unwrap(), None);
        assert_eq!(node_id_annotation(&n, "a.csi", None).unwrap(), None);
        assert_eq!(
            node_id_annotation(&n, "b.csi", None).unwrap(),
            Some(Value::Null)
        );
        let n = node(Some(r#"{"a.csi":"1","b.csi":"2"}"#), &[]);
        assert_eq!(
            node_id_annotation(&n, "a.csi", None).unwrap(),
            Some(json!(r#"{"b.csi":"2"}"#))
        );
        let bad = node(Some("not json"), &[]);
        assert!(matches!(
            node_id_annotation(&bad, "a.csi", Some("x")),
            Err(CsiNodeError::BadAnnotation { .. })
        ));
    }

    #[test]
    fn topology_labels_are_added_and_collisions_refused() {
        let n = node(None, &[("zone", "a")]);
        let topo = BTreeMap::from([
            ("zone".to_string(), "a".to_string()),
            ("rack".to_string(), "r1".to_string()),
        ]);
        let missing = topology_labels(&n, &topo).unwrap();
        assert_eq!(Value::Object(missing), json!({"rack": "r1"}));
        let clash = BTreeMap::from([("zone".to_string(), "b".to_string())]);
        let err = topology_labels(&n, &clash).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"detected topology value collision: driver reported "zone":"b" but existing label is "zone":"a""#
        );
    }

    #[test]
    fn entries_and_annotation() {
        let mut driver = RegisteredDriver {
            name: "d.csi".into(),
            endpoint: "/x".into(),
            registration_socket: "/y".into(),
            version: crate::registration::CsiVersion {
                major: 1,
                minor: 0,
                patch: 0,
            },
            node: NodeInfo {
                node_id: "n".into(),
                max_volumes_per_node: Some(u64::MAX),
                topology: BTreeMap::from([
                    ("z".to_string(), "1".to_string()),
                    ("a".to_string(), "2".to_string()),
                ]),
            },
        };
        let e = driver_entry(&driver);
        assert_eq!(
            e.topology_keys,
            Some(vec!["a".to_string(), "z".to_string()])
        );
        assert_eq!(e.allocatable.and_then(|a| a.count), Some(i32::MAX));
        driver.node.max_volumes_per_node = None;
        driver.node.topology.clear();
        let e = driver_entry(&driver);
        assert_eq!((e.topology_keys, e.allocatable), (None, None));

        let mut c = CSINode::default();
        assert!(set_migration_annotation(&mut c));
        assert!(!set_migration_annotation(&mut c));
        assert_eq!(
            c.metadata.annotations.unwrap()[MIGRATED_PLUGINS_ANNOTATION],
            "kubernetes.io/aws-ebs,kubernetes.io/azure-disk,kubernetes.io/azure-file,kubernetes.io/cinder,kubernetes.io/gce-pd,kubernetes.io/vsphere-volume"
        );
    }

    /// An in-process API server for the loop's timing: the Node and the CSINode as JSON, the
    /// first `failures` requests answered 500, every request recorded with its (paused) time.
    mod api {
        use std::sync::{Arc, Mutex};

        use serde_json::{Value, json};
        use tokio::time::Instant;
        use tonic::codegen::http::{Method, Request, Response, StatusCode};

        #[derive(Default)]
        pub struct State {
            pub node: Value,
            pub csinode: Option<Value>,
            pub failures: usize,
            pub log: Vec<(Instant, String, u16)>,
            pub rv: u64,
        }

        fn merge(target: &mut Value, patch: &Value) {
            match (target.as_object_mut(), patch.as_object()) {
                (Some(t), Some(p)) => {
                    for (k, v) in p {
                        if v.is_null() {
                            t.remove(k);
                        } else {
                            merge(t.entry(k.clone()).or_insert(Value::Null), v);
                        }
                    }
                }
                _ => *target = patch.clone(),
            }
        }

        fn status(code: u16, reason: &str) -> Value {
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason, "message": reason})
        }

        fn answer(state: &mut State, method: &Method, path: &str, body: &[u8]) -> (u16, Value) {
            if state.failures > 0 {
                state.failures -= 1;
                return (500, status(500, "InternalError"));
            }
            let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            state.rv += 1;
            let rv = json!(state.rv.to_string());
            match (method.as_str(), path) {
                ("GET", "/api/v1/nodes/n1") => (200, state.node.clone()),
                ("PATCH", "/api/v1/nodes/n1") => {
                    merge(&mut state.node, &body);
                    state.node["metadata"]["resourceVersion"] = rv;
                    (200, state.node.clone())
                }
                ("GET", "/apis/storage.k8s.io/v1/csinodes/n1") => match &state.csinode {
                    Some(c) => (200, c.clone()),
                    None => (404, status(404, "NotFound")),
                },
                ("POST", "/apis/storage.k8s.io/v1/csinodes")
                | ("PUT", "/apis/storage.k8s.io/v1/csinodes/n1") => {
                    let mut c = body;
                    c["metadata"]["resourceVersion"] = rv;
                    state.csinode = Some(c.clone());
                    (200, c)
                }
                _ => (404, status(404, "NotFound")),
            }
        }

        pub fn client(state: Arc<Mutex<State>>) -> kube::Client {
            let service = tower::service_fn(move |req: Request<kube::client::Body>| {
                let state = state.clone();
                async move {
                    let method = req.method().clone();
                    let path = req.uri().path().to_string();
                    let body = req.into_body().collect_bytes().await.unwrap_or_default();
                    let (code, value) = {
                        let mut s = state.lock().unwrap();
                        let (code, value) = answer(&mut s, &method, &path, &body);
                        s.log
                            .push((Instant::now(), format!("{method} {path}"), code));
                        (code, value)
                    };
                    let mut response =
                        Response::new(kube::client::Body::from(value.to_string().into_bytes()));
                    *response.status_mut() = StatusCode::from_u16(code).unwrap();
                    Ok::<_, std::convert::Infallible>(response)
                }
            });
            kube::Client::new(service, "default")
        }
    }

    #[tokio::test(start_paused = true)]
    async fn failed_writes_are_retried_on_the_backoff_schedule() {
        use std::sync::{Arc, Mutex};
        let state = Arc::new(Mutex::new(api::State {
            node: json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1", "uid": "u-1", "resourceVersion": "1"}}),
            failures: 3,
            ..Default::default()
        }));
        let registry = DriverRegistry::new();
        registry.insert(RegisteredDriver {
            name: "d.csi".into(),
            endpoint: "/x".into(),
            registration_socket: "/y".into(),
            version: crate::registration::CsiVersion {
                major: 1,
                minor: 0,
                patch: 0,
            },
            node: NodeInfo {
                node_id: "id-1".into(),
                max_volumes_per_node: Some(2),
                topology: BTreeMap::from([("zone".to_string(), "z1".to_string())]),
            },
        });
        let start = Instant::now();
        let options = CsiNodeUpdaterOptions {
            initial_retry_delay: Duration::from_millis(100),
            max_retry_delay: Duration::from_secs(1),
            conflict_retries: 5,
        };
        let task = CsiNodeUpdater::new(api::client(state.clone()), "n1".into())
            .with_options(options)
            .spawn(registry);
        tokio::time::sleep(Duration::from_secs(5)).await;
        let s = state.lock().unwrap();
        // Three failed initializations, 100, 200 and 400 ms apart; then the CSINode is
        // made and the driver published at once.
        let failed: Vec<u128> = s
            .log
            .iter()
            .filter(|(_, _, code)| *code == 500)
            .map(|(at, _, _)| (*at - start).as_millis())
            .collect();
        assert_eq!(failed, [0, 100, 300]);
        let csinode = s.csinode.clone().expect("CSINode written");
        assert_eq!(csinode["metadata"]["ownerReferences"][0]["uid"], "u-1");
        assert_eq!(
            csinode["spec"]["drivers"],
            json!([{"name": "d.csi", "nodeID": "id-1", "topologyKeys": ["zone"], "allocatable": {"count": 2}}])
        );
        assert_eq!(
            s.node["metadata"]["annotations"][NODE_ID_ANNOTATION],
            r#"{"d.csi":"id-1"}"#
        );
        assert_eq!(s.node["metadata"]["labels"]["zone"], "z1");
        let last = s.log.last().map(|(at, _, _)| (*at - start).as_millis());
        assert_eq!(
            last,
            Some(700),
            "all done at the fourth attempt: {:?}",
            s.log
        );
        drop(s);
        task.abort();
    }

    #[test]
    fn retry_delay_doubles_up_to_the_cap() {
        let o = CsiNodeUpdaterOptions {
            initial_retry_delay: Duration::from_millis(100),
            max_retry_delay: Duration::from_secs(1),
            conflict_retries: 1,
        };
        let delays: Vec<_> = (1..=6).map(|f| o.delay(f).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
    }
}
