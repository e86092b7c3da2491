//! An in-memory [`CgroupManager`] for scenario tests: cgroups are entries of a map with the
//! resources applied; every call is logged. It holds no processes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::{CgroupError, CgroupManager, CgroupName, ResourceConfig};

/// One call the fake received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FakeCgroupCall {
    /// `create`.
    Create(CgroupName, ResourceConfig),
    /// `update`.
    Update(CgroupName, ResourceConfig),
    /// `destroy`.
    Destroy(CgroupName),
}

type DestroyHook = Arc<dyn Fn(&CgroupName) + Send + Sync>;

#[derive(Default)]
struct State {
    cgroups: BTreeMap<CgroupName, ResourceConfig>,
    calls: Vec<FakeCgroupCall>,
    fail_create: bool,
}

/// An in-memory cgroup tree (see the module documentation). The root always exists.
#[derive(Default, Clone)]
pub struct FakeCgroupManager {
    state: Arc<Mutex<State>>,
    on_destroy: Option<DestroyHook>,
}

impl std::fmt::Debug for FakeCgroupManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeCgroupManager").finish_non_exhaustive()
    }
}

impl FakeCgroupManager {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Call `hook` with the name of every cgroup as it is destroyed (e.g. to check what the
    /// runtime still holds at that moment).
    pub fn on_destroy(mut self, hook: impl Fn(&CgroupName) + Send + Sync + 'static) -> Self {
        self.on_destroy = Some(Arc::new(hook));
        self
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The resources last applied to `path` (`/kubepods/burstable`), if it exists.
    pub fn get(&self, path: &str) -> Option<ResourceConfig> {
        self.state()
            .cgroups
            .get(&CgroupName::from_path(path))
            .copied()
    }

    /// The paths of every cgroup.
    pub fn paths(&self) -> Vec<String> {
        self.state()
            .cgroups
            .keys()
            .map(CgroupName::to_path)
            .collect()
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<FakeCgroupCall> {
        self.state().calls.clone()
    }

    /// Make every `create` fail (as a cgroup filesystem that refuses a directory would) until
    /// called again with `false`.
    pub fn set_fail_create(&self, fail: bool) {
        self.state().fail_create = fail;
    }

    /// Make a cgroup exist as if someone else (a runtime, an earlier kubelet) had made it.
    pub fn insert(&self, path: &str, resources: ResourceConfig) {
        self.state()
            .cgroups
            .insert(CgroupName::from_path(path), resources);
    }
}

fn merge(into: &mut ResourceConfig, r: &ResourceConfig) {
    into.cpu_shares = r.cpu_shares.or(into.cpu_shares);
    into.cpu_quota = r.cpu_quota.or(into.cpu_quota);
    into.cpu_period = r.cpu_period.or(into.cpu_period);
    into.memory = r.memory.or(into.memory);
    into.pids_limit = r.pids_limit.or(into.pids_limit);
}

fn below(name: &CgroupName, of: &CgroupName) -> bool {
    name.components().starts_with(of.components())
}

impl CgroupManager for FakeCgroupManager {
    fn exists(&self, name: &CgroupName) -> bool {
        name.components().is_empty() || self.state().cgroups.contains_key(name)
    }

    fn create(&self, name: &CgroupName, resources: &ResourceConfig) -> Result<(), CgroupError> {
        let mut state = self.state();
        state
            .calls
            .push(FakeCgroupCall::Create(name.clone(), *resources));
        if state.fail_create {
            return Err(CgroupError::io(
                name.to_path(),
                std::io::Error::from(std::io::ErrorKind::PermissionDenied),
            ));
        }
        let parts = name.components();
        for n in 1..parts.len() {
            let ancestor = CgroupName::from_path(&parts[..n].join("/"));
            state.cgroups.entry(ancestor).or_default();
        }
        let entry = state.cgroups.entry(name.clone()).or_default();
        merge(entry, resources);
        Ok(())
    }

    fn update(&self, name: &CgroupName, resources: &ResourceConfig) -> Result<(), CgroupError> {
        let mut state = self.state();
        state
            .calls
            .push(FakeCgroupCall::Update(name.clone(), *resources));
        match state.cgroups.get_mut(name) {
            Some(entry) => {
                merge(entry, resources);
                Ok(())
            }
            None => Err(CgroupError::io(
                name.to_path(),
                std::io::Error::from(std::io::ErrorKind::NotFound),
            )),
        }
    }

    fn destroy(&self, name: &CgroupName) -> Result<(), CgroupError> {
        if let Some(hook) = &self.on_destroy {
            hook(name);
        }
        let mut state = self.state();
        state.calls.push(FakeCgroupCall::Destroy(name.clone()));
        state.cgroups.retain(|n, _| !below(n, name));
        Ok(())
    }

    /// No processes: the fake runs none (and the kubelet must never signal real ones for it).
    fn pids(&self, _name: &CgroupName) -> Result<Vec<i32>, CgroupError> {
        Ok(Vec::new())
    }

    fn children(&self, name: &CgroupName) -> Result<Vec<String>, CgroupError> {
        let depth = name.components().len() + 1;
        Ok(self
            .state()
            .cgroups
            .keys()
            .filter(|n| n.components().len() == depth && below(n, name))
            .map(|n| n.base().to_string())
            .collect())
    }
}
