//! `rest_client_requests_total{code,method,host}` for the kube-rs client, as client-go counts
//! the reference kubelet's requests: each request once, by the HTTP status of its answer
//! (`<error>` when none came), its method and the API server's `host:port`.

use std::sync::Arc;

use kube::client::Body;

use super::KubeletMetrics;
use crate::apiserver::NodeClient;

/// The `code` of a request that got no answer.
pub const NO_ANSWER: &str = "<error>";

/// A client sending through `client` whose requests are counted into `metrics` under `host`.
pub fn instrument_client(
    client: kube::Client,
    host: &str,
    metrics: KubeletMetrics,
) -> kube::Client {
    let default_namespace = client.default_namespace().to_string();
    let host: Arc<str> = Arc::from(host);
    let service = tower::service_fn(move |request: http::Request<Body>| {
        let client = client.clone();
        let metrics = metrics.clone();
        let host = host.clone();
        async move {
            let method = request.method().as_str().to_string();
            let result = client.send(request).await;
            let code = match &result {
                Ok(response) => response.status().as_u16().to_string(),
                Err(_) => NO_ANSWER.to_string(),
            };
            metrics.rest_client_request(&code, &method, &host);
            result
        }
    });
    kube::Client::new(service, default_namespace)
}

/// `client` with its requests counted into `metrics` (the host taken from its URL).
pub fn instrument_node_client(client: &NodeClient, metrics: &KubeletMetrics) -> NodeClient {
    let host = host_of(client.url());
    NodeClient::from_client(
        instrument_client(client.client().clone(), &host, metrics.clone()),
        client.node_name(),
        client.url(),
    )
}

/// `host:port` of a URL, as Go's `url.URL.Host` (the port only when the URL names one).
fn host_of(url: &str) -> String {
    url.parse::<http::Uri>()
        .ok()
        .and_then(|u| u.authority().map(|a| a.as_str().to_string()))
        .unwrap_or_else(|| url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_is_the_authority() {
        assert_eq!(host_of("https://127.0.0.1:6443/"), "127.0.0.1:6443");
        assert_eq!(host_of("https://api.example"), "api.example");
    }

    #[tokio::test]
    async fn requests_are_counted_by_code_method_and_host() {
        let (mock, mut handle) =
            tower_test::mock::pair::<http::Request<Body>, http::Response<Body>>();
        let server = tokio::spawn(async move {
            for status in [200u16, 404] {
                let (_request, send) = handle.next_request().await.expect("request");
                send.send_response(
                    http::Response::builder()
                        .status(status)
                        .body(Body::from(b"{}".to_vec()))
                        .expect("response"),
                );
            }
        });
        let metrics = KubeletMetrics::new();
        let client = instrument_client(
            kube::Client::new(mock, "default"),
            "10.0.0.1:6443",
            metrics.clone(),
        );
        for _ in 0..2 {
            let request = http::Request::get("/api/v1/nodes/n")
                .body(Body::empty())
                .expect("request");
            let _ = client.send(request).await;
        }
        server.await.expect("server");
        let text = metrics.encode(super::super::Format::Text);
        for line in [
            "rest_client_requests_total{code=\"200\",host=\"10.0.0.1:6443\",method=\"GET\"} 1",
            "rest_client_requests_total{code=\"404\",host=\"10.0.0.1:6443\",method=\"GET\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
    }
}
