//! The kubelet's HTTPS API (port 10250) against a real containerd (started by
//! `kubelet_cri::testing::TestContainerd`, which also tears it down). The kubelet runs
//! in-process (reconciler + `CriRuntime`, a `ChannelSource`) with its `KubeletServer` on
//! 127.0.0.1 (self-signed serving certificate, x509 client certificates of a CA made here,
//! `AlwaysAllow`); the bench is a client with a certificate of that CA, as the API server is.
//! One busybox pod runs a container whose main process sleeps:
//!
//! (1) log streaming throughput. A `kubectl logs -f` of the container
//!     (`GET /containerLogs/default/<pod>/app?follow=true&tailLines=0` over HTTPS) is opened,
//!     then an exec writes N MiB of 128-byte lines (`yes | head -c`) into the container's
//!     stdout (`/proc/1/fd/1`), which containerd turns into CRI log records; timed from the
//!     write's start until the follower has received all N MiB. Several such runs go into
//!     the same log file, which is then read whole, warm in the page cache, three ways: raw
//!     (the file's bytes, no decoding), through `kubelet_core::logs::container_log_stream`
//!     (decoding, no HTTP), and through the server with `follow=true` (decoding + HTTP + TLS).
//!     MiB/s are of log content (what `kubectl logs` prints), the raw read's also of the file.
//! (2) exec round-trip latency, N times, interleaved so that the machine's drift hits each
//!     path alike: `/exec/default/<pod>/app?command=true&output=1` over WebSocket
//!     (`v4.channel.k8s.io`) through the server, from the TCP connect until the status frame
//!     (a new TLS connection each, as `kubectl exec` makes); the floor of CRI `Exec`
//!     (`Runtime::exec_stream`) + WebSocket straight to the runtime's streaming URL; the same
//!     through `kubelet_core::streaming::proxy_to_runtime` alone, on a plain-HTTP server of
//!     the bench's own (the proxy without TLS, authentication and routing, to tell their
//!     costs apart); and CRI `ExecSync` (`Runtime::exec_sync`), which the probes use.
//!
//! `cargo bench --bench kubelet_api`; `KUBELET_BENCH_LOG_MIB` (32), `KUBELET_BENCH_LOG_RUNS`
//! (3) and `KUBELET_BENCH_EXEC_N` (50) change the sizes. Needs root and containerd
//! (scripts/install-deps.sh); prints why and exits 0 otherwise.

// Shared with cri_latency; this bench uses part of it.
#[allow(dead_code)]
mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kubelet_core::logs::{ContainerRunning, LogOptions, container_log_stream};
use kubelet_core::runtime::{ContainerState, ListFilter, StreamOptions};
use kubelet_core::server::authn::Authenticator;
use kubelet_core::server::authz::AlwaysAllow;
use kubelet_core::server::{Auth, Handles, KubeletServer, ServerConfig, tls};
use kubelet_core::testing::pods::{container, pod};
use kubelet_core::testing::{ChannelSource, ChannelSourceSender, RecordingReporter};
use kubelet_core::{Kubelet, KubeletConfig, KubeletError, Runtime, RuntimeManagedNetwork};
use kubelet_cri::CriRuntime;
use kubelet_cri::testing::{BUSYBOX_IMAGE, TestContainerd, missing_prerequisites};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use support::{BoxError, SCRIPT, Table, ms};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

const NODE: &str = "bench-node";
const POD: &str = "bench-api";
const UID: &str = "bench-api-uid";
const CONTAINER: &str = "app";
/// Bound of every wait: the machine is small and shared.
const DEADLINE: Duration = Duration::from_secs(120);
/// How long one follower may wait for its next chunk before the bench gives up.
const CHUNK_DEADLINE: Duration = Duration::from_secs(60);
/// Each log line: 127 bytes and the newline, a plausible application log line (`yes` alone
/// writes 2-byte lines, for which the CRI record overhead would be the whole story). It
/// divides a MiB: a last line without its newline would stay in containerd's line buffer
/// while the container runs, and the follower would never see the last bytes.
const LINE_BYTES: usize = 128;
const MIB: f64 = 1024.0 * 1024.0;
const WS_PROTOCOL: &str = "v4.channel.k8s.io";
/// Untimed round trips of each exec path before the timed ones: the first pays for the
/// shim's first exec and the TLS session setup of the process.
const EXEC_WARMUP: usize = 3;

