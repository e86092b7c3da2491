//! The cgroupfs driver over a cgroup filesystem mounted at a configurable root: cgroup v1
//! (one hierarchy per controller, `<root>/<controller>/<cgroup>`) or v2 (one unified tree,
//! `<root>/<cgroup>`, controllers enabled down the path through `cgroup.subtree_control`).

use std::collections::BTreeSet;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use tracing::debug;

use super::convert::{pids_max, shares_to_weight, v2_cpu_max, v2_limit};
use super::{CgroupError, CgroupManager, CgroupName, ResourceConfig};

/// The v1 controllers a cgroup must exist in (those of them that are mounted), as the
/// reference checks.
const REQUIRED_V1: [&str; 6] = ["cpu", "cpuacct", "cpuset", "memory", "pids", "hugetlb"];
/// The v2 controllers enabled down to the kubelet's cgroups (those the root offers).
const V2_CONTROLLERS: [&str; 5] = ["cpuset", "cpu", "memory", "pids", "hugetlb"];

/// Which cgroup filesystem the root holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    /// One hierarchy per controller (or group of controllers).
    V1,
    /// The unified hierarchy.
    V2,
}

#[derive(Debug, Clone)]
struct Hierarchy {
    controllers: Vec<String>,
    path: PathBuf,
}

/// The cgroupfs driver (see the module documentation).
#[derive(Debug, Clone)]
pub struct CgroupFs {
    root: PathBuf,
    version: CgroupVersion,
    /// v1: every mounted hierarchy.
    hierarchies: Vec<Hierarchy>,
    /// v1 only: a cgroup2 tree mounted beside the v1 hierarchies (hybrid mode, `unified`):
    /// the runtime may make directories there too; they are removed with the cgroup.
    hybrid_unified: Option<PathBuf>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CgroupError + '_ {
    move |e| CgroupError::io(path, e)
}

fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    debug!(path = %path.display(), value, "writing cgroup file");
    std::fs::write(path, value).map_err(io(path))
}

impl CgroupFs {
    /// The driver over the cgroup filesystem mounted at `root` (`/sys/fs/cgroup`): v2 when
    /// the root is a cgroup2 mount, else v1 over the hierarchies mounted below it.
    pub fn new(root: impl Into<PathBuf>) -> Result<Self, CgroupError> {
        let root = root.into();
        if root.join("cgroup.controllers").is_file() {
            return Ok(Self {
                root,
                version: CgroupVersion::V2,
                hierarchies: Vec::new(),
                hybrid_unified: None,
            });
        }
        let mut hierarchies = Vec::new();
        let mut hybrid_unified = None;
        let mut seen = BTreeSet::new();
        let entries = std::fs::read_dir(&root).map_err(io(&root))?;
        let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        // Real directories before symlinks (`cpu -> cpu,cpuacct`), so that the name of a
        // hierarchy lists all its controllers.
        paths.sort_by_key(|p| (p.is_symlink(), p.clone()));
        for path in paths {
            if !path.join("cgroup.procs").is_file() {
                continue;
            }
            let canonical = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
            if !seen.insert(canonical) {
                continue;
            }
            if path.join("cgroup.controllers").is_file() {
                hybrid_unified = Some(path);
                continue;
            }
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            hierarchies.push(Hierarchy {
                controllers: name.split(',').map(str::to_string).collect(),
                path,
            });
        }
        if hierarchies.is_empty() {
            return Err(CgroupError::Invalid(format!(
                "no cgroup hierarchy found at {}",
                root.display()
            )));
        }
        Ok(Self {
            root,
            version: CgroupVersion::V1,
            hierarchies,
            hybrid_unified,
        })
    }

    /// The cgroup version found at the root.
    pub fn version(&self) -> CgroupVersion {
        self.version
    }

