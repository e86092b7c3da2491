//! Running one probe or one lifecycle hook: exec through the runtime, HTTP GET, TCP connect,
//! gRPC health check, sleep. Outcomes and messages follow the reference's probers.

use crate::error::error_chain;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use k8s_openapi::api::core::v1::Container;
use reqwest::redirect;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use super::spec::{HookSpec, HttpGetSpec, ProbeHandler};
use super::{KUBE_VERSION, ProbeError};
use crate::error::RuntimeError;
use crate::runtime::Runtime;

/// At most this much of an HTTP probe's body is read (and shown in events), as the reference.
const MAX_BODY: usize = 10 * 1024;
/// Redirects an HTTP probe follows on the same host before failing.
const MAX_REDIRECTS: usize = 10;

/// What one probe run found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Success, with the probe's output.
    Success(String),
    /// Success with a warning (an HTTP redirect to another host that was not followed).
    Warning(String),
    /// Failure, with the probe's output (shown in the Unhealthy event).
    Failure(String),
}

/// The container a probe or hook runs against.
#[derive(Debug, Clone, Copy)]
pub struct ProbeTarget<'a> {
    /// Runtime container ID.
    pub container_id: &'a str,
    /// The container's spec (for port names).
    pub container: &'a Container,
    /// The pod's primary IP, the default host of httpGet and tcpSocket and the host of grpc.
    pub pod_ip: Option<&'a str>,
}

impl ProbeTarget<'_> {
    fn host(&self, given: Option<&str>) -> Result<String, ProbeError> {
        given
            .or(self.pod_ip)
            .map(str::to_string)
            .ok_or_else(|| ProbeError::Errored("the pod has no IP yet".to_string()))
    }
}

fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Run one probe with its timeout.
pub async fn run_probe(
    runtime: &dyn Runtime,
    handler: &ProbeHandler,
    timeout: Duration,
    target: ProbeTarget<'_>,
) -> Result<Outcome, ProbeError> {
    match handler {
        ProbeHandler::Exec { command } => exec_probe(runtime, command, timeout, target).await,
        ProbeHandler::HttpGet(http) => {
            let port = http
                .port
                .resolve(target.container)
                .map_err(ProbeError::Errored)?;
            let host = target.host(http.host.as_deref())?;
            let agent = format!("kube-probe/{}.{}", KUBE_VERSION.0, KUBE_VERSION.1);
            Ok(http_probe(http, &host, port, timeout, &agent).await)
        }
        ProbeHandler::TcpSocket { host, port } => {
            let port = port
                .resolve(target.container)
                .map_err(ProbeError::Errored)?;
            let host = target.host(host.as_deref())?;
            Ok(tcp_probe(&host, port, timeout).await)
        }
        ProbeHandler::Grpc { port, service } => {
            let host = target.host(None)?;
            Ok(grpc_probe(&host, *port, service, timeout).await)
        }
    }
}

fn exec_output(stdout: &[u8], stderr: &[u8]) -> String {
    let mut out = String::from_utf8_lossy(stdout).into_owned();
    out.push_str(&String::from_utf8_lossy(stderr));
    out
}

async fn exec_probe(
    runtime: &dyn Runtime,
    command: &[String],
    timeout: Duration,
    target: ProbeTarget<'_>,
) -> Result<Outcome, ProbeError> {
    // The runtime enforces the timeout; the margin only guards against a runtime that does
    // not, and then counts as the same timeout.
    let call = runtime.exec_sync(target.container_id, command, timeout);
    let timed_out = || Outcome::Failure(format!("command {:?} timed out", command.join(" ")));
    match tokio::time::timeout(timeout + Duration::from_secs(1), call).await {
        Err(_) | Ok(Err(RuntimeError::DeadlineExceeded(_))) => Ok(timed_out()),
        Ok(Err(err)) => Err(ProbeError::Errored(err.to_string())),
        Ok(Ok(result)) => {
            let output = exec_output(&result.stdout, &result.stderr);
            if result.exit_code == 0 {
                Ok(Outcome::Success(output))
            } else {
                Ok(Outcome::Failure(output))
            }
        }
    }
}

