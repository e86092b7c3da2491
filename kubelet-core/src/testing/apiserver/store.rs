//! The object store: one global resourceVersion, system metadata, defaulting and
//! validation, optimistic concurrency, graceful pod deletion, and a bounded event history
//! that watches resume from.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use jiff::Timestamp;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::{broadcast, watch};

use super::pod_status;
use super::resources::{ResourceInfo, storage_form};
use super::selectors::Selectors;
use super::services;
use super::status::ApiError;
use super::storage;
use super::typed;

/// The type of a watch event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// `ADDED`.
    Added,
    /// `MODIFIED`.
    Modified,
    /// `DELETED`.
    Deleted,
}

impl EventType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }
}

/// One change in the store, as kept in the history.
#[derive(Debug, Clone)]
pub struct StoreEvent {
    /// The resourceVersion of the change.
    pub rv: u64,
    /// Storage key of the resource.
    pub storage: &'static str,
    /// Type.
    pub kind: EventType,
    /// The object after the change (for a deletion, its last state with the deletion's RV).
    pub object: Value,
    /// The object before the change.
    pub old: Option<Value>,
}

/// Which part of an object an update may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The main resource: everything but status.
    Main,
    /// The `status` subresource: only status.
    Status,
}

/// `DeleteOptions` that the fake honours.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteOptions {
    /// `gracePeriodSeconds`.
    pub grace_period_seconds: Option<i64>,
    /// `preconditions.uid`.
    pub uid: Option<String>,
    /// `preconditions.resourceVersion`.
    pub resource_version: Option<String>,
}

type Key = (&'static str, String, String);

pub(crate) struct Store {
    objects: BTreeMap<Key, Value>,
    rv: u64,
    history: VecDeque<Arc<StoreEvent>>,
    history_limit: usize,
    /// Events with an RV at or below this one are no longer in the history.
    compacted: u64,
    uid_seq: u64,
    pub(crate) events: broadcast::Sender<Arc<StoreEvent>>,
    pub(crate) rv_tx: watch::Sender<u64>,
}

fn now_rfc3339() -> String {
    Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn meta(obj: &Value, field: &str) -> Option<String> {
    obj.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .map(str::to_string)
}

fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    match obj.get_mut("metadata") {
        Some(Value::Object(m)) => m,
        // Just made an object above; this arm cannot be reached.
        _ => unreachable!("metadata is an object"),
    }
}

/// Whether `name` is a DNS-1123 subdomain (or label when `label`).
fn valid_dns_name(name: &str, label: bool) -> bool {
    let max = if label { 63 } else { 253 };
    !name.is_empty()
        && name.len() <= max
        && name.chars().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || (!label && c == '.')
        })
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

fn parse_rv(s: &str) -> Result<u64, ApiError> {
    s.parse::<u64>()
        .map_err(|_| ApiError::bad_request(format!("invalid resource version: {s:?}")))
}

