//! [`DriverRegistry`]: the CSI drivers registered on this node, and a stream of changes.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use tokio::sync::broadcast;

use crate::client::{CsiClient, CsiClientOptions, NodeInfo};
use crate::error::CsiError;
use crate::registration::CsiVersion;

/// How many events a slow subscriber may fall behind before it sees `Lagged`.
const EVENT_CAPACITY: usize = 256;

/// A CSI driver registered through the plugin registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredDriver {
    /// The driver name (`PluginInfo.name`, e.g. `hostpath.csi.k8s.io`).
    pub name: String,
    /// The driver's CSI endpoint, as the registrar gave it (or the registration socket).
    pub endpoint: String,
    /// The registrar socket the driver registered through.
    pub registration_socket: PathBuf,
    /// The highest CSI version both sides speak.
    pub version: CsiVersion,
    /// What the driver's `NodeGetInfo` said at registration.
    pub node: NodeInfo,
}

/// A change of the registered drivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriverEvent {
    /// A driver was registered, or registered again (e.g. after a restart) with new details.
    Registered(RegisteredDriver),
    /// A driver's registrar socket went away; the driver is forgotten.
    Removed(RegisteredDriver),
}

/// The registered CSI drivers by name, shared by the plugin watcher (writer) and the CSI
/// volume plugin and CSINode updater (readers). Cheap to clone.
///
/// Subscribers get every change as a [`DriverEvent`]; one that falls behind by more than
/// a few hundred events gets `RecvError::Lagged` and should re-read [`drivers`](Self::drivers).
#[derive(Debug, Clone)]
pub struct DriverRegistry {
    drivers: Arc<RwLock<HashMap<String, RegisteredDriver>>>,
    events: broadcast::Sender<DriverEvent>,
}

impl Default for DriverRegistry {
    fn default() -> Self {
        Self::new()
    }
}

impl DriverRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        DriverRegistry {
            drivers: Arc::default(),
            events,
        }
    }

    /// The driver registered as `name`.
    pub fn get(&self, name: &str) -> Option<RegisteredDriver> {
        self.read().get(name).cloned()
    }

    /// All registered drivers, by name.
    pub fn drivers(&self) -> Vec<RegisteredDriver> {
        let mut all: Vec<_> = self.read().values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Changes from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<DriverEvent> {
        self.events.subscribe()
    }

    /// A client of the driver registered as `name`, dialling on first use.
    pub fn client(&self, name: &str, options: CsiClientOptions) -> Result<CsiClient, CsiError> {
        let driver = self.get(name).ok_or_else(|| CsiError::InvalidRequest {
            op: "lookup",
            reason: format!("driver name {name} not found in the list of registered CSI drivers"),
        })?;
        Ok(CsiClient::connect_lazy(&driver.endpoint, options)?.with_driver_name(&driver.name))
    }

    /// Register `driver`, replacing one of the same name.
    pub fn insert(&self, driver: RegisteredDriver) {
        self.write().insert(driver.name.clone(), driver.clone());
        tracing::info!(driver = %driver.name, endpoint = %driver.endpoint, node_id = %driver.node.node_id, "CSI driver registered");
        // No subscriber is not an error.
        let _ = self.events.send(DriverEvent::Registered(driver));
    }

    /// Forget the driver `name` if it was registered through `registration_socket`; returns
    /// what was removed.
    pub fn remove(
        &self,
        name: &str,
        registration_socket: &std::path::Path,
    ) -> Option<RegisteredDriver> {
        let removed = {
            let mut drivers = self.write();
            match drivers.get(name) {
                Some(d) if d.registration_socket == registration_socket => drivers.remove(name),
                _ => None,
            }
        };
        if let Some(driver) = &removed {
            tracing::info!(driver = %driver.name, endpoint = %driver.endpoint, "CSI driver deregistered");
            let _ = self.events.send(DriverEvent::Removed(driver.clone()));
        }
        removed
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, RegisteredDriver>> {
        // The map is always left consistent, so a panic elsewhere does not spoil it.
        self.drivers.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, RegisteredDriver>> {
        self.drivers.write().unwrap_or_else(|e| e.into_inner())
    }
}
