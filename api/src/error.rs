//! The API's typed errors and their protocol-neutral classification.
//!
//! Each error knows its Dapr error code, its message and its [`ErrorKind`]; the gRPC and HTTP
//! servers each turn an [`ErrorKind`] into a wire status in exactly one place
//! (`grpc::status` and `http::error`).

use outrigger_components::state::StateError;

/// The state operation that failed, which picks Dapr's error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateOperation {
    Get,
    BulkGet,
    Save,
    Delete,
    BulkDelete,
    Transaction,
}

impl StateOperation {
    fn error_code(self) -> &'static str {
        match self {
            Self::Get => "ERR_STATE_GET",
            Self::BulkGet => "ERR_STATE_BULK_GET",
            Self::Save => "ERR_STATE_SAVE",
            Self::Delete => "ERR_STATE_DELETE",
            Self::BulkDelete => "ERR_STATE_BULK_DELETE",
            Self::Transaction => "ERR_STATE_TRANSACTION",
        }
    }
}

/// Protocol-neutral class of an error; each server maps it to its own status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is wrong (400 / INVALID_ARGUMENT).
    InvalidArgument,
    /// The request conflicts with the stored version (409 / ABORTED).
    Conflict,
    /// Nothing is configured to serve it (500 / FAILED_PRECONDITION).
    NotConfigured,
    /// The component cannot do this (500 / UNIMPLEMENTED).
    NotSupported,
    /// Missing or wrong API token (401 / UNAUTHENTICATED).
    Unauthenticated,
    /// The body is over the configured limit (413 / RESOURCE_EXHAUSTED).
    TooLarge,
    /// The API itself is not built yet (501 / UNIMPLEMENTED).
    Unimplemented,
    /// The backend failed (500 / INTERNAL).
    Internal,
    /// The sidecar is not ready to serve (500 / UNAVAILABLE).
    NotReady,
    /// The named target does not exist (404 / INVALID_ARGUMENT, as Dapr answers).
    NotFound,
    /// The building block has no component at all (400 / FAILED_PRECONDITION).
    Precondition,
    /// Service invocation failed in the mesh; carries the HTTP status the mesh chose
    /// (Envoy's: 503 no healthy upstream or overflow, 504 timeout, …).
    Invocation(u16),
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("state store {name} is not configured")]
    StateStoresNotConfigured { name: String },
    #[error("state store {name} is not found")]
    StateStoreNotFound { name: String },
    #[error("{message}")]
    MalformedRequest { message: String },
    #[error("input key/keyPrefix '{key}' can't contain '||'")]
    IllegalKey { key: String },
    #[error(
        "request body of {size} bytes is larger than the limit of {limit} bytes (--max-body-size)"
    )]
    BodyTooLarge { size: usize, limit: usize },
    #[error("invalid api token")]
    Unauthenticated,
    #[error("state store {store} doesn't support {feature}")]
    StateNotSupported {
        store: String,
        feature: &'static str,
    },
    #[error(
        "operation type {operation} not supported; supported operation types are upsert and delete"
    )]
    UnsupportedTransactionOperation { operation: String },
    #[error("{}", state_message(*.operation, .store, .key.as_deref(), .source))]
    State {
        operation: StateOperation,
        store: String,
        key: Option<String>,
        source: StateError,
    },
    #[error("{method} is not implemented by Outrigger yet")]
    Unimplemented { method: String },
    #[error("{0}")]
    NotReady(&'static str),
    #[error("pubsub {name} is not found")]
    PubSubNotFound { name: String },
    #[error("pubsub {name} is not configured: no pub/sub component is loaded")]
    PubSubNotConfigured { name: String },
    #[error("topic is empty in pubsub {pubsub}")]
    TopicEmpty { pubsub: String },
    #[error("error when publishing to topic {topic} in pubsub {pubsub}: {cause}")]
    PublishFailed {
        pubsub: String,
        topic: String,
        cause: String,
    },
    #[error("error when building the cloud event: {message}")]
    CloudEventMalformed { message: String },
    #[error("{message}")]
    MalformedEvents { message: String },
    #[error("output binding {name} is not found")]
    BindingNotFound { name: String },
    #[error("error invoking output binding {name}: {cause}")]
    BindingRequest { name: String, cause: String },
    #[error("error invoking output binding {name}: {cause}")]
    BindingFailed { name: String, cause: String },
    /// The mesh could not deliver an invocation; `flag` is Envoy's response flag.
    #[error("{message} ({flag})")]
    Invoke {
        status: u16,
        flag: &'static str,
        message: String,
    },
}

fn state_message(
    operation: StateOperation,
    store: &str,
    key: Option<&str>,
    source: &StateError,
) -> String {
    let cause = match source {
        StateError::EtagMismatch { .. } => {
            format!("possible etag mismatch. error from state store: {source}")
        }
        StateError::InvalidEtag { .. } => format!("invalid etag value: {source}"),
        other => other.to_string(),
    };
    let key = key.unwrap_or_default();
    match operation {
        StateOperation::Get => format!("fail to get {key} from state store {store}: {cause}"),
        StateOperation::BulkGet => {
            format!("failed getting state from state store {store}: {cause}")
        }
        StateOperation::Save => format!("failed saving state in state store {store}: {cause}"),
        StateOperation::Delete => {
            format!("failed deleting state with key {key} from state store {store}: {cause}")
        }
        StateOperation::BulkDelete => {
            format!("failed deleting state in state store {store}: {cause}")
        }
        StateOperation::Transaction => {
            format!("error while executing state transaction in state store {store}: {cause}")
        }
    }
}

