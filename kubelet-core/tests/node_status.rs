//! The node agent under paused time, with the fake runtime and the recording reporter:
//! registration and its retries, status sent on change or every 5 min, heartbeat and
//! transition times, Ready following the runtime, the Lease cadence and its backoff.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{NodeCondition, NodeStatus};
use kubelet_core::node::{MachineInfo, MachineReader, NodeAgent, NodeConfig, NodePressure};
use kubelet_core::runtime::{RuntimeCondition, RuntimeStatus};
use kubelet_core::testing::{ChannelSource, FakeRuntime, RecordingReporter};
use kubelet_core::{Kubelet, KubeletConfig};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until};

fn machine() -> MachineInfo {
    MachineInfo {
        num_cores: 2,
        memory_capacity: 4 << 30,
        ephemeral_storage_capacity: 50 << 30,
        machine_id: "machine".into(),
        boot_id: "boot".into(),
        kernel_version: "6.1.0".into(),
        os_image: "Debian GNU/Linux 12 (bookworm)".into(),
        architecture: "amd64".into(),
        operating_system: "linux".into(),
        ..MachineInfo::default()
    }
}

struct Running {
    runtime: Arc<FakeRuntime>,
    reporter: Arc<RecordingReporter>,
    handle: kubelet_core::node::NodeStatusHandle,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
    t0: Instant,
}

impl Running {
    fn start(config: NodeConfig) -> Self {
        Self::start_with(config, machine(), Arc::new(RecordingReporter::new()))
    }

    fn start_with(
        config: NodeConfig,
        machine: MachineInfo,
        reporter: Arc<RecordingReporter>,
    ) -> Self {
        let runtime = Arc::new(FakeRuntime::with_images(["docker.io/library/busybox:1.36"]));
        let agent = NodeAgent::new(config, machine, runtime.clone(), reporter.clone()).unwrap();
        let handle = agent.handle();
        let (stop, stopped) = oneshot::channel::<()>();
        let t0 = Instant::now();
        let task = tokio::spawn(agent.run(async move {
            let _ = stopped.await;
        }));
        Self {
            runtime,
            reporter,
            handle,
            stop: Some(stop),
            task,
            t0,
        }
    }

    /// Sleep until `secs` after the start.
    async fn at(&self, secs: f64) {
        sleep_until(self.t0 + Duration::from_secs_f64(secs)).await;
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.await.unwrap();
    }
}

fn condition<'a>(status: &'a NodeStatus, type_: &str) -> &'a NodeCondition {
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {status:?}"))
}

fn ready(status: &NodeStatus) -> &NodeCondition {
    condition(status, "Ready")
}

