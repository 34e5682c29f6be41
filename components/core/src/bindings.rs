//! The bindings building block's contracts: output bindings the app invokes, and input
//! bindings that trigger the app.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use crate::pubsub::Subscription;

/// One invocation of an output binding.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InvokeRequest {
    pub operation: String,
    pub data: Bytes,
    pub metadata: HashMap<String, String>,
}

/// What an output binding answered.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InvokeResponse {
    pub data: Bytes,
    pub metadata: HashMap<String, String>,
}

/// How a binding operation failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BindingError {
    #[error("operation {operation:?} is not supported; supported operations: {}", supported.join(", "))]
    UnsupportedOperation {
        operation: String,
        supported: Vec<String>,
    },
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("{0}")]
    Backend(String),
}

/// The contract every output binding implements.
#[async_trait]
pub trait OutputBinding: Send + Sync + 'static {
    /// The operations `invoke` accepts, in Dapr's names (`create`, `get`, `post`, …).
    fn operations(&self) -> Vec<String>;

    async fn invoke(&self, request: InvokeRequest) -> Result<InvokeResponse, BindingError>;
}

/// An event an input binding delivers to the app.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BindingEvent {
    pub data: Bytes,
    pub metadata: HashMap<String, String>,
}

/// Receives an input binding's events; `true` means the app accepted the event.
#[async_trait]
pub trait BindingEventHandler: Send + Sync + 'static {
    async fn handle(&self, event: BindingEvent) -> bool;
}

/// The contract every input binding implements.
#[async_trait]
pub trait InputBinding: Send + Sync + 'static {
    /// Starts producing events; closing the returned subscription stops them.
    async fn read(
        &self,
        handler: Arc<dyn BindingEventHandler>,
    ) -> Result<Subscription, BindingError>;
}

/// Checks an operation against the supported list, with the error every binding gives.
pub fn check_operation(operation: &str, supported: &[&str]) -> Result<(), BindingError> {
    if supported.contains(&operation) {
        Ok(())
    } else {
        Err(BindingError::UnsupportedOperation {
            operation: operation.to_string(),
            supported: supported.iter().map(|name| name.to_string()).collect(),
        })
    }
}

/// What a binding component offers: its input side, its output side, or both.
#[derive(Default, Clone)]
pub struct BindingParts {
    pub input: Option<Arc<dyn InputBinding>>,
    pub output: Option<Arc<dyn OutputBinding>>,
}
