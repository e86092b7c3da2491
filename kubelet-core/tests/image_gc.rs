//! Image garbage collection scenarios: the real kubelet (its image GC manager included)
//! against the stateful fake runtime, the image filesystem's numbers set by hand
//! (`StaticImageFs`), on tokio's paused time.

mod support {
    // Shared by the scenario test files; each uses part of it.
    #[allow(dead_code)]
    pub mod scenario;
}

use std::sync::Arc;
use std::time::Duration;

use kubelet_core::image_gc::{
    ImageGcPolicy, REASON_FREE_DISK_SPACE_FAILED, REASON_IMAGE_GC_FAILED,
    REASON_INVALID_DISK_CAPACITY, StaticImageFs,
};
use kubelet_core::testing::pods::{container, pod};
use kubelet_core::testing::{FakeRuntime, Method};
use kubelet_core::{EventType, Kubelet, KubeletConfig, KubeletError};
use tokio::time::Instant;

use support::scenario::Node;

/// The GC period of these tests (the reference's is 5 minutes).
const PERIOD: Duration = Duration::from_secs(10);
/// Long enough for several passes.
const LIMIT: Duration = Duration::from_secs(120);
/// The size every test image is given.
const SIZE: u64 = 100;
/// Capacity of the test image filesystem: at 100 available, usage is 90% and freeing down
/// to the default low threshold (80%) needs 100 bytes, one image.
const CAPACITY: u64 = 1000;

/// A fake runtime with these images, each of [`SIZE`] bytes.
fn runtime_with(images: &[&str]) -> Arc<FakeRuntime> {
    let runtime = Arc::new(FakeRuntime::with_images(images));
    for image in images {
        runtime.set_image_size(image, SIZE);
    }
    runtime
}

/// Start the kubelet with image GC on `PERIOD`, the given minimum age, and `fs`.
fn start(runtime: Arc<FakeRuntime>, min_age: Duration, fs: Arc<StaticImageFs>) -> Node {
    Node::start_configured(
        runtime,
        |config, _| {
            config.image_gc.period = PERIOD;
            config.image_gc.min_age = min_age;
            config.image_gc.sandbox_image = Some("localhost/pause:1".into());
        },
        |builder| builder.image_fs(fs),
    )
}

fn run_pod(node: &Node, uid: &str, image: &str) {
    node.pods.add(
        pod(uid)
            .uid(uid)
            .container(container("app", image).command(["sleep", "3600"]))
            .build(),
    );
}

/// Image IDs in the order the kubelet removed them.
fn removed(runtime: &FakeRuntime) -> Vec<String> {
    runtime
        .calls_of(Method::RemoveImage)
        .into_iter()
        .map(|c| c.target)
        .collect()
}

fn id(runtime: &FakeRuntime, image: &str) -> String {
    runtime.image_id(image).expect("image present")
}

fn running(node: &Node, uid: &str) -> bool {
    node.reporter.last_phase(uid).as_deref() == Some("Running")
}

fn pod_gone(node: &Node, uid: &str) -> bool {
    node.reporter.removed_pods().iter().any(|u| u == uid)
        && !node
            .runtime
            .containers()
            .iter()
            .any(|c| c.labels.get("io.kubernetes.pod.uid").map(String::as_str) == Some(uid))
}

