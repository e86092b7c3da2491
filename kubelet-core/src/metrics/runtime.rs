//! [`InstrumentedRuntime`]: a [`Runtime`] that counts and times every call of the runtime it
//! wraps, as the reference's instrumented runtime and image services do
//! (`kubelet_runtime_operations_total`, `kubelet_runtime_operations_duration_seconds`,
//! `kubelet_runtime_operations_errors_total`, by the CRI operation's `operation_type`).
//!
//! Every method of the trait is forwarded, the ones with a default body included, so that
//! what the wrapped runtime overrides (a streaming server, log reopening) stays reachable.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::KubeletMetrics;
use crate::runtime::{
    AuthConfig, ContainerConfig, ContainerStats, ContainerStatus, ExecResult, ImageFsInfo,
    ImageInfo, ListFilter, PodSandboxConfig, PodSandboxStats, PodSandboxStatus, Runtime,
    RuntimeResult, RuntimeStatus, RuntimeVersion, StreamOptions,
};

/// A runtime whose calls are counted and timed into a [`KubeletMetrics`].
pub struct InstrumentedRuntime {
    inner: Arc<dyn Runtime>,
    metrics: KubeletMetrics,
}

impl InstrumentedRuntime {
    /// Wraps `inner`, recording into `metrics`.
    pub fn new(inner: Arc<dyn Runtime>, metrics: KubeletMetrics) -> Self {
        Self { inner, metrics }
    }

    /// The wrapped runtime.
    pub fn inner(&self) -> &Arc<dyn Runtime> {
        &self.inner
    }

    /// Runs one call of `operation`, recording its duration and whether it failed.
    async fn record<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = RuntimeResult<T>>,
    ) -> RuntimeResult<T> {
        let start = Instant::now();
        let result = call.await;
        let elapsed: Duration = start.elapsed();
        self.metrics
            .runtime_operation(operation, elapsed, result.is_err());
        result
    }
}

#[async_trait]
impl Runtime for InstrumentedRuntime {
    async fn version(&self) -> RuntimeResult<RuntimeVersion> {
        self.record("version", self.inner.version()).await
    }

    async fn status(&self) -> RuntimeResult<RuntimeStatus> {
        self.record("status", self.inner.status()).await
    }

    async fn run_pod_sandbox(&self, config: &PodSandboxConfig) -> RuntimeResult<String> {
        self.record("run_podsandbox", self.inner.run_pod_sandbox(config))
            .await
    }

    async fn stop_pod_sandbox(&self, sandbox_id: &str) -> RuntimeResult<()> {
        self.record("stop_podsandbox", self.inner.stop_pod_sandbox(sandbox_id))
            .await
    }

    async fn remove_pod_sandbox(&self, sandbox_id: &str) -> RuntimeResult<()> {
        self.record(
            "remove_podsandbox",
            self.inner.remove_pod_sandbox(sandbox_id),
        )
        .await
    }

    async fn pod_sandbox_status(&self, sandbox_id: &str) -> RuntimeResult<PodSandboxStatus> {
        self.record(
            "podsandbox_status",
            self.inner.pod_sandbox_status(sandbox_id),
        )
        .await
    }

    async fn list_pod_sandboxes(
        &self,
        filter: &ListFilter,
    ) -> RuntimeResult<Vec<PodSandboxStatus>> {
        self.record("list_podsandbox", self.inner.list_pod_sandboxes(filter))
            .await
    }

    async fn create_container(
        &self,
        sandbox_id: &str,
        config: &ContainerConfig,
        sandbox_config: &PodSandboxConfig,
    ) -> RuntimeResult<String> {
        self.record(
            "create_container",
            self.inner
                .create_container(sandbox_id, config, sandbox_config),
        )
        .await
    }

    async fn start_container(&self, container_id: &str) -> RuntimeResult<()> {
        self.record("start_container", self.inner.start_container(container_id))
            .await
    }

    async fn stop_container(&self, container_id: &str, timeout: Duration) -> RuntimeResult<()> {
        self.record(
            "stop_container",
            self.inner.stop_container(container_id, timeout),
        )
        .await
    }

    async fn remove_container(&self, container_id: &str) -> RuntimeResult<()> {
        self.record(
            "remove_container",
            self.inner.remove_container(container_id),
        )
        .await
    }

    async fn container_status(&self, container_id: &str) -> RuntimeResult<ContainerStatus> {
        self.record(
            "container_status",
            self.inner.container_status(container_id),
        )
        .await
    }

    async fn list_containers(&self, filter: &ListFilter) -> RuntimeResult<Vec<ContainerStatus>> {
        self.record("list_containers", self.inner.list_containers(filter))
            .await
    }

    async fn image_status(&self, image: &str) -> RuntimeResult<Option<ImageInfo>> {
        self.record("image_status", self.inner.image_status(image))
            .await
    }

    async fn pull_image(&self, image: &str, auth: Option<&AuthConfig>) -> RuntimeResult<String> {
        self.record("pull_image", self.inner.pull_image(image, auth))
            .await
    }

    async fn list_images(&self) -> RuntimeResult<Vec<ImageInfo>> {
        self.record("list_images", self.inner.list_images()).await
    }

    async fn remove_image(&self, image: &str) -> RuntimeResult<()> {
        self.record("remove_image", self.inner.remove_image(image))
            .await
    }

    async fn exec_sync(
        &self,
        container_id: &str,
        cmd: &[String],
        timeout: Duration,
    ) -> RuntimeResult<ExecResult> {
        self.record(
            "exec_sync",
            self.inner.exec_sync(container_id, cmd, timeout),
        )
        .await
    }

    async fn exec_stream(
        &self,
        container_id: &str,
        cmd: &[String],
        opts: StreamOptions,
    ) -> RuntimeResult<String> {
        self.record("exec", self.inner.exec_stream(container_id, cmd, opts))
            .await
    }

    async fn attach_stream(
        &self,
        container_id: &str,
        opts: StreamOptions,
    ) -> RuntimeResult<String> {
        self.record("attach", self.inner.attach_stream(container_id, opts))
            .await
    }

    async fn port_forward_stream(&self, sandbox_id: &str, ports: &[i32]) -> RuntimeResult<String> {
        self.record(
            "port_forward",
            self.inner.port_forward_stream(sandbox_id, ports),
        )
        .await
    }

    async fn reopen_container_log(&self, container_id: &str) -> RuntimeResult<()> {
        self.record(
            "reopen_container_log",
            self.inner.reopen_container_log(container_id),
        )
        .await
    }

    async fn container_stats(&self, container_id: &str) -> RuntimeResult<Option<ContainerStats>> {
        self.record("container_stats", self.inner.container_stats(container_id))
            .await
    }

    async fn list_container_stats(&self) -> RuntimeResult<Vec<ContainerStats>> {
        self.record("list_container_stats", self.inner.list_container_stats())
            .await
    }

    async fn list_pod_sandbox_stats(&self) -> RuntimeResult<Vec<PodSandboxStats>> {
        self.record("list_podsandbox_stats", self.inner.list_pod_sandbox_stats())
            .await
    }

    async fn image_fs_info(&self) -> RuntimeResult<Vec<ImageFsInfo>> {
        self.record("image_fs_info", self.inner.image_fs_info())
            .await
    }
}
