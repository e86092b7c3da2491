//! The endpoints, and the authentication/authorization filter in front of the secure ones
//! (the reference's `InstallAuthFilter`: 401 `Unauthorized`, 403 `Forbidden (...)`, 500
//! `Authorization error (...)`, all plain text).

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::Path;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use k8s_openapi::api::core::v1::Pod;
use serde_json::json;

use super::authn::Credentials;
use super::authz::{Decision, request_attributes};
use super::{Auth, ConnectionInfo, Handles, ServerConfig};
use crate::runtime::{ContainerState, ListFilter, SandboxState};

/// What the handlers share.
#[derive(Clone)]
pub struct RouteState {
    pub(crate) handles: Handles,
    pub(crate) node_name: String,
    pub(crate) node_log_dir: PathBuf,
    pub(crate) pod_logs_root: PathBuf,
    pub(crate) stats: Option<Arc<dyn crate::stats::StatsProvider>>,
}

impl RouteState {
    /// The state for `config`'s node over `handles`.
    pub fn new(config: &ServerConfig, handles: Handles) -> Self {
        Self {
            handles,
            node_name: config.node_name.clone(),
            node_log_dir: config.node_log_dir.clone(),
            pod_logs_root: config.pod_logs_root.clone(),
            stats: config.stats.clone(),
        }
    }
}

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body.into(),
    )
        .into_response()
}

fn json_response(status: StatusCode, value: &serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

/// The secure port's routes behind authentication and authorization.
pub fn secure_router(state: RouteState, auth: Auth) -> Router {
    let node_name = state.node_name.clone();
    let metrics = state.handles.kubelet.metrics().clone();
    Router::new()
        .route("/healthz", get(healthz))
        .route("/healthz/{check}", get(healthz_check))
        .route("/pods", get(pods))
        .route("/runningpods/", get(running_pods))
        .route(
            "/containerLogs/{namespace}/{pod}/{container}",
            get(super::container_logs::container_logs),
        )
        .route("/exec/{namespace}/{pod}/{container}", any(exec))
        .route("/exec/{namespace}/{pod}/{uid}/{container}", any(exec_uid))
        .route("/attach/{namespace}/{pod}/{container}", any(attach))
        .route(
            "/attach/{namespace}/{pod}/{uid}/{container}",
            any(attach_uid),
        )
        .route("/portForward/{namespace}/{pod}", any(port_forward))
        .route(
            "/portForward/{namespace}/{pod}/{uid}",
            any(port_forward_uid),
        )
        .route("/run/{namespace}/{pod}/{container}", post(run))
        .route("/run/{namespace}/{pod}/{uid}/{container}", post(run_uid))
        .route("/logs", get(super::node_logs::root_redirect))
        .route("/logs/", get(super::node_logs::serve_root))
        .route("/logs/{*path}", get(super::node_logs::serve_path))
        .merge(super::stats_routes::routes())
        .merge(super::metrics_routes::routes())
        .fallback(not_found)
        .with_state(state)
        // After the routes and the fallback, so that every path is filtered (an unknown
        // path is a 404 only for whoever may ask).
        .layer(middleware::from_fn_with_state(
            Arc::new((auth, node_name)),
            filter,
        ))
        .layer(middleware::from_fn_with_state(
            (metrics, "readwrite"),
            super::metrics_routes::track,
        ))
}

/// The read-only port's routes (no authentication).
pub fn read_only_router(handles: Handles) -> Router {
    let state = RouteState {
        handles,
        node_name: String::new(),
        node_log_dir: PathBuf::new(),
        pod_logs_root: PathBuf::new(),
        stats: None,
    };
    Router::new()
        .route("/healthz", get(healthz))
        .route("/healthz/{check}", get(healthz_check))
        .route("/pods", get(pods))
        .merge(super::metrics_routes::routes())
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            (state.handles.kubelet.metrics().clone(), "readonly"),
            super::metrics_routes::track,
        ))
        .with_state(state)
}

// Streaming: the runtime's streaming server does the protocol, the kubelet proxies
// (crate::streaming). The `{uid}` forms are the reference's; the UID is not checked there
// either beyond naming the pod.

async fn exec(
    State(state): State<RouteState>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    request: Request,
) -> Response {
    let h = &state.handles;
    crate::streaming::exec(
        &h.kubelet,
        h.runtime.as_ref(),
        (&namespace, &pod, &container),
        request,
    )
    .await
}

