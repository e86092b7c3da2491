//! Image garbage collection, as the reference kubelet's image GC manager does it.
//!
//! Every [`ImageGcPolicy::period`] (the reference's 5 minutes, the first pass at start) the
//! images on the node are listed and recorded with when they were first detected and when
//! they were last used (used: some container of the runtime, running or exited, runs it; the
//! sandbox image always counts as used). When the image filesystem's usage is at or above
//! the high threshold, unused images that are neither pinned nor younger than the minimum
//! age are removed, least recently used first (then the earliest detected), until
//! `capacity * (100 - low) / 100 - available` bytes are freed. Not freeing enough is a
//! Warning `FreeDiskSpaceFailed` event on the Node; a pass failing twice in a row a Warning
//! `ImageGCFailed` event with the error.
//!
//! Differences from the reference:
//! - detection and collection run in one loop on one period (the reference runs two loops
//!   of 5 minutes each), so first-detected times are as precise as the period;
//! - `imageMaximumGCAge` is not implemented;
//! - a runtime that does not answer `ImageFsInfo` ([`crate::runtime::Runtime::image_fs_info`]
//!   refusing with `Unsupported`) turns collection off, logged once, instead of failing
//!   every pass: the usage of its image filesystem is unknown.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use thiserror::Error;
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use crate::error::RuntimeError;
use crate::reporter::{EventType, KubeletEvent, NodeReporter};
use crate::runtime::{ContainerStatus, ImageInfo, ListFilter, Runtime};

/// `imageGCHighThresholdPercent` default.
pub const DEFAULT_HIGH_THRESHOLD_PERCENT: u8 = 85;
/// `imageGCLowThresholdPercent` default.
pub const DEFAULT_LOW_THRESHOLD_PERCENT: u8 = 80;
/// `imageMinimumGCAge` default.
pub const DEFAULT_MINIMUM_GC_AGE: Duration = Duration::from_secs(120);
/// The reference's default sandbox image (`--pod-infra-container-image`).
pub const DEFAULT_SANDBOX_IMAGE: &str = "registry.k8s.io/pause:3.10";
/// The reference's period of image detection and collection (`ImageGCPeriod`).
pub const DEFAULT_PERIOD: Duration = Duration::from_secs(300);

/// Event reason when a pass could not free enough space.
pub const REASON_FREE_DISK_SPACE_FAILED: &str = "FreeDiskSpaceFailed";
/// Event reason when image GC failed twice in a row.
pub const REASON_IMAGE_GC_FAILED: &str = "ImageGCFailed";
/// Event reason when the image filesystem reports no capacity.
pub const REASON_INVALID_DISK_CAPACITY: &str = "InvalidDiskCapacity";

/// When and what image GC removes (the reference's `ImageGCPolicy`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageGcPolicy {
    /// Usage percent of the image filesystem at or above which images are collected
    /// (`imageGCHighThresholdPercent`); 100 turns collection off.
    pub high_threshold_percent: u8,
    /// Usage percent collection frees down to (`imageGCLowThresholdPercent`).
    pub low_threshold_percent: u8,
    /// An image detected more recently than this is never removed (`imageMinimumGCAge`).
    pub min_age: Duration,
    /// How often images are detected and collected (5 min; shorter in tests).
    pub period: Duration,
    /// The sandbox (pause) image, never removed even when no container uses it
    /// (`--pod-infra-container-image`, default [`DEFAULT_SANDBOX_IMAGE`]). Set it to the
    /// runtime's configured sandbox image unless the runtime pins that image itself
    /// (containerd 1.6 does not).
    pub sandbox_image: Option<String>,
}

impl Default for ImageGcPolicy {
    fn default() -> Self {
        Self {
            high_threshold_percent: DEFAULT_HIGH_THRESHOLD_PERCENT,
            low_threshold_percent: DEFAULT_LOW_THRESHOLD_PERCENT,
            min_age: DEFAULT_MINIMUM_GC_AGE,
            period: DEFAULT_PERIOD,
            sandbox_image: Some(DEFAULT_SANDBOX_IMAGE.to_string()),
        }
    }
}

