//! A real containerd for tests of any crate (feature `testing`).
//!
//! [`TestContainerd::start`] runs `containerd` as a child process with a root, state,
//! socket and CNI configuration of its own (the configuration is the project's one,
//! `scripts/containerd-config.toml.in` and `scripts/cni-conflist.json.in`), imports the local
//! busybox and pause images built by `scripts/build-images.sh`, and hands back a guard whose
//! `Drop` removes every sandbox through CRI, kills containerd and removes what it made: temp
//! dirs, the bridge, the CNI iptables chains and the empty pod cgroups.
//!
//! Only one test containerd runs on a host at a time (a lock file serialises them, across
//! test threads and test processes), because the bridge, the iptables chains and the
//! `/kubepods` cgroups are host-wide.
//!
//! Tests skip (print why and return) when not root or when containerd, runc or the other
//! tools are missing, unless `KUBELET_TEST_REQUIRE_CONTAINERD=1` is set: then a missing
//! prerequisite fails the test (CI sets it).
//!
//! ```no_run
//! # async fn t() {
//! use kubelet_core::Runtime;
//! let Some(containerd) = kubelet_cri::testing::TestContainerd::start().await else {
//!     return; // skipped, the reason was printed
//! };
//! let runtime = containerd.runtime().await;
//! assert!(runtime.image_status(kubelet_cri::testing::BUSYBOX_IMAGE).await.unwrap().is_some());
//! # }
//! ```

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use kubelet_core::Runtime;
use kubelet_core::runtime::ListFilter;
use thiserror::Error;

use crate::{CriOptions, CriRuntime};

/// The busybox image imported into every test containerd.
pub const BUSYBOX_IMAGE: &str = "docker.io/library/busybox:local";
/// The busybox image whose configuration sets a numeric non-root user (`1000:1000`): the
/// runtime reports it as the image's uid.
pub const BUSYBOX_NONROOT_IMAGE: &str = "docker.io/library/busybox:nonroot";
/// The busybox image whose configuration names its user (`nobody`, in its `/etc/passwd`):
/// the runtime reports it as the image's username.
pub const BUSYBOX_NAMED_USER_IMAGE: &str = "docker.io/library/busybox:nobody";
/// The pause image sandboxes use.
pub const PAUSE_IMAGE: &str = "localhost/pause:local";
/// A runtime handler the test containerd has besides the default `runc` (runc as well),
/// for pods whose RuntimeClass names another handler.
pub const TEST_RUNTIME_HANDLER: &str = "test-handler";
/// The image tarballs `scripts/build-images.sh` writes, all imported into every test
/// containerd.
const IMAGE_TARBALLS: [&str; 4] = [
    "pause.tar",
    "busybox.tar",
    "busybox-nonroot.tar",
    "busybox-nobody.tar",
];
/// The bridge the test network uses. Not `cni0`, so that a standalone containerd
/// (`scripts/containerd.sh`, which uses `cni0`) can run beside the tests.
pub const BRIDGE: &str = "kcri0";
/// The pod subnet of the test network.
pub const POD_SUBNET: &str = "10.89.0.0/16";
/// The CNI network name.
pub const NETWORK_NAME: &str = "kubelet-cri-test";
/// The environment variable that turns missing prerequisites into failures.
pub const REQUIRE_ENV: &str = "KUBELET_TEST_REQUIRE_CONTAINERD";

const CONFIG_TEMPLATE: &str = include_str!("../../scripts/containerd-config.toml.in");
const CNI_TEMPLATE: &str = include_str!("../../scripts/cni-conflist.json.in");
const BUILD_IMAGES_SCRIPT: &str = include_str!("../../scripts/build-images.sh");
const CNI_BIN_DIR: &str = "/usr/lib/cni";
const NETNS_DIR: &str = "/var/run/netns";
const CGROUP_ROOT: &str = "/sys/fs/cgroup";
const LOCK_PATH: &str = "/tmp/kubelet-cri-testing.lock";

