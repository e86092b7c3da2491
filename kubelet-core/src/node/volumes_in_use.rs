//! [`VolumesInUse`]: the node's half of the attach/detach controller's handshake, as the
//! reference's volume manager keeps it.
//!
//! The volume plugin marks an attachable volume (by its unique name, e.g.
//! `kubernetes.io/csi/<driver>^<volumeHandle>`) from the decision to mount it until it is
//! unmounted and unstaged; the [`super::NodeAgent`] reports the marked names in
//! `node.status.volumesInUse` and, once the API server accepted a status, marks what it sent
//! as *reported*. The plugin mounts only volumes that were reported (the attach/detach
//! controller never detaches a volume the node reports in use), so the controller cannot
//! detach a volume between the check and the mount.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;

#[derive(Debug, Default)]
struct State {
    /// Volumes the node wants mounted or has mounted.
    in_use: BTreeSet<String>,
    /// Of those, the ones a status the API server accepted listed in `volumesInUse`.
    reported: BTreeSet<String>,
}

#[derive(Debug, Default)]
struct Inner {
    state: Mutex<State>,
    /// Woken when the set changes, so that the node agent reports it promptly.
    changed: Notify,
    /// Woken (all waiters) when what counts as reported changes.
    reported_changed: Notify,
}

/// The attachable volumes in use on this node (see the [module](self) docs). Cloning shares
/// the set: the volume plugins and the node agent hold one each.
#[derive(Debug, Clone, Default)]
pub struct VolumesInUse {
    inner: Arc<Inner>,
}

impl VolumesInUse {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Mark `name` in use; the node agent is woken when it is new.
    pub fn mark(&self, name: &str) {
        let added = self.state().in_use.insert(name.to_string());
        if added {
            self.inner.changed.notify_one();
        }
    }

    /// The volume is no longer in use: it leaves the status at the next report, and a later
    /// [`VolumesInUse::mark`] has to be reported again before it counts as reported.
    pub fn unmark(&self, name: &str) {
        let removed = {
            let mut state = self.state();
            state.reported.remove(name);
            state.in_use.remove(name)
        };
        if removed {
            self.inner.changed.notify_one();
            self.inner.reported_changed.notify_waiters();
        }
    }

    /// Whether `name` is marked in use.
    pub fn contains(&self, name: &str) -> bool {
        self.state().in_use.contains(name)
    }

    /// The marked names, sorted and unique (what `status.volumesInUse` lists).
    pub fn list(&self) -> Vec<String> {
        self.state().in_use.iter().cloned().collect()
    }

    /// Whether `name` is marked and a status listing it was accepted by the API server.
    pub fn is_reported(&self, name: &str) -> bool {
        self.state().reported.contains(name)
    }

    /// A status listing `sent` in `volumesInUse` was accepted: those still marked count as
    /// reported, the others not (as the reference's `MarkVolumesAsReportedInUse`).
    pub fn mark_reported<S: AsRef<str>>(&self, sent: &[S]) {
        let mut state = self.state();
        let reported: BTreeSet<String> = sent
            .iter()
            .map(AsRef::as_ref)
            .filter(|name| state.in_use.contains(*name))
            .map(str::to_string)
            .collect();
        state.reported = reported;
        drop(state);
        self.inner.reported_changed.notify_waiters();
    }

    /// Wait up to `timeout` for `name` to be reported; whether it is. Gives up at once
    /// when `name` is not marked (or gets unmarked): nothing will report it.
    pub async fn wait_reported(&self, name: &str, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Registered before looking, so a report in between is not missed.
            let notified = self.inner.reported_changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let state = self.state();
                if state.reported.contains(name) {
                    return true;
                }
                if !state.in_use.contains(name) {
                    return false;
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.is_reported(name);
            }
        }
    }

    /// Completes when the set changed since the last call returned (at once when it
    /// changed meanwhile). Meant for one waiter, the node agent.
    pub async fn changed(&self) {
        self.inner.changed.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn marks_are_sorted_unique_and_reported_only_once_sent() {
        let v = VolumesInUse::new();
        v.mark("kubernetes.io/csi/d^b");
        v.mark("kubernetes.io/csi/d^a");
        v.mark("kubernetes.io/csi/d^b");
        assert_eq!(v.list(), ["kubernetes.io/csi/d^a", "kubernetes.io/csi/d^b"]);
        assert!(v.contains("kubernetes.io/csi/d^a"));
        assert!(!v.is_reported("kubernetes.io/csi/d^a"));

        // A status sent before `b` was marked: only `a` is reported.
        v.mark_reported(&["kubernetes.io/csi/d^a", "kubernetes.io/csi/d^gone"]);
        assert!(v.is_reported("kubernetes.io/csi/d^a"));
        assert!(!v.is_reported("kubernetes.io/csi/d^b"));
        assert!(!v.is_reported("kubernetes.io/csi/d^gone"));

        // Unmarked then marked again: it must be reported again.
        v.unmark("kubernetes.io/csi/d^a");
        assert!(!v.contains("kubernetes.io/csi/d^a"));
        v.mark("kubernetes.io/csi/d^a");
        assert!(!v.is_reported("kubernetes.io/csi/d^a"));

        // A status without a volume takes its reported mark away.
        v.mark_reported(&["kubernetes.io/csi/d^a", "kubernetes.io/csi/d^b"]);
        v.mark_reported(&["kubernetes.io/csi/d^b"]);
        assert!(!v.is_reported("kubernetes.io/csi/d^a"));
        assert!(v.is_reported("kubernetes.io/csi/d^b"));
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_for_a_report_ends_when_it_comes_or_at_the_timeout() {
        let v = VolumesInUse::new();
        let start = tokio::time::Instant::now();
        assert!(
            !v.wait_reported("x", Duration::from_secs(10)).await,
            "not marked: nothing to wait for"
        );
        assert_eq!(start.elapsed(), Duration::ZERO);

        v.mark("x");
        let agent = v.clone();
        let report = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            // A status without it first, then one with it.
            agent.mark_reported::<&str>(&[]);
            tokio::time::sleep(Duration::from_secs(1)).await;
            agent.mark_reported(&["x"]);
        });
        assert!(v.wait_reported("x", Duration::from_secs(10)).await);
        assert_eq!(start.elapsed(), Duration::from_secs(4));
        report.await.unwrap();
        // Already reported: at once.
        assert!(v.wait_reported("x", Duration::from_secs(10)).await);
        assert_eq!(start.elapsed(), Duration::from_secs(4));

        v.mark("y");
        assert!(!v.wait_reported("y", Duration::from_secs(10)).await);
        assert_eq!(start.elapsed(), Duration::from_secs(14));
    }

    #[tokio::test(start_paused = true)]
    async fn changes_wake_the_waiter_and_repeats_do_not() {
        let v = VolumesInUse::new();
        let woken = || tokio::time::timeout(Duration::from_secs(1), v.changed());
        // Nothing changed yet.
        assert!(woken().await.is_err());
        v.mark("x");
        // A change before the wait is not lost.
        assert!(woken().await.is_ok());
        v.mark("x");
        assert!(woken().await.is_err(), "marking again is no change");
        v.unmark("y");
        assert!(
            woken().await.is_err(),
            "unmarking an unknown name is no change"
        );
        v.unmark("x");
        assert!(woken().await.is_ok());
        // Clones share the set and the wake-up.
        let clone = v.clone();
        clone.mark("z");
        assert_eq!(v.list(), ["z"]);
        assert!(woken().await.is_ok());
    }
}
