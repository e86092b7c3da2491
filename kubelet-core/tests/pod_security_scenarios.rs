//! Scenarios for the pod-level and security parts of a pod spec, on the real reconciler with
//! the stateful fake runtime under paused time: the security context handed to the runtime,
//! runAsNonRoot against the image's user, the managed /etc/hosts, DNS into the sandbox,
//! activeDeadlineSeconds, and RuntimeClass handlers.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Capabilities, HostAlias, Pod, PodDNSConfig, PodSecurityContext, ResourceRequirements,
    SeccompProfile, SecurityContext, Sysctl, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kubelet_core::runtime::{ContainerState, NamespaceMode, SeccompProfile as CriSeccomp};
use kubelet_core::runtime_class::StaticRuntimeClasses;
use kubelet_core::testing::pods::{container, pod};
use kubelet_core::{KubeletBuilder, KubeletConfig};
use tokio::time::Instant;

use support::scenario::IMAGE;
const LIMIT: Duration = Duration::from_secs(60);

mod support {
    // Shared by the scenario test files; each uses part of it.
    #[allow(dead_code)]
    pub mod scenario;
}

use support::scenario::{Node, runtime};

impl Node {
    /// The kubelet with a resolv.conf and hosts file of the test's own, its settings and
    /// builder adjusted by the test.
    fn start_with_files(
        configure: impl FnOnce(&mut KubeletConfig, &std::path::Path),
        builder: impl FnOnce(KubeletBuilder) -> KubeletBuilder,
    ) -> Self {
        Self::start_configured(
            runtime(),
            |config, dir| {
                let resolv = dir.join("resolv.conf");
                std::fs::write(&resolv, "nameserver 192.0.2.53\nsearch corp.example\n")
                    .expect("resolv.conf");
                config.spec.resolv_conf = resolv.to_string_lossy().into_owned();
                let hosts = dir.join("hosts");
                std::fs::write(&hosts, "127.0.0.1\tlocalhost\n192.0.2.10\tnode-1\n")
                    .expect("hosts");
                config.node_hosts_file = hosts;
                configure(config, dir);
            },
            builder,
        )
    }

    fn plain() -> Self {
        Self::start_with_files(|_, _| {}, |b| b)
    }

    fn running_id(&self, pod: &str, name: &str) -> Option<String> {
        self.runtime
            .containers_of(pod, name)
            .into_iter()
            .find(|c| c.state == ContainerState::Running)
            .map(|c| c.id)
    }

    async fn running(&self, pod: &str, name: &str) -> String {
        self.until(LIMIT, &format!("{pod}/{name} running"), |n| {
            n.running_id(pod, name).is_some()
        })
        .await;
        self.running_id(pod, name).unwrap_or_default()
    }

    fn waiting(&self, uid: &str, name: &str) -> Option<(String, String)> {
        let w = self
            .reporter
            .last_pod_status(uid)?
            .container_statuses?
            .into_iter()
            .find(|c| c.name == name)?
            .state?
            .waiting?;
        Some((w.reason.unwrap_or_default(), w.message.unwrap_or_default()))
    }
}

fn uid(p: &Pod) -> String {
    p.metadata.uid.clone().unwrap_or_default()
}

