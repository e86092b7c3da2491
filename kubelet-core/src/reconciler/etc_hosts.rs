//! The `/etc/hosts` file the kubelet manages for a pod, as the reference does
//! (`kubelet_pods.go`: `makeHostsMount`, `ensureHostsFile`): `<root-dir>/pods/<uid>/etc-hosts`,
//! rewritten before each container start and bind-mounted at `/etc/hosts` in every
//! container that does not mount something there itself. A pod on the host network gets
//! the node's `/etc/hosts` under its own header; others get localhost entries and their IPs
//! with the hostname (and FQDN with a subdomain); `hostAliases` are appended to both.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, HostAlias, Pod};

use crate::runtime::{Mount, MountPropagation};

/// Where the file is mounted in containers.
pub const ETC_HOSTS_PATH: &str = "/etc/hosts";
/// The file's name in the pod's directory.
pub const ETC_HOSTS_FILE: &str = "etc-hosts";

const MANAGED_HEADER: &str = "# Kubernetes-managed hosts file.\n";
const MANAGED_HEADER_HOST_NETWORK: &str = "# Kubernetes-managed hosts file (host network).\n";

/// `<pod_dir>/etc-hosts`.
pub fn etc_hosts_path(pod_dir: &Path) -> PathBuf {
    pod_dir.join(ETC_HOSTS_FILE)
}

fn aliases_section(aliases: &[HostAlias]) -> String {
    if aliases.is_empty() {
        return String::new();
    }
    let mut out = String::from("\n# Entries added by HostAliases.\n");
    for alias in aliases {
        let names = alias.hostnames.clone().unwrap_or_default().join("\t");
        out.push_str(&format!("{}\t{names}\n", alias.ip));
    }
    out
}

/// The managed file of a pod with its own network: `ips` with `hostname`, and
/// `hostname.domain` first when the pod has a subdomain (`domain` non-empty).
pub fn managed_content(
    ips: &[String],
    hostname: &str,
    domain: &str,
    aliases: &[HostAlias],
) -> String {
    let mut out = String::from(MANAGED_HEADER);
    out.push_str("127.0.0.1\tlocalhost\n");
    out.push_str("::1\tlocalhost ip6-localhost ip6-loopback\n");
    out.push_str("fe00::0\tip6-localnet\n");
    out.push_str("fe00::0\tip6-mcastprefix\n");
    out.push_str("fe00::1\tip6-allnodes\n");
    out.push_str("fe00::2\tip6-allrouters\n");
    for ip in ips {
        if domain.is_empty() {
            out.push_str(&format!("{ip}\t{hostname}\n"));
        } else {
            out.push_str(&format!("{ip}\t{hostname}.{domain}\t{hostname}\n"));
        }
    }
    out.push_str(&aliases_section(aliases));
    out
}

/// The file of a host-network pod: the node's hosts file under the host-network header.
pub fn host_network_content(node_hosts: &str, aliases: &[HostAlias]) -> String {
    let mut out = String::from(MANAGED_HEADER_HOST_NETWORK);
    out.push_str(node_hosts);
    out.push_str(&aliases_section(aliases));
    out
}

/// Whether the container gets the managed file: the pod has IPs (the reference's
/// `shouldMountHostsFile`) and the container mounts nothing at `/etc/hosts`.
pub fn should_mount(container: &Container, pod_ips: &[String]) -> bool {
    !pod_ips.is_empty()
        && !container
            .volume_mounts
            .iter()
            .flatten()
            .any(|m| m.mount_path == ETC_HOSTS_PATH)
}

/// Where the node's own hosts file is (read for host-network pods).
pub const NODE_ETC_HOSTS: &str = "/etc/hosts";

