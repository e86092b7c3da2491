//! Carrying a client's streaming connection (exec, attach, port-forward) to the container
//! runtime's streaming server, as the reference kubelet proxies it: the runtime hands out a
//! URL for the call (CRI `Exec`, `Attach`, `PortForward`; see
//! [`Runtime::exec_stream`](crate::Runtime::exec_stream)), the kubelet sends the client's
//! upgrade request there and, once the runtime has switched protocols, copies bytes both
//! ways. The proxy does not look inside: SPDY/3.1 and WebSocket (`v4.channel.k8s.io`,
//! `v5.channel.k8s.io`, `portforward.k8s.io`) pass the same way, and the runtime's streaming
//! server speaks the channel protocol, exit codes included.

use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use tracing::{debug, warn};

/// The body of the proxy's responses.
pub type Body = axum::body::Body;

/// Headers that describe one hop only, or that carry the client's credentials for the
/// kubelet: not passed to the runtime.
const NOT_FORWARDED: [header::HeaderName; 4] = [
    header::HOST,
    header::AUTHORIZATION,
    header::PROXY_AUTHORIZATION,
    header::CONTENT_LENGTH,
];

fn error(status: StatusCode, message: String) -> Response<Body> {
    let mut resp = Response::new(Body::from(message));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// Proxies `req`, an upgrade request of a client, to `target`, a URL of the runtime's
/// streaming server. The answer is the runtime's: `101 Switching Protocols` (and then the
/// stream), or its refusal as it gave it.
pub async fn proxy_to_runtime(mut req: Request<Body>, target: &str) -> Response<Body> {
    let uri: Uri = match target.parse() {
        Ok(u) => u,
        Err(e) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the runtime's streaming URL {target:?} is not a URL: {e}"),
            );
        }
    };
    let Some(authority) = uri.authority().map(|a| a.as_str().to_string()) else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the runtime's streaming URL {target:?} has no host"),
        );
    };
    if uri.scheme_str() != Some("http") {
        // containerd and CRI-O serve their streams over plain HTTP on a local address.
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the runtime's streaming URL {target:?}: only http:// is supported"),
        );
    }
    let tcp = match tokio::net::TcpStream::connect(&authority).await {
        Ok(t) => t,
        Err(e) => {
            return error(
                StatusCode::BAD_GATEWAY,
                format!("connecting to the runtime's streaming server {authority}: {e}"),
            );
        }
    };
    // Interactive streams: no Nagle on the runtime side either.
    if let Err(e) = tcp.set_nodelay(true) {
        debug!(error = %e, "TCP_NODELAY not set on the runtime connection");
    }
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await {
        Ok(pair) => pair,
        Err(e) => {
            return error(
                StatusCode::BAD_GATEWAY,
                format!("HTTP to the runtime's streaming server {authority}: {e}"),
            );
        }
    };
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            debug!(error = %e, "streaming connection to the runtime ended");
        }
    });

    let path = match (uri.path_and_query(), req.uri().query()) {
        (Some(pq), _) if pq.query().is_some() => pq.as_str().to_string(),
        (Some(pq), Some(q)) => format!("{}?{q}", pq.path()),
        (Some(pq), None) => pq.as_str().to_string(),
        (None, _) => "/".to_string(),
    };
    let mut upstream = Request::builder()
        .method(req.method().clone())
        .uri(path)
        .body(Body::empty())
        .unwrap_or_default();
    copy_headers(req.headers(), upstream.headers_mut());
    if let Ok(host) = HeaderValue::from_str(&authority) {
        upstream.headers_mut().insert(header::HOST, host);
    }
    let client_upgrade = hyper::upgrade::on(&mut req);
    let mut resp = match sender.send_request(upstream).await {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_GATEWAY,
                format!("request to the runtime's streaming server {authority}: {e}"),
            );
        }
    };
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        // The runtime refused (a used token, no upgrade asked...): its answer as it is.
        let (parts, body) = resp.into_parts();
        return Response::from_parts(parts, Body::new(body));
    }
    let runtime_upgrade = hyper::upgrade::on(&mut resp);
    tokio::spawn(async move {
        let (client, runtime) = match tokio::join!(client_upgrade, runtime_upgrade) {
            (Ok(c), Ok(r)) => (c, r),
            (c, r) => {
                warn!(client = ?c.err(), runtime = ?r.err(), "stream upgrade failed");
                return;
            }
        };
        let (mut client, mut runtime) = (TokioIo::new(client), TokioIo::new(runtime));
        match tokio::io::copy_bidirectional(&mut client, &mut runtime).await {
            Ok((up, down)) => debug!(up, down, "stream closed"),
            Err(e) => debug!(error = %e, "stream ended"),
        }
    });
    let mut answer = Response::new(Body::empty());
    *answer.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    copy_headers(resp.headers(), answer.headers_mut());
    answer
}

