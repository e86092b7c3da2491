//! Capacity and allocatable, as the reference computes them: allocatable = capacity -
//! systemReserved - kubeReserved - the hard eviction threshold of the resource, never below
//! zero; huge pages are taken out of allocatable memory.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::config::{NodeConfig, NodeConfigError, reserved_amount};
use super::machine::MachineInfo;
use crate::eviction::Signal;

/// `cpu`.
pub const RESOURCE_CPU: &str = "cpu";
/// `memory`.
pub const RESOURCE_MEMORY: &str = "memory";
/// `pods`.
pub const RESOURCE_PODS: &str = "pods";
/// `ephemeral-storage`.
pub const RESOURCE_EPHEMERAL_STORAGE: &str = "ephemeral-storage";

/// The node's capacity and allocatable, as the API carries them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeResources {
    /// What the machine has.
    pub capacity: BTreeMap<String, Quantity>,
    /// What pods may use.
    pub allocatable: BTreeMap<String, Quantity>,
}

/// A quantity in millicores, as the API prints it (`2`, `1500m`).
pub fn format_milli(milli: i64) -> Quantity {
    if milli % 1000 == 0 {
        Quantity((milli / 1000).to_string())
    } else {
        Quantity(format!("{milli}m"))
    }
}

/// A byte count in the API's canonical binary form: the largest binary suffix that divides
/// it exactly (`8048572Ki`, `1Gi`), plain below 1024 or when none divides.
pub fn format_bytes(bytes: i64) -> Quantity {
    const SUFFIXES: [&str; 6] = ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
    if bytes.abs() < 1024 {
        return Quantity(bytes.to_string());
    }
    let mut value = bytes;
    let mut suffix = None;
    for s in SUFFIXES {
        if value % 1024 != 0 {
            break;
        }
        value /= 1024;
        suffix = Some(s);
    }
    Quantity(format!("{value}{}", suffix.unwrap_or("")))
}

/// `hugepages-2Mi` for a 2 MiB page size.
pub fn hugepages_resource(page_size: u64) -> String {
    let size = i64::try_from(page_size).unwrap_or(i64::MAX);
    format!("hugepages-{}", format_bytes(size).0)
}

