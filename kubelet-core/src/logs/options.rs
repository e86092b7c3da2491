//! `PodLogOptions` as the kubelet's `/containerLogs` endpoint receives them in its query
//! string, decoded and validated as the reference kubelet does.

use jiff::{SignedDuration, Timestamp};

/// Which of the container's output streams a request reads (`stream` parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogStream {
    /// Both stdout and stderr, interleaved as written (the default).
    #[default]
    All,
    /// Only stdout.
    Stdout,
    /// Only stderr.
    Stderr,
}

impl LogStream {
    /// Whether a record of `stream` is part of the output.
    pub fn includes(self, stream: RecordStream) -> bool {
        match self {
            LogStream::All => true,
            LogStream::Stdout => stream == RecordStream::Stdout,
            LogStream::Stderr => stream == RecordStream::Stderr,
        }
    }
}

/// The stream one record of a CRI log file was written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordStream {
    /// `stdout`.
    Stdout,
    /// `stderr`.
    Stderr,
}

/// The options of one log request, with `since` already resolved to an absolute time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// Keep streaming new lines until the container stops (`follow`).
    pub follow: bool,
    /// Read the previous run of the container (`previous`); used to pick the file, see
    /// [`super::log_file_for`].
    pub previous: bool,
    /// Skip records older than this (`sinceSeconds` or `sinceTime`, the later of the two).
    pub since: Option<Timestamp>,
    /// Prefix each line with its RFC3339Nano timestamp and a space (`timestamps`).
    pub timestamps: bool,
    /// Only the last N records of the file (`tailLines`, or the legacy `tail`).
    pub tail_lines: Option<u64>,
    /// Stop after this many bytes of output (`limitBytes`).
    pub limit_bytes: Option<u64>,
    /// Which output stream(s) to return (`stream`).
    pub stream: LogStream,
}

/// A query string the endpoint refuses. [`LogOptionsError::Decode`] is what the reference
/// answers with 400 Bad Request, [`LogOptionsError::Invalid`] with 422 Unprocessable Entity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogOptionsError {
    /// A parameter's value is not of its type (an integer, an RFC3339 time, a percent-encoded
    /// string).
    #[error("unable to decode query parameter {param}={value:?}: {reason}")]
    Decode {
        /// The query parameter.
        param: String,
        /// Its raw value.
        value: String,
        /// Why it does not decode.
        reason: String,
    },
    /// The parameters decode but break a rule of `PodLogOptions` validation.
    #[error("{param}: {message}")]
    Invalid {
        /// The parameter (or parameters) at fault.
        param: &'static str,
        /// The rule it breaks, worded as the reference's field errors.
        message: String,
    },
}

impl LogOptionsError {
    /// The HTTP status the reference kubelet answers this error with.
    pub fn http_status(&self) -> u16 {
        match self {
            LogOptionsError::Decode { .. } => 400,
            LogOptionsError::Invalid { .. } => 422,
        }
    }
}

/// The `PodLogOptions` fields as decoded from the query, before validation.
#[derive(Debug, Default)]
struct RawOptions {
    follow: bool,
    previous: bool,
    timestamps: bool,
    since_seconds: Option<i64>,
    since_time: Option<Timestamp>,
    tail_lines: Option<i64>,
    limit_bytes: Option<i64>,
    stream: Option<String>,
}

impl LogOptions {
    /// Decodes and validates the query string of a `/containerLogs` request (without the
    /// leading `?`), resolving `sinceSeconds` against the current time.
    pub fn from_query(query: &str) -> Result<LogOptions, LogOptionsError> {
        Self::from_query_at(query, Timestamp::now())
    }

    /// As [`LogOptions::from_query`], with `now` as the request time.
    pub fn from_query_at(query: &str, now: Timestamp) -> Result<LogOptions, LogOptionsError> {
        let raw = decode(query)?;
        validate(&raw)?;
        Ok(resolve(raw, now))
    }
}

