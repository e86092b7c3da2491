//! End-to-end: volumes as containers see them, on a real containerd, looked at from inside
//! the container (`/proc/mounts`, `stat`, file contents, writes refused) and from the node.
//!
//! - [`api_object_and_empty_dir_volumes_seen_from_inside`]: secret, configMap, downwardAPI
//!   (resource fields, modes), projected token and emptyDir volumes of a pod from the API
//!   server (a real kube-apiserver with `KUBELET_TEST_ASSETS`, as `e2e_cluster.rs`), with an
//!   `fsGroup`; a ConfigMap changed on the API server shows up in the file; tmpfs mounts are
//!   gone with the pod.
//! - [`host_path_sub_path_and_propagation_of_static_pods`]: hostPath types, HostToContainer
//!   propagation of a mount made on the node later, a memory emptyDir sized by the pod's
//!   limit, and the refusals (type check, Bidirectional in an unprivileged container).
//!
//! Skipped when no containerd can run here, unless `KUBELET_TEST_REQUIRE_CONTAINERD=1`.

mod support {
    // Shared by several test binaries; each uses part of it.
    #[allow(dead_code)]
    pub mod cluster;
    #[allow(dead_code)]
    pub mod node;
}

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use support::cluster::start_cluster;
use support::node::{NODE, TestNode, container, running_and_ready, runtime_id, uid};

use support::cluster::{DEADLINE, IMAGE, POLL, SERVE};
/// How long a ConfigMap change may take to reach the file: the sync period (5 s here) plus
/// the volume plugin's object TTL (10 s), with much room to spare for a loaded machine.
const UPDATE_DEADLINE: Duration = Duration::from_secs(90);

/// The kubelet's `--root-dir` of a test node.
fn root_dir(node: &TestNode) -> PathBuf {
    node.pod_logs_dir()
        .parent()
        .map(|p| p.join("root"))
        .expect("test node directory")
}

/// Mount points of the node below `dir`.
fn mounts_below(dir: &Path) -> Vec<String> {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    std::fs::read_to_string("/proc/self/mountinfo")
        .expect("read mountinfo")
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| Path::new(p).starts_with(&dir))
        .map(str::to_string)
        .collect()
}

/// Runs `script` in the container with `set -x`, its output going to a file of the node
/// (`diag`, a file of a writable volume seen at `diag_in_container`), so that a failed
/// check shows what the container saw.
struct Checker<'a> {
    node: &'a TestNode,
    id: String,
    diag_in_container: String,
    diag: PathBuf,
}

impl Checker<'_> {
    async fn run(&self, script: &str) -> (i32, String) {
        let wrapped = format!(
            "{{ set -x; {script} ; }} > {out} 2>&1",
            out = self.diag_in_container
        );
        let code = self.node.exec(&self.id, &wrapped).await;
        let output = std::fs::read_to_string(&self.diag).unwrap_or_default();
        (code, output)
    }

    async fn check(&self, what: &str, script: &str) {
        let (code, output) = self.run(script).await;
        assert_eq!(code, 0, "{what}: the container saw:\n{output}");
    }
}

// ---------------------------------------------------------------------------------------
// Pods from the API server.

async fn create_or_keep<K>(api: &Api<K>, object: &K)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    match api.create(&PostParams::default(), object).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(err) => panic!("create {object:?}: {err}"),
    }
}

