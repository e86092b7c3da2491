//! Rotation on temporary files with a runtime double whose reopen creates the log anew, as
//! a CRI runtime does, or fails.

use std::io::Read;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use async_trait::async_trait;

use super::*;
use crate::runtime::{
    AuthConfig, ContainerConfig, ContainerMetadata, ContainerStats, ContainerStatus, ExecResult,
    ImageInfo, PodSandboxConfig, PodSandboxStatus, RuntimeResult, RuntimeStatus, RuntimeVersion,
};

/// Containers with log files; `reopen_container_log` recreates the file, or fails.
#[derive(Default)]
struct LogRuntime {
    containers: Mutex<Vec<ContainerStatus>>,
    reopen_fails: AtomicBool,
    reopens: AtomicUsize,
}

impl LogRuntime {
    fn add(&self, id: &str, state: ContainerState, log: &Path) {
        self.containers.lock().unwrap().push(ContainerStatus {
            id: id.to_string(),
            metadata: ContainerMetadata {
                name: format!("c-{id}"),
                attempt: 0,
            },
            state,
            log_path: log.to_string_lossy().into_owned(),
            ..Default::default()
        });
    }
}

fn unsupported<T>() -> RuntimeResult<T> {
    Err(RuntimeError::Unsupported("not in this test double".into()))
}

#[async_trait]
impl Runtime for LogRuntime {
    async fn version(&self) -> RuntimeResult<RuntimeVersion> {
        unsupported()
    }
    async fn status(&self) -> RuntimeResult<RuntimeStatus> {
        unsupported()
    }
    async fn run_pod_sandbox(&self, _: &PodSandboxConfig) -> RuntimeResult<String> {
        unsupported()
    }
    async fn stop_pod_sandbox(&self, _: &str) -> RuntimeResult<()> {
        unsupported()
    }
    async fn remove_pod_sandbox(&self, _: &str) -> RuntimeResult<()> {
        unsupported()
    }
    async fn pod_sandbox_status(&self, _: &str) -> RuntimeResult<PodSandboxStatus> {
        unsupported()
    }
    async fn list_pod_sandboxes(&self, _: &ListFilter) -> RuntimeResult<Vec<PodSandboxStatus>> {
        unsupported()
    }
    async fn create_container(
        &self,
        _: &str,
        _: &ContainerConfig,
        _: &PodSandboxConfig,
    ) -> RuntimeResult<String> {
        unsupported()
    }
    async fn start_container(&self, _: &str) -> RuntimeResult<()> {
        unsupported()
    }
    async fn stop_container(&self, _: &str, _: Duration) -> RuntimeResult<()> {
        unsupported()
    }
    async fn remove_container(&self, _: &str) -> RuntimeResult<()> {
        unsupported()
    }
    async fn container_status(&self, id: &str) -> RuntimeResult<ContainerStatus> {
        self.containers
            .lock()
            .unwrap()
            .iter()
            .find(|c| c.id == id)
            .cloned()
            .ok_or_else(|| RuntimeError::NotFound(id.to_string()))
    }
    async fn list_containers(&self, _: &ListFilter) -> RuntimeResult<Vec<ContainerStatus>> {
        Ok(self.containers.lock().unwrap().clone())
    }
    async fn image_status(&self, _: &str) -> RuntimeResult<Option<ImageInfo>> {
        unsupported()
    }
    async fn pull_image(&self, _: &str, _: Option<&AuthConfig>) -> RuntimeResult<String> {
        unsupported()
    }
    async fn list_images(&self) -> RuntimeResult<Vec<ImageInfo>> {
        unsupported()
    }
    async fn remove_image(&self, _: &str) -> RuntimeResult<()> {
        unsupported()
    }
    async fn exec_sync(&self, _: &str, _: &[String], _: Duration) -> RuntimeResult<ExecResult> {
        unsupported()
    }
    async fn reopen_container_log(&self, id: &str) -> RuntimeResult<()> {
        self.reopens.fetch_add(1, Ordering::SeqCst);
        if self.reopen_fails.load(Ordering::SeqCst) {
            return Err(RuntimeError::Unsupported(format!("reopen {id}: refused")));
        }
        let status = self.container_status(id).await?;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&status.log_path)
            .map_err(|e| RuntimeError::Unsupported(e.to_string()))?;
        Ok(())
    }
    async fn container_stats(&self, _: &str) -> RuntimeResult<Option<ContainerStats>> {
        unsupported()
    }
    async fn list_container_stats(&self) -> RuntimeResult<Vec<ContainerStats>> {
        unsupported()
    }
}

