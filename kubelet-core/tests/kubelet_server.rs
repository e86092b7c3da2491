#![cfg(feature = "server")]
//! The kubelet's HTTPS server over real TLS: client certificates made by rcgen (from the
//! client CA and from another CA), anonymous requests, `tlsMinVersion`, the self-signed
//! serving certificate, the endpoints; and, against the real kube-apiserver of the envtest
//! harness (skipped with a message unless `KUBELET_TEST_ASSETS` is set), bearer tokens
//! through TokenReview and authorization through SubjectAccessReview.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kubelet_core::server::authn::Authenticator;
use kubelet_core::server::authz::{AlwaysAllow, Authorizer};
use kubelet_core::server::{Auth, Handles, KubeletServer, ServerConfig, tls};
use kubelet_core::testing::{ChannelSource, ChannelSourceSender, FakeRuntime, RecordingReporter};
use kubelet_core::{Kubelet, KubeletConfig, KubeletHandle};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

const IMAGE: &str = "docker.io/library/busybox:local";

/// A CA that issues client certificates.
struct Ca {
    cert: rcgen::Certificate,
    issuer: Issuer<'static, KeyPair>,
}

/// A client certificate and its key.
struct ClientCert {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Ca {
    fn new(name: &str) -> Self {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).expect("CA cert");
        Self {
            cert,
            issuer: Issuer::new(params, key),
        }
    }

    fn roots(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.cert.der().clone()).expect("CA root");
        roots
    }

    fn client(&self, user: &str, group: Option<&str>) -> ClientCert {
        let key = KeyPair::generate().expect("client key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("client params");
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, user);
        if let Some(group) = group {
            dn.push(DnType::OrganizationName, group);
        }
        params.distinguished_name = dn;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let cert = params.signed_by(&key, &self.issuer).expect("client cert");
        ClientCert {
            chain: vec![cert.der().clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        }
    }
}

/// A kubelet over the fake runtime, running on real time, with a channel source.
struct Node {
    handle: KubeletHandle,
    runtime: Arc<FakeRuntime>,
    pods: ChannelSourceSender,
    dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Node {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let runtime = Arc::new(FakeRuntime::with_images([IMAGE]));
        let mut config = KubeletConfig::new("node-1");
        config.root_dir = dir.path().join("kubelet");
        config.spec.pod_logs_root = dir.path().join("pods").to_string_lossy().into_owned();
        let (source, pods) = ChannelSource::new("api");
        let kubelet = Kubelet::builder(config)
            .runtime(runtime.clone())
            .reporter(Arc::new(RecordingReporter::new()))
            .source(Box::new(source))
            .build()
            .expect("kubelet");
        let handle = kubelet.handle();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = kubelet
                .run(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        Self {
            handle,
            runtime,
            pods,
            dir,
            stop: Some(stop),
            task,
        }
    }

    fn handles(&self) -> Handles {
        Handles {
            kubelet: self.handle.clone(),
            runtime: self.runtime.clone(),
        }
    }

    fn config(&self) -> ServerConfig {
        let mut config = ServerConfig::new("node-1", "127.0.0.1:0".parse().expect("addr"));
        config.tls.cert_dir = self.dir.path().join("kubelet").join("pki");
        config.tls.hostname = "localhost".into();
        config.tls.node_ips = vec!["127.0.0.1".parse().expect("ip")];
        config.node_log_dir = self.dir.path().join("var-log");
        config.pod_logs_root = self.dir.path().join("pods");
        config
    }

    async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

/// A running server and what a client needs to trust it.
struct Running {
    addr: SocketAddr,
    server_ca: CertificateDer<'static>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn start(
        config: ServerConfig,
        client_ca: Option<&Ca>,
        token: Option<Arc<dyn kubelet_core::server::TokenAuthenticator>>,
        anonymous: bool,
        authorizer: Arc<dyn Authorizer>,
        handles: Handles,
    ) -> Self {
        let roots = client_ca.map(Ca::roots);
        let tls_config = tls::server_config(&config.tls, roots.as_ref()).expect("TLS config");
        let mut authenticator = Authenticator::new().anonymous(anonymous);
        if let Some(roots) = roots {
            authenticator = authenticator.client_ca(roots).expect("client CA");
        }
        if let Some(token) = token {
            authenticator = authenticator.token(token);
        }
        // The self-signed pair was just written: its second certificate is the CA.
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(config.tls.cert_dir.join(tls::SELF_SIGNED_CERT))
                .expect("cert file")
                .collect::<Result<_, _>>()
                .expect("PEM");
        let server_ca = chain.last().expect("CA").clone();
        let auth = Auth {
            authenticator,
            authorizer,
        };
        let server = KubeletServer::bind_with_tls(config, tls_config, auth, handles)
            .await
            .expect("bind");
        let addr = server.local_addr();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .serve(async move {
                    let _ = stopped.await;
                })
                .await
                .expect("serve");
        });
        Self {
            addr,
            server_ca,
            stop: Some(stop),
            task,
        }
    }

    fn client(&self, cert: Option<&ClientCert>) -> reqwest::Client {
        self.client_with_versions(cert, rustls::DEFAULT_VERSIONS)
    }

    fn client_with_versions(
        &self,
        cert: Option<&ClientCert>,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> reqwest::Client {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.server_ca.clone()).expect("server CA");
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(versions)
        .expect("versions")
        .with_root_certificates(roots);
        let tls = match cert {
            Some(c) => builder
                .with_client_auth_cert(c.chain.clone(), c.key.clone_key())
                .expect("client cert"),
            None => builder.with_no_client_auth(),
        };
        reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(Duration::from_secs(20))
            .build()
            .expect("client")
    }

    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.addr.port())
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