impl ImageGcPolicy {
    /// The reference image GC manager's checks: both thresholds in 0..=100, low not above
    /// high; and a period above zero.
    pub fn validate(&self) -> Result<(), ImageGcError> {
        let (high, low) = (self.high_threshold_percent, self.low_threshold_percent);
        if high > 100 {
            return Err(ImageGcError::InvalidPolicy(format!(
                "invalid HighThresholdPercent {high}, must be in range [0-100]"
            )));
        }
        if low > 100 {
            return Err(ImageGcError::InvalidPolicy(format!(
                "invalid LowThresholdPercent {low}, must be in range [0-100]"
            )));
        }
        if low > high {
            return Err(ImageGcError::InvalidPolicy(format!(
                "LowThresholdPercent {low} can not be higher than HighThresholdPercent {high}"
            )));
        }
        if self.period.is_zero() {
            return Err(ImageGcError::InvalidPolicy(
                "image GC period must be greater than zero".to_string(),
            ));
        }
        Ok(())
    }

    /// Whether collection runs at all: a high threshold of 100 turns it off, as in the
    /// reference (without `imageMaximumGCAge`).
    pub fn enabled(&self) -> bool {
        self.high_threshold_percent < 100
    }
}

/// Why image GC could not run or did not free enough.
#[derive(Debug, Error)]
pub enum ImageGcError {
    /// The policy is unusable.
    #[error("invalid image GC policy: {0}")]
    InvalidPolicy(String),
    /// Listing images or containers failed.
    #[error("image GC: {0}")]
    Runtime(#[from] RuntimeError),
    /// The image filesystem could not be measured.
    #[error("image filesystem: {0}")]
    ImageFs(String),
    /// The image filesystem reports a capacity of 0.
    #[error("invalid capacity 0 on image filesystem")]
    InvalidCapacity,
    /// Fewer bytes were eligible than needed (the reference's message).
    #[error(
        "Failed to garbage collect required amount of images. Attempted to free {wanted} bytes, but only found {freed} bytes eligible to free."
    )]
    NotEnoughFreed {
        /// Bytes to free.
        wanted: u64,
        /// Bytes freed.
        freed: u64,
    },
    /// Some removals failed (the others were tried).
    #[error(
        "wanted to free {wanted} bytes, but freed {freed} bytes space with errors in image deletion: {}",
        aggregate(.errors)
    )]
    Removal {
        /// Bytes to free.
        wanted: u64,
        /// Bytes freed.
        freed: u64,
        /// Each failed removal.
        errors: Vec<String>,
    },
}

/// Errors joined as the reference's aggregate error prints them.
fn aggregate(errors: &[String]) -> String {
    match errors {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    }
}

/// Size and free space of the image filesystem.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImageFsStats {
    /// Total size in bytes.
    pub capacity_bytes: u64,
    /// Bytes available.
    pub available_bytes: u64,
}

/// Where image GC learns the image filesystem's size and free space: the seam tests and
/// embedders without a real filesystem replace ([`StaticImageFs`]).
#[async_trait]
pub trait ImageFsStatsProvider: Send + Sync + 'static {
    /// The image filesystem's numbers; `None` when there is no way to know them (image GC
    /// is then off).
    async fn image_fs_stats(&self) -> Result<Option<ImageFsStats>, ImageGcError>;
}

/// The default provider: the runtime's `ImageFsInfo` names the mount point, statfs of it
/// gives capacity and available bytes (as the reference's stats provider combines CRI and
/// cAdvisor).
pub struct RuntimeImageFs {
    runtime: Arc<dyn Runtime>,
}

impl RuntimeImageFs {
    /// Over `runtime`.
    pub fn new(runtime: Arc<dyn Runtime>) -> Self {
        Self { runtime }
    }
}

#[async_trait]
impl ImageFsStatsProvider for RuntimeImageFs {
    async fn image_fs_stats(&self) -> Result<Option<ImageFsStats>, ImageGcError> {
        let filesystems = match self.runtime.image_fs_info().await {
            Ok(filesystems) => filesystems,
            Err(RuntimeError::Unsupported(_)) => return Ok(None),
            Err(err) => return Err(err.into()),
        };
        let Some(mountpoint) = filesystems
            .into_iter()
            .map(|fs| fs.mountpoint)
            .find(|m| !m.is_empty())
        else {
            return Err(ImageGcError::ImageFs(
                "the runtime reported no image filesystem".to_string(),
            ));
        };
        let path = PathBuf::from(&mountpoint);
        let info = tokio::task::spawn_blocking(move || crate::stats::fs::fs_info(&path))
            .await
            .map_err(|e| ImageGcError::ImageFs(format!("statfs {mountpoint}: {e}")))?
            .map_err(|e| ImageGcError::ImageFs(format!("statfs {mountpoint}: {e}")))?;
        Ok(Some(ImageFsStats {
            capacity_bytes: info.capacity,
            available_bytes: info.available,
        }))
    }
}

