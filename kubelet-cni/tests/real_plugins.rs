//! The library and the NetworkPlugin against Debian's containernetworking-plugins
//! (/usr/lib/cni), in network namespaces the tests create. Needs root.
//!
//! Each test has its own bridge `kcnitestN`, subnet 10.99.N.0/24, host-local dataDir and
//! cache, so that they run in parallel with each other and with containerd tests (`cni0`).
//! Traffic goes only to loopback and to addresses inside the test's namespaces.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use kubelet_cni::config::ConfigFormat;
use kubelet_cni::{
    Attachment, Bandwidth, Cni, CniError, CniNetworkPlugin, CniPluginConfig, NetNs,
    NetworkConfigList, PortMapping, RuntimeConfig,
};
use kubelet_core::runtime::NamespaceMode;
use kubelet_core::{NetworkContext, NetworkError, NetworkPlugin};

const BIN: &str = "/usr/lib/cni";

/// One test's network: bridge, subnet, directories; everything removed on drop.
struct TestNet {
    idx: u8,
    dir: tempfile::TempDir,
}

impl TestNet {
    fn new(idx: u8) -> TestNet {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        for sub in ["conf", "ipam", "cache", "netns"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap_or_else(|e| panic!("{sub}: {e}"));
        }
        let net = TestNet { idx, dir };
        // Leftovers of an earlier, killed run.
        net.clean_host();
        net
    }

    fn name(&self) -> String {
        format!("kcnitest{}", self.idx)
    }

    fn subnet_prefix(&self) -> String {
        format!("10.99.{}.", self.idx)
    }

    fn path(&self, sub: &str) -> PathBuf {
        self.dir.path().join(sub)
    }

    /// bridge + host-local, portmap, firewall, bandwidth, tuning. The plugin-level tests
    /// leave bandwidth out: Debian's bandwidth 1.1.1 crashes on CHECK when the pod has no
    /// bandwidth limits (containernetworking/plugins#1221, fixed upstream in 1.9.1).
    fn conflist(&self) -> String {
        self.conflist_with(true)
    }

    fn conflist_with(&self, bandwidth: bool) -> String {
        let text = format!(
            r#"{{"cniVersion":"1.0.0","name":"{name}","plugins":[
              {{"type":"bridge","bridge":"{name}","isGateway":true,"ipMasq":false,"hairpinMode":true,
                "ipam":{{"type":"host-local","dataDir":"{ipam}","ranges":[[{{"subnet":"10.99.{idx}.0/24"}}]],
                        "routes":[{{"dst":"0.0.0.0/0"}}]}}}},
              {{"type":"portmap","capabilities":{{"portMappings":true}}}},
              {{"type":"firewall","backend":"iptables"}},
              {{"type":"bandwidth","capabilities":{{"bandwidth":true}}}},
              {{"type":"tuning","sysctl":{{"net.core.somaxconn":"512"}}}}]}}"#,
            name = self.name(),
            ipam = self.path("ipam").display(),
            idx = self.idx
        );
        if bandwidth {
            text
        } else {
            text.replace(
                r#"{"type":"bandwidth","capabilities":{"bandwidth":true}},"#,
                "",
            )
        }
    }

    fn network(&self) -> NetworkConfigList {
        NetworkConfigList::parse(
            self.conflist().as_bytes(),
            &self.path("conf/10-test.conflist"),
            ConfigFormat::List,
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn write_conf(&self) {
        let text = self.conflist_with(false);
        assert!(!text.contains("bandwidth"));
        std::fs::write(self.path("conf/10-test.conflist"), text).unwrap_or_else(|e| panic!("{e}"));
    }

    fn cni(&self) -> Cni {
        Cni::new(vec![PathBuf::from(BIN)], self.path("cache"))
    }

    fn plugin(&self) -> CniNetworkPlugin {
        CniNetworkPlugin::new(CniPluginConfig {
            conf_dir: self.path("conf"),
            bin_dirs: vec![PathBuf::from(BIN)],
            cache_dir: self.path("cache"),
            netns_dir: self.path("netns"),
            ..Default::default()
        })
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// host-local's record of an allocated address.
    fn ip_allocated(&self, ip: &str) -> bool {
        self.path("ipam").join(self.name()).join(ip).exists()
    }

    fn clean_host(&self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.name()])
            .output();
        clean_iptables(&[&self.subnet_prefix(), &format!("\"{}\"", self.name())]);
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        // DEL whatever is still attached (a test that failed half-way), from the cache.
        let cni = self.cni();
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                for entry in cni.cache().list(None).unwrap_or_default() {
                    let _ = cni.del_cached(&entry, None).await;
                }
            });
        })
        .join();
        if let Ok(entries) = std::fs::read_dir(self.path("netns")) {
            for e in entries.flatten() {
                let _ = NetNs::remove(&e.path());
            }
        }
        self.clean_host();
    }
}