/// Splits and percent-decodes `query` into the `PodLogOptions` fields. As Go's
/// `url.Values`, the first value of a repeated parameter wins and unknown ones are ignored.
fn decode(query: &str) -> Result<RawOptions, LogOptionsError> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decode(k).map_err(|reason| LogOptionsError::Decode {
            param: k.to_string(),
            value: v.to_string(),
            reason,
        })?;
        let value = percent_decode(v).map_err(|reason| LogOptionsError::Decode {
            param: key.clone(),
            value: v.to_string(),
            reason,
        })?;
        pairs.push((key, value));
    }
    let first = |name: &str| -> Option<&str> {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };

    let mut raw = RawOptions {
        follow: first("follow").is_some_and(parse_bool),
        previous: first("previous").is_some_and(parse_bool),
        timestamps: first("timestamps").is_some_and(parse_bool),
        ..RawOptions::default()
    };
    raw.since_seconds = first("sinceSeconds")
        .map(|v| parse_int("sinceSeconds", v))
        .transpose()?;
    raw.limit_bytes = first("limitBytes")
        .map(|v| parse_int("limitBytes", v))
        .transpose()?;
    // The legacy `tail` parameter overrides `tailLines`; `tail=all` means no limit.
    raw.tail_lines = match first("tail").filter(|t| !t.is_empty()) {
        Some("all") => None,
        Some(t) => Some(parse_int("tail", t)?),
        None => first("tailLines")
            .map(|v| parse_int("tailLines", v))
            .transpose()?,
    };
    // An empty sinceTime decodes to no time, as metav1.Time's query decoding does.
    raw.since_time = match first("sinceTime").filter(|t| !t.is_empty() && *t != "null") {
        Some(t) => Some(
            t.parse::<Timestamp>()
                .map_err(|e| LogOptionsError::Decode {
                    param: "sinceTime".to_string(),
                    value: t.to_string(),
                    reason: format!("not an RFC3339 time: {e}"),
                })?,
        ),
        None => None,
    };
    raw.stream = first("stream").map(str::to_string);
    Ok(raw)
}

/// `PodLogOptions` validation as the API server and the kubelet apply it.
fn validate(raw: &RawOptions) -> Result<(), LogOptionsError> {
    if let Some(n) = raw.tail_lines.filter(|n| *n < 0) {
        return Err(LogOptionsError::Invalid {
            param: "tailLines",
            message: format!("Invalid value: {n}: must be greater than or equal to 0"),
        });
    }
    if let Some(n) = raw.limit_bytes.filter(|n| *n < 1) {
        return Err(LogOptionsError::Invalid {
            param: "limitBytes",
            message: format!("Invalid value: {n}: must be greater than 0"),
        });
    }
    if raw.since_seconds.is_some() && raw.since_time.is_some() {
        return Err(LogOptionsError::Invalid {
            param: "sinceSeconds, sinceTime",
            message: "Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified"
                .to_string(),
        });
    }
    if let Some(n) = raw.since_seconds.filter(|n| *n < 1) {
        return Err(LogOptionsError::Invalid {
            param: "sinceSeconds",
            message: format!("Invalid value: {n}: must be greater than 0"),
        });
    }
    match raw.stream.as_deref() {
        None | Some("All") => {}
        Some("Stdout" | "Stderr") => {
            if raw.tail_lines.is_some() {
                return Err(LogOptionsError::Invalid {
                    param: "tailLines",
                    message: "Forbidden: `tailLines` and specific `stream` are mutually \
                              exclusive for now"
                        .to_string(),
                });
            }
        }
        Some(other) => {
            return Err(LogOptionsError::Invalid {
                param: "stream",
                message: format!(
                    "Unsupported value: {other:?}: supported values: \"All\", \"Stderr\", \"Stdout\""
                ),
            });
        }
    }
    Ok(())
}

/// Turns validated raw options into [`LogOptions`], `since` as an absolute time: the later of
/// `now - sinceSeconds` and `sinceTime`, as the reference's `NewLogOptions`.
fn resolve(raw: RawOptions, now: Timestamp) -> LogOptions {
    let since_seconds = raw.since_seconds.map(|s| {
        now.checked_sub(SignedDuration::from_secs(s))
            .unwrap_or(Timestamp::MIN)
    });
    let since = match (since_seconds, raw.since_time) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    LogOptions {
        follow: raw.follow,
        previous: raw.previous,
        since,
        timestamps: raw.timestamps,
        // Validation refused negative values.
        tail_lines: raw.tail_lines.and_then(|n| u64::try_from(n).ok()),
        limit_bytes: raw.limit_bytes.and_then(|n| u64::try_from(n).ok()),
        stream: match raw.stream.as_deref() {
            Some("Stdout") => LogStream::Stdout,
            Some("Stderr") => LogStream::Stderr,
            _ => LogStream::All,
        },
    }
}

/// A boolean query value as apimachinery decodes it: `0` and `false` (any case) are false,
/// anything else (even an empty value, as in `?follow`, or `no`) is true.
fn parse_bool(v: &str) -> bool {
    !(v == "0" || v.eq_ignore_ascii_case("false"))
}

fn parse_int(param: &str, v: &str) -> Result<i64, LogOptionsError> {
    v.parse::<i64>().map_err(|e| LogOptionsError::Decode {
        param: param.to_string(),
        value: v.to_string(),
        reason: e.to_string(),
    })
}

