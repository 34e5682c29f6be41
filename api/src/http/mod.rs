//! The HTTP API: Dapr's `/v1.0/...` routes on axum.

mod bindings;
mod body;
mod error;
mod invoke;
mod publish;
mod state;
mod system;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::Method;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};

pub use self::error::status_of;
use crate::context::ApiContext;
use crate::error::ApiError;

/// The full HTTP API router over the shared context.
pub fn router(context: ApiContext) -> Router {
    let unbuilt = any(system::not_built_yet);
    let router = Router::new()
        .route("/v1.0/healthz", get(system::healthz))
        .route("/v1.0/healthz/outbound", get(system::healthz_outbound))
        .route("/v1.0/metadata", get(system::metadata))
        .route("/v1.0/shutdown", post(system::shutdown))
        .route("/v1.0/state/{store}", post(state::save))
        .route("/v1.0/state/{store}/bulk", post(state::bulk_get))
        .route("/v1.0/state/{store}/transaction", post(state::transaction))
        .route(
            "/v1.0/state/{store}/{key}",
            get(state::get).delete(state::delete),
        )
        .route("/v1.0/publish/{pubsub}/{*topic}", post(publish::publish))
        .route(
            "/v1.0-alpha1/publish/bulk/{pubsub}/{*topic}",
            post(publish::bulk_publish),
        )
        .route(
            "/v1.0/publish/bulk/{pubsub}/{*topic}",
            post(publish::bulk_publish),
        )
        .route("/v1.0/bindings/{name}", post(bindings::invoke))
        .route("/v1.0/invoke/{*rest}", any(invoke::invoke))
        .route("/v1.0/secrets/{*rest}", unbuilt.clone())
        .route("/v1.0/actors/{*rest}", unbuilt.clone())
        .route("/v1.0-alpha1/{*rest}", unbuilt.clone())
        .route("/v1.0-beta1/{*rest}", unbuilt)
        .fallback(invoke::proxy_or_not_found);
    // Without a token there is nothing to check, and no middleware to pass on every request.
    let router = if context.api_token.is_some() {
        router.layer(middleware::from_fn_with_state(
            context.clone(),
            require_token,
        ))
    } else {
        router
    };
    router
        // Bodies are read under --max-body-size by the handlers, which answer 413 in Dapr's shape.
        .layer(DefaultBodyLimit::disable())
        .with_state(context)
}

/// Enforces `dapr-api-token` on every route but the two health checks.
async fn require_token(
    State(context): State<ApiContext>,
    request: Request,
    next: Next,
) -> Response {
    let exempt = request.method() == Method::GET
        && matches!(
            request.uri().path().trim_end_matches('/'),
            "/v1.0/healthz" | "/v1.0/healthz/outbound"
        );
    let presented = request
        .headers()
        .get("dapr-api-token")
        .map(|value| value.as_bytes());
    if exempt || context.token_matches(presented) {
        next.run(request).await
    } else {
        ApiError::Unauthenticated.into_response()
    }
}
