//! Names and paths of CSI volumes on the node, laid out as the reference kubelet lays them
//! out, so that a node's directories read the same whichever kubelet made them.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The pod-level directory of the plugin: `<pod-dir>/volumes/kubernetes.io~csi`.
pub const POD_PLUGIN_DIR: &str = "kubernetes.io~csi";
/// The per-node plugin directory below the root: `<root>/plugins/kubernetes.io/csi`.
pub const NODE_PLUGIN_DIR: &str = "plugins/kubernetes.io/csi";
/// The file beside a mount directory that records what is mounted there.
pub const VOL_DATA_FILE: &str = "vol_data.json";

fn sha256_hex(input: &str) -> String {
    let digest = Sha256::digest(input.as_bytes());
    let mut hex = String::with_capacity(64);
    for byte in digest {
        hex.push_str(&format!("{byte:02x}"));
    }
    hex
}

/// The volume ID of an inline ephemeral volume: `csi-<sha256(pod UID + volume name)>`.
pub fn ephemeral_volume_handle(pod_uid: &str, volume_name: &str) -> String {
    format!("csi-{}", sha256_hex(&format!("{pod_uid}{volume_name}")))
}

/// The name of the VolumeAttachment of `volume_handle` of `driver` on `node`:
/// `csi-<sha256(handle + driver + node)>`.
pub fn attachment_name(volume_handle: &str, driver: &str, node: &str) -> String {
    format!(
        "csi-{}",
        sha256_hex(&format!("{volume_handle}{driver}{node}"))
    )
}

/// `<pod-dir>/volumes/kubernetes.io~csi/<spec name>`: holds `vol_data.json` and `mount`.
pub fn pod_volume_dir(pod_dir: &Path, spec_name: &str) -> PathBuf {
    pod_dir.join("volumes").join(POD_PLUGIN_DIR).join(spec_name)
}

/// `<pod-dir>/volumes/kubernetes.io~csi`.
pub fn pod_plugin_dir(pod_dir: &Path) -> PathBuf {
    pod_dir.join("volumes").join(POD_PLUGIN_DIR)
}

/// The publish target below a pod volume directory.
pub fn target_path(volume_dir: &Path) -> PathBuf {
    volume_dir.join("mount")
}

/// `<root>/plugins/kubernetes.io/csi/<driver>/<sha256(handle)>`: holds the node-level
/// `vol_data.json` and `globalmount`.
pub fn device_dir(root_dir: &Path, driver: &str, volume_handle: &str) -> PathBuf {
    root_dir
        .join(NODE_PLUGIN_DIR)
        .join(driver)
        .join(sha256_hex(volume_handle))
}

/// The staging path (global mount path) below a device directory.
pub fn staging_path(device_dir: &Path) -> PathBuf {
    device_dir.join("globalmount")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_hash_their_inputs_as_the_reference_does() {
        // sha256("abc") is the FIPS 180-2 test vector.
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            ephemeral_volume_handle("a", "bc"),
            format!("csi-{}", sha256_hex("abc"))
        );
        assert_eq!(
            attachment_name("a", "b", "c"),
            format!("csi-{}", sha256_hex("abc"))
        );
    }

    #[test]
    fn paths_are_the_references() {
        let root = Path::new("/var/lib/kubelet");
        let dev = device_dir(root, "hostpath.csi.k8s.io", "abc");
        assert_eq!(
            staging_path(&dev),
            Path::new(
                "/var/lib/kubelet/plugins/kubernetes.io/csi/hostpath.csi.k8s.io/ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad/globalmount"
            )
        );
        let pod = root.join("pods/uid-1");
        assert_eq!(
            target_path(&pod_volume_dir(&pod, "data")),
            Path::new("/var/lib/kubelet/pods/uid-1/volumes/kubernetes.io~csi/data/mount")
        );
    }
}
