//! The component types this build of Outrigger can create, by Dapr `spec.type`.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use outrigger_components::state::StateStore;
use outrigger_components::{ComponentMetadata, InitError};
use outrigger_state_memory::InMemoryStateStore;
use outrigger_state_redis::RedisStateStore;

/// Creates a state store from its resolved metadata.
pub type StateStoreFactory =
    fn(ComponentMetadata) -> BoxFuture<'static, Result<Arc<dyn StateStore>, InitError>>;

/// Factories by component type. Built-in types are registered by [`ComponentFactories::builtin`].
#[derive(Clone)]
pub struct ComponentFactories {
    state: BTreeMap<&'static str, StateStoreFactory>,
}

impl ComponentFactories {
    pub fn builtin() -> Self {
        let mut state: BTreeMap<&'static str, StateStoreFactory> = BTreeMap::new();
        state.insert("state.in-memory", |_metadata| {
            Box::pin(async { Ok(Arc::new(InMemoryStateStore::new()) as Arc<dyn StateStore>) })
        });
        state.insert("state.redis", |metadata| {
            Box::pin(async move {
                RedisStateStore::from_metadata(&metadata)
                    .await
                    .map(|store| Arc::new(store) as Arc<dyn StateStore>)
            })
        });
        Self { state }
    }

    pub fn state_store(&self, component_type: &str) -> Option<StateStoreFactory> {
        self.state.get(component_type).copied()
    }

    pub fn state_store_types(&self) -> Vec<&'static str> {
        self.state.keys().copied().collect()
    }
}
