//! Health, metadata and shutdown routes, and answers for building blocks not built yet.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, Uri};

use crate::context::ApiContext;
use crate::error::ApiError;
use crate::metadata::MetadataView;

pub async fn healthz(State(context): State<ApiContext>) -> Result<StatusCode, ApiError> {
    if context.is_app_ready() {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotReady("dapr is not ready: waiting for the app"))
    }
}

pub async fn healthz_outbound(State(context): State<ApiContext>) -> Result<StatusCode, ApiError> {
    if context.is_ready() {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotReady("dapr is not ready"))
    }
}

pub async fn metadata(State(context): State<ApiContext>) -> Json<MetadataView> {
    Json(MetadataView::of(&context))
}

pub async fn shutdown(State(context): State<ApiContext>) -> StatusCode {
    tracing::info!("shutdown requested through the HTTP API");
    context.shutdown.cancel();
    StatusCode::NO_CONTENT
}

/// Building blocks a Dapr app may call that Outrigger does not serve yet.
pub async fn not_built_yet(uri: Uri) -> ApiError {
    ApiError::Unimplemented {
        method: format!("HTTP API {}", uri.path()),
    }
}

pub async fn not_found(uri: Uri) -> (StatusCode, Json<serde_json::Value>) {
    (
        StatusCode::NOT_FOUND,
        Json(serde_json::json!({
            "errorCode": "ERR_NOT_FOUND",
            "message": format!("no route for {}", uri.path()),
        })),
    )
}
