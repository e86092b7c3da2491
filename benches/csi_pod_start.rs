//! Pod start to Running and Ready for CSI-backed pods, against a pod with an emptyDir: what
//! the CSI path (the driver's registration lookup, the API objects behind the volume,
//! NodeStageVolume and NodePublishVolume over gRPC, the bind mounts) adds to a pod's start.
//!
//! The kubelet runs in-process wired as the daemon wires it in a cluster: the API-server pod
//! source and reporter (the real kube-apiserver of the envtest harness with
//! `KUBELET_TEST_ASSETS`, else the fake one), the API-object volume plugin, the CSI volume
//! plugin over a driver registry fed by the plugin watcher of `<root-dir>/plugins_registry`,
//! and the CRI runtime over a real containerd (`kubelet_cri::testing::TestContainerd`). The
//! example hostpath CSI driver serves on the node and registers itself through its
//! registrar, as node-driver-registrar would.
//!
//! Each round creates, one at a time, a pod of each kind and waits for it; every pod has one
//! busybox container and one volume:
//! - `emptyDir`: an on-disk emptyDir;
//! - `csi-inline`: an inline ephemeral CSI volume (published, not staged);
//! - `csi-pvc`: a PVC bound by hand to a CSI PV of the driver (staged, then published).
//!
//! Start: just before the pod is created on the API server. End: the kubelet's own view of
//! the pod (`KubeletHandle::pods`) says Running with condition Ready. The volume part is the
//! duration of the pod's first `volume_setup` span (the plugin's `setup`), read by a tracing
//! layer. Each pod is deleted (grace 0) and gone from the kubelet before the next starts.
//!
//! `cargo bench --bench csi_pod_start` (10 rounds), `cargo bench --bench csi_pod_start -- 5`.
//! Needs root and containerd (scripts/install-deps.sh); prints why and exits 0 otherwise.

#[allow(dead_code)] // shared by the benches; this one uses the samples and formatting
mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::CSIDriver;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kubelet_core::apiserver::{
    ApiObjectVolumePlugin, ApiServerReporter, ApiServerSource, ClientSource, NodeClient,
    PodObjectFetcher,
};
use kubelet_core::testing::apiserver::TestApiServer;
use kubelet_core::{Kubelet, KubeletConfig, KubeletHandle, RuntimeManagedNetwork};
use kubelet_cri::testing::{BUSYBOX_IMAGE, TestContainerd, missing_prerequisites};
use kubelet_csi::testing::{HostPathDriver, HostPathOptions, Registrar};
use support::{BoxError, SCRIPT, Samples, ms};
use tokio::sync::oneshot;
use tracing::span::{Attributes, Id};
use tracing::{Subscriber, field};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

const NODE: &str = "bench-node";
const DRIVER: &str = "hostpath.csi.bench";
const DEFAULT_ROUNDS: usize = 10;
/// Bound of every wait: the machine is small and shared.
const DEADLINE: Duration = Duration::from_secs(120);
const POLL: Duration = Duration::from_millis(10);
const KINDS: [&str; 3] = ["emptyDir", "csi-inline", "csi-pvc"];

fn rounds() -> Result<usize, BoxError> {
    // `cargo bench` passes `--bench` to every bench binary.
    match std::env::args().skip(1).find(|a| !a.starts_with('-')) {
        Some(s) => s.parse().map_err(|e| format!("rounds {s:?}: {e}").into()),
        None => Ok(DEFAULT_ROUNDS),
    }
}

/// When each span named `volume_setup` was opened, and its `pod` field.
struct SetupStart(Instant, Option<String>);

/// A tracing layer keeping the duration of each pod's first `volume_setup` span, by pod
/// name (the span's `pod` field).
#[derive(Clone, Default)]
struct VolumeSetupTimes(Arc<Mutex<HashMap<String, Duration>>>);

impl VolumeSetupTimes {
    fn take(&self, pod: &str) -> Option<Duration> {
        self.0.lock().ok()?.remove(pod)
    }
}

