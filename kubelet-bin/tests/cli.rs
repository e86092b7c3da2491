//! The built `kubelet` binary: bad input ends it at once with a message naming what is wrong.

use std::path::Path;
use std::process::{Command, Output};

fn kubelet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kubelet"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run the kubelet binary")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn write_config(dir: &Path, body: &str) -> String {
    let path = dir.join("kubelet.yaml");
    let text =
        format!("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n{body}");
    std::fs::write(&path, text).expect("write config");
    path.to_string_lossy().into_owned()
}

#[test]
fn unknown_config_field_exits_1_naming_field_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "syncFrequency: 1m\nstaticPodDir: /etc/pods\n");
    let output = kubelet(&[&format!("--config={config}")]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let err = stderr(&output);
    assert!(err.contains("unknown field \"staticPodDir\""), "{err}");
    assert!(err.contains(&config), "{err}");
}

#[test]
fn unsupported_config_field_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "featureGates:\n  Foo: true\n");
    let output = kubelet(&["--config", &config]);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(
        err.contains("field \"featureGates\" is not supported by this kubelet"),
        "{err}"
    );
}

#[test]
fn systemd_cgroup_driver_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "cgroupDriver: systemd\n");
    let output = kubelet(&["--config", &config]);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(err.contains("cgroupDriver"), "{err}");
    assert!(err.contains("\"systemd\" is not supported"), "{err}");
}

#[test]
fn missing_config_file_exits_1_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("absent.yaml");
    let output = kubelet(&["--config", &missing.to_string_lossy()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains(&*missing.to_string_lossy()));
}

#[test]
fn bad_flag_value_exits_2_naming_the_flag() {
    let output = kubelet(&["--sync-frequency=10"]);
    assert_eq!(output.status.code(), Some(2));
    let err = stderr(&output);
    assert!(err.contains("--sync-frequency"), "{err}");
    assert!(err.contains("missing unit"), "{err}");
}

#[test]
fn unreachable_runtime_exits_1_naming_the_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("no-containerd.sock");
    let endpoint = format!("unix://{}", socket.display());
    let output = kubelet(&[
        "--container-runtime-endpoint",
        &endpoint,
        "--runtime-request-timeout=5s",
        "--healthz-port=0",
        "--hostname-override=cli-test",
        &format!("--root-dir={}", dir.path().display()),
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let err = stderr(&output);
    assert!(err.contains(&*socket.to_string_lossy()), "{err}");
    assert!(err.contains("container runtime"), "{err}");
}

#[test]
fn help_lists_the_reference_flag_names() {
    let output = kubelet(&["--help"]);
    assert_eq!(output.status.code(), Some(0));
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--config",
        "--pod-manifest-path",
        "--manifest-url",
        "--manifest-url-header",
        "--container-runtime-endpoint",
        "--hostname-override",
        "--root-dir",
        "--v",
        "--runtime-request-timeout",
        "--file-check-frequency",
        "--http-check-frequency",
        "--sync-frequency",
        "--healthz-bind-address",
        "--healthz-port",
        "--cgroup-root",
        "--node-ip",
        "--cluster-dns",
        "--cluster-domain",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
}

/// Run the binary off the async runtime (the fake API server answers on it meanwhile).
async fn kubelet_async(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        kubelet(&args)
    })
    .await
    .expect("join the kubelet run")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_server_refusing_our_credentials_exits_1_saying_so() {
    use kubelet_core::testing::apiserver::FakeApiServer;
    let api = FakeApiServer::start_tls().await.expect("fake API server");
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubelet.conf");
    let token = api.token().expect("the TLS fake has a token").to_string();
    let config = api.kubeconfig().replace(&token, "not-the-token");
    std::fs::write(&kubeconfig, config).unwrap();
    let output = kubelet_async(vec![
        format!("--kubeconfig={}", kubeconfig.display()),
        "--container-runtime-endpoint=unix:///nonexistent/containerd.sock".into(),
        "--hostname-override=cli-node".into(),
        format!("--root-dir={}", dir.path().join("root").display()),
    ])
    .await;
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let err = stderr(&output);
    assert!(err.contains("401 Unauthorized"), "{err}");
    assert!(err.contains(&api.url()), "{err}");
    // Nothing was attempted beyond the refusal: the runtime was never dialled.
    assert!(!err.contains("container runtime"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_api_server_is_a_warning_not_an_exit() {
    // A port nothing listens on: the kubelet warns and goes on (static pods must still run),
    // here to fail on the missing runtime instead.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubelet.conf");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:{port}\n\
             contexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\nusers:\n- name: u\n  user: {{}}\n"
        ),
    )
    .unwrap();
    let output = kubelet_async(vec![
        format!("--kubeconfig={}", kubeconfig.display()),
        "--container-runtime-endpoint=unix:///nonexistent/containerd.sock".into(),
        "--hostname-override=cli-node".into(),
        format!("--root-dir={}", dir.path().join("root").display()),
    ])
    .await;
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let err = stderr(&output);
    assert!(err.contains("API server not reachable yet"), "{err}");
    assert!(err.contains("cannot use the container runtime"), "{err}");
}

/// Runs `openssl` with `args` in `dir`; `None` (after saying why) when it is not installed.
fn openssl(dir: &Path, args: &[&str]) -> Option<()> {
    let output = match Command::new("openssl").args(args).current_dir(dir).output() {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("SKIPPED: the openssl CLI is not installed");
            return None;
        }
        Err(e) => panic!("running openssl: {e}"),
    };
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        stderr(&output)
    );
    Some(())
}