#[tokio::test(start_paused = true)]
async fn below_the_high_threshold_nothing_is_removed() {
    let runtime = runtime_with(&["unused:1", "other:1"]);
    // 80% used: below the default high threshold of 85%.
    let fs = Arc::new(StaticImageFs::new(CAPACITY, 200));
    let node = start(runtime.clone(), Duration::ZERO, fs);
    node.until(LIMIT, "several GC passes", |n| {
        n.runtime.calls(Method::ListImages) >= 5
    })
    .await;
    assert!(removed(&runtime).is_empty(), "{:?}", removed(&runtime));
    assert!(node.reporter.events().is_empty());
    node.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn unused_images_go_least_recently_used_first_and_in_use_pinned_sandbox_stay() {
    let images = [
        "run:1",
        "old:1",
        "recent:1",
        "never:1",
        "pinned:1",
        "localhost/pause:1",
    ];
    let runtime = runtime_with(&images);
    runtime.set_image_pinned("pinned:1", true);
    let fs = Arc::new(StaticImageFs::new(CAPACITY, 500));
    let node = start(runtime.clone(), Duration::ZERO, fs.clone());
    for (uid, image) in [("run", "run:1"), ("old", "old:1"), ("recent", "recent:1")] {
        run_pod(&node, uid, image);
    }
    node.until(LIMIT, "the pods to run", |n| {
        ["run", "old", "recent"].iter().all(|u| running(n, u))
    })
    .await;
    // A pass sees all three in use; then "old" stops being used before "recent" does.
    tokio::time::sleep(PERIOD + Duration::from_secs(1)).await;
    node.pods.remove("old");
    node.until(LIMIT, "pod old to go", |n| pod_gone(n, "old"))
        .await;
    tokio::time::sleep(PERIOD + Duration::from_secs(1)).await;
    node.pods.remove("recent");
    node.until(LIMIT, "pod recent to go", |n| pod_gone(n, "recent"))
        .await;
    tokio::time::sleep(PERIOD + Duration::from_secs(1)).await;
    assert!(
        removed(&runtime).is_empty(),
        "nothing goes below the threshold"
    );

    // 90% used: each pass frees one image's worth.
    fs.set(CAPACITY, 100);
    node.until(LIMIT, "three images removed", |n| {
        n.runtime.calls(Method::RemoveImage) >= 3
    })
    .await;
    // Never used first, then the least recently used.
    assert_eq!(
        removed(&runtime),
        [id_of("never:1"), id_of("old:1"), id_of("recent:1")]
    );
    // Nothing else is eligible: the in-use, pinned and sandbox images stay, however long.
    node.until(LIMIT, "a FreeDiskSpaceFailed event", |n| {
        !n.reporter
            .events_with_reason(REASON_FREE_DISK_SPACE_FAILED)
            .is_empty()
    })
    .await;
    assert_eq!(runtime.calls(Method::RemoveImage), 3);
    let mut left = runtime.local_images();
    left.sort();
    assert_eq!(
        left,
        [
            "docker.io/library/pinned:1",
            "docker.io/library/run:1",
            "localhost/pause:1"
        ]
    );
    node.shutdown().await;

    fn id_of(image: &str) -> String {
        // IDs are derived from the name; a fresh fake gives the same one.
        id(&FakeRuntime::with_images([image]), image)
    }
}

#[tokio::test(start_paused = true)]
async fn not_enough_freed_is_a_node_event_and_repeated_failure_image_gc_failed() {
    let runtime = runtime_with(&["run:1", "unused:1"]);
    let fs = Arc::new(StaticImageFs::new(CAPACITY, 500));
    let node = start(runtime.clone(), Duration::ZERO, fs.clone());
    run_pod(&node, "run", "run:1");
    node.until(LIMIT, "the pod to run", |n| running(n, "run"))
        .await;
    // Full: freeing down to 80% needs 200 bytes; only 100 are eligible.
    fs.set(CAPACITY, 0);
    node.until(LIMIT, "an ImageGCFailed event", |n| {
        !n.reporter
            .events_with_reason(REASON_IMAGE_GC_FAILED)
            .is_empty()
    })
    .await;
    let first = &node
        .reporter
        .events_with_reason(REASON_FREE_DISK_SPACE_FAILED)[0];
    assert_eq!(first.type_, EventType::Warning);
    assert_eq!(first.involved.kind.as_deref(), Some("Node"));
    assert_eq!(first.involved.name.as_deref(), Some("node-1"));
    assert!(
        first.message.starts_with(
            "Failed to garbage collect required amount of images. Attempted to free 200 bytes, \
             but only found "
        ),
        "{}",
        first.message
    );
    let repeated = &node.reporter.events_with_reason(REASON_IMAGE_GC_FAILED)[0];
    assert_eq!(repeated.type_, EventType::Warning);
    assert_eq!(repeated.involved.kind.as_deref(), Some("Node"));
    assert_eq!(
        repeated.message,
        "Failed to garbage collect required amount of images. Attempted to free 200 bytes, \
         but only found 0 bytes eligible to free."
    );
    assert_eq!(
        removed(&runtime),
        [id(&runtime_with(&["unused:1"]), "unused:1")]
    );
    assert!(
        runtime.image_id("run:1").is_some(),
        "the running pod's image stays"
    );
    node.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn images_younger_than_the_minimum_age_stay() {
    let runtime = runtime_with(&[]);
    let fs = Arc::new(StaticImageFs::new(CAPACITY, 100));
    let min_age = Duration::from_secs(60);
    let node = start(runtime.clone(), min_age, fs);
    // Let the kubelet start and pass once, then the image appears.
    tokio::time::sleep(PERIOD * 2).await;
    runtime.add_local_image("late:1");
    runtime.set_image_size("late:1", SIZE);
    let added = Instant::now();
    node.until(LIMIT * 2, "the late image to go", |n| {
        n.runtime.calls(Method::RemoveImage) == 1
    })
    .await;
    let age = added.elapsed();
    // First detected at the next pass after it appeared; removed at the first pass at
    // least `min_age` later.
    assert!(age >= min_age, "removed {age:?} after it appeared");
    assert!(
        age <= min_age + 2 * PERIOD,
        "removed {age:?} after it appeared"
    );
    node.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_failed_removal_is_skipped_and_the_next_image_tried() {
    let runtime = runtime_with(&["a:1", "b:1"]);
    runtime.fail_next(Method::RemoveImage, 1);
    // Needs 200 bytes: both images.
    let fs = Arc::new(StaticImageFs::new(CAPACITY, 0));
    let node = start(runtime.clone(), Duration::ZERO, fs);
    node.until(LIMIT, "two removals", |n| {
        n.runtime.calls(Method::RemoveImage) >= 2
    })
    .await;
    // The first removal failed; the second image went in the same pass.
    assert_eq!(runtime.local_images().len(), 1);
    let calls = removed(&runtime);
    assert_ne!(calls[0], calls[1]);
    // That pass failed for the removal, not for the space: no FreeDiskSpaceFailed.
    assert!(
        node.reporter
            .events_with_reason(REASON_FREE_DISK_SPACE_FAILED)
            .is_empty()
    );
    // The next pass removes the one left.
    node.until(LIMIT, "the last image to go", |n| {
        n.runtime.local_images().is_empty()
    })
    .await;
    node.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn without_image_fs_info_gc_stays_off_and_a_high_threshold_of_100_disables_it() {
    // The default provider asks the runtime, which refuses: asked once, then never again.
    let runtime = runtime_with(&["unused:1"]);
    let node = Node::start_configured(
        runtime.clone(),
        |config, _| config.image_gc.period = PERIOD,
        |b| b,
    );
    tokio::time::sleep(PERIOD * 5).await;
    assert_eq!(runtime.calls(Method::ImageFsInfo), 1);
    assert_eq!(runtime.calls(Method::RemoveImage), 0);
    node.shutdown().await;

    let runtime = runtime_with(&["unused:1"]);
    let fs = Arc::new(StaticImageFs::new(CAPACITY, 0));
    let node = Node::start_configured(
        runtime.clone(),
        |config, _| {
            config.image_gc.period = PERIOD;
            config.image_gc.min_age = Duration::ZERO;
            config.image_gc.high_threshold_percent = 100;
        },
        |b| b.image_fs(fs),
    );
    tokio::time::sleep(PERIOD * 5).await;
    assert_eq!(runtime.calls(Method::RemoveImage), 0);
    assert_eq!(runtime.calls(Method::ImageFsInfo), 0);
    node.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_zero_capacity_is_an_invalid_disk_capacity_event() {
    let runtime = runtime_with(&["unused:1"]);
    let fs = Arc::new(StaticImageFs::new(0, 0));
    let node = start(runtime.clone(), Duration::ZERO, fs);
    node.until(LIMIT, "an InvalidDiskCapacity event", |n| {
        !n.reporter
            .events_with_reason(REASON_INVALID_DISK_CAPACITY)
            .is_empty()
    })
    .await;
    let event = &node
        .reporter
        .events_with_reason(REASON_INVALID_DISK_CAPACITY)[0];
    assert_eq!(event.type_, EventType::Warning);
    assert_eq!(event.message, "invalid capacity 0 on image filesystem");
    assert_eq!(runtime.calls(Method::RemoveImage), 0);
    node.shutdown().await;
}

#[test]
fn the_builder_refuses_an_invalid_policy() {
    let mut config = KubeletConfig::new("node-1");
    config.image_gc = ImageGcPolicy {
        high_threshold_percent: 50,
        low_threshold_percent: 60,
        ..ImageGcPolicy::default()
    };
    let err = Kubelet::builder(config)
        .runtime(Arc::new(FakeRuntime::new()))
        .reporter(Arc::new(kubelet_core::testing::RecordingReporter::new()))
        .build()
        .err()
        .expect("refused");
    assert!(matches!(err, KubeletError::ImageGc(_)), "{err}");
    assert!(
        err.to_string()
            .contains("LowThresholdPercent 60 can not be higher than HighThresholdPercent 50"),
        "{err}"
    );
}