fn volumes_pod() -> Pod {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "vols", "namespace": "default"},
        "spec": {
            "nodeName": NODE,
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "serviceAccountName": "default",
            "securityContext": {"fsGroup": 1234},
            "containers": [{
                "name": "app",
                "image": IMAGE,
                "imagePullPolicy": "IfNotPresent",
                "command": ["sh", "-c", SERVE],
                "resources": {"limits": {"memory": "64Mi"}},
                "env": [{"name": "SUB", "value": "sub-a"}],
                "volumeMounts": [
                    {"name": "creds", "mountPath": "/etc/creds"},
                    {"name": "settings", "mountPath": "/etc/settings"},
                    {"name": "settings", "mountPath": "/etc/greeting", "subPath": "greeting"},
                    {"name": "podinfo", "mountPath": "/podinfo"},
                    {"name": "token", "mountPath": "/var/run/secrets/tokens"},
                    {"name": "shm", "mountPath": "/shm"},
                    {"name": "scratch", "mountPath": "/scratch"},
                    {"name": "scratch", "mountPath": "/sub", "subPathExpr": "$(SUB)"},
                    {"name": "scratch", "mountPath": "/ro-scratch", "readOnly": true}
                ]
            }],
            "volumes": [
                {"name": "creds", "secret": {"secretName": "creds", "defaultMode": 0o400}},
                {"name": "settings", "configMap": {"name": "settings",
                    "items": [{"key": "greeting", "path": "greeting", "mode": 0o600}]}},
                {"name": "podinfo", "downwardAPI": {"items": [
                    {"path": "mem_limit", "mode": 0o444, "resourceFieldRef":
                        {"containerName": "app", "resource": "limits.memory", "divisor": "1Mi"}},
                    {"path": "cpu_limit", "resourceFieldRef":
                        {"containerName": "app", "resource": "limits.cpu", "divisor": "1m"}}
                ]}},
                {"name": "token", "projected": {"sources": [
                    {"serviceAccountToken": {"path": "token", "expirationSeconds": 3600}}
                ]}},
                {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
                {"name": "scratch", "emptyDir": {}}
            ]
        }
    }))
    .expect("pod JSON")
}

