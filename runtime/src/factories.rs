//! The component types this build of Outrigger can create, by Dapr `spec.type`.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use outrigger_bindings::{CronBinding, HttpBinding, RedisBinding};
use outrigger_components::bindings::BindingParts;
use outrigger_components::pubsub::PubSub;
use outrigger_components::state::StateStore;
use outrigger_components::{ComponentMetadata, InitError};
use outrigger_kafka::{KafkaBinding, KafkaPubSub};
use outrigger_pubsub_memory::InMemoryPubSub;
use outrigger_pubsub_redis::RedisStreamsPubSub;
use outrigger_state_memory::InMemoryStateStore;
use outrigger_state_redis::RedisStateStore;

/// Creates a state store from its resolved metadata.
pub type StateStoreFactory =
    fn(ComponentMetadata) -> BoxFuture<'static, Result<Arc<dyn StateStore>, InitError>>;

/// Creates a pub/sub component from its resolved metadata.
pub type PubSubFactory =
    fn(ComponentMetadata) -> BoxFuture<'static, Result<Arc<dyn PubSub>, InitError>>;

/// Creates a binding component from its resolved metadata.
pub type BindingFactory =
    fn(ComponentMetadata) -> BoxFuture<'static, Result<BindingParts, InitError>>;

/// A factory for one component type.
#[derive(Clone, Copy)]
pub enum Factory {
    State(StateStoreFactory),
    PubSub(PubSubFactory),
    Binding(BindingFactory),
}

/// Factories by component type. Built-in types are registered by [`ComponentFactories::builtin`].
#[derive(Clone)]
pub struct ComponentFactories {
    state: BTreeMap<&'static str, StateStoreFactory>,
    pubsub: BTreeMap<&'static str, PubSubFactory>,
    bindings: BTreeMap<&'static str, BindingFactory>,
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
        let mut pubsub: BTreeMap<&'static str, PubSubFactory> = BTreeMap::new();
        pubsub.insert("pubsub.in-memory", |_metadata| {
            Box::pin(async { Ok(Arc::new(InMemoryPubSub::new()) as Arc<dyn PubSub>) })
        });
        pubsub.insert("pubsub.redis", |metadata| {
            Box::pin(async move {
                RedisStreamsPubSub::from_metadata(&metadata)
                    .await
                    .map(|pubsub| Arc::new(pubsub) as Arc<dyn PubSub>)
            })
        });
        let mut bindings: BTreeMap<&'static str, BindingFactory> = BTreeMap::new();
        bindings.insert("bindings.cron", |metadata| {
            Box::pin(async move {
                let binding = CronBinding::from_metadata(&metadata)?;
                Ok(BindingParts {
                    input: Some(Arc::new(binding)),
                    output: None,
                })
            })
        });
        bindings.insert("bindings.http", |metadata| {
            Box::pin(async move {
                let binding = HttpBinding::from_metadata(&metadata)?;
                Ok(BindingParts {
                    input: None,
                    output: Some(Arc::new(binding)),
                })
            })
        });
        bindings.insert("bindings.redis", |metadata| {
            Box::pin(async move {
                let binding = RedisBinding::from_metadata(&metadata).await?;
                Ok(BindingParts {
                    input: None,
                    output: Some(Arc::new(binding)),
                })
            })
        });
        pubsub.insert("pubsub.kafka", |metadata| {
            Box::pin(async move {
                // Connects, as Dapr's init does: an unreachable broker or refused credentials
                // fail the component (and start-up, unless `ignoreErrors`).
                Ok(Arc::new(KafkaPubSub::connect(&metadata).await?) as Arc<dyn PubSub>)
            })
        });
        bindings.insert("bindings.kafka", |metadata| {
            Box::pin(async move {
                let binding = Arc::new(KafkaBinding::connect(&metadata).await?);
                Ok(BindingParts {
                    input: binding.has_input().then(|| Arc::clone(&binding) as _),
                    output: binding.has_output().then_some(binding as _),
                })
            })
        });
        Self {
            state,
            pubsub,
            bindings,
        }
    }

    /// The factory for a Dapr `spec.type`.
    pub fn get(&self, component_type: &str) -> Option<Factory> {
        self.state
            .get(component_type)
            .map(|factory| Factory::State(*factory))
            .or_else(|| {
                self.pubsub
                    .get(component_type)
                    .map(|factory| Factory::PubSub(*factory))
            })
            .or_else(|| {
                self.bindings
                    .get(component_type)
                    .map(|factory| Factory::Binding(*factory))
            })
    }

    /// Every supported `spec.type`, sorted.
    pub fn types(&self) -> Vec<&'static str> {
        let mut types: Vec<_> = self
            .state
            .keys()
            .chain(self.pubsub.keys())
            .chain(self.bindings.keys())
            .copied()
            .collect();
        types.sort_unstable();
        types
    }
}