struct PodField(Option<String>);

impl field::Visit for PodField {
    fn record_debug(&mut self, f: &field::Field, value: &dyn std::fmt::Debug) {
        if f.name() == "pod" {
            self.0 = Some(format!("{value:?}"));
        }
    }
    fn record_str(&mut self, f: &field::Field, value: &str) {
        if f.name() == "pod" {
            self.0 = Some(value.to_string());
        }
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for VolumeSetupTimes {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().name() != "volume_setup" {
            return;
        }
        let mut pod = PodField(None);
        attrs.record(&mut pod);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut()
                .insert(SetupStart(Instant::now(), pod.0));
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else {
            return;
        };
        let extensions = span.extensions();
        if let Some(SetupStart(at, Some(pod))) = extensions.get::<SetupStart>()
            && let Ok(mut times) = self.0.lock()
        {
            times.entry(pod.clone()).or_insert_with(|| at.elapsed());
        }
    }
}

async fn client(kubeconfig: &str) -> Result<kube::Client, BoxError> {
    let config = Kubeconfig::from_yaml(kubeconfig)?;
    let config =
        kube::Config::from_custom_kubeconfig(config, &KubeConfigOptions::default()).await?;
    Ok(kube::Client::try_from(config)?)
}

async fn wait_until(what: &str, mut done: impl AsyncFnMut() -> bool) -> Result<(), BoxError> {
    let start = Instant::now();
    while !done().await {
        if start.elapsed() > DEADLINE {
            return Err(format!("{what}: not within {DEADLINE:?}").into());
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(())
}

/// Running, with condition Ready true, in the kubelet's own view.
fn running_and_ready(handle: &KubeletHandle, name: &str) -> bool {
    handle.pods().iter().any(|p| {
        p.metadata.name.as_deref() == Some(name)
            && p.status.as_ref().is_some_and(|s| {
                s.phase.as_deref() == Some("Running")
                    && s.conditions
                        .iter()
                        .flatten()
                        .any(|c| c.type_ == "Ready" && c.status == "True")
            })
    })
}

fn pod(name: &str, volume: serde_json::Value) -> Result<Pod, BoxError> {
    Ok(serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "nodeName": NODE,
            "automountServiceAccountToken": false,
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "app", "image": BUSYBOX_IMAGE, "imagePullPolicy": "IfNotPresent",
                "command": ["sh", "-c", SCRIPT],
                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
            }],
            "volumes": [volume],
        },
    }))?)
}

/// A CSI PV `name` of the driver with handle `name`, and the PVC `name` bound to it by hand
/// (no controllers run here), as the PV controller binds them.
async fn bound_claim(admin: &kube::Client, name: &str) -> Result<(), BoxError> {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(admin.clone(), "default");
    let volumes: Api<PersistentVolume> = Api::all(admin.clone());
    let claim: PersistentVolumeClaim = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}},
            "storageClassName": "",
            "volumeName": name,
        },
    }))?;
    let claim = claims.create(&PostParams::default(), &claim).await?;
    let pv: PersistentVolume = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "capacity": {"storage": "1Gi"},
            "storageClassName": "",
            "persistentVolumeReclaimPolicy": "Retain",
            "claimRef": {
                "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "namespace": "default", "name": name, "uid": claim.metadata.uid,
            },
            "csi": {"driver": DRIVER, "volumeHandle": name},
        },
    }))?;
    volumes.create(&PostParams::default(), &pv).await?;
    claims
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"status": {
                "phase": "Bound",
                "accessModes": ["ReadWriteOnce"],
                "capacity": {"storage": "1Gi"},
            }})),
        )
        .await?;
    Ok(())
}