impl Store {
    pub(crate) fn new(history_limit: usize) -> Self {
        let (events, _) = broadcast::channel(16_384);
        let (rv_tx, _) = watch::channel(0);
        let mut s = Self {
            objects: BTreeMap::new(),
            rv: 0,
            history: VecDeque::new(),
            history_limit: history_limit.max(1),
            compacted: 0,
            uid_seq: 0,
            events,
            rv_tx,
        };
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            s.ensure_namespace(ns);
        }
        // The API server's own Service, which kube-apiserver's bootstrap controller keeps
        // at the first address of the service range.
        if let Some(info) = storage_form("services") {
            let _ = s.create(
                info,
                "default",
                json!({
                    "metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
                    "spec": {
                        "clusterIP": services::first_ip(),
                        "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}],
                    },
                }),
            );
        }
        s
    }

    fn ensure_namespace(&mut self, ns: &str) {
        let info = storage_form("namespaces");
        if let Some(info) = info
            && !self
                .objects
                .contains_key(&("namespaces", String::new(), ns.to_string()))
        {
            let _ = self.create(info, "", json!({"metadata": {"name": ns}}));
        }
    }

    fn service_ips_in_use(&self) -> Vec<String> {
        self.objects
            .iter()
            .filter(|(k, _)| k.0 == "services")
            .filter_map(|(_, v)| v.pointer("/spec/clusterIP").and_then(Value::as_str))
            .map(str::to_string)
            .collect()
    }

    pub(crate) fn current_rv(&self) -> u64 {
        self.rv
    }

    pub(crate) fn compacted_rv(&self) -> u64 {
        self.compacted
    }

    /// Drops all history: watches from any earlier RV get 410 (as after an etcd compaction).
    pub(crate) fn compact(&mut self) {
        self.history.clear();
        self.compacted = self.rv;
    }

    fn new_uid(&mut self) -> String {
        self.uid_seq += 1;
        let mut h = Sha256::new();
        h.update(self.uid_seq.to_be_bytes());
        h.update(Timestamp::now().as_nanosecond().to_be_bytes());
        h.update(super::random_hex().as_bytes());
        let d = h.finalize();
        let hex: String = d.iter().take(16).map(|b| format!("{b:02x}")).collect();
        // Shape it as a version-4 UUID, as the real server's uuid.NewUUID().
        format!(
            "{}-{}-4{}-a{}-{}",
            &hex[0..8],
            &hex[8..12],
            &hex[13..16],
            &hex[17..20],
            &hex[20..32]
        )
    }

    fn record(
        &mut self,
        storage: &'static str,
        kind: EventType,
        object: Value,
        old: Option<Value>,
    ) {
        let ev = Arc::new(StoreEvent {
            rv: self.rv,
            storage,
            kind,
            object,
            old,
        });
        self.history.push_back(ev.clone());
        while self.history.len() > self.history_limit {
            if let Some(dropped) = self.history.pop_front() {
                self.compacted = dropped.rv;
            }
        }
        let _ = self.events.send(ev);
        self.rv_tx.send_replace(self.rv);
    }

    /// History events after `rv`, or 410 when some are gone.
    pub(crate) fn events_since(&self, rv: u64) -> Result<Vec<Arc<StoreEvent>>, ApiError> {
        if rv < self.compacted {
            return Err(ApiError::expired(rv, self.compacted + 1));
        }
        Ok(self.history.iter().filter(|e| e.rv > rv).cloned().collect())
    }

    fn key(info: &ResourceInfo, ns: &str, name: &str) -> Key {
        let ns = if info.namespaced { ns } else { "" };
        (info.storage, ns.to_string(), name.to_string())
    }

    /// A stored object.
    pub(crate) fn get(&self, info: &ResourceInfo, ns: &str, name: &str) -> Result<Value, ApiError> {
        self.objects
            .get(&Self::key(info, ns, name))
            .cloned()
            .ok_or_else(|| ApiError::not_found(info.group, info.plural, name))
    }

    /// Objects matching the selectors at `rv` (current when `None`), sorted by
    /// namespace/name as etcd keys are, and the RV they were read at.
    pub(crate) fn list(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        sel: &Selectors,
        at: Option<u64>,
    ) -> Result<(Vec<Value>, u64), ApiError> {
        let snapshot;
        let (objects, rv) = match at {
            Some(rv) if rv < self.rv => {
                snapshot = self.snapshot_at(rv)?;
                (&snapshot, rv)
            }
            Some(rv) if rv > self.rv => {
                return Err(ApiError::too_large_resource_version(rv, self.rv));
            }
            _ => (&self.objects, self.rv),
        };
        let items = objects
            .iter()
            .filter(|((s, n, _), _)| *s == info.storage && ns.is_none_or(|want| want == n))
            .map(|(_, v)| v)
            .filter(|v| sel.matches(v))
            .cloned()
            .collect();
        Ok((items, rv))
    }

    /// The store as it was at `rv`, rebuilt by undoing later history.
    fn snapshot_at(&self, rv: u64) -> Result<BTreeMap<Key, Value>, ApiError> {
        if rv < self.compacted {
            return Err(ApiError::expired(rv, self.compacted + 1));
        }
        let mut objs = self.objects.clone();
        for ev in self.history.iter().rev().take_while(|e| e.rv > rv) {
            let name = meta(&ev.object, "name").unwrap_or_default();
            let ns = meta(&ev.object, "namespace").unwrap_or_default();
            let key = (ev.storage, ns, name);
            match &ev.old {
                Some(old) => {
                    objs.insert(key, old.clone());
                }
                None => {
                    objs.remove(&key);
                }
            }
        }
        Ok(objs)
    }

    /// Creates an object (internal form, kind and apiVersion set by the caller or here).
    pub(crate) fn create(
        &mut self,
        info: &'static ResourceInfo,
        ns: &str,
        mut obj: Value,
    ) -> Result<Value, ApiError> {
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request must be a JSON object",
            ));
        }
        if obj.get("metadata").is_some_and(|m| !m.is_object()) {
            return Err(ApiError::bad_request(
                "json: cannot unmarshal metadata into Go struct field of type v1.ObjectMeta",
            ));
        }
        if meta(&obj, "resourceVersion").is_some_and(|rv| !rv.is_empty()) {
            // etcd3 store's Create refuses this with a plain error, i.e. a 500.
            return Err(ApiError::internal(
                "resourceVersion should not be set on objects to be created",
            ));
        }
        let now = now_rfc3339();
        let mut name = meta(&obj, "name").unwrap_or_default();
        if name.is_empty() {
            match meta(&obj, "generateName").filter(|g| !g.is_empty()) {
                Some(prefix) => {
                    let suffix: String = self
                        .new_uid()
                        .chars()
                        .filter(|c| c.is_ascii_alphanumeric())
                        .take(5)
                        .collect();
                    name = format!("{prefix}{suffix}");
                }
                None => {
                    return Err(ApiError::invalid(
                        info.kind,
                        info.group,
                        "",
                        &[(
                            "metadata.name".to_string(),
                            "FieldValueRequired",
                            "Required value: name or generateName is required".to_string(),
                        )],
                    ));
                }
            }
        }
        if info.namespaced {
            let body_ns = meta(&obj, "namespace").unwrap_or_default();
            if !body_ns.is_empty() && body_ns != ns {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            if !self
                .objects
                .contains_key(&("namespaces", String::new(), ns.to_string()))
            {
                return Err(ApiError::not_found("", "namespaces", ns));
            }
        }
        let label = matches!(info.storage, "namespaces");
        if !valid_dns_name(&name, label) && info.storage != "events" {
            let what = if label {
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
            } else {
                storage::DNS1123_SUBDOMAIN_MSG
            };
            let cause = (
                "metadata.name".to_string(),
                "FieldValueInvalid",
                format!("Invalid value: \"{name}\": {what}"),
            );
            // The storage kinds report it with the spec's errors, as one validation.
            let mut causes = vec![cause];
            if storage::STORAGES.contains(&info.storage) {
                let mut typed =
                    typed::normalize(info, obj.clone()).map_err(ApiError::bad_request)?;
                storage::defaults_on_create(info.storage, &mut typed);
                causes.extend(storage::validate(info.storage, &typed));
            }
            return Err(ApiError::invalid(info.kind, info.group, &name, &causes));
        }
        let key = Self::key(info, ns, &name);
        if self.objects.contains_key(&key) {
            return Err(ApiError::already_exists(info.group, info.plural, &name));
        }
        obj["kind"] = json!(info.kind);
        obj["apiVersion"] = json!(info.api_version());
        if info.namespaced {
            meta_mut(&mut obj).insert("namespace".into(), json!(ns));
        }
        let mut obj = typed::normalize(info, obj).map_err(ApiError::bad_request)?;
        defaults(info, &mut obj, &now);
        validate(info, &name, &obj)?;
        if info.storage == "services" {
            services::allocate_cluster_ip(&mut obj, self.service_ips_in_use())?;
        }
        let uid = self.new_uid();
        self.rv += 1;
        let m = meta_mut(&mut obj);
        m.insert("name".into(), json!(name));
        if info.namespaced {
            m.insert("namespace".into(), json!(ns));
        } else {
            m.remove("namespace");
        }
        m.insert("uid".into(), json!(uid));
        m.insert("resourceVersion".into(), json!(self.rv.to_string()));
        m.insert("creationTimestamp".into(), json!(now));
        m.remove("deletionTimestamp");
        m.remove("deletionGracePeriodSeconds");
        m.remove("managedFields");
        if tracks_generation(info) {
            m.insert("generation".into(), json!(1));
        } else {
            m.remove("generation");
        }
        self.objects.insert(key, obj.clone());
        self.record(info.storage, EventType::Added, obj.clone(), None);
        if info.storage == "namespaces" {
            // The serviceaccount controller's job, done here so TokenRequests work.
            if let Some(sa) = storage_form("serviceaccounts") {
                let _ = self.create(sa, &name, json!({"metadata": {"name": "default"}}));
            }
        }
        Ok(obj)
    }

    /// Replaces an object through `f`, which maps the current object to the proposed one
    /// (a PUT body or a patched copy). Applies the rules of the part being written,
    /// optimistic concurrency on `metadata.resourceVersion` and the UID precondition a
    /// patch may carry.
    pub(crate) fn update_with(
        &mut self,
        info: &'static ResourceInfo,
        ns: &str,
        name: &str,
        part: Part,
        f: impl FnOnce(&Value) -> Result<Value, ApiError>,
    ) -> Result<Value, ApiError> {
        let key = Self::key(info, ns, name);
        let cur = self
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(info.group, info.plural, name))?;
        let mut proposed = f(&cur)?;
        if proposed.get("metadata").is_some_and(|m| !m.is_object()) {
            return Err(ApiError::bad_request(
                "json: cannot unmarshal metadata into Go struct field of type v1.ObjectMeta",
            ));
        }
        if !proposed.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request must be a JSON object",
            ));
        }
        if let Some(body_name) = meta(&proposed, "name")
            && body_name != name
        {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        if info.namespaced
            && let Some(body_ns) = meta(&proposed, "namespace")
            && !body_ns.is_empty()
            && body_ns != ns
        {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        let cur_rv = meta(&cur, "resourceVersion").unwrap_or_default();
        if storage::REQUIRES_RESOURCE_VERSION.contains(&info.storage)
            && meta(&proposed, "resourceVersion").is_none_or(|r| r.is_empty())
        {
            return Err(storage::unconditional_update(info, name));
        }
        if let Some(rv) = meta(&proposed, "resourceVersion").filter(|r| !r.is_empty())
            && rv != cur_rv
        {
            return Err(ApiError::conflict_modified(info.group, info.plural, name));
        }
        let cur_uid = meta(&cur, "uid").unwrap_or_default();
        // A UID in the body is compared by the update validation: the UID is immutable
        // (422), which is how a patch's UID precondition fails on a real server.
        if let Some(uid) = meta(&proposed, "uid").filter(|u| !u.is_empty())
            && uid != cur_uid
        {
            return Err(ApiError::invalid(
                info.kind,
                info.group,
                name,
                &[(
                    "metadata.uid".to_string(),
                    "FieldValueInvalid",
                    format!("Invalid value: \"{uid}\": field is immutable"),
                )],
            ));
        }
        let mut new = match part {
            Part::Main => {
                if info.has_status {
                    match cur.get("status") {
                        Some(s) => proposed["status"] = s.clone(),
                        None => {
                            if let Some(m) = proposed.as_object_mut() {
                                m.remove("status");
                            }
                        }
                    }
                }
                proposed
            }
            Part::Status => {
                let mut n = cur.clone();
                match proposed.get("status") {
                    Some(s) => n["status"] = s.clone(),
                    None => {
                        if let Some(m) = n.as_object_mut() {
                            m.remove("status");
                        }
                    }
                }
                n
            }
        };
        new["kind"] = json!(info.kind);
        new["apiVersion"] = json!(info.api_version());
        // System fields are the server's, whatever the client sent.
        let cur_meta = cur.get("metadata").cloned().unwrap_or_else(|| json!({}));
        let m = meta_mut(&mut new);
        for field in [
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "resourceVersion",
            "generateName",
        ] {
            match cur_meta.get(field) {
                Some(v) => {
                    m.insert(field.into(), v.clone());
                }
                None => {
                    m.remove(field);
                }
            }
        }
        m.remove("managedFields");
        let mut new = typed::normalize(info, new).map_err(ApiError::bad_request)?;
        // Decoding defaults every write of the storage kinds (a PV status without a phase
        // is Pending).
        storage::defaults(info.storage, &mut new);
        if info.storage == "pods" {
            pod_status::convert_pod_ips(&mut new);
        }
        match part {
            Part::Main => {
                validate_update(info, name, &cur, &new)?;
                validate(info, name, &new)?;
            }
            Part::Status if info.storage == "pods" => {
                pod_status::validate_update(name, &cur, &new)?;
            }
            Part::Status => {}
        }
        if new == cur {
            // No write, no new resourceVersion, no event: as etcd3's GuaranteedUpdate.
            return Ok(cur);
        }
        if tracks_generation(info) && cur.get("spec") != new.get("spec") {
            let g = cur
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            meta_mut(&mut new).insert("generation".into(), json!(g + 1));
        }
        self.rv += 1;
        meta_mut(&mut new).insert("resourceVersion".into(), json!(self.rv.to_string()));
        self.objects.insert(key, new.clone());
        self.record(info.storage, EventType::Modified, new.clone(), Some(cur));
        Ok(new)
    }

    /// Deletes an object, honouring preconditions and (for bound pods) graceful deletion.
    /// Returns the object's last state, or its gracefully-deleting state.
    pub(crate) fn delete(
        &mut self,
        info: &'static ResourceInfo,
        ns: &str,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Value, ApiError> {
        let key = Self::key(info, ns, name);
        let cur = self
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(info.group, info.plural, name))?;
        let cur_uid = meta(&cur, "uid").unwrap_or_default();
        let cur_rv = meta(&cur, "resourceVersion").unwrap_or_default();
        if let Some(uid) = &opts.uid
            && *uid != cur_uid
        {
            return Err(ApiError::conflict(
                info.group,
                info.kind,
                name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {cur_uid}"
                ),
            ));
        }
        if let Some(rv) = &opts.resource_version
            && *rv != cur_rv
        {
            return Err(ApiError::conflict(
                info.group,
                info.kind,
                name,
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {cur_rv}"
                ),
            ));
        }
        if let Some(g) = opts.grace_period_seconds
            && g < 0
        {
            return Err(ApiError::invalid(
                info.kind,
                info.group,
                name,
                &[(
                    "gracePeriodSeconds".to_string(),
                    "FieldValueInvalid",
                    format!("Invalid value: {g}: must be >= 0"),
                )],
            ));
        }
        if info.storage == "pods"
            && let Some(graceful) = self.graceful_pod_delete(info, &key, &cur, opts)
        {
            return Ok(graceful);
        }
        if info.storage == "namespaces" {
            // The namespace controller's job, done at once: the contents go first.
            let inside: Vec<Key> = self
                .objects
                .keys()
                .filter(|(s, n, _)| *s != "namespaces" && n == name)
                .cloned()
                .collect();
            for k in inside {
                if let Some(old) = self.objects.remove(&k) {
                    self.rv += 1;
                    let mut gone = old.clone();
                    meta_mut(&mut gone)
                        .insert("resourceVersion".into(), json!(self.rv.to_string()));
                    self.record(k.0, EventType::Deleted, gone, Some(old));
                }
            }
        }
        self.objects.remove(&key);
        self.rv += 1;
        let mut gone = cur.clone();
        meta_mut(&mut gone).insert("resourceVersion".into(), json!(self.rv.to_string()));
        self.record(info.storage, EventType::Deleted, gone.clone(), Some(cur));
        Ok(gone)
    }

    /// Pod deletion as the pod strategy's CheckGracefulDelete: a pod bound to a node and
    /// not terminated gets a deletionTimestamp and stays until deleted with grace 0.
    fn graceful_pod_delete(
        &mut self,
        info: &'static ResourceInfo,
        key: &Key,
        cur: &Value,
        opts: &DeleteOptions,
    ) -> Option<Value> {
        let bound = cur
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .is_some_and(|n| !n.is_empty());
        let phase = cur
            .pointer("/status/phase")
            .and_then(Value::as_str)
            .unwrap_or("");
        let terminated = phase == "Succeeded" || phase == "Failed";
        let grace = opts.grace_period_seconds.unwrap_or_else(|| {
            cur.pointer("/spec/terminationGracePeriodSeconds")
                .and_then(Value::as_i64)
                .unwrap_or(30)
        });
        if !bound || terminated || grace == 0 {
            return None;
        }
        let existing = cur
            .pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_i64);
        if let Some(existing) = existing
            && grace >= existing
        {
            // A longer (or equal) grace period never extends a deletion under way.
            return Some(cur.clone());
        }
        let deadline = Timestamp::now() + jiff::SignedDuration::from_secs(grace);
        let mut new = cur.clone();
        self.rv += 1;
        let gen_next = cur
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(0)
            + 1;
        let m = meta_mut(&mut new);
        m.insert(
            "deletionTimestamp".into(),
            json!(deadline.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()),
        );
        m.insert("deletionGracePeriodSeconds".into(), json!(grace));
        m.insert("resourceVersion".into(), json!(self.rv.to_string()));
        if tracks_generation(info) {
            m.insert("generation".into(), json!(gen_next));
        }
        self.objects.insert(key.clone(), new.clone());
        self.record(
            info.storage,
            EventType::Modified,
            new.clone(),
            Some(cur.clone()),
        );
        Some(new)
    }

    pub(crate) fn parse_rv(s: &str) -> Result<u64, ApiError> {
        parse_rv(s)
    }
}