/// A clock at 2024-05-06 07:08:09 UTC plus `seconds`.
fn at(seconds: i64) -> jiff::Zoned {
    let base: jiff::Timestamp = "2024-05-06T07:08:09Z".parse().unwrap();
    (base + jiff::SignedDuration::from_secs(seconds)).to_zoned(jiff::tz::TimeZone::UTC)
}

/// A manager over `runtime` whose clock advances one second per rotation.
fn manager(runtime: Arc<LogRuntime>, max_size: i64, max_files: u32) -> ContainerLogManager {
    let tick = Arc::new(AtomicUsize::new(0));
    ContainerLogManager::new(runtime, max_size, max_files)
        .unwrap()
        .with_clock(move || at(tick.fetch_add(1, Ordering::SeqCst) as i64))
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn gunzip(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_end(&mut out)
        .unwrap();
    out
}

#[test]
fn max_files_below_two_is_refused() {
    let runtime = Arc::new(LogRuntime::default());
    let err = ContainerLogManager::new(runtime, 10, 1).unwrap_err();
    assert!(matches!(err, RotationError::InvalidMaxFiles(1)), "{err}");
}

#[tokio::test]
async fn a_log_at_the_max_size_is_rotated_and_reopened() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("0.log");
    std::fs::write(&log, b"0123456789").unwrap();
    let runtime = Arc::new(LogRuntime::default());
    runtime.add("a", ContainerState::Running, &log);
    let m = manager(runtime.clone(), 10, 5);

    m.rotate_once().await.unwrap();

    assert_eq!(names(dir.path()), ["0.log", "0.log.20240506-070809"]);
    assert_eq!(
        std::fs::read(&log).unwrap(),
        b"",
        "the reopened log starts empty"
    );
    assert_eq!(
        std::fs::read(dir.path().join("0.log.20240506-070809")).unwrap(),
        b"0123456789"
    );
    assert_eq!(runtime.reopens.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_log_below_the_max_size_or_of_a_stopped_container_stays() {
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small.log");
    std::fs::write(&small, b"012345678").unwrap();
    let exited = dir.path().join("exited.log");
    std::fs::write(&exited, b"0123456789abcdef").unwrap();
    let runtime = Arc::new(LogRuntime::default());
    runtime.add("small", ContainerState::Running, &small);
    runtime.add("exited", ContainerState::Exited, &exited);
    let m = manager(runtime.clone(), 10, 5);

    m.rotate_once().await.unwrap();

    assert_eq!(names(dir.path()), ["exited.log", "small.log"]);
    assert_eq!(runtime.reopens.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_negative_max_size_turns_rotation_off() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("0.log");
    std::fs::write(&log, b"0123456789").unwrap();
    let runtime = Arc::new(LogRuntime::default());
    runtime.add("a", ContainerState::Running, &log);
    let m = manager(runtime, -1, 5);
    assert!(!m.enabled());
    m.rotate_once().await.unwrap();
    assert_eq!(names(dir.path()), ["0.log"]);
}

#[tokio::test]
async fn older_rotated_logs_are_gzipped_but_not_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("0.log");
    let runtime = Arc::new(LogRuntime::default());
    runtime.add("a", ContainerState::Running, &log);
    let m = manager(runtime, 4, 5);

    for content in ["first", "second", "third"] {
        std::fs::write(&log, content).unwrap();
        m.rotate_once().await.unwrap();
    }

    assert_eq!(
        names(dir.path()),
        [
            "0.log",
            "0.log.20240506-070809.gz",
            "0.log.20240506-070810.gz",
            "0.log.20240506-070811",
        ]
    );
    assert_eq!(
        gunzip(&dir.path().join("0.log.20240506-070809.gz")),
        b"first"
    );
    assert_eq!(
        gunzip(&dir.path().join("0.log.20240506-070810.gz")),
        b"second"
    );
    assert_eq!(
        std::fs::read(dir.path().join("0.log.20240506-070811")).unwrap(),
        b"third"
    );
}

#[tokio::test]
async fn at_most_max_files_remain_the_oldest_removed() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("0.log");
    let runtime = Arc::new(LogRuntime::default());
    runtime.add("a", ContainerState::Running, &log);
    let m = manager(runtime, 1, 3);

    for n in 0..5 {
        std::fs::write(&log, format!("run {n}")).unwrap();
        m.rotate_once().await.unwrap();
    }

    // The current file, one compressed and the newest rotated: three.
    assert_eq!(
        names(dir.path()),
        ["0.log", "0.log.20240506-070812.gz", "0.log.20240506-070813"]
    );
    assert_eq!(
        gunzip(&dir.path().join("0.log.20240506-070812.gz")),
        b"run 3"
    );
}

#[tokio::test]
async fn a_failed_reopen_renames_the_log_back() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("0.log");
    std::fs::write(&log, b"0123456789").unwrap();
    let runtime = Arc::new(LogRuntime::default());
    runtime.add("a", ContainerState::Running, &log);
    runtime.reopen_fails.store(true, Ordering::SeqCst);
    let m = manager(runtime.clone(), 10, 5);

    let err = m.rotate_container("a").await.unwrap_err();
    assert!(matches!(err, RotationError::Runtime(_)), "{err}");
    assert_eq!(names(dir.path()), ["0.log"]);
    assert_eq!(std::fs::read(&log).unwrap(), b"0123456789");

    // The next period tries again, and succeeds once the runtime does.
    runtime.reopen_fails.store(false, Ordering::SeqCst);
    assert!(m.rotate_container("a").await.unwrap());
    assert_eq!(names(dir.path()), ["0.log", "0.log.20240506-070810"]);
}

