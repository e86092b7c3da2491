//! [`CriRuntime`]: the `Runtime` seam over a CRI v1 runtime's unix socket.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use hyper_util::rt::TokioIo;
use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use kubelet_core::RuntimeError;
use kubelet_core::runtime::{
    AuthConfig, ContainerConfig, ContainerStats, ContainerStatus, ExecResult, ImageFsInfo,
    ImageInfo, ListFilter, PodSandboxConfig, PodSandboxStatus, Runtime, RuntimeCondition,
    RuntimeResult, RuntimeStatus, RuntimeVersion, StreamOptions,
};
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};
use tower::service_fn;

use crate::convert;
use crate::error::{CriError, pull_status_to_error, status_to_error, timeout_error};

/// The reference kubelet's `runtimeRequestTimeout` default.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Default bound of one PullImage call. The reference kubelet bounds pulls by progress
/// rather than by a total; a total this long only stops a pull that hangs for good.
pub const DEFAULT_IMAGE_PULL_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// The reference kubelet's maximum gRPC message size, both ways.
const MAX_MESSAGE_SIZE: usize = 16 * 1024 * 1024;
/// The API version the kubelet announces in Version requests.
const KUBE_RUNTIME_API_VERSION: &str = "0.1.0";

/// Settings of a [`CriRuntime`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CriOptions {
    /// Bound of every call but PullImage (the reference's `runtimeRequestTimeout`, 2 min).
    /// Calls that wait for something by design get more, as in the reference kubelet:
    /// RunPodSandbox twice this, StopContainer and ExecSync their own timeout plus this.
    pub request_timeout: Duration,
    /// Bound of one PullImage call.
    pub image_pull_timeout: Duration,
    /// Ask for verbose sandbox status, so that [`PodSandboxStatus::netns_path`] is filled
    /// where the runtime reports it (containerd does). Costs the runtime some JSON work.
    pub verbose_sandbox_status: bool,
}

impl Default for CriOptions {
    fn default() -> Self {
        Self {
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            image_pull_timeout: DEFAULT_IMAGE_PULL_TIMEOUT,
            verbose_sandbox_status: false,
        }
    }
}

/// A container runtime reached over CRI v1 on a unix socket (containerd, CRI-O).
///
/// Cheap to clone: clones share one HTTP/2 connection, which reconnects by itself when the
/// runtime restarts.
#[derive(Debug, Clone)]
pub struct CriRuntime {
    endpoint: String,
    options: CriOptions,
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
}

/// The socket path of a CRI endpoint: `unix:///path`, `unix:/path` or a bare absolute path.
pub fn socket_path(endpoint: &str) -> Result<PathBuf, CriError> {
    let invalid = |reason: &str| CriError::InvalidEndpoint {
        endpoint: endpoint.to_string(),
        reason: reason.to_string(),
    };
    let path = if let Some(rest) = endpoint.strip_prefix("unix://") {
        rest
    } else if let Some(rest) = endpoint.strip_prefix("unix:") {
        rest
    } else if endpoint.contains("://") {
        return Err(invalid("only unix sockets are supported"));
    } else {
        endpoint
    };
    if path.is_empty() {
        return Err(invalid("empty socket path"));
    }
    if !path.starts_with('/') {
        return Err(invalid("socket path must be absolute"));
    }
    Ok(PathBuf::from(path))
}

fn request<T>(message: T, timeout: Duration) -> tonic::Request<T> {
    let mut req = tonic::Request::new(message);
    // The runtime learns the deadline too, so that it can give up on its side.
    req.set_timeout(timeout);
    req
}

/// A whole-second CRI timeout for `d`, rounded up so that a sub-second timeout does not
/// become 0 ("no timeout" to the runtime).
fn whole_seconds(d: Duration) -> i64 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    i64::try_from(secs).unwrap_or(i64::MAX)
}

/// Run one gRPC call under `timeout` and map its failure.
async fn call<T, F>(op: &str, object: &str, timeout: Duration, fut: F) -> RuntimeResult<T>
where
    F: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    tracing::trace!(op, object, "CRI call");
    match tokio::time::timeout(timeout, fut).await {
        Err(_) => {
            let err = timeout_error(op, object, timeout);
            tracing::debug!(%err, "CRI call timed out");
            Err(err)
        }
        Ok(Err(status)) => {
            let err = status_to_error(op, object, &status);
            tracing::debug!(%err, "CRI call failed");
            Err(err)
        }
        Ok(Ok(resp)) => Ok(resp.into_inner()),
    }
}