/// A certificate verifier that accepts any certificate: probes, like the reference's, do not
/// check the server's identity (a probe is not a client that trusts the answer). Signatures
/// are still checked so that the handshake is well-formed.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The shared client of HTTP probes and hooks: no certificate checks, no keep-alive (each
/// probe opens its own connection, as the reference's), redirects followed only on the same
/// host.
fn http_client() -> Result<&'static reqwest::Client, String> {
    static CLIENT: OnceLock<Result<reqwest::Client, String>> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let tls = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(|e| format!("TLS config: {e}"))?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
                .with_no_client_auth();
            let policy = redirect::Policy::custom(|attempt| {
                let same_host = attempt
                    .previous()
                    .first()
                    .is_none_or(|first| first.host_str() == attempt.url().host_str());
                if !same_host {
                    attempt.stop()
                } else if attempt.previous().len() >= MAX_REDIRECTS {
                    attempt.error(format!("stopped after {MAX_REDIRECTS} redirects"))
                } else {
                    attempt.follow()
                }
            });
            reqwest::Client::builder()
                .tls_backend_preconfigured(tls)
                .redirect(policy)
                .pool_max_idle_per_host(0)
                .no_proxy()
                .build()
                .map_err(|e| format!("HTTP client: {}", error_chain(&e)))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// GET the URL of `http` on `host:port`. `Ok` carries the status and the first bytes of the
/// body; `Err` a message (connection refused, timeout, bad URL).
async fn http_get(
    http: &HttpGetSpec,
    host: &str,
    port: u16,
    timeout: Duration,
    user_agent: &str,
) -> Result<(u16, String), String> {
    let url = format!(
        "{}://{}{}",
        http.scheme,
        join_host_port(host, port),
        http.path
    );
    let client = http_client()?;
    let mut request = client.get(&url).timeout(timeout);
    let has = |name: &str| {
        http.headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
    };
    if !has("user-agent") {
        request = request.header(reqwest::header::USER_AGENT, user_agent);
    }
    if !has("accept") {
        request = request.header(reqwest::header::ACCEPT, "*/*");
    }
    for (name, value) in &http.headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let mut response = request
        .send()
        .await
        .map_err(|e| format!("Get {url:?}: {}", error_chain(&e)))?;
    let status = response.status().as_u16();
    let mut body = Vec::new();
    // A body that stops early (or is cut at the limit) still counts: only its start is shown.
    while body.len() < MAX_BODY {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    body.truncate(MAX_BODY);
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

async fn http_probe(
    http: &HttpGetSpec,
    host: &str,
    port: u16,
    timeout: Duration,
    user_agent: &str,
) -> Outcome {
    match http_get(http, host, port, timeout, user_agent).await {
        Err(message) => Outcome::Failure(message),
        Ok((status, body)) if (200..300).contains(&status) => Outcome::Success(body),
        // A redirect that was not followed (to another host): success, with a warning.
        Ok((status, body)) if (300..400).contains(&status) => {
            Outcome::Warning(format!("Probe terminated redirects, Response body: {body}"))
        }
        Ok((status, _)) => Outcome::Failure(format!("HTTP probe failed with statuscode: {status}")),
    }
}

async fn tcp_probe(host: &str, port: u16, timeout: Duration) -> Outcome {
    let addr = join_host_port(host, port);
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr.as_str())).await {
        Ok(Ok(_stream)) => Outcome::Success(String::new()),
        Ok(Err(err)) => Outcome::Failure(format!("dial tcp {addr}: connect: {err}")),
        Err(_) => Outcome::Failure(format!("dial tcp {addr}: i/o timeout")),
    }
}