/// A provider whose numbers are set by hand: for scenario tests, and nodes whose runtime
/// has no image filesystem of its own (hollow nodes).
#[derive(Debug, Default)]
pub struct StaticImageFs {
    stats: Mutex<Option<ImageFsStats>>,
}

impl StaticImageFs {
    /// A filesystem of `capacity` bytes with `available` bytes free.
    pub fn new(capacity: u64, available: u64) -> Self {
        let fs = Self::default();
        fs.set(capacity, available);
        fs
    }

    /// Change the numbers.
    pub fn set(&self, capacity: u64, available: u64) {
        *self.stats.lock().unwrap_or_else(|e| e.into_inner()) = Some(ImageFsStats {
            capacity_bytes: capacity,
            available_bytes: available,
        });
    }
}

#[async_trait]
impl ImageFsStatsProvider for StaticImageFs {
    async fn image_fs_stats(&self) -> Result<Option<ImageFsStats>, ImageGcError> {
        Ok(*self.stats.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// What is known of one image.
#[derive(Debug, Clone)]
struct ImageRecord {
    first_detected: Instant,
    /// `None`: never seen in use (sorts first, as the reference's zero time).
    last_used: Option<Instant>,
    size: u64,
    pinned: bool,
}

/// The image GC manager: its records and the seams it works through. [`ImageGcManager::run`]
/// drives it; the kubelet starts one per [`crate::KubeletConfig::image_gc`].
pub struct ImageGcManager {
    policy: ImageGcPolicy,
    runtime: Arc<dyn Runtime>,
    image_fs: Arc<dyn ImageFsStatsProvider>,
    reporter: Arc<dyn NodeReporter>,
    node_name: String,
    records: BTreeMap<String, ImageRecord>,
    previous_failed: bool,
    /// Set once the filesystem's numbers turned out unknowable: passes stop asking.
    image_fs_unknown: bool,
}

impl ImageGcManager {
    /// A manager for node `node_name`; the policy is validated.
    pub fn new(
        policy: ImageGcPolicy,
        runtime: Arc<dyn Runtime>,
        image_fs: Arc<dyn ImageFsStatsProvider>,
        reporter: Arc<dyn NodeReporter>,
        node_name: impl Into<String>,
    ) -> Result<Self, ImageGcError> {
        policy.validate()?;
        Ok(Self {
            policy,
            runtime,
            image_fs,
            reporter,
            node_name: node_name.into(),
            records: BTreeMap::new(),
            previous_failed: false,
            image_fs_unknown: false,
        })
    }

    /// Detect and collect every period, the first pass at once, until `shutdown`.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()> + Send) {
        Self::run_shared(Arc::new(tokio::sync::Mutex::new(self)), shutdown).await;
    }

    /// [`ImageGcManager::run`] on a manager others may lock between passes (the eviction
    /// manager's node-level reclaim: [`ImageGcManager::delete_unused_images`]).
    pub async fn run_shared(
        manager: Arc<tokio::sync::Mutex<Self>>,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) {
        let period = {
            let gc = manager.lock().await;
            if !gc.policy.enabled() {
                info!("imageGCHighThresholdPercent is 100: image garbage collection is disabled");
                return;
            }
            gc.policy.period
        };
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tick.tick() => {}
            }
            let mut gc = manager.lock().await;
            if gc.image_fs_unknown {
                continue;
            }
            gc.pass().await;
        }
    }

    /// One pass as the reference's GC loop runs it: a failure is logged, and when the
    /// previous pass failed too, recorded as an `ImageGCFailed` event.
    pub async fn pass(&mut self) {
        match self.garbage_collect().await {
            Ok(_) => self.previous_failed = false,
            Err(err) => {
                if self.previous_failed {
                    error!(node = %self.node_name, error = %err, "Image garbage collection failed multiple times in a row");
                    self.event(REASON_IMAGE_GC_FAILED, err.to_string()).await;
                } else {
                    error!(node = %self.node_name, error = %err, "Image garbage collection failed once. Stats initialization may not have completed yet");
                }
                self.previous_failed = true;
            }
        }
    }

