//! HTTP handlers for `/v1.0/state/...`.

use std::collections::HashMap;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::body::{compact_json, decode_json, decode_json_object, read_limited};
use crate::context::ApiContext;
use crate::error::ApiError;
use crate::state::{
    BulkReadItem, DeleteItem, SaveItem, TransactionStep, parse_concurrency, parse_consistency,
};

type QueryPairs = Query<Vec<(String, String)>>;

/// `metadata.<name>=<value>` query parameters, which Dapr merges into request metadata.
pub(super) fn query_metadata(query: &[(String, String)]) -> HashMap<String, String> {
    query
        .iter()
        .filter_map(|(name, value)| {
            name.strip_prefix("metadata.")
                .map(|name| (name.to_string(), value.clone()))
        })
        .collect()
}

fn query_value<'a>(query: &'a [(String, String)], name: &str) -> &'a str {
    query
        .iter()
        .find(|(key, _)| key == name)
        .map_or("", |(_, value)| value.as_str())
}

#[derive(Deserialize, Default)]
struct HttpOptions {
    #[serde(default)]
    concurrency: Option<String>,
    #[serde(default)]
    consistency: Option<String>,
}

#[derive(Deserialize)]
struct HttpStateItem {
    key: String,
    #[serde(default)]
    value: Option<Box<RawValue>>,
    #[serde(default)]
    etag: Option<String>,
    #[serde(default)]
    metadata: Option<HashMap<String, String>>,
    #[serde(default)]
    options: Option<HttpOptions>,
}

impl HttpStateItem {
    /// The value as Dapr stores it: the JSON text of `value` (a string keeps its quotes).
    fn into_save_item(self, query: &HashMap<String, String>) -> Result<SaveItem, ApiError> {
        let options = self.options.unwrap_or_default();
        let mut metadata = self.metadata.unwrap_or_default();
        metadata.extend(
            query
                .iter()
                .map(|(name, value)| (name.clone(), value.clone())),
        );
        Ok(SaveItem {
            value: Bytes::from(
                self.value
                    .map_or_else(|| "null".to_string(), |raw| compact_json(raw.get())),
            ),
            key: self.key,
            etag: self.etag,
            concurrency: parse_concurrency(options.concurrency.as_deref().unwrap_or(""))?,
            consistency: parse_consistency(options.consistency.as_deref().unwrap_or(""))?,
            metadata,
        })
    }
}

