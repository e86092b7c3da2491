//! Pod manifests for static pods: decoding (YAML or JSON), the defaults the API server would
//! apply, the kubelet's static-pod preparation (name suffix, node, stable UID, config
//! annotations) and validation.
//!
//! The flow follows the reference kubelet's static-pod path (`pkg/kubelet/config/common.go`):
//! decode, prepare, default, validate. A manifest that fails any step yields a
//! [`SourceError::InvalidManifest`] naming the origin and the offending field.

use crate::probes::{ProbeError, ProbeType, hook_spec, probe_spec};
use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{
    Container, HTTPGetAction, LifecycleHandler, Pod, PodSpec, Probe, Toleration, Volume,
};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::SourceError;
use crate::labels;

/// Namespace given to a manifest that names none.
pub const DEFAULT_NAMESPACE: &str = "default";
/// Default `terminationGracePeriodSeconds`.
pub const DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS: i64 = 30;
/// Default container `terminationMessagePath`.
pub const DEFAULT_TERMINATION_MESSAGE_PATH: &str = "/dev/termination-log";
/// Largest manifest (file or HTTP body) accepted, as the reference's `maxConfigLength` (10 MiB).
pub const MAX_MANIFEST_BYTES: usize = 10 << 20;

/// The image pull policy the API server gives a container that names none: `Always` when the
/// image's tag is `latest` or it has neither tag nor digest, else `IfNotPresent`.
pub fn default_image_pull_policy(image: &str) -> &'static str {
    let (name, digest) = match image.split_once('@') {
        Some((name, digest)) => (name, Some(digest)),
        None => (image, None),
    };
    // A ':' after the last '/' starts the tag; one before it belongs to a registry port.
    let last = name.rsplit('/').next().unwrap_or(name);
    let tag = last.split_once(':').map(|(_, tag)| tag);
    match (tag, digest) {
        (Some("latest"), _) => "Always",
        (Some(_), _) | (None, Some(_)) => "IfNotPresent",
        (None, None) => "Always",
    }
}

/// Decodes one manifest that must be a single `v1` `Pod`. No defaults are applied.
pub fn decode_pod(data: &[u8], origin: &str) -> Result<Pod, SourceError> {
    let value = to_value(data, origin)?;
    match check_type(&value, origin)? {
        "Pod" => pod_from_value(value, origin, ""),
        other => Err(invalid(
            origin,
            "kind",
            format!("unsupported kind {other:?}: must be Pod"),
        )),
    }
}

/// Decodes a manifest that is a single `v1` `Pod` or a `PodList` (as a manifest URL may
/// serve). No defaults are applied.
pub fn decode_pods(data: &[u8], origin: &str) -> Result<Vec<Pod>, SourceError> {
    let value = to_value(data, origin)?;
    match check_type(&value, origin)? {
        "Pod" => Ok(vec![pod_from_value(value, origin, "")?]),
        "PodList" => {
            let items = match value {
                Value::Object(mut map) => map.remove("items").unwrap_or(Value::Null),
                _ => Value::Null,
            };
            match items {
                Value::Null => Ok(Vec::new()),
                Value::Array(items) => items
                    .into_iter()
                    .enumerate()
                    .map(|(i, item)| pod_from_value(item, origin, &format!("items[{i}]")))
                    .collect(),
                _ => Err(invalid(origin, "items", "must be a list of pods")),
            }
        }
        other => Err(invalid(
            origin,
            "kind",
            format!("unsupported kind {other:?}: must be Pod or PodList"),
        )),
    }
}

