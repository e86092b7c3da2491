//! Shared helpers of the integration tests.
#![allow(dead_code)]

use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

/// Whether a test that needs root may run: skips (returns false) with a message when not
/// root, unless KUBELET_TEST_REQUIRE_ROOT=1, in which case it fails.
pub fn require_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    if std::env::var("KUBELET_TEST_REQUIRE_ROOT").as_deref() == Ok("1") {
        panic!("{test}: needs root and KUBELET_TEST_REQUIRE_ROOT=1");
    }
    eprintln!("skipping {test}: needs root (set KUBELET_TEST_REQUIRE_ROOT=1 to fail instead)");
    false
}

/// Whether Debian's CNI plugins are installed (required alongside root).
pub fn require_plugins(test: &str) -> bool {
    if Path::new("/usr/lib/cni/bridge").exists() {
        return true;
    }
    if std::env::var("KUBELET_TEST_REQUIRE_ROOT").as_deref() == Ok("1") {
        panic!("{test}: /usr/lib/cni/bridge missing (apt-get install containernetworking-plugins)");
    }
    eprintln!("skipping {test}: containernetworking-plugins not installed in /usr/lib/cni");
    false
}

/// Poll `cond` until it holds or `deadline` passes.
pub async fn eventually<F, Fut>(deadline: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if cond().await {
            return;
        }
        if start.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
