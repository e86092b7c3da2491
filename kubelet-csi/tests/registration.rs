//! The plugin watcher end to end: example driver and registrar on real unix sockets in a
//! temporary `<root-dir>/plugins_registry/`.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use kubelet_csi::testing::{Fault, HostPathDriver, HostPathOptions, Registrar, ServerHandle};
use kubelet_csi::{
    CsiClientOptions, CsiVersion, DriverEvent, DriverRegistry, PluginWatcher, PluginWatcherHandle,
    PluginWatcherOptions,
};
use support::{eventually, within};
use tonic::Code;

fn watch(root: &Path, registry: &DriverRegistry) -> PluginWatcherHandle {
    support::init_tracing();
    let mut options = PluginWatcherOptions::for_root_dir(root);
    options.resync_interval = Duration::from_millis(200);
    options.call_timeout = Duration::from_secs(5);
    options.initial_retry_delay = Duration::from_millis(100);
    options.max_retry_delay = Duration::from_millis(400);
    PluginWatcher::new(options, registry.clone())
        .spawn()
        .expect("start watcher")
}

async fn driver(root: &Path, name: &str) -> (HostPathDriver, ServerHandle) {
    let mut options = HostPathOptions::new(name, "node-a", root.join("state").join(name));
    options.max_volumes_per_node = 7;
    options.topology = BTreeMap::from([("topology.hostpath.test/node".into(), "node-a".into())]);
    let driver = HostPathDriver::new(options);
    let server = driver
        .serve(&root.join("plugins").join(name).join("csi.sock"))
        .await
        .expect("serve driver");
    (driver, server)
}

fn registration_socket(root: &Path, name: &str) -> std::path::PathBuf {
    root.join("plugins_registry")
        .join(format!("{name}-reg.sock"))
}

#[tokio::test]
async fn driver_appears_registers_and_goes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let registry = DriverRegistry::new();
    let mut events = registry.subscribe();
    let watcher = watch(root, &registry);
    assert!(
        root.join("plugins_registry").is_dir(),
        "watcher creates the directory"
    );

    let name = "hostpath.csi.kubelet.test";
    let (driver, server) = driver(root, name).await;
    let registrar = Registrar::csi(name, server.socket())
        .serve(&registration_socket(root, name))
        .await
        .expect("serve registrar");

    let event = within("Registered event", events.recv())
        .await
        .expect("event");
    let DriverEvent::Registered(registered) = event else {
        panic!("expected Registered, got {event:?}");
    };
    assert_eq!(registered.name, name);
    assert_eq!(registered.endpoint, server.socket().display().to_string());
    assert_eq!(registered.registration_socket, registrar.socket());
    assert_eq!(
        registered.version,
        CsiVersion {
            major: 1,
            minor: 0,
            patch: 0
        }
    );
    assert_eq!(registered.node.node_id, "node-a");
    assert_eq!(registered.node.max_volumes_per_node, Some(7));
    assert_eq!(
        registered
            .node
            .topology
            .get("topology.hostpath.test/node")
            .map(String::as_str),
        Some("node-a")
    );
    assert_eq!(registry.get(name), Some(registered.clone()));
    assert!(driver.calls().iter().any(|c| c == "NodeGetInfo"));

    let status = within("registration status", registrar.first_status()).await;
    assert!(status.plugin_registered, "{status:?}");
    assert!(status.error.is_empty());

    // The registry hands out working clients of the driver.
    let client = registry
        .client(name, CsiClientOptions::default())
        .expect("client");
    assert_eq!(
        client.get_plugin_info().await.expect("GetPluginInfo").name,
        name
    );

    // The registrar goes away: the driver is forgotten.
    registrar.stop().await;
    let event = within("Removed event", events.recv()).await.expect("event");
    assert_eq!(event, DriverEvent::Removed(registered));
    assert!(registry.get(name).is_none());
    assert!(registry.drivers().is_empty());

    watcher.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn sockets_present_before_the_watcher_starts_are_registered() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let name = "early.csi.kubelet.test";
    let (_driver, server) = driver(root, name).await;
    let registrar = Registrar::csi(name, server.socket())
        .with_versions(&["0.3.0", "1.2.0", "2.0.0"])
        .serve(&registration_socket(root, name))
        .await
        .expect("serve registrar");
    // A stray non-socket file is ignored.
    std::fs::write(root.join("plugins_registry/notes.txt"), "not a socket").expect("write");

    let registry = DriverRegistry::new();
    let _watcher = watch(root, &registry);
    eventually("early driver registered", || registry.get(name).is_some()).await;
    let registered = registry.get(name).expect("registered");
    assert_eq!(registered.version.to_string(), "1.2.0");
    assert_eq!(registry.drivers().len(), 1);
    assert!(
        within("status", registrar.first_status())
            .await
            .plugin_registered
    );

    // A registrar in a subdirectory created later is found too, as the reference walks them.
    let nested = "nested.csi.kubelet.test";
    let (_nested_driver, nested_server) = driver(root, nested).await;
    let nested_registrar = Registrar::csi(nested, nested_server.socket())
        .serve(
            &root
                .join("plugins_registry/sub/dir")
                .join(format!("{nested}-reg.sock")),
        )
        .await
        .expect("serve nested registrar");
    eventually("nested driver registered", || {
        registry.get(nested).is_some()
    })
    .await;
    assert!(
        within("nested status", nested_registrar.first_status())
            .await
            .plugin_registered
    );
}