/// A pod whose containers all run as user 1000 (group 3000), with fsGroup 2000: the token
/// is theirs, the rest is reached through the group.
fn non_root_pod() -> Pod {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "nonroot", "namespace": "default"},
        "spec": {
            "nodeName": NODE,
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "serviceAccountName": "default",
            "securityContext": {"runAsUser": 1000, "runAsGroup": 3000, "fsGroup": 2000},
            "containers": [{
                "name": "app",
                "image": IMAGE,
                "imagePullPolicy": "IfNotPresent",
                "command": ["sh", "-c", SERVE],
                "volumeMounts": [
                    {"name": "creds", "mountPath": "/etc/creds"},
                    {"name": "token", "mountPath": "/var/run/secrets/tokens"},
                    {"name": "scratch", "mountPath": "/scratch"}
                ]
            }],
            "volumes": [
                {"name": "creds", "secret": {"secretName": "creds", "defaultMode": 0o400}},
                {"name": "token", "projected": {"sources": [
                    {"serviceAccountToken": {"path": "token", "expirationSeconds": 3600}}
                ]}},
                {"name": "scratch", "emptyDir": {}}
            ]
        }
    }))
    .expect("pod JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_object_and_empty_dir_volumes_seen_from_inside() {
    let Some(cluster) = start_cluster(&["--sync-frequency=5s"]).await else {
        return;
    };
    let configmaps: Api<ConfigMap> = Api::namespaced(cluster.kube.clone(), "default");
    let settings: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "settings", "namespace": "default"},
        "data": {"greeting": "hello"},
    }))
    .expect("ConfigMap JSON");
    create_or_keep(&configmaps, &settings).await;
    let secrets: Api<Secret> = Api::namespaced(cluster.kube.clone(), "default");
    let creds: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "creds", "namespace": "default"},
        "stringData": {"password": "s3cret"},
    }))
    .expect("Secret JSON");
    create_or_keep(&secrets, &creds).await;
    let accounts: Api<k8s_openapi::api::core::v1::ServiceAccount> =
        Api::namespaced(cluster.kube.clone(), "default");
    let account = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "default", "namespace": "default"},
    }))
    .expect("ServiceAccount JSON");
    create_or_keep(&accounts, &account).await;

    for pod in [volumes_pod(), non_root_pod()] {
        cluster
            .pods()
            .create(&PostParams::default(), &pod)
            .await
            .expect("create pod");
    }
    let pod = cluster
        .wait_pod("vols", "app running", |p| running_and_ready(p, "app"))
        .await;
    let pod_uid = uid(&pod);
    let id = container(&pod, "app")
        .and_then(runtime_id)
        .expect("container id")
        .to_string();
    let pod_dir = root_dir(&cluster.node).join("pods").join(&pod_uid);
    let checker = Checker {
        node: &cluster.node,
        id,
        diag_in_container: "/scratch/.diag".to_string(),
        diag: pod_dir.join("volumes/kubernetes.io~empty-dir/scratch/.diag"),
    };

    // Where each volume lives: secret, downwardAPI and projected in memory, configMap and
    // the default emptyDir on disk, the memory emptyDir sized by its sizeLimit.
    checker
        .check(
            "memory-backed volumes are tmpfs",
            "grep -q ' /etc/creds tmpfs ' /proc/mounts && \
             grep -q ' /podinfo tmpfs ' /proc/mounts && \
             grep -q ' /var/run/secrets/tokens tmpfs ' /proc/mounts && \
             grep ' /shm tmpfs ' /proc/mounts | grep -q 'size=16384k'",
        )
        .await;
    checker
        .check(
            "configMap and disk emptyDir are not tmpfs",
            "! grep -q ' /etc/settings tmpfs ' /proc/mounts && \
             ! grep -q ' /scratch tmpfs ' /proc/mounts",
        )
        .await;
    // Contents, modes and the fsGroup (group read added on read-only volumes).
    checker
        .check(
            "secret content, mode and group",
            "test \"$(cat /etc/creds/password)\" = s3cret && \
             test \"$(stat -L -c %a /etc/creds/password)\" = 440 && \
             test \"$(stat -L -c %g /etc/creds/password)\" = 1234 && \
             test -L /etc/creds/password && test -L /etc/creds/..data",
        )
        .await;
    checker
        .check(
            "configMap item mode and group",
            "test \"$(cat /etc/settings/greeting)\" = hello && \
             test \"$(stat -L -c %a /etc/settings/greeting)\" = 640 && \
             test \"$(stat -L -c %g /etc/settings/greeting)\" = 1234",
        )
        .await;
    checker
        .check(
            "downwardAPI resource fields",
            "test \"$(cat /podinfo/mem_limit)\" = 64 && \
             test \"$(stat -L -c %a /podinfo/mem_limit)\" = 444 && \
             test \"$(cat /podinfo/cpu_limit)\" -ge 1000",
        )
        .await;
    checker
        .check(
            "token readable by its owner and the group only",
            "test -s /var/run/secrets/tokens/token && \
             test \"$(stat -L -c %a /var/run/secrets/tokens/token)\" = 640",
        )
        .await;
    checker
        .check(
            "emptyDir given to the fsGroup with setgid",
            "test \"$(stat -c %a /scratch)\" = 2777 && test \"$(stat -c %g /scratch)\" = 1234 && \
             touch /scratch/made && test \"$(stat -c %g /scratch/made)\" = 1234",
        )
        .await;
    checker
        .check(
            "read-only mounts refuse writes",
            "! touch /etc/settings/new 2>/dev/null && ! touch /etc/creds/new 2>/dev/null && \
             ! touch /ro-scratch/new 2>/dev/null && test -e /ro-scratch/made",
        )
        .await;
    checker
        .check(
            "subPath and subPathExpr",
            "test \"$(cat /etc/greeting)\" = hello && \
             echo hi > /sub/f && test \"$(cat /scratch/sub-a/f)\" = hi",
        )
        .await;

    // A user that is not root reaches the volumes through the fsGroup; the token is its own.
    let other = cluster
        .wait_pod("nonroot", "app running", |p| running_and_ready(p, "app"))
        .await;
    let other_dir = root_dir(&cluster.node).join("pods").join(uid(&other));
    let non_root = Checker {
        node: &cluster.node,
        id: container(&other, "app")
            .and_then(runtime_id)
            .expect("container id")
            .to_string(),
        diag_in_container: "/scratch/.diag".to_string(),
        diag: other_dir.join("volumes/kubernetes.io~empty-dir/scratch/.diag"),
    };
    non_root
        .check(
            "a non-root user reaches its volumes",
            "test \"$(id -u)\" = 1000 && \
             test \"$(stat -L -c '%u %a' /var/run/secrets/tokens/token)\" = '1000 640' && \
             test -s /var/run/secrets/tokens/token && cat /var/run/secrets/tokens/token >/dev/null && \
             test \"$(stat -L -c '%g %a' /etc/creds/password)\" = '2000 440' && \
             test \"$(cat /etc/creds/password)\" = s3cret && \
             touch /scratch/mine && test \"$(stat -c %g /scratch/mine)\" = 2000",
        )
        .await;

    // A ConfigMap changed on the API server shows up in the file.
    let changed = Instant::now();
    configmaps
        .patch(
            "settings",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"data": {"greeting": "updated"}})),
        )
        .await
        .expect("patch ConfigMap");
    loop {
        let (code, output) = checker
            .run("test \"$(cat /etc/settings/greeting)\" = updated")
            .await;
        if code == 0 {
            break;
        }
        assert!(
            changed.elapsed() < UPDATE_DEADLINE,
            "the ConfigMap change did not reach the file: {output}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    eprintln!(
        "ConfigMap change visible in the file after {:?}",
        changed.elapsed()
    );
    checker
        .check(
            "the update is an atomic swap, group and mode kept",
            "test -L /etc/settings/..data && \
             test \"$(stat -L -c %a /etc/settings/greeting)\" = 640 && \
             test \"$(stat -L -c %g /etc/settings/greeting)\" = 1234",
        )
        .await;

    // Gone with the pod: the tmpfs mounts of its volumes.
    assert!(
        !mounts_below(&pod_dir).is_empty(),
        "the pod's tmpfs mounts are on the node"
    );
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        ..DeleteParams::default()
    };
    for name in ["vols", "nonroot"] {
        let _ = cluster
            .pods()
            .delete(name, &params)
            .await
            .expect("delete pod");
    }
    cluster.wait_pod_gone("vols").await;
    cluster.wait_pod_gone("nonroot").await;
    let deadline = Instant::now() + DEADLINE;
    loop {
        let mut left = mounts_below(&pod_dir);
        left.extend(mounts_below(&other_dir));
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "mounts left: {left:?}");
        tokio::time::sleep(POLL).await;
    }
}

