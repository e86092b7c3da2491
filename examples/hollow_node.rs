//! A hollow node: the real reconciler on the in-memory fake runtime, for scale tests and
//! demos. It runs N pods (default 50), one of which crash-loops, and prints a summary of
//! their phases once they have settled.
//!
//! `cargo run --example hollow_node -- 200`

use std::sync::Arc;
use std::time::Duration;

use kubelet_core::testing::pods::{container, pod};
use kubelet_core::testing::{
    ChannelSource, ContainerBehavior, ContainerMatch, FakeRuntime, RecordingReporter,
};
use kubelet_core::{Kubelet, KubeletConfig};

const IMAGE: &str = "docker.io/library/busybox:local";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let count: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(50);
    let runtime = Arc::new(FakeRuntime::with_images([IMAGE]));
    runtime.set_behavior(
        ContainerMatch::pod("pod-0"),
        ContainerBehavior::exit(1, Duration::from_millis(200)),
    );
    let reporter = Arc::new(RecordingReporter::new());
    let (source, sender) = ChannelSource::new("api");
    let dir = std::env::temp_dir().join(format!("hollow-node-{}", std::process::id()));
    let mut config = KubeletConfig::new("hollow-1");
    config.root_dir = dir.join("kubelet");
    config.spec.pod_logs_root = dir.join("logs").to_string_lossy().into_owned();
    let kubelet = Kubelet::builder(config)
        .runtime(runtime.clone())
        .reporter(reporter.clone())
        .source(Box::new(source))
        .build()?;
    let handle = kubelet.handle();
    let pods = (0..count)
        .map(|i| {
            pod(format!("pod-{i}"))
                .container(container("app", IMAGE))
                .build()
        })
        .collect();
    sender.snapshot(pods);
    let run = tokio::spawn(kubelet.run(tokio::time::sleep(Duration::from_secs(5))));
    run.await??;
    let mut phases = std::collections::BTreeMap::<String, usize>::new();
    for p in handle.pods() {
        let phase = p
            .status
            .and_then(|s| s.phase)
            .unwrap_or_else(|| "Unknown".into());
        *phases.entry(phase).or_default() += 1;
    }
    println!("{count} pods on a hollow node after 5 s: {phases:?}");
    println!(
        "containers created: {}, events recorded: {}",
        runtime.containers().len(),
        reporter.events().len()
    );
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}