/// The UID the kubelet gives a static pod: a hash of the node name, the source and origin
/// (file path or URL) and the decoded manifest, so it is stable across restarts and changes
/// whenever the manifest's content does. 32 hex digits, like the reference's md5.
///
/// The manifest is hashed as decoded, before any defaults, so that whitespace, comments and
/// field order do not matter and a change of defaults in a newer kubelet keeps the UID.
pub fn static_pod_uid(pod: &Pod, node_name: &str, source: &str, origin: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(format!("host:{node_name}\n"));
    hasher.update(format!("{source}:{origin}\n"));
    // serde_json of a k8s-openapi struct is deterministic: declaration order, BTreeMaps.
    hasher.update(serde_json::to_vec(pod).unwrap_or_default());
    hasher
        .finalize()
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Makes a decoded manifest a static pod of `node_name`, as the reference kubelet does:
/// UID from [`static_pod_uid`] (a UID in the manifest is kept), name suffixed with
/// `-<lowercased node name>`, namespace defaulted, `spec.nodeName` set, the
/// `kubernetes.io/config.hash` and `kubernetes.io/config.source` annotations, a toleration of
/// every `NoExecute` taint; then the API server's defaults ([`apply_pod_defaults`]) and
/// validation ([`validate_pod`]; the first error is returned).
///
/// `kubernetes.io/config.seen` is left to the source, which knows when it first saw the pod.
pub fn prepare_static_pod(
    mut pod: Pod,
    node_name: &str,
    source: &str,
    origin: &str,
) -> Result<Pod, SourceError> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    if name.is_empty() {
        return Err(invalid(origin, "metadata.name", "Required value"));
    }
    if let Some(msg) = dns1123_subdomain_error(&name) {
        return Err(invalid(origin, "metadata.name", msg));
    }
    if pod.spec.is_none() {
        return Err(invalid(origin, "spec", "Required value"));
    }
    let uid = match pod.metadata.uid.as_deref() {
        Some(uid) if !uid.is_empty() => uid.to_string(),
        _ => static_pod_uid(&pod, node_name, source, origin),
    };
    let meta = &mut pod.metadata;
    meta.uid = Some(uid.clone());
    meta.name = Some(format!("{name}-{}", node_name.to_lowercase()));
    if meta.namespace.as_deref().is_none_or(str::is_empty) {
        meta.namespace = Some(DEFAULT_NAMESPACE.to_string());
    }
    let annotations = meta.annotations.get_or_insert_with(BTreeMap::new);
    annotations.insert(labels::CONFIG_HASH.to_string(), uid);
    annotations.insert(labels::CONFIG_SOURCE.to_string(), source.to_string());

    let spec = pod.spec.get_or_insert_with(PodSpec::default);
    spec.node_name = Some(node_name.to_string());
    // Static pods must survive NoExecute taints on their own node (the reference adds this).
    spec.tolerations
        .get_or_insert_with(Vec::new)
        .push(Toleration {
            operator: Some("Exists".to_string()),
            effect: Some("NoExecute".to_string()),
            ..Toleration::default()
        });

    apply_pod_defaults(&mut pod);
    match validate_pod(&pod, origin).into_iter().next() {
        Some(err) => Err(err),
        None => Ok(pod),
    }
}

/// Applies the defaults the API server would apply and the kubelet relies on: restartPolicy
/// `Always`, terminationGracePeriodSeconds 30, dnsPolicy `ClusterFirst`, schedulerName,
/// enableServiceLinks, per container imagePullPolicy ([`default_image_pull_policy`]),
/// terminationMessagePath/Policy, port protocol `TCP` (and hostPort = containerPort with
/// hostNetwork), probe timings and HTTP path/scheme, fieldRef apiVersion, and volume defaults
/// (emptyDir when no source, defaultMode 0644 for projected kinds). Fields already set are
/// kept.
pub fn apply_pod_defaults(pod: &mut Pod) {
    let spec = pod.spec.get_or_insert_with(PodSpec::default);
    spec.restart_policy
        .get_or_insert_with(|| "Always".to_string());
    spec.termination_grace_period_seconds
        .get_or_insert(DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS);
    spec.dns_policy
        .get_or_insert_with(|| "ClusterFirst".to_string());
    spec.scheduler_name
        .get_or_insert_with(|| "default-scheduler".to_string());
    spec.enable_service_links.get_or_insert(true);
    spec.security_context.get_or_insert_with(Default::default);
    let host_network = spec.host_network.unwrap_or(false);
    for c in spec.init_containers.iter_mut().flatten() {
        default_container(c, host_network);
    }
    for c in spec.containers.iter_mut() {
        default_container(c, host_network);
    }
    for v in spec.volumes.iter_mut().flatten() {
        default_volume(v);
    }
}

