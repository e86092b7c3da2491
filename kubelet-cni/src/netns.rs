//! Named network namespaces (`/var/run/netns/<name>`), for runtimes that do not make one.
//!
//! A namespace is created by a short-lived thread that unshares its network namespace and
//! bind-mounts `/proc/self/task/<tid>/ns/net` onto the name; the mount keeps the namespace
//! alive after the thread exits. Removing it unmounts and deletes the file.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;

use crate::error::CniError;

/// Where `ip netns` and container runtimes keep named namespaces.
pub const DEFAULT_NETNS_DIR: &str = "/var/run/netns";

/// A named network namespace, bind-mounted on a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetNs {
    path: PathBuf,
}

fn err(path: &Path, message: impl Into<String>) -> CniError {
    CniError::Netns {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

impl NetNs {
    /// Create the namespace `dir/name`. If it exists already (a retried setup), it is reused.
    pub fn create(dir: &Path, name: &str) -> Result<NetNs, CniError> {
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(err(&dir.join(name), "invalid namespace name"));
        }
        let path = dir.join(name);
        std::fs::create_dir_all(dir)
            .map_err(|e| err(dir, format!("cannot create directory: {e}")))?;
        if is_netns(&path) {
            return Ok(NetNs { path });
        }
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(_) => {}
            // An empty file left by an interrupted create: mount over it.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(err(&path, format!("cannot create mount point: {e}"))),
        }
        let target = path.clone();
        // unshare() changes only the calling thread; a thread of our own (not a pooled one)
        // keeps the new namespace away from every other task.
        let joined = std::thread::Builder::new()
            .name("kcni-netns".into())
            .spawn(move || -> Result<(), String> {
                nix::sched::unshare(CloneFlags::CLONE_NEWNET)
                    .map_err(|e| format!("unshare(CLONE_NEWNET): {e}"))?;
                let src = format!("/proc/self/task/{}/ns/net", nix::unistd::gettid());
                nix::mount::mount(
                    Some(src.as_str()),
                    &target,
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )
                .map_err(|e| format!("bind mount of {src}: {e}"))
            })
            .map_err(|e| err(&path, format!("cannot start thread: {e}")))?
            .join();
        let outcome = match joined {
            Ok(r) => r,
            Err(_) => Err("namespace thread panicked".to_string()),
        };
        if let Err(message) = outcome {
            let _ = std::fs::remove_file(&path);
            return Err(err(&path, message));
        }
        tracing::debug!(path = %path.display(), "created network namespace");
        Ok(NetNs { path })
    }

    /// An existing namespace at `path`.
    pub fn open(path: impl Into<PathBuf>) -> Result<NetNs, CniError> {
        let path = path.into();
        if !is_netns(&path) {
            return Err(err(&path, "not a network namespace"));
        }
        Ok(NetNs { path })
    }

    /// The namespace's path, as handed to plugins in `CNI_NETNS`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Remove the namespace at `path`: unmount and delete. Removing an absent one succeeds.
    pub fn remove(path: &Path) -> Result<(), CniError> {
        match nix::mount::umount2(path, MntFlags::MNT_DETACH) {
            // EINVAL: not a mount point (left over, or never mounted); ENOENT: gone.
            Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => {}
            Err(e) => return Err(err(path, format!("unmount: {e}"))),
        }
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(err(path, format!("remove: {e}"))),
        }
        tracing::debug!(path = %path.display(), "removed network namespace");
        Ok(())
    }

    /// Run `f` on a thread that has joined this namespace (e.g. to open a socket inside it;
    /// sockets stay in the namespace they were created in).
    pub fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, CniError> {
        let path = self.path.clone();
        let handle = std::thread::Builder::new()
            .name("kcni-setns".into())
            .spawn(move || -> Result<T, String> {
                let file = std::fs::File::open(&path).map_err(|e| format!("open: {e}"))?;
                nix::sched::setns(file.as_fd(), CloneFlags::CLONE_NEWNET)
                    .map_err(|e| format!("setns: {e}"))?;
                Ok(f())
            })
            .map_err(|e| err(&self.path, format!("cannot start thread: {e}")))?;
        match handle.join() {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(m)) => Err(err(&self.path, m)),
            Err(_) => Err(err(&self.path, "thread panicked")),
        }
    }
}

/// Whether `path` is a mounted network namespace (an nsfs file).
pub fn is_netns(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::NSFS_MAGIC)
}
