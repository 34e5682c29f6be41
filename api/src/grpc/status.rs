//! The one place API errors become gRPC statuses.

use tonic::{Code, Status};

use crate::error::{ApiError, ErrorKind};

pub fn to_status(error: &ApiError) -> Status {
    let code = match error.kind() {
        ErrorKind::InvalidArgument => Code::InvalidArgument,
        ErrorKind::Conflict => Code::Aborted,
        ErrorKind::NotConfigured => Code::FailedPrecondition,
        ErrorKind::NotSupported | ErrorKind::Unimplemented => Code::Unimplemented,
        ErrorKind::Unauthenticated => Code::Unauthenticated,
        ErrorKind::TooLarge => Code::ResourceExhausted,
        ErrorKind::Internal => Code::Internal,
        ErrorKind::NotReady => Code::Unavailable,
        // Dapr answers unknown pub/subs and empty topics with INVALID_ARGUMENT over gRPC.
        ErrorKind::NotFound => Code::InvalidArgument,
        ErrorKind::Precondition => Code::FailedPrecondition,
        ErrorKind::Invocation(status) => code_of_http_status(status),
    };
    Status::new(code, error.to_string())
}

impl From<ApiError> for Status {
    fn from(error: ApiError) -> Self {
        to_status(&error)
    }
}

/// HTTP status → gRPC code, as Dapr maps an invocation's HTTP answer for gRPC callers.
pub fn code_of_http_status(status: u16) -> Code {
    match status {
        200..=299 => Code::Ok,
        400 => Code::InvalidArgument,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::NotFound,
        409 => Code::Aborted,
        429 => Code::ResourceExhausted,
        499 => Code::Cancelled,
        501 => Code::Unimplemented,
        502 | 503 => Code::Unavailable,
        504 => Code::DeadlineExceeded,
        _ => Code::Unknown,
    }
}