fn default_container(c: &mut Container, host_network: bool) {
    if c.image_pull_policy.as_deref().is_none_or(str::is_empty) {
        let image = c.image.as_deref().unwrap_or("");
        c.image_pull_policy = Some(default_image_pull_policy(image).to_string());
    }
    if c.termination_message_path
        .as_deref()
        .is_none_or(str::is_empty)
    {
        c.termination_message_path = Some(DEFAULT_TERMINATION_MESSAGE_PATH.to_string());
    }
    if c.termination_message_policy
        .as_deref()
        .is_none_or(str::is_empty)
    {
        c.termination_message_policy = Some("File".to_string());
    }
    for p in c.ports.iter_mut().flatten() {
        if p.protocol.as_deref().is_none_or(str::is_empty) {
            p.protocol = Some("TCP".to_string());
        }
        if host_network && p.host_port.unwrap_or(0) == 0 {
            p.host_port = Some(p.container_port);
        }
    }
    for probe in [
        &mut c.liveness_probe,
        &mut c.readiness_probe,
        &mut c.startup_probe,
    ]
    .into_iter()
    .flatten()
    {
        default_probe(probe);
    }
    if let Some(lifecycle) = &mut c.lifecycle {
        for handler in [&mut lifecycle.post_start, &mut lifecycle.pre_stop]
            .into_iter()
            .flatten()
        {
            default_handler(handler);
        }
    }
    for env in c.env.iter_mut().flatten() {
        if let Some(field_ref) = env.value_from.as_mut().and_then(|v| v.field_ref.as_mut())
            && field_ref.api_version.as_deref().is_none_or(str::is_empty)
        {
            field_ref.api_version = Some("v1".to_string());
        }
    }
}

fn default_probe(p: &mut Probe) {
    p.timeout_seconds.get_or_insert(1);
    p.period_seconds.get_or_insert(10);
    p.success_threshold.get_or_insert(1);
    p.failure_threshold.get_or_insert(3);
    if let Some(h) = &mut p.http_get {
        default_http_get(h);
    }
}

fn default_handler(h: &mut LifecycleHandler) {
    if let Some(h) = &mut h.http_get {
        default_http_get(h);
    }
}

fn default_http_get(h: &mut HTTPGetAction) {
    if h.path.as_deref().is_none_or(str::is_empty) {
        h.path = Some("/".to_string());
    }
    if h.scheme.as_deref().is_none_or(str::is_empty) {
        h.scheme = Some("HTTP".to_string());
    }
}

/// File mode given to projected files when the manifest names none (0644).
const DEFAULT_VOLUME_MODE: i32 = 0o644;

fn default_volume(v: &mut Volume) {
    // A volume with no source at all is an emptyDir (SetDefaults_Volume). Checking through
    // JSON keeps this right as new volume kinds are added to the API.
    let has_source = match serde_json::to_value(&*v) {
        Ok(Value::Object(map)) => map.keys().any(|k| k != "name"),
        _ => true,
    };
    if !has_source {
        v.empty_dir = Some(Default::default());
    }
    if let Some(s) = &mut v.secret {
        s.default_mode.get_or_insert(DEFAULT_VOLUME_MODE);
    }
    if let Some(s) = &mut v.config_map {
        s.default_mode.get_or_insert(DEFAULT_VOLUME_MODE);
    }
    if let Some(s) = &mut v.downward_api {
        s.default_mode.get_or_insert(DEFAULT_VOLUME_MODE);
    }
    if let Some(s) = &mut v.projected {
        s.default_mode.get_or_insert(DEFAULT_VOLUME_MODE);
    }
    if let Some(h) = &mut v.host_path {
        h.type_.get_or_insert_with(String::new);
    }
}

/// Validates a (prepared, defaulted) pod as the API server's create validation does for the
/// fields the kubelet depends on. Returns every problem found, each naming its field path;
/// empty when the pod is valid.
pub fn validate_pod(pod: &Pod, origin: &str) -> Vec<SourceError> {
    let mut errs = Errors {
        origin,
        list: Vec::new(),
    };
    match pod.metadata.name.as_deref() {
        None | Some("") => errs.add("metadata.name", "Required value"),
        Some(name) => {
            if let Some(msg) = dns1123_subdomain_error(name) {
                errs.add("metadata.name", msg);
            }
        }
    }
    if let Some(ns) = pod.metadata.namespace.as_deref()
        && let Some(msg) = dns1123_label_error(ns)
    {
        errs.add("metadata.namespace", msg);
    }
    let Some(spec) = &pod.spec else {
        errs.add("spec", "Required value");
        return errs.list;
    };
    validate_spec(spec, &mut errs);
    errs.list
}