// ---------------------------------------------------------------------------------------
// Static pods: hostPath, propagation, refusals.

/// A directory of the test bind-mounted on itself and made shared, so that mounts made in
/// it later propagate into containers that ask for it; unmounted on drop.
struct SharedDir {
    dir: tempfile::TempDir,
    extra: Vec<PathBuf>,
}

fn run(cmd: &[&str]) -> bool {
    Command::new(cmd[0])
        .args(&cmd[1..])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

impl SharedDir {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("kubelet-e2e-hostpath-")
            .tempdir()
            .expect("temp dir");
        let p = dir.path().to_string_lossy().into_owned();
        assert!(run(&["mount", "--bind", &p, &p]), "bind mount {p}");
        assert!(run(&["mount", "--make-rshared", &p]), "make {p} shared");
        Self {
            dir,
            extra: Vec::new(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn mount_tmpfs(&mut self, at: &Path) {
        let p = at.to_string_lossy().into_owned();
        assert!(
            run(&["mount", "-t", "tmpfs", "tmpfs", &p]),
            "mount tmpfs {p}"
        );
        self.extra.push(at.to_path_buf());
    }
}

impl Drop for SharedDir {
    fn drop(&mut self) {
        for p in self.extra.iter().rev() {
            let _ = run(&["umount", "-l", &p.to_string_lossy()]);
        }
        let _ = run(&["umount", "-l", &self.dir.path().to_string_lossy()]);
    }
}

fn static_pod(name: &str, spec: serde_json::Value) -> String {
    serde_json::to_string_pretty(&serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    }))
    .expect("manifest JSON")
}

fn waiting(pod: &Pod, name: &str) -> Option<(String, String)> {
    let w = container(pod, name)?.state.as_ref()?.waiting.as_ref()?;
    Some((
        w.reason.clone().unwrap_or_default(),
        w.message.clone().unwrap_or_default(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_path_sub_path_and_propagation_of_static_pods() {
    let Some(mut node) = TestNode::start().await else {
        return;
    };
    let mut shared = SharedDir::new();
    let host = shared.path().to_path_buf();
    std::fs::create_dir(host.join("prop")).expect("mkdir prop");
    let made_dir = host.join("made/dir");
    let made_file = host.join("made/deep/file");
    node.write_manifest(
        "hostpaths.yaml",
        &static_pod(
            "hostpaths",
            serde_json::json!({
                "terminationGracePeriodSeconds": 1,
                "containers": [{
                    "name": "app",
                    "image": IMAGE,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["sh", "-c", SERVE],
                    "resources": {"limits": {"memory": "32Mi"}},
                    "volumeMounts": [
                        {"name": "dir", "mountPath": "/dir"},
                        {"name": "file", "mountPath": "/file"},
                        {"name": "prop", "mountPath": "/prop", "mountPropagation": "HostToContainer"},
                        {"name": "mem", "mountPath": "/mem"},
                        {"name": "dir", "mountPath": "/dir-sub", "subPath": "a/b"}
                    ]
                }],
                "volumes": [
                    {"name": "dir", "hostPath": {"path": made_dir, "type": "DirectoryOrCreate"}},
                    {"name": "file", "hostPath": {"path": made_file, "type": "FileOrCreate"}},
                    {"name": "prop", "hostPath": {"path": host.join("prop"), "type": "Directory"}},
                    {"name": "mem", "emptyDir": {"medium": "Memory"}}
                ]
            }),
        ),
    );
    let missing = host.join("missing");
    node.write_manifest(
        "badtype.yaml",
        &static_pod(
            "badtype",
            serde_json::json!({
                "containers": [{"name": "app", "image": IMAGE, "imagePullPolicy": "IfNotPresent",
                    "command": ["sh", "-c", SERVE],
                    "volumeMounts": [{"name": "gone", "mountPath": "/gone"}]}],
                "volumes": [{"name": "gone", "hostPath": {"path": missing, "type": "Directory"}}]
            }),
        ),
    );
    node.write_manifest(
        "bidi.yaml",
        &static_pod(
            "bidi",
            serde_json::json!({
                "containers": [{"name": "app", "image": IMAGE, "imagePullPolicy": "IfNotPresent",
                    "command": ["sh", "-c", SERVE],
                    "volumeMounts": [{"name": "d", "mountPath": "/d",
                        "mountPropagation": "Bidirectional"}]}],
                "volumes": [{"name": "d", "emptyDir": {}}]
            }),
        ),
    );

    let pod = node
        .wait_pod("hostpaths", "app running", DEADLINE, |p| {
            running_and_ready(p, "app")
        })
        .await;
    let pod_uid = uid(&pod);
    let id = container(&pod, "app")
        .and_then(runtime_id)
        .expect("container id")
        .to_string();
    // Made on the node with the reference's modes.
    let mode = |p: &Path| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).expect("stat").permissions().mode() & 0o7777
    };
    assert_eq!(mode(&made_dir), 0o755);
    assert_eq!(mode(&made_file), 0o644);
    assert!(made_dir.join("a/b").is_dir(), "subPath created on the node");
    let checker = Checker {
        node: &node,
        id,
        diag_in_container: "/dir/.diag".to_string(),
        diag: made_dir.join(".diag"),
    };
    checker
        .check(
            "hostPath and subPath mounts",
            "test -d /dir && test -f /file && echo x > /dir-sub/f && test \"$(cat /dir/a/b/f)\" = x",
        )
        .await;
    checker
        .check(
            "memory emptyDir sized by the pod's memory limit",
            "grep ' /mem tmpfs ' /proc/mounts | grep -q 'size=32768k'",
        )
        .await;
    // A mount made on the node after the container started shows up inside it.
    let inner = host.join("prop/inner");
    std::fs::create_dir(&inner).expect("mkdir inner");
    shared.mount_tmpfs(&inner);
    std::fs::write(inner.join("marker"), "from-the-node").expect("write marker");
    let deadline = Instant::now() + DEADLINE;
    loop {
        let (code, output) = checker
            .run("test \"$(cat /prop/inner/marker)\" = from-the-node")
            .await;
        if code == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the node's mount did not propagate: {output}"
        );
        tokio::time::sleep(POLL).await;
    }

    // The refusals, with the reference's messages.
    let bad = node
        .wait_pod("badtype", "waiting on its volume", DEADLINE, |p| {
            waiting(p, "app").is_some_and(|(r, m)| {
                r == "ContainerCreating" && m.contains("hostPath type check failed")
            })
        })
        .await;
    let (_, message) = waiting(&bad, "app").expect("waiting");
    assert!(
        message.contains(&format!(
            "hostPath type check failed: {} is not a directory",
            missing.display()
        )),
        "{message}"
    );
    assert!(!missing.exists());
    let bidi = node
        .wait_pod("bidi", "refused", DEADLINE, |p| {
            waiting(p, "app").is_some_and(|(r, _)| r == "CreateContainerConfigError")
        })
        .await;
    let (_, message) = waiting(&bidi, "app").expect("waiting");
    assert!(
        message
            .contains("Bidirectional mount propagation is available only to privileged containers"),
        "{message}"
    );

    // Gone with the pod: the memory emptyDir's tmpfs.
    let pod_dir = root_dir(&node).join("pods").join(&pod_uid);
    assert_eq!(
        mounts_below(&pod_dir.join("volumes")).len(),
        1,
        "one tmpfs for the memory emptyDir"
    );
    for file in ["hostpaths.yaml", "badtype.yaml", "bidi.yaml"] {
        node.remove_manifest(file);
    }
    node.wait_for("the pods to go", DEADLINE, async |n| {
        n.pods()
            .await
            .ok()
            .filter(|pods| pods.is_empty())
            .map(|_| ())
    })
    .await;
    node.wait_for("the tmpfs to be unmounted", DEADLINE, async |_| {
        mounts_below(&pod_dir).is_empty().then_some(())
    })
    .await;
    // The node's own paths stay.
    assert!(made_dir.is_dir() && made_file.is_file());
    node.shutdown().await;
    drop(shared);
}

/// An on-disk emptyDir written past its `sizeLimit` gets the pod evicted, as the reference's
/// eviction manager does: Failed with reason Evicted, the reference's message and a
/// DisruptionTarget condition on the API server, the container stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_dir_past_its_size_limit_evicts_the_pod() {
    let Some(cluster) = start_cluster(&[]).await else {
        return;
    };
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "filler", "namespace": "default"},
        "spec": {
            "nodeName": support::node::NODE,
            "terminationGracePeriodSeconds": 30,
            "containers": [{
                "name": "app", "image": IMAGE, "imagePullPolicy": "IfNotPresent",
                "command": ["sh", "-c", format!("dd if=/dev/zero of=/scratch/fill bs=1M count=2; {SERVE}")],
                "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}],
            }],
            "volumes": [{"name": "scratch", "emptyDir": {"sizeLimit": "1Mi"}}],
        },
    }))
    .expect("pod JSON");
    cluster
        .pods()
        .create(&PostParams::default(), &pod)
        .await
        .expect("create pod");
    let evicted = cluster
        .wait_pod("filler", "Evicted", |p| {
            p.status
                .as_ref()
                .is_some_and(|s| s.reason.as_deref() == Some("Evicted"))
        })
        .await;
    let status = evicted.status.expect("status");
    let message = "Usage of EmptyDir volume \"scratch\" exceeds the limit \"1Mi\". ";
    assert_eq!(status.phase.as_deref(), Some("Failed"));
    assert_eq!(status.message.as_deref(), Some(message));
    let disruption = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "DisruptionTarget")
        .expect("DisruptionTarget condition");
    assert_eq!(disruption.reason.as_deref(), Some("TerminationByKubelet"));
    let app = status
        .container_statuses
        .iter()
        .flatten()
        .find(|c| c.name == "app")
        .expect("app status");
    assert!(
        app.state.as_ref().is_some_and(|s| s.terminated.is_some()),
        "{app:?}"
    );
    cluster
        .pods()
        .delete("filler", &DeleteParams::default())
        .await
        .expect("delete");
    cluster.wait_pod_gone("filler").await;
}