/// How long to wait for another test's containerd to go away.
const LOCK_DEADLINE: Duration = Duration::from_secs(600);
/// How long containerd may take to answer CRI after its start.
const START_DEADLINE: Duration = Duration::from_secs(60);

/// A failure to set up the test containerd.
#[derive(Debug, Error)]
pub enum TestEnvError {
    /// A file or directory operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The path the operation was on.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A command failed.
    #[error("{command}: {message}")]
    Command {
        /// The command line.
        command: String,
        /// Exit status and output.
        message: String,
    },
    /// containerd did not come up.
    #[error("containerd did not answer CRI within {timeout:?}: {message}; log {log}")]
    NotReady {
        /// How long we waited.
        timeout: Duration,
        /// The last error.
        message: String,
        /// containerd's log file.
        log: PathBuf,
    },
    /// Another test's containerd held the host lock for too long.
    #[error("{path}: still locked after {timeout:?}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// How long we waited.
        timeout: Duration,
    },
}

pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> TestEnvError {
    let path = path.into();
    move |source| TestEnvError::Io { path, source }
}

/// What existed on the host before the test containerd started, and so is not ours to
/// remove afterwards.
#[derive(Debug, Default)]
struct HostSnapshot {
    bridge: bool,
    chains: BTreeSet<(String, String)>,
    cgroup_dirs: BTreeSet<PathBuf>,
    netns: BTreeSet<String>,
}

impl HostSnapshot {
    fn take() -> Self {
        Self {
            bridge: link_exists(BRIDGE),
            chains: cni_chains(),
            cgroup_dirs: kubepods_dirs(),
            netns: netns_names(),
        }
    }
}

/// A running containerd of the test's own. Dropping it tears everything down.
pub struct TestContainerd {
    child: Option<Child>,
    dir: Option<tempfile::TempDir>,
    socket: PathBuf,
    endpoint: String,
    log_dir: PathBuf,
    containerd_log: PathBuf,
    before: HostSnapshot,
    // Held until drop; released last, after the cleanup.
    _lock: File,
}

impl std::fmt::Debug for TestContainerd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestContainerd")
            .field("endpoint", &self.endpoint)
            .field("pid", &self.child.as_ref().map(Child::id))
            .finish()
    }
}

/// Why the environment cannot run containerd, if it cannot.
pub fn missing_prerequisites() -> Option<String> {
    if !is_root() {
        return Some("not running as root".to_string());
    }
    let missing: Vec<&str> = [
        "containerd",
        "runc",
        "ctr",
        "ip",
        "iptables",
        "tar",
        "sha256sum",
    ]
    .into_iter()
    .filter(|bin| find_in_path(bin).is_none())
    .collect();
    if !missing.is_empty() {
        return Some(format!(
            "missing {} (scripts/install-deps.sh)",
            missing.join(", ")
        ));
    }
    for file in [
        "/usr/lib/cni/bridge",
        "/usr/lib/cni/host-local",
        "/usr/lib/cni/portmap",
        "/usr/lib/cni/firewall",
        "/bin/busybox",
        "/usr/bin/catatonit",
    ] {
        if !Path::new(file).exists() {
            return Some(format!("missing {file} (scripts/install-deps.sh)"));
        }
    }
    None
}

fn is_root() -> bool {
    // The effective UID is the second field of the Uid line.
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|rest| rest.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

fn find_in_path(bin: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(bin))
        .find(|p| p.is_file())
}

impl TestContainerd {
    /// Start a test containerd, or return `None` after printing why the test is skipped.
    ///
    /// # Panics
    ///
    /// When setup fails although the prerequisites are there, and when they are missing
    /// and `KUBELET_TEST_REQUIRE_CONTAINERD=1`: this is a test fixture, and a panic is
    /// how a test fails.
    pub async fn start() -> Option<TestContainerd> {
        match Self::try_start().await {
            Ok(found) => found,
            Err(e) => panic!("test containerd: {e}"),
        }
    }