impl ApiError {
    pub fn malformed(message: impl Into<String>) -> Self {
        Self::MalformedRequest {
            message: message.into(),
        }
    }

    /// A bulk publish body whose entries cannot be turned into events.
    pub fn malformed_events(message: impl Into<String>) -> Self {
        Self::MalformedEvents {
            message: message.into(),
        }
    }

    pub fn state(
        operation: StateOperation,
        store: &str,
        key: Option<&str>,
        source: StateError,
    ) -> Self {
        match source {
            StateError::NotSupported { feature } => Self::StateNotSupported {
                store: store.to_string(),
                feature,
            },
            source => Self::State {
                operation,
                store: store.to_string(),
                key: key.map(str::to_string),
                source,
            },
        }
    }

    /// Dapr's `errorCode` for this error.
    pub fn error_code(&self) -> &'static str {
        match self {
            Self::StateStoresNotConfigured { .. } => "ERR_STATE_STORE_NOT_CONFIGURED",
            Self::StateStoreNotFound { .. } => "ERR_STATE_STORE_NOT_FOUND",
            Self::MalformedRequest { .. } | Self::IllegalKey { .. } => "ERR_MALFORMED_REQUEST",
            Self::BodyTooLarge { .. } => "ERR_BODY_TOO_LARGE",
            Self::Unauthenticated => "ERR_API_TOKEN_INVALID",
            Self::StateNotSupported { .. } => "ERR_STATE_STORE_NOT_SUPPORTED",
            Self::UnsupportedTransactionOperation { .. } => "ERR_NOT_SUPPORTED_STATE_OPERATION",
            Self::State { operation, .. } => operation.error_code(),
            Self::Unimplemented { .. } => "ERR_NOT_IMPLEMENTED",
            Self::NotReady(_) => "ERR_HEALTH_NOT_READY",
            Self::PubSubNotFound { .. } => "ERR_PUBSUB_NOT_FOUND",
            Self::PubSubNotConfigured { .. } => "ERR_PUBSUB_NOT_CONFIGURED",
            Self::TopicEmpty { .. } => "ERR_TOPIC_NAME_EMPTY",
            Self::PublishFailed { .. } => "ERR_PUBSUB_PUBLISH_MESSAGE",
            Self::CloudEventMalformed { .. } => "ERR_PUBSUB_CLOUD_EVENTS_SER",
            Self::MalformedEvents { .. } => "ERR_PUBSUB_EVENTS_SER",
            Self::BindingNotFound { .. } => "ERR_BINDING_NOT_FOUND",
            Self::BindingRequest { .. } | Self::BindingFailed { .. } => "ERR_INVOKE_OUTPUT_BINDING",
            Self::Invoke { .. } => "ERR_DIRECT_INVOKE",
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::StateStoresNotConfigured { .. } => ErrorKind::NotConfigured,
            Self::StateStoreNotFound { .. }
            | Self::MalformedRequest { .. }
            | Self::IllegalKey { .. }
            | Self::UnsupportedTransactionOperation { .. } => ErrorKind::InvalidArgument,
            Self::BodyTooLarge { .. } => ErrorKind::TooLarge,
            Self::Unauthenticated => ErrorKind::Unauthenticated,
            Self::StateNotSupported { .. } => ErrorKind::NotSupported,
            Self::Unimplemented { .. } => ErrorKind::Unimplemented,
            Self::NotReady(_) => ErrorKind::NotReady,
            Self::PubSubNotFound { .. } | Self::TopicEmpty { .. } => ErrorKind::NotFound,
            Self::PubSubNotConfigured { .. } => ErrorKind::Precondition,
            Self::PublishFailed { .. } | Self::BindingFailed { .. } => ErrorKind::Internal,
            Self::BindingNotFound { .. } => ErrorKind::NotFound,
            Self::BindingRequest { .. } => ErrorKind::InvalidArgument,
            Self::Invoke { status, .. } => ErrorKind::Invocation(*status),
            Self::CloudEventMalformed { .. } | Self::MalformedEvents { .. } => {
                ErrorKind::InvalidArgument
            }
            Self::State { source, .. } => match source {
                StateError::EtagMismatch { .. } => ErrorKind::Conflict,
                StateError::InvalidEtag { .. } | StateError::InvalidRequest(_) => {
                    ErrorKind::InvalidArgument
                }
                StateError::NotSupported { .. } => ErrorKind::NotSupported,
                StateError::Backend(_) | StateError::Timeout(_) => ErrorKind::Internal,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_errors_classify_like_dapr() {
        let mismatch = ApiError::state(
            StateOperation::Save,
            "store",
            None,
            StateError::EtagMismatch { key: "k".into() },
        );
        assert_eq!(mismatch.kind(), ErrorKind::Conflict);
        assert_eq!(mismatch.error_code(), "ERR_STATE_SAVE");
        assert!(
            mismatch
                .to_string()
                .starts_with("failed saving state in state store store: possible etag mismatch")
        );
        let backend = ApiError::state(
            StateOperation::Get,
            "cache",
            Some("k"),
            StateError::Backend("connection refused".into()),
        );
        assert_eq!(backend.kind(), ErrorKind::Internal);
        assert_eq!(
            backend.to_string(),
            "fail to get k from state store cache: connection refused"
        );
        let unsupported = ApiError::state(
            StateOperation::Transaction,
            "s",
            None,
            StateError::NotSupported {
                feature: "transactions",
            },
        );
        assert_eq!(unsupported.error_code(), "ERR_STATE_STORE_NOT_SUPPORTED");
        assert_eq!(
            unsupported.to_string(),
            "state store s doesn't support transactions"
        );
    }
}