async fn get(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
) -> Result<(u16, String), reqwest::Error> {
    let mut request = client.get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    Ok((status, response.text().await?))
}

fn pod(name: &str, containers: &[&str]) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            uid: Some(format!("uid-{name}")),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: containers
                .iter()
                .map(|c| Container {
                    name: (*c).into(),
                    image: Some(IMAGE.into()),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_anonymous_requests_and_tls_versions() {
    let node = Node::start();
    let client_ca = Ca::new("kubelet-client-ca");
    let server = Running::start(
        node.config(),
        Some(&client_ca),
        None,
        false,
        Arc::new(AlwaysAllow),
        node.handles(),
    )
    .await;

    // A certificate from the client CA: authenticated, and AlwaysAllow lets it in.
    let alice = client_ca.client("alice", Some("devs"));
    let (status, body) = get(&server.client(Some(&alice)), &server.url("/healthz"), None)
        .await
        .expect("request with the CA's certificate");
    assert_eq!((status, body.as_str()), (200, "ok"));

    // No credentials and anonymous off: 401 with the reference's body.
    let (status, body) = get(&server.client(None), &server.url("/healthz"), None)
        .await
        .expect("anonymous request");
    assert_eq!((status, body.as_str()), (401, "Unauthorized"));
    // An unknown path is a 401 too before it is a 404.
    let (status, _) = get(&server.client(None), &server.url("/nope"), None)
        .await
        .expect("anonymous request");
    assert_eq!(status, 401);

    // A certificate from another CA: the handshake succeeds, the request is a 401.
    let other = Ca::new("someone-else").client("mallory", Some("system:masters"));
    let (status, body) = get(&server.client(Some(&other)), &server.url("/pods"), None)
        .await
        .expect("request with a foreign certificate");
    assert_eq!((status, body.as_str()), (401, "Unauthorized"));

    // A bearer token with no token authenticator configured is no credential at all.
    let (status, _) = get(&server.client(None), &server.url("/pods"), Some("abc"))
        .await
        .expect("token request");
    assert_eq!(status, 401);
    server.stop().await;

    // tlsMinVersion VersionTLS13: a TLS 1.2-only client cannot connect, a 1.3 one can.
    let mut config = node.config();
    config.tls.min_version = Some("VersionTLS13".into());
    let server = Running::start(
        config,
        Some(&client_ca),
        None,
        true,
        Arc::new(AlwaysAllow),
        node.handles(),
    )
    .await;
    let tls12 = server.client_with_versions(Some(&alice), &[&rustls::version::TLS12]);
    let err = get(&tls12, &server.url("/healthz"), None)
        .await
        .expect_err("TLS 1.2 refused");
    assert!(err.is_connect() || err.is_request(), "{err:?}");
    let tls13 = server.client_with_versions(None, &[&rustls::version::TLS13]);
    // Anonymous allowed this time: no certificate needed.
    let (status, body) = get(&tls13, &server.url("/healthz"), None)
        .await
        .expect("TLS 1.3");
    assert_eq!((status, body.as_str()), (200, "ok"));
    server.stop().await;
    node.shutdown().await;
}

/// Denies everything with a fixed reason, to see the 403 body.
struct DenyAll;

#[async_trait::async_trait]
impl Authorizer for DenyAll {
    async fn authorize(
        &self,
        _a: &kubelet_core::server::authz::Attributes,
    ) -> Result<kubelet_core::server::authz::Decision, kubelet_core::server::authz::AuthzError>
    {
        Ok(kubelet_core::server::authz::Decision::Deny("no".into()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_and_the_forbidden_body() {
    let node = Node::start();
    let client_ca = Ca::new("kubelet-client-ca");
    let alice = client_ca.client("alice", Some("devs"));

    let server = Running::start(
        node.config(),
        Some(&client_ca),
        None,
        true,
        Arc::new(DenyAll),
        node.handles(),
    )
    .await;
    let (status, body) = get(&server.client(Some(&alice)), &server.url("/pods"), None)
        .await
        .expect("request");
    assert_eq!(status, 403);
    assert_eq!(
        body,
        "Forbidden (user=alice, verb=get, resource=nodes, subresource(s)=[pods proxy])\n"
    );
    let (status, body) = get(&server.client(None), &server.url("/logs/"), None)
        .await
        .expect("request");
    assert_eq!(status, 403);
    assert_eq!(
        body,
        "Forbidden (user=system:anonymous, verb=get, resource=nodes, subresource(s)=[log])\n"
    );
    server.stop().await;

    let server = Running::start(
        node.config(),
        Some(&client_ca),
        None,
        false,
        Arc::new(AlwaysAllow),
        node.handles(),
    )
    .await;
    let client = server.client(Some(&alice));

    // A pod with one container, whose log file the runtime would write.
    assert!(node.pods.snapshot(vec![pod("web", &["app"])]));
    let deadline = Instant::now() + Duration::from_secs(20);
    let running = loop {
        let (status, body) = get(&client, &server.url("/runningpods/"), None)
            .await
            .expect("runningpods");
        assert_eq!(status, 200, "{body}");
        let list: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        // What this answer lists, not what the kubelet knows now: the sandbox shows before
        // its container runs.
        let container_listed = list["items"].as_array().is_some_and(|items| {
            items.iter().any(|p| {
                p["spec"]["containers"]
                    .as_array()
                    .is_some_and(|c| !c.is_empty())
            })
        });
        if container_listed {
            break list;
        }
        assert!(Instant::now() < deadline, "pod not running: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(running["kind"], "PodList");
    let item = &running["items"][0];
    assert_eq!(item["metadata"]["name"], "web");
    assert_eq!(item["metadata"]["namespace"], "default");
    assert_eq!(item["metadata"]["uid"], "uid-web");
    assert_eq!(item["spec"]["containers"][0]["name"], "app");
    assert_eq!(item["spec"]["containers"][0]["image"], IMAGE);

    let (status, body) = get(&client, &server.url("/pods"), None)
        .await
        .expect("pods");
    assert_eq!(status, 200);
    let list: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(list["items"][0]["metadata"]["name"], "web");

    // /containerLogs reads <pod log dir>/<container>/<restart>.log.
    let log_dir = node
        .dir
        .path()
        .join("pods")
        .join("default_web_uid-web")
        .join("app");
    std::fs::create_dir_all(&log_dir).expect("log dir");
    std::fs::write(
        log_dir.join("0.log"),
        "2026-01-01T00:00:00.000000001Z stdout F hello\n\
         2026-01-01T00:00:00.000000002Z stderr P par\n\
         2026-01-01T00:00:00.000000003Z stderr F tial\n\
         2026-01-01T00:00:00.000000004Z stdout F bye\n",
    )
    .expect("log file");
    let (status, body) = get(&client, &server.url("/containerLogs/default/web/app"), None)
        .await
        .expect("logs");
    assert_eq!((status, body.as_str()), (200, "hello\npartial\nbye\n"));
    let (status, body) = get(
        &client,
        &server.url("/containerLogs/default/web/app?tailLines=1&timestamps=true"),
        None,
    )
    .await
    .expect("logs");
    assert_eq!(
        (status, body.as_str()),
        (200, "2026-01-01T00:00:00.000000004Z bye\n")
    );
    let (status, body) = get(
        &client,
        &server.url("/containerLogs/default/web/nope"),
        None,
    )
    .await
    .expect("logs");
    assert_eq!(status, 404, "{body}");
    let (status, body) = get(
        &client,
        &server.url("/containerLogs/default/gone/app"),
        None,
    )
    .await
    .expect("logs");
    assert_eq!(
        (status, body.as_str()),
        (404, "pod \"gone\" does not exist")
    );
    let (status, _) = get(
        &client,
        &server.url("/containerLogs/default/web/app?previous=true"),
        None,
    )
    .await
    .expect("logs");
    assert_eq!(status, 400);

    // /logs/: the node's log directory, listed and read; no way out of it.
    let var_log = node.dir.path().join("var-log");
    std::fs::create_dir_all(var_log.join("sub")).expect("var-log");
    std::fs::write(var_log.join("syslog"), "boot\n").expect("syslog");
    let (status, body) = get(&client, &server.url("/logs/"), None)
        .await
        .expect("logs");
    assert_eq!(status, 200);
    assert!(body.contains("<a href=\"sub/\">sub/</a>"), "{body}");
    assert!(body.contains("<a href=\"syslog\">syslog</a>"), "{body}");
    let (status, body) = get(&client, &server.url("/logs/syslog"), None)
        .await
        .expect("logs");
    assert_eq!((status, body.as_str()), (200, "boot\n"));
    let (status, _) = get(&client, &server.url("/logs/..%2F..%2Fetc%2Fpasswd"), None)
        .await
        .expect("logs");
    assert_eq!(status, 404);

    let (status, body) = get(&client, &server.url("/healthz?verbose"), None)
        .await
        .expect("healthz");
    assert_eq!(
        (status, body.as_str()),
        (
            200,
            "[+]ping ok\n[+]log ok\n[+]syncloop ok\nhealthz check passed\n"
        )
    );
    let (status, body) = get(&client, &server.url("/healthz/ping"), None)
        .await
        .expect("healthz");
    assert_eq!((status, body.as_str()), (200, "ok"));
    server.stop().await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_port_serves_healthz_and_pods_without_authentication() {
    let node = Node::start();
    let server = kubelet_core::server::ReadOnlyServer::bind(
        "127.0.0.1:0".parse().expect("addr"),
        node.handles(),
    )
    .await
    .expect("bind");
    let addr = server.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.serve(async move {
        let _ = stopped.await;
    }));
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .build()
        .expect("client");
    let base = format!("http://{addr}");
    let (status, body) = get(&client, &format!("{base}/healthz"), None)
        .await
        .expect("healthz");
    assert_eq!((status, body.as_str()), (200, "ok"));
    let (status, body) = get(&client, &format!("{base}/pods"), None)
        .await
        .expect("pods");
    assert_eq!(status, 200);
    assert!(body.contains("\"PodList\""), "{body}");
    // Not a read-only endpoint.
    let (status, _) = get(&client, &format!("{base}/runningpods/"), None)
        .await
        .expect("runningpods");
    assert_eq!(status, 404);
    let _ = stop.send(());
    task.await.expect("join").expect("serve");
    node.shutdown().await;
}

#[test]
fn self_signed_certificate_is_kept_under_the_cert_dir() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = tls::TlsOptions {
        cert_dir: dir.path().join("pki"),
        hostname: "node-1".into(),
        ..Default::default()
    };
    tls::server_config(&options, None).expect("config");
    let cert = std::fs::read(dir.path().join("pki").join("kubelet.crt")).expect("crt");
    tls::server_config(&options, None).expect("config again");
    assert_eq!(
        cert,
        std::fs::read(
            dir.path()
                .join("pki")
                .join("kubelet.key")
                .with_extension("crt")
        )
        .expect("crt")
    );
    assert!(Path::new(&dir.path().join("pki").join("kubelet.key")).is_file());
    let err = tls::server_config(
        &tls::TlsOptions {
            cipher_suites: vec!["TLS_NOT_A_SUITE".into()],
            ..options
        },
        None,
    )
    .expect_err("unknown suite");
    assert!(err.to_string().contains("TLS_NOT_A_SUITE"), "{err}");
}

#[cfg(feature = "apiserver")]
mod real_api_server {
    use super::*;
    use k8s_openapi::api::authentication::v1::TokenRequest;
    use k8s_openapi::api::authorization::v1::SubjectAccessReview;
    use k8s_openapi::api::core::v1::ServiceAccount;
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
    use kube::api::{Api, PostParams};
    use kubelet_core::server::{WebhookAuthorizer, WebhookTokenAuthenticator};
    use kubelet_core::testing::envtest::{self, ASSETS_ENV, Envtest, REQUIRE_ENV};
    use serde_json::json;

    async fn start() -> Option<Envtest> {
        match Envtest::from_env().await {
            Ok(Some(env)) => Some(env),
            Ok(None) if envtest::required() => {
                panic!("{REQUIRE_ENV}=1 but {ASSETS_ENV} is not set")
            }
            Ok(None) => {
                eprintln!("SKIPPED: {ASSETS_ENV} is not set (a directory with kube-apiserver)");
                None
            }
            Err(e) => panic!("envtest: {e}"),
        }
    }

    async fn client(kubeconfig: &str) -> kube::Client {
        let file = kube::config::Kubeconfig::from_yaml(kubeconfig).expect("kubeconfig YAML");
        let config = kube::Config::from_custom_kubeconfig(file, &Default::default())
            .await
            .expect("client config");
        kube::Client::try_from(config).expect("kube client")
    }

    async fn token_for(admin: &kube::Client, account: &str) -> String {
        let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), "default");
        let request: TokenRequest = serde_json::from_value(json!({
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "spec": {"expirationSeconds": 3600},
        }))
        .expect("TokenRequest JSON");
        accounts
            .create_token_request(account, &PostParams::default(), &request)
            .await
            .expect("TokenRequest")
            .status
            .expect("token status")
            .token
            .expect("token")
    }

    /// Waits until RBAC (which reads bindings through an informer) allows `user` in `groups`
    /// to get `nodes/proxy`, so that the kubelet's first review does not see a stale denial.
    async fn until_allowed(admin: &kube::Client, user: &str, groups: &[&str]) {
        let reviews: Api<SubjectAccessReview> = Api::all(admin.clone());
        let review: SubjectAccessReview = serde_json::from_value(json!({
            "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": {"user": user, "groups": groups, "resourceAttributes": {
                "verb": "get", "resource": "nodes", "subresource": "proxy", "name": "node-a"}},
        }))
        .expect("SAR JSON");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let status = reviews
                .create(&PostParams::default(), &review)
                .await
                .expect("SAR")
                .status
                .expect("SAR status");
            if status.allowed {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "RBAC never allowed {user}: {status:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tokens_through_token_review_and_access_through_subject_access_review() {
        let Some(env) = start().await else {
            return;
        };
        let admin = client(&env.kubeconfig()).await;
        // Who may read the kubelet API: a ServiceAccount and a certificate user, bound to a
        // ClusterRole with get on nodes/proxy.
        let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), "default");
        accounts
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": "kubelet-reader"}}))
                    .expect("SA JSON"),
            )
            .await
            .expect("ServiceAccount");
        let roles: Api<ClusterRole> = Api::all(admin.clone());
        roles
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "metadata": {"name": "kubelet-api-reader"},
                    "rules": [{"apiGroups": [""], "resources": ["nodes/proxy"], "verbs": ["get"]}],
                }))
                .expect("ClusterRole JSON"),
            )
            .await
            .expect("ClusterRole");
        let bindings: Api<ClusterRoleBinding> = Api::all(admin.clone());
        bindings
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "metadata": {"name": "kubelet-api-readers"},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                "name": "kubelet-api-reader"},
                    "subjects": [
                        {"kind": "ServiceAccount", "name": "kubelet-reader", "namespace": "default"},
                        {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "carol"},
                    ],
                }))
                .expect("ClusterRoleBinding JSON"),
            )
            .await
            .expect("ClusterRoleBinding");
        until_allowed(
            &admin,
            "system:serviceaccount:default:kubelet-reader",
            &["system:serviceaccounts"],
        )
        .await;
        until_allowed(&admin, "carol", &[]).await;

        // The kubelet reviews with its own node identity, as the reference's does.
        let node_client = client(&env.node_kubeconfig("node-a").expect("node kubeconfig")).await;
        let node = Node::start();
        let mut config = node.config();
        config.node_name = "node-a".into();
        let client_ca = Ca::new("kubelet-client-ca");
        let server = Running::start(
            config,
            Some(&client_ca),
            Some(Arc::new(WebhookTokenAuthenticator::new(
                node_client.clone(),
                WebhookTokenAuthenticator::DEFAULT_CACHE_TTL,
            ))),
            false,
            Arc::new(WebhookAuthorizer::new(
                node_client,
                WebhookAuthorizer::DEFAULT_CACHE_AUTHORIZED_TTL,
                WebhookAuthorizer::DEFAULT_CACHE_UNAUTHORIZED_TTL,
            )),
            node.handles(),
        )
        .await;
        let anonymous = server.client(None);

        // A ServiceAccount token the API server issued, for an account bound to the role.
        let reader = token_for(&admin, "kubelet-reader").await;
        let (status, body) = get(&anonymous, &server.url("/pods"), Some(&reader))
            .await
            .expect("request");
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("\"PodList\""), "{body}");
        // Twice: the second answer comes from the caches.
        let (status, _) = get(&anonymous, &server.url("/healthz"), Some(&reader))
            .await
            .expect("request");
        assert_eq!(status, 200);

        // A valid token of an account without rights: authenticated, then forbidden.
        let nobody = token_for(&admin, "default").await;
        let (status, body) = get(&anonymous, &server.url("/pods"), Some(&nobody))
            .await
            .expect("request");
        assert_eq!(
            (status, body.as_str()),
            (
                403,
                "Forbidden (user=system:serviceaccount:default:default, verb=get, \
                 resource=nodes, subresource(s)=[pods proxy])\n"
            )
        );

        // A made-up token: the TokenReview says no, 401.
        let (status, body) = get(&anonymous, &server.url("/pods"), Some("not-a-token"))
            .await
            .expect("request");
        assert_eq!((status, body.as_str()), (401, "Unauthorized"));

        // Client certificates: the bound user in, an unbound one forbidden.
        let carol = client_ca.client("carol", None);
        let (status, body) = get(&server.client(Some(&carol)), &server.url("/pods"), None)
            .await
            .expect("request");
        assert_eq!(status, 200, "{body}");
        let dave = client_ca.client("dave", Some("devs"));
        let (status, body) = get(
            &server.client(Some(&dave)),
            &server.url("/runningpods/"),
            None,
        )
        .await
        .expect("request");
        assert_eq!(
            (status, body.as_str()),
            (
                403,
                "Forbidden (user=dave, verb=get, resource=nodes, subresource(s)=[pods proxy])\n"
            )
        );
        server.stop().await;
        node.shutdown().await;
    }
}

