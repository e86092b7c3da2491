//! `/logs/`: the node's log directory as Go's file server shows it (the reference serves
//! `/var/log` through `http.FileServer`): a directory is an HTML listing, a file its bytes.

use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::io::AsyncReadExt;

use super::routes::{RouteState, redirect};

/// The path below the log directory, cleaned as Go's `path.Clean("/" + name)`, so that `..`
/// never leaves it.
fn clean(relative: &str) -> PathBuf {
    let mut parts: Vec<&str> = Vec::new();
    for part in relative.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    parts.iter().collect()
}

pub(crate) async fn root_redirect() -> Response {
    redirect("/logs/")
}

pub(crate) async fn serve_root(State(state): State<RouteState>) -> Response {
    serve(&state.node_log_dir, "", true).await
}

pub(crate) async fn serve_path(
    State(state): State<RouteState>,
    axum::extract::Path(path): axum::extract::Path<String>,
) -> Response {
    let trailing_slash = path.ends_with('/');
    serve(&state.node_log_dir, &path, trailing_slash).await
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "404 page not found\n",
    )
        .into_response()
}

async fn serve(root: &Path, relative: &str, trailing_slash: bool) -> Response {
    let path = root.join(clean(relative));
    let metadata = match tokio::fs::metadata(&path).await {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return not_found(),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return (StatusCode::FORBIDDEN, "403 Forbidden\n").into_response();
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "/logs/");
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                "500 Internal Server Error\n",
            )
                .into_response();
        }
    };
    let last = relative
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default();
    if metadata.is_dir() {
        if !trailing_slash {
            // As Go's file server: a directory's URL ends in a slash.
            return redirect(&format!("{last}/"));
        }
        return listing(&path).await;
    }
    if trailing_slash {
        return redirect(&format!("../{last}"));
    }
    file(&path, metadata.len()).await
}

fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&#34;")
        .replace('\'', "&#39;")
}

/// Percent-encodes what a relative URL path segment cannot hold.
fn escape_href(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    // A name with a colon would read as a scheme: Go prefixes "./" then.
    if out.contains(':') {
        out.insert_str(0, "./");
    }
    out
}

async fn listing(dir: &Path) -> Response {
    let mut reader = match tokio::fs::read_dir(dir).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(path = %dir.display(), error = %e, "/logs/ listing");
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Error reading directory\n",
            )
                .into_response();
        }
    };
    let mut names = Vec::new();
    while let Ok(Some(entry)) = reader.next_entry().await {
        let mut name = entry.file_name().to_string_lossy().into_owned();
        // Followed like Go's os.Stat: a link to a directory lists as one.
        if tokio::fs::metadata(entry.path())
            .await
            .is_ok_and(|m| m.is_dir())
        {
            name.push('/');
        }
        names.push(name);
    }
    names.sort();
    let mut body = String::from(
        "<!doctype html>\n<meta name=\"viewport\" content=\"width=device-width\">\n<pre>\n",
    );
    for name in names {
        body.push_str(&format!(
            "<a href=\"{}\">{}</a>\n",
            escape_href(&name),
            escape_html(&name)
        ));
    }
    body.push_str("</pre>\n");
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}

/// A content type from the extension, else from the first bytes (text or not).
fn content_type(path: &Path, head: &[u8]) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("gz") => return "application/gzip",
        Some("json") => return "application/json",
        Some("html" | "htm") => return "text/html; charset=utf-8",
        Some("xml") => return "text/xml; charset=utf-8",
        _ => {}
    }
    // A cut multi-byte character at the end of the sample is still text.
    let text = match std::str::from_utf8(head) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none(),
    };
    if text && !head.contains(&0) {
        "text/plain; charset=utf-8"
    } else {
        "application/octet-stream"
    }
}

async fn file(path: &Path, len: u64) -> Response {
    let mut file = match tokio::fs::File::open(path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return (StatusCode::FORBIDDEN, "403 Forbidden\n").into_response();
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "/logs/ file");
            return not_found();
        }
    };
    let mut head = vec![0u8; 512];
    let n = match file.read(&mut head).await {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "/logs/ file");
            return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
        }
    };
    head.truncate(n);
    let kind = content_type(path, &head);
    // The sample first, then the rest of the file in chunks, no more than the length
    // announced (a log file grows while it is read).
    let remaining = file.take(len.saturating_sub(n as u64));
    let rest = futures::stream::try_unfold(remaining, |mut file| async move {
        let mut buf = vec![0u8; 64 * 1024];
        let n = file.read(&mut buf).await?;
        if n == 0 {
            return Ok::<_, std::io::Error>(None);
        }
        buf.truncate(n);
        Ok(Some((bytes::Bytes::from(buf), file)))
    });
    let first = futures::stream::once(async move { Ok(bytes::Bytes::from(head)) });
    let body = Body::from_stream(futures::StreamExt::chain(first, rest));
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, kind.to_string()),
            (header::CONTENT_LENGTH, len.to_string()),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_below_the_root() {
        assert_eq!(clean("../../etc/passwd"), PathBuf::from("etc/passwd"));
        assert_eq!(clean("a/./b/../c/"), PathBuf::from("a/c"));
        assert_eq!(clean(""), PathBuf::new());
    }

    #[test]
    fn content_types() {
        assert_eq!(
            content_type(Path::new("syslog"), b"hello\n"),
            "text/plain; charset=utf-8"
        );
        assert_eq!(
            content_type(Path::new("x.gz"), b"\x1f\x8b"),
            "application/gzip"
        );
        assert_eq!(
            content_type(Path::new("wtmp"), b"\0\x01"),
            "application/octet-stream"
        );
    }
}
