//! The live set of loaded components, swapped atomically on hot reload.
//!
//! Readers clone an `Arc` to the component they use, so a request in flight keeps the
//! instance it started with even when a reload replaces or removes it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::watch;

use crate::bindings::{InputBinding, OutputBinding};
use crate::pubsub::PubSub;
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

/// A loaded pub/sub component.
pub struct RegisteredPubSub {
    pub pubsub: Arc<dyn PubSub>,
    pub info: ComponentInfo,
}

/// A loaded binding; one component may be an input, an output, or both.
pub struct RegisteredBinding {
    pub input: Option<Arc<dyn InputBinding>>,
    pub output: Option<Arc<dyn OutputBinding>>,
    pub info: ComponentInfo,
}

/// A loaded component of any building block.
pub enum RegisteredComponent {
    State(RegisteredStateStore),
    PubSub(RegisteredPubSub),
    Binding(RegisteredBinding),
}

impl RegisteredComponent {
    pub fn info(&self) -> &ComponentInfo {
        match self {
            Self::State(registered) => &registered.info,
            Self::PubSub(registered) => &registered.info,
            Self::Binding(registered) => &registered.info,
        }
    }
}

#[derive(Default, Clone)]
struct Snapshot {
    state_stores: BTreeMap<String, Arc<RegisteredStateStore>>,
    pubsubs: BTreeMap<String, Arc<RegisteredPubSub>>,
    bindings: BTreeMap<String, Arc<RegisteredBinding>>,
}

/// All loaded components. Cheap to read from many tasks; writes come from the loader only.
pub struct ComponentRegistry {
    snapshot: ArcSwap<Snapshot>,
    /// Bumped on every change, so that subscription management can follow reloads.
    generation: watch::Sender<u64>,
}

impl Default for ComponentRegistry {
    fn default() -> Self {
        Self {
            snapshot: ArcSwap::default(),
            generation: watch::Sender::new(0),
        }
    }
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

    pub fn pubsub(&self, name: &str) -> Option<Arc<RegisteredPubSub>> {
        self.snapshot.load().pubsubs.get(name).cloned()
    }

    pub fn has_pubsubs(&self) -> bool {
        !self.snapshot.load().pubsubs.is_empty()
    }

    /// Every loaded pub/sub component, by name.
    pub fn pubsubs(&self) -> Vec<Arc<RegisteredPubSub>> {
        self.snapshot.load().pubsubs.values().cloned().collect()
    }

    pub fn binding(&self, name: &str) -> Option<Arc<RegisteredBinding>> {
        self.snapshot.load().bindings.get(name).cloned()
    }

    /// Every loaded binding, by name.
    pub fn bindings(&self) -> Vec<Arc<RegisteredBinding>> {
        self.snapshot.load().bindings.values().cloned().collect()
    }

    /// Every loaded component, sorted by name.
    pub fn components(&self) -> Vec<ComponentInfo> {
        let snapshot = self.snapshot.load();
        let mut infos: Vec<ComponentInfo> = snapshot
            .state_stores
            .values()
            .map(|registered| registered.info.clone())
            .chain(
                snapshot
                    .pubsubs
                    .values()
                    .map(|registered| registered.info.clone()),
            )
            .chain(
                snapshot
                    .bindings
                    .values()
                    .map(|registered| registered.info.clone()),
            )
            .collect();
        infos.sort_by(|left, right| left.name.cmp(&right.name));
        infos
    }

    /// A receiver that changes whenever components are added, replaced or removed.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Adds or replaces a component (a name names one component across building blocks).
    pub fn put(&self, component: RegisteredComponent) {
        let name = component.info().name.clone();
        let component = match component {
            RegisteredComponent::State(registered) => Entry::State(Arc::new(registered)),
            RegisteredComponent::PubSub(registered) => Entry::PubSub(Arc::new(registered)),
            RegisteredComponent::Binding(registered) => Entry::Binding(Arc::new(registered)),
        };
        self.snapshot.rcu(|current| {
            let mut next = Snapshot::clone(current);
            next.state_stores.remove(&name);
            next.pubsubs.remove(&name);
            next.bindings.remove(&name);
            match &component {
                Entry::State(registered) => {
                    next.state_stores
                        .insert(name.clone(), Arc::clone(registered));
                }
                Entry::PubSub(registered) => {
                    next.pubsubs.insert(name.clone(), Arc::clone(registered));
                }
                Entry::Binding(registered) => {
                    next.bindings.insert(name.clone(), Arc::clone(registered));
                }
            }
            next
        });
        self.generation.send_modify(|generation| *generation += 1);
    }

    /// Adds or replaces a state store.
    pub fn put_state_store(&self, registered: RegisteredStateStore) {
        self.put(RegisteredComponent::State(registered));
    }

    /// Removes a component by name; returns whether it was loaded.
    pub fn remove(&self, name: &str) -> bool {
        let mut removed = false;
        self.snapshot.rcu(|current| {
            let mut next = Snapshot::clone(current);
            removed = next.state_stores.remove(name).is_some()
                | next.pubsubs.remove(name).is_some()
                | next.bindings.remove(name).is_some();
            next
        });
        if removed {
            self.generation.send_modify(|generation| *generation += 1);
        }
        removed
    }
}

enum Entry {
    State(Arc<RegisteredStateStore>),
    PubSub(Arc<RegisteredPubSub>),
    Binding(Arc<RegisteredBinding>),
}
