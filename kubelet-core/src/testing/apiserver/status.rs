//! API errors as `metav1.Status` objects, with the reasons and codes kube-apiserver uses.

use serde_json::{Value, json};

/// An error answered by the fake API server, carried as a `metav1.Status` object.
///
/// Reasons and messages follow `k8s.io/apimachinery/pkg/api/errors`, so that clients that
/// branch on `reason`/`code` behave as against a real server.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// `Status.reason` (`NotFound`, `AlreadyExists`, `Conflict`, `Invalid`, ...).
    pub reason: String,
    /// Human-readable message, as the real server words it.
    pub message: String,
    /// `Status.details`, if any.
    pub details: Option<Value>,
    /// Seconds for a `Retry-After` header (429 and some 500s).
    pub retry_after: Option<u64>,
}

impl ApiError {
    fn new(code: u16, reason: &str, message: String, details: Option<Value>) -> Self {
        Self {
            code,
            reason: reason.to_string(),
            message,
            details,
            retry_after: None,
        }
    }

    /// 404 `<resource> "<name>" not found`.
    pub fn not_found(group: &str, resource: &str, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", qualified(group, resource)),
            Some(details(group, resource, name)),
        )
    }

    /// 409 `<resource> "<name>" already exists`.
    pub fn already_exists(group: &str, resource: &str, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", qualified(group, resource)),
            Some(details(group, resource, name)),
        )
    }

    /// 409 Conflict for a stale resourceVersion on update.
    pub fn conflict_modified(group: &str, resource: &str, name: &str) -> Self {
        Self::conflict(
            group,
            resource,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 409 Conflict with a given cause (precondition failures use this).
    pub fn conflict(group: &str, resource: &str, name: &str, cause: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": {cause}",
                qualified(group, resource)
            ),
            Some(details(group, resource, name)),
        )
    }

    /// 422 Invalid with field causes: `(field, cause reason, message)`.
    pub fn invalid(kind: &str, group: &str, name: &str, causes: &[(String, &str, String)]) -> Self {
        // The message is the aggregate of the causes, which drops repeated ones (the
        // causes themselves are all kept).
        let mut listed: Vec<String> = Vec::new();
        for (field, _, msg) in causes {
            let line = format!("{field}: {msg}");
            if !listed.contains(&line) {
                listed.push(line);
            }
        }
        let joined = if listed.len() == 1 {
            listed[0].clone()
        } else {
            format!("[{}]", listed.join(", "))
        };
        let mut d = json!({
            "name": name,
            "kind": kind,
            "causes": causes.iter().map(|(field, reason, msg)| json!({
                "reason": reason, "message": msg, "field": field,
            })).collect::<Vec<_>>(),
        });
        if !group.is_empty() {
            d["group"] = json!(group);
        }
        let kind_q = if group.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}.{group}")
        };
        Self::new(
            422,
            "Invalid",
            format!("{kind_q} \"{name}\" is invalid: {joined}"),
            Some(d),
        )
    }

    /// 400 BadRequest.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message.into(), None)
    }

    /// 410 Gone, reason `Expired`: a resourceVersion older than the kept history.
    pub fn expired(requested: u64, oldest: u64) -> Self {
        Self::new(
            410,
            "Expired",
            format!("too old resource version: {requested} ({oldest})"),
            None,
        )
    }

    /// 422 for a JSON patch that does not apply (NewGenericServerResponse with 422: the
    /// patch library's message is the cause).
    pub fn patch_rejected(cause: &str) -> Self {
        Self::new(
            422,
            "Invalid",
            "the server rejected our request due to an error in our request".to_string(),
            Some(json!({ "causes": [{ "reason": "UnexpectedServerResponse", "message": cause }] })),
        )
    }

    /// 429 TooManyRequests with a Retry-After.
    pub fn too_many_requests(retry_after: u64) -> Self {
        let mut e = Self::new(
            429,
            "TooManyRequests",
            "Too many requests, please try again later.".to_string(),
            Some(json!({ "retryAfterSeconds": retry_after })),
        );
        e.retry_after = Some(retry_after);
        e
    }

    /// 500 InternalError.
    pub fn internal(cause: &str) -> Self {
        Self::new(
            500,
            "InternalError",
            format!("Internal error occurred: {cause}"),
            Some(json!({ "causes": [{ "message": cause }] })),
        )
    }

    /// 500 with the bare error message and no reason: what kube-apiserver answers for an
    /// error it passes through unwrapped (most strategic merge failures).
    pub fn unwrapped(message: &str) -> Self {
        Self::new(500, "", message.to_string(), None)
    }

    /// 401 Unauthorized.
    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized".to_string(), None)
    }

    /// 403 Forbidden.
    pub fn forbidden(message: String) -> Self {
        Self::new(403, "Forbidden", message, None)
    }

    /// 405 MethodNotAllowed.
    pub fn method_not_allowed(method: &str) -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            format!("the server does not allow this method on the requested resource ({method})"),
            None,
        )
    }

    /// 415 UnsupportedMediaType.
    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json (got {content_type})"
            ),
            None,
        )
    }

    /// 404 for a path that names no known resource.
    pub fn path_not_found() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource".to_string(),
            None,
        )
    }

    /// 504 Timeout for a resourceVersion newer than the store.
    pub fn too_large_resource_version(requested: u64, current: u64) -> Self {
        Self::new(
            504,
            "Timeout",
            format!("Too large resource version: {requested}, current: {current}"),
            Some(json!({
                "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
                "retryAfterSeconds": 1,
            })),
        )
    }

    /// The `metav1.Status` object.
    pub fn to_status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if self.reason.is_empty()
            && let Some(m) = s.as_object_mut()
        {
            m.remove("reason");
        }
        if let Some(d) = &self.details {
            s["details"] = d.clone();
        }
        s
    }
}

fn qualified(group: &str, resource: &str) -> String {
    if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    }
}

fn details(group: &str, resource: &str, name: &str) -> Value {
    let mut d = json!({ "name": name, "kind": resource });
    if !group.is_empty() {
        d["group"] = json!(group);
    }
    d
}
