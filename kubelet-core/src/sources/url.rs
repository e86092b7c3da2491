//! The manifest URL source (`--manifest-url`, `--manifest-url-header`).

use crate::error::error_chain;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use k8s_openapi::api::core::v1::Pod;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use tokio::time::{Interval, MissedTickBehavior};

use super::manifest::{self, MAX_MANIFEST_BYTES};
use super::{ManifestProblems, SeenTimes, dedup_by_name};
use crate::error::SourceError;
use crate::source::{PodSource, PodUpdate, SOURCE_HTTP};

/// The reference's HTTP client timeout for manifest fetches.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// A [`PodSource`] (named `http`) that fetches pods from a URL (HTTP or HTTPS).
///
/// The body is a `v1` `Pod` or `PodList`, as YAML or JSON. The URL is fetched at once and then
/// every `check_frequency`. The first snapshot is sent after the first successful fetch, then
/// one whenever the set changes. A failed fetch (connection, non-2xx status) or a body that
/// does not decode or validate is logged and keeps the last good set, as the reference does: a
/// pod list is taken whole or not at all. An empty body is an empty set.
#[derive(Debug)]
pub struct ManifestUrlSource {
    url: reqwest::Url,
    headers: HeaderMap,
    node_name: String,
    check_frequency: Duration,
    client: reqwest::Client,
    problems: ManifestProblems,
}

