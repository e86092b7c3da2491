//! End-to-end: exec and port-forward over SPDY/3.1 through a real kube-apiserver, as kubectl
//! before 1.30 does them: the client upgrades `POST .../pods/<pod>/exec` at the API server,
//! which upgrades its own connection to the kubelet's `/exec` (with its kubelet client
//! certificate, on the node's InternalIP), which proxies to containerd's streaming server.
//! The SPDY client is kubelet-cri's test client. Needs the envtest API server (the fake one
//! does not proxy to kubelets) and a containerd; skipped with the reason otherwise.

mod support {
    // Shared by several test binaries; each uses part of it.
    #[allow(dead_code)]
    pub mod cluster;
    #[allow(dead_code)]
    pub mod node;
    #[allow(dead_code)]
    #[path = "../../../kubelet-cri/tests/support/spdy.rs"]
    pub mod spdy;
}

use std::sync::Arc;

use kube::api::PostParams;
use kubelet_core::testing::apiserver::TestApiServer;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use support::cluster::{Cluster, DEADLINE, IMAGE, start_reachable_cluster};
use support::node::{NODE, phase};
use support::spdy::{self, Stream, Upgraded};

/// What kubectl offers for exec, newest first.
const EXEC_PROTOCOLS: [&str; 2] = ["v4.channel.k8s.io", "v3.channel.k8s.io"];
const PORT_FORWARD_PROTOCOL: &str = "portforward.k8s.io";

