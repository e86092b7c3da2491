//! The API server a test runs against: the fake by default, a real cluster when opted in.

use std::path::{Path, PathBuf};

use super::{FakeApiServer, FakeApiServerError};

/// The environment variable that opts tests in to the real cluster of `KUBECONFIG`.
pub const REAL_CLUSTER_ENV: &str = "KUBELET_TEST_REAL_CLUSTER";

/// The API server under test. Tests that only hand out a kubeconfig run unchanged against
/// either; fault injection and direct store access exist only on the fake.
pub enum TestApiServer {
    /// The fake, over HTTPS with a bearer token.
    Fake(FakeApiServer),
    /// A real cluster, from the kubeconfig file `KUBECONFIG` names.
    Real {
        /// The kubeconfig file.
        kubeconfig: PathBuf,
    },
}

impl TestApiServer {
    /// A real cluster when `KUBELET_TEST_REAL_CLUSTER` is `1` or `true` (then `KUBECONFIG`
    /// must name a kubeconfig file; the first of a `:`-list is used), else a fake started
    /// with [`FakeApiServer::start_tls`].
    pub async fn from_env() -> Result<Self, FakeApiServerError> {
        let opted_in = std::env::var(REAL_CLUSTER_ENV).is_ok_and(|v| v == "1" || v == "true");
        if !opted_in {
            return Ok(Self::Fake(FakeApiServer::start_tls().await?));
        }
        let path = std::env::var_os("KUBECONFIG")
            .and_then(|v| std::env::split_paths(&v).next())
            .filter(|p| !p.as_os_str().is_empty())
            .ok_or_else(|| FakeApiServerError::RealCluster {
                message: format!("{REAL_CLUSTER_ENV} is set but KUBECONFIG names no file"),
            })?;
        if !path.is_file() {
            return Err(FakeApiServerError::RealCluster {
                message: format!("KUBECONFIG {} is not a file", path.display()),
            });
        }
        Ok(Self::Real { kubeconfig: path })
    }

    /// The fake, when this is one (for faults and direct store access).
    pub fn fake(&self) -> Option<&FakeApiServer> {
        match self {
            Self::Fake(f) => Some(f),
            Self::Real { .. } => None,
        }
    }

    /// Writes (fake) or copies (real) the kubeconfig to `path`.
    pub fn write_kubeconfig(&self, path: &Path) -> Result<(), FakeApiServerError> {
        match self {
            Self::Fake(f) => f.write_kubeconfig(path),
            Self::Real { kubeconfig } => {
                std::fs::copy(kubeconfig, path)
                    .map(|_| ())
                    .map_err(|source| FakeApiServerError::WriteKubeconfig {
                        path: path.display().to_string(),
                        source,
                    })
            }
        }
    }
}