    /// Where the cgroup filesystem is mounted.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of `name` for `controller` (v1), or in the unified tree (v2); `None`
    /// when the controller is not mounted.
    pub fn path(&self, controller: &str, name: &CgroupName) -> Option<PathBuf> {
        let base = match self.version {
            CgroupVersion::V2 => &self.root,
            CgroupVersion::V1 => {
                &self
                    .hierarchies
                    .iter()
                    .find(|h| h.controllers.iter().any(|c| c == controller))?
                    .path
            }
        };
        Some(join(base, name))
    }

    /// Every directory `name` has (or would have), one per hierarchy.
    fn all_dirs(&self, name: &CgroupName) -> Vec<PathBuf> {
        match self.version {
            CgroupVersion::V2 => vec![join(&self.root, name)],
            CgroupVersion::V1 => self
                .hierarchies
                .iter()
                .map(|h| join(&h.path, name))
                .chain(self.hybrid_unified.iter().map(|u| join(u, name)))
                .collect(),
        }
    }

    fn required_dirs(&self, name: &CgroupName) -> Vec<PathBuf> {
        match self.version {
            CgroupVersion::V2 => vec![join(&self.root, name)],
            CgroupVersion::V1 => REQUIRED_V1
                .iter()
                .filter_map(|c| self.path(c, name))
                .collect(),
        }
    }

