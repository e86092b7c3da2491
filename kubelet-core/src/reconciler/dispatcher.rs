//! The main loop: merges the sources, relists the runtime, and dispatches each change to the
//! worker of its pod, starting and retiring workers as pods come and go.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::select_all;
use k8s_openapi::api::core::v1::Pod;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::context::WorkerContext;
use super::kubelet::{Kubelet, KubeletError};
use super::mux::{PodChange, PodConfigMux};
use super::node_eviction::{EvictOrder, Monitor};
use super::pleg::{RelistResult, Relister};
use super::worker::WorkerHandle;
use crate::labels;

pub(super) async fn run(
    kubelet: Kubelet,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), KubeletError> {
    let Kubelet {
        config,
        runtime,
        network,
        reporter,
        volume_plugins,
        mounter,
        pod_cgroups,
        pod_objects,
        runtime_classes,
        sources,
        shared,
        stats,
        node_eviction,
        node_status,
        node_info,
        image_gc,
        ..
    } = kubelet;
    let version = runtime.version().await?;
    info!(
        node = %config.node_name,
        runtime = %version.runtime_name,
        runtime_version = %version.runtime_version,
        "kubelet starting"
    );
    let relist_period = config.relist_period;
    let resync = config.sync_frequency;
    let mut mux = PodConfigMux::new(sources.iter().map(|s| s.name().to_string()));
    let mut updates = select_all(sources.into_iter().map(|source| {
        let name = source.name().to_string();
        source.updates().map(move |u| (name.clone(), u)).boxed()
    }));
    // Node-pressure eviction: its loop hands each eviction to the dispatcher, which owns
    // the workers.
    let (order_tx, mut order_rx) = mpsc::channel::<EvictOrder>(1);
    let monitor = match (&node_eviction, stats) {
        (Some(eviction), Some(stats)) => Some(tokio::spawn(
            Monitor::new(
                eviction.clone(),
                stats,
                shared.clone(),
                node_status,
                reporter.clone(),
                config.node_name.clone(),
                image_gc,
                order_tx,
            )
            .run(),
        )),
        _ => None,
    };
    let (ctx, background) = WorkerContext::start(
        config,
        version.runtime_name.clone(),
        runtime.clone(),
        network,
        volume_plugins,
        super::context::ObjectSources {
            pod_objects,
            runtime_classes,
            mounter,
            pod_cgroups,
            node_eviction,
            node_info,
        },
        reporter,
        shared.clone(),
    );

    let (relist_tx, mut relist_rx) = mpsc::channel::<RelistResult>(1);
    let relist_runtime = runtime.clone();
    let relist_shared = shared.clone();
    let relister = tokio::spawn(async move {
        let mut relister = Relister::new().with_metrics(relist_shared.metrics.clone());
        let mut tick = tokio::time::interval(relist_period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match relister.relist(relist_runtime.as_ref()).await {
                Ok(result) => {
                    relist_shared.relisted();
                    if relist_tx.send(result).await.is_err() {
                        return;
                    }
                }
                Err(err) => warn!(error = %err, "relisting the runtime failed"),
            }
        }
    });

    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<String>();
    let mut workers: HashMap<String, WorkerHandle> = HashMap::new();
    let mut present_in_runtime = Default::default();
    let mut resync_tick = tokio::time::interval(resync);
    resync_tick.reset();
    // Orphaned pod directories are looked for on the reference's housekeeping period, once
    // the sources have all spoken and the runtime has been listed: a pod that is merely not
    // listed yet after a restart is never taken for an orphan.
    let mut housekeeping_tick = tokio::time::interval(crate::cgroups::HOUSEKEEPING_PERIOD);
    housekeeping_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut relisted_once = false;
    let mut sources_open = true;
    tokio::pin!(shutdown);

    // The full name (namespace/name) of each worker's static pod. As the reference, a static
    // pod starts only once no other pod of the same full name has a worker, i.e. once the
    // previous one (an edited manifest gives a new UID) has terminated: the two never run
    // side by side (a hostPort, a data directory or a lock file they both take).
    let mut static_names: HashMap<String, String> = HashMap::new();
    let dispatch = |workers: &mut HashMap<String, WorkerHandle>,
                    static_names: &mut HashMap<String, String>,
                    change: PodChange| match workers.get(&change.uid) {
        Some(worker) => worker.update(change.pod),
        None => {
            let Some(pod) = &change.pod else {
                return;
            };
            if let Some(name) = static_full_name(pod) {
                if let Some(blocking) = static_names
                    .iter()
                    .find(|(uid, n)| **n == name && **uid != change.uid)
                    .map(|(uid, _)| uid)
                {
                    info!(
                        pod = %name,
                        uid = %change.uid,
                        previous_uid = %blocking,
                        "static pod waits for the previous pod of the same name to terminate"
                    );
                    return;
                }
                static_names.insert(change.uid.clone(), name);
            }
            let worker =
                WorkerHandle::spawn(ctx.clone(), change.uid.clone(), change.pod, done_tx.clone());
            workers.insert(change.uid, worker);
        }
    };

    loop {
        tokio::select! {
            () = &mut shutdown => break,
            update = updates.next(), if sources_open => {
                let Some((source, update)) = update else {
                    sources_open = false;
                    continue;
                };
                for change in mux.apply(&source, update) {
                    dispatch(&mut workers, &mut static_names, change);
                }
                if mux.all_sources_ready() {
                    start_orphan_workers(&ctx, &mux, &mut workers, &present_in_runtime, &done_tx);
                }
            }
            Some(relist) = relist_rx.recv() => {
                for uid in &relist.changed {
                    if let Some(worker) = workers.get(uid) {
                        worker.wake();
                    }
                }
                present_in_runtime = relist.present;
                relisted_once = true;
                if mux.all_sources_ready() {
                    start_orphan_workers(&ctx, &mux, &mut workers, &present_in_runtime, &done_tx);
                }
            }
            Some(uid) = done_rx.recv() => {
                workers.remove(&uid);
                let freed = static_names.remove(&uid);
                // A pod that is wanted again (e.g. a static manifest put back) starts over.
                if let Some(pod) = mux.desired(&uid)
                    && pod.metadata.deletion_timestamp.is_none()
                {
                    let change = PodChange { uid, pod: Some(pod.clone()) };
                    dispatch(&mut workers, &mut static_names, change);
                }
                // Static pods that waited for this one's name may start now.
                if let Some(freed) = freed {
                    let waiting: Vec<PodChange> = mux
                        .pods()
                        .filter(|p| p.metadata.deletion_timestamp.is_none())
                        .filter(|p| static_full_name(p).as_deref() == Some(freed.as_str()))
                        .filter_map(|p| {
                            let uid = p.metadata.uid.clone()?;
                            (!workers.contains_key(&uid))
                                .then(|| PodChange { uid, pod: Some(p.clone()) })
                        })
                        .collect();
                    for change in waiting {
                        dispatch(&mut workers, &mut static_names, change);
                    }
                }
            }
            _ = housekeeping_tick.tick(), if relisted_once && mux.all_sources_ready() => {
                let known = |uid: &str| {
                    mux.desired(uid).is_some() || present_in_runtime.contains(uid)
                };
                super::orphan_dirs::start_cleanups(&ctx, known, &mut workers, &done_tx);
            }
            Some(order) = order_rx.recv() => {
                let evicted = match workers.get(&order.uid) {
                    Some(worker) => {
                        worker.evict(order.eviction);
                        true
                    }
                    None => false,
                };
                let _ = order.done.send(evicted);
            }
            _ = resync_tick.tick() => {
                for worker in workers.values() {
                    worker.wake();
                }
            }
        }
    }
    info!("kubelet shutting down; pods keep running");
    relister.abort();
    if let Some(monitor) = monitor {
        monitor.abort();
    }
    for worker in workers.values() {
        worker.abort();
    }
    for task in background {
        task.abort();
    }
    // Give aborted tasks a moment to drop what they hold.
    tokio::time::sleep(Duration::from_millis(1)).await;
    Ok(())
}