async fn grpc_probe(host: &str, port: u16, service: &str, timeout: Duration) -> Outcome {
    let addr = join_host_port(host, port);
    let endpoint = match tonic::transport::Endpoint::from_shared(format!("http://{addr}")) {
        Ok(e) => e.connect_timeout(timeout).timeout(timeout),
        Err(err) => {
            return Outcome::Failure(format!(
                "error: failed to connect service at {addr:?}: {err}"
            ));
        }
    };
    let channel = match tokio::time::timeout(timeout, endpoint.connect()).await {
        Ok(Ok(channel)) => channel,
        Ok(Err(err)) => {
            return Outcome::Failure(format!(
                "error: failed to connect service at {addr:?}: {}",
                error_chain(&err)
            ));
        }
        Err(_) => {
            return Outcome::Failure(format!(
                "timeout: failed to connect service {addr:?} within {}s",
                timeout.as_secs()
            ));
        }
    };
    let mut client = HealthClient::new(channel);
    let request = HealthCheckRequest {
        service: service.to_string(),
    };
    match tokio::time::timeout(timeout, client.check(request)).await {
        Err(_) => Outcome::Failure(format!(
            "timeout: health rpc did not complete within {}s",
            timeout.as_secs()
        )),
        Ok(Err(status)) => match status.code() {
            tonic::Code::Unimplemented => Outcome::Failure(format!(
                "this server does not implement the grpc health protocol (grpc.health.v1.Health): {}",
                status.message()
            )),
            tonic::Code::DeadlineExceeded => Outcome::Failure(format!(
                "timeout: health rpc did not complete within {}s",
                timeout.as_secs()
            )),
            _ => Outcome::Failure(format!(
                "error: this server does not implement the grpc health protocol (grpc.health.v1.Health): {status}"
            )),
        },
        Ok(Ok(response)) => {
            let status = response.into_inner().status();
            if status == ServingStatus::Serving {
                Outcome::Success("service healthy".to_string())
            } else {
                Outcome::Failure(format!(
                    "service unhealthy (responded with {:?})",
                    status.as_str_name()
                ))
            }
        }
    }
}