fn env_usize(name: &str, default: usize) -> Result<usize, BoxError> {
    match std::env::var(name) {
        Ok(s) => match s.parse::<usize>() {
            Ok(0) => Err(format!("{name}={s:?}: must be at least 1").into()),
            Ok(n) => Ok(n),
            Err(e) => Err(format!("{name}={s:?}: {e}").into()),
        },
        Err(_) => Ok(default),
    }
}

/// A CA that issues the bench's client certificate, as the cluster CA issues the API
/// server's `--kubelet-client-certificate`.
struct ClientPki {
    roots: rustls::RootCertStore,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl ClientPki {
    fn new() -> Result<Self, BoxError> {
        let ca_key = KeyPair::generate()?;
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "bench-client-ca");
        ca.distinguished_name = dn;
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca, ca_key);
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca_cert.der().clone())?;

        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "kube-apiserver-kubelet-client");
        dn.push(DnType::OrganizationName, "system:masters");
        params.distinguished_name = dn;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let cert = params.signed_by(&key, &issuer)?;
        Ok(Self {
            roots,
            chain: vec![cert.der().clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        })
    }
}

/// The kubelet and its HTTPS server, in-process.
struct Node {
    reporter: Arc<RecordingReporter>,
    pods: ChannelSourceSender,
    addr: SocketAddr,
    /// The client side: trusts the server's self-signed CA, presents the client certificate.
    tls: Arc<rustls::ClientConfig>,
    http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), KubeletError>>,
    stop_server: Option<oneshot::Sender<()>>,
    server: JoinHandle<Result<(), kubelet_core::server::ServerError>>,
    root: Option<tempfile::TempDir>,
}

