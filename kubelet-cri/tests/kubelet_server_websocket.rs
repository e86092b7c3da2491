//! WebSocket exec through the kubelet's HTTPS server to a real containerd, offering the
//! newer `v5.channel.k8s.io` first as kubectl 1.30+ does. The kubelet proxies the upgrade
//! and does not translate (as the reference kubelet), so the runtime's streaming server picks
//! the protocol; containerd 1.6 knows up to `v4.channel.k8s.io`, so that is what a client
//! gets, and a client that offers only v5 is refused by the runtime with a 403 (kubectl
//! 1.30+ then falls back to SPDY). v5 (with its stdin close signal) works through the kubelet
//! once the runtime speaks it: the kubelet passes the client's offer and the runtime's choice
//! through unchanged.
//!
//! Skipped when no containerd can run here, unless `KUBELET_TEST_REQUIRE_CONTAINERD=1`.

#[allow(dead_code)]
mod support;

use futures::{SinkExt, StreamExt};
use kubelet_core::testing::pods::{container, pod};
use kubelet_cri::testing::BUSYBOX_IMAGE;
use support::node::{DEADLINE, Node, SERVE};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};

/// What came back on each channel of one session.
#[derive(Debug, Default)]
struct Session {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    status: Vec<u8>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_offering_v5_gets_what_the_runtime_speaks() {
    let Some(node) = Node::start().await else {
        return;
    };
    let p = pod("ws-exec")
        .uid("uid-ws-exec")
        .container(
            container("main", BUSYBOX_IMAGE)
                .command(["sh", "-c", SERVE])
                .pull_policy("IfNotPresent"),
        )
        .grace_period(5)
        .build();
    node.run_pod(p, "Running").await;

    let path = "/exec/default/ws-exec/main?command=sh&command=-c\
                &command=read%20line%3B%20echo%20got%3A%24line%3B%20echo%20e%20%3E%262%3B%20exit%203\
                &input=1&output=1&error=1";
    let url = format!("wss://{}{path}", node.authority());

    // Offered v5 then v4: the runtime answers v4.
    let mut request = url.as_str().into_client_request().unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        http::HeaderValue::from_static("v5.channel.k8s.io, v4.channel.k8s.io"),
    );
    let io = node.connect().await;
    let (mut ws, resp) =
        tokio::time::timeout(DEADLINE, tokio_tungstenite::client_async(request, io))
            .await
            .expect("upgrade in time")
            .expect("WebSocket upgrade through the kubelet");
    let protocol = resp
        .headers()
        .get("Sec-WebSocket-Protocol")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert_eq!(protocol, "v4.channel.k8s.io", "{:?}", resp.headers());

    // v4 exec works: stdin in (v4 has no way to close stdin alone, so the command reads one
    // line), stdout and stderr out, the exit code on the status channel.
    ws.send(Message::Binary(b"\x00hello\n".to_vec().into()))
        .await
        .unwrap();
    let mut session = Session::default();
    loop {
        let msg = tokio::time::timeout(DEADLINE, ws.next())
            .await
            .expect("the stream ends in time");
        let data = match msg {
            None | Some(Ok(Message::Close(_))) => break,
            Some(Ok(Message::Binary(b))) => b.to_vec(),
            Some(Ok(_)) => continue,
            // The runtime closes the TCP connection after the status frame.
            Some(Err(_)) => break,
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
    assert_eq!(String::from_utf8_lossy(&session.stdout), "got:hello\n");
    assert_eq!(String::from_utf8_lossy(&session.stderr), "e\n");
    let status: serde_json::Value = serde_json::from_slice(&session.status).expect("status");
    assert_eq!(status["reason"], "NonZeroExitCode", "{status}");
    assert_eq!(
        status["details"]["causes"][0],
        serde_json::json!({"reason": "ExitCode", "message": "3"})
    );

    // Offered v5 alone: the runtime refuses the upgrade, and the kubelet passes its answer on.
    let mut request = url.as_str().into_client_request().unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        http::HeaderValue::from_static("v5.channel.k8s.io"),
    );
    let io = node.connect().await;
    match tokio::time::timeout(DEADLINE, tokio_tungstenite::client_async(request, io))
        .await
        .expect("an answer in time")
    {
        Ok((_, resp)) => panic!(
            "v5 alone accepted: {:?} {:?}",
            resp.status(),
            resp.headers()
        ),
        Err(tungstenite::Error::Http(resp)) => {
            // containerd's streaming server (golang.org/x/net/websocket under wsstream)
            // answers a bare `403 Forbidden` on the hijacked connection, no body.
            assert_eq!(
                resp.status(),
                http::StatusCode::FORBIDDEN,
                "{:?}",
                resp.headers()
            );
            assert!(resp.headers().get("Sec-WebSocket-Protocol").is_none());
        }
        Err(e) => panic!("v5 alone: {e}"),
    }

    node.shutdown().await;
}
