//! SPDY/3.1 through the kubelet's HTTPS server to a real containerd: what kubectl speaks to
//! API servers before 1.30 and what the API server speaks to kubelets. The client is the
//! test's own (`support::spdy`), with a client certificate; the kubelet proxies the upgraded
//! connection to containerd's streaming server (`kubelet_core::streaming`), which speaks the
//! Kubernetes stream protocols: `v4.channel.k8s.io` for exec and attach (streams named by a
//! `streamType` header: error, stdin, stdout, stderr, resize; the exit status as a
//! `metav1.Status` on the error stream), `portforward.k8s.io` for port forwarding (a data
//! and an error stream per `port` and `requestID`).
//!
//! Skipped when no containerd can run here, unless `KUBELET_TEST_REQUIRE_CONTAINERD=1`.

#[allow(dead_code)]
mod support;

use kubelet_core::testing::pods::{container, pod};
use kubelet_cri::testing::BUSYBOX_IMAGE;
use support::node::{DEADLINE, Node, SERVE};
use support::spdy::{
    self, FLAG_FIN, Frame, HeaderDecoder, HeaderEncoder, Headers, Stream, Upgraded,
};

/// What kubectl offers for exec and attach, newest first.
const EXEC_PROTOCOLS: [&str; 4] = [
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
];
const PORT_FORWARD_PROTOCOL: &str = "portforward.k8s.io";

async fn upgrade(node: &Node, path: &str, protocols: &[&str]) -> Upgraded {
    let io = node.connect().await;
    match tokio::time::timeout(
        DEADLINE,
        spdy::upgrade(io, &node.authority(), path, protocols),
    )
    .await
    {
        Ok(Ok(up)) => up,
        Ok(Err(refused)) => panic!(
            "upgrade of {path} refused: {} {}",
            refused.status, refused.body
        ),
        Err(_) => panic!("upgrade of {path}: no answer within {DEADLINE:?}"),
    }
}

fn negotiated(up: &Upgraded) -> &str {
    up.headers
        .get("X-Stream-Protocol-Version")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

async fn open(up: &Upgraded, headers: &[(&str, &str)]) -> Stream {
    tokio::time::timeout(DEADLINE, up.connection.open(headers))
        .await
        .expect("the stream answered in time")
        .expect("the stream accepted")
}

/// The `metav1.Status` the server wrote on the error stream before closing it.
async fn status(error: &mut Stream) -> serde_json::Value {
    let raw = error.read_to_end(DEADLINE).await.expect("error stream");
    serde_json::from_slice(&raw)
        .unwrap_or_else(|e| panic!("status JSON: {e}: {:?}", String::from_utf8_lossy(&raw)))
}

fn exit_code(status: &serde_json::Value) -> Option<String> {
    status["details"]["causes"]
        .as_array()?
        .iter()
        .find(|c| c["reason"] == "ExitCode")
        .and_then(|c| c["message"].as_str())
        .map(str::to_string)
}

/// `/exec/default/<pod>/main?command=...&<streams>` with the command percent-encoded.
fn exec_path(pod: &str, command: &[&str], streams: &str) -> String {
    let mut path = format!("/exec/default/{pod}/main?{streams}");
    for arg in command {
        path.push_str("&command=");
        for b in arg.bytes() {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                path.push(b as char);
            } else {
                path.push_str(&format!("%{b:02X}"));
            }
        }
    }
    path
}

