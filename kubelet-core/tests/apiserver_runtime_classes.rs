#![cfg(feature = "apiserver")]
//! RuntimeClasses read from the real kube-apiserver with the node's own credentials (the
//! Node authorizer must let a node read them), as `ApiRuntimeClasses` does for sandboxes.
//!
//! Skipped (with a message) unless `KUBELET_TEST_ASSETS` is set; failed instead when
//! `KUBELET_TEST_REQUIRE_ENVTEST=1`.

use std::time::Duration;

use k8s_openapi::api::node::v1::RuntimeClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, PostParams};
use kubelet_core::apiserver::{ApiRuntimeClasses, ClientSource, NodeClient};
use kubelet_core::runtime_class::{RuntimeClassError, RuntimeClasses};
use kubelet_core::testing::envtest::{self, ASSETS_ENV, Envtest, REQUIRE_ENV};

const NODE: &str = "node-rc";

async fn start() -> Option<Envtest> {
    match Envtest::from_env().await {
        Ok(Some(env)) => Some(env),
        Ok(None) if envtest::required() => panic!("{REQUIRE_ENV}=1 but {ASSETS_ENV} is not set"),
        Ok(None) => {
            eprintln!("SKIPPED: {ASSETS_ENV} is not set (a directory with kube-apiserver)");
            None
        }
        Err(e) => panic!("envtest: {e}"),
    }
}

async fn admin(env: &Envtest) -> kube::Client {
    let file = kube::config::Kubeconfig::from_yaml(&env.kubeconfig()).expect("kubeconfig YAML");
    let config = kube::Config::from_custom_kubeconfig(file, &Default::default())
        .await
        .expect("client config");
    kube::Client::try_from(config).expect("kube client")
}

fn class(name: &str, handler: &str) -> RuntimeClass {
    RuntimeClass {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        handler: handler.into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_reads_runtime_class_handlers_and_unknown_classes_are_not_found() {
    let Some(env) = start().await else {
        return;
    };
    let classes: Api<RuntimeClass> = Api::all(admin(&env).await);
    classes
        .create(&PostParams::default(), &class("sandboxed", "runsc"))
        .await
        .expect("create RuntimeClass");

    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("node.kubeconfig");
    std::fs::write(
        &kubeconfig,
        env.node_kubeconfig(NODE).expect("node kubeconfig"),
    )
    .expect("write kubeconfig");
    let client = NodeClient::connect(&ClientSource::Kubeconfig(kubeconfig), NODE)
        .await
        .expect("node client");
    let lookup = ApiRuntimeClasses::new(client).with_ttl(Duration::ZERO);

    assert_eq!(lookup.handler("sandboxed").await, Ok("runsc".to_string()));
    let err = lookup.handler("kata").await.expect_err("kata is unknown");
    assert_eq!(err, RuntimeClassError::NotFound("kata".into()));
    assert_eq!(
        err.to_string(),
        "runtimeclass.node.k8s.io \"kata\" not found"
    );

    // Created later, it is found at the next lookup.
    classes
        .create(&PostParams::default(), &class("kata", "kata-qemu"))
        .await
        .expect("create RuntimeClass");
    assert_eq!(lookup.handler("kata").await, Ok("kata-qemu".to_string()));
    classes
        .delete("kata", &DeleteParams::default())
        .await
        .expect("delete RuntimeClass");
    assert!(matches!(
        lookup.handler("kata").await,
        Err(RuntimeClassError::NotFound(_))
    ));
}