/// `application/x-www-form-urlencoded` decoding as Go's `url.QueryUnescape`: `+` is a space,
/// `%XX` a byte; the result must be UTF-8.
fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("invalid percent escape at byte {i}"))?;
                out.push(hex);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| "not UTF-8 after percent-decoding".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap_or(Timestamp::UNIX_EPOCH)
    }

    #[test]
    fn decodes_and_resolves() {
        let now = ts("2024-05-01T12:00:00Z");
        let cases: Vec<(&str, LogOptions)> = vec![
            ("", LogOptions::default()),
            (
                "follow=true&timestamps=1&previous=yes",
                LogOptions {
                    follow: true,
                    previous: true,
                    timestamps: true,
                    ..LogOptions::default()
                },
            ),
            (
                "follow&timestamps=FALSE&previous=0",
                LogOptions {
                    follow: true,
                    ..LogOptions::default()
                },
            ),
            (
                "follow=no&previous=",
                LogOptions {
                    follow: true,
                    previous: true,
                    ..LogOptions::default()
                },
            ),
            (
                "tailLines=10&limitBytes=500",
                LogOptions {
                    tail_lines: Some(10),
                    limit_bytes: Some(500),
                    ..LogOptions::default()
                },
            ),
            (
                "tailLines=0",
                LogOptions {
                    tail_lines: Some(0),
                    ..LogOptions::default()
                },
            ),
            (
                "tail=5&tailLines=10",
                LogOptions {
                    tail_lines: Some(5),
                    ..LogOptions::default()
                },
            ),
            ("tail=all&tailLines=10", LogOptions::default()),
            (
                "sinceSeconds=60",
                LogOptions {
                    since: Some(ts("2024-05-01T11:59:00Z")),
                    ..LogOptions::default()
                },
            ),
            (
                "sinceTime=2024-05-01T10%3A00%3A00%2B02%3A00",
                LogOptions {
                    since: Some(ts("2024-05-01T08:00:00Z")),
                    ..LogOptions::default()
                },
            ),
            (
                "sinceTime=2024-05-01T10:00:00.5Z",
                LogOptions {
                    since: Some(ts("2024-05-01T10:00:00.5Z")),
                    ..LogOptions::default()
                },
            ),
            (
                "stream=Stderr&container=c&insecureSkipTLSVerifyBackend=true",
                LogOptions {
                    stream: LogStream::Stderr,
                    ..LogOptions::default()
                },
            ),
            (
                "stream=All&tailLines=3",
                LogOptions {
                    tail_lines: Some(3),
                    ..LogOptions::default()
                },
            ),
            (
                "limitBytes=7&limitBytes=9",
                LogOptions {
                    limit_bytes: Some(7),
                    ..LogOptions::default()
                },
            ),
        ];
        for (query, want) in cases {
            let got = LogOptions::from_query_at(query, now);
            assert_eq!(got, Ok(want), "query {query:?}");
        }
    }

    #[test]
    fn refuses_invalid() {
        // (query, status, text the message must contain)
        let cases = [
            ("tailLines=-1", 422, "tailLines"),
            ("tail=-3", 422, "tailLines"),
            ("limitBytes=0", 422, "limitBytes"),
            ("limitBytes=-5", 422, "limitBytes"),
            ("sinceSeconds=0", 422, "sinceSeconds"),
            ("sinceSeconds=-10", 422, "sinceSeconds"),
            (
                "sinceSeconds=10&sinceTime=2024-05-01T10:00:00Z",
                422,
                "at most one of `sinceTime` or `sinceSeconds`",
            ),
            ("stream=Stdout&tailLines=1", 422, "mutually exclusive"),
            ("stream=stdout", 422, "stream"),
            ("tailLines=ten", 400, "tailLines"),
            ("limitBytes=1.5", 400, "limitBytes"),
            ("sinceSeconds=", 400, "sinceSeconds"),
            ("sinceTime=yesterday", 400, "sinceTime"),
            ("sinceTime=2024-05-01T10:00:00", 400, "sinceTime"),
            ("follow=%zz", 400, "follow"),
        ];
        for (query, status, needle) in cases {
            match LogOptions::from_query_at(query, Timestamp::UNIX_EPOCH) {
                Ok(o) => panic!("query {query:?} accepted as {o:?}"),
                Err(e) => {
                    assert_eq!(e.http_status(), status, "query {query:?}: {e}");
                    assert!(e.to_string().contains(needle), "query {query:?}: {e}");
                }
            }
        }
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a+b%20c").as_deref(), Ok("a b c"));
        assert!(percent_decode("%4").is_err());
        assert!(percent_decode("%ff").is_err());
    }
}
