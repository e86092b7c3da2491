//! Probe and lifecycle-hook specs: validation (naming the offending field) and the reference's
//! defaults, turning the API's optional fields into a [`ProbeSpec`] the workers run.

use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Container, HTTPGetAction, LifecycleHandler, Probe, TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{ProbeError, ProbeType};

/// Default `initialDelaySeconds`.
pub const DEFAULT_INITIAL_DELAY_SECONDS: i32 = 0;
/// Default `periodSeconds`.
pub const DEFAULT_PERIOD_SECONDS: i32 = 10;
/// Default `timeoutSeconds`.
pub const DEFAULT_TIMEOUT_SECONDS: i32 = 1;
/// Default `successThreshold`.
pub const DEFAULT_SUCCESS_THRESHOLD: i32 = 1;
/// Default `failureThreshold`.
pub const DEFAULT_FAILURE_THRESHOLD: i32 = 3;

/// A port named by number or by the name of one of the container's ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortRef {
    /// A port number.
    Number(u16),
    /// A container port name (`spec.containers[].ports[].name`).
    Name(String),
}

impl PortRef {
    /// The port number, looking names up in the container's ports. As the reference, a name
    /// that matches no port is tried as a number before giving up.
    pub fn resolve(&self, container: &Container) -> Result<u16, String> {
        match self {
            Self::Number(n) => Ok(*n),
            Self::Name(name) => {
                let by_name = container
                    .ports
                    .iter()
                    .flatten()
                    .find(|p| p.name.as_deref() == Some(name.as_str()))
                    .map(|p| p.container_port);
                let port = match by_name {
                    Some(p) => p,
                    None => name
                        .parse::<i32>()
                        .map_err(|_| format!("couldn't find port: {name} in {}", container.name))?,
                };
                u16::try_from(port)
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| format!("invalid port number: {port}"))
            }
        }
    }
}

/// An HTTP GET, for a probe or a hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpGetSpec {
    /// `http` or `https` (lowercase).
    pub scheme: String,
    /// Host to connect to; `None`: the pod IP.
    pub host: Option<String>,
    /// Port.
    pub port: PortRef,
    /// Path (with a leading `/`).
    pub path: String,
    /// Extra headers, in order.
    pub headers: Vec<(String, String)>,
}

/// What a probe runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeHandler {
    /// A command in the container; exit 0 is success.
    Exec {
        /// The command.
        command: Vec<String>,
    },
    /// An HTTP GET; 200..399 is success.
    HttpGet(HttpGetSpec),
    /// A TCP connect.
    TcpSocket {
        /// Host; `None`: the pod IP.
        host: Option<String>,
        /// Port.
        port: PortRef,
    },
    /// A `grpc.health.v1.Health/Check` call on the pod IP.
    Grpc {
        /// Port.
        port: u16,
        /// The `service` of the health request (empty: the server as a whole).
        service: String,
    },
}

impl ProbeHandler {
    /// The handler's name, as the reference logs it (`exec`, `http`, `tcp`, `grpc`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Exec { .. } => "exec",
            Self::HttpGet(_) => "http",
            Self::TcpSocket { .. } => "tcp",
            Self::Grpc { .. } => "grpc",
        }
    }
}

/// A validated probe with every default applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSpec {
    /// Liveness, readiness or startup.
    pub probe_type: ProbeType,
    /// What to run.
    pub handler: ProbeHandler,
    /// Wait this long after the container started before the first probe.
    pub initial_delay: Duration,
    /// Probe this often.
    pub period: Duration,
    /// Give each probe this long.
    pub timeout: Duration,
    /// Consecutive successes to count as success after a failure.
    pub success_threshold: u32,
    /// Consecutive failures to count as failure.
    pub failure_threshold: u32,
    /// Grace period (seconds) for a kill caused by this probe's failure, instead of the pod's.
    pub termination_grace_period_seconds: Option<i64>,
}

/// A validated lifecycle hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookSpec {
    /// A command in the container; a non-zero exit fails the hook.
    Exec {
        /// The command.
        command: Vec<String>,
    },
    /// An HTTP GET; failing to get an answer fails the hook.
    HttpGet(HttpGetSpec),
    /// Sleep this long.
    Sleep(Duration),
    /// A `tcpSocket` handler: accepted by the API for compatibility, it fails when run (as
    /// with the reference).
    TcpSocket,
}