    /// Like [`TestContainerd::start`], returning setup failures instead of panicking.
    /// Missing prerequisites still panic when `KUBELET_TEST_REQUIRE_CONTAINERD=1`.
    pub async fn try_start() -> Result<Option<TestContainerd>, TestEnvError> {
        if let Some(why) = missing_prerequisites() {
            if std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1") {
                panic!("{REQUIRE_ENV}=1 but a real containerd cannot run here: {why}");
            }
            eprintln!("SKIPPED: test needs a real containerd: {why}");
            return Ok(None);
        }
        let lock = tokio::task::spawn_blocking(acquire_host_lock)
            .await
            .map_err(|e| TestEnvError::Command {
                command: "acquire host lock".into(),
                message: e.to_string(),
            })??;
        let images =
            tokio::task::spawn_blocking(image_dir)
                .await
                .map_err(|e| TestEnvError::Command {
                    command: "build images".into(),
                    message: e.to_string(),
                })??;
        let before = HostSnapshot::take();
        let dir = tempfile::Builder::new()
            .prefix("kcri-")
            .tempdir()
            .map_err(io_err(std::env::temp_dir()))?;
        let base = dir.path().to_path_buf();
        let socket = base.join("containerd.sock");
        let log_dir = base.join("pod-logs");
        let containerd_log = base.join("containerd.log");
        for d in [
            base.join("root"),
            base.join("state"),
            base.join("cni/net.d"),
            base.join("cni/ipam"),
            log_dir.clone(),
        ] {
            fs::create_dir_all(&d).map_err(io_err(&d))?;
        }
        write_config(&base, &socket)?;

        let log_file = File::create(&containerd_log).map_err(io_err(&containerd_log))?;
        let log_err = log_file.try_clone().map_err(io_err(&containerd_log))?;
        let child = Command::new("containerd")
            .arg("--config")
            .arg(base.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_err)
            .spawn()
            .map_err(|e| TestEnvError::Command {
                command: "containerd".into(),
                message: e.to_string(),
            })?;
        tracing::info!(pid = child.id(), socket = %socket.display(), "started test containerd");

