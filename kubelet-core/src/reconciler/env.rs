//! A container's environment as the reference kubelet builds it: `envFrom` sources, then
//! `env` (values with `$(VAR)` expansion, `valueFrom` ConfigMap and Secret keys, pod fields,
//! container resources), then the service environment variables (`enableServiceLinks`, and
//! the `kubernetes` service of `default` always).
//!
//! The objects the container names are fetched first ([`EnvObjects::fetch`]); the
//! translation itself ([`container_env`]) is a pure function of the pod and those objects.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Container, EnvVarSource, Pod, Secret, Service};

use super::spec::SpecSettings;
use crate::downward_api;
use crate::objects::{ObjectError, PodObjects};
use crate::runtime::KeyValue;

/// The namespace of the services every pod gets variables for, whatever its
/// `enableServiceLinks` (the reference's "master services").
const MASTER_SERVICE_NAMESPACE: &str = "default";
const MASTER_SERVICES: &[&str] = &["kubernetes"];

/// What the objects a container names came to, fetched before the translation.
#[derive(Debug, Clone)]
pub struct EnvObjects {
    /// False for a kubelet without a source of objects (no API server): every ConfigMap or
    /// Secret reference then fails, as the reference's "no kubeClient defined".
    has_source: bool,
    config_maps: BTreeMap<String, Result<ConfigMap, ObjectError>>,
    secrets: BTreeMap<String, Result<Secret, ObjectError>>,
    services: Result<Vec<Service>, ObjectError>,
}

impl Default for EnvObjects {
    /// No source of objects at all.
    fn default() -> Self {
        Self {
            has_source: false,
            config_maps: BTreeMap::new(),
            secrets: BTreeMap::new(),
            services: Ok(Vec::new()),
        }
    }
}

impl EnvObjects {
    /// Fetch the ConfigMaps, Secrets and Services the container's environment names, from
    /// the pod's namespace. Failures are kept and judged by [`container_env`] (an optional
    /// source that is not found is skipped; anything else keeps the container from starting).
    pub async fn fetch(pod: &Pod, container: &Container, objects: Option<&dyn PodObjects>) -> Self {
        let Some(objects) = objects else {
            return Self::default();
        };
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        let mut out = Self {
            has_source: true,
            config_maps: BTreeMap::new(),
            secrets: BTreeMap::new(),
            services: relevant_services(pod, objects).await,
        };
        let (cm_names, secret_names) = referenced_objects(container);
        for name in cm_names {
            let got = objects.config_map(namespace, &name).await;
            out.config_maps.insert(name, got);
        }
        for name in secret_names {
            let got = objects.secret(namespace, &name).await;
            out.secrets.insert(name, got);
        }
        out
    }

    /// Objects given directly (for tests and embedders that have them at hand); `services`
    /// are all the node knows.
    pub fn given(
        config_maps: Vec<ConfigMap>,
        secrets: Vec<Secret>,
        services: Vec<Service>,
    ) -> Self {
        let by_name = |meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
            meta.name.clone().unwrap_or_default()
        };
        Self {
            has_source: true,
            config_maps: config_maps
                .into_iter()
                .map(|c| (by_name(&c.metadata), Ok(c)))
                .collect(),
            secrets: secrets
                .into_iter()
                .map(|s| (by_name(&s.metadata), Ok(s)))
                .collect(),
            services: Ok(services),
        }
    }

    fn config_map(&self, namespace: &str, name: &str) -> Result<&ConfigMap, ObjectError> {
        if !self.has_source {
            return Err(ObjectError::Unavailable(format!(
                "couldn't get configMap {namespace}/{name}, no kubeClient defined"
            )));
        }
        match self.config_maps.get(name) {
            Some(Ok(cm)) => Ok(cm),
            Some(Err(e)) => Err(e.clone()),
            None => Err(not_found("configmap", namespace, name)),
        }
    }

    fn secret(&self, namespace: &str, name: &str) -> Result<&Secret, ObjectError> {
        if !self.has_source {
            return Err(ObjectError::Unavailable(format!(
                "couldn't get secret {namespace}/{name}, no kubeClient defined"
            )));
        }
        match self.secrets.get(name) {
            Some(Ok(s)) => Ok(s),
            Some(Err(e)) => Err(e.clone()),
            None => Err(not_found("secret", namespace, name)),
        }
    }
}

fn not_found(kind: &'static str, namespace: &str, name: &str) -> ObjectError {
    ObjectError::NotFound {
        kind,
        namespace: namespace.to_string(),
        name: name.to_string(),
    }
}