/// `namespace/name` of a static pod (from a file or URL source), `None` for others.
fn static_full_name(pod: &Pod) -> Option<String> {
    let is_static = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(labels::CONFIG_SOURCE))
        .is_some_and(|s| s != crate::source::SOURCE_API);
    is_static.then(|| {
        format!(
            "{}/{}",
            pod.metadata.namespace.as_deref().unwrap_or_default(),
            pod.metadata.name.as_deref().unwrap_or_default()
        )
    })
}

/// Pods the runtime holds that no source wants get a worker that removes them.
fn start_orphan_workers(
    ctx: &std::sync::Arc<WorkerContext>,
    mux: &PodConfigMux,
    workers: &mut HashMap<String, WorkerHandle>,
    present: &std::collections::BTreeSet<String>,
    done: &mpsc::UnboundedSender<String>,
) {
    for uid in present {
        if mux.desired(uid).is_none() && !workers.contains_key(uid) {
            info!(uid = %uid, "pod in the runtime is not wanted by any source; removing it");
            let worker = WorkerHandle::spawn(ctx.clone(), uid.clone(), None, done.clone());
            workers.insert(uid.clone(), worker);
        }
    }
}

#[cfg(all(test, feature = "testing"))]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::time::Instant;

    use crate::testing::pods::{container, pod};
    use crate::testing::{
        Call, ChannelSource, ContainerBehavior, FakeRuntime, Method, RecordingReporter,
    };
    use crate::{Kubelet, KubeletConfig};

    const IMAGE: &str = "docker.io/library/busybox:local";

    fn position(calls: &[Call], method: Method, target: &str) -> Option<usize> {
        calls
            .iter()
            .position(|c| c.method == method && c.target == target)
    }

    /// An edited static manifest (same name, new UID) starts only after the old pod has
    /// terminated, even when its container takes a while to stop.
    #[tokio::test(start_paused = true)]
    async fn a_static_pod_waits_for_its_predecessor_of_the_same_name() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = KubeletConfig::new("node-1");
        config.root_dir = dir.path().join("kubelet");
        config.spec.pod_logs_root = dir.path().join("pods").to_string_lossy().into_owned();
        let runtime = Arc::new(FakeRuntime::with_images([IMAGE]));
        runtime.set_default_behavior(
            ContainerBehavior::forever().on_term_exit(0, Duration::from_secs(3)),
        );
        let reporter = Arc::new(RecordingReporter::new());
        let (source, pods) = ChannelSource::new("file");
        let kubelet = Kubelet::builder(config)
            .runtime(runtime.clone())
            .reporter(reporter.clone())
            .source(Box::new(source))
            .build()
            .unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(kubelet.run(async move {
            let _ = stopped.await;
        }));

        let until = async |what: &str, cond: &dyn Fn() -> bool| {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !cond() {
                assert!(Instant::now() < deadline, "timed out waiting for {what}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        let old = pod("web")
            .uid("uid-old")
            .grace_period(10)
            .container(container("app", IMAGE))
            .build();
        pods.snapshot(vec![old]);
        until("the old pod to run", &|| {
            reporter.last_phase("uid-old").as_deref() == Some("Running")
        })
        .await;
        let old_sandbox = runtime.sandboxes()[0].id.clone();

        let new = pod("web")
            .uid("uid-new")
            .grace_period(10)
            .container(container("app", IMAGE).command(["sh", "-c", "true"]))
            .build();
        pods.snapshot(vec![new]);
        until("the new pod to run", &|| {
            reporter.last_phase("uid-new").as_deref() == Some("Running")
        })
        .await;
        let calls = runtime.call_log();
        let removed =
            position(&calls, Method::RemovePodSandbox, &old_sandbox).expect("old sandbox removed");
        let started = position(&calls, Method::RunPodSandbox, "uid-new").expect("new sandbox");
        assert!(
            removed < started,
            "new sandbox at call {started}, old one removed at call {removed}: {calls:?}"
        );

        let _ = stop.send(());
        task.await.unwrap().unwrap();
    }
}
