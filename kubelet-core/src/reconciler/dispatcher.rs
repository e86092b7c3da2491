//! The main loop: merges the sources, relists the runtime, and dispatches each change to the
//! worker of its pod, starting and retiring workers as pods come and go.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::select_all;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::context::WorkerContext;
use super::kubelet::{Kubelet, KubeletError};
use super::mux::{PodChange, PodConfigMux};
use super::pleg::{RelistResult, Relister};
use super::worker::WorkerHandle;

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
        sources,
        shared,
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
    let (ctx, background) = WorkerContext::start(
        config,
        version.runtime_name.clone(),
        runtime.clone(),
        network,
        volume_plugins,
        reporter,
        shared.clone(),
    );

    let (relist_tx, mut relist_rx) = mpsc::channel::<RelistResult>(1);
    let relist_runtime = runtime.clone();
    let relist_shared = shared.clone();
    let relister = tokio::spawn(async move {
        let mut relister = Relister::new();
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
    let mut sources_open = true;
    tokio::pin!(shutdown);

    let dispatch = |workers: &mut HashMap<String, WorkerHandle>, change: PodChange| match workers
        .get(&change.uid)
    {
        Some(worker) => worker.update(change.pod),
        None => {
            if change.pod.is_some() {
                let worker = WorkerHandle::spawn(
                    ctx.clone(),
                    change.uid.clone(),
                    change.pod,
                    done_tx.clone(),
                );
                workers.insert(change.uid, worker);
            }
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
                    dispatch(&mut workers, change);
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
                if mux.all_sources_ready() {
                    start_orphan_workers(&ctx, &mux, &mut workers, &present_in_runtime, &done_tx);
                }
            }
            Some(uid) = done_rx.recv() => {
                workers.remove(&uid);
                // A pod that is wanted again (e.g. a static manifest put back) starts over.
                if let Some(pod) = mux.desired(&uid)
                    && pod.metadata.deletion_timestamp.is_none()
                {
                    dispatch(&mut workers, PodChange { uid, pod: Some(pod.clone()) });
                }
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