/// The ConfigMap and Secret names a container's `envFrom` and `env` refer to.
fn referenced_objects(container: &Container) -> (Vec<String>, Vec<String>) {
    let mut cms = Vec::new();
    let mut secrets = Vec::new();
    for source in container.env_from.iter().flatten() {
        if let Some(cm) = &source.config_map_ref {
            cms.push(cm.name.clone());
        }
        if let Some(s) = &source.secret_ref {
            secrets.push(s.name.clone());
        }
    }
    for var in container.env.iter().flatten() {
        let Some(from) = &var.value_from else {
            continue;
        };
        if let Some(cm) = &from.config_map_key_ref {
            cms.push(cm.name.clone());
        }
        if let Some(s) = &from.secret_key_ref {
            secrets.push(s.name.clone());
        }
    }
    cms.sort();
    cms.dedup();
    secrets.sort();
    secrets.dedup();
    (cms, secrets)
}

/// A container's environment, and what the kubelet should warn about on the way.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerEnv {
    /// The variables, in the order the container declares them, service variables last.
    pub vars: Vec<KeyValue>,
    /// Warnings for `InvalidEnvironmentVariableNames` events on the pod (keys of an
    /// `envFrom` source that are no valid variable names, skipped as the reference does).
    pub warnings: Vec<String>,
}

/// The container's environment. `Err` is the text the container waits with
/// (`CreateContainerConfigError`), worded as the reference's where the reference has one
/// (`configmap "app" not found`, `couldn't find key k in ConfigMap ns/app`).
pub fn container_env(
    pod: &Pod,
    container: &Container,
    objects: &EnvObjects,
    settings: &SpecSettings,
) -> Result<ContainerEnv, String> {
    let default_spec = k8s_openapi::api::core::v1::PodSpec::default();
    let path = &super::spec::container_field_path(
        pod.spec.as_ref().unwrap_or(&default_spec),
        &container.name,
    );
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    // As the reference: a pod from the API server waits until the Services were listed
    // once (or it would miss KUBERNETES_SERVICE_HOST for good); a static pod does not (on a
    // control-plane node it may be the API server itself).
    let none = Vec::new();
    let services = match &objects.services {
        Ok(services) => services,
        Err(_) if is_static(pod) => &none,
        Err(e) => return Err(e.to_string()),
    };
    let service_env = service_env(services, namespace, enable_service_links(pod));

    let mut out = ContainerEnv::default();
    // Declared order; a later definition replaces the value where the name first appeared.
    let mut values: BTreeMap<String, String> = BTreeMap::new();

    for (k, source) in container.env_from.iter().flatten().enumerate() {
        let prefix = source.prefix.as_deref().unwrap_or_default();
        let (kind, name, data) = if let Some(cm) = &source.config_map_ref {
            let data = match objects.config_map(namespace, &cm.name) {
                Ok(cm) => cm.data.clone().unwrap_or_default(),
                Err(e) if e.is_not_found() && cm.optional == Some(true) => continue,
                Err(e) => return Err(e.to_string()),
            };
            ("configMap", &cm.name, data)
        } else if let Some(secret) = &source.secret_ref {
            let data = match objects.secret(namespace, &secret.name) {
                Ok(s) => secret_strings(s),
                Err(e) if e.is_not_found() && secret.optional == Some(true) => continue,
                Err(e) => return Err(e.to_string()),
            };
            ("secret", &secret.name, data)
        } else {
            return Err(format!(
                "{path}.envFrom[{k}]: one of configMapRef and secretRef is required"
            ));
        };
        let mut invalid = Vec::new();
        for (key, value) in data {
            let key = format!("{prefix}{key}");
            if !is_env_var_name(&key) {
                invalid.push(key);
                continue;
            }
            set(&mut out.vars, &mut values, key, value);
        }
        if !invalid.is_empty() {
            invalid.sort();
            out.warnings.push(format!(
                "Keys [{}] from the EnvFrom {kind} {namespace}/{name} were skipped since they are considered invalid environment variable names.",
                invalid.join(", ")
            ));
        }
    }

    for (j, var) in container.env.iter().flatten().enumerate() {
        let field = format!("{path}.env[{j}]");
        let raw = var.value.as_deref().unwrap_or_default();
        let value = if !raw.is_empty() {
            expand_vars_with(raw, &values, &service_env)
        } else if let Some(source) = &var.value_from {
            match source_value(pod, container, source, &field, objects, settings)? {
                Some(v) => v,
                None => continue,
            }
        } else {
            String::new()
        };
        set(&mut out.vars, &mut values, var.name.clone(), value);
    }

    // Service variables last, unless the container defines the name itself.
    for (k, v) in service_env {
        if !values.contains_key(&k) {
            out.vars.push(KeyValue { key: k, value: v });
        }
    }
    Ok(out)
}