/// Delete iptables rules that mention any of `needles`, and the per-attachment chains they
/// jumped to. Shared chains (CNI-HOSTPORT-*, CNI-FORWARD, CNI-ADMIN) stay: other users of
/// portmap/firewall on this host (containerd tests) may be using them.
fn clean_iptables(needles: &[&str]) {
    for table in ["filter", "nat", "mangle"] {
        let Ok(out) = Command::new("iptables-save").args(["-t", table]).output() else {
            continue;
        };
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let mut chains = Vec::new();
        for line in text.lines() {
            let Some(rule) = line.strip_prefix("-A ") else {
                continue;
            };
            if !needles.iter().any(|n| rule.contains(n)) {
                continue;
            }
            let args = split_args(rule);
            let shared = ["CNI-HOSTPORT-", "CNI-FORWARD", "CNI-ADMIN"];
            if let Some(pos) = args.iter().position(|a| a == "-j")
                && let Some(target) = args.get(pos + 1)
                && target.starts_with("CNI-")
                && !shared.iter().any(|s| target.starts_with(s))
            {
                chains.push(target.clone());
            }
            let _ = Command::new("iptables")
                .args(["-w", "-t", table, "-D"])
                .args(&args)
                .output();
        }
        for chain in chains {
            let _ = Command::new("iptables")
                .args(["-w", "-t", table, "-F", &chain])
                .output();
            let _ = Command::new("iptables")
                .args(["-w", "-t", table, "-X", &chain])
                .output();
        }
    }
}

/// Split an iptables-save rule into arguments (double quotes group, backslash escapes).
fn split_args(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_quotes = false;
    let mut has = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                    has = true;
                }
            }
            '"' => {
                in_quotes = !in_quotes;
                has = true;
            }
            c if c.is_whitespace() && !in_quotes => {
                if has {
                    out.push(std::mem::take(&mut cur));
                    has = false;
                }
            }
            c => {
                cur.push(c);
                has = true;
            }
        }
    }
    if has {
        out.push(cur);
    }
    out
}

fn iptables_mentions(needle: &str) -> bool {
    ["filter", "nat"].iter().any(|t| {
        Command::new("iptables-save")
            .args(["-t", t])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).contains(needle))
            .unwrap_or(false)
    })
}

/// A TCP server inside the namespace answering `hello` to each of `n` connections.
fn serve_in(ns: &NetNs, addr: &str, n: usize) -> std::thread::JoinHandle<()> {
    let addr = addr.to_string();
    let listener: TcpListener = ns
        .run(move || TcpListener::bind(&addr))
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("bind in netns: {e}"));
    std::thread::spawn(move || {
        for _ in 0..n {
            if let Ok((mut s, _)) = listener.accept() {
                let _ = s.write_all(b"hello");
            }
        }
    })
}

fn fetch(addr: SocketAddr) -> Result<String, String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)
        .map_err(|e| format!("read {addr}: {e}"))?;
    Ok(buf)
}