/// subPaths as the reference mounts them: the checked path, opened without following
/// links, bind-mounted at `<pod dir>/volume-subpaths/<volume>/<container>/<index>`, which is
/// what containerd mounts. Seen from inside: a subPath file and a subPath through a link
/// that stays in the volume; a link that leaves the volume is refused with the reference's
/// message; swapping a link after the start changes nothing in the container; the binds go
/// with the pod and the volume's files stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sub_paths_are_bind_mounted_from_what_was_checked() {
    let Some(mut node) = TestNode::start().await else {
        return;
    };
    let host = tempfile::Builder::new()
        .prefix("kubelet-e2e-subpath-")
        .tempdir()
        .expect("temp dir");
    let data = host.path().join("data");
    let outside = host.path().join("outside");
    std::fs::create_dir_all(data.join("real")).expect("mkdir real");
    std::fs::create_dir(&outside).expect("mkdir outside");
    std::fs::write(data.join("real/greeting"), "hello").expect("write greeting");
    std::fs::write(outside.join("secret"), "host-only").expect("write secret");
    std::os::unix::fs::symlink("real", data.join("inside")).expect("link inside");
    std::os::unix::fs::symlink(&outside, data.join("escape")).expect("link escape");
    let pod_spec = |mounts: serde_json::Value| {
        serde_json::json!({
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "app", "image": IMAGE, "imagePullPolicy": "IfNotPresent",
                "command": ["sh", "-c", SERVE],
                "volumeMounts": mounts,
            }],
            "volumes": [{"name": "data", "hostPath": {"path": data, "type": "Directory"}}]
        })
    };
    node.write_manifest(
        "subpaths.yaml",
        &static_pod(
            "subpaths",
            pod_spec(serde_json::json!([
                {"name": "data", "mountPath": "/greeting", "subPath": "real/greeting"},
                {"name": "data", "mountPath": "/inside", "subPath": "inside"}
            ])),
        ),
    );
    node.write_manifest(
        "escape.yaml",
        &static_pod(
            "escape",
            pod_spec(serde_json::json!([
                {"name": "data", "mountPath": "/escape", "subPath": "escape"}
            ])),
        ),
    );

    let pod = node
        .wait_pod("subpaths", "app running", DEADLINE, |p| {
            running_and_ready(p, "app")
        })
        .await;
    let pod_dir = root_dir(&node).join("pods").join(uid(&pod));
    let id = container(&pod, "app")
        .and_then(runtime_id)
        .expect("container id")
        .to_string();
    let read = "test \"$(cat /greeting)\" = hello && test \"$(cat /inside/greeting)\" = hello \
                && test ! -e /inside/secret";
    assert_eq!(node.exec(&id, read).await, 0, "subPath file and directory");
    let targets = pod_dir.join("volume-subpaths/data/app");
    let targets = std::fs::canonicalize(&targets).unwrap_or(targets);
    let mut binds = mounts_below(&pod_dir.join("volume-subpaths"));
    binds.sort();
    assert_eq!(
        binds,
        [
            targets.join("0").to_string_lossy().into_owned(),
            targets.join("1").to_string_lossy().into_owned()
        ],
        "one bind per subPath mount, at the reference's place"
    );

    // The link swapped for one out of the volume after the start: the container still sees
    // what was checked.
    std::fs::remove_file(data.join("inside")).expect("remove link");
    std::os::unix::fs::symlink(&outside, data.join("inside")).expect("relink inside");
    assert_eq!(
        node.exec(&id, read).await,
        0,
        "the bind is of the checked path"
    );

    let escape = node
        .wait_pod("escape", "refused", DEADLINE, |p| {
            waiting(p, "app").is_some_and(|(r, _)| r == "CreateContainerConfigError")
        })
        .await;
    assert_eq!(
        waiting(&escape, "app").map(|(_, m)| m).as_deref(),
        Some("failed to prepare subPath for volumeMount \"data\" of container \"app\"")
    );
    let escape_dir = root_dir(&node).join("pods").join(uid(&escape));
    assert!(
        mounts_below(&escape_dir).is_empty(),
        "nothing mounted for it"
    );
    assert!(node.containers(Some(&uid(&escape))).await.is_empty());

    for file in ["subpaths.yaml", "escape.yaml"] {
        node.remove_manifest(file);
    }
    node.wait_for("the pods to go", DEADLINE, async |n| {
        n.pods()
            .await
            .ok()
            .filter(|pods| pods.is_empty())
            .map(|_| ())
    })
    .await;
    node.wait_for("the subPath binds to go", DEADLINE, async |_| {
        (mounts_below(&pod_dir).is_empty() && !pod_dir.join("volume-subpaths").exists())
            .then_some(())
    })
    .await;
    assert_eq!(
        std::fs::read_to_string(data.join("real/greeting")).expect("greeting"),
        "hello"
    );
    assert_eq!(
        std::fs::read_to_string(outside.join("secret")).expect("secret"),
        "host-only"
    );
    node.shutdown().await;
}
