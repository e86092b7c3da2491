//! HTTP routing: discovery, authentication, the request log and faults, and the verbs on
//! each resource.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode, header};
use serde_json::{Value, json};

use super::Shared;
use super::convert::{to_external, to_internal};
use super::faults::{RequestRecord, Verb};
use super::patch::{PatchType, json_patch, merge_patch};
use super::resources::{self, ResourceInfo, storage_form};
use super::selectors::{FieldSelector, LabelSelector, Selectors};
use super::status::ApiError;
use super::store::{DeleteOptions, Part, Store};
use super::token::token_request;
use super::typed;
use super::watch::{self, WatchParams};
use crate::strategic_merge::{PatchError as MergeError, PatchErrorKind, StrategicMerge};

/// The response body type.
pub(crate) type Body = BoxBody<Bytes, Infallible>;

fn hex_val(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex_val(bytes[i + 1]), hex_val(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses a query string (form encoding, as Go's url.ParseQuery: first value wins here).
pub(crate) fn parse_query(q: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for pair in q.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.entry(percent_decode(k))
            .or_insert_with(|| percent_decode(v));
    }
    out
}

fn full(code: u16, body: Bytes, content_type: &str) -> Response<Body> {
    let mut resp = Response::new(Full::new(body).boxed());
    *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = header::HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp
}

fn json_response(code: u16, v: &Value) -> Response<Body> {
    full(code, Bytes::from(v.to_string()), "application/json")
}

fn error_response(e: &ApiError) -> Response<Body> {
    let mut resp = json_response(e.code, &e.to_status());
    if let Some(secs) = e.retry_after
        && let Ok(v) = header::HeaderValue::from_str(&secs.to_string())
    {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

/// A request for a resource (as opposed to discovery and health paths).
#[derive(Debug, Clone)]
struct ResourceRoute {
    info: &'static ResourceInfo,
    namespace: Option<String>,
    name: Option<String>,
    sub: Option<String>,
    legacy_watch: bool,
}

impl ResourceRoute {
    fn resource(&self) -> String {
        match &self.sub {
            Some(s) => format!("{}/{s}", self.info.plural),
            None => self.info.plural.to_string(),
        }
    }
}

enum Route {
    Static(Value),
    Text(&'static str),
    Resource(ResourceRoute),
    NotFound,
}

fn route(path: &str, address: &str) -> Route {
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let (group, version, rest): (&str, &str, &[&str]) = match segs.as_slice() {
        [] => {
            return Route::Static(
                json!({"paths": ["/api", "/api/v1", "/apis", "/healthz", "/livez", "/readyz", "/version"]}),
            );
        }
        ["version"] => return Route::Static(resources::version_info()),
        ["healthz" | "livez" | "readyz", ..] => return Route::Text("ok"),
        ["api"] => return Route::Static(resources::api_versions(address)),
        ["api", "v1"] => {
            return resources::api_resource_list("", "v1").map_or(Route::NotFound, Route::Static);
        }
        ["apis"] => return Route::Static(resources::api_group_list()),
        ["apis", g] => return resources::api_group(g).map_or(Route::NotFound, Route::Static),
        ["apis", g, v] => {
            return resources::api_resource_list(g, v).map_or(Route::NotFound, Route::Static);
        }
        ["api", "v1", rest @ ..] => ("", "v1", rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Route::NotFound,
    };
    let (legacy_watch, rest) = match rest {
        ["watch", r @ ..] => (true, r),
        r => (false, r),
    };
    let parsed = match rest {
        ["namespaces", ns, plural, tail @ ..]
            if resources::lookup(group, version, plural).is_some_and(|i| i.namespaced) =>
        {
            resources::lookup(group, version, plural).map(|info| (info, Some(ns.to_string()), tail))
        }
        [plural, tail @ ..] => {
            resources::lookup(group, version, plural).map(|info| (info, None, tail))
        }
        _ => None,
    };
    let Some((info, namespace, tail)) = parsed else {
        return Route::NotFound;
    };
    let (name, sub) = match tail {
        [] => (None, None),
        [name] => (Some(name.to_string()), None),
        [name, sub] => (Some(name.to_string()), Some(sub.to_string())),
        _ => return Route::NotFound,
    };
    if namespace.is_none() && info.namespaced && name.is_some() {
        // /api/v1/pods/<name> is not a path: namespaced objects live under a namespace.
        return Route::NotFound;
    }
    match sub.as_deref() {
        None => {}
        Some("status") if info.has_status => {}
        Some("token") if info.plural == "serviceaccounts" => {}
        Some(_) => return Route::NotFound,
    }
    Route::Resource(ResourceRoute {
        info,
        namespace,
        name,
        sub,
        legacy_watch,
    })
}

fn verb_of(method: &Method, r: &ResourceRoute, query: &HashMap<String, String>) -> Option<Verb> {
    let watching =
        r.legacy_watch || matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
    Some(match (method.as_str(), r.name.is_some()) {
        ("GET", true) if watching => Verb::Watch,
        ("GET", true) => Verb::Get,
        ("GET", false) if watching => Verb::Watch,
        ("GET", false) => Verb::List,
        ("POST", _) => Verb::Create,
        ("PUT", true) => Verb::Update,
        ("PATCH", true) => Verb::Patch,
        ("DELETE", true) => Verb::Delete,
        ("DELETE", false) => Verb::DeleteCollection,
        _ => return None,
    })
}

enum Auth {
    User(String),
    Anonymous,
    Rejected,
}

fn authenticate(shared: &Shared, req: &Request<Incoming>, cert_user: Option<String>) -> Auth {
    if let Some(h) = req.headers().get(header::AUTHORIZATION) {
        let token = h
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        let tokens = shared.lock_tokens();
        return match token.and_then(|t| tokens.get(t)) {
            Some(user) => Auth::User(user.clone()),
            // With no token authenticator configured, a token is not checked.
            None if tokens.is_empty() && !shared.require_auth => Auth::Anonymous,
            None => Auth::Rejected,
        };
    }
    match cert_user {
        Some(u) => Auth::User(u),
        None => Auth::Anonymous,
    }
}

/// Serves one request.
pub(crate) async fn handle(
    shared: Arc<Shared>,
    cert_user: Option<String>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let raw_query = req.uri().query().map(str::to_string);
    let query = raw_query.as_deref().map(parse_query).unwrap_or_default();
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let auth = authenticate(&shared, &req, cert_user);
    let user = match &auth {
        Auth::User(u) => Some(u.clone()),
        _ => None,
    };
    let route = route(&path, &shared.address);
    let (verb, rroute) = match &route {
        Route::Resource(r) => (verb_of(&method, r, &query), Some(r.clone())),
        _ => (None, None),
    };
    let mut record = RequestRecord {
        method: method.to_string(),
        verb,
        resource: rroute.as_ref().map(ResourceRoute::resource),
        namespace: rroute.as_ref().and_then(|r| r.namespace.clone()),
        name: rroute.as_ref().and_then(|r| r.name.clone()),
        path: path.clone(),
        query: raw_query.clone(),
        content_type: content_type.clone(),
        user: user.clone(),
        status: 0,
    };
    let resp = respond(
        &shared,
        auth,
        route,
        verb,
        &method,
        &path,
        &query,
        content_type.as_deref(),
        req,
    )
    .await;
    record.status = resp.status().as_u16();
    tracing::debug!(method = %record.method, path = %record.path, status = record.status, "fake apiserver request");
    shared.log(record);
    Ok(resp)
}

#[allow(clippy::too_many_arguments)]
async fn respond(
    shared: &Arc<Shared>,
    auth: Auth,
    route: Route,
    verb: Option<Verb>,
    method: &Method,
    path: &str,
    query: &HashMap<String, String>,
    content_type: Option<&str>,
    req: Request<Incoming>,
) -> Response<Body> {
    let public = matches!(route, Route::Text(_)) || path == "/version";
    match auth {
        Auth::Rejected => return error_response(&ApiError::unauthorized()),
        Auth::Anonymous if shared.require_auth && !public => {
            let msg = match (&route, verb) {
                (Route::Resource(r), Some(v)) => {
                    let scope = match &r.namespace {
                        Some(ns) => format!("in the namespace \"{ns}\""),
                        None => "at the cluster scope".to_string(),
                    };
                    format!(
                        "{} is forbidden: User \"system:anonymous\" cannot {v} resource \"{}\" in API group \"{}\" {scope}",
                        r.resource(),
                        r.resource(),
                        r.info.group
                    )
                }
                _ => format!(
                    "forbidden: User \"system:anonymous\" cannot {} path \"{path}\"",
                    method.as_str().to_lowercase()
                ),
            };
            return error_response(&ApiError::forbidden(msg));
        }
        _ => {}
    }
    let r = match route {
        Route::Static(v) => {
            return if method == Method::GET {
                json_response(200, &v)
            } else {
                error_response(&ApiError::method_not_allowed(method.as_str()))
            };
        }
        Route::Text(t) => {
            return full(
                200,
                Bytes::from_static(t.as_bytes()),
                "text/plain; charset=utf-8",
            );
        }
        Route::NotFound => return error_response(&ApiError::path_not_found()),
        Route::Resource(r) => r,
    };
    let Some(verb) = verb else {
        return error_response(&ApiError::method_not_allowed(method.as_str()));
    };
    if let Some(fault) = shared.take_fault(verb, &r.resource()) {
        return error_response(&fault.error());
    }
    if query.get("dryRun").is_some_and(|d| !d.is_empty()) {
        return error_response(&ApiError::bad_request(
            "dryRun is not supported by this fake API server",
        ));
    }
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return error_response(&ApiError::bad_request(format!(
                "reading the request body: {e}"
            )));
        }
    };
    match serve(shared, &r, verb, query, content_type, &body) {
        Ok(Served::Json(code, v)) => json_response(code, &v),
        Ok(Served::Watch(rx)) => {
            let stream = futures::stream::unfold(rx, |mut rx| async move {
                rx.recv()
                    .await
                    .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
            });
            let mut resp = Response::new(StreamBody::new(stream).boxed());
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/json"),
            );
            resp
        }
        Err(e) => error_response(&e),
    }
}

enum Served {
    Json(u16, Value),
    Watch(tokio::sync::mpsc::Receiver<Bytes>),
}

fn parse_body(body: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding request body: {e}")))
}

fn selectors(info: &ResourceInfo, query: &HashMap<String, String>) -> Result<Selectors, ApiError> {
    Ok(Selectors {
        fields: match query.get("fieldSelector") {
            Some(f) => FieldSelector::parse(f, info.storage)?,
            None => FieldSelector::default(),
        },
        labels: match query.get("labelSelector") {
            Some(l) => LabelSelector::parse(l)?,
            None => LabelSelector::default(),
        },
    })
}

fn check_type(info: &ResourceInfo, obj: &Value) -> Result<(), ApiError> {
    if let Some(av) = obj.get("apiVersion").and_then(Value::as_str)
        && av != info.api_version()
    {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({av}) does not match the expected API version ({})",
            info.api_version()
        )));
    }
    if let Some(kind) = obj.get("kind").and_then(Value::as_str)
        && kind != info.kind
    {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({kind}) does not match the expected kind ({})",
            info.kind
        )));
    }
    Ok(())
}