impl Node {
    async fn start(env: &TestContainerd) -> Result<Self, BoxError> {
        let root = tempfile::Builder::new()
            .prefix("kubelet-bench-api-")
            .tempdir()?;
        let runtime = Arc::new(env.runtime().await);
        let mut config = KubeletConfig::new(NODE);
        config.root_dir = root.path().join("kubelet");
        config.spec.pod_logs_root = env.log_dir().to_string_lossy().into_owned();
        // containerd leaves pod cgroups behind; the kubelet removes them, as the daemon does.
        config.cgroup_fs_root = Some("/sys/fs/cgroup".into());
        config.node_ips = vec!["192.0.2.10".into()];
        let reporter = Arc::new(RecordingReporter::new());
        let (source, pods) = ChannelSource::new("api");
        let kubelet = Kubelet::builder(config)
            .runtime(runtime.clone())
            .network(Arc::new(RuntimeManagedNetwork))
            .reporter(reporter.clone())
            .source(Box::new(source))
            .build()?;
        let handles = Handles {
            kubelet: kubelet.handle(),
            runtime,
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(kubelet.run(async move {
            let _ = stopped.await;
        }));

        let pki = ClientPki::new()?;
        let mut server_config = ServerConfig::new(NODE, (Ipv4Addr::LOCALHOST, 0).into());
        server_config.tls.cert_dir = root.path().join("pki");
        server_config.tls.hostname = "localhost".into();
        server_config.tls.node_ips = vec![Ipv4Addr::LOCALHOST.into()];
        server_config.node_log_dir = root.path().join("var-log");
        server_config.pod_logs_root = env.log_dir().to_path_buf();
        let server_tls = tls::server_config(&server_config.tls, Some(&pki.roots))?;
        let auth = Auth {
            authenticator: Authenticator::new()
                .anonymous(false)
                .client_ca(pki.roots.clone())?,
            authorizer: Arc::new(AlwaysAllow),
        };
        // The self-signed pair was just written: its last certificate is its CA.
        let served: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(server_config.tls.cert_dir.join(tls::SELF_SIGNED_CERT))?
                .collect::<Result<_, _>>()?;
        let server_ca = served.last().ok_or("no serving certificate")?.clone();
        let bound = KubeletServer::bind_with_tls(server_config, server_tls, auth, handles).await?;
        let addr = bound.local_addr();
        let (stop_server, server_stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(bound.serve(async move {
            let _ = server_stopped.await;
        }));

        let mut trusted = rustls::RootCertStore::empty();
        trusted.add(server_ca)?;
        let client_tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(trusted)
        .with_client_auth_cert(pki.chain, pki.key)?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(client_tls.clone())
            .build()?;
        Ok(Self {
            reporter,
            pods,
            addr,
            tls: Arc::new(client_tls),
            http,
            stop: Some(stop),
            task,
            stop_server: Some(stop_server),
            server,
            root: Some(root),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.addr.port())
    }

    async fn shutdown(mut self) -> Result<(), BoxError> {
        if let Some(stop) = self.stop_server.take() {
            let _ = stop.send(());
        }
        (&mut self.server).await??;
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await??;
        if let Some(root) = self.root.take() {
            let path = root.path().display().to_string();
            root.close().map_err(|e| format!("removing {path}: {e}"))?;
        }
        Ok(())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // On an early return neither may outlive the containerd they talk to.
        self.server.abort();
        self.task.abort();
    }
}

/// Polls `check` every 50 ms until it holds; fails with `what` after [`DEADLINE`].
async fn poll_until<F, Fut>(what: &str, mut check: F) -> Result<(), BoxError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool, BoxError>>,
{
    let started = Instant::now();
    loop {
        if check().await? {
            return Ok(());
        }
        if started.elapsed() > DEADLINE {
            return Err(format!("timed out after {DEADLINE:?} waiting for {what}").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Starts the pod through the kubelet and waits until the server serves its logs; the
/// container's runtime ID.
async fn start_pod(node: &Node, observer: &CriRuntime) -> Result<String, BoxError> {
    let p = pod(POD)
        .uid(UID)
        .container(
            container(CONTAINER, BUSYBOX_IMAGE)
                .command(["sh", "-c", SCRIPT])
                .pull_policy("IfNotPresent"),
        )
        .grace_period(10)
        .build();
    node.pods.add(p);
    let wait = node
        .reporter
        .wait_for(|r| r.last_phase(UID).as_deref() == Some("Running"));
    if tokio::time::timeout(DEADLINE, wait).await.is_err() {
        return Err(format!(
            "pod {POD} not Running within {DEADLINE:?}; last status {:?}",
            node.reporter.last_pod_status(UID)
        )
        .into());
    }
    // The server answers from the kubelet's own view, which may trail the report a little.
    let logs = node.url(&format!("/containerLogs/default/{POD}/{CONTAINER}"));
    poll_until("the server to serve the container's logs", || async {
        Ok(node.http.get(&logs).send().await?.status().is_success())
    })
    .await?;
    let containers = observer.list_containers(&ListFilter::pod(UID)).await?;
    containers
        .into_iter()
        .find(|c| c.metadata.name == CONTAINER && c.state == ContainerState::Running)
        .map(|c| c.id)
        .ok_or_else(|| "the container is not running".into())
}

/// Removes the pod through the kubelet and waits until the runtime holds nothing of it, so
/// that the harness's own cleanup has nothing left to do.
async fn remove_pod(node: &Node, observer: &CriRuntime) -> Result<(), BoxError> {
    node.pods.remove(UID.to_string());
    poll_until("the pod's removal from the runtime", || async {
        Ok(observer
            .list_pod_sandboxes(&ListFilter::pod(UID))
            .await?
            .is_empty())
    })
    .await
}

fn mib_per_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / MIB / d.as_secs_f64().max(1e-9)
}

/// Reads a response body until `want` bytes came; the time of the first chunk and the count.
async fn drain_body(
    mut resp: reqwest::Response,
    want: u64,
    started: Instant,
) -> Result<(Duration, u64), BoxError> {
    let mut got = 0u64;
    let mut first = None;
    while got < want {
        let chunk = tokio::time::timeout(CHUNK_DEADLINE, resp.chunk())
            .await
            .map_err(|_| format!("no log output for {CHUNK_DEADLINE:?} at {got} of {want} bytes"))?
            .map_err(|e| format!("reading the log stream at {got} of {want} bytes: {e}"))?
            .ok_or_else(|| format!("the log stream ended at {got} of {want} bytes"))?;
        first.get_or_insert_with(|| started.elapsed());
        got += chunk.len() as u64;
    }
    Ok((first.unwrap_or_default(), got))
}

/// One throughput measurement.
struct Rate {
    name: String,
    bytes: u64,
    content: u64,
    time: Duration,
}

fn print_rates(title: &str, rows: &[Rate]) {
    println!();
    println!("{title}");
    println!();
    println!("| path | bytes read (MiB) | time (ms) | MiB/s read | content MiB/s |");
    println!("|---|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {:.1} | {} | {:.1} | {:.1} |",
            r.name,
            r.bytes as f64 / MIB,
            ms(r.time),
            mib_per_s(r.bytes, r.time),
            mib_per_s(r.content, r.time),
        );
    }
}

/// (1a) A follower through the server while the container writes `bytes`, `runs` times.
async fn live_follow(
    node: &Node,
    rt: &CriRuntime,
    id: &str,
    bytes: u64,
    runs: usize,
) -> Result<Table, BoxError> {
    let mut table = Table::default();
    let line = "x".repeat(LINE_BYTES - 1);
    // Into the main process's stdout, so that it lands in the container's log as the
    // application's own output would.
    let writer = [
        "sh".to_string(),
        "-c".to_string(),
        format!("yes {line} | head -c {bytes} > /proc/1/fd/1"),
    ];
    // Only what is written from now on: earlier runs are in the same file.
    let url = node.url(&format!(
        "/containerLogs/default/{POD}/{CONTAINER}?follow=true&tailLines=0"
    ));
    for _ in 0..runs {
        let resp = node.http.get(&url).send().await?;
        if !resp.status().is_success() {
            return Err(format!("{url}: {}", resp.status()).into());
        }
        let started = Instant::now();
        let write = {
            let rt = rt.clone();
            let id = id.to_string();
            let writer = writer.clone();
            tokio::spawn(async move {
                let out = rt.exec_sync(&id, &writer, DEADLINE).await?;
                if out.exit_code != 0 {
                    return Err::<Duration, BoxError>(
                        format!(
                            "the writer exited {}: {}",
                            out.exit_code,
                            String::from_utf8_lossy(&out.stderr)
                        )
                        .into(),
                    );
                }
                Ok(started.elapsed())
            })
        };
        let (first, got) = drain_body(resp, bytes, started).await?;
        let done = started.elapsed();
        let written = write.await??;
        if got != bytes {
            return Err(format!("the follower got {got} bytes, {bytes} written").into());
        }
        table.record("write start -> first byte at the client", first);
        table.record("write start -> writer done (ExecSync returned)", written);
        table.record("write start -> last byte at the client", done);
        // How far the follower trails the writer: the share of the time that is the
        // kubelet's (the rest is containerd turning the output into log records).
        table.record(
            "writer done -> last byte at the client",
            done.saturating_sub(written),
        );
    }
    Ok(table)
}

/// The raw floor: the file's bytes, 64 KiB at a time (the log reader's buffer size).
async fn read_raw(path: &Path) -> Result<(u64, Duration), BoxError> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let started = Instant::now();
        let mut file = std::fs::File::open(&path)?;
        let mut buf = vec![0u8; 64 * 1024];
        let mut total = 0u64;
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            total += n as u64;
        }
        Ok((total, started.elapsed()))
    })
    .await?
}

/// The decoding floor: `container_log_stream` with `follow=true` on a running container,
/// until `want` content bytes came (where the follower would wait for more).
async fn read_decoded(path: &Path, want: u64) -> Result<Duration, BoxError> {
    let opts = LogOptions::from_query("follow=true")?;
    let running = ContainerRunning::new(|| async { true });
    let started = Instant::now();
    let mut stream = container_log_stream(PathBuf::from(path), opts, running);
    let mut got = 0u64;
    while got < want {
        let chunk = tokio::time::timeout(CHUNK_DEADLINE, stream.next())
            .await
            .map_err(|_| format!("no output for {CHUNK_DEADLINE:?} at {got} of {want} bytes"))?
            .ok_or_else(|| format!("the stream ended at {got} of {want} bytes"))??;
        got += chunk.len() as u64;
    }
    Ok(started.elapsed())
}

/// Through the server: `follow=true` from the file's start, until `want` content bytes came.
async fn read_https(node: &Node, want: u64) -> Result<Duration, BoxError> {
    let url = node.url(&format!(
        "/containerLogs/default/{POD}/{CONTAINER}?follow=true"
    ));
    let started = Instant::now();
    let resp = node.http.get(&url).send().await?;
    if !resp.status().is_success() {
        return Err(format!("{url}: {}", resp.status()).into());
    }
    drain_body(resp, want, started).await?;
    Ok(started.elapsed())
}

/// (1b) The whole log file, warm, three ways, `reps` times each (interleaved); the median
/// of each.
async fn whole_file(
    node: &Node,
    path: &Path,
    content: u64,
    reps: usize,
) -> Result<Vec<Rate>, BoxError> {
    let mut raw = Vec::new();
    let mut decoded = Vec::new();
    let mut https = Vec::new();
    let mut file_bytes = 0;
    for _ in 0..reps {
        let (n, d) = read_raw(path).await?;
        file_bytes = n;
        raw.push(d);
        decoded.push(read_decoded(path, content).await?);
        https.push(read_https(node, content).await?);
    }
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    Ok(vec![
        Rate {
            name: "raw file read (64 KiB reads, no decoding)".into(),
            bytes: file_bytes,
            content,
            time: median(raw),
        },
        Rate {
            name: "`container_log_stream`, follow (decoding, no HTTP)".into(),
            bytes: content,
            content,
            time: median(decoded),
        },
        Rate {
            name: "HTTPS `/containerLogs?follow=true` (kubelet server)".into(),
            bytes: content,
            content,
            time: median(https),
        },
    ])
}

/// Reads a `v4.channel.k8s.io` session until its status frame (channel 3); the status.
async fn until_status<S>(ws: &mut S) -> Result<serde_json::Value, BoxError>
where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        let msg = tokio::time::timeout(DEADLINE, ws.next())
            .await
            .map_err(|_| "no status frame in time")?
            .ok_or("the stream closed before the status frame")??;
        let data = match msg {
            Message::Binary(b) => b.to_vec(),
            Message::Text(t) => t.as_bytes().to_vec(),
            Message::Close(_) => return Err("the stream closed before the status frame".into()),
            _ => continue,
        };
        if let Some((3, status)) = data.split_first() {
            return Ok(serde_json::from_slice(status)?);
        }
    }
}

