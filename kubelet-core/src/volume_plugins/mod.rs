//! Built-in volume plugins that need nothing but the node: `emptyDir` and `hostPath`, and
//! what every plugin may share: tmpfs mounts ([`Mounter`]), `fsGroup` ownership
//! ([`ownership`]) and the size of memory-backed volumes ([`memory_volume_size`]).
//! (configMap, secret, downwardAPI and projected need the API server; CSI is in
//! `kubelet-csi`.)

mod empty_dir;
mod host_path;
mod mount;
pub mod ownership;

pub use empty_dir::{EmptyDirPlugin, disk_usage, size_limit_eviction_message};
pub use host_path::HostPathPlugin;
pub(crate) use mount::mount_points;
pub use mount::{FakeMounter, HostMounter, Mounter};
pub(crate) use mount::{ensure_tmpfs, remove_volume_dir};

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::volume::VolumePlugin;

/// The built-in plugins, as the kubelet registers them by default (tmpfs through the node's
/// own mount table).
pub fn builtin() -> Vec<Arc<dyn VolumePlugin>> {
    builtin_with(Arc::new(HostMounter))
}

/// The built-in plugins, mounting memory-backed volumes through `mounter`.
pub fn builtin_with(mounter: Arc<dyn Mounter>) -> Vec<Arc<dyn VolumePlugin>> {
    vec![
        Arc::new(EmptyDirPlugin::with_mounter(mounter)),
        Arc::new(HostPathPlugin),
    ]
}

fn io_error(volume: &str, path: &std::path::Path, source: std::io::Error) -> crate::VolumeError {
    crate::VolumeError::Io {
        volume: volume.to_string(),
        path: path.to_path_buf(),
        source,
    }
}

fn memory_limit(c: &Container) -> Option<i64> {
    let q = c.resources.as_ref()?.limits.as_ref()?.get("memory")?;
    crate::quantity::parse_units(q).ok().filter(|v| *v > 0)
}

/// The pod's memory limit as its cgroup gets it: the sum of its containers' limits (init
/// containers that keep running, sidecars, count with them), at least the largest limit of
/// the other init containers, plus the pod overhead; `None` when a container has no memory
/// limit.
pub fn pod_memory_limit(pod: &Pod) -> Option<i64> {
    let spec = pod.spec.as_ref()?;
    let mut sum: i64 = 0;
    for c in &spec.containers {
        sum = sum.saturating_add(memory_limit(c)?);
    }
    let mut init_max: i64 = 0;
    let mut sidecars: i64 = 0;
    for c in spec.init_containers.iter().flatten() {
        let limit = memory_limit(c)?;
        if c.restart_policy.as_deref() == Some("Always") {
            sidecars = sidecars.saturating_add(limit);
            init_max = init_max.max(sidecars);
        } else {
            init_max = init_max.max(sidecars.saturating_add(limit));
        }
    }
    let overhead = spec
        .overhead
        .as_ref()
        .and_then(|o| o.get("memory"))
        .and_then(|q| crate::quantity::parse_units(q).ok())
        .unwrap_or(0);
    Some(
        sum.saturating_add(sidecars)
            .max(init_max)
            .saturating_add(overhead),
    )
}

/// The tmpfs size of a memory-backed volume, as the reference computes it with
/// `SizeMemoryBackedVolumes` (on by default): the node's allocatable memory, lowered to the
/// pod's memory limit when it has one, lowered again to the volume's `sizeLimit` when it
/// sets a smaller one. `None` (the kernel's default, half the RAM) only when none of the
/// three is known.
pub fn memory_volume_size(
    pod: &Pod,
    size_limit: Option<&Quantity>,
    node_allocatable_memory: i64,
) -> Option<u64> {
    let mut size = (node_allocatable_memory > 0).then_some(node_allocatable_memory);
    if let Some(pod_limit) = pod_memory_limit(pod).filter(|l| *l > 0)
        && size.is_none_or(|s| pod_limit <= s)
    {
        size = Some(pod_limit);
    }
    if let Some(limit) = size_limit
        .and_then(|q| crate::quantity::parse_units(q).ok())
        .filter(|l| *l > 0)
        && size.is_none_or(|s| limit <= s)
    {
        size = Some(limit);
    }
    size.and_then(|s| u64::try_from(s).ok())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::{PodSpec, ResourceRequirements};

    use super::*;

    fn container(name: &str, memory: Option<&str>, restart: Option<&str>) -> Container {
        Container {
            name: name.into(),
            restart_policy: restart.map(str::to_string),
            resources: memory.map(|m| ResourceRequirements {
                limits: Some(BTreeMap::from([("memory".to_string(), Quantity(m.into()))])),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn pod(containers: Vec<Container>, init: Vec<Container>) -> Pod {
        Pod {
            spec: Some(PodSpec {
                containers,
                init_containers: Some(init),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    const MI: i64 = 1024 * 1024;

    #[test]
    fn pod_memory_limit_sums_containers_and_takes_the_larger_init() {
        let p = pod(
            vec![
                container("a", Some("64Mi"), None),
                container("b", Some("32Mi"), None),
            ],
            vec![container("i", Some("200Mi"), None)],
        );
        assert_eq!(pod_memory_limit(&p), Some(200 * MI));
        let p = pod(
            vec![container("a", Some("64Mi"), None)],
            vec![container("side", Some("16Mi"), Some("Always"))],
        );
        assert_eq!(pod_memory_limit(&p), Some(80 * MI));
        let p = pod(
            vec![
                container("a", Some("64Mi"), None),
                container("b", None, None),
            ],
            vec![],
        );
        assert_eq!(pod_memory_limit(&p), None);
    }

    #[test]
    fn memory_volume_size_is_the_smallest_known_bound() {
        let limited = pod(vec![container("a", Some("64Mi"), None)], vec![]);
        let unlimited = pod(vec![container("a", None, None)], vec![]);
        let q = |s: &str| Quantity(s.into());
        let node = 1024 * MI;
        let size = |p: &Pod, l: Option<&Quantity>, n: i64| memory_volume_size(p, l, n);
        assert_eq!(size(&unlimited, None, node), Some(1024 * 1024 * 1024));
        assert_eq!(size(&limited, None, node), Some(64 * 1024 * 1024));
        assert_eq!(size(&limited, Some(&q("8Mi")), node), Some(8 * 1024 * 1024));
        // A sizeLimit above the pod's limit does not raise it.
        assert_eq!(
            size(&limited, Some(&q("512Mi")), node),
            Some(64 * 1024 * 1024)
        );
        assert_eq!(size(&unlimited, Some(&q("1Mi")), 0), Some(1024 * 1024));
        assert_eq!(size(&unlimited, None, 0), None);
        assert_eq!(size(&limited, None, 0), Some(64 * 1024 * 1024));
    }
}
