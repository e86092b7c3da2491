//! `kubelet-csi`: CSI volumes for the kubelet (not implemented yet).
//!
//! This crate will hold a `kubelet_core::VolumePlugin` for CSI node drivers: the node side
//! of the Container Storage Interface over gRPC on the drivers' unix sockets
//! (`NodeGetInfo`, `NodeGetCapabilities`, `NodeStageVolume`/`NodeUnstageVolume`,
//! `NodePublishVolume`/`NodeUnpublishVolume`, `NodeGetVolumeStats`), compiled from a proto of
//! our own with the CSI spec's field numbers (no maintained CSI crate exists), plus driver
//! registration through the kubelet plugin-registration socket directory
//! (`<root-dir>/plugins_registry`). It exists now so that the workspace has its final shape;
//! it deliberately has no behaviour until that work is done, and the kubelet does not
//! register it.
//!
//! ```
//! // Nothing to call yet: CSI volumes are refused by the kubelet with
//! // "no plugin supports this volume type" until this crate provides a plugin.
//! ```