/// Treat "already gone" as success, for the calls CRI defines as idempotent.
fn ignore_not_found(result: RuntimeResult<()>) -> RuntimeResult<()> {
    match result {
        Err(e) if e.is_not_found() => Ok(()),
        other => other,
    }
}

impl CriRuntime {
    /// Connect to the runtime at `endpoint` and check that it speaks CRI v1.
    pub async fn connect(endpoint: &str, options: CriOptions) -> Result<CriRuntime, CriError> {
        let path = socket_path(endpoint)?;
        // The URI is required by tonic but unused: the connector always dials the socket.
        let channel_endpoint =
            Endpoint::from_static("http://cri.local").connect_timeout(options.request_timeout);
        let connector = service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        });
        let channel = match tokio::time::timeout(
            options.request_timeout,
            channel_endpoint.connect_with_connector(connector),
        )
        .await
        {
            Err(_) => {
                return Err(CriError::ConnectTimeout {
                    endpoint: endpoint.to_string(),
                    timeout: options.request_timeout,
                });
            }
            Ok(Err(source)) => {
                return Err(CriError::Connect {
                    endpoint: endpoint.to_string(),
                    source,
                });
            }
            Ok(Ok(channel)) => channel,
        };
        let runtime = RuntimeServiceClient::new(channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE);
        let images = ImageServiceClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE);
        let this = CriRuntime {
            endpoint: endpoint.to_string(),
            options,
            runtime,
            images,
        };
        // Fail early on a socket that is not a CRI v1 runtime (e.g. a v1alpha2-only one).
        let version = this.version().await.map_err(|source| CriError::Runtime {
            endpoint: endpoint.to_string(),
            source,
        })?;
        tracing::info!(
            endpoint,
            runtime = %version.runtime_name,
            version = %version.runtime_version,
            api = %version.runtime_api_version,
            "connected to CRI runtime"
        );
        Ok(this)
    }

    /// The endpoint this runtime was connected with.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The options in effect.
    pub fn options(&self) -> &CriOptions {
        &self.options
    }

    fn timeout(&self) -> Duration {
        self.options.request_timeout
    }

    async fn sandbox_id_of(&self, container_id: &str) -> RuntimeResult<String> {
        let mut client = self.runtime.clone();
        let req = cri::ListContainersRequest {
            filter: Some(cri::ContainerFilter {
                id: container_id.to_string(),
                ..Default::default()
            }),
        };
        let object = format!("container {container_id}");
        let resp = call(
            "ListContainers",
            &object,
            self.timeout(),
            client.list_containers(request(req, self.timeout())),
        )
        .await?;
        Ok(resp
            .containers
            .into_iter()
            .find(|c| c.id == container_id)
            .map(|c| c.pod_sandbox_id)
            .unwrap_or_default())
    }
}

#[async_trait]
impl Runtime for CriRuntime {
    async fn version(&self) -> RuntimeResult<RuntimeVersion> {
        let mut client = self.runtime.clone();
        let req = cri::VersionRequest {
            version: KUBE_RUNTIME_API_VERSION.to_string(),
        };
        let resp = call(
            "Version",
            &self.endpoint,
            self.timeout(),
            client.version(request(req, self.timeout())),
        )
        .await?;
        Ok(RuntimeVersion {
            runtime_name: resp.runtime_name,
            runtime_version: resp.runtime_version,
            runtime_api_version: resp.runtime_api_version,
        })
    }

    async fn status(&self) -> RuntimeResult<RuntimeStatus> {
        let mut client = self.runtime.clone();
        let req = cri::StatusRequest { verbose: false };
        let resp = call(
            "Status",
            &self.endpoint,
            self.timeout(),
            client.status(request(req, self.timeout())),
        )
        .await?;
        // A runtime that answers without a status reports no conditions; the kubelet then
        // treats both required conditions as not holding, as the reference does.
        let conditions = resp
            .status
            .map(|s| s.conditions)
            .unwrap_or_default()
            .into_iter()
            .map(|c| RuntimeCondition {
                type_: c.r#type,
                status: c.status,
                reason: c.reason,
                message: c.message,
            })
            .collect();
        Ok(RuntimeStatus { conditions })
    }

