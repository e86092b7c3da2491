#![cfg(feature = "apiserver")]
//! The envtest harness against the real kube-apiserver it starts: what it prepares is what
//! admission needs, node credentials are held to a node's rights, service-account tokens
//! verify, and it leaves no process or directory behind, after a panic too.
//!
//! Skipped (with a message) unless `KUBELET_TEST_ASSETS` is set; failed instead when
//! `KUBELET_TEST_REQUIRE_ENVTEST=1`.

use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenReview};
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, Secret, ServiceAccount};
use kube::api::{Api, PostParams};
use kubelet_core::testing::envtest::{self, ASSETS_ENV, Envtest, REQUIRE_ENV};
use serde_json::json;

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

async fn client(kubeconfig: &str) -> kube::Client {
    let file = kube::config::Kubeconfig::from_yaml(kubeconfig).expect("kubeconfig YAML");
    let config = kube::Config::from_custom_kubeconfig(file, &Default::default())
        .await
        .expect("client config");
    kube::Client::try_from(config).expect("kube client")
}

fn api_status(err: &kube::Error) -> Option<u16> {
    match err {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_api_server_admits_pods_and_holds_nodes_to_their_rights() {
    let Some(env) = start().await else {
        return;
    };
    let admin = client(&env.kubeconfig()).await;

    // What the controllers would have made: the default ServiceAccount and the root CA
    // ConfigMap, with our CA in it.
    let sa: Api<ServiceAccount> = Api::namespaced(admin.clone(), "kube-system");
    assert!(sa.get_opt("default").await.expect("get SA").is_some());
    let cms: Api<ConfigMap> = Api::namespaced(admin.clone(), "default");
    let root_ca = cms.get("kube-root-ca.crt").await.expect("kube-root-ca.crt");
    assert_eq!(
        root_ca
            .data
            .expect("data")
            .get("ca.crt")
            .map(String::as_str),
        Some(env.ca_pem())
    );

    // ServiceAccount admission takes a plain pod and adds the kube-api-access volume.
    let pods: Api<Pod> = Api::namespaced(admin.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p1"},
        "spec": {"nodeName": "node-a", "containers": [{"name": "c", "image": "busybox"}]},
    }))
    .expect("pod JSON");
    let created = pods
        .create(&PostParams::default(), &pod)
        .await
        .expect("the real server admits a plain pod");
    let spec = created.spec.expect("spec");
    assert_eq!(spec.service_account_name.as_deref(), Some("default"));
    let volumes = spec.volumes.unwrap_or_default();
    assert!(
        volumes
            .iter()
            .any(|v| v.name.starts_with("kube-api-access-")),
        "{volumes:?}"
    );

    // A node's certificate: it may read its own Node (absent yet) and the pods bound to it,
    // not Secrets at large, and NodeRestriction refuses it a pod that is not a mirror pod.
    let node = client(&env.node_kubeconfig("node-a").expect("node kubeconfig")).await;
    let nodes: Api<Node> = Api::all(node.clone());
    assert!(
        nodes
            .get_opt("node-a")
            .await
            .expect("get own node")
            .is_none()
    );
    let node_pods: Api<Pod> = Api::namespaced(node.clone(), "default");
    assert!(node_pods.get("p1").await.is_ok());
    let secrets: Api<Secret> = Api::all(node.clone());
    let err = secrets.list(&Default::default()).await.expect_err("403");
    assert_eq!(api_status(&err), Some(403), "{err}");
    let mut other = pod.clone();
    other.metadata.name = Some("p2".into());
    let err = node_pods
        .create(&PostParams::default(), &other)
        .await
        .expect_err("NodeRestriction");
    assert_eq!(api_status(&err), Some(403), "{err}");

    // Service-account tokens are signed with our key and verify with its public half.
    let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), "default");
    let request: TokenRequest = serde_json::from_value(json!({
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "spec": {"audiences": [envtest::SERVICE_ACCOUNT_ISSUER], "expirationSeconds": 3600},
    }))
    .expect("TokenRequest JSON");
    let token = accounts
        .create_token_request("default", &PostParams::default(), &request)
        .await
        .expect("TokenRequest")
        .status
        .expect("token")
        .token;
    let reviews: Api<TokenReview> = Api::all(admin.clone());
    let review: TokenReview = serde_json::from_value(json!({
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
        "spec": {"token": token},
    }))
    .expect("TokenReview JSON");
    let status = reviews
        .create(&PostParams::default(), &review)
        .await
        .expect("TokenReview")
        .status
        .expect("review status");
    assert_eq!(status.authenticated, Some(true), "{status:?}");
    assert_eq!(
        status.user.and_then(|u| u.username).as_deref(),
        Some("system:serviceaccount:default:default")
    );

    // The kubelet client certificate exists where the flags say.
    assert!(env.kubelet_client_cert_path().is_file());
    assert!(env.kubelet_client_key_path().is_file());
}

