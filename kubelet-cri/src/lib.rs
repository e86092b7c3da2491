//! The kubelet's [`Runtime`](kubelet_core::Runtime) over the CRI v1 gRPC API, for
//! containerd, CRI-O or any other CRI runtime listening on a unix socket.
//!
//! [`CriRuntime`] maps the plain types of `kubelet_core::runtime` onto CRI messages, bounds
//! every call with a timeout ([`CriOptions`], defaults as the reference kubelet's), and maps
//! gRPC statuses onto [`RuntimeError`](kubelet_core::RuntimeError) kinds (`NotFound`,
//! `Unavailable`, `DeadlineExceeded`, ...), so that callers decide by kind.
//!
//! With the `testing` feature, [`testing::TestContainerd`] runs a real containerd of the
//! test's own, for integration tests of any crate.
//!
//! ```no_run
//! use kubelet_core::Runtime;
//! use kubelet_cri::{CriOptions, CriRuntime};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let runtime = CriRuntime::connect(
//!     "unix:///run/containerd/containerd.sock",
//!     CriOptions::default(),
//! )
//! .await?;
//! let version = runtime.version().await?;
//! println!("{} {}", version.runtime_name, version.runtime_version);
//! if runtime.image_status("docker.io/library/busybox:1.36").await?.is_none() {
//!     runtime.pull_image("docker.io/library/busybox:1.36", None).await?;
//! }
//! # Ok(())
//! # }
//! ```

pub mod convert;
mod error;
mod runtime;
#[cfg(feature = "testing")]
pub mod test_registry;
#[cfg(feature = "testing")]
pub mod testing;

pub use error::{CriError, pull_status_to_error, status_to_error};
pub use runtime::{
    CriOptions, CriRuntime, DEFAULT_IMAGE_PULL_TIMEOUT, DEFAULT_REQUEST_TIMEOUT, socket_path,
};
