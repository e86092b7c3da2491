//! Making a container's image present, by its imagePullPolicy, with pull backoff.

use k8s_openapi::api::core::v1::{Container, Pod};
use tokio::time::Instant;

use tracing::debug;

use super::status::ContainerWaiting;
use super::worker::PodWorker;
use crate::image_credentials::DockerKeyring;
use crate::reporter::EventType;
use crate::runtime::AuthConfig;

/// Reasons for images, as the reference names them.
mod reason {
    pub const ERR_IMAGE_PULL: &str = "ErrImagePull";
    pub const IMAGE_PULL_BACKOFF: &str = "ImagePullBackOff";
    pub const ERR_IMAGE_NEVER_PULL: &str = "ErrImageNeverPull";
    pub const INVALID_IMAGE_NAME: &str = "InvalidImageName";
}

fn waiting(reason: &str, message: String) -> ContainerWaiting {
    ContainerWaiting {
        reason: reason.to_string(),
        message,
    }
}

/// The pull policy the API server would default: `Always` for `:latest` or no tag (a digest
/// counts as a tag), else `IfNotPresent`.
pub fn default_pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    // The tag is after the last ':' that follows the last '/', so a registry port is no tag.
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.rsplit_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

impl PodWorker {
    /// Make the container's image present; on failure, why the container waits.
    pub(super) async fn ensure_image(
        &mut self,
        pod: &Pod,
        container: &Container,
    ) -> Result<(), ContainerWaiting> {
        let name = container.name.as_str();
        let image = container.image.as_deref().unwrap_or_default();
        if image.is_empty() {
            let message = format!("Failed to apply default image tag {image:?}: empty image name");
            return Err(waiting(reason::INVALID_IMAGE_NAME, message));
        }
        let policy = container
            .image_pull_policy
            .as_deref()
            .unwrap_or_else(|| default_pull_policy(image));
        let present = match self.ctx.runtime.image_status(image).await {
            Ok(p) => p.is_some(),
            Err(err) => {
                let message = format!("Failed to inspect image {image:?}: {err}");
                return Err(waiting("ImageInspectError", message));
            }
        };
        match policy {
            "Never" if !present => {
                let message =
                    format!("Container image {image:?} is not present with pull policy of Never");
                self.ctx.event(
                    pod,
                    Some(name),
                    EventType::Warning,
                    reason::ERR_IMAGE_NEVER_PULL,
                    message.clone(),
                );
                Err(waiting(reason::ERR_IMAGE_NEVER_PULL, message))
            }
            "Never" => Ok(()),
            "IfNotPresent" if present => {
                self.ctx.event(
                    pod,
                    Some(name),
                    EventType::Normal,
                    "Pulled",
                    format!("Container image {image:?} already present on machine"),
                );
                Ok(())
            }
            _ => self.pull(pod, name, image).await,
        }
    }

    async fn pull(&mut self, pod: &Pod, name: &str, image: &str) -> Result<(), ContainerWaiting> {
        let now = Instant::now();
        if self.pull_backoff.remaining_since_last(image, now).is_some() {
            let message = format!("Back-off pulling image {image:?}");
            self.ctx.event(
                pod,
                Some(name),
                EventType::Normal,
                "BackOff",
                message.clone(),
            );
            let last = self.pull_errors.get(image).cloned().unwrap_or_default();
            return Err(waiting(
                reason::IMAGE_PULL_BACKOFF,
                format!("{message}: {last}"),
            ));
        }
        self.ctx.event(
            pod,
            Some(name),
            EventType::Normal,
            "Pulling",
            format!("Pulling image {image:?}"),
        );
        let result = match self.pull_credentials(pod, image).await {
            Ok(creds) => self.pull_with(image, &creds).await,
            Err(message) => Err(message),
        };
        match result {
            Ok(()) => {
                self.ctx.event(
                    pod,
                    Some(name),
                    EventType::Normal,
                    "Pulled",
                    format!(
                        "Successfully pulled image {image:?} in {:?}",
                        Instant::now().duration_since(now)
                    ),
                );
                self.pull_backoff.reset(image);
                self.pull_errors.remove(image);
                Ok(())
            }
            Err(err) => {
                let message = format!("Failed to pull image {image:?}: {err}");
                self.pull_backoff.next(image, now);
                self.pull_errors.insert(image.to_string(), message.clone());
                self.ctx.event(
                    pod,
                    Some(name),
                    EventType::Warning,
                    "Failed",
                    message.clone(),
                );
                Err(waiting(reason::ERR_IMAGE_PULL, message))
            }
        }
    }
}

impl PodWorker {
    /// The credentials of the pod's `imagePullSecrets` that match `image`, in the order to
    /// try them. Secrets that cannot be read are skipped with a warning event, as the
    /// reference does (the pull may still work); a secret that is not valid JSON fails the
    /// pull.
    async fn pull_credentials(&self, pod: &Pod, image: &str) -> Result<Vec<AuthConfig>, String> {
        let refs: Vec<String> = pod
            .spec
            .as_ref()
            .and_then(|s| s.image_pull_secrets.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|r| Some(r.name.clone()).filter(|n| !n.is_empty()))
            .collect();
        let Some(objects) = self.ctx.pod_objects.as_deref().filter(|_| !refs.is_empty()) else {
            return Ok(Vec::new());
        };
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        let mut secrets = Vec::new();
        let mut failed = Vec::new();
        for name in refs {
            match objects.secret(namespace, &name).await {
                Ok(secret) => secrets.push(secret),
                Err(err) => {
                    debug!(secret = %name, error = %err, "image pull secret not retrieved");
                    failed.push(name);
                }
            }
        }
        if !failed.is_empty() {
            self.ctx.event(
                pod,
                None,
                EventType::Warning,
                "FailedToRetrieveImagePullSecret",
                format!(
                    "Unable to retrieve some image pull secrets ({}); attempting to pull the image may not succeed.",
                    failed.join(", ")
                ),
            );
        }
        Ok(DockerKeyring::from_secrets(&secrets)?.lookup(image))
    }

    /// Pull with each credential in turn until one works; anonymously when there are none.
    async fn pull_with(&self, image: &str, creds: &[AuthConfig]) -> Result<(), String> {
        if creds.is_empty() {
            return self
                .ctx
                .runtime
                .pull_image(image, None)
                .await
                .map(drop)
                .map_err(|e| e.rpc_text().to_string());
        }
        let mut errors = Vec::new();
        for auth in creds {
            match self.ctx.runtime.pull_image(image, Some(auth)).await {
                Ok(_) => return Ok(()),
                Err(err) => errors.push(err.rpc_text().to_string()),
            }
        }
        Err(match errors.len() {
            1 => errors.remove(0),
            _ => format!("[{}]", errors.join(", ")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::default_pull_policy;

    #[test]
    fn pull_policy_defaults() {
        for (image, want) in [
            ("busybox", "Always"),
            ("busybox:latest", "Always"),
            ("busybox:1.36", "IfNotPresent"),
            ("localhost:5000/busybox", "Always"),
            ("localhost:5000/busybox:local", "IfNotPresent"),
            ("busybox@sha256:abc", "IfNotPresent"),
        ] {
            assert_eq!(default_pull_policy(image), want, "{image}");
        }
    }
}
