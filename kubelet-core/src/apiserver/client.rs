//! Building the kube-rs client from `--kubeconfig` or the in-cluster service account, and a
//! start-up check that tells "cannot reach" apart from "refused us".

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use kube::config::{KubeConfigOptions, Kubeconfig};

use super::error::{ApiClientError, message, status_code};

/// Where the client's configuration comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientSource {
    /// A kubeconfig file (`--kubeconfig`): server URL, CA, client certificate and key or a
    /// bearer token, as kube-rs reads them (its current context).
    Kubeconfig(PathBuf),
    /// The in-cluster service account (`KUBERNETES_SERVICE_HOST`, the mounted token and CA).
    InCluster,
}

/// A kube-rs client for one node, with the URL it talks to (for error messages).
#[derive(Clone)]
pub struct NodeClient {
    client: kube::Client,
    node_name: String,
    url: String,
}

impl std::fmt::Debug for NodeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeClient")
            .field("node_name", &self.node_name)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// How long the TCP/TLS connect may take before the API server counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl NodeClient {
    /// Builds the client from the given configuration. Does not contact the server; see
    /// [`NodeClient::check_access`].
    pub async fn connect(
        source: &ClientSource,
        node_name: impl Into<String>,
    ) -> Result<Self, ApiClientError> {
        let mut config = match source {
            ClientSource::Kubeconfig(path) => kubeconfig(path).await?,
            ClientSource::InCluster => {
                kube::Config::incluster().map_err(ApiClientError::InCluster)?
            }
        };
        config.connect_timeout = Some(CONNECT_TIMEOUT);
        // Watches stay open for minutes; idle detection is the source's job, so no read
        // timeout here (it would cut quiet watches).
        config.read_timeout = None;
        let url = config.cluster_url.to_string();
        let client = kube::Client::try_from(config).map_err(|source| ApiClientError::Build {
            url: url.clone(),
            source,
        })?;
        Ok(Self {
            client,
            node_name: node_name.into(),
            url,
        })
    }

    /// Wraps an existing client (tests hand in one over a mock service).
    pub fn from_client(
        client: kube::Client,
        node_name: impl Into<String>,
        url: impl Into<String>,
    ) -> Self {
        Self {
            client,
            node_name: node_name.into(),
            url: url.into(),
        }
    }

    /// The kube-rs client.
    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    /// The node this client acts for.
    pub fn node_name(&self) -> &str {
        &self.node_name
    }

    /// The API server URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Asks for our own Node (which the Node authorizer allows even before it exists): an
    /// answer of 200 or 404 means the server is reachable and accepts us as this node.
    pub async fn check_access(&self) -> Result<(), ApiClientError> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let what = format!("get nodes/{}", self.node_name);
        match nodes.get_metadata_opt(&self.node_name).await {
            Ok(_) => Ok(()),
            Err(err) => Err(match status_code(&err) {
                None => ApiClientError::Unreachable {
                    url: self.url.clone(),
                    message: message(&err),
                },
                Some(401) => ApiClientError::Unauthorized {
                    url: self.url.clone(),
                    message: message(&err),
                },
                Some(403) => ApiClientError::Forbidden {
                    url: self.url.clone(),
                    node: self.node_name.clone(),
                    what,
                    message: message(&err),
                },
                Some(code) => ApiClientError::Other {
                    url: self.url.clone(),
                    what,
                    message: format!("{code}: {}", message(&err)),
                },
            }),
        }
    }
}

async fn kubeconfig(path: &Path) -> Result<kube::Config, ApiClientError> {
    let wrap = |source| ApiClientError::Kubeconfig {
        path: path.to_path_buf(),
        source,
    };
    let file = Kubeconfig::read_from(path).map_err(wrap)?;
    kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
        .await
        .map_err(wrap)
}
