//! A kubelet on real containerd with its HTTPS server, in-process, for tests of what clients
//! see through port 10250: the reconciler over `CriRuntime` with a channel pod source and a
//! recording reporter, and `KubeletServer` on 127.0.0.1 with a self-signed serving
//! certificate, x509 client certificates of a CA made here and `AlwaysAllow`. The test is the
//! client, with a certificate of that CA, as the API server is with its
//! `--kubelet-client-certificate`.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kubelet_core::runtime::{ContainerState, ListFilter};
use kubelet_core::server::authn::Authenticator;
use kubelet_core::server::authz::AlwaysAllow;
use kubelet_core::server::{Auth, Handles, KubeletServer, ServerConfig, tls};
use kubelet_core::testing::{ChannelSource, ChannelSourceSender, RecordingReporter};
use kubelet_core::{Kubelet, KubeletConfig, KubeletError, Runtime, RuntimeManagedNetwork};
use kubelet_cri::CriRuntime;
use kubelet_cri::testing::TestContainerd;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The node's name.
pub const NODE: &str = "streams-node";
/// Bound of every wait: the machine is small and shared.
pub const DEADLINE: Duration = Duration::from_secs(90);
/// A main process that idles until SIGTERM, then exits 0 at once.
pub const SERVE: &str = "trap 'exit 0' TERM; sleep 3600 & wait";

/// The client side of the PKI: the CA the server trusts for client certificates, and the
/// test's certificate from it (CN `kube-apiserver-kubelet-client`, O `system:masters`).
struct ClientPki {
    roots: rustls::RootCertStore,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl ClientPki {
    fn new() -> Self {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "streams-client-ca");
        ca.distinguished_name = dn;
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca.self_signed(&ca_key).expect("CA cert");
        let issuer = Issuer::new(ca, ca_key);
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca_cert.der().clone()).expect("CA root");

        let key = KeyPair::generate().expect("client key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("client params");
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "kube-apiserver-kubelet-client");
        dn.push(DnType::OrganizationName, "system:masters");
        params.distinguished_name = dn;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let cert = params.signed_by(&key, &issuer).expect("client cert");
        Self {
            roots,
            chain: vec![cert.der().clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        }
    }
}

/// The kubelet, its HTTPS server and a client of it. Field order is drop order: the server
/// and the kubelet go before the containerd they talk to.
pub struct Node {
    /// What the kubelet reported.
    pub reporter: Arc<RecordingReporter>,
    /// The kubelet's pod source.
    pub pods: ChannelSourceSender,
    /// The server's address.
    pub addr: SocketAddr,
    /// A client trusting the server, presenting the client certificate.
    pub tls: Arc<rustls::ClientConfig>,
    /// An HTTPS client with that configuration.
    pub http: reqwest::Client,
    /// A CRI client of the test's own, to look at the runtime.
    pub observer: CriRuntime,
    added: std::sync::Mutex<Vec<String>>,
    stop_server: Option<oneshot::Sender<()>>,
    server: JoinHandle<Result<(), kubelet_core::server::ServerError>>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), KubeletError>>,
    root: Option<tempfile::TempDir>,
    /// The containerd; dropped last.
    pub env: TestContainerd,
}

impl Drop for Node {
    fn drop(&mut self) {
        // On a failed assertion neither may outlive the containerd they talk to.
        self.server.abort();
        self.task.abort();
    }
}

