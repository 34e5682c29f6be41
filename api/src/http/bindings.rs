//! HTTP handler for `POST /v1.0/bindings/{name}`.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use outrigger_components::bindings::InvokeRequest;
use serde::Deserialize;
use serde_json::Value;

use super::body::{decode_json_object, read_limited};
use crate::context::ApiContext;
use crate::error::ApiError;

#[derive(Deserialize)]
struct HttpInvoke {
    #[serde(default)]
    data: Option<Value>,
    #[serde(default)]
    metadata: Option<HashMap<String, String>>,
    #[serde(default)]
    operation: String,
}

pub async fn invoke(
    State(context): State<ApiContext>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_limited(&headers, body, context.max_body_size).await?;
    let request: HttpInvoke = decode_json_object(&bytes)?;
    // A string is sent as its text; any other JSON value as JSON.
    let data = match request.data {
        None | Some(Value::Null) => Bytes::new(),
        Some(Value::String(text)) => Bytes::from(text),
        Some(other) => Bytes::from(other.to_string()),
    };
    let response = context
        .bindings
        .invoke(
            &name,
            InvokeRequest {
                operation: request.operation,
                data,
                metadata: request.metadata.unwrap_or_default(),
            },
        )
        .await?;
    let mut headers = HeaderMap::new();
    for (name, value) in &response.metadata {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(format!("metadata.{name}").as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.insert(name, value);
        }
    }
    if response.data.is_empty() {
        Ok((StatusCode::NO_CONTENT, headers).into_response())
    } else {
        Ok((StatusCode::OK, headers, response.data).into_response())
    }
}
