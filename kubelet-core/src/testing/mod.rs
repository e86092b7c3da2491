//! Test doubles for the seams: an in-memory runtime, a channel pod source, a recording
//! reporter, pod builders, a fake kube-apiserver ([`apiserver`]), and a harness that starts a
//! real etcd + kube-apiserver from a directory of binaries ([`envtest`]).
//!
//! [`FakeRuntime`] answers as containerd 1.6+ does through the CRI, refusals included, so
//! that code tested against it also works against the real thing:
//!
//! - IDs are 64 hex characters; timestamps are nanoseconds since the epoch from a clock that
//!   starts at the wall-clock time of the fake's creation and advances with tokio's
//!   (possibly paused) time.
//! - Creating a container in an unknown or stopped sandbox fails with `NotFound`, from an
//!   image that is not present with `NotFound` (image not found); a second container with the
//!   same name and attempt in a sandbox fails with `AlreadyExists`.
//! - Starting a container that is not `Created` fails; a failed start (behaviour, or a
//!   sandbox that is not ready) leaves the container `Exited` with code 128 and reason
//!   `StartError`.
//! - Stopping sends SIGTERM and SIGKILLs (exit 137) past the timeout (at once with a zero
//!   timeout); stopping an exited or created container succeeds, an unknown one is
//!   `NotFound`. Stopping a sandbox SIGKILLs its containers and drops its IPs; removing it
//!   stops it first and removes its containers. Removing a running container SIGKILLs it
//!   first (as containerd does; [`FakeRuntime::set_refuse_remove_running`] makes that an
//!   error instead). Removing anything absent succeeds.
//! - List calls leave out what CRI's list calls do not carry (exit code, start and finish
//!   times, reason, message, log path; sandbox IPs and netns).
//! - Exited containers are reported with reason `Completed` (code 0) or `Error` unless the
//!   behaviour gave one (`OOMKilled`).
//! - Pulls succeed only for images added with [`FakeRuntime::add_registry_image`] and fail
//!   with `ImagePull` otherwise.
//!
//! What a container does is decided at creation from the rules set with
//! [`FakeRuntime::set_behavior`] ([`ContainerMatch`] by pod and container name, image or
//! command): run forever, exit with a code after a while, be OOM-killed, honour or ignore
//! SIGTERM, fail or hang on create or start. Exits are evaluated lazily against the clock,
//! so a container that exits 5 s after its start reports `finished_at = started_at + 5 s`
//! whenever it is looked at.

pub mod apiserver;
mod behavior;
mod channel_source;
pub mod envtest;
mod fake_runtime;
pub mod pods;
mod recording_reporter;

pub use apiserver::{ApiError, FakeApiServer, FakeApiServerError, FakeApiServerOptions};
pub use behavior::{ContainerBehavior, ContainerMatch, ExecHandler, ExecReply, OnTerm, Run};
pub use channel_source::{ChannelSource, ChannelSourceSender};
pub use fake_runtime::{Call, FakeRuntime, Method, normalize_image};
pub use recording_reporter::RecordingReporter;