fn strip_type(mut v: Value) -> Value {
    if let Some(m) = v.as_object_mut() {
        m.remove("kind");
        m.remove("apiVersion");
    }
    v
}

fn serve(
    shared: &Arc<Shared>,
    r: &ResourceRoute,
    verb: Verb,
    query: &HashMap<String, String>,
    content_type: Option<&str>,
    body: &Bytes,
) -> Result<Served, ApiError> {
    let info = r.info;
    let sinfo = storage_form(info.storage).ok_or_else(|| ApiError::internal("no storage form"))?;
    let ns = r.namespace.clone().unwrap_or_default();
    let name = r.name.clone().unwrap_or_default();
    let part = if r.sub.as_deref() == Some("status") {
        Part::Status
    } else {
        Part::Main
    };
    match verb {
        Verb::Get => {
            let obj = shared.lock_store().get(sinfo, &ns, &name)?;
            Ok(Served::Json(200, to_external(info, &obj)))
        }
        Verb::List => list(shared, r, query).map(|v| Served::Json(200, v)),
        Verb::Watch => {
            let mut sel = selectors(info, query)?;
            if let Some(name) = &r.name {
                // A watch on /<plural>/<name> is a watch with metadata.name=<name>.
                let user = query.get("fieldSelector").map(String::as_str).unwrap_or("");
                sel.fields =
                    FieldSelector::parse(&format!("{user},metadata.name={name}"), info.storage)?;
            }
            let p = WatchParams {
                resource_version: query.get("resourceVersion").cloned(),
                resource_version_match: query
                    .get("resourceVersionMatch")
                    .cloned()
                    .filter(|s| !s.is_empty()),
                allow_bookmarks: query
                    .get("allowWatchBookmarks")
                    .is_some_and(|v| v == "true" || v == "1"),
                timeout: query
                    .get("timeoutSeconds")
                    .and_then(|t| t.parse::<u64>().ok())
                    .filter(|t| *t > 0)
                    .map(Duration::from_secs),
                send_initial_events: query
                    .get("sendInitialEvents")
                    .map(|v| v == "true" || v == "1"),
                namespace: r.namespace.clone(),
                selectors: sel,
                skip_through: 0,
            };
            watch::start(shared, info, p).map(Served::Watch)
        }
        Verb::Create => {
            let obj = parse_body(body)?;
            if r.sub.as_deref() == Some("token") {
                let store = shared.lock_store();
                return token_request(&store, &ns, &name, &obj).map(|v| Served::Json(201, v));
            }
            if r.name.is_some() || r.sub.is_some() {
                return Err(ApiError::method_not_allowed("POST"));
            }
            check_type(info, &obj)?;
            if info.group == "events.k8s.io" {
                validate_new_event(&obj, &name_of(&obj))?;
            }
            let obj = to_internal(info, &obj);
            let created = shared.lock_store().create(sinfo, &ns, obj)?;
            Ok(Served::Json(201, to_external(info, &created)))
        }
        Verb::Update => {
            let obj = parse_body(body)?;
            check_type(info, &obj)?;
            let obj = to_internal(info, &obj);
            let updated = shared
                .lock_store()
                .update_with(sinfo, &ns, &name, part, move |_| Ok(obj))?;
            Ok(Served::Json(200, to_external(info, &updated)))
        }
        Verb::Patch => {
            let ct = content_type.unwrap_or("");
            if ct.starts_with("application/apply-patch") {
                let mut e = ApiError::unsupported_media_type(ct);
                e.message = "server-side apply (application/apply-patch+yaml) is not supported by this fake API server".to_string();
                return Err(e);
            }
            let pt = PatchType::from_content_type(ct)
                .ok_or_else(|| ApiError::unsupported_media_type(ct))?;
            let patch = parse_body(body)?;
            if pt != PatchType::Json && !patch.is_object() {
                return Err(ApiError::bad_request("the patch must be a JSON object"));
            }
            let kind = info.kind;
            let patched = shared
                .lock_store()
                .update_with(sinfo, &ns, &name, part, |cur| {
                    let mut ext = to_external(info, cur);
                    match pt {
                        PatchType::Merge => merge_patch(&mut ext, &patch),
                        PatchType::Json => json_patch(&mut ext, &patch)
                            .map_err(|e| ApiError::patch_rejected(&e.0))?,
                        PatchType::Strategic => {
                            ext = StrategicMerge::for_kind(&info.api_version(), kind)
                                .apply(&ext, &patch)
                                .map_err(strategic_error)?;
                        }
                    }
                    // The patched object must decode as its type (FromUnstructured).
                    if let Err(e) = typed::normalize(info, to_internal(info, &ext)) {
                        return Err(patch_not_decodable(&patch, &e));
                    }
                    Ok(to_internal(info, &ext))
                })?;
            Ok(Served::Json(200, to_external(info, &patched)))
        }
        Verb::Delete => {
            let opts = delete_options(query, body)?;
            let gone = shared.lock_store().delete(sinfo, &ns, &name, &opts)?;
            // Pods (ReturnDeletedObject) and namespaces answer with the object; the other
            // registries with a Success Status naming what was deleted.
            if matches!(info.storage, "pods" | "namespaces")
                || super::storage::STORAGES.contains(&info.storage)
            {
                return Ok(Served::Json(200, to_external(info, &gone)));
            }
            let mut details = json!({
                "name": name_of(&gone),
                "kind": info.plural,
                "uid": gone.pointer("/metadata/uid").cloned().unwrap_or(Value::Null),
            });
            if !info.group.is_empty() {
                details["group"] = json!(info.group);
            }
            Ok(Served::Json(
                200,
                json!({
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Success",
                    "details": details,
                }),
            ))
        }
        Verb::DeleteCollection => {
            let opts = delete_options(query, body)?;
            let sel = selectors(info, query)?;
            let mut store = shared.lock_store();
            let (items, _) = store.list(sinfo, r.namespace.as_deref(), &sel, None)?;
            let mut deleted = Vec::new();
            for item in items {
                let n = item
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                let ins = item
                    .pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                let gone = store.delete(sinfo, &ins, &n, &opts)?;
                deleted.push(strip_type(to_external(info, &gone)));
            }
            Ok(Served::Json(
                200,
                json!({
                    "kind": format!("{}List", info.kind),
                    "apiVersion": info.api_version(),
                    "metadata": {"resourceVersion": store.current_rv().to_string()},
                    "items": deleted,
                }),
            ))
        }
    }
}