impl NodeResources {
    /// Compute capacity and allocatable from the machine and the configuration.
    pub fn compute(config: &NodeConfig, machine: &MachineInfo) -> Result<Self, NodeConfigError> {
        // Capacities in the resource's unit (millicores for cpu).
        let mut capacity: BTreeMap<String, i64> = BTreeMap::from([
            (
                RESOURCE_CPU.to_string(),
                machine.num_cores.saturating_mul(1000),
            ),
            (RESOURCE_MEMORY.to_string(), machine.memory_capacity),
            (RESOURCE_PODS.to_string(), config.max_pods),
            (
                RESOURCE_EPHEMERAL_STORAGE.to_string(),
                machine.ephemeral_storage_capacity,
            ),
        ]);
        let mut hugepages_total = 0i64;
        for pool in &machine.hugepages {
            let bytes =
                i64::try_from(pool.page_size.saturating_mul(pool.count)).unwrap_or(i64::MAX);
            hugepages_total = hugepages_total.saturating_add(bytes);
            capacity.insert(hugepages_resource(pool.page_size), bytes);
        }

        let mut reserved: BTreeMap<String, i64> = BTreeMap::new();
        for (what, map) in [
            ("systemReserved", &config.system_reserved),
            ("kubeReserved", &config.kube_reserved),
        ] {
            for (resource, quantity) in map {
                let amount = reserved_amount(what, resource, quantity)?;
                let entry = reserved.entry(resource.clone()).or_default();
                *entry = entry.saturating_add(amount);
            }
        }
        for threshold in config.eviction_hard.iter().filter(|t| t.is_hard()) {
            let resource = match threshold.signal {
                Signal::MemoryAvailable => RESOURCE_MEMORY,
                Signal::NodeFsAvailable => RESOURCE_EPHEMERAL_STORAGE,
                _ => continue,
            };
            let amount = threshold
                .value
                .amount(capacity.get(resource).copied().unwrap_or(0));
            let entry = reserved.entry(resource.to_string()).or_default();
            *entry = entry.saturating_add(amount);
        }

        let mut allocatable: BTreeMap<String, i64> = capacity
            .iter()
            .map(|(name, cap)| {
                let left = cap.saturating_sub(reserved.get(name).copied().unwrap_or(0));
                (name.clone(), left.max(0))
            })
            .collect();
        if let Some(memory) = allocatable.get_mut(RESOURCE_MEMORY) {
            *memory = memory.saturating_sub(hugepages_total).max(0);
        }

        let format = |(name, value): (String, i64)| {
            let q = match name.as_str() {
                RESOURCE_CPU => format_milli(value),
                RESOURCE_PODS => Quantity(value.to_string()),
                _ => format_bytes(value),
            };
            (name, q)
        };
        Ok(Self {
            capacity: capacity.into_iter().map(format).collect(),
            allocatable: allocatable.into_iter().map(format).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::machine::HugePages;

    fn machine() -> MachineInfo {
        MachineInfo {
            num_cores: 4,
            memory_capacity: 8_048_572 * 1024,
            ephemeral_storage_capacity: 102_687_672 * 1024,
            ..MachineInfo::default()
        }
    }

    fn q(s: &str) -> Quantity {
        Quantity(s.to_string())
    }

    #[test]
    fn formats_as_the_api_does() {
        assert_eq!(format_milli(4000).0, "4");
        assert_eq!(format_milli(3500).0, "3500m");
        assert_eq!(format_bytes(0).0, "0");
        assert_eq!(format_bytes(1000).0, "1000");
        assert_eq!(format_bytes(1025).0, "1025");
        assert_eq!(format_bytes(8_048_572 * 1024).0, "8048572Ki");
        assert_eq!(format_bytes(1 << 30).0, "1Gi");
        assert_eq!(hugepages_resource(2 << 20), "hugepages-2Mi");
    }

    #[test]
    fn default_allocatable_holds_back_the_hard_eviction_thresholds() {
        let r = NodeResources::compute(&NodeConfig::new("n"), &machine()).unwrap();
        assert_eq!(r.capacity["cpu"], q("4"));
        assert_eq!(r.capacity["memory"], q("8048572Ki"));
        assert_eq!(r.capacity["pods"], q("110"));
        assert_eq!(r.capacity["ephemeral-storage"], q("102687672Ki"));
        assert_eq!(r.allocatable["cpu"], q("4"));
        // 100Mi less.
        assert_eq!(r.allocatable["memory"], q("7946172Ki"));
        assert_eq!(r.allocatable["pods"], q("110"));
        // 10% (float32) less, truncated.
        let cap = 102_687_672i64 * 1024;
        let reserved = (cap as f64 * f64::from(0.1f32)) as i64;
        assert_eq!(
            r.allocatable["ephemeral-storage"],
            format_bytes(cap - reserved)
        );
    }

    #[test]
    fn reservations_add_up_and_never_go_below_zero() {
        let mut config = NodeConfig::new("n");
        config.system_reserved =
            BTreeMap::from([("cpu".into(), q("500m")), ("memory".into(), q("1Gi"))]);
        config.kube_reserved = BTreeMap::from([
            ("cpu".into(), q("250m")),
            ("memory".into(), q("512Mi")),
            ("ephemeral-storage".into(), q("1Ti")),
        ]);
        config.eviction_hard =
            crate::eviction::parse_thresholds(&crate::eviction::EvictionSettings {
                hard: BTreeMap::from([("memory.available".into(), "500Mi".into())]),
                ..Default::default()
            })
            .unwrap();
        let mut m = machine();
        m.hugepages = vec![HugePages {
            page_size: 2 << 20,
            count: 512,
        }];
        let r = NodeResources::compute(&config, &m).unwrap();
        assert_eq!(r.allocatable["cpu"], q("3250m"));
        // 8048572Ki - 1Gi - 512Mi - 500Mi - 1Gi of huge pages.
        let memory = 8_048_572i64 * 1024 - (1 << 30) - (512 << 20) - (500 << 20) - (1 << 30);
        assert_eq!(r.allocatable["memory"], format_bytes(memory));
        assert_eq!(r.allocatable["ephemeral-storage"], q("0"));
        assert_eq!(r.capacity["hugepages-2Mi"], q("1Gi"));
        assert_eq!(r.allocatable["hugepages-2Mi"], q("1Gi"));
    }

    #[test]
    fn a_bad_reservation_is_an_error_naming_it() {
        let mut config = NodeConfig::new("n");
        config.kube_reserved.insert("memory".into(), q("1Gx"));
        let err = NodeResources::compute(&config, &machine()).unwrap_err();
        assert!(err.to_string().contains("kubeReserved[memory]"), "{err}");
    }
}
