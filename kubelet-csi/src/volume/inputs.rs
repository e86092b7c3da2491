//! What the driver is given besides the volume: the volume context (attributes, the pod's
//! identity with `podInfoOnMount`, service account tokens for `tokenRequests`), the secrets
//! a PV names, and the publish context of an attached volume's VolumeAttachment.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::Pod;
use kubelet_core::apiserver::BoundPod;
use kubelet_core::error::VolumeError;

use super::spec::{CsiVolumeSpec, DriverPolicy, SecretRef};
use super::{
    CsiVolumePlugin, LOG_PREFIX, attachment_name, context_keys, mount_failed, pod_name,
    pod_namespace, pod_uid, service_account,
};

impl CsiVolumePlugin {
    /// The volume context of `NodePublishVolume`: the attributes, the pod's identity when
    /// the driver asks, the service account tokens it asks for.
    pub(super) async fn publish_context_attributes(
        &self,
        pod: &Pod,
        spec: &CsiVolumeSpec,
        policy: &DriverPolicy,
    ) -> Result<BTreeMap<String, String>, VolumeError> {
        let mut attributes = spec.attributes.clone();
        if policy.pod_info_on_mount {
            for (key, value) in [
                (context_keys::POD_NAME, pod_name(pod)),
                (context_keys::POD_NAMESPACE, pod_namespace(pod)),
                (context_keys::POD_UID, pod_uid(pod)),
                (context_keys::SERVICE_ACCOUNT_NAME, service_account(pod)),
                (
                    context_keys::EPHEMERAL,
                    if spec.ephemeral { "true" } else { "false" },
                ),
            ] {
                attributes.insert(key.to_string(), value.to_string());
            }
        }
        if !policy.token_requests.is_empty() {
            let sa = match service_account(pod) {
                "" => "default",
                sa => sa,
            };
            let mut tokens = serde_json::Map::new();
            for request in &policy.token_requests {
                let expiration = request
                    .expiration_seconds
                    .and_then(|s| u64::try_from(s).ok())
                    .map(std::time::Duration::from_secs);
                let token = self
                    .objects
                    .service_account_token(
                        pod_namespace(pod),
                        sa,
                        &request.audience,
                        expiration,
                        BoundPod {
                            name: pod_name(pod).to_string(),
                            uid: pod_uid(pod).to_string(),
                        },
                    )
                    .await
                    .map_err(|e| mount_failed(spec, "SetUp", e))?;
                tokens.insert(
                    request.audience.clone(),
                    serde_json::json!({
                        "token": token.token,
                        "expirationTimestamp": token.expiration.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
                    }),
                );
            }
            attributes.insert(
                context_keys::SERVICE_ACCOUNT_TOKENS.to_string(),
                serde_json::Value::Object(tokens).to_string(),
            );
        }
        Ok(attributes)
    }

    pub(super) async fn secrets(
        &self,
        spec: &CsiVolumeSpec,
        op: &str,
        secret: Option<&SecretRef>,
    ) -> Result<HashMap<String, String>, VolumeError> {
        let Some(secret) = secret else {
            return Ok(HashMap::new());
        };
        let object = self
            .objects
            .secret(&secret.namespace, &secret.name)
            .await
            .map_err(|e| {
                mount_failed(
                    spec,
                    op,
                    format!(
                        "{LOG_PREFIX}: failed to get secret {}/{}: {e}",
                        secret.namespace, secret.name
                    ),
                )
            })?;
        let mut out = HashMap::new();
        for (key, value) in object.data.unwrap_or_default() {
            out.insert(key, String::from_utf8_lossy(&value.0).into_owned());
        }
        for (key, value) in object.string_data.unwrap_or_default() {
            out.insert(key, value);
        }
        Ok(out)
    }

    /// The attachment's publish context, once the attacher says the volume is attached.
    pub(super) async fn wait_for_attach(
        &self,
        spec: &CsiVolumeSpec,
    ) -> Result<HashMap<String, String>, VolumeError> {
        let name = attachment_name(&spec.volume_handle, &spec.driver, &self.options.node_name);
        let attachment = match self.objects.volume_attachment(&name).await {
            Ok(a) => a,
            Err(kubelet_core::apiserver::FetchError::NotFound { .. }) => {
                return Err(mount_failed(
                    spec,
                    "WaitForAttach",
                    format!(
                        "volume {} has not been attached yet: volumeattachments.storage.k8s.io {name:?} not found",
                        spec.volume_handle
                    ),
                ));
            }
            Err(e) => return Err(mount_failed(spec, "WaitForAttach", e)),
        };
        if attachment.metadata.deletion_timestamp.is_some() {
            return Err(mount_failed(
                spec,
                "WaitForAttach",
                format!("volume attachment {name} is being deleted"),
            ));
        }
        let status = attachment.status.unwrap_or_default();
        if !status.attached {
            let detail = status
                .attach_error
                .and_then(|e| e.message)
                .map(|m| format!(": attach error: {m}"))
                .unwrap_or_default();
            return Err(mount_failed(
                spec,
                "WaitForAttach",
                format!(
                    "volume {} is not attached to node {} yet (VolumeAttachment {name}){detail}",
                    spec.volume_handle, self.options.node_name
                ),
            ));
        }
        Ok(status
            .attachment_metadata
            .unwrap_or_default()
            .into_iter()
            .collect())
    }
}