struct Errors<'a> {
    origin: &'a str,
    list: Vec<SourceError>,
}

impl Errors<'_> {
    fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.list.push(invalid(self.origin, field, message));
    }

    fn one_of(&mut self, field: impl Into<String>, value: Option<&str>, allowed: &[&str]) {
        if let Some(v) = value
            && !allowed.contains(&v)
        {
            self.add(
                field,
                format!("Unsupported value: {v:?}: supported values: {allowed:?}"),
            );
        }
    }
}

fn validate_spec(spec: &PodSpec, errs: &mut Errors<'_>) {
    let mut volumes = BTreeSet::new();
    for (i, v) in spec.volumes.iter().flatten().enumerate() {
        let field = format!("spec.volumes[{i}].name");
        if v.name.is_empty() {
            errs.add(field, "Required value");
        } else if let Some(msg) = dns1123_label_error(&v.name) {
            errs.add(field, msg);
        } else if !volumes.insert(v.name.as_str()) {
            errs.add(field, format!("Duplicate value: {:?}", v.name));
        }
    }

    if spec.containers.is_empty() {
        errs.add("spec.containers", "Required value: at least one container");
    }
    let host_network = spec.host_network.unwrap_or(false);
    let mut names = BTreeSet::new();
    for (i, c) in spec.init_containers.iter().flatten().enumerate() {
        let field = format!("spec.initContainers[{i}]");
        validate_container(c, &field, true, host_network, &volumes, &mut names, errs);
    }
    for (i, c) in spec.containers.iter().enumerate() {
        let field = format!("spec.containers[{i}]");
        validate_container(c, &field, false, host_network, &volumes, &mut names, errs);
    }

    errs.one_of(
        "spec.restartPolicy",
        spec.restart_policy.as_deref(),
        &["Always", "OnFailure", "Never"],
    );
    errs.one_of(
        "spec.dnsPolicy",
        spec.dns_policy.as_deref(),
        &["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"],
    );
    if let Some(grace) = spec.termination_grace_period_seconds
        && grace < 0
    {
        errs.add(
            "spec.terminationGracePeriodSeconds",
            format!("Invalid value: {grace}: must be greater than or equal to 0"),
        );
    }
    if let Some(deadline) = spec.active_deadline_seconds
        && deadline < 1
    {
        errs.add(
            "spec.activeDeadlineSeconds",
            format!("Invalid value: {deadline}: must be between 1 and 2147483647, inclusive"),
        );
    }
}

