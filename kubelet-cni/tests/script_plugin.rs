//! The library against a small plugin script of our own, for what Debian's 1.1.1 plugins
//! cannot show (STATUS and GC are CNI 1.1) and for exact interactions: environment, stdin,
//! `prevResult` chaining, DEL order, the spec's error format, timeouts.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kubelet_cni::config::ConfigFormat;
use kubelet_cni::{
    Attachment, Bandwidth, Cni, CniError, CniNetworkPlugin, CniPluginConfig, ErrorCode,
    NetworkConfigList, PortMapping, RuntimeConfig, ValidAttachment,
};
use kubelet_core::runtime::NamespaceMode;
use kubelet_core::{NetworkContext, NetworkError, NetworkPlugin};
use serde_json::{Value, json};

const SCRIPT: &str = r#"#!/bin/sh
# A CNI plugin for tests: logs each call, answers per the spec, misbehaves on request.
state="@STATE@"
me=$(basename "$0")
input=$(cat)
printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$me" "$CNI_COMMAND" "${CNI_CONTAINERID-unset}" "${CNI_NETNS-unset}" "${CNI_IFNAME-unset}" "${CNI_ARGS-unset}" "$input" >> "$state/log"
[ -e "$state/slow" ] && exec sleep 30
if [ -e "$state/garbage" ]; then echo "something broke" >&2; exit 2; fi
case "$CNI_COMMAND" in
VERSION) echo '{"cniVersion":"1.1.0","supportedVersions":["0.3.1","0.4.0","1.0.0","1.1.0"]}' ;;
ADD)
  if [ -e "$state/fail-add-$me" ]; then
    echo '{"cniVersion":"1.1.0","code":7,"msg":"Invalid Configuration","details":"bad subnet"}'; exit 1
  fi
  if [ "$me" = "testa" ]; then
    echo "{\"cniVersion\":\"1.1.0\",\"interfaces\":[{\"name\":\"$CNI_IFNAME\",\"sandbox\":\"$CNI_NETNS\"}],\"ips\":[{\"address\":\"10.123.0.5/24\",\"interface\":0}]}"
  else
    echo "{\"cniVersion\":\"1.1.0\",\"interfaces\":[{\"name\":\"$CNI_IFNAME\",\"sandbox\":\"$CNI_NETNS\"}],\"ips\":[{\"address\":\"10.123.0.5/24\",\"interface\":0},{\"address\":\"fd00:123::5/64\",\"interface\":0}]}"
  fi ;;
STATUS)
  if [ -e "$state/unavailable" ]; then echo '{"cniVersion":"1.1.0","code":50,"msg":"plugin not available"}'; exit 1; fi ;;
DEL|CHECK|GC) ;;
*) echo '{"code":4,"msg":"unknown CNI_COMMAND"}'; exit 1 ;;
esac
"#;

/// One logged plugin call.
#[derive(Debug, Clone)]
struct Call {
    plugin: String,
    command: String,
    container: String,
    netns: String,
    ifname: String,
    args: String,
    stdin: Value,
}

struct Env {
    dir: tempfile::TempDir,
    cni: Cni,
}

impl Env {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        for sub in ["bin", "state", "cache", "conf"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap_or_else(|e| panic!("{sub}: {e}"));
        }
        let script = SCRIPT.replace("@STATE@", &dir.path().join("state").display().to_string());
        for name in ["testa", "testb"] {
            let path = dir.path().join("bin").join(name);
            std::fs::write(&path, &script).unwrap_or_else(|e| panic!("{name}: {e}"));
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let cni = Cni::new(vec![dir.path().join("bin")], dir.path().join("cache"));
        Env { dir, cni }
    }

    fn bin(&self) -> PathBuf {
        self.dir.path().join("bin")
    }

    fn flag(&self, name: &str) {
        std::fs::write(self.dir.path().join("state").join(name), "")
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }

