//! Dapr-compatible building-block API servers (gRPC and HTTP) over the component registry.

pub mod context;
pub mod error;
pub mod grpc;
pub mod http;
pub mod metadata;
pub mod state;

pub use context::{ApiContext, SidecarInfo};
pub use error::{ApiError, ErrorKind};