#[tokio::test(start_paused = true)]
async fn registration_is_retried_with_backoff_until_it_succeeds() {
    let reporter = Arc::new(RecordingReporter::new());
    reporter.fail_next(3);
    let node = Running::start_with(NodeConfig::new("node-1"), machine(), reporter.clone());
    // Attempts at 0.1 s, 0.3 s, 0.7 s fail; the one at 1.5 s succeeds.
    node.at(1.4).await;
    assert_eq!(reporter.registrations(), 0);
    assert_eq!(reporter.failed_calls(), 3);
    assert!(!node.handle.registered());
    node.at(1.6).await;
    assert_eq!(reporter.registrations(), 1);
    assert!(node.handle.registered());
    let registered = reporter.registered_node().unwrap();
    assert_eq!(registered.metadata.name.as_deref(), Some("node-1"));
    let labels = registered.metadata.labels.unwrap();
    assert_eq!(labels["kubernetes.io/hostname"], "node-1");
    assert_eq!(labels["kubernetes.io/os"], "linux");
    assert_eq!(labels["kubernetes.io/arch"], "amd64");
    let status = registered.status.unwrap();
    assert_eq!(ready(&status).status, "True");
    assert_eq!(status.capacity.as_ref().unwrap()["cpu"].0, "2");
    // The first status and the first lease renewal follow the registration at once.
    assert_eq!(reporter.node_statuses().len(), 1);
    assert_eq!(reporter.lease_renewals(), 1);
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn status_is_sent_on_change_or_every_five_minutes() {
    let node = Running::start(NodeConfig::new("node-1"));
    let reporter = node.reporter.clone();
    node.at(0.2).await;
    assert_eq!(reporter.node_statuses().len(), 1);
    let first = reporter.last_node_status().unwrap();
    let info = first.node_info.as_ref().unwrap();
    assert_eq!(
        info.container_runtime_version,
        format!("fake://{}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(info.machine_id, "machine");
    // Computed every 10 s, but nothing changed: nothing sent for almost 5 minutes.
    node.at(299.9).await;
    assert_eq!(reporter.node_statuses().len(), 1);
    let computed = node.handle.last_status().unwrap();
    assert_eq!(
        ready(&computed)
            .last_heartbeat_time
            .as_ref()
            .unwrap()
            .0
            .as_second()
            - ready(&first)
                .last_heartbeat_time
                .as_ref()
                .unwrap()
                .0
                .as_second(),
        290
    );
    // The tick at 300.1 s is 5 min after the last send.
    node.at(300.2).await;
    let statuses = reporter.node_statuses();
    assert_eq!(statuses.len(), 2);
    let (a, b) = (ready(&statuses[0]), ready(&statuses[1]));
    assert_eq!(
        b.last_heartbeat_time.as_ref().unwrap().0.as_second()
            - a.last_heartbeat_time.as_ref().unwrap().0.as_second(),
        300
    );
    assert_eq!(a.last_transition_time, b.last_transition_time);
    // The pressure conditions got their events once, at registration.
    assert_eq!(
        reporter.events_with_reason("NodeHasSufficientMemory").len(),
        1
    );
    assert_eq!(
        reporter.events_with_reason("NodeHasNoDiskPressure").len(),
        1
    );
    assert_eq!(reporter.events_with_reason("NodeHasSufficientPID").len(), 1);
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn ready_follows_the_runtime_and_back() {
    let node = Running::start(NodeConfig::new("node-1"));
    let reporter = node.reporter.clone();
    node.at(15.0).await;
    assert_eq!(reporter.node_statuses().len(), 1);
    let was = ready(&reporter.last_node_status().unwrap()).clone();

    node.runtime.set_network_ready(false);
    node.at(20.2).await;
    let statuses = reporter.node_statuses();
    assert_eq!(statuses.len(), 2, "a change is sent at the next tick");
    let not_ready = ready(&statuses[1]);
    assert_eq!(not_ready.status, "False");
    assert_eq!(not_ready.reason.as_deref(), Some("KubeletNotReady"));
    assert_eq!(
        not_ready.message.as_deref(),
        Some(
            "container runtime network not ready: NetworkReady=false \
             reason:NetworkPluginNotReady message:Network plugin returns error: \
             cni plugin not initialized"
        )
    );
    let transition = |c: &NodeCondition| c.last_transition_time.as_ref().unwrap().0.as_second();
    assert_eq!(transition(not_ready) - transition(&was), 20);
    assert_eq!(reporter.events_with_reason("NodeNotReady").len(), 1);
    // Unchanged pressure conditions keep their transition times.
    assert_eq!(
        condition(&statuses[0], "MemoryPressure").last_transition_time,
        condition(&statuses[1], "MemoryPressure").last_transition_time
    );

    node.runtime.set_network_ready(true);
    node.at(30.2).await;
    let back = reporter.last_node_status().unwrap();
    assert_eq!(ready(&back).status, "True");
    assert_eq!(ready(&back).reason.as_deref(), Some("KubeletReady"));
    assert_eq!(
        ready(&back).message.as_deref(),
        Some("kubelet is posting ready status")
    );
    assert_eq!(transition(ready(&back)) - transition(&was), 30);
    assert_eq!(reporter.events_with_reason("NodeReady").len(), 1);
    assert_eq!(reporter.node_statuses().len(), 3);

    // A runtime that stops answering: still Ready until 30 s pass without a status.
    node.runtime.set_outage(true);
    node.at(60.2).await;
    assert_eq!(ready(&reporter.last_node_status().unwrap()).status, "True");
    node.at(70.2).await;
    let down = reporter.last_node_status().unwrap();
    assert_eq!(ready(&down).status, "False");
    assert_eq!(
        ready(&down).message.as_deref(),
        Some("container runtime is down")
    );
    node.stop().await;
}

/// Until the node was first reported Ready, readiness is sent when the runtime check (every
/// 5 s) sees it, not at the next 10 s status tick.
#[tokio::test(start_paused = true)]
async fn the_first_ready_is_sent_as_soon_as_the_runtime_is_ready() {
    let runtime = Arc::new(FakeRuntime::new());
    runtime.set_network_ready(false);
    let reporter = Arc::new(RecordingReporter::new());
    let agent = NodeAgent::new(
        NodeConfig::new("node-1"),
        machine(),
        runtime.clone(),
        reporter.clone(),
    )
    .unwrap();
    let t0 = Instant::now();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(agent.run(async move {
        let _ = stopped.await;
    }));
    sleep_until(t0 + Duration::from_secs(2)).await;
    assert_eq!(ready(&reporter.last_node_status().unwrap()).status, "False");
    runtime.set_network_ready(true);
    // Runtime checks at 0.1, 5.1 s: the one at 5.1 s sends Ready at once.
    sleep_until(t0 + Duration::from_millis(5_050)).await;
    assert_eq!(reporter.node_statuses().len(), 1);
    sleep_until(t0 + Duration::from_millis(5_150)).await;
    assert_eq!(reporter.node_statuses().len(), 2);
    assert_eq!(ready(&reporter.last_node_status().unwrap()).status, "True");
    // After that, changes wait for the status tick again.
    runtime.set_network_ready(false);
    sleep_until(t0 + Duration::from_millis(10_050)).await;
    assert_eq!(reporter.node_statuses().len(), 2);
    sleep_until(t0 + Duration::from_millis(10_150)).await;
    assert_eq!(ready(&reporter.last_node_status().unwrap()).status, "False");
    let _ = stop.send(());
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_runtime_not_ready_is_reported_with_its_reason() {
    let node = Running::start(NodeConfig::new("node-1"));
    node.runtime.set_runtime_status(RuntimeStatus {
        conditions: vec![
            RuntimeCondition::not_ready(RuntimeStatus::RUNTIME_READY, "Starting", "still starting"),
            RuntimeCondition::ready(RuntimeStatus::NETWORK_READY),
        ],
    });
    node.at(0.2).await;
    let registered = node.reporter.registered_node().unwrap().status.unwrap();
    assert_eq!(
        ready(&registered).message.as_deref(),
        Some(
            "container runtime not ready: RuntimeReady=false reason:Starting message:still starting"
        )
    );
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_failed_send_is_retried_at_the_next_tick() {
    let node = Running::start(NodeConfig::new("node-1"));
    let reporter = node.reporter.clone();
    node.at(5.0).await;
    reporter.set_unavailable(true);
    node.handle.set_pressure(NodePressure {
        memory: true,
        ..NodePressure::default()
    });
    node.at(10.2).await;
    assert_eq!(reporter.node_statuses().len(), 1);
    reporter.set_unavailable(false);
    node.at(20.2).await;
    let statuses = reporter.node_statuses();
    assert_eq!(statuses.len(), 2);
    let memory = condition(&statuses[1], "MemoryPressure");
    assert_eq!(memory.status, "True");
    assert_eq!(
        memory.reason.as_deref(),
        Some("KubeletHasInsufficientMemory")
    );
    // The transition is when the change was first computed against what the server holds:
    // the send at 10.1 s failed, so it is 20.1 s.
    let first = condition(&statuses[0], "MemoryPressure");
    assert_eq!(
        memory.last_transition_time.as_ref().unwrap().0.as_second()
            - first.last_transition_time.as_ref().unwrap().0.as_second(),
        20
    );
    assert_eq!(
        reporter
            .events_with_reason("NodeHasInsufficientMemory")
            .len(),
        1
    );
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn lease_is_renewed_every_ten_seconds_and_backs_off_on_errors() {
    let node = Running::start(NodeConfig::new("node-1"));
    let reporter = node.reporter.clone();
    // Renewals at 0.1, 10.1, 20.1 s.
    node.at(20.05).await;
    assert_eq!(reporter.lease_renewals(), 2);
    node.at(20.15).await;
    assert_eq!(reporter.lease_renewals(), 3);
    assert_eq!(
        node.handle.last_lease_renewal(),
        Some(node.t0 + Duration::from_millis(20_100))
    );

    // Down from 25 s: the renewal at 30.1 s fails, then retries follow at 0.2, 0.4, 0.8,
    // 1.6, 3.2, 6.4, 7, 7 s... : 30.3, 30.7, 31.5, 33.1, 36.3, 42.7, 49.7 s.
    node.at(25.0).await;
    reporter.set_unavailable(true);
    node.at(45.0).await;
    reporter.set_unavailable(false);
    node.at(49.6).await;
    assert_eq!(reporter.lease_renewals(), 3);
    node.at(49.8).await;
    assert_eq!(reporter.lease_renewals(), 4);
    assert_eq!(
        node.handle.last_lease_renewal(),
        Some(node.t0 + Duration::from_millis(49_700))
    );
    // Back to the normal interval.
    node.at(59.6).await;
    assert_eq!(reporter.lease_renewals(), 4);
    node.at(59.8).await;
    assert_eq!(reporter.lease_renewals(), 5);
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn without_registration_status_and_lease_still_flow() {
    let mut config = NodeConfig::new("node-1");
    config.register_node = false;
    let node = Running::start(config);
    node.at(0.05).await;
    assert_eq!(node.reporter.registrations(), 0);
    assert_eq!(node.reporter.node_statuses().len(), 1);
    assert_eq!(node.reporter.lease_renewals(), 1);
    // The first report records the pressure events (nothing was registered).
    assert_eq!(
        node.reporter
            .events_with_reason("NodeHasSufficientMemory")
            .len(),
        1
    );
    node.at(10.05).await;
    assert_eq!(node.reporter.lease_renewals(), 2);
    assert!(!node.handle.registered());
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn machine_facts_from_fixture_files_reach_the_status() {
    let dir = tempfile::tempdir().unwrap();
    let write = |path: &str, text: &str| {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write("proc/meminfo", "MemTotal:        2048000 kB\n");
    write("sys/devices/system/cpu/online", "0-3\n");
    write("etc/machine-id", "abc123\n");
    write("proc/sys/kernel/random/boot_id", "boot-1\n");
    write("proc/sys/kernel/osrelease", "6.6.0\n");
    write("etc/os-release", "PRETTY_NAME=\"Fixture OS 1\"\n");
    let machine = MachineReader::with_root(dir.path()).read(Path::new("/var/lib/kubelet"));
    let mut config = NodeConfig::new("node-1");
    config.node_ips = vec!["192.0.2.10".parse().unwrap()];
    let node = Running::start_with(config, machine, Arc::new(RecordingReporter::new()));
    node.at(0.2).await;
    let status = node.reporter.last_node_status().unwrap();
    let info = status.node_info.as_ref().unwrap();
    assert_eq!(info.machine_id, "abc123");
    assert_eq!(info.boot_id, "boot-1");
    assert_eq!(info.kernel_version, "6.6.0");
    assert_eq!(info.os_image, "Fixture OS 1");
    assert_eq!(info.system_uuid, "");
    let capacity = status.capacity.as_ref().unwrap();
    assert_eq!(capacity["cpu"].0, "4");
    // 2048000Ki, in the API's canonical form.
    assert_eq!(capacity["memory"].0, "2000Mi");
    // Less the 100Mi hard eviction threshold.
    assert_eq!(status.allocatable.as_ref().unwrap()["memory"].0, "1900Mi");
    let addresses = status.addresses.as_ref().unwrap();
    assert_eq!(addresses[0].type_, "InternalIP");
    assert_eq!(addresses[0].address, "192.0.2.10");
    assert_eq!(addresses[1].type_, "Hostname");
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn the_kubelet_runs_the_agent_and_stops_it_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = KubeletConfig::new("node-1");
    config.root_dir = dir.path().join("kubelet");
    let runtime = Arc::new(FakeRuntime::new());
    let reporter = Arc::new(RecordingReporter::new());
    let (source, _pods) = ChannelSource::new("api");
    let kubelet = Kubelet::builder(config)
        .runtime(runtime)
        .reporter(reporter.clone())
        .source(Box::new(source))
        .node_status(NodeConfig::new("node-1"), machine())
        .build()
        .unwrap();
    let handle = kubelet.handle();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(kubelet.run(async move {
        let _ = stopped.await;
    }));
    tokio::time::sleep(Duration::from_secs(15)).await;
    assert_eq!(reporter.registrations(), 1);
    assert_eq!(reporter.lease_renewals(), 2);
    assert!(handle.node_status().unwrap().last_status().is_some());
    let _ = stop.send(());
    task.await.unwrap().unwrap();
    let renewals = reporter.lease_renewals();
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(reporter.lease_renewals(), renewals, "the agent stopped");
}

#[tokio::test(start_paused = true)]
async fn without_the_option_the_kubelet_reports_no_node() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = KubeletConfig::new("node-1");
    config.root_dir = dir.path().join("kubelet");
    let reporter = Arc::new(RecordingReporter::new());
    let (source, _pods) = ChannelSource::new("api");
    let kubelet = Kubelet::builder(config)
        .runtime(Arc::new(FakeRuntime::new()))
        .reporter(reporter.clone())
        .source(Box::new(source))
        .build()
        .unwrap();
    assert!(kubelet.handle().node_status().is_none());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(kubelet.run(async move {
        let _ = stopped.await;
    }));
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(reporter.registrations(), 0);
    assert_eq!(reporter.lease_renewals(), 0);
    assert!(reporter.node_statuses().is_empty());
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}
