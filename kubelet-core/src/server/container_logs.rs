//! `/containerLogs/{namespace}/{pod}/{container}`: a container's output from the CRI log
//! files, through [`crate::logs`], answered as the reference's `getContainerLogs`.

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

use super::routes::RouteState;
use crate::logs::{ContainerRunning, LogOptions, log_file_for, open_container_log, pod_log_dir};
use crate::runtime::ContainerState;

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message.into(),
    )
        .into_response()
}

/// The status of `container` among the pod's containers of every kind.
fn container_status<'a>(pod: &'a Pod, container: &str) -> Option<&'a ContainerStatus> {
    let status = pod.status.as_ref()?;
    [
        &status.container_statuses,
        &status.init_container_statuses,
        &status.ephemeral_container_statuses,
    ]
    .into_iter()
    .flatten()
    .flatten()
    .find(|s| s.name == container)
}

fn has_container(pod: &Pod, container: &str) -> bool {
    pod.spec.as_ref().is_some_and(|spec| {
        spec.containers.iter().any(|c| c.name == container)
            || spec
                .init_containers
                .iter()
                .flatten()
                .any(|c| c.name == container)
            || spec
                .ephemeral_containers
                .iter()
                .flatten()
                .any(|c| c.name == container)
    })
}

/// The runtime's ID from a status `containerID` (`<runtime>://<id>`).
fn runtime_id(container_id: &str) -> &str {
    container_id
        .split_once("://")
        .map_or(container_id, |(_, id)| id)
}

/// Which run's file a request reads, and the runtime ID of the container a follower waits on
/// (none when it is not running).
#[derive(Debug, PartialEq, Eq)]
struct Run {
    previous_file: bool,
    follow_container: Option<String>,
}

/// Why a container has no logs to read, in the reference's words (the message is
/// `<prefix> "<container>" in pod "<pod>"<suffix>`).
#[derive(Debug, PartialEq, Eq)]
enum NoLogs {
    NoPrevious,
    Waiting(String),
    NotStarted,
}

impl NoLogs {
    fn prefix(&self) -> &'static str {
        match self {
            NoLogs::NoPrevious => "previous terminated container",
            _ => "container",
        }
    }
}

impl std::fmt::Display for NoLogs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoLogs::NoPrevious => f.write_str(" not found"),
            NoLogs::Waiting(why) => write!(f, " is waiting to start: {why}"),
            NoLogs::NotStarted => f.write_str(" is waiting to start - no logs yet"),
        }
    }
}

/// The reference's `validateContainerLogStatus` over the pod status. The newest file is the
/// current run's; a container waiting to restart (crash loop back-off) has no run of its own
/// yet, so its last run, the newest file, is what both "current" and "previous" read, as
/// the reference reads lastState's container for either.
fn pick_run(status: Option<&ContainerStatus>, previous: bool) -> Result<Run, NoLogs> {
    let state = status.and_then(|s| s.state.as_ref());
    let running = state.is_some_and(|s| s.running.is_some());
    let terminated = state.is_some_and(|s| s.terminated.is_some());
    let last_terminated = status
        .and_then(|s| s.last_state.as_ref())
        .and_then(|s| s.terminated.as_ref())
        .is_some();
    let exited = |previous_file| {
        Ok(Run {
            previous_file,
            follow_container: None,
        })
    };
    if previous {
        return if last_terminated {
            exited(running || terminated)
        } else {
            Err(NoLogs::NoPrevious)
        };
    }
    if running {
        return Ok(Run {
            previous_file: false,
            follow_container: status
                .and_then(|s| s.container_id.as_deref())
                .map(|id| runtime_id(id).to_string()),
        });
    }
    if terminated || last_terminated {
        return exited(false);
    }
    match state.and_then(|s| s.waiting.as_ref()) {
        // The reference's words for the common pending failures.
        Some(waiting) => Err(NoLogs::Waiting(
            match waiting.reason.as_deref().unwrap_or_default() {
                "ErrImagePull" => "image can't be pulled".to_string(),
                "ImagePullBackOff" => "trying and failing to pull image".to_string(),
                other => other.to_string(),
            },
        )),
        None => Err(NoLogs::NotStarted),
    }
}

