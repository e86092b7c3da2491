//! Termination messages, as the reference kubelet has them (`kuberuntime_container.go`:
//! `makeMounts`, `getTerminationMessage`, `readLastStringFromContainerLogs`): before a
//! container is created, an empty file `<pod dir>/containers/<name>/<random id>` (mode 0666)
//! is mounted at its `terminationMessagePath`; once the container has exited, at most the
//! last 4096 bytes of that file are its termination message. With
//! `terminationMessagePolicy: FallbackToLogsOnError`, a container that failed (exit code not
//! 0) and left the file empty gets the end of its log instead: the last 80 lines, at most
//! the last 2048 bytes of them. The message is appended to the runtime's own message, after
//! `": "` when there is one.
//!
//! Where this differs from the reference: the reference finds the file again among the
//! mounts CRI's ContainerStatus reports; here its host path is kept in the container's
//! annotation [`TERMINATION_MESSAGE_HOST_PATH`], since the runtime seam does not carry mounts
//! back.

use std::io::SeekFrom;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use k8s_openapi::api::core::v1::Container;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::labels;
use crate::runtime::{ContainerConfig, ContainerState, ContainerStatus, Mount, MountPropagation};

/// Annotation with the host path of the container's termination message file.
pub const TERMINATION_MESSAGE_HOST_PATH: &str =
    "io.kubernetes.container.terminationMessageHostPath";
/// The most of the file that is read (`MaxContainerTerminationMessageLength`).
pub const MAX_MESSAGE_LENGTH: u64 = 4096;
/// The most log lines read as a fallback (`MaxContainerTerminationMessageLogLines`).
pub const MAX_LOG_LINES: usize = 80;
/// The most bytes of them kept (`MaxContainerTerminationMessageLogLength`).
pub const MAX_LOG_LENGTH: usize = 2048;
/// How much of the end of a log is read to find its last lines.
const LOG_READ_WINDOW: u64 = 1 << 20;

const FALLBACK_TO_LOGS: &str = "FallbackToLogsOnError";

/// A name unique among the instances of a container.
fn instance_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{nanos:x}{:04x}{n:x}", std::process::id() & 0xffff)
}

/// Create the container's termination message file and add its mount to `config` (and the
/// annotation that finds it again). Nothing without a `terminationMessagePath`.
pub async fn prepare(
    pod_dir: &Path,
    container: &Container,
    config: &mut ContainerConfig,
) -> Result<(), String> {
    let Some(path) = container
        .termination_message_path
        .as_deref()
        .filter(|p| !p.is_empty())
    else {
        return Ok(());
    };
    let dir = pod_dir.join("containers").join(&container.name);
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let file = dir.join(instance_id());
    tokio::fs::write(&file, b"")
        .await
        .map_err(|e| format!("creating termination-log file {}: {e}", file.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tokio::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666))
            .await
            .map_err(|e| format!("chmod termination-log file {}: {e}", file.display()))?;
    }
    let host_path = file.to_string_lossy().into_owned();
    config
        .annotations
        .insert(TERMINATION_MESSAGE_HOST_PATH.to_string(), host_path.clone());
    config.mounts.push(Mount {
        container_path: path.to_string(),
        host_path,
        readonly: false,
        propagation: MountPropagation::Private,
    });
    Ok(())
}

/// The last `max` bytes of a file.
async fn read_tail(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    let mut file = tokio::fs::File::open(path).await?;
    let size = file.metadata().await?.len();
    if size > max {
        file.seek(SeekFrom::Start(size - max)).await?;
    }
    let mut out = Vec::new();
    file.take(max).read_to_end(&mut out).await?;
    Ok(out)
}

/// The end of a CRI-format log: the content of its last [`MAX_LOG_LINES`] records, at most
/// the last [`MAX_LOG_LENGTH`] bytes of it.
pub async fn last_log_lines(path: &Path) -> Result<String, String> {
    let tail = read_tail(path, LOG_READ_WINDOW)
        .await
        .map_err(|e| format!("Error on reading termination message from logs: {e}"))?;
    // Lines with their '\n', which a full record's content keeps.
    let records: Vec<&[u8]> = tail
        .split_inclusive(|b| *b == b'\n')
        .filter(|l| *l != b"\n")
        .collect();
    let start = records.len().saturating_sub(MAX_LOG_LINES);
    let mut content = Vec::new();
    for line in &records[start..] {
        if let Ok(record) = crate::logs::cri::parse_record(line) {
            content.extend_from_slice(record.content);
        }
    }
    let keep = content.len().saturating_sub(MAX_LOG_LENGTH);
    Ok(String::from_utf8_lossy(&content[keep..]).into_owned())
}