fn invalid(field: String, message: impl Into<String>) -> ProbeError {
    ProbeError::Invalid {
        field,
        message: message.into(),
    }
}

fn non_negative(
    field: &str,
    name: &str,
    value: Option<i32>,
    default: i32,
) -> Result<i32, ProbeError> {
    match value {
        Some(v) if v < 0 => Err(invalid(
            format!("{field}.{name}"),
            format!("Invalid value: {v}: must be greater than or equal to 0"),
        )),
        // The API server defaults zero to the default for the counts and durations that
        // cannot be zero; initialDelaySeconds keeps its zero.
        Some(0) | None => Ok(default),
        Some(v) => Ok(v),
    }
}

fn seconds(v: i32) -> Duration {
    Duration::from_secs(u64::try_from(v).unwrap_or(0))
}

/// Validate one probe of a container and apply the defaults. `field` is the probe's path, e.g.
/// `spec.containers[0].livenessProbe`; errors name the field below it.
pub fn probe_spec(
    probe: &Probe,
    probe_type: ProbeType,
    field: &str,
) -> Result<ProbeSpec, ProbeError> {
    let handlers = [
        probe.exec.is_some(),
        probe.http_get.is_some(),
        probe.tcp_socket.is_some(),
        probe.grpc.is_some(),
    ]
    .into_iter()
    .filter(|h| *h)
    .count();
    exactly_one_handler(handlers, field)?;
    let initial_delay = match probe.initial_delay_seconds {
        Some(v) if v < 0 => {
            return Err(invalid(
                format!("{field}.initialDelaySeconds"),
                format!("Invalid value: {v}: must be greater than or equal to 0"),
            ));
        }
        v => v.unwrap_or(DEFAULT_INITIAL_DELAY_SECONDS),
    };
    let timeout = non_negative(
        field,
        "timeoutSeconds",
        probe.timeout_seconds,
        DEFAULT_TIMEOUT_SECONDS,
    )?;
    let period = non_negative(
        field,
        "periodSeconds",
        probe.period_seconds,
        DEFAULT_PERIOD_SECONDS,
    )?;
    let success = non_negative(
        field,
        "successThreshold",
        probe.success_threshold,
        DEFAULT_SUCCESS_THRESHOLD,
    )?;
    let failure = non_negative(
        field,
        "failureThreshold",
        probe.failure_threshold,
        DEFAULT_FAILURE_THRESHOLD,
    )?;
    if probe_type != ProbeType::Readiness && success != 1 {
        return Err(invalid(
            format!("{field}.successThreshold"),
            format!("Invalid value: {success}: must be 1"),
        ));
    }
    let grace = probe.termination_grace_period_seconds;
    if let Some(g) = grace {
        if probe_type == ProbeType::Readiness {
            return Err(invalid(
                format!("{field}.terminationGracePeriodSeconds"),
                "Invalid value: must not be set for readinessProbes",
            ));
        }
        if g <= 0 {
            return Err(invalid(
                format!("{field}.terminationGracePeriodSeconds"),
                format!("Invalid value: {g}: must be greater than 0"),
            ));
        }
    }
    let handler = if let Some(exec) = &probe.exec {
        ProbeHandler::Exec {
            command: exec_command(exec.command.as_deref(), &format!("{field}.exec"))?,
        }
    } else if let Some(http) = &probe.http_get {
        ProbeHandler::HttpGet(http_get(http, &format!("{field}.httpGet"))?)
    } else if let Some(tcp) = &probe.tcp_socket {
        tcp_socket(tcp, &format!("{field}.tcpSocket"))?
    } else if let Some(grpc) = &probe.grpc {
        let port = u16::try_from(grpc.port)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| {
                invalid(
                    format!("{field}.grpc.port"),
                    format!(
                        "Invalid value: {}: must be between 1 and 65535, inclusive",
                        grpc.port
                    ),
                )
            })?;
        ProbeHandler::Grpc {
            port,
            service: grpc.service.clone().unwrap_or_default(),
        }
    } else {
        // Counted above: exactly one handler is set.
        return Err(invalid(
            field.to_string(),
            "Required value: must specify a handler type",
        ));
    };
    Ok(ProbeSpec {
        probe_type,
        handler,
        initial_delay: seconds(initial_delay),
        period: seconds(period),
        timeout: seconds(timeout),
        success_threshold: u32::try_from(success).unwrap_or(1),
        failure_threshold: u32::try_from(failure).unwrap_or(3),
        termination_grace_period_seconds: grace,
    })
}

