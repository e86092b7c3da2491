//! The node Lease: `kube-node-lease/<node>`, the node's heartbeat.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use tracing::debug;

use super::error::{report_error, status_code};
use super::reporter::Inner;
use crate::error::ReportError;

/// Tries of one renewal when the Lease changed underneath us (the reference's
/// `maxUpdateRetries`).
const MAX_UPDATE_TRIES: usize = 5;

impl Inner {
    /// Updates the Lease with a new renewTime (conditional on the resourceVersion last seen),
    /// creating it when it does not exist; on a conflict it reads the Lease again and retries.
    pub async fn renew_lease(&self, node_name: &str) -> Result<(), ReportError> {
        let api: Api<Lease> = Api::namespaced(self.kube(), &self.config.lease_namespace);
        let what = format!("leases {}/{node_name}", self.config.lease_namespace);
        let mut cached = self.lease.lock().await;
        let mut last_err = None;
        for _ in 0..MAX_UPDATE_TRIES {
            let current = match cached.take() {
                Some(lease) => lease,
                None => match self.timed(api.get(node_name)).await {
                    Ok(lease) => lease,
                    Err(err) if status_code(&err) == Some(404) => {
                        let lease = self.new_lease(node_name).await?;
                        match self.timed(api.create(&PostParams::default(), &lease)).await {
                            Ok(created) => {
                                debug!(lease = %what, "node lease created");
                                *cached = Some(created);
                                return Ok(());
                            }
                            // Created meanwhile: read it and update it.
                            Err(err) if status_code(&err) == Some(409) => {
                                last_err = Some(report_error(&format!("create {what}"), &err));
                                continue;
                            }
                            Err(err) => return Err(report_error(&format!("create {what}"), &err)),
                        }
                    }
                    Err(err) => return Err(report_error(&format!("get {what}"), &err)),
                },
            };
            let mut lease = current.clone();
            self.renew(&mut lease, node_name).await?;
            match self
                .timed(api.replace(node_name, &PostParams::default(), &lease))
                .await
            {
                Ok(updated) => {
                    *cached = Some(updated);
                    return Ok(());
                }
                Err(err) if matches!(status_code(&err), Some(409 | 404)) => {
                    // Someone else wrote it (or deleted it): start from the server's copy.
                    last_err = Some(report_error(&format!("update {what}"), &err));
                }
                Err(err) => {
                    // Keep the copy we had: the next try may still be valid.
                    *cached = Some(current);
                    return Err(report_error(&format!("update {what}"), &err));
                }
            }
        }
        Err(last_err.unwrap_or_else(|| ReportError::Conflict(format!("update {what}"))))
    }

    async fn new_lease(&self, node_name: &str) -> Result<Lease, ReportError> {
        let mut lease = Lease {
            metadata: ObjectMeta {
                name: Some(node_name.to_string()),
                namespace: Some(self.config.lease_namespace.clone()),
                ..Default::default()
            },
            spec: Some(LeaseSpec::default()),
        };
        self.renew(&mut lease, node_name).await?;
        Ok(lease)
    }

    /// Holder, duration and renew time; the owner reference to the Node when missing.
    async fn renew(&self, lease: &mut Lease, node_name: &str) -> Result<(), ReportError> {
        let spec = lease.spec.get_or_insert_with(Default::default);
        spec.holder_identity = Some(node_name.to_string());
        spec.lease_duration_seconds = Some(self.config.lease_duration_seconds);
        spec.renew_time = Some(MicroTime(k8s_openapi::jiff::Timestamp::now()));
        if lease
            .metadata
            .owner_references
            .as_ref()
            .is_none_or(Vec::is_empty)
        {
            // Without a Node there is no owner yet; the Lease still serves as heartbeat and
            // gets its owner on a later renewal (as the reference does).
            match self.node_owner().await {
                Ok(owner) if !owner.uid.is_empty() => {
                    lease.metadata.owner_references = Some(vec![owner]);
                }
                Ok(_) | Err(ReportError::NotFound(_)) => {}
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }
}