fn copy_headers(from: &HeaderMap, to: &mut HeaderMap) {
    for (name, value) in from {
        if !NOT_FORWARDED.contains(name) {
            to.append(name.clone(), value.clone());
        }
    }
}

/// The streams a client asks for in the query of `/exec` and `/attach`, under the names the
/// API server uses when it sends the request on (`input`, `output`, `error`, `tty` = `1`;
/// `stdin`, `stdout`, `stderr` = `true` are taken too), and the `command` of an exec.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamQuery {
    /// Which streams, with a TTY or not.
    pub options: crate::runtime::StreamOptions,
    /// The command (`command`, repeated), for exec.
    pub command: Vec<String>,
    /// The ports (`port`, repeated), for port forwarding over WebSocket.
    pub ports: Vec<i32>,
}

fn query_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k), percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(s.get(i + 1..i + 3).unwrap_or(""), 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl StreamQuery {
    /// From a request's query string. As the reference, a TTY drops stderr (merged into
    /// stdout), and asking for no stream at all is an error.
    pub fn parse(query: &str, need_stream: bool) -> Result<Self, String> {
        let mut q = StreamQuery::default();
        let on = |v: &str| v == "1" || v.eq_ignore_ascii_case("true");
        for (k, v) in query_pairs(query) {
            match k.as_str() {
                "input" | "stdin" => q.options.stdin = on(&v),
                "output" | "stdout" => q.options.stdout = on(&v),
                "error" | "stderr" => q.options.stderr = on(&v),
                "tty" => q.options.tty = on(&v),
                "command" => q.command.push(v),
                "port" => {
                    let port = v
                        .parse::<i32>()
                        .ok()
                        .filter(|p| (1..=65535).contains(p))
                        .ok_or_else(|| format!("invalid port {v:?}"))?;
                    q.ports.push(port);
                }
                _ => {}
            }
        }
        if q.options.tty && q.options.stderr {
            q.options.stderr = false;
        }
        let o = q.options;
        if need_stream && !o.stdin && !o.stdout && !o.stderr {
            return Err("you must specify at least 1 of stdin, stdout, stderr".to_string());
        }
        Ok(q)
    }
}

/// Why a streaming request cannot go to the runtime: the answer the client gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The HTTP status.
    pub status: StatusCode,
    /// The plain-text body.
    pub message: String,
}

impl Refusal {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Refusal {
            status,
            message: message.into(),
        }
    }

    /// As an HTTP response.
    pub fn into_response(self) -> Response<Body> {
        error(self.status, self.message)
    }
}