#[tokio::test(start_paused = true)]
async fn security_context_reaches_the_runtime() {
    let node = Node::plain();
    let p = pod("secure")
        .spec(|s| {
            s.share_process_namespace = Some(true);
            s.security_context = Some(PodSecurityContext {
                run_as_user: Some(1000),
                run_as_group: Some(3000),
                fs_group: Some(2000),
                supplemental_groups: Some(vec![4000]),
                seccomp_profile: Some(SeccompProfile {
                    type_: "RuntimeDefault".into(),
                    localhost_profile: None,
                }),
                sysctls: Some(vec![Sysctl {
                    name: "net.ipv4.ping_group_range".into(),
                    value: "0 2147483647".into(),
                }]),
                ..Default::default()
            });
        })
        .container(container("app", IMAGE).with(|c| {
            c.security_context = Some(SecurityContext {
                run_as_user: Some(1001),
                read_only_root_filesystem: Some(true),
                allow_privilege_escalation: Some(false),
                capabilities: Some(Capabilities {
                    add: Some(vec!["NET_ADMIN".into()]),
                    drop: Some(vec!["ALL".into()]),
                }),
                proc_mount: Some("Unmasked".into()),
                ..Default::default()
            });
        }))
        .build();
    node.pods.snapshot(vec![p.clone()]);
    let id = node.running("secure", "app").await;

    let config = node
        .runtime
        .container_config(&id)
        .expect("container config");
    let sec = &config.security;
    assert_eq!(sec.run_as_user, Some(1001), "the container's user wins");
    assert_eq!(sec.run_as_group, Some(3000), "the pod's group applies");
    assert_eq!(sec.supplemental_groups, [2000, 4000]);
    assert!(sec.readonly_rootfs && sec.no_new_privs && !sec.privileged);
    let caps = sec.capabilities.clone().expect("capabilities");
    assert_eq!(
        (caps.add, caps.drop),
        (vec!["NET_ADMIN".to_string()], vec!["ALL".to_string()])
    );
    assert_eq!(sec.seccomp, Some(CriSeccomp::RuntimeDefault));
    assert!(sec.masked_paths.is_empty(), "procMount Unmasked");
    assert_eq!(
        sec.namespace_pid,
        NamespaceMode::Pod,
        "shareProcessNamespace"
    );

    let sandbox = node.runtime.sandboxes()[0].id.clone();
    let sb = node
        .runtime
        .sandbox_config(&sandbox)
        .expect("sandbox config");
    assert_eq!((sb.run_as_user, sb.run_as_group), (Some(1000), Some(3000)));
    assert_eq!(sb.supplemental_groups, [2000, 4000]);
    assert_eq!(sb.seccomp, Some(CriSeccomp::RuntimeDefault));
    assert_eq!(sb.pid, NamespaceMode::Pod);
    assert_eq!(sb.sysctls["net.ipv4.ping_group_range"], "0 2147483647");
    node.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn localhost_seccomp_is_under_the_root_dir_and_host_namespaces_pass_through() {
    let node = Node::start_with_files(
        |c, dir| {
            c.spec.seccomp_profile_root = dir.join("kubelet/seccomp").to_string_lossy().into();
        },
        |b| b,
    );
    let p = pod("hostns")
        .spec(|s| {
            s.host_pid = Some(true);
            s.host_ipc = Some(true);
        })
        .container(container("app", IMAGE).with(|c| {
            c.security_context = Some(SecurityContext {
                privileged: Some(true),
                seccomp_profile: Some(SeccompProfile {
                    type_: "Localhost".into(),
                    localhost_profile: Some("audit.json".into()),
                }),
                ..Default::default()
            });
        }))
        .build();
    node.pods.snapshot(vec![p]);
    let id = node.running("hostns", "app").await;
    let sec = node.runtime.container_config(&id).expect("config").security;
    let want = node.root.join("seccomp/audit.json");
    assert_eq!(
        sec.seccomp,
        Some(CriSeccomp::Localhost(want.to_string_lossy().into_owned()))
    );
    assert!(sec.privileged);
    assert_eq!(sec.namespace_pid, NamespaceMode::Node);
    assert_eq!(sec.namespace_ipc, NamespaceMode::Node);
    assert_eq!(
        sec.masked_paths.len(),
        11,
        "procMount Default masks the usual paths"
    );
    let sandbox = node.runtime.sandboxes()[0].id.clone();
    let sb = node.runtime.sandbox_config(&sandbox).expect("sandbox");
    assert!(
        sb.privileged,
        "a privileged container makes the sandbox privileged"
    );
    assert_eq!((sb.pid, sb.ipc), (NamespaceMode::Node, NamespaceMode::Node));
    node.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn run_as_non_root_refuses_a_root_image_until_a_user_is_set() {
    let node = Node::plain();
    let non_root = |c: &mut k8s_openapi::api::core::v1::Container| {
        c.security_context = Some(SecurityContext {
            run_as_non_root: Some(true),
            ..Default::default()
        });
    };
    let p = pod("nonroot")
        .container(container("app", IMAGE).with(non_root))
        .build();
    let u = uid(&p);
    node.pods.snapshot(vec![p.clone()]);
    node.until(LIMIT, "CreateContainerConfigError", |n| {
        n.waiting(&u, "app")
            .is_some_and(|(r, _)| r == "CreateContainerConfigError")
    })
    .await;
    let (_, message) = node.waiting(&u, "app").unwrap_or_default();
    assert_eq!(
        message,
        "container has runAsNonRoot and image will run as root (pod: \"nonroot_default(uid-default-nonroot)\", container: app)"
    );
    assert!(node.runtime.containers().is_empty(), "nothing was created");
    let failed = node.reporter.events_with_reason("Failed");
    assert!(
        failed
            .iter()
            .any(|e| e.message.starts_with("Error: container has runAsNonRoot")),
        "{failed:?}"
    );

    // An image whose user is a name cannot be verified.
    node.runtime.set_image_user(IMAGE, None, "nginx");
    node.until(LIMIT, "non-numeric user refused", |n| {
        n.waiting(&u, "app")
            .is_some_and(|(_, m)| m.contains("image has non-numeric user (nginx)"))
    })
    .await;

    // A numeric non-root image user starts, and becomes the container's user.
    node.runtime.set_image_user(IMAGE, Some(1234), "");
    let id = node.running("nonroot", "app").await;
    let sec = node.runtime.container_config(&id).expect("config").security;
    assert_eq!(sec.run_as_user, Some(1234));
    node.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn explicit_root_user_under_run_as_non_root_is_refused() {
    let node = Node::plain();
    let p = pod("root")
        .container(container("app", IMAGE).with(|c| {
            c.security_context = Some(SecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(0),
                ..Default::default()
            });
        }))
        .build();
    let u = uid(&p);
    node.pods.snapshot(vec![p]);
    node.until(LIMIT, "refused", |n| n.waiting(&u, "app").is_some())
        .await;
    assert_eq!(
        node.waiting(&u, "app").unwrap_or_default(),
        (
            "CreateContainerConfigError".to_string(),
            "container's runAsUser breaks non-root policy (pod: \"root_default(uid-default-root)\", container: app)"
                .to_string()
        )
    );
    node.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn etc_hosts_is_written_and_mounted() {
    let node = Node::start_with_files(
        |c, _| {
            c.spec.cluster_domain = "cluster.local".into();
            c.spec.cluster_dns = vec!["10.96.0.10".into()];
        },
        |b| b,
    );
    let p = pod("web")
        .namespace("prod")
        .spec(|s| {
            s.hostname = Some("www".into());
            s.subdomain = Some("front".into());
            s.set_hostname_as_fqdn = Some(true);
            s.host_aliases = Some(vec![HostAlias {
                ip: "198.51.100.7".into(),
                hostnames: Some(vec!["db".into(), "db.local".into()]),
            }]);
            s.dns_config = Some(PodDNSConfig {
                searches: Some(vec!["extra.example".into()]),
                ..Default::default()
            });
        })
        .container(container("app", IMAGE))
        .build();
    let u = uid(&p);
    node.pods.snapshot(vec![p]);
    let id = node.running("web", "app").await;
    let sandbox = node.runtime.sandboxes()[0].clone();
    let ip = sandbox.ips[0].clone();
    let file = node.root.join("pods").join(&u).join("etc-hosts");
    let content = std::fs::read_to_string(&file).expect("etc-hosts");
    assert_eq!(
        content,
        format!(
            "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n{ip}\twww.front.prod.svc.cluster.local\twww\n\n# Entries added by HostAliases.\n198.51.100.7\tdb\tdb.local\n"
        )
    );
    let mounts = node.runtime.container_config(&id).expect("config").mounts;
    let hosts = mounts
        .iter()
        .find(|m| m.container_path == "/etc/hosts")
        .expect("/etc/hosts mounted");
    assert_eq!(PathBuf::from(&hosts.host_path), file);
    assert!(!hosts.readonly);

    let sb = node.runtime.sandbox_config(&sandbox.id).expect("sandbox");
    assert_eq!(sb.hostname, "www.front.prod.svc.cluster.local");
    let dns = sb.dns_config.expect("dns");
    assert_eq!(dns.servers, ["10.96.0.10"]);
    assert_eq!(
        dns.searches,
        [
            "prod.svc.cluster.local",
            "svc.cluster.local",
            "cluster.local",
            "corp.example",
            "extra.example"
        ]
    );
    assert_eq!(dns.options, ["ndots:5"]);
    node.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_container_mounting_its_own_etc_hosts_keeps_it() {
    let node = Node::plain();
    let p = pod("own")
        .spec(|s| {
            s.volumes = Some(vec![k8s_openapi::api::core::v1::Volume {
                name: "hosts".into(),
                empty_dir: Some(Default::default()),
                ..Default::default()
            }]);
        })
        .container(container("app", IMAGE).with(|c| {
            c.volume_mounts = Some(vec![VolumeMount {
                name: "hosts".into(),
                mount_path: "/etc/hosts".into(),
                ..Default::default()
            }]);
        }))
        .build();
    node.pods.snapshot(vec![p]);
    let id = node.running("own", "app").await;
    let mounts = node.runtime.container_config(&id).expect("config").mounts;
    let at_hosts: Vec<_> = mounts
        .iter()
        .filter(|m| m.container_path == "/etc/hosts")
        .collect();
    assert_eq!(at_hosts.len(), 1, "{mounts:?}");
    assert!(!at_hosts[0].host_path.ends_with("etc-hosts"), "{mounts:?}");
    node.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn host_network_pods_get_the_nodes_hosts_file_and_dns() {
    let node = Node::plain();
    let p = pod("hostnet")
        .host_network()
        .spec(|s| {
            s.host_aliases = Some(vec![HostAlias {
                ip: "198.51.100.7".into(),
                hostnames: Some(vec!["db".into()]),
            }]);
        })
        .container(container("app", IMAGE))
        .build();
    let u = uid(&p);
    node.pods.snapshot(vec![p]);
    node.running("hostnet", "app").await;
    let content = std::fs::read_to_string(node.root.join("pods").join(&u).join("etc-hosts"))
        .expect("etc-hosts");
    assert_eq!(
        content,
        "# Kubernetes-managed hosts file (host network).\n127.0.0.1\tlocalhost\n192.0.2.10\tnode-1\n\n# Entries added by HostAliases.\n198.51.100.7\tdb\n"
    );
    let sandbox = node.runtime.sandboxes()[0].id.clone();
    let sb = node.runtime.sandbox_config(&sandbox).expect("sandbox");
    assert_eq!(sb.hostname, "", "no hostname with the host's UTS namespace");
    let dns = sb.dns_config.expect("dns");
    assert_eq!(
        dns.servers,
        ["192.0.2.53"],
        "ClusterFirst on the host network: the node's"
    );
    assert_eq!(dns.searches, ["corp.example"]);
    node.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn too_long_fqdn_keeps_the_sandbox_from_being_created() {
    let node = Node::start_with_files(|c, _| c.spec.cluster_domain = "cluster.local".into(), |b| b);
    let p = pod("a-very-long-pod-name-that-fills-the-kernel-field")
        .namespace("a-long-namespace")
        .spec(|s| {
            s.subdomain = Some("subdomain".into());
            s.set_hostname_as_fqdn = Some(true);
        })
        .container(container("app", IMAGE))
        .build();
    node.pods.snapshot(vec![p]);
    node.until(LIMIT, "FailedCreatePodSandBox", |n| {
        !n.reporter
            .events_with_reason("FailedCreatePodSandBox")
            .is_empty()
    })
    .await;
    let events = node.reporter.events_with_reason("FailedCreatePodSandBox");
    assert!(
        events[0]
            .message
            .contains("is too long (64 characters is the max"),
        "{}",
        events[0].message
    );
    assert!(node.runtime.sandboxes().is_empty());
    node.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn dns_limits_are_reported_as_events() {
    let node = Node::plain();
    let p = pod("dns")
        .spec(|s| {
            s.dns_policy = Some("None".into());
            s.dns_config = Some(PodDNSConfig {
                nameservers: Some((1..=4).map(|i| format!("10.0.0.{i}")).collect()),
                ..Default::default()
            });
        })
        .container(container("app", IMAGE))
        .build();
    node.pods.snapshot(vec![p]);
    node.running("dns", "app").await;
    let events = node.reporter.events_with_reason("DNSConfigForming");
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        events[0].message,
        "Nameserver limits were exceeded, some nameservers have been omitted, the applied nameserver line is: 10.0.0.1 10.0.0.2 10.0.0.3"
    );
    // No cluster DNS configured: a ClusterFirst pod falls back, with an event.
    let p = pod("nodns").container(container("app", IMAGE)).build();
    node.pods.add(p);
    node.running("nodns", "app").await;
    let missing = node.reporter.events_with_reason("MissingClusterDNS");
    assert_eq!(missing.len(), 1, "{missing:?}");
    node.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn active_deadline_kills_the_pod_and_fails_it() {
    let node = Node::plain();
    let p = pod("deadline")
        .active_deadline(30)
        .grace_period(5)
        .container(container("app", IMAGE))
        .build();
    let u = uid(&p);
    node.pods.snapshot(vec![p]);
    node.running("deadline", "app").await;
    let started = Instant::now();
    node.until(LIMIT, "Failed", |n| {
        n.reporter.last_phase(&u).as_deref() == Some("Failed")
    })
    .await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(25) && took <= Duration::from_secs(40),
        "failed after {took:?}"
    );
    let status = node.reporter.last_pod_status(&u).expect("status");
    assert_eq!(status.reason.as_deref(), Some("DeadlineExceeded"));
    assert_eq!(
        status.message.as_deref(),
        Some("Pod was active on the node longer than the specified deadline")
    );
    let ready = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Ready")
        .expect("Ready condition");
    assert_eq!(ready.status, "False");
    assert_eq!(ready.reason.as_deref(), Some("PodFailed"));
    let events = node.reporter.events_with_reason("DeadlineExceeded");
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0].message,
        "Pod was active on the node longer than the specified deadline"
    );
    assert!(node.runtime.running_containers().is_empty());
    // Nothing is restarted afterwards, though the restart policy is Always.
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert!(node.runtime.running_containers().is_empty());
    assert_eq!(node.runtime.containers_of("deadline", "app").len(), 1);
    assert_eq!(node.reporter.last_phase(&u).as_deref(), Some("Failed"));
    node.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn runtime_class_handler_reaches_the_sandbox_and_unknown_classes_block_it() {
    let classes = StaticRuntimeClasses::default();
    classes.put("sandboxed", "runsc");
    let for_node = classes.clone();
    let node = Node::start_with_files(|_, _| {}, move |b| b.runtime_classes(Arc::new(for_node)));
    let p = pod("rc")
        .spec(|s| {
            s.runtime_class_name = Some("sandboxed".into());
            // What the RuntimeClass admission sets from the class's overhead.
            s.overhead = Some(std::collections::BTreeMap::from([
                ("cpu".to_string(), Quantity("250m".into())),
                ("memory".to_string(), Quantity("120Mi".into())),
            ]));
        })
        .container(container("app", IMAGE).with(|c| {
            c.resources = Some(ResourceRequirements {
                limits: Some(std::collections::BTreeMap::from([(
                    "memory".to_string(),
                    Quantity("64Mi".into()),
                )])),
                ..Default::default()
            });
        }))
        .build();
    node.pods.snapshot(vec![p]);
    node.running("rc", "app").await;
    let sandbox = node.runtime.sandboxes()[0].id.clone();
    let sb = node.runtime.sandbox_config(&sandbox).expect("sandbox");
    assert_eq!(sb.runtime_handler, "runsc");
    let overhead = sb.overhead.expect("overhead");
    assert_eq!(
        (
            overhead.cpu_shares,
            overhead.cpu_quota,
            overhead.memory_limit_in_bytes
        ),
        (256, 25_000, 120 << 20)
    );
    let resources = sb.resources.expect("pod resources");
    assert_eq!(
        resources.memory_limit_in_bytes,
        64 << 20,
        "without the overhead"
    );

    let unknown = pod("unknown")
        .spec(|s| s.runtime_class_name = Some("kata".into()))
        .container(container("app", IMAGE))
        .build();
    node.pods.add(unknown);
    node.until(LIMIT, "FailedCreatePodSandBox", |n| {
        !n.reporter
            .events_with_reason("FailedCreatePodSandBox")
            .is_empty()
    })
    .await;
    let events = node.reporter.events_with_reason("FailedCreatePodSandBox");
    assert_eq!(
        events[0].message,
        "Failed to create pod sandbox: runtimeclass.node.k8s.io \"kata\" not found"
    );
    assert_eq!(
        node.runtime.sandboxes().len(),
        1,
        "no sandbox for the unknown class"
    );
    // Once the class exists, the pod starts.
    classes.put("kata", "kata-qemu");
    node.running("unknown", "app").await;
    node.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn termination_message_from_the_file_or_the_log() {
    use kubelet_core::testing::{ContainerBehavior, ContainerMatch};
    let node = Node::plain();
    node.runtime.set_behavior(
        ContainerMatch::any(),
        ContainerBehavior::exit(1, Duration::from_secs(5)),
    );
    let p = pod("msg")
        .restart_policy("Never")
        .container(container("file", IMAGE).with(|c| {
            c.termination_message_path = Some("/dev/termination-log".into());
        }))
        .container(container("logs", IMAGE).with(|c| {
            c.termination_message_path = Some("/dev/termination-log".into());
            c.termination_message_policy = Some("FallbackToLogsOnError".into());
        }))
        .build();
    let u = uid(&p);
    node.pods.snapshot(vec![p]);
    let file_id = node.running("msg", "file").await;
    let logs_id = node.running("msg", "logs").await;
    let host_file = |id: &str| {
        node.runtime
            .container_config(id)
            .expect("config")
            .mounts
            .into_iter()
            .find(|m| m.container_path == "/dev/termination-log")
            .expect("termination-log mounted")
            .host_path
    };
    std::fs::write(host_file(&file_id), "written by the app").expect("message");
    let log_path = node
        .runtime
        .containers()
        .into_iter()
        .find(|c| c.id == logs_id)
        .expect("logs container")
        .log_path;
    std::fs::write(
        &log_path,
        "2024-01-01T00:00:00Z stdout F starting\n2024-01-01T00:00:00Z stderr F it broke\n",
    )
    .expect("log");
    node.until(LIMIT, "both terminated", |n| {
        n.reporter.last_phase(&u).as_deref() == Some("Failed")
    })
    .await;
    let status = node.reporter.last_pod_status(&u).expect("status");
    let message = |name: &str| {
        status
            .container_statuses
            .iter()
            .flatten()
            .find(|c| c.name == name)
            .and_then(|c| c.state.as_ref()?.terminated.as_ref()?.message.clone())
    };
    assert_eq!(message("file").as_deref(), Some("written by the app"));
    assert_eq!(message("logs").as_deref(), Some("starting\nit broke\n"));
    node.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn pod_run_as_group_without_user_fails_the_sandbox_as_containerd_does() {
    // What containerd 1.6 answers (seen on the real one) when the sandbox gets a group and
    // no user: the reference kubelet passes the pod's runAsGroup alone, and so does this one.
    let node = Node::plain();
    let p = pod("grouponly")
        .spec(|s| {
            s.security_context = Some(PodSecurityContext {
                run_as_group: Some(3000),
                ..Default::default()
            });
        })
        .container(container("app", IMAGE))
        .build();
    node.pods.snapshot(vec![p]);
    node.until(LIMIT, "FailedCreatePodSandBox", |n| {
        !n.reporter
            .events_with_reason("FailedCreatePodSandBox")
            .is_empty()
    })
    .await;
    let events = node.reporter.events_with_reason("FailedCreatePodSandBox");
    assert!(
        events[0]
            .message
            .ends_with("user group \"3000\" is specified without user"),
        "{}",
        events[0].message
    );
    node.shutdown().await;
}
