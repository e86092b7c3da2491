//! The static manifest directory source against a real temporary directory.

use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use k8s_openapi::api::core::v1::Pod;
use kubelet_core::labels;
use kubelet_core::sources::{DEFAULT_FILE_CHECK_FREQUENCY, StaticDirSource};
use kubelet_core::{PodSource, PodUpdate, SourceError};

const NODE: &str = "node-a";

fn manifest(name: &str, image: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  containers:\n  - name: main\n    image: {image}\n"
    )
}

fn write(dir: &Path, file: &str, content: &str) {
    std::fs::write(dir.join(file), content).expect("write manifest");
}

fn start(source: StaticDirSource) -> BoxStream<'static, PodUpdate> {
    Box::new(source).updates()
}

async fn next_snapshot(stream: &mut BoxStream<'static, PodUpdate>) -> Vec<Pod> {
    // Paused time: an hour of virtual time passes instantly, and is far more than the
    // source needs to notice any change.
    match tokio::time::timeout(Duration::from_secs(3600), stream.next()).await {
        Ok(Some(PodUpdate::Snapshot(pods))) => pods,
        Ok(other) => panic!("expected a snapshot, got {other:?}"),
        Err(_) => panic!("no snapshot within an hour"),
    }
}

fn names(pods: &[Pod]) -> Vec<String> {
    pods.iter()
        .map(|p| p.metadata.name.clone().unwrap_or_default())
        .collect()
}

fn uid(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

#[tokio::test(start_paused = true)]
async fn changes_show_up_in_the_next_snapshot() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "a.yaml", &manifest("a", "nginx:1.27"));
    let source = StaticDirSource::new(dir.path(), NODE, DEFAULT_FILE_CHECK_FREQUENCY);
    assert_eq!(source.name(), "file");
    let mut stream = start(source);

    let first = next_snapshot(&mut stream).await;
    assert_eq!(names(&first), ["a-node-a"]);
    let a = &first[0];
    let ann = a.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        ann.get(labels::CONFIG_SOURCE).map(String::as_str),
        Some("file")
    );
    assert_eq!(ann.get(labels::CONFIG_HASH), Some(&uid(a)));
    assert!(ann.contains_key(labels::CONFIG_SEEN));

    // Added.
    write(
        dir.path(),
        "b.json",
        r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"b"},"spec":{"containers":[{"name":"c","image":"busybox:1"}]}}"#,
    );
    let second = next_snapshot(&mut stream).await;
    assert_eq!(names(&second), ["a-node-a", "b-node-a"]);
    // An unchanged pod keeps its UID and first-seen time.
    assert_eq!(second[0], first[0]);
    let b_uid = uid(&second[1]);

    // Changed: a new UID, since the UID follows the content.
    write(dir.path(), "b.json", &manifest("b", "busybox:2"));
    let third = next_snapshot(&mut stream).await;
    assert_eq!(names(&third), ["a-node-a", "b-node-a"]);
    assert_ne!(uid(&third[1]), b_uid);
    let image = third[1]
        .spec
        .as_ref()
        .map(|s| s.containers[0].image.clone());
    assert_eq!(image, Some(Some("busybox:2".to_string())));

    // Removed.
    std::fs::remove_file(dir.path().join("a.yaml")).expect("remove");
    let fourth = next_snapshot(&mut stream).await;
    assert_eq!(names(&fourth), ["b-node-a"]);
    assert_eq!(fourth[0], third[1]);
}

#[tokio::test(start_paused = true)]
async fn an_unchanged_directory_sends_nothing_more() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "a.yaml", &manifest("a", "nginx"));
    let mut stream = start(StaticDirSource::new(
        dir.path(),
        NODE,
        Duration::from_secs(20),
    ));
    assert_eq!(next_snapshot(&mut stream).await.len(), 1);
    // Many rescans happen in these ten virtual minutes; none of them is a change.
    let more = tokio::time::timeout(Duration::from_secs(600), stream.next()).await;
    assert!(more.is_err(), "unexpected update: {more:?}");
}

#[tokio::test(start_paused = true)]
async fn a_broken_file_does_not_hide_a_good_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "good.yaml", &manifest("good", "nginx"));
    write(
        dir.path(),
        "no-image.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: bad}\nspec:\n  containers:\n  - name: main\n",
    );
    write(dir.path(), "garbage.yaml", "{{{ not yaml");
    let source = StaticDirSource::new(dir.path(), NODE, DEFAULT_FILE_CHECK_FREQUENCY);
    let problems = source.problems();
    let mut stream = start(source);

    let pods = next_snapshot(&mut stream).await;
    assert_eq!(names(&pods), ["good-node-a"]);

    let current = problems.current();
    let bad = dir.path().join("no-image.yaml").display().to_string();
    match current.get(&bad) {
        Some(SourceError::InvalidManifest { field, .. }) => {
            assert_eq!(field, "spec.containers[0].image")
        }
        other => panic!("expected a problem for {bad}, got {other:?}"),
    }
    let garbage = dir.path().join("garbage.yaml").display().to_string();
    assert!(current.contains_key(&garbage), "{current:?}");
    assert_eq!(current.len(), 2);

    // Fixing the file brings the pod in and clears the problem.
    write(dir.path(), "no-image.yaml", &manifest("bad", "nginx"));
    let pods = next_snapshot(&mut stream).await;
    // Lexical file order: good.yaml before no-image.yaml.
    assert_eq!(names(&pods), ["good-node-a", "bad-node-a"]);
    assert!(!problems.current().contains_key(&bad));
}

