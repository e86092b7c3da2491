//! A [`PodSource`] fed by hand through a channel.

use futures::StreamExt;
use futures::stream::BoxStream;
use k8s_openapi::api::core::v1::Pod;
use tokio::sync::mpsc;

use crate::labels;
use crate::source::{PodSource, PodUpdate};

/// A pod source whose updates a test sends through a [`ChannelSourceSender`].
#[derive(Debug)]
pub struct ChannelSource {
    name: String,
    rx: mpsc::UnboundedReceiver<PodUpdate>,
}

/// The sending side of a [`ChannelSource`]; cheap to clone.
///
/// Pods sent without the `kubernetes.io/config.source` annotation get the source's name in
/// it, as every source's pods carry it.
#[derive(Debug, Clone)]
pub struct ChannelSourceSender {
    name: String,
    tx: mpsc::UnboundedSender<PodUpdate>,
}

impl ChannelSource {
    /// A source named `name` and the sender that feeds it.
    pub fn new(name: impl Into<String>) -> (Self, ChannelSourceSender) {
        let name = name.into();
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Self {
                name: name.clone(),
                rx,
            },
            ChannelSourceSender { name, tx },
        )
    }
}

impl PodSource for ChannelSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn updates(self: Box<Self>) -> BoxStream<'static, PodUpdate> {
        futures::stream::unfold(self.rx, |mut rx| async move {
            rx.recv().await.map(|update| (update, rx))
        })
        .boxed()
    }
}

impl ChannelSourceSender {
    fn stamp(&self, mut pod: Pod) -> Pod {
        pod.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .entry(labels::CONFIG_SOURCE.to_string())
            .or_insert_with(|| self.name.clone());
        pod
    }

    /// Send an update. Returns false if the source is gone (its stream was dropped).
    pub fn send(&self, update: PodUpdate) -> bool {
        let update = match update {
            PodUpdate::Snapshot(pods) => {
                PodUpdate::Snapshot(pods.into_iter().map(|p| self.stamp(p)).collect())
            }
            PodUpdate::Add(pod) => PodUpdate::Add(self.stamp(pod)),
            PodUpdate::Update(pod) => PodUpdate::Update(self.stamp(pod)),
            remove @ PodUpdate::Remove(_) => remove,
        };
        self.tx.send(update).is_ok()
    }

    /// Send the complete set of pods.
    pub fn snapshot(&self, pods: Vec<Pod>) -> bool {
        self.send(PodUpdate::Snapshot(pods))
    }

    /// Send a new pod.
    pub fn add(&self, pod: Pod) -> bool {
        self.send(PodUpdate::Add(pod))
    }

    /// Send a changed pod.
    pub fn update(&self, pod: Pod) -> bool {
        self.send(PodUpdate::Update(pod))
    }

    /// Remove the pod with this UID.
    pub fn remove(&self, uid: impl Into<String>) -> bool {
        self.send(PodUpdate::Remove(uid.into()))
    }

    /// Whether the source's receiving side is gone.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}