#[tokio::test]
async fn unsupported_versions_are_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let registry = DriverRegistry::new();
    let _watcher = watch(root, &registry);
    let name = "future.csi.kubelet.test";
    let (driver, server) = driver(root, name).await;
    let registrar = Registrar::csi(name, server.socket())
        .with_versions(&["0.3.0", "2.0.0"])
        .serve(&registration_socket(root, name))
        .await
        .expect("serve registrar");

    let status = within("registration status", registrar.first_status()).await;
    assert!(!status.plugin_registered);
    assert!(
        status.error.contains("plugin validation failed"),
        "{}",
        status.error
    );
    assert!(status.error.contains("2.0.0"), "{}", status.error);
    assert!(registry.get(name).is_none());
    assert!(
        !driver.calls().iter().any(|c| c == "NodeGetInfo"),
        "no NodeGetInfo for a refused driver"
    );
}

#[tokio::test]
async fn other_plugin_types_are_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let registry = DriverRegistry::new();
    let _watcher = watch(root, &registry);
    let name = "example.com/gpu";
    let registrar = Registrar::csi("gpu", &root.join("dp.sock"))
        .with_type("DevicePlugin")
        .serve(&root.join("plugins_registry/gpu.sock"))
        .await
        .expect("serve registrar");
    let status = within("registration status", registrar.first_status()).await;
    assert!(!status.plugin_registered);
    assert!(status.error.contains("DevicePlugin"), "{}", status.error);
    assert!(registry.get(name).is_none() && registry.get("gpu").is_none());
}

#[tokio::test]
async fn failing_node_get_info_is_refused_then_retried() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let registry = DriverRegistry::new();
    let _watcher = watch(root, &registry);
    let name = "flaky.csi.kubelet.test";
    let (driver, server) = driver(root, name).await;
    driver.inject(
        "NodeGetInfo",
        Fault::Status(Code::Internal, "disk on fire".into()),
    );
    let registrar = Registrar::csi(name, server.socket())
        .serve(&registration_socket(root, name))
        .await
        .expect("serve registrar");

    let status = within("registration status", registrar.first_status()).await;
    assert!(!status.plugin_registered);
    assert!(status.error.contains("NodeGetInfo"), "{}", status.error);
    assert!(status.error.contains("disk on fire"), "{}", status.error);
    assert!(registry.get(name).is_none());

    // Once the driver recovers, the watcher's retry registers it.
    driver.clear("NodeGetInfo");
    eventually("driver registered after recovery", || {
        registry.get(name).is_some()
    })
    .await;
    eventually("registrar told", || {
        registrar
            .statuses()
            .last()
            .is_some_and(|s| s.plugin_registered)
    })
    .await;
}

#[tokio::test]
async fn a_replaced_socket_registers_again() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let registry = DriverRegistry::new();
    let mut events = registry.subscribe();
    let _watcher = watch(root, &registry);
    let name = "restart.csi.kubelet.test";
    let (_driver, server) = driver(root, name).await;
    let socket = registration_socket(root, name);
    let first = Registrar::csi(name, server.socket())
        .serve(&socket)
        .await
        .expect("serve registrar");
    let event = within("first registration", events.recv())
        .await
        .expect("event");
    assert!(matches!(event, DriverEvent::Registered(_)), "{event:?}");

    // The registrar restarts: its socket is removed and recreated at the same path.
    first.stop().await;
    let second = Registrar::csi(name, server.socket())
        .serve(&socket)
        .await
        .expect("serve registrar again");
    assert!(
        within("second status", second.first_status())
            .await
            .plugin_registered
    );
    // The old registration is dropped before the new one is made.
    let event = within("removal", events.recv()).await.expect("event");
    assert!(matches!(event, DriverEvent::Removed(_)), "{event:?}");
    let event = within("re-registration", events.recv())
        .await
        .expect("event");
    assert!(matches!(event, DriverEvent::Registered(_)), "{event:?}");
    eventually("registered again", || registry.get(name).is_some()).await;
}