/// kube-apiserver's answer to a strategic merge patch it cannot apply
/// (`interpretStrategicMergePatchError`).
fn strategic_error(e: MergeError) -> ApiError {
    match e.kind {
        PatchErrorKind::BadRequest => ApiError::bad_request(e.message),
        PatchErrorKind::Unprocessable => ApiError::patch_rejected(&e.message),
        PatchErrorKind::Internal => ApiError::unwrapped(&e.message),
    }
}

/// 422 for a patched object that no longer decodes as its type.
fn patch_not_decodable(patch: &Value, cause: &str) -> ApiError {
    let printed = crate::strategic_merge::go_format(patch);
    let mut e = ApiError::invalid(
        "",
        "",
        "",
        &[(
            "patch".to_string(),
            "FieldValueInvalid",
            format!("Invalid value: {printed:?}: {cause}"),
        )],
    );
    if let Some(d) = e.details.as_mut().and_then(Value::as_object_mut) {
        d.remove("name");
        d.remove("kind");
    }
    e
}

fn name_of(obj: &Value) -> String {
    obj.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

/// events.k8s.io/v1 create validation: the fields the new Events API requires.
fn validate_new_event(obj: &Value, name: &str) -> Result<(), ApiError> {
    let mut causes = Vec::new();
    for field in [
        "eventTime",
        "reportingController",
        "reportingInstance",
        "action",
        "reason",
    ] {
        let present = match obj.get(field) {
            Some(Value::String(s)) => !s.is_empty(),
            Some(Value::Null) | None => false,
            Some(_) => true,
        };
        if !present {
            causes.push((
                field.to_string(),
                "FieldValueRequired",
                "Required value".to_string(),
            ));
        }
    }
    if let Some(t) = obj.get("type").and_then(Value::as_str)
        && t != "Normal"
        && t != "Warning"
    {
        causes.push((
            "type".to_string(),
            "FieldValueNotSupported",
            format!("Unsupported value: \"{t}\": supported values: \"Normal\", \"Warning\""),
        ));
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid("Event", "events.k8s.io", name, &causes))
    }
}