impl ManifestUrlSource {
    /// A source fetching `url` for node `node_name` every `check_frequency` (the reference
    /// default is [`super::DEFAULT_HTTP_CHECK_FREQUENCY`], 20 s). HTTPS servers are verified
    /// against the system's trust store.
    pub fn new(
        url: &str,
        node_name: impl Into<String>,
        check_frequency: Duration,
    ) -> Result<Self, SourceError> {
        let bad = |message: String| SourceError::Unavailable {
            origin: url.to_string(),
            message,
        };
        let parsed = reqwest::Url::parse(url).map_err(|e| bad(format!("invalid URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(bad(format!(
                "unsupported scheme {:?}: must be http or https",
                parsed.scheme()
            )));
        }
        let client = build_client().map_err(bad)?;
        Ok(Self {
            url: parsed,
            headers: HeaderMap::new(),
            node_name: node_name.into(),
            check_frequency: check_frequency.max(Duration::from_millis(1)),
            client,
            problems: ManifestProblems::default(),
        })
    }

    /// Adds a request header; a repeated name sends the header once per value, in order.
    pub fn with_header(mut self, name: &str, value: &str) -> Result<Self, SourceError> {
        let bad = |message: String| SourceError::Unavailable {
            origin: self.url.to_string(),
            message,
        };
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|e| bad(format!("invalid header name {name:?}: {e}")))?;
        let value = HeaderValue::from_str(value)
            .map_err(|e| bad(format!("invalid value for header {name}: {e}")))?;
        self.headers.append(name, value);
        Ok(self)
    }

    /// Adds request headers, e.g. the result of [`parse_manifest_url_headers`].
    pub fn with_headers<N, V>(
        self,
        headers: impl IntoIterator<Item = (N, V)>,
    ) -> Result<Self, SourceError>
    where
        N: AsRef<str>,
        V: AsRef<str>,
    {
        headers
            .into_iter()
            .try_fold(self, |s, (n, v)| s.with_header(n.as_ref(), v.as_ref()))
    }

    /// A handle on the latest fetch problem (URL -> error); empty after a good fetch.
    pub fn problems(&self) -> ManifestProblems {
        self.problems.clone()
    }

    /// One fetch: the valid pods, or why the whole response is rejected.
    async fn fetch(&self, seen: &mut SeenTimes) -> Result<Vec<Pod>, SourceError> {
        let origin = self.url.as_str();
        let unavailable = |message: String| SourceError::Unavailable {
            origin: origin.to_string(),
            message,
        };
        let mut response = self
            .client
            .get(self.url.clone())
            .headers(self.headers.clone())
            .send()
            .await
            .map_err(|e| unavailable(error_chain(&e)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(unavailable(format!("HTTP status {status}")));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| unavailable(error_chain(&e)))?
        {
            if body.len() + chunk.len() > MAX_MANIFEST_BYTES {
                return Err(unavailable(format!(
                    "response larger than {MAX_MANIFEST_BYTES} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        // The reference treats an empty body as "no pods" rather than an error.
        if body.trim_ascii().is_empty() {
            return Ok(Vec::new());
        }
        let decoded = manifest::decode_pods(&body, origin)?;
        let mut pods = Vec::with_capacity(decoded.len());
        for pod in decoded {
            let pod = manifest::prepare_static_pod(pod, &self.node_name, SOURCE_HTTP, origin)?;
            pods.push((origin.to_string(), pod));
        }
        let mut duplicates = BTreeMap::new();
        let mut pods = dedup_by_name(pods, &mut duplicates);
        for err in duplicates.values() {
            tracing::warn!(url = %origin, "{err}; keeping the first");
        }
        seen.stamp(&mut pods);
        Ok(pods)
    }
}

impl PodSource for ManifestUrlSource {
    fn name(&self) -> &str {
        SOURCE_HTTP
    }

    fn updates(self: Box<Self>) -> BoxStream<'static, PodUpdate> {
        let mut interval = tokio::time::interval(self.check_frequency);
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let state = UrlPoll {
            source: *self,
            interval,
            last: None,
            seen: SeenTimes::default(),
        };
        futures::stream::unfold(state, |mut state| async move {
            let pods = state.next_snapshot().await;
            Some((PodUpdate::Snapshot(pods), state))
        })
        .boxed()
    }
}

struct UrlPoll {
    source: ManifestUrlSource,
    interval: Interval,
    last: Option<Vec<Pod>>,
    seen: SeenTimes,
}

impl UrlPoll {
    async fn next_snapshot(&mut self) -> Vec<Pod> {
        loop {
            // The first tick completes at once: the first fetch is immediate.
            self.interval.tick().await;
            match self.source.fetch(&mut self.seen).await {
                Ok(pods) => {
                    self.source.problems.replace(SOURCE_HTTP, BTreeMap::new());
                    if self.last.as_ref() != Some(&pods) {
                        tracing::debug!(url = %self.source.url, pods = pods.len(), "manifest URL pod set changed");
                        self.last = Some(pods.clone());
                        return pods;
                    }
                }
                Err(err) => {
                    let origin = self.source.url.to_string();
                    self.source
                        .problems
                        .replace(SOURCE_HTTP, BTreeMap::from([(origin, err)]));
                }
            }
        }
    }
}

/// The HTTP client: rustls with the ring provider chosen here rather than process-wide, so
/// embedders need not install a default crypto provider; the platform verifier uses the
/// system's trust store like the reference's Go client.
fn build_client() -> Result<reqwest::Client, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls_platform_verifier::Verifier::new(provider.clone())
        .map_err(|e| format!("TLS verifier: {e}"))?;
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS config: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(FETCH_TIMEOUT)
        .build()
        .map_err(|e| format!("HTTP client: {}", error_chain(&e)))
}

/// Parses one `--manifest-url-header` flag value: comma-separated `name:value` pairs, e.g.
/// `a:hello,b:again,c:world`. The flag may be given several times; concatenate the results.
pub fn parse_manifest_url_headers(flag: &str) -> Result<Vec<(String, String)>, SourceError> {
    flag.split(',')
        .filter(|pair| !pair.trim().is_empty())
        .map(|pair| match pair.split_once(':') {
            Some((name, value)) if !name.trim().is_empty() => {
                Ok((name.trim().to_string(), value.trim().to_string()))
            }
            _ => Err(SourceError::Unavailable {
                origin: "--manifest-url-header".to_string(),
                message: format!("invalid header {pair:?}: expected name:value"),
            }),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_flags_parse() {
        let got = parse_manifest_url_headers("a:hello,b:again, c : world").expect("valid");
        assert_eq!(
            got,
            [
                ("a".to_string(), "hello".to_string()),
                ("b".to_string(), "again".to_string()),
                ("c".to_string(), "world".to_string()),
            ]
        );
        // A value may itself contain ':' (e.g. a URL or a token).
        let got = parse_manifest_url_headers("Authorization:Bearer a:b").expect("valid");
        assert_eq!(got[0].1, "Bearer a:b");
        assert!(parse_manifest_url_headers("novalue").is_err());
        assert!(parse_manifest_url_headers(":x").is_err());
    }

    #[test]
    fn rejects_bad_urls_and_headers() {
        let period = Duration::from_secs(20);
        assert!(ManifestUrlSource::new("not a url", "n", period).is_err());
        assert!(ManifestUrlSource::new("ftp://host/pods", "n", period).is_err());
        let source =
            ManifestUrlSource::new("https://example.invalid/pods", "n", period).expect("valid URL");
        assert!(source.with_header("bad header", "x").is_err());
    }
}