/// A CA and a client certificate signed by it the way a bare `openssl x509 -req` does: X.509
/// v1, which Go clients accept and rustls does not.
fn v1_client_certificate(dir: &Path) -> Option<()> {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509", "-subj", "/CN=test-ca", "-days", "1"];
    ca.extend(ec);
    ca.extend(["-keyout", "ca.key", "-out", "ca.crt"]);
    openssl(dir, &ca)?;
    let mut csr = vec![
        "req",
        "-new",
        "-subj",
        "/O=system:nodes/CN=system:node:cli-node",
    ];
    csr.extend(ec);
    csr.extend(["-keyout", "client.key", "-out", "client.csr"]);
    openssl(dir, &csr)?;
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "client.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-out",
            "client.crt",
        ],
    )?;
    let text = Command::new("openssl")
        .args(["x509", "-in", "client.crt", "-noout", "-text"])
        .current_dir(dir)
        .output()
        .expect("openssl x509 -text");
    let text = String::from_utf8_lossy(&text.stdout);
    if !text.contains("Version: 1 (0x0)") {
        // Some OpenSSL versions add extensions (and so make v3) on their own.
        eprintln!("SKIPPED: this openssl made no v1 certificate:\n{text}");
        return None;
    }
    Some(())
}

fn assert_names_the_v1_certificate(output: &Output, kubeconfig: &Path, from: &str) {
    assert_eq!(output.status.code(), Some(1), "{}", stderr(output));
    let err = stderr(output);
    assert!(err.contains(&*kubeconfig.to_string_lossy()), "{err}");
    assert!(err.contains(from), "{err}");
    assert!(err.contains("X.509 v1 certificate"), "{err}");
    assert!(err.contains("rustls requires v3"), "{err}");
    assert!(err.contains("-extfile"), "{err}");
    assert!(!err.contains("UnsupportedCertVersion"), "{err}");
    // Refused before anything else: the runtime was never dialled.
    assert!(!err.contains("container runtime"), "{err}");
}

#[test]
fn v1_client_certificate_exits_1_naming_files_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    if v1_client_certificate(dir.path()).is_none() {
        return;
    }
    // Nothing listens there: the certificate is refused before any connection.
    let server = "https://127.0.0.1:1";
    let user = |client: &str| {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n    \
             certificate-authority: ca.crt\ncontexts:\n- name: c\n  context:\n    cluster: c\n    \
             user: u\ncurrent-context: c\nusers:\n- name: u\n  user:\n{client}"
        )
    };
    let run = |kubeconfig: &Path| {
        kubelet(&[
            &format!("--kubeconfig={}", kubeconfig.display()),
            "--container-runtime-endpoint=unix:///nonexistent/containerd.sock",
            "--hostname-override=cli-node",
            &format!("--root-dir={}", dir.path().join("root").display()),
        ])
    };

    // By path, relative to the kubeconfig as kubeadm writes them.
    let by_path = dir.path().join("by-path.conf");
    std::fs::write(
        &by_path,
        user("    client-certificate: client.crt\n    client-key: client.key\n"),
    )
    .unwrap();
    let cert_path = dir.path().join("client.crt");
    assert_names_the_v1_certificate(&run(&by_path), &by_path, &cert_path.to_string_lossy());

    // Embedded.
    use base64::Engine;
    let b64 = |name: &str| {
        base64::engine::general_purpose::STANDARD
            .encode(std::fs::read(dir.path().join(name)).unwrap())
    };
    let embedded = dir.path().join("embedded.conf");
    std::fs::write(
        &embedded,
        user(&format!(
            "    client-certificate-data: {}\n    client-key-data: {}\n",
            b64("client.crt"),
            b64("client.key")
        )),
    )
    .unwrap();
    assert_names_the_v1_certificate(&run(&embedded), &embedded, "client-certificate-data");
}
