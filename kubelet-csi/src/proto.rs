//! The generated gRPC types.

/// CSI spec v1 (`csi.v1`): the Identity and Node services and their messages.
pub mod csi {
    /// Package `csi.v1`.
    #[allow(missing_docs, clippy::all)]
    pub mod v1 {
        tonic::include_proto!("csi.v1");
    }
}

/// The kubelet plugin registration API v1 (proto package `pluginregistration`).
#[allow(missing_docs, clippy::all)]
pub mod pluginregistration {
    tonic::include_proto!("pluginregistration");
}
