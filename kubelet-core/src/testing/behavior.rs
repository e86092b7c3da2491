//! How fake containers behave: what their process does once started, how it answers SIGTERM,
//! and which containers a behaviour applies to.

use std::sync::Arc;
use std::time::Duration;

use crate::runtime::ExecResult;

/// What the container's main process does once started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Run {
    /// Runs until stopped or killed.
    Forever,
    /// Exits by itself `after` the start, with `code`; `reason` overrides the runtime's
    /// (`Completed` for 0, `Error` otherwise), e.g. `OOMKilled`.
    Exit {
        /// Exit code.
        code: i32,
        /// Run time before the exit.
        after: Duration,
        /// Reason the runtime reports, when not derived from the code.
        reason: Option<String>,
    },
}

/// How the process answers the stop signal (SIGTERM) sent by `stop_container`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnTerm {
    /// Exits with `code`, `after` the signal (if that is within the stop timeout; past it the
    /// runtime sends SIGKILL and the exit code is 137).
    Exit {
        /// Exit code.
        code: i32,
        /// Time the process takes to shut down.
        after: Duration,
    },
    /// Ignores the signal (like a PID-1 `sleep`): the stop waits out the whole timeout, then
    /// the process is SIGKILLed (exit 137).
    Ignore,
}

/// The behaviour of one fake container, decided when it is created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerBehavior {
    /// What the process does once started.
    pub run: Run,
    /// How it answers SIGTERM.
    pub on_term: OnTerm,
    /// `create_container` fails with this message (as `RuntimeError::Other`).
    pub create_error: Option<String>,
    /// `start_container` fails with this message; the container is then reported exited
    /// with code 128 and reason `StartError`, as containerd does.
    pub start_error: Option<String>,
    /// `create_container` takes this long.
    pub create_delay: Duration,
    /// `start_container` takes this long (the container is "starting" meanwhile and cannot
    /// be started again or removed).
    pub start_delay: Duration,
}

impl Default for ContainerBehavior {
    fn default() -> Self {
        Self::forever()
    }
}

impl ContainerBehavior {
    /// Runs until stopped; exits 0 at once on SIGTERM.
    pub fn forever() -> Self {
        Self {
            run: Run::Forever,
            on_term: OnTerm::Exit {
                code: 0,
                after: Duration::ZERO,
            },
            create_error: None,
            start_error: None,
            create_delay: Duration::ZERO,
            start_delay: Duration::ZERO,
        }
    }

    /// Exits with `code` `after` its start.
    pub fn exit(code: i32, after: Duration) -> Self {
        Self {
            run: Run::Exit {
                code,
                after,
                reason: None,
            },
            ..Self::forever()
        }
    }

    /// Is OOM-killed (exit 137, reason `OOMKilled`) `after` its start.
    pub fn oom_killed(after: Duration) -> Self {
        Self {
            run: Run::Exit {
                code: 137,
                after,
                reason: Some("OOMKilled".to_string()),
            },
            ..Self::forever()
        }
    }

    /// Creation fails with `message`.
    pub fn fail_create(message: impl Into<String>) -> Self {
        Self {
            create_error: Some(message.into()),
            ..Self::forever()
        }
    }

    /// Start fails with `message` (a RunContainerError in the kubelet's terms).
    pub fn fail_start(message: impl Into<String>) -> Self {
        Self {
            start_error: Some(message.into()),
            ..Self::forever()
        }
    }

    /// The process ignores SIGTERM.
    pub fn ignore_term(mut self) -> Self {
        self.on_term = OnTerm::Ignore;
        self
    }

    /// The process exits with `code`, `after` receiving SIGTERM.
    pub fn on_term_exit(mut self, code: i32, after: Duration) -> Self {
        self.on_term = OnTerm::Exit { code, after };
        self
    }

    /// `create_container` takes `delay`.
    pub fn create_delay(mut self, delay: Duration) -> Self {
        self.create_delay = delay;
        self
    }

    /// `start_container` takes `delay`.
    pub fn start_delay(mut self, delay: Duration) -> Self {
        self.start_delay = delay;
        self
    }
}

/// Which containers a behaviour or exec handler applies to. Every criterion set must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerMatch {
    /// Pod name or pod UID.
    pub pod: Option<String>,
    /// Container name.
    pub container: Option<String>,
    /// Image (compared after normalisation, so `busybox` matches
    /// `docker.io/library/busybox:latest`).
    pub image: Option<String>,
    /// A substring of the command line (command and args joined by spaces).
    pub command_contains: Option<String>,
}

impl ContainerMatch {
    /// Every container.
    pub fn any() -> Self {
        Self::default()
    }

    /// The container `name` of the pod named (or with UID) `pod`.
    pub fn container(pod: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            pod: Some(pod.into()),
            container: Some(name.into()),
            ..Self::default()
        }
    }

    /// Containers named `name`, in any pod.
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            container: Some(name.into()),
            ..Self::default()
        }
    }

    /// Containers of the pod named (or with UID) `pod`.
    pub fn pod(pod: impl Into<String>) -> Self {
        Self {
            pod: Some(pod.into()),
            ..Self::default()
        }
    }

    /// Containers created from `image`.
    pub fn image(image: impl Into<String>) -> Self {
        Self {
            image: Some(image.into()),
            ..Self::default()
        }
    }

    /// Containers whose command line contains `needle`.
    pub fn command_contains(needle: impl Into<String>) -> Self {
        Self {
            command_contains: Some(needle.into()),
            ..Self::default()
        }
    }

    pub(crate) fn matches(&self, target: &MatchTarget<'_>) -> bool {
        self.pod
            .as_deref()
            .is_none_or(|p| p == target.pod_name || p == target.pod_uid)
            && self
                .container
                .as_deref()
                .is_none_or(|c| c == target.container)
            && self
                .image
                .as_deref()
                .is_none_or(|i| super::fake_runtime::normalize_image(i) == target.image)
            && self
                .command_contains
                .as_deref()
                .is_none_or(|n| target.command_line.contains(n))
    }
}

/// What a match is evaluated against.
pub(crate) struct MatchTarget<'a> {
    pub pod_name: &'a str,
    pub pod_uid: &'a str,
    pub container: &'a str,
    /// Normalised image.
    pub image: &'a str,
    pub command_line: &'a str,
}

/// The answer of an exec handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecReply {
    /// The command finished at once.
    Done(ExecResult),
    /// The command finishes after a while (past the exec timeout: DeadlineExceeded).
    After(Duration, ExecResult),
    /// The command never finishes (DeadlineExceeded after the timeout; with no timeout the
    /// call never returns).
    Hang,
}

impl ExecReply {
    /// Exit code `code`, no output.
    pub fn exit(code: i32) -> Self {
        Self::Done(ExecResult {
            exit_code: code,
            ..ExecResult::default()
        })
    }

    /// Exit 0 with `stdout`.
    pub fn stdout(stdout: impl Into<Vec<u8>>) -> Self {
        Self::Done(ExecResult {
            stdout: stdout.into(),
            ..ExecResult::default()
        })
    }
}

/// Decides the reply to an exec, given the command.
pub type ExecHandler = Arc<dyn Fn(&[String]) -> ExecReply + Send + Sync>;