    /// Detect the images, and when the image filesystem is at or above the high threshold,
    /// remove images down to the low threshold. Returns the bytes freed.
    pub async fn garbage_collect(&mut self) -> Result<u64, ImageGcError> {
        let Some(fs) = self.image_fs.image_fs_stats().await? else {
            info!(
                node = %self.node_name,
                "the runtime does not report its image filesystem: image garbage collection is off"
            );
            self.image_fs_unknown = true;
            return Ok(0);
        };
        let free_time = Instant::now();
        let images = self.images_in_eviction_order(free_time).await?;
        let capacity = fs.capacity_bytes;
        let mut available = fs.available_bytes;
        if available > capacity {
            info!(available, capacity, "Availability is larger than capacity");
            available = capacity;
        }
        if capacity == 0 {
            let err = ImageGcError::InvalidCapacity;
            self.event(REASON_INVALID_DISK_CAPACITY, err.to_string())
                .await;
            return Err(err);
        }
        let usage_percent = 100 - (u128::from(available) * 100 / u128::from(capacity)) as u64;
        let high = u64::from(self.policy.high_threshold_percent);
        let low = u64::from(self.policy.low_threshold_percent);
        if usage_percent < high {
            debug!(
                usage = usage_percent,
                high_threshold = high,
                "image filesystem below the high threshold"
            );
            return Ok(0);
        }
        let target_available = (u128::from(capacity) * u128::from(100 - low) / 100) as u64;
        let amount_to_free = target_available.saturating_sub(available);
        info!(
            usage = usage_percent,
            high_threshold = high,
            amount_to_free,
            low_threshold = low,
            "Disk usage on image filesystem is over the high threshold, trying to free bytes down to the low threshold"
        );
        let freed = self.free_space(amount_to_free, free_time, images).await?;
        if freed < amount_to_free {
            let err = ImageGcError::NotEnoughFreed {
                wanted: amount_to_free,
                freed,
            };
            self.event(REASON_FREE_DISK_SPACE_FAILED, err.to_string())
                .await;
            return Err(err);
        }
        Ok(freed)
    }

    /// Remove every unused image the policy's ages allow, whatever the filesystem's usage
    /// (the reference's `DeleteUnusedImages`, which the eviction manager calls under disk
    /// pressure before it evicts pods). Returns the bytes freed.
    pub async fn delete_unused_images(&mut self) -> Result<u64, ImageGcError> {
        let free_time = Instant::now();
        let images = self.images_in_eviction_order(free_time).await?;
        self.free_space(u64::MAX, free_time, images).await
    }

    /// Record the node's images; returns the IDs of those in use.
    async fn detect_images(
        &mut self,
        detect_time: Instant,
    ) -> Result<HashSet<String>, ImageGcError> {
        let images = self.runtime.list_images().await?;
        let containers = self.runtime.list_containers(&ListFilter::all()).await?;
        // Always in use, as the reference treats the sandbox image.
        let sandbox_id = match &self.policy.sandbox_image {
            Some(image) => match self.runtime.image_status(image).await {
                Ok(info) => info.map(|i| i.id),
                Err(err) => {
                    debug!(image = %image, error = %err, "sandbox image status unknown");
                    None
                }
            },
            None => None,
        };
        let now = Instant::now();
        let mut in_use = HashSet::new();
        for image in &images {
            let used = sandbox_id.as_deref() == Some(image.id.as_str())
                || containers.iter().any(|c| container_uses(c, image));
            let record = self
                .records
                .entry(image.id.clone())
                .or_insert_with(|| ImageRecord {
                    first_detected: detect_time,
                    last_used: None,
                    size: 0,
                    pinned: false,
                });
            if used {
                record.last_used = Some(now);
                in_use.insert(image.id.clone());
            }
            record.size = image.size;
            record.pinned = image.pinned;
        }
        let current: HashSet<&str> = images.iter().map(|i| i.id.as_str()).collect();
        self.records.retain(|id, _| current.contains(id.as_str()));
        Ok(in_use)
    }