/// Run a lifecycle hook to completion (the caller bounds it in time). `Err` carries the
/// message of the FailedPostStartHook / FailedPreStopHook event. `pod` is the pod's
/// `name_namespace(uid)` for messages.
pub async fn run_hook(
    runtime: &dyn Runtime,
    hook: &HookSpec,
    target: ProbeTarget<'_>,
    pod: &str,
) -> Result<(), String> {
    let name = &target.container.name;
    match hook {
        HookSpec::Exec { command } => {
            // No timeout of its own: a hook may take as long as its caller allows.
            match runtime
                .exec_sync(target.container_id, command, Duration::ZERO)
                .await
            {
                Ok(result) if result.exit_code == 0 => Ok(()),
                Ok(result) => {
                    let output = exec_output(&result.stdout, &result.stderr);
                    Err(format!(
                        "Exec lifecycle hook ({command:?}) for Container {name:?} in Pod {pod:?} failed - error: command '{}' exited with {}: {output}, message: {output:?}",
                        command.join(" "),
                        result.exit_code
                    ))
                }
                Err(err) => Err(format!(
                    "Exec lifecycle hook ({command:?}) for Container {name:?} in Pod {pod:?} failed - error: {err}, message: \"\""
                )),
            }
        }
        HookSpec::HttpGet(http) => {
            let fail = |err: String| {
                format!(
                    "HTTP lifecycle hook ({}) for Container {name:?} in Pod {pod:?} failed - error: {err}",
                    http.path
                )
            };
            let port = http.port.resolve(target.container).map_err(fail)?;
            let host = target
                .host(http.host.as_deref())
                .map_err(|e| fail(e.to_string()))?;
            let agent = format!("kube-lifecycle/{}.{}", KUBE_VERSION.0, KUBE_VERSION.1);
            // A hook's GET is bounded by its caller, not by a timeout of its own.
            http_get(http, &host, port, Duration::from_secs(24 * 3600), &agent)
                .await
                .map(drop)
                .map_err(fail)
        }
        HookSpec::Sleep(duration) => {
            tokio::time::sleep(*duration).await;
            Ok(())
        }
        HookSpec::TcpSocket => Err(format!(
            "invalid handler for Container {name:?} in Pod {pod:?}: tcpSocket is not supported as a lifecycle handler"
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;
    use crate::probes::spec::PortRef;

    /// A one-request-per-connection HTTP server on 127.0.0.1 answering with `respond(path)`,
    /// recording each request's head.
    async fn server(
        respond: impl Fn(&str, u16) -> String + Send + Sync + 'static,
    ) -> (u16, Arc<Mutex<Vec<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let respond = Arc::new(respond);
        tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else {
                    return;
                };
                let log = log.clone();
                let respond = respond.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let mut head = Vec::new();
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&head).into_owned();
                    let path = head.split(' ').nth(1).unwrap_or("/").to_string();
                    log.lock().unwrap().push(head);
                    let answer = respond(&path, port);
                    let _ = conn.write_all(answer.as_bytes()).await;
                    let _ = conn.shutdown().await;
                });
            }
        });
        (port, seen)
    }

    fn answer(status: &str, extra: &str, body: &str) -> String {
        format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n{body}",
            body.len()
        )
    }

    fn http(port: u16, path: &str, headers: Vec<(String, String)>) -> HttpGetSpec {
        HttpGetSpec {
            scheme: "http".into(),
            host: None,
            port: PortRef::Number(port),
            path: path.into(),
            headers,
        }
    }

    async fn probe(spec: HttpGetSpec, host: &str) -> Outcome {
        let container = Container::default();
        let runtime = crate::testing::FakeRuntime::new();
        run_probe(
            &runtime,
            &ProbeHandler::HttpGet(spec),
            Duration::from_secs(5),
            ProbeTarget {
                container_id: "c",
                container: &container,
                pod_ip: Some(host),
            },
        )
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn http_status_codes_decide() {
        let (port, seen) = server(|path, port| match path {
            "/ok" => answer("200 OK", "", "fine"),
            "/moved" => answer("302 Found", "Location: /ok\r\n", ""),
            "/away" => answer(
                "302 Found",
                &format!("Location: http://localhost:{port}/ok\r\n"),
                "elsewhere",
            ),
            _ => answer("500 Internal Server Error", "", "broken"),
        })
        .await;
        assert_eq!(
            probe(http(port, "/ok", vec![]), "127.0.0.1").await,
            Outcome::Success("fine".into())
        );
        // Same host: followed.
        assert_eq!(
            probe(http(port, "/moved", vec![]), "127.0.0.1").await,
            Outcome::Success("fine".into())
        );
        // Another host: not followed, success with a warning.
        assert_eq!(
            probe(http(port, "/away", vec![]), "127.0.0.1").await,
            Outcome::Warning("Probe terminated redirects, Response body: elsewhere".into())
        );
        assert_eq!(
            probe(http(port, "/bad", vec![]), "127.0.0.1").await,
            Outcome::Failure("HTTP probe failed with statuscode: 500".into())
        );
        let heads = seen.lock().unwrap().clone();
        let first = heads[0].to_ascii_lowercase();
        assert!(first.contains("user-agent: kube-probe/1.37"), "{first}");
        assert!(first.contains("accept: */*"), "{first}");
    }

    #[tokio::test]
    async fn http_headers_override_defaults() {
        let (port, seen) = server(|_, _| answer("200 OK", "", "")).await;
        let headers = vec![
            ("User-Agent".to_string(), "mine".to_string()),
            ("X-Custom".to_string(), "yes".to_string()),
        ];
        let outcome = probe(http(port, "/", headers), "127.0.0.1").await;
        assert_eq!(outcome, Outcome::Success(String::new()));
        let head = seen.lock().unwrap()[0].to_ascii_lowercase();
        assert!(head.contains("user-agent: mine"), "{head}");
        assert!(!head.contains("kube-probe"), "{head}");
        assert!(head.contains("x-custom: yes"), "{head}");
    }

    #[tokio::test]
    async fn refused_connections_fail() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        assert!(matches!(
            probe(http(port, "/", vec![]), "127.0.0.1").await,
            Outcome::Failure(_)
        ));
        assert!(matches!(
            tcp_probe("127.0.0.1", port, Duration::from_secs(1)).await,
            Outcome::Failure(m) if m.contains("connect")
        ));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let open = listener.local_addr().unwrap().port();
        assert_eq!(
            tcp_probe("127.0.0.1", open, Duration::from_secs(1)).await,
            Outcome::Success(String::new())
        );
    }

    #[tokio::test]
    async fn grpc_health_check_reports_serving() {
        let (reporter, service) = tonic_health::server::health_reporter();
        reporter
            .set_service_status("ready", tonic_health::ServingStatus::Serving)
            .await;
        reporter
            .set_service_status("sick", tonic_health::ServingStatus::NotServing)
            .await;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(incoming),
        );
        let t = Duration::from_secs(5);
        assert_eq!(
            grpc_probe("127.0.0.1", port, "ready", t).await,
            Outcome::Success("service healthy".into())
        );
        assert!(matches!(
            grpc_probe("127.0.0.1", port, "sick", t).await,
            Outcome::Failure(m) if m.contains("NOT_SERVING")
        ));
        assert!(matches!(
            grpc_probe("127.0.0.1", port, "unknown", t).await,
            Outcome::Failure(_)
        ));
        server.abort();
        let _ = server.await;
        assert!(matches!(
            grpc_probe("127.0.0.1", port, "", Duration::from_secs(1)).await,
            Outcome::Failure(_)
        ));
    }

    fn hook_target(container: &Container) -> ProbeTarget<'_> {
        ProbeTarget {
            container_id: "c",
            container,
            pod_ip: Some("127.0.0.1"),
        }
    }

    #[tokio::test]
    async fn http_hooks_send_the_lifecycle_agent_and_fail_without_an_answer() {
        let (port, seen) = server(|_, _| answer("500 Internal Server Error", "", "")).await;
        let container = Container {
            name: "app".into(),
            ..Default::default()
        };
        let runtime = crate::testing::FakeRuntime::new();
        let hook = HookSpec::HttpGet(http(port, "/hook", vec![]));
        // A hook, unlike a probe, does not judge the status code: an answer is success.
        run_hook(&runtime, &hook, hook_target(&container), "p_ns(uid)")
            .await
            .unwrap();
        let head = seen.lock().unwrap()[0].to_ascii_lowercase();
        assert!(head.starts_with("get /hook "), "{head}");
        assert!(head.contains("user-agent: kube-lifecycle/1.37"), "{head}");

        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let hook = HookSpec::HttpGet(http(closed, "/hook", vec![]));
        let err = run_hook(&runtime, &hook, hook_target(&container), "p_ns(uid)")
            .await
            .unwrap_err();
        assert!(
            err.starts_with("HTTP lifecycle hook (/hook) for Container \"app\" in Pod \"p_ns(uid)\" failed - error: "),
            "{err}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn sleep_and_tcp_hooks() {
        let container = Container::default();
        let runtime = crate::testing::FakeRuntime::new();
        let started = tokio::time::Instant::now();
        run_hook(
            &runtime,
            &HookSpec::Sleep(Duration::from_secs(7)),
            hook_target(&container),
            "p",
        )
        .await
        .unwrap();
        assert_eq!(started.elapsed(), Duration::from_secs(7));
        assert!(
            run_hook(&runtime, &HookSpec::TcpSocket, hook_target(&container), "p")
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn exec_hooks_and_probes_need_a_running_container() {
        let container = Container {
            name: "app".into(),
            ..Default::default()
        };
        let runtime = crate::testing::FakeRuntime::new();
        let hook = HookSpec::Exec {
            command: vec!["true".into()],
        };
        // No such container: the runtime's error is the hook's failure.
        let err = run_hook(&runtime, &hook, hook_target(&container), "p")
            .await
            .unwrap_err();
        assert!(err.contains("Exec lifecycle hook ([\"true\"])"), "{err}");
        // For a probe the same error is no result at all (the reference's "probe errored").
        let probe = ProbeHandler::Exec {
            command: vec!["true".into()],
        };
        let outcome = run_probe(
            &runtime,
            &probe,
            Duration::from_secs(1),
            hook_target(&container),
        )
        .await;
        assert!(
            matches!(outcome, Err(ProbeError::Errored(_))),
            "{outcome:?}"
        );
    }
}
