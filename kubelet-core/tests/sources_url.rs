//! The manifest URL source against a small HTTP server on 127.0.0.1 started by each test.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use k8s_openapi::api::core::v1::Pod;
use kubelet_core::labels;
use kubelet_core::sources::{ManifestUrlSource, parse_manifest_url_headers};
use kubelet_core::{PodSource, PodUpdate};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

const NODE: &str = "Node-B";
const PERIOD: Duration = Duration::from_millis(50);
const DEADLINE: Duration = Duration::from_secs(20);

#[derive(Default)]
struct Served {
    status: u16,
    body: String,
    requests: usize,
    last_request_head: String,
}

/// A one-route HTTP/1.1 server answering every request with the current status and body.
struct Server {
    url: String,
    state: Arc<Mutex<Served>>,
    task: JoinHandle<()>,
}

impl Server {
    async fn start(status: u16, body: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(Mutex::new(Served {
            status,
            body: body.to_string(),
            ..Served::default()
        }));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                // Counted on accept: when request N+1 arrives, the source has handled the
                // answer to request N.
                shared.lock().expect("server state").requests += 1;
                let shared = shared.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                        // Not HTTP (a TLS ClientHello): hang up at once.
                        if !head[0].is_ascii_alphabetic() {
                            return;
                        }
                    }
                    let (status, body) = {
                        let mut s = shared.lock().expect("server state");
                        s.last_request_head = String::from_utf8_lossy(&head).to_string();
                        (s.status, s.body.clone())
                    };
                    let response = format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: application/yaml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = conn.write_all(response.as_bytes()).await;
                    let _ = conn.shutdown().await;
                });
            }
        });
        Self {
            url: format!("http://{addr}/pods"),
            state,
            task,
        }
    }

    fn serve(&self, status: u16, body: &str) {
        let mut s = self.state.lock().expect("server state");
        s.status = status;
        s.body = body.to_string();
    }

    fn requests(&self) -> usize {
        self.state.lock().expect("server state").requests
    }

    fn last_request_head(&self) -> String {
        self.state
            .lock()
            .expect("server state")
            .last_request_head
            .clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn pod(name: &str, image: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  containers:\n  - name: main\n    image: {image}\n"
    )
}

fn names(pods: &[Pod]) -> Vec<String> {
    pods.iter()
        .map(|p| p.metadata.name.clone().unwrap_or_default())
        .collect()
}

fn start(source: ManifestUrlSource) -> BoxStream<'static, PodUpdate> {
    Box::new(source).updates()
}

async fn next_snapshot(stream: &mut BoxStream<'static, PodUpdate>) -> Vec<Pod> {
    match tokio::time::timeout(DEADLINE, stream.next()).await {
        Ok(Some(PodUpdate::Snapshot(pods))) => pods,
        Ok(other) => panic!("expected a snapshot, got {other:?}"),
        Err(_) => panic!("no snapshot within {DEADLINE:?}"),
    }
}

/// Drives the stream until the server has answered `count` more requests, failing if the
/// source sends anything meanwhile. Since the source fetches again only after handling the
/// previous answer, every answer before the last one counted has been handled with no update.
async fn expect_quiet_for_requests(
    stream: &mut BoxStream<'static, PodUpdate>,
    server: &Server,
    count: usize,
) {
    let target = server.requests() + count;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut next = stream.next();
    while server.requests() < target {
        assert!(
            tokio::time::Instant::now() < deadline,
            "server saw too few requests"
        );
        tokio::select! {
            update = &mut next => panic!("unexpected update: {update:?}"),
            _ = tokio::time::sleep(Duration::from_millis(5)) => {}
        }
    }
}

