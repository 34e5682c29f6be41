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
    };
    Status::new(code, error.to_string())
}

impl From<ApiError> for Status {
    fn from(error: ApiError) -> Self {
        to_status(&error)
    }
}