/// Connect repeatedly until it works or the deadline passes (the first packets may race
/// the bridge's port becoming forwarding).
async fn fetch_eventually(addr: SocketAddr) -> String {
    let mut last = String::new();
    for _ in 0..100 {
        let r = tokio::task::spawn_blocking(move || fetch(addr))
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
        match r {
            Ok(s) => return s,
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no answer from {addr}: {last}");
}

fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

#[tokio::test]
async fn add_reach_portmap_check_del_twice() {
    if !common::require_root("add_reach_portmap_check_del_twice")
        || !common::require_plugins("add_reach_portmap_check_del_twice")
    {
        return;
    }
    let t = TestNet::new(0);
    let net = t.network();
    let cni = t.cni();
    let ns = NetNs::create(&t.path("netns"), "pod0").unwrap_or_else(|e| panic!("{e}"));
    let host_port = 39180;
    let att = Attachment {
        container_id: "kcnitest-pod0".into(),
        netns: ns.path().display().to_string(),
        ifname: "eth0".into(),
        args: vec![("IgnoreUnknown".into(), "1".into())],
        runtime_config: RuntimeConfig {
            port_mappings: vec![PortMapping {
                host_port,
                container_port: 8080,
                protocol: "tcp".into(),
                host_ip: String::new(),
            }],
            bandwidth: Some(Bandwidth {
                ingress_rate: 100_000_000,
                ingress_burst: 10_000_000,
                egress_rate: 100_000_000,
                egress_burst: 10_000_000,
            }),
            ..Default::default()
        },
    };

    let result = cni
        .add(&net, &att)
        .await
        .unwrap_or_else(|e| panic!("ADD: {e}"));
    let ips = result.pod_ips();
    assert_eq!(ips.len(), 1, "{result:?}");
    let ip = ips[0];
    assert!(ip.to_string().starts_with("10.99.0."), "{ip}");
    assert!(t.ip_allocated(&ip.to_string()));
    let veth: Vec<String> = result
        .host_interfaces()
        .map(|i| i.name.clone())
        .filter(|n| n.starts_with("veth"))
        .collect();
    assert_eq!(veth.len(), 1, "{result:?}");
    assert!(link_exists(&veth[0]));

    // Reachable from the host, directly and through the mapped host port on loopback.
    let server = serve_in(&ns, "0.0.0.0:8080", 2);
    assert_eq!(fetch_eventually(SocketAddr::new(ip, 8080)).await, "hello");
    let local: IpAddr = [127, 0, 0, 1].into();
    assert_eq!(
        fetch_eventually(SocketAddr::new(local, host_port)).await,
        "hello"
    );
    let _ = server.join();

    match cni.check(&net, &att).await {
        Ok(()) => {}
        // Debian's portmap 1.1.1 also checks for IPv6 rules it never made for an IPv4-only
        // pod (containernetworking/plugins#819); everything else in the chain must pass.
        Err(CniError::Plugin { plugin, error, .. })
            if plugin == "portmap" && error.msg.contains("ipv6") =>
        {
            eprintln!(
                "portmap CHECK hit the known IPv6 bug (plugins#819): {}",
                error.msg
            );
            let mut without = net.clone();
            without.plugins.retain(|p| p.plugin_type != "portmap");
            assert_eq!(without.plugins.len(), 4);
            cni.check(&without, &att)
                .await
                .unwrap_or_else(|e| panic!("CHECK without portmap: {e}"));
        }
        Err(e) => panic!("CHECK: {e}"),
    }

    cni.del(&net, &att)
        .await
        .unwrap_or_else(|e| panic!("DEL: {e}"));
    assert!(!link_exists(&veth[0]), "veth removed");
    assert!(!t.ip_allocated(&ip.to_string()), "address released");
    assert!(
        !iptables_mentions(&format!("{ip}/32")) && !iptables_mentions(&format!("{ip}:8080")),
        "no rules left for {ip}"
    );
    assert!(
        cni.cache()
            .load(&net.name, &att.container_id, "eth0")
            .ok()
            .flatten()
            .is_none()
    );
    cni.del(&net, &att)
        .await
        .unwrap_or_else(|e| panic!("second DEL: {e}"));

    NetNs::remove(ns.path()).unwrap_or_else(|e| panic!("{e}"));
    assert!(!ns.path().exists());
}

fn ctx(id: &str) -> NetworkContext {
    NetworkContext {
        namespace: "default".into(),
        name: id.into(),
        uid: format!("uid-{id}"),
        sandbox_id: id.into(),
        netns_path: None,
        network: NamespaceMode::Pod,
        runtime_ips: vec![],
        port_mappings: vec![],
        annotations: Default::default(),
    }
}

#[tokio::test]
async fn plugin_survives_a_restart_between_setup_and_teardown() {
    if !common::require_root("plugin_survives_a_restart")
        || !common::require_plugins("plugin_survives_a_restart")
    {
        return;
    }
    let t = TestNet::new(1);
    t.write_conf();
    let first = t.plugin();
    first.ready().await.unwrap_or_else(|e| panic!("{e}"));
    let c = ctx("kcnitest-restart");
    let status = first
        .setup(&c)
        .await
        .unwrap_or_else(|e| panic!("setup: {e}"));
    assert_eq!(status.ips.len(), 1, "{status:?}");
    let ip = status.ips[0].clone();
    assert!(ip.starts_with("10.99.1."), "{ip}");
    assert_eq!(
        first.status(&c).await.map(|s| s.ips).ok(),
        Some(status.ips.clone())
    );
    first
        .check(&c)
        .await
        .unwrap_or_else(|e| panic!("check: {e}"));

    // The plugin made the namespace, brought lo up in it, and the pod is reachable.
    let ns = NetNs::open(first.netns_path(&c.sandbox_id)).unwrap_or_else(|e| panic!("{e}"));
    let lo_works = ns
        .run(|| {
            let l = TcpListener::bind("127.0.0.1:0")?;
            TcpStream::connect(l.local_addr()?).map(|_| ())
        })
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(lo_works.is_ok(), "lo is up: {lo_works:?}");
    let server = serve_in(&ns, "0.0.0.0:8080", 1);
    let addr = SocketAddr::new(ip.parse().unwrap_or_else(|e| panic!("{e}")), 8080);
    assert_eq!(fetch_eventually(addr).await, "hello");
    let _ = server.join();

    // "Restart": a new plugin, and the configuration is gone meanwhile.
    drop(first);
    std::fs::remove_file(t.path("conf/10-test.conflist")).unwrap_or_else(|e| panic!("{e}"));
    let second = t.plugin();
    assert!(matches!(
        second.ready().await,
        Err(NetworkError::NotReady(_))
    ));
    assert_eq!(
        second.status(&c).await.map(|s| s.ips).ok(),
        Some(status.ips.clone()),
        "IPs from the cache"
    );
    second
        .teardown(&c)
        .await
        .unwrap_or_else(|e| panic!("teardown: {e}"));
    assert!(
        !t.ip_allocated(&ip),
        "address released via the cached configuration"
    );
    assert!(!ns.path().exists(), "namespace removed");
    assert_eq!(
        second.cni().cache().list(None).map(|l| l.len()).ok(),
        Some(0)
    );
    second
        .teardown(&c)
        .await
        .unwrap_or_else(|e| panic!("second teardown: {e}"));
}

#[tokio::test]
async fn gc_detaches_stale_sandboxes() {
    if !common::require_root("gc_detaches_stale_sandboxes")
        || !common::require_plugins("gc_detaches_stale_sandboxes")
    {
        return;
    }
    let t = TestNet::new(2);
    t.write_conf();
    let plugin = t.plugin();
    let (a, b) = (ctx("kcnitest-gc-a"), ctx("kcnitest-gc-b"));
    let ip_a = plugin.setup(&a).await.unwrap_or_else(|e| panic!("{e}")).ips[0].clone();
    let ip_b = plugin.setup(&b).await.unwrap_or_else(|e| panic!("{e}")).ips[0].clone();
    assert_ne!(ip_a, ip_b);

    plugin
        .gc(std::slice::from_ref(&a.sandbox_id))
        .await
        .unwrap_or_else(|e| panic!("gc: {e}"));
    assert!(t.ip_allocated(&ip_a));
    assert!(!t.ip_allocated(&ip_b), "stale sandbox's address released");
    assert!(
        !plugin.netns_path(&b.sandbox_id).exists(),
        "stale sandbox's namespace removed"
    );
    assert!(plugin.netns_path(&a.sandbox_id).exists());
    plugin.check(&a).await.unwrap_or_else(|e| panic!("{e}"));

    plugin.teardown(&a).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(!t.ip_allocated(&ip_a));
}

#[tokio::test]
async fn broken_conflist_names_file_and_field() {
    if !common::require_plugins("broken_conflist_names_file_and_field") {
        return;
    }
    let t = TestNet::new(3);
    let broken = t
        .conflist()
        .replace(r#""type":"portmap""#, r#""type":"portmap/x""#);
    std::fs::write(t.path("conf/10-test.conflist"), broken).unwrap_or_else(|e| panic!("{e}"));
    let plugin = t.plugin();
    match plugin.ready().await {
        Err(NetworkError::NotReady(m)) => {
            assert!(
                m.contains(&t.path("conf/10-test.conflist").display().to_string()),
                "{m}"
            );
            assert!(m.contains("plugins[1].type"), "{m}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn real_plugin_errors_are_typed() {
    if !common::require_root("real_plugin_errors_are_typed")
        || !common::require_plugins("real_plugin_errors_are_typed")
    {
        return;
    }
    let t = TestNet::new(4);
    let cni = t.cni();
    let ns = NetNs::create(&t.path("netns"), "pod-err").unwrap_or_else(|e| panic!("{e}"));
    let att = Attachment::new("kcnitest-err", ns.path().display().to_string(), "eth0");
    let parse = |text: String| {
        NetworkConfigList::parse(
            text.as_bytes(),
            Path::new("err.conflist"),
            ConfigFormat::List,
        )
        .unwrap_or_else(|e| panic!("{e}"))
    };

    // A 1.1.0 network: valid for us, too new for Debian's 1.1.1 plugins (spec code 1).
    let too_new = parse(format!(
        r#"{{"cniVersion":"1.1.0","name":"{}","plugins":[{{"type":"bridge","bridge":"{}"}}]}}"#,
        t.name(),
        t.name()
    ));
    match cni.add(&too_new, &att).await {
        Err(CniError::Plugin {
            plugin,
            command,
            error,
        }) => {
            assert_eq!((plugin.as_str(), command.as_str()), ("bridge", "ADD"));
            assert_eq!(error.code, kubelet_cni::ErrorCode::IncompatibleVersion);
            assert!(error.details.contains("1.0.0"), "{error}");
        }
        other => panic!("{other:?}"),
    }

    // A bad subnet: the plugin's own error code (>= 100) and message.
    let bad = parse(t.conflist_with(false).replace("10.99.4.0/24", "garbage"));
    match cni.add(&bad, &att).await {
        Err(CniError::Plugin { plugin, error, .. }) => {
            assert_eq!(plugin, "bridge");
            assert!(error.code.as_u32() >= 100, "{error}");
            assert!(error.msg.contains("garbage"), "{error}");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        cni.cache()
            .list(None)
            .map(|l| l.is_empty())
            .unwrap_or(false)
    );
    NetNs::remove(ns.path()).unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn parallel_setups_get_distinct_addresses() {
    if !common::require_root("parallel_setups") || !common::require_plugins("parallel_setups") {
        return;
    }
    let t = TestNet::new(5);
    t.write_conf();
    let plugin = std::sync::Arc::new(t.plugin());
    let ctxs: Vec<NetworkContext> = (0..10).map(|i| ctx(&format!("kcnitest-par-{i}"))).collect();
    let mut tasks = Vec::new();
    for c in ctxs.clone() {
        let p = plugin.clone();
        tasks.push(tokio::spawn(async move { p.setup(&c).await }));
    }
    let mut ips = Vec::new();
    for task in tasks {
        let status = task
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|e| panic!("setup: {e}"));
        ips.push(status.ips[0].clone());
    }
    let mut unique = ips.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 10, "{ips:?}");
    for c in &ctxs {
        plugin
            .teardown(c)
            .await
            .unwrap_or_else(|e| panic!("teardown: {e}"));
    }
    assert!(ips.iter().all(|ip| !t.ip_allocated(ip)));
    assert_eq!(
        std::fs::read_dir(t.path("netns")).map(|d| d.count()).ok(),
        Some(0)
    );
}
