//! The one place API errors become HTTP responses: Dapr's `{"errorCode","message"}` JSON.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::error::{ApiError, ErrorKind};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ErrorBody<'a> {
    error_code: &'a str,
    message: String,
}

pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::InvalidArgument => StatusCode::BAD_REQUEST,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::NotConfigured
        | ErrorKind::NotSupported
        | ErrorKind::Internal
        | ErrorKind::NotReady => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Precondition => StatusCode::BAD_REQUEST,
        ErrorKind::Invocation(status) => {
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = status_of(self.kind());
        if status.is_server_error() {
            tracing::warn!(error_code = self.error_code(), "{self}");
        } else {
            tracing::debug!(error_code = self.error_code(), "{self}");
        }
        let body = ErrorBody {
            error_code: self.error_code(),
            message: self.to_string(),
        };
        (status, Json(body)).into_response()
    }
}
