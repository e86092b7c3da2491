//! Node-pressure eviction on the fake runtime under paused time: a stats provider of the
//! test's own reports the node's usage; the kubelet sets the node's pressure conditions,
//! records `EvictionThresholdMet`, evicts the pod the reference's ranking puts first (one
//! per monitoring interval), refuses new pods the eviction admit handler refuses, and
//! under disk pressure removes unused images before it considers pods.

mod support {
    // Shared by the scenario test files; each uses part of it.
    #[allow(dead_code)]
    pub mod scenario;
}

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{NodeCondition, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kubelet_core::eviction::{EvictionConfig, EvictionSettings, parse_thresholds};
use kubelet_core::image_gc::StaticImageFs;
use kubelet_core::node::{MachineInfo, NodeConfig};
use kubelet_core::runtime::Runtime;
use kubelet_core::stats::summary::{
    ContainerStats, FsStats, MemoryStats, NodeStats, PodReference, PodStats, RlimitStats,
    RuntimeStats, Summary, Time,
};
use kubelet_core::stats::{StatsError, StatsProvider};
use kubelet_core::testing::FakeRuntime;
use kubelet_core::testing::pods::{container, pod};

use support::scenario::{IMAGE, Node, runtime};

const MI: u64 = 1 << 20;
const GI: u64 = 1 << 30;

/// The node's usage as the test sets it; pods' memory by UID.
#[derive(Clone)]
struct Usage {
    memory_available: u64,
    memory_working_set: u64,
    nodefs_available: u64,
    nodefs_capacity: u64,
    pids_used: i64,
    /// (namespace, name, uid, container, working set).
    pods: Vec<(String, String, String, String, u64)>,
}

impl Default for Usage {
    fn default() -> Self {
        Self {
            memory_available: 6 * GI,
            memory_working_set: 2 * GI,
            nodefs_available: 50 * GI,
            nodefs_capacity: 100 * GI,
            pids_used: 300,
            pods: Vec::new(),
        }
    }
}

/// An embedder's stats provider, fed by the test. Under `image_frees`, the node filesystem
/// gains that many bytes once the runtime no longer has the image (what removing it frees).
struct Settable {
    usage: Mutex<Usage>,
    image_frees: Option<(Arc<FakeRuntime>, String, u64)>,
    /// Samples taken: each is a second newer than the one before (the eviction manager acts
    /// only on stats newer than those it saw last).
    samples: AtomicI64,
}

impl Settable {
    fn new(usage: Usage) -> Arc<Self> {
        Arc::new(Self {
            usage: Mutex::new(usage),
            image_frees: None,
            samples: AtomicI64::new(0),
        })
    }

    fn set(&self, f: impl FnOnce(&mut Usage)) {
        f(&mut self.usage.lock().unwrap());
    }

    async fn sample(&self) -> Summary {
        let usage = self.usage.lock().unwrap().clone();
        let mut nodefs_available = usage.nodefs_available;
        if let Some((runtime, image, bytes)) = &self.image_frees {
            let images = runtime.list_images().await.unwrap();
            if !images.iter().any(|i| i.repo_tags.contains(image)) {
                nodefs_available += bytes;
            }
        }
        let n = self.samples.fetch_add(1, Ordering::SeqCst);
        let t = Time(1_700_000_000_000_000_000 + n * 1_000_000_000);
        let fs = FsStats {
            time: t,
            available_bytes: Some(nodefs_available),
            capacity_bytes: Some(usage.nodefs_capacity),
            used_bytes: Some(usage.nodefs_capacity - nodefs_available),
            inodes_free: Some(1_000_000),
            inodes: Some(2_000_000),
            inodes_used: Some(1_000_000),
        };
        Summary {
            node: NodeStats {
                node_name: "node-1".into(),
                start_time: t,
                memory: Some(MemoryStats {
                    time: t,
                    available_bytes: Some(usage.memory_available),
                    working_set_bytes: Some(usage.memory_working_set),
                    ..Default::default()
                }),
                fs: Some(fs.clone()),
                runtime: Some(RuntimeStats {
                    image_fs: Some(fs),
                    container_fs: None,
                }),
                rlimit: Some(RlimitStats {
                    time: t,
                    maxpid: Some(4096),
                    curproc: Some(usage.pids_used),
                }),
                ..Default::default()
            },
            pods: usage
                .pods
                .iter()
                .map(|(namespace, name, uid, c, bytes)| {
                    let memory = Some(MemoryStats {
                        time: t,
                        working_set_bytes: Some(*bytes),
                        ..Default::default()
                    });
                    PodStats {
                        pod_ref: PodReference {
                            name: name.clone(),
                            namespace: namespace.clone(),
                            uid: uid.clone(),
                        },
                        start_time: t,
                        memory: memory.clone(),
                        containers: vec![ContainerStats {
                            name: c.clone(),
                            start_time: t,
                            memory,
                            ..Default::default()
                        }],
                        ..Default::default()
                    }
                })
                .collect(),
        }
    }
}

#[async_trait]
impl StatsProvider for Settable {
    async fn summary(&self) -> Result<Arc<Summary>, StatsError> {
        Ok(Arc::new(self.sample().await))
    }
}

fn config(hard: &[(&str, &str)], transition: Duration) -> EvictionConfig {
    let settings = EvictionSettings {
        hard: hard
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        ..EvictionSettings::default()
    };
    EvictionConfig {
        thresholds: parse_thresholds(&settings).expect("thresholds"),
        pressure_transition_period: transition,
        ..EvictionConfig::default()
    }
}

fn start(fake: Arc<FakeRuntime>, stats: Arc<dyn StatsProvider>, eviction: EvictionConfig) -> Node {
    let machine = MachineInfo {
        num_cores: 4,
        memory_capacity: 8 << 30,
        ..MachineInfo::default()
    };
    Node::start_built(
        fake,
        |_, _| {},
        |b| {
            // An image filesystem far below the GC threshold: the image GC only records
            // the images (their ages count from then), as the reference's does.
            b.eviction(eviction)
                .image_fs(Arc::new(StaticImageFs::new(100 * GI, 90 * GI)))
                .node_status(NodeConfig::new("node-1"), machine)
        },
        |k| k.with_stats(stats),
    )
}

fn condition(node: &Node, type_: &str) -> Option<NodeCondition> {
    node.reporter
        .last_node_status()?
        .conditions?
        .into_iter()
        .find(|c| c.type_ == type_)
}

fn pressure(node: &Node, type_: &str) -> bool {
    condition(node, type_).is_some_and(|c| c.status == "True")
}

fn memory_request(bytes: &str) -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(
            [("memory".to_string(), Quantity(bytes.into()))]
                .into_iter()
                .collect(),
        ),
        ..Default::default()
    }
}