/// Validate a lifecycle handler (`postStart` or `preStop`). `field` is its path, e.g.
/// `spec.containers[0].lifecycle.preStop`.
pub fn hook_spec(handler: &LifecycleHandler, field: &str) -> Result<HookSpec, ProbeError> {
    let count = [
        handler.exec.is_some(),
        handler.http_get.is_some(),
        handler.tcp_socket.is_some(),
        handler.sleep.is_some(),
    ]
    .into_iter()
    .filter(|h| *h)
    .count();
    exactly_one_handler(count, field)?;
    if let Some(exec) = &handler.exec {
        return Ok(HookSpec::Exec {
            command: exec_command(exec.command.as_deref(), &format!("{field}.exec"))?,
        });
    }
    if let Some(http) = &handler.http_get {
        return Ok(HookSpec::HttpGet(http_get(
            http,
            &format!("{field}.httpGet"),
        )?));
    }
    if let Some(sleep) = &handler.sleep {
        if sleep.seconds < 0 {
            return Err(invalid(
                format!("{field}.sleep.seconds"),
                format!(
                    "Invalid value: {}: must be greater than or equal to 0",
                    sleep.seconds
                ),
            ));
        }
        return Ok(HookSpec::Sleep(Duration::from_secs(
            u64::try_from(sleep.seconds).unwrap_or(0),
        )));
    }
    Ok(HookSpec::TcpSocket)
}

fn exec_command(command: Option<&[String]>, field: &str) -> Result<Vec<String>, ProbeError> {
    match command {
        Some(c) if !c.is_empty() => Ok(c.to_vec()),
        _ => Err(invalid(format!("{field}.command"), "Required value")),
    }
}

fn port_ref(port: &IntOrString, field: &str) -> Result<PortRef, ProbeError> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n)
            .ok()
            .filter(|p| *p > 0)
            .map(PortRef::Number)
            .ok_or_else(|| {
                invalid(
                    field.to_string(),
                    format!("Invalid value: {n}: must be between 1 and 65535, inclusive"),
                )
            }),
        IntOrString::String(name) => {
            if let Some(message) = iana_svc_name_error(name) {
                return Err(invalid(field.to_string(), message));
            }
            Ok(PortRef::Name(name.clone()))
        }
    }
}

/// A probe or hook names exactly one handler (exec, httpGet, ...).
fn exactly_one_handler(count: usize, field: &str) -> Result<(), ProbeError> {
    match count {
        0 => Err(invalid(
            field.to_string(),
            "Required value: must specify a handler type",
        )),
        1 => Ok(()),
        _ => Err(invalid(
            field.to_string(),
            "Forbidden: may not specify more than 1 handler type",
        )),
    }
}

/// Why `s` is not an IANA service name (as a port name must be), `None` when it is one.
pub(crate) fn iana_svc_name_error(s: &str) -> Option<String> {
    if s.is_empty() || s.len() > 15 {
        return Some(format!(
            "Invalid value: {s:?}: must be between 1 and 15 characters"
        ));
    }
    let ok_chars = s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !ok_chars || s.starts_with('-') || s.ends_with('-') || s.contains("--") {
        return Some(format!(
            "Invalid value: {s:?}: must contain only lowercase alphanumerics or '-', must not \
             start or end with '-' and must not contain '--'"
        ));
    }
    if !s.bytes().any(|b| b.is_ascii_lowercase()) {
        return Some(format!(
            "Invalid value: {s:?}: must contain at least one letter (a-z)"
        ));
    }
    None
}