        let mut this = TestContainerd {
            child: Some(child),
            dir: Some(dir),
            endpoint: format!("unix://{}", socket.display()),
            socket,
            log_dir,
            containerd_log,
            before,
            _lock: lock,
        };
        // From here on, a failure drops `this`, which cleans up.
        this.wait_ready().await?;
        let socket = this.socket.clone();
        tokio::task::spawn_blocking(move || import_images(&socket, &images))
            .await
            .map_err(|e| TestEnvError::Command {
                command: "import images".into(),
                message: e.to_string(),
            })??;
        Ok(Some(this))
    }

    async fn wait_ready(&mut self) -> Result<(), TestEnvError> {
        let started = Instant::now();
        let mut last = String::from("socket not created yet");
        while started.elapsed() < START_DEADLINE {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(TestEnvError::NotReady {
                    timeout: START_DEADLINE,
                    message: format!("containerd exited: {status}"),
                    log: self.containerd_log.clone(),
                });
            }
            if self.socket.exists() {
                let options = CriOptions {
                    request_timeout: Duration::from_secs(5),
                    ..Default::default()
                };
                match CriRuntime::connect(&self.endpoint, options).await {
                    Ok(_) => return Ok(()),
                    Err(e) => last = e.to_string(),
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(TestEnvError::NotReady {
            timeout: START_DEADLINE,
            message: last,
            log: self.containerd_log.clone(),
        })
    }

    /// The CRI endpoint, `unix:///tmp/kcri-.../containerd.sock`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The socket path.
    pub fn socket_path(&self) -> &Path {
        &self.socket
    }

    /// A directory for pod logs (`PodSandboxConfig::log_directory` under it), removed on
    /// drop.
    pub fn log_dir(&self) -> &Path {
        &self.log_dir
    }

    /// containerd's own log, for failure messages.
    pub fn containerd_log(&self) -> &Path {
        &self.containerd_log
    }

    /// The runtime handler a sandbox was created with, as containerd reports it in CRI
    /// `PodSandboxStatus` (the status field, else the verbose info's `runtimeHandler`): what
    /// [`kubelet_core::Runtime`] does not carry.
    pub async fn sandbox_runtime_handler(&self, sandbox_id: &str) -> Result<String, TestEnvError> {
        use k8s_cri::v1 as cri;
        let failed = |message: String| TestEnvError::Command {
            command: format!("PodSandboxStatus {sandbox_id}"),
            message,
        };
        let socket = self.socket.clone();
        let channel = tonic::transport::Endpoint::from_static("http://cri.local")
            .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
                let socket = socket.clone();
                async move {
                    Ok::<_, io::Error>(hyper_util::rt::TokioIo::new(
                        tokio::net::UnixStream::connect(socket).await?,
                    ))
                }
            }))
            .await
            .map_err(|e| failed(e.to_string()))?;
        let mut client = cri::runtime_service_client::RuntimeServiceClient::new(channel);
        let resp = client
            .pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: sandbox_id.to_string(),
                verbose: true,
            })
            .await
            .map_err(|e| failed(e.to_string()))?
            .into_inner();
        let status = resp
            .status
            .ok_or_else(|| failed("no status in the answer".into()))?;
        if !status.runtime_handler.is_empty() {
            return Ok(status.runtime_handler);
        }
        let info: serde_json::Value = resp
            .info
            .get("info")
            .and_then(|i| serde_json::from_str(i).ok())
            .unwrap_or_default();
        Ok(info["runtimeHandler"]
            .as_str()
            .unwrap_or_default()
            .to_string())
    }

    /// A [`CriRuntime`] connected to this containerd, with a short request timeout.
    ///
    /// # Panics
    ///
    /// When the connection fails (the test fails).
    pub async fn runtime(&self) -> CriRuntime {
        let options = CriOptions {
            request_timeout: Duration::from_secs(30),
            image_pull_timeout: Duration::from_secs(60),
            ..Default::default()
        };
        match CriRuntime::connect(&self.endpoint, options).await {
            Ok(rt) => rt,
            Err(e) => panic!("connecting to the test containerd: {e}"),
        }
    }

    fn teardown(&mut self) {
        let Some(dir) = self.dir.take() else {
            return;
        };
        if let Some(child) = self.child.as_mut()
            && matches!(child.try_wait(), Ok(None))
        {
            remove_all_sandboxes(&self.endpoint);
        }
        if let Some(mut child) = self.child.take() {
            // By PID: this is our child process.
            let _ = child.kill();
            let _ = child.wait();
        }
        let base = dir.path().to_path_buf();
        kill_leftover_shims(&self.socket, &base);
        unmount_under(&base);
        for ns in netns_names().difference(&self.before.netns) {
            if ns.starts_with("cni-") {
                let path = Path::new(NETNS_DIR).join(ns);
                let _ = run_quiet("umount", &[path.as_os_str()]);
                let _ = fs::remove_file(&path);
            }
        }
        if !self.before.bridge && link_exists(BRIDGE) {
            let _ = run_quiet("ip", &["link".as_ref(), "delete".as_ref(), BRIDGE.as_ref()]);
        }
        remove_new_chains(&self.before.chains);
        remove_new_cgroup_dirs(&self.before.cgroup_dirs);
        if let Err(e) = dir.close() {
            tracing::warn!(dir = %base.display(), error = %e, "removing test containerd dir");
        }
    }
}

impl Drop for TestContainerd {
    fn drop(&mut self) {
        self.teardown();
    }
}

fn acquire_host_lock() -> Result<File, TestEnvError> {
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(LOCK_PATH)
        .map_err(io_err(LOCK_PATH))?;
    let started = Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(fs::TryLockError::WouldBlock) => {
                if started.elapsed() > LOCK_DEADLINE {
                    return Err(TestEnvError::Lock {
                        path: LOCK_PATH.into(),
                        timeout: LOCK_DEADLINE,
                    });
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(fs::TryLockError::Error(e)) => return Err(io_err(LOCK_PATH)(e)),
        }
    }
}

