//! [`Registrar`]: the plugin side of the registration API, as node-driver-registrar serves it.

use std::path::Path;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tonic::{Request, Response, Status};

use crate::error::CsiError;
use crate::proto::pluginregistration as reg;
use crate::proto::pluginregistration::registration_server::{Registration, RegistrationServer};
use crate::registration::CSI_PLUGIN_TYPE;
use crate::testing::server::{self, ServerHandle};

/// A registrar offering one [`PluginInfo`](reg::PluginInfo).
#[derive(Debug, Clone)]
pub struct Registrar {
    info: reg::PluginInfo,
}

impl Registrar {
    /// A registrar of the CSI driver `name` whose CSI socket is `endpoint`, speaking CSI 1.0.0
    /// (what node-driver-registrar announces).
    pub fn csi(name: &str, endpoint: &Path) -> Self {
        Registrar {
            info: reg::PluginInfo {
                r#type: CSI_PLUGIN_TYPE.to_string(),
                name: name.to_string(),
                endpoint: endpoint.display().to_string(),
                supported_versions: vec!["1.0.0".to_string()],
            },
        }
    }

    /// Offer `versions` instead.
    pub fn with_versions(mut self, versions: &[&str]) -> Self {
        self.info.supported_versions = versions.iter().map(|v| v.to_string()).collect();
        self
    }

    /// Offer the plugin type `r#type` instead of `CSIPlugin`.
    pub fn with_type(mut self, r#type: &str) -> Self {
        self.info.r#type = r#type.to_string();
        self
    }

    /// Serve on `socket` (normally in `<root-dir>/plugins_registry/`).
    pub async fn serve(self, socket: &Path) -> Result<RegistrarHandle, CsiError> {
        let (tx, rx) = watch::channel(Vec::new());
        let service = RegistrarService {
            info: self.info,
            statuses: Arc::new(Mutex::new(tx)),
        };
        let router =
            tonic::transport::Server::builder().add_service(RegistrationServer::new(service));
        let server = server::serve(router, socket).await?;
        Ok(RegistrarHandle {
            server,
            statuses: rx,
        })
    }
}

/// A serving [`Registrar`]. Dropping it stops the server and removes the socket.
#[derive(Debug)]
pub struct RegistrarHandle {
    server: ServerHandle,
    statuses: watch::Receiver<Vec<reg::RegistrationStatus>>,
}

impl RegistrarHandle {
    /// The registration socket.
    pub fn socket(&self) -> &Path {
        self.server.socket()
    }

    /// Every `NotifyRegistrationStatus` received so far.
    pub fn statuses(&self) -> Vec<reg::RegistrationStatus> {
        self.statuses.borrow().clone()
    }

    /// Wait for the first `NotifyRegistrationStatus`.
    pub async fn first_status(&self) -> reg::RegistrationStatus {
        let mut rx = self.statuses.clone();
        loop {
            if let Some(first) = rx.borrow_and_update().first() {
                return first.clone();
            }
            if rx.changed().await.is_err() {
                // The server is gone; nothing more will come. Wait forever like a stuck
                // plugin would, the caller's deadline decides.
                std::future::pending::<()>().await;
            }
        }
    }

    /// Stop serving and remove the socket.
    pub async fn stop(self) {
        self.server.stop().await;
    }
}

#[derive(Debug)]
struct RegistrarService {
    info: reg::PluginInfo,
    statuses: Arc<Mutex<watch::Sender<Vec<reg::RegistrationStatus>>>>,
}

#[tonic::async_trait]
impl Registration for RegistrarService {
    async fn get_info(
        &self,
        _request: Request<reg::InfoRequest>,
    ) -> Result<Response<reg::PluginInfo>, Status> {
        Ok(Response::new(self.info.clone()))
    }

    async fn notify_registration_status(
        &self,
        request: Request<reg::RegistrationStatus>,
    ) -> Result<Response<reg::RegistrationStatusResponse>, Status> {
        let status = request.into_inner();
        tracing::info!(plugin = %self.info.name, registered = status.plugin_registered, error = %status.error, "registration status");
        let tx = self.statuses.lock().unwrap_or_else(|e| e.into_inner());
        tx.send_modify(|all| all.push(status));
        Ok(Response::new(reg::RegistrationStatusResponse {}))
    }
}