#[test]
fn frames_round_trip_through_the_encoding() {
    // The dictionary of the specification: 1423 bytes.
    assert_eq!(spdy::dictionary().len(), 1423);
    let headers = |pairs: &[(&str, &str)]| -> Headers {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let frames = vec![
        Frame::SynStream {
            stream_id: 1,
            associated_to: 0,
            priority: 3,
            flags: FLAG_FIN,
            headers: headers(&[("streamtype", "error"), ("port", "8080")]),
        },
        Frame::SynReply {
            stream_id: 1,
            flags: 0,
            headers: headers(&[]),
        },
        // The same names again: the shared compression context must carry across blocks.
        Frame::SynStream {
            stream_id: 3,
            associated_to: 0,
            priority: 0,
            flags: 0,
            headers: headers(&[("streamtype", "data"), ("port", "8080"), ("a", "x\0y")]),
        },
        Frame::Headers {
            stream_id: 3,
            flags: 0,
            headers: headers(&[("requestid", "0")]),
        },
        Frame::RstStream {
            stream_id: 3,
            status: spdy::REFUSED_STREAM,
        },
        Frame::Settings {
            flags: 1,
            entries: vec![(0, 4, 100), (1, 7, 65536)],
        },
        Frame::Ping { id: 7 },
        Frame::GoAway {
            last_good_stream_id: 3,
            status: spdy::GOAWAY_OK,
        },
        Frame::WindowUpdate {
            stream_id: 0,
            delta: 65536,
        },
        Frame::Data {
            stream_id: 5,
            flags: FLAG_FIN,
            data: b"hello".to_vec(),
        },
    ];
    let mut encoder = HeaderEncoder::new().unwrap();
    let mut wire = Vec::new();
    for f in &frames {
        wire.extend_from_slice(&f.encode(&mut encoder).unwrap());
    }
    // The wire format of the fixed frames, byte for byte as the specification draws them.
    let ping = Frame::Ping { id: 7 }.encode(&mut encoder).unwrap();
    assert_eq!(ping, [0x80, 3, 0, 6, 0, 0, 0, 4, 0, 0, 0, 7]);
    let data = Frame::Data {
        stream_id: 5,
        flags: FLAG_FIN,
        data: b"hi".to_vec(),
    }
    .encode(&mut encoder)
    .unwrap();
    assert_eq!(data, [0, 0, 0, 5, 1, 0, 0, 2, b'h', b'i']);
    let window = Frame::WindowUpdate {
        stream_id: 1,
        delta: 10,
    }
    .encode(&mut encoder)
    .unwrap();
    assert_eq!(window, [0x80, 3, 0, 9, 0, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0, 10]);

    let mut decoder = HeaderDecoder::new();
    let mut decoded = Vec::new();
    let mut at = 0;
    // A partial frame is no frame yet.
    assert!(Frame::decode(&wire[..7], &mut decoder).unwrap().is_none());
    while let Some((f, used)) = Frame::decode(&wire[at..], &mut decoder).unwrap() {
        decoded.push(f);
        at += used;
    }
    assert_eq!(at, wire.len());
    assert_eq!(decoded, frames);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_over_spdy_with_stdin_exit_codes_and_a_tty_resize() {
    let Some(node) = Node::start().await else {
        return;
    };
    let p = pod("spdy-exec")
        .uid("uid-spdy-exec")
        .container(
            container("main", BUSYBOX_IMAGE)
                .command(["sh", "-c", SERVE])
                .pull_policy("IfNotPresent"),
        )
        .grace_period(5)
        .build();
    node.run_pod(p, "Running").await;

    // stdin in, echoed by cat; the end of stdin (FIN on the stdin stream) ends cat, and the
    // v4 protocol reports success on the error stream.
    let path = exec_path("spdy-exec", &["cat"], "input=1&output=1&error=1");
    let up = upgrade(&node, &path, &EXEC_PROTOCOLS).await;
    assert_eq!(negotiated(&up), "v4.channel.k8s.io", "{:?}", up.headers);
    assert_eq!(
        up.headers.get("upgrade").and_then(|v| v.to_str().ok()),
        Some("SPDY/3.1")
    );
    let mut error = open(&up, &[("streamType", "error")]).await;
    let stdin = open(&up, &[("streamType", "stdin")]).await;
    let mut stdout = open(&up, &[("streamType", "stdout")]).await;
    let mut stderr = open(&up, &[("streamType", "stderr")]).await;
    // A PING answered while the command runs: the session itself is sound.
    tokio::time::timeout(DEADLINE, up.connection.ping())
        .await
        .expect("PONG in time")
        .expect("PING round trip");
    stdin.write(b"hello spdy\n").await.unwrap();
    stdin.write(b"second line\n").await.unwrap();
    stdin.close().await.unwrap();
    let out = stdout.read_to_end(DEADLINE).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&out), "hello spdy\nsecond line\n");
    assert!(stderr.read_to_end(DEADLINE).await.unwrap().is_empty());
    let st = status(&mut error).await;
    assert_eq!(st["status"], "Success", "{st}");
    // The session ends with the command: the server goes away.
    let end = up.connection.closed(DEADLINE).await;
    assert!(end.is_ok(), "{end:?}");
    // Each of the four streams got its SYN_REPLY.
    let replies = up
        .connection
        .received()
        .iter()
        .filter(|f| matches!(f, Frame::SynReply { .. }))
        .count();
    assert_eq!(replies, 4);

    // stdout, stderr and a non-zero exit code carried back as the v4 status.
    let path = exec_path(
        "spdy-exec",
        &["sh", "-c", "echo out; echo err >&2; exit 7"],
        "output=1&error=1",
    );
    let up = upgrade(&node, &path, &EXEC_PROTOCOLS).await;
    let mut error = open(&up, &[("streamType", "error")]).await;
    let mut stdout = open(&up, &[("streamType", "stdout")]).await;
    let mut stderr = open(&up, &[("streamType", "stderr")]).await;
    assert_eq!(stdout.read_to_end(DEADLINE).await.unwrap(), b"out\n");
    assert_eq!(stderr.read_to_end(DEADLINE).await.unwrap(), b"err\n");
    let st = status(&mut error).await;
    assert_eq!(st["status"], "Failure", "{st}");
    assert_eq!(st["reason"], "NonZeroExitCode", "{st}");
    assert_eq!(exit_code(&st).as_deref(), Some("7"), "{st}");

    // A TTY and its size: the resize stream carries `{"Width":..,"Height":..}`, each new
    // size reaching the terminal (`stty size` prints rows and columns).
    let script = "while read x; do [ \"$x\" = q ] && exit 5; stty size; done";
    let path = exec_path("spdy-exec", &["sh", "-c", script], "input=1&output=1&tty=1");
    let up = upgrade(&node, &path, &EXEC_PROTOCOLS).await;
    let mut error = open(&up, &[("streamType", "error")]).await;
    let stdin = open(&up, &[("streamType", "stdin")]).await;
    let mut stdout = open(&up, &[("streamType", "stdout")]).await;
    let resize = open(&up, &[("streamType", "resize")]).await;
    for (width, height) in [(123, 45), (200, 50)] {
        let size = serde_json::json!({"Width": width, "Height": height});
        resize.write(size.to_string().as_bytes()).await.unwrap();
        let want = format!("{height} {width}");
        // The resize and the line travel different streams: ask again until the new size
        // shows.
        let mut seen = Vec::new();
        let until = tokio::time::Instant::now() + DEADLINE;
        while !String::from_utf8_lossy(&seen).contains(&want) {
            stdin.write(b"\n").await.unwrap();
            match tokio::time::timeout_at(until, stdout.read()).await {
                Ok(Some(chunk)) => seen.extend_from_slice(&chunk),
                Ok(None) => panic!("stdout ended: {:?}", String::from_utf8_lossy(&seen)),
                Err(_) => panic!(
                    "no {want:?} within {DEADLINE:?}: {:?}",
                    String::from_utf8_lossy(&seen)
                ),
            }
        }
    }
    stdin.write(b"q\n").await.unwrap();
    let st = status(&mut error).await;
    assert_eq!(exit_code(&st).as_deref(), Some("5"), "{st}");
    // The terminal echoed the line, and then the stream ended.
    let rest = stdout.read_to_end(DEADLINE).await.unwrap();
    assert!(String::from_utf8_lossy(&rest).contains("q\r\n"), "{rest:?}");

    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_port_forward_and_refusals_over_spdy() {
    let Some(node) = Node::start().await else {
        return;
    };
    let web = "mkdir -p /tmp/www && echo forwarded-page > /tmp/www/index.html && \
               exec httpd -f -p 8080 -h /tmp/www";
    let p = pod("spdy-attach")
        .uid("uid-spdy-attach")
        .container(
            container("main", BUSYBOX_IMAGE)
                .command(["sh", "-c", "while read line; do echo got:$line; done"])
                .with(|c| c.stdin = Some(true))
                .pull_policy("IfNotPresent"),
        )
        .container(
            container("web", BUSYBOX_IMAGE)
                .command(["sh", "-c", web])
                .port(8080)
                .pull_policy("IfNotPresent"),
        )
        .grace_period(2)
        .build();
    node.run_pod(p, "Running").await;

    // No such pod: the kubelet's own 404, before any runtime call.
    let io = node.connect().await;
    let refused = spdy::upgrade(
        io,
        &node.authority(),
        "/exec/default/nope/main?command=true&output=1",
        &EXEC_PROTOCOLS,
    )
    .await
    .expect_err("no pod, no stream");
    assert_eq!(refused.status, http::StatusCode::NOT_FOUND);
    // No stream asked for: 400.
    let io = node.connect().await;
    let refused = spdy::upgrade(
        io,
        &node.authority(),
        "/exec/default/nope/main?command=true",
        &EXEC_PROTOCOLS,
    )
    .await
    .expect_err("no streams");
    assert_eq!(refused.status, http::StatusCode::BAD_REQUEST);
    assert!(refused.body.contains("at least 1"), "{}", refused.body);

    // Attach: the main process reads the stdin it is given and answers on stdout.
    let up = upgrade(
        &node,
        "/attach/default/spdy-attach/main?input=1&output=1&error=1",
        &EXEC_PROTOCOLS,
    )
    .await;
    assert_eq!(negotiated(&up), "v4.channel.k8s.io");
    let _error = open(&up, &[("streamType", "error")]).await;
    let stdin = open(&up, &[("streamType", "stdin")]).await;
    let mut stdout = open(&up, &[("streamType", "stdout")]).await;
    let _stderr = open(&up, &[("streamType", "stderr")]).await;
    stdin.write(b"hello attach\n").await.unwrap();
    stdout
        .read_until("got:hello attach", DEADLINE)
        .await
        .unwrap();
    stdin.write(b"again\n").await.unwrap();
    stdout.read_until("got:again", DEADLINE).await.unwrap();
    up.connection.close().await.unwrap();
    drop(up);

    // Port forward: per request, an error stream (which the client half-closes at once, as
    // kubectl does) and a data stream, paired by `requestID`.
    let up = upgrade(
        &node,
        "/portForward/default/spdy-attach",
        &[PORT_FORWARD_PROTOCOL],
    )
    .await;
    assert_eq!(negotiated(&up), PORT_FORWARD_PROTOCOL);
    for request_id in ["0", "1"] {
        let error = open(
            &up,
            &[
                ("streamType", "error"),
                ("port", "8080"),
                ("requestID", request_id),
            ],
        )
        .await;
        error.close().await.unwrap();
        let mut data = open(
            &up,
            &[
                ("streamType", "data"),
                ("port", "8080"),
                ("requestID", request_id),
            ],
        )
        .await;
        data.write(b"GET /index.html HTTP/1.0\r\n\r\n")
            .await
            .unwrap();
        // httpd answers and closes; the server then half-closes the data stream.
        let page = data.read_to_end(DEADLINE).await.unwrap();
        let page = String::from_utf8_lossy(&page);
        assert!(
            page.starts_with("HTTP/1.") && page.contains(" 200 OK"),
            "{page}"
        );
        assert!(page.contains("forwarded-page"), "{page}");
    }
    // A port nothing listens on: the error stream says so.
    let mut error = open(
        &up,
        &[
            ("streamType", "error"),
            ("port", "8081"),
            ("requestID", "2"),
        ],
    )
    .await;
    let _data = open(
        &up,
        &[("streamType", "data"), ("port", "8081"), ("requestID", "2")],
    )
    .await;
    let message = error.read_to_end(DEADLINE).await.unwrap();
    let message = String::from_utf8_lossy(&message);
    assert!(message.contains("8081"), "{message}");
    up.connection.close().await.unwrap();

    node.shutdown().await;
}
