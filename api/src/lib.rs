//! Dapr-compatible building-block API servers (gRPC and HTTP) over the component registry.

pub mod bindings;
pub mod cloudevents;
pub mod context;
pub mod deadletter;
pub mod error;
pub mod grpc;
pub mod http;
pub mod invoke;
pub mod metadata;
pub mod pubsub;
pub mod resiliency;
pub mod state;

pub use context::{ApiContext, Lifecycle, SidecarInfo};
pub use error::{ApiError, ErrorKind};
