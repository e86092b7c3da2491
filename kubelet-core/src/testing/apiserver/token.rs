//! `serviceaccounts/<name>/token` (TokenRequest, authentication.k8s.io/v1).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::Timestamp;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::resources::storage_form;
use super::status::ApiError;
use super::store::Store;

/// The default API audience of a kube-apiserver without `--api-audiences`.
const DEFAULT_AUDIENCE: &str = "https://kubernetes.default.svc.cluster.local";

/// Answers a TokenRequest for `ns/name` with a JWT-shaped token (not verifiable: the fake
/// has no token authenticator for service-account tokens) and its expiration.
pub(crate) fn token_request(
    store: &Store,
    ns: &str,
    name: &str,
    body: &Value,
) -> Result<Value, ApiError> {
    let sa_info = storage_form("serviceaccounts")
        .ok_or_else(|| ApiError::internal("no serviceaccounts resource"))?;
    let sa = store.get(sa_info, ns, name)?;
    let spec = body.get("spec").cloned().unwrap_or_else(|| json!({}));
    let expiration = spec
        .get("expirationSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(3600);
    if expiration < 600 {
        return Err(ApiError::invalid(
            "TokenRequest",
            "authentication.k8s.io",
            name,
            &[(
                "spec.expirationSeconds".to_string(),
                "FieldValueInvalid",
                format!(
                    "Invalid value: {expiration}: may not specify a duration less than 10 minutes"
                ),
            )],
        ));
    }
    if expiration > 1 << 32 {
        return Err(ApiError::invalid(
            "TokenRequest",
            "authentication.k8s.io",
            name,
            &[(
                "spec.expirationSeconds".to_string(),
                "FieldValueTooLong",
                format!(
                    "Invalid value: {expiration}: may not specify a duration larger than 2^32 seconds"
                ),
            )],
        ));
    }
    let audiences = match spec.get("audiences").and_then(Value::as_array) {
        Some(a) if !a.is_empty() => a.clone(),
        _ => vec![json!(DEFAULT_AUDIENCE)],
    };
    let mut pod_claim = Value::Null;
    if let Some(bound) = spec.get("boundObjectRef").filter(|b| !b.is_null()) {
        let kind = bound.get("kind").and_then(Value::as_str).unwrap_or("");
        let bname = bound.get("name").and_then(Value::as_str).unwrap_or("");
        let buid = bound.get("uid").and_then(Value::as_str).unwrap_or("");
        if kind == "Pod" {
            let pods =
                storage_form("pods").ok_or_else(|| ApiError::internal("no pods resource"))?;
            let pod = store.get(pods, ns, bname)?;
            let uid = pod
                .pointer("/metadata/uid")
                .and_then(Value::as_str)
                .unwrap_or("");
            if !buid.is_empty() && buid != uid {
                return Err(ApiError::conflict(
                    "",
                    "pods",
                    bname,
                    &format!(
                        "the UID in the bound object reference ({buid}) does not match the UID in record. The object might have been deleted and then recreated"
                    ),
                ));
            }
            pod_claim = json!({"name": bname, "uid": uid});
        }
    }
    let now = Timestamp::now();
    let iat = now.as_second();
    let exp = iat + expiration;
    let sa_uid = sa
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or("");
    let mut k8s_claim = json!({
        "namespace": ns,
        "serviceaccount": {"name": name, "uid": sa_uid},
    });
    if !pod_claim.is_null() {
        k8s_claim["pod"] = pod_claim;
    }
    let claims = json!({
        "aud": audiences,
        "exp": exp,
        "iat": iat,
        "nbf": iat,
        "iss": DEFAULT_AUDIENCE,
        "sub": format!("system:serviceaccount:{ns}:{name}"),
        "kubernetes.io": k8s_claim,
    });
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","kid":"fake-apiserver"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let sig = URL_SAFE_NO_PAD.encode(Sha256::digest(format!("{header}.{payload}")));
    let expires = Timestamp::from_second(exp)
        .map_err(|e| ApiError::internal(&format!("expiration timestamp: {e}")))?;
    let mut spec_out = spec.clone();
    spec_out["audiences"] = json!(audiences);
    spec_out["expirationSeconds"] = json!(expiration);
    Ok(json!({
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"name": name, "namespace": ns, "creationTimestamp": null},
        "spec": spec_out,
        "status": {
            "token": format!("{header}.{payload}.{sig}"),
            "expirationTimestamp": expires.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        },
    }))
}
