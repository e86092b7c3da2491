//! A real etcd and kube-apiserver for tests, started from a directory of binaries the way
//! controller-runtime's envtest does with `KUBEBUILDER_ASSETS`.
//!
//! [`ASSETS_ENV`] (`KUBELET_TEST_ASSETS`) names a directory holding `kube-apiserver` and
//! optionally `etcd` (else `etcd` is looked up in `PATH`; Debian's `etcd-server` package puts
//! it at `/usr/bin/etcd`). [`Envtest::start`] then:
//!
//! - picks free loopback ports (etcd client and peer, the API server's secure port), so that
//!   test binaries run side by side, and makes a temporary directory for etcd's data, the PKI
//!   and both processes' logs;
//! - generates the PKI in-process (X.509 v3 throughout): a CA, a serving certificate for
//!   `127.0.0.1`/`localhost`, an admin client certificate (`O=system:masters`), the API
//!   server's kubelet client certificate (`O=system:masters`) and an ECDSA P-256
//!   service-account key pair; node certificates are issued on demand
//!   ([`Envtest::node_kubeconfig`]);
//! - starts etcd, then kube-apiserver with Node and RBAC authorization and NodeRestriction
//!   admission, and polls `/readyz` with the admin certificate until it answers `ok` (within
//!   [`READY_DEADLINE`]; the error carries the tail of both logs);
//! - does what the controllers that do not run here would have done for the system
//!   namespaces (`default`, `kube-system`, `kube-public`, `kube-node-lease`): each gets its
//!   `default` ServiceAccount (which ServiceAccount admission requires of every pod) and the
//!   `kube-root-ca.crt` ConfigMap (which the `kube-api-access-*` volume reads). Tests using
//!   other namespaces call [`Envtest::ensure_namespace`].
//!
//! Dropping an [`Envtest`] (during a panic's unwind too) kills kube-apiserver and then etcd
//! by PID, reaps both and removes the temporary directory.
//!
//! Neither a controller-manager nor a scheduler runs: pods must carry `spec.nodeName`,
//! deleted namespaces stay Terminating, owner references do not cascade, and the
//! `kubernetes` Service has no endpoints.
//!
//! ```no_run
//! # async fn t() {
//! use kubelet_core::testing::envtest::Envtest;
//! let Some(env) = Envtest::from_env().await.expect("envtest") else {
//!     return; // KUBELET_TEST_ASSETS is not set
//! };
//! let kubeconfig = env.node_kubeconfig("node-1").expect("node credentials");
//! # let _ = kubeconfig;
//! # }
//! ```

mod pki;

use crate::error::error_chain;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};

use pki::{CertAndKey, Pki};

/// The environment variable naming the directory with `kube-apiserver` (and maybe `etcd`).
pub const ASSETS_ENV: &str = "KUBELET_TEST_ASSETS";
/// Set to `1` to make a missing or failing envtest an error instead of a fallback to the
/// fake API server (CI sets it).
pub const REQUIRE_ENV: &str = "KUBELET_TEST_REQUIRE_ENVTEST";
/// How long etcd and kube-apiserver together may take until `/readyz` answers `ok`. Usually
/// 5-10 s; generous because test binaries start theirs side by side on small machines.
pub const READY_DEADLINE: Duration = Duration::from_secs(90);
/// The service-account token issuer the API server is started with.
pub const SERVICE_ACCOUNT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// The Service IP range (`--service-cluster-ip-range`).
pub const SERVICE_CLUSTER_IP_RANGE: &str = "10.0.0.0/24";
/// The namespaces prepared at start (see [`Envtest::ensure_namespace`]).
pub const SYSTEM_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];

/// How long creating the bootstrap objects may keep failing with retryable errors.
const BOOTSTRAP_DEADLINE: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(100);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Start attempts when a picked port was taken by someone else before our process bound it.
const START_ATTEMPTS: u32 = 3;
/// How much of each log a failure shows: the API server's last lines usually name the cause;
/// etcd's only matter when it is the one that failed.
const APISERVER_TAIL_LINES: usize = 40;
const ETCD_TAIL_LINES: usize = 20;

