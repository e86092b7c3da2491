//! Exact interactions with the runtime, checked with a mockall mock: the order of CRI calls
//! for a new pod, and that an image already present under IfNotPresent is never pulled.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kubelet_core::runtime::*;
use kubelet_core::testing::pods::{container, pod};
use kubelet_core::testing::{ChannelSource, RecordingReporter};
use kubelet_core::{Kubelet, KubeletConfig};
use mockall::{Sequence, automock, predicate};

/// The runtime's calls with owned arguments, so that mockall can mock them (it cannot mock
/// async-trait methods taking several references).
#[automock]
trait Calls: Send + Sync {
    fn version(&self) -> RuntimeResult<RuntimeVersion>;
    fn run_pod_sandbox(&self, config: PodSandboxConfig) -> RuntimeResult<String>;
    fn stop_pod_sandbox(&self, id: String) -> RuntimeResult<()>;
    fn remove_pod_sandbox(&self, id: String) -> RuntimeResult<()>;
    fn pod_sandbox_status(&self, id: String) -> RuntimeResult<PodSandboxStatus>;
    fn list_pod_sandboxes(&self, filter: ListFilter) -> RuntimeResult<Vec<PodSandboxStatus>>;
    fn create_container(&self, sandbox: String, config: ContainerConfig) -> RuntimeResult<String>;
    fn start_container(&self, id: String) -> RuntimeResult<()>;
    fn stop_container(&self, id: String, timeout: Duration) -> RuntimeResult<()>;
    fn remove_container(&self, id: String) -> RuntimeResult<()>;
    fn container_status(&self, id: String) -> RuntimeResult<ContainerStatus>;
    fn list_containers(&self, filter: ListFilter) -> RuntimeResult<Vec<ContainerStatus>>;
    fn image_status(&self, image: String) -> RuntimeResult<Option<ImageInfo>>;
    fn pull_image(&self, image: String) -> RuntimeResult<String>;
}

struct Mocked(MockCalls);

#[async_trait]
impl Runtime for Mocked {
    async fn version(&self) -> RuntimeResult<RuntimeVersion> {
        self.0.version()
    }
    async fn status(&self) -> RuntimeResult<RuntimeStatus> {
        Ok(RuntimeStatus::ready())
    }
    async fn run_pod_sandbox(&self, config: &PodSandboxConfig) -> RuntimeResult<String> {
        self.0.run_pod_sandbox(config.clone())
    }
    async fn stop_pod_sandbox(&self, id: &str) -> RuntimeResult<()> {
        self.0.stop_pod_sandbox(id.into())
    }
    async fn remove_pod_sandbox(&self, id: &str) -> RuntimeResult<()> {
        self.0.remove_pod_sandbox(id.into())
    }
    async fn pod_sandbox_status(&self, id: &str) -> RuntimeResult<PodSandboxStatus> {
        self.0.pod_sandbox_status(id.into())
    }
    async fn list_pod_sandboxes(
        &self,
        filter: &ListFilter,
    ) -> RuntimeResult<Vec<PodSandboxStatus>> {
        self.0.list_pod_sandboxes(filter.clone())
    }
    async fn create_container(
        &self,
        sandbox_id: &str,
        config: &ContainerConfig,
        _sandbox_config: &PodSandboxConfig,
    ) -> RuntimeResult<String> {
        self.0.create_container(sandbox_id.into(), config.clone())
    }
    async fn start_container(&self, id: &str) -> RuntimeResult<()> {
        self.0.start_container(id.into())
    }
    async fn stop_container(&self, id: &str, timeout: Duration) -> RuntimeResult<()> {
        self.0.stop_container(id.into(), timeout)
    }
    async fn remove_container(&self, id: &str) -> RuntimeResult<()> {
        self.0.remove_container(id.into())
    }
    async fn container_status(&self, id: &str) -> RuntimeResult<ContainerStatus> {
        self.0.container_status(id.into())
    }
    async fn list_containers(&self, filter: &ListFilter) -> RuntimeResult<Vec<ContainerStatus>> {
        self.0.list_containers(filter.clone())
    }
    async fn image_status(&self, image: &str) -> RuntimeResult<Option<ImageInfo>> {
        self.0.image_status(image.into())
    }
    async fn pull_image(&self, image: &str, _auth: Option<&AuthConfig>) -> RuntimeResult<String> {
        self.0.pull_image(image.into())
    }
    async fn list_images(&self) -> RuntimeResult<Vec<ImageInfo>> {
        Ok(Vec::new())
    }
    async fn remove_image(&self, _image: &str) -> RuntimeResult<()> {
        Ok(())
    }
    async fn exec_sync(
        &self,
        _id: &str,
        _cmd: &[String],
        _timeout: Duration,
    ) -> RuntimeResult<ExecResult> {
        Err(kubelet_core::RuntimeError::Other(
            "not used by this test".into(),
        ))
    }
    async fn container_stats(&self, _id: &str) -> RuntimeResult<Option<ContainerStats>> {
        Ok(None)
    }
    async fn list_container_stats(&self) -> RuntimeResult<Vec<ContainerStats>> {
        Ok(Vec::new())
    }
}