pub async fn save(
    State(context): State<ApiContext>,
    Path(store): Path<String>,
    Query(query): QueryPairs,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    context.state.store(&store)?;
    let bytes = read_limited(&headers, body, context.max_body_size).await?;
    let items: Vec<HttpStateItem> = decode_json(&bytes)?;
    let metadata = query_metadata(&query);
    let items = items
        .into_iter()
        .map(|item| item.into_save_item(&metadata))
        .collect::<Result<Vec<_>, _>>()?;
    context.state.save(&store, items).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn get(
    State(context): State<ApiContext>,
    Path((store, key)): Path<(String, String)>,
    Query(query): QueryPairs,
) -> Result<Response, ApiError> {
    let consistency = parse_consistency(query_value(&query, "consistency"))?;
    let item = context
        .state
        .get(&store, &key, consistency, query_metadata(&query))
        .await?;
    let Some(item) = item else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(etag) = item
        .etag
        .as_deref()
        .and_then(|etag| HeaderValue::from_str(etag).ok())
    {
        headers.insert(header::ETAG, etag);
    }
    for (name, value) in &item.metadata {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(format!("metadata.{name}").as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.insert(name, value);
        }
    }
    Ok((StatusCode::OK, headers, item.value).into_response())
}

pub async fn delete(
    State(context): State<ApiContext>,
    Path((store, key)): Path<(String, String)>,
    Query(query): QueryPairs,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let etag = match headers.get(header::IF_MATCH) {
        Some(value) => Some(
            value
                .to_str()
                .map_err(|_| ApiError::malformed("If-Match header is not valid text"))?
                .to_string(),
        ),
        None => None,
    };
    let item = DeleteItem {
        key,
        etag,
        concurrency: parse_concurrency(query_value(&query, "concurrency"))?,
        consistency: parse_consistency(query_value(&query, "consistency"))?,
        metadata: query_metadata(&query),
    };
    context.state.delete(&store, item).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct BulkGetBody {
    keys: Vec<String>,
    #[serde(default)]
    #[allow(dead_code)] // Accepted for Dapr compatibility; stores read in one round trip.
    parallelism: Option<i64>,
    #[serde(default)]
    #[allow(dead_code)]
    metadata: Option<HashMap<String, String>>,
}

#[derive(Serialize)]
pub struct BulkGetItem {
    key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<Box<RawValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    etag: Option<String>,
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    metadata: HashMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// Stored bytes as embedded JSON: valid JSON as-is, anything else as a JSON string.
fn embed(value: &[u8]) -> Option<Box<RawValue>> {
    match std::str::from_utf8(value) {
        Ok(text) if serde_json::from_str::<&RawValue>(text).is_ok() => {
            RawValue::from_string(text.to_string()).ok()
        }
        _ => serde_json::to_string(&String::from_utf8_lossy(value))
            .ok()
            .and_then(|text| RawValue::from_string(text).ok()),
    }
}

fn bulk_item(item: BulkReadItem) -> BulkGetItem {
    let (data, etag, metadata, error) = match item.result {
        Ok(Some(found)) => (embed(&found.value), found.etag, found.metadata, None),
        Ok(None) => (None, None, HashMap::new(), None),
        Err(error) => (None, None, HashMap::new(), Some(error)),
    };
    BulkGetItem {
        key: item.key,
        data,
        etag,
        metadata,
        error,
    }
}

pub async fn bulk_get(
    State(context): State<ApiContext>,
    Path(store): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Vec<BulkGetItem>>, ApiError> {
    context.state.store(&store)?;
    let bytes = read_limited(&headers, body, context.max_body_size).await?;
    let request: BulkGetBody = decode_json_object(&bytes)?;
    let items = context.state.bulk_get(&store, request.keys).await?;
    Ok(Json(items.into_iter().map(bulk_item).collect()))
}

#[derive(Deserialize)]
struct TransactionBody {
    #[serde(default)]
    operations: Vec<HttpOperation>,
    #[serde(default)]
    #[allow(dead_code)]
    // Accepted for Dapr compatibility; no store reads transaction metadata yet.
    metadata: Option<HashMap<String, String>>,
}

#[derive(Deserialize)]
struct HttpOperation {
    operation: String,
    request: HttpStateItem,
}

pub async fn transaction(
    State(context): State<ApiContext>,
    Path(store): Path<String>,
    Query(query): QueryPairs,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let registered = context.state.store(&store)?;
    if !registered.store.features().transactional {
        return Err(ApiError::StateNotSupported {
            store,
            feature: "transactions",
        });
    }
    let bytes = read_limited(&headers, body, context.max_body_size).await?;
    let request: TransactionBody = decode_json_object(&bytes)?;
    let metadata = query_metadata(&query);
    let steps = request
        .operations
        .into_iter()
        .map(|operation| {
            let item = operation.request.into_save_item(&metadata)?;
            match operation.operation.as_str() {
                "upsert" => Ok(TransactionStep::Upsert(item)),
                "delete" => Ok(TransactionStep::Delete(DeleteItem {
                    key: item.key,
                    etag: item.etag,
                    concurrency: item.concurrency,
                    consistency: item.consistency,
                    metadata: item.metadata,
                })),
                other => Err(ApiError::UnsupportedTransactionOperation {
                    operation: other.to_string(),
                }),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    context.state.transact(&store, steps).await?;
    Ok(StatusCode::NO_CONTENT)
}
