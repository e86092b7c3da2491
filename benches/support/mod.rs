//! What the benches against a real containerd share: the busybox pod they run, its CRI
//! configs, and latency samples.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kubelet_core::labels;
use kubelet_core::runtime::{
    ContainerConfig, ContainerMetadata, LinuxSecurityContext, PodSandboxConfig, SandboxMetadata,
};
use kubelet_cri::testing::{BUSYBOX_IMAGE, TestContainerd};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A PID-1 `sleep` ignores SIGTERM (the stop would wait its whole timeout): trap it.
pub const SCRIPT: &str = "trap 'exit 0' TERM; sleep 3600 & wait";

/// Latency samples of one kind.
#[derive(Default)]
pub struct Samples(pub Vec<Duration>);

impl Samples {
    pub fn push(&mut self, d: Duration) {
        self.0.push(d);
    }

    /// Nearest-rank percentile; zero without samples.
    pub fn percentile(&self, p: f64) -> Duration {
        let mut sorted = self.0.clone();
        sorted.sort();
        if sorted.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
        sorted[rank.clamp(1, sorted.len()) - 1]
    }

    pub fn mean(&self) -> Duration {
        if self.0.is_empty() {
            return Duration::ZERO;
        }
        self.0.iter().sum::<Duration>() / self.0.len() as u32
    }
}

/// Named samples, printed in insertion order.
#[derive(Default)]
pub struct Table {
    rows: Vec<(String, Samples)>,
}

impl Table {
    pub fn record(&mut self, name: &str, d: Duration) {
        match self.rows.iter_mut().find(|(n, _)| n == name) {
            Some((_, s)) => s.push(d),
            None => {
                let mut s = Samples::default();
                s.push(d);
                self.rows.push((name.to_string(), s));
            }
        }
    }

    pub fn get(&self, name: &str) -> Option<&Samples> {
        self.rows.iter().find(|(n, _)| n == name).map(|(_, s)| s)
    }

    pub fn print(&self, title: &str) {
        println!();
        println!("{title}");
        println!();
        println!("| step | n | p50 (ms) | p99 (ms) | mean (ms) | max (ms) |");
        println!("|---|---:|---:|---:|---:|---:|");
        for (name, s) in &self.rows {
            println!(
                "| {name} | {} | {} | {} | {} | {} |",
                s.0.len(),
                ms(s.percentile(50.0)),
                ms(s.percentile(99.0)),
                ms(s.mean()),
                ms(s.percentile(100.0)),
            );
        }
    }
}

/// Milliseconds with one decimal, for the tables.
pub fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

/// Wall-clock time as the runtime reports it (nanoseconds since the epoch).
pub fn since_epoch_ns(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// The time from one runtime timestamp to a later one (zero if it is not later).
pub fn ns_between(from: i64, to: i64) -> Duration {
    Duration::from_nanos(u64::try_from(to - from).unwrap_or(0))
}

/// The sandbox of a one-container pod in `default`, labelled as the kubelet labels its own.
pub fn sandbox_config(
    env: &TestContainerd,
    name: &str,
    uid: &str,
) -> Result<PodSandboxConfig, BoxError> {
    let log_directory = env.log_dir().join(format!("default_{name}_{uid}"));
    // As the kubelet does before RunPodSandbox.
    std::fs::create_dir_all(&log_directory)
        .map_err(|e| format!("{}: {e}", log_directory.display()))?;
    let mut labels = labels::pod_labels("default", name, uid);
    labels.insert(labels::KUBELET_TYPE.into(), "podsandbox".into());
    Ok(PodSandboxConfig {
        metadata: SandboxMetadata {
            name: name.into(),
            uid: uid.into(),
            namespace: "default".into(),
            attempt: 0,
        },
        hostname: name.into(),
        log_directory: log_directory.display().to_string(),
        labels,
        cgroup_parent: format!("/kubepods/besteffort/pod{uid}"),
        ..PodSandboxConfig::default()
    })
}

/// The busybox container `app` running [`SCRIPT`] in `sandbox`.
pub fn container_config(sandbox: &PodSandboxConfig) -> ContainerConfig {
    let m = &sandbox.metadata;
    let mut labels = labels::pod_labels(&m.namespace, &m.name, &m.uid);
    labels.insert(labels::CONTAINER_NAME.into(), "app".into());
    ContainerConfig {
        metadata: ContainerMetadata {
            name: "app".into(),
            attempt: 0,
        },
        image: BUSYBOX_IMAGE.into(),
        command: vec!["sh".into(), "-c".into(), SCRIPT.into()],
        labels,
        annotations: BTreeMap::from([(labels::CONTAINER_RESTART_COUNT.into(), "0".into())]),
        log_path: "app/0.log".into(),
        security: LinuxSecurityContext {
            namespace_network: sandbox.network,
            ..LinuxSecurityContext::default()
        },
        ..ContainerConfig::default()
    }
}
