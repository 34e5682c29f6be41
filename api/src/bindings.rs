//! The bindings building block as both servers see it: invoking output bindings.

use std::sync::Arc;

use outrigger_components::ComponentRegistry;
use outrigger_components::bindings::{BindingError, InvokeRequest, InvokeResponse};

use crate::error::ApiError;
use crate::resiliency::{PolicyError, Resiliency};

#[derive(Clone)]
pub struct BindingsApi {
    registry: Arc<ComponentRegistry>,
    resiliency: Arc<Resiliency>,
}

impl BindingsApi {
    pub fn new(registry: Arc<ComponentRegistry>, resiliency: Arc<Resiliency>) -> Self {
        Self {
            registry,
            resiliency,
        }
    }

    pub async fn invoke(
        &self,
        name: &str,
        request: InvokeRequest,
    ) -> Result<InvokeResponse, ApiError> {
        let output = self
            .registry
            .binding(name)
            .and_then(|registered| registered.output.clone())
            .ok_or_else(|| ApiError::BindingNotFound {
                name: name.to_string(),
            })?;
        if request.operation.is_empty() {
            return Err(ApiError::malformed(format!(
                "operation is required; binding {name} supports: {}",
                output.operations().join(", ")
            )));
        }
        let policy = self.resiliency.outbound(name);
        let result = policy
            .run(
                |error| matches!(error, BindingError::Backend(_)),
                || output.invoke(request.clone()),
            )
            .await
            .map_err(|error| match error {
                PolicyError::Call(error) => error,
                other => BindingError::Backend(other.to_string()),
            });
        result.map_err(|error| match error {
            BindingError::UnsupportedOperation { .. } | BindingError::InvalidRequest(_) => {
                ApiError::BindingRequest {
                    name: name.to_string(),
                    cause: error.to_string(),
                }
            }
            BindingError::Backend(_) => ApiError::BindingFailed {
                name: name.to_string(),
                cause: error.to_string(),
            },
        })
    }
}