    async fn run_pod_sandbox(&self, config: &PodSandboxConfig) -> RuntimeResult<String> {
        let mut client = self.runtime.clone();
        // Sandbox creation includes network setup; the reference gives it twice the timeout.
        let timeout = self.timeout().saturating_mul(2);
        let md = &config.metadata;
        let object = format!("pod {}/{} ({})", md.namespace, md.name, md.uid);
        let req = cri::RunPodSandboxRequest {
            config: Some(convert::sandbox_config(config)),
            runtime_handler: config.runtime_handler.clone(),
        };
        let resp = call(
            "RunPodSandbox",
            &object,
            timeout,
            client.run_pod_sandbox(request(req, timeout)),
        )
        .await?;
        if resp.pod_sandbox_id.is_empty() {
            return Err(RuntimeError::Other(format!(
                "RunPodSandbox {object}: runtime returned an empty sandbox ID"
            )));
        }
        Ok(resp.pod_sandbox_id)
    }

    async fn stop_pod_sandbox(&self, sandbox_id: &str) -> RuntimeResult<()> {
        let mut client = self.runtime.clone();
        let req = cri::StopPodSandboxRequest {
            pod_sandbox_id: sandbox_id.to_string(),
        };
        let object = format!("sandbox {sandbox_id}");
        ignore_not_found(
            call(
                "StopPodSandbox",
                &object,
                self.timeout(),
                client.stop_pod_sandbox(request(req, self.timeout())),
            )
            .await
            .map(drop),
        )
    }

    async fn remove_pod_sandbox(&self, sandbox_id: &str) -> RuntimeResult<()> {
        let mut client = self.runtime.clone();
        let req = cri::RemovePodSandboxRequest {
            pod_sandbox_id: sandbox_id.to_string(),
        };
        let object = format!("sandbox {sandbox_id}");
        ignore_not_found(
            call(
                "RemovePodSandbox",
                &object,
                self.timeout(),
                client.remove_pod_sandbox(request(req, self.timeout())),
            )
            .await
            .map(drop),
        )
    }

    async fn pod_sandbox_status(&self, sandbox_id: &str) -> RuntimeResult<PodSandboxStatus> {
        let mut client = self.runtime.clone();
        let req = cri::PodSandboxStatusRequest {
            pod_sandbox_id: sandbox_id.to_string(),
            verbose: self.options.verbose_sandbox_status,
        };
        let object = format!("sandbox {sandbox_id}");
        let resp = call(
            "PodSandboxStatus",
            &object,
            self.timeout(),
            client.pod_sandbox_status(request(req, self.timeout())),
        )
        .await?;
        let status = resp.status.ok_or_else(|| {
            RuntimeError::Other(format!(
                "PodSandboxStatus {object}: no status in the answer"
            ))
        })?;
        Ok(convert::sandbox_from_status(status, &resp.info))
    }

    async fn list_pod_sandboxes(
        &self,
        filter: &ListFilter,
    ) -> RuntimeResult<Vec<PodSandboxStatus>> {
        let mut client = self.runtime.clone();
        let req = cri::ListPodSandboxRequest {
            filter: Some(cri::PodSandboxFilter {
                label_selector: convert::label_selector(filter),
                ..Default::default()
            }),
        };
        let resp = call(
            "ListPodSandbox",
            "sandboxes",
            self.timeout(),
            client.list_pod_sandbox(request(req, self.timeout())),
        )
        .await?;
        Ok(resp
            .items
            .into_iter()
            .map(convert::sandbox_from_list)
            .collect())
    }

    async fn create_container(
        &self,
        sandbox_id: &str,
        config: &ContainerConfig,
        sandbox_config: &PodSandboxConfig,
    ) -> RuntimeResult<String> {
        let mut client = self.runtime.clone();
        let object = format!("container {} in sandbox {sandbox_id}", config.metadata.name);
        let req = cri::CreateContainerRequest {
            pod_sandbox_id: sandbox_id.to_string(),
            config: Some(convert::container_config(config)),
            sandbox_config: Some(convert::sandbox_config(sandbox_config)),
        };
        let resp = call(
            "CreateContainer",
            &object,
            self.timeout(),
            client.create_container(request(req, self.timeout())),
        )
        .await?;
        if resp.container_id.is_empty() {
            return Err(RuntimeError::Other(format!(
                "CreateContainer {object}: runtime returned an empty container ID"
            )));
        }
        Ok(resp.container_id)
    }