    /// The images that may go, least recently used first, then the earliest detected.
    async fn images_in_eviction_order(
        &mut self,
        free_time: Instant,
    ) -> Result<Vec<(String, ImageRecord)>, ImageGcError> {
        let in_use = self.detect_images(free_time).await?;
        let mut images: Vec<(String, ImageRecord)> = self
            .records
            .iter()
            .filter(|(id, record)| {
                if in_use.contains(id.as_str()) {
                    debug!(image = %id, "image is being used");
                    return false;
                }
                if record.pinned {
                    debug!(image = %id, "image is pinned, skipping garbage collection");
                    return false;
                }
                true
            })
            .map(|(id, record)| (id.clone(), record.clone()))
            .collect();
        images.sort_by_key(|(_, r)| (r.last_used, r.first_detected));
        Ok(images)
    }

    /// Remove images in order until `bytes_to_free` are freed; a failed removal is logged and
    /// the next image tried.
    async fn free_space(
        &mut self,
        bytes_to_free: u64,
        free_time: Instant,
        images: Vec<(String, ImageRecord)>,
    ) -> Result<u64, ImageGcError> {
        let mut freed = 0u64;
        let mut errors = Vec::new();
        for (id, record) in images {
            if record.last_used.is_some_and(|t| t >= free_time) {
                debug!(image = %id, "image was used too recently, not eligible for garbage collection");
                continue;
            }
            let age = free_time.saturating_duration_since(record.first_detected);
            if age < self.policy.min_age {
                debug!(image = %id, ?age, min_age = ?self.policy.min_age, "image's age is less than the policy's minAge, not eligible for garbage collection");
                continue;
            }
            info!(image = %id, size = record.size, "Removing image to free bytes");
            if let Err(err) = self.runtime.remove_image(&id).await {
                warn!(image = %id, error = %err, "removing an image failed");
                errors.push(err.to_string());
                continue;
            }
            self.records.remove(&id);
            freed = freed.saturating_add(record.size);
            if freed >= bytes_to_free {
                break;
            }
        }
        if !errors.is_empty() {
            return Err(ImageGcError::Removal {
                wanted: bytes_to_free,
                freed,
                errors,
            });
        }
        Ok(freed)
    }

    /// A Warning event on the Node object.
    async fn event(&self, reason: &str, message: String) {
        let event = KubeletEvent::about_node(&self.node_name, EventType::Warning, reason, message);
        if let Err(err) = self.reporter.record_event(&event).await {
            debug!(error = %err, reason, "recording an image GC event failed");
        }
    }
}

/// Whether container `c` runs `image`: by image ID, digest or tag, whichever the runtime
/// reports for the container (CRI runtimes give the ID in `image_ref`).
fn container_uses(c: &ContainerStatus, image: &ImageInfo) -> bool {
    [c.image_ref.as_str(), c.image.as_str()]
        .into_iter()
        .filter(|r| !r.is_empty())
        .any(|r| {
            r == image.id
                || image.repo_digests.iter().any(|d| d == r)
                || image.repo_tags.iter().any(|t| t == r)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_follows_the_reference() {
        assert!(ImageGcPolicy::default().validate().is_ok());
        let policy = |high, low| ImageGcPolicy {
            high_threshold_percent: high,
            low_threshold_percent: low,
            ..ImageGcPolicy::default()
        };
        assert!(policy(100, 100).validate().is_ok());
        assert!(!policy(100, 0).enabled());
        assert!(policy(99, 0).enabled());
        let err = policy(101, 0).validate().unwrap_err().to_string();
        assert!(err.contains("invalid HighThresholdPercent 101"), "{err}");
        let err = policy(50, 60).validate().unwrap_err().to_string();
        assert!(
            err.contains("LowThresholdPercent 60 can not be higher than HighThresholdPercent 50"),
            "{err}"
        );
    }

    #[test]
    fn removal_errors_aggregate_as_the_reference() {
        let one = ImageGcError::Removal {
            wanted: 10,
            freed: 4,
            errors: vec!["a".into()],
        };
        assert_eq!(
            one.to_string(),
            "wanted to free 10 bytes, but freed 4 bytes space with errors in image deletion: a"
        );
        let two = ImageGcError::Removal {
            wanted: 10,
            freed: 4,
            errors: vec!["a".into(), "b".into()],
        };
        assert!(two.to_string().ends_with(": [a, b]"));
    }
}