fn alive(pid: u32) -> bool {
    // A reaped child's /proc entry is gone (a zombie would still show one).
    Path::new(&format!("/proc/{pid}")).exists()
}

async fn assert_gone(pids: &[u32], dir: &Path) {
    // Drop waits for both processes, so this is immediate; the loop only absorbs a PID
    // that the kernel has not finished tearing down.
    let deadline = Instant::now() + Duration::from_secs(5);
    while pids.iter().any(|p| alive(*p)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for pid in pids {
        assert!(!alive(*pid), "process {pid} left behind");
    }
    assert!(!dir.exists(), "{} left behind", dir.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_test_leaves_no_process_or_directory() {
    let Some(env) = start().await else {
        return;
    };
    let pids: Vec<u32> = [env.apiserver_pid(), env.etcd_pid()]
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(pids.len(), 2);
    let dir = env.dir().to_path_buf();
    assert!(dir.is_dir());
    let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let _env = env;
        panic!("a test failing while it holds the envtest");
    }));
    assert!(unwound.is_err());
    assert_gone(&pids, &dir).await;
}

#[tokio::test]
async fn missing_assets_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let err = Envtest::start(dir.path()).await.expect_err("no binaries");
    let text = err.to_string();
    assert!(text.contains("kube-apiserver"), "{text}");
    assert!(text.contains(&*dir.path().to_string_lossy()), "{text}");
}

/// Our child processes named `name` (from /proc: the parent PID follows the command name).
fn children_named(name: &str) -> Vec<u32> {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
                return false;
            };
            let ppid = stat[close + 1..].split_whitespace().nth(1);
            &stat[open + 1..close] == name && ppid == Some(&me.to_string())
        })
        .collect()
}

#[tokio::test]
async fn an_api_server_that_exits_is_reported_with_its_log() {
    if envtest::assets_dir().is_none() {
        eprintln!("SKIPPED: {ASSETS_ENV} is not set (the test uses its etcd)");
        return;
    }
    let assets = tempfile::tempdir().unwrap();
    let script = assets.path().join("kube-apiserver");
    std::fs::write(
        &script,
        "#!/bin/sh\necho 'E0101 run.go:74] \"command failed\" err=\"a broken flag\"' >&2\nexit 1\n",
    )
    .unwrap();
    let mut perms = std::fs::metadata(&script).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&script, perms).unwrap();
    // etcd from the real assets directory or PATH, as the harness finds it.
    if let Some(real) = envtest::assets_dir()
        && real.join("etcd").is_file()
    {
        std::os::unix::fs::symlink(real.join("etcd"), assets.path().join("etcd")).unwrap();
    }
    let err = Envtest::start(assets.path())
        .await
        .expect_err("a kube-apiserver that exits");
    let text = err.to_string();
    assert!(text.contains("kube-apiserver exited"), "{text}");
    assert!(text.contains("a broken flag"), "{text}");
    assert!(text.contains("--- etcd log"), "{text}");
    // Other tests of this binary may have an etcd running: a left-over one is an etcd of
    // ours whose data directory is gone (the harness stops it before removing its directory).
    let orphans: Vec<u32> = children_named("etcd")
        .into_iter()
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            String::from_utf8_lossy(&cmdline)
                .split('\0')
                .filter_map(|arg| arg.strip_prefix("--data-dir="))
                .any(|dir| !Path::new(dir).exists())
        })
        .collect();
    assert!(orphans.is_empty(), "etcd left running: {orphans:?}");
}
