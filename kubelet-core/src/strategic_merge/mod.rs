//! Kubernetes strategic merge patches, as apimachinery makes and applies them.
//!
//! - [`StrategicMerge::diff`] makes the two-way patch from one version of an object to the
//!   next, as the reference kubelet does for pod and node status (`PatchPodStatus`,
//!   `PatchNodeStatus`): atomic lists whole, keyed lists by their changed items with
//!   `$patch: delete` and `$setElementOrder`, removed fields as `null`.
//! - [`StrategicMerge::apply`] applies a patch as kube-apiserver does (the fake API server of
//!   the `testing` feature stores through it), corners included: a `$patch` directive inside
//!   an atomic list is stored as an element, as the real server does.
//!
//! Each field's strategy and merge key come from the API's own metadata, the OpenAPI
//! document of a real kube-apiserver ([`PatchSchema`]).
//!
//! ```
//! use kubelet_core::strategic_merge::StrategicMerge;
//! use serde_json::json;
//!
//! let pod = StrategicMerge::for_kind("v1", "Pod");
//! let old = json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}});
//! let new = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}});
//! let patch = pod.diff(&old, &new);
//! assert_eq!(patch, json!({"status": {
//!     "$setElementOrder/conditions": [{"type": "Ready"}],
//!     "conditions": [{"type": "Ready", "status": "True"}],
//! }}));
//! assert_eq!(pod.apply(&old, &patch).unwrap(), new);
//! ```

mod apply;
mod diff;
mod order;
mod schema;

use serde_json::Value;

pub use order::go_format;
pub use schema::{FieldMeta, PatchSchema};

use schema::Cursor;

/// How the API server answers a patch it cannot apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchErrorKind {
    /// 400 Bad Request: a malformed directive.
    BadRequest,
    /// 422 Unprocessable Entity (lists of lists).
    Unprocessable,
    /// 500 Internal Server Error: kube-apiserver passes most merge errors through unwrapped.
    Internal,
}

/// A strategic merge patch that cannot be applied, with the real server's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PatchError {
    /// The kind of answer.
    pub kind: PatchErrorKind,
    /// The message, as kube-apiserver words it.
    pub message: String,
}

/// Strategic merge for objects of one API type.
#[derive(Debug, Clone, Copy)]
pub struct StrategicMerge<'s> {
    schema: &'s PatchSchema,
    type_name: Option<&'s str>,
}

impl StrategicMerge<'static> {
    /// For objects of `kind` in `api_version` (`v1`, `apps/v1`), with the built-in metadata.
    /// An unknown kind merges every map and replaces every list.
    pub fn for_kind(api_version: &str, kind: &str) -> Self {
        StrategicMerge::with_schema(PatchSchema::builtin(), api_version, kind)
    }
}

impl<'s> StrategicMerge<'s> {
    /// For objects of `kind` in `api_version`, with the metadata of `schema`.
    pub fn with_schema(schema: &'s PatchSchema, api_version: &str, kind: &str) -> Self {
        StrategicMerge {
            schema,
            type_name: schema.kind(api_version, kind),
        }
    }

    fn cursor(&self) -> Cursor<'s> {
        Cursor::new(self.schema, self.type_name)
    }

    /// The two-way patch from `original` to `modified` (an empty object when they agree).
    pub fn diff(&self, original: &Value, modified: &Value) -> Value {
        diff::two_way(original, modified, self.cursor())
    }

    /// `patch` applied to `original`.
    pub fn apply(&self, original: &Value, patch: &Value) -> Result<Value, PatchError> {
        apply::apply(original, patch, self.cursor())
    }
}

#[cfg(test)]
mod tests;