#[tokio::test(start_paused = true)]
async fn a_new_pod_makes_sandbox_then_checks_image_then_creates_and_starts() {
    let image = "docker.io/library/busybox:1.36";
    let mut rt = MockCalls::new();
    let mut seq = Sequence::new();
    rt.expect_version().returning(|| {
        Ok(RuntimeVersion {
            runtime_name: "mock".into(),
            runtime_version: "1".into(),
            runtime_api_version: "v1".into(),
        })
    });
    // Nothing exists yet, before and during the first sync.
    rt.expect_list_pod_sandboxes().returning(|_| Ok(vec![]));
    rt.expect_list_containers().returning(|_| Ok(vec![]));
    rt.expect_run_pod_sandbox()
        .times(1)
        .in_sequence(&mut seq)
        .withf(|c| c.metadata.name == "web" && c.metadata.attempt == 0)
        .returning(|_| Ok("sb-1".into()));
    rt.expect_pod_sandbox_status()
        .times(1)
        .in_sequence(&mut seq)
        .with(predicate::eq("sb-1".to_string()))
        .returning(|id| {
            Ok(PodSandboxStatus {
                id,
                state: SandboxState::Ready,
                ips: vec!["10.88.0.5".into()],
                ..Default::default()
            })
        });
    // Twice, as the reference: to honour the pull policy, then for the image's user.
    rt.expect_image_status()
        .times(2)
        .in_sequence(&mut seq)
        .with(predicate::eq(image.to_string()))
        .returning(|i| {
            Ok(Some(ImageInfo {
                id: "sha256:1".into(),
                repo_tags: vec![i],
                ..Default::default()
            }))
        });
    rt.expect_pull_image().never();
    rt.expect_create_container()
        .times(1)
        .in_sequence(&mut seq)
        .withf(|sandbox, c| {
            sandbox == "sb-1" && c.metadata.name == "app" && c.metadata.attempt == 0
        })
        .returning(|_, _| Ok("c-1".into()));
    rt.expect_start_container()
        .times(1)
        .in_sequence(&mut seq)
        .with(predicate::eq("c-1".to_string()))
        .returning(|_| Ok(()));

    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = KubeletConfig::new("node-1");
    config.root_dir = dir.path().join("kubelet");
    config.spec.pod_logs_root = dir.path().join("logs").to_string_lossy().into_owned();
    let (source, pods) = ChannelSource::new("api");
    let reporter = Arc::new(RecordingReporter::new());
    let kubelet = Kubelet::builder(config)
        .runtime(Arc::new(Mocked(rt)))
        .reporter(reporter.clone())
        .source(Box::new(source))
        .build()
        .expect("kubelet");
    pods.snapshot(vec![pod("web").container(container("app", image)).build()]);
    // One sync is all this test is about: stop shortly after it.
    kubelet
        .run(tokio::time::sleep(Duration::from_millis(500)))
        .await
        .expect("run");
    assert!(!reporter.events_with_reason("Started").is_empty());
}
