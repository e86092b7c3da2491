//! Making a container's image present, by its imagePullPolicy, with pull backoff.

use k8s_openapi::api::core::v1::{Container, Pod};
use tokio::time::Instant;

use super::status::ContainerWaiting;
use super::worker::PodWorker;
use crate::reporter::EventType;

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
        match self.ctx.runtime.pull_image(image, None).await {
            Ok(_) => {
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