/// A client that sends part of its request headers and then nothing is disconnected after
/// the header read timeout instead of holding its connection open forever; a request sent
/// in time on another connection is still answered. Paused time: the timeout elapses as soon
/// as everything waits.
#[tokio::test(start_paused = true)]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let node = Node::start();
    let server = kubelet_core::server::ReadOnlyServer::bind(
        "127.0.0.1:0".parse().expect("addr"),
        node.handles(),
    )
    .await
    .expect("bind");
    let addr = server.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.serve(async move {
        let _ = stopped.await;
    }));

    let mut slow = tokio::net::TcpStream::connect(addr).await.expect("connect");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: node-1\r\n")
        .await
        .expect("write part of the headers");
    let started = tokio::time::Instant::now();
    let mut buf = Vec::new();
    // EOF (or a reset) is the server closing the connection; the read itself is bounded
    // well past the timeout so that a server that never closes fails the test.
    let read = tokio::time::timeout(
        kubelet_core::server::HEADER_READ_TIMEOUT * 4,
        slow.read_to_end(&mut buf),
    )
    .await
    .expect("the server closes a connection whose headers never end");
    let waited = started.elapsed();
    assert!(
        waited >= kubelet_core::server::HEADER_READ_TIMEOUT,
        "closed after {waited:?}, before the timeout ({read:?})"
    );
    let answer = String::from_utf8_lossy(&buf);
    assert!(!answer.contains("200 OK"), "{answer}");

    let mut quick = tokio::net::TcpStream::connect(addr).await.expect("connect");
    quick
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: node-1\r\nConnection: close\r\n\r\n")
        .await
        .expect("write the request");
    let mut buf = Vec::new();
    quick.read_to_end(&mut buf).await.expect("read the answer");
    let answer = String::from_utf8_lossy(&buf);
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(answer.ends_with("ok"), "{answer}");

    let _ = stop.send(());
    task.await.expect("join").expect("serve");
    node.shutdown().await;
}