#[tokio::test]
async fn a_pod_list_with_headers() {
    let list = "\
apiVersion: v1
kind: PodList
items:
- metadata: {name: one}
  spec: {containers: [{name: c, image: 'nginx:1'}]}
- metadata: {name: two, namespace: infra}
  spec: {containers: [{name: c, image: 'nginx:2'}]}
";
    let server = Server::start(200, list).await;
    let headers = parse_manifest_url_headers("X-Token:abc,X-Multi:1").expect("headers");
    let source = ManifestUrlSource::new(&server.url, NODE, PERIOD)
        .and_then(|s| s.with_headers(headers))
        .and_then(|s| s.with_header("X-Multi", "2"))
        .expect("source");
    assert_eq!(source.name(), "http");
    let mut stream = start(source);

    let pods = next_snapshot(&mut stream).await;
    assert_eq!(names(&pods), ["one-node-b", "two-node-b"]);
    assert_eq!(pods[1].metadata.namespace.as_deref(), Some("infra"));
    for p in &pods {
        let ann = p.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(
            ann.get(labels::CONFIG_SOURCE).map(String::as_str),
            Some("http")
        );
        assert_eq!(ann.get(labels::CONFIG_HASH), p.metadata.uid.as_ref());
        assert!(ann.contains_key(labels::CONFIG_SEEN));
        let node = p.spec.as_ref().and_then(|s| s.node_name.clone());
        assert_eq!(node.as_deref(), Some(NODE));
    }
    let head = server.last_request_head().to_ascii_lowercase();
    assert!(head.starts_with("get /pods "), "{head}");
    assert!(head.contains("x-token: abc\r\n"), "{head}");
    assert!(
        head.contains("x-multi: 1\r\n") && head.contains("x-multi: 2\r\n"),
        "{head}"
    );

    // The same content again and again: no new snapshot.
    expect_quiet_for_requests(&mut stream, &server, 3).await;
}

#[tokio::test]
async fn failures_keep_the_last_good_set() {
    let server = Server::start(200, &pod("web", "nginx:1")).await;
    let source = ManifestUrlSource::new(&server.url, NODE, PERIOD).expect("source");
    let problems = source.problems();
    let mut stream = start(source);

    let first = next_snapshot(&mut stream).await;
    assert_eq!(names(&first), ["web-node-b"]);
    assert!(problems.is_empty());

    // Server errors: no update, in particular no empty snapshot.
    server.serve(500, "boom");
    expect_quiet_for_requests(&mut stream, &server, 3).await;
    assert!(
        problems.current().contains_key(&server.url),
        "{:?}",
        problems.current()
    );

    // A body that does not validate: rejected whole, the last good set stays.
    server.serve(200, &pod("web", ""));
    expect_quiet_for_requests(&mut stream, &server, 3).await;
    let current = problems.current();
    let err = current.get(&server.url).expect("a problem").to_string();
    assert!(err.contains("spec.containers[0].image"), "{err}");

    // Back to good, with new content.
    server.serve(200, &pod("web", "nginx:2"));
    let next = next_snapshot(&mut stream).await;
    assert_eq!(names(&next), ["web-node-b"]);
    assert_ne!(next[0].metadata.uid, first[0].metadata.uid);
    assert!(problems.is_empty());

    // An empty body is an empty set, as in the reference.
    server.serve(200, "");
    assert!(next_snapshot(&mut stream).await.is_empty());
}

#[tokio::test]
async fn the_first_snapshot_waits_for_a_successful_fetch() {
    let server = Server::start(503, "not yet").await;
    let mut stream = start(ManifestUrlSource::new(&server.url, NODE, PERIOD).expect("source"));
    expect_quiet_for_requests(&mut stream, &server, 3).await;

    server.serve(200, &pod("late", "nginx"));
    assert_eq!(names(&next_snapshot(&mut stream).await), ["late-node-b"]);
}

#[tokio::test]
async fn https_against_a_plain_server_is_a_reported_failure() {
    let server = Server::start(200, &pod("web", "nginx")).await;
    let url = server.url.replacen("http://", "https://", 1);
    let source = ManifestUrlSource::new(&url, NODE, PERIOD).expect("source");
    let problems = source.problems();
    let mut stream = start(source);
    // The TLS handshake fails on every attempt; the source reports it and sends nothing.
    expect_quiet_for_requests(&mut stream, &server, 2).await;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut next = stream.next();
    while problems.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no problem reported"
        );
        tokio::select! {
            update = &mut next => panic!("unexpected update: {update:?}"),
            _ = tokio::time::sleep(Duration::from_millis(5)) => {}
        }
    }
    assert!(
        problems.current().contains_key(&url),
        "{:?}",
        problems.current()
    );
}