/// Add the termination message to an exited container's status (the reference's
/// `convertToKubeContainerStatus`).
pub async fn enrich(status: &mut ContainerStatus) {
    if status.state != ContainerState::Exited {
        return;
    }
    let policy = status
        .annotations
        .get(labels::CONTAINER_TERMINATION_MESSAGE_POLICY)
        .map(String::as_str);
    // A container that could not even start has no logs to fall back to.
    let fallback = policy == Some(FALLBACK_TO_LOGS)
        && status.exit_code != 0
        && status.reason != "ContainerCannotRun";
    let (mut message, check_logs) = match status.annotations.get(TERMINATION_MESSAGE_HOST_PATH) {
        None => (String::new(), fallback),
        Some(host_path) => match read_tail(Path::new(host_path), MAX_MESSAGE_LENGTH).await {
            Ok(data) => {
                let empty = data.is_empty();
                (
                    String::from_utf8_lossy(&data).into_owned(),
                    fallback && empty,
                )
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (String::new(), fallback),
            Err(e) => (
                format!("Error on reading termination log {host_path}: {e}"),
                false,
            ),
        },
    };
    if check_logs && !status.log_path.is_empty() {
        message = last_log_lines(Path::new(&status.log_path))
            .await
            .unwrap_or_else(|e| e);
    }
    if !message.is_empty() {
        if !status.message.is_empty() {
            status.message.push_str(": ");
        }
        status.message.push_str(&message);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn exited(code: i32, annotations: BTreeMap<String, String>, log: &Path) -> ContainerStatus {
        ContainerStatus {
            state: ContainerState::Exited,
            exit_code: code,
            annotations,
            log_path: log.to_string_lossy().into_owned(),
            ..Default::default()
        }
    }

    fn log_lines(n: usize) -> String {
        (0..n)
            .map(|i| {
                format!(
                    "2024-01-01T00:00:00.000000000Z stdout F line {i:03} {}\n",
                    "x".repeat(40)
                )
            })
            .collect()
    }

    #[tokio::test]
    async fn file_message_then_fallback_to_logs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let container = Container {
            name: "app".into(),
            termination_message_path: Some("/dev/termination-log".into()),
            ..Default::default()
        };
        let mut config = ContainerConfig::default();
        prepare(dir.path(), &container, &mut config)
            .await
            .expect("prepare");
        let mount = config.mounts[0].clone();
        assert_eq!(mount.container_path, "/dev/termination-log");
        assert!(
            mount
                .host_path
                .starts_with(&*dir.path().join("containers/app").to_string_lossy())
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&mount.host_path)
                .expect("file")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o666);
        }

        let log = dir.path().join("0.log");
        std::fs::write(&log, log_lines(100)).expect("log");
        let mut annotations = config.annotations.clone();
        annotations.insert(
            labels::CONTAINER_TERMINATION_MESSAGE_POLICY.into(),
            FALLBACK_TO_LOGS.into(),
        );

        // Empty file, failed: the last 80 lines of the log (2048 bytes at most).
        let mut status = exited(1, annotations.clone(), &log);
        enrich(&mut status).await;
        let text: String = (20..100)
            .map(|i| format!("line {i:03} {}\n", "x".repeat(40)))
            .collect();
        assert!(text.len() > MAX_LOG_LENGTH);
        let want = &text[text.len() - MAX_LOG_LENGTH..];
        assert_eq!(status.message, want);

        // Succeeded: no fallback.
        let mut status = exited(0, annotations.clone(), &log);
        enrich(&mut status).await;
        assert_eq!(status.message, "");

        // The file wins, appended to the runtime's message.
        std::fs::write(&mount.host_path, "bye").expect("message");
        let mut status = exited(1, annotations.clone(), &log);
        status.message = "runtime says".into();
        enrich(&mut status).await;
        assert_eq!(status.message, "runtime says: bye");

        // Policy File: the file only.
        std::fs::write(&mount.host_path, "").expect("message");
        annotations.insert(
            labels::CONTAINER_TERMINATION_MESSAGE_POLICY.into(),
            "File".into(),
        );
        let mut status = exited(1, annotations, &log);
        enrich(&mut status).await;
        assert_eq!(status.message, "");
    }

    #[tokio::test]
    async fn long_file_keeps_its_last_4096_bytes_and_short_logs_all() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("msg");
        let body: String = (0..5000)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        std::fs::write(&file, &body).expect("message");
        let annotations = BTreeMap::from([(
            TERMINATION_MESSAGE_HOST_PATH.to_string(),
            file.to_string_lossy().into_owned(),
        )]);
        let mut status = exited(0, annotations, Path::new(""));
        enrich(&mut status).await;
        assert_eq!(status.message, body[body.len() - 4096..]);

        let log = dir.path().join("1.log");
        std::fs::write(
            &log,
            "2024-01-01T00:00:00Z stderr P par\n2024-01-01T00:00:00Z stderr F tial\n",
        )
        .expect("log");
        assert_eq!(last_log_lines(&log).await.as_deref(), Ok("partial\n"));
    }
}