fn check_success(status: &serde_json::Value, path: &str) -> Result<(), BoxError> {
    if status["status"] == "Success" {
        Ok(())
    } else {
        Err(format!("{path}: exec status {status}").into())
    }
}

fn ws_request(url: &str) -> Result<tokio_tungstenite::tungstenite::http::Request<()>, BoxError> {
    let mut request = url.into_client_request()?;
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static(WS_PROTOCOL),
    );
    Ok(request)
}

/// One exec of `true` through the server; the steps' times, or none for a warm-up.
async fn exec_kubelet(node: &Node, table: Option<&mut Table>) -> Result<(), BoxError> {
    let url = format!(
        "wss://127.0.0.1:{}/exec/default/{POD}/{CONTAINER}?command=true&output=1",
        node.addr.port()
    );
    let request = ws_request(&url)?;
    let started = Instant::now();
    let tcp = tokio::net::TcpStream::connect(node.addr).await?;
    tcp.set_nodelay(true)?;
    let tls = tokio_rustls::TlsConnector::from(node.tls.clone())
        .connect(ServerName::IpAddress(Ipv4Addr::LOCALHOST.into()), tcp)
        .await?;
    let handshake = started.elapsed();
    let (mut ws, _) = tokio_tungstenite::client_async(request, tls).await?;
    let upgraded = started.elapsed();
    let status = until_status(&mut ws).await?;
    let done = started.elapsed();
    // The runtime closes the stream after the status; the close is not timed.
    let _ = ws.close(None).await;
    check_success(&status, "kubelet /exec")?;
    if let Some(t) = table {
        t.record("kubelet `/exec` over WSS: connect -> status frame", done);
        t.record("  TCP + TLS handshake (client certificate)", handshake);
        t.record(
            "  WebSocket upgrade (authn, CRI Exec, proxy's upgrade to the runtime)",
            upgraded - handshake,
        );
        t.record(
            "  upgraded -> status frame, through the proxy",
            done - upgraded,
        );
    }
    Ok(())
}

