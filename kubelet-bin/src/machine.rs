//! The machine's facts for the daemon, read through kubelet-core's reader (CPUs online and
//! in the kubelet's cpuset, MemTotal, the root filesystem's size, nodeInfo identity fields).

use std::path::Path;

pub use kubelet_core::node::MachineInfo;

/// Read this machine's facts; `root_dir` is the kubelet's state directory, whose filesystem
/// gives the ephemeral-storage capacity.
pub fn read(root_dir: &Path) -> MachineInfo {
    MachineInfo::read(root_dir)
}

/// CPU capacity in millicores; 0 when unknown.
pub fn cpu_capacity_milli(machine: &MachineInfo) -> i64 {
    machine.num_cores.saturating_mul(1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_machine_has_cpus_memory_and_a_root_filesystem() {
        let machine = read(Path::new("/var/lib/kubelet"));
        assert!(cpu_capacity_milli(&machine) >= 1000);
        assert!(machine.memory_capacity > 0);
        assert!(machine.ephemeral_storage_capacity > 0);
        assert_eq!(machine.operating_system, "linux");
    }
}
