//! The atomic writer: a volume's files live in a timestamped `..<ts>` directory, `..data`
//! is a symlink to the current one, and what containers see are symlinks through `..data`.
//! An update writes a new `..<ts>` directory and renames a fresh symlink over `..data`, so
//! a reader sees either the old set of files or the new one, never a mix (the reference's
//! layout, which applications watching for ConfigMap changes depend on).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::volume_plugins::ownership::{FsGroup, FsGroupChangePolicy, set_volume_ownership};

/// The symlink to the current timestamped directory.
pub(super) const DATA_DIR: &str = "..data";
const DATA_DIR_TMP: &str = "..data_tmp";
/// Directories inside the volume must be traversable by any container user.
const DIR_MODE: u32 = 0o755;

/// One file of a volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FileProjection {
    /// The content.
    pub data: Vec<u8>,
    /// Permission bits.
    pub mode: u32,
    /// The file's owner when it is not the kubelet's user (a service account token given to
    /// the containers' common `runAsUser`).
    pub owner: Option<u32>,
}

/// Files by path relative to the volume directory.
pub(super) type Payload = BTreeMap<String, FileProjection>;

/// A filesystem operation of the writer failed.
#[derive(Debug)]
pub(super) struct WriteError {
    pub path: PathBuf,
    pub source: io::Error,
}

fn at(path: &Path) -> impl FnOnce(io::Error) -> WriteError + '_ {
    move |source| WriteError {
        path: path.to_path_buf(),
        source,
    }
}

/// Why a payload path is refused, if it is: paths must be relative, may not contain `..`,
/// may not start with `..` (those names are the writer's own) and may not be both a file and
/// a directory.
pub(super) fn validate(payload: &Payload) -> Result<(), String> {
    for path in payload.keys() {
        if path.is_empty() {
            return Err("an item has an empty path".to_string());
        }
        if path.len() > 4096 {
            return Err(format!("path {path:?} is longer than 4096 bytes"));
        }
        let p = Path::new(path);
        if p.is_absolute() {
            return Err(format!("path {path:?} must be relative"));
        }
        if path.starts_with("..") {
            return Err(format!("path {path:?} may not start with '..'"));
        }
        if p.components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(format!("path {path:?} may not contain '..' or '.'"));
        }
        // "a" as a file and "a/b" below it cannot both exist.
        let mut parent = p.parent();
        while let Some(dir) = parent.filter(|d| !d.as_os_str().is_empty()) {
            if let Some(s) = dir.to_str()
                && payload.contains_key(s)
            {
                return Err(format!("path {s:?} is both a file and a directory"));
            }
            parent = dir.parent();
        }
    }
    Ok(())
}

/// The first component of each path: what gets a user-visible symlink.
fn top_level(payload: &Payload) -> BTreeSet<String> {
    payload
        .keys()
        .filter_map(|p| p.split('/').find(|c| !c.is_empty()).map(str::to_string))
        .collect()
}

/// The mode a file ends with: the payload's, plus group read when the pod has an
/// `fsGroup` (the ownership walk adds it, the volume being read-only).
fn effective_mode(mode: u32, fs_group: Option<FsGroup>) -> u32 {
    let mode = mode & 0o7777;
    if fs_group.is_some() {
        mode | 0o440
    } else {
        mode
    }
}