/// The directory holding the image tarballs ([`IMAGE_TARBALLS`]), built once per script
/// version and reused by later test processes.
pub(crate) fn image_dir() -> Result<PathBuf, TestEnvError> {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    if let Some(dir) = BUILT.get() {
        return Ok(dir.clone());
    }
    let dir = std::env::var_os("KUBELET_TEST_IMAGE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/kubelet-test-images"));
    fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let script = dir.join("build-images.sh");
    let fresh = fs::read_to_string(&script).is_ok_and(|s| s == BUILD_IMAGES_SCRIPT)
        && IMAGE_TARBALLS.iter().all(|name| dir.join(name).is_file());
    if !fresh {
        fs::write(&script, BUILD_IMAGES_SCRIPT).map_err(io_err(&script))?;
        run("sh", &[script.as_os_str(), dir.as_os_str()])?;
    }
    let _ = BUILT.set(dir.clone());
    Ok(dir)
}

fn import_images(socket: &Path, images: &Path) -> Result<(), TestEnvError> {
    for name in IMAGE_TARBALLS {
        let tar = images.join(name);
        run(
            "ctr",
            &[
                "-a".as_ref(),
                socket.as_os_str(),
                "-n".as_ref(),
                "k8s.io".as_ref(),
                "images".as_ref(),
                "import".as_ref(),
                tar.as_os_str(),
            ],
        )?;
    }
    Ok(())
}

fn write_config(base: &Path, socket: &Path) -> Result<(), TestEnvError> {
    let path_str = |p: &Path| p.display().to_string();
    let conflist = CNI_TEMPLATE
        .replace("@NETWORK@", NETWORK_NAME)
        .replace("@BRIDGE@", BRIDGE)
        .replace("@SUBNET@", POD_SUBNET)
        .replace("@IPAM_DATA_DIR@", &path_str(&base.join("cni/ipam")));
    // Written before containerd starts: editing a watched conflist in place makes
    // containerd's CNI reload fail.
    let conf = base.join("cni/net.d/10-kubelet.conflist");
    fs::write(&conf, conflist).map_err(io_err(&conf))?;
    let config = CONFIG_TEMPLATE
        .replace("@ROOT@", &path_str(&base.join("root")))
        .replace("@STATE@", &path_str(&base.join("state")))
        .replace("@ADDRESS@", &path_str(socket))
        .replace("@CNI_BIN_DIR@", CNI_BIN_DIR)
        .replace("@CNI_CONF_DIR@", &path_str(&base.join("cni/net.d")));
    let file = base.join("config.toml");
    fs::write(&file, config).map_err(io_err(&file))
}

