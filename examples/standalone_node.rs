//! A standalone static-pod node in a few lines: the reconciler over a real containerd,
//! fed by a manifest directory, reporting to the log. This is the daemon's wiring without
//! its flags, config file and HTTP server.
//!
//! `cargo run --example standalone_node -- unix:///run/containerd/containerd.sock /etc/kubernetes/manifests`

use std::sync::Arc;
use std::time::Duration;

use kubelet::core::log_reporter::LogReporter;
use kubelet::core::{Kubelet, KubeletConfig, StaticDirSource};
use kubelet::cri::{CriOptions, CriRuntime};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let mut args = std::env::args().skip(1);
    let endpoint = args
        .next()
        .unwrap_or_else(|| "unix:///run/containerd/containerd.sock".into());
    let manifests = args
        .next()
        .unwrap_or_else(|| "/etc/kubernetes/manifests".into());
    let node = "standalone-node";

    let runtime = CriRuntime::connect(&endpoint, CriOptions::default()).await?;
    let source = StaticDirSource::new(&manifests, node, Duration::from_secs(20));
    let mut config = KubeletConfig::new(node);
    config.cgroup_fs_root = Some("/sys/fs/cgroup".into());
    Kubelet::builder(config)
        .runtime(Arc::new(runtime))
        .reporter(Arc::new(LogReporter::new()))
        .source(Box::new(source))
        .build()?
        .run(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
