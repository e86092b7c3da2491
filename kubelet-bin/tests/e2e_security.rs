//! End-to-end: the security context and the pod-level settings of static pods, as the
//! containers see them from inside, with the `kubelet` binary on a real containerd: user and
//! groups (`id`), capabilities, no_new_privs and seccomp (`/proc/self/status`), a read-only
//! root filesystem, sysctls, a shared process namespace, runAsNonRoot against the image's
//! user, a Localhost seccomp profile, the managed `/etc/hosts`, `/etc/resolv.conf`, the
//! hostname, and activeDeadlineSeconds. Skipped when no containerd can run here, unless
//! `KUBELET_TEST_REQUIRE_CONTAINERD=1`.

// Not every helper of the shared support module is used here.
#[allow(dead_code)]
mod support {
    pub mod node;
}

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use support::node::{TestNode, container, cri_log_lines, phase, runtime_id};

const IMAGE: &str = kubelet_cri::testing::BUSYBOX_IMAGE;
/// Deadline for a pod to come up, report, or fail.
const DEADLINE: Duration = Duration::from_secs(90);

/// What every reporting container prints before it waits: one `KEY=value` line each, then
/// `END`.
const REPORT: &str = r#"
echo "UID=$(id -u)"; echo "GID=$(id -g)"; echo "GROUPS=$(id -G)"
grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status | tr -d ' \t' | sed 's/:/=/'
if touch /rootfs-write 2>/dev/null; then echo ROOTFS=rw; else echo ROOTFS=ro; fi
echo "PID1=$(cat /proc/1/comm)"
echo "IPC=$(readlink /proc/self/ns/ipc)"
echo "SHM_RMID_FORCED=$(cat /proc/sys/kernel/shm_rmid_forced)"
if mkdir /tmp/probe-dir 2>/dev/null; then echo MKDIR=ok; else echo MKDIR=denied; fi
echo END
trap 'exit 0' TERM; sleep 3600 & wait
"#;

fn pod_yaml(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n{spec}"
    )
}

/// A container entry running `script`, then `extra` lines (indented by four spaces).
fn container_yaml(name: &str, script: &str, extra: &str) -> String {
    let script = serde_json::to_string(script).expect("quote script");
    format!(
        "  - name: {name}\n    image: {IMAGE}\n    imagePullPolicy: IfNotPresent\n    command: [\"sh\", \"-c\", {script}]\n{extra}"
    )
}

fn running(pod: &Pod, name: &str) -> bool {
    container(pod, name)
        .and_then(|c| c.state.as_ref())
        .is_some_and(|s| s.running.is_some())
}

/// The stdout lines of container `name` of pod `manifest` once it printed `END`.
async fn output(node: &mut TestNode, manifest: &str, name: &str) -> Vec<String> {
    let pod = node
        .wait_pod(manifest, &format!("{name} running"), DEADLINE, |p| {
            running(p, name)
        })
        .await;
    let id = container(&pod, name)
        .and_then(runtime_id)
        .expect("container id")
        .to_string();
    node.wait_for(
        &format!("the report of {manifest}/{name}"),
        DEADLINE,
        async |n| {
            let status = n.container_status(&id).await?;
            let lines: Vec<String> = cri_log_lines(std::path::Path::new(&status.log_path))
                .into_iter()
                .filter(|(stream, _)| stream == "stdout")
                .map(|(_, line)| line)
                .collect();
            lines.iter().any(|l| l == "END").then_some(lines)
        },
    )
    .await
}

