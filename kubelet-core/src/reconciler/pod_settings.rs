//! What the pod worker adds to the pure runtime configs of `spec`: the image's user
//! (runAsNonRoot), the files the kubelet manages and mounts (`/etc/hosts`, the termination
//! message file), the runtime handler of the pod's RuntimeClass, and activeDeadlineSeconds.

use k8s_openapi::api::core::v1::{Container, Pod};

use super::etc_hosts;
use super::security::{self, ImageUser};
use super::spec;
use super::worker::PodWorker;
use crate::runtime::ContainerConfig;

impl PodWorker {
    /// Complete a container's config before it is created, as the reference's
    /// `generateContainerConfig` does: the image's user (from the runtime's image status)
    /// checked against `runAsNonRoot` and used when the pod names no user, and the managed
    /// `/etc/hosts` mounted. Errors become `CreateContainerConfigError`.
    pub(super) async fn complete_container_config(
        &self,
        pod: &Pod,
        container: &Container,
        config: &mut ContainerConfig,
    ) -> Result<(), String> {
        let image = self
            .ctx
            .runtime
            .image_status(&config.image)
            .await
            .map_err(|e| format!("Failed to inspect image {:?}: {e}", config.image))?;
        let user = match image {
            Some(info) => ImageUser::of(&info),
            None => {
                return Err(format!(
                    "image {:?} not found while reading its user",
                    config.image
                ));
            }
        };
        security::apply_image_user(&mut config.security, pod, container, &user)?;

        let ips: Vec<String> = self
            .pod_ips
            .as_ref()
            .map(|(_, ips)| ips.clone())
            .unwrap_or_default();
        let (hostname, domain) = spec::pod_hostname_and_domain(pod, &self.ctx.config.spec)?;
        if let Some(mount) = etc_hosts::ensure_mount(
            pod,
            container,
            &self.pod_dir(),
            &ips,
            &hostname,
            &domain,
            &self.ctx.config.node_hosts_file,
        )
        .await?
        {
            config.mounts.push(mount);
        }
        super::termination_message::prepare(&self.pod_dir(), container, config).await?;
        Ok(())
    }

    /// The runtime handler of the pod's RuntimeClass; an unknown class keeps the sandbox
    /// from being created, as the reference.
    pub(super) async fn runtime_handler(&self, pod: &Pod) -> Result<String, String> {
        let name = pod
            .spec
            .as_ref()
            .and_then(|s| s.runtime_class_name.as_deref());
        crate::runtime_class::lookup_runtime_handler(self.ctx.runtime_classes.as_deref(), name)
            .await
            .map_err(|e| e.to_string())
    }
}

impl PodWorker {
    /// Where the pod stands against its `activeDeadlineSeconds`, counted from the start time
    /// of its status (the last computed, else the API's).
    pub(super) fn active_deadline(&self, pod: &Pod) -> super::active_deadline::Deadline {
        if self.deadline_exceeded {
            return super::active_deadline::Deadline::Exceeded;
        }
        let start = self
            .last_status
            .as_ref()
            .or(pod.status.as_ref())
            .and_then(|s| s.start_time.as_ref())
            .map(|t| t.0);
        super::active_deadline::deadline(pod, start, self.clock.now())
    }

    /// Past the deadline: a `DeadlineExceeded` event (once), every container and the
    /// sandbox stopped with the pod's grace period and never restarted, and the pod's
    /// status Failed with the reference's reason and message.
    pub(super) async fn enforce_active_deadline(
        &mut self,
        pod: &Pod,
        observed: &super::state::PodRuntimeState,
    ) {
        use super::active_deadline::{MESSAGE, REASON};
        if !self.deadline_exceeded {
            self.deadline_exceeded = true;
            tracing::info!(pod = %super::sync::pod_name(pod), "pod past its active deadline");
            self.ctx.event(
                pod,
                None,
                crate::reporter::EventType::Normal,
                REASON,
                MESSAGE.to_string(),
            );
            self.probes.stop_all();
            // Nothing waits to start any more.
            self.waiting.clear();
        }
        let running = observed.running_containers().next().is_some()
            || observed
                .sandboxes
                .iter()
                .any(|s| s.state == crate::runtime::SandboxState::Ready);
        let observed = if running {
            let grace = super::sync::grace_period(Some(pod), observed);
            self.kill_pod(Some(pod), observed, grace).await;
            self.observe().await.unwrap_or_else(|_| observed.clone())
        } else {
            observed.clone()
        };
        self.update_status(pod, &observed, false);
    }
}
