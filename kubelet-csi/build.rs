//! Compiles the crate's own protos: the CSI v1 node-side API and the kubelet plugin
//! registration API. Needs `protoc` (Debian: protobuf-compiler, see scripts/install-deps.sh).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/csi.proto", "proto/pluginregistration.proto"];
    // wrappers.proto is only imported (prost maps google.protobuf.BoolValue to Option<bool>).
    for proto in protos
        .iter()
        .chain(&["proto/google/protobuf/wrappers.proto"])
    {
        println!("cargo:rerun-if-changed={proto}");
    }
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_protos(&protos, &["proto"])?;
    Ok(())
}