/// Pods carry metadata.generation (PodObservedGenerationTracking, 1.33+); namespaces,
/// nodes, configmaps, secrets, events and leases do not.
fn tracks_generation(info: &ResourceInfo) -> bool {
    info.storage == "pods"
}

fn set_default(obj: &mut Value, field: &str, v: Value) {
    if let Some(m) = obj.as_object_mut() {
        m.entry(field.to_string()).or_insert(v);
    }
}

/// The defaults kube-apiserver fills in on create (SetDefaults_* of core/v1).
fn defaults(info: &ResourceInfo, obj: &mut Value, _now: &str) {
    match info.storage {
        "pods" => {
            if !obj.get("spec").is_some_and(Value::is_object) {
                return;
            }
            let spec = &mut obj["spec"];
            set_default(spec, "restartPolicy", json!("Always"));
            set_default(spec, "terminationGracePeriodSeconds", json!(30));
            set_default(spec, "dnsPolicy", json!("ClusterFirst"));
            set_default(spec, "schedulerName", json!("default-scheduler"));
            set_default(spec, "securityContext", json!({}));
            set_default(spec, "enableServiceLinks", json!(true));
            set_default(spec, "priority", json!(0));
            set_default(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
            for list in ["initContainers", "containers"] {
                if let Some(Value::Array(cs)) = spec.get_mut(list) {
                    for c in cs {
                        container_defaults(c);
                    }
                }
            }
            // podStrategy.PrepareForCreate: whatever status was sent is replaced.
            let qos = qos_class(&obj["spec"]);
            obj["status"] = json!({"phase": "Pending", "qosClass": qos});
        }
        "namespaces" => {
            let name = meta(obj, "name").unwrap_or_default();
            let labels = meta_mut(obj).entry("labels").or_insert_with(|| json!({}));
            if let Some(l) = labels.as_object_mut() {
                l.insert("kubernetes.io/metadata.name".into(), json!(name));
            }
            set_default(obj, "spec", json!({"finalizers": ["kubernetes"]}));
            obj["status"] = json!({"phase": "Active"});
        }
        "secrets" => set_default(obj, "type", json!("Opaque")),
        "services" => services::defaults(obj),
        s if storage::STORAGES.contains(&s) => storage::defaults_on_create(s, obj),
        _ => {}
    }
}

fn container_defaults(c: &mut Value) {
    set_default(c, "terminationMessagePath", json!("/dev/termination-log"));
    set_default(c, "terminationMessagePolicy", json!("File"));
    let image = c.get("image").and_then(Value::as_str).unwrap_or("");
    let last = image.rsplit('/').next().unwrap_or("");
    let tag = if last.contains('@') {
        Some("digest")
    } else {
        last.split_once(':').map(|(_, t)| t)
    };
    let policy = match tag {
        None | Some("latest") => "Always",
        _ => "IfNotPresent",
    };
    set_default(c, "imagePullPolicy", json!(policy));
    set_default(c, "resources", json!({}));
    if let Some(Value::Array(ports)) = c.get_mut("ports") {
        for p in ports {
            set_default(p, "protocol", json!("TCP"));
        }
    }
}

/// The pod's QoS class (as GetPodQOS): requests and limits compared per resource by
/// their literal quantity; requests default to limits.
fn qos_class(spec: &Value) -> &'static str {
    let mut any = false;
    let mut guaranteed = true;
    let lists = ["initContainers", "containers"];
    for list in lists {
        for c in spec
            .get(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let req = c.pointer("/resources/requests").and_then(Value::as_object);
            let lim = c.pointer("/resources/limits").and_then(Value::as_object);
            let has =
                |m: Option<&Map<String, Value>>, r: &str| m.is_some_and(|m| m.contains_key(r));
            for r in ["cpu", "memory"] {
                if has(req, r) || has(lim, r) {
                    any = true;
                }
                let l = lim.and_then(|m| m.get(r));
                let q = req.and_then(|m| m.get(r)).or(l);
                if l.is_none() || q != l {
                    guaranteed = false;
                }
            }
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

fn required(field: &str) -> (String, &'static str, String) {
    (
        field.to_string(),
        "FieldValueRequired",
        "Required value".to_string(),
    )
}

/// The validation a kubelet's writes can hit.
fn validate(info: &ResourceInfo, name: &str, obj: &Value) -> Result<(), ApiError> {
    let mut causes = Vec::new();
    match info.storage {
        "pods" => {
            let containers = obj.pointer("/spec/containers").and_then(Value::as_array);
            match containers {
                None => causes.push(required("spec.containers")),
                Some(cs) if cs.is_empty() => causes.push(required("spec.containers")),
                Some(cs) => {
                    for (i, c) in cs.iter().enumerate() {
                        if c.get("name")
                            .and_then(Value::as_str)
                            .is_none_or(str::is_empty)
                        {
                            causes.push(required(&format!("spec.containers[{i}].name")));
                        }
                        if c.get("image")
                            .and_then(Value::as_str)
                            .is_none_or(str::is_empty)
                        {
                            causes.push(required(&format!("spec.containers[{i}].image")));
                        }
                    }
                }
            }
        }
        "services" => causes.extend(services::validate(obj)),
        s if storage::STORAGES.contains(&s) => causes.extend(storage::validate(s, obj)),
        "configmaps" | "secrets" => {
            for field in ["data", "binaryData"] {
                let keys = obj.get(field).and_then(Value::as_object);
                for key in keys.into_iter().flat_map(|m| m.keys()) {
                    if let Some(why) = invalid_config_key(key) {
                        causes.push((
                            format!("{field}[{key}]"),
                            "FieldValueInvalid",
                            format!("Invalid value: \"{key}\": {why}"),
                        ));
                    }
                }
            }
        }
        "leases" => {
            if let Some(d) = obj
                .pointer("/spec/leaseDurationSeconds")
                .and_then(Value::as_i64)
                && d <= 0
            {
                causes.push((
                    "spec.leaseDurationSeconds".to_string(),
                    "FieldValueInvalid",
                    format!("Invalid value: {d}: must be greater than 0"),
                ));
            }
        }
        "events" => {
            let event_ns = meta(obj, "namespace").unwrap_or_default();
            match obj
                .pointer("/involvedObject/namespace")
                .and_then(Value::as_str)
            {
                None if obj.get("involvedObject").is_none() => {
                    causes.push(required("involvedObject"))
                }
                Some(ns) if !ns.is_empty() && !event_ns.is_empty() && ns != event_ns => {
                    causes.push((
                        "involvedObject.namespace".to_string(),
                        "FieldValueInvalid",
                        format!("Invalid value: \"{ns}\": does not match event.namespace"),
                    ));
                }
                _ => {}
            }
        }
        _ => {}
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(info.kind, info.group, name, &causes))
    }
}

/// IsConfigMapKey (ConfigMap and Secret keys): why `key` is refused, if it is.
fn invalid_config_key(key: &str) -> Option<String> {
    if key.len() > 253 {
        return Some("must be no more than 253 characters".to_string());
    }
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if key.is_empty() || !key.chars().all(ok) {
        return Some("a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')".to_string());
    }
    match key {
        "." => Some("must not be '.'".to_string()),
        ".." => Some("must not be '..'".to_string()),
        k if k.starts_with("..") => Some("must not start with '..'".to_string()),
        _ => None,
    }
}

/// Pod spec is immutable past the fields ValidatePodUpdate lets change.
fn validate_update(
    info: &ResourceInfo,
    name: &str,
    old: &Value,
    new: &Value,
) -> Result<(), ApiError> {
    storage::validate_update(info.storage, info.kind, info.group, name, old, new)?;
    if info.storage != "pods" {
        return Ok(());
    }
    let mutable_cleared = |spec: Option<&Value>| -> Value {
        let mut s = spec.cloned().unwrap_or(Value::Null);
        for list in ["containers", "initContainers"] {
            if let Some(Value::Array(cs)) = s.get_mut(list) {
                for c in cs {
                    if let Some(m) = c.as_object_mut() {
                        m.remove("image");
                    }
                }
            }
        }
        if let Some(m) = s.as_object_mut() {
            m.remove("activeDeadlineSeconds");
            m.remove("tolerations");
            m.remove("terminationGracePeriodSeconds");
            m.remove("schedulingGates");
        }
        s
    };
    if mutable_cleared(old.get("spec")) != mutable_cleared(new.get("spec")) {
        return Err(ApiError::invalid(
            info.kind,
            info.group,
            name,
            &[(
                "spec".to_string(),
                "FieldValueForbidden",
                "Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)".to_string(),
            )],
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::apiserver::resources::lookup;

    fn pods() -> &'static ResourceInfo {
        lookup("", "v1", "pods").unwrap()
    }

    fn pod(name: &str, node: &str) -> Value {
        json!({"metadata": {"name": name}, "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]}})
    }

    #[test]
    fn create_fills_metadata_and_defaults() {
        let mut s = Store::new(100);
        let p = s.create(pods(), "default", pod("a", "")).unwrap();
        assert_eq!(p["metadata"]["namespace"], "default");
        assert_eq!(p["metadata"]["uid"].as_str().unwrap().len(), 36);
        assert_eq!(p["metadata"]["generation"], 1);
        assert_eq!(p["spec"]["containers"][0]["imagePullPolicy"], "Always");
        assert_eq!(p["spec"]["terminationGracePeriodSeconds"], 30);
        assert_eq!(p["status"]["phase"], "Pending");
        assert_eq!(p["status"]["qosClass"], "BestEffort");
        assert_eq!(
            s.create(pods(), "default", pod("a", "")).unwrap_err().code,
            409
        );
        assert_eq!(
            s.create(pods(), "nope", pod("b", "")).unwrap_err().code,
            404
        );
        let g = s
            .create(pods(), "default", json!({"metadata": {"generateName": "web-"}, "spec": {"containers": [{"name": "c", "image": "x:1"}]}}))
            .unwrap();
        assert!(g["metadata"]["name"].as_str().unwrap().starts_with("web-"));
        assert_eq!(
            g["spec"]["containers"][0]["imagePullPolicy"],
            "IfNotPresent"
        );
        let bad = s
            .create(
                pods(),
                "default",
                json!({"metadata": {"name": "x"}, "spec": {}}),
            )
            .unwrap_err();
        assert_eq!((bad.code, bad.reason.as_str()), (422, "Invalid"));
    }

    #[test]
    fn snapshot_and_history_bounds() {
        let mut s = Store::new(3);
        let a = s.create(pods(), "default", pod("a", "")).unwrap();
        let rv_a: u64 = a["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        s.create(pods(), "default", pod("b", "")).unwrap();
        let (items, _) = s
            .list(pods(), None, &Selectors::default(), Some(rv_a))
            .unwrap();
        assert_eq!(items.len(), 1);
        for n in ["c", "d", "e"] {
            s.create(pods(), "default", pod(n, "")).unwrap();
        }
        assert_eq!(s.events_since(rv_a).unwrap_err().code, 410);
        assert_eq!(
            s.list(pods(), None, &Selectors::default(), Some(rv_a))
                .unwrap_err()
                .code,
            410
        );
    }
}