/// Why the envtest could not be started or used.
#[derive(thiserror::Error)]
pub enum EnvtestError {
    /// [`ASSETS_ENV`] is not set where one is required.
    #[error(
        "{ASSETS_ENV} is not set (it names a directory with kube-apiserver), and {REQUIRE_ENV}=1 \
         asks for a real API server"
    )]
    NotConfigured,
    /// A binary is missing.
    #[error("{binary} not found: {looked}")]
    MissingBinary {
        /// `kube-apiserver` or `etcd`.
        binary: &'static str,
        /// Where it was looked for.
        looked: String,
    },
    /// A file or directory operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Generating the PKI or the admin client failed.
    #[error("envtest PKI ({what}): {message}")]
    Pki {
        /// What was being made.
        what: &'static str,
        /// The cause.
        message: String,
    },
    /// A process could not be started.
    #[error("starting {binary}: {source}")]
    Spawn {
        /// The binary.
        binary: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// etcd or kube-apiserver exited or did not become ready in time.
    #[error("{what} not ready after {after:?}: {last}\n{logs}")]
    NotReady {
        /// `etcd` or `kube-apiserver`.
        what: &'static str,
        /// How long was waited.
        after: Duration,
        /// The last probe error, or how the process exited.
        last: String,
        /// The tail of both logs.
        logs: String,
    },
    /// Creating a bootstrap object (namespace, ServiceAccount, ConfigMap) failed.
    #[error("envtest setup: {what}: {message}")]
    Bootstrap {
        /// The request.
        what: String,
        /// The server's answer or the transport error.
        message: String,
    },
}

// Debug is the Display text, so that `unwrap()` in a test shows the logs with their line
// breaks rather than as one escaped string.
impl std::fmt::Debug for EnvtestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> EnvtestError {
    let path = path.into();
    move |source| EnvtestError::Io { path, source }
}

