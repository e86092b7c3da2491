//! A node for the daemon's end-to-end tests: a real containerd ([`TestContainerd`]), the real
//! `kubelet` binary as a child process watching a manifest directory of the test's own, and
//! helpers to read `/pods` and the CRI.
//!
//! Dropping a [`TestNode`] kills the kubelet by PID (and prints its log when the test failed);
//! the containerd guard then removes the sandboxes and everything else it made.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ContainerStatus as K8sContainerStatus, Pod};
use kubelet_core::Runtime;
use kubelet_core::runtime::{ContainerStatus, ListFilter, PodSandboxStatus};
use kubelet_cri::CriRuntime;
use kubelet_cri::testing::TestContainerd;

/// The node name every test kubelet runs as (`--hostname-override`).
pub const NODE: &str = "e2e-node";
/// Set to `1` to print the kubelet's log after passing tests too (failing ones always do).
pub const SHOW_LOG_ENV: &str = "KUBELET_E2E_SHOW_LOG";
/// How often conditions are polled.
const POLL: Duration = Duration::from_millis(200);
/// How long the kubelet may take to be healthy after its start.
const START_DEADLINE: Duration = Duration::from_secs(60);

/// The kubelet child process; dropping it kills it (SIGKILL, by PID) and reaps it.
struct KubeletProcess {
    child: Child,
}

impl Drop for KubeletProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A containerd, a kubelet daemon over it and the kubelet's directories.
pub struct TestNode {
    // Field order is drop order: the kubelet goes first, then containerd (which removes the
    // sandboxes), then the directories.
    kubelet: Option<KubeletProcess>,
    starts: u32,
    /// Flags added to every start of the kubelet (e.g. `--kubeconfig`).
    extra_args: Vec<String>,
    runtime: CriRuntime,
    containerd: TestContainerd,
    port: u16,
    /// The kubelet server's HTTPS port (on 127.0.0.1).
    pub server_port: u16,
    dir: tempfile::TempDir,
}

impl TestNode {
    /// Start containerd and the kubelet, and wait until the kubelet's `/healthz` is ok. `None`
    /// when the test is skipped (the reason was printed).
    pub async fn start() -> Option<TestNode> {
        Self::start_with_args(Vec::new()).await
    }

    /// As [`TestNode::start`], with flags added to the kubelet's command line at every start.
    pub async fn start_with_args(extra_args: Vec<String>) -> Option<TestNode> {
        let containerd = TestContainerd::start().await?;
        let runtime = containerd.runtime().await;
        let dir = tempfile::Builder::new()
            .prefix("kubelet-e2e-")
            .tempdir()
            .expect("temp dir");
        for sub in ["manifests", "root", "pod-logs"] {
            fs::create_dir_all(dir.path().join(sub)).expect("create test dirs");
        }
        let port = free_port();
        // The kubelet server (HTTPS) on loopback, so that test nodes run side by side.
        let server_port = loop {
            let p = free_port();
            if p != port {
                break p;
            }
        };
        // No eviction thresholds unless a test sets its own (a flag wins over the file): a
        // shared machine's full disk or busy memory must not evict or refuse the pods of
        // tests about something else.
        let config = format!(
            "apiVersion: kubelet.config.k8s.io/v1beta1\n\
             kind: KubeletConfiguration\n\
             staticPodPath: {manifests}\n\
             podLogsDir: {logs}\n\
             healthzBindAddress: 127.0.0.1\n\
             healthzPort: {port}\n\
             address: 127.0.0.1\n\
             port: {server_port}\n\
             evictionHard: {{}}\n",
            manifests = dir.path().join("manifests").display(),
            logs = dir.path().join("pod-logs").display(),
        );
        fs::write(dir.path().join("kubelet.yaml"), config).expect("write kubelet config");
        let mut node = TestNode {
            kubelet: None,
            starts: 0,
            extra_args,
            runtime,
            containerd,
            port,
            server_port,
            dir,
        };
        node.start_kubelet().await;
        Some(node)
    }

    /// Replace the flags added to the kubelet's command line, from its next start on.
    pub fn set_extra_args(&mut self, extra_args: Vec<String>) {
        self.extra_args = extra_args;
    }

    /// Start the kubelet binary (again), with the same flags every time, and wait until its
    /// `/healthz` is ok.
    pub async fn start_kubelet(&mut self) {
        let log_path = self.log_path(self.starts + 1);
        let log = fs::File::create(&log_path).expect("create kubelet log");
        self.start_kubelet_logging_to(log.into()).await;
    }

