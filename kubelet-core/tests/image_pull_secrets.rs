//! `imagePullSecrets`: the matching credentials of a pod's pull secrets go with the pull,
//! tried in order until one works; a secret that cannot be read is reported and skipped.

mod support {
    // Shared by the scenario test files; each uses part of it.
    #[allow(dead_code)]
    pub mod scenario;
}

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{LocalObjectReference, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kubelet_core::objects::StaticPodObjects;
use kubelet_core::testing::pods::{container, pod};

use support::scenario::{Node, runtime};

const PRIVATE: &str = "registry.example.com/team/app:1.0";

fn pull_secret(name: &str, registry: &str, user: &str, password: &str) -> Secret {
    let config = serde_json::json!({"auths": {registry: {"username": user, "password": password}}});
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("shop".into()),
            ..Default::default()
        },
        type_: Some("kubernetes.io/dockerconfigjson".into()),
        data: Some(BTreeMap::from([(
            ".dockerconfigjson".to_string(),
            ByteString(config.to_string().into_bytes()),
        )])),
        ..Default::default()
    }
}

#[tokio::test(start_paused = true)]
async fn pull_secrets_are_tried_in_order_and_a_missing_one_is_reported() {
    let rt = runtime();
    rt.add_private_registry_image(PRIVATE, "robot", "right");
    let objects = StaticPodObjects::default();
    // The more specific registry key is tried first, and fails; the host-wide one works.
    objects.put_secret(pull_secret(
        "team-creds",
        "registry.example.com/team",
        "robot",
        "wrong",
    ));
    objects.put_secret(pull_secret(
        "host-creds",
        "https://registry.example.com",
        "robot",
        "right",
    ));
    objects.put_secret(pull_secret(
        "hub-creds",
        "https://index.docker.io/v1/",
        "hub",
        "x",
    ));
    let node = Node::start_with(rt.clone(), {
        let objects = objects.clone();
        move |b| b.pod_objects(Arc::new(objects))
    });
    let p = pod("web")
        .namespace("shop")
        .container(container("app", PRIVATE))
        .spec(|s| {
            s.image_pull_secrets = Some(
                ["absent", "host-creds", "team-creds", "hub-creds"]
                    .into_iter()
                    .map(|n| LocalObjectReference { name: n.into() })
                    .collect(),
            );
        })
        .build();
    let uid = p.metadata.uid.clone().unwrap_or_default();
    node.pods.snapshot(vec![p]);
    node.until(Duration::from_secs(60), "Running", |n| {
        n.reporter.last_phase(&uid).as_deref() == Some("Running")
    })
    .await;
    let pulls: Vec<Option<String>> = rt.pulls().into_iter().map(|(_, user)| user).collect();
    assert_eq!(
        pulls,
        vec![Some("robot".to_string()), Some("robot".to_string())]
    );
    let missing = node
        .reporter
        .events_with_reason("FailedToRetrieveImagePullSecret");
    assert_eq!(missing.len(), 1, "{missing:?}");
    assert_eq!(
        missing[0].message,
        "Unable to retrieve some image pull secrets (absent); attempting to pull the image may not succeed."
    );
    node.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn without_matching_credentials_the_pull_is_anonymous_and_fails_with_the_registry_error() {
    let rt = runtime();
    rt.add_private_registry_image(PRIVATE, "robot", "right");
    let objects = StaticPodObjects::default();
    objects.put_secret(pull_secret("other", "quay.io", "q", "p"));
    let node = Node::start_with(rt.clone(), {
        let objects = objects.clone();
        move |b| b.pod_objects(Arc::new(objects))
    });
    let p = pod("web")
        .namespace("shop")
        .container(container("app", PRIVATE))
        .spec(|s| {
            s.image_pull_secrets = Some(vec![LocalObjectReference {
                name: "other".into(),
            }]);
        })
        .build();
    let uid = p.metadata.uid.clone().unwrap_or_default();
    node.pods.snapshot(vec![p]);
    let reason = |n: &Node| {
        n.reporter
            .last_pod_status(&uid)
            .and_then(|s| s.container_statuses)
            .and_then(|cs| cs.into_iter().next())
            .and_then(|c| c.state)
            .and_then(|s| s.waiting)
            .map(|w| (w.reason.unwrap_or_default(), w.message.unwrap_or_default()))
    };
    node.until(Duration::from_secs(60), "ErrImagePull", |n| {
        reason(n).is_some_and(|(r, _)| r == "ErrImagePull")
    })
    .await;
    let (_, message) = reason(&node).expect("waiting");
    assert!(message.contains("401 Unauthorized"), "{message}");
    assert_eq!(rt.pulls()[0].1, None);
    node.shutdown().await;
}