impl Node {
    /// Starts containerd, the kubelet and its server; `None` when no containerd can run here
    /// (the reason was printed; a failure under `KUBELET_TEST_REQUIRE_CONTAINERD=1`).
    pub async fn start() -> Option<Self> {
        let env = TestContainerd::start().await?;
        let root = tempfile::Builder::new()
            .prefix("kubelet-streams-")
            .tempdir()
            .expect("tempdir");
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
            .build()
            .expect("kubelet");
        let handles = Handles {
            kubelet: kubelet.handle(),
            runtime,
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(kubelet.run(async move {
            let _ = stopped.await;
        }));

        let pki = ClientPki::new();
        let mut server_config = ServerConfig::new(NODE, (Ipv4Addr::LOCALHOST, 0).into());
        server_config.tls.cert_dir = root.path().join("pki");
        server_config.tls.hostname = "localhost".into();
        server_config.tls.node_ips = vec![Ipv4Addr::LOCALHOST.into()];
        server_config.node_log_dir = root.path().join("var-log");
        server_config.pod_logs_root = env.log_dir().to_path_buf();
        let server_tls =
            tls::server_config(&server_config.tls, Some(&pki.roots)).expect("server TLS");
        let auth = Auth {
            authenticator: Authenticator::new()
                .anonymous(false)
                .client_ca(pki.roots.clone())
                .expect("client CA"),
            authorizer: Arc::new(AlwaysAllow),
        };
        // The self-signed pair was just written: its last certificate is its CA.
        let served: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(server_config.tls.cert_dir.join(tls::SELF_SIGNED_CERT))
                .expect("serving certificate")
                .collect::<Result<_, _>>()
                .expect("PEM");
        let server_ca = served.last().expect("serving CA").clone();
        let bound = KubeletServer::bind_with_tls(server_config, server_tls, auth, handles)
            .await
            .expect("bind");
        let addr = bound.local_addr();
        let (stop_server, server_stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(bound.serve(async move {
            let _ = server_stopped.await;
        }));

        let mut trusted = rustls::RootCertStore::empty();
        trusted.add(server_ca).expect("trust");
        let client_tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(trusted)
        .with_client_auth_cert(pki.chain, pki.key)
        .expect("client certificate");
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(client_tls.clone())
            .build()
            .expect("HTTPS client");
        let observer = env.runtime().await;
        Some(Self {
            reporter,
            pods,
            addr,
            tls: Arc::new(client_tls),
            http,
            observer,
            added: std::sync::Mutex::new(Vec::new()),
            stop_server: Some(stop_server),
            server,
            stop: Some(stop),
            task,
            root: Some(root),
            env,
        })
    }

    /// `https://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.addr.port())
    }

    /// `127.0.0.1:<port>`, for Host headers.
    pub fn authority(&self) -> String {
        format!("127.0.0.1:{}", self.addr.port())
    }

    /// A new TLS connection to the server, client certificate presented.
    pub async fn connect(&self) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
        let tcp = tokio::net::TcpStream::connect(self.addr)
            .await
            .expect("TCP connect");
        tcp.set_nodelay(true).expect("nodelay");
        tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(ServerName::IpAddress(Ipv4Addr::LOCALHOST.into()), tcp)
            .await
            .expect("TLS handshake")
    }

    /// Adds `pod` through the source and waits until it reports `phase` (`Running`,
    /// `Succeeded`...) and the server knows the pod (it answers from the kubelet's own view,
    /// which may trail the report a little).
    pub async fn run_pod(&self, pod: Pod, phase: &str) {
        let uid = pod.metadata.uid.clone().expect("pod UID");
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().expect("pod name");
        let first = pod
            .spec
            .as_ref()
            .and_then(|s| s.containers.first())
            .map(|c| c.name.clone())
            .expect("a container");
        self.added.lock().expect("lock").push(uid.clone());
        self.pods.add(pod);
        let wait = self
            .reporter
            .wait_for(|r| r.last_phase(&uid).as_deref() == Some(phase));
        if tokio::time::timeout(DEADLINE, wait).await.is_err() {
            panic!(
                "pod {name} not {phase} within {DEADLINE:?}; last status {:?}",
                self.reporter.last_pod_status(&uid)
            );
        }
        let logs = self.url(&format!("/containerLogs/{namespace}/{name}/{first}"));
        poll_until("the server to know the pod", || async {
            self.http
                .get(&logs)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .await;
    }

    /// The runtime ID of the running container `name` of the pod `uid`.
    pub async fn running_container(&self, uid: &str, name: &str) -> String {
        self.observer
            .list_containers(&ListFilter::pod(uid))
            .await
            .expect("list containers")
            .into_iter()
            .find(|c| c.metadata.name == name && c.state == ContainerState::Running)
            .map(|c| c.id)
            .unwrap_or_else(|| panic!("container {name} of {uid} is not running"))
    }

    /// Removes every pod the test added and waits until the runtime holds none of them, then
    /// stops the server and the kubelet.
    pub async fn shutdown(mut self) {
        let added = std::mem::take(&mut *self.added.lock().expect("lock"));
        for uid in &added {
            self.pods.remove(uid.clone());
        }
        for uid in &added {
            poll_until("the pod's removal from the runtime", || async {
                self.observer
                    .list_pod_sandboxes(&ListFilter::pod(uid.as_str()))
                    .await
                    .is_ok_and(|s| s.is_empty())
            })
            .await;
        }
        if let Some(stop) = self.stop_server.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.server).await;
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
        if let Some(root) = self.root.take() {
            root.close().expect("remove the kubelet's root");
        }
    }
}

/// Polls `check` every 100 ms until it holds; panics with `what` after [`DEADLINE`].
pub async fn poll_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(
            started.elapsed() < DEADLINE,
            "timed out after {DEADLINE:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