fn delete_options(
    query: &HashMap<String, String>,
    body: &Bytes,
) -> Result<DeleteOptions, ApiError> {
    let mut opts = DeleteOptions::default();
    if !body.is_empty() {
        let b = parse_body(body)?;
        opts.grace_period_seconds = b.get("gracePeriodSeconds").and_then(Value::as_i64);
        opts.uid = b
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(str::to_string);
        opts.resource_version = b
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string);
    }
    if let Some(g) = query.get("gracePeriodSeconds") {
        opts.grace_period_seconds =
            Some(g.parse().map_err(|_| {
                ApiError::bad_request(format!("invalid gracePeriodSeconds: {g:?}"))
            })?);
    }
    Ok(opts)
}

fn list(
    shared: &Arc<Shared>,
    r: &ResourceRoute,
    query: &HashMap<String, String>,
) -> Result<Value, ApiError> {
    let info = r.info;
    let sinfo = storage_form(info.storage).ok_or_else(|| ApiError::internal("no storage form"))?;
    let sel = selectors(info, query)?;
    let rv = query
        .get("resourceVersion")
        .map(String::as_str)
        .unwrap_or("");
    let rv_match = query
        .get("resourceVersionMatch")
        .map(String::as_str)
        .unwrap_or("");
    let limit = query
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0);
    let cont = query.get("continue").filter(|c| !c.is_empty());
    if !rv_match.is_empty() && rv.is_empty() {
        return Err(ApiError::invalid(
            "ListOptions",
            "meta.k8s.io",
            "",
            &[(
                "resourceVersionMatch".to_string(),
                "FieldValueForbidden",
                "Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided"
                    .to_string(),
            )],
        ));
    }
    let store = shared.lock_store();
    let mut at = None;
    let mut start: Option<(String, String)> = None;
    if let Some(token) = cont {
        if !rv.is_empty() {
            return Err(ApiError::bad_request(
                "specifying resource version is not allowed when using continue",
            ));
        }
        let decoded = STANDARD
            .decode(token)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .ok_or_else(|| ApiError::bad_request("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)"))?;
        let trv = decoded.get("rv").and_then(Value::as_u64).unwrap_or(0);
        if trv < store.compacted_rv() {
            let mut e = ApiError::expired(trv, store.compacted_rv() + 1);
            e.message = "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.".to_string();
            return Err(e);
        }
        at = Some(trv);
        start = Some((
            decoded
                .get("ns")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            decoded
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        ));
    } else if !rv.is_empty() && rv != "0" {
        let n = Store::parse_rv(rv)?;
        match rv_match {
            "Exact" => at = Some(n),
            "" | "NotOlderThan" => {
                if n > store.current_rv() {
                    return Err(ApiError::too_large_resource_version(n, store.current_rv()));
                }
            }
            other => {
                return Err(ApiError::invalid(
                    "ListOptions",
                    "meta.k8s.io",
                    "",
                    &[(
                        "resourceVersionMatch".to_string(),
                        "FieldValueNotSupported",
                        format!(
                            "Unsupported value: \"{other}\": supported values: \"Exact\", \"NotOlderThan\", \"\""
                        ),
                    )],
                ));
            }
        }
    }
    let (items, list_rv) = store.list(sinfo, r.namespace.as_deref(), &sel, at)?;
    drop(store);
    let key = |v: &Value| {
        (
            v.pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            v.pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        )
    };
    let mut items: Vec<Value> = match &start {
        Some(s) => items.into_iter().filter(|v| key(v) > *s).collect(),
        None => items,
    };
    let mut meta = json!({ "resourceVersion": list_rv.to_string() });
    if let Some(limit) = limit
        && items.len() > limit
    {
        let remaining = items.len() - limit;
        items.truncate(limit);
        if let Some(last) = items.last() {
            let (ns, name) = key(last);
            let token = json!({"v": "meta.k8s.io/v1", "rv": list_rv, "ns": ns, "name": name});
            meta["continue"] = json!(STANDARD.encode(token.to_string()));
            meta["remainingItemCount"] = json!(remaining);
        }
    }
    Ok(json!({
        "kind": format!("{}List", info.kind),
        "apiVersion": info.api_version(),
        "metadata": meta,
        "items": items.iter().map(|i| strip_type(to_external(info, i))).collect::<Vec<_>>(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decoding() {
        let q = parse_query(
            "labelSelector=app+in+%28a%2Cb%29&fieldSelector=spec.nodeName%3Dn1&watch=1",
        );
        assert_eq!(q["labelSelector"], "app in (a,b)");
        assert_eq!(q["fieldSelector"], "spec.nodeName=n1");
        assert_eq!(q["watch"], "1");
    }

    #[test]
    fn routes_resolve() {
        let Route::Resource(r) = route("/api/v1/namespaces/default/pods/p1/status", "") else {
            panic!("not a resource route");
        };
        assert_eq!(
            (
                r.info.plural,
                r.namespace.as_deref(),
                r.name.as_deref(),
                r.sub.as_deref()
            ),
            ("pods", Some("default"), Some("p1"), Some("status"))
        );
        let Route::Resource(r) = route("/api/v1/namespaces/kube-system", "") else {
            panic!("not a resource route");
        };
        assert_eq!(
            (r.info.plural, r.name.as_deref()),
            ("namespaces", Some("kube-system"))
        );
        let Route::Resource(r) = route(
            "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1",
            "",
        ) else {
            panic!("not a resource route");
        };
        assert_eq!(r.info.kind, "Lease");
        assert!(matches!(route("/api/v1/pods/x", ""), Route::NotFound));
        assert!(matches!(
            route("/api/v1/namespaces/default/pods/x/exec", ""),
            Route::NotFound
        ));
    }
}