pub(crate) fn run(program: &str, args: &[&std::ffi::OsStr]) -> Result<String, TestEnvError> {
    let command = || {
        std::iter::once(program.to_string())
            .chain(args.iter().map(|a| a.to_string_lossy().into_owned()))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| TestEnvError::Command {
            command: command(),
            message: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(TestEnvError::Command {
            command: command(),
            message: format!(
                "{}: {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn run_quiet(program: &str, args: &[&std::ffi::OsStr]) -> Result<String, TestEnvError> {
    let result = run(program, args);
    if let Err(e) = &result {
        tracing::debug!(error = %e, "cleanup command failed");
    }
    result
}

/// Stop and remove every sandbox through CRI, so that containerd tears down the pods'
/// networks (CNI DEL) and mounts itself. Best effort, bounded.
fn remove_all_sandboxes(endpoint: &str) {
    let endpoint = endpoint.to_string();
    // Drop may run inside a tokio runtime, which cannot block on another one: use a thread.
    let worker = std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async {
            let cleanup = async {
                let options = CriOptions {
                    request_timeout: Duration::from_secs(20),
                    ..Default::default()
                };
                let runtime = CriRuntime::connect(&endpoint, options).await.ok()?;
                let sandboxes = runtime.list_pod_sandboxes(&ListFilter::all()).await.ok()?;
                for sb in sandboxes {
                    if let Err(e) = runtime.stop_pod_sandbox(&sb.id).await {
                        tracing::warn!(sandbox = %sb.id, error = %e, "test cleanup: stop");
                    }
                    if let Err(e) = runtime.remove_pod_sandbox(&sb.id).await {
                        tracing::warn!(sandbox = %sb.id, error = %e, "test cleanup: remove");
                    }
                }
                Some(())
            };
            let _ = tokio::time::timeout(Duration::from_secs(120), cleanup).await;
        });
    });
    let _ = worker.join();
}

/// Kill shims of this containerd that survived it (they outlive containerd by design).
fn kill_leftover_shims(socket: &Path, base: &Path) {
    let socket = socket.display().to_string();
    let base = base.display().to_string();
    let Ok(entries) = fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let is_shim = args.first().is_some_and(|a| a.contains("containerd-shim"));
        let ours = args.iter().any(|a| a == &socket || a.starts_with(&base));
        if is_shim && ours {
            tracing::warn!(pid, "killing leftover containerd shim");
            let _ = run_quiet("kill", &["-9".as_ref(), pid.as_ref()]);
        }
    }
}

/// Unmount whatever is still mounted under `base` (rootfs overlays, sandbox shm), deepest
/// first.
fn unmount_under(base: &Path) {
    let Ok(mounts) = fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let prefix = base.display().to_string();
    let mut points: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| p.starts_with(&prefix))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = run_quiet("umount", &["-l".as_ref(), p.as_ref()]);
    }
}

fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

