//! Fault injection and the request log.

use std::fmt;

use super::status::ApiError;

/// A Kubernetes API verb, as the request info resolver derives it from method and path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verb {
    /// GET of one object.
    Get,
    /// GET of a collection.
    List,
    /// GET of a collection with `watch=true`.
    Watch,
    /// POST.
    Create,
    /// PUT.
    Update,
    /// PATCH.
    Patch,
    /// DELETE of one object.
    Delete,
    /// DELETE of a collection.
    DeleteCollection,
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Get => "get",
            Self::List => "list",
            Self::Watch => "watch",
            Self::Create => "create",
            Self::Update => "update",
            Self::Patch => "patch",
            Self::Delete => "delete",
            Self::DeleteCollection => "deletecollection",
        })
    }
}

/// The failure an injected fault answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// 500 InternalError.
    InternalError,
    /// 429 TooManyRequests with `Retry-After: <seconds>`.
    TooManyRequests {
        /// The Retry-After value.
        retry_after_seconds: u64,
    },
}

impl FaultKind {
    pub(crate) fn error(self) -> ApiError {
        match self {
            Self::InternalError => ApiError::internal("injected fault"),
            Self::TooManyRequests {
                retry_after_seconds,
            } => ApiError::too_many_requests(retry_after_seconds),
        }
    }
}

/// Which requests a fault applies to: `None` matches any.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FaultMatch {
    /// The verb.
    pub verb: Option<Verb>,
    /// The resource, with subresource as `pods/status`.
    pub resource: Option<String>,
}

impl FaultMatch {
    /// Any request.
    pub fn any() -> Self {
        Self::default()
    }

    /// A verb on a resource (`"pods"`, `"pods/status"`, `"leases"`...).
    pub fn new(verb: Verb, resource: &str) -> Self {
        Self {
            verb: Some(verb),
            resource: Some(resource.to_string()),
        }
    }

    fn matches(&self, verb: Verb, resource: &str) -> bool {
        self.verb.is_none_or(|v| v == verb)
            && self.resource.as_deref().is_none_or(|r| r == resource)
    }
}

#[derive(Debug)]
struct Rule {
    what: FaultMatch,
    remaining: usize,
    kind: FaultKind,
}

/// The pending faults.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    rules: Vec<Rule>,
}

impl Faults {
    pub(crate) fn add(&mut self, what: FaultMatch, count: usize, kind: FaultKind) {
        if count > 0 {
            self.rules.push(Rule {
                what,
                remaining: count,
                kind,
            });
        }
    }

    /// The fault for this request, consuming one of its count.
    pub(crate) fn take(&mut self, verb: Verb, resource: &str) -> Option<FaultKind> {
        let i = self
            .rules
            .iter()
            .position(|r| r.what.matches(verb, resource))?;
        let kind = self.rules[i].kind;
        self.rules[i].remaining -= 1;
        if self.rules[i].remaining == 0 {
            self.rules.remove(i);
        }
        Some(kind)
    }

    pub(crate) fn clear(&mut self) {
        self.rules.clear();
    }
}

/// One request as the server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// HTTP method.
    pub method: String,
    /// The API verb, for resource requests.
    pub verb: Option<Verb>,
    /// The resource (`pods`, `pods/status`, `serviceaccounts/token`...), for resource requests.
    pub resource: Option<String>,
    /// The namespace, for namespaced requests.
    pub namespace: Option<String>,
    /// The object name, when the path names one.
    pub name: Option<String>,
    /// The URL path.
    pub path: String,
    /// The raw query string.
    pub query: Option<String>,
    /// The request's `Content-Type`.
    pub content_type: Option<String>,
    /// The authenticated user, if any.
    pub user: Option<String>,
    /// The HTTP status answered (for watches, the status the stream started with).
    pub status: u16,
}

impl RequestRecord {
    /// The value of one query parameter, decoded.
    pub fn query_param(&self, key: &str) -> Option<String> {
        let q = self.query.as_deref()?;
        super::routes::parse_query(q).remove(key)
    }
}