/// The floor: CRI `Exec`, then WebSocket straight to the runtime's URL.
async fn exec_direct(rt: &CriRuntime, id: &str, table: Option<&mut Table>) -> Result<(), BoxError> {
    let cmd = ["true".to_string()];
    let opts = StreamOptions {
        stdout: true,
        ..StreamOptions::default()
    };
    let started = Instant::now();
    let url = rt.exec_stream(id, &cmd, opts).await?;
    let exec_call = started.elapsed();
    // containerd hands out an http:// URL; the WebSocket client names the same thing ws://.
    let url = match url.strip_prefix("http://") {
        Some(rest) => format!("ws://{rest}"),
        None => url,
    };
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_request(&url)?).await?;
    let upgraded = started.elapsed();
    let status = until_status(&mut ws).await?;
    let done = started.elapsed();
    let _ = ws.close(None).await;
    check_success(&status, "the runtime's streaming URL")?;
    if let Some(t) = table {
        t.record("CRI Exec + WS to the runtime's URL -> status frame", done);
        t.record("  CRI Exec (the URL)", exec_call);
        t.record("  WebSocket upgrade at the runtime", upgraded - exec_call);
        t.record("  upgraded -> status frame, straight", done - upgraded);
    }
    Ok(())
}

/// A plain-HTTP server of the bench's own whose one route is
/// `kubelet_core::streaming::proxy_to_runtime` to the URL in `target`: the kubelet's proxy
/// without its TLS, authentication, routing and container lookup.
struct BareProxy {
    url: String,
    target: Arc<std::sync::Mutex<String>>,
    task: JoinHandle<()>,
}

