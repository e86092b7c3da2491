//! `/metrics` and `/metrics/probes`: the kubelet's own series and its probes', from the
//! registry of the kubelet the server serves (the authorization filter of the secure port
//! checks them against the `metrics` subresource).

use axum::Router;
use axum::extract::{FromRef, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::routes::RouteState;
use crate::metrics::{Format, KubeletMetrics};

/// The registry the metrics routes read.
#[derive(Clone)]
pub(crate) struct MetricsState(pub(crate) KubeletMetrics);

impl FromRef<RouteState> for MetricsState {
    fn from_ref(state: &RouteState) -> Self {
        Self(state.handles.kubelet.metrics().clone())
    }
}

/// Counts and times every request of a server (`kubelet_http_requests_total`,
/// `kubelet_http_requests_duration_seconds`, `kubelet_http_inflight_requests`), before
/// authentication as the reference does; the state is the registry and the server type.
pub(crate) async fn track(
    State((metrics, server_type)): State<(KubeletMetrics, &'static str)>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let _in_flight = metrics.http_request(
        crate::metrics::http_method_bucket(request.method().as_str()),
        crate::metrics::http_path_bucket(request.uri().path()),
        server_type,
    );
    next.run(request).await
}

/// The metrics routes, for a router whose state holds the kubelet's handle.
pub(crate) fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    MetricsState: FromRef<S>,
{
    Router::new()
        .route("/metrics", get(metrics))
        .route("/metrics/probes", get(probes))
}

fn format(headers: &HeaderMap) -> Format {
    Format::from_accept(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()))
}

fn exposition(format: Format, body: String) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, format.content_type())],
        body,
    )
        .into_response()
}

/// `/metrics`: Prometheus text, OpenMetrics when the `Accept` header asks for it.
async fn metrics(State(MetricsState(m)): State<MetricsState>, headers: HeaderMap) -> Response {
    let format = format(&headers);
    exposition(format, m.encode(format))
}

/// `/metrics/probes`: `prober_probe_total` and `prober_probe_duration_seconds`.
async fn probes(State(MetricsState(m)): State<MetricsState>, headers: HeaderMap) -> Response {
    let format = format(&headers);
    exposition(format, m.encode_probes(format))
}