/// The report of a container as `KEY` -> value.
async fn report(node: &mut TestNode, manifest: &str, name: &str) -> BTreeMap<String, String> {
    output(node, manifest, name)
        .await
        .into_iter()
        .filter_map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_context_as_seen_from_inside() {
    let Some(mut node) = TestNode::start().await else {
        return;
    };
    // A Localhost seccomp profile below <root-dir>/seccomp that refuses mkdir.
    let root = node
        .manifest_path("x")
        .parent()
        .and_then(|d| d.parent())
        .expect("test dir")
        .join("root");
    let profiles = root.join("seccomp/profiles");
    std::fs::create_dir_all(&profiles).expect("seccomp dir");
    std::fs::write(
        profiles.join("deny-mkdir.json"),
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO"}]}"#,
    )
    .expect("seccomp profile");

    let locked = "    securityContext:\n      runAsUser: 1000\n      readOnlyRootFilesystem: true\n      \
                  allowPrivilegeEscalation: false\n      capabilities:\n        drop: [\"ALL\"]\n        \
                  add: [\"NET_BIND_SERVICE\"]\n";
    let root_caps = "    securityContext:\n      runAsUser: 0\n      capabilities:\n        drop: [\"ALL\"]\n        \
                     add: [\"NET_ADMIN\"]\n      seccompProfile:\n        type: Localhost\n        \
                     localhostProfile: profiles/deny-mkdir.json\n";
    let open = "    securityContext:\n      runAsUser: 0\n      privileged: true\n      \
                seccompProfile:\n        type: Unconfined\n";
    let spec = format!(
        "  shareProcessNamespace: true\n  securityContext:\n    runAsUser: 2000\n    runAsGroup: 3000\n    fsGroup: 2000\n    \
         supplementalGroups: [4000]\n    seccompProfile:\n      type: RuntimeDefault\n    sysctls:\n    \
         - name: kernel.shm_rmid_forced\n      value: \"1\"\n  containers:\n{}{}{}",
        container_yaml("locked", REPORT, locked),
        container_yaml("rootcaps", REPORT, root_caps),
        container_yaml("open", REPORT, open),
    );
    node.write_manifest("sec.yaml", &pod_yaml("sec", &spec));

    // A pod-level runAsGroup needs a pod-level runAsUser: containerd refuses a sandbox with
    // a group and no user ("user group "3000" is specified without user"), with the
    // reference kubelet as with this one.
    let r = report(&mut node, "sec", "locked").await;
    assert_eq!(r["UID"], "1000", "{r:?}");
    assert_eq!(r["GID"], "3000", "{r:?}");
    let groups: Vec<&str> = r["GROUPS"].split(' ').collect();
    assert!(
        groups.contains(&"2000") && groups.contains(&"4000"),
        "{r:?}"
    );
    assert_eq!(
        r["CapBnd"], "0000000000000400",
        "only NET_BIND_SERVICE: {r:?}"
    );
    assert_eq!(r["NoNewPrivs"], "1", "{r:?}");
    assert_eq!(r["Seccomp"], "2", "the pod's RuntimeDefault profile: {r:?}");
    assert_eq!(r["ROOTFS"], "ro", "{r:?}");
    assert_eq!(r["SHM_RMID_FORCED"], "1", "the pod's sysctl: {r:?}");
    assert_ne!(
        r["PID1"], "sh",
        "shareProcessNamespace: PID 1 is the pause process: {r:?}"
    );

    let r = report(&mut node, "sec", "rootcaps").await;
    assert_eq!(r["UID"], "0", "{r:?}");
    assert_eq!(r["CapEff"], "0000000000001000", "only NET_ADMIN: {r:?}");
    assert_eq!(r["NoNewPrivs"], "0", "{r:?}");
    assert_eq!(r["Seccomp"], "2", "{r:?}");
    assert_eq!(
        r["MKDIR"], "denied",
        "the Localhost profile refuses mkdir: {r:?}"
    );
    assert_eq!(r["ROOTFS"], "rw", "{r:?}");

    let r = report(&mut node, "sec", "open").await;
    assert_eq!(r["Seccomp"], "0", "Unconfined: {r:?}");
    assert_eq!(
        r["CapEff"], r["CapBnd"],
        "privileged: every capability: {r:?}"
    );
    assert_ne!(r["CapEff"], "0000000000000000", "{r:?}");

    // hostPID, hostIPC, hostNetwork: the container is in the test's own (the host's)
    // namespaces; without them, in others.
    let script = "echo PID1=$(cat /proc/1/comm); echo IPC=$(readlink /proc/self/ns/ipc); \
                  echo NET=$(readlink /proc/self/ns/net); echo END; \
                  trap 'exit 0' TERM; sleep 3600 & wait";
    let spec = format!(
        "  hostPID: true\n  hostIPC: true\n  hostNetwork: true\n  containers:\n{}",
        container_yaml("app", script, "")
    );
    node.write_manifest("hostns.yaml", &pod_yaml("hostns", &spec));
    let r = report(&mut node, "hostns", "app").await;
    let host = |path: &str| {
        std::fs::read_link(path)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let host_pid1 = std::fs::read_to_string("/proc/1/comm").unwrap_or_default();
    assert_eq!(r["PID1"], host_pid1.trim(), "hostPID: {r:?}");
    assert_eq!(r["IPC"], host("/proc/self/ns/ipc"), "hostIPC: {r:?}");
    assert_eq!(r["NET"], host("/proc/self/ns/net"), "hostNetwork: {r:?}");
    let r = report(&mut node, "sec", "locked").await;
    assert_ne!(r.get("IPC"), Some(&host("/proc/self/ns/ipc")));

    // runAsNonRoot with the busybox image, which runs as root: refused with the reference's
    // message, and nothing is created.
    let nonroot = "    securityContext:\n      runAsNonRoot: true\n";
    node.write_manifest(
        "nonroot.yaml",
        &pod_yaml(
            "nonroot",
            &format!(
                "  containers:\n{}",
                container_yaml("app", "sleep 3600", nonroot)
            ),
        ),
    );
    let pod = node
        .wait_pod("nonroot", "CreateContainerConfigError", DEADLINE, |p| {
            container(p, "app")
                .and_then(|c| c.state.as_ref())
                .and_then(|s| s.waiting.as_ref())
                .is_some_and(|w| w.reason.as_deref() == Some("CreateContainerConfigError"))
        })
        .await;
    let message = container(&pod, "app")
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.waiting.as_ref())
        .and_then(|w| w.message.clone())
        .unwrap_or_default();
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    assert_eq!(
        message,
        format!(
            "container has runAsNonRoot and image will run as root (pod: \"nonroot-{}_default({uid})\", container: app)",
            support::node::NODE
        )
    );
    assert!(node.containers(Some(&uid)).await.is_empty());

    // Termination messages: the file the kubelet mounts at terminationMessagePath, and the
    // end of the log for a failed container with FallbackToLogsOnError and no message.
    let spec = format!(
        "  restartPolicy: Never\n  containers:\n{}{}",
        container_yaml("file", "printf bye > /dev/termination-log; exit 0", ""),
        container_yaml(
            "logs",
            // One stream: lines of stdout and stderr come through two pipes, and the
            // runtime may log the second before the first.
            "echo first >&2; echo oops >&2; exit 3",
            "    terminationMessagePolicy: FallbackToLogsOnError\n"
        ),
    );
    node.write_manifest("msg.yaml", &pod_yaml("msg", &spec));
    let pod = node
        .wait_pod("msg", "Failed", DEADLINE, |p| phase(p) == "Failed")
        .await;
    let message = |name: &str| {
        container(&pod, name).and_then(|c| c.state.as_ref()?.terminated.as_ref()?.message.clone())
    };
    assert_eq!(message("file").as_deref(), Some("bye"));
    assert_eq!(message("logs").as_deref(), Some("first\noops\n"));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_dns_hostname_and_active_deadline() {
    let Some(mut node) =
        TestNode::start_with_args(vec!["--cluster-domain=cluster.local".into()]).await
    else {
        return;
    };
    let script = "echo HOSTNAME=$(hostname); cat /etc/hosts /etc/resolv.conf; echo END; \
                  trap 'exit 0' TERM; sleep 3600 & wait";
    let spec = format!(
        "  hostname: www\n  subdomain: front\n  setHostnameAsFQDN: true\n  hostAliases:\n  \
         - ip: 198.51.100.7\n    hostnames: [db, db.local]\n  dnsPolicy: None\n  dnsConfig:\n    \
         nameservers: [192.0.2.53]\n    searches: [corp.example]\n    options:\n    - name: ndots\n      \
         value: \"2\"\n  containers:\n{}",
        container_yaml("app", script, "")
    );
    node.write_manifest("web.yaml", &pod_yaml("web", &spec));
    let lines = output(&mut node, "web", "app").await;
    let pod = node.pod("web").await.expect("pod");
    let ip = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .expect("pod IP");
    let fqdn = "www.front.default.svc.cluster.local";
    assert_eq!(lines[0], format!("HOSTNAME={fqdn}"), "{lines:#?}");
    let want_hosts = [
        "# Kubernetes-managed hosts file.".to_string(),
        "127.0.0.1\tlocalhost".into(),
        "::1\tlocalhost ip6-localhost ip6-loopback".into(),
        "fe00::0\tip6-localnet".into(),
        "fe00::0\tip6-mcastprefix".into(),
        "fe00::1\tip6-allnodes".into(),
        "fe00::2\tip6-allrouters".into(),
        format!("{ip}\t{fqdn}\twww"),
        String::new(),
        "# Entries added by HostAliases.".into(),
        "198.51.100.7\tdb\tdb.local".into(),
    ];
    assert_eq!(lines[1..12], want_hosts, "{lines:#?}");
    assert_eq!(
        lines[12..15],
        [
            "search corp.example".to_string(),
            "nameserver 192.0.2.53".into(),
            "options ndots:2".into()
        ],
        "{lines:#?}"
    );

    // A host-network pod: the node's hosts file under the kubelet's header; no hostname.
    let script = "head -n 1 /etc/hosts; tail -n 2 /etc/hosts; echo END; \
                  trap 'exit 0' TERM; sleep 3600 & wait";
    let spec = format!(
        "  hostNetwork: true\n  hostAliases:\n  - ip: 198.51.100.8\n    hostnames: [cache]\n  containers:\n{}",
        container_yaml("app", script, "")
    );
    node.write_manifest("hostnet.yaml", &pod_yaml("hostnet", &spec));
    let lines = output(&mut node, "hostnet", "app").await;
    assert_eq!(
        lines[..3],
        [
            "# Kubernetes-managed hosts file (host network).".to_string(),
            "# Entries added by HostAliases.".into(),
            "198.51.100.8\tcache".into()
        ],
        "{lines:#?}"
    );

    // activeDeadlineSeconds: the pod fails with DeadlineExceeded and its container stops.
    let spec = format!(
        "  activeDeadlineSeconds: 5\n  terminationGracePeriodSeconds: 2\n  containers:\n{}",
        container_yaml("app", "trap 'exit 0' TERM; sleep 3600 & wait", "")
    );
    node.write_manifest("deadline.yaml", &pod_yaml("deadline", &spec));
    let started = std::time::Instant::now();
    node.wait_pod("deadline", "app running", DEADLINE, |p| running(p, "app"))
        .await;
    let failed = node
        .wait_pod("deadline", "Failed with DeadlineExceeded", DEADLINE, |p| {
            phase(p) == "Failed"
        })
        .await;
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    let status = failed.status.expect("status");
    assert_eq!(status.reason.as_deref(), Some("DeadlineExceeded"));
    assert_eq!(
        status.message.as_deref(),
        Some("Pod was active on the node longer than the specified deadline")
    );
    let app =
        support::node::status_of(status.container_statuses.as_ref(), "app").expect("app status");
    let terminated = app
        .state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .expect("terminated");
    assert_eq!(
        terminated.exit_code, 0,
        "stopped with SIGTERM, which it traps"
    );
    // It is not restarted.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let uid = failed.metadata.uid.clone().unwrap_or_default();
    let containers = node.containers(Some(&uid)).await;
    assert_eq!(containers.len(), 1, "{containers:?}");
    assert!(
        node.kubelet_log()
            .contains("Pod was active on the node longer than the specified deadline"),
        "event logged"
    );
    node.shutdown().await;
}

/// A container entry of `image` running `script`, then `extra` lines.
fn container_of(image: &str, name: &str, script: &str, extra: &str) -> String {
    container_yaml(name, script, extra).replacen(
        &format!("image: {IMAGE}\n"),
        &format!("image: {image}\n"),
        1,
    )
}

/// The waiting message of a container that waits with `CreateContainerConfigError`.
async fn config_error(node: &mut TestNode, manifest: &str, name: &str) -> (Pod, String) {
    let pod = node
        .wait_pod(
            manifest,
            &format!("{name}: CreateContainerConfigError"),
            DEADLINE,
            |p| {
                container(p, name)
                    .and_then(|c| c.state.as_ref())
                    .and_then(|s| s.waiting.as_ref())
                    .is_some_and(|w| w.reason.as_deref() == Some("CreateContainerConfigError"))
            },
        )
        .await;
    let message = container(&pod, name)
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.waiting.as_ref())
        .and_then(|w| w.message.clone())
        .unwrap_or_default();
    (pod, message)
}

/// The image's own user, as the runtime reports it in the image status (a uid for
/// `USER 1000:1000`, a name for `USER nobody`): the container runs as it, `runAsNonRoot`
/// accepts a numeric non-root one and refuses root and names with the reference's messages,
/// and `runAsUser` overrides it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_user_and_run_as_non_root() {
    use kubelet_cri::testing::{BUSYBOX_NAMED_USER_IMAGE, BUSYBOX_NONROOT_IMAGE};
    let Some(mut node) = TestNode::start().await else {
        return;
    };
    let script = "echo \"UID=$(id -u)\"; echo \"GID=$(id -g)\"; echo \"USER=$(id -un)\"; echo END; \
                  trap 'exit 0' TERM; sleep 3600 & wait";
    let non_root = "    securityContext:\n      runAsNonRoot: true\n";
    let spec = format!(
        "  containers:\n{}{}{}{}",
        container_of(BUSYBOX_NONROOT_IMAGE, "numeric", script, non_root),
        container_of(BUSYBOX_NAMED_USER_IMAGE, "named", script, ""),
        container_of(
            BUSYBOX_NONROOT_IMAGE,
            "override",
            script,
            "    securityContext:\n      runAsUser: 2000\n"
        ),
        container_of(
            BUSYBOX_NAMED_USER_IMAGE,
            "namedexplicit",
            script,
            "    securityContext:\n      runAsNonRoot: true\n      runAsUser: 1000\n"
        ),
    );
    node.write_manifest("users.yaml", &pod_yaml("users", &spec));
    let r = report(&mut node, "users", "numeric").await;
    assert_eq!(
        (r["UID"].as_str(), r["GID"].as_str(), r["USER"].as_str()),
        ("1000", "1000", "app"),
        "the image's USER 1000:1000 under runAsNonRoot: {r:?}"
    );
    let r = report(&mut node, "users", "named").await;
    assert_eq!(
        (r["UID"].as_str(), r["USER"].as_str()),
        ("65534", "nobody"),
        "the image's USER nobody: {r:?}"
    );
    let r = report(&mut node, "users", "override").await;
    assert_eq!(r["UID"], "2000", "runAsUser over the image's user: {r:?}");
    let r = report(&mut node, "users", "namedexplicit").await;
    assert_eq!(
        r["UID"], "1000",
        "an explicit non-root runAsUser needs no image check: {r:?}"
    );

    // Refused: a root image and a named user under runAsNonRoot, each with the reference's
    // message, and nothing created for them.
    let spec = format!(
        "  containers:\n{}{}",
        container_of(IMAGE, "root", script, non_root),
        container_of(BUSYBOX_NAMED_USER_IMAGE, "named", script, non_root),
    );
    node.write_manifest("refused.yaml", &pod_yaml("refused", &spec));
    let (pod, message) = config_error(&mut node, "refused", "root").await;
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let pod_name = format!("refused-{}_default({uid})", support::node::NODE);
    assert_eq!(
        message,
        format!(
            "container has runAsNonRoot and image will run as root (pod: \"{pod_name}\", container: root)"
        )
    );
    let (_, message) = config_error(&mut node, "refused", "named").await;
    assert_eq!(
        message,
        format!(
            "container has runAsNonRoot and image has non-numeric user (nobody), cannot verify user is non-root (pod: \"{pod_name}\", container: named)"
        )
    );
    assert!(node.containers(Some(&uid)).await.is_empty());
    node.shutdown().await;
}

