//! What every API handler shares: the registry, the sidecar's identity, token and limits.

use std::sync::Arc;

use outrigger_components::ComponentRegistry;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::bindings::BindingsApi;
use crate::invoke::InvokeApi;
use crate::pubsub::PubSubApi;
use crate::resiliency::Resiliency;
use crate::state::StateApi;

/// Facts about this sidecar that the metadata API reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SidecarInfo {
    pub app_id: String,
    pub namespace: Option<String>,
    pub http_port: u16,
    pub grpc_port: u16,
    pub app_port: Option<u16>,
    pub app_protocol: String,
    pub runtime_version: String,
}

/// Shared by the gRPC and HTTP servers; one reference count to clone (handlers and
/// middleware clone it per request).
#[derive(Clone)]
pub struct ApiContext(Arc<ApiContextParts>);

impl std::ops::Deref for ApiContext {
    type Target = ApiContextParts;

    fn deref(&self) -> &ApiContextParts {
        &self.0
    }
}

/// What an [`ApiContext`] holds.
pub struct ApiContextParts {
    pub state: StateApi,
    pub pubsub: PubSubApi,
    pub bindings: BindingsApi,
    pub invoke: InvokeApi,
    pub registry: Arc<ComponentRegistry>,
    pub sidecar: Arc<SidecarInfo>,
    /// `DAPR_API_TOKEN`: when set, every call but the health checks must carry it.
    pub api_token: Option<Arc<str>>,
    pub max_body_size: usize,
    /// True once start-up tasks (component loading, listeners) are done.
    pub ready: watch::Receiver<bool>,
    /// True once the app answers on `--app-port` (at once without one).
    pub app_ready: watch::Receiver<bool>,
    /// Cancelled to ask the whole sidecar to shut down (`/v1.0/shutdown`, gRPC `Shutdown`).
    pub shutdown: CancellationToken,
}

/// The sidecar's readiness signals and its shutdown switch.
#[derive(Clone)]
pub struct Lifecycle {
    pub ready: watch::Receiver<bool>,
    pub app_ready: watch::Receiver<bool>,
    pub shutdown: CancellationToken,
}

impl ApiContext {
    pub fn new(
        registry: Arc<ComponentRegistry>,
        sidecar: SidecarInfo,
        api_token: Option<String>,
        max_body_size: usize,
        lifecycle: Lifecycle,
        resiliency: Arc<Resiliency>,
        invoker: Arc<outrigger_mesh::invoke::Invoker>,
    ) -> Self {
        let Lifecycle {
            ready,
            app_ready,
            shutdown,
        } = lifecycle;
        Self(Arc::new(ApiContextParts {
            pubsub: PubSubApi::new(
                Arc::clone(&registry),
                &sidecar.app_id,
                Arc::clone(&resiliency),
            ),
            bindings: BindingsApi::new(Arc::clone(&registry), Arc::clone(&resiliency)),
            invoke: InvokeApi::new(invoker, &sidecar.app_id),
            state: StateApi::new(Arc::clone(&registry), resiliency),
            registry,
            sidecar: Arc::new(sidecar),
            api_token: api_token.filter(|token| !token.is_empty()).map(Arc::from),
            max_body_size,
            ready,
            app_ready,
            shutdown,
        }))
    }

    /// `/v1.0/healthz/outbound`: the sidecar's own APIs can serve.
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// `/v1.0/healthz`: the sidecar can serve and the app is up.
    pub fn is_app_ready(&self) -> bool {
        self.is_ready() && *self.app_ready.borrow()
    }

    /// Constant-time comparison of a presented token, so timing does not leak the token.
    pub fn token_matches(&self, presented: Option<&[u8]>) -> bool {
        let Some(expected) = &self.api_token else {
            return true;
        };
        let Some(presented) = presented else {
            return false;
        };
        let expected = expected.as_bytes();
        presented.len() == expected.len()
            && presented
                .iter()
                .zip(expected)
                .fold(0u8, |acc, (left, right)| acc | (left ^ right))
                == 0
    }
}