/// The volume of a pod of `kind` for sample `i` (making the PV and PVC it needs).
async fn volume_of(
    admin: &kube::Client,
    kind: &str,
    i: usize,
) -> Result<serde_json::Value, BoxError> {
    Ok(match kind {
        "emptyDir" => serde_json::json!({"name": "data", "emptyDir": {}}),
        "csi-inline" => serde_json::json!({"name": "data", "csi": {"driver": DRIVER}}),
        _ => {
            let name = format!("bench-pv-{i}");
            bound_claim(admin, &name).await?;
            serde_json::json!({"name": "data", "persistentVolumeClaim": {"claimName": name}})
        }
    })
}

/// The samples of one kind: pod start and its volume setup.
#[derive(Default)]
struct KindSamples {
    start: Samples,
    setup: Samples,
}

async fn run(rounds: usize, times: VolumeSetupTimes) -> Result<(), BoxError> {
    let server = TestApiServer::from_env().await?;
    let which = match &server {
        TestApiServer::Envtest(_) => "real kube-apiserver (envtest)",
        _ => "fake kube-apiserver",
    };
    let containerd = TestContainerd::start()
        .await
        .ok_or("the test containerd did not start")?;
    let dir = tempfile::Builder::new()
        .prefix("kubelet-bench-csi-")
        .tempdir()?;
    let root = dir.path().join("kubelet");
    let admin_conf = dir.path().join("admin.conf");
    server.write_kubeconfig(&admin_conf)?;
    let admin = client(&std::fs::read_to_string(&admin_conf)?).await?;
    let node_conf = dir.path().join("node.conf");
    std::fs::write(&node_conf, server.node_kubeconfig(NODE)?)?;
    let node_client =
        NodeClient::connect(&ClientSource::Kubeconfig(node_conf), NODE.to_string()).await?;

    let csi_driver: CSIDriver = serde_json::from_value(serde_json::json!({
        "metadata": {"name": DRIVER},
        "spec": {"attachRequired": false, "volumeLifecycleModes": ["Persistent", "Ephemeral"]},
    }))?;
    let drivers: Api<CSIDriver> = Api::all(admin.clone());
    let _ = drivers.delete(DRIVER, &DeleteParams::default()).await;
    drivers.create(&PostParams::default(), &csi_driver).await?;

    // As the daemon's CSI wiring: registry, plugin watcher, CSI plugin over the API objects.
    let registry = kubelet_csi::DriverRegistry::new();
    let watcher = kubelet_csi::PluginWatcher::new(
        kubelet_csi::PluginWatcherOptions::for_root_dir(&root),
        registry.clone(),
    )
    .spawn()?;
    let csi = kubelet_csi::CsiVolumePlugin::new(
        registry,
        Arc::new(kubelet_csi::ApiCsiObjects::new(
            node_client.client().clone(),
        )),
        kubelet_csi::CsiVolumeOptions::new(root.clone(), NODE.to_string()),
    );
    let mut config = KubeletConfig::new(NODE);
    config.root_dir = root.clone();
    config.spec.pod_logs_root = containerd.log_dir().to_string_lossy().into_owned();
    // containerd leaves pod cgroups behind; the kubelet removes them, as the daemon does.
    config.cgroup_fs_root = Some("/sys/fs/cgroup".into());
    config.node_ips = vec!["192.0.2.10".into()];
    let kubelet = Kubelet::builder(config)
        .runtime(Arc::new(containerd.runtime().await))
        .network(Arc::new(RuntimeManagedNetwork))
        .reporter(Arc::new(ApiServerReporter::new(node_client.clone())))
        .source(Box::new(ApiServerSource::new(node_client.clone())))
        .volume_plugin(Arc::new(csi))
        .volume_plugin(Arc::new(ApiObjectVolumePlugin::for_client(
            node_client.clone(),
        )))
        .pod_objects(Arc::new(PodObjectFetcher::new(node_client)))
        .build()?;
    let handle = kubelet.handle();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(kubelet.run(async move {
        let _ = stopped.await;
    }));

    let driver = HostPathDriver::new(HostPathOptions::new(
        DRIVER,
        NODE,
        dir.path().join("driver-volumes"),
    ));
    let server_handle = driver
        .serve(&root.join("plugins").join(DRIVER).join("csi.sock"))
        .await?;
    let registrar = Registrar::csi(DRIVER, server_handle.socket())
        .serve(
            &root
                .join("plugins_registry")
                .join(format!("{DRIVER}-reg.sock")),
        )
        .await?;
    let status = tokio::time::timeout(DEADLINE, registrar.first_status()).await?;
    if !status.plugin_registered {
        return Err(format!("driver registration refused: {}", status.error).into());
    }

    let result = sample(rounds, &admin, &handle, &times).await;

    let _ = stop.send(());
    let _ = task.await;
    drop(registrar);
    drop(server_handle);
    drop(watcher);
    let _ = drivers.delete(DRIVER, &DeleteParams::default()).await;
    let table = result?;
    println!();
    println!(
        "Pod start to Running+Ready, {which}, real containerd, {rounds} pods of each kind \
         (one at a time); volume setup = the pod's first volume_setup span:"
    );
    println!();
    println!(
        "| pod | n | start p50 (ms) | start p90 (ms) | volume setup p50 (ms) | volume setup p90 (ms) |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for kind in KINDS {
        let s = table.get(kind).ok_or("no samples")?;
        println!(
            "| {kind} | {} | {} | {} | {} | {} |",
            s.start.0.len(),
            ms(s.start.percentile(50.0)),
            ms(s.start.percentile(90.0)),
            ms(s.setup.percentile(50.0)),
            ms(s.setup.percentile(90.0)),
        );
    }
    drop(containerd);
    Ok(())
}