/// Define `k` (replacing its value where it first appeared).
fn set(vars: &mut Vec<KeyValue>, values: &mut BTreeMap<String, String>, k: String, v: String) {
    match vars.iter_mut().find(|kv| kv.key == k) {
        Some(kv) => kv.value = v.clone(),
        None => vars.push(KeyValue {
            key: k.clone(),
            value: v.clone(),
        }),
    }
    values.insert(k, v);
}

/// Whether the pod comes from a static source (file, URL), not the API server.
fn is_static(pod: &Pod) -> bool {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(crate::labels::CONFIG_SOURCE))
        .is_some_and(|s| s != "api")
}

/// A Secret's data as strings (the reference converts the bytes as they are).
fn secret_strings(secret: &Secret) -> BTreeMap<String, String> {
    secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), String::from_utf8_lossy(&v.0).into_owned()))
        .collect()
}

/// The value of a `valueFrom` source; `Ok(None)` when an optional source is skipped.
fn source_value(
    pod: &Pod,
    container: &Container,
    source: &EnvVarSource,
    field: &str,
    objects: &EnvObjects,
    settings: &SpecSettings,
) -> Result<Option<String>, String> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    if let Some(field_ref) = &source.field_ref {
        return downward_api::field_value(pod, &field_ref.field_path)
            .map(Some)
            .map_err(|e| format!("{field}.valueFrom.fieldRef: {e}"));
    }
    if let Some(resource_ref) = &source.resource_field_ref {
        return downward_api::resource_value(
            pod,
            container,
            resource_ref,
            &settings.node_allocatable(),
        )
        .map(Some)
        .map_err(|e| format!("{field}.valueFrom.resourceFieldRef: {e}"));
    }
    if let Some(sel) = &source.config_map_key_ref {
        let optional = sel.optional == Some(true);
        let cm = match objects.config_map(namespace, &sel.name) {
            Ok(cm) => cm,
            Err(e) if e.is_not_found() && optional => return Ok(None),
            Err(e) => return Err(e.to_string()),
        };
        return match cm.data.as_ref().and_then(|d| d.get(&sel.key)) {
            Some(v) => Ok(Some(v.clone())),
            None if optional => Ok(None),
            None => Err(format!(
                "couldn't find key {} in ConfigMap {namespace}/{}",
                sel.key, sel.name
            )),
        };
    }
    if let Some(sel) = &source.secret_key_ref {
        let optional = sel.optional == Some(true);
        let secret = match objects.secret(namespace, &sel.name) {
            Ok(s) => s,
            Err(e) if e.is_not_found() && optional => return Ok(None),
            Err(e) => return Err(e.to_string()),
        };
        return match secret.data.as_ref().and_then(|d| d.get(&sel.key)) {
            Some(v) => Ok(Some(String::from_utf8_lossy(&v.0).into_owned())),
            None if optional => Ok(None),
            None => Err(format!(
                "couldn't find key {} in Secret {namespace}/{}",
                sel.key, sel.name
            )),
        };
    }
    Err(format!(
        "{field}.valueFrom: one of fieldRef, resourceFieldRef, configMapKeyRef and secretKeyRef is required"
    ))
}

/// The API's `IsEnvVarName`: `[-._a-zA-Z][-._a-zA-Z0-9]*`, not `.`, not starting with `..`.
pub fn is_env_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_');
    (first.is_ascii_alphabetic() || matches!(first, '-' | '.' | '_'))
        && chars.all(ok)
        && name != "."
        && !name.starts_with("..")
}

/// The Services whose variables a pod may get: the master services' namespace always, the
/// pod's own namespace when `enableServiceLinks`; only those are copied out of the cache.
async fn relevant_services(
    pod: &Pod,
    objects: &dyn PodObjects,
) -> Result<Vec<Service>, ObjectError> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    let mut services = objects.services(MASTER_SERVICE_NAMESPACE).await?;
    if namespace != MASTER_SERVICE_NAMESPACE && enable_service_links(pod) {
        services.extend(objects.services(namespace).await?);
    }
    Ok(services)
}

fn enable_service_links(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.enable_service_links)
        .unwrap_or(true)
}

/// The service environment variables of a pod in `namespace`: those of the `kubernetes`
/// service in `default` always, those of the services of the pod's own namespace when
/// `enableServiceLinks` (a service of the pod's namespace wins over a master service of the
/// same name). Services without a cluster IP (headless) give none.
pub fn service_env(
    services: &[Service],
    namespace: &str,
    enable_service_links: bool,
) -> BTreeMap<String, String> {
    let mut chosen: BTreeMap<&str, &Service> = BTreeMap::new();
    for service in services {
        if cluster_ip(service).is_none() {
            continue;
        }
        let name = service.metadata.name.as_deref().unwrap_or_default();
        let ns = service.metadata.namespace.as_deref().unwrap_or_default();
        if ns == MASTER_SERVICE_NAMESPACE && MASTER_SERVICES.contains(&name) {
            chosen.entry(name).or_insert(service);
        } else if ns == namespace && enable_service_links {
            chosen.insert(name, service);
        }
    }
    let mut env = BTreeMap::new();
    for service in chosen.values() {
        add_service_vars(service, &mut env);
    }
    env
}