    fn unflag(&self, name: &str) {
        std::fs::remove_file(self.dir.path().join("state").join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }

    fn calls(&self) -> Vec<Call> {
        let text = std::fs::read_to_string(self.dir.path().join("state/log")).unwrap_or_default();
        let calls = text
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.splitn(7, '\t').collect();
                assert_eq!(f.len(), 7, "log line {l:?}");
                Call {
                    plugin: f[0].into(),
                    command: f[1].into(),
                    container: f[2].into(),
                    netns: f[3].into(),
                    ifname: f[4].into(),
                    args: f[5].into(),
                    stdin: serde_json::from_str(f[6]).unwrap_or(Value::Null),
                }
            })
            .collect();
        let _ = std::fs::remove_file(self.dir.path().join("state/log"));
        calls
    }
}

fn net(text: &str) -> NetworkConfigList {
    NetworkConfigList::parse(
        text.as_bytes(),
        Path::new("test.conflist"),
        ConfigFormat::List,
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

fn two_plugins(version: &str) -> NetworkConfigList {
    net(&format!(
        r#"{{"cniVersion":"{version}","name":"scripted","plugins":[
            {{"type":"testa","capabilities":{{"portMappings":true}},"answer":42}},
            {{"type":"testb","capabilities":{{"bandwidth":true}}}}]}}"#
    ))
}

fn attachment(id: &str) -> Attachment {
    Attachment {
        container_id: id.into(),
        netns: format!("/var/run/netns/{id}"),
        ifname: "eth0".into(),
        args: vec![
            ("IgnoreUnknown".into(), "1".into()),
            ("K8S_POD_NAME".into(), "web".into()),
        ],
        runtime_config: RuntimeConfig {
            port_mappings: vec![PortMapping {
                host_port: 8080,
                container_port: 80,
                protocol: "tcp".into(),
                host_ip: String::new(),
            }],
            bandwidth: Some(Bandwidth {
                ingress_rate: 1_000_000,
                ingress_burst: 2_000_000,
                ..Default::default()
            }),
            ..Default::default()
        },
    }
}

fn commands(calls: &[Call]) -> Vec<String> {
    calls
        .iter()
        .map(|c| format!("{} {}", c.plugin, c.command))
        .collect()
}

