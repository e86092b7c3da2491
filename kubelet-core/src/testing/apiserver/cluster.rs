//! The API server a test runs against: a real kube-apiserver when one is available (envtest,
//! or a cluster of your own), else the fake.

use std::path::{Path, PathBuf};
use std::sync::Once;

use super::{FakeApiServer, FakeApiServerError};
use crate::testing::envtest::{self, ASSETS_ENV, Envtest, EnvtestError, REQUIRE_ENV};

/// The environment variable that opts tests in to the real cluster of `KUBECONFIG`.
pub const REAL_CLUSTER_ENV: &str = "KUBELET_TEST_REAL_CLUSTER";

/// The API server under test. Tests that only hand out kubeconfigs run unchanged against
/// any of them; fault injection and direct store access exist only on the fake.
pub enum TestApiServer {
    /// The fake, over HTTPS with a bearer token.
    Fake(FakeApiServer),
    /// etcd + kube-apiserver started by this test from `KUBELET_TEST_ASSETS` (boxed: it
    /// holds its PKI).
    Envtest(Box<Envtest>),
    /// A real cluster, from the kubeconfig file `KUBECONFIG` names.
    Real {
        /// The kubeconfig file.
        kubeconfig: PathBuf,
    },
}

impl std::fmt::Debug for TestApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Fake(fake) => f.debug_tuple("Fake").field(&fake.url()).finish(),
            Self::Envtest(env) => f.debug_tuple("Envtest").field(env).finish(),
            Self::Real { kubeconfig } => f
                .debug_struct("Real")
                .field("kubeconfig", kubeconfig)
                .finish(),
        }
    }
}

/// Said once per test binary, not once per test.
static FAKE_NOTICE: Once = Once::new();

/// Writes a line to the real stderr. `eprintln!` in a test is captured by the test harness
/// and shown only if the test fails; which API server the tests ran against should show
/// either way.
fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

impl TestApiServer {
    /// In order:
    ///
    /// 1. a real cluster when `KUBELET_TEST_REAL_CLUSTER` is `1` or `true` (then `KUBECONFIG`
    ///    must name a kubeconfig file; the first of a `:`-list is used);
    /// 2. an [`Envtest`] when `KUBELET_TEST_ASSETS` is set;
    /// 3. the fake, started with [`FakeApiServer::start_tls`], saying so on stderr.
    ///
    /// An envtest that cannot start falls back to the fake with the reason on stderr, unless
    /// `KUBELET_TEST_REQUIRE_ENVTEST=1`: then it, or `KUBELET_TEST_ASSETS` being unset, is
    /// the error.
    pub async fn from_env() -> Result<Self, FakeApiServerError> {
        let opted_in = std::env::var(REAL_CLUSTER_ENV).is_ok_and(|v| v == "1" || v == "true");
        if opted_in {
            return Self::real_from_kubeconfig_env();
        }
        match envtest::assets_dir() {
            Some(assets) => match Envtest::start(&assets).await {
                Ok(env) => return Ok(Self::Envtest(Box::new(env))),
                Err(e) if envtest::required() => return Err(e.into()),
                Err(e) => say(&format!(
                    "{ASSETS_ENV}={}: the real API server did not start, running against the \
                     fake API server instead ({REQUIRE_ENV}=1 makes this an error): {e}",
                    assets.display()
                )),
            },
            None if envtest::required() => {
                return Err(EnvtestError::NotConfigured.into());
            }
            None => FAKE_NOTICE.call_once(|| {
                say(&format!(
                    "{ASSETS_ENV} not set: running against the fake API server (set it to a \
                     directory with kube-apiserver, e.g. ../shared/envtest)"
                ));
            }),
        }
        Ok(Self::Fake(FakeApiServer::start_tls().await?))
    }

    fn real_from_kubeconfig_env() -> Result<Self, FakeApiServerError> {
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
            Self::Envtest(_) | Self::Real { .. } => None,
        }
    }

    /// The envtest, when this is one.
    pub fn envtest(&self) -> Option<&Envtest> {
        match self {
            Self::Envtest(e) => Some(e.as_ref()),
            Self::Fake(_) | Self::Real { .. } => None,
        }
    }

    /// Writes (fake, envtest) or copies (real cluster) an admin kubeconfig to `path`.
    pub fn write_kubeconfig(&self, path: &Path) -> Result<(), FakeApiServerError> {
        match self {
            Self::Fake(f) => f.write_kubeconfig(path),
            Self::Envtest(e) => Ok(e.write_kubeconfig(path)?),
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

    /// A kubeconfig (YAML) for a kubelet on `node_name`: a new client certificate for
    /// `system:node:<node_name>` in `system:nodes`, as kubeadm issues one (fake, envtest).
    /// A real cluster's CA key is not ours, so there it is the `KUBECONFIG` file as it is.
    pub fn node_kubeconfig(&self, node_name: &str) -> Result<String, FakeApiServerError> {
        let user = format!("system:node:{node_name}");
        match self {
            Self::Fake(f) => f.kubeconfig_with_client_cert(&user, &["system:nodes"]),
            Self::Envtest(e) => Ok(e.node_kubeconfig(node_name)?),
            Self::Real { kubeconfig } => {
                std::fs::read_to_string(kubeconfig).map_err(|e| FakeApiServerError::RealCluster {
                    message: format!("reading KUBECONFIG {}: {e}", kubeconfig.display()),
                })
            }
        }
    }
}
