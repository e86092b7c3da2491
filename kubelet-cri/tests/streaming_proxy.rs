//! The kubelet's streaming proxy (`kubelet_core::streaming`) against containerd's streaming
//! server: a WebSocket client speaking `v4.channel.k8s.io` reaches a container through the
//! proxy, stdin, stdout, stderr and the exit status carried both ways. Skipped when no
//! containerd can run here, unless `KUBELET_TEST_REQUIRE_CONTAINERD=1`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use kubelet_core::Runtime;
use kubelet_core::labels;
use kubelet_core::runtime::{
    ContainerConfig, ContainerMetadata, ContainerState, NamespaceMode, PodSandboxConfig,
    SandboxMetadata, StreamOptions,
};
use kubelet_core::streaming::proxy_to_runtime;
use kubelet_cri::testing::{BUSYBOX_IMAGE, TestContainerd};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const DEADLINE: Duration = Duration::from_secs(60);

/// A server of the test's own whose one route proxies to the URL in `target`, as the
/// kubelet's `/exec` does with the URL the runtime handed out.
async fn proxy_server(target: Arc<Mutex<String>>) -> (String, tokio::task::JoinHandle<()>) {
    let app = axum::Router::new().route(
        "/stream",
        axum::routing::any(move |req: axum::extract::Request| {
            let url = target.lock().unwrap().clone();
            async move { proxy_to_runtime(req, &url).await }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("ws://{addr}/stream"), task)
}

/// What came back on each channel of one `v4.channel.k8s.io` session.
#[derive(Debug, Default)]
struct Session {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    status: Vec<u8>,
}

async fn run_session(url: &str, stdin: Option<&[u8]>) -> Session {
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        http::HeaderValue::from_static("v4.channel.k8s.io"),
    );
    let (mut ws, resp) = tokio::time::timeout(DEADLINE, tokio_tungstenite::connect_async(request))
        .await
        .expect("connect in time")
        .expect("WebSocket upgrade through the proxy");
    assert_eq!(
        resp.headers()
            .get("Sec-WebSocket-Protocol")
            .map(|v| v.to_str().unwrap()),
        Some("v4.channel.k8s.io")
    );
    if let Some(input) = stdin {
        let mut frame = vec![0u8];
        frame.extend_from_slice(input);
        ws.send(Message::Binary(frame.into())).await.unwrap();
    }
    let mut session = Session::default();
    loop {
        let msg = tokio::time::timeout(DEADLINE, ws.next())
            .await
            .expect("the stream ends in time");
        let data = match msg {
            None | Some(Ok(Message::Close(_))) => break,
            Some(Ok(Message::Binary(b))) => b.to_vec(),
            Some(Ok(Message::Text(t))) => t.as_bytes().to_vec(),
            Some(Ok(_)) => continue,
            Some(Err(e)) => {
                // The runtime closes the TCP connection after the status frame.
                eprintln!("stream closed: {e}");
                break;
            }
        };
        let Some((channel, payload)) = data.split_first() else {
            continue;
        };
        match channel {
            1 => session.stdout.extend_from_slice(payload),
            2 => session.stderr.extend_from_slice(payload),
            3 => session.status.extend_from_slice(payload),
            _ => {}
        }
    }
    session
}

fn sandbox(env: &TestContainerd) -> PodSandboxConfig {
    let log_directory = env.log_dir().join("default_streams_uid-streams");
    std::fs::create_dir_all(&log_directory).unwrap();
    let mut labels = labels::pod_labels("default", "streams", "uid-streams");
    labels.insert(labels::KUBELET_TYPE.into(), "podsandbox".into());
    PodSandboxConfig {
        metadata: SandboxMetadata {
            name: "streams".into(),
            uid: "uid-streams".into(),
            namespace: "default".into(),
            attempt: 0,
        },
        hostname: "streams".into(),
        log_directory: log_directory.display().to_string(),
        labels,
        cgroup_parent: "/kubepods/besteffort/poduid-streams".into(),
        network: NamespaceMode::Pod,
        ..Default::default()
    }
}

fn container(name: &str, script: &str, stdin: bool) -> ContainerConfig {
    let mut labels = labels::pod_labels("default", "streams", "uid-streams");
    labels.insert(labels::CONTAINER_NAME.into(), name.into());
    ContainerConfig {
        metadata: ContainerMetadata {
            name: name.into(),
            attempt: 0,
        },
        image: BUSYBOX_IMAGE.into(),
        command: ["sh", "-c", script].map(String::from).to_vec(),
        labels,
        annotations: BTreeMap::from([(labels::CONTAINER_RESTART_COUNT.into(), "0".into())]),
        log_path: format!("{name}/0.log"),
        stdin,
        ..Default::default()
    }
}

async fn run(
    rt: &kubelet_cri::CriRuntime,
    sb: &str,
    pod: &PodSandboxConfig,
    c: &ContainerConfig,
) -> String {
    let id = rt.create_container(sb, c, pod).await.unwrap();
    rt.start_container(&id).await.unwrap();
    let started = std::time::Instant::now();
    while rt.container_status(&id).await.unwrap().state != ContainerState::Running {
        assert!(started.elapsed() < DEADLINE, "container never ran");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_through_the_proxy_carries_streams_and_the_exit_status() {
    let Some(env) = TestContainerd::start().await else {
        return;
    };
    let rt = env.runtime().await;
    let pod = sandbox(&env);
    let sb = rt.run_pod_sandbox(&pod).await.unwrap();
    let serve = "trap 'exit 0' TERM; sleep 3600 & wait";
    let id = run(&rt, &sb, &pod, &container("main", serve, false)).await;

    let target = Arc::new(Mutex::new(String::new()));
    let (url, server) = proxy_server(target.clone()).await;

    // stdout, stderr and a non-zero exit code.
    let opts = StreamOptions {
        stdout: true,
        stderr: true,
        ..Default::default()
    };
    let cmd = ["sh", "-c", "echo out; echo err >&2; exit 3"].map(String::from);
    *target.lock().unwrap() = rt.exec_stream(&id, &cmd, opts).await.unwrap();
    let s = run_session(&url, None).await;
    assert_eq!(String::from_utf8_lossy(&s.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&s.stderr), "err\n");
    let status: serde_json::Value = serde_json::from_slice(&s.status).expect("status JSON");
    assert_eq!(status["status"], "Failure", "{status}");
    assert_eq!(status["reason"], "NonZeroExitCode", "{status}");
    assert_eq!(
        status["details"]["causes"][0],
        serde_json::json!({"reason": "ExitCode", "message": "3"})
    );

    // stdin in, and success.
    let opts = StreamOptions {
        stdin: true,
        stdout: true,
        ..Default::default()
    };
    let cmd = ["sh", "-c", "read line; echo got:$line"].map(String::from);
    *target.lock().unwrap() = rt.exec_stream(&id, &cmd, opts).await.unwrap();
    let s = run_session(&url, Some(b"hello\n")).await;
    assert_eq!(String::from_utf8_lossy(&s.stdout), "got:hello\n");
    let status: serde_json::Value = serde_json::from_slice(&s.status).expect("status JSON");
    assert_eq!(status["status"], "Success", "{status}");

    // With a TTY: the command runs on a terminal, its output (line endings as a terminal
    // writes them) on stdout.
    let opts = StreamOptions {
        tty: true,
        stdin: true,
        stdout: true,
        stderr: false,
    };
    let cmd = ["sh", "-c", "tty; echo done"].map(String::from);
    *target.lock().unwrap() = rt.exec_stream(&id, &cmd, opts).await.unwrap();
    let s = run_session(&url, None).await;
    let out = String::from_utf8_lossy(&s.stdout);
    assert!(
        out.starts_with("/dev/pts/") && out.contains("done\r\n"),
        "{out:?}"
    );
    assert!(s.stderr.is_empty());

    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_and_port_forward_through_the_proxy() {
    let Some(env) = TestContainerd::start().await else {
        return;
    };
    let rt = env.runtime().await;
    let pod = sandbox(&env);
    let sb = rt.run_pod_sandbox(&pod).await.unwrap();
    let target = Arc::new(Mutex::new(String::new()));
    let (url, server) = proxy_server(target.clone()).await;

    // Attach: the main process reads its stdin and answers on stdout.
    let reader = run(
        &rt,
        &sb,
        &pod,
        &container("reader", "while read line; do echo got:$line; done", true),
    )
    .await;
    let opts = StreamOptions {
        stdin: true,
        stdout: true,
        stderr: true,
        tty: false,
    };
    *target.lock().unwrap() = rt.attach_stream(&reader, opts).await.unwrap();
    let mut request = url.as_str().into_client_request().unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        http::HeaderValue::from_static("v4.channel.k8s.io"),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("attach upgrade");
    ws.send(Message::Binary(b"\x00hello\n".to_vec().into()))
        .await
        .unwrap();
    let mut out = Vec::new();
    while !String::from_utf8_lossy(&out).contains("got:hello") {
        let msg = tokio::time::timeout(DEADLINE, ws.next())
            .await
            .expect("attach output in time")
            .expect("the stream stays open")
            .expect("a frame");
        if let Message::Binary(b) = msg
            && b.first() == Some(&1)
        {
            out.extend_from_slice(&b[1..]);
        }
    }
    drop(ws);

    // Port forward: an HTTP server in the pod, reached on its port through the sandbox.
    let web = "mkdir -p /tmp/www && echo forwarded-page > /tmp/www/index.html && \
               exec httpd -f -p 8080 -h /tmp/www";
    run(&rt, &sb, &pod, &container("web", web, false)).await;
    *target.lock().unwrap() = rt.port_forward_stream(&sb, &[8080]).await.unwrap();
    let mut request = format!("{url}?port=8080").into_client_request().unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        http::HeaderValue::from_static("v4.channel.k8s.io"),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("port-forward upgrade");
    // Each port's data (0) and error (1) channels open with the port number, little endian.
    let mut opened = 0;
    while opened < 2 {
        let msg = tokio::time::timeout(DEADLINE, ws.next())
            .await
            .expect("channel open")
            .unwrap()
            .unwrap();
        if let Message::Binary(b) = msg {
            assert_eq!(&b[1..], &8080u16.to_le_bytes(), "{b:?}");
            opened += 1;
        }
    }
    let get = b"\x00GET /index.html HTTP/1.0\r\n\r\n".to_vec();
    ws.send(Message::Binary(get.into())).await.unwrap();
    let mut page = Vec::new();
    while !String::from_utf8_lossy(&page).contains("forwarded-page") {
        let msg = tokio::time::timeout(DEADLINE, ws.next())
            .await
            .expect("the page in time")
            .expect("the stream stays open")
            .expect("a frame");
        if let Message::Binary(b) = msg
            && b.first() == Some(&0)
        {
            page.extend_from_slice(&b[1..]);
        }
    }
    assert!(
        String::from_utf8_lossy(&page).contains(" 200 OK"),
        "{}",
        String::from_utf8_lossy(&page)
    );
    server.abort();
}