fn cluster_ip(service: &Service) -> Option<&str> {
    service
        .spec
        .as_ref()
        .and_then(|s| s.cluster_ip.as_deref())
        .filter(|ip| !ip.is_empty() && *ip != "None")
}

/// `my-svc` -> `MY_SVC`.
fn env_name(name: &str) -> String {
    name.replace('-', "_").to_uppercase()
}

/// The reference's `envvars.FromServices` for one service: `<NAME>_SERVICE_HOST`,
/// `<NAME>_SERVICE_PORT`, one `<NAME>_SERVICE_PORT_<PORT>` per named port, and the
/// Docker-link variables (`<NAME>_PORT`, `<NAME>_PORT_<port>_<PROTO>[_PROTO|_PORT|_ADDR]`).
fn add_service_vars(service: &Service, env: &mut BTreeMap<String, String>) {
    let Some(ip) = cluster_ip(service) else {
        return;
    };
    let prefix = env_name(service.metadata.name.as_deref().unwrap_or_default());
    let ports = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_deref())
        .unwrap_or_default();
    env.insert(format!("{prefix}_SERVICE_HOST"), ip.to_string());
    let Some(first) = ports.first() else { return };
    env.insert(format!("{prefix}_SERVICE_PORT"), first.port.to_string());
    for port in ports {
        if let Some(name) = port.name.as_deref().filter(|n| !n.is_empty()) {
            env.insert(
                format!("{prefix}_SERVICE_PORT_{}", env_name(name)),
                port.port.to_string(),
            );
        }
    }
    let host_port = |port: i32| {
        if ip.contains(':') {
            format!("[{ip}]:{port}")
        } else {
            format!("{ip}:{port}")
        }
    };
    for (i, port) in ports.iter().enumerate() {
        let protocol = port
            .protocol
            .as_deref()
            .filter(|p| !p.is_empty())
            .unwrap_or("TCP");
        let lower = protocol.to_lowercase();
        let url = format!("{lower}://{}", host_port(port.port));
        if i == 0 {
            env.insert(format!("{prefix}_PORT"), url.clone());
        }
        let port_prefix = format!("{prefix}_PORT_{}_{}", port.port, protocol.to_uppercase());
        env.insert(format!("{port_prefix}_PROTO"), lower);
        env.insert(format!("{port_prefix}_PORT"), port.port.to_string());
        env.insert(format!("{port_prefix}_ADDR"), ip.to_string());
        env.insert(port_prefix, url);
    }
}

/// `$(VAR)` expansion against the container's variables, then the service variables.
fn expand_vars_with(
    input: &str,
    values: &BTreeMap<String, String>,
    service_env: &BTreeMap<String, String>,
) -> String {
    if service_env.is_empty() {
        return expand_vars(input, values);
    }
    let mut all = service_env.clone();
    all.extend(values.iter().map(|(k, v)| (k.clone(), v.clone())));
    expand_vars(input, &all)
}

/// Expand `$(VAR)` references in `input` from `env` as the reference does: `$$` escapes,
/// unknown references stay as written.
pub fn expand_vars(input: &str, env: &BTreeMap<String, String>) -> String {
    let bytes = input.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut checkpoint = 0;
    let mut cursor = 0;
    while cursor < bytes.len() {
        if bytes[cursor] == b'$' && cursor + 1 < bytes.len() {
            out.extend_from_slice(&bytes[checkpoint..cursor]);
            let rest = &bytes[cursor + 1..];
            let advance = match rest[0] {
                // `$$` is an escaped `$`.
                b'$' => {
                    out.push(b'$');
                    1
                }
                b'(' => match rest.iter().position(|b| *b == b')') {
                    Some(close) => {
                        let name = &input[cursor + 2..cursor + 1 + close];
                        match env.get(name) {
                            Some(value) => out.extend_from_slice(value.as_bytes()),
                            None => {
                                out.extend_from_slice(b"$(");
                                out.extend_from_slice(name.as_bytes());
                                out.push(b')');
                            }
                        }
                        close + 1
                    }
                    // An unterminated reference is kept as written.
                    None => {
                        out.extend_from_slice(b"$(");
                        1
                    }
                },
                other => {
                    out.push(b'$');
                    out.push(other);
                    1
                }
            };
            cursor += advance;
            checkpoint = cursor + 1;
        }
        cursor += 1;
    }
    out.extend_from_slice(&bytes[checkpoint.min(bytes.len())..]);
    // Only whole UTF-8 sequences are ever copied or inserted, so this cannot fail; stay total.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}
