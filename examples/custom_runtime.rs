//! A custom `Runtime`: a decorator that times every call of the runtime it wraps, plugged
//! into the reconciler like any other runtime. Here it wraps the in-memory fake; wrapped
//! around `kubelet_cri::CriRuntime` it measures a real containerd.
//!
//! `cargo run --example custom_runtime`

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use kubelet_core::runtime::*;
use kubelet_core::testing::pods::{container, pod};
use kubelet_core::testing::{ChannelSource, FakeRuntime, RecordingReporter};
use kubelet_core::{Kubelet, KubeletConfig};

/// Times each call of the inner runtime, by method name.
struct TimedRuntime<R> {
    inner: R,
    timings: Mutex<BTreeMap<&'static str, (u32, Duration)>>,
}

impl<R: Runtime> TimedRuntime<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            timings: Mutex::new(BTreeMap::new()),
        }
    }

    async fn timed<T>(&self, method: &'static str, call: impl Future<Output = T>) -> T {
        let start = Instant::now();
        let out = call.await;
        if let Ok(mut t) = self.timings.lock() {
            let entry = t.entry(method).or_default();
            entry.0 += 1;
            entry.1 += start.elapsed();
        }
        out
    }
}

#[async_trait]
impl<R: Runtime> Runtime for TimedRuntime<R> {
    async fn version(&self) -> RuntimeResult<RuntimeVersion> {
        self.timed("Version", self.inner.version()).await
    }
    async fn status(&self) -> RuntimeResult<RuntimeStatus> {
        self.timed("Status", self.inner.status()).await
    }
    async fn run_pod_sandbox(&self, config: &PodSandboxConfig) -> RuntimeResult<String> {
        self.timed("RunPodSandbox", self.inner.run_pod_sandbox(config))
            .await
    }
    async fn stop_pod_sandbox(&self, id: &str) -> RuntimeResult<()> {
        self.timed("StopPodSandbox", self.inner.stop_pod_sandbox(id))
            .await
    }
    async fn remove_pod_sandbox(&self, id: &str) -> RuntimeResult<()> {
        self.timed("RemovePodSandbox", self.inner.remove_pod_sandbox(id))
            .await
    }
    async fn pod_sandbox_status(&self, id: &str) -> RuntimeResult<PodSandboxStatus> {
        self.timed("PodSandboxStatus", self.inner.pod_sandbox_status(id))
            .await
    }
    async fn list_pod_sandboxes(
        &self,
        filter: &ListFilter,
    ) -> RuntimeResult<Vec<PodSandboxStatus>> {
        self.timed("ListPodSandbox", self.inner.list_pod_sandboxes(filter))
            .await
    }
    async fn create_container(
        &self,
        sandbox_id: &str,
        config: &ContainerConfig,
        sandbox_config: &PodSandboxConfig,
    ) -> RuntimeResult<String> {
        let call = self
            .inner
            .create_container(sandbox_id, config, sandbox_config);
        self.timed("CreateContainer", call).await
    }
    async fn start_container(&self, id: &str) -> RuntimeResult<()> {
        self.timed("StartContainer", self.inner.start_container(id))
            .await
    }
    async fn stop_container(&self, id: &str, timeout: Duration) -> RuntimeResult<()> {
        self.timed("StopContainer", self.inner.stop_container(id, timeout))
            .await
    }
    async fn remove_container(&self, id: &str) -> RuntimeResult<()> {
        self.timed("RemoveContainer", self.inner.remove_container(id))
            .await
    }
    async fn container_status(&self, id: &str) -> RuntimeResult<ContainerStatus> {
        self.timed("ContainerStatus", self.inner.container_status(id))
            .await
    }
    async fn list_containers(&self, filter: &ListFilter) -> RuntimeResult<Vec<ContainerStatus>> {
        self.timed("ListContainers", self.inner.list_containers(filter))
            .await
    }
    async fn image_status(&self, image: &str) -> RuntimeResult<Option<ImageInfo>> {
        self.timed("ImageStatus", self.inner.image_status(image))
            .await
    }
    async fn pull_image(&self, image: &str, auth: Option<&AuthConfig>) -> RuntimeResult<String> {
        self.timed("PullImage", self.inner.pull_image(image, auth))
            .await
    }
    async fn list_images(&self) -> RuntimeResult<Vec<ImageInfo>> {
        self.timed("ListImages", self.inner.list_images()).await
    }
    async fn remove_image(&self, image: &str) -> RuntimeResult<()> {
        self.timed("RemoveImage", self.inner.remove_image(image))
            .await
    }
    // Forwarded so that image garbage collection sees the inner runtime's image filesystem.
    async fn image_fs_info(&self) -> RuntimeResult<Vec<ImageFsInfo>> {
        self.timed("ImageFsInfo", self.inner.image_fs_info()).await
    }
    async fn exec_stream(
        &self,
        id: &str,
        cmd: &[String],
        opts: StreamOptions,
    ) -> RuntimeResult<String> {
        self.timed("Exec", self.inner.exec_stream(id, cmd, opts))
            .await
    }
    async fn attach_stream(&self, id: &str, opts: StreamOptions) -> RuntimeResult<String> {
        self.timed("Attach", self.inner.attach_stream(id, opts))
            .await
    }
    async fn port_forward_stream(&self, id: &str, ports: &[i32]) -> RuntimeResult<String> {
        self.timed("PortForward", self.inner.port_forward_stream(id, ports))
            .await
    }
    async fn reopen_container_log(&self, id: &str) -> RuntimeResult<()> {
        self.timed("ReopenContainerLog", self.inner.reopen_container_log(id))
            .await
    }
    async fn exec_sync(
        &self,
        id: &str,
        cmd: &[String],
        timeout: Duration,
    ) -> RuntimeResult<ExecResult> {
        self.timed("ExecSync", self.inner.exec_sync(id, cmd, timeout))
            .await
    }
    async fn container_stats(&self, id: &str) -> RuntimeResult<Option<ContainerStats>> {
        self.timed("ContainerStats", self.inner.container_stats(id))
            .await
    }
    async fn list_container_stats(&self) -> RuntimeResult<Vec<ContainerStats>> {
        self.timed("ListContainerStats", self.inner.list_container_stats())
            .await
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    const IMAGE: &str = "docker.io/library/busybox:local";
    let runtime = Arc::new(TimedRuntime::new(FakeRuntime::with_images([IMAGE])));
    let (source, pods) = ChannelSource::new("api");
    let dir = std::env::temp_dir().join(format!("custom-runtime-{}", std::process::id()));
    let mut config = KubeletConfig::new("custom-1");
    config.root_dir = dir.join("kubelet");
    config.spec.pod_logs_root = dir.join("logs").to_string_lossy().into_owned();
    let kubelet = Kubelet::builder(config)
        .runtime(runtime.clone())
        .reporter(Arc::new(RecordingReporter::new()))
        .source(Box::new(source))
        .build()?;
    pods.snapshot(
        (0..10)
            .map(|i| {
                pod(format!("web-{i}"))
                    .container(container("app", IMAGE))
                    .build()
            })
            .collect(),
    );
    kubelet
        .run(tokio::time::sleep(Duration::from_secs(3)))
        .await?;
    println!("{:<20} {:>6} {:>12}", "call", "count", "mean");
    for (method, (count, total)) in runtime
        .timings
        .lock()
        .map(|t| t.clone())
        .unwrap_or_default()
    {
        println!("{method:<20} {count:>6} {:>12?}", total / count.max(1));
    }
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}
