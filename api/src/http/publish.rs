//! HTTP handlers for `/v1.0/publish/...` and `/v1.0-alpha1/publish/bulk/...`.

use std::collections::HashMap;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::body::{decode_json, read_limited};
use super::state::query_metadata;
use crate::context::ApiContext;
use crate::error::ApiError;
use crate::pubsub::{BulkEntryInput, PublishInput, TraceContext};

type QueryPairs = Query<Vec<(String, String)>>;

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .filter(|value| !value.is_empty())
        .map(str::to_string)
}

fn trace_context(headers: &HeaderMap) -> TraceContext {
    TraceContext {
        traceparent: header_text(headers, "traceparent"),
        tracestate: header_text(headers, "tracestate"),
    }
}

pub async fn publish(
    State(context): State<ApiContext>,
    Path((pubsub, topic)): Path<(String, String)>,
    Query(query): QueryPairs,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    context.pubsub.pubsub(&pubsub)?;
    let data = read_limited(&headers, body, context.max_body_size).await?;
    let input = PublishInput {
        data,
        content_type: header_text(&headers, header::CONTENT_TYPE.as_str()),
        metadata: query_metadata(&query),
    };
    context
        .pubsub
        .publish(&pubsub, &topic, input, &trace_context(&headers))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HttpBulkEntry {
    #[serde(default)]
    entry_id: String,
    event: Value,
    #[serde(default)]
    content_type: String,
    #[serde(default)]
    metadata: Option<HashMap<String, String>>,
}

/// Dapr's rules for turning a bulk entry's `event` into bytes for its content type.
fn event_bytes(entry: &HttpBulkEntry) -> Result<Bytes, ApiError> {
    let essence = entry
        .content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let mismatch = || {
        ApiError::malformed_events(format!(
            "entry {:?}: event does not match contentType {:?} (JSON types take any JSON, text/* and application/xml a string, application/octet-stream a base64 string)",
            entry.entry_id, entry.content_type
        ))
    };
    if essence == "application/json" || essence.ends_with("+json") {
        return serde_json::to_vec(&entry.event)
            .map(Bytes::from)
            .map_err(|_| mismatch());
    }
    match (&entry.event, essence.as_str()) {
        (Value::String(text), "application/octet-stream") => {
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .map(Bytes::from)
                .map_err(|_| mismatch())
        }
        (Value::String(text), essence)
            if essence.starts_with("text/") || essence == "application/xml" =>
        {
            Ok(Bytes::from(text.clone()))
        }
        _ => Err(mismatch()),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FailedEntry {
    entry_id: String,
    error: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BulkFailure {
    failed_entries: Vec<FailedEntry>,
    error_code: &'static str,
}

pub async fn bulk_publish(
    State(context): State<ApiContext>,
    Path((pubsub, topic)): Path<(String, String)>,
    Query(query): QueryPairs,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    context.pubsub.pubsub(&pubsub)?;
    let bytes = read_limited(&headers, body, context.max_body_size).await?;
    let entries: Vec<HttpBulkEntry> = decode_json(&bytes).map_err(|error| {
        ApiError::malformed_events(format!(
            "error when unmarshaling the request for topic {topic} pubsub {pubsub}: {error}"
        ))
    })?;
    let request_metadata = query_metadata(&query);
    let inputs = entries
        .into_iter()
        .map(|entry| {
            let data = event_bytes(&entry)?;
            let mut metadata = entry.metadata.unwrap_or_default();
            for (name, value) in &request_metadata {
                metadata
                    .entry(name.clone())
                    .or_insert_with(|| value.clone());
            }
            Ok(BulkEntryInput {
                entry_id: entry.entry_id,
                event: PublishInput {
                    data,
                    content_type: Some(entry.content_type),
                    metadata,
                },
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let failures = context
        .pubsub
        .bulk_publish(&pubsub, &topic, inputs, &trace_context(&headers))
        .await?;
    if failures.is_empty() {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    tracing::warn!(pubsub = %pubsub, topic = %topic, failed = failures.len(), "bulk publish: some entries failed");
    let body = BulkFailure {
        failed_entries: failures
            .into_iter()
            .map(|failure| FailedEntry {
                entry_id: failure.entry_id,
                error: failure.error,
            })
            .collect(),
        error_code: "ERR_PUBSUB_PUBLISH_MESSAGE",
    };
    Ok((StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response())
}
