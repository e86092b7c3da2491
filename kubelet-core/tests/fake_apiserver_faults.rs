#![cfg(feature = "apiserver")]
//! Fault injection, outages, the request log, HTTPS with bearer tokens and client
//! certificates, kubeconfig files and discovery of the fake kube-apiserver.

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, PostParams, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::discovery::Discovery;
use kube::{Client, Config};
use kubelet_core::testing::FakeApiServer;
use kubelet_core::testing::apiserver::{
    FaultKind, FaultMatch, REAL_CLUSTER_ENV, TestApiServer, Verb,
};
use kubelet_core::testing::envtest;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const DEADLINE: Duration = Duration::from_secs(20);

async fn client_from(yaml: &str) -> Client {
    let kc = Kubeconfig::from_yaml(yaml).expect("kubeconfig parses");
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig is usable");
    Client::try_from(config).expect("client")
}

fn pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox:1.36"}]}
    }))
    .expect("pod")
}

fn api_code(e: kube::Error) -> (u16, String) {
    match e {
        kube::Error::Api(s) => (s.code, s.reason.clone()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// One raw HTTP/1.1 exchange, for what kube-rs does not show (headers).
async fn raw_get(server: &FakeApiServer, path: &str) -> String {
    let addr = server.url().trim_start_matches("http://").to_string();
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn injected_500_and_429_fail_only_the_matching_requests() {
    let server = FakeApiServer::start().await.unwrap();
    let client = client_from(&server.kubeconfig()).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    server.fail_next(
        FaultMatch::new(Verb::Create, "pods"),
        2,
        FaultKind::InternalError,
    );
    let nodes: Api<Node> = Api::all(client.clone());
    nodes.list(&ListParams::default()).await.unwrap();
    pods.list(&ListParams::default()).await.unwrap();
    for _ in 0..2 {
        assert_eq!(
            api_code(
                pods.create(&PostParams::default(), &pod("p"))
                    .await
                    .unwrap_err()
            ),
            (500, "InternalError".into())
        );
    }
    pods.create(&PostParams::default(), &pod("p"))
        .await
        .unwrap();

    server.fail_next(
        FaultMatch::new(Verb::Patch, "pods/status"),
        1,
        FaultKind::InternalError,
    );
    server.fail_next(
        FaultMatch {
            verb: Some(Verb::List),
            resource: None,
        },
        1,
        FaultKind::TooManyRequests {
            retry_after_seconds: 3,
        },
    );
    let resp = raw_get(&server, "/api/v1/namespaces/default/pods").await;
    let head = resp.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 429"), "{resp}");
    assert!(head.contains("retry-after: 3"), "{resp}");
    assert!(resp.contains("\"reason\":\"TooManyRequests\""), "{resp}");
    // The pods/status fault is still pending; a GET of the pod is not affected.
    pods.get("p").await.unwrap();
    let patch = kube::api::Patch::Merge(json!({"status": {"phase": "Running"}}));
    assert_eq!(
        api_code(
            pods.patch_status("p", &Default::default(), &patch)
                .await
                .unwrap_err()
        )
        .0,
        500
    );
    pods.patch_status("p", &Default::default(), &patch)
        .await
        .unwrap();

    let log = server.requests();
    let creates: Vec<_> = log
        .iter()
        .filter(|r| r.verb == Some(Verb::Create))
        .map(|r| r.status)
        .collect();
    assert_eq!(creates, [500, 500, 201]);
    let patch_req = log.iter().find(|r| r.verb == Some(Verb::Patch)).unwrap();
    assert_eq!(patch_req.path, "/api/v1/namespaces/default/pods/p/status");
    assert_eq!(patch_req.resource.as_deref(), Some("pods/status"));
    assert_eq!(
        patch_req.content_type.as_deref(),
        Some("application/merge-patch+json")
    );
}

#[tokio::test]
async fn an_outage_refuses_connections_and_cuts_watches_until_it_ends() {
    let server = FakeApiServer::start().await.unwrap();
    let client = client_from(&server.kubeconfig()).await;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let mut w = pods
        .watch(&WatchParams::default(), "0")
        .await
        .unwrap()
        .boxed();
    server.start_outage();
    let ended = tokio::time::timeout(DEADLINE, async {
        while let Some(ev) = w.next().await {
            if ev.is_err() {
                break;
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the open watch ends with the outage");
    let addr = server.url().trim_start_matches("http://").to_string();
    let refused = tokio::net::TcpStream::connect(&addr).await.unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    match pods.list(&ListParams::default()).await {
        Err(kube::Error::Api(s)) => panic!("an outage is not an API answer: {s:?}"),
        Err(_) => {}
        Ok(_) => panic!("a list succeeded during the outage"),
    }
    server.end_outage();
    // The same URL works again (the port is re-bound right away).
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        match pods.list(&ListParams::default()).await {
            Ok(_) => break,
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::debug!(error = %e, "not back yet");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("the server did not come back: {e}"),
        }
    }
}

#[tokio::test]
async fn https_with_a_bearer_token_or_a_client_certificate() {
    let server = FakeApiServer::start_tls().await.unwrap();
    assert!(server.url().starts_with("https://127.0.0.1:"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    server.write_kubeconfig(&path).unwrap();
    let kc = Kubeconfig::read_from(&path).unwrap();
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    let client = Client::try_from(config).unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod("p"))
        .await
        .unwrap();
    assert_eq!(client.apiserver_version().await.unwrap().major, "1");

    // A wrong token is 401; no credentials at all is anonymous and forbidden.
    let token = server.token().unwrap().to_string();
    let wrong = server.kubeconfig().replace(&token, "not-the-token");
    let bad: Api<Pod> = Api::namespaced(client_from(&wrong).await, "default");
    assert_eq!(
        api_code(bad.list(&ListParams::default()).await.unwrap_err()),
        (401, "Unauthorized".into())
    );
    let anonymous = server
        .kubeconfig()
        .replace(&format!("token: {token}"), "{}")
        .replace("user:\n    {}", "user: {}");
    let anon: Api<Pod> = Api::namespaced(client_from(&anonymous).await, "default");
    let (code, reason) = api_code(anon.list(&ListParams::default()).await.unwrap_err());
    assert_eq!((code, reason.as_str()), (403, "Forbidden"));

    // A client certificate: the user is its CN.
    let cert_config = server
        .kubeconfig_with_client_cert("system:node:n1", &["system:nodes"])
        .unwrap();
    let node_client = client_from(&cert_config).await;
    let nodes: Api<Node> = Api::all(node_client);
    nodes
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "n1"}})).unwrap(),
        )
        .await
        .unwrap();
    let users: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.verb == Some(Verb::Create))
        .map(|r| r.user)
        .collect();
    assert_eq!(
        users,
        [
            Some("kubelet-test".to_string()),
            Some("system:node:n1".to_string())
        ]
    );
}

#[tokio::test]
async fn discovery_finds_the_served_resources() {
    let server = FakeApiServer::start().await.unwrap();
    let client = client_from(&server.kubeconfig()).await;
    let discovery = Discovery::new(client).run().await.unwrap();
    let mut found = Vec::new();
    for group in discovery.groups() {
        for (ar, caps) in group.recommended_resources() {
            found.push(format!("{}/{} {:?}", ar.group, ar.plural, caps.scope));
        }
    }
    for want in [
        "/pods Namespaced",
        "/nodes Cluster",
        "/namespaces Cluster",
        "/configmaps Namespaced",
        "/secrets Namespaced",
        "/serviceaccounts Namespaced",
        "/events Namespaced",
        "events.k8s.io/events Namespaced",
        "coordination.k8s.io/leases Namespaced",
    ] {
        assert!(found.iter().any(|f| f == want), "{want} not in {found:?}");
    }
    let health = raw_get(&server, "/readyz").await;
    assert!(
        health.starts_with("HTTP/1.1 200") && health.ends_with("ok"),
        "{health}"
    );
}

#[tokio::test]
async fn tests_get_the_fake_unless_a_real_api_server_is_available() {
    if std::env::var_os(REAL_CLUSTER_ENV).is_some() {
        // Opted in: the test environment decides; nothing to check about the default.
        return;
    }
    let under_test = TestApiServer::from_env().await.unwrap();
    if envtest::assets_dir().is_none() {
        let fake = under_test.fake().expect("the fake by default");
        assert!(fake.url().starts_with("https://"));
    } else if envtest::required() {
        assert!(under_test.envtest().is_some(), "{under_test:?}");
    }
    // Either way: an admin kubeconfig, and a node's that may read its own Node.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    under_test.write_kubeconfig(&path).unwrap();
    let client = client_from(&std::fs::read_to_string(&path).unwrap()).await;
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client);
    namespaces.get("kube-node-lease").await.unwrap();
    let node = client_from(&under_test.node_kubeconfig("n1").unwrap()).await;
    let nodes: Api<Node> = Api::all(node);
    assert!(nodes.get_opt("n1").await.unwrap().is_none());
}

#[tokio::test]
async fn watch_1_and_a_watch_on_one_name_stream_json_lines() {
    let server = FakeApiServer::start().await.unwrap();
    server.create(&pod("a")).unwrap();
    server.create(&pod("b")).unwrap();
    let resp = tokio::time::timeout(
        DEADLINE,
        raw_get(
            &server,
            "/api/v1/namespaces/default/pods?watch=1&timeoutSeconds=1&fieldSelector=spec.nodeName%3Dn1",
        ),
    )
    .await
    .unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(
        resp.to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{resp}"
    );
    assert_eq!(resp.matches(r#""type":"ADDED""#).count(), 2, "{resp}");
    let one = tokio::time::timeout(
        DEADLINE,
        raw_get(
            &server,
            "/api/v1/namespaces/default/pods/b?watch=true&timeoutSeconds=1",
        ),
    )
    .await
    .unwrap();
    assert!(
        one.contains(r#""name":"b""#) && !one.contains(r#""name":"a""#),
        "{one}"
    );
    let watches: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.verb == Some(Verb::Watch))
        .map(|r| (r.name.clone(), r.query_param("fieldSelector")))
        .collect();
    assert_eq!(
        watches,
        [
            (None, Some("spec.nodeName=n1".to_string())),
            (Some("b".to_string()), None)
        ]
    );
}