#[tokio::test(start_paused = true)]
async fn hidden_files_and_subdirectories_are_ignored() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "visible.yaml", &manifest("visible", "nginx"));
    write(dir.path(), ".hidden.yaml", &manifest("hidden", "nginx"));
    write(dir.path(), ".visible.yaml.swp", "binary junk \u{0}");
    std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
    write(
        &dir.path().join("sub"),
        "nested.yaml",
        &manifest("nested", "nginx"),
    );
    let source = StaticDirSource::new(dir.path(), NODE, DEFAULT_FILE_CHECK_FREQUENCY);
    let problems = source.problems();
    let mut stream = start(source);

    let pods = next_snapshot(&mut stream).await;
    assert_eq!(names(&pods), ["visible-node-a"]);
    assert!(problems.is_empty(), "{:?}", problems.current());
}

#[tokio::test(start_paused = true)]
async fn a_missing_directory_gives_an_empty_first_snapshot_then_is_retried() {
    let parent = tempfile::tempdir().expect("tempdir");
    let dir = parent.path().join("manifests");
    let source = StaticDirSource::new(&dir, NODE, DEFAULT_FILE_CHECK_FREQUENCY);
    let problems = source.problems();
    let mut stream = start(source);

    assert!(next_snapshot(&mut stream).await.is_empty());
    assert!(problems.current().contains_key(&dir.display().to_string()));

    std::fs::create_dir(&dir).expect("mkdir");
    write(&dir, "a.yaml", &manifest("a", "nginx"));
    let pods = next_snapshot(&mut stream).await;
    assert_eq!(names(&pods), ["a-node-a"]);
    assert!(problems.is_empty(), "{:?}", problems.current());

    // Gone again, then back: the watch is set up anew and nothing is lost.
    std::fs::remove_dir_all(&dir).expect("rmdir");
    assert!(next_snapshot(&mut stream).await.is_empty());
    std::fs::create_dir(&dir).expect("mkdir");
    write(&dir, "b.yaml", &manifest("b", "nginx"));
    assert_eq!(names(&next_snapshot(&mut stream).await), ["b-node-a"]);
}

#[tokio::test(start_paused = true)]
async fn an_empty_directory_still_sends_a_first_snapshot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut stream = start(StaticDirSource::new(
        dir.path(),
        NODE,
        DEFAULT_FILE_CHECK_FREQUENCY,
    ));
    assert!(next_snapshot(&mut stream).await.is_empty());
}

#[tokio::test(start_paused = true)]
async fn the_first_of_two_files_with_the_same_pod_wins() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "10-web.yaml", &manifest("web", "nginx:1"));
    write(dir.path(), "20-web.yaml", &manifest("web", "nginx:2"));
    let source = StaticDirSource::new(dir.path(), NODE, DEFAULT_FILE_CHECK_FREQUENCY);
    let problems = source.problems();
    let mut stream = start(source);

    let pods = next_snapshot(&mut stream).await;
    assert_eq!(names(&pods), ["web-node-a"]);
    let image = pods[0]
        .spec
        .as_ref()
        .and_then(|s| s.containers[0].image.clone());
    assert_eq!(image.as_deref(), Some("nginx:1"));
    let second = dir.path().join("20-web.yaml").display().to_string();
    match problems.current().get(&second) {
        Some(SourceError::InvalidManifest { field, message, .. }) => {
            assert_eq!(field, "metadata.name");
            assert!(message.contains("10-web.yaml"), "{message}");
        }
        other => panic!("expected a duplicate problem, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_single_manifest_file_path_is_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "only.yaml", &manifest("only", "nginx"));
    let mut stream = start(StaticDirSource::new(
        dir.path().join("only.yaml"),
        NODE,
        DEFAULT_FILE_CHECK_FREQUENCY,
    ));
    assert_eq!(names(&next_snapshot(&mut stream).await), ["only-node-a"]);
}

/// The filesystem watcher (real inotify, real time): with a period of an hour, only an event
/// can make the new file show up.
#[tokio::test]
async fn a_filesystem_event_triggers_a_rescan_before_the_period() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut stream = start(StaticDirSource::new(
        dir.path(),
        NODE,
        Duration::from_secs(3600),
    ));
    let first = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("first snapshot");
    assert!(matches!(first, Some(PodUpdate::Snapshot(p)) if p.is_empty()));

    write(dir.path(), "a.yaml", &manifest("a", "nginx"));
    let next = tokio::time::timeout(Duration::from_secs(20), stream.next())
        .await
        .expect("a snapshot soon after the file was written");
    match next {
        Some(PodUpdate::Snapshot(pods)) => assert_eq!(names(&pods), ["a-node-a"]),
        other => panic!("expected a snapshot, got {other:?}"),
    }

    // The directory is replaced: the watch follows the new one.
    let path = dir.path().to_path_buf();
    std::fs::remove_dir_all(&path).expect("rmdir");
    let next = tokio::time::timeout(Duration::from_secs(20), stream.next())
        .await
        .expect("a snapshot soon after the directory went");
    assert!(matches!(next, Some(PodUpdate::Snapshot(p)) if p.is_empty()));
    std::fs::create_dir(&path).expect("mkdir");
    // While the directory is missing its parent is watched, so its creation wakes the source
    // (the period is an hour), which then watches the new directory.
    write(&path, "b.yaml", &manifest("b", "nginx"));
    let next = tokio::time::timeout(Duration::from_secs(20), stream.next())
        .await
        .expect("a snapshot soon after the directory came back");
    match next {
        Some(PodUpdate::Snapshot(pods)) => assert_eq!(names(&pods), ["b-node-a"]),
        other => panic!("expected a snapshot, got {other:?}"),
    }
}
