//! `kubelet`: a Kubernetes node agent as a library.
//!
//! This facade re-exports the workspace's crates so an embedder depends on one package:
//! [`core`] (the traits, the reconciler, pod sources, status), [`cri`] (a `Runtime` over the
//! CRI v1 API), [`cni`] (CNI networking) and [`csi`] (CSI volumes).
//!
//! ```no_run
//! use std::sync::Arc;
//! use kubelet::core::{Kubelet, KubeletConfig, log_reporter::LogReporter};
//! use kubelet::core::sources::StaticDirSource;
//! use kubelet::cri::{CriOptions, CriRuntime};
//!
//! # async fn node() -> Result<(), Box<dyn std::error::Error>> {
//! let runtime = CriRuntime::connect("unix:///run/containerd/containerd.sock", CriOptions::default()).await?;
//! let pods = StaticDirSource::new("/etc/kubernetes/manifests", "node-1", std::time::Duration::from_secs(20));
//! Kubelet::builder(KubeletConfig::new("node-1"))
//!     .runtime(Arc::new(runtime))
//!     .reporter(Arc::new(LogReporter::new()))
//!     .source(Box::new(pods))
//!     .build()?
//!     .run(std::future::pending())
//!     .await?;
//! # Ok(())
//! # }
//! ```

pub use kubelet_cni as cni;
pub use kubelet_core as core;
pub use kubelet_cri as cri;
pub use kubelet_csi as csi;