/// Makes `target` hold exactly `payload`; returns whether anything was written. A payload
/// equal to what is there (contents and modes) writes nothing, so calling this on every sync
/// is cheap and does not disturb readers. The payload must have passed [`validate`].
/// `target` is created if missing (its mode is the caller's business). With `fs_group`, the
/// whole volume is given to the group (read-only, the reference's `SetVolumeOwnership` on
/// every write) after the new files are written and before they become visible.
pub(super) fn write(
    target: &Path,
    payload: &Payload,
    fs_group: Option<FsGroup>,
) -> Result<bool, WriteError> {
    fs::create_dir_all(target).map_err(at(target))?;
    let data_link = target.join(DATA_DIR);
    let old = match fs::read_link(&data_link) {
        Ok(p) => Some(p),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(at(&data_link)(e)),
    };
    let unchanged = match &old {
        Some(old) => matches(&target.join(old), payload, fs_group)?,
        None => false,
    };
    if !unchanged {
        let ts_name = new_ts_dir(target)?;
        let ts_dir = target.join(&ts_name);
        write_files(&ts_dir, payload)?;
        if let Some(group) = fs_group {
            let always = FsGroup {
                policy: FsGroupChangePolicy::Always,
                ..group
            };
            set_volume_ownership(target, always, true).map_err(|e| WriteError {
                path: e.path,
                source: e.source,
            })?;
        }
        let tmp = target.join(DATA_DIR_TMP);
        remove_if_present(&tmp)?;
        symlink(&ts_name, &tmp).map_err(at(&tmp))?;
        fs::rename(&tmp, &data_link).map_err(at(&data_link))?;
    }
    let visible = top_level(payload);
    for name in &visible {
        let path = target.join(name);
        match fs::symlink_metadata(&path) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                symlink(Path::new(DATA_DIR).join(name), &path).map_err(at(&path))?;
            }
            Err(e) => return Err(at(&path)(e)),
        }
    }
    // The old timestamped directory (and any left by an interrupted write), and the
    // user-visible paths the new payload no longer has.
    let current = fs::read_link(&data_link).map_err(at(&data_link))?;
    for entry in fs::read_dir(target).map_err(at(target))? {
        let entry = entry.map_err(at(target))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let keep = if name.starts_with("..") {
            name == DATA_DIR || Path::new(name.as_ref()) == current
        } else {
            visible.contains(name.as_ref())
        };
        if !keep {
            remove_if_present(&entry.path())?;
        }
    }
    Ok(!unchanged)
}

fn remove_if_present(path: &Path) -> Result<(), WriteError> {
    let result = match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(at(path)(e)),
    }
}

/// Creates `..<UTC time>.<n>` (the reference's `..2006_01_02_15_04_05.<random>` shape).
fn new_ts_dir(target: &Path) -> Result<String, WriteError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let stamp = jiff::Timestamp::now();
    let base = stamp.strftime("..%Y_%m_%d_%H_%M_%S").to_string();
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("{base}.{:09}{n}", stamp.subsec_nanosecond());
        let dir = target.join(&name);
        match fs::create_dir(&dir) {
            Ok(()) => {
                fs::set_permissions(&dir, fs::Permissions::from_mode(DIR_MODE))
                    .map_err(at(&dir))?;
                return Ok(name);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(at(&dir)(e)),
        }
    }
}

fn write_files(dir: &Path, payload: &Payload) -> Result<(), WriteError> {
    for (rel, file) in payload {
        let path = dir.join(rel);
        if let Some(parent) = path.parent()
            && parent != dir
        {
            fs::create_dir_all(parent).map_err(at(parent))?;
            // Every level below the timestamped dir, as created.
            let mut p = parent;
            while p != dir {
                fs::set_permissions(p, fs::Permissions::from_mode(DIR_MODE)).map_err(at(p))?;
                match p.parent() {
                    Some(up) => p = up,
                    None => break,
                }
            }
        }
        let mut f = fs::File::create(&path).map_err(at(&path))?;
        f.write_all(&file.data).map_err(at(&path))?;
        f.sync_all().map_err(at(&path))?;
        // Set after writing so the umask does not decide the mode.
        fs::set_permissions(&path, fs::Permissions::from_mode(file.mode & 0o7777))
            .map_err(at(&path))?;
        if let Some(owner) = file.owner {
            std::os::unix::fs::lchown(&path, Some(owner), None).map_err(at(&path))?;
        }
    }
    Ok(())
}

