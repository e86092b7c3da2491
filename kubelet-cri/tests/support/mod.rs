//! Shared by the test binaries of the kubelet's server on real containerd; each uses part.

pub mod node;
pub mod spdy;
