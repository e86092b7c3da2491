//! The example hostpath CSI driver with its registrar, and the kubelet's plugin watcher, on
//! one root directory: how a CSI node driver plugs into a kubelet.
//!
//! ```text
//! sudo cargo run -p kubelet-csi --features testing --example hostpath_driver -- /tmp/kubelet-root
//! ```
//!
//! The driver serves CSI on `<root>/plugins/hostpath.csi.example/csi.sock` and registers
//! through `<root>/plugins_registry/hostpath.csi.example-reg.sock`, as a driver DaemonSet
//! with node-driver-registrar would; the watcher (the kubelet's side) registers it and prints
//! what it learned. Stop with Ctrl-C.

use std::path::PathBuf;

use kubelet_csi::testing::{HostPathDriver, HostPathOptions, Registrar};
use kubelet_csi::{DriverEvent, DriverRegistry, PluginWatcher, PluginWatcherOptions};

const NAME: &str = "hostpath.csi.example";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let root = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("kubelet-csi-example"));

    // The kubelet's side: watch <root>/plugins_registry and keep a registry of drivers.
    let registry = DriverRegistry::new();
    let mut events = registry.subscribe();
    let watcher =
        PluginWatcher::new(PluginWatcherOptions::for_root_dir(&root), registry.clone()).spawn()?;

    // The driver's side: CSI on its socket, registration on the registry socket.
    let driver = HostPathDriver::new(HostPathOptions::new(
        NAME,
        "example-node",
        root.join("hostpath"),
    ));
    let server = driver
        .serve(&root.join("plugins").join(NAME).join("csi.sock"))
        .await?;
    let registrar = Registrar::csi(NAME, server.socket())
        .serve(
            &root
                .join("plugins_registry")
                .join(format!("{NAME}-reg.sock")),
        )
        .await?;

    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            event = events.recv() => match event {
                Ok(DriverEvent::Registered(d)) => println!(
                    "registered {} at {} (CSI {}, node ID {}, max volumes {:?}, topology {:?})",
                    d.name, d.endpoint, d.version, d.node.node_id, d.node.max_volumes_per_node, d.node.topology
                ),
                Ok(DriverEvent::Removed(d)) => println!("removed {}", d.name),
                Err(e) => println!("event stream: {e}"),
            },
        }
    }
    registrar.stop().await;
    server.stop().await;
    watcher.stop().await;
    Ok(())
}