async fn exec_uid(
    state: State<RouteState>,
    Path((namespace, pod, _uid, container)): Path<(String, String, String, String)>,
    request: Request,
) -> Response {
    exec(state, Path((namespace, pod, container)), request).await
}

async fn attach(
    State(state): State<RouteState>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    request: Request,
) -> Response {
    let h = &state.handles;
    crate::streaming::attach(
        &h.kubelet,
        h.runtime.as_ref(),
        (&namespace, &pod, &container),
        request,
    )
    .await
}

async fn attach_uid(
    state: State<RouteState>,
    Path((namespace, pod, _uid, container)): Path<(String, String, String, String)>,
    request: Request,
) -> Response {
    attach(state, Path((namespace, pod, container)), request).await
}

async fn port_forward(
    State(state): State<RouteState>,
    Path((namespace, pod)): Path<(String, String)>,
    request: Request,
) -> Response {
    let h = &state.handles;
    crate::streaming::port_forward(&h.kubelet, h.runtime.as_ref(), (&namespace, &pod), request)
        .await
}

async fn port_forward_uid(
    state: State<RouteState>,
    Path((namespace, pod, _uid)): Path<(String, String, String)>,
    request: Request,
) -> Response {
    port_forward(state, Path((namespace, pod)), request).await
}

async fn run(
    State(state): State<RouteState>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    request: Request,
) -> Response {
    let h = &state.handles;
    let query = request.uri().query().unwrap_or("").to_string();
    crate::streaming::run(
        &h.kubelet,
        h.runtime.as_ref(),
        (&namespace, &pod, &container),
        &query,
    )
    .await
}

async fn run_uid(
    state: State<RouteState>,
    Path((namespace, pod, _uid, container)): Path<(String, String, String, String)>,
    request: Request,
) -> Response {
    run(state, Path((namespace, pod, container)), request).await
}

async fn not_found() -> Response {
    text(StatusCode::NOT_FOUND, "404 page not found\n")
}

async fn filter(State(auth): State<Arc<(Auth, String)>>, request: Request, next: Next) -> Response {
    let (auth, node_name) = &*auth;
    let certificates = request
        .extensions()
        .get::<ConnectionInfo>()
        .and_then(|info| info.peer_certificates.clone());
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let credentials = Credentials {
        peer_certificates: certificates.as_deref().map(Vec::as_slice),
        authorization: authorization.as_deref(),
    };
    let user = match auth.authenticator.authenticate(credentials).await {
        Ok(Some(user)) => user,
        Ok(None) => return text(StatusCode::UNAUTHORIZED, "Unauthorized"),
        Err(e) => {
            tracing::info!(error = %e, path = request.uri().path(), "unable to authenticate the request");
            return text(StatusCode::UNAUTHORIZED, "Unauthorized");
        }
    };
    let attributes = request_attributes(&user, request.method(), request.uri().path(), node_name);
    let mut subresources = Vec::with_capacity(attributes.len());
    for a in &attributes {
        subresources.push(a.subresource.as_str());
        match auth.authorizer.authorize(a).await {
            Ok(Decision::Allow) => return next.run(request).await,
            Ok(Decision::Deny(reason)) => {
                tracing::debug!(user = %a.user.name, verb = %a.verb, subresource = %a.subresource, %reason, "not allowed");
            }
            Err(e) => {
                tracing::error!(error = %e, user = %a.user.name, verb = %a.verb, subresource = %a.subresource, "authorization error");
                return text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!(
                        "Authorization error (user={}, verb={}, resource={}, subresource={})",
                        a.user.name, a.verb, a.resource, a.subresource
                    ),
                );
            }
        }
    }
    let Some(first) = attributes.first() else {
        return text(StatusCode::FORBIDDEN, "Forbidden");
    };
    tracing::info!(user = %first.user.name, verb = %first.verb, path = %first.path, "forbidden");
    text(
        StatusCode::FORBIDDEN,
        format!(
            "Forbidden (user={}, verb={}, resource={}, subresource(s)=[{}])\n",
            first.user.name,
            first.verb,
            first.resource,
            subresources.join(" ")
        ),
    )
}