    fn create_v1(&self, name: &CgroupName) -> Result<(), CgroupError> {
        for h in &self.hierarchies {
            let cpuset = h.controllers.iter().any(|c| c == "cpuset");
            let mut dir = h.path.clone();
            for component in name.components() {
                let parent = dir.clone();
                dir.push(component);
                if dir.is_dir() {
                    continue;
                }
                std::fs::create_dir(&dir)
                    .or_else(|e| {
                        if e.kind() == ErrorKind::AlreadyExists {
                            Ok(())
                        } else {
                            Err(e)
                        }
                    })
                    .map_err(io(&dir))?;
                // A new cpuset cgroup has no CPUs and no memory nodes: no process could join
                // it. Give it its parent's, as the runtime would.
                if cpuset {
                    for file in ["cpuset.cpus", "cpuset.mems"] {
                        inherit(&parent, &dir, file)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn create_v2(&self, name: &CgroupName) -> Result<(), CgroupError> {
        let offered = std::fs::read_to_string(self.root.join("cgroup.controllers"))
            .map_err(io(&self.root.join("cgroup.controllers")))?;
        let offered: BTreeSet<&str> = offered.split_whitespace().collect();
        let wanted: Vec<&str> = V2_CONTROLLERS
            .iter()
            .copied()
            .filter(|c| offered.contains(c))
            .collect();
        let mut dir = self.root.clone();
        for component in name.components() {
            let control = dir.join("cgroup.subtree_control");
            let enabled = std::fs::read_to_string(&control).unwrap_or_default();
            let enabled: BTreeSet<&str> = enabled.split_whitespace().collect();
            let missing: Vec<String> = wanted
                .iter()
                .filter(|c| !enabled.contains(*c))
                .map(|c| format!("+{c}"))
                .collect();
            if !missing.is_empty() {
                write(&control, &missing.join(" "))?;
            }
            dir.push(component);
            if !dir.is_dir() {
                std::fs::create_dir(&dir)
                    .or_else(|e| {
                        if e.kind() == ErrorKind::AlreadyExists {
                            Ok(())
                        } else {
                            Err(e)
                        }
                    })
                    .map_err(io(&dir))?;
            }
        }
        Ok(())
    }

    fn set_v1(&self, name: &CgroupName, r: &ResourceConfig) -> Result<(), CgroupError> {
        if let Some(dir) = self.path("cpu", name) {
            if let Some(shares) = r.cpu_shares {
                write(&dir.join("cpu.shares"), &shares.to_string())?;
            }
            // The period first: the kernel checks a quota against it.
            if let Some(period) = r.cpu_period.filter(|p| *p > 0) {
                write(&dir.join("cpu.cfs_period_us"), &period.to_string())?;
            }
            if let Some(quota) = r.cpu_quota.filter(|q| *q != 0) {
                write(&dir.join("cpu.cfs_quota_us"), &quota.max(-1).to_string())?;
            }
        }
        if let (Some(memory), Some(dir)) = (r.memory.filter(|m| *m != 0), self.path("memory", name))
        {
            write(
                &dir.join("memory.limit_in_bytes"),
                &memory.max(-1).to_string(),
            )?;
        }
        if let (Some(pids), Some(dir)) = (r.pids_limit, self.path("pids", name)) {
            write(&dir.join("pids.max"), &pids_max(pids))?;
        }
        Ok(())
    }

    fn set_v2(&self, name: &CgroupName, r: &ResourceConfig) -> Result<(), CgroupError> {
        let dir = join(&self.root, name);
        if let Some(shares) = r.cpu_shares {
            write(
                &dir.join("cpu.weight"),
                &shares_to_weight(shares).to_string(),
            )?;
        }
        if let Some(max) = v2_cpu_max(r.cpu_quota, r.cpu_period) {
            write(&dir.join("cpu.max"), &max)?;
        }
        if let Some(max) = r.memory.and_then(v2_limit) {
            write(&dir.join("memory.max"), &max)?;
        }
        if let Some(pids) = r.pids_limit {
            write(&dir.join("pids.max"), &pids_max(pids))?;
        }
        Ok(())
    }
}

fn join(base: &Path, name: &CgroupName) -> PathBuf {
    let mut path = base.to_path_buf();
    path.extend(name.components());
    path
}

/// Copy a cpuset file from the parent when the child's is empty.
fn inherit(parent: &Path, child: &Path, file: &str) -> Result<(), CgroupError> {
    let own = std::fs::read_to_string(child.join(file)).unwrap_or_default();
    if !own.trim().is_empty() {
        return Ok(());
    }
    let from = parent.join(file);
    let value = match std::fs::read_to_string(&from) {
        Ok(v) => v,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(CgroupError::io(from, e)),
    };
    if value.trim().is_empty() {
        return Ok(());
    }
    write(&child.join(file), value.trim())
}

/// Remove `dir` and the directories below it, deepest first (a cgroup's files go with its
/// directory; they cannot be deleted one by one).
fn remove_tree(dir: &Path) -> Result<(), CgroupError> {
    let mut stack = vec![dir.to_path_buf()];
    let mut order = Vec::new();
    while let Some(d) = stack.pop() {
        match std::fs::read_dir(&d) {
            Ok(entries) => {
                for entry in entries.flatten() {
                    if entry.file_type().is_ok_and(|t| t.is_dir()) {
                        stack.push(entry.path());
                    }
                }
            }
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(CgroupError::io(d, e)),
        }
        order.push(d);
    }
    for d in order.into_iter().rev() {
        match std::fs::remove_dir(&d) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            // A synthetic tree (tests) holds regular files; a real cgroup directory does not
            // let them be deleted, only the directory itself.
            Err(e) if e.kind() == ErrorKind::DirectoryNotEmpty => {
                if std::fs::read_dir(&d)
                    .map(|entries| entries.flatten().all(|e| e.path().is_file()))
                    .unwrap_or(false)
                {
                    std::fs::remove_dir_all(&d).map_err(io(&d))?;
                } else {
                    return Err(CgroupError::io(d, e));
                }
            }
            Err(e) => return Err(CgroupError::io(d, e)),
        }
    }
    Ok(())
}

impl CgroupManager for CgroupFs {
    fn exists(&self, name: &CgroupName) -> bool {
        self.required_dirs(name).iter().all(|d| d.is_dir())
    }

    fn create(&self, name: &CgroupName, resources: &ResourceConfig) -> Result<(), CgroupError> {
        match self.version {
            CgroupVersion::V1 => self.create_v1(name)?,
            CgroupVersion::V2 => self.create_v2(name)?,
        }
        self.update(name, resources)
    }

    fn update(&self, name: &CgroupName, resources: &ResourceConfig) -> Result<(), CgroupError> {
        match self.version {
            CgroupVersion::V1 => self.set_v1(name, resources),
            CgroupVersion::V2 => self.set_v2(name, resources),
        }
    }

    fn destroy(&self, name: &CgroupName) -> Result<(), CgroupError> {
        if name.components().is_empty() {
            return Err(CgroupError::Invalid(
                "refusing to remove the root cgroup".to_string(),
            ));
        }
        let mut first_error = None;
        for dir in self.all_dirs(name) {
            if let Err(e) = remove_tree(&dir) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn pids(&self, name: &CgroupName) -> Result<Vec<i32>, CgroupError> {
        let mut pids = BTreeSet::new();
        for dir in self.all_dirs(name) {
            let mut stack = vec![dir];
            while let Some(d) = stack.pop() {
                let procs = d.join("cgroup.procs");
                match std::fs::read_to_string(&procs) {
                    Ok(text) => {
                        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
                            let pid = line.parse::<i32>().map_err(|_| {
                                CgroupError::Invalid(format!(
                                    "{}: not a process ID: {line:?}",
                                    procs.display()
                                ))
                            })?;
                            pids.insert(pid);
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => return Err(CgroupError::io(procs, e)),
                }
                if let Ok(entries) = std::fs::read_dir(&d) {
                    stack.extend(
                        entries
                            .flatten()
                            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                            .map(|e| e.path()),
                    );
                }
            }
        }
        Ok(pids.into_iter().collect())
    }

    fn children(&self, name: &CgroupName) -> Result<Vec<String>, CgroupError> {
        let mut children = BTreeSet::new();
        for dir in self.all_dirs(name) {
            match std::fs::read_dir(&dir) {
                Ok(entries) => children.extend(
                    entries
                        .flatten()
                        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                        .map(|e| e.file_name().to_string_lossy().into_owned()),
                ),
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(CgroupError::io(dir, e)),
            }
        }
        Ok(children.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap().trim().to_string()
    }

    /// A synthetic cgroup2 tree: the root's interface files only.
    fn v2_tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("cgroup.subtree_control"), "").unwrap();
        std::fs::write(dir.path().join("cgroup.procs"), "1\n").unwrap();
        dir
    }

    #[test]
    fn v2_creates_enables_controllers_and_writes_v2_files() {
        let tree = v2_tree();
        let fs = CgroupFs::new(tree.path()).unwrap();
        assert_eq!(fs.version(), CgroupVersion::V2);
        let name = CgroupName::from_path("/kubepods/burstable/podabc");
        assert!(!fs.exists(&name));
        let resources = ResourceConfig {
            cpu_shares: Some(1024),
            cpu_quota: Some(50_000),
            cpu_period: Some(100_000),
            memory: Some(64 << 20),
            pids_limit: Some(100),
        };
        fs.create(&name, &resources).unwrap();
        assert!(fs.exists(&name));
        let dir = tree.path().join("kubepods/burstable/podabc");
        assert_eq!(read(&dir.join("cpu.weight")), "39");
        assert_eq!(read(&dir.join("cpu.max")), "50000 100000");
        assert_eq!(read(&dir.join("memory.max")), "67108864");
        assert_eq!(read(&dir.join("pids.max")), "100");
        // Every level above enables the controllers the root offers (io is not asked for).
        for level in ["", "kubepods", "kubepods/burstable"] {
            assert_eq!(
                read(&tree.path().join(level).join("cgroup.subtree_control")),
                "+cpuset +cpu +memory +pids",
                "level {level:?}"
            );
        }
        // Unlimited values and a shares-only update.
        fs.update(
            &name,
            &ResourceConfig {
                cpu_shares: Some(2),
                cpu_quota: Some(-1),
                cpu_period: Some(100_000),
                memory: Some(-1),
                pids_limit: Some(-1),
            },
        )
        .unwrap();
        assert_eq!(read(&dir.join("cpu.weight")), "1");
        assert_eq!(read(&dir.join("cpu.max")), "max 100000");
        assert_eq!(read(&dir.join("memory.max")), "max");
        assert_eq!(read(&dir.join("pids.max")), "max");

        std::fs::write(dir.join("cgroup.procs"), "42\n43\n").unwrap();
        std::fs::create_dir(dir.join("ctr")).unwrap();
        std::fs::write(dir.join("ctr/cgroup.procs"), "44\n").unwrap();
        assert_eq!(fs.pids(&name).unwrap(), vec![42, 43, 44]);
        assert_eq!(
            fs.children(&CgroupName::from_path("/kubepods/burstable"))
                .unwrap(),
            vec!["podabc".to_string()]
        );
        fs.destroy(&name).unwrap();
        assert!(!dir.exists());
        assert!(!fs.exists(&name));
        // Gone already: no error.
        fs.destroy(&name).unwrap();
        assert!(fs.destroy(&CgroupName::root()).is_err());
    }

    #[test]
    fn v1_uses_each_controllers_hierarchy() {
        let tree = tempfile::tempdir().unwrap();
        for h in ["cpu,cpuacct", "cpuset", "memory", "pids", "unified"] {
            let dir = tree.path().join(h);
            std::fs::create_dir(&dir).unwrap();
            std::fs::write(dir.join("cgroup.procs"), "").unwrap();
        }
        std::fs::write(tree.path().join("unified/cgroup.controllers"), "").unwrap();
        std::fs::write(tree.path().join("cpuset/cpuset.cpus"), "0-3\n").unwrap();
        std::fs::write(tree.path().join("cpuset/cpuset.mems"), "0\n").unwrap();
        std::os::unix::fs::symlink("cpu,cpuacct", tree.path().join("cpu")).unwrap();
        let fs = CgroupFs::new(tree.path()).unwrap();
        assert_eq!(fs.version(), CgroupVersion::V1);
        let name = CgroupName::from_path("/kubepods/podxyz");
        fs.create(
            &name,
            &ResourceConfig {
                cpu_shares: Some(512),
                cpu_quota: Some(25_000),
                cpu_period: Some(100_000),
                memory: Some(1 << 30),
                pids_limit: Some(-1),
            },
        )
        .unwrap();
        assert!(fs.exists(&name));
        let cpu = tree.path().join("cpu,cpuacct/kubepods/podxyz");
        assert_eq!(read(&cpu.join("cpu.shares")), "512");
        assert_eq!(read(&cpu.join("cpu.cfs_period_us")), "100000");
        assert_eq!(read(&cpu.join("cpu.cfs_quota_us")), "25000");
        let memory = tree.path().join("memory/kubepods/podxyz");
        assert_eq!(read(&memory.join("memory.limit_in_bytes")), "1073741824");
        assert_eq!(
            read(&tree.path().join("pids/kubepods/podxyz/pids.max")),
            "max"
        );
        // The new cpuset levels got their parent's CPUs and memory nodes.
        for level in ["kubepods", "kubepods/podxyz"] {
            let dir = tree.path().join("cpuset").join(level);
            assert_eq!(read(&dir.join("cpuset.cpus")), "0-3");
            assert_eq!(read(&dir.join("cpuset.mems")), "0");
        }
        // The unified tree of a hybrid host is not created in, but is cleaned.
        assert!(!tree.path().join("unified/kubepods").exists());
        std::fs::create_dir_all(tree.path().join("unified/kubepods/podxyz")).unwrap();
        fs.destroy(&name).unwrap();
        for h in ["cpu,cpuacct", "cpuset", "memory", "pids", "unified"] {
            assert!(
                !tree.path().join(h).join("kubepods/podxyz").exists(),
                "{h} still has the cgroup"
            );
            if h != "unified" {
                assert!(tree.path().join(h).join("kubepods").is_dir());
            }
        }
    }

    #[test]
    fn a_root_without_hierarchies_is_refused() {
        let tree = tempfile::tempdir().unwrap();
        let err = CgroupFs::new(tree.path()).unwrap_err();
        assert!(err.to_string().contains("no cgroup hierarchy"), "{err}");
    }
}
