//! `/stats/summary`, `/metrics/resource` and `/metrics/cadvisor`, from the server's
//! [`StatsProvider`] (the authorization filter of the secure port checks them against the
//! `stats` and `metrics` subresources).

use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRef, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::routes::RouteState;
use crate::stats::StatsProvider;
use crate::stats::cadvisor::encode_cadvisor_metrics;
use crate::stats::metrics::{Format, encode_resource_metrics};

/// The provider the stats routes read, if the kubelet has one.
#[derive(Clone)]
pub(crate) struct StatsState(pub(crate) Option<Arc<dyn StatsProvider>>);

impl FromRef<RouteState> for StatsState {
    fn from_ref(state: &RouteState) -> Self {
        Self(state.stats.clone())
    }
}

/// The stats routes, for a router whose state holds the provider.
pub(crate) fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    StatsState: FromRef<S>,
{
    Router::new()
        .route("/stats/summary", get(summary))
        .route("/metrics/resource", get(resource_metrics))
        .route("/metrics/cadvisor", get(cadvisor_metrics))
}

#[derive(serde::Deserialize, Default)]
struct SummaryQuery {
    only_cpu_and_memory: Option<String>,
}

fn unavailable() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "stats are not collected on this node\n",
    )
        .into_response()
}

/// `/stats/summary[?only_cpu_and_memory=true]`: the newest summary as JSON; 500
/// `Internal Error: ...` when it cannot be had, as the reference.
async fn summary(
    State(StatsState(provider)): State<StatsState>,
    Query(query): Query<SummaryQuery>,
) -> Response {
    let Some(provider) = provider else {
        return unavailable();
    };
    // strconv.ParseBool's true values, as the reference parses the parameter.
    let only = query
        .only_cpu_and_memory
        .as_deref()
        .is_some_and(|v| matches!(v, "1" | "t" | "T" | "true" | "TRUE" | "True"));
    let summary = match provider.summary().await {
        Ok(summary) => summary,
        Err(e) => {
            tracing::warn!(error = %e, "stats summary failed");
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                format!("Internal Error: {e}"),
            )
                .into_response();
        }
    };
    let body = if only {
        serde_json::to_vec(&summary.cpu_and_memory_only())
    } else {
        serde_json::to_vec(summary.as_ref())
    };
    match body {
        Ok(body) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("Internal Error: {e}"),
        )
            .into_response(),
    }
}

/// `/metrics/resource`: the Prometheus text format, OpenMetrics when asked for; a failed
/// collection is `scrape_error 1`, not an HTTP error.
async fn resource_metrics(
    State(StatsState(provider)): State<StatsState>,
    headers: HeaderMap,
) -> Response {
    let Some(provider) = provider else {
        return unavailable();
    };
    let format = Format::from_accept(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    let summary = match provider.summary().await {
        Ok(summary) => Some(summary),
        Err(e) => {
            tracing::warn!(error = %e, "resource metrics: stats failed");
            None
        }
    };
    let body = encode_resource_metrics(summary.as_deref(), format);
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, format.content_type())],
        body,
    )
        .into_response()
}

/// `/metrics/cadvisor`: the cached per-cgroup sample in the Prometheus text format,
/// OpenMetrics when asked for; a failed collection is `container_scrape_error 1`.
async fn cadvisor_metrics(
    State(StatsState(provider)): State<StatsState>,
    headers: HeaderMap,
) -> Response {
    let Some(provider) = provider else {
        return unavailable();
    };
    let format = Format::from_accept(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    let sample = match provider.cadvisor().await {
        Ok(sample) => Some(sample),
        Err(e) => {
            tracing::warn!(error = %e, "cadvisor metrics: stats failed");
            None
        }
    };
    let body = encode_cadvisor_metrics(sample.as_deref(), format);
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, format.content_type())],
        body,
    )
        .into_response()
}