pub(crate) async fn container_logs(
    State(state): State<RouteState>,
    Path((namespace, pod_name, container)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
) -> Response {
    use tracing::Instrument;
    let span = tracing::info_span!(
        "container_logs",
        pod = %format!("{namespace}/{pod_name}"),
        container = %container
    );
    serve(state, namespace, pod_name, container, query)
        .instrument(span)
        .await
}

async fn serve(
    state: RouteState,
    namespace: String,
    pod_name: String,
    container: String,
    query: Option<String>,
) -> Response {
    let options = match LogOptions::from_query(query.as_deref().unwrap_or("")) {
        Ok(o) => o,
        Err(e) => {
            tracing::debug!(error = %e, "log options refused");
            let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
            let body = if status == StatusCode::BAD_REQUEST {
                r#"{"message": "Unable to decode query."}"#
            } else {
                r#"{"message": "Invalid request."}"#
            };
            return error(status, body);
        }
    };
    let pods = state.handles.kubelet.pods();
    let Some(pod) = pods.iter().find(|p| {
        p.metadata.namespace.as_deref() == Some(namespace.as_str())
            && p.metadata.name.as_deref() == Some(pod_name.as_str())
    }) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("pod {pod_name:?} does not exist"),
        );
    };
    if !has_container(pod, &container) {
        return error(
            StatusCode::NOT_FOUND,
            format!("container {container:?} not found in pod {pod_name:?}"),
        );
    }
    let status = container_status(pod, &container);
    let restart_count = status.map_or(0, |s| u32::try_from(s.restart_count).unwrap_or(0));
    let run = match pick_run(status, options.previous) {
        Ok(run) => run,
        Err(why) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("{} {container:?} in pod {pod_name:?}{why}", why.prefix()),
            );
        }
    };
    let running = match run.follow_container {
        Some(id) => {
            let runtime = state.handles.runtime.clone();
            ContainerRunning::new(move || {
                let runtime = runtime.clone();
                let id = id.clone();
                async move {
                    runtime
                        .container_status(&id)
                        .await
                        .is_ok_and(|s| s.state == ContainerState::Running)
                }
            })
        }
        None => ContainerRunning::exited(),
    };

    let dir = pod_log_dir(
        &state.pod_logs_root,
        &namespace,
        &pod_name,
        pod.metadata.uid.as_deref().unwrap_or_default(),
    );
    let path = match log_file_for(&dir, &container, restart_count, run.previous_file) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let follow = options.follow;
    match open_container_log(path, options, running).await {
        Ok(stream) => {
            tracing::debug!(follow, "streaming container logs");
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                Body::from_stream(stream),
            )
                .into_response()
        }
        Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{
        ContainerState as ApiState, ContainerStateRunning, ContainerStateTerminated,
        ContainerStateWaiting,
    };

    use super::*;

    fn status(state: ApiState, last_terminated: bool) -> ContainerStatus {
        ContainerStatus {
            name: "app".into(),
            container_id: Some("containerd://abc".into()),
            state: Some(state),
            last_state: last_terminated.then(|| ApiState {
                terminated: Some(ContainerStateTerminated::default()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn running() -> ApiState {
        ApiState {
            running: Some(ContainerStateRunning::default()),
            ..Default::default()
        }
    }

    fn waiting(reason: &str) -> ApiState {
        ApiState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn runs_as_the_reference_picks_them() {
        let follow = |id: &str| Run {
            previous_file: false,
            follow_container: Some(id.into()),
        };
        let exited = |previous_file| Run {
            previous_file,
            follow_container: None,
        };
        assert_eq!(
            pick_run(Some(&status(running(), false)), false),
            Ok(follow("abc"))
        );
        assert_eq!(
            pick_run(Some(&status(running(), true)), true),
            Ok(exited(true))
        );
        assert_eq!(
            pick_run(Some(&status(running(), false)), true),
            Err(NoLogs::NoPrevious)
        );
        // Crash loop back-off: the last run is the newest file, current or previous.
        let backoff = status(waiting("CrashLoopBackOff"), true);
        assert_eq!(pick_run(Some(&backoff), false), Ok(exited(false)));
        assert_eq!(pick_run(Some(&backoff), true), Ok(exited(false)));
        assert_eq!(
            pick_run(Some(&status(waiting("ImagePullBackOff"), false)), false),
            Err(NoLogs::Waiting("trying and failing to pull image".into()))
        );
        assert_eq!(pick_run(None, false), Err(NoLogs::NotStarted));
        assert_eq!(
            format!("{}", NoLogs::Waiting("ContainerCreating".into())),
            " is waiting to start: ContainerCreating"
        );
    }
}
