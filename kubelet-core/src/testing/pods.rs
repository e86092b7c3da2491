//! Builders for pods in tests, so that scenarios read as what they set up.
//!
//! ```
//! use kubelet_core::testing::pods::{container, pod};
//!
//! let p = pod("web")
//!     .namespace("prod")
//!     .restart_policy("Never")
//!     .init_container(container("setup", "busybox").command(["sh", "-c", "true"]))
//!     .container(container("app", "nginx:1.27"))
//!     .grace_period(5)
//!     .build();
//! assert_eq!(p.metadata.uid.as_deref(), Some("uid-prod-web"));
//! ```

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, ContainerPort, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// Start a pod named `name` (namespace `default`, UID `uid-<namespace>-<name>` unless set).
pub fn pod(name: impl Into<String>) -> PodBuilder {
    PodBuilder {
        name: name.into(),
        namespace: "default".to_string(),
        uid: None,
        annotations: BTreeMap::new(),
        labels: BTreeMap::new(),
        spec: PodSpec::default(),
    }
}

/// Start a container named `name` running `image`.
pub fn container(name: impl Into<String>, image: impl Into<String>) -> ContainerBuilder {
    ContainerBuilder(Container {
        name: name.into(),
        image: Some(image.into()),
        ..Container::default()
    })
}

/// Builds a [`Pod`].
#[derive(Debug, Clone)]
pub struct PodBuilder {
    name: String,
    namespace: String,
    uid: Option<String>,
    annotations: BTreeMap<String, String>,
    labels: BTreeMap<String, String>,
    spec: PodSpec,
}

impl PodBuilder {
    /// Namespace.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// UID.
    pub fn uid(mut self, uid: impl Into<String>) -> Self {
        self.uid = Some(uid.into());
        self
    }

    /// Add an app container.
    pub fn container(mut self, container: ContainerBuilder) -> Self {
        self.spec.containers.push(container.0);
        self
    }

    /// Add an init container.
    pub fn init_container(mut self, container: ContainerBuilder) -> Self {
        self.spec
            .init_containers
            .get_or_insert_with(Vec::new)
            .push(container.0);
        self
    }

    /// `Always`, `OnFailure` or `Never`.
    pub fn restart_policy(mut self, policy: impl Into<String>) -> Self {
        self.spec.restart_policy = Some(policy.into());
        self
    }

    /// `terminationGracePeriodSeconds`.
    pub fn grace_period(mut self, seconds: i64) -> Self {
        self.spec.termination_grace_period_seconds = Some(seconds);
        self
    }

    /// `activeDeadlineSeconds`.
    pub fn active_deadline(mut self, seconds: i64) -> Self {
        self.spec.active_deadline_seconds = Some(seconds);
        self
    }

    /// Use the host's network.
    pub fn host_network(mut self) -> Self {
        self.spec.host_network = Some(true);
        self
    }

    /// `nodeName`.
    pub fn node_name(mut self, node: impl Into<String>) -> Self {
        self.spec.node_name = Some(node.into());
        self
    }

    /// Add an annotation.
    pub fn annotation(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.annotations.insert(key.into(), value.into());
        self
    }

    /// Add a label.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Change anything else in the spec.
    pub fn spec(mut self, f: impl FnOnce(&mut PodSpec)) -> Self {
        f(&mut self.spec);
        self
    }

    /// The pod.
    pub fn build(self) -> Pod {
        let uid = self
            .uid
            .unwrap_or_else(|| format!("uid-{}-{}", self.namespace, self.name));
        Pod {
            metadata: ObjectMeta {
                name: Some(self.name),
                namespace: Some(self.namespace),
                uid: Some(uid),
                annotations: (!self.annotations.is_empty()).then_some(self.annotations),
                labels: (!self.labels.is_empty()).then_some(self.labels),
                ..ObjectMeta::default()
            },
            spec: Some(self.spec),
            status: None,
        }
    }
}

/// Builds a [`Container`] of a pod spec.
#[derive(Debug, Clone)]
pub struct ContainerBuilder(Container);

impl ContainerBuilder {
    /// `command`.
    pub fn command<I, S>(mut self, command: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.0.command = Some(command.into_iter().map(Into::into).collect());
        self
    }

    /// `args`.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.0.args = Some(args.into_iter().map(Into::into).collect());
        self
    }

    /// `imagePullPolicy` (`Always`, `IfNotPresent`, `Never`).
    pub fn pull_policy(mut self, policy: impl Into<String>) -> Self {
        self.0.image_pull_policy = Some(policy.into());
        self
    }

    /// Expose a TCP container port.
    pub fn port(mut self, port: i32) -> Self {
        self.0
            .ports
            .get_or_insert_with(Vec::new)
            .push(ContainerPort {
                container_port: port,
                ..ContainerPort::default()
            });
        self
    }

    /// `restartPolicy` of the container (`Always` makes an init container a sidecar).
    pub fn restart_policy(mut self, policy: impl Into<String>) -> Self {
        self.0.restart_policy = Some(policy.into());
        self
    }

    /// Change anything else.
    pub fn with(mut self, f: impl FnOnce(&mut Container)) -> Self {
        f(&mut self.0);
        self
    }

    /// The container.
    pub fn build(self) -> Container {
        self.0
    }
}
