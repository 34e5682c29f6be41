//! Outrigger's component model: Dapr Component YAML, typed metadata, building-block contracts and the live registry.

pub mod bindings;
pub mod definition;
pub mod metadata;
pub mod pubsub;
pub mod registry;
pub mod state;

pub use definition::{ComponentDefinition, DefinitionError, parse_component_file};
pub use metadata::{ComponentMetadata, MetadataError};
pub use registry::{
    ComponentInfo, ComponentRegistry, RegisteredBinding, RegisteredComponent, RegisteredPubSub,
    RegisteredStateStore,
};

/// Why a component could not be created.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    #[error("{0}")]
    Connect(String),
    #[error("{0} is not supported yet")]
    Unsupported(String),
}