    async fn start_container(&self, container_id: &str) -> RuntimeResult<()> {
        let mut client = self.runtime.clone();
        let req = cri::StartContainerRequest {
            container_id: container_id.to_string(),
        };
        let object = format!("container {container_id}");
        call(
            "StartContainer",
            &object,
            self.timeout(),
            client.start_container(request(req, self.timeout())),
        )
        .await
        .map(drop)
    }

    async fn stop_container(&self, container_id: &str, timeout: Duration) -> RuntimeResult<()> {
        let mut client = self.runtime.clone();
        let req = cri::StopContainerRequest {
            container_id: container_id.to_string(),
            timeout: whole_seconds(timeout),
        };
        // The grace period plus the usual bound, so that the runtime has time to clean up
        // after the SIGKILL.
        let bound = timeout.saturating_add(self.timeout());
        let object = format!("container {container_id}");
        ignore_not_found(
            call(
                "StopContainer",
                &object,
                bound,
                client.stop_container(request(req, bound)),
            )
            .await
            .map(drop),
        )
    }

    async fn remove_container(&self, container_id: &str) -> RuntimeResult<()> {
        let mut client = self.runtime.clone();
        let req = cri::RemoveContainerRequest {
            container_id: container_id.to_string(),
        };
        let object = format!("container {container_id}");
        ignore_not_found(
            call(
                "RemoveContainer",
                &object,
                self.timeout(),
                client.remove_container(request(req, self.timeout())),
            )
            .await
            .map(drop),
        )
    }

    async fn container_status(&self, container_id: &str) -> RuntimeResult<ContainerStatus> {
        let mut client = self.runtime.clone();
        let req = cri::ContainerStatusRequest {
            container_id: container_id.to_string(),
            verbose: false,
        };
        let object = format!("container {container_id}");
        // CRI's container status does not name the sandbox; the list entry does.
        let (status, sandbox_id) = tokio::join!(
            call(
                "ContainerStatus",
                &object,
                self.timeout(),
                client.container_status(request(req, self.timeout())),
            ),
            self.sandbox_id_of(container_id),
        );
        let status = status?.status.ok_or_else(|| {
            RuntimeError::Other(format!("ContainerStatus {object}: no status in the answer"))
        })?;
        Ok(convert::container_from_status(
            status,
            sandbox_id.unwrap_or_default(),
        ))
    }

    async fn list_containers(&self, filter: &ListFilter) -> RuntimeResult<Vec<ContainerStatus>> {
        let mut client = self.runtime.clone();
        let req = cri::ListContainersRequest {
            filter: Some(cri::ContainerFilter {
                label_selector: convert::label_selector(filter),
                ..Default::default()
            }),
        };
        let resp = call(
            "ListContainers",
            "containers",
            self.timeout(),
            client.list_containers(request(req, self.timeout())),
        )
        .await?;
        Ok(resp
            .containers
            .into_iter()
            .map(convert::container_from_list)
            .collect())
    }