#[tokio::test]
async fn add_chains_prev_result_with_spec_environment() {
    let env = Env::new();
    let n = two_plugins("1.1.0");
    let result = env
        .cni
        .add(&n, &attachment("c1"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let ips: Vec<String> = result.pod_ips().iter().map(ToString::to_string).collect();
    assert_eq!(
        ips,
        ["10.123.0.5", "fd00:123::5"],
        "the last plugin's result is the chain's"
    );

    let calls = env.calls();
    assert_eq!(commands(&calls), ["testa ADD", "testb ADD"]);
    let (a, b) = (&calls[0], &calls[1]);
    for c in [a, b] {
        assert_eq!(c.container, "c1");
        assert_eq!(c.netns, "/var/run/netns/c1");
        assert_eq!(c.ifname, "eth0");
        assert_eq!(c.args, "IgnoreUnknown=1;K8S_POD_NAME=web");
        assert_eq!(c.stdin["name"], "scripted");
        assert_eq!(c.stdin["cniVersion"], "1.1.0");
    }
    assert_eq!(a.stdin["answer"], 42, "the plugin's own fields are passed");
    assert!(a.stdin.get("prevResult").is_none());
    assert_eq!(
        a.stdin["runtimeConfig"],
        json!({"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}]})
    );
    assert_eq!(
        b.stdin["runtimeConfig"],
        json!({"bandwidth":{"ingressRate":1000000,"ingressBurst":2000000}})
    );
    assert_eq!(
        b.stdin["prevResult"]["ips"],
        json!([{"address":"10.123.0.5/24","interface":0}])
    );
    assert_eq!(
        b.stdin["prevResult"]["interfaces"][0]["sandbox"],
        "/var/run/netns/c1"
    );

    let cached = env
        .cni
        .cache()
        .load("scripted", "c1", "eth0")
        .unwrap_or_else(|e| panic!("{e}"));
    let cached = cached.unwrap_or_else(|| panic!("no cache entry"));
    assert_eq!(cached.result, Some(result.raw.clone()));
    assert_eq!(cached.netns, "/var/run/netns/c1");
    assert_eq!(cached.config, n.raw);
}

#[tokio::test]
async fn del_runs_in_reverse_with_the_cached_result_and_is_repeatable() {
    let env = Env::new();
    let n = two_plugins("1.0.0");
    let result = env
        .cni
        .add(&n, &attachment("c1"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    env.calls();

    env.cni
        .del(&n, &attachment("c1"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let calls = env.calls();
    assert_eq!(commands(&calls), ["testb DEL", "testa DEL"]);
    for c in &calls {
        assert_eq!(c.stdin["prevResult"], result.raw, "{c:?}");
        assert_eq!(c.container, "c1");
    }
    assert_eq!(
        calls[1].stdin["runtimeConfig"]["portMappings"][0]["hostPort"],
        8080
    );
    assert!(
        env.cni
            .cache()
            .load("scripted", "c1", "eth0")
            .ok()
            .flatten()
            .is_none()
    );

    // A second DEL: no cache, so no prevResult, and still success.
    env.cni
        .del(&n, &attachment("c1"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let calls = env.calls();
    assert_eq!(commands(&calls), ["testb DEL", "testa DEL"]);
    assert!(calls.iter().all(|c| c.stdin.get("prevResult").is_none()));

    // Before 0.4.0 DEL gets no prevResult even with a cache entry.
    let old = two_plugins("0.3.1");
    env.cni
        .add(&old, &attachment("c2"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    env.calls();
    env.cni
        .del(&old, &attachment("c2"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        env.calls()
            .iter()
            .all(|c| c.stdin.get("prevResult").is_none())
    );
}

#[tokio::test]
async fn del_cached_uses_what_add_used() {
    let env = Env::new();
    let n = two_plugins("1.0.0");
    env.cni
        .add(&n, &attachment("c1"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    env.calls();
    let entry = env
        .cni
        .cache()
        .load("scripted", "c1", "eth0")
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("no cache entry"));
    env.cni
        .del_cached(&entry, Some(""))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let calls = env.calls();
    assert_eq!(commands(&calls), ["testb DEL", "testa DEL"]);
    assert_eq!(calls[0].netns, "", "netns overridden because it is gone");
    assert_eq!(calls[0].args, "IgnoreUnknown=1;K8S_POD_NAME=web");
    assert_eq!(
        calls[0].stdin["runtimeConfig"]["bandwidth"]["ingressRate"],
        1_000_000
    );
}

#[tokio::test]
async fn check_needs_a_cached_result_and_a_recent_version() {
    let env = Env::new();
    let n = two_plugins("1.0.0");
    match env.cni.check(&n, &attachment("c1")).await {
        Err(CniError::NoCachedResult { container_id, .. }) => assert_eq!(container_id, "c1"),
        other => panic!("{other:?}"),
    }
    let result = env
        .cni
        .add(&n, &attachment("c1"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    env.calls();
    env.cni
        .check(&n, &attachment("c1"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let calls = env.calls();
    assert_eq!(commands(&calls), ["testa CHECK", "testb CHECK"]);
    assert!(calls.iter().all(|c| c.stdin["prevResult"] == result.raw));

    let mut disabled = n.clone();
    disabled.disable_check = true;
    env.cni
        .check(&disabled, &attachment("c1"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(env.calls().is_empty());

    match env
        .cni
        .check(&two_plugins("0.3.1"), &attachment("c1"))
        .await
    {
        Err(CniError::NotSupported { command, .. }) => assert_eq!(command, "CHECK"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn status_is_1_1_and_reports_unavailability() {
    let env = Env::new();
    env.cni
        .status(&two_plugins("1.1.0"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let calls = env.calls();
    assert_eq!(commands(&calls), ["testa STATUS", "testb STATUS"]);
    for c in &calls {
        assert_eq!(
            (c.container.as_str(), c.netns.as_str(), c.ifname.as_str()),
            ("unset", "unset", "unset")
        );
        assert_eq!(c.stdin["name"], "scripted");
    }

    env.flag("unavailable");
    let err = env
        .cni
        .status(&two_plugins("1.1.0"))
        .await
        .err()
        .unwrap_or_else(|| panic!("no error"));
    assert_eq!(err.code(), Some(ErrorCode::PluginNotAvailable));
    assert!(err.is_transient());
    // 1.0 has no STATUS: the network counts as ready and no plugin is called.
    env.calls();
    env.cni
        .status(&two_plugins("1.0.0"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(env.calls().is_empty());
}

#[tokio::test]
async fn gc_deletes_stale_attachments_and_passes_valid_ones() {
    let env = Env::new();
    let n = two_plugins("1.1.0");
    for id in ["c1", "c2"] {
        env.cni
            .add(&n, &attachment(id))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    env.calls();
    let valid = [ValidAttachment {
        container_id: "c1".into(),
        ifname: "eth0".into(),
    }];
    env.cni
        .gc(&n, &valid)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let calls = env.calls();
    assert_eq!(
        commands(&calls),
        ["testb DEL", "testa DEL", "testa GC", "testb GC"]
    );
    assert_eq!(calls[0].container, "c2");
    assert_eq!(calls[2].container, "unset");
    assert_eq!(
        calls[2].stdin["cni.dev/valid-attachments"],
        json!([{"containerID":"c1","ifname":"eth0"}])
    );
    let left: Vec<String> = env
        .cni
        .cache()
        .list(Some("scripted"))
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .map(|e| e.container_id)
        .collect();
    assert_eq!(left, ["c1"]);

    // disableGC: stale cache entries are still detached, plugins get no GC.
    let mut no_gc = n.clone();
    no_gc.disable_gc = true;
    env.cni
        .gc(&no_gc, &[])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(commands(&env.calls()), ["testb DEL", "testa DEL"]);
    // 1.0: no GC command either.
    env.cni
        .gc(&two_plugins("1.0.0"), &[])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(env.calls().is_empty());
}

#[tokio::test]
async fn plugin_failures_become_typed_errors() {
    let env = Env::new();
    let n = two_plugins("1.0.0");

    env.flag("fail-add-testb");
    match env.cni.add(&n, &attachment("c1")).await {
        Err(CniError::Plugin {
            plugin,
            command,
            error,
        }) => {
            assert_eq!((plugin.as_str(), command.as_str()), ("testb", "ADD"));
            assert_eq!(error.code, ErrorCode::InvalidNetworkConfig);
            assert_eq!(error.msg, "Invalid Configuration");
            assert_eq!(error.details, "bad subnet");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        env.cni
            .cache()
            .load("scripted", "c1", "eth0")
            .ok()
            .flatten()
            .is_none(),
        "no cache for a failed ADD"
    );
    env.unflag("fail-add-testb");

    env.flag("garbage");
    match env.cni.add(&n, &attachment("c1")).await {
        Err(CniError::PluginFailed { plugin, output, .. }) => {
            assert_eq!(plugin, "testa");
            assert_eq!(output, "something broke");
        }
        other => panic!("{other:?}"),
    }
    env.unflag("garbage");

    env.flag("slow");
    let quick = Cni::new(vec![env.bin()], env.dir.path().join("cache"))
        .with_timeout(Duration::from_millis(500));
    let start = Instant::now();
    match quick.add(&n, &attachment("c1")).await {
        Err(CniError::Timeout {
            plugin, command, ..
        }) => assert_eq!((plugin.as_str(), command.as_str()), ("testa", "ADD")),
        other => panic!("{other:?}"),
    }
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "the slow plugin was killed"
    );
    env.unflag("slow");
    env.calls();

    let missing = net(r#"{"cniVersion":"1.0.0","name":"m","plugins":[{"type":"no-such-plugin"}]}"#);
    match env.cni.add(&missing, &attachment("c1")).await {
        Err(CniError::PluginNotFound { plugin, dirs }) => {
            assert_eq!(plugin, "no-such-plugin");
            assert_eq!(dirs, vec![env.bin()]);
        }
        other => panic!("{other:?}"),
    }
    match env.cni.add(&n, &attachment("bad/id")).await {
        Err(CniError::InvalidArgument { field, .. }) => assert_eq!(field, "container ID"),
        other => panic!("{other:?}"),
    }
    assert!(
        env.calls().is_empty(),
        "invalid arguments never reach a plugin"
    );
}

#[tokio::test]
async fn version_and_validate() {
    let env = Env::new();
    let info = env
        .cni
        .version("testa", "1.1.0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        info.supported_versions,
        ["0.3.1", "0.4.0", "1.0.0", "1.1.0"]
    );
    env.cni
        .validate(&two_plugins("1.1.0"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    match env.cni.validate(&two_plugins("0.2.0")).await {
        Err(CniError::NotSupported { reason, .. }) => assert!(reason.contains("testa"), "{reason}"),
        other => panic!("{other:?}"),
    }

    // Debian's plugins speak up to 1.0.0.
    if !common::require_plugins("version_and_validate") {
        return;
    }
    let real = Cni::new(
        vec![PathBuf::from("/usr/lib/cni")],
        env.dir.path().join("cache"),
    );
    let info = real
        .version("bridge", "1.0.0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        info.supported_versions.iter().any(|v| v == "1.0.0"),
        "{info:?}"
    );
    let too_new = net(r#"{"cniVersion":"1.1.0","name":"n","plugins":[{"type":"bridge"}]}"#);
    assert!(matches!(
        real.validate(&too_new).await,
        Err(CniError::NotSupported { .. })
    ));
    let ok = net(
        r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"bridge"},{"type":"portmap"}]}"#,
    );
    real.validate(&ok).await.unwrap_or_else(|e| panic!("{e}"));
}

fn write_conf(dir: &Path, name: &str, text: &str) {
    // Write-then-rename, as configuration tools do, so a reader never sees half a file.
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).unwrap_or_else(|e| panic!("{name}: {e}"));
    std::fs::rename(&tmp, dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
}

fn plugin_for(env: &Env) -> CniNetworkPlugin {
    CniNetworkPlugin::new(CniPluginConfig {
        conf_dir: env.dir.path().join("conf"),
        bin_dirs: vec![env.bin()],
        cache_dir: env.dir.path().join("cache"),
        netns_dir: env.dir.path().join("netns"),
        loopback: false,
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

fn ctx(id: &str) -> NetworkContext {
    NetworkContext {
        annotations: Default::default(),
        namespace: "default".into(),
        name: "web".into(),
        uid: "uid-1".into(),
        sandbox_id: id.into(),
        netns_path: Some(format!("/var/run/netns/{id}")),
        network: NamespaceMode::Pod,
        runtime_ips: vec![],
        port_mappings: vec![kubelet_core::runtime::PortMapping {
            protocol: kubelet_core::runtime::Protocol::Udp,
            container_port: 53,
            host_port: 5353,
            host_ip: "127.0.0.1".into(),
        }],
    }
}

#[tokio::test]
async fn network_plugin_setup_status_teardown() {
    let env = Env::new();
    write_conf(
        &env.dir.path().join("conf"),
        "10-scripted.conflist",
        r#"{"cniVersion":"1.1.0","name":"scripted","plugins":[{"type":"testa","capabilities":{"portMappings":true}},{"type":"testb"}]}"#,
    );
    let plugin = plugin_for(&env);
    plugin.ready().await.unwrap_or_else(|e| panic!("{e}"));
    env.calls();

    let status = plugin
        .setup(&ctx("sb1"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status.ips, ["10.123.0.5", "fd00:123::5"]);
    let calls = env.calls();
    assert_eq!(commands(&calls), ["testa ADD", "testb ADD"]);
    assert_eq!(
        calls[0].args,
        "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=sb1;K8S_POD_UID=uid-1"
    );
    assert_eq!(
        calls[0].stdin["runtimeConfig"],
        json!({"portMappings":[{"hostPort":5353,"containerPort":53,"protocol":"udp","hostIP":"127.0.0.1"}]})
    );
    assert_eq!(
        plugin.status(&ctx("sb1")).await.map(|s| s.ips).ok(),
        Some(status.ips.clone())
    );
    plugin
        .check(&ctx("sb1"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    env.calls();

    plugin
        .teardown(&ctx("sb1"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let calls = env.calls();
    assert_eq!(commands(&calls), ["testb DEL", "testa DEL"]);
    assert!(calls[0].stdin.get("prevResult").is_some());
    // Again: nothing cached any more, so a plain DEL with the current configuration.
    plugin
        .teardown(&ctx("sb1"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let calls = env.calls();
    assert_eq!(commands(&calls), ["testb DEL", "testa DEL"]);
    assert!(calls[0].stdin.get("prevResult").is_none());
    assert_eq!(
        plugin.status(&ctx("sb1")).await.map(|s| s.ips).ok(),
        Some(vec![])
    );

    // A failed ADD is rolled back.
    env.flag("fail-add-testb");
    let err = plugin
        .setup(&ctx("sb2"))
        .await
        .err()
        .unwrap_or_else(|| panic!("setup passed"));
    assert!(
        matches!(err, NetworkError::Plugin { ref plugin, .. } if plugin == "testb"),
        "{err}"
    );
    assert_eq!(
        commands(&env.calls()),
        ["testa ADD", "testb ADD", "testb DEL", "testa DEL"]
    );

    // Host-network pods are not the plugin's business.
    let mut host = ctx("sb3");
    host.network = NamespaceMode::Node;
    host.runtime_ips = vec!["192.0.2.1".into()];
    assert_eq!(
        plugin.setup(&host).await.map(|s| s.ips).ok(),
        Some(vec!["192.0.2.1".to_string()])
    );
    plugin
        .teardown(&host)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(env.calls().is_empty());

    env.flag("unavailable");
    match plugin.ready().await {
        Err(NetworkError::NotReady(m)) => assert!(m.contains("code 50"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn broken_config_is_reported_and_changes_are_watched() {
    let env = Env::new();
    let conf = env.dir.path().join("conf");
    write_conf(
        &conf,
        "05-broken.conflist",
        r#"{"cniVersion":"1.0.0","name":"broken","plugins":[{"type":"testa"},{"type":"testb","capabilities":{"portMappings":"yes"}}]}"#,
    );
    let plugin = std::sync::Arc::new(plugin_for(&env));
    match plugin.ready().await {
        Err(NetworkError::NotReady(m)) => {
            assert!(
                m.contains(&conf.join("05-broken.conflist").display().to_string()),
                "{m}"
            );
            assert!(
                m.contains("plugins[1].capabilities.portMappings: must be a boolean"),
                "{m}"
            );
        }
        other => panic!("{other:?}"),
    }
    let watch = plugin.watch().unwrap_or_else(|e| panic!("{e}"));

    write_conf(
        &conf,
        "10-good.conflist",
        r#"{"cniVersion":"1.0.0","name":"good","plugins":[{"type":"testa"}]}"#,
    );
    common::eventually(Duration::from_secs(10), "the new network", || async {
        plugin.network().is_some_and(|n| n.name == "good")
    })
    .await;
    plugin.ready().await.unwrap_or_else(|e| panic!("{e}"));

    // Fixing the lexically first file switches to it.
    write_conf(
        &conf,
        "05-broken.conflist",
        r#"{"cniVersion":"1.0.0","name":"fixed","plugins":[{"type":"testa"}]}"#,
    );
    common::eventually(Duration::from_secs(10), "the fixed network", || async {
        plugin.network().is_some_and(|n| n.name == "fixed")
    })
    .await;

    for f in ["05-broken.conflist", "10-good.conflist"] {
        std::fs::remove_file(conf.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
    }
    common::eventually(Duration::from_secs(10), "no network", || async {
        plugin.network().is_none()
    })
    .await;
    assert!(matches!(
        plugin.ready().await,
        Err(NetworkError::NotReady(_))
    ));

    // A valid file naming a plugin that is not installed: loaded, but not ready.
    write_conf(
        &conf,
        "20-missing.conflist",
        r#"{"cniVersion":"1.0.0","name":"missing","plugins":[{"type":"testa"},{"type":"not-installed"}]}"#,
    );
    common::eventually(
        Duration::from_secs(10),
        "the network with a missing plugin",
        || async { plugin.network().is_some_and(|n| n.name == "missing") },
    )
    .await;
    match plugin.ready().await {
        Err(NetworkError::NotReady(m)) => {
            assert!(m.contains("plugin not-installed: binary not found"), "{m}")
        }
        other => panic!("{other:?}"),
    }
    watch.abort();
}
