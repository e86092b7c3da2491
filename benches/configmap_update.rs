//! How long a ConfigMap changed on the API server takes to reach the file of a configMap
//! volume, against the reference's 60-90 s (its documented bound: the kubelet sync period,
//! 1 minute, plus the propagation delay of its object cache).
//!
//! The kubelet runs in-process as the daemon wires it for a cluster (the API-server pod
//! source and reporter, the API-object volume plugin with its own object TTL), with the
//! stateful fake runtime (no containerd, no root: the delay is the kubelet's, not the
//! runtime's), against the fake kube-apiserver, or a real one with `KUBELET_TEST_ASSETS`.
//! One pod mounts the ConfigMap; each sample PATCHes a new value and times the wait until
//! the file under `<root-dir>/pods/<uid>/volumes/kubernetes.io~configmap/` holds it. Each
//! change is made at a pseudo-random point of the sync period (a sample right after the sync
//! that showed the previous value would always wait one whole period), so the samples
//! spread up to the sync period plus the volume objects' TTL (10 s).
//!
//! `cargo bench --bench configmap_update` (5 samples, the default 60 s sync period: several
//! minutes), `cargo bench --bench configmap_update -- 5 10` (5 samples, `--sync-frequency`
//! 10 s).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kubelet_core::apiserver::{
    ApiObjectVolumePlugin, ApiServerReporter, ApiServerSource, ClientSource, NodeClient,
    PodObjectFetcher,
};
use kubelet_core::testing::FakeRuntime;
use kubelet_core::testing::apiserver::TestApiServer;
use kubelet_core::{Kubelet, KubeletConfig, RuntimeManagedNetwork};
use tokio::sync::oneshot;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const NODE: &str = "bench-node";
const IMAGE: &str = "docker.io/library/busybox:local";
const POLL: Duration = Duration::from_millis(50);
/// The reference's bound, for the comparison printed at the end.
const REFERENCE: (u64, u64) = (60, 90);

async fn client(kubeconfig: &str) -> Result<kube::Client, BoxError> {
    let config = Kubeconfig::from_yaml(kubeconfig)?;
    let config =
        kube::Config::from_custom_kubeconfig(config, &KubeConfigOptions::default()).await?;
    Ok(kube::Client::try_from(config)?)
}

async fn wait_for(
    what: &str,
    deadline: Duration,
    mut done: impl FnMut() -> bool,
) -> Result<Duration, BoxError> {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > deadline {
            return Err(format!("{what}: not within {deadline:?}").into());
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(start.elapsed())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let samples = args.first().copied().unwrap_or(5) as usize;
    let sync = Duration::from_secs(args.get(1).copied().unwrap_or(60));

    let server = TestApiServer::from_env().await?;
    let which = match &server {
        TestApiServer::Envtest(_) => "real kube-apiserver (envtest)",
        _ => "fake kube-apiserver",
    };
    let dir = tempfile::tempdir()?;
    let admin_conf = dir.path().join("admin.conf");
    server.write_kubeconfig(&admin_conf)?;
    let admin = client(&std::fs::read_to_string(&admin_conf)?).await?;
    let node_conf = dir.path().join("node.conf");
    std::fs::write(&node_conf, server.node_kubeconfig(NODE)?)?;

    let configmaps: Api<ConfigMap> = Api::namespaced(admin.clone(), "default");
    let cm: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "bench-config"}, "data": {"value": "0"},
    }))?;
    configmaps.create(&PostParams::default(), &cm).await?;

    let node_client =
        NodeClient::connect(&ClientSource::Kubeconfig(node_conf), NODE.to_string()).await?;
    let mut config = KubeletConfig::new(NODE);
    config.root_dir = dir.path().join("kubelet");
    config.spec.pod_logs_root = dir.path().join("logs").to_string_lossy().into_owned();
    config.sync_frequency = sync;
    let kubelet = Kubelet::builder(config)
        .runtime(Arc::new(FakeRuntime::with_images([IMAGE])))
        .network(Arc::new(RuntimeManagedNetwork))
        .reporter(Arc::new(ApiServerReporter::new(node_client.clone())))
        .source(Box::new(ApiServerSource::new(node_client.clone())))
        .volume_plugin(Arc::new(ApiObjectVolumePlugin::for_client(
            node_client.clone(),
        )))
        .pod_objects(Arc::new(PodObjectFetcher::new(node_client)))
        .build()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(kubelet.run(async move {
        let _ = stopped.await;
    }));

    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "reader", "namespace": "default"},
        "spec": {
            "nodeName": NODE,
            "automountServiceAccountToken": false,
            "containers": [{
                "name": "app", "image": IMAGE, "imagePullPolicy": "IfNotPresent",
                "volumeMounts": [{"name": "cfg", "mountPath": "/etc/cfg"}],
            }],
            "volumes": [{"name": "cfg", "configMap": {"name": "bench-config"}}],
        },
    }))?;
    let pod = Api::<Pod>::namespaced(admin.clone(), "default")
        .create(&PostParams::default(), &pod)
        .await?;
    let uid = pod.metadata.uid.unwrap_or_default();
    let file: PathBuf = dir
        .path()
        .join("kubelet/pods")
        .join(&uid)
        .join("volumes/kubernetes.io~configmap/cfg/value");
    let read = |f: &PathBuf| std::fs::read_to_string(f).unwrap_or_default();
    wait_for("the first content", Duration::from_secs(120), || {
        read(&file) == "0"
    })
    .await?;

    println!("ConfigMap update to the mounted file, {which}, sync period {sync:?}:");
    let mut delays = Vec::new();
    for i in 1..=samples {
        // A change lands anywhere within the sync period, not just after the sync that
        // showed the previous one: wait a pseudo-random part of it first.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let phase = sync.mul_f64(f64::from(nanos % 1000) / 1000.0);
        tokio::time::sleep(phase).await;
        let value = i.to_string();
        let patch = serde_json::json!({"data": {"value": value}});
        configmaps
            .patch(
                "bench-config",
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
        let delay = wait_for(
            "the updated content",
            sync * 3 + Duration::from_secs(60),
            || read(&file) == value,
        )
        .await?;
        println!("  sample {i}: {:.1} s", delay.as_secs_f64());
        delays.push(delay);
    }
    delays.sort();
    if let (Some(min), Some(max)) = (delays.first(), delays.last()) {
        let mean = delays.iter().sum::<Duration>() / delays.len() as u32;
        println!(
            "  min {:.1} s, mean {:.1} s, max {:.1} s (reference: {}-{} s with its 60 s sync period)",
            min.as_secs_f64(),
            mean.as_secs_f64(),
            max.as_secs_f64(),
            REFERENCE.0,
            REFERENCE.1
        );
    }
    let _ = stop.send(());
    let _ = task.await;
    Ok(())
}