fn validate_container<'a>(
    c: &'a Container,
    field: &str,
    init: bool,
    host_network: bool,
    volumes: &BTreeSet<&str>,
    names: &mut BTreeSet<&'a str>,
    errs: &mut Errors<'_>,
) {
    if c.name.is_empty() {
        errs.add(format!("{field}.name"), "Required value");
    } else if let Some(msg) = dns1123_label_error(&c.name) {
        errs.add(format!("{field}.name"), msg);
    } else if !names.insert(c.name.as_str()) {
        errs.add(
            format!("{field}.name"),
            format!("Duplicate value: {:?}", c.name),
        );
    }

    match c.image.as_deref() {
        None | Some("") => errs.add(format!("{field}.image"), "Required value"),
        Some(image) if image.trim() != image => errs.add(
            format!("{field}.image"),
            "Invalid value: must not have leading or trailing whitespace",
        ),
        Some(_) => {}
    }
    errs.one_of(
        format!("{field}.imagePullPolicy"),
        c.image_pull_policy.as_deref(),
        &["Always", "IfNotPresent", "Never"],
    );
    errs.one_of(
        format!("{field}.terminationMessagePolicy"),
        c.termination_message_policy.as_deref(),
        &["File", "FallbackToLogsOnError"],
    );
    // Only init containers may carry a restartPolicy, and only Always (sidecars).
    let sidecar = init && c.restart_policy.as_deref() == Some("Always");
    if let Some(policy) = c.restart_policy.as_deref() {
        if !init {
            errs.add(
                format!("{field}.restartPolicy"),
                "Forbidden: may not be set for non-init containers",
            );
        } else if policy != "Always" {
            errs.add(
                format!("{field}.restartPolicy"),
                format!("Unsupported value: {policy:?}: supported values: [\"Always\"]"),
            );
        }
    }

    let mut port_names = BTreeSet::new();
    for (j, p) in c.ports.iter().flatten().enumerate() {
        let pf = format!("{field}.ports[{j}]");
        if !(1..=65535).contains(&p.container_port) {
            errs.add(
                format!("{pf}.containerPort"),
                format!(
                    "Invalid value: {}: must be between 1 and 65535, inclusive",
                    p.container_port
                ),
            );
        }
        if let Some(hp) = p.host_port {
            if !(0..=65535).contains(&hp) {
                errs.add(
                    format!("{pf}.hostPort"),
                    format!("Invalid value: {hp}: must be between 1 and 65535, inclusive"),
                );
            } else if host_network && hp != 0 && hp != p.container_port {
                errs.add(
                    format!("{pf}.hostPort"),
                    format!(
                        "Invalid value: {hp}: must match `containerPort` when `hostNetwork` is true"
                    ),
                );
            }
        }
        errs.one_of(
            format!("{pf}.protocol"),
            p.protocol.as_deref(),
            &["TCP", "UDP", "SCTP"],
        );
        if let Some(name) = p.name.as_deref().filter(|n| !n.is_empty()) {
            if let Some(msg) = crate::probes::spec::iana_svc_name_error(name) {
                errs.add(format!("{pf}.name"), msg);
            } else if !port_names.insert(name) {
                errs.add(format!("{pf}.name"), format!("Duplicate value: {name:?}"));
            }
        }
    }

    let mut mount_paths = BTreeSet::new();
    for (j, m) in c.volume_mounts.iter().flatten().enumerate() {
        let mf = format!("{field}.volumeMounts[{j}]");
        if m.name.is_empty() {
            errs.add(format!("{mf}.name"), "Required value");
        } else if !volumes.contains(m.name.as_str()) {
            errs.add(format!("{mf}.name"), format!("Not found: {:?}", m.name));
        }
        if m.mount_path.is_empty() {
            errs.add(format!("{mf}.mountPath"), "Required value");
        } else if !mount_paths.insert(m.mount_path.as_str()) {
            errs.add(
                format!("{mf}.mountPath"),
                format!("Invalid value: {:?}: must be unique", m.mount_path),
            );
        }
    }

    let probes = [
        ("livenessProbe", &c.liveness_probe, ProbeType::Liveness),
        ("readinessProbe", &c.readiness_probe, ProbeType::Readiness),
        ("startupProbe", &c.startup_probe, ProbeType::Startup),
    ];
    for (name, probe, probe_type) in probes {
        let Some(probe) = probe else { continue };
        let pf = format!("{field}.{name}");
        if init && !sidecar {
            errs.add(pf, "Forbidden: may not be set for init containers");
            continue;
        }
        validate_probe(probe, probe_type, &pf, errs);
    }
    if init && !sidecar && c.lifecycle.is_some() {
        errs.add(
            format!("{field}.lifecycle"),
            "Forbidden: may not be set for init containers",
        );
    } else if let Some(lifecycle) = &c.lifecycle {
        let hooks = [
            ("postStart", &lifecycle.post_start),
            ("preStop", &lifecycle.pre_stop),
        ];
        for (name, hook) in hooks {
            if let Some(hook) = hook
                && let Err(ProbeError::Invalid { field, message }) =
                    hook_spec(hook, &format!("{field}.lifecycle.{name}"))
            {
                errs.add(field, message);
            }
        }
    }
}

/// The prober's own validation (handlers, timings, thresholds, ports), so that a static pod
/// is refused for the same reasons an API pod's probe would not run.
fn validate_probe(p: &Probe, probe_type: ProbeType, field: &str, errs: &mut Errors<'_>) {
    if let Err(ProbeError::Invalid { field, message }) = probe_spec(p, probe_type, field) {
        errs.add(field, message);
    }
}

/// Why `s` is not a DNS-1123 label (RFC 1123: at most 63 lowercase alphanumerics or '-',
/// starting and ending alphanumeric), or `None` when it is one.
pub fn dns1123_label_error(s: &str) -> Option<String> {
    if s.len() > 63 {
        return Some(format!(
            "Invalid value: {s:?}: must be no more than 63 characters"
        ));
    }
    if !is_dns_segment(s) {
        return Some(format!(
            "Invalid value: {s:?}: a lowercase RFC 1123 label must consist of lower case \
             alphanumeric characters or '-', and must start and end with an alphanumeric character"
        ));
    }
    None
}

