//! `kubelet-cni`: the CNI specification (1.0 / 1.1, reading 0.1-0.4 configurations and
//! results) as a library, and pod networking for runtimes that do not run CNI themselves.
//!
//! - [`config`]: load `*.conflist` / `*.conf` / `*.json` from a directory in lexical order,
//!   take the first valid network, and say which file and field is wrong with the others.
//! - [`Cni`]: run plugin binaries with the spec's environment and stdin for ADD (chained
//!   `prevResult`), DEL (reverse order), CHECK, STATUS, GC and VERSION; capability arguments
//!   ([`RuntimeConfig`]); typed plugin errors ([`CniError::Plugin`] with an [`ErrorCode`]);
//!   timeouts; a [`ResultCache`] on disk so that DEL works after a restart.
//! - [`NetNs`]: named network namespaces for sandboxes the runtime made none for.
//! - [`CniNetworkPlugin`]: kubelet-core's [`kubelet_core::NetworkPlugin`] over all of it.
//!   (Runtimes that run CNI themselves, like containerd and CRI-O, use
//!   [`kubelet_core::RuntimeManagedNetwork`] instead.)
//!
//! Plugin binaries need root (or `CAP_NET_ADMIN` and `CAP_SYS_ADMIN`) for most operations.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::path::{Path, PathBuf};
//! use kubelet_cni::{config, Attachment, Cni, NetNs};
//!
//! let net = config::load_dir(Path::new("/etc/cni/net.d"))?;
//! let cni = Cni::new(vec![PathBuf::from("/usr/lib/cni")], "/var/lib/cni/cache");
//! let ns = NetNs::create(Path::new("/var/run/netns"), "demo")?;
//! let att = Attachment::new("demo", ns.path().display().to_string(), "eth0");
//! let result = cni.add(&net, &att).await?;
//! println!("pod IPs: {:?}", result.pod_ips());
//! cni.check(&net, &att).await?;
//! cni.del(&net, &att).await?;
//! NetNs::remove(ns.path())?;
//! # Ok(())
//! # }
//! ```

pub mod cache;
pub mod capabilities;
pub mod cni;
pub mod config;
pub mod error;
pub mod exec;
pub mod netns;
pub mod plugin;
pub mod result;
pub mod version;
pub mod watch;

pub use cache::{CachedAttachment, ResultCache};
pub use capabilities::{Bandwidth, DnsConfig, IpRange, PortMapping, RuntimeConfig};
pub use cni::{Attachment, Cni, ValidAttachment, VersionInfo};
pub use config::{NetworkConfigList, PluginConfig};
pub use error::{CniError, ConfigError, ErrorCode, PluginError};
pub use exec::Command;
pub use netns::NetNs;
pub use plugin::{CniNetworkPlugin, CniPluginConfig};
pub use result::CniResult;
pub use watch::DirWatcher;