/// Write the pod's hosts file (mode 0644) and return the mount for `container`, or `None`
/// when the container does not get one. `hostname` and `domain` are the pod's (see
/// [`super::spec::pod_hostname_and_domain`]); `node_hosts` is the path of the node's file.
pub async fn ensure_mount(
    pod: &Pod,
    container: &Container,
    pod_dir: &Path,
    pod_ips: &[String],
    hostname: &str,
    domain: &str,
    node_hosts: &Path,
) -> Result<Option<Mount>, String> {
    if !should_mount(container, pod_ips) {
        return Ok(None);
    }
    let spec = pod.spec.as_ref();
    let aliases: &[HostAlias] = spec
        .and_then(|s| s.host_aliases.as_deref())
        .unwrap_or_default();
    let content = if spec.and_then(|s| s.host_network).unwrap_or(false) {
        let node = tokio::fs::read_to_string(node_hosts).await.map_err(|e| {
            format!(
                "reading the node's hosts file {}: {e}",
                node_hosts.display()
            )
        })?;
        host_network_content(&node, aliases)
    } else {
        managed_content(pod_ips, hostname, domain, aliases)
    };
    let path = etc_hosts_path(pod_dir);
    tokio::fs::create_dir_all(pod_dir)
        .await
        .map_err(|e| format!("creating {}: {e}", pod_dir.display()))?;
    tokio::fs::write(&path, content)
        .await
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tokio::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
            .await
            .map_err(|e| format!("chmod {}: {e}", path.display()))?;
    }
    Ok(Some(Mount {
        container_path: ETC_HOSTS_PATH.to_string(),
        host_path: path.to_string_lossy().into_owned(),
        readonly: false,
        propagation: MountPropagation::Private,
    }))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::VolumeMount;

    use super::*;

    fn aliases() -> Vec<HostAlias> {
        vec![
            HostAlias {
                ip: "123.45.67.89".into(),
                hostnames: Some(vec!["foo".into(), "bar".into(), "baz".into()]),
            },
            HostAlias {
                ip: "456.78.90.123".into(),
                hostnames: Some(vec!["park".into(), "doo".into()]),
            },
        ]
    }

    #[test]
    fn managed_file_with_and_without_domain() {
        assert_eq!(
            managed_content(&["203.0.113.1".into()], "podFoo", "", &[]),
            "# Kubernetes-managed hosts file.\n\
             127.0.0.1\tlocalhost\n\
             ::1\tlocalhost ip6-localhost ip6-loopback\n\
             fe00::0\tip6-localnet\n\
             fe00::0\tip6-mcastprefix\n\
             fe00::1\tip6-allnodes\n\
             fe00::2\tip6-allrouters\n\
             203.0.113.1\tpodFoo\n"
        );
        assert_eq!(
            managed_content(
                &["203.0.113.1".into(), "fd00::1".into()],
                "podFoo",
                "domainFoo",
                &aliases()
            ),
            "# Kubernetes-managed hosts file.\n\
             127.0.0.1\tlocalhost\n\
             ::1\tlocalhost ip6-localhost ip6-loopback\n\
             fe00::0\tip6-localnet\n\
             fe00::0\tip6-mcastprefix\n\
             fe00::1\tip6-allnodes\n\
             fe00::2\tip6-allrouters\n\
             203.0.113.1\tpodFoo.domainFoo\tpodFoo\n\
             fd00::1\tpodFoo.domainFoo\tpodFoo\n\
             \n\
             # Entries added by HostAliases.\n\
             123.45.67.89\tfoo\tbar\tbaz\n\
             456.78.90.123\tpark\tdoo\n"
        );
    }

    #[test]
    fn host_network_file_is_the_nodes() {
        let node = "127.0.0.1\tlocalhost\n192.0.2.1\tnode-1\n";
        assert_eq!(
            host_network_content(node, &aliases()[..1]),
            "# Kubernetes-managed hosts file (host network).\n\
             127.0.0.1\tlocalhost\n192.0.2.1\tnode-1\n\
             \n\
             # Entries added by HostAliases.\n\
             123.45.67.89\tfoo\tbar\tbaz\n"
        );
    }

    #[test]
    fn not_mounted_without_ips_or_over_the_containers_own() {
        let mut c = Container {
            name: "app".into(),
            ..Default::default()
        };
        assert!(should_mount(&c, &["10.0.0.1".into()]));
        assert!(!should_mount(&c, &[]));
        c.volume_mounts = Some(vec![VolumeMount {
            name: "hosts".into(),
            mount_path: "/etc/hosts".into(),
            ..Default::default()
        }]);
        assert!(!should_mount(&c, &["10.0.0.1".into()]));
    }
}