/// A TLS connection to the API server as `system:masters` (the certificate the API server
/// itself uses toward kubelets serves as an admin's here), and the authority to name.
async fn connect(
    cluster: &Cluster,
) -> (
    tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    String,
) {
    let TestApiServer::Envtest(env) = &cluster.server else {
        panic!("needs the envtest API server");
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(env.ca_pem().as_bytes()) {
        roots.add(cert.expect("CA PEM")).expect("CA");
    }
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(env.kubelet_client_cert_path())
            .expect("client certificate")
            .collect::<Result<_, _>>()
            .expect("client certificate PEM");
    let key = PrivateKeyDer::from_pem_file(env.kubelet_client_key_path()).expect("client key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .expect("client auth");
    let url: http::Uri = env.url().parse().expect("API server URL");
    let authority = url.authority().expect("authority").to_string();
    let host = url.host().expect("host").to_string();
    let tcp = tokio::net::TcpStream::connect(&authority)
        .await
        .expect("connect to the API server");
    let name = ServerName::try_from(host).expect("server name");
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("TLS to the API server");
    (tls, authority)
}

async fn upgrade(cluster: &Cluster, path: &str, protocols: &[&str]) -> Upgraded {
    let (io, authority) = connect(cluster).await;
    match tokio::time::timeout(DEADLINE, spdy::upgrade(io, &authority, path, protocols)).await {
        Ok(Ok(up)) => up,
        Ok(Err(refused)) => panic!(
            "upgrade of {path} refused: {} {}",
            refused.status, refused.body
        ),
        Err(_) => panic!("upgrade of {path}: no answer within {DEADLINE:?}"),
    }
}

async fn open(up: &Upgraded, headers: &[(&str, &str)]) -> Stream {
    tokio::time::timeout(DEADLINE, up.connection.open(headers))
        .await
        .expect("the stream answered in time")
        .expect("the stream accepted")
}

async fn status(error: &mut Stream) -> serde_json::Value {
    let raw = error.read_to_end(DEADLINE).await.expect("error stream");
    serde_json::from_slice(&raw)
        .unwrap_or_else(|e| panic!("status JSON: {e}: {:?}", String::from_utf8_lossy(&raw)))
}

fn percent_encoded(arg: &str) -> String {
    arg.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The API server's exec subresource with `command` and the streams asked for.
fn exec_path(pod: &str, command: &[&str], streams: &str) -> String {
    let mut path = format!("/api/v1/namespaces/default/pods/{pod}/exec?container=app&{streams}");
    for arg in command {
        path.push_str("&command=");
        path.push_str(&percent_encoded(arg));
    }
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_and_port_forward_over_spdy_through_the_api_server() {
    let Some((cluster, _ca_dir)) = start_reachable_cluster().await else {
        return;
    };
    let web = "mkdir -p /tmp/www && echo via-apiserver > /tmp/www/index.html && \
               exec httpd -f -p 8080 -h /tmp/www";
    let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "spdy", "namespace": "default"},
        "spec": {
            "nodeName": NODE,
            "terminationGracePeriodSeconds": 0,
            "containers": [{
                "name": "app", "image": IMAGE, "imagePullPolicy": "IfNotPresent",
                "command": ["sh", "-c", web],
                "ports": [{"containerPort": 8080}],
            }],
        },
    }))
    .expect("pod JSON");
    cluster
        .pods()
        .create(&PostParams::default(), &pod)
        .await
        .expect("create pod");
    cluster.mark_scheduled("spdy").await;
    cluster
        .wait_pod("spdy", "Running", |p| phase(p) == "Running")
        .await;

    // stdin echoed by cat; its end ends cat, and success comes back on the error stream.
    let path = exec_path("spdy", &["cat"], "stdin=true&stdout=true&stderr=true");
    let up = upgrade(&cluster, &path, &EXEC_PROTOCOLS).await;
    let protocol = up
        .headers
        .get("X-Stream-Protocol-Version")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert_eq!(protocol, "v4.channel.k8s.io", "{:?}", up.headers);
    let mut error = open(&up, &[("streamType", "error")]).await;
    let stdin = open(&up, &[("streamType", "stdin")]).await;
    let mut stdout = open(&up, &[("streamType", "stdout")]).await;
    let mut stderr = open(&up, &[("streamType", "stderr")]).await;
    stdin
        .write(b"through the api server\n")
        .await
        .expect("stdin");
    stdin.close().await.expect("close stdin");
    let out = stdout.read_to_end(DEADLINE).await.expect("stdout");
    assert_eq!(String::from_utf8_lossy(&out), "through the api server\n");
    assert!(
        stderr
            .read_to_end(DEADLINE)
            .await
            .expect("stderr")
            .is_empty()
    );
    let st = status(&mut error).await;
    assert_eq!(st["status"], "Success", "{st}");

    // kubectl exec -- sh -c 'echo $0; exit 3': output and the exit code.
    let path = exec_path(
        "spdy",
        &["sh", "-c", "echo $0; echo oops >&2; exit 3"],
        "stdout=true&stderr=true",
    );
    let up = upgrade(&cluster, &path, &EXEC_PROTOCOLS).await;
    let mut error = open(&up, &[("streamType", "error")]).await;
    let mut stdout = open(&up, &[("streamType", "stdout")]).await;
    let mut stderr = open(&up, &[("streamType", "stderr")]).await;
    assert_eq!(stdout.read_to_end(DEADLINE).await.expect("stdout"), b"sh\n");
    assert_eq!(
        stderr.read_to_end(DEADLINE).await.expect("stderr"),
        b"oops\n"
    );
    let st = status(&mut error).await;
    assert_eq!(st["reason"], "NonZeroExitCode", "{st}");
    let code = st["details"]["causes"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["reason"] == "ExitCode"))
        .and_then(|c| c["message"].as_str())
        .map(str::to_string);
    assert_eq!(code.as_deref(), Some("3"), "{st}");

    // kubectl port-forward: an error and a data stream per request, paired by requestID.
    let up = upgrade(
        &cluster,
        "/api/v1/namespaces/default/pods/spdy/portforward",
        &[PORT_FORWARD_PROTOCOL],
    )
    .await;
    let error = open(
        &up,
        &[
            ("streamType", "error"),
            ("port", "8080"),
            ("requestID", "0"),
        ],
    )
    .await;
    error.close().await.expect("close error stream");
    let mut data = open(
        &up,
        &[("streamType", "data"), ("port", "8080"), ("requestID", "0")],
    )
    .await;
    data.write(b"GET /index.html HTTP/1.0\r\n\r\n")
        .await
        .expect("request");
    let page = data.read_to_end(DEADLINE).await.expect("response");
    let page = String::from_utf8_lossy(&page);
    assert!(
        page.contains(" 200 OK") && page.contains("via-apiserver"),
        "{page}"
    );
    up.connection.close().await.expect("close");

    cluster.delete_pod("spdy", Some(0)).await;
    cluster.wait_pod_gone("spdy").await;
}