fn is_header_name(name: &str) -> bool {
    // RFC 7230 token characters.
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn http_get(http: &HTTPGetAction, field: &str) -> Result<HttpGetSpec, ProbeError> {
    let scheme = match http.scheme.as_deref() {
        None | Some("") | Some("HTTP") => "http",
        Some("HTTPS") => "https",
        Some(other) => {
            return Err(invalid(
                format!("{field}.scheme"),
                format!("Unsupported value: {other:?}: supported values: \"HTTP\", \"HTTPS\""),
            ));
        }
    };
    let port = port_ref(&http.port, &format!("{field}.port"))?;
    let mut headers = Vec::new();
    for (i, h) in http.http_headers.iter().flatten().enumerate() {
        if !is_header_name(&h.name) {
            return Err(invalid(
                format!("{field}.httpHeaders[{i}].name"),
                format!(
                    "Invalid value: {:?}: a valid HTTP header must consist of alphanumeric characters or '-'",
                    h.name
                ),
            ));
        }
        headers.push((h.name.clone(), h.value.clone()));
    }
    let path = match http.path.as_deref() {
        None | Some("") => "/".to_string(),
        Some(p) if p.starts_with('/') => p.to_string(),
        Some(p) => format!("/{p}"),
    };
    Ok(HttpGetSpec {
        scheme: scheme.to_string(),
        host: http.host.clone().filter(|h| !h.is_empty()),
        port,
        path,
        headers,
    })
}

fn tcp_socket(tcp: &TCPSocketAction, field: &str) -> Result<ProbeHandler, ProbeError> {
    Ok(ProbeHandler::TcpSocket {
        host: tcp.host.clone().filter(|h| !h.is_empty()),
        port: port_ref(&tcp.port, &format!("{field}.port"))?,
    })
}

/// The probes of one container, validated: `(type, spec)` for each probe it has. `field` is the
/// container's path, e.g. `spec.containers[0]`.
pub fn container_probes(
    container: &Container,
    field: &str,
) -> Vec<(ProbeType, Result<ProbeSpec, ProbeError>)> {
    let probes = [
        (ProbeType::Startup, "startupProbe", &container.startup_probe),
        (
            ProbeType::Liveness,
            "livenessProbe",
            &container.liveness_probe,
        ),
        (
            ProbeType::Readiness,
            "readinessProbe",
            &container.readiness_probe,
        ),
    ];
    probes
        .into_iter()
        .filter_map(|(t, name, p)| {
            p.as_ref()
                .map(|p| (t, probe_spec(p, t, &format!("{field}.{name}"))))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{
        ContainerPort, ExecAction, GRPCAction, HTTPHeader, SleepAction,
    };

    use super::*;

    fn exec_probe() -> Probe {
        Probe {
            exec: Some(ExecAction {
                command: Some(vec!["true".into()]),
            }),
            ..Default::default()
        }
    }

    fn err_field(r: Result<ProbeSpec, ProbeError>) -> String {
        match r {
            Err(ProbeError::Invalid { field, .. }) => field,
            other => panic!("expected an invalid-spec error, got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_the_references() {
        let spec = probe_spec(&exec_probe(), ProbeType::Liveness, "p").unwrap();
        assert_eq!(spec.initial_delay, Duration::ZERO);
        assert_eq!(spec.period, Duration::from_secs(10));
        assert_eq!(spec.timeout, Duration::from_secs(1));
        assert_eq!(spec.success_threshold, 1);
        assert_eq!(spec.failure_threshold, 3);
        assert_eq!(spec.termination_grace_period_seconds, None);
    }

    #[test]
    fn given_values_are_kept() {
        let probe = Probe {
            initial_delay_seconds: Some(5),
            period_seconds: Some(2),
            timeout_seconds: Some(4),
            success_threshold: Some(3),
            failure_threshold: Some(7),
            ..exec_probe()
        };
        let spec = probe_spec(&probe, ProbeType::Readiness, "p").unwrap();
        assert_eq!(spec.initial_delay, Duration::from_secs(5));
        assert_eq!(spec.period, Duration::from_secs(2));
        assert_eq!(spec.timeout, Duration::from_secs(4));
        assert_eq!(spec.success_threshold, 3);
        assert_eq!(spec.failure_threshold, 7);
    }

    #[test]
    fn invalid_specs_name_the_field() {
        let f = "spec.containers[0].livenessProbe";
        let cases: Vec<(Probe, ProbeType, &str)> = vec![
            (Probe::default(), ProbeType::Liveness, ""),
            (
                Probe {
                    tcp_socket: Some(TCPSocketAction {
                        port: IntOrString::Int(80),
                        ..Default::default()
                    }),
                    ..exec_probe()
                },
                ProbeType::Liveness,
                "",
            ),
            (
                Probe {
                    period_seconds: Some(-1),
                    ..exec_probe()
                },
                ProbeType::Liveness,
                ".periodSeconds",
            ),
            (
                Probe {
                    initial_delay_seconds: Some(-3),
                    ..exec_probe()
                },
                ProbeType::Readiness,
                ".initialDelaySeconds",
            ),
            (
                Probe {
                    success_threshold: Some(2),
                    ..exec_probe()
                },
                ProbeType::Liveness,
                ".successThreshold",
            ),
            (
                Probe {
                    success_threshold: Some(2),
                    ..exec_probe()
                },
                ProbeType::Startup,
                ".successThreshold",
            ),
            (
                Probe {
                    termination_grace_period_seconds: Some(0),
                    ..exec_probe()
                },
                ProbeType::Liveness,
                ".terminationGracePeriodSeconds",
            ),
            (
                Probe {
                    termination_grace_period_seconds: Some(5),
                    ..exec_probe()
                },
                ProbeType::Readiness,
                ".terminationGracePeriodSeconds",
            ),
            (
                Probe {
                    exec: Some(ExecAction { command: None }),
                    ..Default::default()
                },
                ProbeType::Liveness,
                ".exec.command",
            ),
            (
                Probe {
                    http_get: Some(HTTPGetAction {
                        port: IntOrString::Int(70000),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                ProbeType::Liveness,
                ".httpGet.port",
            ),
            (
                Probe {
                    http_get: Some(HTTPGetAction {
                        port: IntOrString::String("Not_A_Name".into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                ProbeType::Liveness,
                ".httpGet.port",
            ),
            (
                Probe {
                    http_get: Some(HTTPGetAction {
                        port: IntOrString::Int(80),
                        scheme: Some("FTP".into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                ProbeType::Liveness,
                ".httpGet.scheme",
            ),
            (
                Probe {
                    http_get: Some(HTTPGetAction {
                        port: IntOrString::Int(80),
                        http_headers: Some(vec![HTTPHeader {
                            name: "bad header".into(),
                            value: "x".into(),
                        }]),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                ProbeType::Liveness,
                ".httpGet.httpHeaders[0].name",
            ),
            (
                Probe {
                    tcp_socket: Some(TCPSocketAction {
                        port: IntOrString::Int(0),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                ProbeType::Readiness,
                ".tcpSocket.port",
            ),
            (
                Probe {
                    grpc: Some(GRPCAction {
                        port: 0,
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                ProbeType::Readiness,
                ".grpc.port",
            ),
        ];
        for (probe, t, suffix) in cases {
            assert_eq!(
                err_field(probe_spec(&probe, t, f)),
                format!("{f}{suffix}"),
                "{probe:?}"
            );
        }
    }

    #[test]
    fn http_get_defaults_and_names() {
        let probe = Probe {
            http_get: Some(HTTPGetAction {
                port: IntOrString::String("web".into()),
                path: Some("healthz".into()),
                scheme: Some("HTTPS".into()),
                http_headers: Some(vec![HTTPHeader {
                    name: "X-Probe".into(),
                    value: "1".into(),
                }]),
                host: Some(String::new()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let spec = probe_spec(&probe, ProbeType::Readiness, "p").unwrap();
        let ProbeHandler::HttpGet(http) = spec.handler else {
            panic!("http handler")
        };
        assert_eq!(http.scheme, "https");
        assert_eq!(http.path, "/healthz");
        assert_eq!(http.host, None);
        assert_eq!(http.headers, vec![("X-Probe".into(), "1".into())]);
        let container = Container {
            name: "app".into(),
            ports: Some(vec![ContainerPort {
                name: Some("web".into()),
                container_port: 8080,
                ..Default::default()
            }]),
            ..Default::default()
        };
        assert_eq!(http.port.resolve(&container), Ok(8080));
        assert_eq!(PortRef::Name("81".into()).resolve(&container), Ok(81));
        assert!(PortRef::Name("db".into()).resolve(&container).is_err());
    }

    #[test]
    fn hooks_validate() {
        let sleep = LifecycleHandler {
            sleep: Some(SleepAction { seconds: 3 }),
            ..Default::default()
        };
        assert_eq!(
            hook_spec(&sleep, "h").unwrap(),
            HookSpec::Sleep(Duration::from_secs(3))
        );
        let bad = LifecycleHandler {
            sleep: Some(SleepAction { seconds: -1 }),
            ..Default::default()
        };
        assert!(matches!(
            hook_spec(&bad, "h"),
            Err(ProbeError::Invalid { field, .. }) if field == "h.sleep.seconds"
        ));
        assert!(matches!(
            hook_spec(&LifecycleHandler::default(), "h"),
            Err(ProbeError::Invalid { field, .. }) if field == "h"
        ));
    }
}