    async fn image_status(&self, image: &str) -> RuntimeResult<Option<ImageInfo>> {
        let mut client = self.images.clone();
        let req = cri::ImageStatusRequest {
            image: Some(convert::image_spec(image)),
            verbose: false,
        };
        let object = format!("image {image}");
        match call(
            "ImageStatus",
            &object,
            self.timeout(),
            client.image_status(request(req, self.timeout())),
        )
        .await
        {
            // CRI answers an absent image with an empty status; some runtimes with NotFound.
            Ok(resp) => Ok(resp
                .image
                .filter(|i| !i.id.is_empty())
                .map(convert::image_info)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn pull_image(&self, image: &str, auth: Option<&AuthConfig>) -> RuntimeResult<String> {
        let mut client = self.images.clone();
        let timeout = self.options.image_pull_timeout;
        let req = cri::PullImageRequest {
            image: Some(convert::image_spec(image)),
            auth: auth.map(convert::auth_config),
            sandbox_config: None,
        };
        tracing::debug!(image, "pulling image");
        match tokio::time::timeout(timeout, client.pull_image(request(req, timeout))).await {
            Err(_) => Err(RuntimeError::ImagePull(format!(
                "PullImage image {image}: no answer within {timeout:?}"
            ))),
            Ok(Err(status)) => Err(pull_status_to_error(image, &status)),
            Ok(Ok(resp)) => {
                let image_ref = resp.into_inner().image_ref;
                if image_ref.is_empty() {
                    return Err(RuntimeError::ImagePull(format!(
                        "PullImage image {image}: runtime returned an empty image reference"
                    )));
                }
                Ok(image_ref)
            }
        }
    }

    async fn list_images(&self) -> RuntimeResult<Vec<ImageInfo>> {
        let mut client = self.images.clone();
        let req = cri::ListImagesRequest { filter: None };
        let resp = call(
            "ListImages",
            "images",
            self.timeout(),
            client.list_images(request(req, self.timeout())),
        )
        .await?;
        Ok(resp.images.into_iter().map(convert::image_info).collect())
    }

    async fn image_fs_info(&self) -> RuntimeResult<Vec<ImageFsInfo>> {
        let mut client = self.images.clone();
        let resp = call(
            "ImageFsInfo",
            "images",
            self.timeout(),
            client.image_fs_info(request(cri::ImageFsInfoRequest {}, self.timeout())),
        )
        .await?;
        Ok(resp
            .image_filesystems
            .into_iter()
            .map(|fs| ImageFsInfo {
                mountpoint: fs.fs_id.map(|id| id.mountpoint).unwrap_or_default(),
                used_bytes: fs.used_bytes.map(|v| v.value),
                inodes_used: fs.inodes_used.map(|v| v.value),
            })
            .collect())
    }

    async fn remove_image(&self, image: &str) -> RuntimeResult<()> {
        let mut client = self.images.clone();
        let req = cri::RemoveImageRequest {
            image: Some(convert::image_spec(image)),
        };
        let object = format!("image {image}");
        ignore_not_found(
            call(
                "RemoveImage",
                &object,
                self.timeout(),
                client.remove_image(request(req, self.timeout())),
            )
            .await
            .map(drop),
        )
    }

    async fn exec_stream(
        &self,
        container_id: &str,
        cmd: &[String],
        opts: StreamOptions,
    ) -> RuntimeResult<String> {
        let mut client = self.runtime.clone();
        let req = cri::ExecRequest {
            container_id: container_id.to_string(),
            cmd: cmd.to_vec(),
            tty: opts.tty,
            stdin: opts.stdin,
            stdout: opts.stdout,
            stderr: opts.stderr,
        };
        let object = format!("container {container_id}");
        let t = self.timeout();
        let resp = call("Exec", &object, t, client.exec(request(req, t))).await?;
        Ok(resp.url)
    }

    async fn attach_stream(
        &self,
        container_id: &str,
        opts: StreamOptions,
    ) -> RuntimeResult<String> {
        let mut client = self.runtime.clone();
        let req = cri::AttachRequest {
            container_id: container_id.to_string(),
            tty: opts.tty,
            stdin: opts.stdin,
            stdout: opts.stdout,
            stderr: opts.stderr,
        };
        let object = format!("container {container_id}");
        let t = self.timeout();
        let resp = call("Attach", &object, t, client.attach(request(req, t))).await?;
        Ok(resp.url)
    }

    async fn port_forward_stream(&self, sandbox_id: &str, ports: &[i32]) -> RuntimeResult<String> {
        let mut client = self.runtime.clone();
        let req = cri::PortForwardRequest {
            pod_sandbox_id: sandbox_id.to_string(),
            port: ports.to_vec(),
        };
        let object = format!("sandbox {sandbox_id}");
        let t = self.timeout();
        let resp = call(
            "PortForward",
            &object,
            t,
            client.port_forward(request(req, t)),
        )
        .await?;
        Ok(resp.url)
    }

    async fn reopen_container_log(&self, container_id: &str) -> RuntimeResult<()> {
        let mut client = self.runtime.clone();
        let req = cri::ReopenContainerLogRequest {
            container_id: container_id.to_string(),
        };
        let object = format!("container {container_id}");
        let t = self.timeout();
        call(
            "ReopenContainerLog",
            &object,
            t,
            client.reopen_container_log(request(req, t)),
        )
        .await?;
        Ok(())
    }

    async fn exec_sync(
        &self,
        container_id: &str,
        cmd: &[String],
        timeout: Duration,
    ) -> RuntimeResult<ExecResult> {
        let mut client = self.runtime.clone();
        let req = cri::ExecSyncRequest {
            container_id: container_id.to_string(),
            cmd: cmd.to_vec(),
            timeout: whole_seconds(timeout),
        };
        // The runtime enforces `timeout` itself and answers DeadlineExceeded; the gRPC bound
        // is longer, as in the reference kubelet, so that the runtime's answer arrives
        // rather than ours. A zero timeout means none to the runtime: the usual bound then.
        let bound = timeout.saturating_add(self.timeout());
        let object = format!("container {container_id}");
        let resp = call(
            "ExecSync",
            &object,
            bound,
            client.exec_sync(request(req, bound)),
        )
        .await?;
        Ok(ExecResult {
            stdout: resp.stdout,
            stderr: resp.stderr,
            exit_code: resp.exit_code,
        })
    }

    async fn container_stats(&self, container_id: &str) -> RuntimeResult<Option<ContainerStats>> {
        let mut client = self.runtime.clone();
        let req = cri::ContainerStatsRequest {
            container_id: container_id.to_string(),
        };
        let object = format!("container {container_id}");
        let resp = call(
            "ContainerStats",
            &object,
            self.timeout(),
            client.container_stats(request(req, self.timeout())),
        )
        .await?;
        Ok(resp.stats.map(convert::container_stats))
    }

    async fn list_container_stats(&self) -> RuntimeResult<Vec<ContainerStats>> {
        let mut client = self.runtime.clone();
        let req = cri::ListContainerStatsRequest { filter: None };
        let resp = call(
            "ListContainerStats",
            "containers",
            self.timeout(),
            client.list_container_stats(request(req, self.timeout())),
        )
        .await?;
        Ok(resp
            .stats
            .into_iter()
            .map(convert::container_stats)
            .collect())
    }

    async fn list_pod_sandbox_stats(
        &self,
    ) -> RuntimeResult<Vec<kubelet_core::runtime::PodSandboxStats>> {
        let mut client = self.runtime.clone();
        let req = cri::ListPodSandboxStatsRequest { filter: None };
        // A runtime without it (containerd before 1.7) answers Unimplemented, which
        // becomes RuntimeError::Unsupported.
        let resp = call(
            "ListPodSandboxStats",
            "pod sandboxes",
            self.timeout(),
            client.list_pod_sandbox_stats(request(req, self.timeout())),
        )
        .await?;
        Ok(resp
            .stats
            .into_iter()
            .map(convert::pod_sandbox_stats)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse() {
        assert_eq!(
            socket_path("unix:///run/containerd/containerd.sock").unwrap(),
            PathBuf::from("/run/containerd/containerd.sock")
        );
        assert_eq!(
            socket_path("unix:/run/crio/crio.sock").unwrap(),
            PathBuf::from("/run/crio/crio.sock")
        );
        assert_eq!(
            socket_path("/tmp/x.sock").unwrap(),
            PathBuf::from("/tmp/x.sock")
        );
        for bad in ["tcp://127.0.0.1:1234", "", "unix://", "relative.sock"] {
            assert!(
                matches!(socket_path(bad), Err(CriError::InvalidEndpoint { .. })),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn timeouts_round_up_to_whole_seconds() {
        assert_eq!(whole_seconds(Duration::ZERO), 0);
        assert_eq!(whole_seconds(Duration::from_millis(1)), 1);
        assert_eq!(whole_seconds(Duration::from_secs(30)), 30);
        assert_eq!(whole_seconds(Duration::from_millis(30_001)), 31);
    }

    #[test]
    fn default_options_match_the_reference() {
        let o = CriOptions::default();
        assert_eq!(o.request_timeout, Duration::from_secs(120));
        assert!(o.image_pull_timeout > o.request_timeout);
        assert!(!o.verbose_sandbox_status);
    }

    #[tokio::test]
    async fn connect_to_missing_socket_fails_with_endpoint() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("none.sock");
        let endpoint = format!("unix://{}", sock.display());
        let options = CriOptions {
            request_timeout: Duration::from_secs(5),
            ..Default::default()
        };
        let err = CriRuntime::connect(&endpoint, options).await.unwrap_err();
        assert!(matches!(err, CriError::Connect { .. }), "{err:?}");
        assert!(err.to_string().contains("none.sock"), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn calls_time_out_as_deadline_exceeded() {
        let never = std::future::pending::<Result<tonic::Response<()>, tonic::Status>>();
        let err = call("Version", "runtime", Duration::from_secs(120), never)
            .await
            .unwrap_err();
        assert!(matches!(err, RuntimeError::DeadlineExceeded(_)), "{err:?}");
    }

    #[tokio::test]
    async fn idempotent_calls_ignore_not_found() {
        assert_eq!(
            ignore_not_found(Err(RuntimeError::NotFound("x".into()))),
            Ok(())
        );
        assert!(ignore_not_found(Err(RuntimeError::Other("x".into()))).is_err());
    }
}