/// Why `s` is not a DNS-1123 subdomain (at most 253 characters, dot-separated segments of
/// lowercase alphanumerics or '-', each starting and ending alphanumeric), or `None`.
pub fn dns1123_subdomain_error(s: &str) -> Option<String> {
    if s.len() > 253 {
        return Some(format!(
            "Invalid value: {s:?}: must be no more than 253 characters"
        ));
    }
    if !s.split('.').all(is_dns_segment) {
        return Some(format!(
            "Invalid value: {s:?}: a lowercase RFC 1123 subdomain must consist of lower case \
             alphanumeric characters, '-' or '.', and must start and end with an alphanumeric \
             character"
        ));
    }
    None
}

fn is_dns_segment(s: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = s.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(&first), Some(&last)) => {
            alnum(first) && alnum(last) && bytes.iter().all(|&b| alnum(b) || b == b'-')
        }
        _ => false,
    }
}

fn invalid(origin: &str, field: impl Into<String>, message: impl Into<String>) -> SourceError {
    SourceError::InvalidManifest {
        origin: origin.to_string(),
        field: field.into(),
        message: message.into(),
    }
}

fn to_value(data: &[u8], origin: &str) -> Result<Value, SourceError> {
    if data.len() > MAX_MANIFEST_BYTES {
        return Err(invalid(
            origin,
            "manifest",
            format!(
                "too large: {} bytes, at most {MAX_MANIFEST_BYTES}",
                data.len()
            ),
        ));
    }
    let data = data.strip_prefix(b"\xef\xbb\xbf").unwrap_or(data);
    let trimmed = data.trim_ascii_start();
    if trimmed.is_empty() {
        return Err(invalid(origin, "manifest", "empty manifest"));
    }
    // Decoding to a JSON value first, then to the typed Pod, gives the reference's
    // semantics (YAML is converted to JSON before decoding): `value: true` for a string field
    // is an error rather than silently the string "true".
    let value: Result<Value, String> = if trimmed.starts_with(b"{") {
        serde_json::from_slice(data).map_err(|e| format!("invalid JSON: {e}"))
    } else {
        serde_saphyr::from_slice(data).map_err(|e| {
            // The parser's message carries a multi-line source snippet; the first line
            // (with line and column) is what belongs in a log line.
            let text = e.to_string();
            let first = text.lines().next().unwrap_or_default();
            format!("invalid YAML: {}", first.trim_start_matches("error: "))
        })
    };
    value.map_err(|message| invalid(origin, "manifest", message))
}

/// Checks apiVersion and returns the kind.
fn check_type<'v>(value: &'v Value, origin: &str) -> Result<&'v str, SourceError> {
    let Value::Object(map) = value else {
        return Err(invalid(
            origin,
            "manifest",
            "must be a mapping (a Pod object)",
        ));
    };
    match map.get("apiVersion") {
        None => return Err(invalid(origin, "apiVersion", "Required value")),
        Some(Value::String(v)) if v == "v1" => {}
        Some(other) => {
            return Err(invalid(
                origin,
                "apiVersion",
                format!("Unsupported value: {other}: must be \"v1\""),
            ));
        }
    }
    match map.get("kind") {
        None => Err(invalid(origin, "kind", "Required value")),
        Some(Value::String(kind)) => Ok(kind.as_str()),
        Some(other) => Err(invalid(
            origin,
            "kind",
            format!("Invalid value: {other}: must be a string"),
        )),
    }
}

fn pod_from_value(value: Value, origin: &str, prefix: &str) -> Result<Pod, SourceError> {
    serde_path_to_error::deserialize::<_, Pod>(value).map_err(|e| {
        let path = e.path().to_string();
        let path = match (prefix, path.as_str()) {
            (p, ".") => p.to_string(),
            ("", path) => path.to_string(),
            (p, path) => format!("{p}.{path}"),
        };
        let field = if path.is_empty() {
            "manifest".to_string()
        } else {
            path
        };
        invalid(origin, field, e.into_inner().to_string())
    })
}

#[cfg(test)]
mod tests;