    /// As [`TestNode::start_kubelet`], with the kubelet's stderr (its log) going to `stderr`
    /// instead of the log file.
    pub async fn start_kubelet_logging_to(&mut self, stderr: Stdio) {
        assert!(self.kubelet.is_none(), "the kubelet is running already");
        self.starts += 1;
        let child = Command::new(env!("CARGO_BIN_EXE_kubelet"))
            .arg(format!(
                "--config={}",
                self.dir.path().join("kubelet.yaml").display()
            ))
            .arg(format!(
                "--container-runtime-endpoint={}",
                self.containerd.endpoint()
            ))
            .arg(format!("--hostname-override={NODE}"))
            .arg(format!(
                "--root-dir={}",
                self.dir.path().join("root").display()
            ))
            .arg("--file-check-frequency=1s")
            .arg("--v=4")
            // containerd's sandbox image here, which image GC must keep.
            .arg(format!(
                "--pod-infra-container-image={}",
                kubelet_cri::testing::PAUSE_IMAGE
            ))
            .args(&self.extra_args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn the kubelet binary");
        self.kubelet = Some(KubeletProcess { child });
        self.wait_for(
            "the kubelet's /healthz to be ok",
            START_DEADLINE,
            async |node| node.try_get("/healthz").await.ok().map(|_| ()),
        )
        .await;
    }

    /// SIGTERM the kubelet and wait up to `deadline` for it to exit: its exit status, or
    /// `None` when it was still running (it is then killed).
    pub fn terminate_kubelet(&mut self, deadline: Duration) -> Option<std::process::ExitStatus> {
        let mut process = self.kubelet.take().expect("the kubelet is running");
        let pid = nix::unistd::Pid::from_raw(process.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)
            .expect("SIGTERM the kubelet");
        let started = Instant::now();
        while started.elapsed() < deadline {
            if let Some(status) = process.child.try_wait().expect("wait for the kubelet") {
                return Some(status);
            }
            std::thread::sleep(POLL);
        }
        // Dropping the process kills and reaps it.
        None
    }

    /// SIGKILL the kubelet (no shutdown of its own) and reap it.
    pub fn kill_kubelet(&mut self) {
        let mut process = self.kubelet.take().expect("the kubelet is running");
        process.child.kill().expect("SIGKILL the kubelet");
        let status = process.child.wait().expect("reap the kubelet");
        assert!(!status.success(), "killed kubelet: {status}");
    }

    /// The test containerd under the kubelet.
    pub fn containerd(&self) -> &TestContainerd {
        &self.containerd
    }

    /// `<podLogsDir>` of the kubelet.
    pub fn pod_logs_dir(&self) -> PathBuf {
        self.dir.path().join("pod-logs")
    }

    fn manifest_dir(&self) -> PathBuf {
        self.dir.path().join("manifests")
    }

    fn log_path(&self, start: u32) -> PathBuf {
        self.dir.path().join(format!("kubelet-{start}.log"))
    }

    /// Path of a manifest file in the watched directory.
    pub fn manifest_path(&self, file: &str) -> PathBuf {
        self.manifest_dir().join(file)
    }

    /// Write a manifest atomically: a hidden temp file (the source skips dot files), then a
    /// rename over the final name.
    pub fn write_manifest(&self, file: &str, yaml: &str) {
        let tmp = self.manifest_dir().join(format!(".{file}.tmp"));
        fs::write(&tmp, yaml).expect("write manifest");
        fs::rename(&tmp, self.manifest_path(file)).expect("rename manifest");
    }

    /// Remove a manifest file.
    pub fn remove_manifest(&self, file: &str) {
        fs::remove_file(self.manifest_path(file)).expect("remove manifest");
    }

    /// Everything the kubelet logged so far, over all its starts.
    pub fn kubelet_log(&self) -> String {
        (1..=self.starts)
            .map(|n| {
                let text = fs::read_to_string(self.log_path(n)).unwrap_or_default();
                format!("----- kubelet start {n} -----\n{text}")
            })
            .collect()
    }

    /// Panic with the log when the kubelet process has exited on its own.
    fn check_alive(&mut self) {
        if let Some(process) = self.kubelet.as_mut()
            && let Ok(Some(status)) = process.child.try_wait()
        {
            self.kubelet = None;
            panic!("the kubelet exited: {status}");
        }
    }

    /// A GET on the kubelet's healthz port: the body of a 200 answer, else an error.
    pub async fn try_get(&self, path: &str) -> Result<String, String> {
        self.try_get_port(self.port, path).await
    }

    /// A GET on another of the kubelet's plain HTTP ports (the read-only port).
    pub async fn try_get_port(&self, port: u16, path: &str) -> Result<String, String> {
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let path = path.to_string();
        tokio::task::spawn_blocking(move || http_get(addr, &path))
            .await
            .map_err(|e| e.to_string())?
    }

    /// The pods `/pods` lists.
    pub async fn pods(&self) -> Result<Vec<Pod>, String> {
        let body = self.try_get("/pods").await?;
        let list: serde_json::Value =
            serde_json::from_str(&body).map_err(|e| format!("/pods: {e}: {body}"))?;
        let items = list
            .get("items")
            .cloned()
            .ok_or_else(|| format!("/pods without items: {body}"))?;
        serde_json::from_value(items).map_err(|e| format!("/pods items: {e}: {body}"))
    }

    /// The pods of the static manifest named `name` (the kubelet appends `-<node>`): one,
    /// or two while an edited manifest replaces its previous pod.
    pub async fn pods_named(&self, name: &str) -> Vec<Pod> {
        let full = format!("{name}-{NODE}");
        let pods = self.pods().await.unwrap_or_default();
        pods.into_iter()
            .filter(|p| p.metadata.name.as_deref() == Some(full.as_str()))
            .collect()
    }

    /// The pod of the static manifest named `name`, when there is exactly one.
    pub async fn pod(&self, name: &str) -> Option<Pod> {
        let mut pods = self.pods_named(name).await;
        (pods.len() == 1).then(|| pods.remove(0))
    }

    /// Poll `check` until it gives a value or `deadline` passes (then panic naming `what`).
    /// Also fails at once when the kubelet process dies.
    pub async fn wait_for<T>(
        &mut self,
        what: &str,
        deadline: Duration,
        mut check: impl AsyncFnMut(&TestNode) -> Option<T>,
    ) -> T {
        let started = Instant::now();
        loop {
            self.check_alive();
            if let Some(found) = check(self).await {
                return found;
            }
            if started.elapsed() > deadline {
                panic!("timed out after {deadline:?} waiting for {what}");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Wait until the pod of manifest `name` satisfies `check`.
    pub async fn wait_pod(
        &mut self,
        name: &str,
        what: &str,
        deadline: Duration,
        mut check: impl FnMut(&Pod) -> bool,
    ) -> Pod {
        let mut last: Option<Pod> = None;
        let what = format!("pod {name}: {what}");
        let started = Instant::now();
        loop {
            self.check_alive();
            for pod in self.pods_named(name).await {
                if check(&pod) {
                    return pod;
                }
                last = Some(pod);
            }
            if started.elapsed() > deadline {
                let status = last
                    .and_then(|p| p.status)
                    .map(|s| serde_json::to_string_pretty(&s).unwrap_or_default());
                panic!("timed out after {deadline:?} waiting for {what}; last status: {status:?}");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The containers the runtime has for a pod (or all with `None`).
    pub async fn containers(&self, uid: Option<&str>) -> Vec<ContainerStatus> {
        let filter = uid.map(ListFilter::pod).unwrap_or_default();
        self.runtime
            .list_containers(&filter)
            .await
            .expect("CRI ListContainers")
    }

    /// The sandboxes the runtime has for a pod (or all with `None`).
    pub async fn sandboxes(&self, uid: Option<&str>) -> Vec<PodSandboxStatus> {
        let filter = uid.map(ListFilter::pod).unwrap_or_default();
        self.runtime
            .list_pod_sandboxes(&filter)
            .await
            .expect("CRI ListPodSandbox")
    }

    /// The runtime's status of one container, `None` once it is gone.
    pub async fn container_status(&self, id: &str) -> Option<ContainerStatus> {
        self.runtime.container_status(id).await.ok()
    }

    /// Kill a container in the runtime behind the kubelet's back (SIGKILL at once).
    pub async fn kill_container(&self, id: &str) {
        self.runtime
            .stop_container(id, Duration::ZERO)
            .await
            .expect("CRI StopContainer");
    }

    /// Run `sh -c script` in a running container; its exit code.
    pub async fn exec(&self, id: &str, script: &str) -> i32 {
        let cmd = ["sh".to_string(), "-c".to_string(), script.to_string()];
        self.runtime
            .exec_sync(id, &cmd, Duration::from_secs(10))
            .await
            .expect("CRI ExecSync")
            .exit_code
    }

    /// Stop the kubelet, then stop and remove every container and sandbox through CRI, so
    /// that nothing of the test outlives it even if containerd's own teardown misses it.
    pub async fn shutdown(mut self) {
        if let Some(process) = self.kubelet.take() {
            drop(process);
        }
        for c in self.containers(None).await {
            let _ = self
                .runtime
                .stop_container(&c.id, Duration::from_secs(2))
                .await;
            let _ = self.runtime.remove_container(&c.id).await;
        }
        for s in self.sandboxes(None).await {
            let _ = self.runtime.stop_pod_sandbox(&s.id).await;
            let _ = self.runtime.remove_pod_sandbox(&s.id).await;
        }
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        // Memory-backed volumes (secret, projected, downwardAPI, emptyDir Memory) are tmpfs
        // mounts below the kubelet's root that outlive a kubelet killed with its pods still
        // there: stop the kubelet, then unmount them so that nothing stays mounted.
        self.kubelet.take();
        unmount_below(self.dir.path());
        if std::env::var(SHOW_LOG_ENV).is_ok_and(|v| v == "1") && !std::thread::panicking() {
            eprintln!("===== kubelet log =====\n{}", self.kubelet_log());
        }
        if std::thread::panicking() {
            eprintln!("===== kubelet log =====\n{}", self.kubelet_log());
            let containerd =
                fs::read_to_string(self.containerd.containerd_log()).unwrap_or_default();
            let tail: Vec<&str> = containerd.lines().rev().take(60).collect();
            eprintln!(
                "===== containerd log (last 60 lines) =====\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }
}

/// Lazily unmount every mount of this mount namespace below `dir`, deepest first.
fn unmount_below(dir: &Path) {
    let dir = fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mut points: Vec<PathBuf> = fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|p| p.starts_with(&dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for p in points {
        let _ = Command::new("umount").arg("-l").arg(&p).status();
    }
}

/// A port nobody listens on now (bind port 0, read it, close).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

/// A plain HTTP/1.1 GET: the body of a 200 answer, else an error with the status line.
fn http_get(addr: SocketAddr, path: &str) -> Result<String, String> {
    let mut conn =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(
        conn,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let text = String::from_utf8(raw).map_err(|e| e.to_string())?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("malformed answer: {text}"))?;
    let status = head.lines().next().unwrap_or_default();
    if !status.starts_with("HTTP/1.1 200") {
        return Err(format!("GET {path}: {status}: {body}"));
    }
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    if chunked {
        dechunk(body)
    } else {
        Ok(body.to_string())
    }
}

/// The payload of a chunked body.
fn dechunk(mut body: &str) -> Result<String, String> {
    let mut out = String::new();
    loop {
        let (size, rest) = body
            .split_once("\r\n")
            .ok_or_else(|| "truncated chunk".to_string())?;
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|e| format!("chunk size {size:?}: {e}"))?;
        if size == 0 {
            return Ok(out);
        }
        let chunk = rest
            .get(..size)
            .ok_or_else(|| "truncated chunk".to_string())?;
        out.push_str(chunk);
        body = rest
            .get(size + 2..)
            .ok_or_else(|| "truncated chunk".to_string())?;
    }
}

/// The status of container `name` among `statuses`.
pub fn status_of<'a>(
    statuses: Option<&'a Vec<K8sContainerStatus>>,
    name: &str,
) -> Option<&'a K8sContainerStatus> {
    statuses?.iter().find(|s| s.name == name)
}

/// The pod's status of app container `name`.
pub fn container<'a>(pod: &'a Pod, name: &str) -> Option<&'a K8sContainerStatus> {
    status_of(pod.status.as_ref()?.container_statuses.as_ref(), name)
}

/// The runtime's ID in a status's `containerID` (`containerd://<id>`).
pub fn runtime_id(status: &K8sContainerStatus) -> Option<&str> {
    let id = status.container_id.as_deref()?;
    Some(id.split_once("://").map_or(id, |(_, id)| id))
}

/// The pod's phase.
pub fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// The pod's UID.
pub fn uid(pod: &Pod) -> String {
    pod.metadata
        .uid
        .clone()
        .expect("a pod from /pods has a UID")
}

/// Whether container `name` of the pod runs and is ready.
pub fn running_and_ready(pod: &Pod, name: &str) -> bool {
    phase(pod) == "Running"
        && container(pod, name)
            .is_some_and(|c| c.ready && c.state.as_ref().is_some_and(|s| s.running.is_some()))
}

/// The lines of a CRI-format log file (`<time> <stream> <tag> <line>`), as (stream, line).
pub fn cri_log_lines(path: &Path) -> Vec<(String, String)> {
    let Ok(text) = fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| {
            let mut parts = l.splitn(4, ' ');
            let time = parts.next()?;
            let stream = parts.next()?;
            let tag = parts.next()?;
            let line = parts.next().unwrap_or("");
            let time_ok = time.parse::<k8s_openapi::jiff::Timestamp>().is_ok();
            (time_ok && tag == "F").then(|| (stream.to_string(), line.to_string()))
        })
        .collect()
}

/// Every directory named `pod<uid>` under `/sys/fs/cgroup/*/kubepods` (and a unified
/// `/sys/fs/cgroup/kubepods`).
pub fn pod_cgroup_dirs(uid: &str) -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    let mut stack = vec![root.join("kubepods")];
    if let Ok(entries) = fs::read_dir(root) {
        stack.extend(entries.flatten().map(|e| e.path().join("kubepods")));
    }
    let wanted = format!("pod{uid}");
    let mut found = Vec::new();
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                if entry.file_name().to_str() == Some(wanted.as_str()) {
                    found.push(entry.path());
                }
                stack.push(entry.path());
            }
        }
    }
    found
}
