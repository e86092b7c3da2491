//! A container's environment: `envFrom`, `env` with `valueFrom` sources, `$(VAR)` expansion.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, EnvVarSource, Pod};

use super::spec::SpecSettings;
use crate::downward_api;
use crate::runtime::KeyValue;

/// The container's environment: `envFrom` sources first, then `env` in order, each value
/// expanded against the variables defined before it. A later definition of a name replaces
/// the value in place.
pub(super) fn make_env(
    pod: &Pod,
    container: &Container,
    path: &str,
    settings: &SpecSettings,
) -> Result<Vec<KeyValue>, String> {
    fn set(
        envs: &mut Vec<KeyValue>,
        values: &mut BTreeMap<String, String>,
        key: &str,
        value: String,
    ) {
        match envs.iter_mut().find(|kv| kv.key == key) {
            Some(kv) => kv.value = value.clone(),
            None => envs.push(KeyValue {
                key: key.to_string(),
                value: value.clone(),
            }),
        }
        values.insert(key.to_string(), value);
    }
    let mut envs: Vec<KeyValue> = Vec::new();
    let mut values: BTreeMap<String, String> = BTreeMap::new();

    for (k, source) in container.env_from.iter().flatten().enumerate() {
        if let Some(cm) = &source.config_map_ref {
            if cm.optional != Some(true) {
                return Err(format!(
                    "{path}.envFrom[{k}].configMapRef: configMap {:?} cannot be resolved: ConfigMap sources are not supported yet",
                    cm.name
                ));
            }
        } else if let Some(secret) = &source.secret_ref {
            if secret.optional != Some(true) {
                return Err(format!(
                    "{path}.envFrom[{k}].secretRef: secret {:?} cannot be resolved: Secret sources are not supported yet",
                    secret.name
                ));
            }
        } else {
            return Err(format!("{path}.envFrom[{k}]: unsupported source"));
        }
    }

    for (j, var) in container.env.iter().flatten().enumerate() {
        let field = format!("{path}.env[{j}]");
        let value = match &var.value_from {
            None => {
                let raw = var.value.as_deref().unwrap_or_default();
                if raw.is_empty() {
                    String::new()
                } else {
                    expand_vars(raw, &values)
                }
            }
            Some(source) => match env_source_value(pod, container, source, &field, settings)? {
                Some(v) => v,
                None => continue,
            },
        };
        set(&mut envs, &mut values, &var.name, value);
    }
    Ok(envs)
}

/// The value of a `valueFrom` source; `Ok(None)` when an optional source is skipped.
fn env_source_value(
    pod: &Pod,
    container: &Container,
    source: &EnvVarSource,
    field: &str,
    settings: &SpecSettings,
) -> Result<Option<String>, String> {
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
    if let Some(cm) = &source.config_map_key_ref {
        if cm.optional == Some(true) {
            return Ok(None);
        }
        return Err(format!(
            "{field}.valueFrom: configMap {:?} key {:?} cannot be resolved: ConfigMap sources are not supported yet",
            cm.name, cm.key
        ));
    }
    if let Some(secret) = &source.secret_key_ref {
        if secret.optional == Some(true) {
            return Ok(None);
        }
        return Err(format!(
            "{field}.valueFrom: secret {:?} key {:?} cannot be resolved: Secret sources are not supported yet",
            secret.name, secret.key
        ));
    }
    Err(format!("{field}.valueFrom: unsupported source"))
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