/// The directory [`ASSETS_ENV`] names, when set and not empty. A relative path is taken
/// from the test's working directory (under `cargo test`, the package's directory).
pub fn assets_dir() -> Option<PathBuf> {
    std::env::var_os(ASSETS_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// Whether [`REQUIRE_ENV`] is `1` or `true`.
pub fn required() -> bool {
    std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1" || v == "true")
}

/// etcd and kube-apiserver; dropping this stops kube-apiserver, then etcd.
#[derive(Default)]
struct Processes {
    apiserver: Option<Child>,
    etcd: Option<Child>,
}

impl Processes {
    /// The first of ours that has exited, with its status.
    fn exited(&mut self) -> Option<(&'static str, ExitStatus)> {
        let check = |name, child: &mut Option<Child>| {
            child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
                .map(|status| (name, status))
        };
        check("kube-apiserver", &mut self.apiserver).or_else(|| check("etcd", &mut self.etcd))
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        // The API server first: stopped after etcd it would only log storage errors.
        for mut child in [self.apiserver.take(), self.etcd.take()]
            .into_iter()
            .flatten()
        {
            // SIGKILL by PID: both are our direct children and fork nothing that outlives
            // them; the wait reaps them, so neither an orphan nor a zombie is left. They
            // stay in the test's process group, so a Ctrl-C that kills the test before any
            // Drop runs reaches them too.
            let pid = child.id();
            if let Err(e) = child.kill() {
                tracing::debug!(pid, error = %e, "envtest process already gone");
            }
            if let Err(e) = child.wait() {
                tracing::warn!(pid, error = %e, "reaping envtest process");
            }
        }
    }
}

/// A running etcd + kube-apiserver; see the module documentation.
pub struct Envtest {
    // Field order is drop order: the processes stop before their directory is removed.
    processes: Processes,
    pki: Pki,
    url: String,
    client: reqwest::Client,
    apiserver_log: PathBuf,
    etcd_log: PathBuf,
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for Envtest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Envtest")
            .field("url", &self.url)
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}

/// A start attempt's failure, and whether another attempt with other ports may succeed.
struct LaunchFailure {
    error: EnvtestError,
    port_taken: bool,
}

impl From<EnvtestError> for LaunchFailure {
    fn from(error: EnvtestError) -> Self {
        Self {
            error,
            port_taken: false,
        }
    }
}

impl Envtest {
    /// Starts one from [`ASSETS_ENV`]; `Ok(None)` when the variable is not set.
    pub async fn from_env() -> Result<Option<Self>, EnvtestError> {
        match assets_dir() {
            Some(dir) => Self::start(&dir).await.map(Some),
            None => Ok(None),
        }
    }

    /// Starts etcd and kube-apiserver from `assets` (see the module documentation) and
    /// returns once the API server is ready and the system namespaces are prepared.
    pub async fn start(assets: &Path) -> Result<Self, EnvtestError> {
        let apiserver_bin = assets.join("kube-apiserver");
        if !apiserver_bin.is_file() {
            return Err(EnvtestError::MissingBinary {
                binary: "kube-apiserver",
                looked: format!("{} is not a file ({ASSETS_ENV})", shown(&apiserver_bin)),
            });
        }
        let etcd_bin = find_etcd(assets)?;
        let dir = tempfile::Builder::new()
            .prefix("kubelet-envtest-")
            .tempdir()
            .map_err(io_err(std::env::temp_dir()))?;
        let pki_dir = dir.path().join("pki");
        fs::create_dir(&pki_dir).map_err(io_err(&pki_dir))?;
        let pki = Pki::generate(&pki_dir)?;
        let client = admin_client(&pki)?;
        let apiserver_log = dir.path().join("kube-apiserver.log");
        let etcd_log = dir.path().join("etcd.log");
        let logs = Logs {
            apiserver: &apiserver_log,
            etcd: &etcd_log,
        };
        let launch = Launch {
            apiserver_bin: &apiserver_bin,
            etcd_bin: &etcd_bin,
            base: dir.path(),
            pki: &pki,
            client: &client,
            logs,
        };
        let mut attempt = 1;
        let (processes, url) = loop {
            match launch.run(attempt).await {
                Ok(started) => break started,
                Err(f) if f.port_taken && attempt < START_ATTEMPTS => {
                    tracing::info!(attempt, error = %f.error, "envtest: a port was taken; trying others");
                    attempt += 1;
                }
                Err(f) => return Err(f.error),
            }
        };
        let env = Self {
            processes,
            pki,
            url,
            client,
            apiserver_log,
            etcd_log,
            dir,
        };
        for ns in SYSTEM_NAMESPACES {
            env.ensure_namespace(ns).await?;
        }
        tracing::info!(url = %env.url, dir = %env.dir.path().display(), "envtest API server ready");
        Ok(env)
    }

    /// The API server's URL, `https://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The CA certificate (PEM) that signed the serving and all client certificates.
    pub fn ca_pem(&self) -> &str {
        &self.pki.ca_pem
    }

    /// The certificate the API server presents to kubelets (`--kubelet-client-certificate`,
    /// `O=system:masters`): what a kubelet's 10250 server must accept for logs, exec,
    /// port-forward and the node proxy.
    pub fn kubelet_client_cert_path(&self) -> &Path {
        &self.pki.files.kubelet_client_cert
    }

    /// The key of [`Self::kubelet_client_cert_path`].
    pub fn kubelet_client_key_path(&self) -> &Path {
        &self.pki.files.kubelet_client_key
    }

    /// The temporary directory (PKI, etcd data, logs), removed on drop.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// kube-apiserver's log file.
    pub fn apiserver_log_path(&self) -> &Path {
        &self.apiserver_log
    }

    /// etcd's log file.
    pub fn etcd_log_path(&self) -> &Path {
        &self.etcd_log
    }

    /// The last lines of both logs, for failure messages.
    pub fn log_tails(&self) -> String {
        Logs {
            apiserver: &self.apiserver_log,
            etcd: &self.etcd_log,
        }
        .tails()
    }

    /// kube-apiserver's PID.
    pub fn apiserver_pid(&self) -> Option<u32> {
        self.processes.apiserver.as_ref().map(Child::id)
    }

    /// etcd's PID.
    pub fn etcd_pid(&self) -> Option<u32> {
        self.processes.etcd.as_ref().map(Child::id)
    }

    /// A kubeconfig (YAML) for the admin user (`O=system:masters`), with the CA and the
    /// client certificate embedded.
    pub fn kubeconfig(&self) -> String {
        self.kubeconfig_for("kubelet-envtest-admin", &self.pki.admin)
    }

    /// Writes [`Self::kubeconfig`] to `path`.
    pub fn write_kubeconfig(&self, path: &Path) -> Result<(), EnvtestError> {
        fs::write(path, self.kubeconfig()).map_err(io_err(path))
    }

    /// A kubeconfig with a new client certificate for `system:node:<node_name>` in
    /// `system:nodes`, which the Node authorizer and NodeRestriction hold to what that
    /// node's kubelet may do.
    pub fn node_kubeconfig(&self, node_name: &str) -> Result<String, EnvtestError> {
        self.client_kubeconfig(&format!("system:node:{node_name}"), &["system:nodes"])
    }

    /// A kubeconfig with a new client certificate for `user` in `groups` (at most one group;
    /// none for a user that only RBAC bindings authorize).
    pub fn client_kubeconfig(&self, user: &str, groups: &[&str]) -> Result<String, EnvtestError> {
        let cred = self.pki.issue_client(user, groups)?;
        Ok(self.kubeconfig_for(user, &cred))
    }

    fn kubeconfig_for(&self, user: &str, cred: &CertAndKey) -> String {
        // A JSON string is a YAML double-quoted scalar: user names hold colons.
        let user = Value::from(user).to_string();
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: envtest\n  cluster:\n    \
             server: {url}\n    certificate-authority-data: {ca}\ncontexts:\n- name: envtest\n  \
             context:\n    cluster: envtest\n    user: {user}\n    namespace: default\n\
             current-context: envtest\npreferences: {{}}\nusers:\n- name: {user}\n  user:\n    \
             client-certificate-data: {cert}\n    client-key-data: {key}\n",
            url = self.url,
            ca = STANDARD.encode(&self.pki.ca_pem),
            cert = STANDARD.encode(&cred.cert_pem),
            key = STANDARD.encode(&cred.key_pem),
        )
    }

    /// Creates namespace `name` unless it exists, with what the controllers would have put
    /// in it: the `default` ServiceAccount and the `kube-root-ca.crt` ConfigMap.
    pub async fn ensure_namespace(&self, name: &str) -> Result<(), EnvtestError> {
        self.create_if_absent(
            "/api/v1/namespaces",
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
        )
        .await?;
        self.create_if_absent(
            &format!("/api/v1/namespaces/{name}/serviceaccounts"),
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}}),
        )
        .await?;
        self.create_if_absent(
            &format!("/api/v1/namespaces/{name}/configmaps"),
            json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "kube-root-ca.crt"},
                "data": {"ca.crt": self.pki.ca_pem},
            }),
        )
        .await
    }

    /// POSTs `body` as the admin; an existing object (409) is fine. Retries what may heal
    /// while the server settles (transport errors, 429, 5xx).
    async fn create_if_absent(&self, path: &str, body: Value) -> Result<(), EnvtestError> {
        let what = format!("POST {path} {}", body["metadata"]["name"]);
        let deadline = Instant::now() + BOOTSTRAP_DEADLINE;
        loop {
            let sent = self
                .client
                .post(format!("{}{path}", self.url))
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await;
            let (retry, message) = match sent {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    if matches!(status, 200 | 201 | 409) {
                        return Ok(());
                    }
                    let text = resp.text().await.unwrap_or_default();
                    (status == 429 || status >= 500, format!("{status}: {text}"))
                }
                Err(e) => (true, error_chain(&e)),
            };
            if !retry || Instant::now() >= deadline {
                return Err(EnvtestError::Bootstrap { what, message });
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// What one start attempt needs.
struct Launch<'a> {
    apiserver_bin: &'a Path,
    etcd_bin: &'a Path,
    base: &'a Path,
    pki: &'a Pki,
    client: &'a reqwest::Client,
    logs: Logs<'a>,
}

impl Launch<'_> {
    /// Starts etcd and kube-apiserver on new ports and waits until both are ready.
    async fn run(&self, attempt: u32) -> Result<(Processes, String), LaunchFailure> {
        let started = Instant::now();
        let deadline = started + READY_DEADLINE;
        let [etcd_port, peer_port, api_port] = free_ports()?;
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let url = format!("https://127.0.0.1:{api_port}");
        // A fresh data directory per attempt: a failed one may have left a member behind.
        let data = self.base.join(format!("etcd-data-{attempt}"));
        let mut processes = Processes::default();

        let etcd_args: Vec<String> = vec![
            "--name=envtest".into(),
            format!("--data-dir={}", data.display()),
            format!("--listen-client-urls={etcd_url}"),
            format!("--advertise-client-urls={etcd_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster=envtest={peer_url}"),
        ];
        processes.etcd = Some(self.spawn(self.etcd_bin, &etcd_args, self.logs.etcd)?);
        let health = format!("{etcd_url}/health");
        self.wait(&mut processes, "etcd", started, deadline, async || {
            let resp = self
                .client
                .get(&health)
                .send()
                .await
                .map_err(|e| error_chain(&e))?;
            let status = resp.status();
            let body = resp.text().await.unwrap_or_default();
            if status.is_success() && body.contains("\"health\":\"true\"") {
                Ok(())
            } else {
                Err(format!("{status}: {body}"))
            }
        })
        .await?;

        let files = &self.pki.files;
        let p = |path: &Path| path.display().to_string();
        let apiserver_args: Vec<String> = vec![
            format!("--etcd-servers={etcd_url}"),
            format!("--secure-port={api_port}"),
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            // Only used when no serving certificate is given; keeps it off /var/run.
            format!("--cert-dir={}", self.base.join("apiserver-certs").display()),
            format!("--tls-cert-file={}", p(&files.server_cert)),
            format!("--tls-private-key-file={}", p(&files.server_key)),
            format!("--client-ca-file={}", p(&files.ca_cert)),
            format!("--service-account-key-file={}", p(&files.sa_pub)),
            format!("--service-account-signing-key-file={}", p(&files.sa_key)),
            format!("--service-account-issuer={SERVICE_ACCOUNT_ISSUER}"),
            format!("--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}"),
            "--authorization-mode=Node,RBAC".into(),
            "--enable-admission-plugins=NodeRestriction".into(),
            format!(
                "--kubelet-client-certificate={}",
                p(&files.kubelet_client_cert)
            ),
            format!("--kubelet-client-key={}", p(&files.kubelet_client_key)),
            // A test node's Hostname address (e.g. "e2e-node") resolves nowhere; its
            // InternalIP is where its 10250 server listens.
            "--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname".into(),
            "--allow-privileged=true".into(),
        ];
        processes.apiserver =
            Some(self.spawn(self.apiserver_bin, &apiserver_args, self.logs.apiserver)?);
        let readyz = format!("{url}/readyz");
        self.wait(
            &mut processes,
            "kube-apiserver",
            started,
            deadline,
            async || {
                let resp = self
                    .client
                    .get(&readyz)
                    .send()
                    .await
                    .map_err(|e| error_chain(&e))?;
                let status = resp.status();
                let body = resp.text().await.unwrap_or_default();
                if status.is_success() && body.trim() == "ok" {
                    return Ok(());
                }
                // The verbose answer lists every check; the failing ones are what matter.
                let failing: Vec<&str> = body.lines().filter(|l| l.starts_with("[-]")).collect();
                Err(if failing.is_empty() {
                    format!("/readyz: {status}: {}", body.trim())
                } else {
                    format!("/readyz: {status}: {}", failing.join("; "))
                })
            },
        )
        .await?;
        Ok((processes, url))
    }

    fn spawn(&self, bin: &Path, args: &[String], log: &Path) -> Result<Child, EnvtestError> {
        let out = File::create(log).map_err(io_err(log))?;
        let err = out.try_clone().map_err(io_err(log))?;
        let child = Command::new(bin)
            .args(args)
            .current_dir(self.base)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|source| EnvtestError::Spawn {
                binary: bin.to_path_buf(),
                source,
            })?;
        tracing::debug!(pid = child.id(), binary = %bin.display(), "envtest process started");
        Ok(child)
    }

    /// Polls `probe` until it succeeds, one of the processes exits, or `deadline` passes.
    async fn wait(
        &self,
        processes: &mut Processes,
        what: &'static str,
        started: Instant,
        deadline: Instant,
        mut probe: impl AsyncFnMut() -> Result<(), String>,
    ) -> Result<(), LaunchFailure> {
        loop {
            if let Some((name, status)) = processes.exited() {
                let logs = self.logs.tails();
                // Another process took a port between our probe and the bind.
                let port_taken = logs.contains("address already in use");
                return Err(LaunchFailure {
                    error: EnvtestError::NotReady {
                        what,
                        after: started.elapsed(),
                        last: format!("{name} exited ({status})"),
                        logs,
                    },
                    port_taken,
                });
            }
            let last = match probe().await {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                return Err(EnvtestError::NotReady {
                    what,
                    after: started.elapsed(),
                    last,
                    logs: self.logs.tails(),
                }
                .into());
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// The two log files.
#[derive(Clone, Copy)]
struct Logs<'a> {
    apiserver: &'a Path,
    etcd: &'a Path,
}

impl Logs<'_> {
    fn tails(&self) -> String {
        format!(
            "--- kube-apiserver log, last lines:\n{}\n--- etcd log, last lines:\n{}",
            tail(self.apiserver, APISERVER_TAIL_LINES),
            tail(self.etcd, ETCD_TAIL_LINES)
        )
    }
}

/// The last `lines` lines of a file (read from its last 64 KiB; logs grow long).
fn tail(path: &Path, lines: usize) -> String {
    let read = || -> io::Result<String> {
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        file.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)))?;
        let mut buf = Vec::new();
        file.read_to_end(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    };
    match read() {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("({}: {e})", path.display()),
    }
}

