//! The kubelet's local HTTP server, on `healthzBindAddress:healthzPort` (127.0.0.1:10248).
//!
//! - `GET /healthz`: `200 ok` while the reconciler is healthy (the runtime was relisted
//!   recently), else `500` with the reason, as the reference's healthz endpoint.
//! - `GET /pods`: the pods on this node with their current status, as a `v1` `PodList`.
//!
//! The reference serves `/pods` on its main server (port 10250, authenticated, TLS) and on the
//! read-only port, not on the healthz port. This kubelet serves those too
//! (`kubelet_core::server`), and keeps `/pods` on the healthz listener for the tools that read
//! it there; it binds to localhost by default, which keeps the pod list private.

use std::future::Future;
use std::net::SocketAddr;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use kubelet_core::KubeletHandle;
use thiserror::Error;

/// Errors of the HTTP server.
#[derive(Debug, Error)]
pub enum ServerError {
    /// The listen address could not be bound.
    #[error("healthz server: cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Serving failed.
    #[error("healthz server on {addr}: {source}")]
    Serve {
        /// The address.
        addr: SocketAddr,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// The server's routes over a kubelet handle.
pub fn router(handle: KubeletHandle) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/pods", get(pods))
        .with_state(handle)
}

async fn healthz(State(handle): State<KubeletHandle>) -> Response {
    match handle.healthz() {
        Ok(()) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "ok",
        )
            .into_response(),
        Err(message) => {
            tracing::warn!(%message, "healthz check failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                message,
            )
                .into_response()
        }
    }
}

async fn pods(State(handle): State<KubeletHandle>) -> Response {
    let list = serde_json::json!({
        "kind": "PodList",
        "apiVersion": "v1",
        "metadata": {},
        "items": handle.pods(),
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        list.to_string(),
    )
        .into_response()
}

/// A bound server, ready to serve. Binding first lets the daemon fail at start, with the
/// address in the message, when the port is taken.
pub struct Server {
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
    handle: KubeletHandle,
}

impl Server {
    /// Bind to `addr` (port 0 picks a free port; see [`Server::local_addr`]).
    pub async fn bind(addr: SocketAddr, handle: KubeletHandle) -> Result<Self, ServerError> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| ServerError::Bind { addr, source })?;
        Ok(Self {
            listener,
            addr,
            handle,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serve until `shutdown` completes, then finish in-flight requests.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let addr = self.addr;
        tracing::info!(%addr, "serving /healthz and /pods");
        axum::serve(self.listener, router(self.handle))
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(|source| ServerError::Serve { addr, source })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use axum::body::{Body, to_bytes};
    use axum::http::Request;
    use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use kubelet_core::testing::{ChannelSource, FakeRuntime, RecordingReporter};
    use kubelet_core::{Kubelet, KubeletConfig};
    use tower::ServiceExt;

    use super::*;

    fn kubelet(source: Option<ChannelSource>) -> Kubelet {
        let mut builder = Kubelet::builder(KubeletConfig::new("node-1"))
            .runtime(Arc::new(FakeRuntime::new()))
            .reporter(Arc::new(RecordingReporter::default()));
        if let Some(source) = source {
            builder = builder.source(Box::new(source));
        }
        builder.build().unwrap()
    }

    async fn get(handle: &KubeletHandle, path: &str) -> (StatusCode, String, String) {
        let response = router(handle.clone())
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let body = to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (
            status,
            content_type,
            String::from_utf8(body.to_vec()).unwrap(),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn healthz_ok_while_relisting_recently() {
        let kubelet = kubelet(None);
        let (status, content_type, body) = get(&kubelet.handle(), "/healthz").await;
        assert_eq!(status, StatusCode::OK);
        assert!(content_type.starts_with("text/plain"));
        assert_eq!(body, "ok");
    }

    #[tokio::test(start_paused = true)]
    async fn healthz_500_with_reason_when_relist_is_stale() {
        // Not running: nothing relists, so after the reference's 3-minute threshold the
        // kubelet is unhealthy.
        let kubelet = kubelet(None);
        tokio::time::advance(Duration::from_secs(181)).await;
        let (status, _, body) = get(&kubelet.handle(), "/healthz").await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body, kubelet.handle().healthz().unwrap_err());
        assert!(body.contains("pleg"), "{body}");
    }

    #[tokio::test(start_paused = true)]
    async fn pods_is_an_empty_pod_list_at_start() {
        let kubelet = kubelet(None);
        let (status, content_type, body) = get(&kubelet.handle(), "/pods").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(content_type, "application/json");
        let list: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            list,
            serde_json::json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": []})
        );
    }

    #[tokio::test(start_paused = true)]
    async fn pods_lists_the_pods_the_kubelet_runs() {
        let (source, sender) = ChannelSource::new("file");
        let kubelet = kubelet(Some(source));
        let handle = kubelet.handle();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(kubelet.run(async move {
            let _ = stopped.await;
        }));

        let pod = Pod {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                uid: Some("uid-web".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "nginx".into(),
                    image: Some("nginx:1.27".into()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(sender.snapshot(vec![pod]));

        // Paused time: each sleep lets the reconciler run; the deadline is in virtual time.
        let mut listed = serde_json::Value::Null;
        for _ in 0..600 {
            let (status, _, body) = get(&handle, "/pods").await;
            assert_eq!(status, StatusCode::OK);
            listed = serde_json::from_str(&body).unwrap();
            if listed["items"]
                .as_array()
                .is_some_and(|items| !items.is_empty())
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let items = listed["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "{listed}");
        assert_eq!(items[0]["metadata"]["name"], "web");
        assert_eq!(items[0]["metadata"]["namespace"], "default");
        assert_eq!(items[0]["spec"]["containers"][0]["image"], "nginx:1.27");

        stop.send(()).unwrap();
        running.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn server_binds_and_serves_over_tcp() {
        let kubelet = kubelet(None);
        let server = Server::bind("127.0.0.1:0".parse().unwrap(), kubelet.handle())
            .await
            .unwrap();
        let addr = server.local_addr();
        assert_ne!(addr.port(), 0);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn(server.serve(async move {
            let _ = stopped.await;
        }));

        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
        conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut response = String::new();
        conn.read_to_string(&mut response).await.unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.ends_with("ok"), "{response}");

        // A second bind on the same address fails and names it.
        let err = Server::bind(addr, kubelet.handle()).await.err().unwrap();
        assert!(err.to_string().contains(&addr.to_string()), "{err}");

        stop.send(()).unwrap();
        serving.await.unwrap().unwrap();
    }
}