/// `procMount`: Default leaves the runtime's masked and read-only `/proc` paths in place;
/// Unmasked sends the runtime empty lists (as the reference), and containerd then mounts
/// `/proc` without them. Seen from inside, in `/proc/self/mounts`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proc_mount_default_and_unmasked() {
    let Some(mut node) = TestNode::start().await else {
        return;
    };
    // One line per masked or read-only path mounted over /proc, then the count.
    let script = "grep -E ' /proc/(kcore|keys|timer_list|sched_debug|sys|sysrq-trigger|bus|fs|irq) ' /proc/self/mounts \
                  | awk '{print \"MOUNT\" NR \"=\" $2 \" \" $4}'; \
                  echo \"MASKED=$(grep -cE ' /proc/(kcore|keys|timer_list|sched_debug|sys|sysrq-trigger|bus|fs|irq) ' /proc/self/mounts)\"; \
                  if echo 1 > /proc/sys/kernel/shm_rmid_forced 2>/dev/null; then echo PROCSYS=rw; else echo PROCSYS=ro; fi; \
                  echo END; trap 'exit 0' TERM; sleep 3600 & wait";
    let spec = format!(
        "  containers:\n{}{}",
        container_yaml(
            "default",
            script,
            "    securityContext:\n      procMount: Default\n"
        ),
        container_yaml(
            "unmasked",
            script,
            "    securityContext:\n      procMount: Unmasked\n"
        ),
    );
    node.write_manifest("procmount.yaml", &pod_yaml("procmount", &spec));
    let r = report(&mut node, "procmount", "default").await;
    let mounts: Vec<&String> = r
        .iter()
        .filter(|(k, _)| k.starts_with("MOUNT"))
        .map(|(_, v)| v)
        .collect();
    assert!(
        mounts.iter().any(|m| m.starts_with("/proc/keys ")),
        "Default: /proc/keys masked (runc skips the masked paths a kernel lacks, such as \
         /proc/kcore on some): {r:?}"
    );
    assert!(
        mounts.iter().any(|m| m.starts_with("/proc/sys ro")),
        "Default: /proc/sys read-only: {r:?}"
    );
    assert_eq!(r["PROCSYS"], "ro", "{r:?}");
    let r = report(&mut node, "procmount", "unmasked").await;
    assert_eq!(r["MASKED"], "0", "Unmasked: nothing over /proc: {r:?}");
    node.shutdown().await;
}