fn netns_names() -> BTreeSet<String> {
    fs::read_dir(NETNS_DIR)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// `(table, chain)` of every `CNI-*` chain in the filter and nat tables.
fn cni_chains() -> BTreeSet<(String, String)> {
    let mut chains = BTreeSet::new();
    for table in ["filter", "nat"] {
        let Ok(rules) = run(
            "iptables",
            &["-w".as_ref(), "-t".as_ref(), table.as_ref(), "-S".as_ref()],
        ) else {
            continue;
        };
        for line in rules.lines() {
            if let Some(chain) = line.strip_prefix("-N ")
                && chain.starts_with("CNI-")
            {
                chains.insert((table.to_string(), chain.to_string()));
            }
        }
    }
    chains
}

/// Split one line of `iptables -S` into arguments: words, with double-quoted strings
/// (backslash escapes inside) kept whole.
fn split_rule(line: &str) -> Vec<String> {
    let mut args = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quoted = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            '\\' if quoted => {
                if let Some(next) = chars.next() {
                    cur.push(next);
                }
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    args.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        args.push(cur);
    }
    args
}

fn iptables(table: &str, args: &[String]) -> Result<String, TestEnvError> {
    let mut full: Vec<&std::ffi::OsStr> = vec!["-w".as_ref(), "-t".as_ref(), table.as_ref()];
    full.extend(args.iter().map(|a| std::ffi::OsStr::new(a.as_str())));
    run("iptables", &full)
}

fn rule_lines(table: &str) -> Vec<Vec<String>> {
    iptables(table, &["-S".to_string()])
        .map(|out| {
            out.lines()
                .filter(|l| l.starts_with("-A "))
                .map(split_rule)
                .collect()
        })
        .unwrap_or_default()
}

fn delete_rule(table: &str, mut rule: Vec<String>) {
    rule[0] = "-D".to_string();
    if let Err(e) = iptables(table, &rule) {
        tracing::debug!(error = %e, "test cleanup: deleting iptables rule");
    }
}

/// Whether a rule belongs to the test network: CNI tags per-attachment rules with the
/// network name, and the bridge's masquerade rules name the pod subnet.
fn rule_is_ours(rule: &[String]) -> bool {
    let subnet_prefix = POD_SUBNET.split(".0.0/").next().unwrap_or(POD_SUBNET);
    rule.iter().any(|a| {
        a.contains(&format!("name: \"{NETWORK_NAME}\""))
            || a.starts_with(&format!("{subnet_prefix}."))
    })
}

/// The chains portmap and firewall share between all attachments on a host.
const SHARED_CHAINS: [&str; 5] = [
    "CNI-FORWARD",
    "CNI-ADMIN",
    "CNI-HOSTPORT-DNAT",
    "CNI-HOSTPORT-SETMARK",
    "CNI-HOSTPORT-MASQ",
];

/// The rules portmap and firewall put in their shared chains whoever uses them; a shared
/// chain holding only these is idle.
fn rule_is_static(rule: &[String]) -> bool {
    let has = |w: &str| rule.iter().any(|a| a == w);
    (has("-j") && has("CNI-ADMIN"))
        || (has("--set-xmark") && has("0x2000/0x2000"))
        || (has("--mark") && has("0x2000/0x2000") && has("MASQUERADE"))
}

/// Remove what the test network left in iptables. First every rule of the test network
/// (CNI DEL removes them, unless a sandbox could not be removed). Then the `CNI-*` chains
/// that appeared while the test containerd ran and are now idle (shared chains holding only
/// their static rules, per-attachment chains nothing jumps to), with the jumps into them.
/// Chains that existed before, or that hold someone else's rules (another CNI user on this
/// host), stay.
fn remove_new_chains(before: &BTreeSet<(String, String)>) {
    for table in ["filter", "nat"] {
        for rule in rule_lines(table).into_iter().filter(|r| rule_is_ours(r)) {
            delete_rule(table, rule);
        }
    }
    let new: Vec<(String, String)> = cni_chains().difference(before).cloned().collect();
    for table in ["filter", "nat"] {
        let rules = rule_lines(table);
        let jumped_to = |chain: &str| {
            rules.iter().any(|r| {
                r.windows(2)
                    .any(|w| (w[0] == "-j" || w[0] == "-g") && w[1] == chain)
            })
        };
        let idle: BTreeSet<&str> = new
            .iter()
            .filter(|(t, _)| t == table)
            .map(|(_, c)| c.as_str())
            .filter(|chain| {
                if SHARED_CHAINS.contains(chain) {
                    rules
                        .iter()
                        .filter(|r| r.get(1).is_some_and(|c| c == chain))
                        .all(|r| rule_is_static(r))
                } else {
                    // A per-attachment chain nothing jumps to any more is an orphan.
                    !jumped_to(chain)
                }
            })
            .collect();
        if idle.is_empty() {
            continue;
        }
        for rule in &rules {
            let jumps_to_idle = rule
                .windows(2)
                .any(|w| (w[0] == "-j" || w[0] == "-g") && idle.contains(w[1].as_str()));
            if jumps_to_idle {
                delete_rule(table, rule.clone());
            }
        }
        for chain in &idle {
            let _ = iptables(table, &["-F".to_string(), chain.to_string()]);
        }
        for chain in &idle {
            // Refused while anything still jumps here: then it is not idle after all.
            if let Err(e) = iptables(table, &["-X".to_string(), chain.to_string()]) {
                tracing::debug!(error = %e, "test cleanup: deleting chain");
            }
        }
    }
}

/// Every directory under `/sys/fs/cgroup/*/kubepods` (and a unified `/sys/fs/cgroup/kubepods`).
fn kubepods_dirs() -> BTreeSet<PathBuf> {
    let mut roots = vec![Path::new(CGROUP_ROOT).join("kubepods")];
    if let Ok(entries) = fs::read_dir(CGROUP_ROOT) {
        roots.extend(entries.flatten().map(|e| e.path().join("kubepods")));
    }
    let mut dirs = BTreeSet::new();
    let mut stack: Vec<PathBuf> = roots.into_iter().filter(|r| r.is_dir()).collect();
    while let Some(dir) = stack.pop() {
        if let Ok(entries) = fs::read_dir(&dir) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(e.path());
                }
            }
        }
        dirs.insert(dir);
    }
    dirs
}