/// Whether `dir` holds exactly the payload's files, with the same contents and modes.
fn matches(dir: &Path, payload: &Payload, fs_group: Option<FsGroup>) -> Result<bool, WriteError> {
    let mut found = BTreeMap::new();
    if !collect(dir, dir, &mut found)? {
        return Ok(false);
    }
    if found.len() != payload.len() {
        return Ok(false);
    }
    for (rel, (mode, uid)) in found {
        let Some(want) = payload.get(&rel) else {
            return Ok(false);
        };
        if want.owner.is_some_and(|owner| owner != uid) {
            return Ok(false);
        }
        if mode != effective_mode(want.mode, fs_group) {
            return Ok(false);
        }
        let path = dir.join(&rel);
        let data = fs::read(&path).map_err(at(&path))?;
        if data != want.data {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Regular files below `dir` with their modes; false when `dir` is gone or holds anything
/// else than directories and regular files.
fn collect(
    root: &Path,
    dir: &Path,
    found: &mut BTreeMap<String, (u32, u32)>,
) -> Result<bool, WriteError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(at(dir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(at(dir))?;
        let path = entry.path();
        let meta = fs::symlink_metadata(&path).map_err(at(&path))?;
        if meta.is_dir() {
            if !collect(root, &path, found)? {
                return Ok(false);
            }
        } else if meta.is_file() {
            let Some(rel) = path.strip_prefix(root).ok().and_then(Path::to_str) else {
                return Ok(false);
            };
            found.insert(
                rel.to_string(),
                (meta.permissions().mode() & 0o7777, meta.uid()),
            );
        } else {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(data: &str, mode: u32) -> FileProjection {
        FileProjection {
            data: data.as_bytes().to_vec(),
            mode,
            owner: None,
        }
    }

    fn payload(entries: &[(&str, &str, u32)]) -> Payload {
        entries
            .iter()
            .map(|(p, d, m)| (p.to_string(), file(d, *m)))
            .collect()
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn files_are_reached_through_data_and_updates_swap_it() {
        let root = tempfile::tempdir().unwrap();
        let target = root.path().join("vol");
        let first = payload(&[("a", "1", 0o644), ("dir/b", "2", 0o600)]);
        assert!(write(&target, &first, None).unwrap());
        assert_eq!(fs::read_to_string(target.join("a")).unwrap(), "1");
        assert_eq!(fs::read_to_string(target.join("dir/b")).unwrap(), "2");
        assert_eq!(
            fs::read_link(target.join("a")).unwrap(),
            Path::new("..data/a")
        );
        assert_eq!(
            fs::read_link(target.join("dir")).unwrap(),
            Path::new("..data/dir")
        );
        assert_eq!(mode(&target.join("a")), 0o644);
        assert_eq!(mode(&target.join("dir/b")), 0o600);
        let ts1 = fs::read_link(target.join(DATA_DIR)).unwrap();
        assert!(ts1.to_string_lossy().starts_with(".."), "{ts1:?}");

        // The same payload writes nothing.
        assert!(!write(&target, &first, None).unwrap());
        assert_eq!(fs::read_link(target.join(DATA_DIR)).unwrap(), ts1);

        // A change: a new timestamped dir, the old one and the dropped path gone.
        let second = payload(&[("a", "one", 0o644), ("c", "3", 0o400)]);
        assert!(write(&target, &second, None).unwrap());
        let ts2 = fs::read_link(target.join(DATA_DIR)).unwrap();
        assert_ne!(ts1, ts2);
        assert!(!target.join(&ts1).exists());
        assert_eq!(fs::read_to_string(target.join("a")).unwrap(), "one");
        assert_eq!(mode(&target.join("c")), 0o400);
        assert!(fs::symlink_metadata(target.join("dir")).is_err());
        let mut names: Vec<String> = fs::read_dir(&target)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let mut want = vec![
            DATA_DIR.to_string(),
            ts2.to_string_lossy().into_owned(),
            "a".into(),
            "c".into(),
        ];
        want.sort();
        assert_eq!(names, want);
        // A mode change alone is a change.
        let third = payload(&[("a", "one", 0o600), ("c", "3", 0o400)]);
        assert!(write(&target, &third, None).unwrap());
        assert_eq!(mode(&target.join("a")), 0o600);
    }

    #[test]
    fn a_file_tampered_with_is_rewritten() {
        let root = tempfile::tempdir().unwrap();
        let target = root.path().join("vol");
        let p = payload(&[("a", "1", 0o644)]);
        write(&target, &p, None).unwrap();
        let ts = fs::read_link(target.join(DATA_DIR)).unwrap();
        fs::write(target.join(&ts).join("a"), "changed").unwrap();
        assert!(write(&target, &p, None).unwrap());
        assert_eq!(fs::read_to_string(target.join("a")).unwrap(), "1");
    }

    #[test]
    fn an_empty_payload_is_an_empty_volume() {
        let root = tempfile::tempdir().unwrap();
        let target = root.path().join("vol");
        write(&target, &Payload::new(), None).unwrap();
        assert!(target.join(DATA_DIR).is_dir());
        assert!(!write(&target, &Payload::new(), None).unwrap());
    }

    #[test]
    fn unsafe_paths_are_refused() {
        for bad in [
            "/etc/passwd",
            "../x",
            "a/../../x",
            "..data",
            "..x/y",
            "",
            "./a",
        ] {
            let p = payload(&[(bad, "", 0o644)]);
            assert!(validate(&p).is_err(), "{bad:?} accepted");
        }
        assert!(validate(&payload(&[("a", "", 0o644), ("a/b", "", 0o644)])).is_err());
        assert!(validate(&payload(&[("a.b", "", 0o644), ("c/..d", "", 0o644)])).is_ok());
    }
}
