//! The `kubelet` daemon's pieces: flags named as the reference kubelet's ([`flags`]), the
//! KubeletConfiguration file and its merge with the flags ([`config`]), Go durations
//! ([`duration`]), the local HTTP server ([`server`]), a check of the kubeconfig's client
//! certificate ([`credentials`]) and the wiring onto kubelet-core and kubelet-cri
//! ([`wiring`]). The binary is a thin `main` over [`load_settings`] and
//! [`wiring::run`].

pub mod cluster;
pub mod config;
pub mod credentials;
pub use kubelet_core::go_duration as duration;
pub mod flags;
pub mod machine;
pub mod node_ip;
pub mod registration;
pub mod server;
pub mod wiring;

use config::{ConfigError, ConfigFile, Settings};
use flags::Flags;

/// Read the config file named by `--config` (if any) and merge the flags over it.
pub fn load_settings(flags: &Flags) -> Result<Settings, ConfigError> {
    let file = flags.config.as_deref().map(ConfigFile::load).transpose()?;
    Settings::resolve(flags, file.as_ref(), || {
        let name = nix::unistd::gethostname().map_err(std::io::Error::from)?;
        Ok(name.to_string_lossy().into_owned())
    })
}

/// An error with its causes, `a: b: c`, leaving out causes its message already contains
/// (many errors repeat their source's text).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

/// The tracing level for a reference-style `--v` verbosity: 0-2 info, 3-4 debug, 5+ trace.
pub fn level_for_verbosity(verbosity: u8) -> tracing::Level {
    match verbosity {
        0..=2 => tracing::Level::INFO,
        3..=4 => tracing::Level::DEBUG,
        _ => tracing::Level::TRACE,
    }
}

/// The filter for a `--v` level: this kubelet's own crates at that level; the libraries
/// under them (HTTP, TLS, gRPC, kube-rs) stay at info up to `--v=5` (their debug logs would
/// drown ours) and follow from `--v=6` on.
pub fn log_filter(verbosity: u8) -> String {
    let ours = level_for_verbosity(verbosity).to_string().to_lowercase();
    if verbosity >= 6 {
        return ours;
    }
    let crates = [
        "kubelet",
        "kubelet_bin",
        "kubelet_core",
        "kubelet_cri",
        "kubelet_cni",
        "kubelet_csi",
    ];
    let mut filter = "info".to_string();
    for name in crates {
        filter.push_str(&format!(",{name}={ours}"));
    }
    filter
}

/// Log to stderr at the level `--v` asks for; `RUST_LOG`, when set, overrides it.
pub fn init_logging(verbosity: u8) {
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => EnvFilter::new(spec),
        _ => EnvFilter::new(log_filter(verbosity)),
    };
    // A second initialisation (tests) keeps the first subscriber.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        // Its default reports a failed write with `eprintln!`, which panics when stderr is
        // gone (a log reader that died): every task that logs would then die with it, the
        // signal handler among them. Lost log lines are the lesser harm.
        .log_internal_errors(false)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbosity_raises_our_crates_before_the_libraries() {
        assert!(log_filter(0).starts_with("info,"));
        assert!(log_filter(4).contains("kubelet_core=debug"));
        assert!(log_filter(4).starts_with("info,"));
        assert_eq!(log_filter(6), "trace");
    }

    #[test]
    fn error_chain_adds_new_causes_only() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] Middle);
        #[derive(Debug, thiserror::Error)]
        #[error("middle: inner")]
        struct Middle(#[source] std::io::Error);

        let err = Outer(Middle(std::io::Error::other("inner")));
        assert_eq!(error_chain(&err), "outer: middle: inner");
        let err = Outer(Middle(std::io::Error::other("root cause")));
        assert_eq!(error_chain(&err), "outer: middle: inner: root cause");
    }

    #[test]
    fn verbosity_maps_onto_levels() {
        let cases = [
            (0, tracing::Level::INFO),
            (2, tracing::Level::INFO),
            (3, tracing::Level::DEBUG),
            (4, tracing::Level::DEBUG),
            (5, tracing::Level::TRACE),
            (10, tracing::Level::TRACE),
        ];
        for (v, level) in cases {
            assert_eq!(level_for_verbosity(v), level, "--v={v}");
        }
    }
}
