//! The kubelet under test for scenario tests: the real reconciler against the stateful
//! fake runtime, a channel source named `api` and a recording reporter, on tokio's paused
//! time. Each test file adds the inherent helpers it needs in its own `impl Node` block.

use std::sync::Arc;
use std::time::Duration;

use kubelet_core::testing::{ChannelSource, ChannelSourceSender, FakeRuntime, RecordingReporter};
use kubelet_core::{Kubelet, KubeletConfig, KubeletHandle};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The image every scenario pod uses; the fake runtime has it.
pub const IMAGE: &str = "docker.io/library/busybox:local";

/// A fake runtime that has [`IMAGE`].
pub fn runtime() -> Arc<FakeRuntime> {
    Arc::new(FakeRuntime::with_images([IMAGE]))
}

/// A running kubelet and its doubles.
pub struct Node {
    pub runtime: Arc<FakeRuntime>,
    pub reporter: Arc<RecordingReporter>,
    pub pods: ChannelSourceSender,
    pub handle: KubeletHandle,
    /// The kubelet's root directory.
    pub root: std::path::PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Node {
    /// Start the kubelet on `runtime`.
    pub fn start(runtime: Arc<FakeRuntime>) -> Self {
        Self::start_with(runtime, |b| b)
    }

    /// Start the kubelet on `runtime`, with the builder adjusted by `configure` (e.g. to add
    /// a source of ConfigMaps and Secrets).
    pub fn start_with(
        runtime: Arc<FakeRuntime>,
        configure: impl FnOnce(kubelet_core::KubeletBuilder) -> kubelet_core::KubeletBuilder,
    ) -> Self {
        Self::start_configured(runtime, |_, _| {}, configure)
    }

    /// Start the kubelet on `runtime` with its settings adjusted by `settings` (given the
    /// test's temporary directory, for files such as a resolv.conf) and its builder by
    /// `configure`.
    pub fn start_configured(
        runtime: Arc<FakeRuntime>,
        settings: impl FnOnce(&mut KubeletConfig, &std::path::Path),
        configure: impl FnOnce(kubelet_core::KubeletBuilder) -> kubelet_core::KubeletBuilder,
    ) -> Self {
        Self::start_built(runtime, settings, configure, |k| k)
    }

    /// As [`Node::start_configured`], and `finish` adjusts the built kubelet (e.g. gives it
    /// a stats provider over its counted runtime).
    pub fn start_built(
        runtime: Arc<FakeRuntime>,
        settings: impl FnOnce(&mut KubeletConfig, &std::path::Path),
        configure: impl FnOnce(kubelet_core::KubeletBuilder) -> kubelet_core::KubeletBuilder,
        finish: impl FnOnce(Kubelet) -> Kubelet,
    ) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = KubeletConfig::new("node-1");
        config.root_dir = dir.path().join("kubelet");
        config.spec.pod_logs_root = dir.path().join("pods").to_string_lossy().into_owned();
        config.node_ips = vec!["192.0.2.10".into()];
        settings(&mut config, dir.path());
        let root = config.root_dir.clone();
        let reporter = Arc::new(RecordingReporter::new());
        let (source, pods) = ChannelSource::new("api");
        let kubelet = configure(
            Kubelet::builder(config)
                .runtime(runtime.clone())
                .reporter(reporter.clone())
                .source(Box::new(source)),
        )
        .build()
        .expect("kubelet");
        let kubelet = finish(kubelet);
        let handle = kubelet.handle();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            kubelet
                .run(async move {
                    let _ = stopped.await;
                })
                .await
                .expect("kubelet run");
        });
        Self {
            runtime,
            reporter,
            pods,
            handle,
            root,
            stop: Some(stop),
            task,
            _dir: dir,
        }
    }

    /// Stop the kubelet (pods keep running in the runtime) and give the runtime back.
    pub async fn shutdown(mut self) -> Arc<FakeRuntime> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
        self.runtime.clone()
    }

    /// Wait (on virtual time) until `cond` holds, at most `limit`.
    pub async fn until(&self, limit: Duration, what: &str, mut cond: impl FnMut(&Self) -> bool) {
        let deadline = Instant::now() + limit;
        while !cond(self) {
            assert!(Instant::now() < deadline, "timed out waiting for: {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
