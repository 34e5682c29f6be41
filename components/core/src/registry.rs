//! The live set of loaded components, swapped atomically on hot reload.
//!
//! Readers clone an `Arc` to the component they use, so a request in flight keeps the
//! instance it started with even when a reload replaces or removes it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::state::StateStore;
use crate::state::keys::KeyPrefix;

/// What the metadata API reports about a loaded component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentInfo {
    pub name: String,
    pub component_type: String,
    pub version: String,
    pub capabilities: Vec<String>,
    /// The file it was declared in; `None` for the embedded defaults.
    pub source: Option<PathBuf>,
}

/// A loaded state store with what the API layer needs to use it.
pub struct RegisteredStateStore {
    pub store: Arc<dyn StateStore>,
    pub info: ComponentInfo,
    pub key_prefix: KeyPrefix,
}

#[derive(Default, Clone)]
struct Snapshot {
    state_stores: BTreeMap<String, Arc<RegisteredStateStore>>,
}

/// All loaded components. Cheap to read from many tasks; writes come from the loader only.
#[derive(Default)]
pub struct ComponentRegistry {
    snapshot: ArcSwap<Snapshot>,
}

impl ComponentRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn state_store(&self, name: &str) -> Option<Arc<RegisteredStateStore>> {
        self.snapshot.load().state_stores.get(name).cloned()
    }

    pub fn has_state_stores(&self) -> bool {
        !self.snapshot.load().state_stores.is_empty()
    }

    /// Every loaded component, sorted by name.
    pub fn components(&self) -> Vec<ComponentInfo> {
        self.snapshot
            .load()
            .state_stores
            .values()
            .map(|registered| registered.info.clone())
            .collect()
    }

    /// Adds or replaces a state store; returns the one it replaced.
    pub fn put_state_store(
        &self,
        registered: RegisteredStateStore,
    ) -> Option<Arc<RegisteredStateStore>> {
        let registered = Arc::new(registered);
        let mut replaced = None;
        self.snapshot.rcu(|current| {
            let mut next = Snapshot::clone(current);
            replaced = next
                .state_stores
                .insert(registered.info.name.clone(), Arc::clone(&registered));
            next
        });
        replaced
    }

    /// Removes a component by name; returns it if it was loaded.
    pub fn remove(&self, name: &str) -> Option<Arc<RegisteredStateStore>> {
        let mut removed = None;
        self.snapshot.rcu(|current| {
            let mut next = Snapshot::clone(current);
            removed = next.state_stores.remove(name);
            next
        });
        removed
    }
}