#[tokio::test(start_paused = true)]
async fn memory_pressure_evicts_the_pod_most_over_its_request_and_refuses_best_effort_pods() {
    let stats = Settable::new(Usage::default());
    let node = start(
        runtime(),
        stats.clone(),
        config(&[("memory.available", "100Mi")], Duration::from_secs(300)),
    );
    let idle = pod("idle").container(container("app", IMAGE)).build();
    let hog = pod("hog")
        .container(container("app", IMAGE).with(|c| c.resources = Some(memory_request("100Mi"))))
        .build();
    let (idle_uid, hog_uid) = (
        idle.metadata.uid.clone().unwrap(),
        hog.metadata.uid.clone().unwrap(),
    );
    node.pods.snapshot(vec![idle.clone(), hog.clone()]);
    node.until(Duration::from_secs(30), "both running", |n| {
        n.runtime.running_containers().len() == 2
    })
    .await;
    node.until(Duration::from_secs(30), "no pressure reported", |n| {
        condition(n, "MemoryPressure").is_some_and(|c| c.status == "False")
    })
    .await;

    // 50Mi left: below the 100Mi threshold. Both pods use more than they request; the hog
    // more so (500Mi over a 100Mi request against 10Mi over none).
    stats.set(|u| {
        u.memory_available = 50 * MI;
        u.pods = vec![
            (
                "default".into(),
                "idle".into(),
                idle_uid.clone(),
                "app".into(),
                10 * MI,
            ),
            (
                "default".into(),
                "hog".into(),
                hog_uid.clone(),
                "app".into(),
                500 * MI,
            ),
        ];
    });
    node.until(Duration::from_secs(15), "MemoryPressure", |n| {
        pressure(n, "MemoryPressure")
    })
    .await;
    node.until(Duration::from_secs(15), "the hog evicted", |n| {
        n.reporter.last_phase(&hog_uid).as_deref() == Some("Failed")
    })
    .await;
    let message = "The node was low on resource: memory. Threshold quantity: 100Mi, \
                   available: 50Mi. Container app was using 500Mi, request is 100Mi, has \
                   larger consumption of memory. ";
    let status = node.reporter.last_pod_status(&hog_uid).unwrap();
    assert_eq!(status.reason.as_deref(), Some("Evicted"));
    assert_eq!(status.message.as_deref(), Some(message));
    let disruption = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "DisruptionTarget")
        .expect("DisruptionTarget");
    assert_eq!(disruption.message.as_deref(), Some(message));
    let evicted = node.reporter.events_with_reason("Evicted");
    assert_eq!(evicted.len(), 1, "{evicted:?}");
    assert_eq!(evicted[0].involved.name.as_deref(), Some("hog"));
    assert_eq!(evicted[0].message, message);
    let met = node.reporter.events_with_reason("EvictionThresholdMet");
    assert!(!met.is_empty());
    assert_eq!(met[0].message, "Attempting to reclaim memory");
    assert_eq!(met[0].involved.kind.as_deref(), Some("Node"));
    assert_eq!(
        node.runtime.running_containers().len(),
        1,
        "the idle pod runs on"
    );
    let metrics = node
        .handle
        .metrics()
        .encode(kubelet_core::metrics::Format::Text);
    assert!(
        metrics.contains("kubelet_evictions{eviction_signal=\"memory.available\"} 1"),
        "{metrics}"
    );

    // The memory came back; the condition stays for the transition period.
    stats.set(|u| {
        u.memory_available = 4 * GI;
        u.pods.retain(|p| p.2 != hog_uid);
    });
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(pressure(&node, "MemoryPressure"));
    assert_eq!(
        node.reporter.last_phase(&idle_uid).as_deref(),
        Some("Running")
    );

    // Meanwhile a BestEffort pod is refused; a Burstable one runs.
    let late = pod("late").container(container("app", IMAGE)).build();
    let sized = pod("sized")
        .container(container("app", IMAGE).with(|c| c.resources = Some(memory_request("10Mi"))))
        .build();
    let (late_uid, sized_uid) = (
        late.metadata.uid.clone().unwrap(),
        sized.metadata.uid.clone().unwrap(),
    );
    node.pods
        .snapshot(vec![idle.clone(), hog.clone(), late.clone(), sized.clone()]);
    node.until(Duration::from_secs(15), "the BestEffort pod refused", |n| {
        n.reporter.last_phase(&late_uid).as_deref() == Some("Failed")
    })
    .await;
    let refused = node.reporter.last_pod_status(&late_uid).unwrap();
    assert_eq!(refused.reason.as_deref(), Some("Evicted"));
    assert_eq!(
        refused.message.as_deref(),
        Some("Pod was rejected: The node had condition: [MemoryPressure]. ")
    );
    assert!(
        !refused
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "DisruptionTarget"),
        "a rejection is no disruption: {refused:?}"
    );
    let events = node.reporter.events_with_reason("Evicted");
    assert!(
        events
            .iter()
            .any(|e| e.involved.name.as_deref() == Some("late")
                && e.message == "The node had condition: [MemoryPressure]. "),
        "{events:?}"
    );
    node.until(Duration::from_secs(15), "the Burstable pod runs", |n| {
        n.reporter.last_phase(&sized_uid).as_deref() == Some("Running")
    })
    .await;
    assert!(
        node.runtime
            .containers()
            .iter()
            .all(|c| c.metadata.name != "app"
                || c.labels.get("io.kubernetes.pod.name").map(String::as_str) != Some("late")),
        "nothing of the refused pod was created"
    );

    // Past the transition period the condition clears.
    node.until(Duration::from_secs(330), "MemoryPressure cleared", |n| {
        condition(n, "MemoryPressure").is_some_and(|c| c.status == "False")
    })
    .await;
    assert_eq!(
        node.reporter.last_phase(&idle_uid).as_deref(),
        Some("Running")
    );
    node.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn disk_pressure_removes_unused_images_before_any_pod() {
    let unused = "docker.io/library/unused:1";
    let fake = Arc::new(FakeRuntime::with_images([IMAGE, unused]));
    let stats = Arc::new(Settable {
        usage: Mutex::new(Usage::default()),
        image_frees: Some((fake.clone(), unused.to_string(), 20 * GI)),
        samples: AtomicI64::new(0),
    });
    let node = start(
        fake.clone(),
        stats.clone(),
        config(&[("nodefs.available", "10%")], Duration::from_secs(300)),
    );
    let web = pod("web").container(container("app", IMAGE)).build();
    let web_uid = web.metadata.uid.clone().unwrap();
    node.pods.snapshot(vec![web]);
    node.until(Duration::from_secs(30), "running", |n| {
        n.reporter.last_phase(&web_uid).as_deref() == Some("Running")
    })
    .await;

    // Past the images' minimum GC age (2 min), which the eviction manager's removal keeps
    // to as the image GC does.
    tokio::time::sleep(Duration::from_secs(150)).await;
    // 5 GiB of 100 left: under 10 %. Removing the unused image frees 20 GiB.
    stats.set(|u| u.nodefs_available = 5 * GI);
    node.until(Duration::from_secs(15), "DiskPressure", |n| {
        pressure(n, "DiskPressure")
    })
    .await;
    node.until(Duration::from_secs(15), "the unused image removed", |n| {
        !n.runtime.local_images().iter().any(|i| i == unused)
    })
    .await;
    let met = node.reporter.events_with_reason("EvictionThresholdMet");
    assert_eq!(met[0].message, "Attempting to reclaim ephemeral-storage");
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(
        node.reporter.last_phase(&web_uid).as_deref(),
        Some("Running")
    );
    assert!(
        node.runtime.local_images().iter().any(|i| i == IMAGE),
        "the image in use stays"
    );
    assert!(node.reporter.events_with_reason("Evicted").is_empty());

    // Under disk pressure no new pod is admitted, whatever its QoS.
    let sized = pod("sized")
        .container(container("app", IMAGE).with(|c| c.resources = Some(memory_request("10Mi"))))
        .build();
    let sized_uid = sized.metadata.uid.clone().unwrap();
    node.pods.snapshot(vec![
        pod("web").container(container("app", IMAGE)).build(),
        sized,
    ]);
    node.until(Duration::from_secs(15), "refused", |n| {
        n.reporter.last_phase(&sized_uid).as_deref() == Some("Failed")
    })
    .await;
    assert_eq!(
        node.reporter
            .last_pod_status(&sized_uid)
            .unwrap()
            .message
            .as_deref(),
        Some("Pod was rejected: The node had condition: [DiskPressure]. ")
    );
    node.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_static_pod_is_never_evicted() {
    let stats = Settable::new(Usage::default());
    let node = start(
        runtime(),
        stats.clone(),
        config(&[("pid.available", "1000")], Duration::from_secs(300)),
    );
    let mirror = pod("etcd-node-1")
        .namespace("kube-system")
        .annotation("kubernetes.io/config.source", "file")
        .container(container("etcd", IMAGE))
        .build();
    let uid = mirror.metadata.uid.clone().unwrap();
    node.pods.snapshot(vec![mirror]);
    node.until(Duration::from_secs(30), "running", |n| {
        n.reporter.last_phase(&uid).as_deref() == Some("Running")
    })
    .await;
    // 3700 of 4096 PIDs taken: 396 left, under 1000.
    stats.set(|u| u.pids_used = 3700);
    node.until(Duration::from_secs(15), "PIDPressure", |n| {
        pressure(n, "PIDPressure")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(node.reporter.last_phase(&uid).as_deref(), Some("Running"));
    assert!(node.reporter.events_with_reason("Evicted").is_empty());
    node.shutdown().await;
}