impl BareProxy {
    async fn start() -> Result<Self, BoxError> {
        let target = Arc::new(std::sync::Mutex::new(String::new()));
        let shared = target.clone();
        let app = axum::Router::new().route(
            "/stream",
            axum::routing::any(move |req: axum::extract::Request| {
                let url = shared.lock().map(|t| t.clone()).unwrap_or_default();
                async move { kubelet_core::streaming::proxy_to_runtime(req, &url).await }
            }),
        );
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let url = format!("ws://{}/stream", listener.local_addr()?);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { url, target, task })
    }
}

impl Drop for BareProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// CRI `Exec`, then WebSocket through [`BareProxy`] to the runtime's URL.
async fn exec_bare_proxy(
    proxy: &BareProxy,
    rt: &CriRuntime,
    id: &str,
    table: Option<&mut Table>,
) -> Result<(), BoxError> {
    let cmd = ["true".to_string()];
    let opts = StreamOptions {
        stdout: true,
        ..StreamOptions::default()
    };
    let started = Instant::now();
    let url = rt.exec_stream(id, &cmd, opts).await?;
    *proxy
        .target
        .lock()
        .map_err(|_| "proxy target lock poisoned")? = url;
    let exec_call = started.elapsed();
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_request(&proxy.url)?).await?;
    let upgraded = started.elapsed();
    let status = until_status(&mut ws).await?;
    let done = started.elapsed();
    let _ = ws.close(None).await;
    check_success(&status, "the bare proxy")?;
    if let Some(t) = table {
        t.record(
            "CRI Exec + WS via `proxy_to_runtime` alone (plain HTTP) -> status frame",
            done,
        );
        t.record(
            "  WebSocket upgrade through the bare proxy",
            upgraded - exec_call,
        );
        t.record(
            "  upgraded -> status frame, through the bare proxy",
            done - upgraded,
        );
    }
    Ok(())
}