/// The checks of `/healthz`, as the reference installs them: `ping`, `log`, `syncloop`.
fn checks(handles: &Handles) -> [(&'static str, Result<(), String>); 3] {
    [
        ("ping", Ok(())),
        ("log", Ok(())),
        // The reconciler's liveness (its relist runs): what the reference's syncloop check
        // stands for.
        ("syncloop", handles.kubelet.healthz()),
    ]
}

#[derive(serde::Deserialize, Default)]
struct HealthzQuery {
    verbose: Option<String>,
}

/// `/healthz`: `ok`, or with `?verbose` each check; on failure 500 with each check's
/// verdict (reasons withheld) and `healthz check failed`.
async fn healthz(State(state): State<RouteState>, Query(query): Query<HealthzQuery>) -> Response {
    let mut report = String::new();
    let mut failed = false;
    for (name, result) in checks(&state.handles) {
        match result {
            Ok(()) => report.push_str(&format!("[+]{name} ok\n")),
            Err(reason) => {
                tracing::warn!(check = name, %reason, "healthz check failed");
                failed = true;
                report.push_str(&format!("[-]{name} failed: reason withheld\n"));
            }
        }
    }
    if failed {
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{report}healthz check failed\n"),
        );
    }
    if query.verbose.is_some() {
        return text(StatusCode::OK, format!("{report}healthz check passed\n"));
    }
    text(StatusCode::OK, "ok")
}

/// `/healthz/<check>`: `ok` or 500 `internal server error: <reason>`.
async fn healthz_check(
    State(state): State<RouteState>,
    axum::extract::Path(check): axum::extract::Path<String>,
) -> Response {
    match checks(&state.handles)
        .into_iter()
        .find(|(name, _)| *name == check)
    {
        Some((_, Ok(()))) => text(StatusCode::OK, "ok"),
        Some((_, Err(reason))) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("internal server error: {reason}\n"),
        ),
        None => not_found().await,
    }
}

fn pod_list(items: Vec<serde_json::Value>) -> serde_json::Value {
    json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items})
}

/// `/pods`: the pods the kubelet runs with their current status.
async fn pods(State(state): State<RouteState>) -> Response {
    let items = state
        .handles
        .kubelet
        .pods()
        .iter()
        .filter_map(|p: &Pod| serde_json::to_value(p).ok())
        .collect();
    json_response(StatusCode::OK, &pod_list(items))
}

/// `/runningpods/`: the pods the runtime runs (a ready sandbox or a running container), each
/// as the reference shows it: name, namespace, UID and the running containers' names and
/// images.
async fn running_pods(State(state): State<RouteState>) -> Response {
    let runtime = &state.handles.runtime;
    let all = ListFilter::all();
    let (sandboxes, containers) = match tokio::try_join!(
        runtime.list_pod_sandboxes(&all),
        runtime.list_containers(&all),
    ) {
        Ok(lists) => lists,
        Err(e) => {
            tracing::warn!(error = %e, "listing the runtime's pods failed");
            return text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
        }
    };
    // Sorted by UID for a stable answer; a pod may have old sandboxes besides its ready one.
    let mut pods: std::collections::BTreeMap<String, (serde_json::Value, Vec<serde_json::Value>)> =
        std::collections::BTreeMap::new();
    let mut pod_of_sandbox = std::collections::HashMap::new();
    for s in &sandboxes {
        pod_of_sandbox.insert(s.id.clone(), s.metadata.clone());
        if s.state == SandboxState::Ready {
            pods.entry(s.metadata.uid.clone()).or_insert_with(|| {
                (
                    json!({
                        "name": s.metadata.name,
                        "namespace": s.metadata.namespace,
                        "uid": s.metadata.uid,
                        "creationTimestamp": null,
                    }),
                    Vec::new(),
                )
            });
        }
    }
    for c in containers
        .iter()
        .filter(|c| c.state == ContainerState::Running)
    {
        let Some(meta) = pod_of_sandbox.get(&c.sandbox_id) else {
            continue;
        };
        let entry = pods.entry(meta.uid.clone()).or_insert_with(|| {
            (
                json!({
                    "name": meta.name,
                    "namespace": meta.namespace,
                    "uid": meta.uid,
                    "creationTimestamp": null,
                }),
                Vec::new(),
            )
        });
        entry.1.push(json!({
            "name": c.metadata.name,
            "image": c.image,
            "resources": {},
        }));
    }
    let items = pods
        .into_values()
        .map(|(metadata, containers)| {
            let spec = if containers.is_empty() {
                json!({"containers": null})
            } else {
                json!({"containers": containers})
            };
            json!({"metadata": metadata, "spec": spec, "status": {}})
        })
        .collect();
    json_response(StatusCode::OK, &pod_list(items))
}

/// A 301 to `location` (Go's file server redirects).
pub(crate) fn redirect(location: &str) -> Response {
    let mut response = StatusCode::MOVED_PERMANENTLY.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}