async fn sample(
    rounds: usize,
    admin: &kube::Client,
    handle: &KubeletHandle,
    times: &VolumeSetupTimes,
) -> Result<HashMap<&'static str, KindSamples>, BoxError> {
    let pods: Api<Pod> = Api::namespaced(admin.clone(), "default");
    let mut table: HashMap<&'static str, KindSamples> = HashMap::new();
    // Round 0 warms up (image, first gRPC connection, first objects); not counted.
    for round in 0..=rounds {
        for kind in KINDS {
            let name = format!("{}-{round}", kind.to_lowercase());
            let p = pod(&name, volume_of(admin, kind, round).await?)?;
            let started = Instant::now();
            pods.create(&PostParams::default(), &p).await?;
            wait_until(&format!("pod {name} Running and Ready"), async || {
                running_and_ready(handle, &name)
            })
            .await?;
            let took = started.elapsed();
            let setup = times.take(&name);
            if round > 0 {
                let entry = table.entry(kind).or_default();
                entry.start.push(took);
                if let Some(setup) = setup {
                    entry.setup.push(setup);
                }
            }
            let delete = DeleteParams {
                grace_period_seconds: Some(0),
                ..DeleteParams::default()
            };
            pods.delete(&name, &delete).await?;
            wait_until(&format!("pod {name} gone from the kubelet"), async || {
                !handle
                    .pods()
                    .iter()
                    .any(|p| p.metadata.name.as_deref() == Some(name.as_str()))
            })
            .await?;
            if kind == "csi-pvc" {
                let pv = format!("bench-pv-{round}");
                let claims: Api<PersistentVolumeClaim> = Api::namespaced(admin.clone(), "default");
                let volumes: Api<PersistentVolume> = Api::all(admin.clone());
                let _ = claims.delete(&pv, &DeleteParams::default()).await;
                let _ = volumes.delete(&pv, &DeleteParams::default()).await;
            }
            eprintln!("{name}: {} ms", ms(took));
        }
    }
    Ok(table)
}

fn main() -> Result<(), BoxError> {
    if let Some(why) = missing_prerequisites() {
        println!("csi_pod_start: skipped: needs a real containerd: {why}");
        return Ok(());
    }
    let rounds = rounds()?;
    let times = VolumeSetupTimes::default();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(times.clone()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(rounds, times))
}