async fn exec_sync(rt: &CriRuntime, id: &str, table: Option<&mut Table>) -> Result<(), BoxError> {
    let started = Instant::now();
    let out = rt.exec_sync(id, &["true".to_string()], DEADLINE).await?;
    let done = started.elapsed();
    if out.exit_code != 0 {
        return Err(format!("ExecSync of `true` exited {}", out.exit_code).into());
    }
    if let Some(t) = table {
        t.record("CRI ExecSync", done);
    }
    Ok(())
}

/// (2) The three exec paths, `n` rounds, each round one of each.
async fn exec_latency(node: &Node, rt: &CriRuntime, id: &str, n: usize) -> Result<Table, BoxError> {
    let proxy = BareProxy::start().await?;
    for _ in 0..EXEC_WARMUP {
        exec_kubelet(node, None).await?;
        exec_direct(rt, id, None).await?;
        exec_bare_proxy(&proxy, rt, id, None).await?;
        exec_sync(rt, id, None).await?;
    }
    // Rows print in the order first recorded: each path's rows stay together.
    let mut table = Table::default();
    for _ in 0..n {
        exec_kubelet(node, Some(&mut table)).await?;
        exec_direct(rt, id, Some(&mut table)).await?;
        exec_bare_proxy(&proxy, rt, id, Some(&mut table)).await?;
        exec_sync(rt, id, Some(&mut table)).await?;
    }
    Ok(table)
}

async fn run() -> Result<(), BoxError> {
    let log_mib = env_usize("KUBELET_BENCH_LOG_MIB", 32)?;
    let runs = env_usize("KUBELET_BENCH_LOG_RUNS", 3)?;
    let exec_n = env_usize("KUBELET_BENCH_EXEC_N", 50)?;
    let Some(env) = TestContainerd::try_start().await? else {
        println!("kubelet_api: skipped (see above)");
        return Ok(());
    };
    let rt = env.runtime().await;
    let version = rt.version().await?;
    println!(
        "kubelet_api: {} {} at {}; kubelet server on 127.0.0.1 (HTTPS, x509 client certificate, \
         AlwaysAllow); {runs} x {log_mib} MiB of {LINE_BYTES}-byte lines; {exec_n} execs per path",
        version.runtime_name,
        version.runtime_version,
        env.endpoint()
    );

    let node = Node::start(&env).await?;
    let id = start_pod(&node, &rt).await?;

    let bytes = u64::try_from(log_mib)? * 1024 * 1024;
    let live = live_follow(&node, &rt, &id, bytes, runs).await?;
    live.print(&format!(
        "(1a) `kubectl logs -f` through the kubelet server while the container writes {log_mib} MiB \
         ({runs} runs; {log_mib} MiB / p50 = {:.1} MiB/s end to end)",
        live.get("write start -> last byte at the client")
            .map_or(0.0, |s| mib_per_s(bytes, s.percentile(50.0)))
    ));

    let log_file = kubelet_core::logs::pod_log_dir(env.log_dir(), "default", POD, UID)
        .join(CONTAINER)
        .join("0.log");
    let content = bytes * u64::try_from(runs)?;
    let rates = whole_file(&node, &log_file, content, 3).await?;
    print_rates(
        &format!(
            "(1b) the whole log file ({:.0} MiB of content), warm in the page cache, median of 3",
            content as f64 / MIB
        ),
        &rates,
    );

    let exec = exec_latency(&node, &rt, &id, exec_n).await?;
    exec.print(&format!(
        "(2) exec of `true` (stdout only), {exec_n} rounds, the paths interleaved"
    ));

    remove_pod(&node, &rt).await?;
    node.shutdown().await?;
    // `env` drops here: containerd is killed, the bridge, iptables chains and pod cgroups go.
    Ok(())
}

fn main() -> Result<(), BoxError> {
    if let Some(why) = missing_prerequisites() {
        println!("kubelet_api: skipped: needs a real containerd: {why}");
        return Ok(());
    }
    // `RUST_LOG=kubelet_core=info` shows the kubelet's log on stderr.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run())
}