#[tokio::test]
async fn leftovers_of_an_interrupted_compression_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("0.log");
    std::fs::write(&log, b"current!!").unwrap();
    let p = |name: &str| dir.path().join(name);
    // Killed after writing the .gz but before removing the plain file, and in the middle of
    // another compression.
    std::fs::write(p("0.log.20200101-000000"), b"a").unwrap();
    std::fs::write(p("0.log.20200101-000000.gz"), b"not checked").unwrap();
    std::fs::write(p("0.log.20200101-000001"), b"b").unwrap();
    std::fs::write(p("0.log.20200101-000001.tmp"), b"half").unwrap();
    // Another container's file beside it is none of this one's business.
    std::fs::write(p("1.log.20200101-000000.tmp"), b"other").unwrap();
    let runtime = Arc::new(LogRuntime::default());
    runtime.add("a", ContainerState::Running, &log);
    let m = manager(runtime, 5, 5);

    m.rotate_once().await.unwrap();

    assert_eq!(
        names(dir.path()),
        [
            "0.log",
            "0.log.20200101-000000.gz",
            "0.log.20200101-000001.gz",
            "0.log.20240506-070809",
            "1.log.20200101-000000.tmp",
        ]
    );
    assert_eq!(gunzip(&p("0.log.20200101-000001.gz")), b"b");
}

#[tokio::test]
async fn a_missing_log_is_reopened_first() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("0.log");
    let runtime = Arc::new(LogRuntime::default());
    runtime.add("a", ContainerState::Running, &log);
    let m = manager(runtime.clone(), 10, 5);

    assert!(!m.rotate_container("a").await.unwrap());
    assert_eq!(runtime.reopens.load(Ordering::SeqCst), 1);
    assert_eq!(names(dir.path()), ["0.log"]);
}

#[tokio::test]
async fn clean_removes_current_and_rotated_logs() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("0.log");
    let p = |name: &str| dir.path().join(name);
    std::fs::write(&log, b"x").unwrap();
    std::fs::write(p("0.log.20200101-000000.gz"), b"x").unwrap();
    std::fs::write(p("0.log.20200101-000001"), b"x").unwrap();
    std::fs::write(p("1.log"), b"x").unwrap();
    let runtime = Arc::new(LogRuntime::default());
    runtime.add("a", ContainerState::Exited, &log);
    let m = manager(runtime, 10, 5);

    m.clean("a").await.unwrap();
    assert_eq!(names(dir.path()), ["1.log"]);
}

#[tokio::test(start_paused = true)]
async fn run_rotates_every_period_until_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("0.log");
    std::fs::write(&log, b"0123456789").unwrap();
    let runtime = Arc::new(LogRuntime::default());
    runtime.add("a", ContainerState::Running, &log);
    let m = Arc::new(manager(runtime.clone(), 10, 5));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(m.run(async {
        let _ = stopped.await;
    }));

    // The first tick is at once.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(runtime.reopens.load(Ordering::SeqCst), 1);
    std::fs::write(&log, b"0123456789").unwrap();
    tokio::time::sleep(MONITOR_PERIOD).await;
    assert_eq!(runtime.reopens.load(Ordering::SeqCst), 2);

    stop.send(()).unwrap();
    task.await.unwrap();
}