/// The running container `container` of the pod `namespace/pod` on this node: its runtime
/// ID, or the reference's 404 answer.
pub async fn running_container(
    handle: &crate::KubeletHandle,
    runtime: &dyn crate::Runtime,
    namespace: &str,
    pod: &str,
    container: &str,
) -> Result<String, Refusal> {
    let uid = pod_uid(handle, namespace, pod)?;
    let containers = runtime
        .list_containers(&crate::runtime::ListFilter::pod(uid))
        .await
        .map_err(|e| Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    containers
        .into_iter()
        .filter(|c| {
            c.metadata.name == container && c.state == crate::runtime::ContainerState::Running
        })
        .max_by_key(|c| c.metadata.attempt)
        .map(|c| c.id)
        .ok_or_else(|| {
            Refusal::new(
                StatusCode::NOT_FOUND,
                format!("container not found ({container:?})"),
            )
        })
}

fn pod_uid(handle: &crate::KubeletHandle, namespace: &str, pod: &str) -> Result<String, Refusal> {
    handle
        .pods()
        .into_iter()
        .find(|p| {
            p.metadata.namespace.as_deref().unwrap_or("default") == namespace
                && p.metadata.name.as_deref() == Some(pod)
        })
        .and_then(|p| p.metadata.uid)
        .ok_or_else(|| Refusal::new(StatusCode::NOT_FOUND, "pod does not exist"))
}

/// `/exec/{namespace}/{pod}/{container}`: a streaming exec through the runtime.
pub async fn exec(
    handle: &crate::KubeletHandle,
    runtime: &dyn crate::Runtime,
    target: (&str, &str, &str),
    req: Request<Body>,
) -> Response<Body> {
    to_container(handle, runtime, target, req, |id, q| async move {
        runtime.exec_stream(&id, &q.command, q.options).await
    })
    .await
}

/// `/attach/{namespace}/{pod}/{container}`: a streaming attach through the runtime.
pub async fn attach(
    handle: &crate::KubeletHandle,
    runtime: &dyn crate::Runtime,
    target: (&str, &str, &str),
    req: Request<Body>,
) -> Response<Body> {
    to_container(handle, runtime, target, req, |id, q| async move {
        runtime.attach_stream(&id, q.options).await
    })
    .await
}

/// A stream to a running container: the query read, the container found, the runtime asked
/// for the stream (`open`), the client's connection proxied there.
async fn to_container<F, Fut>(
    handle: &crate::KubeletHandle,
    runtime: &dyn crate::Runtime,
    (namespace, pod, container): (&str, &str, &str),
    req: Request<Body>,
    open: F,
) -> Response<Body>
where
    F: FnOnce(String, StreamQuery) -> Fut,
    Fut: std::future::Future<Output = crate::runtime::RuntimeResult<String>>,
{
    let q = match StreamQuery::parse(req.uri().query().unwrap_or(""), true) {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let id = match running_container(handle, runtime, namespace, pod, container).await {
        Ok(id) => id,
        Err(refusal) => return refusal.into_response(),
    };
    match open(id, q).await {
        Ok(url) => proxy_to_runtime(req, &url).await,
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `/portForward/{namespace}/{pod}`: port forwarding into the pod's sandbox through the
/// runtime (ports from the query for WebSocket clients; SPDY clients name them per stream).
pub async fn port_forward(
    handle: &crate::KubeletHandle,
    runtime: &dyn crate::Runtime,
    (namespace, pod): (&str, &str),
    req: Request<Body>,
) -> Response<Body> {
    let q = match StreamQuery::parse(req.uri().query().unwrap_or(""), false) {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let uid = match pod_uid(handle, namespace, pod) {
        Ok(uid) => uid,
        Err(refusal) => return refusal.into_response(),
    };
    let sandboxes = match runtime
        .list_pod_sandboxes(&crate::runtime::ListFilter::pod(uid))
        .await
    {
        Ok(s) => s,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let Some(sandbox) = sandboxes
        .into_iter()
        .filter(|s| s.state == crate::runtime::SandboxState::Ready)
        .max_by_key(|s| s.created_at)
    else {
        return error(
            StatusCode::NOT_FOUND,
            format!("pod {namespace}/{pod} has no running sandbox"),
        );
    };
    match runtime.port_forward_stream(&sandbox.id, &q.ports).await {
        Ok(url) => proxy_to_runtime(req, &url).await,
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `/run/{namespace}/{pod}/{container}?cmd=...`: runs the command (split on spaces, as the
/// reference) to completion and answers its output, stdout then stderr.
pub async fn run(
    handle: &crate::KubeletHandle,
    runtime: &dyn crate::Runtime,
    (namespace, pod, container): (&str, &str, &str),
    query: &str,
) -> Response<Body> {
    let cmd: Vec<String> = query_pairs(query)
        .find(|(k, _)| k == "cmd")
        .map(|(_, v)| v.split(' ').map(str::to_string).collect())
        .unwrap_or_default();
    if cmd.is_empty() {
        return error(StatusCode::BAD_REQUEST, "missing cmd".to_string());
    }
    let id = match running_container(handle, runtime, namespace, pod, container).await {
        Ok(id) => id,
        Err(refusal) => return refusal.into_response(),
    };
    match runtime
        .exec_sync(&id, &cmd, std::time::Duration::ZERO)
        .await
    {
        Ok(out) => {
            let mut body = out.stdout;
            body.extend_from_slice(&out.stderr);
            let mut resp = Response::new(Body::from(body));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            resp
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_query_as_the_api_server_sends_it() {
        let q = StreamQuery::parse(
            "command=sh&command=-c&command=echo%20%24HOME&input=1&output=1&error=1&tty=1",
            true,
        )
        .unwrap();
        assert_eq!(q.command, ["sh", "-c", "echo $HOME"]);
        assert!(q.options.stdin && q.options.stdout && q.options.tty);
        assert!(!q.options.stderr, "a TTY merges stderr into stdout");
        let q = StreamQuery::parse("stdout=true&port=8080&port=9090", false).unwrap();
        assert!(q.options.stdout);
        assert_eq!(q.ports, [8080, 9090]);
        assert_eq!(
            StreamQuery::parse("command=ls", true).unwrap_err(),
            "you must specify at least 1 of stdin, stdout, stderr"
        );
        assert!(StreamQuery::parse("port=0", false).is_err());
    }
}
