//! Watching the configuration directory with inotify.

use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use crate::error::CniError;

struct Fd(Inotify);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

/// Reports changes to the entries of one directory.
pub struct DirWatcher {
    dir: PathBuf,
    fd: AsyncFd<Fd>,
}

impl std::fmt::Debug for DirWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirWatcher")
            .field("dir", &self.dir)
            .finish()
    }
}

impl DirWatcher {
    /// Watch `dir`, creating it if missing (a node may get its CNI configuration only after
    /// the kubelet started). Must be called within a tokio runtime.
    pub fn new(dir: &Path) -> Result<Self, CniError> {
        let werr = |message: String| CniError::Watch {
            path: dir.to_path_buf(),
            message,
        };
        std::fs::create_dir_all(dir).map_err(|e| werr(format!("cannot create: {e}")))?;
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
            .map_err(|e| werr(format!("inotify_init: {e}")))?;
        let mask = AddWatchFlags::IN_CREATE
            | AddWatchFlags::IN_DELETE
            | AddWatchFlags::IN_CLOSE_WRITE
            | AddWatchFlags::IN_MODIFY
            | AddWatchFlags::IN_MOVED_TO
            | AddWatchFlags::IN_MOVED_FROM
            | AddWatchFlags::IN_DELETE_SELF
            | AddWatchFlags::IN_MOVE_SELF;
        inotify
            .add_watch(dir, mask)
            .map_err(|e| werr(format!("inotify_add_watch: {e}")))?;
        // SAFETY: `Fd` owns the inotify descriptor for its whole life and always returns that
        // same descriptor; it is only ever dropped together with the AsyncFd.
        let fd = unsafe { AsyncFd::register_with_interest(Fd(inotify), Interest::READABLE) }
            .map_err(|e| werr(format!("register: {e}")))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            fd,
        })
    }

    /// The watched directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Wait for the next batch of changes; returns the names of the entries that changed.
    /// Fails when the directory itself is removed or moved.
    pub async fn changed(&mut self) -> Result<Vec<OsString>, CniError> {
        loop {
            let mut guard = self.fd.readable().await.map_err(|e| CniError::Watch {
                path: self.dir.clone(),
                message: e.to_string(),
            })?;
            match guard.get_inner().0.read_events() {
                Ok(events) => {
                    if events.iter().any(|e| {
                        e.mask.intersects(
                            AddWatchFlags::IN_DELETE_SELF
                                | AddWatchFlags::IN_MOVE_SELF
                                | AddWatchFlags::IN_IGNORED,
                        )
                    }) {
                        return Err(CniError::Watch {
                            path: self.dir.clone(),
                            message: "directory was removed or moved".into(),
                        });
                    }
                    let names: Vec<OsString> = events.into_iter().filter_map(|e| e.name).collect();
                    if !names.is_empty() {
                        return Ok(names);
                    }
                }
                Err(Errno::EAGAIN) => guard.clear_ready(),
                Err(e) => {
                    return Err(CniError::Watch {
                        path: self.dir.clone(),
                        message: format!("read: {e}"),
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn reports_new_and_removed_files() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let sub = dir.path().join("net.d");
        let mut w = DirWatcher::new(&sub).unwrap_or_else(|e| panic!("{e}"));
        assert!(sub.is_dir());
        std::fs::write(sub.join("10-a.conflist"), "{}").unwrap_or_else(|e| panic!("{e}"));
        let names = tokio::time::timeout(Duration::from_secs(10), w.changed())
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(names.iter().any(|n| n == "10-a.conflist"), "{names:?}");
        std::fs::remove_dir_all(&sub).unwrap_or_else(|e| panic!("{e}"));
        let end = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if let Err(e) = w.changed().await {
                    return e;
                }
            }
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(end, CniError::Watch { .. }));
    }
}