/// Remove the cgroup directories that appeared while the test containerd ran, deepest
/// first (RemovePodSandbox leaves pod cgroups behind). `rmdir` refuses busy cgroups.
fn remove_new_cgroup_dirs(before: &BTreeSet<PathBuf>) {
    let mut new: Vec<PathBuf> = kubepods_dirs().difference(before).cloned().collect();
    new.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for dir in new {
        if let Err(e) = fs::remove_dir(&dir) {
            tracing::debug!(dir = %dir.display(), error = %e, "removing test cgroup");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_lines_split_with_quotes() {
        let line = r#"-A FORWARD -m comment --comment "CNI firewall plugin rules" -j CNI-FORWARD"#;
        assert_eq!(
            split_rule(line),
            [
                "-A",
                "FORWARD",
                "-m",
                "comment",
                "--comment",
                "CNI firewall plugin rules",
                "-j",
                "CNI-FORWARD"
            ]
        );
        let escaped = r#"-A X --comment "name: \"kubelet\" id: \"abc\"" -j CNI-DN-1"#;
        assert_eq!(
            split_rule(escaped),
            [
                "-A",
                "X",
                "--comment",
                r#"name: "kubelet" id: "abc""#,
                "-j",
                "CNI-DN-1"
            ]
        );
    }

    #[test]
    fn rules_of_the_test_network_are_recognised() {
        let ours = split_rule(
            r#"-A CNI-abc -d 10.89.0.0/16 -m comment --comment "name: \"kubelet-cri-test\" id: \"x\"" -j ACCEPT"#,
        );
        assert!(rule_is_ours(&ours));
        let masq = split_rule(r#"-A POSTROUTING -s 10.89.0.7/32 -j CNI-abc"#);
        assert!(rule_is_ours(&masq));
        let theirs = split_rule(
            r#"-A CNI-def -d 10.77.0.0/16 -m comment --comment "name: \"other\" id: \"y\"" -j ACCEPT"#,
        );
        assert!(!rule_is_ours(&theirs));
        let admin = split_rule(
            r#"-A CNI-FORWARD -m comment --comment "CNI firewall plugin admin overrides" -j CNI-ADMIN"#,
        );
        assert!(rule_is_static(&admin));
        assert!(rule_is_static(&split_rule(
            "-A CNI-HOSTPORT-MASQ -m mark --mark 0x2000/0x2000 -j MASQUERADE"
        )));
        assert!(!rule_is_static(&split_rule(
            "-A CNI-FORWARD -d 10.77.0.2/32 -j ACCEPT"
        )));
    }

    #[test]
    fn templates_have_no_unfilled_placeholders() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        fs::create_dir_all(base.join("cni/net.d")).unwrap();
        write_config(base, &base.join("c.sock")).unwrap();
        let config = fs::read_to_string(base.join("config.toml")).unwrap();
        let conflist = fs::read_to_string(base.join("cni/net.d/10-kubelet.conflist")).unwrap();
        for text in [&config, &conflist] {
            let unfilled =
                text.split('@').skip(1).step_by(2).find(|w| {
                    !w.is_empty() && w.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
                });
            assert_eq!(unfilled, None, "{text}");
        }
        assert!(config.contains("restrict_oom_score_adj = true"));
        assert!(config.contains(&format!("sandbox_image = \"{PAUSE_IMAGE}\"")));
        assert!(config.contains(&format!("containerd.runtimes.{TEST_RUNTIME_HANDLER}]")));
        // Every tarball the harness imports is one the script builds.
        for name in IMAGE_TARBALLS {
            let stem = name.trim_end_matches(".tar");
            assert!(
                BUILD_IMAGES_SCRIPT.contains(&format!("\nbuild_image {stem} ")),
                "{name}"
            );
        }
        let v: serde_json::Value = serde_json::from_str(&conflist).unwrap();
        assert_eq!(v["cniVersion"], "0.4.0");
        assert_eq!(v["plugins"][0]["bridge"], BRIDGE);
        assert_eq!(
            v["plugins"][0]["ipam"]["ranges"][0][0]["subnet"],
            POD_SUBNET
        );
    }
}