/// Three distinct free loopback ports. All are held at once so that they differ; another
/// process may still take one before our child binds it, which a retry handles.
fn free_ports() -> Result<[u16; 3], EnvtestError> {
    let bind = || TcpListener::bind("127.0.0.1:0").map_err(io_err("127.0.0.1:0"));
    let listeners = [bind()?, bind()?, bind()?];
    let mut ports = [0u16; 3];
    for (port, l) in ports.iter_mut().zip(&listeners) {
        *port = l.local_addr().map_err(io_err("127.0.0.1:0"))?.port();
    }
    Ok(ports)
}

/// `etcd` in the assets directory, else in `PATH` (or /usr/bin, where Debian puts it).
fn find_etcd(assets: &Path) -> Result<PathBuf, EnvtestError> {
    let in_assets = assets.join("etcd");
    if in_assets.is_file() {
        return Ok(in_assets);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .map(|d| d.join("etcd"))
        .find(|p| p.is_file())
        .ok_or_else(|| EnvtestError::MissingBinary {
            binary: "etcd",
            looked: format!(
                "not in {} nor in PATH (Debian: apt-get install etcd-server)",
                shown(assets)
            ),
        })
}

/// A path as the user should read it: absolute, since a relative one is taken from the
/// test binary's working directory, which is not where the user typed it.
fn shown(path: &Path) -> String {
    std::path::absolute(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string()
}

/// The harness's own client: the admin certificate, trusting only our CA.
fn admin_client(pki: &Pki) -> Result<reqwest::Client, EnvtestError> {
    let err = |what| {
        move |e: rustls::Error| EnvtestError::Pki {
            what,
            message: e.to_string(),
        }
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(pki.ca_der.clone()))
        .map_err(err("admin client roots"))?;
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(err("admin client protocol versions"))?
        .with_root_certificates(roots)
        .with_client_auth_cert(
            vec![CertificateDer::from(pki.admin.cert_der.clone())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.admin.key_der.clone())),
        )
        .map_err(err("admin client certificate"))?;
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(REQUEST_TIMEOUT)
        .build()
        .map_err(|e| EnvtestError::Pki {
            what: "admin client",
            message: error_chain(&e),
        })
}
